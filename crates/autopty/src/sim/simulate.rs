//! One simulation from settings to a dataset and its ground truth.

use super::config::SimConfig;
use super::corrupt::{jitter_positions, misstate_distance};
use super::forward;
use super::noise::{add_poisson, apply_mask, detector_mask, scale_to_photons, stream_rng};
use super::object::build_object;
use super::probe::build_probe;
use super::scan;
use crate::dataset::{Dataset, Truth};
use crate::error::Result;

/// Random stream of the scan jitter.
const SCAN_STREAM: u64 = 1;
/// Random stream of the stored-position errors.
const CORRUPTION_STREAM: u64 = 2;
/// First random stream of the shot noise (one stream per pattern after it).
const NOISE_STREAM: u64 = 1 << 32;

/// Simulates a dataset: returns the measured data with its (possibly corrupted) metadata, and
/// the truth (object, probe modes scaled to the photon count, true positions and geometry).
///
/// Steps: scan positions (true, jittered) placed in an object sized to hold them; object and
/// probe from pictures; exact forward model; scaling to the mean photon count; optional Poisson
/// noise; detector mask; then the stored positions (true + Gaussian errors, in metres in the
/// sample plane) and the stored distance (true x (1 + error)).
pub fn simulate(cfg: &SimConfig) -> Result<(Dataset, Truth)> {
    cfg.validate()?;
    let started = std::time::Instant::now();
    let geometry = cfg.geometry.to_geometry();
    geometry.validate()?;
    let n = geometry.frame;

    let step = cfg.scan.step(&cfg.geometry, &cfg.probe);
    let centres = scan::centres(&cfg.scan, step, &mut stream_rng(cfg.seed, SCAN_STREAM));
    let placement = scan::place(&centres, n, cfg.scan.margin, cfg.object.size)?;
    let [rows, cols] = placement.object_size;
    let object = build_object(&cfg.object, rows, cols, cfg.scan.margin / 2.0)?;
    let mut probe = build_probe(&cfg.probe, n)?;

    let prop = forward::propagator(&cfg.geometry, &geometry);
    let mut data = forward::intensities(&object, &probe, &placement.positions, &prop);
    let scale = scale_to_photons(&mut data, cfg.noise.photons);
    let amp = scale.sqrt() as f32;
    probe.mapv_inplace(|v| v * amp);
    if cfg.noise.poisson {
        add_poisson(&mut data, cfg.seed, NOISE_STREAM);
    }
    let mask = detector_mask(&cfg.detector_mask, n);
    apply_mask(&mut data, &mask);

    let mut rng = stream_rng(cfg.seed, CORRUPTION_STREAM);
    let nominal = jitter_positions(
        &placement.positions,
        cfg.corruption.position_jitter,
        &mut rng,
    );
    let pixel = geometry.sample_pixel();
    let dataset = Dataset {
        intensities: data,
        mask,
        positions: nominal.mapv(|v| v * pixel),
        geometry: misstate_distance(&geometry, cfg.corruption.distance_error),
        noise_floor: 0.0,
    };
    dataset.validate(&format!("simulated dataset '{}'", cfg.name))?;
    tracing::info!(
        name = %cfg.name,
        patterns = dataset.len(),
        frame = n,
        object_rows = rows,
        object_cols = cols,
        seconds = started.elapsed().as_secs_f64(),
        "simulated"
    );
    let truth = Truth {
        object,
        probe,
        positions: placement.positions,
        geometry,
    };
    Ok((dataset, truth))
}
