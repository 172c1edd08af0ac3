//! What the epoch benchmark (`benches/epoch.rs`) and the scaling example
//! (`examples/scaling.rs`) share: both include this file as a module, so that they time an
//! epoch the same way.

use autopty::engines::gradient::GradientSettings;
use autopty::EpochStats;
use std::time::{Duration, Instant};

/// Default engine settings for `epochs` epochs with every parameter group refined from epoch 1.
pub fn gradient_settings(epochs: usize) -> GradientSettings {
    let mut s = GradientSettings {
        epochs,
        ..GradientSettings::default()
    };
    for group in [
        &mut s.object,
        &mut s.probe,
        &mut s.positions,
        &mut s.distance,
    ] {
        group.enabled = true;
        group.start_epoch = 1;
    }
    s
}

/// Time of the `k` epochs after the first of a run of `1 + k` epochs (setup and the first touch
/// of memory not counted); `run` gets the epoch count and the callback to report each epoch to.
/// An error when the run did not report all `1 + k` epochs.
pub fn steady_epochs(
    k: usize,
    run: impl FnOnce(usize, &mut dyn FnMut(&EpochStats)),
) -> Result<Duration, String> {
    let mut first_end = None;
    let mut last_end = Instant::now();
    let mut epochs_run = 0;
    run(1 + k, &mut |stats: &EpochStats| {
        last_end = Instant::now();
        epochs_run = stats.epoch;
        if stats.epoch == 1 {
            first_end = Some(last_end);
        }
    });
    match first_end {
        Some(first) if epochs_run == 1 + k => Ok(last_end - first),
        _ => Err(format!(
            "the engine stopped after {epochs_run} of {} epochs",
            1 + k
        )),
    }
}
