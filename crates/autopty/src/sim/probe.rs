//! The probe: a main mode from two pictures inside a soft circular aperture, and M - 1 further
//! mutually incoherent modes (partial coherence).
//!
//! Main mode: `P_0 = A(r) m exp(i (phi + d (r / R)^2))` on the N x N window with its centre at
//! ((N-1)/2, (N-1)/2): m maps the magnitude picture to [m_min, 1], phi the phase picture to
//! [-p, p], d is a defocus-like phase (rad at the aperture radius R), and A is 1 inside
//! `R - w/2`, 0 outside `R + w/2` and a raised cosine across the edge of width w. A central
//! stop of radius s multiplies A by `1 - A_s(r)` (the same edge), giving a zone plate's annulus.
//!
//! Further modes: `P_0` times low-order monomials `x^a y^b` (x, y in units of R; degree 1, 2,
//! ... in turn), made orthogonal to all earlier modes by Gram-Schmidt (in f64), normalised and
//! given their share of the power: `||P_k||^2 = f_k * total`. The total power is the main mode's
//! raw power; the simulator rescales all modes together to the requested photon count.

use super::config::ProbeConfig;
use super::object::mapped;
use crate::error::{Error, Result};
use ndarray::{Array2, Array3};
use num_complex::{Complex32, Complex64};

/// The probe modes (M, N, N) for an N x N frame.
pub fn build_probe(cfg: &ProbeConfig, n: usize) -> Result<Array3<Complex32>> {
    let main = main_mode(cfg, n)?;
    let fractions = cfg.fractions();
    let total: f64 = main.iter().map(|v| v.norm_sqr()).sum();
    if total <= 0.0 {
        return Err(Error::invalid(
            "simulation setting 'probe.aperture_radius'",
            "the aperture passes no light",
        ));
    }
    let modes = orthogonal_modes(&main, fractions.len(), n, cfg.aperture_radius)?;
    let mut out = Array3::<Complex32>::zeros((modes.len(), n, n));
    for (k, (mode, f)) in modes.iter().zip(&fractions).enumerate() {
        let norm: f64 = mode.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt();
        let scale = (f * total).sqrt() / norm;
        for ((r, c), v) in mode.indexed_iter() {
            let z = v * scale;
            out[[k, r, c]] = Complex32::new(z.re as f32, z.im as f32);
        }
    }
    Ok(out)
}

/// Soft-edged aperture transmission at radius `r` (px).
pub fn aperture(r: f64, radius: f64, edge: f64) -> f64 {
    let (inner, outer) = (radius - edge / 2.0, radius + edge / 2.0);
    if r <= inner {
        1.0
    } else if r >= outer {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (r - inner) / edge).cos())
    }
}

fn centred(n: usize) -> impl Fn(usize) -> f64 {
    let c = (n as f64 - 1.0) / 2.0;
    move |i| i as f64 - c
}

fn main_mode(cfg: &ProbeConfig, n: usize) -> Result<Array2<Complex64>> {
    let mag = mapped(cfg.magnitude_image, n, n, cfg.magnitude_min, 1.0)?;
    let phase = mapped(cfg.phase_image, n, n, -cfg.phase_range, cfg.phase_range)?;
    let at = centred(n);
    Ok(Array2::from_shape_fn((n, n), |(r, c)| {
        let rho = at(r).hypot(at(c));
        let mut a = aperture(rho, cfg.aperture_radius, cfg.aperture_edge);
        if cfg.central_stop > 0.0 {
            a *= 1.0 - aperture(rho, cfg.central_stop, cfg.aperture_edge);
        }
        let u = rho / cfg.aperture_radius;
        let ph = phase[[r, c]] as f64 + cfg.defocus * u * u;
        Complex64::from_polar(a * mag[[r, c]] as f64, ph)
    }))
}

/// Exponents (a, b) of the monomials `x^a y^b`, by increasing degree, without the constant.
fn monomials() -> impl Iterator<Item = (i32, i32)> {
    (1..).flat_map(|deg| (0..=deg).rev().map(move |a| (a, deg - a)))
}

/// `count` orthonormal modes: the normalised main mode, then main mode x monomials with all
/// earlier modes projected out. Monomials that add nothing new are skipped.
fn orthogonal_modes(
    main: &Array2<Complex64>,
    count: usize,
    n: usize,
    radius: f64,
) -> Result<Vec<Array2<Complex64>>> {
    let mut modes: Vec<Array2<Complex64>> = Vec::with_capacity(count);
    let main_norm = inner(main, main).re.sqrt();
    modes.push(main.mapv(|v| v / main_norm));
    let at = centred(n);
    for (a, b) in monomials().take(64) {
        if modes.len() == count {
            break;
        }
        let mut cand = Array2::from_shape_fn((n, n), |(r, c)| {
            let (y, x) = (at(r) / radius, at(c) / radius);
            main[[r, c]] * (x.powi(a) * y.powi(b))
        });
        let before = inner(&cand, &cand).re.sqrt();
        // Two passes of classical Gram-Schmidt (re-orthogonalisation keeps it exact in f64).
        for _ in 0..2 {
            for m in &modes {
                let proj = inner(m, &cand);
                cand.zip_mut_with(m, |c, &q| *c -= proj * q);
            }
        }
        let after = inner(&cand, &cand).re.sqrt();
        if after > 1e-6 * before && after > 0.0 {
            modes.push(cand.mapv(|v| v / after));
        }
    }
    if modes.len() < count {
        return Err(Error::invalid(
            "simulation setting 'probe.modes'",
            format!("could only build {} independent modes", modes.len()),
        ));
    }
    Ok(modes)
}

/// `<a, b> = sum conj(a) b`.
fn inner(a: &Array2<Complex64>, b: &Array2<Complex64>) -> Complex64 {
    a.iter().zip(b).map(|(x, y)| x.conj() * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::presets;

    fn inner32(a: ndarray::ArrayView2<Complex32>, b: ndarray::ArrayView2<Complex32>) -> Complex64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let p = x.conj() * y;
                Complex64::new(p.re as f64, p.im as f64)
            })
            .sum()
    }

    #[test]
    fn modes_are_orthogonal_with_the_requested_power() {
        let mut cfg = presets::paper().probe;
        for (m, fractions) in [
            (3, vec![0.8, 0.15, 0.05]),
            (5, vec![0.5, 0.2, 0.15, 0.1, 0.05]),
        ] {
            cfg.modes = m;
            cfg.power_fractions = fractions.clone();
            let p = build_probe(&cfg, 128).unwrap();
            assert_eq!(p.dim(), (m, 128, 128));
            let power: Vec<f64> = (0..m)
                .map(|k| {
                    inner32(
                        p.index_axis(ndarray::Axis(0), k),
                        p.index_axis(ndarray::Axis(0), k),
                    )
                    .re
                })
                .collect();
            let total: f64 = power.iter().sum();
            for k in 0..m {
                assert!((power[k] / total - fractions[k]).abs() < 1e-6, "mode {k}");
                for l in 0..k {
                    let ip = inner32(
                        p.index_axis(ndarray::Axis(0), k),
                        p.index_axis(ndarray::Axis(0), l),
                    );
                    let rel = ip.norm() / (power[k] * power[l]).sqrt();
                    assert!(rel < 1e-5, "modes {k}, {l}: {rel}");
                }
            }
        }
    }

    #[test]
    fn main_mode_follows_the_aperture() {
        let cfg = presets::paper().probe;
        let p = build_probe(&cfg, 128).unwrap();
        // Zero beyond R + w/2 = 62 px from the centre (63.5, 63.5); the corner is ~90 px away.
        assert_eq!(p[[0, 0, 0]], Complex32::new(0.0, 0.0));
        assert_eq!(p[[0, 64, 0]], Complex32::new(0.0, 0.0));
        assert!(p[[0, 64, 64]].norm() > 0.0);
        assert!((aperture(56.0, 56.0, 12.0) - 0.5).abs() < 1e-12);
        assert_eq!(aperture(50.0, 56.0, 12.0), 1.0);
        assert_eq!(aperture(62.0, 56.0, 12.0), 0.0);
    }

    #[test]
    fn defocus_phase_is_quadratic() {
        let cfg = presets::farfield().probe;
        let n = 64;
        let p = build_probe(&cfg, n).unwrap();
        // Flat pictures: phase = defocus (r/R)^2. Pixel (31, 31+k) is at r ~ k + 0.5 px.
        let c = p[[0, 31, 31]];
        for k in [3usize, 6, 9] {
            let v = p[[0, 31, 31 + k]];
            let (y, x) = (-0.5f64, k as f64 - 0.5);
            let want =
                cfg.defocus * ((x * x + y * y) - 0.5) / (cfg.aperture_radius * cfg.aperture_radius);
            let got = (v * c.conj()).arg() as f64;
            assert!((got - want).abs() < 1e-4, "k = {k}: {got} vs {want}");
        }
    }
}
