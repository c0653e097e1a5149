//! Region placement at scale: 1,000 nodes and 1,000,000 regions of one
//! world through `placement::owner` (rendezvous hashing). Reports the load
//! spread (max and min against the mean), the share of regions that move
//! when one node leaves and when one joins (ideal: 1/N and 1/(N+1), and
//! only to or from that node), and the cost of one lookup.
//!
//! `cargo run --release -p worldloom-cluster --example placement_sim`

use std::time::Instant;

use worldloom_cluster::ids::WorldId;
use worldloom_cluster::placement::{NodeId, owner};
use worldloom_worldgen::RegionCoord;

const NODES: usize = 1_000;
const SIDE: i32 = 1_000; // 1,000 x 1,000 regions

fn main() {
    let nodes: Vec<NodeId> = (0..NODES).map(|i| NodeId(format!("worldloom-node-{i}"))).collect();
    let world = WorldId::parse("w5eed5eed5eed5eed").expect("a world id");
    let regions =
        || (0..SIDE).flat_map(|rx| (0..SIDE).map(move |rz| RegionCoord { rx: rx - SIDE / 2, rz: rz - SIDE / 2 }));
    let index = |n: &NodeId| n.0["worldloom-node-".len()..].parse::<usize>().expect("index");

    let started = Instant::now();
    let owners: Vec<usize> = regions().map(|r| index(owner(&nodes, &world, r).expect("a node"))).collect();
    let elapsed = started.elapsed();
    let total = owners.len();
    let mut load = vec![0usize; NODES];
    for &o in &owners {
        load[o] += 1;
    }
    let mean = total as f64 / NODES as f64;
    let (max, min) = (*load.iter().max().unwrap(), *load.iter().min().unwrap());
    let var = load.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / NODES as f64;
    println!("{NODES} nodes, {total} regions");
    println!(
        "load: mean {mean:.0}, max {max} ({:.3} x mean), min {min} ({:.3} x mean), stddev {:.1} ({:.2}% of mean)",
        max as f64 / mean,
        min as f64 / mean,
        var.sqrt(),
        100.0 * var.sqrt() / mean
    );
    println!(
        "lookup: {:.2} us per region over {NODES} nodes ({:.1} ns per node ranked)",
        elapsed.as_secs_f64() * 1e6 / total as f64,
        elapsed.as_secs_f64() * 1e9 / (total * NODES) as f64
    );

    // One node leaves: only its regions move, spread over the others.
    let leaver = 417;
    let fewer: Vec<NodeId> = nodes.iter().filter(|n| index(n) != leaver).cloned().collect();
    let mut moved = 0;
    let mut wrongly = 0;
    for (r, &was) in regions().zip(&owners) {
        let now = index(owner(&fewer, &world, r).expect("a node"));
        if now != was {
            moved += 1;
            if was != leaver {
                wrongly += 1;
            }
        }
    }
    println!(
        "one node leaves: {moved} regions move ({:.4}% ; ideal 1/N = {:.4}%), {wrongly} of them from another node",
        100.0 * moved as f64 / total as f64,
        100.0 / NODES as f64
    );

    // One node joins: only the regions it wins move, all of them to it.
    let mut more = nodes.clone();
    more.push(NodeId(format!("worldloom-node-{NODES}")));
    let mut moved = 0;
    let mut elsewhere = 0;
    for (r, &was) in regions().zip(&owners) {
        let now = index(owner(&more, &world, r).expect("a node"));
        if now != was {
            moved += 1;
            if now != NODES {
                elsewhere += 1;
            }
        }
    }
    println!(
        "one node joins: {moved} regions move ({:.4}% ; ideal 1/(N+1) = {:.4}%), {elsewhere} of them to another node",
        100.0 * moved as f64 / total as f64,
        100.0 / (NODES + 1) as f64
    );
}
