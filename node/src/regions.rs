//! Which chunks storage holds, by region: one listing per region instead of
//! a read that misses before every fresh chunk.
//!
//! The first request for a chunk of a region lists the region's prefix
//! ([`Key::chunk_region`]) once; from then on a chunk the listing did not
//! name, and that this node has not stored since, is generated without
//! reading storage first. The index only ever errs towards generating: a
//! chunk another node stored after the listing is generated here again, its
//! create-if-absent loses, and the winner's bytes are served (identical, as
//! only deterministic chunks are stored). A chunk the index names is read
//! as before (and regenerated if it does not decode). A failed listing is
//! not remembered: those requests read storage chunk by chunk.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use worldloom_cluster::Result;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::storage::{Key, ObjectStore};
use worldloom_worldgen::{ChunkCoord, RegionCoord};

/// Regions indexed at once (about 256 coordinates each at most); past
/// that the oldest index is forgotten and listed again when next needed.
pub const REGIONS_INDEXED: usize = 4096;

type RegionKey = (WorldId, u32, RegionCoord);

/// The indexed regions, and their keys oldest first (the eviction order).
type Indexed = (HashMap<RegionKey, Arc<Region>>, VecDeque<RegionKey>);

#[derive(Default)]
struct Region {
    listed: tokio::sync::OnceCell<()>,
    present: Mutex<HashSet<ChunkCoord>>,
}

/// The node's index of stored chunks, by region of a world revision.
#[derive(Default)]
pub struct StoredRegions {
    regions: Mutex<Indexed>,
}

impl StoredRegions {
    fn region(&self, key: RegionKey) -> Arc<Region> {
        let mut guard = self.regions.lock().expect("regions lock");
        let (map, order) = &mut *guard;
        if let Some(r) = map.get(&key) {
            return r.clone();
        }
        if map.len() >= REGIONS_INDEXED
            && let Some(oldest) = order.pop_front()
        {
            map.remove(&oldest);
        }
        let r = Arc::new(Region::default());
        map.insert(key.clone(), r.clone());
        order.push_back(key);
        r
    }

    /// Whether storage may hold the chunk at `coord`: `false` only if the
    /// region's listing did not name it and this node has not stored it
    /// since. Lists the region the first time it is asked about.
    pub async fn may_hold(&self, store: &dyn ObjectStore, world: &WorldId, revision: u32, coord: ChunkCoord) -> bool {
        let region = self.region((world.clone(), revision, coord.region()));
        let listed: Result<&()> = region
            .listed
            .get_or_try_init(|| async {
                let keys = store.list(&Key::chunk_region(world, revision, coord.region())).await?;
                region.present.lock().expect("region lock").extend(keys.iter().filter_map(Key::chunk_coord));
                Ok(())
            })
            .await;
        match listed {
            Ok(()) => region.present.lock().expect("region lock").contains(&coord),
            Err(e) => {
                tracing::warn!(%world, revision, error = %e, "could not list a region's stored chunks; reading each");
                true
            }
        }
    }

    /// Notes that storage holds the chunk at `coord` (this node stored it,
    /// or found another's copy).
    pub fn stored(&self, world: &WorldId, revision: u32, coord: ChunkCoord) {
        let region = self.region((world.clone(), revision, coord.region()));
        region.present.lock().expect("region lock").insert(coord);
    }

    /// Regions indexed now.
    pub fn len(&self) -> usize {
        self.regions.lock().expect("regions lock").0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_index_is_bounded_and_a_forgotten_region_is_listed_again() {
        let store = worldloom_cluster::storage::open("memory://", &Default::default()).unwrap();
        let world = WorldId::parse("w00112233445566aa").unwrap();
        let c = ChunkCoord::new(3, 4);
        store.put_new(&Key::chunk(&world, 0, c), bytes::Bytes::from_static(b"x")).await.unwrap();
        let index = StoredRegions::default();
        assert!(index.may_hold(store.as_ref(), &world, 0, c).await, "a stored chunk is named");
        assert!(!index.may_hold(store.as_ref(), &world, 0, ChunkCoord::new(4, 4)).await, "its neighbour is not");
        assert!(!index.may_hold(store.as_ref(), &world, 1, c).await, "nor the chunk of another revision");
        for i in 0..REGIONS_INDEXED as i32 {
            index.may_hold(store.as_ref(), &world, 0, ChunkCoord::new(16 * (i + 1), 0)).await;
        }
        assert_eq!(index.len(), REGIONS_INDEXED);
        // Region (0, 0) was forgotten: asking again lists it again.
        assert!(index.may_hold(store.as_ref(), &world, 0, c).await);
        index.stored(&world, 0, ChunkCoord::new(4, 4));
        assert!(
            index.may_hold(store.as_ref(), &world, 0, ChunkCoord::new(4, 4)).await,
            "a chunk stored since is named"
        );
    }
}
