//! The dataset argument shared by every command that reads measured data, with the options that
//! fix a file's position conventions and geometry. Commands embed it with
//! `#[command(flatten)] input: InputArgs`.

use autopty::io::cxi::{self, CxiInfo, CxiOptions};
use autopty::{Dataset, Regime};
use std::path::PathBuf;

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
    /// Dataset file (CXI / HDF5).
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

    /// Reads the dataset and what the reader learned about the stored data.
    pub fn load_with_info(&self) -> anyhow::Result<(Dataset, CxiInfo)> {
        Ok(cxi::read_with_info(&self.dataset, &self.cxi_options())?)
    }
}
