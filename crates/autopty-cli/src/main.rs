//! The `autopty` command-line program: argument parsing only; the work is in the library.

mod cmd;

use clap::{Parser, Subcommand};

/// Ptychography reconstruction with joint refinement of object, probe, positions and distance.
#[derive(Parser)]
#[command(name = "autopty", version, about)]
struct Cli {
    /// More log messages (-v information, -vv debugging); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a dataset (and its ground truth) from a preset.
    Simulate(cmd::simulate::Args),
    /// Describe a dataset: shape, geometry, Fresnel number, scan, photon counts, problems.
    Info(cmd::info::Args),
    /// Score a reconstruction against the ground truth.
    Score(cmd::score::Args),
    /// The main job: simulate the published protocol with wrong metadata, reconstruct with
    /// refinement, score against the truth.
    Demo(cmd::demo::Args),
    /// Reconstruct a dataset: object, probe modes, positions and distance.
    Reconstruct(cmd::reconstruct::Args),
    /// Run several engines (adam, epie, rpie, dm, ...) on one dataset from the same start and
    /// compare them: table, figure, loss against time.
    Compare(cmd::compare::Args),
    /// Line profile of the reconstructed magnitude and phase with its edge resolution (CSV, PNG).
    Profile(cmd::profile::Args),
    /// Thickness maps of the sample from the reconstruction and its refractive index.
    Maps(cmd::maps::Args),
}

fn main() {
    let cli = Cli::parse();
    let (quiet, json) = match &cli.command {
        Command::Reconstruct(a) => (a.quiet, a.json),
        Command::Demo(a) => (a.quiet, a.json),
        Command::Compare(a) => (a.quiet, false),
        _ => (false, false),
    };
    cmd::logging::init(cli.verbose, quiet, json);
    let result = match cli.command {
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Score(a) => cmd::score::run(a),
        Command::Reconstruct(a) => cmd::reconstruct::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Profile(a) => cmd::profile::run(a),
        Command::Maps(a) => cmd::maps::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
