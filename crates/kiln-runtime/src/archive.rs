//! Caches and artifacts on the file system: [`select`] the entries of an exported workspace
//! (an uncompressed tar, see `Executor::export_workspace`) named by GitLab-style path patterns
//! into a `.tar.gz`, [`unpack`] such an archive safely (into a seed directory, say), and
//! [`hash_files`] for cache keys.
//!
//! Patterns follow GitLab's `artifacts:paths` / `cache:paths`: relative to the workspace; a
//! pattern naming a directory (`dist`, `dist/`) takes everything below it; `*` and `?` stay
//! within one path component, `**` crosses any number (`dist/**/*.js`, `build/*/out`);
//! `..` and absolute paths are refused.
//!
//! One rule for links, at both ends: a symlink is kept only when it stays inside the archive's
//! root (relative, not climbing out with `..`). [`select`] leaves the others out of the
//! archive and says so ([`Contents::skipped`]), so a consumer never fails on them; [`unpack`]
//! skips them the same way in archives made elsewhere. Both ends also hold archives to the
//! same [`Limits`] (unpacked bytes and entries), so an archive bomb is refused before it is
//! written and a workspace too big to unpack is refused when packed.
//!
//! Synchronous and free of tokio: call these from `spawn_blocking`. Invariants: nothing is
//! ever written outside the destination given (no `..`, no absolute path, no link leading
//! out, no device node), nor more than the limits; every error names the file, entry or
//! pattern at fault.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// One regular file taken into or out of an archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileEntry {
    /// Path relative to the workspace (or the destination), `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Most bytes of file contents an archive may unpack to (the sum of its files' sizes).
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;

/// Most entries (files, directories, links) an archive may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// What an archive may hold once unpacked; checked when it is packed and when it is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file contents (hard links count as the files they copy).
    pub bytes: u64,
    /// Most entries.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { bytes: MAX_UNPACKED_BYTES, entries: MAX_ENTRIES }
    }
}

/// A symlink left out of an archive (when packed) or of a destination (when unpacked)
/// because it leads out of the archive's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The link's path, relative to the root.
    pub path: String,
    /// Where it points, as written.
    pub target: String,
    /// Why it was left out.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "symlink {:?} -> {:?} left out: {}; archives keep only links that stay inside \
             (copy the file it points to into the workspace instead)",
            self.path, self.target, self.reason
        )
    }
}

/// What [`select`] packed or [`unpack`] extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// The regular files (hard links included), sorted by path.
    pub files: Vec<FileEntry>,
    /// The symlinks left out, in archive order.
    pub skipped: Vec<Skipped>,
}

/// Why an archive could not be read, written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A path pattern is malformed, absolute or leaves the workspace.
    #[error("invalid path pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `hash_files` pattern matches no file.
    #[error("{pattern:?} matches no file in {}", dir.display())]
    NoMatch {
        /// The pattern as given.
        pattern: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// An archive entry that could write outside the destination, or that is not a file,
    /// directory or link.
    #[error("{}: refusing entry {entry:?}: {reason}", archive.display())]
    Unsafe {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// An archive holds, or would hold, more than its [`Limits`] allow.
    #[error("{}: {what}, more than the {limit} an archive may hold unpacked", archive.display())]
    TooLarge {
        /// The archive (or the workspace being packed).
        archive: PathBuf,
        /// What was counted when the limit was passed, such as `17.2 GiB of files`.
        what: String,
        /// The limit, such as `16.0 GiB`.
        limit: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file (archive, directory or extracted file) at fault.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
}

/// Copies into a new gzip-compressed tar `out_tar_gz` the entries of the uncompressed tar
/// `tar_path` whose paths match any of `patterns` (see the module docs), and lists the regular
/// files taken, sorted by path, and the symlinks left out.
///
/// Directories and symlinks that match are kept as such (links are not followed), except
/// symlinks that lead out of the workspace (absolute, or climbing out with `..`): those are
/// left out and listed in [`Contents::skipped`] for the caller to say so. A hard link
/// whose target was not taken becomes a copy of it; device nodes and fifos are left out.
/// Parent directories of what is taken are not added: [`unpack`] creates them. No match at
/// all is an empty list and an empty archive (GitLab warns; the caller decides).
///
/// Errs on a pattern that is malformed, absolute or holds `..` (naming it), on an entry with
/// an absolute or `..` path, on more files or bytes than the default [`Limits`] (what
/// [`unpack`] would refuse), and on I/O failures.
pub fn select(
    tar_path: &Path,
    patterns: &[String],
    out_tar_gz: &Path,
) -> Result<Contents, ArchiveError> {
    select_limited(tar_path, patterns, out_tar_gz, Limits::default())
}

/// [`select`] with other [`Limits`].
pub fn select_limited(
    tar_path: &Path,
    patterns: &[String],
    out_tar_gz: &Path,
    limits: Limits,
) -> Result<Contents, ArchiveError> {
    let patterns = patterns.iter().map(|p| Pattern::new(p)).collect::<Result<Vec<_>, _>>()?;
    let io_out = |error| ArchiveError::Io { path: out_tar_gz.to_path_buf(), error };
    let file = fs::File::create(out_tar_gz).map_err(io_out)?;
    let mut builder =
        tar::Builder::new(GzEncoder::new(BufWriter::new(file), Compression::default()));

    let mut taken: BTreeMap<String, u64> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut counter = Counter::new(tar_path, limits);
    // The regular file behind each hard link seen, so that chains of links resolve.
    let mut origins: HashMap<String, String> = HashMap::new();
    // Hard links whose target was not taken: (path, target, header).
    let mut pending: Vec<(String, String, Header)> = Vec::new();
    let mut reader = TarReader::open(tar_path)?;
    for entry in reader.entries()? {
        let mut entry = entry.map_err(|e| io_in(tar_path, e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = relative(&raw).map_err(|reason| unsafe_entry(tar_path, &raw, reason))?;
        if path.is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let mut origin = None;
        if kind.is_hard_link() {
            let raw_target =
                String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default()).into_owned();
            let target =
                relative(&raw_target).map_err(|reason| unsafe_entry(tar_path, &raw, reason))?;
            let target = origins.get(&target).cloned().unwrap_or(target);
            origins.insert(path.clone(), target.clone());
            origin = Some(target);
        }
        if !patterns.iter().any(|p| p.takes(&path)) {
            continue;
        }
        let mut header = entry.header().clone();
        if kind.is_dir() {
            counter.entry(0)?;
            header.set_size(0);
            builder.append_data(&mut header, &path, io::empty()).map_err(io_out)?;
        } else if kind.is_file() {
            counter.entry(entry.size())?;
            header.set_size(entry.size());
            builder.append_data(&mut header, &path, &mut entry).map_err(io_out)?;
            taken.insert(path, entry.size());
        } else if kind.is_symlink() {
            let raw_target = entry.link_name_bytes().unwrap_or_default();
            let raw_target = String::from_utf8_lossy(&raw_target).into_owned();
            if let Err(reason) = symlink_stays_inside(&path, &raw_target) {
                skipped.push(Skipped { path, target: raw_target, reason });
                continue;
            }
            counter.entry(0)?;
            let target = entry.link_name().map_err(|e| io_in(tar_path, e))?.unwrap_or_default();
            header.set_size(0);
            builder.append_link(&mut header, &path, &target).map_err(io_out)?;
        } else if let Some(target) = origin {
            match taken.get(&target) {
                Some(&size) => {
                    counter.entry(size)?;
                    header.set_size(0);
                    builder.append_link(&mut header, &path, &target).map_err(io_out)?;
                    taken.insert(path, size);
                }
                None => pending.push((path, target, header)),
            }
        }
    }
    if !pending.is_empty() {
        copy_link_targets(tar_path, pending, &mut builder, &mut taken, &mut counter)?;
    }
    let gz = builder.into_inner().map_err(io_out)?;
    gz.finish().and_then(|mut w| w.flush()).map_err(io_out)?;
    let files = taken.into_iter().map(|(path, size)| FileEntry { path, size }).collect();
    Ok(Contents { files, skipped })
}

/// Counts an archive's entries and bytes against its [`Limits`].
struct Counter<'a> {
    archive: &'a Path,
    limits: Limits,
    entries: u64,
    bytes: u64,
}

impl Counter<'_> {
    fn new(archive: &Path, limits: Limits) -> Counter<'_> {
        Counter { archive, limits, entries: 0, bytes: 0 }
    }

    /// One more entry of `size` bytes; an error once past a limit.
    fn entry(&mut self, size: u64) -> Result<(), ArchiveError> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        let too_large = |what: String, limit: String| ArchiveError::TooLarge {
            archive: self.archive.to_path_buf(),
            what,
            limit,
        };
        if self.entries > self.limits.entries {
            return Err(too_large(
                format!("more than {} entries", self.limits.entries),
                format!("{} entries", self.limits.entries),
            ));
        }
        if self.bytes > self.limits.bytes {
            return Err(too_large(
                format!("at least {} of files", size_text(self.bytes)),
                size_text(self.limits.bytes),
            ));
        }
        Ok(())
    }
}

/// Largest long name, long link name or pax header accepted (bytes): the tar crate reads
/// those whole into memory before it hands out the entry they describe.
const MAX_METADATA: u64 = 1 << 20;

/// A reader of an uncompressed tar stream that follows its headers and fails on a metadata
/// entry (GNU long name or link, pax header) larger than [`MAX_METADATA`], so a compressed
/// archive cannot make the tar reader hold gigabytes of "name" in memory.
struct MetadataCap<R> {
    inner: R,
    /// Bytes of the current entry's data (with padding) still to pass.
    remaining: u64,
    /// The header being read, when at a header.
    header: Vec<u8>,
}

impl<R: Read> MetadataCap<R> {
    fn new(inner: R) -> MetadataCap<R> {
        MetadataCap { inner, remaining: 0, header: Vec::with_capacity(512) }
    }

    /// Follows `bytes`, the next ones of the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(bytes.len() as u64)) as usize;
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 512 {
                continue;
            }
            let size = header_size(&self.header);
            let kind = self.header[156];
            self.header.clear();
            if matches!(kind, b'L' | b'K' | b'x' | b'g') && size > MAX_METADATA {
                return Err(io::Error::other(format!(
                    "a long name or pax header of {}, more than the {} accepted",
                    size_text(size),
                    size_text(MAX_METADATA)
                )));
            }
            self.remaining = size.div_ceil(512).saturating_mul(512);
        }
        Ok(())
    }
}

impl<R: Read> Read for MetadataCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

/// The size field of a 512-byte tar header: octal text, or base-256 when its first byte has
/// the high bit set (GNU); 0 when unreadable (the tar reader reports that itself).
fn header_size(header: &[u8]) -> u64 {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(0u64, |n, &b| n.saturating_mul(256).saturating_add(u64::from(b)));
    }
    let text: String = field.iter().map(|&b| b as char).filter(|c| c.is_digit(8)).collect();
    u64::from_str_radix(&text, 8).unwrap_or(0)
}

/// A size for people, to a tenth: `12 B`, `3.4 KiB`, `1.2 MiB`, `16.0 GiB`.
fn size_text(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Second pass of [`select`]: appends each pending hard link as a regular file holding its
/// target's contents (later links to the same target link to the first copy).
fn copy_link_targets<W: Write>(
    tar_path: &Path,
    pending: Vec<(String, String, Header)>,
    builder: &mut tar::Builder<W>,
    taken: &mut BTreeMap<String, u64>,
    counter: &mut Counter<'_>,
) -> Result<(), ArchiveError> {
    let io_out = |error| ArchiveError::Io { path: tar_path.to_path_buf(), error };
    let mut by_target: BTreeMap<String, Vec<(String, Header)>> = BTreeMap::new();
    for (path, target, header) in pending {
        by_target.entry(target).or_default().push((path, header));
    }
    let mut reader = TarReader::open(tar_path)?;
    for entry in reader.entries()? {
        let mut entry = entry.map_err(|e| io_in(tar_path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok(path) = relative(&raw) else { continue };
        let Some(links) = by_target.remove(&path) else { continue };
        let size = entry.size();
        let mut links = links.into_iter();
        let Some((first, _)) = links.next() else { continue };
        let mut header = entry.header().clone();
        header.set_size(size);
        counter.entry(size)?;
        builder.append_data(&mut header, &first, &mut entry).map_err(io_out)?;
        taken.insert(first.clone(), size);
        for (path, mut header) in links {
            counter.entry(size)?;
            header.set_size(0);
            builder.append_link(&mut header, &path, &first).map_err(io_out)?;
            taken.insert(path, size);
        }
    }
    match by_target.into_iter().next() {
        Some((target, links)) => Err(unsafe_entry(
            tar_path,
            &links[0].0,
            format!("hard link to {target:?}, which is not a file before it"),
        )),
        None => Ok(()),
    }
}

/// Extracts the gzip-compressed tar `tar_gz` into `dest` (created if missing) and lists the
/// regular files extracted (hard links included), sorted by path, and the symlinks skipped.
///
/// Skips symlinks whose target is absolute or leads out of `dest` (listed in
/// [`Contents::skipped`]: [`select`] never packs them, other tools may). Refuses (before
/// writing that entry) absolute paths, `..` components, hard links to paths outside `dest`,
/// device nodes and fifos, and more entries or bytes than the default [`Limits`]; a write
/// through a link already in `dest` that leads out is refused too. Existing files are
/// overwritten (a file or link where a directory goes is replaced); existing directories are
/// merged into. Permission bits are kept (not set-id bits), ownership is not.
pub fn unpack(tar_gz: &Path, dest: &Path) -> Result<Contents, ArchiveError> {
    unpack_limited(tar_gz, dest, Limits::default())
}

/// [`unpack`] with other [`Limits`].
pub fn unpack_limited(
    tar_gz: &Path,
    dest: &Path,
    limits: Limits,
) -> Result<Contents, ArchiveError> {
    fs::create_dir_all(dest).map_err(|error| ArchiveError::Io { path: dest.into(), error })?;
    let file =
        fs::File::open(tar_gz).map_err(|error| ArchiveError::Io { path: tar_gz.into(), error })?;
    let mut archive = tar::Archive::new(MetadataCap::new(GzDecoder::new(BufReader::new(file))));
    archive.set_overwrite(true);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    let mut files: BTreeMap<String, u64> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut counter = Counter::new(tar_gz, limits);
    for entry in archive.entries().map_err(|e| io_in(tar_gz, e))? {
        let mut entry = entry.map_err(|e| io_in(tar_gz, e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: String| unsafe_entry(tar_gz, &raw, reason);
        if raw.starts_with('/') {
            return Err(refuse("absolute path".to_string()));
        }
        let path = relative(&raw).map_err(refuse)?;
        if path.is_empty() {
            continue;
        }
        let target_path = dest.join(&path);
        let kind = entry.header().entry_type();
        let mut size = None;
        if kind.is_dir() {
            remove_unless_dir(&target_path)?;
        } else if kind.is_file() {
            size = Some(entry.size());
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            let target = String::from_utf8_lossy(&target).into_owned();
            if let Err(reason) = symlink_stays_inside(&path, &target) {
                skipped.push(Skipped { path, target, reason });
                continue;
            }
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default();
            let target = String::from_utf8_lossy(&target).into_owned();
            if target.starts_with('/') {
                return Err(refuse(format!("hard link to the absolute path {target:?}")));
            }
            let target = relative(&target).map_err(refuse)?;
            size = Some(files.get(&target).copied().unwrap_or(0));
            // `link` does not replace an existing file the way writing one does.
            remove_unless_dir(&target_path)?;
        } else if matches!(kind, EntryType::Char | EntryType::Block) {
            return Err(refuse("device node".to_string()));
        } else if kind == EntryType::Fifo {
            return Err(refuse("fifo".to_string()));
        } else {
            return Err(refuse(format!("unsupported entry type {kind:?}")));
        }
        // Counted before anything is written: an archive bomb stops at its limit.
        counter.entry(size.unwrap_or(0))?;
        let unpacked = entry
            .unpack_in(dest)
            .map_err(|error| ArchiveError::Io { path: target_path.clone(), error })?;
        if !unpacked {
            return Err(refuse("outside the destination".to_string()));
        }
        if let Some(size) = size {
            files.insert(path, size);
        }
    }
    let files = files.into_iter().map(|(path, size)| FileEntry { path, size }).collect();
    Ok(Contents { files, skipped })
}

/// Hashes the files below `dir` named by `files` (paths or patterns as in [`select`]; a
/// directory stands for every file below it): SHA-256 over, for each file in sorted path
/// order, its `/`-separated relative path, a NUL byte, its length as 8 little-endian bytes
/// and its contents. Returns the first 16 hex digits. Symlinks to files count as the files
/// they point to; symlinked directories are not entered.
///
/// Errs on a pattern that matches no file (naming it), on an invalid pattern, and on I/O
/// failures.
pub fn hash_files(dir: &Path, files: &[String]) -> Result<String, ArchiveError> {
    let mut all: Option<Vec<String>> = None;
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    for raw in files {
        let pattern = Pattern::new(raw)?;
        let found: Vec<String> = match pattern.literal() {
            Some(path) => {
                let full = dir.join(path);
                match fs::metadata(&full) {
                    Ok(m) if m.is_file() => vec![path.to_string()],
                    Ok(m) if m.is_dir() => walk_files(dir, path)?,
                    _ => Vec::new(),
                }
            }
            None => {
                let all = match &mut all {
                    Some(all) => all,
                    None => all.insert(walk_files(dir, "")?),
                };
                all.iter().filter(|f| pattern.takes(f)).cloned().collect()
            }
        };
        if found.is_empty() {
            return Err(ArchiveError::NoMatch { pattern: raw.clone(), dir: dir.to_path_buf() });
        }
        chosen.extend(found);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for path in &chosen {
        let full = dir.join(path);
        let io_err = |error| ArchiveError::Io { path: full.clone(), error };
        let mut file = fs::File::open(&full).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        hasher.update(path.as_bytes());
        hasher.update([0u8]);
        hasher.update(len.to_le_bytes());
        loop {
            let n = file.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(16);
    Ok(hex)
}

/// A validated path pattern.
struct Pattern {
    /// Normalised: no `./`, no empty components, no trailing `/`.
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    fn new(raw: &str) -> Result<Pattern, ArchiveError> {
        let bad = |reason: &str| ArchiveError::Pattern {
            pattern: raw.to_string(),
            reason: reason.to_string(),
        };
        if raw.is_empty() {
            return Err(bad("empty"));
        }
        if raw.starts_with('/') {
            return Err(bad("absolute paths are not allowed; paths are relative to the workspace"));
        }
        let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.contains(&"..") {
            return Err(bad("`..` would leave the workspace"));
        }
        let text = parts.join("/");
        // `.` (the whole workspace) takes everything.
        let glob = if text.is_empty() { "**" } else { text.as_str() };
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| bad(&e.kind().to_string()))?
            .compile_matcher();
        Ok(Pattern { text, matcher })
    }

    /// Whether `path` is taken: it or one of its parent directories matches.
    fn takes(&self, path: &str) -> bool {
        let mut candidate = path;
        loop {
            if self.matcher.is_match(candidate) {
                return true;
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return false,
            }
        }
    }

    /// The path itself when the pattern has no glob syntax.
    fn literal(&self) -> Option<&str> {
        let plain =
            !self.text.is_empty() && !self.text.contains(['*', '?', '[', ']', '{', '}', '\\']);
        plain.then_some(self.text.as_str())
    }
}

/// The path of a tar entry, `/`-separated, without `./`, empty components or a trailing
/// `/` (empty for the root); `Err` for an absolute path or a `..` component.
fn relative(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute path".to_string());
    }
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err("`..` in its path".to_string());
    }
    Ok(parts.join("/"))
}

/// The one rule for symlinks in archives: a symlink at `path` (relative to the root) pointing
/// to `target` is kept only when it stays inside the root, `..` resolved lexically. `Err`
/// says why not.
fn symlink_stays_inside(path: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("it has no target".to_string());
    }
    if target.starts_with('/') {
        return Err("an absolute link points outside the workspace".to_string());
    }
    let mut at: Vec<&str> = path.split('/').collect();
    at.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err("it climbs out of the workspace with `..`".to_string());
                }
            }
            part => at.push(part),
        }
    }
    Ok(())
}

/// Removes a file or link at `path` (not a directory); nothing there is fine.
fn remove_unless_dir(path: &Path) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => {
            fs::remove_file(path).map_err(|error| ArchiveError::Io { path: path.into(), error })
        }
        _ => Ok(()),
    }
}

/// The regular files below `dir/sub` (`sub` may be empty), relative to `dir`, sorted.
/// Symlinks to files count; symlinked directories are not entered.
fn walk_files(dir: &Path, sub: &str) -> Result<Vec<String>, ArchiveError> {
    let mut out = Vec::new();
    let mut stack = vec![sub.to_string()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() { dir.to_path_buf() } else { dir.join(&rel) };
        let io_err = |error| ArchiveError::Io { path: full.clone(), error };
        for entry in fs::read_dir(&full).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type().map_err(io_err)?;
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() || (kind.is_symlink() && entry.path().is_file()) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Opens an uncompressed tar for reading.
struct TarReader {
    path: PathBuf,
    archive: tar::Archive<BufReader<fs::File>>,
}

impl TarReader {
    fn open(path: &Path) -> Result<TarReader, ArchiveError> {
        let file =
            fs::File::open(path).map_err(|error| ArchiveError::Io { path: path.into(), error })?;
        Ok(TarReader { path: path.into(), archive: tar::Archive::new(BufReader::new(file)) })
    }

    fn entries(&mut self) -> Result<tar::Entries<'_, BufReader<fs::File>>, ArchiveError> {
        let path = self.path.clone();
        self.archive.entries().map_err(|e| io_in(&path, e))
    }
}

fn io_in(archive: &Path, error: io::Error) -> ArchiveError {
    ArchiveError::Io { path: archive.to_path_buf(), error }
}

fn unsafe_entry(archive: &Path, entry: &str, reason: String) -> ArchiveError {
    ArchiveError::Unsafe { archive: archive.to_path_buf(), entry: entry.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path, contents) below `dir`; a path ending in `/` is an empty directory.
    fn write_tree(dir: &Path, files: &[(&str, &str)]) {
        for (path, contents) in files {
            let full = dir.join(path);
            if path.ends_with('/') {
                fs::create_dir_all(&full).expect("mkdir");
                continue;
            }
            fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            fs::write(&full, contents).expect("write");
        }
    }

    /// A workspace exported as an uncompressed tar, as executors write it.
    fn exported(tmp: &Path) -> PathBuf {
        let ws = tmp.join("ws");
        write_tree(
            &ws,
            &[
                ("dist/app.js", "app"),
                ("dist/sub/x.js", "x"),
                ("dist/sub/y.css", "y"),
                ("a.log", "a"),
                ("sub/b.log", "b"),
                ("build/x/out/bin", "bin"),
                ("build/y/other", "other"),
                ("empty/", ""),
                ("src/main.rs", "fn main() {}"),
            ],
        );
        std::os::unix::fs::symlink("dist/app.js", ws.join("app-link")).expect("symlink");
        let tar = tmp.join("ws.tar");
        kiln_exec::workspace::write_tar(&ws, &tar).expect("tar");
        tar
    }

    fn paths(files: &[FileEntry]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    fn select_paths(tar: &Path, tmp: &Path, patterns: &[&str]) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let out = tmp.join("sel.tar.gz");
        let files = select(tar, &patterns, &out).expect("select").files;
        files.into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn patterns_select_like_gitlab() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = exported(tmp.path());
        let t = tmp.path();
        let cases: &[(&[&str], &[&str])] = &[
            (&["dist"], &["dist/app.js", "dist/sub/x.js", "dist/sub/y.css"]),
            (&["dist/"], &["dist/app.js", "dist/sub/x.js", "dist/sub/y.css"]),
            (&["./dist/sub"], &["dist/sub/x.js", "dist/sub/y.css"]),
            (&["*.log"], &["a.log"]),
            (&["**/*.log"], &["a.log", "sub/b.log"]),
            (&["dist/**/*.js"], &["dist/app.js", "dist/sub/x.js"]),
            (&["build/*/out"], &["build/x/out/bin"]),
            (&["a.log", "src/main.rs"], &["a.log", "src/main.rs"]),
            (&["dist", "dist/app.js"], &["dist/app.js", "dist/sub/x.js", "dist/sub/y.css"]),
            (&["nothing/here", "*.none"], &[]),
            (&["app-link", "empty"], &[]),
        ];
        for (patterns, want) in cases {
            assert_eq!(select_paths(&tar, t, patterns), *want, "{patterns:?}");
        }
        let everything = select_paths(&tar, t, &["."]);
        assert_eq!(everything.len(), 8, "{everything:?}");
    }

    #[test]
    fn selected_archive_unpacks_with_dirs_links_and_contents() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = exported(tmp.path());
        let out = tmp.path().join("art.tar.gz");
        let patterns = ["dist", "empty", "app-link", "*.log"].map(String::from);
        let files = select(&tar, &patterns, &out).expect("select").files;
        assert_eq!(
            files,
            [
                FileEntry { path: "a.log".into(), size: 1 },
                FileEntry { path: "dist/app.js".into(), size: 3 },
                FileEntry { path: "dist/sub/x.js".into(), size: 1 },
                FileEntry { path: "dist/sub/y.css".into(), size: 1 },
            ]
        );
        let dest = tmp.path().join("restored");
        let unpacked = unpack(&out, &dest).expect("unpack").files;
        assert_eq!(unpacked, files);
        assert_eq!(fs::read_to_string(dest.join("dist/sub/x.js")).expect("read"), "x");
        assert!(dest.join("empty").is_dir());
        assert_eq!(fs::read_link(dest.join("app-link")).expect("link"), Path::new("dist/app.js"));
        assert!(!dest.join("src").exists());
    }

    #[test]
    fn no_match_is_an_empty_archive() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = exported(tmp.path());
        let out = tmp.path().join("none.tar.gz");
        let files = select(&tar, &["missing".to_string()], &out).expect("select").files;
        assert!(files.is_empty());
        assert!(unpack(&out, &tmp.path().join("d")).expect("unpack").files.is_empty());
    }

    #[test]
    fn bad_patterns_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = exported(tmp.path());
        let out = tmp.path().join("x.tar.gz");
        for bad in ["../secrets", "/etc/passwd", "dist/../../x", "", "dist/[", "a/.."] {
            let err = select(&tar, &[bad.to_string()], &out).expect_err(bad);
            assert!(matches!(&err, ArchiveError::Pattern { pattern, .. } if pattern == bad));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            let err = hash_files(tmp.path(), &[bad.to_string()]).expect_err(bad);
            assert!(matches!(&err, ArchiveError::Pattern { pattern, .. } if pattern == bad));
        }
    }

    /// An uncompressed tar of raw entries: (type, name, link name, data), headers written
    /// by hand so that names the tar crate would refuse (`..`, `/abs`) can be made.
    fn raw_tar(entries: &[(EntryType, &str, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, name, link, data) in entries {
            let mut header = Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(1_700_000_000);
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn gz(tar: &[u8], path: &Path) {
        let mut enc = GzEncoder::new(fs::File::create(path).expect("create"), Compression::fast());
        enc.write_all(tar).expect("write");
        enc.finish().expect("finish");
    }

    #[test]
    fn unpack_refuses_what_could_escape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cases: &[(EntryType, &str, &str, &str)] = &[
            (EntryType::Regular, "../evil", "", "`..`"),
            (EntryType::Regular, "a/../../evil", "", "`..`"),
            (EntryType::Regular, "/abs/evil", "", "absolute"),
            (EntryType::Link, "h", "/etc/passwd", "absolute"),
            (EntryType::Link, "h", "../x", "`..`"),
            (EntryType::Char, "dev", "", "device node"),
            (EntryType::Block, "dev", "", "device node"),
            (EntryType::Fifo, "fifo", "", "fifo"),
        ];
        for (i, (kind, name, link, why)) in cases.iter().enumerate() {
            let archive = tmp.path().join(format!("bad{i}.tar.gz"));
            gz(
                &raw_tar(&[(EntryType::Regular, "ok.txt", "", b"ok"), (*kind, name, link, b"")]),
                &archive,
            );
            let dest = tmp.path().join(format!("dest{i}"));
            match unpack(&archive, &dest) {
                Err(ArchiveError::Unsafe { entry, reason, .. }) => {
                    assert_eq!(entry, *name);
                    assert!(reason.contains(why), "{name}: {reason}");
                }
                other => panic!("{name}: expected Unsafe, got {other:?}"),
            }
        }
        assert!(!tmp.path().join("evil").exists());
        assert!(!tmp.path().join("outside").exists());
    }

    #[test]
    fn unpack_follows_no_link_out_and_overwrites_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(outside.join("keep.txt"), "keep").expect("write");
        let dest = tmp.path().join("dest");
        fs::create_dir_all(&dest).expect("mkdir");
        fs::write(dest.join("a.txt"), "old").expect("write");
        std::os::unix::fs::symlink(outside.join("keep.txt"), dest.join("b.txt")).expect("link");
        std::os::unix::fs::symlink(&outside, dest.join("out")).expect("link");
        fs::write(dest.join("was-a-file"), "file").expect("write");

        let good = tmp.path().join("good.tar.gz");
        gz(
            &raw_tar(&[
                (EntryType::Regular, "a.txt", "", b"new-a"),
                (EntryType::Regular, "b.txt", "", b"new-b"),
                (EntryType::Directory, "was-a-file/", "", b""),
                (EntryType::Symlink, "sub/up", "../a.txt", b""),
                (EntryType::Link, "hard.txt", "a.txt", b""),
                (EntryType::Link, "b.txt", "a.txt", b""),
            ]),
            &good,
        );
        let files = unpack(&good, &dest).expect("unpack").files;
        assert_eq!(
            paths(&files),
            ["a.txt", "b.txt", "hard.txt"],
            "hard links count as files: {files:?}"
        );
        assert_eq!(fs::read_to_string(dest.join("a.txt")).expect("read"), "new-a");
        assert_eq!(fs::read_to_string(dest.join("hard.txt")).expect("read"), "new-a");
        assert_eq!(fs::read_to_string(dest.join("sub/up")).expect("read"), "new-a");
        assert!(dest.join("was-a-file").is_dir());
        assert_eq!(fs::read_to_string(outside.join("keep.txt")).expect("read"), "keep");

        let through = tmp.path().join("through.tar.gz");
        gz(&raw_tar(&[(EntryType::Regular, "out/evil.txt", "", b"evil")]), &through);
        let err = unpack(&through, &dest).expect_err("writes through a link out are refused");
        assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
        assert!(!outside.join("evil.txt").exists());
    }

    #[test]
    fn links_leading_out_are_left_out_when_packed_and_said_so() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ws = tmp.path().join("ws");
        write_tree(&ws, &[("dist/app.js", "app"), ("a.log", "a")]);
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, ws.join(at)).expect("symlink");
        };
        link("/etc/passwd", "dist/abs");
        link("../../outside", "dist/up");
        link("app.js", "dist/ok");
        link("../a.log", "dist/log");
        let tar = tmp.path().join("ws.tar");
        kiln_exec::workspace::write_tar(&ws, &tar).expect("tar");
        let out = tmp.path().join("dist.tar.gz");
        let packed = select(&tar, &["dist".to_string()], &out).expect("select");
        assert_eq!(paths(&packed.files), ["dist/app.js"]);
        let mut skipped: Vec<(String, String)> =
            packed.skipped.iter().map(|s| (s.path.clone(), s.target.clone())).collect();
        skipped.sort();
        assert_eq!(
            skipped,
            [
                ("dist/abs".to_string(), "/etc/passwd".to_string()),
                ("dist/up".to_string(), "../../outside".to_string())
            ]
        );
        let said: Vec<String> = packed.skipped.iter().map(ToString::to_string).collect();
        assert!(said.iter().any(|m| m.contains("absolute")), "{said:?}");
        assert!(said.iter().any(|m| m.contains("climbs out")), "{said:?}");
        assert!(said.iter().all(|m| m.contains("left out")), "{said:?}");

        // What was packed unpacks everywhere: the consumer does not fail on the links.
        let dest = tmp.path().join("dest");
        let unpacked = unpack(&out, &dest).expect("unpack");
        assert!(unpacked.skipped.is_empty(), "{:?}", unpacked.skipped);
        assert_eq!(fs::read_link(dest.join("dist/ok")).expect("link"), Path::new("app.js"));
        assert_eq!(fs::read_link(dest.join("dist/log")).expect("link"), Path::new("../a.log"));
        assert!(fs::symlink_metadata(dest.join("dist/abs")).is_err());
        assert!(fs::symlink_metadata(dest.join("dist/up")).is_err());
    }

    #[test]
    fn unpack_skips_links_leading_out_of_archives_made_elsewhere() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let archive = tmp.path().join("other.tar.gz");
        gz(
            &raw_tar(&[
                (EntryType::Regular, "ok.txt", "", b"ok"),
                (EntryType::Symlink, "l", "../outside", b""),
                (EntryType::Symlink, "a/b/l", "../../../outside", b""),
                (EntryType::Symlink, "abs", "/etc/passwd", b""),
                (EntryType::Symlink, "a/in", "../ok.txt", b""),
            ]),
            &archive,
        );
        let dest = tmp.path().join("dest");
        let unpacked = unpack(&archive, &dest).expect("links leading out are skipped, not fatal");
        assert_eq!(paths(&unpacked.files), ["ok.txt"]);
        let skipped: Vec<&str> = unpacked.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["l", "a/b/l", "abs"]);
        assert_eq!(fs::read_to_string(dest.join("a/in")).expect("inside link"), "ok");
        for gone in ["l", "a/b/l", "abs"] {
            assert!(fs::symlink_metadata(dest.join(gone)).is_err(), "{gone} was created");
        }
    }

    #[test]
    fn archive_bombs_stop_at_the_limits_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mib = vec![0u8; 1 << 20];
        let archive = tmp.path().join("bomb.tar.gz");
        gz(
            &raw_tar(&[
                (EntryType::Regular, "1.bin", "", &mib),
                (EntryType::Regular, "2.bin", "", &mib),
                (EntryType::Regular, "3.bin", "", &mib),
            ]),
            &archive,
        );
        let compressed = fs::metadata(&archive).expect("size").len();
        assert!(compressed < 16 << 10, "zeros compress: {compressed} bytes");
        let dest = tmp.path().join("dest");
        let limits = Limits { bytes: 2 << 20, entries: 100 };
        let err = unpack_limited(&archive, &dest, limits).expect_err("3 MiB past a 2 MiB limit");
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("3.0 MiB of files") && text.contains("2.0 MiB"), "{text}");
        assert!(!dest.join("3.bin").exists(), "the entry past the limit was written");

        let many: Vec<(EntryType, String)> =
            (0..10).map(|i| (EntryType::Regular, format!("f{i}"))).collect();
        let entries: Vec<(EntryType, &str, &str, &[u8])> =
            many.iter().map(|(k, n)| (*k, n.as_str(), "", &b"x"[..])).collect();
        let archive = tmp.path().join("many.tar.gz");
        gz(&raw_tar(&entries), &archive);
        let dest = tmp.path().join("many");
        let limits = Limits { bytes: 1 << 20, entries: 5 };
        let err = unpack_limited(&archive, &dest, limits).expect_err("10 entries past 5");
        assert!(err.to_string().contains("more than 5 entries"), "{err}");
        assert!(!dest.join("f5").exists(), "the entry past the limit was written");
        assert!(unpack(&archive, &tmp.path().join("fine")).is_ok(), "the defaults allow it");
    }

    #[test]
    fn a_huge_long_name_is_refused_before_it_is_held_in_memory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = vec![b'a'; 4 << 20];
        let archive = tmp.path().join("longname.tar.gz");
        gz(
            &raw_tar(&[
                (EntryType::Regular, "ok.txt", "", b"ok"),
                (EntryType::GNULongName, "././@LongLink", "", &name),
                (EntryType::Regular, "x", "", b"x"),
            ]),
            &archive,
        );
        let err = unpack(&archive, &tmp.path().join("d")).expect_err("a 4 MiB name");
        assert!(err.to_string().contains("long name or pax header of 4.0 MiB"), "{err}");
        // Names of ordinary length, long ones included, still unpack.
        let long = format!("{}/file.txt", "d".repeat(150));
        let archive = tmp.path().join("fine.tar.gz");
        let mut builder = tar::Builder::new(GzEncoder::new(
            fs::File::create(&archive).expect("create"),
            Compression::fast(),
        ));
        let mut header = Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder.append_data(&mut header, &long, &b"ok"[..]).expect("append");
        builder.into_inner().expect("tar").finish().expect("gz");
        let unpacked = unpack(&archive, &tmp.path().join("fine")).expect("a 160-byte name");
        assert_eq!(paths(&unpacked.files), [long.as_str()]);
    }

    #[test]
    fn packing_refuses_what_unpacking_would() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = exported(tmp.path());
        let out = tmp.path().join("big.tar.gz");
        let limits = Limits { bytes: 4, entries: 100 };
        let err = select_limited(&tar, &["dist".to_string()], &out, limits)
            .expect_err("5 bytes of files past a 4-byte limit");
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        let limits = Limits { bytes: 1 << 20, entries: 2 };
        let err = select_limited(&tar, &["dist".to_string()], &out, limits)
            .expect_err("dist holds more than 2 entries");
        assert!(err.to_string().contains("more than 2 entries"), "{err}");
        assert_eq!(Limits::default(), Limits { bytes: MAX_UNPACKED_BYTES, entries: MAX_ENTRIES });
    }

    #[test]
    fn hard_links_to_files_not_taken_become_copies() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = tmp.path().join("links.tar");
        fs::write(
            &tar,
            raw_tar(&[
                (EntryType::Directory, "src/", "", b""),
                (EntryType::Regular, "src/big.bin", "", b"payload"),
                (EntryType::Link, "dist/a.bin", "src/big.bin", b""),
                (EntryType::Link, "dist/b.bin", "src/big.bin", b""),
                (EntryType::Link, "dist/c.bin", "dist/a.bin", b""),
            ]),
        )
        .expect("write");
        let out = tmp.path().join("dist.tar.gz");
        let files = select(&tar, &["dist".to_string()], &out).expect("select").files;
        assert_eq!(paths(&files), ["dist/a.bin", "dist/b.bin", "dist/c.bin"]);
        assert!(files.iter().all(|f| f.size == 7), "{files:?}");
        let dest = tmp.path().join("d");
        unpack(&out, &dest).expect("unpack");
        for name in ["a", "b", "c"] {
            let text = fs::read_to_string(dest.join(format!("dist/{name}.bin"))).expect("read");
            assert_eq!(text, "payload", "{name}");
        }
        assert!(!dest.join("src").exists());
    }

    #[test]
    fn hash_files_is_stable_and_names_missing_patterns() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        write_tree(
            dir,
            &[("Cargo.lock", "lock v1"), ("web/package-lock.json", "{}"), ("web/yarn.lock", "y")],
        );
        let hash = |files: &[&str]| {
            hash_files(dir, &files.iter().map(|f| f.to_string()).collect::<Vec<_>>())
        };
        let a = hash(&["Cargo.lock", "web/package-lock.json"]).expect("hash");
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(hash(&["web/package-lock.json", "./Cargo.lock"]).expect("hash"), a);
        assert_eq!(hash(&["Cargo.lock", "web/*-lock.json", "Cargo.lock"]).expect("hash"), a);
        assert_ne!(hash(&["Cargo.lock"]).expect("hash"), a);
        assert_eq!(hash(&["web"]).expect("hash"), hash(&["web/*"]).expect("hash"));
        assert_eq!(
            hash(&["**/*.lock"]).expect("hash"),
            hash(&["Cargo.lock", "web/yarn.lock"]).expect("hash")
        );

        fs::write(dir.join("Cargo.lock"), "lock v2").expect("write");
        assert_ne!(hash(&["Cargo.lock", "web/package-lock.json"]).expect("hash"), a);

        for missing in ["nope.lock", "*.nothing"] {
            match hash(&["Cargo.lock", missing]) {
                Err(e @ ArchiveError::NoMatch { .. }) => {
                    assert!(e.to_string().contains(&format!("{missing:?}")), "{e}");
                }
                other => panic!("{missing}: expected NoMatch, got {other:?}"),
            }
        }
    }
}
