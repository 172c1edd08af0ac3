//! Checkpoints of the gradient engine: everything a run needs to continue exactly where it
//! stopped — the results of the preparation stages (starting distance and position corrections)
//! and the state of the joint run (parameters, optimiser moments, shuffling generator and order,
//! where in the epoch it stood, history).
//!
//! A run resumed from a checkpoint with the same settings takes the same steps on the same
//! minibatches as the run that was never stopped, so with one thread the results are identical
//! bit for bit (with several, the order of parallel sums may differ in the last bits). The
//! learning-rate decay follows the run's total epochs, so extending a run changes the schedule of
//! the epochs still to come (with `lr_final_fraction = 1` it does not). Files: [`crate::io::checkpoint`].

use crate::engines::gradient::GradientSettings;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerState};
use crate::reconstruction::{EpochStats, Reconstruction};
use ndarray::{Array2, Array3};
use num_complex::Complex32;
use rand_pcg::Pcg64;

/// The refinable parameters of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameters {
    /// Object (H, W).
    pub object: Array2<Complex32>,
    /// Probe modes (M, N, N).
    pub probe: Array3<Complex32>,
    /// Position corrections (J, 2), px.
    pub corrections: Array2<f64>,
    /// Refined distance (m).
    pub distance: f64,
}

impl Parameters {
    /// The parameters of `model`.
    pub fn of(model: &Model) -> Self {
        Parameters {
            object: model.object.clone(),
            probe: model.probe.clone(),
            corrections: model.corrections.clone(),
            distance: model.distance,
        }
    }

    /// Puts the parameters into `model`, which must have the same shapes.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let check = |what: &str, have: &[usize], want: &[usize]| {
            if have == want {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("checkpoint {what}"),
                    format!(
                        "expected shape {want:?} (from the data and the model settings), the \
                         checkpoint holds {have:?}; the number of probe modes, the frame size and \
                         the border cannot change on resume"
                    ),
                ))
            }
        };
        check("object", self.object.shape(), model.object.shape())?;
        check("probe", self.probe.shape(), model.probe.shape())?;
        check(
            "corrections",
            self.corrections.shape(),
            model.corrections.shape(),
        )?;
        model.object.assign(&self.object);
        model.probe.assign(&self.probe);
        model.corrections.assign(&self.corrections);
        model.distance = self.distance;
        Ok(())
    }
}

/// Where the joint run starts: what the preparation stages found.
#[derive(Clone, Debug, PartialEq)]
pub struct JointStart {
    /// Starting distance (m).
    pub distance: f64,
    /// Starting position corrections (J, 2) px, if a stage found them.
    pub corrections: Option<Array2<f64>>,
    /// Starting probe modes (M, N, N), when the curvature gauge gave the fresh probe an
    /// astigmatism (otherwise the run starts from the fresh probe itself).
    pub probe: Option<Array3<Complex32>>,
}

/// The state of the joint run between two minibatches.
#[derive(Clone, Debug, PartialEq)]
pub struct JointState {
    /// The epoch to run or to finish (from 1; past the last epoch when the run was complete).
    pub epoch: usize,
    /// Positions of `epoch` already stepped (the first `done` of `order`).
    pub done: usize,
    /// Whether `order` is already shuffled for `epoch`.
    pub shuffled: bool,
    /// Loss summed over the `done` positions.
    pub partial_loss: f64,
    /// Current parameters.
    pub params: Parameters,
    /// Parameters at the end of the last whole epoch, when they differ from `params`.
    pub last_good: Option<Parameters>,
    /// Optimisers of the object, the probe, the positions and the distance.
    pub optimizers: [OptimizerState; 4],
    /// The distance's optimisation variable `z / z0 - 1`.
    pub u: f64,
    /// Minibatch shuffling generator.
    pub rng: Pcg64,
    /// Current order of the positions.
    pub order: Vec<usize>,
    /// History so far.
    pub history: Vec<EpochStats>,
    /// Loss of the first epoch (the divergence test's reference).
    pub first_loss: Option<f64>,
    /// Wall-clock seconds of the joint run so far.
    pub seconds: f64,
    /// Settings of the joint run when the checkpoint was taken.
    pub settings: GradientSettings,
}

/// A checkpoint of a gradient-engine run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// What the preparation stages found; `None` when they had not finished (a resume then
    /// starts from the beginning).
    pub start: Option<JointStart>,
    /// The joint run's state; `None` when it had not started.
    pub joint: Option<JointState>,
}

/// Receives checkpoints with the reconstruction they describe (to write both).
pub type SaveHook<'a> = dyn FnMut(&Checkpoint, &Reconstruction) -> Result<()> + 'a;

/// Checkpointing of a run: how often, what to continue from, where checkpoints go.
pub struct Checkpointing<'a> {
    /// Take a checkpoint every this many epochs (0 = only when the run ends or is interrupted).
    pub every: usize,
    /// The checkpoint to continue from.
    pub resume: Option<Checkpoint>,
    /// Called with each checkpoint.
    pub save: &'a mut SaveHook<'a>,
    /// Set by the engine: where its joint run started.
    pub(crate) start: Option<JointStart>,
}

impl<'a> Checkpointing<'a> {
    /// Checkpointing every `every` epochs into `save`, continuing from `resume` if given.
    pub fn new(every: usize, resume: Option<Checkpoint>, save: &'a mut SaveHook<'a>) -> Self {
        Checkpointing {
            every,
            resume,
            save,
            start: None,
        }
    }

    /// The stage results of the checkpoint to continue from, if the stages had finished.
    pub(crate) fn resumed_start(&self) -> Option<JointStart> {
        self.resume.as_ref().and_then(|c| c.start.clone())
    }

    /// Takes the joint state to continue from (once).
    pub(crate) fn take_resumed_joint(&mut self) -> Option<JointState> {
        let c = self.resume.as_mut()?;
        c.start.as_ref()?;
        c.joint.take()
    }

    /// True when a checkpoint is due after `epoch` (the last epoch is saved by the run's end).
    pub(crate) fn due(&self, epoch: usize, last: usize) -> bool {
        self.every > 0 && epoch.is_multiple_of(self.every) && epoch < last
    }

    /// Hands a checkpoint of `joint` (None: the joint run had not started) to the hook.
    pub(crate) fn save(
        &mut self,
        joint: Option<JointState>,
        model: &Model,
        history: &[EpochStats],
    ) -> Result<()> {
        let start = self.start.clone();
        let settings = joint
            .as_ref()
            .map(|j| serde_json::to_value(&j.settings).unwrap_or_default())
            .unwrap_or_default();
        let checkpoint = Checkpoint {
            joint: joint.filter(|_| start.is_some()),
            start,
        };
        let rec = reconstruction_of(model, history, settings);
        (self.save)(&checkpoint, &rec)
    }
}

/// The reconstruction a model stands for (a copy; the run goes on).
pub fn reconstruction_of(
    model: &Model,
    history: &[EpochStats],
    settings: serde_json::Value,
) -> Reconstruction {
    let optimizer = settings
        .get("optimizer")
        .and_then(|v| v.as_str())
        .unwrap_or("adam");
    Reconstruction {
        engine: optimizer.into(),
        positions: model.positions(),
        nominal_positions: model.nominal_positions(),
        geometry: model.geometry(),
        object: model.object.clone(),
        probe: model.probe.clone(),
        history: history.to_vec(),
        settings,
    }
}

/// The mutable state of the joint run's loop, borrowed to restore a checkpoint into it.
pub(crate) struct LoopState<'a> {
    pub model: &'a mut Model,
    pub last_good: &'a mut Model,
    pub optimizers: [&'a mut Optimizer; 4],
    pub u: &'a mut [f64; 1],
    pub rng: &'a mut Pcg64,
    pub order: &'a mut Vec<usize>,
    pub history: &'a mut Vec<EpochStats>,
    pub first_loss: &'a mut Option<f64>,
}

impl JointState {
    /// Restores the state into the loop's variables; returns where to continue:
    /// (epoch, positions done, order already shuffled, partial loss, seconds so far).
    pub(crate) fn restore(
        self,
        into: LoopState,
        settings: &GradientSettings,
    ) -> Result<(usize, usize, bool, f64, f64)> {
        let j = into.model.len();
        let mut seen = vec![false; j];
        let permutation = self.order.len() == j
            && self
                .order
                .iter()
                .all(|&k| k < j && !std::mem::replace(&mut seen[k], true));
        if !permutation || self.done > j {
            return Err(Error::invalid(
                "checkpoint order",
                format!("expected an order of the {j} positions of the data"),
            ));
        }
        self.params.apply(into.model)?;
        into.last_good.clone_from(into.model);
        if let Some(p) = &self.last_good {
            p.apply(into.last_good)?;
        }
        for (name, (opt, state)) in ["object", "probe", "positions", "distance"]
            .iter()
            .zip(into.optimizers.into_iter().zip(self.optimizers))
        {
            opt.restore(state)
                .map_err(|e| Error::invalid(format!("checkpoint optimiser of the {name}"), e))?;
        }
        for change in changed_settings(
            &serde_json::to_value(&self.settings).unwrap_or_default(),
            &serde_json::to_value(settings).unwrap_or_default(),
        ) {
            tracing::info!("resume: setting changed: {change}");
        }
        into.u[0] = self.u;
        *into.rng = self.rng;
        *into.order = self.order;
        *into.history = self.history;
        *into.first_loss = self.first_loss;
        Ok((
            self.epoch,
            self.done,
            self.shuffled,
            self.partial_loss,
            self.seconds,
        ))
    }
}

/// The settings that differ between two JSON trees, as `path: old -> new` lines.
pub fn changed_settings(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn walk(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
        match (old, new) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    walk(
                        &p,
                        a.get(k).unwrap_or(&null),
                        b.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            (a, b) if a != b => out.push(format!("{path}: {a} -> {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_settings_lists_paths() {
        let a = serde_json::json!({"epochs": 10, "positions": {"enabled": false, "lr": 0.2}});
        let b = serde_json::json!({"epochs": 20, "positions": {"enabled": true, "lr": 0.2}});
        assert_eq!(
            changed_settings(&a, &b),
            vec!["epochs: 10 -> 20", "positions.enabled: false -> true"]
        );
        assert!(changed_settings(&a, &a).is_empty());
    }
}
