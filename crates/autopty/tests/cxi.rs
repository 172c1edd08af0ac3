//! CXI reading and writing: exact round trips, integer data, masks, position conventions and
//! one error per malformed field.

use autopty::io::cxi::{self, CxiOptions, JOULES_PER_EV};
use autopty::{Dataset, Error, Geometry, Regime};
use hdf5_pure::FileBuilder;
use ndarray::{Array2, Array3};
use std::path::{Path, PathBuf};

/// A deterministic dataset: J patterns of N x N, a 2-D raster scan, two masked pixels.
fn sample_dataset(j: usize, n: usize, regime: Regime, z1: Option<f64>) -> Dataset {
    let intensities = Array3::from_shape_fn((j, n, n), |(k, r, c)| {
        ((k * 7 + r * 13 + c * 29) % 97) as f32 * 1.5 + 0.25
    });
    let mut mask = Array2::from_elem((n, n), true);
    mask[[0, 1]] = false;
    mask[[n - 1, 2]] = false;
    let positions = Array2::from_shape_fn((j, 2), |(k, axis)| {
        let (row, col) = ((k / 3) as f64, (k % 3) as f64);
        let step = 1.37e-7;
        if axis == 0 {
            row * step + 3.1e-9 * k as f64
        } else {
            col * step - 2.2e-9 * k as f64
        }
    });
    Dataset {
        intensities,
        mask,
        positions,
        geometry: Geometry {
            regime,
            wavelength: 1.549802e-10,
            detector_pixel: 75e-6,
            distance: if z1.is_some() { 0.35 } else { 5.2 },
            source_distance: z1,
            frame: n,
        },
        noise_floor: 0.0,
    }
}

/// Field-by-field description of a hand-made CXI file; `None` leaves a field out.
struct Spec {
    data: Option<Stage>,
    data_shape: Vec<u64>,
    data_at_alt: bool,
    translation: Option<(Vec<f64>, Vec<u64>)>,
    energy_j: Option<Vec<f64>>,
    wavelength: Option<f64>,
    distance: Option<f64>,
    x_pixel: Option<f64>,
    y_pixel: Option<f64>,
    mask: Option<(Vec<u32>, Vec<u64>)>,
    regime: Option<&'static str>,
    source_distance: Option<f64>,
    noise_floor: Option<f64>,
}

enum Stage {
    F32(Vec<f32>),
    I32(Vec<i32>),
    U16(Vec<u16>),
}

const J: usize = 4;
const N: usize = 8;

/// Data value of the hand-made files.
fn value(k: usize, r: usize, c: usize) -> i32 {
    ((k * 101 + r * 17 + c * 3) % 4000) as i32
}

/// Stage translations (J, 3): t_x = 1e-6 k, t_y = -2e-6 k + 1e-7, t_z = 0.01.
fn translation_rows() -> Vec<f64> {
    (0..J)
        .flat_map(|k| [1e-6 * k as f64, -2e-6 * k as f64 + 1e-7, 0.01])
        .collect()
}

impl Spec {
    fn valid() -> Spec {
        let data: Vec<f32> = (0..J * N * N)
            .map(|i| value(i / (N * N), (i / N) % N, i % N) as f32)
            .collect();
        Spec {
            data: Some(Stage::F32(data)),
            data_shape: vec![J as u64, N as u64, N as u64],
            data_at_alt: false,
            translation: Some((translation_rows(), vec![J as u64, 3])),
            energy_j: Some(vec![8000.0 * JOULES_PER_EV]),
            wavelength: None,
            distance: Some(2.5),
            x_pixel: Some(55e-6),
            y_pixel: Some(55e-6),
            mask: None,
            regime: None,
            source_distance: None,
            noise_floor: None,
        }
    }

    fn write(&self, path: &Path) {
        let mut b = FileBuilder::new();
        let mut entry = b.create_group("entry_1");
        let mut instrument = entry.create_group("instrument_1");
        let mut detector = instrument.create_group("detector_1");
        let mut data_group = entry.create_group("data_1");
        if let Some(data) = &self.data {
            let target = if self.data_at_alt {
                &mut data_group
            } else {
                &mut detector
            };
            let ds = target.create_dataset("data");
            match data {
                Stage::F32(v) => ds.with_f32_data(v),
                Stage::I32(v) => ds.with_i32_data(v),
                Stage::U16(v) => ds.with_u16_data(v),
            }
            .with_shape(&self.data_shape);
        }
        let scalar = |g: &mut hdf5_pure::GroupBuilder, name: &str, v: Option<f64>| {
            if let Some(v) = v {
                g.create_dataset(name).with_f64_data(&[v]).with_shape(&[]);
            }
        };
        scalar(&mut detector, "distance", self.distance);
        scalar(&mut detector, "x_pixel_size", self.x_pixel);
        scalar(&mut detector, "y_pixel_size", self.y_pixel);
        if let Some((flags, shape)) = &self.mask {
            detector
                .create_dataset("mask")
                .with_u32_data(flags)
                .with_shape(shape);
        }
        instrument.add_group(detector.finish());
        let mut source = instrument.create_group("source_1");
        if let Some(e) = &self.energy_j {
            let ds = source.create_dataset("energy").with_f64_data(e);
            if e.len() == 1 {
                ds.with_shape(&[]);
            }
        }
        scalar(&mut source, "wavelength", self.wavelength);
        instrument.add_group(source.finish());
        entry.add_group(instrument.finish());
        entry.add_group(data_group.finish());
        let mut sample = entry.create_group("sample_1");
        let mut geometry = sample.create_group("geometry_1");
        if let Some((t, shape)) = &self.translation {
            geometry
                .create_dataset("translation")
                .with_f64_data(t)
                .with_shape(shape);
        }
        sample.add_group(geometry.finish());
        entry.add_group(sample.finish());
        let mut autopty = entry.create_group("autopty");
        if let Some(r) = self.regime {
            autopty
                .create_dataset("regime")
                .with_ascii_strings(&[r])
                .unwrap();
        }
        scalar(&mut autopty, "source_distance", self.source_distance);
        scalar(&mut autopty, "noise_floor", self.noise_floor);
        entry.add_group(autopty.finish());
        b.add_group(entry.finish());
        b.write(path).unwrap();
    }
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn read_spec(spec: &Spec) -> autopty::Result<Dataset> {
    read_spec_with(spec, &CxiOptions::default())
}

fn read_spec_with(spec: &Spec, options: &CxiOptions) -> autopty::Result<Dataset> {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "made.cxi");
    spec.write(&path);
    cxi::read(&path, options)
}

/// Asserts that reading `spec` fails with a field error naming `field`.
fn assert_field_error(spec: Spec, field: &str) {
    match read_spec(&spec) {
        Ok(_) => panic!("expected an error naming {field}, the file was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(&e, Error::Field { field: f, .. } if f == field),
                "expected an error on {field}, got: {msg}"
            );
            assert!(msg.contains("made.cxi"), "message lacks the file: {msg}");
        }
    }
}

#[test]
fn write_then_read_is_exact() {
    for (regime, z1, floor) in [
        (Regime::FarField, None, 0.0),
        (Regime::NearField, Some(0.012), 21.375),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_file(&dir, "rt.cxi");
        let original = Dataset {
            noise_floor: floor,
            ..sample_dataset(7, 16, regime, z1)
        };
        cxi::write(&path, &original).unwrap();
        let back = cxi::read(&path, &CxiOptions::default()).unwrap();
        assert_eq!(back.intensities.shape(), &[7, 16, 16]);
        let bits_equal = original
            .intensities
            .iter()
            .zip(back.intensities.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(bits_equal, "intensities differ after the round trip");
        assert_eq!(back.mask, original.mask);
        assert_eq!(back.mask.iter().filter(|m| !**m).count(), 2);
        for (a, b) in original.positions.iter().zip(back.positions.iter()) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1e-9), "{a} vs {b}");
        }
        assert_eq!(back.geometry, original.geometry);
        assert_eq!(back.noise_floor, original.noise_floor);
        // Only the final file remains: the write was atomic.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn stored_translation_is_the_negated_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "t.cxi");
    let data = sample_dataset(5, 8, Regime::FarField, None);
    cxi::write(&path, &data).unwrap();
    let file = hdf5_pure::File::open(&path).unwrap();
    let t = file.dataset(cxi::TRANSLATION).unwrap().read_f64().unwrap();
    assert_eq!(t.len(), 15);
    for k in 0..5 {
        assert_eq!(t[3 * k], -data.positions[[k, 1]]);
        assert_eq!(t[3 * k + 1], -data.positions[[k, 0]]);
        assert_eq!(t[3 * k + 2], 0.0);
    }
    let energy = file.dataset(cxi::ENERGY).unwrap().read_f64().unwrap();
    assert!((energy[0] / JOULES_PER_EV - data.geometry.energy_ev()).abs() < 1e-9);
    let flags = file.dataset(cxi::MASK).unwrap().read_u32().unwrap();
    assert_eq!(flags.iter().sum::<u32>(), 2);
    assert_eq!(flags[1], 1);
}

#[test]
fn reads_hand_made_file_with_energy_in_joules() {
    let d = read_spec(&Spec::valid()).unwrap();
    assert_eq!(d.intensities.shape(), &[J, N, N]);
    assert_eq!(d.intensities[[2, 3, 5]], value(2, 3, 5) as f32);
    // 8 keV -> 0.1549802 nm.
    assert!((d.geometry.wavelength - 1.549802e-10).abs() < 1e-15);
    assert_eq!(d.geometry.distance, 2.5);
    assert_eq!(d.geometry.detector_pixel, 55e-6);
    assert_eq!(d.geometry.regime, Regime::FarField);
    assert_eq!(d.geometry.source_distance, None);
    assert!(d.mask.iter().all(|&m| m));
    // Probe position = -translation: y = -t_y, x = -t_x.
    for k in 0..J {
        assert!((d.positions[[k, 0]] - (2e-6 * k as f64 - 1e-7)).abs() < 1e-18);
        assert!((d.positions[[k, 1]] + 1e-6 * k as f64).abs() < 1e-18);
    }
}

#[test]
fn integer_data_and_mask() {
    let mut spec = Spec::valid();
    let mut values: Vec<i32> = (0..J * N * N)
        .map(|i| value(i / (N * N), (i / N) % N, i % N))
        .collect();
    // A detector gap marked -1 in every frame at (4, 6), flagged in the mask.
    for k in 0..J {
        values[k * N * N + 4 * N + 6] = -1;
    }
    spec.data = Some(Stage::I32(values));
    let mut flags = vec![0u32; N * N];
    flags[4 * N + 6] = 1;
    flags[N + 1] = 8;
    spec.mask = Some((flags, vec![N as u64, N as u64]));
    let d = read_spec(&spec).unwrap();
    assert_eq!(d.intensities[[3, 7, 7]], value(3, 7, 7) as f32);
    assert_eq!(d.intensities[[1, 4, 6]], 0.0, "masked gap pixel is cleared");
    assert_eq!(
        d.intensities[[1, 1, 1]],
        value(1, 1, 1) as f32,
        "masked valid pixel is kept"
    );
    assert!(!d.mask[[4, 6]] && !d.mask[[1, 1]] && d.mask[[0, 0]]);
    assert_eq!(d.mask.iter().filter(|m| !**m).count(), 2);

    let mut spec = Spec::valid();
    spec.data = Some(Stage::U16(
        (0..J * N * N).map(|i| (i * 997 % 65536) as u16).collect(),
    ));
    let d = read_spec(&spec).unwrap();
    assert_eq!(
        d.intensities[[3, 7, 7]],
        ((J * N * N - 1) * 997 % 65536) as f32
    );

    // An unmasked negative pixel is an error naming the data field.
    let mut spec = Spec::valid();
    spec.data = Some(Stage::I32(vec![-3; J * N * N]));
    assert_field_error(spec, cxi::DATA);
}

#[test]
fn data_under_data_1_is_read() {
    let mut spec = Spec::valid();
    spec.data_at_alt = true;
    let d = read_spec(&spec).unwrap();
    assert_eq!(d.intensities[[1, 2, 3]], value(1, 2, 3) as f32);
}

#[test]
fn transposed_translations_are_accepted() {
    let rows = translation_rows();
    let mut columns = vec![0.0; 3 * J];
    for k in 0..J {
        for a in 0..3 {
            columns[a * J + k] = rows[3 * k + a];
        }
    }
    let mut spec = Spec::valid();
    spec.translation = Some((columns, vec![3, J as u64]));
    let transposed = read_spec(&spec).unwrap();
    let plain = read_spec(&Spec::valid()).unwrap();
    assert_eq!(transposed.positions, plain.positions);
    assert!(transposed.positions[[3, 1]] != 0.0);
}

#[test]
fn swap_then_flips() {
    let plain = read_spec(&Spec::valid()).unwrap().positions;
    let options = |swap_xy, flip_x, flip_y| CxiOptions {
        swap_xy,
        flip_x,
        flip_y,
        ..CxiOptions::default()
    };
    let swapped = read_spec_with(&Spec::valid(), &options(true, false, false))
        .unwrap()
        .positions;
    let flipped_x = read_spec_with(&Spec::valid(), &options(false, true, false))
        .unwrap()
        .positions;
    let all = read_spec_with(&Spec::valid(), &options(true, true, true))
        .unwrap()
        .positions;
    for k in 0..J {
        let (y, x) = (plain[[k, 0]], plain[[k, 1]]);
        assert_eq!((swapped[[k, 0]], swapped[[k, 1]]), (x, y));
        assert_eq!((flipped_x[[k, 0]], flipped_x[[k, 1]]), (y, -x));
        // Swap first: (x, y), then both flips: (-x, -y).
        assert_eq!((all[[k, 0]], all[[k, 1]]), (-x, -y));
    }
}

#[test]
fn regime_and_source_distance_from_file_and_options() {
    let mut spec = Spec::valid();
    spec.regime = Some("near_field");
    spec.source_distance = Some(0.004);
    let d = read_spec(&spec).unwrap();
    assert_eq!(d.geometry.regime, Regime::NearField);
    assert_eq!(d.geometry.source_distance, Some(0.004));
    assert!((d.geometry.magnification() - (0.004 + 2.5) / 0.004).abs() < 1e-9);

    let options = CxiOptions {
        regime: Some(Regime::NearField),
        source_distance: Some(0.02),
        ..CxiOptions::default()
    };
    let d = read_spec_with(&Spec::valid(), &options).unwrap();
    assert_eq!(d.geometry.regime, Regime::NearField);
    assert_eq!(d.geometry.source_distance, Some(0.02));
}

#[test]
fn wavelength_alone_or_agreeing_with_energy() {
    let mut spec = Spec::valid();
    spec.energy_j = None;
    spec.wavelength = Some(1.2e-10);
    assert_eq!(read_spec(&spec).unwrap().geometry.wavelength, 1.2e-10);

    let mut spec = Spec::valid();
    spec.wavelength = Some(1.549802e-10 * (1.0 + 5e-4));
    assert_eq!(
        read_spec(&spec).unwrap().geometry.wavelength,
        1.549802e-10 * (1.0 + 5e-4)
    );
    // Energy stored per pattern, all equal.
    let mut spec = Spec::valid();
    spec.energy_j = Some(vec![8000.0 * JOULES_PER_EV; J]);
    assert!((read_spec(&spec).unwrap().geometry.energy_ev() - 8000.0).abs() < 1e-6);
}

#[test]
fn malformed_fields_are_named() {
    let with = |f: &dyn Fn(&mut Spec)| {
        let mut s = Spec::valid();
        f(&mut s);
        s
    };
    assert_field_error(with(&|s| s.data = None), cxi::DATA);
    assert_field_error(
        with(&|s| {
            s.data = Some(Stage::F32(vec![1.0; J * N * N]));
            s.data_shape = vec![(J * N) as u64, N as u64];
        }),
        cxi::DATA,
    );
    assert_field_error(
        with(&|s| s.data_shape = vec![J as u64, (N / 2) as u64, (2 * N) as u64]),
        cxi::DATA,
    );
    assert_field_error(
        with(&|s| {
            let mut v = vec![1.0; J * N * N];
            v[N * N + 5] = f32::NAN;
            s.data = Some(Stage::F32(v));
        }),
        cxi::DATA,
    );
    assert_field_error(with(&|s| s.translation = None), cxi::TRANSLATION);
    assert_field_error(
        with(&|s| s.translation = Some((vec![0.0; 3 * (J - 1)], vec![J as u64 - 1, 3]))),
        cxi::TRANSLATION,
    );
    assert_field_error(
        with(&|s| s.translation = Some((vec![0.0; 2 * J], vec![J as u64, 2]))),
        cxi::TRANSLATION,
    );
    assert_field_error(
        with(&|s| {
            let mut t = translation_rows();
            t[4] = f64::NAN;
            s.translation = Some((t, vec![J as u64, 3]));
        }),
        cxi::TRANSLATION,
    );
    assert_field_error(with(&|s| s.noise_floor = Some(-1.0)), cxi::NOISE_FLOOR);
    assert_field_error(with(&|s| s.noise_floor = Some(f64::NAN)), cxi::NOISE_FLOOR);
    assert_field_error(with(&|s| s.distance = None), cxi::DISTANCE);
    assert_field_error(with(&|s| s.distance = Some(0.0)), cxi::DISTANCE);
    assert_field_error(with(&|s| s.distance = Some(f64::NAN)), cxi::DISTANCE);
    assert_field_error(with(&|s| s.x_pixel = Some(-55e-6)), cxi::X_PIXEL);
    assert_field_error(
        with(&|s| {
            s.x_pixel = None;
            s.y_pixel = None;
        }),
        cxi::X_PIXEL,
    );
    assert_field_error(with(&|s| s.y_pixel = Some(56e-6)), cxi::Y_PIXEL);
    assert_field_error(with(&|s| s.energy_j = Some(vec![0.0])), cxi::ENERGY);
    assert_field_error(with(&|s| s.energy_j = None), cxi::ENERGY);
    // Energy in eV instead of joules disagrees with the wavelength.
    assert_field_error(
        with(&|s| {
            s.energy_j = Some(vec![8000.0]);
            s.wavelength = Some(1.549802e-10);
        }),
        cxi::ENERGY,
    );
    assert_field_error(
        with(&|s| s.energy_j = Some(vec![1e-15, 2e-15, 1e-15, 1e-15])),
        cxi::ENERGY,
    );
    assert_field_error(
        with(&|s| s.mask = Some((vec![0; N * (N - 1)], vec![N as u64, N as u64 - 1]))),
        cxi::MASK,
    );
    assert_field_error(with(&|s| s.regime = Some("holography")), cxi::REGIME);
    assert_field_error(
        with(&|s| s.source_distance = Some(0.01)),
        cxi::SOURCE_DISTANCE,
    );
}

#[test]
fn missing_and_non_hdf5_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = temp_file(&dir, "nowhere.cxi");
    let e = cxi::read(&missing, &CxiOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("nowhere.cxi"), "{e}");

    let text = temp_file(&dir, "notes.cxi");
    std::fs::write(&text, b"this is not an HDF5 file\n").unwrap();
    let e = cxi::read(&text, &CxiOptions::default()).unwrap_err();
    assert!(e.to_string().contains("notes.cxi"), "{e}");
    assert!(e.to_string().contains("HDF5"), "{e}");
}

#[test]
fn truncated_and_corrupted_files_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "whole.cxi");
    cxi::write(&path, &sample_dataset(6, 16, Regime::FarField, None)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let bad = temp_file(&dir, "bad.cxi");
    let mut errors = 0;
    for fraction in [0.02, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99] {
        let cut = (bytes.len() as f64 * fraction) as usize;
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let e = cxi::read(&bad, &CxiOptions::default()).unwrap_err();
        assert!(e.to_string().contains("bad.cxi"), "{e}");
        errors += 1;
    }
    assert_eq!(errors, 9);
    // Overwrite bytes at many offsets: each read must return (Ok or Err), never panic.
    let mut state = 0x2545f4914f6cdd1du64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut damaged = bytes.clone();
        let at = (state % bytes.len() as u64) as usize;
        for (i, b) in damaged[at..].iter_mut().take(8).enumerate() {
            *b ^= (state >> (8 * i)) as u8 | 1;
        }
        std::fs::write(&bad, &damaged).unwrap();
        let _ = cxi::read(&bad, &CxiOptions::default());
    }
}
