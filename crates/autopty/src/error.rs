//! One error type for the library. Every message names the file (when there is one), the field
//! and what was expected, so that a user can fix the input without reading the code.

use std::path::{Path, PathBuf};

/// Errors returned by autopty. User input never panics; it ends here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A field of an input file is missing or holds something other than what was expected.
    #[error("{}: field '{field}': {problem}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    /// A setting or an in-memory value is out of range.
    #[error("invalid {what}: {problem}")]
    Invalid { what: String, problem: String },
    /// The optimisation produced NaN/Inf or diverged.
    #[error("numerical failure: {0}")]
    Numerical(String),
}

/// Result with the autopty error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            cause,
        }
    }

    /// A problem with `field` of the file at `path`.
    pub fn field(
        path: impl AsRef<Path>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Field {
            path: path.as_ref().to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// An invalid setting or value.
    pub fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }
}
