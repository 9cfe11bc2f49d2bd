//! Kiln's agent: registers with a server, long-polls for leases, and runs each leased attempt
//! through an [`Executor`] inside the runtime's PreStart/PostStop wrapper
//! ([`kiln_runtime::wrapper`], the same `kiln run` uses): the `source` checkout, the
//! artifacts of needed jobs and the cache placed into the workspace first, artifacts and
//! cache kept afterwards. Here the wrapper's files come from and go to the server's lease
//! endpoints (`LeaseFiles`); the attempt's lines and events stream to the server in
//! batches, in order.
//!
//! The embedded agent of `kiln server` is this same code over loopback HTTP.

pub mod host;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_api::agent::{AgentEvent, Lease, LeaseReport, LeaseRequest, RegisterAgent};
use kiln_client::{Client, ClientError};
use kiln_engine::Outcome;
use kiln_exec::{Executor, Stream, TaskId};
use kiln_runtime::checkout::Checkout;
use kiln_runtime::task::TaskEvent;
use kiln_runtime::wrapper::{Attempt, Files, FilesError, run_attempt};
use tokio::sync::{mpsc, oneshot};
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
    let held: Arc<Mutex<HashMap<String, Held>>> = Arc::default();
    // One reporter sends the events of every lease, several leases per request.
    let live: Arc<Mutex<String>> = Arc::default();
    let (reports, rx) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(report_events(client.clone(), live.clone(), rx));
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
    };
    // The live session's id (set before any `break 'session`).
    let mut session: String;
    'session: loop {
        // Attempts still running from the last session: the server keeps those it still
        // knows and the first poll answers the rest as `unknown` (they are stopped).
        register.held = held.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
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
        session = info.id.clone();
        *live.lock().unwrap_or_else(|p| p.into_inner()) = session.clone();
        loop {
            let (ids, free) = {
                let h = held.lock().unwrap_or_else(|p| p.into_inner());
                let ids: Vec<String> = h.keys().cloned().collect();
                let free =
                    register.capacity.saturating_sub(u32::try_from(ids.len()).unwrap_or(u32::MAX));
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
            drop(h);
            for lease in resp.leases {
                let cancel = stop.child_token();
                held.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(lease.id.clone(), Held { cancel: cancel.clone() });
                let (client, executor, held, config, reports) = (
                    client.clone(),
                    executor.clone(),
                    held.clone(),
                    config.clone(),
                    reports.clone(),
                );
                tokio::spawn(async move {
                    let id = lease.id.clone();
                    run_lease(&client, &reports, executor.as_ref(), &config, lease, cancel).await;
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

/// One event of a lease, on its way to the server.
struct Report {
    lease: String,
    event: AgentEvent,
    /// Cancels the lease's task (the server canceled or forgot the lease).
    cancel: CancellationToken,
    /// With the lease's last event (`exited`): told once it was delivered or given up.
    done: Option<oneshot::Sender<()>>,
}

/// Reports events to the server in order, batching whatever queued up while the last post
/// was in flight, of every lease, into one request (`live` is the current session). A lease
/// the server no longer knows has its task canceled and its later events dropped.
async fn report_events(
    client: Client,
    live: Arc<Mutex<String>>,
    mut rx: mpsc::UnboundedReceiver<Report>,
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
        let mut reports: Vec<LeaseReport> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut tokens: HashMap<String, CancellationToken> = HashMap::new();
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
            tokens.entry(r.lease).or_insert(r.cancel);
        }
        let mut tries = 0;
        while !reports.is_empty() {
            let session = live.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match client.lease_reports(&session, &reports).await {
                Ok(resp) => {
                    for lease in &resp.cancel {
                        tokens.get(lease).map(CancellationToken::cancel);
                    }
                    // The server forgot these (lost, or it restarted): stop their tasks.
                    for lease in resp.unknown {
                        tokens.get(&lease).map(CancellationToken::cancel);
                        gone.insert(lease);
                    }
                    break;
                }
                Err(e) => {
                    tries += 1;
                    if tries > 20 {
                        tracing::warn!("giving up reporting {} lease(s): {e}", reports.len());
                        for (lease, token) in tokens.drain() {
                            token.cancel();
                            gone.insert(lease);
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

/// Hands a lease's events to the reporter, in order; returns once its `exited` was
/// delivered (or given up).
async fn forward_events(
    lease: String,
    mut rx: mpsc::UnboundedReceiver<AgentEvent>,
    reports: mpsc::UnboundedSender<Report>,
    cancel: CancellationToken,
) {
    let (done_tx, done_rx) = oneshot::channel();
    let mut done_tx = Some(done_tx);
    while let Some(event) = rx.recv().await {
        let done = if matches!(event, AgentEvent::Exited { .. }) { done_tx.take() } else { None };
        let r = Report { lease: lease.clone(), event, cancel: cancel.clone(), done };
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
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender =
        tokio::spawn(forward_events(lease.id.clone(), rx, reports.clone(), cancel.clone()));
    let dir = config.work_dir.join(&lease.id);
    let outcome = wrapped(client, executor, config, &lease, &dir, &tx, &cancel).await;
    let _ = tx.send(AgentEvent::Exited { outcome });
    drop(tx);
    let _ = sender.await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
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
    let mut spec = kiln_runtime::local::task_spec(&lease.run, lease.job_index, &lease.start);
    let tail = &lease.id[lease.id.len().saturating_sub(12)..];
    spec.id = TaskId::sanitized(&format!("kiln-{tail}-{}-{}", job.id, lease.start.attempt));
    spec.env.extend(lease.env.clone());
    // The host ports the scheduler gave the job (`KILN_PORT_<NAME>`), published to the
    // container ports it named; with the host network it listens on them itself.
    spec.host_network = job.scheduling.host_network;
    for p in &job.scheduling.ports {
        let var = kiln_scheduler::port_env_name(&p.name);
        if let Some(host) = lease.env.get(&var).and_then(|v| v.parse::<u16>().ok()) {
            spec.ports.push(kiln_exec::PortMap { host, container: p.container.unwrap_or(host) });
        }
    }
    spec.labels.insert("kiln.agent".into(), config.name.clone());
    spec.labels.insert("kiln.lease".into(), lease.id.clone());
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
            TaskEvent::Log(l) => AgentEvent::Log {
                stream: match l.stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                }
                .into(),
                time: l.time,
                text: l.text,
            },
            TaskEvent::Output { key, value } => AgentEvent::Output { key, value },
        });
    })
    .await
}
