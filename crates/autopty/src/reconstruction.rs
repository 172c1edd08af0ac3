//! The result of a reconstruction, the same for every engine.

use crate::geometry::Geometry;
use ndarray::{Array2, Array3};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};

/// One row of the per-epoch history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Data loss summed over all patterns (after the epoch's updates).
    pub loss: f64,
    /// Refined distance (m): the propagation distance, or `z1` in a point-source geometry.
    pub distance: f64,
    /// Median length of the position corrections (px).
    pub median_correction: f64,
    /// Wall-clock seconds since the start of the run.
    pub seconds: f64,
}

/// Final parameters of a reconstruction with its history.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    /// Engine name (`adam`, `epie`, `rpie`, `dm`, ...).
    pub engine: String,
    /// Object transmission (H, W).
    pub object: Array2<Complex32>,
    /// Probe modes (M, N, N).
    pub probe: Array3<Complex32>,
    /// Refined positions (J, 2): (row, col) of each probe window's top-left corner, px.
    pub positions: Array2<f64>,
    /// Nominal (starting) positions in the same frame (J, 2), px.
    pub nominal_positions: Array2<f64>,
    /// Geometry with the refined distance.
    pub geometry: Geometry,
    /// Per-epoch history.
    pub history: Vec<EpochStats>,
    /// Settings the engine ran with, for the record.
    pub settings: serde_json::Value,
}
