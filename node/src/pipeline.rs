//! The generation pipeline: core stages interleaved with plugin hooks.
//!
//! core terrain -> each plugin's `terrain` (world order) -> climate/biome ->
//! each `biome` -> core features -> each `features`. A failing hook never
//! fails the chunk: the chunk is served without that hook's effect and the
//! failure is recorded on it. The pipeline knows nothing about wasm; hooks
//! run through [`HookRunner`].

use std::collections::BTreeSet;

use worldloom_cluster::model::{AttachedPlugin, ChunkRecord, GenSpec, PluginFailure};
use worldloom_plugin_abi::{ErrorKind, FeatureOut, HookInput, HookName, HookOutput, LayerBuffers, PluginError};
use worldloom_worldgen::hash::{derive, hash2, stream};
use worldloom_worldgen::{CHUNK_COLUMNS, CHUNK_SIZE, Chunk, ChunkCoord, Feature, Generator};

/// Runs plugin hooks on behalf of the pipeline.
pub trait HookRunner {
    /// Whether `plugin` defines `hook`; an error if the plugin cannot be loaded.
    fn defines(&mut self, plugin: &AttachedPlugin, hook: HookName) -> Result<bool, PluginError>;
    /// Runs one hook call. Outputs are validated by the runner.
    fn run(&mut self, plugin: &AttachedPlugin, input: &HookInput) -> Result<HookOutput, PluginError>;
}

/// A runner for worlds without plugins; asked to run one, it reports why it cannot.
pub struct NoPlugins;

impl HookRunner for NoPlugins {
    fn defines(&mut self, _: &AttachedPlugin, _: HookName) -> Result<bool, PluginError> {
        Err(PluginError::new(ErrorKind::Trap, "this node has no plugin runtime"))
    }
    fn run(&mut self, _: &AttachedPlugin, _: &HookInput) -> Result<HookOutput, PluginError> {
        Err(PluginError::new(ErrorKind::Trap, "this node has no plugin runtime"))
    }
}

/// Seed of `ctx.random` for one plugin on one chunk.
pub fn plugin_random_seed(world_seed: u64, plugin: &AttachedPlugin, coord: ChunkCoord) -> u64 {
    let per_plugin = derive(world_seed, stream(&plugin.sha256) ^ stream(&plugin.name));
    hash2(per_plugin, i64::from(coord.cx), i64::from(coord.cz))
}

/// The input a hook call gets for a chunk.
pub fn hook_input(spec: &GenSpec, plugin: &AttachedPlugin, hook: HookName, chunk: &Chunk) -> HookInput {
    HookInput {
        hook,
        seed: spec.seed,
        cx: chunk.coord.cx,
        cz: chunk.coord.cz,
        size: CHUNK_SIZE as u32,
        random_seed: plugin_random_seed(spec.seed, plugin, chunk.coord),
        sea_level: spec.params.sea_level,
        params: plugin.params.clone(),
        layers: LayerBuffers {
            height: chunk.layers.height.clone(),
            temperature: chunk.layers.temperature.clone(),
            moisture: chunk.layers.moisture.clone(),
            biome: chunk.layers.biome.clone(),
        },
    }
}

/// Applies a validated hook output to a chunk.
pub fn apply_output(chunk: &mut Chunk, output: HookOutput) -> Result<(), String> {
    match output {
        HookOutput::Terrain(t) if t.height.len() == CHUNK_COLUMNS => chunk.layers.height = t.height,
        HookOutput::Biome(b) if b.biome.len() == CHUNK_COLUMNS => chunk.layers.biome = b.biome,
        HookOutput::Features(list) => {
            for FeatureOut { x, z, kind, properties } in list {
                let (Ok(x), Ok(z)) = (u8::try_from(x), u8::try_from(z)) else {
                    return Err(format!("feature at ({x}, {z}) is outside the chunk"));
                };
                if usize::from(x) >= CHUNK_SIZE || usize::from(z) >= CHUNK_SIZE {
                    return Err(format!("feature at ({x}, {z}) is outside the chunk"));
                }
                chunk.features.push(Feature { x, z, kind, properties });
            }
        }
        _ => return Err("the hook returned a layer of the wrong size".into()),
    }
    Ok(())
}

struct Stage<'a> {
    spec: &'a GenSpec,
    runner: &'a mut dyn HookRunner,
    failures: Vec<PluginFailure>,
    broken: BTreeSet<usize>,
}

impl Stage<'_> {
    fn fail(&mut self, plugin: &AttachedPlugin, hook: HookName, e: PluginError) {
        self.failures.push(PluginFailure {
            plugin: plugin.name.clone(),
            version: plugin.version.clone(),
            hook,
            kind: e.kind,
            message: e.to_string(),
            transient: e.transient,
        });
    }

    fn run(&mut self, hook: HookName, chunk: &mut Chunk) {
        let spec = self.spec;
        for (i, plugin) in spec.plugins.iter().enumerate() {
            if self.broken.contains(&i) {
                continue;
            }
            match self.runner.defines(plugin, hook) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    // A plugin that cannot load is reported once per chunk, then skipped.
                    self.broken.insert(i);
                    self.fail(plugin, hook, e);
                    continue;
                }
            }
            let result = self.runner.run(plugin, &hook_input(spec, plugin, hook, chunk));
            let applied = result.and_then(|out| {
                let mut next = chunk.clone();
                apply_output(&mut next, out).map_err(|m| PluginError::new(ErrorKind::InvalidOutput, m))?;
                *chunk = next;
                Ok(())
            });
            if let Err(e) = applied {
                self.fail(plugin, hook, e);
            }
        }
    }
}

/// The chunk as the hooks named `hook` see it in a world whose only plugin
/// is the one being run (used by `worldloom plugin run`).
pub fn stage_input(spec: &GenSpec, coord: ChunkCoord, hook: HookName) -> Chunk {
    let core = Generator::new(spec.seed, &spec.params);
    let mut chunk = core.terrain(coord);
    core.climate(&mut chunk);
    if hook == HookName::Features {
        core.features(&mut chunk);
    }
    chunk
}

/// Generates one chunk of a world revision, plugins included.
pub fn generate(spec: &GenSpec, coord: ChunkCoord, runner: &mut dyn HookRunner) -> ChunkRecord {
    let core = Generator::new(spec.seed, &spec.params);
    let mut chunk = core.terrain(coord);
    let mut stage = Stage { spec, runner, failures: Vec::new(), broken: BTreeSet::new() };
    if !spec.plugins.is_empty() {
        // Terrain hooks may read every layer: give them the climate of the core
        // terrain; it is recomputed below from the height they leave.
        core.climate(&mut chunk);
        stage.run(HookName::Terrain, &mut chunk);
    }
    core.climate(&mut chunk);
    stage.run(HookName::Biome, &mut chunk);
    core.features(&mut chunk);
    stage.run(HookName::Features, &mut chunk);
    ChunkRecord { world: spec.world.clone(), revision: spec.revision, chunk, plugin_failures: stage.failures }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use worldloom_cluster::ids::WorldId;
    use worldloom_plugin_abi::{BiomeOutput, RuntimeKind, TerrainOutput, Value};
    use worldloom_worldgen::Params;
    use worldloom_worldgen::biome::ids::FOREST;

    use super::*;

    fn spec(plugins: Vec<AttachedPlugin>) -> GenSpec {
        GenSpec {
            world: WorldId::random(),
            revision: 0,
            seed: 9,
            params: Params::default(),
            plugins,
            limits: worldloom_plugin_abi::Limits::default(),
        }
    }

    fn plugin(name: &str) -> AttachedPlugin {
        AttachedPlugin {
            name: name.into(),
            version: "1.0.0".into(),
            sha256: "0".repeat(64),
            runtime: RuntimeKind::Python,
            params: BTreeMap::from([("k".into(), Value::Int(1))]),
        }
    }

    /// Records calls; raises the terrain, floods biomes, fails `features`.
    struct Scripted(Vec<(String, HookName)>);

    impl HookRunner for Scripted {
        fn defines(&mut self, p: &AttachedPlugin, _: HookName) -> Result<bool, PluginError> {
            if p.name == "unloadable" { Err(PluginError::new(ErrorKind::Syntax, "bad")) } else { Ok(true) }
        }
        fn run(&mut self, p: &AttachedPlugin, input: &HookInput) -> Result<HookOutput, PluginError> {
            self.0.push((p.name.clone(), input.hook));
            match input.hook {
                HookName::Terrain => Ok(HookOutput::Terrain(TerrainOutput {
                    height: input.layers.height.iter().map(|h| h + 1000.0).collect(),
                })),
                HookName::Biome => Ok(HookOutput::Biome(BiomeOutput { biome: vec![FOREST; input.layers.biome.len()] })),
                HookName::Features if p.name == "a" => Err(PluginError::new(ErrorKind::FuelExhausted, "busy")),
                HookName::Features => Err(PluginError::transient(ErrorKind::Timeout, "slow")),
            }
        }
    }

    #[test]
    fn hooks_run_in_pipeline_order_and_failures_are_recorded_not_fatal() {
        let s = spec(vec![plugin("a"), plugin("unloadable"), plugin("b")]);
        let mut runner = Scripted(Vec::new());
        let rec = generate(&s, ChunkCoord::new(1, 2), &mut runner);
        let order: Vec<_> = runner.0.iter().map(|(n, h)| format!("{n}:{h}")).collect();
        assert_eq!(order, ["a:terrain", "b:terrain", "a:biome", "b:biome", "a:features", "b:features"]);
        // Each stage sees the previous one's output: climate after raised terrain,
        // core features after the plugins' biomes; failed features hooks change nothing.
        let core = Generator::new(s.seed, &s.params);
        let mut expect = core.terrain(ChunkCoord::new(1, 2));
        expect.layers.height.iter_mut().for_each(|h| *h = *h + 1000.0 + 1000.0);
        core.climate(&mut expect);
        expect.layers.biome.fill(FOREST);
        core.features(&mut expect);
        assert_eq!(rec.chunk, expect);
        assert!(!rec.chunk.features.is_empty());
        let kinds: Vec<_> = rec.plugin_failures.iter().map(|f| (f.plugin.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [("unloadable", ErrorKind::Syntax), ("a", ErrorKind::FuelExhausted), ("b", ErrorKind::Timeout)]
        );
        // A wall-clock failure is not a function of the chunk's inputs: the
        // chunk says so and may not be stored as its truth.
        let transient: Vec<_> = rec.plugin_failures.iter().map(|f| f.transient).collect();
        assert_eq!(transient, [false, false, true]);
        assert!(!rec.is_deterministic());
    }

    #[test]
    fn random_seeds_differ_per_plugin_and_chunk_but_are_stable() {
        let (a, b) = (plugin("a"), plugin("b"));
        let c = ChunkCoord::new(0, 0);
        assert_eq!(plugin_random_seed(1, &a, c), plugin_random_seed(1, &a, c));
        assert_ne!(plugin_random_seed(1, &a, c), plugin_random_seed(1, &b, c));
        assert_ne!(plugin_random_seed(1, &a, c), plugin_random_seed(1, &a, ChunkCoord::new(0, 1)));
    }
}
