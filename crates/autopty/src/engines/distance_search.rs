//! Search of the propagation distance before the gradient run, on the profile of the loss.
//!
//! The loss as a function of the distance alone, with the object and probe refitted at each
//! trial distance, has a clear minimum at the true distance; but the joint gradient descent moves
//! the distance only slowly, because every change of the distance has to be followed by the
//! whole object (a long, narrow valley of the joint loss). The search therefore reconstructs the
//! object and probe from scratch for a few epochs at each trial distance (positions and distance
//! frozen) and keeps the distance whose loss is lowest:
//!
//! 1. `points` trial distances spaced evenly in `ln z` over `[z0 / (1 + range), z0 (1 + range)]`;
//! 2. four more at a third and two thirds of a step on either side of the best one;
//! 3. a parabola through the best of all trials and its two nearest neighbours (in `ln z`).
//!
//! When the lowest coarse trial is at an end of the interval, the search keeps the stored
//! distance and says so.
//!
//! Its result is the starting distance of the gradient run, which refines it further.
//! Wrong positions bias the profile towards longer distances (blur hides misplacement), so the
//! search is as good as the positions it starts from.

use crate::dataset::Dataset;
use crate::engines::gradient::{fresh_start, run_from, GradientSettings};
use crate::engines::Control;
use crate::error::{Error, Result};
use crate::model::ModelSettings;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// Settings of the distance search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistanceSearch {
    /// Whether to search (only when the distance is refined at all).
    pub enabled: bool,
    /// Relative half-width of the searched interval: `z0 / (1 + range)` to `z0 (1 + range)`.
    pub range: f64,
    /// Trial distances in the first, coarse pass (at least 3).
    pub points: usize,
    /// Epochs of object and probe reconstruction at each trial distance.
    pub epochs: usize,
    /// Fraction of the frames each trial fits: those nearest the scan's centre (1 = all). A
    /// trial's cost is in proportion; the centre's frames overlap the most, and the frames the
    /// registration misplaces are mostly at the scan's edge.
    pub frames: f64,
}

impl Default for DistanceSearch {
    fn default() -> Self {
        DistanceSearch {
            enabled: true,
            range: 0.4,
            points: 9,
            epochs: 20,
            frames: 1.0,
        }
    }
}

impl DistanceSearch {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.range.is_finite() && self.range > 0.0 && self.range < 10.0) {
            return Err(Error::invalid(
                "distance_search.range",
                format!("expected a relative width in (0, 10), got {}", self.range),
            ));
        }
        if !(self.frames > 0.0 && self.frames <= 1.0) {
            return Err(Error::invalid(
                "distance_search.frames",
                format!("expected a fraction in (0, 1], got {}", self.frames),
            ));
        }
        if self.points < 3 || self.epochs == 0 {
            return Err(Error::invalid(
                "distance_search",
                "expected at least 3 points and 1 epoch per point",
            ));
        }
        Ok(())
    }
}

/// One trial: distance (m) and the loss after the trial's epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Trial {
    /// Trial distance (m).
    pub distance: f64,
    /// Loss of the last epoch (normalised as in the history).
    pub loss: f64,
}

/// The outcome of a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchResult {
    /// The chosen distance (m).
    pub distance: f64,
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
    /// False when the lowest loss lay at an end of the interval; the stored distance is then
    /// kept.
    pub interior: bool,
}

/// Searches the distance for `data` around `z0` (m), with the scan positions corrected by
/// `corrections` (J x 2 px; `None` = the nominal positions).
pub fn search(
    data: &Dataset,
    model_settings: &ModelSettings,
    gradient: &GradientSettings,
    search: &DistanceSearch,
    z0: f64,
    corrections: Option<&Array2<f64>>,
    control: &Control,
) -> Result<SearchResult> {
    search.validate()?;
    let context = Context {
        data,
        model_settings,
        gradient,
        search,
        corrections,
        control,
    };
    let half = (1.0 + search.range).ln();
    let step = 2.0 * half / (search.points - 1) as f64;
    let mut trials: Vec<(f64, f64)> = Vec::new();
    let trial = |trials: &mut Vec<(f64, f64)>, t: f64| -> Result<()> {
        let loss = context.loss_at(z0 * t.exp())?;
        trials.push((t, loss));
        Ok(())
    };
    for k in 0..search.points {
        trial(&mut trials, -half + step * k as f64)?;
    }
    let best = best_of(&trials);
    if (best.abs() - half).abs() < 1e-9 {
        // No minimum inside the interval (typically: positions too far off, which favours
        // long distances): keep the stored distance rather than an edge of the interval.
        return Ok(SearchResult {
            distance: z0,
            trials: to_trials(&trials, z0),
            interior: false,
        });
    }
    for f in [-2.0, -1.0, 1.0, 2.0] {
        trial(&mut trials, best + f * step / 3.0)?;
    }
    // Parabola through the best trial and its nearest neighbours on either side.
    let mut sorted = trials.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let k = (0..sorted.len())
        .min_by(|&a, &b| sorted[a].1.total_cmp(&sorted[b].1))
        .unwrap_or(0);
    let mut t_best = sorted[k].0;
    if k > 0 && k + 1 < sorted.len() {
        let (a, b, c) = (sorted[k - 1], sorted[k], sorted[k + 1]);
        if let Some(v) = parabola_vertex(a, b, c) {
            t_best = v.clamp(a.0, c.0);
        }
    }
    Ok(SearchResult {
        distance: z0 * t_best.exp(),
        trials: to_trials(&trials, z0),
        interior: true,
    })
}

fn to_trials(trials: &[(f64, f64)], z0: f64) -> Vec<Trial> {
    trials
        .iter()
        .map(|&(t, loss)| Trial {
            distance: z0 * t.exp(),
            loss,
        })
        .collect()
}

/// What every trial shares.
struct Context<'a, 'c> {
    data: &'a Dataset,
    model_settings: &'a ModelSettings,
    gradient: &'a GradientSettings,
    search: &'a DistanceSearch,
    corrections: Option<&'a Array2<f64>>,
    control: &'a Control<'c>,
}

impl Context<'_, '_> {
    /// Loss after reconstructing the object and probe from scratch at `distance`.
    fn loss_at(&self, distance: f64) -> Result<f64> {
        let Context {
            data,
            model_settings,
            gradient,
            search,
            corrections,
            control,
        } = *self;
        let (model, objective) =
            fresh_start(data, model_settings, gradient, distance, corrections)?;
        let mut settings = gradient.clone();
        settings.epochs = search.epochs;
        settings.positions.enabled = false;
        settings.distance.enabled = false;
        settings.object_smoothing = 0.0;
        settings.lr_final_fraction = 1.0;
        if search.frames < 1.0 {
            settings.held_out = outside_centre(&model.positions(), search.frames);
        }
        let quiet = Control {
            on_epoch: &mut |_| {},
            stop: control.stop,
        };
        let outcome = run_from(data, model, objective, &settings, quiet)?;
        if let Some(why) = outcome.stopped_early {
            return Err(Error::invalid(
                "distance search",
                format!("the trial at {distance:.6} m stopped: {why}"),
            ));
        }
        Ok(outcome
            .reconstruction
            .history
            .last()
            .map_or(f64::INFINITY, |s| s.loss))
    }
}

/// The frames (rows of `positions`) other than the `fraction` of them nearest the positions'
/// mean (at least 1 kept).
fn outside_centre(positions: &Array2<f64>, fraction: f64) -> Vec<usize> {
    let count = positions.nrows();
    let keep = ((fraction * count as f64).ceil() as usize).clamp(1, count.max(1));
    let Some(mean) = positions.mean_axis(ndarray::Axis(0)) else {
        return Vec::new();
    };
    let mut order: Vec<(f64, usize)> = positions
        .outer_iter()
        .enumerate()
        .map(|(j, p)| ((p[0] - mean[0]).hypot(p[1] - mean[1]), j))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<usize> = order[keep..].iter().map(|&(_, j)| j).collect();
    out.sort_unstable();
    out
}

/// The abscissa of the lowest trial.
fn best_of(trials: &[(f64, f64)]) -> f64 {
    trials
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.0, |t| t.0)
}

/// Vertex of the parabola through three points with distinct abscissae, if it opens upwards.
fn parabola_vertex(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> Option<f64> {
    let d1 = (b.1 - a.1) / (b.0 - a.0);
    let d2 = (c.1 - b.1) / (c.0 - b.0);
    let curvature = (d2 - d1) / (c.0 - a.0);
    if curvature <= 0.0 || !curvature.is_finite() {
        return None;
    }
    // y' = d1 + curvature (2x - a - b) = 0.
    Some(0.5 * (a.0 + b.0) - d1 / (2.0 * curvature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parabola_vertex_is_exact_for_a_parabola() {
        let f = |x: f64| 3.0 * (x - 0.37).powi(2) + 1.0;
        let v = parabola_vertex((-1.0, f(-1.0)), (0.2, f(0.2)), (2.0, f(2.0))).unwrap();
        assert!((v - 0.37).abs() < 1e-12, "{v}");
        assert!(parabola_vertex((0.0, 0.0), (1.0, 1.0), (2.0, 0.0)).is_none());
    }

    #[test]
    fn keeps_the_frames_nearest_the_centre() {
        // A 3 x 3 grid: the centre frame is 4, its four edge neighbours 1, 3, 5, 7.
        let grid = Array2::from_shape_fn((9, 2), |(j, k)| [(j / 3) as f64, (j % 3) as f64][k]);
        assert_eq!(
            outside_centre(&grid, 1.0 / 9.0),
            vec![0, 1, 2, 3, 5, 6, 7, 8]
        );
        assert_eq!(outside_centre(&grid, 5.0 / 9.0), vec![0, 2, 6, 8]);
        assert!(outside_centre(&grid, 1.0).is_empty());
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = DistanceSearch {
            range: -0.1,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("range"));
        let bad = DistanceSearch {
            points: 2,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = DistanceSearch {
            frames: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("frames"));
    }
}
