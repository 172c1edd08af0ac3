//! Scoring a reconstruction against the ground truth of a simulation.
//!
//! Procedure:
//! 1. Pixel size: when the reconstruction's sample pixel differs from the truth's (far field with
//!    a wrong distance), the reconstructed object is resampled bilinearly to the truth's pixel
//!    and its positions scaled about the window centres.
//! 2. Placement: the mean of `truth.positions - rec.positions` gives the frame offset; the object
//!    is cut out on the truth's grid at that offset rounded to whole pixels.
//! 3. Registration: the remaining sub-pixel shift is found by cross-correlation (to 1/20 px) over
//!    the illuminated region and applied by a Fourier shift.
//! 4. Phase ramp and global factor: the linear phase ramp between reconstruction and truth (an
//!    ambiguity of ptychography: an object ramp with the opposite probe ramp changes no pattern)
//!    is removed, then `c = <rec, truth> / <rec, rec>` over the region removes the global phase
//!    and scale ambiguity.
//! 5. Metrics over the illuminated region: pixels where the summed truth probe intensity over
//!    all truth positions exceeds 10 % of its maximum, eroded by 5 px so that every 11 x 11 SSIM
//!    window stays inside the 10 % contour.

use super::frame::{
    erode, extract, global_factor, illumination, remove_phase_ramp, threshold, zoom_bilinear,
};
use super::register::{fourier_shift, register_within};
use super::ssim::{ssim, SSIM_RADIUS};
use crate::dataset::Truth;
use crate::error::{Error, Result};
use crate::ops::scan_affine;
use crate::reconstruction::Reconstruction;
use ndarray::{Array2, Zip};
use num_complex::{Complex32, Complex64};
use serde::{Deserialize, Serialize};

/// Fraction of the maximum summed probe intensity that bounds the illuminated region.
pub const REGION_THRESHOLD: f64 = 0.1;
/// Erosion of the illuminated region (px): the SSIM window half-width.
pub const REGION_EROSION_PX: usize = SSIM_RADIUS;
/// Sub-pixel registration resolution: 1/20 px.
pub const REGISTRATION_UPSAMPLE: usize = 20;
/// Target for the magnitude SSIM (at least).
pub const TARGET_SSIM_MAGNITUDE: f64 = 0.9;
/// Target for the median position error (px, below).
pub const TARGET_POSITION_MEDIAN_PX: f64 = 0.5;
/// Target for the relative distance error (below).
pub const TARGET_DISTANCE_REL: f64 = 0.01;

/// Quality of a reconstruction against the truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Mean SSIM of `|c rec|` against `|truth|` over the illuminated region (1 = identical).
    pub ssim_magnitude: f64,
    /// Mean SSIM of the phase of `c rec` against the truth's phase (rad) over the region. The
    /// reconstructed phase is taken as the truth's plus the wrapped difference, so that 2 pi
    /// jumps at different places do not count as errors.
    pub ssim_phase: f64,
    /// `||c rec - truth|| / ||truth||` over the region.
    pub nrmse: f64,
    /// Median length of the position errors (truth px) after removing their mean; `None` when
    /// the number of positions differs.
    pub position_error_median: Option<f64>,
    /// 90th percentile of the position error lengths (truth px).
    pub position_error_p90: Option<f64>,
    /// Median position error (truth px) after removing the scan's best-fitting affine map
    /// (offset, scale, rotation, shear) instead of the mean only: the part of the errors that is
    /// local to each position. In the near field the scan's scale trades exactly against the
    /// distance and the probe's curvature (Fresnel scaling), so the data pin the affine part
    /// only weakly; this separates the two. `None` when the number of positions differs or is
    /// below 4.
    #[serde(default)]
    pub position_error_affine_median: Option<f64>,
    /// `|d_rec - d_true| / d_true` of the refined distance; `None` when the geometries refine
    /// different quantities.
    pub distance_error_rel: Option<f64>,
    /// Sub-pixel shift (rows, cols; truth px) that registration applied to the reconstruction
    /// after placing it by its positions; near zero when object and positions agree.
    pub shift: (f64, f64),
}

/// Scores `rec` against `truth` (see the module documentation for the procedure).
pub fn score(rec: &Reconstruction, truth: &Truth) -> Result<Score> {
    validate(rec, truth)?;
    let zoom = rec.geometry.sample_pixel() / truth.geometry.sample_pixel();
    let n_rec = rec.probe.shape()[1] as f64;
    let n_truth = truth.probe.shape()[1] as f64;
    // Window centres map as u -> zoom u; top-left corners of truth-sized windows follow.
    let rec_positions = rec
        .positions
        .mapv(|p| zoom * (p + n_rec / 2.0) - n_truth / 2.0);
    let object = if (zoom - 1.0).abs() > 1e-9 {
        zoom_bilinear(&rec.object, zoom)
    } else {
        rec.object.clone()
    };
    let mean = |a: &Array2<f64>, axis: usize| a.column(axis).mean().unwrap_or(0.0);
    let offset = (
        mean(&truth.positions, 0) - mean(&rec_positions, 0),
        mean(&truth.positions, 1) - mean(&rec_positions, 1),
    );
    let whole = (offset.0.round(), offset.1.round());

    let shape = truth.object.dim();
    let lit = illumination(&truth.probe, &truth.positions, shape);
    let region = erode(&threshold(&lit, REGION_THRESHOLD), REGION_EROSION_PX);
    if !region.iter().any(|&m| m) {
        return Err(Error::invalid(
            "illuminated region",
            format!(
                "no pixel of the {} x {} truth object is lit above {} % of the maximum after \
                 erosion by {REGION_EROSION_PX} px; check the truth's probe and positions",
                shape.0,
                shape.1,
                REGION_THRESHOLD * 100.0
            ),
        ));
    }

    let placed = extract(&object, (whole.0 as isize, whole.1 as isize), shape);
    // Placed by the mean positions, the object can still be off by the probe's drift inside
    // its frame (the object and the probe may trade a shift), which stays below half a frame;
    // a farther peak would be a look-alike elsewhere in a truth larger than the scanned area.
    let max_shift = n_truth / 2.0;
    let s = register_within(
        &truth.object,
        &placed,
        Some(&region),
        REGISTRATION_UPSAMPLE,
        max_shift,
    )?;
    let aligned = remove_phase_ramp(&fourier_shift(&placed, s), &truth.object, &region);
    let c = global_factor(&aligned, &truth.object, &region);
    let fixed = aligned.mapv(|v| {
        let v = Complex64::new(v.re as f64, v.im as f64) * c;
        Complex32::new(v.re as f32, v.im as f32)
    });

    let magnitude = |a: &Array2<Complex32>| a.mapv(|v| v.norm() as f64);
    let (mag_rec, mag_truth) = (magnitude(&fixed), magnitude(&truth.object));
    let phase_truth = truth.object.mapv(|v| v.arg() as f64);
    let mut phase_rec = phase_truth.clone();
    Zip::from(&mut phase_rec)
        .and(&fixed)
        .and(&truth.object)
        .for_each(|p, &r, &t| *p += (r * t.conj()).arg() as f64);
    let mag_range = range_over(&mag_truth, &region);
    let mag_range = if mag_range > 1e-12 {
        mag_range
    } else {
        // A flat magnitude: compare on the scale of the magnitude itself.
        max_over(&mag_truth, &region).max(1e-12)
    };
    let phase_range = range_over(&phase_truth, &region);
    let phase_range = if phase_range > 1e-6 {
        phase_range
    } else {
        // A flat phase (a pure amplitude object): compare on the scale of a full turn.
        std::f64::consts::TAU
    };
    let ssim_magnitude = ssim(&mag_rec, &mag_truth, &region, mag_range)?;
    let ssim_phase = ssim(&phase_rec, &phase_truth, &region, phase_range)?;

    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for ((r, t), &m) in fixed.iter().zip(truth.object.iter()).zip(region.iter()) {
        if m {
            err += (r - t).norm_sqr() as f64;
            norm += t.norm_sqr() as f64;
        }
    }
    let nrmse = if norm > 0.0 {
        (err / norm).sqrt()
    } else {
        f64::INFINITY
    };

    let same_positions = rec_positions.nrows() == truth.positions.nrows();
    let position_error_affine_median = same_positions
        .then(|| affine_residual_median(&rec_positions, &truth.positions))
        .flatten();
    let (position_error_median, position_error_p90) = if same_positions {
        let mut lengths: Vec<f64> = rec_positions
            .rows()
            .into_iter()
            .zip(truth.positions.rows())
            .map(|(p, q)| (p[0] + offset.0 - q[0]).hypot(p[1] + offset.1 - q[1]))
            .collect();
        lengths.sort_by(f64::total_cmp);
        (
            Some(percentile(&lengths, 0.5)),
            Some(percentile(&lengths, 0.9)),
        )
    } else {
        (None, None)
    };

    Ok(Score {
        ssim_magnitude,
        ssim_phase,
        nrmse,
        position_error_median,
        position_error_p90,
        position_error_affine_median,
        distance_error_rel: distance_error(rec, truth),
        shift: (s.0 + whole.0 - offset.0, s.1 + whole.1 - offset.1),
    })
}

/// Relative error of the refined distance, when both geometries refine the same quantity.
fn distance_error(rec: &Reconstruction, truth: &Truth) -> Option<f64> {
    let same_kind = rec.geometry.regime == truth.geometry.regime
        && rec.geometry.source_distance.is_some() == truth.geometry.source_distance.is_some();
    let d_true = truth.geometry.refined_distance();
    let d_rec = rec.geometry.refined_distance();
    (same_kind && d_true.is_finite() && d_true > 0.0 && d_rec.is_finite())
        .then(|| (d_rec - d_true).abs() / d_true)
}

/// Median distance (px) between `truth` and the affine map of `rec` (J x 2 each) that fits it
/// best by least squares ([`scan_affine::affine_residual`]); the fit is repeated once without
/// the positions more than 3 times the median (and 1 px) away, so that a few misplaced positions
/// do not tilt it. `None` for fewer than 4 positions.
fn affine_residual_median(rec: &Array2<f64>, truth: &Array2<f64>) -> Option<f64> {
    let j = rec.nrows();
    if j < 4 {
        return None;
    }
    let lengths = |keep: Option<&[bool]>| -> Vec<f64> {
        let residual = scan_affine::affine_residual(rec, truth, keep);
        residual
            .rows()
            .into_iter()
            .map(|r| r[0].hypot(r[1]))
            .collect()
    };
    let median = |v: &[f64]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 0.5)
    };
    let first = lengths(None);
    let bound = (3.0 * median(&first)).max(1.0);
    let keep: Vec<bool> = first.iter().map(|&r| r <= bound).collect();
    let second = if keep.iter().filter(|&&k| k).count() >= 4 {
        lengths(Some(&keep))
    } else {
        first
    };
    Some(median(&second))
}

/// Percentile `q` in [0, 1] of sorted values, interpolating linearly between order statistics.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (rank - lo as f64) * (sorted[hi] - sorted[lo])
}

fn range_over(a: &Array2<f64>, region: &Array2<bool>) -> f64 {
    let (lo, hi) = a
        .iter()
        .zip(region.iter())
        .filter(|(_, &m)| m)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (&v, _)| {
            (lo.min(v), hi.max(v))
        });
    hi - lo
}

fn max_over(a: &Array2<f64>, region: &Array2<bool>) -> f64 {
    a.iter()
        .zip(region.iter())
        .filter(|(_, &m)| m)
        .fold(0.0f64, |hi, (&v, _)| hi.max(v.abs()))
}

/// Rejects inputs that cannot be scored, naming what is wrong.
fn validate(rec: &Reconstruction, truth: &Truth) -> Result<()> {
    let bad = |what: &str, problem: String| Err(Error::invalid(what, problem));
    for (name, positions) in [
        ("reconstruction positions", &rec.positions),
        ("truth positions", &truth.positions),
    ] {
        if positions.ncols() != 2 || positions.nrows() == 0 {
            return bad(
                name,
                format!("expected (J, 2) with J >= 1, found {:?}", positions.dim()),
            );
        }
        if positions.iter().any(|v| !v.is_finite()) {
            return bad(name, "a position is not finite".into());
        }
    }
    for (name, object) in [
        ("reconstruction object", &rec.object),
        ("truth object", &truth.object),
    ] {
        if object.is_empty() {
            return bad(name, "the object array is empty".into());
        }
        if object
            .iter()
            .any(|v| !(v.re.is_finite() && v.im.is_finite()))
        {
            return bad(name, "the object holds NaN or infinity".into());
        }
    }
    for (name, probe) in [
        ("reconstruction probe", &rec.probe),
        ("truth probe", &truth.probe),
    ] {
        let sh = probe.shape();
        if sh[0] == 0 || sh[1] == 0 || sh[1] != sh[2] {
            return bad(
                name,
                format!("expected (M, N, N) with M, N >= 1, found {sh:?}"),
            );
        }
    }
    for (name, pixel) in [
        ("reconstruction geometry", rec.geometry.sample_pixel()),
        ("truth geometry", truth.geometry.sample_pixel()),
    ] {
        if !(pixel.is_finite() && pixel > 0.0) {
            return bad(
                name,
                format!("the sample pixel size must be finite and positive, got {pixel} m"),
            );
        }
    }
    Ok(())
}

/// The score as a table: metric, value and, where there is one, the target with `ok`/`MISS`.
pub fn format_table(score: &Score) -> String {
    let mut out = format!("{:<32} {:>16}   {}\n", "metric", "value", "target");
    let mut row = |name: &str, value: String, target: Option<(String, bool)>| {
        let target = match target {
            Some((t, pass)) => format!("{t:<8} {}", if pass { "ok" } else { "MISS" }),
            None => String::new(),
        };
        out.push_str(format!("{name:<32} {value:>16}   {target}").trim_end());
        out.push('\n');
    };
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_string(), f);
    row(
        "magnitude SSIM",
        format!("{:.4}", score.ssim_magnitude),
        Some((
            format!(">= {TARGET_SSIM_MAGNITUDE}"),
            score.ssim_magnitude >= TARGET_SSIM_MAGNITUDE,
        )),
    );
    row("phase SSIM", format!("{:.4}", score.ssim_phase), None);
    row("NRMSE", format!("{:.4}", score.nrmse), None);
    row(
        "median position error (px)",
        opt(score.position_error_median, &|v| format!("{v:.3}")),
        score.position_error_median.map(|v| {
            (
                format!("< {TARGET_POSITION_MEDIAN_PX}"),
                v < TARGET_POSITION_MEDIAN_PX,
            )
        }),
    );
    row(
        "p90 position error (px)",
        opt(score.position_error_p90, &|v| format!("{v:.3}")),
        None,
    );
    row(
        "median error, affine removed (px)",
        opt(score.position_error_affine_median, &|v| format!("{v:.3}")),
        None,
    );
    row(
        "relative distance error",
        opt(score.distance_error_rel, &|v| format!("{:.3} %", 100.0 * v)),
        score.distance_error_rel.map(|v| {
            (
                format!("< {} %", 100.0 * TARGET_DISTANCE_REL),
                v < TARGET_DISTANCE_REL,
            )
        }),
    );
    row(
        "residual shift (row, col) px",
        format!("({:+.2}, {:+.2})", score.shift.0, score.shift.1),
        None,
    );
    out
}
