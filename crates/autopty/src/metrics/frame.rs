//! Bringing a reconstruction onto the truth's pixel grid, the illuminated region, and the
//! global complex factor.
//!
//! Coordinates are object pixels `(row, col)`; a sample `[i, j]` sits at coordinate `(i, j)`.

use ndarray::{Array2, Array3};
use num_complex::{Complex32, Complex64};

/// Bilinear resampling of `image` by `zoom` (> 0): the output sample at `v` takes the input at
/// `v / zoom`, so an input coordinate `u` lands at `zoom * u`. Use `zoom = old pixel / new pixel`
/// (both in metres). The output is `floor((H - 1) zoom) + 1` by `floor((W - 1) zoom) + 1`.
pub fn zoom_bilinear(image: &Array2<Complex32>, zoom: f64) -> Array2<Complex32> {
    let (h, w) = image.dim();
    if h == 0 || w == 0 {
        return image.clone();
    }
    let out_h = ((h - 1) as f64 * zoom).floor() as usize + 1;
    let out_w = ((w - 1) as f64 * zoom).floor() as usize + 1;
    Array2::from_shape_fn((out_h, out_w), |(r, c)| {
        bilinear_complex(image, r as f64 / zoom, c as f64 / zoom)
    })
}

/// Bilinear interpolation of a complex image at `(y, x)`, clamped to the image.
fn bilinear_complex(image: &Array2<Complex32>, y: f64, x: f64) -> Complex32 {
    let (h, w) = image.dim();
    let y = y.clamp(0.0, (h - 1) as f64);
    let x = x.clamp(0.0, (w - 1) as f64);
    let (r0, c0) = (y.floor() as usize, x.floor() as usize);
    let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
    let (fy, fx) = ((y - r0 as f64) as f32, (x - c0 as f64) as f32);
    let top = image[[r0, c0]] * (1.0 - fx) + image[[r0, c1]] * fx;
    let bottom = image[[r1, c0]] * (1.0 - fx) + image[[r1, c1]] * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The part of `image` seen on a `shape` grid whose coordinate `t` is the image's `t - offset`
/// (an integer offset in px); pixels the image does not cover are zero.
pub fn extract(
    image: &Array2<Complex32>,
    offset: (isize, isize),
    shape: (usize, usize),
) -> Array2<Complex32> {
    let (h, w) = image.dim();
    Array2::from_shape_fn(shape, |(r, c)| {
        let (y, x) = (r as isize - offset.0, c as isize - offset.1);
        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
            image[[y as usize, x as usize]]
        } else {
            Complex32::default()
        }
    })
}

/// Summed probe intensity `sum_j sum_m |P_m|^2` with each N x N probe placed at its position
/// (rounded to whole pixels; (J, 2) top-left corners) on a `shape` grid; parts falling outside
/// are dropped.
pub fn illumination(
    probe: &Array3<Complex32>,
    positions: &Array2<f64>,
    shape: (usize, usize),
) -> Array2<f64> {
    let (_, n_rows, n_cols) = probe.dim();
    let mut intensity = Array2::<f64>::zeros((n_rows, n_cols));
    for mode in probe.outer_iter() {
        intensity.zip_mut_with(&mode, |a, p| *a += p.norm_sqr() as f64);
    }
    let mut total = Array2::<f64>::zeros(shape);
    for pos in positions.rows() {
        let (top, left) = (pos[0].round() as isize, pos[1].round() as isize);
        for ((r, c), v) in intensity.indexed_iter() {
            let (y, x) = (top + r as isize, left + c as isize);
            if y >= 0 && x >= 0 && (y as usize) < shape.0 && (x as usize) < shape.1 {
                total[[y as usize, x as usize]] += v;
            }
        }
    }
    total
}

/// Pixels where `map` exceeds `fraction` of its maximum.
pub fn threshold(map: &Array2<f64>, fraction: f64) -> Array2<bool> {
    let max = map.iter().cloned().fold(0.0f64, f64::max);
    map.mapv(|v| max > 0.0 && v > fraction * max)
}

/// Erosion of `mask` by a (2 radius + 1) square: a pixel stays only if every pixel within
/// `radius` px along both axes is set. Outside the array counts as unset.
pub fn erode(mask: &Array2<bool>, radius: usize) -> Array2<bool> {
    if radius == 0 {
        return mask.clone();
    }
    let (h, w) = mask.dim();
    // Distance to the nearest unset pixel along each row, then a second pass along columns.
    let along = |len: usize, get: &dyn Fn(usize) -> bool| -> Vec<bool> {
        // run[i]: number of consecutive set pixels ending at i (forward) / starting at i.
        let mut fwd = vec![0usize; len];
        let mut bwd = vec![0usize; len];
        for i in 0..len {
            fwd[i] = if get(i) {
                1 + if i > 0 { fwd[i - 1] } else { 0 }
            } else {
                0
            };
        }
        for i in (0..len).rev() {
            bwd[i] = if get(i) {
                1 + if i + 1 < len { bwd[i + 1] } else { 0 }
            } else {
                0
            };
        }
        (0..len)
            .map(|i| fwd[i] > radius && bwd[i] > radius)
            .collect()
    };
    let mut rows = Array2::from_elem((h, w), false);
    for r in 0..h {
        let line = along(w, &|c| mask[[r, c]]);
        for (c, v) in line.into_iter().enumerate() {
            rows[[r, c]] = v;
        }
    }
    let mut out = Array2::from_elem((h, w), false);
    for c in 0..w {
        let line = along(h, &|r| rows[[r, c]]);
        for (r, v) in line.into_iter().enumerate() {
            out[[r, c]] = v;
        }
    }
    out
}

/// The scalar `c` minimising `sum_region |c rec - truth|^2`: `<rec, truth> / <rec, rec>`
/// (zero if `rec` vanishes on the region). It removes the global phase and scale ambiguity.
pub fn global_factor(
    rec: &Array2<Complex32>,
    truth: &Array2<Complex32>,
    region: &Array2<bool>,
) -> Complex64 {
    let mut cross = Complex64::default();
    let mut power = 0.0f64;
    for ((r, t), &m) in rec.iter().zip(truth.iter()).zip(region.iter()) {
        if m {
            let (r, t) = (
                Complex64::new(r.re as f64, r.im as f64),
                Complex64::new(t.re as f64, t.im as f64),
            );
            cross += r.conj() * t;
            power += r.norm_sqr();
        }
    }
    if power > 0.0 {
        cross / power
    } else {
        Complex64::default()
    }
}

/// Removes the linear phase ramp between `rec` and `truth` over `region` and returns the
/// corrected copy. A ramp `exp(i q.r)` on the object with the opposite ramp on the probe leaves
/// every pattern unchanged (it becomes a constant phase per position), so ptychography cannot
/// determine it and a fair comparison removes it. The slope per pixel is the mean phase of
/// `d(r + 1) conj(d(r))` with `d = truth conj(rec)` (no unwrapping needed).
pub fn remove_phase_ramp(
    rec: &Array2<Complex32>,
    truth: &Array2<Complex32>,
    region: &Array2<bool>,
) -> Array2<Complex32> {
    let (h, w) = rec.dim();
    let d = |r: usize, c: usize| {
        let (a, b) = (truth[[r, c]], rec[[r, c]]);
        Complex64::new(a.re as f64, a.im as f64) * Complex64::new(b.re as f64, -(b.im as f64))
    };
    let (mut sy, mut sx) = (Complex64::default(), Complex64::default());
    for r in 0..h {
        for c in 0..w {
            if !region[[r, c]] {
                continue;
            }
            if r + 1 < h && region[[r + 1, c]] {
                sy += d(r + 1, c) * d(r, c).conj();
            }
            if c + 1 < w && region[[r, c + 1]] {
                sx += d(r, c + 1) * d(r, c).conj();
            }
        }
    }
    let (gy, gx) = (sy.arg(), sx.arg());
    Array2::from_shape_fn((h, w), |(r, c)| {
        let ramp = Complex64::from_polar(1.0, gy * r as f64 + gx * c as f64);
        let v = Complex64::new(rec[[r, c]].re as f64, rec[[r, c]].im as f64) * ramp;
        Complex32::new(v.re as f32, v.im as f32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_ramp_is_removed() {
        let truth = Array2::from_shape_fn((40, 50), |(r, c)| {
            Complex32::from_polar(
                1.0 + 0.3 * ((r * c) as f32 * 0.1).sin(),
                0.5 * (c as f32 * 0.2).cos(),
            )
        });
        let ramped = Array2::from_shape_fn((40, 50), |(r, c)| {
            truth[[r, c]] * Complex32::from_polar(1.0, 0.03 * r as f32 - 0.05 * c as f32 + 0.4)
        });
        let region = Array2::from_elem((40, 50), true);
        let fixed = remove_phase_ramp(&ramped, &truth, &region);
        let c = global_factor(&fixed, &truth, &region);
        let worst = fixed
            .iter()
            .zip(truth.iter())
            .map(|(a, b)| {
                let a = Complex64::new(a.re as f64, a.im as f64) * c;
                (a - Complex64::new(b.re as f64, b.im as f64)).norm()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{worst}");
    }

    #[test]
    fn zoom_maps_coordinates_and_interpolates_linearly() {
        // A linear ramp stays a ramp: input value = 2 u_row + 3 u_col.
        let ramp = Array2::from_shape_fn((10, 8), |(r, c)| {
            Complex32::new(2.0 * r as f32 + 3.0 * c as f32, 1.0)
        });
        let z = zoom_bilinear(&ramp, 1.25);
        assert_eq!(z.dim(), (12, 9));
        for ((r, c), v) in z.indexed_iter() {
            let want = 2.0 * r as f64 / 1.25 + 3.0 * c as f64 / 1.25;
            assert!((v.re as f64 - want).abs() < 1e-4 && (v.im - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn extraction_moves_by_the_offset_and_zero_fills() {
        let img = Array2::from_shape_fn((4, 5), |(r, c)| Complex32::new((10 * r + c) as f32, 0.0));
        let e = extract(&img, (2, -1), (6, 6));
        assert_eq!(e[[2, 0]].re, 1.0); // image [0, 1]
        assert_eq!(e[[5, 3]].re, 34.0); // image [3, 4]
        assert_eq!(e[[0, 0]], Complex32::default());
        assert_eq!(e[[3, 5]], Complex32::default()); // col 6 is outside the image
    }

    #[test]
    fn illumination_sums_placed_probes() {
        let probe = Array3::from_elem((2, 3, 3), Complex32::new(1.0, 0.0));
        let positions = ndarray::arr2(&[[0.0, 0.0], [1.4, 2.6], [-2.0, 5.0]]);
        let map = illumination(&probe, &positions, (5, 7));
        // Two modes of power 1 each: the first window adds 2 on [0..3, 0..3], the second on
        // [1..4, 3..6], the third (rows -2..1, cols 5..8) only on row 0, cols 5..7.
        assert_eq!(map[[0, 0]], 2.0);
        assert_eq!(map[[1, 2]], 2.0);
        assert_eq!(map[[2, 3]], 2.0);
        assert_eq!(map[[0, 5]], 2.0);
        assert_eq!(map[[1, 5]], 2.0);
        assert_eq!(map[[4, 4]], 0.0);
        assert_eq!(map.sum(), 2.0 * 9.0 + 2.0 * 9.0 + 2.0 * 2.0);
        let region = threshold(&map, 0.5);
        assert!(region[[0, 0]] && !region[[4, 4]]);
    }

    #[test]
    fn erosion_shrinks_by_the_radius() {
        let mut mask = Array2::from_elem((12, 12), false);
        mask.slice_mut(ndarray::s![2..10, 3..11]).fill(true);
        let e = erode(&mask, 2);
        let count = e.iter().filter(|&&m| m).count();
        assert_eq!(count, 4 * 4);
        assert!(e[[4, 5]] && e[[7, 8]] && !e[[3, 5]] && !e[[4, 9]]);
        // The array edge counts as unset.
        let full = Array2::from_elem((6, 6), true);
        assert_eq!(erode(&full, 1).iter().filter(|&&m| m).count(), 16);
    }

    #[test]
    fn global_factor_undoes_a_complex_scale() {
        let truth = Array2::from_shape_fn((6, 6), |(r, c)| {
            Complex32::from_polar(1.0 + 0.1 * r as f32, 0.3 * c as f32)
        });
        let c0 = Complex32::from_polar(0.5, -2.0);
        let rec = truth.mapv(|v| v * c0);
        let region = Array2::from_elem((6, 6), true);
        let c = global_factor(&rec, &truth, &region);
        let want = 1.0 / Complex64::new(c0.re as f64, c0.im as f64);
        assert!((c - want).norm() < 1e-6);
    }
}
