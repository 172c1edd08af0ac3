//! `autopty simulate`: writes a simulated dataset (CXI) and its ground truth (`*.truth.h5`).

use anyhow::{bail, Context};
use autopty::sim::{self, SimConfig, PAPER_DISTANCES};
use std::path::{Path, PathBuf};

/// Arguments of `autopty simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Preset to start from: paper, small, paper_small, farfield, focused or focused_small.
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// TOML settings merged over the preset (see examples/simulate_paper.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// True sample-to-detector distance (m). Without it, `--preset paper -o DIR/` writes the
    /// five published distances (0.065, 0.1, 0.13, 0.165, 0.2 m).
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub distance: Option<f64>,
    /// Number of mutually incoherent probe modes (default power fractions).
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub modes: Option<usize>,
    /// Mean photon count per pattern.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub photons: Option<f64>,
    /// Exact expected counts instead of Poisson noise.
    #[arg(long)]
    pub no_noise: bool,
    /// Standard deviation (px) of the errors in the stored positions.
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub position_jitter: Option<f64>,
    /// Relative error of the stored distance (0.3: stored = 1.3 x true).
    #[arg(long, value_name = "REL", allow_negative_numbers = true)]
    pub distance_error: Option<f64>,
    /// Random seed.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Also write the raw beamline form next to each CXI file (16-bit TIFF stack with Poisson
    /// dark counts of this mean added, 10 dark frames, positions CSV in um, and a raw-input
    /// TOML that `autopty reconstruct NAME.toml` reads).
    #[arg(long, value_name = "COUNTS")]
    pub raw_dark: Option<f64>,
    /// Output CXI file, or a folder (ending in '/' or existing) for `NAME_zDIST.cxi` files. The
    /// truth goes next to each file as `NAME.truth.h5`.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let jobs = plan(&args)?;
    if let Some(dir) = jobs.first().and_then(|(p, _)| p.parent()) {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
    }
    for (path, cfg) in &jobs {
        eprintln!(
            "simulating '{}' at z = {} m into {} ...",
            cfg.name,
            cfg.geometry.distance,
            path.display()
        );
        let started = std::time::Instant::now();
        let (data, truth) = sim::simulate(cfg)?;
        let truth_path = truth_path(path);
        autopty::io::cxi::write(path, &data)?;
        autopty::io::truth::write(&truth_path, &truth)?;
        if let Some(level) = args.raw_dark {
            let toml = autopty::io::raw_writer::write_raw(
                &path.with_extension(""),
                &data,
                level,
                10,
                cfg.seed,
            )?;
            println!("raw TIFF form described by {}", toml.display());
        }
        println!(
            "{}: {} patterns of {}x{} px, {}, true z = {} m (stored {} m), {:.3e} photons/pattern{}, \
             position errors {} px; truth in {} ({:.2} s)",
            path.display(),
            data.len(),
            data.frame(),
            data.frame(),
            truth.geometry.regime,
            truth.geometry.distance,
            data.geometry.distance,
            data.mean_photons(),
            if cfg.noise.poisson { " (Poisson)" } else { " (noise-free)" },
            cfg.corruption.position_jitter,
            truth_path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The truth file next to a dataset: `data.cxi` -> `data.truth.h5`.
pub fn truth_path(data: &Path) -> PathBuf {
    data.with_extension("truth.h5")
}

/// The output files and the settings of each.
pub fn plan(args: &Args) -> anyhow::Result<Vec<(PathBuf, SimConfig)>> {
    let base = sim::preset(&args.preset)?;
    let mut cfg = match &args.config {
        Some(path) => SimConfig::load(path, &base)?,
        None => base,
    };
    if let Some(m) = args.modes {
        cfg.probe.modes = m;
        cfg.probe.power_fractions.clear();
    }
    if let Some(p) = args.photons {
        cfg.noise.photons = p;
    }
    if args.no_noise {
        cfg.noise.poisson = false;
    }
    if let Some(s) = args.position_jitter {
        cfg.corruption.position_jitter = s;
    }
    if let Some(e) = args.distance_error {
        cfg.corruption.distance_error = e;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(d) = args.distance {
        cfg.geometry.distance = d;
    }
    cfg.validate()?;

    let out = &args.output;
    let is_dir = out
        .as_os_str()
        .to_string_lossy()
        .ends_with(std::path::MAIN_SEPARATOR)
        || out.as_os_str().to_string_lossy().ends_with('/')
        || out.is_dir();
    if !is_dir {
        if out.extension().is_none() {
            bail!(
                "output {} has no extension: give a file like data.cxi or a folder ending in '/'",
                out.display()
            );
        }
        return Ok(vec![(out.clone(), cfg)]);
    }
    let sweep = args.preset == "paper" && args.distance.is_none() && args.config.is_none();
    let distances = if sweep {
        PAPER_DISTANCES.to_vec()
    } else {
        vec![cfg.geometry.distance]
    };
    Ok(distances
        .into_iter()
        .map(|d| {
            let mut c = cfg.clone();
            c.geometry.distance = d;
            (out.join(format!("{}_z{}.cxi", c.name, d)), c)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &str) -> Args {
        Cli::try_parse_from(std::iter::once("simulate").chain(line.split_whitespace()))
            .unwrap()
            .args
    }

    #[test]
    fn paper_into_a_folder_writes_the_five_distances() {
        let jobs = plan(&parse("--preset paper -o out/")).unwrap();
        let names: Vec<String> = jobs
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "paper_z0.065.cxi",
                "paper_z0.1.cxi",
                "paper_z0.13.cxi",
                "paper_z0.165.cxi",
                "paper_z0.2.cxi"
            ]
        );
        assert_eq!(jobs[4].1.geometry.distance, 0.2);
        assert_eq!(
            truth_path(&jobs[1].0),
            PathBuf::from("out/paper_z0.1.truth.h5")
        );
    }

    #[test]
    fn options_override_the_preset() {
        let line = "--preset small --distance 0.13 --modes 3 --photons 1e6 --no-noise \
                    --position-jitter 4 --distance-error 0.1 --seed 9 -o d.cxi";
        let jobs = plan(&parse(line)).unwrap();
        assert_eq!(jobs.len(), 1);
        let (path, c) = &jobs[0];
        assert_eq!(path, &PathBuf::from("d.cxi"));
        assert_eq!(truth_path(path), PathBuf::from("d.truth.h5"));
        assert_eq!(c.geometry.frame, 64);
        assert_eq!(c.geometry.distance, 0.13);
        assert_eq!(c.probe.fractions(), vec![0.8, 0.15, 0.05]);
        assert_eq!(c.noise.photons, 1e6);
        assert!(!c.noise.poisson);
        assert_eq!(c.corruption.position_jitter, 4.0);
        assert_eq!(c.corruption.distance_error, 0.1);
        assert_eq!(c.seed, 9);
        // A single distance into a folder.
        let jobs = plan(&parse("--preset paper --distance 0.2 -o out/")).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].0, PathBuf::from("out/paper_z0.2.cxi"));
    }

    #[test]
    fn bad_options_are_reported() {
        let e = plan(&parse("--preset paper --distance -0.1 -o d.cxi")).unwrap_err();
        assert!(e.to_string().contains("geometry.distance"), "{e}");
        let e = plan(&parse("--preset nope -o d.cxi")).unwrap_err();
        assert!(e.to_string().contains("unknown preset"), "{e}");
        let e = plan(&parse("--preset small -o data")).unwrap_err();
        assert!(e.to_string().contains("no extension"), "{e}");
    }
}
