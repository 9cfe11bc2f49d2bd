//! Artifact and cache archives (tar.gz) in the server's object store: the data directory's
//! `blobs/` (the default) or an S3 bucket (`kiln server --object-store`). An upload is
//! streamed to a staged file (`blobs/.staging`), hashed and limited, then put into the store
//! whole, so a reader never sees half an archive and a failed upload leaves the previous one
//! intact. The garbage collector (`gc.rs`) deletes the objects no record names.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kiln_objstore::{ObjectRead, Objects};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Archives addressed by relative keys (`artifacts/…`, `caches/…`) in an object store.
#[derive(Debug, Clone)]
pub struct Blobs {
    objects: Arc<dyn Objects>,
    staging: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// An upload received whole in a staged file, not stored yet ([`Blobs::commit`]); dropped,
/// its file is removed.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    /// Its size and digest.
    pub written: Written,
}

impl Staged {
    /// The staged file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Blobs {
    /// The archives in `objects`, uploads staged in `staging` (created, and emptied of what
    /// an earlier process left).
    pub fn new(objects: Arc<dyn Objects>, staging: impl Into<PathBuf>) -> io::Result<Blobs> {
        let staging = staging.into();
        std::fs::create_dir_all(&staging)?;
        for entry in std::fs::read_dir(&staging)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Blobs { objects, staging })
    }

    /// The object store.
    pub fn objects(&self) -> &Arc<dyn Objects> {
        &self.objects
    }

    /// The directory of staged uploads.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where a job's artifacts of a run live.
    pub fn artifact_rel(run: &str, job_index: usize, attempt: u32) -> String {
        format!("artifacts/{run}/{job_index}-{attempt}.tar.gz")
    }

    /// A new key for a project's cache of `key`: each upload gets its own object, so that
    /// evicting a cache never deletes the object of the same key stored again meanwhile (the
    /// replaced object is an orphan the garbage collector deletes).
    pub fn cache_rel(project: &str, key: &str) -> String {
        format!(
            "caches/{project}/{}-{}.tar.gz",
            hex::encode(Sha256::digest(key.as_bytes())),
            uuid::Uuid::now_v7().simple()
        )
    }

    /// Receives a body (at most `limit` bytes) into a staged file.
    pub async fn stage<S, E>(&self, body: S, limit: u64) -> io::Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.staging.join(format!("upload-{}", uuid::Uuid::now_v7().simple()));
        let mut staged = Staged { path, written: Written { size: 0, digest: String::new() } };
        let mut file = match tokio::fs::File::create(&staged.path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(&self.staging).await?;
                tokio::fs::File::create(&staged.path).await?
            }
            other => other?,
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| io::Error::other(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("larger than the limit of {limit} bytes"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        staged.written =
            Written { size, digest: format!("sha256:{}", hex::encode(hasher.finalize())) };
        Ok(staged)
    }

    /// Stores a staged upload as `rel`, atomically (replacing an object of that key).
    pub async fn commit(&self, rel: &str, staged: Staged) -> io::Result<Written> {
        self.objects.put_file(rel, &staged.path).await?;
        Ok(staged.written.clone())
    }

    /// Writes a body to `rel` (at most `limit` bytes), atomically.
    pub async fn write<S, E>(&self, rel: &str, body: S, limit: u64) -> io::Result<Written>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staged = self.stage(body, limit).await?;
        self.commit(rel, staged).await
    }

    /// The archive `rel`, if stored.
    pub async fn open(&self, rel: &str) -> io::Result<Option<ObjectRead>> {
        self.objects.get(rel, None).await
    }
}

/// Lists the regular files of a tar.gz (path, size), sorted by path. Fails on anything that
/// is not a readable gzip'd tar.
pub fn list_tar_gz(path: &Path) -> io::Result<Vec<(String, u64)>> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            let p = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
            out.push((p, entry.header().size()?));
        }
    }
    out.sort();
    Ok(out)
}
