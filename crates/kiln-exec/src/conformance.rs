//! The conformance suite: one set of cases every [`Executor`] must pass, plus task builders
//! and a [`run_task`] driver that tests in any crate can reuse.
//!
//! # Running the suite on an executor
//!
//! One file, `crates/kiln-exec-NAME/tests/it/main.rs` (or any integration test), with
//! `kiln-exec` and `tokio` among the crate's (dev-)dependencies:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kiln_exec::conformance::Subject;
//! use kiln_exec::fake::FakeExecutor; // your executor here
//!
//! // Called once per case, inside that case's own tokio runtime, so it may connect to an
//! // engine. Return `Subject`, or `Option<Subject>` where `None` skips the case (say, when
//! // no engine is reachable; print why, and prefer failing in CI).
//! async fn subject() -> Subject {
//!     let executor = Arc::new(FakeExecutor::new());
//!     let probe = executor.clone();
//!     // The leak hook lists what still exists for a task id after `destroy`: containers,
//!     // networks, volumes, directories (for containers: filter on the `kiln.task` label,
//!     // which the builders here set to the task id).
//!     Subject::new(executor, move |id| {
//!         let probe = probe.clone();
//!         async move { probe.leftovers(&id) }
//!     })
//!     // Container executors: an image with busybox `sh`, `sleep` and `echo`.
//!     .with_image("busybox:latest")
//!     .with_services(true) // sidecars supported; `false` expects `check` to refuse them
//!     .with_limits(true) // limits accepted; `false` expects `check` to refuse them
//! }
//!
//! kiln_exec::conformance_tests!(subject());
//! ```
//!
//! This expands to one `#[tokio::test]` per case (multi-threaded runtime), named after the
//! case functions below, so `cargo test -p kiln-exec-NAME kill` runs one case. Every case
//! uses fresh task ids (`kc-CASE-…`), so cases run in parallel and leftovers of a crashed run
//! never clash with a new one. Each case fails after [`CASE_TIMEOUT`].
//!
//! Scripts use only what the [`FakeExecutor`](crate::fake::FakeExecutor) understands (`echo`,
//! `echo … >&2`, `sleep`, `exit`, `pwd`, `true`, `false`, `sh -c`, `cat`, `mkdir -p`,
//! `> FILE`), which behaves like `sh -e -c`. What the cases pin down beyond the trait docs: a
//! relative `workdir` is relative to the workspace (`/workspace` in containers); a task killed
//! before `start` exits without running; `wait`, `kill` and `export_workspace` of an id never
//! set up are [`ExecError::UnknownTask`]; a missing image is [`ExecError::ImageNotFound`] from
//! `setup`, with `image` as written in the task; the workspace starts empty apart from the
//! seed, and its export lists exactly what the script left there.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::{
    Entry, ExecError, Executor, ExitStatus, Limits, LogLine, ServiceSpec, Stream, TaskId, TaskSpec,
    WORKSPACE_PATH,
};

/// How long one case may take before it fails.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// How soon `wait` must resolve after `kill`.
pub const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// An image reference that exists nowhere (the `.invalid` domain never resolves).
pub const MISSING_IMAGE: &str = "kiln.invalid/conformance/missing:never";

/// The label the builders put on every task, set to the task id.
pub const TASK_LABEL: &str = "kiln.task";

/// Lists what still exists for a task id (empty when everything was removed).
pub type LeakCheck = Arc<dyn Fn(TaskId) -> BoxFuture<'static, Vec<String>> + Send + Sync>;

/// An executor under test and what it supports.
#[derive(Clone)]
pub struct Subject {
    /// The executor.
    pub executor: Arc<dyn Executor>,
    /// Image with busybox `sh` for container executors; `None` for the process executor.
    pub image: Option<String>,
    /// Whether it runs sidecars (`false`: `check` must refuse tasks with services).
    pub services: bool,
    /// Whether it accepts limits (`false`: `check` must refuse tasks with limits).
    pub limits: bool,
    /// Lists leftovers of a task after `destroy`.
    pub leaks: LeakCheck,
}

impl Subject {
    /// A subject without image, services or limits; `leaks` lists what still exists for a
    /// task id.
    pub fn new<F, Fut>(executor: Arc<dyn Executor>, leaks: F) -> Subject
    where
        F: Fn(TaskId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<String>> + Send + 'static,
    {
        Subject {
            executor,
            image: None,
            services: false,
            limits: false,
            leaks: Arc::new(move |id| Box::pin(leaks(id))),
        }
    }

    /// Sets the image tasks run in (container executors).
    pub fn with_image(mut self, image: impl Into<String>) -> Subject {
        self.image = Some(image.into());
        self
    }

    /// Says whether sidecars are supported.
    pub fn with_services(mut self, services: bool) -> Subject {
        self.services = services;
        self
    }

    /// Says whether limits are accepted.
    pub fn with_limits(mut self, limits: bool) -> Subject {
        self.limits = limits;
        self
    }

    /// A script task with a fresh id for `case`, in this subject's image.
    pub fn script_task(&self, case: &str, lines: &[&str]) -> TaskSpec {
        let mut task = script_task(&unique_id(case), lines);
        task.image = self.image.clone();
        task
    }

    fn name(&self) -> &'static str {
        self.executor.name()
    }

    async fn assert_no_leaks(&self, id: &TaskId) {
        let left = (self.leaks)(id.clone()).await;
        assert!(left.is_empty(), "{}: left behind for task {id}: {left:?}", self.name());
    }
}

/// What a task printed and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    /// Every line, in the order the log stream gave them.
    pub lines: Vec<LogLine>,
    /// Exit status.
    pub status: ExitStatus,
}

impl TaskRun {
    /// Texts of the stdout lines.
    pub fn stdout(&self) -> Vec<&str> {
        self.texts(Stream::Stdout)
    }

    /// Texts of the stderr lines.
    pub fn stderr(&self) -> Vec<&str> {
        self.texts(Stream::Stderr)
    }

    fn texts(&self, stream: Stream) -> Vec<&str> {
        self.lines.iter().filter(|l| l.stream == stream).map(|l| l.text.as_str()).collect()
    }
}

/// Runs `task` through the whole lifecycle: `check`, `setup`, `start`, reading the log
/// stream together with `wait`, then `destroy` (also after a failure).
pub async fn run_task(executor: &dyn Executor, task: &TaskSpec) -> Result<TaskRun, ExecError> {
    executor.check(task)?;
    let run = async {
        executor.setup(task).await?;
        let stream = executor.start(task).await?;
        let (lines, status) =
            futures::future::join(stream.collect::<Vec<_>>(), executor.wait(&task.id)).await;
        let lines = lines.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(TaskRun { lines, status: status? })
    }
    .await;
    let destroyed = executor.destroy(&task.id).await;
    let run = run?;
    destroyed?;
    Ok(run)
}

/// A task running `lines` as one script (`sh -e -c`), without image, env or workdir, labelled
/// [`TASK_LABEL`]` = id`. `id` is sanitized with [`TaskId::sanitized`].
pub fn script_task(id: &str, lines: &[&str]) -> TaskSpec {
    task(id, Entry::Script(lines.join("\n")))
}

/// A task running `command` with `args` (no image entrypoint), otherwise like [`script_task`].
pub fn command_task(id: &str, command: &[&str], args: &[&str]) -> TaskSpec {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    task(id, Entry::Command { command: Some(words(command)), args: words(args) })
}

fn task(id: &str, entry: Entry) -> TaskSpec {
    let id = TaskId::sanitized(id);
    TaskSpec {
        labels: BTreeMap::from([(TASK_LABEL.to_string(), id.to_string())]),
        id,
        image: None,
        entry,
        env: BTreeMap::new(),
        workdir: None,
        services: Vec::new(),
        limits: Limits::default(),
        seed: None,
        ports: Vec::new(),
        host_network: false,
        pull_auth: None,
        builder: false,
        constraints: Vec::new(),
        binds: Vec::new(),
    }
}

/// A task id that no other test, process or earlier run uses: `kc-PREFIX-PID-TIME-N`.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix: String = TaskId::sanitized(prefix).as_str().chars().take(24).collect();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let micros = Utc::now().timestamp_micros().rem_euclid(1 << 40);
    format!("kc-{prefix}-{:x}-{micros:x}-{n}", std::process::id())
}

#[doc(hidden)]
/// Used by [`conformance_tests!`](crate::conformance_tests): accepts `Subject` or
/// `Option<Subject>`.
pub fn __subject(subject: impl Into<Option<Subject>>) -> Option<Subject> {
    let subject = subject.into();
    if subject.is_none() {
        eprintln!("conformance: no subject, case skipped");
    }
    subject
}

/// Expands to one `#[tokio::test]` per conformance case, each building its subject with the
/// given expression (a future of `Subject` or `Option<Subject>`). See the
/// [`conformance`](crate::conformance) module docs.
#[macro_export]
macro_rules! conformance_tests {
    ($subject:expr $(,)?) => {
        $crate::__conformance_cases!(
            $subject;
            output_streams_in_order,
            exit_code_is_ok,
            failing_command_ends_script,
            unknown_command_exits_127,
            env_reaches_script,
            workdir_is_honoured,
            command_entry_runs,
            kill_stops_sleeping_task,
            kill_before_start_runs_nothing,
            signal_reaches_the_task,
            destroy_is_idempotent,
            missing_image_is_image_not_found,
            destroy_after_failed_setup,
            unknown_task_is_an_error,
            tasks_run_concurrently,
            many_lines_arrive,
            job_out_lines_pass_through,
            unsupported_features_fail_check,
            services_are_cleaned_up,
            limits_are_accepted,
            seed_is_in_the_workspace,
            written_files_are_exported,
            export_works_after_a_failure,
            workspace_without_seed_starts_empty,
            export_of_unknown_task_is_an_error,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($subject:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let ::std::option::Option::Some(subject) =
                    $crate::conformance::__subject(($subject).await)
                {
                    $crate::conformance::$case(subject).await;
                }
            }
        )*
    };
}

/// Runs a case body with [`CASE_TIMEOUT`].
async fn within<F: Future<Output = ()>>(subject: &Subject, case: &str, body: F) {
    if tokio::time::timeout(CASE_TIMEOUT, body).await.is_err() {
        panic!("{}: case {case} took over {CASE_TIMEOUT:?}", subject.name());
    }
}

/// Runs `task` with [`run_task`], checks nothing was left behind, and returns the run.
async fn run_ok(subject: &Subject, task: &TaskSpec) -> TaskRun {
    let run = run_task(subject.executor.as_ref(), task).await;
    subject.assert_no_leaks(&task.id).await;
    match run {
        Ok(run) => run,
        Err(e) => panic!("{}: task {} failed: {e}", subject.name(), task.id),
    }
}

/// stdout and stderr lines arrive in order with the right stream, timestamps never go
/// backwards and are close to now, and nothing is left after `destroy`.
pub async fn output_streams_in_order(subject: Subject) {
    within(&subject, "output_streams_in_order", async {
        let task = subject.script_task(
            "streams",
            &[
                "echo one",
                "sleep 0.2",
                "echo two >&2",
                "sleep 0.2",
                "echo three",
                "echo four",
                "sleep 0.2",
                "echo five >&2",
            ],
        );
        let before = Utc::now() - chrono::Duration::minutes(5);
        let run = run_ok(&subject, &task).await;
        let after = Utc::now() + chrono::Duration::minutes(5);
        let got: Vec<(Stream, &str)> =
            run.lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        use Stream::{Stderr, Stdout};
        assert_eq!(
            got,
            [
                (Stdout, "one"),
                (Stderr, "two"),
                (Stdout, "three"),
                (Stdout, "four"),
                (Stderr, "five"),
            ],
            "{}",
            subject.name()
        );
        assert_eq!(run.status, ExitStatus { code: 0, killed: None });
        for pair in run.lines.windows(2) {
            assert!(
                pair[0].time <= pair[1].time,
                "{}: time went backwards: {pair:?}",
                subject.name()
            );
        }
        for line in &run.lines {
            assert!(
                before <= line.time && line.time <= after,
                "{}: odd timestamp {line:?}",
                subject.name()
            );
        }
    })
    .await;
}

/// `exit N` is `Ok(ExitStatus { code: N, killed: None })`, with the output before it.
pub async fn exit_code_is_ok(subject: Subject) {
    within(&subject, "exit_code_is_ok", async {
        let task = subject.script_task("exit", &["echo before", "exit 3", "echo after"]);
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.status, ExitStatus { code: 3, killed: None }, "{}", subject.name());
        assert_eq!(run.stdout(), ["before"], "{}", subject.name());
    })
    .await;
}

/// Scripts run as with `sh -e`: the first failing command ends the script with its status.
pub async fn failing_command_ends_script(subject: Subject) {
    within(&subject, "failing_command_ends_script", async {
        let task = subject.script_task("errexit", &["echo before", "false", "echo after"]);
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.status, ExitStatus { code: 1, killed: None }, "{}", subject.name());
        assert_eq!(run.stdout(), ["before"], "{}", subject.name());
    })
    .await;
}

/// A command that does not exist exits 127 and says so on stderr.
pub async fn unknown_command_exits_127(subject: Subject) {
    within(&subject, "unknown_command_exits_127", async {
        let task = subject.script_task("unknown", &["kiln-no-such-command-3f9a", "echo after"]);
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.status, ExitStatus { code: 127, killed: None }, "{}", subject.name());
        assert!(run.stdout().is_empty(), "{}: {run:?}", subject.name());
        assert!(!run.stderr().is_empty(), "{}: {run:?}", subject.name());
    })
    .await;
}

/// Env values reach the script unchanged (spaces, quotes, `$` included).
pub async fn env_reaches_script(subject: Subject) {
    within(&subject, "env_reaches_script", async {
        let mut task = subject
            .script_task("env", &["echo $GREETING", "echo \"${SPACED}\"", "echo \"$QUOTED\""]);
        task.env = BTreeMap::from([
            ("GREETING".to_string(), "hello".to_string()),
            ("SPACED".to_string(), "a  b".to_string()),
            ("QUOTED".to_string(), "it's \"q\" $NOT=1".to_string()),
        ]);
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.stdout(), ["hello", "a  b", "it's \"q\" $NOT=1"], "{}", subject.name());
        assert!(run.status.success());
    })
    .await;
}

/// `workdir`: none means the workspace, absolute paths are used as given, relative ones are
/// relative to the workspace.
pub async fn workdir_is_honoured(subject: Subject) {
    within(&subject, "workdir_is_honoured", async {
        let pwd = |workdir: Option<&str>| {
            let mut task = subject.script_task("workdir", &["pwd"]);
            task.workdir = workdir.map(str::to_string);
            let subject = &subject;
            async move {
                let run = run_ok(subject, &task).await;
                assert!(run.status.success(), "{}: {run:?}", subject.name());
                match run.stdout().as_slice() {
                    [dir] => dir.to_string(),
                    other => panic!("{}: pwd printed {other:?}", subject.name()),
                }
            }
        };
        let default = pwd(None).await;
        let root = pwd(Some("/")).await;
        let relative = pwd(Some("sub/dir")).await;
        assert_eq!(root, "/", "{}", subject.name());
        assert!(default.starts_with('/'), "{}: {default}", subject.name());
        assert!(relative.ends_with("/sub/dir"), "{}: {relative}", subject.name());
        if subject.image.is_some() {
            assert_eq!(default, WORKSPACE_PATH, "{}", subject.name());
            assert_eq!(relative, format!("{WORKSPACE_PATH}/sub/dir"), "{}", subject.name());
        }
    })
    .await;
}

/// `Entry::Command` runs `command` with `args`.
pub async fn command_entry_runs(subject: Subject) {
    within(&subject, "command_entry_runs", async {
        let mut task = command_task(
            &unique_id("command"),
            &["sh", "-c"],
            &["echo hello from-command\nexit 4"],
        );
        task.image = subject.image.clone();
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.stdout(), ["hello from-command"], "{}", subject.name());
        assert_eq!(run.status, ExitStatus { code: 4, killed: None }, "{}", subject.name());
    })
    .await;
}

/// `kill` during `sleep 30` makes `wait` return within [`KILL_DEADLINE`] with a non-zero
/// code, the log stream ends, a second `kill` is `Ok`, and `destroy` leaves nothing.
pub async fn kill_stops_sleeping_task(subject: Subject) {
    within(&subject, "kill_stops_sleeping_task", async {
        let ex = subject.executor.clone();
        let task = subject.script_task("kill", &["echo started", "sleep 30", "echo not-reached"]);
        ex.check(&task).expect("check");
        ex.setup(&task).await.expect("setup");
        let mut stream = ex.start(&task).await.expect("start");
        // Wait until the script runs, so the kill hits `sleep`.
        loop {
            match stream.next().await {
                Some(Ok(line)) if line.text == "started" => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{}: log stream failed: {e}", subject.name()),
                None => panic!("{}: stream ended before `started`", subject.name()),
            }
        }
        let killed_at = std::time::Instant::now();
        ex.kill(&task.id).await.expect("kill");
        let rest = futures::future::join(stream.collect::<Vec<_>>(), ex.wait(&task.id));
        let Ok((lines, status)) = tokio::time::timeout(KILL_DEADLINE, rest).await else {
            panic!(
                "{}: wait or the log stream did not end within {KILL_DEADLINE:?} of kill",
                subject.name()
            );
        };
        let status = status.expect("wait after kill");
        assert_ne!(status.code, 0, "{}", subject.name());
        assert!(
            !lines.iter().any(|l| matches!(l, Ok(l) if l.text == "not-reached")),
            "{}: the script went on after kill",
            subject.name()
        );
        assert!(killed_at.elapsed() < KILL_DEADLINE);
        ex.kill(&task.id).await.expect("kill after exit is Ok");
        ex.destroy(&task.id).await.expect("destroy");
        subject.assert_no_leaks(&task.id).await;
    })
    .await;
}

/// `signal` reaches a running script that traps it (the trap runs within a second, even
/// when only the script's first process gets it, as in a container); a signal to a task
/// that ended is `Ok`, to an id never set up `UnknownTask`, and a name that is no signal is
/// `Unsupported`.
pub async fn signal_reaches_the_task(subject: Subject) {
    within(&subject, "signal_reaches_the_task", async {
        let ex = subject.executor.clone();
        let never = TaskId::sanitized(&unique_id("nosignal"));
        match ex.signal(&never, "HUP").await {
            Err(ExecError::UnknownTask(id)) => assert_eq!(id, never),
            other => panic!("{}: signal of an unknown task: {other:?}", subject.name()),
        }
        // One-second sleeps: a container's first process runs its trap once the `sleep` in
        // front of it ends (a process group's `sleep` gets the signal too and ends at once).
        let mut script = vec!["trap 'echo got HUP; exit 3' HUP", "echo ready"];
        script.extend(std::iter::repeat_n("sleep 1", 30));
        let task = subject.script_task("signal", &script);
        ex.check(&task).expect("check");
        ex.setup(&task).await.expect("setup");
        let mut stream = ex.start(&task).await.expect("start");
        loop {
            match stream.next().await {
                Some(Ok(line)) if line.text == "ready" => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{}: log stream failed: {e}", subject.name()),
                None => panic!("{}: stream ended before `ready`", subject.name()),
            }
        }
        ex.signal(&task.id, "HUP").await.expect("signal");
        let rest = futures::future::join(stream.collect::<Vec<_>>(), ex.wait(&task.id));
        let Ok((lines, status)) = tokio::time::timeout(KILL_DEADLINE, rest).await else {
            panic!("{}: the trapped signal did not end the script", subject.name());
        };
        let status = status.expect("wait");
        let stdout: Vec<String> = lines
            .into_iter()
            .filter_map(Result::ok)
            .filter(|l| l.stream == Stream::Stdout)
            .map(|l| l.text)
            .collect();
        assert!(stdout.iter().any(|l| l == "got HUP"), "{}: {stdout:?}", subject.name());
        assert_eq!(status, ExitStatus { code: 3, killed: None }, "{}: {stdout:?}", subject.name());
        ex.signal(&task.id, "HUP").await.expect("a signal to a task that ended is Ok");
        match ex.signal(&task.id, "NOSUCH").await {
            Err(ExecError::Unsupported { .. }) => {}
            other => panic!("{}: signal NOSUCH: {other:?}", subject.name()),
        }
        ex.destroy(&task.id).await.expect("destroy");
        subject.assert_no_leaks(&task.id).await;
    })
    .await;
}

/// A task killed after `setup` but before `start` runs nothing: `wait` resolves promptly
/// with a non-zero code.
pub async fn kill_before_start_runs_nothing(subject: Subject) {
    within(&subject, "kill_before_start_runs_nothing", async {
        let ex = subject.executor.clone();
        let task = subject.script_task("killfirst", &["echo ran", "sleep 30"]);
        ex.setup(&task).await.expect("setup");
        ex.kill(&task.id).await.expect("kill before start");
        let run = async {
            let lines = match ex.start(&task).await {
                Ok(stream) => stream.collect::<Vec<_>>().await,
                // Refusing to start a killed task is fine too.
                Err(_) => return None,
            };
            Some((lines, ex.wait(&task.id).await))
        };
        let Ok(outcome) = tokio::time::timeout(KILL_DEADLINE, run).await else {
            panic!("{}: killed task did not end promptly", subject.name());
        };
        if let Some((lines, status)) = outcome {
            let status = status.expect("wait");
            assert_ne!(status.code, 0, "{}", subject.name());
            assert!(
                !lines.iter().any(|l| matches!(l, Ok(l) if l.text == "ran")),
                "{}: a task killed before start ran",
                subject.name()
            );
        }
        ex.destroy(&task.id).await.expect("destroy");
        subject.assert_no_leaks(&task.id).await;
    })
    .await;
}

/// `destroy` twice is `Ok`, and so is `destroy` of an id never set up.
pub async fn destroy_is_idempotent(subject: Subject) {
    within(&subject, "destroy_is_idempotent", async {
        let ex = subject.executor.clone();
        let task = subject.script_task("destroy", &["echo x"]);
        ex.setup(&task).await.expect("setup");
        let stream = ex.start(&task).await.expect("start");
        let (_, status) = futures::future::join(stream.count(), ex.wait(&task.id)).await;
        assert!(status.expect("wait").success());
        ex.destroy(&task.id).await.expect("destroy");
        ex.destroy(&task.id).await.expect("second destroy");
        subject.assert_no_leaks(&task.id).await;

        let never = TaskId::sanitized(&unique_id("never"));
        ex.destroy(&never).await.expect("destroy of an id never set up");
        subject.assert_no_leaks(&never).await;
    })
    .await;
}

/// A missing image makes `setup` fail with `ImageNotFound` (container executors only).
pub async fn missing_image_is_image_not_found(subject: Subject) {
    within(&subject, "missing_image_is_image_not_found", async {
        if subject.image.is_none() {
            eprintln!("{}: no image, nothing to check", subject.name());
            return;
        }
        let mut task = subject.script_task("missing", &["echo x"]);
        task.image = Some(MISSING_IMAGE.to_string());
        let ex = subject.executor.clone();
        ex.check(&task).expect("check does not look at images");
        match ex.setup(&task).await {
            Err(ExecError::ImageNotFound { image, .. }) => {
                assert_eq!(image, MISSING_IMAGE, "{}", subject.name());
            }
            other => panic!("{}: expected ImageNotFound, got {other:?}", subject.name()),
        }
        ex.destroy(&task.id).await.expect("destroy");
    })
    .await;
}

/// `destroy` after a failed `setup` is `Ok` (twice) and leaves nothing (container executors).
pub async fn destroy_after_failed_setup(subject: Subject) {
    within(&subject, "destroy_after_failed_setup", async {
        if subject.image.is_none() {
            eprintln!("{}: no image, nothing to check", subject.name());
            return;
        }
        let mut task = subject.script_task("failedsetup", &["echo x"]);
        task.image = Some(MISSING_IMAGE.to_string());
        let ex = subject.executor.clone();
        assert!(ex.setup(&task).await.is_err(), "{}", subject.name());
        ex.destroy(&task.id).await.expect("destroy after failed setup");
        ex.destroy(&task.id).await.expect("second destroy");
        subject.assert_no_leaks(&task.id).await;
    })
    .await;
}

/// `wait` and `kill` of an id never set up are `UnknownTask`.
pub async fn unknown_task_is_an_error(subject: Subject) {
    within(&subject, "unknown_task_is_an_error", async {
        let ex = subject.executor.clone();
        let id = TaskId::sanitized(&unique_id("unknown"));
        assert_eq!(
            ex.wait(&id).await,
            Err(ExecError::UnknownTask(id.clone())),
            "{}",
            subject.name()
        );
        assert_eq!(
            ex.kill(&id).await,
            Err(ExecError::UnknownTask(id.clone())),
            "{}",
            subject.name()
        );
        subject.assert_no_leaks(&id).await;
    })
    .await;
}

/// Two tasks run at the same time, each with its own output.
pub async fn tasks_run_concurrently(subject: Subject) {
    within(&subject, "tasks_run_concurrently", async {
        let script = |name: &str| {
            let lines = [
                format!("echo {name}-1"),
                "sleep 0.3".to_string(),
                format!("echo {name}-2 >&2"),
                "sleep 0.3".to_string(),
                format!("echo {name}-3"),
            ];
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            subject.script_task(&format!("concurrent-{name}"), &lines)
        };
        let (a, b) = (script("a"), script("b"));
        let (run_a, run_b) =
            futures::future::join(run_ok(&subject, &a), run_ok(&subject, &b)).await;
        for (name, run) in [("a", run_a), ("b", run_b)] {
            assert_eq!(
                run.stdout(),
                [format!("{name}-1"), format!("{name}-3")],
                "{}",
                subject.name()
            );
            assert_eq!(run.stderr(), [format!("{name}-2")], "{}", subject.name());
            assert!(run.status.success());
        }
    })
    .await;
}

/// 1,000 output lines all arrive, in order.
pub async fn many_lines_arrive(subject: Subject) {
    within(&subject, "many_lines_arrive", async {
        let expected: Vec<String> = (0..1000).map(|i| format!("line-{i:04}")).collect();
        let script: Vec<String> = expected.iter().map(|l| format!("echo {l}")).collect();
        let script: Vec<&str> = script.iter().map(String::as_str).collect();
        let task = subject.script_task("many", &script);
        let run = run_ok(&subject, &task).await;
        assert!(run.status.success(), "{}", subject.name());
        assert_eq!(run.stdout(), expected, "{}", subject.name());
        assert!(run.stderr().is_empty(), "{}", subject.name());
    })
    .await;
}

/// `JOB_OUT key=value` lines pass through unchanged on stdout.
pub async fn job_out_lines_pass_through(subject: Subject) {
    within(&subject, "job_out_lines_pass_through", async {
        let task = subject.script_task(
            "jobout",
            &[
                "echo JOB_OUT version=1.2.3",
                "echo JOB_OUT empty=",
                "echo 'JOB_OUT url=https://example.com/a?b=c&d=e'",
            ],
        );
        let run = run_ok(&subject, &task).await;
        assert_eq!(
            run.stdout(),
            [
                "JOB_OUT version=1.2.3",
                "JOB_OUT empty=",
                "JOB_OUT url=https://example.com/a?b=c&d=e",
            ],
            "{}",
            subject.name()
        );
        assert!(run.stderr().is_empty(), "{}", subject.name());
    })
    .await;
}

fn sidecar(subject: &Subject) -> ServiceSpec {
    ServiceSpec {
        name: "sidecar".to_string(),
        image: subject.image.clone().unwrap_or_else(|| "busybox:latest".to_string()),
        env: BTreeMap::new(),
        command: Some(vec!["sleep".to_string(), "30".to_string()]),
    }
}

fn some_limits() -> Limits {
    Limits { cpu_millis: Some(500), memory_bytes: Some(64 * 1024 * 1024) }
}

/// What the executor does not support is refused by `check`, as `Unsupported` naming the
/// executor, before anything is created.
pub async fn unsupported_features_fail_check(subject: Subject) {
    within(&subject, "unsupported_features_fail_check", async {
        let mut tasks = Vec::new();
        if !subject.services {
            let mut task = subject.script_task("noservices", &["echo x"]);
            task.services.push(sidecar(&subject));
            tasks.push(task);
        }
        if !subject.limits {
            let mut task = subject.script_task("nolimits", &["echo x"]);
            task.limits = some_limits();
            tasks.push(task);
        }
        for task in tasks {
            match subject.executor.check(&task) {
                Err(ExecError::Unsupported { executor, .. }) => {
                    assert_eq!(executor, subject.name());
                }
                other => panic!("{}: expected Unsupported, got {other:?}", subject.name()),
            }
            subject.assert_no_leaks(&task.id).await;
        }
    })
    .await;
}

/// With sidecars supported, a task with a long-running sidecar ends when its main script
/// does, and `destroy` removes the sidecar too.
pub async fn services_are_cleaned_up(subject: Subject) {
    within(&subject, "services_are_cleaned_up", async {
        if !subject.services {
            return;
        }
        let mut task = subject.script_task("services", &["echo main"]);
        task.services.push(sidecar(&subject));
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.stdout(), ["main"], "{}", subject.name());
        assert!(run.status.success(), "{}", subject.name());
    })
    .await;
}

/// With limits supported, a task with modest limits runs normally.
pub async fn limits_are_accepted(subject: Subject) {
    within(&subject, "limits_are_accepted", async {
        if !subject.limits {
            return;
        }
        let mut task = subject.script_task("limits", &["echo limited"]);
        task.limits = some_limits();
        let run = run_ok(&subject, &task).await;
        assert_eq!(run.stdout(), ["limited"], "{}", subject.name());
        assert!(run.status.success(), "{}", subject.name());
    })
    .await;
}

/// One entry of a tar archive, as [`tar_entries`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEntry {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// Anything else, by its tar type flag.
    Other(u8),
}

/// Reads the uncompressed tar at `path` into a map from entry path (as written, but without a
/// trailing `/`) to entry. Panics on a broken archive or a repeated path.
pub fn tar_entries(path: &Path) -> BTreeMap<String, TarEntry> {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("opening tar {}: {e}", path.display()));
    let mut archive = tar::Archive::new(file);
    let mut out = BTreeMap::new();
    let entries = archive.entries().unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for entry in entries {
        let mut entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_end_matches('/').to_string();
        let kind = entry.header().entry_type();
        let item = if kind.is_dir() {
            TarEntry::Dir
        } else if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap_or_else(|e| panic!("reading {name}: {e}"));
            TarEntry::File(data)
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            TarEntry::Symlink(String::from_utf8_lossy(&target).into_owned())
        } else {
            TarEntry::Other(kind.as_byte())
        };
        if out.insert(name.clone(), item).is_some() {
            panic!("{}: entry {name:?} appears twice", path.display());
        }
    }
    out
}

/// Like [`run_ok`], but exports the workspace to `dest` after `wait` and before `destroy`.
async fn run_and_export(subject: &Subject, task: &TaskSpec, dest: &Path) -> TaskRun {
    let ex = subject.executor.as_ref();
    let run = async {
        ex.check(task)?;
        ex.setup(task).await?;
        let stream = ex.start(task).await?;
        let (lines, status) =
            futures::future::join(stream.collect::<Vec<_>>(), ex.wait(&task.id)).await;
        let lines = lines.into_iter().collect::<Result<Vec<_>, _>>()?;
        let status = status?;
        ex.export_workspace(&task.id, dest).await?;
        Ok::<_, ExecError>(TaskRun { lines, status })
    }
    .await;
    let destroyed = ex.destroy(&task.id).await;
    subject.assert_no_leaks(&task.id).await;
    let run = run.unwrap_or_else(|e| panic!("{}: task {} failed: {e}", subject.name(), task.id));
    destroyed.unwrap_or_else(|e| panic!("{}: destroy of {} failed: {e}", subject.name(), task.id));
    run
}

/// A scratch directory for one case: seeds and exported archives.
fn scratch(subject: &Subject) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-conformance-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{}: creating a temp dir: {e}", subject.name()))
}

/// Writes `files` (path, contents) below `dir`, creating parent directories.
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating seed dirs");
        }
        std::fs::write(&path, contents).expect("writing a seed file");
    }
}

fn file(contents: &str) -> TarEntry {
    TarEntry::File(contents.as_bytes().to_vec())
}

/// The seed's files, a nested one included, are in the workspace when the script runs, and
/// in the export afterwards.
pub async fn seed_is_in_the_workspace(subject: Subject) {
    within(&subject, "seed_is_in_the_workspace", async {
        let tmp = scratch(&subject);
        let seed = tmp.path().join("seed");
        write_files(
            &seed,
            &[("seeded.txt", "from seed\n"), ("nested/deeper/inner.txt", "inner\n")],
        );
        let mut task = subject.script_task(
            "seed",
            &["cat seeded.txt", "cat nested/deeper/inner.txt", "echo more > nested/more.txt"],
        );
        task.seed = Some(seed);
        let dest = tmp.path().join("export.tar");
        let run = run_and_export(&subject, &task, &dest).await;
        assert_eq!(run.stdout(), ["from seed", "inner"], "{}: {run:?}", subject.name());
        assert!(run.status.success(), "{}: {run:?}", subject.name());
        let expected = BTreeMap::from([
            ("nested".to_string(), TarEntry::Dir),
            ("nested/deeper".to_string(), TarEntry::Dir),
            ("nested/deeper/inner.txt".to_string(), file("inner\n")),
            ("nested/more.txt".to_string(), file("more\n")),
            ("seeded.txt".to_string(), file("from seed\n")),
        ]);
        assert_eq!(tar_entries(&dest), expected, "{}", subject.name());
    })
    .await;
}

/// Files and directories the script writes, nested ones and an empty directory included,
/// are in the export under paths relative to the workspace, with their contents.
pub async fn written_files_are_exported(subject: Subject) {
    within(&subject, "written_files_are_exported", async {
        let tmp = scratch(&subject);
        let task = subject.script_task(
            "export",
            &[
                "mkdir -p dist/sub empty",
                "echo hello > dist/app.txt",
                "echo deep > dist/sub/deep.txt",
                "echo top > top.txt",
                "echo again >> top.txt",
            ],
        );
        let dest = tmp.path().join("export.tar");
        let run = run_and_export(&subject, &task, &dest).await;
        assert!(run.status.success(), "{}: {run:?}", subject.name());
        let expected = BTreeMap::from([
            ("dist".to_string(), TarEntry::Dir),
            ("dist/app.txt".to_string(), file("hello\n")),
            ("dist/sub".to_string(), TarEntry::Dir),
            ("dist/sub/deep.txt".to_string(), file("deep\n")),
            ("empty".to_string(), TarEntry::Dir),
            ("top.txt".to_string(), file("top\nagain\n")),
        ]);
        assert_eq!(tar_entries(&dest), expected, "{}", subject.name());
    })
    .await;
}

/// The workspace can be exported after the script failed (a non-zero exit).
pub async fn export_works_after_a_failure(subject: Subject) {
    within(&subject, "export_works_after_a_failure", async {
        let tmp = scratch(&subject);
        let task = subject.script_task("exportfail", &["echo partial > partial.txt", "exit 3"]);
        let dest = tmp.path().join("export.tar");
        let run = run_and_export(&subject, &task, &dest).await;
        assert_eq!(run.status, ExitStatus { code: 3, killed: None }, "{}", subject.name());
        let expected = BTreeMap::from([("partial.txt".to_string(), file("partial\n"))]);
        assert_eq!(tar_entries(&dest), expected, "{}", subject.name());
    })
    .await;
}

/// Without a seed the workspace starts empty: the export holds only what the script wrote.
pub async fn workspace_without_seed_starts_empty(subject: Subject) {
    within(&subject, "workspace_without_seed_starts_empty", async {
        let tmp = scratch(&subject);
        let task = subject.script_task("noseed", &["echo ok > ok.txt", "cat ok.txt"]);
        assert_eq!(task.seed, None);
        let dest = tmp.path().join("export.tar");
        let run = run_and_export(&subject, &task, &dest).await;
        assert_eq!(run.stdout(), ["ok"], "{}: {run:?}", subject.name());
        let expected = BTreeMap::from([("ok.txt".to_string(), file("ok\n"))]);
        assert_eq!(tar_entries(&dest), expected, "{}", subject.name());
    })
    .await;
}

/// `export_workspace` of an id never set up, or already destroyed, is `UnknownTask`.
pub async fn export_of_unknown_task_is_an_error(subject: Subject) {
    within(&subject, "export_of_unknown_task_is_an_error", async {
        let tmp = scratch(&subject);
        let dest = tmp.path().join("export.tar");
        let ex = subject.executor.clone();
        let id = TaskId::sanitized(&unique_id("unknownexport"));
        assert_eq!(
            ex.export_workspace(&id, &dest).await,
            Err(ExecError::UnknownTask(id.clone())),
            "{}",
            subject.name()
        );
        subject.assert_no_leaks(&id).await;

        let task = subject.script_task("destroyedexport", &["echo x > x.txt"]);
        run_ok(&subject, &task).await;
        assert_eq!(
            ex.export_workspace(&task.id, &dest).await,
            Err(ExecError::UnknownTask(task.id.clone())),
            "{}",
            subject.name()
        );
    })
    .await;
}
