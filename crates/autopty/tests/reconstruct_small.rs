//! End to end: simulate the `small` preset with correct metadata, reconstruct with the gradient
//! engine (object and probe only) and score against the truth.

use autopty::engines::gradient::GradientSettings;
use autopty::engines::{gradient, Control};
use autopty::metrics::score;
use autopty::model::ModelSettings;
use autopty::ops::band_limit::{BandLimit, EDGE_WIDTH};
use ndarray::Array2;
use num_complex::Complex32;

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
    let s = score(&rec, &truth).unwrap();
    eprintln!(
        "loss {first:e} -> {last:e}\n{}",
        autopty::metrics::format_table(&s)
    );
    // Measured: the loss fell 104x (the band-limited object does not fit the noise of the
    // frequencies the detector missed; at b = 0.45 the fall was 70x).
    assert!(
        last < first / 50.0,
        "loss fell only from {first:e} to {last:e}"
    );
    // Measured 0.78 / 0.93 / 0.067 in 100 epochs (0.71 / 0.91 / 0.056 without the object's band
    // limit); the bounds leave room for thread-order rounding.
    assert!(
        s.ssim_magnitude > 0.7,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
    assert!(s.ssim_phase > 0.85, "phase SSIM {}", s.ssim_phase);
    assert!(s.nrmse < 0.08, "NRMSE {}", s.nrmse);

    // The object is band-limited: a filter whose pass band reaches past the engine's cutoff
    // (0.5 N F = 0.32 cycles/px here) and its edge leaves it alone, while it changes the truth.
    let cutoff = BandLimit::cutoff_for(0.5, 64, rec.geometry.pixel_fresnel_number());
    assert!((cutoff - 0.32).abs() < 1e-6, "cutoff {cutoff}");
    let rec_change = change_by_low_pass(&rec.object, cutoff + EDGE_WIDTH);
    assert!(rec_change < 1e-3, "object changed by {rec_change}");
    let truth_change = change_by_low_pass(&truth.object, cutoff + EDGE_WIDTH);
    assert!(truth_change > 1e-2, "truth changed by {truth_change}");
}

/// Largest change of `image` under the band limit at `cutoff` (cycles/px).
fn change_by_low_pass(image: &Array2<Complex32>, cutoff: f64) -> f32 {
    let (h, w) = image.dim();
    let mut filter = BandLimit::new(h, w);
    filter.set_cutoff(cutoff);
    let mut filtered = image.clone();
    filter.apply(&mut filtered);
    filtered
        .iter()
        .zip(image)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f32::max)
}
