//! The suite every [`Objects`] store passes (feature `conformance`): one suite, run by
//! kiln-server's tests on the directory store and on the S3 store against a real S3 server.
//!
//! Each check panics with what it expected; [`run`] runs them all on one store.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::Objects;

/// Runs every check on `store`, staging files in `staging`, with an object of `big` bytes
/// (more than an S3 store's part size, to take the multipart path).
pub async fn run(store: &dyn Objects, staging: &Path, big: usize) {
    missing_objects(store).await;
    put_then_head_and_get(store, staging).await;
    ranges(store).await;
    put_replaces(store, staging).await;
    delete(store).await;
    list_and_scopes(store).await;
    big_object(store, staging, big).await;
}

/// `len` bytes that differ from object to object (by `seed`).
pub fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(seed as u64) as u8).collect()
}

/// Stages `data` in `staging` and puts it as `key`; checks the staged file was consumed.
pub async fn put(store: &dyn Objects, staging: &Path, key: &str, data: &[u8]) {
    let file = staging.join(format!("staged-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&file, data).await.unwrap();
    store.put_file(key, &file).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert!(!file.exists(), "the put of {key} consumed the staged file");
}

/// The bytes of `key` (range `range`) with the object's size, or `None` if it is not stored.
pub async fn read(
    store: &dyn Objects,
    key: &str,
    range: Option<(u64, u64)>,
) -> Option<(u64, Vec<u8>)> {
    let object = store.get(key, range).await.unwrap_or_else(|e| panic!("get {key}: {e}"))?;
    let size = object.size;
    Some((size, object.bytes().await.unwrap_or_else(|e| panic!("body of {key}: {e}"))))
}

/// An object never stored: no metadata, no bytes, deleting it is no error; a bad key is an
/// error.
pub async fn missing_objects(store: &dyn Objects) {
    let key = "suite/never/stored";
    assert_eq!(store.head(key).await.unwrap(), None, "head of a missing object");
    assert!(read(store, key, None).await.is_none(), "get of a missing object");
    assert!(read(store, key, Some((0, 4))).await.is_none(), "ranged get of a missing object");
    store.delete(key).await.expect("deleting a missing object is no error");
    for bad in ["../escape", "/abs", "a//b", ""] {
        assert!(store.head(bad).await.is_err(), "the key {bad:?} is refused");
    }
}

/// A put object: its size, its bytes, a recent modification time.
pub async fn put_then_head_and_get(store: &dyn Objects, staging: &Path) {
    let before = SystemTime::now() - Duration::from_secs(300);
    let data = bytes(1, 300_000);
    put(store, staging, "suite/a/file.tar.gz", &data).await;
    let meta = store.head("suite/a/file.tar.gz").await.unwrap().expect("the object");
    assert_eq!((meta.key.as_str(), meta.size), ("suite/a/file.tar.gz", 300_000));
    assert!(meta.modified > before, "written recently");
    let (size, body) = read(store, "suite/a/file.tar.gz", None).await.expect("the object");
    assert_eq!(size, 300_000);
    assert!(body == data, "the bytes read are the bytes put");
}

/// Ranges `start..end`: their bytes, with the whole object's size; an empty range.
pub async fn ranges(store: &dyn Objects) {
    let data = bytes(2, 100_000);
    store.put_bytes("suite/ranges", Bytes::from(data.clone())).await.unwrap();
    for (start, end) in [(0, 1), (0, 100_000), (10, 20), (99_999, 100_000), (4096, 65_537)] {
        let (size, body) = read(store, "suite/ranges", Some((start, end))).await.expect("it");
        assert_eq!(size, 100_000, "size with range {start}..{end}");
        assert!(body == data[start as usize..end as usize], "bytes of range {start}..{end}");
    }
    let (size, body) = read(store, "suite/ranges", Some((50, 50))).await.expect("it");
    assert_eq!((size, body.len()), (100_000, 0), "an empty range");
}

/// A second put of a key replaces the object, whole (files and bytes alike).
pub async fn put_replaces(store: &dyn Objects, staging: &Path) {
    put(store, staging, "suite/replaced", &bytes(3, 5000)).await;
    put(store, staging, "suite/replaced", &bytes(4, 700)).await;
    let (size, body) = read(store, "suite/replaced", None).await.expect("it");
    assert_eq!(size, 700);
    assert!(body == bytes(4, 700), "the second put's bytes");
    store.put_bytes("suite/replaced", Bytes::from_static(b"third")).await.unwrap();
    assert_eq!(read(store, "suite/replaced", None).await.expect("it").1, b"third");
    store.put_bytes("suite/empty", Bytes::new()).await.unwrap();
    assert_eq!(read(store, "suite/empty", None).await, Some((0, Vec::new())), "an empty object");
}

/// A deleted object is gone; deleting it again is no error; its neighbours stay.
pub async fn delete(store: &dyn Objects) {
    store.put_bytes("suite/del/one", Bytes::from_static(b"1")).await.unwrap();
    store.put_bytes("suite/del/two", Bytes::from_static(b"2")).await.unwrap();
    store.delete("suite/del/one").await.unwrap();
    assert_eq!(store.head("suite/del/one").await.unwrap(), None, "head after delete");
    assert!(read(store, "suite/del/one", None).await.is_none(), "get after delete");
    store.delete("suite/del/one").await.expect("a second delete");
    assert!(store.head("suite/del/two").await.unwrap().is_some(), "the neighbour stays");
    store.delete("suite/del/two").await.unwrap();
    // A put where everything was deleted works (a directory store prunes empty directories).
    store.put_bytes("suite/del/three", Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(read(store, "suite/del/three", None).await.expect("it").1, b"3");
}

/// A listing names every object under the prefix (keys relative to the store), none outside
/// it and no deleted one; a scoped store sees its part's keys without the part.
pub async fn list_and_scopes(store: &dyn Objects) {
    for key in ["suite/list/x/1", "suite/list/x/2", "suite/list/y/3", "suite/listed-not"] {
        store.put_bytes(key, Bytes::from(key.as_bytes().to_vec())).await.unwrap();
    }
    store.delete("suite/list/x/2").await.unwrap();
    let keys = |l: Vec<crate::ObjectMeta>| l.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("suite/list").await.unwrap()),
        ["suite/list/x/1", "suite/list/y/3"],
        "the listing of suite/list"
    );
    assert_eq!(keys(store.list("suite/list/x").await.unwrap()), ["suite/list/x/1"]);
    assert!(store.list("suite/nothing-here").await.unwrap().is_empty());
    let scoped = store.scoped("suite/list");
    assert_eq!(keys(scoped.list("").await.unwrap()), ["x/1", "y/3"], "the scoped listing");
    assert_eq!(keys(scoped.list("y").await.unwrap()), ["y/3"]);
    assert_eq!(read(&*scoped, "x/1", None).await.expect("it").1, b"suite/list/x/1");
    scoped.put_bytes("z/4", Bytes::from_static(b"4")).await.unwrap();
    assert_eq!(read(store, "suite/list/z/4", None).await.expect("it").1, b"4");
    let all = keys(store.list("").await.unwrap());
    assert!(all.contains(&"suite/list/z/4".to_string()), "the whole listing: {all:?}");
    assert!(all.contains(&"suite/listed-not".to_string()), "the whole listing: {all:?}");
}

/// An object of `len` bytes from a file: whole, and a range across its middle.
pub async fn big_object(store: &dyn Objects, staging: &Path, len: usize) {
    let data = bytes(9, len);
    put(store, staging, "suite/big", &data).await;
    assert_eq!(store.head("suite/big").await.unwrap().map(|m| m.size), Some(len as u64));
    let (size, body) = read(store, "suite/big", None).await.expect("the big object");
    assert_eq!(size, len as u64);
    assert!(body == data, "the big object's bytes");
    let (start, end) = (len as u64 / 2 - 1000, len as u64 / 2 + 1000);
    let (_, body) = read(store, "suite/big", Some((start, end))).await.expect("it");
    assert!(body == data[start as usize..end as usize], "a range of the big object");
}
