//! The dataset argument shared by every command that reads measured data, with the options that
//! fix a file's position conventions and geometry. Commands embed it with
//! `#[command(flatten)] input: InputArgs`.
//!
//! DATASET may be a CXI file, a PtyLab HDF5 file (one with a root `ptychogram`), a raw-input
//! TOML description (`.toml`, see `examples/raw_tiff.toml`) or a multipage TIFF stack (`.tif`,
//! `.tiff`) described by the raw-input flags.

use super::raw_args::RawArgs;
use autopty::io::cxi::{self, CxiInfo, CxiOptions};
use autopty::io::ptylab::{self, PtylabOptions};
use autopty::io::raw::{RawInput, RawReport};
use autopty::{Dataset, Regime};
use std::path::{Path, PathBuf};

/// Propagation regime as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegimeArg {
    /// Fraunhofer (far-field) diffraction.
    Far,
    /// Fresnel (near-field) diffraction.
    Near,
}

impl From<RegimeArg> for Regime {
    fn from(r: RegimeArg) -> Regime {
        match r {
            RegimeArg::Far => Regime::FarField,
            RegimeArg::Near => Regime::NearField,
        }
    }
}

/// A dataset file and how to interpret it.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Dataset: CXI, PtyLab HDF5, raw-input TOML or TIFF stack (with the raw-input flags).
    #[arg(value_name = "DATASET")]
    pub dataset: PathBuf,
    /// Negate the x positions (after converting stage translations to probe positions).
    #[arg(long)]
    pub flip_x: bool,
    /// Negate the y positions.
    #[arg(long)]
    pub flip_y: bool,
    /// Exchange the x and y positions (applied before the flips).
    #[arg(long)]
    pub swap_xy: bool,
    /// Propagation regime, overriding the file.
    #[arg(long, value_enum)]
    pub regime: Option<RegimeArg>,
    /// Focus-to-sample distance z1 in metres for a diverging (point-source) beam; implies
    /// `--regime near` unless a regime is given.
    #[arg(long, value_name = "Z1")]
    pub source_distance: Option<f64>,
    /// Raw TIFF input (positions file, darks, mask, geometry, preprocessing).
    #[command(flatten)]
    pub raw: RawArgs,
}

/// The kinds of dataset file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cxi,
    Ptylab,
    RawToml,
    Tiff,
}

fn kind_of(path: &Path) -> Kind {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "toml" => Kind::RawToml,
        "tif" | "tiff" => Kind::Tiff,
        _ if ptylab::is_ptylab(path) => Kind::Ptylab,
        _ => Kind::Cxi,
    }
}

/// One line about what the raw pipeline did.
pub fn describe_raw(stack: &Path, r: &RawReport) -> String {
    let mut s = format!(
        "TIFF stack {} ({} x {} x {} stored)",
        stack.display(),
        r.stored_shape[0],
        r.stored_shape[1],
        r.stored_shape[2]
    );
    if let Some(mean) = r.dark_mean {
        s += &format!(
            "; {} dark frames subtracted (mean {mean:.2}), {} values clipped at 0",
            r.dark_frames, r.clipped
        );
    }
    if r.noise_floor > 0.0 {
        s += &format!(
            "; noise floor {:.3} counts per pixel (the losses weight pixels by it)",
            r.noise_floor
        );
    }
    if r.hot_pixels + r.dead_pixels > 0 {
        s += &format!(
            "; {} hot and {} dead pixels masked",
            r.hot_pixels, r.dead_pixels
        );
    }
    s += &format!(
        "; cropped {} px around ({:.1}, {:.1}), frames now {} px",
        r.crop, r.centre[0], r.centre[1], r.size
    );
    s
}

impl InputArgs {
    /// The reader options these arguments select.
    pub fn cxi_options(&self) -> CxiOptions {
        let regime = match (self.regime, self.source_distance) {
            (Some(r), _) => Some(r.into()),
            (None, Some(_)) => Some(Regime::NearField),
            (None, None) => None,
        };
        CxiOptions {
            flip_x: self.flip_x,
            flip_y: self.flip_y,
            swap_xy: self.swap_xy,
            regime,
            source_distance: self.source_distance,
        }
    }

    /// Reads and validates the dataset.
    #[allow(dead_code)] // for the commands that reconstruct; `info` also needs the stored type
    pub fn load(&self) -> anyhow::Result<Dataset> {
        Ok(self.load_with_info()?.0)
    }

    /// The raw-input description these arguments give (TOML or TIFF with flags), if any.
    pub fn raw_input(&self) -> anyhow::Result<Option<RawInput>> {
        let mut input = match kind_of(&self.dataset) {
            Kind::RawToml => RawInput::from_file(&self.dataset)?,
            Kind::Tiff => self.raw.for_tiff(self.dataset.clone())?,
            _ => return Ok(None),
        };
        let options = self.cxi_options();
        self.raw.apply(
            &mut input,
            (self.flip_x, self.flip_y, self.swap_xy),
            options.regime,
            self.source_distance,
        )?;
        Ok(Some(input))
    }

    /// Reads the dataset and what the reader learned about the stored data.
    pub fn load_with_info(&self) -> anyhow::Result<(Dataset, CxiInfo)> {
        if let Some(input) = self.raw_input()? {
            let source = match kind_of(&self.dataset) {
                Kind::RawToml => self.dataset.clone(),
                _ => PathBuf::from("command line"),
            };
            let (data, report) = input.load(&source)?;
            let info = CxiInfo {
                data_field: describe_raw(&input.frames, &report),
                data_dtype: report.dtype.to_string(),
                dtype_max: report.dtype_max,
            };
            return Ok((data, info));
        }
        if kind_of(&self.dataset) == Kind::Ptylab {
            let options = self.cxi_options();
            let (data, info) = ptylab::read(
                &self.dataset,
                &PtylabOptions {
                    regime: options.regime,
                    source_distance: self.source_distance,
                },
            )?;
            let data_field = match info.entrance_pupil_diameter {
                Some(d) => format!(
                    "/ptychogram (PtyLab, orientation {}, entrance pupil {:.3} um)",
                    info.orientation,
                    d * 1e6
                ),
                None => format!("/ptychogram (PtyLab, orientation {})", info.orientation),
            };
            return Ok((
                data,
                CxiInfo {
                    data_field,
                    data_dtype: info.dtype,
                    dtype_max: info.dtype_max,
                },
            ));
        }
        Ok(cxi::read_with_info(&self.dataset, &self.cxi_options())?)
    }
}
