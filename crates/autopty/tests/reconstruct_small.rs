//! End to end: simulate the `small` preset with correct metadata, reconstruct with the gradient
//! engine (object and probe only) and score against the truth.

use autopty::engines::gradient::GradientSettings;
use autopty::engines::{gradient, Control};
use autopty::metrics::score;
use autopty::model::ModelSettings;

#[test]
fn small_preset_with_correct_metadata_reconstructs() {
    let mut cfg = autopty::sim::preset("small").unwrap();
    cfg.corruption.position_jitter = 0.0;
    cfg.corruption.distance_error = 0.0;
    let (data, truth) = autopty::sim::simulate(&cfg).unwrap();
    let mut settings = GradientSettings {
        epochs: 100,
        ..GradientSettings::default()
    };
    settings.object.lr = 0.05;
    settings.probe.lr = 0.05;
    settings.positions.enabled = false;
    settings.distance.enabled = false;
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let outcome = gradient::run(&data, &ModelSettings::default(), &settings, control).unwrap();
    assert!(outcome.stopped_early.is_none());
    let rec = outcome.reconstruction;
    let first = rec.history.first().unwrap().loss;
    let last = rec.history.last().unwrap().loss;
    assert!(
        last < first / 100.0,
        "loss fell only from {first:e} to {last:e}"
    );
    let s = score(&rec, &truth).unwrap();
    // Measured 0.71 / 0.91 / 0.056 in 100 epochs (see the issue notes); the bounds leave room
    // for thread-order rounding.
    assert!(
        s.ssim_magnitude > 0.6,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
    assert!(s.ssim_phase > 0.85, "phase SSIM {}", s.ssim_phase);
    assert!(s.nrmse < 0.08, "NRMSE {}", s.nrmse);
}
