//! `worldloom plugin check|run`: the plugin author's loop, running the real
//! sandbox exactly as the server does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value as Json, json};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{AttachedPlugin, GenSpec};
use worldloom_node::pipeline;
use worldloom_plugin_abi::{CallStats, HookName, HookOutput, Limits, PluginError, RuntimeKind, Value, params};
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
                let hooks: Vec<&str> = info.hooks.iter().map(|h| h.as_str()).collect();
                println!("{name}: ok");
                println!("  hooks: {}", hooks.join(", "));
                for (p, d) in &info.params {
                    let range = match (d.min, d.max) {
                        (None, None) => String::new(),
                        (lo, hi) => format!(
                            ", range {}..{}",
                            lo.map_or("".into(), |v| v.to_string()),
                            hi.map_or("".into(), |v| v.to_string())
                        ),
                    };
                    println!(
                        "  param {p}: default {}{range}{}",
                        terminal_safe(&value_text(&d.default)),
                        terminal_safe(&doc_suffix(&d.doc))
                    );
                }
            }
            (_, error) => {
                let e = error
                    .clone()
                    .unwrap_or_else(|| PluginError::new(worldloom_plugin_abi::ErrorKind::Trap, "did not load"));
                let message = terminal_safe(&e.message);
                match e.line {
                    Some(line) => println!("{name}:{line}: {}: {message}", e.kind),
                    None => println!("{name}: {}: {message}", e.kind),
                }
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
