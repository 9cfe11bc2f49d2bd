//! Job log lines and their storage for Kiln: the line type ([`LogLine`], shared with the
//! executors), secret masking ([`Masker`]), one append-only file per log with a line-offset
//! index beside it ([`LogStore`], keyed by [`LogKey`]), views that show the lines of several
//! logs in the order they came without copying them ([`LogStore::append_viewed`]), and
//! gap-free live following ([`LogStore::follow`]), finished logs moved to an archive and read
//! from it by ranges ([`LogStore::with_archive`], [`LogArchive`]: S3 on a server), what a
//! line marks ([`marks`]: echoed script lines, exit statuses, sections), and what to show of
//! a failed job's log ([`excerpt`]: the failing entry and the lines before it).
//!
//! Invariants: records of one log have sequence numbers 1, 2, 3, … with no gap; a record is
//! visible to readers and followers only once it is completely written; a follower sees every
//! record from where it started exactly once, in order, and ends when the log is closed; each
//! line is stored once (a view stores a reference of a few bytes to it); a page of a log is
//! read in a time that does not grow with the log.

mod archive;
pub mod excerpt;
mod follow;
mod format;
mod index;
mod key;
mod line;
pub mod marks;
mod mask;
mod store;

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use archive::LogArchive;
pub use follow::Follow;
pub use key::{LogKey, MAX_KEY_LEN, MAX_SEGMENT_LEN, MAX_SEGMENTS};
pub use line::{LogLine, Stream};
pub use mask::{MASK, MIN_SECRET_CHARS, Masker};
pub use store::{LogInfo, LogStore, LogStoreConfig};

/// One stored line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in its log: 1 for the first line, then strictly increasing by one. Use it as
    /// the SSE event `id`; `Last-Event-ID: n` resumes with `from_seq = n + 1`.
    pub seq: u64,
    /// When the line was produced (taken from the [`LogLine`]).
    pub time: DateTime<Utc>,
    /// Which stream it came from.
    pub stream: Stream,
    /// The text, as stored (masked if it went through [`LogStore::append_masked`]).
    pub text: String,
}

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The text is not a valid [`LogKey`].
    #[error("invalid log key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected text.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// An append to a log that was already closed.
    #[error("log {0} is closed")]
    Closed(LogKey),
    /// The archive of finished logs could not be read or written.
    #[error("archived log {key} in {place}: {source}")]
    Archive {
        /// The log.
        key: LogKey,
        /// The archive ([`LogArchive::describe`]).
        place: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file operation failed.
    #[error("log store I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl LogError {
    /// True when the disk (or the user's quota) is full.
    pub fn is_full(&self) -> bool {
        matches!(self, LogError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { path, source }
    }
}
