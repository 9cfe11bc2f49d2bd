//! Where blob bytes live: the [`BlobStore`] trait and its filesystem implementation.
//!
//! Blobs are content-addressed: one copy per digest, whatever the number of repositories
//! holding it. A blob only enters the store whole and verified: uploads are staged as local
//! files by the registry, digest-checked, then handed to [`BlobStore::commit`], which makes them
//! visible atomically (a rename on the filesystem; an S3 store would upload then complete).
//! Digests are `sha256:<hex>` or `sha512:<hex>`; the same bytes under both algorithms are two
//! blobs.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::names::{Algorithm, parse_digest};

/// The bytes of a blob (or of a range of it).
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    /// The requested bytes.
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

impl Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead").field("size", &self.size).finish_non_exhaustive()
    }
}

/// A plug-in store of blob bytes, by digest (`sha256:<hex>` or `sha512:<hex>`, checked by the
/// caller).
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// The size of blob `digest`, if stored.
    async fn stat(&self, digest: &str) -> io::Result<Option<u64>>;
    /// Reads blob `digest`, the bytes `start..end` of it if `range` is given (the caller
    /// checked the range against the size from [`BlobStore::stat`]).
    async fn read(&self, digest: &str, range: Option<(u64, u64)>) -> io::Result<Option<BlobRead>>;
    /// Makes the verified, complete, synced file `staged` the blob `digest`, atomically:
    /// readers see the whole blob or none. `staged` is consumed (moved or removed). A blob
    /// already stored is kept (the same digest is the same bytes).
    async fn commit(&self, digest: &str, staged: &Path) -> io::Result<()>;
    /// Deletes blob `digest` (no error if it is gone).
    async fn delete(&self, digest: &str) -> io::Result<()>;
    /// Every stored digest with its last modification time (to find blobs the database does
    /// not know, after a crash between commit and record).
    async fn list(&self) -> io::Result<Vec<(String, SystemTime)>>;
}

/// Blobs as files `<root>/<algorithm>/<first two hex digits>/<hex>` (`sha256/ab/ab…`,
/// `sha512/cd/cd…`).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store under `root` (created if missing). Staged uploads must be on the same
    /// filesystem for commits to be renames.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(FsBlobStore { root })
    }

    fn path(&self, digest: &str) -> io::Result<PathBuf> {
        let algorithm = parse_digest(digest).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("`{digest}` is not a digest"))
        })?;
        let hex = &digest[algorithm.as_str().len() + 1..];
        Ok(self.root.join(algorithm.as_str()).join(&hex[..2]).join(hex))
    }
}

/// Read buffer of blob downloads.
const CHUNK: usize = 256 * 1024;

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &str) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.path(digest)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(&self, digest: &str, range: Option<(u64, u64)>) -> io::Result<Option<BlobRead>> {
        let mut file = match tokio::fs::File::open(self.path(digest)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let (start, end) = range.unwrap_or((0, size));
        if start > 0 {
            file.seek(io::SeekFrom::Start(start)).await?;
        }
        let reader = file.take(end.saturating_sub(start));
        let body = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK);
        Ok(Some(BlobRead { size, body: Box::pin(body) }))
    }

    async fn commit(&self, digest: &str, staged: &Path) -> io::Result<()> {
        let target = self.path(digest)?;
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        if tokio::fs::try_exists(&target).await? {
            tokio::fs::remove_file(staged).await?;
            return Ok(());
        }
        tokio::fs::create_dir_all(&parent).await?;
        tokio::fs::rename(staged, &target).await?;
        // The rename itself must survive a crash before the database records the blob.
        tokio::task::spawn_blocking(move || std::fs::File::open(parent)?.sync_all())
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    async fn delete(&self, digest: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(digest)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> io::Result<Vec<(String, SystemTime)>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for algorithm in Algorithm::ALL {
                let dirs = match std::fs::read_dir(root.join(algorithm.as_str())) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for dir in dirs {
                    let dir = dir?;
                    if !dir.file_type()?.is_dir() {
                        continue;
                    }
                    for file in std::fs::read_dir(dir.path())? {
                        let file = file?;
                        let name = file.file_name().to_string_lossy().to_string();
                        let digest = format!("{}:{name}", algorithm.as_str());
                        if parse_digest(&digest) == Some(algorithm)
                            && let Ok(modified) = file.metadata().and_then(|m| m.modified())
                        {
                            out.push((digest, modified));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }
}
