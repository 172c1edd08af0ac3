//! `autopty info` run as a program: the report's numbers, the problems list, and the errors
//! for missing and corrupt files.

use autopty::io::cxi;
use autopty::{Dataset, Geometry, Regime};
use ndarray::{Array2, Array3};
use std::path::Path;
use std::process::{Command, Output};

fn autopty(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autopty"))
        .args(args)
        .output()
        .expect("the autopty binary runs")
}

/// A 6 x 6 raster with a step of `step_px` sample pixels; 64 x 64 frames.
fn raster(geometry: Geometry, step_px: f64) -> Dataset {
    let n = geometry.frame;
    let pixel = geometry.sample_pixel();
    let j = 36;
    Dataset {
        intensities: Array3::from_shape_fn((j, n, n), |(k, r, c)| {
            (1 + (k + r * 3 + c * 5) % 40) as f32
        }),
        mask: Array2::from_elem((n, n), true),
        positions: Array2::from_shape_fn((j, 2), |(k, a)| {
            let idx = if a == 0 { k / 6 } else { k % 6 };
            idx as f64 * step_px * pixel
        }),
        geometry,
        noise_floor: 0.0,
    }
}

/// The value after `label:` on the report line that starts with `label`.
fn number_after(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{report}"));
    line[label.len() + 1..]
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no number on line: {line}"))
}

fn run_info(path: &Path) -> String {
    let out = autopty(&["info", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "autopty info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn reports_fresnel_number_and_scan() {
    let geometry = Geometry {
        regime: Regime::NearField,
        wavelength: 1e-10,
        detector_pixel: 1e-6,
        distance: 0.5,
        source_distance: Some(0.01),
        frame: 64,
    };
    let expected_fresnel = geometry.fresnel_number();
    let expected_pixel_fresnel = geometry.pixel_fresnel_number();
    let data = raster(geometry, 16.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("near.cxi");
    cxi::write(&path, &data).unwrap();
    let report = run_info(&path);

    let fresnel = number_after(&report, "Fresnel number");
    assert!(
        (fresnel - expected_fresnel).abs() < 1e-5 * expected_fresnel,
        "{fresnel} vs {expected_fresnel}"
    );
    let pixel_fresnel = number_after(&report, "pixel Fresnel number");
    assert!((pixel_fresnel - expected_pixel_fresnel).abs() < 1e-5 * expected_pixel_fresnel);
    // M = (0.01 + 0.5) / 0.01 = 51.
    assert!((number_after(&report, "magnification") - 51.0).abs() < 1e-6);
    assert!((number_after(&report, "sample pixel") - 1e-6 / 51.0).abs() < 1e-12);
    assert!((number_after(&report, "median step") - 16.0).abs() < 1e-3);
    assert!((number_after(&report, "linear overlap") - 0.75).abs() < 1e-3);
    assert!(
        report.contains("J = 36, frames N x N = 64 x 64"),
        "{report}"
    );
    assert!(
        report.contains("problems:               none found"),
        "{report}"
    );
}

#[test]
fn lists_problems() {
    let geometry = Geometry {
        regime: Regime::FarField,
        wavelength: 1.5e-10,
        detector_pixel: 75e-6,
        distance: 5.0,
        source_distance: None,
        frame: 64,
    };
    let mut data = raster(geometry, 40.0);
    data.intensities
        .index_axis_mut(ndarray::Axis(0), 7)
        .fill(0.0);
    let p = data.positions.row(3).to_owned();
    data.positions.row_mut(4).assign(&p);
    for c in 10..15 {
        data.intensities[[9, 32, c]] = 5000.0;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.cxi");
    cxi::write(&path, &data).unwrap();
    let report = run_info(&path);
    assert_eq!(number_after(&report, "problems"), 4.0, "{report}");
    assert!(report.contains("1 all-zero pattern(s): 7"), "{report}");
    assert!(report.contains("2 position(s) duplicated"), "{report}");
    assert!(report.contains("flat maximum") && report.contains("looks like saturation: 9"));
    assert!(report.contains("low linear overlap 38%"), "{report}");
    assert!((number_after(&report, "max pixel") - 5000.0).abs() < 1e-9);
}

#[test]
fn missing_and_corrupt_files_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.cxi");
    let out = autopty(&["info", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent.cxi"), "{err}");

    let corrupt = dir.path().join("corrupt.cxi");
    let mut bytes = b"\x89HDF\r\n\x1a\n".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 300));
    std::fs::write(&corrupt, bytes).unwrap();
    let out = autopty(&["info", corrupt.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt.cxi") && err.starts_with("error:"),
        "{err}"
    );
}
