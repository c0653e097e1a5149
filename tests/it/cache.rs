//! The node's chunk cache and write behind, end to end: a re-stream is
//! answered with the bytes of the first, a clean stop writes every answered
//! chunk to storage byte-identical, and a new revision never gets the old
//! revision's chunks.

use serde_json::json;
use worldloom_tests::{Frame, RawFrame, Stream, TempDir, client, create_world, start_with};

use crate::persistence::stored_files;

async fn square(base: &str, world: &str, radius: u32) -> Vec<Vec<u8>> {
    let mut ws = Stream::connect(base, world).await;
    ws.subscribe(0, 0, radius).await;
    let mut chunks = Vec::new();
    loop {
        match ws.next_raw().await {
            RawFrame::Chunk(b) => chunks.push(b),
            RawFrame::Json(j) if j.get("done").is_some() => return chunks,
            RawFrame::Json(j) => panic!("unexpected frame {j}"),
        }
    }
}

#[tokio::test]
async fn a_restream_is_byte_identical_and_a_clean_stop_writes_every_chunk() {
    let dir = TempDir::new("cache-drain");
    // A small cache: most of the second stream comes from storage or the pending writes.
    let s = start_with(&dir.uri(), |c| c.node.chunk_cache_bytes = 30 * 14_000);
    let w = create_world(&s.base, &s.token, json!({"name": "Cached", "seed": 9})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let first = square(&s.base, &id, 6).await;
    assert_eq!(first.len(), 169);
    let again = square(&s.base, &id, 6).await;
    assert_eq!(again, first, "the same bytes, in the same order");
    s.stop();
    // Every chunk answered is in storage, byte-identical to what was sent.
    let files = stored_files(&dir.0.join(format!("chunks/{id}/r0")));
    assert_eq!(files.len(), 169);
    let mut stored: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut sent = first;
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn a_new_revision_never_gets_the_old_revisions_cached_chunks() {
    let dir = TempDir::new("cache-revision");
    let s = start_with(&dir.uri(), |_| {});
    let w = create_world(&s.base, &s.token, json!({"name": "Rev", "seed": 4})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let mut ws = Stream::connect(&s.base, &id).await;
    ws.subscribe(0, 0, 1).await;
    let mut old = Vec::new();
    loop {
        match ws.next().await {
            Frame::Chunk(c) => old.push(c),
            Frame::Json(j) if j.get("done").is_some() => break,
            Frame::Json(j) => panic!("{j}"),
        }
    }
    assert!(old.iter().all(|c| c.revision == 0));
    let res = client()
        .put(format!("{}/v1/worlds/{id}/params", s.base))
        .bearer_auth(&s.token)
        .json(&json!({"params": {"sea_level": 10.0}}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let mut fresh = Vec::new();
    while fresh.len() < 9 {
        match ws.next().await {
            Frame::Chunk(c) => fresh.push(c),
            Frame::Json(_) => {}
        }
    }
    assert!(fresh.iter().all(|c| c.revision == 1), "only the new revision's chunks");
    s.stop();
}
