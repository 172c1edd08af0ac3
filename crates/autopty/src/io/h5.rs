//! Small helpers over `hdf5-pure` shared by the HDF5-based formats (CXI, truth files): open a
//! file, read a field by its path, and turn every failure into an [`Error`] that names the file
//! and the field. Nothing here knows a format's meaning.
//!
//! Complex arrays are stored the way h5py stores `complex64`: a compound type `{r: f32, i: f32}`
//! (8 bytes, `r` at offset 0, `i` at offset 4), so `h5py` reads them back as complex numbers.

use crate::error::{Error, Result};
use hdf5_pure::{CompoundTypeBuilder, DType, DatasetBuilder, FileBuilder, FormatError};
use num_complex::Complex32;
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest dataset (bytes, after decompression) a reader accepts; guards against corrupt headers
/// that claim absurd shapes.
const MAX_READ_BYTES: u64 = 1 << 36;

/// One numeric field read from a file: its shape, row-major values and stored type.
#[derive(Clone, Debug)]
pub(crate) struct Field<T> {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<T>,
    /// The stored element type.
    pub dtype: DType,
}

/// An open HDF5 file with the path it came from, for error messages.
pub(crate) struct H5File {
    file: hdf5_pure::File,
    path: PathBuf,
}

impl H5File {
    /// Opens `path`; a missing file is an I/O error, a file that is not HDF5 (or is damaged) a
    /// field error on `/`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let file = hdf5_pure::File::open(path).map_err(|e| match e {
            hdf5_pure::Error::Io(io) => Error::io(path, io),
            other => Error::field(
                path,
                "/",
                format!(
                    "expected a readable HDF5 file, found a damaged or non-HDF5 file ({other})"
                ),
            ),
        })?;
        Ok(H5File {
            file,
            path: path.to_path_buf(),
        })
    }

    /// An error about `field` of this file.
    pub fn error(&self, field: &str, problem: impl Into<String>) -> Error {
        Error::field(&self.path, field, problem)
    }

    /// The dataset at `field`, `None` when nothing is stored there.
    pub fn dataset(&self, field: &str) -> Result<Option<hdf5_pure::Dataset>> {
        match self.file.dataset(field) {
            Ok(ds) => Ok(Some(ds)),
            Err(hdf5_pure::Error::Format(FormatError::PathNotFound(_))) => Ok(None),
            Err(hdf5_pure::Error::NotAGroup(_)) => Ok(None),
            Err(e) => Err(self.error(field, format!("expected a dataset, could not open it: {e}"))),
        }
    }

    /// True when a dataset exists at `field`.
    pub fn has(&self, field: &str) -> Result<bool> {
        Ok(self.dataset(field)?.is_some())
    }

    /// Shape and stored type of the dataset at `field`, `None` when absent.
    fn layout(&self, field: &str) -> Result<Option<(hdf5_pure::Dataset, Vec<usize>, DType)>> {
        let Some(ds) = self.dataset(field)? else {
            return Ok(None);
        };
        let unreadable = |e: hdf5_pure::Error| self.error(field, format!("unreadable: {e}"));
        let shape: Vec<usize> = ds
            .shape()
            .map_err(unreadable)?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let dtype = ds.dtype().map_err(unreadable)?;
        let element = ds.element_size().map_err(unreadable)?;
        let bytes = shape
            .iter()
            .try_fold(element, |acc, &d| acc.checked_mul(d as u64));
        match bytes {
            Some(b) if b <= MAX_READ_BYTES => Ok(Some((ds, shape, dtype))),
            _ => Err(self.error(
                field,
                format!("dataset of shape {shape:?} is larger than {MAX_READ_BYTES} bytes"),
            )),
        }
    }

    /// Reads a numeric field as f64, `None` when absent.
    pub fn read_f64(&self, field: &str) -> Result<Option<Field<f64>>> {
        self.read_numeric(field, |ds| ds.read_f64())
    }

    /// Reads a numeric field as f32, `None` when absent.
    pub fn read_f32(&self, field: &str) -> Result<Option<Field<f32>>> {
        self.read_numeric(field, |ds| ds.read_f32())
    }

    /// Reads an integer field as u32, `None` when absent.
    pub fn read_u32(&self, field: &str) -> Result<Option<Field<u32>>> {
        let field_value = self.read_numeric(field, |ds| ds.read_u32())?;
        if let Some(f) = &field_value {
            if matches!(f.dtype, DType::F32 | DType::F64) {
                return Err(self.error(
                    field,
                    format!("expected unsigned integers, found {}", f.dtype),
                ));
            }
        }
        Ok(field_value)
    }

    fn read_numeric<T>(
        &self,
        field: &str,
        read: impl FnOnce(&hdf5_pure::Dataset) -> std::result::Result<Vec<T>, hdf5_pure::Error>,
    ) -> Result<Option<Field<T>>> {
        let Some((ds, shape, dtype)) = self.layout(field)? else {
            return Ok(None);
        };
        if !is_numeric(&dtype) {
            return Err(self.error(field, format!("expected numbers, found {dtype} values")));
        }
        let values = read(&ds).map_err(|e| self.error(field, format!("unreadable: {e}")))?;
        let count: usize = shape.iter().product();
        if values.len() != count {
            return Err(self.error(
                field,
                format!(
                    "shape {shape:?} holds {count} values but {} were read",
                    values.len()
                ),
            ));
        }
        Ok(Some(Field {
            shape,
            values,
            dtype,
        }))
    }

    /// Reads a string field (one string, or the first of an array), `None` when absent.
    pub fn read_string(&self, field: &str) -> Result<Option<String>> {
        let Some((ds, _, dtype)) = self.layout(field)? else {
            return Ok(None);
        };
        if !matches!(dtype, DType::String | DType::VariableLengthString) {
            return Err(self.error(field, format!("expected a string, found {dtype} values")));
        }
        let strings = ds
            .read_string()
            .map_err(|e| self.error(field, format!("unreadable: {e}")))?;
        match strings.as_slice() {
            [one] => Ok(Some(one.trim_end_matches('\0').trim().to_string())),
            other => Err(self.error(field, format!("expected one string, found {}", other.len()))),
        }
    }

    /// Reads a complex array stored as a compound `{r, i}` (or `{real, imag}`) of f32 or f64,
    /// `None` when absent.
    pub fn read_complex(&self, field: &str) -> Result<Option<Field<Complex32>>> {
        let Some((ds, shape, dtype)) = self.layout(field)? else {
            return Ok(None);
        };
        let width = match &dtype {
            DType::Compound(members) => match members.as_slice() {
                [(re, a), (im, b)]
                    if is_complex_pair(re, im)
                        && a == b
                        && matches!(a, DType::F32 | DType::F64) =>
                {
                    if *a == DType::F32 {
                        4
                    } else {
                        8
                    }
                }
                _ => 0,
            },
            _ => 0,
        };
        let element = ds
            .element_size()
            .map_err(|e| self.error(field, format!("unreadable: {e}")))?;
        if width == 0 || element != 2 * width as u64 {
            return Err(self.error(
                field,
                format!("expected complex numbers (compound {{r, i}} of floats), found {dtype}"),
            ));
        }
        let raw = ds
            .read_raw()
            .map_err(|e| self.error(field, format!("unreadable: {e}")))?;
        let count: usize = shape.iter().product();
        if raw.len() != count * 2 * width {
            return Err(self.error(
                field,
                format!(
                    "shape {shape:?} needs {} bytes, found {}",
                    count * 2 * width,
                    raw.len()
                ),
            ));
        }
        let values = raw
            .chunks_exact(2 * width)
            .map(|rec| {
                let (re, im) = rec.split_at(width);
                Complex32::new(decode_float(re), decode_float(im))
            })
            .collect();
        Ok(Some(Field {
            shape,
            values,
            dtype,
        }))
    }
}

fn is_complex_pair(re: &str, im: &str) -> bool {
    matches!((re, im), ("r", "i") | ("real", "imag") | ("re", "im"))
}

/// Little-endian f32 or f64 to f32.
fn decode_float(bytes: &[u8]) -> f32 {
    match bytes.len() {
        4 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[..8]);
            f64::from_le_bytes(b) as f32
        }
    }
}

fn is_numeric(dtype: &DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F64
            | DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    )
}

/// The largest value an integer type holds, `None` for floats and other types.
pub(crate) fn integer_max(dtype: &DType) -> Option<f64> {
    Some(match dtype {
        DType::I8 => i8::MAX as f64,
        DType::I16 => i16::MAX as f64,
        DType::I32 => i32::MAX as f64,
        DType::I64 => i64::MAX as f64,
        DType::U8 => u8::MAX as f64,
        DType::U16 => u16::MAX as f64,
        DType::U32 => u32::MAX as f64,
        DType::U64 => u64::MAX as f64,
        _ => return None,
    })
}

/// A contiguous row-major view of an array's elements, copying only when needed.
pub(crate) fn row_major<'a, T: Clone, D: ndarray::Dimension>(
    a: &'a ndarray::ArrayRef<T, D>,
) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Stages a complex array as an h5py-compatible compound `{r: f32, i: f32}` dataset.
pub(crate) fn stage_complex(ds: &mut DatasetBuilder, values: &[Complex32], shape: &[usize]) {
    let datatype = CompoundTypeBuilder::new()
        .f32_field("r")
        .f32_field("i")
        .build()
        .expect("two f32 fields always make a valid compound type");
    let mut raw = Vec::with_capacity(values.len() * 8);
    for v in values {
        raw.extend_from_slice(&v.re.to_le_bytes());
        raw.extend_from_slice(&v.im.to_le_bytes());
    }
    ds.with_compound_data(datatype, raw, values.len() as u64)
        .with_shape(&dims(shape));
}

/// Shape as the u64 dimensions hdf5-pure takes.
pub(crate) fn dims(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

/// Stages a scalar f64 dataset.
pub(crate) fn stage_scalar(ds: &mut DatasetBuilder, value: f64) {
    ds.with_f64_data(&[value]).with_shape(&[]);
}

/// Stages a scalar ASCII string dataset.
pub(crate) fn stage_string(ds: &mut DatasetBuilder, value: &str) -> Result<()> {
    ds.with_ascii_strings(&[value])
        .map_err(|e| Error::invalid("HDF5 string", e.to_string()))?
        .with_shape(&[]);
    Ok(())
}

/// Serialises `builder` and writes it to `path` atomically.
pub(crate) fn write_file(path: &Path, builder: FileBuilder) -> Result<()> {
    crate::io::atomic::write_atomic(path, |w| {
        builder.finish_to(&mut *w).map_err(|e| match e {
            hdf5_pure::Error::Io(io) => Error::io(path, io),
            other => Error::field(
                path,
                "/",
                format!("could not encode the HDF5 file: {other}"),
            ),
        })?;
        w.flush().map_err(|e| Error::io(path, e))
    })
}
