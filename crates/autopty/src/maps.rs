//! Physical maps of the sample from the reconstructed object (Eq. 14-16 of the method).
//!
//! A thin sample of thickness `t` and refractive index `n = 1 - delta + i beta` transmits
//! `O = exp(i k (n - 1) t)` with `k = 2 pi / lambda`, i.e.
//! `O = exp(-i k delta t) exp(-k beta t)`: the phase is `phi = -k delta t` and the magnitude
//! `|O| = exp(-k beta t)`. Hence two independent thickness maps:
//!
//! - from the phase: `t = -(phi - phi_ref) / (k delta)`;
//! - from the log-magnitude: `t = -ln(|O| / a_ref) / (k beta)`.
//!
//! `phi_ref` and `a_ref` are the object's value where there is no sample (the reconstruction
//! fixes the object only up to a constant phase, and the object-probe split up to a constant
//! factor): by default 0 rad and 1, or the mean over a region the user marks as empty. The phase
//! is taken relative to the reference and wrapped to (-pi, pi]; phase shifts beyond half a
//! wave are not unwrapped. Thicknesses are in metres.

use crate::error::{Error, Result};
use ndarray::Array2;
use num_complex::Complex32;

/// The object's value where there is no sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reference {
    /// Phase (rad).
    pub phase: f64,
    /// Magnitude.
    pub magnitude: f64,
}

impl Default for Reference {
    fn default() -> Self {
        Reference {
            phase: 0.0,
            magnitude: 1.0,
        }
    }
}

impl Reference {
    /// The mean of `object` over rows `r0..r1`, columns `c0..c1` (an empty region).
    pub fn from_region(
        object: &Array2<Complex32>,
        rows: [usize; 2],
        cols: [usize; 2],
    ) -> Result<Self> {
        let (h, w) = object.dim();
        if !(rows[0] < rows[1] && rows[1] <= h && cols[0] < cols[1] && cols[1] <= w) {
            return Err(Error::invalid(
                "reference region",
                format!(
                    "expected rows {}..{} and columns {}..{} inside the {h} x {w} object, non-empty",
                    rows[0], rows[1], cols[0], cols[1]
                ),
            ));
        }
        let region = object.slice(ndarray::s![rows[0]..rows[1], cols[0]..cols[1]]);
        let (mut re, mut im, mut mag) = (0.0f64, 0.0f64, 0.0f64);
        for v in region.iter() {
            re += v.re as f64;
            im += v.im as f64;
            mag += v.norm() as f64;
        }
        let count = region.len() as f64;
        Ok(Reference {
            phase: im.atan2(re),
            magnitude: mag / count,
        })
    }
}

/// `2 pi / lambda` (1/m), with `lambda` checked.
fn wavenumber(wavelength: f64) -> Result<f64> {
    if wavelength.is_finite() && wavelength > 0.0 {
        Ok(2.0 * std::f64::consts::PI / wavelength)
    } else {
        Err(Error::invalid(
            "wavelength",
            format!("expected a positive wavelength (m), got {wavelength}"),
        ))
    }
}

fn positive(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(
            name,
            format!("expected a finite positive value, got {v}"),
        ))
    }
}

/// Thickness (m) from the phase: `t = -(phi - phi_ref) / (k delta)`, phase wrapped around the
/// reference.
pub fn thickness_from_phase(
    object: &Array2<Complex32>,
    wavelength: f64,
    delta: f64,
    reference: Reference,
) -> Result<Array2<f32>> {
    let k = wavenumber(wavelength)?;
    let delta = positive("delta", delta)?;
    let turn = Complex32::from_polar(1.0, -reference.phase as f32);
    Ok(object.mapv(|v| {
        let phi = (v * turn).arg() as f64;
        (-phi / (k * delta)) as f32
    }))
}

/// Thickness (m) from the log-magnitude: `t = -ln(|O| / a_ref) / (k beta)`; NaN where the
/// object is 0.
pub fn thickness_from_magnitude(
    object: &Array2<Complex32>,
    wavelength: f64,
    beta: f64,
    reference: Reference,
) -> Result<Array2<f32>> {
    let k = wavenumber(wavelength)?;
    let beta = positive("beta", beta)?;
    let a_ref = positive("reference magnitude", reference.magnitude)?;
    Ok(object.mapv(|v| {
        let a = v.norm() as f64;
        if a > 0.0 {
            (-(a / a_ref).ln() / (k * beta)) as f32
        } else {
            f32::NAN
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_invert_the_transmission_of_a_known_sample() {
        // 200 nm of a material with delta = 1e-3, beta = 2e-4 at 1 nm: k delta t = 1.257 rad.
        let (lambda, delta, beta) = (1e-9, 1e-3, 2e-4);
        let k = 2.0 * std::f64::consts::PI / lambda;
        let thickness = Array2::from_shape_fn(
            (8, 8),
            |(r, c)| if c >= 4 { 200e-9 } else { 0.0 } + r as f64 * 1e-9,
        );
        // A global phase 0.3 rad and magnitude 0.9 from the reconstruction's ambiguities.
        let object = thickness.mapv(|t| {
            Complex32::from_polar(
                (0.9 * (-k * beta * t).exp()) as f32,
                (0.3 - k * delta * t) as f32,
            )
        });
        let reference = Reference::from_region(&object, [0, 1], [0, 1]).unwrap();
        assert!((reference.phase - 0.3).abs() < 1e-6 && (reference.magnitude - 0.9).abs() < 1e-6);
        let tp = thickness_from_phase(&object, lambda, delta, reference).unwrap();
        let tm = thickness_from_magnitude(&object, lambda, beta, reference).unwrap();
        for ((&want, &a), &b) in thickness.iter().zip(&tp).zip(&tm) {
            assert!((a as f64 - want).abs() < 1e-10, "{a} vs {want}");
            assert!((b as f64 - want).abs() < 1e-10, "{b} vs {want}");
        }
        assert!(thickness_from_phase(&object, lambda, 0.0, reference).is_err());
        assert!(Reference::from_region(&object, [3, 3], [0, 2]).is_err());
    }
}
