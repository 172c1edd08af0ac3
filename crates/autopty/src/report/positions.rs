//! Scan-position plot: nominal positions (open circles), refined positions (dots), a line with
//! an arrow head from each nominal to its refined position, and the true positions (crosses)
//! when known. Positions are `(J, 2)` arrays of (row, col) in object pixels; the plot is drawn
//! like an image (row axis pointing down) with one pixel the same length on both axes.

use super::canvas::paint_image;
use super::font::text_style;
use super::image::save_png;
use super::plot::{check_size, draw_error, TickFormat};
use crate::error::{Error, Result};
use image::RgbImage;
use ndarray::Array2;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Size of a saved position plot in pixels (width, height).
pub const POSITION_PLOT_SIZE: (u32, u32) = (820, 820);

const NOMINAL_COLOUR: RGBColor = RGBColor(31, 119, 180);
const REFINED_COLOUR: RGBColor = RGBColor(214, 39, 40);
const TRUTH_COLOUR: RGBColor = RGBColor(44, 160, 44);
const SHIFT_COLOUR: RGBColor = RGBColor(110, 110, 110);

/// Arrow heads are drawn on shifts at least this long on screen (pixels).
const MIN_ARROW_PX: f64 = 7.0;

/// Checks that `a` is `(j, 2)`, naming it in the error.
fn check_positions(name: &str, a: &Array2<f64>, j: usize) -> Result<()> {
    if a.ncols() != 2 || a.nrows() != j {
        return Err(Error::invalid(
            format!("{name} positions"),
            format!(
                "shape {:?}; expected ({j}, 2) (row, col) pairs like the nominal positions",
                a.dim()
            ),
        ));
    }
    Ok(())
}

fn finite(p: (f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// (row, col) of position `j`.
fn at(a: &Array2<f64>, j: usize) -> (f64, f64) {
    (a[[j, 0]], a[[j, 1]])
}

/// Mean distance and RMS distance (px) between matching finite positions of `a` and `b`.
fn distance_stats(a: &Array2<f64>, b: &Array2<f64>) -> Option<(f64, f64)> {
    let (mut sum, mut sum_sq, mut n) = (0.0, 0.0, 0usize);
    for j in 0..a.nrows() {
        let (p, q) = (at(a, j), at(b, j));
        if finite(p) && finite(q) {
            let d = (p.0 - q.0).hypot(p.1 - q.1);
            sum += d;
            sum_sq += d * d;
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64, (sum_sq / n as f64).sqrt()))
}

/// The plot title: the mean shift and, with the truth, the RMS error before and after.
fn title(nominal: &Array2<f64>, refined: &Array2<f64>, truth: Option<&Array2<f64>>) -> String {
    let mut t = format!("Scan positions ({} points)", nominal.nrows());
    if let Some((mean, _)) = distance_stats(nominal, refined) {
        t += &format!(": mean shift {mean:.2} px");
    }
    if let Some(truth) = truth {
        if let (Some((_, before)), Some((_, after))) = (
            distance_stats(nominal, truth),
            distance_stats(refined, truth),
        ) {
            t += &format!(", RMS error {before:.2} → {after:.2} px");
        }
    }
    t
}

/// Column (x) and row (y) extents of all finite points, padded; `(0..1, 0..1)` if none.
fn extents(arrays: &[&Array2<f64>]) -> (Range<f64>, Range<f64>) {
    let (mut c0, mut c1, mut r0, mut r1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for a in arrays {
        for j in 0..a.nrows() {
            let (r, c) = at(a, j);
            if finite((r, c)) {
                (r0, r1, c0, c1) = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
            }
        }
    }
    if r0 > r1 {
        return (0.0..1.0, 0.0..1.0);
    }
    let pad = (0.05 * (r1 - r0).max(c1 - c0)).max(1.0);
    ((c0 - pad)..(c1 + pad), (r0 - pad)..(r1 + pad))
}

/// Widens the ranges so that one data unit spans the same number of screen pixels on both
/// axes, given a plotting area of `w` x `h` pixels.
fn equal_aspect(x: Range<f64>, y: Range<f64>, (w, h): (u32, u32)) -> (Range<f64>, Range<f64>) {
    let (w, h) = (w.max(1) as f64, h.max(1) as f64);
    let (dx, dy) = (x.end - x.start, y.end - y.start);
    let units_per_px = (dx / w).max(dy / h);
    let (cx, cy) = (0.5 * (x.start + x.end), 0.5 * (y.start + y.end));
    let (hx, hy) = (0.5 * units_per_px * w, 0.5 * units_per_px * h);
    ((cx - hx)..(cx + hx), (cy - hy)..(cy + hy))
}

/// Draws the position plot at `width` x `height` pixels.
pub fn render_position_plot(
    nominal: &Array2<f64>,
    refined: &Array2<f64>,
    truth: Option<&Array2<f64>>,
    width: u32,
    height: u32,
) -> Result<RgbImage> {
    check_size("position plot", width, height)?;
    let j = nominal.nrows();
    check_positions("nominal", nominal, j)?;
    check_positions("refined", refined, j)?;
    if let Some(t) = truth {
        check_positions("true", t, j)?;
    }
    let mut all = vec![nominal, refined];
    all.extend(truth);
    let (x_range, row_range) = extents(&all);

    fn err(e: impl std::fmt::Display) -> Error {
        draw_error("position plot", e)
    }
    paint_image("position plot", width, height, |root| {
        root.fill(&WHITE).map_err(err)?;
        let area = root
            .titled(&title(nominal, refined, truth), text_style(19.0, BLACK))
            .map_err(err)?;
        // The chart's y value is -row so that rows grow downwards; labels show the row.
        let neg = |r: Range<f64>| (-r.end)..(-r.start);
        let builder = |x: Range<f64>, y: Range<f64>| {
            ChartBuilder::on(&area)
                .margin(14)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d(x, y)
        };
        let probe = builder(x_range.clone(), neg(row_range.clone())).map_err(err)?;
        let dims = probe.plotting_area().dim_in_pixel();
        drop(probe);
        let (x_range, y_range) = equal_aspect(x_range, neg(row_range), dims);
        let mut chart = builder(x_range.clone(), y_range.clone()).map_err(err)?;

        let x_format = TickFormat::linear(x_range.start, x_range.end, 10);
        let y_format = TickFormat::linear(y_range.start, y_range.end, 10);
        let x_fmt = move |v: &f64| x_format.format(*v);
        let y_fmt = move |v: &f64| y_format.format(-*v);
        chart
            .configure_mesh()
            .x_desc("column (px)")
            .y_desc("row (px)")
            .axis_desc_style(text_style(16.0, BLACK))
            .label_style(text_style(13.0, BLACK))
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(RGBColor(220, 220, 220))
            .light_line_style(RGBColor(244, 244, 244))
            .draw()
            .map_err(err)?;

        let xy = |p: (f64, f64)| (p.1, -p.0);
        let pairs: Vec<((f64, f64), (f64, f64))> = (0..j)
            .map(|k| (at(nominal, k), at(refined, k)))
            .filter(|&(a, b)| finite(a) && finite(b))
            .map(|(a, b)| (xy(a), xy(b)))
            .collect();
        chart
            .draw_series(
                pairs
                    .iter()
                    .map(|&(a, b)| PathElement::new(vec![a, b], SHIFT_COLOUR.stroke_width(1))),
            )
            .map_err(err)?;
        for &(a, b) in &pairs {
            let (pa, pb) = (chart.backend_coord(&a), chart.backend_coord(&b));
            for head in arrow_head(pa, pb) {
                root.draw(&PathElement::new(
                    vec![pb, head],
                    SHIFT_COLOUR.stroke_width(1),
                ))
                .map_err(err)?;
            }
        }

        let points = |a: &Array2<f64>| -> Vec<(f64, f64)> {
            (0..j)
                .map(|k| at(a, k))
                .filter(|&p| finite(p))
                .map(xy)
                .collect()
        };
        chart
            .draw_series(
                points(nominal)
                    .into_iter()
                    .map(|p| Circle::new(p, 4, NOMINAL_COLOUR.stroke_width(1))),
            )
            .map_err(err)?
            .label("nominal")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, NOMINAL_COLOUR.stroke_width(1)));
        if let Some(t) = truth {
            chart
                .draw_series(
                    points(t)
                        .into_iter()
                        .map(|p| Cross::new(p, 4, TRUTH_COLOUR.stroke_width(2))),
                )
                .map_err(err)?
                .label("true")
                .legend(|(x, y)| Cross::new((x + 10, y), 4, TRUTH_COLOUR.stroke_width(2)));
        }
        chart
            .draw_series(
                points(refined)
                    .into_iter()
                    .map(|p| Circle::new(p, 2, REFINED_COLOUR.filled())),
            )
            .map_err(err)?
            .label("refined")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, REFINED_COLOUR.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(text_style(14.0, BLACK))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// The two outer points of an arrow head at `to`, for a shift from `from` (screen pixels);
/// none when the shift is too short to carry a head.
fn arrow_head(from: (i32, i32), to: (i32, i32)) -> Vec<(i32, i32)> {
    let (dx, dy) = ((to.0 - from.0) as f64, (to.1 - from.1) as f64);
    let len = dx.hypot(dy);
    if len < MIN_ARROW_PX {
        return Vec::new();
    }
    let (ux, uy) = (dx / len, dy / len);
    let size = 5.0f64.min(0.5 * len);
    let (c, s) = (0.5f64.cos(), 0.5f64.sin()); // about 29 degrees either side
    [(c, s), (c, -s)]
        .iter()
        .map(|&(c, s)| {
            let (bx, by) = (-(ux * c - uy * s), -(ux * s + uy * c));
            (
                to.0 + (size * bx).round() as i32,
                to.1 + (size * by).round() as i32,
            )
        })
        .collect()
}

/// Renders the position plot at `POSITION_PLOT_SIZE` and writes it to `path` as PNG.
pub fn save_position_plot(
    path: &Path,
    nominal: &Array2<f64>,
    refined: &Array2<f64>,
    truth: Option<&Array2<f64>>,
) -> Result<()> {
    let (w, h) = POSITION_PLOT_SIZE;
    let img = render_position_plot(nominal, refined, truth, w, h)?;
    save_png(path, &img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn red_pixels(img: &RgbImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] > 190 && p.0[1] < 70 && p.0[2] < 70)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn rows_point_down_and_aspect_is_equal() {
        // Refined points at (row 0, col 0) and (row 100, col 1000): a 10:1 wide diagonal.
        let nominal = array![[0.0, 0.0], [100.0, 1000.0]];
        let img = render_position_plot(&nominal, &nominal.clone(), None, 700, 600).unwrap();
        assert_eq!(img.dimensions(), (700, 600));
        let red = red_pixels(&img);
        assert!(!red.is_empty());
        // Exclude the legend (top-right box) by taking the leftmost and rightmost dots' rows.
        let left = red.iter().min_by_key(|p| p.0).unwrap();
        let right_dot: Vec<_> = red.iter().filter(|p| p.0 + 20 > 600 && p.1 > 100).collect();
        let right = right_dot.iter().max_by_key(|p| p.0).unwrap();
        let (dx, dy) = (
            right.0 as f64 - left.0 as f64,
            right.1 as f64 - left.1 as f64,
        );
        assert!(dy > 0.0, "row 100 must be drawn below row 0");
        let ratio = dx / dy;
        assert!(
            (ratio - 10.0).abs() < 1.0,
            "aspect {ratio} (dx {dx}, dy {dy})"
        );
    }

    #[test]
    fn shifts_truth_and_bad_values_are_drawn_without_panic() {
        let nominal = Array2::from_shape_fn((25, 2), |(j, k)| {
            if k == 0 {
                (j / 5) as f64 * 20.0
            } else {
                (j % 5) as f64 * 20.0
            }
        });
        let mut refined = nominal.clone();
        refined.mapv_inplace(|v| v + 3.0);
        refined[[3, 0]] = f64::NAN;
        let truth = nominal.mapv(|v| v + 2.5);
        let img = render_position_plot(&nominal, &refined, Some(&truth), 500, 500).unwrap();
        let green = img
            .pixels()
            .filter(|p| p.0[1] > 130 && p.0[0] < 90 && p.0[2] < 90)
            .count();
        assert!(green > 100, "truth crosses: {green} green pixels");
        assert!(red_pixels(&img).len() > 100);
        // Degenerate inputs: no positions, one position, all identical.
        let empty = Array2::<f64>::zeros((0, 2));
        render_position_plot(&empty, &empty, None, 300, 300).unwrap();
        let one = array![[5.0, 5.0]];
        render_position_plot(&one, &one, Some(&one), 300, 300).unwrap();
        let nan = array![[f64::NAN, 1.0]];
        render_position_plot(&nan, &nan, None, 300, 300).unwrap();
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let a = Array2::<f64>::zeros((4, 2));
        let b = Array2::<f64>::zeros((3, 2));
        let c = Array2::<f64>::zeros((4, 3));
        let e = render_position_plot(&a, &b, None, 300, 300).unwrap_err();
        assert!(e.to_string().contains("refined"), "{e}");
        let e = render_position_plot(&a, &a, Some(&c), 300, 300).unwrap_err();
        assert!(e.to_string().contains("true"), "{e}");
        assert!(render_position_plot(&c, &c, None, 300, 300).is_err());
    }

    #[test]
    fn title_reports_shift_and_error_and_file_is_written() {
        let nominal = array![[0.0, 0.0], [0.0, 10.0]];
        let refined = array![[3.0, 4.0], [3.0, 14.0]];
        let truth = array![[3.0, 4.0], [3.0, 14.0]];
        let t = title(&nominal, &refined, Some(&truth));
        assert!(t.contains("mean shift 5.00 px"), "{t}");
        assert!(t.contains("RMS error 5.00 → 0.00 px"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.png");
        save_position_plot(&path, &nominal, &refined, Some(&truth)).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), POSITION_PLOT_SIZE);
    }

    #[test]
    fn arrow_heads_point_back_along_the_shift() {
        assert!(arrow_head((0, 0), (3, 0)).is_empty());
        let h = arrow_head((0, 0), (20, 0));
        assert_eq!(h.len(), 2);
        for (x, y) in h {
            assert!((14..20).contains(&x), "{x}");
            assert!((1..=3).contains(&y.abs()), "{y}");
        }
    }
}
