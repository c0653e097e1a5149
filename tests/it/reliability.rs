//! Reliability (issue 11): the known weak spots, each pinned by a test that
//! failed before its fix, and backpressure answered as `busy`. The scenarios
//! and what covers each are listed in docs/reliability.md.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use worldloom_tests::{Frame, Stream, TempDir, client, create_world, metric, spawn, start, start_with, upload_plugin};
use worldloom_worldgen::ChunkCoord;

/// A stream's record of what it sent stays bounded however far the client
/// sweeps, and a client that comes back beyond the margin is sent the
/// chunks again.
#[tokio::test]
async fn a_stream_sweeping_the_map_keeps_a_bounded_record_of_what_it_sent() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "Sweep", "seed": 21})).await;
    let mut ws = Stream::connect(&s.base, w["id"].as_str().unwrap()).await;
    let radius = 1u32;
    let margin = worldloom_coordinator::stream::SENT_MARGIN;
    let bound = (2 * (radius + margin) + 1).pow(2) as f64;
    let mut sent_total = 0usize;
    let mut largest = 0f64;
    for step in 0..60 {
        ws.subscribe(step * 3, 0, radius).await;
        let (chunks, _) = ws.until_done().await;
        sent_total += chunks.len();
        let entries = metric(&s.base, "worldloom_coordinator_stream_sent_entries").await;
        largest = largest.max(entries);
        assert!(entries <= bound, "step {step}: the stream remembers {entries} chunks, more than its bound {bound}");
    }
    assert_eq!(sent_total, 60 * 9, "every square was new");
    eprintln!("sweep: {sent_total} chunks sent, at most {largest} remembered (bound {bound})");
    // Back at the start, far outside the margin: everything is sent again.
    ws.subscribe(0, 0, radius).await;
    let (again, done) = ws.until_done().await;
    assert_eq!((again.len(), done["already_had"].as_u64()), (9, Some(0)), "{done}");
    drop(ws);
    // A closed stream uncounts what it remembered.
    for _ in 0..100 {
        if metric(&s.base, "worldloom_coordinator_stream_sent_entries").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&s.base, "worldloom_coordinator_stream_sent_entries").await, 0.0);
    s.stop();
}

/// A stream whose world vanished (its notifier dropped) ends with an error
/// frame and a close, instead of spinning on the closed channel.
#[tokio::test]
async fn a_stream_whose_world_is_gone_ends_instead_of_spinning() {
    let dir = TempDir::new("gone");
    let s = start(&dir.uri());
    let w = create_world(&s.base, &s.token, json!({"name": "Gone", "seed": 22})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let mut ws = Stream::connect(&s.base, &id).await;
    ws.subscribe(0, 0, 1).await;
    let (chunks, _) = ws.until_done().await;
    assert_eq!(chunks.len(), 9);
    // The world disappears from storage; the coordinator's poller drops its slot.
    std::fs::remove_file(dir.0.join("worlds").join(&id)).expect("removing the world record");
    match ws.next().await {
        Frame::Json(j) => assert_eq!(j["error"]["code"], "world_gone", "{j}"),
        Frame::Chunk(c) => panic!("expected the world_gone frame, got chunk {}", c.chunk.coord),
    }
    assert!(ws.closed().await, "the server closes the stream");
    for _ in 0..100 {
        if metric(&s.base, "worldloom_coordinator_open_streams").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&s.base, "worldloom_coordinator_open_streams").await, 0.0, "the stream task ended");
    s.stop();
}

/// The atomic-write directories (each a store's own) below `root/.tmp`.
fn tmp_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root.join(".tmp"))
        .expect(".tmp exists")
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// `worldloom token create|revoke` against the `fs://` data of a running
/// server: the server's write in progress (here a temp file two hours old,
/// as a stalled write would leave) survives, and the server keeps working
/// with the new account; a killed server's leftovers go at the next open.
#[tokio::test]
async fn token_commands_against_a_running_servers_fs_data_leave_its_writes_alone() {
    let dir = TempDir::new("tokens");
    let data = dir.uri();
    let server = spawn(&data, &["--workers", "1"]);
    let owned = tmp_dirs(&dir.0);
    assert_eq!(owned.len(), 1, "the server has one atomic-write directory: {owned:?}");
    let in_progress = owned[0].join("w0123456789abcdef.3f2a9c");
    std::fs::write(&in_progress, b"half a world record").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&in_progress).unwrap().set_modified(two_hours_ago).unwrap();

    let bob = worldloom_tests::token_command(&["create", "bob"], &data);
    let carol = worldloom_tests::token_command(&["create", "carol"], &data);
    worldloom_tests::token_command(&["revoke", "carol"], &data);
    assert!(in_progress.exists(), "a token command removed the running server's write in progress");
    assert!(owned[0].exists());
    // The server writes through its own directory and sees the new account at once.
    let w = create_world(&server.base, &bob, json!({"name": "Live", "seed": 3})).await;
    assert_eq!(w["owner"], "bob");
    let res =
        client().post(format!("{}/v1/worlds", server.base)).bearer_auth(&carol).json(&json!({"name": "X"})).send();
    assert_eq!(res.await.unwrap().status(), 401, "the revoked token stops working at once");
    // Only the server's directory is left: each command removed its own.
    assert_eq!(tmp_dirs(&dir.0), owned);

    // kill -9: the server's directory has no live owner, so the next open removes it.
    server.kill();
    worldloom_tests::token_command(&["list"], &data);
    assert!(!owned[0].exists(), "a dead server's atomic-write directory is removed at the next open");
}

/// A permanent storage condition (here the `worlds/` directory replaced by a
/// regular file) is a 500 naming the cause, never a 503 "try again".
#[tokio::test]
async fn a_permanent_storage_error_is_a_clear_500_not_try_again() {
    let dir = TempDir::new("permanent");
    let s = start(&dir.uri());
    let _ = std::fs::remove_dir_all(dir.0.join("worlds"));
    std::fs::write(dir.0.join("worlds"), b"a file where a directory should be").unwrap();
    let res = client()
        .post(format!("{}/v1/worlds", s.base))
        .bearer_auth(&s.token)
        .json(&json!({"name": "Nope"}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry_after = res.headers().get("retry-after").is_some();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "storage_misconfigured", "{body}");
    assert!(!retry_after, "a permanent condition has no Retry-After");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("does not clear by retrying") && !message.contains("retry shortly"), "{message}");
    s.stop();
}

/// S3: a bucket that does not exist is a misconfiguration, not "unavailable".
#[tokio::test]
async fn a_missing_s3_bucket_is_a_misconfiguration() {
    let s3 = worldloom_tests::S3Server::start(&["present"]);
    let store = worldloom_cluster::storage::open("s3://absent/x", &s3.settings()).expect("opening is lazy");
    let e = store.get(&worldloom_cluster::storage::Key::opaque("k/", b"x")).await.unwrap_err();
    assert_eq!((e.kind, e.code()), (worldloom_cluster::ErrorKind::Internal, "storage_misconfigured"), "{e}");
    assert!(e.message.contains("NoSuchBucket") || e.message.contains("bucket"), "{e}");
}

/// A plugin that burns its whole budget on every call: each chunk occupies
/// the only generation thread for a while.
const BURN: &str = "def terrain(ctx, chunk):\n    n = 0\n    while True:\n        n += 1\n";

/// A server with one generation thread and room for one waiting job; a
/// burning call ends at its 2 s deadline (the budget would last ~13 s), well
/// after a stream's retries (250 + 500 ms) are spent.
fn tiny_queue() -> worldloom_tests::InProcess {
    start_with("memory://", |c| {
        c.workers = 1;
        c.node.queue_depth = 1;
        c.limits.fuel = 200_000_000_000;
        c.limits.deadline_ms = 2000;
    })
}

/// A full generation queue answers REST with 503 `busy` and `Retry-After`
/// at once, rather than queueing without bound or hanging.
#[tokio::test]
async fn a_full_generation_queue_is_a_503_busy_with_retry_after() {
    let s = tiny_queue();
    upload_plugin(&s.base, &s.token, "burn", "1.0.0", BURN).await;
    let w = create_world(&s.base, &s.token, json!({"name": "Busy", "plugins": [{"name": "burn", "version": "1.0.0"}]}))
        .await;
    let id = w["id"].as_str().unwrap().to_owned();
    let http = client();
    let requests = (0..12).map(|i| {
        let (http, url) = (http.clone(), format!("{}/v1/worlds/{id}/chunks/{i}/0", s.base));
        async move {
            let res = http.get(url).send().await.expect("an answer, not a hang");
            let status = res.status().as_u16();
            let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = res.json().await.unwrap();
            (status, retry, body)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let busy: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 503).collect();
    assert!(!busy.is_empty(), "12 chunks at once on a 1-thread, 1-slot node: some must be refused");
    for (status, retry, body) in &answers {
        match status {
            200 => {}
            503 => {
                assert_eq!(body["code"], "busy", "{body}");
                assert!(retry.is_some(), "a busy answer says when to retry");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    eprintln!("busy: {} of {} answered 503 busy", busy.len(), answers.len());
    s.stop();
}

/// A stream whose chunks find the queue full gets `busy` error frames for
/// them and its `done` frame, instead of waiting forever.
#[tokio::test]
async fn a_stream_on_a_full_queue_gets_busy_frames_and_finishes() {
    let s = tiny_queue();
    upload_plugin(&s.base, &s.token, "burn", "1.0.0", BURN).await;
    let w = create_world(&s.base, &s.token, json!({"name": "Busy", "plugins": [{"name": "burn", "version": "1.0.0"}]}))
        .await;
    let mut ws = Stream::connect(&s.base, w["id"].as_str().unwrap()).await;
    ws.subscribe(0, 0, 1).await;
    let (mut chunks, mut errors) = (HashSet::new(), HashSet::new());
    let done = loop {
        match ws.next().await {
            Frame::Chunk(c) => {
                chunks.insert(c.chunk.coord);
            }
            Frame::Json(j) if j.get("done").is_some() => break j["done"].clone(),
            Frame::Json(j) => {
                assert_eq!(j["error"]["code"], "busy", "{j}");
                errors.insert(ChunkCoord::new(
                    j["chunk"][0].as_i64().unwrap() as i32,
                    j["chunk"][1].as_i64().unwrap() as i32,
                ));
            }
        }
    };
    assert!(!errors.is_empty(), "8 chunks in flight on a 1-thread, 1-slot node: some must be refused");
    assert_eq!(chunks.len() + errors.len(), 9, "every chunk arrived or was reported");
    assert!(chunks.is_disjoint(&errors));
    assert_eq!(done["failed"].as_u64(), Some(errors.len() as u64), "{done}");
    eprintln!("busy stream: {} chunks sent, {} reported busy", chunks.len(), errors.len());
    drop(ws);
    s.stop();
}
