//! The run report: one self-contained HTML file (`report.html`) with every picture embedded as
//! a base64 PNG, so that it can be mailed or opened anywhere without the output folder.
//!
//! Sections: the run's status and timings; object magnitude and phase; the probe modes with
//! their power fractions; the scan positions before and after refinement (arrows from nominal
//! to refined, in object pixels); the loss, distance and position-correction curves per epoch;
//! the score against the truth when it is known; the notes of the preparation stages; the
//! settings.

use crate::error::Result;
use crate::io::atomic::write_bytes_atomic;
use crate::metrics::{format_table, Score};
use crate::reconstruction::{EpochStats, Reconstruction};
use crate::report::image::{complex_image, magnitude_image, phase_image, png_bytes};
use crate::report::plot::{line_plot_png, LinePlot, Series};
use crate::report::positions::render_position_plot;
use std::fmt::Write as _;
use std::path::Path;

/// File name of the report in an output folder.
pub const FILE_NAME: &str = "report.html";

/// What a report shows besides the reconstruction itself.
pub struct ReportContent<'a> {
    /// Heading (e.g. the dataset's file name).
    pub title: String,
    /// One line on the run's state: complete, interrupted (and how to resume), checkpoint.
    pub status: String,
    /// The reconstruction.
    pub rec: &'a Reconstruction,
    /// The distance (m) the data came with, to show next to the refined one.
    pub start_distance: Option<f64>,
    /// Score against the truth, when known.
    pub score: Option<&'a Score>,
    /// Lines from the preparation stages and the resume log.
    pub notes: Vec<String>,
    /// Timings as (what, value) rows.
    pub timings: Vec<(String, String)>,
    /// The settings of the run (shown as JSON).
    pub settings: serde_json::Value,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn img(png: &[u8], alt: &str) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        escape(alt),
        base64(png)
    )
}

/// A captioned image; `class` sets its display size (`big`, `small` or `plot`).
fn figure(png: &[u8], caption: &str, class: &str) -> String {
    format!(
        "<figure class=\"{class}\">{}<figcaption>{}</figcaption></figure>\n",
        img(png, caption),
        escape(caption)
    )
}

fn curve(
    rec: &Reconstruction,
    title: &str,
    y: &str,
    log: bool,
    f: fn(&EpochStats) -> f64,
) -> LinePlot {
    LinePlot {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: y.into(),
        series: vec![Series {
            name: rec.engine.clone(),
            points: rec
                .history
                .iter()
                .map(|s| (s.epoch as f64, f(s)))
                .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
                .collect(),
        }],
        log_y: log,
        hline: None,
    }
}

/// Power fraction of each probe mode (sums to 1).
pub fn mode_power_fractions(rec: &Reconstruction) -> Vec<f64> {
    let powers: Vec<f64> = rec
        .probe
        .outer_iter()
        .map(|m| m.iter().map(|v| v.norm_sqr() as f64).sum())
        .collect();
    let total: f64 = powers.iter().sum();
    powers
        .iter()
        .map(|p| if total > 0.0 { p / total } else { 0.0 })
        .collect()
}

/// The report as HTML text.
pub fn render(c: &ReportContent) -> Result<String> {
    let rec = c.rec;
    let mut h = String::with_capacity(1 << 20);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>autopty report: {title}</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>autopty report: {title}</h1>\n<p class=\"status\">{status}</p>\n",
        title = escape(&c.title),
        status = escape(&c.status),
    );
    // Summary table.
    let last = rec.history.last();
    let mut rows: Vec<(String, String)> = vec![
        ("engine".into(), rec.engine.clone()),
        ("epochs".into(), rec.history.len().to_string()),
        (
            "final loss".into(),
            last.map_or("n/a".into(), |s| format!("{:.4e}", s.loss)),
        ),
        (
            "refined distance".into(),
            format!("{:.6} m", rec.geometry.refined_distance()),
        ),
    ];
    if let Some(d) = c.start_distance {
        rows.push(("starting distance".into(), format!("{d:.6} m")));
    }
    rows.push((
        "median position correction".into(),
        last.map_or("n/a".into(), |s| format!("{:.2} px", s.median_correction)),
    ));
    rows.push((
        "object / probe".into(),
        format!(
            "{} x {} px / {} mode(s) of {} x {} px, sample pixel {:.3e} m",
            rec.object.nrows(),
            rec.object.ncols(),
            rec.probe.shape()[0],
            rec.probe.shape()[1],
            rec.probe.shape()[2],
            rec.geometry.sample_pixel()
        ),
    ));
    rows.extend(c.timings.iter().cloned());
    h.push_str("<section><h2>Summary</h2><table class=\"kv\">\n");
    for (k, v) in &rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h.push_str("</table></section>\n");
    if let Some(s) = c.score {
        let _ = writeln!(
            h,
            "<section><h2>Score against the truth</h2><pre class=\"score\">{}</pre></section>",
            escape(&format_table(s))
        );
    }
    // Object.
    h.push_str("<section><h2>Object</h2><div class=\"row\">\n");
    h.push_str(&figure(
        &png_bytes(&magnitude_image(&rec.object))?,
        "object magnitude",
        "big",
    ));
    h.push_str(&figure(
        &png_bytes(&phase_image(&rec.object))?,
        "object phase (rad)",
        "big",
    ));
    h.push_str("</div></section>\n");
    // Probe modes.
    h.push_str("<section><h2>Probe modes</h2><div class=\"row\">\n");
    for (k, (mode, frac)) in rec
        .probe
        .outer_iter()
        .zip(mode_power_fractions(rec))
        .enumerate()
    {
        h.push_str(&figure(
            &png_bytes(&complex_image(&mode.to_owned()))?,
            &format!("mode {k}: {:.1} % of the power", 100.0 * frac),
            "small",
        ));
    }
    h.push_str("</div><p class=\"note\">Brightness: magnitude; hue: phase.</p></section>\n");
    // Positions.
    h.push_str("<section><h2>Scan positions</h2><div class=\"row\">\n");
    let plot = render_position_plot(&rec.nominal_positions, &rec.positions, None, 640, 640)?;
    h.push_str(&figure(
        &png_bytes(&plot)?,
        "nominal (open circles) and refined (dots) positions, object px; arrows from nominal to refined",
        "plot",
    ));
    h.push_str("</div></section>\n");
    // Curves.
    h.push_str("<section><h2>Convergence</h2><div class=\"row\">\n");
    if rec.history.is_empty() {
        h.push_str("<p>No epoch has finished yet.</p>");
    } else {
        for (plot, caption) in [
            (
                curve(rec, "Loss", "loss / measured photons", true, |s| s.loss),
                "loss per epoch",
            ),
            (
                curve(rec, "Refined distance", "distance (mm)", false, |s| {
                    s.distance * 1e3
                }),
                "distance per epoch",
            ),
            (
                curve(
                    rec,
                    "Position correction",
                    "median |correction| (px)",
                    false,
                    |s| s.median_correction,
                ),
                "median position correction per epoch",
            ),
        ] {
            h.push_str(&figure(&line_plot_png(&plot, 560, 380)?, caption, "plot"));
        }
    }
    h.push_str("</div></section>\n");
    if !c.notes.is_empty() {
        h.push_str("<section><h2>Notes</h2><ul>\n");
        for n in &c.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul></section>\n");
    }
    let settings = serde_json::to_string_pretty(&c.settings).unwrap_or_default();
    let _ = write!(
        h,
        "<section><h2>Settings</h2><pre class=\"settings\">{}</pre></section>\n\
         <footer>autopty {}</footer></body></html>\n",
        escape(&settings),
        env!("CARGO_PKG_VERSION")
    );
    Ok(h)
}

/// Writes `dir/report.html` atomically.
pub fn write(dir: &Path, content: &ReportContent) -> Result<()> {
    write_bytes_atomic(&dir.join(FILE_NAME), render(content)?.as_bytes())
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;\
margin:24px auto;max-width:1280px;padding:0 16px;color:#222;background:#fafafa}\
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;border-bottom:1px solid #ccc;\
padding-bottom:4px;margin-top:28px}.status{font-weight:bold;color:#444}\
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}\
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px;border-radius:4px}\
figure img{display:block;max-width:100%;height:auto}figure.big img{width:440px;\
image-rendering:pixelated}figure.small img{width:220px;image-rendering:pixelated}\
figure.plot img{width:560px}figcaption{font-size:.9em;color:#555;margin-top:6px;max-width:560px}\
table.kv{border-collapse:collapse}table.kv th{text-align:left;padding:3px 16px 3px 0;\
font-weight:600;color:#444}table.kv td{padding:3px 0}\
pre{background:#fff;border:1px solid #ddd;padding:10px;overflow-x:auto;font-size:.85em}\
pre.score{font-size:1em}.note{color:#666;font-size:.9em}footer{margin-top:32px;color:#888;font-size:.8em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn the_report_has_every_section_and_embeds_every_image() {
        let data = crate::io::fuzzing::tiny_dataset().unwrap();
        let settings = crate::model::ModelSettings {
            modes: 2,
            border: 2,
            ..Default::default()
        };
        let (model, _) = crate::model::Model::initial(&data, &settings).unwrap();
        let history: Vec<EpochStats> = (1..=3)
            .map(|epoch| EpochStats {
                epoch,
                loss: 1.0 / epoch as f64,
                distance: 0.1,
                median_correction: 0.5,
                seconds: epoch as f64,
            })
            .collect();
        let rec = crate::engines::checkpoint::reconstruction_of(
            &model,
            &history,
            serde_json::json!({"optimizer": "adam"}),
        );
        let score = Score {
            ssim_magnitude: 0.95,
            ssim_phase: 0.9,
            nrmse: 0.1,
            position_error_median: Some(0.3),
            position_error_p90: Some(0.6),
            position_error_affine_median: Some(0.1),
            distance_error_rel: Some(0.002),
            shift: (0.0, 0.0),
        };
        let html = render(&ReportContent {
            title: "t<1>".into(),
            status: "Complete".into(),
            rec: &rec,
            start_distance: Some(0.13),
            score: Some(&score),
            notes: vec!["a note".into()],
            timings: vec![("wall-clock time".into(), "3 s".into())],
            settings: serde_json::json!({"gradient": {"epochs": 3}}),
        })
        .unwrap();
        // Object magnitude and phase, two probe modes, positions, three curves.
        assert_eq!(
            html.matches("data:image/png;base64,").count(),
            2 + 2 + 1 + 3
        );
        for needle in [
            "t&lt;1&gt;",
            "Score against the truth",
            "magnitude SSIM",
            "% of the power",
            "Scan positions",
            "Convergence",
            "a note",
            "wall-clock time",
            "&quot;epochs&quot;: 3",
            "0.130000 m",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        let fractions = mode_power_fractions(&rec);
        assert!((fractions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(fractions[0] > fractions[1]);
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn escape_closes_no_tags() {
        assert_eq!(escape("<b>&\"x\""), "&lt;b&gt;&amp;&quot;x&quot;");
    }
}
