//! A service instance's config files on disk, written the way Kubernetes writes ConfigMap
//! volumes (its `AtomicWriter`): a release's files go into a data directory of their own,
//! `<dir>/..<release>_<short digest>/`, then the `<dir>/..data` symlink is swapped to it at
//! once (a new symlink renamed over the old one), and each top-level entry of the files
//! (`app.yaml`, `conf.d`) is a relative symlink through `..data` (`app.yaml ->
//! ..data/app.yaml`). A program reading `<dir>/app.yaml` sees the old bytes or the new ones,
//! never a half-written file or a missing one; one that resolves `..data` once sees every
//! file of one release together.
//!
//! Nothing is written when the files' digest is the one `..data` names (the bytes did not
//! change). The data directory `..data` pointed to before a swap is kept (one previous, for
//! a program still reading it); older ones are removed.
//!
//! Invariants: the file names come from the config center, which checked them; they are
//! checked again here (relative, no `.` or `..` part, and no top-level name starting with
//! `..`, which is this layout's), so nothing is ever written outside `<dir>`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The symlink to the current data directory.
pub const DATA: &str = "..data";

/// How many hex digits of the digest name a data directory.
const SHORT: usize = 12;

/// The files of one config release, as the server sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFiles {
    /// The release's number.
    pub release: u32,
    /// The files' digest (`sha256:…`).
    pub digest: String,
    /// Relative file name to contents.
    pub files: BTreeMap<String, String>,
}

/// Why config files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFilesError {
    /// A file name that would leave the directory or clash with the layout.
    #[error("config file `{name}`: {why}")]
    Name {
        /// The name as sent.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The file system refused.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ConfigFilesError {
    let path = path.to_path_buf();
    move |source| ConfigFilesError::Io { what, path, source }
}

/// The first hex digits of a digest (`sha256:4f2a…` gives `4f2a…`, 12 of them).
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(SHORT)]
}

/// The data directory of a release: `..3_4f2a9c1b7e0d`.
pub fn data_dir_name(release: u32, digest: &str) -> String {
    format!("..{release}_{}", short_digest(digest))
}

/// The data directory `<dir>/..data` names, if any.
pub fn current(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join(DATA)).ok()?;
    Some(target.to_str()?.to_string())
}

/// The top-level entries of `files` (`app.yaml`, `conf.d`), each name checked.
fn top_level(files: &BTreeMap<String, String>) -> Result<BTreeSet<String>, ConfigFilesError> {
    let bad = |name: &str, why: &str| ConfigFilesError::Name { name: name.into(), why: why.into() };
    let mut tops = BTreeSet::new();
    for name in files.keys() {
        let path = Path::new(name);
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().unwrap_or_default().to_string()),
                _ => return Err(bad(name, "expected a relative path without `.` or `..` parts")),
            }
        }
        let Some(first) = parts.first() else {
            return Err(bad(name, "an empty name"));
        };
        if first.starts_with("..") {
            return Err(bad(name, "a name starting with `..` is the config directory's own"));
        }
        // A file cannot also be a directory of another one.
        for end in 1..parts.len() {
            let prefix = parts[..end].join("/");
            if files.contains_key(&prefix) {
                return Err(bad(name, &format!("`{prefix}` is a file, not a directory")));
            }
        }
        tops.insert(first.clone());
    }
    Ok(tops)
}

/// Writes `files` into `into` (created), each file readable by everyone.
fn write_tree(into: &Path, files: &BTreeMap<String, String>) -> Result<(), ConfigFilesError> {
    std::fs::create_dir_all(into).map_err(io_err("creating", into))?;
    for (name, contents) in files {
        let path = into.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, contents).map_err(io_err("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err("setting the mode of", &path))?;
    }
    // Directories readable and searchable by everyone (a container's user is anyone).
    let mut dirs = vec![into.to_path_buf()];
    while let Some(d) = dirs.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("setting the mode of", &d))?;
        for entry in std::fs::read_dir(&d).map_err(io_err("reading", &d))? {
            let entry = entry.map_err(io_err("reading", &d))?;
            if entry.file_type().map_err(io_err("reading", &entry.path()))?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Points the symlink `dir/name` at `target`, replacing what is there at once (a new
/// symlink renamed over it).
fn swap_link(dir: &Path, name: &str, target: &Path) -> Result<(), ConfigFilesError> {
    let link = dir.join(name);
    if std::fs::read_link(&link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = dir.join("..link_tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("removing", &tmp)(e));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("linking", &tmp))?;
    std::fs::rename(&tmp, &link).map_err(io_err("renaming over", &link))
}

fn remove_any(path: &Path) -> Result<(), ConfigFilesError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    let removed =
        if meta.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    removed.map_err(io_err("removing", path))
}

/// Writes release `files` into `dir` (created if missing) as the module docs say; `false`
/// when `dir` already holds files of the same digest (nothing was written).
pub fn write(dir: &Path, files: &ConfigFiles) -> Result<bool, ConfigFilesError> {
    let tops = top_level(&files.files)?;
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let previous = current(dir);
    let short = short_digest(&files.digest);
    if previous.as_deref().and_then(|p| p.split_once('_')).is_some_and(|(_, s)| s == short) {
        return Ok(false);
    }
    let name = data_dir_name(files.release, &files.digest);
    // Written aside, then renamed into place: a data directory is complete or absent.
    let tmp = dir.join("..tmp");
    remove_any(&tmp)?;
    write_tree(&tmp, &files.files)?;
    let data = dir.join(&name);
    remove_any(&data)?;
    std::fs::rename(&tmp, &data).map_err(io_err("renaming into place", &data))?;
    swap_link(dir, DATA, Path::new(&name))?;
    for top in &tops {
        swap_link(dir, top, &Path::new(DATA).join(top))?;
    }
    // What the last release had and this one has not: its links, then old data directories
    // (the one `..data` named before is kept).
    for entry in std::fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let entry = entry.map_err(io_err("reading", dir))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let path = entry.path();
        if file.starts_with("..") {
            let keep = file == DATA || file == name || previous.as_deref() == Some(file);
            if !keep {
                remove_any(&path)?;
            }
        } else if !tops.contains(file)
            && std::fs::read_link(&path).is_ok_and(|t| t.starts_with(DATA))
        {
            remove_any(&path)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(n: u32, digest: &str, files: &[(&str, &str)]) -> ConfigFiles {
        ConfigFiles {
            release: n,
            digest: digest.into(),
            files: files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn entries(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn files_are_read_through_data_and_relative_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        let r1 = release(
            1,
            "sha256:aaaa11112222333344",
            &[("app.yaml", "port: 8080\n"), ("conf.d/db.conf", "host=db\n")],
        );
        assert!(write(&dir, &r1).unwrap());
        assert_eq!(entries(&dir), set(&["..data", "..1_aaaa11112222", "app.yaml", "conf.d"]));
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), Path::new("..1_aaaa11112222"));
        assert_eq!(std::fs::read_link(dir.join("app.yaml")).unwrap(), Path::new("..data/app.yaml"));
        assert_eq!(std::fs::read_link(dir.join("conf.d")).unwrap(), Path::new("..data/conf.d"));
        assert_eq!(std::fs::read_to_string(dir.join("app.yaml")).unwrap(), "port: 8080\n");
        assert_eq!(std::fs::read_to_string(dir.join("conf.d/db.conf")).unwrap(), "host=db\n");
        let mode = std::fs::metadata(dir.join("app.yaml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // Moved elsewhere (a bind mount), the relative links still resolve.
        let moved = tmp.path().join("moved");
        std::fs::rename(&dir, &moved).unwrap();
        assert_eq!(std::fs::read_to_string(moved.join("conf.d/db.conf")).unwrap(), "host=db\n");
    }

    #[test]
    fn the_same_digest_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        assert!(write(&dir, &release(1, "sha256:abcdef0123456789", &[("a", "1")])).unwrap());
        let data = dir.join("..1_abcdef012345");
        let before = std::fs::symlink_metadata(&data).unwrap().modified().unwrap();
        let link = std::fs::symlink_metadata(dir.join(DATA)).unwrap().modified().unwrap();
        // Release 2 renders the same bytes (a rollback to them, say).
        assert!(!write(&dir, &release(2, "sha256:abcdef0123456789", &[("a", "1")])).unwrap());
        assert_eq!(entries(&dir), set(&["..data", "..1_abcdef012345", "a"]));
        assert_eq!(std::fs::symlink_metadata(&data).unwrap().modified().unwrap(), before);
        assert_eq!(std::fs::symlink_metadata(dir.join(DATA)).unwrap().modified().unwrap(), link);
    }

    #[test]
    fn a_new_release_swaps_keeping_one_previous_and_dropping_gone_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        write(&dir, &release(1, "sha256:111111111111aa", &[("a", "1"), ("old", "x")])).unwrap();
        write(&dir, &release(2, "sha256:222222222222bb", &[("a", "2"), ("d/b", "2")])).unwrap();
        assert_eq!(
            entries(&dir),
            set(&["..data", "..1_111111111111", "..2_222222222222", "a", "d"]),
            "`old` is gone, release 1's directory kept as the previous one"
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(dir.join("d/b")).unwrap(), "2");
        write(&dir, &release(3, "sha256:333333333333cc", &[("a", "3")])).unwrap();
        assert_eq!(entries(&dir), set(&["..data", "..2_222222222222", "..3_333333333333", "a"]));
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        // Back to release 1's bytes as release 4: a directory of its own.
        write(&dir, &release(4, "sha256:111111111111aa", &[("a", "1"), ("old", "x")])).unwrap();
        assert_eq!(
            entries(&dir),
            set(&["..data", "..3_333333333333", "..4_111111111111", "a", "old"])
        );
        assert_eq!(std::fs::read_to_string(dir.join("old")).unwrap(), "x");
    }

    #[test]
    fn readers_never_see_a_partial_or_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        let big = |c: char| c.to_string().repeat(256 * 1024);
        let (a, b) = (big('a'), big('b'));
        write(&dir, &release(0, "sha256:a0", &[("f", &a)])).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (dir, stop, a, b) = (dir.clone(), stop.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let got = std::fs::read_to_string(dir.join("f")).expect("always there");
                    assert!(got == a || got == b, "a partial file of {} bytes", got.len());
                    reads += 1;
                }
                reads
            })
        };
        for n in 1..=100u32 {
            let (digest, body) = if n % 2 == 0 { ("sha256:a0", &a) } else { ("sha256:b1", &b) };
            assert!(write(&dir, &release(n, &format!("{digest}{n}"), &[("f", body)])).unwrap());
            // Paced like releases, not a busy loop: a reader is never two swaps behind.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reads = reader.join().expect("the reader saw whole files only");
        assert!(reads > 0);
        assert_eq!(entries(&dir).len(), 4, "{:?}", entries(&dir));
    }

    #[test]
    fn names_that_leave_the_directory_or_clash_are_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        for (name, why) in [
            ("../x", "relative path"),
            ("/etc/passwd", "relative path"),
            ("./a", "relative path"),
            ("..data", "config directory's own"),
        ] {
            let e = write(&dir, &release(1, "sha256:1", &[(name, "x")])).unwrap_err();
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
        let e = write(&dir, &release(1, "sha256:1", &[("a", "1"), ("a/b", "2")])).unwrap_err();
        assert!(e.to_string().contains("`a` is a file"), "{e}");
        assert!(!dir.exists(), "nothing was written");
    }
}
