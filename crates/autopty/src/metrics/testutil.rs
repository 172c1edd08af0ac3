//! Synthetic test objects for the metrics tests (independent of the simulator).

use ndarray::{Array2, Array3};
use num_complex::Complex32;
use rand::{Rng, SeedableRng};

/// A smooth random field at `(r, c)`: the mean of plane waves `cos(ky r + kx c + phase)`.
fn field(r: f64, c: f64, waves: &[(f64, f64, f64)]) -> f64 {
    waves
        .iter()
        .map(|&(ky, kx, phase)| (ky * r + kx * c + phase).cos())
        .sum::<f64>()
        / waves.len() as f64
}

/// 16 plane waves with wavelengths 8..60 px, random directions and phases.
fn waves(rng: &mut rand_pcg::Pcg64) -> Vec<(f64, f64, f64)> {
    (0..16)
        .map(|_| {
            let period: f64 = rng.random_range(8.0..60.0);
            let angle: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            let k = std::f64::consts::TAU / period;
            (
                k * angle.sin(),
                k * angle.cos(),
                rng.random_range(0.0..std::f64::consts::TAU),
            )
        })
        .collect()
}

/// A textured complex transmission `a exp(i phi)` with amplitude in (0.45, 1.05) and phase
/// in (-1.5, 1.5) rad (smooth, exact at any sub-pixel shift), its content moved by `shift`
/// (rows, cols) px: the value at `r` is the texture at `r - shift`.
pub fn textured_object(h: usize, w: usize, seed: u64, shift: (f64, f64)) -> Array2<Complex32> {
    textured_object_mapped(h, w, seed, |r, c| (r - shift.0, c - shift.1))
}

/// The same texture as [`textured_object`], sampled where `map(row, col)` says.
pub fn textured_object_mapped(
    h: usize,
    w: usize,
    seed: u64,
    map: impl Fn(f64, f64) -> (f64, f64),
) -> Array2<Complex32> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let amp_waves = waves(&mut rng);
    let phase_waves = waves(&mut rng);
    Array2::from_shape_fn((h, w), |(r, c)| {
        let (y, x) = map(r as f64, c as f64);
        let a = 0.75 + 0.3 * (3.0 * field(y, x, &amp_waves)).tanh();
        let p = 1.5 * (3.0 * field(y, x, &phase_waves)).tanh();
        Complex32::from_polar(a as f32, p as f32)
    })
}

/// A single-mode Gaussian probe (1, n, n) with intensity `exp(-r^2 / sigma^2)` about the centre.
pub fn gaussian_probe(n: usize, sigma: f64) -> Array3<Complex32> {
    let c = n as f64 / 2.0;
    Array3::from_shape_fn((1, n, n), |(_, r, col)| {
        let (y, x) = (r as f64 - c, col as f64 - c);
        Complex32::new((-(y * y + x * x) / (2.0 * sigma * sigma)).exp() as f32, 0.0)
    })
}

/// A 5 x 5 raster of probe positions (25, 2) with the given step, starting at `start` px.
pub fn raster_positions(start: f64, step: f64) -> Array2<f64> {
    Array2::from_shape_fn((25, 2), |(j, axis)| {
        let (row, col) = (j / 5, j % 5);
        start + step * if axis == 0 { row } else { col } as f64
    })
}
