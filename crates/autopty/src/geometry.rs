//! Experimental geometry: photon energy and wavelength, distances, pixel sizes.
//!
//! All quantities here are SI (metres, electronvolts for photon energy); everything downstream of
//! this module works in object pixels.
//!
//! - Far field (Fraunhofer): the sample-plane pixel is `lambda z / (N p)` for an N x N detector
//!   with pixel pitch `p` at distance `z`.
//! - Near field, plane wave: the sample-plane pixel equals the detector pixel.
//! - Near field, point source (focused beam): a source (focus) at `z1` upstream of the sample and
//!   the detector at `z2` downstream. By the Fresnel scaling theorem this equals a plane-wave
//!   experiment with magnification `M = (z1 + z2) / z1`, effective distance `z2 / M` and sample
//!   pixel `p / M`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Planck constant times the speed of light, in eV m.
pub const HC_EV_M: f64 = 1.239841984e-6;

/// Wavelength (m) of photons of the given energy (eV).
pub fn wavelength_from_energy(energy_ev: f64) -> f64 {
    HC_EV_M / energy_ev
}

/// Photon energy (eV) for a wavelength (m).
pub fn energy_from_wavelength(wavelength_m: f64) -> f64 {
    HC_EV_M / wavelength_m
}

/// Which propagation links the exit wave to the detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Fraunhofer diffraction: the detector sees the Fourier transform of the exit wave.
    FarField,
    /// Fresnel diffraction computed by the angular spectrum method.
    NearField,
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Regime::FarField => "far field",
            Regime::NearField => "near field",
        })
    }
}

/// The geometry of one ptychography experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Propagation regime.
    pub regime: Regime,
    /// X-ray wavelength (m).
    pub wavelength: f64,
    /// Detector pixel pitch (m); pixels are square.
    pub detector_pixel: f64,
    /// Sample-to-detector distance (m); `z2` in the point-source geometry.
    pub distance: f64,
    /// Focus-to-sample distance `z1` (m) for a diverging (point-source) beam; `None` for a plane wave.
    pub source_distance: Option<f64>,
    /// Detector frame side N (pixels).
    pub frame: usize,
}

impl Geometry {
    /// Checks that every quantity is finite and positive.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("geometry {name}"),
                    format!("expected a finite positive number, got {v}"),
                ))
            }
        };
        positive("wavelength (m)", self.wavelength)?;
        positive("detector pixel size (m)", self.detector_pixel)?;
        positive("distance (m)", self.distance)?;
        if let Some(z1) = self.source_distance {
            positive("source (focus-to-sample) distance (m)", z1)?;
            if self.regime == Regime::FarField {
                return Err(Error::invalid(
                    "geometry",
                    "a source distance (point-source geometry) needs the near-field regime",
                ));
            }
        }
        if self.frame < 2 {
            return Err(Error::invalid(
                "geometry frame size",
                "expected at least 2 pixels",
            ));
        }
        Ok(())
    }

    /// Magnification `M = (z1 + z2) / z1` of a point-source geometry; 1 for a plane wave.
    pub fn magnification(&self) -> f64 {
        match self.source_distance {
            Some(z1) => (z1 + self.distance) / z1,
            None => 1.0,
        }
    }

    /// Propagation distance of the equivalent plane-wave experiment (m): `z2 / M`.
    pub fn effective_distance(&self) -> f64 {
        self.distance / self.magnification()
    }

    /// Pixel size in the sample plane (m).
    pub fn sample_pixel(&self) -> f64 {
        match self.regime {
            Regime::FarField => {
                self.wavelength * self.distance / (self.frame as f64 * self.detector_pixel)
            }
            Regime::NearField => self.detector_pixel / self.magnification(),
        }
    }

    /// Fresnel number of the field of view, `(N dx)^2 / (lambda z_eff)` with the sample-plane
    /// pixel `dx`. Far from 1 either way means far field (<< 1) or near field/holography (>> 1).
    pub fn fresnel_number(&self) -> f64 {
        let width = self.frame as f64 * self.sample_pixel();
        width * width / (self.wavelength * self.effective_distance())
    }

    /// Fresnel number of one sample-plane pixel, `dx^2 / (lambda z_eff)`.
    pub fn pixel_fresnel_number(&self) -> f64 {
        let dx = self.sample_pixel();
        dx * dx / (self.wavelength * self.effective_distance())
    }

    /// Photon energy (eV).
    pub fn energy_ev(&self) -> f64 {
        energy_from_wavelength(self.wavelength)
    }

    /// The same geometry with the refined quantity replaced: for a plane wave the distance, for a
    /// point source the source (focus-to-sample) distance `z1`.
    pub fn with_refined_distance(&self, value: f64) -> Geometry {
        let mut g = self.clone();
        match g.source_distance {
            Some(_) => g.source_distance = Some(value),
            None => g.distance = value,
        }
        g
    }

    /// The distance that refinement changes: `z1` for a point source, else the distance.
    pub fn refined_distance(&self) -> f64 {
        self.source_distance.unwrap_or(self.distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(z1: Option<f64>) -> Geometry {
        Geometry {
            regime: Regime::NearField,
            wavelength: 1e-9,
            detector_pixel: 1e-6,
            distance: 0.1,
            source_distance: z1,
            frame: 128,
        }
    }

    #[test]
    fn energy_and_wavelength_are_inverse() {
        let l = wavelength_from_energy(8000.0);
        assert!((l - 1.549802e-10).abs() < 1e-15);
        assert!((energy_from_wavelength(l) - 8000.0).abs() < 1e-9);
    }

    #[test]
    fn far_field_pixel() {
        let g = Geometry {
            regime: Regime::FarField,
            wavelength: 1e-10,
            detector_pixel: 75e-6,
            distance: 5.0,
            source_distance: None,
            frame: 256,
        };
        assert!((g.sample_pixel() - 1e-10 * 5.0 / (256.0 * 75e-6)).abs() < 1e-20);
    }

    #[test]
    fn fresnel_scaling() {
        let g = near(Some(0.01));
        // M = (0.01 + 0.1) / 0.01 = 11
        assert!((g.magnification() - 11.0).abs() < 1e-12);
        assert!((g.effective_distance() - 0.1 / 11.0).abs() < 1e-15);
        assert!((g.sample_pixel() - 1e-6 / 11.0).abs() < 1e-18);
        let plane = near(None);
        assert_eq!(plane.magnification(), 1.0);
        // (128 um)^2 / (1 nm * 0.1 m) = 163.84
        assert!((plane.fresnel_number() - 163.84).abs() < 1e-9);
    }

    #[test]
    fn validation_rejects_bad_values() {
        let mut g = near(None);
        g.distance = -0.1;
        assert!(g.validate().unwrap_err().to_string().contains("distance"));
        let mut g = near(None);
        g.wavelength = f64::NAN;
        assert!(g.validate().is_err());
        assert!(near(Some(0.5)).validate().is_ok());
    }
}
