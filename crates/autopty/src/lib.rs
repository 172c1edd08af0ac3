//! autopty: ptychography reconstruction by joint gradient refinement of the object, a
//! multimode probe, the scan positions and the propagation distance, plus the classical engines
//! (ePIE, rPIE, DM), a simulator of the published synthetic protocol and readers for beamline data.
//!
//! Conventions (see also each module): complex values are `Complex32`, arrays `ndarray` in
//! row-major `[row, col]` = `[y, x]` order; FFTs are unitary; the gradient of a real loss with
//! respect to a complex `z = a + ib` is stored as `dL/da + i dL/db`; positions inside the library
//! are in object pixels (row, col of the probe window's top-left corner); SI units at the
//! boundaries.

pub mod dataset;
pub mod engines;
pub mod error;
pub mod fft;
pub mod geometry;
pub mod guards;
pub mod io;
pub mod job;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod ops;
pub mod optim;
pub mod probe;
pub mod propagate;
pub mod reconstruction;
pub mod report;
pub mod sim;
pub mod simd;
pub mod work;

pub use dataset::{Dataset, Truth};
pub use error::{Error, Result};
pub use geometry::{Geometry, Regime};
pub use reconstruction::{EpochStats, Reconstruction};
