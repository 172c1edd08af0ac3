//! Multipage TIFF stacks of detector frames (one page per frame), as beamline detectors write
//! them.
//!
//! Reading accepts single-channel (greyscale) pages of 8, 16, 32 or 64-bit unsigned or signed
//! integers or 32/64-bit floats, any compression the `tiff` crate decodes; all pages must have
//! the same size. Values are returned as f32 photon counts (or ADU) without any scaling.
//! Writing stores 16-bit unsigned integers (values rounded and clamped to 0..65535, as a counting
//! detector would) or 32-bit floats.

use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;
use ndarray::{Array2, Array3};
use std::path::Path;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::ColorType;

/// Frames read from a TIFF file with what was stored.
#[derive(Clone, Debug)]
pub struct TiffStack {
    /// Frames (pages, rows, cols).
    pub frames: Array3<f32>,
    /// Stored sample type, e.g. `u16`, `f32`.
    pub dtype: &'static str,
    /// Largest value the stored integer type holds (`None` for floats).
    pub dtype_max: Option<f64>,
}

fn field_error(path: &Path, page: usize, problem: impl Into<String>) -> Error {
    Error::field(path, format!("page {page}"), problem)
}

/// Reads every page of the TIFF file at `path`. Errors name the file and the page.
pub fn read_stack(path: &Path) -> Result<TiffStack> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = Decoder::new(std::io::BufReader::new(file))
        .map_err(|e| field_error(path, 0, format!("expected a TIFF image: {e}")))?
        .with_limits(Limits::unlimited());
    let mut values: Vec<f32> = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    let mut page = 0;
    let stored = loop {
        let (w, h) = decoder
            .dimensions()
            .map_err(|e| field_error(path, page, format!("unreadable: {e}")))?;
        let colour = decoder
            .colortype()
            .map_err(|e| field_error(path, page, format!("unreadable: {e}")))?;
        if !matches!(
            colour,
            ColorType::Gray(_) | ColorType::Multiband { num_samples: 1, .. }
        ) {
            return Err(field_error(
                path,
                page,
                format!("expected single-channel (greyscale) frames, found {colour:?}"),
            ));
        }
        let (h, w) = (h as usize, w as usize);
        match shape {
            None => shape = Some((h, w)),
            Some(s) if s != (h, w) => {
                return Err(field_error(
                    path,
                    page,
                    format!(
                        "expected every page {} x {} like page 0, found {h} x {w}",
                        s.0, s.1
                    ),
                ))
            }
            Some(_) => {}
        }
        let image = decoder
            .read_image()
            .map_err(|e| field_error(path, page, format!("unreadable: {e}")))?;
        let (kind, max, pixels) =
            to_f32(image).ok_or_else(|| field_error(path, page, "unsupported sample type"))?;
        if pixels.len() != h * w {
            return Err(field_error(
                path,
                page,
                format!("expected {} samples, decoded {}", h * w, pixels.len()),
            ));
        }
        values.extend(pixels);
        page += 1;
        if !decoder.more_images() {
            break (kind, max);
        }
        decoder
            .next_image()
            .map_err(|e| field_error(path, page, format!("unreadable: {e}")))?;
    };
    let (h, w) = shape.unwrap_or((0, 0));
    let frames = Array3::from_shape_vec((page, h, w), values)
        .map_err(|e| field_error(path, 0, format!("inconsistent pages: {e}")))?;
    Ok(TiffStack {
        frames,
        dtype: stored.0,
        dtype_max: stored.1,
    })
}

/// Reads a single image: the first page, or the mean of all pages when there are several.
pub fn read_image(path: &Path) -> Result<Array2<f32>> {
    let stack = read_stack(path)?;
    Ok(mean_frame(&stack.frames))
}

/// Mean over the first axis (f64 sums).
pub fn mean_frame(frames: &Array3<f32>) -> Array2<f32> {
    let (count, h, w) = frames.dim();
    let mut sum = Array2::<f64>::zeros((h, w));
    for frame in frames.outer_iter() {
        ndarray::Zip::from(&mut sum)
            .and(&frame)
            .for_each(|s, &v| *s += v as f64);
    }
    sum.mapv(|s| (s / count.max(1) as f64) as f32)
}

fn to_f32(image: DecodingResult) -> Option<(&'static str, Option<f64>, Vec<f32>)> {
    fn cast<T: Copy>(v: Vec<T>, f: impl Fn(T) -> f32) -> Vec<f32> {
        v.into_iter().map(f).collect()
    }
    Some(match image {
        DecodingResult::U8(v) => ("u8", Some(u8::MAX as f64), cast(v, f32::from)),
        DecodingResult::U16(v) => ("u16", Some(u16::MAX as f64), cast(v, f32::from)),
        DecodingResult::U32(v) => ("u32", Some(u32::MAX as f64), cast(v, |x| x as f32)),
        DecodingResult::U64(v) => ("u64", Some(u64::MAX as f64), cast(v, |x| x as f32)),
        DecodingResult::I8(v) => ("i8", Some(i8::MAX as f64), cast(v, f32::from)),
        DecodingResult::I16(v) => ("i16", Some(i16::MAX as f64), cast(v, f32::from)),
        DecodingResult::I32(v) => ("i32", Some(i32::MAX as f64), cast(v, |x| x as f32)),
        DecodingResult::I64(v) => ("i64", Some(i64::MAX as f64), cast(v, |x| x as f32)),
        DecodingResult::F32(v) => ("f32", None, v),
        DecodingResult::F64(v) => ("f64", None, cast(v, |x| x as f32)),
        _ => return None,
    })
}

/// Writes `frames` as a multipage 16-bit TIFF (values rounded, clamped to 0..65535), atomically.
pub fn write_stack_u16(path: &Path, frames: &Array3<f32>) -> Result<()> {
    let (_, h, w) = frames.dim();
    write_atomic(path, |out| {
        let mut enc = TiffEncoder::new(out).map_err(|e| encode_error(path, e))?;
        for frame in frames.outer_iter() {
            let data: Vec<u16> = frame
                .iter()
                .map(|&v| v.round().clamp(0.0, u16::MAX as f32) as u16)
                .collect();
            enc.write_image::<colortype::Gray16>(w as u32, h as u32, &data)
                .map_err(|e| encode_error(path, e))?;
        }
        Ok(())
    })
}

/// Writes `frames` as a multipage 32-bit float TIFF, atomically.
pub fn write_stack_f32(path: &Path, frames: &Array3<f32>) -> Result<()> {
    let (_, h, w) = frames.dim();
    write_atomic(path, |out| {
        let mut enc = TiffEncoder::new(out).map_err(|e| encode_error(path, e))?;
        for frame in frames.outer_iter() {
            let data: Vec<f32> = frame.iter().copied().collect();
            enc.write_image::<colortype::Gray32Float>(w as u32, h as u32, &data)
                .map_err(|e| encode_error(path, e))?;
        }
        Ok(())
    })
}

fn encode_error(path: &Path, e: tiff::TiffError) -> Error {
    Error::field(path, "-", format!("could not encode the TIFF file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_u16_and_f32_stacks() {
        let dir = tempfile::tempdir().unwrap();
        let frames = Array3::from_shape_fn((3, 5, 7), |(k, r, c)| (k * 100 + r * 7 + c) as f32);
        let p16 = dir.path().join("a.tif");
        write_stack_u16(&p16, &frames).unwrap();
        let back = read_stack(&p16).unwrap();
        assert_eq!(back.dtype, "u16");
        assert_eq!(back.dtype_max, Some(65535.0));
        assert_eq!(back.frames, frames);
        let pf = dir.path().join("b.tiff");
        let floats = frames.mapv(|v| v * 0.25 - 3.0);
        write_stack_f32(&pf, &floats).unwrap();
        let back = read_stack(&pf).unwrap();
        assert_eq!((back.dtype, back.frames.clone()), ("f32", floats.clone()));
        let mean = read_image(&pf).unwrap();
        assert_eq!(mean[[2, 3]], floats[[1, 2, 3]]);
        // Clamping of the 16-bit writer.
        let clipped = Array3::from_shape_vec((1, 1, 2), vec![-4.0f32, 1e6]).unwrap();
        write_stack_u16(&p16, &clipped).unwrap();
        assert_eq!(
            read_stack(&p16).unwrap().frames.into_raw_vec_and_offset().0,
            vec![0.0, 65535.0]
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.tif");
        let e = read_stack(&missing).unwrap_err().to_string();
        assert!(e.contains("none.tif"), "{e}");
        let junk = dir.path().join("junk.tif");
        std::fs::write(&junk, b"not a tiff at all").unwrap();
        let e = read_stack(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.tif") && e.contains("TIFF"), "{e}");
    }
}
