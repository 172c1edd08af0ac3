//! Ground-truth files of simulated datasets (HDF5, conventionally `NAME.truth.h5` beside
//! `NAME.cxi`).
//!
//! | path | content |
//! |---|---|
//! | `/object` (H, W) | true object transmission, complex64 |
//! | `/probe` (M, N, N) | true probe modes, complex64 |
//! | `/positions` (J, 2) f64 | (row, col) of each probe window's top-left corner in `/object`, px |
//! | `/geometry/regime` | `"far_field"` or `"near_field"` |
//! | `/geometry/wavelength`, `detector_pixel`, `distance` | m |
//! | `/geometry/source_distance` (optional) | focus-to-sample distance z1, m |
//! | `/geometry/frame` | detector frame side N, px |
//!
//! Complex arrays use h5py's complex64 layout, a compound `{r: f32, i: f32}`, so
//! `h5py.File(p)["object"][()]` is a `complex64` numpy array.

use crate::dataset::Truth;
use crate::error::{Error, Result};
use crate::geometry::{Geometry, Regime};
use crate::io::h5::{self, H5File};
use hdf5_pure::{AttrValue, FileBuilder};
use ndarray::{Array2, Array3};
use std::path::Path;

const OBJECT: &str = "/object";
const PROBE: &str = "/probe";
const POSITIONS: &str = "/positions";
const REGIME: &str = "/geometry/regime";
const WAVELENGTH: &str = "/geometry/wavelength";
const DETECTOR_PIXEL: &str = "/geometry/detector_pixel";
const DISTANCE: &str = "/geometry/distance";
const SOURCE_DISTANCE: &str = "/geometry/source_distance";
const FRAME: &str = "/geometry/frame";

/// Writes the truth file atomically.
pub fn write(path: &Path, truth: &Truth) -> Result<()> {
    truth
        .geometry
        .validate()
        .map_err(|e| Error::field(path, "/geometry", e.to_string()))?;
    let mut builder = FileBuilder::new();
    builder.set_attr("autopty_format", AttrValue::AsciiString("truth".into()));
    builder.set_attr("autopty_format_version", AttrValue::I64(1));
    h5::stage_complex(
        builder.create_dataset("object"),
        &h5::row_major(&truth.object),
        truth.object.shape(),
    );
    h5::stage_complex(
        builder.create_dataset("probe"),
        &h5::row_major(&truth.probe),
        truth.probe.shape(),
    );
    builder
        .create_dataset("positions")
        .with_f64_data(&h5::row_major(&truth.positions))
        .with_shape(&h5::dims(truth.positions.shape()));
    let g = &truth.geometry;
    let mut geometry = builder.create_group("geometry");
    let regime = match g.regime {
        Regime::FarField => "far_field",
        Regime::NearField => "near_field",
    };
    h5::stage_string(geometry.create_dataset("regime"), regime)?;
    h5::stage_scalar(geometry.create_dataset("wavelength"), g.wavelength);
    h5::stage_scalar(geometry.create_dataset("detector_pixel"), g.detector_pixel);
    h5::stage_scalar(geometry.create_dataset("distance"), g.distance);
    if let Some(z1) = g.source_distance {
        h5::stage_scalar(geometry.create_dataset("source_distance"), z1);
    }
    geometry
        .create_dataset("frame")
        .with_i64_data(&[g.frame as i64])
        .with_shape(&[]);
    builder.add_group(geometry.finish());
    h5::write_file(path, builder)
}

/// Reads a truth file, checking shapes and the geometry.
pub fn read(path: &Path) -> Result<Truth> {
    let file = H5File::open(path)?;
    let missing = |field: &str, what: &str| file.error(field, format!("missing: expected {what}"));

    let object = file
        .read_complex(OBJECT)?
        .ok_or_else(|| missing(OBJECT, "the complex object (H, W)"))?;
    let object = match object.shape.as_slice() {
        &[h, w] if h > 0 && w > 0 => Array2::from_shape_vec((h, w), object.values)
            .map_err(|e| file.error(OBJECT, e.to_string()))?,
        other => return Err(file.error(OBJECT, format!("expected shape (H, W), found {other:?}"))),
    };

    let probe = file
        .read_complex(PROBE)?
        .ok_or_else(|| missing(PROBE, "the complex probe modes (M, N, N)"))?;
    let probe = match probe.shape.as_slice() {
        &[m, r, c] if m > 0 && r == c && r > 0 => Array3::from_shape_vec((m, r, c), probe.values)
            .map_err(|e| file.error(PROBE, e.to_string()))?,
        other => {
            return Err(file.error(
                PROBE,
                format!("expected shape (M, N, N) with square modes, found {other:?}"),
            ))
        }
    };

    let positions = file
        .read_f64(POSITIONS)?
        .ok_or_else(|| missing(POSITIONS, "the true positions (J, 2) in pixels"))?;
    let positions = match positions.shape.as_slice() {
        &[j, 2] if j > 0 => Array2::from_shape_vec((j, 2), positions.values)
            .map_err(|e| file.error(POSITIONS, e.to_string()))?,
        other => {
            return Err(file.error(POSITIONS, format!("expected shape (J, 2), found {other:?}")))
        }
    };
    if let Some(v) = positions.iter().find(|v| !v.is_finite()) {
        return Err(file.error(POSITIONS, format!("expected finite positions, found {v}")));
    }

    let geometry = read_geometry(&file)?;
    if probe.shape()[1] != geometry.frame {
        return Err(file.error(
            PROBE,
            format!(
                "expected {0} x {0} modes like {FRAME}, found {1} x {1}",
                geometry.frame,
                probe.shape()[1]
            ),
        ));
    }
    Ok(Truth {
        object,
        probe,
        positions,
        geometry,
    })
}

fn read_geometry(file: &H5File) -> Result<Geometry> {
    let scalar = |field: &str| -> Result<Option<f64>> {
        match file.read_f64(field)? {
            None => Ok(None),
            Some(f) if f.values.len() == 1 => Ok(Some(f.values[0])),
            Some(f) => Err(file.error(
                field,
                format!("expected a scalar, found shape {:?}", f.shape),
            )),
        }
    };
    let required = |field: &str| -> Result<f64> {
        scalar(field)?.ok_or_else(|| file.error(field, "missing: expected a scalar in SI units"))
    };
    let regime = match file.read_string(REGIME)?.as_deref() {
        Some("far_field") => Regime::FarField,
        Some("near_field") => Regime::NearField,
        other => {
            return Err(file.error(
                REGIME,
                format!("expected \"far_field\" or \"near_field\", found {other:?}"),
            ))
        }
    };
    let frame = required(FRAME)?;
    if !(frame >= 2.0 && frame.fract() == 0.0 && frame < 1e6) {
        return Err(file.error(
            FRAME,
            format!("expected a frame side of at least 2 px, found {frame}"),
        ));
    }
    let geometry = Geometry {
        regime,
        wavelength: required(WAVELENGTH)?,
        detector_pixel: required(DETECTOR_PIXEL)?,
        distance: required(DISTANCE)?,
        source_distance: scalar(SOURCE_DISTANCE)?,
        frame: frame as usize,
    };
    geometry
        .validate()
        .map_err(|e| file.error("/geometry", e.to_string()))?;
    Ok(geometry)
}
