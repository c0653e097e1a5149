//! The OpenAPI document at `/openapi.json`: valid 3.1, the same routes the
//! server serves (checked by calling them, not by reading the document's own
//! source), an error schema on every operation, and schemas that real
//! responses satisfy.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use worldloom_tests::{TempDir, block_on, client, create_world, start, upload_plugin, worldloom_dir};

const PLUGIN: &str = "def terrain(ctx, chunk):\n    return chunk\n";

async fn document(base: &str) -> Value {
    let res = client().get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).expect("/openapi.json is JSON")
}

/// Every (METHOD, path) the document describes, with its operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("a local schema reference");
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "{r} is not in components.schemas");
            resolve(doc, target)
        }
        None => schema,
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// A small structural JSON Schema check: `$ref`, `type`, `required`,
/// `properties`, `additionalProperties` (as a schema), `items`, `oneOf`,
/// `enum`. Returns what does not match, by path.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(one_of) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = one_of.iter().any(|s| {
            let mut p = Vec::new();
            check(doc, s, v, at, &mut p);
            p.is_empty()
        });
        if !fits {
            problems.push(format!("{at}: {v} matches none of oneOf"));
        }
        return;
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, v) => {
            problems.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_matches(t.as_str().unwrap_or(""), v)) => {
            problems.push(format!("{at}: {v} is none of {ts:?}"));
            return;
        }
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        problems.push(format!("{at}: {v} is not one of {values:?}"));
    }
    if let Some(obj) = v.as_object() {
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = req.as_str().unwrap();
            if !obj.contains_key(name) {
                problems.push(format!("{at}: required property {name} is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, value) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, value, &format!("{at}.{k}"), problems),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => problems.push(format!("{at}: property {k} is not documented")),
                    Some(s @ Value::Object(_)) => check(doc, s, value, &format!("{at}.{k}"), problems),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), problems);
        }
    }
}

struct Fixture {
    world: String,
    plugin: String,
    version: String,
}

impl Fixture {
    fn url(&self, base: &str, path: &str) -> String {
        let path = path
            .replace("{id}", &self.world)
            .replace("{cx}", "-1")
            .replace("{cz}", "2")
            .replace("{name}", &self.plugin)
            .replace("{version}", &self.version);
        format!("{base}{path}")
    }

    /// A plausible body for a write, so the route runs its handler.
    fn body(&self, method: &str, path: &str) -> Option<Value> {
        match (method, path) {
            ("POST", "/v1/worlds") => Some(json!({"name": "Probe", "seed": 3})),
            ("PUT", "/v1/worlds/{id}/plugins") => {
                Some(json!({"plugins": [{"name": self.plugin, "version": self.version}]}))
            }
            ("PUT", "/v1/worlds/{id}/params") => Some(json!({"params": {"octaves": 5}})),
            ("POST", "/v1/plugins") => {
                Some(json!({"name": self.plugin, "version": "2.0.0", "description": "probe", "source": PLUGIN}))
            }
            _ => None,
        }
    }
}

/// Calls one documented operation as a client would; (status, content type, body).
async fn call(base: &str, token: &str, fx: &Fixture, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut req = client().request(Method::from_bytes(method.as_bytes()).unwrap(), fx.url(base, path));
    if method != "GET" {
        req = req.bearer_auth(token);
    }
    if let Some(body) = fx.body(method, path) {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, res.bytes().await.unwrap().to_vec())
}

fn is_route_miss(status: u16, body: &[u8]) -> bool {
    let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_owned));
    status == 405 || (status == 404 && code.as_deref() == Some("no_route"))
}

#[tokio::test]
async fn the_document_matches_the_routes_and_real_responses() {
    let s = start("memory://");
    let doc = document(&s.base).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let w = create_world(&s.base, &s.token, json!({"name": "Doc", "seed": 1})).await;
    upload_plugin(&s.base, &s.token, "probe", "1.0.0", PLUGIN).await;
    let fx = Fixture { world: w["id"].as_str().unwrap().to_owned(), plugin: "probe".into(), version: "1.0.0".into() };

    let ops = operations(&doc);
    let documented: BTreeSet<(String, String)> = ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();

    // Routes a client knows from the README (and the viewer's overview when
    // it exists): each must be documented.
    let known = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/params"),
        ("GET", "/v1/biomes"),
        ("POST", "/v1/worlds"),
        ("GET", "/v1/worlds"),
        ("GET", "/v1/worlds/{id}"),
        ("PUT", "/v1/worlds/{id}/plugins"),
        ("PUT", "/v1/worlds/{id}/params"),
        ("GET", "/v1/worlds/{id}/chunks/{cx}/{cz}"),
        ("GET", "/v1/worlds/{id}/stream"),
        ("POST", "/v1/plugins"),
        ("GET", "/v1/plugins"),
        ("GET", "/v1/plugins/{name}"),
        ("GET", "/v1/plugins/{name}/{version}"),
        ("GET", "/v1/plugins/{name}/{version}/source"),
        ("POST", "/v1/plugins/{name}/{version}/yank"),
        ("POST", "/v1/plugins/{name}/{version}/unyank"),
    ];
    for (m, p) in known {
        assert!(documented.contains(&(m.to_owned(), p.to_owned())), "{m} {p} is served but not documented");
    }
    let overview = client().get(fx.url(&s.base, "/v1/worlds/{id}/overview")).send().await.unwrap();
    if overview.status() != 404 || !overview.text().await.unwrap().contains("no_route") {
        assert!(
            documented.contains(&("GET".into(), "/v1/worlds/{id}/overview".into())),
            "the overview is served but not documented"
        );
    }

    // The coordinator's own list of what it registers agrees with the document.
    let registered = worldloom_coordinator::http::served_routes();
    let public: BTreeSet<(String, String)> =
        registered.iter().filter(|r| r.2).map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(public, documented);
    for (m, p, documented_here) in &registered {
        if !documented_here {
            assert!(p.starts_with("/internal/"), "only internal routes are left out: {m} {p}");
            assert!(!doc["paths"].as_object().unwrap().contains_key(p.as_str()));
            let (st, _, body) = call(&s.base, &s.token, &fx, m, p).await;
            assert!(!is_route_miss(st, &body), "{m} {p} is listed but not served: {st}");
        }
    }

    for (method, path, op) in &ops {
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what}: no responses"));
        // Every operation declares its errors, each with the Error schema.
        let errors: Vec<_> = responses.iter().filter(|(st, _)| st.as_str() >= "400").collect();
        assert!(!errors.is_empty(), "{what} declares no error response");
        for (st, r) in &errors {
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                "{what} {st}: not the Error schema"
            );
        }
        if method != "GET" {
            assert!(
                op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())),
                "{what}: a write without the bearer security requirement"
            );
        }

        // The route is served, answers with a documented status, and a JSON
        // answer fits the documented schema.
        let (status, ct, body) = call(&s.base, &s.token, &fx, method, path).await;
        assert!(!is_route_miss(status, &body), "{what} is documented but not served ({status})");
        let documented_response = responses
            .get(&status.to_string())
            .unwrap_or_else(|| panic!("{what} answered {status}, which is not documented: {:?}", responses.keys()));
        if ct.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let schema = &documented_response["content"]["application/json"]["schema"];
            assert!(!schema.is_null(), "{what} {status}: JSON answer without a documented JSON schema");
            let mut problems = Vec::new();
            check(&doc, schema, &v, "$", &mut problems);
            assert!(problems.is_empty(), "{what} {status} does not fit its schema: {problems:#?}\n{v}");
        } else if status < 300 {
            let media = ct.split(';').next().unwrap().trim().to_owned();
            assert!(
                documented_response["content"].get(&media).is_some(),
                "{what}: answered {media}, documented {:?}",
                documented_response["content"]
            );
        }

        // Nothing else is served on a documented path: other methods are 405.
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let documented_other = doc["paths"][path.as_str()].get(other.to_lowercase()).is_some();
            if documented_other {
                continue;
            }
            let res = client()
                .request(Method::from_bytes(other.as_bytes()).unwrap(), fx.url(&s.base, path))
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 405, "{other} {path}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], "method_not_allowed", "{other} {path}: {v}");
        }
    }
    s.stop();
}

#[tokio::test]
async fn chunks_document_both_media_types_and_errors_fit_the_error_schema() {
    let s = start("memory://");
    let doc = document(&s.base).await;
    let op = &doc["paths"]["/v1/worlds/{id}/chunks/{cx}/{cz}"]["get"];
    let content = op["responses"]["200"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/json") && content.contains_key("application/x-postcard"));
    for st in ["400", "404", "406", "503"] {
        assert!(op["responses"].get(st).is_some(), "chunks document {st}");
    }
    let w = create_world(&s.base, &s.token, json!({"name": "Doc", "seed": 1})).await;
    let id = w["id"].as_str().unwrap();
    let res = client()
        .get(format!("{}/v1/worlds/{id}/chunks/0/0", s.base))
        .header("accept", "application/x-postcard")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/x-postcard");
    // Real error answers, each as documented for its route.
    let error = &doc["components"]["schemas"]["Error"];
    let cases = [
        (format!("/v1/worlds/{id}/chunks/x/0"), "application/json", 400),
        (format!("/v1/worlds/{id}/chunks/0/0"), "text/html", 406),
        ("/v1/worlds/nope/chunks/0/0".to_owned(), "application/json", 404),
        ("/no/such/route".to_owned(), "application/json", 404),
    ];
    for (path, accept, want) in cases {
        let res = client().get(format!("{}{path}", s.base)).header("accept", accept).send().await.unwrap();
        assert_eq!(res.status().as_u16(), want, "{path}");
        let v: Value = res.json().await.unwrap();
        let mut problems = Vec::new();
        check(&doc, error, &v, "$", &mut problems);
        assert!(problems.is_empty(), "{path}: {problems:?} {v}");
    }
    // A write without a token: 401, documented, in the error shape.
    let res = client().post(format!("{}/v1/worlds", s.base)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(doc["paths"]["/v1/worlds"]["post"]["responses"].get("401").is_some());
    let v: Value = res.json().await.unwrap();
    let mut problems = Vec::new();
    check(&doc, error, &v, "$", &mut problems);
    assert!(problems.is_empty(), "{problems:?} {v}");
    s.stop();
}

/// Examples per operation of the bounded run (about 20 s);
/// `WORLDLOOM_API_FUZZ_EXAMPLES=N` raises it for a long run (500: about
/// three minutes), with a deadline that grows with it, and
/// `WORLDLOOM_API_FUZZ_SEED=S` explores from another seed.
const FUZZ_EXAMPLES: u32 = 30;

/// Property-based API testing: schemathesis (PyPI, pinned in scripts/test,
/// installed in the test virtualenv) reads `/openapi.json` of a live server
/// (real sandbox, `fs://` storage) and sends schema-valid and schema-breaking
/// requests to every operation, including short stateful sequences it derives
/// from the document (create a world, then read it, ...). It fails on any 5xx
/// and on any answer whose status, media type, headers or JSON body the
/// document does not describe, and on a 405 without `Allow`.
///
/// Checks left out, and why (each request they would flag still gets a
/// documented 4xx in the Error shape, which the included checks verify):
/// - `positive_data_acceptance` (a schema-valid request must be a 2xx): rules
///   a schema cannot state. A plugin upload's source must load in the
///   sandbox; attaching names a plugin version that must exist in the
///   workshop; an overview tile must lie in the world as a whole
///   (`x + step·(size-1)`); an `Accept` naming neither media type is a 406;
///   and schemathesis's inferred links take the literal `{cx}` of a world's
///   `links.chunk` (a URL template) as a chunk coordinate.
/// - `negative_data_rejection` (a schema-breaking request must be answered
///   400, 422, ...): the server rejects an over-long plugin description with
///   413 `too_large`, a status that check does not count as a rejection.
/// - `ignored_auth`, `use_after_free`, `ensure_resource_availability`: not
///   about the schema; authentication and stored resources have their own
///   tests (tests/it/api.rs).
///
/// The WebSocket stream is excluded: schemathesis speaks plain HTTP only
/// (tests/it/stream.rs covers it).
#[test]
fn schemathesis_finds_no_5xx_and_no_response_breaking_the_schema() {
    let st = worldloom_dir().join("venv/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run scripts/test, which installs schemathesis==4.32.5 into .worldloom/venv",
        st.display()
    );
    let examples: u32 = match std::env::var("WORLDLOOM_API_FUZZ_EXAMPLES") {
        Ok(n) => n.trim().parse().expect("WORLDLOOM_API_FUZZ_EXAMPLES is a number of examples"),
        Err(_) => FUZZ_EXAMPLES,
    };
    let seed = std::env::var("WORLDLOOM_API_FUZZ_SEED").unwrap_or_else(|_| "20261202".into());
    let deadline = Duration::from_secs(240.max(u64::from(examples) * 4));

    let data = TempDir::new("schemathesis-data");
    // Where schemathesis runs: any state it writes stays out of the repository.
    let work = TempDir::new("schemathesis");
    let s = start(&data.uri());
    let (base, token) = (s.base.clone(), s.token.clone());
    // A world and a plugin that exist: half the generated path parameters
    // name them (a schemathesis dictionary), so the read, yank and attach
    // operations reach their handlers rather than only their 404s.
    let world = block_on(async move {
        upload_plugin(&base, &token, "probe", "1.0.0", PLUGIN).await;
        let world = create_world(&base, &token, json!({"name": "Fuzz", "seed": 7})).await;
        found_before(&base, &token, world["id"].as_str().unwrap()).await;
        world
    });
    let world = world["id"].as_str().expect("a world id").to_owned();
    let config = work.0.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[dictionaries.world]
values = ["{world}"]
[dictionaries.plugin]
values = ["probe"]
[dictionaries.version]
values = ["1.0.0"]
[parameters]
"path.id" = {{ dictionary = "world", probability = 0.5 }}
"path.name" = {{ dictionary = "plugin", probability = 0.5 }}
"path.version" = {{ dictionary = "version", probability = 0.5 }}
"#
        ),
    )
    .expect("writing schemathesis.toml");

    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_headers_conformance,response_schema_conformance,unsupported_method";
    let args: Vec<String> = [
        "--config-file",
        &config.display().to_string(),
        "run",
        &format!("{}/openapi.json", s.base),
        "--header",
        &format!("Authorization: Bearer {}", s.token),
        "--checks",
        checks,
        "--exclude-path",
        "/v1/worlds/{id}/stream",
        "--max-examples",
        &examples.to_string(),
        "--seed",
        seed.trim(),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let out_path = work.0.join("output.txt");
    let out = std::fs::File::create(&out_path).expect("output file");
    let started = Instant::now();
    let mut child = Command::new(&st)
        .args(&args)
        .current_dir(&work.0)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("output file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e} (run scripts/test)", st.display()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let shown = output.replace(&s.token, "[token]");
    let command = format!("schemathesis {}", args.join(" ")).replace(&s.token, "[token]");
    s.stop();
    match status {
        None => panic!("schemathesis did not finish within {deadline:?}\n{command}\n{shown}"),
        Some(st) => assert!(
            st.success(),
            "schemathesis found problems ({st}) in {:.0?}:\n{command}\n{shown}",
            started.elapsed()
        ),
    }
    // Its summary (phases, warnings, counts), for `--nocapture`.
    let summary = shown.find("=== WARNINGS").or_else(|| shown.find("=== SUMMARY")).map_or("", |at| &shown[at..]);
    eprintln!("schemathesis passed in {:.1?} ({examples} examples per operation)\n{summary}", started.elapsed());
}

/// What schemathesis found once, checked directly so no seed can miss it.
async fn found_before(base: &str, token: &str, world: &str) {
    // An empty plugin name addressed the workshop's directory in `fs://`
    // storage: a 500. It is a 422 naming the field.
    for (method, path) in [("POST", "/v1/worlds".to_owned()), ("PUT", format!("/v1/worlds/{world}/plugins"))] {
        let body = json!({"name": "Empty", "plugins": [{"name": "", "version": "1.0.0"}]});
        let body = if method == "PUT" { json!({"plugins": body["plugins"]}) } else { body };
        let res = client()
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{method} {path}");
        let v: Value = res.json().await.unwrap();
        assert_eq!((v["code"].as_str(), v["field"].as_str()), (Some("invalid_name"), Some("plugins[0].name")), "{v}");
    }
    // A long plugin name in a path made a storage key too long for a file
    // name: a 503. No valid name is that long: it is an unknown plugin.
    let long = "a".repeat(300);
    for (method, path) in [
        (Method::GET, format!("/v1/plugins/{long}")),
        (Method::GET, format!("/v1/plugins/{long}/1.0.0")),
        (Method::GET, format!("/v1/plugins/{long}/1.0.0/source")),
        (Method::POST, format!("/v1/plugins/{long}/1.0.0/yank")),
        (Method::POST, format!("/v1/plugins/{long}/1.0.0/unyank")),
    ] {
        let res = client().request(method.clone(), format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 404, "{method} {path}");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "unknown_plugin", "{method} {path}");
    }
    // JSON Schema's `integer` includes `22066.0`: a seed may be sent so.
    let w = create_world(base, token, json!({"name": "Float seed", "seed": 22066.0})).await;
    assert_eq!(w["seed"], 22066);
    // A 405 says what the path serves (RFC 9110).
    let res = client().request(Method::TRACE, format!("{base}/v1/worlds")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, POST");
}
