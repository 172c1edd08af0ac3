//! Arrays to RGB images and PNG files.
//!
//! Image pixel (x, y) is array element `[row = y, col = x]`, so an image looks like the array
//! printed row by row. Small arrays are enlarged by an integer factor (nearest neighbour) when
//! saved through the `save_*_png` helpers so that e.g. a 64 x 64 probe is drawn at 4x.

use super::colormap::{complex_colour, Colormap};
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;
use image::{Rgb, RgbImage};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use std::f32::consts::PI;
use std::path::Path;

/// Lower and upper percentiles used for the automatic display range.
pub const AUTO_RANGE_PERCENTILES: (f64, f64) = (0.5, 99.5);

/// Images whose larger side is below this many pixels are enlarged by the `save_*_png` helpers.
pub const MIN_SAVED_SIDE: usize = 256;

/// The `p`-th percentile (0-100) of the finite values, by nearest rank; None if there are none.
pub fn percentile(values: impl IntoIterator<Item = f32>, p: f64) -> Option<f32> {
    let mut v: Vec<f32> = values.into_iter().filter(|x| x.is_finite()).collect();
    percentile_in_place(&mut v, p)
}

fn percentile_in_place(v: &mut [f32], p: f64) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(rank, |a, b| a.total_cmp(b));
    Some(*x)
}

/// Robust display range: the 0.5th and 99.5th percentiles of the finite values, so that a few
/// hot pixels do not wash out the image. (0, 1) when no value is finite.
pub fn robust_range(values: ArrayView2<f32>) -> (f32, f32) {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let lo = percentile_in_place(&mut v, AUTO_RANGE_PERCENTILES.0);
    let hi = percentile_in_place(&mut v, AUTO_RANGE_PERCENTILES.1);
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (0.0, 1.0),
    }
}

/// Maps a real array to colours: `range = (lo, hi)` maps lo to the start of the colour map and
/// hi to its end, values outside are clamped; `None` picks `robust_range`. NaN is drawn black.
/// A degenerate range (hi <= lo, e.g. a constant image) draws every finite value at mid-scale.
pub fn real_to_rgb(values: ArrayView2<f32>, map: Colormap, range: Option<(f32, f32)>) -> RgbImage {
    let (lo, hi) = range.unwrap_or_else(|| robust_range(values));
    let span = hi - lo;
    let degenerate = !(span.is_finite() && span > 0.0);
    let (rows, cols) = values.dim();
    RgbImage::from_fn(cols as u32, rows as u32, |x, y| {
        let v = values[[y as usize, x as usize]];
        if v.is_nan() {
            return Rgb([0, 0, 0]);
        }
        let t = if degenerate { 0.5 } else { (v - lo) / span };
        Rgb(map.rgb(t))
    })
}

/// Grey image of |z| with the robust automatic range.
pub fn magnitude_image(z: &Array2<Complex32>) -> RgbImage {
    let mag = z.mapv(|c| c.norm());
    real_to_rgb(mag.view(), Colormap::Grey, None)
}

/// Cyclic-map image of arg z over the fixed range [-pi, pi].
pub fn phase_image(z: &Array2<Complex32>) -> RgbImage {
    let phase = z.mapv(|c| if c.is_nan() { f32::NAN } else { c.arg() });
    real_to_rgb(phase.view(), Colormap::Cyclic, Some((-PI, PI)))
}

/// Domain colouring of z: hue = phase, brightness = |z| divided by its 99.5th percentile.
pub fn complex_image(z: &Array2<Complex32>) -> RgbImage {
    let mag = z.mapv(|c| c.norm());
    let max = percentile(mag.iter().copied(), AUTO_RANGE_PERCENTILES.1).unwrap_or(0.0);
    let (rows, cols) = z.dim();
    RgbImage::from_fn(cols as u32, rows as u32, |x, y| {
        let c = z[[y as usize, x as usize]];
        Rgb(complex_colour(c.norm(), c.arg(), max))
    })
}

/// Enlarges `img` by the integer `factor` (each pixel becomes a factor x factor block).
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let factor = factor.max(1);
    if factor == 1 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w * factor, h * factor, |x, y| {
        *img.get_pixel(x / factor, y / factor)
    })
}

/// Integer enlargement used for saving: `MIN_SAVED_SIDE / max(rows, cols)`, at least 1
/// (64 x 64 gives 4, anything of 256 or more pixels gives 1).
pub fn auto_scale(rows: usize, cols: usize) -> u32 {
    let side = rows.max(cols).max(1);
    (MIN_SAVED_SIDE / side).max(1) as u32
}

/// Encodes `img` as PNG in memory (e.g. for embedding as base64 in HTML).
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::invalid(
            "PNG image",
            format!("size {} x {} has no pixels", img.width(), img.height()),
        ));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::invalid("PNG image", e.to_string()))?;
    Ok(out.into_inner())
}

/// Writes `img` to `path` as PNG, atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let bytes = png_bytes(img).map_err(|e| match e {
        Error::Invalid { problem, .. } => {
            Error::invalid(format!("PNG image {}", path.display()), problem)
        }
        other => other,
    })?;
    write_bytes_atomic(path, &bytes)
}

fn save_scaled(path: &Path, img: RgbImage) -> Result<()> {
    let factor = auto_scale(img.height() as usize, img.width() as usize);
    save_png(path, &upscale(&img, factor))
}

/// Saves |z| in grey (robust range), enlarged by `auto_scale` when small.
pub fn save_magnitude_png(path: &Path, z: &Array2<Complex32>) -> Result<()> {
    save_scaled(path, magnitude_image(z))
}

/// Saves arg z on the cyclic map over [-pi, pi], enlarged by `auto_scale` when small.
pub fn save_phase_png(path: &Path, z: &Array2<Complex32>) -> Result<()> {
    save_scaled(path, phase_image(z))
}

/// Saves the domain colouring of z, enlarged by `auto_scale` when small.
pub fn save_complex_png(path: &Path, z: &Array2<Complex32>) -> Result<()> {
    save_scaled(path, complex_image(z))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ramp_gives_monotone_grey_with_full_range() {
        let ramp = Array2::from_shape_fn((3, 100), |(_, c)| c as f32 * 0.01);
        let img = real_to_rgb(ramp.view(), Colormap::Grey, Some((0.0, 0.99)));
        assert_eq!(img.dimensions(), (100, 3));
        assert_eq!(img.get_pixel(0, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(99, 1).0, [255, 255, 255]);
        for x in 1..100 {
            assert!(img.get_pixel(x, 2).0[0] > img.get_pixel(x - 1, 2).0[0]);
        }
    }

    #[test]
    fn auto_range_ignores_hot_pixels_and_nan_is_black() {
        let mut a = Array2::from_shape_fn((40, 50), |(r, c)| ((r * 50 + c) % 100) as f32);
        a[[0, 0]] = 1e9; // one hot pixel
        a[[1, 1]] = f32::NAN;
        let (lo, hi) = robust_range(a.view());
        assert_eq!(lo, 0.0);
        assert!((98.0..=99.0).contains(&hi), "hi = {hi}");
        let img = real_to_rgb(a.view(), Colormap::Grey, None);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        // value 49 at (row 0, col 49) is drawn near mid-grey
        let g = img.get_pixel(49, 0).0[0];
        assert!((124..=130).contains(&g), "grey {g}");
    }

    #[test]
    fn constant_and_all_nan_images_do_not_fail() {
        let c = Array2::from_elem((4, 4), 2.5f32);
        let img = real_to_rgb(c.view(), Colormap::Viridis, None);
        assert_eq!(img.get_pixel(2, 2).0, Colormap::Viridis.rgb(0.5));
        let n = Array2::from_elem((4, 4), f32::NAN);
        let img = real_to_rgb(n.view(), Colormap::Grey, None);
        assert!(img.pixels().all(|p| p.0 == [0, 0, 0]));
        let bad = real_to_rgb(c.view(), Colormap::Grey, Some((3.0, 1.0)));
        assert_eq!(bad.get_pixel(0, 0).0, [128, 128, 128]);
    }

    #[test]
    fn saved_png_decodes_to_same_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ramp.png");
        let ramp = Array2::from_shape_fn((7, 300), |(r, c)| (r * 300 + c) as f32);
        let img = real_to_rgb(ramp.view(), Colormap::Viridis, Some((0.0, 2099.0)));
        save_png(&path, &img).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (300, 7));
        assert_eq!(back.as_raw(), img.as_raw());
        assert_eq!(back.get_pixel(299, 6).0, [253, 231, 37]);
        // only the final file is left in the folder
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn complex_helpers_save_upscaled_images() {
        let dir = tempfile::tempdir().unwrap();
        let z = Array2::from_shape_fn((64, 64), |(r, c)| {
            Complex32::from_polar(1.0 + r as f32 / 64.0, (c as f32 / 64.0 - 0.5) * 2.0 * PI)
        });
        let (pm, pp, pc) = (
            dir.path().join("m.png"),
            dir.path().join("p.png"),
            dir.path().join("c.png"),
        );
        save_magnitude_png(&pm, &z).unwrap();
        save_phase_png(&pp, &z).unwrap();
        save_complex_png(&pc, &z).unwrap();
        let m = image::open(&pm).unwrap().to_rgb8();
        assert_eq!(m.dimensions(), (256, 256));
        // magnitude rises down the rows: top black, bottom white, 4x4 blocks
        assert_eq!(m.get_pixel(10, 0).0, [0, 0, 0]);
        assert_eq!(m.get_pixel(10, 255).0, [255, 255, 255]);
        assert_eq!(m.get_pixel(0, 100), m.get_pixel(3, 103));
        let p = image::open(&pp).unwrap().to_rgb8();
        assert_eq!(p.get_pixel(0, 0).0, Colormap::phase_rgb(-PI));
        let c = image::open(&pc).unwrap().to_rgb8();
        assert_eq!(c.dimensions(), (256, 256));
        // phase near -pi on the left: red hue
        let left = c.get_pixel(0, 255).0;
        assert!(left[0] > 240 && left[1] < 10 && left[2] < 10, "{left:?}");
    }

    #[test]
    fn empty_image_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let e = save_png(&dir.path().join("e.png"), &RgbImage::new(0, 0)).unwrap_err();
        assert!(e.to_string().contains("e.png"), "{e}");
        assert_eq!(auto_scale(64, 64), 4);
        assert_eq!(auto_scale(0, 0), 256);
        assert_eq!(auto_scale(1000, 10), 1);
    }
}
