//! Scan registration from the data alone (near field), before any reconstruction.
//!
//! In the near field each pattern is an in-line hologram: the sample's features appear in it
//! almost in place, blurred by Fresnel fringes, on top of the probe's own (fixed) pattern.
//! Dividing every frame by the mean frame removes most of the probe, and the features of two
//! overlapping views are then shifted copies of each other by the difference of their
//! positions. So the relative position of every pair of neighbours can be read off the peak of a
//! cross-correlation, and the scan follows from all the pairs by a robust least-squares fit.
//! This does not need the distance, the probe or the object, and it is not fooled by the traps
//! of a reconstruction at wrong positions (which memorises them); it brings errors of tens of
//! pixels to about one pixel, from where the gradient refinement converges.
//!
//! Steps: (1) features `ln(I_j / mean I)` minus their mean over frames, high-passed (a Gaussian
//! of `high_pass` px subtracted), inside a tapered window where the mean frame is bright;
//! (2) for each pair of neighbours (nominal distance below half a frame, up to 8 per frame), the
//! normalised cross-correlation on a 2N grid, peak within `search_radius` px of the nominal
//! shift, parabolic sub-pixel peak; (3) positions minimising the Tukey-weighted squared misfit
//! of the pair shifts plus a loose prior pulling each position to its nominal one
//! (`prior_sigma` px), by iteratively reweighted conjugate gradients; (4) the pairs measured
//! again within `refine_radius` px of the fitted shifts and the fit repeated.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::fft::Fft2;
use crate::ops::smooth;
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings of the registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    /// Whether to register the scan before the reconstruction (near field, positions refined).
    pub enabled: bool,
    /// Largest error (px) of a neighbour-to-neighbour shift searched; `None` = 0.35 N.
    pub search_radius: Option<f64>,
    /// Search radius (px) of the second measurement around the fitted shifts.
    pub refine_radius: f64,
    /// Width (px) of the Gaussian whose blur is subtracted from the features; `None` = N / 10.
    pub high_pass: Option<f64>,
    /// Standard deviation (px) of the prior that ties each position to its nominal one: loose,
    /// so that the pairs decide the scan's shape and scale, the prior only its offset and the
    /// frames no reliable pair reaches.
    pub prior_sigma: f64,
    /// The registered scan's affine part (offset, scale, rotation, shear) is held during the
    /// refinement when at least this fraction of the neighbour pairs agree with the fit.
    pub trusted_fraction: f64,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            enabled: true,
            search_radius: None,
            refine_radius: 6.0,
            high_pass: None,
            prior_sigma: 30.0,
            trusted_fraction: 0.8,
        }
    }
}

impl Registration {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("registration.{name}"),
                    format!("expected a positive number of pixels, got {v}"),
                ))
            }
        };
        positive("refine_radius", self.refine_radius)?;
        positive("prior_sigma", self.prior_sigma)?;
        if !(0.0..=1.0).contains(&self.trusted_fraction) {
            return Err(Error::invalid(
                "registration.trusted_fraction",
                format!(
                    "expected a fraction in [0, 1], got {}",
                    self.trusted_fraction
                ),
            ));
        }
        if let Some(v) = self.search_radius {
            positive("search_radius", v)?;
        }
        if let Some(v) = self.high_pass {
            positive("high_pass", v)?;
        }
        Ok(())
    }
}

/// The registered scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// Position corrections (J x 2 px, row and column) relative to the nominal positions.
    pub corrections: Array2<f64>,
    /// Neighbour pairs measured.
    pub pairs: usize,
    /// Pairs that agree with the fit (the others are rejected as outliers).
    pub pairs_kept: usize,
    /// Median misfit (px) of the kept pairs.
    pub median_misfit: f64,
    /// Frames with no kept pair: they stay at their nominal positions.
    pub unregistered: usize,
}

impl Registered {
    /// True when at least `fraction` of the measured pairs agree with the fitted scan.
    pub fn trusted(&self, fraction: f64) -> bool {
        self.pairs > 0 && self.pairs_kept as f64 >= fraction * self.pairs as f64
    }
}

/// Registers the scan of `data` from its patterns; `nominal` are the nominal positions (J x 2
/// px, only their differences matter).
pub fn register(
    data: &Dataset,
    nominal: ArrayView2<f64>,
    settings: &Registration,
) -> Result<Registered> {
    settings.validate()?;
    let n = data.frame();
    let search = settings.search_radius.unwrap_or(0.35 * n as f64);
    let high_pass = settings.high_pass.unwrap_or(n as f64 / 10.0);
    let pairs = neighbour_pairs(nominal, 0.5 * n as f64, 8);
    let features = Features::new(data, high_pass);
    let guesses = pair_shifts(nominal, &pairs);
    let shifts = features.measure(&pairs, &guesses, search);
    let first = robust_fit(nominal, &pairs, &shifts, settings.prior_sigma);
    let guesses = pair_shifts(first.positions.view(), &pairs);
    let shifts = features.measure(&pairs, &guesses, settings.refine_radius);
    let fit = robust_fit(nominal, &pairs, &shifts, settings.prior_sigma);
    let mut touched = vec![false; nominal.nrows()];
    let mut misfits = Vec::new();
    for (i, &(j, k)) in pairs.iter().enumerate() {
        if fit.weights[i] > 0.0 {
            touched[j] = true;
            touched[k] = true;
            misfits.push(fit.misfits[i]);
        }
    }
    Ok(Registered {
        corrections: &fit.positions - &nominal,
        pairs: pairs.len(),
        pairs_kept: misfits.len(),
        median_misfit: median(&mut misfits),
        unregistered: touched.iter().filter(|t| !**t).count(),
    })
}

/// `p_k - p_j` (px) for each pair (j, k).
fn pair_shifts(positions: ArrayView2<f64>, pairs: &[(usize, usize)]) -> Vec<[f64; 2]> {
    pairs
        .iter()
        .map(|&(j, k)| {
            [
                positions[[k, 0]] - positions[[j, 0]],
                positions[[k, 1]] - positions[[j, 1]],
            ]
        })
        .collect()
}

/// Pairs (j, k), j < k, of frames whose nominal positions are closer than `reach` px, at most
/// `per_frame` nearest ones for each frame.
fn neighbour_pairs(nominal: ArrayView2<f64>, reach: f64, per_frame: usize) -> Vec<(usize, usize)> {
    let count = nominal.nrows();
    let mut pairs = Vec::new();
    for j in 0..count {
        let mut near: Vec<(f64, usize)> = (0..count)
            .filter(|&k| k != j)
            .map(|k| {
                let d =
                    (nominal[[k, 0]] - nominal[[j, 0]]).hypot(nominal[[k, 1]] - nominal[[j, 1]]);
                (d, k)
            })
            .filter(|(d, _)| *d < reach)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs.extend(
            near.iter()
                .take(per_frame)
                .map(|&(_, k)| (j.min(k), j.max(k))),
        );
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Windowed, high-passed hologram features of every frame, as spectra on a 2N x 2N grid.
struct Features {
    n: usize,
    fft: Fft2,
    /// Per frame, the spectrum of `a + i a^2` where `a` is the windowed feature image: both real
    /// spectra in one complex transform (separated by Hermitian symmetry).
    packed: Vec<Vec<Complex32>>,
    /// Spectrum of the window.
    window: Vec<Complex32>,
    /// Cross-correlation of the window with itself (zero shift at [0, 0]): the overlap area.
    overlap: Vec<f32>,
}

impl Features {
    fn new(data: &Dataset, high_pass: f64) -> Features {
        let n = data.frame();
        let count = data.len();
        let mut mean = Array2::<f64>::zeros((n, n));
        for frame in data.intensities.outer_iter() {
            mean.zip_mut_with(&frame, |m, &v| *m += v as f64 / count as f64);
        }
        let peak = mean
            .iter()
            .cloned()
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let floor = 1e-3 * peak;
        let window = bright_window(&mean, &data.mask, 0.05 * peak, n as f64 / 32.0);
        let logs: Vec<Array2<f64>> = data
            .intensities
            .outer_iter()
            .map(|frame| {
                Array2::from_shape_fn((n, n), |(r, c)| {
                    (frame[[r, c]] as f64).max(floor).ln() - mean[[r, c]].max(floor).ln()
                })
            })
            .collect();
        let mut average = Array2::<f64>::zeros((n, n));
        for l in &logs {
            average += l;
        }
        average /= count as f64;
        let m = 2 * n;
        let fft = Fft2::new(m);
        let packed = logs
            .into_par_iter()
            .map_init(
                || fft.work(),
                |work, mut l| {
                    l -= &average;
                    let a = &high_passed(&l, high_pass) * &window;
                    let mut z = vec![Complex32::default(); m * m];
                    for ((r, c), v) in a.indexed_iter() {
                        z[r * m + c] = Complex32::new(*v as f32, (v * v) as f32);
                    }
                    fft.forward(&mut z, work);
                    z
                },
            )
            .collect();
        let mut work = fft.work();
        let mut spectrum = vec![Complex32::default(); m * m];
        for ((r, c), v) in window.indexed_iter() {
            spectrum[r * m + c] = Complex32::new(*v as f32, 0.0);
        }
        fft.forward(&mut spectrum, &mut work);
        let mut overlap: Vec<Complex32> = spectrum.iter().map(|w| w * w.conj()).collect();
        fft.inverse(&mut overlap, &mut work);
        Features {
            n,
            fft,
            packed,
            window: spectrum,
            overlap: overlap.iter().map(|v| v.re).collect(),
        }
    }

    /// The shift (px) of frame k's features relative to frame j's, for each pair: the peak of
    /// their normalised cross-correlation over the overlap of the two windows (each image's mean
    /// and energy taken over the overlap only), searched within `radius` px of its guess.
    fn measure(
        &self,
        pairs: &[(usize, usize)],
        guesses: &[[f64; 2]],
        radius: f64,
    ) -> Vec<[f64; 2]> {
        let m = 2 * self.n;
        let min_overlap = 0.2 * self.overlap[0];
        pairs
            .par_iter()
            .zip(guesses)
            .map_init(
                || (self.fft.work(), vec![vec![Complex32::default(); m * m]; 3]),
                |(work, bufs), (&(j, k), guess)| {
                    // bufs[0] = (a_j * a_k) + i (a_j * w), bufs[1] = (a_j^2 * w) + i (w * a_k),
                    // bufs[2] = w * a_k^2, each a correlation; all are real, two per transform.
                    let i = Complex32::new(0.0, 1.0);
                    let (zj, zk) = (&self.packed[j], &self.packed[k]);
                    for q in 0..m * m {
                        let (r, c) = (q / m, q % m);
                        let mirror = ((m - r) % m) * m + (m - c) % m;
                        let aj = 0.5 * (zj[q] + zj[mirror].conj());
                        let aaj = -0.5 * i * (zj[q] - zj[mirror].conj());
                        let ak = 0.5 * (zk[q] + zk[mirror].conj());
                        let aak = -0.5 * i * (zk[q] - zk[mirror].conj());
                        let w = self.window[q];
                        bufs[0][q] = aj * ak.conj() + i * (aj * w.conj());
                        bufs[1][q] = aaj * w.conj() + i * (w * ak.conj());
                        bufs[2][q] = w * aak.conj();
                    }
                    for b in bufs.iter_mut() {
                        self.fft.inverse(b, work);
                    }
                    let ncc = |dr: i64, dc: i64| -> f32 {
                        let q =
                            dr.rem_euclid(m as i64) as usize * m + dc.rem_euclid(m as i64) as usize;
                        let ov = self.overlap[q];
                        if ov < min_overlap {
                            return f32::NEG_INFINITY;
                        }
                        let (ab, sa) = (bufs[0][q].re, bufs[0][q].im);
                        let (saa, sb) = (bufs[1][q].re, bufs[1][q].im);
                        let sbb = bufs[2][q].re;
                        let va = (saa - sa * sa / ov).max(f32::MIN_POSITIVE);
                        let vb = (sbb - sb * sb / ov).max(f32::MIN_POSITIVE);
                        (ab - sa * sb / ov) / (va * vb).sqrt()
                    };
                    peak_near(ncc, *guess, radius, self.n as i64 - 1)
                },
            )
            .collect()
    }
}

/// The sub-pixel position of the largest value of `score` within `radius` px of `guess` (and
/// within `limit` px of zero), refined by a parabola through the neighbours on each axis.
fn peak_near(
    score: impl Fn(i64, i64) -> f32,
    guess: [f64; 2],
    radius: f64,
    limit: i64,
) -> [f64; 2] {
    let reach = radius.ceil() as i64;
    let (gr, gc) = (guess[0].round() as i64, guess[1].round() as i64);
    let mut best = (f32::NEG_INFINITY, gr, gc);
    for dr in (gr - reach).max(-limit)..=(gr + reach).min(limit) {
        for dc in (gc - reach).max(-limit)..=(gc + reach).min(limit) {
            if (dr as f64 - guess[0]).hypot(dc as f64 - guess[1]) <= radius {
                let v = score(dr, dc);
                if v > best.0 {
                    best = (v, dr, dc);
                }
            }
        }
    }
    let (centre, dr, dc) = best;
    let vertex = |l: f32, r: f32| {
        let curvature = l - 2.0 * centre + r;
        if curvature < 0.0 && l.is_finite() && r.is_finite() {
            (0.5 * (l - r) / curvature) as f64
        } else {
            0.0
        }
    };
    [
        dr as f64 + vertex(score(dr - 1, dc), score(dr + 1, dc)),
        dc as f64 + vertex(score(dr, dc - 1), score(dr, dc + 1)),
    ]
}

/// A weight over the frame, 1 well inside the region where `mean` exceeds `threshold` (and the
/// mask is set), falling smoothly to 0 over a few `taper` px inside its edge.
fn bright_window(
    mean: &Array2<f64>,
    mask: &Array2<bool>,
    threshold: f64,
    taper: f64,
) -> Array2<f64> {
    let n = mean.nrows();
    let mut inside = Array2::from_shape_fn((n, n), |(r, c)| {
        let on = mean[[r, c]] > threshold && mask[[r, c]];
        Complex32::new(if on { 1.0 } else { 0.0 }, 0.0)
    });
    smooth::gaussian_rect(&mut inside, 0..n, 0..n, taper);
    inside.mapv(|v| ((2.0 * v.re as f64 - 1.0).clamp(0.0, 1.0)).powi(2))
}

/// `image` minus its blur by a Gaussian of `sigma` px.
fn high_passed(image: &Array2<f64>, sigma: f64) -> Array2<f64> {
    let n = image.nrows();
    let mut blurred = image.mapv(|v| Complex32::new(v as f32, 0.0));
    smooth::gaussian_rect(&mut blurred, 0..n, 0..n, sigma);
    let mut ones = Array2::from_elem((n, n), Complex32::new(1.0, 0.0));
    smooth::gaussian_rect(&mut ones, 0..n, 0..n, sigma);
    Array2::from_shape_fn((n, n), |(r, c)| {
        image[[r, c]] - blurred[[r, c]].re as f64 / ones[[r, c]].re.max(1e-6) as f64
    })
}

/// A fit of the positions to the pair shifts.
struct Fit {
    positions: Array2<f64>,
    weights: Vec<f64>,
    misfits: Vec<f64>,
}

/// Positions p minimising sum_i w_i |p_k - p_j - s_i|^2 + |p - nominal|^2 / prior^2 (px), with
/// Tukey biweights w_i = (1 - (misfit / cut)^2)^2 (0 beyond the cut) recomputed from the
/// misfits, the cut narrowing from 30 px by 30 % per iteration to 3 px: wrong pairs are
/// rejected gradually, so that a few of them cannot pull the first fits far.
fn robust_fit(
    nominal: ArrayView2<f64>,
    pairs: &[(usize, usize)],
    shifts: &[[f64; 2]],
    prior: f64,
) -> Fit {
    let mut weights = vec![1.0; pairs.len()];
    let mut positions = nominal.to_owned();
    let mut misfits = vec![0.0; pairs.len()];
    for iteration in 0..16 {
        for axis in 0..2 {
            let s: Vec<f64> = shifts.iter().map(|s| s[axis]).collect();
            let solved = solve_axis(nominal.column(axis).to_vec(), pairs, &s, &weights, prior);
            positions
                .column_mut(axis)
                .assign(&ndarray::Array1::from(solved));
        }
        for (i, &(j, k)) in pairs.iter().enumerate() {
            let dr = positions[[k, 0]] - positions[[j, 0]] - shifts[i][0];
            let dc = positions[[k, 1]] - positions[[j, 1]] - shifts[i][1];
            misfits[i] = dr.hypot(dc);
        }
        let cut = (30.0 * 0.7f64.powi(iteration)).max(3.0);
        for (w, m) in weights.iter_mut().zip(&misfits) {
            let u = m / cut;
            *w = if u < 1.0 { (1.0 - u * u).powi(2) } else { 0.0 };
        }
    }
    Fit {
        positions,
        weights,
        misfits,
    }
}

/// Conjugate gradients on (L_w + I / prior^2) p = L-side data + nominal / prior^2, one axis.
fn solve_axis(
    nominal: Vec<f64>,
    pairs: &[(usize, usize)],
    shifts: &[f64],
    weights: &[f64],
    prior: f64,
) -> Vec<f64> {
    let count = nominal.len();
    let tau = 1.0 / (prior * prior);
    let apply = |p: &[f64], out: &mut [f64]| {
        for (o, v) in out.iter_mut().zip(p) {
            *o = tau * v;
        }
        for (&(j, k), &w) in pairs.iter().zip(weights) {
            let d = w * (p[k] - p[j]);
            out[k] += d;
            out[j] -= d;
        }
    };
    let mut rhs: Vec<f64> = nominal.iter().map(|v| tau * v).collect();
    for ((&(j, k), &w), &s) in pairs.iter().zip(weights).zip(shifts) {
        rhs[k] += w * s;
        rhs[j] -= w * s;
    }
    let mut p = nominal;
    let mut ap = vec![0.0; count];
    apply(&p, &mut ap);
    let mut r: Vec<f64> = rhs.iter().zip(&ap).map(|(b, a)| b - a).collect();
    let mut d = r.clone();
    let mut rr: f64 = r.iter().map(|v| v * v).sum();
    let target = 1e-20 * rhs.iter().map(|v| v * v).sum::<f64>().max(1e-300);
    for _ in 0..10 * count.max(10) {
        if rr <= target {
            break;
        }
        apply(&d, &mut ap);
        let alpha = rr / d.iter().zip(&ap).map(|(a, b)| a * b).sum::<f64>();
        for i in 0..count {
            p[i] += alpha * d[i];
            r[i] -= alpha * ap[i];
        }
        let next: f64 = r.iter().map(|v| v * v).sum();
        for i in 0..count {
            d[i] = r[i] + next / rr * d[i];
        }
        rr = next;
    }
    p
}

/// The upper median of `values` (sorted in place; NaN when empty).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_shifts_match_the_true_shifts() {
        // The `paper` set-up cut to a 5 x 5 scan; the shifts are searched around the nominal
        // ones, which err by 10 px per position.
        let mut cfg = crate::sim::preset("paper").unwrap();
        cfg.scan.rows = 5;
        cfg.scan.cols = 5;
        let (data, truth) = crate::sim::simulate(&cfg).unwrap();
        let n = data.frame();
        let nominal = data.positions_in_pixels(data.geometry.sample_pixel(), 0.0);
        let pairs = neighbour_pairs(truth.positions.view(), 0.5 * n as f64, 8);
        let features = Features::new(&data, n as f64 / 10.0);
        let guesses = pair_shifts(nominal.view(), &pairs);
        let measured = features.measure(&pairs, &guesses, 0.35 * n as f64);
        let true_shifts = pair_shifts(truth.positions.view(), &pairs);
        let mut errors: Vec<f64> = true_shifts
            .iter()
            .zip(&measured)
            .map(|(t, m)| (m[0] - t[0]).hypot(m[1] - t[1]))
            .collect();
        let med = median(&mut errors);
        let within = errors.iter().filter(|e| **e < 2.0).count();
        eprintln!(
            "{} pairs: median error {med:.2} px, {within} within 2 px",
            pairs.len()
        );
        // Measured: median 0.5 px.
        assert!(med < 0.8, "median pair error {med} px");
        assert!(
            within * 10 >= pairs.len() * 8,
            "{within} of {} within 2 px",
            pairs.len()
        );
    }

    #[test]
    fn the_fit_rejects_wrong_pairs() {
        // A 4 x 4 grid, true positions 30 px apart, nominal ones off by up to 6 px; every
        // neighbour pair measured exactly except every seventh, measured 15 px wrong. (The prior
        // towards the nominal positions pulls the fit by about 0.01 px.)
        let truth = Array2::from_shape_fn((16, 2), |(j, k)| {
            30.0 * if k == 0 {
                (j / 4) as f64
            } else {
                (j % 4) as f64
            }
        });
        let nominal = Array2::from_shape_fn((16, 2), |(j, k)| {
            truth[[j, k]] + 6.0 * (((j * 5 + k * 3) % 7) as f64 / 3.0 - 1.0)
        });
        let pairs = neighbour_pairs(truth.view(), 45.0, 8);
        let shifts: Vec<[f64; 2]> = pairs
            .iter()
            .enumerate()
            .map(|(i, &(j, k))| {
                let wrong = if i % 7 == 3 { 15.0 } else { 0.0 };
                [
                    truth[[k, 0]] - truth[[j, 0]] + wrong,
                    truth[[k, 1]] - truth[[j, 1]],
                ]
            })
            .collect();
        let fit = robust_fit(nominal.view(), &pairs, &shifts, 10.0);
        let offset = [
            (&fit.positions - &truth).column(0).mean().unwrap(),
            (&fit.positions - &truth).column(1).mean().unwrap(),
        ];
        for j in 0..16 {
            for k in 0..2 {
                let e = fit.positions[[j, k]] - truth[[j, k]] - offset[k];
                assert!(e.abs() < 0.05, "position {j} axis {k} off by {e}");
            }
        }
        for (i, w) in fit.weights.iter().enumerate() {
            assert_eq!(*w == 0.0, i % 7 == 3, "pair {i} weight {w}");
        }
    }
}
