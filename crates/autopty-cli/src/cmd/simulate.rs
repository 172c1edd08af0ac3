//! `autopty simulate` (being written).

/// Arguments of `autopty simulate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("autopty simulate is not implemented yet")
}
