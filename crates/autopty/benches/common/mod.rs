//! What the epoch benchmark (`benches/epoch.rs`) and the examples `scaling.rs` and
//! `epoch_over_floor.rs` share: they include this file as a module, so that they time an epoch
//! and its FFT floor the same way.
#![allow(dead_code)] // each includer uses a part

use autopty::engines::gradient::GradientSettings;
use autopty::fft::Fft2;
use autopty::EpochStats;
use num_complex::Complex32;
use rayon::prelude::*;
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

/// Deterministic, bounded complex values (the FFT cost does not depend on them).
fn filled(len: usize, seed: u32) -> Vec<Complex32> {
    (0..len as u32)
        .map(|i| {
            let t = (i.wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32;
            Complex32::new(t - 0.5, 0.25 - t * t)
        })
        .collect()
}

/// One position's buffers: rows of both lengths, and scratch for both.
pub struct Lane {
    frame: Vec<Complex32>,
    pub padded: Vec<Complex32>,
    frame_scratch: Vec<Complex32>,
    padded_scratch: Vec<Complex32>,
}

/// Replays the 1-D FFTs of one epoch (see the module docs) with the library's row passes
/// (`Fft2::forward_rows` / `inverse_rows`: the same plans, and large passes split over the
/// threads in the same way).
pub struct FftFloor {
    n: usize,
    padded: usize,
    /// The near field runs its separable (paraxial) path.
    separable: bool,
    frame: Fft2,
    pad: Fft2,
    pub lanes: Vec<Lane>,
}

impl FftFloor {
    pub fn new(n: usize, padded: usize, separable: bool, lanes: usize) -> Self {
        let (frame, pad) = (Fft2::new(n), Fft2::new(padded));
        let lanes = (0..lanes.max(1))
            .map(|k| Lane {
                frame: filled(2 * n * n, 1 + k as u32),
                padded: filled(2 * padded * padded, 2 + k as u32),
                frame_scratch: vec![Complex32::default(); frame.scratch_len()],
                padded_scratch: vec![Complex32::default(); pad.scratch_len()],
            })
            .collect();
        FftFloor {
            n,
            padded,
            separable,
            frame,
            pad,
            lanes,
        }
    }

    /// `rows` 1-D transforms of length N (forward or inverse) on a lane.
    fn frame_rows(&self, lane: &mut Lane, rows: usize, forward: bool) {
        let data = &mut lane.frame[..rows * self.n];
        if forward {
            self.frame.forward_rows(data, &mut lane.frame_scratch);
        } else {
            self.frame.inverse_rows(data, &mut lane.frame_scratch);
        }
    }

    /// `rows` 1-D transforms of length P on a lane.
    fn padded_rows(&self, lane: &mut Lane, rows: usize, forward: bool) {
        let data = &mut lane.padded[..rows * self.padded];
        if forward {
            self.pad.forward_rows(data, &mut lane.padded_scratch);
        } else {
            self.pad.inverse_rows(data, &mut lane.padded_scratch);
        }
    }

    /// The transforms of one position and mode (probe move, near-field forward and adjoint,
    /// probe change moved back). Each 2-D transform is two passes, as in the library.
    fn position(&self, lane: &mut Lane) {
        let (n, p) = (self.n, self.padded);
        self.frame_rows(lane, n, false);
        self.frame_rows(lane, n, false);
        for _ in 0..2 {
            if self.separable {
                // Two stages (x, then y) of N forward and N inverse transforms each.
                for _ in 0..2 {
                    self.padded_rows(lane, n, true);
                    self.padded_rows(lane, n, false);
                }
            } else {
                self.padded_rows(lane, n, true);
                self.padded_rows(lane, p, true);
                self.padded_rows(lane, p, false);
                self.padded_rows(lane, n, false);
            }
        }
        self.frame_rows(lane, n, true);
        self.frame_rows(lane, n, true);
    }

    /// One gradient epoch: `batches` minibatch sizes, `modes` modes; the positions of a
    /// minibatch in parallel, one lane each.
    pub fn gradient_epoch(&mut self, batches: &[usize], modes: usize) {
        let mut lanes = std::mem::take(&mut self.lanes);
        for &len in batches {
            for _ in 0..2 * modes {
                self.frame_rows(&mut lanes[0], self.n, true);
            }
            let this = &*self;
            lanes[..len].par_iter_mut().for_each(|lane| {
                for _ in 0..modes {
                    this.position(lane);
                }
            });
            for _ in 0..2 * modes {
                self.frame_rows(&mut lanes[0], self.n, false);
            }
        }
        self.lanes = lanes;
    }

    /// One ePIE epoch of `positions` positions and `modes` modes, one position after another
    /// (the passes inside each are split over the threads when run on a pool worker).
    pub fn epie_epoch(&mut self, positions: usize, modes: usize) {
        let mut lanes = std::mem::take(&mut self.lanes);
        for _ in 0..positions * modes {
            self.position(&mut lanes[0]);
        }
        for _ in 0..2 * modes {
            self.frame_rows(&mut lanes[0], self.n, false);
        }
        self.lanes = lanes;
    }
}
