//! Chunks, regions and the layers a chunk carries.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::biome::BiomeId;

/// Columns along each side of a chunk.
pub const CHUNK_SIZE: usize = 32;
/// Columns in a chunk.
pub const CHUNK_COLUMNS: usize = CHUNK_SIZE * CHUNK_SIZE;
/// Chunks along each side of a region, the unit of sharding across nodes.
pub const REGION_SIZE: i32 = 16;
/// Largest accepted |cx| or |cz|: keeps every world coordinate exact in `f64` noise space.
pub const MAX_CHUNK_COORD: i32 = 1 << 24;

/// Integer address of a chunk; chunk (cx, cz) covers columns
/// `cx*32 .. cx*32+31` by `cz*32 .. cz*32+31`. Negative coordinates are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkCoord {
    pub cx: i32,
    pub cz: i32,
}

impl ChunkCoord {
    pub const fn new(cx: i32, cz: i32) -> Self {
        Self { cx, cz }
    }

    /// Whether both coordinates are within `±MAX_CHUNK_COORD`.
    pub fn in_bounds(self) -> bool {
        self.cx.unsigned_abs() <= MAX_CHUNK_COORD as u32 && self.cz.unsigned_abs() <= MAX_CHUNK_COORD as u32
    }

    /// The region this chunk belongs to.
    pub fn region(self) -> RegionCoord {
        RegionCoord { rx: self.cx.div_euclid(REGION_SIZE), rz: self.cz.div_euclid(REGION_SIZE) }
    }

    /// World column coordinates of this chunk's column (0, 0).
    pub fn origin(self) -> (i64, i64) {
        (i64::from(self.cx) * CHUNK_SIZE as i64, i64::from(self.cz) * CHUNK_SIZE as i64)
    }

    /// Chebyshev distance (the "radius" of the square it lies on) from `other`.
    pub fn ring_distance(self, other: ChunkCoord) -> u32 {
        let dx = (i64::from(self.cx) - i64::from(other.cx)).unsigned_abs();
        let dz = (i64::from(self.cz) - i64::from(other.cz)).unsigned_abs();
        dx.max(dz) as u32
    }

    /// Squared Euclidean distance from `other`, the "nearest-first" order key.
    pub fn distance2(self, other: ChunkCoord) -> u64 {
        let dx = (i64::from(self.cx) - i64::from(other.cx)).unsigned_abs();
        let dz = (i64::from(self.cz) - i64::from(other.cz)).unsigned_abs();
        dx * dx + dz * dz
    }
}

impl fmt::Display for ChunkCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.cx, self.cz)
    }
}

/// Address of a region: a `REGION_SIZE`x`REGION_SIZE` block of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegionCoord {
    pub rx: i32,
    pub rz: i32,
}

/// The per-column layers of a chunk, each `CHUNK_COLUMNS` long and indexed
/// `x * CHUNK_SIZE + z` (the `[x][z]` order of the JSON form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layers {
    /// Terrain height in metres.
    #[serde(with = "grid")]
    pub height: Vec<f32>,
    /// Mean temperature in °C.
    #[serde(with = "grid")]
    pub temperature: Vec<f32>,
    /// Moisture from 0 (arid) to 1 (saturated).
    #[serde(with = "grid")]
    pub moisture: Vec<f32>,
    /// Biome id, see [`crate::BIOMES`].
    #[serde(with = "grid")]
    pub biome: Vec<BiomeId>,
}

impl Layers {
    pub fn zeroed() -> Self {
        Self {
            height: vec![0.0; CHUNK_COLUMNS],
            temperature: vec![0.0; CHUNK_COLUMNS],
            moisture: vec![0.0; CHUNK_COLUMNS],
            biome: vec![0; CHUNK_COLUMNS],
        }
    }
}

/// Index of column (x, z) in a layer.
#[inline]
pub const fn idx(x: usize, z: usize) -> usize {
    x * CHUNK_SIZE + z
}

/// A property value of a feature (the plugin ABI's scalar value).
pub use worldloom_plugin_abi::Value as PropValue;

/// An object placed on a column: a tree, a rock, whatever a plugin adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Column within the chunk, `0..CHUNK_SIZE`.
    pub x: u8,
    /// Column within the chunk, `0..CHUNK_SIZE`.
    pub z: u8,
    /// What it is, e.g. `tree`.
    pub kind: String,
    /// Free-form properties, sorted by name.
    #[serde(default)]
    pub properties: BTreeMap<String, PropValue>,
}

/// One generated chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub coord: ChunkCoord,
    pub layers: Layers,
    pub features: Vec<Feature>,
}

impl Chunk {
    pub fn empty(coord: ChunkCoord) -> Self {
        Self { coord, layers: Layers::zeroed(), features: Vec::new() }
    }
}

/// Layers are a flat vector in memory and in binary formats, and nested
/// `[x][z]` rows in human-readable ones.
mod grid {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut seq = s.serialize_seq(Some(CHUNK_SIZE))?;
            for row in v.chunks(CHUNK_SIZE) {
                seq.serialize_element(row)?;
            }
            seq.end()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let flat: Vec<T> = if d.is_human_readable() {
            let rows = Vec::<Vec<T>>::deserialize(d)?;
            if rows.len() != CHUNK_SIZE || rows.iter().any(|r| r.len() != CHUNK_SIZE) {
                return Err(de::Error::custom(format!("a layer must be {CHUNK_SIZE} rows of {CHUNK_SIZE} values")));
            }
            rows.into_iter().flatten().collect()
        } else {
            Vec::<T>::deserialize(d)?
        };
        if flat.len() != CHUNK_COLUMNS {
            return Err(de::Error::custom(format!("a layer must hold {CHUNK_COLUMNS} values, got {}", flat.len())));
        }
        Ok(flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_group_chunks_with_floor_division() {
        assert_eq!(ChunkCoord::new(0, 15).region(), RegionCoord { rx: 0, rz: 0 });
        assert_eq!(ChunkCoord::new(-1, 16).region(), RegionCoord { rx: -1, rz: 1 });
        assert_eq!(ChunkCoord::new(-16, -17).region(), RegionCoord { rx: -1, rz: -2 });
    }

    #[test]
    fn origins_cover_negative_space_without_gaps() {
        assert_eq!(ChunkCoord::new(-1, 0).origin(), (-32, 0));
        assert_eq!(ChunkCoord::new(1, -2).origin(), (32, -64));
    }
}
