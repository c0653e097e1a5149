//! Host-side encoding of inputs and re-validation of everything a guest
//! hands back (result frames, error reports, the load manifest). Nothing
//! the guest says is trusted: every byte is checked here, and messages tell
//! the plugin author exactly what was wrong.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};
use wasmer::sys::vm::TrapCode;
use worldloom_plugin_abi::{
    BiomeOutput, ErrorKind, FeatureOut, HookInput, HookName, HookOutput, Limits, ParamDecl, PluginError, PluginInfo,
    TerrainOutput, Value, frame,
};

use crate::error::{SandboxError, SandboxErrorKind};
use crate::host::HostTrap;
use crate::instance::TurnResult;

/// Largest chunk side the sandbox accepts.
pub const MAX_SIZE: u32 = 1024;
/// Largest load manifest a guest may hand back.
pub const MANIFEST_CAP: u64 = 256 << 10;
/// Longest error message kept from a guest.
const MAX_MESSAGE: usize = 4096;
/// Longest piece of guest data quoted inside a host-built message.
pub const MAX_QUOTE: usize = 1024;
const MAX_PARAMS: usize = 64;
/// Longest `PARAMS` name, characters.
pub const MAX_PARAM_NAME: usize = 64;
const MAX_PARAM_DOC: usize = 1000;
const MAX_PARAM_STR: usize = 1024;
const MAX_WARNINGS: usize = 16;
const MAX_WARNING: usize = 300;

fn invalid_input(msg: impl Into<String>) -> SandboxError {
    SandboxError::new(SandboxErrorKind::InvalidInput, msg)
}

/// Encodes a hook input as an input frame (see `plugin_abi::frame`).
pub fn input_frame(input: &HookInput, biome_count: u16, limits: &Limits) -> Result<Vec<u8>, SandboxError> {
    let size = input.size;
    if size == 0 || size > MAX_SIZE {
        return Err(invalid_input(format!("chunk size {size} is outside 1..={MAX_SIZE}")));
    }
    let n = (size * size) as usize;
    let l = &input.layers;
    for (name, len) in [
        ("height", l.height.len()),
        ("temperature", l.temperature.len()),
        ("moisture", l.moisture.len()),
        ("biome", l.biome.len()),
    ] {
        if len != n {
            return Err(invalid_input(format!("layer {name} has {len} values, expected {n}")));
        }
    }
    if !input.sea_level.is_finite() {
        return Err(invalid_input("the sea level is not finite"));
    }
    for (k, v) in &input.params {
        if let Value::Float(f) = v
            && !f.is_finite()
        {
            return Err(invalid_input(format!("parameter {k} is not finite")));
        }
    }
    let hook = match input.hook {
        HookName::Terrain => 0u8,
        HookName::Biome => 1,
        HookName::Features => 2,
    };
    // The fixed header is written in place and the parameters' JSON (only
    // if there are any) after it, its length patched in; the layers are
    // appended to the same buffer: one allocation per frame.
    let mut buf = Vec::with_capacity(frame::INPUT_HEADER_LEN + 256 + n * 14);
    buf.extend_from_slice(frame::INPUT_MAGIC);
    buf.extend_from_slice(&[hook, 0]);
    buf.extend_from_slice(&biome_count.to_le_bytes());
    buf.extend_from_slice(&size.to_le_bytes());
    buf.extend_from_slice(&input.seed.to_le_bytes());
    buf.extend_from_slice(&input.cx.to_le_bytes());
    buf.extend_from_slice(&input.cz.to_le_bytes());
    buf.extend_from_slice(&input.random_seed.to_le_bytes());
    buf.extend_from_slice(&input.sea_level.to_le_bytes());
    for v in [limits.max_features, limits.max_feature_properties, limits.max_feature_string] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&[0; 4]);
    debug_assert_eq!(buf.len(), frame::INPUT_HEADER_LEN);
    if !input.params.is_empty() {
        serde_json::to_writer(&mut buf, &input.params)
            .map_err(|e| invalid_input(format!("encoding the parameters: {e}")))?;
    }
    let params_len = u32::try_from(buf.len() - frame::INPUT_HEADER_LEN)
        .map_err(|_| invalid_input("the parameters are longer than 4 GiB"))?;
    buf[frame::INPUT_HEADER_LEN - 4..frame::INPUT_HEADER_LEN].copy_from_slice(&params_len.to_le_bytes());
    frame::put_f32s(&mut buf, &l.height);
    frame::put_f32s(&mut buf, &l.temperature);
    frame::put_f32s(&mut buf, &l.moisture);
    frame::put_u16s(&mut buf, &l.biome);
    Ok(buf)
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::InvalidOutput, msg)
}

/// Guest data quoted in a host-built message: at most [`MAX_QUOTE`] bytes.
pub fn clip_guest(s: &str) -> String {
    clip(s.to_string(), MAX_QUOTE)
}

/// A JSON value from the guest, quoted in a message: at most [`MAX_QUOTE`] bytes.
fn quote(v: &Json) -> String {
    clip(v.to_string(), MAX_QUOTE)
}

/// A log at most `cap` bytes long (cut at a character boundary).
pub fn clip_log(mut log: String, cap: u64) -> String {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if log.len() > cap {
        let mut cut = cap;
        while !log.is_char_boundary(cut) {
            cut -= 1;
        }
        log.truncate(cut);
    }
    log
}

/// A plugin error as stored and shown: its message at most [`MAX_MESSAGE`] bytes.
pub fn sanitize_error(e: PluginError) -> PluginError {
    PluginError { message: clip(e.message, MAX_MESSAGE), ..e }
}

/// Load warnings as kept: at most 16, each at most 300 bytes.
pub fn clip_warnings(w: Vec<String>) -> Vec<String> {
    w.into_iter().take(MAX_WARNINGS).map(|s| clip(s, MAX_WARNING)).collect()
}

/// Characters that can disguise text where it is shown (terminals, pages,
/// logs): control characters and Unicode bidirectional formatting.
pub fn disguising_char(s: &str, allow_newlines: bool) -> Option<char> {
    s.chars().find(|&c| {
        (c.is_control() && !(allow_newlines && (c == '\n' || c == '\t')))
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" [...]");
    }
    s
}

/// What the turn was for: decides which guest-reported kinds are plausible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Load,
    Call,
}

/// Turns a finished turn into the OK body of its result frame, or the
/// plugin error it amounts to. The host decides timeouts, fuel, memory and
/// output limits from its own records, never from what the guest says.
pub(crate) fn classify(tr: &TurnResult, limits: &Limits, phase: Phase) -> Result<Vec<u8>, PluginError> {
    let deadline_ms = if phase == Phase::Load { limits.load_deadline_ms } else { limits.deadline_ms };
    let failed = |e: PluginError| Err(e);
    if let Err(e) = &tr.result {
        if tr.deadline_fired {
            // The wall clock decided: another run may end otherwise.
            return failed(PluginError::transient(
                ErrorKind::Timeout,
                format!("the plugin ran past its {deadline_ms} ms deadline"),
            ));
        }
        match e.downcast_ref::<HostTrap>() {
            Some(HostTrap::PastDeadline) => {
                return failed(PluginError::new(
                    ErrorKind::Timeout,
                    format!("the plugin slept or waited past its {deadline_ms} ms deadline"),
                ));
            }
            Some(t @ HostTrap::Exit(_)) => return failed(PluginError::new(ErrorKind::Trap, t.to_string())),
            // Charged in a host call; reported as fuel below.
            Some(HostTrap::FuelExhausted) | None => {}
        }
        if tr.fuel_exhausted {
            return failed(PluginError::new(
                ErrorKind::FuelExhausted,
                format!(
                    "the plugin used up its budget of {} instructions{}",
                    if phase == Phase::Load { limits.load_fuel } else { limits.fuel },
                    if phase == Phase::Load { " while loading" } else { "" }
                ),
            ));
        }
        if let Some(n) = tr.outcome.oversized {
            return failed(output_too_large(n, limits, phase));
        }
        if tr.grow_failures > 0 {
            return failed(memory_limit(limits));
        }
        let msg = match e.clone().to_trap() {
            Some(TrapCode::StackOverflow) => "the interpreter overflowed its stack (recursion too deep)".to_string(),
            Some(TrapCode::UnreachableCodeReached) => "the interpreter aborted (wasm `unreachable`)".to_string(),
            Some(TrapCode::HeapAccessOutOfBounds) => "the interpreter accessed memory out of bounds".to_string(),
            Some(code) => format!("the interpreter trapped: {code}"),
            None => format!("the interpreter trapped: {}", e.message()),
        };
        return failed(PluginError::new(ErrorKind::Trap, msg));
    }
    if tr.log_overflowed {
        return failed(PluginError::new(
            ErrorKind::OutputLimit,
            format!("the plugin printed more than its log limit of {} bytes", limits.log_bytes),
        ));
    }
    if let Some(n) = tr.outcome.oversized {
        return failed(output_too_large(n, limits, phase));
    }
    if tr.outcome.duplicate {
        return failed(invalid("the result was handed to the host more than once"));
    }
    let Some(frame_bytes) = &tr.outcome.frame else {
        let status = tr.result.as_ref().copied().unwrap_or(-1);
        let mut e = invalid(format!(
            "the {} finished without delivering a result (turn status {status}); did the plugin tamper with the harness?",
            if phase == Phase::Load { "load" } else { "hook" }
        ));
        if tr.grow_failures > 0 {
            e = memory_limit(limits);
        }
        return failed(e);
    };
    match result_frame(frame_bytes, phase) {
        Ok(body) => Ok(body),
        Err(e) if tr.grow_failures > 0 && e.kind != ErrorKind::InvalidOutput => failed(PluginError {
            kind: ErrorKind::MemoryLimit,
            message: format!("{}\n{}", memory_limit(limits).message, e.message),
            line: e.line,
            transient: false,
        }),
        Err(e) => failed(e),
    }
}

/// Parses the result frame the guest handed over (`WLO1`, a status byte,
/// then the OK body or the guest's error report): the OK body, or the
/// plugin error it amounts to. Any bytes at all give one or the other.
pub fn result_frame(frame_bytes: &[u8], phase: Phase) -> Result<Vec<u8>, PluginError> {
    if frame_bytes.len() < 5 || &frame_bytes[..4] != frame::OUTPUT_MAGIC {
        return Err(invalid("the result frame is malformed (bad magic)"));
    }
    let body = &frame_bytes[5..];
    match frame_bytes[4] {
        frame::STATUS_OK => Ok(body.to_vec()),
        frame::STATUS_ERROR => Err(guest_error(body, phase)),
        s => Err(invalid(format!("the result frame has unknown status {s}"))),
    }
}

fn memory_limit(limits: &Limits) -> PluginError {
    PluginError::new(
        ErrorKind::MemoryLimit,
        format!("the plugin needed more than its memory cap of {} MiB", limits.memory_bytes >> 20),
    )
}

fn output_too_large(n: u64, limits: &Limits, phase: Phase) -> PluginError {
    let cap = if phase == Phase::Load { MANIFEST_CAP } else { limits.output_bytes };
    PluginError::new(
        ErrorKind::OutputLimit,
        format!("the result is {} bytes, more than the limit of {cap} bytes", n.saturating_sub(5)),
    )
}

/// Parses a guest error report `{kind, message, line, exc_type}`; kinds only
/// the host may decide (timeout, fuel, output limit) are not accepted.
fn guest_error(body: &[u8], phase: Phase) -> PluginError {
    let Ok(Json::Object(m)) = serde_json::from_slice::<Json>(body) else {
        return invalid("the plugin's error report is not valid JSON");
    };
    let message = m.get("message").and_then(Json::as_str).unwrap_or("").to_string();
    let message = clip(message, MAX_MESSAGE);
    let line = m.get("line").and_then(Json::as_u64).and_then(|l| u32::try_from(l).ok());
    let exc_type = m.get("exc_type").and_then(Json::as_str);
    let kind = match m.get("kind").and_then(Json::as_str) {
        Some("exception") => ErrorKind::Exception,
        Some("invalid_output") => ErrorKind::InvalidOutput,
        Some("missing_hook") => ErrorKind::MissingHook,
        Some("memory_limit") => ErrorKind::MemoryLimit,
        Some("trap") => ErrorKind::Trap,
        Some("syntax") if phase == Phase::Load => ErrorKind::Syntax,
        other => {
            let other = other.map(clip_guest);
            return invalid(format!(
                "the plugin reported an error of unexpected kind {other:?}: {}",
                clip(message, MAX_QUOTE)
            ));
        }
    };
    let kind = if exc_type == Some("MemoryError") { ErrorKind::MemoryLimit } else { kind };
    PluginError { kind, message, line, transient: false }
}

/// Validates a hook's OK body and decodes it.
pub fn hook_output(
    hook: HookName,
    body: &[u8],
    input: &HookInput,
    biome_count: u16,
    limits: &Limits,
) -> Result<HookOutput, PluginError> {
    let size = input.size as usize;
    let n = size * size;
    match hook {
        HookName::Terrain => {
            let height = frame::get_f32s(body, n).ok_or_else(|| {
                invalid(format!(
                    "the terrain result has {} bytes, expected {} ({size}x{size} float32)",
                    body.len(),
                    n * 4
                ))
            })?;
            if let Some(i) = height.iter().position(|v| !v.is_finite()) {
                let what = if height[i].is_nan() { "NaN".to_string() } else { height[i].to_string() };
                return Err(invalid(format!("height[{}][{}] is {what}", i / size, i % size)));
            }
            Ok(HookOutput::Terrain(TerrainOutput { height }))
        }
        HookName::Biome => {
            let biome = frame::get_u16s(body, n).ok_or_else(|| {
                invalid(format!("the biome result has {} bytes, expected {} ({size}x{size} uint16)", body.len(), n * 2))
            })?;
            if let Some(i) = biome.iter().position(|&b| b >= biome_count) {
                return Err(invalid(format!(
                    "biome[{}][{}] is {}, but biome ids are 0..{}",
                    i / size,
                    i % size,
                    biome[i],
                    biome_count.saturating_sub(1)
                )));
            }
            Ok(HookOutput::Biome(BiomeOutput { biome }))
        }
        HookName::Features => features(body, input.size, limits).map(HookOutput::Features),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch == '_' || ch.is_alphabetic()) && c.all(|ch| ch == '_' || ch.is_alphanumeric())
}

fn scalar(v: &Json) -> Option<Value> {
    match v {
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Value::Int(i))
            } else if n.is_u64() {
                None
            } else {
                n.as_f64().filter(|f| f.is_finite()).map(Value::Float)
            }
        }
        Json::String(s) => Some(Value::Str(s.clone())),
        _ => None,
    }
}

fn features(body: &[u8], size: u32, limits: &Limits) -> Result<Vec<FeatureOut>, PluginError> {
    let v: Json =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the features result is not valid JSON: {e}")))?;
    let Json::Array(items) = v else {
        return Err(invalid("the features result is not a list"));
    };
    if items.len() > limits.max_features as usize {
        return Err(invalid(format!(
            "features() returned {} features; at most {} are allowed",
            items.len(),
            limits.max_features
        )));
    }
    let max_str = limits.max_feature_string as usize;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Json::Object(m) = item else {
            return Err(invalid(format!("feature {i} is not a dict")));
        };
        let coord = |name: &str| -> Result<u32, PluginError> {
            let v = m.get(name).ok_or_else(|| invalid(format!("feature {i} has no {name:?}")))?;
            match v.as_u64() {
                Some(c) if c < u64::from(size) => Ok(c as u32),
                _ => Err(invalid(format!("feature {i} {name}={} is outside the chunk (0..{})", quote(v), size - 1))),
            }
        };
        let (x, z) = (coord("x")?, coord("z")?);
        let kind = match m.get("kind") {
            Some(Json::String(k))
                if !k.is_empty()
                    && k.len() <= max_str
                    && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                k.clone()
            }
            other => {
                return Err(invalid(format!(
                    "feature {i} kind must be a non-empty string of a-z, 0-9, _ (at most {max_str}), not {}",
                    other.map_or("nothing".to_string(), quote)
                )));
            }
        };
        let props: Vec<(&String, &Json)> =
            m.iter().filter(|(k, _)| !matches!(k.as_str(), "x" | "z" | "kind")).collect();
        if props.len() > limits.max_feature_properties as usize {
            return Err(invalid(format!(
                "feature {i} has {} properties; at most {} are allowed",
                props.len(),
                limits.max_feature_properties
            )));
        }
        let mut properties = BTreeMap::new();
        for (k, v) in props {
            if !is_identifier(k) || k.len() > max_str {
                return Err(invalid(format!(
                    "feature {i} property name {:?} is not an identifier of at most {max_str} bytes",
                    clip_guest(k)
                )));
            }
            let val = scalar(v).ok_or_else(|| {
                invalid(format!(
                    "feature {i} property {k:?} is {}; use a bool, a 64-bit int, a finite float or a string",
                    quote(v)
                ))
            })?;
            if let Value::Str(s) = &val {
                if s.len() > max_str {
                    return Err(invalid(format!("feature {i} property {k:?} is longer than {max_str} bytes")));
                }
                if let Some(c) = disguising_char(s, false) {
                    return Err(invalid(format!(
                        "feature {i} property {k:?} contains the control or bidirectional character U+{:04X}; \
                         property strings must be plain text",
                        c as u32
                    )));
                }
            }
            properties.insert(k.clone(), val);
        }
        out.push(FeatureOut { x, z, kind, properties });
    }
    Ok(out)
}

/// Validates the load manifest `{hooks, params, warnings}`.
pub fn manifest(body: &[u8]) -> Result<(PluginInfo, Vec<String>), PluginError> {
    let v: Json =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the load manifest is not valid JSON: {e}")))?;
    let Json::Object(m) = v else { return Err(invalid("the load manifest is not an object")) };
    let mut hooks = Vec::new();
    for h in m.get("hooks").and_then(Json::as_array).ok_or_else(|| invalid("the load manifest has no hook list"))? {
        let h = h
            .as_str()
            .and_then(HookName::parse)
            .ok_or_else(|| invalid(format!("unknown hook {} in the load manifest", quote(h))))?;
        if !hooks.contains(&h) {
            hooks.push(h);
        }
    }
    hooks.sort();
    let empty = Map::new();
    let decls = match m.get("params") {
        None | Some(Json::Null) => &empty,
        Some(Json::Object(p)) => p,
        Some(_) => return Err(invalid("PARAMS in the load manifest is not a dict")),
    };
    if decls.len() > MAX_PARAMS {
        return Err(invalid(format!("PARAMS declares {} parameters; at most {MAX_PARAMS} are allowed", decls.len())));
    }
    let mut params = BTreeMap::new();
    for (name, d) in decls {
        params.insert(name.clone(), param(name, d)?);
    }
    let warnings = m
        .get("warnings")
        .and_then(Json::as_array)
        .map(|w| clip_warnings(w.iter().filter_map(Json::as_str).map(str::to_string).collect()))
        .unwrap_or_default();
    let info = PluginInfo { hooks, params };
    check_info(&info)?;
    Ok((info, warnings))
}

/// Checks what a plugin declared, however it arrived (the guest's manifest,
/// or a worker process's report of it): hooks, and every `PARAMS` entry.
pub fn check_info(info: &PluginInfo) -> Result<(), PluginError> {
    if info.hooks.is_empty() {
        return Err(PluginError::new(
            ErrorKind::MissingHook,
            "the plugin defines none of the hooks terrain, biome, features",
        ));
    }
    if info.hooks.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("the plugin's hook list is not sorted and unique"));
    }
    if info.params.len() > MAX_PARAMS {
        return Err(invalid(format!(
            "PARAMS declares {} parameters; at most {MAX_PARAMS} are allowed",
            info.params.len()
        )));
    }
    for (name, d) in &info.params {
        check_decl(name, d)?;
    }
    Ok(())
}

fn check_decl(name: &str, d: &ParamDecl) -> Result<(), PluginError> {
    if !is_identifier(name) || name.chars().count() > MAX_PARAM_NAME {
        return Err(invalid(format!(
            "PARAMS key {:?} is not a valid identifier of at most {MAX_PARAM_NAME} characters",
            clip_guest(name)
        )));
    }
    let bad = |msg: String| invalid(format!("PARAMS[{name:?}] {msg}"));
    match &d.default {
        Value::Float(f) if !f.is_finite() => return Err(bad("default is not finite".into())),
        Value::Str(s) if s.len() > MAX_PARAM_STR => {
            return Err(bad(format!("default is longer than {MAX_PARAM_STR} bytes")));
        }
        Value::Str(s) => {
            if let Some(c) = disguising_char(s, false) {
                return Err(bad(format!("default contains the control or bidirectional character U+{:04X}", c as u32)));
            }
        }
        _ => {}
    }
    for (k, b) in [("min", d.min), ("max", d.max)] {
        if b.is_some_and(|f| !f.is_finite()) {
            return Err(bad(format!("{k} is not a finite number")));
        }
    }
    let numeric = d.default.as_f64();
    if (d.min.is_some() || d.max.is_some()) && numeric.is_none() {
        return Err(bad(format!("has min/max but its default is {}", d.default.type_name())));
    }
    if let (Some(a), Some(b)) = (d.min, d.max)
        && a > b
    {
        return Err(bad(format!("min {a} is greater than max {b}")));
    }
    if let Some(x) = numeric
        && (d.min.is_some_and(|m| x < m) || d.max.is_some_and(|m| x > m))
    {
        return Err(bad(format!(
            "default {x} is outside [{}, {}]",
            d.min.unwrap_or(f64::NEG_INFINITY),
            d.max.unwrap_or(f64::INFINITY)
        )));
    }
    if d.doc.chars().count() > MAX_PARAM_DOC {
        return Err(bad(format!("doc is longer than {MAX_PARAM_DOC} characters")));
    }
    if let Some(c) = disguising_char(&d.doc, true) {
        return Err(bad(format!("doc contains the control or bidirectional character U+{:04X}", c as u32)));
    }
    Ok(())
}

/// Parses one `PARAMS` entry; [`check_decl`] checks its values.
fn param(name: &str, d: &Json) -> Result<ParamDecl, PluginError> {
    if !is_identifier(name) || name.chars().count() > MAX_PARAM_NAME {
        return Err(invalid(format!(
            "PARAMS key {:?} is not a valid identifier of at most {MAX_PARAM_NAME} characters",
            clip_guest(name)
        )));
    }
    let bad = |msg: String| invalid(format!("PARAMS[{name:?}] {msg}"));
    let Json::Object(d) = d else { return Err(bad("is not a dict".into())) };
    if let Some(k) = d.keys().find(|k| !matches!(k.as_str(), "default" | "min" | "max" | "doc")) {
        return Err(bad(format!("has unknown key {:?}", clip_guest(k))));
    }
    let default = d.get("default").ok_or_else(|| bad("has no default".into()))?;
    let default = scalar(default)
        .ok_or_else(|| bad(format!("default {} is not a bool, 64-bit int, finite float or string", quote(default))))?;
    let bound = |k: &str| -> Result<Option<f64>, PluginError> {
        match d.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => match v.as_f64().filter(|f| f.is_finite()) {
                Some(f) if !v.is_boolean() => Ok(Some(f)),
                _ => Err(bad(format!("{k} {} is not a finite number", quote(v)))),
            },
        }
    };
    let (min, max) = (bound("min")?, bound("max")?);
    let doc = match d.get("doc") {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) if s.chars().count() <= MAX_PARAM_DOC => s.clone(),
        Some(_) => return Err(bad(format!("doc is not a string of at most {MAX_PARAM_DOC} characters"))),
    };
    Ok(ParamDecl { default, min, max, doc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use worldloom_plugin_abi::LayerBuffers;

    fn input(size: u32) -> HookInput {
        let n = (size * size) as usize;
        HookInput {
            hook: HookName::Terrain,
            seed: 1,
            cx: 0,
            cz: 0,
            size,
            random_seed: 2,
            sea_level: 0.0,
            params: BTreeMap::new(),
            layers: LayerBuffers {
                height: vec![0.0; n],
                temperature: vec![0.0; n],
                moisture: vec![0.0; n],
                biome: vec![0; n],
            },
        }
    }

    /// The fixed header carries the sea level where the guest's
    /// `struct.Struct("<4sBBHIQiiQdIIII")` reads it, and a sea level that is
    /// not a finite number never reaches the guest.
    #[test]
    fn the_input_header_carries_a_finite_sea_level() {
        let l = Limits::default();
        let f = input_frame(&HookInput { sea_level: -40.5, ..input(2) }, 13, &l).unwrap();
        assert_eq!(&f[..4], frame::INPUT_MAGIC);
        assert_eq!(f64::from_le_bytes(f[36..44].try_into().unwrap()), -40.5);
        assert_eq!(f.len(), frame::INPUT_HEADER_LEN + 4 * 14);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = input_frame(&HookInput { sea_level: bad, ..input(2) }, 13, &l).unwrap_err();
            assert_eq!(e.kind, SandboxErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn terrain_bodies_are_checked_cell_by_cell() {
        let inp = input(4);
        let l = Limits::default();
        let mut body = Vec::new();
        let mut h = vec![1.0f32; 16];
        h[3 * 4 + 2] = f32::NAN;
        frame::put_f32s(&mut body, &h);
        let e = hook_output(HookName::Terrain, &body, &inp, 13, &l).unwrap_err();
        assert_eq!(e.message, "height[3][2] is NaN");
        let e = hook_output(HookName::Terrain, &body[..60], &inp, 13, &l).unwrap_err();
        assert!(e.message.contains("60 bytes, expected 64"), "{}", e.message);
        let mut body = Vec::new();
        frame::put_u16s(&mut body, &[0, 1, 2, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let e = hook_output(HookName::Biome, &body, &inp, 13, &l).unwrap_err();
        assert_eq!(e.message, "biome[0][3] is 13, but biome ids are 0..12");
    }

    #[test]
    fn features_are_checked() {
        let inp = input(4);
        let l = Limits { max_features: 2, ..Limits::default() };
        let ok = br#"[{"x":1,"z":3,"kind":"tree","h":2.5,"tall":true,"n":3,"s":"oak"}]"#;
        let HookOutput::Features(f) = hook_output(HookName::Features, ok, &inp, 13, &l).unwrap() else { panic!() };
        assert_eq!(f[0].properties["h"], Value::Float(2.5));
        assert_eq!(f[0].properties["n"], Value::Int(3));
        for (bad, want) in [
            (&br#"[{"x":4,"z":0,"kind":"a"}]"#[..], "outside the chunk"),
            (br#"[{"x":0,"z":0,"kind":"A"}]"#, "kind must be"),
            (br#"[{"x":0,"z":0,"kind":"a","bad name":1}]"#, "not an identifier"),
            (br#"[{"x":0,"z":0,"kind":"a","p":[1]}]"#, "use a bool"),
            (br#"[{"x":0,"z":0,"kind":"a"},{"x":0,"z":0,"kind":"a"},{"x":0,"z":0,"kind":"a"}]"#, "at most 2"),
            (br#"{"x":0}"#, "not a list"),
        ] {
            let e = hook_output(HookName::Features, bad, &inp, 13, &l).unwrap_err();
            assert!(e.message.contains(want), "{} !~ {want}", e.message);
        }
    }

    #[test]
    fn manifests_are_revalidated() {
        let (info, w) = manifest(
            br#"{"hooks":["terrain"],"params":{"scale":{"default":1.5,"min":0,"max":2,"doc":"x"}},"warnings":["w"]}"#,
        )
        .unwrap();
        assert_eq!(info.hooks, vec![HookName::Terrain]);
        assert_eq!(info.params["scale"].max, Some(2.0));
        assert_eq!(w, vec!["w".to_string()]);
        assert!(manifest(br#"{"hooks":["terraform"]}"#).is_err());
        assert_eq!(manifest(br#"{"hooks":[]}"#).unwrap_err().kind, ErrorKind::MissingHook);
        let e = manifest(br#"{"hooks":["biome"],"params":{"s":{"default":5,"min":0,"max":1}}}"#).unwrap_err();
        assert!(e.message.contains("outside"), "{}", e.message);
        let e = manifest(br#"{"hooks":["biome"],"params":{"s":{"default":"a","min":0}}}"#).unwrap_err();
        assert!(e.message.contains("min/max"), "{}", e.message);
        let e = manifest(br#"{"hooks":["biome"],"params":{"1s":{"default":1}}}"#).unwrap_err();
        assert!(e.message.contains("identifier"), "{}", e.message);
        // PARAMS names: at most 64 characters; text without control or bidi characters.
        let long = format!(r#"{{"hooks":["biome"],"params":{{"{}":{{"default":1}}}}}}"#, "p".repeat(65));
        let e = manifest(long.as_bytes()).unwrap_err();
        assert!(e.message.contains("at most 64 characters"), "{}", e.message);
        let ok = format!(r#"{{"hooks":["biome"],"params":{{"{}":{{"default":1}}}}}}"#, "p".repeat(64));
        assert!(manifest(ok.as_bytes()).is_ok());
        let e = manifest(br#"{"hooks":["biome"],"params":{"p":{"default":"\u001b[2J"}}}"#).unwrap_err();
        assert!(e.message.contains("U+001B"), "{}", e.message);
        let e = manifest(br#"{"hooks":["biome"],"params":{"p":{"default":1,"doc":"a\u202eb"}}}"#).unwrap_err();
        assert!(e.message.contains("U+202E"), "{}", e.message);
    }
}
