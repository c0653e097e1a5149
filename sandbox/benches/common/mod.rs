//! The call both the sandbox bench and `examples/call_profile.rs` measure:
//! an identity `terrain` hook on a 32x32 chunk.

use std::collections::BTreeMap;

use worldloom_plugin_abi::{HookInput, HookName, LayerBuffers};

pub const IDENTITY: &str = "def terrain(ctx, chunk):\n    return chunk\n";

pub fn input() -> HookInput {
    let n = 32 * 32;
    HookInput {
        hook: HookName::Terrain,
        seed: 1,
        cx: 0,
        cz: 0,
        size: 32,
        random_seed: 7,
        sea_level: 0.0,
        params: BTreeMap::new(),
        layers: LayerBuffers {
            height: (0..n).map(|i| i as f32).collect(),
            temperature: vec![0.5; n],
            moisture: vec![0.25; n],
            biome: vec![1; n],
        },
    }
}
