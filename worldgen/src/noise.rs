//! Gradient noise and its fractal sums: the shapes terrain and climate are made of.
//!
//! Every function here is written once, lane by lane, over slices (structure
//! of arrays: one slice of x coordinates, one of z, one of results), so the
//! same source is the scalar path (a slice of one column) and the vector
//! paths (a whole chunk, compiled for SSE2, SSE4.1, AVX2 or AVX-512 by
//! [`crate::isa`]). Only IEEE-754 basic operations (`+ - * /`, compares),
//! integer operations and bit casts are used: no `floor` call, no platform
//! `sin`/`exp`, no fused multiply-add. Rust never contracts `a * b + c` into
//! an FMA nor reassociates floating-point sums, so every lane of every path
//! computes the same bits.
//!
//! Lattice gradients come from a 32-bit hash of the lattice point (the low
//! 32 bits of its integer coordinates, so lattice hashing wraps every 2^32
//! cells) under a per-octave seed derived from the 64-bit world seed.
//!
//! Precision: coordinates, octave steps and fractal sums are `f64`; each
//! octave splits a point into its lattice cell and its offset in the cell
//! in `f64`, and only then evaluates the cell (hashes, gradients, fade,
//! interpolation) in `u32`/`f32` lanes, twice as many per vector. The
//! offset is in `[0, 1]` wherever the point is, so far from the origin
//! (|x| = 10^7 columns and beyond) it keeps its full `f32` resolution.

// Index loops over fixed-length slices are what the vectoriser handles best.
#![allow(clippy::needless_range_loop)]

use crate::hash::derive;
use crate::isa::{self, Isa, Kernel};

/// `1.5 * 2^52`: adding it to a float of magnitude below 2^51 rounds it to
/// an integer and leaves that integer's low 32 bits at the bottom of the
/// mantissa (exact IEEE arithmetic, the same on every platform).
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// Odd multipliers that spread lattice x and z over the 32-bit hash input.
const PX: u32 = 0x9e37_79b1;
const PZ: u32 = 0x85eb_ca77;

/// Scales the gradient sum to about `[-1, 1]`: gradients are (±1, ±2) or
/// (±2, ±1), of length √5, and 2-D Perlin noise is at most |g|·√2/2.
const NORM: f32 = 0.632_455_5; // 2 / sqrt(10)

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

/// The 32-bit lattice seed of one octave of a noise stream.
#[inline(always)]
fn octave_seed(seed: u64, stream: u64) -> u32 {
    let s = derive(seed, stream);
    (s ^ (s >> 32)) as u32
}

/// A 32-bit integer finaliser (xor-shift / multiply, after "lowbias32";
/// only its top three bits are used, so the last xor-shift is left out).
#[inline(always)]
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h.wrapping_mul(0x846c_a68b)
}

/// Splits a coordinate into its lattice cell (low 32 bits of `floor(x)`)
/// and the offset `x - floor(x)` in `[0, 1)` (rounded to `f32`); exact
/// for |x| < 2^51. Coordinates stay `f64`, so the offset keeps its full
/// `f32` precision however far from the origin the point is.
#[inline(always)]
fn split(x: f64) -> (u32, f32) {
    let t = x + MAGIC;
    let r = t - MAGIC;
    let below = r > x;
    let cell = (t.to_bits() as u32).wrapping_sub(u32::from(below));
    let floor = if below { r - 1.0 } else { r };
    (cell, (x - floor) as f32)
}

/// Dot product of the gradient picked by bits 31..29 of `h` with (x, z).
#[inline(always)]
fn grad(h: u32, x: f32, z: f32) -> f32 {
    let swap = h & 0x8000_0000 != 0;
    let (a, b) = if swap { (z, x) } else { (x, z) };
    // Sign flips by xor of the sign bit: exact, and integer work only.
    let a = f32::from_bits(a.to_bits() ^ ((h << 1) & 0x8000_0000));
    let b = f32::from_bits(b.to_bits() ^ ((h << 2) & 0x8000_0000));
    a + (b + b)
}

#[inline(always)]
fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// 2-D gradient (Perlin) noise in roughly `[-1, 1]` from a point's lattice
/// cell and offsets, for one lattice seed: all `u32`/`f32` lanes.
#[inline(always)]
fn perlin_cell(seed: u32, ix: u32, dx: f32, iz: u32, dz: f32) -> f32 {
    let ax0 = ix.wrapping_mul(PX);
    let ax1 = ax0.wrapping_add(PX);
    let az = iz.wrapping_mul(PZ);
    let (az0, az1) = (az ^ seed, az.wrapping_add(PZ) ^ seed);
    let (ex, ez) = (dx - 1.0, dz - 1.0);
    let n00 = grad(mix32(ax0 ^ az0), dx, dz);
    let n10 = grad(mix32(ax1 ^ az0), ex, dz);
    let n01 = grad(mix32(ax0 ^ az1), dx, ez);
    let n11 = grad(mix32(ax1 ^ az1), ex, ez);
    let (u, v) = (fade(dx), fade(dz));
    let a = n00 + u * (n10 - n00);
    let b = n01 + u * (n11 - n01);
    (a + v * (b - a)) * NORM
}

/// [`perlin_cell`] at a point.
#[inline(always)]
fn perlin_lane(seed: u32, x: f64, z: f64) -> f32 {
    let (ix, dx) = split(x);
    let (iz, dz) = split(z);
    perlin_cell(seed, ix, dx, iz, dz)
}

/// Points are processed in blocks of this many: each octave splits a block
/// into cells and offsets (`f64`), then evaluates the noise on them in a
/// loop that is all 32-bit lanes (twice as many per vector as `f64`).
const BLOCK: usize = 256;

/// One octave of noise over a block: `out[i] = perlin(x[i], z[i])`, then the
/// points moved to the next octave.
#[inline(always)]
fn octave_block(seed: u32, lacunarity: f64, x: &mut [f64], z: &mut [f64], out: &mut [f32; BLOCK]) {
    let n = x.len();
    let z = &mut z[..n];
    let mut cx = [0u32; BLOCK];
    let mut cz = [0u32; BLOCK];
    let mut dx = [0f32; BLOCK];
    let mut dz = [0f32; BLOCK];
    for i in 0..n {
        (cx[i], dx[i]) = split(x[i]);
        (cz[i], dz[i]) = split(z[i]);
        (x[i], z[i]) = next_octave(x[i], z[i], lacunarity);
    }
    for i in 0..n {
        out[i] = perlin_cell(seed, cx[i], dx[i], cz[i], dz[i]);
    }
}

/// One octave step: rotate by the exact Pythagorean angle atan2(3, 4), so
/// lattice artefacts of successive octaves do not line up, then scale.
#[inline(always)]
fn next_octave(x: f64, z: f64, lacunarity: f64) -> (f64, f64) {
    ((0.8 * x - 0.6 * z) * lacunarity, (0.6 * x + 0.8 * z) * lacunarity)
}

/// 2-D gradient noise at one point: [`perlin_into`] on a single column.
pub fn perlin(seed: u64, x: f64, z: f64) -> f64 {
    f64::from(perlin_lane(octave_seed(seed, 0), x, z))
}

/// Octave 0 of [`fbm_into`]'s stream at every point: `out[i] = perlin(seed, x[i], z[i])`.
#[inline(always)]
pub fn perlin_into(seed: u64, x: &[f64], z: &[f64], out: &mut [f64]) {
    let s = octave_seed(seed, 0);
    let n = out.len();
    let (x, z) = (&x[..n], &z[..n]);
    for i in 0..n {
        out[i] = f64::from(perlin_lane(s, x[i], z[i]));
    }
}

/// Fractional Brownian motion at every point, normalised to roughly `[-1, 1]`.
///
/// `x` and `z` are the points and are used as scratch (left at the last
/// octave's coordinates). All three slices have the same length.
#[inline(always)]
pub fn fbm_into(seed: u64, f: Fractal, x: &mut [f64], z: &mut [f64], out: &mut [f64]) {
    let n = out.len();
    let (x, z) = (&mut x[..n], &mut z[..n]);
    let mut p = [0f32; BLOCK];
    let mut start = 0;
    while start < n {
        let end = n.min(start + BLOCK);
        let (x, z, out) = (&mut x[start..end], &mut z[start..end], &mut out[start..end]);
        out.fill(0.0);
        let (mut norm, mut amp) = (0.0, 1.0);
        for octave in 0..f.octaves {
            octave_block(octave_seed(seed, u64::from(octave)), f.lacunarity, x, z, &mut p);
            for i in 0..out.len() {
                out[i] += amp * f64::from(p[i]);
            }
            norm += amp;
            amp *= f.persistence;
        }
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for v in out.iter_mut() {
            *v *= scale;
        }
        start = end;
    }
}

/// Ridged multifractal noise in `[0, 1]` at every point: sharp crests where
/// the noise crosses zero. `x`, `z` and `weight` are scratch; all four
/// slices have the same length.
#[inline(always)]
pub fn ridged_into(seed: u64, f: Fractal, x: &mut [f64], z: &mut [f64], weight: &mut [f64], out: &mut [f64]) {
    let n = out.len();
    let (x, z, weight) = (&mut x[..n], &mut z[..n], &mut weight[..n]);
    let mut p = [0f32; BLOCK];
    let mut start = 0;
    while start < n {
        let end = n.min(start + BLOCK);
        let (x, z, weight, out) =
            (&mut x[start..end], &mut z[start..end], &mut weight[start..end], &mut out[start..end]);
        out.fill(0.0);
        weight.fill(1.0);
        let (mut norm, mut amp) = (0.0, 1.0);
        for octave in 0..f.octaves {
            octave_block(octave_seed(seed, 0x5249_4447 ^ u64::from(octave)), f.lacunarity, x, z, &mut p);
            for i in 0..out.len() {
                let p = f64::from(p[i]);
                let p = if p < 0.0 { -p } else { p };
                let r = 1.0 - p;
                let r = r * r * weight[i];
                weight[i] = (r * 2.0).clamp(0.0, 1.0);
                out[i] += amp * r;
            }
            norm += amp;
            amp *= f.persistence;
        }
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for v in out.iter_mut() {
            *v *= scale;
        }
        start = end;
    }
}

struct FbmKernel<'a> {
    seed: u64,
    f: Fractal,
    x: &'a mut [f64],
    z: &'a mut [f64],
    out: &'a mut [f64],
}

impl Kernel for FbmKernel<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        fbm_into(self.seed, self.f, self.x, self.z, self.out)
    }
}

/// [`fbm_into`] compiled for an instruction-set path ([`Isa::Scalar`]: point
/// by point). Every path gives the same bits.
///
/// # Panics
/// If this machine cannot run `isa`.
pub fn fbm_on(isa: Isa, seed: u64, f: Fractal, x: &mut [f64], z: &mut [f64], out: &mut [f64]) {
    assert!(isa.is_available(), "this machine cannot run the {} path", isa.name());
    if isa == Isa::Scalar {
        for i in 0..out.len() {
            fbm_into(seed, f, &mut x[i..i + 1], &mut z[i..i + 1], &mut out[i..i + 1]);
        }
    } else {
        isa::run(isa, FbmKernel { seed, f, x, z, out });
    }
}

/// [`fbm_into`] at one point.
pub fn fbm(seed: u64, x: f64, z: f64, f: Fractal) -> f64 {
    let mut out = [0.0];
    fbm_into(seed, f, &mut [x], &mut [z], &mut out);
    out[0]
}

/// [`ridged_into`] at one point.
pub fn ridged(seed: u64, x: f64, z: f64, f: Fractal) -> f64 {
    let mut out = [0.0];
    ridged_into(seed, f, &mut [x], &mut [z], &mut [0.0], &mut out);
    out[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Fractal = Fractal { octaves: 5, lacunarity: 2.0, persistence: 0.5 };

    #[test]
    fn split_is_floor_for_negative_positive_and_far_values() {
        for x in [-3.5, -3.0, -0.25, -0.0, 0.0, 0.75, 1.0, 2.5, 1e7 + 0.5, -1e7 - 0.5, 4.0e12 + 0.25, -(2f64.powi(50))]
        {
            let (cell, d) = split(x);
            assert_eq!(cell, x.floor() as i64 as u32, "{x}");
            assert_eq!(d, (x - x.floor()) as f32, "{x}");
            assert!((0.0..=1.0).contains(&d), "{x}: {d}");
        }
    }

    #[test]
    fn perlin_is_zero_on_lattice_points_and_bounded_elsewhere() {
        for i in -20..20 {
            assert_eq!(perlin(3, f64::from(i), f64::from(-i)), 0.0);
        }
        for i in 0..10_000 {
            let (x, z) = (f64::from(i) * 0.173, f64::from(i) * -0.291);
            let v = perlin(11, x, z);
            assert!(v.abs() <= 1.0 + 1e-9, "{v} at {x}, {z}");
        }
    }

    #[test]
    fn perlin_is_continuous_across_cells() {
        let eps = 1e-9;
        for i in -5..5 {
            let x = f64::from(i);
            let left = perlin(5, x - eps, 0.37);
            let right = perlin(5, x + eps, 0.37);
            assert!((left - right).abs() < 1e-6);
            let far = 1.0e7 * 0.016 + x;
            assert!((perlin(5, far - 1e-7, 0.37) - perlin(5, far + 1e-7, 0.37)).abs() < 1e-5);
        }
    }

    #[test]
    fn fractals_stay_in_range_and_vary() {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for i in 0..5_000 {
            let (x, z) = (f64::from(i) * 0.37, f64::from(i % 71) * 0.53);
            let v = fbm(1, x, z, F);
            let r = ridged(1, x, z, F);
            assert!(v.abs() <= 1.0 + 1e-9);
            assert!((0.0..=1.0).contains(&r));
            lo = lo.min(v);
            hi = hi.max(v);
        }
        assert!(hi - lo > 0.5, "noise is nearly flat: {lo}..{hi}");
    }

    #[test]
    fn batches_equal_single_points() {
        let xs: Vec<f64> = (0..101).map(|i| f64::from(i) * 0.731 - 30.0).collect();
        let zs: Vec<f64> = (0..101).map(|i| f64::from(i * i) * 0.017 + 5.0).collect();
        let mut out = vec![0.0; xs.len()];
        fbm_into(9, F, &mut xs.clone(), &mut zs.clone(), &mut out);
        for i in 0..xs.len() {
            assert_eq!(out[i].to_bits(), fbm(9, xs[i], zs[i], F).to_bits());
        }
        ridged_into(9, F, &mut xs.clone(), &mut zs.clone(), &mut vec![0.0; xs.len()], &mut out);
        for i in 0..xs.len() {
            assert_eq!(out[i].to_bits(), ridged(9, xs[i], zs[i], F).to_bits());
        }
    }

    #[test]
    fn different_seeds_give_different_fields() {
        assert_ne!(fbm(1, 12.3, 45.6, F), fbm(2, 12.3, 45.6, F));
    }
}
