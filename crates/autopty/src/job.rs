//! A reconstruction job: every setting of a run, loadable from a TOML file.
//!
//! ```toml
//! engine = "adam"          # adam | sgd | epie | rpie | dm | raar
//! [model]
//! modes = 1
//! [gradient]
//! epochs = 300
//! batch = 5
//! positions = { enabled = true, lr = 0.2, start_epoch = 2 }
//! distance = { enabled = true, lr = 0.002, start_epoch = 5 }
//! [gradient.alignment]
//! rounds = 6
//! [pie]                     # ePIE and rPIE
//! epochs = 200
//! rpie = { alpha = 0.25, beta = 0.5 }
//! [dm]                      # DM and RAAR
//! beta = 1.0
//! ```
//!
//! `examples/reconstruct.toml` lists every setting with its default.

use crate::engines::dm::DmSettings;
use crate::engines::gradient::GradientSettings;
use crate::engines::pie::PieSettings;
use crate::engines::EngineKind;
use crate::error::{Error, Result};
use crate::model::ModelSettings;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Every setting of a reconstruction run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Job {
    /// Engine name.
    pub engine: Option<String>,
    /// Model set-up shared by all engines.
    pub model: ModelSettings,
    /// Gradient engine settings.
    pub gradient: GradientSettings,
    /// ePIE and rPIE settings.
    pub pie: PieSettings,
    /// DM and RAAR settings.
    pub dm: DmSettings,
}

impl Job {
    /// Reads a job from a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Job::from_toml(&text).map_err(|e| match e {
            Error::Invalid { what, problem } => Error::field(path, what, problem),
            other => other,
        })
    }

    /// Parses a job from TOML text.
    pub fn from_toml(text: &str) -> Result<Job> {
        let job: Job =
            toml::from_str(text).map_err(|e| Error::invalid("TOML job", e.to_string()))?;
        job.validate()?;
        Ok(job)
    }

    /// Checks the engine name and every engine's settings.
    pub fn validate(&self) -> Result<()> {
        EngineKind::of(self)?;
        self.gradient.validate()?;
        self.pie.validate()?;
        self.dm.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_and_rejects_unknown_keys() {
        let job =
            Job::from_toml("[gradient]\nepochs = 7\npositions = { lr = 0.5, start_epoch = 3 }\n")
                .unwrap();
        assert_eq!(job.gradient.epochs, 7);
        assert_eq!(job.gradient.positions.lr, 0.5);
        assert_eq!(job.gradient.positions.start_epoch, 3);
        assert!(job.gradient.positions.enabled);
        let err = Job::from_toml("[gradient]\nepochs = 7\nlearning_rate = 1\n").unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        let err = Job::from_toml("[gradient]\nbatch = 0\n").unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
        let job = Job::from_toml("engine = \"rpie\"\n[pie]\nrpie = { alpha = 0.1, beta = 1.0 }\n")
            .unwrap();
        assert_eq!(EngineKind::of(&job).unwrap(), EngineKind::Rpie);
        assert_eq!(job.pie.rpie.alpha, 0.1);
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>().unwrap(), kind);
        }
        let err = Job::from_toml("engine = \"hio\"\n").unwrap_err();
        assert!(err.to_string().contains("hio"), "{err}");
        let err = Job::from_toml("[dm]\nbeta = 1.5\n").unwrap_err();
        assert!(err.to_string().contains("beta"), "{err}");
        let err = Job::from_toml("[pie]\nrpie = { alpha = 0.1 }\n").unwrap_err();
        assert!(err.to_string().contains("beta"), "{err}");
        for section in ["gradient", "pie", "dm"] {
            let err =
                Job::from_toml(&format!("[{section}]\nobject_band_limit = -0.5\n")).unwrap_err();
            assert!(err.to_string().contains("object_band_limit"), "{err}");
        }
    }

    #[test]
    fn the_500_epoch_job_file_reads_and_validates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reconstruct_500.toml");
        let job = Job::from_file(&path).unwrap();
        job.gradient.validate().unwrap();
        assert_eq!(job.gradient.distance_search.frames, 0.25);
        assert!(job.gradient.curvature_gauge.hold_geometry);
    }

    #[test]
    fn the_example_job_file_lists_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reconstruct.toml");
        let job = Job::from_file(&path).unwrap();
        assert_eq!(
            job,
            Job {
                engine: Some("adam".into()),
                ..Job::default()
            }
        );
    }
}
