//! Propagation from the exit wave (sample plane, N x N) to the detector field (N x N).
//!
//! - **Far field** (Fraunhofer): the detector field is the unitary, centred 2-D FFT of the exit
//!   wave (zero frequency at `[N/2, N/2]`). The distance enters only through the sample pixel
//!   size (see [`crate::geometry`]), so this propagator has no distance gradient.
//! - **Near field** (angular spectrum): `Psi = crop(IFFT(H(z) * FFT(pad(psi))))` with the transfer
//!   function `H = exp(i z (k_z - k))`, `k_z = k sqrt(1 - (lambda f_x)^2 - (lambda f_y)^2)`,
//!   and the evanescent part (`k_z` imaginary) set to zero. The constant phase `exp(i k z)` is
//!   dropped: it is a global phase that no intensity can see, and keeping it would cost all
//!   precision in f32 (k z is ~1e9 rad for soft X-rays).
//!
//! **Padding rule.** The angular spectrum is periodic: light leaving the N x N window wraps around.
//! The highest spatial frequency the grid holds, `1/(2 dx)`, travels at `sin(theta) = lambda/(2 dx)`
//! and walks `s = lambda z / (2 dx^2)` pixels sideways over the distance z. The exit wave is
//! zero-padded by `min(ceil(s), N)` pixels on each side, and the total rounded up to the next
//! even size whose only prime factors are 2 and 3 (see [`next_fft_size`]). The detector records
//! the central N x N window. The padded size is fixed when the propagator is built (from the
//! starting distance); later distance changes only rebuild `H`.
//!
//! **Moved exit waves.** Sub-pixel scan positions are modelled by moving the exit wave (see
//! [`crate::ops::shift`]): a near-field propagation of the exit wave moved by `-s` pixels is
//! `crop(IFFT(H exp(2 pi i f.s) FFT(pad(psi))))`, so the move costs one phase ramp in the
//! transfer function, and its gradient `dL/ds` comes out of the adjoint like `dL/dz`. In far field
//! a moved exit wave only adds a phase ramp to the detector field, which no intensity sees.
//!
//! **Astigmatism.** The near-field propagator may also carry a relative astigmatism `e`: the
//! paraxial phase `-pi lambda z (fx^2 + fy^2)` of `H` becomes
//! `-pi lambda z ((1 + e0) fx^2 + (1 - e0) fy^2 + 2 e1 fx fy)`, i.e. the propagation distance
//! along x is `z (1 + e0)`, along y `z (1 - e0)`, and `e1` shears the pair (f in cycles/m). It
//! measures how far the scan's shape is from the one the data want (see
//! [`crate::engines::curvature_gauge`]); it is 0 everywhere else.
//!
//! **Paraxial transfer function and the separable path.** Where the paraxial (Fresnel)
//! transfer function `exp(-i pi lambda z (fx^2 + fy^2))` differs from the angular spectrum by at
//! most [`PARAXIAL_TOLERANCE`] over the grid's frequencies at twice the starting distance (hard
//! and soft X-rays on micrometre pixels: about 2e-5 rad for the `paper` preset), the propagator
//! uses the paraxial one, everywhere (the windowed and the full-grid propagations alike). It
//! factors into x and y, so the forward propagates the N zero-padded rows along x, crops them
//! to the window, transposes, propagates the N rows along y, crops and transposes back: 4 N
//! transforms of length P per propagation instead of 2 (N + P), and element-wise work on
//! 2 N P values instead of P^2. The gradients follow stage by stage. This separable path runs
//! unless the astigmatism has a cross term `e1` or a caller needs its gradient (the curvature
//! gauge's passes); then the 2-D path runs on the same paraxial `H`. Wider angles (visible
//! light on micrometre pixels) keep the angular spectrum and the 2-D path.
//!
//! **Fused pass.** On the separable path, [`Propagator::fused_pass`] runs one frame's forward
//! propagation, a detector step (the loss and its gradient, or a modulus correction) and the
//! adjoint in three sweeps over groups of rows that stay in L1, handing the step the detector
//! field in transposed order (see the `fused` module); the gradient engine and ePIE use it.
//!
//! The adjoint of each propagator is exact (unitary FFTs, `crop^T = pad`), and the near-field
//! adjoint also returns `dL/dz = Re <g, dPsi/dz>` using the spectrum cached by the forward pass,
//! where `dPsi/dz = crop(IFFT(i (k_z - k) H FFT(pad(psi))))`, and likewise `dL/de`.

mod fused;

pub use fused::{Back, DetectorStep, FusedWork};

use crate::fft::{fill_phase_ramp, freq_index, task_values, transpose_block, Fft2, FftWork};
use num_complex::Complex32;
use rayon::prelude::*;

/// Rows per group of the passes that work a group at a time (the 2-D path's middle stage,
/// [`NearField::middle`], and the fused pass): eight complex f32 values fill one 64-byte cache
/// line of each row a gather reads.
const GROUP: usize = 8;

/// Largest phase (rad) by which the paraxial transfer function may differ from the angular
/// spectrum over the grid's frequencies, at twice the starting distance, for the propagator to
/// use it (and its separable path).
pub const PARAXIAL_TOLERANCE: f64 = 1e-3;

thread_local! {
    /// Rows and FFT scratch of one group of the middle stage, per thread.
    static GROUP_ROWS: std::cell::RefCell<Vec<Complex32>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `row` (P values) = zeros with `src` at `o..`: one row of a zero-padded window.
fn pad(row: &mut [Complex32], src: &[Complex32], o: usize) {
    row[..o].fill(Complex32::default());
    row[o..o + src.len()].copy_from_slice(src);
    row[o + src.len()..].fill(Complex32::default());
}

/// Padded FFT size for near-field propagation of an N x N field (see the module docs).
pub fn near_field_padded_size(n: usize, wavelength: f64, distance: f64, pixel: f64) -> usize {
    let spread = wavelength * distance.abs() / (2.0 * pixel * pixel);
    let pad = (spread.ceil() as usize).min(n);
    next_fft_size(n + 2 * pad)
}

/// Smallest even integer >= `m` whose prime factors are only 2, 3 and 5.
pub fn next_fast_even(m: usize) -> usize {
    next_even_with_factors(m, &[2, 3, 5])
}

/// Smallest even integer >= `m` whose prime factors are only 2 and 3: the transform size of
/// the near-field propagator. rustfft's AVX kernels are fastest on these sizes. Measured on
/// the development machine (2026-11-30), a 270-point transform (2 3^3 5) costs 1.5x a
/// 256-point one per point and log, 288 (2^5 3^2) 1.2x; over every required size from 100 to
/// 860, rounding up this way gave 2-D transforms 6 % above the cheapest size (at most 33 %),
/// allowing a factor 5 gave 12 % (at most 91 %, from sizes with 5^2).
pub fn next_fft_size(m: usize) -> usize {
    next_even_with_factors(m, &[2, 3])
}

fn next_even_with_factors(m: usize, primes: &[usize]) -> usize {
    let mut c = m.max(2);
    loop {
        if c.is_multiple_of(2) {
            let mut r = c;
            for &p in primes {
                while r.is_multiple_of(p) {
                    r /= p;
                }
            }
            if r == 1 {
                return c;
            }
        }
        c += 1;
    }
}

/// Calls `f(bins, kz - k)` once per distinct spatial frequency magnitude of a `np` x `np` grid
/// with pixel `pixel` (m): `bins` are the flat indices of the up to 8 bins (+-fy, +-fx and
/// swapped) that share `k_z - k` (rad/m, written to avoid cancellation at small angles; None
/// where the wave is evanescent). The transfer function has this symmetry, so it costs one
/// eighth of the grid's `sin`/`cos` to rebuild.
fn for_each_symmetric_bin(
    np: usize,
    wavelength: f64,
    pixel: f64,
    mut f: impl FnMut(&[usize], Option<f64>),
) {
    let k = std::f64::consts::TAU / wavelength;
    let df = 1.0 / (np as f64 * pixel);
    let mirror = |a: usize| (np - a) % np;
    let half = np / 2;
    for a in 0..=half {
        for b in 0..=a {
            let (fy, fx) = (a as f64 * df, b as f64 * df);
            let arg = 1.0 - wavelength * wavelength * (fx * fx + fy * fy);
            let d = (arg > 0.0).then(|| -k * (1.0 - arg) / (1.0 + arg.sqrt()));
            let (ma, mb) = (mirror(a), mirror(b));
            let bins = [
                a * np + b,
                a * np + mb,
                ma * np + b,
                ma * np + mb,
                b * np + a,
                b * np + ma,
                mb * np + a,
                mb * np + ma,
            ];
            f(&bins, d);
        }
    }
}

/// `exp(i phase)`: the phase reduced to one turn in f64 (by `floor`: `rem_euclid` calls the
/// slow `fmod`), then evaluated in f32 (error ~1e-7 rad).
fn unit_phasor(phase: f64) -> Complex32 {
    let turns = phase / std::f64::consts::TAU;
    let (sin, cos) = (((turns - turns.floor()) * std::f64::consts::TAU) as f32).sin_cos();
    Complex32::new(cos, sin)
}

/// Work buffers for one thread of a [`Propagator`].
pub struct PropWork {
    fft: FftWork,
    /// The N rows of the padded field that hold the window (near field, N x P).
    strip: Vec<Complex32>,
    /// The window's columns after the middle stage (near field, P x N values): per group of
    /// [`GROUP`] x frequencies, the window's N rows of that group's width (see
    /// [`NearField::middle`]).
    window: Vec<Complex32>,
    ramps: (Vec<Complex32>, Vec<Complex32>),
    /// Per row of the padded spectrum: the adjoint's sums for dL/dz, dL/ds and the
    /// astigmatism's gradient.
    row_sums: Vec<[f32; 4]>,
}

/// Far- or near-field propagator for N x N frames.
#[derive(Clone, Debug)]
pub enum Propagator {
    /// Centred unitary FFT.
    Far(FarField),
    /// Angular spectrum (or its paraxial form, module docs) with padding.
    Near(NearField),
}

/// Fraunhofer propagator.
#[derive(Clone, Debug)]
pub struct FarField {
    fft: Fft2,
}

/// Angular-spectrum (or paraxial, module docs) propagator for a plane wave over `distance` (the
/// effective distance in a point-source geometry).
#[derive(Clone, Debug)]
pub struct NearField {
    n: usize,
    padded: usize,
    fft: Fft2,
    wavelength: f64,
    pixel: f64,
    distance: f64,
    /// Relative astigmatism `[e0, e1]` of the propagation (module docs).
    astigmatism: [f64; 2],
    /// `k_z - k` per padded frequency bin (rad/m); 0 where evanescent (where `H` is 0).
    kz_minus_k: Vec<f32>,
    /// The bins grouped by frequency magnitude, to rebuild `transfer` cheaply.
    classes: Box<FrequencyClasses>,
    /// `H` is the paraxial (Fresnel) transfer function: chosen where it differs from the angular
    /// spectrum by less than [`PARAXIAL_TOLERANCE`] (module docs).
    paraxial: bool,
    /// Whether the separable path may run (module docs): false while the caller needs the
    /// gradient of the cross term `e1` of the astigmatism, which that path cannot give.
    separable_allowed: bool,
    /// The paraxial transfer function's factors along x and y (`exp(i c (1 + e0) fx^2)` and
    /// `exp(i c (1 - e0) fy^2)`, module docs) for the current distance and astigmatism.
    axis_transfer: Box<[Vec<Complex32>; 2]>,
    /// Transfer function `H` for the current distance and astigmatism (0 where evanescent), in
    /// transposed order (`[kx * P + ky]`); only while `table_current`.
    transfer: Vec<Complex32>,
    /// Whether `transfer` holds `H` for the current distance and astigmatism: always for the
    /// angular spectrum; for the paraxial `H` only while the 2-D path runs (the separable
    /// path multiplies by `axis_transfer`, which saves rebuilding P^2 values per step).
    table_current: bool,
    /// Signed frequency (cycles per pixel) of each padded FFT bin along one axis.
    freq: Vec<f64>,
    /// `freq` in f32 for the sums along a row.
    freq32: Vec<f32>,
}

/// The padded bins of a near-field propagator grouped by frequency magnitude (the classes of
/// [`for_each_symmetric_bin`]), which share `k_z - k` and so the transfer function.
#[derive(Clone, Debug)]
struct FrequencyClasses {
    /// `k_z - k` of each class (rad/m; None where evanescent).
    kz_minus_k: Vec<Option<f64>>,
    /// Per padded bin, its class.
    class: Vec<u32>,
    /// `H` of each class for the current distance.
    transfer: Vec<Complex32>,
}

/// Gradients that the near-field adjoint gives besides the field's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdjointExtras {
    /// dL/dz (per metre of propagation distance).
    pub dz: f64,
    /// dL/ds (per pixel of exit-wave move, (row, col)).
    pub ds: [f64; 2],
    /// dL/de of the relative astigmatism `[e0, e1]` (module docs).
    pub astigmatism: [f64; 2],
}

impl Propagator {
    /// Far-field propagator for N x N frames.
    pub fn far(n: usize) -> Self {
        Propagator::Far(FarField { fft: Fft2::new(n) })
    }

    /// Near-field propagator with the automatic padding rule.
    pub fn near(n: usize, wavelength: f64, distance: f64, pixel: f64) -> Self {
        let padded = near_field_padded_size(n, wavelength, distance, pixel);
        Self::near_padded(n, padded, wavelength, distance, pixel)
    }

    /// Near-field propagator with an explicit padded size (>= N).
    pub fn near_padded(
        n: usize,
        padded: usize,
        wavelength: f64,
        distance: f64,
        pixel: f64,
    ) -> Self {
        assert!(padded >= n, "padded size must be at least N");
        let np = padded;
        let freq: Vec<f64> = (0..np).map(|k| freq_index(k, np) / np as f64).collect();
        // The paraxial phase per metre, -pi lambda f^2 (f in cycles/m), against k_z - k.
        let paraxial_of = |b: usize| {
            let f = freq_index(b, np) / (np as f64 * pixel);
            -std::f64::consts::PI * wavelength * f * f
        };
        let mut worst = 0.0f64;
        for_each_symmetric_bin(np, wavelength, pixel, |bins, d| {
            let (a, b) = (bins[0] / np, bins[0] % np);
            let exact = d.map_or(f64::INFINITY, |d| d);
            worst = worst.max((exact - paraxial_of(a) - paraxial_of(b)).abs());
        });
        let paraxial = worst * 2.0 * distance.abs() <= PARAXIAL_TOLERANCE;
        let mut kz_minus_k = vec![0.0f32; np * np];
        let (mut distinct, mut class) = (Vec::new(), vec![0u32; np * np]);
        for_each_symmetric_bin(np, wavelength, pixel, |bins, d| {
            let (a, b) = (bins[0] / np, bins[0] % np);
            let d = if paraxial {
                Some(paraxial_of(a) + paraxial_of(b))
            } else {
                d
            };
            for &i in bins {
                kz_minus_k[i] = d.map_or(0.0, |d| d as f32);
                class[i] = distinct.len() as u32;
            }
            distinct.push(d);
        });
        let mut near = NearField {
            n,
            padded,
            fft: Fft2::new(np),
            wavelength,
            pixel,
            distance: f64::NAN,
            astigmatism: [0.0; 2],
            kz_minus_k,
            classes: Box::new(FrequencyClasses {
                transfer: vec![Complex32::default(); distinct.len()],
                kz_minus_k: distinct,
                class,
            }),
            paraxial,
            separable_allowed: true,
            axis_transfer: Box::new([
                vec![Complex32::default(); np],
                vec![Complex32::default(); np],
            ]),
            transfer: vec![Complex32::default(); np * np],
            table_current: false,
            freq32: freq.iter().map(|&f| f as f32).collect(),
            freq,
        };
        near.set_transfer(distance, [0.0; 2]);
        Propagator::Near(near)
    }

    /// Frame side N.
    pub fn n(&self) -> usize {
        match self {
            Propagator::Far(f) => f.fft.n(),
            Propagator::Near(p) => p.n,
        }
    }

    /// Length of the spectrum cache one frame needs between forward and adjoint (0 in far field).
    pub fn cache_len(&self) -> usize {
        match self {
            Propagator::Far(_) => 0,
            // The 2-D path caches the P x P spectrum, the separable one two N x P ones.
            Propagator::Near(p) => (p.padded * p.padded).max(2 * p.n * p.padded),
        }
    }

    /// Work buffers for one thread.
    pub fn work(&self) -> PropWork {
        match self {
            Propagator::Far(f) => PropWork {
                fft: f.fft.work(),
                strip: Vec::new(),
                window: Vec::new(),
                ramps: (Vec::new(), Vec::new()),
                row_sums: Vec::new(),
            },
            Propagator::Near(p) => PropWork {
                fft: p.fft.work(),
                strip: vec![Complex32::default(); p.n * p.padded],
                window: vec![Complex32::default(); p.padded * p.n],
                ramps: (Vec::with_capacity(p.padded), Vec::with_capacity(p.padded)),
                row_sums: vec![[0.0; 4]; p.padded],
            },
        }
    }

    /// Changes the propagation distance (m); no-op in far field.
    pub fn set_distance(&mut self, distance: f64) {
        if let Propagator::Near(p) = self {
            p.set_transfer(distance, p.astigmatism);
        }
    }

    /// Changes the relative astigmatism `[e0, e1]` of a near-field propagation (module docs);
    /// no-op in far field.
    pub fn set_astigmatism(&mut self, astigmatism: [f64; 2]) {
        if let Propagator::Near(p) = self {
            p.set_transfer(p.distance, astigmatism);
        }
    }

    /// Whether the caller needs `dL/de` of the astigmatism's cross term (see
    /// [`AdjointExtras::astigmatism`]); while it does, the near field runs its 2-D path.
    pub fn need_cross_astigmatism_gradient(&mut self, needed: bool) {
        if let Propagator::Near(p) = self {
            p.separable_allowed = !needed;
            if p.paraxial && !p.separable() && !p.table_current {
                p.set_paraxial_transfer();
            }
        }
    }

    /// True when the near-field propagator uses the paraxial transfer function (module docs).
    pub fn is_paraxial(&self) -> bool {
        matches!(self, Propagator::Near(p) if p.paraxial)
    }

    /// True when [`Propagator::fused_pass`] runs: the separable near field (module docs).
    pub fn fuses(&self) -> bool {
        matches!(self, Propagator::Near(p) if p.separable())
    }

    /// Buffers for [`Propagator::fused_pass`] on frames with `modes` probe modes (empty where
    /// the propagator is not a paraxial near field, which never fuses).
    pub fn fused_work(&self, modes: usize) -> FusedWork {
        match self {
            Propagator::Near(p) if p.paraxial => p.fused_work(modes),
            _ => FusedWork::empty(),
        }
    }

    /// Forward propagation of the M exit waves in `fields` (M x N x N) moved by `-s` px, the
    /// detector `step` on the detector field in transposed order, and (per `back`) the adjoint
    /// of the forward applied to what the step leaves, into `fields`, with the distance, move
    /// and astigmatism gradients: the same result as [`Propagator::forward_moved`], the step
    /// on the transposed fields and [`Propagator::adjoint_moved`], in fewer passes over memory
    /// (see the `fused` module). Returns the step's loss and those gradients. Only where
    /// [`Propagator::fuses`].
    pub fn fused_pass(
        &self,
        fields: &mut [Complex32],
        s: [f64; 2],
        step: &DetectorStep,
        back: Back,
        work: &mut FusedWork,
    ) -> (f64, AdjointExtras) {
        match self {
            Propagator::Near(p) if p.separable() => p.fused_pass(fields, s, step, back, work),
            _ => panic!("fused_pass needs the separable near field (see Propagator::fuses)"),
        }
    }

    /// Propagates `field` (N x N, overwritten by the detector field). In near field the padded
    /// spectrum `FFT(pad(psi))` is stored in `cache` for the distance gradient.
    pub fn forward(&self, field: &mut [Complex32], cache: &mut [Complex32], work: &mut PropWork) {
        self.forward_moved(field, cache, [0.0; 2], work);
    }

    /// [`Propagator::forward`] of the exit wave moved by `-s` pixels (see the module docs).
    pub fn forward_moved(
        &self,
        field: &mut [Complex32],
        cache: &mut [Complex32],
        s: [f64; 2],
        work: &mut PropWork,
    ) {
        match self {
            Propagator::Far(f) => f.fft.forward_centred(field, &mut work.fft),
            Propagator::Near(p) => p.forward(field, cache, s, work),
        }
    }

    /// Adjoint: maps a detector-field gradient (N x N, overwritten) back to the exit wave.
    /// In near field, with the cache of the forward pass, returns `dL/dz` (per metre of the
    /// propagation distance); far field returns 0.
    pub fn adjoint(
        &self,
        grad: &mut [Complex32],
        cache: Option<&[Complex32]>,
        work: &mut PropWork,
    ) -> f64 {
        self.adjoint_moved(grad, cache, [0.0; 2], work).dz
    }

    /// Adjoint of [`Propagator::forward_moved`]; with the forward cache (near field) it also
    /// returns dL/dz and dL/ds. Far field returns zeros: neither changes an intensity there.
    pub fn adjoint_moved(
        &self,
        grad: &mut [Complex32],
        cache: Option<&[Complex32]>,
        s: [f64; 2],
        work: &mut PropWork,
    ) -> AdjointExtras {
        match self {
            Propagator::Far(f) => {
                f.fft.inverse_centred(grad, &mut work.fft);
                AdjointExtras::default()
            }
            Propagator::Near(p) => p.adjoint(grad, cache, s, work),
        }
    }
}

impl Propagator {
    /// Side of the grid on which propagation is unitary: the padded size in near field, N in
    /// far field. The detector records the central N x N window of the field on this grid.
    pub fn full_size(&self) -> usize {
        match self {
            Propagator::Far(f) => f.fft.n(),
            Propagator::Near(p) => p.padded,
        }
    }

    /// Unitary propagation of an exit wave on the full grid (`full_size`^2 values, overwritten
    /// by the field on the full detector-plane grid), moved by `-s` as in
    /// [`Propagator::forward_moved`]; cropping the central N x N window gives `forward_moved`
    /// of the window's exit wave when the wave is zero outside it. Used where an exact
    /// projection onto the measured modulus is needed (difference map).
    pub fn forward_full(&self, field: &mut [Complex32], s: [f64; 2], work: &mut PropWork) {
        match self {
            Propagator::Far(f) => f.fft.forward_centred(field, &mut work.fft),
            Propagator::Near(p) => {
                p.fft.forward(field, &mut work.fft);
                p.fill_ramps(s, &mut work.ramps);
                p.apply_transfer(field, &work.ramps, false);
                p.fft.inverse(field, &mut work.fft);
            }
        }
    }

    /// Inverse (and adjoint) of [`Propagator::forward_full`].
    pub fn inverse_full(&self, field: &mut [Complex32], s: [f64; 2], work: &mut PropWork) {
        match self {
            Propagator::Far(f) => f.fft.inverse_centred(field, &mut work.fft),
            Propagator::Near(p) => {
                p.fft.forward(field, &mut work.fft);
                p.fill_ramps(s, &mut work.ramps);
                p.apply_transfer(field, &work.ramps, true);
                p.fft.inverse(field, &mut work.fft);
            }
        }
    }
}

impl NearField {
    /// Padded FFT size.
    pub fn padded(&self) -> usize {
        self.padded
    }

    /// Propagation distance (m).
    pub fn distance(&self) -> f64 {
        self.distance
    }

    /// Wavelength (m) and pixel (m) this propagator was built for.
    pub fn wavelength_and_pixel(&self) -> (f64, f64) {
        (self.wavelength, self.pixel)
    }

    fn set_transfer(&mut self, distance: f64, astigmatism: [f64; 2]) {
        if distance == self.distance && astigmatism == self.astigmatism {
            return;
        }
        self.distance = distance;
        self.astigmatism = astigmatism;
        if self.paraxial {
            self.set_paraxial_transfer();
            return;
        }
        // One sin/cos per distinct frequency magnitude (an eighth of the grid), then every
        // bin gathers its value; both passes split over the threads.
        let classes = &mut *self.classes;
        classes
            .transfer
            .par_iter_mut()
            .zip(&classes.kz_minus_k)
            .with_min_len(1 << 12)
            .for_each(|(h, d)| *h = d.map_or(Complex32::default(), |d| unit_phasor(d * distance)));
        let values = &classes.transfer;
        self.table_current = true;
        self.transfer
            .par_chunks_mut(1 << 14)
            .zip(classes.class.par_chunks(1 << 14))
            .for_each(|(h, class)| {
                for (h, &c) in h.iter_mut().zip(class) {
                    *h = values[c as usize];
                }
            });
        if astigmatism != [0.0; 2] {
            // Times exp(i c (e0 (fx^2 - fy^2) + 2 e1 fx fy)), f in cycles per pixel; this
            // breaks the symmetry above, so every bin is computed.
            let [e0, e1] = astigmatism;
            let c = self.astigmatism_phase_scale();
            let np = self.padded;
            for (row, &fx) in self.transfer.chunks_exact_mut(np).zip(&self.freq) {
                for (h, &fy) in row.iter_mut().zip(&self.freq) {
                    let phase = c * (e0 * (fx * fx - fy * fy) + 2.0 * e1 * fx * fy);
                    let (sin, cos) = (phase as f32).sin_cos();
                    *h *= Complex32::new(cos, sin);
                }
            }
        }
    }

    /// The paraxial `H`: its factors along each axis, and the 2-D function (transposed order)
    /// as their product, times the cross term of the astigmatism when there is one.
    fn set_paraxial_transfer(&mut self) {
        let [e0, e1] = self.astigmatism;
        // The 2-D table is for the 2-D path alone: the separable one (and the full-grid
        // propagation without a cross term) multiplies by the factors.
        self.table_current = !self.separable();
        let c = self.astigmatism_phase_scale();
        let [hx, hy] = &mut *self.axis_transfer;
        for ((hx, hy), &f) in hx.iter_mut().zip(hy.iter_mut()).zip(&self.freq) {
            *hx = unit_phasor(c * (1.0 + e0) * f * f);
            *hy = unit_phasor(c * (1.0 - e0) * f * f);
        }
        if !self.table_current {
            return;
        }
        let (np, freq, hx, hy) = (self.padded, &self.freq, &*hx, &*hy);
        self.transfer
            .par_chunks_mut(np)
            .enumerate()
            .with_min_len((1 << 14) / np + 1)
            .for_each(|(kx, row)| {
                for (ky, h) in row.iter_mut().enumerate() {
                    *h = hx[kx] * hy[ky];
                    if e1 != 0.0 {
                        *h *= unit_phasor(c * 2.0 * e1 * freq[kx] * freq[ky]);
                    }
                }
            });
    }

    /// True when the separable path runs (module docs).
    fn separable(&self) -> bool {
        self.paraxial && self.separable_allowed && self.astigmatism[1] == 0.0
    }

    /// `-pi lambda z / dx^2`: the paraxial phase per (cycle/px)^2 (rad).
    fn astigmatism_phase_scale(&self) -> f64 {
        -std::f64::consts::PI * self.wavelength * self.distance / (self.pixel * self.pixel)
    }

    fn offset(&self) -> usize {
        (self.padded - self.n) / 2
    }

    /// First half of a pruned forward transform of the zero-padded window: the N rows that
    /// hold it, transformed along x (unscaled), into `strip` (N x P). The other P - N rows are
    /// zero and stay zero, so their transforms are skipped.
    fn padded_rows(&self, field: &[Complex32], strip: &mut [Complex32], scratch: &mut [Complex32]) {
        let (n, np, o) = (self.n, self.padded, self.offset());
        for (row, src) in strip.chunks_exact_mut(np).zip(field.chunks_exact(n)) {
            pad(row, src, o);
        }
        self.fft.forward_rows(strip, scratch);
    }

    /// The middle of a pruned near-field transform, fused per group of [`GROUP`] x frequencies
    /// so that it runs in cache: column `kx` of `strip` (the N rows of the window, transformed
    /// along x) is the window part (`o..o + N`) of row `kx` of the padded spectrum in
    /// transposed order, whose other values are zero. Each such row is gathered, transformed
    /// along y (unscaled), copied to `cache` (P values per row, when given), handed to
    /// `f(kx, row)` (which multiplies it in place and returns sums for `sums[kx]`), transformed
    /// back along y, and its window part written to `window`: group g's block
    /// (`g * GROUP * N..`, N rows of the group's width) holds at `[y, kx - g * GROUP]` the
    /// value of window row y at x frequency kx. This replaces a P x P buffer, its zero fill,
    /// the transposes and two full passes over it.
    fn middle(
        &self,
        strip: &[Complex32],
        window: &mut [Complex32],
        cache: Option<&mut [Complex32]>,
        sums: &mut [[f32; 4]],
        f: impl Fn(usize, &mut [Complex32]) -> [f32; 4] + Sync,
    ) {
        let (n, np) = (self.n, self.padded);
        let per_task = (task_values() / (GROUP * np)).max(1);
        let group = |g: usize,
                     window: &mut [Complex32],
                     cache: Option<&mut [Complex32]>,
                     sums: &mut [[f32; 4]]| {
            let k0 = g * GROUP;
            let width = window.len() / n;
            GROUP_ROWS.with_borrow_mut(|buffer| {
                let need = GROUP * np + self.fft.scratch_len();
                if buffer.len() < need {
                    buffer.resize(need, Complex32::default());
                }
                let (rows, scratch) = buffer.split_at_mut(GROUP * np);
                let rows = &mut rows[..width * np];
                self.gather(strip, k0, rows);
                self.fft.forward_rows(rows, scratch);
                if let Some(cache) = cache {
                    cache.copy_from_slice(rows);
                }
                for ((j, row), sum) in rows.chunks_exact_mut(np).enumerate().zip(sums) {
                    *sum = f(k0 + j, row);
                }
                self.fft.inverse_rows(rows, scratch);
                // Row y of the group's block holds the window row y at the group's x
                // frequencies: written with a stride inside the block (in L1), so that the
                // last stage copies whole 64-byte pieces instead of transposing.
                let o = self.offset();
                for (j, row) in rows.chunks_exact(np).enumerate() {
                    for (y, &v) in row[o..o + n].iter().enumerate() {
                        window[y * width + j] = v;
                    }
                }
            })
        };
        let windows = window.par_chunks_mut(GROUP * n);
        let sums = sums.par_chunks_mut(GROUP);
        match cache {
            Some(cache) => windows
                .zip(cache.par_chunks_mut(GROUP * np))
                .zip(sums)
                .enumerate()
                .with_min_len(per_task)
                .for_each(|(g, ((w, c), s))| group(g, w, Some(c), s)),
            None => windows
                .zip(sums)
                .enumerate()
                .with_min_len(per_task)
                .for_each(|(g, (w, s))| group(g, w, None, s)),
        }
    }

    /// Rows `k0..` of the padded transposed-order spectrum before the y transform (as many as
    /// `rows` holds, P values each): zeros, with column `k0 + j` of `strip` at `o..o + N`.
    /// Reads `strip` a group's width (64 bytes) at a time.
    fn gather(&self, strip: &[Complex32], k0: usize, rows: &mut [Complex32]) {
        let (np, o) = (self.padded, self.offset());
        let width = rows.len() / np;
        for row in rows.chunks_exact_mut(np) {
            row[..o].fill(Complex32::default());
            row[o + self.n..].fill(Complex32::default());
        }
        for (k, src) in strip.chunks_exact(np).enumerate() {
            for (j, &v) in src[k0..k0 + width].iter().enumerate() {
                rows[j * np + o + k] = v;
            }
        }
    }

    /// Last stage: `window` (from [`NearField::middle`]) copied back into the N rows of the
    /// strip a group's width at a time, transformed back along x (unscaled), and the window
    /// cropped into `field`.
    fn field_from_window(
        &self,
        window: &[Complex32],
        strip: &mut [Complex32],
        field: &mut [Complex32],
        scratch: &mut [Complex32],
    ) {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let per_task = (task_values() / np).max(1);
        strip
            .par_chunks_mut(np)
            .enumerate()
            .with_min_len(per_task)
            .for_each(|(y, row)| {
                // Group g's block is N rows of the group's width (the last may be narrower).
                for (out, block) in row.chunks_mut(GROUP).zip(window.chunks(GROUP * n)) {
                    let width = out.len();
                    out.copy_from_slice(&block[y * width..(y + 1) * width]);
                }
            });
        self.fft.inverse_rows(strip, scratch);
        for (dst, row) in field.chunks_exact_mut(n).zip(strip.chunks_exact(np)) {
            dst.copy_from_slice(&row[o..o + n]);
        }
    }

    /// Fills the move ramps `exp(2 pi i f s)` of both axes of the padded grid.
    fn fill_ramps(&self, s: [f64; 2], ramps: &mut (Vec<Complex32>, Vec<Complex32>)) {
        fill_phase_ramp(self.padded, s[0], &mut ramps.0);
        fill_phase_ramp(self.padded, s[1], &mut ramps.1);
    }

    /// Multiplies `buf` by the moved transfer function `H exp(2 pi i f.s)` (ramps from
    /// [`NearField::fill_ramps`]) or by its conjugate.
    fn apply_transfer(
        &self,
        buf: &mut [Complex32],
        ramps: &(Vec<Complex32>, Vec<Complex32>),
        conjugate: bool,
    ) {
        let np = self.padded;
        let [hx, hy] = &*self.axis_transfer;
        for (r, row) in buf.chunks_exact_mut(np).enumerate() {
            let ry = ramps.0[r];
            for (c, (b, rx)) in row.iter_mut().zip(&ramps.1).enumerate() {
                // `transfer` is in transposed order (without astigmatism it is symmetric).
                let h = if self.table_current {
                    self.transfer[c * np + r]
                } else {
                    hx[c] * hy[r]
                };
                let hs = h * ry * rx;
                *b *= if conjugate { hs.conj() } else { hs };
            }
        }
    }

    /// Multiplies row `kx` of a transposed-order spectrum by `H rx ry` (its conjugate when
    /// `conjugate`): `rx` is the row's x ramp (times any scale), `ry` the y ramps along it.
    fn transfer_row(
        &self,
        kx: usize,
        row: &mut [Complex32],
        rx: Complex32,
        ry: &[Complex32],
        conjugate: bool,
    ) {
        let np = self.padded;
        let h = &self.transfer[kx * np..(kx + 1) * np];
        let terms = row.iter_mut().zip(h).zip(ry);
        if conjugate {
            for ((v, &hv), &ry) in terms {
                *v *= (hv * (rx * ry)).conj();
            }
        } else {
            for ((v, &hv), &ry) in terms {
                *v *= hv * (rx * ry);
            }
        }
    }

    /// Near-field forward (see the module docs). The FFTs are pruned to the rows that are not
    /// zero, the middle stage runs per group of rows in transposed order (see
    /// [`NearField::middle`]), and the two unitary scalings are folded into the transfer
    /// multiply. The cache receives the unscaled spectrum (P times the unitary one) in
    /// transposed order.
    fn forward(
        &self,
        field: &mut [Complex32],
        cache: &mut [Complex32],
        s: [f64; 2],
        work: &mut PropWork,
    ) {
        if self.separable() {
            return self.forward_separable(field, cache, s, work);
        }
        debug_assert!(self.table_current, "the 2-D path needs the transfer table");
        let np = self.padded;
        let PropWork {
            fft,
            strip,
            window,
            ramps,
            row_sums,
        } = work;
        self.padded_rows(field, strip, &mut fft.scratch);
        self.fill_ramps(s, ramps);
        let scale = 1.0 / (np * np) as f32;
        let (ry, rxs) = (&ramps.0, &ramps.1);
        // Transposed order: row kx holds x frequency kx (ramp `ramps.1`), column ky the y
        // frequency ky (ramp `ramps.0`); `H` is symmetric, so it multiplies in either order.
        let multiply = |kx: usize, row: &mut [Complex32]| {
            self.transfer_row(kx, row, rxs[kx] * scale, ry, false);
            [0.0; 4]
        };
        let cache = (!cache.is_empty()).then(|| &mut cache[..np * np]);
        self.middle(strip, window, cache, row_sums, multiply);
        self.field_from_window(window, strip, field, &mut fft.scratch);
    }

    /// Adjoint of [`NearField::forward`]; with its cache, also dL/dz and dL/ds.
    fn adjoint(
        &self,
        grad: &mut [Complex32],
        cache: Option<&[Complex32]>,
        s: [f64; 2],
        work: &mut PropWork,
    ) -> AdjointExtras {
        if self.separable() {
            return self.adjoint_separable(grad, cache, s, work);
        }
        debug_assert!(self.table_current, "the 2-D path needs the transfer table");
        let np = self.padded;
        let PropWork {
            fft,
            strip,
            window,
            ramps,
            row_sums,
        } = work;
        self.padded_rows(grad, strip, &mut fft.scratch);
        self.fill_ramps(s, ramps);
        let scale = 1.0 / (np * np) as f32;
        let (ry, rxs) = (&ramps.0, &ramps.1);
        let mut extras = AdjointExtras::default();
        if let Some(spectrum) = cache {
            // With G = FFT(pad(g)) and Hs = H exp(2 pi i f.s), each bin adds
            // q = Re(conj(G) i Hs S) = -Im(conj(G) Hs S), times (kz - k) for dL/dz and
            // 2 pi f for dL/ds. G and S are both unscaled here (P times unitary): q / P^2.
            // Sums run in f32 along a row, then in f64 over the rows in order (the same
            // result on any number of threads).
            let row_op = |kx: usize, row: &mut [Complex32]| {
                let at = kx * np..(kx + 1) * np;
                let ramps = AdjointRamps {
                    x: rxs[kx],
                    y: ry,
                    fy: &self.freq32,
                };
                let (h, d) = (&self.transfer[at.clone()], &self.kz_minus_k[at.clone()]);
                adjoint_row(row, h, &spectrum[at], d, ramps, scale)
            };
            self.middle(strip, window, None, row_sums, row_op);
            let (mut dz, mut dsy, mut dsx) = (0.0f64, 0.0f64, 0.0f64);
            // Sums of q fx^2, q fy^2 and q fx fy for the astigmatism.
            let (mut qxx, mut qyy, mut qxy) = (0.0f64, 0.0f64, 0.0f64);
            for ([row_z, row_q, row_y, row_yy], f) in row_sums.iter().zip(&self.freq) {
                dz += *row_z as f64;
                dsx += *row_q as f64 * f;
                dsy += *row_y as f64;
                qxx += *row_q as f64 * f * f;
                qyy += *row_yy as f64;
                qxy += *row_y as f64 * f;
            }
            let (q_scale, tau) = (scale as f64, std::f64::consts::TAU);
            let c = self.astigmatism_phase_scale() * q_scale;
            let de = [c * (qxx - qyy), c * 2.0 * qxy];
            let [e0, e1] = self.astigmatism;
            extras = AdjointExtras {
                // The astigmatic phase grows with z too.
                dz: dz * q_scale + (e0 * de[0] + e1 * de[1]) / self.distance,
                ds: [tau * dsy * q_scale, tau * dsx * q_scale],
                astigmatism: de,
            };
        } else {
            let multiply = |kx: usize, row: &mut [Complex32]| {
                self.transfer_row(kx, row, rxs[kx] * scale, ry, true);
                [0.0; 4]
            };
            self.middle(strip, window, None, row_sums, multiply);
        }
        self.field_from_window(window, strip, grad, &mut fft.scratch);
        extras
    }
}

impl NearField {
    /// Separable forward (module docs): the rows of `field` propagated along x and cropped,
    /// transposed, propagated along y and cropped, transposed back. The cache receives both
    /// stages' unscaled spectra (x stage: rows y; y stage: rows x), N x P each.
    fn forward_separable(
        &self,
        field: &mut [Complex32],
        cache: &mut [Complex32],
        s: [f64; 2],
        work: &mut PropWork,
    ) {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let PropWork {
            fft,
            strip,
            window,
            ramps,
            ..
        } = work;
        self.fill_ramps(s, ramps);
        let (cache_x, cache_y) = if cache.is_empty() {
            (None, None)
        } else {
            let (x, y) = cache[..2 * n * np].split_at_mut(n * np);
            (Some(x), Some(y))
        };
        let across = &mut window[..n * n];
        self.axis_forward(field, strip, cache_x, 0, &ramps.1, &mut fft.scratch);
        transpose_block(&strip[o..], np, across, n, n, n);
        self.axis_forward(across, strip, cache_y, 1, &ramps.0, &mut fft.scratch);
        transpose_block(&strip[o..], np, field, n, n, n);
    }

    /// One stage of the separable forward: every row of `rows` (N x N) zero-padded into
    /// `strip`, transformed, cached, multiplied by the axis's transfer factor (`axis` 0: x,
    /// 1: y) and move ramp and by `1 / P`, and transformed back (the window is at `o..o + N`).
    fn axis_forward(
        &self,
        rows: &[Complex32],
        strip: &mut [Complex32],
        cache: Option<&mut [Complex32]>,
        axis: usize,
        ramp: &[Complex32],
        scratch: &mut [Complex32],
    ) {
        let np = self.padded;
        self.padded_rows(rows, strip, scratch);
        if let Some(cache) = cache {
            cache.copy_from_slice(strip);
        }
        let (h, scale) = (&self.axis_transfer[axis], 1.0 / np as f32);
        strip
            .par_chunks_mut(np)
            .with_min_len((task_values() / np).max(1))
            .for_each(|row| {
                for ((v, &h), &r) in row.iter_mut().zip(h).zip(ramp) {
                    *v *= h * r * scale;
                }
            });
        self.fft.inverse_rows(strip, scratch);
    }

    /// Adjoint of [`NearField::forward_separable`], stage by stage in reverse; with its cache,
    /// also dL/dz, dL/ds and dL/de0 (dL/de1 is left 0: the separable path runs only while no
    /// caller needs it, see [`Propagator::need_cross_astigmatism_gradient`]).
    fn adjoint_separable(
        &self,
        grad: &mut [Complex32],
        cache: Option<&[Complex32]>,
        s: [f64; 2],
        work: &mut PropWork,
    ) -> AdjointExtras {
        let (n, np, o) = (self.n, self.padded, self.offset());
        let PropWork {
            fft,
            strip,
            window,
            ramps,
            row_sums,
        } = work;
        self.fill_ramps(s, ramps);
        let (cache_x, cache_y) = match cache {
            Some(c) => {
                let (x, y) = c[..2 * n * np].split_at(n * np);
                (Some(x), Some(y))
            }
            None => (None, None),
        };
        let across = &mut window[..n * n];
        transpose_block(grad, n, across, n, n, n);
        let [_, _, q_fy, q_fy2] = self.axis_adjoint(
            across,
            strip,
            cache_y,
            1,
            &ramps.0,
            row_sums,
            &mut fft.scratch,
        );
        transpose_block(&strip[o..], np, grad, n, n, n);
        let [_, _, q_fx, q_fx2] = self.axis_adjoint(
            grad,
            strip,
            cache_x,
            0,
            &ramps.1,
            row_sums,
            &mut fft.scratch,
        );
        for (dst, row) in grad.chunks_exact_mut(n).zip(strip.chunks_exact(np)) {
            dst.copy_from_slice(&row[o..o + n]);
        }
        if cache.is_none() {
            return AdjointExtras::default();
        }
        // Each stage's phase is c (1 +- e0) f^2 with c proportional to z (module docs); its
        // sums carry the stage's 1 / P.
        let (scale, tau) = (1.0 / np as f64, std::f64::consts::TAU);
        let c = self.astigmatism_phase_scale();
        let e0 = self.astigmatism[0];
        AdjointExtras {
            dz: c * scale * ((1.0 + e0) * q_fx2 + (1.0 - e0) * q_fy2) / self.distance,
            ds: [tau * scale * q_fy, tau * scale * q_fx],
            astigmatism: [c * scale * (q_fx2 - q_fy2), 0.0],
        }
    }

    /// One stage of the separable adjoint: the rows of `rows` (N x N) zero-padded into `strip`,
    /// transformed, multiplied by the conjugate of the axis's factor and ramp and by `1 / P`,
    /// and transformed back. With the stage's forward spectra `cache`, returns the sums over
    /// the stage of `q`, `q f` and `q f^2` (in the last three places; the first is unused),
    /// `q = -Im(conj(G) H r S)` per bin (see [`NearField::adjoint`]).
    #[allow(clippy::too_many_arguments)]
    fn axis_adjoint(
        &self,
        rows: &[Complex32],
        strip: &mut [Complex32],
        cache: Option<&[Complex32]>,
        axis: usize,
        ramp: &[Complex32],
        row_sums: &mut [[f32; 4]],
        scratch: &mut [Complex32],
    ) -> [f64; 4] {
        let np = self.padded;
        self.padded_rows(rows, strip, scratch);
        let (h, scale) = (&self.axis_transfer[axis], 1.0 / np as f32);
        let per_task = (task_values() / np).max(1);
        let sums = &mut row_sums[..strip.len() / np];
        let mut total = [0.0f64; 4];
        match cache {
            Some(cache) => {
                let ramps = AdjointRamps {
                    x: Complex32::new(1.0, 0.0),
                    y: ramp,
                    fy: &self.freq32,
                };
                strip
                    .par_chunks_mut(np)
                    .zip(cache.par_chunks(np))
                    .zip(sums.par_iter_mut())
                    .with_min_len(per_task)
                    .for_each(|((row, spectrum), sum)| {
                        // The first sum (weighted by `d`) is not used here: `freq32` stands in.
                        *sum = adjoint_row(row, h, spectrum, &self.freq32, ramps.clone(), scale);
                    });
                // In row order, in f64: the same result on any number of threads.
                for sum in sums.iter() {
                    for (t, &v) in total.iter_mut().zip(sum) {
                        *t += v as f64;
                    }
                }
            }
            None => strip
                .par_chunks_mut(np)
                .with_min_len(per_task)
                .for_each(|row| {
                    for ((v, &h), &r) in row.iter_mut().zip(h).zip(ramp) {
                        *v *= (h * r).conj() * scale;
                    }
                }),
        }
        self.fft.inverse_rows(strip, scratch);
        total
    }
}

/// The move ramps one row of a transposed-order spectrum sees: the x ramp of the row, the y
/// ramps and the y frequencies (cycles per pixel) along it.
#[derive(Clone)]
struct AdjointRamps<'a> {
    x: Complex32,
    y: &'a [Complex32],
    fy: &'a [f32],
}

/// One row of the near-field adjoint's fused pass: `g <- g conj(Hs) scale` with
/// `Hs = H r_x r_y`, and the row's sums of `d q`, `q`, `q f_y` and `q f_y^2` for the distance,
/// move and astigmatism gradients, `q = -Im(conj(g) Hs S)` (see [`NearField::adjoint`]). Eight independent partial
/// sums per quantity let the compiler vectorise the loop.
fn adjoint_row(
    row: &mut [Complex32],
    h: &[Complex32],
    spectrum: &[Complex32],
    d: &[f32],
    ramps: AdjointRamps,
    scale: f32,
) -> [f32; 4] {
    const LANES: usize = 8;
    let mut acc = [[0.0f32; LANES]; 4];
    let mut add = |lane: usize,
                   g: &mut Complex32,
                   h: Complex32,
                   s: Complex32,
                   ry: Complex32,
                   d: f32,
                   fy: f32| {
        let hs = h * (ramps.x * ry);
        let gv = *g;
        *g = gv * (hs.conj() * scale);
        let p = hs * s;
        let q = gv.im * p.re - gv.re * p.im;
        acc[0][lane] += d * q;
        acc[1][lane] += q;
        let qy = q * fy;
        acc[2][lane] += qy;
        acc[3][lane] += qy * fy;
    };
    let whole = row.len() - row.len() % LANES;
    let (body, tail) = row.split_at_mut(whole);
    for (k, g8) in body.chunks_exact_mut(LANES).enumerate() {
        let i = k * LANES;
        let (h8, s8, d8) = (&h[i..i + LANES], &spectrum[i..i + LANES], &d[i..i + LANES]);
        let (r8, f8) = (&ramps.y[i..i + LANES], &ramps.fy[i..i + LANES]);
        for lane in 0..LANES {
            add(
                lane,
                &mut g8[lane],
                h8[lane],
                s8[lane],
                r8[lane],
                d8[lane],
                f8[lane],
            );
        }
    }
    for (k, g) in tail.iter_mut().enumerate() {
        let i = whole + k;
        add(0, g, h[i], spectrum[i], ramps.y[i], d[i], ramps.fy[i]);
    }
    acc.map(|lanes| lanes.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;

    fn random(n: usize, seed: u64) -> Vec<Complex32> {
        let mut s = seed.wrapping_add(12345);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let a = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let b = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                Complex32::new(a, b)
            })
            .collect()
    }

    fn inner(a: &[Complex32], b: &[Complex32]) -> Complex64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let p = x.conj() * y;
                Complex64::new(p.re as f64, p.im as f64)
            })
            .sum()
    }

    fn check_adjoint(p: &Propagator) {
        let n = p.n();
        let x = random(n * n, 1);
        let y = random(n * n, 2);
        let mut ax = x.clone();
        let mut cache = vec![Complex32::default(); p.cache_len()];
        let mut work = p.work();
        p.forward(&mut ax, &mut cache, &mut work);
        let mut ahy = y.clone();
        p.adjoint(&mut ahy, None, &mut work);
        let lhs = inner(&ax, &y);
        let rhs = inner(&x, &ahy);
        assert!((lhs - rhs).norm() / lhs.norm() < 1e-5, "{lhs} vs {rhs}");
    }

    #[test]
    fn adjoint_identity_far_and_near() {
        check_adjoint(&Propagator::far(32));
        check_adjoint(&Propagator::near(32, 1e-9, 0.1, 1e-6));
        check_adjoint(&Propagator::near_padded(30, 30, 1e-9, 0.05, 1e-6));
    }

    #[test]
    fn full_grid_propagation_crops_to_the_moved_forward() {
        for astigmatism in [[0.0; 2], [0.05, -0.03]] {
            full_grid_matches_window(astigmatism);
        }
    }

    fn full_grid_matches_window(astigmatism: [f64; 2]) {
        let mut p = Propagator::near(32, 1e-9, 0.05, 1e-6);
        p.set_astigmatism(astigmatism);
        let (n, np) = (p.n(), p.full_size());
        assert!(np > n);
        let o = (np - n) / 2;
        let x = random(n * n, 11);
        let s = [0.3, -0.2];
        let mut work = p.work();
        let mut want = x.clone();
        p.forward_moved(&mut want, &mut [], s, &mut work);
        let mut full = vec![Complex32::default(); np * np];
        for r in 0..n {
            full[(r + o) * np + o..(r + o) * np + o + n].copy_from_slice(&x[r * n..(r + 1) * n]);
        }
        let before = full.clone();
        p.forward_full(&mut full, s, &mut work);
        for r in 0..n {
            for c in 0..n {
                let d = full[(r + o) * np + o + c] - want[r * n + c];
                assert!(d.norm() < 1e-5, "({r}, {c}): {d}");
            }
        }
        p.inverse_full(&mut full, s, &mut work);
        let err: f32 = full.iter().zip(&before).map(|(a, b)| (a - b).norm()).sum();
        assert!(err < 1e-3, "round trip error {err}");
    }

    #[test]
    fn far_field_is_unitary() {
        let p = Propagator::far(64);
        let x = random(64 * 64, 5);
        let mut y = x.clone();
        p.forward(&mut y, &mut [], &mut p.work());
        let ex: f64 = x.iter().map(|v| v.norm_sqr() as f64).sum();
        let ey: f64 = y.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((ex - ey).abs() / ex < 1e-5);
    }

    #[test]
    fn unpadded_near_field_is_unitary() {
        // Without padding and with no evanescent waves the propagator is unitary.
        let p = Propagator::near_padded(64, 64, 1e-9, 0.1, 1e-6);
        let x = random(64 * 64, 6);
        let mut y = x.clone();
        let mut cache = vec![Complex32::default(); p.cache_len()];
        p.forward(&mut y, &mut cache, &mut p.work());
        let ex: f64 = x.iter().map(|v| v.norm_sqr() as f64).sum();
        let ey: f64 = y.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((ex - ey).abs() / ex < 1e-5);
    }

    #[test]
    fn padding_rule() {
        // spread = 1e-9 * 0.1 / (2e-12) = 50 px each side: 128 + 100 = 228 -> 256 = 2^8.
        assert_eq!(near_field_padded_size(128, 1e-9, 0.1, 1e-6), 256);
        // Capped at N each side: 128 + 256 = 384 = 2^7 3.
        assert_eq!(near_field_padded_size(128, 1e-9, 10.0, 1e-6), 384);
        // 64 + 2 * 50 = 164 -> 192 = 2^6 3 (the paper preset's 128 + 2 * 65 = 258 -> 288).
        assert_eq!(near_field_padded_size(64, 1e-9, 0.1, 1e-6), 192);
        assert_eq!(near_field_padded_size(128, 1e-9, 0.13, 1e-6), 288);
        assert_eq!(next_fft_size(163), 192);
        assert_eq!(next_fast_even(7), 8);
        assert_eq!(next_fast_even(14), 16);
        assert_eq!(next_fast_even(163), 180);
    }

    #[test]
    fn passes_split_over_workers_give_the_same_bits() {
        // On a rayon worker the large passes are split into tasks; off the pool they are not.
        // Both must give identical fields and gradients.
        let p = Propagator::near_padded(100, 250, 1e-9, 0.05, 1e-6);
        let run = || {
            let mut work = p.work();
            let mut cache = vec![Complex32::default(); p.cache_len()];
            let mut field = random(100 * 100, 21);
            p.forward_moved(&mut field, &mut cache, [0.3, -0.4], &mut work);
            let mut grad = random(100 * 100, 22);
            let extras = p.adjoint_moved(&mut grad, Some(&cache), [0.3, -0.4], &mut work);
            (field, grad, extras)
        };
        let alone = run();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let split = pool.install(run);
        assert!(rayon::current_thread_index().is_none());
        assert_eq!(alone.0, split.0);
        assert_eq!(alone.1, split.1);
        assert_eq!(alone.2, split.2);
    }

    #[test]
    fn distance_gradient_matches_finite_difference() {
        let n = 32;
        let (lambda, dx, z) = (1e-9, 1e-6, 0.02);
        let x = random(n * n, 9);
        let target = random(n * n, 10);
        // L(z) = sum |A(z) x - t|^2, gradient wrt field = 2 (A x - t).
        let loss = |z: f64| {
            let p = Propagator::near(n, lambda, z, dx);
            let mut y = x.clone();
            let mut cache = vec![Complex32::default(); p.cache_len()];
            p.forward(&mut y, &mut cache, &mut p.work());
            y.iter()
                .zip(&target)
                .map(|(a, b)| (a - b).norm_sqr() as f64)
                .sum::<f64>()
        };
        let p = Propagator::near(n, lambda, z, dx);
        let mut y = x.clone();
        let mut cache = vec![Complex32::default(); p.cache_len()];
        let mut work = p.work();
        p.forward(&mut y, &mut cache, &mut work);
        let mut g: Vec<Complex32> = y.iter().zip(&target).map(|(a, b)| (a - b) * 2.0).collect();
        let dz = p.adjoint(&mut g, Some(&cache), &mut work);
        let eps = 1e-4 * z;
        let fd = (loss(z + eps) - loss(z - eps)) / (2.0 * eps);
        assert!(
            (dz - fd).abs() / fd.abs() < 1e-2,
            "analytic {dz} vs finite difference {fd}"
        );
    }

    /// `L(s, z, e) = sum |A(z, e, s) x - t|^2` for random `x` and `t` on a near-field grid
    /// padded for the distance `z0`, and its analytic gradients.
    struct Misfit {
        n: usize,
        lambda: f64,
        dx: f64,
        z0: f64,
        x: Vec<Complex32>,
        target: Vec<Complex32>,
    }

    impl Misfit {
        fn new(n: usize, lambda: f64, dx: f64, z0: f64, seed: u64) -> Self {
            Misfit {
                n,
                lambda,
                dx,
                z0,
                x: random(n * n, seed),
                target: random(n * n, seed + 1),
            }
        }

        fn propagator(&self, z: f64, e: [f64; 2]) -> Propagator {
            let mut p = Propagator::near(self.n, self.lambda, self.z0, self.dx);
            p.set_distance(z);
            p.set_astigmatism(e);
            p
        }

        fn loss(&self, s: [f64; 2], z: f64, e: [f64; 2]) -> f64 {
            let p = self.propagator(z, e);
            let mut y = self.x.clone();
            p.forward_moved(&mut y, &mut [], s, &mut p.work());
            y.iter()
                .zip(&self.target)
                .map(|(a, b)| (a - b).norm_sqr() as f64)
                .sum::<f64>()
        }

        fn gradients(&self, s: [f64; 2], z: f64, e: [f64; 2]) -> AdjointExtras {
            let p = self.propagator(z, e);
            let mut work = p.work();
            let mut y = self.x.clone();
            let mut cache = vec![Complex32::default(); p.cache_len()];
            p.forward_moved(&mut y, &mut cache, s, &mut work);
            let mut g: Vec<Complex32> = y
                .iter()
                .zip(&self.target)
                .map(|(a, b)| (a - b) * 2.0)
                .collect();
            p.adjoint_moved(&mut g, Some(&cache), s, &mut work)
        }
    }

    impl Misfit {
        /// Asserts that dL/ds and dL/dz at `(s, z, e)` match central finite differences.
        fn check_move_and_distance_gradients(&self, s: [f64; 2], z: f64, e: [f64; 2]) {
            let extras = self.gradients(s, z, e);
            for k in 0..2 {
                let eps = 1e-3;
                let (mut a, mut b) = (s, s);
                a[k] += eps;
                b[k] -= eps;
                let fd = (self.loss(a, z, e) - self.loss(b, z, e)) / (2.0 * eps);
                assert!(
                    (extras.ds[k] - fd).abs() < 2e-3 * fd.abs().max(1.0),
                    "axis {k}: analytic {} vs finite difference {fd}",
                    extras.ds[k]
                );
            }
            let eps = 1e-4 * z;
            let fd = (self.loss(s, z + eps, e) - self.loss(s, z - eps, e)) / (2.0 * eps);
            assert!(
                (extras.dz - fd).abs() < 2e-3 * fd.abs(),
                "dz: analytic {} vs finite difference {fd}",
                extras.dz
            );
        }
    }

    #[test]
    fn move_and_distance_gradients_match_finite_differences_on_a_padded_grid() {
        // On a grid with padding and evanescent corners.
        let (s, z, e) = ([0.37, -0.21], 0.03, [0.0; 2]);
        let misfit = Misfit::new(48, 1e-9, 0.5e-6, z, 31);
        let padded = misfit.propagator(z, e).full_size();
        assert!(padded > 48 + 40, "padded to {padded}");
        misfit.check_move_and_distance_gradients(s, z, e);
    }

    #[test]
    fn astigmatism_and_distance_gradients_match_finite_differences() {
        // With a move, on a padded grid.
        let (s, z, e) = ([0.3, -0.4], 0.03, [0.02, -0.015]);
        let misfit = Misfit::new(40, 1e-9, 0.5e-6, z, 41);
        let extras = misfit.gradients(s, z, e);
        for k in 0..2 {
            let eps = 1e-4;
            let (mut a, mut b) = (e, e);
            a[k] += eps;
            b[k] -= eps;
            let fd = (misfit.loss(s, z, a) - misfit.loss(s, z, b)) / (2.0 * eps);
            assert!(
                (extras.astigmatism[k] - fd).abs() < 2e-3 * fd.abs(),
                "e{k}: analytic {} vs finite difference {fd}",
                extras.astigmatism[k]
            );
        }
        let eps = 1e-4 * z;
        let fd = (misfit.loss(s, z + eps, e) - misfit.loss(s, z - eps, e)) / (2.0 * eps);
        assert!(
            (extras.dz - fd).abs() < 2e-3 * fd.abs(),
            "dz: analytic {} vs finite difference {fd}",
            extras.dz
        );
    }

    #[test]
    fn separable_path_matches_the_two_dimensional_one() {
        // A paraxial propagator with a move and astigmatism e0 runs the separable path; with
        // the cross term's gradient requested it runs the 2-D path on the same H.
        let (n, s) = (40, [0.3, -0.45]);
        let mut separable = Propagator::near(n, 1e-9, 0.03, 1e-6);
        assert!(separable.is_paraxial());
        separable.set_astigmatism([0.02, 0.0]);
        let mut full = separable.clone();
        full.need_cross_astigmatism_gradient(true);
        let run = |p: &Propagator| {
            let mut work = p.work();
            let mut cache = vec![Complex32::default(); p.cache_len()];
            let mut field = random(n * n, 51);
            p.forward_moved(&mut field, &mut cache, s, &mut work);
            let mut grad = random(n * n, 52);
            let extras = p.adjoint_moved(&mut grad, Some(&cache), s, &mut work);
            (field, grad, extras)
        };
        let (a, b) = (run(&separable), run(&full));
        let largest = |x: &[Complex32], y: &[Complex32]| {
            x.iter()
                .zip(y)
                .map(|(u, v)| (u - v).norm())
                .fold(0.0f32, f32::max)
        };
        assert!(
            largest(&a.0, &b.0) < 1e-5,
            "forward {}",
            largest(&a.0, &b.0)
        );
        assert!(
            largest(&a.1, &b.1) < 1e-5,
            "adjoint {}",
            largest(&a.1, &b.1)
        );
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-3 * y.abs().max(1e-9);
        assert!(close(a.2.dz, b.2.dz), "dz {} vs {}", a.2.dz, b.2.dz);
        for k in 0..2 {
            assert!(
                close(a.2.ds[k], b.2.ds[k]),
                "ds {:?} vs {:?}",
                a.2.ds,
                b.2.ds
            );
        }
        let (e0a, e0b) = (a.2.astigmatism[0], b.2.astigmatism[0]);
        assert!(close(e0a, e0b), "de0 {e0a} vs {e0b}");
    }

    #[test]
    fn wide_angles_keep_the_angular_spectrum() {
        // Visible light on 1 um pixels reaches sin(theta) = 0.25: far from paraxial. Its
        // distance and move gradients still match finite differences (2-D path).
        let (s, z, e) = ([0.37, -0.21], 4e-5, [0.0; 2]);
        let misfit = Misfit::new(32, 5e-7, 1e-6, z, 61);
        assert!(!misfit.propagator(z, e).is_paraxial());
        assert!(Propagator::near(32, 1e-9, 0.2, 1e-6).is_paraxial());
        misfit.check_move_and_distance_gradients(s, z, e);
    }

    #[test]
    fn astigmatism_lengthens_the_x_propagation_and_shortens_the_y_one() {
        // On an unpadded (periodic) grid a field that varies along one axis only stays so, and
        // with astigmatism e0 it propagates as over z (1 + e0) along x and z (1 - e0) along y.
        let (n, lambda, dx, z, e0) = (64, 1e-9, 1e-6, 0.02, 0.1);
        let profile = |t: usize| {
            let u = t as f64 / n as f64;
            Complex32::new(
                (1.0 + 0.5 * (6.0 * std::f64::consts::TAU * u).cos()) as f32,
                (0.3 * (11.0 * std::f64::consts::TAU * u).sin()) as f32,
            )
        };
        for along_x in [true, false] {
            let field: Vec<Complex32> = (0..n * n)
                .map(|i| profile(if along_x { i % n } else { i / n }))
                .collect();
            let propagate = |z: f64, e: [f64; 2]| {
                let mut p = Propagator::near_padded(n, n, lambda, z, dx);
                p.set_astigmatism(e);
                let mut y = field.clone();
                p.forward(&mut y, &mut [], &mut p.work());
                y
            };
            let astigmatic = propagate(z, [e0, 0.0]);
            let stretched = propagate(z * if along_x { 1.0 + e0 } else { 1.0 - e0 }, [0.0; 2]);
            let plain = propagate(z, [0.0; 2]);
            let diff = |a: &[Complex32], b: &[Complex32]| {
                a.iter()
                    .zip(b)
                    .map(|(u, v)| (u - v).norm())
                    .fold(0.0f32, f32::max)
            };
            assert!(diff(&astigmatic, &stretched) < 1e-4, "along x: {along_x}");
            assert!(diff(&astigmatic, &plain) > 1e-2, "along x: {along_x}");
        }
    }

    #[test]
    fn gaussian_beam_width_and_gouy_phase() {
        // A Gaussian waist w0 propagated one Rayleigh length: width w0*sqrt(2), on-axis phase
        // -atan(z/zR) = -pi/4 relative to a plane wave (whose phase the propagator drops).
        let n = 256;
        let (lambda, dx) = (1e-9, 0.5e-6);
        let w0 = 8.0 * dx;
        let z_r = std::f64::consts::PI * w0 * w0 / lambda;
        let p = Propagator::near_padded(n, n, lambda, z_r, dx);
        let c = n as f64 / 2.0;
        let mut field: Vec<Complex32> = (0..n * n)
            .map(|i| {
                let (y, x) = ((i / n) as f64 - c, (i % n) as f64 - c);
                let r2 = (x * x + y * y) * dx * dx;
                Complex32::new((-r2 / (w0 * w0)).exp() as f32, 0.0)
            })
            .collect();
        let mut cache = vec![Complex32::default(); p.cache_len()];
        p.forward(&mut field, &mut cache, &mut p.work());
        // Second moment: <r^2> = w^2 / 2 for intensity exp(-2 r^2 / w^2).
        let (mut m0, mut m2) = (0.0, 0.0);
        for (i, v) in field.iter().enumerate() {
            let (y, x) = ((i / n) as f64 - c, (i % n) as f64 - c);
            let w = v.norm_sqr() as f64;
            m0 += w;
            m2 += w * (x * x + y * y) * dx * dx;
        }
        let width = (2.0 * m2 / m0).sqrt();
        let want = w0 * 2f64.sqrt();
        assert!(
            (width - want).abs() / want < 0.01,
            "width {width} vs {want}"
        );
        let centre = field[(n / 2) * n + n / 2];
        let phase = (centre.im as f64).atan2(centre.re as f64);
        let gouy = -std::f64::consts::FRAC_PI_4;
        assert!(
            (phase - gouy).abs() < 0.01 * gouy.abs(),
            "phase {phase} vs {gouy}"
        );
        // Curvature: phase at radius r relative to the axis is k r^2 / (2 R), R = z (1 + (zR/z)^2).
        let r_px = 8usize;
        let off = field[(n / 2) * n + n / 2 + r_px];
        let dphase = ((off * centre.conj()).arg()) as f64;
        let r = r_px as f64 * dx;
        let radius = z_r * 2.0;
        let want_d = 2.0 * std::f64::consts::PI / lambda * r * r / (2.0 * radius);
        assert!(
            (dphase - want_d).abs() < 0.01 * want_d,
            "curvature {dphase} vs {want_d}"
        );
    }
}
