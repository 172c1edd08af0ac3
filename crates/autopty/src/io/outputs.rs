//! The output folder of a reconstruction, the same for every engine. Every file is written
//! atomically (temporary name, then rename):
//!
//! | file | content |
//! |---|---|
//! | `object.npy` | complex64 (H, W) object transmission |
//! | `probe.npy` | complex64 (M, N, N) probe modes |
//! | `positions.csv` | index, refined row/col (px, top-left of the probe window in the object array), the same in metres from the array's origin, nominal row/col (px), correction (px) |
//! | `history.csv` | epoch, loss, distance (m), median position correction (px), seconds |
//! | `reconstruction.cxi` | object, probe, refined translations and distances as CXI ([`super::cxi_output`]) |
//! | `summary.json` | engine, settings, geometry with the refined distance, pixel size, epochs, final loss, seconds per epoch, work in epoch-equivalents (gradient engine) |
//! | `object_magnitude.png`, `object_phase.png`, `probe_mode_K.png` | images |
//! | `loss.png`, `distance.png`, `position_correction.png` | curves per epoch |

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy;
use crate::reconstruction::{EpochStats, Reconstruction};
use crate::report::image::{save_complex_png, save_magnitude_png, save_phase_png};
use crate::report::plot::{save_line_plot, LinePlot, Series};
use crate::work::Work;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The `summary.json` of an output folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Engine name.
    pub engine: String,
    /// Refined distance (m): z, or z1 for a point source.
    pub distance_m: f64,
    /// Propagation distance of the equivalent plane-wave experiment (m).
    pub effective_distance_m: f64,
    /// Sample pixel size (m).
    pub pixel_size_m: f64,
    /// Geometry with the refined distance.
    pub geometry: Geometry,
    /// Epochs run.
    pub epochs: usize,
    /// Loss after the last epoch (normalised by the measured photons).
    pub final_loss: Option<f64>,
    /// Mean wall-clock seconds per epoch.
    pub seconds_per_epoch: Option<f64>,
    /// Why the run ended early, if it did.
    pub stopped_early: Option<String>,
    /// Engine settings.
    pub settings: serde_json::Value,
    /// The work of the run, every stage counted (gradient engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<Work>,
}

impl Summary {
    /// The summary of a reconstruction.
    pub fn of(rec: &Reconstruction, stopped_early: Option<&str>, work: Option<&Work>) -> Self {
        let last = rec.history.last();
        Summary {
            engine: rec.engine.clone(),
            distance_m: rec.geometry.refined_distance(),
            effective_distance_m: rec.geometry.effective_distance(),
            pixel_size_m: rec.geometry.sample_pixel(),
            geometry: rec.geometry.clone(),
            epochs: rec.history.len(),
            final_loss: last.map(|s| s.loss),
            seconds_per_epoch: last.map(|s| s.seconds / s.epoch.max(1) as f64),
            stopped_early: stopped_early.map(str::to_owned),
            settings: rec.settings.clone(),
            work: work.cloned(),
        }
    }
}

/// Writes every output of a reconstruction into `dir` (created if missing); `work` goes into
/// the summary.
pub fn write(
    dir: &Path,
    rec: &Reconstruction,
    stopped_early: Option<&str>,
    work: Option<&Work>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    npy::write_complex2(&dir.join("object.npy"), &rec.object)?;
    npy::write_complex3(&dir.join("probe.npy"), &rec.probe)?;
    crate::io::cxi_output::write(&dir.join("reconstruction.cxi"), rec)?;
    write_bytes_atomic(&dir.join("positions.csv"), positions_csv(rec).as_bytes())?;
    write_bytes_atomic(
        &dir.join("history.csv"),
        history_csv(&rec.history).as_bytes(),
    )?;
    let summary = serde_json::to_string_pretty(&Summary::of(rec, stopped_early, work))
        .map_err(|e| Error::invalid("summary", e.to_string()))?;
    write_bytes_atomic(&dir.join("summary.json"), summary.as_bytes())?;
    write_images(dir, rec)
}

/// Writes the PNG images and plots of a reconstruction.
pub fn write_images(dir: &Path, rec: &Reconstruction) -> Result<()> {
    save_magnitude_png(&dir.join("object_magnitude.png"), &rec.object)?;
    save_phase_png(&dir.join("object_phase.png"), &rec.object)?;
    for (k, mode) in rec.probe.outer_iter().enumerate() {
        save_complex_png(&dir.join(format!("probe_mode_{k}.png")), &mode.to_owned())?;
    }
    let curve =
        |title: &str, y_label: &str, log_y: bool, f: &dyn Fn(&EpochStats) -> f64| LinePlot {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y_label.into(),
            series: vec![Series {
                name: rec.engine.clone(),
                points: rec.history.iter().map(|s| (s.epoch as f64, f(s))).collect(),
            }],
            log_y,
            hline: None,
        };
    save_line_plot(
        &dir.join("loss.png"),
        &curve("Loss", "loss / measured photons", true, &|s| s.loss),
    )?;
    save_line_plot(
        &dir.join("distance.png"),
        &curve("Refined distance", "distance (mm)", false, &|s| {
            s.distance * 1e3
        }),
    )?;
    save_line_plot(
        &dir.join("position_correction.png"),
        &curve(
            "Position correction",
            "median |correction| (px)",
            false,
            &|s| s.median_correction,
        ),
    )
}

fn positions_csv(rec: &Reconstruction) -> String {
    let dx = rec.geometry.sample_pixel();
    let mut s = String::from("index,row_px,col_px,y_m,x_m,nominal_row_px,nominal_col_px,correction_row_px,correction_col_px\n");
    for (j, (p, q)) in rec
        .positions
        .outer_iter()
        .zip(rec.nominal_positions.outer_iter())
        .enumerate()
    {
        let _ = writeln!(
            s,
            "{j},{},{},{:e},{:e},{},{},{},{}",
            p[0],
            p[1],
            p[0] * dx,
            p[1] * dx,
            q[0],
            q[1],
            p[0] - q[0],
            p[1] - q[1]
        );
    }
    s
}

fn history_csv(history: &[EpochStats]) -> String {
    let mut s = String::from("epoch,loss,distance_m,median_correction_px,seconds\n");
    for h in history {
        let _ = writeln!(
            s,
            "{},{:e},{:e},{},{}",
            h.epoch, h.loss, h.distance, h.median_correction, h.seconds
        );
    }
    s
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parses the numeric columns of a CSV file with a header line.
fn read_csv(path: &Path, columns: usize) -> Result<Vec<Vec<f64>>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let row: std::result::Result<Vec<f64>, _> =
            line.split(',').map(|v| v.trim().parse::<f64>()).collect();
        match row {
            Ok(r) if r.len() == columns => rows.push(r),
            _ => {
                return Err(Error::field(
                    path,
                    format!("line {}", i + 1),
                    format!("expected {columns} comma-separated numbers, found '{line}'"),
                ))
            }
        }
    }
    Ok(rows)
}

/// Reads a reconstruction back from an output folder.
pub fn read(dir: &Path) -> Result<Reconstruction> {
    let summary_path = dir.join("summary.json");
    let summary: Summary = serde_json::from_str(&read_text(&summary_path)?).map_err(|e| {
        Error::field(
            &summary_path,
            "summary",
            format!("expected autopty's summary JSON: {e}"),
        )
    })?;
    let object = npy::read_complex2(&dir.join("object.npy"))?;
    let probe = npy::read_complex3(&dir.join("probe.npy"))?;
    let rows = read_csv(&dir.join("positions.csv"), 9)?;
    let positions = Array2::from_shape_fn((rows.len(), 2), |(j, k)| rows[j][1 + k]);
    let nominal_positions = Array2::from_shape_fn((rows.len(), 2), |(j, k)| rows[j][5 + k]);
    let history = read_csv(&dir.join("history.csv"), 5)?
        .into_iter()
        .map(|r| EpochStats {
            epoch: r[0] as usize,
            loss: r[1],
            distance: r[2],
            median_correction: r[3],
            seconds: r[4],
        })
        .collect();
    Ok(Reconstruction {
        engine: summary.engine,
        object,
        probe,
        positions,
        nominal_positions,
        geometry: summary.geometry,
        history,
        settings: summary.settings,
    })
}
