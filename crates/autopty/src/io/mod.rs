//! Input and output: file formats and their conventions live here and nowhere else.

pub mod atomic;
