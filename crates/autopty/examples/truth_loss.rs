//! Loss of the ground truth under autopty's model: the floor that a reconstruction of this
//! dataset can reach (a check of model mismatch between simulator and reconstruction).
//! Usage: `cargo run --release --example truth_loss -- DATA.cxi DATA.truth.h5 [PADDED_SIZE]`
use autopty::model::{Model, ModelSettings};
use autopty::objective::Objective;
use autopty::ops::loss::LossKind;
use std::path::Path;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let data = autopty::io::cxi::read(Path::new(&a[1]), &Default::default()).unwrap();
    let truth = autopty::io::truth::read(Path::new(&a[2])).unwrap();
    let pad: Option<usize> = a.get(3).map(|v| v.parse().unwrap());
    let ms = ModelSettings {
        padded_size: pad,
        ..Default::default()
    };
    let (mut model, prop) = Model::initial(&data, &ms).unwrap();
    println!(
        "padded {:?}",
        match &prop {
            autopty::propagate::Propagator::Near(p) => p.padded(),
            _ => 0,
        }
    );
    let mut obj = Objective::new(&data, prop, LossKind::Amplitude, ms.subpixel, 1, 5);
    let l0 = obj.total_loss(&model) / obj.total_measured();
    model.object = truth.object.clone();
    model.probe = truth.probe.clone();
    for j in 0..model.len() {
        let nom = model.nominal_position(j);
        model.corrections[[j, 0]] = truth.positions[[j, 0]] - nom[0];
        model.corrections[[j, 1]] = truth.positions[[j, 1]] - nom[1];
    }
    let l1 = obj.total_loss(&model) / obj.total_measured();
    println!("initial {l0:e} truth {l1:e}");
}
