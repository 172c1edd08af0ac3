//! One epoch of the gradient engine on the `paper` preset, and the FFT floor of that epoch.
//!
//! Setup (not timed): the `paper` dataset is simulated in memory (121 positions, N = 128 px
//! frames, near field, stored distance 0.13 m, so the padded propagator size is P = 270), the
//! starting model is built with the default [`ModelSettings`] (one probe mode, Fourier
//! sub-pixel model), and the engine runs with the default [`GradientSettings`] except
//! `epochs = 1` and every group (object, probe, positions, distance) refined from epoch 1.
//!
//! - `epoch/paper` times `gradient::run_from` for that one epoch; a fresh model clone and
//!   `Objective` are built outside the timed region for every iteration.
//! - `fft_only/paper` times exactly the 2-D FFTs that epoch performs, with the library's own
//!   [`Fft2`] (each 2-D transform is 2 x size 1-D FFTs, two transposes and a 1/size scaling
//!   pass), the same sizes, the same batches and the same rayon split over positions as
//!   `Objective::evaluate` (one chunk of ceil(B / threads) positions per thread), and nothing
//!   else (no padding, transfer functions, ramps, loss, scatter or optimiser).
//!
//! FFT count of one epoch (M = 1 mode, J = 121 positions, batch B = 5, so 25 minibatches: 24 of
//! 5 and 1 of 1; `total_loss` is not called by the engine):
//!
//! - per position and mode (in parallel over positions):
//!   - 1 N x N inverse (Fourier probe move, `FourierShift::shift`);
//!   - 1 P x P forward + 1 P x P inverse (near-field forward, `forward_moved`);
//!   - 1 P x P forward + 1 P x P inverse (near-field adjoint, `adjoint_moved`);
//!   - 1 N x N forward (vjp of the probe move, `FourierShift::shift_vjp`);
//! - per minibatch and mode (sequential, one thread): 1 N x N forward (probe spectrum,
//!   `FourierShift::spectrum`) before the positions and 1 N x N inverse (`FourierShift::finish`)
//!   after them.
//!
//! Per epoch: 4 J M = 484 transforms of 270 x 270 (242 forward, 242 inverse) and
//! 2 J M + 2 x 25 M = 292 transforms of 128 x 128 (146 forward, 146 inverse).

use autopty::engines::gradient::{run_from, GradientSettings};
use autopty::engines::Control;
use autopty::fft::{Fft2, FftWork};
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::propagate::Propagator;
use autopty::EpochStats;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use num_complex::Complex32;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const SAMPLES: usize = 10;
const MEASUREMENT: Duration = Duration::from_secs(15);

/// Default engine settings for a single epoch with every parameter group refined.
fn one_epoch_settings() -> GradientSettings {
    let mut s = GradientSettings {
        epochs: 1,
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

/// Deterministic, bounded complex values (the FFT cost does not depend on them).
fn filled(len: usize, seed: u32) -> Vec<Complex32> {
    (0..len as u32)
        .map(|i| {
            let t = (i.wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32;
            Complex32::new(t - 0.5, 0.25 - t * t)
        })
        .collect()
}

/// Buffers of one position slot of the FFT-only replay (the moved probe and its gradient).
struct SlotBuffers {
    probe: Vec<Complex32>,
    probe_grad: Vec<Complex32>,
}

/// Per-thread buffers of the FFT-only replay.
struct ThreadBuffers {
    padded: Vec<Complex32>,
    padded_work: FftWork,
    frame_work: FftWork,
}

/// Replays the FFTs of one epoch of `Objective::evaluate` (see the module docs).
struct FftReplay {
    frame: Fft2,
    padded: Fft2,
    modes: usize,
    batches: Vec<usize>,
    probe_spectrum: Vec<Complex32>,
    sequential_work: FftWork,
    slots: Vec<SlotBuffers>,
    threads: Vec<ThreadBuffers>,
}

impl FftReplay {
    fn new(n: usize, padded: usize, modes: usize, positions: usize, batch: usize) -> Self {
        let (frame, padded_fft) = (Fft2::new(n), Fft2::new(padded));
        let nn = n * n;
        let batch = batch.clamp(1, positions.max(1));
        let batches = (0..positions)
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(<[usize]>::len)
            .collect();
        let threads = (0..rayon::current_num_threads().max(1))
            .map(|t| ThreadBuffers {
                padded: filled(padded * padded, 7 + t as u32),
                padded_work: padded_fft.work(),
                frame_work: frame.work(),
            })
            .collect();
        FftReplay {
            modes,
            batches,
            probe_spectrum: filled(modes * nn, 1),
            sequential_work: frame.work(),
            slots: (0..batch)
                .map(|k| SlotBuffers {
                    probe: filled(modes * nn, 2 + k as u32),
                    probe_grad: filled(modes * nn, 3 + k as u32),
                })
                .collect(),
            threads,
            frame,
            padded: padded_fft,
        }
    }

    fn epoch(&mut self) {
        let nn = self.frame.n() * self.frame.n();
        let (frame, padded, modes) = (&self.frame, &self.padded, self.modes);
        for &len in &self.batches {
            for spec in self.probe_spectrum.chunks_exact_mut(nn) {
                frame.forward(spec, &mut self.sequential_work);
            }
            let active = &mut self.slots[..len];
            let chunk = len.div_ceil(self.threads.len()).max(1);
            active
                .par_chunks_mut(chunk)
                .zip(self.threads.par_iter_mut())
                .for_each(|(slots, t)| {
                    for s in slots {
                        for p in s.probe.chunks_exact_mut(nn) {
                            frame.inverse(p, &mut t.frame_work);
                        }
                        for _ in 0..modes {
                            padded.forward(&mut t.padded, &mut t.padded_work);
                            padded.inverse(&mut t.padded, &mut t.padded_work);
                        }
                        for _ in 0..modes {
                            padded.forward(&mut t.padded, &mut t.padded_work);
                            padded.inverse(&mut t.padded, &mut t.padded_work);
                        }
                        for g in s.probe_grad.chunks_exact_mut(nn) {
                            frame.forward(g, &mut t.frame_work);
                        }
                    }
                });
            for spec in self.probe_spectrum.chunks_exact_mut(nn) {
                frame.inverse(spec, &mut self.sequential_work);
            }
        }
    }
}

fn bench_epoch(c: &mut Criterion) {
    let config = autopty::sim::preset("paper").expect("paper preset");
    let (data, _truth) = autopty::sim::simulate(&config).expect("simulate the paper preset");
    let model_settings = ModelSettings::default();
    let settings = one_epoch_settings();
    let (model, propagator) = Model::initial(&data, &model_settings).expect("initial model");
    let make_objective = |p: Propagator| {
        Objective::new(
            &data,
            p,
            settings.loss,
            model_settings.subpixel,
            model_settings.modes,
            settings.batch,
        )
    };

    let mut group = c.benchmark_group("epoch");
    group
        .sample_size(SAMPLES)
        .measurement_time(MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("paper", |b| {
        b.iter_batched(
            || (model.clone(), make_objective(propagator.clone())),
            |(model, objective)| {
                let control = Control {
                    on_epoch: &mut |_: &EpochStats| {},
                    stop: None,
                };
                run_from(&data, model, objective, &settings, control).expect("one epoch")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let padded = match &propagator {
        Propagator::Near(p) => p.padded(),
        Propagator::Far(_) => panic!("the paper preset is near field"),
    };
    let mut replay = FftReplay::new(
        data.frame(),
        padded,
        model_settings.modes,
        data.len(),
        settings.batch,
    );
    let mut group = c.benchmark_group("fft_only");
    group
        .sample_size(SAMPLES)
        .measurement_time(MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("paper", |b| {
        b.iter(|| {
            replay.epoch();
            black_box(&replay.slots[0].probe[0]);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_epoch);
criterion_main!(benches);
