//! What a reconstruction carries besides its job: the checkpoint it continues from, what a
//! checkpoint records for a later `--resume` (the input arguments and the job), the truth to
//! score against, and the report.

use super::reconstruct::Args;
use anyhow::{bail, Context};
use autopty::engines::checkpoint::Checkpoint;
use autopty::io::checkpoint;
use autopty::job::Job;
use autopty::metrics::Score;
use autopty::report::html::{self, ReportContent};
use autopty::{Reconstruction, Truth};
use clap::Parser;
use std::path::{Path, PathBuf};

/// Extras of one run.
#[derive(Default)]
pub struct RunExtras<'a> {
    /// Checkpoint every this many epochs (0: only at the end and on interruption).
    pub checkpoint_every: usize,
    /// The checkpoint to continue from.
    pub resume: Option<Checkpoint>,
    /// Recorded in every checkpoint; `None` writes no checkpoints.
    pub meta: Option<serde_json::Value>,
    /// Ground truth, for the score table.
    pub truth: Option<&'a Truth>,
    /// Report heading.
    pub title: String,
    /// Lines for the report's notes (resume log, preparation stages).
    pub notes: Vec<String>,
    /// Progress as JSON lines on stdout.
    pub json: bool,
}

/// The `meta` of a checkpoint: the input arguments (as given, with the folder they were given
/// in) and the job as TOML (its floats read back exactly).
pub fn meta(input_argv: &[String], cwd: &Path, job: &Job) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "input_argv": input_argv,
        "cwd": cwd.to_string_lossy(),
        "job_toml": toml::to_string(job).context("recording the job in the checkpoint")?,
    }))
}

/// The arguments of `reconstruct` that come after the subcommand on this process's command line.
pub fn own_argv() -> Vec<String> {
    let all: Vec<String> = std::env::args().collect();
    match all.iter().position(|a| a == "reconstruct") {
        Some(k) => all[k + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// A run to continue: its checkpoint, the input it read and its job.
pub struct Resumed {
    pub checkpoint: Checkpoint,
    pub input: super::input::InputArgs,
    pub job: Job,
    pub meta: serde_json::Value,
}

#[derive(Parser)]
#[command(name = "autopty reconstruct")]
struct Recorded {
    #[command(flatten)]
    args: Args,
}

/// Reads `dir/checkpoint.autopty` and what it recorded.
pub fn load(dir: &Path) -> anyhow::Result<Resumed> {
    let path = dir.join(checkpoint::FILE_NAME);
    if !path.exists() {
        bail!(
            "{}: no checkpoint to resume (the gradient engine writes one at the end of a run, on \
             interruption and with --checkpoint-every)",
            path.display()
        );
    }
    let (checkpoint, meta) = checkpoint::read(&path)?;
    let field = |name: &str| {
        meta.get(name)
            .ok_or_else(|| anyhow::anyhow!("{}: field 'meta.{name}': missing", path.display()))
    };
    let argv: Vec<String> = serde_json::from_value(field("input_argv")?.clone())
        .with_context(|| format!("{}: field 'meta.input_argv'", path.display()))?;
    let cwd = PathBuf::from(field("cwd")?.as_str().unwrap_or("."));
    let job_toml = field("job_toml")?.as_str().unwrap_or_default().to_owned();
    let job = Job::from_toml(&job_toml)
        .with_context(|| format!("{}: field 'meta.job_toml'", path.display()))?;
    let recorded = Recorded::try_parse_from(
        std::iter::once("autopty-reconstruct".to_string()).chain(argv.iter().cloned()),
    )
    .with_context(|| format!("{}: field 'meta.input_argv'", path.display()))?;
    let mut input = recorded.args.input;
    if input.dataset.is_relative() {
        input.dataset = cwd.join(&input.dataset);
    }
    Ok(Resumed {
        checkpoint,
        input,
        job,
        meta,
    })
}

/// Writes `dir/report.html`.
#[allow(clippy::too_many_arguments)]
pub fn write_report(
    dir: &Path,
    rec: &Reconstruction,
    extras: &RunExtras,
    status: String,
    start_distance: f64,
    score: Option<&Score>,
    timings: Vec<(String, String)>,
    job: &Job,
) -> anyhow::Result<()> {
    let content = ReportContent {
        title: extras.title.clone(),
        status,
        rec,
        start_distance: Some(start_distance),
        score,
        notes: extras.notes.clone(),
        timings,
        settings: serde_json::to_value(job).unwrap_or_default(),
    };
    html::write(dir, &content).with_context(|| format!("writing the report in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_survives_the_checkpoint_meta() {
        let mut job = Job::default();
        job.gradient.positions.lr = 0.123_456_789_012_345_68;
        job.gradient.epochs = 17;
        job.engine = Some("sgd".into());
        let m = meta(
            &["data.cxi".into(), "--flip-x".into()],
            Path::new("/tmp"),
            &job,
        )
        .unwrap();
        let back = Job::from_toml(m["job_toml"].as_str().unwrap()).unwrap();
        assert_eq!(back, job);
        let r = Recorded::try_parse_from(["x", "data.cxi", "--flip-x", "-o", "out"]).unwrap();
        assert!(r.args.input.flip_x);
    }
}
