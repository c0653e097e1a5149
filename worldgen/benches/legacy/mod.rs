//! The generation core as it was before issue 10 (scalar f64, one column at
//! a time, 64-bit lattice hashes, every field at full resolution), kept in
//! the benchmark only so "before" and "after" are measured in the same run.
//! Its output is not the current one.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::{Add, Mul, Sub};

use worldloom_worldgen::biome::{BiomeId, ids};
use worldloom_worldgen::chunk::{CHUNK_SIZE, Chunk, ChunkCoord, Feature, PropValue};
use worldloom_worldgen::hash::{derive, hash2, mix64, stream, unit};
use worldloom_worldgen::params::Params;

fn idx(x: usize, z: usize) -> usize {
    x * CHUNK_SIZE + z
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct P2 {
    x: f64,
    y: f64,
}

impl P2 {
    fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }
    fn dot(&self, o: &P2) -> f64 {
        self.x * o.x + self.y * o.y
    }
}

impl Add for P2 {
    type Output = P2;
    fn add(self, o: P2) -> P2 {
        P2::new(self.x + o.x, self.y + o.y)
    }
}

impl Sub for P2 {
    type Output = P2;
    fn sub(self, o: P2) -> P2 {
        P2::new(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f64> for P2 {
    type Output = P2;
    fn mul(self, k: f64) -> P2 {
        P2::new(self.x * k, self.y * k)
    }
}

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
fn rotate(q: P2) -> P2 {
    P2::new(0.8 * q.x - 0.6 * q.y, 0.6 * q.x + 0.8 * q.y)
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
fn perlin(seed: u64, p: P2) -> f64 {
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
struct Fractal {
    /// Number of octaves summed.
    octaves: u32,
    /// Frequency multiplier between octaves.
    lacunarity: f64,
    /// Amplitude multiplier between octaves.
    persistence: f64,
}

/// Fractional Brownian motion: octaves of [`perlin`], normalised to roughly `[-1, 1]`.
fn fbm(seed: u64, p: P2, f: Fractal) -> f64 {
    let (mut sum, mut norm, mut amp) = (0.0, 0.0, 1.0);
    let mut q = p;
    for octave in 0..f.octaves {
        sum += amp * perlin(derive(seed, u64::from(octave)), q);
        norm += amp;
        amp *= f.persistence;
        q = rotate(q) * f.lacunarity;
    }
    if norm > 0.0 { sum / norm } else { 0.0 }
}

/// Ridged multifractal noise in `[0, 1]`: sharp crests where the noise crosses zero.
fn ridged(seed: u64, p: P2, f: Fractal) -> f64 {
    let (mut sum, mut norm, mut amp, mut weight) = (0.0, 0.0, 1.0, 1.0);
    let mut q = p;
    for octave in 0..f.octaves {
        let n = 1.0 - perlin(derive(seed, 0x5249_4447 ^ u64::from(octave)), q).abs();
        let n = n * n * weight;
        weight = (n * 2.0).clamp(0.0, 1.0);
        sum += amp * n;
        norm += amp;
        amp *= f.persistence;
        q = rotate(q) * f.lacunarity;
    }
    if norm > 0.0 { sum / norm } else { 0.0 }
}

/// Temperature drop per metre above sea level (the standard lapse rate).
const LAPSE_RATE: f64 = 0.0065;

/// A world's generator: the seed and parameters with every sub-seed derived once.
#[derive(Clone, Debug)]
pub struct LegacyGenerator {
    params: Params,
    terrain: Fractal,
    /// Seed-derived shift of noise space, so no world has a special origin
    /// (gradient noise is zero on lattice points, and (0, 0) is one).
    origin: P2,
    s_height: u64,
    s_ridge: u64,
    s_warp_x: u64,
    s_warp_z: u64,
    s_temperature: u64,
    s_moisture: u64,
    s_features: u64,
    s_clumps: u64,
}

const WARP: Fractal = Fractal { octaves: 3, lacunarity: 2.0, persistence: 0.5 };
const CLIMATE: Fractal = Fractal { octaves: 4, lacunarity: 2.0, persistence: 0.5 };

fn smoothstep(lo: f64, hi: f64, x: f64) -> f64 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl LegacyGenerator {
    pub fn new(seed: u64, params: &Params) -> Self {
        Self {
            params: *params,
            terrain: Fractal {
                octaves: params.octaves,
                lacunarity: params.lacunarity,
                persistence: params.persistence,
            },
            origin: P2::new(
                unit(derive(seed, stream("origin-x"))) * 65_536.0,
                unit(derive(seed, stream("origin-z"))) * 65_536.0,
            ),
            s_height: derive(seed, stream("height")),
            s_ridge: derive(seed, stream("ridge")),
            s_warp_x: derive(seed, stream("warp-x")),
            s_warp_z: derive(seed, stream("warp-z")),
            s_temperature: derive(seed, stream("temperature")),
            s_moisture: derive(seed, stream("moisture")),
            s_features: derive(seed, stream("features")),
            s_clumps: derive(seed, stream("clumps")),
        }
    }

    /// Every core stage in order.
    pub fn chunk(&self, coord: ChunkCoord) -> Chunk {
        let mut chunk = self.terrain(coord);
        self.climate(&mut chunk);
        self.features(&mut chunk);
        chunk
    }

    /// Terrain height in metres at a world column: warped fBm continents with
    /// ridged ranges on high ground.
    pub fn height_at(&self, wx: i64, wz: i64) -> f64 {
        let p = self.params;
        let pos = P2::new(wx as f64, wz as f64) + self.origin;
        let warp_freq = p.frequency * 2.0;
        let offset = P2::new(fbm(self.s_warp_x, pos * warp_freq, WARP), fbm(self.s_warp_z, pos * warp_freq, WARP));
        let q = (pos + offset * p.warp_strength) * p.frequency;
        let base = fbm(self.s_height, q, self.terrain);
        let highland = smoothstep(0.1, 0.45, base);
        // Ridges only weigh on high ground; below it their weight is exactly 0,
        // so skipping them there gives the same bits.
        let ridges = if highland > 0.0 { ridged(self.s_ridge, q * 1.5, self.terrain) } else { 0.0 };
        let shape = 1.8 * base + p.ridge_strength * highland * ridges;
        shape * p.height_scale
    }

    /// Stage 1: a chunk with its `height` layer filled and every other layer zero.
    pub fn terrain(&self, coord: ChunkCoord) -> Chunk {
        let mut chunk = Chunk::empty(coord);
        let (ox, oz) = coord.origin();
        for x in 0..CHUNK_SIZE {
            for z in 0..CHUNK_SIZE {
                let h = self.height_at(ox + x as i64, oz + z as i64);
                chunk.layers.height[idx(x, z)] = h as f32;
            }
        }
        chunk
    }

    /// Stage 2: temperature and moisture from climate noise and the (possibly
    /// plugin-modified) height, then the biome of every column.
    pub fn climate(&self, chunk: &mut Chunk) {
        let p = self.params;
        let (ox, oz) = chunk.coord.origin();
        let inv = 1.0 / p.climate_scale;
        for x in 0..CHUNK_SIZE {
            for z in 0..CHUNK_SIZE {
                let i = idx(x, z);
                let pos = (P2::new((ox + x as i64) as f64, (oz + z as i64) as f64) + self.origin) * inv;
                let height = f64::from(chunk.layers.height[i]);
                let above = (height - p.sea_level).max(0.0);
                let t = 14.0 + 40.0 * fbm(self.s_temperature, pos, CLIMATE) - LAPSE_RATE * above;
                let m = (0.5 + 1.2 * fbm(self.s_moisture, pos * 1.3, CLIMATE)).clamp(0.0, 1.0);
                chunk.layers.temperature[i] = t as f32;
                chunk.layers.moisture[i] = m as f32;
                chunk.layers.biome[i] = classify(&p, height, t, m);
            }
        }
    }

    /// Stage 3: features scattered by a seed-and-position hash, thinned by
    /// biome, slope and a low-frequency clumping field.
    pub fn features(&self, chunk: &mut Chunk) {
        let (ox, oz) = chunk.coord.origin();
        let density = self.params.feature_density;
        for x in 0..CHUNK_SIZE {
            for z in 0..CHUNK_SIZE {
                let (wx, wz) = (ox + x as i64, oz + z as i64);
                let i = idx(x, z);
                let flora = flora(chunk.layers.biome[i]);
                if flora.is_empty() {
                    continue;
                }
                let h = hash2(self.s_features, wx, wz);
                let clump = 0.4 + 1.2 * (0.5 + 0.5 * fbm(self.s_clumps, P2::new(wx as f64, wz as f64) * 0.03, WARP));
                let mut u = unit(h) / (density * clump).max(1e-12);
                for &(kind, chance, make) in flora {
                    if u < chance {
                        let properties = make(mix64(h ^ 0x5eed));
                        chunk.features.push(Feature { x: x as u8, z: z as u8, kind: kind.to_owned(), properties });
                        break;
                    }
                    u -= chance;
                }
            }
        }
    }
}

/// The biome of a column from its height, temperature (°C) and moisture (0..1).
fn classify(p: &Params, height: f64, t: f64, m: f64) -> BiomeId {
    let depth = p.sea_level - height;
    if depth > p.height_scale / 3.0 {
        return ids::DEEP_OCEAN;
    }
    if depth > 0.0 {
        return ids::OCEAN;
    }
    let above = -depth;
    let rel = above / p.height_scale;
    if rel > 0.95 || (rel > 0.6 && t < -4.0) {
        return ids::SNOWY_PEAKS;
    }
    if rel > 0.6 {
        return ids::MOUNTAINS;
    }
    if above < (0.006 * p.height_scale).max(1.5) && t > 2.0 {
        return ids::BEACH;
    }
    if t < -5.0 {
        ids::TUNDRA
    } else if t < 5.0 {
        if m > 0.4 { ids::TAIGA } else { ids::TUNDRA }
    } else if t < 22.0 {
        if m > 0.72 && rel < 0.04 {
            ids::SWAMP
        } else if m > 0.45 {
            ids::FOREST
        } else {
            ids::PLAINS
        }
    } else if m < 0.3 {
        ids::DESERT
    } else if m < 0.55 {
        ids::SAVANNA
    } else {
        ids::RAINFOREST
    }
}

type Props = BTreeMap<String, PropValue>;
type Flora = &'static [(&'static str, f64, fn(u64) -> Props)];

fn props<const N: usize>(pairs: [(&str, PropValue); N]) -> Props {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A value in `[lo, hi)` from a hash, rounded to centimetres so JSON stays short.
fn span(h: u64, lo: f64, hi: f64) -> PropValue {
    PropValue::Float(((lo + (hi - lo) * unit(h)) * 100.0).floor() / 100.0)
}

fn pick(h: u64, options: &[&str]) -> PropValue {
    PropValue::Str(options[(h % options.len() as u64) as usize].to_owned())
}

fn tree(species: &'static [&'static str], lo: f64, hi: f64) -> impl Fn(u64) -> Props {
    move |h| props([("species", pick(h, species)), ("height_m", span(mix64(h), lo, hi))])
}

/// What grows or lies in each biome: (kind, chance per column, properties).
fn flora(biome: BiomeId) -> Flora {
    match biome {
        ids::FOREST => &[
            ("tree", 0.05, |h| tree(&["oak", "birch", "maple"], 8.0, 22.0)(h)),
            ("bush", 0.015, |h| props([("height_m", span(h, 0.5, 2.0))])),
        ],
        ids::RAINFOREST => &[("tree", 0.09, |h| tree(&["kapok", "mahogany", "palm"], 15.0, 45.0)(h))],
        ids::TAIGA => &[("tree", 0.05, |h| tree(&["spruce", "fir", "pine"], 10.0, 30.0)(h))],
        ids::PLAINS => &[
            ("tree", 0.004, |h| tree(&["oak"], 6.0, 16.0)(h)),
            ("bush", 0.01, |h| props([("height_m", span(h, 0.5, 1.5))])),
            ("flower", 0.02, |h| props([("color", pick(h, &["red", "yellow", "white", "blue"]))])),
        ],
        ids::SAVANNA => &[
            ("tree", 0.008, |h| tree(&["acacia", "baobab"], 5.0, 20.0)(h)),
            ("bush", 0.01, |h| props([("height_m", span(h, 0.5, 2.5))])),
        ],
        ids::DESERT => &[
            ("cactus", 0.008, |h| props([("height_m", span(h, 1.0, 6.0))])),
            ("rock", 0.003, |h| props([("radius_m", span(h, 0.3, 2.0))])),
        ],
        ids::TUNDRA => &[
            ("rock", 0.006, |h| props([("radius_m", span(h, 0.3, 1.5))])),
            ("bush", 0.004, |h| props([("height_m", span(h, 0.2, 0.8))])),
        ],
        ids::SWAMP => &[
            ("tree", 0.03, |h| tree(&["willow", "cypress"], 6.0, 18.0)(h)),
            ("reed", 0.05, |h| props([("height_m", span(h, 1.0, 3.0))])),
        ],
        ids::MOUNTAINS => &[("rock", 0.02, |h| props([("radius_m", span(h, 0.5, 4.0))]))],
        ids::SNOWY_PEAKS => &[("rock", 0.004, |h| props([("radius_m", span(h, 0.5, 3.0))]))],
        ids::BEACH => &[("driftwood", 0.003, |h| props([("length_m", span(h, 0.5, 4.0))]))],
        _ => &[],
    }
}
