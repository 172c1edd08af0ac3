//! Settings of one simulation, loadable from TOML (validation is in `validate.rs`).
//!
//! Every field has a default (the `paper` preset at 0.1 m), so a TOML file only names what it
//! changes. A file may start from another preset with a top-level `preset = "small"`; its
//! tables are merged over that preset field by field. Unknown fields are errors (typos should not
//! pass silently). Lengths on the object and detector grids are in pixels (px), physical
//! quantities in SI units.

use super::image::Picture;
use crate::error::{Error, Result};
use crate::geometry::{Geometry, Regime};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// All settings of a simulation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// A short name for the dataset (used in file names and summaries).
    pub name: String,
    /// Seed of every random choice (scan jitter, noise, corrupted metadata).
    pub seed: u64,
    /// Experimental geometry.
    pub geometry: GeometryConfig,
    /// The object phantom.
    pub object: ObjectConfig,
    /// The probe and its mutually incoherent modes.
    pub probe: ProbeConfig,
    /// The scan pattern.
    pub scan: ScanConfig,
    /// Photon count and shot noise.
    pub noise: NoiseConfig,
    /// Detector pixels without data.
    pub detector_mask: MaskConfig,
    /// Errors written into the stored metadata (not into the data).
    pub corruption: CorruptionConfig,
}

/// True experimental geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeometryConfig {
    /// `near_field` or `far_field`.
    pub regime: Regime,
    /// Wavelength (m).
    pub wavelength: f64,
    /// Detector pixel pitch (m).
    pub detector_pixel: f64,
    /// Sample-to-detector distance (m).
    pub distance: f64,
    /// Focus-to-sample distance (m) of a diverging beam (near field only); absent = plane wave.
    pub source_distance: Option<f64>,
    /// Detector frame side N (px); also the probe window side.
    pub frame: usize,
    /// Near field: padded FFT size of the simulator's propagator; absent = automatic (the
    /// reconstruction's padding rule, but at least N/2 per side and not capped at N/2).
    pub padded_size: Option<usize>,
}

/// Object phantom: `O = m exp(i phi)` built from two pictures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectConfig {
    /// Picture for the magnitude, mapped linearly from its own [min, max] to [`magnitude_min`, 1].
    pub magnitude_image: Picture,
    /// Picture for the phase, mapped linearly to [-`phase_range`, `phase_range`] (rad).
    pub phase_image: Picture,
    /// Smallest transmission a (0 < a <= 1).
    pub magnitude_min: f64,
    /// Largest phase magnitude p (rad).
    pub phase_range: f64,
    /// Object size [rows, cols] (px); absent = the smallest fast FFT size holding the scan, the
    /// probe window and the margin on each side.
    pub size: Option<[usize; 2]>,
    /// Fraction (0 to 1] of the pictures, a centred crop of each side, that spans the object: 1
    /// shrinks the whole picture onto it; a smaller object cut from the picture at another
    /// object's detail per pixel takes the ratio of the two sizes.
    pub picture_fraction: f64,
}

/// Probe: picture magnitude and phase times a soft circular aperture, plus incoherent modes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Picture for the magnitude, mapped to [`magnitude_min`, 1] (`uniform` = flat).
    pub magnitude_image: Picture,
    /// Picture for the phase, mapped to [-`phase_range`, `phase_range`] (`uniform` = none).
    pub phase_image: Picture,
    /// Smallest magnitude inside the aperture (0 <= value <= 1).
    pub magnitude_min: f64,
    /// Largest picture phase (rad).
    pub phase_range: f64,
    /// Defocus-like phase `defocus (r / R)^2` added inside the aperture (rad at the radius R).
    pub defocus: f64,
    /// Aperture radius R (px), where the raised-cosine edge falls to one half.
    pub aperture_radius: f64,
    /// Width of the aperture's raised-cosine edge (px); 0 = hard edge.
    pub aperture_edge: f64,
    /// Radius (px) of a central stop (a zone plate's central obstruction, seen magnified in
    /// the beam's cone), with the same soft edge; 0 = none.
    pub central_stop: f64,
    /// Number M of mutually incoherent modes (1 = fully coherent).
    pub modes: usize,
    /// Power fraction of each mode (M values summing to 1); empty = default
    /// ([1], [0.85, 0.15], [0.8, 0.15, 0.05], and for M > 3: 0.8 then halving shares of 0.2).
    pub power_fractions: Vec<f64>,
}

/// Kind of scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanPattern {
    /// `rows x cols` grid with random jitter.
    Raster,
    /// Fermat spiral of `points` positions.
    Spiral,
    /// A centre point and `rings` concentric rings.
    Rings,
}

/// Scan pattern; the step is `(1 - overlap) D` with D the probe diameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// `raster`, `spiral` or `rings`.
    pub pattern: ScanPattern,
    /// Raster rows.
    pub rows: usize,
    /// Raster columns.
    pub cols: usize,
    /// Spiral: number of positions.
    pub points: usize,
    /// Rings: number of rings around the centre point.
    pub rings: usize,
    /// Linear overlap of neighbouring probe footprints, in [0, 1).
    pub overlap: f64,
    /// Probe diameter D (px) for the step; absent = N in near field (the probe fills the
    /// frame), twice the aperture radius in far field.
    pub probe_diameter: Option<f64>,
    /// Random displacement of each true position, uniform in [-jitter, jitter] (px) per axis.
    pub jitter: f64,
    /// Free object border around the scanned area (px); the object is tapered to a constant
    /// in the outer half of it.
    pub margin: f64,
}

/// Photon scaling and noise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Mean total photon count per pattern (the probe is scaled to match).
    pub photons: f64,
    /// Draw Poisson (shot) noise; false = noise-free expected counts.
    pub poisson: bool,
}

/// Detector pixels that record nothing: zeroed in the data and `false` in the mask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskConfig {
    /// Dead detector columns (0-based).
    pub dead_columns: Vec<usize>,
    /// Dead detector rows (0-based).
    pub dead_rows: Vec<usize>,
    /// Radius (px) of a beamstop disk at the frame centre `[N/2, N/2]`; 0 = none.
    pub beamstop_radius: f64,
}

/// Errors in the stored metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorruptionConfig {
    /// Standard deviation (px) of Gaussian errors added to each stored position coordinate.
    pub position_jitter: f64,
    /// Relative error of the stored distance: stored = true (1 + distance_error).
    pub distance_error: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        super::presets::paper()
    }
}

impl Default for GeometryConfig {
    fn default() -> Self {
        super::presets::paper().geometry
    }
}

impl Default for ObjectConfig {
    fn default() -> Self {
        super::presets::paper().object
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        super::presets::paper().probe
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        super::presets::paper().scan
    }
}

impl Default for NoiseConfig {
    fn default() -> Self {
        super::presets::paper().noise
    }
}

impl Default for CorruptionConfig {
    fn default() -> Self {
        super::presets::paper().corruption
    }
}

impl GeometryConfig {
    /// The geometry as the library describes it.
    pub fn to_geometry(&self) -> Geometry {
        Geometry {
            regime: self.regime,
            wavelength: self.wavelength,
            detector_pixel: self.detector_pixel,
            distance: self.distance,
            source_distance: self.source_distance,
            frame: self.frame,
        }
    }
}

impl ProbeConfig {
    /// Power fraction of each mode: the configured ones, or the default for M modes.
    pub fn fractions(&self) -> Vec<f64> {
        if !self.power_fractions.is_empty() {
            return self.power_fractions.clone();
        }
        match self.modes {
            0 => vec![],
            1 => vec![1.0],
            2 => vec![0.85, 0.15],
            3 => vec![0.8, 0.15, 0.05],
            m => {
                let weights: Vec<f64> = (1..m).map(|k| 0.5f64.powi(k as i32 - 1)).collect();
                let total: f64 = weights.iter().sum();
                std::iter::once(0.8)
                    .chain(weights.iter().map(|w| 0.2 * w / total))
                    .collect()
            }
        }
    }
}

impl ScanConfig {
    /// Probe diameter D (px) the step is based on.
    pub fn diameter(&self, geometry: &GeometryConfig, probe: &ProbeConfig) -> f64 {
        self.probe_diameter.unwrap_or(match geometry.regime {
            Regime::NearField => geometry.frame as f64,
            Regime::FarField => 2.0 * probe.aperture_radius,
        })
    }

    /// Step between neighbouring positions (px): `(1 - overlap) D`.
    pub fn step(&self, geometry: &GeometryConfig, probe: &ProbeConfig) -> f64 {
        (1.0 - self.overlap) * self.diameter(geometry, probe)
    }

    /// Number of positions the pattern produces.
    pub fn count(&self) -> usize {
        match self.pattern {
            ScanPattern::Raster => self.rows * self.cols,
            ScanPattern::Spiral => self.points,
            ScanPattern::Rings => super::scan::ring_counts(self.rings).iter().sum::<usize>() + 1,
        }
    }
}

impl SimConfig {
    /// Reads settings from TOML text merged over `base` (or over the preset the text names with
    /// a top-level `preset = "..."`). `source` names the file in error messages.
    pub fn from_toml(text: &str, base: &SimConfig, source: &Path) -> Result<SimConfig> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| Error::field(source, "-", e.to_string()))?;
        let base = match table.remove("preset") {
            Some(toml::Value::String(name)) => super::presets::preset(&name)
                .map_err(|e| Error::field(source, "preset", e.to_string()))?,
            Some(other) => {
                return Err(Error::field(
                    source,
                    "preset",
                    format!("expected a preset name, found a {}", other.type_str()),
                ))
            }
            None => base.clone(),
        };
        let mut merged = toml::Table::try_from(&base)
            .map_err(|e| Error::invalid("simulation settings", e.to_string()))?;
        merge(&mut merged, table);
        let cfg: SimConfig = merged
            .try_into()
            .map_err(|e: toml::de::Error| Error::field(source, "-", e.to_string()))?;
        cfg.validate()
            .map_err(|e| Error::field(source, "-", e.to_string()))?;
        Ok(cfg)
    }

    /// Loads a TOML settings file merged over `base` (see [`SimConfig::from_toml`]).
    pub fn load(path: &Path, base: &SimConfig) -> Result<SimConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, base, path)
    }

    /// The settings as TOML text (every field).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::invalid("simulation settings", e.to_string()))
    }
}

/// Overwrites `base` with `over`, descending into tables present in both.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in super::super::presets::PRESETS {
            super::super::presets::preset(name)
                .unwrap()
                .validate()
                .unwrap();
        }
    }

    #[test]
    fn default_power_fractions_sum_to_one() {
        let mut p = ProbeConfig::default();
        for m in 1..=8 {
            p.modes = m;
            let f = p.fractions();
            assert_eq!(f.len(), m);
            assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-12, "M = {m}");
            assert!(f.windows(2).all(|w| w[0] >= w[1]), "M = {m}: {f:?}");
        }
        p.modes = 3;
        assert_eq!(p.fractions(), vec![0.8, 0.15, 0.05]);
    }

    #[test]
    fn toml_overrides_only_what_it_names() {
        let text = "seed = 7\n[geometry]\ndistance = 0.2\n[probe]\nmodes = 3\n";
        let cfg = SimConfig::from_toml(text, &SimConfig::default(), Path::new("job.toml")).unwrap();
        let mut want = SimConfig {
            seed: 7,
            ..Default::default()
        };
        want.geometry.distance = 0.2;
        want.probe.modes = 3;
        assert_eq!(cfg, want);
        // A named base preset.
        let cfg = SimConfig::from_toml(
            "preset = \"small\"\n",
            &SimConfig::default(),
            Path::new("j.toml"),
        )
        .unwrap();
        assert_eq!(cfg, super::super::presets::preset("small").unwrap());
    }

    #[test]
    fn toml_errors_name_the_file_and_field() {
        let base = SimConfig::default();
        let e = SimConfig::from_toml("[scan]\noverlapp = 0.5\n", &base, Path::new("job.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.toml") && e.contains("overlapp"), "{e}");
        let e = SimConfig::from_toml("[scan]\noverlap = 1.5\n", &base, Path::new("job.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.toml") && e.contains("scan.overlap"), "{e}");
        let e = SimConfig::from_toml("preset = \"huge\"\n", &base, Path::new("job.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge") && e.contains("paper"), "{e}");
    }

    #[test]
    fn settings_round_trip_through_toml() {
        for name in super::super::presets::PRESETS {
            let cfg = super::super::presets::preset(name).unwrap();
            let text = cfg.to_toml().unwrap();
            let back = SimConfig::from_toml(&text, &SimConfig::default(), Path::new("x")).unwrap();
            assert_eq!(back, cfg, "{name}");
        }
    }
}
