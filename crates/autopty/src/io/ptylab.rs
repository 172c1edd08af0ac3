//! PtyLab's HDF5 input files (conventional ptychography, "CPM").
//!
//! Fields, all at the file's root, SI units:
//!
//! | field | meaning |
//! |---|---|
//! | `ptychogram` (J, N, N) | diffraction patterns, any numeric type |
//! | `encoder` (J, 2) | probe positions over the sample, m, columns (y, x) = (row, col) |
//! | `wavelength` | m |
//! | `dxd` | detector pixel pitch, m |
//! | `zo` | sample-to-detector distance, m |
//! | `entrancePupilDiameter`, optional | probe diameter, m (reported; the probe guess is the job's) |
//! | `orientation`, optional | 0-7: how to turn each stored frame into the detector's view |
//!
//! `orientation` follows the ptypy meaning PtyLab documents, applied to every frame: 1 inverts
//! the columns, 2 the rows, 3 both; 4 transposes; 5, 6 and 7 transpose, then invert the columns,
//! the rows, or both. PtyLab files carry no regime: far field unless [`PtylabOptions`] says
//! otherwise (then `zo` is the near-field distance, `z2` for a point source).

use crate::dataset::Dataset;
use crate::error::Result;
use crate::geometry::{Geometry, Regime};
use crate::io::h5::{self, H5File};
use ndarray::{s, Array2, Array3};
use std::path::Path;

/// Diffraction patterns.
pub const PTYCHOGRAM: &str = "/ptychogram";
/// Probe positions (J, 2), m.
pub const ENCODER: &str = "/encoder";
/// Wavelength, m.
pub const WAVELENGTH: &str = "/wavelength";
/// Detector pixel pitch, m.
pub const DXD: &str = "/dxd";
/// Sample-to-detector distance, m.
pub const ZO: &str = "/zo";
/// Probe diameter, m.
pub const PUPIL: &str = "/entrancePupilDiameter";
/// Frame orientation code.
pub const ORIENTATION: &str = "/orientation";

/// How to interpret a PtyLab file.
#[derive(Clone, Debug, Default)]
pub struct PtylabOptions {
    /// Regime (default far field).
    pub regime: Option<Regime>,
    /// Focus-to-sample distance `z1` (m) of a diverging beam (near field).
    pub source_distance: Option<f64>,
}

/// What the reader found beyond the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct PtylabInfo {
    /// Stored type of the patterns.
    pub dtype: String,
    /// Largest value of the stored integer type.
    pub dtype_max: Option<f64>,
    /// `entrancePupilDiameter` (m), if stored.
    pub entrance_pupil_diameter: Option<f64>,
    /// The orientation code applied.
    pub orientation: u8,
}

/// True when `path` is an HDF5 file with a `ptychogram` at its root.
pub fn is_ptylab(path: &Path) -> bool {
    H5File::open(path)
        .and_then(|f| f.has(PTYCHOGRAM))
        .unwrap_or(false)
}

/// Reads a PtyLab file.
pub fn read(path: &Path, options: &PtylabOptions) -> Result<(Dataset, PtylabInfo)> {
    let file = H5File::open(path)?;
    let data = file
        .read_f32(PTYCHOGRAM)?
        .ok_or_else(|| file.error(PTYCHOGRAM, "missing: expected the patterns (J, N, N)"))?;
    let (count, n) = match data.shape.as_slice() {
        &[j, r, c] if j > 0 && r == c && r >= 2 => (j, r),
        other => {
            return Err(file.error(
                PTYCHOGRAM,
                format!("expected shape (J, N, N) with J >= 1 and square frames, found {other:?}"),
            ))
        }
    };
    let dtype = data.dtype.to_string();
    let dtype_max = h5::integer_max(&data.dtype);
    let stored = Array3::from_shape_vec((count, n, n), data.values)
        .map_err(|e| file.error(PTYCHOGRAM, e.to_string()))?;
    if let Some((k, v)) = stored
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(file.error(
            PTYCHOGRAM,
            format!(
                "expected finite non-negative counts, found {v} in pattern {}",
                k / (n * n)
            ),
        ));
    }
    let orientation = match file.read_f64(ORIENTATION)? {
        None => 0,
        Some(f) => match f.values.as_slice() {
            [v] if (0.0..=7.0).contains(v) && v.fract() == 0.0 => *v as u8,
            other => {
                return Err(file.error(
                    ORIENTATION,
                    format!("expected one integer from 0 to 7, found {other:?}"),
                ))
            }
        },
    };
    let intensities = orient(stored, orientation);

    let encoder = file
        .read_f64(ENCODER)?
        .ok_or_else(|| file.error(ENCODER, "missing: expected the positions (J, 2) in m"))?;
    if encoder.shape != [count, 2] {
        return Err(file.error(
            ENCODER,
            format!(
                "expected shape ({count}, 2), one (y, x) row per pattern, found {:?}",
                encoder.shape
            ),
        ));
    }
    if let Some(k) = encoder.values.iter().position(|v| !v.is_finite()) {
        return Err(file.error(
            ENCODER,
            format!(
                "expected finite positions, found {} in row {}",
                encoder.values[k],
                k / 2
            ),
        ));
    }
    let positions = Array2::from_shape_vec((count, 2), encoder.values)
        .map_err(|e| file.error(ENCODER, e.to_string()))?;

    let scalar = |field: &str, what: &str| -> Result<Option<f64>> {
        let Some(f) = file.read_f64(field)? else {
            return Ok(None);
        };
        match f.values.as_slice() {
            [v] if v.is_finite() && *v > 0.0 => Ok(Some(*v)),
            other => Err(file.error(
                field,
                format!("expected one finite positive {what}, found {other:?}"),
            )),
        }
    };
    let required = |field: &str, what: &str| -> Result<f64> {
        scalar(field, what)?
            .ok_or_else(|| file.error(field, format!("missing: expected the {what}")))
    };
    let wavelength = required(WAVELENGTH, "wavelength (m)")?;
    let detector_pixel = required(DXD, "detector pixel size (m)")?;
    let distance = required(ZO, "sample-to-detector distance (m)")?;
    let entrance_pupil_diameter = scalar(PUPIL, "probe diameter (m)")?;
    let regime = options
        .regime
        .unwrap_or(if options.source_distance.is_some() {
            Regime::NearField
        } else {
            Regime::FarField
        });
    let geometry = Geometry {
        regime,
        wavelength,
        detector_pixel,
        distance,
        source_distance: options.source_distance,
        frame: n,
    };
    let dataset = Dataset {
        intensities,
        mask: Array2::from_elem((n, n), true),
        positions,
        geometry,
        noise_floor: 0.0,
    };
    dataset.validate(&path.display().to_string())?;
    Ok((
        dataset,
        PtylabInfo {
            dtype,
            dtype_max,
            entrance_pupil_diameter,
            orientation,
        },
    ))
}

/// Applies an orientation code (module docs) to every frame.
pub fn orient(frames: Array3<f32>, code: u8) -> Array3<f32> {
    let transposed = if code >= 4 {
        frames.permuted_axes([0, 2, 1])
    } else {
        frames
    };
    let flipped = match code % 4 {
        1 => transposed.slice(s![.., .., ..;-1]).to_owned(),
        2 => transposed.slice(s![.., ..;-1, ..]).to_owned(),
        3 => transposed.slice(s![.., ..;-1, ..;-1]).to_owned(),
        _ => transposed,
    };
    flipped.as_standard_layout().into_owned()
}
