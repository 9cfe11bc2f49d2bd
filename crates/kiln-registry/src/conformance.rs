//! The suite every [`BlobStore`] passes (feature `conformance`): one suite, run by this
//! crate's tests on the filesystem store and on the S3 store against a real S3 server.
//!
//! Each check panics with what it expected; [`run`] runs them all on one store.

use std::path::Path;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use sha2::{Digest as _, Sha256, Sha512};

use crate::blobstore::BlobStore;

/// Runs every check on `store`, staging files in `staging` (a directory the store's commits
/// may move files from), with a blob of `big` bytes for the large-blob check (more than the
/// store's part size, to take the multipart path of an S3 store).
pub async fn run(store: &dyn BlobStore, staging: &Path, big: usize) {
    missing_blobs(store).await;
    commit_then_stat_and_read(store, staging).await;
    ranges(store, staging).await;
    commit_is_idempotent(store, staging).await;
    sha512_and_empty_blobs(store, staging).await;
    delete(store, staging).await;
    list(store, staging).await;
    big_blob(store, staging, big).await;
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// `len` bytes that differ from blob to blob (by `seed`).
pub fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(seed as u64) as u8).collect()
}

/// Stages `data` in `staging` and commits it as its sha256 digest; returns the digest.
pub async fn put(store: &dyn BlobStore, staging: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    commit(store, staging, &digest, data).await;
    digest
}

async fn commit(store: &dyn BlobStore, staging: &Path, digest: &str, data: &[u8]) {
    let file = staging.join(format!("staged-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&file, data).await.unwrap();
    store.commit(digest, &file).await.unwrap_or_else(|e| panic!("commit {digest}: {e}"));
    assert!(!file.exists(), "commit of {digest} consumed the staged file");
}

/// The bytes of blob `digest` (range `range`), or `None` if the store has no such blob.
pub async fn read(
    store: &dyn BlobStore,
    digest: &str,
    range: Option<(u64, u64)>,
) -> Option<(u64, Vec<u8>)> {
    let blob = store.read(digest, range).await.unwrap_or_else(|e| panic!("read {digest}: {e}"))?;
    let chunks: Vec<bytes::Bytes> =
        blob.body.try_collect().await.unwrap_or_else(|e| panic!("read body of {digest}: {e}"));
    Some((blob.size, chunks.concat()))
}

/// A blob never stored: no size, no bytes, deleting it is no error.
pub async fn missing_blobs(store: &dyn BlobStore) {
    let digest = sha256(b"never stored in this store");
    assert_eq!(store.stat(&digest).await.unwrap(), None, "stat of a missing blob");
    assert!(read(store, &digest, None).await.is_none(), "read of a missing blob");
    assert!(read(store, &digest, Some((0, 4))).await.is_none(), "ranged read of a missing blob");
    store.delete(&digest).await.expect("deleting a missing blob is no error");
    assert!(store.stat("sha256:nothex").await.is_err(), "a malformed digest is an error");
}

/// A committed blob: its size, its bytes.
pub async fn commit_then_stat_and_read(store: &dyn BlobStore, staging: &Path) {
    let data = bytes(1, 300_000);
    let digest = put(store, staging, &data).await;
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64), "stat after commit");
    let (size, body) = read(store, &digest, None).await.expect("the committed blob");
    assert_eq!(size, data.len() as u64, "size of a read");
    assert!(body == data, "the bytes read are the bytes committed");
}

/// Ranges `start..end`: their bytes, with the whole blob's size.
pub async fn ranges(store: &dyn BlobStore, staging: &Path) {
    let data = bytes(2, 100_000);
    let digest = put(store, staging, &data).await;
    for (start, end) in [(0, 1), (0, 100_000), (10, 20), (99_999, 100_000), (4096, 65_537)] {
        let (size, body) = read(store, &digest, Some((start, end))).await.expect("the blob");
        assert_eq!(size, 100_000, "size of range {start}..{end}");
        assert!(body == data[start as usize..end as usize], "bytes of range {start}..{end}");
    }
    let (size, body) = read(store, &digest, Some((50, 50))).await.expect("the blob");
    assert_eq!((size, body.len()), (100_000, 0), "an empty range");
}

/// A second commit of the same digest keeps the blob and consumes the staged file.
pub async fn commit_is_idempotent(store: &dyn BlobStore, staging: &Path) {
    let data = bytes(3, 5000);
    let digest = put(store, staging, &data).await;
    commit(store, staging, &digest, &data).await;
    let (_, body) = read(store, &digest, None).await.expect("the blob after a second commit");
    assert!(body == data, "the bytes after a second commit");
}

/// sha512 digests are blobs of their own; an empty blob is a blob.
pub async fn sha512_and_empty_blobs(store: &dyn BlobStore, staging: &Path) {
    let data = bytes(4, 777);
    let digest = sha512(&data);
    commit(store, staging, &digest, &data).await;
    assert_eq!(store.stat(&digest).await.unwrap(), Some(777), "stat of a sha512 blob");
    assert_eq!(store.stat(&sha256(&data)).await.unwrap(), None, "the sha256 of the same bytes");
    let empty = put(store, staging, b"").await;
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0), "stat of the empty blob");
    let (size, body) = read(store, &empty, None).await.expect("the empty blob");
    assert_eq!((size, body.len()), (0, 0), "read of the empty blob");
}

/// A deleted blob is gone; deleting it again is no error.
pub async fn delete(store: &dyn BlobStore, staging: &Path) {
    let digest = put(store, staging, &bytes(5, 1234)).await;
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None, "stat after delete");
    assert!(read(store, &digest, None).await.is_none(), "read after delete");
    store.delete(&digest).await.expect("a second delete");
}

/// The listing names every stored blob (both algorithms) with a recent modification time,
/// and no deleted one.
pub async fn list(store: &dyn BlobStore, staging: &Path) {
    let before = SystemTime::now() - Duration::from_secs(300);
    let a = put(store, staging, &bytes(6, 10)).await;
    let data = bytes(7, 20);
    let b = sha512(&data);
    commit(store, staging, &b, &data).await;
    let gone = put(store, staging, &bytes(8, 30)).await;
    store.delete(&gone).await.unwrap();
    let listed = store.list().await.unwrap();
    for digest in [&a, &b] {
        let (_, modified) = listed
            .iter()
            .find(|(d, _)| d == digest)
            .unwrap_or_else(|| panic!("{digest} is listed (listing: {listed:?})"));
        assert!(*modified > before, "{digest} was modified recently");
    }
    assert!(!listed.iter().any(|(d, _)| *d == gone), "the deleted blob is not listed");
}

/// A blob of `len` bytes: whole, and a range across its middle.
pub async fn big_blob(store: &dyn BlobStore, staging: &Path, len: usize) {
    let data = bytes(9, len);
    let digest = put(store, staging, &data).await;
    assert_eq!(store.stat(&digest).await.unwrap(), Some(len as u64), "stat of the big blob");
    let (size, body) = read(store, &digest, None).await.expect("the big blob");
    assert_eq!(size, len as u64);
    assert!(body == data, "the big blob's bytes");
    let (start, end) = (len as u64 / 2 - 1000, len as u64 / 2 + 1000);
    let (_, body) = read(store, &digest, Some((start, end))).await.expect("the big blob");
    assert!(body == data[start as usize..end as usize], "a range of the big blob");
}
