//! Finished logs moved to an archive ([`LogArchive`]: an S3 bucket, another directory) and read
//! from it by ranges.
//!
//! A closed log `k` (one the store's `which` picks, e.g. a job attempt's) is archived as two
//! objects: `k.idx`, its complete index (sources, an entry every `index_every` records, then a
//! trailer `t<TAB>last seq<TAB>length`), written first, and `k.log`, the log file as is. Then
//! an empty marker `k.archived` is left locally and the local `k.log` is removed, then `k.idx`.
//! A reader that finds the marker and no local file reads the archived index once (kept in a bounded cache: an archived log never changes) and then only
//! the byte range of the records it wants, bounded by the index entries around them: a page
//! costs one ranged read whatever the log's length.
//!
//! Crash safety: until the local file is removed, readers read it; a process killed between an
//! upload and the removal leaves a closed local log, which the sweep at start
//! ([`crate::LogStore::with_archive`]) uploads again (the same bytes) and removes. Live logs
//! are never archived. The marker makes a moved log closed without asking the archive: an
//! append to it fails, a close writes nothing, and a log with neither file nor marker is a new
//! one (no request to the archive for it).

use std::fmt::Debug;
use std::io;
use std::path::Path;

use crate::index::{self, Entry, Source};

/// Where finished logs go. Blocking: called from the store's archiving thread and from
/// readers, which run off an async runtime's workers (`spawn_blocking`).
pub trait LogArchive: Send + Sync + Debug {
    /// Stores the bytes of `file` as `name`, whole or not at all; `file` stays where it is.
    fn put_file(&self, name: &str, file: &Path) -> io::Result<()>;
    /// Stores `bytes` as `name`, whole or not at all.
    fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> io::Result<()>;
    /// The bytes `start..end` of `name` (all of it when `range` is `None`); `None` when it is
    /// not stored. The caller keeps ranges within the object.
    fn get(&self, name: &str, range: Option<(u64, u64)>) -> io::Result<Option<Vec<u8>>>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// What is known of an archived log: its index, sources, last seq and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archived {
    pub(crate) entries: Vec<Entry>,
    pub(crate) sources: Vec<Source>,
    pub(crate) last_seq: u64,
    pub(crate) len: u64,
}

/// The archived index of a log: its index lines, then the trailer.
pub(crate) fn encode(a: &Archived) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, s) in a.sources.iter().enumerate() {
        out.extend(crate::format::encode_source(n, &s.label, &s.key));
    }
    for e in &a.entries {
        out.extend(index::encode_entry(e));
    }
    out.extend(format!("t\t{}\t{}\n", a.last_seq, a.len).into_bytes());
    out
}

/// Reads an archived index; `None` without its trailer (not an archived index, or torn).
pub(crate) fn decode(bytes: &[u8]) -> Option<Archived> {
    let (entries, sources) = index::parse(bytes);
    let body = bytes.strip_suffix(b"\n")?;
    let last = body.rsplit(|&b| b == b'\n').next()?;
    let mut parts = std::str::from_utf8(last).ok()?.split('\t');
    if parts.next()? != "t" {
        return None;
    }
    let last_seq = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    Some(Archived { entries, sources, last_seq, len })
}

/// The marker left beside a moved log's file (`<key>.archived`, empty): the log is in the
/// archive, closed.
pub(crate) fn marker(log: &Path) -> std::path::PathBuf {
    log.with_extension("archived")
}

/// The object names of `key`'s log and index.
pub(crate) fn names(key: &crate::LogKey) -> (String, String) {
    (format!("{key}.log"), format!("{key}.idx"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogKey;

    #[test]
    fn an_archived_index_round_trips_and_needs_its_trailer() {
        let a = Archived {
            entries: vec![Entry { seq: 1025, offset: 9000, prev: None, next: vec![3] }],
            sources: vec![Source { key: LogKey::new("runs/r/0/1").unwrap(), label: "b".into() }],
            last_seq: 1500,
            len: 13_000,
        };
        let bytes = encode(&a);
        assert_eq!(decode(&bytes), Some(a));
        assert_eq!(decode(&bytes[..bytes.len() - 3]), None, "torn");
        assert_eq!(decode(b"1025\t9000\t-\t\n"), None, "a local index has no trailer");
        let empty = Archived { entries: vec![], sources: vec![], last_seq: 0, len: 2 };
        assert_eq!(decode(&encode(&empty)), Some(empty));
    }
}
