//! `autopty reconstruct`: run an engine on a dataset and write the outputs.

use super::input::InputArgs;
use anyhow::{bail, Context};
use autopty::engines::distance_search::SearchResult;
use autopty::engines::{self, Control, EngineKind, Outcome};
use autopty::io::outputs;
use autopty::job::Job;
use autopty::{Dataset, EpochStats};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Arguments of `autopty reconstruct`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output folder (created if missing).
    #[arg(short, long)]
    pub output: PathBuf,
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
    /// No progress bar.
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

/// Runs the job's engine on `data` with a progress bar, writes the outputs into `output`.
pub fn run_job(data: &Dataset, job: &Job, output: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    Ok(run_job_with(data, job, output, quiet, None)?.0)
}

/// [`run_job`] with an optional wall-clock budget (s): the run ends after the first epoch that
/// ends past it (a run that ends so is not "stopped early"). Also returns the wall-clock
/// seconds of the whole run, preparation (alignment, distance search) included.
pub fn run_job_with(
    data: &Dataset,
    job: &Job,
    output: &Path,
    quiet: bool,
    budget: Option<f64>,
) -> anyhow::Result<(Outcome, f64)> {
    let kind = EngineKind::of(job)?;
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
    let mut on_epoch = |s: &EpochStats| {
        if budget.is_some_and(|b| start.elapsed().as_secs_f64() >= b) {
            out_of_time.store(true, Ordering::Relaxed);
        }
        bar.set_position(s.epoch as u64);
        bar.set_message(format!(
            "loss {:.4e}  distance {:.5} m  median correction {:.2} px",
            s.loss, s.distance, s.median_correction
        ));
    };
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: Some(&out_of_time),
    };
    let mut outcome = engines::run(data, job, kind, control)?;
    let seconds = start.elapsed().as_secs_f64();
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
    )
    .with_context(|| format!("writing the outputs to {}", output.display()))?;
    if let Some(why) = &outcome.stopped_early {
        eprintln!("warning: the run stopped early: {why}");
    }
    Ok((outcome, seconds))
}

/// Prints what ran before the main gradient run: the alignment rounds or the distance search.
pub fn report_preparation(outcome: &Outcome, job: &Job) {
    if let Some(r) = &outcome.registration {
        let mut lengths: Vec<f64> = r
            .corrections
            .outer_iter()
            .map(|c| c[0].hypot(c[1]))
            .collect();
        lengths.sort_by(f64::total_cmp);
        println!(
            "registration from the holograms: {} of {} neighbour pairs agree (median misfit {:.2} px), \
             median position correction {:.2} px",
            r.pairs_kept,
            r.pairs,
            r.median_misfit,
            lengths.get(lengths.len() / 2).copied().unwrap_or(0.0)
        );
        if job.gradient.fix_scan_affine {
            if r.trusted(job.gradient.registration.trusted_fraction) {
                println!(
                    "  the scan's offset, scale, rotation and shear are held at the registration's"
                );
            } else {
                println!(
                    "  too few pairs agree to trust the scan's scale: it is refined freely (set \
                     registration.trusted_fraction to change this)"
                );
            }
        }
        if r.unregistered > 0 {
            println!(
                "  {} frames share no reliable pair with a neighbour and start at their nominal positions",
                r.unregistered
            );
        }
    }
    if let Some(found) = outcome.distance_search.as_ref().filter(|f| !f.interior) {
        warn_edge(found);
    } else if let Some(found) = &outcome.distance_search {
        println!(
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
            println!(
                "alignment round {}: distance {:.6} m, median position correction {:.2} px ({:.0} s)",
                k + 1,
                r.distance,
                r.median_correction,
                r.seconds
            );
            if let Some(found) = r.search.as_ref().filter(|f| !f.interior) {
                if (r.distance - found.distance).abs() > 0.0 {
                    println!(
                        "  (its distance search still sloped at the end of its interval: moved there)"
                    );
                } else {
                    warn_edge(found);
                }
            }
        }
    }
}

fn warn_edge(found: &SearchResult) {
    eprintln!(
        "warning: distance search: the loss was lowest at an end of the searched interval \
         ({:.6} to {:.6} m), so the distance was left at {:.6} m; check the positions (large \
         errors favour long distances) or widen distance_search.range",
        found
            .trials
            .iter()
            .map(|t| t.distance)
            .fold(f64::INFINITY, f64::min),
        found.trials.iter().map(|t| t.distance).fold(0.0, f64::max),
        found.distance,
    );
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = match &args.config {
        Some(p) => Job::from_file(p)?,
        None => Job::default(),
    };
    apply(
        &mut job,
        &Overrides {
            engine: args.engine.clone(),
            refine: args.refine.clone(),
            epochs: args.epochs,
            batch: args.batch,
            modes: args.modes,
            seed: args.seed,
        },
    )?;
    let data = args.input.load()?;
    let outcome = run_job(&data, &job, &args.output, args.quiet)?;
    let rec = &outcome.reconstruction;
    let last = rec.history.last();
    report_preparation(&outcome, &job);
    println!(
        "{} epochs in {:.1} s; final loss {:.4e}; distance {:.6} m (started at {:.6} m)",
        rec.history.len(),
        last.map_or(0.0, |s| s.seconds),
        last.map_or(f64::NAN, |s| s.loss),
        rec.geometry.refined_distance(),
        data.geometry.refined_distance()
    );
    println!("outputs written to {}", args.output.display());
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
