//! Numerical guards on measured data before a reconstruction, for what readers accept but a fit
//! must not see:
//!
//! - saturated pixels: a detector clips at its full-well count, so several pixels of a frame
//!   share its maximum exactly. The pixels that reach that level in any frame (or a level given
//!   by the user) are masked, for every frame (the mask is per detector pixel).
//! - all-zero frames (beam off, shutter closed): they would pull the object under the probe to
//!   zero; they are dropped.
//! - positions far outside the scan (a glitch of the encoder): such a position would stretch the
//!   object array and fit an isolated window; it is dropped. "Far" means beyond the 5 to 95 %
//!   range of that coordinate by more than that range plus one frame width.
//!
//! NaN and infinite values are refused by the readers and [`Dataset::validate`].

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use ndarray::Axis;

/// A frame's maximum shared by at least this many pixels looks clipped.
pub const FLAT_MAX_PIXELS: usize = 4;
/// Counts below this tie by chance and are not taken as saturation.
pub const FLAT_MAX_MIN_COUNT: f32 = 50.0;
/// More than this fraction of the pixels saturated is refused (not a clipped detector).
const MAX_SATURATED_FRACTION: f64 = 0.25;

/// What the guards changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Guarded {
    /// Count level taken as saturation, if any.
    pub saturation: Option<f32>,
    /// Detector pixels newly masked as saturated.
    pub saturated_pixels: usize,
    /// Original indices of the dropped all-zero frames.
    pub zero_frames: Vec<usize>,
    /// Original indices of the frames dropped for positions far outside the scan.
    pub far_positions: Vec<usize>,
}

impl Guarded {
    /// One line per change, for logs and the report.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.saturated_pixels > 0 {
            out.push(format!(
                "masked {} detector pixel(s) that reach the saturation level {}",
                self.saturated_pixels,
                self.saturation.unwrap_or(f32::NAN)
            ));
        }
        if !self.zero_frames.is_empty() {
            out.push(format!(
                "dropped {} all-zero frame(s): {:?}",
                self.zero_frames.len(),
                self.zero_frames
            ));
        }
        if !self.far_positions.is_empty() {
            out.push(format!(
                "dropped {} frame(s) whose positions lie far outside the scan: {:?}",
                self.far_positions.len(),
                self.far_positions
            ));
        }
        out
    }
}

/// The detector's clipping level: the lowest frame maximum (above [`FLAT_MAX_MIN_COUNT`]) that
/// at least [`FLAT_MAX_PIXELS`] valid pixels of its frame share.
fn detect_saturation(data: &Dataset) -> Option<f32> {
    let mut level: Option<f32> = None;
    for frame in data.intensities.outer_iter() {
        let (mut max, mut ties) = (f32::NEG_INFINITY, 0usize);
        for (&v, &good) in frame.iter().zip(&data.mask) {
            if !good {
                continue;
            }
            if v > max {
                (max, ties) = (v, 1);
            } else if v == max {
                ties += 1;
            }
        }
        if max > FLAT_MAX_MIN_COUNT && ties >= FLAT_MAX_PIXELS {
            level = Some(level.map_or(max, |l| l.min(max)));
        }
    }
    level
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Applies the guards to `data` (`source` names the file in errors); `saturation` is the
/// detector's clipping count if known (else it is detected).
pub fn guard(data: &mut Dataset, source: &str, saturation: Option<f32>) -> Result<Guarded> {
    let mut out = Guarded {
        saturation: saturation.or_else(|| detect_saturation(data)),
        ..Guarded::default()
    };
    if let Some(level) = out.saturation {
        let mut clipped = data.mask.clone();
        clipped.fill(false);
        for frame in data.intensities.outer_iter() {
            ndarray::Zip::from(&mut clipped)
                .and(&frame)
                .for_each(|c, &v| *c |= v >= level);
        }
        let newly = ndarray::Zip::from(&clipped)
            .and(&data.mask)
            .fold(0usize, |n, &c, &m| n + usize::from(c && m));
        if newly as f64 > MAX_SATURATED_FRACTION * data.mask.len() as f64 {
            return Err(Error::field(
                source,
                "data",
                format!(
                    "expected a few saturated pixels, found {newly} of {} at or above {level} \
                     counts; give the detector's real saturation level",
                    data.mask.len()
                ),
            ));
        }
        ndarray::Zip::from(&mut data.mask)
            .and(&clipped)
            .for_each(|m, &c| *m &= !c);
        out.saturated_pixels = newly;
    }
    // Frames to drop.
    let mask = &data.mask;
    for (j, frame) in data.intensities.outer_iter().enumerate() {
        let total: f64 = frame
            .iter()
            .zip(mask)
            .filter(|(_, &m)| m)
            .map(|(&v, _)| v as f64)
            .sum();
        if total <= 0.0 {
            out.zero_frames.push(j);
        }
    }
    let frame_m = data.frame() as f64 * data.geometry.sample_pixel();
    if data.len() >= 4 {
        for axis in 0..2 {
            let mut col: Vec<f64> = data.positions.column(axis).to_vec();
            col.sort_by(f64::total_cmp);
            let (lo, hi) = (quantile(&col, 0.05), quantile(&col, 0.95));
            let reach = (hi - lo) + frame_m;
            for (j, &p) in data.positions.column(axis).iter().enumerate() {
                if (p < lo - reach || p > hi + reach) && !out.far_positions.contains(&j) {
                    out.far_positions.push(j);
                }
            }
        }
        out.far_positions.sort_unstable();
    }
    let keep: Vec<usize> = (0..data.len())
        .filter(|j| !out.zero_frames.contains(j) && !out.far_positions.contains(j))
        .collect();
    if keep.is_empty() {
        return Err(Error::field(
            source,
            "data",
            "expected frames with photons at positions inside the scan, found none",
        ));
    }
    if keep.len() < data.len() {
        data.intensities = data.intensities.select(Axis(0), &keep);
        data.positions = data.positions.select(Axis(0), &keep);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Dataset {
        let mut cfg = crate::sim::preset("small").unwrap();
        cfg.corruption.position_jitter = 0.0;
        crate::sim::simulate(&cfg).unwrap().0
    }

    #[test]
    fn clean_data_pass_unchanged() {
        let mut data = small();
        let before = data.clone();
        let g = guard(&mut data, "d.cxi", None).unwrap();
        assert_eq!(g, Guarded::default());
        assert_eq!(data.intensities, before.intensities);
        assert_eq!(data.mask, before.mask);
    }

    #[test]
    fn saturation_zero_frames_and_far_positions_are_handled() {
        let mut data = small();
        let j = data.len();
        // Clip frame 3 at a level below its maximum.
        let level = 0.5
            * data
                .intensities
                .index_axis(Axis(0), 3)
                .fold(0.0f32, |a, &b| a.max(b));
        data.intensities
            .index_axis_mut(Axis(0), 3)
            .mapv_inplace(|v| v.min(level));
        let clipped = data
            .intensities
            .index_axis(Axis(0), 3)
            .iter()
            .filter(|&&v| v >= level)
            .count();
        assert!(clipped >= FLAT_MAX_PIXELS);
        data.intensities.index_axis_mut(Axis(0), 5).fill(0.0);
        let far = 100.0 * data.frame() as f64 * data.geometry.sample_pixel();
        data.positions[[9, 1]] += far;
        let g = guard(&mut data, "d.cxi", None).unwrap();
        assert_eq!(g.saturation, Some(level));
        assert!(g.saturated_pixels >= clipped, "{g:?}");
        assert_eq!(g.zero_frames, vec![5]);
        assert_eq!(g.far_positions, vec![9]);
        assert_eq!(data.len(), j - 2);
        assert_eq!(data.positions.nrows(), j - 2);
        assert_eq!(g.notes().len(), 3);
        data.validate("d.cxi").unwrap();
        // Everything zero: refused, naming the file.
        let mut empty = small();
        empty.intensities.fill(0.0);
        let e = guard(&mut empty, "d.cxi", None).unwrap_err().to_string();
        assert!(e.contains("d.cxi") && e.contains("found none"), "{e}");
    }
}
