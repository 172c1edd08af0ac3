//! `autopty profile OUT --from X0,Y0 --to X1,Y1`: a line profile of the reconstructed object's
//! magnitude and phase between two points (object pixels, x = column, y = row), written as
//! `OUT/profile.csv` and `OUT/profile.png`, with the edge resolution of each: the 10-90 % width
//! of the edge and the FWHM of its line spread function (Gaussian blur assumed), in px and m.

use anyhow::{bail, Context};
use autopty::io::atomic::write_bytes_atomic;
use autopty::metrics::{edge_fwhm, edge_width, line_profile};
use autopty::report::plot::{save_line_plot, LinePlot, Series};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `autopty profile`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder of a reconstruction.
    pub out: PathBuf,
    /// Start point X0,Y0 (object pixels: column, row).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "X0,Y0",
        allow_negative_numbers = true
    )]
    pub from: Vec<f64>,
    /// End point X1,Y1 (object pixels: column, row).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "X1,Y1",
        allow_negative_numbers = true
    )]
    pub to: Vec<f64>,
    /// Samples along the line (default: four per pixel of its length).
    #[arg(long)]
    pub samples: Option<usize>,
}

/// The edge resolution of one profile: (10-90 % width, FWHM), px.
fn resolution(values: &[f64], step_px: f64) -> (Option<f64>, Option<f64>) {
    (edge_width(values, step_px), edge_fwhm(values, step_px))
}

fn fmt_len(v: Option<f64>, pixel: f64) -> String {
    match v {
        Some(w) => format!("{w:.2} px ({:.1} nm)", w * pixel * 1e9),
        None => "no edge found".into(),
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.from.len() != 2 || args.to.len() != 2 {
        bail!("--from and --to take two numbers each: X,Y (column, row in object pixels)");
    }
    let rec = autopty::io::outputs::read(&args.out)?;
    let (h, w) = rec.object.dim();
    let (from, to) = ((args.from[1], args.from[0]), (args.to[1], args.to[0]));
    for (name, (y, x)) in [("--from", from), ("--to", to)] {
        if !(x.is_finite() && y.is_finite())
            || x < 0.0
            || y < 0.0
            || x > (w - 1) as f64
            || y > (h - 1) as f64
        {
            bail!("{name}: the point ({x}, {y}) lies outside the {w} x {h} px object (x is the column, y the row)");
        }
    }
    let length = (to.0 - from.0).hypot(to.1 - from.1);
    if length <= 0.0 {
        bail!("--from and --to are the same point");
    }
    let samples = args
        .samples
        .unwrap_or((4.0 * length).ceil() as usize + 1)
        .max(5);
    let step = length / (samples - 1) as f64;
    let pixel = rec.geometry.sample_pixel();
    let magnitude = line_profile(&rec.object.mapv(|v| v.norm()), from, to, samples);
    let phase = line_profile(&rec.object.mapv(|v| v.arg()), from, to, samples);
    let (mag_width, mag_fwhm) = resolution(&magnitude, step);
    let (phase_width, phase_fwhm) = resolution(&phase, step);

    let mut csv = String::new();
    let _ = writeln!(
        csv,
        "# from (x, y) = ({}, {}) to ({}, {}) px; sample pixel {:e} m",
        args.from[0], args.from[1], args.to[0], args.to[1], pixel
    );
    for (name, width, fwhm) in [
        ("magnitude", mag_width, mag_fwhm),
        ("phase", phase_width, phase_fwhm),
    ] {
        let _ = writeln!(
            csv,
            "# {name}: edge 10-90 % width {}, FWHM {}",
            fmt_len(width, pixel),
            fmt_len(fwhm, pixel)
        );
    }
    csv.push_str("distance_px,distance_m,magnitude,phase_rad\n");
    for (i, (m, p)) in magnitude.iter().zip(&phase).enumerate() {
        let d = i as f64 * step;
        let _ = writeln!(csv, "{d},{:e},{m},{p}", d * pixel);
    }
    let csv_path = args.out.join("profile.csv");
    write_bytes_atomic(&csv_path, csv.as_bytes())
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let points = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| (i as f64 * step * pixel * 1e6, y))
            .collect()
    };
    let plot = LinePlot {
        title: "Line profile".into(),
        x_label: "distance along the line (um)".into(),
        y_label: "magnitude, phase (rad)".into(),
        series: vec![
            Series {
                name: "magnitude".into(),
                points: points(&magnitude),
            },
            Series {
                name: "phase (rad)".into(),
                points: points(&phase),
            },
        ],
        log_y: false,
        hline: None,
    };
    let png_path = args.out.join("profile.png");
    save_line_plot(&png_path, &plot).with_context(|| format!("writing {}", png_path.display()))?;
    println!(
        "line of {length:.1} px ({:.3} um), {samples} samples",
        length * pixel * 1e6
    );
    println!(
        "magnitude: edge 10-90 % {}, FWHM {}",
        fmt_len(mag_width, pixel),
        fmt_len(mag_fwhm, pixel)
    );
    println!(
        "phase:     edge 10-90 % {}, FWHM {}",
        fmt_len(phase_width, pixel),
        fmt_len(phase_fwhm, pixel)
    );
    println!("wrote {} and {}", csv_path.display(), png_path.display());
    Ok(())
}
