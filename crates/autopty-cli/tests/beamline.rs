//! The raw beamline path run as a program: `info` and `reconstruct` on a raw TOML and on a TIFF
//! with flags, errors that leave no output folder, and `profile` / `maps` on the result.

use autopty::io::raw_writer::write_raw;
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small point-source dataset: 3 x 3 raster of 32 x 32 frames with a bright disc.
fn dataset() -> Dataset {
    let geometry = Geometry {
        regime: Regime::NearField,
        wavelength: 1e-9,
        detector_pixel: 13.5e-6,
        distance: 0.5,
        source_distance: Some(0.014),
        frame: 32,
    };
    let dx = geometry.sample_pixel();
    Dataset {
        intensities: Array3::from_shape_fn((9, 32, 32), |(k, r, c)| {
            let d = (r as f32 - 16.0).hypot(c as f32 - 16.0);
            if d < 10.0 {
                100.0 + ((k + r + 2 * c) % 7) as f32
            } else {
                2.0
            }
        }),
        mask: Array2::from_elem((32, 32), true),
        positions: Array2::from_shape_fn((9, 2), |(k, a)| {
            (if a == 0 { k / 3 } else { k % 3 }) as f64 * 8.0 * dx
        }),
        geometry,
        noise_floor: 0.0,
    }
}

#[test]
fn raw_input_info_reconstruct_profile_and_maps() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write_raw(&dir.path().join("scan"), &dataset(), 5.0, 4, 1).unwrap();
    let toml_s = toml.to_str().unwrap();

    let o = autopty(&["info", toml_s]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("J = 9") && t.contains("4 dark frames subtracted"),
        "{t}"
    );
    assert!(
        t.contains("source distance:") && t.contains("0.014000"),
        "{t}"
    );

    // The same through the flags, with binning by 2.
    let tif = dir.path().join("scan.tif");
    let pos = dir.path().join("scan_positions.csv");
    let o = autopty(&[
        "info",
        tif.to_str().unwrap(),
        "--positions",
        pos.to_str().unwrap(),
        "--positions-unit",
        "um",
        "--wavelength",
        "1e-9",
        "--detector-pixel",
        "13.5e-6",
        "--distance",
        "0.5",
        "--source-distance",
        "0.014",
        "--bin",
        "2",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("16 x 16") && t.contains("2.700000e-5"), "{t}");

    // Errors: the output folder is never created.
    let bad_mask = dir.path().join("mask8.tif");
    autopty::io::tiff_stack::write_stack_u16(&bad_mask, &Array3::ones((1, 8, 8))).unwrap();
    let out = dir.path().join("out_bad");
    let o = autopty(&[
        "reconstruct",
        toml_s,
        "-o",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--mask",
        bad_mask.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("mask8.tif") && t.contains("32 x 32"),
        "{t}"
    );
    assert!(!out.exists());
    let o = autopty(&[
        "reconstruct",
        tif.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("--positions"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());

    // A short reconstruction, then the profile and the maps.
    let out = dir.path().join("out");
    let o = autopty(&[
        "reconstruct",
        toml_s,
        "-o",
        out.to_str().unwrap(),
        "--epochs",
        "3",
        "--refine",
        "none",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("reconstruction.cxi").exists());
    let o = autopty(&[
        "profile",
        out.to_str().unwrap(),
        "--from",
        "20,30",
        "--to",
        "50,30",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let csv = std::fs::read_to_string(out.join("profile.csv")).unwrap();
    // Four samples per pixel over 30 px: 121 rows after the comments and the header.
    assert_eq!(csv.lines().filter(|l| !l.starts_with('#')).count(), 122);
    assert!(out.join("profile.png").exists());
    let o = autopty(&["profile", out.to_str().unwrap(), "--from=-5,0", "--to=5,5"]);
    assert!(
        !o.status.success() && text(&o).contains("outside"),
        "{}",
        text(&o)
    );
    let o = autopty(&[
        "maps",
        out.to_str().unwrap(),
        "--delta",
        "1e-3",
        "--beta",
        "2e-4",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let tp = autopty::io::npy::read_real2(&out.join("thickness_phase.npy")).unwrap();
    let tm = autopty::io::npy::read_real2(&out.join("thickness_magnitude.npy")).unwrap();
    let rec = autopty::io::outputs::read(&out).unwrap();
    assert_eq!(tp.dim(), rec.object.dim());
    // Check one pixel against the formulas: t = -phi lambda / (2 pi delta), -ln|O| lambda / (2 pi beta).
    let v = rec.object[[30, 35]];
    let k = 2.0 * std::f64::consts::PI / 1e-9;
    assert!((tp[[30, 35]] as f64 + v.arg() as f64 / (k * 1e-3)).abs() < 1e-12);
    assert!((tm[[30, 35]] as f64 + (v.norm() as f64).ln() / (k * 2e-4)).abs() < 1e-12);
    assert!(Path::new(&out.join("thickness_phase.png")).exists());
}
