//! Exit-wave machinery shared by the classical engines ([`super::pie`], [`super::dm`]): the
//! measured patterns, where each view sits in the object, the probe moved by a sub-pixel shift,
//! and the modulus constraint with a multimode probe.
//!
//! **Views.** The classical engines use the same sub-pixel model as the gradient engine
//! ([`crate::objective`]). With [`Subpixel::Fourier`] the object is read at the integer corner
//! `k` nearest to the position `p` and the probe is moved by the remainder `s = p - k`:
//! `P_s = IFFT(FFT(P) D_s)`, `D_s(f) = exp(-2 pi i f.s)`; the exit wave `psi_m = P_s,m O_k` is
//! propagated with the move undone in the propagator ([`Propagator::forward_moved`]). With
//! [`Subpixel::Bilinear`] the object patch is interpolated bilinearly and the probe is not moved.
//! Because the probe move is unitary, an engine can keep the probe as spectra `FFT(P_m)`: a
//! change `dP_s` of the moved probe changes them by `conj(D_s) FFT(dP_s)`, which costs one FFT
//! per mode.
//!
//! **Modulus constraint** (Thibault & Menzel 2013 for the modes). With `Psi_m = A psi_m` (A the
//! moved propagator) the constraint scales every mode by the same factor,
//! `Psi'_m = Psi_m sqrt(I_meas) / sqrt(sum_k |Psi_k|^2)` on valid pixels (`Psi' = Psi` on masked
//! ones), and the exit-wave correction is `chi_m = A^H (Psi'_m - Psi_m)`. For a unitary
//! propagator (far field, near field without padding) `psi + chi` is the projection onto the
//! measured modulus; with padding it is the least-squares correction. Since the amplitude loss
//! `L = sum (sqrt(I) - sqrt(I_meas))^2` has detector gradient `g_m = 2 (Psi_m - Psi'_m)`, the
//! correction is `-1/2` times the loss gradient with respect to the exit wave, computed by the
//! same code as the gradient engine's ([`crate::ops::loss::loss_and_gradient`]), so every
//! engine reports the same loss.

use crate::dataset::Dataset;
use crate::fft::FftWork;
use crate::model::{Model, Subpixel};
use crate::ops::loss::{
    loss_and_scaled_gradient, loss_on_columns, measured_amplitude, transpose_patterns, LossKind,
    Measured,
};
use crate::ops::sampler::{sample, scatter_add, Placement};
use crate::ops::shift::{FourierShift, Ramp};
use crate::propagate::{Back, FusedWork, PropWork, Propagator};
use crate::simd::wide_kernel;
use ndarray::{Array2, Array3, Axis};
use num_complex::Complex32;

/// The measured patterns in the form the modulus constraint reads them (amplitudes only: the
/// constraint is the amplitude loss's gradient).
pub struct Patterns {
    /// `sqrt(I_meas + b)`, with `b` the noise floor.
    amplitude: Array3<f32>,
    /// Measured photons of each pattern over its valid pixels.
    photons: Vec<f64>,
    mask: Vec<f32>,
    total: f64,
    /// The data's noise floor (photons per pixel, see [`Dataset::noise_floor`]).
    background: f32,
    /// The amplitudes and the mask are in transposed order (`[x, y]`), as the fused pass of a
    /// separable near field reads them (see [`fused_modulus_correction`]).
    transposed: bool,
}

impl Patterns {
    /// Square roots and mask weights of `data`.
    pub fn new(data: &Dataset) -> Self {
        Self::in_order(data, false)
    }

    /// [`Patterns::new`] in the order `propagator` reads them: transposed where it runs the
    /// fused pass ([`fused_modulus_correction`]).
    pub fn for_propagator(data: &Dataset, propagator: &Propagator) -> Self {
        Self::in_order(data, propagator.fuses())
    }

    fn in_order(data: &Dataset, transposed: bool) -> Self {
        let mut mask: Vec<f32> = data.mask.iter().map(|&m| f32::from(u8::from(m))).collect();
        let total = data.measured_photons().max(1e-30);
        let photons = data
            .intensities
            .outer_iter()
            .map(|frame| frame.iter().zip(&mask).map(|(&i, &m)| (i * m) as f64).sum())
            .collect();
        let background = data.noise_floor as f32;
        let mut amplitude = data.intensities.mapv(|v| measured_amplitude(v, background));
        if transposed {
            transpose_patterns(&mut amplitude, &mut mask);
        }
        Patterns {
            amplitude,
            photons,
            mask,
            total,
            background,
            transposed,
        }
    }

    /// Whether the patterns are stored in transposed order (see [`Patterns::for_propagator`]).
    pub fn transposed(&self) -> bool {
        self.transposed
    }

    /// Pattern j (amplitudes; the intensities are left empty).
    pub fn get(&self, j: usize) -> Measured<'_> {
        Measured {
            amplitude: self
                .amplitude
                .index_axis(Axis(0), j)
                .to_slice()
                .expect("standard layout"),
            intensity: &[],
            mask: &self.mask,
            background: self.background,
        }
    }

    /// Measured photons of pattern j over its valid pixels.
    pub fn photons(&self, j: usize) -> f64 {
        self.photons[j]
    }

    /// Measured photons over valid pixels of all patterns: the normaliser of reported losses
    /// (the same as [`crate::objective::Objective::total_measured`]).
    pub fn total_measured(&self) -> f64 {
        self.total
    }
}

/// Where view j reads the object, and the sub-pixel remainder the probe is moved by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    /// Window corner (and bilinear weights for [`Subpixel::Bilinear`]).
    pub placement: Placement,
    /// Probe move `s` (px, (row, col)); zero for the bilinear sampler and clamped windows.
    pub shift: [f64; 2],
    /// The position lay outside the object and was clamped.
    pub clamped: bool,
}

impl View {
    /// The view of position j of `model`, placed as the gradient engine places it.
    pub fn of(model: &Model, j: usize, subpixel: Subpixel) -> View {
        let n = model.frame();
        let (h, w) = model.object.dim();
        let [y, x] = model.position(j);
        match subpixel {
            Subpixel::Fourier => {
                let (placement, shift, clamped) = Placement::nearest(y, x, n, h, w);
                View {
                    placement,
                    shift,
                    clamped,
                }
            }
            Subpixel::Bilinear => {
                let (placement, clamped) = Placement::new(y, x, n, h, w);
                View {
                    placement,
                    shift: [0.0; 2],
                    clamped,
                }
            }
        }
    }

    /// True when the window sits at whole pixels (no interpolation).
    pub fn is_integer(&self) -> bool {
        self.placement.fy == 0.0 && self.placement.fx == 0.0
    }

    /// Reads the object patch (n x n) this view sees.
    pub fn read(&self, object: &Array2<Complex32>, n: usize, patch: &mut [Complex32]) {
        sample(object, self.placement, n, patch);
    }

    /// Adds a patch-shaped change to the object: directly at whole pixels, through the
    /// sampler's adjoint (bilinear weights) otherwise.
    pub fn add(&self, object: &mut Array2<Complex32>, n: usize, change: &[Complex32]) {
        if self.is_integer() {
            let w = object.ncols();
            let obj = object.as_slice_mut().expect("contiguous object");
            let (r0, c0) = (self.placement.row, self.placement.col);
            for (r, row) in change.chunks_exact(n).enumerate() {
                let start = (r0 + r) * w + c0;
                for (o, d) in obj[start..start + n].iter_mut().zip(row) {
                    *o += d;
                }
            }
        } else {
            scatter_add(object, self.placement, n, change);
        }
    }
}

/// Moves probe modes by sub-pixel amounts through their spectra (with
/// [`crate::ops::shift::FourierShift`], whose conventions hold: unitary FFT,
/// `moved(r) = P(r - s)`, spectra in its own order).
#[derive(Clone, Debug)]
pub struct ProbeShifter {
    nn: usize,
    shift: FourierShift,
}

impl ProbeShifter {
    /// For N x N modes.
    pub fn new(n: usize) -> Self {
        ProbeShifter {
            nn: n * n,
            shift: FourierShift::new(n),
        }
    }

    /// FFT buffers for one thread.
    pub fn work(&self) -> FftWork {
        self.shift.work()
    }

    /// The ramp of a move by `s` px.
    pub fn ramp(&self, s: [f64; 2]) -> Ramp {
        self.shift.ramp(s)
    }

    /// Spectra of every mode of `probe` (M * nn values) into `spectra`.
    pub fn to_spectra(&self, probe: &[Complex32], spectra: &mut [Complex32], work: &mut FftWork) {
        spectra.copy_from_slice(probe);
        for s in spectra.chunks_exact_mut(self.nn) {
            self.shift.spectrum(s, work);
        }
    }

    /// The modes whose spectra are given (inverse of [`ProbeShifter::to_spectra`]).
    pub fn to_frames(&self, spectra: &[Complex32], probe: &mut [Complex32], work: &mut FftWork) {
        probe.copy_from_slice(spectra);
        for p in probe.chunks_exact_mut(self.nn) {
            self.shift.finish(p, work);
        }
    }

    /// The moved modes `IFFT(spectrum_m D_s)` into `out`.
    pub fn moved(
        &self,
        spectra: &[Complex32],
        ramp: &Ramp,
        out: &mut [Complex32],
        work: &mut FftWork,
    ) {
        for (o, s) in out
            .chunks_exact_mut(self.nn)
            .zip(spectra.chunks_exact(self.nn))
        {
            self.shift.shift(s, ramp, o, work);
        }
    }

    /// Adds to `spectra` the change `conj(D_s) FFT(delta_m)` that a change `delta` of the moved
    /// modes makes to the unmoved ones (`delta` is overwritten).
    pub fn add_moved_change(
        &self,
        delta: &mut [Complex32],
        ramp: &Ramp,
        spectra: &mut [Complex32],
        work: &mut FftWork,
    ) {
        for (d, s) in delta
            .chunks_exact_mut(self.nn)
            .zip(spectra.chunks_exact_mut(self.nn))
        {
            self.shift.add_moved_back(d, ramp, s, work);
        }
    }
}

/// Replaces the exit waves `waves` (M modes of nn values) of a view moved by `s` with their
/// corrections `chi_m = A^H (Psi'_m - Psi_m)` (module docs) and returns the amplitude loss of
/// the waves as given.
pub fn modulus_correction(
    propagator: &Propagator,
    waves: &mut [Complex32],
    nn: usize,
    s: [f64; 2],
    data: Measured,
    work: &mut PropWork,
) -> f64 {
    for f in waves.chunks_exact_mut(nn) {
        propagator.forward_moved(f, &mut [], s, work);
    }
    // chi = A^H (Psi' - Psi) = -A^H g / 2 for the amplitude loss's gradient g; A^H is linear,
    // so the -1/2 goes into the gradient pass.
    let loss = loss_and_scaled_gradient(LossKind::Amplitude, waves, nn, data, -0.5);
    for f in waves.chunks_exact_mut(nn) {
        propagator.adjoint_moved(f, None, s, work);
    }
    loss
}

/// [`modulus_correction`] in one fused pass of a separable near field (see
/// [`Propagator::fused_pass`]), with `data` in transposed order.
pub fn fused_modulus_correction(
    propagator: &Propagator,
    waves: &mut [Complex32],
    s: [f64; 2],
    data: Measured,
    work: &mut FusedWork,
) -> f64 {
    let n = propagator.n();
    let modes = waves.len() / (n * n);
    let step = loss_on_columns(LossKind::Amplitude, data, n, modes, -0.5);
    propagator
        .fused_pass(waves, s, &step, Back::Adjoint, work)
        .0
}

/// Largest value of `sum_m |P_m|^2` over the frame (M modes of nn values).
pub fn max_mode_power(probe: &[Complex32], nn: usize) -> f32 {
    if probe.len() == nn {
        return largest_power(probe);
    }
    // Eight independent running maxima, so the loop is not one chain of dependent steps.
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    for i in 0..nn {
        let power: f32 = (i..probe.len())
            .step_by(nn)
            .map(|k| probe[k].norm_sqr())
            .sum();
        lanes[i % LANES] = lanes[i % LANES].max(power);
    }
    lanes.into_iter().fold(0.0, f32::max)
}

wide_kernel! {
    /// Largest `|v|^2` over `values` (0 for none; NaNs are skipped), in eight running maxima.
    fn largest_power(values: &[Complex32]) -> f32 {
        const LANES: usize = 8;
        let mut lanes = [0.0f32; LANES];
        let groups = values.chunks_exact(LANES);
        for v in groups.remainder() {
            let p = v.norm_sqr();
            if p > lanes[0] {
                lanes[0] = p;
            }
        }
        for v8 in groups {
            for (lane, v) in lanes.iter_mut().zip(v8) {
                let p = v.norm_sqr();
                if p > *lane {
                    *lane = p;
                }
            }
        }
        lanes.into_iter().fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, seed: u32) -> Vec<Complex32> {
        (0..n * n)
            .map(|i| {
                let t = (i as f32 * 0.37 + seed as f32).sin();
                Complex32::new(t, (i as f32 * 0.11 - seed as f32).cos())
            })
            .collect()
    }

    #[test]
    fn largest_mode_power_over_the_frame() {
        let n = 5;
        let one = frame(n, 3);
        let want = one.iter().map(|v| v.norm_sqr()).fold(0.0, f32::max);
        assert_eq!(max_mode_power(&one, n * n), want);
        let mut with_nan = one.clone();
        with_nan[7] = Complex32::new(f32::NAN, 0.0);
        let skipped = with_nan.iter().map(|v| v.norm_sqr()).fold(0.0, f32::max);
        assert_eq!(max_mode_power(&with_nan, n * n), skipped);
        let two = [one.clone(), frame(n, 4)].concat();
        let want = (0..n * n)
            .map(|i| two[i].norm_sqr() + two[n * n + i].norm_sqr())
            .fold(0.0, f32::max);
        assert_eq!(max_mode_power(&two, n * n), want);
    }

    #[test]
    fn moved_probe_matches_the_gradient_engines_shift() {
        let n = 16;
        let p = frame(n, 1);
        let ps = ProbeShifter::new(n);
        let mut work = ps.work();
        let mut spec = vec![Complex32::default(); n * n];
        ps.to_spectra(&p, &mut spec, &mut work);
        let s = [0.3, -0.45];
        let mut ours = vec![Complex32::default(); n * n];
        ps.moved(&spec, &ps.ramp(s), &mut ours, &mut work);
        let fs = FourierShift::new(n);
        let mut theirs = vec![Complex32::default(); n * n];
        fs.shift(&spec, &fs.ramp(s), &mut theirs, &mut work);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).norm() < 1e-6, "{a} vs {b}");
        }
        // A change of the moved probe, moved back, changes the unmoved probe by itself moved
        // back: adding it and moving again gives moved + change.
        let delta = frame(n, 7);
        let mut d = delta.clone();
        ps.add_moved_change(&mut d, &ps.ramp(s), &mut spec, &mut work);
        let mut again = vec![Complex32::default(); n * n];
        ps.moved(&spec, &ps.ramp(s), &mut again, &mut work);
        for ((a, m), d) in again.iter().zip(&ours).zip(&delta) {
            assert!((a - (m + d)).norm() < 1e-5, "{a} vs {}", m + d);
        }
        let mut back = vec![Complex32::default(); n * n];
        ps.to_frames(&spec, &mut back, &mut work);
        assert!(back.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn modulus_correction_projects_in_far_field_with_modes() {
        let n = 8;
        let nn = n * n;
        let prop = Propagator::far(n);
        let mut work = prop.work();
        let psi: Vec<Complex32> = [frame(n, 2), frame(n, 3)].concat();
        let intensity: Vec<f32> = (0..nn).map(|i| 1.0 + (i % 5) as f32).collect();
        let amplitude: Vec<f32> = intensity.iter().map(|v| v.sqrt()).collect();
        let mut mask = vec![1.0f32; nn];
        mask[5] = 0.0;
        let data = Measured {
            amplitude: &amplitude,
            intensity: &intensity,
            mask: &mask,
            background: 0.0,
        };
        let mut chi = psi.clone();
        let loss = modulus_correction(&prop, &mut chi, nn, [0.0; 2], data, &mut work);
        assert!(loss > 0.0);
        // psi + chi has the measured modulus (summed over modes) on valid pixels, and the
        // original one on the masked pixel.
        let mut before = psi.clone();
        let mut after: Vec<Complex32> = psi.iter().zip(&chi).map(|(a, b)| a + b).collect();
        for (b, a) in before.chunks_exact_mut(nn).zip(after.chunks_exact_mut(nn)) {
            prop.forward(b, &mut [], &mut work);
            prop.forward(a, &mut [], &mut work);
        }
        for i in 0..nn {
            let ia = after[i].norm_sqr() + after[nn + i].norm_sqr();
            let ib = before[i].norm_sqr() + before[nn + i].norm_sqr();
            let want = if i == 5 { ib } else { intensity[i] };
            assert!(
                (ia - want).abs() < 1e-4 * want.max(1.0),
                "pixel {i}: {ia} vs {want}"
            );
        }
    }
}
