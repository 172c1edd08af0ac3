//! Sub-pixel image registration and Fourier shifts of complex images of any (H, W) shape.
//!
//! The shift between two images is the peak of their cross-correlation. The integer peak comes
//! from one FFT-based correlation; it is then refined on a grid of `1/upsample` px over
//! +-0.75 px by evaluating the correlation's Fourier series directly with two small matrix
//! products (the upsampled DFT of Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33, 156 (2008)),
//! which costs `O(H W n)` for `n = 1.5 upsample` instead of an FFT `upsample^2` times larger.
//!
//! Sign convention: a shift `s = (rows, cols)` moves image content by `+s`:
//! `fourier_shift(f, s)(r) = f(r - s)`, and [`register`] returns the `s` for which
//! `fourier_shift(moving, s)` best matches the reference.

use crate::error::{Error, Result};
use crate::fft::freq_index;
use ndarray::Array2;
use num_complex::{Complex32, Complex64};
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use std::f64::consts::PI;
use std::sync::Arc;

/// Unitary 2-D FFT of one H x W complex f64 image (rows, then columns via a transpose).
struct RectFft {
    rows: usize,
    cols: usize,
    along_row: Arc<dyn Fft<f64>>,
    along_col: Arc<dyn Fft<f64>>,
}

impl RectFft {
    fn new(rows: usize, cols: usize, inverse: bool) -> Self {
        let mut planner = FftPlanner::<f64>::new();
        let plan = |p: &mut FftPlanner<f64>, n| {
            if inverse {
                p.plan_fft_inverse(n)
            } else {
                p.plan_fft_forward(n)
            }
        };
        RectFft {
            rows,
            cols,
            along_row: plan(&mut planner, cols),
            along_col: plan(&mut planner, rows),
        }
    }

    /// Transforms `data` (row-major H x W) in place, scaled by `1/sqrt(H W)`.
    fn process(&self, data: &mut [Complex64]) {
        let (h, w) = (self.rows, self.cols);
        assert_eq!(data.len(), h * w);
        data.par_chunks_mut(w)
            .for_each(|row| self.along_row.process(row));
        let mut t = vec![Complex64::default(); h * w];
        transpose::transpose(data, &mut t, w, h);
        t.par_chunks_mut(h)
            .for_each(|col| self.along_col.process(col));
        transpose::transpose(&t, data, h, w);
        let scale = 1.0 / ((h * w) as f64).sqrt();
        data.par_iter_mut().for_each(|v| *v *= scale);
    }
}

fn to_c64(image: &Array2<Complex32>) -> Vec<Complex64> {
    image
        .iter()
        .map(|v| Complex64::new(v.re as f64, v.im as f64))
        .collect()
}

/// Spectrum of `image` (unitary FFT, zero frequency at `[0, 0]`).
fn spectrum(image: &[Complex64], rows: usize, cols: usize) -> Vec<Complex64> {
    let mut data = image.to_vec();
    RectFft::new(rows, cols, false).process(&mut data);
    data
}

/// `exp(i sign 2 pi f(k) s / n)` for every FFT bin `k` of an n-point transform.
fn shift_phases(n: usize, s: f64, sign: f64) -> Vec<Complex64> {
    (0..n)
        .map(|k| Complex64::from_polar(1.0, sign * 2.0 * PI * freq_index(k, n) * s / n as f64))
        .collect()
}

/// `image` with its content moved by `shift = (rows, cols)` px (sub-pixel allowed), by the
/// Fourier shift theorem: the result is periodic, so content leaving one edge re-enters at the
/// opposite one.
pub fn fourier_shift(image: &Array2<Complex32>, shift: (f64, f64)) -> Array2<Complex32> {
    let (h, w) = image.dim();
    if h == 0 || w == 0 {
        return image.clone();
    }
    let mut data = spectrum(&to_c64(image), h, w);
    let row_phase = shift_phases(h, shift.0, -1.0);
    let col_phase = shift_phases(w, shift.1, -1.0);
    data.par_chunks_mut(w)
        .zip(row_phase.par_iter())
        .for_each(|(row, pr)| {
            for (v, pc) in row.iter_mut().zip(&col_phase) {
                *v *= pr * pc;
            }
        });
    RectFft::new(h, w, true).process(&mut data);
    Array2::from_shape_vec(
        (h, w),
        data.iter()
            .map(|v| Complex32::new(v.re as f32, v.im as f32))
            .collect(),
    )
    .expect("the shape holds h * w values")
}

/// Shift `s = (rows, cols)` (px, to `1/upsample` px) that makes `fourier_shift(moving, s)` best
/// match `reference` over `region` (the whole image when `None`): the peak of the normalised
/// cross-correlation
///
/// ```text
/// NCC(s) = |sum_r t(r) conj(m(r - s))| / sqrt(sum_r region(r) |m(r - s) - mean_s|^2)
/// ```
///
/// with the template `t = region (reference - mean)` and `mean_s` the moving image's mean over
/// the shifted region. Only the reference is masked, so no mask edge correlates with itself, and
/// the normalisation removes the pull towards shifts that bring more of the moving image's
/// energy into the region. Any global complex factor between the images is irrelevant. All
/// sums are circular: shifts are found modulo the image size, in `[-H/2, H/2) x [-W/2, W/2)`.
pub fn register(
    reference: &Array2<Complex32>,
    moving: &Array2<Complex32>,
    region: Option<&Array2<bool>>,
    upsample: usize,
) -> Result<(f64, f64)> {
    register_within(reference, moving, region, upsample, f64::INFINITY)
}

/// [`register`] with the whole-pixel peak searched only among shifts of at most `max_shift` px
/// along each axis: for images already placed to within that, so that a distant look-alike
/// (a large reference whose unscanned part the moving image leaves empty) cannot win.
pub fn register_within(
    reference: &Array2<Complex32>,
    moving: &Array2<Complex32>,
    region: Option<&Array2<bool>>,
    upsample: usize,
    max_shift: f64,
) -> Result<(f64, f64)> {
    let (h, w) = reference.dim();
    if moving.dim() != (h, w) {
        return Err(Error::invalid(
            "registration images",
            format!("shapes differ: {:?} vs {:?}", reference.dim(), moving.dim()),
        ));
    }
    if h == 0 || w == 0 {
        return Err(Error::invalid(
            "registration images",
            "the images are empty",
        ));
    }
    if upsample == 0 {
        return Err(Error::invalid(
            "registration upsampling",
            "expected at least 1",
        ));
    }
    let region = match region {
        Some(r) if r.dim() != (h, w) => {
            return Err(Error::invalid(
                "registration region",
                format!("shape {:?} differs from the images' {:?}", r.dim(), (h, w)),
            ))
        }
        Some(r) => r.clone(),
        None => Array2::from_elem((h, w), true),
    };
    let count = region.iter().filter(|&&m| m).count();
    if count == 0 {
        return Err(Error::invalid(
            "registration region",
            "the region holds no pixel",
        ));
    }
    let mut template = to_c64(reference);
    let mean = template
        .iter()
        .zip(region.iter())
        .filter(|(_, &m)| m)
        .map(|(v, _)| v)
        .sum::<Complex64>()
        / count as f64;
    for (v, &m) in template.iter_mut().zip(region.iter()) {
        *v = if m { *v - mean } else { Complex64::default() };
    }
    let moving = to_c64(moving);
    let indicator: Vec<Complex64> = region
        .iter()
        .map(|&m| Complex64::new(if m { 1.0 } else { 0.0 }, 0.0))
        .collect();
    let energy: Vec<Complex64> = moving
        .iter()
        .map(|v| Complex64::new(v.norm_sqr(), 0.0))
        .collect();
    let moving_spec = spectrum(&moving, h, w);
    let indicator_spec = spectrum(&indicator, h, w);
    // Cross spectra X(k) = A(k) conj(B(k)): the circular correlation sum_r a(r) conj(b(r - s))
    // is their Fourier series at s.
    let cross = |a: &[Complex64], b: &[Complex64]| -> Vec<Complex64> {
        a.iter().zip(b).map(|(x, y)| x * y.conj()).collect()
    };
    let spectra = CrossSpectra {
        numerator: cross(&spectrum(&template, h, w), &moving_spec),
        local_sum: cross(&indicator_spec, &moving_spec),
        local_energy: cross(&indicator_spec, &spectrum(&energy, h, w)),
        count: count as f64,
    };
    // Integer peak: the unitary inverse FFT is the correlation divided by sqrt(H W).
    let scale = ((h * w) as f64).sqrt();
    let coarse = |x: &[Complex64]| -> Vec<Complex64> {
        let mut c = x.to_vec();
        RectFft::new(h, w, true).process(&mut c);
        c.iter_mut().for_each(|v| *v *= scale);
        c
    };
    let ncc = spectra.score(
        &coarse(&spectra.numerator),
        &coarse(&spectra.local_sum),
        &coarse(&spectra.local_energy),
    );
    let shift_of = |i: usize| (freq_index(i / w, h), freq_index(i % w, w));
    let allowed = |i: &usize| {
        let (dy, dx) = shift_of(*i);
        dy.abs() <= max_shift && dx.abs() <= max_shift
    };
    let peak = (0..ncc.len())
        .filter(allowed)
        .max_by(|&a, &b| ncc[a].total_cmp(&ncc[b]))
        .unwrap_or(0);
    let coarse_shift = shift_of(peak);
    if upsample == 1 {
        return Ok(coarse_shift);
    }
    Ok(spectra.refine(h, w, coarse_shift, upsample))
}

/// The three correlations whose combination is the normalised cross-correlation.
struct CrossSpectra {
    /// Template against the moving image.
    numerator: Vec<Complex64>,
    /// Region indicator against the moving image: its sum over the shifted region.
    local_sum: Vec<Complex64>,
    /// Region indicator against `|moving|^2`: its energy over the shifted region.
    local_energy: Vec<Complex64>,
    /// Pixels in the region.
    count: f64,
}

impl CrossSpectra {
    /// Squared NCC from the three correlations sampled at the same shifts.
    fn score(&self, num: &[Complex64], sum: &[Complex64], energy: &[Complex64]) -> Vec<f64> {
        let variance: Vec<f64> = sum
            .iter()
            .zip(energy)
            .map(|(s, e)| e.re - s.norm_sqr() / self.count)
            .collect();
        // Shifts that bring less than 1 % of the largest local variance into the region (the
        // moving image's empty or flat parts) cannot win by a small denominator.
        let floor = 1e-2 * variance.iter().cloned().fold(0.0f64, f64::max) + f64::MIN_POSITIVE;
        num.iter()
            .zip(&variance)
            .map(|(n, v)| n.norm_sqr() / v.max(floor))
            .collect()
    }

    /// Refines the peak on a `1/upsample` grid over +-0.75 px around `centre`.
    fn refine(&self, h: usize, w: usize, centre: (f64, f64), upsample: usize) -> (f64, f64) {
        let u = upsample as f64;
        let n = (1.5 * u).ceil() as usize + 1;
        let half = (n / 2) as f64;
        let offsets: Vec<f64> = (0..n).map(|i| (i as f64 - half) / u).collect();
        let rows: Vec<f64> = offsets.iter().map(|o| centre.0 + o).collect();
        let cols: Vec<f64> = offsets.iter().map(|o| centre.1 + o).collect();
        let ncc = self.score(
            &upsampled_dft(&self.numerator, h, w, &rows, &cols),
            &upsampled_dft(&self.local_sum, h, w, &rows, &cols),
            &upsampled_dft(&self.local_energy, h, w, &rows, &cols),
        );
        let best = argmax(&ncc);
        (rows[best / n], cols[best % n])
    }
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// The Fourier series `c(y, x) = sum_k X(k) exp(2 pi i (ky y / H + kx x / W))` of an H x W
/// spectrum on the grid `rows x cols` (any real coordinates), as two matrix products: first over
/// `kx` for every row of X (H x n), then over `ky` (n x n). Row-major (rows.len(), cols.len()).
fn upsampled_dft(
    spectrum: &[Complex64],
    h: usize,
    w: usize,
    rows: &[f64],
    cols: &[f64],
) -> Vec<Complex64> {
    let kernel = |len: usize, at: &[f64]| -> Vec<Vec<Complex64>> {
        (0..len)
            .map(|k| {
                let f = 2.0 * PI * freq_index(k, len) / len as f64;
                at.iter()
                    .map(|&x| Complex64::from_polar(1.0, f * x))
                    .collect()
            })
            .collect()
    };
    let col_kernel = kernel(w, cols);
    let row_kernel = kernel(h, rows);
    let partial: Vec<Vec<Complex64>> = spectrum
        .par_chunks(w)
        .map(|row| {
            let mut acc = vec![Complex64::default(); cols.len()];
            for (x, ker) in row.iter().zip(&col_kernel) {
                for (a, k) in acc.iter_mut().zip(ker) {
                    *a += x * k;
                }
            }
            acc
        })
        .collect();
    let mut out = vec![Complex64::default(); rows.len() * cols.len()];
    for (i, line) in out.chunks_mut(cols.len()).enumerate() {
        for (ker, p) in row_kernel.iter().zip(&partial) {
            let k = ker[i];
            for (l, v) in line.iter_mut().zip(p) {
                *l += k * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testutil::textured_object;
    use super::*;

    #[test]
    fn integer_fourier_shift_is_a_roll_and_shifts_invert() {
        let img = textured_object(24, 30, 3, (0.0, 0.0));
        let rolled = fourier_shift(&img, (2.0, -3.0));
        for r in 0..24 {
            for c in 0..30 {
                let src = img[[(r + 22) % 24, (c + 3) % 30]];
                assert!((rolled[[r, c]] - src).norm() < 1e-5);
            }
        }
        let back = fourier_shift(&fourier_shift(&img, (0.37, 1.81)), (-0.37, -1.81));
        for (a, b) in back.iter().zip(img.iter()) {
            assert!((a - b).norm() < 1e-5);
        }
    }

    #[test]
    fn recovers_a_known_subpixel_shift() {
        // The moving image is the texture evaluated at r + (3.3, -7.6): its content sits at
        // -(3.3, -7.6), so moving it by +(3.3, -7.6) matches the reference.
        let (h, w) = (120, 136);
        let reference = textured_object(h, w, 11, (0.0, 0.0));
        let factor = Complex32::from_polar(0.8, 1.1);
        let moving = textured_object(h, w, 11, (-3.3, 7.6)).mapv(|v| v * factor);
        let region = Array2::from_shape_fn((h, w), |(r, c)| {
            let (y, x) = (r as f64 - 60.0, c as f64 - 68.0);
            y * y + x * x < 45.0 * 45.0
        });
        let s = register(&reference, &moving, Some(&region), 20).unwrap();
        assert!(
            (s.0 - 3.3).abs() < 0.05 && (s.1 + 7.6).abs() < 0.05,
            "{s:?}"
        );
        let coarse = register(&reference, &moving, Some(&region), 1).unwrap();
        assert_eq!(coarse, (3.0, -8.0));
        // Registering the other way round gives the opposite shift.
        let back = register(&moving, &reference, Some(&region), 20).unwrap();
        assert!(
            (back.0 + 3.3).abs() < 0.05 && (back.1 - 7.6).abs() < 0.05,
            "{back:?}"
        );
    }

    #[test]
    fn a_region_does_not_bias_the_shift() {
        // A periodic image (whole periods of plane waves) registers exactly without a region;
        // with a small off-centre region, plain correlation drifts towards brighter shifts,
        // the normalised correlation does not.
        let (h, w) = (120, 136);
        let field = |r: f64, c: f64| {
            [
                (3.0, 5.0),
                (7.0, -2.0),
                (11.0, 9.0),
                (-4.0, 13.0),
                (17.0, 1.0),
            ]
            .iter()
            .enumerate()
            .map(|(i, &(ky, kx))| {
                let phase = 2.0 * PI * (ky * r / h as f64 + kx * c / w as f64) + i as f64;
                Complex32::from_polar(1.0 / (1 + i) as f32, phase as f32)
            })
            .sum::<Complex32>()
        };
        let reference = Array2::from_shape_fn((h, w), |(r, c)| field(r as f64, c as f64));
        let moving = Array2::from_shape_fn((h, w), |(r, c)| field(r as f64 + 3.3, c as f64 - 7.6));
        let region = Array2::from_shape_fn((h, w), |(r, c)| {
            let (y, x) = (r as f64 - 50.0, c as f64 - 80.0);
            y * y + x * x < 25.0 * 25.0
        });
        for region in [None, Some(&region)] {
            let s = register(&reference, &moving, region, 50).unwrap();
            assert!(
                (s.0 - 3.3).abs() < 0.011 && (s.1 + 7.6).abs() < 0.011,
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_bound_keeps_the_peak_near_zero() {
        // The moving image is the reference moved by (30, -4) px: unbounded, or with a bound
        // above 30, that is the shift found; with a 10 px bound the search may not go there.
        let (h, w) = (120, 136);
        let reference = textured_object(h, w, 11, (0.0, 0.0));
        let moving = textured_object(h, w, 11, (-30.0, 4.0));
        assert_eq!(
            register(&reference, &moving, None, 1).unwrap(),
            (30.0, -4.0)
        );
        let wide = register_within(&reference, &moving, None, 1, 40.0).unwrap();
        assert_eq!(wide, (30.0, -4.0));
        let (dy, dx) = register_within(&reference, &moving, None, 1, 10.0).unwrap();
        assert!(dy.abs() <= 10.0 && dx.abs() <= 10.0, "{dy}, {dx}");
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let a = textured_object(16, 16, 1, (0.0, 0.0));
        let b = textured_object(16, 18, 1, (0.0, 0.0));
        assert!(register(&a, &b, None, 20).is_err());
        assert!(register(&a, &a, None, 0).is_err());
        let empty = Array2::from_elem((16, 16), false);
        assert!(register(&a, &a, Some(&empty), 20).is_err());
    }
}
