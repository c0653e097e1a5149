//! Attaching workshop plugins to a world (checking the world's parameter
//! values against each plugin's `PARAMS` and pinning it by the SHA-256 of its
//! source), and checking plugins in the sandbox on a node.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use worldloom_cluster::model::AttachedPlugin;
use worldloom_cluster::protocol::{NodeRequest, NodeResponse, PluginCheck};
use worldloom_cluster::storage::{Key, source_sha256};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_plugin_abi::{PluginInfo, RuntimeKind, Value, params};

use crate::Coordinator;
use crate::actor::RouteBy;

/// One entry of a world's `plugins` list: a workshop plugin version and
/// the world's values for its `PARAMS`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRequest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
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
        let limits = self.config.limits;
        let request = NodeRequest::CheckPlugin {
            runtime: RuntimeKind::Python,
            name: name.to_owned(),
            source: source.to_owned(),
            limits,
        };
        let deadline = std::time::Duration::from_millis(limits.load_deadline_ms + 15_000);
        match self.ask_node(RouteBy::Key(source_sha256(source)), request, deadline).await? {
            NodeResponse::PluginCheck(check) => Ok(check),
            other => Err(Error::internal(format!("a node answered a plugin check with {other:?}"))),
        }
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

    /// Resolves workshop plugins for a world, checking each exists, is not
    /// yanked, and accepts the world's parameter values; pins each by its hash.
    pub async fn attach(&self, requests: Vec<PluginRequest>) -> Result<Vec<AttachedPlugin>> {
        let max = self.config.workshop.max_plugins_per_world;
        if requests.len() > max {
            return Err(Error::invalid(
                "plugins",
                format!("a world may attach at most {max} plugins, got {}", requests.len()),
            ));
        }
        let mut out = Vec::with_capacity(requests.len());
        for (i, req) in requests.into_iter().enumerate() {
            let field = format!("plugins[{i}]");
            let (entry, parsed) = self.find_version(&req.name, &req.version).await.map_err(|e| {
                if e.kind != ErrorKind::NotFound {
                    return e;
                }
                let which = if e.code == Some("unknown_plugin") { "name" } else { "version" };
                Error::invalid(format!("{field}.{which}"), format!("{field}: {}", e.message)).with_code(e.code())
            })?;
            let record = entry.versions[&parsed].clone();
            if record.yanked {
                return Err(Error::invalid(
                    format!("{field}.version"),
                    format!("{field}: {}@{} is yanked; pick another version", record.name, record.version),
                )
                .with_code("plugin_yanked"));
            }
            let params = resolve_params(&field, &record.info, &req.params)?;
            out.push(AttachedPlugin {
                name: record.name,
                version: record.version,
                sha256: record.sha256,
                runtime: record.runtime,
                params,
            });
        }
        Ok(out)
    }
}
