//! `autopty demo`: the main job in one command. Simulates the published near-field protocol
//! (preset `paper`) with corrupted metadata (30% distance error, 10 px position jitter),
//! reconstructs with joint refinement of object, probe, positions and distance, prints the score
//! against the truth and says where everything is.

use super::reconstruct::{apply, report_preparation, run_job, Overrides};
use super::score::write_score;
use super::simulate::truth_path;
use anyhow::Context;
use autopty::job::Job;
use autopty::metrics::{format_table, score};
use std::path::PathBuf;

/// Arguments of `autopty demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder for the simulated data, the reconstruction and the score.
    #[arg(short, long, default_value = "autopty-demo")]
    pub output: PathBuf,
    /// Propagation distance of the simulated experiment (m).
    #[arg(long, default_value_t = 0.1)]
    pub distance: f64,
    /// Number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Setup parameters to refine: any of positions,distance, or none (default: both).
    #[arg(long, value_delimiter = ',')]
    pub refine: Option<Vec<String>>,
    /// TOML job file for the reconstruction.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = match &args.config {
        Some(p) => Job::from_file(p)?,
        None => Job::default(),
    };
    apply(
        &mut job,
        &Overrides {
            refine: args.refine.clone(),
            epochs: args.epochs,
            ..Overrides::default()
        },
    )?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut cfg = autopty::sim::preset("paper")?;
    cfg.geometry.distance = args.distance;
    cfg.validate()?;
    eprintln!(
        "simulating the 'paper' preset at z = {} m ...",
        args.distance
    );
    let (data, truth) = autopty::sim::simulate(&cfg)?;
    let data_path = args.output.join("data.cxi");
    autopty::io::cxi::write(&data_path, &data)?;
    autopty::io::truth::write(&truth_path(&data_path), &truth)?;
    println!(
        "data: {} patterns of {}x{} px; stored distance {:.4} m (true {:.4} m), stored positions off by {} px (sigma)",
        data.len(),
        data.frame(),
        data.frame(),
        data.geometry.refined_distance(),
        truth.geometry.refined_distance(),
        cfg.corruption.position_jitter
    );
    let out = args.output.join("reconstruction");
    let outcome = run_job(&data, &job, &out, args.quiet)?;
    report_preparation(&outcome, &job);
    let rec = &outcome.reconstruction;
    let result = score(rec, &truth)?;
    write_score(&out, &result)?;
    let last = rec.history.last();
    println!(
        "{} epochs in {:.1} s ({:.3} s per epoch); refined distance {:.5} m",
        rec.history.len(),
        last.map_or(0.0, |s| s.seconds),
        last.map_or(0.0, |s| s.seconds / s.epoch.max(1) as f64),
        rec.geometry.refined_distance()
    );
    print!("{}", format_table(&result));
    println!("data and truth: {} (+ .truth.h5)", data_path.display());
    println!(
        "reconstruction, images, plots and score.json: {}",
        out.display()
    );
    Ok(())
}
