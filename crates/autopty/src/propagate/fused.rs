//! One frame's near-field forward propagation, detector step and adjoint on the separable
//! path, fused per group of [`GROUP`] rows so that every element-wise pass runs on rows that
//! sit in L1.
//!
//! The unfused path (forward, loss, adjoint, each over whole frames) sweeps the N x P strip
//! once per pass and transposes each N x N field four times per frame. Here a frame takes three
//! sweeps, each over groups of rows:
//!
//! 1. **x stage**, per mode and group of rows y: zero-pad, FFT along x, multiply by the x factor
//!    of the moved transfer function (keeping that spectrum for the gradient sums), inverse
//!    FFT, crop, and write the group's block of the transposed field.
//! 2. **y stage**, per group of columns x, all modes together: gather the columns from the
//!    blocks, pad, FFT along y, multiply, inverse FFT, crop. These are detector columns, so
//!    the detector step (loss and gradient, or a modulus projection) runs on them at once, on
//!    detector data stored in transposed order once (the "transpose trick": no transposes
//!    around the loss). Then the adjoint of the y stage runs on the same rows, with their
//!    spectrum still at hand (no cache), into blocks of the transposed gradient.
//! 3. **x stage adjoint**, per mode and group of rows y: gather, pad, FFT, multiply by the
//!    conjugate factor (with the gradient sums), inverse FFT, crop into the exit-wave gradient.
//!
//! The transforms are the unfused separable path's: 4 N of length P per propagation.
//!
//! **Gradient sums.** With `F` the forward spectrum of a row times its stage's factor (which
//! holds the move ramp and `1 / P`) and `G` the adjoint's spectrum of the same row, each bin
//! adds `q = -Im(conj(G) F)` (module docs of [`super`]). The stage's phase is
//! `c (1 +- e0) f^2` with `c = -pi lambda z / dx^2`, so `dL/dz`, `dL/ds` and `dL/de0` come from
//! `sum q f` and `sum q f^2` per stage. `q` is summed per bin over a group's rows in f32, then
//! weighted by `f` and `f^2` in f64; the groups add in order, so any number of threads gives
//! the same bits.

use super::{pad, AdjointExtras, NearField, GROUP};
use crate::fft::{fill_phase_ramp, task_values};
use crate::simd::wide_kernel;
use num_complex::Complex32;
use rayon::prelude::*;
use std::cell::RefCell;

/// What a fused pass does after the detector step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back {
    /// Nothing: the loss alone.
    Skip,
    /// The adjoint of the forward propagation, into the exit-wave buffer.
    Adjoint,
    /// The adjoint, and the gradients of the distance, move and astigmatism.
    AdjointWithGradients,
}

/// The detector step of a fused pass: `step(x0, columns)` gets, for each mode in turn, the
/// detector columns `x0..x0 + w` (N values each along y: transposed order, `columns.len()` =
/// M w N), replaces them (by the loss's gradient, or by a modulus correction) and returns
/// their loss.
pub type DetectorStep<'a> = dyn Fn(usize, &mut [Complex32]) -> f64 + Sync + 'a;

/// Buffers of one frame's fused pass (see [`super::Propagator::fused_work`]).
pub struct FusedWork {
    modes: usize,
    /// The x stage's forward spectra times its factor (M x N rows of P): the gradient sums
    /// read them.
    x_spectra: Vec<Complex32>,
    /// The field after the x stage, transposed: mode m's block for rows group g
    /// (`m N^2 + g GROUP N..`, N rows of the group's width w) holds at `[x, y - g GROUP]`.
    across: Vec<Complex32>,
    /// The gradient after the y stage's adjoint, transposed: the block of columns group g
    /// (`g GROUP M N..`, M modes of N rows of width w) holds at `[m, y, x - g GROUP]`.
    back: Vec<Complex32>,
    /// Per x-stage group (mode-major) and per y-stage group: `[sum q f, sum q f^2]`.
    x_sums: Vec<[f64; 2]>,
    y_sums: Vec<[f64; 2]>,
    /// Per y-stage group: the detector step's loss.
    losses: Vec<f64>,
    /// The moved transfer function's factor along x and along y, times `1 / P`.
    factors: [Vec<Complex32>; 2],
}

/// One task's rows and buffers (per thread, grown on first use).
#[derive(Default)]
struct TaskBuffers {
    rows: Vec<Complex32>,
    spectra: Vec<Complex32>,
    columns: Vec<Complex32>,
    scratch: Vec<Complex32>,
    q: Vec<f32>,
}

thread_local! {
    static TASK: RefCell<TaskBuffers> = RefCell::new(TaskBuffers::default());
}

fn grown(buffer: &mut Vec<Complex32>, len: usize) -> &mut [Complex32] {
    if buffer.len() < len {
        buffer.resize(len, Complex32::default());
    }
    &mut buffer[..len]
}

impl FusedWork {
    /// No buffers (a propagator that never fuses).
    pub(super) fn empty() -> Self {
        FusedWork {
            modes: 0,
            x_spectra: Vec::new(),
            across: Vec::new(),
            back: Vec::new(),
            x_sums: Vec::new(),
            y_sums: Vec::new(),
            losses: Vec::new(),
            factors: [Vec::new(), Vec::new()],
        }
    }
}

impl NearField {
    /// Buffers for the fused pass of frames with `modes` probe modes.
    pub(super) fn fused_work(&self, modes: usize) -> FusedWork {
        let (n, np) = (self.n, self.padded);
        let groups = n.div_ceil(GROUP);
        FusedWork {
            modes,
            x_spectra: vec![Complex32::default(); modes * n * np],
            across: vec![Complex32::default(); modes * n * n],
            back: vec![Complex32::default(); modes * n * n],
            x_sums: vec![[0.0; 2]; modes * groups],
            y_sums: vec![[0.0; 2]; groups],
            losses: vec![0.0; groups],
            factors: [Vec::with_capacity(np), Vec::with_capacity(np)],
        }
    }

    /// The fused pass (module docs) on the M exit waves in `fields` (M x N x N, overwritten by
    /// the adjoint's result unless `back` is [`Back::Skip`]), moved by `-s` px. Returns the
    /// loss and, with [`Back::AdjointWithGradients`], the gradients besides the field's.
    pub(super) fn fused_pass(
        &self,
        fields: &mut [Complex32],
        s: [f64; 2],
        step: &DetectorStep,
        back: Back,
        work: &mut FusedWork,
    ) -> (f64, AdjointExtras) {
        let (n, np) = (self.n, self.padded);
        let nn = n * n;
        assert_eq!(fields.len(), work.modes * nn, "one N x N field per mode");
        let scale = 1.0 / np as f32;
        // Axis 0 is x (the move's column part s[1]), axis 1 is y.
        for (axis, shift) in [(0, s[1]), (1, s[0])] {
            let factor = &mut work.factors[axis];
            fill_phase_ramp(np, shift, factor);
            for (f, &h) in factor.iter_mut().zip(&self.axis_transfer[axis]) {
                *f *= h * scale;
            }
        }
        let gradients = back == Back::AdjointWithGradients;
        let per_task = (task_values() / (GROUP * np)).max(1);
        let FusedWork {
            modes,
            x_spectra,
            across,
            back: back_blocks,
            x_sums,
            y_sums,
            losses,
            factors,
        } = work;
        let modes = *modes;
        let groups = n.div_ceil(GROUP);

        // 1. x stage, per mode and group of rows.
        fields
            .par_chunks(nn)
            .zip(across.par_chunks_mut(nn))
            .zip(x_spectra.par_chunks_mut(n * np))
            .for_each(|((field, across), spectra)| {
                field
                    .par_chunks(GROUP * n)
                    .zip(across.par_chunks_mut(GROUP * n))
                    .zip(spectra.par_chunks_mut(GROUP * np))
                    .with_min_len(per_task)
                    .for_each(|((rows_in, block), spectra)| {
                        let keep = gradients.then_some(spectra);
                        self.x_forward(rows_in, block, keep, &factors[0]);
                    });
            });

        // 2. y stage, detector step and y-stage adjoint, per group of columns.
        let across = &*across;
        back_blocks
            .par_chunks_mut(GROUP * modes * n)
            .zip(y_sums.par_iter_mut())
            .zip(losses.par_iter_mut())
            .enumerate()
            .with_min_len(per_task)
            .for_each(|(g, ((block, sums), loss))| {
                let x0 = g * GROUP;
                let w = GROUP.min(n - x0);
                (*loss, *sums) = self.y_stage(across, modes, x0, w, step, back, block, &factors[1]);
            });
        let loss: f64 = losses.iter().sum();
        if back == Back::Skip {
            return (loss, AdjointExtras::default());
        }

        // 3. x-stage adjoint, per mode and group of rows.
        let back_blocks = &*back_blocks;
        fields
            .par_chunks_mut(nn)
            .zip(x_spectra.par_chunks(n * np))
            .zip(x_sums.par_chunks_mut(groups))
            .enumerate()
            .for_each(|(m, ((field, spectra), sums))| {
                field
                    .par_chunks_mut(GROUP * n)
                    .zip(spectra.par_chunks(GROUP * np))
                    .zip(sums.par_iter_mut())
                    .enumerate()
                    .with_min_len(per_task)
                    .for_each(|(g, ((rows_out, spectra), sums))| {
                        let keep = gradients.then_some(spectra);
                        *sums =
                            self.x_adjoint(back_blocks, modes, m, g, rows_out, keep, &factors[0]);
                    });
            });
        if !gradients {
            return (loss, AdjointExtras::default());
        }
        let total = |sums: &[[f64; 2]]| {
            sums.iter()
                .fold([0.0f64; 2], |a, b| [a[0] + b[0], a[1] + b[1]])
        };
        let ([qx, qxx], [qy, qyy]) = (total(x_sums), total(y_sums));
        let (c, e0, tau) = (
            self.astigmatism_phase_scale(),
            self.astigmatism[0],
            std::f64::consts::TAU,
        );
        let extras = AdjointExtras {
            dz: c * ((1.0 + e0) * qxx + (1.0 - e0) * qyy) / self.distance,
            ds: [tau * qy, tau * qx],
            astigmatism: [c * (qxx - qyy), 0.0],
        };
        (loss, extras)
    }

    /// x stage of one group of rows (`rows_in`: w rows of N): into `block` (N x w, see
    /// [`FusedWork::across`]), keeping the multiplied spectra in `keep` (w x P) when given.
    fn x_forward(
        &self,
        rows_in: &[Complex32],
        block: &mut [Complex32],
        keep: Option<&mut [Complex32]>,
        factor: &[Complex32],
    ) {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let w = rows_in.len() / n;
        TASK.with_borrow_mut(|task| {
            let TaskBuffers { rows, scratch, .. } = task;
            let rows = grown(rows, w * np);
            let scratch = grown(scratch, self.fft.scratch_len());
            for (row, src) in rows.chunks_exact_mut(np).zip(rows_in.chunks_exact(n)) {
                pad(row, src, o);
            }
            self.fft.forward_rows(rows, scratch);
            multiply(rows, factor, keep);
            self.fft.inverse_rows(rows, scratch);
            rows_to_block(rows, np, o, block);
        });
    }

    /// y stage of detector columns `x0..x0 + w` for every mode, the detector step on them and,
    /// unless `back` is [`Back::Skip`], the y-stage adjoint into `block` (see
    /// [`FusedWork::back`]). Returns the step's loss and the gradient sums.
    #[allow(clippy::too_many_arguments)]
    fn y_stage(
        &self,
        across: &[Complex32],
        modes: usize,
        x0: usize,
        w: usize,
        step: &DetectorStep,
        back: Back,
        block: &mut [Complex32],
        factor: &[Complex32],
    ) -> (f64, [f64; 2]) {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let nn = n * n;
        TASK.with_borrow_mut(|task| {
            let TaskBuffers {
                rows,
                spectra,
                columns,
                scratch,
                q,
            } = task;
            let rows = grown(rows, modes * w * np);
            let scratch = grown(scratch, self.fft.scratch_len());
            let columns = grown(columns, modes * w * n);
            // Row (m, j) is column x0 + j of mode m: its value at y sits in the block of
            // rows group y / GROUP, at [x0 + j, y % GROUP].
            for (r, row) in rows.chunks_exact_mut(np).enumerate() {
                let (m, x) = (r / w, x0 + r % w);
                row[..o].fill(Complex32::default());
                row[o + n..].fill(Complex32::default());
                let field = &across[m * nn..(m + 1) * nn];
                for (piece, blk) in row[o..o + n].chunks_mut(GROUP).zip(field.chunks(GROUP * n)) {
                    let width = piece.len();
                    copy_piece(piece, &blk[x * width..(x + 1) * width]);
                }
            }
            self.fft.forward_rows(rows, scratch);
            let gradients = back == Back::AdjointWithGradients;
            let spectra = grown(spectra, if gradients { modes * w * np } else { 0 });
            multiply(rows, factor, gradients.then_some(&mut *spectra));
            self.fft.inverse_rows(rows, scratch);
            for (column, row) in columns.chunks_exact_mut(n).zip(rows.chunks_exact(np)) {
                column.copy_from_slice(&row[o..o + n]);
            }
            let loss = step(x0, columns);
            if back == Back::Skip {
                return (loss, [0.0; 2]);
            }
            for (row, column) in rows.chunks_exact_mut(np).zip(columns.chunks_exact(n)) {
                pad(row, column, o);
            }
            self.fft.forward_rows(rows, scratch);
            let sums = adjoint_multiply(rows, factor, gradients.then_some(&*spectra), q, self);
            self.fft.inverse_rows(rows, scratch);
            for (out, rows) in block.chunks_exact_mut(n * w).zip(rows.chunks_exact(w * np)) {
                rows_to_block(rows, np, o, out);
            }
            (loss, sums)
        })
    }

    /// x-stage adjoint of rows group `g` of mode `m`: gathers the rows from `back_blocks` (see
    /// [`FusedWork::back`]) into the exit-wave gradient rows `rows_out` (w rows of N). With the
    /// x stage's spectra, returns the gradient sums.
    #[allow(clippy::too_many_arguments)]
    fn x_adjoint(
        &self,
        back_blocks: &[Complex32],
        modes: usize,
        m: usize,
        g: usize,
        rows_out: &mut [Complex32],
        spectra: Option<&[Complex32]>,
        factor: &[Complex32],
    ) -> [f64; 2] {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let w = rows_out.len() / n;
        TASK.with_borrow_mut(|task| {
            let TaskBuffers {
                rows, scratch, q, ..
            } = task;
            let rows = grown(rows, w * np);
            let scratch = grown(scratch, self.fft.scratch_len());
            for (j, row) in rows.chunks_exact_mut(np).enumerate() {
                let y = g * GROUP + j;
                row[..o].fill(Complex32::default());
                row[o + n..].fill(Complex32::default());
                // Columns group gx's block holds mode m's rows at [y, x - gx GROUP].
                for (piece, blk) in row[o..o + n]
                    .chunks_mut(GROUP)
                    .zip(back_blocks.chunks(GROUP * modes * n))
                {
                    let width = piece.len();
                    let at = m * n * width + y * width;
                    copy_piece(piece, &blk[at..at + width]);
                }
            }
            self.fft.forward_rows(rows, scratch);
            let sums = adjoint_multiply(rows, factor, spectra, q, self);
            self.fft.inverse_rows(rows, scratch);
            for (dst, row) in rows_out.chunks_exact_mut(n).zip(rows.chunks_exact(np)) {
                dst.copy_from_slice(&row[o..o + n]);
            }
            sums
        })
    }
}

/// Writes the w rows of a group (`rows`, row stride `stride`) column by column into `block`
/// (N x w): `block[x w + j] = rows[j stride + o + x]` for x in 0..N. A full group goes 8 x 8
/// tiles at a time, so that reads and writes are whole cache lines.
fn rows_to_block(rows: &[Complex32], stride: usize, o: usize, block: &mut [Complex32]) {
    let w = rows.len().div_ceil(stride);
    let n = block.len() / w;
    let tiled = if w == GROUP { n - n % GROUP } else { 0 };
    for (t, out) in block[..tiled * w]
        .chunks_exact_mut(GROUP * GROUP)
        .enumerate()
    {
        let x0 = o + t * GROUP;
        let mut tile = [[Complex32::default(); GROUP]; GROUP];
        for (j, row) in tile.iter_mut().enumerate() {
            *row = rows[j * stride + x0..][..GROUP]
                .try_into()
                .expect("a tile row");
        }
        for (x, out) in out.chunks_exact_mut(GROUP).enumerate() {
            for (v, row) in out.iter_mut().zip(&tile) {
                *v = row[x];
            }
        }
    }
    for (x, out) in block.chunks_exact_mut(w).enumerate().skip(tiled) {
        for (j, v) in out.iter_mut().enumerate() {
            *v = rows[j * stride + o + x];
        }
    }
}

/// `dst.copy_from_slice(src)`, inlined for a whole group of values (a call to `memcpy` per
/// 64 bytes costs more than the copy).
#[inline(always)]
fn copy_piece(dst: &mut [Complex32], src: &[Complex32]) {
    match (
        <&mut [Complex32; GROUP]>::try_from(&mut *dst),
        <&[Complex32; GROUP]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

wide_kernel! {
    /// Multiplies every row of `rows` by `factor` (P values).
    fn multiply_rows(rows: &mut [Complex32], factor: &[Complex32]) {
        for row in rows.chunks_exact_mut(factor.len()) {
            for (v, &f) in row.iter_mut().zip(factor) {
                *v *= f;
            }
        }
    }
}

wide_kernel! {
    /// [`multiply_rows`], copying the products to `keep`.
    fn multiply_and_keep(rows: &mut [Complex32], factor: &[Complex32], keep: &mut [Complex32]) {
        let np = factor.len();
        for (row, kept) in rows.chunks_exact_mut(np).zip(keep.chunks_exact_mut(np)) {
            for ((v, k), &f) in row.iter_mut().zip(kept).zip(factor) {
                *v *= f;
                *k = *v;
            }
        }
    }
}

/// Multiplies every row of `rows` by `factor` (P values), copying the products to `keep`.
fn multiply(rows: &mut [Complex32], factor: &[Complex32], keep: Option<&mut [Complex32]>) {
    match keep {
        Some(keep) => multiply_and_keep(rows, factor, keep),
        None => multiply_rows(rows, factor),
    }
}

wide_kernel! {
    /// Multiplies every row of `rows` by the conjugate of `factor`.
    fn multiply_conjugate(rows: &mut [Complex32], factor: &[Complex32]) {
        for row in rows.chunks_exact_mut(factor.len()) {
            for (v, &f) in row.iter_mut().zip(factor) {
                *v *= f.conj();
            }
        }
    }
}

wide_kernel! {
    /// [`multiply_conjugate`] of the adjoint's spectra `G` (`rows`), adding
    /// `q = -Im(conj(G) F)` per bin into `q` with `F` the forward spectra of the same rows.
    fn multiply_conjugate_and_sum(
        rows: &mut [Complex32],
        factor: &[Complex32],
        spectra: &[Complex32],
        q: &mut [f32],
    ) {
        let np = factor.len();
        for (row, forward) in rows.chunks_exact_mut(np).zip(spectra.chunks_exact(np)) {
            for (((v, &f), s), q) in row.iter_mut().zip(factor).zip(forward).zip(q.iter_mut()) {
                let g = *v;
                *q += g.im * s.re - g.re * s.im;
                *v = g * f.conj();
            }
        }
    }
}

/// Multiplies every row of `rows` (the adjoint's spectra `G`) by the conjugate of `factor`;
/// with the forward spectra `F` of the same rows, also returns `[sum q f, sum q f^2]` over
/// the rows, `q = -Im(conj(G) F)` and `f` the bins' frequencies (cycles per pixel).
fn adjoint_multiply(
    rows: &mut [Complex32],
    factor: &[Complex32],
    spectra: Option<&[Complex32]>,
    q: &mut Vec<f32>,
    near: &NearField,
) -> [f64; 2] {
    let Some(spectra) = spectra else {
        multiply_conjugate(rows, factor);
        return [0.0; 2];
    };
    q.clear();
    q.resize(factor.len(), 0.0);
    multiply_conjugate_and_sum(rows, factor, spectra, q);
    q.iter()
        .zip(&near.freq)
        .fold([0.0f64; 2], |[a, b], (&q, &f)| {
            let qf = q as f64 * f;
            [a + qf, b + qf * f]
        })
}

#[cfg(test)]
mod tests {
    use super::super::Propagator;
    use super::*;
    use crate::fft::transpose_block;
    use crate::ops::loss::{loss_and_gradient, loss_on_columns, LossKind, Measured};
    use crate::ops::testing::random_vec;

    /// Amplitudes and a mask for an N x N detector, in transposed order.
    fn detector(n: usize) -> (Vec<f32>, Vec<f32>) {
        let amplitude = random_vec(n * n, 71)
            .iter()
            .map(|v| v.norm() * 3.0)
            .collect();
        let mask = (0..n * n)
            .map(|p| if p % 7 == 3 { 0.0 } else { 1.0 })
            .collect();
        (amplitude, mask)
    }

    /// The unfused reference: forward, the loss on the transposed fields, adjoint.
    fn unfused(
        p: &Propagator,
        fields: &mut [Complex32],
        s: [f64; 2],
        amplitude: &[f32],
        mask: &[f32],
    ) -> (f64, AdjointExtras) {
        let n = p.n();
        let nn = n * n;
        let mut work = p.work();
        let len = p.cache_len();
        let mut cache = vec![Complex32::default(); fields.len() / nn * len];
        let mut across = vec![Complex32::default(); fields.len()];
        for (f, (c, a)) in fields
            .chunks_exact_mut(nn)
            .zip(cache.chunks_exact_mut(len).zip(across.chunks_exact_mut(nn)))
        {
            p.forward_moved(f, c, s, &mut work);
            transpose_block(f, n, a, n, n, n);
        }
        let data = Measured {
            amplitude,
            intensity: &[],
            mask,
            background: 0.5,
        };
        let loss = loss_and_gradient(LossKind::Amplitude, &mut across, nn, data);
        let mut extras = AdjointExtras::default();
        for (f, (c, a)) in fields
            .chunks_exact_mut(nn)
            .zip(cache.chunks_exact(len).zip(across.chunks_exact(nn)))
        {
            transpose_block(a, n, f, n, n, n);
            let e = p.adjoint_moved(f, Some(c), s, &mut work);
            extras.dz += e.dz;
            extras.ds = [extras.ds[0] + e.ds[0], extras.ds[1] + e.ds[1]];
            extras.astigmatism[0] += e.astigmatism[0];
        }
        (loss, extras)
    }

    fn fused(
        p: &Propagator,
        fields: &mut [Complex32],
        s: [f64; 2],
        amplitude: &[f32],
        mask: &[f32],
        back: Back,
    ) -> (f64, AdjointExtras) {
        let n = p.n();
        let modes = fields.len() / (n * n);
        let data = Measured {
            amplitude,
            intensity: &[],
            mask,
            background: 0.5,
        };
        let step = loss_on_columns(LossKind::Amplitude, data, n, modes, 1.0);
        let mut work = p.fused_work(modes);
        p.fused_pass(fields, s, &step, back, &mut work)
    }

    #[test]
    fn fused_pass_matches_forward_loss_and_adjoint() {
        // Two modes, a move, astigmatism e0, and frame sides with and without a partial group.
        for n in [20, 32] {
            let s = [0.3, -0.45];
            let mut p = Propagator::near(n, 1e-9, 0.03, 1e-6);
            p.set_astigmatism([0.02, 0.0]);
            assert!(p.fuses());
            let (amplitude, mask) = detector(n);
            let waves = random_vec(2 * n * n, 72);
            let mut reference = waves.clone();
            let want = unfused(&p, &mut reference, s, &amplitude, &mask);
            let mut got = waves.clone();
            let have = fused(
                &p,
                &mut got,
                s,
                &amplitude,
                &mask,
                Back::AdjointWithGradients,
            );
            let largest = reference
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).norm())
                .fold(0.0f32, f32::max);
            let size = reference.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
            assert!(
                largest < 1e-5 * size,
                "n {n}: gradient off by {largest} of {size}"
            );
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-12);
            assert!(
                close(have.0, want.0),
                "n {n}: loss {} vs {}",
                have.0,
                want.0
            );
            let (a, b) = (have.1, want.1);
            assert!(close(a.dz, b.dz), "n {n}: dz {} vs {}", a.dz, b.dz);
            for k in 0..2 {
                assert!(
                    close(a.ds[k], b.ds[k]),
                    "n {n}: ds {:?} vs {:?}",
                    a.ds,
                    b.ds
                );
            }
            assert!(close(a.astigmatism[0], b.astigmatism[0]), "n {n}: de0");
            // Without the sums: the same field; the loss alone leaves the waves as they were.
            let mut plain = waves.clone();
            let (loss, extras) = fused(&p, &mut plain, s, &amplitude, &mask, Back::Adjoint);
            assert_eq!(plain, got);
            assert_eq!((loss, extras), (have.0, AdjointExtras::default()));
            let mut only = waves.clone();
            let (loss, _) = fused(&p, &mut only, s, &amplitude, &mask, Back::Skip);
            assert_eq!((loss, &only), (have.0, &waves));
        }
    }

    #[test]
    fn fused_pass_gives_the_same_bits_on_any_number_of_threads() {
        // 16 groups of rows, split into tasks of 12 (see `task_values`), and two modes.
        let (n, s) = (128, [0.2, 0.7]);
        let p = Propagator::near(n, 1e-9, 0.03, 1e-6);
        let (amplitude, mask) = detector(n);
        let waves = random_vec(2 * n * n, 73);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // Inside the pool, so that the passes split into tasks.
            pool.install(|| {
                let mut fields = waves.clone();
                let back = Back::AdjointWithGradients;
                let out = fused(&p, &mut fields, s, &amplitude, &mask, back);
                (fields, out)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
