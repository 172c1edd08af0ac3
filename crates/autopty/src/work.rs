//! Counting the work of a reconstruction in epoch-equivalents.
//!
//! One epoch-equivalent is one forward and backward evaluation of every pattern of the data
//! set. [`crate::objective::Objective::evaluate`] counts each frame it evaluates: with gradients
//! as a whole unit, without (a loss only, as in the alignment's position rescue) as
//! [`LOSS_ONLY_COST`] of one, since it runs the forward half only (the same propagations, no
//! adjoints). Every stage of the gradient engine (distance trials, alignment rounds, quarantine,
//! curvature gauge, joint run) goes through that one function, so the count covers them all.
//!
//! The counters are per thread: an engine evaluates its minibatches from the thread that runs
//! it (the positions of a batch are spread over rayon's threads inside one call), so a
//! [`Meter`] started on that thread sees exactly that engine's work, even while other engines
//! (tests) run on other threads.

use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// What a frame evaluated without gradients costs, in frames evaluated with them.
pub const LOSS_ONLY_COST: f64 = 0.5;

thread_local! {
    static GRADIENT_FRAMES: Cell<u64> = const { Cell::new(0) };
    static LOSS_FRAMES: Cell<u64> = const { Cell::new(0) };
}

/// Counts `frames` frames evaluated on this thread, `with_gradient` or for the loss only.
pub fn count(frames: usize, with_gradient: bool) {
    let counter = if with_gradient {
        &GRADIENT_FRAMES
    } else {
        &LOSS_FRAMES
    };
    counter.with(|c| c.set(c.get() + frames as u64));
}

fn totals() -> (u64, u64) {
    (GRADIENT_FRAMES.with(Cell::get), LOSS_FRAMES.with(Cell::get))
}

/// The work of one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageWork {
    /// Stage name (`distance search`, `alignment round 1`, `joint run`, ...).
    pub stage: String,
    /// Its epoch-equivalents.
    pub epoch_equivalents: f64,
}

/// The work of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Patterns in the data set (the frames of one epoch).
    pub frames: usize,
    /// Frames evaluated with gradients.
    pub gradient_frames: u64,
    /// Frames evaluated for the loss only.
    pub loss_frames: u64,
    /// `(gradient_frames + LOSS_ONLY_COST * loss_frames) / frames`.
    pub epoch_equivalents: f64,
    /// The same, stage by stage, in the order run.
    pub stages: Vec<StageWork>,
}

/// Measures the work done on this thread from its start.
#[derive(Clone, Debug)]
pub struct Meter {
    frames: usize,
    start: (u64, u64),
    mark: (u64, u64),
    stages: Vec<StageWork>,
}

impl Meter {
    /// Starts measuring the work on a data set of `frames` patterns.
    pub fn start(frames: usize) -> Self {
        let now = totals();
        Meter {
            frames,
            start: now,
            mark: now,
            stages: Vec::new(),
        }
    }

    fn epochs(&self, (g, l): (u64, u64)) -> f64 {
        (g as f64 + LOSS_ONLY_COST * l as f64) / self.frames.max(1) as f64
    }

    /// Closes a stage: the work since the last stage closed (or the start) is `stage`'s.
    /// Returns its epoch-equivalents.
    pub fn stage(&mut self, stage: impl Into<String>) -> f64 {
        let now = totals();
        let e = self.epochs((now.0 - self.mark.0, now.1 - self.mark.1));
        self.mark = now;
        let stage = stage.into();
        tracing::info!("work: {stage}: {e:.1} epoch-equivalents");
        self.stages.push(StageWork {
            stage,
            epoch_equivalents: e,
        });
        e
    }

    /// The work since the start.
    pub fn finish(&self) -> Work {
        let now = totals();
        let done = (now.0 - self.start.0, now.1 - self.start.1);
        Work {
            frames: self.frames,
            gradient_frames: done.0,
            loss_frames: done.1,
            epoch_equivalents: self.epochs(done),
            stages: self.stages.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gradient_and_loss_frames_per_stage() {
        let mut meter = Meter::start(10);
        count(20, true);
        assert_eq!(meter.stage("a"), 2.0);
        count(10, false);
        count(5, true);
        assert_eq!(meter.stage("b"), 1.0);
        let w = meter.finish();
        assert_eq!((w.gradient_frames, w.loss_frames), (25, 10));
        assert_eq!(w.epoch_equivalents, 3.0);
        assert_eq!(w.stages.len(), 2);
        // Another thread's work is not this meter's.
        std::thread::spawn(|| count(100, true)).join().unwrap();
        assert_eq!(meter.finish().epoch_equivalents, 3.0);
    }
}
