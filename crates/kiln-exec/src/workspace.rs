//! File-system helpers for executors whose workspace is a directory on the host (the fake and
//! the process executor) and for tarring a seed: copy a seed in, write the workspace out as a
//! tar. Synchronous; call them from `spawn_blocking`.
//!
//! Invariants: symlinks are never followed (copied and archived as links), so a link in a
//! workspace cannot pull outside files into a cache or an artifact; archive entries are
//! relative paths, each directory before what it holds, siblings in name order.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Copies the contents of directory `src` into directory `dest` (created if missing): files
/// with their permissions, directories, symlinks as links. Existing files in `dest` are
/// replaced; existing directories are merged into.
///
/// Errs, naming the path, when `src` is not a directory, when it holds something else than
/// files, directories and symlinks (a socket, a device), or on any I/O failure.
pub fn copy_dir_contents(src: &Path, dest: &Path) -> io::Result<()> {
    let meta = fs::metadata(src).map_err(|e| at(src, e))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory", src.display()),
        ));
    }
    fs::create_dir_all(dest).map_err(|e| at(dest, e))?;
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from_dir, to_dir)) = stack.pop() {
        for entry in fs::read_dir(&from_dir).map_err(|e| at(&from_dir, e))? {
            let entry = entry.map_err(|e| at(&from_dir, e))?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let kind = entry.file_type().map_err(|e| at(&from, e))?;
            if kind.is_dir() {
                match fs::symlink_metadata(&to) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&to).map_err(|e| at(&to, e))?;
                        fs::create_dir(&to).map_err(|e| at(&to, e))?;
                    }
                    Err(_) => fs::create_dir(&to).map_err(|e| at(&to, e))?,
                }
                stack.push((from, to));
            } else if kind.is_file() {
                // Never write through a link that happens to sit where the file goes.
                remove_non_dir(&to)?;
                fs::copy(&from, &to).map_err(|e| at(&from, e))?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(|e| at(&from, e))?;
                remove_non_dir(&to)?;
                std::os::unix::fs::symlink(&target, &to).map_err(|e| at(&to, e))?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a file, directory or symlink", from.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Writes an uncompressed tar of the contents of directory `dir` to the file `dest` (created
/// or truncated). Entry paths are relative to `dir`, without an entry for `dir` itself;
/// directories (empty ones too), regular files and symlinks (as links) are archived, each
/// directory before its contents; sockets and other special files are skipped.
pub fn write_tar(dir: &Path, dest: &Path) -> io::Result<()> {
    let file = fs::File::create(dest).map_err(|e| at(dest, e))?;
    let mut out = append_tree(dir, BufWriter::new(file))?;
    out.flush().map_err(|e| at(dest, e))
}

/// A tar of the contents of `dir` (as [`append_tree`] writes it) in an anonymous temporary
/// file, rewound: what executors upload as a seed, which may be a cache too large to hold in
/// memory. Runs on a blocking thread.
pub async fn packed_tree(dir: &Path) -> io::Result<fs::File> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> io::Result<fs::File> {
        use std::io::Seek;
        let mut file = append_tree(&dir, tempfile::tempfile()?)?;
        file.flush()?;
        file.rewind()?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Writes a tar of the contents of `dir` to `writer` as [`write_tar`] does, and returns the
/// writer once the archive is complete.
pub fn append_tree<W: Write>(dir: &Path, writer: W) -> io::Result<W> {
    let meta = fs::metadata(dir).map_err(|e| at(dir, e))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory", dir.display()),
        ));
    }
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    // Depth first, so that every directory comes before what it holds.
    let mut stack: Vec<(PathBuf, PathBuf)> = Vec::new();
    push_sorted(dir, Path::new(""), &mut stack)?;
    while let Some((path, rel)) = stack.pop() {
        let kind = fs::symlink_metadata(&path).map_err(|e| at(&path, e))?.file_type();
        if kind.is_dir() {
            builder.append_dir(&rel, &path).map_err(|e| at(&path, e))?;
            push_sorted(&path, &rel, &mut stack)?;
        } else if kind.is_file() || kind.is_symlink() {
            builder.append_path_with_name(&path, &rel).map_err(|e| at(&path, e))?;
        }
    }
    builder.into_inner()
}

/// Pushes the entries of `dir` on `stack` so that they pop in name order.
fn push_sorted(dir: &Path, rel: &Path, stack: &mut Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| at(dir, e))? {
        names.push(entry.map_err(|e| at(dir, e))?.file_name());
    }
    names.sort();
    stack.extend(names.into_iter().rev().map(|name| (dir.join(&name), rel.join(&name))));
    Ok(())
}

/// Removes `path` unless it is a directory or missing.
fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => fs::remove_file(path).map_err(|e| at(path, e)),
        _ => Ok(()),
    }
}

/// Puts the path in front of an I/O error's message.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar: &Path) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut archive = tar::Archive::new(fs::File::open(tar).expect("open"));
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            let mut data = Vec::new();
            io::Read::read_to_end(&mut entry, &mut data).expect("read");
            if kind.is_symlink() {
                let target = entry.link_name().expect("link").expect("target");
                data = target.to_string_lossy().into_owned().into_bytes();
            }
            out.push((path, kind, data));
        }
        out
    }

    #[test]
    fn copies_and_archives_a_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("a/b")).expect("mkdir");
        fs::create_dir_all(src.join("empty")).expect("mkdir");
        fs::write(src.join("top.txt"), "top\n").expect("write");
        fs::write(src.join("a/b/deep.txt"), "deep\n").expect("write");
        std::os::unix::fs::symlink("a/b/deep.txt", src.join("link")).expect("symlink");

        let dest = tmp.path().join("dest");
        fs::create_dir_all(&dest).expect("mkdir");
        fs::write(dest.join("top.txt"), "old\n").expect("write");
        // A link where a file goes is replaced, not written through.
        let outside = tmp.path().join("outside.txt");
        fs::write(&outside, "outside\n").expect("write");
        fs::create_dir_all(dest.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, dest.join("a/b/deep.txt")).expect("symlink");

        copy_dir_contents(&src, &dest).expect("copy");
        assert_eq!(fs::read_to_string(dest.join("top.txt")).expect("read"), "top\n");
        assert_eq!(fs::read_to_string(dest.join("a/b/deep.txt")).expect("read"), "deep\n");
        assert_eq!(fs::read_to_string(&outside).expect("read"), "outside\n");
        assert_eq!(fs::read_link(dest.join("link")).expect("link"), Path::new("a/b/deep.txt"));
        assert!(dest.join("empty").is_dir());

        let tar = tmp.path().join("out.tar");
        write_tar(&src, &tar).expect("tar");
        use tar::EntryType as T;
        let got = listing(&tar);
        let want: Vec<(String, T, Vec<u8>)> = vec![
            ("a".into(), T::Directory, vec![]),
            ("a/b".into(), T::Directory, vec![]),
            ("a/b/deep.txt".into(), T::Regular, b"deep\n".to_vec()),
            ("empty".into(), T::Directory, vec![]),
            ("link".into(), T::Symlink, b"a/b/deep.txt".to_vec()),
            ("top.txt".into(), T::Regular, b"top\n".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_seed_that_is_not_a_directory_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("f");
        fs::write(&file, "x").expect("write");
        let err = copy_dir_contents(&file, &tmp.path().join("d")).expect_err("not a dir");
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = copy_dir_contents(&tmp.path().join("missing"), &tmp.path().join("d"))
            .expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
