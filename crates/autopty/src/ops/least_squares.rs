//! Small dense linear least squares through the normal equations.

/// Accumulates the normal equations of a weighted linear least-squares fit with `K` unknowns:
/// minimises `sum w (basis . x - value)^2`.
#[derive(Clone, Debug)]
pub struct NormalEquations<const K: usize> {
    gram: [[f64; K]; K],
    rhs: [f64; K],
}

impl<const K: usize> Default for NormalEquations<K> {
    fn default() -> Self {
        NormalEquations {
            gram: [[0.0; K]; K],
            rhs: [0.0; K],
        }
    }
}

impl<const K: usize> NormalEquations<K> {
    /// Adds one observation `value` of `basis . x`, with weight `weight`.
    pub fn add(&mut self, basis: &[f64; K], value: f64, weight: f64) {
        for (r, row) in self.gram.iter_mut().enumerate() {
            let wb = weight * basis[r];
            for (g, b) in row.iter_mut().zip(basis) {
                *g += wb * b;
            }
            self.rhs[r] += wb * value;
        }
    }

    /// Adds `ridge` times the sum of the diagonal entries of `unknowns` (at least 1) to each of
    /// them: a small ridge leaves an unknown the data do not reach at zero.
    pub fn ridge(&mut self, unknowns: std::ops::Range<usize>, ridge: f64) {
        let scale = unknowns
            .clone()
            .map(|k| self.gram[k][k])
            .sum::<f64>()
            .max(1.0);
        for k in unknowns {
            self.gram[k][k] += ridge * scale;
        }
    }

    /// The least-squares solution; an unknown with no information (a zero pivot) is 0.
    pub fn solve(&self) -> [f64; K] {
        solve_symmetric(self.gram, self.rhs)
    }
}

/// Solves the symmetric positive semi-definite system `a x = b` by Gaussian elimination; an
/// unknown whose pivot vanishes is set to 0.
pub fn solve_symmetric<const K: usize>(mut a: [[f64; K]; K], mut b: [f64; K]) -> [f64; K] {
    for k in 0..K {
        let pivot = a[k][k];
        if pivot.abs() < f64::MIN_POSITIVE {
            continue;
        }
        for r in k + 1..K {
            let f = a[r][k] / pivot;
            let pivot_row = a[k];
            for (x, y) in a[r][k..].iter_mut().zip(&pivot_row[k..]) {
                *x -= f * y;
            }
            b[r] -= f * b[k];
        }
    }
    let mut x = [0.0; K];
    for k in (0..K).rev() {
        let s: f64 = (k + 1..K).map(|c| a[k][c] * x[c]).sum();
        x[k] = if a[k][k].abs() < f64::MIN_POSITIVE {
            0.0
        } else {
            (b[k] - s) / a[k][k]
        };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_coefficients_of_an_exact_fit() {
        let truth = [0.5, -2.0, 3.0];
        let mut eq = NormalEquations::<3>::default();
        for i in 0..20 {
            let t = i as f64 * 0.3 - 2.0;
            let basis = [1.0, t, t * t];
            let value: f64 = basis.iter().zip(&truth).map(|(b, c)| b * c).sum();
            eq.add(&basis, value, 1.0 + (i % 3) as f64);
        }
        for (x, t) in eq.solve().iter().zip(&truth) {
            assert!((x - t).abs() < 1e-9, "{x} vs {t}");
        }
    }

    #[test]
    fn leaves_an_unreached_unknown_at_zero() {
        let mut eq = NormalEquations::<2>::default();
        eq.add(&[1.0, 0.0], 4.0, 1.0);
        eq.add(&[1.0, 0.0], 2.0, 1.0);
        assert_eq!(eq.solve(), [3.0, 0.0]);
    }
}
