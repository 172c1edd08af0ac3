//! `autopty score` (being written).

/// Arguments of `autopty score`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("autopty score is not implemented yet")
}
