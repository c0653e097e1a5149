//! The plugin workshop: uploaded, validated, immutable plugin versions,
//! owned by their first uploader, stored in object storage and indexed in
//! memory for listing and search. The index is a cache: a plugin is read
//! through from storage when it is not cached or its entry is older than
//! [`crate::FRESH`], and a listing re-reads storage at most that often, so a
//! plugin uploaded through another coordinator is visible here at once.
//!
//! Storage layout (names hex-encoded, never raw): the source under
//! `plugins/sources/{sha256}`, then `plugins/names/{name}` (the owner), then
//! `plugins/versions/{name}/{version}`. A version is listed only once its
//! record exists, and its record is written (create-if-absent, exactly one
//! winner) only after its source.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use worldloom_cluster::model::{PluginNameRecord, PluginVersionRecord};
use worldloom_cluster::storage::{self, Key, ObjectStore, source_sha256};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_plugin_abi::ABI_VERSION;

use crate::Coordinator;
use crate::attach::parse_runtime;
use crate::auth::{self, Account};

/// Longest plugin description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Longest version string.
pub const MAX_VERSION_LEN: usize = 64;
/// Largest page of a listing.
pub const MAX_PAGE: usize = 100;

/// `POST /v1/plugins`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub runtime: Option<String>,
    pub source: String,
}

/// One plugin name with its versions, newest last.
#[derive(Clone, Debug)]
pub struct PluginEntry {
    pub owner: String,
    pub created_unix_s: u64,
    pub versions: BTreeMap<semver::Version, PluginVersionRecord>,
}

impl PluginEntry {
    /// The newest version that is not yanked (or the newest at all).
    pub fn latest(&self) -> Option<&PluginVersionRecord> {
        self.versions.values().rev().find(|v| !v.yanked).or_else(|| self.versions.values().next_back())
    }
}

/// The in-memory index of the workshop (a cache of storage).
#[derive(Default)]
pub struct Index {
    /// Each plugin as last read, and when (`None`: known not to exist).
    plugins: RwLock<BTreeMap<String, (Option<PluginEntry>, Instant)>>,
    /// When every plugin was last listed from storage.
    listed: Mutex<Option<Instant>>,
}

fn name_key(name: &str) -> Key {
    Key::opaque("plugins/names/", name.as_bytes())
}

fn versions_dir(name: &str) -> Key {
    Key::dir(&format!("{}/", Key::opaque("plugins/versions/", name.as_bytes())))
}

fn version_key(name: &str, version: &str) -> Key {
    Key::opaque(versions_dir(name).as_str(), version.as_bytes())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses a version, naming the field; only canonical semver is accepted.
pub fn parse_version(field: &str, version: &str) -> Result<semver::Version> {
    if version.len() > MAX_VERSION_LEN {
        return Err(Error::invalid(field, format!("{field} is longer than {MAX_VERSION_LEN} characters")));
    }
    semver::Version::parse(version).map_err(|e| {
        Error::invalid(field, format!("{field} {version:?} is not a semantic version like 1.2.0: {e}"))
            .with_code("invalid_version")
    })
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"),
        )
        .with_field("description"));
    }
    if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::invalid("description", "description must not contain control characters"));
    }
    Ok(())
}

impl Index {
    /// Loads every stored plugin name and version.
    pub async fn load(store: &dyn ObjectStore) -> Result<Index> {
        let index = Index::default();
        index.reload_all(store).await?;
        Ok(index)
    }

    /// One plugin from storage: its name record and every version. A record
    /// that does not decode is an error naming its key, never skipped.
    async fn load_one(store: &dyn ObjectStore, name: &str) -> Result<Option<PluginEntry>> {
        let Some(n) = storage::get_value::<PluginNameRecord>(store, &name_key(name)).await? else {
            return Ok(None);
        };
        let mut entry = PluginEntry { owner: n.owner, created_unix_s: n.created_unix_s, versions: BTreeMap::new() };
        for key in store.list(&versions_dir(name)).await? {
            let Some(v) = storage::get_value::<PluginVersionRecord>(store, &key).await? else { continue };
            let parsed = semver::Version::parse(&v.version).map_err(|e| {
                Error::internal(format!("{key}: a stored plugin version {:?} is not semver: {e}", v.version))
            })?;
            if v.name != name {
                return Err(Error::internal(format!("{key}: holds a version of {:?}, not {name:?}", v.name)));
            }
            entry.versions.insert(parsed, v);
        }
        Ok(Some(entry))
    }

    async fn reload_all(&self, store: &dyn ObjectStore) -> Result<()> {
        let mut fresh = BTreeMap::new();
        let now = Instant::now();
        for key in store.list(&Key::dir("plugins/names/")).await? {
            let Some(n) = storage::get_value::<PluginNameRecord>(store, &key).await? else { continue };
            let entry = Self::load_one(store, &n.name).await?;
            fresh.insert(n.name, (entry, now));
        }
        *self.plugins.write().expect("workshop lock") = fresh;
        *self.listed.lock().expect("workshop lock") = Some(now);
        Ok(())
    }

    /// A plugin, read through from storage when not cached or stale.
    pub async fn get(&self, store: &dyn ObjectStore, name: &str) -> Result<Option<PluginEntry>> {
        if let Some((entry, at)) = self.plugins.read().expect("workshop lock").get(name)
            && at.elapsed() < crate::FRESH
        {
            return Ok(entry.clone());
        }
        let entry = Self::load_one(store, name).await?;
        self.plugins.write().expect("workshop lock").insert(name.to_owned(), (entry.clone(), Instant::now()));
        Ok(entry)
    }

    pub fn len(&self) -> usize {
        self.plugins.read().expect("workshop lock").values().filter(|(e, _)| e.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Plugins whose name or latest description contains `q` (case-insensitive), by name.
    pub async fn search(
        &self,
        store: &dyn ObjectStore,
        q: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<(String, PluginEntry)>)> {
        let stale = self.listed.lock().expect("workshop lock").is_none_or(|at| at.elapsed() >= crate::FRESH);
        if stale {
            self.reload_all(store).await?;
        }
        let q = q.to_lowercase();
        let plugins = self.plugins.read().expect("workshop lock");
        let hits: Vec<(&String, &PluginEntry)> = plugins
            .iter()
            .filter_map(|(name, (entry, _))| entry.as_ref().map(|e| (name, e)))
            .filter(|(name, entry)| {
                q.is_empty()
                    || name.contains(&q)
                    || entry.latest().is_some_and(|v| v.description.to_lowercase().contains(&q))
            })
            .collect();
        let total = hits.len();
        let page = hits.into_iter().skip(offset).take(limit).map(|(n, e)| (n.clone(), e.clone())).collect();
        Ok((total, page))
    }

    /// Records a version this process just stored.
    fn insert(&self, record: PluginVersionRecord, parsed: semver::Version, owner: &str, created: u64) {
        let mut plugins = self.plugins.write().expect("workshop lock");
        let slot = plugins.entry(record.name.clone()).or_insert_with(|| (None, Instant::now()));
        let entry = slot.0.get_or_insert_with(|| PluginEntry {
            owner: owner.to_owned(),
            created_unix_s: created,
            versions: BTreeMap::new(),
        });
        entry.versions.insert(parsed, record);
    }
}

/// A version as the API shows it.
#[derive(Debug, Serialize)]
pub struct VersionView<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub runtime: &'a str,
    pub sha256: &'a str,
    pub size_bytes: u64,
    pub hooks: &'a [worldloom_plugin_abi::HookName],
    pub params: &'a BTreeMap<String, worldloom_plugin_abi::ParamDecl>,
    pub abi_version: u32,
    pub owner: &'a str,
    pub created_unix_s: u64,
    pub yanked: bool,
    pub source_url: String,
}

impl<'a> From<&'a PluginVersionRecord> for VersionView<'a> {
    fn from(v: &'a PluginVersionRecord) -> Self {
        VersionView {
            name: &v.name,
            version: &v.version,
            description: &v.description,
            runtime: v.runtime.as_str(),
            sha256: &v.sha256,
            size_bytes: v.size_bytes,
            hooks: &v.info.hooks,
            params: &v.info.params,
            abi_version: v.abi_version,
            owner: &v.owner,
            created_unix_s: v.created_unix_s,
            yanked: v.yanked,
            source_url: format!("/v1/plugins/{}/{}/source", v.name, v.version),
        }
    }
}

impl Coordinator {
    /// Validates a plugin in the sandbox and stores it as a new immutable version.
    pub async fn upload_plugin(&self, account: &Account, up: Upload) -> Result<PluginVersionRecord> {
        auth::check_name("name", &up.name)?;
        let parsed = parse_version("version", &up.version)?;
        let version = parsed.to_string();
        check_description(&up.description)?;
        let runtime = parse_runtime("runtime", up.runtime.as_deref())?;
        let max_source = self.config.workshop.max_source_bytes;
        if up.source.len() > max_source {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("source is {} bytes; the limit is {max_source}", up.source.len()),
            )
            .with_field("source"));
        }
        self.check_upload(account, &up.name, &parsed).await?;
        // The slow part, outside the write lock.
        let info = self.validate_plugin("source", &up.name, &up.source).await?;
        let _guard = self.writes.lock().await;
        self.check_upload(account, &up.name, &parsed).await?;
        let sha256 = self.store_source(&up.source).await?;
        let created = now();
        let store = self.store().as_ref();
        let mut owner_created = created;
        if let Some(existing) = self.workshop.get(store, &up.name).await? {
            owner_created = existing.created_unix_s;
        } else {
            let claim =
                PluginNameRecord { name: up.name.clone(), owner: account.name.clone(), created_unix_s: created };
            if !storage::put_new_value(store, &name_key(&up.name), &claim).await? {
                // Someone claimed the name meanwhile (perhaps on another coordinator).
                let existing: Option<PluginNameRecord> = storage::get_value(store, &name_key(&up.name)).await?;
                if let Some(e) = existing {
                    if e.owner != account.name {
                        return Err(owned_by_someone_else(&up.name));
                    }
                    owner_created = e.created_unix_s;
                }
            }
        }
        let record = PluginVersionRecord {
            name: up.name.clone(),
            version: version.clone(),
            description: up.description,
            runtime,
            sha256,
            size_bytes: up.source.len() as u64,
            info,
            abi_version: ABI_VERSION,
            owner: account.name.clone(),
            created_unix_s: created,
            yanked: false,
        };
        if !storage::put_new_value(store, &version_key(&up.name, &version), &record).await? {
            return Err(version_exists(&up.name, &version));
        }
        self.workshop.insert(record.clone(), parsed, &account.name, owner_created);
        tracing::info!(plugin = %record.name, version = %record.version, owner = %account.name, "plugin uploaded");
        Ok(record)
    }

    async fn check_upload(&self, account: &Account, name: &str, version: &semver::Version) -> Result<()> {
        let Some(entry) = self.workshop.get(self.store().as_ref(), name).await? else { return Ok(()) };
        if entry.owner != account.name {
            return Err(owned_by_someone_else(name));
        }
        if entry.versions.contains_key(version) {
            return Err(version_exists(name, &version.to_string()));
        }
        let max = self.config.workshop.max_versions;
        if entry.versions.len() >= max {
            return Err(Error::invalid(
                "version",
                format!("plugin {name} already has {max} versions, the most allowed"),
            )
            .with_code("too_many_versions"));
        }
        Ok(())
    }

    /// Marks a version yanked (or not): existing worlds keep it, new
    /// attachments are refused. A compare-and-swap on the version record.
    pub async fn set_yanked(
        &self,
        account: &Account,
        name: &str,
        version: &str,
        yanked: bool,
    ) -> Result<PluginVersionRecord> {
        let (entry, parsed) = self.find_version(name, version).await?;
        if entry.owner != account.name {
            return Err(Error::new(ErrorKind::Forbidden, format!("plugin {name} belongs to another account")));
        }
        let _guard = self.writes.lock().await;
        let key = version_key(name, &entry.versions[&parsed].version);
        let store = self.store().as_ref();
        for _ in 0..8 {
            let (mut record, at) = storage::get_value_versioned::<PluginVersionRecord>(store, &key)
                .await?
                .ok_or_else(|| unknown_version(name, version))?;
            if record.yanked == yanked {
                return Ok(record);
            }
            record.yanked = yanked;
            if storage::put_value_if(store, &key, &record, &at).await? {
                self.workshop.insert(record.clone(), parsed, &entry.owner, entry.created_unix_s);
                return Ok(record);
            }
        }
        Err(Error::new(ErrorKind::Conflict, format!("{name}@{version} kept changing; retry"))
            .with_code("concurrent_change"))
    }

    /// A plugin's entry and the parsed version, or 404s naming what is missing.
    pub async fn find_version(&self, name: &str, version: &str) -> Result<(PluginEntry, semver::Version)> {
        let entry = self.workshop.get(self.store().as_ref(), name).await?.ok_or_else(|| unknown_plugin(name))?;
        let parsed = semver::Version::parse(version).map_err(|_| unknown_version(name, version))?;
        if !entry.versions.contains_key(&parsed) {
            return Err(unknown_version(name, version));
        }
        Ok((entry, parsed))
    }

    /// A stored source, verified against its hash.
    pub async fn plugin_source(&self, record: &PluginVersionRecord) -> Result<bytes::Bytes> {
        let bytes =
            self.store().get(&Key::plugin_source(&record.sha256)?).await?.ok_or_else(|| {
                Error::internal(format!("the source of {}@{} is missing", record.name, record.version))
            })?;
        if source_sha256(&bytes) != record.sha256 {
            return Err(Error::internal(format!(
                "the stored source of {}@{} does not match its hash",
                record.name, record.version
            )));
        }
        Ok(bytes)
    }
}

fn owned_by_someone_else(name: &str) -> Error {
    Error::new(ErrorKind::Forbidden, format!("the plugin name {name:?} belongs to another account")).with_field("name")
}

fn version_exists(name: &str, version: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("{name}@{version} already exists; versions are immutable, upload a new version"),
    )
    .with_field("version")
    .with_code("version_exists")
}

pub(crate) fn unknown_plugin(name: &str) -> Error {
    Error::not_found(format!("no plugin named {name:?} in the workshop")).with_code("unknown_plugin")
}

pub(crate) fn unknown_version(name: &str, version: &str) -> Error {
    Error::not_found(format!("plugin {name:?} has no version {version:?}")).with_code("unknown_version")
}
