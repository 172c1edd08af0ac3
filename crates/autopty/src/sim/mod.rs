//! Simulator of ptychography datasets with known ground truth.
//!
//! An object and a (multimode) probe are built from embedded test pictures, scanned along a
//! raster, spiral or ring pattern, propagated to the detector with an exact forward model
//! (Fourier-interpolated sub-pixel patches, generously padded near-field propagation),
//! scaled to a photon count, optionally given Poisson noise and a detector mask, and stored with
//! deliberately wrong metadata (position errors, a distance error) for the reconstruction to
//! correct. Settings are [`SimConfig`] (TOML-loadable, see [`config`]); named presets are in
//! [`presets`].
//!
//! Conventions: positions inside the simulator and in [`crate::Truth`] are object pixels (row,
//! col of the N x N probe window's top-left corner); the [`crate::Dataset`] stores them as
//! (y, x) metres in the sample plane (px times the true sample pixel).
//!
//! Files: `image` (embedded pictures, resampling), `object`, `probe` (+ modes), `scan`, `shift`
//! (exact sub-pixel patches), `forward` (intensities), `noise` (photons, Poisson, mask),
//! `corrupt` (wrong metadata), `config` (settings, TOML), `validate`, `presets`, `simulate`
//! (the pipeline).

pub mod config;
pub mod corrupt;
pub mod forward;
pub mod image;
pub mod noise;
pub mod object;
pub mod presets;
pub mod probe;
pub mod scan;
pub mod shift;
mod simulate;
mod validate;

pub use config::{
    CorruptionConfig, GeometryConfig, MaskConfig, NoiseConfig, ObjectConfig, ProbeConfig,
    ScanConfig, ScanPattern, SimConfig,
};
pub use image::Picture;
pub use presets::{preset, PAPER_DISTANCES, PRESETS};
pub use simulate::simulate;
