//! Scan patterns and their placement in the object.
//!
//! Patterns are first made as probe-centre coordinates (row, col) in pixels around the origin,
//! with neighbouring positions one step `s = (1 - overlap) D` apart:
//!
//! - raster: `rows x cols` grid of pitch s;
//! - Fermat spiral: position k at radius `c sqrt(k)` and angle `k` times the golden angle, with
//!   `c = s / sqrt(pi)` so that each position has the area `s^2` of a raster cell;
//! - concentric rings: the centre plus ring k at radius `k s` holding `round(2 pi k)` positions
//!   (about s apart along the ring).
//!
//! Each position then moves by a uniform random jitter in [-j, j] px per axis. Placement turns
//! centres into top-left corners of the N x N probe window, centred in an object that leaves the
//! margin free on every side.

use super::config::{ScanConfig, ScanPattern};
use crate::error::{Error, Result};
use crate::propagate::next_fast_even;
use ndarray::Array2;
use rand::Rng;
use rand_pcg::Pcg64;

/// Probe centres (J, 2) as (row, col) px around the origin, jittered with `rng`.
pub fn centres(scan: &ScanConfig, step: f64, rng: &mut Pcg64) -> Array2<f64> {
    let mut pts: Vec<[f64; 2]> = match scan.pattern {
        ScanPattern::Raster => (0..scan.rows)
            .flat_map(|i| (0..scan.cols).map(move |j| [i as f64 * step, j as f64 * step]))
            .collect(),
        ScanPattern::Spiral => {
            let c = step / std::f64::consts::PI.sqrt();
            let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
            (0..scan.points)
                .map(|k| {
                    let (r, t) = (c * (k as f64).sqrt(), k as f64 * golden);
                    [r * t.sin(), r * t.cos()]
                })
                .collect()
        }
        ScanPattern::Rings => {
            let mut pts = vec![[0.0, 0.0]];
            for (k, &count) in ring_counts(scan.rings).iter().enumerate() {
                let radius = (k + 1) as f64 * step;
                for q in 0..count {
                    let t = 2.0 * std::f64::consts::PI * q as f64 / count as f64;
                    pts.push([radius * t.sin(), radius * t.cos()]);
                }
            }
            pts
        }
    };
    if scan.jitter > 0.0 {
        for p in pts.iter_mut() {
            p[0] += rng.random_range(-scan.jitter..=scan.jitter);
            p[1] += rng.random_range(-scan.jitter..=scan.jitter);
        }
    }
    Array2::from_shape_fn((pts.len(), 2), |(j, a)| pts[j][a])
}

/// Number of positions on each of `rings` concentric rings: `round(2 pi k)` for k = 1..=rings.
pub fn ring_counts(rings: usize) -> Vec<usize> {
    (1..=rings)
        .map(|k| (2.0 * std::f64::consts::PI * k as f64).round() as usize)
        .collect()
}

/// Probe windows placed in an object.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Top-left corners (J, 2) of the N x N windows, (row, col) object px.
    pub positions: Array2<f64>,
    /// Object size [rows, cols] (px).
    pub object_size: [usize; 2],
}

/// Places N x N windows centred on `centres` in the middle of an object with `margin` px free on
/// every side. The object is `size` if given (an error if too small), else the smallest even
/// size with prime factors 2, 3 and 5 only (fast FFTs) that fits.
pub fn place(
    centres: &Array2<f64>,
    n: usize,
    margin: f64,
    size: Option<[usize; 2]>,
) -> Result<Placement> {
    let mut positions = centres.mapv(|v| v - n as f64 / 2.0);
    let mut object_size = [0usize; 2];
    let mut needed = [0.0f64; 2];
    for (axis, mut col) in positions.columns_mut().into_iter().enumerate() {
        let lo = col.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        needed[axis] = hi - lo + n as f64 + 2.0 * margin;
        let len = match size {
            Some(s) => s[axis],
            None => next_fast_even(needed[axis].ceil() as usize),
        };
        object_size[axis] = len;
        // Centre the scanned area.
        let offset = (len as f64 - (hi - lo + n as f64)) / 2.0 - lo;
        col.mapv_inplace(|v| v + offset);
    }
    if needed[0] > object_size[0] as f64 || needed[1] > object_size[1] as f64 {
        return Err(Error::invalid(
            "simulation setting 'object.size'",
            format!(
                "positions fall outside the object: {} x {} px cannot hold the scan plus the \
                 {n} px probe window plus a {margin} px margin on each side; it needs at least \
                 {} x {} px",
                object_size[0],
                object_size[1],
                needed[0].ceil(),
                needed[1].ceil()
            ),
        ));
    }
    Ok(Placement {
        positions,
        object_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scan(pattern: ScanPattern) -> ScanConfig {
        ScanConfig {
            pattern,
            rows: 11,
            cols: 11,
            points: 200,
            rings: 4,
            overlap: 0.7,
            probe_diameter: None,
            jitter: 0.0,
            margin: 16.0,
        }
    }

    fn nearest_neighbour_distances(p: &Array2<f64>) -> Vec<f64> {
        (0..p.nrows())
            .map(|i| {
                (0..p.nrows())
                    .filter(|&j| j != i)
                    .map(|j| (p[[i, 0]] - p[[j, 0]]).hypot(p[[i, 1]] - p[[j, 1]]))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn raster_step_is_one_minus_overlap_times_diameter() {
        let step = (1.0 - 0.7) * 128.0;
        let p = centres(
            &scan(ScanPattern::Raster),
            step,
            &mut Pcg64::seed_from_u64(0),
        );
        assert_eq!(p.nrows(), 121);
        assert!((p[[1, 1]] - p[[0, 1]] - 38.4).abs() < 1e-9);
        assert!((p[[11, 0]] - p[[0, 0]] - 38.4).abs() < 1e-9);
        assert!(nearest_neighbour_distances(&p)
            .iter()
            .all(|d| (d - 38.4).abs() < 1e-9));
    }

    #[test]
    fn jitter_is_bounded_and_seeded() {
        let mut s = scan(ScanPattern::Raster);
        s.jitter = 2.0;
        let a = centres(&s, 10.0, &mut Pcg64::seed_from_u64(5));
        let b = centres(&s, 10.0, &mut Pcg64::seed_from_u64(5));
        assert_eq!(a, b);
        s.jitter = 0.0;
        let grid = centres(&s, 10.0, &mut Pcg64::seed_from_u64(5));
        let d = &a - &grid;
        let max = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max <= 2.0 && max > 1.0, "largest jitter {max}");
    }

    #[test]
    fn spiral_and_rings_have_the_step_as_typical_spacing() {
        let step = 10.0;
        let spiral = centres(
            &scan(ScanPattern::Spiral),
            step,
            &mut Pcg64::seed_from_u64(0),
        );
        let d = nearest_neighbour_distances(&spiral);
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        // Area s^2 per position: a hexagonal packing would give 1.07 s between neighbours.
        assert!(
            mean > 0.8 * step && mean < 1.2 * step,
            "spiral spacing {mean}"
        );
        let rings = centres(
            &scan(ScanPattern::Rings),
            step,
            &mut Pcg64::seed_from_u64(0),
        );
        assert_eq!(rings.nrows(), 1 + 6 + 13 + 19 + 25);
        let d = nearest_neighbour_distances(&rings);
        assert!(
            d.iter().all(|&v| v > 0.85 * step && v < 1.01 * step),
            "{d:?}"
        );
    }

    #[test]
    fn placement_keeps_the_margin_and_centres_the_scan() {
        let c = centres(
            &scan(ScanPattern::Raster),
            38.4,
            &mut Pcg64::seed_from_u64(0),
        );
        let p = place(&c, 128, 16.0, None).unwrap();
        // 384 + 128 + 32 = 544 -> 576 (2^6 3^2).
        assert_eq!(p.object_size, [576, 576]);
        for axis in 0..2 {
            let col = p.positions.column(axis);
            let lo = col.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!((lo - 32.0).abs() < 1e-9 && (576.0 - (hi + 128.0) - 32.0).abs() < 1e-9);
        }
        let e = place(&c, 128, 16.0, Some([540, 600]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("object.size") && e.contains("outside"), "{e}");
        assert!(place(&c, 128, 16.0, Some([544, 600])).is_ok());
    }
}
