//! Data losses of one diffraction pattern, with the incoherent mode sum folded in.
//!
//! The model intensity is the incoherent sum `I = sum_m |Psi_m|^2` over probe modes. For each
//! loss `L(I)` the gradient with respect to each mode's detector field is
//! `g_m = 2 dL/dI Psi_m` (the convention `g = dL/da + i dL/db`). Only pixels with mask weight 1
//! count.
//!
//! - amplitude: `L = sum (sqrt(I + b) - sqrt(I_meas + b))^2`,
//!   `g_m = 2 (1 - sqrt(I_meas + b)/sqrt(I + b)) Psi_m` (the default; robust to Poisson noise,
//!   the square roots of the data are taken once);
//! - intensity: `L = sum (I - I_meas)^2`;
//! - Poisson negative log-likelihood, as the deviance (zero for a perfect fit, never negative):
//!   `L = sum (I + b) - (I_meas + b) - (I_meas + b) ln((I + b) / (I_meas + b))`.
//!
//! `b` is the detector's noise floor (photons per pixel, 0 for a photon-counting detector): the
//! variance of the counts a pixel holds after dark subtraction. A dark-subtracted count is close
//! to a Poisson count of `I + b` shifted by `b`, so comparing `I + b` with `I_meas + b` weights
//! each pixel by its real noise: where the dark noise outweighs the signal, a pixel counts less.

use crate::simd::wide_kernel;
use num_complex::Complex32;
use serde::{Deserialize, Serialize};

/// Which data term to minimise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Squared difference of amplitudes (default).
    #[default]
    Amplitude,
    /// Squared difference of intensities.
    Intensity,
    /// Poisson negative log-likelihood.
    Poisson,
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "amplitude" => Ok(LossKind::Amplitude),
            "intensity" => Ok(LossKind::Intensity),
            "poisson" => Ok(LossKind::Poisson),
            _ => Err(format!(
                "unknown loss '{s}': expected amplitude, intensity or poisson"
            )),
        }
    }
}

/// Intensity floor inside the Poisson logarithm (photons).
const POISSON_EPS: f32 = 1e-3;

/// One measured pattern: amplitudes `sqrt(I_meas + b)`, intensities and the mask weights (0 or
/// 1). Only the field the loss reads must be filled (amplitudes for [`LossKind::Amplitude`],
/// intensities for the others); the other may be empty.
#[derive(Clone, Copy)]
pub struct Measured<'a> {
    /// `sqrt(I_meas + background)` per pixel.
    pub amplitude: &'a [f32],
    /// `I_meas` per pixel (photons).
    pub intensity: &'a [f32],
    /// 1 for a valid pixel, 0 for a masked one.
    pub mask: &'a [f32],
    /// The detector's noise floor `b` (photons per pixel): the variance of the counts left
    /// after dark subtraction. The amplitude and Poisson losses compare `I + b` with
    /// `I_meas + b`, so that pixels where the dark noise outweighs the signal count less.
    pub background: f32,
}

impl<'a> Measured<'a> {
    /// The pixels `at` of the pattern (of each field that is filled, and of the mask).
    pub fn pixels(&self, at: std::ops::Range<usize>) -> Measured<'a> {
        let part = |v: &'a [f32]| if v.is_empty() { v } else { &v[at.clone()] };
        Measured {
            amplitude: part(self.amplitude),
            intensity: part(self.intensity),
            mask: &self.mask[at.clone()],
            background: self.background,
        }
    }
}

/// Transposes every N x N pattern of `patterns` and the N x N `mask` in place: the order in
/// which the fused pass of a separable near field hands the loss its detector field (see
/// [`crate::propagate::Propagator::fused_pass`]).
pub fn transpose_patterns(patterns: &mut ndarray::Array3<f32>, mask: &mut [f32]) {
    let n = patterns.shape()[1];
    transpose_frame(mask, n);
    for mut frame in patterns.outer_iter_mut() {
        transpose_frame(frame.as_slice_mut().expect("contiguous pattern"), n);
    }
}

/// Transposes the N x N frame `frame` (row-major) in place.
pub fn transpose_frame(frame: &mut [f32], n: usize) {
    let copy = frame.to_vec();
    for (r, row) in copy.chunks_exact(n).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            frame[c * n + r] = v;
        }
    }
}

/// The amplitude the amplitude loss compares with: `sqrt(I_meas + b)` for a measured count
/// `I_meas` (negative counts read as 0) and the noise floor `b`.
pub fn measured_amplitude(intensity: f32, background: f32) -> f32 {
    (intensity.max(0.0) + background).sqrt()
}

/// Loss of one pattern from the detector fields of its M modes (`fields`, M * nn values), which
/// are replaced by their gradients.
pub fn loss_and_gradient(
    kind: LossKind,
    fields: &mut [Complex32],
    nn: usize,
    data: Measured,
) -> f64 {
    loss_and_scaled_gradient(kind, fields, nn, data, 1.0)
}

wide_kernel! {
    /// [`loss_and_gradient`] with the gradients multiplied by `factor` (saves a pass where a
    /// caller needs a multiple of the gradient).
    pub fn loss_and_scaled_gradient(
        kind: LossKind,
        fields: &mut [Complex32],
        nn: usize,
        data: Measured,
        factor: f32,
    ) -> f64 {
        let (mask, b) = (data.mask, data.background);
        match kind {
            LossKind::Amplitude => sweep(fields, nn, mask, data.amplitude, factor, |a, i| {
                let s = (i + b).sqrt();
                let d = s - a;
                // Branch-free (so that it vectorises): d / s where s > 1e-12, else 0.
                let live = if s > 1e-12 { 1.0 } else { 0.0 };
                (d * d, live * d / s.max(1e-12))
            }),
            LossKind::Intensity => sweep(fields, nn, mask, data.intensity, factor, |im, i| {
                let d = i - im;
                (d * d, 2.0 * d)
            }),
            LossKind::Poisson => sweep(fields, nn, mask, data.intensity, factor, |im, i| {
                // The deviance: zero where the model matches the data, never negative.
                // With r = (model - m) / m it is m (r - ln(1 + r)), accurate near a perfect fit.
                let (m, model) = (im.max(0.0) + b + POISSON_EPS, i + b + POISSON_EPS);
                let r = (model - m) / m;
                (m * (r - r.ln_1p()), 1.0 - m / model)
            }),
        }
    }
}

/// The detector step of a fused near-field pass (see
/// [`crate::propagate::Propagator::fused_pass`]) for the N x N pattern `data`, stored in
/// transposed order, and fields of `modes` modes: [`loss_and_scaled_gradient`] of the detector
/// columns `x0..` it is handed.
pub fn loss_on_columns<'a>(
    kind: LossKind,
    data: Measured<'a>,
    n: usize,
    modes: usize,
    factor: f32,
) -> impl Fn(usize, &mut [Complex32]) -> f64 + Sync + 'a {
    move |x0, columns| {
        let span = columns.len() / modes;
        let at = data.pixels(x0 * n..x0 * n + span);
        loss_and_scaled_gradient(kind, columns, span, at, factor)
    }
}

/// One pass over the pixels: `term(v, I)` gives the loss of a pixel with measured value `v`
/// (amplitude or intensity) at model intensity `I`, and its derivative dL/dI; the fields are
/// scaled by `2 w dL/dI factor`. Pixels go in groups of eight whose losses add into eight
/// independent f32 lanes (so that the loop vectorises), and the lanes into f64 every block of
/// 256 pixels.
#[inline(always)]
fn sweep(
    fields: &mut [Complex32],
    nn: usize,
    mask: &[f32],
    values: &[f32],
    factor: f32,
    term: impl Fn(f32, f32) -> (f32, f32),
) -> f64 {
    const LANES: usize = 8;
    const BLOCK: usize = 256;
    let modes = fields.len() / nn;
    let mut total = 0.0f64;
    let pixel = |p: usize, lane: &mut f32, fields: &mut [Complex32]| {
        let i_model: f32 = (0..modes).map(|m| fields[m * nn + p].norm_sqr()).sum();
        let (l, dl_di) = term(values[p], i_model);
        *lane += mask[p] * l;
        let scale = 2.0 * mask[p] * dl_di * factor;
        for m in 0..modes {
            fields[m * nn + p] *= scale;
        }
    };
    let mut lanes = [0.0f32; LANES];
    if modes == 1 {
        let whole = nn - nn % LANES;
        let groups = fields[..whole]
            .chunks_exact_mut(LANES)
            .zip(mask.chunks_exact(LANES))
            .zip(values.chunks_exact(LANES));
        for (k, ((f8, w8), v8)) in groups.enumerate() {
            let mut scale = [0.0f32; LANES];
            for lane in 0..LANES {
                let (l, dl_di) = term(v8[lane], f8[lane].norm_sqr());
                lanes[lane] += w8[lane] * l;
                scale[lane] = 2.0 * w8[lane] * dl_di * factor;
            }
            for (f, s) in f8.iter_mut().zip(scale) {
                *f *= s;
            }
            if (k + 1) % (BLOCK / LANES) == 0 {
                total += lanes.iter().map(|&v| v as f64).sum::<f64>();
                lanes = [0.0; LANES];
            }
        }
        for p in whole..nn {
            pixel(p, &mut lanes[0], fields);
        }
    } else {
        for p in 0..nn {
            pixel(p, &mut lanes[p % LANES], fields);
            if (p + 1) % BLOCK == 0 {
                total += lanes.iter().map(|&v| v as f64).sum::<f64>();
                lanes = [0.0; LANES];
            }
        }
    }
    total + lanes.iter().map(|&v| v as f64).sum::<f64>()
}

/// The loss value alone (no gradient), for reporting and finite differences.
pub fn loss_only(kind: LossKind, fields: &[Complex32], nn: usize, data: Measured) -> f64 {
    let mut copy = fields.to_vec();
    loss_and_gradient(kind, &mut copy, nn, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{random_vec, re_inner};

    #[test]
    fn gradients_match_finite_differences() {
        let nn = 16;
        let modes = 2;
        let fields = random_vec(modes * nn, 1);
        let truth = random_vec(nn, 2);
        let intensity: Vec<f32> = truth.iter().map(|v| v.norm_sqr() * 2.0 + 0.01).collect();
        let mut mask = vec![1.0f32; nn];
        mask[3] = 0.0;
        let dir = random_vec(modes * nn, 3);
        for (kind, background) in kinds_and_backgrounds() {
            let amplitude: Vec<f32> = intensity
                .iter()
                .map(|&v| measured_amplitude(v, background))
                .collect();
            let data = Measured {
                amplitude: &amplitude,
                intensity: &intensity,
                mask: &mask,
                background,
            };
            let mut g = fields.clone();
            loss_and_gradient(kind, &mut g, nn, data);
            let eps = 1e-3f32;
            let plus: Vec<_> = fields.iter().zip(&dir).map(|(f, d)| f + d * eps).collect();
            let minus: Vec<_> = fields.iter().zip(&dir).map(|(f, d)| f - d * eps).collect();
            let fd = (loss_only(kind, &plus, nn, data) - loss_only(kind, &minus, nn, data))
                / (2.0 * eps as f64);
            let an = re_inner(&g, &dir);
            assert!(
                (fd - an).abs() < 2e-3 * an.abs().max(1.0),
                "{kind:?}, b = {background}: {an} vs {fd}"
            );
        }
    }

    #[test]
    fn one_mode_pass_matches_the_per_pixel_formulas() {
        // 325 pixels: more than one block of 256, a tail of 5 after the groups of eight, a
        // masked pixel and a dark one (zero field: no amplitude gradient).
        let nn = 325;
        let mut fields = random_vec(nn, 4);
        fields[17] = Complex32::default();
        let measured = random_vec(nn, 5);
        let intensity: Vec<f32> = measured.iter().map(|v| v.norm_sqr() + 0.01).collect();
        let mut mask = vec![1.0f32; nn];
        mask[300] = 0.0;
        for (kind, background) in kinds_and_backgrounds() {
            let b = background as f64;
            let amplitude: Vec<f32> = intensity
                .iter()
                .map(|&v| measured_amplitude(v, background))
                .collect();
            let data = Measured {
                amplitude: &amplitude,
                intensity: &intensity,
                mask: &mask,
                background,
            };
            let mut g = fields.clone();
            let loss = loss_and_scaled_gradient(kind, &mut g, nn, data, -0.5);
            let mut want = 0.0f64;
            for p in 0..nn {
                let (f, w) = (fields[p], mask[p] as f64);
                let i = f.norm_sqr() as f64;
                let (l, dl_di) = match kind {
                    LossKind::Amplitude => {
                        let (s, a) = ((i + b).sqrt(), amplitude[p] as f64);
                        ((s - a).powi(2), if s > 0.0 { (s - a) / s } else { 0.0 })
                    }
                    LossKind::Intensity => {
                        let d = i - intensity[p] as f64;
                        (d * d, 2.0 * d)
                    }
                    LossKind::Poisson => {
                        let eps = POISSON_EPS as f64;
                        let (m, d) = (intensity[p] as f64 + b + eps, i + b + eps);
                        (d - m - m * (d / m).ln(), 1.0 - m / d)
                    }
                };
                want += w * l;
                let expect = f * (-0.5 * 2.0 * w * dl_di) as f32;
                assert!(
                    (g[p] - expect).norm() < 1e-4 * (1.0 + expect.norm()),
                    "{kind:?}, b = {background}, pixel {p}: {} vs {expect}",
                    g[p]
                );
            }
            assert!(
                (loss - want).abs() < 1e-5 * want.abs(),
                "{kind:?}, b = {background}: {loss} vs {want}"
            );
        }
    }

    /// Every loss, without and with a noise floor.
    fn kinds_and_backgrounds() -> impl Iterator<Item = (LossKind, f32)> {
        [LossKind::Amplitude, LossKind::Intensity, LossKind::Poisson]
            .into_iter()
            .flat_map(|kind| [(kind, 0.0), (kind, 1.5)])
    }

    #[test]
    fn poisson_deviance_is_zero_at_the_data_and_positive_elsewhere() {
        let nn = 3;
        let intensity = vec![0.0f32, 4.0, 2500.0];
        let mask = vec![1.0f32; nn];
        for background in [0.0, 20.0] {
            let data = Measured {
                amplitude: &[],
                intensity: &intensity,
                mask: &mask,
                background,
            };
            let at = |scale: f32| -> Vec<Complex32> {
                intensity
                    .iter()
                    .map(|&i| Complex32::new((i * scale).sqrt(), 0.0))
                    .collect()
            };
            let perfect = loss_only(LossKind::Poisson, &at(1.0), nn, data);
            assert!(perfect.abs() < 1e-3, "b = {background}: {perfect}");
            for scale in [0.9, 1.1] {
                let off = loss_only(LossKind::Poisson, &at(scale), nn, data);
                assert!(off > 0.5, "b = {background}, scale {scale}: {off}");
            }
        }
    }

    #[test]
    fn masked_pixels_do_not_count() {
        let nn = 4;
        let fields = vec![Complex32::new(1.0, 0.0); nn];
        let amplitude = vec![0.0, 1.0, 1.0, 1.0];
        let intensity = vec![0.0, 1.0, 1.0, 1.0];
        let mask = vec![0.0, 1.0, 1.0, 1.0];
        let data = Measured {
            amplitude: &amplitude,
            intensity: &intensity,
            mask: &mask,
            background: 0.0,
        };
        assert_eq!(loss_only(LossKind::Amplitude, &fields, nn, data), 0.0);
    }
}
