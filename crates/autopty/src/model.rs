//! The parameters of the forward model and how positions and distances follow from them.
//!
//! Parameters: the object (H x W), the probe modes (M x N x N), a correction (px) added to each
//! nominal scan position, and the refined distance (m; the propagation distance for a plane
//! wave, the focus-to-sample distance `z1` for a point source).
//!
//! The position of pattern j in object pixels is `p_j = q_j / dx + border + c_j`, with `q_j` the
//! nominal position in metres (shifted so the smallest is 0) and `c_j` the correction. In far
//! field `dx = dx(z)`, the sample pixel at the current distance: the distance acts on the data
//! only through the scale of the positions, and that path carries its gradient. In near field
//! `dx` is the grid's pixel at the start, `dx0`, and the distance acts only through the
//! propagator. For a point source the nominal scan could follow `dx(z1)` too, but the scan's
//! scale and `z_eff / dx^2` both grow as `1 + z2 / z1`: along that direction the data do not
//! change (Fresnel scaling, see [`crate::engines::curvature_gauge`]), and a `z1` gradient
//! through both paths left the propagation distance 0.9 % off on the `focused` preset (with the
//! scan right, and twice the loss at the truth). Held in pixels, `z1` moves across that family.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::geometry::{Geometry, Regime};
use crate::probe;
use crate::propagate::{next_fft_size, Propagator};
use ndarray::{Array2, Array3};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};

/// How the model is set up before any engine runs (shared by all engines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Number of probe modes M.
    pub modes: usize,
    /// Power fraction given to each extra mode at the start.
    pub extra_mode_power: f64,
    /// Empty margin around the scan in the object array (px).
    pub border: usize,
    /// Probe initial guess: `mean_pattern` (back-propagated mean amplitude) or `aperture`.
    pub probe_init: ProbeInit,
    /// Radius (px) of the aperture initial guess.
    pub aperture_radius: Option<f64>,
    /// Near-field padded FFT size; `None` = the automatic rule of [`crate::propagate`].
    pub padded_size: Option<usize>,
    /// How sub-pixel positions are modelled.
    pub subpixel: Subpixel,
}

/// How the model sees the object at a sub-pixel position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subpixel {
    /// Exact: the object is read at the nearest integer corner and the exit wave is moved by the
    /// remaining fraction with Fourier phase ramps ([`crate::ops::shift`]). No interpolation
    /// blur, one extra N x N FFT per mode and position each way.
    #[default]
    Fourier,
    /// The bilinear spatial transformer ([`crate::ops::sampler`]): cheapest, but the
    /// interpolation blurs the object by a position-dependent amount, which limits how well
    /// data with sub-pixel positions can be fitted.
    Bilinear,
}

/// Initial guess of the first probe mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeInit {
    /// The mean measured amplitude with flat phase, propagated back to the sample.
    MeanPattern,
    /// A soft-edged disc.
    Aperture,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            modes: 1,
            extra_mode_power: 0.05,
            border: 24,
            probe_init: ProbeInit::MeanPattern,
            aperture_radius: None,
            padded_size: None,
            subpixel: Subpixel::Fourier,
        }
    }
}

/// The refinable parameters and the fixed geometry they live in.
#[derive(Clone, Debug)]
pub struct Model {
    /// Object transmission (H, W).
    pub object: Array2<Complex32>,
    /// Probe modes (M, N, N), photons^(1/2) per pixel.
    pub probe: Array3<Complex32>,
    /// Position corrections (J, 2) px, (row, col).
    pub corrections: Array2<f64>,
    /// Refined distance (m): z for a plane wave, z1 for a point source.
    pub distance: f64,
    /// Relative astigmatism `[e0, e1]` of the near-field propagation (see [`crate::propagate`]):
    /// 0 except in the curvature gauge's passes, which refine it to measure the scan's shape.
    pub astigmatism: [f64; 2],
    /// Geometry with the starting distance (the refined one is applied on demand).
    geometry: Geometry,
    /// Nominal positions (J, 2) in metres, shifted so each column's minimum is 0.
    positions_m: Array2<f64>,
    /// Margin (px) around the scan.
    border: f64,
    /// Sample pixel (m) of the starting geometry: the near-field propagator's grid.
    grid_pixel: f64,
}

/// Gradients of the loss with respect to every parameter group.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// dL/dO (H, W).
    pub object: Array2<Complex32>,
    /// dL/dP (M, N, N).
    pub probe: Array3<Complex32>,
    /// dL/dc (J, 2) per px.
    pub corrections: Array2<f64>,
    /// dL/dz per metre of the refined distance.
    pub distance: f64,
    /// dL/de of the relative astigmatism.
    pub astigmatism: [f64; 2],
}

impl Gradients {
    /// Zero gradients shaped like `model`.
    pub fn zeros_like(model: &Model) -> Self {
        Gradients {
            object: Array2::zeros(model.object.raw_dim()),
            probe: Array3::zeros(model.probe.raw_dim()),
            corrections: Array2::zeros(model.corrections.raw_dim()),
            distance: 0.0,
            astigmatism: [0.0; 2],
        }
    }

    /// Sets every gradient to zero.
    pub fn clear(&mut self) {
        self.object.fill(Complex32::default());
        self.probe.fill(Complex32::default());
        self.corrections.fill(0.0);
        self.distance = 0.0;
        self.astigmatism = [0.0; 2];
    }
}

impl Model {
    /// Builds the starting model for a dataset: object = 1, probe from the data, no corrections,
    /// the stored distance. Also returns the propagator for the starting geometry.
    pub fn initial(data: &Dataset, settings: &ModelSettings) -> Result<(Model, Propagator)> {
        Model::initial_with_geometry(data, settings, data.geometry.clone())
    }

    /// As [`Model::initial`], in `geometry` instead of the dataset's (e.g. another distance).
    pub fn initial_with_geometry(
        data: &Dataset,
        settings: &ModelSettings,
        geometry: Geometry,
    ) -> Result<(Model, Propagator)> {
        geometry.validate()?;
        if settings.modes == 0 {
            return Err(Error::invalid("modes", "expected at least one probe mode"));
        }
        let n = data.frame();
        let mut positions_m = data.positions.clone();
        for mut col in positions_m.columns_mut() {
            let min = col.iter().cloned().fold(f64::INFINITY, f64::min);
            col.mapv_inplace(|v| v - min);
        }
        let dx = geometry.sample_pixel();
        let border = settings.border as f64;
        // Room for the scan to grow by 30% if the refined pixel size shrinks.
        let extent = |k: usize| positions_m.column(k).iter().cloned().fold(0.0, f64::max) / dx;
        let headroom = if geometry.regime == Regime::FarField || geometry.source_distance.is_some()
        {
            1.3
        } else {
            1.0
        };
        let h = (extent(0) * headroom + 2.0 * border) as usize + n + 2;
        let w = (extent(1) * headroom + 2.0 * border) as usize + n + 2;
        // In the near field the object is low-passed once per epoch by a 2-D FFT over the whole
        // array (`ops::band_limit`): sides of FFT-friendly lengths keep those transforms fast
        // (the `paper` preset: 648 x 648 instead of 588 x 603, whose 603 = 9 x 67 took 5x
        // longer per point). The extra rows and columns widen the bottom and right margins.
        let (h, w) = if geometry.regime == Regime::NearField {
            (next_fft_size(h), next_fft_size(w))
        } else {
            (h, w)
        };
        if h * w > 400_000_000 {
            return Err(Error::invalid(
                "object size",
                format!("the scan needs a {h} x {w} px object; check the positions' units"),
            ));
        }
        let propagator = make_propagator(&geometry, n, settings.padded_size);
        let energy = probe::measured_energy(data);
        let first = match settings.probe_init {
            ProbeInit::MeanPattern => probe::probe_from_mean_pattern(data, &propagator, energy),
            ProbeInit::Aperture => {
                let radius = settings.aperture_radius.unwrap_or(n as f64 / 4.0);
                probe::soft_aperture(n, radius, 2.0, energy)
            }
        };
        let probe = probe::with_extra_modes(&first, settings.modes, settings.extra_mode_power);
        let model = Model {
            object: Array2::from_elem((h, w), Complex32::new(1.0, 0.0)),
            probe,
            corrections: Array2::zeros((data.len(), 2)),
            distance: geometry.refined_distance(),
            astigmatism: [0.0; 2],
            geometry,
            positions_m,
            border,
            grid_pixel: dx,
        };
        Ok((model, propagator))
    }

    /// Number of positions J.
    pub fn len(&self) -> usize {
        self.corrections.nrows()
    }

    /// True when the model has no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Probe window side N.
    pub fn frame(&self) -> usize {
        self.probe.shape()[1]
    }

    /// The geometry with the current refined distance.
    pub fn geometry(&self) -> Geometry {
        self.geometry.with_refined_distance(self.distance)
    }

    /// Distance (m) the near-field propagator uses. Its grid keeps the starting sample pixel
    /// `dx0`; in the paraxial regime propagating over `z_eff` on pixels `dx` equals propagating
    /// over `z_eff (dx0 / dx)^2` on pixels `dx0` (only the ratio z / dx^2 enters). For a plane
    /// wave `dx = dx0` and this is the distance itself.
    pub fn propagation_distance(&self) -> f64 {
        let r = self.grid_pixel / self.pixel();
        self.geometry().effective_distance() * r * r
    }

    /// d(propagation distance)/d(refined distance). For a point source,
    /// `z_eff (dx0/dx)^2 = z2 (z1 + z2) dx0^2 / (p^2 z1)`, whose log-derivative is
    /// `-z2 / (z1 (z1 + z2))`.
    pub fn propagation_distance_derivative(&self) -> f64 {
        match self.geometry.source_distance {
            Some(_) => {
                let (z1, z2) = (self.distance, self.geometry.distance);
                -self.propagation_distance() * z2 / (z1 * (z1 + z2))
            }
            None => 1.0,
        }
    }

    /// Sample pixel (m) for the current distance.
    pub fn pixel(&self) -> f64 {
        self.geometry().sample_pixel()
    }

    /// The pixel (m) the nominal scan is laid out in: the sample pixel for the current distance
    /// in far field, the grid's starting pixel `dx0` in near field (see the module docs).
    fn scan_pixel(&self) -> f64 {
        match self.geometry.regime {
            Regime::FarField => self.pixel(),
            Regime::NearField => self.grid_pixel,
        }
    }

    /// d(ln of the scan pixel)/d(refined distance) (1/m): 1/z in far field, 0 in near field.
    fn log_pixel_derivative(&self) -> f64 {
        match self.geometry.regime {
            Regime::FarField => 1.0 / self.distance,
            Regime::NearField => 0.0,
        }
    }

    /// Nominal position of pattern j (px) for the current distance.
    pub fn nominal_position(&self, j: usize) -> [f64; 2] {
        let dx = self.scan_pixel();
        [
            self.positions_m[[j, 0]] / dx + self.border,
            self.positions_m[[j, 1]] / dx + self.border,
        ]
    }

    /// Position of pattern j (px): nominal plus correction.
    pub fn position(&self, j: usize) -> [f64; 2] {
        let [y, x] = self.nominal_position(j);
        [y + self.corrections[[j, 0]], x + self.corrections[[j, 1]]]
    }

    /// d(position_j)/d(refined distance) (px per metre).
    pub fn position_distance_derivative(&self, j: usize) -> [f64; 2] {
        let dlog = self.log_pixel_derivative();
        let [y, x] = self.nominal_position(j);
        [-(y - self.border) * dlog, -(x - self.border) * dlog]
    }

    /// All refined positions (J, 2) px.
    pub fn positions(&self) -> Array2<f64> {
        Array2::from_shape_fn((self.len(), 2), |(j, k)| self.position(j)[k])
    }

    /// All nominal positions (J, 2) px for the current distance.
    pub fn nominal_positions(&self) -> Array2<f64> {
        Array2::from_shape_fn((self.len(), 2), |(j, k)| self.nominal_position(j)[k])
    }

    /// Median length of the position corrections (px).
    pub fn median_correction(&self) -> f64 {
        let mut d: Vec<f64> = self
            .corrections
            .outer_iter()
            .map(|c| (c[0] * c[0] + c[1] * c[1]).sqrt())
            .collect();
        if d.is_empty() {
            return 0.0;
        }
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    }

    /// True when every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.distance.is_finite()
            && self
                .object
                .iter()
                .all(|v| v.re.is_finite() && v.im.is_finite())
            && self
                .probe
                .iter()
                .all(|v| v.re.is_finite() && v.im.is_finite())
            && self.corrections.iter().all(|v| v.is_finite())
    }
}

/// The propagator for a geometry (near field: padded by the automatic rule unless given).
pub fn make_propagator(geometry: &Geometry, n: usize, padded: Option<usize>) -> Propagator {
    match geometry.regime {
        Regime::FarField => Propagator::far(n),
        Regime::NearField => {
            let (l, z, dx) = (
                geometry.wavelength,
                geometry.effective_distance(),
                geometry.sample_pixel(),
            );
            match padded {
                Some(p) => Propagator::near_padded(n, p.max(n), l, z, dx),
                None => Propagator::near(n, l, z, dx),
            }
        }
    }
}
