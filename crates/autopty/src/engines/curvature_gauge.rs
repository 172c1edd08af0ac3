//! The probe's net curvature handed to the geometry: which member of the Fresnel-scaling family
//! a near-field reconstruction ends on.
//!
//! By the Fresnel scaling theorem, a field `u(x) exp(i pi |x|^2 / (lambda R))` propagated over
//! `z` has the intensity of `u` propagated over `z / M` and magnified by `M = 1 + z / R`. So the
//! model whose probe and object are compressed by `M` (`P(M x)`, `O(M x)`), whose probe carries
//! the curvature `1 / R = (M - 1) / z'`, whose positions are `r_j / M` and whose distance is
//! `z' = z / M` predicts the same patterns as the model `(P, O, r_j, z)`, for every `M`. When the
//! distance and the positions are both refined, nothing in the data picks one member: the scan's
//! scale, the distance and the probe's curvature drift together. Measured on the `paper` preset
//! (full pipeline, five distances): the scan ended 0.1-0.75 % small, the distance short by the
//! same fraction, and the probe carried the matching curvature (0.1-0.4 rad at its rim).
//!
//! The convention that picks one member is the one the geometry already follows: a net spherical
//! curvature of the beam at the sample belongs to the geometry (a point source at that distance),
//! and the probe is the equivalent plane-wave probe, with none. [`transfer`] fits the curvature
//! of the strongest probe mode and moves the distance and the scan to the member where it is
//! zero. A run from there starts from a fresh probe with some curvature of its own and ends only
//! part of the way to that member, so the run repeats the measurement from each new member
//! (`passes`, until the factor is within `tolerance` of 1).
//!
//! **The scan's shape.** The same theorem holds along each axis on its own (the propagator is
//! separable). A scan stretched along one axis or sheared, with a probe carrying the matching
//! astigmatic curvature, predicts the same patterns as the true one only with a different
//! distance along each axis, so with the one distance of the geometry it is no symmetry: the data
//! pin the scan's shape. But a run reaches it only by warping the whole object, which gradient
//! steps barely do: the runs kept the registration's shape, off by 0.2-0.4 % (stretch and shear)
//! on the `paper` preset and by the true probe's own astigmatism on `focused`. So each pass also
//! refines a relative astigmatism `e` of the propagation (a distance `z (1 + e0)` along x,
//! `z (1 - e0)` along y, and a shear `e1`; [`crate::propagate`]): two numbers that follow the
//! data at once, without the object moving. Where the pass ends, the per-axis theorem turns that
//! model into one with a single distance whose scan is `(I + E)^-1` times the pass's, `E` =
//! `[[-e0, e1], [e1, e0]]` in (row, col) order: the scan's shape the data want, and whose probe
//! carries the astigmatism [`handed_on_astigmatism`] gives to the next stage's fresh probe.
//! Measured on `paper` at 0.1 m with exact positions (300 epochs, nothing refined): an
//! astigmatism of 0.002 raised the final loss by 9.5 % (e0) and 6 % (e1).

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::ops::least_squares::NormalEquations;
use crate::reconstruction::Reconstruction;
use ndarray::{Array2, Array3, ArrayView2, Axis};
use num_complex::{Complex32, Complex64};
use serde::{Deserialize, Serialize};

/// The largest change of scale [`transfer`] applies; a larger one means the fit did not see a
/// curvature (e.g. a probe with wrapped, strongly varying phase), and the scan is left alone.
pub const MAX_SCALE_CHANGE: f64 = 0.05;

/// Settings of the curvature gauge (near field, when both the distance and the positions are
/// refined).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurvatureGauge {
    /// Whether to move the probe's net curvature into the geometry before the joint run.
    pub enabled: bool,
    /// Epochs of the joint refinement whose probe is measured.
    pub epochs: usize,
    /// Most measure-and-transfer passes. A fresh start's probe carries some curvature of its
    /// own, so a run from one member ends part of the way to the next: each pass starts from
    /// the previous one's member (measured on the `focused` preset: the first pass left the
    /// scan 0.6 % large, from 3.5 %).
    pub passes: usize,
    /// Passes stop once the factor is within this of 1 (and the astigmatism within this of 0).
    pub tolerance: f64,
    /// Whether each pass also refines the propagation's astigmatism and moves it into the scan's
    /// shape (module docs), at the distance's learning rate.
    pub astigmatism: bool,
    /// Whether the joint run keeps the distance and the scan's affine part (offset, scale,
    /// rotation, shear) the gauge moved to, and refines the rest (when the gauge applied nothing:
    /// those the alignment left). The joint run starts from a fresh probe, which takes on some
    /// curvature and astigmatism of its own, and a free distance and scan drift with them along
    /// the family, away from the member the gauge chose (measured on `paper` at 0.2 m after one
    /// 80-epoch pass: the distance from 0.200067 to 0.199647 m in 150 epochs, the scan's scale
    /// with it).
    pub hold_geometry: bool,
}

impl Default for CurvatureGauge {
    fn default() -> Self {
        CurvatureGauge {
            enabled: true,
            epochs: 100,
            passes: 3,
            tolerance: 1e-3,
            astigmatism: true,
            hold_geometry: false,
        }
    }
}

impl CurvatureGauge {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.enabled && self.epochs == 0 {
            return Err(Error::invalid(
                "curvature_gauge.epochs",
                "expected at least 1 epoch",
            ));
        }
        if self.enabled && self.passes == 0 {
            return Err(Error::invalid(
                "curvature_gauge.passes",
                "expected at least 1 pass",
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(Error::invalid(
                "curvature_gauge.tolerance",
                format!("expected a finite number >= 0, got {}", self.tolerance),
            ));
        }
        Ok(())
    }
}

/// A quadratic phase (rad) over a probe window, with `y`, `x` in pixels from the window's centre
/// `((N - 1) / 2, (N - 1) / 2)`: `offset + tilt[0] y + tilt[1] x + curvature (x^2 + y^2)
/// + astigmatism[0] (x^2 - y^2) + astigmatism[1] 2 x y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuadraticPhase {
    /// Constant phase (rad).
    pub offset: f64,
    /// Phase gradient (rad/px) along rows and columns.
    pub tilt: [f64; 2],
    /// Spherical curvature (rad/px^2): `pi / (lambda R)` times the pixel size squared.
    pub curvature: f64,
    /// Astigmatism (rad/px^2), 0/90 and 45 degree parts.
    pub astigmatism: [f64; 2],
}

/// Fits a [`QuadraticPhase`] to `mode`, weighting each pixel by its intensity. The phase may
/// wrap: a first fit to the phase differences of neighbouring pixels (each small) starts
/// Gauss-Newton steps on the wrapped residual `arg(P exp(-i phi))`.
pub fn fit_quadratic_phase(mode: ArrayView2<Complex32>) -> QuadraticPhase {
    let (rows, cols) = mode.dim();
    let half = (rows.max(cols) as f64 / 2.0).max(1.0);
    // Coordinates in units of half the window keep the normal equations well conditioned.
    let at = |r: f64, c: f64| {
        (
            (r - (rows as f64 - 1.0) / 2.0) / half,
            (c - (cols as f64 - 1.0) / 2.0) / half,
        )
    };
    let basis = |u: f64, v: f64| [1.0, u, v, u * u + v * v, v * v - u * u, 2.0 * u * v];
    let value = |r: usize, c: usize| {
        let p = mode[[r, c]];
        Complex64::new(p.re as f64, p.im as f64)
    };
    // Neighbour differences: d(phi)/dv / half along a row, d(phi)/du / half down a column.
    let mut start = NormalEquations::<6>::default();
    for r in 0..rows {
        for c in 0..cols {
            let here = value(r, c);
            if c + 1 < cols {
                let next = value(r, c + 1);
                let (u, v) = at(r as f64, c as f64 + 0.5);
                let d = [0.0, 0.0, 1.0, 2.0 * v, 2.0 * v, 2.0 * u].map(|b| b / half);
                start.add(&d, (next * here.conj()).arg(), next.norm() * here.norm());
            }
            if r + 1 < rows {
                let next = value(r + 1, c);
                let (u, v) = at(r as f64 + 0.5, c as f64);
                let d = [0.0, 1.0, 0.0, 2.0 * u, -2.0 * u, 2.0 * v].map(|b| b / half);
                start.add(&d, (next * here.conj()).arg(), next.norm() * here.norm());
            }
        }
    }
    let mut coef = start.solve();
    let phase = |coef: &[f64; 6], r: usize, c: usize| {
        let (u, v) = at(r as f64, c as f64);
        basis(u, v)
            .iter()
            .zip(coef)
            .map(|(b, a)| b * a)
            .sum::<f64>()
    };
    let residual = |coef: &[f64; 6], r: usize, c: usize| {
        (value(r, c) * Complex64::from_polar(1.0, -phase(coef, r, c))).arg()
    };
    // The constant from the intensity-weighted mean of what is left.
    let mean: Complex64 = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| value(r, c) * Complex64::from_polar(value(r, c).norm(), -phase(&coef, r, c)))
        .sum();
    coef[0] = mean.arg();
    for _ in 0..50 {
        let mut step = NormalEquations::<6>::default();
        for r in 0..rows {
            for c in 0..cols {
                let (u, v) = at(r as f64, c as f64);
                step.add(&basis(u, v), residual(&coef, r, c), value(r, c).norm_sqr());
            }
        }
        let delta = step.solve();
        for (a, d) in coef.iter_mut().zip(&delta) {
            *a += d;
        }
        if delta.iter().all(|d| d.abs() < 1e-10) {
            break;
        }
    }
    let h2 = half * half;
    QuadraticPhase {
        offset: coef[0],
        tilt: [coef[1] / half, coef[2] / half],
        curvature: coef[3] / h2,
        astigmatism: [coef[4] / h2, coef[5] / h2],
    }
}

/// What [`transfer`] measured and did.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauged {
    /// Net curvature `1 / R` (1/m) of the strongest probe mode in the sample plane, before the
    /// transfer (positive: diverging).
    pub curvature: f64,
    /// The family's scale factor `M = 1 + z_eff / R`: the scan and the propagation distance (in
    /// pixels) grow by it.
    pub factor: f64,
    /// Whether the factor was applied (it is not when it changes the scale by more than
    /// [`MAX_SCALE_CHANGE`]).
    pub applied: bool,
    /// The pass's refined astigmatism `[e0, e1]` of the propagation (module docs), 0 when it was
    /// not refined.
    pub astigmatism: [f64; 2],
    /// Whether the astigmatism was moved into the scan (it is not when a part exceeds
    /// [`MAX_SCALE_CHANGE`]).
    pub astigmatism_applied: bool,
    /// Astigmatism (rad/px^2, as in [`QuadraticPhase`]) of the strongest probe mode.
    pub probe_astigmatism: [f64; 2],
    /// Refined distance (m) before: the distance, or `z1` for a point source.
    pub distance_before: f64,
    /// Refined distance (m) to go on from.
    pub distance: f64,
    /// Position corrections (J x 2 px) to go on from, relative to the nominal positions at
    /// `distance`.
    pub corrections: Array2<f64>,
}

/// Fits the net curvature of `rec`'s strongest probe mode and returns the distance and position
/// corrections of the member of the Fresnel-scaling family (module docs) whose probe has none,
/// with the propagation's `astigmatism` (refined with `rec`) moved into the scan's shape.
/// `rec` must be a near-field reconstruction whose nominal scan was laid out in pixels of
/// `scan_pixel` (m): the sample pixel at the distance its run started from (see
/// [`crate::model`]).
pub fn transfer(rec: &Reconstruction, scan_pixel: f64, astigmatism: [f64; 2]) -> Gauged {
    let fit = fit_quadratic_phase(strongest_mode(&rec.probe));
    let geometry = &rec.geometry;
    let pixel = geometry.sample_pixel();
    // phase = pi r^2 / (lambda R) with r = (px) * pixel.
    let curvature = fit.curvature * geometry.wavelength / (std::f64::consts::PI * pixel * pixel);
    let factor = 1.0 + geometry.effective_distance() * curvature;
    let distance_before = geometry.refined_distance();
    let applied = factor.is_finite() && (factor - 1.0).abs() <= MAX_SCALE_CHANGE;
    let astigmatism_applied = astigmatism != [0.0; 2]
        && astigmatism
            .iter()
            .all(|e| e.is_finite() && e.abs() <= MAX_SCALE_CHANGE);
    let factor_used = if applied { factor } else { 1.0 };
    let positions_mean = rec
        .positions
        .mean_axis(Axis(0))
        .expect("at least one position");
    let nominal_mean = rec
        .nominal_positions
        .mean_axis(Axis(0))
        .expect("at least one position");
    // The scan takes the shape `(I + E)^-1` and grows by `factor` about its centre, the nominal
    // scan by the pixel ratio; the mean correction is kept (a common offset is no part of the
    // family).
    let shape = if astigmatism_applied {
        let [e0, e1] = astigmatism;
        let (a, b, d) = (1.0 - e0, e1, 1.0 + e0);
        let det = a * d - b * b;
        [[d / det, -b / det], [-b / det, a / det]]
    } else {
        [[1.0, 0.0], [0.0, 1.0]]
    };
    let centred = &rec.positions - &positions_mean;
    let mut moved = centred.clone();
    for (mut out, p) in moved.outer_iter_mut().zip(centred.outer_iter()) {
        for (k, row) in shape.iter().enumerate() {
            out[k] = factor_used * (row[0] * p[0] + row[1] * p[1]);
        }
    }
    let (distance, corrections) = if applied {
        let scaled = with_scaled_propagation(geometry, factor);
        let nominal_ratio = scan_pixel / scaled.sample_pixel();
        let corrections = moved - (&rec.nominal_positions - &nominal_mean) * nominal_ratio
            + (&positions_mean - &nominal_mean);
        (scaled.refined_distance(), corrections)
    } else if astigmatism_applied {
        (
            distance_before,
            moved + &positions_mean - &rec.nominal_positions,
        )
    } else {
        (distance_before, &rec.positions - &rec.nominal_positions)
    };
    Gauged {
        curvature,
        factor,
        applied,
        astigmatism,
        astigmatism_applied,
        probe_astigmatism: fit.astigmatism,
        distance_before,
        distance,
        corrections,
    }
}

/// The astigmatism (rad/px^2, as in [`QuadraticPhase`]) of the probe of the member
/// [`transfer`] chose: that of `rec`'s strongest mode (the pass that `gauged` measured, which
/// [`transfer`] fitted) plus
/// the astigmatic curvature the per-axis theorem gives the probe,
/// `pi dx^2 / (lambda z_eff) [e0, e1]`. The next stage's fresh probe gets it (see
/// [`with_astigmatism`]): without it, the scan of a run from a fresh probe drifts to the shape
/// that stands in for the missing curvature (measured on `paper` at 0.1 m: each 100-epoch pass
/// moved the stretch and shear back by about 0.1 %, and the next transfer forward by as much).
pub fn handed_on_astigmatism(rec: &Reconstruction, gauged: &Gauged) -> [f64; 2] {
    let own = gauged.probe_astigmatism;
    if !gauged.astigmatism_applied {
        return own;
    }
    let geometry = &rec.geometry;
    let pixel = geometry.sample_pixel();
    let per = std::f64::consts::PI * pixel * pixel
        / (geometry.wavelength * geometry.effective_distance());
    [
        own[0] + per * gauged.astigmatism[0],
        own[1] + per * gauged.astigmatism[1],
    ]
}

/// `probe` with its strongest mode's astigmatism replaced by `astigmatism` (rad/px^2, as in
/// [`QuadraticPhase`]): every mode times the same phase `a0 (x^2 - y^2) + a1 2 x y`, x and y
/// in pixels from the window's centre.
pub fn with_astigmatism(probe: &Array3<Complex32>, astigmatism: [f64; 2]) -> Array3<Complex32> {
    let own = fit_quadratic_phase(strongest_mode(probe)).astigmatism;
    let [a0, a1] = [astigmatism[0] - own[0], astigmatism[1] - own[1]];
    let n = probe.shape()[1];
    let c = (n as f64 - 1.0) / 2.0;
    let mut out = probe.clone();
    for mut mode in out.outer_iter_mut() {
        for ((r, col), v) in mode.indexed_iter_mut() {
            let (y, x) = (r as f64 - c, col as f64 - c);
            let phase = a0 * (x * x - y * y) + a1 * 2.0 * x * y;
            *v *= Complex32::from_polar(1.0, phase as f32);
        }
    }
    out
}

/// The mode with the most power.
fn strongest_mode(probe: &Array3<Complex32>) -> ArrayView2<'_, Complex32> {
    probe
        .axis_iter(Axis(0))
        .max_by(|a, b| {
            let power =
                |m: &ArrayView2<Complex32>| m.iter().map(|v| v.norm_sqr() as f64).sum::<f64>();
            power(a).total_cmp(&power(b))
        })
        .expect("a probe has at least one mode")
}

/// The geometry whose propagation distance in pixels, `z_eff / dx^2`, is `factor` times
/// `geometry`'s: for a plane wave the distance times `factor`; for a point source the `z1` with
/// `1 + z2 / z1` times `factor` (as `z_eff / dx^2 = z2 (1 + z2 / z1) / p^2`).
fn with_scaled_propagation(geometry: &Geometry, factor: f64) -> Geometry {
    match geometry.source_distance {
        None => geometry.with_refined_distance(geometry.distance * factor),
        Some(z1) => {
            let z2 = geometry.distance;
            geometry.with_refined_distance(z2 / (factor * (1.0 + z2 / z1) - 1.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Regime;
    use ndarray::Array3;

    /// A probe (n x n) inside a disc, with `texture` rad of a phase texture and the quadratic
    /// phase `q` added.
    fn probe_with(n: usize, texture: f64, q: &QuadraticPhase) -> Array2<Complex32> {
        let c = (n as f64 - 1.0) / 2.0;
        Array2::from_shape_fn((n, n), |(r, col)| {
            let (y, x) = (r as f64 - c, col as f64 - c);
            let rho = y.hypot(x);
            let amplitude = if rho < 0.4 * n as f64 {
                0.6 + 0.4 * (0.7 * y).sin() * (0.45 * x).cos()
            } else {
                0.0
            };
            let phi = texture * (0.25 * x + 0.4).sin() * (0.2 * y + 0.3).cos()
                + q.offset
                + q.tilt[0] * y
                + q.tilt[1] * x
                + q.curvature * (x * x + y * y)
                + q.astigmatism[0] * (x * x - y * y)
                + q.astigmatism[1] * 2.0 * x * y;
            let v = Complex64::from_polar(amplitude, phi);
            Complex32::new(v.re as f32, v.im as f32)
        })
    }

    #[test]
    fn fits_a_wrapped_quadratic_phase_under_a_texture() {
        // 6 rad of curvature and 3 rad of tilt at the rim: the phase wraps several times.
        let n = 64;
        let rim = 0.4 * n as f64;
        let q = QuadraticPhase {
            offset: 2.5,
            tilt: [3.0 / rim, -1.0 / rim],
            curvature: 6.0 / (rim * rim),
            astigmatism: [0.5 / (rim * rim), -0.8 / (rim * rim)],
        };
        let zero = QuadraticPhase {
            offset: 0.0,
            tilt: [0.0; 2],
            curvature: 0.0,
            astigmatism: [0.0; 2],
        };
        // The texture has a quadratic part of its own; the fit is linear in the phase.
        let own = fit_quadratic_phase(probe_with(n, 0.3, &zero).view());
        let fit = fit_quadratic_phase(probe_with(n, 0.3, &q).view());
        // Errors in rad at the rim.
        let quadratic = |a: f64, b: f64, c: f64| (a - b - c).abs() * rim * rim;
        assert!(
            quadratic(fit.curvature, own.curvature, q.curvature) < 1e-3,
            "{fit:?}"
        );
        for k in 0..2 {
            let (a, b, c) = (fit.astigmatism[k], own.astigmatism[k], q.astigmatism[k]);
            assert!(quadratic(a, b, c) < 1e-3, "{fit:?}");
            assert!(
                (fit.tilt[k] - own.tilt[k] - q.tilt[k]).abs() * rim < 1e-3,
                "{fit:?}"
            );
        }
        let offset = Complex64::from_polar(1.0, fit.offset - own.offset - q.offset).arg();
        assert!(offset.abs() < 1e-3, "{fit:?}");
        assert!(
            own.curvature.abs() * rim * rim > 1e-2,
            "{own:?}: nothing to subtract"
        );
    }

    fn reconstruction(geometry: Geometry, curvature_px: f64) -> Reconstruction {
        let n = geometry.frame;
        let q = QuadraticPhase {
            offset: 0.0,
            tilt: [0.0, 0.0],
            curvature: curvature_px,
            astigmatism: [0.0, 0.0],
        };
        let mode = probe_with(n, 0.0, &q);
        let mut probe = Array3::zeros((2, n, n));
        probe.index_axis_mut(Axis(0), 1).assign(&mode);
        probe
            .index_axis_mut(Axis(0), 0)
            .assign(&mode.mapv(|v| v * 0.1));
        let nominal = Array2::from_shape_fn((9, 2), |(j, k)| {
            20.0 + 15.0 * if k == 0 { j / 3 } else { j % 3 } as f64
        });
        let positions = Array2::from_shape_fn((9, 2), |(j, k)| {
            nominal[[j, k]] + 0.5 * ((j * 3 + k) % 4) as f64 - 0.7
        });
        Reconstruction {
            engine: "adam".into(),
            object: Array2::zeros((1, 1)),
            probe,
            positions,
            nominal_positions: nominal,
            geometry,
            history: Vec::new(),
            settings: serde_json::Value::Null,
        }
    }

    fn plane_wave() -> Geometry {
        Geometry {
            regime: Regime::NearField,
            wavelength: 1e-9,
            detector_pixel: 1e-6,
            distance: 0.1,
            source_distance: None,
            frame: 64,
        }
    }

    #[test]
    fn a_diverging_probe_moves_to_a_longer_distance_and_a_larger_scan() {
        // Curvature 1/R = 0.05 /m: M = 1 + 0.1 * 0.05 = 1.005.
        let g = plane_wave();
        let px = std::f64::consts::PI * 0.05 * 1e-12 / 1e-9;
        let rec = reconstruction(g, px);
        let out = transfer(&rec, rec.geometry.sample_pixel(), [0.0; 2]);
        assert!(out.applied);
        assert!((out.curvature - 0.05).abs() < 1e-3, "{out:?}");
        assert!((out.factor - 1.005).abs() < 1e-4, "{out:?}");
        assert!((out.distance - 0.1 * out.factor).abs() < 1e-12);
        // New positions: the old ones scaled by M about their mean; the mean correction kept.
        let new = &rec.nominal_positions + &out.corrections;
        let mean = rec.positions.mean_axis(Axis(0)).unwrap();
        let want = (&rec.positions - &mean) * out.factor + &mean;
        for (a, b) in new.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn a_point_source_scales_its_propagation_in_pixels_by_the_factor() {
        let g = Geometry {
            source_distance: Some(0.014),
            distance: 0.5,
            detector_pixel: 13.5e-6,
            ..plane_wave()
        };
        let dx = g.sample_pixel();
        let px = -std::f64::consts::PI * 0.3 * dx * dx / 1e-9;
        let rec = reconstruction(g.clone(), px);
        let out = transfer(&rec, rec.geometry.sample_pixel(), [0.0; 2]);
        assert!(out.applied && out.factor < 1.0, "{out:?}");
        let scaled = g.with_refined_distance(out.distance);
        let per_px2 = |g: &Geometry| g.effective_distance() / g.sample_pixel().powi(2);
        assert!((per_px2(&scaled) / per_px2(&g) - out.factor).abs() < 1e-9);
        // The nominal scan follows the new pixel; positions in the new frame: scaled by M.
        let ratio = dx / scaled.sample_pixel();
        let nominal_new = &rec.nominal_positions * ratio;
        let new = &nominal_new + &out.corrections;
        let (a, b) = (
            &new.row(4) - &new.row(0),
            &rec.positions.row(4) - &rec.positions.row(0),
        );
        for k in 0..2 {
            assert!((a[k] - out.factor * b[k]).abs() < 1e-9);
        }
    }

    #[test]
    fn moves_the_astigmatism_into_the_scans_shape() {
        // A flat probe: no curvature to move, only the shape. Per axis the scan shrinks by the
        // distance factor the pass wanted: x by 1 + e0, y by 1 - e0 (for e1 = 0).
        let g = plane_wave();
        let rec = reconstruction(g, 0.0);
        let mean = rec.positions.mean_axis(Axis(0)).unwrap();
        let stretch = transfer(&rec, rec.geometry.sample_pixel(), [0.01, 0.0]);
        assert!(stretch.astigmatism_applied && (stretch.factor - 1.0).abs() < 1e-9);
        let new = &rec.nominal_positions + &stretch.corrections;
        for (a, p) in new.outer_iter().zip(rec.positions.outer_iter()) {
            assert!((a[0] - mean[0] - (p[0] - mean[0]) / 0.99).abs() < 1e-6);
            assert!((a[1] - mean[1] - (p[1] - mean[1]) / 1.01).abs() < 1e-6);
        }
        // With a shear: the new scan is (I + E)^-1 times the old about its centre.
        let e = [0.004, -0.006];
        let sheared = transfer(&rec, rec.geometry.sample_pixel(), e);
        let new = &rec.nominal_positions + &sheared.corrections;
        for (a, p) in new.outer_iter().zip(rec.positions.outer_iter()) {
            let (dy, dx) = (a[0] - mean[0], a[1] - mean[1]);
            let back = [(1.0 - e[0]) * dy + e[1] * dx, e[1] * dy + (1.0 + e[0]) * dx];
            assert!((back[0] - (p[0] - mean[0])).abs() < 1e-6, "{back:?} vs {p}");
            assert!((back[1] - (p[1] - mean[1])).abs() < 1e-6, "{back:?} vs {p}");
        }
        // Implausibly large: left alone.
        let off = transfer(&rec, rec.geometry.sample_pixel(), [0.06, 0.0]);
        assert!(!off.astigmatism_applied);
        let kept = &rec.nominal_positions + &off.corrections;
        for (a, p) in kept.iter().zip(rec.positions.iter()) {
            assert!((a - p).abs() < 1e-9);
        }
    }

    #[test]
    fn the_next_probe_gets_the_pass_astigmatism_and_the_transferred_one() {
        let g = plane_wave();
        let px = std::f64::consts::PI * 0.05 * 1e-12 / 1e-9;
        let rim = 0.4 * 64.0;
        let mut rec = reconstruction(g, px);
        // The pass's probe has an astigmatism of its own.
        let own = [0.2 / (rim * rim), -0.1 / (rim * rim)];
        rec.probe = with_astigmatism(&rec.probe, own);
        let fit = fit_quadratic_phase(rec.probe.index_axis(Axis(0), 1));
        for (a, b) in fit.astigmatism.iter().zip(own) {
            assert!((a - b).abs() * rim * rim < 1e-3, "{fit:?}");
        }
        assert!((fit.curvature - px).abs() * rim * rim < 1e-3, "{fit:?}");
        let e = [0.003, -0.002];
        let gauged = transfer(&rec, rec.geometry.sample_pixel(), e);
        assert!(gauged.applied && gauged.astigmatism_applied);
        let handed = handed_on_astigmatism(&rec, &gauged);
        // pi dx^2 / (lambda z) = pi 1e-12 / (1e-9 0.1) rad/px^2 per unit of astigmatism.
        let per = std::f64::consts::PI * 1e-12 / (1e-9 * 0.1);
        for ((h, o), e) in handed.iter().zip(own).zip(e) {
            assert!((h - o - per * e).abs() * rim * rim < 1e-3, "{handed:?}");
        }
        // A flat fresh probe given it: the same phase on every mode, curvature untouched.
        let fresh = reconstruction(plane_wave(), 0.0).probe;
        let next = with_astigmatism(&fresh, handed);
        let fit = fit_quadratic_phase(next.index_axis(Axis(0), 1));
        assert!(fit.curvature.abs() * rim * rim < 1e-3, "{fit:?}");
        for (a, h) in fit.astigmatism.iter().zip(handed) {
            assert!((a - h).abs() * rim * rim < 1e-3, "{fit:?}");
        }
        let ratio = &next.index_axis(Axis(0), 0) / &next.index_axis(Axis(0), 1);
        assert!(ratio
            .iter()
            .all(|r| !r.is_finite() || (r - 0.1).norm() < 1e-5));
    }

    #[test]
    fn leaves_the_scan_alone_when_the_factor_is_implausible() {
        let g = plane_wave();
        let px = std::f64::consts::PI * 1.0 * 1e-12 / 1e-9; // M = 1.1
        let rec = reconstruction(g, px);
        let out = transfer(&rec, rec.geometry.sample_pixel(), [0.0; 2]);
        assert!(!out.applied && (out.factor - 1.1).abs() < 1e-3, "{out:?}");
        assert_eq!(out.distance, 0.1);
        assert_eq!(out.corrections, &rec.positions - &rec.nominal_positions);
        let valid = CurvatureGauge::default();
        assert!(valid.validate().is_ok());
        for bad in [
            CurvatureGauge {
                epochs: 0,
                ..valid.clone()
            },
            CurvatureGauge {
                passes: 0,
                ..valid.clone()
            },
            CurvatureGauge {
                tolerance: f64::NAN,
                ..valid.clone()
            },
            CurvatureGauge {
                tolerance: -1e-3,
                ..valid.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
