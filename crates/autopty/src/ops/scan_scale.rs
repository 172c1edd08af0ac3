//! Holding the offset and the scale of the scan fixed while the positions are refined.
//!
//! A common offset of all positions is a pure degeneracy (the object moves with it). A common
//! scaling is nearly one in the near field: by the Fresnel scaling theorem, a scan and object
//! magnified by `s` with a probe that gained a matching quadratic phase produce almost the same
//! holograms at a distance changed by about `s^2`, so the data pin neither the scale nor the
//! distance well, and the two drift together. The refinement therefore keeps the mean and the
//! isotropic scale of the position corrections at their starting values (taken from the
//! registration or the nominal scan) and refines everything else: the positions relative to
//! each other, including a rotation or a shear of the scan.

use ndarray::Array2;

/// Removes from `corrections - reference` (J x 2 px) its least-squares fit by `t + s (nominal -
/// centre)` (a common shift `t` and a common scaling `s` about the scan's centre), so that
/// `corrections` keeps `reference`'s offset and scale.
pub fn keep_offset_and_scale(
    corrections: &mut Array2<f64>,
    reference: &Array2<f64>,
    nominal: &Array2<f64>,
) {
    let count = corrections.nrows();
    if count == 0 {
        return;
    }
    let mean = |a: &Array2<f64>, axis: usize| a.column(axis).sum() / count as f64;
    let centre = [mean(nominal, 0), mean(nominal, 1)];
    let change = corrections.clone() - reference;
    let shift = [mean(&change, 0), mean(&change, 1)];
    let (mut along, mut spread) = (0.0, 0.0);
    for j in 0..count {
        for axis in 0..2 {
            let r = nominal[[j, axis]] - centre[axis];
            along += r * (change[[j, axis]] - shift[axis]);
            spread += r * r;
        }
    }
    let scale = if spread > 0.0 { along / spread } else { 0.0 };
    for j in 0..count {
        for axis in 0..2 {
            corrections[[j, axis]] -= shift[axis] + scale * (nominal[[j, axis]] - centre[axis]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_common_shift_and_scaling_and_keeps_the_rest() {
        let nominal = Array2::from_shape_fn((25, 2), |(j, k)| {
            if k == 0 {
                (j / 5) as f64 * 30.0
            } else {
                (j % 5) as f64 * 30.0 + 7.0
            }
        });
        let reference = Array2::from_shape_fn((25, 2), |(j, k)| ((j * 7 + k * 3) % 5) as f64 - 2.0);
        // A rotation by 0.01 rad plus local moves orthogonal to 1, row and column on the
        // 5 x 5 grid: nothing of it is a common shift or scaling.
        let local = Array2::from_shape_fn((25, 2), |(j, k)| {
            let (r, c) = ((j / 5) as f64 - 2.0, (j % 5) as f64 - 2.0);
            let bump = (r * r - 2.0) * (c * c - 2.0) * if k == 0 { 0.1 } else { -0.2 };
            bump + 0.01 * 30.0 * if k == 0 { -c } else { r }
        });
        let mut corrections = &reference + &local;
        for j in 0..25 {
            // A scaling by 2 % about an arbitrary point (= a scaling plus a shift).
            corrections[[j, 0]] += 0.02 * nominal[[j, 0]] + 3.0;
            corrections[[j, 1]] += 0.02 * nominal[[j, 1]] - 1.5;
        }
        keep_offset_and_scale(&mut corrections, &reference, &nominal);
        let expected = &reference + &local;
        for (a, b) in corrections.iter().zip(expected.iter()) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn handles_a_single_position() {
        let mut one = Array2::from_elem((1, 2), 4.0);
        keep_offset_and_scale(&mut one, &Array2::zeros((1, 2)), &Array2::zeros((1, 2)));
        assert!(one.iter().all(|v| v.abs() < 1e-12));
    }
}
