//! CXI (Coherent X-ray Imaging, HDF5) datasets.
//!
//! Fields read and written (SI units, as the CXI standard stores them):
//!
//! | path | meaning |
//! |---|---|
//! | `/entry_1/instrument_1/detector_1/data` (J, N, N) | intensities, any integer or float type (`/entry_1/data_1/data` is read when this is absent) |
//! | `/entry_1/sample_1/geometry_1/translation` (J, 3) or (3, J) | sample-stage position `(x, y, z)`, m |
//! | `/entry_1/instrument_1/source_1/energy` | photon energy, **joules** (scalar or one per pattern) |
//! | `/entry_1/instrument_1/source_1/wavelength` | wavelength, m (either this or the energy suffices) |
//! | `/entry_1/instrument_1/detector_1/distance` | sample-to-detector distance, m |
//! | `/entry_1/instrument_1/detector_1/{x,y}_pixel_size` | detector pixel pitch, m (square pixels) |
//! | `/entry_1/instrument_1/detector_1/mask` (N, N), optional | uint32 flags, 0 = good pixel |
//! | `/entry_1/instrument_1/detector_1/dark` or `.../data_dark` (N, N) or (K, N, N), optional | dark frame(s): averaged and subtracted, negatives clipped to 0; with K >= 2, their spread gives the noise floor |
//! | `/entry_1/autopty/regime`, optional | `"far_field"` (default) or `"near_field"` (or 0 / 1) |
//! | `/entry_1/autopty/source_distance`, optional | focus-to-sample distance `z1`, m (point source) |
//! | `/entry_1/autopty/noise_floor`, optional | the detector's noise floor, counts per pixel (written when not 0; replaces the one measured from dark frames) |
//!
//! The last two are not part of the CXI standard; [`CxiOptions`] can override them.
//!
//! **Position convention.** CXI `translation` is the position of the sample stage, while the beam
//! stays fixed; the probe therefore moves over the sample by the opposite amount. The reader
//! sets the probe position (y, x) in the sample plane to `y = -t_y`, `x = -t_x`, then applies
//! [`CxiOptions::swap_xy`] (exchange y and x) and after it [`CxiOptions::flip_x`] /
//! [`CxiOptions::flip_y`] (negate). [`write`] stores `translation = (-x, -y, 0)`, so a write
//! followed by a default read gives back the same positions.
//!
//! Pixels whose mask flag is non-zero and whose value is negative or not finite (detector gaps
//! marked with -1, NaN) are set to 0 on reading; they are never used.
//!
//! `hdf5-pure` cannot create HDF5 links, so [`write`] does not write the `/entry_1/data_1/data`
//! link that some CXI writers add; readers that follow the standard find the data under
//! `detector_1`.

use crate::dataset::{noise_floor_of_darks, Dataset};
use crate::error::Result;
use crate::geometry::{wavelength_from_energy, Geometry, Regime};
use crate::io::h5::{self, Field, H5File};
use hdf5_pure::FileBuilder;
use ndarray::{Array2, Array3};
use std::path::Path;

/// Joules per electronvolt (exact, SI 2019).
pub const JOULES_PER_EV: f64 = 1.602176634e-19;

/// Detector intensities.
pub const DATA: &str = "/entry_1/instrument_1/detector_1/data";
/// Intensities under the data group (often a link to [`DATA`]).
pub const DATA_ALT: &str = "/entry_1/data_1/data";
/// Sample-stage translations (J, 3), m.
pub const TRANSLATION: &str = "/entry_1/sample_1/geometry_1/translation";
/// Photon energy, J.
pub const ENERGY: &str = "/entry_1/instrument_1/source_1/energy";
/// Wavelength, m.
pub const WAVELENGTH: &str = "/entry_1/instrument_1/source_1/wavelength";
/// Sample-to-detector distance, m.
pub const DISTANCE: &str = "/entry_1/instrument_1/detector_1/distance";
/// Detector pixel pitch along x, m.
pub const X_PIXEL: &str = "/entry_1/instrument_1/detector_1/x_pixel_size";
/// Detector pixel pitch along y, m.
pub const Y_PIXEL: &str = "/entry_1/instrument_1/detector_1/y_pixel_size";
/// Pixel mask flags (N, N), 0 = good.
pub const MASK: &str = "/entry_1/instrument_1/detector_1/mask";
/// Dark frame(s), subtracted on reading.
pub const DARK: &str = "/entry_1/instrument_1/detector_1/dark";
/// Dark frame(s), the other name in use.
pub const DATA_DARK: &str = "/entry_1/instrument_1/detector_1/data_dark";
/// autopty extension: propagation regime.
pub const REGIME: &str = "/entry_1/autopty/regime";
/// autopty extension: focus-to-sample distance z1, m.
pub const SOURCE_DISTANCE: &str = "/entry_1/autopty/source_distance";
/// autopty extension: the detector's noise floor (counts per pixel, see
/// [`Dataset::noise_floor`]); written when not 0.
pub const NOISE_FLOOR: &str = "/entry_1/autopty/noise_floor";

/// Options for reading positions and geometry from a CXI file.
#[derive(Clone, Debug, Default)]
pub struct CxiOptions {
    /// Negate x after the translation-to-position conversion.
    pub flip_x: bool,
    /// Negate y after the translation-to-position conversion.
    pub flip_y: bool,
    /// Exchange x and y (applied before the flips).
    pub swap_xy: bool,
    /// Propagation regime, overriding the file's `/entry_1/autopty/regime`.
    pub regime: Option<Regime>,
    /// Focus-to-sample distance z1 (m), overriding `/entry_1/autopty/source_distance`.
    pub source_distance: Option<f64>,
}

/// What the reader learned about the file beyond the [`Dataset`] itself.
#[derive(Clone, Debug)]
pub struct CxiInfo {
    /// The HDF5 path the intensities came from.
    pub data_field: String,
    /// Stored type of the intensities (e.g. `u16`, `f32`).
    pub data_dtype: String,
    /// Largest value the stored integer type holds (`None` for floats).
    pub dtype_max: Option<f64>,
}

/// Reads a CXI file.
pub fn read(path: &Path, options: &CxiOptions) -> Result<Dataset> {
    read_with_info(path, options).map(|(data, _)| data)
}

/// Reads a CXI file and reports the stored data type.
pub fn read_with_info(path: &Path, options: &CxiOptions) -> Result<(Dataset, CxiInfo)> {
    let file = H5File::open(path)?;
    // hdf5-pure does not follow soft links, so when one of the two paths is a link, the other
    // one is read; the first path's error is reported when neither can be read.
    let (data_field, data) = match file.read_f32(DATA) {
        Ok(Some(d)) => (DATA, d),
        first => match (first, file.read_f32(DATA_ALT)) {
            (_, Ok(Some(d))) => (DATA_ALT, d),
            (Err(e), _) | (Ok(None), Err(e)) => return Err(e),
            _ => {
                return Err(file.error(
                    DATA,
                    "missing: expected the diffraction patterns (J, N, N) here or at /entry_1/data_1/data",
                ))
            }
        },
    };
    let info = CxiInfo {
        data_field: data_field.to_string(),
        data_dtype: data.dtype.to_string(),
        dtype_max: h5::integer_max(&data.dtype),
    };
    let mut intensities = frames(&file, data_field, data)?;
    let (count, n) = (intensities.shape()[0], intensities.shape()[1]);
    let mask = read_mask(&file, n)?;
    let measured_floor = subtract_dark(&file, &mut intensities)?;
    let noise_floor = read_noise_floor(&file)?.unwrap_or(measured_floor);
    clear_bad_masked_pixels(&mut intensities, &mask);
    check_intensities(&file, data_field, &intensities)?;
    let positions = read_positions(&file, count, options)?;
    let geometry = read_geometry(&file, count, n, options)?;
    let dataset = Dataset {
        intensities,
        mask,
        positions,
        geometry,
        noise_floor,
    };
    dataset.validate(&path.display().to_string())?;
    Ok((dataset, info))
}

/// The (J, N, N) intensity array from a field, with its rank and squareness checked.
fn frames(file: &H5File, field: &str, data: Field<f32>) -> Result<Array3<f32>> {
    let shape = match data.shape.as_slice() {
        &[j, r, c] if j > 0 && r == c && r >= 2 => [j, r, c],
        other => {
            return Err(file.error(
                field,
                format!(
                "expected shape (J, N, N) with J >= 1 and square frames of N >= 2, found {other:?}"
            ),
            ))
        }
    };
    Array3::from_shape_vec(shape, data.values)
        .map_err(|e| file.error(field, format!("inconsistent shape: {e}")))
}

/// The valid-pixel mask from `detector_1/mask` (flag 0 = good), all good when absent.
fn read_mask(file: &H5File, n: usize) -> Result<Array2<bool>> {
    let Some(flags) = file.read_u32(MASK)? else {
        return Ok(Array2::from_elem((n, n), true));
    };
    if flags.shape != [n, n] {
        return Err(file.error(
            MASK,
            format!(
                "expected shape ({n}, {n}) like the frames, found {:?}",
                flags.shape
            ),
        ));
    }
    let good = flags.values.iter().map(|&f| f == 0).collect();
    Array2::from_shape_vec((n, n), good).map_err(|e| file.error(MASK, e.to_string()))
}

/// Subtracts the mean dark frame (from [`DARK`] or [`DATA_DARK`]) and clips negatives to 0;
/// returns the noise floor the subtraction leaves (0 without dark frames, or with one).
fn subtract_dark(file: &H5File, intensities: &mut Array3<f32>) -> Result<f64> {
    let n = intensities.shape()[1];
    let (field, dark) = match file.read_f32(DARK)? {
        Some(d) => (DARK, d),
        None => match file.read_f32(DATA_DARK)? {
            Some(d) => (DATA_DARK, d),
            None => return Ok(0.0),
        },
    };
    let frames = match dark.shape.as_slice() {
        &[r, c] if r == n && c == n => 1,
        &[k, r, c] if k > 0 && r == n && c == n => k,
        other => {
            return Err(file.error(
                field,
                format!("expected ({n}, {n}) or (K, {n}, {n}) like the frames, found {other:?}"),
            ))
        }
    };
    let mut mean = vec![0.0f64; n * n];
    for chunk in dark.values.chunks_exact(n * n) {
        for (m, &v) in mean.iter_mut().zip(chunk) {
            *m += v as f64;
        }
    }
    if let Some(v) = mean.iter().find(|v| !v.is_finite()) {
        return Err(file.error(field, format!("expected finite dark counts, found {v}")));
    }
    for mut frame in intensities.outer_iter_mut() {
        for (v, m) in frame.iter_mut().zip(&mean) {
            // Gap markers (negative, NaN) stay as they are for the mask to clear.
            if v.is_finite() && *v >= 0.0 {
                *v = (*v - (m / frames as f64) as f32).max(0.0);
            }
        }
    }
    Ok(noise_floor_of_darks(&dark.values, n * n).unwrap_or(0.0))
}

/// The stored noise floor ([`NOISE_FLOOR`]), if any: a finite scalar of at least 0.
fn read_noise_floor(file: &H5File) -> Result<Option<f64>> {
    let Some(f) = file.read_f64(NOISE_FLOOR)? else {
        return Ok(None);
    };
    match f.values.as_slice() {
        &[v] if f.shape.is_empty() && v.is_finite() && v >= 0.0 => Ok(Some(v)),
        other => Err(file.error(
            NOISE_FLOOR,
            format!(
                "expected a scalar variance of at least 0 counts, found shape {:?} with {other:?}",
                f.shape
            ),
        )),
    }
}

/// Sets masked pixels holding negative or non-finite values (gap markers) to 0.
fn clear_bad_masked_pixels(intensities: &mut Array3<f32>, mask: &Array2<bool>) {
    for mut frame in intensities.outer_iter_mut() {
        ndarray::Zip::from(&mut frame)
            .and(mask)
            .for_each(|v, &good| {
                if !(good || v.is_finite() && *v >= 0.0) {
                    *v = 0.0;
                }
            });
    }
}

/// Rejects NaN, infinite and negative intensities, naming the first offending pattern.
fn check_intensities(file: &H5File, field: &str, intensities: &Array3<f32>) -> Result<()> {
    for (j, frame) in intensities.outer_iter().enumerate() {
        if let Some(((r, c), &v)) = frame
            .indexed_iter()
            .find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(file.error(
                field,
                format!(
                    "expected finite non-negative intensities, found {v} in pattern {j} at row {r}, column {c} \
                     (mark such pixels in {MASK})"
                ),
            ));
        }
    }
    Ok(())
}

/// Probe positions (J, 2) as (y, x) in metres from the stage translations.
fn read_positions(file: &H5File, count: usize, options: &CxiOptions) -> Result<Array2<f64>> {
    let t = file.read_f64(TRANSLATION)?.ok_or_else(|| {
        file.error(
            TRANSLATION,
            "missing: expected the scan positions (J, 3) in metres",
        )
    })?;
    // (row-major index of t_x, index of t_y) for pattern j.
    let index: Box<dyn Fn(usize) -> (usize, usize)> = match t.shape.as_slice() {
        &[j, 3] if j == count => Box::new(|k| (3 * k, 3 * k + 1)),
        &[3, j] if j == count => Box::new(move |k| (k, count + k)),
        other => {
            return Err(file.error(
                TRANSLATION,
                format!(
                "expected shape ({count}, 3) or (3, {count}), one row per pattern, found {other:?}"
            ),
            ))
        }
    };
    let mut positions = Array2::zeros((count, 2));
    for k in 0..count {
        let (ix, iy) = index(k);
        let (tx, ty) = (t.values[ix], t.values[iy]);
        if !tx.is_finite() || !ty.is_finite() {
            return Err(file.error(
                TRANSLATION,
                format!("expected finite positions, found ({tx}, {ty}) for pattern {k}"),
            ));
        }
        let (mut y, mut x) = (-ty, -tx);
        if options.swap_xy {
            std::mem::swap(&mut y, &mut x);
        }
        if options.flip_x {
            x = -x;
        }
        if options.flip_y {
            y = -y;
        }
        positions[[k, 0]] = y;
        positions[[k, 1]] = x;
    }
    Ok(positions)
}

/// A quantity stored as a scalar or as one value per pattern (all equal); `None` when absent.
/// The value must be finite and positive.
fn read_constant(file: &H5File, field: &str, count: usize, unit: &str) -> Result<Option<f64>> {
    let Some(f) = file.read_f64(field)? else {
        return Ok(None);
    };
    let per_pattern = f.shape.len() == 1 && (f.shape[0] == 1 || f.shape[0] == count);
    if !(f.shape.is_empty() || per_pattern) || f.values.is_empty() {
        return Err(file.error(
            field,
            format!(
                "expected a scalar ({unit}) or one value per pattern, found shape {:?}",
                f.shape
            ),
        ));
    }
    let first = f.values[0];
    if let Some(bad) = f.values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(file.error(
            field,
            format!("expected a finite positive value ({unit}), found {bad}"),
        ));
    }
    if let Some(other) = f
        .values
        .iter()
        .find(|v| ((**v - first) / first).abs() > 1e-6)
    {
        return Err(file.error(
            field,
            format!("expected the same value for every pattern, found {first} and {other}"),
        ));
    }
    Ok(Some(first))
}

/// Regime from the options, else the file's autopty field, else far field.
fn read_regime(file: &H5File, options: &CxiOptions) -> Result<Regime> {
    if let Some(regime) = options.regime {
        return Ok(regime);
    }
    if !file.has(REGIME)? {
        return Ok(Regime::FarField);
    }
    let expected = "expected \"far_field\" or \"near_field\" (or 0 / 1)";
    if let Ok(Some(text)) = file.read_string(REGIME) {
        return match text.to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
            "far_field" | "far" => Ok(Regime::FarField),
            "near_field" | "near" => Ok(Regime::NearField),
            _ => Err(file.error(REGIME, format!("{expected}, found \"{text}\""))),
        };
    }
    let code = file
        .read_f64(REGIME)?
        .and_then(|f| match f.values.as_slice() {
            [v] => Some(*v),
            _ => None,
        });
    match code {
        Some(0.0) => Ok(Regime::FarField),
        Some(1.0) => Ok(Regime::NearField),
        other => Err(file.error(REGIME, format!("{expected}, found {other:?}"))),
    }
}

/// Wavelength (from wavelength and/or energy), distances, pixel size and regime.
fn read_geometry(file: &H5File, count: usize, n: usize, options: &CxiOptions) -> Result<Geometry> {
    let energy = read_constant(file, ENERGY, count, "J")?;
    let wavelength_field = read_constant(file, WAVELENGTH, count, "m")?;
    let from_energy = energy.map(|e| wavelength_from_energy(e / JOULES_PER_EV));
    let wavelength = match (wavelength_field, from_energy) {
        (Some(w), Some(we)) => {
            if ((w - we) / w).abs() > 1e-3 {
                return Err(file.error(
                    ENERGY,
                    format!(
                        "energy {} J ({:.2} eV, wavelength {we:.6e} m) disagrees with {WAVELENGTH} = {w:.6e} m \
                         (expected agreement within 1e-3; energy must be in joules)",
                        energy.unwrap_or(0.0),
                        energy.unwrap_or(0.0) / JOULES_PER_EV
                    ),
                ));
            }
            w
        }
        (Some(w), None) => w,
        (None, Some(we)) => we,
        (None, None) => {
            return Err(file.error(
                ENERGY,
                format!("missing: expected the photon energy (J) here or the wavelength (m) at {WAVELENGTH}"),
            ))
        }
    };
    let distance = read_constant(file, DISTANCE, count, "m")?.ok_or_else(|| {
        file.error(
            DISTANCE,
            "missing: expected the sample-to-detector distance (m)",
        )
    })?;
    let x_pixel = read_constant(file, X_PIXEL, count, "m")?;
    let y_pixel = read_constant(file, Y_PIXEL, count, "m")?;
    let detector_pixel = match (x_pixel, y_pixel) {
        (Some(x), Some(y)) => {
            if ((x - y) / x).abs() > 1e-6 {
                return Err(file.error(
                    Y_PIXEL,
                    format!("expected square pixels, found x {x:e} m and y {y:e} m"),
                ));
            }
            x
        }
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => {
            return Err(file.error(X_PIXEL, "missing: expected the detector pixel size (m)"))
        }
    };
    let regime = read_regime(file, options)?;
    let source_distance = match options.source_distance {
        Some(z1) => Some(z1),
        None => read_constant(file, SOURCE_DISTANCE, count, "m")?,
    };
    if source_distance.is_some() && regime == Regime::FarField {
        return Err(file.error(
            SOURCE_DISTANCE,
            "a source (focus-to-sample) distance (from this field or the options) needs the near-field regime, found far field",
        ));
    }
    Ok(Geometry {
        regime,
        wavelength,
        detector_pixel,
        distance,
        source_distance,
        frame: n,
    })
}

/// Writes a dataset as CXI (intensities as f32, mask as uint32 flags, energy in J and
/// wavelength in m, distances, pixel sizes, translations and the autopty fields), atomically.
pub fn write(path: &Path, data: &Dataset) -> Result<()> {
    data.validate(&path.display().to_string())?;
    let g = &data.geometry;
    let (count, n) = (data.len(), data.frame());
    let mut builder = FileBuilder::new();
    builder
        .create_dataset("cxi_version")
        .with_i64_data(&[150])
        .with_shape(&[]);
    let mut entry = builder.create_group("entry_1");

    let mut instrument = entry.create_group("instrument_1");
    let mut detector = instrument.create_group("detector_1");
    detector
        .create_dataset("data")
        .with_f32_data(&h5::row_major(&data.intensities))
        .with_shape(&h5::dims(&[count, n, n]));
    let flags: Vec<u32> = data.mask.iter().map(|&good| u32::from(!good)).collect();
    detector
        .create_dataset("mask")
        .with_u32_data(&flags)
        .with_shape(&h5::dims(&[n, n]));
    h5::stage_scalar(detector.create_dataset("distance"), g.distance);
    h5::stage_scalar(detector.create_dataset("x_pixel_size"), g.detector_pixel);
    h5::stage_scalar(detector.create_dataset("y_pixel_size"), g.detector_pixel);
    instrument.add_group(detector.finish());
    let mut source = instrument.create_group("source_1");
    h5::stage_scalar(
        source.create_dataset("energy"),
        g.energy_ev() * JOULES_PER_EV,
    );
    h5::stage_scalar(source.create_dataset("wavelength"), g.wavelength);
    instrument.add_group(source.finish());
    entry.add_group(instrument.finish());

    let mut sample = entry.create_group("sample_1");
    let mut geometry = sample.create_group("geometry_1");
    let translation: Vec<f64> = data
        .positions
        .outer_iter()
        .flat_map(|p| [-p[1], -p[0], 0.0])
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
    if let Some(z1) = g.source_distance {
        h5::stage_scalar(autopty.create_dataset("source_distance"), z1);
    }
    if data.noise_floor > 0.0 {
        h5::stage_scalar(autopty.create_dataset("noise_floor"), data.noise_floor);
    }
    entry.add_group(autopty.finish());
    builder.add_group(entry.finish());
    h5::write_file(path, builder)
}
