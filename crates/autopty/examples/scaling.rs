//! How the gradient engine's epoch time and peak memory scale with the number of positions J,
//! the frame side N and the number of probe modes M.
//!
//! Usage: `cargo run --release --example scaling -- [--epochs K] [--only J,N,M]...
//! [--markdown PATH]`
//!
//! Without `--only` it runs the sweep of the scaling check, one factor at a time around the base
//! J = 121, N = 128, M = 1: J in {121, 484, 1936}, N in {64, 128, 256, 512}, M in {1, 3}, and the
//! memory row J = 2000 (a 40 x 50 scan), N = 256, M = 1. `--only` (repeatable) runs the given
//! configurations instead. `--epochs` sets the number K of timed epochs of every row; without
//! it each row gets K from its predicted cost (see [`default_epochs`]). The table goes to
//! stdout and, with `--markdown`, to PATH (written to PATH.tmp, then renamed).
//!
//! Each configuration runs in a fresh child process (this program started again with `--child`),
//! because the peak resident memory of a process never falls:
//! 1. the dataset is simulated in memory from the `paper` preset (near field, 1 nm, 1 um
//!    pixels, true distance 0.1 m, stored 0.13 m; 70 % overlap, so the raster step is 0.3 N;
//!    the probe aperture scales with N) with N x N frames, a rows x cols raster of J positions
//!    and M probe modes; the ground truth is dropped;
//! 2. the kernel's peak-RSS mark is reset (`/proc/self/clear_refs`), so the reported peak is
//!    that of the reconstruction with the measured data in memory, not of the simulator;
//! 3. the default starting model (M modes) and the gradient engine with its default settings
//!    run `1 + K` epochs with every group (object, probe, positions, distance) refined from
//!    epoch 1; the time from the end of epoch 1 to the end of the last is divided by K (setup
//!    and the first touch of memory are not counted);
//! 4. `VmHWM` of `/proc/self/status` is read.
//!
//! The FFT cost model of one epoch is `J M N P log2 P`: per position and mode the near-field
//! forward and adjoint each run 4 N transforms of length P (the separable path that this
//! paraxial geometry takes, see `autopty::propagate`), which dominate the N x N transforms of
//! the sub-pixel moves.

use autopty::engines::gradient::run_from;
use autopty::engines::Control;
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::propagate::Propagator;
use autopty::sim::SimConfig;
#[path = "../benches/common/mod.rs"]
mod common;

use common::{gradient_settings, steady_epochs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// One configuration: positions J, frame side N (px), probe modes M.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Config {
    j: usize,
    n: usize,
    m: usize,
}

/// The base of the sweep; the relative columns are normalised to the first row.
const BASE: Config = Config {
    j: 121,
    n: 128,
    m: 1,
};

/// A configuration of the sweep with the factor it varies.
struct Planned {
    sweep: &'static str,
    config: Config,
}

/// What a child process measured for one configuration.
struct Measured {
    /// Padded near-field FFT size P.
    padded: usize,
    /// Timed (steady-state) epochs K.
    epochs: usize,
    /// Seconds per steady-state epoch.
    seconds_per_epoch: f64,
    /// Peak resident memory of the reconstruction (bytes), after the simulator's peak was reset.
    peak: u64,
    /// Peak resident memory of the whole child process, simulator included (bytes).
    peak_with_simulation: u64,
    /// Object array size (bytes of complex f32).
    object_bytes: u64,
    /// Seconds the simulation took (not in the table).
    simulation_seconds: f64,
}

/// Command-line options.
struct Args {
    epochs: Option<usize>,
    only: Vec<Config>,
    markdown: Option<PathBuf>,
    child: bool,
}

const USAGE: &str =
    "usage: scaling [--epochs K] [--only J,N,M]... [--markdown PATH]   (see the source's docs)";

fn parse_config(text: &str) -> Result<Config, String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--only expects J,N,M (three positive integers), got '{text}'"))?;
    match parts[..] {
        [j, n, m] if j > 0 && n >= 4 && m > 0 => Ok(Config { j, n, m }),
        _ => Err(format!(
            "--only expects J,N,M with J >= 1, N >= 4, M >= 1, got '{text}'"
        )),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: None,
        only: Vec::new(),
        markdown: None,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--epochs" => {
                let v = value()?;
                let k = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&k| k > 0)
                    .ok_or(format!("--epochs expects a positive integer, got '{v}'"))?;
                args.epochs = Some(k);
            }
            "--only" => args.only.push(parse_config(&value()?)?),
            "--markdown" => args.markdown = Some(PathBuf::from(value()?)),
            "--child" => args.child = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The sweep: one factor at a time around [`BASE`], then the memory row.
fn sweep() -> Vec<Planned> {
    let row = |sweep, j, n, m| Planned {
        sweep,
        config: Config { j, n, m },
    };
    vec![
        row("base", BASE.j, BASE.n, BASE.m),
        row("J", 484, 128, 1),
        row("J", 1936, 128, 1),
        row("N", 121, 64, 1),
        row("N", 121, 256, 1),
        row("N", 121, 512, 1),
        row("M", 121, 128, 3),
        row("memory", 2000, 256, 1),
    ]
}

/// Raster of J positions: the factor pair rows x cols (rows <= cols) closest to square.
fn raster(j: usize) -> (usize, usize) {
    let rows = (1..=j.isqrt())
        .rev()
        .find(|&r| j.is_multiple_of(r))
        .unwrap_or(1);
    (rows, j / rows)
}

/// The simulation settings of a configuration (see the module docs).
fn sim_config(c: Config) -> Result<SimConfig, String> {
    let mut s = autopty::sim::preset("paper").map_err(|e| e.to_string())?;
    let scale = c.n as f64 / s.geometry.frame as f64;
    let (rows, cols) = raster(c.j);
    s.name = format!("scaling_j{}_n{}_m{}", c.j, c.n, c.m);
    s.geometry.frame = c.n;
    s.probe.aperture_radius *= scale;
    s.probe.aperture_edge *= scale;
    s.probe.modes = c.m;
    s.scan.rows = rows;
    s.scan.cols = cols;
    s.scan.points = c.j;
    Ok(s)
}

/// Predicted FFT cost of one epoch, `J M N P log2 P` (see the module docs).
fn fft_cost(c: Config, padded: usize) -> f64 {
    let p = padded as f64;
    (c.j * c.m * c.n) as f64 * p * p.log2()
}

/// The reconstruction's padded size for a configuration, from the stored (starting) distance.
fn predicted_padded(c: Config) -> Result<usize, String> {
    let s = sim_config(c)?;
    let g = &s.geometry;
    let stored = g.distance * (1.0 + s.corruption.distance_error);
    Ok(autopty::propagate::near_field_padded_size(
        c.n,
        g.wavelength,
        stored,
        g.detector_pixel,
    ))
}

/// Timed epochs K when not given: about 40 base epochs' worth of FFT cost per row, 2 to 20
/// (a base epoch took 0.3 s on 2 busy cores, so the sweep takes about 4 minutes of epochs
/// plus about 2 of simulation).
fn default_epochs(c: Config) -> Result<usize, String> {
    let relative = fft_cost(c, predicted_padded(c)?) / fft_cost(BASE, predicted_padded(BASE)?);
    Ok(((40.0 / relative).round() as usize).clamp(2, 20))
}

/// A field of `/proc/self/status` given in kB (`VmHWM:`, `VmRSS:`), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak-RSS mark to the current RSS (Linux >= 4.0); false when not allowed.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Child process: simulates, reconstructs `1 + k` epochs and measures (see the module docs).
fn measure(c: Config, k: usize) -> Result<Measured, String> {
    let started = Instant::now();
    let (data, truth) = autopty::sim::simulate(&sim_config(c)?).map_err(|e| e.to_string())?;
    drop(truth);
    let simulation_seconds = started.elapsed().as_secs_f64();
    let peak_simulation = status_bytes("VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
    if !reset_peak() {
        return Err("cannot reset the peak RSS (/proc/self/clear_refs)".into());
    }

    let model_settings = ModelSettings {
        modes: c.m,
        ..ModelSettings::default()
    };
    let (model, propagator) = Model::initial(&data, &model_settings).map_err(|e| e.to_string())?;
    let padded = match &propagator {
        Propagator::Near(p) => p.padded(),
        Propagator::Far(_) => return Err("the scaling runs are near field".into()),
    };
    let object_bytes = (model.object.len() * std::mem::size_of::<num_complex::Complex32>()) as u64;
    let settings = gradient_settings(1 + k);
    let objective = Objective::new(
        &data,
        propagator,
        settings.loss,
        model_settings.subpixel,
        model_settings.modes,
        settings.batch,
    );
    let mut outcome = Ok(());
    let elapsed = steady_epochs(k, |_, on_epoch| {
        let control = Control {
            on_epoch,
            stop: None,
        };
        outcome = run_from(&data, model, objective, &settings, control).map(drop);
    });
    outcome.map_err(|e| e.to_string())?;
    let elapsed = elapsed?;
    let peak = status_bytes("VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
    Ok(Measured {
        padded,
        epochs: k,
        seconds_per_epoch: elapsed.as_secs_f64() / k as f64,
        peak,
        peak_with_simulation: peak.max(peak_simulation),
        object_bytes,
        simulation_seconds,
    })
}

/// The one line a child prints for its parent.
fn row_line(m: &Measured) -> String {
    format!(
        "ROW {} {} {} {} {} {} {}",
        m.padded,
        m.epochs,
        m.seconds_per_epoch,
        m.peak,
        m.peak_with_simulation,
        m.object_bytes,
        m.simulation_seconds,
    )
}

fn parse_row_line(text: &str) -> Option<Measured> {
    let line = text.lines().find(|l| l.starts_with("ROW "))?;
    let f: Vec<&str> = line.split_whitespace().skip(1).collect();
    if f.len() != 7 {
        return None;
    }
    Some(Measured {
        padded: f[0].parse().ok()?,
        epochs: f[1].parse().ok()?,
        seconds_per_epoch: f[2].parse().ok()?,
        peak: f[3].parse().ok()?,
        peak_with_simulation: f[4].parse().ok()?,
        object_bytes: f[5].parse().ok()?,
        simulation_seconds: f[6].parse().ok()?,
    })
}

/// Runs one configuration in a fresh copy of this program.
fn run_child(c: Config, k: usize) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let out = Command::new(exe)
        .args(["--child", "--epochs", &k.to_string(), "--only"])
        .arg(format!("{},{},{}", c.j, c.n, c.m))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("child failed ({})", out.status));
    }
    parse_row_line(&stdout).ok_or(format!("child printed no result: {}", stdout.trim()))
}

const MIB: f64 = 1024.0 * 1024.0;

/// Markdown table of the rows; the relative columns are normalised to the first measured row.
fn table(rows: &[(Planned, Result<Measured, String>)], threads: usize) -> String {
    let mut s = format!(
        "Gradient engine, steady-state epochs (every group refined), {threads} rayon threads.\n\n\
         | sweep | J | N | M | P | K | s / epoch | time rel. | FFT cost rel. | peak RSS (MiB) \
         | data (MiB) | peak / data | object (MiB) | peak incl. simulation (MiB) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let reference = rows.iter().find_map(|(p, r)| {
        r.as_ref()
            .ok()
            .map(|m| (m.seconds_per_epoch, fft_cost(p.config, m.padded)))
    });
    for (plan, result) in rows {
        let c = plan.config;
        let data = (c.j * c.n * c.n * 4) as f64;
        let head = format!("| {} | {} | {} | {} ", plan.sweep, c.j, c.n, c.m);
        s.push_str(&head);
        match (result, reference) {
            (Ok(m), Some((t0, cost0))) => s.push_str(&format!(
                "| {} | {} | {:.3} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} |\n",
                m.padded,
                m.epochs,
                m.seconds_per_epoch,
                m.seconds_per_epoch / t0,
                fft_cost(c, m.padded) / cost0,
                m.peak as f64 / MIB,
                data / MIB,
                m.peak as f64 / data,
                m.object_bytes as f64 / MIB,
                m.peak_with_simulation as f64 / MIB,
            )),
            (Err(e), _) => s.push_str(&format!(
                "| failed: {} | | | | | | | | | |\n",
                e.replace('|', "/")
            )),
            (Ok(_), None) => unreachable!("a measured row gives the reference"),
        }
    }
    s
}

/// Writes `text` to `path` through `path.tmp`, so no partial file is left under `path`.
fn write_markdown(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}

/// Runs every planned configuration in its own child and prints (and writes) the table.
fn parent(args: &Args) -> Result<(), String> {
    let plan: Vec<Planned> = if args.only.is_empty() {
        sweep()
    } else {
        let only = |config| Planned {
            sweep: "only",
            config,
        };
        args.only.iter().copied().map(only).collect()
    };
    let mut rows = Vec::new();
    for p in plan {
        let c = p.config;
        let k = match args.epochs {
            Some(k) => k,
            None => default_epochs(c)?,
        };
        eprintln!(
            "scaling: J = {}, N = {}, M = {}, K = {k} ...",
            c.j, c.n, c.m
        );
        let result = run_child(c, k);
        match &result {
            Ok(m) => eprintln!(
                "scaling:   {:.3} s / epoch, peak {:.0} MiB (simulation took {:.1} s)",
                m.seconds_per_epoch,
                m.peak as f64 / MIB,
                m.simulation_seconds
            ),
            Err(e) => eprintln!("scaling:   {e}"),
        }
        rows.push((p, result));
    }
    let text = table(&rows, rayon::current_num_threads());
    print!("{text}");
    if let Some(path) = &args.markdown {
        write_markdown(path, &text)?;
    }
    if rows.iter().any(|(_, r)| r.is_err()) {
        return Err("some configurations failed".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        if args.child {
            let (&[c], Some(k)) = (&args.only[..], args.epochs) else {
                return Err("--child needs one --only and --epochs".into());
            };
            measure(c, k).map(|m| println!("{}", row_line(&m)))
        } else {
            parent(&args)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scaling: {e}");
            ExitCode::FAILURE
        }
    }
}
