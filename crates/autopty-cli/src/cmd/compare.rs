//! `autopty compare`: runs several engines on one dataset from the same start and lays their
//! results side by side.
//!
//! Writes into the output folder: each engine's outputs in `<engine>/` (and its `score.json`
//! with a truth), `compare.csv` and `compare.json` (one row per engine: epochs, wall-clock
//! seconds, seconds per epoch, final loss, refined distance, metrics against the truth),
//! `compare.png` (object magnitude and phase of each engine in a row, the truth's first) and
//! `loss_vs_time.png`.

use super::input::InputArgs;
use super::reconstruct::{apply, run_job_with, Overrides};
use super::score::write_score;
use anyhow::Context;
use autopty::engines::EngineKind;
use autopty::io::atomic::write_bytes_atomic;
use autopty::job::Job;
use autopty::metrics::{score, Score};
use autopty::report::plot::{save_line_plot, LinePlot, Series};
use autopty::report::{image_grid, magnitude_phase_row, png_bytes};
use autopty::{Reconstruction, Truth};
use ndarray::{s, Array2};
use num_complex::Complex32;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `autopty compare`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output folder (created if missing).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Engines to run, in order: any of adam, sgd, epie, rpie, dm, raar.
    #[arg(long, value_delimiter = ',', default_value = "adam,epie,rpie,dm")]
    pub engines: Vec<String>,
    /// Ground truth written by `autopty simulate` (DATA.truth.h5): adds the metrics.
    #[arg(long, value_name = "TRUTH.h5")]
    pub truth: Option<PathBuf>,
    /// Epochs of every engine (default: each engine's from the job file).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Wall-clock budget of every engine (s): each stops after the first epoch that ends past
    /// it, the gradient engine's preparation counting. With --epochs, whichever comes first;
    /// without, the classical engines run as many epochs as fit, the gradient engine at most
    /// its configured epochs (the horizon of its learning-rate decay).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// TOML job file with the settings of every engine.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Setup parameters to refine: any of positions,distance, or none (the classical engines
    /// never refine the distance).
    #[arg(long, value_delimiter = ',')]
    pub refine: Option<Vec<String>>,
    /// Number of probe modes.
    #[arg(long)]
    pub modes: Option<usize>,
    /// Positions per minibatch of the gradient engine.
    #[arg(long)]
    pub batch: Option<usize>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One row of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Engine name.
    pub engine: String,
    /// Epochs of the main run.
    pub epochs: usize,
    /// Wall-clock seconds of the whole run (preparation included).
    pub seconds: f64,
    /// Seconds before the first epoch (the gradient engine's alignment and distance search).
    pub preparation_seconds: f64,
    /// Mean seconds per epoch of the main run.
    pub seconds_per_epoch: Option<f64>,
    /// Loss after the last epoch (amplitude loss / measured photons).
    pub final_loss: Option<f64>,
    /// Refined distance (m).
    pub distance_m: f64,
    /// Metrics against the truth.
    pub score: Option<Score>,
    /// Why the run ended before its last epoch, if it did.
    pub stopped_early: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let kinds: Vec<EngineKind> = args
        .engines
        .iter()
        .map(|e| e.parse::<EngineKind>())
        .collect::<Result<_, _>>()?;
    if kinds.is_empty() {
        anyhow::bail!("--engines: name at least one engine");
    }
    if let Some(s) = args.seconds {
        if !(s.is_finite() && s > 0.0) {
            anyhow::bail!("--seconds: expected a positive number of seconds, got {s}");
        }
    }
    let mut base = match &args.config {
        Some(p) => Job::from_file(p)?,
        None => Job::default(),
    };
    apply(
        &mut base,
        &Overrides {
            refine: args.refine.clone(),
            epochs: args.epochs,
            modes: args.modes,
            batch: args.batch,
            ..Overrides::default()
        },
    )?;
    if args.seconds.is_some() && args.epochs.is_none() {
        // No schedule ties the classical engines to an epoch count: let the budget end them.
        base.pie.epochs = 1_000_000;
        base.dm.epochs = 1_000_000;
    }
    let truth = args
        .truth
        .as_ref()
        .map(|p| autopty::io::truth::read(p))
        .transpose()?;
    let data = args.input.load()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;

    let mut rows = Vec::new();
    let mut recs = Vec::new();
    for kind in kinds {
        let mut job = base.clone();
        job.engine = Some(kind.name().into());
        let dir = args.output.join(kind.name());
        if !args.quiet {
            eprintln!("{} ...", kind.name());
        }
        let (outcome, seconds) = run_job_with(&data, &job, &dir, args.quiet, args.seconds)?;
        let rec = outcome.reconstruction;
        let result = match &truth {
            Some(t) => {
                let s = score(&rec, t)
                    .with_context(|| format!("scoring {} against the truth", kind.name()))?;
                write_score(&dir, &s)?;
                Some(s)
            }
            None => None,
        };
        rows.push(row(&rec, seconds, result, outcome.stopped_early));
        recs.push(rec);
    }
    print!("{}", table(&rows));
    write_tables(&args.output, &rows)?;
    write_figure(&args.output.join("compare.png"), &recs, truth.as_ref())?;
    write_loss_plot(&args.output.join("loss_vs_time.png"), &recs, &rows)?;
    println!(
        "per-engine outputs, compare.csv, compare.json, compare.png and loss_vs_time.png: {}",
        args.output.display()
    );
    Ok(())
}

fn row(rec: &Reconstruction, seconds: f64, score: Option<Score>, why: Option<String>) -> Row {
    let last = rec.history.last();
    let main = last.map_or(0.0, |s| s.seconds);
    Row {
        engine: rec.engine.clone(),
        epochs: rec.history.len(),
        seconds,
        preparation_seconds: (seconds - main).max(0.0),
        seconds_per_epoch: last.map(|s| s.seconds / s.epoch.max(1) as f64),
        final_loss: last.map(|s| s.loss),
        distance_m: rec.geometry.refined_distance(),
        score,
        stopped_early: why,
    }
}

/// The comparison as a text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<8} {:>7} {:>9} {:>10} {:>11} {:>12} {:>8} {:>8} {:>7} {:>9}\n",
        "engine",
        "epochs",
        "seconds",
        "s/epoch",
        "final loss",
        "distance m",
        "SSIM mag",
        "SSIM ph",
        "NRMSE",
        "pos err"
    );
    let opt = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    };
    for r in rows {
        let s = r.score.as_ref();
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>9.1} {:>10} {:>11} {:>12.6} {:>8} {:>8} {:>7} {:>9}",
            r.engine,
            r.epochs,
            r.seconds,
            opt(r.seconds_per_epoch, 4),
            r.final_loss.map_or("-".into(), |v| format!("{v:.3e}")),
            r.distance_m,
            opt(s.map(|s| s.ssim_magnitude), 3),
            opt(s.map(|s| s.ssim_phase), 3),
            opt(s.map(|s| s.nrmse), 3),
            opt(s.and_then(|s| s.position_error_median), 2),
        );
    }
    out
}

/// `compare.csv` (one line per engine) and `compare.json` (the rows).
fn write_tables(dir: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "engine,epochs,seconds,preparation_seconds,seconds_per_epoch,final_loss,distance_m,\
         ssim_magnitude,ssim_phase,nrmse,position_error_median_px,distance_error_rel,stopped_early\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
    for r in rows {
        let s = r.score.as_ref();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{:e},{},{},{},{},{},{}",
            r.engine,
            r.epochs,
            r.seconds,
            r.preparation_seconds,
            opt(r.seconds_per_epoch),
            opt(r.final_loss),
            r.distance_m,
            opt(s.map(|s| s.ssim_magnitude)),
            opt(s.map(|s| s.ssim_phase)),
            opt(s.map(|s| s.nrmse)),
            opt(s.and_then(|s| s.position_error_median)),
            opt(s.and_then(|s| s.distance_error_rel)),
            r.stopped_early
                .as_deref()
                .unwrap_or("")
                .replace([',', '\n'], ";"),
        );
    }
    write_bytes_atomic(&dir.join("compare.csv"), csv.as_bytes())?;
    let json = serde_json::to_string_pretty(rows)?;
    write_bytes_atomic(&dir.join("compare.json"), format!("{json}\n").as_bytes())?;
    Ok(())
}

/// The part of an object that a scan of N x N windows at `positions` (px) covers, with its
/// global phase set so that the mean over it is real.
fn scanned(object: &Array2<Complex32>, positions: &Array2<f64>, n: usize) -> Array2<Complex32> {
    let (h, w) = object.dim();
    let range = |k: usize, len: usize| {
        let col = positions.column(k);
        let lo = col.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let a = (lo.floor().max(0.0) as usize).min(len.saturating_sub(1));
        let b = ((hi.ceil().max(0.0) as usize) + n).clamp(a + 1, len);
        (a, b)
    };
    let ((r0, r1), (c0, c1)) = (range(0, h), range(1, w));
    let mut part = object.slice(s![r0..r1, c0..c1]).to_owned();
    let mean: Complex32 = part.iter().sum::<Complex32>() / part.len().max(1) as f32;
    if mean.norm() > 0.0 {
        let turn = mean.conj() / mean.norm();
        part.mapv_inplace(|v| v * turn);
    }
    part
}

/// `compare.png`: magnitude and phase of the scanned region, one row per engine (the truth's
/// first when given).
fn write_figure(path: &Path, recs: &[Reconstruction], truth: Option<&Truth>) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    if let Some(t) = truth {
        let part = scanned(&t.object, &t.positions, t.probe.shape()[1]);
        rows.push(magnitude_phase_row("truth", &part));
    }
    for rec in recs {
        let part = scanned(&rec.object, &rec.positions, rec.probe.shape()[1]);
        rows.push(magnitude_phase_row(&rec.engine, &part));
    }
    let bytes = png_bytes(&image_grid(&rows))?;
    write_bytes_atomic(path, &bytes)?;
    Ok(())
}

/// `loss_vs_time.png`: every engine's loss against wall-clock seconds (preparation included).
fn write_loss_plot(path: &Path, recs: &[Reconstruction], rows: &[Row]) -> anyhow::Result<()> {
    let series = recs
        .iter()
        .zip(rows)
        .map(|(rec, row)| Series {
            name: rec.engine.clone(),
            points: rec
                .history
                .iter()
                .map(|s| (row.preparation_seconds + s.seconds, s.loss))
                .collect(),
        })
        .collect();
    let plot = LinePlot {
        title: "Loss against time".into(),
        x_label: "wall-clock seconds".into(),
        y_label: "loss / measured photons".into(),
        series,
        log_y: true,
        hline: None,
    };
    save_line_plot(path, &plot)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::input::InputArgs;

    #[test]
    fn compares_engines_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = autopty::sim::preset("farfield").unwrap();
        cfg.noise.poisson = false;
        cfg.corruption.position_jitter = 0.0;
        cfg.scan.points = 30;
        let (data, truth) = autopty::sim::simulate(&cfg).unwrap();
        let data_path = dir.path().join("data.cxi");
        let truth_path = dir.path().join("data.truth.h5");
        autopty::io::cxi::write(&data_path, &data).unwrap();
        autopty::io::truth::write(&truth_path, &truth).unwrap();
        let out = dir.path().join("cmp");
        run(Args {
            input: InputArgs {
                dataset: data_path,
                flip_x: false,
                flip_y: false,
                swap_xy: false,
                regime: None,
                source_distance: None,
                raw: Default::default(),
            },
            output: out.clone(),
            engines: vec!["adam".into(), "epie".into(), "dm".into()],
            truth: Some(truth_path),
            epochs: Some(3),
            seconds: None,
            config: None,
            refine: Some(vec!["none".into()]),
            modes: None,
            batch: None,
            quiet: true,
        })
        .unwrap();
        for engine in ["adam", "epie", "dm"] {
            let rec = autopty::io::outputs::read(&out.join(engine)).unwrap();
            assert_eq!(rec.engine, engine);
            assert_eq!(rec.history.len(), 3);
            assert!(out.join(engine).join("score.json").exists());
        }
        let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
        let engines: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(engines, ["adam", "epie", "dm"]);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap())
                .unwrap();
        assert!(json[2]["score"]["ssim_magnitude"].as_f64().unwrap() > 0.0);
        let png = std::fs::read(out.join("compare.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // The IHDR chunk: width and height, big-endian, at bytes 16 and 20.
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        // Four rows (truth and three engines) of panels at least 64 px tall.
        assert!(height > 4 * 64, "figure height {height}");
        assert!(out.join("loss_vs_time.png").exists());
    }

    #[test]
    fn a_time_budget_ends_every_engine_early() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = autopty::sim::preset("farfield").unwrap();
        cfg.scan.points = 20;
        let (data, _) = autopty::sim::simulate(&cfg).unwrap();
        let data_path = dir.path().join("data.cxi");
        autopty::io::cxi::write(&data_path, &data).unwrap();
        let out = dir.path().join("cmp");
        let args = |engines: Vec<String>, seconds: f64| Args {
            input: InputArgs {
                dataset: data_path.clone(),
                flip_x: false,
                flip_y: false,
                swap_xy: false,
                regime: None,
                source_distance: None,
                raw: Default::default(),
            },
            output: out.clone(),
            engines,
            truth: None,
            epochs: None,
            seconds: Some(seconds),
            config: None,
            refine: Some(vec!["none".into()]),
            modes: None,
            batch: None,
            quiet: true,
        };
        run(args(vec!["rpie".into(), "raar".into()], 0.3)).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap())
                .unwrap();
        for (k, engine) in ["rpie", "raar"].into_iter().enumerate() {
            let row = &json[k];
            assert_eq!(row["engine"], engine);
            // Ended by the budget: past it, but not by more than an epoch or so, and not
            // counted as stopped early.
            let seconds = row["seconds"].as_f64().unwrap();
            assert!((0.3..3.0).contains(&seconds), "{engine}: {seconds} s");
            assert!(row["stopped_early"].is_null(), "{row}");
            let epochs = row["epochs"].as_u64().unwrap();
            assert!((2..1000).contains(&epochs), "{engine}: {epochs} epochs");
        }
        let e = run(args(vec!["hio".into()], 1.0)).unwrap_err().to_string();
        assert!(e.contains("hio"), "{e}");
        let e = run(args(vec!["epie".into()], -1.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--seconds"), "{e}");
    }

    #[test]
    fn scanned_region_is_cut_and_phase_levelled() {
        let object = Array2::from_shape_fn((40, 50), |(r, c)| {
            Complex32::from_polar(1.0 + (r + c) as f32 * 0.01, 0.7)
        });
        let positions = ndarray::array![[5.2, 6.0], [12.0, 20.7]];
        let part = scanned(&object, &positions, 8);
        // rows 5 .. 12 + 8, columns 6 .. 21 + 8
        assert_eq!(part.dim(), (15, 23));
        let mean: Complex32 = part.iter().sum::<Complex32>() / part.len() as f32;
        assert!(mean.im.abs() < 1e-5 * mean.re, "{mean}");
        assert!((part[[0, 0]].norm() - object[[5, 6]].norm()).abs() < 1e-6);
    }

    #[test]
    fn table_lists_every_engine_with_its_numbers() {
        let rows = vec![
            Row {
                engine: "epie".into(),
                epochs: 12,
                seconds: 3.5,
                preparation_seconds: 0.0,
                seconds_per_epoch: Some(0.29),
                final_loss: Some(1.5e-4),
                distance_m: 0.13,
                score: None,
                stopped_early: None,
            },
            Row {
                engine: "adam".into(),
                epochs: 3,
                seconds: 9.0,
                preparation_seconds: 6.0,
                seconds_per_epoch: Some(1.0),
                final_loss: None,
                distance_m: 0.1,
                score: Some(Score {
                    ssim_magnitude: 0.93,
                    ssim_phase: 0.88,
                    nrmse: 0.12,
                    position_error_median: Some(0.2),
                    position_error_p90: None,
                    position_error_affine_median: None,
                    distance_error_rel: Some(0.003),
                    shift: (0.0, 0.0),
                }),
                stopped_early: None,
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("epie") && lines[1].contains("1.500e-4"),
            "{t}"
        );
        assert!(
            lines[2].contains("0.930") && lines[2].contains("0.20"),
            "{t}"
        );
        let dir = tempfile::tempdir().unwrap();
        write_tables(dir.path(), &rows).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("compare.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines().nth(2).unwrap().starts_with("adam,3,9,6,"),
            "{csv}"
        );
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("compare.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json[1]["score"]["ssim_magnitude"], 0.93);
    }
}
