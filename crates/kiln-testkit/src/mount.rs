//! Faults of the file system under a data directory, made real with mounts (the tests run
//! as root): a small tmpfs to fill ([`Mount::tmpfs`], [`fill`]), and a read-only view of a
//! directory put over it while a server runs ([`Mount::read_only`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount made for a test, unmounted (lazily) when dropped.
#[derive(Debug)]
pub struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` (`24m`) at `at`, creating the directory first.
    pub fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {} (the tests run as root)", at.display());
        Mount(at.to_path_buf())
    }

    /// Puts a read-only view of `dir` over `dir` itself: from now on every path under it is
    /// on a read-only file system (creating, writing, renaming and removing fail with
    /// `EROFS`), as for a data directory whose disk was remounted read-only. Files a process
    /// already holds open for writing stay writable (the kernel refuses to remount a file
    /// system read-only while any are, so this is how a test gets there under a running
    /// server). Dropping the mount makes the directory writable again.
    pub fn read_only(dir: &Path) -> Mount {
        let run = |args: &[&str]| {
            let status = Command::new("mount").args(args).arg(dir).arg(dir).status().unwrap();
            assert!(status.success(), "mount {args:?} {} (the tests run as root)", dir.display());
        };
        run(&["--bind"]);
        let status =
            Command::new("mount").args(["-o", "remount,bind,ro"]).arg(dir).status().unwrap();
        if !status.success() {
            let _ = Command::new("umount").arg("-l").arg(dir).status();
            panic!("remount the view of {} read-only", dir.display());
        }
        Mount(dir.to_path_buf())
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with a file `dir/filler` until not one byte fits; deleting
/// the file gives the space back. Its path.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "the disk is full: {e}");
                break;
            }
        }
    }
    // The last partial block, byte by byte.
    while file.write(&[0]).is_ok_and(|n| n == 1) {}
    let _ = file.sync_all();
    path
}
