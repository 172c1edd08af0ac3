//! `autopty info` (being written).

/// Arguments of `autopty info`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("autopty info is not implemented yet")
}
