//! NumPy `.npy` arrays: complex64 (`<c8`) and float32 (`<f4`), 2-D and 3-D, readable with
//! `numpy.load`. Writes are atomic; reads check the header against the file size before
//! allocating, so a damaged header cannot ask for absurd memory.

use crate::error::{Error, Result};
use ndarray::{Array, Array2, Array3, Dimension};
use ndarray_npy::{ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};
use num_complex::Complex32;
use std::path::Path;

/// Writes a 2-D complex64 array.
pub fn write_complex2(path: &Path, array: &Array2<Complex32>) -> Result<()> {
    write(path, array)
}

/// Writes a 3-D complex64 array (e.g. probe modes (M, N, N)).
pub fn write_complex3(path: &Path, array: &Array3<Complex32>) -> Result<()> {
    write(path, array)
}

/// Writes a 2-D float32 array.
pub fn write_real2(path: &Path, array: &Array2<f32>) -> Result<()> {
    write(path, array)
}

/// Reads a 2-D complex64 array.
pub fn read_complex2(path: &Path) -> Result<Array2<Complex32>> {
    read(path, "a 2-D complex64 array", 8)
}

/// Reads a 3-D complex64 array.
pub fn read_complex3(path: &Path) -> Result<Array3<Complex32>> {
    read(path, "a 3-D complex64 array", 8)
}

/// Reads a 2-D float32 array.
pub fn read_real2(path: &Path) -> Result<Array2<f32>> {
    read(path, "a 2-D float32 array", 4)
}

fn write<A: WritableElement, D: Dimension>(path: &Path, array: &Array<A, D>) -> Result<()> {
    crate::io::atomic::write_atomic(path, |w| {
        array.write_npy(&mut *w).map_err(|e| match e {
            ndarray_npy::WriteNpyError::Io(io) => Error::io(path, io),
            other => Error::field(path, "array", format!("could not encode: {other}")),
        })
    })
}

/// Reads an array whose elements are `element_bytes` wide; `what` describes it in errors.
fn read<A: ReadableElement, D: Dimension>(
    path: &Path,
    what: &str,
    element_bytes: usize,
) -> Result<Array<A, D>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |problem: String| Error::field(path, "array", format!("expected {what}, {problem}"));
    let mut cursor = bytes.as_slice();
    let header = ndarray_npy::npy::header::Header::from_reader(&mut cursor)
        .map_err(|e| bad(format!("found an unreadable .npy header: {e}")))?;
    let needed = header
        .shape
        .iter()
        .try_fold(element_bytes, |acc, &d| acc.checked_mul(d));
    if needed.is_none_or(|n| n > cursor.len()) {
        return Err(bad(format!(
            "found shape {:?} of type {} but only {} data bytes",
            header.shape,
            header.type_descriptor,
            cursor.len()
        )));
    }
    Array::<A, D>::read_npy(bytes.as_slice()).map_err(|e| {
        bad(format!(
            "found shape {:?} of type {}: {e}",
            header.shape, header.type_descriptor
        ))
    })
}
