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
    // Killed, not stopped politely: what was acknowledged must be on disk.
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
    p.kill();
    let stored = dir.0.join(format!("chunks/{id}/r0/0_0"));
    assert!(stored.exists(), "chunk stored at {}", stored.display());
    std::fs::write(&stored, b"WL\x02\x01garbage").unwrap();
    let p = spawn(&dir.uri(), &[]);
    let (served, _) = chunk_postcard(&p.base, &id, 0, 0).await;
    assert_eq!(served, good);
}
