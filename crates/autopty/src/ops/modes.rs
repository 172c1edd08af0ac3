//! Probe-mode product: the exit wave of mode m is `psi_m = P_m * O_patch` (elementwise).
//!
//! vjp: `g_P_m = conj(O_patch) * g_psi_m`, `g_patch = sum_m conj(P_m) * g_psi_m`.

use crate::simd::wide_kernel;
use num_complex::Complex32;

/// Writes `psi_m = P_m * patch` for every mode into `fields` (M * nn values).
pub fn exit_waves(probe: &[Complex32], patch: &[Complex32], fields: &mut [Complex32]) {
    let nn = patch.len();
    for (f, p) in fields.chunks_exact_mut(nn).zip(probe.chunks_exact(nn)) {
        products(p, patch, f);
    }
}

wide_kernel! {
    /// `out = a b`, element by element.
    fn products(a: &[Complex32], b: &[Complex32], out: &mut [Complex32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x * y;
        }
    }
}

/// Patch gradient from the exit-wave gradients `g_fields` (M * nn): `sum_m conj(P_m) g_m`
/// into `g_patch`, and in the same sweep over `g_fields` each mode's probe gradient
/// `conj(O_patch) g_m` into `probe_gradient` (M * nn). Both are overwritten.
pub fn patch_gradient(
    probe: &[Complex32],
    patch: &[Complex32],
    g_fields: &[Complex32],
    g_patch: &mut [Complex32],
    probe_gradient: &mut [Complex32],
) {
    let nn = g_patch.len();
    for (m, ((g, p), out)) in g_fields
        .chunks_exact(nn)
        .zip(probe.chunks_exact(nn))
        .zip(probe_gradient.chunks_exact_mut(nn))
        .enumerate()
    {
        mode_gradients(p, patch, g, g_patch, out, m == 0);
    }
}

wide_kernel! {
    /// One mode's terms of [`patch_gradient`]: `g_patch (+)= conj(p) g` (`=` for the first
    /// mode) and `probe_gradient = conj(patch) g`.
    fn mode_gradients(
        p: &[Complex32],
        patch: &[Complex32],
        g: &[Complex32],
        g_patch: &mut [Complex32],
        probe_gradient: &mut [Complex32],
        first: bool,
    ) {
        for ((((gp, out), &gv), &pv), &x) in g_patch
            .iter_mut()
            .zip(probe_gradient.iter_mut())
            .zip(g)
            .zip(p)
            .zip(patch)
        {
            let term = pv.conj() * gv;
            *gp = if first { term } else { *gp + term };
            *out = x.conj() * gv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{random_vec, re_inner};

    #[test]
    fn vjp_matches_directional_derivative() {
        // L = Re <w, psi>: dL along (dP, dO) is Re <w, dP*O + P*dO>.
        let (nn, m) = (9, 3);
        let probe = random_vec(m * nn, 1);
        let patch = random_vec(nn, 2);
        let w = random_vec(m * nn, 3);
        let dp = random_vec(m * nn, 4);
        let dobj = random_vec(nn, 5);
        // Both outputs overwrite what their buffers held.
        let (mut g_patch, mut g_probe) = (random_vec(nn, 6), random_vec(m * nn, 7));
        patch_gradient(&probe, &patch, &w, &mut g_patch, &mut g_probe);
        let mut dpsi = vec![Complex32::default(); m * nn];
        for k in 0..m {
            for i in 0..nn {
                dpsi[k * nn + i] = dp[k * nn + i] * patch[i] + probe[k * nn + i] * dobj[i];
            }
        }
        let want = re_inner(&w, &dpsi);
        let got = re_inner(&g_probe, &dp) + re_inner(&g_patch, &dobj);
        assert!((want - got).abs() < 1e-5 * want.abs().max(1.0));
        let mut fields = vec![Complex32::default(); m * nn];
        exit_waves(&probe, &patch, &mut fields);
        assert_eq!(fields[nn + 2], probe[nn + 2] * patch[2]);
    }
}
