//! Raw beamline input: a TIFF stack of frames, a positions file, optional dark frames, a
//! flat-field (gain) image and a mask image, turned into a [`Dataset`] by a fixed pipeline:
//!
//! 1. frames (J, H, W) from the TIFF stack, positions (J) from the text file (counts must agree);
//! 2. dark frames averaged and subtracted, negative values clipped to 0; their spread from frame
//!    to frame gives the noise floor (`noise_floor` overrides it), which binning and
//!    resampling scale with the pixels they add up (the flat field's gain is left out);
//! 3. flat field (detector gain, uniform illumination) normalised to mean 1 over its bright
//!    pixels; frames divided by it; pixels below 5 % of its median are masked;
//! 4. mask image (non-zero = good pixel unless `mask_zero_is_good`);
//! 5. on request, hot pixels (mean above `hot_factor` times the median of its 8 neighbours plus
//!    `hot_factor` counts) and dead pixels (zero in every frame while the neighbours' median
//!    mean exceeds 1) are masked; masked pixels are set to 0;
//! 6. crop to a square of `crop` px (default: the largest square) around the `centre` (row, col;
//!    default: the centre of mass of the masked mean frame), kept inside the frame;
//! 7. binning by an integer factor (counts summed; a binned pixel is masked when any of its
//!    pixels is);
//! 8. resampling to `size` px by exact area overlap (counts conserved; masked where any
//!    overlapping pixel is masked).
//!
//! Binning and resampling scale the detector pixel (`p * bin * n / size`). Relative paths in a
//! TOML description are relative to the TOML file's folder. Every error names the file and the
//! field; nothing is written.

use crate::dataset::{noise_floor_of_darks, Dataset};
use crate::error::{Error, Result};
use crate::geometry::{wavelength_from_energy, Geometry, Regime};
use crate::io::positions_file::{self, resolve, PositionsFile};
use crate::io::tiff_stack::{self, mean_frame};
use ndarray::{s, Array2, Array3};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A raw dataset as described in a TOML file (see `examples/raw_tiff.toml`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawInput {
    /// Multipage TIFF of the diffraction frames (one page per position).
    pub frames: PathBuf,
    /// Scan positions.
    pub positions: PositionsFile,
    /// Multipage TIFF of dark frames (averaged, then subtracted).
    pub darks: Option<PathBuf>,
    /// Flat-field (detector gain) image; frames are divided by it normalised to mean 1.
    pub flat: Option<PathBuf>,
    /// Mask image (TIFF): non-zero marks a good pixel (or zero, with `mask_zero_is_good`).
    pub mask: Option<PathBuf>,
    /// The mask image marks good pixels with 0 (CXI's convention) instead of non-zero.
    pub mask_zero_is_good: bool,
    /// Experimental geometry.
    pub geometry: RawGeometry,
    /// Preprocessing.
    pub preprocess: Preprocess,
}

/// Geometry of a raw dataset (SI units).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGeometry {
    /// `near_field` or `far_field`; absent = near field when `source_distance` is given, else
    /// far field.
    pub regime: Option<Regime>,
    /// Wavelength (m); or give `energy_ev`.
    pub wavelength: Option<f64>,
    /// Photon energy (eV); or give `wavelength`.
    pub energy_ev: Option<f64>,
    /// Detector pixel pitch (m) before binning.
    pub detector_pixel: f64,
    /// Sample-to-detector distance (m), `z2` for a focused beam.
    pub distance: f64,
    /// Focus-to-sample distance `z1` (m) of a diverging (focused) beam.
    pub source_distance: Option<f64>,
}

/// Preprocessing of the frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preprocess {
    /// Detect and mask hot and dead pixels.
    pub hot_pixels: bool,
    /// Threshold factor of the hot-pixel test.
    pub hot_factor: f64,
    /// Centre (row, col) px of the crop; absent = centre of mass of the mean frame.
    pub centre: Option<[f64; 2]>,
    /// Side (px) of the square crop; absent = the largest square inside the frame.
    pub crop: Option<usize>,
    /// Integer binning factor (1 = none).
    pub bin: usize,
    /// Final frame side (px) after resampling; absent = no resampling.
    pub size: Option<usize>,
    /// Variance of the detector noise per stored pixel after dark subtraction (counts):
    /// readout noise, dark current. Absent = measured from the dark frames (0 without at
    /// least two of them).
    pub noise_floor: Option<f64>,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            hot_pixels: false,
            hot_factor: 10.0,
            centre: None,
            crop: None,
            bin: 1,
            size: None,
            noise_floor: None,
        }
    }
}

/// What the pipeline did, for `autopty info` and the logs.
#[derive(Clone, Debug, PartialEq)]
pub struct RawReport {
    /// Stored sample type of the frames.
    pub dtype: &'static str,
    /// Largest value of the stored integer type.
    pub dtype_max: Option<f64>,
    /// Frames (J, H, W) as stored.
    pub stored_shape: [usize; 3],
    /// Number of dark frames averaged.
    pub dark_frames: usize,
    /// Mean of the averaged dark frame.
    pub dark_mean: Option<f64>,
    /// The noise floor of the final frames (counts per pixel; see [`Dataset::noise_floor`]).
    pub noise_floor: f64,
    /// Values clipped to 0 after the dark subtraction.
    pub clipped: usize,
    /// Hot and dead pixels found.
    pub hot_pixels: usize,
    /// Dead pixels found.
    pub dead_pixels: usize,
    /// Crop centre (row, col) and side, in stored pixels.
    pub centre: [f64; 2],
    /// Crop side (px).
    pub crop: usize,
    /// Final frame side (px).
    pub size: usize,
}

impl RawInput {
    /// Reads a TOML description; relative paths become relative to its folder.
    pub fn from_file(path: &Path) -> Result<RawInput> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut input: RawInput = toml::from_str(&text)
            .map_err(|e| Error::field(path, "-", format!("expected a raw-input TOML: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        input.resolve_paths(base);
        Ok(input)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.frames = resolve(base, &self.frames);
        self.positions.file = resolve(base, &self.positions.file);
        for p in [&mut self.darks, &mut self.flat, &mut self.mask]
            .into_iter()
            .flatten()
        {
            *p = resolve(base, p);
        }
    }

    /// The geometry as stored (before binning and resampling), checked; `source` names the
    /// description in errors.
    fn geometry(&self, source: &Path, frame: usize) -> Result<Geometry> {
        let g = &self.geometry;
        let bad = |field: &str, problem: String| Error::field(source, field, problem);
        let positive = |field: &str, v: f64, unit: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(bad(
                    field,
                    format!("expected a finite positive value ({unit}), found {v}"),
                ))
            }
        };
        let wavelength = match (g.wavelength, g.energy_ev) {
            (Some(w), None) => positive("geometry.wavelength", w, "m")?,
            (None, Some(e)) => wavelength_from_energy(positive("geometry.energy_ev", e, "eV")?),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "geometry.wavelength",
                    "give either the wavelength (m) or energy_ev, not both".into(),
                ))
            }
            (None, None) => {
                return Err(bad(
                    "geometry.wavelength",
                    "missing: expected the wavelength (m) or energy_ev".into(),
                ))
            }
        };
        let detector_pixel = positive("geometry.detector_pixel", g.detector_pixel, "m")?;
        let distance = positive("geometry.distance", g.distance, "m")?;
        let source_distance = match g.source_distance {
            Some(z1) => Some(positive("geometry.source_distance", z1, "m")?),
            None => None,
        };
        let regime = g.regime.unwrap_or(if source_distance.is_some() {
            Regime::NearField
        } else {
            Regime::FarField
        });
        if source_distance.is_some() && regime == Regime::FarField {
            return Err(bad(
                "geometry.source_distance",
                "a focus-to-sample distance needs the near-field regime".into(),
            ));
        }
        Ok(Geometry {
            regime,
            wavelength,
            detector_pixel,
            distance,
            source_distance,
            frame,
        })
    }

    /// Runs the pipeline of the module docs. `source` names the description (TOML file or
    /// command line) in errors about settings.
    pub fn load(&self, source: &Path) -> Result<(Dataset, RawReport)> {
        // Settings first: a bad setting should not wait for a large file to load.
        self.geometry(source, 2)?;
        let pre = &self.preprocess;
        if pre.bin == 0 {
            return Err(Error::field(
                source,
                "preprocess.bin",
                "expected a binning factor of at least 1",
            ));
        }
        if !(pre.hot_factor.is_finite() && pre.hot_factor > 1.0) {
            return Err(Error::field(
                source,
                "preprocess.hot_factor",
                format!("expected a factor above 1, found {}", pre.hot_factor),
            ));
        }
        if self.frames.as_os_str().is_empty() {
            return Err(Error::field(
                source,
                "frames",
                "missing: expected the TIFF stack of diffraction frames",
            ));
        }
        if self.positions.file.as_os_str().is_empty() {
            return Err(Error::field(
                source,
                "positions.file",
                "missing: expected the positions text file",
            ));
        }
        let stack = tiff_stack::read_stack(&self.frames)?;
        let mut frames = stack.frames;
        let (count, h, w) = frames.dim();
        if count == 0 || h < 2 || w < 2 {
            return Err(Error::field(
                &self.frames,
                "frames",
                format!(
                    "expected at least one frame of at least 2 x 2 px, found {count} x {h} x {w}"
                ),
            ));
        }
        let positions = positions_file::read(&self.positions)?;
        if positions.nrows() != count {
            return Err(Error::field(
                &self.positions.file,
                "positions",
                format!(
                    "found {} positions but {} holds {count} frames; expected one position per frame",
                    positions.nrows(),
                    self.frames.display()
                ),
            ));
        }
        let mut report = RawReport {
            dtype: stack.dtype,
            dtype_max: stack.dtype_max,
            stored_shape: [count, h, w],
            dark_frames: 0,
            dark_mean: None,
            noise_floor: 0.0,
            clipped: 0,
            hot_pixels: 0,
            dead_pixels: 0,
            centre: [h as f64 / 2.0, w as f64 / 2.0],
            crop: h.min(w),
            size: h.min(w),
        };
        let same_shape = |path: &Path, field: &str, shape: (usize, usize)| {
            if shape == (h, w) {
                Ok(())
            } else {
                Err(Error::field(
                    path,
                    field,
                    format!(
                        "expected {h} x {w} px like the frames, found {} x {}",
                        shape.0, shape.1
                    ),
                ))
            }
        };
        if let Some(path) = &self.darks {
            let darks = tiff_stack::read_stack(path)?.frames;
            same_shape(path, "darks", (darks.dim().1, darks.dim().2))?;
            let dark = mean_frame(&darks);
            report.dark_frames = darks.dim().0;
            let values = darks.as_slice().expect("a stack read in standard layout");
            report.noise_floor = noise_floor_of_darks(values, h * w).unwrap_or(0.0);
            report.dark_mean = Some(dark.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64);
            for mut frame in frames.outer_iter_mut() {
                frame -= &dark;
            }
        }
        for v in frames.iter_mut() {
            if *v < 0.0 {
                *v = 0.0;
                report.clipped += 1;
            }
        }
        if let Some(v) = pre.noise_floor {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::field(
                    source,
                    "preprocess.noise_floor",
                    format!("expected a finite variance of at least 0 counts, found {v}"),
                ));
            }
            report.noise_floor = v;
        }
        let mut mask = Array2::from_elem((h, w), true);
        if let Some(path) = &self.flat {
            let flat = tiff_stack::read_image(path)?;
            same_shape(path, "flat", flat.dim())?;
            apply_flat(&mut frames, &mut mask, &flat);
        }
        if let Some(path) = &self.mask {
            let image = tiff_stack::read_image(path)?;
            same_shape(path, "mask", image.dim())?;
            ndarray::Zip::from(&mut mask).and(&image).for_each(|m, &v| {
                *m &= (v != 0.0) != self.mask_zero_is_good;
            });
        }
        if pre.hot_pixels {
            let (hot, dead) = bad_pixels(&frames, &mut mask, pre.hot_factor);
            report.hot_pixels = hot;
            report.dead_pixels = dead;
        }
        if !mask.iter().any(|&m| m) {
            return Err(Error::field(
                self.mask.as_deref().unwrap_or(&self.frames),
                "mask",
                "every pixel is masked",
            ));
        }
        for mut frame in frames.outer_iter_mut() {
            ndarray::Zip::from(&mut frame)
                .and(&mask)
                .for_each(|v, &m| *v = if m { *v } else { 0.0 });
        }
        // Crop.
        let side = pre.crop.unwrap_or(h.min(w));
        if side < 2 || side > h.min(w) {
            return Err(Error::field(
                source,
                "preprocess.crop",
                format!("expected a side from 2 to {} px, found {side}", h.min(w)),
            ));
        }
        let centre = match pre.centre {
            Some(c) => {
                if !(c[0].is_finite() && c[1].is_finite())
                    || c[0] < 0.0
                    || c[1] < 0.0
                    || c[0] >= h as f64
                    || c[1] >= w as f64
                {
                    return Err(Error::field(
                        source,
                        "preprocess.centre",
                        format!("expected (row, col) inside the {h} x {w} frame, found {c:?}"),
                    ));
                }
                c
            }
            None => centre_of_mass(&mean_frame(&frames)),
        };
        let top = ((centre[0] - side as f64 / 2.0).round().max(0.0) as usize).min(h - side);
        let left = ((centre[1] - side as f64 / 2.0).round().max(0.0) as usize).min(w - side);
        report.centre = centre;
        report.crop = side;
        let mut frames = frames
            .slice(s![.., top..top + side, left..left + side])
            .to_owned();
        let mut mask = mask
            .slice(s![top..top + side, left..left + side])
            .to_owned();
        // Bin.
        let bin = pre.bin;
        let binned_side = side / bin;
        if binned_side < 2 {
            return Err(Error::field(
                source,
                "preprocess.bin",
                format!("binning {side} px by {bin} leaves fewer than 2 px"),
            ));
        }
        if bin > 1 {
            (frames, mask) = bin_frames(&frames, &mask, bin);
            // A binned pixel sums bin^2 pixels' independent noise.
            report.noise_floor *= (bin * bin) as f64;
        }
        let mut pixel = self.geometry.detector_pixel * bin as f64;
        // Resample.
        let size = pre.size.unwrap_or(binned_side);
        if size < 2 {
            return Err(Error::field(
                source,
                "preprocess.size",
                format!("expected a frame side of at least 2 px, found {size}"),
            ));
        }
        if size != binned_side {
            (frames, mask) = resample(&frames, &mask, size);
            pixel *= binned_side as f64 / size as f64;
            // Per axis, an output pixel r input pixels wide adds about r whole pixels (r >= 1)
            // or a fraction r of one (r < 1): its noise variance is about r or r^2 times theirs.
            let r = binned_side as f64 / size as f64;
            report.noise_floor *= if r >= 1.0 { r * r } else { r.powi(4) };
        }
        // Binned and resampled pixels that touch a masked pixel hold partial sums: clear them.
        for mut frame in frames.outer_iter_mut() {
            ndarray::Zip::from(&mut frame)
                .and(&mask)
                .for_each(|v, &m| *v = if m { *v } else { 0.0 });
        }
        report.size = size;
        let mut geometry = self.geometry(source, size)?;
        geometry.detector_pixel = pixel;
        let data = Dataset {
            intensities: frames,
            mask,
            positions,
            geometry,
            noise_floor: report.noise_floor,
        };
        data.validate(&self.frames.display().to_string())?;
        Ok((data, report))
    }
}

/// Divides by the flat field normalised to mean 1 over its pixels above 5 % of its median;
/// the others are masked.
fn apply_flat(frames: &mut Array3<f32>, mask: &mut Array2<bool>, flat: &Array2<f32>) {
    let mut sorted: Vec<f32> = flat.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let floor = 0.05 * median;
    let good: Vec<f64> = flat
        .iter()
        .filter(|v| v.is_finite() && **v > floor)
        .map(|&v| v as f64)
        .collect();
    let mean = good.iter().sum::<f64>() / good.len().max(1) as f64;
    let gain = flat.mapv(|v| {
        if v.is_finite() && v > floor && mean > 0.0 {
            (v as f64 / mean) as f32
        } else {
            0.0
        }
    });
    ndarray::Zip::from(&mut *mask)
        .and(&gain)
        .for_each(|m, &g| *m &= g > 0.0);
    for mut frame in frames.outer_iter_mut() {
        ndarray::Zip::from(&mut frame)
            .and(&gain)
            .for_each(|v, &g| *v = if g > 0.0 { *v / g } else { 0.0 });
    }
}

/// Masks hot and dead pixels (module docs, step 5); returns how many of each.
fn bad_pixels(frames: &Array3<f32>, mask: &mut Array2<bool>, factor: f64) -> (usize, usize) {
    let mean = mean_frame(frames);
    let (h, w) = mean.dim();
    let mut hot = Vec::new();
    let mut dead = Vec::new();
    for r in 0..h {
        for c in 0..w {
            if !mask[[r, c]] {
                continue;
            }
            let mut neighbours: Vec<f32> = Vec::with_capacity(8);
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    if (dr, dc) != (0, 0)
                        && (0..h as i64).contains(&rr)
                        && (0..w as i64).contains(&cc)
                        && mask[[rr as usize, cc as usize]]
                    {
                        neighbours.push(mean[[rr as usize, cc as usize]]);
                    }
                }
            }
            if neighbours.is_empty() {
                continue;
            }
            neighbours.sort_by(f32::total_cmp);
            let median = neighbours[neighbours.len() / 2] as f64;
            let v = mean[[r, c]] as f64;
            if v > factor * median + factor {
                hot.push((r, c));
            } else if median > 1.0 && frames.slice(s![.., r, c]).iter().all(|&x| x == 0.0) {
                dead.push((r, c));
            }
        }
    }
    for &(r, c) in hot.iter().chain(&dead) {
        mask[[r, c]] = false;
    }
    (hot.len(), dead.len())
}

/// Centre of mass (row, col) of an image (non-negative values); the middle when it is empty.
fn centre_of_mass(image: &Array2<f32>) -> [f64; 2] {
    let (mut total, mut sr, mut sc) = (0.0f64, 0.0f64, 0.0f64);
    for ((r, c), &v) in image.indexed_iter() {
        let v = v.max(0.0) as f64;
        total += v;
        sr += v * r as f64;
        sc += v * c as f64;
    }
    let (h, w) = image.dim();
    if total > 0.0 {
        [sr / total + 0.5, sc / total + 0.5]
    } else {
        [h as f64 / 2.0, w as f64 / 2.0]
    }
}

/// Sums `bin x bin` blocks; a block with any masked pixel is masked.
fn bin_frames(
    frames: &Array3<f32>,
    mask: &Array2<bool>,
    bin: usize,
) -> (Array3<f32>, Array2<bool>) {
    let (count, side, _) = frames.dim();
    let n = side / bin;
    let mut out = Array3::<f32>::zeros((count, n, n));
    for (mut o, f) in out.outer_iter_mut().zip(frames.outer_iter()) {
        for r in 0..n * bin {
            for c in 0..n * bin {
                o[[r / bin, c / bin]] += f[[r, c]];
            }
        }
    }
    let binned = Array2::from_shape_fn((n, n), |(r, c)| {
        mask.slice(s![r * bin..(r + 1) * bin, c * bin..(c + 1) * bin])
            .iter()
            .all(|&m| m)
    });
    (out, binned)
}

/// Overlap weights (m x n) of m output pixels over n input pixels on the same extent.
fn overlap_weights(n: usize, m: usize) -> Array2<f64> {
    let f = n as f64 / m as f64;
    Array2::from_shape_fn((m, n), |(u, k)| {
        let (a, b) = (u as f64 * f, (u + 1) as f64 * f);
        let (lo, hi) = (a.max(k as f64), b.min((k + 1) as f64));
        (hi - lo).max(0.0)
    })
}

/// Resamples square frames to `size` by area overlap (counts conserved).
fn resample(frames: &Array3<f32>, mask: &Array2<bool>, size: usize) -> (Array3<f32>, Array2<bool>) {
    let n = frames.dim().1;
    let wts = overlap_weights(n, size);
    let out = Array3::from_shape_fn((frames.dim().0, size, size), |_| 0.0f32);
    let mut out = out;
    for (mut o, f) in out.outer_iter_mut().zip(frames.outer_iter()) {
        let f64s = f.mapv(|v| v as f64);
        let r = wts.dot(&f64s).dot(&wts.t());
        o.assign(&r.mapv(|v| v as f32));
    }
    let bad = mask.mapv(|m| if m { 0.0 } else { 1.0 });
    let touched = wts.dot(&bad).dot(&wts.t());
    let new_mask = touched.mapv(|v| v <= 1e-12);
    (out, new_mask)
}

/// A raw input for command-line use, with the frames and positions given.
pub fn from_paths(frames: PathBuf, positions: PathBuf) -> RawInput {
    RawInput {
        frames,
        positions: PositionsFile {
            file: positions,
            ..PositionsFile::default()
        },
        ..RawInput::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_and_resampling_conserve_counts() {
        let frames = Array3::from_shape_fn((2, 12, 12), |(k, r, c)| (k + r * 12 + c) as f32);
        let mut mask = Array2::from_elem((12, 12), true);
        mask[[5, 7]] = false;
        let (b, bm) = bin_frames(&frames, &mask, 3);
        assert_eq!(b.dim(), (2, 4, 4));
        assert!((b.sum() - frames.sum()).abs() < 1e-3);
        assert!(!bm[[1, 2]] && bm.iter().filter(|&&m| !m).count() == 1);
        let (r, rm) = resample(&frames, &mask, 8);
        assert!((r.sum() / frames.sum() - 1.0).abs() < 1e-5);
        // Output pixel (3, 4) spans input rows 4.5..6 and cols 6..7.5: it overlaps (5, 7).
        assert!(!rm[[3, 4]] && rm[[0, 0]]);
        let (up, _) = resample(&frames, &mask, 24);
        assert!((up.sum() - frames.sum()).abs() < 1e-2);
        assert!((up[[0, 0, 0]] - frames[[0, 0, 0]] / 4.0).abs() < 1e-5);
    }

    #[test]
    fn hot_and_dead_pixels_are_found() {
        let mut frames = Array3::from_elem((4, 10, 10), 20.0f32);
        frames.slice_mut(s![.., 3, 4]).fill(5000.0);
        frames.slice_mut(s![.., 6, 6]).fill(0.0);
        let mut mask = Array2::from_elem((10, 10), true);
        assert_eq!(bad_pixels(&frames, &mut mask, 10.0), (1, 1));
        assert!(!mask[[3, 4]] && !mask[[6, 6]]);
        assert_eq!(mask.iter().filter(|&&m| !m).count(), 2);
    }

    #[test]
    fn centre_of_mass_of_a_spot() {
        let mut img = Array2::<f32>::zeros((20, 30));
        img[[4, 10]] = 1.0;
        img[[6, 10]] = 1.0;
        assert_eq!(centre_of_mass(&img), [5.5, 10.5]);
    }
}
