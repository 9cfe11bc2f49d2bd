//! [`FakeExecutor`]: an in-memory executor that runs no processes. It interprets a tiny subset
//! of shell so that the conformance suite and the runtime's tests run anywhere, fast.
//!
//! Understood, one command per script line (blank lines and `#` comments are skipped):
//! `echo WORDS` (with `'…'`, `"…"`, `\` quoting and `$VAR` / `${VAR}` from the task env),
//! `echo WORDS >&2`, `sleep SECONDS` (real, cancelled by `kill`), `exit [N]`, `pwd`, `true`,
//! `:`, `false`, `sh [-e] -c SCRIPT`, `cat FILE…`, `mkdir [-p] DIR…`, `trap 'ACTION' SIG…`,
//! and output redirection to a file with `> FILE` or `>> FILE` (also `>FILE`). Any other
//! command prints `fake: unknown command: NAME` on stderr and exits 127. Scripts run as with
//! `sh -e`: the first failing command ends them with its status. A killed task exits 137.
//!
//! Signals ([`Executor::signal`]) reach the script between commands and during `sleep`: a
//! trapped one interrupts `sleep` and runs its action (commands separated by `;`; an `exit`
//! there ends the script), then the script goes on; one trapped with an empty action is
//! ignored; any other ends the script with 128 + its number, as a shell killed by it.
//!
//! Each task has a real workspace: a temporary directory standing for
//! [`WORKSPACE_PATH`], created by `setup` (with the task's seed copied in and a relative
//! `workdir` created) and removed by `destroy`. File paths in scripts resolve against the
//! working directory as in a container; a path outside the workspace is an error, since the
//! workspace is all the file system the fake has.
//!
//! `exec` interprets its argv as `Entry::Command` does, beside a started task.
//!
//! Invariant: every call is recorded ([`FakeExecutor::calls`]), and a task "exists" from its
//! `setup` (even a failed one, as if it had created a network before the pull failed) until
//! its `destroy`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::lines::OutputSplitter;
use crate::{
    Entry, ExecError, Executor, ExitStatus, Limits, LogLine, LogStream, Stream, TaskId, TaskSpec,
    WORKSPACE_PATH,
};

/// Exit code of a killed task (128 + SIGKILL).
const KILLED: i32 = 137;

/// Lines buffered between the script and the log stream's reader.
const CHANNEL_LINES: usize = 256;

/// The calls made to a [`FakeExecutor`], in order, whether they succeeded or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeCalls {
    /// Ids passed to `setup`.
    pub set_up: Vec<TaskId>,
    /// Ids passed to `start`.
    pub started: Vec<TaskId>,
    /// Ids passed to `kill`.
    pub killed: Vec<TaskId>,
    /// Ids passed to `destroy`.
    pub destroyed: Vec<TaskId>,
    /// Ids passed to `export_workspace`.
    pub exported: Vec<TaskId>,
    /// Ids and signal names passed to `signal`.
    pub signalled: Vec<(TaskId, String)>,
}

/// An in-memory [`Executor`] for tests; see the module docs for the shell it understands.
#[derive(Debug, Default)]
pub struct FakeExecutor {
    missing_images: BTreeSet<String>,
    no_services: bool,
    no_limits: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<TaskId, FakeTask>,
    calls: FakeCalls,
}

#[derive(Debug)]
struct FakeTask {
    /// `setup` succeeded.
    ready: bool,
    started: bool,
    /// The workspace; removed when the task is dropped (on destroy).
    workspace: tempfile::TempDir,
    /// The task's env and workdir, for `exec`.
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    /// `true` once killed; dropping the sender (on destroy) also counts as a kill.
    kill: watch::Sender<bool>,
    /// Signals for the script (names without `SIG`); the receiver is the started shell's.
    signals: mpsc::UnboundedSender<String>,
    signals_rx: Option<mpsc::UnboundedReceiver<String>>,
    status: Arc<watch::Sender<Option<ExitStatus>>>,
}

impl FakeExecutor {
    /// A fake that supports everything and has every image.
    pub fn new() -> FakeExecutor {
        FakeExecutor::default()
    }

    /// Makes `setup` fail with [`ExecError::ImageNotFound`] for tasks using `image` (as main
    /// image or as a service's image).
    pub fn with_missing_image(mut self, image: impl Into<String>) -> FakeExecutor {
        self.missing_images.insert(image.into());
        self
    }

    /// Makes `check` reject tasks with services, like an executor without sidecars.
    pub fn without_services(mut self) -> FakeExecutor {
        self.no_services = true;
        self
    }

    /// Makes `check` reject tasks with limits, like an executor that cannot enforce them.
    pub fn without_limits(mut self) -> FakeExecutor {
        self.no_limits = true;
        self
    }

    /// The calls made so far.
    pub fn calls(&self) -> FakeCalls {
        self.lock().calls.clone()
    }

    /// Tasks set up (successfully or not) and not destroyed yet, sorted.
    pub fn existing(&self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self.lock().tasks.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// What still exists for `id` (empty once destroyed): the hook for the conformance suite.
    pub fn leftovers(&self, id: &TaskId) -> Vec<String> {
        match self.lock().tasks.contains_key(id) {
            true => vec![format!("fake task {id}")],
            false => Vec::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unsupported(what: String) -> ExecError {
        ExecError::Unsupported { executor: "fake", what }
    }
}

#[async_trait]
impl Executor for FakeExecutor {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn posix_shell(&self) -> bool {
        false
    }

    fn check(&self, task: &TaskSpec) -> Result<(), ExecError> {
        if self.no_services && !task.services.is_empty() {
            let names: Vec<&str> = task.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Self::unsupported(format!(
                "services ({}) are turned off on this fake",
                names.join(", ")
            )));
        }
        if self.no_limits && task.limits != Limits::default() {
            return Err(Self::unsupported("limits are turned off on this fake".to_string()));
        }
        Ok(())
    }

    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        let engine = |what: &str, e: std::io::Error| {
            ExecError::Engine(format!("fake: {what} for task {}: {e}", task.id))
        };
        let workspace = tempfile::Builder::new()
            .prefix(&format!("kiln-fake-{}-", task.id))
            .tempdir()
            .map_err(|e| engine("creating the workspace", e))?;
        let dir = workspace.path().to_path_buf();
        {
            let mut state = self.lock();
            state.calls.set_up.push(task.id.clone());
            if state.tasks.contains_key(&task.id) {
                return Err(ExecError::Engine(format!("fake: task {} is already set up", task.id)));
            }
            let (status, _) = watch::channel(None);
            let (kill, _) = watch::channel(false);
            let (signals, signals_rx) = mpsc::unbounded_channel();
            state.tasks.insert(
                task.id.clone(),
                FakeTask {
                    ready: false,
                    started: false,
                    workspace,
                    env: task.env.clone(),
                    workdir: task.workdir.clone(),
                    kill,
                    signals,
                    signals_rx: Some(signals_rx),
                    status: Arc::new(status),
                },
            );
            let images = task.image.iter().chain(task.services.iter().map(|s| &s.image));
            for image in images {
                if self.missing_images.contains(image) {
                    return Err(ExecError::ImageNotFound {
                        image: image.clone(),
                        detail: "fake: no such image".to_string(),
                    });
                }
            }
        }
        let seed = task.seed.clone();
        // Relative and staying inside: anything else is not the fake's to create.
        let workdir = task.workdir.clone().filter(|d| {
            Path::new(d).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        });
        let prepared = tokio::task::spawn_blocking(move || {
            if let Some(seed) = seed {
                crate::workspace::copy_dir_contents(&seed, &dir)
                    .map_err(|e| ("copying the seed", e))?;
            }
            if let Some(workdir) = workdir {
                std::fs::create_dir_all(dir.join(workdir))
                    .map_err(|e| ("creating the workdir", e))?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(("preparing the workspace", std::io::Error::other(e))));
        prepared.map_err(|(what, e)| engine(what, e))?;
        let mut state = self.lock();
        let entry =
            state.tasks.get_mut(&task.id).ok_or_else(|| ExecError::UnknownTask(task.id.clone()))?;
        entry.ready = true;
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        let (kill, status, workspace, signals) = {
            let mut state = self.lock();
            state.calls.started.push(task.id.clone());
            let entry = state
                .tasks
                .get_mut(&task.id)
                .ok_or_else(|| ExecError::UnknownTask(task.id.clone()))?;
            if !entry.ready {
                return Err(ExecError::Engine(format!(
                    "fake: setup of task {} did not complete",
                    task.id
                )));
            }
            if entry.started {
                return Err(ExecError::Engine(format!(
                    "fake: task {} was already started",
                    task.id
                )));
            }
            entry.started = true;
            let signals = entry.signals_rx.take().unwrap_or_else(|| mpsc::unbounded_channel().1);
            (
                entry.kill.subscribe(),
                entry.status.clone(),
                entry.workspace.path().to_path_buf(),
                signals,
            )
        };
        let entry = task.entry.clone();
        let (tx, mut rx) = mpsc::channel(CHANNEL_LINES);
        let mut shell = Shell {
            env: task.env.clone(),
            workdir: task.workdir.clone(),
            workspace,
            default_out: Out::Stream(Stream::Stdout),
            out: OutputSplitter::new(),
            tx,
            kill,
            signals,
            traps: BTreeMap::new(),
        };
        tokio::spawn(async move {
            let code = match entry {
                Entry::Script(script) => shell.run(&script, true).await,
                Entry::Command { command, args } => {
                    let argv: Vec<String> = command.into_iter().flatten().chain(args).collect();
                    shell.run_argv(argv).await
                }
            };
            shell.flush().await;
            drop(shell);
            status.send_replace(Some(ExitStatus { code, killed: None }));
        });
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let mut status = {
            let state = self.lock();
            let entry = state.tasks.get(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))?;
            if !entry.started {
                return Err(ExecError::Engine(format!("fake: task {id} was not started")));
            }
            entry.status.subscribe()
        };
        let done = status.wait_for(Option::is_some).await;
        match done.ok().and_then(|s| *s) {
            Some(exit) => Ok(exit),
            None => Err(ExecError::Engine(format!("fake: task {id} vanished"))),
        }
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        let mut state = self.lock();
        state.calls.killed.push(id.clone());
        let entry = state.tasks.get(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))?;
        entry.kill.send_replace(true);
        Ok(())
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        let dir = {
            let mut state = self.lock();
            state.calls.exported.push(id.clone());
            let entry = state.tasks.get(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))?;
            entry.workspace.path().to_path_buf()
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || crate::workspace::write_tar(&dir, &dest))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| ExecError::Engine(format!("fake: exporting the workspace of {id}: {e}")))
    }

    /// Interprets `argv` as `Entry::Command` does, with the task's env and workdir; its
    /// output is dropped.
    async fn exec(&self, id: &TaskId, argv: &[String]) -> Result<ExitStatus, ExecError> {
        let mut shell = {
            let state = self.lock();
            let entry = state.tasks.get(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))?;
            if !entry.started || entry.status.borrow().is_some() {
                return Err(ExecError::Engine(format!("fake: task {id} is not running")));
            }
            Shell {
                env: entry.env.clone(),
                workdir: entry.workdir.clone(),
                workspace: entry.workspace.path().to_path_buf(),
                default_out: Out::Stream(Stream::Stdout),
                out: OutputSplitter::new(),
                tx: mpsc::channel(1).0,
                kill: entry.kill.subscribe(),
                signals: mpsc::unbounded_channel().1,
                traps: BTreeMap::new(),
            }
        };
        Ok(ExitStatus { code: shell.run_argv(argv.to_vec()).await, killed: None })
    }

    /// Hands the signal to the running script (see the module docs for what it does).
    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), ExecError> {
        let name = signal.strip_prefix("SIG").unwrap_or(signal).to_string();
        let mut state = self.lock();
        state.calls.signalled.push((id.clone(), name.clone()));
        if crate::signal_number(&name).is_none() {
            return Err(crate::unknown_signal("fake", signal));
        }
        let entry = state.tasks.get(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))?;
        if !entry.started {
            return Err(ExecError::Engine(format!("fake: task {id} is not running yet")));
        }
        // A script that ended has dropped its receiver: nothing to tell, as with a process.
        let _ = entry.signals.send(name);
        Ok(())
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        let mut state = self.lock();
        state.calls.destroyed.push(id.clone());
        if let Some(entry) = state.tasks.remove(id) {
            entry.kill.send_replace(true);
        }
        Ok(())
    }
}

/// What a command did.
enum Flow {
    /// Finished with this status.
    Status(i32),
    /// `exit N` or a kill: the script ends with this code.
    Exit(i32),
}

/// Where a command's output goes.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    /// A stream of the log.
    Stream(Stream),
    /// Appended to this file on the host (created or truncated by the redirection).
    File(PathBuf),
}

/// The interpreter of one task.
struct Shell {
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    /// The host directory standing for [`WORKSPACE_PATH`].
    workspace: PathBuf,
    /// Output of commands without a redirection (changed by `sh -c … > FILE`).
    default_out: Out,
    out: OutputSplitter,
    tx: mpsc::Sender<Result<LogLine, ExecError>>,
    kill: watch::Receiver<bool>,
    /// Signals sent to the task, by name.
    signals: mpsc::UnboundedReceiver<String>,
    /// `trap` actions by signal name (an empty action ignores the signal).
    traps: BTreeMap<String, String>,
}

impl Shell {
    fn killed(&self) -> bool {
        self.kill.has_changed().is_err() || *self.kill.borrow()
    }

    /// Resolves when the task is killed or destroyed.
    async fn kill_signal(kill: &mut watch::Receiver<bool>) {
        // An error means the sender is gone: the task was destroyed, which also kills it.
        let _ = kill.wait_for(|&killed| killed).await;
    }

    /// Runs `script`; with `errexit` (as `sh -e`) the first failing command ends it.
    fn run<'a>(
        &'a mut self,
        script: &'a str,
        errexit: bool,
    ) -> Pin<Box<dyn Future<Output = i32> + Send + 'a>> {
        Box::pin(async move {
            let mut last = 0;
            for line in script.lines() {
                if self.killed() {
                    return KILLED;
                }
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut flow = self.command(line).await;
                if self.killed() {
                    return KILLED;
                }
                while let Ok(signal) = self.signals.try_recv() {
                    if let Some(exit) = self.deliver(&signal).await {
                        flow = exit;
                        break;
                    }
                }
                match flow {
                    Flow::Exit(code) => return code,
                    Flow::Status(code) if code != 0 && errexit => return code,
                    Flow::Status(code) => last = code,
                }
            }
            last
        })
    }

    /// Runs one command given as words, as `Entry::Command` does (no expansion).
    async fn run_argv(&mut self, argv: Vec<String>) -> i32 {
        if self.killed() {
            return KILLED;
        }
        let flow = self.exec(argv, Out::Stream(Stream::Stdout)).await;
        if self.killed() {
            return KILLED;
        }
        match flow {
            Flow::Exit(code) | Flow::Status(code) => code,
        }
    }

    /// Runs one script line.
    async fn command(&mut self, line: &str) -> Flow {
        let words = match split_words(line, &self.env) {
            Ok(words) => words,
            Err(e) => {
                self.print(Stream::Stderr, &format!("fake: {e}")).await;
                return Flow::Status(2);
            }
        };
        let mut out = self.default_out.clone();
        let mut args = Vec::new();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            if !word.plain {
                args.push(word.text);
                continue;
            }
            let target = match word.text.as_str() {
                ">&2" | "1>&2" => {
                    out = Out::Stream(Stream::Stderr);
                    continue;
                }
                ">" | ">>" => match words.next() {
                    Some(target) => (target.text, word.text == ">>"),
                    None => {
                        self.print(
                            Stream::Stderr,
                            "fake: syntax error: redirection without a file",
                        )
                        .await;
                        return Flow::Status(2);
                    }
                },
                text => match text.strip_prefix(">>").or_else(|| text.strip_prefix('>')) {
                    Some(target) => (target.to_string(), text.starts_with(">>")),
                    None => {
                        args.push(word.text);
                        continue;
                    }
                },
            };
            match self.open_redirect(&target.0, target.1).await {
                Ok(path) => out = Out::File(path),
                Err(e) => {
                    self.print(Stream::Stderr, &format!("fake: cannot create {}: {e}", target.0))
                        .await;
                    return Flow::Status(1);
                }
            }
        }
        self.exec(args, out).await
    }

    /// Creates (or, unless `append`, truncates) the file a redirection names.
    async fn open_redirect(&self, name: &str, append: bool) -> Result<PathBuf, String> {
        let path = self.resolve(name)?;
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).write(true);
        match append {
            true => options.append(true),
            false => options.truncate(true),
        };
        options.open(&path).await.map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// The working directory as the script sees it (`/workspace/…`).
    fn cwd(&self) -> String {
        let workdir = self.workdir.as_deref().unwrap_or("");
        let base = if workdir.starts_with('/') { "" } else { WORKSPACE_PATH };
        let parts = workdir.split('/').filter(|p| !p.is_empty() && *p != ".");
        let dir = std::iter::once(base).chain(parts).collect::<Vec<_>>().join("/");
        if dir.is_empty() { "/".to_string() } else { dir }
    }

    /// The host path of `name` (relative to the working directory, or absolute), which must
    /// lie in the workspace.
    fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        if name.is_empty() {
            return Err("No such file or directory".to_string());
        }
        let full = match name.starts_with('/') {
            true => PathBuf::from(name),
            false => Path::new(&self.cwd()).join(name),
        };
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for part in full.components() {
            match part {
                Component::Normal(p) => parts.push(p),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let root = WORKSPACE_PATH.trim_start_matches('/');
        match parts.split_first() {
            Some((first, rest)) if *first == root => {
                Ok(rest.iter().fold(self.workspace.clone(), |path, p| path.join(p)))
            }
            _ => Err("outside the workspace, which is all the fake's file system".to_string()),
        }
    }

    /// Runs a command with its output to `out`.
    async fn exec(&mut self, args: Vec<String>, out: Out) -> Flow {
        let Some(name) = args.first() else {
            return Flow::Status(0);
        };
        match name.as_str() {
            "echo" => {
                let mut text = args[1..].join(" ").into_bytes();
                text.push(b'\n');
                self.write(&out, &text).await;
                Flow::Status(0)
            }
            "pwd" => {
                let mut dir = self.cwd().into_bytes();
                dir.push(b'\n');
                self.write(&out, &dir).await;
                Flow::Status(0)
            }
            "cat" => self.cat(&args[1..], &out).await,
            "mkdir" => self.mkdir(&args[1..]).await,
            "true" | ":" => Flow::Status(0),
            "false" => Flow::Status(1),
            "exit" => match args.get(1).map(|n| n.parse::<i64>()) {
                None => Flow::Exit(0),
                Some(Ok(n)) => Flow::Exit(n.rem_euclid(256) as i32),
                Some(Err(_)) => {
                    let msg = format!("fake: exit: Illegal number: {}", args[1]);
                    self.print(Stream::Stderr, &msg).await;
                    Flow::Exit(2)
                }
            },
            "sleep" => self.sleep(&args[1..]).await,
            "trap" => self.trap(&args[1..]).await,
            "sh" => {
                let outer = std::mem::replace(&mut self.default_out, out);
                let flow = self.sh(&args[1..]).await;
                self.default_out = outer;
                flow
            }
            other => {
                let msg = format!("fake: unknown command: {other}");
                self.print(Stream::Stderr, &msg).await;
                Flow::Status(127)
            }
        }
    }

    /// `cat FILE…`: each file's bytes, in order; a file that cannot be read is reported and
    /// makes the status 1.
    async fn cat(&mut self, names: &[String], out: &Out) -> Flow {
        let mut status = 0;
        for name in names {
            let read = match self.resolve(name) {
                Ok(path) => tokio::fs::read(&path).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match read {
                Ok(bytes) => self.write(out, &bytes).await,
                Err(e) => {
                    self.print(Stream::Stderr, &format!("fake: cat: {name}: {e}")).await;
                    status = 1;
                }
            }
        }
        Flow::Status(status)
    }

    /// `mkdir [-p] DIR…`.
    async fn mkdir(&mut self, args: &[String]) -> Flow {
        let parents = args.iter().any(|a| a == "-p");
        let mut status = 0;
        for name in args.iter().filter(|a| *a != "-p") {
            let made = match self.resolve(name) {
                Ok(path) if parents => tokio::fs::create_dir_all(&path).await,
                Ok(path) => tokio::fs::create_dir(&path).await,
                Err(e) => Err(std::io::Error::other(e)),
            };
            if let Err(e) = made {
                self.print(Stream::Stderr, &format!("fake: mkdir: {name}: {e}")).await;
                status = 1;
            }
        }
        Flow::Status(status)
    }

    async fn sleep(&mut self, args: &[String]) -> Flow {
        let seconds = match args {
            [arg] => arg.parse::<f64>().ok(),
            _ => None,
        };
        let Some(duration) = seconds.and_then(|s| Duration::try_from_secs_f64(s).ok()) else {
            let msg = format!("fake: sleep: invalid time interval {:?}", args.join(" "));
            self.print(Stream::Stderr, &msg).await;
            return Flow::Status(1);
        };
        let signal = tokio::select! {
            _ = tokio::time::sleep(duration) => return Flow::Status(0),
            _ = Self::kill_signal(&mut self.kill) => return Flow::Exit(KILLED),
            Some(signal) = self.signals.recv() => signal,
        };
        // Interrupted: the trap's action runs, and the script goes on after the `sleep`.
        self.deliver(&signal).await.unwrap_or(Flow::Status(0))
    }

    /// What signal `name` does to the script: its trap's action runs (`Some` when that
    /// ended the script), an ignored one does nothing, any other ends the script.
    fn deliver<'a>(
        &'a mut self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Flow>> + Send + 'a>> {
        Box::pin(async move {
            let number = crate::signal_number(name).unwrap_or(0);
            let Some(action) = self.traps.get(name).cloned() else {
                return Some(Flow::Exit(128 + number));
            };
            for part in action.split(';') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                if let Flow::Exit(code) = self.command(part).await {
                    return Some(Flow::Exit(code));
                }
            }
            None
        })
    }

    /// `trap 'ACTION' SIG…` (names with or without `SIG`; `trap - SIG` removes the trap).
    async fn trap(&mut self, args: &[String]) -> Flow {
        let Some((action, signals)) = args.split_first().filter(|(_, s)| !s.is_empty()) else {
            self.print(Stream::Stderr, "fake: trap: only `trap 'ACTION' SIG…` is understood").await;
            return Flow::Status(2);
        };
        for signal in signals {
            let name = signal.strip_prefix("SIG").unwrap_or(signal);
            if crate::signal_number(name).is_none() {
                self.print(Stream::Stderr, &format!("fake: trap: {signal}: bad trap")).await;
                return Flow::Status(1);
            }
            match action.as_str() {
                "-" => self.traps.remove(name),
                _ => self.traps.insert(name.to_string(), action.clone()),
            };
        }
        Flow::Status(0)
    }

    async fn sh(&mut self, args: &[String]) -> Flow {
        let mut errexit = false;
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-e" => errexit = true,
                "-c" | "-ec" | "-ce" => {
                    errexit |= flag != "-c";
                    let Some(script) = args.next() else {
                        break;
                    };
                    let script = script.clone();
                    return Flow::Status(self.run(&script, errexit).await);
                }
                _ => break,
            }
        }
        self.print(Stream::Stderr, "fake: sh: only `sh [-e] -c SCRIPT` is understood").await;
        Flow::Status(2)
    }

    /// Prints `text` and a newline on `stream`.
    async fn print(&mut self, stream: Stream, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.write(&Out::Stream(stream), &bytes).await;
    }

    /// Writes `bytes` to `out`: appends them to a file, or sends the lines they complete.
    async fn write(&mut self, out: &Out, bytes: &[u8]) {
        match out {
            Out::Stream(stream) => {
                let lines = self.out.push(*stream, bytes);
                self.send(lines).await;
            }
            Out::File(path) => {
                use tokio::io::AsyncWriteExt;
                let mut options = tokio::fs::OpenOptions::new();
                let written = match options.append(true).open(path).await {
                    // tokio's `File` writes in the background until flushed.
                    Ok(mut file) => match file.write_all(bytes).await {
                        Ok(()) => file.flush().await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    let msg = format!("fake: writing {}: {e}\n", path.display());
                    let lines = self.out.push(Stream::Stderr, msg.as_bytes());
                    self.send(lines).await;
                }
            }
        }
    }

    /// Sends the partial last lines (output without a final newline).
    async fn flush(&mut self) {
        let lines = self.out.finish();
        self.send(lines).await;
    }

    /// Sends `lines` to the log; a killed task or a dropped reader stops waiting.
    async fn send(&mut self, lines: Vec<LogLine>) {
        for line in lines {
            tokio::select! {
                sent = self.tx.send(Ok(line)) => if sent.is_err() { return },
                _ = Self::kill_signal(&mut self.kill) => return,
            }
        }
    }
}

/// One word of a command line.
#[derive(Debug, PartialEq)]
struct Word {
    text: String,
    /// No quoting or expansion took part (so `>&2` is a redirection, not text).
    plain: bool,
}

/// Splits a command line into words the way `sh` would for the subset the fake understands.
fn split_words(line: &str, env: &BTreeMap<String, String>) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut text = String::new();
    let mut started = false;
    let mut plain = true;
    let mut chars = line.chars().peekable();
    let mut end_word = |text: &mut String, started: &mut bool, plain: &mut bool| {
        if *started {
            words.push(Word { text: std::mem::take(text), plain: *plain });
        }
        *started = false;
        *plain = true;
    };
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => end_word(&mut text, &mut started, &mut plain),
            '\'' => {
                started = true;
                plain = false;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("unterminated quote".to_string()),
                    }
                }
            }
            '"' => {
                started = true;
                plain = false;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&c) if "$\"\\`".contains(c) => {
                                text.push(c);
                                chars.next();
                            }
                            _ => text.push('\\'),
                        },
                        Some('$') => match expand(&mut chars, env)? {
                            Some(value) => text.push_str(&value),
                            None => text.push('$'),
                        },
                        Some(c) => text.push(c),
                        None => return Err("unterminated quote".to_string()),
                    }
                }
            }
            '\\' => {
                started = true;
                plain = false;
                if let Some(c) = chars.next() {
                    text.push(c);
                }
            }
            '$' => {
                plain = false;
                match expand(&mut chars, env)? {
                    // Unquoted: the value is split into words on whitespace.
                    Some(value) => {
                        for c in value.chars() {
                            if c.is_whitespace() {
                                end_word(&mut text, &mut started, &mut plain);
                                plain = false;
                            } else {
                                text.push(c);
                                started = true;
                            }
                        }
                    }
                    None => {
                        text.push('$');
                        started = true;
                    }
                }
            }
            c => {
                text.push(c);
                started = true;
            }
        }
    }
    end_word(&mut text, &mut started, &mut plain);
    Ok(words)
}

/// Reads a variable name after `$` and returns its value (empty when unset), or `None` when
/// no name follows (a literal `$`).
fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut name = String::new();
    match chars.peek() {
        Some('{') => {
            chars.next();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) => name.push(c),
                    None => return Err("bad substitution: missing }".to_string()),
                }
            }
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("bad substitution: ${{{name}}}"));
            }
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            while let Some(&c) = chars.peek() {
                if !is_name(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(env.get(&name).cloned().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let env = BTreeMap::from([
            ("A".to_string(), "x y".to_string()),
            ("B".to_string(), "b".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]);
        match split_words(line, &env) {
            Ok(words) => words.into_iter().map(|w| w.text).collect(),
            Err(e) => vec![format!("ERR {e}")],
        }
    }

    #[test]
    fn splits_and_expands_like_sh() {
        assert_eq!(words("echo  a   b"), ["echo", "a", "b"]);
        assert_eq!(words("echo \"a  b\" 'c  d'"), ["echo", "a  b", "c  d"]);
        assert_eq!(words("echo $A"), ["echo", "x", "y"]);
        assert_eq!(words("echo \"$A\""), ["echo", "x y"]);
        assert_eq!(words("echo pre${B}post"), ["echo", "prebpost"]);
        assert_eq!(words("echo $B-$B"), ["echo", "b-b"]);
        assert_eq!(words("echo '$B'"), ["echo", "$B"]);
        assert_eq!(words("echo $EMPTY"), ["echo"]);
        assert_eq!(words("echo \"$EMPTY\""), ["echo", ""]);
        assert_eq!(words("echo $UNSET."), ["echo", "."]);
        assert_eq!(words("echo cost: $ 5"), ["echo", "cost:", "$", "5"]);
        assert_eq!(words("echo 'it'\\''s'"), ["echo", "it's"]);
        assert_eq!(words("echo \"q\\\"q\""), ["echo", "q\"q"]);
        assert_eq!(words("echo 'open"), ["ERR unterminated quote"]);
        assert_eq!(words("echo ${B"), ["ERR bad substitution: missing }"]);
        assert_eq!(words("echo ${B-x}"), ["ERR bad substitution: ${B-x}"]);
    }

    #[test]
    fn only_plain_redirections_count() {
        let env = BTreeMap::new();
        let plain: Vec<bool> = split_words("echo x >&2 '>&2'", &env)
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.plain)
            .collect();
        assert_eq!(plain, [true, true, true, false]);
    }
}
