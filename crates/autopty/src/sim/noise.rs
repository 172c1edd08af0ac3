//! Photon scaling, shot noise and dead detector pixels.
//!
//! The noise-free intensities are scaled so that the mean total count per pattern is the
//! requested photon count; Poisson noise then draws each pixel's count from a Poisson
//! distribution with that mean. Every pattern has its own generator seeded from the simulation
//! seed and the pattern index, so the result does not depend on the number of threads.

use super::config::MaskConfig;
use ndarray::{Array2, Array3, Axis};
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};
use rand_pcg::Pcg64;
use rayon::prelude::*;

/// Independent random stream `stream` of the simulation seed.
pub fn stream_rng(seed: u64, stream: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Scales `intensities` so the mean total per pattern is `photons`; returns the factor applied.
pub fn scale_to_photons(intensities: &mut Array3<f32>, photons: f64) -> f64 {
    let patterns = intensities.len_of(Axis(0)).max(1);
    let total: f64 = intensities.iter().map(|&v| v as f64).sum();
    let scale = if total > 0.0 {
        photons * patterns as f64 / total
    } else {
        1.0
    };
    intensities.mapv_inplace(|v| (v as f64 * scale) as f32);
    scale
}

/// Replaces each expected count by a Poisson draw (stream `first_stream + j` for pattern j).
pub fn add_poisson(intensities: &mut Array3<f32>, seed: u64, first_stream: u64) {
    intensities
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(j, mut frame)| {
            let mut rng = stream_rng(seed, first_stream + j as u64);
            for v in frame.iter_mut() {
                let mean = *v as f64;
                *v = match Poisson::new(mean) {
                    Ok(d) if mean > 0.0 => d.sample(&mut rng) as f32,
                    _ => 0.0,
                };
            }
        });
}

/// The valid-pixel mask of an N x N detector (`true` = good).
pub fn detector_mask(cfg: &MaskConfig, n: usize) -> Array2<bool> {
    let c = n as f64 / 2.0;
    Array2::from_shape_fn((n, n), |(r, col)| {
        let dead = cfg.dead_columns.contains(&col) || cfg.dead_rows.contains(&r);
        let (dy, dx) = (r as f64 - c, col as f64 - c);
        let stopped = cfg.beamstop_radius > 0.0 && dy.hypot(dx) <= cfg.beamstop_radius;
        !(dead || stopped)
    })
}

/// Zeroes the pixels the mask marks invalid in every pattern.
pub fn apply_mask(intensities: &mut Array3<f32>, mask: &Array2<bool>) {
    for mut frame in intensities.axis_iter_mut(Axis(0)) {
        frame.zip_mut_with(mask, |v, &good| {
            if !good {
                *v = 0.0;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_sets_the_mean_count() {
        let mut i = Array3::from_shape_fn((3, 4, 4), |(j, r, c)| (j + r * c) as f32 * 0.1);
        scale_to_photons(&mut i, 1e5);
        let mean = i.iter().map(|&v| v as f64).sum::<f64>() / 3.0;
        assert!((mean - 1e5).abs() < 1e-2);
    }

    #[test]
    fn poisson_counts_have_the_right_mean_and_variance() {
        let lambda = 20.0f32;
        let mut i = Array3::from_elem((20, 32, 32), lambda);
        add_poisson(&mut i, 3, 100);
        assert!(i.iter().all(|v| v.fract() == 0.0 && *v >= 0.0));
        let n = i.len() as f64;
        let mean = i.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = i.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // 20480 draws: the mean is within 1 %, the variance within 5 %, of lambda.
        assert!((mean - 20.0).abs() < 0.2, "mean {mean}");
        assert!((var - 20.0).abs() < 1.0, "variance {var}");
        let mut again = Array3::from_elem((20, 32, 32), lambda);
        add_poisson(&mut again, 3, 100);
        assert_eq!(i, again);
    }

    #[test]
    fn mask_marks_dead_columns_and_beamstop() {
        let cfg = MaskConfig {
            dead_columns: vec![3],
            dead_rows: vec![],
            beamstop_radius: 2.0,
        };
        let m = detector_mask(&cfg, 16);
        assert!((0..16).all(|r| !m[[r, 3]]));
        assert!(!m[[8, 8]] && !m[[8, 10]] && !m[[6, 8]]);
        assert!(m[[8, 11]] && m[[0, 0]]);
        // 16 dead column pixels + 13 beamstop pixels (r <= 2 on the grid), none shared.
        assert_eq!(m.iter().filter(|&&g| !g).count(), 16 + 13);
        let mut i = Array3::from_elem((2, 16, 16), 5.0f32);
        apply_mask(&mut i, &m);
        assert_eq!(i[[1, 4, 3]], 0.0);
        assert_eq!(i[[1, 4, 4]], 5.0);
    }
}
