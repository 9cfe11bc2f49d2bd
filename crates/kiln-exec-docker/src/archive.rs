//! Copying files into and out of a task's workspace volume through the engine's archive API
//! (`PUT`/`GET /containers/{id}/archive`), and the pure rewrite of what `GET` returns.
//!
//! Docker archives a directory under its own name (`workspace/dist/app.txt`); the executor
//! contract wants paths relative to the workspace (`dist/app.txt`), so [`strip_root`] drops the
//! first component of every entry (and of hard-link targets) and the entry of the root itself.

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;
use kiln_exec::{ExecError, TaskId, WORKSPACE_PATH};
use tokio::io::AsyncWriteExt;

use crate::DockerExecutor;
use crate::error::{engine, timed_out};

impl DockerExecutor {
    /// Uploads the contents of host directory `seed` into the workspace of `container`
    /// (created, not started: the engine mounts its volumes for the copy).
    pub(crate) async fn upload_seed(
        &self,
        container: &str,
        name: &str,
        seed: &Path,
    ) -> Result<(), ExecError> {
        let what = format!("copying the seed {} into container {name}", seed.display());
        let tar = kiln_exec::workspace::packed_tree(seed)
            .await
            .map_err(|e| ExecError::Engine(format!("docker: {what}: {e}")))?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(tar));
        let options =
            UploadToContainerOptions { path: WORKSPACE_PATH.to_owned(), ..Default::default() };
        let upload = self.docker.upload_to_container(
            container,
            Some(options),
            bollard::body_try_stream(body),
        );
        let limit = self.config.transfer_timeout;
        match tokio::time::timeout(limit, upload).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(engine(what, &e)),
            Err(_) => Err(timed_out(what, limit)),
        }
    }

    /// Downloads the workspace of the (stopped) main container of `id` and writes it to
    /// `dest` with paths relative to the workspace.
    pub(crate) async fn download_workspace(
        &self,
        id: &TaskId,
        container: &str,
        dest: &Path,
    ) -> Result<(), ExecError> {
        let what = format!("exporting the workspace of task {id}");
        let failed = |e: io::Error| ExecError::Engine(format!("docker: {what}: {e}"));
        let raw = tempfile::tempfile().map_err(&failed)?;
        let mut raw = tokio::fs::File::from_std(raw);
        let options = DownloadFromContainerOptions { path: WORKSPACE_PATH.to_owned() };
        let download = async {
            let mut chunks = self.docker.download_from_container(container, Some(options));
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| engine(&what, &e))?;
                raw.write_all(&chunk).await.map_err(&failed)?;
            }
            raw.flush().await.map_err(&failed)
        };
        let limit = self.config.transfer_timeout;
        tokio::time::timeout(limit, download).await.map_err(|_| timed_out(&what, limit))??;
        let mut raw = raw.into_std().await;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            raw.rewind()?;
            let out = std::fs::File::create(&dest)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dest.display())))?;
            let mut out = strip_root(io::BufReader::new(raw), io::BufWriter::new(out))?;
            out.flush()
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
        .map_err(failed)
    }
}

/// Copies the tar `src`, whose entries all sit under one root directory (`workspace/…`), to
/// `dest` without that first component; the root's own entry is dropped, and hard-link
/// targets are rewritten the same way. Returns the writer once the archive is complete.
pub(crate) fn strip_root<R: Read, W: Write>(src: R, dest: W) -> io::Result<W> {
    let mut archive = tar::Archive::new(src);
    let mut builder = tar::Builder::new(dest);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(path) = below_root(&entry.path_bytes())? else {
            continue;
        };
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default();
            let Some(target) = below_root(&target)? else {
                return Err(bad(&entry.path_bytes(), "a hard link to the root"));
            };
            header.set_size(0);
            builder.append_link(&mut header, &path, &target)?;
        } else if kind.is_symlink() {
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            header.set_size(0);
            builder.append_link(&mut header, &path, &target)?;
        } else {
            header.set_size(entry.size());
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()
}

/// `raw` without its first component; `None` for the root itself.
fn below_root(raw: &[u8]) -> io::Result<Option<PathBuf>> {
    let text = String::from_utf8_lossy(raw);
    let mut parts = text.split('/').filter(|p| !p.is_empty() && *p != ".");
    if parts.next().is_none() {
        return Ok(None);
    }
    let rest: PathBuf = parts.collect();
    if rest.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(bad(raw, "not a plain relative path"));
    }
    Ok((!rest.as_os_str().is_empty()).then_some(rest))
}

fn bad(raw: &[u8], why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("archive entry {:?}: {why}", String::from_utf8_lossy(raw)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::{EntryType, Header};

    fn entry(builder: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, data: &[u8]) {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).expect("append");
    }

    fn link(builder: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        builder.append_link(&mut header, path, target).expect("append link");
    }

    #[test]
    fn strips_the_workspace_component() {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, EntryType::Directory, "workspace/", b"");
        entry(&mut b, EntryType::Directory, "workspace/dist/", b"");
        entry(&mut b, EntryType::Regular, "workspace/dist/app.txt", b"hello\n");
        let long = format!("workspace/{}/f.txt", "d".repeat(150));
        entry(&mut b, EntryType::Regular, &long, b"long\n");
        link(&mut b, EntryType::Link, "workspace/dist/hard.txt", "workspace/dist/app.txt");
        link(&mut b, EntryType::Symlink, "workspace/abs", "/workspace/dist/app.txt");
        let src = b.into_inner().expect("tar");

        let out = strip_root(&src[..], Vec::new()).expect("strip");
        let mut archive = tar::Archive::new(&out[..]);
        let mut got = Vec::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let target = e.link_name().expect("link").map(|t| t.to_string_lossy().into_owned());
            let mut data = String::new();
            e.read_to_string(&mut data).expect("read");
            got.push((path, e.header().entry_type(), target, data));
        }
        let want = vec![
            ("dist".to_owned(), EntryType::Directory, None, String::new()),
            ("dist/app.txt".to_owned(), EntryType::Regular, None, "hello\n".to_owned()),
            (format!("{}/f.txt", "d".repeat(150)), EntryType::Regular, None, "long\n".to_owned()),
            (
                "dist/hard.txt".to_owned(),
                EntryType::Link,
                Some("dist/app.txt".to_owned()),
                String::new(),
            ),
            (
                "abs".to_owned(),
                EntryType::Symlink,
                Some("/workspace/dist/app.txt".to_owned()),
                String::new(),
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn rejects_parent_components() {
        // The tar crate refuses to write `..`, so build the header by hand.
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.as_old_mut().name[..16].copy_from_slice(b"workspace/../x\0\0");
        header.set_cksum();
        let mut src = header.as_bytes().to_vec();
        src.extend_from_slice(&[0; 1024]);
        let err = strip_root(&src[..], Vec::new()).expect_err("`..` is refused");
        assert!(err.to_string().contains("workspace/../x"), "{err}");
    }
}
