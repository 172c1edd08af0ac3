//! The data loss over a minibatch of scan positions and its exact gradient with respect to every
//! parameter group, composed from the operators in [`crate::ops`]:
//!
//! ```text
//! position p_j ─► sampler ─► O_patch ─► × P_m ─► psi_m ─► propagate ─► Psi_m ─► I = Σ|Psi_m|² ─► loss
//! ```
//!
//! With the exact sub-pixel model ([`Subpixel::Fourier`]) the sampler reads the object at the
//! nearest integer corner and the remaining fraction `s` moves the probe (`P_m(r - s)`, by
//! [`crate::ops::shift`]) and the propagated exit wave back (a ramp in the propagator).
//!
//! On a paraxial near field the propagation, the loss and the adjoint of a position run as one
//! fused pass ([`Propagator::fused_pass`]) on patterns stored in transposed order.
//!
//! The backward pass runs the vjps in reverse. Positions of a batch are processed in parallel,
//! each with its own buffers, and the large FFT passes inside each position are themselves split
//! into tasks (see [`crate::fft`]), so that a batch that does not divide evenly among the threads
//! still keeps them all busy; the batch's gradients are scattered onto the object over its rows
//! in parallel, next to their short sum onto the probe. All buffers are allocated once.

use crate::dataset::Dataset;
use crate::fft::{transpose_block, FftWork};
use crate::model::{Gradients, Model, Subpixel};
use crate::ops::loss::{
    loss_and_gradient, loss_on_columns, measured_amplitude, transpose_frame, transpose_patterns,
    LossKind, Measured,
};
use crate::ops::modes::{exit_waves, patch_gradient};
use crate::ops::sampler::{position_gradient, sample, scatter_add_all, Placement};
use crate::ops::shift::{FourierShift, Ramp};
use crate::propagate::{Back, FusedWork, PropWork, Propagator};
use ndarray::Array3;
use num_complex::Complex32;
use rayon::prelude::*;
use std::sync::Mutex;

/// One position of a batch: where it reads the object, and the results of its pass that the
/// batch's sums read afterwards.
struct Slot {
    j: usize,
    placement: Placement,
    clamped: bool,
    /// Sub-pixel remainder moved by Fourier shifts (zero with the bilinear sampler).
    shift: [f64; 2],
    /// The gradient of the probe modes from this position: with the Fourier sampler the
    /// spectrum of the moved probe's gradient moved back (see [`FourierShift::shift_vjp`]),
    /// with the bilinear one the gradient itself.
    probe_grad: Vec<Complex32>,
    g_patch: Vec<Complex32>,
    loss: f64,
    dz: f64,
    /// dL/de of the propagation's astigmatism.
    de: [f64; 2],
    dpos: [f64; 2],
}

/// The buffers a position's pass fills and leaves behind (about 1.3 MB at N = 128 on the fused
/// path). One set per position in flight, taken from a pool and put back, so that the
/// positions of a batch reuse a few sets that stay in cache instead of one set each.
struct Scratch {
    ramp: Ramp,
    patch: Vec<Complex32>,
    /// The probe modes moved by the position's shift (Fourier sampler only).
    probe: Vec<Complex32>,
    /// Gradient of the moved probe (Fourier sampler only).
    moved_grad: Vec<Complex32>,
    fields: Vec<Complex32>,
    /// Buffers of the fused pass (separable near field).
    fused: FusedWork,
    /// The unfused passes' spectra and work buffers (several MB at N = 128), made on their
    /// first use: the fused pass never needs them.
    unfused: Option<(Vec<Complex32>, PropWork)>,
    shift_work: FftWork,
}

impl Scratch {
    fn new(propagator: &Propagator, shifter: &FourierShift, modes: usize) -> Self {
        let nn = propagator.n() * propagator.n();
        Scratch {
            ramp: shifter.ramp([0.0; 2]),
            patch: vec![Complex32::default(); nn],
            probe: vec![Complex32::default(); modes * nn],
            moved_grad: vec![Complex32::default(); modes * nn],
            fields: vec![Complex32::default(); modes * nn],
            fused: propagator.fused_work(modes),
            unfused: None,
            shift_work: shifter.work(),
        }
    }
}

/// Evaluates the loss of minibatches and its gradients.
pub struct Objective {
    kind: LossKind,
    /// What the loss reads of each pattern: the amplitudes `sqrt(I_meas + b)` for the amplitude
    /// loss (`b` the noise floor), the intensities otherwise (one copy of the data, not two).
    /// In transposed order (`[x, y]`) when `transposed`.
    measured: Array3<f32>,
    /// The detector mask, in the order of `measured`.
    mask: Vec<f32>,
    /// The patterns and the mask are stored transposed: with a paraxial near field, whose
    /// fused pass hands the loss the detector field in that order (see
    /// [`Propagator::fused_pass`]); its other passes transpose around the loss.
    transposed: bool,
    propagator: Propagator,
    subpixel: Subpixel,
    shifter: FourierShift,
    /// Spectra of the probe modes (Fourier sampler).
    probe_spectrum: Vec<Complex32>,
    slots: Vec<Slot>,
    /// Buffers of the positions in flight (see [`Scratch`]); grows to the most positions
    /// that run at once, then allocates nothing.
    scratch: Mutex<Vec<Scratch>>,
    modes: usize,
    /// FFT buffers of the batch's probe spectra.
    batch_work: FftWork,
    /// Sum of the measured intensity over valid pixels and all patterns (normalises the loss).
    total_measured: f64,
    /// The data's noise floor (photons per pixel, see [`Dataset::noise_floor`]).
    background: f32,
}

impl Objective {
    /// Prepares the loss for `data` with batches of at most `max_batch` positions.
    pub fn new(
        data: &Dataset,
        propagator: Propagator,
        kind: LossKind,
        subpixel: Subpixel,
        modes: usize,
        max_batch: usize,
    ) -> Self {
        let n = data.frame();
        let nn = n * n;
        let max_batch = max_batch.clamp(1, data.len().max(1));
        let shifter = FourierShift::new(n);
        let slots = (0..max_batch)
            .map(|_| Slot {
                j: 0,
                placement: Placement {
                    row: 0,
                    col: 0,
                    fy: 0.0,
                    fx: 0.0,
                },
                clamped: false,
                shift: [0.0; 2],
                probe_grad: vec![Complex32::default(); modes * nn],
                g_patch: vec![Complex32::default(); nn],
                loss: 0.0,
                dz: 0.0,
                de: [0.0; 2],
                dpos: [0.0; 2],
            })
            .collect();
        let batch_work = shifter.work();
        let transposed = propagator.is_paraxial();
        let mut mask: Vec<f32> = data
            .mask
            .iter()
            .map(|&m| if m { 1.0 } else { 0.0 })
            .collect();
        let total_measured = data.measured_photons().max(1e-30);
        let background = data.noise_floor as f32;
        let mut measured = match kind {
            LossKind::Amplitude => data.intensities.mapv(|v| measured_amplitude(v, background)),
            LossKind::Intensity | LossKind::Poisson => {
                data.intensities.as_standard_layout().into_owned()
            }
        };
        if transposed {
            transpose_patterns(&mut measured, &mut mask);
        }
        Objective {
            background,
            kind,
            measured,
            mask,
            transposed,
            propagator,
            subpixel,
            shifter,
            probe_spectrum: vec![Complex32::default(); modes * nn],
            slots,
            scratch: Mutex::new(Vec::new()),
            modes,
            batch_work,
            total_measured,
        }
    }

    /// Largest batch this objective holds buffers for.
    pub fn max_batch(&self) -> usize {
        self.slots.len()
    }

    /// Sum of measured photons over valid pixels; history losses are divided by it.
    pub fn total_measured(&self) -> f64 {
        self.total_measured
    }

    /// The propagator (its distance follows the model on every evaluation).
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Whether the gradients must include the astigmatism's cross term (see
    /// [`Propagator::need_cross_astigmatism_gradient`]).
    pub fn need_cross_astigmatism_gradient(&mut self, needed: bool) {
        self.propagator.need_cross_astigmatism_gradient(needed);
    }

    /// Loss of the positions in `batch` (at most `max_batch`). With `grads`, also adds the
    /// gradient of that loss to every group of `grads`.
    pub fn evaluate(
        &mut self,
        model: &Model,
        batch: &[usize],
        grads: Option<&mut Gradients>,
    ) -> f64 {
        assert!(
            batch.len() <= self.slots.len(),
            "batch larger than the objective's buffers"
        );
        if let Propagator::Near(_) = self.propagator {
            let z = model.propagation_distance();
            self.propagator.set_distance(z);
            self.propagator.set_astigmatism(model.astigmatism);
        }
        let n = model.frame();
        let nn = n * n;
        let (h, w) = model.object.dim();
        let with_grad = grads.is_some();
        crate::work::count(batch.len(), with_grad);
        let fourier = self.subpixel == Subpixel::Fourier;
        for (slot, &j) in self.slots.iter_mut().zip(batch) {
            let [y, x] = model.position(j);
            let (p, shift, clamped) = if fourier {
                Placement::nearest(y, x, n, h, w)
            } else {
                let (p, clamped) = Placement::new(y, x, n, h, w);
                (p, [0.0; 2], clamped)
            };
            slot.j = j;
            slot.placement = p;
            slot.shift = shift;
            slot.clamped = clamped;
        }
        if fourier {
            let work = &mut self.batch_work;
            self.probe_spectrum
                .copy_from_slice(model.probe.as_slice().expect("contiguous probe"));
            for spec in self.probe_spectrum.chunks_exact_mut(nn) {
                self.shifter.spectrum(spec, work);
            }
        }
        let active = &mut self.slots[..batch.len()];
        let (prop, kind, transposed) = (&self.propagator, self.kind, self.transposed);
        let (measured, mask, background) = (&self.measured, &self.mask, self.background);
        let model_probe = model.probe.as_slice().expect("contiguous probe");
        let (shifter, probe_spectrum, pool, modes) = (
            &self.shifter,
            &self.probe_spectrum,
            &self.scratch,
            self.modes,
        );
        let cache_len = prop.cache_len();
        active.par_iter_mut().for_each(|s| {
            let taken = pool.lock().expect("scratch pool").pop();
            let mut scratch = taken.unwrap_or_else(|| Scratch::new(prop, shifter, modes));
            let Scratch {
                ramp,
                patch,
                probe: moved_probe,
                moved_grad,
                fields,
                fused,
                unfused,
                shift_work,
            } = &mut scratch;
            sample(&model.object, s.placement, n, patch);
            shifter.fill_ramp(s.shift, ramp);
            let probe: &[Complex32] = if fourier {
                for (out, spec) in moved_probe
                    .chunks_exact_mut(nn)
                    .zip(probe_spectrum.chunks_exact(nn))
                {
                    shifter.shift(spec, ramp, out, shift_work);
                }
                moved_probe
            } else {
                model_probe
            };
            exit_waves(probe, patch, fields);
            let pattern = measured
                .index_axis(ndarray::Axis(0), s.j)
                .to_slice()
                .expect("contiguous");
            let (amplitude, intensity) = match kind {
                LossKind::Amplitude => (pattern, &[][..]),
                LossKind::Intensity | LossKind::Poisson => (&[][..], pattern),
            };
            let data = Measured {
                amplitude,
                intensity,
                mask,
                background,
            };
            let mut ds = [0.0; 2];
            s.dz = 0.0;
            s.de = [0.0; 2];
            if prop.fuses() {
                let step = loss_on_columns(kind, data, n, modes, 1.0);
                let back = if with_grad {
                    Back::AdjointWithGradients
                } else {
                    Back::Skip
                };
                let (value, extras) = prop.fused_pass(fields, s.shift, &step, back, fused);
                s.loss = value;
                s.dz = extras.dz;
                s.de = extras.astigmatism;
                ds = extras.ds;
            } else {
                let (cache, work) = unfused.get_or_insert_with(|| {
                    let cache = vec![Complex32::default(); modes * cache_len];
                    (cache, prop.work())
                });
                for (k, f) in fields.chunks_exact_mut(nn).enumerate() {
                    let cache = &mut cache[k * cache_len..(k + 1) * cache_len];
                    prop.forward_moved(f, cache, s.shift, work);
                    if transposed {
                        transpose_field(f, &mut s.g_patch, n);
                    }
                }
                s.loss = loss_and_gradient(kind, fields, nn, data);
                if with_grad {
                    for (k, f) in fields.chunks_exact_mut(nn).enumerate() {
                        if transposed {
                            transpose_field(f, &mut s.g_patch, n);
                        }
                        let cache =
                            (cache_len > 0).then(|| &cache[k * cache_len..(k + 1) * cache_len]);
                        let extras = prop.adjoint_moved(f, cache, s.shift, work);
                        s.dz += extras.dz;
                        s.de[0] += extras.astigmatism[0];
                        s.de[1] += extras.astigmatism[1];
                        ds[0] += extras.ds[0];
                        ds[1] += extras.ds[1];
                    }
                }
            }
            if with_grad {
                // The probe's gradient from this position: of the moved probe (then moved
                // back below) with the Fourier sampler, of the probe itself otherwise.
                let probe_gradient = if fourier {
                    &mut moved_grad[..]
                } else {
                    &mut s.probe_grad[..]
                };
                patch_gradient(probe, patch, fields, &mut s.g_patch, probe_gradient);
                if fourier {
                    // Back through the move: the spectrum is reduced over the batch
                    // afterwards; dL/ds joins the propagator's.
                    for ((g, spec), acc) in moved_grad
                        .chunks_exact_mut(nn)
                        .zip(probe_spectrum.chunks_exact(nn))
                        .zip(s.probe_grad.chunks_exact_mut(nn))
                    {
                        let d = shifter.shift_vjp(g, spec, ramp, acc, shift_work);
                        ds[0] += d[0];
                        ds[1] += d[1];
                    }
                }
                s.dpos = if s.clamped {
                    [0.0; 2]
                } else if fourier {
                    ds
                } else {
                    position_gradient(&model.object, s.placement, n, &s.g_patch)
                };
            }
            pool.lock().expect("scratch pool").push(scratch);
        });
        let loss: f64 = active.iter().map(|s| s.loss).sum();
        if let Some(g) = grads {
            let g_probe = g.probe.as_slice_mut().expect("contiguous probe gradient");
            let dz_factor = model.propagation_distance_derivative();
            let (spectrum, work, shifter) = (
                &mut self.probe_spectrum,
                &mut self.batch_work,
                &self.shifter,
            );
            // The probe's gradient (Fourier sampler) and the object's scatter touch different
            // arrays: side by side.
            rayon::join(
                || {
                    if !fourier {
                        // The positions' probe gradients, in order.
                        for s in active.iter() {
                            for (a, b) in g_probe.iter_mut().zip(&s.probe_grad) {
                                *a += b;
                            }
                        }
                        return;
                    }
                    // Sum the probe-gradient spectra of the batch, then one inverse FFT per
                    // mode.
                    spectrum.fill(Complex32::default());
                    for s in active.iter() {
                        for (a, b) in spectrum.iter_mut().zip(&s.probe_grad) {
                            *a += b;
                        }
                    }
                    for (spec, gp) in spectrum
                        .chunks_exact_mut(nn)
                        .zip(g_probe.chunks_exact_mut(nn))
                    {
                        shifter.finish(spec, work);
                        for (a, b) in gp.iter_mut().zip(spec.iter()) {
                            *a += b;
                        }
                    }
                },
                || scatter_add_all(&mut g.object, active, |s| (s.placement, &s.g_patch), n),
            );
            for s in active.iter() {
                g.corrections[[s.j, 0]] += s.dpos[0];
                g.corrections[[s.j, 1]] += s.dpos[1];
                let dp = model.position_distance_derivative(s.j);
                g.distance += s.dz * dz_factor + s.dpos[0] * dp[0] + s.dpos[1] * dp[1];
                g.astigmatism[0] += s.de[0];
                g.astigmatism[1] += s.de[1];
            }
        }
        loss
    }

    /// Loss of the single position `j`, without gradients, with each detector pixel counted in
    /// proportion to `weights` (N x N, row-major, in [0, 1]) on top of the detector mask.
    pub fn evaluate_weighted(&mut self, model: &Model, j: usize, weights: &[f32]) -> f64 {
        assert_eq!(
            weights.len(),
            self.mask.len(),
            "one weight per detector pixel"
        );
        let mut weights = weights.to_vec();
        if self.transposed {
            transpose_frame(&mut weights, self.propagator.n());
        }
        let weighted = self.mask.iter().zip(&weights).map(|(m, w)| m * w).collect();
        let mask = std::mem::replace(&mut self.mask, weighted);
        let loss = self.evaluate(model, &[j], None);
        self.mask = mask;
        loss
    }

    /// Loss over all positions, without gradients.
    pub fn total_loss(&mut self, model: &Model) -> f64 {
        let j = model.len();
        let b = self.max_batch();
        let mut total = 0.0;
        let idx: Vec<usize> = (0..j).collect();
        for chunk in idx.chunks(b) {
            total += self.evaluate(model, chunk, None);
        }
        total
    }
}

/// Transposes the N x N field `field` in place, through `spare` (N x N values).
fn transpose_field(field: &mut [Complex32], spare: &mut [Complex32], n: usize) {
    transpose_block(field, n, spare, n, n, n);
    field.copy_from_slice(spare);
}
