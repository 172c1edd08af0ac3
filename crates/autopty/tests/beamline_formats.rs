//! Beamline formats read back what the tests write in their layouts: PtyLab HDF5 (with an
//! orientation), CXI with int32 data, a mask and dark frames, raw TIFF stacks with darks, a
//! flat field, a mask, hot pixels, crop, binning and resampling; the reconstruction's CXI
//! output; and one clear error per malformed raw input.

use autopty::geometry::Regime;
use autopty::io::positions_file::{LengthUnit, PositionsFile};
use autopty::io::raw::{Preprocess, RawGeometry, RawInput};
use autopty::io::{cxi, cxi_output, ptylab, tiff_stack};
use hdf5_pure::FileBuilder;
use ndarray::{Array2, Array3};
use std::path::{Path, PathBuf};

fn scalar(builder: &mut FileBuilder, name: &str, v: f64) {
    builder
        .create_dataset(name)
        .with_f64_data(&[v])
        .with_shape(&[]);
}

#[test]
fn ptylab_file_reads_with_its_orientation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.hdf5");
    let (j, n) = (4, 6);
    let stored: Vec<u16> = (0..j * n * n).map(|i| (i % 251) as u16).collect();
    let encoder: Vec<f64> = (0..j * 2).map(|i| i as f64 * 1.5e-7).collect();
    let mut b = FileBuilder::new();
    b.create_dataset("ptychogram")
        .with_u16_data(&stored)
        .with_shape(&[j as u64, n as u64, n as u64]);
    b.create_dataset("encoder")
        .with_f64_data(&encoder)
        .with_shape(&[j as u64, 2]);
    scalar(&mut b, "wavelength", 13.5e-9);
    scalar(&mut b, "dxd", 13.5e-6);
    scalar(&mut b, "zo", 0.07);
    scalar(&mut b, "entrancePupilDiameter", 4e-6);
    b.create_dataset("orientation")
        .with_i64_data(&[5])
        .with_shape(&[]);
    std::fs::write(&path, b.finish().unwrap()).unwrap();

    assert!(ptylab::is_ptylab(&path));
    let (data, info) = ptylab::read(&path, &ptylab::PtylabOptions::default()).unwrap();
    assert_eq!(data.intensities.dim(), (j, n, n));
    // Orientation 5: transpose, then invert the columns: out[k, r, c] = in[k, n-1-c, r].
    for k in 0..j {
        for r in 0..n {
            for c in 0..n {
                let want = stored[k * n * n + (n - 1 - c) * n + r] as f32;
                assert_eq!(data.intensities[[k, r, c]], want, "({k}, {r}, {c})");
            }
        }
    }
    assert_eq!(data.positions[[3, 0]], 6.0 * 1.5e-7);
    assert_eq!(data.positions[[3, 1]], 7.0 * 1.5e-7);
    let g = &data.geometry;
    assert_eq!(
        (g.regime, g.wavelength, g.detector_pixel, g.distance),
        (Regime::FarField, 13.5e-9, 13.5e-6, 0.07)
    );
    assert_eq!(info.entrance_pupil_diameter, Some(4e-6));
    assert_eq!((info.orientation, info.dtype.as_str()), (5, "u16"));

    // A missing required field is named.
    let bad = dir.path().join("bad.hdf5");
    let mut b = FileBuilder::new();
    b.create_dataset("ptychogram")
        .with_u16_data(&stored)
        .with_shape(&[j as u64, n as u64, n as u64]);
    b.create_dataset("encoder")
        .with_f64_data(&encoder)
        .with_shape(&[j as u64, 2]);
    scalar(&mut b, "wavelength", 13.5e-9);
    scalar(&mut b, "dxd", 13.5e-6);
    std::fs::write(&bad, b.finish().unwrap()).unwrap();
    let e = ptylab::read(&bad, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.hdf5") && e.contains("/zo"), "{e}");
}

#[test]
fn cxi_with_int32_data_mask_and_darks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.cxi");
    let (j, n) = (3, 8);
    let data: Vec<i32> = (0..j * n * n).map(|i| 100 + (i % 37) as i32).collect();
    // Two dark frames of mean 7 + (pixel % 3); one pixel's dark exceeds its data (clipped).
    let mut dark: Vec<f32> = (0..2 * n * n)
        .map(|i| 7.0 + (i % (n * n) % 3) as f32 + if i < n * n { -1.0 } else { 1.0 })
        .collect();
    dark[5] = 1000.0;
    dark[n * n + 5] = 1000.0;
    let mut flags = vec![0u32; n * n];
    flags[9] = 1;
    flags[n * n - 1] = 8;
    let translation: Vec<f64> = (0..j)
        .flat_map(|k| [k as f64 * 1e-6, 0.5e-6, 0.0])
        .collect();
    let mut b = FileBuilder::new();
    let mut entry = b.create_group("entry_1");
    let mut instrument = entry.create_group("instrument_1");
    let mut det = instrument.create_group("detector_1");
    det.create_dataset("data")
        .with_i32_data(&data)
        .with_shape(&[j as u64, n as u64, n as u64]);
    det.create_dataset("mask")
        .with_u32_data(&flags)
        .with_shape(&[n as u64, n as u64]);
    det.create_dataset("data_dark")
        .with_f32_data(&dark)
        .with_shape(&[2, n as u64, n as u64]);
    det.create_dataset("distance")
        .with_f64_data(&[2.0])
        .with_shape(&[]);
    det.create_dataset("x_pixel_size")
        .with_f64_data(&[75e-6])
        .with_shape(&[]);
    instrument.add_group(det.finish());
    let mut source = instrument.create_group("source_1");
    source
        .create_dataset("wavelength")
        .with_f64_data(&[1e-10])
        .with_shape(&[]);
    instrument.add_group(source.finish());
    entry.add_group(instrument.finish());
    let mut sample = entry.create_group("sample_1");
    let mut geo = sample.create_group("geometry_1");
    geo.create_dataset("translation")
        .with_f64_data(&translation)
        .with_shape(&[j as u64, 3]);
    sample.add_group(geo.finish());
    entry.add_group(sample.finish());
    b.add_group(entry.finish());
    std::fs::write(&path, b.finish().unwrap()).unwrap();

    let (d, info) = cxi::read_with_info(&path, &Default::default()).unwrap();
    assert_eq!(info.data_dtype, "i32");
    assert!(!d.mask[[1, 1]] && !d.mask[[n - 1, n - 1]]);
    assert_eq!(d.mask.iter().filter(|&&m| m).count(), n * n - 2);
    for k in 0..j {
        for p in 0..n * n {
            let want = if p == 5 {
                0.0
            } else {
                (data[k * n * n + p] as f32 - (7.0 + (p % 3) as f32)).max(0.0)
            };
            assert_eq!(
                d.intensities[[k, p / n, p % n]],
                want,
                "pattern {k} pixel {p}"
            );
        }
    }
    // Noise floor: per-pixel dark variance 2 (0 at pixel 5), mean 126 / 64, times 1 + 1/2.
    assert!(
        (d.noise_floor - 126.0 / 64.0 * 1.5).abs() < 1e-9,
        "{}",
        d.noise_floor
    );
    assert_eq!(d.positions[[2, 1]], -2e-6);
    assert_eq!(d.positions[[2, 0]], -0.5e-6);
}

/// A raw scan written to `dir`: frames 12 x 16 (J = 5), a hot pixel, positions in nm.
struct RawFiles {
    input: RawInput,
    frames: Array3<f32>,
}

fn raw_files(dir: &Path) -> RawFiles {
    let (j, h, w) = (5, 12, 16);
    let frames = Array3::from_shape_fn((j, h, w), |(k, r, c)| {
        let (dr, dc) = (r as f32 - 6.0, c as f32 - 9.0);
        20.0 + 200.0 * (-(dr * dr + dc * dc) / 8.0).exp() + k as f32
    });
    let mut stored = frames.mapv(|v| v + 10.0);
    stored.slice_mut(ndarray::s![.., 2, 3]).fill(40000.0);
    tiff_stack::write_stack_u16(&dir.join("frames.tif"), &stored.mapv(f32::round)).unwrap();
    let darks = Array3::from_shape_fn((3, h, w), |(k, _, _)| 9.0 + k as f32);
    tiff_stack::write_stack_u16(&dir.join("darks.tif"), &darks).unwrap();
    let mut mask = Array3::from_elem((1, h, w), 1.0f32);
    mask[[0, 11, 10]] = 0.0;
    tiff_stack::write_stack_u16(&dir.join("mask.tif"), &mask).unwrap();
    let positions: String = (0..j)
        .map(|k| format!("{} {}\n", 100.0 * k as f64, -50.0 * k as f64))
        .collect();
    std::fs::write(dir.join("pos.txt"), format!("x y\n{positions}")).unwrap();
    let input = RawInput {
        frames: dir.join("frames.tif"),
        positions: PositionsFile {
            file: dir.join("pos.txt"),
            unit: LengthUnit::Nm,
            ..Default::default()
        },
        darks: Some(dir.join("darks.tif")),
        mask: Some(dir.join("mask.tif")),
        geometry: RawGeometry {
            wavelength: Some(1e-9),
            detector_pixel: 13.5e-6,
            distance: 0.5,
            source_distance: Some(0.014),
            ..Default::default()
        },
        preprocess: Preprocess {
            hot_pixels: true,
            ..Default::default()
        },
        ..Default::default()
    };
    RawFiles { input, frames }
}

#[test]
fn raw_tiff_pipeline_gives_the_expected_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let RawFiles { mut input, frames } = raw_files(dir.path());
    let (data, report) = input.load(Path::new("job.toml")).unwrap();
    // Dark mean 10 subtracted; 12 x 16 cropped to 12 x 12 around the centre of mass (col ~9).
    assert_eq!(report.dark_frames, 3);
    assert!((report.dark_mean.unwrap() - 10.0).abs() < 1e-9);
    // Darks 9, 10, 11 in every pixel: variance 1, times 1 + 1/3 for the subtracted mean.
    assert!(
        (data.noise_floor - 4.0 / 3.0).abs() < 1e-9,
        "{}",
        data.noise_floor
    );
    assert_eq!(report.noise_floor, data.noise_floor);
    assert_eq!((report.hot_pixels, report.crop, report.size), (1, 12, 12));
    assert_eq!(data.frame(), 12);
    let left = ((report.centre[1] - 6.0).round() as usize).min(4);
    assert_eq!(left, 3);
    for (r, c) in [(0, 0), (6, 6), (5, 9)] {
        let want = frames[[2, r, c + left]].round();
        assert!(
            (data.intensities[[2, r, c]] - want).abs() < 0.51,
            "({r}, {c})"
        );
    }
    assert!(!data.mask[[2, 3 - left]], "hot pixel masked");
    assert!(!data.mask[[11, 10 - left]], "mask image applied");
    assert_eq!(data.intensities[[0, 2, 3 - left]], 0.0);
    assert_eq!(data.geometry.source_distance, Some(0.014));
    assert_eq!(data.geometry.regime, Regime::NearField);
    assert!((data.positions[[4, 1]] - 400e-9).abs() < 1e-15);
    assert!((data.positions[[4, 0]] + 200e-9).abs() < 1e-15);

    // Binning by 2: counts conserved outside the blocks that hold a masked pixel.
    input.preprocess.bin = 2;
    let (small, _) = input.load(Path::new("job.toml")).unwrap();
    assert_eq!(small.frame(), 6);
    // A binned pixel adds the noise of four.
    assert!((small.noise_floor - 16.0 / 3.0).abs() < 1e-9);
    assert!((small.geometry.detector_pixel - 27e-6).abs() < 1e-15);
    let total = |d: &autopty::Dataset| d.intensities.iter().map(|&v| v as f64).sum::<f64>();
    let masked_out: f64 = (0..5)
        .map(|k| {
            let c = &data.intensities;
            // Pixels lost to masked bins: the binned blocks holding a masked pixel.
            let mut lost = 0.0;
            for br in 0..6 {
                for bc in 0..6 {
                    let block: Vec<(usize, usize)> =
                        (0..4).map(|q| (2 * br + q / 2, 2 * bc + q % 2)).collect();
                    if block.iter().any(|&(r, cc)| !data.mask[[r, cc]]) {
                        lost += block
                            .iter()
                            .map(|&(r, cc)| c[[k, r, cc]] as f64)
                            .sum::<f64>();
                    }
                }
            }
            lost
        })
        .sum();
    assert!(
        ((total(&small) - (total(&data) - masked_out)) / total(&data)).abs() < 1e-5,
        "{} vs {}",
        total(&small),
        total(&data) - masked_out
    );
    // Then resampling to 4 px: pixel 13.5 um * 2 * 6 / 4; counts conserved away from the mask.
    input.preprocess.size = Some(4);
    let (resampled, _) = input.load(Path::new("job.toml")).unwrap();
    assert_eq!(resampled.frame(), 4);
    // An output pixel 1.5 binned pixels wide: 2.25 times their noise.
    assert!((resampled.noise_floor - 12.0).abs() < 1e-9);
    // A given noise floor replaces the measured one, and is scaled the same way.
    input.preprocess.noise_floor = Some(2.0);
    let (given, _) = input.load(Path::new("job.toml")).unwrap();
    assert!((given.noise_floor - 18.0).abs() < 1e-9);
    assert!((resampled.geometry.detector_pixel - 40.5e-6).abs() < 1e-15);
    // Output (0, 0) covers binned [0, 1.5)^2: 1 + 0.5 + 0.5 + 0.25 binned pixels.
    let b = &small.intensities;
    let want = b[[1, 0, 0]] + 0.5 * (b[[1, 0, 1]] + b[[1, 1, 0]]) + 0.25 * b[[1, 1, 1]];
    if small.mask[[0, 0]] && small.mask[[1, 1]] && small.mask[[0, 1]] && small.mask[[1, 0]] {
        assert!((resampled.intensities[[1, 0, 0]] - want).abs() < 1e-3 * want);
    } else {
        assert!(!resampled.mask[[0, 0]]);
    }
}

fn error_of(input: &RawInput) -> String {
    input
        .load(Path::new("job.toml"))
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_raw_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let RawFiles { input, .. } = raw_files(dir.path());
    let with = |f: &dyn Fn(&mut RawInput)| {
        let mut i = input.clone();
        f(&mut i);
        error_of(&i)
    };
    let missing: PathBuf = dir.path().join("nope.tif");
    let e = with(&|i| i.frames = missing.clone());
    assert!(e.contains("nope.tif"), "{e}");
    // Wrong frame count: 4 positions for 5 frames.
    std::fs::write(dir.path().join("four.txt"), "0 0\n1 1\n2 2\n3 3\n").unwrap();
    let e = with(&|i| i.positions.file = dir.path().join("four.txt"));
    assert!(
        e.contains("four.txt") && e.contains("4 positions") && e.contains("5 frames"),
        "{e}"
    );
    std::fs::write(dir.path().join("nan.txt"), "0 0\n1 1\n2 NaN\n3 3\n4 4\n").unwrap();
    let e = with(&|i| i.positions.file = dir.path().join("nan.txt"));
    assert!(e.contains("nan.txt") && e.contains("line 3"), "{e}");
    let e = with(&|i| i.geometry.distance = 0.0);
    assert!(
        e.contains("job.toml") && e.contains("geometry.distance"),
        "{e}"
    );
    let e = with(&|i| i.geometry.source_distance = Some(-0.01));
    assert!(e.contains("geometry.source_distance"), "{e}");
    let e = with(&|i| i.geometry.detector_pixel = -1.0);
    assert!(e.contains("geometry.detector_pixel"), "{e}");
    tiff_stack::write_stack_u16(&dir.path().join("mask8.tif"), &Array3::ones((1, 8, 8))).unwrap();
    let e = with(&|i| i.mask = Some(dir.path().join("mask8.tif")));
    assert!(e.contains("mask8.tif") && e.contains("12 x 16"), "{e}");
    let e = with(&|i| i.darks = Some(dir.path().join("mask8.tif")));
    assert!(e.contains("darks"), "{e}");
    std::fs::write(dir.path().join("empty.tif"), b"").unwrap();
    let e = with(&|i| i.frames = dir.path().join("empty.tif"));
    assert!(e.contains("empty.tif"), "{e}");
    let e = with(&|i| i.preprocess.crop = Some(40));
    assert!(e.contains("preprocess.crop"), "{e}");
    let e = with(&|i| i.preprocess.bin = 0);
    assert!(e.contains("preprocess.bin"), "{e}");
    for bad in [-1.0, f64::NAN] {
        let e = with(&|i| i.preprocess.noise_floor = Some(bad));
        assert!(
            e.contains("job.toml") && e.contains("preprocess.noise_floor"),
            "{e}"
        );
    }
    let e = with(&|i| i.geometry.wavelength = None);
    assert!(e.contains("geometry.wavelength"), "{e}");
    // Unknown TOML keys are named.
    let toml = dir.path().join("raw.toml");
    std::fs::write(&toml, "frames = \"frames.tif\"\nframe_count = 3\n").unwrap();
    let e = RawInput::from_file(&toml).unwrap_err().to_string();
    assert!(e.contains("raw.toml") && e.contains("frame_count"), "{e}");
}

#[test]
fn reconstruction_cxi_output_holds_object_probe_positions_and_distance() {
    let dir = tempfile::tempdir().unwrap();
    let g = autopty::Geometry {
        regime: Regime::NearField,
        wavelength: 1e-9,
        detector_pixel: 13.5e-6,
        distance: 0.5,
        source_distance: Some(0.0141),
        frame: 4,
    };
    let rec = autopty::Reconstruction {
        engine: "adam".into(),
        object: Array2::from_shape_fn((6, 7), |(r, c)| {
            num_complex::Complex32::new(r as f32, -(c as f32))
        }),
        probe: Array3::from_shape_fn((2, 4, 4), |(m, r, c)| {
            num_complex::Complex32::new(m as f32 + 0.5, (r * 4 + c) as f32)
        }),
        positions: Array2::from_shape_fn((3, 2), |(j, k)| j as f64 + 0.25 * k as f64),
        nominal_positions: Array2::zeros((3, 2)),
        geometry: g.clone(),
        history: vec![],
        settings: serde_json::Value::Null,
    };
    let path = dir.path().join("reconstruction.cxi");
    cxi_output::write(&path, &rec).unwrap();
    let file = hdf5_pure::File::open(&path).unwrap();
    let t = file
        .dataset("/entry_1/sample_1/geometry_1/translation")
        .unwrap()
        .read_f64()
        .unwrap();
    let dx = g.sample_pixel();
    assert!((t[2 * 3] + 2.25 * dx).abs() < 1e-15 && (t[2 * 3 + 1] + 2.0 * dx).abs() < 1e-15);
    let z1 = file
        .dataset("/entry_1/autopty/source_distance")
        .unwrap()
        .read_f64()
        .unwrap();
    assert_eq!(z1, vec![0.0141]);
    let raw = file
        .dataset("/entry_1/image_1/data")
        .unwrap()
        .read_raw()
        .unwrap();
    // Element (2, 3) = 2 - 3i as {r, i} f32 pairs.
    let at = (2 * 7 + 3) * 8;
    let re = f32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
    let im = f32::from_le_bytes(raw[at + 4..at + 8].try_into().unwrap());
    assert_eq!((re, im), (2.0, -3.0));
    let shape = file
        .dataset("/entry_1/image_2/data")
        .unwrap()
        .shape()
        .unwrap();
    assert_eq!(shape, vec![2, 4, 4]);
}

#[test]
fn the_raw_example_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/raw_tiff.toml");
    let input = RawInput::from_file(&path).unwrap();
    assert_eq!(input.preprocess.bin, 2);
    assert_eq!(input.preprocess.size, Some(256));
    assert_eq!(input.positions.unit, LengthUnit::Um);
    assert_eq!(input.geometry.source_distance, Some(0.014));
    assert!(input.frames.ends_with("examples/scan_0042.tif"));
    // The files it names do not exist: the error names the stack.
    let e = input.load(&path).unwrap_err().to_string();
    assert!(e.contains("scan_0042.tif"), "{e}");
}
