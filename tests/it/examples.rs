//! The example plugins in `examples/plugins/`: every file passes `worldloom
//! plugin check`, and each one does to the world what its docstring says.
//! Each runs through the node's real pipeline (`pipeline::generate`) with a
//! real sandbox worker, exactly as a server runs an attached plugin, and is
//! compared with the core-only chunk at the same coordinates, computed at
//! run time (the core's values may change; the relations tested may not).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value as Json, json};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{AttachedPlugin, GenSpec};
use worldloom_node::pipeline::{self, HookRunner};
use worldloom_plugin_abi::{HookInput, HookName, HookOutput, Limits, PluginError, PluginInfo, RuntimeKind, Value};
use worldloom_sandbox::{PluginRef, Worker};
use worldloom_tests::{binary, worldloom_dir};
use worldloom_worldgen::biome::ids;
use worldloom_worldgen::{CHUNK_SIZE, Chunk, ChunkCoord, Generator, Params, generate_chunk};

const N: usize = CHUNK_SIZE;

fn examples_dir() -> PathBuf {
    worldloom_dir().parent().expect("workspace root").join("examples/plugins")
}

fn at(x: usize, z: usize) -> usize {
    x * N + z
}

/// A sandbox worker running one plugin for the pipeline, remembering the
/// most fuel any call of each hook used.
struct Sandbox {
    worker: Worker,
    name: String,
    sha256: String,
    source: String,
    info: PluginInfo,
    limits: Limits,
    fuel: BTreeMap<&'static str, u64>,
}

impl HookRunner for Sandbox {
    fn defines(&mut self, _: &AttachedPlugin, hook: HookName) -> Result<bool, PluginError> {
        Ok(self.info.hooks.contains(&hook))
    }

    fn run(&mut self, _: &AttachedPlugin, input: &HookInput) -> Result<HookOutput, PluginError> {
        let plugin = PluginRef { name: &self.name, sha256: &self.sha256, source: &self.source };
        let report = self.worker.call(plugin, &self.limits, input);
        let most = self.fuel.entry(input.hook.as_str()).or_default();
        *most = (*most).max(report.stats.fuel);
        report.result
    }
}

/// A world whose only plugin is one example, with the default core parameters.
struct World {
    spec: GenSpec,
    sandbox: Sandbox,
}

impl World {
    fn new(file: &str, seed: u64, params: Json) -> World {
        let source = std::fs::read_to_string(examples_dir().join(file)).expect("reading the example");
        let name = file.trim_end_matches(".py").to_owned();
        let sha256 = worldloom_cluster::storage::source_sha256(&source);
        let limits = Limits::default();
        let mut worker = worldloom_tests::supervisor().worker();
        let loaded = worker.load(PluginRef { name: &name, sha256: &sha256, source: &source }, &limits);
        let (info, warnings) = loaded.result.unwrap_or_else(|e| panic!("{file} does not load: {e:?}\n{}", loaded.log));
        assert!(warnings.is_empty(), "{file}: {warnings:?}");
        let plugin = AttachedPlugin {
            name: name.clone(),
            version: "1.0.0".into(),
            sha256: sha256.clone(),
            runtime: RuntimeKind::Python,
            params: BTreeMap::new(),
        };
        let spec = GenSpec {
            world: WorldId::random(),
            revision: 0,
            seed,
            params: Params::default(),
            plugins: vec![plugin],
            limits,
        };
        let sandbox = Sandbox { worker, name, sha256, source, info, limits, fuel: BTreeMap::new() };
        let mut world = World { spec, sandbox };
        world.set_params(params);
        world
    }

    /// Sets the world's values for the plugin's PARAMS (the rest default), as
    /// attaching it with these values would.
    fn set_params(&mut self, params: Json) {
        let given: BTreeMap<String, Value> = serde_json::from_value(params).expect("params");
        self.spec.plugins[0].params = worldloom_plugin_abi::params::resolve(&self.sandbox.info.params, &given)
            .unwrap_or_else(|p| panic!("{}: {}", p.name, p.message));
    }

    fn param(&self, name: &str) -> f64 {
        self.spec.plugins[0].params[name].as_f64().expect("a number")
    }

    /// The chunk with the plugin, as a server would serve it; no hook may fail.
    fn chunk(&mut self, cx: i32, cz: i32) -> Chunk {
        let record = pipeline::generate(&self.spec, ChunkCoord::new(cx, cz), &mut self.sandbox);
        assert!(record.plugin_failures.is_empty(), "({cx}, {cz}): {:?}", record.plugin_failures);
        record.chunk
    }

    /// The core-only chunk at the same coordinates.
    fn core(&self, cx: i32, cz: i32) -> Chunk {
        generate_chunk(self.spec.seed, &self.spec.params, ChunkCoord::new(cx, cz))
    }

    /// Prints the most fuel a call of each hook used, and checks it is well
    /// inside the default budget (examples are meant to be cheap).
    fn report_fuel(&self) {
        let budget = Limits::default().fuel;
        eprintln!("{}: most fuel per call {:?} (budget {budget})", self.sandbox.name, self.sandbox.fuel);
        assert!(!self.sandbox.fuel.is_empty());
        for (hook, fuel) in &self.sandbox.fuel {
            assert!(
                *fuel < budget / 10,
                "{} {hook} used {fuel} fuel, more than a tenth of the budget",
                self.sandbox.name
            );
        }
    }
}

fn is_water(b: u16) -> bool {
    b == ids::OCEAN || b == ids::DEEP_OCEAN
}

#[test]
fn every_example_passes_plugin_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/plugins")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let out = Command::new(binary())
            .args(["plugin", "check", "--json"])
            .arg(file)
            .env("WORLDLOOM_RUNTIME_DIR", worldloom_dir().join("runtime/python"))
            .env("WORLDLOOM_CACHE_DIR", worldloom_dir().join("cache"))
            .output()
            .expect("running worldloom plugin check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}{}", file.display(), String::from_utf8_lossy(&out.stderr));
        let report: Json = serde_json::from_str(stdout.trim()).expect("one JSON object");
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["warnings"], json!([]), "{report}");
        assert_eq!(report["log"], "", "an example prints nothing while loading: {report}");
        assert!(!report["hooks"].as_array().unwrap().is_empty(), "{report}");
        for (name, decl) in report["params"].as_object().unwrap() {
            assert!(
                !decl["doc"].as_str().unwrap_or_default().is_empty(),
                "{}: PARAMS[{name}] has no doc",
                file.display()
            );
        }
        // Every example explains itself in a module docstring.
        let source = std::fs::read_to_string(file).unwrap();
        assert!(source.starts_with("\"\"\""), "{} has no module docstring", file.display());
    }
}

#[test]
fn terraces_put_every_column_on_a_step_of_its_core_height() {
    let mut w = World::new("terraces.py", 42, json!({"step": 50, "sharpness": 1}));
    for (cx, cz) in [(0, 0), (5, -3), (-9, 14)] {
        let core = w.core(cx, cz);
        let got = w.chunk(cx, cz);
        for i in 0..N * N {
            let (c, h) = (f64::from(core.layers.height[i]), f64::from(got.layers.height[i]));
            let want = (c / 50.0).floor() * 50.0;
            assert!((h - want).abs() < 1e-3, "({cx}, {cz}) column {i}: {h} is not the step {want} below {c}");
            assert_eq!(h >= 0.0, c >= 0.0, "the coast never moves");
        }
        let distinct = |v: &[f32]| v.iter().map(|h| h.to_bits()).collect::<std::collections::BTreeSet<_>>().len();
        let (lo, hi) = core.layers.height.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(distinct(&got.layers.height) <= ((hi - lo) / 50.0) as usize + 2);
        assert!(distinct(&got.layers.height) < distinct(&core.layers.height));
    }

    // The default: flat treads for the lower 80% of each 40 m step, then a riser.
    w.set_params(json!({}));
    let (step, sharp) = (w.param("step"), w.param("sharpness"));
    let (mut on_tread, mut core_on_tread, mut total) = (0, 0, 0);
    for (cx, cz) in [(0, 0), (5, -3)] {
        let core = w.core(cx, cz);
        let got = w.chunk(cx, cz);
        for i in 0..N * N {
            let (c, h) = (f64::from(core.layers.height[i]), f64::from(got.layers.height[i]));
            let base = (c / step).floor() * step;
            assert!(h >= base - 1e-3 && h < base + step, "{h} leaves the step of {c}");
            let on_step = |v: f64| (v / step - (v / step).round()).abs() < 1e-5;
            if c - base < sharp * step {
                assert!((h - base).abs() < 1e-3, "{c} is on the tread {base}, got {h}");
            }
            on_tread += usize::from(on_step(h));
            core_on_tread += usize::from(on_step(c));
            total += 1;
        }
    }
    assert!(on_tread as f64 > 0.6 * total as f64, "{on_tread} of {total} columns on a tread");
    assert!(core_on_tread < on_tread / 4);

    // In a world whose sea level is 120 m the steps are counted from there
    // (`ctx.sea_level`), so that coast does not move either.
    w.spec.params.sea_level = 120.0;
    w.set_params(json!({"step": 50, "sharpness": 1}));
    let (mut above, mut below) = (0, 0);
    for (cx, cz) in [(0, 0), (5, -3), (-9, 14)] {
        let core = w.core(cx, cz);
        let got = w.chunk(cx, cz);
        for i in 0..N * N {
            let (c, h) = (f64::from(core.layers.height[i]), f64::from(got.layers.height[i]));
            let want = ((c - 120.0) / 50.0).floor() * 50.0 + 120.0;
            assert!((h - want).abs() < 1e-3, "({cx}, {cz}) column {i}: {h} is not the step {want} below {c}");
            assert_eq!(h >= 120.0, c >= 120.0, "the world's coast never moves");
            if c >= 120.0 { above += 1 } else { below += 1 }
        }
    }
    assert!(above > 0 && below > 0, "both sides of the coast were tried: {above} above, {below} below");
    w.report_fuel();
}

#[test]
fn island_keeps_land_near_the_origin_and_sinks_the_far_sea() {
    let mut w = World::new("island.py", 7, json!({"radius": 1500, "coast": 300, "wobble": 0.2}));
    // The coast is at most radius * (1 + wobble * 1.5) + coast / 2 from the
    // origin (the noise stays within 1.5); inside radius * (1 - 1.5 * wobble)
    // - coast / 2 every column is land.
    let outer = 1500.0 * 1.3 + 150.0;
    let inner = 1500.0 * 0.7 - 150.0;
    let land = |c: &Chunk| c.layers.height.iter().any(|h| *h > 0.0);
    let sea = |c: &Chunk| c.layers.height.iter().any(|h| *h < 0.0);
    let dist = |cx: i32, cz: i32| {
        let corner = |v: i32| (f64::from(v) * N as f64).abs().max((f64::from(v + 1) * N as f64).abs());
        (corner(cx).powi(2) + corner(cz).powi(2)).sqrt()
    };
    let near_dist = |cx: i32, cz: i32| {
        let nearest = |v: i32| if v >= 0 { f64::from(v) * N as f64 } else { f64::from(-v - 1) * N as f64 };
        (nearest(cx).powi(2) + nearest(cz).powi(2)).sqrt()
    };

    // Far out at sea: a chunk where the core has land becomes sea floor.
    let far = (0..64)
        .map(|k| {
            let a = f64::from(k) * std::f64::consts::TAU / 64.0;
            ((90.0 * a.cos()) as i32, (90.0 * a.sin()) as i32)
        })
        .find(|&(cx, cz)| near_dist(cx, cz) > outer && land(&w.core(cx, cz)))
        .expect("a far chunk where the core has land");
    let got = w.chunk(far.0, far.1);
    assert!(got.layers.height.iter().all(|h| *h < 0.0), "{far:?} is all below sea level");
    assert!(got.layers.biome.iter().all(|b| is_water(*b)), "{far:?} is all ocean");

    // Near the origin: a chunk where the core has sea (if there is one) is land.
    let mut near: Vec<(i32, i32)> = (-24..24).flat_map(|cx| (-24..24).map(move |cz| (cx, cz))).collect();
    near.retain(|&(cx, cz)| dist(cx, cz) < inner);
    let wet = near.iter().copied().find(|&(cx, cz)| sea(&w.core(cx, cz))).unwrap_or((0, 0));
    for (cx, cz) in [(0, 0), wet] {
        let got = w.chunk(cx, cz);
        assert!(got.layers.height.iter().all(|h| *h > 0.0), "({cx}, {cz}) is all land");
        assert!(!got.layers.biome.iter().any(|b| is_water(*b)), "({cx}, {cz}) has no ocean");
    }
    w.report_fuel();
}

/// `core - plugin` for a chunk: how far the plugin lowered each column.
fn lowered(core: &Chunk, got: &Chunk) -> Vec<f64> {
    (0..N * N).map(|i| f64::from(core.layers.height[i]) - f64::from(got.layers.height[i])).collect()
}

#[test]
fn rivers_cut_water_channels_that_run_across_chunk_borders() {
    let mut w = World::new("rivers.py", 42, json!({"spacing": 160}));
    let depth = w.param("depth");
    let width = w.param("width");
    // A 3 x 2 block of chunks that is all land well above the sea in the
    // core, so the rivers cut to their full depth there.
    let core_gen = Generator::new(42, &Params::default());
    let (w_chunks, h_chunks): (i32, i32) = (3, 2);
    let high = |cx: i32, cz: i32| {
        (0..w_chunks).all(|dx| {
            (0..h_chunks).all(|dz| {
                let t = core_gen.terrain(ChunkCoord::new(cx + dx, cz + dz));
                t.layers.height.iter().all(|h| f64::from(*h) > 2.0 * depth)
            })
        })
    };
    let (bx, bz) = (-30..30)
        .flat_map(|cx| (-30..30).map(move |cz| (cx * 5, cz * 5)))
        .find(|&(cx, cz)| high(cx, cz))
        .expect("a block of high land");
    let mut block = BTreeMap::new();
    for dx in 0..w_chunks {
        for dz in 0..h_chunks {
            let (cx, cz) = (bx + dx, bz + dz);
            let core = w.core(cx, cz);
            assert!(core.layers.height.iter().all(|h| f64::from(*h) > depth), "({cx}, {cz}) is high land");
            let got = w.chunk(cx, cz);
            block.insert((dx, dz), (lowered(&core, &got), core, got));
        }
    }

    let mut deepest: f64 = 0.0;
    let (mut untouched, mut water) = (0, 0);
    for (cut, core, got) in block.values() {
        for (i, &c) in cut.iter().enumerate() {
            assert!((-1e-3..=depth + 1e-3).contains(&c), "a river lowers by 0..depth, not {c}");
            deepest = deepest.max(c);
            untouched += usize::from(c.abs() < 1e-3);
            if got.layers.biome[i] == ids::OCEAN && !is_water(core.layers.biome[i]) {
                water += 1;
                assert!(c > 0.5 * depth, "water only in the channel, where the cut is deep ({c})");
            }
        }
    }
    assert!(deepest > 0.9 * depth, "a river runs through the block (deepest cut {deepest})");
    assert!(untouched > 0, "rivers are channels, not the whole land");
    assert!(water >= width as usize, "the channel is water ({water} columns)");

    // Seams: across a chunk border the cut continues as smoothly as it does
    // inside a chunk (first and second differences are no larger).
    let cut = |dx: i32, dz: i32, x: usize, z: usize| block[&(dx, dz)].0[at(x, z)];
    let (mut inside1, mut inside2): (f64, f64) = (0.0, 0.0);
    for c in block.values() {
        for x in 0..N - 2 {
            for z in 0..N {
                let (a, b, d) = (c.0[at(x, z)], c.0[at(x + 1, z)], c.0[at(x + 2, z)]);
                let (e, f, g) = (c.0[at(z, x)], c.0[at(z, x + 1)], c.0[at(z, x + 2)]);
                inside1 = inside1.max((b - a).abs()).max((f - e).abs());
                inside2 = inside2.max((d - 2.0 * b + a).abs()).max((g - 2.0 * f + e).abs());
            }
        }
    }
    let (mut seam1, mut seam2): (f64, f64) = (0.0, 0.0);
    for dz in 0..h_chunks {
        for z in 0..N {
            for dx in 0..w_chunks - 1 {
                let (a, b, c, d) =
                    (cut(dx, dz, N - 2, z), cut(dx, dz, N - 1, z), cut(dx + 1, dz, 0, z), cut(dx + 1, dz, 1, z));
                seam1 = seam1.max((c - b).abs());
                seam2 = seam2.max((c - 2.0 * b + a).abs()).max((d - 2.0 * c + b).abs());
            }
        }
    }
    for dx in 0..w_chunks {
        for x in 0..N {
            let (a, b, c, d) = (cut(dx, 0, x, N - 2), cut(dx, 0, x, N - 1), cut(dx, 1, x, 0), cut(dx, 1, x, 1));
            seam1 = seam1.max((c - b).abs());
            seam2 = seam2.max((c - 2.0 * b + a).abs()).max((d - 2.0 * c + b).abs());
        }
    }
    assert!(seam1 <= inside1 + 1e-3, "a step of {seam1} m at a seam; inside chunks at most {inside1}");
    assert!(seam2 <= inside2 + 1e-3, "a kink of {seam2} m at a seam; inside chunks at most {inside2}");

    // The same world, the same river.
    let again = w.chunk(bx, bz);
    assert!(again == block[&(0, 0)].2, "a second generation differs");
    w.report_fuel();
}

#[test]
fn volcano_raises_a_cone_with_a_crater_around_its_feature() {
    // Every cell has a volcano at its centre: cell (0, 0) of 768 columns has
    // it at column (384, 384), which is column (0, 0) of chunk (12, 12).
    let mut w = World::new("volcano.py", 42, json!({"chance": 1, "jitter": 0}));
    let (spacing, radius, height) = (w.param("spacing"), w.param("radius"), w.param("height"));
    let (crater, crater_depth) = (w.param("crater"), w.param("crater_depth"));
    let centre = (spacing / 2.0) as i64;
    let (ccx, ccz) = ((centre / N as i64) as i32, (centre / N as i64) as i32);
    assert_eq!((centre % N as i64, (ccx, ccz)), (0, (12, 12)), "the test's geometry");

    // The chunks around the centre, and how much each column rose.
    let mut rise = BTreeMap::new();
    let mut volcanoes = Vec::new();
    // The 3 x 3 chunks around the centre, and two out along x over the
    // cone's foot (at `radius`) and beyond it.
    let mut around: Vec<(i32, i32)> =
        (ccx - 1..=ccx + 1).flat_map(|cx| (ccz - 1..=ccz + 1).map(move |cz| (cx, cz))).collect();
    around.extend([(ccx + 3, ccz), (ccx + 4, ccz)]);
    assert!(radius > 3.0 * N as f64 && radius < 4.0 * N as f64, "the test's geometry");
    for (cx, cz) in around {
        {
            let core = w.core(cx, cz);
            let got = w.chunk(cx, cz);
            let (x0, z0) = (i64::from(cx) * N as i64, i64::from(cz) * N as i64);
            for x in 0..N {
                for z in 0..N {
                    let up = f64::from(got.layers.height[at(x, z)]) - f64::from(core.layers.height[at(x, z)]);
                    rise.insert((x0 + x as i64, z0 + z as i64), up);
                    let s =
                        (((x0 + x as i64 - centre).pow(2) + (z0 + z as i64 - centre).pow(2)) as f64).sqrt() / radius;
                    if s < 0.5 && got.layers.height[at(x, z)] > 0.0 {
                        let b = got.layers.biome[at(x, z)];
                        assert!(b == ids::MOUNTAINS || b == ids::SNOWY_PEAKS, "bare rock high on the cone, not {b}");
                    }
                }
            }
            for f in got.features.iter().filter(|f| f.kind == "volcano" || f.kind == "fumarole") {
                volcanoes.push((cx, cz, f.clone()));
            }
        }
    }
    let main: Vec<_> = volcanoes.iter().filter(|v| v.2.kind == "volcano").collect();
    assert_eq!(main.len(), 1, "one volcano, in the chunk of its centre: {volcanoes:?}");
    let (cx, cz, f) = main[0];
    assert_eq!((*cx, *cz, f.x, f.z), (ccx, ccz, 0, 0), "{f:?}");
    assert_eq!(f.properties["height_m"], Value::Float(height));
    for (_, _, fum) in volcanoes.iter().filter(|v| v.2.kind == "fumarole") {
        assert!(f64::from(fum.x).hypot(f64::from(fum.z)) <= radius * crater + 1.0, "a fumarole in the crater: {fum:?}");
    }

    // The cone: the rim is `height` above the core, the crater floor
    // `crater_depth` below the rim, the foot back at the core's height, and
    // the rise depends only on the distance from the centre.
    let r = |dx: i64, dz: i64| rise[&(centre + dx, centre + dz)];
    let rim = (radius * crater).round() as i64;
    assert!((r(0, 0) - (height - crater_depth)).abs() < 1.0, "crater floor rises {}", r(0, 0));
    assert!((r(rim, 0) - height).abs() < height * 0.02, "the rim rises {}", r(rim, 0));
    for d in [5, rim, 30] {
        for (a, b) in [((d, 0), (0, d)), ((d, 0), (-d, 0)), ((d, 0), (0, -d))] {
            assert!((r(a.0, a.1) - r(b.0, b.1)).abs() < 0.01, "the cone is round at distance {d}");
        }
    }
    for d in rim..N as i64 + 16 {
        assert!(r(d + 1, 0) < r(d, 0), "the slope falls away from the rim at {d}");
    }
    let foot = |(x, z): &(i64, i64)| (((x - centre).pow(2) + (z - centre).pow(2)) as f64).sqrt() > radius;
    assert!(rise.iter().filter(|(k, _)| foot(k)).all(|(_, v)| v.abs() < 1e-3), "nothing changes beyond the foot");
    assert!(rise.values().all(|v| *v > -1e-3), "a volcano only raises the ground");
    w.report_fuel();
}

/// The steepest drop from each column to any of its 8 neighbours, in metres
/// per column, over the columns at least `margin` from the chunk's border.
fn max_slope(h: &[f32], margin: usize) -> f64 {
    let mut most: f64 = 0.0;
    for x in margin..N - margin {
        for z in margin..N - margin {
            for (dx, dz) in [(1, 0), (0, 1), (1, 1), (1, -1)] {
                let (nx, nz) = (x as i64 + dx, z as i64 + dz);
                if nx < margin as i64 || nz < margin as i64 || nx >= (N - margin) as i64 || nz >= (N - margin) as i64 {
                    continue;
                }
                let d = (f64::from(h[at(x, z)]) - f64::from(h[at(nx as usize, nz as usize)])).abs();
                most = most.max(d / ((dx * dx + dz * dz) as f64).sqrt());
            }
        }
    }
    most
}

#[test]
fn erosion_wears_down_steep_slopes_and_keeps_chunk_borders() {
    let mut w = World::new("erosion.py", 42, json!({}));
    let (talus, fade) = (w.param("talus"), w.param("fade") as usize);
    // The steepest of a few chunks in the core.
    let (cx, cz) = (-6..6)
        .flat_map(|cx| (-3..3).map(move |cz| (cx * 7, cz * 11)))
        .max_by(|a, b| {
            let s = |c: &(i32, i32)| max_slope(&w.core(c.0, c.1).layers.height, 0);
            s(a).total_cmp(&s(b))
        })
        .unwrap();
    let core = w.core(cx, cz);
    assert!(max_slope(&core.layers.height, fade) > 2.0 * talus, "a steep chunk to erode");
    let got = w.chunk(cx, cz);
    let (h, c) = (&got.layers.height, &core.layers.height);
    // The border ring is the core's, so chunks meet without a step.
    for i in 0..N {
        for j in [at(i, 0), at(i, N - 1), at(0, i), at(N - 1, i)] {
            assert_eq!(h[j].to_bits(), c[j].to_bits(), "border column {j}");
        }
    }
    assert!(h != c, "the chunk changed");
    // Steep slopes are worn down; nothing rises above the old peaks or sinks below the old floor.
    let (before, after) = (max_slope(c, fade), max_slope(h, fade));
    assert!(after < 0.8 * before, "steepest slope {before} -> {after}");
    let (lo, hi) = c.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    assert!(h.iter().all(|v| *v >= lo - 1e-3 && *v <= hi + 1e-3));
    // Material moves downhill: the highest columns lose height, the lowest gain.
    let mut order: Vec<usize> = (0..N * N).collect();
    order.sort_by(|a, b| c[*a].total_cmp(&c[*b]));
    let change = |i: &usize| f64::from(h[*i]) - f64::from(c[*i]);
    let low: f64 = order[..N * N / 10].iter().map(change).sum();
    let high: f64 = order[N * N * 9 / 10..].iter().map(change).sum();
    assert!(high < 0.0 && low > high, "highest tenth {high}, lowest tenth {low}");
    w.report_fuel();
}
