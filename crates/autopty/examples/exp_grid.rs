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
    let epochs: usize = a[3].parse().unwrap();
    let rad: i32 = a[4].parse().unwrap();
    let rounds: usize = a[5].parse().unwrap();
    let ms = ModelSettings::default();
    let (mut model, prop) = Model::initial(&data, &ms).unwrap();
    let mut obj = Objective::new(&data, prop, LossKind::Amplitude, ms.subpixel, 1, 5);
    let off = (&truth.positions - &model.positions())
        .mean_axis(ndarray::Axis(0))
        .unwrap();
    println!("start {:?}", med(&model.positions(), &truth.positions));
    for round in 0..rounds {
        let mut s = GradientSettings::default();
        s.epochs = epochs;
        s.positions.enabled = false;
        s.distance.enabled = false;
        s.batch = 1;
        s.object.lr = 0.05;
        s.probe.lr = 0.05;
        s.lr_final_fraction = 1.0;
        s.batch = 5;
        s.object_smoothing = a[6].parse().unwrap();
        s.object_smoothing_epochs = 100000;
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
        model.object = r.object;
        model.probe = r.probe;
        let (m2, prop) = Model::initial(&data, &ms).unwrap();
        let _ = m2;
        obj = Objective::new(&data, prop, LossKind::Amplitude, ms.subpixel, 1, 5);
        let mut found = 0;
        for j in 0..model.len() {
            let c0 = [model.corrections[[j, 0]], model.corrections[[j, 1]]];
            let mut best = (f64::INFINITY, c0);
            for dy in -rad..=rad {
                for dx in -rad..=rad {
                    let c = [c0[0] + 2.0 * dy as f64, c0[1] + 2.0 * dx as f64];
                    model.corrections[[j, 0]] = c[0];
                    model.corrections[[j, 1]] = c[1];
                    let l = obj.evaluate(&model, &[j], None);
                    if l < best.0 {
                        best = (l, c);
                    }
                }
            }
            model.corrections[[j, 0]] = best.1[0];
            model.corrections[[j, 1]] = best.1[1];
            let p = model.position(j);
            let e = ((p[0] - truth.positions[[j, 0]] + off[0]).powi(2)
                + (p[1] - truth.positions[[j, 1]] + off[1]).powi(2))
            .sqrt();
            if e < 1.5 {
                found += 1;
            }
        }
        println!(
            "round {round}: {:?}, within 1.5 px of (truth - start offset): {found}/{}",
            med(&model.positions(), &truth.positions),
            model.len()
        );
    }
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
