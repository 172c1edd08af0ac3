//! `autopty maps OUT --delta D --beta B`: thickness maps of the sample from the reconstructed
//! object and its refractive index `n = 1 - delta + i beta` (see `autopty::maps`), written into
//! OUT as `thickness_phase.npy` / `.png` (from the phase, needs delta) and
//! `thickness_magnitude.npy` / `.png` (from the log-magnitude, needs beta), in metres.

use anyhow::{bail, Context};
use autopty::io::npy;
use autopty::maps::{thickness_from_magnitude, thickness_from_phase, Reference};
use autopty::report::colormap::Colormap;
use autopty::report::image::{real_to_rgb, save_png};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// Arguments of `autopty maps`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder of a reconstruction.
    pub out: PathBuf,
    /// Refractive index decrement delta of the sample material (for the phase map).
    #[arg(long)]
    pub delta: Option<f64>,
    /// Absorption index beta of the sample material (for the magnitude map).
    #[arg(long)]
    pub beta: Option<f64>,
    /// A region with no sample, ROW0,ROW1,COL0,COL1 (object px, end exclusive): the object's
    /// mean there is the reference (phase 0, magnitude 1 when not given).
    #[arg(long, value_delimiter = ',', value_name = "R0,R1,C0,C1")]
    pub empty_region: Option<Vec<usize>>,
}

fn save(dir: &Path, name: &str, map: &Array2<f32>) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.npy"));
    npy::write_real2(&path, map).with_context(|| format!("writing {}", path.display()))?;
    let png = dir.join(format!("{name}.png"));
    save_png(&png, &real_to_rgb(map.view(), Colormap::Viridis, None))
        .with_context(|| format!("writing {}", png.display()))?;
    let finite: Vec<f32> = map.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    println!(
        "{name}: {:.1} to {:.1} nm -> {}",
        lo * 1e9,
        hi * 1e9,
        path.display()
    );
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.delta.is_none() && args.beta.is_none() {
        bail!("give --delta (thickness from the phase) and/or --beta (from the magnitude)");
    }
    let rec = autopty::io::outputs::read(&args.out)?;
    let reference = match &args.empty_region {
        Some(r) if r.len() != 4 => bail!("--empty-region takes four numbers: ROW0,ROW1,COL0,COL1"),
        Some(r) => Reference::from_region(&rec.object, [r[0], r[1]], [r[2], r[3]])?,
        None => Reference::default(),
    };
    let lambda = rec.geometry.wavelength;
    if let Some(delta) = args.delta {
        let map = thickness_from_phase(&rec.object, lambda, delta, reference)?;
        save(&args.out, "thickness_phase", &map)?;
    }
    if let Some(beta) = args.beta {
        let map = thickness_from_magnitude(&rec.object, lambda, beta, reference)?;
        save(&args.out, "thickness_magnitude", &map)?;
    }
    Ok(())
}
