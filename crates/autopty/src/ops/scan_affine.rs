//! Holding the affine part of the scan fixed while the positions are refined.
//!
//! A common offset of all positions is a pure degeneracy (the object moves with it). A common
//! scaling is nearly one in the near field: by the Fresnel scaling theorem, a scan and object
//! magnified by `s` with a probe that gained a matching quadratic phase produce almost the same
//! holograms at a distance changed by about `s^2`, so the data pin neither the scale nor the
//! distance well, and the two drift together; measured on the `paper` preset, the scale also
//! drifts differently along the two axes (by 1-2 %) while the distance is far off. The
//! refinement therefore moves positions only relative to each other: after each epoch, the
//! affine map (offset, scale, rotation, shear) that best explains how the corrections changed
//! is removed from the change, and the scan keeps the affine part it started with (from the
//! registration, or the nominal scan).

use super::least_squares::NormalEquations;
use ndarray::Array2;

/// Removes from `corrections - reference` (J x 2 px) its least-squares fit by an affine function
/// of `nominal` (J x 2 px): `corrections` keeps `reference`'s affine part and only its
/// position-to-position differences change. With fewer than three positions, or positions on
/// a line, only the mean (and the fitted part along the line) is removed.
pub fn keep_affine_part(
    corrections: &mut Array2<f64>,
    reference: &Array2<f64>,
    nominal: &Array2<f64>,
) {
    let change = &*corrections - reference;
    *corrections = reference + &affine_residual(nominal, &change, None);
}

/// `values - A(points)` (J x 2 each), with `A` the affine map (offset and 2 x 2 matrix) of
/// `points` that fits `values` best by least squares over the rows where `keep` is true (all
/// rows when `None`). Where the kept points have no extent along a direction (a line scan, a
/// single point), a small ridge leaves that linear term at zero, so only the mean (and the fit
/// along the line) is removed.
pub fn affine_residual(
    points: &Array2<f64>,
    values: &Array2<f64>,
    keep: Option<&[bool]>,
) -> Array2<f64> {
    let count = points.nrows();
    let kept = |j: usize| keep.is_none_or(|k| k[j]);
    let used = (0..count).filter(|&j| kept(j)).count();
    let mut residual = values.clone();
    if used == 0 {
        return residual;
    }
    // Centred coordinates keep the normal equations well conditioned.
    let centre = [0, 1].map(|axis| {
        (0..count)
            .filter(|&j| kept(j))
            .map(|j| points[[j, axis]])
            .sum::<f64>()
            / used as f64
    });
    let basis = |j: usize| [1.0, points[[j, 0]] - centre[0], points[[j, 1]] - centre[1]];
    for axis in 0..2 {
        let mut eq = NormalEquations::<3>::default();
        for j in (0..count).filter(|&j| kept(j)) {
            eq.add(&basis(j), values[[j, axis]], 1.0);
        }
        // A small ridge on the linear terms leaves them at zero where the points have no extent.
        eq.ridge(1..3, 1e-9);
        let coef = eq.solve();
        for j in 0..count {
            let b = basis(j);
            residual[[j, axis]] -= coef[0] * b[0] + coef[1] * b[1] + coef[2] * b[2];
        }
    }
    residual
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_an_affine_change_and_keeps_the_rest() {
        let nominal = Array2::from_shape_fn((25, 2), |(j, k)| {
            if k == 0 {
                (j / 5) as f64 * 30.0
            } else {
                (j % 5) as f64 * 30.0 + 7.0
            }
        });
        let reference = Array2::from_shape_fn((25, 2), |(j, k)| ((j * 7 + k * 3) % 5) as f64 - 2.0);
        // Local moves orthogonal to 1, row and column on the 5 x 5 grid: no affine part.
        let local = Array2::from_shape_fn((25, 2), |(j, k)| {
            let (r, c) = ((j / 5) as f64 - 2.0, (j % 5) as f64 - 2.0);
            (r * r - 2.0) * (c * c - 2.0) * if k == 0 { 0.1 } else { -0.2 }
        });
        let mut corrections = &reference + &local;
        for j in 0..25 {
            // A scale of 2 %, a rotation and an offset added on top.
            let (y, x) = (nominal[[j, 0]], nominal[[j, 1]]);
            corrections[[j, 0]] += 0.02 * y + 0.01 * x + 3.0;
            corrections[[j, 1]] += -0.01 * y + 0.02 * x - 1.5;
        }
        keep_affine_part(&mut corrections, &reference, &nominal);
        let expected = &reference + &local;
        for (a, b) in corrections.iter().zip(expected.iter()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn handles_a_line_scan_and_a_single_position() {
        let nominal =
            Array2::from_shape_fn((4, 2), |(j, k)| if k == 0 { 10.0 } else { j as f64 * 20.0 });
        let reference = Array2::zeros((4, 2));
        let mut corrections = Array2::from_shape_fn((4, 2), |(j, _)| 2.0 + 0.1 * j as f64);
        keep_affine_part(&mut corrections, &reference, &nominal);
        assert!(
            corrections.iter().all(|v| v.abs() < 1e-6),
            "{corrections:?}"
        );
        let mut one = Array2::from_elem((1, 2), 4.0);
        keep_affine_part(&mut one, &Array2::zeros((1, 2)), &Array2::zeros((1, 2)));
        assert!(one.iter().all(|v| v.abs() < 1e-12));
    }
}
