//! An image's file system, as far as scanning needs it: its layers read in order with OCI
//! whiteouts applied, keeping only the files a parser recognises.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use crate::Package;
use crate::parsers::{self, Kind, gobin};

/// The largest file kept for parsing; a bigger recognised file is an error.
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// Why an image or a file could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A layer is not a readable tar (gzip or not).
    #[error("layer {layer}: {message}")]
    Layer {
        /// 0-based position of the layer in the image.
        layer: usize,
        /// What went wrong reading it.
        message: String,
    },
    /// A recognised file could not be parsed.
    #[error("{path}:{line}{}: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
    Parse {
        /// The file's path in the image.
        path: String,
        /// 1-based line (0 when not on one line).
        line: usize,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A file whose path no parser recognises.
    #[error(
        "{path}: not a file Kiln reads packages from (expected var/lib/dpkg/status, var/lib/dpkg/status.d/*, lib/apk/db/installed, Cargo.lock, package-lock.json, poetry.lock, requirements*.txt or a Go binary)"
    )]
    Unrecognised {
        /// The path given.
        path: String,
    },
}

/// What one file of the image is to the scan.
#[derive(Debug, Clone)]
enum Kept {
    Parsed(Kind, Vec<u8>),
    GoBinary(Vec<Package>),
}

/// Reads an image's layers (in order, each a tar, gzip or not: detected by magic) applying
/// OCI whiteouts, and returns the packages of the files it recognises, sorted. OS packages
/// carry the release the image's `etc/os-release` names.
pub fn packages_from_layers<R: Read>(
    layers: impl IntoIterator<Item = R>,
) -> Result<Vec<Package>, ScanError> {
    let mut files: BTreeMap<String, Kept> = BTreeMap::new();
    for (index, layer) in layers.into_iter().enumerate() {
        read_layer(index, layer, &mut files)?;
    }
    let release =
        files.get("etc/os-release").or_else(|| files.get("usr/lib/os-release")).and_then(|kept| {
            match kept {
                Kept::Parsed(_, bytes) => {
                    parsers::os_release::release(&String::from_utf8_lossy(bytes))
                }
                Kept::GoBinary(_) => None,
            }
        });
    let mut out = Vec::new();
    for (path, kept) in &files {
        match kept {
            Kept::Parsed(Kind::OsRelease, _) => {}
            Kept::Parsed(kind, bytes) => {
                let mut packages = parse_bytes(*kind, path, bytes)?;
                if matches!(kind, Kind::DpkgStatus | Kind::DpkgStatusD | Kind::ApkInstalled) {
                    for p in &mut packages {
                        p.release.clone_from(&release);
                    }
                }
                out.extend(packages);
            }
            Kept::GoBinary(packages) => out.extend(packages.iter().cloned()),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The same from one file's bytes (path decides the parser), for tests and `kiln registry
/// scan` of a file. A file with the ELF magic is searched for Go build info.
pub fn packages_from_file(path: &str, bytes: &[u8]) -> Result<Vec<Package>, ScanError> {
    let clean = parsers::clean_path(path);
    match parsers::kind(clean) {
        Some(Kind::OsRelease) | None if gobin::is_elf(bytes) => Ok(gobin::parse(clean, bytes)),
        Some(Kind::OsRelease) | None => Err(ScanError::Unrecognised { path: path.to_string() }),
        Some(kind) => parse_bytes(kind, clean, bytes),
    }
}

fn parse_bytes(kind: Kind, path: &str, bytes: &[u8]) -> Result<Vec<Package>, ScanError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(bytes, e.valid_up_to());
        ScanError::Parse {
            path: path.to_string(),
            line,
            column: Some(column),
            message: "not UTF-8 text".to_string(),
        }
    })?;
    parsers::parse(kind, path, text).map_err(|e| ScanError::Parse {
        path: path.to_string(),
        line: e.line,
        column: (e.column > 0).then_some(e.column),
        message: e.message,
    })
}

fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

fn read_layer<R: Read>(
    index: usize,
    layer: R,
    files: &mut BTreeMap<String, Kept>,
) -> Result<(), ScanError> {
    let fail = |message: String| ScanError::Layer { layer: index, message };
    let mut reader = BufReader::new(layer);
    let head = reader.fill_buf().map_err(|e| fail(format!("cannot read: {e}")))?;
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(fail(
            "zstd-compressed layers are not supported: expected a tar, gzipped or not".to_string(),
        ));
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(decoded);
    // What this layer adds, and what it removes from the layers below it.
    let mut added: BTreeMap<String, Option<Kept>> = BTreeMap::new();
    let mut whiteouts: Vec<String> = Vec::new();
    let mut opaque: Vec<String> = Vec::new();
    let entries = archive.entries().map_err(|e| fail(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(format!("not a tar archive: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| fail(format!("an entry with a bad path: {e}")))?
            .to_string_lossy()
            .into_owned();
        let path = parsers::clean_path(&raw_path).trim_end_matches('/').to_string();
        let (dir, base) = match path.rsplit_once('/') {
            Some((dir, base)) => (dir.to_string(), base),
            None => (String::new(), path.as_str()),
        };
        if base == ".wh..wh..opq" {
            opaque.push(dir);
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            whiteouts.push(join(&dir, hidden));
            continue;
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            // A directory, link or device replaces whatever file was at its path.
            added.insert(path, None);
            continue;
        }
        let recognised = parsers::kind(&path);
        let size = entry.size();
        if recognised.is_none() && (size < 64 || entry.header().mode().unwrap_or(0) & 0o111 == 0) {
            added.insert(path, None);
            continue;
        }
        if size > MAX_FILE {
            if recognised.is_some() {
                return Err(fail(format!(
                    "{path} is {size} bytes, more than the {MAX_FILE} bytes Kiln reads"
                )));
            }
            added.insert(path, None);
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(MAX_FILE)).unwrap_or(0));
        if recognised.is_none() {
            // Only ELF executables are read whole (for Go build info).
            let mut head = [0u8; 4];
            entry.read_exact(&mut head).map_err(|e| fail(format!("cannot read {path}: {e}")))?;
            if !gobin::is_elf(&head) {
                added.insert(path, None);
                continue;
            }
            bytes.extend_from_slice(&head);
        }
        entry.read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read {path}: {e}")))?;
        let kept = match recognised {
            Some(kind) => Some(Kept::Parsed(kind, bytes)),
            None => {
                let packages = gobin::parse(&path, &bytes);
                (!packages.is_empty()).then_some(Kept::GoBinary(packages))
            }
        };
        added.insert(path, kept);
    }
    for dir in opaque {
        let prefix = format!("{dir}/");
        files.retain(|p, _| !(dir.is_empty() || p.starts_with(&prefix)));
    }
    for gone in whiteouts {
        let prefix = format!("{gone}/");
        files.retain(|p, _| p != &gone && !p.starts_with(&prefix));
    }
    for (path, kept) in added {
        match kept {
            Some(kept) => {
                files.insert(path, kept);
            }
            None => {
                files.remove(&path);
            }
        }
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}
