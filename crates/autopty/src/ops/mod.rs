//! Differentiable operators of the forward model, each with its forward map and its vjp
//! (the adjoint applied to an output gradient). The propagators live in [`crate::propagate`].

pub mod band_limit;
pub mod least_squares;
pub mod loss;
pub mod modes;
pub mod regularise;
pub mod sampler;
pub mod scan_affine;
pub mod shift;
pub mod smooth;
#[cfg(test)]
pub(crate) mod testing;
