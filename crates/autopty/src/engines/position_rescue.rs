//! Rescue of badly misplaced frames between alignment rounds, by a search of the loss.
//!
//! The gradient of a frame's position sees only a pixel or two around it: the fine fringes of a
//! near-field pattern make the loss oscillate within that range, and a frame placed tens of
//! pixels wrong (a neighbour pair the registration matched to the wrong feature) stays where it
//! is. Its pattern then disagrees with the object its neighbours built, so its loss stands out:
//! every frame whose loss exceeds `ratio` times the median frame's is tried at every whole-pixel
//! offset within a radius (a coarse grid, then whole pixels around the best), with the object
//! and probe held, and moved to the best offset when that halves its loss.

use crate::model::Model;
use crate::objective::Objective;
use serde::Serialize;

/// Coarse grid step (px) of the search; the best coarse offset is then refined to 1 px.
const COARSE_STEP: i64 = 2;

/// A frame moves only when its best offset has at most this fraction of its current loss.
const ACCEPT_FRACTION: f64 = 0.5;

/// One frame the rescue moved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Moved {
    /// Frame index.
    pub frame: usize,
    /// The move (px, row and column).
    pub offset: [f64; 2],
    /// Its loss relative to the median frame's, before and after the move.
    pub loss_ratio: [f64; 2],
}

/// Searches every frame of `model` whose loss exceeds `ratio` times the median frame loss
/// within `radius` px of its position, and moves it (in `model.corrections`) where the loss is
/// lowest when that at least halves it. Windows are kept inside the object.
pub fn rescue(model: &mut Model, objective: &mut Objective, ratio: f64, radius: f64) -> Vec<Moved> {
    let count = model.len();
    let losses: Vec<f64> = (0..count)
        .map(|j| objective.evaluate(model, &[j], None))
        .collect();
    let mut sorted = losses.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[count / 2].max(f64::MIN_POSITIVE);
    let n = model.frame() as f64;
    let (h, w) = model.object.dim();
    let (max_row, max_col) = (h as f64 - n, w as f64 - n);
    let reach = radius.floor() as i64;
    let mut moved = Vec::new();
    for j in (0..count).filter(|&j| losses[j] > ratio * median) {
        let start = [model.corrections[[j, 0]], model.corrections[[j, 1]]];
        let here = model.position(j);
        let mut loss_at = |dr: i64, dc: i64| -> f64 {
            let (row, col) = (here[0] + dr as f64, here[1] + dc as f64);
            if (dr as f64).hypot(dc as f64) > radius
                || !(0.0..=max_row).contains(&row)
                || !(0.0..=max_col).contains(&col)
            {
                return f64::INFINITY;
            }
            model.corrections[[j, 0]] = start[0] + dr as f64;
            model.corrections[[j, 1]] = start[1] + dc as f64;
            objective.evaluate(model, &[j], None)
        };
        let mut best = (losses[j], 0, 0);
        let coarse = (-reach..=reach).filter(|d| d % COARSE_STEP == 0);
        for dr in coarse.clone() {
            for dc in coarse.clone() {
                let l = loss_at(dr, dc);
                if l < best.0 {
                    best = (l, dr, dc);
                }
            }
        }
        let (_, br, bc) = best;
        for dr in br - COARSE_STEP + 1..br + COARSE_STEP {
            for dc in bc - COARSE_STEP + 1..bc + COARSE_STEP {
                if (dr, dc) != (br, bc) {
                    let l = loss_at(dr, dc);
                    if l < best.0 {
                        best = (l, dr, dc);
                    }
                }
            }
        }
        let (l, dr, dc) = best;
        if l <= ACCEPT_FRACTION * losses[j] {
            model.corrections[[j, 0]] = start[0] + dr as f64;
            model.corrections[[j, 1]] = start[1] + dc as f64;
            moved.push(Moved {
                frame: j,
                offset: [dr as f64, dc as f64],
                loss_ratio: [losses[j] / median, l / median],
            });
        } else {
            model.corrections[[j, 0]] = start[0];
            model.corrections[[j, 1]] = start[1];
        }
    }
    moved
}
