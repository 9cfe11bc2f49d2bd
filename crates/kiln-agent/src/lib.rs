//! Kiln's agent: registers with a server, long-polls for leases, and runs each leased attempt
//! through an [`Executor`] inside the runtime's PreStart/PostStop wrapper
//! ([`kiln_runtime::wrapper`], the same `kiln run` uses): the `source` checkout, the
//! artifacts of needed jobs and the cache placed into the workspace first, artifacts and
//! cache kept afterwards. Here the wrapper's files come from and go to the server's lease
//! endpoints (`LeaseFiles`); the attempt's lines and events stream to the server in
//! batches, in order.
//!
//! A lease of a service instance ([`Lease::instance`]) runs without the wrapper through
//! [`kiln_runtime::run_instance`]: no timeout, its health checked here, next to it, and
//! each change reported as a `health` event; it holds its slot until it is canceled or
//! exits, and stays listed as held when the agent registers again. Its config files (a
//! service with `config:`) are written under `WORK_DIR/instances/<instance>/config` before
//! it starts, and again for each release the server sends in a poll's answer
//! ([`kiln_api::agent::ConfigUpdate`]: written only when the bytes changed, then signalled),
//! each reported as `config_applied`; the directory goes when the instance ends.
//!
//! Each attempt's scratch space (seed, workspace export, archives) is
//! `WORK_DIR/attempts/<agent name>/<lease>`, removed when the attempt ends; what a killed
//! agent (`kill -9`, a crash) left there is removed when an agent of that name starts again
//! on the work directory, before it registers ([`sweep_attempts`]), as its executor removes
//! the containers or processes and workspaces of those attempts.
//!
//! Its engine's images are reported to the server when it registers and whenever they
//! change, prepull orders are pulled beside the work, and with a size budget the least
//! recently used images no task uses are evicted ([`images`]).
//!
//! The embedded agent of `kiln server` is this same code over loopback HTTP.

pub mod host;
pub mod images;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_api::agent::{AgentEvent, Lease, LeaseReport, LeaseRequest, RegisterAgent};
use kiln_client::{Client, ClientError};
use kiln_engine::Outcome;
use kiln_exec::{Executor, Stream, TaskId};
use kiln_runtime::checkout::Checkout;
use kiln_runtime::config_files::ConfigFiles;
use kiln_runtime::instance::{HealthCheck, Ports, Probe};
use kiln_runtime::task::TaskEvent;
use kiln_runtime::wrapper::{Attempt, Files, FilesError, run_attempt};
use kiln_runtime::{
    ConfigChange, InstanceConfig, InstanceEvent, InstanceRequest, run_instance_configured,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How an agent presents itself and where it works.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Unique name (the host name by default).
    pub name: String,
    /// Jobs at once.
    pub capacity: u32,
    /// Scratch space for seeds, workspace exports and archives (one directory per lease).
    pub work_dir: PathBuf,
    /// What the agent declares of its host: host name, IP (empty: the address the server
    /// sees), resources, host ports and attributes (`held` is filled in by [`run`]).
    pub host: HostFacts,
    /// Most bytes of images its engine keeps (`--image-cache-size`): beyond it the least
    /// recently used images no task uses are removed. `None`: none are.
    pub image_cache_size: Option<u64>,
}

/// What an agent declares of its host when it registers.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Host name.
    pub hostname: String,
    /// IP the node is reached at; empty: the address the server sees.
    pub ip: String,
    /// Resources (`None`: undeclared, only slots count).
    pub resources: Option<kiln_api::pool::Resources>,
    /// Host ports to hand out.
    pub ports: Option<kiln_api::pool::PortRange>,
    /// Attributes.
    pub attributes: std::collections::BTreeMap<String, kiln_api::pool::AttrValue>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The server refused us (bad token, no permission).
    #[error("the server refused the agent: {0}")]
    Refused(ClientError),
    /// The agent and the server speak different versions of the lease protocol; the text
    /// says which one to upgrade.
    #[error("{0}")]
    Protocol(String),
    /// The scratch directory is unusable.
    #[error("work directory `{path}`: {source}")]
    WorkDir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

struct Held {
    cancel: CancellationToken,
    /// For a service instance: its last reported health, sent again after the agent
    /// registers anew (the server may have restarted and missed it).
    health: Option<Arc<Mutex<Option<AgentEvent>>>>,
    /// Its task ended (the process is gone); only its `exited` report may still be on its
    /// way. It no longer takes one of the agent's slots: the server frees its lease the moment
    /// that report lands and wakes the agent's poll, which must then ask for new work.
    ended: Arc<AtomicBool>,
    /// For a service instance with config files: where its new releases go.
    config: Option<mpsc::UnboundedSender<ConfigChange>>,
}

/// Runs the agent until `stop` is cancelled: registers, polls, runs leases. Transport errors
/// are retried with a pause (the server may be restarting); auth errors end it.
pub async fn run(
    client: Client,
    executor: Arc<dyn Executor>,
    config: AgentConfig,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|source| AgentError::WorkDir {
        path: config.work_dir.display().to_string(),
        source,
    })?;
    match sweep_attempts(&config) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "removed the scratch space of {n} attempt(s) an earlier run of agent `{}` left",
            config.name
        ),
        Err(e) => tracing::warn!("{e}"),
    }
    let held: Arc<Mutex<HashMap<String, Held>>> = Arc::default();
    // One reporter sends the events of every lease, several leases per request.
    let live: Arc<Mutex<String>> = Arc::default();
    let (reports, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(UNDELIVERED_LINES));
    let reporter = tokio::spawn(report_events(client.clone(), live.clone(), rx, gate.clone()));
    let images =
        images::ImageCache::new(executor.clone(), &config.work_dir, config.image_cache_size);
    // The cache's keeper ends with this function, however it returns.
    let keeper_stop = stop.child_token();
    let _keeper = keeper_stop.clone().drop_guard();
    tokio::spawn(images.clone().keep(client.clone(), live.clone(), keeper_stop));
    let mut register = RegisterAgent {
        name: config.name.clone(),
        executor: executor.name().to_string(),
        capacity: config.capacity.max(1),
        hostname: config.host.hostname.clone(),
        ip: config.host.ip.clone(),
        resources: config.host.resources,
        ports: config.host.ports,
        attributes: config.host.attributes.clone(),
        held: Vec::new(),
        protocol: kiln_api::agent::PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_string(),
        images: None,
    };
    // The live session's id (set before any `break 'session`).
    let mut session: String;
    'session: loop {
        // Attempts still running from the last session: the server keeps those it still
        // knows and the first poll answers the rest as `unknown` (they are stopped).
        // Service instances are listed too: a server restart adopts them rather than
        // starting copies.
        register.held = held.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        register.images = images.list().await;
        let info = loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                r = client.register_agent(&register) => match r {
                    Ok(info) => break info,
                    Err(e @ ClientError::Api { status: 401 | 403, .. }) => return Err(AgentError::Refused(e)),
                    Err(ClientError::Api { error, .. }) if error.code == kiln_api::codes::AGENT_PROTOCOL => {
                        return Err(AgentError::Protocol(error.message));
                    }
                    Err(e) => {
                        tracing::warn!("agent {}: register: {e}; retrying", config.name);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        };
        // A server older than this agent accepts it without a word: say it here.
        if let Some(why) = kiln_api::agent::protocol_mismatch(
            &register.version,
            register.protocol,
            &info.version,
            info.protocol,
        ) {
            return Err(AgentError::Protocol(why));
        }
        tracing::info!("agent {} registered as {}", config.name, info.id);
        images.registered(register.images.clone());
        session = info.id.clone();
        *live.lock().unwrap_or_else(|p| p.into_inner()) = session.clone();
        // Tell the (perhaps restarted) server how each instance it keeps is doing.
        for (lease, h) in held.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let last =
                h.health.as_ref().and_then(|x| x.lock().unwrap_or_else(|p| p.into_inner()).clone());
            if let Some(event) = last {
                let cancel = h.cancel.clone();
                let r = Report { lease: lease.clone(), event, cancel, done: None, instance: true };
                let _ = reports.send(r);
            }
        }
        loop {
            let (ids, free) = {
                let h = held.lock().unwrap_or_else(|p| p.into_inner());
                let ids: Vec<String> = h.keys().cloned().collect();
                let busy = h.values().filter(|x| !x.ended.load(Ordering::SeqCst)).count();
                let free =
                    register.capacity.saturating_sub(u32::try_from(busy).unwrap_or(u32::MAX));
                (ids, free)
            };
            let req = LeaseRequest { held: ids, free, wait_ms: 20_000 };
            let resp = tokio::select! {
                () = stop.cancelled() => break 'session,
                r = client.lease(&info.id, &req) => r,
            };
            let resp = match resp {
                Ok(r) => r,
                Err(ClientError::Api { status: 404, .. }) => continue 'session,
                Err(e @ ClientError::Api { status: 401 | 403, .. }) => {
                    return Err(AgentError::Refused(e));
                }
                Err(e) => {
                    tracing::warn!("agent {}: lease poll: {e}; retrying", config.name);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let h = held.lock().unwrap_or_else(|p| p.into_inner());
            for id in resp.cancel.iter().chain(&resp.unknown) {
                if let Some(x) = h.get(id) {
                    x.cancel.cancel();
                }
            }
            for update in resp.config {
                match h.get(&update.lease).and_then(|x| x.config.as_ref()) {
                    Some(tx) => {
                        let _ = tx.send(config_change(update));
                    }
                    None => tracing::warn!(
                        "agent {}: config release {} for lease {}, which runs no instance with \
                         config files here",
                        config.name,
                        update.release,
                        update.lease
                    ),
                }
            }
            drop(h);
            for order in resp.prepull {
                images.prepull(order);
            }
            for lease in resp.leases {
                let cancel = stop.child_token();
                let health = lease.instance.as_ref().map(|_| Arc::new(Mutex::new(None)));
                let ended = Arc::new(AtomicBool::new(false));
                let (config_tx, updates) =
                    match lease.instance.as_ref().and_then(|i| i.config.as_ref()) {
                        Some(_) => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            (Some(tx), Some(rx))
                        }
                        None => (None, None),
                    };
                held.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    lease.id.clone(),
                    Held {
                        cancel: cancel.clone(),
                        health: health.clone(),
                        ended: ended.clone(),
                        config: config_tx,
                    },
                );
                let (client, executor, held, config, reports, gate) = (
                    client.clone(),
                    executor.clone(),
                    held.clone(),
                    config.clone(),
                    reports.clone(),
                    gate.clone(),
                );
                let job = &lease.start.job;
                let in_use = images.using(
                    job.image
                        .iter()
                        .map(String::as_str)
                        .chain(job.services.iter().map(|s| s.image.as_str())),
                );
                tokio::spawn(async move {
                    let _in_use = in_use;
                    let id = lease.id.clone();
                    match health {
                        Some(health) => {
                            let ex = executor.as_ref();
                            let (r, c) = (&reports, &config);
                            let running = RunningInstance {
                                cancel,
                                last_health: health,
                                ended: &ended,
                                updates,
                            };
                            run_instance_lease(r, ex, c, lease, running).await;
                        }
                        None => {
                            let ex = Paced { inner: executor, gate };
                            run_lease(&client, &reports, &ex, &config, lease, cancel, &ended).await;
                        }
                    }
                    held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                });
            }
        }
    }
    // Stopping: cancel what runs and give it a moment to report, then say goodbye so the
    // node shows `down` rather than `lost`.
    for h in held.lock().unwrap_or_else(|p| p.into_inner()).values() {
        h.cancel.cancel();
    }
    for _ in 0..50 {
        if held.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(reports);
    let _ = tokio::time::timeout(Duration::from_secs(2), reporter).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.leave_agent(&session)).await;
    Ok(())
}

/// Log lines of job attempts read from their executors and not yet delivered to the server,
/// at most: an attempt's output is read no faster than the server takes it, so a job that
/// floods its output holds a bounded amount of memory here (as a pipe would), not all of it.
const UNDELIVERED_LINES: usize = 20_000;

/// An executor whose tasks' output lines each take a permit of `gate` before they are read
/// on; [`report_events`] gives them back once the lines are delivered (or given up).
struct Paced {
    inner: Arc<dyn Executor>,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Executor for Paced {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn containers(&self) -> bool {
        self.inner.containers()
    }

    fn posix_shell(&self) -> bool {
        self.inner.posix_shell()
    }

    fn check(&self, task: &kiln_exec::TaskSpec) -> Result<(), kiln_exec::ExecError> {
        self.inner.check(task)
    }

    async fn setup(&self, task: &kiln_exec::TaskSpec) -> Result<(), kiln_exec::ExecError> {
        self.inner.setup(task).await
    }

    fn waiting(&self, id: &TaskId) -> Option<String> {
        self.inner.waiting(id)
    }

    async fn start(
        &self,
        task: &kiln_exec::TaskSpec,
    ) -> Result<kiln_exec::LogStream, kiln_exec::ExecError> {
        use futures::StreamExt;
        let gate = self.gate.clone();
        let lines = self.inner.start(task).await?;
        Ok(lines
            .then(move |line| {
                let gate = gate.clone();
                async move {
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    line
                }
            })
            .boxed())
    }

    async fn wait(&self, id: &TaskId) -> Result<kiln_exec::ExitStatus, kiln_exec::ExecError> {
        self.inner.wait(id).await
    }

    async fn kill(&self, id: &TaskId) -> Result<(), kiln_exec::ExecError> {
        self.inner.kill(id).await
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), kiln_exec::ExecError> {
        self.inner.export_workspace(id, dest).await
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), kiln_exec::ExecError> {
        self.inner.destroy(id).await
    }

    async fn exec(
        &self,
        id: &TaskId,
        argv: &[String],
    ) -> Result<kiln_exec::ExitStatus, kiln_exec::ExecError> {
        self.inner.exec(id, argv).await
    }

    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), kiln_exec::ExecError> {
        self.inner.signal(id, signal).await
    }

    async fn list_images(&self) -> Result<Vec<kiln_exec::ImageInfo>, kiln_exec::ExecError> {
        self.inner.list_images().await
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&kiln_exec::RegistryAuth>,
    ) -> Result<(), kiln_exec::ExecError> {
        self.inner.pull_image(image, auth).await
    }
}

/// One event of a lease, on its way to the server.
struct Report {
    lease: String,
    event: AgentEvent,
    /// Cancels the lease's task (the server canceled or forgot the lease).
    cancel: CancellationToken,
    /// With the lease's last event (`exited`): told once it was delivered or given up.
    done: Option<oneshot::Sender<()>>,
    /// A service instance's: not canceled when reports cannot be delivered (the server may
    /// be restarting; it adopts the instance when the agent registers again).
    instance: bool,
}

/// Reports events to the server in order, batching whatever queued up while the last post
/// was in flight, of every lease, into one request (`live` is the current session). A lease
/// the server no longer knows has its task canceled and its later events dropped. When a
/// batch cannot be delivered, job attempts in it are canceled; service instances keep
/// running (their events in it are lost).
async fn report_events(
    client: Client,
    live: Arc<Mutex<String>>,
    mut rx: mpsc::UnboundedReceiver<Report>,
    gate: Arc<Semaphore>,
) {
    let mut gone: HashSet<String> = HashSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // The permits of the attempts' lines in it come back once the batch is done with,
        // however that goes (never more than were taken: a few lines, the wrapper's notes,
        // took none).
        let lines = batch
            .iter()
            .filter(|r| !r.instance && matches!(r.event, AgentEvent::Log { .. }))
            .count();
        let _give_back = GiveBack { gate: &gate, lines };
        let mut reports: Vec<LeaseReport> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut tokens: HashMap<String, (CancellationToken, bool)> = HashMap::new();
        let mut done = Vec::new();
        for r in batch {
            if let Some(d) = r.done {
                done.push((r.lease.clone(), d));
            }
            if gone.contains(&r.lease) {
                continue;
            }
            let i = *at.entry(r.lease.clone()).or_insert_with(|| {
                reports.push(LeaseReport { lease: r.lease.clone(), events: Vec::new() });
                reports.len() - 1
            });
            reports[i].events.push(r.event);
            tokens.entry(r.lease).or_insert((r.cancel, r.instance));
        }
        let mut tries = 0;
        while !reports.is_empty() {
            let session = live.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match client.lease_reports(&session, &reports).await {
                Ok(resp) => {
                    for lease in &resp.cancel {
                        if let Some((t, _)) = tokens.get(lease) {
                            t.cancel();
                        }
                    }
                    // The server forgot these (lost, or it restarted): stop their tasks.
                    for lease in resp.unknown {
                        if let Some((t, _)) = tokens.get(&lease) {
                            t.cancel();
                        }
                        gone.insert(lease);
                    }
                    break;
                }
                Err(e) => {
                    tries += 1;
                    if tries > 20 {
                        tracing::warn!("giving up reporting {} lease(s): {e}", reports.len());
                        for (lease, (token, instance)) in tokens.drain() {
                            if !instance {
                                token.cancel();
                                gone.insert(lease);
                            }
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        for (lease, d) in done {
            // Nothing of a lease comes after its `exited`.
            gone.remove(&lease);
            let _ = d.send(());
        }
    }
}

/// Gives `lines` permits back to `gate` when dropped, never more than were taken.
struct GiveBack<'a> {
    gate: &'a Semaphore,
    lines: usize,
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        let taken = UNDELIVERED_LINES.saturating_sub(self.gate.available_permits());
        self.gate.add_permits(self.lines.min(taken));
    }
}

/// Hands a lease's events to the reporter, in order; returns once its `exited` was
/// delivered (or given up).
async fn forward_events(
    lease: String,
    mut rx: mpsc::UnboundedReceiver<AgentEvent>,
    reports: mpsc::UnboundedSender<Report>,
    cancel: CancellationToken,
    instance: bool,
) {
    let (done_tx, done_rx) = oneshot::channel();
    let mut done_tx = Some(done_tx);
    while let Some(event) = rx.recv().await {
        let done = if matches!(event, AgentEvent::Exited { .. }) { done_tx.take() } else { None };
        let r = Report { lease: lease.clone(), event, cancel: cancel.clone(), done, instance };
        if reports.send(r).is_err() {
            return;
        }
    }
    if done_tx.is_none() {
        let _ = done_rx.await;
    }
}

/// One leased attempt, wrapped: PreStart, run, PostStop, `exited`.
async fn run_lease(
    client: &Client,
    reports: &mpsc::UnboundedSender<Report>,
    executor: &dyn Executor,
    config: &AgentConfig,
    lease: Lease,
    cancel: CancellationToken,
    ended: &AtomicBool,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender =
        tokio::spawn(forward_events(lease.id.clone(), rx, reports.clone(), cancel.clone(), false));
    let dir = attempts_dir(config).join(&lease.id);
    let outcome = wrapped(client, executor, config, &lease, &dir, &tx, &cancel).await;
    ended.store(true, Ordering::SeqCst);
    let _ = tx.send(AgentEvent::Exited { outcome });
    drop(tx);
    let _ = sender.await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Where the agent keeps its attempts' scratch space: `WORK_DIR/attempts/<name>` (the name
/// with anything but letters, digits, `.`, `_` and `-` as `_`), so that agents sharing a
/// work directory (each has its own name) never touch each other's.
pub fn attempts_dir(config: &AgentConfig) -> PathBuf {
    let name: String = config
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    let name = if name.trim_matches('.').is_empty() { format!("_{name}") } else { name };
    config.work_dir.join("attempts").join(name)
}

/// Removes the scratch space of attempts an earlier run of this agent left when it was
/// killed (nothing of this run exists yet: call it before the first lease); how many. Also
/// the scratch directories earlier versions kept right in the work directory
/// (`WORK_DIR/<lease id>`, 32 hex digits), which no agent of this version uses.
pub fn sweep_attempts(config: &AgentConfig) -> Result<usize, String> {
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(&config.work_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let old = name.to_str().is_some_and(|n| {
                n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
            let path = entry.path();
            if old && path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| format!("removing {}: {e}", path.display()))?;
                removed += 1;
            }
        }
    }
    let dir = attempts_dir(config);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    for entry in entries {
        let path = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?.path();
        let gone = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(|e| format!("removing {}: {e}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

/// The lease endpoints of the server, as the wrapper's [`Files`]: inputs and caches are
/// downloaded, artifacts and caches uploaded, all under the lease's id.
struct LeaseFiles<'a> {
    client: &'a Client,
    lease: &'a str,
}

impl Files for LeaseFiles<'_> {
    async fn fetch_input(&self, job: &str, dest: &Path) -> Result<bool, FilesError> {
        match self.client.lease_input(self.lease, job).await? {
            Some(bytes) => {
                tokio::fs::write(dest, &bytes).await.map_err(|e| format!("write input: {e}"))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn fetch_cache(&self, key: &str, dest: &Path) -> Result<bool, FilesError> {
        match self.client.lease_cache(self.lease, key).await? {
            Some(bytes) => {
                tokio::fs::write(dest, &bytes).await.map_err(|e| format!("write cache: {e}"))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn put_artifacts(&self, archive: &Path) -> Result<(), FilesError> {
        let body = tokio::fs::read(archive)
            .await
            .map_err(|e| format!("reading the artifact archive failed: {e}"))?;
        self.client.put_lease_artifacts(self.lease, body).await?;
        Ok(())
    }

    async fn put_cache(&self, key: &str, archive: &Path) -> Result<(), FilesError> {
        let body = tokio::fs::read(archive)
            .await
            .map_err(|e| format!("reading the cache archive failed: {e}"))?;
        self.client.put_lease_cache(self.lease, key, body).await?;
        Ok(())
    }
}

/// The task of a lease: the job's, with the lease's env, its id and labels, and the host
/// ports the scheduler gave it.
fn lease_spec(config: &AgentConfig, lease: &Lease, posix_shell: bool) -> kiln_exec::TaskSpec {
    let job = &lease.start.job;
    let mut spec =
        kiln_runtime::local::task_spec(&lease.run, lease.job_index, &lease.start, posix_shell);
    let tail = &lease.id[lease.id.len().saturating_sub(12)..];
    spec.id = TaskId::sanitized(&format!("kiln-{tail}-{}-{}", job.id, lease.start.attempt));
    spec.env.extend(lease.env.clone());
    // The host ports the scheduler gave the job (`KILN_PORT_<NAME>`), published to the
    // container ports it named; with the host network it listens on them itself.
    spec.host_network = job.scheduling.host_network;
    for (_, host, container) in lease_ports(lease) {
        spec.ports.push(kiln_exec::PortMap { host, container });
    }
    spec.labels.insert("kiln.agent".into(), config.name.clone());
    spec.labels.insert("kiln.lease".into(), lease.id.clone());
    spec.pull_auth = lease.pull.as_ref().map(|p| kiln_exec::RegistryAuth {
        registry: p.registry.clone(),
        username: p.username.clone(),
        password: p.password.clone(),
    });
    spec
}

/// The job's named ports with the host port the lease gives each (`KILN_PORT_<NAME>`) and
/// the container port (the host port when it names none).
fn lease_ports(lease: &Lease) -> Vec<(String, u16, u16)> {
    let mut out = Vec::new();
    for p in &lease.start.job.scheduling.ports {
        let var = kiln_scheduler::port_env_name(&p.name);
        if let Some(host) = lease.env.get(&var).and_then(|v| v.parse::<u16>().ok()) {
            out.push((p.name.clone(), host, p.container.unwrap_or(host)));
        }
    }
    out
}

/// Where an instance's health checks reach its named ports: the host port on loopback for
/// the process executor (the process listens on the port it was told, on this host), else
/// on the node's IP (`KILN_HOST_IP`, where the engine publishes them; loopback when unset).
pub fn instance_ports(executor: &str, lease: &Lease) -> Ports {
    let node_ip = lease.env.get("KILN_HOST_IP").and_then(|ip| ip.parse::<IpAddr>().ok());
    let ip = match executor {
        "process" => None,
        _ => node_ip,
    }
    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    lease_ports(lease)
        .into_iter()
        .map(|(name, host, _)| (name, SocketAddr::new(ip, host)))
        .collect()
}

/// The runtime's form of a lease's health check.
pub fn health_check(check: &kiln_api::agent::HealthCheck) -> HealthCheck {
    use kiln_api::agent::Probe as P;
    HealthCheck {
        probe: match &check.probe {
            P::Tcp { port } => Probe::Tcp { port: port.clone() },
            P::Http { port, path } => Probe::Http { port: port.clone(), path: path.clone() },
            P::Command { argv } => Probe::Command { argv: argv.clone() },
        },
        grace: Duration::from_millis(check.grace_ms),
        interval: Duration::from_millis(check.interval_ms),
        timeout: Duration::from_millis(check.timeout_ms),
        failures: check.failures,
    }
}

/// A line of output as the lease protocol carries it.
fn log_event(line: kiln_exec::LogLine) -> AgentEvent {
    let stream = match line.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    AgentEvent::Log { stream: stream.into(), time: line.time, text: line.text }
}

/// The runtime's form of a config update.
fn config_change(u: kiln_api::agent::ConfigUpdate) -> ConfigChange {
    ConfigChange {
        files: ConfigFiles { release: u.release, digest: u.digest, files: u.files },
        signal: u.signal,
    }
}

/// Where an instance's config files are written on this host.
pub fn instance_config_dir(config: &AgentConfig, instance: &str) -> PathBuf {
    config.work_dir.join("instances").join(instance).join("config")
}

/// What the agent keeps of a running instance, beside its lease.
struct RunningInstance<'a> {
    cancel: CancellationToken,
    /// Its last health report, sent again after the agent registers anew.
    last_health: Arc<Mutex<Option<AgentEvent>>>,
    /// Set once its task ended.
    ended: &'a AtomicBool,
    /// Config releases for it (an instance with config files).
    updates: Option<mpsc::UnboundedReceiver<ConfigChange>>,
}

/// A service instance's lease: no wrapper (no checkout, artifacts or caches) and no
/// timeout; it runs until the lease is canceled or it exits, reporting `started`, `log`
/// lines, `health` changes (the last kept in `last_health`), `config_applied` and `exited`.
async fn run_instance_lease(
    reports: &mpsc::UnboundedSender<Report>,
    executor: &dyn Executor,
    config: &AgentConfig,
    lease: Lease,
    running: RunningInstance<'_>,
) {
    let RunningInstance { cancel, last_health, ended, updates } = running;
    let (tx, rx) = mpsc::unbounded_channel();
    let sender =
        tokio::spawn(forward_events(lease.id.clone(), rx, reports.clone(), cancel.clone(), true));
    let mut spec = lease_spec(config, &lease, executor.posix_shell());
    let instance = lease.instance.as_ref();
    if let Some(i) = instance {
        spec.labels.insert("kiln.service".into(), i.service.clone());
        spec.labels.insert("kiln.instance".into(), i.instance.clone());
    }
    let req = InstanceRequest {
        spec,
        health: instance.and_then(|i| i.health.as_ref()).map(health_check),
        ports: instance_ports(executor.name(), &lease),
    };
    let files = instance.and_then(|i| Some((i, i.config.as_ref()?)));
    let dir = files.map(|(i, _)| instance_config_dir(config, &i.instance));
    let instance_config = files.zip(dir.clone()).map(|((_, c), dir)| InstanceConfig {
        dir,
        path: c.path.clone(),
        first: ConfigFiles { release: c.release, digest: c.digest.clone(), files: c.files.clone() },
        updates: updates.unwrap_or_else(|| mpsc::unbounded_channel().1),
    });
    let outcome = run_instance_configured(executor, req, instance_config, cancel.clone(), |ev| {
        let _ = tx.send(match ev {
            InstanceEvent::Started => AgentEvent::Started,
            InstanceEvent::Log(line) => log_event(line),
            InstanceEvent::Health(h) => {
                let event = AgentEvent::Health { healthy: h.healthy, detail: h.detail };
                *last_health.lock().unwrap_or_else(|p| p.into_inner()) = Some(event.clone());
                event
            }
            InstanceEvent::ConfigApplied { release, digest } => {
                AgentEvent::ConfigApplied { release, digest }
            }
        });
    })
    .await;
    // The instance is gone (its container destroyed): so are its files.
    if let Some(instance_dir) = dir.as_deref().and_then(Path::parent) {
        let _ = tokio::fs::remove_dir_all(instance_dir).await;
    }
    ended.store(true, Ordering::SeqCst);
    let _ = tx.send(AgentEvent::Exited { outcome });
    drop(tx);
    let _ = sender.await;
}

/// The lease's attempt inside the runtime's wrapper; its events go to `tx`.
async fn wrapped(
    client: &Client,
    executor: &dyn Executor,
    config: &AgentConfig,
    lease: &Lease,
    dir: &Path,
    tx: &mpsc::UnboundedSender<AgentEvent>,
    cancel: &CancellationToken,
) -> Outcome {
    let job = &lease.start.job;
    let spec = lease_spec(config, lease, executor.posix_shell());
    let checkout = lease.checkout.as_ref().map(|c| Checkout {
        repository: c.repository.clone(),
        git_ref: c.git_ref.clone(),
        commit: c.commit.clone(),
        credentials: c.credentials.clone(),
    });
    let attempt =
        Attempt { job, spec, inputs: &lease.inputs, checkout: checkout.as_ref(), cache: true, dir };
    let files = LeaseFiles { client, lease: &lease.id };
    run_attempt(executor, &files, attempt, cancel, |ev| {
        let _ = tx.send(match ev {
            TaskEvent::Started => AgentEvent::Started,
            TaskEvent::Log(l) => log_event(l),
            TaskEvent::Output { key, value } => AgentEvent::Output { key, value },
            TaskEvent::Waiting(reason) => AgentEvent::Waiting { reason },
        });
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_api::agent::{HealthCheck as WireCheck, InstanceLease, Probe as WireProbe};
    use kiln_engine::{Command, Run, StartJob};
    use kiln_exec_process::{ProcessConfig, ProcessExecutor};
    use kiln_workflow::{Loader, Source};

    use super::*;

    struct Text(&'static str);

    impl Loader for Text {
        fn load(&self, _from: &str, path: &str) -> Result<Source, String> {
            Ok(Source { name: path.to_string(), text: self.0.to_string() })
        }
    }

    /// A service instance as the server would lease it: python's HTTP server on
    /// `KILN_PORT_WEB`.
    const SERVICE: &str = r#"
name: shop
stages:
  - name: run
    jobs:
      web:
        image: busybox
        command: ["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 $KILN_PORT_WEB"]
        timeout: 1s
        network: host
        ports:
          - { name: web }
"#;

    fn start_job() -> StartJob {
        let compiled = kiln_workflow::compile("shop.yml", &Text(SERVICE));
        let plan = compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics));
        let params = kiln_workflow::bind_params(&plan, &[]).expect("defaults bind");
        let mut run = Run::new(Arc::new(plan), params);
        run.start()
            .into_iter()
            .find_map(|c| match c {
                Command::StartJob(sj) => Some(*sj),
                _ => None,
            })
            .expect("the job starts")
    }

    fn instance_lease(port: u16) -> Lease {
        let check = WireCheck {
            probe: WireProbe::Http { port: "web".into(), path: "/".into() },
            grace_ms: 10_000,
            interval_ms: 100,
            timeout_ms: 1_000,
            failures: 3,
        };
        Lease {
            id: "0190a1b2c3d4e5f6".into(),
            run: "svc".into(),
            run_name: "shop/web".into(),
            project: "shop".into(),
            job_index: 0,
            start: start_job(),
            env: BTreeMap::from([
                ("KILN_PORT_WEB".to_string(), port.to_string()),
                ("KILN_HOST_IP".to_string(), "10.1.2.3".to_string()),
            ]),
            inputs: Vec::new(),
            checkout: None,
            instance: Some(InstanceLease {
                service: "shop/web".into(),
                instance: "web-1".into(),
                slot: 0,
                version: 1,
                health: Some(check),
                config: None,
            }),
            pull: None,
        }
    }

    #[test]
    fn checks_reach_ports_on_loopback_for_processes_and_on_the_node_ip_for_containers() {
        let lease = instance_lease(31005);
        let web = |ports: Ports| ports.get("web").copied().map(|a| a.to_string());
        assert_eq!(web(instance_ports("process", &lease)).as_deref(), Some("127.0.0.1:31005"));
        assert_eq!(web(instance_ports("docker", &lease)).as_deref(), Some("10.1.2.3:31005"));
        let check = health_check(lease.instance.as_ref().unwrap().health.as_ref().unwrap());
        assert_eq!(check.probe, Probe::Http { port: "web".into(), path: "/".into() });
        assert_eq!(check.interval, Duration::from_millis(100));
        assert_eq!((check.grace, check.failures), (Duration::from_secs(10), 3));
    }

    #[test]
    fn the_sweep_removes_this_agent_s_attempts_and_old_scratch_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let config = |name: &str| AgentConfig {
            name: name.into(),
            capacity: 1,
            work_dir: work.clone(),
            host: HostFacts::default(),
            image_cache_size: None,
        };
        let (me, other) = (config("build/1"), config("other"));
        assert_eq!(attempts_dir(&me), work.join("attempts").join("build_1"));
        assert_eq!(attempts_dir(&config("..")), work.join("attempts").join("_.."));
        let mine = attempts_dir(&me).join("0190aaaabbbbccccddddeeeeffff0000");
        let theirs = attempts_dir(&other).join("0190aaaabbbbccccddddeeeeffff0001");
        let old = work.join("0190aaaabbbbccccddddeeeeffff0002");
        for dir in [&mine, &theirs, &old, &work.join("procs"), &work.join("instances")] {
            std::fs::create_dir_all(dir.join("seed")).unwrap();
        }
        std::fs::write(work.join("images.json"), "{}").unwrap();

        assert_eq!(sweep_attempts(&me), Ok(2));
        assert!(!mine.exists() && !old.exists(), "this agent's and the old layout's are gone");
        for kept in [&theirs, &work.join("procs"), &work.join("instances")] {
            assert!(kept.is_dir(), "{} is another's or not scratch", kept.display());
        }
        assert!(work.join("images.json").is_file());
        assert_eq!(sweep_attempts(&me), Ok(0), "nothing twice");
    }

    #[tokio::test]
    async fn an_instance_lease_reports_started_health_and_canceled_with_no_timeout() {
        let root = tempfile::tempdir().unwrap();
        let executor = ProcessExecutor::new(ProcessConfig {
            root: root.path().to_path_buf(),
            ..ProcessConfig::default()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = AgentConfig {
            name: "a1".into(),
            capacity: 1,
            work_dir: root.path().join("work"),
            host: HostFacts::default(),
            image_cache_size: None,
        };
        let (reports, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let last = Arc::new(Mutex::new(None));
        let lease = instance_lease(port);
        let id = lease_spec(&config, &lease, true).id;
        let run = {
            let (cancel, last) = (cancel.clone(), last.clone());
            async move {
                let ended = AtomicBool::new(false);
                let running =
                    RunningInstance { cancel, last_health: last, ended: &ended, updates: None };
                run_instance_lease(&reports, &executor, &config, lease, running).await;
                executor
            }
        };
        let watch = async {
            let mut events = Vec::new();
            loop {
                let r: Report = rx.recv().await.expect("reports until exited");
                assert_eq!(r.lease, "0190a1b2c3d4e5f6");
                assert!(r.instance, "{:?}", r.event);
                let healthy = matches!(r.event, AgentEvent::Health { healthy: true, .. });
                let exited = matches!(r.event, AgentEvent::Exited { .. });
                events.push(r.event);
                if healthy {
                    // Well past the job's `timeout: 1s`: an instance has none.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    cancel.cancel();
                }
                if exited {
                    r.done.expect("exited waits for delivery").send(()).unwrap();
                    return events;
                }
            }
        };
        let (executor, events) =
            tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(run, watch) })
                .await
                .expect("the lease ends once canceled");
        assert_eq!(events.first(), Some(&AgentEvent::Started), "{events:?}");
        let health = AgentEvent::Health { healthy: true, detail: "HTTP 200".into() };
        let healths: Vec<_> =
            events.iter().filter(|e| matches!(e, AgentEvent::Health { .. })).collect();
        assert_eq!(healths, [&health], "{events:?}");
        assert_eq!(
            events.last(),
            Some(&AgentEvent::Exited { outcome: Outcome::Canceled }),
            "{events:?}"
        );
        assert_eq!(*last.lock().unwrap(), Some(health));
        assert!(executor.leftovers(&id).is_empty(), "{:?}", executor.leftovers(&id));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "the instance still answers"
        );
    }

    #[tokio::test]
    async fn undeliverable_reports_cancel_attempts_but_not_instances() {
        // Nothing listens there: every report fails, as while the server restarts.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(UNDELIVERED_LINES));
        let reporter = tokio::spawn(report_events(client, Arc::default(), rx, gate));
        let (job, instance) = (CancellationToken::new(), CancellationToken::new());
        for (lease, cancel, is_instance) in [("job", &job, false), ("svc", &instance, true)] {
            let event = AgentEvent::Health { healthy: true, detail: "HTTP 200".into() };
            let cancel = cancel.clone();
            let r =
                Report { lease: lease.into(), event, cancel, done: None, instance: is_instance };
            tx.send(r).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(60), job.cancelled())
            .await
            .expect("the attempt is canceled once its reports are given up");
        assert!(!instance.is_cancelled(), "the instance keeps running");
        drop(tx);
        reporter.await.unwrap();
    }
}
