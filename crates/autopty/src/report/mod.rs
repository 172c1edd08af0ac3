//! Images and plots of results: colour maps, arrays to PNG images, line plots, scan-position
//! plots and titled image grids. All text is drawn with the embedded DejaVu Sans font (no
//! system fonts); all files are written atomically.

pub mod canvas;
pub mod colormap;
pub mod figure;
pub mod font;
pub mod html;
pub mod image;
pub mod plot;
pub mod positions;

pub use self::colormap::Colormap;
pub use self::figure::{image_grid, magnitude_phase_row};
pub use self::image::{
    png_bytes, real_to_rgb, save_complex_png, save_magnitude_png, save_phase_png, save_png,
};
pub use self::plot::{line_plot_png, render_line_plot, save_line_plot, LinePlot, Series};
pub use self::positions::{render_position_plot, save_position_plot};
