//! Worlds and generated chunks survive a restart, and are served from
//! storage afterwards instead of being generated again.

use serde_json::json;
use worldloom_tests::{TempDir, account_token, chunk_postcard, client, create_world, spawn};

#[tokio::test]
async fn worlds_and_chunks_survive_a_restart_without_regeneration() {
    let dir = TempDir::new("restart");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let p = spawn(&dir.uri(), &[]);
    let w = create_world(&p.base, &token, json!({"name": "Keep", "seed": 77})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let url = |base: &str| format!("{base}/v1/worlds/{id}/chunks/4/-2");
    let first = client().get(url(&p.base)).send().await.unwrap();
    assert_eq!(first.headers()["x-worldloom-cache"], "miss");
    let first: serde_json::Value = first.json().await.unwrap();
    let (bytes_before, _) = chunk_postcard(&p.base, &id, 4, -2).await;
    // The node writes behind its answers: wait for the write, then kill,
    // not stop politely: what was written must be on disk.
    wait_for_files(&dir.0.join(format!("chunks/{id}/r0")), 1).await;
    p.kill();

    let p = spawn(&dir.uri(), &[]);
    let list: serde_json::Value =
        client().get(format!("{}/v1/worlds", p.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["worlds"][0]["id"], id.as_str());
    assert_eq!(list["worlds"][0]["name"], "Keep");
    let again = client().get(url(&p.base)).send().await.unwrap();
    assert_eq!(again.headers()["x-worldloom-cache"], "hit", "the chunk came from storage");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first);
    let (bytes_after, _) = chunk_postcard(&p.base, &id, 4, -2).await;
    assert_eq!(bytes_before, bytes_after);
}

#[tokio::test]
async fn a_corrupt_stored_chunk_is_regenerated_not_served() {
    let dir = TempDir::new("corrupt");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let p = spawn(&dir.uri(), &[]);
    let w = create_world(&p.base, &token, json!({"name": "C", "seed": 3})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let (good, _) = chunk_postcard(&p.base, &id, 0, 0).await;
    wait_for_files(&dir.0.join(format!("chunks/{id}/r0")), 1).await;
    p.kill();
    let stored = dir.0.join(format!("chunks/{id}/r0/0_0/0_0"));
    assert!(stored.exists(), "chunk stored at {}", stored.display());
    std::fs::write(&stored, b"WL\x02\x01garbage").unwrap();
    let p = spawn(&dir.uri(), &[]);
    let (served, _) = chunk_postcard(&p.base, &id, 0, 0).await;
    assert_eq!(served, good);
}

/// Waits (up to 60 s) until `dir` holds at least `n` stored files: the
/// node writes chunks behind its answers.
pub async fn wait_for_files(dir: &std::path::Path, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.is_dir() || stored_files(dir).len() < n {
        assert!(std::time::Instant::now() < deadline, "{} never held {n} files", dir.display());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every file under `dir` (recursively), skipping the atomic-write scratch directory.
pub fn stored_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".tmp") {
            continue;
        }
        if path.is_dir() {
            out.extend(stored_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_kill_9_while_chunks_are_being_written_leaves_no_torn_object() {
    let dir = TempDir::new("kill9");
    let token = account_token(&dir.uri(), &Default::default(), "keeper");
    let p = spawn(&dir.uri(), &[]);
    let w = create_world(&p.base, &token, json!({"name": "K", "seed": 21})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let mut ws = worldloom_tests::Stream::connect(&p.base, &id).await;
    ws.subscribe(0, 0, 20).await;
    for _ in 0..150 {
        ws.next().await;
    }
    // Killed mid-stream, with generations and writes (behind the answers) in flight.
    wait_for_files(&dir.0.join("chunks"), 50).await;
    p.kill();
    drop(ws);
    let chunks = stored_files(&dir.0.join("chunks"));
    assert!(chunks.len() >= 50, "{} chunks stored", chunks.len());
    for path in &chunks {
        let bytes = std::fs::read(path).unwrap();
        let record = worldloom_cluster::wire::decode::<worldloom_cluster::model::ChunkRecord>(&bytes)
            .unwrap_or_else(|e| panic!("{} is torn: {e}", path.display()));
        let core = worldloom_worldgen::generate_chunk(21, &Default::default(), record.chunk.coord);
        assert_eq!(record.chunk, core, "{}", path.display());
    }
    // The world itself is intact and serves again after a restart.
    let p = spawn(&dir.uri(), &[]);
    let (_, record) = chunk_postcard(&p.base, &id, 19, -20).await;
    assert_eq!(record.chunk.coord, worldloom_worldgen::ChunkCoord::new(19, -20));
}
