//! Named simulation presets.
//!
//! - `paper`: the published synthetic near-field protocol. Plane wave, wavelength 1 nm, 128 x 128
//!   detector with 1 um pixels at 0.1 m (pixel Fresnel number 0.01, field Fresnel number 164);
//!   object from "camera" (magnitude in [0.5, 1]) and "coffee" (phase in [-1, 1] rad); probe
//!   from "chelsea" (magnitude in [0.2, 1]) and "astronaut" (phase in [-1, 1] rad) inside a soft
//!   aperture of radius 56 px; 11 x 11 raster, 70 % overlap (step 38.4 px), +-2 px jitter;
//!   object 576 x 576 px. Stored metadata: distance 1.3 x the true one, positions with 10 px
//!   Gaussian errors. Noise: Poisson at 1e8 photons per pattern (about 6000 per pixel, so the
//!   data is realistic yet nearly noise-free; set `noise.poisson = false` for exact counts). The
//!   five published distances are [`PAPER_DISTANCES`].
//! - `small`: the same physics at 64 x 64 px, 7 x 7 positions, object 216 x 216 px, for tests;
//!   the stored positions err by 5 px (the paper's 10 px scaled with the frame).
//! - `paper_small`: `small` with the object cut from the middle of the paper's pictures at the
//!   paper's detail per pixel (216 of its 576 px each way) instead of the whole pictures shrunk
//!   2.7 times: the paper's scenario at test size. (`small`'s finer detail caps its magnitude
//!   SSIM near 0.81 even with the true geometry; this one reaches 0.96.)
//! - `farfield`: Fraunhofer geometry (wavelength 0.1 nm, 75 um pixels at 2 m, 64 x 64 px, sample
//!   pixel 41.7 nm); flat probe with a 4 rad defocus phase inside a 14 px radius aperture
//!   (oversampling about 2); 100-point Fermat spiral with 70 % overlap; 2 px position errors.
//! - `focused`: a soft X-ray zone-plate focus (the published real-data geometry). Wavelength
//!   1 nm, the focus `z1` = 14 mm upstream of the sample, a 128 x 128 detector with 13.5 um
//!   pixels `z2` = 0.5 m downstream: magnification `M = (z1 + z2) / z1` = 36.7, sample pixel
//!   368 nm, effective (plane-wave) distance `z2 / M` = 13.6 mm, pixel Fresnel number 0.0099.
//!   The probe is the zone plate's diverging cone with its curvature `exp(i pi r^2 / (lambda z1))`
//!   removed (Fresnel scaling): an annulus (outer radius 0.42 N, central stop 0.15 N) with
//!   picture-textured magnitude and a weak (+-0.3 rad) picture phase, and no defocus: the data
//!   fix only the total curvature of the beam at the sample, so any quadratic part of the
//!   equivalent probe's phase is the same data as another `z1` (with the paper's +-1 rad phase
//!   picture that ambiguity measured about 2 % of `z1`). 11 x 11 raster, 70 % overlap. Stored metadata: `z1` 30 % long (which
//!   also makes the stored sample pixel 29 % large), positions with 10 px errors.
//! - `focused_small`: the `focused` physics at 64 x 64 px and 7 x 7 positions, for tests; the
//!   object (216 x 216 px) is the middle half of the pictures, so that less of their detail lies
//!   beyond the 0.32 cycles/px that the reconstruction keeps at 64 px; 1.5e7 photons per pattern
//!   (peak counts below 2^16, for the raw form); stored positions with 5 px errors.

use super::config::*;
use super::image::Picture;
use crate::error::{Error, Result};
use crate::geometry::Regime;

/// Names accepted by [`preset`].
pub const PRESETS: [&str; 6] = [
    "paper",
    "small",
    "paper_small",
    "farfield",
    "focused",
    "focused_small",
];

/// The five propagation distances (m) of the published protocol.
pub const PAPER_DISTANCES: [f64; 5] = [0.065, 0.1, 0.13, 0.165, 0.2];

/// The settings of a named preset.
pub fn preset(name: &str) -> Result<SimConfig> {
    match name {
        "paper" => Ok(paper()),
        "small" => Ok(small()),
        "paper_small" => Ok(paper_small()),
        "farfield" => Ok(farfield()),
        "focused" => Ok(focused()),
        "focused_small" => Ok(focused_small()),
        other => Err(Error::invalid(
            "preset",
            format!(
                "unknown preset '{other}'; expected one of {}",
                PRESETS.join(", ")
            ),
        )),
    }
}

/// The published near-field protocol at 0.1 m (see the module docs).
pub fn paper() -> SimConfig {
    SimConfig {
        name: "paper".into(),
        seed: 1,
        geometry: GeometryConfig {
            regime: Regime::NearField,
            wavelength: 1e-9,
            detector_pixel: 1e-6,
            distance: 0.1,
            source_distance: None,
            frame: 128,
            padded_size: None,
        },
        object: ObjectConfig {
            magnitude_image: Picture::Camera,
            phase_image: Picture::Coffee,
            magnitude_min: 0.5,
            phase_range: 1.0,
            size: None,
            picture_fraction: 1.0,
        },
        probe: ProbeConfig {
            magnitude_image: Picture::Chelsea,
            phase_image: Picture::Astronaut,
            magnitude_min: 0.2,
            phase_range: 1.0,
            defocus: 0.0,
            aperture_radius: 56.0,
            aperture_edge: 12.0,
            central_stop: 0.0,
            modes: 1,
            power_fractions: vec![],
        },
        scan: ScanConfig {
            pattern: ScanPattern::Raster,
            rows: 11,
            cols: 11,
            points: 121,
            rings: 5,
            overlap: 0.7,
            probe_diameter: None,
            jitter: 2.0,
            margin: 16.0,
        },
        noise: NoiseConfig {
            photons: 1e8,
            poisson: true,
        },
        detector_mask: MaskConfig {
            dead_columns: vec![],
            dead_rows: vec![],
            beamstop_radius: 0.0,
        },
        corruption: CorruptionConfig {
            position_jitter: 10.0,
            distance_error: 0.3,
        },
    }
}

/// The paper's physics at a small size, for fast tests.
pub fn small() -> SimConfig {
    let mut c = paper();
    c.name = "small".into();
    c.geometry.frame = 64;
    c.probe.aperture_radius = 28.0;
    c.probe.aperture_edge = 6.0;
    c.scan.rows = 7;
    c.scan.cols = 7;
    c.scan.points = 49;
    c.scan.margin = 12.0;
    // Half the frame, half the position error: the same relative difficulty.
    c.corruption.position_jitter = 5.0;
    c
}

/// `small` with the paper's object detail per pixel (see the module docs).
pub fn paper_small() -> SimConfig {
    let mut c = small();
    c.name = "paper_small".into();
    let paper_object = 576.0;
    let small_object = 216.0;
    c.object.picture_fraction = small_object / paper_object;
    c
}

/// A far-field (Fraunhofer) case with a Fermat spiral.
pub fn farfield() -> SimConfig {
    let mut c = paper();
    c.name = "farfield".into();
    c.geometry = GeometryConfig {
        regime: Regime::FarField,
        wavelength: 1e-10,
        detector_pixel: 75e-6,
        distance: 2.0,
        source_distance: None,
        frame: 64,
        padded_size: None,
    };
    c.probe = ProbeConfig {
        magnitude_image: Picture::Uniform,
        phase_image: Picture::Uniform,
        magnitude_min: 1.0,
        phase_range: 0.0,
        defocus: 4.0,
        aperture_radius: 14.0,
        aperture_edge: 4.0,
        central_stop: 0.0,
        modes: 1,
        power_fractions: vec![],
    };
    c.scan = ScanConfig {
        pattern: ScanPattern::Spiral,
        rows: 10,
        cols: 10,
        points: 100,
        rings: 5,
        overlap: 0.7,
        probe_diameter: None,
        jitter: 0.5,
        margin: 12.0,
    };
    c.corruption = CorruptionConfig {
        position_jitter: 2.0,
        distance_error: 0.0,
    };
    c
}

/// A zone-plate focus upstream of the sample, near-field detector far downstream (see the
/// module docs).
pub fn focused() -> SimConfig {
    let mut c = paper();
    c.name = "focused".into();
    c.geometry.wavelength = 1e-9;
    c.geometry.detector_pixel = 13.5e-6;
    c.geometry.distance = 0.5;
    c.geometry.source_distance = Some(0.014);
    c.probe.aperture_radius = 0.42 * 128.0;
    c.probe.central_stop = 0.15 * 128.0;
    c.probe.aperture_edge = 8.0;
    c.probe.magnitude_min = 0.4;
    c.probe.phase_range = 0.3;
    c
}

/// The `focused` physics at a small size, for fast tests (see the module docs).
pub fn focused_small() -> SimConfig {
    let mut c = focused();
    c.name = "focused_small".into();
    c.geometry.frame = 64;
    c.probe.aperture_radius = 0.42 * 64.0;
    c.probe.central_stop = 0.15 * 64.0;
    c.probe.aperture_edge = 4.0;
    c.scan.rows = 7;
    c.scan.cols = 7;
    c.scan.points = 49;
    c.scan.margin = 12.0;
    // The middle half of the pictures: at 64 px the reconstruction keeps the object only up to
    // about 0.32 cycles/px (`object_band_limit`: the `focused` pixel Fresnel number times half
    // the frame), and the whole pictures shrunk onto the 216 px object hold much detail beyond
    // that (magnitude SSIM 0.78 with the exact geometry even without noise; 0.88 with the
    // pictures drawn over 432 px, which this cut equals).
    c.object.picture_fraction = 0.5;
    // Fits the 16-bit raw form with room to spare (peak count about 46000 at seed 1).
    c.noise.photons = 1.5e7;
    c.corruption.position_jitter = 5.0;
    c
}
