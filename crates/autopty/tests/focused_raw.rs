//! End to end through the raw-input path: the `focused_small` preset (zone-plate focus 14 mm
//! upstream, detector 0.5 m downstream, 64 x 64 px, 1.5e7 photons per pattern) is written as a
//! 16-bit TIFF stack with a known dark level (Poisson dark counts on top of the Poisson-noisy
//! patterns), a stack of dark frames and a positions file in micrometres; read back through
//! `io::raw`; and reconstructed by the gradient engine with `z1` refined from its stored 30 %
//! error.

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
    // The object step is the default one (rate 0.1, `adam_floor` 0.1): on this case it gives
    // magnitude / phase SSIM 0.900 / 0.938 against 0.889 / 0.915 with plain Adam at rate 0.05.
    s
}

#[test]
fn focused_beam_from_tiff_darks_and_positions_refines_z1() {
    let mut cfg = autopty::sim::preset("focused_small").unwrap();
    // Encoder-grade stored positions (1 px); the preset's photons fit 16 bits (checked by
    // `write_raw`).
    cfg.corruption.position_jitter = 1.0;
    assert_eq!(cfg.noise.photons, 1.5e7);
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
    // Measured (2026-12-01, 34 s beside two other processes): z1 error 1.12 %, magnitude / phase
    // SSIM 0.900 / 0.938, median position error 0.19 px. With the pictures drawn over a 432 px
    // object and scored on its middle (the same detail): 1.14 %, 0.900 / 0.938 and 0.18 px, and
    // at other seeds (simulation 2, 3; minibatch order 1) z1 1.09-1.32 %, SSIM 0.900-0.905 /
    // 0.936-0.938, 0.13-0.18 px; the exact geometry (z1 and positions true, not refined) gave
    // 0.900 / 0.939. The bounds leave room for thread-order rounding.
    assert!(dz < 0.02, "z1 error {:.2} %", 100.0 * dz);
    assert!(
        s.ssim_magnitude >= 0.85,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
    assert!(s.ssim_phase > 0.85, "phase SSIM {}", s.ssim_phase);
    assert!(
        s.position_error_median.unwrap() < 0.5,
        "median position error {:?}",
        s.position_error_median
    );
}
