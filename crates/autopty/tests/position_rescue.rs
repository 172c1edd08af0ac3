//! The rescue of misplaced frames between alignment rounds: on the `small` preset reconstructed
//! at its true positions, a frame moved 7 px away is found by its standing-out loss and put back
//! to the pixel, and no correctly placed frame moves.

use autopty::engines::gradient::{self, fresh_start, GradientSettings};
use autopty::engines::position_rescue::rescue;
use autopty::engines::Control;
use autopty::model::ModelSettings;

#[test]
fn a_frame_moved_far_off_is_put_back_and_no_other_moves() {
    let mut cfg = autopty::sim::preset("small").unwrap();
    cfg.corruption.position_jitter = 0.0;
    cfg.corruption.distance_error = 0.0;
    let (data, _) = autopty::sim::simulate(&cfg).unwrap();
    let mut settings = GradientSettings {
        epochs: 60,
        ..GradientSettings::default()
    };
    settings.positions.enabled = false;
    settings.distance.enabled = false;
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let model_settings = ModelSettings::default();
    let rec = gradient::run(&data, &model_settings, &settings, control)
        .unwrap()
        .reconstruction;
    let distance = data.geometry.refined_distance();
    let (mut model, mut objective) =
        fresh_start(&data, &model_settings, &settings, distance, None).unwrap();
    model.object.assign(&rec.object);
    model.probe.assign(&rec.probe);

    assert_eq!(rescue(&mut model, &mut objective, 3.0, 19.0), vec![]);

    let frame = 24; // the middle of the 7 x 7 raster
    model.corrections[[frame, 0]] += 7.0;
    model.corrections[[frame, 1]] -= 5.0;
    let moved = rescue(&mut model, &mut objective, 3.0, 19.0);
    eprintln!("{moved:?}");
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].frame, frame);
    assert_eq!(moved[0].offset, [-7.0, 5.0]);
    assert!(moved[0].loss_ratio[0] > 3.0 && moved[0].loss_ratio[1] < 1.5);
    assert!(model.corrections.iter().all(|c| c.abs() < 1e-9));
}
