//! The web viewer at `/` in a real browser (Debian's chromium driven by
//! playwright-core, both installed by scripts/test), and the overview
//! endpoint it draws continents from.

use std::path::Path;
use std::process::Command;

use worldloom_tests::{client, create_world, start};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

/// The overview is the core's columns: JSON and binary agree with the
/// chunk the server generates, and bad parameters are 400s naming the field.
#[tokio::test]
async fn the_overview_is_the_cores_columns_in_json_and_binary() {
    let s = start("memory://");
    let world = create_world(&s.base, &s.token, serde_json::json!({"name": "overview", "seed": 42})).await;
    let id = world["id"].as_str().unwrap().to_owned();
    let http = client();
    let url = |q: &str| format!("{}/v1/worlds/{id}/overview?{q}", s.base);
    let res = http.get(url("x=-64&z=32&step=2&size=40")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-worldloom-source"], "core");
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (json["source"].as_str(), json["size"].as_u64(), json["step"].as_u64()),
        (Some("core"), Some(40), Some(2))
    );
    // Sample (i, j) is column (-64 + 2i, 32 + 2j): chunk (-2, 1) holds i < 16, j < 16.
    let chunk: serde_json::Value =
        http.get(format!("{}/v1/worlds/{id}/chunks/-2/1", s.base)).send().await.unwrap().json().await.unwrap();
    for i in 0..16 {
        for j in 0..16 {
            let (x, z) = (2 * i, 2 * j);
            assert_eq!(json["height"][i][j], chunk["layers"]["height"][x][z], "height at sample {i},{j}");
            assert_eq!(json["biome"][i][j], chunk["layers"]["biome"][x][z]);
        }
    }
    let bin =
        http.get(url("x=-64&z=32&step=2&size=40")).header("accept", "application/octet-stream").send().await.unwrap();
    assert_eq!(bin.headers()["content-type"], "application/octet-stream");
    let b = bin.bytes().await.unwrap();
    assert_eq!(b.len(), 32 + 5 * 1600);
    assert_eq!(&b[..4], b"WLOV");
    let f = |k: usize| f32::from_le_bytes(b[32 + 4 * k..36 + 4 * k].try_into().unwrap());
    assert_eq!(f(41), json["height"][1][1].as_f64().unwrap() as f32);
    assert_eq!(u64::from(b[32 + 4 * 1600 + 41]), json["biome"][1][1].as_u64().unwrap());
    for (q, field) in
        [("step=3", "step"), ("size=257", "size"), ("x=abc", "x"), ("z=99999999999", "z"), ("zoom=1", "zoom")]
    {
        let res = http.get(url(q)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{q}");
        let e: serde_json::Value = res.json().await.unwrap();
        assert_eq!(e["field"], field, "{q}: {e}");
    }
    assert_eq!(
        http.get(format!("{}/v1/worlds/w0000000000000000/overview", s.base)).send().await.unwrap().status(),
        404
    );
    // The viewer's files are served from the binary, loading nothing from elsewhere.
    let page = http.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(page.text().await.unwrap().contains("/viewer/app.js"));
    for f in ["/viewer/app.js", "/viewer/style.css"] {
        assert_eq!(http.get(format!("{}{f}", s.base)).send().await.unwrap().status(), 200, "{f}");
    }
    s.stop();
}

/// The browser test: creates a world through the page, waits for streamed
/// chunks, pans and zooms (out to the overview), attaches a plugin in the
/// workshop and checks the map changed where it acts, hovers a column, and
/// saves screenshots to target/viewer-screenshots/.
#[test]
fn the_viewer_works_in_a_real_browser() {
    let root = workspace();
    let chromium = std::env::var("WORLDLOOM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test, which installs Debian's chromium and playwright-core"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is missing from tests/browser/node_modules: run scripts/test (npm ci --prefix tests/browser)"
    );
    let s = start("memory://");
    let shots = root.join("target/viewer-screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/viewer.test.mjs"))
        .current_dir(root)
        .env("WORLDLOOM_BASE", &s.base)
        .env("WORLDLOOM_TOKEN", &s.token)
        .env("WORLDLOOM_SCREENSHOTS", &shots)
        .env("WORLDLOOM_CHROMIUM", &chromium)
        .output()
        .expect("running node (is it installed?)");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    s.stop();
    assert!(out.status.success(), "the browser test failed:\n{text}");
    for shot in ["1-chunks.png", "2-overview.png", "3-plugin-attached.png"] {
        let len = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{shot} is missing or tiny ({len} bytes)\n{text}");
    }
    println!("{text}");
}
