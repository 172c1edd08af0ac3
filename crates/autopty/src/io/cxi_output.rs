//! A reconstruction as a CXI (HDF5) file, written next to the NPY files of an output folder as
//! `reconstruction.cxi`.
//!
//! | path | content |
//! |---|---|
//! | `/entry_1/image_1/data` (H, W) | object transmission, complex64 (compound `{r, i}`, as h5py writes it) |
//! | `/entry_1/image_1/data_type` | `"object"` |
//! | `/entry_1/image_1/{x,y}_pixel_size` | sample pixel, m |
//! | `/entry_1/image_2/data` (M, N, N) | probe modes, complex64 |
//! | `/entry_1/image_2/data_type` | `"probe"` |
//! | `/entry_1/sample_1/geometry_1/translation` (J, 3) | refined positions as stage translations `(-x, -y, 0)`, m, from the object array's origin (as [`super::cxi`] writes them) |
//! | `/entry_1/instrument_1/source_1/{energy,wavelength}` | J, m |
//! | `/entry_1/instrument_1/detector_1/{distance,x_pixel_size,y_pixel_size}` | m |
//! | `/entry_1/autopty/{regime,refined_distance,effective_distance,source_distance}` | the refined geometry (the source distance only for a point source) |
//! | `/entry_1/autopty/{positions_px,nominal_positions_px}` (J, 2) | (row, col) of each probe window's top-left corner, px |

use crate::error::Result;
use crate::geometry::Regime;
use crate::io::cxi::JOULES_PER_EV;
use crate::io::h5;
use crate::reconstruction::Reconstruction;
use hdf5_pure::FileBuilder;
use std::path::Path;

/// Writes `rec` to `path` atomically.
pub fn write(path: &Path, rec: &Reconstruction) -> Result<()> {
    let g = &rec.geometry;
    let dx = g.sample_pixel();
    let mut builder = FileBuilder::new();
    builder
        .create_dataset("cxi_version")
        .with_i64_data(&[150])
        .with_shape(&[]);
    let mut entry = builder.create_group("entry_1");

    let mut image = entry.create_group("image_1");
    h5::stage_complex(
        image.create_dataset("data"),
        &h5::row_major(&rec.object),
        rec.object.shape(),
    );
    h5::stage_string(image.create_dataset("data_type"), "object")?;
    h5::stage_scalar(image.create_dataset("x_pixel_size"), dx);
    h5::stage_scalar(image.create_dataset("y_pixel_size"), dx);
    entry.add_group(image.finish());

    let mut probe = entry.create_group("image_2");
    h5::stage_complex(
        probe.create_dataset("data"),
        &h5::row_major(&rec.probe),
        rec.probe.shape(),
    );
    h5::stage_string(probe.create_dataset("data_type"), "probe")?;
    h5::stage_scalar(probe.create_dataset("x_pixel_size"), dx);
    h5::stage_scalar(probe.create_dataset("y_pixel_size"), dx);
    entry.add_group(probe.finish());

    let mut instrument = entry.create_group("instrument_1");
    let mut source = instrument.create_group("source_1");
    h5::stage_scalar(
        source.create_dataset("energy"),
        g.energy_ev() * JOULES_PER_EV,
    );
    h5::stage_scalar(source.create_dataset("wavelength"), g.wavelength);
    instrument.add_group(source.finish());
    let mut detector = instrument.create_group("detector_1");
    h5::stage_scalar(detector.create_dataset("distance"), g.distance);
    h5::stage_scalar(detector.create_dataset("x_pixel_size"), g.detector_pixel);
    h5::stage_scalar(detector.create_dataset("y_pixel_size"), g.detector_pixel);
    instrument.add_group(detector.finish());
    entry.add_group(instrument.finish());

    let count = rec.positions.nrows();
    let mut sample = entry.create_group("sample_1");
    let mut geometry = sample.create_group("geometry_1");
    let translation: Vec<f64> = rec
        .positions
        .outer_iter()
        .flat_map(|p| [-p[1] * dx, -p[0] * dx, 0.0])
        .collect();
    geometry
        .create_dataset("translation")
        .with_f64_data(&translation)
        .with_shape(&h5::dims(&[count, 3]));
    sample.add_group(geometry.finish());
    entry.add_group(sample.finish());

    let mut autopty = entry.create_group("autopty");
    let regime = match g.regime {
        Regime::FarField => "far_field",
        Regime::NearField => "near_field",
    };
    h5::stage_string(autopty.create_dataset("regime"), regime)?;
    h5::stage_scalar(
        autopty.create_dataset("refined_distance"),
        g.refined_distance(),
    );
    h5::stage_scalar(
        autopty.create_dataset("effective_distance"),
        g.effective_distance(),
    );
    if let Some(z1) = g.source_distance {
        h5::stage_scalar(autopty.create_dataset("source_distance"), z1);
    }
    autopty
        .create_dataset("positions_px")
        .with_f64_data(&h5::row_major(&rec.positions))
        .with_shape(&h5::dims(&[count, 2]));
    autopty
        .create_dataset("nominal_positions_px")
        .with_f64_data(&h5::row_major(&rec.nominal_positions))
        .with_shape(&h5::dims(&[count, 2]));
    entry.add_group(autopty.finish());
    builder.add_group(entry.finish());
    h5::write_file(path, builder)
}
