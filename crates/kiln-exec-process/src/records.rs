//! The records of started processes: one JSON file per task, `DIR/TASKID.json`, written
//! before its process is spawned (without a pid: *pending*) and again right after (with the
//! pid, process group and start time), removed once the process is reaped. Each write goes
//! to a temporary file renamed over the record, so a record is whole or absent. No `fsync`:
//! a `kill -9` of the agent keeps what it wrote, and a power loss leaves no process behind.
//!
//! [`judge`] decides, without I/O, what a later executor does with a record it finds.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::procfs::{self, Stat};

/// One process, named so that a recycled pid never matches: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ident {
    /// Process id.
    pub pid: i32,
    /// `/proc/PID/stat` field 22.
    pub start: u64,
}

/// The main process of a task, once spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// Its process group (the task's; the main process leads it).
    pub pgid: i32,
    /// Its start time (`/proc/PID/stat` field 22).
    pub start: u64,
}

/// What the file `DIR/TASKID.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The task id.
    pub task: String,
    /// Its workspace: the `KILN_WORKSPACE` of its processes, which finds a pending one.
    pub workspace: PathBuf,
    /// The task's labels (`kiln.job`, `kiln.instance`, …), to say what a swept process was.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The process running the executor that started it.
    pub owner: Ident,
    /// The boot it was started in (`/proc/sys/kernel/random/boot_id`).
    pub boot: String,
    /// The main process; `None` while it is being spawned.
    #[serde(default)]
    pub process: Option<Spawned>,
}

/// What to do with a record found in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its owner still runs (this agent, or another sharing the directory): leave it.
    Owned,
    /// It names nothing that can still run (another boot; the pid recycled; the process and
    /// its whole group gone): forget the record, kill nothing.
    Stale,
    /// Its process group still runs, left by a dead owner: end it.
    Kill(i32),
    /// Pending, of a dead owner: its process, if it was spawned, is found by its workspace.
    Search,
}

/// What to do with `record`, given this boot's id, what `/proc` says of its owner's pid and
/// of its main process's pid, and (asked only when the main process is gone) whether its
/// group still has running members.
pub(crate) fn judge(
    record: &Record,
    boot: &str,
    owner: Option<Stat>,
    leader: Option<Stat>,
    group_running: impl FnOnce(i32) -> bool,
) -> Verdict {
    if record.boot != boot {
        return Verdict::Stale;
    }
    if owner.is_some_and(|o| o.start == record.owner.start && o.running()) {
        return Verdict::Owned;
    }
    let Some(p) = record.process else { return Verdict::Search };
    match leader {
        // Ours, even as a zombie: while any member lives the group id cannot be reused.
        Some(s) if s.start == p.start => Verdict::Kill(p.pgid),
        // The pid was recycled, which it cannot be while our group exists.
        Some(_) => Verdict::Stale,
        // The main process is gone; members left in its group are still ours.
        None if group_running(p.pgid) => Verdict::Kill(p.pgid),
        None => Verdict::Stale,
    }
}

/// A directory of records, as one executor writes it.
#[derive(Debug)]
pub(crate) struct Records {
    dir: PathBuf,
    /// This process.
    owner: Ident,
    boot: String,
}

impl Records {
    /// Records in `dir` (created on the first write), owned by this process. Errs when
    /// `/proc` cannot say who this process is.
    pub fn new(dir: PathBuf) -> Result<Records, String> {
        let pid = std::process::id() as i32;
        let (Some(me), Some(boot)) = (procfs::stat(pid), procfs::boot_id()) else {
            return Err("/proc does not say this process's start time or the boot id".into());
        };
        Ok(Records { dir, owner: Ident { pid, start: me.start }, boot })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This boot's id.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// A pending record of task `task` with workspace `workspace`, owned by this process.
    pub fn pending(
        &self,
        task: &str,
        workspace: &Path,
        labels: &BTreeMap<String, String>,
    ) -> Record {
        Record {
            task: task.to_string(),
            workspace: workspace.to_path_buf(),
            labels: labels.clone(),
            owner: self.owner,
            boot: self.boot.clone(),
            process: None,
        }
    }

    /// The record file of task `task`.
    pub fn path(&self, task: &str) -> PathBuf {
        self.dir.join(format!("{task}.json"))
    }

    /// Writes `record` whole (a temporary file renamed over it), creating the directory.
    pub fn write(&self, record: &Record) -> io::Result<()> {
        let text = serde_json::to_vec(record).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!(".{}.json.tmp", record.task));
        if let Err(e) = std::fs::write(&tmp, &text) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(&tmp, &text)?;
        }
        std::fs::rename(&tmp, self.path(&record.task))
    }

    /// Removes the record of task `task`; one already gone is fine.
    pub fn remove(&self, task: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(task)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Every record in the directory (none if it does not exist); a file that does not
    /// parse is an error naming it.
    pub fn list(&self) -> io::Result<Vec<Result<Record, String>>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", path.display()));
            out.push(parsed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(process: Option<Spawned>) -> Record {
        Record {
            task: "kiln-t-1".into(),
            workspace: "/tmp/kiln-kiln-t-1".into(),
            labels: BTreeMap::new(),
            owner: Ident { pid: 100, start: 5_000 },
            boot: "b1".into(),
            process,
        }
    }

    fn stat(start: u64, state: char) -> Option<Stat> {
        Some(Stat { state, pgid: 1, start })
    }

    const SPAWNED: Spawned = Spawned { pid: 200, pgid: 200, start: 6_000 };

    #[test]
    fn a_record_of_a_running_owner_is_left_alone() {
        let r = record(Some(SPAWNED));
        let v = judge(&r, "b1", stat(5_000, 'S'), stat(6_000, 'S'), |_| true);
        assert_eq!(v, Verdict::Owned);
    }

    #[test]
    fn a_dead_owners_process_with_its_start_time_is_killed_with_its_group() {
        let r = record(Some(SPAWNED));
        for owner in [None, stat(5_001, 'S'), stat(5_000, 'Z')] {
            let v = judge(&r, "b1", owner, stat(6_000, 'S'), |_| false);
            assert_eq!(v, Verdict::Kill(200), "{owner:?}");
        }
    }

    #[test]
    fn a_recycled_pid_or_another_boot_is_never_acted_on() {
        let r = record(Some(SPAWNED));
        assert_eq!(judge(&r, "b1", None, stat(6_001, 'S'), |_| true), Verdict::Stale);
        assert_eq!(judge(&r, "b2", None, stat(6_000, 'S'), |_| true), Verdict::Stale);
    }

    #[test]
    fn a_gone_main_process_leaves_its_group_to_kill_if_it_still_runs() {
        let r = record(Some(SPAWNED));
        let mut asked = None;
        let v = judge(&r, "b1", None, None, |g| {
            asked = Some(g);
            true
        });
        assert_eq!((v, asked), (Verdict::Kill(200), Some(200)));
        assert_eq!(judge(&r, "b1", None, None, |_| false), Verdict::Stale);
    }

    #[test]
    fn a_pending_record_of_a_dead_owner_is_searched_for() {
        let r = record(None);
        assert_eq!(judge(&r, "b1", None, None, |_| true), Verdict::Search);
        assert_eq!(judge(&r, "b1", stat(5_000, 'R'), None, |_| true), Verdict::Owned);
    }

    #[test]
    fn records_round_trip_through_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path().join("procs")).expect("records");
        let mut r = records.pending("kiln-t-1", Path::new("/ws"), &BTreeMap::new());
        records.write(&r).expect("first write creates the directory");
        r.process = Some(SPAWNED);
        records.write(&r).expect("rewrite");
        std::fs::write(dir.path().join("procs/garbage.json"), "{").unwrap();
        let listed = records.list().expect("list");
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&Ok(r.clone())), "{listed:?}");
        assert!(listed.iter().any(|l| l.as_ref().is_err_and(|e| e.contains("garbage.json"))));
        records.remove("kiln-t-1").expect("remove");
        records.remove("kiln-t-1").expect("removing twice is fine");
        assert_eq!(records.list().expect("list").len(), 1);
    }
}
