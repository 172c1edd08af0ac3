//! The object phantom: a complex transmission `O = m exp(i phi)` built from two pictures.
//!
//! The magnitude picture is mapped linearly from its own [min, max] to [a, 1] (a = smallest
//! transmission) and the phase picture to [-p, p] rad. The outer band of the object (half the
//! scan margin, never reached by a probe window) is blended to free space (m = 1, phi = 0) with
//! a raised cosine, so that the object's periodic extension, which the exact sub-pixel sampler
//! assumes, has no seam. Magnitude and phase are blended separately, so the ranges hold.

use super::config::ObjectConfig;
use super::image::Picture;
use crate::error::Result;
use ndarray::Array2;
use num_complex::Complex32;

/// Builds the object of `rows x cols` px, tapered to free space over the outer `taper` px.
pub fn build_object(
    cfg: &ObjectConfig,
    rows: usize,
    cols: usize,
    taper: f64,
) -> Result<Array2<Complex32>> {
    let f = cfg.picture_fraction;
    let mag = mapped_crop(cfg.magnitude_image, f, rows, cols, cfg.magnitude_min, 1.0)?;
    let phase = mapped_crop(
        cfg.phase_image,
        f,
        rows,
        cols,
        -cfg.phase_range,
        cfg.phase_range,
    )?;
    Ok(Array2::from_shape_fn((rows, cols), |(r, c)| {
        let w = edge_weight(r, c, rows, cols, taper);
        let m = 1.0 + w * (mag[[r, c]] - 1.0);
        let p = w * phase[[r, c]];
        Complex32::from_polar(m, p)
    }))
}

/// The picture resampled to `rows x cols` and mapped linearly from its [min, max] to [lo, hi];
/// a featureless picture maps to `hi` for a magnitude-like range and to 0 for a symmetric one.
pub fn mapped(pic: Picture, rows: usize, cols: usize, lo: f64, hi: f64) -> Result<Array2<f32>> {
    mapped_crop(pic, 1.0, rows, cols, lo, hi)
}

/// [`mapped`] from the centred crop of `fraction` (0 to 1] of each side of the picture.
pub fn mapped_crop(
    pic: Picture,
    fraction: f64,
    rows: usize,
    cols: usize,
    lo: f64,
    hi: f64,
) -> Result<Array2<f32>> {
    let img = pic.middle_resampled(fraction, rows, cols)?;
    let (min, max) = img
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let flat = if lo == -hi { 0.0 } else { hi };
    if max - min < 1e-6 {
        return Ok(Array2::from_elem((rows, cols), flat as f32));
    }
    let (min, span) = (min as f64, (max - min) as f64);
    Ok(img.mapv(|v| (lo + (hi - lo) * ((v as f64 - min) / span)) as f32))
}

/// Raised-cosine weight: 0 on the object's border, 1 from `taper` px inwards.
fn edge_weight(r: usize, c: usize, rows: usize, cols: usize, taper: f64) -> f32 {
    if taper <= 0.0 {
        return 1.0;
    }
    let d = r.min(rows - 1 - r).min(c).min(cols - 1 - c) as f64;
    if d >= taper {
        1.0
    } else {
        (0.5 * (1.0 - (std::f64::consts::PI * d / taper).cos())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ObjectConfig {
        ObjectConfig {
            magnitude_image: Picture::Camera,
            phase_image: Picture::Coffee,
            magnitude_min: 0.5,
            phase_range: 1.0,
            size: None,
            picture_fraction: 1.0,
        }
    }

    #[test]
    fn magnitude_and_phase_ranges() {
        let obj = build_object(&cfg(), 300, 260, 8.0).unwrap();
        assert_eq!(obj.dim(), (300, 260));
        let mags: Vec<f32> = obj.iter().map(|v| v.norm()).collect();
        let phases: Vec<f32> = obj.iter().map(|v| v.arg()).collect();
        let (mlo, mhi) = mags
            .iter()
            .fold((9f32, -9f32), |(a, b), &v| (a.min(v), b.max(v)));
        let (plo, phi) = phases
            .iter()
            .fold((9f32, -9f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert!((0.5 - 1e-5..0.52).contains(&mlo), "magnitude min {mlo}");
        assert!(mhi <= 1.0 + 1e-5 && mhi > 0.98, "magnitude max {mhi}");
        assert!((-1.0 - 1e-5..-0.95).contains(&plo), "phase min {plo}");
        assert!(phi <= 1.0 + 1e-5 && phi > 0.95, "phase max {phi}");
    }

    #[test]
    fn picture_fraction_cuts_the_middle_at_the_detail_of_the_whole() {
        // The camera picture is 512 x 512: its middle 128 x 128 at 1/4 of the size it would
        // have at fraction 1.
        let whole = mapped(Picture::Camera, 512, 512, 0.0, 1.0).unwrap();
        let middle = mapped_crop(Picture::Camera, 0.25, 128, 128, 0.0, 1.0).unwrap();
        let cut = whole.slice(ndarray::s![192..320, 192..320]);
        let (lo, hi) = cut
            .iter()
            .fold((9f32, -9f32), |(a, b), &v| (a.min(v), b.max(v)));
        // Each is mapped from its own range to [0, 1].
        for (m, c) in middle.iter().zip(cut.iter()) {
            assert!((m - (c - lo) / (hi - lo)).abs() < 1e-5, "{m} vs {c}");
        }
        // A featureless picture stays featureless at any fraction.
        let flat = mapped_crop(Picture::Uniform, 0.5, 8, 6, 0.5, 1.0).unwrap();
        assert_eq!(flat, Array2::from_elem((8, 6), 1.0f32));
    }

    #[test]
    fn border_is_free_space_and_interior_untouched() {
        let obj = build_object(&cfg(), 100, 100, 8.0).unwrap();
        for i in 0..100 {
            for v in [obj[[0, i]], obj[[99, i]], obj[[i, 0]], obj[[i, 99]]] {
                assert!((v - Complex32::new(1.0, 0.0)).norm() < 1e-6);
            }
        }
        let plain = build_object(&cfg(), 100, 100, 0.0).unwrap();
        assert_eq!(obj[[50, 50]], plain[[50, 50]]);
        assert_eq!(obj[[8, 40]], plain[[8, 40]]);
        assert_ne!(obj[[4, 40]], plain[[4, 40]]);
    }

    #[test]
    fn uniform_pictures_give_free_space() {
        let mut c = cfg();
        c.magnitude_image = Picture::Uniform;
        c.phase_image = Picture::Uniform;
        let obj = build_object(&c, 20, 20, 0.0).unwrap();
        assert!(obj
            .iter()
            .all(|v| (v - Complex32::new(1.0, 0.0)).norm() < 1e-6));
    }
}
