//! The Worldloom generation core: seed and parameters in, chunks out.
//!
//! This crate is pure: it does no I/O, reads no clock, uses no thread RNG and
//! never iterates a hash map. Every value at a column is a function of the
//! world seed, the parameters and that column's world coordinates only, so
//! chunks are byte-identical on every machine and thread, in any request
//! order, and neighbouring chunks meet without seams.
//!
//! Generation is split into the stages the plugin pipeline interleaves with:
//! [`Generator::terrain`] (height), [`Generator::climate`] (temperature,
//! moisture, biome) and [`Generator::features`] (scattered objects).

pub mod biome;
pub mod chunk;
mod generate;
pub mod hash;
pub mod isa;
pub mod noise;
pub mod overview;
pub mod params;

pub use biome::{BIOMES, Biome, BiomeId};
pub use chunk::{CHUNK_COLUMNS, CHUNK_SIZE, Chunk, ChunkCoord, Feature, Layers, PropValue, REGION_SIZE, RegionCoord};
pub use generate::{ColumnClimate, Generator};
pub use isa::Isa;
pub use overview::{Overview, OverviewArea};
pub use params::{ParamError, ParamSpec, Params, ParamsPatch};

/// Generates one chunk with every core stage, no plugins.
pub fn generate_chunk(seed: u64, params: &Params, coord: ChunkCoord) -> Chunk {
    Generator::new(seed, params).chunk(coord)
}
