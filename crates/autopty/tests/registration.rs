//! Scan registration from the holograms alone: on the `paper` near-field set-up (128 x 128
//! frames, 30 % distance error) cut to a 6 x 6 scan, with its 10 px position errors, the
//! registered scan must be within about a pixel of the truth, before any reconstruction.

use autopty::engines::registration::{register, Registration};

/// Median and largest distance (px) between `positions` and `truth` after removing the mean
/// offset.
fn errors(positions: &ndarray::Array2<f64>, truth: &ndarray::Array2<f64>) -> (f64, f64) {
    let diff = positions - truth;
    let mean = diff.mean_axis(ndarray::Axis(0)).unwrap();
    let mut lengths: Vec<f64> = diff
        .outer_iter()
        .map(|d| (d[0] - mean[0]).hypot(d[1] - mean[1]))
        .collect();
    lengths.sort_by(f64::total_cmp);
    (lengths[lengths.len() / 2], lengths[lengths.len() - 1])
}

#[test]
fn registers_a_scan_with_large_errors_from_the_holograms() {
    let mut cfg = autopty::sim::preset("paper").unwrap();
    cfg.scan.rows = 6;
    cfg.scan.cols = 6;
    assert_eq!(cfg.corruption.position_jitter, 10.0);
    let (data, truth) = autopty::sim::simulate(&cfg).unwrap();
    let nominal = data.positions_in_pixels(data.geometry.sample_pixel(), 0.0);
    let registered = register(&data, nominal.view(), &Registration::default()).unwrap();
    let before = errors(&nominal, &truth.positions);
    let after = errors(&(&nominal + &registered.corrections), &truth.positions);
    eprintln!(
        "median / max error: nominal {before:.2?} px, registered {after:.2?} px; {} of {} pairs kept",
        registered.pairs_kept, registered.pairs
    );
    assert!(
        before.0 > 6.0,
        "the nominal scan should be far off: {before:?}"
    );
    // Measured: 12.8 / 34.7 px nominal, 0.48 / 1.10 px registered.
    assert!(after.0 < 0.8, "median error after registration {after:?}");
    assert!(after.1 < 2.0, "largest error after registration {after:?}");
    assert!(registered.pairs_kept * 10 >= registered.pairs * 8);
}
