//! `LogKey`: the name of one log, validated so that its file can never leave the store's
//! directory.
//!
//! Invariant: a `LogKey` is 1 to 16 `/`-separated segments, each 1 to 128 of `[A-Za-z0-9_-]`,
//! at most 512 bytes in all. No `.` at all, so no `.`/`..` segments, hidden files, or clashes
//! with the `.log` extension the store adds; no leading `/`, so never absolute.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::LogError;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Most segments in a key.
pub const MAX_SEGMENTS: usize = 16;
/// Longest segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;

/// The name of one log, e.g. `run/42/build/1` (run, job, attempt).
///
/// Build it with [`LogKey::new`] (or `parse`) from text that may come from a user, or with
/// [`LogKey::from_segments`]. Names that may contain other characters (job names with dots or
/// spaces) must be mapped to ids first: the key is a file path, not a display name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogKey(String);

impl LogKey {
    /// Validates `raw` as a key; see the module invariant for the rule.
    pub fn new(raw: impl Into<String>) -> Result<LogKey, LogError> {
        let raw = raw.into();
        match check(&raw) {
            Ok(()) => Ok(LogKey(raw)),
            Err(reason) => Err(LogError::InvalidKey { key: raw, reason }),
        }
    }

    /// Joins `segments` with `/` and validates the result.
    pub fn from_segments<I, S>(segments: I) -> Result<LogKey, LogError>
    where
        I: IntoIterator<Item = S>,
        S: fmt::Display,
    {
        let joined = segments.into_iter().map(|s| s.to_string()).collect::<Vec<_>>().join("/");
        LogKey::new(joined)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The log file of this key under `root`: `root/<segments>.log`.
    pub(crate) fn file_in(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        for segment in self.0.split('/') {
            path.push(segment);
        }
        path.set_extension("log");
        path
    }
}

fn check(raw: &str) -> Result<(), &'static str> {
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.len() > MAX_KEY_LEN {
        return Err("longer than 512 bytes");
    }
    let mut count = 0;
    for segment in raw.split('/') {
        count += 1;
        if segment.is_empty() {
            return Err("empty segment (leading, trailing or double `/`)");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err("segment longer than 128 bytes");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("segments may only contain ASCII letters, digits, `_` and `-`");
        }
    }
    if count > MAX_SEGMENTS {
        return Err("more than 16 segments");
    }
    Ok(())
}

impl fmt::Display for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LogKey {
    type Err = LogError;

    fn from_str(s: &str) -> Result<LogKey, LogError> {
        LogKey::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for ok in ["run/42/build/1", "a", "step_1-x", "run/01J9ZQ/job-7/3"] {
            assert!(LogKey::new(ok).is_ok(), "{ok}");
        }
        let key = LogKey::from_segments(["run", "42", "build", "1"]).unwrap();
        assert_eq!(key.as_str(), "run/42/build/1");
        assert_eq!(key.file_in(Path::new("/srv/logs")), Path::new("/srv/logs/run/42/build/1.log"));
    }

    #[test]
    fn rejects_escapes_and_oddities() {
        let long = "a".repeat(129);
        let many = vec!["a"; 17].join("/");
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/./b",
            ".hidden",
            "a/",
            "a//b",
            "a\\b",
            "C:x",
            "a b",
            "é",
            "a.log",
            "a\0b",
            &long,
            &many,
        ] {
            assert!(matches!(LogKey::new(bad), Err(LogError::InvalidKey { .. })), "{bad:?}");
        }
    }
}
