//! End-to-end tests of [`super::score`] on synthetic truths and reconstructions.

use super::testutil::{gaussian_probe, raster_positions, textured_object_mapped};
use super::*;
use crate::dataset::Truth;
use crate::geometry::{Geometry, Regime};
use crate::reconstruction::Reconstruction;
use ndarray::Array2;
use num_complex::Complex32;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const SEED: u64 = 5;
const N: usize = 32;

fn far_field(distance: f64) -> Geometry {
    Geometry {
        regime: Regime::FarField,
        wavelength: 1e-10,
        detector_pixel: 75e-6,
        distance,
        source_distance: None,
        frame: N,
    }
}

/// A 96 x 96 textured truth scanned by a Gaussian probe at 25 raster positions.
fn truth() -> Truth {
    Truth {
        object: textured_object_mapped(96, 96, SEED, |r, c| (r, c)),
        probe: gaussian_probe(N, 6.0),
        positions: raster_positions(8.0, 10.0),
        geometry: far_field(5.0),
    }
}

/// The truth object seen in a 112 x 108 frame whose coordinate u is the truth's `u + offset`,
/// with the content displaced by `-displacement` relative to where the positions say, times a
/// global complex factor; positions `truth - offset + errors`.
fn reconstruction(
    truth: &Truth,
    offset: (f64, f64),
    displacement: (f64, f64),
    position_errors: &Array2<f64>,
) -> Reconstruction {
    let factor = Complex32::from_polar(1.7, -2.4);
    let object = textured_object_mapped(112, 108, SEED, |r, c| {
        (r + offset.0 + displacement.0, c + offset.1 + displacement.1)
    })
    .mapv(|v| v * factor);
    let mut positions = truth.positions.clone();
    positions.column_mut(0).mapv_inplace(|v| v - offset.0);
    positions.column_mut(1).mapv_inplace(|v| v - offset.1);
    positions += position_errors;
    Reconstruction {
        engine: "test".into(),
        object,
        probe: truth.probe.clone(),
        nominal_positions: positions.clone(),
        positions,
        geometry: truth.geometry.clone(),
        history: Vec::new(),
        settings: serde_json::Value::Null,
    }
}

/// Zero-mean position errors: 12 opposite pairs of lengths 0.1 .. 1.2 px and one zero, so the
/// sorted lengths are 0, 0.1, 0.1, ..., 1.2, 1.2: median 0.6, 90th percentile 1.1.
fn paired_errors() -> Array2<f64> {
    let mut e = Array2::<f64>::zeros((25, 2));
    for k in 0..12 {
        let len = 0.1 * (k + 1) as f64;
        let angle = 0.9 * k as f64;
        let v = (len * angle.sin(), len * angle.cos());
        e[[2 * k, 0]] = v.0;
        e[[2 * k, 1]] = v.1;
        e[[2 * k + 1, 0]] = -v.0;
        e[[2 * k + 1, 1]] = -v.1;
    }
    e
}

fn add_noise(rec: &mut Reconstruction, sigma: f32, seed: u64) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, sigma).unwrap();
    rec.object
        .mapv_inplace(|v| v + Complex32::new(normal.sample(&mut rng), normal.sample(&mut rng)));
}

#[test]
fn a_shifted_scaled_embedded_copy_scores_perfectly() {
    let t = truth();
    let displacement = (0.3, -0.45);
    let rec = reconstruction(&t, (-10.4, -5.3), displacement, &Array2::zeros((25, 2)));
    let s = score(&rec, &t).unwrap();
    assert!(s.ssim_magnitude > 0.99, "{s:?}");
    assert!(s.ssim_phase > 0.99, "{s:?}");
    assert!(s.nrmse < 0.02, "{s:?}");
    assert!((s.shift.0 - displacement.0).abs() < 0.05, "{s:?}");
    assert!((s.shift.1 - displacement.1).abs() < 0.05, "{s:?}");
    assert!(s.position_error_median.unwrap() < 1e-9);
    assert!(s.position_error_p90.unwrap() < 1e-9);
    assert_eq!(s.distance_error_rel, Some(0.0));
}

#[test]
fn noise_lowers_the_scores_monotonically() {
    let t = truth();
    let clean = reconstruction(&t, (-10.4, -5.3), (0.3, -0.45), &Array2::zeros((25, 2)));
    let mut previous = score(&clean, &t).unwrap();
    for (i, sigma) in [0.05f32, 0.15, 0.4].into_iter().enumerate() {
        let mut rec = clean.clone();
        // The reconstruction carries the factor 1.7, so the noise relative to it is sigma / 1.7.
        add_noise(&mut rec, sigma * 1.7, i as u64);
        let s = score(&rec, &t).unwrap();
        assert!(
            s.ssim_magnitude < previous.ssim_magnitude - 0.01,
            "{sigma}: {s:?}"
        );
        assert!(s.ssim_phase < previous.ssim_phase - 0.01, "{sigma}: {s:?}");
        assert!(s.nrmse > previous.nrmse, "{sigma}: {s:?}");
        // Complex noise of std sigma per part against a truth of rms ~0.76.
        let expected = sigma as f64 * 2.0f64.sqrt() / 0.76;
        assert!(
            (s.nrmse - expected).abs() < 0.25 * expected,
            "{sigma}: {s:?} vs {expected}"
        );
        previous = s;
    }
    assert!(previous.ssim_magnitude < 0.6, "{previous:?}");
}

#[test]
fn position_errors_give_the_right_median_and_percentile() {
    let t = truth();
    let rec = reconstruction(&t, (3.0, -12.7), (0.0, 0.0), &paired_errors());
    let s = score(&rec, &t).unwrap();
    assert!(
        (s.position_error_median.unwrap() - 0.6).abs() < 1e-9,
        "{s:?}"
    );
    assert!((s.position_error_p90.unwrap() - 1.1).abs() < 1e-9, "{s:?}");
    // Errors do not move the object: the image scores stay perfect.
    assert!(s.ssim_magnitude > 0.99 && s.nrmse < 0.02, "{s:?}");

    // A different number of positions: no position error, the rest still works.
    let mut fewer = rec.clone();
    fewer.positions = rec.positions.slice(ndarray::s![..20, ..]).to_owned();
    let s = score(&fewer, &t).unwrap();
    assert_eq!(s.position_error_median, None);
    assert_eq!(s.position_error_p90, None);
    assert_eq!(s.position_error_affine_median, None);
    assert!(s.ssim_magnitude > 0.9, "{s:?}");
}

#[test]
fn the_affine_part_of_the_position_errors_is_separated() {
    let t = truth();
    // A 1 % scale, a 0.4 % shear and a misplaced position on top of the paired local errors.
    let centre = (
        t.positions.column(0).mean().unwrap(),
        t.positions.column(1).mean().unwrap(),
    );
    let mut errors = paired_errors();
    for (k, p) in t.positions.outer_iter().enumerate() {
        let (y, x) = (p[0] - centre.0, p[1] - centre.1);
        errors[[k, 0]] += 0.01 * y + 0.004 * x;
        errors[[k, 1]] += 0.004 * y + 0.01 * x;
    }
    errors[[7, 0]] += 9.0;
    let rec = reconstruction(&t, (3.0, -12.7), (0.0, 0.0), &errors);
    let s = score(&rec, &t).unwrap();
    // Local errors alone: median 0.6 px; with the affine part and the outlier it is larger.
    let affine = s.position_error_affine_median.unwrap();
    assert!((affine - 0.6).abs() < 0.1, "{s:?}");
    assert!(s.position_error_median.unwrap() > affine + 0.1, "{s:?}");
    // Without the affine part the two agree up to the outlier's pull on the fit.
    let rec = reconstruction(&t, (3.0, -12.7), (0.0, 0.0), &paired_errors());
    let s = score(&rec, &t).unwrap();
    assert!(
        (s.position_error_affine_median.unwrap() - 0.6).abs() < 0.1,
        "{s:?}"
    );
}

#[test]
fn a_wrong_far_field_distance_is_resampled_and_reported() {
    // 10 % too long a distance: the reconstruction's pixels are 1.1 truth pixels. Its sample at
    // u shows the truth at 1.1 u + o, and its positions are the truth's window centres mapped
    // back the same way.
    let t = truth();
    let zoom = 1.1;
    let o = (-6.5, -4.2);
    let object = textured_object_mapped(96, 96, SEED, |r, c| (zoom * r + o.0, zoom * c + o.1))
        .mapv(|v| v * Complex32::from_polar(0.6, 0.5));
    let half = N as f64 / 2.0;
    let mut positions = t.positions.clone();
    positions
        .column_mut(0)
        .mapv_inplace(|q| (q + half - o.0) / zoom - half);
    positions
        .column_mut(1)
        .mapv_inplace(|q| (q + half - o.1) / zoom - half);
    let rec = Reconstruction {
        engine: "test".into(),
        object,
        probe: t.probe.clone(),
        nominal_positions: positions.clone(),
        positions,
        geometry: far_field(5.5),
        history: Vec::new(),
        settings: serde_json::Value::Null,
    };
    let s = score(&rec, &t).unwrap();
    assert!((s.distance_error_rel.unwrap() - 0.1).abs() < 1e-12, "{s:?}");
    assert!(s.position_error_median.unwrap() < 1e-9, "{s:?}");
    assert!(s.shift.0.abs() < 0.1 && s.shift.1.abs() < 0.1, "{s:?}");
    assert!(s.ssim_magnitude > 0.95 && s.ssim_phase > 0.95, "{s:?}");
    assert!(s.nrmse < 0.08, "{s:?}");
}

#[test]
fn distance_error_needs_the_same_refined_quantity() {
    let t = truth();
    let mut rec = reconstruction(&t, (-10.0, -5.0), (0.0, 0.0), &Array2::zeros((25, 2)));
    rec.geometry.regime = Regime::NearField;
    rec.geometry.source_distance = Some(0.01);
    // Near field with a point source: a different pixel size too, but scoring still runs.
    let s = score(&rec, &t).unwrap();
    assert_eq!(s.distance_error_rel, None);
}

#[test]
fn unscorable_inputs_are_errors() {
    let t = truth();
    let rec = reconstruction(&t, (-10.0, -5.0), (0.0, 0.0), &Array2::zeros((25, 2)));
    let mut far = t.clone();
    far.positions.mapv_inplace(|v| v + 500.0);
    let e = score(&rec, &far).unwrap_err().to_string();
    assert!(e.contains("illuminated region"), "{e}");
    let mut nan = rec.clone();
    nan.object[[3, 4]] = Complex32::new(f32::NAN, 0.0);
    assert!(score(&nan, &t).unwrap_err().to_string().contains("NaN"));
    let mut no_positions = rec.clone();
    no_positions.positions = Array2::zeros((0, 2));
    assert!(score(&no_positions, &t).is_err());
}

#[test]
fn registration_of_a_512_object_is_fast_and_exact() {
    let (h, w) = (512, 512);
    let reference = textured_object_mapped(h, w, 2, |r, c| (r, c));
    let moving = textured_object_mapped(h, w, 2, |r, c| (r - 1.35, c + 2.7));
    let region = Array2::from_shape_fn((h, w), |(r, c)| {
        (40..472).contains(&r) && (40..472).contains(&c)
    });
    let start = std::time::Instant::now();
    let s = register(&reference, &moving, Some(&region), 20).unwrap();
    let aligned = fourier_shift(&moving, s);
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("512 x 512 registration + shift: {seconds:.3} s");
    assert!(
        (s.0 + 1.35).abs() < 0.05 && (s.1 - 2.7).abs() < 0.05,
        "{s:?}"
    );
    assert!((aligned[[256, 256]] - reference[[256, 256]]).norm() < 0.02);
    // Generous bound (shared machine): a regression guard, not a benchmark.
    assert!(seconds < 5.0, "{seconds} s");
}

#[test]
fn the_table_and_json_carry_every_metric() {
    let s = Score {
        ssim_magnitude: 0.9512,
        ssim_phase: 0.8765,
        nrmse: 0.1234,
        position_error_median: Some(0.7),
        position_error_p90: Some(1.25),
        position_error_affine_median: Some(0.125),
        distance_error_rel: Some(0.004),
        shift: (0.12, -0.3),
    };
    let table = format_table(&s);
    for needle in [
        "0.9512",
        "0.8765",
        "0.1234",
        "0.700",
        "1.250",
        "0.125",
        "0.400 %",
        "(+0.12, -0.30)",
    ] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("magnitude SSIM").ends_with("ok"));
    assert!(line("median position error").ends_with("MISS"));
    assert!(line("relative distance error").ends_with("ok"));
    let none = Score {
        position_error_median: None,
        position_error_p90: None,
        distance_error_rel: None,
        ..s.clone()
    };
    assert!(line_of(&format_table(&none), "median position error").ends_with("n/a"));
    let json = serde_json::to_value(&none).unwrap();
    assert_eq!(json["ssim_magnitude"], 0.9512);
    assert!(json["position_error_median"].is_null());
    assert_eq!(json["shift"][1], -0.3);
    let back: Score = serde_json::from_value(json).unwrap();
    assert_eq!(back, none);
}

fn line_of(table: &str, name: &str) -> String {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap()
        .to_string()
}
