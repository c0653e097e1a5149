//! `worldloom plugin check|run`: the plugin author's loop, through the real binary.

use std::process::{Command, Output};

use serde_json::Value;
use worldloom_tests::{TempDir, binary, worldloom_dir};

fn worldloom(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("WORLDLOOM_RUNTIME_DIR", worldloom_dir().join("runtime/python"))
        .env("WORLDLOOM_CACHE_DIR", worldloom_dir().join("cache"))
        .output()
        .expect("running worldloom")
}

fn write(dir: &TempDir, name: &str, source: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, source).unwrap();
    path.display().to_string()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

const GOOD: &str = r#"
import numpy as np
PARAMS = {"lift": {"default": 10.0, "min": 0.0, "max": 100.0, "doc": "metres"}}
def terrain(ctx, chunk):
    print("lifting", ctx.cx)
    chunk.height = chunk.height + ctx.params["lift"]
    return chunk
def features(ctx, chunk):
    return [{"x": 1, "z": 2, "kind": "stone", "weight": ctx.random.random()}]
"#;

#[test]
fn check_reports_hooks_and_params_or_the_line_of_a_syntax_error() {
    let dir = TempDir::new("cli-check");
    let good = write(&dir, "good.py", GOOD);
    let out = worldloom(&["plugin", "check", &good, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = &lines(&out)[0];
    assert_eq!(report["ok"], true);
    assert_eq!(report["hooks"], serde_json::json!(["terrain", "features"]));
    assert_eq!(report["params"]["lift"]["max"], 100.0);

    let bad = write(
        &dir,
        "bad.py",
        "def terrain(ctx, chunk):\n    return chunk\n\ndef biome(ctx, chunk)\n    return chunk\n",
    );
    let out = worldloom(&["plugin", "check", &bad, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = &lines(&out)[0];
    assert_eq!(report["error"]["kind"], "syntax");
    assert_eq!(report["error"]["line"], 4);
    let text = worldloom(&["plugin", "check", &bad]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("bad.py:4: syntax"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    let none = write(&dir, "none.py", "def helper():\n    return 1\n");
    let report = &lines(&worldloom(&["plugin", "check", &none, "--json"]))[0];
    assert_eq!(report["error"]["kind"], "missing_hook");
}

#[test]
fn run_prints_one_object_per_call_through_one_warm_sandbox() {
    let dir = TempDir::new("cli-run");
    let good = write(&dir, "good.py", GOOD);
    let args = [
        "plugin",
        "run",
        &good,
        "--hook",
        "terrain",
        "--seed",
        "42",
        "--chunk",
        "-3,4",
        "--params",
        r#"{"lift": 50}"#,
        "--calls",
        "3",
    ];
    let out = worldloom(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = lines(&out);
    assert_eq!(calls.len(), 3);
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call["ok"], true);
        assert_eq!(call["error"], Value::Null);
        assert_eq!(call["hook"], "terrain");
        assert_eq!(call["cx"], -3 + i as i64);
        assert_eq!(call["log"], format!("lifting {}\n", -3 + i as i64));
        assert!(call["stats"]["fuel"].as_u64().unwrap() > 0);
        assert!(call["stats"]["wall_ms"].as_f64().is_some());
        let core = worldloom_worldgen::generate_chunk(
            42,
            &Default::default(),
            worldloom_worldgen::ChunkCoord::new(-3 + i as i32, 4),
        );
        assert_eq!(
            call["chunk"]["layers"]["height"][5][7].as_f64().unwrap() as f32,
            core.layers.height[5 * 32 + 7] + 50.0
        );
    }
    // Same inputs, same outputs (and fuel); only wall time varies.
    let without_wall = |mut v: Vec<Value>| {
        v.iter_mut().for_each(|c| c["stats"]["wall_ms"] = Value::Null);
        v
    };
    let again = without_wall(lines(&worldloom(&args)));
    assert!(again == without_wall(calls), "a second run differs");

    let out = worldloom(&["plugin", "run", &good, "--hook", "features", "--chunk", "0,0"]);
    assert_eq!(lines(&out)[0]["features"][0]["kind"], "stone");
}

#[test]
fn run_exit_codes_tell_plugin_failures_from_usage_errors() {
    let dir = TempDir::new("cli-exit");
    let good = write(&dir, "good.py", GOOD);
    let raising = write(&dir, "raising.py", "def terrain(ctx, chunk):\n    raise RuntimeError('boom')\n");
    let out = worldloom(&["plugin", "run", &raising, "--hook", "terrain"]);
    assert_eq!(out.status.code(), Some(1));
    let call = &lines(&out)[0];
    assert_eq!(call["ok"], false);
    assert_eq!(call["error"]["kind"], "exception");
    assert_eq!(call["error"]["line"], 2);
    let looping = write(&dir, "loop.py", "def terrain(ctx, chunk):\n    while True:\n        pass\n");
    let out = worldloom(&["plugin", "run", &looping, "--hook", "terrain"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out)[0]["error"]["kind"], "fuel_exhausted");
    let out = worldloom(&["plugin", "run", &good, "--hook", "biome"]);
    assert_eq!(out.status.code(), Some(1), "a hook the plugin does not define");
    assert_eq!(lines(&out)[0]["error"]["kind"], "missing_hook");
    for usage in [
        vec!["plugin", "run", &good, "--hook", "weather"],
        vec!["plugin", "run", &good, "--hook", "terrain", "--chunk", "1"],
        vec!["plugin", "run", &good, "--hook", "terrain", "--params", "{not json"],
        vec!["plugin", "run", &good, "--hook", "terrain", "--params", r#"{"lift": 1000}"#],
        vec!["plugin", "run", "/nonexistent/plugin.py", "--hook", "terrain"],
        vec!["plugin", "run", &good],
    ] {
        let out = worldloom(&usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn check_shows_what_a_plugin_printed_or_declared_without_terminal_control_characters() {
    let dir = TempDir::new("cli-escape");
    // At load: clears the screen and writes red text, declares a parameter
    // whose doc reverses the line, and raises with an escape in its message.
    let src = "print('\\x1b[2J\\x1b[31mgotcha')\n\
               PARAMS = {'p': {'default': 1, 'doc': 'ok'}}\n\
               def terrain(ctx, chunk):\n    return chunk\n\
               raise ValueError('\\x1b]0;owned\\x07 \\u202e reversed')\n";
    let f = write(&dir, "escape.py", src);
    let out = worldloom(&["plugin", "check", &f]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'), "{text:?}");
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(text.contains("\\u{202e}"), "{text}");
}
