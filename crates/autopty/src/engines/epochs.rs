//! Per-epoch bookkeeping shared by the classical engines: the history, the stop and divergence
//! checks with a fall-back to the last good state, and the final [`Outcome`].

use crate::engines::{Control, Outcome};
use crate::model::Model;
use crate::reconstruction::{EpochStats, Reconstruction};
use std::time::Instant;

/// History and last good state of a running engine.
pub(crate) struct EpochLog {
    start: Instant,
    history: Vec<EpochStats>,
    first_loss: Option<f64>,
    divergence_factor: f64,
    last_good: Model,
}

impl EpochLog {
    /// Starts the clock; `model` is the state to fall back to before the first epoch.
    pub(crate) fn new(model: &Model, divergence_factor: f64) -> Self {
        EpochLog {
            start: Instant::now(),
            history: Vec::new(),
            first_loss: None,
            divergence_factor,
            last_good: model.clone(),
        }
    }

    /// Records epoch `epoch` with its loss (already divided by the measured photons). When the
    /// loss or the model is not finite, or the loss passed `divergence_factor` times the first
    /// epoch's, restores the last good state into `model` and returns why the run must stop.
    pub(crate) fn record(
        &mut self,
        epoch: usize,
        loss: f64,
        model: &mut Model,
        control: &mut Control,
    ) -> Option<String> {
        let diverged = self
            .first_loss
            .is_some_and(|f| loss > f * self.divergence_factor);
        if !loss.is_finite() || !model.is_finite() || diverged {
            model.clone_from(&self.last_good);
            return Some(format!(
                "diverged in epoch {epoch} (loss {loss:.3e}); kept the state of epoch {}",
                epoch - 1
            ));
        }
        self.first_loss.get_or_insert(loss);
        let stats = EpochStats {
            epoch,
            loss,
            distance: model.distance,
            median_correction: model.median_correction(),
            seconds: self.start.elapsed().as_secs_f64(),
        };
        (control.on_epoch)(&stats);
        self.history.push(stats);
        self.last_good.clone_from(model);
        None
    }

    /// The outcome of the run with `model` as its final state.
    pub(crate) fn finish(
        self,
        engine: &str,
        model: Model,
        settings: serde_json::Value,
        stopped_early: Option<String>,
    ) -> Outcome {
        let reconstruction = Reconstruction {
            engine: engine.into(),
            positions: model.positions(),
            nominal_positions: model.nominal_positions(),
            geometry: model.geometry(),
            object: model.object,
            probe: model.probe,
            history: self.history,
            settings,
        };
        Outcome {
            reconstruction,
            stopped_early,
            distance_search: None,
            alignment: None,
            registration: None,
            curvature_gauge: Vec::new(),
            restart_losses: Vec::new(),
            work: None,
        }
    }
}
