//! The generation stages: terrain, climate and biomes, features.
//!
//! Each stage works on a whole chunk at a time: the chunk's 1,024 columns
//! are laid out as structure-of-arrays slices and every noise octave runs
//! over all of them in one loop (see [`crate::noise`]), compiled for the
//! best instruction set the machine has ([`crate::isa`]). The per-column
//! functions ([`Generator::height_at`], [`Generator::climate_at`]) run the
//! same formulas on one column and give the same bits: [`Isa::Scalar`]
//! builds whole chunks from them, and tests compare every path with it.
//!
//! Two low-frequency fields are sampled on a coarse lattice of world
//! columns and interpolated bilinearly: the domain warp and the climate.
//! The lattice is aligned to world coordinates (multiples of its step), so
//! values still depend only on the column, and the step is chosen from the
//! parameters so that the finest octave has at least 8 samples per cell.

// Index loops over fixed-length slices are what the vectoriser handles best.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use crate::biome::{BIOMES, BiomeId, ids};
use crate::chunk::{CHUNK_COLUMNS, CHUNK_SIZE, Chunk, ChunkCoord, Feature, PropValue};
use crate::hash::{derive, hash2, mix64, stream, unit};
use crate::isa::{self, Isa, Kernel};
use crate::noise::{Fractal, fbm_into, ridged_into};
use crate::params::Params;

/// Temperature drop per metre above sea level (the standard lapse rate).
const LAPSE_RATE: f64 = 0.0065;

const WARP: Fractal = Fractal { octaves: 3, lacunarity: 2.0, persistence: 0.5 };
const CLIMATE: Fractal = Fractal { octaves: 4, lacunarity: 2.0, persistence: 0.5 };
/// Frequency of the feature clumping field, per column.
const CLUMP_FREQUENCY: f64 = 0.03;
/// Largest nodes-per-side of a coarse lattice over one chunk.
const MAX_NODES: usize = CHUNK_SIZE + 1;

/// Height thresholds of biome classification, in metres, fixed per world.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    sea_level: f64,
    deep: f64,
    peaks: f64,
    mountains: f64,
    swamp: f64,
    beach: f64,
}

/// A world's generator: the seed and parameters with every sub-seed derived once.
#[derive(Clone, Debug)]
pub struct Generator {
    params: Params,
    terrain: Fractal,
    /// Seed-derived shift of noise space, so no world has a special origin
    /// (gradient noise is zero on lattice points, and (0, 0) is one).
    origin: (f64, f64),
    s_height: u64,
    s_ridge: u64,
    s_warp_x: u64,
    s_warp_z: u64,
    s_temperature: u64,
    s_moisture: u64,
    s_features: u64,
    s_clumps: u64,
    /// Columns between warp samples (a power of two dividing `CHUNK_SIZE`).
    warp_step: usize,
    /// Columns between climate samples (a power of two dividing `CHUNK_SIZE`).
    climate_step: usize,
    thresholds: Thresholds,
    /// Per biome: `unit(hash)` at or above this never places a feature,
    /// whatever the clumping field (0 for biomes without flora).
    feature_bound: [f64; BIOMES.len()],
    isa: Isa,
}

/// Temperature, moisture and biome of one column, as the chunk layers hold them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnClimate {
    pub temperature: f32,
    pub moisture: f32,
    pub biome: BiomeId,
}

/// The largest power of two step (at most a chunk side) that still puts 8
/// samples in a cell of `finest_cell` columns.
fn lattice_step(finest_cell: f64) -> usize {
    let mut step = 1;
    while step < CHUNK_SIZE && (step * 2) as f64 * 8.0 <= finest_cell {
        step *= 2;
    }
    step
}

#[inline(always)]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + t * (b - a)
}

#[inline(always)]
fn smoothstep(lo: f64, hi: f64, x: f64) -> f64 {
    let t = (x - lo) / (hi - lo);
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// The terrain shape from the base fBm and the ridges (0 where `highland` is 0).
#[inline(always)]
fn shape(p: &Params, base: f64, highland: f64, ridges: f64) -> f64 {
    (1.8 * base + p.ridge_strength * highland * ridges) * p.height_scale
}

/// Coarse-lattice node coordinates of a chunk's lattice: `n * n` nodes,
/// node `(i, k)` at index `i * n + k`, world column `(ox + i*step, oz + k*step)`.
#[inline(always)]
fn lattice_nodes(origin: (f64, f64), (ox, oz): (i64, i64), step: usize, scale: f64, x: &mut [f64], z: &mut [f64]) {
    let n = CHUNK_SIZE / step + 1;
    for i in 0..n {
        for k in 0..n {
            x[i * n + k] = ((ox + (i * step) as i64) as f64 + origin.0) * scale;
            z[i * n + k] = ((oz + (k * step) as i64) as f64 + origin.1) * scale;
        }
    }
}

/// Bilinear interpolation of a chunk's lattice `nodes` (`n` per side) at
/// every column, x first then z (as [`bilerp`] does for one column).
#[inline(always)]
fn interpolate_chunk(nodes: &[f64], step: usize, out: &mut [f64]) {
    let n = CHUNK_SIZE / step + 1;
    let inv = 1.0 / step as f64;
    let mut row = [0.0; MAX_NODES];
    for x in 0..CHUNK_SIZE {
        let (i, fx) = (x / step, (x % step) as f64 * inv);
        for k in 0..n {
            row[k] = lerp(nodes[i * n + k], nodes[(i + 1) * n + k], fx);
        }
        let out = &mut out[x * CHUNK_SIZE..(x + 1) * CHUNK_SIZE];
        for z in 0..CHUNK_SIZE {
            let (k, fz) = (z / step, (z % step) as f64 * inv);
            out[z] = lerp(row[k], row[k + 1], fz);
        }
    }
}

/// Bilinear interpolation at one column from its four lattice nodes.
#[inline(always)]
fn bilerp(v00: f64, v10: f64, v01: f64, v11: f64, fx: f64, fz: f64) -> f64 {
    lerp(lerp(v00, v10, fx), lerp(v01, v11, fx), fz)
}

/// The lattice cell of a world column and its offsets in it, in `[0, 1)`.
fn lattice_cell(wx: i64, wz: i64, step: usize) -> ((i64, i64), (f64, f64)) {
    let s = step as i64;
    let inv = 1.0 / step as f64;
    ((wx.div_euclid(s) * s, wz.div_euclid(s) * s), (wx.rem_euclid(s) as f64 * inv, wz.rem_euclid(s) as f64 * inv))
}

impl Generator {
    pub fn new(seed: u64, params: &Params) -> Self {
        let p = *params;
        let hs = p.height_scale;
        let density = (p.feature_density * 2.0).max(2e-12);
        let mut feature_bound = [0.0; BIOMES.len()];
        for (id, bound) in feature_bound.iter_mut().enumerate() {
            let total: f64 = flora(id as BiomeId).iter().map(|f| f.1).sum();
            *bound = total * density;
        }
        Self {
            params: p,
            terrain: Fractal { octaves: p.octaves, lacunarity: p.lacunarity, persistence: p.persistence },
            origin: (
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
            // The warp's finest octave runs at 2 * frequency * 2^2.
            warp_step: lattice_step(1.0 / (8.0 * p.frequency)),
            // The climate's finest octave: moisture (x1.3) at 2^3 / climate_scale.
            climate_step: lattice_step(p.climate_scale / (8.0 * 1.3)),
            thresholds: Thresholds {
                sea_level: p.sea_level,
                deep: hs / 3.0,
                peaks: 0.95 * hs,
                mountains: 0.6 * hs,
                swamp: 0.04 * hs,
                beach: (0.006 * hs).max(1.5),
            },
            feature_bound,
            isa: Isa::best(),
        }
    }

    /// The same generator on another instruction-set path (tests and
    /// benchmarks; every path gives the same bits).
    ///
    /// # Panics
    /// If this machine cannot run `isa`.
    pub fn with_isa(mut self, isa: Isa) -> Self {
        assert!(isa.is_available(), "this machine cannot run the {} path", isa.name());
        self.isa = isa;
        self
    }

    /// The instruction-set path this generator runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Every core stage in order.
    pub fn chunk(&self, coord: ChunkCoord) -> Chunk {
        let mut chunk = self.terrain(coord);
        self.climate(&mut chunk);
        self.features(&mut chunk);
        chunk
    }

    // ---- per-column path -------------------------------------------------

    /// Warp offset at one world column: the four lattice nodes around it,
    /// interpolated.
    fn warp_at(&self, wx: i64, wz: i64) -> (f64, f64) {
        let ((gx, gz), (fx, fz)) = lattice_cell(wx, wz, self.warp_step);
        let s = self.warp_step as i64;
        let wf = self.params.frequency * 2.0;
        let mut ox = [0.0; 4];
        let mut oz = [0.0; 4];
        for (j, (dx, dz)) in [(0, 0), (s, 0), (0, s), (s, s)].into_iter().enumerate() {
            let x = ((gx + dx) as f64 + self.origin.0) * wf;
            let z = ((gz + dz) as f64 + self.origin.1) * wf;
            fbm_into(self.s_warp_x, WARP, &mut [x], &mut [z], &mut ox[j..j + 1]);
            fbm_into(self.s_warp_z, WARP, &mut [x], &mut [z], &mut oz[j..j + 1]);
        }
        (bilerp(ox[0], ox[1], ox[2], ox[3], fx, fz), bilerp(oz[0], oz[1], oz[2], oz[3], fx, fz))
    }

    /// Terrain height in metres at a world column: warped fBm continents with
    /// ridged ranges on high ground. Bit for bit the chunk's value there
    /// (before rounding to the layer's `f32`).
    pub fn height_at(&self, wx: i64, wz: i64) -> f64 {
        let p = &self.params;
        let (dx, dz) = self.warp_at(wx, wz);
        let qx = ((wx as f64 + self.origin.0) + dx * p.warp_strength) * p.frequency;
        let qz = ((wz as f64 + self.origin.1) + dz * p.warp_strength) * p.frequency;
        let mut base = [0.0];
        fbm_into(self.s_height, self.terrain, &mut [qx], &mut [qz], &mut base);
        let highland = smoothstep(0.1, 0.45, base[0]);
        // Ridges only weigh on high ground; below it their weight is exactly 0.
        let mut ridges = [0.0];
        if highland > 0.0 {
            ridged_into(self.s_ridge, self.terrain, &mut [qx * 1.5], &mut [qz * 1.5], &mut [0.0], &mut ridges);
        }
        shape(p, base[0], highland, ridges[0])
    }

    /// Climate noise (temperature and moisture fields, before height) at one column.
    fn climate_noise_at(&self, wx: i64, wz: i64) -> (f64, f64) {
        let ((gx, gz), (fx, fz)) = lattice_cell(wx, wz, self.climate_step);
        let s = self.climate_step as i64;
        let inv = 1.0 / self.params.climate_scale;
        let mut t = [0.0; 4];
        let mut m = [0.0; 4];
        for (j, (dx, dz)) in [(0, 0), (s, 0), (0, s), (s, s)].into_iter().enumerate() {
            let x = ((gx + dx) as f64 + self.origin.0) * inv;
            let z = ((gz + dz) as f64 + self.origin.1) * inv;
            fbm_into(self.s_temperature, CLIMATE, &mut [x], &mut [z], &mut t[j..j + 1]);
            fbm_into(self.s_moisture, CLIMATE, &mut [x * 1.3], &mut [z * 1.3], &mut m[j..j + 1]);
        }
        (bilerp(t[0], t[1], t[2], t[3], fx, fz), bilerp(m[0], m[1], m[2], m[3], fx, fz))
    }

    /// Temperature, moisture and biome of one world column whose height layer
    /// holds `height`: bit for bit what [`Generator::climate`] puts there.
    pub fn climate_at(&self, wx: i64, wz: i64, height: f32) -> ColumnClimate {
        let (t, m) = self.climate_noise_at(wx, wz);
        let (temperature, moisture, biome) = self.column_climate(f64::from(height), t, m);
        ColumnClimate { temperature, moisture, biome }
    }

    /// Height, then climate, of one world column, as [`Generator::chunk`] gives them.
    pub fn column_at(&self, wx: i64, wz: i64) -> (f32, ColumnClimate) {
        let h = self.height_at(wx, wz) as f32;
        (h, self.climate_at(wx, wz, h))
    }

    #[inline(always)]
    fn column_climate(&self, height: f64, tn: f64, mn: f64) -> (f32, f32, BiomeId) {
        let above = height - self.params.sea_level;
        let above = if above > 0.0 { above } else { 0.0 };
        let t = 14.0 + 40.0 * tn - LAPSE_RATE * above;
        let m = 0.5 + 1.2 * mn;
        let m = m.clamp(0.0, 1.0);
        (t as f32, m as f32, classify(&self.thresholds, height, t, m))
    }

    /// [`Generator::column_at`] for many columns at once, vectorised on this
    /// generator's path (for coarse samplers such as the overview): the same
    /// bits as one [`Generator::column_at`] per column, in the order given.
    pub fn columns_at(&self, columns: &[(i64, i64)]) -> Vec<(f32, ColumnClimate)> {
        let mut out = Vec::with_capacity(columns.len());
        for part in columns.chunks(CHUNK_COLUMNS) {
            match self.isa {
                Isa::Scalar => out.extend(part.iter().map(|&(wx, wz)| self.column_at(wx, wz))),
                path => isa::run(path, ColumnsKernel { g: self, columns: part, out: &mut out }),
            }
        }
        out
    }

    /// fBm of a coarse-lattice field at arbitrary columns: the four nodes of
    /// each column's cell (at `(node + origin) * scale * mul`) as one batch,
    /// interpolated. (`mul` is 1.3 for moisture; multiplying by 1.0 is exact.)
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn lattice_field_batch(
        &self,
        columns: &[(i64, i64)],
        step: usize,
        scale: f64,
        mul: f64,
        seed: u64,
        f: Fractal,
        out: &mut [f64],
    ) {
        let n = columns.len();
        let s = step as i64;
        let (mut x, mut z, mut v) = (vec![0.0; 4 * n], vec![0.0; 4 * n], vec![0.0; 4 * n]);
        for (c, &(wx, wz)) in columns.iter().enumerate() {
            let ((gx, gz), _) = lattice_cell(wx, wz, step);
            for (j, (dx, dz)) in [(0, 0), (s, 0), (0, s), (s, s)].into_iter().enumerate() {
                x[4 * c + j] = ((gx + dx) as f64 + self.origin.0) * scale * mul;
                z[4 * c + j] = ((gz + dz) as f64 + self.origin.1) * scale * mul;
            }
        }
        fbm_into(seed, f, &mut x, &mut z, &mut v);
        for (c, &(wx, wz)) in columns.iter().enumerate() {
            let (_, (fx, fz)) = lattice_cell(wx, wz, step);
            out[c] = bilerp(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3], fx, fz);
        }
    }

    #[inline(always)]
    fn columns_batch(&self, columns: &[(i64, i64)], out: &mut Vec<(f32, ColumnClimate)>) {
        let p = &self.params;
        let n = columns.len();
        let wf = p.frequency * 2.0;
        let (mut dx, mut dz) = (vec![0.0; n], vec![0.0; n]);
        self.lattice_field_batch(columns, self.warp_step, wf, 1.0, self.s_warp_x, WARP, &mut dx);
        self.lattice_field_batch(columns, self.warp_step, wf, 1.0, self.s_warp_z, WARP, &mut dz);
        let (mut qx, mut qz) = (vec![0.0; n], vec![0.0; n]);
        for (c, &(wx, wz)) in columns.iter().enumerate() {
            qx[c] = ((wx as f64 + self.origin.0) + dx[c] * p.warp_strength) * p.frequency;
            qz[c] = ((wz as f64 + self.origin.1) + dz[c] * p.warp_strength) * p.frequency;
        }
        let mut base = vec![0.0; n];
        let (mut sx, mut sz) = (qx.clone(), qz.clone());
        fbm_into(self.s_height, self.terrain, &mut sx, &mut sz, &mut base);
        let mut high = Vec::new();
        for c in 0..n {
            if smoothstep(0.1, 0.45, base[c]) > 0.0 {
                high.push(c);
            }
        }
        let mut ridges = vec![0.0; n];
        if !high.is_empty() {
            let (mut rx, mut rz): (Vec<f64>, Vec<f64>) = high.iter().map(|&c| (qx[c] * 1.5, qz[c] * 1.5)).unzip();
            let (mut w, mut r) = (vec![0.0; high.len()], vec![0.0; high.len()]);
            ridged_into(self.s_ridge, self.terrain, &mut rx, &mut rz, &mut w, &mut r);
            for (k, &c) in high.iter().enumerate() {
                ridges[c] = r[k];
            }
        }
        let inv = 1.0 / p.climate_scale;
        let (mut t, mut m) = (vec![0.0; n], vec![0.0; n]);
        self.lattice_field_batch(columns, self.climate_step, inv, 1.0, self.s_temperature, CLIMATE, &mut t);
        self.lattice_field_batch(columns, self.climate_step, inv, 1.3, self.s_moisture, CLIMATE, &mut m);
        for c in 0..n {
            let h = shape(p, base[c], smoothstep(0.1, 0.45, base[c]), ridges[c]) as f32;
            let (temperature, moisture, biome) = self.column_climate(f64::from(h), t[c], m[c]);
            out.push((h, ColumnClimate { temperature, moisture, biome }));
        }
    }

    // ---- whole-chunk path ------------------------------------------------

    /// The terrain of a chunk's 1,024 columns (structure of arrays).
    #[inline(always)]
    fn terrain_batch(&self, coord: ChunkCoord, out: &mut [f32]) {
        let p = &self.params;
        let (ox, oz) = coord.origin();
        let out = &mut out[..CHUNK_COLUMNS];
        // Domain warp on the coarse lattice.
        // Sized to the lattice (81 nodes by default, 1,089 at most): no
        // zeroing of arrays the lattice does not use.
        let nn = (CHUNK_SIZE / self.warp_step + 1).pow(2);
        let (mut nx, mut nz, mut wx, mut wz) = (vec![0.0; nn], vec![0.0; nn], vec![0.0; nn], vec![0.0; nn]);
        lattice_nodes(self.origin, (ox, oz), self.warp_step, p.frequency * 2.0, &mut nx, &mut nz);
        let (mut cx, mut cz) = (nx.clone(), nz.clone());
        fbm_into(self.s_warp_x, WARP, &mut cx[..nn], &mut cz[..nn], &mut wx[..nn]);
        fbm_into(self.s_warp_z, WARP, &mut nx[..nn], &mut nz[..nn], &mut wz[..nn]);
        let mut dx = [0.0; CHUNK_COLUMNS];
        let mut dz = [0.0; CHUNK_COLUMNS];
        interpolate_chunk(&wx, self.warp_step, &mut dx);
        interpolate_chunk(&wz, self.warp_step, &mut dz);
        // Warped positions in noise space.
        let mut qx = [0.0; CHUNK_COLUMNS];
        let mut qz = [0.0; CHUNK_COLUMNS];
        for x in 0..CHUNK_SIZE {
            let px = (ox + x as i64) as f64 + self.origin.0;
            for z in 0..CHUNK_SIZE {
                let i = x * CHUNK_SIZE + z;
                let pz = (oz + z as i64) as f64 + self.origin.1;
                qx[i] = (px + dx[i] * p.warp_strength) * p.frequency;
                qz[i] = (pz + dz[i] * p.warp_strength) * p.frequency;
            }
        }
        let mut base = [0.0; CHUNK_COLUMNS];
        let (mut sx, mut sz) = (qx, qz);
        fbm_into(self.s_height, self.terrain, &mut sx, &mut sz, &mut base);
        // Ridges, only on the columns where they weigh (compacted).
        let mut highland = [0.0; CHUNK_COLUMNS];
        let mut high = [0u16; CHUNK_COLUMNS];
        let mut n = 0;
        for i in 0..CHUNK_COLUMNS {
            highland[i] = smoothstep(0.1, 0.45, base[i]);
            high[n] = i as u16;
            n += usize::from(highland[i] > 0.0);
        }
        let mut ridges = [0.0; CHUNK_COLUMNS];
        if n > 0 {
            // Reuse the warp scratch: sx, sz and dx hold the compacted inputs.
            for k in 0..n {
                let i = usize::from(high[k]);
                sx[k] = qx[i] * 1.5;
                sz[k] = qz[i] * 1.5;
            }
            let mut r = [0.0; CHUNK_COLUMNS];
            ridged_into(self.s_ridge, self.terrain, &mut sx[..n], &mut sz[..n], &mut dx[..n], &mut r[..n]);
            for k in 0..n {
                ridges[usize::from(high[k])] = r[k];
            }
        }
        for i in 0..CHUNK_COLUMNS {
            out[i] = shape(p, base[i], highland[i], ridges[i]) as f32;
        }
    }

    /// Climate and biome of a chunk's 1,024 columns from its height layer.
    #[inline(always)]
    fn climate_batch(
        &self,
        coord: ChunkCoord,
        height: &[f32],
        temp: &mut [f32],
        moist: &mut [f32],
        biome: &mut [BiomeId],
    ) {
        let (height, temp, moist, biome) = (
            &height[..CHUNK_COLUMNS],
            &mut temp[..CHUNK_COLUMNS],
            &mut moist[..CHUNK_COLUMNS],
            &mut biome[..CHUNK_COLUMNS],
        );
        let step = self.climate_step;
        let nn = (CHUNK_SIZE / step + 1).pow(2);
        let (mut nx, mut nz, mut nt, mut nm) = (vec![0.0; nn], vec![0.0; nn], vec![0.0; nn], vec![0.0; nn]);
        lattice_nodes(self.origin, coord.origin(), step, 1.0 / self.params.climate_scale, &mut nx, &mut nz);
        let (mut mx, mut mz) = (vec![0.0; nn], vec![0.0; nn]);
        for j in 0..nn {
            mx[j] = nx[j] * 1.3;
            mz[j] = nz[j] * 1.3;
        }
        fbm_into(self.s_temperature, CLIMATE, &mut nx[..nn], &mut nz[..nn], &mut nt[..nn]);
        fbm_into(self.s_moisture, CLIMATE, &mut mx[..nn], &mut mz[..nn], &mut nm[..nn]);
        let mut t = [0.0; CHUNK_COLUMNS];
        let mut m = [0.0; CHUNK_COLUMNS];
        interpolate_chunk(&nt, step, &mut t);
        interpolate_chunk(&nm, step, &mut m);
        for i in 0..CHUNK_COLUMNS {
            (temp[i], moist[i], biome[i]) = self.column_climate(f64::from(height[i]), t[i], m[i]);
        }
    }

    /// Feature candidates of a chunk: the columns whose hash can place a
    /// feature, with that hash and the clumping field there.
    #[inline(always)]
    fn feature_candidates(&self, coord: ChunkCoord, biome: &[BiomeId], cand: &mut Candidates) {
        let (ox, oz) = coord.origin();
        let biome = &biome[..CHUNK_COLUMNS];
        let mut hashes = [0u64; CHUNK_COLUMNS];
        for x in 0..CHUNK_SIZE {
            for z in 0..CHUNK_SIZE {
                hashes[x * CHUNK_SIZE + z] = hash2(self.s_features, ox + x as i64, oz + z as i64);
            }
        }
        let mut n = 0;
        for i in 0..CHUNK_COLUMNS {
            let bound = self.feature_bound.get(usize::from(biome[i])).copied().unwrap_or(0.0);
            cand.index[n] = i as u16;
            cand.hash[n] = hashes[i];
            n += usize::from(unit(hashes[i]) < bound);
        }
        cand.len = n;
        let mut x = [0.0; CHUNK_COLUMNS];
        let mut z = [0.0; CHUNK_COLUMNS];
        for k in 0..n {
            let i = usize::from(cand.index[k]);
            x[k] = (ox + (i / CHUNK_SIZE) as i64) as f64 * CLUMP_FREQUENCY;
            z[k] = (oz + (i % CHUNK_SIZE) as i64) as f64 * CLUMP_FREQUENCY;
        }
        fbm_into(self.s_clumps, WARP, &mut x[..n], &mut z[..n], &mut cand.clump[..n]);
    }

    /// Stage 1: a chunk with its `height` layer filled and every other layer zero.
    pub fn terrain(&self, coord: ChunkCoord) -> Chunk {
        let mut chunk = Chunk::empty(coord);
        let (ox, oz) = coord.origin();
        match self.isa {
            Isa::Scalar => {
                for (i, h) in chunk.layers.height.iter_mut().enumerate() {
                    *h = self.height_at(ox + (i / CHUNK_SIZE) as i64, oz + (i % CHUNK_SIZE) as i64) as f32;
                }
            }
            path => isa::run(path, TerrainKernel { g: self, coord, out: &mut chunk.layers.height }),
        }
        chunk
    }

    /// Stage 2: temperature and moisture from climate noise and the (possibly
    /// plugin-modified) height, then the biome of every column.
    pub fn climate(&self, chunk: &mut Chunk) {
        let (ox, oz) = chunk.coord.origin();
        let l = &mut chunk.layers;
        match self.isa {
            Isa::Scalar => {
                for i in 0..CHUNK_COLUMNS {
                    let c = self.climate_at(ox + (i / CHUNK_SIZE) as i64, oz + (i % CHUNK_SIZE) as i64, l.height[i]);
                    (l.temperature[i], l.moisture[i], l.biome[i]) = (c.temperature, c.moisture, c.biome);
                }
            }
            path => isa::run(
                path,
                ClimateKernel {
                    g: self,
                    coord: chunk.coord,
                    height: &l.height,
                    temp: &mut l.temperature,
                    moist: &mut l.moisture,
                    biome: &mut l.biome,
                },
            ),
        }
    }

    /// Stage 3: features scattered by a seed-and-position hash, thinned by
    /// biome and a low-frequency clumping field.
    pub fn features(&self, chunk: &mut Chunk) {
        let (ox, oz) = chunk.coord.origin();
        let mut cand = Candidates::new();
        match self.isa {
            Isa::Scalar => {
                for (i, &b) in chunk.layers.biome.iter().enumerate() {
                    let (wx, wz) = (ox + (i / CHUNK_SIZE) as i64, oz + (i % CHUNK_SIZE) as i64);
                    let h = hash2(self.s_features, wx, wz);
                    if unit(h) < self.feature_bound.get(usize::from(b)).copied().unwrap_or(0.0) {
                        let k = cand.len;
                        (cand.index[k], cand.hash[k]) = (i as u16, h);
                        let (x, z) = (wx as f64 * CLUMP_FREQUENCY, wz as f64 * CLUMP_FREQUENCY);
                        fbm_into(self.s_clumps, WARP, &mut [x], &mut [z], &mut cand.clump[k..k + 1]);
                        cand.len += 1;
                    }
                }
            }
            path => isa::run(
                path,
                FeatureKernel { g: self, coord: chunk.coord, biome: &chunk.layers.biome, cand: &mut cand },
            ),
        }
        let density = self.params.feature_density;
        for k in 0..cand.len {
            let i = usize::from(cand.index[k]);
            let flora = flora(chunk.layers.biome[i]);
            let h = cand.hash[k];
            let clump = 0.4 + 1.2 * (0.5 + 0.5 * cand.clump[k]);
            let mut u = unit(h) / (density * clump).max(1e-12);
            for &(kind, chance, make) in flora {
                if u < chance {
                    let properties = make(mix64(h ^ 0x5eed));
                    let (x, z) = ((i / CHUNK_SIZE) as u8, (i % CHUNK_SIZE) as u8);
                    chunk.features.push(Feature { x, z, kind: kind.to_owned(), properties });
                    break;
                }
                u -= chance;
            }
        }
    }
}

/// Columns of a chunk that may hold a feature, in column order.
struct Candidates {
    len: usize,
    index: [u16; CHUNK_COLUMNS],
    hash: [u64; CHUNK_COLUMNS],
    clump: [f64; CHUNK_COLUMNS],
}

impl Candidates {
    fn new() -> Self {
        Self { len: 0, index: [0; CHUNK_COLUMNS], hash: [0; CHUNK_COLUMNS], clump: [0.0; CHUNK_COLUMNS] }
    }
}

struct TerrainKernel<'a> {
    g: &'a Generator,
    coord: ChunkCoord,
    out: &'a mut [f32],
}

impl Kernel for TerrainKernel<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.g.terrain_batch(self.coord, self.out)
    }
}

struct ClimateKernel<'a> {
    g: &'a Generator,
    coord: ChunkCoord,
    height: &'a [f32],
    temp: &'a mut [f32],
    moist: &'a mut [f32],
    biome: &'a mut [BiomeId],
}

impl Kernel for ClimateKernel<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.g.climate_batch(self.coord, self.height, self.temp, self.moist, self.biome)
    }
}

struct ColumnsKernel<'a> {
    g: &'a Generator,
    columns: &'a [(i64, i64)],
    out: &'a mut Vec<(f32, ColumnClimate)>,
}

impl Kernel for ColumnsKernel<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.g.columns_batch(self.columns, self.out)
    }
}

struct FeatureKernel<'a> {
    g: &'a Generator,
    coord: ChunkCoord,
    biome: &'a [BiomeId],
    cand: &'a mut Candidates,
}

impl Kernel for FeatureKernel<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.g.feature_candidates(self.coord, self.biome, self.cand)
    }
}

/// The biome of a column from its height (m), temperature (°C) and moisture
/// (0..1), written as selects so a whole chunk vectorises.
#[inline(always)]
fn classify(th: &Thresholds, height: f64, t: f64, m: f64) -> BiomeId {
    let depth = th.sea_level - height;
    let above = -depth;
    let warm = if m < 0.3 {
        ids::DESERT
    } else if m < 0.55 {
        ids::SAVANNA
    } else {
        ids::RAINFOREST
    };
    let temperate = if m > 0.72 && above < th.swamp {
        ids::SWAMP
    } else if m > 0.45 {
        ids::FOREST
    } else {
        ids::PLAINS
    };
    let cold = if m > 0.4 { ids::TAIGA } else { ids::TUNDRA };
    let land = if t < -5.0 {
        ids::TUNDRA
    } else if t < 5.0 {
        cold
    } else if t < 22.0 {
        temperate
    } else {
        warm
    };
    let b = if above < th.beach && t > 2.0 { ids::BEACH } else { land };
    let b = if above > th.mountains { ids::MOUNTAINS } else { b };
    let b = if above > th.peaks || (above > th.mountains && t < -4.0) { ids::SNOWY_PEAKS } else { b };
    let b = if depth > 0.0 { ids::OCEAN } else { b };
    if depth > th.deep { ids::DEEP_OCEAN } else { b }
}

type Props = BTreeMap<String, PropValue>;
type Flora = &'static [(&'static str, f64, fn(u64) -> Props)];

fn props<const N: usize>(pairs: [(&str, PropValue); N]) -> Props {
    // Inserting one or two entries directly skips `collect`'s buffer and sort.
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        map.insert(k.to_owned(), v);
    }
    map
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biome::BIOMES;

    #[test]
    fn sea_level_parameter_moves_the_coast() {
        let low = Params { sea_level: -300.0, ..Params::default() };
        let high = Params { sea_level: 300.0, ..Params::default() };
        let count_ocean = |p: &Params| {
            let g = Generator::new(9, p);
            (-3..3)
                .flat_map(|cx| (-3..3).map(move |cz| ChunkCoord::new(cx * 20, cz * 20)))
                .map(|c| g.chunk(c))
                .flat_map(|c| c.layers.biome)
                .filter(|b| *b == ids::OCEAN || *b == ids::DEEP_OCEAN)
                .count()
        };
        assert!(count_ocean(&high) > count_ocean(&low));
    }

    #[test]
    fn no_world_has_a_special_origin() {
        let heights: Vec<f64> = (0..8).map(|seed| Generator::new(seed, &Params::default()).height_at(0, 0)).collect();
        assert!(heights.iter().all(|h| *h != 0.0), "{heights:?}");
        let distinct: std::collections::BTreeSet<u64> = heights.iter().map(|h| h.to_bits()).collect();
        assert_eq!(distinct.len(), heights.len());
    }

    #[test]
    fn a_wide_sample_shows_most_biomes_and_features() {
        let g = Generator::new(42, &Params::default());
        let mut seen = vec![false; BIOMES.len()];
        let mut features = 0;
        for cx in -12..12 {
            for cz in -12..12 {
                let c = g.chunk(ChunkCoord::new(cx * 40, cz * 40));
                for b in &c.layers.biome {
                    seen[usize::from(*b)] = true;
                }
                features += c.features.len();
            }
        }
        let kinds = seen.iter().filter(|s| **s).count();
        assert!(kinds >= 8, "only {kinds} biomes seen: {seen:?}");
        assert!(features > 100, "only {features} features");
    }
}
