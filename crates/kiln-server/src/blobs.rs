//! The local blob directory: artifact and cache archives (tar.gz), written to a temporary file
//! and renamed into place, so a reader never sees half a blob and a failed upload leaves the
//! previous one intact. The garbage collector (`gc.rs`) deletes the files no record names.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A directory of blobs addressed by relative paths.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl Blobs {
    /// Opens (creating) the directory.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Blobs> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Blobs { root })
    }

    /// The absolute path of a blob.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Where a job's artifacts of a run live.
    pub fn artifact_rel(run: &str, job_index: usize, attempt: u32) -> String {
        format!("artifacts/{run}/{job_index}-{attempt}.tar.gz")
    }

    /// A new path for a project's cache of `key`: each upload gets its own file, so that
    /// evicting a cache never deletes the file of the same key stored again meanwhile (the
    /// replaced file is an orphan the garbage collector deletes).
    pub fn cache_rel(project: &str, key: &str) -> String {
        format!(
            "caches/{project}/{}-{}.tar.gz",
            hex::encode(Sha256::digest(key.as_bytes())),
            uuid::Uuid::now_v7().simple()
        )
    }

    /// Writes a body to `rel` (at most `limit` bytes), atomically.
    pub async fn write<S, E>(&self, rel: &str, body: S, limit: u64) -> io::Result<Written>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.path(rel);
        let dir = path.parent().expect("blob paths have a directory").to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".upload-{}", uuid::Uuid::now_v7().simple()));
        let result = async {
            let mut file = match tokio::fs::File::create(&tmp).await {
                // The garbage collector removed the directory, empty and old, meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tokio::fs::create_dir_all(&dir).await?;
                    tokio::fs::File::create(&tmp).await?
                }
                other => other?,
            };
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| io::Error::other(format!("upload interrupted: {e}")))?;
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
            Ok(Written { size, digest: format!("sha256:{}", hex::encode(hasher.finalize())) })
        }
        .await;
        match result {
            Ok(w) => {
                tokio::fs::rename(&tmp, &path).await?;
                Ok(w)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
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
