//! The test images the simulator builds phantoms from, embedded in the binary so that it works
//! from any folder, and their resampling to the size a phantom needs.
//!
//! Images are 8-bit greyscale PNGs (see `assets/images/README.md`), decoded once and converted to
//! f32 in [0, 1], stored `[row, col]`. Resampling first crops the centre of the image to the
//! target aspect ratio, then resamples each axis separately: area averaging when shrinking (each
//! output pixel is the mean of the input area it covers, so no aliasing), linear interpolation
//! when enlarging.

use crate::error::{Error, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// One of the embedded test images, or a uniform (featureless) one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Picture {
    /// NASA portrait of an astronaut, 512 x 512.
    Astronaut,
    /// The "camera" test image, 512 x 512.
    Camera,
    /// Chelsea the cat, 300 x 451 (rows x cols).
    Chelsea,
    /// A cup of coffee, 400 x 600.
    Coffee,
    /// A constant image: no structure.
    Uniform,
}

impl Picture {
    /// Every embedded picture (not `Uniform`).
    pub const EMBEDDED: [Picture; 4] = [
        Picture::Astronaut,
        Picture::Camera,
        Picture::Chelsea,
        Picture::Coffee,
    ];

    fn png(self) -> Option<&'static [u8]> {
        match self {
            Picture::Astronaut => Some(include_bytes!("../../../../assets/images/astronaut.png")),
            Picture::Camera => Some(include_bytes!("../../../../assets/images/camera.png")),
            Picture::Chelsea => Some(include_bytes!("../../../../assets/images/chelsea.png")),
            Picture::Coffee => Some(include_bytes!("../../../../assets/images/coffee.png")),
            Picture::Uniform => None,
        }
    }

    fn slot(self) -> &'static OnceLock<Array2<f32>> {
        static CACHE: [OnceLock<Array2<f32>>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let i = Picture::EMBEDDED
            .iter()
            .position(|&p| p == self)
            .unwrap_or(0);
        &CACHE[i]
    }

    /// The picture at its own size, grey values in [0, 1]; `Uniform` is a 1 x 1 image of 1.
    pub fn pixels(self) -> Result<Array2<f32>> {
        let Some(bytes) = self.png() else {
            return Ok(Array2::ones((1, 1)));
        };
        if let Some(img) = self.slot().get() {
            return Ok(img.clone());
        }
        let img = decode_grey(bytes)
            .map_err(|e| Error::invalid(format!("embedded image {self:?}"), format!("{e}")))?;
        Ok(self.slot().get_or_init(|| img).clone())
    }

    /// The picture resampled to `rows x cols`, grey values in [0, 1].
    pub fn resampled(self, rows: usize, cols: usize) -> Result<Array2<f32>> {
        self.middle_resampled(1.0, rows, cols)
    }

    /// The centred `fraction` (0 to 1] of each side of the picture, resampled to `rows x cols`.
    pub fn middle_resampled(self, fraction: f64, rows: usize, cols: usize) -> Result<Array2<f32>> {
        if self == Picture::Uniform {
            return Ok(Array2::ones((rows, cols)));
        }
        let img = self.pixels()?;
        if fraction >= 1.0 {
            return Ok(resample(&img, rows, cols));
        }
        let (h, w) = img.dim();
        let (ch, cw) = (
            ((h as f64 * fraction).round() as usize).clamp(1, h),
            ((w as f64 * fraction).round() as usize).clamp(1, w),
        );
        let (r0, c0) = ((h - ch) / 2, (w - cw) / 2);
        Ok(resample(
            &img.slice(ndarray::s![r0..r0 + ch, c0..c0 + cw]).to_owned(),
            rows,
            cols,
        ))
    }
}

/// Decodes PNG bytes to grey values in [0, 1].
fn decode_grey(bytes: &[u8]) -> std::result::Result<Array2<f32>, image::ImageError> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)?.to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = img
        .into_raw()
        .into_iter()
        .map(|v| v as f32 / 255.0)
        .collect();
    Ok(Array2::from_shape_vec((h, w), data).expect("luma buffer holds width x height values"))
}

/// Crops the centre of `img` to the aspect ratio `rows : cols`, then resamples to that size.
pub fn resample(img: &Array2<f32>, rows: usize, cols: usize) -> Array2<f32> {
    assert!(rows > 0 && cols > 0, "target size must be positive");
    let (h, w) = img.dim();
    // Largest centred window with the target aspect ratio.
    let (ch, cw) = if h * cols > w * rows {
        (
            ((w * rows) as f64 / cols as f64).round().max(1.0) as usize,
            w,
        )
    } else {
        (
            h,
            ((h * cols) as f64 / rows as f64).round().max(1.0) as usize,
        )
    };
    let (r0, c0) = ((h - ch) / 2, (w - cw) / 2);
    let cropped = img.slice(ndarray::s![r0..r0 + ch, c0..c0 + cw]);
    let wy = axis_weights(ch, rows);
    let wx = axis_weights(cw, cols);
    // Columns first (each row independently), then rows.
    let mut tmp = Array2::<f32>::zeros((ch, cols));
    for (src, mut dst) in cropped.rows().into_iter().zip(tmp.rows_mut()) {
        for (d, taps) in dst.iter_mut().zip(&wx) {
            *d = taps.iter().map(|&(i, t)| src[i] * t).sum();
        }
    }
    let mut out = Array2::<f32>::zeros((rows, cols));
    for (r, taps) in wy.iter().enumerate() {
        let mut dst = out.row_mut(r);
        for &(i, t) in taps {
            dst.scaled_add(t, &tmp.row(i));
        }
    }
    out
}

/// Resampling weights from `src` samples to `dst` samples along one axis: for each output
/// sample, the (input index, weight) pairs, weights summing to 1.
fn axis_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            if dst < src {
                // Area average over the input interval [i s, (i + 1) s).
                let (a, b) = (i as f64 * scale, (i + 1) as f64 * scale);
                let mut taps = Vec::new();
                let mut k = a.floor() as usize;
                while (k as f64) < b && k < src {
                    let overlap = (b.min(k as f64 + 1.0) - a.max(k as f64)).max(0.0);
                    if overlap > 0.0 {
                        taps.push((k, (overlap / scale) as f32));
                    }
                    k += 1;
                }
                taps
            } else {
                // Linear interpolation at the input coordinate of the output pixel centre.
                let x = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f64);
                let k = (x.floor() as usize).min(src - 1);
                let t = x - k as f64;
                if k + 1 < src && t > 0.0 {
                    vec![(k, (1.0 - t) as f32), (k + 1, t as f32)]
                } else {
                    vec![(k, 1.0)]
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_images_decode_with_their_sizes_and_range() {
        let sizes = [(512, 512), (512, 512), (300, 451), (400, 600)];
        for (p, size) in Picture::EMBEDDED.iter().zip(sizes) {
            let img = p.pixels().unwrap();
            assert_eq!(img.dim(), size, "{p:?}");
            let (lo, hi) = img
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            assert!(
                lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5,
                "{p:?}: [{lo}, {hi}]"
            );
        }
    }

    #[test]
    fn area_average_halves_exactly() {
        let img = Array2::from_shape_fn((4, 6), |(r, c)| (r * 6 + c) as f32);
        let out = resample(&img, 2, 3);
        // Mean of each 2 x 2 block.
        for r in 0..2 {
            for c in 0..3 {
                let want = (img[[2 * r, 2 * c]]
                    + img[[2 * r, 2 * c + 1]]
                    + img[[2 * r + 1, 2 * c]]
                    + img[[2 * r + 1, 2 * c + 1]])
                    / 4.0;
                assert!((out[[r, c]] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn fractional_area_average_preserves_the_mean() {
        let img = Array2::from_shape_fn((30, 30), |(r, c)| ((r * 7 + c * 3) % 11) as f32);
        let out = resample(&img, 7, 7);
        let mean_in = img.mean().unwrap();
        let mean_out = out.mean().unwrap();
        assert!((mean_in - mean_out).abs() < 1e-4 * mean_in);
    }

    #[test]
    fn upsampling_keeps_a_linear_ramp_linear() {
        let img = Array2::from_shape_fn((8, 8), |(_, c)| c as f32);
        let out = resample(&img, 16, 16);
        // Output column j sits at input coordinate (j + 0.5) / 2 - 0.5 (clamped at the edges).
        for j in 1..15 {
            let want = (j as f32 + 0.5) / 2.0 - 0.5;
            assert!(
                (out[[5, j]] - want).abs() < 1e-5,
                "col {j}: {}",
                out[[5, j]]
            );
        }
    }

    #[test]
    fn aspect_crop_takes_the_centre() {
        // A 4 x 8 image whose central 4 x 4 block is 1, the rest 0: a square target sees only 1.
        let img =
            Array2::from_shape_fn((4, 8), |(_, c)| if (2..6).contains(&c) { 1.0 } else { 0.0 });
        let out = resample(&img, 4, 4);
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        let cat = Picture::Chelsea.resampled(64, 64).unwrap();
        assert_eq!(cat.dim(), (64, 64));
    }
}
