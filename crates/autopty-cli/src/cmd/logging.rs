//! Log output: `tracing` messages on stderr at a level set by `-v` (repeatable) and `-q`, as
//! text or, with `--json`, as one JSON object per line; and the per-epoch progress lines that
//! `--json` prints on stdout.

use autopty::EpochStats;
use std::io::Write;

/// Sets up the log subscriber: `-q` shows errors only, the default warnings, `-v` information,
/// `-vv` debugging, `-vvv` everything. `RUST_LOG` overrides the level.
pub fn init(verbose: u8, quiet: bool, json: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// One machine-readable line on stdout: `{"event": event, ...fields}`.
pub fn json_line(event: &str, mut fields: serde_json::Value) {
    if let Some(map) = fields.as_object_mut() {
        map.insert("event".into(), event.into());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{fields}");
    let _ = out.flush();
}

/// The progress line of an epoch.
pub fn epoch_line(s: &EpochStats, epochs: usize) {
    json_line(
        "epoch",
        serde_json::json!({
            "epoch": s.epoch,
            "epochs": epochs,
            "loss": s.loss,
            "distance_m": s.distance,
            "median_correction_px": s.median_correction,
            "seconds": s.seconds,
        }),
    );
}
