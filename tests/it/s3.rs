//! The S3 backend against a real S3-compatible server (moto) on loopback.

use worldloom_cluster::storage::{self, Key};
use worldloom_tests::S3Server;

/// Every promise of the storage trait, including create-if-absent and
/// compare-and-swap on ETags (`If-None-Match: *`, `If-Match`), with
/// concurrent writers of which exactly one wins.
#[tokio::test]
async fn the_s3_backend_keeps_the_storage_contract() {
    let s3 = S3Server::start(&["contract"]);
    let store = storage::open("s3://contract/some/prefix", &s3.settings()).expect("opening S3");
    storage::conformance::exercise(store).await;
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_an_unavailable_error_not_a_panic() {
    let mut settings = S3Server::start(&[]).settings();
    settings.endpoint = Some("http://127.0.0.1:9".into());
    let store = storage::open("s3://nowhere/x", &settings).expect("opening is lazy");
    let e = store.get(&Key::opaque("k/", b"x")).await.unwrap_err();
    assert_eq!(e.kind, worldloom_cluster::ErrorKind::Unavailable, "{e}");
}
