//! End-to-end checks of the simulator: shapes, physics (Parseval, consistency with the truth),
//! photon statistics, corrupted metadata, presets and example files.

use autopty::sim::shift::PatchSampler;
use autopty::sim::{self, forward, SimConfig};
use autopty::Regime;
use ndarray::Axis;
use num_complex::Complex32;
use std::path::Path;
use std::time::Instant;

fn noise_free(name: &str) -> SimConfig {
    let mut cfg = sim::preset(name).unwrap();
    cfg.noise.poisson = false;
    cfg
}

/// Exit-wave energy `sum_m ||P_m O_j||^2` of each position, from the truth.
fn exit_wave_energies(truth: &autopty::Truth) -> Vec<f64> {
    let n = truth.probe.shape()[1];
    let sampler = PatchSampler::new(&truth.object, n);
    let mut work = sampler.work();
    let mut patch = vec![Complex32::default(); n * n];
    truth
        .positions
        .axis_iter(Axis(0))
        .map(|p| {
            sampler.patch(p[0], p[1], &mut patch, &mut work);
            truth
                .probe
                .axis_iter(Axis(0))
                .map(|mode| {
                    mode.iter()
                        .zip(&patch)
                        .map(|(a, b)| (a * b).norm_sqr() as f64)
                        .sum::<f64>()
                })
                .sum()
        })
        .collect()
}

#[test]
fn small_preset_shapes() {
    let (data, truth) = sim::simulate(&sim::preset("small").unwrap()).unwrap();
    assert_eq!(data.intensities.shape(), [49, 64, 64]);
    assert_eq!(data.mask.shape(), [64, 64]);
    assert_eq!(data.positions.shape(), [49, 2]);
    assert_eq!(truth.positions.shape(), [49, 2]);
    assert_eq!(truth.probe.shape(), [1, 64, 64]);
    // 6 x 19.2 px + 64 + 2 x 12 = 203.2 (+ jitter) -> 216 = 2^3 3^3.
    assert_eq!(truth.object.dim(), (216, 216));
    assert_eq!(truth.geometry.regime, Regime::NearField);
    data.validate("small").unwrap();
    // Every probe window lies inside the object, clear of the 12 px margin.
    for p in truth.positions.iter() {
        assert!(*p >= 12.0 - 1e-9 && p + 64.0 <= 216.0 - 12.0 + 1e-9, "{p}");
    }
}

#[test]
fn far_field_intensity_equals_exit_wave_energy() {
    let (data, truth) = sim::simulate(&noise_free("farfield")).unwrap();
    assert_eq!(data.intensities.shape(), [100, 64, 64]);
    let energy = exit_wave_energies(&truth);
    let mut worst = 0.0f64;
    for (frame, e) in data.intensities.axis_iter(Axis(0)).zip(&energy) {
        let total: f64 = frame.iter().map(|&v| v as f64).sum();
        worst = worst.max((total - e).abs() / e);
    }
    assert!(worst < 1e-4, "largest relative Parseval error {worst}");
}

#[test]
fn noise_free_data_match_the_truth_through_the_forward_model() {
    // The stored truth probe carries the photon scaling: the truth reproduces the data.
    let cfg = noise_free("small");
    let (data, truth) = sim::simulate(&cfg).unwrap();
    let prop = forward::propagator(&cfg.geometry, &truth.geometry);
    let again = forward::intensities(&truth.object, &truth.probe, &truth.positions, &prop);
    let diff = (&again - &data.intensities).mapv(|v| v.abs()).sum();
    assert!(
        diff / data.intensities.sum() < 1e-6,
        "relative difference {}",
        diff / data.intensities.sum()
    );
    // Near field keeps most light on the detector (what leaves the window is lost).
    let energy = exit_wave_energies(&truth);
    for (frame, e) in data.intensities.axis_iter(Axis(0)).zip(&energy) {
        let ratio = frame.sum() as f64 / e;
        assert!(ratio > 0.9 && ratio < 1.0 + 1e-4, "kept {ratio}");
    }
}

#[test]
fn poisson_mean_photon_count_within_one_percent() {
    let mut cfg = sim::preset("small").unwrap();
    cfg.noise.photons = 2e4;
    let (data, _) = sim::simulate(&cfg).unwrap();
    assert!(data.intensities.iter().all(|v| v.fract() == 0.0));
    let mean = data.mean_photons();
    assert!((mean - 2e4).abs() < 200.0, "mean photons {mean}");
    // Noise is there: the counts differ from the expectation by about sqrt(count).
    cfg.noise.poisson = false;
    let (clean, _) = sim::simulate(&cfg).unwrap();
    let (mut chi2, mut k) = (0.0f64, 0usize);
    for (a, b) in data.intensities.iter().zip(clean.intensities.iter()) {
        if *b > 5.0 {
            chi2 += ((a - b) as f64).powi(2) / *b as f64;
            k += 1;
        }
    }
    let reduced = chi2 / k as f64;
    assert!((reduced - 1.0).abs() < 0.05, "reduced chi^2 {reduced}");
}

#[test]
fn paper_preset_corruption_contrast_and_speed() {
    let cfg = sim::preset("paper").unwrap();
    let started = Instant::now();
    let (data, truth) = sim::simulate(&cfg).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    // About 0.7 s on two busy cores; the bound leaves room for a loaded machine.
    assert!(seconds < 5.0, "paper simulation took {seconds} s");
    assert_eq!(data.intensities.shape(), [121, 128, 128]);
    assert_eq!(truth.object.dim(), (576, 576));
    // Stored distance = 1.3 x true; true distance 0.1 m; Fresnel numbers of the protocol.
    assert!((data.geometry.distance - 0.13).abs() < 1e-12);
    assert!((truth.geometry.distance - 0.1).abs() < 1e-15);
    assert!((truth.geometry.pixel_fresnel_number() - 0.01).abs() < 1e-12);
    // Stored positions: truth + N(0, 10 px) per coordinate.
    let pixel = truth.geometry.sample_pixel();
    let err: Vec<f64> = (&data.positions.mapv(|v| v / pixel) - &truth.positions)
        .iter()
        .cloned()
        .collect();
    let mean = err.iter().sum::<f64>() / err.len() as f64;
    let std = (err.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / err.len() as f64).sqrt();
    assert!((std - 10.0).abs() < 2.0, "position error std {std} px");
    assert!(mean.abs() < 2.0, "position error mean {mean} px");
    // True raster: step 38.4 px with at most +-2 px jitter per position.
    for j in 0..121 {
        if j % 11 != 10 {
            let d = truth.positions[[j + 1, 1]] - truth.positions[[j, 1]];
            assert!((d - 38.4).abs() <= 4.0 + 1e-9, "step {d}");
        }
    }
    // Near-field patterns have structure (contrast of the central 64 x 64 px, where the probe
    // is fully lit, about 0.55-0.75) and differ from the contact image |P O|^2 (by ~55 %).
    let sampler = PatchSampler::new(&truth.object, 128);
    let mut patch = vec![Complex32::default(); 128 * 128];
    for j in [0, 60, 120] {
        let frame = data.intensities.index_axis(Axis(0), j);
        let centre = frame.slice(ndarray::s![32..96, 32..96]);
        let m = centre.mean().unwrap() as f64;
        let sd = (centre.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>()
            / centre.len() as f64)
            .sqrt();
        assert!(sd / m > 0.3, "pattern {j}: contrast {}", sd / m);
        sampler.patch(
            truth.positions[[j, 0]],
            truth.positions[[j, 1]],
            &mut patch,
            &mut sampler.work(),
        );
        let contact: Vec<f64> = truth
            .probe
            .index_axis(Axis(0), 0)
            .iter()
            .zip(&patch)
            .map(|(a, b)| (a * b).norm_sqr() as f64)
            .collect();
        let num: f64 = frame
            .iter()
            .zip(&contact)
            .map(|(&a, b)| (a as f64 - b).powi(2))
            .sum();
        let den: f64 = contact.iter().map(|b| b * b).sum();
        assert!(
            (num / den).sqrt() > 0.2,
            "pattern {j} is close to the contact image"
        );
    }
    // Mean photon count (Poisson at 1e8 per pattern).
    assert!((data.mean_photons() / 1e8 - 1.0).abs() < 1e-3);
}

#[test]
fn seeds_make_runs_repeatable() {
    let cfg = sim::preset("small").unwrap();
    let (a, ta) = sim::simulate(&cfg).unwrap();
    let (b, _) = sim::simulate(&cfg).unwrap();
    assert_eq!(a.intensities, b.intensities);
    assert_eq!(a.positions, b.positions);
    let mut other = cfg.clone();
    other.seed = 2;
    let (c, tc) = sim::simulate(&other).unwrap();
    assert_ne!(a.intensities, c.intensities);
    assert_ne!(ta.positions, tc.positions);
}

#[test]
fn mask_and_modes_reach_the_dataset() {
    let mut cfg = noise_free("small");
    cfg.detector_mask.dead_columns = vec![10, 11];
    cfg.detector_mask.beamstop_radius = 3.0;
    cfg.probe.modes = 3;
    let (data, truth) = sim::simulate(&cfg).unwrap();
    assert_eq!(truth.probe.shape(), [3, 64, 64]);
    assert!(!data.mask[[5, 10]] && !data.mask[[32, 32]] && data.mask[[5, 12]]);
    assert_eq!(data.mask.iter().filter(|&&g| !g).count(), 2 * 64 + 29);
    for frame in data.intensities.axis_iter(Axis(0)) {
        assert_eq!(frame[[7, 11]], 0.0);
        assert_eq!(frame[[32, 33]], 0.0);
        assert!(frame[[7, 12]] > 0.0);
    }
    let power: Vec<f64> = truth
        .probe
        .axis_iter(Axis(0))
        .map(|m| m.iter().map(|v| v.norm_sqr() as f64).sum())
        .collect();
    let total: f64 = power.iter().sum();
    for (p, f) in power.iter().zip([0.8, 0.15, 0.05]) {
        assert!((p / total - f).abs() < 1e-5);
    }
}

#[test]
fn user_object_size_too_small_is_an_error() {
    let mut cfg = sim::preset("small").unwrap();
    cfg.object.size = Some([150, 300]);
    let e = sim::simulate(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("object.size") && e.contains("outside the object"),
        "{e}"
    );
    cfg.geometry.distance = -1.0;
    let e = sim::simulate(&cfg).unwrap_err().to_string();
    assert!(e.contains("geometry.distance"), "{e}");
}

#[test]
fn example_files_equal_their_presets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let base = SimConfig::default();
    for name in sim::PRESETS {
        let path = root.join(format!("simulate_{name}.toml"));
        let cfg = SimConfig::load(&path, &base).unwrap();
        assert_eq!(cfg, sim::preset(name).unwrap(), "{}", path.display());
    }
}

#[test]
fn rings_scan_with_a_point_source_geometry() {
    let mut cfg = noise_free("small");
    cfg.scan.pattern = sim::ScanPattern::Rings;
    cfg.scan.rings = 2;
    cfg.geometry.source_distance = Some(0.01);
    cfg.corruption.position_jitter = 0.0;
    let (data, truth) = sim::simulate(&cfg).unwrap();
    assert_eq!(data.len(), 1 + 6 + 13);
    // Magnification (0.01 + 0.1) / 0.01 = 11: sample pixel 1 um / 11; the refined (stored
    // wrong) distance is the focus-to-sample one.
    let pixel = truth.geometry.sample_pixel();
    assert!((pixel - 1e-6 / 11.0).abs() < 1e-18);
    assert!((data.geometry.source_distance.unwrap() - 0.013).abs() < 1e-15);
    assert_eq!(data.geometry.distance, 0.1);
    let back = data.positions.mapv(|v| v / pixel);
    assert!((&back - &truth.positions).iter().all(|d| d.abs() < 1e-9));
}
