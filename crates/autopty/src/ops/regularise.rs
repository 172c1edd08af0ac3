//! Regularisers: each returns its value and adds its gradient to the parameter's gradient.
//!
//! - object modulus range: `w sum (relu(|O| - hi)^2 + relu(lo - |O|)^2)`, keeping a
//!   transmission object physical (|O| <= 1 for a passive sample);
//! - probe energy: `w ((E - E0) / E0)^2` with `E = sum_m ||P_m||^2` and `E0` the mean measured
//!   photon count per pattern (unitary propagators conserve energy, and the object is ~1);
//! - L1 on the position corrections: `w sum |c|` (px), which keeps uncorrelated corrections small.

use ndarray::{Array2, Array3};
use num_complex::Complex32;

/// Object modulus outside `[lo, hi]` penalty; adds its gradient to `grad`.
pub fn object_modulus_range(
    object: &Array2<Complex32>,
    lo: f32,
    hi: f32,
    weight: f64,
    grad: &mut Array2<Complex32>,
) -> f64 {
    let w = weight as f32;
    let mut total = 0.0f64;
    for (o, g) in object.iter().zip(grad.iter_mut()) {
        let a = o.norm();
        let excess = if a > hi {
            a - hi
        } else if a < lo {
            a - lo
        } else {
            continue;
        };
        total += (w * excess * excess) as f64;
        if a > 0.0 {
            *g += o * (2.0 * w * excess / a);
        }
    }
    total
}

/// Probe energy penalty; adds its gradient to `grad`.
pub fn probe_energy(
    probe: &Array3<Complex32>,
    target: f64,
    weight: f64,
    grad: &mut Array3<Complex32>,
) -> f64 {
    let e: f64 = probe.iter().map(|v| v.norm_sqr() as f64).sum();
    let rel = (e - target) / target;
    let factor = (weight * 2.0 * rel / target * 2.0) as f32;
    for (p, g) in probe.iter().zip(grad.iter_mut()) {
        *g += p * factor;
    }
    weight * rel * rel
}

/// L1 penalty on the position corrections (px); adds its gradient to `grad`.
pub fn position_l1(corrections: &Array2<f64>, weight: f64, grad: &mut Array2<f64>) -> f64 {
    let mut total = 0.0;
    for (c, g) in corrections.iter().zip(grad.iter_mut()) {
        total += weight * c.abs();
        *g += weight * c.signum();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{random_array2, random_vec, re_inner};

    #[test]
    fn object_and_probe_gradients_match_finite_differences() {
        let obj = random_array2(6, 6, 1).mapv(|v| v * 3.0);
        let dir = random_array2(6, 6, 2);
        let eps = 1e-3f32;
        let f = |o: &Array2<Complex32>| {
            object_modulus_range(o, 0.2, 0.9, 2.0, &mut Array2::zeros((6, 6)))
        };
        let mut g = Array2::zeros((6, 6));
        object_modulus_range(&obj, 0.2, 0.9, 2.0, &mut g);
        let fd = (f(&(&obj + &dir.mapv(|v| v * eps))) - f(&(&obj - &dir.mapv(|v| v * eps))))
            / (2.0 * eps as f64);
        let an = re_inner(g.as_slice().unwrap(), dir.as_slice().unwrap());
        assert!((fd - an).abs() < 1e-2 * an.abs().max(1e-3), "{an} vs {fd}");

        let probe = Array3::from_shape_vec((2, 3, 3), random_vec(18, 3)).unwrap();
        let pdir = Array3::from_shape_vec((2, 3, 3), random_vec(18, 4)).unwrap();
        let fp = |p: &Array3<Complex32>| probe_energy(p, 0.5, 1.5, &mut Array3::zeros((2, 3, 3)));
        let mut gp = Array3::zeros((2, 3, 3));
        probe_energy(&probe, 0.5, 1.5, &mut gp);
        let fd = (fp(&(&probe + &pdir.mapv(|v| v * eps)))
            - fp(&(&probe - &pdir.mapv(|v| v * eps))))
            / (2.0 * eps as f64);
        let an = re_inner(gp.as_slice().unwrap(), pdir.as_slice().unwrap());
        assert!((fd - an).abs() < 1e-2 * an.abs().max(1e-3), "{an} vs {fd}");
    }

    #[test]
    fn l1_gradient_is_the_sign() {
        let c = Array2::from_shape_vec((2, 2), vec![1.5, -0.5, 0.0, 2.0]).unwrap();
        let mut g = Array2::zeros((2, 2));
        let v = position_l1(&c, 0.1, &mut g);
        assert!((v - 0.4).abs() < 1e-12);
        assert_eq!(g[[0, 1]], -0.1);
    }
}
