//! Batched, unitary 2-D FFTs of square N x N complex f32 frames.
//!
//! Conventions: frames are row-major `[row, col]`; both directions are scaled by 1/N so the
//! transform is unitary (the inverse is the adjoint, Parseval holds). A 2-D transform is a pass
//! of 1-D FFTs over the rows, a transpose, a second row pass and a transpose back. Plans are built
//! once; each thread owns an [`FftWork`] (scratch + transpose buffer) so the hot path allocates
//! nothing. "Centred" variants put zero frequency at `[N/2, N/2]` (the fftshift convention used
//! for detector images); for even N this is done by a checkerboard sign flip of the input,
//! which costs one multiply instead of a copy.

use num_complex::Complex32;
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Fewest values a task of a parallel pass gets (128 KiB of complex f32): smaller passes run
/// on the calling thread, where splitting would cost more than it gains.
const TASK_VALUES: usize = 1 << 14;

/// Fewest values per task of a parallel pass started on this thread. Passes are split only on
/// a rayon worker (inside a parallel loop over frames, where idle workers take the pieces of
/// the last frames); a thread outside the pool would hand every pass to the pool and wait for
/// it, which costs more than a pass of one frame gains.
pub(crate) fn task_values() -> usize {
    if rayon::current_thread_index().is_some() {
        TASK_VALUES
    } else {
        usize::MAX
    }
}

thread_local! {
    /// FFT scratch of the rayon threads for split passes.
    static THREAD_SCRATCH: std::cell::RefCell<Vec<Complex32>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Plans for unitary forward and inverse 2-D FFTs of one N x N size.
#[derive(Clone)]
pub struct Fft2 {
    n: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
    scratch_len: usize,
}

/// Per-thread work buffers for [`Fft2`].
pub struct FftWork {
    pub(crate) scratch: Vec<Complex32>,
    pub(crate) transposed: Vec<Complex32>,
}

impl std::fmt::Debug for Fft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft2({}x{})", self.n, self.n)
    }
}

impl Fft2 {
    /// Plans transforms of N x N frames.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "FFT size must be positive");
        let mut planner = FftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scratch_len = forward
            .get_inplace_scratch_len()
            .max(inverse.get_inplace_scratch_len());
        Fft2 {
            n,
            forward,
            inverse,
            scratch_len,
        }
    }

    /// Side length N of the frames.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Length of the scratch buffer the row passes need.
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Buffers one thread needs to run transforms.
    pub fn work(&self) -> FftWork {
        FftWork {
            scratch: vec![Complex32::default(); self.scratch_len],
            transposed: vec![Complex32::default(); self.n * self.n],
        }
    }

    fn transform(&self, plan: &dyn Fft<f32>, frame: &mut [Complex32], work: &mut FftWork) {
        let n = self.n;
        assert_eq!(frame.len(), n * n, "frame must hold N*N values");
        let scale = 1.0 / n as f32;
        plan.process_with_scratch(frame, &mut work.scratch);
        transpose::transpose(frame, &mut work.transposed, n, n);
        plan.process_with_scratch(&mut work.transposed, &mut work.scratch);
        transpose::transpose(&work.transposed, frame, n, n);
        for v in frame.iter_mut() {
            *v *= scale;
        }
    }

    /// Unitary forward transform of one frame, in place (zero frequency at `[0, 0]`).
    pub fn forward(&self, frame: &mut [Complex32], work: &mut FftWork) {
        self.transform(self.forward.as_ref(), frame, work);
    }

    /// Unitary inverse transform of one frame, in place; the adjoint of [`Fft2::forward`].
    pub fn inverse(&self, frame: &mut [Complex32], work: &mut FftWork) {
        self.transform(self.inverse.as_ref(), frame, work);
    }

    /// Unscaled 1-D forward FFTs of every length-N row of `rows` (a whole number of rows): the
    /// building block of pruned and transposed-order 2-D transforms. Large passes are split
    /// over the rayon pool (see [`Fft2::rows`]).
    pub fn forward_rows(&self, rows: &mut [Complex32], scratch: &mut [Complex32]) {
        self.rows(self.forward.as_ref(), rows, scratch);
    }

    /// Unscaled 1-D inverse FFTs of every length-N row of `rows` (a whole number of rows).
    pub fn inverse_rows(&self, rows: &mut [Complex32], scratch: &mut [Complex32]) {
        self.rows(self.inverse.as_ref(), rows, scratch);
    }

    /// Runs `plan` on every row: on the calling thread with `scratch` when the pass is at most
    /// one task, otherwise in tasks of whole rows over the rayon pool, each thread with its
    /// own scratch. Idle threads take tasks of a pass that another thread runs, so a sweep of
    /// a few large frames keeps every core busy.
    fn rows(&self, plan: &dyn Fft<f32>, rows: &mut [Complex32], scratch: &mut [Complex32]) {
        let count = rows.len() / self.n;
        let most = (task_values() / self.n).max(1);
        if count <= most {
            plan.process_with_scratch(rows, scratch);
            return;
        }
        // Equal tasks, as many as the threads or a multiple: 128 rows in tasks of at most
        // 56 run as 4 x 32, not 56 + 56 + 16 (one thread would do 72 rows, the other 56).
        let tasks = count
            .div_ceil(most)
            .next_multiple_of(rayon::current_num_threads());
        let per_task = count.div_ceil(tasks) * self.n;
        rows.par_chunks_mut(per_task).for_each(|task| {
            THREAD_SCRATCH.with_borrow_mut(|s| {
                if s.len() < self.scratch_len {
                    s.resize(self.scratch_len, Complex32::default());
                }
                plan.process_with_scratch(task, &mut s[..self.scratch_len]);
            })
        });
    }

    /// Unscaled forward 2-D transform of `frame` in transposed order (`[kx, ky]`), left in
    /// the work buffer and returned: one transpose instead of two. `frame` is left with its
    /// row transforms. Multiply by `1/N` for the unitary transform.
    pub fn forward_into_transposed<'w>(
        &self,
        frame: &mut [Complex32],
        work: &'w mut FftWork,
    ) -> &'w mut [Complex32] {
        self.transform_to_transposed(self.forward.as_ref(), frame, work)
    }

    /// Unscaled inverse of a transposed-order spectrum, into the work buffer (see
    /// [`Fft2::forward_into_transposed`]); `spectrum` is left with its row transforms.
    pub fn inverse_into_transposed<'w>(
        &self,
        spectrum: &mut [Complex32],
        work: &'w mut FftWork,
    ) -> &'w mut [Complex32] {
        self.transform_to_transposed(self.inverse.as_ref(), spectrum, work)
    }

    fn transform_to_transposed<'w>(
        &self,
        plan: &dyn Fft<f32>,
        frame: &mut [Complex32],
        work: &'w mut FftWork,
    ) -> &'w mut [Complex32] {
        let n = self.n;
        assert_eq!(frame.len(), n * n, "frame must hold N*N values");
        self.rows(plan, frame, &mut work.scratch);
        transpose_block(frame, n, &mut work.transposed, n, n, n);
        self.rows(plan, &mut work.transposed, &mut work.scratch);
        &mut work.transposed
    }

    /// Forward transform with zero frequency at `[N/2, N/2]` (= fftshift of [`Fft2::forward`]).
    pub fn forward_centred(&self, frame: &mut [Complex32], work: &mut FftWork) {
        if self.n.is_multiple_of(2) {
            checkerboard(frame, self.n);
            self.forward(frame, work);
        } else {
            self.forward(frame, work);
            fftshift(frame, self.n, work);
        }
    }

    /// Inverse of [`Fft2::forward_centred`] and its adjoint: takes a centred spectrum.
    pub fn inverse_centred(&self, frame: &mut [Complex32], work: &mut FftWork) {
        if self.n.is_multiple_of(2) {
            self.inverse(frame, work);
            checkerboard(frame, self.n);
        } else {
            ifftshift(frame, self.n, work);
            self.inverse(frame, work);
        }
    }

    /// Forward transforms of every frame of a contiguous batch, in parallel.
    pub fn forward_batch(&self, frames: &mut [Complex32]) {
        self.batch(frames, |f, w| self.forward(f, w));
    }

    /// Inverse transforms of every frame of a contiguous batch, in parallel.
    pub fn inverse_batch(&self, frames: &mut [Complex32]) {
        self.batch(frames, |f, w| self.inverse(f, w));
    }

    fn batch<F>(&self, frames: &mut [Complex32], op: F)
    where
        F: Fn(&mut [Complex32], &mut FftWork) + Sync,
    {
        let nn = self.n * self.n;
        assert_eq!(frames.len() % nn, 0, "batch must hold whole N*N frames");
        frames
            .par_chunks_mut(nn)
            .for_each_init(|| self.work(), |work, frame| op(frame, work));
    }
}

/// Side of the square tiles [`transpose_block`] works in (16 x 16 complex f32 = 2 KiB, so a
/// source and a destination tile stay in L1).
const TILE: usize = 16;

/// Writes the transpose of a `rows` x `cols` block of `src` (row stride `src_stride`) into
/// `dst` (row stride `dst_stride`): `dst[c * dst_stride + r] = src[r * src_stride + c]`.
/// Works tile by tile so that both sides are read and written in cache-sized pieces; large
/// blocks are split into bands of source columns over the rayon pool.
pub(crate) fn transpose_block(
    src: &[Complex32],
    src_stride: usize,
    dst: &mut [Complex32],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_stride + cols <= src.len() && (cols - 1) * dst_stride + rows <= dst.len(),
        "transpose block outside its buffers"
    );
    let band = (task_values() / rows)
        .div_ceil(TILE)
        .max(1)
        .saturating_mul(TILE);
    if band >= cols {
        transpose_tiles(src, src_stride, dst, dst_stride, rows, cols);
        return;
    }
    dst.par_chunks_mut(band * dst_stride)
        .enumerate()
        .for_each(|(k, out)| {
            let c0 = k * band;
            if c0 < cols {
                let width = band.min(cols - c0);
                transpose_tiles(&src[c0..], src_stride, out, dst_stride, rows, width);
            }
        });
}

/// [`transpose_block`] on the calling thread.
fn transpose_tiles(
    src: &[Complex32],
    src_stride: usize,
    dst: &mut [Complex32],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let width = (c0 + TILE).min(cols) - c0;
            // Contiguous reads along each source row of the tile, strided writes inside the
            // destination tile (both tiles stay in L1).
            for r in r0..r1 {
                let row = &src[r * src_stride + c0..][..width];
                let out = &mut dst[c0 * dst_stride + r..];
                for (k, &v) in row.iter().enumerate() {
                    out[k * dst_stride] = v;
                }
            }
        }
    }
}

/// Multiplies `frame[r, c]` by (-1)^(r + c); for even N this turns an FFT into a centred one.
pub fn checkerboard(frame: &mut [Complex32], n: usize) {
    for (r, row) in frame.chunks_exact_mut(n).enumerate() {
        let start = 1 - r % 2;
        for v in row.iter_mut().skip(start).step_by(2) {
            *v = -*v;
        }
    }
}

fn roll(frame: &mut [Complex32], n: usize, shift: usize, work: &mut FftWork) {
    let tmp = &mut work.transposed;
    for r in 0..n {
        for c in 0..n {
            tmp[((r + shift) % n) * n + (c + shift) % n] = frame[r * n + c];
        }
    }
    frame.copy_from_slice(tmp);
}

/// Moves zero frequency from `[0, 0]` to `[N/2, N/2]` (numpy's `fftshift`).
pub fn fftshift(frame: &mut [Complex32], n: usize, work: &mut FftWork) {
    roll(frame, n, n / 2, work);
}

/// Inverse of [`fftshift`] (numpy's `ifftshift`).
pub fn ifftshift(frame: &mut [Complex32], n: usize, work: &mut FftWork) {
    roll(frame, n, n - n / 2, work);
}

/// Fills `out` with the phase ramp `exp(2 pi i freq_index(k, n) s / n)` over the n bins of
/// one FFT axis: the spectrum of a move by `-s` px. Built by recurrence from one `sin`/`cos`
/// (powers of `exp(2 pi i s / n)` in f64, whose error after n/2 products is ~1e-14).
pub fn fill_phase_ramp(n: usize, s: f64, out: &mut Vec<Complex32>) {
    let (sin, cos) = (std::f64::consts::TAU * s / n as f64).sin_cos();
    let step = num_complex::Complex64::new(cos, sin);
    out.clear();
    out.resize(n, Complex32::default());
    let mut w = num_complex::Complex64::new(1.0, 0.0);
    let positive = n.div_ceil(2);
    for k in 0..positive {
        out[k] = Complex32::new(w.re as f32, w.im as f32);
        // Bin n - k holds frequency -k.
        if k > 0 && n - k >= positive {
            out[n - k] = Complex32::new(w.re as f32, -w.im as f32);
        }
        w *= step;
    }
    if n.is_multiple_of(2) {
        // The Nyquist bin n/2 holds frequency -n/2.
        let (sin, cos) = (-std::f64::consts::PI * s).sin_cos();
        out[n / 2] = Complex32::new(cos as f32, sin as f32);
    }
}

/// Signed frequency index of FFT bin `k` of an N-point transform (0, 1, ..., -1).
pub fn freq_index(k: usize, n: usize) -> f64 {
    if k < n.div_ceil(2) {
        k as f64
    } else {
        k as f64 - n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_frame(n: usize, seed: u64) -> Vec<Complex32> {
        let mut s = seed;
        (0..n * n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let a = ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5;
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let b = ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5;
                Complex32::new(a, b)
            })
            .collect()
    }

    fn naive_dft(x: &[Complex32], n: usize) -> Vec<Complex32> {
        let mut out = vec![Complex32::default(); n * n];
        for ky in 0..n {
            for kx in 0..n {
                let mut acc = num_complex::Complex64::default();
                for y in 0..n {
                    for x_ in 0..n {
                        let ph =
                            -2.0 * std::f64::consts::PI * ((ky * y + kx * x_) as f64) / n as f64;
                        let v = x[y * n + x_];
                        acc += num_complex::Complex64::new(v.re as f64, v.im as f64)
                            * num_complex::Complex64::from_polar(1.0, ph);
                    }
                }
                out[ky * n + kx] =
                    Complex32::new((acc.re / n as f64) as f32, (acc.im / n as f64) as f32);
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive_unitary_dft() {
        for n in [6, 7, 8] {
            let fft = Fft2::new(n);
            let x = random_frame(n, n as u64);
            let mut y = x.clone();
            fft.forward(&mut y, &mut fft.work());
            let want = naive_dft(&x, n);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).norm() < 1e-5, "n={n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn inverse_undoes_forward_and_parseval_holds() {
        let n = 32;
        let fft = Fft2::new(n);
        let mut work = fft.work();
        let x = random_frame(n, 3);
        let mut y = x.clone();
        fft.forward(&mut y, &mut work);
        let ex: f64 = x.iter().map(|v| v.norm_sqr() as f64).sum();
        let ey: f64 = y.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((ex - ey).abs() / ex < 1e-5);
        fft.inverse(&mut y, &mut work);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).norm() < 1e-5);
        }
    }

    #[test]
    fn centred_equals_shifted_for_even_and_odd() {
        for n in [8, 9] {
            let fft = Fft2::new(n);
            let mut work = fft.work();
            let x = random_frame(n, 11);
            let mut a = x.clone();
            fft.forward_centred(&mut a, &mut work);
            let mut b = x.clone();
            fft.forward(&mut b, &mut work);
            fftshift(&mut b, n, &mut work);
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).norm() < 1e-5, "n={n}");
            }
            fft.inverse_centred(&mut a, &mut work);
            for (p, q) in a.iter().zip(&x) {
                assert!((p - q).norm() < 1e-5, "n={n}");
            }
        }
    }

    #[test]
    fn transposed_order_transforms_match_the_plain_ones() {
        for n in [6, 20, 35] {
            let fft = Fft2::new(n);
            let mut work = fft.work();
            let x = random_frame(n, 21);
            let mut plain = x.clone();
            fft.forward(&mut plain, &mut work);
            let scale = 1.0 / n as f32;
            let mut t: Vec<Complex32> = fft
                .forward_into_transposed(&mut x.clone(), &mut work)
                .iter()
                .map(|v| v * scale)
                .collect();
            for r in 0..n {
                for c in 0..n {
                    let d = t[c * n + r] - plain[r * n + c];
                    assert!(d.norm() < 1e-5, "n={n} ({r}, {c})");
                }
            }
            let back = fft.inverse_into_transposed(&mut t, &mut work);
            for (a, b) in back.iter().zip(&x) {
                assert!((a * scale - b).norm() < 1e-5, "n={n}");
            }
        }
    }

    #[test]
    fn phase_ramp_matches_the_direct_formula() {
        for n in [7, 8, 270] {
            let s = -3.37;
            let mut ramp = Vec::new();
            fill_phase_ramp(n, s, &mut ramp);
            assert_eq!(ramp.len(), n);
            for (k, v) in ramp.iter().enumerate() {
                let ph = std::f64::consts::TAU * freq_index(k, n) * s / n as f64;
                let want = Complex32::new(ph.cos() as f32, ph.sin() as f32);
                assert!((v - want).norm() < 1e-6, "n={n} bin {k}: {v} vs {want}");
            }
        }
    }

    #[test]
    fn block_transpose_moves_every_element_once() {
        let (rows, cols, ss, ds) = (37, 21, 40, 39);
        let src: Vec<Complex32> = (0..rows * ss)
            .map(|i| Complex32::new(i as f32, -(i as f32)))
            .collect();
        let mut dst = vec![Complex32::new(-1.0, 0.0); cols * ds];
        transpose_block(&src, ss, &mut dst, ds, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(dst[c * ds + r], src[r * ss + c]);
            }
        }
        for c in 0..cols {
            assert!(dst[c * ds + rows..(c + 1) * ds]
                .iter()
                .all(|v| v.re == -1.0));
        }
    }

    #[test]
    fn batch_equals_single_frames() {
        let n = 16;
        let fft = Fft2::new(n);
        let mut batch: Vec<Complex32> = (0..5).flat_map(|i| random_frame(n, i)).collect();
        let orig = batch.clone();
        fft.forward_batch(&mut batch);
        let mut work = fft.work();
        for (i, chunk) in orig.chunks(n * n).enumerate() {
            let mut one = chunk.to_vec();
            fft.forward(&mut one, &mut work);
            assert_eq!(&one[..], &batch[i * n * n..(i + 1) * n * n]);
        }
    }
}
