//! Input and output: file formats and their conventions live here and nowhere else.

pub mod atomic;
pub mod checkpoint;
pub mod container;
pub mod cxi;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod h5;
pub mod npy;
pub mod outputs;
pub mod truth;
