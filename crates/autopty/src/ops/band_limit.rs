//! Band limit of the object in the near field: removes the spatial frequencies the detector
//! cannot have recorded.
//!
//! In the Fresnel regime a grating of spatial frequency `f` (cycles per sample pixel) in the
//! object sends its light sideways by `lambda z_eff f / dx^2 = f / F` pixels on the way to the
//! detector (`F` the pixel Fresnel number, `dx^2 / (lambda z_eff)`). Once that shift is a good
//! part of the detector width N, the light of the frequency leaves the window for all but the
//! points at the far rim of the probe, where the illumination is weak: the data barely constrain
//! it, and what the reconstruction puts there is amplified noise (measured on the `paper` preset
//! with exact metadata at 0.2 m: above 0.45 cycles/px the error had more power than the true
//! object, and a low-pass of the result raised the magnitude SSIM from 0.69 to 0.91). The object
//! is therefore kept band-limited to the disc `|f| <= min(b N F, 1/2)`: with `b = 1/2`, light
//! from the probe's centre still lands on the detector, and the disc never reaches past the
//! Nyquist frequency of either axis. It is the near-field counterpart of the far-field
//! detector's numerical aperture.
//!
//! The filter is a raised-cosine edge of [`EDGE_WIDTH`] cycles/px centred on the cutoff, applied
//! to the whole H x W object in Fourier space (periodic; the object's margin is flat, so there is
//! no seam to spread).

use crate::error::{Error, Result};
use crate::geometry::Regime;
use crate::model::Model;
use ndarray::{Array2, Axis};
use num_complex::Complex32;
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// The largest cutoff (cycles/px): the disc inscribed in the square of sampled frequencies.
/// Beyond it lie only the diagonal corners, which a sampled object holds along no single axis.
pub const NYQUIST_DISC: f64 = 0.5;

/// Width (cycles per pixel) of the filter's raised-cosine edge.
pub const EDGE_WIDTH: f64 = 0.1;

/// Radial low-pass filter of an H x W complex image, planned once.
pub struct BandLimit {
    rows: usize,
    cols: usize,
    forward_rows: Arc<dyn Fft<f32>>,
    inverse_rows: Arc<dyn Fft<f32>>,
    forward_cols: Arc<dyn Fft<f32>>,
    inverse_cols: Arc<dyn Fft<f32>>,
    /// Cutoff (cycles/px) the mask was built for.
    cutoff: f64,
    /// Filter gain times `1 / (H W)`, in transposed order `[column][row]`.
    mask_t: Vec<f32>,
}

/// Columns per task of the filter's column pass: gathered into contiguous buffers, so that the
/// image is read and written once, and small enough to stay in the L1 cache (8 x 648 px of
/// `paper`'s object: 41 KiB).
const COLUMNS: usize = 8;

impl BandLimit {
    /// A filter for H x W images (no cutoff set yet: [`BandLimit::apply`] does nothing).
    pub fn new(rows: usize, cols: usize) -> Self {
        let mut planner = FftPlanner::<f32>::new();
        BandLimit {
            rows,
            cols,
            forward_rows: planner.plan_fft_forward(cols),
            inverse_rows: planner.plan_fft_inverse(cols),
            forward_cols: planner.plan_fft_forward(rows),
            inverse_cols: planner.plan_fft_inverse(rows),
            cutoff: f64::INFINITY,
            mask_t: Vec::new(),
        }
    }

    /// The cutoff (cycles/px) for band-limit fraction `b` of the detector width `n` (px) at pixel
    /// Fresnel number `pixel_fresnel` (see the module docs), at most the Nyquist disc.
    pub fn cutoff_for(b: f64, n: usize, pixel_fresnel: f64) -> f64 {
        (b * n as f64 * pixel_fresnel).min(NYQUIST_DISC)
    }

    /// Sets the cutoff (cycles/px), rounded to a step of 0.1 % so that the mask is rebuilt only
    /// when the cutoff moved by that much, and is the same function of the cutoff whatever
    /// cutoffs came before (a resumed run filters with the same bits).
    pub fn set_cutoff(&mut self, cutoff: f64) {
        const STEP: f64 = 1e-3;
        let cutoff = ((cutoff.max(1e-9).ln() / STEP).round() * STEP).exp();
        if cutoff == self.cutoff {
            return;
        }
        self.cutoff = cutoff;
        // Every frequency is below the cutoff's edge: nothing to filter.
        if cutoff - EDGE_WIDTH / 2.0 >= std::f64::consts::FRAC_1_SQRT_2 {
            self.mask_t.clear();
            return;
        }
        let (h, w) = (self.rows, self.cols);
        let norm = 1.0 / (h * w) as f64;
        let freq = |k: usize, len: usize| crate::fft::freq_index(k, len) / len as f64;
        // The gain depends on |f_x| and |f_y| alone, and index k has the frequency of -(H - k)
        // (W - l along x): the columns up to W / 2 are computed, each from its first half, and
        // the others are copies.
        self.mask_t.resize(h * w, 0.0);
        let (computed, mirrored) = self.mask_t.split_at_mut((w / 2 + 1).min(w) * h);
        computed
            .par_chunks_exact_mut(h)
            .enumerate()
            .for_each(|(l, column)| {
                let fx = freq(l, w);
                for k in 0..=h / 2 {
                    let m = (gain(freq(k, h).hypot(fx), cutoff) * norm) as f32;
                    column[k] = m;
                    column[(h - k) % h] = m;
                }
            });
        let computed = &*computed;
        mirrored
            .par_chunks_exact_mut(h)
            .enumerate()
            .for_each(|(i, column)| {
                let l = w - (w / 2 + 1 + i);
                column.copy_from_slice(&computed[l * h..(l + 1) * h]);
            });
    }

    /// The cutoff (cycles/px) in use; infinite before the first [`BandLimit::set_cutoff`].
    pub fn cutoff(&self) -> f64 {
        self.cutoff
    }

    /// Low-passes `image` (H x W, row-major) in place: the forward FFT along the rows; per block
    /// of [`COLUMNS`] columns, the forward FFT along the columns, the filter and the inverse
    /// FFT; the inverse FFT along the rows. Rows and blocks run in parallel.
    pub fn apply(&self, image: &mut Array2<Complex32>) {
        if self.mask_t.is_empty() {
            return;
        }
        let (h, w) = (self.rows, self.cols);
        assert_eq!(image.dim(), (h, w), "image shape differs from the filter's");
        let data = image.as_slice_mut().expect("contiguous image");
        rows_pass(data, w, &self.forward_rows);
        let (forward, inverse) = (&self.forward_cols, &self.inverse_cols);
        image
            .axis_chunks_iter_mut(Axis(1), COLUMNS)
            .into_par_iter()
            .zip(self.mask_t.par_chunks(COLUMNS * h))
            .for_each_init(
                || {
                    let scratch = scratch_len(&[forward, inverse]);
                    (
                        vec![Complex32::default(); COLUMNS * h],
                        vec![Complex32::default(); scratch],
                    )
                },
                |(columns, scratch), (mut block, mask)| {
                    let columns = &mut columns[..block.ncols() * h];
                    for (r, row) in block.rows().into_iter().enumerate() {
                        for (c, &v) in row.iter().enumerate() {
                            columns[c * h + r] = v;
                        }
                    }
                    for (column, mask) in columns.chunks_exact_mut(h).zip(mask.chunks_exact(h)) {
                        forward.process_with_scratch(column, scratch);
                        for (v, m) in column.iter_mut().zip(mask) {
                            *v *= *m;
                        }
                        inverse.process_with_scratch(column, scratch);
                    }
                    for (r, mut row) in block.rows_mut().into_iter().enumerate() {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = columns[c * h + r];
                        }
                    }
                },
            );
        let data = image.as_slice_mut().expect("contiguous image");
        rows_pass(data, w, &self.inverse_rows);
    }
}

/// The object's band limit as the engines apply it: the cutoff follows the model's current
/// distance; near field only (in the far field the detector's aperture is the band limit).
pub struct ObjectBandLimit {
    fraction: f64,
    filter: BandLimit,
}

impl ObjectBandLimit {
    /// The band limit at fraction `b` of the detector width for `model`; `None` when `b` is 0 or
    /// the geometry is far field.
    pub fn new(fraction: f64, model: &Model) -> Option<Self> {
        let (h, w) = model.object.dim();
        (fraction > 0.0 && model.geometry().regime == Regime::NearField).then(|| ObjectBandLimit {
            fraction,
            filter: BandLimit::new(h, w),
        })
    }

    /// Checks a band-limit fraction given as setting `field`.
    pub fn validate(field: &str, fraction: f64) -> Result<()> {
        if fraction.is_finite() && fraction >= 0.0 {
            Ok(())
        } else {
            Err(Error::invalid(
                field,
                format!("expected a finite fraction of the detector width >= 0, got {fraction}"),
            ))
        }
    }

    /// Low-passes the model's object at the cutoff of its current distance.
    pub fn apply(&mut self, model: &mut Model) {
        let fresnel = model.geometry().pixel_fresnel_number();
        let cutoff = BandLimit::cutoff_for(self.fraction, model.frame(), fresnel);
        self.filter.set_cutoff(cutoff);
        self.filter.apply(&mut model.object);
    }
}

/// Filter gain at radial frequency `f` for `cutoff` (both cycles/px): 1 below the edge, a
/// raised cosine across it, 0 above.
fn gain(f: f64, cutoff: f64) -> f64 {
    let t = (f - cutoff) / EDGE_WIDTH + 0.5;
    if t <= 0.0 {
        1.0
    } else if t >= 1.0 {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

fn scratch_len(plans: &[&Arc<dyn Fft<f32>>]) -> usize {
    plans
        .iter()
        .map(|p| p.get_inplace_scratch_len())
        .max()
        .unwrap_or(0)
}

/// The 1-D transform `plan` over every row (length `len`) of `data`, rows in parallel.
fn rows_pass(data: &mut [Complex32], len: usize, plan: &Arc<dyn Fft<f32>>) {
    data.par_chunks_mut(len).for_each_init(
        || vec![Complex32::default(); plan.get_inplace_scratch_len()],
        |scratch, row| plan.process_with_scratch(row, scratch),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn grating(h: usize, w: usize, ky: f64, kx: f64) -> Array2<Complex32> {
        Array2::from_shape_fn((h, w), |(r, c)| {
            let phase = 2.0 * PI * (ky * r as f64 / h as f64 + kx * c as f64 / w as f64);
            Complex32::new(phase.cos() as f32, phase.sin() as f32)
        })
    }

    fn max_diff(a: &Array2<Complex32>, b: &Array2<Complex32>) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).norm())
            .fold(0.0, f32::max)
    }

    #[test]
    fn passes_low_frequencies_and_removes_high_ones() {
        let (h, w) = (60, 90);
        let mut filter = BandLimit::new(h, w);
        filter.set_cutoff(0.3);
        assert!((filter.cutoff() - 0.3).abs() < 2e-4);
        // 0.1 cycles/px along x and 0.1 along y: |f| = 0.14, well inside the band.
        let low = grating(h, w, 6.0, 9.0);
        let mut out = low.clone() + Complex32::new(1.0, 0.0);
        filter.apply(&mut out);
        assert!(max_diff(&out, &(low + Complex32::new(1.0, 0.0))) < 1e-4);
        // 0.4 cycles/px along both: |f| = 0.57, beyond the edge (0.35).
        let mut high = grating(h, w, 24.0, 36.0);
        filter.apply(&mut high);
        assert!(high.iter().all(|v| v.norm() < 1e-4));
        // On the edge's centre the gain is one half.
        let mut mid = grating(h, w, 0.0, 27.0);
        filter.apply(&mut mid);
        let want = grating(h, w, 0.0, 27.0) * Complex32::new(0.5, 0.0);
        assert!(max_diff(&mid, &want) < 3e-3);
    }

    #[test]
    fn a_cutoff_beyond_the_corner_leaves_the_image_alone() {
        let mut filter = BandLimit::new(16, 20);
        filter.set_cutoff(0.8);
        let original = grating(16, 20, 8.0, 10.0);
        let mut image = original.clone();
        filter.apply(&mut image);
        assert_eq!(image, original);
    }

    #[test]
    fn cutoff_scales_with_the_fresnel_number() {
        // paper preset at 0.2 m: dx = 1 um, lambda = 1 nm, F = 1e-12 / 2e-10 = 0.005.
        let f = BandLimit::cutoff_for(0.4, 128, 0.005);
        assert!((f - 0.256).abs() < 1e-12);
        // At 0.1 m the fraction would allow 0.512: capped at the Nyquist disc.
        assert_eq!(BandLimit::cutoff_for(0.4, 128, 0.01), NYQUIST_DISC);
    }
}
