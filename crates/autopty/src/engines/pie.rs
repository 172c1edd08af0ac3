//! ePIE (Maiden & Rodenburg 2009) and rPIE (Maiden, Johnson & Li 2017): sequential updates of
//! the object and the probe modes from one diffraction pattern at a time, in a new random order
//! every epoch, with an optional refinement of the scan positions. The distance stays fixed.
//!
//! For each position (views, sub-pixel model and modulus constraint in [`super::exit_wave`]):
//! exit waves `psi_m = P_m O`, corrections `chi_m = psi'_m - psi_m`, then
//!
//! ```text
//! object:  O   += sum_m conj(P_m) chi_m / D_O,   probe:  P_m += conj(O) chi_m / D_P
//! ePIE:    D_O = max_r sum_m |P_m|^2 / alpha,      D_P = max_r |O|^2 / beta
//! rPIE:    D_O = (1 - alpha) sum_m |P_m|^2 + alpha max_r sum_m |P_m|^2
//!          D_P = (1 - beta) |O|^2 + beta max_r |O|^2
//! ```
//!
//! (the modal form of Thibault & Menzel 2013: every mode sees the same object and the object
//! update sums over the modes). The probe update uses the object before this position's object
//! update. With the Fourier sub-pixel model the probe is held as spectra; the moved probe `P_s`
//! is updated and its change moved back (one FFT per mode), so a position costs the same FFTs as
//! a gradient step with batch 1.
//!
//! **Position refinement** (our choice among the published ones): a Gauss-Newton step on the
//! data error with respect to the position, computed from the same correction (in the spirit of
//! Odstrcil et al. 2018). Moving the object under the probe by `d` changes the exit wave by
//! `d P_s dO/dp` to first order (`dO/dp` by central differences of the object), so the
//! least-squares move that best explains `chi` is, per axis,
//! `d = Re sum conj(P_s dO/dp) chi / sum |P_s dO/dp|^2`; it equals minus the gradient of the
//! amplitude loss with respect to the position over its Gauss-Newton curvature. The step is
//! damped by `step` and capped at `max_step` px per update.

use crate::dataset::Dataset;
use crate::engines::epochs::EpochLog;
use crate::engines::exit_wave::{
    fused_modulus_correction, max_mode_power, modulus_correction, Patterns, ProbeShifter, View,
};
use crate::engines::{Control, Outcome};
use crate::error::{Error, Result};
use crate::model::{Model, ModelSettings, Subpixel};
use crate::ops::band_limit::ObjectBandLimit;
use crate::ops::modes::exit_waves;
use crate::probe;
use crate::propagate::Propagator;
use crate::simd::wide_kernel;
use ndarray::Array2;
use num_complex::Complex32;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Which PIE update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PieVariant {
    /// Extended PIE: steps scaled by the largest probe / object power.
    Epie,
    /// Regularised PIE: a blend of the local and the largest power in the denominators.
    Rpie,
}

impl PieVariant {
    /// Engine name in outputs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PieVariant::Epie => "epie",
            PieVariant::Rpie => "rpie",
        }
    }
}

/// The two constants of a PIE variant (meaning in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieSteps {
    /// Object constant alpha.
    pub alpha: f64,
    /// Probe constant beta.
    pub beta: f64,
}

/// Position refinement of the PIE engines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiePositions {
    /// Whether positions are refined.
    pub enabled: bool,
    /// First epoch (from 1) in which positions move.
    pub start_epoch: usize,
    /// Fraction of the Gauss-Newton step taken.
    pub step: f64,
    /// Largest move of one position in one update (px).
    pub max_step: f64,
}

impl Default for PiePositions {
    fn default() -> Self {
        PiePositions {
            enabled: true,
            start_epoch: 2,
            step: 0.5,
            max_step: 0.5,
        }
    }
}

/// Settings of the ePIE and rPIE engines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PieSettings {
    /// Number of epochs (sweeps over all positions).
    pub epochs: usize,
    /// Seed of the position order.
    pub seed: u64,
    /// ePIE step sizes (Maiden & Rodenburg 2009 use 1 and 1).
    pub epie: PieSteps,
    /// rPIE constants (Maiden, Johnson & Li 2017).
    pub rpie: PieSteps,
    /// First epoch (from 1) in which the probe is updated.
    pub probe_start_epoch: usize,
    /// Rotate the probe modes into their orthogonal basis every this many epochs (0 = never).
    pub orthogonalise_every: usize,
    /// Position refinement.
    pub positions: PiePositions,
    /// Stop when an epoch's loss exceeds this multiple of the first epoch's (divergence).
    pub divergence_factor: f64,
    /// Near field: the object's band limit after every epoch, as a fraction of the detector
    /// width (see [`crate::ops::band_limit`]; 0 = off).
    pub object_band_limit: f64,
}

impl Default for PieSettings {
    fn default() -> Self {
        PieSettings {
            epochs: 200,
            seed: 0,
            epie: PieSteps {
                alpha: 1.0,
                beta: 1.0,
            },
            rpie: PieSteps {
                alpha: 0.25,
                beta: 0.5,
            },
            probe_start_epoch: 2,
            orthogonalise_every: 5,
            positions: PiePositions::default(),
            divergence_factor: 100.0,
            object_band_limit: 0.5,
        }
    }
}

impl PieSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let in_unit = |what: &str, v: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("pie {what}"),
                    format!(
                        "expected a number in {}0, 1], got {v}",
                        if lo_open { "(" } else { "[" }
                    ),
                ))
            }
        };
        in_unit("epie alpha", self.epie.alpha, true)?;
        in_unit("epie beta", self.epie.beta, false)?;
        in_unit("rpie alpha", self.rpie.alpha, true)?;
        in_unit("rpie beta", self.rpie.beta, true)?;
        let p = &self.positions;
        if !(p.step.is_finite() && p.step >= 0.0 && p.max_step.is_finite() && p.max_step >= 0.0) {
            return Err(Error::invalid(
                "pie positions",
                format!(
                    "expected finite non-negative step and max_step, got {} and {}",
                    p.step, p.max_step
                ),
            ));
        }
        if self.divergence_factor.is_nan() || self.divergence_factor <= 1.0 {
            return Err(Error::invalid(
                "pie divergence_factor",
                format!("expected a number above 1, got {}", self.divergence_factor),
            ));
        }
        ObjectBandLimit::validate("pie object_band_limit", self.object_band_limit)
    }

    fn steps(&self, variant: PieVariant) -> PieSteps {
        match variant {
            PieVariant::Epie => self.epie,
            PieVariant::Rpie => self.rpie,
        }
    }
}

/// Runs ePIE or rPIE on `data` from the model built with `model_settings`.
pub fn run(
    data: &Dataset,
    model_settings: &ModelSettings,
    settings: &PieSettings,
    variant: PieVariant,
    control: Control,
) -> Result<Outcome> {
    settings.validate()?;
    let (model, propagator) = Model::initial(data, model_settings)?;
    run_from(
        data,
        model,
        propagator,
        model_settings.subpixel,
        settings,
        variant,
        control,
    )
}

/// Per-position buffers of a PIE sweep.
struct Buffers {
    patch: Vec<Complex32>,
    probe: Vec<Complex32>,
    waves: Vec<Complex32>,
    delta: Vec<Complex32>,
    object_change: Vec<Complex32>,
}

/// Runs ePIE or rPIE from a given model and the propagator of its geometry.
pub fn run_from(
    data: &Dataset,
    mut model: Model,
    mut propagator: Propagator,
    subpixel: Subpixel,
    settings: &PieSettings,
    variant: PieVariant,
    mut control: Control,
) -> Result<Outcome> {
    settings.validate()?;
    propagator.set_distance(model.propagation_distance());
    let patterns = Patterns::for_propagator(data, &propagator);
    let (n, modes) = (model.frame(), model.probe.shape()[0]);
    let nn = n * n;
    let steps = settings.steps(variant);
    let fourier = subpixel == Subpixel::Fourier;
    let shifter = ProbeShifter::new(n);
    let mut fft_work = shifter.work();
    let mut prop_work = propagator.work();
    let mut fused_work = propagator.fused_work(modes);
    let mut spectra = vec![Complex32::default(); modes * nn];
    if fourier {
        shifter.to_spectra(
            model.probe.as_slice().expect("contiguous probe"),
            &mut spectra,
            &mut fft_work,
        );
    }
    let mut buf = Buffers {
        patch: vec![Complex32::default(); nn],
        probe: vec![Complex32::default(); modes * nn],
        waves: vec![Complex32::default(); modes * nn],
        delta: vec![Complex32::default(); modes * nn],
        object_change: vec![Complex32::default(); nn],
    };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(settings.seed);
    let mut order: Vec<usize> = (0..model.len()).collect();
    let mut log = EpochLog::new(&model, settings.divergence_factor);
    let mut stopped_early = None;
    let mut band_limit = ObjectBandLimit::new(settings.object_band_limit, &model);

    'epochs: for epoch in 1..=settings.epochs {
        order.shuffle(&mut rng);
        let probe_active = epoch >= settings.probe_start_epoch;
        let positions_active =
            settings.positions.enabled && epoch >= settings.positions.start_epoch;
        // The sweep runs on a rayon worker: the large passes inside each position are split
        // into tasks there, which the other workers take (see `crate::fft`); a thread outside
        // the pool would not split them.
        let stop = control.stop;
        let (loss, interrupted) = rayon::scope(|_| {
            let mut loss = 0.0;
            for &j in &order {
                if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                    return (loss, true);
                }
                let view = View::of(&model, j, subpixel);
                let ramp = shifter.ramp(view.shift);
                // The patch and the moved probe, side by side.
                rayon::join(
                    || view.read(&model.object, n, &mut buf.patch),
                    || {
                        if fourier {
                            shifter.moved(&spectra, &ramp, &mut buf.probe, &mut fft_work);
                        } else {
                            buf.probe
                                .copy_from_slice(model.probe.as_slice().expect("contiguous probe"));
                        }
                    },
                );
                exit_waves(&buf.probe, &buf.patch, &mut buf.waves);
                loss += if patterns.transposed() {
                    let data = patterns.get(j);
                    fused_modulus_correction(
                        &propagator,
                        &mut buf.waves,
                        view.shift,
                        data,
                        &mut fused_work,
                    )
                } else {
                    modulus_correction(
                        &propagator,
                        &mut buf.waves,
                        nn,
                        view.shift,
                        patterns.get(j),
                        &mut prop_work,
                    )
                };
                // The object's side and the probe's side of the update read and write
                // different buffers: they run side by side.
                let Buffers {
                    patch,
                    probe,
                    waves,
                    delta,
                    object_change: change,
                } = &mut buf;
                let (object, probe_frames) = (&mut model.object, &mut model.probe);
                let (spectra, fft_work, ramp) = (&mut spectra, &mut fft_work, &ramp);
                let (moved, ()) = rayon::join(
                    || {
                        // The position step reads the object before its update.
                        let moved = (positions_active && !view.clamped)
                            .then(|| {
                                position_step(object, &view, n, probe, waves, &settings.positions)
                            })
                            .flatten();
                        if object_change(probe, waves, variant, steps.alpha, change) {
                            view.add(object, n, change);
                        }
                        moved
                    },
                    || {
                        if !probe_active || !probe_change(patch, waves, delta, variant, steps.beta)
                        {
                            return;
                        }
                        if fourier {
                            shifter.add_moved_change(delta, ramp, spectra, fft_work);
                        } else {
                            let frames = probe_frames.as_slice_mut().expect("contiguous probe");
                            for (p, d) in frames.iter_mut().zip(delta.iter()) {
                                *p += d;
                            }
                        }
                    },
                );
                if let Some([dy, dx]) = moved {
                    model.corrections[[j, 0]] += dy;
                    model.corrections[[j, 1]] += dx;
                }
            }
            (loss, false)
        });
        if interrupted {
            stopped_early = Some(format!("interrupted during epoch {epoch}"));
            break 'epochs;
        }
        if fourier {
            shifter.to_frames(
                &spectra,
                model.probe.as_slice_mut().expect("contiguous probe"),
                &mut fft_work,
            );
        }
        if let Some(limit) = band_limit.as_mut() {
            limit.apply(&mut model);
        }
        if probe_active
            && modes > 1
            && settings.orthogonalise_every > 0
            && epoch % settings.orthogonalise_every == 0
        {
            probe::orthogonalise(&mut model.probe);
            if fourier {
                shifter.to_spectra(
                    model.probe.as_slice().expect("contiguous probe"),
                    &mut spectra,
                    &mut fft_work,
                );
            }
        }
        let loss = loss / patterns.total_measured();
        if let Some(why) = log.record(epoch, loss, &mut model, &mut control) {
            stopped_early = Some(why);
            break;
        }
    }
    let mut record = serde_json::to_value(settings).unwrap_or_default();
    if let Some(map) = record.as_object_mut() {
        map.insert("variant".into(), variant.name().into());
    }
    Ok(log.finish(variant.name(), model, record, stopped_early))
}

/// The object change of one position (into `out`, nn values) from the moved probe modes and
/// their corrections (M * nn values each); false when the probe is empty.
fn object_change(
    probe: &[Complex32],
    chi: &[Complex32],
    variant: PieVariant,
    alpha: f64,
    out: &mut [Complex32],
) -> bool {
    let nn = out.len();
    let max_power = max_mode_power(probe, nn);
    if max_power <= 0.0 {
        return false;
    }
    let alpha = alpha as f32;
    // Sweeps over whole frames (one per mode) rather than a stride per pixel, so that they
    // vectorise; ePIE's constant denominator is folded into them.
    let scale = match variant {
        PieVariant::Epie => alpha / max_power,
        PieVariant::Rpie => 1.0,
    };
    for (m, (p, c)) in probe.chunks_exact(nn).zip(chi.chunks_exact(nn)).enumerate() {
        scaled_conj_products(p, c, scale, m > 0, out);
    }
    if variant == PieVariant::Rpie {
        for (i, o) in out.iter_mut().enumerate() {
            let power: f32 = probe.iter().skip(i).step_by(nn).map(|p| p.norm_sqr()).sum();
            *o /= (1.0 - alpha) * power + alpha * max_power;
        }
    }
    true
}

/// The change of every moved probe mode (into `delta`, M x nn values) from the object `patch`
/// (nn values) and the corrections `chi` (like `delta`); false when the patch is empty (nothing
/// to update).
fn probe_change(
    patch: &[Complex32],
    chi: &[Complex32],
    delta: &mut [Complex32],
    variant: PieVariant,
    beta: f64,
) -> bool {
    let nn = patch.len();
    let max_power = max_mode_power(patch, nn);
    if max_power <= 0.0 || beta == 0.0 {
        return false;
    }
    let beta = beta as f32;
    for (d, c) in delta.chunks_exact_mut(nn).zip(chi.chunks_exact(nn)) {
        match variant {
            PieVariant::Epie => scaled_conj_products(patch, c, beta / max_power, false, d),
            PieVariant::Rpie => {
                for ((dv, cv), o) in d.iter_mut().zip(c).zip(patch) {
                    *dv = o.conj() * cv / ((1.0 - beta) * o.norm_sqr() + beta * max_power);
                }
            }
        }
    }
    true
}

wide_kernel! {
    /// `out = conj(a) b scale`, or `out += conj(a) b scale` with `add`.
    fn scaled_conj_products(
        a: &[Complex32],
        b: &[Complex32],
        scale: f32,
        add: bool,
        out: &mut [Complex32],
    ) {
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            let v = a.conj() * b * scale;
            *o = if add { *o + v } else { v };
        }
    }
}

/// The damped Gauss-Newton move (px, (row, col)) of one position that best explains the
/// corrections `chi` of the exit waves of the moved probe modes `probe` (M x N^2 values each;
/// module docs); `None` at the object's edge or where the object is flat.
fn position_step(
    object: &Array2<Complex32>,
    view: &View,
    n: usize,
    probe: &[Complex32],
    chi: &[Complex32],
    settings: &PiePositions,
) -> Option<[f64; 2]> {
    let (h, w) = object.dim();
    let (r0, c0) = (view.placement.row, view.placement.col);
    if r0 == 0 || c0 == 0 || r0 + n + 1 > h || c0 + n + 1 > w {
        return None;
    }
    let obj = object.as_slice().expect("contiguous object");
    let nn = n * n;
    let (mut num, mut den) = ([0.0f64; 2], [0.0f64; 2]);
    for (p, chi) in probe.chunks_exact(nn).zip(chi.chunks_exact(nn)) {
        for r in 0..n {
            let row = |dr: usize| {
                let start = (r0 + r + dr - 1) * w + c0 - 1;
                &obj[start..start + n + 2]
            };
            let rows = [row(0), row(1), row(2)];
            let at = r * n..(r + 1) * n;
            let [ny, nx, dy2, dx2] = position_row_sums(rows, &p[at.clone()], &chi[at]);
            num[0] += ny as f64;
            num[1] += nx as f64;
            den[0] += dy2 as f64;
            den[1] += dx2 as f64;
        }
    }
    let limit = settings.max_step;
    let axis = |k: usize| {
        if den[k] > 0.0 {
            (settings.step * num[k] / den[k]).clamp(-limit, limit)
        } else {
            0.0
        }
    };
    let d = [axis(0), axis(1)];
    (d[0].is_finite() && d[1].is_finite()).then_some(d)
}

wide_kernel! {
    /// One row's sums for [`position_step`]: with the object gradients `g_y`, `g_x` by central
    /// differences (`rows` = the object rows above, at and below the patch row, each with one
    /// pixel more on either side) and `t = P g`, the sums of `Re(conj(t_y) chi)`,
    /// `Re(conj(t_x) chi)`, `|t_y|^2` and `|t_x|^2`, in eight independent lanes so that the loop
    /// vectorises.
    fn position_row_sums(
        rows: [&[Complex32]; 3],
        probe: &[Complex32],
        chi: &[Complex32],
    ) -> [f32; 4] {
        const LANES: usize = 8;
        let n = probe.len();
        let [above, here, below] = rows;
        let (above, below, left, right) = (&above[1..=n], &below[1..=n], &here[..n], &here[2..]);
        let mut acc = [[0.0f32; LANES]; 4];
        let mut add = |lane: usize, p: Complex32, x: Complex32, dy: Complex32, dx: Complex32| {
            let ty = p * dy * 0.5;
            let tx = p * dx * 0.5;
            acc[0][lane] += ty.re * x.re + ty.im * x.im;
            acc[1][lane] += tx.re * x.re + tx.im * x.im;
            acc[2][lane] += ty.norm_sqr();
            acc[3][lane] += tx.norm_sqr();
        };
        let whole = n - n % LANES;
        for i in (0..whole).step_by(LANES) {
            let (p8, x8) = (&probe[i..i + LANES], &chi[i..i + LANES]);
            let (a8, b8) = (&above[i..i + LANES], &below[i..i + LANES]);
            let (l8, r8) = (&left[i..i + LANES], &right[i..i + LANES]);
            for lane in 0..LANES {
                add(
                    lane,
                    p8[lane],
                    x8[lane],
                    b8[lane] - a8[lane],
                    r8[lane] - l8[lane],
                );
            }
        }
        for i in whole..n {
            add(0, probe[i], chi[i], below[i] - above[i], right[i] - left[i]);
        }
        acc.map(|lanes| lanes.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_settings_by_name() {
        assert!(PieSettings::default().validate().is_ok());
        let mut s = PieSettings::default();
        s.epie.alpha = 0.0;
        assert!(s.validate().unwrap_err().to_string().contains("epie alpha"));
        let mut s = PieSettings::default();
        s.rpie.beta = 1.5;
        assert!(s.validate().unwrap_err().to_string().contains("rpie beta"));
        let mut s = PieSettings::default();
        s.positions.max_step = -1.0;
        assert!(s.validate().unwrap_err().to_string().contains("max_step"));
        let s = PieSettings {
            divergence_factor: f64::NAN,
            ..PieSettings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("divergence"));
    }
}
