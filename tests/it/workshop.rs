//! The plugin workshop: upload, validation, versions, ownership, yanking,
//! search, attachment to worlds, revisions and persistence.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use worldloom_tests::{
    Frame, S3Server, Stream, TempDir, account_token, chunk_postcard, client, create_world, spawn, spawn_with_env,
    start, upload_plugin,
};
use worldloom_worldgen::{ChunkCoord, generate_chunk};

const LIFT: &str = r#"
"""Raises the terrain."""
PARAMS = {"amount": {"default": 100.0, "min": 0.0, "max": 1000.0, "doc": "metres"}}

def terrain(ctx, chunk):
    chunk.height = chunk.height + ctx.params["amount"]
    return chunk
"#;

async fn post_plugin(base: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = client().post(format!("{base}/v1/plugins")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// `PUT` a JSON body with a bearer token (or a raw Authorization header value).
async fn put_json(url: String, authorization: &str, body: Value) -> (StatusCode, Value) {
    let res = client().put(url).header("authorization", authorization).json(&body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn get_json(url: String) -> (StatusCode, Value) {
    let res = client().get(url).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

fn plugin(name: &str, version: &str, source: &str) -> Value {
    json!({"name": name, "version": version, "description": "a test plugin", "runtime": "python", "source": source})
}

#[tokio::test]
async fn an_upload_is_validated_stored_and_listed() {
    let s = start("memory://");
    let meta = upload_plugin(&s.base, &s.token, "lift", "1.2.0", LIFT).await;
    assert_eq!(meta["hooks"], json!(["terrain"]));
    assert_eq!(meta["params"]["amount"]["max"], 1000.0);
    assert_eq!(meta["owner"], "tester");
    assert_eq!(meta["runtime"], "python");
    assert_eq!(meta["sha256"], worldloom_cluster::storage::source_sha256(LIFT));
    assert_eq!(meta["yanked"], false);

    let (st, list) = get_json(format!("{}/v1/plugins", s.base)).await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["plugins"][0]["name"], "lift");
    assert_eq!(list["plugins"][0]["latest_version"], "1.2.0");
    let (_, versions) = get_json(format!("{}/v1/plugins/lift", s.base)).await;
    assert_eq!(versions["versions"][0]["version"], "1.2.0");
    let (st, one) = get_json(format!("{}/v1/plugins/lift/1.2.0", s.base)).await;
    assert_eq!(st, 200);
    assert_eq!(one, meta);
    let source = client().get(format!("{}/v1/plugins/lift/1.2.0/source", s.base)).send().await.unwrap();
    assert_eq!(source.status(), 200);
    assert!(source.headers()["content-type"].to_str().unwrap().starts_with("text/x-python"));
    assert_eq!(source.text().await.unwrap(), LIFT);
    s.stop();
}

#[tokio::test]
async fn a_broken_plugin_gets_a_useful_422_and_nothing_is_stored() {
    let s = start("memory://");
    let broken = "import numpy as np\n\ndef terrain(ctx, chunk):\n    return chunk +\n";
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("broken", "1.0.0", broken)).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["code"], "plugin_invalid");
    assert_eq!(body["details"]["error"]["kind"], "syntax");
    assert_eq!(body["details"]["error"]["line"], 4);
    assert!(body["message"].as_str().unwrap().contains("line 4"), "{body}");
    let raising = "raise RuntimeError('not ready')\ndef terrain(ctx, chunk):\n    return chunk\n";
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("broken", "1.0.0", raising)).await;
    assert_eq!(st, 422);
    assert_eq!(body["details"]["error"]["kind"], "exception");
    assert!(body["details"]["error"]["message"].as_str().unwrap().contains("not ready"));
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("broken", "1.0.0", "x = 1\n")).await;
    assert_eq!(st, 422);
    assert_eq!(body["details"]["error"]["kind"], "missing_hook");
    let (st, _) = get_json(format!("{}/v1/plugins/broken", s.base)).await;
    assert_eq!(st, 404);
    let (_, list) = get_json(format!("{}/v1/plugins", s.base)).await;
    assert_eq!(list["total"], 0);
    s.stop();
}

#[tokio::test]
async fn versions_are_immutable_and_a_name_belongs_to_its_first_uploader() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("lift", "1.0.0", LIFT)).await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["code"], "version_exists");
    upload_plugin(&s.base, &s.token, "lift", "1.1.0", LIFT).await;
    let other = s.create_account("mallory");
    let (st, body) =
        post_plugin(&s.base, Some(&other), plugin("lift", "2.0.0", "def terrain(c, k):\n    return None\n")).await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    let res = client().post(format!("{}/v1/plugins/lift/1.0.0/yank", s.base)).bearer_auth(&other).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let (_, versions) = get_json(format!("{}/v1/plugins/lift", s.base)).await;
    let listed: Vec<&str> =
        versions["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(listed, ["1.1.0", "1.0.0"], "newest first; nothing of mallory's");
    // A world belongs to its creator too.
    let w = create_world(&s.base, &s.token, json!({"name": "mine"})).await;
    let url = format!("{}/v1/worlds/{}/params", s.base, w["id"].as_str().unwrap());
    let (st, _) = put_json(url, &bearer(&other), json!({"params": {"octaves": 3}})).await;
    assert_eq!(st, 403);
    s.stop();
}

#[tokio::test]
async fn every_write_needs_a_valid_token() {
    let s = start("memory://");
    let (st, body) = post_plugin(&s.base, None, plugin("lift", "1.0.0", LIFT)).await;
    assert_eq!(st, 401);
    assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    let (st, _) = post_plugin(&s.base, Some("wl_0000"), plugin("lift", "1.0.0", LIFT)).await;
    assert_eq!(st, 401);
    let res = client().post(format!("{}/v1/worlds", s.base)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "unauthorized");
    let w = create_world(&s.base, &s.token, json!({"name": "x"})).await;
    let url = format!("{}/v1/worlds/{}/plugins", s.base, w["id"].as_str().unwrap());
    let (st, _) = put_json(url, "Basic dXNlcjpwYXNz", json!({"plugins": []})).await;
    assert_eq!(st, 401);
    s.stop();
}

#[tokio::test]
async fn hostile_names_and_oversized_inputs_are_refused_without_storing_anything() {
    let s = start("memory://");
    let long_name = "a".repeat(65);
    for name in
        ["../etc/passwd", "a/b", "..", ".", "Lift", "9lives", "a b", "a\u{0}b", "ä", "", long_name.as_str(), "a\\b"]
    {
        let (st, body) = post_plugin(&s.base, Some(&s.token), plugin(name, "1.0.0", LIFT)).await;
        assert_eq!(st, 422, "{name:?}: {body}");
        assert_eq!(body["code"], "invalid_name", "{name:?}");
        assert_eq!(body["field"], "name");
    }
    let long_version = format!("1.0.0-{}", "x".repeat(100));
    for version in ["1.0", "v1.0.0", "latest", "../1.0.0", long_version.as_str()] {
        let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("lift", version, LIFT)).await;
        assert_eq!(st, 422, "{version:?}: {body}");
        assert_eq!(body["field"], "version");
    }
    let mut long_description = plugin("lift", "1.0.0", LIFT);
    long_description["description"] = json!("d".repeat(1001));
    let (st, body) = post_plugin(&s.base, Some(&s.token), long_description).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("description")));
    let big_source = format!("{LIFT}\n# {}\n", "x".repeat(300 << 10));
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("lift", "1.0.0", &big_source)).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("source")));
    let mut ruby = plugin("lift", "1.0.0", LIFT);
    ruby["runtime"] = json!("ruby");
    let (st, body) = post_plugin(&s.base, Some(&s.token), ruby).await;
    assert_eq!((st, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_runtime")));
    let (st, body) =
        post_plugin(&s.base, Some(&s.token), json!({"name": "lift", "version": "1.0.0", "source": LIFT, "extra": 1}))
            .await;
    assert_eq!(st, 422, "{body}");
    // Traversal through the read endpoints finds nothing.
    for path in ["..%2F..%2Fetc/1.0.0/source", "lift/..%2F..%2Fetc", "%2e%2e/1.0.0", "lift/1.0.0%2F..%2F..%2Fsource"] {
        let res = client().get(format!("{}/v1/plugins/{path}", s.base)).send().await.unwrap();
        assert!(res.status() == 404, "{path}: {}", res.status());
        assert!(res.json::<Value>().await.is_ok(), "JSON error for {path}");
    }
    let (_, list) = get_json(format!("{}/v1/plugins", s.base)).await;
    assert_eq!(list["total"], 0, "nothing was stored");
    s.stop();
}

#[tokio::test]
async fn concurrent_uploads_of_one_version_have_exactly_one_winner() {
    let s = start("memory://");
    let alice = s.create_account("alice");
    let tokens: Vec<String> = (0..6).map(|i| if i % 2 == 0 { s.token.clone() } else { alice.clone() }).collect();
    let uploads = tokens.iter().map(|t| {
        let base = s.base.clone();
        let t = t.clone();
        async move { post_plugin(&base, Some(&t), plugin("race", "1.0.0", LIFT)).await.0 }
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(uploads).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [201, 403, 409].contains(&s.as_u16())), "{statuses:?}");
    let (_, versions) = get_json(format!("{}/v1/plugins/race", s.base)).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    s.stop();
}

#[tokio::test]
async fn a_yanked_version_keeps_its_worlds_working_but_cannot_be_attached() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    let attach = json!({"name": "Y", "seed": 2, "plugins": [{"name": "lift", "version": "1.0.0"}]});
    let w = create_world(&s.base, &s.token, attach.clone()).await;
    let res =
        client().post(format!("{}/v1/plugins/lift/1.0.0/yank", s.base)).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["yanked"], true);
    let (_, c) = chunk_postcard(&s.base, w["id"].as_str().unwrap(), 0, 0).await;
    let core = generate_chunk(2, &Default::default(), ChunkCoord::new(0, 0));
    assert_eq!(c.chunk.layers.height[0], core.layers.height[0] + 100.0, "the existing world still runs it");
    let res = client().post(format!("{}/v1/worlds", s.base)).bearer_auth(&s.token).json(&attach).send().await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "plugin_yanked");
    let (_, list) = get_json(format!("{}/v1/plugins/lift", s.base)).await;
    assert_eq!(list["versions"][0]["yanked"], true);
    let res =
        client().post(format!("{}/v1/plugins/lift/1.0.0/unyank", s.base)).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    create_world(&s.base, &s.token, attach).await;
    s.stop();
}

#[tokio::test]
async fn search_matches_names_and_descriptions_and_pages() {
    let s = start("memory://");
    for (name, description) in [
        ("rivers", "carves rivers"),
        ("lakes", "fills basins with water"),
        ("dunes", "desert sand"),
        ("cliffs", "steep coasts"),
    ] {
        let body = json!({"name": name, "version": "1.0.0", "description": description, "source": LIFT});
        assert_eq!(post_plugin(&s.base, Some(&s.token), body).await.0, 201);
    }
    let names = |v: &Value| {
        v["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (_, hits) = get_json(format!("{}/v1/plugins?q=WATER", s.base)).await;
    assert_eq!(names(&hits), ["lakes"]);
    let (_, hits) = get_json(format!("{}/v1/plugins?q=ri", s.base)).await;
    assert_eq!(names(&hits), ["rivers"]);
    let (_, page1) = get_json(format!("{}/v1/plugins?limit=3", s.base)).await;
    assert_eq!(names(&page1), ["cliffs", "dunes", "lakes"]);
    assert_eq!((page1["total"].as_u64(), page1["next_offset"].as_u64()), (Some(4), Some(3)));
    let (_, page2) = get_json(format!("{}/v1/plugins?limit=3&offset=3", s.base)).await;
    assert_eq!(names(&page2), ["rivers"]);
    assert_eq!(page2["next_offset"], Value::Null);
    let (st, body) = get_json(format!("{}/v1/plugins?limit=1000", s.base)).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let (st, _) = get_json(format!("{}/v1/plugins?limit=abc", s.base)).await;
    assert_eq!(st, 400);
    s.stop();
}

#[tokio::test]
async fn changing_plugins_or_params_starts_a_revision_that_streams_are_told_about() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    let w = create_world(&s.base, &s.token, json!({"name": "R", "seed": 4})).await;
    let other = create_world(&s.base, &s.token, json!({"name": "O", "seed": 4})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let mut ws = Stream::connect(&s.base, &id).await;
    ws.subscribe(0, 0, 1).await;
    let (before, done) = ws.until_done().await;
    assert_eq!((before.len(), done["revision"].as_u64()), (9, Some(0)));

    let lift = json!({"plugins": [{"name": "lift", "version": "1.0.0", "params": {"amount": 500}}]});
    let (st, world) = put_json(format!("{}/v1/worlds/{id}/plugins", s.base), &bearer(&s.token), lift).await;
    assert_eq!((st, world["revision"].as_u64()), (StatusCode::OK, Some(1)));
    match ws.next().await {
        Frame::Json(j) => assert_eq!(j["revision"], json!({"revision": 1, "previous": 0}), "{j}"),
        Frame::Chunk(_) => panic!("expected the revision notice first"),
    }
    let (after, done) = ws.until_done().await;
    assert_eq!((after.len(), done["revision"].as_u64()), (9, Some(1)), "the whole square again, new revision");
    let coords: HashSet<ChunkCoord> = after.iter().map(|c| c.chunk.coord).collect();
    assert_eq!(coords.len(), 9);
    for c in &after {
        assert_eq!(c.revision, 1);
        let core = generate_chunk(4, &Default::default(), c.chunk.coord);
        assert_eq!(c.chunk.layers.height[7], core.layers.height[7] + 500.0);
    }
    // The HTTP API serves the new revision; the other world is untouched.
    let (_, now) = chunk_postcard(&s.base, &id, 0, 0).await;
    assert_eq!(now.revision, 1);
    let (_, untouched) = chunk_postcard(&s.base, other["id"].as_str().unwrap(), 0, 0).await;
    assert_eq!(untouched.chunk, generate_chunk(4, &Default::default(), ChunkCoord::new(0, 0)));

    let params_url = format!("{}/v1/worlds/{id}/params", s.base);
    let (st, _) = put_json(params_url.clone(), &bearer(&s.token), json!({"params": {"octaves": 99}})).await;
    assert_eq!(st, 422, "invalid params start no revision");
    let (_, world) = put_json(params_url.clone(), &bearer(&s.token), json!({"params": {"octaves": 3}})).await;
    assert_eq!(world["revision"], 2);
    match ws.next().await {
        Frame::Json(j) => assert_eq!(j["revision"]["revision"], 2),
        Frame::Chunk(_) => panic!("expected the revision notice first"),
    }
    let (again, _) = ws.until_done().await;
    assert_eq!(again.len(), 9);
    // Putting the same parameters again changes nothing: same revision, no notice.
    let (_, world) = put_json(params_url, &bearer(&s.token), json!({"params": {"octaves": 3}})).await;
    assert_eq!(world["revision"], 2);
    ws.subscribe(0, 0, 1).await;
    let (nothing_new, done) = ws.until_done().await;
    assert_eq!((nothing_new.len(), done["revision"].as_u64(), done["already_had"].as_u64()), (0, Some(2), Some(9)));
    drop(ws);
    s.stop();
}

/// Uploads, attaches and generates on one server process, kills it, starts
/// another on the same storage and finds everything there.
async fn survives_restart(data: &str, env: &[(String, String)], s3: &worldloom_cluster::storage::S3Settings) {
    let token = account_token(data, s3, "keeper");
    let p = spawn_with_env(data, &[], env);
    upload_plugin(&p.base, &token, "lift", "1.0.0", LIFT).await;
    let w = create_world(
        &p.base,
        &token,
        json!({"name": "P", "seed": 6, "plugins": [{"name": "lift", "version": "1.0.0"}]}),
    )
    .await;
    let id = w["id"].as_str().unwrap().to_owned();
    let (bytes, _) = chunk_postcard(&p.base, &id, 1, 1).await;
    // The node writes behind its answers: the kill comes after the write.
    worldloom_tests::wait_stored(data, s3, &id, 0, 1, 1).await;
    p.kill();

    let p = spawn_with_env(data, &[], env);
    let (st, meta) = get_json(format!("{}/v1/plugins/lift/1.0.0", p.base)).await;
    assert_eq!((st, meta["owner"].as_str()), (StatusCode::OK, Some("keeper")));
    let source =
        client().get(format!("{}/v1/plugins/lift/1.0.0/source", p.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(source, LIFT);
    let (_, world) = get_json(format!("{}/v1/worlds/{id}", p.base)).await;
    assert_eq!(world["plugins"][0]["name"], "lift");
    let res = client()
        .get(format!("{}/v1/worlds/{id}/chunks/1/1", p.base))
        .header("accept", "application/x-postcard")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-worldloom-cache"], "hit");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    // Still immutable after the restart; the token still works.
    let (st, _) = post_plugin(&p.base, Some(&token), plugin("lift", "1.0.0", LIFT)).await;
    assert_eq!(st, 409);
}

#[tokio::test]
async fn the_workshop_survives_a_restart_on_the_filesystem() {
    let dir = TempDir::new("workshop-fs");
    survives_restart(&dir.uri(), &[], &Default::default()).await;
}

#[tokio::test]
async fn the_workshop_survives_a_restart_on_s3() {
    let s3 = S3Server::start(&["worlds"]);
    survives_restart("s3://worlds/prod", &s3.env(), &s3.settings()).await;
}

#[tokio::test]
async fn the_token_command_creates_accounts_that_the_server_accepts() {
    let dir = TempDir::new("token-cli");
    let out = std::process::Command::new(worldloom_tests::binary())
        .args(["token", "create", "carol", "--data", &dir.uri()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("wl_"));
    let again = std::process::Command::new(worldloom_tests::binary())
        .args(["token", "create", "carol", "--data", &dir.uri()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "an account is created once");
    let memory = std::process::Command::new(worldloom_tests::binary())
        .args(["token", "create", "dave", "--data", "memory://"])
        .output()
        .unwrap();
    assert_eq!(memory.status.code(), Some(2), "memory:// cannot hold accounts for a server");
    assert!(String::from_utf8_lossy(&memory.stderr).contains("memory://"));
    let p = spawn(&dir.uri(), &[]);
    let w = create_world(&p.base, &token, json!({"name": "C"})).await;
    assert_eq!(w["owner"], "carol");
    let out = std::process::Command::new(worldloom_tests::binary())
        .args(["token", "revoke", "carol", "--data", &dir.uri()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let res = client()
        .post(format!("{}/v1/worlds", p.base))
        .bearer_auth(&token)
        .json(&json!({"name": "D"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a revoked token stops working at once");
}

fn multipart(parts: &[(&str, Option<&str>, &str)]) -> (String, Vec<u8>) {
    let boundary = "----worldloom-test-boundary";
    let mut body = Vec::new();
    for (name, filename, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/x-python\r\n\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(base: &str, token: &str, parts: &[(&str, Option<&str>, &str)]) -> (StatusCode, Value) {
    let (content_type, body) = multipart(parts);
    let res = client()
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn a_plugin_file_can_be_uploaded_as_a_multipart_form() {
    let s = start("memory://");
    let (st, meta) = post_form(
        &s.base,
        &s.token,
        &[
            ("name", None, "lift"),
            ("version", None, "2.0.0"),
            ("description", None, "by form"),
            ("source", Some("lift.py"), LIFT),
        ],
    )
    .await;
    assert_eq!(st, 201, "{meta}");
    assert_eq!((meta["name"].as_str(), meta["description"].as_str()), (Some("lift"), Some("by form")));
    assert_eq!(meta["sha256"], worldloom_cluster::storage::source_sha256(LIFT));
    let (st, body) = post_form(&s.base, &s.token, &[("name", None, "lift"), ("source", Some("lift.py"), LIFT)]).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("version")));
    let (st, body) = post_form(
        &s.base,
        &s.token,
        &[("name", None, "x"), ("version", None, "1.0.0"), ("colour", None, "red"), ("source", None, LIFT)],
    )
    .await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("colour")));
    let broken = client()
        .post(format!("{}/v1/plugins", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("this is not multipart")
        .send()
        .await
        .unwrap();
    assert!(broken.status().is_client_error(), "{}", broken.status());
    assert!(broken.json::<Value>().await.is_ok());
    s.stop();
}

#[tokio::test]
async fn a_plugin_may_have_only_as_many_versions_as_the_operator_allows() {
    let s = worldloom_tests::start_with("memory://", |c| c.workshop.max_versions = 2);
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    upload_plugin(&s.base, &s.token, "lift", "1.0.1", LIFT).await;
    let (st, body) = post_plugin(&s.base, Some(&s.token), plugin("lift", "1.0.2", LIFT)).await;
    assert_eq!((st, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_versions")), "{body}");
    s.stop();
}
