//! Writes a dataset in the raw beamline form that [`super::raw`] reads: a 16-bit TIFF stack of
//! the frames with Poisson dark counts of a known mean added, a stack of dark frames, a
//! positions file (CSV, micrometres) and the TOML description tying them together. This is how
//! the simulator feeds the raw-input path with known truth.
//!
//! Files for `base` = `dir/name`: `name.tif`, `name_darks.tif`, `name_positions.csv`,
//! `name.toml` (paths in it relative to `dir`).

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::io::positions_file::to_csv_um;
use crate::io::tiff_stack::write_stack_u16;
use ndarray::Array3;
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};
use std::path::{Path, PathBuf};

/// Writes `data` in raw form next to `base` (see the module docs) with `dark_frames` dark frames
/// of mean `dark_level` counts (also added to every frame); returns the TOML path.
pub fn write_raw(
    base: &Path,
    data: &Dataset,
    dark_level: f64,
    dark_frames: usize,
    seed: u64,
) -> Result<PathBuf> {
    if !(dark_level.is_finite() && dark_level >= 0.0) || dark_frames == 0 {
        return Err(Error::invalid(
            "raw output",
            format!("expected a dark level >= 0 and at least one dark frame, got {dark_level} and {dark_frames}"),
        ));
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "raw".into());
    let dir = base.parent().unwrap_or(Path::new("."));
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let dark = |rng: &mut rand_pcg::Pcg64| -> f32 {
        if dark_level > 0.0 {
            Poisson::new(dark_level).map_or(0.0, |p| p.sample(rng) as f32)
        } else {
            0.0
        }
    };
    let frames = data.intensities.mapv(|v| v.round() + dark(&mut rng));
    let peak = frames.iter().fold(0.0f32, |m, &v| m.max(v));
    if peak > u16::MAX as f32 {
        return Err(Error::invalid(
            "raw output",
            format!("counts up to {peak} do not fit a 16-bit TIFF; lower the photon count"),
        ));
    }
    let n = data.frame();
    let darks = Array3::from_shape_fn((dark_frames, n, n), |_| dark(&mut rng));
    let frames_name = format!("{name}.tif");
    let darks_name = format!("{name}_darks.tif");
    let positions_name = format!("{name}_positions.csv");
    write_stack_u16(&dir.join(&frames_name), &frames)?;
    write_stack_u16(&dir.join(&darks_name), &darks)?;
    write_bytes_atomic(
        &dir.join(&positions_name),
        to_csv_um(&data.positions).as_bytes(),
    )?;
    let g = &data.geometry;
    let regime = match g.regime {
        crate::geometry::Regime::FarField => "far_field",
        crate::geometry::Regime::NearField => "near_field",
    };
    let mut toml = format!(
        "# Raw form of a simulated dataset (dark level {dark_level} counts).\n\
         frames = \"{frames_name}\"\ndarks = \"{darks_name}\"\n\n\
         [positions]\nfile = \"{positions_name}\"\nunit = \"um\"\n\n\
         [geometry]\nregime = \"{regime}\"\nwavelength = {:e}\ndetector_pixel = {:e}\ndistance = {:e}\n",
        g.wavelength, g.detector_pixel, g.distance
    );
    if let Some(z1) = g.source_distance {
        toml += &format!("source_distance = {z1:e}\n");
    }
    let toml_path = dir.join(format!("{name}.toml"));
    write_bytes_atomic(&toml_path, toml.as_bytes())?;
    Ok(toml_path)
}
