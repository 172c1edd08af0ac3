use autopty::engines::gradient::{run_from, GradientSettings};
use autopty::engines::Control;
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::ops::loss::LossKind;
use std::path::Path;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let data = autopty::io::cxi::read(Path::new(&a[1]), &Default::default()).unwrap();
    let truth = autopty::io::truth::read(Path::new(&a[2])).unwrap();
    let lr: f64 = a[3].parse().unwrap();
    let ms = ModelSettings::default();
    let (mut model, prop) = Model::initial(&data, &ms).unwrap();
    let obj = Objective::new(&data, prop, LossKind::Amplitude, ms.subpixel, 1, 5);
    if a[4].contains('o') {
        model.object = truth.object.clone();
    }
    if a[4].contains('p') {
        model.probe = truth.probe.clone();
    }
    let off = (&truth.positions - &model.positions())
        .mean_axis(ndarray::Axis(0))
        .unwrap();
    for j in 0..model.len() {
        model.corrections[[j, 0]] = off[0];
        model.corrections[[j, 1]] = off[1];
    }
    let err = |m: &Model| med(&m.positions(), &truth.positions).0;
    println!("start err {}", err(&model));
    let mut s = GradientSettings::default();
    s.object.enabled = !a[4].contains('o');
    s.probe.enabled = !a[4].contains('p');
    s.epochs = a[5].parse().unwrap();
    s.object.lr = 0.05;
    s.probe.lr = 0.05;
    s.distance.enabled = false;
    s.positions.lr = lr;
    s.positions.start_epoch = a[6].parse().unwrap();
    let out = run_from(
        &data,
        model.clone(),
        obj,
        &s,
        Control {
            on_epoch: &mut |_| {},
            stop: None,
        },
    )
    .unwrap();
    let r = out.reconstruction;
    println!(
        "end (median, p90) {:?}",
        med(&r.positions, &truth.positions)
    );
}

fn med(a: &ndarray::Array2<f64>, b: &ndarray::Array2<f64>) -> (f64, f64) {
    let d = a - b;
    let m = d.mean_axis(ndarray::Axis(0)).unwrap();
    let mut e: Vec<f64> = d
        .outer_iter()
        .map(|r| ((r[0] - m[0]).powi(2) + (r[1] - m[1]).powi(2)).sqrt())
        .collect();
    e.sort_by(f64::total_cmp);
    (e[e.len() / 2], e[e.len() * 9 / 10])
}
