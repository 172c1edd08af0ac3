//! The plotters drawing backend used by every plot: plotters' in-memory RGB bitmap, except
//! that text is measured and drawn by `super::font` (correct letter spacing with the embedded
//! font) instead of plotters' own ab_glyph path.

use super::font::{ensure_font, rasterize_text, text_size};
use crate::error::{Error, Result};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// An RGB bitmap backend with our text rendering.
pub struct Canvas<'a> {
    inner: BitMapBackend<'a>,
}

type Failure<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

fn font_failure<'a>(e: Error) -> Failure<'a> {
    DrawingErrorKind::FontError(Box::new(std::io::Error::other(e.to_string())))
}

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> std::result::Result<(), Failure<'a>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> std::result::Result<(), Failure<'a>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> std::result::Result<(), Failure<'a>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> std::result::Result<(u32, u32), Failure<'a>> {
        text_size(text, style.size()).map_err(font_failure)
    }

    /// Draws `text` anchored at `pos` as plotters asks (left/centre/right, top/centre/bottom,
    /// rotated by multiples of 90 degrees), blending each pixel by glyph coverage.
    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> std::result::Result<(), Failure<'a>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let (w, h) = text_size(text, style.size()).map_err(font_failure)?;
        let (w, h) = (w as i32, h as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let transform = style.transform();
        let (width, height) = self.get_size();
        let mut result = Ok(());
        rasterize_text(text, style.size(), |x, y, coverage| {
            if result.is_err() {
                return;
            }
            let (tx, ty) = transform.transform(x + dx, y + dy);
            let (px, py) = (pos.0 + tx, pos.1 + ty);
            if px >= 0 && py >= 0 && px < width as i32 && py < height as i32 {
                let c = BackendColor {
                    alpha: color.alpha * coverage as f64,
                    rgb: color.rgb,
                };
                result = self.inner.draw_pixel((px, py), c);
            }
        })
        .map_err(font_failure)?;
        result
    }
}

/// Draws with `paint` on a white `width` x `height` canvas and returns the image. `what`
/// names the figure in errors.
pub fn paint_image<F>(what: &str, width: u32, height: u32, paint: F) -> Result<RgbImage>
where
    F: FnOnce(&DrawingArea<Canvas<'_>, Shift>) -> Result<()>,
{
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let inner = <BitMapBackend>::with_buffer_and_format(&mut buf, (width, height))
            .map_err(|e| Error::invalid(what, e.to_string()))?;
        let root = Canvas { inner }.into_drawing_area();
        paint(&root)?;
        root.present()
            .map_err(|e| Error::invalid(what, e.to_string()))?;
    }
    RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| Error::invalid(what, "image buffer has the wrong size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::font::text_style;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    fn dark_box(img: &RgbImage) -> Option<(u32, u32, u32, u32)> {
        let dark: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] < 128)
            .map(|(x, y, _)| (x, y))
            .collect();
        let x0 = dark.iter().map(|p| p.0).min()?;
        let x1 = dark.iter().map(|p| p.0).max()?;
        let y0 = dark.iter().map(|p| p.1).min()?;
        let y1 = dark.iter().map(|p| p.1).max()?;
        Some((x0, x1, y0, y1))
    }

    #[test]
    fn centred_and_rotated_text_lands_around_the_anchor() {
        let img = paint_image("test", 300, 300, |root| {
            let style = text_style(24.0, BLACK).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw_text("centre", &style, (150, 150))
                .map_err(|e| Error::invalid("t", e.to_string()))
        })
        .unwrap();
        let (x0, x1, y0, y1) = dark_box(&img).unwrap();
        let (cx, cy) = ((x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0);
        assert!((cx - 150.0).abs() <= 3.0, "centre x {cx}");
        assert!((cy - 150.0).abs() <= 5.0, "centre y {cy}");
        assert!(x1 - x0 > 60 && y1 - y0 < 25);

        let img = paint_image("test", 300, 300, |root| {
            let style = text_style(24.0, BLACK)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw_text("vertical", &style, (150, 150))
                .map_err(|e| Error::invalid("t", e.to_string()))
        })
        .unwrap();
        let (x0, x1, y0, y1) = dark_box(&img).unwrap();
        assert!(
            y1 - y0 > 60 && x1 - x0 < 25,
            "rotated box {x0}..{x1} x {y0}..{y1}"
        );
    }
}
