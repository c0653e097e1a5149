//! A bounded in-memory cache of chunk envelopes, least recently used out
//! first, by a byte budget (the `node.chunk_cache_bytes` setting).
//!
//! Keyed by the chunk's storage key, which names its world, revision and
//! coordinate: a new revision's chunks are other keys, so a revision never
//! serves another's chunk. Only chunks that are (or are being) stored are
//! kept: bytes a later read from storage would return too.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use worldloom_cluster::storage::Key;

/// What one entry costs beyond its envelope: the key (twice), the maps' nodes.
const ENTRY_OVERHEAD: usize = 160;

struct Entry {
    bytes: Bytes,
    stamp: u64,
}

/// A byte-budgeted least-recently-used map from chunk keys to envelopes.
pub struct ChunkCache {
    budget: usize,
    used: usize,
    next: u64,
    entries: HashMap<Key, Entry>,
    /// Entries by last use, oldest first.
    order: BTreeMap<u64, Key>,
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes (0: nothing is cached).
    pub fn new(budget: usize) -> Self {
        ChunkCache { budget, used: 0, next: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    fn cost(key: &Key, bytes: &Bytes) -> usize {
        bytes.len() + 2 * key.as_str().len() + ENTRY_OVERHEAD
    }

    /// The envelope at `key`, now the most recently used.
    pub fn get(&mut self, key: &Key) -> Option<Bytes> {
        let stamp = self.next;
        let entry = self.entries.get_mut(key)?;
        self.next += 1;
        self.order.remove(&entry.stamp);
        entry.stamp = stamp;
        self.order.insert(stamp, key.clone());
        Some(entry.bytes.clone())
    }

    /// Keeps `bytes` at `key` (replacing what was there), evicting the least
    /// recently used entries until the budget holds. An entry larger than
    /// the whole budget is not kept.
    pub fn put(&mut self, key: Key, bytes: Bytes) {
        self.remove(&key);
        let cost = Self::cost(&key, &bytes);
        if cost > self.budget {
            return;
        }
        while self.used + cost > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= Self::cost(&oldest, &e.bytes);
            }
        }
        let stamp = self.next;
        self.next += 1;
        self.used += cost;
        self.order.insert(stamp, key.clone());
        self.entries.insert(key, Entry { bytes, stamp });
    }

    pub fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.stamp);
            self.used -= Self::cost(key, &e.bytes);
        }
    }

    /// Bytes the entries account for (never more than the budget).
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use worldloom_cluster::ids::WorldId;
    use worldloom_worldgen::ChunkCoord;

    use super::*;

    fn key(i: i32) -> Key {
        Key::chunk(&WorldId::parse("w00112233445566aa").unwrap(), 1, ChunkCoord::new(i, 0))
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let budget = 100 * (13_000 + 300);
        let mut c = ChunkCache::new(budget);
        for i in 0..1000 {
            c.put(key(i), Bytes::from(vec![i as u8; 13_000]));
            assert!(c.used_bytes() <= budget);
            // Chunk 0 stays hot.
            assert!(c.get(&key(0)).is_some(), "the hot entry survives ({i})");
        }
        assert!(c.len() <= 100 && c.len() > 50, "{}", c.len());
        assert_eq!(c.get(&key(999)).unwrap(), Bytes::from(vec![999u32 as u8; 13_000]));
        assert!(c.get(&key(1)).is_none(), "the coldest were evicted");
        c.put(key(5000), Bytes::from(vec![0u8; budget + 1]));
        assert!(c.get(&key(5000)).is_none(), "larger than the budget: not kept");
        c.put(key(999), Bytes::from_static(b"replaced"));
        assert_eq!(c.get(&key(999)).unwrap(), &b"replaced"[..]);
        assert!(c.used_bytes() <= budget);
        let mut none = ChunkCache::new(0);
        none.put(key(1), Bytes::from_static(b"x"));
        assert!(none.is_empty());
    }
}
