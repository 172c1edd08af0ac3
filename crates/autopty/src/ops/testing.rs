//! Helpers shared by the operator tests: deterministic random arrays and inner products.

use ndarray::Array2;
use num_complex::Complex32;

/// Deterministic pseudo-random complex values in [-0.5, 0.5)^2 (an LCG; tests only).
pub fn random_vec(len: usize, seed: u64) -> Vec<Complex32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(1);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..len).map(|_| Complex32::new(next(), next())).collect()
}

/// A random complex (h, w) array.
pub fn random_array2(h: usize, w: usize, seed: u64) -> Array2<Complex32> {
    Array2::from_shape_vec((h, w), random_vec(h * w, seed)).unwrap()
}

/// Re <a, b> = sum Re(conj(a) b), in f64.
pub fn re_inner(a: &[Complex32], b: &[Complex32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.re as f64 * y.re as f64 + x.im as f64 * y.im as f64)
        .sum()
}
