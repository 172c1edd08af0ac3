//! Reconstruction engines. Every engine reads the same [`Dataset`](crate::Dataset), starts from
//! the same initial [`Model`](crate::model::Model), reports the same per-epoch
//! [`EpochStats`](crate::EpochStats) and returns the same [`Reconstruction`](crate::Reconstruction).

pub mod alignment;
pub mod checkpoint;
pub mod curvature_gauge;
pub mod distance_search;
pub mod dm;
mod epochs;
pub mod exit_wave;
pub mod fresnel_scale;
pub mod gradient;
mod overlap;
pub mod pie;
pub mod position_rescue;
pub mod registration;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::optim::OptimizerKind;
use crate::reconstruction::{EpochStats, Reconstruction};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a caller sees of a running engine: a callback per epoch and a stop request.
pub struct Control<'a> {
    /// Called after every epoch.
    pub on_epoch: &'a mut dyn FnMut(&EpochStats),
    /// Set (e.g. by a Ctrl-C handler) to stop after the current minibatch.
    pub stop: Option<&'a AtomicBool>,
}

impl Control<'_> {
    /// True when a stop was requested.
    pub fn should_stop(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// The result of a run: the reconstruction and, if the run ended early, why.
#[derive(Debug)]
pub struct Outcome {
    /// Final (or last good) state.
    pub reconstruction: Reconstruction,
    /// Why the run stopped before its last epoch (interrupted, diverged), if it did.
    pub stopped_early: Option<String>,
    /// The distance search that chose the starting distance, if one ran on its own.
    pub distance_search: Option<distance_search::SearchResult>,
    /// The alignment rounds that chose the starting positions and distance, if they ran.
    pub alignment: Option<alignment::Aligned>,
    /// The registration of the scan from the data alone, if it ran.
    pub registration: Option<registration::Registered>,
    /// The probe's curvature moved into the geometry before the joint run: one entry per pass.
    pub curvature_gauge: Vec<curvature_gauge::Gauged>,
    /// The final loss of every restart (gradient engine, `restarts` > 1), in the order run;
    /// the outcome is the lowest one's.
    pub restart_losses: Vec<f64>,
    /// The work of the run in epoch-equivalents, every stage and restart counted (gradient
    /// engine; `None` for the classical engines).
    pub work: Option<crate::work::Work>,
}

/// The engines a job can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// Gradient engine with Adam ([`gradient`]).
    Adam,
    /// Gradient engine with plain gradient descent.
    Sgd,
    /// ePIE ([`pie`]).
    Epie,
    /// rPIE ([`pie`]).
    Rpie,
    /// Difference map ([`dm`]).
    Dm,
    /// RAAR ([`dm`]).
    Raar,
}

impl EngineKind {
    /// Every engine, in the order of the help texts.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Adam,
        EngineKind::Sgd,
        EngineKind::Epie,
        EngineKind::Rpie,
        EngineKind::Dm,
        EngineKind::Raar,
    ];

    /// The name in job files, on the command line and in outputs.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Adam => "adam",
            EngineKind::Sgd => "sgd",
            EngineKind::Epie => "epie",
            EngineKind::Rpie => "rpie",
            EngineKind::Dm => "dm",
            EngineKind::Raar => "raar",
        }
    }

    /// The engine a job names (`adam` when it names none).
    pub fn of(job: &Job) -> Result<EngineKind> {
        job.engine.as_deref().unwrap_or("adam").parse()
    }

    /// Epochs the job gives this engine.
    pub fn epochs(self, job: &Job) -> usize {
        match self {
            EngineKind::Adam | EngineKind::Sgd => job.gradient.epochs,
            EngineKind::Epie | EngineKind::Rpie => job.pie.epochs,
            EngineKind::Dm | EngineKind::Raar => job.dm.epochs,
        }
    }

    /// True for the gradient engine, which refines the distance and runs the alignment rounds.
    pub fn is_gradient(self) -> bool {
        matches!(self, EngineKind::Adam | EngineKind::Sgd)
    }
}

impl std::str::FromStr for EngineKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EngineKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = EngineKind::ALL.iter().map(|k| k.name()).collect();
                Error::invalid(
                    "engine",
                    format!("unknown engine '{s}'; expected one of {}", names.join(", ")),
                )
            })
    }
}

/// Runs engine `kind` on `data` with the settings of `job`, from the job's initial model.
pub fn run(data: &Dataset, job: &Job, kind: EngineKind, control: Control) -> Result<Outcome> {
    match kind {
        EngineKind::Adam | EngineKind::Sgd => {
            let mut settings = job.gradient.clone();
            settings.optimizer = if kind == EngineKind::Adam {
                OptimizerKind::Adam
            } else {
                OptimizerKind::Sgd
            };
            gradient::run(data, &job.model, &settings, control)
        }
        EngineKind::Epie => pie::run(data, &job.model, &job.pie, pie::PieVariant::Epie, control),
        EngineKind::Rpie => pie::run(data, &job.model, &job.pie, pie::PieVariant::Rpie, control),
        EngineKind::Dm => dm::run(data, &job.model, &job.dm, dm::DmVariant::Dm, control),
        EngineKind::Raar => dm::run(data, &job.model, &job.dm, dm::DmVariant::Raar, control),
    }
}

/// [`run`] with checkpoints, for the gradient engine (`adam`, `sgd`); the classical engines
/// take none and refuse a checkpoint to resume from.
pub fn run_resumable(
    data: &Dataset,
    job: &Job,
    kind: EngineKind,
    control: Control,
    checkpointing: Option<&mut checkpoint::Checkpointing>,
) -> Result<Outcome> {
    match (kind, checkpointing) {
        (EngineKind::Adam | EngineKind::Sgd, Some(ck)) => {
            let mut settings = job.gradient.clone();
            settings.optimizer = if kind == EngineKind::Adam {
                OptimizerKind::Adam
            } else {
                OptimizerKind::Sgd
            };
            gradient::run_resumable(data, &job.model, &settings, control, Some(ck))
        }
        (_, Some(ck)) if ck.resume.is_some() => Err(Error::invalid(
            "engine",
            format!(
                "{} cannot resume a checkpoint: only the gradient engine (adam, sgd) writes them",
                kind.name()
            ),
        )),
        _ => run(data, job, kind, control),
    }
}
