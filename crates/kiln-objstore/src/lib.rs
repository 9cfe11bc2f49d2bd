//! Where the server keeps bytes that are not rows: registry blobs, artifact and cache
//! archives, finished job logs. One trait, [`Objects`], with two implementations: a directory
//! ([`FsObjects`], the data directory's, the default) and an S3 bucket under a prefix
//! ([`S3Objects`], any S3 API: AWS, MinIO, Garage, Ceph RGW, s3s-fs…), plus the S3 settings
//! ([`S3Config`], credentials files), the probe at start that turns a wrong endpoint, key or
//! bucket into a one-line error within seconds, and the suite both pass (feature
//! `conformance`).
//!
//! Keys are `/`-separated relative paths ([`check_key`]): `artifacts/<run>/0-1.tar.gz`,
//! `logs/runs/<run>/0/1.log`. A store scoped to a part ([`Objects::scoped`]) sees the keys
//! under it.
//!
//! Invariants: an object becomes visible whole or not at all (a rename on disk, one `PutObject`
//! or a completed multipart upload on S3); [`Objects::put_file`] consumes the staged file;
//! reading a range reads only that range (a ranged `GET` on S3); nothing is written by
//! opening a store.

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;

#[cfg(feature = "conformance")]
pub mod conformance;
mod fs;
pub mod s3;

pub use fs::FsObjects;
pub use s3::{S3Config, S3Credentials, S3Error, S3Objects};

/// The bytes of an object (or of a range of it).
pub struct ObjectRead {
    /// The whole object's size.
    pub size: u64,
    /// The requested bytes.
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

impl Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead").field("size", &self.size).finish_non_exhaustive()
    }
}

impl ObjectRead {
    /// The body collected in memory.
    pub async fn bytes(self) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat())
    }
}

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key, relative to the store.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// A store of objects by key (see the crate's invariants).
#[async_trait]
pub trait Objects: Send + Sync + Debug {
    /// Where the objects are, for messages: `the directory /srv/kiln/blobs`,
    /// `s3://bucket/prefix at https://s3.example.com`.
    fn describe(&self) -> String;
    /// The store of the keys under `part` (`part/<key>`), sharing this one's client.
    fn scoped(&self, part: &str) -> Arc<dyn Objects>;
    /// The size and modification time of object `key`, if stored.
    async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>>;
    /// Reads object `key`, the bytes `start..end` of it if `range` is given (the caller
    /// checked the range against the object's size: S3 refuses one that starts past the end).
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<ObjectRead>>;
    /// Makes the complete file `staged` object `key`, atomically, replacing an object of that
    /// key. `staged` is consumed (moved or removed) on success.
    async fn put_file(&self, key: &str, staged: &Path) -> io::Result<()>;
    /// Makes `bytes` object `key`, atomically, replacing an object of that key.
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()>;
    /// Deletes object `key` (no error if it is gone).
    async fn delete(&self, key: &str) -> io::Result<()>;
    /// Every object whose key starts with `prefix/` (every object when `prefix` is empty).
    async fn list(&self, prefix: &str) -> io::Result<Vec<ObjectMeta>>;
}

/// Checks a key: 1 to 1024 bytes, `/`-separated parts, none empty, `.` or `..`, no `\` and no
/// control character. Keys come from the server, never from a request as they are.
pub fn check_key(key: &str) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("object key `{key}`: {why}")))
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("it has no or more than 1024 bytes");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("it has a control character or `\\`");
    }
    if key.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return bad("it has an empty, `.` or `..` part");
    }
    Ok(())
}

/// `a/b` from `a` and `b`, either possibly empty.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}/{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_key, join};

    #[test]
    fn keys_are_relative_paths_without_dot_parts() {
        for ok in ["a", "artifacts/r/0-1.tar.gz", "logs/runs/x/0/1.log", "a.b/c-d_e"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\\b", "a\nb", &"x".repeat(1025)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(join("", "k"), "k");
        assert_eq!(join("p", ""), "p");
        assert_eq!(join("p/q", "k/l"), "p/q/k/l");
    }
}
