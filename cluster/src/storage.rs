//! Object storage behind one small trait, with OpenDAL as the backend chosen
//! by URI scheme: `fs://PATH` (default), `memory://`, `s3://BUCKET/PREFIX`.
//!
//! Invariants every backend keeps: a `put` is atomic (a reader sees the old
//! object or the new one, never a torn one), and `put_new` creates an object
//! only if absent, with exactly one winner among concurrent writers.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use opendal::Operator;
use serde::{Deserialize, Serialize};
use worldloom_worldgen::ChunkCoord;

use crate::error::{Error, Result};
use crate::ids::WorldId;
use crate::wire::{self, Versioned};

/// A storage key. Built only by the constructors below from validated ids,
/// integers and hex digests, so no user-supplied text ever becomes a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Prefix of all worlds.
    pub fn worlds() -> Key {
        Key("worlds/".into())
    }

    pub fn world(id: &WorldId) -> Key {
        Key(format!("worlds/{id}"))
    }

    /// A generated chunk of one world revision.
    pub fn chunk(world: &WorldId, revision: u32, c: ChunkCoord) -> Key {
        Key(format!("chunks/{world}/r{revision}/{}_{}", c.cx, c.cz))
    }

    /// A plugin source, addressed by the lowercase hex SHA-256 of its bytes.
    pub fn plugin_source(sha256: &str) -> Result<Key> {
        if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Key(format!("plugins/sources/{sha256}")))
        } else {
            Err(Error::invalid("sha256", "a SHA-256 is 64 lowercase hex digits"))
        }
    }

    /// A key below `prefix` named by arbitrary bytes, hex-encoded so they can never form a path.
    pub fn opaque(prefix: &str, name: &[u8]) -> Key {
        debug_assert!(prefix.ends_with('/') && !prefix.contains(".."));
        Key(format!("{prefix}{}", hex::encode(name)))
    }

    /// Decodes the last segment of a key made by [`Key::opaque`].
    pub fn opaque_name(&self) -> Option<Vec<u8>> {
        hex::decode(self.0.rsplit('/').next()?).ok()
    }

    pub fn dir(prefix: &str) -> Key {
        debug_assert!(prefix.ends_with('/'));
        Key(prefix.to_owned())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The storage the cluster needs, and nothing more.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The object, or `None` if there is none.
    async fn get(&self, key: &Key) -> Result<Option<Bytes>>;
    /// Creates or atomically replaces the object.
    async fn put(&self, key: &Key, value: Bytes) -> Result<()>;
    /// Creates the object only if absent; `false` if it already existed.
    async fn put_new(&self, key: &Key, value: Bytes) -> Result<bool>;
    /// Keys of every object below `prefix` (recursively), sorted.
    async fn list(&self, prefix: &Key) -> Result<Vec<Key>>;
    async fn delete(&self, key: &Key) -> Result<()>;
    /// Where the data lives, for logs (never contains credentials).
    fn describe(&self) -> String;
}

/// Typed helpers over any [`ObjectStore`]: values go through the versioned envelope.
pub async fn get_value<T: Versioned>(store: &dyn ObjectStore, key: &Key) -> Result<Option<T>> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => wire::decode(&bytes).map(Some).map_err(|e| Error::internal(format!("{key}: {}", e.message))),
    }
}

pub async fn put_value<T: Versioned>(store: &dyn ObjectStore, key: &Key, value: &T) -> Result<()> {
    store.put(key, Bytes::from(wire::encode(value))).await
}

pub async fn put_new_value<T: Versioned>(store: &dyn ObjectStore, key: &Key, value: &T) -> Result<bool> {
    store.put_new(key, Bytes::from(wire::encode(value))).await
}

/// Settings for the S3 backend; unset fields fall back to the usual AWS
/// environment variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The OpenDAL-backed store.
#[derive(Debug)]
pub struct OpendalStore {
    op: Operator,
    describe: String,
    /// Serialises `put_new` where the backend's own check is not atomic (fs).
    create_lock: Option<tokio::sync::Mutex<()>>,
}

/// Opens the store a URI names.
pub fn open(uri: &str, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
    let bad = |why: &str| {
        Error::invalid(
            "data",
            format!("storage URI {uri:?}: {why} (expected fs://PATH, memory:// or s3://BUCKET/PREFIX)"),
        )
    };
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let retry = opendal::layers::RetryLayer::new().with_max_times(3);
    let store = match scheme {
        "fs" => {
            if rest.is_empty() {
                return Err(bad("empty path"));
            }
            let root = Path::new(rest);
            std::fs::create_dir_all(root)
                .map_err(|e| Error::unavailable(format!("cannot create data directory {rest:?}: {e}")))?;
            let root = root
                .canonicalize()
                .map_err(|e| Error::unavailable(format!("cannot resolve data directory {rest:?}: {e}")))?;
            let tmp = root.join(".tmp");
            // Anything here is a write that never completed: it was never visible.
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)
                .map_err(|e| Error::unavailable(format!("cannot create {}: {e}", tmp.display())))?;
            let builder =
                opendal::services::Fs::default().root(&root.to_string_lossy()).atomic_write_dir(&tmp.to_string_lossy());
            OpendalStore {
                op: Operator::new(builder)?.layer(retry),
                describe: format!("fs://{}", root.display()),
                create_lock: Some(tokio::sync::Mutex::new(())),
            }
        }
        "memory" => OpendalStore {
            op: Operator::new(opendal::services::Memory::default())?,
            describe: "memory://".into(),
            create_lock: None,
        },
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            // The HTTP client needs a TLS provider even for plain-HTTP endpoints,
            // and OpenDAL a process-wide transport (the first one installed wins).
            let _ = rustls::crypto::ring::default_provider().install_default();
            opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::default());
            let mut b = opendal::services::S3::default().bucket(bucket).root(&format!("/{prefix}"));
            if let Some(v) = &s3.endpoint {
                b = b.endpoint(v);
            }
            b = b.region(s3.region.as_deref().unwrap_or("us-east-1"));
            if let Some(v) = &s3.access_key_id {
                b = b.access_key_id(v);
            }
            if let Some(v) = &s3.secret_access_key {
                b = b.secret_access_key(v);
            }
            OpendalStore {
                op: Operator::new(b)?.layer(retry),
                describe: format!("s3://{bucket}/{prefix}"),
                create_lock: None,
            }
        }
        other => return Err(bad(&format!("unknown scheme {other:?}"))),
    };
    Ok(Arc::new(store))
}

#[async_trait]
impl ObjectStore for OpendalStore {
    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.op.read(key.as_str()).await {
            Ok(buf) => Ok(Some(buf.to_bytes())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        self.op.write(key.as_str(), value).await?;
        Ok(())
    }

    async fn put_new(&self, key: &Key, value: Bytes) -> Result<bool> {
        let _guard = match &self.create_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        match self.op.write_with(key.as_str(), value).if_not_exists(true).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::AlreadyExists) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Key>> {
        let entries = match self.op.list_with(prefix.as_str()).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut keys: Vec<Key> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| Key(e.path().trim_start_matches('/').to_owned()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        match self.op.delete(key.as_str()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Lowercase hex SHA-256 of a plugin source: its address under [`Key::plugin_source`].
pub fn source_sha256(source: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(source.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    async fn exercise(store: Arc<dyn ObjectStore>) {
        let k = Key::opaque("things/", b"a/../b");
        assert_eq!(k.as_str(), "things/612f2e2e2f62");
        assert_eq!(k.opaque_name().unwrap(), b"a/../b");
        assert_eq!(store.get(&k).await.unwrap(), None);
        store.put(&k, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"one"[..]);
        store.put(&k, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
        assert!(!store.put_new(&k, Bytes::from_static(b"three")).await.unwrap());
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
        let k2 = Key::opaque("things/", b"z");
        assert!(store.put_new(&k2, Bytes::from_static(b"new")).await.unwrap());
        assert_eq!(store.list(&Key::dir("things/")).await.unwrap(), vec![k.clone(), k2.clone()]);
        assert!(store.list(&Key::dir("nothing/")).await.unwrap().is_empty());
        store.delete(&k).await.unwrap();
        store.delete(&k).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_backend_keeps_the_storage_contract() {
        exercise(open("memory://", &S3Settings::default()).unwrap()).await;
    }

    #[tokio::test]
    async fn fs_backend_keeps_the_storage_contract_and_exactly_one_create_wins() {
        let dir = std::env::temp_dir().join(format!("wl-store-{}", std::process::id()));
        let uri = format!("fs://{}", dir.display());
        let store = open(&uri, &S3Settings::default()).unwrap();
        exercise(store.clone()).await;
        let key = Key::opaque("race/", b"x");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move { store.put_new(&key, Bytes::from(vec![i as u8; 1000])).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_uris_are_rejected_with_the_accepted_forms() {
        for uri in ["", "data", "fs://", "ftp://x", "s3://"] {
            let e = open(uri, &S3Settings::default()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{uri}");
            assert!(e.message.contains("fs://PATH"), "{e}");
        }
    }

    #[test]
    fn plugin_source_keys_accept_only_hex_digests() {
        assert!(Key::plugin_source(&"a".repeat(64)).is_ok());
        assert!(Key::plugin_source("../../etc/passwd").is_err());
        assert!(Key::plugin_source(&"A".repeat(64)).is_err());
    }
}
