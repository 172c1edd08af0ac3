//! `autopty reconstruct`: run an engine on a dataset and write the outputs.

use super::input::InputArgs;
use super::session::{self, RunExtras};
use super::{logging, signals};
use anyhow::{bail, Context};
use autopty::engines::checkpoint::{changed_settings, Checkpoint, Checkpointing};
use autopty::engines::distance_search::SearchResult;
use autopty::engines::{self, Control, EngineKind, Outcome};
use autopty::io::{checkpoint, outputs};
use autopty::job::Job;
use autopty::metrics::{score, Score};
use autopty::{Dataset, EpochStats, Reconstruction};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Arguments of `autopty reconstruct`.
#[derive(clap::Args)]
#[command(mut_arg("dataset", |a| a
    .required(false)
    .required_unless_present("resume")
    .default_value("-")
    .hide_default_value(true)))]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output folder (created if missing; with --resume, the resumed folder by default).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Continue the run whose output folder this is, from its checkpoint (the dataset and the
    /// job come from there; settings given here change the job, and the changes are logged).
    #[arg(long, value_name = "OUT")]
    pub resume: Option<PathBuf>,
    /// Write a checkpoint (and refresh the outputs and the report) every N epochs. One is
    /// always written at the end of the run and when it is interrupted (gradient engine).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Progress as one JSON object per epoch on stdout (and the logs as JSON on stderr).
    #[arg(long)]
    pub json: bool,
    /// Detector saturation count: pixels reaching it in any frame are masked (default: the
    /// level of a clipped, flat frame maximum, when one is found).
    #[arg(long, value_name = "COUNTS")]
    pub saturation: Option<f32>,
    /// TOML job file with every setting (command-line flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Engine: adam (gradient engine with Adam), sgd (plain gradient descent), epie, rpie, dm or
    /// raar. Settings of each are in the job file's [gradient], [pie] and [dm] tables.
    #[arg(long)]
    pub engine: Option<String>,
    /// Setup parameters to refine: any of positions,distance, or none. The classical engines
    /// keep the distance; ePIE and rPIE refine positions, DM and RAAR do not.
    #[arg(long, value_delimiter = ',')]
    pub refine: Option<Vec<String>>,
    /// Number of epochs (of whichever engine runs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Positions per minibatch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Number of probe modes.
    #[arg(long)]
    pub modes: Option<usize>,
    /// Seed of the minibatch shuffling (and of the ePIE/rPIE position order).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar, only errors in the log.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Overrides that the command line puts on top of a job file.
#[derive(Default)]
pub struct Overrides {
    pub engine: Option<String>,
    pub refine: Option<Vec<String>>,
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub modes: Option<usize>,
    pub seed: Option<u64>,
}

/// Applies command-line overrides to a job.
pub fn apply(job: &mut Job, o: &Overrides) -> anyhow::Result<()> {
    if let Some(e) = &o.engine {
        job.engine = Some(e.clone());
    }
    if let Some(list) = &o.refine {
        let (mut positions, mut distance) = (false, false);
        for item in list {
            match item.trim() {
                "positions" => positions = true,
                "distance" => distance = true,
                "none" => {}
                other => bail!(
                    "--refine: unknown parameter '{other}' (expected positions, distance or none)"
                ),
            }
        }
        job.gradient.positions.enabled = positions;
        job.gradient.distance.enabled = distance;
        job.pie.positions.enabled = positions;
    }
    if let Some(v) = o.epochs {
        job.gradient.epochs = v;
        job.pie.epochs = v;
        job.dm.epochs = v;
    }
    if let Some(v) = o.batch {
        job.gradient.batch = v;
    }
    if let Some(v) = o.modes {
        job.model.modes = v;
    }
    if let Some(v) = o.seed {
        job.gradient.seed = v;
        job.pie.seed = v;
    }
    job.validate()?;
    Ok(())
}

/// Runs the job's engine on `data` with a progress bar (or JSON progress lines), writes the
/// outputs, the report and (gradient engine, when `extras.meta` is given) the checkpoints into
/// `output`; scores against `extras.truth` when given. Also returns the wall-clock seconds.
pub fn run_job_ext(
    data: &Dataset,
    job: &Job,
    output: &Path,
    quiet: bool,
    extras: RunExtras,
) -> anyhow::Result<(Outcome, f64, Option<Score>)> {
    run_job_full(data, job, output, quiet, None, extras)
}

/// [`run_job_ext`] with an optional wall-clock budget (s), no checkpoints and no score: the run ends after the first epoch that
/// ends past it (a run that ends so is not "stopped early"). Also returns the wall-clock
/// seconds of the whole run, preparation (alignment, distance search) included.
pub fn run_job_with(
    data: &Dataset,
    job: &Job,
    output: &Path,
    quiet: bool,
    budget: Option<f64>,
) -> anyhow::Result<(Outcome, f64)> {
    let (outcome, seconds, _) =
        run_job_full(data, job, output, quiet, budget, RunExtras::default())?;
    Ok((outcome, seconds))
}

fn run_job_full(
    data: &Dataset,
    job: &Job,
    output: &Path,
    quiet: bool,
    budget: Option<f64>,
    mut extras: RunExtras,
) -> anyhow::Result<(Outcome, f64, Option<Score>)> {
    let kind = EngineKind::of(job)?;
    let quiet = quiet || extras.json;
    // A resumed run does not repeat the preparation stages it had finished.
    let prepared = extras.resume.as_ref().is_some_and(|c| c.start.is_some());
    let epochs = kind.epochs(job) as u64;
    let g = &job.gradient;
    if !kind.is_gradient() {
        if !quiet {
            eprintln!(
                "{}: the distance stays at {:.6} m{}",
                kind.name(),
                data.geometry.refined_distance(),
                match kind {
                    EngineKind::Epie | EngineKind::Rpie if job.pie.positions.enabled => {
                        "; positions are refined"
                    }
                    _ => "; positions stay as given",
                }
            );
        }
    } else if prepared {
        if !quiet {
            eprintln!("the preparation stages are done: the joint run continues");
        }
    } else if !quiet && g.positions.enabled && g.alignment.rounds > 0 {
        eprintln!(
            "aligning positions{}: {} rounds of {} epochs{} before the main run ...",
            if g.distance.enabled {
                " and distance"
            } else {
                ""
            },
            g.alignment.rounds,
            g.alignment.epochs,
            if g.distance.enabled && g.distance_search.enabled {
                ", each followed by a distance search"
            } else {
                ""
            }
        );
    } else if !quiet && g.distance.enabled && g.distance_search.enabled {
        eprintln!("searching the distance before the main run ...");
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(epochs)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let start = std::time::Instant::now();
    let out_of_time = AtomicBool::new(false);
    let stop = signals::stop_flag();
    let json = extras.json;
    let mut on_epoch = |s: &EpochStats| {
        if budget.is_some_and(|b| start.elapsed().as_secs_f64() >= b) {
            out_of_time.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::SeqCst);
        }
        if json {
            logging::epoch_line(s, epochs as usize);
        }
        bar.set_position(s.epoch as u64);
        bar.set_message(format!(
            "loss {:.4e}  distance {:.5} m  median correction {:.2} px",
            s.loss, s.distance, s.median_correction
        ));
    };
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: Some(stop),
    };
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let start_distance = data.geometry.refined_distance();
    let mut outcome = {
        let resume = extras.resume.take();
        let extras_ref = &extras;
        let mut save = |c: &Checkpoint, rec: &Reconstruction| {
            save_checkpoint(output, c, rec, extras_ref, job, start_distance)
                .map_err(|e| autopty::Error::invalid("checkpoint", format!("{e:#}")))
        };
        let mut ck = Checkpointing::new(extras.checkpoint_every, resume, &mut save);
        let use_ck = kind.is_gradient() && extras.meta.is_some();
        if !use_ck && ck.resume.is_some() {
            bail!(
                "{}: only the gradient engine (adam, sgd) resumes from a checkpoint",
                kind.name()
            );
        }
        engines::run_resumable(data, job, kind, control, use_ck.then_some(&mut ck))?
    };
    let seconds = start.elapsed().as_secs_f64();
    signals::clear_unless_signalled();
    bar.finish();
    if out_of_time.load(Ordering::Relaxed)
        && outcome
            .stopped_early
            .as_deref()
            .is_some_and(|why| why.starts_with("interrupted"))
    {
        outcome.stopped_early = None;
    }
    outputs::write(
        output,
        &outcome.reconstruction,
        outcome.stopped_early.as_deref(),
        outcome.work.as_ref(),
    )
    .with_context(|| format!("writing the outputs to {}", output.display()))?;
    let rec = &outcome.reconstruction;
    let result = match extras.truth {
        Some(t) => match score(rec, t) {
            Ok(s) => Some(s),
            Err(e) => {
                extras.notes.push(format!("no score: {e}"));
                None
            }
        },
        None => None,
    };
    extras
        .notes
        .extend(preparation_notes(&outcome, job).into_iter().map(|n| n.1));
    let status = match (&outcome.stopped_early, signals::signalled()) {
        (Some(why), true) if extras.meta.is_some() && kind.is_gradient() => format!(
            "Interrupted ({why}); resume with: autopty reconstruct --resume {}",
            output.display()
        ),
        (Some(why), _) => format!("Stopped early: {why}"),
        (None, _) => format!("Complete: {} epochs.", rec.history.len()),
    };
    let last = rec.history.last();
    let timings = vec![
        (
            "wall-clock time".to_string(),
            format!("{seconds:.1} s (preparation stages included)"),
        ),
        (
            "time per epoch".to_string(),
            last.map_or("n/a".into(), |s| {
                format!("{:.3} s", s.seconds / s.epoch.max(1) as f64)
            }),
        ),
    ];
    session::write_report(
        output,
        rec,
        &extras,
        status,
        start_distance,
        result.as_ref(),
        timings,
        job,
    )?;
    if let Some(why) = &outcome.stopped_early {
        if !signals::signalled() {
            eprintln!("warning: the run stopped early: {why}");
        }
    }
    Ok((outcome, seconds, result))
}

/// Writes a checkpoint; a periodic one (the run goes on) also refreshes the outputs and the
/// report. The final and the interrupted ones leave those to the end of the run.
fn save_checkpoint(
    output: &Path,
    c: &Checkpoint,
    rec: &Reconstruction,
    extras: &RunExtras,
    job: &Job,
    start_distance: f64,
) -> anyhow::Result<()> {
    let Some(meta) = &extras.meta else {
        return Ok(());
    };
    checkpoint::write(&output.join(checkpoint::FILE_NAME), c, meta)?;
    let periodic = c
        .joint
        .as_ref()
        .is_some_and(|j| !j.shuffled && j.epoch <= j.settings.epochs);
    if periodic {
        let epoch = rec.history.last().map_or(0, |s| s.epoch);
        tracing::info!("checkpoint after epoch {epoch} in {}", output.display());
        outputs::write(output, rec, None, None)?;
        let result = extras.truth.and_then(|t| score(rec, t).ok());
        let status = format!(
            "Checkpoint after epoch {epoch} of {} (the run is still going).",
            job.gradient.epochs
        );
        session::write_report(
            output,
            rec,
            extras,
            status,
            start_distance,
            result.as_ref(),
            vec![],
            job,
        )?;
    }
    Ok(())
}

/// Prints what ran before the main gradient run: the alignment rounds or the distance search.
pub fn report_preparation(outcome: &Outcome, job: &Job) {
    for (warning, line) in preparation_notes(outcome, job) {
        if warning {
            eprintln!("warning: {line}");
        } else {
            println!("{line}");
        }
    }
}

/// What ran before the main gradient run, as lines (true: a warning).
pub fn preparation_notes(outcome: &Outcome, job: &Job) -> Vec<(bool, String)> {
    let mut notes = Vec::new();
    macro_rules! note {
        ($($t:tt)*) => { notes.push((false, format!($($t)*))) };
    }
    if let Some(r) = &outcome.registration {
        let mut lengths: Vec<f64> = r
            .corrections
            .outer_iter()
            .map(|c| c[0].hypot(c[1]))
            .collect();
        lengths.sort_by(f64::total_cmp);
        note!(
            "registration from the holograms: {} of {} neighbour pairs agree (median misfit {:.2} px), \
             median position correction {:.2} px",
            r.pairs_kept,
            r.pairs,
            r.median_misfit,
            lengths.get(lengths.len() / 2).copied().unwrap_or(0.0)
        );
        if job.gradient.fix_scan_affine {
            if r.trusted(job.gradient.registration.trusted_fraction) {
                note!(
                    "  the scan's offset, scale, rotation and shear are held at the registration's"
                );
            } else {
                note!(
                    "  too few pairs agree to trust the scan's scale: it is refined freely (set \
                     registration.trusted_fraction to change this)"
                );
            }
        }
        if r.unregistered > 0 {
            note!(
                "  {} frames share no reliable pair with a neighbour and start at their nominal positions",
                r.unregistered
            );
        }
    }
    if let Some(found) = outcome.distance_search.as_ref().filter(|f| !f.interior) {
        notes.push((true, edge_warning(found)));
    } else if let Some(found) = &outcome.distance_search {
        note!(
            "distance search: {:.6} m ({} trials of {} epochs){}",
            found.distance,
            found.trials.len(),
            job.gradient.distance_search.epochs,
            if outcome.alignment.is_some() {
                "; the alignment rounds start there"
            } else {
                "; the refinement starts there"
            }
        );
    }
    if let Some(aligned) = &outcome.alignment {
        for (k, r) in aligned.rounds.iter().enumerate() {
            note!(
                "alignment round {}: distance {:.6} m, median position correction {:.2} px ({:.0} s)",
                k + 1,
                r.distance,
                r.median_correction,
                r.seconds
            );
            for m in &r.rescued {
                note!(
                    "  frame {} (loss {:.1} times the median frame's) searched and moved by \
                     ({:+.0}, {:+.0}) px, where its loss is {:.2} of that at the old place",
                    m.frame,
                    m.loss_ratio,
                    m.offset[0],
                    m.offset[1],
                    m.search_ratio
                );
            }
            if let Some(found) = r.search.as_ref().filter(|f| !f.interior) {
                if (r.distance - found.distance).abs() > 0.0 {
                    note!(
                        "  (its distance search still sloped at the end of its interval: moved there)"
                    );
                } else {
                    notes.push((true, edge_warning(found)));
                }
            }
        }
    }
    if let Some(kept) = outcome
        .restart_losses
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(k, _)| k + 1)
    {
        let losses: Vec<String> = outcome
            .restart_losses
            .iter()
            .map(|l| format!("{l:.4e}"))
            .collect();
        note!(
            "restarts: final losses {}; kept restart {kept} (the other notes are its own)",
            losses.join(", ")
        );
    }
    for (pass, g) in outcome.curvature_gauge.iter().enumerate() {
        if g.applied {
            note!(
                "curvature gauge, pass {}: the probe's net curvature ({:+.4} /m) moved into the \
                 geometry: scan and propagation distance scaled by {:.5}, distance {:.6} -> {:.6} m",
                pass + 1,
                g.curvature,
                g.factor,
                g.distance_before,
                g.distance
            );
        } else {
            notes.push((
                true,
                format!(
                    "curvature gauge: the fitted probe curvature ({:+.4} /m) would scale the scan \
                     by {:.4}, more than the {} % this fit is trusted with; left as it was",
                    g.curvature,
                    g.factor,
                    100.0 * autopty::engines::curvature_gauge::MAX_SCALE_CHANGE
                ),
            ));
        }
        if g.astigmatism_applied {
            note!(
                "curvature gauge, pass {}: the propagation's astigmatism ({:+.5}, {:+.5}) moved \
                 into the scan's shape",
                pass + 1,
                g.astigmatism[0],
                g.astigmatism[1]
            );
        } else if g.astigmatism != [0.0; 2] {
            notes.push((
                true,
                format!(
                    "curvature gauge: the refined astigmatism ({:+.4}, {:+.4}) is more than the \
                     {} % this stage is trusted with; the scan's shape was left as it was",
                    g.astigmatism[0],
                    g.astigmatism[1],
                    100.0 * autopty::engines::curvature_gauge::MAX_SCALE_CHANGE
                ),
            ));
        }
    }
    notes
}

fn edge_warning(found: &SearchResult) -> String {
    format!(
        "distance search: the loss was lowest at an end of the searched interval \
         ({:.6} to {:.6} m), so the distance was left at {:.6} m; check the positions (large \
         errors favour long distances) or widen distance_search.range",
        found
            .trials
            .iter()
            .map(|t| t.distance)
            .fold(f64::INFINITY, f64::min),
        found.trials.iter().map(|t| t.distance).fold(0.0, f64::max),
        found.distance,
    )
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let overrides = Overrides {
        engine: args.engine.clone(),
        refine: args.refine.clone(),
        epochs: args.epochs,
        batch: args.batch,
        modes: args.modes,
        seed: args.seed,
    };
    let mut notes = Vec::new();
    let (input, job, resume, meta, output) = match &args.resume {
        Some(dir) => {
            let resumed = session::load(dir)?;
            let mut job = match &args.config {
                Some(p) => Job::from_file(p)?,
                None => resumed.job.clone(),
            };
            apply(&mut job, &overrides)?;
            let changes = changed_settings(
                &serde_json::to_value(&resumed.job)?,
                &serde_json::to_value(&job)?,
            );
            let epoch = resumed
                .checkpoint
                .joint
                .as_ref()
                .map_or(0, |j| j.history.len());
            let line = format!(
                "resuming {} after epoch {epoch}{}",
                dir.display(),
                if changes.is_empty() {
                    String::new()
                } else {
                    format!("; changed: {}", changes.join(", "))
                }
            );
            tracing::info!("{line}");
            if !args.quiet && !args.json {
                eprintln!("{line}");
            }
            notes.push(line);
            let output = args.output.clone().unwrap_or_else(|| dir.clone());
            (
                resumed.input,
                job,
                Some(resumed.checkpoint),
                resumed.meta,
                output,
            )
        }
        None => {
            let Some(output) = args.output.clone() else {
                bail!("--output OUT is needed (or --resume OUT to continue a run)");
            };
            let mut job = match &args.config {
                Some(p) => Job::from_file(p)?,
                None => Job::default(),
            };
            apply(&mut job, &overrides)?;
            let cwd = std::env::current_dir().context("reading the current folder")?;
            let meta = session::meta(&session::own_argv(), &cwd, &job)?;
            (args.input.clone(), job, None, meta, output)
        }
    };
    let mut meta = meta;
    if let Some(m) = meta.as_object_mut() {
        m.insert("job_toml".into(), toml::to_string(&job)?.into());
    }
    job.validate()?;
    let mut data = input.load()?;
    let guarded = autopty::guards::guard(
        &mut data,
        &input.dataset.display().to_string(),
        args.saturation,
    )?;
    for line in guarded.notes() {
        tracing::warn!("{line}");
        notes.push(line);
    }
    let truth_file = super::simulate::truth_path(&input.dataset);
    let truth = if truth_file.exists() {
        Some(autopty::io::truth::read(&truth_file)?)
    } else {
        None
    };
    let extras = RunExtras {
        checkpoint_every: args.checkpoint_every,
        resume,
        meta: Some(meta),
        truth: truth.as_ref(),
        title: input.dataset.file_name().map_or_else(
            || input.dataset.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        notes,
        json: args.json,
    };
    let (outcome, seconds, result) = run_job_ext(&data, &job, &output, args.quiet, extras)?;
    if let Some(s) = &result {
        super::score::write_score(&output, s)?;
    }
    finish(
        &outcome,
        &job,
        &output,
        seconds,
        data.geometry.refined_distance(),
        args.json,
        true,
    )
}

/// Prints the end of a run (a JSON line, or with `summary` the preparation stages and a summary)
/// and, when a signal stopped the run, how to resume it, and exits with status 130.
pub fn finish(
    outcome: &Outcome,
    job: &Job,
    output: &Path,
    seconds: f64,
    start_distance: f64,
    json: bool,
    summary: bool,
) -> anyhow::Result<()> {
    let rec = &outcome.reconstruction;
    let last = rec.history.last();
    let resumable = EngineKind::of(job)?.is_gradient();
    if json {
        logging::json_line(
            if signals::signalled() {
                "interrupted"
            } else {
                "finished"
            },
            serde_json::json!({
                "epochs": rec.history.len(),
                "loss": last.map(|s| s.loss),
                "distance_m": rec.geometry.refined_distance(),
                "seconds": seconds,
                "output": output.display().to_string(),
                "stopped_early": outcome.stopped_early,
                "epoch_equivalents": outcome.work.as_ref().map(|w| w.epoch_equivalents),
                "resume": resumable.then(|| format!("autopty reconstruct --resume {}", output.display())),
            }),
        );
    } else if summary {
        report_preparation(outcome, job);
        println!(
            "{} epochs in {:.1} s; final loss {:.4e}; distance {:.6} m (started at {:.6} m)",
            rec.history.len(),
            last.map_or(0.0, |s| s.seconds),
            last.map_or(f64::NAN, |s| s.loss),
            rec.geometry.refined_distance(),
            start_distance
        );
        if let Some(w) = &outcome.work {
            let stages: Vec<String> = w
                .stages
                .iter()
                .map(|s| format!("{} {:.1}", s.stage, s.epoch_equivalents))
                .collect();
            println!(
                "work: {:.1} epoch-equivalents ({}; frame evaluations: {} with gradients, {} \
                 loss only at {} each)",
                w.epoch_equivalents,
                stages.join(", "),
                w.gradient_frames,
                w.loss_frames,
                autopty::work::LOSS_ONLY_COST
            );
        }
        println!(
            "outputs written to {} (report: {})",
            output.display(),
            output.join("report.html").display()
        );
    }
    if signals::signalled() {
        if resumable {
            eprintln!(
                "interrupted: the state and the outputs are written; continue with\n  autopty reconstruct --resume {}",
                output.display()
            );
        } else {
            eprintln!(
                "interrupted: the outputs of the last state are written ({} cannot resume)",
                rec.engine
            );
        }
        std::process::exit(signals::INTERRUPTED_EXIT);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_every_engine_and_bad_engines_are_named() {
        let mut job = Job::default();
        apply(
            &mut job,
            &Overrides {
                engine: Some("rpie".into()),
                refine: Some(vec!["none".into()]),
                epochs: Some(7),
                seed: Some(3),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(EngineKind::of(&job).unwrap(), EngineKind::Rpie);
        assert_eq!(EngineKind::Rpie.epochs(&job), 7);
        assert_eq!((job.gradient.epochs, job.dm.epochs), (7, 7));
        assert_eq!((job.gradient.seed, job.pie.seed), (3, 3));
        assert!(!job.pie.positions.enabled && !job.gradient.distance.enabled);
        let e = apply(
            &mut job,
            &Overrides {
                engine: Some("hio".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hio") && e.contains("raar"), "{e}");
    }
}
