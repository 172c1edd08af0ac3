//! Rescue of badly misplaced frames between alignment rounds, by a search of the loss against
//! an object rebuilt without them.
//!
//! The gradient of a frame's position sees only a pixel or two around it: the fine fringes of a
//! near-field pattern make the loss oscillate within that range, and a frame placed tens of
//! pixels wrong (a neighbour pair the registration matched to the wrong feature) stays where it
//! is. Its pattern then disagrees with the object its neighbours built, so its loss stands out:
//! every frame whose loss exceeds `ratio` times the median frame's is flagged.
//!
//! The object of the round cannot judge a flagged frame: it holds the frame's own pattern,
//! memorised where the frame was wrongly placed, which spoils the true place (a frame 30 px off
//! still overlaps it by three quarters). So the object and probe are first rebuilt from scratch
//! with the flagged frames left out (quarantine). Each flagged frame is then tried at every
//! whole-pixel offset within a radius (a coarse grid, then whole pixels around the best) against
//! that object and moved to the best offset when its loss there is below 0.7 of that at the old
//! place.
//!
//! In the near field a detector pixel sees the object close to the matching object pixel, and
//! parts of an edge frame's true place are lit by no other frame: the quarantined object is blank
//! there and would swamp the comparison. There the loss of each trial counts every detector
//! pixel in proportion to how well the other frames light the object behind it (their summed
//! probe intensity, in units of the probe's peak, at most 1), divided by the measured photons it
//! counts; trials that keep less than a quarter of the frame's weight are not taken.

use crate::dataset::Dataset;
use crate::engines::gradient::{fresh_start, run_from, GradientSettings};
use crate::engines::{registration, Control};
use crate::error::{Error, Result};
use crate::model::{Model, ModelSettings};
use crate::objective::Objective;
use crate::propagate::Propagator;
use ndarray::Array2;
use serde::Serialize;

/// A frame moves only when its best offset has at most this fraction of its current loss.
/// Measured on `paper` from the round-6 states at 0.165 and 0.2 m: the misplaced frames had
/// 0.10-0.57 of their loss at their true places; the correctly placed flagged frames had no
/// better offset at all.
const ACCEPT_FRACTION: f64 = 0.7;

/// A trial must keep at least this fraction of the frame's pixels' weight.
const MIN_WEIGHT_FRACTION: f64 = 0.25;

/// One frame the rescue moved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Moved {
    /// Frame index.
    pub frame: usize,
    /// The move (px, row and column).
    pub offset: [f64; 2],
    /// Its loss in the round relative to the median frame's (why it was searched).
    pub loss_ratio: f64,
    /// Its loss against the quarantined object at the new place over that at the old.
    pub search_ratio: f64,
}

/// How the rescue searches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RescueSettings {
    /// Frames whose loss exceeds this multiple of the median frame loss are searched.
    pub ratio: f64,
    /// Radius (px) of the search around each flagged frame.
    pub radius: f64,
    /// Epochs of the quarantined reconstruction.
    pub epochs: usize,
    /// Coarse grid step (px) of the search; the best coarse offset is then refined to 1 px.
    pub step: usize,
}

/// Flags the frames of `model` (the state a round ended with, at its distance) whose loss stands
/// out, rebuilds the object and probe without them with the engine settings `gradient`, and moves
/// each flagged frame (in `model.corrections`) where it fits that object best, when its loss there
/// is at most [`ACCEPT_FRACTION`] of that at the old place. Windows are kept inside the object.
/// Returns the frames moved.
pub fn rescue(
    data: &Dataset,
    model_settings: &ModelSettings,
    gradient: &GradientSettings,
    model: &mut Model,
    objective: &mut Objective,
    settings: RescueSettings,
    control: &Control,
) -> Result<Vec<Moved>> {
    let count = model.len();
    let losses: Vec<f64> = (0..count)
        .map(|j| objective.evaluate(model, &[j], None))
        .collect();
    let median = registration::median(&mut losses.clone()).max(f64::MIN_POSITIVE);
    let flagged: Vec<usize> = (0..count)
        .filter(|&j| losses[j] > settings.ratio * median)
        .collect();
    if flagged.is_empty() {
        return Ok(Vec::new());
    }

    let mut stage = gradient.clone();
    stage.epochs = settings.epochs;
    stage.positions.enabled = false;
    stage.distance.enabled = false;
    stage.object_smoothing = 0.0;
    stage.held_out = flagged.clone();
    let (fresh, fresh_objective) = fresh_start(
        data,
        model_settings,
        gradient,
        model.distance,
        Some(&model.corrections),
    )?;
    let quiet = Control {
        on_epoch: &mut |_| {},
        stop: control.stop,
    };
    let quarantined = run_from(data, fresh, fresh_objective, &stage, quiet)?;
    if let Some(why) = quarantined.stopped_early {
        if control.should_stop() {
            return Ok(Vec::new());
        }
        return Err(Error::invalid(
            "alignment.rescue",
            format!("the reconstruction without the flagged frames stopped: {why}"),
        ));
    }
    let mut trial = model.clone();
    trial.object.assign(&quarantined.reconstruction.object);
    trial.probe.assign(&quarantined.reconstruction.probe);
    let coverage = match objective.propagator() {
        Propagator::Near(_) => Some(coverage(&trial, &flagged)),
        _ => None,
    };

    let mut moved = Vec::new();
    for &j in &flagged {
        let search = FrameSearch {
            data,
            coverage: coverage.as_ref(),
            frame: j,
            radius: settings.radius,
            step: settings.step.max(1) as i64,
        };
        let here = search.loss(&mut trial, objective, 0, 0);
        if !here.is_finite() {
            // Too little of the frame's place is lit by the others to judge it.
            continue;
        }
        let (best, dr, dc) = search.best(&mut trial, objective, here);
        if best <= ACCEPT_FRACTION * here {
            model.corrections[[j, 0]] += dr as f64;
            model.corrections[[j, 1]] += dc as f64;
            moved.push(Moved {
                frame: j,
                offset: [dr as f64, dc as f64],
                loss_ratio: losses[j] / median,
                search_ratio: best / here,
            });
        }
    }
    Ok(moved)
}

/// How well the frames other than `left_out` light each object pixel: their summed probe
/// intensity (all modes) at their integer positions, in units of the probe's peak, at most 1.
fn coverage(model: &Model, left_out: &[usize]) -> Array2<f32> {
    let n = model.frame();
    let mut intensity = Array2::<f32>::zeros((n, n));
    for mode in model.probe.outer_iter() {
        intensity.zip_mut_with(&mode, |i, p| *i += p.norm_sqr());
    }
    let peak = intensity.iter().fold(0.0f32, |m, &v| m.max(v));
    if peak > 0.0 {
        intensity /= peak;
    }
    let (h, w) = model.object.dim();
    let mut lit = Array2::<f32>::zeros((h, w));
    for j in (0..model.len()).filter(|j| !left_out.contains(j)) {
        let [y, x] = model.position(j);
        let (row, col) = (y.max(0.0) as usize, x.max(0.0) as usize);
        let rows = n.min(h.saturating_sub(row));
        let cols = n.min(w.saturating_sub(col));
        let mut window = lit.slice_mut(ndarray::s![row..row + rows, col..col + cols]);
        window += &intensity.slice(ndarray::s![..rows, ..cols]);
    }
    lit.mapv_inplace(|v| v.min(1.0));
    lit
}

/// The search of one flagged frame.
struct FrameSearch<'a> {
    data: &'a Dataset,
    /// The other frames' light on the object (near field), see [`coverage`].
    coverage: Option<&'a Array2<f32>>,
    frame: usize,
    radius: f64,
    step: i64,
}

impl FrameSearch<'_> {
    /// The frame's loss moved by (`dr`, `dc`) px against `model`'s object, per measured photon of
    /// the pixels it counts (infinite outside the radius or the object, or when too little of
    /// the frame is lit by the other frames).
    fn loss(&self, model: &mut Model, objective: &mut Objective, dr: i64, dc: i64) -> f64 {
        let j = self.frame;
        let n = model.frame();
        let (h, w) = model.object.dim();
        let start = [model.corrections[[j, 0]], model.corrections[[j, 1]]];
        let here = model.position(j);
        let (row, col) = (here[0] + dr as f64, here[1] + dc as f64);
        if (dr as f64).hypot(dc as f64) > self.radius
            || !(0.0..=(h - n) as f64).contains(&row)
            || !(0.0..=(w - n) as f64).contains(&col)
        {
            return f64::INFINITY;
        }
        model.corrections[[j, 0]] = start[0] + dr as f64;
        model.corrections[[j, 1]] = start[1] + dc as f64;
        let loss = match self.coverage {
            Some(lit) => {
                let (r0, c0) = (row as usize, col as usize);
                let weights: Vec<f32> = lit
                    .slice(ndarray::s![r0..r0 + n, c0..c0 + n])
                    .iter()
                    .copied()
                    .collect();
                let weight: f64 = weights.iter().map(|&v| v as f64).sum();
                if weight < MIN_WEIGHT_FRACTION * (n * n) as f64 {
                    f64::INFINITY
                } else {
                    let pattern = self.data.intensities.index_axis(ndarray::Axis(0), j);
                    let photons: f64 = pattern
                        .iter()
                        .zip(&self.data.mask)
                        .zip(&weights)
                        .filter(|((_, &valid), _)| valid)
                        .map(|((&i, _), &v)| (i * v) as f64)
                        .sum();
                    objective.evaluate_weighted(model, j, &weights) / photons.max(f64::MIN_POSITIVE)
                }
            }
            None => objective.evaluate(model, &[j], None),
        };
        model.corrections[[j, 0]] = start[0];
        model.corrections[[j, 1]] = start[1];
        loss
    }

    /// The lowest loss and its offset: every offset on a coarse grid, then every whole pixel
    /// around the best; `here` is the loss at no offset.
    fn best(&self, model: &mut Model, objective: &mut Objective, here: f64) -> (f64, i64, i64) {
        let reach = self.radius.floor() as i64;
        let mut best = (here, 0, 0);
        let coarse = (-reach..=reach).filter(|d| d % self.step == 0);
        for dr in coarse.clone() {
            for dc in coarse.clone() {
                let l = self.loss(model, objective, dr, dc);
                if l < best.0 {
                    best = (l, dr, dc);
                }
            }
        }
        let (_, br, bc) = best;
        for dr in br - self.step + 1..br + self.step {
            for dc in bc - self.step + 1..bc + self.step {
                if (dr, dc) != (br, bc) {
                    let l = self.loss(model, objective, dr, dc);
                    if l < best.0 {
                        best = (l, dr, dc);
                    }
                }
            }
        }
        best
    }
}
