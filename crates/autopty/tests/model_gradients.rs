//! Finite-difference checks of the whole model's gradient for every parameter group
//! (object, each probe mode, position corrections, distance) in the three geometries.

use autopty::model::{Gradients, Model, ModelSettings, Subpixel};
use autopty::objective::Objective;
use autopty::ops::loss::LossKind;
use autopty::{Dataset, Geometry, Regime};
use ndarray::{Array2, Array3};
use num_complex::Complex32;

fn lcg(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(7);
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn dataset(regime: Regime, source: Option<f64>) -> Dataset {
    let n = 16;
    let geometry = Geometry {
        regime,
        wavelength: if regime == Regime::FarField {
            1e-10
        } else {
            1e-9
        },
        detector_pixel: if regime == Regime::FarField {
            50e-6
        } else {
            1e-6
        },
        distance: if regime == Regime::FarField {
            1.0
        } else {
            2e-3
        },
        source_distance: source,
        frame: n,
    };
    let dx = geometry.sample_pixel();
    let mut rnd = lcg(1);
    let positions = Array2::from_shape_fn((9, 2), |(j, k)| {
        let idx = if k == 0 { j / 3 } else { j % 3 };
        (idx as f64 * 5.0 + 0.37 * rnd() as f64) * dx
    });
    let intensities = Array3::from_shape_fn((9, n, n), |_| (rnd() + 0.6) * 50.0);
    let mut mask = Array2::from_elem((n, n), true);
    mask[[3, 4]] = false;
    Dataset {
        intensities,
        mask,
        positions,
        geometry,
        // The near-field cases also check the loss with a detector noise floor.
        noise_floor: if regime == Regime::NearField {
            4.0
        } else {
            0.0
        },
    }
}

fn perturbed_model(data: &Dataset, modes: usize, subpixel: Subpixel) -> (Model, Objective) {
    let settings = ModelSettings {
        modes,
        border: 4,
        subpixel,
        ..ModelSettings::default()
    };
    let (mut model, prop) = Model::initial(data, &settings).unwrap();
    let mut rnd = lcg(2);
    model
        .object
        .mapv_inplace(|v| v + Complex32::new(0.3 * rnd(), 0.3 * rnd()));
    let scale = model.probe.iter().map(|v| v.norm()).fold(0.0, f32::max);
    model
        .probe
        .mapv_inplace(|v| v + Complex32::new(rnd(), rnd()) * (0.2 * scale));
    model.corrections.mapv_inplace(|_| 0.8 * rnd() as f64);
    let obj = Objective::new(data, prop, LossKind::Amplitude, subpixel, modes, 9);
    (model, obj)
}

fn loss(obj: &mut Objective, model: &Model) -> f64 {
    obj.evaluate(model, &(0..9).collect::<Vec<_>>(), None)
}

/// Checks Re <g, v> against the central difference along v for each group in turn.
fn check(regime: Regime, source: Option<f64>, modes: usize, subpixel: Subpixel) {
    let data = dataset(regime, source);
    let (model, mut obj) = perturbed_model(&data, modes, subpixel);
    let mut g = Gradients::zeros_like(&model);
    let batch: Vec<usize> = (0..9).collect();
    obj.evaluate(&model, &batch, Some(&mut g));
    let mut rnd = lcg(3);

    // Object.
    let dir = model.object.mapv(|_| Complex32::new(rnd(), rnd()));
    let eps = 1e-3f32;
    let mut plus = model.clone();
    plus.object.zip_mut_with(&dir, |o, d| *o += d * eps);
    let mut minus = model.clone();
    minus.object.zip_mut_with(&dir, |o, d| *o -= d * eps);
    let fd = (loss(&mut obj, &plus) - loss(&mut obj, &minus)) / (2.0 * eps as f64);
    let an: f64 = g
        .object
        .iter()
        .zip(dir.iter())
        .map(|(a, b)| (a.re * b.re + a.im * b.im) as f64)
        .sum();
    assert!(
        (fd - an).abs() < 2e-2 * an.abs(),
        "{regime:?} {subpixel:?} object: {an} vs {fd}"
    );

    // Each probe mode.
    let pscale = model.probe.iter().map(|v| v.norm()).fold(0.0, f32::max);
    for m in 0..modes {
        let mut dir = Array3::<Complex32>::zeros(model.probe.raw_dim());
        dir.index_axis_mut(ndarray::Axis(0), m)
            .mapv_inplace(|_| Complex32::new(rnd(), rnd()));
        let eps = 1e-3 * pscale;
        let mut plus = model.clone();
        plus.probe.zip_mut_with(&dir, |o, d| *o += d * eps);
        let mut minus = model.clone();
        minus.probe.zip_mut_with(&dir, |o, d| *o -= d * eps);
        let fd = (loss(&mut obj, &plus) - loss(&mut obj, &minus)) / (2.0 * eps as f64);
        let an: f64 = g
            .probe
            .iter()
            .zip(dir.iter())
            .map(|(a, b)| (a.re * b.re + a.im * b.im) as f64)
            .sum();
        assert!(
            (fd - an).abs() < 2e-2 * an.abs(),
            "{regime:?} {subpixel:?} probe mode {m}: {an} vs {fd}"
        );
    }

    // Position corrections (px), away from integer kinks of the bilinear kernel.
    let dir = model.corrections.mapv(|_| rnd() as f64);
    let eps = 1e-3;
    let mut plus = model.clone();
    plus.corrections.zip_mut_with(&dir, |o, d| *o += d * eps);
    let mut minus = model.clone();
    minus.corrections.zip_mut_with(&dir, |o, d| *o -= d * eps);
    let fd = (loss(&mut obj, &plus) - loss(&mut obj, &minus)) / (2.0 * eps);
    let an: f64 = g
        .corrections
        .iter()
        .zip(dir.iter())
        .map(|(a, b)| a * b)
        .sum();
    assert!(
        (fd - an).abs() < 2e-2 * an.abs(),
        "{regime:?} {subpixel:?} positions: {an} vs {fd}"
    );

    // Distance (m). Where it only enters the propagator (plane-wave near field) the step must be
    // large for the loss change to rise above f32 rounding; where it also scales the positions
    // it must be small so no position crosses a kink of the bilinear kernel.
    let rel = if regime == Regime::NearField && source.is_none() {
        1e-2
    } else {
        1e-4
    };
    let eps = rel * model.distance;
    let mut plus = model.clone();
    plus.distance += eps;
    let mut minus = model.clone();
    minus.distance -= eps;
    let fd = (loss(&mut obj, &plus) - loss(&mut obj, &minus)) / (2.0 * eps);
    assert!(
        (fd - g.distance).abs() < 3e-2 * g.distance.abs(),
        "{regime:?} {source:?} {subpixel:?} distance: {} vs {fd}",
        g.distance
    );
}

#[test]
fn near_field_plane_wave_gradients() {
    check(Regime::NearField, None, 2, Subpixel::Fourier);
    check(Regime::NearField, None, 2, Subpixel::Bilinear);
}

#[test]
fn near_field_point_source_gradients() {
    check(Regime::NearField, Some(1e-3), 1, Subpixel::Fourier);
    check(Regime::NearField, Some(1e-3), 1, Subpixel::Bilinear);
}

#[test]
fn far_field_gradients() {
    check(Regime::FarField, None, 2, Subpixel::Fourier);
    check(Regime::FarField, None, 2, Subpixel::Bilinear);
}

/// Largest difference between two gradient arrays, relative to the largest value.
fn relative_gap<'a>(
    a: impl Iterator<Item = &'a Complex32>,
    b: impl Iterator<Item = &'a Complex32>,
) -> f32 {
    let (mut gap, mut size) = (0.0f32, 0.0f32);
    for (x, y) in a.zip(b) {
        gap = gap.max((x - y).norm());
        size = size.max(x.norm());
    }
    gap / size
}

#[test]
fn fused_pass_and_two_dimensional_path_agree() {
    // The paraxial near field runs the fused pass with the data stored transposed; asking
    // for the astigmatism's cross-term gradient switches the same objective to the 2-D path,
    // which transposes around the loss. Both must give the same loss and gradients, and the
    // same weighted loss for weights that are not symmetric.
    let data = dataset(Regime::NearField, None);
    let (model, mut fused) = perturbed_model(&data, 2, Subpixel::Fourier);
    let (_, mut full) = perturbed_model(&data, 2, Subpixel::Fourier);
    full.need_cross_astigmatism_gradient(true);
    assert!(fused.propagator().fuses() && !full.propagator().fuses());
    let batch: Vec<usize> = (0..9).collect();
    let mut ga = Gradients::zeros_like(&model);
    let mut gb = Gradients::zeros_like(&model);
    let la = fused.evaluate(&model, &batch, Some(&mut ga));
    let lb = full.evaluate(&model, &batch, Some(&mut gb));
    assert!((la - lb).abs() < 1e-5 * lb, "loss {la} vs {lb}");
    let object = relative_gap(ga.object.iter(), gb.object.iter());
    let probe = relative_gap(ga.probe.iter(), gb.probe.iter());
    assert!(
        object < 1e-4 && probe < 1e-4,
        "object {object}, probe {probe}"
    );
    for (a, b) in ga.corrections.iter().zip(gb.corrections.iter()) {
        assert!(
            (a - b).abs() < 1e-3 * b.abs().max(1e-3),
            "position {a} vs {b}"
        );
    }
    let (a, b) = (ga.distance, gb.distance);
    assert!((a - b).abs() < 1e-3 * b.abs(), "distance {a} vs {b}");
    // Weights of 0 and 1 (rows 0-5 of the detector, not symmetric) act as a detector mask:
    // the weighted loss equals the loss with that mask, in either path.
    let n = data.frame();
    let weights: Vec<f32> = (0..n * n)
        .map(|p| if p / n < 6 { 1.0 } else { 0.0 })
        .collect();
    let mut masked = data.clone();
    masked
        .mask
        .indexed_iter_mut()
        .for_each(|((r, _), m)| *m &= r < 6);
    let (_, mut reference) = perturbed_model(&masked, 2, Subpixel::Fourier);
    for j in [0, 4, 8] {
        let want = reference.evaluate(&model, &[j], None);
        for objective in [&mut fused, &mut full] {
            let got = objective.evaluate_weighted(&model, j, &weights);
            assert!(
                (got - want).abs() < 1e-5 * want,
                "weighted loss of {j}: {got} vs {want}"
            );
        }
    }
}
