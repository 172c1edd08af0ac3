//! The simulator's forward model: noise-free detector intensities.
//!
//! For each position j and probe mode m: exit wave `psi_m = P_m * O_j` with `O_j` the exact
//! (Fourier-interpolated) object patch at the true sub-pixel position, detector field
//! `Psi_m = Prop(psi_m)` and intensity `I_j = sum_m |Psi_m|^2`. Far field uses the centred
//! unitary FFT; near field the angular spectrum with generous padding (see [`padded_size`]), so
//! the data carry better physics than the reconstruction's own model. Positions run in parallel.

use super::config::GeometryConfig;
use super::shift::PatchSampler;
use crate::geometry::{Geometry, Regime};
use crate::propagate::{next_fast_even, Propagator};
use ndarray::{Array2, Array3, Axis};
use num_complex::Complex32;
use rayon::prelude::*;

/// Padded FFT size of the simulator's near-field propagator: the configured one, or N plus
/// twice the sideways walk `lambda z / (2 dx^2)` of the highest spatial frequency, at least N/2
/// and at most 2N per side, rounded up to a fast even size.
pub fn padded_size(cfg: &GeometryConfig, geometry: &Geometry) -> usize {
    if let Some(p) = cfg.padded_size {
        return p;
    }
    let n = geometry.frame;
    let dx = geometry.sample_pixel();
    let walk = geometry.wavelength * geometry.effective_distance() / (2.0 * dx * dx);
    let pad = (walk.ceil() as usize).clamp(n / 2, 2 * n);
    next_fast_even(n + 2 * pad)
}

/// The propagator for the true geometry.
pub fn propagator(cfg: &GeometryConfig, geometry: &Geometry) -> Propagator {
    let n = geometry.frame;
    match geometry.regime {
        Regime::FarField => Propagator::far(n),
        Regime::NearField => Propagator::near_padded(
            n,
            padded_size(cfg, geometry),
            geometry.wavelength,
            geometry.effective_distance(),
            geometry.sample_pixel(),
        ),
    }
}

/// Noise-free intensities (J, N, N) of `probe` (M, N, N) on `object` at `positions` (J, 2;
/// top-left corners in object px).
pub fn intensities(
    object: &Array2<Complex32>,
    probe: &Array3<Complex32>,
    positions: &Array2<f64>,
    prop: &Propagator,
) -> Array3<f32> {
    let n = prop.n();
    assert_eq!(probe.shape()[1..], [n, n], "probe modes must be N x N");
    let sampler = PatchSampler::new(object, n);
    let modes: Vec<Vec<Complex32>> = probe
        .axis_iter(Axis(0))
        .map(|m| m.iter().copied().collect())
        .collect();
    let mut out = Array3::<f32>::zeros((positions.nrows(), n, n));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(positions.axis_iter(Axis(0)))
        .for_each_init(
            || {
                (
                    sampler.work(),
                    prop.work(),
                    vec![Complex32::default(); n * n],
                    vec![Complex32::default(); n * n],
                )
            },
            |(sw, pw, patch, field), (mut frame, pos)| {
                sampler.patch(pos[0], pos[1], patch, sw);
                for mode in &modes {
                    for ((f, p), o) in field.iter_mut().zip(mode).zip(patch.iter()) {
                        *f = p * o;
                    }
                    prop.forward(field, &mut [], pw);
                    for (i, f) in frame.iter_mut().zip(field.iter()) {
                        *i += f.norm_sqr();
                    }
                }
            },
        );
    out
}
