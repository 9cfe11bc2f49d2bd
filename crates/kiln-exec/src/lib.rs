//! The executor contract: how Kiln runs one fully resolved task (a job's containers or
//! processes), plus a fake executor, a no-op one for benchmarks and the conformance suite every
//! executor must pass.
//!
//! Executors know nothing of workflows, the engine, the server, a database or HTTP: they get a
//! [`TaskSpec`] and report log lines and an exit code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// A task's output lines: defined in `kiln-logs`, below both the executors that produce them
/// and the server that stores them, so that the server needs no executor crate.
pub use kiln_logs::{LogLine, Stream};

pub mod conformance;
pub mod fake;
pub mod lines;
pub mod noop;
pub mod workspace;

/// Identifies one attempt of one job on an executor. Safe as a container, network or
/// directory name: lowercase ASCII letters, digits and `-`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// Builds an id from any text: lowercases it, maps other characters to `-`, squeezes
    /// repeated `-` and trims the result to 63 characters.
    pub fn sanitized(raw: &str) -> TaskId {
        let mut out = String::with_capacity(raw.len());
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if c == '-' && (out.is_empty() || out.ends_with('-')) {
                continue;
            }
            out.push(c);
        }
        out.truncate(63);
        while out.ends_with('-') {
            out.pop();
        }
        if out.is_empty() {
            out.push_str("task");
        }
        TaskId(out)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully resolved task: every template rendered, every env value final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique per attempt; names everything the executor creates for it.
    pub id: TaskId,
    /// Put on every container, network and volume created (for clean-up and inspection).
    pub labels: BTreeMap<String, String>,
    /// Container image of the main container; `None` only for the process executor.
    pub image: Option<String>,
    /// What the main container or process runs.
    pub entry: Entry,
    /// Environment, final.
    pub env: BTreeMap<String, String>,
    /// Working directory; the workspace when `None`. A relative path is relative to the
    /// workspace; an absolute one is used as given.
    pub workdir: Option<String>,
    /// Sidecars reachable from the main container by name.
    pub services: Vec<ServiceSpec>,
    /// Limits for the main container.
    pub limits: Limits,
    /// A directory on the executor's host whose contents are copied into the task's workspace
    /// before the main container or process starts: restored caches and the artifacts of
    /// needed jobs. Its own name is not kept (`SEED/a/b` becomes `WORKSPACE/a/b`); files
    /// already in the workspace are overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<PathBuf>,
    /// Host ports published to the main container (`-p HOST:CONTAINER`); ignored with
    /// `host_network` and by executors whose tasks already use the host's network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMap>,
    /// The main container uses the host's network namespace (`--network host`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    /// Host directories bind-mounted into the main container (a service instance's config
    /// files). Executors without containers refuse them in `check`: their processes read
    /// the host directory itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<Bind>,
    /// Credentials for pulling images from one registry (Kiln's own, with a pull token of
    /// the task's project); images of other registries are pulled anonymously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_auth: Option<RegistryAuth>,
    /// The main container is the image builder (a `build:` job, its entry a script of
    /// buildah commands): the Docker executor runs it from its builder image (ignoring
    /// `image`) with what buildah needs and no more (seccomp unconfined, no privilege, no
    /// Docker socket); the process executor runs it on the host, with buildah's storage
    /// under its own directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builder: bool,
    /// The job's `constraints:` (an AND of OR-groups of tests), for executors that place
    /// the task themselves (Kubernetes: node selectors and node affinity). Kiln's own
    /// scheduler has already matched them against the agent; other executors ignore them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Vec<ConstraintTest>>,
}

/// One constraint test as the workflow wrote it (operator upper-cased): `attribute
/// OPERATOR value`, as `kiln_workflow::ConstraintTerm` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintTest {
    /// The node attribute.
    pub attribute: String,
    /// `LIKE`, `UNLIKE`, `UNIQUE`, `CLUSTER`, `GROUP_BY`, `MAX_PER`, `GREATER`, `LESS` or
    /// `EXISTS`.
    pub operator: String,
    /// The value, when the operator takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl fmt::Display for ConstraintTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}", self.attribute, self.operator)?;
        if let Some(v) = &self.value {
            write!(f, ", {v}")?;
        }
        f.write_str("]")
    }
}

/// Credentials an executor pulls images of one registry with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// The registry's `host:port`, as images name it (`127.0.0.1:7171/shop/web:1`).
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password or token (never logged).
    pub password: String,
}

impl RegistryAuth {
    /// Whether `image` is in this registry (its first path component is the registry).
    pub fn covers(&self, image: &str) -> bool {
        image.strip_prefix(&self.registry).is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A host directory mounted into the main container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The directory on the executor's host (absolute).
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A host port published to a container port (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Port on the host, on all its addresses.
    pub host: u16,
    /// Port inside the container.
    pub container: u16,
}

/// The signals [`Executor::signal`] sends, by name (without `SIG`), with their Linux
/// numbers: what a service's `on-change: signal` may ask for, and `KILL`.
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("WINCH", 28),
];

/// The Linux number of signal `name` (`HUP` or `SIGHUP`); `None` for a name not in
/// [`SIGNALS`].
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, number)| *number)
}

/// The error of a signal name not in [`SIGNALS`].
pub fn unknown_signal(executor: &'static str, name: &str) -> ExecError {
    let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
    ExecError::Unsupported {
        executor,
        what: format!("the signal `{name}` (known: {})", known.join(", ")),
    }
}

/// Where a job's workspace is mounted inside its containers.
pub const WORKSPACE_PATH: &str = "/workspace";

/// What the main container or process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A shell script run with `sh -e -c`.
    Script(String),
    /// The image's entrypoint (or `command` when set) with `args`.
    Command {
        /// Replaces the image's entrypoint.
        command: Option<Vec<String>>,
        /// Arguments (the container's `Cmd`).
        args: Vec<String>,
    },
}

/// A sidecar container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Host name the main container reaches it by.
    pub name: String,
    /// Image.
    pub image: String,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's command when set.
    pub command: Option<Vec<String>>,
}

/// Resource limits enforced on the main container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Thousandths of a CPU.
    pub cpu_millis: Option<u64>,
    /// Bytes of memory.
    pub memory_bytes: Option<u64>,
}

/// How the main container or process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code (128 + signal when killed by a signal).
    pub code: i32,
    /// What killed it when that was not Kiln (`kill`, a timeout and a cancel are Kiln's):
    /// `None` when it exited by itself.
    #[serde(default)]
    pub killed: Option<Killed>,
}

/// What killed a task when it was not Kiln.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Killed {
    /// The kernel's out-of-memory killer: the task used more memory than its limit (or than
    /// the host had).
    OutOfMemory,
    /// A signal sent from outside Kiln (`docker kill`, `kill`, the host): its number.
    Signal(i32),
}

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Killed::OutOfMemory => f.write_str(
                "killed by the out-of-memory killer (it used more memory than its limit or the \
                 host had)",
            ),
            Killed::Signal(n) => match SIGNALS.iter().find(|(_, number)| number == n) {
                Some((name, _)) => write!(f, "killed by SIG{name} from outside Kiln"),
                None => write!(f, "killed by signal {n} from outside Kiln"),
            },
        }
    }
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Log lines of a started task; ends when its output closes.
pub type LogStream = BoxStream<'static, Result<LogLine, ExecError>>;

/// Why an executor could not do what was asked. A non-zero exit is not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The task asks for something this executor cannot do (a sidecar on the process
    /// executor, say). Raised by `check` before anything is created.
    #[error("{executor} executor cannot run this job: {what}")]
    Unsupported {
        /// Executor name.
        executor: &'static str,
        /// What is missing.
        what: String,
    },
    /// The image is not present and could not be pulled.
    #[error("image {image:?} not found: {detail}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// What the engine said.
        detail: String,
    },
    /// The engine or the operating system failed.
    #[error("{0}")]
    Engine(String),
    /// `start`, `wait`, `kill` or `export_workspace` named a task that was not set up.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
}

/// Runs tasks.
///
/// Lifecycle of one task, in this order:
/// 1. [`check`](Executor::check): pure capability check; nothing is created.
/// 2. [`setup`](Executor::setup): creates what the task needs apart from the main container:
///    workspace, private network, images present, sidecars started.
/// 3. [`start`](Executor::start): starts the main container or process and returns its log
///    stream, which ends when the output closes.
/// 4. [`wait`](Executor::wait): resolves with the exit status; a non-zero exit is `Ok`.
/// 5. Optionally [`export_workspace`](Executor::export_workspace), once `wait` has resolved:
///    a tar of the workspace (for caches and artifacts).
/// 6. [`destroy`](Executor::destroy): removes everything the task created.
///
/// The main container or process finds the contents of [`TaskSpec::seed`] in its workspace,
/// copied there before it starts (by `setup` or `start`).
///
/// Concurrency: calls for different tasks may run concurrently. For one task the steps
/// above are called in order, except that reading the log stream and `wait` run together,
/// and [`kill`](Executor::kill) may be called at any time from another task (cancel,
/// timeout); after `kill`, `wait` resolves promptly. [`exec`](Executor::exec) and
/// [`signal`](Executor::signal) may be called while the main container or process runs,
/// alongside the rest.
///
/// A task killed after `setup` but before `start` never runs: `start` then returns an empty
/// log stream (and `wait` a non-zero status) or an error.
///
/// `destroy` is idempotent and safe after a failed `setup` or `start`, after `kill`, and for
/// an id never set up: it removes whatever exists and succeeds when there is nothing left.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Short name for messages (`docker`, `process`, `fake`, `noop`).
    fn name(&self) -> &'static str;

    /// Whether tasks run in containers with their own file system, which sees a host
    /// directory only through [`TaskSpec::binds`] (`docker`); `false` (the default): tasks
    /// see the host's files themselves and take no binds.
    fn containers(&self) -> bool {
        false
    }

    /// Whether [`Entry::Script`] runs in a POSIX `sh` (`true`, the default: Docker, process,
    /// Kubernetes). `false` (the fake's tiny interpreter): a job's `script:` lines are handed
    /// over as written, without the echo and exit-status wrapper of a job script.
    fn posix_shell(&self) -> bool {
        true
    }

    /// Says whether this executor can run `task`, without side effects.
    fn check(&self, task: &TaskSpec) -> Result<(), ExecError>;

    /// Prepares everything but the main container. `Err` leaves clean-up to `destroy`.
    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError>;

    /// While `setup` of task `id` runs: why the task waits, when the engine says (a pod that
    /// no node takes: the scheduler's reason), else `None` (the default). The runtime asks
    /// this every second or so during `setup` and reports a change as the job's waiting
    /// reason.
    fn waiting(&self, id: &TaskId) -> Option<String> {
        let _ = id;
        None
    }

    /// Starts the main container or process and returns its output, line by line.
    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError>;

    /// Waits for the main container or process to exit.
    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError>;

    /// Kills the main container or process and its sidecars. Killing a task that already
    /// ended is `Ok`.
    async fn kill(&self, id: &TaskId) -> Result<(), ExecError>;

    /// Writes an uncompressed tar of the workspace's contents to the file `dest` (created or
    /// truncated; its directory must exist).
    ///
    /// Called after the main container or process has exited (whatever its exit code) and
    /// before `destroy`. Entry paths are relative to the workspace root (`dist/app.txt`): no
    /// `workspace/` prefix, no absolute path, no entry for the root itself. Directories (empty
    /// ones too), regular files and symlinks are kept, the latter as links (not followed).
    /// [`workspace::write_tar`] does this for a workspace that is a host directory.
    ///
    /// `Err(UnknownTask)` for an id not set up (or already destroyed); `Err(Engine)` when the
    /// workspace cannot be read or `dest` written, in which case `dest` may hold a partial
    /// archive. May run concurrently with calls for other tasks.
    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError>;

    /// Removes everything created for the task. Idempotent.
    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError>;

    /// Runs `argv` beside the task's running main container or process (a service
    /// instance's command health check): inside the main container (`docker exec`), or as a
    /// host process in the task's working directory with its env. Resolves with its exit
    /// status (a non-zero exit is `Ok`); its output is discarded. The caller bounds it with a
    /// timeout by dropping the future. Executors that cannot answer `Unsupported` (the
    /// default).
    async fn exec(&self, id: &TaskId, argv: &[String]) -> Result<ExitStatus, ExecError> {
        let _ = (id, argv);
        Err(ExecError::Unsupported {
            executor: self.name(),
            what: "commands run beside a task (exec)".to_string(),
        })
    }

    /// Sends signal `signal` (a name of [`SIGNALS`], without `SIG`: `HUP`) to the task's
    /// running main container (`docker kill --signal`: its first process) or process group
    /// (every process of the task), as a service instance's `on-change: signal` asks after
    /// its config files changed. `Ok` once sent, whatever the task does with it; a task
    /// that already ended is `Ok` too (nothing to tell). `UnknownTask` for an id not set up;
    /// `Unsupported` for a name not in [`SIGNALS`], and from executors that cannot (the
    /// default).
    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), ExecError> {
        let _ = (id, signal);
        Err(ExecError::Unsupported {
            executor: self.name(),
            what: "signals sent to a running task".to_string(),
        })
    }

    /// The images the engine holds (an agent reports them for placement and evicts from
    /// them). `Unsupported` from executors without images (the default).
    async fn list_images(&self) -> Result<Vec<ImageInfo>, ExecError> {
        Err(ExecError::Unsupported { executor: self.name(), what: "image lists".to_string() })
    }

    /// Pulls `image` (again, if present: a moved tag is refreshed), with `auth` when it
    /// covers the image's registry. A failed pull is `ImageNotFound`. `Unsupported` from
    /// executors without images (the default).
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), ExecError> {
        let _ = (image, auth);
        Err(ExecError::Unsupported { executor: self.name(), what: "image pulls".to_string() })
    }

    /// Removes the image `id` (an [`ImageInfo::id`]) with all its tags; refused by the
    /// engine while a container uses it. Removing an image that is gone is `Ok`.
    /// `Unsupported` from executors without images (the default).
    async fn remove_image(&self, id: &str) -> Result<(), ExecError> {
        let _ = id;
        Err(ExecError::Unsupported { executor: self.name(), what: "image removal".to_string() })
    }
}

/// An image an engine holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The engine's id (`sha256:…` of its config).
    pub id: String,
    /// Its repo tags (`busybox:latest`, `127.0.0.1:7171/shop/web:1`).
    pub tags: Vec<String>,
    /// Its repo digests (`127.0.0.1:7171/shop/web@sha256:…`).
    pub digests: Vec<String>,
    /// Size in bytes (layers shared with other images counted in each).
    pub size: u64,
    /// When it was made (seconds since the epoch), for images never used here.
    pub created: i64,
}
