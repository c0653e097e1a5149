//! The S3 backend against a real S3-compatible server (moto) on loopback.

use bytes::Bytes;
use worldloom_cluster::storage::{self, Key};
use worldloom_tests::S3Server;

#[tokio::test]
async fn the_s3_backend_keeps_the_storage_contract() {
    let s3 = S3Server::start(&["contract"]);
    let store = storage::open("s3://contract/some/prefix", &s3.settings()).expect("opening S3");
    let k = Key::opaque("things/", b"a/../b");
    assert_eq!(store.get(&k).await.unwrap(), None);
    store.put(&k, Bytes::from_static(b"one")).await.unwrap();
    store.put(&k, Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
    assert!(!store.put_new(&k, Bytes::from_static(b"three")).await.unwrap(), "put_new never replaces");
    assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
    let k2 = Key::opaque("things/", b"z");
    assert!(store.put_new(&k2, Bytes::from_static(b"new")).await.unwrap());
    assert_eq!(store.list(&Key::dir("things/")).await.unwrap(), vec![k.clone(), k2]);
    store.delete(&k).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_an_unavailable_error_not_a_panic() {
    let mut settings = S3Server::start(&[]).settings();
    settings.endpoint = Some("http://127.0.0.1:9".into());
    let store = storage::open("s3://nowhere/x", &settings).expect("opening is lazy");
    let e = store.get(&Key::opaque("k/", b"x")).await.unwrap_err();
    assert_eq!(e.kind, worldloom_cluster::ErrorKind::Unavailable, "{e}");
}
