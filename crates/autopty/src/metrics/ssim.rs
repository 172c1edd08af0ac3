//! Structural similarity (SSIM) of Wang, Bovik, Sheikh & Simoncelli (2004).
//!
//! Local statistics are Gaussian-weighted (sigma 1.5 px, an 11 x 11 window: the kernel is
//! truncated at 5 px = 3.5 sigma), with population (not sample) variances, and the image edge
//! mirrored (`d c b a | a b c d | d c b a`, scipy's `reflect` mode). With `L` the data range,
//! `C1 = (0.01 L)^2` and `C2 = (0.03 L)^2`, the SSIM map is
//!
//! ```text
//! SSIM = (2 mu_x mu_y + C1) (2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (var_x + var_y + C2))
//! ```
//!
//! and the score is the map's mean over a region mask. These choices equal scikit-image's
//! `structural_similarity(x, y, data_range=L, gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False)`, whose mean is taken over the image less a 5 px border.

use crate::error::{Error, Result};
use ndarray::{Array2, Zip};

/// Standard deviation of the Gaussian window (px).
pub const SSIM_SIGMA: f64 = 1.5;
/// Half-width of the Gaussian window (px): the window is `2 r + 1 = 11` px wide.
pub const SSIM_RADIUS: usize = 5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// The SSIM map of `x` against `y` (same shape) for the data range `data_range` (the span of
/// values the images can take, e.g. max - min of the reference).
pub fn ssim_map(x: &Array2<f64>, y: &Array2<f64>, data_range: f64) -> Result<Array2<f64>> {
    if x.dim() != y.dim() {
        return Err(Error::invalid(
            "SSIM images",
            format!("shapes differ: {:?} vs {:?}", x.dim(), y.dim()),
        ));
    }
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(Error::invalid(
            "SSIM data range",
            format!("expected a finite positive number, got {data_range}"),
        ));
    }
    if x.is_empty() {
        return Err(Error::invalid("SSIM images", "the images are empty"));
    }
    let c1 = (K1 * data_range).powi(2);
    let c2 = (K2 * data_range).powi(2);
    let mu_x = gaussian_blur(x);
    let mu_y = gaussian_blur(y);
    let xx = gaussian_blur(&(x * x));
    let yy = gaussian_blur(&(y * y));
    let xy = gaussian_blur(&(x * y));
    let mut map = Array2::<f64>::zeros(x.dim());
    Zip::from(&mut map)
        .and(&mu_x)
        .and(&mu_y)
        .and(&xx)
        .and(&yy)
        .and(&xy)
        .for_each(|s, &mx, &my, &sxx, &syy, &sxy| {
            let var_x = sxx - mx * mx;
            let var_y = syy - my * my;
            let cov = sxy - mx * my;
            *s = (2.0 * mx * my + c1) * (2.0 * cov + c2)
                / ((mx * mx + my * my + c1) * (var_x + var_y + c2));
        });
    Ok(map)
}

/// Mean SSIM of `x` against `y` over the pixels where `region` is true.
pub fn ssim(
    x: &Array2<f64>,
    y: &Array2<f64>,
    region: &Array2<bool>,
    data_range: f64,
) -> Result<f64> {
    if region.dim() != x.dim() {
        return Err(Error::invalid(
            "SSIM region",
            format!(
                "shape {:?} differs from the images' {:?}",
                region.dim(),
                x.dim()
            ),
        ));
    }
    let map = ssim_map(x, y, data_range)?;
    let (sum, count) = Zip::from(&map)
        .and(region)
        .fold((0.0f64, 0usize), |(s, n), &v, &inside| {
            if inside {
                (s + v, n + 1)
            } else {
                (s, n)
            }
        });
    if count == 0 {
        return Err(Error::invalid("SSIM region", "the region holds no pixel"));
    }
    Ok(sum / count as f64)
}

/// Normalised Gaussian weights at offsets `-r..=r`.
fn gaussian_kernel() -> Vec<f64> {
    let r = SSIM_RADIUS as isize;
    let w: Vec<f64> = (-r..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

/// Index `i` (possibly outside `0..n`) mirrored into `0..n` with the edge sample repeated.
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period);
    if m < n as isize {
        m as usize
    } else {
        (period - 1 - m) as usize
    }
}

/// Separable Gaussian filter (sigma 1.5, radius 5) with mirrored edges.
fn gaussian_blur(img: &Array2<f64>) -> Array2<f64> {
    let kernel = gaussian_kernel();
    let r = SSIM_RADIUS as isize;
    let (h, w) = img.dim();
    let filter_line = |src: &[f64], dst: &mut [f64]| {
        let n = src.len();
        for (i, out) in dst.iter_mut().enumerate() {
            let i = i as isize;
            let inner = i >= r && i + r < n as isize;
            *out = if inner {
                let start = (i - r) as usize;
                src[start..start + kernel.len()]
                    .iter()
                    .zip(&kernel)
                    .map(|(a, b)| a * b)
                    .sum()
            } else {
                kernel
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * src[reflect(i + k as isize - r, n)])
                    .sum()
            };
        }
    };
    // Rows, then columns (on the transposed copy, so that both passes read contiguous memory).
    let mut rows = Array2::<f64>::zeros((h, w));
    for (src, mut dst) in img.rows().into_iter().zip(rows.rows_mut()) {
        let src = src.to_vec();
        filter_line(
            &src,
            dst.as_slice_mut().expect("fresh arrays are contiguous"),
        );
    }
    let transposed = rows.t().as_standard_layout().into_owned();
    let mut cols = Array2::<f64>::zeros((w, h));
    for (src, mut dst) in transposed.rows().into_iter().zip(cols.rows_mut()) {
        filter_line(
            src.as_slice().expect("standard layout is contiguous"),
            dst.as_slice_mut().expect("fresh arrays are contiguous"),
        );
    }
    cols.t().as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// The image pair of the scikit-image reference values below.
    fn reference_pair() -> (Array2<f64>, Array2<f64>) {
        let x = Array2::from_shape_fn((24, 20), |(r, c)| {
            let (r, c) = (r as f64, c as f64);
            (0.7 * r).sin() + (0.45 * c + 0.3 * r).cos() + 0.05 * c
        });
        let y = Array2::from_shape_fn((24, 20), |(r, c)| {
            let (rf, cf) = (r as f64, c as f64);
            x[[r, c]] + 0.4 * (1.3 * rf * cf / 7.0).sin() - 0.2
        });
        (x, y)
    }

    #[test]
    fn matches_scikit_image() {
        // Obtained once with scikit-image 0.26.0 (python):
        //   r, c = np.mgrid[0:24, 0:20].astype(float)
        //   x = np.sin(0.7*r) + np.cos(0.45*c + 0.3*r) + 0.05*c
        //   y = x + 0.4*np.sin(1.3*r*c/7.0) - 0.2
        //   L = x.max() - x.min()
        //   m, S = structural_similarity(x, y, data_range=L, gaussian_weights=True,
        //                                sigma=1.5, use_sample_covariance=False, full=True)
        const RANGE: f64 = 4.59623991196724;
        const MEAN: f64 = 0.6573343325376245;
        const S_0_0: f64 = 0.9678199414061182;
        const S_12_9: f64 = 0.9332564328202684;
        const S_23_19: f64 = 0.7588066289500137;
        let (x, y) = reference_pair();
        let range = x.fold(f64::MIN, |a, &b| a.max(b)) - x.fold(f64::MAX, |a, &b| a.min(b));
        assert!((range - RANGE).abs() < 1e-12);
        let map = ssim_map(&x, &y, RANGE).unwrap();
        assert!((map[[0, 0]] - S_0_0).abs() < 1e-10, "{}", map[[0, 0]]);
        assert!((map[[12, 9]] - S_12_9).abs() < 1e-10, "{}", map[[12, 9]]);
        assert!((map[[23, 19]] - S_23_19).abs() < 1e-10, "{}", map[[23, 19]]);
        // scikit-image averages over the image less a 5 px border.
        let inner = Array2::from_shape_fn((24, 20), |(r, c)| {
            (5..19).contains(&r) && (5..15).contains(&c)
        });
        let mean = ssim(&x, &y, &inner, RANGE).unwrap();
        assert!((mean - MEAN).abs() < 1e-10, "{mean}");
    }

    #[test]
    fn identical_images_score_one_and_noise_lowers_it_monotonically() {
        let (x, _) = reference_pair();
        let all = Array2::from_elem(x.dim(), true);
        assert!((ssim(&x, &x, &all, 4.6).unwrap() - 1.0).abs() < 1e-12);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let unit = Normal::new(0.0, 1.0).unwrap();
        let noise = Array2::from_shape_fn(x.dim(), |_| unit.sample(&mut rng));
        let scores: Vec<f64> = [0.01, 0.03, 0.1, 0.3, 1.0]
            .iter()
            .map(|&s| ssim(&x, &(&x + &(&noise * s)), &all, 4.6).unwrap())
            .collect();
        assert!(scores[0] > 0.99 && scores[0] < 1.0, "{scores:?}");
        for w in scores.windows(2) {
            assert!(w[1] < w[0] - 1e-3, "not decreasing: {scores:?}");
        }
        assert!(scores[4] < 0.5, "{scores:?}");
    }

    #[test]
    fn constant_images_follow_the_luminance_term() {
        // For constants a and b all variances vanish and SSIM = (2ab + C1) / (a^2 + b^2 + C1).
        let a = Array2::from_elem((12, 12), 0.5);
        let b = Array2::from_elem((12, 12), 0.7);
        let all = Array2::from_elem((12, 12), true);
        let c1 = (0.01f64 * 1.0).powi(2);
        let want = (2.0 * 0.5 * 0.7 + c1) / (0.25 + 0.49 + c1);
        assert!((ssim(&a, &b, &all, 1.0).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let a = Array2::<f64>::zeros((8, 8));
        let b = Array2::<f64>::zeros((8, 9));
        let none = Array2::from_elem((8, 8), false);
        assert!(ssim_map(&a, &b, 1.0).is_err());
        assert!(ssim_map(&a, &a, 0.0).is_err());
        assert!(ssim(&a, &a, &none, 1.0).is_err());
    }
}
