//! Faults (issue 11): SIGTERM of every server role, kill -9 during uploads,
//! world changes and generation, an S3 outage, and a full disk on `fs://`.
//! Every server here is a real `worldloom` process on loopback, on real
//! storage (a directory, a tmpfs, or moto); the tests assert outcomes,
//! never timings.
//!
//! Long variant: `WORLDLOOM_FAULT_ROUNDS=N` sets how many kill -9 rounds the
//! kill tests make (default 4 for the embedded server, 4 for the cluster).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{ChunkRecord, WorldRecord};
use worldloom_cluster::storage::{self, Key, ObjectStore};
use worldloom_cluster::wire;
use worldloom_tests::{
    Process, RawFrame, S3Server, Stream, TempDir, Tmpfs, account_token, check_stored_objects, client, cluster_env,
    create_world, metric, spawn, spawn_coordinator, spawn_node, spawn_with_env, upload_plugin, wait_for_nodes,
};
use worldloom_worldgen::ChunkCoord;

/// A plugin whose every call takes a while (a fixed amount of work, so its
/// chunks are deterministic and stored like any other): chunk requests of
/// its worlds stay in flight long enough to be caught by a signal.
const SLOW: &str = r#"
def terrain(ctx, chunk):
    n = 0
    for i in range(150000):
        n += i % 7
    chunk.height = chunk.height + (n % 5)
    return chunk
"#;

/// An HTTP client with no connection reuse: every request is on a
/// connection of its own, so a request's fate is its own.
fn fresh_client() -> reqwest::Client {
    let _ = client(); // installs the TLS provider reqwest needs
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(60)).build().expect("http client")
}

/// GET a chunk as postcard; its status and body.
async fn get_chunk(base: &str, world: &str, cx: i32, cz: i32) -> reqwest::Result<(u16, Vec<u8>)> {
    let res = fresh_client()
        .get(format!("{base}/v1/worlds/{world}/chunks/{cx}/{cz}"))
        .header("accept", "application/x-postcard")
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.bytes().await?.to_vec()))
}

/// Waits (up to 60 s) until all `n` chunk requests have reached the server
/// and at least one of them is still being answered, judged from the
/// in-flight gauge `name` at `base` (which counts `others` requests besides
/// them, such as the scrape itself) and the `finished` count; false if all
/// `n` were answered before that could be seen. `finished` is read before
/// the scrape, so a request answered in between is counted as neither
/// received nor in flight: the test never believes more arrived than did.
async fn wait_all_received_one_in_flight(
    base: &str,
    name: &str,
    others: f64,
    n: usize,
    finished: &Arc<std::sync::atomic::AtomicUsize>,
) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = finished.load(Ordering::SeqCst);
        if done >= n {
            return false;
        }
        let in_flight = metric(base, name).await - others;
        if in_flight >= 1.0 && in_flight + done as f64 >= n as f64 {
            return true;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never showed {n} requests on {base}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A chunk request under way: its coordinate and what it was answered.
type ChunkRequest = tokio::task::JoinHandle<((i32, i32), reqwest::Result<(u16, Vec<u8>)>)>;

/// Starts `n` chunk requests of `world` at once (chunks `(100 + i, 0)`),
/// each on a connection of its own; `finished` counts those answered.
fn chunk_requests(
    base: &str,
    world: &str,
    n: i32,
    finished: &Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<ChunkRequest> {
    (0..n)
        .map(|i| {
            let (base, world, finished) = (base.to_owned(), world.to_owned(), finished.clone());
            tokio::spawn(async move {
                let r = get_chunk(&base, &world, 100 + i, 0).await;
                finished.fetch_add(1, Ordering::SeqCst);
                ((100 + i, 0), r)
            })
        })
        .collect()
}

/// Every request answered 200 with a whole chunk envelope of `world`.
async fn all_answered_whole(requests: Vec<ChunkRequest>, world: &str) -> Vec<ChunkRecord> {
    let mut out = Vec::new();
    for r in requests {
        let ((cx, cz), answer) = r.await.expect("request task");
        let (status, body) =
            answer.unwrap_or_else(|e| panic!("chunk ({cx}, {cz}) was in flight at SIGTERM and was not answered: {e}"));
        assert_eq!(status, 200, "chunk ({cx}, {cz}) in flight at SIGTERM: {}", String::from_utf8_lossy(&body));
        let record: ChunkRecord = wire::decode(&body).expect("a whole chunk envelope");
        assert_eq!((record.world.as_str(), record.chunk.coord), (world, ChunkCoord::new(cx, cz)));
        out.push(record);
    }
    out
}

/// A stream open at SIGTERM: whatever it received decodes, and it ends with
/// the `shutting_down` error frame and a close frame 1001 (going away), not
/// a dropped connection. Returns the chunks it received.
async fn closed_cleanly(mut s: Stream, world: &str) -> Vec<ChunkRecord> {
    let end = s.until_close().await;
    let close = end.close.clone().unwrap_or_else(|| {
        panic!("the stream's connection was dropped without a close frame after {} frames", end.frames.len())
    });
    assert_eq!(close.0, 1001, "close code (going away): {close:?}");
    let mut chunks = Vec::new();
    let mut saw_shutdown = false;
    for f in end.frames {
        match f {
            RawFrame::Chunk(b) => {
                let record: ChunkRecord = wire::decode(&b).expect("a whole chunk envelope");
                assert_eq!(record.world.as_str(), world);
                chunks.push(record);
            }
            RawFrame::Json(j) if j["error"]["code"] == "shutting_down" => saw_shutdown = true,
            RawFrame::Json(j) => assert!(j.get("done").is_some() || j.get("revision").is_some(), "frame {j}"),
        }
    }
    assert!(saw_shutdown, "no `shutting_down` error frame before the close");
    chunks
}

fn exit_status(p: &mut Process, what: &str) -> std::process::ExitStatus {
    let status = p.exits_within(Duration::from_secs(60)).unwrap_or_else(|| panic!("{what} did not exit within 60 s"));
    assert_eq!(status.code(), Some(0), "{what} exit status after SIGTERM: {status}");
    status
}

/// Every chunk in `records` is in storage, byte-identical: the node's
/// write-behind was flushed before the process exited.
async fn all_stored(store: &dyn ObjectStore, records: &[ChunkRecord]) {
    for r in records {
        let key = Key::chunk(&r.world, r.revision, r.chunk.coord);
        let bytes = store.get(&key).await.expect("reading").unwrap_or_else(|| {
            panic!("{key} was served as stored but is not in storage after the clean stop (write-behind not flushed)")
        });
        let stored: ChunkRecord = wire::decode(&bytes).expect("a whole stored chunk");
        assert_eq!(&stored, r, "{key}");
    }
}

/// A world with the slow plugin, its first chunk generated (the sandbox is warm).
async fn slow_world(base: &str, token: &str) -> String {
    upload_plugin(base, token, "slow", "1.0.0", SLOW).await;
    let w = create_world(
        base,
        token,
        json!({"name": "Slow", "seed": 9, "plugins": [{"name": "slow", "version": "1.0.0"}]}),
    )
    .await;
    let id = w["id"].as_str().unwrap().to_owned();
    let (status, body) = get_chunk(base, &id, 0, 0).await.expect("first chunk");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    id
}

/// `worldloom serve`, SIGTERM with four chunk requests and a stream in
/// flight: the requests are answered in full, the stream gets a
/// `shutting_down` frame and a close frame, every chunk served is in storage
/// (the write-behind is flushed), and the process exits 0.
#[tokio::test]
async fn sigterm_stops_serve_cleanly_finishing_requests_and_closing_streams() {
    let dir = TempDir::new("sigterm-serve");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let mut p = spawn(&dir.uri(), &[]);
    let slow = slow_world(&p.base, &token).await;
    let plain = create_world(&p.base, &token, json!({"name": "Plain", "seed": 4})).await;
    let plain = plain["id"].as_str().unwrap().to_owned();
    let mut s = Stream::connect(&p.base, &plain).await;
    s.subscribe(0, 0, 30).await;
    for _ in 0..20 {
        s.next_raw().await;
    }
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = chunk_requests(&p.base, &slow, 4, &finished);
    // All four received, one at least still being answered (the scrape
    // itself is counted in flight too).
    let caught =
        wait_all_received_one_in_flight(&p.base, "worldloom_coordinator_inflight_requests", 1.0, 4, &finished).await;
    assert!(caught, "every chunk request was answered before SIGTERM could catch one in flight: make SLOW slower");
    p.signal(libc::SIGTERM);
    let answered = all_answered_whole(requests, &slow).await;
    let streamed = closed_cleanly(s, &plain).await;
    exit_status(&mut p, "worldloom serve");
    let store = storage::open(&dir.uri(), &Default::default()).unwrap();
    all_stored(store.as_ref(), &answered).await;
    all_stored(store.as_ref(), &streamed).await;
    check_stored_objects(store.as_ref()).await;
}

/// A coordinator and a node sharing `fs://` storage.
fn cluster(dir: &TempDir) -> (Process, Process) {
    let c = spawn_coordinator(&dir.uri(), &cluster_env(&[]));
    let n = spawn_node("n1", &[&c.base], &dir.uri(), &cluster_env(&[]));
    (c, n)
}

/// `worldloom coordinator`, SIGTERM with chunk requests and a stream in
/// flight: the requests are answered in full, the stream is closed with a
/// close frame, the coordinator exits 0 (and its node keeps running).
#[tokio::test]
async fn sigterm_stops_a_coordinator_cleanly() {
    let dir = TempDir::new("sigterm-coord");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let (mut c, mut n) = cluster(&dir);
    wait_for_nodes(&c.base, &["n1"]).await;
    let slow = slow_world(&c.base, &token).await;
    let plain = create_world(&c.base, &token, json!({"name": "Plain", "seed": 4})).await;
    let plain = plain["id"].as_str().unwrap().to_owned();
    let mut s = Stream::connect(&c.base, &plain).await;
    s.subscribe(0, 0, 30).await;
    for _ in 0..20 {
        s.next_raw().await;
    }
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = chunk_requests(&c.base, &slow, 4, &finished);
    let caught =
        wait_all_received_one_in_flight(&c.base, "worldloom_coordinator_inflight_requests", 1.0, 4, &finished).await;
    assert!(caught, "every chunk request was answered before SIGTERM could catch one in flight: make SLOW slower");
    c.signal(libc::SIGTERM);
    all_answered_whole(requests, &slow).await;
    closed_cleanly(s, &plain).await;
    exit_status(&mut c, "worldloom coordinator");
    assert!(n.exits_within(Duration::from_millis(10)).is_none(), "the node stopped with its coordinator");
}

/// `worldloom node`, SIGTERM with chunk requests from its coordinator in
/// flight inside it and a stream waiting on it: the requests are answered
/// in full (the client gets 200), every chunk the node served is in storage
/// (its write-behind is flushed), the node exits 0, and the stream on the
/// coordinator ends with a `done` frame (the chunks no node could make then
/// reported as failed) instead of hanging.
#[tokio::test]
async fn sigterm_stops_a_node_cleanly_and_flushes_its_writes() {
    let dir = TempDir::new("sigterm-node");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let (c, mut n) = cluster(&dir);
    wait_for_nodes(&c.base, &["n1"]).await;
    let slow = slow_world(&c.base, &token).await;
    let plain = create_world(&c.base, &token, json!({"name": "Plain", "seed": 4})).await;
    let plain = plain["id"].as_str().unwrap().to_owned();
    let (mut streamed, _) = {
        let mut s = Stream::connect(&c.base, &plain).await;
        s.subscribe(0, 0, 2).await;
        s.until_done().await
    };
    // The four slow requests alone in the node (its one worker busy for a while)...
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = chunk_requests(&c.base, &slow, 4, &finished);
    let caught = wait_all_received_one_in_flight(&n.base, "worldloom_node_inflight_requests", 0.0, 4, &finished).await;
    assert!(caught, "every chunk request was answered before SIGTERM could catch one in flight: make SLOW slower");
    // ...and a stream whose first 25 chunks the node has, the rest queued behind them.
    let mut s = Stream::connect(&c.base, &plain).await;
    s.subscribe(0, 0, 5).await;
    for _ in 0..10 {
        s.next_raw().await;
    }
    n.signal(libc::SIGTERM);
    let answered = all_answered_whole(requests, &slow).await;
    let mut failed = 0;
    loop {
        match s.next_raw().await {
            RawFrame::Chunk(b) => streamed.push(wire::decode::<ChunkRecord>(&b).expect("a whole chunk")),
            RawFrame::Json(j) if j.get("done").is_some() => break,
            RawFrame::Json(j) => {
                assert!(j.get("chunk").is_some() && j["error"]["code"].is_string(), "frame {j}");
                failed += 1;
            }
        }
    }
    exit_status(&mut n, "worldloom node");
    let store = storage::open(&dir.uri(), &Default::default()).unwrap();
    all_stored(store.as_ref(), &answered).await;
    all_stored(store.as_ref(), &streamed).await;
    check_stored_objects(store.as_ref()).await;
    eprintln!("node SIGTERM: {} chunks streamed and stored, {failed} refused once the node was gone", streamed.len());
    drop(c);
}

// ---- kill -9 ----

fn rounds(default: usize) -> usize {
    std::env::var("WORLDLOOM_FAULT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a world should look like at one revision: its `sea_level` and the
/// versions of the plugin `fault` attached.
type Look = (f64, Vec<String>);

/// One world the workload made.
#[derive(Debug)]
struct WorldState {
    seed: u64,
    /// The last revision a 2xx answer acknowledged.
    acked: u32,
    /// A change that was sent but not acknowledged (the revision it asked for).
    tried: Option<u32>,
    looks: BTreeMap<u32, Look>,
}

/// Everything the workload did, acknowledged or only tried.
#[derive(Debug, Default)]
struct Ledger {
    /// Plugin versions answered 201, with their source.
    plugins: BTreeMap<String, String>,
    /// Uploads sent without a 201 (they may or may not be stored, whole).
    plugins_tried: BTreeMap<String, String>,
    worlds: BTreeMap<String, WorldState>,
    /// Creates sent without a 201: name -> seed.
    creates_tried: HashMap<String, u64>,
    acks: usize,
    /// Chunks answered (acknowledged generation), by world.
    chunks: usize,
}

fn fault_source(version: &str) -> String {
    sized_source(version, 3000)
}

/// A plugin source of about `lines` * 30 bytes.
fn sized_source(version: &str, lines: usize) -> String {
    // Some bulk, so a write takes long enough to be cut.
    let pad: String = (0..lines).map(|i| format!("# {version} padding line {i}\n")).collect();
    format!("VERSION = {version:?}\n{pad}\ndef terrain(ctx, chunk):\n    return chunk\n")
}

/// Uploads, creates, parameter changes, plugin attachments and chunk
/// generation, one after another, until `stop` or until the server is gone;
/// every outcome goes into `ledger`.
async fn workload(base: String, token: String, round: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let http = fresh_client();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        // An upload.
        let version = format!("{round}.0.{i}");
        let source = fault_source(&version);
        ledger.lock().unwrap().plugins_tried.insert(version.clone(), source.clone());
        let body = json!({"name": "fault", "version": version, "description": "kill -9 test", "source": source});
        let r = http.post(format!("{base}/v1/plugins")).bearer_auth(&token).json(&body).send().await;
        if let Ok(r) = r
            && r.status() == 201
        {
            let mut l = ledger.lock().unwrap();
            l.plugins_tried.remove(&version);
            l.plugins.insert(version.clone(), source);
            l.acks += 1;
        }
        // A world.
        let name = format!("w{round}-{i}");
        let seed = (round as u64) * 1000 + i;
        ledger.lock().unwrap().creates_tried.insert(name.clone(), seed);
        let r = http
            .post(format!("{base}/v1/worlds"))
            .bearer_auth(&token)
            .json(&json!({"name": name, "seed": seed, "params": {"sea_level": 0.0}}))
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 201
            && let Ok(w) = r.json::<Value>().await
        {
            let id = w["id"].as_str().expect("an id").to_owned();
            let mut l = ledger.lock().unwrap();
            l.creates_tried.remove(&name);
            let looks = BTreeMap::from([(0, (0.0, Vec::new()))]);
            l.worlds.insert(id, WorldState { seed, acked: 0, tried: None, looks });
            l.acks += 1;
        }
        // A change of some world not in doubt: its parameters, or (every
        // third time) the plugin attached.
        let target = {
            let l = ledger.lock().unwrap();
            let certain: Vec<(&String, &WorldState)> = l.worlds.iter().filter(|(_, w)| w.tried.is_none()).collect();
            (!certain.is_empty()).then(|| {
                let (id, w) = certain[(i as usize * 7) % certain.len()];
                (id.clone(), w.acked, w.looks[&w.acked].clone(), l.plugins.keys().last().cloned())
            })
        };
        if let Some((id, rev, (sea, plugins), latest)) = target {
            let next = rev + 1;
            let (look, req) = match latest {
                // (Attaching the list already attached changes nothing and
                // keeps the revision, so only a different list is a change.)
                Some(v) if i.is_multiple_of(3) && plugins != [v.clone()] => (
                    (sea, vec![v.clone()]),
                    http.put(format!("{base}/v1/worlds/{id}/plugins"))
                        .json(&json!({"plugins": [{"name": "fault", "version": v}]})),
                ),
                _ => {
                    let sea = f64::from(next) * 7.0;
                    (
                        (sea, plugins),
                        http.put(format!("{base}/v1/worlds/{id}/params")).json(&json!({"params": {"sea_level": sea}})),
                    )
                }
            };
            {
                let mut l = ledger.lock().unwrap();
                let w = l.worlds.get_mut(&id).unwrap();
                w.tried = Some(next);
                w.looks.insert(next, look);
            }
            let r = req.bearer_auth(&token).send().await;
            if let Ok(r) = r
                && r.status() == 200
                && let Ok(view) = r.json::<Value>().await
            {
                let mut l = ledger.lock().unwrap();
                assert_eq!(view["revision"], next, "the change made revision {next}: {view}");
                let w = l.worlds.get_mut(&id).unwrap();
                w.acked = next;
                w.tried = None;
                l.acks += 1;
            }
        }
        // Generation: chunks of a plugin-free world, each stored behind its answer.
        let plain = {
            let l = ledger.lock().unwrap();
            l.worlds.iter().find(|(_, w)| w.looks[&w.acked].1.is_empty()).map(|(id, _)| id.clone())
        };
        if let Some(id) = plain {
            for k in 0..4 {
                let (cx, cz) = (i as i32 * 4 + k, -(round as i32));
                if let Ok((200, _)) = get_chunk(&base, &id, cx, cz).await {
                    ledger.lock().unwrap().chunks += 1;
                }
            }
        }
    }
}

/// After a restart: every acknowledged plugin version, world and revision
/// is there and whole, nothing unacknowledged is half there, every stored
/// object decodes, and the stored chunks of each world's current revision
/// are exactly what generation makes. Resolves what was in doubt.
async fn verify(base: &str, store: &dyn ObjectStore, ledger: &mut Ledger) {
    let counts = check_stored_objects(store).await;
    let http = fresh_client();
    // Plugin versions.
    for (version, source) in &ledger.plugins {
        let r = http.get(format!("{base}/v1/plugins/fault/{version}/source")).send().await.expect("GET source");
        assert_eq!(r.status(), 200, "acknowledged plugin fault@{version} is missing after the restart");
        assert_eq!(&r.text().await.unwrap(), source, "acknowledged plugin fault@{version} changed");
    }
    let tried = std::mem::take(&mut ledger.plugins_tried);
    for (version, source) in tried {
        let r = http.get(format!("{base}/v1/plugins/fault/{version}/source")).send().await.expect("GET source");
        match r.status().as_u16() {
            404 => {}
            200 => {
                assert_eq!(r.text().await.unwrap(), source, "unacknowledged fault@{version} is there but not whole");
                ledger.plugins.insert(version, source);
            }
            s => panic!("unacknowledged fault@{version}: {s} {}", r.text().await.unwrap_or_default()),
        }
    }
    // Worlds.
    for (id, w) in ledger.worlds.iter_mut() {
        let r = http.get(format!("{base}/v1/worlds/{id}")).send().await.expect("GET world");
        assert_eq!(r.status(), 200, "acknowledged world {id} is missing after the restart");
        let view: Value = r.json().await.unwrap();
        let rev = u32::try_from(view["revision"].as_u64().unwrap()).unwrap();
        let allowed = [Some(w.acked), w.tried];
        assert!(
            allowed.contains(&Some(rev)),
            "world {id} is at revision {rev}; acknowledged {}, in flight {:?}",
            w.acked,
            w.tried
        );
        let (sea, plugins) = &w.looks[&rev];
        assert_eq!(
            view["params"]["sea_level"].as_f64(),
            Some(*sea),
            "world {id} revision {rev} is half changed: {view}"
        );
        let versions: Vec<String> =
            view["plugins"].as_array().unwrap().iter().map(|p| p["version"].as_str().unwrap().to_owned()).collect();
        assert_eq!(&versions, plugins, "world {id} revision {rev} is half changed: {view}");
        assert_eq!(view["seed"].as_u64(), Some(w.seed));
        w.acked = rev;
        w.tried = None;
    }
    // Every listed world is one the workload made, and one we now know.
    let list: Value = http.get(format!("{base}/v1/worlds")).send().await.unwrap().json().await.unwrap();
    let tried = std::mem::take(&mut ledger.creates_tried);
    for view in list["worlds"].as_array().expect("a listing") {
        let id = view["id"].as_str().unwrap();
        if ledger.worlds.contains_key(id) {
            continue;
        }
        let name = view["name"].as_str().unwrap();
        let seed = tried.get(name).unwrap_or_else(|| panic!("world {view} was never created by anyone"));
        assert_eq!((view["seed"].as_u64(), view["revision"].as_u64()), (Some(*seed), Some(0)), "{view}");
        let looks = BTreeMap::from([(0, (0.0, Vec::new()))]);
        ledger.worlds.insert(id.to_owned(), WorldState { seed: *seed, acked: 0, tried: None, looks });
    }
    assert_eq!(list["worlds"].as_array().unwrap().len(), ledger.worlds.len(), "every acknowledged world is listed");
    // Stored chunks of every current revision are exactly the generated ones.
    let mut checked = 0;
    for (id, w) in &ledger.worlds {
        if !w.looks[&w.acked].1.is_empty() {
            continue;
        }
        let wid = WorldId::parse(id).unwrap();
        let record: WorldRecord = storage::get_value(store, &Key::world(&wid)).await.unwrap().expect("stored world");
        for key in store.list(&Key::dir(&format!("chunks/{id}/r{}/", w.acked))).await.unwrap() {
            let bytes = store.get(&key).await.unwrap().expect("listed");
            let chunk: ChunkRecord = wire::decode(&bytes).expect("decodes");
            let core = worldloom_worldgen::generate_chunk(w.seed, &record.params, chunk.chunk.coord);
            assert_eq!(chunk.chunk, core, "{key} is not what generation makes");
            checked += 1;
        }
    }
    eprintln!(
        "verified: {} plugin versions, {} worlds, {checked} chunks regenerated and compared; stored {counts:?}",
        ledger.plugins.len(),
        ledger.worlds.len()
    );
}

/// Waits until the workload has `acks` acknowledgements; false if it ended first.
async fn wait_acks(ledger: &Arc<Mutex<Ledger>>, acks: usize, work: &tokio::task::JoinHandle<()>) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ledger.lock().unwrap().acks < acks {
        if work.is_finished() {
            return false;
        }
        assert!(std::time::Instant::now() < deadline, "the workload made no progress: {:?}", ledger.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// The pause after the k-th acknowledgement before the kill: varied, so
/// the kill lands in different phases (an upload's sandbox check or its
/// writes, a create, a change, chunks generated or being written).
fn kill_delay(round: usize) -> Duration {
    Duration::from_millis(((round * 37) % 90) as u64)
}

/// kill -9 of `worldloom serve` on `fs://`, repeatedly, at varied moments
/// during uploads, world creations and changes, and generation: after each
/// restart everything acknowledged is intact and readable and nothing
/// unacknowledged is half there.
#[tokio::test]
async fn kill_9_of_the_embedded_server_loses_nothing_acknowledged() {
    let dir = TempDir::new("kill9-faults");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let store = storage::open(&dir.uri(), &Default::default()).unwrap();
    let mut ledger = Ledger::default();
    let mut p = spawn(&dir.uri(), &[]);
    for round in 0..rounds(4) {
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let stop = Arc::new(AtomicBool::new(false));
        let before = shared.lock().unwrap().acks;
        let work = tokio::spawn(workload(p.base.clone(), token.clone(), round, shared.clone(), stop.clone()));
        assert!(wait_acks(&shared, before + 2 + round * 2, &work).await, "the workload ended early");
        tokio::time::sleep(kill_delay(round)).await;
        p.kill();
        stop.store(true, Ordering::SeqCst);
        work.await.expect("the workload did not panic");
        ledger = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
        p = spawn(&dir.uri(), &[]);
        verify(&p.base, store.as_ref(), &mut ledger).await;
    }
    assert!(ledger.plugins.len() >= 2 && ledger.worlds.len() >= 2, "{ledger:?}");
}

/// kill -9 of a cluster coordinator (even rounds) and of a node (odd
/// rounds) on shared `fs://` storage, during the same workload: after the
/// killed process is restarted, everything acknowledged is intact and
/// nothing unacknowledged is half there.
#[tokio::test]
async fn kill_9_of_a_coordinator_or_a_node_loses_nothing_acknowledged() {
    let dir = TempDir::new("kill9-cluster");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let store = storage::open(&dir.uri(), &Default::default()).unwrap();
    let mut ledger = Ledger::default();
    let mut c = spawn_coordinator(&dir.uri(), &cluster_env(&[]));
    let mut n = spawn_node("n1", &[&c.base], &dir.uri(), &cluster_env(&[]));
    wait_for_nodes(&c.base, &["n1"]).await;
    for round in 0..rounds(4) {
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let stop = Arc::new(AtomicBool::new(false));
        let before = shared.lock().unwrap().acks;
        let work = tokio::spawn(workload(c.base.clone(), token.clone(), round, shared.clone(), stop.clone()));
        assert!(wait_acks(&shared, before + 2 + round * 2, &work).await, "the workload ended early");
        tokio::time::sleep(kill_delay(round)).await;
        if round % 2 == 0 {
            c.kill();
            stop.store(true, Ordering::SeqCst);
            work.await.expect("the workload did not panic");
            // A new coordinator (a new port); the node is told where it is by a restart.
            c = spawn_coordinator(&dir.uri(), &cluster_env(&[]));
            n.kill();
            n = spawn_node("n1", &[&c.base], &dir.uri(), &cluster_env(&[]));
        } else {
            n.kill();
            // The coordinator keeps acknowledging what needs no node (creates, changes).
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::SeqCst);
            work.await.expect("the workload did not panic");
            n = spawn_node("n1", &[&c.base], &dir.uri(), &cluster_env(&[]));
        }
        wait_for_nodes(&c.base, &["n1"]).await;
        ledger = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
        verify(&c.base, store.as_ref(), &mut ledger).await;
    }
    assert!(ledger.plugins.len() >= 2 && ledger.worlds.len() >= 2, "{ledger:?}");
    drop((c, n));
}

// ---- storage outage ----

/// A JSON error with the status and code expected, and `Retry-After` when
/// it is a 503.
async fn clear_error(r: reqwest::Response, status: u16, code: &str, what: &str) -> Value {
    let got = r.status().as_u16();
    let retry = r.headers().get("retry-after").cloned();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = r.text().await.unwrap_or_default();
    assert_eq!((got, ct.starts_with("application/json")), (status, true), "{what}: {got} {ct} {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    if status == 503 {
        assert!(retry.is_some(), "{what}: a 503 without Retry-After: {body}");
    }
    body
}

/// The S3 server (moto) stopped mid-run under a running `worldloom serve`:
/// every request that needs storage fails with a clear 503
/// `storage_unavailable` (JSON, `Retry-After`), and once an S3 server is
/// back on the same port, requests succeed again and nothing stored is
/// partial. moto keeps its objects in memory, so the server that comes back
/// is empty: what was stored before is gone (reads say 404) and the account
/// must be created again; a real S3 keeps its objects across an outage.
#[tokio::test]
async fn an_s3_outage_is_a_clear_503_and_service_resumes_when_s3_is_back() {
    let mut s3 = S3Server::start(&["outage"]);
    let data = "s3://outage/w";
    let token = account_token(data, &s3.settings(), "keeper");
    let p = spawn_with_env(data, &[], &s3.env());
    let w = create_world(&p.base, &token, json!({"name": "Before", "seed": 1})).await;
    let before = w["id"].as_str().unwrap().to_owned();
    upload_plugin(&p.base, &token, "kept", "1.0.0", &fault_source("1.0.0")).await;
    let (status, _) = get_chunk(&p.base, &before, 0, 0).await.unwrap();
    assert_eq!(status, 200);
    worldloom_tests::wait_stored(data, &s3.settings(), &before, 0, 0, 0).await;

    // The outage, with a create and an upload in flight as it begins.
    let http = fresh_client();
    let base = p.base.clone();
    let t = token.clone();
    let racing = tokio::spawn(async move {
        let h = fresh_client();
        let create = h.post(format!("{base}/v1/worlds")).bearer_auth(&t).json(&json!({"name": "Racing"})).send();
        let body = json!({"name": "racing", "version": "1.0.0", "source": fault_source("r")});
        let upload = h.post(format!("{base}/v1/plugins")).bearer_auth(&t).json(&body).send();
        let (a, b) = tokio::join!(create, upload);
        (a.map(|r| r.status().as_u16()), b.map(|r| r.status().as_u16()))
    });
    let port = s3.port();
    s3.kill();
    let (create, upload) = racing.await.unwrap();
    for (what, r) in [("create", create), ("upload", upload)] {
        let s = r.unwrap_or_else(|e| panic!("{what} racing the outage got no answer: {e}"));
        assert!([201, 503].contains(&s), "{what} racing the outage: {s}");
    }
    // Past the world cache (1 s): every read and write goes to storage.
    tokio::time::sleep(worldloom_coordinator::FRESH + Duration::from_millis(200)).await;
    let r =
        http.post(format!("{}/v1/worlds", p.base)).bearer_auth(&token).json(&json!({"name": "During"})).send().await;
    clear_error(r.unwrap(), 503, "storage_unavailable", "POST /v1/worlds during the outage").await;
    let r = http.get(format!("{}/v1/worlds/{before}", p.base)).send().await;
    clear_error(r.unwrap(), 503, "storage_unavailable", "GET /v1/worlds/{id} during the outage").await;
    let r = http
        .put(format!("{}/v1/worlds/{before}/params", p.base))
        .bearer_auth(&token)
        .json(&json!({"params": {"sea_level": 5.0}}))
        .send()
        .await;
    clear_error(r.unwrap(), 503, "storage_unavailable", "PUT params during the outage").await;
    let body = json!({"name": "during", "version": "1.0.0", "source": fault_source("d")});
    let r = http.post(format!("{}/v1/plugins", p.base)).bearer_auth(&token).json(&body).send().await;
    clear_error(r.unwrap(), 503, "storage_unavailable", "POST /v1/plugins during the outage").await;
    let r = http.get(format!("{}/v1/worlds/{before}/chunks/5/5", p.base)).send().await;
    clear_error(r.unwrap(), 503, "storage_unavailable", "GET an uncached chunk during the outage").await;
    let ready = http.get(format!("{}/healthz", p.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the process stays up through the outage");

    // S3 is back on the same port, empty (moto's objects lived in its memory).
    let s3 = S3Server::start_on(port, &["outage"]);
    let token = account_token(data, &s3.settings(), "keeper");
    let after = create_world(&p.base, &token, json!({"name": "After", "seed": 2})).await;
    let after = after["id"].as_str().unwrap().to_owned();
    let (status, body) = get_chunk(&p.base, &after, 3, 3).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    worldloom_tests::wait_stored(data, &s3.settings(), &after, 0, 3, 3).await;
    upload_plugin(&p.base, &token, "later", "1.0.0", &fault_source("l")).await;
    let r = http.get(format!("{}/v1/worlds/{before}", p.base)).send().await.unwrap();
    clear_error(r, 404, "not_found", "a world the empty S3 no longer has").await;
    let store = storage::open(data, &s3.settings()).unwrap();
    let counts = check_stored_objects(store.as_ref()).await;
    assert_eq!((counts.worlds, counts.plugin_versions), (1, 1), "{counts:?}");
}

// ---- full disk ----

/// `fs://` on a 4 MiB tmpfs, filled by generation and uploads (and topped
/// up by a file the test writes, so it is full to the last page): writes
/// fail with a clear 503 `storage_full` (JSON, naming the condition), reads
/// keep working, no stored object is partial, no temporary file is left
/// behind, and once space is freed writes succeed again.
#[tokio::test]
async fn a_full_disk_is_a_clear_503_storage_full_and_leaves_no_partial_object() {
    let mount = Tmpfs::mount("fulldisk", "4m").unwrap_or_else(|e| {
        panic!("this test needs CAP_SYS_ADMIN to mount a small tmpfs (run as root, as scripts/test in CI does): {e}")
    });
    let root = mount.dir.0.join("data");
    let data = format!("fs://{}", root.display());
    // 1 MiB set aside, freed at the end: then there is room again for sure.
    let reserve = mount.dir.0.join("reserve");
    std::fs::write(&reserve, vec![1u8; 1 << 20]).unwrap();
    let token = account_token(&data, &Default::default(), "keeper");
    let p = spawn(&data, &[]);
    let http = fresh_client();
    let w = create_world(&p.base, &token, json!({"name": "Full", "seed": 6})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    // Fill it: uploads of 90 KB sources until one is refused, and a stream
    // whose chunks are written behind their answers.
    let mut uploaded = 0;
    let mut refused = None;
    for i in 0..60 {
        let version = format!("1.0.{i}");
        let body = json!({"name": "filler", "version": version, "source": sized_source(&version, 6500)});
        let r = http.post(format!("{}/v1/plugins", p.base)).bearer_auth(&token).json(&body).send().await.unwrap();
        if r.status() == 201 {
            uploaded += 1;
        } else {
            refused = Some(clear_error(r, 503, "storage_full", "an upload to a full disk").await);
            break;
        }
    }
    let mut s = Stream::connect(&p.base, &id).await;
    s.subscribe(0, 0, 8).await;
    let (chunks, done) = s.until_done().await;
    assert_eq!(done["failed"], 0, "chunks are served even when they cannot be stored: {done}");
    assert_eq!(chunks.len(), 289);
    // Closed, so the revision below does not stream (and store) the square again.
    drop(s);
    // To the last page. Chunk writes still behind their answers fail on the
    // full disk and remove their temporary files, freeing pages: top up
    // until two top-ups in a row, 250 ms apart, find nothing left.
    let filler = mount.dir.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let mut quiet = 0;
        while quiet < 2 {
            let mut pages = 0;
            while f.write_all(&[0u8; 4096]).is_ok() {
                pages += 1;
            }
            let _ = f.sync_all();
            quiet = if pages == 0 { quiet + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let r = http.post(format!("{}/v1/worlds", p.base)).bearer_auth(&token).json(&json!({"name": "More"})).send().await;
    let e = clear_error(r.unwrap(), 503, "storage_full", "POST /v1/worlds on a full disk").await;
    assert!(e["message"].as_str().unwrap().contains("no space left"), "the message names the condition: {e}");
    let r = http
        .put(format!("{}/v1/worlds/{id}/params", p.base))
        .bearer_auth(&token)
        .json(&json!({"params": {"sea_level": 3.0}}))
        .send()
        .await;
    clear_error(r.unwrap(), 503, "storage_full", "PUT params on a full disk").await;
    let body = json!({"name": "filler", "version": "2.0.0", "source": fault_source("2.0.0")});
    let r = http.post(format!("{}/v1/plugins", p.base)).bearer_auth(&token).json(&body).send().await;
    let refused_late = clear_error(r.unwrap(), 503, "storage_full", "an upload to a full disk").await;
    let view: Value = http.get(format!("{}/v1/worlds/{id}", p.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["revision"], 0, "a refused change left the world as it was: {view}");
    // Nothing partial, no temp file left.
    let store = storage::open(&data, &Default::default()).unwrap();
    let counts = check_stored_objects(store.as_ref()).await;
    assert_eq!(counts.plugin_versions, uploaded, "refused uploads are not listed: {counts:?}");
    let leftovers = temp_files(&root.join(".tmp"));
    assert!(leftovers.is_empty(), "temporary files left by failed writes: {leftovers:?}");
    let r = http.get(format!("{}/v1/plugins/filler/2.0.0", p.base)).send().await.unwrap();
    assert_eq!(r.status(), 404, "a refused upload is not readable");

    // Space is freed: writes succeed again.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&reserve).unwrap();
    let more = create_world(&p.base, &token, json!({"name": "More", "seed": 7})).await;
    let r = http
        .put(format!("{}/v1/worlds/{id}/params", p.base))
        .bearer_auth(&token)
        .json(&json!({"params": {"sea_level": 3.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    upload_plugin(&p.base, &token, "filler", "2.0.0", &fault_source("2.0.0")).await;
    let more = more["id"].as_str().unwrap().to_owned();
    let (status, _) = get_chunk(&p.base, &more, 1, 1).await.unwrap();
    assert_eq!(status, 200);
    worldloom_tests::wait_stored(&data, &Default::default(), &more, 0, 1, 1).await;
    check_stored_objects(store.as_ref()).await;
    eprintln!(
        "full disk: {uploaded} uploads before the first refusal ({refused:?}), {} chunks streamed, late refusal {refused_late}",
        chunks.len()
    );
    drop(p);
    drop(mount);
}

/// Regular files inside the per-store temp directories of `.tmp/` (the
/// `*.owner` lock files beside them are not temp data).
fn temp_files(tmp: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(tmp) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            for f in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
    }
    out
}
