//! Objects as files under a directory: key `a/b/c` is the file `<root>/a/b/c`. A put writes
//! or moves a file beside its target and renames it over, so readers see the old object or
//! the new one, whole. Names starting with `.` (files being written) are never listed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{ObjectMeta, ObjectRead, Objects, check_key};

/// Objects as files under a directory.
#[derive(Debug, Clone)]
pub struct FsObjects {
    root: PathBuf,
}

/// Read buffer of downloads.
const CHUNK: usize = 256 * 1024;

impl FsObjects {
    /// The store under `root` (created if missing). Staged files are best on the same
    /// filesystem: a put is then a rename (else a copy).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsObjects> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsObjects { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Moves `from` to `to`, making `to`'s directory (again, if a delete pruned it meanwhile).
    async fn place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let dir = to.parent().unwrap_or(&self.root).to_path_buf();
        for _ in 0..3 {
            tokio::fs::create_dir_all(&dir).await?;
            match tokio::fs::rename(from, to).await {
                Ok(()) => {
                    // The rename itself must survive a crash before a record names the object.
                    return tokio::task::spawn_blocking(move || {
                        std::fs::File::open(dir)?.sync_all()
                    })
                    .await
                    .map_err(io::Error::other)?;
                }
                // The directory was pruned between the two calls: make it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && from.exists() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!("{} keeps disappearing", dir.display())))
    }

    /// Removes the empty directories from `dir` up to the root (not included).
    fn prune(&self, mut dir: &Path) {
        while dir != self.root && dir.starts_with(&self.root) {
            if std::fs::remove_dir(dir).is_err() {
                return;
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => return,
            }
        }
    }
}

fn meta(key: String, m: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta { key, size: m.len(), modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH) }
}

#[async_trait]
impl Objects for FsObjects {
    fn describe(&self) -> String {
        format!("the directory {}", self.root.display())
    }

    fn scoped(&self, part: &str) -> Arc<dyn Objects> {
        Arc::new(FsObjects { root: self.root.join(part) })
    }

    async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(meta(key.to_string(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<ObjectRead>> {
        let mut file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let (start, end) = range.unwrap_or((0, size));
        let (start, end) = (start.min(size), end.min(size));
        if start > 0 {
            file.seek(io::SeekFrom::Start(start)).await?;
        }
        let reader = file.take(end.saturating_sub(start));
        let body = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK);
        Ok(Some(ObjectRead { size, body: Box::pin(body) }))
    }

    async fn put_file(&self, key: &str, staged: &Path) -> io::Result<()> {
        let target = self.path(key)?;
        match self.place(staged, &target).await {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                // Another filesystem: copy beside the target, then rename over it.
                let dir = target.parent().unwrap_or(&self.root).to_path_buf();
                let tmp = dir.join(format!(".put-{}", uuid::Uuid::now_v7().simple()));
                let copied = async {
                    tokio::fs::copy(staged, &tmp).await?;
                    tokio::fs::File::open(&tmp).await?.sync_all().await?;
                    self.place(&tmp, &target).await
                }
                .await;
                if copied.is_err() {
                    let _ = tokio::fs::remove_file(&tmp).await;
                }
                copied?;
                tokio::fs::remove_file(staged).await
            }
            other => other,
        }
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        let target = self.path(key)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".put-{}", uuid::Uuid::now_v7().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            self.place(&tmp, &target).await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                if let Some(dir) = path.parent() {
                    self.prune(dir);
                }
                Ok(())
            }
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut dirs = vec![(root.join(&prefix), prefix)];
            while let Some((dir, rel)) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().to_string();
                    if name.starts_with('.') {
                        continue;
                    }
                    let key = crate::join(&rel, &name);
                    let m = match entry.metadata() {
                        Ok(m) => m,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    if m.is_dir() {
                        dirs.push((entry.path(), key));
                    } else if m.is_file() {
                        out.push(meta(key, &m));
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }
}
