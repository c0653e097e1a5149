//! A coarse overview of a world from the core alone: the height and biome
//! of every `step`-th column of a square tile, so a viewer can show
//! continents without generating (or fetching) thousands of chunks.
//!
//! Every sample is exactly the column the core's chunk has there (same
//! bits): height is [`Generator::height_at`] rounded to `f32` as a chunk's
//! layer is, and the climate and biome are [`Generator::climate_at`] from
//! that rounded height, the per-column form of [`Generator::climate`]. Plugins are not
//! applied: an overview is the core's world only.

use serde::{Deserialize, Serialize};

use crate::biome::BiomeId;
use crate::chunk::{CHUNK_SIZE, MAX_CHUNK_COORD};
use crate::generate::Generator;
use crate::params::Params;

/// Most samples along a side of one overview tile.
pub const MAX_OVERVIEW_SIZE: u32 = 256;
/// Largest sampling step, in columns.
pub const MAX_OVERVIEW_STEP: u32 = 64;

/// Which columns an overview tile samples: `size` x `size` columns every
/// `step` columns from world column (`x`, `z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverviewArea {
    pub x: i64,
    pub z: i64,
    /// A power of two from 1 to [`MAX_OVERVIEW_STEP`].
    pub step: u32,
    /// From 1 to [`MAX_OVERVIEW_SIZE`].
    pub size: u32,
}

/// Why an [`OverviewArea`] is not accepted: the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverviewError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for OverviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Largest |world column| an overview may sample (the chunk coordinate bound).
pub const MAX_OVERVIEW_COLUMN: i64 = (MAX_CHUNK_COORD as i64) * CHUNK_SIZE as i64;

impl OverviewArea {
    /// Checks the step, the size and that every sampled column is in range.
    pub fn validate(&self) -> Result<(), OverviewError> {
        let err = |field, message: String| Err(OverviewError { field, message });
        if !(1..=MAX_OVERVIEW_STEP).contains(&self.step) || !self.step.is_power_of_two() {
            return err(
                "step",
                format!("step must be a power of two from 1 to {MAX_OVERVIEW_STEP}, got {}", self.step),
            );
        }
        if !(1..=MAX_OVERVIEW_SIZE).contains(&self.size) {
            return err("size", format!("size must be from 1 to {MAX_OVERVIEW_SIZE}, got {}", self.size));
        }
        let span = i64::from(self.step) * i64::from(self.size - 1);
        for (field, v) in [("x", self.x), ("z", self.z)] {
            if v < -MAX_OVERVIEW_COLUMN || v.saturating_add(span) > MAX_OVERVIEW_COLUMN {
                return err(
                    field,
                    format!("{field}: the tile must lie within ±{MAX_OVERVIEW_COLUMN} columns, got {v} (+{span})"),
                );
            }
        }
        Ok(())
    }

    /// Samples in the tile.
    pub fn len(&self) -> usize {
        (self.size as usize) * (self.size as usize)
    }

    /// Whether the tile has no samples (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// One overview tile: `height` and `biome` of `size * size` samples, indexed
/// `i * size + j` for the column (`x + i * step`, `z + j * step`) (the
/// `[x][z]` order of a chunk's layers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub area: OverviewArea,
    pub height: Vec<f32>,
    pub biome: Vec<BiomeId>,
}

/// The core's per-column path ([`Generator::column_at`]), column by column.
#[derive(Clone, Debug)]
pub struct ColumnSampler {
    generator: Generator,
}

/// One sampled column: what the core's chunk holds there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnSample {
    pub height: f32,
    pub temperature: f32,
    pub moisture: f32,
    pub biome: BiomeId,
}

impl ColumnSampler {
    pub fn new(seed: u64, params: &Params) -> Self {
        Self { generator: Generator::new(seed, params) }
    }

    /// The core's height, temperature, moisture and biome at world column (wx, wz).
    pub fn column(&self, wx: i64, wz: i64) -> ColumnSample {
        let (height, c) = self.generator.column_at(wx, wz);
        ColumnSample { height, temperature: c.temperature, moisture: c.moisture, biome: c.biome }
    }

    /// The overview tile of `area` (validate it first: an invalid area is sampled as given).
    pub fn overview(&self, area: OverviewArea) -> Overview {
        let step = i64::from(area.step);
        let size = i64::from(area.size);
        let columns: Vec<(i64, i64)> =
            (0..size).flat_map(|i| (0..size).map(move |j| (area.x + i * step, area.z + j * step))).collect();
        // Batched and vectorised; the same bits as `column` at each position.
        let (height, biome) = self.generator.columns_at(&columns).into_iter().map(|(h, c)| (h, c.biome)).unzip();
        Overview { area, height, biome }
    }
}

/// The overview tile of `area` for a world's seed and parameters.
pub fn overview(seed: u64, params: &Params, area: OverviewArea) -> Overview {
    ColumnSampler::new(seed, params).overview(area)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkCoord, idx};

    fn worlds() -> Vec<(u64, Params)> {
        vec![
            (42, Params::default()),
            (7, Params { sea_level: 150.0, height_scale: 1200.0, climate_scale: 300.0, ..Params::default() }),
            (u64::MAX, Params { octaves: 3, frequency: 0.01, warp_strength: 0.0, ..Params::default() }),
        ]
    }

    /// Every column of several chunks (negative ones too) is bit-identical
    /// to what the core's chunk holds there.
    #[test]
    fn overview_columns_are_the_cores_chunk_columns_bit_for_bit() {
        for (seed, params) in worlds() {
            let g = Generator::new(seed, &params);
            let s = ColumnSampler::new(seed, &params);
            for coord in
                [ChunkCoord::new(0, 0), ChunkCoord::new(-3, 5), ChunkCoord::new(40, -17), ChunkCoord::new(-1, -1)]
            {
                let chunk = g.chunk(coord);
                let (ox, oz) = coord.origin();
                for x in 0..CHUNK_SIZE {
                    for z in 0..CHUNK_SIZE {
                        let i = idx(x, z);
                        let c = s.column(ox + x as i64, oz + z as i64);
                        assert_eq!(c.height.to_bits(), chunk.layers.height[i].to_bits(), "{seed} {coord} {x},{z}");
                        assert_eq!(c.temperature.to_bits(), chunk.layers.temperature[i].to_bits());
                        assert_eq!(c.moisture.to_bits(), chunk.layers.moisture[i].to_bits());
                        assert_eq!(c.biome, chunk.layers.biome[i], "{seed} {coord} {x},{z}");
                    }
                }
            }
        }
    }

    /// A coarse tile's samples are the core's columns at those positions.
    #[test]
    fn overview_tiles_sample_every_step_th_column() {
        let (seed, params) = (42, Params::default());
        let g = Generator::new(seed, &params);
        let area = OverviewArea { x: -70, z: 33, step: 16, size: 12 };
        area.validate().unwrap();
        let tile = overview(seed, &params, area);
        assert_eq!(tile.height.len(), 144);
        assert_eq!(tile, overview(seed, &params, area), "deterministic");
        for i in 0..12usize {
            for j in 0..12usize {
                let (wx, wz) = (-70 + 16 * i as i64, 33 + 16 * j as i64);
                let coord = ChunkCoord::new(wx.div_euclid(32) as i32, wz.div_euclid(32) as i32);
                let chunk = g.chunk(coord);
                let k = idx(wx.rem_euclid(32) as usize, wz.rem_euclid(32) as usize);
                assert_eq!(tile.height[i * 12 + j].to_bits(), chunk.layers.height[k].to_bits());
                assert_eq!(tile.biome[i * 12 + j], chunk.layers.biome[k]);
            }
        }
    }

    #[test]
    fn overview_areas_are_validated_by_field() {
        let ok = OverviewArea { x: 0, z: 0, step: 64, size: 256 };
        assert!(ok.validate().is_ok());
        let field = |a: OverviewArea| a.validate().unwrap_err().field;
        assert_eq!(field(OverviewArea { step: 3, ..ok }), "step");
        assert_eq!(field(OverviewArea { step: 0, ..ok }), "step");
        assert_eq!(field(OverviewArea { step: 128, ..ok }), "step");
        assert_eq!(field(OverviewArea { size: 0, ..ok }), "size");
        assert_eq!(field(OverviewArea { size: 257, ..ok }), "size");
        assert_eq!(field(OverviewArea { x: MAX_OVERVIEW_COLUMN, ..ok }), "x");
        assert_eq!(field(OverviewArea { z: i64::MIN, ..ok }), "z");
        assert!(OverviewArea { x: -MAX_OVERVIEW_COLUMN, ..ok }.validate().is_ok());
    }
}
