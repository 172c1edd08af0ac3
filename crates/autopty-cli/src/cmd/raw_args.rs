//! Command-line flags of the raw beamline input (a TIFF stack with a positions file, darks, a
//! flat field and a mask): they describe the input on their own when DATASET is a `.tif`, and
//! override a `.toml` description field by field. See `autopty::io::raw` for the pipeline.

use autopty::io::positions_file::LengthUnit;
use autopty::io::raw::{self, RawInput};
use autopty::Regime;
use std::path::PathBuf;

/// Flags of the raw input.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RawArgs {
    /// Raw input: text file of the scan positions (CSV or whitespace columns).
    #[arg(long, value_name = "FILE", help_heading = "Raw TIFF input")]
    pub positions: Option<PathBuf>,
    /// Unit of the positions file: m, mm, um or nm (default um).
    #[arg(long, value_name = "UNIT", help_heading = "Raw TIFF input")]
    pub positions_unit: Option<String>,
    /// Column (0-based) of x in the positions file (default 0).
    #[arg(long, help_heading = "Raw TIFF input")]
    pub x_column: Option<usize>,
    /// Column (0-based) of y in the positions file (default 1).
    #[arg(long, help_heading = "Raw TIFF input")]
    pub y_column: Option<usize>,
    /// Multipage TIFF of dark frames (averaged and subtracted).
    #[arg(long, value_name = "TIFF", help_heading = "Raw TIFF input")]
    pub darks: Option<PathBuf>,
    /// Flat-field (detector gain) image.
    #[arg(long, value_name = "TIFF", help_heading = "Raw TIFF input")]
    pub flat: Option<PathBuf>,
    /// Mask image: non-zero = good pixel (see --mask-zero-good).
    #[arg(long, value_name = "TIFF", help_heading = "Raw TIFF input")]
    pub mask: Option<PathBuf>,
    /// The mask image marks good pixels with 0.
    #[arg(long, help_heading = "Raw TIFF input")]
    pub mask_zero_good: bool,
    /// Wavelength (m).
    #[arg(long, help_heading = "Raw TIFF input")]
    pub wavelength: Option<f64>,
    /// Photon energy (eV), instead of the wavelength.
    #[arg(long, value_name = "EV", help_heading = "Raw TIFF input")]
    pub energy: Option<f64>,
    /// Detector pixel pitch (m), before binning.
    #[arg(long, value_name = "M", help_heading = "Raw TIFF input")]
    pub detector_pixel: Option<f64>,
    /// Sample-to-detector distance (m), z2 for a focused beam.
    #[arg(long, value_name = "M", help_heading = "Raw TIFF input")]
    pub distance: Option<f64>,
    /// Detect and mask hot and dead pixels.
    #[arg(long, help_heading = "Raw TIFF input")]
    pub hot_pixels: bool,
    /// Crop centre ROW,COL (px); default: the centre of mass of the mean frame.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ROW,COL",
        help_heading = "Raw TIFF input"
    )]
    pub centre: Option<Vec<f64>>,
    /// Side (px) of the square crop around the centre.
    #[arg(long, help_heading = "Raw TIFF input")]
    pub crop: Option<usize>,
    /// Integer binning factor.
    #[arg(long, help_heading = "Raw TIFF input")]
    pub bin: Option<usize>,
    /// Final frame side (px) after resampling (e.g. 256).
    #[arg(long, help_heading = "Raw TIFF input")]
    pub size: Option<usize>,
    /// Variance of the detector noise per stored pixel after dark subtraction (counts);
    /// default: measured from the dark frames.
    #[arg(long, value_name = "COUNTS", help_heading = "Raw TIFF input")]
    pub noise_floor: Option<f64>,
}

impl RawArgs {
    /// Puts the given flags over `input`; `flip_x`, `flip_y`, `swap_xy`, the regime and the
    /// source distance come from the shared input flags.
    pub fn apply(
        &self,
        input: &mut RawInput,
        flips: (bool, bool, bool),
        regime: Option<Regime>,
        source_distance: Option<f64>,
    ) -> anyhow::Result<()> {
        if let Some(p) = &self.positions {
            input.positions.file = p.clone();
        }
        if let Some(u) = &self.positions_unit {
            input.positions.unit = u.parse::<LengthUnit>()?;
        }
        if let Some(c) = self.x_column {
            input.positions.x_column = c;
        }
        if let Some(c) = self.y_column {
            input.positions.y_column = c;
        }
        let (flip_x, flip_y, swap_xy) = flips;
        input.positions.flip_x |= flip_x;
        input.positions.flip_y |= flip_y;
        if swap_xy {
            let p = &mut input.positions;
            std::mem::swap(&mut p.x_column, &mut p.y_column);
        }
        for (flag, field) in [
            (&self.darks, &mut input.darks),
            (&self.flat, &mut input.flat),
            (&self.mask, &mut input.mask),
        ] {
            if let Some(p) = flag {
                *field = Some(p.clone());
            }
        }
        input.mask_zero_is_good |= self.mask_zero_good;
        let g = &mut input.geometry;
        if self.wavelength.is_some() || self.energy.is_some() {
            g.wavelength = self.wavelength;
            g.energy_ev = self.energy;
        }
        if let Some(v) = self.detector_pixel {
            g.detector_pixel = v;
        }
        if let Some(v) = self.distance {
            g.distance = v;
        }
        if regime.is_some() {
            g.regime = regime;
        }
        if source_distance.is_some() {
            g.source_distance = source_distance;
        }
        let p = &mut input.preprocess;
        p.hot_pixels |= self.hot_pixels;
        if let Some(c) = &self.centre {
            if c.len() != 2 {
                anyhow::bail!("--centre takes two numbers: ROW,COL (px)");
            }
            p.centre = Some([c[0], c[1]]);
        }
        if let Some(v) = self.crop {
            p.crop = Some(v);
        }
        if let Some(v) = self.bin {
            p.bin = v;
        }
        if let Some(v) = self.size {
            p.size = Some(v);
        }
        if let Some(v) = self.noise_floor {
            p.noise_floor = Some(v);
        }
        Ok(())
    }

    /// A raw input for a TIFF stack given on the command line.
    pub fn for_tiff(&self, frames: PathBuf) -> anyhow::Result<RawInput> {
        let Some(positions) = self.positions.clone() else {
            anyhow::bail!(
                "{}: a TIFF stack needs --positions FILE (and the geometry: --wavelength or \
                 --energy, --detector-pixel, --distance)",
                frames.display()
            );
        };
        Ok(raw::from_paths(frames, positions))
    }
}
