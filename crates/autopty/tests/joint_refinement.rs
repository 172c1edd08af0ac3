//! End to end, the scenario at the `small` size: the stored distance is 30 % long and
//! every stored position errs by 5 px (Gaussian). The alignment rounds, the distance searches
//! and the joint gradient run must recover both, and the result must beat a run that trusts
//! the metadata by a wide margin.

use autopty::engines::gradient::GradientSettings;
use autopty::engines::{gradient, Control};
use autopty::metrics::{score, Score};
use autopty::model::ModelSettings;

fn reconstruct(data: &autopty::Dataset, truth: &autopty::Truth, refine: bool) -> Score {
    let mut settings = GradientSettings {
        epochs: 200,
        ..GradientSettings::default()
    };
    settings.object.lr = 0.05;
    settings.probe.lr = 0.05;
    settings.positions.lr = 0.2;
    settings.positions.start_epoch = 2;
    settings.positions.enabled = refine;
    settings.distance.enabled = refine;
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let outcome = gradient::run(data, &ModelSettings::default(), &settings, control).unwrap();
    assert!(outcome.stopped_early.is_none());
    assert_eq!(outcome.alignment.is_some(), refine);
    let s = score(&outcome.reconstruction, truth).unwrap();
    eprintln!("refine = {refine}:\n{}", autopty::metrics::format_table(&s));
    s
}

#[test]
fn recovers_distance_and_positions_from_corrupted_metadata() {
    let cfg = autopty::sim::preset("small").unwrap();
    assert_eq!(cfg.corruption.distance_error, 0.3);
    assert_eq!(cfg.corruption.position_jitter, 5.0);
    let (data, truth) = autopty::sim::simulate(&cfg).unwrap();

    let on = reconstruct(&data, &truth, true);
    let off = reconstruct(&data, &truth, false);
    // Measured (registration from the holograms, 6 alignment rounds; only 76 % of the
    // neighbour pairs agree at this small frame size, so the scan's affine part is refined
    // freely; the object band-limited at 0.32 cycles/px): distance error 0.99 %, median / p90
    // position error 0.55 / 0.99 px, 0.047 px with the scan's affine part removed, magnitude /
    // phase SSIM 0.75 / 0.88 (0.57 / 0.81 before the band limit); with the stored metadata 30 %
    // and 6.2 px, SSIM below 0.1. What is left of the position errors is the scan's affine part,
    // which the data hardly pin (see the README, "How a wrong setup is refined").
    let dz = on.distance_error_rel.unwrap().abs();
    assert!(dz < 0.015, "distance error {dz}");
    assert!(
        on.position_error_median.unwrap() < 0.8,
        "median position error {:?}",
        on.position_error_median
    );
    assert!(
        on.position_error_affine_median.unwrap() < 0.2,
        "median position error without the affine part {:?}",
        on.position_error_affine_median
    );
    assert!(on.ssim_phase > 0.8, "phase SSIM {}", on.ssim_phase);
    assert!(
        on.ssim_magnitude > 0.65,
        "magnitude SSIM {}",
        on.ssim_magnitude
    );
    assert!(
        off.ssim_phase < on.ssim_phase - 0.4,
        "phase SSIM {} with the stored metadata vs {} refined",
        off.ssim_phase,
        on.ssim_phase
    );
    assert!(off.position_error_median.unwrap() > 5.0);
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
    let best = run(&GradientSettings {
        restarts: 3,
        ..settings.clone()
    });
    // Each restart is the run with its own seed, step for step.
    assert_eq!(best.restart_losses, losses);
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
