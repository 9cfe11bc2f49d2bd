//! The start-up sweep ([`crate::ProcessExecutor::sweep`]): ends the process groups that an
//! executor killed with `kill -9` (or a crash) left running, as found in its records
//! directory, and removes their records and workspaces.
//!
//! Only records whose owner (the process that ran the executor) is gone are touched, so two
//! agents sharing a directory never end each other's processes, and agents with different
//! directories never see each other's records. A recorded process is ended only if the pid
//! still names it (same start time, same boot): a recycled pid is never signalled. Groups
//! get SIGTERM, [`GRACE`] to exit, then SIGKILL.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_exec::ExecError;
use rustix::process::{Pid, Signal, kill_process_group};

use crate::procfs;
use crate::records::{Record, Records, Verdict, judge};

/// How long swept groups have between SIGTERM and SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// How long SIGKILLed groups have to be gone before the sweep gives up on them (a process in
/// uninterruptible sleep); their records stay for the next sweep.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often the sweep looks whether the signalled groups are gone.
const POLL: Duration = Duration::from_millis(20);

/// A process group the sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The process group id (the pid of the task's main process).
    pub pgid: i32,
    /// The task it ran.
    pub task: String,
    /// The task's labels (`kiln.job`, `kiln.instance`, `kiln.lease`, …).
    pub labels: BTreeMap<String, String>,
}

impl fmt::Display for Swept {
    /// `swept process group N left by a previous agent (instance I of service S)`, or
    /// `(job J of run R, attempt A)`, or `(task T)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = |key: &str| self.labels.get(key).map(String::as_str);
        write!(f, "swept process group {} left by a previous agent (", self.pgid)?;
        match (label("kiln.instance"), label("kiln.job")) {
            (Some(instance), _) => {
                write!(f, "instance {instance}")?;
                if let Some(service) = label("kiln.service") {
                    write!(f, " of service {service}")?;
                }
            }
            (None, Some(job)) => {
                write!(f, "job {job}")?;
                if let Some(run) = label("kiln.run") {
                    write!(f, " of run {run}")?;
                }
                if let Some(attempt) = label("kiln.attempt") {
                    write!(f, ", attempt {attempt}")?;
                }
            }
            (None, None) => write!(f, "task {}", self.task)?,
        }
        f.write_str(")")
    }
}

/// Sweeps `records`' directory (see the module docs); `remove_workspace` removes a dead
/// task's workspace. Blocking: it waits up to [`GRACE`] and then `KILL_WAIT`.
pub(crate) fn sweep(
    records: &Records,
    remove_workspace: impl Fn(&Path) -> Result<(), ExecError>,
) -> Result<Vec<Swept>, ExecError> {
    let dir = records.dir().display();
    let listed = records
        .list()
        .map_err(|e| ExecError::Engine(format!("process: reading the records in {dir}: {e}")))?;
    let mut victims: Vec<(i32, Record)> = Vec::new();
    let mut stale: Vec<Record> = Vec::new();
    for record in listed {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("process: leaving a record that does not parse: {e}");
                continue;
            }
        };
        let owner = procfs::stat(record.owner.pid);
        let leader = record.process.and_then(|p| procfs::stat(p.pid));
        let group_running = |g| !procfs::groups_running(&[g]).is_empty();
        match judge(&record, records.boot(), owner, leader, group_running) {
            Verdict::Owned => {}
            Verdict::Stale => stale.push(record),
            Verdict::Kill(group) => victims.push((group, record)),
            Verdict::Search => {
                let leaders = leaders_in(&record.workspace);
                if leaders.is_empty() {
                    stale.push(record);
                } else {
                    victims.extend(leaders.into_iter().map(|group| (group, record.clone())));
                }
            }
        }
    }
    let mut groups: Vec<i32> = victims.iter().map(|(g, _)| *g).collect();
    groups.sort_unstable();
    groups.dedup();
    signal(&groups, Signal::TERM);
    let left = wait_gone(&groups, GRACE);
    signal(&left, Signal::KILL);
    let stuck = wait_gone(&left, KILL_WAIT);
    let mut swept = Vec::new();
    for (pgid, record) in victims {
        if stuck.contains(&pgid) {
            tracing::warn!(
                "process: process group {pgid} (task {}) did not end after SIGKILL; its record in {dir} stays",
                record.task
            );
            continue;
        }
        forget(records, &record, &remove_workspace);
        swept.push(Swept { pgid, task: record.task, labels: record.labels });
    }
    for record in stale {
        forget(records, &record, &remove_workspace);
    }
    Ok(swept)
}

/// Removes a dead task's record, and its workspace if the record names a task workspace
/// (`…/kiln-TASKID`: a damaged record never removes anything else).
fn forget(
    records: &Records,
    record: &Record,
    remove_workspace: &impl Fn(&Path) -> Result<(), ExecError>,
) {
    let ours = record.workspace.is_absolute()
        && record.workspace.file_name().and_then(|n| n.to_str())
            == Some(&format!("kiln-{}", record.task))
        && record.task.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ours && let Err(e) = remove_workspace(&record.workspace) {
        tracing::warn!("{e}");
    }
    if let Err(e) = records.remove(&record.task) {
        tracing::warn!("process: removing the record of task {}: {e}", record.task);
    }
}

/// The process groups led by a process whose environment says `KILN_WORKSPACE=workspace`:
/// a pending record's task (its main process leads its group).
fn leaders_in(workspace: &Path) -> Vec<i32> {
    let mut entry = b"KILN_WORKSPACE=".to_vec();
    entry.extend_from_slice(workspace.as_os_str().as_bytes());
    procfs::with_env_entry(&entry)
        .into_iter()
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.pgid == *pid && s.running()))
        .collect()
}

/// Sends `signal` to each process group; one already gone is fine.
fn signal(groups: &[i32], signal: Signal) {
    for &group in groups {
        let Some(pgid) = Pid::from_raw(group).filter(|p| !p.is_init()) else { continue };
        match kill_process_group(pgid, signal) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::SRCH => {}
            Err(e) => tracing::warn!("process: signalling process group {group}: {e}"),
        }
    }
}

/// Waits until none of `groups` has a running member, at most `limit`; the groups that still
/// have one.
fn wait_gone(groups: &[i32], limit: Duration) -> Vec<i32> {
    let until = Instant::now() + limit;
    loop {
        let left = procfs::groups_running(groups);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept(labels: &[(&str, &str)]) -> String {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Swept { pgid: 4242, task: "kiln-abc-build-1".into(), labels }.to_string()
    }

    #[test]
    fn a_swept_group_says_what_it_ran() {
        let instance =
            [("kiln.service", "web"), ("kiln.instance", "web-7f3a"), ("kiln.job", "web")];
        assert_eq!(
            swept(&instance),
            "swept process group 4242 left by a previous agent (instance web-7f3a of service web)"
        );
        let job = [("kiln.job", "build"), ("kiln.run", "r-12"), ("kiln.attempt", "2")];
        assert_eq!(
            swept(&job),
            "swept process group 4242 left by a previous agent (job build of run r-12, attempt 2)"
        );
        assert_eq!(
            swept(&[]),
            "swept process group 4242 left by a previous agent (task kiln-abc-build-1)"
        );
    }
}
