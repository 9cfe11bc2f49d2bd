//! Pure rewrite of the tar `tar cf - -C /workspace .` prints in the keeper container into
//! the archive the executor contract wants: paths relative to the workspace (`dist/app.txt`,
//! not `./dist/app.txt`) and no entry for the root itself.

use std::io::{self, Read, Write};

/// The entry path `raw` relative to the workspace, `None` for the root itself.
pub fn relative(raw: &str) -> Option<String> {
    let mut path = raw;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    let path = path.trim_start_matches('/');
    (!path.is_empty() && path != ".").then(|| path.to_string())
}

/// Copies the archive read from `input` to `output`, with every entry path made relative by
/// [`relative`] (hard-link targets too) and the root entry dropped.
pub fn rewrite<R: Read, W: Write>(input: R, output: W) -> io::Result<W> {
    let mut archive = tar::Archive::new(input);
    let mut builder = tar::Builder::new(output);
    builder.follow_symlinks(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = relative(&raw) else { continue };
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_hard_link()
            && let Some(target) = entry.link_name_bytes()
        {
            let target = String::from_utf8_lossy(&target).into_owned();
            let target = relative(&target).unwrap_or(target);
            builder.append_link(&mut header, &path, &target)?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
            builder.append_link(&mut header, &path, target.unwrap_or_default())?;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_exec::conformance::TarEntry;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("./"), None);
        assert_eq!(relative("."), None);
        assert_eq!(relative("./dist/"), Some("dist/".to_string()));
        assert_eq!(relative("./dist/app.txt"), Some("dist/app.txt".to_string()));
        assert_eq!(relative("top.txt"), Some("top.txt".to_string()));
    }

    #[test]
    fn the_root_goes_and_prefixes_are_dropped() {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        b.append_data(&mut dir.clone(), "./", io::empty()).unwrap();
        b.append_data(&mut dir, "./dist/", io::empty()).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o644);
        file.set_size(6);
        b.append_data(&mut file, "./dist/app.txt", &b"hello\n"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "./latest", "dist/app.txt").unwrap();
        let raw = b.into_inner().unwrap();

        let out = rewrite(&raw[..], Vec::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        std::fs::write(&path, out).unwrap();
        let entries = kiln_exec::conformance::tar_entries(&path);
        let expected = std::collections::BTreeMap::from([
            ("dist".to_string(), TarEntry::Dir),
            ("dist/app.txt".to_string(), TarEntry::File(b"hello\n".to_vec())),
            ("latest".to_string(), TarEntry::Symlink("dist/app.txt".to_string())),
        ]);
        assert_eq!(entries, expected);
    }
}
