//! `LogStore`: one append-only file per [`LogKey`] under a root directory (format in
//! `format.rs`) with its line-offset index beside it (`index.rs`), and a per-log broadcast
//! channel for live followers. A *view* (a run's log) is a log whose records are references to
//! lines of other logs (its jobs' logs), resolved when read: each line is stored once.
//!
//! Invariants: one process writes a store's directory at a time; every append, close and
//! follower subscription of a log happens under that log's mutex, so the order of records in
//! the file, in the channel and of subscriptions is one order. A line appended through a view
//! is stored in its own log before the view's reference to it, both under the view's mutex
//! (the view's mutex is always taken before a source's). Readers only read up to the
//! committed length, never a half-written frame.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::archive::{self, Archived, LogArchive};
use crate::follow::Follow;
use crate::format::{self, Frame};
use crate::index::{self, Entry, Source};
use crate::{LogError, LogKey, LogLine, Masker, Record};

/// Tuning of a [`LogStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStoreConfig {
    /// Records buffered per log for live followers. A follower that falls further behind is
    /// not lost: it re-reads the file from where it was, so this only trades memory for disk
    /// reads.
    pub channel_capacity: usize,
    /// One index entry (seq, byte offset) every this many records, kept in memory and in the
    /// index file beside the log, so a read from the middle of a long log seeks straight to
    /// the right place.
    pub index_every: u64,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig { channel_capacity: 1024, index_every: 1024 }
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
/// Cheap to clone (shared state). Methods other than [`LogStore::follow`]'s stream do
/// blocking file I/O: an append is one `write` to the page cache (no `fsync`), fine to call
/// from async code on a local disk; reads and closes belong in `spawn_blocking`. All methods
/// may be called concurrently from any thread, for the same or different keys. The first use
/// of a key in a process reads its index file and the records after the index's last entry
/// (at most `index_every`), or scans the whole file once if the index is missing or wrong,
/// and writes the index again; the store then keeps a small state (open file, live channel,
/// sparse index) per key until the log is closed. Reading a closed log costs the same
/// whatever its length.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The store itself, for views reading their sources.
    me: Weak<Inner>,
    root: PathBuf,
    config: LogStoreConfig,
    logs: Mutex<HashMap<LogKey, Arc<KeyLog>>>,
    reserve: Mutex<Reserve>,
    /// `reserve.missing`, read without the lock on every append.
    reserve_missing: std::sync::atomic::AtomicBool,
    /// Where finished logs go, if anywhere.
    archive: Option<ArchiveState>,
}

/// The archive of a store ([`LogStore::with_archive`]).
#[derive(Debug)]
struct ArchiveState {
    archive: Arc<dyn LogArchive>,
    /// Which logs are archived once closed.
    which: fn(&LogKey) -> bool,
    /// Archived logs' indexes (an archived log never changes); at most [`KNOWN_ARCHIVED`].
    known: Mutex<HashMap<LogKey, Arc<Archived>>>,
    /// Closed logs for the archiving thread.
    queue: Mutex<std::sync::mpsc::Sender<LogKey>>,
}

/// Archived indexes kept in memory.
const KNOWN_ARCHIVED: usize = 4096;

/// How long the archiving thread waits before trying a failed log again.
const ARCHIVE_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

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
        LogStore::build(root.into(), config, None)
    }

    /// A store over `root` whose closed logs that `which` picks are moved to `archive` (see
    /// the `archive` module: uploaded, then removed here, then read from there by ranges).
    /// A thread does the moving: first of the closed logs found under `root` (those a killed
    /// process left), then of each log as it is closed; a failed move is tried again later,
    /// the log staying readable here meanwhile.
    pub fn with_archive(
        root: impl Into<PathBuf>,
        config: LogStoreConfig,
        archive: Arc<dyn LogArchive>,
        which: fn(&LogKey) -> bool,
    ) -> Result<LogStore, LogError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let state = ArchiveState {
            archive,
            which,
            known: Mutex::new(HashMap::new()),
            queue: Mutex::new(tx),
        };
        let store = LogStore::build(root.into(), config, Some(state))?;
        let weak = Arc::downgrade(&store.inner);
        std::thread::Builder::new()
            .name("kiln-log-archive".into())
            .spawn(move || archiver(weak, rx))
            .map_err(LogError::io(store.root()))?;
        Ok(store)
    }

    fn build(
        root: PathBuf,
        config: LogStoreConfig,
        archive: Option<ArchiveState>,
    ) -> Result<LogStore, LogError> {
        fs::create_dir_all(&root).map_err(LogError::io(&root))?;
        let config = LogStoreConfig {
            channel_capacity: config.channel_capacity.max(1),
            index_every: config.index_every.max(1),
        };
        let store = LogStore {
            inner: Arc::new_cyclic(|weak| Inner {
                me: weak.clone(),
                root,
                config,
                logs: Mutex::new(HashMap::new()),
                reserve: Mutex::new(Reserve { missing: true, tried: None }),
                reserve_missing: std::sync::atomic::AtomicBool::new(true),
                archive,
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
}

/// The archiving thread: the logs left under the root first (closed ones are moved), then
/// each log as it is closed; those that failed again every [`ARCHIVE_RETRY`]. It ends with
/// the store.
fn archiver(store: Weak<Inner>, queue: std::sync::mpsc::Receiver<LogKey>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut failed: Vec<LogKey> = match store.upgrade() {
        Some(inner) => LogStore { inner }.archivable(),
        None => return,
    };
    let mut next_try = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
        if now >= next_try && !failed.is_empty() {
            let Some(inner) = store.upgrade() else { return };
            let s = LogStore { inner };
            failed.retain(|key| !moved(&s, key));
            next_try = std::time::Instant::now() + ARCHIVE_RETRY;
        }
        let wait = if failed.is_empty() {
            ARCHIVE_RETRY
        } else {
            next_try.saturating_duration_since(std::time::Instant::now())
        };
        match queue.recv_timeout(wait) {
            Ok(key) => {
                let Some(inner) = store.upgrade() else { return };
                if !moved(&LogStore { inner }, &key) {
                    failed.push(key);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Moves `key`'s log to the archive; false (and a warning) if that failed.
fn moved(store: &LogStore, key: &LogKey) -> bool {
    match store.archive(key) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("log {key} stays on the local disk for now: {e}");
            false
        }
    }
}

/// One log: its file, its writer state and its channel.
#[derive(Debug)]
pub(crate) struct KeyLog {
    key: LogKey,
    path: PathBuf,
    index_every: u64,
    state: Mutex<Writer>,
    tx: broadcast::Sender<Event>,
    /// The store, to read a view's sources.
    store: Weak<Inner>,
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
    /// False until the file has been read (first use of the key in this process).
    loaded: bool,
    /// Opened on first append.
    file: Option<File>,
    last_seq: u64,
    /// Committed length: everything before it is whole frames.
    len: u64,
    closed: bool,
    /// Time of the last line frame (the next one's is written relative to it).
    last_time: Option<DateTime<Utc>>,
    /// A view's sources, by number.
    sources: Vec<Source>,
    /// For each source, the line a bare reference means next.
    next: Vec<u64>,
    /// One entry every `index_every` records (none for seq 1), sorted; mirrored in the file.
    index: Vec<Entry>,
    /// There was no local file when it was loaded.
    missing: bool,
    /// It had been moved to the archive (its marker file `<key>.archived` is here).
    moved: bool,
    /// The log is archived: read from the archive, not the file.
    archived: Option<Arc<Archived>>,
}

/// A record as read before a view's references are resolved.
enum Item {
    Line(Record),
    /// Record `seq` of a view is line `at` of source `n`.
    Ref {
        seq: u64,
        n: usize,
        at: u64,
    },
}

/// Reading state while walking frames: the seq of the last record, the last line's time, and
/// a view's cursors.
#[derive(Debug, Clone, Default)]
struct Walk {
    seq: u64,
    prev: Option<DateTime<Utc>>,
    next: Vec<u64>,
}

impl Walk {
    /// Where reading starts at `entry` (the start of the file when `None`) with `sources`
    /// known.
    fn at(entry: Option<&Entry>, sources: usize) -> Walk {
        let mut next = entry.map_or_else(Vec::new, |e| e.next.clone());
        next.resize(sources.max(next.len()), 1);
        Walk { seq: entry.map_or(0, |e| e.seq - 1), prev: entry.and_then(|e| e.prev), next }
    }

    /// True when `frame` makes a record (it takes the next seq).
    fn is_record(&self, frame: &Frame) -> bool {
        match frame {
            Frame::Line { .. } => true,
            Frame::Ref { n, .. } => *n < self.next.len(),
            _ => false,
        }
    }

    /// The index entry for a record that starts at `offset`, before it is applied.
    fn entry(&self, offset: u64) -> Entry {
        Entry { seq: self.seq + 1, offset, prev: self.prev, next: self.next.clone() }
    }

    /// Applies `frame`; the record it makes, if any. `sources` grows with a new declaration.
    fn apply(&mut self, frame: Frame, sources: &mut Vec<Source>) -> Option<Item> {
        match frame {
            Frame::Line { when, stream, text } => {
                let time = when.resolve(self.prev);
                self.prev = Some(time);
                self.seq += 1;
                Some(Item::Line(Record { seq: self.seq, time, stream, text }))
            }
            Frame::Ref { n, at } if n < self.next.len() => {
                let at = at.unwrap_or(self.next[n]);
                self.next[n] = at + 1;
                self.seq += 1;
                Some(Item::Ref { seq: self.seq, n, at })
            }
            Frame::Source { n, label, key } => {
                if n == sources.len() {
                    sources.push(Source { key, label });
                }
                if n == self.next.len() {
                    self.next.push(1);
                }
                None
            }
            Frame::Ref { .. } | Frame::Closed => None,
        }
    }
}

/// Reads whole frames from `reader`, calling `f(offset, frame bytes without '\n')` for each,
/// from `offset`; stops at a torn frame or when `f` says so. Returns the offset after the last
/// whole frame.
fn frames(
    path: &Path,
    reader: impl Read,
    mut offset: u64,
    mut f: impl FnMut(u64, &[u8]) -> bool,
) -> Result<u64, LogError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(LogError::io(path))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(offset);
        }
        let at = offset;
        offset += n as u64;
        if !f(at, &buf[..n - 1]) {
            return Ok(offset);
        }
    }
}

impl LogStore {
    fn append_text(&self, key: &LogKey, line: &LogLine, text: &str) -> Result<u64, LogError> {
        let record = self.append_once(key, line, text)?;
        self.refill_reserve();
        Ok(record.seq)
    }

    fn append_once(&self, key: &LogKey, line: &LogLine, text: &str) -> Result<Record, LogError> {
        let log = self.log(key);
        let mut writer = log.lock_local()?;
        if writer.closed {
            drop(writer);
            self.evict(key, &log);
            return Err(LogError::Closed(key.clone()));
        }
        let (us, time) = format::delta(writer.last_time, line.time);
        let bytes = format::encode_line(us, line.stream, text);
        writer.push(&log, &bytes)?;
        writer.last_time = Some(time);
        let record =
            Record { seq: writer.last_seq, time, stream: line.stream, text: text.to_owned() };
        // Checked under the lock, where followers subscribe: none can be missed.
        if log.tx.receiver_count() > 0 {
            let _ = log.tx.send(Event::Line(record.clone()));
        }
        Ok(record)
    }

    /// Appends `line` (its text masked by `masker`) to `key`'s log, and a reference to it to
    /// the view `view`, where it shows as `label` + tab + text; returns its seq in `key`'s log.
    ///
    /// The line is stored once, in `key`'s log; the view holds a few bytes per line and is read
    /// like any log ([`LogStore::read`], [`LogStore::follow`]). A closed view takes no more
    /// references (the line is still stored); an error writing the reference leaves the view
    /// without that line and is not reported (the line is stored).
    pub fn append_viewed(
        &self,
        key: &LogKey,
        line: &LogLine,
        masker: Option<&Masker>,
        view: &LogKey,
        label: &str,
    ) -> Result<u64, LogError> {
        let text =
            masker.map_or(std::borrow::Cow::Borrowed(line.text.as_str()), |m| m.mask(&line.text));
        let seq = self.append_viewed_once(key, line, &text, view, label, false)?;
        self.refill_reserve();
        Ok(seq)
    }

    /// [`LogStore::append_marker`] through a view: stored even on a full disk, in `key`'s log
    /// and in the view.
    pub fn append_marker_viewed(
        &self,
        key: &LogKey,
        line: &LogLine,
        view: &LogKey,
        label: &str,
    ) -> Result<u64, LogError> {
        match self.append_viewed_once(key, line, &line.text, view, label, true) {
            Err(e) if e.is_full() && self.release_reserve() => {
                self.append_viewed_once(key, line, &line.text, view, label, true)
            }
            other => other,
        }
    }

    fn append_viewed_once(
        &self,
        key: &LogKey,
        line: &LogLine,
        text: &str,
        view: &LogKey,
        label: &str,
        marker: bool,
    ) -> Result<u64, LogError> {
        let vlog = self.log(view);
        // The view's mutex first, held while the line is stored: references are written in
        // the order of the lines.
        let mut vw = vlog.lock()?;
        let record = self.append_once(key, line, text)?;
        if !vw.closed {
            let mut added = vw.add_ref(&vlog, key, label, &record);
            if marker && added.as_ref().is_err_and(LogError::is_full) && self.release_reserve() {
                added = vw.add_ref(&vlog, key, label, &record);
            }
            drop(added);
        }
        let closed = vw.closed;
        drop(vw);
        if closed {
            self.evict(view, &vlog);
        }
        Ok(record.seq)
    }

    /// Marks `key`'s log complete: later appends fail and followers end once they have
    /// everything. Idempotent; closing a log that has no line creates an empty, closed log.
    ///
    /// A closed log's state (its open file, its channel) is dropped from the store: a closed
    /// log never changes, and readers rebuild what they need from the file and its index. On a
    /// full disk the reserve file is given back for it (see [`LogStore::append_marker`]).
    pub fn close(&self, key: &LogKey) -> Result<(), LogError> {
        match self.close_once(key) {
            Err(e) if e.is_full() && self.release_reserve() => self.close_once(key),
            other => other,
        }
    }

    fn close_once(&self, key: &LogKey) -> Result<(), LogError> {
        let log = self.log(key);
        let archived = {
            let mut writer = log.lock()?;
            if !writer.closed {
                writer.write(&log.path, &format::encode_closed())?;
                writer.closed = true;
                writer.file = None;
                let _ = log.tx.send(Event::Closed);
            }
            writer.archived.is_some()
        };
        self.evict(key, &log);
        if let Some(state) = &self.inner.archive
            && (state.which)(key)
            && !archived
        {
            let _ = state.queue.lock().unwrap_or_else(|p| p.into_inner()).send(key.clone());
        }
        Ok(())
    }

    /// The archived index of `key`'s log, if the store archives it and it is archived.
    fn archived(&self, key: &LogKey) -> Result<Option<Arc<Archived>>, LogError> {
        let Some(state) = &self.inner.archive else { return Ok(None) };
        if !(state.which)(key) {
            return Ok(None);
        }
        if let Some(a) = state.known.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(Some(a.clone()));
        }
        let fail = |source| LogError::Archive {
            key: key.clone(),
            place: state.archive.describe(),
            source,
        };
        let (_, idx) = archive::names(key);
        let Some(bytes) = state.archive.get(&idx, None).map_err(fail)? else { return Ok(None) };
        let archived = Arc::new(archive::decode(&bytes).ok_or_else(|| {
            fail(io::Error::new(io::ErrorKind::InvalidData, format!("{idx} is not a whole index")))
        })?);
        self.remember(key, &archived);
        Ok(Some(archived))
    }

    fn remember(&self, key: &LogKey, archived: &Arc<Archived>) {
        let Some(state) = &self.inner.archive else { return };
        let mut known = state.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_ARCHIVED {
            known.clear();
        }
        known.insert(key.clone(), archived.clone());
    }

    /// Moves `key`'s log to the store's archive if it is closed and here: its index, then the
    /// log, then the local files removed (log first). True if it was moved. Doing it again
    /// after a crash stores the same bytes again.
    pub fn archive(&self, key: &LogKey) -> Result<bool, LogError> {
        let Some(state) = &self.inner.archive else { return Ok(false) };
        let path = self.path(key);
        let writer = Writer::load(&path, self.inner.config.index_every)?;
        if writer.missing || !writer.closed {
            return Ok(false);
        }
        let archived = Arc::new(Archived {
            entries: writer.index,
            sources: writer.sources,
            last_seq: writer.last_seq,
            len: writer.len,
        });
        let fail = |source| LogError::Archive {
            key: key.clone(),
            place: state.archive.describe(),
            source,
        };
        let (log_name, idx_name) = archive::names(key);
        state.archive.put_bytes(&idx_name, archive::encode(&archived)).map_err(fail)?;
        state.archive.put_file(&log_name, &path).map_err(fail)?;
        self.remember(key, &archived);
        // The marker first: from it on, readers look in the archive when the file is gone.
        let marker = archive::marker(&path);
        File::create(&marker).and_then(|f| f.sync_all()).map_err(LogError::io(&marker))?;
        for file in [path.clone(), index::path_of(&path)] {
            match fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(LogError::io(file)(e));
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// The logs under the root that the archive takes (closed or not), by key.
    fn archivable(&self) -> Vec<LogKey> {
        let Some(state) = &self.inner.archive else { return Vec::new() };
        let mut out = Vec::new();
        let mut dirs = vec![self.inner.root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "log") {
                    continue;
                }
                let bare = path.with_extension("");
                let Ok(rel) = bare.strip_prefix(&self.inner.root).map(|r| {
                    r.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                }) else {
                    continue;
                };
                if let Ok(key) = LogKey::new(rel.join("/"))
                    && (state.which)(&key)
                {
                    out.push(key);
                }
            }
        }
        out.sort();
        out
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
            key: key.clone(),
            path: key.file_in(&self.inner.root),
            index_every: self.inner.config.index_every,
            state: Mutex::new(Writer::default()),
            tx,
            store: self.inner.me.clone(),
        }
    }

    /// Up to `limit` records with `seq >= from_seq`, in order (`from_seq` 0 and 1 both mean
    /// from the start). Empty for a log that does not exist. A view's records are its sources'
    /// lines, each with its label and a tab before the text.
    ///
    /// Takes the same time wherever `from_seq` is in the log (one seek through the index).
    pub fn read(&self, key: &LogKey, from_seq: u64, limit: usize) -> Result<Vec<Record>, LogError> {
        self.log_for_read(key).read(from_seq, limit)
    }

    /// [`LogStore::read`] and [`LogStore::info`] at once (one look at the index).
    pub fn page(
        &self,
        key: &LogKey,
        from_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Record>, LogInfo), LogError> {
        let log = self.log_for_read(key);
        let records = log.read(from_seq, limit)?;
        Ok((records, log.info()?))
    }

    /// Writes every line of `key`'s log from `from_seq` on to `out` as plain text, one line
    /// each (`prefix(record)` before it); returns how many lines. Blocking: for a download,
    /// run it in `spawn_blocking`.
    pub fn export(
        &self,
        key: &LogKey,
        from_seq: u64,
        out: &mut dyn Write,
    ) -> Result<u64, LogError> {
        const BATCH: usize = 4096;
        let log = self.log_for_read(key);
        let mut from = from_seq.max(1);
        let mut count = 0;
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            let records = log.read(from, BATCH)?;
            let Some(last) = records.last() else { return Ok(count) };
            from = last.seq + 1;
            buf.clear();
            for r in &records {
                buf.extend_from_slice(r.text.as_bytes());
                buf.push(b'\n');
            }
            count += records.len() as u64;
            out.write_all(&buf).map_err(LogError::io(log.path()))?;
        }
    }

    /// Last seq, closed flag and size of `key`'s log (all zero/false when it does not exist).
    pub fn info(&self, key: &LogKey) -> Result<LogInfo, LogError> {
        self.log_for_read(key).info()
    }

    /// The index file kept beside `key`'s log (it may not exist: short logs need none).
    pub fn index_path(&self, key: &LogKey) -> PathBuf {
        index::path_of(&self.path(key))
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
    /// Locks the writer state, reading the file (and its index) first if this is the first
    /// use.
    /// A log with no local file is looked for in the store's archive (when the store archives
    /// it).
    fn lock(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        self.lock_as(true)
    }

    /// [`KeyLog::lock`] for an append: a log with no local file is a new one (the archive is
    /// not asked; archived logs are closed and take no appends).
    fn lock_local(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        self.lock_as(false)
    }

    fn lock_as(&self, ask_archive: bool) -> Result<MutexGuard<'_, Writer>, LogError> {
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !guard.loaded {
            *guard = Writer::load(&self.path, self.index_every)?;
            if guard.moved && ask_archive {
                let archived = self.archived()?.ok_or_else(|| LogError::Archive {
                    key: self.key.clone(),
                    place: self.archive_place(),
                    source: io::Error::new(io::ErrorKind::NotFound, "it is not in the archive"),
                })?;
                *guard = Writer::from_archived(archived);
            }
        }
        Ok(guard)
    }

    /// This log's archived index, if the store archives it and it is archived.
    fn archived(&self) -> Result<Option<Arc<Archived>>, LogError> {
        match self.store.upgrade() {
            Some(inner) => LogStore { inner }.archived(&self.key),
            None => Ok(None),
        }
    }

    /// Where the store's archive is, for errors.
    fn archive_place(&self) -> String {
        let inner = self.store.upgrade();
        match inner.as_ref().and_then(|i| i.archive.as_ref()) {
            Some(state) => state.archive.describe(),
            None => "no archive (the store was opened without one)".to_string(),
        }
    }

    /// The bytes `start..end` of this log in the archive.
    fn archived_bytes(&self, start: u64, end: u64) -> Result<Vec<u8>, LogError> {
        let inner = self.store.upgrade();
        let Some(state) = inner.as_ref().and_then(|i| i.archive.as_ref()) else {
            return Err(LogError::io(&self.path)(io::Error::other("the store has no archive")));
        };
        let (log, _) = archive::names(&self.key);
        let fail = |source| LogError::Archive {
            key: self.key.clone(),
            place: state.archive.describe(),
            source,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        state.archive.get(&log, Some((start, end))).map_err(fail)?.ok_or_else(|| {
            fail(io::Error::new(io::ErrorKind::NotFound, format!("{log} is not in the archive")))
        })
    }

    /// The file of this log.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> Result<LogInfo, LogError> {
        let writer = self.lock()?;
        Ok(LogInfo { last_seq: writer.last_seq, closed: writer.closed, bytes: writer.len })
    }

    /// Subscribes to the live channel and notes what is already stored, atomically.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, LogError> {
        let writer = self.lock()?;
        Ok(Snapshot { rx: self.tx.subscribe(), last_seq: writer.last_seq, closed: writer.closed })
    }

    /// Up to `limit` records with `seq >= from_seq` among those committed now, a view's
    /// references resolved.
    pub(crate) fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, LogError> {
        let (items, sources) = self.read_items(from_seq, limit)?;
        if !items.iter().any(|i| matches!(i, Item::Ref { .. })) {
            return Ok(items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Line(r) => Some(r),
                    Item::Ref { .. } => None,
                })
                .collect());
        }
        self.resolve(items, &sources)
    }

    /// The records from `from_seq`, references unresolved, and the sources they name.
    fn read_items(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Item>, Vec<Source>), LogError> {
        let (start, end, mut sources, archived) = {
            let writer = self.lock()?;
            if limit == 0 || from_seq > writer.last_seq {
                return Ok((Vec::new(), Vec::new()));
            }
            let at = writer.index.partition_point(|e| e.seq <= from_seq);
            let entry = at.checked_sub(1).and_then(|i| writer.index.get(i)).cloned();
            // An archived log is read by ranges: up to the entry after the records wanted.
            let past = from_seq.saturating_add(limit as u64);
            let stop = writer.index.iter().find(|e| e.seq >= past).map_or(writer.len, |e| e.offset);
            let end = if writer.archived.is_some() { stop } else { writer.len };
            (entry, end, writer.sources.clone(), writer.archived.is_some())
        };
        let offset = start.as_ref().map_or(0, |e| e.offset);
        let mut walk = Walk::at(start.as_ref(), sources.len());
        let source: Box<dyn Read> = if archived {
            Box::new(io::Cursor::new(self.archived_bytes(offset, end)?))
        } else {
            let mut file = match File::open(&self.path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Archived (and removed here) since it was loaded: read it from there.
                    if let Some(archived) = self.archived()? {
                        *self.state.lock().unwrap_or_else(|p| p.into_inner()) =
                            Writer::from_archived(archived);
                        return self.read_items(from_seq, limit);
                    }
                    return Ok((Vec::new(), Vec::new()));
                }
                Err(e) => return Err(LogError::io(&self.path)(e)),
            };
            file.seek(SeekFrom::Start(offset)).map_err(LogError::io(&self.path))?;
            Box::new(file.take(end.saturating_sub(offset)))
        };
        let mut out = Vec::new();
        frames(&self.path, source, offset, |_, bytes| {
            let Some(frame) = format::decode(bytes) else { return true };
            if matches!(frame, Frame::Closed) {
                return false;
            }
            match walk.apply(frame, &mut sources) {
                Some(Item::Line(r)) if r.seq >= from_seq => out.push(Item::Line(r)),
                Some(Item::Ref { seq, n, at }) if seq >= from_seq => {
                    out.push(Item::Ref { seq, n, at })
                }
                _ => {}
            }
            out.len() < limit
        })?;
        Ok((out, sources))
    }

    /// Replaces a view's references by the lines they name (read from the sources in runs of
    /// consecutive lines); a reference to a line that is not there is left out.
    fn resolve(&self, items: Vec<Item>, sources: &[Source]) -> Result<Vec<Record>, LogError> {
        let store = self.store.upgrade().map(|inner| LogStore { inner });
        let mut wanted: HashMap<usize, Vec<u64>> = HashMap::new();
        for item in &items {
            if let Item::Ref { n, at, .. } = item {
                wanted.entry(*n).or_default().push(*at);
            }
        }
        let mut lines: HashMap<(usize, u64), Record> = HashMap::new();
        for (n, mut ats) in wanted {
            let (Some(store), Some(source)) = (&store, sources.get(n)) else { continue };
            ats.sort_unstable();
            ats.dedup();
            let log = store.log_for_read(&source.key);
            let mut i = 0;
            while i < ats.len() {
                let mut j = i;
                while j + 1 < ats.len() && ats[j + 1] == ats[j] + 1 {
                    j += 1;
                }
                // Plain lines only: a source's own references are not followed.
                let (records, _) = log.read_items(ats[i], j - i + 1)?;
                for item in records {
                    if let Item::Line(r) = item
                        && r.seq <= ats[j]
                    {
                        lines.insert((n, r.seq), r);
                    }
                }
                i = j + 1;
            }
        }
        Ok(items
            .into_iter()
            .filter_map(|item| match item {
                Item::Line(r) => Some(r),
                Item::Ref { seq, n, at } => lines.remove(&(n, at)).map(|r| Record {
                    seq,
                    time: r.time,
                    stream: r.stream,
                    text: format!(
                        "{}\t{}",
                        sources.get(n).map_or("", |s| s.label.as_str()),
                        r.text
                    ),
                }),
            })
            .collect())
    }
}

impl Writer {
    /// The state of an archived log: closed, read from the archive.
    fn from_archived(a: Arc<Archived>) -> Writer {
        Writer {
            loaded: true,
            closed: true,
            last_seq: a.last_seq,
            len: a.len,
            sources: a.sources.clone(),
            index: a.entries.clone(),
            archived: Some(a),
            ..Writer::default()
        }
    }

    /// Reads the log's index file and the records after its last entry (the whole file when
    /// the index is missing or does not fit), and writes the index again if it lagged: last
    /// seq, committed length (a torn last frame excluded), closed flag, sources and the sparse
    /// index. A missing file is an empty log.
    fn load(path: &Path, index_every: u64) -> Result<Writer, LogError> {
        let mut writer = Writer { loaded: true, ..Writer::default() };
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                writer.missing = true;
                writer.moved = archive::marker(path).exists();
                // Moved logs are closed (appends need not ask the archive).
                writer.closed = writer.moved;
                return Ok(writer);
            }
            Err(e) => return Err(LogError::io(path)(e)),
        };
        let file_len = file.metadata().map_err(LogError::io(path))?.len();
        let idx_path = index::path_of(path);
        let (mut entries, mut sources) = index::read(&idx_path);
        let had = entries.len();
        if !index::fits(&mut file, file_len, &entries, &sources) {
            entries.clear();
            sources.clear();
        }
        let fitted = entries.len();
        let known_sources = sources.len();
        let start = entries.last().cloned();
        let offset = start.as_ref().map_or(0, |e| e.offset);
        let mut walk = Walk::at(start.as_ref(), sources.len());
        file.seek(SeekFrom::Start(offset)).map_err(LogError::io(path))?;
        let mut closed = false;
        let len = frames(path, &mut file, offset, |at, bytes| {
            if closed {
                return true;
            }
            match format::decode(bytes) {
                Some(Frame::Closed) => closed = true,
                Some(frame) => {
                    let due = walk.seq > 0
                        && walk.seq.is_multiple_of(index_every)
                        && entries.last().is_none_or(|e| e.seq <= walk.seq);
                    if due && walk.is_record(&frame) {
                        entries.push(walk.entry(at));
                    }
                    walk.apply(frame, &mut sources);
                }
                // A whole but unreadable frame: skipped, as readers skip it.
                None => {}
            }
            true
        })?;
        if entries.len() > fitted || sources.len() > known_sources || fitted < had {
            // Best effort: without it, the next first use reads more.
            let _ = index::rewrite(&idx_path, &entries, &sources);
        }
        writer.last_seq = walk.seq;
        writer.last_time = walk.prev;
        writer.next = walk.next;
        writer.len = len;
        writer.closed = closed;
        writer.sources = sources;
        writer.index = entries;
        Ok(writer)
    }

    /// Appends one record's frame, with its index entry when one is due.
    fn push(&mut self, log: &KeyLog, bytes: &[u8]) -> Result<(), LogError> {
        let due = self.last_seq > 0 && self.last_seq.is_multiple_of(log.index_every);
        let entry = due.then(|| Entry {
            seq: self.last_seq + 1,
            offset: self.len,
            prev: self.last_time,
            next: self.next.clone(),
        });
        self.write(&log.path, bytes)?;
        self.last_seq += 1;
        if let Some(entry) = entry {
            let _ = index::append(&index::path_of(&log.path), &index::encode_entry(&entry));
            self.index.push(entry);
        }
        Ok(())
    }

    /// Appends a view's reference to `record` of `key` (declared as a source first if new) and
    /// sends the resolved line to followers.
    fn add_ref(
        &mut self,
        log: &KeyLog,
        key: &LogKey,
        label: &str,
        record: &Record,
    ) -> Result<(), LogError> {
        let n = match self.sources.iter().position(|s| &s.key == key) {
            Some(n) => n,
            None => {
                let n = self.sources.len();
                let bytes = format::encode_source(n, label, key);
                self.write(&log.path, &bytes)?;
                let _ = index::append(&index::path_of(&log.path), &bytes);
                self.sources.push(Source { key: key.clone(), label: label.replace('\t', " ") });
                self.next.resize(n + 1, 1);
                n
            }
        };
        let at = (self.next[n] != record.seq).then_some(record.seq);
        self.push(log, &format::encode_ref(n, at))?;
        self.next[n] = record.seq + 1;
        if log.tx.receiver_count() > 0 {
            let _ = log.tx.send(Event::Line(Record {
                seq: self.last_seq,
                time: record.time,
                stream: record.stream,
                text: format!("{}\t{}", self.sources[n].label, record.text),
            }));
        }
        Ok(())
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
