//! The rescue of misplaced frames between alignment rounds, on the `small` preset (7 x 7 raster,
//! exact metadata). The object is reconstructed with two frames held 8-9 px from their true
//! places (the middle one and a corner one), so it memorises their patterns there, as an
//! alignment round does; the rescue must flag both by their loss and put both back to the pixel.
//! Reconstructed with every frame in place, it must move nothing. Also the weighted loss its
//! near-field search uses.

use autopty::engines::gradient::{fresh_start, run_from, GradientSettings};
use autopty::engines::position_rescue::{rescue, Moved, RescueSettings};
use autopty::engines::Control;
use autopty::model::ModelSettings;
use ndarray::Array2;

/// Reconstructs `data` with the positions held at `corrections` (px), then runs the rescue from
/// that state; returns what it moved and the corrections after it.
fn round_then_rescue(
    data: &autopty::Dataset,
    corrections: &Array2<f64>,
) -> (Vec<Moved>, Array2<f64>) {
    let mut settings = GradientSettings {
        epochs: 60,
        ..GradientSettings::default()
    };
    settings.positions.enabled = false;
    settings.distance.enabled = false;
    let model_settings = ModelSettings::default();
    let distance = data.geometry.refined_distance();
    let start = || {
        fresh_start(
            data,
            &model_settings,
            &settings,
            distance,
            Some(corrections),
        )
    };
    let (model, objective) = start().unwrap();
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let rec = run_from(data, model, objective, &settings, control)
        .unwrap()
        .reconstruction;
    let (mut model, mut objective) = start().unwrap();
    model.object.assign(&rec.object);
    model.probe.assign(&rec.probe);
    let search = RescueSettings {
        ratio: 3.0,
        radius: 19.0,
        epochs: 60,
        step: 2,
    };
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let moved = rescue(
        data,
        &model_settings,
        &settings,
        &mut model,
        &mut objective,
        search,
        &control,
    )
    .unwrap();
    (moved, model.corrections)
}

#[test]
fn frames_memorised_far_off_are_put_back_and_no_other_moves() {
    let mut cfg = autopty::sim::preset("small").unwrap();
    cfg.corruption.position_jitter = 0.0;
    cfg.corruption.distance_error = 0.0;
    let (data, _) = autopty::sim::simulate(&cfg).unwrap();
    let in_place = Array2::zeros((data.len(), 2));

    let (moved, after) = round_then_rescue(&data, &in_place);
    assert_eq!(moved, vec![], "frames in place moved");
    assert_eq!(after, in_place);

    // The middle of the raster and its bottom-right corner (moved inwards, to stay inside the
    // object).
    let (middle, corner) = (24, 48);
    let mut off = in_place.clone();
    off[[middle, 0]] = 7.0;
    off[[middle, 1]] = -5.0;
    off[[corner, 0]] = -8.0;
    off[[corner, 1]] = -3.0;
    let (moved, after) = round_then_rescue(&data, &off);
    eprintln!("{moved:?}");
    let frames: Vec<usize> = moved.iter().map(|m| m.frame).collect();
    assert_eq!(frames, vec![middle, corner], "{moved:?}");
    assert_eq!(moved[0].offset, [-7.0, 5.0]);
    assert_eq!(moved[1].offset, [8.0, 3.0]);
    for m in &moved {
        assert!(m.loss_ratio > 3.0 && m.search_ratio < 0.7, "{m:?}");
    }
    assert!(after.iter().all(|c| c.abs() < 1e-9), "{after:?}");
}

#[test]
fn weighted_loss_scales_with_the_weights() {
    let (data, _) = autopty::sim::simulate(&autopty::sim::preset("small").unwrap()).unwrap();
    let settings = GradientSettings::default();
    let distance = data.geometry.refined_distance();
    let (model, mut objective) =
        fresh_start(&data, &ModelSettings::default(), &settings, distance, None).unwrap();
    let nn = model.frame() * model.frame();
    let j = 10;
    let plain = objective.evaluate(&model, &[j], None);
    assert!(plain > 0.0);
    assert_eq!(
        objective.evaluate_weighted(&model, j, &vec![1.0; nn]),
        plain
    );
    assert_eq!(objective.evaluate_weighted(&model, j, &vec![0.0; nn]), 0.0);
    let half = objective.evaluate_weighted(&model, j, &vec![0.5; nn]);
    assert!((half / plain - 0.5).abs() < 1e-6, "{half} vs {plain}");
    // The mask is restored afterwards.
    assert_eq!(objective.evaluate(&model, &[j], None), plain);
}
