//! The S3 server of the registry's S3 blob-store tests: `s3s-fs` from crates.io, pinned to
//! 0.14.1 (0.15 and later need Rust 1.96), which checks request signatures. Installed with
//! `cargo install` when missing (about 2-3 minutes on 2 cores) into
//! `<tools>/s3s-fs-0.14.1/bin` (`KILN_TOOLS_DIR`, default `~/.cache/kiln-tools`), or taken
//! from `~/.cargo/bin` when `cargo install --list` shows that version there. The tests find it
//! through `KILN_TEST_S3S_FS`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::step::{self, cargo};

/// The variable naming the binary to the tests (`kiln_testkit::S3S_FS_VAR`).
pub const VAR: &str = "KILN_TEST_S3S_FS";

/// The pinned version.
const VERSION: &str = "0.14.1";

/// The path of an installed `s3s-fs` of the pinned version, installing it first if needed.
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(VAR).map(PathBuf::from) {
        if path.is_file() {
            println!("{VAR}={} (given)", path.display());
            return Ok(path);
        }
        bail!("{VAR}={} is not a file", path.display());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    let cargo_home =
        std::env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    let in_cargo = cargo_home.join("bin/s3s-fs");
    if in_cargo.is_file() {
        let list = step::output(cargo().args(["install", "--list"])).unwrap_or_default();
        if list.lines().any(|l| l.starts_with(&format!("s3s-fs v{VERSION}:"))) {
            println!("s3s-fs {VERSION} at {}", in_cargo.display());
            return Ok(in_cargo);
        }
    }
    let tools = std::env::var_os("KILN_TOOLS_DIR")
        .map_or_else(|| home.join(".cache/kiln-tools"), PathBuf::from);
    let root = tools.join(format!("s3s-fs-{VERSION}"));
    let bin = root.join("bin/s3s-fs");
    if !bin.is_file() {
        println!("==> s3s-fs is missing: installing s3s-fs@{VERSION} into {}", root.display());
        step::run(
            cargo()
                .args(["install", &format!("s3s-fs@{VERSION}"), "--features", "binary", "--locked"])
                .arg("--root")
                .arg(&root),
        )?;
    }
    if !bin.is_file() {
        bail!("{} is still missing after cargo install", bin.display());
    }
    let help = Command::new(&bin).arg("--help").output();
    if !help.is_ok_and(|o| o.status.success()) {
        bail!("{} --help fails", bin.display());
    }
    println!("s3s-fs {VERSION} at {}", bin.display());
    Ok(bin)
}
