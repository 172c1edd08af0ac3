//! Ground-truth files of simulated datasets (being written).

use crate::dataset::Truth;
use crate::error::{Error, Result};
use std::path::Path;

/// Writes the truth file.
pub fn write(path: &Path, _truth: &Truth) -> Result<()> {
    Err(Error::field(
        path,
        "-",
        "truth writing is not implemented yet",
    ))
}

/// Reads a truth file.
pub fn read(path: &Path) -> Result<Truth> {
    Err(Error::field(
        path,
        "-",
        "truth reading is not implemented yet",
    ))
}
