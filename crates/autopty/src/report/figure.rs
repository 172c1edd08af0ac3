//! Figures made of titled image panels laid out in rows, e.g. one row per engine with its
//! object magnitude and phase side by side.

use super::font::{draw_text, text_size};
use super::image::{auto_scale, magnitude_image, phase_image, upscale};
use image::{imageops, Rgb, RgbImage};
use ndarray::Array2;
use num_complex::Complex32;
use plotters::style::BLACK;

pub use super::image::png_bytes;

/// Space between and around panels, in pixels.
pub const GRID_PADDING: u32 = 10;
/// Font size of panel titles, in pixels.
pub const GRID_TITLE_PX: f64 = 16.0;
/// Height reserved above each panel for its title, in pixels.
const TITLE_BAND: u32 = 24;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);

/// Lays out `cells` as rows of panels, each with its title centred above it, on a white
/// background. Column `c` is as wide as the widest panel (or title) in column `c` over all rows;
/// row `r` as tall as its tallest panel plus the title band. Panels are centred in their cells.
/// Rows may have different lengths; an empty grid gives a small blank image.
pub fn image_grid(cells: &[Vec<(String, RgbImage)>]) -> RgbImage {
    let n_cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    let title_width = |t: &str| -> u32 {
        if t.is_empty() {
            0
        } else {
            text_size(t, GRID_TITLE_PX).map(|(w, _)| w).unwrap_or(0)
        }
    };
    let mut col_w = vec![0u32; n_cols];
    for row in cells {
        for (c, (title, img)) in row.iter().enumerate() {
            col_w[c] = col_w[c].max(img.width()).max(title_width(title));
        }
    }
    let row_h: Vec<u32> = cells
        .iter()
        .map(|row| TITLE_BAND + row.iter().map(|(_, img)| img.height()).max().unwrap_or(0))
        .collect();
    let width = GRID_PADDING + col_w.iter().map(|w| w + GRID_PADDING).sum::<u32>();
    let height = GRID_PADDING + row_h.iter().map(|h| h + GRID_PADDING).sum::<u32>();
    let mut out = RgbImage::from_pixel(width.max(1), height.max(1), BACKGROUND);

    let mut y = GRID_PADDING;
    for (row, &h) in cells.iter().zip(&row_h) {
        let mut x = GRID_PADDING;
        for (c, (title, img)) in row.iter().enumerate() {
            let cw = col_w[c];
            let px = x + (cw - img.width()) / 2;
            imageops::replace(&mut out, img, px as i64, (y + TITLE_BAND) as i64);
            if !title.is_empty() {
                let tx = x + (cw - title_width(title).min(cw)) / 2;
                if let Err(e) = draw_text(
                    &mut out,
                    title,
                    (tx as i32, y as i32 + 2),
                    GRID_TITLE_PX,
                    BLACK,
                ) {
                    tracing::warn!("panel title '{title}' not drawn: {e}");
                }
            }
            x += cw + GRID_PADDING;
        }
        y += h + GRID_PADDING;
    }
    out
}

/// Two panels for a complex image: "`label` magnitude" (grey) and "`label` phase" (cyclic),
/// enlarged by `auto_scale` when small. One such row per engine makes the comparison figure.
pub fn magnitude_phase_row(label: &str, z: &Array2<Complex32>) -> Vec<(String, RgbImage)> {
    let factor = auto_scale(z.nrows(), z.ncols());
    let named = |what: &str| {
        if label.is_empty() {
            what.to_string()
        } else {
            format!("{label} {what}")
        }
    };
    vec![
        (named("magnitude"), upscale(&magnitude_image(z), factor)),
        (named("phase"), upscale(&phase_image(z), factor)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, 0, 255 - v]))
    }

    #[test]
    fn grid_size_and_panel_placement() {
        let cells = vec![
            vec![
                ("a".to_string(), block(100, 50, 10)),
                ("b".to_string(), block(60, 80, 20)),
            ],
            vec![("c".to_string(), block(40, 30, 30))],
        ];
        let g = image_grid(&cells);
        let p = GRID_PADDING;
        assert_eq!(g.width(), p + 100 + p + 60 + p);
        assert_eq!(
            g.height(),
            p + (TITLE_BAND + 80) + p + (TITLE_BAND + 30) + p
        );
        // panel a at its cell's top-left (it is the widest in column 0)
        assert_eq!(g.get_pixel(p, p + TITLE_BAND).0, [10, 0, 245]);
        assert_eq!(g.get_pixel(p + 99, p + TITLE_BAND + 49).0, [10, 0, 245]);
        assert_eq!(g.get_pixel(p + 99, p + TITLE_BAND + 50).0, [255, 255, 255]);
        // panel c centred in column 0 of row 1
        let y1 = p + TITLE_BAND + 80 + p + TITLE_BAND;
        assert_eq!(g.get_pixel(p + 30, y1).0, [30, 0, 225]);
        assert_eq!(g.get_pixel(p + 29, y1).0, [255, 255, 255]);
        // titles draw dark glyph pixels in the title band
        let dark = (p..p + TITLE_BAND)
            .flat_map(|y| (0..g.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| g.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(dark > 5, "title band has {dark} dark pixels");
    }

    #[test]
    fn long_titles_widen_their_column_and_empty_grids_work() {
        let title = "a rather long panel title".to_string();
        let g = image_grid(&[vec![(title.clone(), block(20, 20, 0))]]);
        let (tw, _) = text_size(&title, GRID_TITLE_PX).unwrap();
        assert!(tw > 100);
        assert_eq!(g.width(), 2 * GRID_PADDING + tw);
        let e = image_grid(&[]);
        assert_eq!(e.dimensions(), (GRID_PADDING, GRID_PADDING));
        let e = image_grid(&[vec![], vec![]]);
        assert_eq!(e.width(), GRID_PADDING);
    }

    #[test]
    fn magnitude_phase_rows_make_an_engine_comparison() {
        let z = Array2::from_shape_fn((64, 64), |(r, c)| {
            Complex32::from_polar(0.5 + r as f32 / 128.0, c as f32 / 20.0 - 1.6)
        });
        let rows = vec![
            magnitude_phase_row("gradient", &z),
            magnitude_phase_row("rPIE", &z),
        ];
        assert_eq!(rows[0][0].0, "gradient magnitude");
        assert_eq!(rows[1][1].0, "rPIE phase");
        assert_eq!(rows[0][0].1.dimensions(), (256, 256));
        let g = image_grid(&rows);
        let p = GRID_PADDING;
        assert_eq!(
            g.dimensions(),
            (3 * p + 512, 3 * p + 2 * (TITLE_BAND + 256))
        );
        let bytes = png_bytes(&g).unwrap();
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back.as_raw(), g.as_raw());
    }
}
