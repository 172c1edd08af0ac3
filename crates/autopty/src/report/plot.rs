//! Line plots (loss curves, distance and position-error histories) drawn with plotters into an
//! in-memory RGB buffer and written as PNG.
//!
//! Robust to awkward data: empty series, a single point, constant values, NaN/Inf (the line is
//! broken there) and non-positive values on a logarithmic axis (skipped) never panic.

use super::canvas::{paint_image, Canvas};
use super::font::text_style;
use super::image::{png_bytes, save_png};
use crate::error::{Error, Result};
use image::RgbImage;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Default size of a saved line plot in pixels (width, height).
pub const LINE_PLOT_SIZE: (u32, u32) = (900, 560);

/// Plot sizes accepted by the renderers, in pixels per side.
pub const PLOT_SIDE_LIMITS: (u32, u32) = (160, 8000);

/// Line colours, in order of the series (a ten-colour qualitative palette).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour of the dashed reference line.
const REFERENCE_COLOUR: RGBColor = RGBColor(40, 40, 40);

/// Series with at most this many points also get a marker at every point.
const MARKER_MAX_POINTS: usize = 40;

/// One named curve: `(x, y)` points in drawing order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line plot: several series on shared axes, optionally a logarithmic y axis and one dashed
/// horizontal reference line `(y, label)` (e.g. the true propagation distance).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    pub hline: Option<(f64, String)>,
}

/// Maps a plotters error into ours, naming what was being drawn.
pub(crate) fn draw_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(what, e.to_string())
}

/// Checks that `width` x `height` is a sensible plot size.
pub(crate) fn check_size(what: &str, width: u32, height: u32) -> Result<()> {
    let (lo, hi) = PLOT_SIDE_LIMITS;
    if width < lo || height < lo || width > hi || height > hi {
        return Err(Error::invalid(
            what,
            format!("size {width} x {height} px; each side must be within {lo}..={hi}"),
        ));
    }
    Ok(())
}

/// Tick labels that show as many digits as the tick spacing needs, in scientific notation for
/// very large or very small values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TickFormat {
    decimals: usize,
    exponent: Option<i32>,
}

impl TickFormat {
    /// A format for about `ticks` labels over `lo..hi`.
    pub(crate) fn linear(lo: f64, hi: f64, ticks: usize) -> Self {
        let step = ((hi - lo).abs() / ticks.max(1) as f64).max(f64::MIN_POSITIVE);
        let biggest = lo.abs().max(hi.abs());
        if biggest >= 1e5 || (biggest < 1e-3 && biggest > 0.0) {
            let exponent = biggest.log10().floor() as i32;
            let rel_step = step / 10f64.powi(exponent);
            let decimals = (-rel_step.log10().floor()).clamp(0.0, 6.0) as usize;
            TickFormat {
                decimals,
                exponent: Some(exponent),
            }
        } else {
            let decimals = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
            TickFormat {
                decimals,
                exponent: None,
            }
        }
    }

    pub(crate) fn format(&self, v: f64) -> String {
        match self.exponent {
            Some(e) => {
                let m = v / 10f64.powi(e);
                if m == 0.0 {
                    "0".to_string()
                } else {
                    format!("{:.*}e{}", self.decimals, m, e)
                }
            }
            None => {
                let s = format!("{:.*}", self.decimals, v);
                if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
                    s[1..].to_string()
                } else {
                    s
                }
            }
        }
    }
}

/// Tick label on a logarithmic axis: plain decimals from 0.001 to 99999, else `1e-5` style.
fn format_log_tick(v: f64) -> String {
    if v.is_nan() || v <= 0.0 {
        return String::new();
    }
    let e = v.log10().floor();
    if (-3.0..5.0).contains(&e) {
        let decimals = (-e).max(0.0) as usize;
        format!("{v:.decimals$}")
    } else {
        let m = v / 10f64.powf(e);
        if (m - 1.0).abs() < 1e-9 {
            format!("1e{}", e as i32)
        } else {
            format!("{m:.0}e{}", e as i32)
        }
    }
}

/// Runs of consecutive drawable points (finite, and positive y on a log axis): a line is
/// broken wherever a point is skipped.
fn drawable_runs(points: &[(f64, f64)], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() && (!log_y || y > 0.0) {
            current.push((x, y));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Range of `values` widened so that it is never empty: a small margin for a linear axis,
/// whole decades for a logarithmic one. `fallback` is used when there are no values.
fn padded_range(values: &[f64], log: bool, margin: f64, fallback: Range<f64>) -> Range<f64> {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return fallback;
    }
    if log {
        lo = 10f64.powf(lo.log10().floor());
        hi = 10f64.powf(hi.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        return lo..hi;
    }
    if hi - lo <= 1e-12 * lo.abs().max(hi.abs()) {
        let half = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        return (lo - half)..(hi + half);
    }
    let pad = margin * (hi - lo);
    lo -= pad;
    hi += pad;
    lo..hi
}

/// Draws `plot` into a `width` x `height` image.
pub fn render_line_plot(plot: &LinePlot, width: u32, height: u32) -> Result<RgbImage> {
    check_size("line plot", width, height)?;
    let runs: Vec<Vec<Vec<(f64, f64)>>> = plot
        .series
        .iter()
        .map(|s| drawable_runs(&s.points, plot.log_y))
        .collect();
    let xs: Vec<f64> = runs.iter().flatten().flatten().map(|p| p.0).collect();
    let mut ys: Vec<f64> = runs.iter().flatten().flatten().map(|p| p.1).collect();
    let hline = plot
        .hline
        .as_ref()
        .filter(|(y, _)| y.is_finite() && (!plot.log_y || *y > 0.0));
    if let Some((y, _)) = hline {
        ys.push(*y);
    }
    let x_range = padded_range(&xs, false, 0.0, 0.0..1.0);
    let y_fallback = if plot.log_y { 0.1..10.0 } else { 0.0..1.0 };
    let y_range = padded_range(&ys, plot.log_y, 0.05, y_fallback);

    paint_image("line plot", width, height, |root| {
        let x_format = TickFormat::linear(x_range.start, x_range.end, 10);
        let x_fmt = move |v: &f64| x_format.format(*v);
        if plot.log_y {
            let y_fmt = |v: &f64| format_log_tick(*v);
            let y = y_range.clone().log_scale();
            draw_line_chart(
                root,
                plot,
                &runs,
                hline,
                x_range.clone(),
                y,
                (&x_fmt, &y_fmt),
            )
        } else {
            let y_format = TickFormat::linear(y_range.start, y_range.end, 10);
            let y_fmt = move |v: &f64| y_format.format(*v);
            let y = y_range.clone();
            draw_line_chart(
                root,
                plot,
                &runs,
                hline,
                x_range.clone(),
                y,
                (&x_fmt, &y_fmt),
            )
        }
    })
}

type Formatters<'a> = (&'a dyn Fn(&f64) -> String, &'a dyn Fn(&f64) -> String);

/// The body of `render_line_plot`, generic over the y coordinate (linear or logarithmic).
fn draw_line_chart<Y>(
    root: &DrawingArea<Canvas<'_>, plotters::coord::Shift>,
    plot: &LinePlot,
    runs: &[Vec<Vec<(f64, f64)>>],
    hline: Option<&(f64, String)>,
    x_range: Range<f64>,
    y_range: Y,
    (x_fmt, y_fmt): Formatters<'_>,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e| draw_error("line plot", e);
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, text_style(22.0, BLACK))
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(86)
        .build_cartesian_2d::<Range<f64>, Y>(x_range.clone(), y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .axis_desc_style(text_style(17.0, BLACK))
        .label_style(text_style(14.0, BLACK))
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(x_fmt)
        .y_label_formatter(y_fmt)
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .axis_style(BLACK.stroke_width(1))
        .draw()
        .map_err(err)?;

    let mut any_label = false;
    for (i, (series, series_runs)) in plot.series.iter().zip(runs).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let style = colour.stroke_width(2);
        let count: usize = series_runs.iter().map(Vec::len).sum();
        let mut labelled = false;
        for run in series_runs {
            let anno = chart
                .draw_series(LineSeries::new(run.iter().copied(), style))
                .map_err(err)?;
            if !labelled && !series.name.is_empty() {
                anno.label(series.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(2))
                });
                labelled = true;
                any_label = true;
            }
            if count <= MARKER_MAX_POINTS || run.len() == 1 {
                chart
                    .draw_series(
                        run.iter()
                            .map(|&p| Circle::new(p, 3, colour.filled()).into_dyn()),
                    )
                    .map_err(err)?;
            }
        }
    }
    if let Some((y, label)) = hline {
        let ends = [(x_range.start, *y), (x_range.end, *y)];
        let anno = chart
            .draw_series(DashedLineSeries::new(
                ends,
                8,
                5,
                REFERENCE_COLOUR.stroke_width(2),
            ))
            .map_err(err)?;
        if !label.is_empty() {
            anno.label(label.as_str()).legend(move |(x, y)| {
                let style = REFERENCE_COLOUR.stroke_width(2);
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (8, 0)], style)
                    + PathElement::new(vec![(13, 0), (22, 0)], style)
            });
            any_label = true;
        }
    }
    if any_label {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(text_style(14.0, BLACK))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Renders `plot` at `LINE_PLOT_SIZE` and writes it to `path` as PNG, atomically.
pub fn save_line_plot(path: &Path, plot: &LinePlot) -> Result<()> {
    let (w, h) = LINE_PLOT_SIZE;
    let img = render_line_plot(plot, w, h)?;
    save_png(path, &img)
}

/// Renders `plot` at `width` x `height` and returns the PNG bytes (for the HTML report).
pub fn line_plot_png(plot: &LinePlot, width: u32, height: u32) -> Result<Vec<u8>> {
    png_bytes(&render_line_plot(plot, width, height)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dark(p: &image::Rgb<u8>) -> bool {
        p.0.iter().all(|&c| c < 80)
    }

    fn near(p: &image::Rgb<u8>, c: RGBColor) -> bool {
        let RGBColor(r, g, b) = c;
        (p.0[0] as i32 - r as i32).abs() <= 12
            && (p.0[1] as i32 - g as i32).abs() <= 12
            && (p.0[2] as i32 - b as i32).abs() <= 12
    }

    fn loss_plot(log_y: bool) -> LinePlot {
        LinePlot {
            title: "Loss".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "gradient".into(),
                    points: (0..200)
                        .map(|i| (i as f64, 1e3 * (-0.05 * i as f64).exp()))
                        .collect(),
                },
                Series {
                    name: "rPIE".into(),
                    points: (0..200)
                        .map(|i| (i as f64, 2e3 / (1.0 + i as f64)))
                        .collect(),
                },
            ],
            log_y,
            hline: Some((5.0, "reference".into())),
        }
    }

    #[test]
    fn line_plot_has_size_axes_text_and_coloured_lines() {
        let img = render_line_plot(&loss_plot(true), 640, 400).unwrap();
        assert_eq!(img.dimensions(), (640, 400));
        let dark = img.pixels().filter(|p| is_dark(p)).count();
        let first = img.pixels().filter(|p| near(p, PALETTE[0])).count();
        let second = img.pixels().filter(|p| near(p, PALETTE[1])).count();
        assert!(dark > 1500, "{dark} dark pixels");
        assert!(first > 300 && second > 300, "line pixels {first}, {second}");
        // The title is drawn in the top band, centred.
        let title_dark = (0..40)
            .flat_map(|y| (220..420).map(move |x| (x, y)))
            .filter(|&(x, y)| is_dark(img.get_pixel(x, y)))
            .count();
        assert!(title_dark > 20, "title pixels {title_dark}");
    }

    #[test]
    fn title_text_changes_pixels_in_title_band() {
        let mut plot = loss_plot(false);
        let with = render_line_plot(&plot, 500, 300).unwrap();
        plot.title.clear();
        let without = render_line_plot(&plot, 500, 300).unwrap();
        let changed = (0..30)
            .flat_map(|y| (0..500).map(move |x| (x, y)))
            .filter(|&(x, y)| with.get_pixel(x, y) != without.get_pixel(x, y))
            .count();
        assert!(changed > 30, "title changed only {changed} pixels");
    }

    #[test]
    fn awkward_data_does_not_panic() {
        let cases: Vec<Vec<(f64, f64)>> = vec![
            vec![],
            vec![(3.0, 2.0)],
            vec![(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)],
            vec![
                (0.0, 0.0),
                (1.0, -1.0),
                (2.0, f64::NAN),
                (3.0, 1e-3),
                (4.0, 0.1),
            ],
            vec![(f64::NAN, f64::INFINITY), (1.0, f64::NEG_INFINITY)],
            vec![(0.0, -2.0), (1.0, -3.0)],
            vec![(0.0, 1e-12), (1.0, 1.1e-12)],
            vec![(1e9, 1e9), (1e9 + 1.0, 1e9 + 2.0)],
        ];
        for points in cases {
            for log_y in [false, true] {
                let plot = LinePlot {
                    series: vec![Series {
                        name: String::new(),
                        points: points.clone(),
                    }],
                    log_y,
                    hline: Some((0.0, "zero".into())),
                    ..Default::default()
                };
                let img = render_line_plot(&plot, 300, 200).unwrap();
                assert_eq!(img.dimensions(), (300, 200));
            }
        }
        assert!(render_line_plot(&LinePlot::default(), 10, 200).is_err());
    }

    #[test]
    fn log_axis_skips_non_positive_values_but_draws_the_rest() {
        let plot = LinePlot {
            series: vec![Series {
                name: "s".into(),
                points: vec![
                    (0.0, 0.0),
                    (1.0, -4.0),
                    (2.0, 10.0),
                    (3.0, 100.0),
                    (4.0, 1000.0),
                ],
            }],
            log_y: true,
            ..Default::default()
        };
        let img = render_line_plot(&plot, 400, 300).unwrap();
        let coloured = img.pixels().filter(|p| near(p, PALETTE[0])).count();
        assert!(coloured > 100, "{coloured}");
    }

    #[test]
    fn drawable_runs_break_at_bad_points() {
        let pts = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, 0.0),
            (4.0, 3.0),
            (5.0, 4.0),
        ];
        assert_eq!(drawable_runs(&pts, false).len(), 2);
        let log = drawable_runs(&pts, true);
        assert_eq!(log.len(), 3);
        assert_eq!(log[2], vec![(4.0, 3.0), (5.0, 4.0)]);
        assert_eq!(
            padded_range(&[0.02, 300.0], true, 0.0, 0.0..1.0),
            0.01..1000.0
        );
        assert_eq!(padded_range(&[5.0, 5.0], false, 0.05, 0.0..1.0), 4.5..5.5);
        assert_eq!(padded_range(&[], false, 0.05, 0.0..1.0), 0.0..1.0);
    }

    #[test]
    fn tick_labels_have_the_digits_the_spacing_needs() {
        let f = TickFormat::linear(0.0, 200.0, 10);
        assert_eq!(f.format(50.0), "50");
        let f = TickFormat::linear(0.1, 0.2, 10);
        assert_eq!(f.format(0.126), "0.13");
        let f = TickFormat::linear(1e-6, 5e-6, 10);
        assert_eq!(f.format(2.5e-6), "2.5e-6");
        let f = TickFormat::linear(-1.0, 1.0, 10);
        assert_eq!(f.format(-0.0001), "0.0");
        assert_eq!(format_log_tick(1e-5), "1e-5");
        assert_eq!(format_log_tick(0.01), "0.01");
        assert_eq!(format_log_tick(100.0), "100");
        assert_eq!(format_log_tick(2e6), "2e6");
    }

    #[test]
    fn saved_plot_decodes_with_default_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        save_line_plot(&path, &loss_plot(true)).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), LINE_PLOT_SIZE);
        let bytes = line_plot_png(&loss_plot(false), 300, 200).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
