//! Alignment rounds: recovering position errors of many pixels, and the distance with them,
//! before the main gradient run.
//!
//! Two traps stop a plain joint descent when the metadata are far off. An object reconstructed
//! at wrong positions memorises each pattern where it was placed, so every position already
//! looks right to its own gradient (in near field, the fine fringes of the hologram make the
//! loss oscillate within a pixel or two of any position). And wrong positions make long
//! distances look better (blur hides misplacement), while a wrong distance keeps the object
//! from agreeing with itself at the right positions.
//!
//! Each round therefore (1) rebuilds the object and probe from scratch at the current distance
//! and positions, and refines the positions while the object gradient is smoothed by a Gaussian
//! whose width falls to zero over the round (a smooth object cannot memorise wrong placements,
//! and the next round forgets what this one memorised); (2) tries the frames whose loss stands
//! out at every whole pixel nearby, against an object rebuilt without them
//! ([`super::position_rescue`]); then (3) searches the distance
//! on the loss profile with the improved positions ([`super::distance_search`]), over the full
//! range until a search finds a minimum inside its interval, and over a narrow one after that (a
//! narrow search whose lowest loss is at an end moves the distance to that end). The smoothing
//! of the first round falls linearly to zero by the last. In the near field the rounds start
//! from the scan registered from the holograms ([`super::registration`]), about a pixel off.

use crate::dataset::Dataset;
use crate::engines::distance_search::{self, DistanceSearch, SearchResult};
use crate::engines::gradient::{fresh_start, run_from, GradientSettings};
use crate::engines::position_rescue::{self, Moved, RescueSettings};
use crate::engines::Control;
use crate::error::{Error, Result};
use crate::model::ModelSettings;
use crate::work::Meter;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Settings of the alignment rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alignment {
    /// Number of rounds (0 = none). They run only when the positions are refined.
    pub rounds: usize,
    /// Epochs of position refinement per round.
    pub epochs: usize,
    /// Position learning rate (px per step) in the rounds.
    pub position_lr: f64,
    /// Object-gradient smoothing (px) at the start of the first round; `None` = an eighth of
    /// the frame (16 px for 128 x 128 frames), or a 32nd (4 px) when the rounds start from a
    /// registered scan most neighbour pairs agree with (about a pixel off: wider smoothing lets
    /// well placed frames drift by several pixels, measured on `paper` at 0.065 m).
    pub smoothing: Option<f64>,
    /// Relative half-width of the distance searches after the first round.
    pub later_range: f64,
    /// Coarse trials of the distance searches after the first round.
    pub later_points: usize,
    /// After each round, search the frames whose loss stands out for a better position, against
    /// an object rebuilt without them in `epochs` more epochs ([`super::position_rescue`]):
    /// frames the registration placed tens of pixels wrong, which the narrow smoothing cannot
    /// pull in.
    pub rescue: bool,
    /// Frames whose loss exceeds this multiple of the median frame loss are searched.
    pub rescue_ratio: f64,
    /// Radius (px) of the search; `None` = 0.3 N.
    pub rescue_radius: Option<f64>,
    /// Epochs of the object rebuilt without the flagged frames; `None` = `epochs`.
    pub rescue_epochs: Option<usize>,
    /// Coarse grid step (px) of the rescue's search, which then refines the best coarse offset
    /// to 1 px: a flagged frame costs about `pi r^2 / step^2` loss evaluations (r the radius;
    /// 1,160 at 2 px on 128-px frames, 4.8 epoch-equivalents with 121 frames).
    pub rescue_step: usize,
}

impl Default for Alignment {
    fn default() -> Self {
        Alignment {
            rounds: 6,
            epochs: 100,
            position_lr: 0.2,
            smoothing: None,
            later_range: 0.08,
            later_points: 5,
            rescue: true,
            rescue_ratio: 3.0,
            rescue_radius: None,
            rescue_epochs: None,
            rescue_step: 2,
        }
    }
}

impl Alignment {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.rounds > 0 && self.epochs == 0 {
            return Err(Error::invalid(
                "alignment.epochs",
                "expected at least 1 epoch per round",
            ));
        }
        if !(self.position_lr.is_finite() && self.position_lr >= 0.0) {
            return Err(Error::invalid(
                "alignment.position_lr",
                format!(
                    "expected a finite non-negative number, got {}",
                    self.position_lr
                ),
            ));
        }
        if let Some(s) = self.smoothing.filter(|s| !(s.is_finite() && *s >= 0.0)) {
            return Err(Error::invalid(
                "alignment.smoothing",
                format!("expected a width >= 0 px, got {s}"),
            ));
        }
        if self.rescue_step == 0 {
            return Err(Error::invalid(
                "alignment.rescue_step",
                "expected a step of at least 1 px",
            ));
        }
        if self.rescue_epochs == Some(0) {
            return Err(Error::invalid(
                "alignment.rescue_epochs",
                "expected at least 1 epoch",
            ));
        }
        if !(self.rescue_ratio.is_finite() && self.rescue_ratio > 1.0) {
            return Err(Error::invalid(
                "alignment.rescue_ratio",
                format!("expected a number above 1, got {}", self.rescue_ratio),
            ));
        }
        if let Some(r) = self.rescue_radius.filter(|r| !(r.is_finite() && *r >= 1.0)) {
            return Err(Error::invalid(
                "alignment.rescue_radius",
                format!("expected a radius of at least 1 px, got {r}"),
            ));
        }
        DistanceSearch {
            range: self.later_range,
            points: self.later_points,
            ..DistanceSearch::default()
        }
        .validate()
        .map_err(|e| Error::invalid("alignment.later_range / later_points", e.to_string()))
    }
}

/// What one round ended with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    /// Distance (m) after the round's search.
    pub distance: f64,
    /// Median length of the position corrections (px).
    pub median_correction: f64,
    /// Loss of the last epoch of the position refinement.
    pub loss: f64,
    /// Seconds since the alignment started.
    pub seconds: f64,
    /// Frames the round's rescue moved.
    pub rescued: Vec<Moved>,
    /// The round's distance search, if one ran.
    pub search: Option<SearchResult>,
}

/// The result of the alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Aligned {
    /// Distance (m) to start the main run from.
    pub distance: f64,
    /// Position corrections (J x 2 px) to start the main run from.
    pub corrections: Array2<f64>,
    /// One entry per completed round.
    pub rounds: Vec<Round>,
}

/// Runs the alignment rounds of `gradient.alignment` on `data`, starting from the refined
/// distance `start_distance` (m) and the position corrections `initial` (J x 2 px; none =
/// nominal positions). `registered`: `initial` is a registered scan most neighbour pairs agree
/// with. `searched`: a full-range search has already found `start_distance`, so the rounds
/// search narrowly around it.
#[allow(clippy::too_many_arguments)]
pub fn align(
    data: &Dataset,
    model_settings: &ModelSettings,
    gradient: &GradientSettings,
    start_distance: f64,
    initial: Option<&Array2<f64>>,
    registered: bool,
    searched: bool,
    control: &Control,
) -> Result<Aligned> {
    let settings = &gradient.alignment;
    settings.validate()?;
    let start = Instant::now();
    let mut distance = start_distance;
    let mut corrections = initial
        .cloned()
        .unwrap_or_else(|| Array2::zeros((data.len(), 2)));
    let mut rounds = Vec::with_capacity(settings.rounds);
    let search_distance = gradient.distance.enabled && gradient.distance_search.enabled;
    // Logs each part's work (the engine counts the alignment's total).
    let mut meter = Meter::start(data.len());
    for round in 0..settings.rounds {
        if control.should_stop() {
            break;
        }
        let fraction = 1.0 - round as f64 / (settings.rounds.max(2) - 1) as f64;
        let n = data.frame() as f64;
        let sigma = settings
            .smoothing
            .unwrap_or(if registered { n / 32.0 } else { n / 8.0 })
            * fraction;
        let (model, objective) =
            fresh_start(data, model_settings, gradient, distance, Some(&corrections))?;
        let mut stage = gradient.clone();
        stage.epochs = settings.epochs;
        stage.distance.enabled = false;
        stage.positions.lr = settings.position_lr;
        stage.positions.start_epoch = 2;
        stage.object_smoothing = sigma;
        stage.object_smoothing_epochs = settings.epochs;
        let quiet = Control {
            on_epoch: &mut |_| {},
            stop: control.stop,
        };
        let outcome = run_from(data, model, objective, &stage, quiet)?;
        if let Some(why) = &outcome.stopped_early {
            if control.should_stop() {
                break;
            }
            return Err(Error::invalid(
                "alignment",
                format!("round {} stopped: {why}", round + 1),
            ));
        }
        let rec = outcome.reconstruction;
        corrections = &rec.positions - &rec.nominal_positions;
        meter.stage(format!("alignment round {}: refinement", round + 1));
        let mut rescued = Vec::new();
        if settings.rescue {
            let (mut model, mut objective) =
                fresh_start(data, model_settings, gradient, distance, Some(&corrections))?;
            model.object.assign(&rec.object);
            model.probe.assign(&rec.probe);
            let search = RescueSettings {
                ratio: settings.rescue_ratio,
                radius: settings.rescue_radius.unwrap_or(0.3 * n),
                epochs: settings.rescue_epochs.unwrap_or(settings.epochs),
                step: settings.rescue_step,
            };
            rescued = position_rescue::rescue(
                data,
                model_settings,
                gradient,
                &mut model,
                &mut objective,
                search,
                control,
            )?;
            corrections = model.corrections;
            for m in &rescued {
                tracing::info!(
                    "alignment round {}: frame {} moved by ({:+.0}, {:+.0}) px (its loss {:.1} \
                     times the median; {:.2} of it at the new place)",
                    round + 1,
                    m.frame,
                    m.offset[0],
                    m.offset[1],
                    m.loss_ratio,
                    m.search_ratio
                );
            }
        }
        if settings.rescue {
            meter.stage(format!("alignment round {}: rescue", round + 1));
        }
        let search = if search_distance {
            let mut s = gradient.distance_search.clone();
            // Narrow once a search has found an interior minimum.
            let found_before = searched
                || rounds
                    .iter()
                    .any(|r: &Round| r.search.as_ref().is_some_and(|f| f.interior));
            if found_before {
                s.range = settings.later_range;
                s.points = settings.later_points;
            }
            let found = distance_search::search(
                data,
                model_settings,
                gradient,
                &s,
                distance,
                Some(&corrections),
                control,
            )?;
            if found.interior {
                distance = found.distance;
            } else if found_before {
                // A narrow search that still slopes at its end: walk to that end; the next
                // round searches around it.
                distance = found
                    .trials
                    .iter()
                    .min_by(|a, b| a.loss.total_cmp(&b.loss))
                    .map_or(distance, |t| t.distance);
            }
            meter.stage(format!("alignment round {}: distance search", round + 1));
            Some(found)
        } else {
            None
        };
        let mut lengths: Vec<f64> = corrections.outer_iter().map(|c| c[0].hypot(c[1])).collect();
        lengths.sort_by(f64::total_cmp);
        let r = Round {
            distance,
            median_correction: lengths.get(lengths.len() / 2).copied().unwrap_or(0.0),
            loss: rec.history.last().map_or(f64::NAN, |s| s.loss),
            seconds: start.elapsed().as_secs_f64(),
            rescued,
            search,
        };
        tracing::info!(
            "alignment round {}: distance {:.6} m, median correction {:.2} px, loss {:.3e}",
            round + 1,
            r.distance,
            r.median_correction,
            r.loss
        );
        rounds.push(r);
    }
    Ok(Aligned {
        distance,
        corrections,
        rounds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_settings_by_name() {
        let bad = Alignment {
            smoothing: Some(f64::NAN),
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("smoothing"));
        let bad = Alignment {
            position_lr: -1.0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("position_lr"));
        let bad = Alignment {
            later_points: 1,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("later_points"));
        assert!(Alignment::default().validate().is_ok());
    }
}
