//! Well-behaved plugins, load-time checks, PARAMS, `check`, and
//! determinism (across calls, sandboxes, reset strategies and processes).

mod common;

use std::collections::BTreeMap;

use common::*;
use worldloom_plugin_abi::{BiomeOutput, ErrorKind, FeatureOut, HookInput, HookName, HookOutput, ParamDecl, Value};
use worldloom_sandbox::{Engine, ResetStrategy, SandboxConfig, SandboxErrorKind};

// ------------------------------------------------------------ hooks

#[test]
fn identity_terrain_returns_the_chunk_unchanged() {
    let mut s = load("identity.py");
    assert_eq!(s.info().hooks, vec![HookName::Terrain]);
    let inp = input(HookName::Terrain);
    for _ in 0..3 {
        let r = s.call(&inp);
        assert_eq!(heights(&r), &inp.layers.height[..]);
        assert_eq!(r.log, "");
        assert!(r.stats.fuel > 0 && r.stats.memory_bytes > 0, "{:?}", r.stats);
    }
}

/// Layers are built when a hook first uses them (issue 10): each is still a
/// fresh, writable copy of the input with its dtype, in every call; a chunk
/// returned with its height untouched gives the input height; whatever the
/// plugin does to the harness's chunk, the host validates what comes back.
#[test]
fn lazily_built_layers_are_fresh_copies_and_what_comes_back_is_still_validated() {
    let mut s = load("lazy_layers.py");
    let base = input(HookName::Terrain);
    let l = &base.layers;
    let want: Vec<f32> = (0..l.height.len())
        .map(|i| l.height[i] + l.temperature[i] * 10.0 + l.moisture[i] * 100.0 + f32::from(l.biome[i]) * 1000.0)
        .collect();
    for _ in 0..3 {
        let r = s.call(&with_mode(base.clone(), "combine"));
        for (i, (a, b)) in heights(&r).iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-2, "height[{i}]: {a} vs {b}");
        }
    }
    let r = s.call(&with_mode(base.clone(), "in_place"));
    assert_eq!(heights(&r)[0], 12345.0);
    assert_eq!(&heights(&r)[1..], &l.height[1..]);
    // Deleting the layer brings back the input; the next call is fresh again.
    assert_eq!(heights(&s.call(&with_mode(base.clone(), "deleted"))), &l.height[..]);
    let r = s.call(&with_mode(base.clone(), "replaced"));
    assert!(heights(&r).iter().all(|&v| v == -2.5));
    assert_eq!(heights(&s.call(&with_mode(base.clone(), "untouched"))), &l.height[..]);
    // Forged bytes behind the untouched layer: the host rejects the NaNs.
    let r = s.call(&with_mode(base.clone(), "forged_input"));
    let e = expect_kind(&r, ErrorKind::InvalidOutput);
    assert!(e.message.contains("height[0][0] is NaN"), "{e}");
    let mut b = with_mode(input(HookName::Biome), "forged_input");
    b.hook = HookName::Biome;
    let r = s.call(&b);
    let e = expect_kind(&r, ErrorKind::InvalidOutput);
    assert!(e.message.contains("biome[0][0] is 65535"), "{e}");
    // A plugin replacing the class's layer gets what it asked for.
    assert!(heights(&s.call(&with_mode(base.clone(), "forged_class"))).iter().all(|&v| v == 7.0));
    // And none of it stays: the chunk class and its input are fresh.
    assert_eq!(heights(&s.call(&with_mode(base.clone(), "untouched"))), &l.height[..]);
    assert_eq!(heights(&s.call(&with_mode(base.clone(), "in_place")))[1..], l.height[1..]);
}

/// The eager call path the benchmark keeps for its before/after comparison
/// gives the same results and logs as the current one.
#[test]
fn the_eager_harness_path_gives_the_same_results_as_the_lazy_one() {
    let cases: [(&str, HookName, Option<&str>); 7] = [
        ("identity.py", HookName::Terrain, None),
        ("terrain_smooth.py", HookName::Terrain, None),
        ("params_demo.py", HookName::Terrain, None),
        ("biome_where.py", HookName::Biome, None),
        ("features_trees.py", HookName::Features, None),
        ("all_hooks.py", HookName::Biome, None),
        ("lazy_layers.py", HookName::Terrain, Some("combine")),
    ];
    for (name, hook, mode) in cases {
        let mut lazy = load(name);
        let mut eager = load(name);
        eager.use_eager_harness(true);
        let mut inp = input(hook);
        if let Some(m) = mode {
            inp = with_mode(inp, m);
        }
        for _ in 0..2 {
            let (a, b) = (lazy.call(&inp), eager.call(&inp));
            assert_eq!(a.result, b.result, "{name} {mode:?}");
            assert_eq!(a.log, b.log, "{name} {mode:?}");
        }
    }
}

#[test]
fn numpy_smoothing_terrain_matches_a_host_computation() {
    let mut s = load("terrain_smooth.py");
    let mut inp = input(HookName::Terrain);
    inp.params.insert("passes".into(), Value::Int(1));
    let r = s.call(&inp);
    let h = heights(&r);
    let n = SIZE as usize;
    let src = &inp.layers.height;
    let at = |x: isize, z: isize| {
        let c = |v: isize| v.clamp(0, n as isize - 1) as usize;
        f64::from(src[c(x) * n + c(z)])
    };
    for x in 0..n {
        for z in 0..n {
            let mut acc = 0.0;
            for dx in -1..=1 {
                for dz in -1..=1 {
                    acc += at(x as isize + dx, z as isize + dz);
                }
            }
            let want = (acc / 9.0) as f32;
            assert!((h[x * n + z] - want).abs() < 1e-3, "[{x}][{z}] {} vs {want}", h[x * n + z]);
        }
    }
    inp.params.insert("passes".into(), Value::Int(0));
    assert_eq!(heights(&s.call(&inp)), &inp.layers.height[..]);
}

#[test]
fn scipy_and_pandas_import_at_load_within_the_default_load_budget() {
    let mut s = load("load_scipy_pandas.py");
    let inp = input(HookName::Terrain);
    let r = s.call(&inp);
    let h = heights(&r);
    assert_ne!(h, &inp.layers.height[..], "gaussian_filter changed the terrain");
    let (lo, hi) = inp.layers.height.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    assert!(h.iter().all(|v| (lo - 1e-3..=hi + 1e-3).contains(v)), "smoothing stays within the input's range");
    assert!(r.stats.fuel < worldloom_plugin_abi::Limits::default().fuel, "a call is far below the per-call budget");
}

#[test]
fn biome_hook_with_np_where() {
    let mut s = load("biome_where.py");
    let inp = input(HookName::Biome);
    let r = s.call(&inp);
    let HookOutput::Biome(BiomeOutput { biome }) = r.result.clone().unwrap() else { panic!("{:?}", r.result) };
    for (i, (&b, (&h, &m))) in biome.iter().zip(inp.layers.height.iter().zip(&inp.layers.moisture)).enumerate() {
        let want = if h < 0.0 {
            0
        } else if h > 100.0 {
            3
        } else if m > 0.5 {
            2
        } else {
            1
        };
        assert_eq!(b, want, "cell {i}");
    }
}

#[test]
fn features_hook_with_ctx_random_is_deterministic_per_chunk() {
    let mut s = load("features_trees.py");
    let inp = input(HookName::Features);
    let a = s.call(&inp);
    let Ok(HookOutput::Features(fa)) = &a.result else { panic!("{:?}", a.result) };
    assert!(fa.iter().any(|f| f.kind == "oak_tree"), "{fa:?}");
    assert_eq!(
        fa.last(),
        Some(&FeatureOut {
            x: 0,
            z: 0,
            kind: "rock".into(),
            properties: BTreeMap::from([
                ("label".into(), Value::Str("corner".into())),
                ("weight".into(), Value::Int(3))
            ]),
        })
    );
    for f in fa.iter().filter(|f| f.kind == "oak_tree") {
        assert!(matches!(f.properties["height"], Value::Float(h) if (4.0..=9.0).contains(&h)));
        assert!(matches!(f.properties["mossy"], Value::Bool(_)));
    }
    let again = s.call(&inp);
    assert_eq!((&again.result, &again.log, again.stats.fuel), (&a.result, &a.log, a.stats.fuel));
    let mut other = inp.clone();
    other.random_seed += 1;
    assert_ne!(s.call(&other).result, a.result, "a different seed should scatter differently");
}

#[test]
fn params_are_declared_and_used() {
    let mut s = load("params_demo.py");
    let p = &s.info().params;
    assert_eq!(
        p["scale"],
        ParamDecl { default: Value::Float(1.5), min: Some(0.0), max: Some(10.0), doc: "height multiplier".into() }
    );
    assert_eq!(p["offset"].default, Value::Int(2));
    assert_eq!(
        p["enabled"],
        ParamDecl { default: Value::Bool(true), min: None, max: None, doc: "turn the plugin off".into() }
    );
    assert_eq!(p["label"].default, Value::Str("hills".into()));
    let mut inp = input(HookName::Terrain);
    for (k, d) in p {
        inp.params.insert(k.clone(), d.default.clone());
    }
    inp.params.insert("scale".into(), Value::Float(2.0));
    let r = s.call(&inp);
    let want: Vec<f32> = inp.layers.height.iter().map(|h| h * 2.0 + 2.0).collect();
    assert_eq!(heights(&r), &want[..]);
    assert_eq!(r.log, "label: hills\n");
    inp.params.insert("enabled".into(), Value::Bool(false));
    assert_eq!(heights(&s.call(&inp)), &inp.layers.height[..]);
}

#[test]
fn all_three_hooks_and_a_missing_hook() {
    let mut s = load("all_hooks.py");
    assert_eq!(s.info().hooks, vec![HookName::Terrain, HookName::Biome, HookName::Features]);
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    let t = input(HookName::Terrain);
    let want: Vec<f32> = t.layers.height.iter().map(|h| h + 1.0).collect();
    assert_eq!(heights(&s.call(&t)), &want[..]);
    let r = s.call(&input(HookName::Biome));
    assert_eq!(r.result, Ok(HookOutput::Biome(BiomeOutput { biome: vec![2; (SIZE * SIZE) as usize] })));
    let r = s.call(&HookInput { sea_level: -123.25, ..input(HookName::Features) });
    let Ok(HookOutput::Features(f)) = &r.result else { panic!("{:?}", r.result) };
    assert_eq!(f[0].properties["cx"], Value::Int(3));
    assert_eq!(f[0].properties["cz"], Value::Int(-7));
    assert_eq!(f[0].properties["sea"], Value::Float(-123.25), "ctx.sea_level is the world's");
    let mut id = load("identity.py");
    let r = id.call(&input(HookName::Biome));
    assert_eq!(expect_kind(&r, ErrorKind::MissingHook).message, "the plugin does not define biome(ctx, chunk)");
}

// ------------------------------------------------------------ load-time failures and check

#[test]
fn a_syntax_error_reports_its_line() {
    let (e, _, _) = load_failure(engine(), "load_syntax_error.py");
    assert_eq!(e.kind, ErrorKind::Syntax, "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("SyntaxError"), "{e}");
}

#[test]
fn a_plugin_without_hooks_is_missing_hook_with_a_hint() {
    let (e, _, _) = load_failure(engine(), "load_no_hooks.py");
    assert_eq!(e.kind, ErrorKind::MissingHook, "{e}");
    assert!(e.message.contains("did you mean terrain?"), "{e}");
}

#[test]
fn invalid_params_are_refused() {
    let (e, _, _) = load_failure(engine(), "load_bad_params.py");
    assert_eq!(e.kind, ErrorKind::InvalidOutput, "{e}");
    assert_eq!(e.message, "PARAMS['scale'] default 5.0 is outside [0.0, 1.0]");
}

#[test]
fn a_hook_that_is_not_a_function_is_refused() {
    let (e, _, _) = load_failure(engine(), "load_hook_not_callable.py");
    assert_eq!(e.kind, ErrorKind::InvalidOutput, "{e}");
    assert_eq!(e.message, "biome is defined but is not a function (it is a int)");
}

#[test]
fn a_hook_with_the_wrong_arity_is_refused() {
    let (e, _, _) = load_failure(engine(), "load_hook_wrong_arity.py");
    assert_eq!(e.kind, ErrorKind::InvalidOutput, "{e}");
    assert_eq!(e.message, "terrain must take two arguments (ctx, chunk), but its signature is terrain(chunk)");
}

#[test]
fn an_exception_at_load_reports_type_message_and_line() {
    let (e, _, _) = load_failure(engine(), "load_exception.py");
    assert_eq!(e.kind, ErrorKind::Exception, "{e}");
    assert_eq!(e.line, Some(7));
    assert!(e.message.contains("ValueError: expected a nonnegative input"), "{e}");
    assert!(e.message.contains("line 7, in <module>"), "{e}");
}

#[test]
fn check_reports_info_warnings_and_errors() {
    let ok = engine().check("all_hooks", &fixture("all_hooks.py"));
    assert_eq!(ok.error, None);
    assert_eq!(ok.host_error, None);
    assert_eq!(ok.info.unwrap().hooks.len(), 3);
    assert!(ok.warnings.is_empty());
    let typo = engine().check("typo", &fixture("warnings_typo.py"));
    assert_eq!(typo.error, None);
    assert_eq!(typo.info.unwrap().hooks, vec![HookName::Terrain]);
    assert_eq!(
        typo.warnings,
        vec![
            "'params' is ignored; did you mean PARAMS?".to_string(),
            "function 'biom' is not a hook; did you mean biome?".to_string()
        ]
    );
    assert!(typo.stats.fuel > 0 && typo.stats.wall_us > 0, "{:?}", typo.stats);
    let bad = engine().check("syntax", &fixture("load_syntax_error.py"));
    assert_eq!(bad.info, None);
    assert_eq!(bad.error.unwrap().kind, ErrorKind::Syntax);
    let huge = engine().check("huge", &"#".repeat(2 << 20));
    assert_eq!(huge.error.unwrap().kind, ErrorKind::Syntax);
}

#[test]
fn missing_artifacts_name_the_file_and_the_fetch_script() {
    let dir = std::env::temp_dir().join(format!("worldloom-sandbox-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = Engine::load(&SandboxConfig::new(&dir, dir.join("cache"))).unwrap_err();
    assert_eq!(e.kind, SandboxErrorKind::ArtifactMissing);
    assert!(e.context.contains("python-snapshot.wasm") && e.context.contains("scripts/fetch-runtime"), "{e}");
    // A corrupt stdlib zip is named too.
    std::fs::write(dir.join("python-snapshot.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.join("python-stdlib.zip"), b"PK not really").unwrap();
    let e = Engine::load(&SandboxConfig::new(&dir, dir.join("cache"))).unwrap_err();
    assert_eq!(e.kind, SandboxErrorKind::ArtifactCorrupt);
    assert!(e.context.contains("python-stdlib.zip") && e.context.contains("scripts/fetch-runtime"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_host_input_is_a_host_error_not_a_plugin_failure() {
    let mut s = load("identity.py");
    let mut inp = input(HookName::Terrain);
    inp.layers.height.pop();
    let e = s.try_call(&inp).unwrap_err();
    assert_eq!(e.kind, SandboxErrorKind::InvalidInput);
    assert!(e.context.contains("layer height has 1023 values, expected 1024"), "{e}");
    let inp = input(HookName::Terrain);
    assert_eq!(heights(&s.call(&inp)), &inp.layers.height[..]);
}

// ------------------------------------------------------------ determinism

fn probe_outputs(strategy: ResetStrategy) -> Vec<worldloom_sandbox::CallReport> {
    let mut s = load_with(engine(), "determinism_probe.py", strategy);
    let inp = input(HookName::Terrain);
    let mut other = inp.clone();
    other.random_seed = 99;
    vec![s.call(&inp), s.call(&inp), s.call(&other), s.call(&inp)]
}

#[test]
fn same_input_gives_identical_output_and_log_across_calls_sandboxes_and_strategies() {
    let overlay = probe_outputs(ResetStrategy::Overlay);
    assert!(overlay[0].result.is_ok(), "{:?}", overlay[0].result);
    assert_eq!(overlay[0].result, overlay[1].result);
    assert_eq!(overlay[0].log, overlay[1].log);
    assert_eq!(overlay[0].result, overlay[3].result);
    assert_eq!(overlay[0].log, overlay[3].log);
    assert_eq!(overlay[0].stats.fuel, overlay[3].stats.fuel);
    // A different random_seed changes the seeded sources.
    assert_ne!(overlay[0].log, overlay[2].log);
    for strategy in [
        ResetStrategy::OverlayReprotect,
        ResetStrategy::OverlayDiscard,
        ResetStrategy::FullCopy,
        ResetStrategy::FreshInstance,
    ] {
        let other = probe_outputs(strategy);
        for (a, b) in overlay.iter().zip(&other) {
            assert_eq!(a.result, b.result, "{strategy:?}");
            assert_eq!(a.log, b.log, "{strategy:?}");
            assert_eq!(a.stats.fuel, b.stats.fuel, "{strategy:?}");
        }
    }
    // The log shows the virtual clock: fixed epoch, 2024-01-01.
    assert!(overlay[0].log.contains("1704067200.0"), "{}", overlay[0].log);
}

#[test]
fn generators_a_plugin_never_names_are_not_seeded_but_stay_deterministic() {
    // The global `random` and `np.random` are seeded per call only for a
    // plugin whose source mentions them; reached under a computed name they
    // give the snapshot's numbers: the same on every call and sandbox.
    let inp = input(HookName::Terrain);
    let mut other = inp.clone();
    other.random_seed = 99;
    let first = {
        let mut s = load("unnamed_generators.py");
        [s.call(&inp), s.call(&other), s.call(&inp)].map(|r| heights(&r)[..2].to_vec())
    };
    assert_eq!(first[0], first[1], "not seeded from the call's seed");
    assert_eq!(first[0], first[2]);
    for strategy in [ResetStrategy::Overlay, ResetStrategy::FreshInstance] {
        let mut s = load_with(engine(), "unnamed_generators.py", strategy);
        assert_eq!(heights(&s.call(&inp))[..2], first[0][..], "{strategy:?}");
    }
    // The probe, which names them, is seeded per call (see above).
    let mut probe = load("determinism_probe.py");
    assert_ne!(probe.call(&inp).log, probe.call(&other).log);
}

#[test]
fn sandboxes_run_in_parallel_threads_and_move_between_threads() {
    let inp = input(HookName::Terrain);
    let mut base = load("features_trees.py");
    let want = base.call(&input(HookName::Features)).result;
    let mut handles = vec![];
    for t in 0..3 {
        // Created here, moved to and used on another thread (Sandbox: Send).
        let mut s = if t == 0 { load("terrain_smooth.py") } else { base.fork().unwrap() };
        let inp = inp.clone();
        let want = want.clone();
        handles.push(std::thread::spawn(move || {
            for _ in 0..15 {
                if t == 0 {
                    let mut i = inp.clone();
                    i.params.insert("passes".into(), Value::Int(0));
                    assert_eq!(heights(&s.call(&i)), &i.layers.height[..]);
                } else {
                    assert_eq!(s.call(&input(HookName::Features)).result, want);
                }
            }
            s
        }));
    }
    for h in handles {
        // And back to this thread.
        let mut s = h.join().unwrap();
        if s.info().hooks.contains(&HookName::Features) {
            assert_eq!(s.call(&input(HookName::Features)).result, want);
        } else {
            let mut i = inp.clone();
            i.params.insert("passes".into(), Value::Int(0));
            assert_eq!(heights(&s.call(&i)), &i.layers.height[..]);
        }
    }
}

/// Run by the cross-process test in a child process.
#[test]
fn child_prints_probe_digest() {
    if std::env::var_os("WORLDLOOM_SANDBOX_CHILD").is_none() {
        return;
    }
    let r = &probe_outputs(ResetStrategy::Overlay)[0];
    println!("PROBE-LOG-BEGIN\n{}PROBE-LOG-END", r.log);
    println!("PROBE-RESULT {:?}", r.result);
    let mut env = load("env_leak.py");
    let mut inp = input(HookName::Terrain);
    inp.params.insert("mode".into(), Value::Str("attack".into()));
    println!("ENV-LOG {:?}", env.call(&inp).log);
}

#[test]
fn same_input_gives_identical_output_across_processes() {
    let exe = std::env::current_exe().unwrap();
    let run = || {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "child_prints_probe_digest", "--nocapture", "--test-threads=1"])
            .env("WORLDLOOM_SANDBOX_CHILD", "1")
            .env("WORLDLOOM_CANARY", "canary-7d1f")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let log =
            text.split("PROBE-LOG-BEGIN\n").nth(1).and_then(|t| t.split("PROBE-LOG-END").next()).unwrap().to_string();
        let result = text.lines().find(|l| l.starts_with("PROBE-RESULT")).unwrap().to_string();
        let env = text.lines().find(|l| l.starts_with("ENV-LOG")).unwrap().to_string();
        (log, result, env)
    };
    let (log_a, res_a, env_a) = run();
    let (log_b, res_b, env_b) = run();
    assert_eq!(log_a, log_b);
    assert_eq!(res_a, res_b);
    assert_eq!(env_a, env_b);
    let here = &probe_outputs(ResetStrategy::Overlay)[0];
    assert_eq!(log_a, here.log);
    // The child's environment had a canary; the guest saw only its own five variables.
    assert!(!env_a.contains("canary-7d1f"), "{env_a}");
    assert!(
        env_a.contains("[('NO_COLOR', '1'), ('PYTHONHASHSEED', '0'), ('PYTHONTZPATH', ''), ('PYTHON_COLORS', '0'), ('TMPDIR', '/tmp')]"),
        "{env_a}"
    );
}

#[test]
fn every_fixture_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = String::new();
    for f in ["hostile.rs", "plugins.rs"] {
        sources.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    let mut missing = vec![];
    for entry in std::fs::read_dir(dir.join("fixtures")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".py") && !sources.contains(&format!("\"{name}\"")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "fixtures without a test: {missing:?}");
}
