//! Line profiles through images and the 10-90 % width of an edge, a resolution estimate.

use ndarray::Array2;

/// Values of `image` at `samples` evenly spaced points from `from` to `to` (both included;
/// `(row, col)` px), by bilinear interpolation. Points outside the image give NaN.
pub fn line_profile(
    image: &Array2<f32>,
    from: (f64, f64),
    to: (f64, f64),
    samples: usize,
) -> Vec<f64> {
    let (h, w) = image.dim();
    (0..samples)
        .map(|i| {
            let t = if samples > 1 {
                i as f64 / (samples - 1) as f64
            } else {
                0.0
            };
            let y = from.0 + t * (to.0 - from.0);
            let x = from.1 + t * (to.1 - from.1);
            if h == 0
                || w == 0
                || !(0.0..=(h - 1) as f64).contains(&y)
                || !(0.0..=(w - 1) as f64).contains(&x)
            {
                return f64::NAN;
            }
            let (r0, c0) = (y.floor() as usize, x.floor() as usize);
            let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
            let (fy, fx) = (y - r0 as f64, x - c0 as f64);
            let v = |r: usize, c: usize| image[[r, c]] as f64;
            let top = v(r0, c0) * (1.0 - fx) + v(r0, c1) * fx;
            let bottom = v(r1, c0) * (1.0 - fx) + v(r1, c1) * fx;
            top * (1.0 - fy) + bottom * fy
        })
        .collect()
}

/// Distance between the 10 % and 90 % crossings of an edge in `profile`, whose samples are
/// `step` apart (any unit; the result is in the same unit). The two plateau levels are the
/// medians of the first and the last tenth of the samples (at least 2 samples each), so the
/// edge may rise or fall. The crossings are found by linear interpolation, walking out from the
/// 50 % crossing nearest the steepest sample. For a Gaussian-blurred step of standard deviation
/// sigma the width is 2.563 sigma. `None` when the profile holds NaN, is too short, or has no
/// edge.
pub fn edge_width(profile: &[f64], step: f64) -> Option<f64> {
    let n = profile.len();
    if n < 5 || profile.iter().any(|v| !v.is_finite()) || !(step.is_finite() && step > 0.0) {
        return None;
    }
    let tail = (n / 10).max(2);
    let low_end = median(&profile[..tail]);
    let high_end = median(&profile[n - tail..]);
    let span = high_end - low_end;
    let scale = profile.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if span.abs() <= 1e-9 * scale.max(f64::MIN_POSITIVE) {
        return None;
    }
    // Normalise to a rising edge from 0 to 1.
    let p: Vec<f64> = profile.iter().map(|v| (v - low_end) / span).collect();
    let steepest = (0..n - 1).max_by(|&a, &b| (p[a + 1] - p[a]).total_cmp(&(p[b + 1] - p[b])))?;
    // Walk back from the steepest segment to the last sample below 10 %, forward to the first
    // sample above 90 %.
    let crossing = |level: f64, backward: bool| -> Option<f64> {
        let mut i = steepest;
        if backward {
            loop {
                if p[i] <= level {
                    // crossing between i and i + 1
                    return Some(i as f64 + (level - p[i]) / (p[i + 1] - p[i]));
                }
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
        } else {
            i += 1;
            loop {
                if p[i] >= level {
                    return Some(i as f64 - (p[i] - level) / (p[i] - p[i - 1]));
                }
                if i + 1 == n {
                    return None;
                }
                i += 1;
            }
        }
    };
    let x10 = crossing(0.1, true)?;
    let x90 = crossing(0.9, false)?;
    Some((x90 - x10) * step)
}

/// Full width at half maximum of the line spread function of an edge (the derivative of the
/// edge), assuming a Gaussian blur: FWHM = 2.3548 sigma, the 10-90 % width 2.5631 sigma, so
/// FWHM = 0.9187 times [`edge_width`]. Same units as `step`.
pub fn edge_fwhm(profile: &[f64], step: f64) -> Option<f64> {
    let sigma_per_width = 1.0 / (2.0 * std::f64::consts::SQRT_2 * erf_inv_08());
    let fwhm_per_sigma = 2.0 * (2.0 * std::f64::consts::LN_2).sqrt();
    edge_width(profile, step).map(|w| w * sigma_per_width * fwhm_per_sigma)
}

/// erf^-1(0.8): the 10 % and 90 % points of a Gaussian edge lie at +-sqrt(2) erf^-1(0.8) sigma.
fn erf_inv_08() -> f64 {
    0.906_193_802_436_822_9
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10-90 % width of `0.5 (1 + tanh(x / w))`: `2 w atanh(0.8)`.
    fn tanh_width(w: f64) -> f64 {
        2.0 * w * 0.8f64.atanh()
    }

    #[test]
    fn edge_width_of_tanh_edges() {
        for (w, step, rising) in [(4.0, 0.5, true), (2.0, 0.25, false), (10.0, 1.0, true)] {
            let profile: Vec<f64> = (0..200)
                .map(|i| {
                    let x = (i as f64 - 100.3) * step;
                    let e = 0.5 * (1.0 + (x / w).tanh());
                    3.0 + 2.0 * if rising { e } else { 1.0 - e }
                })
                .collect();
            let got = edge_width(&profile, step).unwrap();
            let want = tanh_width(w);
            assert!((got - want).abs() < 0.01 * want, "w={w}: {got} vs {want}");
        }
    }

    #[test]
    fn edge_fwhm_of_a_gaussian_blurred_step() {
        // A step blurred by a Gaussian of sigma 2: erf edge; its LSF has FWHM 2.3548 * 2.
        let sigma = 2.0;
        let erf = |x: f64| {
            // Abramowitz-Stegun 7.1.26, |error| < 1.5e-7.
            let t = 1.0 / (1.0 + 0.3275911 * x.abs());
            let y = 1.0
                - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                    + 0.254829592)
                    * t
                    * (-x * x).exp();
            y.copysign(x)
        };
        let step = 0.1;
        let profile: Vec<f64> = (0..600)
            .map(|i| 0.5 * (1.0 + erf((i as f64 * step - 30.0) / (sigma * 2f64.sqrt()))))
            .collect();
        let got = edge_fwhm(&profile, step).unwrap();
        assert!(
            (got - 2.3548 * sigma).abs() < 0.01 * 2.3548 * sigma,
            "{got}"
        );
    }

    #[test]
    fn edge_width_through_an_image() {
        // A vertical edge at col 20.4 of width parameter 3 px, read along a diagonal line: the
        // distance along the line is sqrt(2) times the distance across the edge.
        let img = Array2::from_shape_fn((48, 48), |(_, c)| {
            (0.5 * (1.0 + ((c as f64 - 20.4) / 3.0).tanh())) as f32
        });
        let samples = 301;
        let profile = line_profile(&img, (4.0, 4.0), (40.0, 40.0), samples);
        let step = (2.0f64 * 36.0 * 36.0).sqrt() / (samples - 1) as f64;
        let got = edge_width(&profile, step).unwrap();
        let want = tanh_width(3.0) * 2.0f64.sqrt();
        assert!((got - want).abs() < 0.03 * want, "{got} vs {want}");
    }

    #[test]
    fn line_profile_is_bilinear_and_nan_outside() {
        let img = Array2::from_shape_fn((5, 6), |(r, c)| (2 * r + 3 * c) as f32);
        let p = line_profile(&img, (0.5, 0.25), (3.5, 4.75), 4);
        for (i, v) in p.iter().enumerate() {
            let (y, x) = (0.5 + i as f64, 0.25 + 1.5 * i as f64);
            assert!((v - (2.0 * y + 3.0 * x)).abs() < 1e-12);
        }
        let out = line_profile(&img, (0.0, 0.0), (0.0, 7.0), 8);
        assert!(out[5].is_finite() && out[6].is_nan() && out[7].is_nan());
        assert!(edge_width(&out, 1.0).is_none());
        assert!(edge_width(&[1.0; 20], 1.0).is_none());
    }
}
