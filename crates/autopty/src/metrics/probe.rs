//! Power fractions of a mixed-state (multimode) probe.
//!
//! The modes of a mixed state are defined only up to a unitary mixing; the physical content is
//! the coherence matrix `sum_m P_m P_m^H`, whose eigenvalues are the powers of the orthogonal
//! (natural) modes. They equal the eigenvalues of the M x M Gram matrix `G_ab = <P_a, P_b>`.

use ndarray::Array3;
use num_complex::{Complex32, Complex64};

/// Fractions of the total power carried by each orthogonal mode, in decreasing order (they sum
/// to 1). For modes that are already orthogonal these are the per-mode powers
/// `||P_m||^2 / sum ||P||^2`. All zeros for a zero probe.
pub fn probe_power_fractions(probe: &Array3<Complex32>) -> Vec<f64> {
    let m = probe.shape()[0];
    let modes: Vec<Vec<Complex64>> = probe
        .outer_iter()
        .map(|p| {
            p.iter()
                .map(|v| Complex64::new(v.re as f64, v.im as f64))
                .collect()
        })
        .collect();
    let mut gram = vec![vec![Complex64::default(); m]; m];
    for a in 0..m {
        for b in a..m {
            let g: Complex64 = modes[a]
                .iter()
                .zip(&modes[b])
                .map(|(x, y)| x.conj() * y)
                .sum();
            gram[a][b] = g;
            gram[b][a] = g.conj();
        }
    }
    let trace: f64 = (0..m).map(|a| gram[a][a].re).sum();
    if trace <= 0.0 {
        return vec![0.0; m];
    }
    // The real symmetric embedding [[A, -B], [B, A]] of G = A + iB has each eigenvalue of G
    // twice; sorted in decreasing order, every other one is G's spectrum.
    let mut real = vec![vec![0.0f64; 2 * m]; 2 * m];
    for a in 0..m {
        for b in 0..m {
            let g = gram[a][b];
            real[a][b] = g.re;
            real[a + m][b + m] = g.re;
            real[a][b + m] = -g.im;
            real[a + m][b] = g.im;
        }
    }
    let mut eig = symmetric_eigenvalues(real);
    eig.sort_by(|x, y| y.total_cmp(x));
    eig.iter().step_by(2).map(|&v| v.max(0.0) / trace).collect()
}

/// Eigenvalues of a real symmetric matrix by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    let norm: f64 = a.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() <= 1e-300 {
                    continue;
                }
                // Rotation angle that zeroes a[p][q].
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (head, tail) = a.split_at_mut(q);
                for (apk, aqk) in head[p].iter_mut().zip(tail[0].iter_mut()) {
                    let (x, y) = (*apk, *aqk);
                    *apk = c * x - s * y;
                    *aqk = s * x + c * y;
                }
            }
        }
    }
    (0..n).map(|i| a[i][i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two orthogonal Hermite-Gauss modes with powers in the ratio 3 : 1.
    fn orthogonal_modes() -> Array3<Complex32> {
        let n = 32;
        Array3::from_shape_fn((2, n, n), |(m, r, c)| {
            let (y, x) = (r as f32 - 16.0, c as f32 - 16.0);
            let g = (-(x * x + y * y) / 50.0).exp();
            if m == 0 {
                Complex32::new(g, 0.0)
            } else {
                Complex32::new(0.0, x * g)
            }
        })
    }

    fn power(p: ndarray::ArrayView2<Complex32>) -> f64 {
        p.iter().map(|v| v.norm_sqr() as f64).sum()
    }

    #[test]
    fn fractions_of_orthogonal_modes_are_their_powers_and_survive_mixing() {
        let mut probe = orthogonal_modes();
        // Scale mode 1 so that the powers are 3 : 1.
        let (p0, p1) = (
            power(probe.slice(ndarray::s![0, .., ..])),
            power(probe.slice(ndarray::s![1, .., ..])),
        );
        let k = ((p0 / 3.0) / p1).sqrt() as f32;
        probe
            .slice_mut(ndarray::s![1, .., ..])
            .mapv_inplace(|v| v * k);
        let f = probe_power_fractions(&probe);
        assert!(
            (f[0] - 0.75).abs() < 1e-6 && (f[1] - 0.25).abs() < 1e-6,
            "{f:?}"
        );
        // A unitary mixing of the modes changes the per-mode powers but not the fractions.
        let (c, s) = (0.6f32, Complex32::from_polar(0.8, 0.7));
        let a = probe.slice(ndarray::s![0, .., ..]).to_owned();
        let b = probe.slice(ndarray::s![1, .., ..]).to_owned();
        let mixed0 = &a * c + &b * s;
        let mixed1 = &a * (-s.conj()) + &b * c;
        let mut mixed = probe.clone();
        mixed.slice_mut(ndarray::s![0, .., ..]).assign(&mixed0);
        mixed.slice_mut(ndarray::s![1, .., ..]).assign(&mixed1);
        let per_mode = power(mixed.slice(ndarray::s![0, .., ..])) / (p0 + p1 * (k * k) as f64);
        assert!(
            (per_mode - 0.75).abs() > 0.1,
            "the mixing should change per-mode powers"
        );
        let g = probe_power_fractions(&mixed);
        assert!(
            (g[0] - 0.75).abs() < 1e-5 && (g[1] - 0.25).abs() < 1e-5,
            "{g:?}"
        );
    }

    #[test]
    fn single_and_zero_probes() {
        let one = Array3::from_elem((1, 4, 4), Complex32::new(0.3, 0.1));
        assert_eq!(probe_power_fractions(&one), vec![1.0]);
        let zero = Array3::<Complex32>::zeros((3, 4, 4));
        assert_eq!(probe_power_fractions(&zero), vec![0.0; 3]);
    }

    #[test]
    fn jacobi_finds_a_known_spectrum() {
        let a = vec![
            vec![2.0, 1.0, 0.0],
            vec![1.0, 2.0, 1.0],
            vec![0.0, 1.0, 2.0],
        ];
        let mut e = symmetric_eigenvalues(a);
        e.sort_by(f64::total_cmp);
        let want = [2.0 - 2.0f64.sqrt(), 2.0, 2.0 + 2.0f64.sqrt()];
        for (x, y) in e.iter().zip(want) {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
