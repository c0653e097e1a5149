//! The biome table: stable numeric ids, names and map colours.

use serde::Serialize;

/// Numeric biome id stored in the `biome` layer; an index into [`BIOMES`].
pub type BiomeId = u16;

/// One row of the biome table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Biome {
    /// Stable id; never reused for another biome.
    pub id: BiomeId,
    /// Stable machine name.
    pub name: &'static str,
    /// Map colour as `#rrggbb`.
    pub color: &'static str,
    /// What the biome is and where it appears.
    pub doc: &'static str,
}

macro_rules! biomes {
    ($($konst:ident = $id:literal, $name:literal, $color:literal, $doc:literal;)*) => {
        /// Named biome ids, for code that places or tests biomes.
        pub mod ids {
            use super::BiomeId;
            $(pub const $konst: BiomeId = $id;)*
        }
        /// Every biome, indexed by id.
        pub const BIOMES: &[Biome] = &[$(Biome { id: $id, name: $name, color: $color, doc: $doc }),*];
    };
}

biomes! {
    DEEP_OCEAN = 0, "deep_ocean", "#1b3a6b", "Water more than a third of the height scale deep.";
    OCEAN = 1, "ocean", "#2f5f9e", "Water below sea level.";
    BEACH = 2, "beach", "#e3d59b", "A thin band of sand just above sea level.";
    PLAINS = 3, "plains", "#8fbf5a", "Temperate, fairly dry lowland grass.";
    FOREST = 4, "forest", "#3f7f3a", "Temperate, moist lowland with broadleaf trees.";
    RAINFOREST = 5, "rainforest", "#1f6f2f", "Hot and wet lowland, dense jungle.";
    DESERT = 6, "desert", "#d9b66a", "Hot and dry; cacti and rocks.";
    SAVANNA = 7, "savanna", "#b5a642", "Hot, seasonally dry grassland with scattered trees.";
    TAIGA = 8, "taiga", "#4f6f5a", "Cold, moist conifer forest.";
    TUNDRA = 9, "tundra", "#a7b7a0", "Cold and dry, treeless.";
    SWAMP = 10, "swamp", "#4f5f3a", "Wet, warm lowland barely above sea level.";
    MOUNTAINS = 11, "mountains", "#8a8275", "High, steep rocky ground.";
    SNOWY_PEAKS = 12, "snowy_peaks", "#f2f4f7", "The highest, coldest summits.";
}

/// Looks a biome up by id.
pub fn by_id(id: BiomeId) -> Option<&'static Biome> {
    BIOMES.get(usize::from(id))
}

/// Looks a biome up by name.
pub fn by_name(name: &str) -> Option<&'static Biome> {
    BIOMES.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_match_their_index() {
        assert!(BIOMES.len() >= 8);
        for (i, b) in BIOMES.iter().enumerate() {
            assert_eq!(usize::from(b.id), i, "{}", b.name);
            assert_eq!(by_name(b.name), Some(b));
        }
        assert!(by_id(BIOMES.len() as BiomeId).is_none());
    }
}
