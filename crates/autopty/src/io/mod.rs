//! Input and output: file formats and their conventions live here and nowhere else.

pub mod atomic;
pub mod checkpoint;
pub mod container;
pub mod cxi;
pub mod cxi_output;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod h5;
pub mod npy;
pub mod outputs;
pub mod positions_file;
pub mod ptylab;
pub mod raw;
pub mod raw_writer;
pub mod tiff_stack;
pub mod truth;
