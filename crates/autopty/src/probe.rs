//! Probe initial guesses and mixed-state (multimode) probe handling.
//!
//! A partially coherent beam is modelled as M mutually incoherent, orthogonal modes; the
//! measured intensity is the sum of the modes' intensities. Any unitary mixing of the modes gives
//! the same intensities, so the modes are periodically rotated into the "natural" orthogonal
//! basis (eigenvectors of their Gram matrix), sorted by power.

use crate::dataset::Dataset;
use crate::fft::checkerboard;
use crate::propagate::Propagator;
use ndarray::{Array2, Array3};
use num_complex::{Complex32, Complex64};

/// Probe energy (photons) that the measured data implies: the mean total count per pattern,
/// with masked pixels filled in by the mean of the valid ones.
pub fn measured_energy(data: &Dataset) -> f64 {
    let valid = data.mask.iter().filter(|&&m| m).count().max(1) as f64;
    let total = data.mask.len() as f64;
    let mut sum = 0.0;
    for frame in data.intensities.outer_iter() {
        for (v, &m) in frame.iter().zip(data.mask.iter()) {
            if m {
                sum += *v as f64;
            }
        }
    }
    sum / data.len().max(1) as f64 * total / valid
}

/// The first probe mode estimated from the mean measured amplitude with a flat phase, brought
/// back to the sample plane by the propagator's adjoint (near field: back-propagation over the
/// distance; far field: an inverse FFT, recentred in the window). Scaled to `energy`.
pub fn probe_from_mean_pattern(
    data: &Dataset,
    propagator: &Propagator,
    energy: f64,
) -> Array2<Complex32> {
    let n = data.frame();
    let mut mean = vec![Complex32::default(); n * n];
    for frame in data.intensities.outer_iter() {
        for (m, v) in mean.iter_mut().zip(frame.iter()) {
            m.re += *v;
        }
    }
    let j = data.len().max(1) as f32;
    for (m, &valid) in mean.iter_mut().zip(data.mask.iter()) {
        *m = if valid {
            Complex32::new((m.re / j).max(0.0).sqrt(), 0.0)
        } else {
            Complex32::default()
        };
    }
    if let Propagator::Far(_) = propagator {
        // A flat-phase spectrum comes back at the window's corner; a sign flip of alternate
        // frequencies moves it to the centre.
        checkerboard(&mut mean, n);
    }
    propagator.adjoint(&mut mean, None, &mut propagator.work());
    let mut probe = Array2::from_shape_vec((n, n), mean).expect("n*n values");
    scale_to_energy(
        probe
            .view_mut()
            .into_shape_with_order(n * n)
            .unwrap()
            .as_slice_mut()
            .unwrap(),
        energy,
    );
    probe
}

/// A soft-edged disc of the given radius (px), centred in the N x N window, scaled to `energy`.
pub fn soft_aperture(n: usize, radius: f64, edge: f64, energy: f64) -> Array2<Complex32> {
    let c = (n as f64 - 1.0) / 2.0;
    let mut probe = Array2::from_shape_fn((n, n), |(r, col)| {
        let d = ((r as f64 - c).powi(2) + (col as f64 - c).powi(2)).sqrt();
        let v = 0.5 * (1.0 - ((d - radius) / edge.max(1e-6)).tanh());
        Complex32::new(v as f32, 0.0)
    });
    scale_to_energy(probe.as_slice_mut().unwrap(), energy);
    probe
}

fn scale_to_energy(values: &mut [Complex32], energy: f64) {
    let e: f64 = values.iter().map(|v| v.norm_sqr() as f64).sum();
    if e > 0.0 {
        let s = (energy / e).sqrt() as f32;
        for v in values.iter_mut() {
            *v *= s;
        }
    }
}

/// M probe modes from a first mode: the extra modes are the first mode times low-order
/// polynomials in x and y (Hermite-like), made orthogonal, each holding `extra_power` of the
/// total; the total energy is kept.
pub fn with_extra_modes(
    first: &Array2<Complex32>,
    modes: usize,
    extra_power: f64,
) -> Array3<Complex32> {
    let n = first.nrows();
    let energy: f64 = first.iter().map(|v| v.norm_sqr() as f64).sum();
    let mut out = Array3::zeros((modes, n, n));
    out.index_axis_mut(ndarray::Axis(0), 0).assign(first);
    let c = (n as f64 - 1.0) / 2.0;
    let shapes = [
        (1, 0),
        (0, 1),
        (1, 1),
        (2, 0),
        (0, 2),
        (2, 1),
        (1, 2),
        (3, 0),
        (0, 3),
    ];
    for m in 1..modes {
        let (py, px) = shapes[(m - 1) % shapes.len()];
        let cycle = ((m - 1) / shapes.len()) as i32;
        let mut mode = Array2::from_shape_fn((n, n), |(r, col)| {
            let y = (r as f64 - c) / c;
            let x = (col as f64 - c) / c;
            let poly = y.powi(py) * x.powi(px) * (1.0 + 0.5 * cycle as f64 * (x + y));
            first[[r, col]] * poly as f32
        });
        for k in 0..m {
            let prev = out.index_axis(ndarray::Axis(0), k).to_owned();
            let pp: f64 = prev.iter().map(|v| v.norm_sqr() as f64).sum();
            let proj: Complex64 = prev
                .iter()
                .zip(mode.iter())
                .map(|(a, b)| {
                    Complex64::new(a.re as f64, -(a.im as f64))
                        * Complex64::new(b.re as f64, b.im as f64)
                })
                .sum::<Complex64>()
                / pp.max(1e-300);
            let proj = Complex32::new(proj.re as f32, proj.im as f32);
            mode.zip_mut_with(&prev, |b, a| *b -= a * proj);
        }
        scale_to_energy(mode.as_slice_mut().unwrap(), energy * extra_power);
        out.index_axis_mut(ndarray::Axis(0), m).assign(&mode);
    }
    let first_power = (1.0 - extra_power * (modes - 1) as f64).max(0.05);
    let mut main = out.index_axis_mut(ndarray::Axis(0), 0);
    scale_to_energy(main.as_slice_mut().unwrap(), energy * first_power);
    let total: f64 = out.iter().map(|v| v.norm_sqr() as f64).sum();
    let s = (energy / total).sqrt() as f32;
    out.mapv_inplace(|v| v * s);
    out
}

/// Relative power of each mode (sums to 1).
pub fn power_fractions(probe: &Array3<Complex32>) -> Vec<f64> {
    let powers: Vec<f64> = probe
        .outer_iter()
        .map(|m| m.iter().map(|v| v.norm_sqr() as f64).sum())
        .collect();
    let total: f64 = powers.iter().sum::<f64>().max(1e-300);
    powers.iter().map(|p| p / total).collect()
}

/// Rotates the modes into their natural orthogonal basis (eigenvectors of the Gram matrix
/// `G_ab = <P_a, P_b>`), sorted by decreasing power. The incoherent sum of mode intensities,
/// and so every modelled pattern, is unchanged.
pub fn orthogonalise(probe: &mut Array3<Complex32>) {
    let m = probe.shape()[0];
    if m < 2 {
        return;
    }
    let nn = probe.shape()[1] * probe.shape()[2];
    let flat = probe.as_slice().expect("contiguous probe").to_vec();
    let mut gram = vec![Complex64::default(); m * m];
    for a in 0..m {
        for b in 0..m {
            let mut s = Complex64::default();
            for i in 0..nn {
                let (x, y) = (flat[a * nn + i], flat[b * nn + i]);
                s += Complex64::new(x.re as f64, x.im as f64)
                    * Complex64::new(y.re as f64, -(y.im as f64));
            }
            gram[a * m + b] = s;
        }
    }
    let (values, vectors) = hermitian_eigen(&gram, m);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let out = probe.as_slice_mut().expect("contiguous probe");
    for (k, &col) in order.iter().enumerate() {
        for i in 0..nn {
            let mut s = Complex64::default();
            for a in 0..m {
                let v = vectors[a * m + col];
                let p = flat[a * nn + i];
                s += v.conj() * Complex64::new(p.re as f64, p.im as f64);
            }
            out[k * nn + i] = Complex32::new(s.re as f32, s.im as f32);
        }
    }
}

/// Eigen-decomposition of a small Hermitian matrix (row-major, m x m) by complex Jacobi
/// rotations: returns the eigenvalues and the matrix V (row-major) whose columns are the
/// eigenvectors, `A = V diag(values) V^H`.
pub fn hermitian_eigen(matrix: &[Complex64], m: usize) -> (Vec<f64>, Vec<Complex64>) {
    let mut a = matrix.to_vec();
    let mut v = vec![Complex64::default(); m * m];
    for i in 0..m {
        v[i * m + i] = Complex64::new(1.0, 0.0);
    }
    let norm: f64 = a
        .iter()
        .map(|x| x.norm_sqr())
        .sum::<f64>()
        .sqrt()
        .max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j].norm_sqr())
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * norm {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.norm() <= 1e-300 {
                    continue;
                }
                let phase = Complex64::from_polar(1.0, -apq.arg());
                let b = apq.norm();
                let theta = 0.5 * (2.0 * b).atan2(a[q * m + q].re - a[p * m + p].re);
                let (s, c) = theta.sin_cos();
                // U = identity except U_pp = c, U_pq = s, U_qp = -s e^{-i phi}, U_qq = c e^{-i phi}.
                let (upp, upq, uqp, uqq) = (
                    Complex64::new(c, 0.0),
                    Complex64::new(s, 0.0),
                    -phase * s,
                    phase * c,
                );
                // A <- A U (columns p, q)
                for i in 0..m {
                    let (x, y) = (a[i * m + p], a[i * m + q]);
                    a[i * m + p] = x * upp + y * uqp;
                    a[i * m + q] = x * upq + y * uqq;
                    let (x, y) = (v[i * m + p], v[i * m + q]);
                    v[i * m + p] = x * upp + y * uqp;
                    v[i * m + q] = x * upq + y * uqq;
                }
                // A <- U^H A (rows p, q)
                for j in 0..m {
                    let (x, y) = (a[p * m + j], a[q * m + j]);
                    a[p * m + j] = upp.conj() * x + uqp.conj() * y;
                    a[q * m + j] = upq.conj() * x + uqq.conj() * y;
                }
            }
        }
    }
    ((0..m).map(|i| a[i * m + i].re).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::random_vec;

    #[test]
    fn jacobi_diagonalises_a_hermitian_matrix() {
        let m = 4;
        let r = random_vec(m * m, 7);
        let mut h = vec![Complex64::default(); m * m];
        for i in 0..m {
            for j in 0..m {
                let x = r[i * m + j];
                let y = r[j * m + i];
                h[i * m + j] = Complex64::new((x.re + y.re) as f64, (x.im - y.im) as f64);
            }
        }
        let (vals, v) = hermitian_eigen(&h, m);
        // A V = V diag(vals)
        for k in 0..m {
            for i in 0..m {
                let av: Complex64 = (0..m).map(|j| h[i * m + j] * v[j * m + k]).sum();
                assert!((av - v[i * m + k] * vals[k]).norm() < 1e-10);
            }
        }
    }

    #[test]
    fn orthogonalise_keeps_intensity_and_makes_modes_orthogonal() {
        let (m, n) = (3, 8);
        let mut probe = Array3::from_shape_vec((m, n, n), random_vec(m * n * n, 3)).unwrap();
        let intensity_before: Vec<f32> = (0..n * n)
            .map(|i| {
                (0..m)
                    .map(|k| probe.as_slice().unwrap()[k * n * n + i].norm_sqr())
                    .sum()
            })
            .collect();
        orthogonalise(&mut probe);
        let s = probe.as_slice().unwrap();
        for i in 0..n * n {
            let after: f32 = (0..m).map(|k| s[k * n * n + i].norm_sqr()).sum();
            assert!((after - intensity_before[i]).abs() < 1e-4 * intensity_before[i].max(1e-3));
        }
        for a in 0..m {
            for b in a + 1..m {
                let ip: Complex64 = (0..n * n)
                    .map(|i| {
                        let (x, y) = (s[a * n * n + i], s[b * n * n + i]);
                        Complex64::new((x.conj() * y).re as f64, (x.conj() * y).im as f64)
                    })
                    .sum();
                assert!(ip.norm() < 1e-4, "modes {a},{b}: {ip}");
            }
        }
        let f = power_fractions(&probe);
        assert!(f[0] >= f[1] && f[1] >= f[2]);
    }

    #[test]
    fn extra_modes_are_orthogonal_with_requested_power() {
        let first = soft_aperture(32, 10.0, 2.0, 1000.0);
        let probe = with_extra_modes(&first, 3, 0.05);
        let f = power_fractions(&probe);
        assert!(
            (f[1] - 0.05).abs() < 1e-3 && (f[2] - 0.05).abs() < 1e-3,
            "{f:?}"
        );
        let total: f64 = probe.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((total - 1000.0).abs() < 0.1);
    }
}
