//! Gradient noise and its fractal sums: the shapes terrain and climate are made of.
//!
//! Gradients come from [`crate::hash`] at each lattice point (no permutation
//! table, 64-bit seeds), and only IEEE-754 basic operations and `floor` are
//! used, so every platform computes the same bits.

use nalgebra::{Matrix2, Vector2};

use crate::hash::{derive, hash2};

/// A point in noise space.
pub type P2 = Vector2<f64>;

/// Sixteen unit gradient directions, written out so no platform `sin`/`cos` is involved.
const GRADIENTS: [(f64, f64); 16] = [
    (1.0, 0.0),
    (0.923_879_532_511_286_7, 0.382_683_432_365_089_8),
    (0.707_106_781_186_547_5, 0.707_106_781_186_547_5),
    (0.382_683_432_365_089_8, 0.923_879_532_511_286_7),
    (0.0, 1.0),
    (-0.382_683_432_365_089_8, 0.923_879_532_511_286_7),
    (-0.707_106_781_186_547_5, 0.707_106_781_186_547_5),
    (-0.923_879_532_511_286_7, 0.382_683_432_365_089_8),
    (-1.0, 0.0),
    (-0.923_879_532_511_286_7, -0.382_683_432_365_089_8),
    (-0.707_106_781_186_547_5, -0.707_106_781_186_547_5),
    (-0.382_683_432_365_089_8, -0.923_879_532_511_286_7),
    (0.0, -1.0),
    (0.382_683_432_365_089_8, -0.923_879_532_511_286_7),
    (0.707_106_781_186_547_5, -0.707_106_781_186_547_5),
    (0.923_879_532_511_286_7, -0.382_683_432_365_089_8),
];

/// A rotation by the exact Pythagorean angle atan2(3, 4) between octaves, so
/// lattice artefacts of successive octaves do not line up.
fn octave_rotation() -> Matrix2<f64> {
    Matrix2::new(0.8, -0.6, 0.6, 0.8)
}

#[inline]
fn fade(t: f64) -> f64 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

#[inline]
fn gradient(seed: u64, ix: i64, iz: i64) -> P2 {
    let (x, z) = GRADIENTS[(hash2(seed, ix, iz) >> 60) as usize];
    P2::new(x, z)
}

/// 2-D gradient (Perlin) noise in roughly `[-1, 1]`, continuous everywhere.
#[inline]
pub fn perlin(seed: u64, p: P2) -> f64 {
    let x0 = p.x.floor();
    let z0 = p.y.floor();
    let (ix, iz) = (x0 as i64, z0 as i64);
    let d = P2::new(p.x - x0, p.y - z0);
    let n00 = gradient(seed, ix, iz).dot(&d);
    let n10 = gradient(seed, ix + 1, iz).dot(&(d - P2::new(1.0, 0.0)));
    let n01 = gradient(seed, ix, iz + 1).dot(&(d - P2::new(0.0, 1.0)));
    let n11 = gradient(seed, ix + 1, iz + 1).dot(&(d - P2::new(1.0, 1.0)));
    let (u, v) = (fade(d.x), fade(d.y));
    let a = n00 + u * (n10 - n00);
    let b = n01 + u * (n11 - n01);
    // The extreme of 2-D Perlin noise with unit gradients is sqrt(2)/2.
    (a + v * (b - a)) * std::f64::consts::SQRT_2
}

/// Shape of a fractal sum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fractal {
    /// Number of octaves summed.
    pub octaves: u32,
    /// Frequency multiplier between octaves.
    pub lacunarity: f64,
    /// Amplitude multiplier between octaves.
    pub persistence: f64,
}

/// Fractional Brownian motion: octaves of [`perlin`], normalised to roughly `[-1, 1]`.
pub fn fbm(seed: u64, p: P2, f: Fractal) -> f64 {
    let rot = octave_rotation();
    let (mut sum, mut norm, mut amp) = (0.0, 0.0, 1.0);
    let mut q = p;
    for octave in 0..f.octaves {
        sum += amp * perlin(derive(seed, u64::from(octave)), q);
        norm += amp;
        amp *= f.persistence;
        q = rot * q * f.lacunarity;
    }
    if norm > 0.0 { sum / norm } else { 0.0 }
}

/// Ridged multifractal noise in `[0, 1]`: sharp crests where the noise crosses zero.
pub fn ridged(seed: u64, p: P2, f: Fractal) -> f64 {
    let rot = octave_rotation();
    let (mut sum, mut norm, mut amp, mut weight) = (0.0, 0.0, 1.0, 1.0);
    let mut q = p;
    for octave in 0..f.octaves {
        let n = 1.0 - perlin(derive(seed, 0x5249_4447 ^ u64::from(octave)), q).abs();
        let n = n * n * weight;
        weight = (n * 2.0).clamp(0.0, 1.0);
        sum += amp * n;
        norm += amp;
        amp *= f.persistence;
        q = rot * q * f.lacunarity;
    }
    if norm > 0.0 { sum / norm } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Fractal = Fractal { octaves: 5, lacunarity: 2.0, persistence: 0.5 };

    #[test]
    fn perlin_is_zero_on_lattice_points_and_bounded_elsewhere() {
        for i in -20..20 {
            assert_eq!(perlin(3, P2::new(f64::from(i), f64::from(-i))), 0.0);
        }
        for i in 0..10_000 {
            let p = P2::new(f64::from(i) * 0.173, f64::from(i) * -0.291);
            let v = perlin(11, p);
            assert!(v.abs() <= 1.0 + 1e-9, "{v} at {p:?}");
        }
    }

    #[test]
    fn perlin_is_continuous_across_cells() {
        let eps = 1e-9;
        for i in -5..5 {
            let x = f64::from(i);
            let left = perlin(5, P2::new(x - eps, 0.37));
            let right = perlin(5, P2::new(x + eps, 0.37));
            assert!((left - right).abs() < 1e-6);
        }
    }

    #[test]
    fn fractals_stay_in_range_and_vary() {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for i in 0..5_000 {
            let p = P2::new(f64::from(i) * 0.37, f64::from(i % 71) * 0.53);
            let v = fbm(1, p, F);
            let r = ridged(1, p, F);
            assert!(v.abs() <= 1.0 + 1e-9);
            assert!((0.0..=1.0).contains(&r));
            lo = lo.min(v);
            hi = hi.max(v);
        }
        assert!(hi - lo > 0.5, "noise is nearly flat: {lo}..{hi}");
    }

    #[test]
    fn different_seeds_give_different_fields() {
        let p = P2::new(12.3, 45.6);
        assert_ne!(fbm(1, p, F), fbm(2, p, F));
    }
}
