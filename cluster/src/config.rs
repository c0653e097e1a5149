//! The server's configuration: one versioned type, read from an optional
//! TOML file, then `WORLDLOOM_*` environment variables, then defaults.
//!
//! Environment names are the field path upper-cased, sections joined by a
//! double underscore: `WORLDLOOM_LISTEN`, `WORLDLOOM_LIMITS__FUEL`,
//! `WORLDLOOM_S3__ENDPOINT`. The loader takes the environment as an argument
//! so it is tested without touching the process environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use worldloom_plugin_abi::Limits;

use crate::error::{Error, Result};
use crate::storage::S3Settings;

/// Version of the configuration schema this build reads.
pub const CONFIG_VERSION: u32 = 1;
/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "WORLDLOOM_";

/// Streaming limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Largest subscription radius in chunks (a radius r square holds (2r+1)^2 chunks).
    pub max_radius: u32,
    /// Chunks a single stream has in flight at once.
    pub inflight: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self { max_radius: 32, inflight: 8 }
    }
}

/// Workshop limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkshopSettings {
    /// Largest plugin source, bytes.
    pub max_source_bytes: usize,
    /// Most versions one plugin may have.
    pub max_versions: usize,
    /// Most plugins one world may attach.
    pub max_plugins_per_world: usize,
}

impl Default for WorkshopSettings {
    fn default() -> Self {
        Self { max_source_bytes: 256 << 10, max_versions: 100, max_plugins_per_world: 8 }
    }
}

/// How the node runs plugins: in sandbox worker processes forked from a
/// zygote, supervised and killed when they do not answer in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// The executable started as the sandbox zygote, as `EXE sandbox-worker`
    /// (a `worldloom` binary); unset means this binary.
    pub worker_exe: Option<PathBuf>,
    /// Memory of warm plugin sandboxes on this node (their linear memory),
    /// shared out evenly between the generation workers, bytes.
    pub warm_memory_bytes: u64,
    /// Most warm sandboxes one worker keeps.
    pub warm_per_worker: usize,
    /// A worker that has not answered a call by its deadline plus this is
    /// killed and replaced, milliseconds.
    pub grace_ms: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self { worker_exe: None, warm_memory_bytes: 2 << 30, warm_per_worker: 16, grace_ms: 1000 }
    }
}

/// A generation node's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Chunk and check jobs that may wait for a generation thread; past
    /// that a request is refused at once as `busy` (HTTP 503, Retry-After)
    /// instead of queueing without bound.
    pub queue_depth: usize,
    /// Memory for hot chunk envelopes (stored chunks this node answered
    /// recently), consulted before storage, least recently used out first,
    /// bytes; 0 turns the cache off.
    pub chunk_cache_bytes: u64,
    /// Generated chunks whose storage writes may be pending behind answers
    /// already sent (write behind); past that an answer waits for a write to
    /// finish. 0 writes through: every answer waits for its chunk's write.
    pub pending_writes: usize,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self { queue_depth: 4096, chunk_cache_bytes: 256 << 20, pending_writes: 1024 }
    }
}

/// How coordinators and nodes find and trust each other.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Shared secret every coordinator and node presents on the internal
    /// endpoints (heartbeats, node requests); required by the cluster roles.
    pub secret: Option<String>,
    /// How often a node sends its heartbeat to each coordinator, ms.
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is removed and its regions move, ms.
    pub node_timeout_ms: u64,
    /// Nodes a chunk request is tried on before it fails.
    pub attempts: u32,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self { secret: None, heartbeat_ms: 1000, node_timeout_ms: 3000, attempts: 3 }
    }
}

/// Everything an operator can set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Schema version of this configuration.
    pub version: u32,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Storage URI: `fs://PATH`, `memory://` or `s3://BUCKET/PREFIX`.
    pub data: String,
    /// S3 endpoint, region and credentials (else the usual AWS_* variables).
    pub s3: S3Settings,
    /// Where `scripts/fetch-runtime` put the Python runtime.
    pub runtime_dir: PathBuf,
    /// Where compiled runtime modules are cached.
    pub cache_dir: PathBuf,
    /// Generation worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Largest accepted HTTP request body, bytes.
    pub max_body_bytes: usize,
    /// Per-call plugin limits.
    pub limits: Limits,
    pub stream: StreamSettings,
    pub workshop: WorkshopSettings,
    pub sandbox: SandboxSettings,
    pub cluster: ClusterSettings,
    pub node: NodeSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: "fs://./data".into(),
            s3: S3Settings::default(),
            runtime_dir: PathBuf::from(".worldloom/runtime/python"),
            cache_dir: PathBuf::from(".worldloom/cache"),
            workers: 0,
            max_body_bytes: 1 << 20,
            limits: Limits::default(),
            stream: StreamSettings::default(),
            workshop: WorkshopSettings::default(),
            sandbox: SandboxSettings::default(),
            cluster: ClusterSettings::default(),
            node: NodeSettings::default(),
        }
    }
}

impl Config {
    /// Reads the file (if any), applies `WORLDLOOM_*` variables from `env`, fills defaults, validates.
    pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config> {
        let mut tree = toml::Table::try_from(Config::default()).expect("the default config serialises");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::invalid("config", format!("cannot read {}: {e}", path.display())))?;
            let from_file: toml::Table =
                toml::from_str(&text).map_err(|e| Error::invalid("config", format!("{}: {e}", path.display())))?;
            merge(&mut tree, from_file);
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
            set_path(&mut tree, &path, value).map_err(|why| Error::invalid(name.clone(), format!("{name}: {why}")))?;
        }
        let config: Config =
            tree.try_into().map_err(|e: toml::de::Error| Error::invalid("config", e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// The process environment, for [`Config::load`]. `WORLDLOOM_CONFIG` names the
    /// file itself and is not a setting.
    pub fn process_env() -> BTreeMap<String, String> {
        std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != "WORLDLOOM_CONFIG").collect()
    }

    fn validate(&self) -> Result<()> {
        if self.version != CONFIG_VERSION {
            return Err(Error::invalid(
                "version",
                format!("config version {} is not supported (this build reads {CONFIG_VERSION})", self.version),
            ));
        }
        let l = &self.limits;
        for (field, ok) in [
            ("limits.fuel", l.fuel > 0),
            ("limits.load_fuel", l.load_fuel > 0),
            ("limits.deadline_ms", l.deadline_ms > 0),
            ("limits.load_deadline_ms", l.load_deadline_ms > 0),
            ("limits.memory_bytes", l.memory_bytes >= 64 << 20),
            ("limits.output_bytes", l.output_bytes >= 16 << 10),
            ("stream.max_radius", self.stream.max_radius <= 256),
            ("stream.inflight", (1..=256).contains(&self.stream.inflight)),
            ("workshop.max_source_bytes", (1..=16 << 20).contains(&self.workshop.max_source_bytes)),
            ("workshop.max_versions", self.workshop.max_versions >= 1),
            ("workshop.max_plugins_per_world", (1..=64).contains(&self.workshop.max_plugins_per_world)),
            ("limits.snapshot_bytes", l.snapshot_bytes >= 64 << 20),
            ("sandbox.warm_memory_bytes", self.sandbox.warm_memory_bytes >= 64 << 20),
            ("sandbox.warm_per_worker", (1..=256).contains(&self.sandbox.warm_per_worker)),
            ("sandbox.grace_ms", (1..=60_000).contains(&self.sandbox.grace_ms)),
            ("cluster.heartbeat_ms", (10..=60_000).contains(&self.cluster.heartbeat_ms)),
            ("cluster.node_timeout_ms", self.cluster.node_timeout_ms > self.cluster.heartbeat_ms),
            ("cluster.attempts", (1..=10).contains(&self.cluster.attempts)),
            ("node.queue_depth", (1..=1 << 20).contains(&self.node.queue_depth)),
            ("node.pending_writes", self.node.pending_writes <= 1 << 20),
        ] {
            if !ok {
                return Err(Error::invalid(field, format!("{field} is out of range")));
            }
        }
        Ok(())
    }

    /// Worker threads to start.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map_or(2, |n| n.get()) }
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Sets a value by path, typed after the value already there (strings stay strings).
fn set_path(tree: &mut toml::Table, path: &[String], raw: &str) -> std::result::Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty name")?;
    let mut table = tree;
    for p in parents {
        table = match table.get_mut(p) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(format!("unknown setting section {p:?}")),
        };
    }
    let value = match table.get(last) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().map_err(|_| format!("{raw:?} is not an integer"))?)
        }
        Some(toml::Value::Float(_)) => toml::Value::Float(raw.parse().map_err(|_| format!("{raw:?} is not a number"))?),
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.parse().map_err(|_| format!("{raw:?} is not true or false"))?)
        }
        // Strings, and optional settings that are unset by default.
        _ => toml::Value::String(raw.to_owned()),
    };
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::load(None, &BTreeMap::new()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data, "fs://./data");
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("wl-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("worldloom.toml");
        std::fs::write(&file, "data = \"memory://\"\nworkers = 3\n[limits]\nfuel = 1000\ndeadline_ms = 50\n").unwrap();
        let c = Config::load(
            Some(&file),
            &env(&[("WORLDLOOM_LIMITS__FUEL", "2000"), ("WORLDLOOM_S3__ACCESS_KEY_ID", "12345"), ("HOME", "/x")]),
        )
        .unwrap();
        assert_eq!(c.data, "memory://");
        assert_eq!(c.workers, 3);
        assert_eq!(c.limits.fuel, 2000);
        assert_eq!(c.limits.deadline_ms, 50);
        assert_eq!(c.s3.access_key_id.as_deref(), Some("12345"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_or_mistyped_settings_are_named() {
        let e = Config::load(None, &env(&[("WORLDLOOM_LIMITS__FUEL", "lots")])).unwrap_err();
        assert!(e.message.contains("WORLDLOOM_LIMITS__FUEL"), "{e}");
        let e = Config::load(None, &env(&[("WORLDLOOM_NOPE__X", "1")])).unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
        let e = Config::load(None, &env(&[("WORLDLOOM_LISTEN", "not an address")])).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Invalid);
        let e = Config::load(None, &env(&[("WORLDLOOM_TYPO", "1")])).unwrap_err();
        assert!(e.message.contains("typo"), "{e}");
        let e = Config::load(None, &env(&[("WORLDLOOM_NODE__QUEUE_DEPTH", "0")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("node.queue_depth"), "{e}");
        let c = Config::load(None, &env(&[("WORLDLOOM_NODE__QUEUE_DEPTH", "16")])).unwrap();
        assert_eq!(c.node.queue_depth, 16);
    }
}
