//! The package databases and lock files Kiln reads, one parser each, chosen by path.

pub(crate) mod apk;
pub(crate) mod cargo;
pub(crate) mod dpkg;
pub(crate) mod gobin;
pub(crate) mod npm;
pub(crate) mod os_release;
pub(crate) mod python;
pub(crate) mod toml_lite;

use crate::{Ecosystem, Package};

/// A file a parser could not read: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line (0 when the error is not on one line).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> ParseError {
        ParseError { line, column: 0, message: message.into() }
    }
}

/// What a path is, for the parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `var/lib/dpkg/status`.
    DpkgStatus,
    /// A file of `var/lib/dpkg/status.d/` (distroless images).
    DpkgStatusD,
    /// `lib/apk/db/installed`.
    ApkInstalled,
    /// `Cargo.lock`.
    CargoLock,
    /// `package-lock.json`.
    NpmLock,
    /// `poetry.lock`.
    PoetryLock,
    /// `requirements*.txt`.
    Requirements,
    /// `etc/os-release` or `usr/lib/os-release`.
    OsRelease,
}

/// Normalises a path from a tar or a caller: no leading `./` or `/`.
pub(crate) fn clean_path(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p;
        }
    }
}

/// Which parser reads a path, if any.
pub(crate) fn kind(path: &str) -> Option<Kind> {
    let path = clean_path(path);
    let base = path.rsplit('/').next().unwrap_or(path);
    match path {
        "var/lib/dpkg/status" => return Some(Kind::DpkgStatus),
        "lib/apk/db/installed" => return Some(Kind::ApkInstalled),
        "etc/os-release" | "usr/lib/os-release" => return Some(Kind::OsRelease),
        _ => {}
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        if !name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums") {
            return Some(Kind::DpkgStatusD);
        }
        return None;
    }
    // Lock files that come with downloaded dependencies (npm's `node_modules`, Cargo's
    // registry cache) describe those dependencies' own builds, not what is installed.
    if path.contains("node_modules/") || path.contains(".cargo/registry/") {
        return None;
    }
    match base {
        "Cargo.lock" => Some(Kind::CargoLock),
        "package-lock.json" => Some(Kind::NpmLock),
        "poetry.lock" => Some(Kind::PoetryLock),
        _ if base.starts_with("requirements") && base.ends_with(".txt") => Some(Kind::Requirements),
        _ => None,
    }
}

/// Parses a recognised file (not `os-release`, which only gives a release).
pub(crate) fn parse(kind: Kind, path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let path = clean_path(path);
    match kind {
        Kind::DpkgStatus | Kind::DpkgStatusD => dpkg::parse(path, text),
        Kind::ApkInstalled => apk::parse(path, text),
        Kind::CargoLock => cargo::parse(path, text),
        Kind::NpmLock => npm::parse(path, text),
        Kind::PoetryLock => python::parse_poetry(path, text),
        Kind::Requirements => Ok(python::parse_requirements(path, text)),
        Kind::OsRelease => Ok(Vec::new()),
    }
}

/// A package of a language ecosystem (no distribution release).
pub(crate) fn package(ecosystem: Ecosystem, name: &str, version: &str, source: &str) -> Package {
    Package::new(ecosystem, name, version, source)
}
