//! Inputs for the reader fuzz tests (`tests/fuzz_readers.rs` with proptest, `fuzz/` with
//! cargo-fuzz): a tiny valid CXI file to mutate, and the readers driven from bytes. Not part of
//! the stable API.

use crate::dataset::Dataset;
use crate::error::Result;
use crate::geometry::Geometry;
use ndarray::{s, Array2};
use std::path::{Path, PathBuf};

/// A valid dataset small enough to mutate quickly: 4 frames of 8 x 8 px from the `small`
/// preset's geometry (the frame size adjusted).
pub fn tiny_dataset() -> Result<Dataset> {
    let mut cfg = crate::sim::preset("small")?;
    cfg.noise.poisson = false;
    let (data, _) = crate::sim::simulate(&cfg)?;
    let n = 8;
    let c = data.frame() / 2 - n / 2;
    let geometry = Geometry {
        frame: n,
        ..data.geometry.clone()
    };
    Ok(Dataset {
        intensities: data
            .intensities
            .slice(s![..4, c..c + n, c..c + n])
            .to_owned(),
        mask: Array2::from_elem((n, n), true),
        positions: data.positions.slice(s![..4, ..]).to_owned(),
        geometry,
        noise_floor: data.noise_floor,
    })
}

/// The bytes of [`tiny_dataset`] written as CXI.
pub fn tiny_cxi_bytes(scratch: &Path) -> Result<Vec<u8>> {
    let path = scratch.join("tiny.cxi");
    crate::io::cxi::write(&path, &tiny_dataset()?)?;
    std::fs::read(&path).map_err(|e| crate::Error::io(&path, e))
}

/// A scratch file name unique to this process and thread.
pub fn scratch_file(dir: &Path, stem: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id())
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    dir.join(format!("{stem}-{}-{thread}", std::process::id()))
}

/// Applies edits to `base`: each 5-byte record of `script` is (offset: u32 LE, byte), the byte
/// written at offset mod length; a last short record truncates the file to offset mod length.
pub fn mutate(base: &[u8], script: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    let mut records = script.chunks_exact(5);
    for r in records.by_ref() {
        if out.is_empty() {
            break;
        }
        let at = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize % out.len();
        out[at] = r[4];
    }
    let rest = records.remainder();
    if rest.len() >= 2 && !out.is_empty() {
        let cut = u16::from_le_bytes([rest[0], rest[1]]) as usize * 64 % out.len();
        out.truncate(cut);
    }
    out
}

/// Writes `bytes` to `path` and reads it as CXI; the error text when it is refused.
pub fn read_cxi_bytes(path: &Path, bytes: &[u8]) -> std::result::Result<Dataset, String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    let r = crate::io::cxi::read(path, &Default::default()).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(path);
    r
}
