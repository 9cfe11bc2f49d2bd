//! The line-offset index kept beside each log file (`<key>.idx` next to `<key>.log`), so a
//! read from any line seeks instead of scanning the file.
//!
//! One line per entry, every `index_every` records, plus a view's source declarations:
//!
//! ```text
//! 1025\t98304\t1764995401123456789\t0:700,1:326   record 1025 starts at byte 98304; the line
//!                                                 before it was at that time (ns, `-` if none);
//!                                                 the next line of source 0 is 700, of 1, 326
//! s1\ttest\truns/4f…/1/1                          source 1 of the view (as in the log file)
//! ```
//!
//! Invariants: the index is only a cache of what the log file says. It is appended to as
//! records are (no `fsync`), checked against the log when a log is first used in a process
//! (entries past the end or not on a frame boundary, or naming unknown sources, discard it),
//! completed from its last entry by reading the rest of the log, and rewritten whole (a new
//! file renamed over the old one) whenever it was missing, wrong or behind. Losing it costs one
//! scan of the log, never a line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::LogKey;
use crate::format::{self, Frame};

/// Where one record's frame starts and what a reader must know to start there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The record's seq.
    pub(crate) seq: u64,
    /// Byte offset of its frame.
    pub(crate) offset: u64,
    /// Time of the previous line of the file (format-2 times are relative to it).
    pub(crate) prev: Option<DateTime<Utc>>,
    /// For a view: the next line of each source (by source number) a bare reference means.
    pub(crate) next: Vec<u64>,
}

/// A view's source: the log its references point into and the label its lines are shown with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) key: LogKey,
    pub(crate) label: String,
}

/// The index file of the log file `log`.
pub(crate) fn path_of(log: &Path) -> PathBuf {
    log.with_extension("idx")
}

/// Encodes an entry line, with its `\n`.
pub(crate) fn encode_entry(e: &Entry) -> Vec<u8> {
    let prev =
        e.prev.and_then(|t| t.timestamp_nanos_opt()).map_or("-".to_string(), |n| n.to_string());
    let next: Vec<String> = e.next.iter().enumerate().map(|(n, at)| format!("{n}:{at}")).collect();
    format!("{}\t{}\t{prev}\t{}\n", e.seq, e.offset, next.join(",")).into_bytes()
}

fn decode_entry(line: &str) -> Option<Entry> {
    let mut parts = line.split('\t');
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let prev = match parts.next()? {
        "-" => None,
        nanos => Some(DateTime::from_timestamp_nanos(nanos.parse().ok()?)),
    };
    let mut next = Vec::new();
    for (i, pair) in parts.next()?.split(',').filter(|p| !p.is_empty()).enumerate() {
        let (n, at) = pair.split_once(':')?;
        if n.parse::<usize>().ok()? != i {
            return None;
        }
        next.push(at.parse().ok()?);
    }
    Some(Entry { seq, offset, prev, next })
}

/// Reads the index file: its entries (strictly increasing) and sources. Missing or unreadable
/// means empty; reading stops at the first line that is torn or not understood.
pub(crate) fn read(path: &Path) -> (Vec<Entry>, Vec<Source>) {
    match fs::read(path) {
        Ok(bytes) => parse(&bytes),
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// [`read`] on the bytes of an index (an archived one's trailer ends the reading).
pub(crate) fn parse(bytes: &[u8]) -> (Vec<Entry>, Vec<Source>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut sources = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.first() == Some(&b's') {
            match format::decode(line) {
                Some(Frame::Source { n, label, key }) if n == sources.len() => {
                    sources.push(Source { key, label })
                }
                // Declared twice (an append raced a rewrite): the first one stands.
                Some(Frame::Source { n, .. }) if n < sources.len() => {}
                _ => break,
            }
            continue;
        }
        let Some(entry) = std::str::from_utf8(line).ok().and_then(decode_entry) else { break };
        match entries.last() {
            Some(last) if entry.seq <= last.seq => {}
            Some(last) if entry.offset <= last.offset => break,
            _ => entries.push(entry),
        }
    }
    (entries, sources)
}

/// True when `entries` and `sources` fit the log file `file` of `len` bytes: every entry
/// before its end, the last one on a frame boundary, every source it names declared.
pub(crate) fn fits(file: &mut File, len: u64, entries: &[Entry], sources: &[Source]) -> bool {
    let Some(last) = entries.last() else { return true };
    if last.offset >= len || entries.iter().any(|e| e.next.len() > sources.len() || e.seq < 2) {
        return false;
    }
    let mut before = [0u8; 1];
    file.seek(SeekFrom::Start(last.offset - 1)).is_ok()
        && file.read_exact(&mut before).is_ok()
        && before[0] == b'\n'
}

/// Appends `bytes` (whole lines) to the index file; an error only makes it lag behind.
pub(crate) fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    OpenOptions::new().create(true).append(true).open(path)?.write_all(bytes)
}

/// Writes the whole index anew (a temporary file renamed over the old one).
pub(crate) fn rewrite(path: &Path, entries: &[Entry], sources: &[Source]) -> io::Result<()> {
    let mut out = Vec::new();
    for (n, s) in sources.iter().enumerate() {
        out.extend(format::encode_source(n, &s.label, &s.key));
    }
    for e in entries {
        out.extend(encode_entry(e));
    }
    let tmp = path.with_extension(format!("idx-{}", std::process::id()));
    fs::write(&tmp, &out)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_lines_stop_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.idx");
        let e1 = Entry {
            seq: 1025,
            offset: 4096,
            prev: Some(DateTime::from_timestamp_nanos(1_764_995_401_123_456_789)),
            next: vec![700, 326],
        };
        let e2 = Entry { seq: 2049, offset: 9000, prev: None, next: vec![] };
        let source = Source { key: LogKey::new("runs/r/0/1").unwrap(), label: "build".into() };
        rewrite(&path, std::slice::from_ref(&e1), std::slice::from_ref(&source)).unwrap();
        append(&path, &encode_entry(&e2)).unwrap();
        append(&path, &encode_entry(&e1)).unwrap();
        append(&path, b"3073\t9100\t-").unwrap();
        let (entries, sources) = read(&path);
        assert_eq!(entries, [e1, e2]);
        assert_eq!(sources, [source]);
    }
}
