//! Service instances: a long-running task driven like a job ([`run_instance`]: the same
//! executor calls as [`drive_task`](crate::drive_task), but no timeout; it ends when it is
//! canceled or exits) with its health checked next to it, as Marathon's and Nomad's local
//! checks are.
//!
//! The health checker runs a [`Probe`] every [`HealthCheck::interval`], each bounded by
//! [`HealthCheck::timeout`], and reports only changes ([`HealthChange`]): the first pass
//! makes the instance healthy, [`HealthCheck::failures`] consecutive failures make it
//! unhealthy (failures within [`HealthCheck::grace`] of the start do not count), one pass
//! makes it healthy again. The counting is [`HealthState`], pure; the probes are the only
//! I/O: a TCP connect, a minimal HTTP/1.0 GET over a TCP stream (2xx and 3xx pass), or a
//! command run through [`Executor::exec`]. Each says what it saw in a short `detail`
//! (`connection refused`, `HTTP 503`, `timed out after 2s`, `exit 1`).
//!
//! An instance of a service with config files ([`InstanceConfig`]) gets them before it
//! starts, written by [`crate::config_files`] into a directory of this host: bind-mounted
//! read-only at the service's `path` in a container ([`Executor::containers`];
//! `KILN_CONFIG_DIR` is that path), or named by `KILN_CONFIG_DIR` itself for a process; `KILN_CONFIG_RELEASE` is the release it
//! started with. Each update that comes while it runs is written the same way (nothing when
//! the bytes did not change), then its signal, if any, is sent through
//! [`Executor::signal`]; each written or unchanged release is reported as
//! [`InstanceEvent::ConfigApplied`].
//!
//! These types mirror `kiln_api::agent::{HealthCheck, Probe}`: this crate speaks no wire
//! format (the agent converts).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kiln_engine::Outcome;
use kiln_exec::{Executor, LogLine, Stream, TaskId, TaskSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config_files::{self, ConfigFiles};
use crate::task::{Driven, TaskEvent, TaskRequest, drive_beside};

/// The variable naming the directory of an instance's config files, as it sees it.
pub const CONFIG_DIR_VAR: &str = "KILN_CONFIG_DIR";

/// The variable holding the config release an instance started with.
pub const CONFIG_RELEASE_VAR: &str = "KILN_CONFIG_RELEASE";

/// How an instance's health is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is checked.
    pub probe: Probe,
    /// After the start, failures do not count for this long.
    pub grace: Duration,
    /// From the start of one check to the start of the next.
    pub interval: Duration,
    /// One check fails after this long.
    pub timeout: Duration,
    /// Consecutive failures that make the instance unhealthy (0 counts as 1).
    pub failures: u32,
}

/// One health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to the named port succeeds.
    Tcp {
        /// The port's name.
        port: String,
    },
    /// An HTTP GET of `path` on the named port answers 2xx or 3xx.
    Http {
        /// The port's name.
        port: String,
        /// The path, from `/`.
        path: String,
    },
    /// The command exits 0, run beside the instance by [`Executor::exec`].
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// Where an instance's named ports are reached from where its checks run (the host's
/// address and the host port, by port name).
pub type Ports = BTreeMap<String, SocketAddr>;

/// The instance became healthy or unhealthy (or was first found healthy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// Passing or not.
    pub healthy: bool,
    /// What the check that decided saw (`HTTP 200`, `connection refused`, `exit 1`).
    pub detail: String,
}

/// What one probe saw: `Ok` passes, `Err` fails, each with its detail.
pub type ProbeResult = Result<String, String>;

/// The health of one instance as its probes come in: counts consecutive failures and
/// says when the healthy/unhealthy state changes. Pure: the time since the start is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    grace: Duration,
    failures: u32,
    /// Consecutive failures counted (those in the grace period are not).
    failing: u32,
    /// `None` until the first change.
    healthy: Option<bool>,
}

impl HealthState {
    /// No verdict yet, no failure counted.
    pub fn new(check: &HealthCheck) -> HealthState {
        HealthState {
            grace: check.grace,
            failures: check.failures.max(1),
            failing: 0,
            healthy: None,
        }
    }

    /// Whether the instance is healthy; `None` before the first verdict.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Takes one probe's result, seen `since_start` after the instance started; returns the
    /// change it makes, if any. A pass makes it healthy (and forgets earlier failures); a
    /// failure within the grace period is ignored; the `failures`-th consecutive one makes
    /// it unhealthy.
    pub fn observe(&mut self, since_start: Duration, result: ProbeResult) -> Option<HealthChange> {
        match result {
            Ok(detail) => {
                self.failing = 0;
                self.set(true, detail)
            }
            Err(_) if since_start < self.grace => None,
            Err(detail) => {
                self.failing = self.failing.saturating_add(1);
                if self.failing >= self.failures { self.set(false, detail) } else { None }
            }
        }
    }

    fn set(&mut self, healthy: bool, detail: String) -> Option<HealthChange> {
        if self.healthy == Some(healthy) {
            return None;
        }
        self.healthy = Some(healthy);
        Some(HealthChange { healthy, detail })
    }
}

/// `timed out after 2s` (or `after 500ms`, `after 1.5s`).
pub fn timed_out(limit: Duration) -> String {
    let ms = limit.as_millis();
    if ms < 1000 {
        format!("timed out after {ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("timed out after {}s", ms / 1000)
    } else {
        format!("timed out after {}s", limit.as_secs_f64())
    }
}

/// The status code of an HTTP status line (`HTTP/1.1 503 Service Unavailable`).
pub fn status_code(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// An I/O error in a few words: `connection refused`, `connection reset`, else the
/// system's message without its `(os error N)`.
fn io_detail(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        ErrorKind::UnexpectedEof => "connection closed before an answer".to_string(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// The address of the named port.
fn address(ports: &Ports, name: &str) -> Result<SocketAddr, String> {
    ports.get(name).copied().ok_or_else(|| format!("no port named `{name}`"))
}

/// One HTTP/1.0 GET of `path`; the status line decides.
async fn http_get(addr: SocketAddr, path: &str) -> ProbeResult {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| io_detail(&e))?;
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: kiln-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| io_detail(&e))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| io_detail(&e))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    if head.is_empty() {
        return Err("connection closed before an answer".to_string());
    }
    let first = String::from_utf8_lossy(&head);
    let line = first.lines().next().unwrap_or("");
    match status_code(line) {
        Some(code) if (200..400).contains(&code) => Ok(format!("HTTP {code}")),
        Some(code) => Err(format!("HTTP {code}")),
        None => Err("not an HTTP answer".to_string()),
    }
}

/// Runs `probe` once against the task `task` and its `ports`, bounded by `timeout`.
pub async fn probe(
    executor: &dyn Executor,
    task: &TaskId,
    probe: &Probe,
    ports: &Ports,
    timeout: Duration,
) -> ProbeResult {
    let check = async {
        match probe {
            Probe::Tcp { port } => {
                let addr = address(ports, port)?;
                TcpStream::connect(addr)
                    .await
                    .map(|_| format!("connected to {addr}"))
                    .map_err(|e| io_detail(&e))
            }
            Probe::Http { port, path } => http_get(address(ports, port)?, path).await,
            Probe::Command { argv } => match executor.exec(task, argv).await {
                Ok(status) if status.success() => Ok("exit 0".to_string()),
                Ok(status) => Err(format!("exit {}", status.code)),
                Err(e) => Err(e.to_string()),
            },
        }
    };
    tokio::time::timeout(timeout, check).await.unwrap_or_else(|_| Err(timed_out(timeout)))
}

/// The health checks of a started task: probes every `check.interval` and yields each
/// change of [`HealthState`]. Never ends; the start of the grace period is the first poll,
/// so poll it first once the task has started.
pub fn health_changes<'a>(
    executor: &'a dyn Executor,
    task: &'a TaskId,
    check: &'a HealthCheck,
    ports: &'a Ports,
) -> BoxStream<'a, HealthChange> {
    struct Checker {
        state: HealthState,
        started: Option<Instant>,
        next: Option<Instant>,
    }
    let checker = Checker { state: HealthState::new(check), started: None, next: None };
    let interval = check.interval.max(Duration::from_millis(10));
    let timeout = check.timeout.max(Duration::from_millis(1));
    Box::pin(futures::stream::unfold(checker, move |mut c| async move {
        let started = *c.started.get_or_insert_with(Instant::now);
        loop {
            if let Some(at) = c.next {
                tokio::time::sleep_until(at).await;
            }
            let at = Instant::now();
            c.next = Some(at + interval);
            let result = probe(executor, task, &check.probe, ports, timeout).await;
            if let Some(change) = c.state.observe(at - started, result) {
                return Some((change, c));
            }
        }
    }))
}

/// One service instance to run.
#[derive(Debug, Clone)]
pub struct InstanceRequest {
    /// Fully resolved task (ids, labels, env, published ports set by the caller).
    pub spec: TaskSpec,
    /// How its health is checked; `None`: healthy once started.
    pub health: Option<HealthCheck>,
    /// Where its named ports are reached by the checks.
    pub ports: Ports,
}

/// The config files of a service instance ([`run_instance_configured`]).
#[derive(Debug)]
pub struct InstanceConfig {
    /// Where they are written on this host (one directory per instance).
    pub dir: PathBuf,
    /// Where a container sees them (an absolute path; bind-mounted read-only).
    pub path: String,
    /// The release the instance starts with.
    pub first: ConfigFiles,
    /// Releases that come while it runs, in order.
    pub updates: mpsc::UnboundedReceiver<ConfigChange>,
}

/// A release for a running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Its files.
    pub files: ConfigFiles,
    /// The signal to send once they are written (`HUP`), if the files changed.
    pub signal: Option<String>,
}

/// What happens to a running instance, in order: a first `ConfigApplied` for an instance
/// with config files, `Started`, then `Log` lines, `Health` changes and `ConfigApplied`
/// interleaved.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceEvent {
    /// The main container or process started.
    Started,
    /// One line of output.
    Log(LogLine),
    /// Its health changed (or was first established).
    Health(HealthChange),
    /// Its config files are those of this release (written, or already the same bytes).
    ConfigApplied {
        /// The release.
        release: u32,
        /// Its digest.
        digest: String,
    },
}

/// A line of Kiln's own in an instance's log.
fn note(text: String) -> InstanceEvent {
    InstanceEvent::Log(LogLine { stream: Stream::Stderr, time: chrono::Utc::now(), text })
}

/// Writes `files` into `dir` off the async threads; whether anything was written.
async fn write_files(dir: &Path, files: &ConfigFiles) -> Result<bool, String> {
    let (dir, files) = (dir.to_path_buf(), files.clone());
    tokio::task::spawn_blocking(move || config_files::write(&dir, &files))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Writes a release for a running instance, then sends its signal if the files changed;
/// what to report.
async fn apply_change(
    executor: &dyn Executor,
    task: &TaskId,
    dir: &Path,
    change: ConfigChange,
) -> Vec<InstanceEvent> {
    let ConfigFiles { release, digest, .. } = change.files.clone();
    let applied = InstanceEvent::ConfigApplied { release, digest: digest.clone() };
    match write_files(dir, &change.files).await {
        Err(e) => vec![note(format!("kiln: config release {release} could not be written: {e}"))],
        Ok(false) => vec![
            note(format!("kiln: config release {release} has the files it has: nothing written")),
            applied,
        ],
        Ok(true) => {
            let mut out = vec![note(format!("kiln: config release {release} written ({digest})"))];
            if let Some(signal) = &change.signal {
                out.push(match executor.signal(task, signal).await {
                    Ok(()) => note(format!("kiln: sent SIG{signal}")),
                    Err(e) => note(format!("kiln: could not send SIG{signal}: {e}")),
                });
            }
            out.push(applied);
            out
        }
    }
}

/// Detail of the health an instance without a health check gets once started.
pub const NO_CHECK: &str = "running (no health check)";

/// Runs a service instance until `cancel` (it is killed: `Outcome::Canceled`) or until it
/// exits on its own (`Outcome::Exited` with its code), its health checked meanwhile; an
/// executor failure is `Outcome::Error`. No timeout; `JOB_OUT` lines are plain log lines.
/// Like [`drive_task`](crate::drive_task) (whose steps it shares), it never fails and
/// destroys the task before returning. Health checks stop when the instance exits.
pub async fn run_instance(
    executor: &dyn Executor,
    req: InstanceRequest,
    cancel: CancellationToken,
    on_event: impl FnMut(InstanceEvent) + Send,
) -> Outcome {
    run_instance_configured(executor, req, None, cancel, on_event).await
}

/// [`run_instance`] with config files (see the module docs): they are written before the
/// instance starts (a failure is `Outcome::Error`, nothing started), and each update is
/// written, then signalled, while it runs.
pub async fn run_instance_configured(
    executor: &dyn Executor,
    req: InstanceRequest,
    config: Option<InstanceConfig>,
    cancel: CancellationToken,
    mut on_event: impl FnMut(InstanceEvent) + Send,
) -> Outcome {
    let InstanceRequest { mut spec, health, ports } = req;
    let mut updates = None;
    if let Some(c) = config {
        let seen = if executor.containers() {
            spec.binds.push(kiln_exec::Bind {
                host: c.dir.clone(),
                container: c.path.clone(),
                read_only: true,
            });
            c.path.clone()
        } else {
            c.dir.display().to_string()
        };
        spec.env.insert(CONFIG_DIR_VAR.to_string(), seen.clone());
        spec.env.insert(CONFIG_RELEASE_VAR.to_string(), c.first.release.to_string());
        let (release, digest) = (c.first.release, c.first.digest.clone());
        if let Err(e) = write_files(&c.dir, &c.first).await {
            return Outcome::Error(format!("config release {release} could not be written: {e}"));
        }
        on_event(note(format!("kiln: config release {release} ({digest}) in {seen}")));
        on_event(InstanceEvent::ConfigApplied { release, digest });
        updates = Some((c.dir, c.updates));
    }
    expand_entry(&mut spec);
    let id = spec.id.clone();
    let checks: BoxStream<'_, InstanceEvent> = match &health {
        Some(check) => {
            health_changes(executor, &id, check, &ports).map(InstanceEvent::Health).boxed()
        }
        None => Box::pin(futures::stream::pending()),
    };
    let changes: BoxStream<'_, InstanceEvent> = match updates {
        Some((dir, rx)) => {
            let id = &id;
            futures::stream::unfold((rx, dir), move |(mut rx, dir)| async move {
                let change = rx.recv().await?;
                let events = apply_change(executor, id, &dir, change).await;
                Some((futures::stream::iter(events), (rx, dir)))
            })
            .flatten()
            .boxed()
        }
        None => Box::pin(futures::stream::pending()),
    };
    let beside = futures::stream::select(checks, changes);
    let unchecked = health.is_none();
    let request = TaskRequest { spec, timeout: None, export: None };
    let result = drive_beside(executor, request, cancel, beside, |ev| match ev {
        Driven::Task(TaskEvent::Started) => {
            on_event(InstanceEvent::Started);
            if unchecked {
                on_event(InstanceEvent::Health(HealthChange {
                    healthy: true,
                    detail: NO_CHECK.to_string(),
                }));
            }
        }
        Driven::Task(TaskEvent::Log(line)) => on_event(InstanceEvent::Log(line)),
        Driven::Task(TaskEvent::Output { .. } | TaskEvent::Waiting(_)) => {}
        Driven::Beside(event) => on_event(event),
    })
    .await;
    result.outcome
}

/// Expands `$(NAME)` in `text` with `env`, as Kubernetes expands a container's command
/// and args: a defined variable is replaced by its value, an undefined one is left as
/// written, `$$` is one `$` (so `$$(NAME)` stays `$(NAME)`), any other `$` is kept. The
/// result is one argument whatever the value holds (no word splitting).
pub fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Expands `$(NAME)` in the command and args of an instance with its env
/// ([`expand_vars`]); a script is left alone (its shell expands `$NAME`).
fn expand_entry(spec: &mut TaskSpec) {
    if let kiln_exec::Entry::Command { command, args } = &mut spec.entry {
        for arg in command.iter_mut().flatten().chain(args.iter_mut()) {
            *arg = expand_vars(arg, &spec.env);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_as_kubernetes_expands_them() {
        let env: BTreeMap<String, String> =
            [("KILN_PORT_DISTCC", "31000"), ("CLIENTS", "10.0.0.1/32 10.0.0.2/32"), ("EMPTY", "")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let cases = [
            ("--port=$(KILN_PORT_DISTCC)", "--port=31000"),
            ("$(CLIENTS)", "10.0.0.1/32 10.0.0.2/32"),
            ("a$(EMPTY)b", "ab"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(KILN_PORT_DISTCC)", "$(KILN_PORT_DISTCC)"),
            ("$$$(KILN_PORT_DISTCC)", "$31000"),
            ("cost $5 and $$", "cost $5 and $"),
            ("$HOME $(", "$HOME $("),
            ("$(unclosed", "$(unclosed"),
            ("$", "$"),
            ("$(KILN_PORT_DISTCC)$(KILN_PORT_DISTCC)", "3100031000"),
            ("ünï$(EMPTY)cödé", "ünïcödé"),
        ];
        for (text, want) in cases {
            assert_eq!(expand_vars(text, &env), want, "{text}");
        }
    }

    fn check(grace_ms: u64, failures: u32) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp { port: "web".into() },
            grace: Duration::from_millis(grace_ms),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failures,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn pass() -> ProbeResult {
        Ok("HTTP 200".into())
    }

    fn fail(d: &str) -> ProbeResult {
        Err(d.into())
    }

    fn change(healthy: bool, detail: &str) -> Option<HealthChange> {
        Some(HealthChange { healthy, detail: detail.into() })
    }

    #[test]
    fn the_first_pass_makes_it_healthy_and_later_passes_say_nothing() {
        let mut s = HealthState::new(&check(0, 3));
        assert_eq!(s.healthy(), None);
        assert_eq!(s.observe(secs(0), pass()), change(true, "HTTP 200"));
        assert_eq!(s.observe(secs(1), pass()), None);
        assert_eq!(s.healthy(), Some(true));
    }

    #[test]
    fn failures_in_the_grace_period_do_not_count() {
        let mut s = HealthState::new(&check(10_000, 2));
        for t in 0..10 {
            assert_eq!(s.observe(secs(t), fail("connection refused")), None, "at {t}s");
        }
        assert_eq!(s.healthy(), None);
        // The grace is over: two consecutive failures are needed, not one.
        assert_eq!(s.observe(secs(10), fail("connection refused")), None);
        assert_eq!(s.observe(secs(11), fail("HTTP 503")), change(false, "HTTP 503"));
    }

    #[test]
    fn a_pass_in_the_grace_period_makes_it_healthy() {
        let mut s = HealthState::new(&check(10_000, 1));
        assert_eq!(s.observe(secs(1), fail("connection refused")), None);
        assert_eq!(s.observe(secs(2), pass()), change(true, "HTTP 200"));
        // Still within the grace: a failure is not counted, even after a pass.
        assert_eq!(s.observe(secs(3), fail("connection refused")), None);
        assert_eq!(
            s.observe(secs(11), fail("connection refused")),
            change(false, "connection refused")
        );
    }

    #[test]
    fn consecutive_failures_make_it_unhealthy_once_and_one_pass_heals_it() {
        let mut s = HealthState::new(&check(0, 3));
        assert_eq!(s.observe(secs(0), pass()), change(true, "HTTP 200"));
        assert_eq!(s.observe(secs(1), fail("HTTP 503")), None);
        assert_eq!(s.observe(secs(2), fail("HTTP 503")), None);
        assert_eq!(
            s.observe(secs(3), fail("timed out after 2s")),
            change(false, "timed out after 2s")
        );
        assert_eq!(s.observe(secs(4), fail("HTTP 503")), None);
        assert_eq!(s.healthy(), Some(false));
        assert_eq!(s.observe(secs(5), pass()), change(true, "HTTP 200"));
    }

    #[test]
    fn flapping_below_the_threshold_stays_healthy() {
        let mut s = HealthState::new(&check(0, 3));
        assert_eq!(s.observe(secs(0), pass()), change(true, "HTTP 200"));
        for t in 1..20 {
            let result = if t % 3 == 0 { pass() } else { fail("connection refused") };
            assert_eq!(s.observe(secs(t), result), None, "at {t}s");
        }
        assert_eq!(s.healthy(), Some(true));
    }

    #[test]
    fn never_healthy_is_reported_unhealthy_after_the_failures() {
        let mut s = HealthState::new(&check(0, 0));
        // `failures: 0` counts as 1.
        assert_eq!(s.observe(secs(0), fail("exit 1")), change(false, "exit 1"));
        assert_eq!(s.observe(secs(1), fail("exit 1")), None);
    }

    #[test]
    fn details() {
        assert_eq!(timed_out(Duration::from_secs(2)), "timed out after 2s");
        assert_eq!(timed_out(Duration::from_millis(500)), "timed out after 500ms");
        assert_eq!(timed_out(Duration::from_millis(1500)), "timed out after 1.5s");
        assert_eq!(status_code("HTTP/1.0 200 OK\r"), Some(200));
        assert_eq!(status_code("HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code("HTTP/1.1 2000 x"), None);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_detail(&refused), "connection refused");
        assert_eq!(address(&Ports::new(), "web"), Err("no port named `web`".to_string()));
    }
}
