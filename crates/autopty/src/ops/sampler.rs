//! Differentiable patch sampler (a spatial transformer with the bilinear kernel).
//!
//! The probe window at sub-pixel position `(y, x)` (top-left corner, object pixels) sees
//! `patch[r, c] = sum_{i,j} O[i, j] K(y + r - i) K(x + c - j)` with `K(t) = max(0, 1 - |t|)`.
//! Every pixel of the window shares the fractional offset `(fy, fx)`, so this is
//! `(1-fy)(1-fx) O[a, b] + (1-fy) fx O[a, b+1] + fy (1-fx) O[a+1, b] + fy fx O[a+1, b+1]`
//! with `a = floor(y) + r`, `b = floor(x) + c`.
//!
//! The vjp scatters the patch gradient back onto the object with the same four weights, and
//! gives the gradient with respect to the position:
//! `dL/dy = Re sum conj(g) * dpatch/dy`, `dpatch/dy = (1-fx)(O[a+1,b] - O[a,b]) + fx(O[a+1,b+1] - O[a,b+1])`
//! (and likewise for x). At integer positions the kernel has a kink; the derivative used is the
//! one from the right (the forward difference), as in a spatial transformer.

use ndarray::Array2;
use num_complex::Complex32;
use rayon::prelude::*;

/// Integer corner and fractional offset of a sub-pixel position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Integer row and column of the top-left corner.
    pub row: usize,
    /// Integer column of the top-left corner.
    pub col: usize,
    /// Fractional row offset in [0, 1).
    pub fy: f32,
    /// Fractional column offset in [0, 1).
    pub fx: f32,
}

impl Placement {
    /// Places an `n x n` window at `(y, x)` (px) inside an `h x w` object. Positions are clamped
    /// so that the window and its interpolation neighbours stay inside; the second value says
    /// whether clamping happened (the position gradient is then zero).
    pub fn new(y: f64, x: f64, n: usize, h: usize, w: usize) -> (Placement, bool) {
        let max_y = (h - n - 1) as f64;
        let max_x = (w - n - 1) as f64;
        let cy = y.clamp(0.0, max_y);
        let cx = x.clamp(0.0, max_x);
        let clamped = cy != y || cx != x;
        let (ry, rx) = (cy.floor(), cx.floor());
        (
            Placement {
                row: ry as usize,
                col: rx as usize,
                fy: (cy - ry) as f32,
                fx: (cx - rx) as f32,
            },
            clamped,
        )
    }

    /// Places the window at the integer corner nearest to `(y, x)` and returns the remaining
    /// sub-pixel offset `s = (y, x) - corner` in [-0.5, 0.5] (zero when clamped), for samplers
    /// that move the exit wave instead of interpolating the object.
    pub fn nearest(y: f64, x: f64, n: usize, h: usize, w: usize) -> (Placement, [f64; 2], bool) {
        let (p, clamped) = Placement::new(y.round(), x.round(), n, h, w);
        let s = if clamped {
            [0.0; 2]
        } else {
            [y - p.row as f64, x - p.col as f64]
        };
        (p, s, clamped)
    }

    fn weights(&self) -> [f32; 4] {
        let (fy, fx) = (self.fy, self.fx);
        [
            (1.0 - fy) * (1.0 - fx),
            (1.0 - fy) * fx,
            fy * (1.0 - fx),
            fy * fx,
        ]
    }
}

/// Samples the `n x n` patch at `p` into `patch` (row-major, length n*n).
pub fn sample(object: &Array2<Complex32>, p: Placement, n: usize, patch: &mut [Complex32]) {
    let w = object.ncols();
    let obj = object.as_slice().expect("object must be contiguous");
    if p.fy == 0.0 && p.fx == 0.0 {
        for r in 0..n {
            let start = (p.row + r) * w + p.col;
            patch[r * n..(r + 1) * n].copy_from_slice(&obj[start..start + n]);
        }
        return;
    }
    let [w00, w01, w10, w11] = p.weights();
    for r in 0..n {
        let top = &obj[(p.row + r) * w + p.col..(p.row + r) * w + p.col + n + 1];
        let bot = &obj[(p.row + r + 1) * w + p.col..(p.row + r + 1) * w + p.col + n + 1];
        let out = &mut patch[r * n..(r + 1) * n];
        for c in 0..n {
            out[c] = top[c] * w00 + top[c + 1] * w01 + bot[c] * w10 + bot[c + 1] * w11;
        }
    }
}

/// Adds the object gradient of the patch gradient `g` (n x n) into `grad_object`.
pub fn scatter_add(grad_object: &mut Array2<Complex32>, p: Placement, n: usize, g: &[Complex32]) {
    scatter_add_all(grad_object, &[(p, g)], |&(p, g)| (p, g), n);
}

/// [`scatter_add`] of the patch gradients (n x n each) that `patch` gives for `items` (with
/// their placements), the object's rows in parallel. Every element receives the patches' terms
/// in the order of the patches, and each patch's terms in the order of a patch-by-patch sweep,
/// so the result has the same bits on any number of threads.
pub fn scatter_add_all<T: Sync>(
    grad_object: &mut Array2<Complex32>,
    items: &[T],
    patch: impl Fn(&T) -> (Placement, &[Complex32]) + Sync,
    n: usize,
) {
    let (h, w) = grad_object.dim();
    let go = grad_object
        .as_slice_mut()
        .expect("gradient must be contiguous");
    let integer = |p: &Placement| p.fy == 0.0 && p.fx == 0.0;
    // A bilinear patch reaches one row further down.
    let rows = |p: &Placement| p.row..p.row + n + usize::from(!integer(p));
    let first = items
        .iter()
        .map(|i| rows(&patch(i).0).start)
        .min()
        .unwrap_or(0);
    let last = items
        .iter()
        .map(|i| rows(&patch(i).0).end)
        .max()
        .unwrap_or(0)
        .min(h);
    if first >= last {
        return;
    }
    let per_task = (crate::fft::task_values() / (n * items.len()).max(1)).max(1);
    go[first * w..last * w]
        .par_chunks_mut(w)
        .enumerate()
        .with_min_len(per_task)
        .for_each(|(k, out)| {
            let row = first + k;
            for item in items {
                let (p, g) = patch(item);
                if !rows(&p).contains(&row) {
                    continue;
                }
                let out = &mut out[p.col..];
                let r = row - p.row;
                if integer(&p) {
                    for (o, v) in out.iter_mut().zip(&g[r * n..(r + 1) * n]) {
                        *o += v;
                    }
                    continue;
                }
                let [w00, w01, w10, w11] = p.weights();
                // The patch row above adds its lower terms, then this patch row its upper ones.
                for (r, [near, far]) in [(r.wrapping_sub(1), [w10, w11]), (r, [w00, w01])] {
                    if r >= n {
                        continue;
                    }
                    for (c, &v) in g[r * n..(r + 1) * n].iter().enumerate() {
                        out[c] += v * near;
                        out[c + 1] += v * far;
                    }
                }
            }
        });
}

/// Gradient of the loss with respect to the position (dL/dy, dL/dx), px^-1.
pub fn position_gradient(
    object: &Array2<Complex32>,
    p: Placement,
    n: usize,
    g: &[Complex32],
) -> [f64; 2] {
    let w = object.ncols();
    let obj = object.as_slice().expect("object must be contiguous");
    let (fy, fx) = (p.fy, p.fx);
    let (mut gy, mut gx) = (0.0f64, 0.0f64);
    for r in 0..n {
        let top = &obj[(p.row + r) * w + p.col..(p.row + r) * w + p.col + n + 1];
        let bot = &obj[(p.row + r + 1) * w + p.col..(p.row + r + 1) * w + p.col + n + 1];
        let gr = &g[r * n..(r + 1) * n];
        let (mut sy, mut sx) = (0.0f32, 0.0f32);
        for c in 0..n {
            let dy = (bot[c] - top[c]) * (1.0 - fx) + (bot[c + 1] - top[c + 1]) * fx;
            let dx = (top[c + 1] - top[c]) * (1.0 - fy) + (bot[c + 1] - bot[c]) * fy;
            let gc = gr[c];
            sy += gc.re * dy.re + gc.im * dy.im;
            sx += gc.re * dx.re + gc.im * dx.im;
        }
        gy += sy as f64;
        gx += sx as f64;
    }
    [gy, gx]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{random_array2, random_vec, re_inner};

    #[test]
    fn integer_position_copies_the_window() {
        let obj = random_array2(20, 20, 1);
        let (p, clamped) = Placement::new(3.0, 5.0, 8, 20, 20);
        assert!(!clamped);
        let mut patch = vec![Complex32::default(); 64];
        sample(&obj, p, 8, &mut patch);
        assert_eq!(patch[0], obj[[3, 5]]);
        assert_eq!(patch[63], obj[[10, 12]]);
    }

    #[test]
    fn object_vjp_is_the_adjoint() {
        let (h, w, n) = (24, 27, 8);
        let obj = random_array2(h, w, 2);
        let g = random_vec(n * n, 3);
        let (p, _) = Placement::new(4.3, 7.8, n, h, w);
        let mut patch = vec![Complex32::default(); n * n];
        sample(&obj, p, n, &mut patch);
        let mut back = Array2::<Complex32>::zeros((h, w));
        scatter_add(&mut back, p, n, &g);
        let lhs = re_inner(&patch, &g);
        let rhs = re_inner(obj.as_slice().unwrap(), back.as_slice().unwrap());
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn scatter_of_a_batch_has_the_bits_of_patch_by_patch_sweeps() {
        let (h, w, n) = (160, 150, 64);
        let grads: Vec<Vec<Complex32>> = (0..4).map(|k| random_vec(n * n, 10 + k)).collect();
        let at = [(3.0, 5.0), (20.4, 30.7), (21.9, 2.25), (90.0, 80.5)];
        let patches: Vec<(Placement, &[Complex32])> = at
            .iter()
            .zip(&grads)
            .map(|(&(y, x), g)| (Placement::new(y, x, n, h, w).0, &g[..]))
            .collect();
        // The sweep of each patch in turn, row by row, the four bilinear terms per value.
        let mut expected = random_array2(h, w, 20);
        let mut got = expected.clone();
        for (p, g) in &patches {
            let [w00, w01, w10, w11] = p.weights();
            let bilinear = p.fy != 0.0 || p.fx != 0.0;
            for r in 0..n {
                for c in 0..n {
                    let v = g[r * n + c];
                    let (y, x) = (p.row + r, p.col + c);
                    if !bilinear {
                        expected[[y, x]] += v;
                        continue;
                    }
                    expected[[y, x]] += v * w00;
                    expected[[y, x + 1]] += v * w01;
                    expected[[y + 1, x]] += v * w10;
                    expected[[y + 1, x + 1]] += v * w11;
                }
            }
        }
        // On a pool's worker the rows split into tasks.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| scatter_add_all(&mut got, &patches, |&(p, g)| (p, g), n));
        assert!(expected
            .iter()
            .zip(&got)
            .all(|(a, b)| a.re.to_bits() == b.re.to_bits() && a.im.to_bits() == b.im.to_bits()));
    }

    #[test]
    fn position_gradient_matches_finite_difference() {
        let (h, w, n) = (24, 24, 8);
        let obj = random_array2(h, w, 4);
        let g = random_vec(n * n, 5);
        // L(y, x) = Re <g, patch(y, x)>: linear in the patch, so dL/dpos = position_gradient.
        let loss = |y: f64, x: f64| {
            let (p, _) = Placement::new(y, x, n, h, w);
            let mut patch = vec![Complex32::default(); n * n];
            sample(&obj, p, n, &mut patch);
            re_inner(&g, &patch)
        };
        let (y, x) = (5.37, 9.61);
        let (p, _) = Placement::new(y, x, n, h, w);
        let [gy, gx] = position_gradient(&obj, p, n, &g);
        let eps = 1e-3;
        let fy = (loss(y + eps, x) - loss(y - eps, x)) / (2.0 * eps);
        let fx = (loss(y, x + eps) - loss(y, x - eps)) / (2.0 * eps);
        assert!((gy - fy).abs() < 1e-3 * fy.abs().max(1.0), "{gy} vs {fy}");
        assert!((gx - fx).abs() < 1e-3 * fx.abs().max(1.0), "{gx} vs {fx}");
    }

    #[test]
    fn clamping_keeps_the_window_inside() {
        let (p, clamped) = Placement::new(-3.0, 100.0, 8, 20, 20);
        assert!(clamped);
        assert_eq!((p.row, p.col), (0, 11));
    }
}
