//! The classical engines (ePIE, rPIE, DM, RAAR) on small noise-free simulations of the `farfield`
//! preset (64 x 64 px, 100-point spiral): reconstruction to a magnitude SSIM of at least 0.9
//! with correct metadata, the loss they report, position refinement, multimode probes and the
//! bilinear sub-pixel model.

use autopty::engines::dm::{self, DmSettings, DmVariant};
use autopty::engines::pie::{self, PieSettings, PieVariant};
use autopty::engines::{Control, Outcome};
use autopty::metrics::{score, Score};
use autopty::model::{Model, ModelSettings, Subpixel};
use autopty::objective::Objective;
use autopty::ops::loss::LossKind;
use autopty::{Dataset, EpochStats, Truth};
use std::sync::OnceLock;

/// The `farfield` preset without noise, with `jitter` px errors in the stored positions and
/// `modes` probe modes.
fn simulate(jitter: f64, modes: usize) -> (Dataset, Truth) {
    let mut cfg = autopty::sim::preset("farfield").unwrap();
    cfg.noise.poisson = false;
    cfg.corruption.position_jitter = jitter;
    cfg.corruption.distance_error = 0.0;
    cfg.probe.modes = modes;
    autopty::sim::simulate(&cfg).unwrap()
}

fn exact() -> &'static (Dataset, Truth) {
    static DATA: OnceLock<(Dataset, Truth)> = OnceLock::new();
    DATA.get_or_init(|| simulate(0.0, 1))
}

fn pie_run(
    data: &Dataset,
    model: &ModelSettings,
    settings: &PieSettings,
    variant: PieVariant,
) -> Outcome {
    let mut on_epoch = |_: &EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    pie::run(data, model, settings, variant, control).unwrap()
}

fn dm_run(
    data: &Dataset,
    model: &ModelSettings,
    settings: &DmSettings,
    variant: DmVariant,
) -> Outcome {
    let mut on_epoch = |_: &EpochStats| {};
    let control = Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    dm::run(data, model, settings, variant, control).unwrap()
}

/// Scores a finished run, prints what it reached and checks that its loss fell by at least
/// `min_fall`; returns the score and the final loss.
fn check(name: &str, outcome: &Outcome, truth: &Truth, min_fall: f64) -> (Score, f64) {
    assert!(
        outcome.stopped_early.is_none(),
        "{name}: {:?}",
        outcome.stopped_early
    );
    let rec = &outcome.reconstruction;
    assert_eq!(rec.engine, name.split(' ').next().unwrap());
    let first = rec.history.first().unwrap().loss;
    let last = rec.history.last().unwrap();
    let s = score(rec, truth).unwrap();
    eprintln!(
        "{name}: {} epochs in {:.2} s, loss {first:.3e} -> {:.3e}, SSIM magnitude {:.3}, \
         phase {:.3}, NRMSE {:.3}, position error {:?}",
        rec.history.len(),
        last.seconds,
        last.loss,
        s.ssim_magnitude,
        s.ssim_phase,
        s.nrmse,
        s.position_error_median
    );
    assert!(
        last.loss < first / min_fall,
        "{name}: loss fell only from {first:e} to {:e}",
        last.loss
    );
    (s, last.loss)
}

fn no_positions(epochs: usize) -> PieSettings {
    let mut s = PieSettings {
        epochs,
        ..PieSettings::default()
    };
    s.positions.enabled = false;
    s
}

// Measured (farfield, noise-free, exact metadata): ePIE 0.93 in 150 epochs, rPIE 0.94 in 100,
// DM 0.94 and RAAR 0.93 in 200 and 300 iterations; the bound is the 0.9.

#[test]
fn epie_reconstructs_with_correct_metadata() {
    let (data, truth) = exact();
    let out = pie_run(
        data,
        &ModelSettings::default(),
        &no_positions(150),
        PieVariant::Epie,
    );
    let (s, _) = check("epie", &out, truth, 50.0);
    assert!(
        s.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
}

#[test]
fn rpie_reconstructs_with_correct_metadata() {
    let (data, truth) = exact();
    let out = pie_run(
        data,
        &ModelSettings::default(),
        &no_positions(100),
        PieVariant::Rpie,
    );
    let (s, _) = check("rpie", &out, truth, 50.0);
    assert!(
        s.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
}

#[test]
fn dm_reconstructs_with_correct_metadata() {
    let (data, truth) = exact();
    let settings = DmSettings {
        epochs: 200,
        ..DmSettings::default()
    };
    let out = dm_run(data, &ModelSettings::default(), &settings, DmVariant::Dm);
    let (s, _) = check("dm", &out, truth, 50.0);
    assert!(
        s.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
}

#[test]
fn raar_reconstructs_with_correct_metadata() {
    let (data, truth) = exact();
    let settings = DmSettings {
        epochs: 300,
        ..DmSettings::default()
    };
    let out = dm_run(data, &ModelSettings::default(), &settings, DmVariant::Raar);
    let (s, _) = check("raar", &out, truth, 50.0);
    assert!(
        s.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
}

#[test]
fn pie_reports_the_gradient_engines_loss() {
    // With (almost) no updates, the first epoch's loss is the objective's loss of the start.
    let (data, _) = exact();
    let ms = ModelSettings::default();
    let (model, propagator) = Model::initial(data, &ms).unwrap();
    let mut objective = Objective::new(data, propagator, LossKind::Amplitude, ms.subpixel, 1, 8);
    let want = objective.total_loss(&model) / objective.total_measured();
    let mut settings = no_positions(1);
    settings.epie.alpha = 1e-9;
    settings.epie.beta = 0.0;
    let out = pie_run(data, &ms, &settings, PieVariant::Epie);
    let got = out.reconstruction.history[0].loss;
    assert!(
        (got - want).abs() < 1e-5 * want,
        "ePIE reports {got:e}, the objective {want:e}"
    );
}

#[test]
fn rpie_refines_positions() {
    // Stored positions off by 1 px (sigma): without refinement the reconstruction fails.
    let (data, truth) = simulate(1.0, 1);
    let mut settings = no_positions(150);
    let fixed = pie_run(
        &data,
        &ModelSettings::default(),
        &settings,
        PieVariant::Rpie,
    );
    settings.positions.enabled = true;
    settings.positions.start_epoch = 2;
    let refined = pie_run(
        &data,
        &ModelSettings::default(),
        &settings,
        PieVariant::Rpie,
    );
    let (s_fixed, _) = check("rpie (positions fixed)", &fixed, &truth, 1.0);
    let (s_refined, _) = check("rpie (positions refined)", &refined, &truth, 50.0);
    // Measured: 1.25 px and SSIM 0.42 fixed; 0.17 px and SSIM 0.91 refined.
    assert!(s_fixed.position_error_median.unwrap() > 1.0);
    let err = s_refined.position_error_median.unwrap();
    assert!(err < 0.3, "median position error {err} px");
    assert!(
        s_refined.ssim_magnitude > 0.85,
        "magnitude SSIM {}",
        s_refined.ssim_magnitude
    );
    assert!(
        refined
            .reconstruction
            .history
            .last()
            .unwrap()
            .median_correction
            > 0.5
    );
}

#[test]
fn modes_fit_partially_coherent_data() {
    // Two simulated modes (85 % / 15 % of the power): one mode cannot fit the data.
    let (data, truth) = simulate(0.0, 2);
    let settings = no_positions(100);
    let one = ModelSettings::default();
    let two = ModelSettings {
        modes: 2,
        ..ModelSettings::default()
    };
    let (_, l1) = check(
        "rpie (1 mode)",
        &pie_run(&data, &one, &settings, PieVariant::Rpie),
        &truth,
        1.0,
    );
    let out = pie_run(&data, &two, &settings, PieVariant::Rpie);
    let (s2, l2) = check("rpie (2 modes)", &out, &truth, 50.0);
    // Measured: 1.6e-3 with one mode, 1.1e-4 and SSIM 0.95 with two.
    assert!(l2 < l1 / 5.0, "2 modes {l2:e}, 1 mode {l1:e}");
    assert!(
        s2.ssim_magnitude >= 0.9,
        "magnitude SSIM {}",
        s2.ssim_magnitude
    );
    let fractions = autopty::probe::power_fractions(&out.reconstruction.probe);
    assert!(
        (fractions[1] - 0.15).abs() < 0.05,
        "second mode holds {:.3} of the power",
        fractions[1]
    );
    let dm_settings = DmSettings {
        epochs: 100,
        ..DmSettings::default()
    };
    let (_, d1) = check(
        "dm (1 mode)",
        &dm_run(&data, &one, &dm_settings, DmVariant::Dm),
        &truth,
        1.0,
    );
    let (_, d2) = check(
        "dm (2 modes)",
        &dm_run(&data, &two, &dm_settings, DmVariant::Dm),
        &truth,
        50.0,
    );
    // Measured: 1.1e-3 and 4.8e-4.
    assert!(d2 < d1 / 1.5, "2 modes {d2:e}, 1 mode {d1:e}");
}

#[test]
fn bilinear_subpixel_model_reconstructs() {
    let (data, truth) = exact();
    let ms = ModelSettings {
        subpixel: Subpixel::Bilinear,
        ..ModelSettings::default()
    };
    let (s, loss) = check(
        "rpie (bilinear)",
        &pie_run(data, &ms, &no_positions(100), PieVariant::Rpie),
        truth,
        50.0,
    );
    // Measured: 0.85, the interpolation blur costs some (0.94 with Fourier shifts).
    assert!(
        s.ssim_magnitude > 0.8,
        "magnitude SSIM {}",
        s.ssim_magnitude
    );
    assert!(loss < 1.5e-3, "loss {loss:e}");
}
