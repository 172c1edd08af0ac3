//! The measured data of one experiment, independent of the file it came from.
//!
//! - `intensities` (J, N, N): photon counts per detector pixel, f32, detector-centred (the
//!   far-field zero frequency at `[N/2, N/2]`; in near field simply the detector image).
//! - `mask` (N, N): `true` for a pixel to use.
//! - `positions` (J, 2): where the probe sits on the sample, `(y, x)` in metres in the sample
//!   plane; y grows with the object's row index, x with its column index. Readers convert their
//!   file's sign and axis conventions to this one; nothing else in the library does.
//! - `geometry`: wavelength, distances, pixel sizes.
//! - `noise_floor`: the variance of the detector noise left in each pixel after dark
//!   subtraction (counts squared; dark current, a Poisson count, has a variance of as many
//!   counts as its mean), 0 for a photon-counting detector. The losses weight pixels by it
//!   (see [`crate::ops::loss`]).
//!
//! Ground truth for simulated data lives in [`Truth`].

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use ndarray::{Array2, Array3};
use num_complex::Complex32;

/// Measured diffraction data with its geometry and nominal scan positions.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Measured intensities (J, N, N), photons.
    pub intensities: Array3<f32>,
    /// Valid-pixel mask (N, N), `true` = use.
    pub mask: Array2<bool>,
    /// Nominal probe positions (J, 2) as (y, x) in metres, sample plane.
    pub positions: Array2<f64>,
    /// Experimental geometry.
    pub geometry: Geometry,
    /// Variance of the detector noise per pixel after dark subtraction (counts squared), 0
    /// when there is none (photon counting) or it is unknown.
    pub noise_floor: f64,
}

impl Dataset {
    /// Number of scan positions J.
    pub fn len(&self) -> usize {
        self.intensities.shape()[0]
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Detector frame side N.
    pub fn frame(&self) -> usize {
        self.intensities.shape()[1]
    }

    /// Checks shapes and values; `source` names the file in the error messages.
    pub fn validate(&self, source: &str) -> Result<()> {
        let sh = self.intensities.shape();
        let bad = |field: &str, problem: String| Err(Error::field(source, field, problem));
        if sh[0] == 0 {
            return bad(
                "data",
                "expected at least one diffraction pattern, found none".into(),
            );
        }
        if sh[1] != sh[2] {
            return bad(
                "data",
                format!("expected square frames, found {} x {}", sh[1], sh[2]),
            );
        }
        if sh[1] != self.geometry.frame {
            return bad(
                "data",
                format!(
                    "frames are {} px but the geometry says {}",
                    sh[1], self.geometry.frame
                ),
            );
        }
        if self.mask.shape() != [sh[1], sh[2]] {
            return bad(
                "mask",
                format!(
                    "expected shape {} x {} like the frames, found {:?}",
                    sh[1],
                    sh[2],
                    self.mask.shape()
                ),
            );
        }
        if self.positions.shape() != [sh[0], 2] {
            return bad(
                "positions",
                format!(
                    "expected {} positions (one per pattern), found {:?}",
                    sh[0],
                    self.positions.shape()
                ),
            );
        }
        if let Some(i) = self.positions.iter().position(|v| !v.is_finite()) {
            return bad("positions", format!("position {} is not finite", i / 2));
        }
        if let Some(i) = self.intensities.iter().position(|v| !v.is_finite()) {
            let nn = sh[1] * sh[2];
            return bad("data", format!("pattern {} holds NaN or infinity", i / nn));
        }
        if self.intensities.iter().any(|&v| v < 0.0) {
            return bad(
                "data",
                "negative intensities (subtract darks and clip first)".into(),
            );
        }
        if !self.mask.iter().any(|&m| m) {
            return bad("mask", "every pixel is masked".into());
        }
        if !(self.noise_floor.is_finite() && self.noise_floor >= 0.0) {
            return bad(
                "noise_floor",
                format!(
                    "expected a finite variance of at least 0 photons, found {}",
                    self.noise_floor
                ),
            );
        }
        self.geometry
            .validate()
            .map_err(|e| Error::field(source, "geometry", e.to_string()))
    }

    /// Nominal positions in sample pixels (J, 2) as (row, col) of the probe window's top-left
    /// corner, shifted so that the smallest row and column are `border`.
    pub fn positions_in_pixels(&self, pixel: f64, border: f64) -> Array2<f64> {
        positions_to_pixels(&self.positions, pixel, border)
    }

    /// Mean photon count per pattern.
    pub fn mean_photons(&self) -> f64 {
        self.intensities.iter().map(|&v| v as f64).sum::<f64>() / self.len().max(1) as f64
    }

    /// Photons counted in the valid (unmasked) pixels of all patterns, summed pattern by pattern.
    pub fn measured_photons(&self) -> f64 {
        self.intensities
            .outer_iter()
            .map(|f| {
                f.iter()
                    .zip(&self.mask)
                    .map(|(&v, &m)| if m { v as f64 } else { 0.0 })
                    .sum::<f64>()
            })
            .sum()
    }
}

/// The noise floor (see [`Dataset::noise_floor`]) left by subtracting the mean of `darks`
/// (K frames, each `frame_len` values in a row): the per-pixel variance across the frames,
/// averaged over the pixels, times `1 + 1/K` for the noise of the subtracted mean. `None` for
/// fewer than two frames, whose spread cannot be measured.
pub fn noise_floor_of_darks(darks: &[f32], frame_len: usize) -> Option<f64> {
    let k = darks.len() / frame_len.max(1);
    if k < 2 {
        return None;
    }
    let mut variance = 0.0;
    for p in 0..frame_len {
        let values = darks.iter().skip(p).step_by(frame_len).map(|&v| v as f64);
        let mean = values.clone().sum::<f64>() / k as f64;
        variance += values.map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    }
    Some(variance / frame_len as f64 * (1.0 + 1.0 / k as f64))
}

/// Converts positions in metres to pixels with the minimum row/col at `border`.
pub fn positions_to_pixels(positions: &Array2<f64>, pixel: f64, border: f64) -> Array2<f64> {
    let mut px = positions.mapv(|v| v / pixel);
    for mut col in px.columns_mut() {
        let min = col.iter().cloned().fold(f64::INFINITY, f64::min);
        col.mapv_inplace(|v| v - min + border);
    }
    px
}

/// The truth behind a simulated dataset.
#[derive(Clone, Debug)]
pub struct Truth {
    /// True object transmission (H, W).
    pub object: Array2<Complex32>,
    /// True probe modes (M, N, N).
    pub probe: Array3<Complex32>,
    /// True positions (J, 2): (row, col) of each probe window's top-left corner in `object`, px.
    pub positions: Array2<f64>,
    /// True geometry (distances, pixel size).
    pub geometry: Geometry,
}
