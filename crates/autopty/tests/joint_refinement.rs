//! End to end, the scenario at test size (`paper_small`: 64 px frames, 7 x 7 positions,
//! the paper's object detail per pixel): the stored distance is 30 % long and every stored
//! position errs by 5 px (Gaussian; 10 px at the paper's 128 px frames). The default job
//! (registration, distance search, alignment rounds, curvature gauge, joint run) must meet the
//! issue's bars, and the same run with refinement off must be far worse. Also the restarts.

use autopty::engines::gradient::GradientSettings;
use autopty::engines::{gradient, Control};
use autopty::metrics::{score, Score};
use autopty::model::ModelSettings;

/// Runs the gradient engine with `settings` and scores the result.
fn reconstruct(
    data: &autopty::Dataset,
    truth: &autopty::Truth,
    settings: &GradientSettings,
) -> Score {
    let refine = settings.positions.enabled;
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let outcome = gradient::run(data, &ModelSettings::default(), settings, control).unwrap();
    assert!(outcome.stopped_early.is_none());
    assert_eq!(outcome.alignment.is_some(), refine);
    let s = score(&outcome.reconstruction, truth).unwrap();
    eprintln!("refine = {refine}:\n{}", autopty::metrics::format_table(&s));
    s
}

#[test]
fn recovers_distance_and_positions_from_corrupted_metadata() {
    let cfg = autopty::sim::preset("paper_small").unwrap();
    assert_eq!(cfg.corruption.distance_error, 0.3);
    assert_eq!(cfg.corruption.position_jitter, 5.0);
    let (data, truth) = autopty::sim::simulate(&cfg).unwrap();
    // The object is cut from the pictures at the paper's detail per pixel (576 px there).
    assert_eq!(truth.object.dim(), (216, 216));

    let run = |refine: bool| {
        let mut settings = GradientSettings::default();
        settings.positions.enabled = refine;
        settings.distance.enabled = refine;
        reconstruct(&data, &truth, &settings)
    };
    let on = run(true);
    let off = run(false);
    // Measured (2026-12-01, the default job): distance error 0.20 %, median / p90 position
    // error 0.09 / 0.14 px (0.02 px with the scan's affine part removed), magnitude / phase
    // SSIM 0.956 / 0.988; the true geometry gives 0.960 / 0.990. The bars are the issue's.
    let dz = on.distance_error_rel.unwrap().abs();
    assert!(dz < 0.01, "distance error {dz}");
    assert!(
        on.position_error_median.unwrap() < 0.5,
        "median position error {:?}",
        on.position_error_median
    );
    assert!(
        on.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        on.ssim_magnitude
    );
    assert!(on.ssim_phase > 0.9, "phase SSIM {}", on.ssim_phase);
    assert!(
        off.ssim_magnitude < on.ssim_magnitude - 0.3,
        "magnitude SSIM {} with the stored metadata vs {} refined",
        off.ssim_magnitude,
        on.ssim_magnitude
    );
    assert!(off.position_error_median.unwrap() > 3.0);
}

/// The scenario at full size (`paper` at 0.1 m: 121 frames of 128 px, stored distance
/// 30 % long, 10 px position errors) with the job `examples/reconstruct_500.toml`: the bars
/// within 500 epoch-equivalents as counted. (At 64 px frames this job misses them: its
/// distance trials on a quarter of 49 frames are too few.)
#[test]
fn meets_the_bars_within_500_epochs_at_full_size() {
    let mut cfg = autopty::sim::preset("paper").unwrap();
    cfg.geometry.distance = 0.1;
    let (data, truth) = autopty::sim::simulate(&cfg).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/reconstruct_500.toml");
    let job = autopty::job::Job::from_file(&path).unwrap();
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let outcome = gradient::run(&data, &job.model, &job.gradient, control).unwrap();
    let work = outcome
        .work
        .as_ref()
        .expect("the gradient engine counts its work");
    let s = score(&outcome.reconstruction, &truth).unwrap();
    eprintln!(
        "{:.1} epoch-equivalents\n{}",
        work.epoch_equivalents,
        autopty::metrics::format_table(&s)
    );
    // Measured (2026-12-01, the same data through the CLI): 468.1 epoch-equivalents, distance
    // error 0.15 %, median / p90 position error 0.16 / 0.30 px, magnitude / phase SSIM
    // 0.945 / 0.943.
    assert!(work.epoch_equivalents <= 500.0, "{work:?}");
    let dz = s.distance_error_rel.unwrap().abs();
    assert!(dz < 0.01, "distance error {dz}");
    let median = s.position_error_median.unwrap();
    assert!(median < 0.5, "median position error {median}");
    assert!(
        s.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
}

#[test]
fn restarts_keep_the_run_with_the_lowest_final_loss() {
    let (data, _) = autopty::sim::simulate(&autopty::sim::preset("small").unwrap()).unwrap();
    let mut settings = GradientSettings {
        epochs: 15,
        seed: 5,
        ..GradientSettings::default()
    };
    settings.registration.enabled = false;
    settings.distance_search.enabled = false;
    settings.alignment.rounds = 0;
    settings.curvature_gauge.enabled = false;
    let run = |settings: &GradientSettings| {
        let mut on_epoch = |_: &autopty::EpochStats| {};
        let control = Control {
            on_epoch: &mut on_epoch,
            stop: None,
        };
        gradient::run(&data, &ModelSettings::default(), settings, control).unwrap()
    };
    let final_loss = |o: &autopty::engines::Outcome| o.reconstruction.history.last().unwrap().loss;
    let single: Vec<_> = [5, 6, 7]
        .map(|seed| {
            run(&GradientSettings {
                seed,
                ..settings.clone()
            })
        })
        .into_iter()
        .collect();
    let losses: Vec<f64> = single.iter().map(final_loss).collect();
    assert!(single.iter().all(|o| o.restart_losses.is_empty()));
    // No preparation stage ran: the work is the joint run's epochs, every frame once each.
    for o in &single {
        let work = o
            .work
            .as_ref()
            .expect("the gradient engine counts its work");
        assert_eq!(work.epoch_equivalents, 15.0, "{work:?}");
        assert_eq!(work.gradient_frames, 15 * data.len() as u64);
        assert_eq!(work.loss_frames, 0);
    }
    let best = run(&GradientSettings {
        restarts: 3,
        ..settings.clone()
    });
    // Each restart is the run with its own seed, step for step.
    assert_eq!(best.restart_losses, losses);
    let work = best.work.as_ref().unwrap();
    assert_eq!(work.epoch_equivalents, 45.0, "{work:?}");
    assert_eq!(work.stages.len(), 3, "{work:?}");
    assert_eq!(work.stages[2].stage, "restart 3: joint run");
    let lowest = (0..3)
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap();
    assert_eq!(final_loss(&best), losses[lowest]);
    assert_eq!(
        best.reconstruction.object,
        single[lowest].reconstruction.object
    );
    assert!(losses.iter().any(|&l| l != losses[lowest]), "{losses:?}");
    let e = GradientSettings {
        restarts: 0,
        ..settings
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("restarts"), "{e}");
}
