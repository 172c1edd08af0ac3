//! Gaussian smoothing of a rectangle of a complex image, used to keep the object's updates
//! coarse early in a reconstruction (a Sobolev-type preconditioner of the object gradient).
//!
//! The Gaussian of standard deviation `sigma` (px) is approximated by three passes of a box
//! filter per axis (variance `(w^2 - 1) / 12` per pass for a box of width `w`), which costs a
//! few additions per pixel whatever `sigma` is. Pixels outside the rectangle count as zero, so
//! the rectangle must reach about `3 sigma` beyond the support of what is smoothed.

use ndarray::{Array2, ArrayViewMut1};
use num_complex::{Complex32, Complex64};

/// Half-width `r` (px) of the box (width `2r + 1`) whose three passes have standard deviation
/// closest to `sigma`.
pub fn box_radius(sigma: f64) -> usize {
    let w = (4.0 * sigma * sigma + 1.0).sqrt();
    ((w - 1.0) / 2.0).round().max(0.0) as usize
}

/// How far (px) the smoothing spreads a point: the margin a rectangle needs around its support.
pub fn reach(sigma: f64) -> usize {
    3 * box_radius(sigma)
}

/// Smooths `image[rows, cols]` in place with a Gaussian of standard deviation about `sigma` px.
pub fn gaussian_rect(
    image: &mut Array2<Complex32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    sigma: f64,
) {
    let r = box_radius(sigma);
    if r == 0 || rows.is_empty() || cols.is_empty() {
        return;
    }
    let mut buf = Vec::new();
    let mut region = image.slice_mut(ndarray::s![rows, cols]);
    for _ in 0..3 {
        for line in region.rows_mut() {
            box_line(line, r, &mut buf);
        }
        for line in region.columns_mut() {
            box_line(line, r, &mut buf);
        }
    }
}

/// One box pass (mean over `2r + 1` samples, zeros outside) along a line, with an f64 running
/// sum (rounding leaves at most ~1e-16 of the line's values where the exact result is zero).
fn box_line(mut line: ArrayViewMut1<Complex32>, r: usize, buf: &mut Vec<Complex64>) {
    let n = line.len();
    buf.clear();
    buf.extend(
        line.iter()
            .map(|v| Complex64::new(v.re as f64, v.im as f64)),
    );
    let scale = 1.0 / (2 * r + 1) as f64;
    let mut sum: Complex64 = buf[..(r + 1).min(n)].iter().sum();
    for i in 0..n {
        let v = sum * scale;
        line[i] = Complex32::new(v.re as f32, v.im as f32);
        if i + r + 1 < n {
            sum += buf[i + r + 1];
        }
        if i >= r {
            sum -= buf[i - r];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_gaussian_spread_and_keeps_the_sum() {
        for sigma in [1.5, 3.0, 6.0] {
            let n = 101;
            let mut img = Array2::<Complex32>::zeros((n, n));
            img[[50, 50]] = Complex32::new(1.0, -2.0);
            gaussian_rect(&mut img, 0..n, 0..n, sigma);
            let total: Complex32 = img.iter().sum();
            assert!((total - Complex32::new(1.0, -2.0)).norm() < 1e-5, "{total}");
            // Variance along rows of the real part.
            let var: f64 = img
                .indexed_iter()
                .map(|((r, _), v)| v.re as f64 * ((r as f64) - 50.0).powi(2))
                .sum();
            let r = box_radius(sigma) as f64;
            let want = 3.0 * ((2.0 * r + 1.0).powi(2) - 1.0) / 12.0;
            assert!(
                (var - want).abs() < 1e-3 * want,
                "sigma {sigma}: {var} vs {want}"
            );
            // Three boxes of half-width r have variance r (r + 1): sigma is met to half a pixel.
            assert!(
                (var.sqrt() - sigma).abs() < 0.55,
                "sigma {sigma}: {}",
                var.sqrt()
            );
            // Nothing spreads beyond the reach (up to rounding of the running sums).
            let far = reach(sigma) + 1;
            assert!(img[[50, 50 + far]].norm() < 1e-12);
            assert!(img[[50 - far, 50]].norm() < 1e-12);
            assert!(img[[50, 50 + far - 1]].norm() > 1e-9);
        }
    }

    #[test]
    fn is_self_adjoint() {
        // <B x, y> = <x, B y> for real kernels: the smoothed gradient is the gradient of the
        // smoothed parameterisation.
        let n = 40;
        let x = Array2::from_shape_fn((n, n), |(r, c)| {
            Complex32::new(((r * 7 + c * 3) % 11) as f32, ((r + 2 * c) % 5) as f32)
        });
        let y = Array2::from_shape_fn((n, n), |(r, c)| {
            Complex32::new(((r * 5 + c) % 13) as f32, ((3 * r + c) % 7) as f32 - 3.0)
        });
        let (mut bx, mut by) = (x.clone(), y.clone());
        gaussian_rect(&mut bx, 0..n, 0..n, 2.0);
        gaussian_rect(&mut by, 0..n, 0..n, 2.0);
        let dot = |a: &Array2<Complex32>, b: &Array2<Complex32>| -> f64 {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p.re * q.re + p.im * q.im) as f64)
                .sum()
        };
        let (l, r) = (dot(&bx, &y), dot(&x, &by));
        assert!((l - r).abs() < 1e-4 * l.abs(), "{l} vs {r}");
    }
}
