//! Exact sub-pixel extraction of object patches by trigonometric (Fourier) interpolation.
//!
//! The simulator must not share the reconstruction's bilinear sampler, so it treats the H x W
//! object as one period of a band-limited periodic function,
//! `O(y, x) = 1/(H W) sum_{k,l} S[k, l] exp(2 pi i (k y / H + l x / W))` with `S = DFT(O)`,
//! which equals the stored samples at integer (y, x) and is defined exactly in between. (The
//! object builder tapers the object's outer margin to a constant so that the periodic extension
//! has no seam.) A patch at the fractional position (r, c) is `O(r + i, c + j)` for
//! i, j = 0..N-1, computed from the spectrum, stored once, in two separable passes:
//!
//! 1. along y: for every spectral column l, multiply by `exp(2 pi i k r / H)` and inverse-FFT
//!    over k; keep rows 0..N;
//! 2. along x: for each of those N rows, multiply by `exp(2 pi i l c / W)` and inverse-FFT over l;
//!    keep columns 0..N.
//!
//! For even sizes the Nyquist bin (k = H/2) is split evenly between +H/2 and -H/2, so its ramp is
//! `cos(pi r)`; a real object then stays real at every shift.

use crate::fft::freq_index;
use ndarray::Array2;
use num_complex::{Complex32, Complex64};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Samples N x N patches of one object at arbitrary real positions.
pub struct PatchSampler {
    rows: usize,
    cols: usize,
    n: usize,
    /// Object spectrum transposed: `[l][k]`, i.e. column l of `DFT(O)` is contiguous.
    spectrum_t: Vec<Complex32>,
    inv_rows: Arc<dyn Fft<f32>>,
    inv_cols: Arc<dyn Fft<f32>>,
    scratch_len: usize,
}

/// Per-thread buffers of a [`PatchSampler`].
pub struct SamplerWork {
    column: Vec<Complex32>,
    /// Stage-1 output `[i][l]`: row i of the y-shifted object's x-spectrum.
    partial: Vec<Complex32>,
    row: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

impl PatchSampler {
    /// Prepares patches of side `n` from `object` (H x W, both at least `n`).
    pub fn new(object: &Array2<Complex32>, n: usize) -> Self {
        let (h, w) = object.dim();
        assert!(
            h >= n && w >= n,
            "object must be at least as large as the patch"
        );
        let mut planner = FftPlanner::<f32>::new();
        let fwd_rows = planner.plan_fft_forward(h);
        let fwd_cols = planner.plan_fft_forward(w);
        let inv_rows = planner.plan_fft_inverse(h);
        let inv_cols = planner.plan_fft_inverse(w);
        let scratch_len = [&fwd_rows, &fwd_cols, &inv_rows, &inv_cols]
            .iter()
            .map(|p| p.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        let mut scratch = vec![Complex32::default(); scratch_len];
        // DFT along x of every row, then along y of every column (stored transposed).
        let mut rows_ft: Vec<Complex32> = object.iter().copied().collect();
        for row in rows_ft.chunks_exact_mut(w) {
            fwd_cols.process_with_scratch(row, &mut scratch);
        }
        let mut spectrum_t = vec![Complex32::default(); h * w];
        transpose::transpose(&rows_ft, &mut spectrum_t, w, h);
        for col in spectrum_t.chunks_exact_mut(h) {
            fwd_rows.process_with_scratch(col, &mut scratch);
        }
        PatchSampler {
            rows: h,
            cols: w,
            n,
            spectrum_t,
            inv_rows,
            inv_cols,
            scratch_len,
        }
    }

    /// Patch side N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Buffers for one thread.
    pub fn work(&self) -> SamplerWork {
        SamplerWork {
            column: vec![Complex32::default(); self.rows],
            partial: vec![Complex32::default(); self.n * self.cols],
            row: vec![Complex32::default(); self.cols],
            scratch: vec![Complex32::default(); self.scratch_len],
        }
    }

    /// Writes `O(row + i, col + j)` for i, j in 0..N into `out` (N*N, row-major). Positions
    /// are object pixels; values outside [0, H) x [0, W) wrap around periodically.
    pub fn patch(&self, row: f64, col: f64, out: &mut [Complex32], work: &mut SamplerWork) {
        let (h, w, n) = (self.rows, self.cols, self.n);
        assert_eq!(out.len(), n * n, "patch buffer must hold N*N values");
        let ramp_y = shift_ramp(h, row);
        let ramp_x = shift_ramp(w, col);
        for (l, spec_col) in self.spectrum_t.chunks_exact(h).enumerate() {
            for ((c, s), r) in work.column.iter_mut().zip(spec_col).zip(&ramp_y) {
                *c = s * r;
            }
            self.inv_rows
                .process_with_scratch(&mut work.column, &mut work.scratch);
            for i in 0..n {
                work.partial[i * w + l] = work.column[i];
            }
        }
        let scale = 1.0 / (h as f32 * w as f32);
        for i in 0..n {
            for ((d, s), r) in work
                .row
                .iter_mut()
                .zip(&work.partial[i * w..(i + 1) * w])
                .zip(&ramp_x)
            {
                *d = s * r;
            }
            self.inv_cols
                .process_with_scratch(&mut work.row, &mut work.scratch);
            for (o, v) in out[i * n..(i + 1) * n].iter_mut().zip(&work.row) {
                *o = v * scale;
            }
        }
    }
}

/// `exp(2 pi i f(k) s / len)` for each bin k, with the Nyquist bin of an even length split
/// between its two signed frequencies (`cos(pi s)`). Phases are reduced in f64.
fn shift_ramp(len: usize, shift: f64) -> Vec<Complex32> {
    (0..len)
        .map(|k| {
            if len.is_multiple_of(2) && k == len / 2 {
                let c = (std::f64::consts::PI * shift).cos();
                return Complex32::new(c as f32, 0.0);
            }
            // Reduce k s / len modulo 1 before scaling, to keep the phase accurate.
            let turns = (freq_index(k, len) * shift / len as f64).rem_euclid(1.0);
            let z = Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * turns);
            Complex32::new(z.re as f32, z.im as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// A band-limited complex pattern, periodic over h x w.
    fn pattern(y: f64, x: f64, h: usize, w: usize) -> Complex64 {
        let (fy, fx) = (y / h as f64, x / w as f64);
        Complex64::new(0.7 + 0.2 * (2.0 * PI * (3.0 * fy + 1.0 * fx)).cos(), 0.0)
            + 0.15 * Complex64::from_polar(1.0, 2.0 * PI * (-2.0 * fy + 5.0 * fx) + 0.3)
            + Complex64::new(
                0.0,
                0.1 * (2.0 * PI * 7.0 * fx).sin() * (2.0 * PI * 4.0 * fy).cos(),
            )
    }

    #[test]
    fn fractional_shift_matches_the_analytic_pattern() {
        let (h, w, n) = (60, 72, 24);
        let obj = Array2::from_shape_fn((h, w), |(r, c)| {
            let v = pattern(r as f64, c as f64, h, w);
            Complex32::new(v.re as f32, v.im as f32)
        });
        let sampler = PatchSampler::new(&obj, n);
        let mut work = sampler.work();
        let mut out = vec![Complex32::default(); n * n];
        let mut worst = 0.0f64;
        for &(r, c) in &[(10.37, 7.81), (0.5, 0.5), (30.999, 41.25), (3.0, 17.0)] {
            sampler.patch(r, c, &mut out, &mut work);
            for i in 0..n {
                for j in 0..n {
                    let want = pattern(r + i as f64, c + j as f64, h, w);
                    let got = out[i * n + j];
                    let err = (Complex64::new(got.re as f64, got.im as f64) - want).norm();
                    worst = worst.max(err);
                }
            }
        }
        assert!(worst < 1e-4, "largest error {worst}");
    }

    #[test]
    fn integer_positions_return_the_samples() {
        let (h, w, n) = (40, 30, 16);
        let obj = Array2::from_shape_fn((h, w), |(r, c)| {
            Complex32::new(
                ((r * 13 + c * 7) % 10) as f32 / 10.0,
                ((r + 2 * c) % 5) as f32 / 5.0,
            )
        });
        let sampler = PatchSampler::new(&obj, n);
        let mut out = vec![Complex32::default(); n * n];
        sampler.patch(9.0, 11.0, &mut out, &mut sampler.work());
        for i in 0..n {
            for j in 0..n {
                let d = (out[i * n + j] - obj[[9 + i, 11 + j]]).norm();
                assert!(d < 1e-5, "({i}, {j}): {d}");
            }
        }
    }

    #[test]
    fn real_object_stays_real_at_half_pixel_shifts() {
        let (h, w, n) = (32, 32, 8);
        let obj = Array2::from_shape_fn((h, w), |(r, c)| {
            Complex32::new(if (r / 4 + c / 4) % 2 == 0 { 1.0 } else { 0.2 }, 0.0)
        });
        let sampler = PatchSampler::new(&obj, n);
        let mut out = vec![Complex32::default(); n * n];
        sampler.patch(5.5, 6.5, &mut out, &mut sampler.work());
        let worst = out.iter().map(|v| v.im.abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "imaginary part {worst}");
    }
}
