//! Exact sub-pixel shift of the probe by the Fourier shift theorem, and its vjp.
//!
//! `shifted = IFFT(FFT(P) D_s)` with `D_s(f) = exp(-2 pi i (f_y s_y + f_x s_x))` (f in cycles per
//! pixel) moves P by `s` pixels: `shifted(r) = P(r - s)` for a band-limited P. The vjp of this
//! linear map is `g_P = IFFT(conj(D_s) FFT(g))`; the gradient with respect to the shift is
//! `dL/ds = Re sum_f conj(G) (-2 pi i f) D_s FFT(P)` with `G = FFT(g)` (Parseval, unitary FFTs).
//!
//! Why the probe: the object seen at a sub-pixel position, `P(r) O(r + k + s)`, equals the exit
//! wave `P(r - s) O(r + k)` moved by `s`; moving an exit wave changes no far-field intensity, and
//! in near field it is undone exactly by a phase ramp folded into the propagator's transfer
//! function (see [`crate::propagate`]). The object is then read at the integer corner k and no
//! interpolation blurs it.

use crate::fft::{fill_phase_ramp, freq_index, transpose_block, Fft2, FftWork};
use crate::simd::wide_kernel;
use num_complex::Complex32;
use std::f64::consts::TAU;

/// Shifts N x N frames by sub-pixel amounts.
#[derive(Clone, Debug)]
pub struct FourierShift {
    n: usize,
    fft: Fft2,
    /// Signed frequency (cycles per pixel) of each FFT bin along one axis.
    freq: Vec<f64>,
    /// `freq` in f32 for the sums along a row.
    freq32: Vec<f32>,
}

/// The separable phase ramp `D_s` along each axis.
pub struct Ramp {
    y: Vec<Complex32>,
    x: Vec<Complex32>,
}

impl FourierShift {
    /// For N x N frames.
    pub fn new(n: usize) -> Self {
        let freq: Vec<f64> = (0..n).map(|k| freq_index(k, n) / n as f64).collect();
        FourierShift {
            n,
            fft: Fft2::new(n),
            freq32: freq.iter().map(|&f| f as f32).collect(),
            freq,
        }
    }

    /// FFT work buffers for one thread.
    pub fn work(&self) -> FftWork {
        self.fft.work()
    }

    /// Unitary FFT of a frame in place (the spectrum `shift` takes), in transposed order
    /// (`[kx, ky]`): the spectrum is only ever multiplied by separable ramps and transformed
    /// back, so its order is free, and this order saves one transpose per transform.
    pub fn spectrum(&self, frame: &mut [Complex32], work: &mut FftWork) {
        let scale = 1.0 / self.n as f32;
        let transposed = self.fft.forward_into_transposed(frame, work);
        for (f, t) in frame.iter_mut().zip(transposed.iter()) {
            *f = t * scale;
        }
    }

    /// The ramp `D_s` for a shift `s = (s_y, s_x)` px.
    pub fn ramp(&self, s: [f64; 2]) -> Ramp {
        let mut ramp = Ramp {
            y: Vec::with_capacity(self.n),
            x: Vec::with_capacity(self.n),
        };
        self.fill_ramp(s, &mut ramp);
        ramp
    }

    /// [`FourierShift::ramp`] into an existing ramp (no allocation).
    pub fn fill_ramp(&self, s: [f64; 2], ramp: &mut Ramp) {
        fill_phase_ramp(self.n, -s[0], &mut ramp.y);
        fill_phase_ramp(self.n, -s[1], &mut ramp.x);
    }

    /// `out = IFFT(spectrum D_s)`: the frame whose spectrum is given, moved by s.
    pub fn shift(
        &self,
        spectrum: &[Complex32],
        ramp: &Ramp,
        out: &mut [Complex32],
        work: &mut FftWork,
    ) {
        let n = self.n;
        let FftWork {
            scratch,
            transposed,
        } = work;
        moved_spectrum(transposed, spectrum, &ramp.y, &ramp.x, 1.0 / n as f32);
        self.fft.inverse_rows(transposed, scratch);
        transpose_block(transposed, n, out, n, n, n);
        self.fft.inverse_rows(out, scratch);
    }

    /// vjp of [`FourierShift::shift`]: writes `conj(D_s) FFT(g)` into `out` (transposed order,
    /// like the spectrum) and returns `dL/ds` (per pixel, (row, col)). `g` is overwritten.
    pub fn shift_vjp(
        &self,
        g: &mut [Complex32],
        spectrum: &[Complex32],
        ramp: &Ramp,
        out: &mut [Complex32],
        work: &mut FftWork,
    ) -> [f64; 2] {
        let n = self.n;
        let scale = 1.0 / n as f32;
        let transposed = self.fft.forward_into_transposed(g, work);
        let (mut dy, mut dx) = (0.0f64, 0.0f64);
        for (r, ((t, spec), o)) in transposed
            .chunks_exact(n)
            .zip(spectrum.chunks_exact(n))
            .zip(out.chunks_exact_mut(n))
            .enumerate()
        {
            let [row_q, row_y] = vjp_row(t, spec, o, &ramp.y, &self.freq32, ramp.x[r], scale);
            dy += row_y as f64;
            dx += row_q as f64 * self.freq[r];
        }
        [TAU * dy, TAU * dx]
    }

    /// Adds `conj(D_s) FFT(g)` to `acc` (transposed order): the vjp of the shift with respect
    /// to the spectrum alone. `g` is overwritten.
    pub fn add_moved_back(
        &self,
        g: &mut [Complex32],
        ramp: &Ramp,
        acc: &mut [Complex32],
        work: &mut FftWork,
    ) {
        let transposed = self.fft.forward_into_transposed(g, work);
        add_moved_back_spectrum(acc, transposed, &ramp.y, &ramp.x, 1.0 / self.n as f32);
    }

    /// Turns the accumulated spectrum (transposed order) into the gradient of the unmoved
    /// frame, in place.
    pub fn finish(&self, acc: &mut [Complex32], work: &mut FftWork) {
        let scale = 1.0 / self.n as f32;
        let transposed = self.fft.inverse_into_transposed(acc, work);
        for (a, t) in acc.iter_mut().zip(transposed.iter()) {
            *a = t * scale;
        }
    }
}

wide_kernel! {
    /// The spectrum moved by `D = ry rx` and scaled, `out = spectrum D scale`, in transposed
    /// order: row r holds x frequency r (ramp `rx[r]`), column c y frequency c (ramp `ry[c]`).
    fn moved_spectrum(
        out: &mut [Complex32],
        spectrum: &[Complex32],
        ry: &[Complex32],
        rx: &[Complex32],
        scale: f32,
    ) {
        let n = ry.len();
        for ((t, spec), rx) in out
            .chunks_exact_mut(n)
            .zip(spectrum.chunks_exact(n))
            .zip(rx)
        {
            let rx = rx * scale;
            for ((t, &sv), ry) in t.iter_mut().zip(spec).zip(ry) {
                *t = sv * (ry * rx);
            }
        }
    }
}

wide_kernel! {
    /// `acc += spectrum conj(D) scale` with `D = ry rx`, in the transposed order of
    /// [`moved_spectrum`].
    fn add_moved_back_spectrum(
        acc: &mut [Complex32],
        spectrum: &[Complex32],
        ry: &[Complex32],
        rx: &[Complex32],
        scale: f32,
    ) {
        let n = ry.len();
        for ((a, t), rx) in acc
            .chunks_exact_mut(n)
            .zip(spectrum.chunks_exact(n))
            .zip(rx)
        {
            let rx = rx.conj() * scale;
            for ((a, &tv), ry) in a.iter_mut().zip(t).zip(ry) {
                *a += tv * (ry.conj() * rx);
            }
        }
    }
}

wide_kernel! {
    /// One row of [`FourierShift::shift_vjp`] (transposed order: the row's x ramp `rx`, the y
    /// ramps `ry` and y frequencies `fy` along it): writes `conj(D) g scale` into `out` and
    /// returns the row's sums of `q` and `q f_y`, `q = Im(conj(g) D S) scale`. Eight independent
    /// partial sums per quantity let the compiler vectorise the loop.
    fn vjp_row(
        g: &[Complex32],
        spectrum: &[Complex32],
        out: &mut [Complex32],
        ry: &[Complex32],
        fy: &[f32],
        rx: Complex32,
        scale: f32,
    ) -> [f32; 2] {
        const LANES: usize = 8;
        let (mut sum_q, mut sum_qy) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut one =
            |lane: usize, o: &mut Complex32, g: Complex32, s: Complex32, ry: Complex32, f: f32| {
                let d = ry * rx;
                let gs = g * scale;
                *o = d.conj() * gs;
                let dp = d * s;
                let q = gs.re * dp.im - gs.im * dp.re;
                sum_q[lane] += q;
                sum_qy[lane] += q * f;
            };
        let whole = g.len() - g.len() % LANES;
        let (body, tail) = out.split_at_mut(whole);
        for (k, o8) in body.chunks_exact_mut(LANES).enumerate() {
            let i = k * LANES;
            let (g8, s8) = (&g[i..i + LANES], &spectrum[i..i + LANES]);
            let (r8, f8) = (&ry[i..i + LANES], &fy[i..i + LANES]);
            for lane in 0..LANES {
                one(lane, &mut o8[lane], g8[lane], s8[lane], r8[lane], f8[lane]);
            }
        }
        for (k, o) in tail.iter_mut().enumerate() {
            let i = whole + k;
            one(0, o, g[i], spectrum[i], ry[i], fy[i]);
        }
        [sum_q.iter().sum(), sum_qy.iter().sum()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{random_vec, re_inner};

    fn smooth(n: usize) -> Vec<Complex32> {
        (0..n * n)
            .map(|i| {
                let (y, x) = ((i / n) as f64, (i % n) as f64);
                let t = TAU / n as f64;
                Complex32::new((t * (2.0 * x + y)).cos() as f32, (t * 3.0 * y).sin() as f32)
            })
            .collect()
    }

    #[test]
    fn shift_moves_a_band_limited_frame_exactly() {
        let n = 16;
        let fs = FourierShift::new(n);
        let mut work = fs.work();
        let mut spec = smooth(n);
        fs.spectrum(&mut spec, &mut work);
        let s = [0.3, -1.7];
        let mut out = vec![Complex32::default(); n * n];
        fs.shift(&spec, &fs.ramp(s), &mut out, &mut work);
        let t = TAU / n as f64;
        for (i, v) in out.iter().enumerate() {
            let (y, x) = ((i / n) as f64 - s[0], (i % n) as f64 - s[1]);
            let want = Complex32::new((t * (2.0 * x + y)).cos() as f32, (t * 3.0 * y).sin() as f32);
            assert!((v - want).norm() < 1e-5, "{v} vs {want}");
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let n = 12;
        let fs = FourierShift::new(n);
        let mut work = fs.work();
        let p = random_vec(n * n, 1);
        let w = random_vec(n * n, 2);
        let mut spec = p.clone();
        fs.spectrum(&mut spec, &mut work);
        // L(s, P) = Re <w, shift(P, s)>
        let loss = |s: [f64; 2], spec: &[Complex32], work: &mut FftWork| {
            let mut out = vec![Complex32::default(); n * n];
            fs.shift(spec, &fs.ramp(s), &mut out, work);
            re_inner(&w, &out)
        };
        let s = [0.37, -0.21];
        let mut g = w.clone();
        let mut acc = vec![Complex32::default(); n * n];
        let ds = fs.shift_vjp(&mut g, &spec, &fs.ramp(s), &mut acc, &mut work);
        fs.finish(&mut acc, &mut work);
        let eps = 1e-3;
        for k in 0..2 {
            let (mut a, mut b) = (s, s);
            a[k] += eps;
            b[k] -= eps;
            let fd = (loss(a, &spec, &mut work) - loss(b, &spec, &mut work)) / (2.0 * eps);
            assert!(
                (fd - ds[k]).abs() < 1e-3 * fd.abs().max(1.0),
                "axis {k}: {} vs {fd}",
                ds[k]
            );
        }
        // Probe direction: L is linear in P, so Re <acc, v> = L(P + v) - L(P).
        let v = random_vec(n * n, 3);
        let mut vs = v.clone();
        fs.spectrum(&mut vs, &mut work);
        let want = loss(s, &vs, &mut work);
        let got = re_inner(&acc, &v);
        assert!(
            (want - got).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
