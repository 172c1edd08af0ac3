//! A small self-checking binary container: a JSON header and named little-endian arrays, closed
//! by a checksum. Checkpoints are stored in it (see [`crate::io::checkpoint`]).
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 16 | magic `AUTOPTY-CONTAIN1` |
//! | 8 | header length `h` (u64) |
//! | h | UTF-8 JSON: `{"meta": ..., "arrays": [{"name", "dtype", "shape", "offset"}]}` |
//! | ... | array data, each at its `offset` from the start of this section |
//! | 8 | FNV-1a 64-bit hash of everything before it |
//!
//! dtypes: `c64` (complex64: re, im as f32), `f64`, `u32`, `u64`. The reader checks the magic,
//! the hash, the header and every array's extent before it builds anything, so a truncated or
//! corrupted file gives an error naming the file and the part at fault, never a panic.

use crate::error::{Error, Result};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 16] = b"AUTOPTY-CONTAIN1";

/// The values of one stored array.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// complex64.
    C64(Vec<Complex32>),
    /// float64.
    F64(Vec<f64>),
    /// uint32.
    U32(Vec<u32>),
    /// uint64.
    U64(Vec<u64>),
}

impl Values {
    fn dtype(&self) -> &'static str {
        match self {
            Values::C64(_) => "c64",
            Values::F64(_) => "f64",
            Values::U32(_) => "u32",
            Values::U64(_) => "u64",
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::C64(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::U32(v) => v.len(),
            Values::U64(v) => v.len(),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Values::C64(v) => v.iter().for_each(|z| {
                out.extend_from_slice(&z.re.to_le_bytes());
                out.extend_from_slice(&z.im.to_le_bytes());
            }),
            Values::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::U32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::U64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
}

/// A named array with its shape (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedArray {
    /// Name, unique in a container.
    pub name: String,
    /// Shape; the product is the number of values.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Values,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: serde_json::Value,
    arrays: Vec<Entry>,
}

/// FNV-1a, 64 bits: enough to tell a torn or bit-flipped file from a whole one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Encodes `meta` and `arrays` into the container's bytes.
pub fn encode(meta: &serde_json::Value, arrays: &[NamedArray]) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut entries = Vec::with_capacity(arrays.len());
    for a in arrays {
        if a.shape.iter().product::<usize>() != a.values.len() {
            return Err(Error::invalid(
                format!("array '{}'", a.name),
                format!(
                    "shape {:?} does not hold {} values",
                    a.shape,
                    a.values.len()
                ),
            ));
        }
        entries.push(Entry {
            name: a.name.clone(),
            dtype: a.values.dtype().into(),
            shape: a.shape.clone(),
            offset: data.len() as u64,
        });
        a.values.write_to(&mut data);
    }
    let header = serde_json::to_vec(&Header {
        meta: meta.clone(),
        arrays: entries,
    })
    .map_err(|e| Error::invalid("container header", e.to_string()))?;
    let mut out = Vec::with_capacity(32 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    let hash = fnv1a(&out);
    out.extend_from_slice(&hash.to_le_bytes());
    Ok(out)
}

/// Recomputes the checksum at the end of `bytes` (at least 8 long) after an edit: lets the
/// fuzz tests reach the parser behind the checksum.
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= 8 {
        let body = bytes.len() - 8;
        let hash = fnv1a(&bytes[..body]);
        bytes[body..].copy_from_slice(&hash.to_le_bytes());
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes a container read from `path` (named in errors): its meta and arrays.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(serde_json::Value, Vec<NamedArray>)> {
    let bad = |field: &str, problem: String| Error::field(path, field, problem);
    if bytes.len() < 32 || &bytes[..16] != MAGIC {
        return Err(bad(
            "magic",
            "expected an autopty checkpoint (starting with AUTOPTY-CONTAIN1, at least 32 bytes)"
                .into(),
        ));
    }
    let body = bytes.len() - 8;
    if fnv1a(&bytes[..body]) != u64_at(bytes, body) {
        return Err(bad(
            "checksum",
            "expected the stored checksum to match the contents: the file is truncated or damaged"
                .into(),
        ));
    }
    let header_len = u64_at(bytes, 16);
    let data_start = 24u64
        .checked_add(header_len)
        .filter(|&e| e <= body as u64)
        .ok_or_else(|| {
            bad(
                "header length",
                format!("expected at most {} bytes, found {header_len}", body - 24),
            )
        })? as usize;
    let header: Header = serde_json::from_slice(&bytes[24..data_start]).map_err(|e| {
        bad(
            "header",
            format!("expected the container's JSON header: {e}"),
        )
    })?;
    let data = &bytes[data_start..body];
    let mut arrays = Vec::with_capacity(header.arrays.len());
    for e in header.arrays {
        let size = match e.dtype.as_str() {
            "c64" | "f64" | "u64" => 8,
            "u32" => 4,
            other => {
                return Err(bad(
                    &e.name,
                    format!("expected dtype c64, f64, u32 or u64, found '{other}'"),
                ))
            }
        };
        let count = e
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(&e.name, format!("shape {:?} overflows", e.shape)))?;
        let extent = count
            .checked_mul(size)
            .and_then(|n| (e.offset as usize).checked_add(n).map(|end| (n, end)))
            .filter(|&(_, end)| end <= data.len() && e.offset <= data.len() as u64);
        let Some((n, end)) = extent else {
            return Err(bad(
                &e.name,
                format!(
                    "expected {count} values of {size} bytes at offset {} inside the {} data bytes",
                    e.offset,
                    data.len()
                ),
            ));
        };
        let raw = &data[end - n..end];
        let values = match e.dtype.as_str() {
            "c64" => Values::C64(
                raw.chunks_exact(8)
                    .map(|c| {
                        Complex32::new(
                            f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                            f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                        )
                    })
                    .collect(),
            ),
            "f64" => Values::F64(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            "u64" => Values::U64(
                raw.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            _ => Values::U32(
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        };
        arrays.push(NamedArray {
            name: e.name,
            shape: e.shape,
            values,
        });
    }
    Ok((header.meta, arrays))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<NamedArray> {
        vec![
            NamedArray {
                name: "z".into(),
                shape: vec![2, 2],
                values: Values::C64(vec![
                    Complex32::new(1.0, -2.0),
                    Complex32::new(0.5, 0.25),
                    Complex32::new(f32::MIN_POSITIVE, 3.0),
                    Complex32::new(-0.0, 7.5),
                ]),
            },
            NamedArray {
                name: "x".into(),
                shape: vec![3],
                values: Values::F64(vec![1e-300, -2.5, 3.0]),
            },
            NamedArray {
                name: "t".into(),
                shape: vec![1],
                values: Values::U32(vec![7]),
            },
            NamedArray {
                name: "o".into(),
                shape: vec![0],
                values: Values::U64(vec![]),
            },
        ]
    }

    #[test]
    fn round_trip_is_exact_and_damage_is_named() {
        let meta = serde_json::json!({"epoch": 3, "rng": {"state": u64::MAX}});
        let bytes = encode(&meta, &sample()).unwrap();
        let path = Path::new("ck.bin");
        let (m, arrays) = decode(path, &bytes).unwrap();
        assert_eq!(m, meta);
        assert_eq!(arrays, sample());
        let e = decode(path, &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ck.bin") && e.contains("checksum"), "{e}");
        let mut flipped = bytes.clone();
        flipped[40] ^= 4;
        let e = decode(path, &flipped).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let e = decode(path, b"not a checkpoint at all, really.")
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn a_shape_that_does_not_fit_is_refused() {
        let bad = NamedArray {
            name: "x".into(),
            shape: vec![2],
            values: Values::F64(vec![1.0]),
        };
        assert!(encode(&serde_json::Value::Null, &[bad]).is_err());
    }
}
