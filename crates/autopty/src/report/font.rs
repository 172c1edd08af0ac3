//! The one font used for every label and title: DejaVu Sans, embedded in the binary so that
//! plots look the same on every machine and no system font is ever looked up.
//!
//! Text is laid out here with `ab_glyph` (advance widths, kerning and each glyph's side
//! bearing), because plotters 0.3.7's own ab_glyph renderer drops the left side bearing and
//! spaces letters unevenly. A text box is `ascent - descent` tall with the baseline at
//! `ascent` below its top; `size_px` is that height in pixels.

use crate::error::{Error, Result};
use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use image::RgbImage;
use plotters::style::{FontStyle, RGBColor};
use std::sync::OnceLock;

/// DejaVu Sans (see `assets/fonts/DejaVu-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

/// The family name under which the embedded font is registered with plotters.
pub const FONT_FAMILY: &str = "sans-serif";

/// The parsed embedded font.
fn font() -> Result<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).ok())
        .as_ref()
        .ok_or_else(|| Error::invalid("embedded font", "DejaVuSans.ttf could not be parsed"))
}

/// Registers the embedded font with plotters (once per process), which measures legend text
/// with it. Every drawing function of this module calls it; calling it again is free.
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // Bold and italic requests fall back to the normal style of the family.
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    font()?;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "embedded font",
            "DejaVuSans.ttf could not be registered with plotters",
        ))
    }
}

/// A plotters text style in the embedded font at `size_px` pixels, in `color`.
pub fn text_style(size_px: f64, color: RGBColor) -> plotters::style::TextStyle<'static> {
    use plotters::style::{Color, IntoFont, TextStyle};
    let mut style = TextStyle::from((FONT_FAMILY, size_px).into_font());
    style.color = color.to_backend_color();
    style
}

/// Glyphs of one line of text placed along the pen: `(glyph, pen x)` in pixels.
struct Line {
    glyphs: Vec<(GlyphId, f32)>,
    width: f32,
    ascent: f32,
    height: f32,
    scale: PxScale,
}

fn layout(text: &str, size_px: f64) -> Result<Line> {
    let font = font()?;
    let scale = PxScale::from(size_px.max(0.0) as f32);
    let scaled = font.as_scaled(scale);
    let mut pen = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok(Line {
        glyphs,
        width: pen,
        ascent: scaled.ascent(),
        height: scaled.ascent() - scaled.descent(),
        scale,
    })
}

/// Width and height in pixels of the box of `text` drawn at `size_px`.
pub fn text_size(text: &str, size_px: f64) -> Result<(u32, u32)> {
    let line = layout(text, size_px)?;
    Ok((line.width.ceil() as u32, line.height.ceil() as u32))
}

/// Calls `pixel(x, y, coverage)` for every pixel covered by the glyphs of `text` at
/// `size_px`, with (x, y) relative to the top-left corner of the text box and coverage in
/// (0, 1].
pub fn rasterize_text(
    text: &str,
    size_px: f64,
    mut pixel: impl FnMut(i32, i32, f32),
) -> Result<()> {
    let line = layout(text, size_px)?;
    let font = font()?;
    for &(id, x) in &line.glyphs {
        let glyph = id.with_scale_and_position(line.scale, point(x, line.ascent));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let b = outlined.px_bounds();
            let (x0, y0) = (b.min.x as i32, b.min.y as i32);
            outlined.draw(|gx, gy, c| {
                if c > 0.0 {
                    pixel(x0 + gx as i32, y0 + gy as i32, c.min(1.0));
                }
            });
        }
    }
    Ok(())
}

/// Draws `text` into `img` with the top-left corner of its box at pixel `(x, y)` (x = column,
/// y = row), blending by glyph coverage. Glyphs falling outside the image are clipped.
pub fn draw_text(
    img: &mut RgbImage,
    text: &str,
    (x, y): (i32, i32),
    size_px: f64,
    color: RGBColor,
) -> Result<()> {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let RGBColor(r, g, b) = color;
    rasterize_text(text, size_px, |gx, gy, c| {
        let (px, py) = (x + gx, y + gy);
        if px >= 0 && py >= 0 && px < w && py < h {
            let p = img.get_pixel_mut(px as u32, py as u32);
            for (channel, target) in p.0.iter_mut().zip([r, g, b]) {
                let v = *channel as f32 + c * (target as f32 - *channel as f32);
                *channel = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::style::BLACK;

    fn dark_columns(img: &RgbImage, y0: u32, y1: u32) -> Vec<bool> {
        (0..img.width())
            .map(|x| (y0..y1).any(|y| img.get_pixel(x, y).0[0] < 160))
            .collect()
    }

    #[test]
    fn embedded_font_draws_glyphs_inside_the_text_box() {
        let mut img = RgbImage::from_pixel(200, 60, image::Rgb([255, 255, 255]));
        draw_text(&mut img, "Phase (rad)", (10, 10), 20.0, BLACK).unwrap();
        let (tw, th) = text_size("Phase (rad)", 20.0).unwrap();
        assert!(tw > 80 && tw < 140, "text width {tw}");
        assert_eq!(th, 20);
        let mut dark_inside = 0;
        let mut dark_outside = 0;
        for (x, y, p) in img.enumerate_pixels() {
            if p.0[0] < 128 {
                let inside = x >= 10 && x < 11 + tw && y >= 10 && y < 11 + th;
                if inside {
                    dark_inside += 1;
                } else {
                    dark_outside += 1;
                }
            }
        }
        assert!(dark_inside > 100, "only {dark_inside} dark glyph pixels");
        assert_eq!(dark_outside, 0);
    }

    #[test]
    fn letters_keep_their_side_bearings() {
        // "ll": two identical glyphs; the gap between them must equal the gap the advance
        // leaves, i.e. the ink of the second starts one advance after the first.
        let mut img = RgbImage::from_pixel(120, 50, image::Rgb([255, 255, 255]));
        draw_text(&mut img, "l l", (20, 5), 32.0, BLACK).unwrap();
        let cols = dark_columns(&img, 0, 50);
        let starts: Vec<usize> = (1..cols.len())
            .filter(|&x| cols[x] && !cols[x - 1])
            .collect();
        assert_eq!(starts.len(), 2, "{starts:?}");
        let (one, _) = text_size("l ", 32.0).unwrap();
        let gap = (starts[1] - starts[0]) as i32;
        assert!(
            (gap - one as i32).abs() <= 1,
            "ink gap {gap}, advance {one}"
        );
        // The first ink starts one left side bearing (about 3 px at 32 px) after the pen.
        assert!(
            starts[0] >= 21 && starts[0] <= 25,
            "first ink at {}",
            starts[0]
        );
    }

    #[test]
    fn text_outside_the_image_is_clipped_without_error() {
        let mut img = RgbImage::from_pixel(20, 10, image::Rgb([255, 255, 255]));
        draw_text(&mut img, "far away", (500, 500), 12.0, BLACK).unwrap();
        draw_text(&mut img, "edge", (-5, -5), 12.0, BLACK).unwrap();
        let mut empty = RgbImage::new(0, 0);
        draw_text(&mut empty, "x", (0, 0), 12.0, BLACK).unwrap();
        assert_eq!(text_size("", 12.0).unwrap().0, 0);
    }
}
