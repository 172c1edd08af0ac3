//! Truth files and NPY arrays: exact round trips and named errors.

use autopty::io::{npy, truth};
use autopty::{Error, Geometry, Regime, Truth};
use ndarray::{Array2, Array3};
use num_complex::Complex32;

fn sample_truth(z1: Option<f64>) -> Truth {
    Truth {
        object: Array2::from_shape_fn((33, 41), |(r, c)| {
            let phase = (r as f32 * 0.37 - c as f32 * 0.11).sin();
            Complex32::from_polar(0.8 + 0.001 * c as f32, phase)
        }),
        probe: Array3::from_shape_fn((3, 16, 16), |(m, r, c)| {
            Complex32::new((m * 3 + r) as f32 / 7.0, (c as f32 - 8.0) / 3.0)
        }),
        positions: Array2::from_shape_fn((9, 2), |(k, a)| 1.0 + k as f64 * 1.1 + a as f64 / 3.0),
        geometry: Geometry {
            regime: if z1.is_some() {
                Regime::NearField
            } else {
                Regime::FarField
            },
            wavelength: 7.3e-11,
            detector_pixel: 6.5e-6,
            distance: 0.42,
            source_distance: z1,
            frame: 16,
        },
    }
}

fn bits_equal(a: &[Complex32], b: &[Complex32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.re.to_bits() == y.re.to_bits() && x.im.to_bits() == y.im.to_bits())
}

#[test]
fn truth_round_trip_is_exact() {
    for z1 in [None, Some(0.003)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.truth.h5");
        let t = sample_truth(z1);
        truth::write(&path, &t).unwrap();
        let back = truth::read(&path).unwrap();
        assert_eq!(back.object.shape(), &[33, 41]);
        assert_eq!(back.probe.shape(), &[3, 16, 16]);
        assert!(bits_equal(
            t.object.as_slice().unwrap(),
            back.object.as_slice().unwrap()
        ));
        assert!(bits_equal(
            t.probe.as_slice().unwrap(),
            back.probe.as_slice().unwrap()
        ));
        assert_eq!(back.positions, t.positions);
        assert_eq!(back.geometry, t.geometry);
    }
}

#[test]
fn truth_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.truth.h5");
    // A CXI-like file without the truth fields.
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("object").with_f32_data(&[1.0, 2.0]);
    b.write(&path).unwrap();
    match truth::read(&path).unwrap_err() {
        Error::Field { field, problem, .. } => {
            assert_eq!(field, "/object");
            assert!(problem.contains("complex"), "{problem}");
        }
        other => panic!("unexpected error {other}"),
    }
    let e = truth::read(&dir.path().join("absent.truth.h5")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("absent.truth.h5"));
}

#[test]
fn npy_round_trips_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let t = sample_truth(None);
    let p2 = dir.path().join("object.npy");
    npy::write_complex2(&p2, &t.object).unwrap();
    let back2 = npy::read_complex2(&p2).unwrap();
    assert!(bits_equal(
        t.object.as_slice().unwrap(),
        back2.as_slice().unwrap()
    ));
    assert_eq!(back2.shape(), &[33, 41]);

    let p3 = dir.path().join("probe.npy");
    npy::write_complex3(&p3, &t.probe).unwrap();
    let back3 = npy::read_complex3(&p3).unwrap();
    assert!(bits_equal(
        t.probe.as_slice().unwrap(),
        back3.as_slice().unwrap()
    ));
    assert_eq!(back3.shape(), &[3, 16, 16]);

    // A transposed (non-standard layout) view is written in logical order.
    let real = Array2::from_shape_fn((4, 6), |(r, c)| r as f32 * 100.0 + c as f32 + 0.125);
    let pr = dir.path().join("real.npy");
    npy::write_real2(&pr, &real.t().to_owned()).unwrap();
    let back = npy::read_real2(&pr).unwrap();
    assert_eq!(back.shape(), &[6, 4]);
    assert_eq!(back[[5, 3]], 305.125);
    assert_eq!(back, real.t());
    // Only the three arrays: no temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn npy_wrong_type_rank_or_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("real.npy");
    npy::write_real2(&p, &Array2::zeros((3, 3))).unwrap();
    let e = npy::read_complex2(&p).unwrap_err().to_string();
    assert!(e.contains("real.npy") && e.contains("complex64"), "{e}");
    let e = npy::read_complex3(&p).unwrap_err().to_string();
    assert!(e.contains("3-D"), "{e}");

    // A truncated file claims more data than it holds.
    let c = dir.path().join("cut.npy");
    npy::write_complex2(&c, &Array2::zeros((64, 64))).unwrap();
    let bytes = std::fs::read(&c).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() / 2]).unwrap();
    let e = npy::read_complex2(&c).unwrap_err().to_string();
    assert!(e.contains("cut.npy") && e.contains("[64, 64]"), "{e}");

    let e = npy::read_real2(&dir.path().join("none.npy")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}
