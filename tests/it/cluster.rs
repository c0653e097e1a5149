//! The cluster as separate processes: a coordinator and generation nodes on
//! loopback ports sharing a real S3 server (moto), a node killed mid-stream,
//! a node joining, two coordinators over one storage, and a node of another
//! protocol version refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::ChunkRecord;
use worldloom_cluster::placement::{self, NodeId};
use worldloom_cluster::storage::{self, Key};
use worldloom_cluster::wire;
use worldloom_tests::{
    CLUSTER_SECRET, RawFrame, S3Server, Stream, TempDir, account_token, client, cluster_env, create_world, metric,
    spawn_coordinator, spawn_node, start, upload_plugin, wait_for_nodes,
};
use worldloom_worldgen::{ChunkCoord, RegionCoord};

/// Raises the land and marks every chunk: the chunks depend on the plugin
/// and on `ctx.random`, so a node that ran it differently would show.
const RIDGE: &str = r#"
import numpy as np
PARAMS = {"lift": {"default": 300.0, "min": 0.0, "max": 2000.0, "doc": "metres"}}

def terrain(ctx, chunk):
    x = np.arange(chunk.height.shape[0], dtype=np.float64)
    chunk.height = chunk.height + ctx.params["lift"] * np.sin((x[:, None] + ctx.cx * 32) / 9.0)
    return chunk

def features(ctx, chunk):
    return [{"x": 1, "z": 2, "kind": "cairn", "r": ctx.random.random()}]
"#;

/// Streams `radius` around `center` and returns every chunk's envelope by
/// coordinate, checking each arrives exactly once; `during` runs once
/// `after` chunks have arrived. Returns the `done` frame too.
async fn stream_square(
    base: &str,
    world: &str,
    center: (i32, i32),
    radius: u32,
    after: usize,
    mut during: impl FnMut(),
) -> (BTreeMap<(i32, i32), Vec<u8>>, serde_json::Value) {
    let mut s = Stream::connect(base, world).await;
    s.subscribe(center.0, center.1, radius).await;
    let mut got = BTreeMap::new();
    let mut during = Some(&mut during);
    loop {
        match s.next_raw().await {
            RawFrame::Chunk(bytes) => {
                let record: ChunkRecord = wire::decode(&bytes).expect("a chunk envelope");
                let c = record.chunk.coord;
                assert!(got.insert((c.cx, c.cz), bytes).is_none(), "chunk {c} arrived twice");
                if got.len() == after
                    && let Some(f) = during.take()
                {
                    f();
                }
            }
            RawFrame::Json(j) if j.get("done").is_some() => return (got, j["done"].clone()),
            RawFrame::Json(j) => panic!("unexpected frame while streaming: {j}"),
        }
    }
}

/// Copies every object below `prefixes` from one store to another.
async fn copy(from: &dyn storage::ObjectStore, to: &dyn storage::ObjectStore, prefixes: &[&str]) {
    for prefix in prefixes {
        for key in from.list(&Key::dir(prefix)).await.expect("listing") {
            let bytes = from.get(&key).await.expect("reading").expect("listed object");
            to.put(&key, bytes).await.expect("writing");
        }
    }
}

fn ids(names: &[&str]) -> Vec<NodeId> {
    names.iter().map(|n| NodeId((*n).to_owned())).collect()
}

/// Chunks a node answered (generated or read from storage), from its /metrics.
async fn answered(node: &str) -> f64 {
    metric(node, "worldloom_node_chunks_generated_total").await
        + metric(node, "worldloom_node_chunks_from_storage_total").await
}

/// A coordinator and three nodes over S3: a radius-10 stream with a plugin
/// completes with all 441 chunks exactly once though the busiest node is
/// SIGKILLed mid-stream, byte-identical to an embedded server's chunks of
/// the same world; then a fourth node joins and takes over only the regions
/// rendezvous hashing gives it, the others keeping theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_nothing_and_a_joining_node_takes_only_its_share() {
    let s3 = S3Server::start(&["cluster"]);
    let data = "s3://cluster/world";
    let env = cluster_env(&s3.env());
    let coordinator = spawn_coordinator(data, &env);
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes: BTreeMap<&str, worldloom_tests::Process> =
        names.iter().map(|n| (*n, spawn_node(n, &[&coordinator.base], data, &env))).collect();
    wait_for_nodes(&coordinator.base, &names).await;

    let token = account_token(data, &s3.settings(), "tester");
    upload_plugin(&coordinator.base, &token, "ridge", "1.0.0", RIDGE).await;
    let world = create_world(
        &coordinator.base,
        &token,
        json!({"name": "Cluster", "seed": 77, "plugins": [{"name": "ridge", "version": "1.0.0", "params": {"lift": 450}}]}),
    )
    .await;
    let id = world["id"].as_str().unwrap().to_owned();
    let wid = WorldId::parse(&id).unwrap();

    // The square spans 3 x 3 regions; kill the node that owns most of them.
    let center = (8, 8);
    let regions: BTreeSet<RegionCoord> = (-10..=10)
        .flat_map(|dx| (-10..=10).map(move |dz| ChunkCoord::new(center.0 + dx, center.1 + dz).region()))
        .collect();
    assert_eq!(regions.len(), 9);
    let live = ids(&names);
    let mut share: BTreeMap<String, usize> = BTreeMap::new();
    for r in &regions {
        *share.entry(placement::owner(&live, &wid, *r).unwrap().0.clone()).or_default() += 1;
    }
    let victim = share.iter().max_by_key(|(_, n)| **n).map(|(id, _)| id.clone()).unwrap();
    eprintln!("regions per node {share:?}; killing {victim} mid-stream");
    let victim_process = nodes.remove(victim.as_str());
    let mut victim_process = Some(victim_process.expect("the victim runs"));
    let (cluster_chunks, done) = stream_square(&coordinator.base, &id, center, 10, 120, || {
        if let Some(p) = victim_process.take() {
            p.kill();
        }
    })
    .await;
    assert!(victim_process.is_none(), "the node was killed mid-stream");
    assert_eq!(cluster_chunks.len(), 441, "every chunk of the square arrived");
    assert_eq!(done["sent"], 441, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    for bytes in cluster_chunks.values() {
        let record: ChunkRecord = wire::decode(bytes).unwrap();
        assert!(record.plugin_failures.is_empty(), "{:?}", record.plugin_failures);
    }

    // The same world on an embedded server with storage of its own: the
    // world and the plugin copied, no chunk. Its chunks are the same bytes.
    let reference = TempDir::new("cluster-reference");
    let s3_store = storage::open(data, &s3.settings()).unwrap();
    let fs_store = storage::open(&reference.uri(), &Default::default()).unwrap();
    copy(s3_store.as_ref(), fs_store.as_ref(), &["worlds/", "plugins/"]).await;
    let embedded = start(&reference.uri());
    let (embedded_chunks, _) = stream_square(&embedded.base, &id, center, 10, 0, || {}).await;
    embedded.stop();
    assert_eq!(embedded_chunks.len(), 441);
    for (c, bytes) in &embedded_chunks {
        assert!(cluster_chunks[c] == *bytes, "chunk {c:?} differs between the cluster and the embedded server");
    }

    // The dead node is removed; a fourth node joins.
    let survivors: Vec<&str> = names.iter().copied().filter(|n| *n != victim).collect();
    wait_for_nodes(&coordinator.base, &survivors).await;
    nodes.insert("node-d", spawn_node("node-d", &[&coordinator.base], data, &env));
    let mut after: Vec<&str> = survivors.clone();
    after.push("node-d");
    wait_for_nodes(&coordinator.base, &after).await;

    // One chunk in each of 48 regions of a fresh world: each node answers
    // exactly the regions rendezvous hashing gives it, and node-d's are
    // the only ones that moved.
    let fresh = create_world(&coordinator.base, &token, json!({"name": "Fresh", "seed": 78})).await;
    let fresh_id = WorldId::parse(fresh["id"].as_str().unwrap()).unwrap();
    let (before_ids, after_ids) = (ids(&survivors), ids(&after));
    let mut expected: BTreeMap<&str, f64> = after.iter().map(|n| (*n, 0.0)).collect();
    let mut moved = 0;
    let probes: Vec<RegionCoord> = (-4..4).flat_map(|rx| (-3..3).map(move |rz| RegionCoord { rx, rz })).collect();
    for r in &probes {
        let now = placement::owner(&after_ids, &fresh_id, *r).unwrap();
        let was = placement::owner(&before_ids, &fresh_id, *r).unwrap();
        if now != was {
            assert_eq!(now.0, "node-d", "region {r:?} moved between two old nodes");
            moved += 1;
        }
        *expected.get_mut(now.0.as_str()).unwrap() += 1.0;
    }
    assert!(moved > 0 && moved < probes.len(), "node-d takes part of the regions, not all: {moved}");
    let base_counts: BTreeMap<&str, f64> = {
        let mut m = BTreeMap::new();
        for n in &after {
            m.insert(*n, answered(&nodes[n].base).await);
        }
        m
    };
    for r in &probes {
        let (cx, cz) = (r.rx * 16 + 3, r.rz * 16 + 5);
        let res = client().get(format!("{}/v1/worlds/{fresh_id}/chunks/{cx}/{cz}", coordinator.base)).send().await;
        assert_eq!(res.unwrap().status(), 200);
    }
    for n in &after {
        let delta = answered(&nodes[n].base).await - base_counts[n];
        assert_eq!(delta, expected[n], "{n} answered {delta} chunks, rendezvous hashing gives it {}", expected[n]);
    }
    eprintln!("after node-d joined: {moved} of {} regions moved to it; {expected:?}", probes.len());

    let live_nodes = metric(&coordinator.base, "worldloom_coordinator_live_nodes").await;
    assert_eq!(live_nodes, 3.0);
}

/// Two coordinators over one storage: what one creates the other reads at
/// once, a plugin change made on one reaches a stream open on the other,
/// and concurrent changes to one world through both give distinct
/// revisions (compare-and-swap), never a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_share_worlds_plugins_and_revisions_through_storage() {
    let dir = TempDir::new("two-coordinators");
    let data = dir.uri();
    let env = cluster_env(&[]);
    let a = spawn_coordinator(&data, &env);
    let b = spawn_coordinator(&data, &env);
    let _node = spawn_node("node-1", &[&a.base, &b.base], &data, &env);
    wait_for_nodes(&a.base, &["node-1"]).await;
    wait_for_nodes(&b.base, &["node-1"]).await;
    let token = account_token(&data, &Default::default(), "tester");

    let world = create_world(&a.base, &token, json!({"name": "Shared", "seed": 9})).await;
    let id = world["id"].as_str().unwrap().to_owned();
    let seen: serde_json::Value =
        client().get(format!("{}/v1/worlds/{id}", b.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen, world, "a world created on A is read on B at once");
    upload_plugin(&a.base, &token, "ridge", "1.0.0", RIDGE).await;
    let plugin = client().get(format!("{}/v1/plugins/ridge", b.base)).send().await.unwrap();
    assert_eq!(plugin.status(), 200, "a plugin uploaded on A is read on B at once");

    let mut s = Stream::connect(&b.base, &id).await;
    s.subscribe(0, 0, 1).await;
    let (chunks, _) = s.until_done().await;
    assert_eq!(chunks.len(), 9);
    let changed = Instant::now();
    let res = client()
        .put(format!("{}/v1/worlds/{id}/plugins", a.base))
        .bearer_auth(&token)
        .json(&json!({"plugins": [{"name": "ridge", "version": "1.0.0"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    match s.next().await {
        worldloom_tests::Frame::Json(j) => {
            assert_eq!(j["revision"]["revision"], 1, "{j}");
        }
        other => panic!("expected the revision frame, got {other:?}"),
    }
    eprintln!("a change on A reached a stream on B after {:?}", changed.elapsed());
    let (chunks, _) = s.until_done().await;
    assert_eq!(chunks.len(), 9);
    assert!(chunks.iter().all(|c| c.revision == 1 && c.chunk.features.iter().any(|f| f.kind == "cairn")));

    // Concurrent changes through both coordinators: every one that succeeds
    // gets a revision of its own.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let (id, token) = (id.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let res = client()
                .put(format!("{base}/v1/worlds/{id}/params"))
                .bearer_auth(&token)
                .json(&json!({"params": {"sea_level": 10.0 * f64::from(i + 1)}}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap();
            (status, body)
        }));
    }
    let mut revisions = BTreeSet::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, body) => assert!(revisions.insert(body["revision"].as_u64().unwrap()), "a revision forked: {body}"),
            (409, _) => conflicts += 1,
            (s, body) => panic!("HTTP {s}: {body}"),
        }
    }
    let store = storage::open(&data, &Default::default()).unwrap();
    let stored: worldloom_cluster::model::WorldRecord =
        storage::get_value(store.as_ref(), &Key::world(&WorldId::parse(&id).unwrap())).await.unwrap().unwrap();
    assert_eq!(u64::from(stored.revision), 1 + revisions.len() as u64, "every success is one stored revision");
    assert_eq!(revisions, (2..2 + revisions.len() as u64).collect(), "revisions are consecutive and distinct");
    eprintln!("12 concurrent changes: {} revisions, {conflicts} conflicts", revisions.len());
}

/// A node of another protocol version is refused at registration with a
/// message naming both versions, and exits with it.
#[tokio::test]
async fn a_node_of_another_protocol_version_is_refused_and_exits_naming_both_versions() {
    let dir = TempDir::new("protocol");
    let env = cluster_env(&[]);
    let coordinator = spawn_coordinator(&dir.uri(), &env);
    let mut node = worldloom_tests::spawn_role_may_exit(
        &[
            "node",
            "--id",
            "old-node",
            "--coordinator",
            &coordinator.base,
            "--listen",
            "127.0.0.1:0",
            "--data",
            &dir.uri(),
            "--speak-protocol",
            "1",
        ],
        &env,
        "worldloom node old-node listening on ",
    );
    let status = node.exits_within(Duration::from_secs(30)).expect("the refused node exits");
    assert_eq!(status.code(), Some(2));
    let said = node.stderr_text();
    let ours = worldloom_cluster::protocol::PROTOCOL_VERSION;
    assert!(
        said.contains(&format!("the node speaks cluster protocol 1 and the coordinator speaks {ours}")),
        "the node's last words name both versions: {said}"
    );
    // The refusal as the coordinator gives it.
    let res = client()
        .post(format!("{}{}", coordinator.base, worldloom_cluster::protocol::HEARTBEAT_PATH))
        .bearer_auth(CLUSTER_SECRET)
        .header(worldloom_cluster::protocol::PROTOCOL_HEADER, "1")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: serde_json::Value = res.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(&format!("protocol 1 and the coordinator speaks {ours}")), "{message}");
    let readyz: serde_json::Value =
        client().get(format!("{}/readyz", coordinator.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(readyz["nodes"], json!([]), "the refused node never joined");
}

/// A coordinator killed and started again on its address loses nothing
/// (worlds, plugins and chunks are in storage) and its nodes register again
/// on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_loses_nothing_and_its_nodes_come_back() {
    let dir = TempDir::new("restart");
    let env = cluster_env(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["coordinator", "--listen", listen.as_str(), "--data", &dir.uri()];
    let ready = "worldloom coordinator listening on ";
    let first = worldloom_tests::spawn_role(&args, &env, ready);
    let node = spawn_node("node-1", &[&first.base], &dir.uri(), &env);
    wait_for_nodes(&first.base, &["node-1"]).await;
    let token = account_token(&dir.uri(), &Default::default(), "tester");
    upload_plugin(&first.base, &token, "ridge", "1.0.0", RIDGE).await;
    let world = create_world(
        &first.base,
        &token,
        json!({"name": "Kept", "seed": 4, "plugins": [{"name": "ridge", "version": "1.0.0"}]}),
    )
    .await;
    let id = world["id"].as_str().unwrap().to_owned();
    let (before, _) = stream_square(&first.base, &id, (0, 0), 2, 0, || {}).await;
    first.kill();

    let second = worldloom_tests::spawn_role(&args, &env, ready);
    wait_for_nodes(&second.base, &["node-1"]).await;
    let seen: serde_json::Value =
        client().get(format!("{}/v1/worlds/{id}", second.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen, world);
    let plugin = client().get(format!("{}/v1/plugins/ridge/1.0.0", second.base)).send().await.unwrap();
    assert_eq!(plugin.status(), 200);
    let (after, _) = stream_square(&second.base, &id, (0, 0), 2, 0, || {}).await;
    assert_eq!(before, after, "the same chunks, from storage");
    let from_storage = metric(&node.base, "worldloom_node_chunks_from_storage_total").await;
    assert_eq!(from_storage, 25.0, "none was generated again");
}
