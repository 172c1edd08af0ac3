//! Colour maps from a normalised value `t` in [0, 1] to 8-bit sRGB.
//!
//! - `Grey`: black (0) to white (1).
//! - `Viridis`: a perceptually ordered sequential map (dark blue-purple, teal, green, yellow)
//!   whose lightness rises monotonically; interpolated linearly between our own anchor table.
//! - `Cyclic`: for phase; `t = 0` and `t = 1` give the same colour, so -pi and pi look alike.
//!   Light grey at the ends, blue at 1/4, dark purple at 1/2, red-brown at 3/4.
//!
//! `complex_colour` is domain colouring: hue = phase of z, brightness = |z| / max.

use std::f32::consts::PI;

/// A colour map for real-valued images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colormap {
    /// Black to white.
    Grey,
    /// Perceptually ordered sequential map (viridis-like).
    Viridis,
    /// Periodic map for angles: 0 and 1 give the same colour.
    Cyclic,
}

/// Anchors of the sequential map, equally spaced in t (sRGB, 0-255).
const VIRIDIS_ANCHORS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [72.0, 40.0, 120.0],
    [62.0, 74.0, 137.0],
    [49.0, 104.0, 142.0],
    [38.0, 130.0, 142.0],
    [31.0, 158.0, 137.0],
    [53.0, 183.0, 121.0],
    [109.0, 205.0, 89.0],
    [253.0, 231.0, 37.0],
];

/// Anchors of the cyclic map, equally spaced in t; the last equals the first.
const CYCLIC_ANCHORS: [[f32; 3]; 9] = [
    [226.0, 217.0, 226.0],
    [160.0, 182.0, 206.0],
    [98.0, 130.0, 190.0],
    [88.0, 70.0, 160.0],
    [47.0, 20.0, 58.0],
    [128.0, 38.0, 78.0],
    [184.0, 88.0, 74.0],
    [214.0, 164.0, 140.0],
    [226.0, 217.0, 226.0],
];

impl Colormap {
    /// The colour of `t`; values outside [0, 1] are clamped (wrapped for `Cyclic`); NaN is black.
    pub fn rgb(self, t: f32) -> [u8; 3] {
        if t.is_nan() {
            return [0, 0, 0];
        }
        match self {
            Colormap::Grey => {
                let g = to_u8(t.clamp(0.0, 1.0) * 255.0);
                [g, g, g]
            }
            Colormap::Viridis => interpolate(&VIRIDIS_ANCHORS, t.clamp(0.0, 1.0)),
            Colormap::Cyclic => {
                let wrapped = if t.is_finite() {
                    t.rem_euclid(1.0)
                } else {
                    0.0
                };
                interpolate(&CYCLIC_ANCHORS, wrapped)
            }
        }
    }

    /// The colour of the angle `phi` in radians on the cyclic map (-pi and pi coincide).
    pub fn phase_rgb(phi: f32) -> [u8; 3] {
        Colormap::Cyclic.rgb((phi + PI) / (2.0 * PI))
    }
}

/// Linear interpolation between equally spaced anchors, `t` in [0, 1].
fn interpolate(anchors: &[[f32; 3]], t: f32) -> [u8; 3] {
    let segments = (anchors.len() - 1) as f32;
    let x = t * segments;
    let i = (x.floor() as usize).min(anchors.len() - 2);
    let f = x - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    [
        to_u8(a[0] + f * (b[0] - a[0])),
        to_u8(a[1] + f * (b[1] - a[1])),
        to_u8(a[2] + f * (b[2] - a[2])),
    ]
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A fully saturated colour wheel: hue `h` in turns (0 = red, 1/3 = green, 2/3 = blue),
/// value `v` in [0, 1] (brightness).
pub fn hsv_rgb(h: f32, v: f32) -> [u8; 3] {
    let h = if h.is_finite() {
        h.rem_euclid(1.0)
    } else {
        0.0
    };
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = h * 6.0;
    let sector = (x.floor() as u32).min(5);
    let f = x - sector as f32;
    let (r, g, b) = match sector {
        0 => (1.0, f, 0.0),
        1 => (1.0 - f, 1.0, 0.0),
        2 => (0.0, 1.0, f),
        3 => (0.0, 1.0 - f, 1.0),
        4 => (f, 0.0, 1.0),
        _ => (1.0, 0.0, 1.0 - f),
    };
    [
        to_u8(r * v * 255.0),
        to_u8(g * v * 255.0),
        to_u8(b * v * 255.0),
    ]
}

/// Domain colouring of a complex value given as magnitude and phase: hue = phase (phase -pi
/// and pi are both red), brightness = `magnitude / max_magnitude` (clamped to 1). Zero or
/// non-finite input is black.
pub fn complex_colour(magnitude: f32, phase: f32, max_magnitude: f32) -> [u8; 3] {
    let drawable = max_magnitude > 0.0 && magnitude.is_finite() && phase.is_finite();
    if !drawable {
        return [0, 0, 0];
    }
    hsv_rgb((phase + PI) / (2.0 * PI), magnitude / max_magnitude)
}

/// Relative luminance (Rec. 709 weights on linearised sRGB), used by tests and legends.
pub fn luminance(c: [u8; 3]) -> f32 {
    let lin = |u: u8| {
        let s = u as f32 / 255.0;
        if s <= 0.04045 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_channel_step(map: Colormap, n: usize) -> i32 {
        (0..n)
            .map(|i| {
                let a = map.rgb(i as f32 / n as f32);
                let b = map.rgb((i + 1) as f32 / n as f32);
                (0..3)
                    .map(|k| (a[k] as i32 - b[k] as i32).abs())
                    .max()
                    .unwrap()
            })
            .max()
            .unwrap()
    }

    #[test]
    fn grey_endpoints_and_clamping() {
        assert_eq!(Colormap::Grey.rgb(0.0), [0, 0, 0]);
        assert_eq!(Colormap::Grey.rgb(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Grey.rgb(0.5), [128, 128, 128]);
        assert_eq!(Colormap::Grey.rgb(-3.0), [0, 0, 0]);
        assert_eq!(Colormap::Grey.rgb(7.0), [255, 255, 255]);
        assert_eq!(Colormap::Grey.rgb(f32::NAN), [0, 0, 0]);
    }

    #[test]
    fn viridis_lightness_rises_monotonically_and_smoothly() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [68, 1, 84]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [253, 231, 37]);
        let lum: Vec<f32> = (0..=256)
            .map(|i| luminance(Colormap::Viridis.rgb(i as f32 / 256.0)))
            .collect();
        for w in lum.windows(2) {
            assert!(w[1] >= w[0] - 1e-3, "lightness drops: {} -> {}", w[0], w[1]);
        }
        assert!(lum[256] > 20.0 * lum[0]);
        assert!(max_channel_step(Colormap::Viridis, 256) <= 6);
    }

    #[test]
    fn cyclic_map_joins_at_plus_minus_pi() {
        assert_eq!(Colormap::phase_rgb(-PI), Colormap::phase_rgb(PI));
        assert_eq!(Colormap::Cyclic.rgb(0.0), Colormap::Cyclic.rgb(1.0));
        // Wraps: t and t + 1 are the same colour.
        assert_eq!(Colormap::Cyclic.rgb(0.3), Colormap::Cyclic.rgb(1.3));
        // Continuous across the seam and everywhere else.
        assert!(max_channel_step(Colormap::Cyclic, 256) <= 6);
        let a = Colormap::phase_rgb(PI - 1e-3);
        let b = Colormap::phase_rgb(-PI + 1e-3);
        for k in 0..3 {
            assert!((a[k] as i32 - b[k] as i32).abs() <= 1);
        }
        // Phase 0 and pi are clearly different.
        let d0 = Colormap::phase_rgb(0.0);
        let dpi = Colormap::phase_rgb(PI);
        assert!(luminance(dpi) - luminance(d0) > 0.5);
    }

    #[test]
    fn domain_colouring_hue_follows_phase_and_brightness_magnitude() {
        assert_eq!(complex_colour(1.0, 0.0, 1.0), [0, 255, 255]); // phase 0: cyan
        assert_eq!(complex_colour(1.0, PI, 1.0), [255, 0, 0]); // phase pi: red
        assert_eq!(complex_colour(1.0, -PI, 1.0), [255, 0, 0]);
        assert_eq!(complex_colour(0.5, PI, 1.0), [128, 0, 0]);
        assert_eq!(complex_colour(3.0, PI, 1.0), [255, 0, 0]);
        assert_eq!(complex_colour(0.0, 1.0, 1.0), [0, 0, 0]);
        assert_eq!(complex_colour(1.0, f32::NAN, 1.0), [0, 0, 0]);
        assert_eq!(complex_colour(1.0, 0.0, 0.0), [0, 0, 0]);
        assert_eq!(hsv_rgb(1.0 / 3.0, 1.0), [0, 255, 0]);
        assert_eq!(hsv_rgb(2.0 / 3.0, 1.0), [0, 0, 255]);
    }
}
