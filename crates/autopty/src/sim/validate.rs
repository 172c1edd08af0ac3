//! Validation of simulation settings: every field is checked before anything is computed, and
//! each message names the field (as written in a TOML file) and what was expected.

use super::config::{ScanPattern, SimConfig};
use crate::error::{Error, Result};
use crate::geometry::Regime;

fn bad(field: &str, problem: impl Into<String>) -> Error {
    Error::invalid(format!("simulation setting '{field}'"), problem)
}

fn finite_positive(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("expected a finite positive number, got {v}"),
        ))
    }
}

fn finite_non_negative(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("expected a finite number >= 0, got {v}"),
        ))
    }
}

impl SimConfig {
    /// Checks every setting; the message names the field and what was expected. Whether the
    /// positions fit a user-given object size is checked when the scan is laid out.
    pub fn validate(&self) -> Result<()> {
        let g = &self.geometry;
        finite_positive("geometry.wavelength", g.wavelength)?;
        finite_positive("geometry.detector_pixel", g.detector_pixel)?;
        finite_positive("geometry.distance", g.distance)?;
        if let Some(z1) = g.source_distance {
            finite_positive("geometry.source_distance", z1)?;
            if g.regime == Regime::FarField {
                return Err(bad(
                    "geometry.source_distance",
                    "a point-source (diverging beam) geometry needs regime = \"near_field\"",
                ));
            }
        }
        if !(4..=4096).contains(&g.frame) {
            return Err(bad(
                "geometry.frame",
                format!("expected 4 to 4096 px, got {}", g.frame),
            ));
        }
        if let Some(p) = g.padded_size {
            if p < g.frame || p > 16 * g.frame {
                return Err(bad(
                    "geometry.padded_size",
                    format!("expected N = {} to 16 N px, got {p}", g.frame),
                ));
            }
        }

        let o = &self.object;
        if !(o.magnitude_min.is_finite() && o.magnitude_min > 0.0 && o.magnitude_min <= 1.0) {
            return Err(bad(
                "object.magnitude_min",
                format!("expected a transmission in (0, 1], got {}", o.magnitude_min),
            ));
        }
        finite_non_negative("object.phase_range", o.phase_range)?;
        if !(o.picture_fraction > 0.0 && o.picture_fraction <= 1.0) {
            return Err(bad(
                "object.picture_fraction",
                format!("expected a fraction in (0, 1], got {}", o.picture_fraction),
            ));
        }
        if let Some([r, c]) = o.size {
            if r < g.frame || c < g.frame {
                return Err(bad(
                    "object.size",
                    format!(
                        "expected at least the frame ({} px) each way, got {r} x {c}",
                        g.frame
                    ),
                ));
            }
        }

        let p = &self.probe;
        if !(0.0..=1.0).contains(&p.magnitude_min) {
            return Err(bad(
                "probe.magnitude_min",
                format!("expected a value in [0, 1], got {}", p.magnitude_min),
            ));
        }
        finite_non_negative("probe.phase_range", p.phase_range)?;
        if !p.defocus.is_finite() {
            return Err(bad("probe.defocus", "expected a finite phase (rad)"));
        }
        finite_positive("probe.aperture_radius", p.aperture_radius)?;
        finite_non_negative("probe.aperture_edge", p.aperture_edge)?;
        finite_non_negative("probe.central_stop", p.central_stop)?;
        if p.central_stop >= p.aperture_radius {
            return Err(bad(
                "probe.central_stop",
                "expected a stop smaller than the aperture radius",
            ));
        }
        if !(1..=12).contains(&p.modes) {
            return Err(bad(
                "probe.modes",
                format!("expected 1 to 12 modes, got {}", p.modes),
            ));
        }
        let fr = p.fractions();
        if fr.len() != p.modes {
            return Err(bad(
                "probe.power_fractions",
                format!(
                    "expected {} values (one per mode), got {}",
                    p.modes,
                    fr.len()
                ),
            ));
        }
        if fr.iter().any(|&f| !(f.is_finite() && f > 0.0)) {
            return Err(bad("probe.power_fractions", "expected positive values"));
        }
        let total: f64 = fr.iter().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(bad(
                "probe.power_fractions",
                format!("expected values summing to 1, got a sum of {total}"),
            ));
        }

        let s = &self.scan;
        if !(s.overlap.is_finite() && (0.0..1.0).contains(&s.overlap)) {
            return Err(bad(
                "scan.overlap",
                format!("expected a value in [0, 1), got {}", s.overlap),
            ));
        }
        if let Some(d) = s.probe_diameter {
            finite_positive("scan.probe_diameter", d)?;
        }
        finite_non_negative("scan.jitter", s.jitter)?;
        finite_non_negative("scan.margin", s.margin)?;
        let count = s.count();
        if count == 0 {
            let what = match s.pattern {
                ScanPattern::Raster => "scan.rows/scan.cols",
                ScanPattern::Spiral => "scan.points",
                ScanPattern::Rings => "scan.rings",
            };
            return Err(bad(what, "the scan has no positions"));
        }
        if count > 100_000 {
            return Err(bad(
                "scan",
                format!("{count} positions is more than 100000"),
            ));
        }

        let n = &self.noise;
        if !(n.photons.is_finite() && n.photons > 0.0 && n.photons < 1e15) {
            return Err(bad(
                "noise.photons",
                format!(
                    "expected a count per pattern in (0, 1e15), got {}",
                    n.photons
                ),
            ));
        }

        let m = &self.detector_mask;
        for (field, list) in [
            ("detector_mask.dead_columns", &m.dead_columns),
            ("detector_mask.dead_rows", &m.dead_rows),
        ] {
            if let Some(&i) = list.iter().find(|&&i| i >= g.frame) {
                return Err(bad(
                    field,
                    format!("index {i} is outside the {} px frame", g.frame),
                ));
            }
        }
        finite_non_negative("detector_mask.beamstop_radius", m.beamstop_radius)?;

        let c = &self.corruption;
        finite_non_negative("corruption.position_jitter", c.position_jitter)?;
        if !(c.distance_error.is_finite() && c.distance_error > -1.0) {
            return Err(bad(
                "corruption.distance_error",
                format!(
                    "expected a relative error > -1 (the stored distance must stay positive), got {}",
                    c.distance_error
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(f: impl FnOnce(&mut SimConfig)) -> String {
        let mut cfg = SimConfig::default();
        f(&mut cfg);
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_field_and_the_problem() {
        let e = err_of(|c| c.geometry.distance = -0.1);
        assert!(
            e.contains("geometry.distance") && e.contains("positive"),
            "{e}"
        );
        let e = err_of(|c| c.scan.overlap = 1.0);
        assert!(e.contains("scan.overlap") && e.contains("[0, 1)"), "{e}");
        let e = err_of(|c| c.scan.overlap = -0.2);
        assert!(e.contains("scan.overlap"), "{e}");
        let e = err_of(|c| c.object.magnitude_min = 0.0);
        assert!(e.contains("object.magnitude_min"), "{e}");
        let e = err_of(|c| c.object.picture_fraction = 0.0);
        assert!(e.contains("object.picture_fraction"), "{e}");
        let e = err_of(|c| {
            c.probe.modes = 3;
            c.probe.power_fractions = vec![0.5, 0.3];
        });
        assert!(
            e.contains("probe.power_fractions") && e.contains("3 values"),
            "{e}"
        );
        let e = err_of(|c| {
            c.probe.modes = 2;
            c.probe.power_fractions = vec![0.5, 0.3];
        });
        assert!(e.contains("summing to 1"), "{e}");
        let e = err_of(|c| c.detector_mask.dead_columns = vec![3, 500]);
        assert!(e.contains("dead_columns") && e.contains("500"), "{e}");
        let e = err_of(|c| c.corruption.distance_error = -1.0);
        assert!(e.contains("corruption.distance_error"), "{e}");
        let e = err_of(|c| c.scan.rows = 0);
        assert!(e.contains("no positions"), "{e}");
        let e = err_of(|c| c.noise.photons = 0.0);
        assert!(e.contains("noise.photons"), "{e}");
        let e = err_of(|c| {
            c.geometry.regime = Regime::FarField;
            c.geometry.source_distance = Some(0.01);
        });
        assert!(e.contains("near_field"), "{e}");
    }
}
