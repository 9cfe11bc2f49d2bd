//! The Docker executor: runs a task's main container and sidecars through the Docker Engine
//! API (bollard), speaking whatever API version the engine offers.
//!
//! Per task it creates a bridge network `kiln-<id>` (only when the task has sidecars), a volume `kiln-<id>-ws` mounted at
//! [`kiln_exec::WORKSPACE_PATH`], sidecars `kiln-<id>-svc-<service>` reachable by their service
//! name, and the main container `kiln-<id>`; see [`names`]. A task's seed is uploaded into the
//! volume through the created main container before it starts, and `export_workspace`
//! downloads the volume's contents through the stopped main container (`archive`). `exec`
//! is `docker exec` in the running main container (command health checks).
//!
//! Invariants: everything created carries the label `kiln.task=<id>` (plus the task's labels),
//! so `destroy` and [`DockerExecutor::cleanup_labelled`] work from a fresh process; every call
//! that can hang is bounded by a timeout, except the log stream and `wait`, which are watched
//! by pinging the engine instead of being cut.

mod archive;
pub mod builder;
mod error;
mod logs;
pub mod names;
mod spec;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
    WaitContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use kiln_exec::{ExecError, Executor, ExitStatus, LogStream, TaskId, TaskSpec};

pub use error::ConnectError;

use error::{cause, engine, is_conflict, is_not_found, timed_out};

/// Endpoint used when neither [`DockerConfig::endpoint`] nor `DOCKER_HOST` names one.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// How to reach the engine and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `unix:///path/docker.sock` or `tcp://host:port`; `None` takes `DOCKER_HOST`, else
    /// [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// Limit for the ping and version negotiation of [`DockerExecutor::connect`].
    pub connect_timeout: Duration,
    /// Limit for one API call (create, start, inspect, kill, remove, list).
    pub call_timeout: Duration,
    /// Limit for pulling one image.
    pub pull_timeout: Duration,
    /// While following logs or waiting, the engine is pinged this often (each ping may take
    /// as long); three failures in a row end the stream or the wait with an error.
    pub liveness_interval: Duration,
    /// Limit for copying a seed into a container, or a workspace out of one.
    pub transfer_timeout: Duration,
    /// The image `build:` tasks run in (`kiln agent --builder-image`): it must hold buildah
    /// and a POSIX shell (see docs/builds.md). `None`: [`builder::default_builder_image`],
    /// made from this host's buildah when the engine lacks it.
    pub builder_image: Option<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            endpoint: None,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            pull_timeout: Duration::from_secs(600),
            liveness_interval: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(600),
            builder_image: None,
        }
    }
}

impl DockerConfig {
    /// The endpoint [`DockerExecutor::connect`] will use: [`endpoint`](Self::endpoint), else a
    /// non-empty `DOCKER_HOST`, else [`DEFAULT_ENDPOINT`].
    pub fn resolved_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
    }
}

/// What a clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Containers force-removed.
    pub containers: usize,
    /// Networks removed.
    pub networks: usize,
    /// Volumes removed.
    pub volumes: usize,
}

/// What this process created for one task (ids as the engine returned them).
#[derive(Debug, Default)]
struct TaskState {
    network: Option<String>,
    volume: Option<String>,
    sidecars: Vec<String>,
    main: Option<String>,
    /// `kill` was called: a container started afterwards is killed at once.
    killed: bool,
    /// `signal` was called: a death by signal is Kiln's doing, not one from outside.
    signaled: bool,
}

/// Runs tasks as Docker containers. Cheap to share behind an `Arc`; calls for different tasks
/// may run concurrently.
#[derive(Debug)]
pub struct DockerExecutor {
    docker: Docker,
    endpoint: String,
    config: DockerConfig,
    tasks: Mutex<HashMap<TaskId, TaskState>>,
    /// Held while the default builder image is looked for and made (once).
    builder_lock: tokio::sync::Mutex<()>,
}

impl DockerExecutor {
    /// What killed `container`, which exited with `code` and was not killed by Kiln: the
    /// out-of-memory killer if the engine says so (`State.OOMKilled`), else SIGKILL or SIGTERM
    /// from outside (`docker kill`, `docker stop`) for codes 137 and 143; `None` for any other
    /// code (the script's own exit) or when the engine cannot tell.
    async fn killed_by(&self, container: &str, code: i32) -> Option<kiln_exec::Killed> {
        let what = format!("inspecting container {container}");
        let inspected = self.timed(&what, self.docker.inspect_container(container, None)).await;
        let oom = match inspected {
            Ok(Ok(c)) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
            _ => false,
        };
        match code {
            _ if oom => Some(kiln_exec::Killed::OutOfMemory),
            137 | 143 => Some(kiln_exec::Killed::Signal(code - 128)),
            _ => None,
        }
    }

    /// Connects to the engine at [`DockerConfig::resolved_endpoint`], pings it within
    /// [`DockerConfig::connect_timeout`] and negotiates the API version (Debian's engine
    /// speaks 1.41, older than bollard's default).
    pub async fn connect(config: DockerConfig) -> Result<DockerExecutor, ConnectError> {
        let endpoint = config.resolved_endpoint();
        let no_engine =
            |cause: String| ConnectError::NoEngine { endpoint: endpoint.clone(), cause };
        let secs = config.call_timeout.as_secs().max(1);
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, API_DEFAULT_VERSION)
        } else if endpoint.starts_with('/') {
            Docker::connect_with_unix(&endpoint, secs, API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, secs, API_DEFAULT_VERSION)
        } else {
            return Err(ConnectError::Endpoint { endpoint });
        };
        let docker = docker.map_err(|e| match e {
            BollardError::SocketNotFoundError(_) => no_engine("socket not found".to_owned()),
            e => no_engine(cause(&e)),
        })?;
        let limit = config.connect_timeout;
        let silent = || no_engine(format!("no answer within {}s", limit.as_secs_f32()));
        match tokio::time::timeout(limit, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(no_engine(cause(&e))),
            Err(_) => return Err(silent()),
        }
        let docker = match tokio::time::timeout(limit, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => {
                return Err(no_engine(format!("negotiating the API version: {}", cause(&e))));
            }
            Err(_) => return Err(silent()),
        };
        Ok(DockerExecutor {
            docker,
            endpoint,
            config,
            tasks: Mutex::new(HashMap::new()),
            builder_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The image `build:` tasks run in: the configured one, else the default.
    fn builder_image(&self) -> String {
        self.config.builder_image.clone().unwrap_or_else(builder::default_builder_image)
    }

    /// [`connect`](Self::connect) with [`DockerConfig::default`]: `DOCKER_HOST`, else
    /// [`DEFAULT_ENDPOINT`].
    pub async fn connect_default() -> Result<DockerExecutor, ConnectError> {
        DockerExecutor::connect(DockerConfig::default()).await
    }

    /// The endpoint connected to, e.g. `unix:///var/run/docker.sock`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The underlying client, for inspection (tests, diagnostics).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Force-removes every container, then every network and volume, carrying the label
    /// `label=value`: for Ctrl-C and crash recovery (e.g. `kiln.task`, or a label the runtime
    /// puts on all tasks of one agent). Keeps going after a failure and reports the first.
    pub async fn cleanup_labelled(&self, label: &str, value: &str) -> Result<Removed, ExecError> {
        self.remove_matching(&format!("{label}={value}"), &Leftovers::default()).await
    }

    /// Runs one API call under [`DockerConfig::call_timeout`]; the engine's own error is
    /// returned inside for the caller to judge (a 404 is often fine).
    async fn timed<T>(
        &self,
        what: impl Display,
        call: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<Result<T, BollardError>, ExecError> {
        let limit = self.config.call_timeout;
        tokio::time::timeout(limit, call).await.map_err(|_| timed_out(what, limit))
    }

    /// Updates this process's record of `id`; `UnknownTask` when it was not set up here.
    fn with_state<T>(
        &self,
        id: &TaskId,
        f: impl FnOnce(&mut TaskState) -> T,
    ) -> Result<T, ExecError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.get_mut(id).map(f).ok_or_else(|| ExecError::UnknownTask(id.clone()))
    }

    /// Makes sure `image` is present: inspects it, and pulls it when the engine does not
    /// know it. A failed pull is `ImageNotFound`.
    async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&kiln_exec::RegistryAuth>,
    ) -> Result<(), ExecError> {
        let what = format!("inspecting image {image}");
        match self.timed(&what, self.docker.inspect_image(image)).await? {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine(what, &e)),
        }
        self.pull(image, auth).await
    }

    /// Pulls `image` with `auth` when it covers its registry, then checks the engine knows
    /// it. A failed pull is `ImageNotFound`.
    async fn pull(
        &self,
        image: &str,
        auth: Option<&kiln_exec::RegistryAuth>,
    ) -> Result<(), ExecError> {
        let what = format!("inspecting image {image}");
        let not_found =
            |detail: String| ExecError::ImageNotFound { image: image.to_owned(), detail };
        let options = CreateImageOptions {
            from_image: Some(spec::pull_reference(image)),
            ..Default::default()
        };
        let credentials = auth.filter(|a| a.covers(image)).map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.registry.clone()),
            ..Default::default()
        });
        let pull = async {
            let mut progress = self.docker.create_image(Some(options), None, credentials);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<(), BollardError>(())
        };
        let limit = self.config.pull_timeout;
        match tokio::time::timeout(limit, pull).await {
            Err(_) => {
                return Err(not_found(format!(
                    "pull did not finish within {}s",
                    limit.as_secs_f32()
                )));
            }
            Ok(Err(e)) => return Err(not_found(format!("pull failed: {}", cause(&e)))),
            Ok(Ok(())) => {}
        }
        match self.timed(&what, self.docker.inspect_image(image)).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(not_found(format!("pulled, but still unknown: {}", cause(&e)))),
        }
    }

    /// Creates and starts one sidecar; records its id.
    async fn start_service(
        &self,
        task: &TaskSpec,
        service: &kiln_exec::ServiceSpec,
    ) -> Result<(), ExecError> {
        let name = names::service_container(&task.id, &service.name);
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let what = format!("creating service container {name}");
        let body = spec::service_container(task, service);
        let created = self
            .timed(&what, self.docker.create_container(Some(options), body))
            .await?
            .map_err(|e| engine(&what, &e))?;
        self.with_state(&task.id, |s| s.sidecars.push(created.id.clone()))?;
        let what = format!("starting service container {name}");
        self.timed(&what, self.docker.start_container(&created.id, None))
            .await?
            .map_err(|e| engine(&what, &e))
    }

    /// Ids of the task's containers, running or not: those recorded here and those the
    /// engine lists under the task's label.
    async fn task_containers(&self, id: &TaskId) -> Result<Vec<String>, ExecError> {
        let recorded = self
            .with_state(id, |s| s.main.iter().chain(&s.sidecars).cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let listed = self.list_containers(&names::task_filter(id)).await?;
        let mut seen = BTreeSet::new();
        Ok(recorded.into_iter().chain(listed).filter(|c| seen.insert(c.clone())).collect())
    }

    /// Ids of all containers, running or not, carrying the label `key=value` in `filter`.
    async fn list_containers(&self, filter: &str) -> Result<Vec<String>, ExecError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), vec![filter.to_owned()])])),
            ..Default::default()
        };
        let what = format!("listing containers labelled {filter}");
        let found = self
            .timed(&what, self.docker.list_containers(Some(options)))
            .await?
            .map_err(|e| engine(&what, &e))?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// Sends SIGKILL to `container`; a container that is gone or not running is fine.
    async fn kill_container(&self, container: &str) -> Result<(), ExecError> {
        let what = format!("killing container {container}");
        let options = KillContainerOptions { signal: "SIGKILL".to_owned() };
        match self.timed(&what, self.docker.kill_container(container, Some(options))).await? {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(engine(what, &e)),
        }
    }

    /// Removes what carries the label in `filter` plus the named `extra` objects: containers
    /// first (they hold the network and the volume), then networks, then volumes.
    async fn remove_matching(&self, filter: &str, extra: &Leftovers) -> Result<Removed, ExecError> {
        // A silent engine would make each of the calls below wait for its own timeout.
        let limit = self.config.connect_timeout;
        match tokio::time::timeout(limit, self.docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(engine(format_args!("cleaning up {filter}"), &e)),
            Err(_) => return Err(timed_out(format_args!("cleaning up {filter}"), limit)),
        }
        let mut removed = Removed::default();
        let mut first_error: Option<ExecError> = None;
        let mut note = |result: Result<bool, ExecError>, count: &mut usize| match result {
            Ok(true) => *count += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "docker clean-up");
                first_error.get_or_insert(e);
            }
        };

        let mut containers = match self.list_containers(filter).await {
            Ok(found) => found,
            Err(e) => {
                note(Err(e), &mut removed.containers);
                Vec::new()
            }
        };
        containers.extend(extra.containers.iter().cloned());
        dedup(&mut containers);
        let removals = containers.iter().map(|c| self.remove_container(c));
        for result in futures::future::join_all(removals).await {
            note(result, &mut removed.containers);
        }

        let mut networks = match self.list_networks(filter).await {
            Ok(found) => found,
            Err(e) => {
                note(Err(e), &mut removed.networks);
                Vec::new()
            }
        };
        networks.extend(extra.networks.iter().cloned());
        dedup(&mut networks);
        for network in &networks {
            note(self.remove_network(network).await, &mut removed.networks);
        }

        let mut volumes = match self.list_volumes(filter).await {
            Ok(found) => found,
            Err(e) => {
                note(Err(e), &mut removed.volumes);
                Vec::new()
            }
        };
        volumes.extend(extra.volumes.iter().cloned());
        dedup(&mut volumes);
        for volume in &volumes {
            note(self.remove_volume(volume).await, &mut removed.volumes);
        }

        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Force-removes a container with its anonymous volumes; `Ok(false)` when it was gone.
    async fn remove_container(&self, container: &str) -> Result<bool, ExecError> {
        let what = format!("removing container {container}");
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.timed(&what, self.docker.remove_container(container, Some(options))).await? {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            // Another clean-up is already removing it.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(engine(what, &e)),
        }
    }

    /// Ids of the networks carrying the label in `filter`.
    async fn list_networks(&self, filter: &str) -> Result<Vec<String>, ExecError> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([("label".to_owned(), vec![filter.to_owned()])])),
        };
        let what = format!("listing networks labelled {filter}");
        let found = self
            .timed(&what, self.docker.list_networks(Some(options)))
            .await?
            .map_err(|e| engine(&what, &e))?;
        Ok(found.into_iter().filter_map(|n| n.id).collect())
    }

    /// Removes a network (by id or name); `Ok(false)` when it was gone. Retries for a moment
    /// while the engine still counts an endpoint of a container just removed.
    async fn remove_network(&self, network: &str) -> Result<bool, ExecError> {
        let what = format!("removing network {network}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.timed(&what, self.docker.remove_network(network)).await? {
                Ok(()) => return Ok(true),
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) if attempt < REMOVE_ATTEMPTS && is_busy(&e) => {
                    tokio::time::sleep(REMOVE_RETRY_DELAY).await;
                }
                Err(e) => return Err(engine(what, &e)),
            }
        }
    }

    /// Names of the volumes carrying the label in `filter`.
    async fn list_volumes(&self, filter: &str) -> Result<Vec<String>, ExecError> {
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([("label".to_owned(), vec![filter.to_owned()])])),
        };
        let what = format!("listing volumes labelled {filter}");
        let found = self
            .timed(&what, self.docker.list_volumes(Some(options)))
            .await?
            .map_err(|e| engine(&what, &e))?;
        Ok(found.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    /// Removes a volume; `Ok(false)` when it was gone. Retries for a moment while a container
    /// just removed still holds it.
    async fn remove_volume(&self, volume: &str) -> Result<bool, ExecError> {
        let what = format!("removing volume {volume}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let options = RemoveVolumeOptions { force: false };
            match self.timed(&what, self.docker.remove_volume(volume, Some(options))).await? {
                Ok(()) => return Ok(true),
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) if attempt < REMOVE_ATTEMPTS && is_busy(&e) => {
                    tokio::time::sleep(REMOVE_RETRY_DELAY).await;
                }
                Err(e) => return Err(engine(what, &e)),
            }
        }
    }
}

/// Tries at removing a network or volume that is still in use.
const REMOVE_ATTEMPTS: u32 = 20;

/// Pause between those tries.
const REMOVE_RETRY_DELAY: Duration = Duration::from_millis(100);

/// "In use" answers: 409 for a volume, 403 for a network with active endpoints.
fn is_busy(err: &BollardError) -> bool {
    is_conflict(err)
        || matches!(err, BollardError::DockerResponseServerError { status_code: 403, .. })
}

/// Removes repeated entries, keeping the first of each.
fn dedup(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// Objects to remove by id or name in addition to those found by label.
#[derive(Debug, Default)]
struct Leftovers {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

#[async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn containers(&self) -> bool {
        true
    }

    fn check(&self, task: &TaskSpec) -> Result<(), ExecError> {
        let unsupported = |what: String| ExecError::Unsupported { executor: "docker", what };
        if !task.builder && task.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(unsupported("a job without an image (it runs containers)".to_owned()));
        }
        if task.builder && !task.services.is_empty() {
            return Err(unsupported("services beside the image builder".to_owned()));
        }
        if task.host_network && !task.services.is_empty() {
            return Err(unsupported(
                "services beside a job on the host network (they share a private network)"
                    .to_owned(),
            ));
        }
        for bind in &task.binds {
            if !bind.host.is_absolute() || !bind.container.starts_with('/') {
                return Err(unsupported(format!(
                    "a bind mount of {} at {:?}: both paths must be absolute",
                    bind.host.display(),
                    bind.container
                )));
            }
        }
        let mut seen = BTreeSet::new();
        for service in &task.services {
            if !spec::is_host_label(&service.name) {
                return Err(unsupported(format!(
                    "service name {:?} is not a host name (letters, digits and '-', at most 63)",
                    service.name
                )));
            }
            if !seen.insert(service.name.to_ascii_lowercase()) {
                return Err(unsupported(format!("two services named {:?}", service.name)));
            }
            if service.image.trim().is_empty() {
                return Err(unsupported(format!("service {:?} without an image", service.name)));
            }
        }
        Ok(())
    }

    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        self.check(task)?;
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            if tasks.contains_key(&task.id) {
                return Err(ExecError::Engine(format!(
                    "docker: task {} is already set up",
                    task.id
                )));
            }
            tasks.insert(task.id.clone(), TaskState::default());
        }

        if spec::has_network(task) {
            let what = format!("creating network {}", names::network(&task.id));
            let network = self
                .timed(&what, self.docker.create_network(spec::network(task)))
                .await?
                .map_err(|e| engine(&what, &e))?;
            self.with_state(&task.id, |s| s.network = Some(network.id))?;
        }

        let what = format!("creating volume {}", names::workspace_volume(&task.id));
        let volume = self
            .timed(&what, self.docker.create_volume(spec::workspace_volume(task)))
            .await?
            .map_err(|e| engine(&what, &e))?;
        self.with_state(&task.id, |s| s.volume = Some(volume.name))?;

        let mut images: Vec<String> = Vec::new();
        if task.builder {
            self.ensure_builder(task).await?;
        } else {
            images.extend(task.image.iter().cloned());
        }
        images.extend(task.services.iter().map(|s| s.image.clone()));
        dedup(&mut images);
        for image in &images {
            self.ensure_image(image, task.pull_auth.as_ref()).await?;
        }

        for service in &task.services {
            self.start_service(task, service).await?;
        }
        // A `kill` that ran while sidecars were being started may have missed some.
        if self.with_state(&task.id, |s| s.killed)? {
            for container in self.task_containers(&task.id).await? {
                self.kill_container(&container).await?;
            }
        }
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        let builder = task.builder.then(|| self.builder_image());
        let image =
            builder.as_deref().or(task.image.as_deref()).ok_or_else(|| ExecError::Unsupported {
                executor: "docker",
                what: "a job without an image (it runs containers)".to_owned(),
            })?;
        let (killed, started) = self.with_state(&task.id, |s| (s.killed, s.main.is_some()))?;
        if killed {
            return Err(ExecError::Engine(format!(
                "docker: task {} was killed before its main container started",
                task.id
            )));
        }
        if started {
            return Err(ExecError::Engine(format!("docker: task {} already started", task.id)));
        }

        let name = names::main_container(&task.id);
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let what = format!("creating container {name}");
        let created = self
            .timed(
                &what,
                self.docker.create_container(Some(options), spec::main_container(task, image)),
            )
            .await?
            .map_err(|e| engine(&what, &e))?;
        let container = created.id;
        self.with_state(&task.id, |s| s.main = Some(container.clone()))?;
        if let Some(seed) = &task.seed {
            self.upload_seed(&container, &name, seed).await?;
        }

        let what = format!("starting container {name}");
        self.timed(&what, self.docker.start_container(&container, None))
            .await?
            .map_err(|e| engine(&what, &e))?;
        // `kill` may have run between the check above and the start: it found nothing
        // running, so the kill is ours to do.
        if self.with_state(&task.id, |s| s.killed)? {
            self.kill_container(&container).await?;
        }
        Ok(logs::follow(logs::Follow {
            docker: self.docker.clone(),
            container,
            name,
            liveness: self.config.liveness_interval,
            call_timeout: self.config.call_timeout,
        }))
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let container =
            self.with_state(id, |s| s.main.clone())?.unwrap_or_else(|| names::main_container(id));
        let options = WaitContainerOptions { condition: "not-running".to_owned() };
        let mut waiting = self.docker.wait_container(&container, Some(options));
        let lost = logs::engine_lost(self.docker.clone(), self.config.liveness_interval);
        let outcome = tokio::select! {
            outcome = waiting.next() => outcome,
            err = lost => return Err(err),
        };
        let code = match outcome {
            Some(Ok(status)) => status.status_code,
            // bollard reports a non-zero exit as an error; for us it is a result.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) if is_not_found(&e) => {
                return Err(ExecError::Engine(format!(
                    "docker: task {id} has no main container (not started, or removed)"
                )));
            }
            Some(Err(e)) => {
                return Err(engine(
                    format_args!("waiting for container {}", names::main_container(id)),
                    &e,
                ));
            }
            None => {
                return Err(ExecError::Engine(format!(
                    "docker: waiting for container {}: the engine sent no exit status",
                    names::main_container(id)
                )));
            }
        };
        let code = i32::try_from(code).unwrap_or(i32::MAX);
        let killed = if code == 0 || self.with_state(id, |s| s.killed || s.signaled)? {
            None
        } else {
            self.killed_by(&container, code).await
        };
        Ok(ExitStatus { code, killed })
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        let main = self.with_state(id, |s| {
            s.killed = true;
            s.main.clone()
        })?;
        // The main container first, so that `wait` resolves as soon as possible.
        if let Some(main) = &main {
            self.kill_container(main).await?;
        }
        let others: Vec<String> = self
            .task_containers(id)
            .await?
            .into_iter()
            .filter(|c| Some(c) != main.as_ref())
            .collect();
        let kills = others.iter().map(|c| self.kill_container(c));
        futures::future::join_all(kills).await.into_iter().collect()
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        let Some(container) = self.with_state(id, |s| s.main.clone())? else {
            return Err(ExecError::Engine(format!(
                "docker: task {id} has no main container to export the workspace from"
            )));
        };
        self.download_workspace(id, &container, dest).await
    }

    /// `docker kill --signal` of the main container: its first process gets it (the
    /// program itself when the image runs it directly, as Docker and Nomad signal). A
    /// container that is not running (any more) is `Ok`.
    async fn signal(&self, id: &TaskId, signal: &str) -> Result<(), ExecError> {
        let name = signal.strip_prefix("SIG").unwrap_or(signal);
        if kiln_exec::signal_number(name).is_none() {
            return Err(kiln_exec::unknown_signal("docker", signal));
        }
        let Some(main) = self.with_state(id, |s| {
            s.signaled = true;
            s.main.clone()
        })?
        else {
            return Err(ExecError::Engine(format!("docker: task {id} is not running yet")));
        };
        let what = format!("sending SIG{name} to container {main}");
        let options = KillContainerOptions { signal: format!("SIG{name}") };
        match self.timed(&what, self.docker.kill_container(&main, Some(options))).await? {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(engine(what, &e)),
        }
    }

    /// `docker exec` in the main container: created, started attached, its output drained,
    /// then its exit code inspected.
    async fn exec(&self, id: &TaskId, argv: &[String]) -> Result<ExitStatus, ExecError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let Some(container) = self.with_state(id, |s| s.main.clone())? else {
            return Err(ExecError::Engine(format!("docker: task {id} has no main container")));
        };
        let what = format!("running {argv:?} in container {}", names::main_container(id));
        let options = CreateExecOptions {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .timed(&what, self.docker.create_exec(&container, options))
            .await?
            .map_err(|e| engine(&what, &e))?;
        let started = self
            .timed(&what, self.docker.start_exec(&created.id, None))
            .await?
            .map_err(|e| engine(&what, &e))?;
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                item.map_err(|e| engine(&what, &e))?;
            }
        }
        let inspected = self
            .timed(&what, self.docker.inspect_exec(&created.id))
            .await?
            .map_err(|e| engine(&what, &e))?;
        let code = inspected.exit_code.unwrap_or(-1);
        Ok(ExitStatus { code: i32::try_from(code).unwrap_or(i32::MAX), killed: None })
    }

    async fn list_images(&self) -> Result<Vec<kiln_exec::ImageInfo>, ExecError> {
        let what = "listing images";
        let options = bollard::query_parameters::ListImagesOptions::default();
        let images = self
            .timed(what, self.docker.list_images(Some(options)))
            .await?
            .map_err(|e| engine(what, &e))?;
        Ok(images
            .into_iter()
            .map(|i| kiln_exec::ImageInfo {
                id: i.id,
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                digests: i.repo_digests.into_iter().filter(|d| d != "<none>@<none>").collect(),
                size: u64::try_from(i.size).unwrap_or(0),
                created: i.created,
            })
            .collect())
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&kiln_exec::RegistryAuth>,
    ) -> Result<(), ExecError> {
        if image.trim().is_empty() {
            return Err(ExecError::ImageNotFound {
                image: image.to_owned(),
                detail: "empty image reference".to_owned(),
            });
        }
        self.pull(image, auth).await
    }

    async fn remove_image(&self, id: &str) -> Result<(), ExecError> {
        let what = format!("inspecting image {id}");
        let info = match self.timed(&what, self.docker.inspect_image(id)).await? {
            Ok(info) => info,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(engine(what, &e)),
        };
        // Every tag first (an image of several repositories is refused by id), then the id.
        let mut names: Vec<String> = info.repo_tags.unwrap_or_default();
        names.push(info.id.unwrap_or_else(|| id.to_owned()));
        for name in names {
            let what = format!("removing image {name}");
            let options = bollard::query_parameters::RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            };
            match self.timed(&what, self.docker.remove_image(&name, Some(options), None)).await? {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine(what, &e)),
            }
        }
        Ok(())
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        let state = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        let state = state.unwrap_or_default();
        let mut extra = Leftovers {
            containers: state.main.into_iter().chain(state.sidecars).collect(),
            networks: state.network.into_iter().collect(),
            volumes: state.volume.into_iter().collect(),
        };
        // By name too, for whatever a crashed process created without recording it.
        extra.containers.push(names::main_container(id));
        extra.networks.push(names::network(id));
        extra.volumes.push(names::workspace_volume(id));
        self.remove_matching(&names::task_filter(id), &extra).await.map(|_| ())
    }
}
