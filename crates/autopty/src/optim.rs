//! First-order optimisers: Adam (Kingma & Ba 2015) and plain gradient descent.
//!
//! Real and imaginary parts of complex parameters are independent reals (the gradient convention
//! `g = dL/da + i dL/db` makes this the steepest descent in the a, b coordinates). The object is
//! updated lazily: only the windows the minibatch touched are stepped (their moments decay only
//! when they are stepped, as in "lazy" Adam), which keeps the update cost proportional to the
//! batch rather than to the object. Position corrections are updated per scan position, each with
//! its own step count, since a position receives a gradient once per epoch.
//!
//! Adam divides each element's step by its own root-mean-square gradient, so every element moves
//! by about the learning rate, however little the data say about it. A relative floor on that
//! denominator (a fraction of the largest one among the elements stepped in the step before,
//! i.e. the previous minibatch's windows for the object) keeps this for the
//! well-determined elements and turns the steps of the weakly determined ones (the object's
//! dimly lit rim) into gradient-descent steps proportional to their gradient.

use crate::simd::wide_kernel;
use num_complex::Complex32;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which update rule a parameter group uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with beta1 = 0.9, beta2 = 0.999.
    #[default]
    Adam,
    /// Plain gradient descent, `x -= lr * g`.
    Sgd,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adam" => Ok(OptimizerKind::Adam),
            "sgd" | "gd" => Ok(OptimizerKind::Sgd),
            _ => Err(format!("unknown optimizer '{s}': expected adam or sgd")),
        }
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Optimiser state for one parameter group of `len` reals in `rows` independently counted rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Optimizer {
    kind: OptimizerKind,
    /// First and second moments, in f32: the object's step touches millions of them per
    /// epoch, and f32 halves the memory traffic and doubles the vector width of that loop.
    m: Vec<f32>,
    v: Vec<f32>,
    /// Step count per row.
    t: Vec<u32>,
    /// Count of window steps.
    steps: u32,
    /// Floor of Adam's denominator relative to the largest one of the previous step.
    eps_rel: f64,
    /// Largest bias-corrected second moment of the previous step, and a second slot kept at
    /// 0 (the checkpoint format has both; the maximum of a step is now reduced inside it).
    v_max: [f64; 2],
    /// The windows of the current step sorted by column (reused, not state).
    #[serde(skip)]
    sorted: Vec<(usize, usize)>,
}

/// The constants of one step of one row: the learning rate, Adam's bias corrections
/// `1 / (1 - beta^t)` and the floor of its denominator.
#[derive(Clone, Copy)]
struct Rule {
    kind: OptimizerKind,
    lr: f64,
    c1: f64,
    c2: f64,
    floor: f64,
}

impl Rule {
    /// The change of one real with gradient `g` and moments `m`, `v` (updated), and its
    /// bias-corrected second moment (0 for gradient descent).
    #[inline]
    fn apply(&self, g: f64, m: &mut f64, v: &mut f64) -> (f64, f64) {
        match self.kind {
            OptimizerKind::Sgd => (-self.lr * g, 0.0),
            OptimizerKind::Adam => {
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                let vh = *v * self.c2;
                (-self.lr * *m * self.c1 / (vh.sqrt() + self.floor), vh)
            }
        }
    }

    /// Steps a run of complex elements with their moments (two reals each; empty slices for
    /// gradient descent); returns the largest bias-corrected second moment. In f32, eight
    /// elements at a time, so that the loop vectorises.
    fn run(
        &self,
        params: &mut [Complex32],
        grads: &[Complex32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> f64 {
        let params: &mut [f32] = bytemuck::cast_slice_mut(params);
        let grads: &[f32] = bytemuck::cast_slice(grads);
        if m.is_empty() {
            let lr = self.lr as f32;
            for (p, g) in params.iter_mut().zip(grads) {
                *p -= lr * g;
            }
            return 0.0;
        }
        let (step, c2, floor) = (
            (self.lr * self.c1) as f32,
            self.c2 as f32,
            self.floor as f32,
        );
        adam_run([step, c2, floor], params, grads, m, v)
    }
}

wide_kernel! {
    /// The Adam step of [`Rule::run`] on reals: `[step, c2, floor]` are the step size times
    /// the first moment's bias correction, the second moment's bias correction and the
    /// denominator's floor. Returns the largest bias-corrected second moment.
    fn adam_run(
        constants: [f32; 3],
        params: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> f64 {
        const LANES: usize = 8;
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        let [step, c2, floor] = constants;
        let mut v_max = [0.0f32; LANES];
        let mut one = |lane: usize, p: &mut f32, g: f32, m: &mut f32, v: &mut f32| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let vh = *v * c2;
            *p -= step * *m / (vh.sqrt() + floor);
            v_max[lane] = v_max[lane].max(vh);
        };
        let whole = params.len() - params.len() % LANES;
        let groups = params[..whole]
            .chunks_exact_mut(LANES)
            .zip(grads.chunks_exact(LANES))
            .zip(m.chunks_exact_mut(LANES).zip(v.chunks_exact_mut(LANES)));
        for ((p8, g8), (m8, v8)) in groups {
            for lane in 0..LANES {
                one(lane, &mut p8[lane], g8[lane], &mut m8[lane], &mut v8[lane]);
            }
        }
        for i in whole..params.len() {
            one(0, &mut params[i], grads[i], &mut m[i], &mut v[i]);
        }
        v_max.iter().fold(0.0f32, |a, &b| a.max(b)) as f64
    }
}

impl Optimizer {
    /// State for `len` reals split into `rows` rows of equal length.
    pub fn new(kind: OptimizerKind, len: usize, rows: usize) -> Self {
        let moments = if kind == OptimizerKind::Adam { len } else { 0 };
        Optimizer {
            kind,
            m: vec![0.0; moments],
            v: vec![0.0; moments],
            t: vec![0; rows.max(1)],
            steps: 0,
            eps_rel: 0.0,
            v_max: [0.0; 2],
            sorted: Vec::new(),
        }
    }

    /// Sets the floor of Adam's denominator to `eps_rel` times the largest root second moment
    /// among the elements stepped in the previous step (complex steps only; rows keep `EPS`).
    pub fn with_relative_floor(mut self, eps_rel: f64) -> Self {
        self.eps_rel = eps_rel;
        self
    }

    /// The constants of step `t` with learning rate `lr`; `relative` applies the relative floor.
    fn rule(&self, t: u32, lr: f64, relative: bool) -> Rule {
        let floor = if relative {
            EPS.max(self.eps_rel * self.v_max[0].sqrt())
        } else {
            EPS
        };
        Rule {
            kind: self.kind,
            lr,
            c1: 1.0 / (1.0 - BETA1.powi(t as i32)),
            c2: 1.0 / (1.0 - BETA2.powi(t as i32)),
            floor,
        }
    }

    fn end_step(&mut self, v_max: f64) {
        self.v_max = [v_max, 0.0];
    }

    /// Steps every element of a complex group (one row).
    pub fn step_complex(&mut self, params: &mut [Complex32], grads: &[Complex32], lr: f64) {
        self.t[0] += 1;
        let rule = self.rule(self.t[0], lr, true);
        let v_max = rule.run(params, grads, &mut self.m, &mut self.v);
        self.end_step(v_max);
    }

    /// Steps only the square windows `(row, col)` of side `size` of a complex image of width
    /// `width`, each element once even where windows overlap, and zeroes the gradient there.
    /// The rows of the image are stepped in parallel; the result does not depend on the
    /// number of threads.
    pub fn step_complex_windows(
        &mut self,
        params: &mut [Complex32],
        grads: &mut [Complex32],
        width: usize,
        windows: &[(usize, usize)],
        size: usize,
        lr: f64,
    ) {
        self.steps += 1;
        self.t[0] += 1;
        let rule = self.rule(self.t[0], lr, true);
        let height = params.len() / width.max(1);
        let mut sorted = std::mem::take(&mut self.sorted);
        sorted.clear();
        sorted.extend_from_slice(windows);
        sorted.sort_unstable_by_key(|w| w.1);
        let first = sorted.iter().map(|w| w.0).min().unwrap_or(0).min(height);
        let last = sorted
            .iter()
            .map(|w| w.0 + size)
            .max()
            .unwrap_or(0)
            .min(height);
        let adam = !self.m.is_empty();
        let rows = params[first * width..last * width]
            .par_chunks_mut(width)
            .zip(grads[first * width..last * width].par_chunks_mut(width));
        let step_row =
            |r: usize, p: &mut [Complex32], g: &mut [Complex32], m: &mut [f32], v: &mut [f32]| {
                // The union of the windows' column ranges on this row, in order of their start.
                let mut v_max = 0.0f64;
                let mut done = 0;
                for &(r0, c0) in &sorted {
                    if r < r0 || r >= r0 + size {
                        continue;
                    }
                    let (c0, c1) = (c0.max(done), (c0 + size).min(width));
                    if c0 >= c1 {
                        continue;
                    }
                    let (m, v) = if adam {
                        (&mut m[2 * c0..2 * c1], &mut v[2 * c0..2 * c1])
                    } else {
                        (&mut [][..], &mut [][..])
                    };
                    v_max = v_max.max(rule.run(&mut p[c0..c1], &g[c0..c1], m, v));
                    g[c0..c1].fill(Complex32::default());
                    done = c1;
                }
                v_max
            };
        let v_max = if adam {
            let (m, v) = (
                &mut self.m[2 * first * width..2 * last * width],
                &mut self.v[2 * first * width..2 * last * width],
            );
            rows.zip(m.par_chunks_mut(2 * width).zip(v.par_chunks_mut(2 * width)))
                .enumerate()
                .map(|(k, ((p, g), (m, v)))| step_row(first + k, p, g, m, v))
                .reduce(|| 0.0, f64::max)
        } else {
            rows.enumerate()
                .map(|(k, (p, g))| step_row(first + k, p, g, &mut [], &mut []))
                .reduce(|| 0.0, f64::max)
        };
        self.sorted = sorted;
        self.end_step(v_max);
    }

    /// Steps the given rows (each `width` reals) of a real group, each row with its own count.
    pub fn step_rows(
        &mut self,
        params: &mut [f64],
        grads: &[f64],
        width: usize,
        rows: &[usize],
        lr: f64,
    ) {
        let adam = !self.m.is_empty();
        for &r in rows {
            self.t[r] += 1;
            let rule = self.rule(self.t[r], lr, false);
            for i in r * width..(r + 1) * width {
                // Stored in f32, stepped in f64 (these groups are small).
                let (mut m, mut v) = if adam {
                    (self.m[i] as f64, self.v[i] as f64)
                } else {
                    (0.0, 0.0)
                };
                params[i] += rule.apply(grads[i], &mut m, &mut v).0;
                if adam {
                    (self.m[i], self.v[i]) = (m as f32, v as f32);
                }
            }
        }
    }
}

/// An optimiser's state as plain arrays, for checkpoints: the moments, the step count of each
/// row and the count of window steps. (The per-element stamps of the lazy window update only
/// mark elements already stepped within one step, so a restored optimiser starts them afresh.)
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Update rule.
    pub kind: OptimizerKind,
    /// First moments (empty for plain gradient descent).
    pub m: Vec<f64>,
    /// Second moments (empty for plain gradient descent).
    pub v: Vec<f64>,
    /// Step count per row.
    pub t: Vec<u32>,
    /// Window steps taken.
    pub steps: u32,
    /// Largest second moments of the previous and the current step (the relative floor's scale).
    pub v_max: [f64; 2],
}

impl Optimizer {
    /// A copy of the state, for a checkpoint.
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            kind: self.kind,
            m: self.m.iter().map(|&x| x as f64).collect(),
            v: self.v.iter().map(|&x| x as f64).collect(),
            t: self.t.clone(),
            steps: self.steps,
            v_max: self.v_max,
        }
    }

    /// Continues from a saved state; fails (saying what differs) when the state belongs to
    /// another rule or another number of parameters.
    pub fn restore(&mut self, state: OptimizerState) -> Result<(), String> {
        if state.kind != self.kind {
            return Err(format!(
                "expected the {:?} optimiser, the checkpoint holds {:?}",
                self.kind, state.kind
            ));
        }
        if state.m.len() != self.m.len()
            || state.v.len() != self.v.len()
            || state.t.len() != self.t.len()
        {
            return Err(format!(
                "expected {} moments in {} rows, the checkpoint holds {} / {} moments in {} rows",
                self.m.len(),
                self.t.len(),
                state.m.len(),
                state.v.len(),
                state.t.len()
            ));
        }
        // Exact for moments this type wrote (f32 -> f64 -> f32).
        self.m = state.m.iter().map(|&x| x as f32).collect();
        self.v = state.v.iter().map(|&x| x as f32).collect();
        self.t = state.t;
        self.steps = state.steps;
        self.v_max = state.v_max;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient() {
        let mut opt = Optimizer::new(OptimizerKind::Adam, 2, 1);
        let mut p = [1.0, -2.0];
        opt.step_rows(&mut p, &[0.5, -1e-3], 2, &[0], 0.1);
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] + 1.9).abs() < 1e-4,
            "{p:?}"
        );
    }

    #[test]
    fn complex_step_matches_the_per_element_rule_in_the_vector_body_and_the_tail() {
        // 13 complex = 26 reals: three groups of eight and a tail of two, two steps so the
        // moments carry over. Reference: the f64 rule of `step_rows`, element by element.
        let grads: Vec<Complex32> = (0..13)
            .map(|k| Complex32::new((k as f32 - 6.0) * 0.3, 1.0 / (k as f32 + 1.0)))
            .collect();
        let start: Vec<Complex32> = (0..13).map(|k| Complex32::new(k as f32, -1.0)).collect();
        let mut p = start.clone();
        let mut opt = Optimizer::new(OptimizerKind::Adam, 26, 1);
        let mut reals: Vec<f64> = start
            .iter()
            .flat_map(|z| [z.re as f64, z.im as f64])
            .collect();
        let g_reals: Vec<f64> = grads
            .iter()
            .flat_map(|z| [z.re as f64, z.im as f64])
            .collect();
        let mut reference = Optimizer::new(OptimizerKind::Adam, 26, 1);
        for _ in 0..2 {
            opt.step_complex(&mut p, &grads, 0.1);
            reference.step_rows(&mut reals, &g_reals, 26, &[0], 0.1);
        }
        for (k, z) in p.iter().enumerate() {
            assert!(
                (z.re as f64 - reals[2 * k]).abs() < 1e-5,
                "re {k}: {z} vs {reals:?}"
            );
            assert!((z.im as f64 - reals[2 * k + 1]).abs() < 1e-5, "im {k}");
        }
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        // f(z) = |z - (3 + 4i)|^2, gradient 2 (z - target).
        let mut opt = Optimizer::new(OptimizerKind::Adam, 2, 1);
        let target = Complex32::new(3.0, 4.0);
        let mut z = [Complex32::new(0.0, 0.0)];
        for _ in 0..2000 {
            let g = [(z[0] - target) * 2.0];
            opt.step_complex(&mut z, &g, 0.05);
        }
        assert!((z[0] - target).norm() < 1e-2, "{}", z[0]);
    }

    #[test]
    fn windows_step_each_element_once() {
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 2 * 16, 1);
        let mut p = vec![Complex32::default(); 16];
        let mut g = vec![Complex32::new(1.0, 0.0); 16];
        opt.step_complex_windows(&mut p, &mut g, 4, &[(0, 0), (1, 1)], 2, 0.5);
        // (1,1) is in both windows but stepped once; (3,3) in neither.
        assert_eq!(p[5].re, -0.5);
        assert_eq!(p[15].re, 0.0);
        assert_eq!(g[5].re, 0.0);
        assert_eq!(g[15].re, 1.0);
    }

    #[test]
    fn relative_floor_slows_only_the_weak_elements() {
        // Two steps with the gradients (1, 1e-3): plain Adam moves both by about lr each step;
        // with a floor of 0.1 the second step of the weak element shrinks to about
        // lr * 1e-3 / 0.1, while the strong one keeps about lr / 1.1.
        let step = |floor: f64| {
            let mut opt = Optimizer::new(OptimizerKind::Adam, 4, 1).with_relative_floor(floor);
            let g = [Complex32::new(1.0, 0.0), Complex32::new(1e-3, 0.0)];
            let mut p = [Complex32::default(); 2];
            opt.step_complex(&mut p, &g, 0.1);
            let first = p;
            opt.step_complex(&mut p, &g, 0.1);
            [p[0].re - first[0].re, p[1].re - first[1].re]
        };
        let plain = step(0.0);
        assert!(
            (plain[0] + 0.1).abs() < 1e-6 && (plain[1] + 0.1).abs() < 1e-4,
            "{plain:?}"
        );
        let floored = step(0.1);
        assert!((floored[0] + 0.1 / 1.1).abs() < 1e-4, "{floored:?}");
        assert!(
            (floored[1] + 0.1 * 1e-3 / 0.101).abs() < 1e-5,
            "{floored:?}"
        );
    }

    #[test]
    fn a_restored_optimiser_continues_bit_for_bit() {
        let grads = |k: usize| -> Vec<Complex32> {
            (0..16)
                .map(|i| Complex32::new((i * k) as f32 * 0.1 - 0.7, 0.3 - (i + k) as f32 * 0.05))
                .collect()
        };
        let run = |opt: &mut Optimizer, p: &mut [Complex32], from: usize, to: usize| {
            for k in from..to {
                let mut g = grads(k);
                opt.step_complex_windows(p, &mut g, 4, &[(k % 2, 0), (1, 1)], 2, 0.1);
            }
        };
        let mut a = Optimizer::new(OptimizerKind::Adam, 32, 1);
        let mut pa = vec![Complex32::new(1.0, 0.0); 16];
        run(&mut a, &mut pa, 0, 10);
        let mut b = Optimizer::new(OptimizerKind::Adam, 32, 1);
        let mut pb = vec![Complex32::new(1.0, 0.0); 16];
        run(&mut b, &mut pb, 0, 5);
        let mut c = Optimizer::new(OptimizerKind::Adam, 32, 1);
        c.restore(b.state()).unwrap();
        run(&mut c, &mut pb, 5, 10);
        assert_eq!(pa, pb);
        let err = Optimizer::new(OptimizerKind::Sgd, 32, 1)
            .restore(a.state())
            .unwrap_err();
        assert!(err.contains("Sgd"), "{err}");
        let err = Optimizer::new(OptimizerKind::Adam, 30, 1)
            .restore(a.state())
            .unwrap_err();
        assert!(err.contains("30 moments"), "{err}");
    }
}
