//! The fake's "kubelet": runs a pod's containers on the Docker engine, reports their states
//! into the pod's status, serves their logs and exec sessions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, RemoveVolumeOptions,
    WaitContainerOptions,
};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Node, Pod, PodCondition, PodSpec,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Shared, header_str, now, query, status, time_of};

/// The Docker objects of one pod.
#[derive(Debug, Default)]
pub(crate) struct PodRuntime {
    inner: Mutex<RuntimeState>,
}

#[derive(Debug, Default)]
struct RuntimeState {
    /// Pod container name → Docker container id.
    containers: BTreeMap<String, String>,
    /// The pause container's id.
    pause: Option<String>,
    volumes: Vec<String>,
    deleted: bool,
}

impl PodRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, RuntimeState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Docker id of pod container `name`.
    fn container(&self, name: &str) -> Option<String> {
        self.lock().containers.get(name).cloned()
    }

    /// Records a created container; `false` (and nothing recorded) when the pod was deleted
    /// meanwhile, in which case the caller removes it.
    fn record(&self, name: Option<&str>, id: &str) -> bool {
        let mut state = self.lock();
        if state.deleted {
            return false;
        }
        match name {
            Some(name) => {
                state.containers.insert(name.to_string(), id.to_string());
            }
            None => state.pause = Some(id.to_string()),
        }
        true
    }

    /// Removes every container and volume (the pod was deleted).
    pub(crate) async fn remove(&self, docker: &Docker) {
        let (containers, volumes) = {
            let mut state = self.lock();
            state.deleted = true;
            let mut ids: Vec<String> =
                std::mem::take(&mut state.containers).into_values().collect();
            ids.extend(state.pause.take());
            (ids, std::mem::take(&mut state.volumes))
        };
        for id in containers {
            remove_container(docker, &id).await;
        }
        for volume in volumes {
            let _ = docker.remove_volume(&volume, Some(RemoveVolumeOptions { force: true })).await;
        }
    }
}

/// Force-removes container `id` with its anonymous volumes.
pub(crate) async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    let _ = docker.remove_container(id, Some(options)).await;
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<&str>) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message: message.map(str::to_string),
        last_transition_time: Some(now()),
        ..Default::default()
    }
}

fn waiting(c: &Container, reason: &str, message: Option<String>) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.to_string()), message }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a pod asks of a node: its containers' requests (limits where a request is not
/// written, as the API server defaults them), in nano-CPUs and bytes.
fn requests(spec: &PodSpec) -> (i64, i64) {
    let mut cpu = 0;
    let mut memory = 0;
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        let amount = |what: &str| {
            r.requests
                .as_ref()
                .and_then(|m| m.get(what))
                .or_else(|| r.limits.as_ref().and_then(|m| m.get(what)))
                .map(|q| q.0.clone())
        };
        cpu += amount("cpu").and_then(|q| nano_cpus(&q)).unwrap_or(0);
        memory += amount("memory").and_then(|q| bytes(&q)).unwrap_or(0);
    }
    (cpu, memory)
}

/// kube-scheduler's filters, in its order, for the fake's nodes: node selector and required
/// node affinity, then room for the requests (allocatable minus what pods bound there and
/// not ended ask). The node taken, or kube-scheduler's message (reasons counted, sorted).
pub(crate) fn schedule(nodes: &[Node], pods: &[Pod], spec: &PodSpec) -> Result<String, String> {
    let (cpu, memory) = requests(spec);
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut helpless, mut victimless) = (0, 0);
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if !crate::affinity::node_matches(
            &labels,
            spec.node_selector.as_ref(),
            spec.affinity.as_ref(),
        ) {
            *reasons.entry("node(s) didn't match Pod's node affinity/selector").or_default() += 1;
            helpless += 1;
            continue;
        }
        let allocatable =
            node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
        let free_of = |what: &str, parse: fn(&str) -> Option<i64>| {
            allocatable.get(what).and_then(|q| parse(&q.0)).unwrap_or(i64::MAX)
        };
        let (mut used_cpu, mut used_memory) = (0, 0);
        for p in pods {
            let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node_name);
            let ended = matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if on_node && !ended {
                let (c, m) = requests(p.spec.as_ref().unwrap_or(&PodSpec::default()));
                used_cpu += c;
                used_memory += m;
            }
        }
        let short_cpu = cpu > 0 && used_cpu + cpu > free_of("cpu", nano_cpus);
        let short_memory = memory > 0 && used_memory + memory > free_of("memory", bytes);
        if short_cpu {
            *reasons.entry("Insufficient cpu").or_default() += 1;
        }
        if short_memory {
            *reasons.entry("Insufficient memory").or_default() += 1;
        }
        if !short_cpu && !short_memory {
            return Ok(node_name);
        }
        victimless += 1;
    }
    let total = nodes.len();
    let filters: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let mut preemption = Vec::new();
    if victimless > 0 {
        preemption.push(format!("{victimless} No preemption victims found for incoming pod"));
    }
    if helpless > 0 {
        preemption.push(format!("{helpless} Preemption is not helpful for scheduling"));
    }
    Err(format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
        filters.join(", "),
        preemption.join(", ")
    ))
}

/// Parses a CPU quantity (`500m`, `2`, `0.5`) into nano-CPUs.
pub(crate) fn nano_cpus(q: &str) -> Option<i64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<i64>().ok().map(|m| m * 1_000_000);
    }
    q.parse::<f64>().ok().map(|c| (c * 1e9) as i64)
}

/// Parses a memory quantity (`67108864`, `64Mi`, `1G`, `128k`) into bytes.
pub(crate) fn bytes(q: &str) -> Option<i64> {
    const UNITS: &[(&str, i64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<i64>().ok().map(|n| n * factor);
        }
    }
    q.parse::<i64>().ok()
}

/// Runs pod `namespace/name` (uid `uid`): schedules it, "pulls" its images, creates and
/// starts its containers, then records each container's end.
pub(crate) async fn run_pod(
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    uid: String,
    runtime: Arc<PodRuntime>,
) {
    let Some(pod) = shared.store().pods.get(&(namespace.clone(), name.clone())).cloned() else {
        return;
    };
    let spec = pod.spec.clone().unwrap_or_default();
    // Scheduling: tried again while no node takes it (pods going free room).
    let mut told = None;
    let node = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pods: Vec<Pod> = {
            let store = shared.store();
            if store
                .pods
                .get(&(namespace.clone(), name.clone()))
                .is_none_or(|p| p.metadata.uid.as_deref() != Some(uid.as_str()))
            {
                return;
            }
            store.pods.values().cloned().collect()
        };
        let placed = if shared.faults().unschedulable {
            Err("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_string())
        } else {
            schedule(&shared.nodes(), &pods, &spec)
        };
        match placed {
            Ok(node) => break node,
            Err(message) => {
                if told.as_ref() != Some(&message) {
                    shared.update_pod(&namespace, &name, &uid, |pod| {
                        let status = pod.status.get_or_insert_default();
                        status.conditions = Some(vec![condition(
                            "PodScheduled",
                            false,
                            Some("Unschedulable"),
                            Some(&message),
                        )]);
                    });
                    told = Some(message);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    shared.update_pod(&namespace, &name, &uid, |pod| {
        pod.spec.get_or_insert_default().node_name = Some(node.clone());
        let status = pod.status.get_or_insert_default();
        status.conditions = Some(vec![condition("PodScheduled", true, None, None)]);
        status.host_ip = Some("127.0.0.1".to_string());
        status.start_time = Some(now());
        status.container_statuses =
            Some(spec.containers.iter().map(|c| waiting(c, "ContainerCreating", None)).collect());
    });
    // Images: the fake never pulls; an image the engine lacks (or one marked bad) fails.
    let mut missing = Vec::new();
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let bad = shared.faults().bad_images.contains(&image);
        if bad || shared.docker.inspect_image(&image).await.is_err() {
            missing.push(c.name.clone());
        }
    }
    if !missing.is_empty() {
        let statuses = |backoff: bool| -> Vec<ContainerStatus> {
            spec.containers
                .iter()
                .map(|c| {
                    let image = c.image.clone().unwrap_or_default();
                    if !missing.contains(&c.name) {
                        waiting(c, "ContainerCreating", None)
                    } else if backoff {
                        waiting(c, "ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\"")))
                    } else {
                        waiting(c, "ErrImagePull", Some(format!(
                            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
                        )))
                    }
                })
                .collect()
        };
        shared.update_pod(&namespace, &name, &uid, |pod| {
            pod.status.get_or_insert_default().container_statuses = Some(statuses(false));
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        shared.update_pod(&namespace, &name, &uid, |pod| {
            pod.status.get_or_insert_default().container_statuses = Some(statuses(true));
        });
        return;
    }
    match start_containers(&shared, &pod, &uid, &runtime).await {
        Ok(started) => {
            let ids = runtime.lock().containers.clone();
            shared.update_pod(&namespace, &name, &uid, |pod| {
                let status = pod.status.get_or_insert_default();
                status.phase = Some("Running".to_string());
                status.pod_ip = Some("127.0.0.1".to_string());
                status.conditions = Some(vec![
                    condition("PodScheduled", true, None, None),
                    condition("Initialized", true, None, None),
                    condition("ContainersReady", true, None, None),
                    condition("Ready", true, None, None),
                ]);
                status.container_statuses = Some(
                    spec.containers
                        .iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            image: c.image.clone().unwrap_or_default(),
                            image_id: String::new(),
                            container_id: ids.get(&c.name).map(|id| format!("docker://{id}")),
                            ready: true,
                            started: Some(true),
                            restart_count: 0,
                            state: Some(ContainerState {
                                running: Some(ContainerStateRunning {
                                    started_at: Some(time_of(started)),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                );
            });
            for (container, id) in ids {
                tokio::spawn(watch_container(
                    shared.clone(),
                    namespace.clone(),
                    name.clone(),
                    uid.clone(),
                    container,
                    id,
                ));
            }
        }
        Err(message) => {
            shared.update_pod(&namespace, &name, &uid, |pod| {
                let status = pod.status.get_or_insert_default();
                status.container_statuses = Some(
                    spec.containers
                        .iter()
                        .map(|c| waiting(c, "CreateContainerError", Some(message.clone())))
                        .collect(),
                );
            });
        }
    }
}

/// Creates the pause container, the volumes and the pod's containers, and starts them.
async fn start_containers(
    shared: &Arc<Shared>,
    pod: &Pod,
    uid: &str,
    runtime: &PodRuntime,
) -> Result<DateTime<Utc>, String> {
    let docker = &shared.docker;
    let spec = pod.spec.clone().unwrap_or_default();
    let labels = std::collections::HashMap::from([
        ("kfake.pod".to_string(), uid.to_string()),
        ("kfake.instance".to_string(), shared.instance.clone()),
    ]);
    let mut volumes = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        let docker_name = format!("kfake-{uid}-{}", volume.name);
        let request = VolumeCreateRequest {
            name: Some(docker_name.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        docker.create_volume(request).await.map_err(|e| e.to_string())?;
        let mut state = runtime.lock();
        state.volumes.push(docker_name.clone());
        volumes.insert(volume.name.clone(), docker_name);
    }
    let extra_hosts: Vec<String> = spec
        .host_aliases
        .iter()
        .flatten()
        .flat_map(|a| a.hostnames.iter().flatten().map(move |h| format!("{h}:{}", a.ip)))
        .collect();
    let pause = ContainerCreateBody {
        image: Some(shared.infra_image.clone()),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done".into(),
        ]),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig { extra_hosts: Some(extra_hosts), ..Default::default() }),
        ..Default::default()
    };
    let options =
        CreateContainerOptions { name: Some(format!("kfake-{uid}-pause")), ..Default::default() };
    let created = docker.create_container(Some(options), pause).await.map_err(|e| e.to_string())?;
    if !runtime.record(None, &created.id) {
        remove_container(docker, &created.id).await;
        return Err("the pod was deleted".to_string());
    }
    docker.start_container(&created.id, None).await.map_err(|e| e.to_string())?;
    let network = format!("container:{}", created.id);
    for c in &spec.containers {
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        let memory = limits.get("memory").and_then(|q| bytes(&q.0));
        let mounts = c
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                Some(Mount {
                    target: Some(m.mount_path.clone()),
                    source: Some(volumes.get(&m.name)?.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: m.read_only,
                    ..Default::default()
                })
            })
            .collect();
        let body = ContainerCreateBody {
            image: c.image.clone(),
            entrypoint: c.command.clone(),
            cmd: c.args.clone(),
            env: Some(
                c.env
                    .iter()
                    .flatten()
                    .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
                    .collect(),
            ),
            working_dir: c.working_dir.clone(),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                mounts: Some(mounts),
                memory,
                memory_swap: memory,
                nano_cpus: limits.get("cpu").and_then(|q| nano_cpus(&q.0)),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_string()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("kfake-{uid}-{}", c.name)),
            ..Default::default()
        };
        let created =
            docker.create_container(Some(options), body).await.map_err(|e| e.to_string())?;
        if !runtime.record(Some(&c.name), &created.id) {
            remove_container(docker, &created.id).await;
            return Err("the pod was deleted".to_string());
        }
    }
    let started = Utc::now();
    let ids = runtime.lock().containers.clone();
    for c in &spec.containers {
        if let Some(id) = ids.get(&c.name) {
            docker.start_container(id, None).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(started)
}

/// Waits for container `id` (pod container `container`) to end and records how.
async fn watch_container(
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    uid: String,
    container: String,
    id: String,
) {
    let mut waits = shared.docker.wait_container(&id, None::<WaitContainerOptions>);
    while let Some(item) = waits.next().await {
        if item.is_err() {
            break;
        }
    }
    let Ok(inspected) = shared.docker.inspect_container(&id, None).await else { return };
    let state = inspected.state.unwrap_or_default();
    let code = i32::try_from(state.exit_code.unwrap_or(-1)).unwrap_or(-1);
    let oom = state.oom_killed.unwrap_or(false);
    let parse = |t: Option<String>| {
        t.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| time_of(t.with_timezone(&Utc)))
    };
    let reason = if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    shared.update_pod(&namespace, &name, &uid, |pod| {
        let status = pod.status.get_or_insert_default();
        for s in status.container_statuses.iter_mut().flatten() {
            if s.name == container {
                s.ready = false;
                s.started = Some(false);
                s.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some(reason.to_string()),
                        started_at: parse(state.started_at.clone()),
                        finished_at: parse(state.finished_at.clone()),
                        container_id: Some(format!("docker://{id}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        let ended: Vec<i32> = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|s| s.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
            .collect();
        let all = status.container_statuses.as_ref().map(Vec::len).unwrap_or(0);
        if ended.len() == all {
            status.phase = Some(
                if ended.iter().all(|c| *c == 0) { "Succeeded" } else { "Failed" }.to_string(),
            );
        }
    });
}

/// Finds the Docker container of `container` in pod `namespace/name`, or the error response
/// a real API server gives.
fn locate(
    shared: &Shared,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(String, String), Box<Response>> {
    let pod = shared.store().pods.get(&(namespace.to_string(), name.to_string())).cloned();
    let Some(pod) = pod else { return Err(Box::new(super::not_found("pods", name))) };
    let spec = pod.spec.clone().unwrap_or_default();
    let container = match container {
        Some(c) => c.to_string(),
        None if spec.containers.len() == 1 => spec.containers[0].name.clone(),
        None => {
            let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
            return Err(Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                ),
                None,
            )));
        }
    };
    if !spec.containers.iter().any(|c| c.name == container) {
        return Err(Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("container {container} is not valid for pod {name}"),
            None,
        )));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime = shared.runtimes.lock().unwrap_or_else(PoisonError::into_inner).get(&uid).cloned();
    match runtime.and_then(|r| r.container(&container)) {
        Some(id) => Ok((container, id)),
        None => {
            let reason = pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .find(|s| s.name == container)
                .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .unwrap_or_else(|| "ContainerCreating".to_string());
            Err(Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
                ),
                None,
            )))
        }
    }
}

/// `GET .../pods/{name}/log`: `container`, `follow`, `timestamps`, `sinceTime`,
/// `sinceSeconds`, `tailLines` and `stream` (`All`, `Stdout`, `Stderr`).
pub(crate) async fn logs(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let params = query(request.uri().query());
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let (_, id) = match locate(&shared, &ns, &name, get("container").as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let truthy = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
    let unsplit = shared.faults().unsplit_logs;
    let which = get("stream").filter(|_| !unsplit).unwrap_or_else(|| "All".to_string());
    let (stdout, stderr) = match which.as_str() {
        "All" => (true, true),
        "Stdout" => (true, false),
        "Stderr" => (false, true),
        other => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!(
                    "PodLogOptions \"{name}\" is invalid: stream: Unsupported value: \"{other}\": supported values: \"All\", \"Stderr\", \"Stdout\""
                ),
                None,
            );
        }
    };
    let since = match (get("sinceTime"), get("sinceSeconds")) {
        (Some(t), _) => DateTime::parse_from_rfc3339(&t).map(|t| t.timestamp() as i32).unwrap_or(0),
        (None, Some(s)) => (Utc::now().timestamp() - s.parse::<i64>().unwrap_or(0)) as i32,
        _ => 0,
    };
    let options = LogsOptions {
        follow: truthy("follow"),
        stdout,
        stderr,
        timestamps: true,
        since,
        tail: get("tailLines").unwrap_or_else(|| "all".to_string()),
        ..Default::default()
    };
    let keep_stamps = truthy("timestamps");
    let cut = {
        let mut faults = shared.faults();
        match faults.drop_logs {
            Some((lines, reads)) if reads > 0 => {
                faults.drop_logs = (reads > 1).then_some((lines, reads - 1));
                Some(lines)
            }
            _ => None,
        }
    };
    let frames = shared.docker.logs(&id, Some(options)).filter_map(move |frame| {
        let line = match frame {
            Ok(
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message },
            ) => {
                if keep_stamps {
                    Some(Ok(message))
                } else {
                    let text = message
                        .iter()
                        .position(|b| *b == b' ')
                        .map(|i| message.slice(i + 1..))
                        .unwrap_or(message);
                    Some(Ok(text))
                }
            }
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        };
        std::future::ready(line)
    });
    let body: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> = match cut {
        Some(lines) => frames
            .take(lines)
            .chain(futures::stream::once(async {
                Err(std::io::Error::other("log read cut by the fake"))
            }))
            .boxed(),
        None => frames.boxed(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], Body::from_stream(body))
        .into_response()
}

/// `GET|POST .../pods/{name}/exec`: the WebSocket remote-command protocol
/// (`v5.channel.k8s.io`, or `v4.channel.k8s.io` without stdin close): binary messages whose
/// first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 255 close).
pub(crate) async fn exec(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let params = query(request.uri().query());
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let command: Vec<String> =
        params.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let stdin = get("stdin").is_some_and(|v| v == "true" || v == "1");
    let (container, id) = match locate(&shared, &ns, &name, get("container").as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let running = shared
        .docker
        .inspect_container(&id, None)
        .await
        .ok()
        .and_then(|c| c.state?.running)
        .unwrap_or(false);
    if !running {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("container {container} is not running"),
            None,
        );
    }
    if command.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
            None,
        );
    }
    let headers = request.headers();
    let Some(key) = header_str(headers, "sec-websocket-key").map(str::to_string) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "Upgrade request required", None);
    };
    let offered = header_str(headers, "sec-websocket-protocol").unwrap_or("").to_string();
    let protocol = if offered.contains("v5.channel.k8s.io") {
        "v5.channel.k8s.io"
    } else {
        "v4.channel.k8s.io"
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let docker = shared.docker.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        serve_exec(docker, ws, id, command, stdin).await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("a valid accept key"),
    );
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    response
}

async fn serve_exec<S>(
    docker: Docker,
    ws: WebSocketStream<S>,
    id: String,
    command: Vec<String>,
    stdin: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let failure = |message: String| {
        json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
            .to_string()
    };
    let options = CreateExecOptions {
        cmd: Some(command.clone()),
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let started = match docker.create_exec(&id, options).await {
        Ok(created) => docker.start_exec(&created.id, None).await.map(|s| (created.id, s)),
        Err(e) => Err(e),
    };
    let (exec_id, results) = match started {
        Ok(found) => found,
        Err(e) => {
            let mut frame = vec![3u8];
            frame.extend(failure(e.to_string()).into_bytes());
            let _ = sink.send(Message::Binary(frame.into())).await;
            let _ = sink.close().await;
            return;
        }
    };
    let StartExecResults::Attached { mut output, mut input } = results else { return };
    let feeder = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(data)
                    if data.first() == Some(&0) && input.write_all(&data[1..]).await.is_err() =>
                {
                    break;
                }
                Message::Binary(data) if data.first() == Some(&255) && data.get(1) == Some(&0) => {
                    let _ = input.shutdown().await;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    while let Some(Ok(frame)) = output.next().await {
        let (channel, message) = match frame {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (1u8, message),
            LogOutput::StdErr { message } => (2u8, message),
            _ => continue,
        };
        let mut data = Vec::with_capacity(message.len() + 1);
        data.push(channel);
        data.extend_from_slice(&message);
        if sink.send(Message::Binary(data.into())).await.is_err() {
            break;
        }
    }
    feeder.abort();
    let code = docker.inspect_exec(&exec_id).await.ok().and_then(|e| e.exit_code).unwrap_or(-1);
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        })
    };
    let mut frame = vec![3u8];
    frame.extend(status.to_string().into_bytes());
    let _ = sink.send(Message::Binary(frame.into())).await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(nano_cpus("500m"), Some(500_000_000));
        assert_eq!(nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("67108864"), Some(67108864));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
    }

    #[test]
    fn the_scheduler_filters_as_kube_scheduler_and_says_why_in_its_words() {
        use crate::fake::fake_node;
        let nodes = vec![
            fake_node("a", &[("disktype", "ssd")], "3920m", "15167428Ki"),
            fake_node("b", &[("disktype", "hdd")], "3920m", "15167428Ki"),
        ];
        let pod = |cpu: &str| -> PodSpec {
            serde_json::from_value(json!({
                "nodeSelector": {"disktype": "ssd"},
                "containers": [{"name": "job", "resources": {"limits": {"cpu": cpu}}}]
            }))
            .unwrap()
        };
        assert_eq!(schedule(&nodes, &[], &pod("2")), Ok("a".to_string()));
        assert_eq!(
            schedule(&nodes, &[], &pod("8")),
            Err("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node \
                 affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims \
                 found for incoming pod, 1 Preemption is not helpful for scheduling."
                .to_string())
        );
        // A pod bound to `a` and still running takes its room.
        let mut bound = Pod { spec: Some(pod("3")), ..Default::default() };
        bound.spec.as_mut().unwrap().node_name = Some("a".to_string());
        assert!(schedule(&nodes, &[bound.clone()], &pod("1")).is_err());
        bound.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".to_string()),
            ..Default::default()
        });
        assert_eq!(schedule(&nodes, &[bound], &pod("1")), Ok("a".to_string()));
    }
}
