//! Element-wise kernels compiled twice: for the portable x86-64 baseline (SSE2) and for AVX2
//! with FMA, chosen at run time by what the CPU has. The build stays portable (one binary runs
//! on any x86-64), and the hot loops of the epoch (transfer multiplies, the adjoint's gradient
//! sums, the loss) run eight complex values wide where the CPU allows.
//!
//! [`wide_kernel!`] wraps a function: its body becomes an `#[inline(always)]` inner function,
//! inlined once into an AVX2 + FMA copy and once into the baseline one. Loops in the body must
//! not call functions through pointers or `dyn` (those are not inlined, so they would run
//! baseline code): plain loops over slices and iterator adaptors are fine.

/// Whether the CPU runs the AVX2 + FMA copies (detected once, then a cached flag).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name(args) -> ret { body }` that runs `body` compiled for AVX2 + FMA where the
/// CPU has them, and for the baseline elsewhere (module docs).
macro_rules! wide_kernel {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::has_avx2_fma() {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use wide_kernel;
