//! [`ProcessExecutor`]: runs tasks as plain host processes (`tokio::process`), for machines
//! with no container engine.
//!
//! Each task gets a workspace directory `ROOT/kiln-TASKID` (root configurable, the system temp
//! dir by default), exported as `KILN_WORKSPACE` and used as the working directory; a relative
//! `workdir` is relative to it (and created by `setup`), an absolute one is used as given.
//! `Entry::Script` runs as `/bin/sh -e -c SCRIPT`; `Entry::Command` runs `command` + `args`.
//! `setup` copies the task's seed into the workspace; `export_workspace` tars it
//! ([`kiln_exec::workspace`]).
//! The environment is the task's env over a minimal inherited one (`PATH`, `HOME`, `LANG`,
//! `TMPDIR`).
//! `exec` (a service instance's command health check) spawns its argv the same way, in the
//! task's process group.
//!
//! Invariants and limits:
//! - Each task is its own process group. `kill`, `destroy` and the main process's exit all
//!   SIGKILL the whole group, so children (`sleep` under `sh`, background jobs) never outlive
//!   the task, as in a container. A process that leaves the group (`setsid`) escapes.
//! - The task's `image` is ignored: scripts run on the host (the caller warns about it).
//! - Services are refused by `check`; limits are accepted but **not enforced**.
//! - `start` does no waiting: it spawns the process and returns, so the process runs well
//!   under a millisecond after `start` is called. With a records directory
//!   ([`ProcessConfig::records`]) the task's pending record is already there (one small file,
//!   renamed into place by `setup`; the pid is added by the reaping task, off `start`'s path).
//! - With a records directory, no workspace the executor makes and no process it starts
//!   goes unrecorded: a task's record is written at `setup`, before its workspace is made,
//!   gets the pid right after the spawn, loses it again once the process is reaped, and is
//!   removed with the workspace by `destroy` (or when the executor is dropped, which kills
//!   its processes and removes their workspaces). A later executor's
//!   [`ProcessExecutor::sweep`] ends the process groups that a killed executor (`kill -9`,
//!   a crash) left running, never a process the pid of a record no longer names, and
//!   removes the workspaces of its tasks, started or not (`sweep.rs`).

mod procfs;
mod records;
mod sweep;

pub use sweep::Swept;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kiln_exec::lines::OutputSplitter;
use kiln_exec::{
    Entry, ExecError, Executor, ExitStatus, LogLine, LogStream, Stream, TaskId, TaskSpec,
};
use records::{Record, Records, Spawned};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, watch};

/// Exit code of a task killed before it started (128 + SIGKILL).
const KILLED: i32 = 128 + 9;

/// Lines buffered between the pipes and the log stream's reader.
const CHANNEL_LINES: usize = 1024;

/// Bytes read from a pipe at once.
const READ_BUFFER: usize = 32 * 1024;

/// How long `destroy` waits for a killed process to be reaped before removing its workspace.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Used when the host has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where and how the process executor runs tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Directory holding the task workspaces (`ROOT/kiln-TASKID`).
    pub root: PathBuf,
    /// Host environment variables passed to every task (under the task's own env).
    pub inherit_env: Vec<String>,
    /// Directory where each started process is recorded (`DIR/TASKID.json`: pid, process
    /// group, start time) until it is reaped, for [`ProcessExecutor::sweep`] in the next
    /// executor on the same directory; an agent uses `WORK_DIR/procs`. `None` (the
    /// default): nothing is recorded.
    pub records: Option<PathBuf>,
    /// The user tasks run as (an agent running as root drops to an unprivileged one, so a
    /// job cannot read the server's data directory or the agent's token); its workspace is
    /// handed to that user before the task starts, and `HOME` is the workspace. `None`: the
    /// executor's own user.
    pub run_as: Option<RunAs>,
}

/// A user and group to run tasks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl RunAs {
    /// The user `name` (or a numeric `uid[:gid]`) from `/etc/passwd`.
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        RunAs::find(name, &passwd)
    }

    /// [`RunAs::lookup`] in the text of a passwd file.
    pub fn find(name: &str, passwd: &str) -> Result<RunAs, String> {
        if let Some((uid, gid)) = name.split_once(':')
            && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
        {
            return Ok(RunAs { uid, gid });
        }
        let by_uid = name.parse::<u32>().ok();
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                continue;
            }
            let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>()) else { continue };
            if f[0] == name || by_uid == Some(uid) {
                return Ok(RunAs { uid, gid });
            }
        }
        match by_uid {
            Some(uid) => Ok(RunAs { uid, gid: uid }),
            None => Err(format!("no user `{name}` in /etc/passwd")),
        }
    }
}

/// Hands `dir` and everything under it (symlinks themselves, not what they name) to `who`.
fn chown_tree(dir: &Path, who: RunAs) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(who.uid), Some(who.gid))?;
    if dir.is_symlink() || !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        chown_tree(&entry?.path(), who)?;
    }
    Ok(())
}

impl Default for ProcessConfig {
    /// Workspaces in the system temp dir; `PATH`, `HOME`, `LANG` and `TMPDIR` inherited;
    /// nothing recorded.
    fn default() -> Self {
        ProcessConfig {
            root: std::env::temp_dir(),
            inherit_env: ["PATH", "HOME", "LANG", "TMPDIR"].map(str::to_string).to_vec(),
            records: None,
            run_as: None,
        }
    }
}

/// Runs tasks as host processes; see the crate docs.
#[derive(Debug)]
pub struct ProcessExecutor {
    root: PathBuf,
    /// Inherited variables, read once at construction.
    base_env: Vec<(OsString, OsString)>,
    tasks: Mutex<HashMap<TaskId, Arc<Mutex<ProcTask>>>>,
    /// Where started processes are recorded, if anywhere.
    records: Option<Arc<Records>>,
    /// Why not, when a records directory was asked for but `/proc` cannot identify
    /// processes (not Linux): tasks still run, unrecorded, and `sweep` says this.
    unrecorded: Option<String>,
    /// The user tasks run as, if not this process's.
    run_as: Option<RunAs>,
    /// `env --default-signal` when this host's `env` has it (GNU coreutils 8.31 and later):
    /// tasks start with every signal's default action, as in a container, even when the
    /// agent was started with some ignored (`nohup` ignores SIGHUP, `cmd &` in a script
    /// SIGINT and SIGQUIT), which a job's shell could otherwise not `trap`.
    default_signals: Option<&'static str>,
}

/// [`ProcessExecutor::default_signals`]: `/usr/bin/env` if it takes `--default-signal`.
fn default_signals() -> Option<&'static str> {
    const ENV: &str = "/usr/bin/env";
    std::process::Command::new(ENV)
        .args(["--default-signal", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(ENV)
}

#[derive(Debug)]
struct ProcTask {
    workspace: PathBuf,
    /// The task's env and working directory, for `exec`.
    env: std::collections::BTreeMap<String, String>,
    workdir: PathBuf,
    /// The task's labels, for its record.
    labels: std::collections::BTreeMap<String, String>,
    phase: Phase,
    /// `kill` was called (a signal that ends it then is Kiln's, not from outside).
    killed: bool,
    status: Arc<watch::Sender<Option<Result<ExitStatus, ExecError>>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Set up, not started.
    Ready,
    /// Killed before it started: it never runs.
    KilledEarly,
    /// Spawned; the process group id is the main process's pid.
    Running(Pid),
    /// The main process exited.
    Exited,
}

impl Default for ProcessExecutor {
    fn default() -> Self {
        ProcessExecutor::new(ProcessConfig::default())
    }
}

impl ProcessExecutor {
    /// An executor with `config`.
    pub fn new(config: ProcessConfig) -> ProcessExecutor {
        let mut base_env: Vec<(OsString, OsString)> = config
            .inherit_env
            .iter()
            .filter_map(|key| Some((OsString::from(key), std::env::var_os(key)?)))
            .collect();
        if !base_env.iter().any(|(key, _)| key == "PATH") {
            base_env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let (records, unrecorded) = match config.records.map(|dir| (Records::new(dir.clone()), dir))
        {
            None => (None, None),
            Some((Ok(records), _)) => (Some(Arc::new(records)), None),
            Some((Err(why), dir)) => {
                let why = format!("process: cannot record processes in {}: {why}", dir.display());
                tracing::warn!("{why}");
                (None, Some(why))
            }
        };
        ProcessExecutor {
            root: config.root,
            base_env,
            tasks: Mutex::new(HashMap::new()),
            records,
            unrecorded,
            run_as: config.run_as,
            default_signals: default_signals(),
        }
    }

    /// Ends what a previous executor on the same records directory left running when it was
    /// killed without stopping its tasks (`kill -9` of the agent, a crash): for each record
    /// whose owner process is gone and whose pid still names the recorded process (same
    /// start time, same boot), the whole process group gets SIGTERM, two seconds, then
    /// SIGKILL; the record and the task's workspace are removed. Records of executors that
    /// still run (another agent sharing the directory) are left alone. Call it once, before
    /// the first task starts (the agent's start); it answers what it ended. `Ok` and empty
    /// without a records directory.
    pub async fn sweep(&self) -> Result<Vec<Swept>, ExecError> {
        if let Some(why) = &self.unrecorded {
            return Err(ExecError::Engine(why.clone()));
        }
        let Some(records) = self.records.clone() else { return Ok(Vec::new()) };
        tokio::task::spawn_blocking(move || sweep::sweep(&records, remove_workspace))
            .await
            .unwrap_or_else(|e| Err(ExecError::Engine(format!("process: sweeping: {e}"))))
    }

    /// Forgets the record of task `id` (its process is gone).
    fn unrecord(records: Option<&Records>, id: &TaskId) {
        if let Some(records) = records
            && let Err(e) = records.remove(id.as_str())
        {
            tracing::warn!("process: removing the record of task {id}: {e}");
        }
    }

    /// The workspace directory of task `id` (whether or not it exists). Errs for an id that
    /// is not a safe directory name (possible only through deserialization).
    pub fn workspace_dir(&self, id: &TaskId) -> Result<PathBuf, ExecError> {
        let name = id.as_str();
        let safe = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        match safe {
            true => Ok(self.root.join(format!("kiln-{name}"))),
            false => Err(ExecError::Engine(format!(
                "process: task id {name:?} is not a safe directory name"
            ))),
        }
    }

    /// Makes the workspace of `task` at `workspace` (and its relative `workdir`), with the
    /// task's seed copied in.
    async fn make_workspace(&self, task: &TaskSpec, workspace: &Path) -> Result<(), ExecError> {
        let mut dirs = vec![workspace.to_path_buf()];
        if let Some(dir) = task.workdir.as_deref().filter(|d| Path::new(d).is_relative()) {
            dirs.push(workspace.join(dir));
        }
        for dir in dirs {
            tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                ExecError::Engine(format!("process: creating {}: {e}", dir.display()))
            })?;
        }
        if let Some(seed) = task.seed.clone() {
            let dest = workspace.to_path_buf();
            tokio::task::spawn_blocking(move || {
                kiln_exec::workspace::copy_dir_contents(&seed, &dest)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(|e| ExecError::Engine(format!("process: copying the seed: {e}")))?;
        }
        Ok(())
    }

    /// What still exists for task `id`: its workspace directory, its in-memory state and its
    /// record. Empty after `destroy`; the leak hook of the conformance suite.
    pub fn leftovers(&self, id: &TaskId) -> Vec<String> {
        let mut left = Vec::new();
        if self.lock_tasks().contains_key(id) {
            left.push(format!("state of task {id}"));
        }
        if let Some(record) = self.records.as_deref().map(|r| r.path(id.as_str()))
            && record.exists()
        {
            left.push(record.display().to_string());
        }
        if let Ok(dir) = self.workspace_dir(id)
            && dir.symlink_metadata().is_ok()
        {
            left.push(dir.display().to_string());
        }
        left
    }

    fn lock_tasks(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<Mutex<ProcTask>>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn task(&self, id: &TaskId) -> Result<Arc<Mutex<ProcTask>>, ExecError> {
        self.lock_tasks().get(id).cloned().ok_or_else(|| ExecError::UnknownTask(id.clone()))
    }

    /// The working directory of a task whose workspace is `workspace`.
    fn workdir(task: &TaskSpec, workspace: &Path) -> PathBuf {
        match task.workdir.as_deref() {
            None | Some("") => workspace.to_path_buf(),
            Some(dir) => workspace.join(dir),
        }
    }

    /// A command running `program`, through `env --default-signal` where the host has it
    /// (for the job's shell; a command entry is spawned as given, so that a missing program
    /// stays a spawn error).
    fn program(&self, program: &str) -> Command {
        match self.default_signals {
            Some(env) => {
                let mut cmd = Command::new(env);
                cmd.arg("--default-signal").arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn command(&self, task: &TaskSpec, workspace: &Path) -> Result<Command, ExecError> {
        let mut cmd = match &task.entry {
            Entry::Script(script) => {
                let mut cmd = self.program("/bin/sh");
                cmd.arg("-e").arg("-c").arg(script);
                cmd
            }
            Entry::Command { command: Some(command), args } => {
                let Some((program, first_args)) = command.split_first() else {
                    return Err(empty_command());
                };
                let mut cmd = Command::new(program);
                cmd.args(first_args).args(args);
                cmd
            }
            Entry::Command { command: None, .. } => return Err(needs_entrypoint()),
        };
        let dir = Self::workdir(task, workspace);
        cmd.env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .envs(&task.env)
            .env("KILN_WORKSPACE", workspace)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if task.builder && !task.env.contains_key("KILN_BUILDAH_ROOT") {
            // buildah's storage stays under the executor's own directory.
            cmd.env("KILN_BUILDAH_ROOT", self.root.join("buildah"));
        }
        // A build (buildah in chroot isolation) needs the agent's own user: it is the one
        // task kind not handed to `run_as` (docs/pool.md).
        if let Some(who) = self.run_as.filter(|_| !task.builder) {
            cmd.uid(who.uid).gid(who.gid).env("HOME", workspace);
        }
        Ok(cmd)
    }
}

impl Drop for ProcessExecutor {
    /// Kills the process groups of tasks still running and removes the workspaces of the
    /// tasks not destroyed, so none outlives the executor; a task whose group or workspace
    /// would not go keeps its record, for the next executor's sweep.
    fn drop(&mut self) {
        let records = self.records.clone();
        for (id, task) in self.lock_tasks().iter() {
            let task = task.lock().unwrap_or_else(PoisonError::into_inner);
            let ended = match task.phase {
                Phase::Running(pgid) => kill_group(pgid).is_ok(),
                _ => true,
            };
            if ended && remove_workspace(&task.workspace).is_ok() {
                Self::unrecord(records.as_deref(), id);
            }
        }
    }
}

fn unsupported(what: String) -> ExecError {
    ExecError::Unsupported { executor: "process", what }
}

fn needs_entrypoint() -> ExecError {
    unsupported(
        "needs the image's entrypoint, which the process executor can not use; set command:"
            .to_string(),
    )
}

fn empty_command() -> ExecError {
    unsupported("an empty command: nothing to run".to_string())
}

/// The signal of a name of [`kiln_exec::SIGNALS`] (without `SIG`).
fn signal_of(name: &str) -> Option<Signal> {
    Some(match name.strip_prefix("SIG").unwrap_or(name) {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "WINCH" => Signal::WINCH,
        _ => return None,
    })
}

/// SIGKILLs process group `pgid`; a group that is already gone is fine.
fn kill_group(pgid: Pid) -> Result<(), ExecError> {
    match kill_process_group(pgid, Signal::KILL) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        Err(e) => Err(ExecError::Engine(format!(
            "process: killing process group {}: {e}",
            pgid.as_raw_pid()
        ))),
    }
}

fn lock(task: &Mutex<ProcTask>) -> MutexGuard<'_, ProcTask> {
    task.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProcessExecutor {
    /// Whether `name` is an executable file on the tasks' `PATH`.
    fn has_program(&self, name: &str) -> bool {
        let path = self.base_env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let path = path.or_else(|| std::env::var_os("PATH")).unwrap_or_default();
        std::env::split_paths(&path).any(|d| d.join(name).is_file())
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    fn check(&self, task: &TaskSpec) -> Result<(), ExecError> {
        if !task.services.is_empty() {
            let names: Vec<&str> = task.services.iter().map(|s| s.name.as_str()).collect();
            return Err(unsupported(format!(
                "services ({}) need containers, which the process executor does not run",
                names.join(", ")
            )));
        }
        if let Some(bind) = task.binds.first() {
            return Err(unsupported(format!(
                "a directory mounted at {} needs a container; processes read {} itself",
                bind.container,
                bind.host.display()
            )));
        }
        if task.builder && !self.has_program("buildah") {
            return Err(unsupported(
                "an image build (build:) needs buildah on this host, and it is not installed \
                 (Debian: apt-get install buildah); or run it on an agent with the Docker \
                 executor"
                    .to_owned(),
            ));
        }
        match &task.entry {
            Entry::Command { command: None, .. } => Err(needs_entrypoint()),
            Entry::Command { command: Some(command), .. } if command.is_empty() => {
                Err(empty_command())
            }
            _ => Ok(()),
        }
    }

    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        let workspace = self.workspace_dir(&task.id)?;
        if self.lock_tasks().contains_key(&task.id) {
            return Err(ExecError::Engine(format!("process: task {} is already set up", task.id)));
        }
        // Recorded before it exists, so that a `kill -9` from here on leaves a record (and
        // the next executor's sweep removes the workspace) rather than an unknown directory.
        if let Some(records) = self.records.as_deref() {
            let record = records.pending(task.id.as_str(), &workspace, &task.labels);
            records.write(&record).map_err(|e| {
                ExecError::Engine(format!(
                    "process: recording task {} in {}: {e}",
                    task.id,
                    records.dir().display()
                ))
            })?;
        }
        let made = self.make_workspace(task, &workspace).await;
        if made.is_err() {
            let _ = remove_workspace(&workspace);
            Self::unrecord(self.records.as_deref(), &task.id);
        }
        made?;
        let (status, _) = watch::channel(None);
        let entry = Arc::new(Mutex::new(ProcTask {
            env: task.env.clone(),
            workdir: Self::workdir(task, &workspace),
            labels: task.labels.clone(),
            workspace,
            phase: Phase::Ready,
            killed: false,
            status: Arc::new(status),
        }));
        self.lock_tasks().entry(task.id.clone()).or_insert(entry);
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        let handle = self.task(&task.id)?;
        if let Some(who) = self.run_as {
            // The seed came in as this process's user: the task's user gets it all.
            let workspace = lock(&handle).workspace.clone();
            tokio::task::spawn_blocking(move || chown_tree(&workspace, who))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)))
                .map_err(|e| {
                    ExecError::Engine(format!(
                        "process: handing the workspace to uid {}: {e}",
                        who.uid
                    ))
                })?;
        }
        let mut state = lock(&handle);
        match state.phase {
            Phase::Ready => {}
            Phase::KilledEarly => return Ok(futures::stream::empty().boxed()),
            Phase::Running(_) | Phase::Exited => {
                return Err(ExecError::Engine(format!(
                    "process: task {} was already started",
                    task.id
                )));
            }
        }
        let mut cmd = self.command(task, &state.workspace)?;
        let records = self.records.clone();
        // Its pending record was written at setup: a `kill -9` right after the spawn leaves a
        // record (found by its workspace) rather than an unknown process.
        let record = records
            .as_deref()
            .map(|r| r.pending(task.id.as_str(), &state.workspace, &state.labels));
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                // The pending record stays with the workspace, until `destroy`.
                let program = cmd.as_std().get_program().to_string_lossy().into_owned();
                let dir = cmd.as_std().get_current_dir().map(|d| d.display().to_string());
                let dir = dir.unwrap_or_default();
                return Err(ExecError::Engine(format!(
                    "process: cannot run {program} in {dir}: {e}"
                )));
            }
        };
        let pgid = child
            .id()
            .and_then(|pid| Pid::from_raw(i32::try_from(pid).ok()?))
            .filter(|pid| !pid.is_init());
        let (Some(pgid), Some(stdout), Some(stderr)) =
            (pgid, child.stdout.take(), child.stderr.take())
        else {
            // Not reachable with piped output and a fresh child; do not leave it running.
            let _ = child.start_kill();
            return Err(ExecError::Engine(
                "process: spawned process has no pid or pipes".to_string(),
            ));
        };
        state.phase = Phase::Running(pgid);
        drop(state);

        let (tx, mut rx) = mpsc::channel(CHANNEL_LINES);
        tokio::spawn(pump(stdout, stderr, tx));
        let record = records.zip(record);
        tokio::spawn(reap(child, pgid, handle, record));
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let handle = self.task(id)?;
        let mut status = {
            let state = lock(&handle);
            if state.phase == Phase::Ready {
                return Err(ExecError::Engine(format!("process: task {id} was not started")));
            }
            state.status.subscribe()
        };
        let done = status.wait_for(Option::is_some).await;
        match done.ok().and_then(|s| s.clone()) {
            Some(result) => result,
            None => Err(ExecError::Engine(format!("process: task {id} vanished"))),
        }
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        let handle = self.task(id)?;
        let mut state = lock(&handle);
        state.killed = true;
        match state.phase {
            Phase::Ready => {
                state.phase = Phase::KilledEarly;
                state.status.send_replace(Some(Ok(ExitStatus { code: KILLED, killed: None })));
                Ok(())
            }
            Phase::Running(pgid) => kill_group(pgid),
            Phase::KilledEarly | Phase::Exited => Ok(()),
        }
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        let handle = self.task(id)?;
        let workspace = lock(&handle).workspace.clone();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || kiln_exec::workspace::write_tar(&workspace, &dest))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(|e| ExecError::Engine(format!("process: exporting the workspace: {e}")))
    }

    /// Spawns `argv` in the task's process group (so `kill` and `destroy` end it too), in
    /// its working directory with its env; killed when the future is dropped.
    async fn exec(&self, id: &TaskId, argv: &[String]) -> Result<ExitStatus, ExecError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(empty_command());
        };
        let mut cmd = Command::new(program);
        {
            let handle = self.task(id)?;
            let state = lock(&handle);
            let Phase::Running(pgid) = state.phase else {
                return Err(ExecError::Engine(format!("process: task {id} is not running")));
            };
            cmd.args(args)
                .env_clear()
                .envs(self.base_env.iter().map(|(k, v)| (k, v)))
                .envs(&state.env)
                .env("KILN_WORKSPACE", &state.workspace)
                .current_dir(&state.workdir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(pgid.as_raw_pid())
                .kill_on_drop(true);
            if let Some(who) = self.run_as {
                cmd.uid(who.uid).gid(who.gid).env("HOME", &state.workspace);
            }
        }
        let status = cmd
            .status()
            .await
            .map_err(|e| ExecError::Engine(format!("process: cannot run {program}: {e}")))?;
        Ok(ExitStatus {
            code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            killed: None,
        })
    }

    /// Sends the signal to the task's whole process group (`kill(-pgid, sig)`), as a
    /// terminal sends SIGHUP: the shell of a script and what it runs alike.
    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), ExecError> {
        let sig = signal_of(signal).ok_or_else(|| kiln_exec::unknown_signal("process", signal))?;
        let handle = self.task(id)?;
        let mut state = lock(&handle);
        state.killed = true;
        match state.phase {
            Phase::Running(pgid) => match kill_process_group(pgid, sig) {
                Ok(()) => Ok(()),
                Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
                Err(e) => Err(ExecError::Engine(format!(
                    "process: signalling process group {} with SIG{signal}: {e}",
                    pgid.as_raw_pid()
                ))),
            },
            Phase::Ready => {
                Err(ExecError::Engine(format!("process: task {id} is not running yet")))
            }
            Phase::KilledEarly | Phase::Exited => Ok(()),
        }
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        let running = self.lock_tasks().get(id).and_then(|task| {
            let task = lock(task);
            match task.phase {
                Phase::Running(pgid) => Some((pgid, task.status.subscribe())),
                _ => None,
            }
        });
        let mut killed = Ok(());
        if let Some((pgid, mut status)) = running {
            killed = kill_group(pgid);
            // Let the process die before its directory goes; SIGKILL makes this quick.
            let _ = tokio::time::timeout(REAP_GRACE, status.wait_for(Option::is_some)).await;
        }
        let Ok(dir) = self.workspace_dir(id) else {
            // Such an id could never be set up: nothing exists for it.
            return Ok(());
        };
        let removed = tokio::task::spawn_blocking(move || remove_workspace(&dir))
            .await
            .unwrap_or_else(|e| Err(ExecError::Engine(format!("process: removing: {e}"))));
        killed?;
        removed?;
        Self::unrecord(self.records.as_deref(), id);
        // Forget the task only when everything is gone, so a failed destroy can be retried.
        self.lock_tasks().remove(id);
        Ok(())
    }
}

/// Removes a workspace; on failure makes every directory in it writable (read-only trees
/// like Go's module cache) and tries once more. A missing directory is fine.
fn remove_workspace(dir: &Path) -> Result<(), ExecError> {
    let remove = || match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    remove()
        .or_else(|_| {
            make_writable(dir);
            remove()
        })
        .map_err(|e| ExecError::Engine(format!("process: removing {}: {e}", dir.display())))
}

/// Gives the owner full access to `dir` and every directory below it (symlinks not followed).
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let is_dir = dir.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !is_dir {
            continue;
        }
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
}

/// Completes a pending record with the spawned main process (it leads its own group). If
/// that fails the pending record stays, which still finds the process by its workspace.
fn finish_record(records: &Records, record: &mut Record, pid: Pid) {
    let raw = pid.as_raw_pid();
    let Some(stat) = procfs::stat(raw) else {
        tracing::warn!("process: /proc does not show the start time of pid {raw}");
        return;
    };
    record.process = Some(Spawned { pid: raw, pgid: raw, start: stat.start });
    if let Err(e) = records.write(record) {
        tracing::warn!("process: recording pid {raw} of task {}: {e}", record.task);
    }
}

/// Completes the process's record (off `start`'s path: until then the pending record finds
/// it), waits for the main process, kills what is left of its group, forgets its record,
/// and publishes the status.
async fn reap(
    mut child: Child,
    pgid: Pid,
    handle: Arc<Mutex<ProcTask>>,
    mut record: Option<(Arc<Records>, Record)>,
) {
    if let Some((records, record)) = &mut record {
        finish_record(records, record, pgid);
    }
    let result = match child.wait().await {
        Ok(status) => Ok(ExitStatus {
            code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            // Kiln's own kill marks the task first; any other signal came from outside.
            killed: status
                .signal()
                .filter(|_| !lock(&handle).killed)
                .map(kiln_exec::Killed::Signal),
        }),
        Err(e) => Err(ExecError::Engine(format!("process: waiting: {e}"))),
    };
    // Like a container: when the main process ends, so does everything it started.
    match kill_group(pgid) {
        Err(e) => tracing::warn!("{e}"),
        Ok(()) => {
            // No process left to end; the record stays for the workspace, until `destroy`.
            if let Some((records, record)) = &mut record {
                record.process = None;
                if let Err(e) = records.write(record) {
                    tracing::warn!("process: recording the end of task {}: {e}", record.task);
                }
            }
        }
    }
    let mut state = lock(&handle);
    state.phase = Phase::Exited;
    state.status.send_replace(Some(result));
}

/// Reads both pipes into lines until both close. When the log stream is dropped, keeps
/// draining so the process never blocks on a full pipe.
async fn pump(
    mut stdout: ChildStdout,
    mut stderr: ChildStderr,
    tx: mpsc::Sender<Result<LogLine, ExecError>>,
) {
    let mut tx = Some(tx);
    let mut splitter = OutputSplitter::new();
    let mut out_buf = vec![0u8; READ_BUFFER];
    let mut err_buf = vec![0u8; READ_BUFFER];
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let (stream, read) = tokio::select! {
            read = stdout.read(&mut out_buf), if out_open => (Stream::Stdout, read),
            read = stderr.read(&mut err_buf), if err_open => (Stream::Stderr, read),
        };
        let buf = match stream {
            Stream::Stdout => &out_buf,
            Stream::Stderr => &err_buf,
        };
        let mut items: Vec<Result<LogLine, ExecError>> = Vec::new();
        match read {
            Ok(n) if n > 0 => items.extend(splitter.push(stream, &buf[..n]).into_iter().map(Ok)),
            end => {
                match stream {
                    Stream::Stdout => out_open = false,
                    Stream::Stderr => err_open = false,
                }
                items.extend(splitter.finish_stream(stream).map(Ok));
                if let Err(e) = end {
                    items.push(Err(ExecError::Engine(format!("process: reading {stream:?}: {e}"))));
                }
            }
        }
        for item in items {
            if let Some(sender) = &tx
                && sender.send(item).await.is_err()
            {
                tx = None;
            }
        }
    }
}
