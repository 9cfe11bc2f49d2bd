//! The start-up sweep: an executor killed with `kill -9` leaves its process groups running;
//! the next executor on the same records directory ends them (the whole group), and nothing
//! else: not a process whose pid a record no longer names, not another directory's, not a
//! live executor's.
//!
//! The killed executor is a real process: this test binary run again with [`ROLE`] set,
//! which starts the tasks, prints their pids and waits to be killed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use kiln_exec::conformance::{script_task, unique_id};
use kiln_exec::{Executor, TaskSpec};
use kiln_exec_process::{ProcessConfig, ProcessExecutor};

/// Set (to the test's directory) in the copy of this binary that plays the killed agent.
const ROLE: &str = "KILN_SWEEP_TEST_AGENT";

/// An executor with workspaces in `base/ws-NAME` and records in `base/procs-NAME`.
fn executor(base: &Path, name: &str) -> ProcessExecutor {
    let root = base.join(format!("ws-{name}"));
    std::fs::create_dir_all(&root).unwrap();
    let records = Some(base.join(format!("procs-{name}")));
    ProcessExecutor::new(ProcessConfig { root, records, ..ProcessConfig::default() })
}

/// A task whose main process (a `sleep`, after `exec`) has a background `sleep` child in its
/// group; it prints `MAIN CHILD` first.
fn sleeper(name: &str) -> TaskSpec {
    let mut task = script_task(&unique_id(name), &["sleep 300 &", "echo $$ $!", "exec sleep 301"]);
    task.labels.insert("kiln.service".into(), "web".into());
    task.labels.insert("kiln.instance".into(), format!("web-{name}"));
    task
}

/// Sets up and starts `task`; the pids it printed (main process, child).
async fn start(ex: &ProcessExecutor, task: &TaskSpec) -> (i32, i32) {
    ex.setup(task).await.expect("setup");
    let mut lines = ex.start(task).await.expect("start");
    let first = lines.next().await.expect("a line").expect("no error").text;
    // Keep draining, so the task never blocks on its pipe.
    tokio::spawn(lines.count());
    let (main, child) = first.split_once(' ').expect("two pids");
    (main.parse().unwrap(), child.parse().unwrap())
}

/// Whether `pid` runs (exists and is not a zombie).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Field 22 of `/proc/PID/stat`.
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// The names of the records in `dir` (not a record being written, `.NAME.json.tmp`).
fn records_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    out.sort();
    out
}

/// Process groups and processes the test started, SIGKILLed when dropped (whatever the
/// test's outcome).
#[derive(Default)]
struct Owned(Vec<i32>, Vec<i32>);

impl Drop for Owned {
    fn drop(&mut self) {
        let groups = self.0.iter().map(|g| format!("-{g}"));
        for target in groups.chain(self.1.iter().map(ToString::to_string)) {
            let _ =
                Command::new("kill").args(["-KILL", "--", &target]).stderr(Stdio::null()).status();
        }
    }
}

/// The killed agent's part: starts a sleeper on executors `a` and `b`, prints
/// `pids NAME MAIN CHILD` for each, and waits for SIGKILL.
async fn play_the_killed_agent(base: PathBuf) {
    let (a, b) = (executor(&base, "a"), executor(&base, "b"));
    // Written to the real stdout: the test harness captures `println!`.
    let mut out = std::io::stdout();
    let (main, child) = start(&a, &sleeper("a")).await;
    writeln!(out, "pids a {main} {child}").unwrap();
    let (main, child) = start(&b, &sleeper("b")).await;
    writeln!(out, "pids b {main} {child}").unwrap();
    // Set up, never started: its workspace is swept all the same.
    a.setup(&script_task(&unique_id("unstarted"), &["true"])).await.expect("setup");
    out.flush().unwrap();
    std::future::pending::<()>().await;
}

/// The lines of `from`, read on a thread; each waited for at most a minute.
fn lines_of(from: impl std::io::Read + Send + 'static) -> impl FnMut() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    move || rx.recv_timeout(Duration::from_secs(60)).expect("a line within a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_executor_sweeps_the_groups_a_killed_one_left_and_nothing_else() {
    if let Some(base) = std::env::var_os(ROLE) {
        return play_the_killed_agent(base.into()).await;
    }
    let base = tempfile::tempdir().unwrap();
    let mut owned = Owned::default();
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .args(["sweep::the_next_executor_sweeps_the_groups_a_killed_one_left_and_nothing_else"])
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, base.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the agent starts");
    owned.1.push(agent.id() as i32);
    let mut pids = BTreeMap::new();
    let mut next_line = lines_of(agent.stdout.take().unwrap());
    while pids.len() < 2 {
        let line = next_line();
        // The harness may have written `test NAME ... ` before it on the line.
        if let Some((_, rest)) = line.split_once("pids ") {
            let words: Vec<&str> = rest.split(' ').collect();
            let pid = |i: usize| words[i].parse::<i32>().unwrap();
            owned.0.push(pid(1));
            pids.insert(words[0].to_string(), (pid(1), pid(2)));
        }
    }
    let (a_main, a_child) = pids["a"];
    let (b_main, b_child) = pids["b"];
    let procs_a = base.path().join("procs-a");
    let workspaces_of = |name: &str| {
        let dir = base.path().join(format!("ws-{name}"));
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    };
    let mut left_by_agent = records_in(&procs_a);
    for _ in 0..500 {
        if left_by_agent.len() == 2 && workspaces_of("a") == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        left_by_agent = records_in(&procs_a);
    }
    assert_eq!(left_by_agent.len(), 2, "one record per task set up: {left_by_agent:?}");
    assert_eq!(workspaces_of("a"), 2, "the workspaces of both");

    // kill -9 of the agent: its tasks keep running (they lead their own groups).
    agent.kill().unwrap();
    agent.wait().unwrap();
    owned.1.clear();
    for pid in [a_main, a_child, b_main, b_child] {
        assert!(running(pid), "process {pid} outlives the killed agent");
    }

    // Two records a dead agent could have left beside its real one, in a's directory.
    let real: serde_json::Value =
        serde_json::from_slice(&std::fs::read(procs_a.join(&left_by_agent[0])).unwrap()).unwrap();
    // 1. Its pid now names an unrelated process (ours): the start time differs.
    let mut unrelated = Command::new("sleep").arg("300").process_group(0).spawn().unwrap();
    let unrelated_pid = unrelated.id() as i32;
    owned.0.push(unrelated_pid);
    let recycled = serde_json::json!({
        "task": "kc-recycled", "workspace": base.path().join("ws-a/kiln-kc-recycled"),
        "owner": real["owner"], "boot": real["boot"],
        "process": {
            "pid": unrelated_pid, "pgid": unrelated_pid, "start": start_time(unrelated_pid) + 1
        },
    });
    std::fs::write(procs_a.join("kc-recycled.json"), recycled.to_string()).unwrap();
    // 2. Pending: the agent died after writing it, before the pid. Its process is found by
    // its workspace.
    let workspace = base.path().join("ws-a/kiln-kc-pending");
    let mut pending = Command::new("sh")
        .args(["-c", "sleep 300 & echo $!; exec sleep 301"])
        .env("KILN_WORKSPACE", &workspace)
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pending_child: i32 = lines_of(pending.stdout.take().unwrap())().parse().unwrap();
    let pending_main = pending.id() as i32;
    owned.0.push(pending_main);
    let record = serde_json::json!({
        "task": "kc-pending", "workspace": workspace,
        "owner": real["owner"], "boot": real["boot"], "process": null,
    });
    std::fs::write(procs_a.join("kc-pending.json"), record.to_string()).unwrap();
    std::fs::create_dir_all(&workspace).unwrap();

    // The next executor on a's directory.
    let swept = executor(base.path(), "a").sweep().await.expect("sweep");
    let said: Vec<String> = swept.iter().map(ToString::to_string).collect();
    let mut groups: Vec<i32> = swept.iter().map(|s| s.pgid).collect();
    groups.sort();
    let mut expected = vec![a_main, pending_main];
    expected.sort();
    assert_eq!(groups, expected, "{said:?}");
    let line = format!(
        "swept process group {a_main} left by a previous agent (instance web-a of service web)"
    );
    assert!(said.contains(&line), "{said:?}");
    for pid in [a_main, a_child, pending_main, pending_child] {
        assert!(!running(pid), "process {pid} was swept with its group");
    }
    assert!(running(unrelated_pid), "a recycled pid is never signalled");
    assert_eq!(unrelated.try_wait().unwrap(), None);
    for pid in [b_main, b_child] {
        assert!(running(pid), "process {pid} of another records directory survives");
    }
    assert_eq!(records_in(&procs_a), Vec::<String>::new(), "every record of a is gone");
    let workspaces = std::fs::read_dir(base.path().join("ws-a")).unwrap().count();
    assert_eq!(workspaces, 0, "and the workspaces");
    let again = executor(base.path(), "a").sweep().await.expect("sweep again");
    assert_eq!(again, Vec::new(), "nothing is swept twice");

    // b's own next executor sweeps b's.
    let swept = executor(base.path(), "b").sweep().await.expect("sweep b");
    assert_eq!(swept.iter().map(|s| s.pgid).collect::<Vec<_>>(), [b_main]);
    assert!(!running(b_main) && !running(b_child));
    let _ = pending.wait();
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
}

#[tokio::test]
async fn a_running_executors_processes_are_never_swept_and_records_end_with_them() {
    let base = tempfile::tempdir().unwrap();
    let procs = base.path().join("procs-live");
    let live = executor(base.path(), "live");
    let task = sleeper("live");
    let (main, child) = start(&live, &task).await;
    assert_eq!(records_in(&procs).len(), 1, "recorded while it runs");

    // Another executor on the same directory (a second agent sharing a work dir).
    let swept = executor(base.path(), "live").sweep().await.expect("sweep");
    assert_eq!(swept, Vec::new());
    assert!(running(main) && running(child), "a live executor's processes are left alone");

    // The record goes when the process is reaped.
    live.kill(&task.id).await.expect("kill");
    live.wait(&task.id).await.expect("wait");
    live.destroy(&task.id).await.expect("destroy");
    assert_eq!(records_in(&procs), Vec::<String>::new());
    let quick = script_task(&unique_id("quick"), &["true"]);
    live.setup(&quick).await.expect("setup");
    assert_eq!(records_in(&procs).len(), 1, "recorded once set up, before it starts");
    live.start(&quick).await.expect("start").count().await;
    live.wait(&quick.id).await.expect("wait");
    assert_eq!(records_in(&procs).len(), 1, "an exited task's record stays with its workspace");
    live.destroy(&quick.id).await.expect("destroy");
    assert_eq!(records_in(&procs), Vec::<String>::new(), "and goes with it");

    // And when the executor is dropped (which kills its processes).
    let task = sleeper("dropped");
    let (main, _) = start(&live, &task).await;
    assert_eq!(records_in(&procs).len(), 1);
    drop(live);
    assert_eq!(records_in(&procs), Vec::<String>::new());
    let gone = eventually(|| !running(main)).await;
    assert!(gone, "the dropped executor's process is killed");
}

/// Polls `done` for up to 10 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}
