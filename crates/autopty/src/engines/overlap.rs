//! The overlap projection of the difference map ([`super::dm`]): the object and probe modes that
//! best explain a set of exit waves, one per position and mode, in the least-squares sense.
//!
//! - object: `O = sum_j,m conj(P_s,m) psi_j,m / sum_j,m |P_s,m|^2`, each view's terms placed at
//!   its window (at whole pixels with the Fourier sub-pixel model, through the bilinear
//!   sampler's adjoint otherwise), `P_s` the probe moved into the view;
//! - probe: `P_m = sum_j S_j^H (conj(O_j) psi_j,m) / sum_j |O(r + p_j)|^2`: the numerator of each
//!   view is moved back exactly by its sub-pixel shift (`S_j^H`, through the spectra), the
//!   denominator reads `|O|^2` bilinearly at the exact position (the diagonal approximation of
//!   `S_j^H |O_j|^2 S_j`).
//!
//! Both divisions are regularised, `(num + eps x_old) / (den + eps)` with
//! `eps = regularisation * max(den)`: pixels no view lights keep their value, and weakly lit ones
//! move by a damped step. The sums over positions run in parallel.

use crate::engines::exit_wave::{ProbeShifter, View};
use crate::model::{Model, Subpixel};
use crate::ops::sampler::{sample, Placement};
use crate::ops::shift::Ramp;
use ndarray::Array2;
use num_complex::Complex32;
use rayon::prelude::*;

/// The fixed views of a run: where each reads the object and how the probe is moved there.
pub(crate) struct Overlap {
    /// Where each position reads the object.
    pub(crate) views: Vec<View>,
    ramps: Vec<Ramp>,
    /// Exact positions (px) for the bilinear reads of `|O|^2`.
    positions: Vec<[f64; 2]>,
    shifter: ProbeShifter,
    fourier: bool,
    n: usize,
    modes: usize,
}

impl Overlap {
    /// The views of every position of `model`.
    pub(crate) fn new(model: &Model, subpixel: Subpixel) -> Self {
        let n = model.frame();
        let shifter = ProbeShifter::new(n);
        let views: Vec<View> = (0..model.len())
            .map(|j| View::of(model, j, subpixel))
            .collect();
        Overlap {
            ramps: views.iter().map(|v| shifter.ramp(v.shift)).collect(),
            positions: (0..model.len()).map(|j| model.position(j)).collect(),
            views,
            shifter,
            fourier: subpixel == Subpixel::Fourier,
            n,
            modes: model.probe.shape()[0],
        }
    }

    /// Frame side N.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Number of probe modes M.
    pub(crate) fn modes(&self) -> usize {
        self.modes
    }

    pub(crate) fn nn(&self) -> usize {
        self.n * self.n
    }

    /// The probe moved into every view (J * M * nn values).
    pub(crate) fn moved_probes(&self, probe: &[Complex32], out: &mut [Complex32]) {
        let block = self.modes * self.nn();
        if !self.fourier {
            out.par_chunks_mut(block)
                .for_each(|o| o.copy_from_slice(probe));
            return;
        }
        let mut spectra = vec![Complex32::default(); block];
        self.shifter
            .to_spectra(probe, &mut spectra, &mut self.shifter.work());
        out.par_chunks_mut(block)
            .zip(self.ramps.par_iter())
            .for_each_init(
                || self.shifter.work(),
                |work, (o, ramp)| self.shifter.moved(&spectra, ramp, o, work),
            );
    }

    /// Overlap update of the object from the exit waves and the moved probes.
    pub(crate) fn update_object(
        &self,
        object: &mut Array2<Complex32>,
        psi: &[Complex32],
        moved: &[Complex32],
        regularisation: f64,
    ) {
        let (nn, block) = (self.nn(), self.modes * self.nn());
        let mut parts = vec![Complex32::default(); 2 * nn * self.views.len()];
        parts
            .par_chunks_mut(2 * nn)
            .zip(psi.par_chunks(block).zip(moved.par_chunks(block)))
            .for_each(|(part, (waves, probe))| {
                let (num, den) = part.split_at_mut(nn);
                for (i, (nv, dv)) in num.iter_mut().zip(den.iter_mut()).enumerate() {
                    let (mut a, mut b) = (Complex32::default(), 0.0f32);
                    for k in (i..block).step_by(nn) {
                        a += probe[k].conj() * waves[k];
                        b += probe[k].norm_sqr();
                    }
                    *nv = a;
                    *dv = Complex32::new(b, 0.0);
                }
            });
        let mut num = Array2::<Complex32>::zeros(object.raw_dim());
        let mut den = Array2::<Complex32>::zeros(object.raw_dim());
        for (view, part) in self.views.iter().zip(parts.chunks_exact(2 * nn)) {
            view.add(&mut num, self.n, &part[..nn]);
            view.add(&mut den, self.n, &part[nn..]);
        }
        let eps = regularisation as f32 * den.iter().map(|v| v.re).fold(0.0, f32::max);
        if eps <= 0.0 {
            return;
        }
        ndarray::Zip::from(object)
            .and(&num)
            .and(&den)
            .for_each(|o, &a, &b| *o = (a + *o * eps) / (b.re + eps));
    }

    /// Overlap update of the probe modes from the exit waves and the object.
    pub(crate) fn update_probe(
        &self,
        probe: &mut [Complex32],
        object: &Array2<Complex32>,
        psi: &[Complex32],
        regularisation: f64,
    ) {
        let (n, nn, block) = (self.n, self.nn(), self.modes * self.nn());
        let (h, w) = object.dim();
        let power = object.mapv(|v| Complex32::new(v.norm_sqr(), 0.0));
        let jobs: Vec<usize> = (0..self.views.len()).collect();
        let identity = || {
            (
                vec![Complex32::default(); block],
                vec![Complex32::default(); nn],
            )
        };
        let (mut num, den) = jobs
            .par_chunks(jobs.len().div_ceil(rayon::current_num_threads()).max(1))
            .map(|chunk| {
                let (mut num, mut den) = identity();
                let mut work = self.shifter.work();
                let (mut patch, mut change) = (
                    vec![Complex32::default(); nn],
                    vec![Complex32::default(); block],
                );
                let mut seen = vec![Complex32::default(); nn];
                for &j in chunk {
                    let view = &self.views[j];
                    view.read(object, n, &mut patch);
                    let waves = &psi[j * block..(j + 1) * block];
                    for (c, wv) in change.chunks_exact_mut(nn).zip(waves.chunks_exact(nn)) {
                        for ((cv, x), o) in c.iter_mut().zip(wv).zip(&patch) {
                            *cv = o.conj() * x;
                        }
                    }
                    if self.fourier {
                        self.shifter.add_moved_change(
                            &mut change,
                            &self.ramps[j],
                            &mut num,
                            &mut work,
                        );
                        let [y, x] = self.positions[j];
                        let (p, _) = Placement::new(y, x, n, h, w);
                        sample(&power, p, n, &mut seen);
                    } else {
                        for (a, c) in num.iter_mut().zip(&change) {
                            *a += c;
                        }
                        for (s, o) in seen.iter_mut().zip(&patch) {
                            *s = Complex32::new(o.norm_sqr(), 0.0);
                        }
                    }
                    for (d, s) in den.iter_mut().zip(&seen) {
                        *d += s;
                    }
                }
                (num, den)
            })
            .reduce(identity, |(mut a, mut b), (c, d)| {
                a.iter_mut().zip(&c).for_each(|(x, y)| *x += y);
                b.iter_mut().zip(&d).for_each(|(x, y)| *x += y);
                (a, b)
            });
        if self.fourier {
            let mut work = self.shifter.work();
            let spectra = num.clone();
            self.shifter.to_frames(&spectra, &mut num, &mut work);
        }
        let eps = regularisation as f32 * den.iter().map(|v| v.re).fold(0.0, f32::max);
        if eps <= 0.0 {
            return;
        }
        for (pm, nm) in probe.chunks_exact_mut(nn).zip(num.chunks_exact(nn)) {
            for ((p, a), b) in pm.iter_mut().zip(nm).zip(&den) {
                *p = (a + *p * eps) / (b.re + eps);
            }
        }
    }
}
