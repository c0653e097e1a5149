//! The plugin authoring kit through the real binary: `plugin new` writes a
//! starter that passes the sandbox's `plugin check`, `plugin push` uploads to
//! a live workshop and reports its answer, and the Python SDK's own unit
//! tests pass (with the starter plugin run through its fake).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use worldloom_tests::{TempDir, binary, block_on, client, start, worldloom_dir};

fn worldloom(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .env("WORLDLOOM_RUNTIME_DIR", worldloom_dir().join("runtime/python"))
        .env("WORLDLOOM_CACHE_DIR", worldloom_dir().join("cache"))
        .env_remove("WORLDLOOM_SERVER")
        .env_remove("WORLDLOOM_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("running worldloom")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `worldloom plugin new NAME --dir DIR` and returns the file it wrote.
fn new_plugin(dir: &Path, name: &str) -> PathBuf {
    let out = worldloom(&["plugin", "new", name, "--dir", &dir.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(0), "plugin new: {}{}", stdout(&out), stderr(&out));
    let path = dir.join(format!("{name}.py"));
    assert!(stdout(&out).contains(&format!("wrote {}", path.display())), "{}", stdout(&out));
    path
}

fn write(dir: &TempDir, name: &str, source: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, source).unwrap();
    path.display().to_string()
}

#[test]
fn plugin_new_writes_a_starter_that_passes_check_and_runs() {
    let dir = TempDir::new("authoring-new");
    let path = new_plugin(&dir.0.join("plugins"), "ridges");
    let file = path.display().to_string();
    let source = std::fs::read_to_string(&path).unwrap();
    assert!(source.contains("ridges: a Worldloom plugin") && !source.contains("{{name}}"), "{source}");

    let out = worldloom(&["plugin", "check", &file, "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["hooks"], serde_json::json!(["terrain", "features"]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    for p in ["ridge_height", "ridge_spacing", "cairns"] {
        assert!(report["params"][p]["doc"].as_str().is_some_and(|d| !d.is_empty()), "{p}: {report}");
    }

    // Both hooks run cleanly in the sandbox on a chunk that is mostly land,
    // and the terrain hook only ever raises land.
    let land = |c: &worldloom_worldgen::Chunk| c.layers.height.iter().filter(|h| **h > 0.0).count();
    let (cx, cz) = (-40..40)
        .flat_map(|cx| (-40..40).map(move |cz| (cx * 7, cz * 7)))
        .find(|&(cx, cz)| {
            land(&worldloom_worldgen::generate_chunk(
                42,
                &Default::default(),
                worldloom_worldgen::ChunkCoord::new(cx, cz),
            )) > 900
        })
        .expect("seed 42 has a chunk that is mostly land");
    let chunk = format!("{cx},{cz}");
    let out = worldloom(
        &["plugin", "run", &file, "--hook", "terrain", "--seed", "42", "--chunk", &chunk, "--calls", "2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    for (i, line) in stdout(&out).lines().enumerate() {
        let call: Value = serde_json::from_str(line).unwrap();
        assert_eq!(call["ok"], true, "{call}");
        let coord = worldloom_worldgen::ChunkCoord::new(cx + i as i32, cz);
        let core = worldloom_worldgen::generate_chunk(42, &Default::default(), coord);
        let mut raised = 0;
        for x in 0..32 {
            for z in 0..32 {
                let before = core.layers.height[x * 32 + z];
                let after = call["chunk"]["layers"]["height"][x][z].as_f64().unwrap() as f32;
                if before > 0.0 {
                    assert!(after >= before && after <= before + 120.01, "({x}, {z}): {before} -> {after}");
                    raised += usize::from(after > before);
                } else {
                    assert_eq!(after, before, "the sea floor stays");
                }
            }
        }
        assert!(raised > 0 || land(&core) == 0, "chunk {coord:?}: no land column rose");
    }
    let out = worldloom(&["plugin", "run", &file, "--hook", "features", "--seed", "42", "--chunk", &chunk], &[]);
    let call: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(call["ok"], true, "{call}");
    let features = call["features"].as_array().unwrap();
    assert_eq!(features.len(), 2, "the default of 2 cairns on a land chunk: {call}");
    assert!(features.iter().all(|f| f["kind"] == "cairn"), "{call}");
}

#[test]
fn plugin_new_refuses_to_overwrite_and_refuses_bad_names() {
    let dir = TempDir::new("authoring-overwrite");
    let mine = write(&dir, "mine.py", "# my work\n");
    let out = worldloom(&["plugin", "new", "mine", "--dir", &dir.0.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains(&format!("{mine} already exists; not overwriting it")), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "# my work\n", "the file is untouched");

    for bad in ["Ridges", "9lives", "has.dot", "a/b", ""] {
        let out = worldloom(&["plugin", "new", bad, "--dir", &dir.0.display().to_string()], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is not a valid name"), "{bad:?}: {}", stderr(&out));
    }
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("mine.py")], "nothing else was written");
}

async fn get_json(url: String) -> Value {
    client().get(url).send().await.expect("GET").json().await.expect("JSON")
}

#[test]
fn plugin_push_uploads_to_a_live_workshop_and_the_version_is_listed() {
    let s = start("memory://");
    let dir = TempDir::new("authoring-push");
    let file = new_plugin(&dir.0, "ridges").display().to_string();
    let source = std::fs::read_to_string(&file).unwrap();
    let args = ["plugin", "push", &file, "--name", "ridges", "--version", "1.0.0", "--description", "diagonal ridges"];
    let mut with_flags = args.to_vec();
    with_flags.extend_from_slice(&["--server", &s.base, "--token", &s.token]);
    let out = worldloom(&with_flags, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("pushed ridges@1.0.0 to {}", s.base)), "{text}");
    assert!(text.contains("hooks: terrain, features"), "{text}");
    assert!(text.contains("param ridge_height: default 120.0, range 0..2000"), "{text}");
    let sha = worldloom_cluster::storage::source_sha256(&source);
    assert!(text.contains(&format!("sha256: {sha}")), "{text}");

    // The server and token also come from the environment; a trailing slash is fine.
    let base_slash = format!("{}/", s.base);
    let mut next = args.to_vec();
    next[6] = "1.1.0";
    let out = worldloom(&next, &[("WORLDLOOM_SERVER", &base_slash), ("WORLDLOOM_TOKEN", &s.token)]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));

    let base = s.base.clone();
    let (plugin, version, listing) = block_on(async move {
        (
            get_json(format!("{base}/v1/plugins/ridges")).await,
            get_json(format!("{base}/v1/plugins/ridges/1.0.0")).await,
            get_json(format!("{base}/v1/plugins?q=diagonal")).await,
        )
    });
    let versions: Vec<&str> =
        plugin["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"], "{plugin}");
    assert_eq!(plugin["owner"], "tester");
    assert_eq!(version["sha256"], sha.as_str());
    assert_eq!(version["description"], "diagonal ridges");
    assert_eq!(listing["plugins"][0]["name"], "ridges", "{listing}");

    // A second upload of one version is the workshop's 409, shown with its code.
    let out = worldloom(&with_flags, &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("the workshop refused it: 409 "), "{}", stdout(&out));
    assert!(stdout(&out).contains("1.0.0"), "{}", stdout(&out));
    s.stop();
}

#[test]
fn plugin_push_of_a_broken_plugin_prints_the_error_line_and_exits_1() {
    let s = start("memory://");
    let dir = TempDir::new("authoring-broken");
    let bad = write(
        &dir,
        "bad.py",
        "def terrain(ctx, chunk):\n    return chunk\n\ndef biome(ctx, chunk)\n    return chunk\n",
    );
    let push = |file: &str, name: &str| {
        worldloom(
            &["plugin", "push", file, "--name", name, "--version", "1.0.0", "--server", &s.base, "--token", &s.token],
            &[],
        )
    };
    let out = push(&bad, "bad");
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("the plugin does not load (422 plugin_invalid)"), "{text}");
    assert!(text.contains(&format!("{bad}:4: syntax: SyntaxError")), "{text}");

    let raising = write(
        &dir,
        "raising.py",
        "print('loading')\nimport numpy\nx = numpy.zeros(3)[7]\ndef terrain(ctx, chunk):\n    return chunk\n",
    );
    let out = push(&raising, "raising");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&format!("{raising}:3: exception: ")), "{text}");
    assert!(text.contains("IndexError"), "{text}");
    assert!(text.contains("output while loading:\n    loading"), "{text}");

    // A name the workshop refuses is its own 422, named.
    let good = write(&dir, "good.py", "def terrain(ctx, chunk):\n    return chunk\n");
    let out = push(&good, "Not-Valid");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("422 invalid_name"), "{}", stdout(&out));

    let base = s.base.clone();
    let listing = block_on(async move { get_json(format!("{base}/v1/plugins")).await });
    assert_eq!(listing["total"], 0, "nothing was stored: {listing}");
    s.stop();
}

#[test]
fn plugin_push_with_a_bad_token_exits_1_naming_the_401() {
    let s = start("memory://");
    let dir = TempDir::new("authoring-token");
    let good = write(&dir, "good.py", "def terrain(ctx, chunk):\n    return chunk\n");
    let out = worldloom(
        &[
            "plugin",
            "push",
            &good,
            "--name",
            "good",
            "--version",
            "1.0.0",
            "--server",
            &s.base,
            "--token",
            "not-a-token",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("the workshop refused it: 401 unauthorized"), "{}", stdout(&out));
    s.stop();
}

#[test]
fn plugin_push_usage_errors_and_an_unreachable_server_exit_2() {
    let dir = TempDir::new("authoring-usage");
    let good = write(&dir, "good.py", "def terrain(ctx, chunk):\n    return chunk\n");
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("http://127.0.0.1:{port}");
    let push = |extra: &[&str]| {
        let mut args = vec!["plugin", "push", &good, "--name", "good", "--version", "1.0.0"];
        args.extend_from_slice(extra);
        worldloom(&args, &[])
    };
    let out = push(&["--server", &server, "--token", "t"]);
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot reach the workshop at {server}")), "{}", stderr(&out));

    let out = push(&["--server", &server]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no API token: pass --token TOKEN or set WORLDLOOM_TOKEN"), "{}", stderr(&out));

    let out = push(&["--server", "ftp://example.com", "--token", "t"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--server must be an http:// or https:// URL"), "{}", stderr(&out));

    let missing = dir.0.join("missing.py").display().to_string();
    let out = worldloom(&["plugin", "push", &missing, "--name", "m", "--version", "1.0.0", "--token", "t"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("cannot read {missing}")), "{}", stderr(&out));
}

#[test]
fn the_python_sdk_unit_tests_pass_with_the_starter_plugin() {
    let python = worldloom_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test creates the test virtualenv (python3 -m venv .worldloom/venv, then pip install numpy)",
        python.display()
    );
    let numpy = Command::new(&python).args(["-c", "import numpy"]).output().expect("running python");
    assert!(
        numpy.status.success(),
        "{} has no numpy ({}): run scripts/test, which installs it",
        python.display(),
        stderr(&numpy).trim()
    );
    let dir = TempDir::new("authoring-sdk");
    let starter = new_plugin(&dir.0, "starter");
    let root = worldloom_dir().parent().expect("workspace root").to_path_buf();
    let out = Command::new(&python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("sdk/python/tests"))
        .current_dir(&dir.0)
        .env("WORLDLOOM_STARTER_PLUGIN", &starter)
        .env_remove("PYTHONPATH")
        .output()
        .expect("running the SDK tests");
    let report = stderr(&out);
    assert!(out.status.success(), "the SDK's unit tests failed:\n{report}{}", stdout(&out));
    let ran: u32 = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test count in:\n{report}"));
    assert!(ran >= 20, "only {ran} SDK tests ran:\n{report}");
    assert!(report.contains("test_starter.StarterTest.test_features_put_the_requested_cairns"), "{report}");
}
