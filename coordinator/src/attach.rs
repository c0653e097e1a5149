//! Attaching plugins to a world: checking each in the sandbox (on a node),
//! checking the world's parameter values against its `PARAMS`, and pinning
//! it by the SHA-256 of its source.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use worldloom_cluster::model::AttachedPlugin;
use worldloom_cluster::protocol::{CheckPlugin, PluginCheck};
use worldloom_cluster::storage::Key;
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_plugin_abi::{PluginInfo, RuntimeKind, Value, params};

use crate::Coordinator;
use crate::actor::RouteCheck;

/// Most plugins one world may attach.
pub const MAX_PLUGINS_PER_WORLD: usize = 8;
/// Largest plugin source, bytes.
pub const MAX_SOURCE_BYTES: usize = 256 << 10;

/// One entry of a world's `plugins` list, inline: `{"source", "runtime", "params", "name"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRequest {
    /// A label for the plugin in chunk failure reports; `inline` by default.
    #[serde(default)]
    pub name: Option<String>,
    pub source: String,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
}

/// Lowercase hex SHA-256 of a plugin source.
pub fn source_sha256(source: &str) -> String {
    hex::encode(sha2::Sha256::digest(source.as_bytes()))
}

/// Parses a runtime name, naming the field on error.
pub fn parse_runtime(field: &str, runtime: Option<&str>) -> Result<RuntimeKind> {
    let name = runtime.unwrap_or("python");
    RuntimeKind::parse(name).ok_or_else(|| {
        let known: Vec<&str> = RuntimeKind::ALL.iter().map(|r| r.as_str()).collect();
        Error::invalid(field, format!("{field}: unknown runtime {name:?} (known: {})", known.join(", ")))
            .with_code("unknown_runtime")
    })
}

/// The diagnostics of a failed check, as the client sees them.
pub fn diagnostics(check: &PluginCheck) -> serde_json::Value {
    json!({ "error": check.error, "warnings": check.warnings, "log": check.log })
}

/// Checks the world's values for a plugin's parameters.
pub fn resolve_params(
    field: &str,
    info: &PluginInfo,
    given: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>> {
    params::resolve(&info.params, given).map_err(|p| {
        let field = format!("{field}.params.{}", p.name);
        Error::invalid(field.clone(), format!("{field}: {}", p.message)).with_code("invalid_plugin_params")
    })
}

impl Coordinator {
    /// Loads a plugin in a node's sandbox and reports what it defines; stores nothing.
    pub async fn check_plugin(&self, name: &str, source: &str) -> Result<PluginCheck> {
        let node = self
            .actor()
            .send(RouteCheck { sha256: source_sha256(source) })
            .await
            .map_err(|_| Error::unavailable("the coordinator is shutting down"))?
            .ok_or_else(|| Error::unavailable("no node is live to check the plugin; retry shortly"))?;
        node.check
            .send(CheckPlugin { name: name.to_owned(), source: source.to_owned() })
            .await
            .map_err(|_| Error::unavailable("the node did not answer; retry shortly"))?
    }

    /// Checks a plugin and fails with a 422 carrying its diagnostics if it does not load.
    pub async fn validate_plugin(&self, field: &str, name: &str, source: &str) -> Result<PluginInfo> {
        let check = self.check_plugin(name, source).await?;
        match (&check.info, &check.error) {
            (Some(info), None) => Ok(info.clone()),
            (_, error) => {
                let why = error.as_ref().map_or_else(|| "it did not load".to_owned(), |e| e.to_string());
                Err(Error::invalid(field, format!("{field}: the plugin does not load: {why}"))
                    .with_code("plugin_invalid")
                    .with_details(diagnostics(&check)))
            }
        }
    }

    /// Stores a source under its hash (idempotent) and returns the hash.
    pub async fn store_source(&self, source: &str) -> Result<String> {
        let sha = source_sha256(source);
        let key = Key::plugin_source(&sha)?;
        if self.store().get(&key).await?.is_none() {
            self.store().put(&key, Bytes::copy_from_slice(source.as_bytes())).await?;
        }
        Ok(sha)
    }

    /// Validates inline plugins and pins each by its source hash.
    pub async fn attach(&self, requests: Vec<PluginRequest>) -> Result<Vec<AttachedPlugin>> {
        if requests.len() > MAX_PLUGINS_PER_WORLD {
            return Err(Error::invalid(
                "plugins",
                format!("a world may attach at most {MAX_PLUGINS_PER_WORLD} plugins, got {}", requests.len()),
            ));
        }
        let mut out = Vec::with_capacity(requests.len());
        for (i, req) in requests.into_iter().enumerate() {
            let field = format!("plugins[{i}]");
            let runtime = parse_runtime(&format!("{field}.runtime"), req.runtime.as_deref())?;
            if req.source.len() > MAX_SOURCE_BYTES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("{field}.source is {} bytes; the limit is {MAX_SOURCE_BYTES}", req.source.len()),
                )
                .with_field(format!("{field}.source")));
            }
            let name = match req.name {
                Some(n) => crate::api::check_label(&format!("{field}.name"), &n)?,
                None => "inline".to_owned(),
            };
            let info = self.validate_plugin(&format!("{field}.source"), &name, &req.source).await?;
            let params = resolve_params(&field, &info, &req.params)?;
            let sha256 = self.store_source(&req.source).await?;
            out.push(AttachedPlugin { name, version: "inline".into(), sha256, runtime, params });
        }
        Ok(out)
    }
}
