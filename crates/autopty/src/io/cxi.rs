//! CXI (HDF5) datasets (being written).

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

/// Options for reading positions and geometry from a CXI file.
#[derive(Clone, Debug, Default)]
pub struct CxiOptions {}

/// Reads a CXI file.
pub fn read(path: &Path, _options: &CxiOptions) -> Result<Dataset> {
    Err(Error::field(
        path,
        "-",
        "CXI reading is not implemented yet",
    ))
}

/// Writes a dataset as CXI.
pub fn write(path: &Path, _data: &Dataset) -> Result<()> {
    Err(Error::field(
        path,
        "-",
        "CXI writing is not implemented yet",
    ))
}
