//! The focus-to-sample distance `z1` of a point-source (focused-beam) geometry read off the
//! registered scan.
//!
//! By the Fresnel scaling theorem the sample pixel is `dx = p z1 / (z1 + z2)` (detector pixel
//! `p`), so the stage positions in metres, divided by `dx`, give the positions in pixels. The
//! registration ([`super::registration`]) measures the positions in pixels from the holograms
//! alone; the ratio of the two scans is `1 / dx`, hence `z1 = z2 dx / (p - dx)`. A 30 % error
//! in the stored `z1` scales the nominal scan by about 25 %, tens of pixels at its edges, which
//! the alignment rounds cannot bridge and which biases every distance search (the pixel
//! positions then change with the trial distance). This estimate starts them close instead.
//!
//! The registration's prior pulls the scan towards the nominal one, whose scale is the stored
//! `z1`'s; [`register`] therefore measures the scale with a prior looser by
//! [`PRIOR_LOOSENING`].
//!
//! Only the total curvature of the beam at the sample is in the data (a defocus of the probe in
//! the equivalent plane-wave picture is the same data as another `z1`): the `z1` found is the one
//! at which the equivalent probe carries no overall quadratic phase.
//!
//! The fit: positions_px ≈ s * positions_m + offset (one isotropic scale s, an offset per axis),
//! least squares, repeated twice without the frames whose misfit exceeds three times the
//! median (frames the registration could not place).

use crate::dataset::{positions_to_pixels, Dataset};
use crate::engines::registration::{self, Registered, Registration};
use crate::error::Result;
use ndarray::{Array2, ArrayView2};

/// The fitted scan scale is accepted when at least this fraction of the frames agree with it.
const MIN_INLIER_FRACTION: f64 = 0.5;

/// The registration that measures the scan's scale for a point source has a prior this many
/// times looser: the scale is unknown there (it is what `z1` sets), and a tight prior pulls it
/// towards the stored one (measured on `focused_small` with 1 px position errors and its pictures
/// drawn over 432 px, simulation seeds 1 and 2: +5.4 % and +4.4 % in `z1` with the default prior,
/// +4.8 % and +4.3 % with this one; with the whole pictures on its 216 px object, seed 1: +0.7 %
/// and -0.25 %; with the middle half of them, the preset now, seed 1: +3.0 % with this one).
/// The positions themselves come from the default registration, which places single frames more
/// reliably.
pub const PRIOR_LOOSENING: f64 = 4.0;

/// Registers the scan of `data` (near field) around its nominal positions; for a point source
/// whose distance is refined (`refine_z1`), also estimates `z1` from the scale of a second
/// registration with a looser prior (module docs). Returns the registration, with its
/// corrections relative to the nominal positions at the returned `z1` (or at the stored one
/// when `None`).
pub fn register(
    data: &Dataset,
    settings: &Registration,
    refine_z1: bool,
) -> Result<(Registered, Option<f64>)> {
    let z1 = data.geometry.refined_distance();
    let nominal = data.positions_in_pixels(data.geometry.sample_pixel(), 0.0);
    let mut r = registration::register(data, nominal.view(), settings)?;
    if !(refine_z1 && data.geometry.source_distance.is_some()) {
        return Ok((r, None));
    }
    let loose = Registration {
        prior_sigma: settings.prior_sigma * PRIOR_LOOSENING,
        ..settings.clone()
    };
    let scale = registration::register(data, nominal.view(), &loose)?;
    let Some(found) = source_distance_from_scan(data, z1, scale.corrections.view()) else {
        return Ok((r, None));
    };
    tracing::info!(
        "scan scale: z1 {:.6} m from {} frames (median misfit {:.2} px)",
        found.source_distance,
        found.inliers,
        found.median_misfit
    );
    // The default registration's pixel positions, relative to the rescaled scan.
    let at = data.geometry.with_refined_distance(found.source_distance);
    r.corrections =
        recentred(&(&nominal + &r.corrections) - &data.positions_in_pixels(at.sample_pixel(), 0.0));
    Ok((r, Some(found.source_distance)))
}

/// Corrections less their mean per axis. The registration fixes the scan's offset only through
/// its prior, around the nominal scan at the stored `z1`; once the scan is rescaled that offset
/// is tens of pixels (the nominal scan starts at 0 and grows from there), which would move the
/// frames near the scan's start off the object array.
fn recentred(mut corrections: Array2<f64>) -> Array2<f64> {
    for mut col in corrections.columns_mut() {
        let mean = col.mean().unwrap_or(0.0);
        col.mapv_inplace(|v| v - mean);
    }
    corrections
}

/// What the scan says about `z1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanScale {
    /// Focus-to-sample distance (m) implied by the registered scan.
    pub source_distance: f64,
    /// The registration's corrections (J x 2 px) re-expressed relative to the nominal positions
    /// at that distance (same absolute pixel positions).
    pub corrections: Array2<f64>,
    /// Frames used in the final fit.
    pub inliers: usize,
    /// Median misfit (px) of the fit.
    pub median_misfit: f64,
}

/// Estimates `z1` from a registration's `corrections` (J x 2 px, relative to the nominal
/// positions with border 0 at the focus-to-sample distance `z1_nominal`). `None` for a plane
/// wave, a scan too small to fit, or a fit that fewer than half the frames agree with.
pub fn source_distance_from_scan(
    data: &Dataset,
    z1_nominal: f64,
    corrections: ArrayView2<f64>,
) -> Option<ScanScale> {
    let g = &data.geometry;
    g.source_distance?;
    let dx0 = g.with_refined_distance(z1_nominal).sample_pixel();
    let nominal = data.positions_in_pixels(dx0, 0.0);
    let registered = &nominal + &corrections;
    // Metres relative to the scan's minimum, as the model places them.
    let metres = positions_to_pixels(&data.positions, 1.0, 0.0);
    let j = data.len();
    if j < 3 {
        return None;
    }
    let mut used: Vec<bool> = vec![true; j];
    let mut scale = 1.0 / dx0;
    let mut median_misfit = f64::NAN;
    for _ in 0..3 {
        let (s, offset) = fit(metres.view(), registered.view(), &used)?;
        let misfit: Vec<f64> = (0..j)
            .map(|k| {
                let dy = registered[[k, 0]] - (s * metres[[k, 0]] + offset[0]);
                let dx = registered[[k, 1]] - (s * metres[[k, 1]] + offset[1]);
                dy.hypot(dx)
            })
            .collect();
        let mut sorted: Vec<f64> = (0..j).filter(|&k| used[k]).map(|k| misfit[k]).collect();
        sorted.sort_by(f64::total_cmp);
        median_misfit = sorted[sorted.len() / 2];
        let cut = (3.0 * median_misfit).max(1.0);
        used = misfit.iter().map(|&m| m <= cut).collect();
        scale = s;
    }
    let inliers = used.iter().filter(|&&u| u).count();
    if !(scale.is_finite() && scale > 0.0) || (inliers as f64) < MIN_INLIER_FRACTION * j as f64 {
        return None;
    }
    let dx = 1.0 / scale;
    let p = g.detector_pixel;
    if dx >= p {
        // A magnification below 1 is not a point source downstream of a focus.
        return None;
    }
    let z1 = g.distance * dx / (p - dx);
    let at = g.with_refined_distance(z1);
    let corrections = recentred(&registered - &data.positions_in_pixels(at.sample_pixel(), 0.0));
    Some(ScanScale {
        source_distance: z1,
        corrections,
        inliers,
        median_misfit,
    })
}

/// Least-squares isotropic scale and per-axis offset of `px ≈ s m + o` over the used rows.
fn fit(m: ArrayView2<f64>, px: ArrayView2<f64>, used: &[bool]) -> Option<(f64, [f64; 2])> {
    let rows: Vec<usize> = (0..m.nrows()).filter(|&k| used[k]).collect();
    if rows.len() < 3 {
        return None;
    }
    let count = rows.len() as f64;
    let mean =
        |a: &ArrayView2<f64>, axis: usize| rows.iter().map(|&k| a[[k, axis]]).sum::<f64>() / count;
    let (mm, pm) = ([mean(&m, 0), mean(&m, 1)], [mean(&px, 0), mean(&px, 1)]);
    let (mut num, mut den) = (0.0, 0.0);
    for &k in &rows {
        for a in 0..2 {
            let dm = m[[k, a]] - mm[a];
            num += dm * (px[[k, a]] - pm[a]);
            den += dm * dm;
        }
    }
    if den <= 0.0 {
        return None;
    }
    let s = num / den;
    Some((s, [pm[0] - s * mm[0], pm[1] - s * mm[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Geometry, Regime};

    #[test]
    fn recovers_z1_from_an_exact_scan_with_outliers() {
        let truth = Geometry {
            regime: Regime::NearField,
            wavelength: 1e-9,
            detector_pixel: 13.5e-6,
            distance: 0.5,
            source_distance: Some(0.014),
            frame: 64,
        };
        let dx = truth.sample_pixel();
        let px = Array2::from_shape_fn((25, 2), |(k, a)| {
            if a == 0 {
                (k / 5) as f64 * 19.0
            } else {
                (k % 5) as f64 * 19.0 + 0.3 * (k as f64).sin()
            }
        });
        let stored = truth.with_refined_distance(0.014 * 1.3);
        let data = Dataset {
            intensities: ndarray::Array3::ones((25, 64, 64)),
            mask: Array2::from_elem((64, 64), true),
            positions: px.mapv(|v| v * dx),
            geometry: stored.clone(),
            noise_floor: 0.0,
        };
        let nominal = data.positions_in_pixels(stored.sample_pixel(), 0.0);
        let mut corrections = &px - &nominal;
        // Two frames the registration lost, left where the nominal scan put them.
        corrections.row_mut(3).fill(0.0);
        corrections.row_mut(17).fill(0.0);
        let found = source_distance_from_scan(&data, 0.014 * 1.3, corrections.view()).unwrap();
        assert!(
            (found.source_distance / 0.014 - 1.0).abs() < 1e-3,
            "{}",
            found.source_distance
        );
        assert_eq!(found.inliers, 23);
        // Registered frames keep their absolute pixel positions, which the nominal scan at the
        // recovered distance now matches up to one offset (the nominal scan starts at 0).
        for k in (0..25).filter(|&k| k != 3 && k != 17) {
            for a in 0..2 {
                let d = found.corrections[[k, a]] - found.corrections[[0, a]];
                assert!(d.abs() < 0.1, "frame {k} axis {a}: {d}");
            }
        }
        let plane = Dataset {
            geometry: Geometry {
                source_distance: None,
                ..stored
            },
            ..data
        };
        assert!(source_distance_from_scan(&plane, 0.0182, corrections.view()).is_none());
    }
}
