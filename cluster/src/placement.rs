//! Region placement: which node generates which region, by rendezvous hashing.
//!
//! Every (world, region) ranks all live nodes by a stable hash and picks the
//! highest. Adding or removing a node moves only the regions it wins or
//! owned, and every coordinator computes the same answer.

use serde::{Deserialize, Serialize};
use worldloom_worldgen::RegionCoord;
use worldloom_worldgen::hash::{hash2, mix64, stream};

use crate::ids::WorldId;

/// A node's stable identity (e.g. its pod name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

/// The node that ranks highest for `key`, or `None` when no node is live.
fn highest(nodes: &[NodeId], key: impl Fn(u64) -> u64) -> Option<&NodeId> {
    nodes.iter().max_by_key(|n| (key(mix64(stream(&n.0))), *n))
}

/// The node that owns `region` of `world`, or `None` when no node is live.
pub fn owner<'a>(nodes: &'a [NodeId], world: &WorldId, region: RegionCoord) -> Option<&'a NodeId> {
    let w = mix64(stream(world.as_str()));
    highest(nodes, |node| hash2(node ^ w, i64::from(region.rx), i64::from(region.rz)))
}

/// The node responsible for any other keyed work (e.g. checking a plugin by its hash).
pub fn owner_of_key<'a>(nodes: &'a [NodeId], key: &str) -> Option<&'a NodeId> {
    let k = mix64(stream(key));
    highest(nodes, |node| mix64(node ^ k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_node_moves_only_its_regions() {
        let nodes: Vec<NodeId> = (0..5).map(|i| NodeId(format!("node-{i}"))).collect();
        let world = WorldId::parse("w0123456789abcdef").unwrap();
        let fewer: Vec<NodeId> = nodes.iter().filter(|n| n.0 != "node-2").cloned().collect();
        let mut owned = [0usize; 5];
        for rx in -20..20 {
            for rz in -20..20 {
                let r = RegionCoord { rx, rz };
                let before = owner(&nodes, &world, r).unwrap();
                let after = owner(&fewer, &world, r).unwrap();
                if before.0 != "node-2" {
                    assert_eq!(before, after);
                }
                owned[before.0[5..].parse::<usize>().unwrap()] += 1;
            }
        }
        // Balanced within a loose bound: 1600 regions over 5 nodes.
        assert!(owned.iter().all(|&n| (200..=440).contains(&n)), "{owned:?}");
        assert_eq!(owner(&[], &world, RegionCoord { rx: 0, rz: 0 }), None);
    }
}
