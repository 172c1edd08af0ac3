//! `autopty demo`: the main job in one command. Simulates the published near-field protocol
//! (preset `paper`) with corrupted metadata (30% distance error, 10 px position jitter),
//! reconstructs with joint refinement of object, probe, positions and distance, prints the score
//! against the truth and says where everything is (the report: `reconstruction/report.html`).

use super::reconstruct::{apply, finish, report_preparation, run_job_ext, Overrides};
use super::score::write_score;
use super::session::{self, RunExtras};
use super::simulate::truth_path;
use anyhow::Context;
use autopty::job::Job;
use autopty::metrics::format_table;
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
    /// Write a checkpoint (and refresh the outputs and the report) every N epochs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Progress as one JSON object per epoch on stdout (and the logs as JSON on stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress bar, only errors in the log.
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
    let say = !args.json;
    if say {
        eprintln!(
            "simulating the 'paper' preset at z = {} m ...",
            args.distance
        );
    }
    let (data, truth) = autopty::sim::simulate(&cfg)?;
    let data_path = args.output.join("data.cxi");
    autopty::io::cxi::write(&data_path, &data)?;
    autopty::io::truth::write(&truth_path(&data_path), &truth)?;
    if say {
        println!(
            "data: {} patterns of {}x{} px; stored distance {:.4} m (true {:.4} m), stored positions off by {} px (sigma)",
            data.len(),
            data.frame(),
            data.frame(),
            data.geometry.refined_distance(),
            truth.geometry.refined_distance(),
            cfg.corruption.position_jitter
        );
    }
    let out = args.output.join("reconstruction");
    // A later `autopty reconstruct --resume OUT/reconstruction` reads the data written above.
    let data_abs = std::path::absolute(&data_path).unwrap_or_else(|_| data_path.clone());
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let meta = session::meta(&[data_abs.display().to_string()], &cwd, &job)?;
    let extras = RunExtras {
        checkpoint_every: args.checkpoint_every,
        meta: Some(meta),
        truth: Some(&truth),
        title: format!("demo, 'paper' preset at {} m", args.distance),
        json: args.json,
        ..RunExtras::default()
    };
    let (outcome, seconds, result) = run_job_ext(&data, &job, &out, args.quiet, extras)?;
    if let Some(result) = &result {
        write_score(&out, result)?;
    }
    let rec = &outcome.reconstruction;
    if say {
        report_preparation(&outcome, &job);
        let last = rec.history.last();
        println!(
            "{} epochs in {:.1} s ({:.3} s per epoch); refined distance {:.5} m",
            rec.history.len(),
            last.map_or(0.0, |s| s.seconds),
            last.map_or(0.0, |s| s.seconds / s.epoch.max(1) as f64),
            rec.geometry.refined_distance()
        );
        if let Some(result) = &result {
            print!("{}", format_table(result));
        }
        println!("data and truth: {} (+ .truth.h5)", data_path.display());
        println!(
            "reconstruction, images, plots, score.json and report.html: {}",
            out.display()
        );
    }
    finish(
        &outcome,
        &job,
        &out,
        seconds,
        data.geometry.refined_distance(),
        args.json,
        false,
    )
}
