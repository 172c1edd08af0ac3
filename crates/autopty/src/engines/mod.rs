//! Reconstruction engines. Every engine reads the same [`Dataset`](crate::Dataset), starts from
//! the same initial [`Model`](crate::model::Model), reports the same per-epoch
//! [`EpochStats`](crate::EpochStats) and returns the same [`Reconstruction`](crate::Reconstruction).

pub mod alignment;
pub mod distance_search;
pub mod gradient;
pub mod registration;

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
}
