//! `LogStore`: one append-only JSON-lines file per [`LogKey`] under a root directory (format in
//! `format.rs`), with a per-log broadcast channel for live followers.
//!
//! Invariants: one process writes a store's directory at a time; every append, close and
//! follower subscription of a log happens under that log's mutex, so the order of records in
//! the file, in the channel and of subscriptions is one order. Readers only read up to the
//! committed length, never a half-written frame.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use tokio::sync::broadcast;

use crate::follow::Follow;
use crate::format::{self, Frame};
use crate::{LogError, LogKey, LogLine, Masker, Record};

/// Tuning of a [`LogStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStoreConfig {
    /// Records buffered per log for live followers. A follower that falls further behind is
    /// not lost: it re-reads the file from where it was, so this only trades memory for disk
    /// reads.
    pub channel_capacity: usize,
    /// One in-memory index entry (seq, byte offset) every this many records, so a read from
    /// the middle of a long log skips straight to the right place.
    pub index_every: u64,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig { channel_capacity: 1024, index_every: 256 }
    }
}

/// What is known about one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogInfo {
    /// Seq of the last record, 0 when there is none.
    pub last_seq: u64,
    /// Whether [`LogStore::close`] was called (in this process or an earlier one).
    pub closed: bool,
    /// Committed size of the file in bytes.
    pub bytes: u64,
}

/// Log files under one directory, with live following.
///
/// Cheap to clone (shared state). Methods other than [`LogStore::follow`]'s stream do small,
/// blocking file I/O (an append is one `write` to the page cache, no `fsync`), which is fine to
/// call from async code on a local disk; use `spawn_blocking` for large reads if the disk is
/// slow. All methods may be called concurrently from any thread, for the same or different
/// keys. The first use of a key in a process scans its file once (to find the last seq and
/// build the index); the store then keeps a small state (open file, live channel) per key
/// until the log is closed.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    config: LogStoreConfig,
    logs: Mutex<HashMap<LogKey, Arc<KeyLog>>>,
    reserve: Mutex<Reserve>,
    /// `reserve.missing`, read without the lock on every append.
    reserve_missing: std::sync::atomic::AtomicBool,
}

/// The size of the reserve file: room for the markers and end records of the logs that are
/// stopped while the disk is full.
const RESERVE_BYTES: usize = 64 * 1024;

/// How often a missing reserve file is made again (on a successful append).
const RESERVE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The reserve file `<root>/.reserve`: space set aside while the disk has room, given back
/// when it is full so that a log can still say why it stopped and be closed.
#[derive(Debug, Default)]
struct Reserve {
    /// It was given back (or never made) and not made again yet.
    missing: bool,
    /// When making it again was last tried.
    tried: Option<std::time::Instant>,
}

/// One log: its file, its writer state and its channel.
#[derive(Debug)]
pub(crate) struct KeyLog {
    path: PathBuf,
    index_every: u64,
    state: Mutex<Writer>,
    tx: broadcast::Sender<Event>,
}

/// What followers receive live.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Line(Record),
    Closed,
}

/// A follower's starting point, taken under the log's mutex.
pub(crate) struct Snapshot {
    pub(crate) rx: broadcast::Receiver<Event>,
    pub(crate) last_seq: u64,
    pub(crate) closed: bool,
}

#[derive(Debug, Default)]
struct Writer {
    /// False until the file has been scanned (first use of the key in this process).
    loaded: bool,
    /// Opened on first append.
    file: Option<File>,
    last_seq: u64,
    /// Committed length: everything before it is whole frames.
    len: u64,
    closed: bool,
    /// `(seq, offset of its frame)`, sorted, one every `index_every` records.
    index: Vec<(u64, u64)>,
}

impl LogStore {
    /// A store over `root` with the default configuration. Creates the directory if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<LogStore, LogError> {
        LogStore::with_config(root, LogStoreConfig::default())
    }

    /// A store over `root` with `config`. Creates the directory if needed.
    pub fn with_config(
        root: impl Into<PathBuf>,
        config: LogStoreConfig,
    ) -> Result<LogStore, LogError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(LogError::io(&root))?;
        let config = LogStoreConfig {
            channel_capacity: config.channel_capacity.max(1),
            index_every: config.index_every.max(1),
        };
        let store = LogStore {
            inner: Arc::new(Inner {
                root,
                config,
                logs: Mutex::new(HashMap::new()),
                reserve: Mutex::new(Reserve { missing: true, tried: None }),
                reserve_missing: std::sync::atomic::AtomicBool::new(true),
            }),
        };
        store.refill_reserve();
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file holding `key`'s log (it may not exist yet).
    pub fn path(&self, key: &LogKey) -> PathBuf {
        key.file_in(&self.inner.root)
    }

    /// Appends `line` as is and returns its seq (1 for the first line of a log).
    ///
    /// `Err(LogError::Closed)` after [`LogStore::close`]; on an I/O error nothing is appended
    /// and the seq is not used.
    pub fn append(&self, key: &LogKey, line: &LogLine) -> Result<u64, LogError> {
        self.append_text(key, line, &line.text)
    }

    /// Appends `line` with its text masked by `masker`, so a secret never reaches the file or
    /// a follower; returns its seq.
    pub fn append_masked(
        &self,
        key: &LogKey,
        line: &LogLine,
        masker: &Masker,
    ) -> Result<u64, LogError> {
        self.append_text(key, line, &masker.mask(&line.text))
    }

    /// Appends `line` as is even when the disk is full: if it does not fit, the store's
    /// reserve file is given back first and the append tried again. For the few lines that
    /// say why a log stops (a job failed because its output could not be stored).
    pub fn append_marker(&self, key: &LogKey, line: &LogLine) -> Result<u64, LogError> {
        match self.append_text(key, line, &line.text) {
            Err(e) if e.is_full() && self.release_reserve() => {
                self.append_text(key, line, &line.text)
            }
            other => other,
        }
    }

    /// Gives back the reserve file's space; true if there was one.
    fn release_reserve(&self) -> bool {
        let mut reserve = self.inner.reserve.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.inner.root.join(".reserve");
        let had = !reserve.missing && fs::remove_file(&path).is_ok();
        reserve.missing = true;
        self.inner.reserve_missing.store(true, std::sync::atomic::Ordering::Relaxed);
        reserve.tried = Some(std::time::Instant::now());
        had
    }

    /// Makes the reserve file again if it is missing (at most every [`RESERVE_RETRY`]); a
    /// disk still too full for it is left alone.
    fn refill_reserve(&self) {
        if !self.inner.reserve_missing.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut reserve = self.inner.reserve.lock().unwrap_or_else(|p| p.into_inner());
        if !reserve.missing || reserve.tried.is_some_and(|t| t.elapsed() < RESERVE_RETRY) {
            return;
        }
        reserve.tried = Some(std::time::Instant::now());
        let path = self.inner.root.join(".reserve");
        let made = File::create(&path).and_then(|mut f| f.write_all(&[0u8; RESERVE_BYTES]));
        match made {
            Ok(()) => {
                reserve.missing = false;
                self.inner.reserve_missing.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
            }
        }
    }

    fn append_text(&self, key: &LogKey, line: &LogLine, text: &str) -> Result<u64, LogError> {
        let seq = self.append_once(key, line, text)?;
        self.refill_reserve();
        Ok(seq)
    }

    fn append_once(&self, key: &LogKey, line: &LogLine, text: &str) -> Result<u64, LogError> {
        let log = self.log(key);
        let mut writer = log.lock()?;
        if writer.closed {
            drop(writer);
            self.evict(key, &log);
            return Err(LogError::Closed(key.clone()));
        }
        let seq = writer.last_seq + 1;
        let bytes = format::encode_line(seq, line.time, line.stream, text);
        let offset = writer.write(&log.path, &bytes)?;
        writer.last_seq = seq;
        if (seq - 1) % log.index_every == 0 {
            writer.index.push((seq, offset));
        }
        // Checked under the lock, where followers subscribe: none can be missed.
        if log.tx.receiver_count() > 0 {
            let _ = log.tx.send(Event::Line(Record {
                seq,
                time: line.time,
                stream: line.stream,
                text: text.to_owned(),
            }));
        }
        Ok(seq)
    }

    /// Marks `key`'s log complete: later appends fail and followers end once they have
    /// everything. Idempotent; closing a log that has no line creates an empty, closed log.
    ///
    /// A closed log's state (its open file, its channel) is dropped from the store: a closed
    /// log never changes, and readers rebuild what they need from the file. On a full disk
    /// the reserve file is given back for it (see [`LogStore::append_marker`]).
    pub fn close(&self, key: &LogKey) -> Result<(), LogError> {
        match self.close_once(key) {
            Err(e) if e.is_full() && self.release_reserve() => self.close_once(key),
            other => other,
        }
    }

    fn close_once(&self, key: &LogKey) -> Result<(), LogError> {
        let log = self.log(key);
        {
            let mut writer = log.lock()?;
            if !writer.closed {
                writer.write(&log.path, &format::encode_closed(Utc::now()))?;
                writer.closed = true;
                writer.file = None;
                let _ = log.tx.send(Event::Closed);
            }
        }
        self.evict(key, &log);
        Ok(())
    }

    /// Forgets `key`'s state if it is still `log` (followers keep their own reference).
    fn evict(&self, key: &LogKey, log: &Arc<KeyLog>) {
        let mut logs = self.inner.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if logs.get(key).is_some_and(|cached| Arc::ptr_eq(cached, log)) {
            logs.remove(key);
        }
    }

    /// How many logs the store keeps state for (open logs, and logs being followed).
    pub fn cached(&self) -> usize {
        self.inner.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// The cached state of `key`, or a throwaway one for reading (not cached, tiny channel):
    /// reading a closed log must not bring its state back for good.
    fn log_for_read(&self, key: &LogKey) -> Arc<KeyLog> {
        let logs = self.inner.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(log) = logs.get(key) {
            return log.clone();
        }
        drop(logs);
        Arc::new(self.new_log(key, 1))
    }

    fn new_log(&self, key: &LogKey, capacity: usize) -> KeyLog {
        let (tx, _) = broadcast::channel(capacity);
        KeyLog {
            path: key.file_in(&self.inner.root),
            index_every: self.inner.config.index_every,
            state: Mutex::new(Writer::default()),
            tx,
        }
    }

    /// Up to `limit` records with `seq >= from_seq`, in order (`from_seq` 0 and 1 both mean
    /// from the start). Empty for a log that does not exist.
    pub fn read(&self, key: &LogKey, from_seq: u64, limit: usize) -> Result<Vec<Record>, LogError> {
        self.log_for_read(key).read(from_seq, limit)
    }

    /// Last seq, closed flag and size of `key`'s log (all zero/false when it does not exist).
    pub fn info(&self, key: &LogKey) -> Result<LogInfo, LogError> {
        let log = self.log_for_read(key);
        let writer = log.lock()?;
        Ok(LogInfo { last_seq: writer.last_seq, closed: writer.closed, bytes: writer.len })
    }

    /// Follows `key`'s log: the records stored with `seq >= from_seq`, then each record as it
    /// is appended, every one exactly once and in order, ending after the log is closed.
    ///
    /// Everything appended after this call returns is seen (the follower is subscribed before
    /// it returns). On a log that does not exist yet, it waits for the first line. A follower
    /// that falls behind the live channel re-reads the file, so it is never lossy. The stream
    /// yields `Err` once, then ends, if reading the file fails. It must be polled inside a
    /// tokio runtime (file reads go through `spawn_blocking`).
    pub fn follow(&self, key: &LogKey, from_seq: u64) -> Result<Follow, LogError> {
        let log = self.log(key);
        let snapshot = log.snapshot()?;
        if snapshot.closed {
            // Nothing will be appended: the follower replays the file and ends.
            self.evict(key, &log);
        }
        Ok(Follow::new(log, from_seq, snapshot))
    }

    fn log(&self, key: &LogKey) -> Arc<KeyLog> {
        let mut logs = self.inner.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        logs.entry(key.clone())
            .or_insert_with(|| Arc::new(self.new_log(key, self.inner.config.channel_capacity)))
            .clone()
    }
}

impl KeyLog {
    /// Locks the writer state, scanning the file first if this is the first use.
    fn lock(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !guard.loaded {
            *guard = Writer::scan(&self.path, self.index_every)?;
        }
        Ok(guard)
    }

    /// The file of this log.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Subscribes to the live channel and notes what is already stored, atomically.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, LogError> {
        let writer = self.lock()?;
        Ok(Snapshot { rx: self.tx.subscribe(), last_seq: writer.last_seq, closed: writer.closed })
    }

    /// Up to `limit` records with `seq >= from_seq` among those committed now.
    pub(crate) fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, LogError> {
        let (offset, end) = {
            let writer = self.lock()?;
            if limit == 0 || from_seq > writer.last_seq {
                return Ok(Vec::new());
            }
            let at = writer.index.partition_point(|&(seq, _)| seq <= from_seq);
            let offset = at
                .checked_sub(1)
                .and_then(|i| writer.index.get(i))
                .map_or(0, |&(_, offset)| offset);
            (offset, writer.len)
        };
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LogError::io(&self.path)(e)),
        };
        file.seek(SeekFrom::Start(offset)).map_err(LogError::io(&self.path))?;
        let mut reader = BufReader::new(file.take(end.saturating_sub(offset)));
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(LogError::io(&self.path))?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            match format::decode(&buf[..buf.len() - 1]) {
                Some(Frame::Line(record)) if record.seq >= from_seq => {
                    out.push(record);
                    if out.len() >= limit {
                        break;
                    }
                }
                Some(Frame::Closed) => break,
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Writer {
    /// Reads the file once: last seq, committed length (a torn last frame excluded), closed
    /// flag and the sparse index. A missing file is an empty log.
    fn scan(path: &Path, index_every: u64) -> Result<Writer, LogError> {
        let mut writer = Writer { loaded: true, ..Writer::default() };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(writer),
            Err(e) => return Err(LogError::io(path)(e)),
        };
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(LogError::io(path))?;
            if n == 0 || buf.last() != Some(&b'\n') {
                // End of file, or a torn frame: the committed length stops before it.
                break;
            }
            let offset = writer.len;
            writer.len += n as u64;
            match format::decode(&buf[..n - 1]) {
                Some(Frame::Line(record))
                    if !writer.closed && record.seq == writer.last_seq + 1 =>
                {
                    writer.last_seq = record.seq;
                    if (record.seq - 1) % index_every == 0 {
                        writer.index.push((record.seq, offset));
                    }
                }
                Some(Frame::Closed) => writer.closed = true,
                // A whole but unreadable or out-of-order frame: skipped, as readers skip it.
                _ => {}
            }
        }
        Ok(writer)
    }

    /// Appends whole frames; returns the offset they start at. On failure the file is cut
    /// back to the committed length so no partial frame stays in the middle of the log.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<u64, LogError> {
        if self.file.is_none() {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(LogError::io(dir))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(LogError::io(path))?;
            // Cut off a torn frame left by a crash, so new frames start on a line of their own.
            let actual = file.metadata().map_err(LogError::io(path))?.len();
            if actual != self.len {
                file.set_len(self.len).map_err(LogError::io(path))?;
            }
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(LogError::io(path)(io::Error::other("log file not open")));
        };
        let offset = self.len;
        if let Err(e) = file.write_all(bytes) {
            let _ = file.set_len(self.len);
            // Reopen (and re-check the length) on the next write.
            self.file = None;
            return Err(LogError::io(path)(e));
        }
        self.len += bytes.len() as u64;
        Ok(offset)
    }
}
