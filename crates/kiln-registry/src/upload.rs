//! Upload sessions: each is a staged file `uploads/<id>` (plus `uploads/<id>.repo` naming its
//! repository) that grows with every chunk, hashed as it grows. A session survives a restart:
//! its file is found again and re-hashed when the upload completes.
//!
//! A session hashes with the algorithm it was started with (`?digest-algorithm=`, sha256 by
//! default); a final digest of another algorithm re-hashes the staged file with that one, so
//! the digest a client names is always checked with its own algorithm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Registry;
use crate::error::{Code, RegError, RegResult};
use crate::names::{Algorithm, Hasher};

/// One upload in progress.
#[derive(Debug)]
pub struct Upload {
    /// Its id.
    pub id: String,
    /// Repository it uploads to.
    pub repo: String,
    /// Bytes received so far.
    pub size: u64,
    /// Hash of those bytes, unless lost (restart, failed write): then recomputed at the end.
    hasher: Option<Hasher>,
    /// The staged file.
    pub path: PathBuf,
}

impl Upload {
    /// A one-request upload into the (empty, existing) staged file `path`, hashed with
    /// `algorithm`.
    pub(crate) fn staged(repo: &str, path: PathBuf, algorithm: Algorithm) -> Upload {
        Upload {
            id: String::new(),
            repo: repo.to_string(),
            size: 0,
            hasher: Some(algorithm.hasher()),
            path,
        }
    }
}

/// Live sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
}

fn unknown(id: &str) -> RegError {
    RegError::new(
        Code::BlobUploadUnknown,
        format!("upload `{id}` is unknown, finished or canceled"),
    )
}

impl Registry {
    /// Starts a session for `repo`, hashing with `algorithm` as chunks arrive.
    pub(crate) async fn new_upload(
        &self,
        repo: &str,
        algorithm: Algorithm,
    ) -> RegResult<Arc<tokio::sync::Mutex<Upload>>> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.uploads_dir.join(&id);
        tokio::fs::File::create(&path).await?;
        tokio::fs::write(self.uploads_dir.join(format!("{id}.repo")), repo).await?;
        let upload = Arc::new(tokio::sync::Mutex::new(Upload {
            id: id.clone(),
            repo: repo.to_string(),
            size: 0,
            hasher: Some(algorithm.hasher()),
            path,
        }));
        crate::lock(&self.uploads.live).insert(id, upload.clone());
        Ok(upload)
    }

    /// The session `id` of `repo`, from memory or, after a restart, from its staged file.
    pub(crate) async fn upload(
        &self,
        repo: &str,
        id: &str,
    ) -> RegResult<Arc<tokio::sync::Mutex<Upload>>> {
        if id.len() != 32 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(unknown(id));
        }
        let live = crate::lock(&self.uploads.live).get(id).cloned();
        if let Some(u) = live {
            if u.lock().await.repo != repo {
                return Err(unknown(id));
            }
            return Ok(u);
        }
        let marker = self.uploads_dir.join(format!("{id}.repo"));
        let owner = tokio::fs::read_to_string(&marker).await.map_err(|_| unknown(id))?;
        let path = self.uploads_dir.join(id);
        let size = tokio::fs::metadata(&path).await.map_err(|_| unknown(id))?.len();
        if owner != repo {
            return Err(unknown(id));
        }
        let upload = Arc::new(tokio::sync::Mutex::new(Upload {
            id: id.to_string(),
            repo: repo.to_string(),
            size,
            hasher: None,
            path,
        }));
        let mut live = crate::lock(&self.uploads.live);
        Ok(live.entry(id.to_string()).or_insert(upload).clone())
    }

    /// Ends session `id` and removes its files.
    pub(crate) async fn drop_upload(&self, u: &Upload) {
        crate::lock(&self.uploads.live).remove(&u.id);
        let _ = tokio::fs::remove_file(&u.path).await;
        let _ = tokio::fs::remove_file(self.uploads_dir.join(format!("{}.repo", u.id))).await;
    }

    /// Removes staged uploads not written to for `age` (abandoned, or left by a crash).
    pub(crate) async fn sweep_uploads(&self, age: std::time::Duration) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(&self.uploads_dir).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".repo") {
                // A marker whose upload is gone.
                if !tokio::fs::try_exists(self.uploads_dir.join(id)).await.unwrap_or(true) {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
                continue;
            }
            // A session may finish (and its file go) while this runs.
            let Ok(modified) = entry.metadata().await.and_then(|m| m.modified()) else {
                continue;
            };
            let idle = modified.elapsed().is_ok_and(|e| e >= age);
            if idle {
                crate::lock(&self.uploads.live).remove(&name);
                let _ = tokio::fs::remove_file(entry.path()).await;
                let _ = tokio::fs::remove_file(self.uploads_dir.join(format!("{name}.repo"))).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A staged file for a one-request upload (monolithic POST).
    pub(crate) fn temp_path(&self) -> PathBuf {
        self.uploads_dir.join(format!("{}.tmp", uuid::Uuid::new_v4().simple()))
    }
}

/// Writes `body` at the end of `u`'s file, hashing it. On a failed or cut-off body, the file
/// keeps what arrived and the hash is dropped (recomputed from the file when needed).
pub(crate) async fn append(u: &mut Upload, body: Body) -> RegResult<u64> {
    let file = tokio::fs::OpenOptions::new().append(true).open(&u.path).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if let Err(e) = out.write_all(&bytes).await {
                    failed = Some(RegError::from(e));
                    break;
                }
                if let Some(h) = &mut u.hasher {
                    h.update(&bytes);
                }
                written += bytes.len() as u64;
            }
            Err(e) => {
                failed = Some(RegError::new(
                    Code::BlobUploadInvalid,
                    format!("the upload body was cut off after {written} bytes: {e}"),
                ));
                break;
            }
        }
    }
    let flushed = out.flush().await;
    if failed.is_some() || flushed.is_err() {
        u.hasher = None;
        u.size = tokio::fs::metadata(&u.path).await?.len();
        return Err(failed.unwrap_or_else(|| RegError::from(flushed.unwrap_err())));
    }
    u.size += written;
    Ok(written)
}

/// The `algorithm` digest of everything `u` received, and syncs its file to disk.
pub(crate) async fn finish(u: &mut Upload, algorithm: Algorithm) -> RegResult<String> {
    let hasher = match u.hasher.take() {
        Some(h) if h.algorithm() == algorithm => h,
        _ => hash_file(&u.path, algorithm).await?,
    };
    let file = tokio::fs::OpenOptions::new().write(true).open(&u.path).await?;
    file.sync_all().await?;
    Ok(hasher.finish())
}

async fn hash_file(path: &Path, algorithm: Algorithm) -> std::io::Result<Hasher> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(h);
        }
        h.update(&buf[..n]);
    }
}

/// Parses a `Content-Range` of a chunk: `<start>-<end>` (inclusive), optionally `bytes `.
pub(crate) fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let text = text.trim().trim_start_matches("bytes ").trim_start_matches("bytes=");
    let (a, b) = text.split_once('-')?;
    let b = b.split('/').next()?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}
