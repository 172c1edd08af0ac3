//! Wrong metadata on request: the stored positions and distance a reconstruction must correct.
//!
//! Stored positions are the true ones plus independent Gaussian errors of standard deviation
//! sigma px on each axis; the stored refined distance (the distance for a plane wave, the
//! focus-to-sample distance for a point source) is the true one times `1 + error`. The data
//! themselves are untouched.

use crate::geometry::Geometry;
use ndarray::Array2;
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;

/// True positions (px) plus Gaussian errors of standard deviation `sigma` px per coordinate.
pub fn jitter_positions(positions: &Array2<f64>, sigma: f64, rng: &mut Pcg64) -> Array2<f64> {
    if sigma <= 0.0 {
        return positions.clone();
    }
    let normal = Normal::new(0.0, sigma).expect("sigma is finite and positive");
    positions.mapv(|v| v + normal.sample(rng))
}

/// The geometry with its refined distance multiplied by `1 + relative_error`.
pub fn misstate_distance(geometry: &Geometry, relative_error: f64) -> Geometry {
    geometry.with_refined_distance(geometry.refined_distance() * (1.0 + relative_error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Regime;
    use rand::SeedableRng;

    #[test]
    fn jitter_has_the_requested_spread() {
        let p = Array2::from_shape_fn((500, 2), |(j, a)| (j * 3 + a) as f64);
        let q = jitter_positions(&p, 4.0, &mut Pcg64::seed_from_u64(9));
        let d: Vec<f64> = (&q - &p).iter().cloned().collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let std = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!(
            mean.abs() < 0.4 && (std - 4.0).abs() < 0.3,
            "mean {mean}, std {std}"
        );
        assert_eq!(jitter_positions(&p, 0.0, &mut Pcg64::seed_from_u64(9)), p);
    }

    #[test]
    fn distance_error_scales_the_refined_distance() {
        let mut g = Geometry {
            regime: Regime::NearField,
            wavelength: 1e-9,
            detector_pixel: 1e-6,
            distance: 0.1,
            source_distance: None,
            frame: 64,
        };
        assert!((misstate_distance(&g, 0.3).distance - 0.13).abs() < 1e-15);
        g.source_distance = Some(0.02);
        let s = misstate_distance(&g, -0.1);
        assert_eq!(s.distance, 0.1);
        assert!((s.source_distance.unwrap() - 0.018).abs() < 1e-15);
    }
}
