//! Epoch time over FFT floor on a noisy machine: the criterion benchmark (`benches/epoch.rs`)
//! times the epoch and the floor minutes apart, and on a shared machine the speed of the same
//! code moves by 30 % and more over minutes. Here every epoch of a run is followed at once by
//! one replay of its FFT floor (the same `FftFloor` as the benchmark's), so that each ratio
//! compares two runs a few milliseconds apart; the medians of the ratios are reported.
//!
//! ```sh
//! cargo run --release -p autopty --example epoch_over_floor -- [EPOCHS]
//! ```
//!
//! It runs the `paper` preset (121 x 128 x 128, one mode, batch 5) with the benchmark's
//! settings, on two threads and on one: the gradient engine and ePIE, `EPOCHS` epochs each
//! (default 20) after a first one that is not counted. Prints, per engine and thread count,
//! the median epoch, floor and epoch / floor.
//!
//! The speed-up of two threads over one compares runs made at different times, so each epoch
//! is also measured in units of a fixed reference taken right after it: the floor replayed on
//! one thread. The speed-up is the ratio of the medians of those normalised epochs. The
//! floor's own speed-up (its one-thread replay over its two-thread replay, milliseconds apart)
//! is printed too: the epoch's speed-up cannot be expected to exceed it by much.

#[path = "../benches/common/mod.rs"]
mod common;

use autopty::engines::pie::{self, PieSettings, PieVariant};
use autopty::engines::{gradient, Control};
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::propagate::Propagator;
use autopty::EpochStats;
use common::{gradient_settings, FftFloor};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Gradient,
    Epie,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        0.5 * (v[k / 2 - 1] + v[k / 2])
    }
}

/// Times (s) of `epochs` steady epochs on a pool of `threads`: the epoch, its floor on the same
/// threads, and the floor on one thread (the reference).
fn alternate(engine: Engine, threads: usize, epochs: usize) -> Vec<[f64; 3]> {
    let config = autopty::sim::preset("paper").expect("paper preset");
    let (data, _truth) = autopty::sim::simulate(&config).expect("simulate the paper preset");
    let ms = ModelSettings::default();
    let (model, propagator) = Model::initial(&data, &ms).expect("initial model");
    let padded = match &propagator {
        Propagator::Near(p) => p.padded(),
        Propagator::Far(_) => panic!("the paper preset is near field"),
    };
    let settings = gradient_settings(epochs + 1);
    let batches: Vec<usize> = (0..data.len())
        .collect::<Vec<_>>()
        .chunks(settings.batch.clamp(1, data.len()))
        .map(<[usize]>::len)
        .collect();
    let lanes = if engine == Engine::Gradient {
        settings.batch
    } else {
        1
    };
    let mut floor = FftFloor::new(data.frame(), padded, propagator.is_paraxial(), lanes);
    let pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
    };
    let (pool, one) = (pool(threads), pool(1));
    let mut times = Vec::new();
    pool.install(|| {
        let mut last: Option<Instant> = None;
        let mut report = |stats: &EpochStats| {
            let end = Instant::now();
            if let Some(start) = last.filter(|_| stats.epoch > 1) {
                let epoch = (end - start).as_secs_f64();
                let mut replay = || {
                    let t = Instant::now();
                    match engine {
                        Engine::Gradient => floor.gradient_epoch(&batches, ms.modes),
                        Engine::Epie => rayon::scope(|_| floor.epie_epoch(data.len(), ms.modes)),
                    }
                    std::hint::black_box(&floor.lanes[0].padded[0]);
                    t.elapsed().as_secs_f64()
                };
                let here = replay();
                let reference = one.install(&mut replay);
                times.push([epoch, here, reference]);
            }
            // The next epoch starts now (after the floor's replay).
            last = Some(Instant::now());
        };
        let control = Control {
            on_epoch: &mut report,
            stop: None,
        };
        match engine {
            Engine::Gradient => {
                let objective = Objective::new(
                    &data,
                    propagator.clone(),
                    settings.loss,
                    ms.subpixel,
                    ms.modes,
                    settings.batch,
                );
                gradient::run_from(&data, model.clone(), objective, &settings, control)
                    .expect("gradient epochs");
            }
            Engine::Epie => {
                let pie_settings = PieSettings {
                    epochs: epochs + 1,
                    ..PieSettings::default()
                };
                pie::run_from(
                    &data,
                    model.clone(),
                    propagator.clone(),
                    ms.subpixel,
                    &pie_settings,
                    PieVariant::Epie,
                    control,
                )
                .expect("ePIE epochs");
            }
        }
    });
    times
}

fn main() {
    let epochs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let ms = |s: f64| Duration::from_secs_f64(s).as_secs_f64() * 1e3;
    for (engine, name) in [
        (Engine::Gradient, "gradient engine"),
        (Engine::Epie, "ePIE"),
    ] {
        let mut normalised = Vec::new();
        for threads in [2, 1] {
            let times = alternate(engine, threads, epochs);
            let column = |k: usize| median(times.iter().map(|t| t[k]).collect());
            let ratio = median(times.iter().map(|t| t[0] / t[1]).collect());
            // In units of the one-thread floor, which is the same work in any build: compares
            // builds run minutes apart.
            let in_reference = median(times.iter().map(|t| t[0] / t[2]).collect());
            println!(
                "{name}, {threads} thread(s): epoch {:.1} ms, floor {:.1} ms, epoch / floor {ratio:.2}, epoch / one-thread floor {in_reference:.2} (medians of {} epochs)",
                ms(column(0)),
                ms(column(1)),
                times.len()
            );
            normalised.push(in_reference);
            if threads > 1 {
                // The floor's own speed-up, from replays milliseconds apart: the most that
                // splitting these transforms over the threads gains on this machine.
                let floor_speedup = median(times.iter().map(|t| t[2] / t[1]).collect());
                println!("{name}: speed-up of the floor on {threads} threads over one {floor_speedup:.2}");
            }
        }
        println!(
            "{name}: speed-up of two threads over one {:.2}",
            normalised[1] / normalised[0]
        );
    }
}
