//! Reconstruction quality metrics: SSIM, sub-pixel registration, the aligned NRMSE, position and
//! distance errors (all gathered by [`score`]), probe mode power fractions and line profiles
//! with an edge-width resolution estimate.
//!
//! Conventions: images are `[row, col]`; shifts and positions are `(row, col)` in object pixels;
//! a shift `s` moves image content by `+s`.

mod frame;
mod probe;
mod profile;
mod register;
mod score;
mod ssim;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use frame::{
    erode, extract, global_factor, illumination, remove_phase_ramp, threshold, zoom_bilinear,
};
pub use probe::probe_power_fractions;
pub use profile::{edge_fwhm, edge_width, line_profile};
pub use register::{fourier_shift, register};
pub use score::{
    format_table, score, Score, REGION_EROSION_PX, REGION_THRESHOLD, REGISTRATION_UPSAMPLE,
    TARGET_DISTANCE_REL, TARGET_POSITION_MEDIAN_PX, TARGET_SSIM_MAGNITUDE,
};
pub use ssim::{ssim, ssim_map, SSIM_RADIUS, SSIM_SIGMA};
