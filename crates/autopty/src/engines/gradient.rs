//! The gradient engine: joint refinement of the object, the probe modes, the scan position
//! corrections and the distance by minibatch gradient descent (Adam by default) on the data loss
//! plus regularisers, with the exact gradients of [`crate::objective`].
//!
//! Each parameter group has its own switch, learning rate and start epoch (frozen before). The
//! learning rates are in natural units: object transmission per step; probe as a fraction of
//! its starting RMS amplitude; positions in pixels; the distance as a fraction of its starting
//! value (the optimiser works on `u = z / z0 - 1`).

use crate::dataset::Dataset;
use crate::engines::alignment::{self, Alignment};
use crate::engines::checkpoint::{Checkpointing, JointStart, JointState, LoopState, Parameters};
use crate::engines::curvature_gauge::{self, CurvatureGauge};
use crate::engines::distance_search::{self, DistanceSearch};
use crate::engines::fresnel_scale;
use crate::engines::registration::Registration;
use crate::engines::{Control, Outcome};
use crate::error::{Error, Result};
use crate::geometry::Regime;
use crate::model::{Gradients, Model, ModelSettings};
use crate::objective::Objective;
use crate::ops::band_limit::ObjectBandLimit;
use crate::ops::loss::LossKind;
use crate::ops::{regularise, scan_affine, smooth};
use crate::optim::{Optimizer, OptimizerKind};
use crate::probe;
use crate::reconstruction::{EpochStats, Reconstruction};
use crate::work::Meter;
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Settings of one parameter group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// Whether the group is refined at all.
    pub enabled: bool,
    /// Learning rate (units in the module docs).
    pub lr: f64,
    /// First epoch (from 1) in which the group moves.
    pub start_epoch: usize,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            enabled: true,
            lr: 0.01,
            start_epoch: 1,
        }
    }
}

impl GroupSettings {
    fn new(enabled: bool, lr: f64, start_epoch: usize) -> Self {
        GroupSettings {
            enabled,
            lr,
            start_epoch,
        }
    }

    fn active(&self, epoch: usize) -> bool {
        self.enabled && epoch >= self.start_epoch
    }
}

/// Settings of the gradient engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradientSettings {
    /// Number of epochs (passes over all positions).
    pub epochs: usize,
    /// Positions per minibatch (1 to all).
    pub batch: usize,
    /// Seed of the minibatch shuffling.
    pub seed: u64,
    /// Whole runs ([`run`]: preparation and joint run) from the seeds `seed`, `seed + 1`, ...;
    /// the one with the lowest final loss is kept. On a hard case (large position errors,
    /// noisy data) whether the alignment finds the scan's affine part depends on the minibatch
    /// order, and the final loss tells a run that found it from one that did not.
    pub restarts: usize,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Data loss.
    pub loss: LossKind,
    /// Object group.
    pub object: GroupSettings,
    /// Probe group.
    pub probe: GroupSettings,
    /// Position corrections group.
    pub positions: GroupSettings,
    /// Distance group.
    pub distance: GroupSettings,
    /// Rotate the probe modes into their orthogonal basis every this many epochs (0 = never).
    pub orthogonalise_every: usize,
    /// Object modulus range `[min, max]` outside which a penalty applies.
    pub object_modulus_range: [f32; 2],
    /// Weight of the object modulus penalty (0 = off).
    pub object_modulus_weight: f64,
    /// Weight of the probe energy penalty (0 = off).
    pub probe_energy_weight: f64,
    /// Weight of the L1 penalty on position corrections (0 = off).
    pub position_l1: f64,
    /// Keep the affine part (offset, scale, rotation, shear) of the scan at its starting value
    /// while refining positions: in the near field a scaling of the scan trades against the
    /// distance and the probe's curvature (Fresnel scaling), so the data hardly pin it. [`run`]
    /// holds it during the alignment rounds, at the registration's, when the registration ran
    /// and is trusted (`registration.trusted_fraction` of the pairs agree), and frees it for the
    /// final joint run; [`run_from`] holds whatever the scan starts with.
    pub fix_scan_affine: bool,
    /// Stop when an epoch's loss exceeds this multiple of the first epoch's (divergence).
    pub divergence_factor: f64,
    /// Smoothing (px, standard deviation of a Gaussian) applied to the object gradient in the
    /// first epoch; it falls linearly to zero at `object_smoothing_epochs`. A smooth object
    /// cannot memorise patterns at wrong positions, which widens the range from which the
    /// positions converge (0 = off).
    pub object_smoothing: f64,
    /// Epoch by which the object smoothing has fallen to zero.
    pub object_smoothing_epochs: usize,
    /// Registration of the scan from the data alone before everything else (near field, when
    /// the positions are refined).
    pub registration: Registration,
    /// Search of the starting distance on the loss profile (when the distance is refined).
    pub distance_search: DistanceSearch,
    /// Rounds that recover large position (and distance) errors before the run (when the
    /// positions are refined).
    pub alignment: Alignment,
    /// Before the joint run, move the probe's net curvature into the distance and the scan's
    /// scale, which the data cannot tell apart (near field, when both are refined; see
    /// [`curvature_gauge`]).
    pub curvature_gauge: CurvatureGauge,
    /// Learning-rate decay: every group's rate falls exponentially to this fraction of its
    /// value by the last epoch (1 = constant). Adam's steps stay near the learning rate even
    /// where the gradient is pure noise, so a decay is what lets the fine detail settle.
    pub lr_final_fraction: f64,
    /// Floor of Adam's per-element step denominator for the object, as a fraction
    /// of the group's largest root-mean-square gradient in the step before. Adam moves every
    /// element by about the learning rate, also the weakly lit ones whose gradient is mostly
    /// noise; below the floor the step shrinks in proportion to the gradient, as in gradient
    /// descent (0 = plain Adam).
    pub adam_floor: f64,
    /// Near field: after every epoch the object is low-passed to the spatial frequencies whose
    /// light lands within this fraction of the detector width of where it left the object
    /// (cutoff `b N dx^2 / (lambda z_eff)` cycles/px, at most 1/2; see
    /// [`crate::ops::band_limit`]); the frequencies above hardly reach the detector, and what the
    /// object holds there is noise (0 = off).
    pub object_band_limit: f64,
    /// Frames left out of the run: their patterns are not fitted and their positions stay
    /// where they are. The alignment's rescue rebuilds the object without the frames it is about
    /// to search ([`super::position_rescue`]); not read from job files.
    #[serde(skip)]
    pub held_out: Vec<usize>,
}

impl Default for GradientSettings {
    fn default() -> Self {
        GradientSettings {
            epochs: 300,
            batch: 5,
            seed: 0,
            restarts: 1,
            optimizer: OptimizerKind::Adam,
            loss: LossKind::Amplitude,
            object: GroupSettings::new(true, 0.1, 1),
            probe: GroupSettings::new(true, 0.05, 2),
            positions: GroupSettings::new(true, 0.2, 2),
            distance: GroupSettings::new(true, 2e-3, 5),
            orthogonalise_every: 5,
            object_modulus_range: [0.0, 1.0],
            object_modulus_weight: 0.0,
            probe_energy_weight: 0.0,
            position_l1: 0.0,
            fix_scan_affine: true,
            divergence_factor: 100.0,
            lr_final_fraction: 0.1,
            adam_floor: 0.1,
            object_band_limit: 0.5,
            object_smoothing: 0.0,
            object_smoothing_epochs: 100,
            registration: Registration::default(),
            distance_search: DistanceSearch::default(),
            alignment: Alignment::default(),
            curvature_gauge: CurvatureGauge::default(),
            held_out: Vec::new(),
        }
    }
}

impl GradientSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr_final_fraction > 0.0 && self.lr_final_fraction <= 1.0) {
            return Err(Error::invalid(
                "lr_final_fraction",
                format!(
                    "expected a number in (0, 1], got {}",
                    self.lr_final_fraction
                ),
            ));
        }
        if !(self.adam_floor.is_finite() && self.adam_floor >= 0.0) {
            return Err(Error::invalid(
                "adam_floor",
                format!("expected a finite number >= 0, got {}", self.adam_floor),
            ));
        }
        ObjectBandLimit::validate("object_band_limit", self.object_band_limit)?;
        self.registration.validate()?;
        self.distance_search.validate()?;
        self.alignment.validate()?;
        self.curvature_gauge.validate()?;
        if self.batch == 0 {
            return Err(Error::invalid(
                "batch",
                "expected at least 1 position per minibatch",
            ));
        }
        if self.restarts == 0 {
            return Err(Error::invalid("restarts", "expected at least 1 run, got 0"));
        }
        for (name, g) in [
            ("object", &self.object),
            ("probe", &self.probe),
            ("positions", &self.positions),
            ("distance", &self.distance),
        ] {
            if !(g.lr.is_finite() && g.lr >= 0.0) {
                return Err(Error::invalid(
                    format!("{name} learning rate"),
                    format!("expected a finite non-negative number, got {}", g.lr),
                ));
            }
        }
        Ok(())
    }
}

/// Runs the gradient engine on `data` from the model built with `model_settings`, after the
/// preparation stages the settings ask for: the registration of the scan from the holograms
/// (near field, positions refined), then the alignment rounds (positions refined) or else a
/// distance search (distance refined), each starting from what the stage before found.
pub fn run(
    data: &Dataset,
    model_settings: &ModelSettings,
    settings: &GradientSettings,
    control: Control,
) -> Result<Outcome> {
    run_resumable(data, model_settings, settings, control, None)
}

/// [`run`] with checkpoints: continues from `checkpointing.resume` when given (skipping the
/// preparation stages it had finished) and hands a checkpoint to `checkpointing.save` every
/// `checkpointing.every` epochs, when the run is interrupted and when it ends. With
/// `restarts` > 1 every restart saves to the same checkpoint, so a resumed run continues the
/// restart it was stopped in, and returns it.
pub fn run_resumable(
    data: &Dataset,
    model_settings: &ModelSettings,
    settings: &GradientSettings,
    control: Control,
    mut checkpointing: Option<&mut Checkpointing>,
) -> Result<Outcome> {
    settings.validate()?;
    let mut meter = Meter::start(data.len());
    let resuming = checkpointing
        .as_ref()
        .is_some_and(|c| c.resumed_start().is_some());
    if settings.restarts > 1 && !resuming {
        let mut best: Option<Outcome> = None;
        let mut losses = Vec::with_capacity(settings.restarts);
        let mut stages = Vec::new();
        for k in 0..settings.restarts {
            let one = GradientSettings {
                restarts: 1,
                seed: settings.seed.wrapping_add(k as u64),
                ..settings.clone()
            };
            let each = Control {
                on_epoch: &mut *control.on_epoch,
                stop: control.stop,
            };
            let outcome = run_resumable(
                data,
                model_settings,
                &one,
                each,
                checkpointing.as_deref_mut(),
            )?;
            if control.should_stop() {
                // Interrupted: this restart is what the checkpoint holds.
                return Ok(outcome);
            }
            let restart_stages = outcome.work.iter().flat_map(|w| &w.stages);
            stages.extend(restart_stages.map(|s| crate::work::StageWork {
                stage: format!("restart {}: {}", k + 1, s.stage),
                epoch_equivalents: s.epoch_equivalents,
            }));
            let loss = final_loss(&outcome);
            tracing::info!(
                "restart {} (seed {}): final loss {loss:.4e}",
                k + 1,
                one.seed
            );
            losses.push(loss);
            if best.as_ref().is_none_or(|b| loss < final_loss(b)) {
                best = Some(outcome);
            }
        }
        let mut best = best.expect("at least one restart");
        best.restart_losses = losses;
        best.work = Some(crate::work::Work {
            stages,
            ..meter.finish()
        });
        return Ok(best);
    }
    if let Some(start) = checkpointing.as_ref().and_then(|c| c.resumed_start()) {
        tracing::info!(
            "resume: the preparation stages are done; the joint run starts at {:.6} m",
            start.distance
        );
        let mut joint = GradientSettings {
            fix_scan_affine: false,
            ..settings.clone()
        };
        if holds_geometry(data, settings) {
            joint.distance.enabled = false;
            joint.fix_scan_affine = true;
        }
        let (mut model, objective) = fresh_start(
            data,
            model_settings,
            &joint,
            start.distance,
            start.corrections.as_ref(),
        )?;
        if let Some(p) = &start.probe {
            if p.dim() != model.probe.dim() {
                return Err(Error::invalid(
                    "checkpoint start_probe",
                    format!(
                        "expected shape {:?} (from the data and the model settings), the \
                         checkpoint holds {:?}; the number of probe modes and the frame size \
                         cannot change on resume",
                        model.probe.dim(),
                        p.dim()
                    ),
                ));
            }
            model.probe.assign(p);
        }
        if let Some(c) = checkpointing.as_mut() {
            c.start = Some(start);
        }
        let mut outcome =
            run_from_resumable(data, model, objective, &joint, control, checkpointing)?;
        meter.stage("joint run (resumed)");
        outcome.work = Some(meter.finish());
        return Ok(outcome);
    }
    let mut settings = settings.clone();
    let mut distance = data.geometry.refined_distance();
    let mut corrections = None;
    let mut searched = None;
    let mut aligned = None;
    let mut registered = None;
    let mut trusted = false;
    if settings.positions.enabled
        && settings.registration.enabled
        && data.geometry.regime == Regime::NearField
    {
        // A point source's z1 is also read off the registered scan's scale (fresnel_scale).
        let (r, z1) =
            fresnel_scale::register(data, &settings.registration, settings.distance.enabled)?;
        tracing::info!(
            "registration: {} of {} neighbour pairs kept, median misfit {:.2} px",
            r.pairs_kept,
            r.pairs,
            r.median_misfit
        );
        if let Some(z1) = z1 {
            distance = z1;
        }
        corrections = Some(r.corrections.clone());
        // Hold the scan's affine part only where it is known well.
        trusted = r.trusted(settings.registration.trusted_fraction);
        settings.fix_scan_affine &= trusted;
        registered = Some(r);
    } else {
        settings.fix_scan_affine = false;
    }
    let settings = &settings;
    let rounds = settings.positions.enabled && settings.alignment.rounds > 0;
    // A search from the registered scan (about a pixel off) finds the distance; a search after a
    // round of position refinement at the stored distance may not (at 0.2 m it chose 0.279 m).
    if settings.distance.enabled
        && settings.distance_search.enabled
        && (!rounds || registered.is_some())
    {
        let found = distance_search::search(
            data,
            model_settings,
            settings,
            &settings.distance_search,
            distance,
            corrections.as_ref(),
            &control,
        )?;
        tracing::info!(
            "distance search: {:.6} m from {} trials",
            found.distance,
            found.trials.len()
        );
        distance = found.distance;
        searched = Some(found);
        meter.stage("distance search");
    }
    if rounds {
        let found = searched.as_ref().is_some_and(|f| f.interior);
        let a = alignment::align(
            data,
            model_settings,
            settings,
            distance,
            corrections.as_ref(),
            trusted,
            found,
            &control,
        )?;
        distance = a.distance;
        corrections = Some(a.corrections.clone());
        aligned = Some(a);
        meter.stage("alignment");
    }
    // By now the distance is close to right, so the scan's scale no longer drifts with it, and
    // the joint run may correct the registration's own affine error (measured at 0.1 m: median
    // position error 0.49 px instead of 0.60 px with the affine part still held).
    let joint = GradientSettings {
        fix_scan_affine: false,
        ..settings.clone()
    };
    let mut gauged = Vec::new();
    // The astigmatism of the probe of the member the gauge chose, which the next pass's and the
    // joint run's fresh probes are given.
    let mut astigmatism_handed_on = None;
    if gauge_runs(data, settings) {
        let gauge = &settings.curvature_gauge;
        let stage = GradientSettings {
            epochs: gauge.epochs,
            ..joint.clone()
        };
        for _ in 0..gauge.passes {
            if control.should_stop() {
                break;
            }
            let (mut model, objective) =
                fresh_start(data, model_settings, &stage, distance, corrections.as_ref())?;
            if let Some(a) = astigmatism_handed_on {
                model.probe = curvature_gauge::with_astigmatism(&model.probe, a);
            }
            let quiet = Control {
                on_epoch: &mut |_| {},
                stop: control.stop,
            };
            let astigmatism_lr = gauge.astigmatism.then_some(stage.distance.lr);
            let (measured, astigmatism) =
                run_epochs(data, model, objective, &stage, quiet, None, astigmatism_lr)?;
            if measured.stopped_early.is_some() {
                break;
            }
            let scan_pixel = data.geometry.with_refined_distance(distance).sample_pixel();
            let g = curvature_gauge::transfer(&measured.reconstruction, scan_pixel, astigmatism);
            tracing::info!(
                "curvature gauge: probe curvature {:.4} /m, scale factor {:.5}{}; astigmatism \
                 ({:+.5}, {:+.5}){}",
                g.curvature,
                g.factor,
                if g.applied { "" } else { " (not applied)" },
                g.astigmatism[0],
                g.astigmatism[1],
                if g.astigmatism_applied || g.astigmatism == [0.0; 2] {
                    ""
                } else {
                    " (not applied)"
                }
            );
            let shaped =
                !g.astigmatism_applied || g.astigmatism.iter().all(|e| e.abs() <= gauge.tolerance);
            let done = (!g.applied || (g.factor - 1.0).abs() <= gauge.tolerance) && shaped;
            if g.applied || g.astigmatism_applied {
                distance = g.distance;
                corrections = Some(g.corrections.clone());
            }
            astigmatism_handed_on = Some(curvature_gauge::handed_on_astigmatism(
                &measured.reconstruction,
                &g,
            ));
            gauged.push(g);
            if done {
                break;
            }
        }
        meter.stage("curvature gauge");
    }
    let mut joint = joint;
    if holds_geometry(data, settings) {
        joint.distance.enabled = false;
        joint.fix_scan_affine = true;
    }
    let (mut model, objective) =
        fresh_start(data, model_settings, &joint, distance, corrections.as_ref())?;
    let probe = astigmatism_handed_on.map(|a| {
        model.probe = curvature_gauge::with_astigmatism(&model.probe, a);
        model.probe.clone()
    });
    if let Some(c) = checkpointing.as_mut().filter(|_| !control.should_stop()) {
        c.start = Some(JointStart {
            distance,
            corrections: corrections.clone(),
            probe,
        });
    }
    let mut outcome = run_from_resumable(data, model, objective, &joint, control, checkpointing)?;
    meter.stage("joint run");
    outcome.work = Some(meter.finish());
    outcome.distance_search = searched;
    outcome.alignment = aligned;
    outcome.registration = registered;
    outcome.curvature_gauge = gauged;
    Ok(outcome)
}

/// Whether [`run`] moves the probe's curvature into the geometry before the joint run.
fn gauge_runs(data: &Dataset, settings: &GradientSettings) -> bool {
    settings.curvature_gauge.enabled
        && settings.positions.enabled
        && settings.distance.enabled
        && data.geometry.regime == Regime::NearField
}

/// Whether the joint run of [`run`] keeps the distance and the scan's affine part the curvature
/// gauge chose.
fn holds_geometry(data: &Dataset, settings: &GradientSettings) -> bool {
    settings.curvature_gauge.hold_geometry && gauge_runs(data, settings)
}

/// The last epoch's loss of a run (infinite when it recorded none).
fn final_loss(outcome: &Outcome) -> f64 {
    outcome
        .reconstruction
        .history
        .last()
        .map_or(f64::INFINITY, |s| s.loss)
}

/// A model built from scratch at `distance` (m), with the positions corrected by `corrections`
/// (J x 2 px) when given, and its objective: the start of the run, of every alignment round and
/// of every distance trial.
pub fn fresh_start(
    data: &Dataset,
    model_settings: &ModelSettings,
    settings: &GradientSettings,
    distance: f64,
    corrections: Option<&Array2<f64>>,
) -> Result<(Model, Objective)> {
    let geometry = data.geometry.with_refined_distance(distance);
    let (mut model, propagator) = Model::initial_with_geometry(data, model_settings, geometry)?;
    if let Some(c) = corrections {
        model.corrections.assign(c);
    }
    let objective = Objective::new(
        data,
        propagator,
        settings.loss,
        model_settings.subpixel,
        model_settings.modes,
        settings.batch,
    );
    Ok((model, objective))
}

/// Runs the gradient engine from a given model and objective.
pub fn run_from(
    data: &Dataset,
    model: Model,
    objective: Objective,
    settings: &GradientSettings,
    control: Control,
) -> Result<Outcome> {
    run_from_resumable(data, model, objective, settings, control, None)
}

/// [`run_from`] with checkpoints (see [`run_resumable`]); `model` and `objective` must be the
/// fresh start the checkpointed run began from.
pub fn run_from_resumable(
    data: &Dataset,
    model: Model,
    objective: Objective,
    settings: &GradientSettings,
    control: Control,
    checkpointing: Option<&mut Checkpointing>,
) -> Result<Outcome> {
    let (outcome, _) = run_epochs(
        data,
        model,
        objective,
        settings,
        control,
        checkpointing,
        None,
    )?;
    Ok(outcome)
}

/// The epochs of [`run_from_resumable`]. With `astigmatism_lr`, the propagation's astigmatism
/// (see [`crate::propagate`]) is refined too, from 0 and while the distance is, at that learning
/// rate (the curvature gauge's passes); its final value is returned with the outcome.
fn run_epochs(
    data: &Dataset,
    mut model: Model,
    mut objective: Objective,
    settings: &GradientSettings,
    control: Control,
    mut checkpointing: Option<&mut Checkpointing>,
    astigmatism_lr: Option<f64>,
) -> Result<(Outcome, [f64; 2])> {
    let start = Instant::now();
    objective.need_cross_astigmatism_gradient(astigmatism_lr.is_some());
    let j = model.len();
    let n = model.frame();
    let batch = settings.batch.min(j).min(objective.max_batch()).max(1);
    let width = model.object.ncols();
    let mut grads = Gradients::zeros_like(&model);
    let mut opt_object = Optimizer::new(settings.optimizer, 2 * model.object.len(), 1)
        .with_relative_floor(settings.adam_floor);
    let mut opt_probe = Optimizer::new(settings.optimizer, 2 * model.probe.len(), 1);
    let mut opt_positions = Optimizer::new(settings.optimizer, 2 * j, j);
    let mut opt_distance = Optimizer::new(settings.optimizer, 1, 1);
    let mut opt_astigmatism = Optimizer::new(settings.optimizer, 2, 1);
    let probe_rms =
        (model.probe.iter().map(|v| v.norm_sqr() as f64).sum::<f64>() / (n * n) as f64).sqrt();
    let energy_target = probe::measured_energy(data);
    let z0 = model.distance;
    let mut u = [0.0f64];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(settings.seed);
    let mut order: Vec<usize> = (0..j).filter(|k| !settings.held_out.contains(k)).collect();
    let fitted = order.len();
    let mut history = Vec::with_capacity(settings.epochs);
    let mut last_good = model.clone();
    let mut first_loss = None;
    let mut stopped_early = None;
    let norm = objective.total_measured();
    let reference_corrections = model.corrections.clone();
    let nominal = model.nominal_positions();
    let mut band_limit = ObjectBandLimit::new(settings.object_band_limit, &model);
    // Where the loop starts: (epoch, positions done in it, order shuffled, their loss, seconds).
    let mut resume_at = (1, 0, false, 0.0, 0.0);
    if let Some(state) = checkpointing.as_mut().and_then(|c| c.take_resumed_joint()) {
        let into = LoopState {
            model: &mut model,
            last_good: &mut last_good,
            optimizers: [
                &mut opt_object,
                &mut opt_probe,
                &mut opt_positions,
                &mut opt_distance,
            ],
            u: &mut u,
            rng: &mut rng,
            order: &mut order,
            history: &mut history,
            first_loss: &mut first_loss,
        };
        resume_at = state.restore(into, settings)?;
        tracing::info!(
            "resume: epoch {} after {} of its positions",
            resume_at.0,
            resume_at.1
        );
    }
    let (first_epoch, mut skip, mut shuffled, mut carried_loss, seconds_before) = resume_at;
    let mut interrupted = None;
    // The joint state now, at (epoch, positions done, order shuffled, their loss).
    macro_rules! joint_state {
        ($epoch:expr, $done:expr, $shuffled:expr, $partial:expr, $last_good:expr) => {
            JointState {
                epoch: $epoch,
                done: $done,
                shuffled: $shuffled,
                partial_loss: $partial,
                params: Parameters::of(&model),
                last_good: $last_good,
                optimizers: [&opt_object, &opt_probe, &opt_positions, &opt_distance]
                    .map(|o| o.state()),
                u: u[0],
                rng: rng.clone(),
                order: order.clone(),
                history: history.clone(),
                first_loss,
                seconds: seconds_before + start.elapsed().as_secs_f64(),
                settings: settings.clone(),
            }
        };
    }

    'epochs: for epoch in first_epoch..=settings.epochs {
        if !std::mem::take(&mut shuffled) {
            order.shuffle(&mut rng);
        }
        let mut epoch_loss = std::mem::take(&mut carried_loss);
        let skipped = std::mem::take(&mut skip);
        let progress = (epoch - 1) as f64 / (settings.epochs.max(2) - 1) as f64;
        let decay = settings.lr_final_fraction.powf(progress);
        for (k, chunk) in order[skipped..].chunks(batch).enumerate() {
            if control.should_stop() {
                stopped_early = Some(format!("interrupted during epoch {epoch}"));
                interrupted = Some((epoch, skipped + k * batch, epoch_loss));
                break 'epochs;
            }
            grads.probe.fill(Default::default());
            grads.corrections.fill(0.0);
            grads.distance = 0.0;
            grads.astigmatism = [0.0; 2];
            let loss = objective.evaluate(&model, chunk, Some(&mut grads));
            if !loss.is_finite() {
                stopped_early = Some(format!(
                    "the loss became {loss} in epoch {epoch}; kept the state of epoch {}",
                    epoch - 1
                ));
                model = last_good.clone();
                break 'epochs;
            }
            epoch_loss += loss;
            let scale = fitted as f64 / chunk.len() as f64;
            // Regularisers (scaled to a minibatch's share of the data).
            if settings.object_modulus_weight > 0.0 {
                let [lo, hi] = settings.object_modulus_range;
                regularise::object_modulus_range(
                    &model.object,
                    lo,
                    hi,
                    settings.object_modulus_weight / scale,
                    &mut grads.object,
                );
            }
            if settings.probe_energy_weight > 0.0 {
                regularise::probe_energy(
                    &model.probe,
                    energy_target,
                    settings.probe_energy_weight / scale,
                    &mut grads.probe,
                );
            }
            if settings.position_l1 > 0.0 {
                regularise::position_l1(
                    &model.corrections,
                    settings.position_l1 / scale,
                    &mut grads.corrections,
                );
            }
            // Updates.
            let mut windows: Vec<(usize, usize)> = chunk
                .iter()
                .map(|&k| {
                    let [y, x] = model.position(k);
                    (y.max(0.0) as usize, x.max(0.0) as usize)
                })
                .collect();
            let mut window = n + 2;
            let sigma = settings.object_smoothing
                * (1.0 - (epoch - 1) as f64 / settings.object_smoothing_epochs.max(1) as f64);
            if sigma > 0.5 {
                let e = smooth::reach(sigma);
                let (h, w) = model.object.dim();
                let r0 = windows
                    .iter()
                    .map(|w| w.0)
                    .min()
                    .unwrap_or(0)
                    .saturating_sub(e);
                let c0 = windows
                    .iter()
                    .map(|w| w.1)
                    .min()
                    .unwrap_or(0)
                    .saturating_sub(e);
                let r1 = (windows.iter().map(|w| w.0).max().unwrap_or(0) + window + e).min(h);
                let c1 = (windows.iter().map(|w| w.1).max().unwrap_or(0) + window + e).min(w);
                smooth::gaussian_rect(&mut grads.object, r0..r1, c0..c1, sigma);
                for w in &mut windows {
                    *w = (w.0.saturating_sub(e), w.1.saturating_sub(e));
                }
                window += 2 * e;
            }
            if settings.object.active(epoch) {
                opt_object.step_complex_windows(
                    model.object.as_slice_mut().expect("contiguous"),
                    grads.object.as_slice_mut().expect("contiguous"),
                    width,
                    &windows,
                    window,
                    settings.object.lr * decay,
                );
            } else {
                grads.object.fill(Default::default());
            }
            if settings.probe.active(epoch) {
                opt_probe.step_complex(
                    model.probe.as_slice_mut().expect("contiguous"),
                    grads.probe.as_slice().expect("contiguous"),
                    settings.probe.lr * decay * probe_rms,
                );
            }
            if settings.positions.active(epoch) {
                opt_positions.step_rows(
                    model.corrections.as_slice_mut().expect("contiguous"),
                    grads.corrections.as_slice().expect("contiguous"),
                    2,
                    chunk,
                    settings.positions.lr * decay,
                );
            }
            if settings.distance.active(epoch) {
                opt_distance.step_rows(
                    &mut u,
                    &[grads.distance * z0],
                    1,
                    &[0],
                    settings.distance.lr,
                );
                // Keep the distance positive.
                u[0] = u[0].max(-0.9);
                model.distance = z0 * (1.0 + u[0]);
            }
            if let Some(lr) = astigmatism_lr.filter(|_| settings.distance.active(epoch)) {
                opt_astigmatism.step_rows(&mut model.astigmatism, &grads.astigmatism, 2, &[0], lr);
            }
        }
        if settings.fix_scan_affine && settings.positions.active(epoch) {
            scan_affine::keep_affine_part(&mut model.corrections, &reference_corrections, &nominal);
        }
        if let Some(limit) = band_limit
            .as_mut()
            .filter(|_| settings.object.active(epoch))
        {
            limit.apply(&mut model);
        }
        if settings.object_modulus_weight > 0.0 {
            // The penalty's gradient outside this epoch's windows was never stepped.
            grads.object.fill(Default::default());
        }
        if settings.orthogonalise_every > 0 && epoch % settings.orthogonalise_every == 0 {
            probe::orthogonalise(&mut model.probe);
        }
        let loss = epoch_loss / norm;
        let diverged = first_loss.is_some_and(|f: f64| loss > f * settings.divergence_factor);
        if !model.is_finite() || !loss.is_finite() || diverged {
            stopped_early = Some(format!(
                "diverged in epoch {epoch} (loss {loss:.3e}); kept the state of epoch {}",
                epoch - 1
            ));
            model.clone_from(&last_good);
            break;
        }
        first_loss.get_or_insert(loss);
        let stats = EpochStats {
            epoch,
            loss,
            distance: model.distance,
            median_correction: model.median_correction(),
            seconds: seconds_before + start.elapsed().as_secs_f64(),
        };
        (control.on_epoch)(&stats);
        history.push(stats);
        last_good.clone_from(&model);
        if let Some(c) = checkpointing
            .as_mut()
            .filter(|c| c.due(epoch, settings.epochs))
        {
            c.save(
                Some(joint_state!(epoch + 1, 0, false, 0.0, None)),
                &model,
                &history,
            )?;
        }
    }
    // The final checkpoint: where an interruption left the epoch, or past the last epoch (a
    // diverged run keeps its last periodic checkpoint).
    let diverged = stopped_early.is_some() && interrupted.is_none();
    if let Some(c) = checkpointing.filter(|_| !diverged) {
        let (epoch, done, partial_loss) = interrupted.unwrap_or((settings.epochs + 1, 0, 0.0));
        let last = interrupted.map(|_| Parameters::of(&last_good));
        let joint = joint_state!(epoch, done, interrupted.is_some(), partial_loss, last);
        c.save(Some(joint), &model, &history)?;
    }

    let reconstruction = Reconstruction {
        engine: match settings.optimizer {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        }
        .into(),
        positions: model.positions(),
        nominal_positions: model.nominal_positions(),
        geometry: model.geometry(),
        object: model.object,
        probe: model.probe,
        history,
        settings: serde_json::to_value(settings).unwrap_or_default(),
    };
    let astigmatism = model.astigmatism;
    let outcome = Outcome {
        reconstruction,
        stopped_early,
        distance_search: None,
        alignment: None,
        registration: None,
        curvature_gauge: Vec::new(),
        restart_losses: Vec::new(),
        work: None,
    };
    Ok((outcome, astigmatism))
}
