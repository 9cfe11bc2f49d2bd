//! The Kubernetes executor (`kiln agent --executor kubernetes`): one pod per task attempt,
//! driven through the Kubernetes API with the `kube` client.
//!
//! See [`pod`] for the pod's layout. Lifecycle: `setup` creates the pull secret (when the
//! task has pull credentials) and the pod, waits until every container runs (or fails with
//! the scheduler's or kubelet's reason), and copies the seed into the workspace through the
//! keeper container; `start` writes the start cue and follows the job container's log (stdout
//! and stderr read apart, `stream=Stdout|Stderr`, each re-opened where it stopped: see
//! [`cursor`]); `wait` watches the pod (re-listing after a watch expires with 410) until the
//! job container has terminated; `kill` and `destroy` delete the pod at once
//! (`gracePeriodSeconds=0`); `export_workspace` tars the workspace through the keeper.
//!
//! Invariants: everything created carries `kiln.dev/task=<id>`, `kiln.dev/agent=<agent>` and
//! `kiln.dev/managed-by=kiln`, so [`KubeExecutor::connect`] sweeps what an earlier run of the
//! same agent left; API calls that fail with 429/5xx or a broken connection are retried for
//! [`KubeConfig::retry_for`] (the client itself already honours `Retry-After` on 429/503/504).
//!
//! The `fake` feature adds [`fake`], the fake API server the tests run against.

pub mod affinity;
pub mod archive;
pub mod cursor;
#[cfg(feature = "fake")]
pub mod fake;
pub mod pod;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_exec::{ExecError, Executor, ExitStatus, LogLine, LogStream, Stream, TaskId, TaskSpec};
use kube::api::{AttachParams, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cursor::{Cursor, Split, split_timestamp};
use crate::pod::{GO_FILE, JOB, KEEPER, NAME, PodTemplate};
use crate::status::{Startup, job_exit, job_running, startup};

/// The keeper image when none is configured.
pub const DEFAULT_HELPER_IMAGE: &str = "busybox:latest";

/// How to reach the API server and what to put in pods.
#[derive(Clone)]
pub struct KubeConfig {
    /// Client settings; `None`: the default resolution (`KUBECONFIG`, `~/.kube/config`, else
    /// the in-cluster service account).
    pub client: Option<kube::Config>,
    /// Namespace of the pods; `None`: the kubeconfig context's (else `default`).
    pub namespace: Option<String>,
    /// The agent's name: labels every pod, and the start-up sweep deletes pods of this name.
    pub agent: String,
    /// Image of the keeper container (needs `sh`, `sleep` and `tar` or `busybox tar`).
    pub helper_image: String,
    /// Node selector put on every pod.
    pub node_selector: BTreeMap<String, String>,
    /// Limit for reaching the API server at start (version and access checks).
    pub connect_timeout: Duration,
    /// How long `setup` waits for the pod to run: scheduling, image pulls, container starts.
    pub startup_timeout: Duration,
    /// How long a call failing with 429/5xx or a broken connection is retried.
    pub retry_for: Duration,
    /// Limit for copying a seed in or a workspace out.
    pub transfer_timeout: Duration,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            client: None,
            namespace: None,
            agent: "kiln-agent".to_string(),
            helper_image: DEFAULT_HELPER_IMAGE.to_string(),
            node_selector: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(600),
            retry_for: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(600),
        }
    }
}

impl std::fmt::Debug for KubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConfig")
            .field("cluster", &self.client.as_ref().map(|c| c.cluster_url.to_string()))
            .field("namespace", &self.namespace)
            .field("agent", &self.agent)
            .field("helper_image", &self.helper_image)
            .finish_non_exhaustive()
    }
}

/// Why [`KubeExecutor::connect`] failed: one line each.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No kubeconfig and not in a cluster, or an unreadable one.
    #[error("kubernetes: no usable kubeconfig ({0}); set KUBECONFIG or run the agent in a pod")]
    NoConfig(String),
    /// The API server did not answer.
    #[error("kubernetes: the API server at {url} does not answer: {cause}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What failed.
        cause: String,
    },
    /// The API server answered but refused what the executor needs.
    #[error(
        "kubernetes: the API server at {url} refuses to list pods in namespace {namespace}: {cause}"
    )]
    Refused {
        /// The server's URL.
        url: String,
        /// The namespace.
        namespace: String,
        /// What it said.
        cause: String,
    },
}

/// What this process knows of one task.
#[derive(Debug, Default, Clone, Copy)]
struct TaskState {
    /// `kill` was called: the pod is (being) deleted and the task counts as killed.
    killed: bool,
    /// `signal` was called: a death by signal is Kiln's doing.
    signaled: bool,
}

/// The executor's shared state.
struct Inner {
    client: Client,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    template: PodTemplate,
    config: KubeConfig,
    url: String,
    swept: usize,
    tasks: Mutex<HashMap<TaskId, TaskState>>,
    /// Why the pod of a task in `setup` waits (`Unschedulable: …`), while it does.
    waiting: Mutex<HashMap<TaskId, String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeExecutor")
            .field("url", &self.url)
            .field("namespace", &self.template.namespace)
            .field("agent", &self.template.agent)
            .finish_non_exhaustive()
    }
}

/// A one-line description of a client error.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let mut text = status.message.clone();
            if !status.reason.is_empty() {
                text = format!("{text} ({}, {})", status.reason, status.code);
            } else if status.code != 0 {
                text = format!("{text} ({})", status.code);
            }
            text
        }
        other => one_line(other),
    }
}

fn engine(what: impl std::fmt::Display, e: &kube::Error) -> ExecError {
    ExecError::Engine(format!("kubernetes: {what}: {}", describe(e)))
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Worth retrying: throttling, server errors, a broken connection.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The agent name as a label value.
fn agent_label(agent: &str) -> String {
    TaskId::sanitized(agent).to_string()
}

impl KubeExecutor {
    /// Resolves the client configuration, checks within [`KubeConfig::connect_timeout`] that
    /// the API server answers and lets this identity list pods in the namespace, then deletes
    /// what an earlier run of the same agent left (pods and pull secrets labelled with its
    /// name: their attempts were failed by the server when that agent went away).
    pub async fn connect(config: KubeConfig) -> Result<KubeExecutor, ConnectError> {
        let limit = config.connect_timeout;
        let client_config = match config.client.clone() {
            Some(c) => c,
            None => match tokio::time::timeout(limit, kube::Config::infer()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(ConnectError::NoConfig(one_line(&e))),
                Err(_) => {
                    return Err(ConnectError::NoConfig(format!("not resolved within {limit:?}")));
                }
            },
        };
        let url = client_config.cluster_url.to_string();
        let namespace =
            config.namespace.clone().unwrap_or_else(|| client_config.default_namespace.clone());
        let unreachable = |cause: String| ConnectError::Unreachable { url: url.clone(), cause };
        let client = Client::try_from(client_config).map_err(|e| unreachable(describe(&e)))?;
        match tokio::time::timeout(limit, client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(describe(&e))),
            Err(_) => return Err(unreachable(format!("no answer within {limit:?}"))),
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match tokio::time::timeout(limit, pods.list(&ListParams::default().limit(1))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(ConnectError::Refused {
                    url: url.clone(),
                    namespace,
                    cause: describe(&e),
                });
            }
            Err(_) => return Err(unreachable(format!("no answer within {limit:?}"))),
        }
        let template = PodTemplate {
            namespace: namespace.clone(),
            agent: agent_label(&config.agent),
            helper_image: config.helper_image.clone(),
            node_selector: config.node_selector.clone(),
        };
        let mut executor = Inner {
            secrets: Api::namespaced(client.clone(), &namespace),
            pods,
            client,
            template,
            config,
            url,
            swept: 0,
            tasks: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
        };
        match executor.sweep().await {
            Ok(n) => executor.swept = n,
            Err(e) => tracing::warn!("kubernetes: sweeping pods of earlier runs: {e}"),
        }
        Ok(KubeExecutor { inner: Arc::new(executor) })
    }

    /// How many pods the start-up sweep deleted.
    pub fn swept(&self) -> usize {
        self.inner.swept
    }

    /// The namespace pods run in.
    pub fn namespace(&self) -> &str {
        &self.inner.template.namespace
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Deletes every pod and pull secret labelled with this agent's name; returns how many
    /// pods went.
    pub async fn sweep(&self) -> Result<usize, ExecError> {
        self.inner.sweep().await
    }

    /// Names of the pods and secrets that exist for task `id` (empty once destroyed).
    pub async fn leftovers(&self, id: &TaskId) -> Result<Vec<String>, ExecError> {
        self.inner.leftovers(id).await
    }
}

impl Inner {
    async fn sweep(&self) -> Result<usize, ExecError> {
        let selector = pod::agent_selector(&self.template.agent);
        let lp = ListParams::default().labels(&selector);
        let pods = self.call("listing pods of earlier runs", || self.pods.list(&lp)).await?;
        let mut removed = 0;
        for pod in pods.items {
            if let Some(name) = pod.metadata.name {
                self.delete_pod(&name).await?;
                removed += 1;
            }
        }
        let secrets =
            self.call("listing secrets of earlier runs", || self.secrets.list(&lp)).await?;
        for secret in secrets.items {
            if let Some(name) = secret.metadata.name {
                self.delete_secret(&name).await?;
            }
        }
        Ok(removed)
    }

    async fn leftovers(&self, id: &TaskId) -> Result<Vec<String>, ExecError> {
        let lp = ListParams::default().labels(&pod::task_selector(id));
        let pods = self.call("listing pods", || self.pods.list(&lp)).await?;
        let secrets = self.call("listing secrets", || self.secrets.list(&lp)).await?;
        let pods =
            pods.items.into_iter().filter_map(|p| p.metadata.name).map(|n| format!("pod/{n}"));
        let secrets = secrets
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .map(|n| format!("secret/{n}"));
        Ok(pods.chain(secrets).collect())
    }

    /// Runs `f` again while it fails transiently, for at most [`KubeConfig::retry_for`];
    /// other failures and the last transient one become `Engine` errors naming `what`.
    async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ExecError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.call_raw(what, &mut f).await.map_err(|e| engine(what, &e))
    }

    /// [`call`](Self::call) keeping the client's error.
    async fn call_raw<T, F, Fut>(&self, what: &str, f: &mut F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let deadline = Instant::now() + self.config.retry_for;
        let mut delay = Duration::from_millis(100);
        loop {
            match f().await {
                Err(e) if transient(&e) && Instant::now() + delay < deadline => {
                    tracing::debug!("kubernetes: {what}: {}; retrying in {delay:?}", describe(&e));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }

    fn state(&self, id: &TaskId) -> Option<TaskState> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied()
    }

    fn known(&self, id: &TaskId) -> Result<TaskState, ExecError> {
        self.state(id).ok_or_else(|| ExecError::UnknownTask(id.clone()))
    }

    fn update(&self, id: &TaskId, f: impl FnOnce(&mut TaskState)) {
        if let Some(state) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).get_mut(id) {
            f(state);
        }
    }

    async fn delete_pod(&self, name: &str) -> Result<(), ExecError> {
        let dp = DeleteParams::default().grace_period(0);
        let what = format!("deleting pod {name}");
        match self.call_raw(&what, &mut || self.pods.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine(what, &e)),
        }
    }

    async fn delete_secret(&self, name: &str) -> Result<(), ExecError> {
        let what = format!("deleting secret {name}");
        let dp = DeleteParams::default();
        match self.call_raw(&what, &mut || self.secrets.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine(what, &e)),
        }
    }

    /// Reads pod `name` (`None` when it does not exist).
    async fn get_pod(&self, name: &str) -> Result<Option<Pod>, ExecError> {
        self.call(&format!("reading pod {name}"), || self.pods.get_opt(name)).await
    }

    /// Follows pod `name` until `decide` (given the pod, or `None` once it is gone) returns
    /// an answer: reads it, then watches it from that read's resource version; a watch that
    /// ends, breaks or expires (410 Gone) is followed by a fresh read and a new watch.
    async fn follow_pod<T>(
        &self,
        name: &str,
        mut decide: impl FnMut(Option<&Pod>) -> Option<T>,
    ) -> Result<T, ExecError> {
        let wp = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
        loop {
            let pod = self.get_pod(name).await?;
            if let Some(answer) = decide(pod.as_ref()) {
                return Ok(answer);
            }
            let version = pod.and_then(|p| p.metadata.resource_version).unwrap_or_default();
            let what = format!("watching pod {name}");
            let stream = match self.call_raw(&what, &mut || self.pods.watch(&wp, &version)).await {
                Ok(stream) => stream,
                Err(e) if api_code(&e) == Some(410) => continue,
                Err(e) => return Err(engine(what, &e)),
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => {
                        if let Some(answer) = decide(Some(&pod)) {
                            return Ok(answer);
                        }
                    }
                    Ok(WatchEvent::Deleted(_)) => {
                        if let Some(answer) = decide(None) {
                            return Ok(answer);
                        }
                    }
                    Ok(WatchEvent::Bookmark(_)) => {}
                    Ok(WatchEvent::Error(status)) => {
                        tracing::debug!(
                            "kubernetes: {what}: {} ({}); re-reading",
                            status.message,
                            status.code
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("kubernetes: {what}: {}; re-reading", describe(&e));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Runs `argv` in `container` of pod `name` through the exec API, feeding it `stdin`
    /// (then closing it) and copying its stdout to `stdout`; resolves with its exit code.
    async fn exec_in(
        &self,
        name: &str,
        container: &str,
        argv: &[String],
        stdin: Option<tokio::fs::File>,
        stdout: Option<&mut tokio::fs::File>,
    ) -> Result<i32, ExecError> {
        let what = format!("running `{}` in container {container} of pod {name}", argv.join(" "));
        let params = AttachParams::default()
            .container(container)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true);
        let mut process =
            self.call(&what, || self.pods.exec(name, argv.iter().cloned(), &params)).await?;
        let status = process.take_status();
        let mut out = process.stdout();
        let mut err = process.stderr();
        let input = process.stdin();
        let feed = async {
            if let (Some(mut writer), Some(mut file)) = (input, stdin) {
                tokio::io::copy(&mut file, &mut writer).await?;
                writer.shutdown().await?;
            }
            Ok::<_, io::Error>(())
        };
        let drain = async {
            match (out.as_mut(), stdout) {
                (Some(reader), Some(sink)) => {
                    tokio::io::copy(reader, sink).await?;
                    sink.flush().await?;
                }
                (Some(reader), None) => {
                    tokio::io::copy(reader, &mut tokio::io::sink()).await?;
                }
                _ => {}
            }
            Ok::<_, io::Error>(())
        };
        let mut errors = Vec::new();
        let drain_err = async {
            if let Some(reader) = err.as_mut() {
                reader.take(64 * 1024).read_to_end(&mut errors).await?;
                tokio::io::copy(reader, &mut tokio::io::sink()).await?;
            }
            Ok::<_, io::Error>(())
        };
        let io_failed = |e: io::Error| ExecError::Engine(format!("kubernetes: {what}: {e}"));
        let (fed, drained, _) = tokio::join!(feed, drain, drain_err);
        fed.map_err(io_failed)?;
        drained.map_err(io_failed)?;
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        let _ = process.join().await;
        let Some(status) = status else {
            return Err(ExecError::Engine(format!("kubernetes: {what}: no exit status came back")));
        };
        if status.status.as_deref() == Some("Success") {
            return Ok(0);
        }
        let code = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse::<i32>().ok());
        match code {
            Some(code) => Ok(code),
            None => {
                let stderr = String::from_utf8_lossy(&errors);
                Err(ExecError::Engine(format!(
                    "kubernetes: {what}: {} {}",
                    status.message.unwrap_or_default(),
                    stderr.trim()
                )))
            }
        }
    }

    /// Copies the contents of host directory `seed` into the workspace of pod `name`.
    async fn copy_seed(&self, name: &str, seed: &Path) -> Result<(), ExecError> {
        let what = format!("copying the seed {} into pod {name}", seed.display());
        let tar = kiln_exec::workspace::packed_tree(seed)
            .await
            .map_err(|e| ExecError::Engine(format!("kubernetes: {what}: {e}")))?;
        let argv = tar_argv(&["xf", "-", "-C", kiln_exec::WORKSPACE_PATH]);
        let copy = self.exec_in(name, KEEPER, &argv, Some(tokio::fs::File::from_std(tar)), None);
        let limit = self.config.transfer_timeout;
        match tokio::time::timeout(limit, copy).await {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(code)) => {
                Err(ExecError::Engine(format!("kubernetes: {what}: tar exited with {code}")))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                Err(ExecError::Engine(format!("kubernetes: {what}: not done within {limit:?}")))
            }
        }
    }

    /// Follows the job container's `stream` of pod `name`, sending each line once to `tx`.
    /// `split` is shared with the other stream's reader (see [`Split`]).
    async fn follow_log(
        self: Arc<Self>,
        name: String,
        stream: Stream,
        split: Arc<Mutex<Split>>,
        tx: tokio::sync::mpsc::Sender<Result<LogLine, ExecError>>,
    ) {
        let mut cursor = Cursor::new();
        let mut follow = true;
        let mut failures = 0u32;
        let which = match stream {
            Stream::Stdout => "Stdout",
            Stream::Stderr => "Stderr",
        };
        loop {
            cursor.reopen();
            let request =
                log_request(&self.template.namespace, &name, which, follow, cursor.since());
            let reader = match self.client.request_stream(request).await {
                Ok(reader) => reader,
                Err(e) if api_code(&e) == Some(404) => return,
                Err(e) => {
                    failures += 1;
                    if failures > 50 {
                        let _ = tx
                            .send(Err(engine(format!("reading the log of pod {name}"), &e)))
                            .await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if self.log_is_over(&name).await {
                        follow = false;
                    }
                    continue;
                }
            };
            let mut lines = std::pin::pin!(reader.lines());
            while let Some(line) = lines.next().await {
                let Ok(line) = line else { break };
                let (time, text) = split_timestamp(&line);
                if let Some(time) = time
                    && !cursor.accept(time)
                {
                    continue;
                }
                failures = 0;
                let admitted = {
                    let mut split = split.lock().unwrap_or_else(PoisonError::into_inner);
                    if split.combined() && stream == Stream::Stderr {
                        return;
                    }
                    split.admit(stream == Stream::Stderr, time, text)
                };
                if !admitted {
                    continue;
                }
                let line =
                    LogLine { stream, time: time.unwrap_or_else(Utc::now), text: text.to_string() };
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            if self.log_is_over(&name).await {
                // Once more, without following, for what a broken read (or an engine that
                // ends `follow` before the last entry) missed; the cursor drops repeats.
                follow = false;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Whether the job container of pod `name` has ended (or the pod is gone).
    async fn log_is_over(&self, name: &str) -> bool {
        match self.get_pod(name).await {
            Ok(None) => true,
            Ok(Some(pod)) => {
                job_exit(&pod, false).is_some() || pod.metadata.deletion_timestamp.is_some()
            }
            Err(_) => false,
        }
    }
}

/// `tar ARGS` in the keeper: its `tar`, else busybox's applet (images that ship the busybox
/// binary without the `tar` link).
fn tar_argv(args: &[&str]) -> Vec<String> {
    let script =
        "if command -v tar >/dev/null 2>&1; then exec tar \"$@\"; else exec busybox tar \"$@\"; fi";
    let mut argv =
        vec!["sh".to_string(), "-c".to_string(), script.to_string(), "kiln-tar".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The log request of the job container of pod `name` for one `stream` (`Stdout` or
/// `Stderr`), with timestamps, from `since` when given.
fn log_request(
    namespace: &str,
    name: &str,
    stream: &str,
    follow: bool,
    since: Option<DateTime<Utc>>,
) -> http::Request<Vec<u8>> {
    let mut uri = format!(
        "/api/v1/namespaces/{namespace}/pods/{name}/log?container={JOB}&timestamps=true&stream={stream}"
    );
    if follow {
        uri.push_str("&follow=true");
    }
    if let Some(since) = since {
        uri.push_str(&format!("&sinceTime={}", since.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    http::Request::get(uri).body(Vec::new()).expect("a valid log request")
}

/// `e` and its sources on one line, each source once (many already say their source).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// Runs tasks as Kubernetes pods. Cheap to clone (clones share their state).
#[derive(Debug, Clone)]
pub struct KubeExecutor {
    inner: Arc<Inner>,
}

#[async_trait]
impl Executor for KubeExecutor {
    fn name(&self) -> &'static str {
        NAME
    }

    fn containers(&self) -> bool {
        true
    }

    fn check(&self, task: &TaskSpec) -> Result<(), ExecError> {
        pod::check(task)?;
        affinity::translate(&self.inner.template.node_selector, &task.constraints)
            .map(|_| ())
            .map_err(|e| ExecError::Unsupported { executor: NAME, what: e.to_string() })
    }

    fn waiting(&self, id: &TaskId) -> Option<String> {
        self.inner.waiting.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        let ex = &self.inner;
        ex.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(task.id.clone(), TaskState::default());
        if let Some(secret) = pod::pull_secret(&ex.template, task) {
            let what = format!("creating secret {}", pod::secret_name(&task.id));
            let pp = PostParams::default();
            match ex.call_raw(&what, &mut || ex.secrets.create(&pp, &secret)).await {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some(409) => {}
                Err(e) => return Err(engine(what, &e)),
            }
        }
        let spec = pod::pod(&ex.template, task);
        let name = pod::pod_name(&task.id);
        let what = format!("creating pod {name}");
        let pp = PostParams::default();
        match ex.call_raw(&what, &mut || ex.pods.create(&pp, &spec)).await {
            Ok(_) => {}
            // A retried create whose first try went through.
            Err(e) if api_code(&e) == Some(409) => {
                let existing = ex.get_pod(&name).await?;
                let ours = existing.and_then(|p| p.metadata.labels).is_some_and(|l| {
                    l.get(pod::LABEL_TASK).map(String::as_str) == Some(task.id.as_str())
                });
                if !ours {
                    return Err(engine(what, &e));
                }
            }
            Err(e) => return Err(engine(what, &e)),
        }
        let mut last = None;
        let mut warned = false;
        let started = ex.follow_pod(&name, |pod| {
            let Some(pod) = pod else {
                return Some(Err(ExecError::Engine(format!(
                    "kubernetes: pod {name} was deleted while it started"
                ))));
            };
            match startup(pod) {
                Startup::Running => Some(Ok(())),
                Startup::PullFailed { image, detail } => {
                    Some(Err(ExecError::ImageNotFound { image, detail }))
                }
                Startup::Failed(why) => {
                    Some(Err(ExecError::Engine(format!("kubernetes: pod {name} failed: {why}"))))
                }
                Startup::Unschedulable(why) => {
                    if !warned {
                        tracing::warn!("kubernetes: pod {name} waits for a node: {why}");
                        warned = true;
                    }
                    ex.waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(task.id.clone(), format!("Unschedulable: {why}"));
                    last = Some(format!("no node can take it: {why} (Unschedulable)"));
                    None
                }
                Startup::Waiting(why) => {
                    ex.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&task.id);
                    last = why;
                    None
                }
            }
        });
        let limit = ex.config.startup_timeout;
        let started = tokio::time::timeout(limit, started).await;
        ex.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&task.id);
        match started {
            Ok(result) => result??,
            Err(_) => {
                let why = last.unwrap_or_else(|| "no reason given".to_string());
                return Err(ExecError::Engine(format!(
                    "kubernetes: pod {name} did not start within {}s: {why}",
                    limit.as_secs()
                )));
            }
        }
        if let Some(seed) = &task.seed {
            ex.copy_seed(&name, seed).await?;
        }
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        let ex = &self.inner;
        let state = ex.known(&task.id)?;
        if state.killed {
            return Ok(futures::stream::empty().boxed());
        }
        let name = pod::pod_name(&task.id);
        let cue = ["sh".to_string(), "-c".to_string(), format!(": > {GO_FILE}")];
        match ex.exec_in(&name, KEEPER, &cue, None, None).await? {
            0 => {}
            code => {
                return Err(ExecError::Engine(format!(
                    "kubernetes: writing the start cue in pod {name}: exit code {code}"
                )));
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let split = Arc::new(Mutex::new(Split::new()));
        for stream in [Stream::Stdout, Stream::Stderr] {
            tokio::spawn(ex.clone().follow_log(name.clone(), stream, split.clone(), tx.clone()));
        }
        drop(tx);
        // Lines of the two streams come from two reads: keep times from going backwards.
        let lines =
            futures::stream::unfold((rx, None::<DateTime<Utc>>), |(mut rx, last)| async move {
                let item = rx.recv().await?;
                let mut newest = last;
                let item = item.map(|mut line| {
                    if let Some(last) = last
                        && line.time < last
                    {
                        line.time = last;
                    }
                    newest = Some(line.time);
                    line
                });
                Some((item, (rx, newest)))
            });
        Ok(lines.boxed())
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let ex = &self.inner;
        ex.known(id)?;
        let name = pod::pod_name(id);
        let killed = ExitStatus { code: 137, killed: None };
        ex.follow_pod(&name, |pod| {
            let state = ex.state(id).unwrap_or_default();
            match pod {
                None if state.killed => Some(Ok(killed)),
                None => Some(Err(ExecError::Engine(format!(
                    "kubernetes: pod {name} was deleted outside Kiln"
                )))),
                Some(pod) => match job_exit(pod, state.signaled) {
                    Some(exit) => Some(Ok(exit)),
                    None if state.killed => Some(Ok(killed)),
                    None => None,
                },
            }
        })
        .await?
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        let ex = &self.inner;
        ex.known(id)?;
        ex.update(id, |s| s.killed = true);
        ex.delete_pod(&pod::pod_name(id)).await
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        let ex = &self.inner;
        ex.known(id)?;
        let name = pod::pod_name(id);
        let what = format!("exporting the workspace of task {id}");
        let failed = |e: io::Error| ExecError::Engine(format!("kubernetes: {what}: {e}"));
        let raw = tempfile::tempfile().map_err(failed)?;
        let mut raw = tokio::fs::File::from_std(raw);
        let argv = tar_argv(&["cf", "-", "-C", kiln_exec::WORKSPACE_PATH, "."]);
        let limit = ex.config.transfer_timeout;
        let copy = ex.exec_in(&name, KEEPER, &argv, None, Some(&mut raw));
        match tokio::time::timeout(limit, copy).await {
            Ok(Ok(0)) => {}
            Ok(Ok(code)) => {
                return Err(ExecError::Engine(format!(
                    "kubernetes: {what}: tar exited with {code}"
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ExecError::Engine(format!(
                    "kubernetes: {what}: not done within {limit:?}"
                )));
            }
        }
        let raw = raw.into_std().await;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            use std::io::{Seek, Write};
            let mut raw = raw;
            raw.rewind()?;
            let out = std::fs::File::create(&dest)?;
            let mut out = archive::rewrite(io::BufReader::new(raw), io::BufWriter::new(out))?;
            out.flush()
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
        .map_err(|e| ExecError::Engine(format!("kubernetes: {what}: {e}")))
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        let ex = &self.inner;
        ex.update(id, |s| s.killed = true);
        ex.delete_pod(&pod::pod_name(id)).await?;
        ex.delete_secret(&pod::secret_name(id)).await?;
        ex.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        ex.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        Ok(())
    }

    async fn exec(&self, id: &TaskId, argv: &[String]) -> Result<ExitStatus, ExecError> {
        let ex = &self.inner;
        ex.known(id)?;
        let code = ex.exec_in(&pod::pod_name(id), JOB, argv, None, None).await?;
        Ok(ExitStatus { code, killed: None })
    }

    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), ExecError> {
        let ex = &self.inner;
        ex.known(id)?;
        let Some(number) = kiln_exec::signal_number(signal) else {
            return Err(kiln_exec::unknown_signal(NAME, signal));
        };
        let name = pod::pod_name(id);
        match ex.get_pod(&name).await? {
            Some(pod) if job_running(&pod) => {}
            _ => return Ok(()),
        }
        ex.update(id, |s| s.signaled = true);
        let argv = ["sh".to_string(), "-c".to_string(), format!("kill -{number} 1")];
        match ex.exec_in(&name, JOB, &argv, None, None).await {
            Ok(_) => Ok(()),
            // It ended meanwhile: nothing to tell.
            Err(_) if !ex.get_pod(&name).await?.is_some_and(|p| job_running(&p)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
