//! End to end through the raw-input path: the `focused_small` preset (zone-plate focus 14 mm
//! upstream, detector 0.5 m downstream, 64 x 64 px) is written as a 16-bit TIFF stack with a
//! known dark level (Poisson dark counts on top of the Poisson-noisy patterns), a stack of dark
//! frames and a positions file in micrometres; read back through `io::raw`; and reconstructed by
//! the gradient engine with `z1` refined from its stored 30 % error.

use autopty::engines::gradient::GradientSettings;
use autopty::engines::{gradient, Control};
use autopty::io::positions_file::{LengthUnit, PositionsFile};
use autopty::io::raw::{RawGeometry, RawInput};
use autopty::io::raw_writer::write_raw;
use autopty::metrics::score;
use autopty::model::ModelSettings;

/// Mean dark counts per pixel and frame.
const DARK_LEVEL: f64 = 20.0;

/// `settings` of the CI run: short preparation (the full-size numbers are in the README).
fn settings() -> GradientSettings {
    let mut s = GradientSettings {
        epochs: 100,
        ..GradientSettings::default()
    };
    s.alignment.rounds = 2;
    s.alignment.epochs = 40;
    s.distance_search.points = 7;
    s.distance_search.epochs = 10;
    // The object step of before `adam_floor`: on this short 64 px run it gives magnitude SSIM
    // 0.47 against 0.38 with the new defaults (lr 0.1, floor 0.1), which win on `paper`.
    s.adam_floor = 0.0;
    s.object.lr = 0.05;
    s
}

#[test]
fn focused_beam_from_tiff_darks_and_positions_refines_z1() {
    let mut cfg = autopty::sim::preset("focused_small").unwrap();
    // Encoder-grade stored positions (1 px), photons that fit 16 bits.
    cfg.corruption.position_jitter = 1.0;
    cfg.noise.photons = 5e6;
    let (sim, truth) = autopty::sim::simulate(&cfg).unwrap();
    let true_z1 = truth.geometry.source_distance.unwrap();
    assert!((sim.geometry.source_distance.unwrap() / true_z1 - 1.3).abs() < 1e-12);

    let dir = tempfile::tempdir().unwrap();
    let job = write_raw(&dir.path().join("scan"), &sim, DARK_LEVEL, 10, 7).unwrap();
    let input = RawInput::from_file(&job).unwrap();
    assert_eq!(
        input.positions,
        PositionsFile {
            file: dir.path().join("scan_positions.csv"),
            unit: LengthUnit::Um,
            ..Default::default()
        }
    );
    assert_eq!(input.geometry.source_distance, sim.geometry.source_distance);
    assert!(matches!(
        input.geometry,
        RawGeometry {
            wavelength: Some(_),
            ..
        }
    ));
    let (data, report) = input.load(&job).unwrap();
    assert!((report.dark_mean.unwrap() - DARK_LEVEL).abs() < 0.1);
    assert_eq!(data.geometry, sim.geometry);
    // The dark-subtracted frames match the simulation to the dark noise (and rounding).
    let rms = (data
        .intensities
        .iter()
        .zip(&sim.intensities)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / data.intensities.len() as f64)
        .sqrt();
    // Sim counts are rounded to integers on writing (rms 0.29) on top of the dark noise.
    assert!(rms < 1.1 * (DARK_LEVEL + 1.0 / 12.0).sqrt(), "rms {rms}");
    let max_pos = (&data.positions - &sim.positions)
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(max_pos < 1e-12, "positions differ by {max_pos} m");

    let (_, scan_z1) =
        autopty::engines::fresnel_scale::register(&data, &Default::default(), true).unwrap();
    eprintln!("z1 from the registered scan's scale: {scan_z1:?}");
    let started = std::time::Instant::now();
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let outcome = gradient::run(&data, &ModelSettings::default(), &settings(), control).unwrap();
    assert!(outcome.stopped_early.is_none());
    if let Some(a) = &outcome.alignment {
        for r in &a.rounds {
            eprintln!("round: z1 {:.6} m", r.distance);
        }
    }
    let s = score(&outcome.reconstruction, &truth).unwrap();
    let z1 = outcome.reconstruction.geometry.source_distance.unwrap();
    eprintln!(
        "{:.0} s; z1 {z1:.6} m (true {true_z1}, stored {:.6})\n{}",
        started.elapsed().as_secs_f64(),
        data.geometry.source_distance.unwrap(),
        autopty::metrics::format_table(&s)
    );
    let dz = (z1 / true_z1 - 1.0).abs();
    assert!(dz < 0.02, "z1 error {:.2} %", 100.0 * dz);
    // Measured (27-60 s on the shared 2-core machine): z1 error 0.9-1.3 %, magnitude / phase
    // SSIM 0.50-0.53 / 0.68-0.69, median position error 1.6-1.7 px; after the distance search
    // moved ahead of the alignment rounds: 0.9 %, 0.47 / 0.66, 1.5 px. The magnitude SSIM
    // of 0.85 is not reached at this size with this short run (nor by the plane-wave `small`
    // preset's full run: 0.57); the bounds leave room for thread-order rounding. The run is
    // chaotic at this size: the pruned, transposed-order near-field FFTs (the same operator to
    // f32 rounding, checked against finite differences in `propagate`) moved the magnitude SSIM
    // from 0.47 to 0.37-0.39 with z1 1.6 % and positions 1.6 px. With the object's band limit
    // (cutoff 0.32 cycles/px here): z1 1.4 %, SSIM 0.55 / 0.73, positions 1.38 px, 0.24 px
    // with the scan's affine part removed. With the curvature gauge (engines/curvature_gauge.rs):
    // z1 0.63 %, magnitude SSIM 0.64, positions 0.95 px, 7 s. With the nominal scan held in
    // pixels while z1 is refined (model.rs) and up to three gauge passes: z1 1.0-1.6 %, SSIM
    // 0.76 / 0.89-0.90, positions 0.31-0.35 px, 11-32 s. With the noise floor measured from the
    // darks (about 22 counts; ops/loss.rs): z1 1.04 %, SSIM 0.764 / 0.894, 0.359 px, 26 s. With
    // the gauge's astigmatism (curvature_gauge.rs): z1 1.29 %, SSIM 0.759 / 0.896, 0.338 px.
    // With the alignment's 2 px smoothing after the trusted registration and the rescue
    // (alignment.rs): z1 1.23 %, SSIM 0.776 / 0.911, 0.195 px.
    assert!(
        s.ssim_magnitude > 0.65,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
    assert!(s.ssim_phase > 0.75, "phase SSIM {}", s.ssim_phase);
    assert!(
        s.position_error_median.unwrap() < 1.0,
        "median position error {:?}",
        s.position_error_median
    );
}
