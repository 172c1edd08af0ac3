//! Reconstruction output folders (being written).

use crate::error::{Error, Result};
use crate::reconstruction::Reconstruction;
use std::path::Path;

/// Writes every output of a reconstruction into `dir`.
pub fn write(dir: &Path, _rec: &Reconstruction) -> Result<()> {
    Err(Error::field(
        dir,
        "-",
        "output writing is not implemented yet",
    ))
}

/// Reads a reconstruction back from an output folder.
pub fn read(dir: &Path) -> Result<Reconstruction> {
    Err(Error::field(
        dir,
        "-",
        "output reading is not implemented yet",
    ))
}
