//! `autopty score`: compares a reconstruction with the ground truth of a simulation.

use anyhow::Context;
use autopty::metrics::{format_table, score, Score};
use std::path::{Path, PathBuf};

/// Arguments of `autopty score`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder of a reconstruction.
    pub out: PathBuf,
    /// Ground-truth file written by `autopty simulate`.
    #[arg(long, value_name = "TRUTH.h5")]
    pub truth: PathBuf,
    /// Print the score as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: scores, writes `OUT/score.json` and prints the table (or the JSON).
pub fn run(args: Args) -> anyhow::Result<()> {
    let rec = autopty::io::outputs::read(&args.out)?;
    let truth = autopty::io::truth::read(&args.truth)?;
    let result = score(&rec, &truth).with_context(|| {
        format!(
            "scoring {} against {}",
            args.out.display(),
            args.truth.display()
        )
    })?;
    let json = write_score(&args.out, &result)?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", format_table(&result));
    }
    Ok(())
}

/// Writes `dir/score.json` atomically and returns the JSON text.
pub fn write_score(dir: &Path, result: &Score) -> anyhow::Result<String> {
    let json = serde_json::to_string_pretty(result)?;
    let path = dir.join("score.json");
    autopty::io::atomic::write_bytes_atomic(&path, format!("{json}\n").as_bytes())?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_json_is_written_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Score {
            ssim_magnitude: 0.93,
            ssim_phase: 0.88,
            nrmse: 0.12,
            position_error_median: Some(0.2),
            position_error_p90: None,
            position_error_affine_median: None,
            distance_error_rel: Some(0.003),
            shift: (0.05, -0.1),
        };
        let json = write_score(dir.path(), &s).unwrap();
        let on_disk = std::fs::read_to_string(dir.path().join("score.json")).unwrap();
        assert_eq!(on_disk.trim_end(), json);
        let back: Score = serde_json::from_str(&on_disk).unwrap();
        assert_eq!(back, s);
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_output_folder_is_an_error_naming_it() {
        let args = Args {
            out: PathBuf::from("/nonexistent/run"),
            truth: PathBuf::from("/nonexistent/truth.h5"),
            json: false,
        };
        let e = run(args).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/run"), "{e}");
    }
}
