//! `autopty info FILE`: what a dataset holds and whether it looks fit to reconstruct.
//!
//! Prints the pattern count and frame size, the stored type and photon counts, the geometry
//! (wavelength, energy, distances, pixel sizes, Fresnel numbers), the scan (extent, median
//! nearest-neighbour step, linear overlap of neighbouring N x N windows `1 - step / N`) and a
//! list of problems found by simple heuristics.

use super::input::InputArgs;
use autopty::io::cxi::CxiInfo;
use autopty::{Dataset, Regime};
use std::fmt::Write as _;

/// Frames larger than this are slow to reconstruct; crop or bin them.
const RECOMMENDED_MAX_FRAME: usize = 512;
/// Two positions closer than this (sample pixels) count as duplicates.
const DUPLICATE_PX: f64 = 1e-3;
/// A pattern whose maximum is shared by at least this many pixels, at a count above
/// [`FLAT_MAX_MIN_COUNT`], looks saturated.
const FLAT_MAX_PIXELS: usize = 4;
/// Counts below this tie easily by chance and are not taken as saturation.
const FLAT_MAX_MIN_COUNT: f32 = 50.0;
/// Neighbouring windows overlapping less than this (linearly) leave the problem poorly posed.
const LOW_OVERLAP: f64 = 0.5;
/// More masked pixels than this fraction is reported.
const HIGH_MASKED_FRACTION: f64 = 0.25;

/// Arguments of `autopty info`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (data, info) = args.input.load_with_info()?;
    let summary = Summary::of(&data);
    print!(
        "{}",
        render(
            &args.input.dataset.display().to_string(),
            &data,
            &info,
            &summary
        )
    );
    Ok(())
}

/// Statistics of a dataset, computed once.
struct Summary {
    /// Photons per pattern (unmasked pixels).
    photons: Vec<f64>,
    /// Largest unmasked pixel value and where: (value, pattern, row, col).
    max_pixel: (f32, usize, usize, usize),
    /// Smallest unmasked pixel value.
    min_pixel: f32,
    /// Number of masked pixels.
    masked: usize,
    /// Patterns with no photons.
    zero_patterns: Vec<usize>,
    /// Patterns whose maximum is a flat plateau (saturation-like).
    flat_max_patterns: Vec<usize>,
    /// Sample-plane pixel size (m).
    sample_pixel: f64,
    /// Scan extent (max - min) along y and x, m.
    extent: (f64, f64),
    /// Distance from each position to its nearest neighbour, sample pixels.
    nearest: Vec<f64>,
}

impl Summary {
    fn of(data: &Dataset) -> Summary {
        let mut photons = Vec::with_capacity(data.len());
        let mut max_pixel = (f32::NEG_INFINITY, 0, 0, 0);
        let mut min_pixel = f32::INFINITY;
        let mut zero_patterns = Vec::new();
        let mut flat_max_patterns = Vec::new();
        for (j, frame) in data.intensities.outer_iter().enumerate() {
            let mut sum = 0.0f64;
            let mut frame_max = f32::NEG_INFINITY;
            let mut ties = 0usize;
            for ((r, c), &v) in frame.indexed_iter() {
                if !data.mask[[r, c]] {
                    continue;
                }
                sum += v as f64;
                min_pixel = min_pixel.min(v);
                if v > max_pixel.0 {
                    max_pixel = (v, j, r, c);
                }
                if v > frame_max {
                    frame_max = v;
                    ties = 1;
                } else if v == frame_max {
                    ties += 1;
                }
            }
            if sum == 0.0 {
                zero_patterns.push(j);
            }
            if frame_max > FLAT_MAX_MIN_COUNT && ties >= FLAT_MAX_PIXELS {
                flat_max_patterns.push(j);
            }
            photons.push(sum);
        }
        let sample_pixel = data.geometry.sample_pixel();
        let points: Vec<(f64, f64)> = data
            .positions
            .outer_iter()
            .map(|p| (p[0] / sample_pixel, p[1] / sample_pixel))
            .collect();
        let span = |axis: usize| {
            let col = data.positions.column(axis);
            let max = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let min = col.iter().cloned().fold(f64::INFINITY, f64::min);
            max - min
        };
        Summary {
            photons,
            max_pixel,
            min_pixel,
            masked: data.mask.iter().filter(|m| !**m).count(),
            zero_patterns,
            flat_max_patterns,
            sample_pixel,
            extent: (span(0), span(1)),
            nearest: nearest_neighbour_distances(&points),
        }
    }

    /// Median nearest-neighbour step (px); `None` for a single position.
    fn median_step(&self) -> Option<f64> {
        median(&self.nearest)
    }

    /// The problems worth telling the user about.
    fn problems(&self, data: &Dataset, info: &CxiInfo) -> Vec<String> {
        let mut out = Vec::new();
        let n = data.frame();
        if !self.zero_patterns.is_empty() {
            out.push(format!(
                "{} all-zero pattern(s): {}",
                self.zero_patterns.len(),
                list(&self.zero_patterns)
            ));
        }
        let duplicates: Vec<usize> = (0..self.nearest.len())
            .filter(|&j| self.nearest[j] < DUPLICATE_PX)
            .collect();
        if !duplicates.is_empty() {
            out.push(format!(
                "{} position(s) duplicated (another position within {DUPLICATE_PX} px): {}",
                duplicates.len(),
                list(&duplicates)
            ));
        }
        if let Some(type_max) = info.dtype_max {
            if self.max_pixel.0 as f64 >= type_max {
                out.push(format!(
                    "pixel values reach the maximum of the stored type {} ({type_max}): saturation or overflow",
                    info.data_dtype
                ));
            }
        }
        if !self.flat_max_patterns.is_empty() {
            out.push(format!(
                "{} pattern(s) with a flat maximum (>= {FLAT_MAX_PIXELS} pixels share the peak value), \
                 which looks like saturation: {}",
                self.flat_max_patterns.len(),
                list(&self.flat_max_patterns)
            ));
        }
        if n > RECOMMENDED_MAX_FRAME {
            out.push(format!(
                "frames of {n} px are larger than the recommended {RECOMMENDED_MAX_FRAME}; crop or bin them"
            ));
        }
        let masked_fraction = self.masked as f64 / (n * n) as f64;
        if masked_fraction > HIGH_MASKED_FRACTION {
            out.push(format!(
                "{:.0}% of the detector pixels are masked",
                100.0 * masked_fraction
            ));
        }
        match self.median_step() {
            None => out.push("only one pattern: ptychography needs overlapping positions".into()),
            Some(step) => {
                let (ey, ex) = (
                    self.extent.0 / self.sample_pixel,
                    self.extent.1 / self.sample_pixel,
                );
                if ey < step || ex < step {
                    out.push(format!(
                        "positions span {ey:.2} px along y and {ex:.2} px along x, less than one step \
                         ({step:.2} px) in at least one direction (a line scan, or wrong position units)"
                    ));
                }
                let overlap = 1.0 - step / n as f64;
                if overlap <= 0.0 {
                    out.push(format!(
                        "neighbouring {n} x {n} windows do not overlap (step {step:.1} px)"
                    ));
                } else if overlap < LOW_OVERLAP {
                    out.push(format!(
                        "low linear overlap {:.0}% of neighbouring windows (below {:.0}%)",
                        100.0 * overlap,
                        100.0 * LOW_OVERLAP
                    ));
                }
            }
        }
        if data.geometry.regime == Regime::FarField && data.geometry.fresnel_number() > 10.0 {
            out.push(format!(
                "Fresnel number {:.3e} is large for far-field data: is this a near-field measurement?",
                data.geometry.fresnel_number()
            ));
        }
        out
    }
}

/// Lists up to 10 indices.
fn list(indices: &[usize]) -> String {
    let shown: Vec<String> = indices.iter().take(10).map(|i| i.to_string()).collect();
    let more = if indices.len() > 10 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// Median of a slice; `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        0.5 * (v[mid - 1] + v[mid])
    })
}

/// Distance from each point to its nearest other point (empty for fewer than two points).
/// Sweeps the points sorted by their first coordinate, stopping once that coordinate alone is
/// farther than the best distance found.
fn nearest_neighbour_distances(points: &[(f64, f64)]) -> Vec<f64> {
    if points.len() < 2 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    let mut nearest = vec![f64::INFINITY; points.len()];
    for (rank, &i) in order.iter().enumerate() {
        let (yi, xi) = points[i];
        let mut best = f64::INFINITY;
        let mut visit = |k: usize| {
            let (yk, xk) = points[k];
            if (yk - yi).abs() >= best {
                return false;
            }
            best = best.min((yk - yi).hypot(xk - xi));
            true
        };
        for &k in &order[rank + 1..] {
            if !visit(k) {
                break;
            }
        }
        for &k in order[..rank].iter().rev() {
            if !visit(k) {
                break;
            }
        }
        nearest[i] = best;
    }
    nearest
}

/// A physical value with its unit: fixed notation between 1e-3 and 1e4, else scientific.
fn si(value: f64, unit: &str) -> String {
    if (1e-3..1e4).contains(&value.abs()) {
        format!("{value:.6} {unit}")
    } else {
        format!("{value:.6e} {unit}")
    }
}

/// Appends one aligned `label: value` line.
fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<24}{value}", format!("{label}:"));
}

/// The report printed by `autopty info`.
fn render(file: &str, data: &Dataset, info: &CxiInfo, s: &Summary) -> String {
    let g = &data.geometry;
    let n = data.frame();
    let mut out = String::new();
    line(&mut out, "file", file);
    line(
        &mut out,
        "patterns",
        format!("J = {}, frames N x N = {n} x {n}", data.len()),
    );
    let type_range = match info.dtype_max {
        Some(max) => format!(" (type maximum {max})"),
        None => String::new(),
    };
    line(
        &mut out,
        "data",
        format!(
            "{} stored as {}{type_range}, values {} to {}",
            info.data_field, info.data_dtype, s.min_pixel, s.max_pixel.0
        ),
    );
    let (min_j, min_v) = arg_extreme(&s.photons, |a, b| a < b);
    let (max_j, max_v) = arg_extreme(&s.photons, |a, b| a > b);
    let mean = s.photons.iter().sum::<f64>() / s.photons.len().max(1) as f64;
    line(
        &mut out,
        "photons per pattern",
        format!(
            "mean {mean:.4e}, min {min_v:.4e} (pattern {min_j}), max {max_v:.4e} (pattern {max_j})"
        ),
    );
    let (v, j, r, c) = s.max_pixel;
    line(
        &mut out,
        "max pixel",
        format!("{v} (pattern {j}, row {r}, col {c})"),
    );
    line(
        &mut out,
        "masked pixels",
        format!(
            "{} of {} ({:.2}%)",
            s.masked,
            n * n,
            100.0 * s.masked as f64 / (n * n) as f64
        ),
    );
    line(
        &mut out,
        "noise floor",
        if data.noise_floor > 0.0 {
            format!(
                "{:.4} counts per pixel (detector noise left after dark subtraction)",
                data.noise_floor
            )
        } else {
            "0 (photon counting, or no dark frames to measure it)".to_string()
        },
    );
    line(&mut out, "regime", g.regime);
    line(
        &mut out,
        "wavelength",
        format!("{} (energy {:.2} eV)", si(g.wavelength, "m"), g.energy_ev()),
    );
    line(&mut out, "distance", si(g.distance, "m"));
    match g.source_distance {
        Some(z1) => line(
            &mut out,
            "source distance",
            format!("{} (point source)", si(z1, "m")),
        ),
        None => line(&mut out, "source distance", "none (plane wave)"),
    }
    line(
        &mut out,
        "magnification",
        format!("{:.6}", g.magnification()),
    );
    line(
        &mut out,
        "effective distance",
        si(g.effective_distance(), "m"),
    );
    line(&mut out, "detector pixel", si(g.detector_pixel, "m"));
    line(&mut out, "sample pixel", si(s.sample_pixel, "m"));
    line(
        &mut out,
        "Fresnel number",
        format!(
            "{:.6e} (field of view {:.4e} m)",
            g.fresnel_number(),
            n as f64 * s.sample_pixel
        ),
    );
    line(
        &mut out,
        "pixel Fresnel number",
        format!("{:.6e}", g.pixel_fresnel_number()),
    );
    let (ey, ex) = s.extent;
    line(
        &mut out,
        "scan extent",
        format!(
            "y {ey:.4e} m ({:.2} px), x {ex:.4e} m ({:.2} px)",
            ey / s.sample_pixel,
            ex / s.sample_pixel
        ),
    );
    match s.median_step() {
        Some(step) => {
            line(&mut out, "median step", format!("{step:.3} px"));
            line(
                &mut out,
                "linear overlap",
                format!("{:.3} (1 - step / N)", 1.0 - step / n as f64),
            );
        }
        None => line(&mut out, "median step", "n/a (one position)"),
    }
    let problems = s.problems(data, info);
    if problems.is_empty() {
        line(&mut out, "problems", "none found");
    } else {
        line(&mut out, "problems", problems.len());
        for p in problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

/// Index and value of the element that `better` prefers to all others.
fn arg_extreme(values: &[f64], better: impl Fn(f64, f64) -> bool) -> (usize, f64) {
    values.iter().enumerate().fold(
        (0, values.first().copied().unwrap_or(0.0)),
        |acc, (i, &v)| {
            if better(v, acc.1) {
                (i, v)
            } else {
                acc
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbours_on_a_grid() {
        // 4 x 5 grid with step 3 px, plus one point duplicated.
        let mut points: Vec<(f64, f64)> = (0..20)
            .map(|k| ((k / 5) as f64 * 3.0, (k % 5) as f64 * 3.0))
            .collect();
        points.push((6.0, 9.0));
        let d = nearest_neighbour_distances(&points);
        assert_eq!(d.len(), 21);
        assert_eq!(d[0], 3.0);
        assert_eq!(d[13], 0.0); // (6, 9) is point 13
        assert_eq!(d[20], 0.0);
        assert_eq!(median(&d), Some(3.0));
        // Brute force agrees.
        for (i, &(yi, xi)) in points.iter().enumerate() {
            let brute = points
                .iter()
                .enumerate()
                .filter(|&(k, _)| k != i)
                .map(|(_, &(y, x))| (y - yi).hypot(x - xi))
                .fold(f64::INFINITY, f64::min);
            assert_eq!(d[i], brute);
        }
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
