//! Checkpoint and resume: a run of 2N epochs and a run stopped after N (or interrupted anywhere)
//! and resumed give the same result, bit for bit with one thread. Checkpoints pass through the
//! file format on the way, so the test also shows that it stores everything exactly.

use autopty::engines::checkpoint::{Checkpoint, Checkpointing};
use autopty::engines::gradient::{run_resumable, GradientSettings};
use autopty::engines::Control;
use autopty::io::checkpoint;
use autopty::model::ModelSettings;
use autopty::{Dataset, EpochStats, Reconstruction};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn data() -> Dataset {
    let mut cfg = autopty::sim::preset("small").unwrap();
    cfg.corruption.position_jitter = 0.0;
    cfg.corruption.distance_error = 0.05;
    autopty::sim::simulate(&cfg).unwrap().0
}

fn settings(epochs: usize) -> GradientSettings {
    let mut s = GradientSettings {
        epochs,
        batch: 7,
        lr_final_fraction: 1.0,
        ..GradientSettings::default()
    };
    // Positions fixed; the distance is searched (a preparation stage) and refined.
    s.positions.enabled = false;
    s.distance.start_epoch = 2;
    s.distance_search.points = 3;
    s.distance_search.epochs = 2;
    s
}

/// Through the file format and back.
fn round_trip(c: &Checkpoint) -> Checkpoint {
    let bytes = checkpoint::encode(c, &serde_json::json!({"test": true})).unwrap();
    let (back, meta) = checkpoint::decode(Path::new("mem"), &bytes).unwrap();
    assert_eq!(meta["test"], true);
    if let (Some(a), Some(b)) = (&back.joint, &c.joint) {
        assert!(a.params == b.params, "params");
        assert!(a.last_good == b.last_good, "last_good");
        assert!(a.optimizers == b.optimizers, "optimizers");
        assert!(a.rng == b.rng, "rng");
        assert_eq!(a.history, b.history);
        assert_eq!(a.settings, b.settings);
        assert_eq!(a.seconds, b.seconds);
    }
    assert!(&back == c, "checkpoints differ after the file round trip");
    back
}

/// Runs with checkpoints every `every` epochs; returns the reconstruction, the checkpoints and
/// why the run stopped early.
fn run(
    data: &Dataset,
    settings: &GradientSettings,
    every: usize,
    resume: Option<Checkpoint>,
    stop: Option<&AtomicBool>,
    stop_after_epoch: Option<usize>,
) -> (Reconstruction, Vec<Checkpoint>, Option<String>) {
    let mut saved = Vec::new();
    let mut save = |c: &Checkpoint, _: &Reconstruction| {
        saved.push(round_trip(c));
        Ok(())
    };
    let mut ck = Checkpointing::new(every, resume, &mut save);
    let mut on_epoch = |s: &EpochStats| {
        if let (Some(flag), Some(e)) = (stop, stop_after_epoch) {
            if s.epoch == e {
                flag.store(true, Ordering::Relaxed);
            }
        }
    };
    let control = Control {
        on_epoch: &mut on_epoch,
        stop,
    };
    let outcome = run_resumable(
        data,
        &ModelSettings::default(),
        settings,
        control,
        Some(&mut ck),
    )
    .unwrap();
    (outcome.reconstruction, saved, outcome.stopped_early)
}

fn assert_same(a: &Reconstruction, b: &Reconstruction) {
    assert!(a.object == b.object, "objects differ");
    assert!(a.probe == b.probe, "probes differ");
    assert_eq!(
        a.geometry.refined_distance().to_bits(),
        b.geometry.refined_distance().to_bits()
    );
    assert_eq!(a.positions, b.positions);
    let losses = |r: &Reconstruction| r.history.iter().map(|s| s.loss).collect::<Vec<_>>();
    assert_eq!(losses(a), losses(b));
}

#[test]
fn resumed_runs_equal_the_uninterrupted_run_bit_for_bit() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let data = data();
        let n = 4;
        // 2N epochs in one go, a checkpoint after N.
        let (full, saved, why) = run(&data, &settings(2 * n), n, None, None, None);
        assert!(why.is_none());
        assert_eq!(full.history.len(), 2 * n);
        assert_eq!(
            saved.len(),
            2,
            "one checkpoint after epoch {n}, one at the end"
        );
        let after_n = saved[0].joint.as_ref().unwrap();
        assert_eq!(
            (after_n.epoch, after_n.done, after_n.history.len()),
            (n + 1, 0, n)
        );
        // Resume from the checkpoint after N.
        let (resumed, _, _) = run(
            &data,
            &settings(2 * n),
            n,
            Some(saved[0].clone()),
            None,
            None,
        );
        assert_same(&full, &resumed);
        // A run of N epochs, then a resume for N more.
        let (half, saved_half, _) = run(&data, &settings(n), n, None, None, None);
        assert_eq!(half.history.len(), n);
        let last = saved_half.last().unwrap().clone();
        let (extended, _, _) = run(&data, &settings(2 * n), n, Some(last), None, None);
        assert_same(&full, &extended);
        // Interrupted by a stop request after epoch 3 (the order of epoch 4 already drawn).
        let stop = AtomicBool::new(false);
        let (_, saved_stop, why) = run(&data, &settings(2 * n), 0, None, Some(&stop), Some(3));
        assert!(why.unwrap().starts_with("interrupted"));
        let at = saved_stop.last().unwrap().joint.as_ref().unwrap();
        assert_eq!((at.epoch, at.done, at.shuffled), (4, 0, true));
        let (after_stop, _, _) = run(
            &data,
            &settings(2 * n),
            0,
            saved_stop.last().cloned(),
            None,
            None,
        );
        assert_same(&full, &after_stop);
    });
}

#[test]
fn interruption_in_the_middle_of_an_epoch_resumes_exactly() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let data = data();
        let mut s = settings(3);
        s.batch = 2;
        s.distance_search.enabled = false;
        let (full, _, _) = run(&data, &s, 0, None, None, None);
        // Stop from outside at an arbitrary moment; the checkpoint records where the run was.
        let stop = AtomicBool::new(false);
        let mut saved = Vec::new();
        let mut save = |c: &Checkpoint, _: &Reconstruction| {
            saved.push(round_trip(c));
            Ok(())
        };
        let mut ck = Checkpointing::new(0, None, &mut save);
        let mut on_epoch = |_: &EpochStats| {};
        // A second thread raises the flag after 40 ms, wherever the run then is.
        let outcome = std::thread::scope(|scope| {
            let flag = &stop;
            scope.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(40));
                flag.store(true, Ordering::Relaxed);
            });
            run_resumable(
                &data,
                &ModelSettings::default(),
                &s,
                Control {
                    on_epoch: &mut on_epoch,
                    stop: Some(&stop),
                },
                Some(&mut ck),
            )
            .unwrap()
        });
        assert!(outcome.stopped_early.is_some());
        let at = saved.last().unwrap().joint.as_ref().unwrap().clone();
        eprintln!(
            "interrupted at epoch {} after {} positions",
            at.epoch, at.done
        );
        let (resumed, _, _) = run(&data, &s, 0, saved.last().cloned(), None, None);
        assert_same(&full, &resumed);
    });
}

#[test]
fn with_several_threads_a_resumed_run_agrees_to_float_rounding() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let data = data();
        let mut s = settings(6);
        s.distance_search.enabled = false;
        let (full, saved, _) = run(&data, &s, 3, None, None, None);
        let (resumed, _, _) = run(&data, &s, 3, Some(saved[0].clone()), None, None);
        let scale = full.object.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
        let worst = full
            .object
            .iter()
            .zip(&resumed.object)
            .map(|(a, b)| (a - b).norm())
            .fold(0.0f32, f32::max);
        // Parallel sums may round differently in the last bits, and the differences grow a
        // little over the epochs; the bound leaves room for that.
        eprintln!(
            "largest object difference {:.2e} of the largest modulus",
            worst / scale
        );
        assert!(
            worst <= 1e-4 * scale,
            "object differs by {worst} of {scale}"
        );
        for (a, b) in full.history.iter().zip(&resumed.history) {
            assert!((a.loss - b.loss).abs() <= 1e-6 * a.loss, "{a:?} {b:?}");
        }
    });
}

#[test]
fn a_joint_start_with_a_probe_round_trips_exactly() {
    use autopty::engines::checkpoint::JointStart;
    use num_complex::Complex32;
    let probe = ndarray::Array3::from_shape_fn((2, 3, 4), |(m, r, c)| {
        Complex32::new(0.1 * m as f32 + r as f32 / 3.0, -(c as f32) / 7.0)
    });
    let c = Checkpoint {
        start: Some(JointStart {
            distance: 0.1 + 1e-17,
            corrections: Some(ndarray::Array2::from_elem((3, 2), 1.0 / 3.0)),
            probe: Some(probe),
        }),
        joint: None,
    };
    let meta = serde_json::json!({"job": "x"});
    let bytes = checkpoint::encode(&c, &meta).unwrap();
    let (back, back_meta) = checkpoint::decode(Path::new("c.autopty"), &bytes).unwrap();
    assert_eq!(back, c);
    assert_eq!(back_meta, meta);
}
