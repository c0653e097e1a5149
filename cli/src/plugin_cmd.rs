//! `worldloom plugin new|check|run|push`: the plugin author's loop. `check`
//! and `run` use the real sandbox exactly as the server does; `push` uploads
//! to a workshop over HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value as Json, json};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{AttachedPlugin, GenSpec};
use worldloom_node::pipeline;
use worldloom_plugin_abi::{
    CallStats, HookName, HookOutput, Limits, ParamDecl, PluginError, RuntimeKind, Value, params,
};
use worldloom_sandbox::{CheckReport, PluginRef, Worker};
use worldloom_worldgen::{ChunkCoord, Params};

/// Exit code: a plugin failed.
pub const EXIT_PLUGIN_FAILED: u8 = 1;
/// Exit code: the command was used wrongly (bad arguments, unreadable file).
pub const EXIT_USAGE: u8 = 2;

/// A usage error: exit code 2 with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

fn read_source(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).map_err(|e| Usage(format!("cannot read {}: {e}", file.display())).into())
}

fn plugin_name(file: &Path) -> String {
    file.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
}

fn stats_json(s: &CallStats) -> Json {
    json!({ "wall_ms": s.wall_us as f64 / 1000.0, "fuel": s.fuel, "memory_bytes": s.memory_bytes })
}

fn error_json(e: &PluginError) -> Json {
    json!({ "kind": e.kind, "message": e.message, "line": e.line })
}

/// Text from a plugin as it may be shown on a terminal: control characters
/// (but newlines and tabs) and Unicode bidirectional formatting characters
/// are shown as `\u{...}` escapes, so a plugin cannot move the cursor,
/// recolour the terminal or make text read backwards.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi =
            matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `worldloom plugin check FILE [--json]`.
pub fn check(worker: &mut Worker, limits: &Limits, file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let source = read_source(file)?;
    let report: CheckReport = worker.check(&plugin_name(file), &source, limits);
    if let Some(host) = &report.host_error {
        anyhow::bail!("the sandbox could not run the check: {host}");
    }
    let ok = report.error.is_none() && report.info.is_some();
    if as_json {
        let out = json!({
            "ok": ok,
            "file": file.display().to_string(),
            "hooks": report.info.as_ref().map(|i| &i.hooks),
            "params": report.info.as_ref().map(|i| &i.params),
            "error": report.error.as_ref().map(error_json),
            "warnings": report.warnings,
            "log": report.log,
            "stats": stats_json(&report.stats),
        });
        println!("{out}");
    } else {
        let name = file.display();
        match (&report.info, &report.error) {
            (Some(info), None) => {
                println!("{name}: ok");
                print_info(&info.hooks, &info.params);
            }
            (_, error) => {
                let e = error
                    .clone()
                    .unwrap_or_else(|| PluginError::new(worldloom_plugin_abi::ErrorKind::Trap, "did not load"));
                print_plugin_error(&name.to_string(), &e);
            }
        }
        for w in &report.warnings {
            println!("  warning: {}", terminal_safe(w));
        }
        if !report.log.is_empty() {
            println!("  output while loading:\n{}", indent(&terminal_safe(&report.log)));
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PLUGIN_FAILED) })
}

/// Prints a plugin's hooks and PARAMS, as `plugin check` and `plugin push` show them.
fn print_info(hooks: &[HookName], params: &BTreeMap<String, ParamDecl>) {
    let hooks: Vec<&str> = hooks.iter().map(|h| h.as_str()).collect();
    println!("  hooks: {}", hooks.join(", "));
    for (p, d) in params {
        let range = match (d.min, d.max) {
            (None, None) => String::new(),
            (lo, hi) => format!(
                ", range {}..{}",
                lo.map_or("".into(), |v| v.to_string()),
                hi.map_or("".into(), |v| v.to_string())
            ),
        };
        println!(
            "  param {}: default {}{range}{}",
            terminal_safe(p),
            terminal_safe(&value_text(&d.default)),
            terminal_safe(&doc_suffix(&d.doc))
        );
    }
}

/// Prints a load failure as `FILE:LINE: KIND: MESSAGE` (or `FILE: KIND: MESSAGE`).
fn print_plugin_error(file: &str, e: &PluginError) {
    let message = terminal_safe(&e.message);
    match e.line {
        Some(line) => println!("{file}:{line}: {}: {message}", e.kind),
        None => println!("{file}: {}: {message}", e.kind),
    }
}

fn value_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn doc_suffix(doc: &str) -> String {
    if doc.is_empty() { String::new() } else { format!(" - {doc}") }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Arguments of `worldloom plugin run`.
pub struct RunArgs<'a> {
    pub file: &'a Path,
    pub hook: &'a str,
    pub seed: u64,
    pub chunk: (i32, i32),
    pub params: Option<&'a str>,
    pub calls: u32,
}

/// Parses `CX,CZ`.
pub fn parse_chunk(s: &str) -> Result<(i32, i32), String> {
    let (x, z) = s.split_once(',').ok_or_else(|| format!("--chunk must be CX,CZ (e.g. 0,-3), got {s:?}"))?;
    let p = |v: &str| v.trim().parse::<i32>().map_err(|_| format!("--chunk must be two integers CX,CZ, got {s:?}"));
    Ok((p(x)?, p(z)?))
}

/// `worldloom plugin run FILE --hook NAME --seed N --chunk CX,CZ [--params JSON] [--calls K]`.
pub fn run(worker: &mut Worker, limits: &Limits, args: RunArgs<'_>) -> anyhow::Result<ExitCode> {
    let hook = HookName::parse(args.hook).ok_or_else(|| {
        let known: Vec<&str> = HookName::ALL.iter().map(|h| h.as_str()).collect();
        Usage(format!("--hook must be one of {}, got {:?}", known.join(", "), args.hook))
    })?;
    let given: BTreeMap<String, Value> = match args.params {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Usage(format!("--params must be a JSON object of booleans, numbers and strings: {e}")))?,
    };
    if args.calls == 0 {
        return Err(Usage("--calls must be at least 1".into()).into());
    }
    let source = read_source(args.file)?;
    let name = plugin_name(args.file);
    let sha256 = worldloom_cluster::storage::source_sha256(&source);
    let plugin_ref = PluginRef { name: &name, sha256: &sha256, source: &source };
    let loaded = worker.load(plugin_ref, limits);
    let info = match loaded.result {
        Ok((info, _)) => info,
        Err(error) => {
            let out = json!({
                "ok": false, "hook": hook, "stage": "load", "error": error_json(&error),
                "log": loaded.log, "stats": stats_json(&loaded.stats),
            });
            println!("{out}");
            return Ok(ExitCode::from(EXIT_PLUGIN_FAILED));
        }
    };
    let resolved =
        params::resolve(&info.params, &given).map_err(|p| Usage(format!("--params: {}: {}", p.name, p.message)))?;
    let plugin = AttachedPlugin {
        name: name.clone(),
        version: "local".into(),
        sha256: sha256.clone(),
        runtime: RuntimeKind::Python,
        params: resolved,
    };
    let spec = GenSpec {
        world: WorldId::parse("w0000000000000000").expect("a valid id"),
        revision: 0,
        seed: args.seed,
        params: Params::default(),
        plugins: vec![plugin.clone()],
        limits: *limits,
    };
    let defines = info.hooks.contains(&hook);
    let mut all_ok = true;
    for i in 0..args.calls {
        let coord = ChunkCoord::new(args.chunk.0.saturating_add(i as i32), args.chunk.1);
        let mut chunk = pipeline::stage_input(&spec, coord, hook);
        let report = if defines {
            let input = pipeline::hook_input(&spec, &plugin, hook, &chunk);
            Some(worker.call(plugin_ref, limits, &input))
        } else {
            None
        };
        let mut out = json!({ "hook": hook, "cx": coord.cx, "cz": coord.cz });
        let result = match &report {
            None => Err(PluginError::new(
                worldloom_plugin_abi::ErrorKind::MissingHook,
                format!("the plugin does not define {hook}()"),
            )),
            Some(r) => r.result.clone(),
        };
        match result {
            Ok(HookOutput::Features(features)) => {
                out["features"] = json!(features);
            }
            Ok(output) => {
                pipeline::apply_output(&mut chunk, output).map_err(|e| anyhow::anyhow!("{e}"))?;
                out["chunk"] = json!({ "size": worldloom_worldgen::CHUNK_SIZE, "layers": chunk.layers });
            }
            Err(e) => {
                all_ok = false;
                out["error"] = error_json(&e);
            }
        }
        out["ok"] = json!(out.get("error").is_none());
        if out.get("error").is_none() {
            out["error"] = Json::Null;
        }
        out["log"] = json!(report.as_ref().map_or("", |r| r.log.as_str()));
        out["stats"] = stats_json(&report.as_ref().map(|r| r.stats).unwrap_or_default());
        println!("{out}");
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PLUGIN_FAILED) })
}

/// The starter plugin `plugin new` writes; `{{name}}` is replaced by the plugin's name.
pub const TEMPLATE: &str = include_str!("plugin_template.py");

/// The starter plugin for `name`, as `plugin new` writes it.
pub fn starter_source(name: &str) -> String {
    TEMPLATE.replace("{{name}}", name)
}

/// `worldloom plugin new NAME [--dir DIR]`: writes `DIR/NAME.py`, never over an existing file.
pub fn new_plugin(name: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    worldloom_coordinator::auth::check_name("NAME", name)
        .map_err(|e| Usage(format!("{} (it is the plugin's name in the workshop and the file's name)", e.message)))?;
    std::fs::create_dir_all(dir).map_err(|e| Usage(format!("cannot create the directory {}: {e}", dir.display())))?;
    let path = dir.join(format!("{name}.py"));
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Usage(format!(
                "{} already exists; not overwriting it (delete it, or pick another NAME or --dir)",
                path.display()
            ))
            .into());
        }
        Err(e) => return Err(Usage(format!("cannot create {}: {e}", path.display())).into()),
    };
    std::io::Write::write_all(&mut file, starter_source(name).as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    let shown = path.display();
    println!("wrote {shown}");
    println!("next:");
    println!("  worldloom plugin check {shown}");
    println!("  worldloom plugin run {shown} --hook terrain --seed 42 --chunk 0,0");
    println!("  worldloom plugin push {shown} --name {name} --version 0.1.0   # token: --token or WORLDLOOM_TOKEN");
    Ok(ExitCode::SUCCESS)
}

/// The workshop `plugin push` uploads to when neither `--server` nor `WORLDLOOM_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Arguments of `worldloom plugin push`.
pub struct PushArgs<'a> {
    pub file: &'a Path,
    pub name: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub server: &'a str,
    pub token: Option<&'a str>,
}

/// An error and every error that caused it, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// `worldloom plugin push FILE --name N --version V [--description D] [--server URL] [--token T]`:
/// uploads to the workshop (`POST /v1/plugins`) and prints what it answered.
/// Exit 0 (stored), 1 (the workshop refused it) or 2 (usage, unreachable server).
pub fn push(args: PushArgs<'_>) -> anyhow::Result<ExitCode> {
    let source = read_source(args.file)?;
    let token = args.token.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
        Usage(
            "no API token: pass --token TOKEN or set WORLDLOOM_TOKEN (an operator creates one with \
             `worldloom token create ACCOUNT`)"
                .into(),
        )
    })?;
    let server = args.server.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{server}/v1/plugins"))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| Usage(format!("--server must be an http:// or https:// URL, got {:?}", args.server)))?;
    let body = json!({
        "name": args.name,
        "version": args.version,
        "description": args.description,
        "runtime": RuntimeKind::Python.as_str(),
        "source": source,
    });
    worldloom_cluster::install_tls_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, text) = rt
        .block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                // The workshop loads the plugin in a sandbox before it answers.
                .timeout(std::time::Duration::from_secs(180))
                .build()?;
            let res = client
                .post(url.clone())
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.to_string())
                .send()
                .await?;
            let status = res.status();
            let text = res.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        })
        .map_err(|e| Usage(format!("cannot reach the workshop at {server}: {}", error_chain(&e))))?;
    let answer: Option<Json> = serde_json::from_str(&text).ok();
    let file = args.file.display().to_string();
    if status == reqwest::StatusCode::CREATED {
        let Some(v) = answer else {
            return Err(Usage(format!("{server} answered 201 but not with JSON; is it a Worldloom server?")).into());
        };
        let hooks: Vec<HookName> = serde_json::from_value(v["hooks"].clone()).unwrap_or_default();
        let params: BTreeMap<String, ParamDecl> = serde_json::from_value(v["params"].clone()).unwrap_or_default();
        let shown = |k: &str| terminal_safe(v[k].as_str().unwrap_or("?"));
        println!("{file}: pushed {}@{} to {server}", shown("name"), shown("version"));
        print_info(&hooks, &params);
        println!("  sha256: {}", shown("sha256"));
        if let Some(size) = v["size_bytes"].as_u64() {
            println!("  size: {size} bytes");
        }
        if let Some(path) = v["source_url"].as_str() {
            println!("  source: {server}{}", terminal_safe(path));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(v) = answer.filter(|v| v["code"].is_string()) else {
        let excerpt: String = text.chars().take(200).collect();
        return Err(Usage(format!(
            "{server} answered {status} without a Worldloom error body; is it a Worldloom server? {}",
            terminal_safe(excerpt.trim())
        ))
        .into());
    };
    let code = terminal_safe(v["code"].as_str().unwrap_or_default());
    let message = terminal_safe(v["message"].as_str().unwrap_or_default());
    let plugin_error: Option<PluginError> =
        (code == "plugin_invalid").then(|| serde_json::from_value(v["details"]["error"].clone()).ok()).flatten();
    match plugin_error {
        Some(e) => {
            println!("{file}: the workshop refused it: the plugin does not load ({} {code})", status.as_u16());
            print_plugin_error(&file, &e);
            let details = &v["details"];
            for w in details["warnings"].as_array().into_iter().flatten().filter_map(Json::as_str) {
                println!("  warning: {}", terminal_safe(w));
            }
            if let Some(log) = details["log"].as_str().filter(|l| !l.is_empty()) {
                println!("  output while loading:\n{}", indent(&terminal_safe(log)));
            }
        }
        None => {
            let field = v["field"].as_str().map(|f| format!(" (field {})", terminal_safe(f))).unwrap_or_default();
            println!("{file}: the workshop refused it: {} {code}: {message}{field}", status.as_u16());
        }
    }
    Ok(ExitCode::from(EXIT_PLUGIN_FAILED))
}
