//! The cost of one epoch, and its FFT floor, for the gradient engine and for ePIE on the `paper`
//! preset (121 positions, N = 128 px frames, near field padded to P = 288, one probe mode,
//! Fourier sub-pixel model, batch 5 for the gradient engine).
//!
//! - `epoch/paper`, `epie/paper`: one epoch in steady state. A run of `1 + iters` epochs is
//!   timed from the end of its first epoch to the end of its last (`iters` is criterion's
//!   count), so building the model, the objective and the optimiser state (and the first
//!   touch of their memory) is not counted: users run hundreds of epochs. The gradient engine
//!   refines every group (object, probe, positions, distance) from epoch 1; ePIE updates the
//!   object and the probe and refines positions from epoch 2, as by default.
//! - `epoch_one_thread/paper`, `epie_one_thread/paper`: the same inside a one-thread rayon
//!   pool, for the speed-up over one thread.
//! - `gradient/fft_floor/paper`, `epie/fft_floor/paper`: exactly the 1-D FFTs that one epoch
//!   performs (the library's row passes: same plans, lengths, count and split over the
//!   threads), and nothing else: no transposes, scaling, padding, transfer functions, loss,
//!   scatter or optimiser. No implementation that uses these transforms can beat it.
//! - `propagator/set_distance/paper`: one rebuild of the near-field transfer function for a
//!   new distance (the gradient engine does one per minibatch while the distance is refined).
//! - `band_limit/apply/paper`, `band_limit/set_cutoff/paper`: the object's band limit (a 2-D
//!   FFT pair over the 648 x 648 object, once per epoch of both engines that use it) and the
//!   rebuild of its filter for a new cutoff (once per epoch while the distance is refined).
//!
//! FFT count of one gradient epoch (M modes, J positions, batch B, ceil(J / B) minibatches);
//! a 2-D transform is a pass of 1-D transforms along each axis, and the near-field transforms
//! skip the rows of the zero padding (see `propagate.rs`):
//! - per position and mode, in parallel over the positions of a minibatch:
//!   - probe move (`FourierShift::shift`): 2 N inverse, length N;
//!   - near-field forward (`forward_moved`): N + P forward and P + N inverse, length P; on
//!     the separable (paraxial) path, which the `paper` preset takes, two stages of N forward
//!     and N inverse, length P (the fused pass of `propagate::fused`, which runs there, makes
//!     the same transforms, a group of rows at a time);
//!   - near-field adjoint (`adjoint_moved`): the same again;
//!   - vjp of the probe move (`FourierShift::shift_vjp`): 2 N forward, length N;
//! - per minibatch and mode, on one thread: the probe spectrum (2 N forward) and the probe
//!   gradient (`FourierShift::finish`, 2 N inverse), length N.
//!
//! ePIE does per position and mode, one position after the other (its sweep runs on a rayon
//! worker, so the large passes inside a position are split over the threads): the probe move (2 N
//! inverse), the modulus constraint (a near-field forward and adjoint: 2 (N + P) forward,
//! 2 (N + P) inverse; 4 N and 4 N on the separable path) and the probe change moved back
//! (2 N forward); per epoch and mode
//! 2 N inverse to write the probe out.

use autopty::dataset::Dataset;
use autopty::engines::gradient::{self, GradientSettings};
use autopty::engines::pie::{self, PieSettings, PieVariant};
use autopty::engines::Control;
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::ops::band_limit::BandLimit;
use autopty::propagate::Propagator;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{gradient_settings, steady_epochs, FftFloor};

const SAMPLES: usize = 10;
const MEASUREMENT: Duration = Duration::from_secs(12);

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// The `paper` preset, its starting model and propagator.
fn paper() -> (Dataset, Model, Propagator, ModelSettings) {
    let config = autopty::sim::preset("paper").expect("paper preset");
    let (data, _truth) = autopty::sim::simulate(&config).expect("simulate the paper preset");
    let settings = ModelSettings::default();
    let (model, propagator) = Model::initial(&data, &settings).expect("initial model");
    (data, model, propagator, settings)
}

fn padded_size(propagator: &Propagator) -> usize {
    match propagator {
        Propagator::Near(p) => p.padded(),
        Propagator::Far(_) => panic!("the paper preset is near field"),
    }
}

fn bench_gradient(c: &mut Criterion) {
    let (data, model, propagator, model_settings) = paper();
    let batch = GradientSettings::default().batch;
    let run = |iters: u64| {
        steady_epochs(iters as usize, |epochs, report| {
            let settings = gradient_settings(epochs);
            let objective = Objective::new(
                &data,
                propagator.clone(),
                settings.loss,
                model_settings.subpixel,
                model_settings.modes,
                settings.batch,
            );
            let control = Control {
                on_epoch: report,
                stop: None,
            };
            gradient::run_from(&data, model.clone(), objective, &settings, control)
                .expect("gradient epochs");
        })
        .expect("every epoch ran")
    };
    let mut group = c.benchmark_group("gradient");
    group
        .sample_size(SAMPLES)
        .measurement_time(MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("epoch/paper", |b| b.iter_custom(run));
    group.bench_function("epoch_one_thread/paper", |b| {
        b.iter_custom(|iters| on_threads(1, || run(iters)))
    });
    let batches: Vec<usize> = (0..data.len())
        .collect::<Vec<_>>()
        .chunks(batch.clamp(1, data.len()))
        .map(<[usize]>::len)
        .collect();
    let mut floor = FftFloor::new(
        data.frame(),
        padded_size(&propagator),
        propagator.is_paraxial(),
        batch,
    );
    group.bench_function("fft_floor/paper", |b| {
        b.iter(|| {
            floor.gradient_epoch(&batches, model_settings.modes);
            black_box(&floor.lanes[0].padded[0]);
        })
    });
    group.finish();
}

fn bench_epie(c: &mut Criterion) {
    let (data, model, propagator, model_settings) = paper();
    let run = |iters: u64| {
        steady_epochs(iters as usize, |epochs, report| {
            let settings = PieSettings {
                epochs,
                ..PieSettings::default()
            };
            let control = Control {
                on_epoch: report,
                stop: None,
            };
            pie::run_from(
                &data,
                model.clone(),
                propagator.clone(),
                model_settings.subpixel,
                &settings,
                PieVariant::Epie,
                control,
            )
            .expect("ePIE epochs");
        })
        .expect("every epoch ran")
    };
    let mut group = c.benchmark_group("epie");
    group
        .sample_size(SAMPLES)
        .measurement_time(MEASUREMENT)
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("epoch/paper", |b| b.iter_custom(run));
    group.bench_function("epoch_one_thread/paper", |b| {
        b.iter_custom(|iters| on_threads(1, || run(iters)))
    });
    let mut floor = FftFloor::new(
        data.frame(),
        padded_size(&propagator),
        propagator.is_paraxial(),
        1,
    );
    group.bench_function("fft_floor/paper", |b| {
        b.iter(|| {
            // On a pool worker, as ePIE's sweep runs, so that the passes split the same way.
            rayon::scope(|_| floor.epie_epoch(data.len(), model_settings.modes));
            black_box(&floor.lanes[0].padded[0]);
        })
    });
    group.finish();
}

/// Rebuilding the near-field transfer function for a new distance, as the gradient engine does
/// after every distance step (once per minibatch): `paper`'s propagator, P = 288.
fn bench_transfer(c: &mut Criterion) {
    let (_data, model, mut propagator, _settings) = paper();
    let z = model.propagation_distance();
    let mut k = 0u32;
    c.bench_function("propagator/set_distance/paper", |b| {
        b.iter(|| {
            // A new distance every time (the same one is a no-op).
            k = k.wrapping_add(1);
            propagator.set_distance(z * (1.0 + 1e-6 * (k % 1000) as f64));
        })
    });
}

/// The object's band limit on `paper`'s object (648 x 648 px) at the model's cutoff (the
/// engines' default fraction of the detector width), and the rebuild of its filter for a new
/// cutoff.
fn bench_band_limit(c: &mut Criterion) {
    let (_data, model, _propagator, _settings) = paper();
    let (h, w) = model.object.dim();
    let fraction = GradientSettings::default().object_band_limit;
    let cutoff = BandLimit::cutoff_for(
        fraction,
        model.frame(),
        model.geometry().pixel_fresnel_number(),
    );
    let mut filter = BandLimit::new(h, w);
    filter.set_cutoff(cutoff);
    let mut object = model.object.clone();
    c.bench_function("band_limit/apply/paper", |b| {
        b.iter(|| filter.apply(black_box(&mut object)))
    });
    let mut k = 0u32;
    c.bench_function("band_limit/set_cutoff/paper", |b| {
        b.iter(|| {
            // A cutoff 0.1 % or more away from the last one every time (the same one is a no-op).
            k = k.wrapping_add(1);
            filter.set_cutoff(cutoff * (1.0 + 2e-3 * (k % 64) as f64));
        })
    });
}

criterion_group!(
    benches,
    bench_gradient,
    bench_epie,
    bench_transfer,
    bench_band_limit
);
criterion_main!(benches);
