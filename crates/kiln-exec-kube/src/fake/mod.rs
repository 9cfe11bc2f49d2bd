//! A FAKE Kubernetes API server for tests (feature `fake`): an axum server on loopback that
//! the real `kube` client talks to over real HTTP, answering the handful of core/v1
//! endpoints the executor uses with the shapes a real API server gives (Pod and PodList
//! objects, `metav1.Status` errors, watch event lines, the `v5.channel.k8s.io` exec
//! WebSocket protocol). It is not Kubernetes: no scheduler, no kubelet, no admission, no
//! authentication. Its nodes ([`FakeApi::set_nodes`], one `fake-node` by default) are
//! `Node` objects shaped as a real cluster's (labels, `status.allocatable` cpu and memory);
//! its scheduler binds a pod to the first node that matches its node selector and required
//! node affinity and has room for its containers' requests, else leaves it `Pending` with
//! `PodScheduled=False`, reason `Unschedulable` and kube-scheduler's message, and tries
//! again as pods go.
//!
//! Pods really run: each becomes Docker containers on the engine of `DOCKER_HOST` (a
//! `kfake-UID-pause` container holding the pod's network namespace and `/etc/hosts`, one
//! container per pod container joined to it, one Docker volume per `emptyDir`). Logs come
//! from the engine's log API, exec from its exec API, exit codes and OOM kills from its
//! container state.
//!
//! Faults on demand ([`FakeApi`]'s methods): answer the next requests with 429 or 500, leave
//! pods unschedulable, fail image pulls, expire watches with 410 Gone, drop log streams after
//! some lines.
//!
//! Endpoints: `GET /version`; `GET|POST /api/v1/namespaces/{ns}/pods` (list, watch, create);
//! `GET|DELETE /api/v1/namespaces/{ns}/pods/{name}`; `GET .../pods/{name}/log`;
//! `GET|POST .../pods/{name}/exec` (WebSocket); the same list/create/get/delete for
//! `secrets`; `GET /api/v1/nodes`. Anything else is a 404 `Status`.

mod runtime;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bollard::Docker;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Pod, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::pod::{is_label_key, is_label_value};

/// The fake node's name.
pub const NODE: &str = "fake-node";

/// Events kept for watches that resume from a resource version.
const HISTORY: usize = 1000;

/// One change to a pod, as a watch reports it.
#[derive(Debug, Clone)]
struct Event {
    version: u64,
    kind: &'static str,
    namespace: String,
    pod: Pod,
}

/// Faults to inject.
#[derive(Debug, Default)]
struct Faults {
    /// Status codes the next requests get, in order.
    fail: VecDeque<u16>,
    /// No pod gets scheduled.
    unschedulable: bool,
    /// Images whose pulls fail even when the engine has them.
    bad_images: BTreeSet<String>,
    /// Watches still to expire at once with 410 Gone.
    expire_watches: usize,
    /// Log reads still to cut, and after how many lines.
    drop_logs: Option<(usize, usize)>,
    /// Every request under `/api/` is refused with 403, as for an identity without RBAC
    /// access.
    forbidden: bool,
    /// Log reads ignore `stream` (a cluster without the `PodLogsQuerySplitStreams` gate).
    unsplit_logs: bool,
    /// Pod creations still to answer with 500 after they were made (a reply lost after the
    /// commit).
    lose_create_replies: usize,
}

#[derive(Debug, Default)]
struct Store {
    version: u64,
    pods: BTreeMap<(String, String), Pod>,
    secrets: BTreeMap<(String, String), Secret>,
    history: VecDeque<Event>,
    next_uid: u64,
}

/// What handlers share.
struct Shared {
    docker: Docker,
    instance: String,
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    faults: Mutex<Faults>,
    runtimes: Mutex<HashMap<String, Arc<runtime::PodRuntime>>>,
    requests: Mutex<Vec<String>>,
    nodes: Mutex<Vec<Node>>,
    infra_image: String,
}

impl Shared {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nodes(&self) -> Vec<Node> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records a change (under the store lock, so that watches see no gap and no repeat).
    fn emit(&self, store: &mut Store, kind: &'static str, namespace: &str, pod: &mut Pod) {
        store.version += 1;
        pod.metadata.resource_version = Some(store.version.to_string());
        let event = Event {
            version: store.version,
            kind,
            namespace: namespace.to_string(),
            pod: pod.clone(),
        };
        store.history.push_back(event.clone());
        while store.history.len() > HISTORY {
            store.history.pop_front();
        }
        let _ = self.events.send(event);
    }

    /// Applies `change` to pod `namespace/name` if it is still the pod `uid`.
    fn update_pod(&self, namespace: &str, name: &str, uid: &str, change: impl FnOnce(&mut Pod)) {
        let mut store = self.store();
        let key = (namespace.to_string(), name.to_string());
        let Some(mut pod) = store.pods.get(&key).cloned() else { return };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return;
        }
        change(&mut pod);
        self.emit(&mut store, "MODIFIED", namespace, &mut pod);
        store.pods.insert(key, pod);
    }
}

/// A running fake API server. Dropping it stops serving; call [`FakeApi::shutdown`] first
/// to remove the containers of pods still there.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// No Docker engine to run pods on.
    #[error("fake API server: no Docker engine at DOCKER_HOST: {0}")]
    Docker(String),
    /// The loopback listener failed.
    #[error("fake API server: cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
}

impl FakeApi {
    /// Starts a fake on a free loopback port, running pods on the Docker engine of
    /// `DOCKER_HOST` (else the default socket), with `busybox:latest` as the pause image.
    pub async fn start() -> Result<FakeApi, FakeError> {
        let docker =
            Docker::connect_with_defaults().map_err(|e| FakeError::Docker(e.to_string()))?;
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| FakeError::Docker("no answer within 5s".to_string()))?
            .map_err(|e| FakeError::Docker(e.to_string()))?;
        remove_stale(&docker).await;
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(FakeError::Listen)?;
        let addr = listener.local_addr().map_err(FakeError::Listen)?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            docker,
            instance: format!("{}-{}", std::process::id(), addr.port()),
            store: Mutex::new(Store::default()),
            events,
            faults: Mutex::new(Faults::default()),
            runtimes: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            nodes: Mutex::new(vec![fake_node(NODE, &[], "64", "256Gi")]),
            infra_image: "busybox:latest".to_string(),
        });
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeApi { addr, shared, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configuration for this fake, with `namespace` as its default namespace.
    pub fn client_config(&self, namespace: &str) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_namespace = namespace.to_string();
        config.connect_timeout = Some(Duration::from_secs(5));
        config
    }

    /// The next `n` requests (of any kind) are answered with `code`: 429 (with
    /// `Retry-After: 1`) or any 5xx (an `InternalError` status).
    pub fn fail_next(&self, code: u16, n: usize) {
        self.shared.faults().fail.extend(std::iter::repeat_n(code, n));
    }

    /// While set, every request under `/api/` is refused with 403 Forbidden (an identity
    /// without access).
    pub fn set_forbidden(&self, on: bool) {
        self.shared.faults().forbidden = on;
    }

    /// While set, log reads ignore `stream=Stdout|Stderr` and give both streams, as a
    /// cluster without the `PodLogsQuerySplitStreams` feature gate does.
    pub fn set_unsplit_logs(&self, on: bool) {
        self.shared.faults().unsplit_logs = on;
    }

    /// The next `n` pod creations are made but answered with 500 Internal Error, as when
    /// the reply is lost after the object was stored: a retry then meets 409 AlreadyExists.
    pub fn lose_create_replies(&self, n: usize) {
        self.shared.faults().lose_create_replies += n;
    }

    /// Replaces the cluster's nodes (see [`fake_node`]); pods already bound stay where they
    /// are, pending ones are tried against the new list.
    pub fn set_nodes(&self, nodes: Vec<Node>) {
        *self.shared.nodes.lock().unwrap_or_else(PoisonError::into_inner) = nodes;
    }

    /// Gives the engine's image `source` the name `target` too (`docker tag`), so that pods
    /// may name an image as if it came from another registry (the fake never pulls).
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<(), String> {
        let (repo, tag) = match target.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (target, "latest"),
        };
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.shared.docker.tag_image(source, Some(options)).await.map_err(|e| e.to_string())
    }

    /// While set, new pods stay `Pending` with `PodScheduled=False` (`Unschedulable`).
    pub fn set_unschedulable(&self, on: bool) {
        self.shared.faults().unschedulable = on;
    }

    /// Pulls of `image` fail (`ErrImagePull`, then `ImagePullBackOff`) even when the engine
    /// holds it. (Images the engine lacks always fail: the fake never pulls.)
    pub fn fail_image(&self, image: &str) {
        self.shared.faults().bad_images.insert(image.to_string());
    }

    /// The next `n` watches end at once with an `ERROR` event carrying 410 Gone ("too old
    /// resource version"), as a real API server's watch cache answers.
    pub fn expire_next_watches(&self, n: usize) {
        self.shared.faults().expire_watches += n;
    }

    /// The next `reads` log reads break off (the connection is cut) after `lines` lines.
    pub fn drop_log_reads(&self, lines: usize, reads: usize) {
        self.shared.faults().drop_logs = Some((lines, reads));
    }

    /// Every request so far, as `METHOD /path?query -> CODE` (faults included).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Names of the pods in `namespace`.
    pub fn pod_names(&self, namespace: &str) -> Vec<String> {
        self.shared
            .store()
            .pods
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Deletes every pod (and its containers and volumes).
    pub async fn shutdown(&self) {
        let keys: Vec<(String, String)> = self.shared.store().pods.keys().cloned().collect();
        for (namespace, name) in keys {
            delete_pod_now(&self.shared, &namespace, &name).await;
        }
    }
}

/// Removes the containers and volumes of fakes whose process is gone (a test that panicked
/// before its clean-up): their `kfake.instance` label starts with the pid.
async fn remove_stale(docker: &Docker) {
    use bollard::query_parameters::{
        ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions,
    };
    let gone = |labels: Option<&std::collections::HashMap<String, String>>| {
        labels
            .and_then(|l| l.get("kfake.instance"))
            .and_then(|i| i.split('-').next()?.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let filters = Some(std::collections::HashMap::from([(
        "label".to_string(),
        vec!["kfake.instance".to_string()],
    )]));
    let options =
        ListContainersOptions { all: true, filters: filters.clone(), ..Default::default() };
    for container in docker.list_containers(Some(options)).await.unwrap_or_default() {
        if gone(container.labels.as_ref())
            && let Some(id) = container.id
        {
            runtime::remove_container(docker, &id).await;
        }
    }
    let volumes = docker.list_volumes(Some(ListVolumesOptions { filters })).await;
    for volume in volumes.ok().and_then(|v| v.volumes).unwrap_or_default() {
        if gone(Some(&volume.labels)) {
            let _ =
                docker.remove_volume(&volume.name, Some(RemoveVolumeOptions { force: true })).await;
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods).post(create_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod).delete(delete_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(runtime::logs))
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", get(runtime::exec).post(runtime::exec))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/namespaces/{ns}/secrets", get(list_secrets).post(create_secret))
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret).delete(delete_secret))
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            )
        })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), faults_and_journal))
        .with_state(shared)
}

/// Injects the queued failures and records every request.
async fn faults_and_journal(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let line = format!(
        "{} {}",
        request.method(),
        request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let forbidden = shared.faults().forbidden && request.uri().path().starts_with("/api/");
    let fault = if forbidden { Some(403) } else { shared.faults().fail.pop_front() };
    let response = match fault {
        Some(403) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:ci:kiln\" cannot list resource \"pods\" in API group \"\" in the namespace \"kiln-ci\"",
            Some(json!({"kind": "pods"})),
        ),
        Some(429) => {
            let mut r = status(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
                Some(json!({"retryAfterSeconds": 1})),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Some(code) => status(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "InternalError",
            "Internal error occurred: a fault injected by the fake API server",
            None,
        ),
        None => next.run(request).await,
    };
    let code = response.status().as_u16();
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{line} -> {code}"));
    response
}

/// A `metav1.Status` error response.
pub(crate) fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

fn json_response(code: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-kiln-fake", "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2026-12-07T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        }),
    )
}

/// The query's parameters, repeated ones kept (`command=sh&command=-c`).
pub(crate) fn query(request_query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(request_query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether `labels` match an equality-based selector (`a=b,c=d`, `a==b`, `a!=b`).
fn selects(selector: Option<&str>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    selector.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else {
            labels.contains_key(term.trim())
        }
    })
}

/// Whether `name` matches a field selector (only `metadata.name=` is understood).
fn fields(selector: Option<&str>, name: &str) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| match term.split_once('=') {
        Some(("metadata.name", v)) => v.trim_start_matches('=') == name,
        _ => true,
    })
}

async fn list_pods(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    request: Request,
) -> Response {
    let params = query(request.uri().query());
    let labels = param(&params, "labelSelector").map(str::to_string);
    let field = param(&params, "fieldSelector").map(str::to_string);
    if param(&params, "watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_pods(shared, ns, labels, field, &params);
    }
    let store = shared.store();
    let items: Vec<&Pod> = store
        .pods
        .iter()
        .filter(|((n, name), pod)| {
            *n == ns
                && selects(labels.as_deref(), pod.metadata.labels.as_ref())
                && fields(field.as_deref(), name)
        })
        .map(|(_, pod)| pod)
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": store.version.to_string()},
            "items": items,
        }),
    )
}

fn watch_line(kind: &str, object: &impl serde::Serialize) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn gone_event(version: &str, current: u64) -> Bytes {
    watch_line(
        "ERROR",
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {version} ({current})"),
            "reason": "Expired", "code": 410
        }),
    )
}

fn watch_pods(
    shared: Arc<Shared>,
    ns: String,
    labels: Option<String>,
    field: Option<String>,
    params: &[(String, String)],
) -> Response {
    let from = param(params, "resourceVersion").unwrap_or("").to_string();
    let timeout =
        param(params, "timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let matches = {
        let ns = ns.clone();
        move |event_ns: &str, pod: &Pod| {
            event_ns == ns
                && selects(labels.as_deref(), pod.metadata.labels.as_ref())
                && fields(field.as_deref(), pod.metadata.name.as_deref().unwrap_or(""))
        }
    };
    let (backlog, receiver) = {
        let store = shared.store();
        let expire = {
            let mut faults = shared.faults();
            let expire = faults.expire_watches > 0;
            if expire {
                faults.expire_watches -= 1;
            }
            expire
        };
        let oldest = store.history.front().map(|e| e.version).unwrap_or(store.version + 1);
        let too_old =
            from.parse::<u64>().is_ok_and(|v| v != 0 && v + 1 < oldest && store.version >= oldest);
        if expire || too_old {
            let body = Body::from(gone_event(&from, store.version));
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body)
                .into_response();
        }
        let backlog: Vec<Bytes> = match from.parse::<u64>() {
            Ok(v) if v != 0 => store
                .history
                .iter()
                .filter(|e| e.version > v && matches(&e.namespace, &e.pod))
                .map(|e| watch_line(e.kind, &e.pod))
                .collect(),
            _ => store
                .pods
                .iter()
                .filter(|((n, _), pod)| matches(n, pod))
                .map(|(_, pod)| watch_line("ADDED", pod))
                .collect(),
        };
        (backlog, shared.events.subscribe())
    };
    // A lagging watcher is cut off (it re-reads and watches again), as a slow real one is.
    let live = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.ok().map(|event| (event, receiver))
    })
    .filter(move |e| std::future::ready(matches(&e.namespace, &e.pod)))
    .map(|e| watch_line(e.kind, &e.pod));
    let stream = futures::stream::iter(backlog)
        .chain(live)
        .take_until(tokio::time::sleep(Duration::from_secs(timeout)))
        .map(Ok::<_, std::io::Error>);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream))
        .into_response()
}

/// Why `pod` is invalid (422), field by field.
fn invalid(pod: &Pod) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let subdomain = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        });
    if !subdomain {
        causes.push(("metadata.name".to_string(), format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")));
    }
    for (key, value) in pod.metadata.labels.iter().flatten() {
        if !is_label_key(key) {
            causes.push(("metadata.labels".to_string(), format!("Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'")));
        }
        if !is_label_value(value) {
            causes.push(("metadata.labels".to_string(), format!("Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63)")));
        }
    }
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    if containers.is_empty() {
        causes.push(("spec.containers".to_string(), "Required value".to_string()));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let label = !c.name.is_empty()
            && c.name.len() <= 63
            && c.name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !label {
            causes.push((format!("spec.containers[{i}].name"), format!("Invalid value: \"{}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'", c.name)));
        }
        if !seen.insert(c.name.clone()) {
            causes.push((
                format!("spec.containers[{i}].name"),
                format!("Duplicate value: \"{}\"", c.name),
            ));
        }
        if c.image.as_deref().unwrap_or("").is_empty() {
            causes.push((format!("spec.containers[{i}].image"), "Required value".to_string()));
        }
    }
    causes
}

/// A created object's body, or the 400 a real API server answers for one it cannot read.
fn object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("the object provided is unrecognized: {e}"),
            None,
        ))
    })
}

async fn create_pod(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut pod: Pod = match object(&body) {
        Ok(o) => o,
        Err(answer) => return *answer,
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let causes = invalid(&pod);
    if !causes.is_empty() {
        let message =
            causes.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join(", ");
        let details = json!({
            "name": name, "kind": "Pod",
            "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>()
        });
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("Pod \"{name}\" is invalid: {message}"),
            Some(details),
        );
    }
    let uid = {
        let mut store = shared.store();
        let key = (ns.clone(), name.clone());
        if store.pods.contains_key(&key) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("pods \"{name}\" already exists"),
                Some(json!({"name": name, "kind": "pods"})),
            );
        }
        store.next_uid += 1;
        let uid = format!("fake-{}-{:x}", shared.instance, store.next_uid);
        pod.metadata.namespace = Some(ns.clone());
        pod.metadata.uid = Some(uid.clone());
        pod.metadata.creation_timestamp = Some(now());
        pod.status = Some(PodStatus {
            phase: Some("Pending".to_string()),
            qos_class: Some("BestEffort".to_string()),
            ..Default::default()
        });
        shared.emit(&mut store, "ADDED", &ns, &mut pod);
        store.pods.insert(key, pod.clone());
        uid
    };
    let runtime = Arc::new(runtime::PodRuntime::default());
    shared
        .runtimes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(uid.clone(), runtime.clone());
    tokio::spawn(runtime::run_pod(shared.clone(), ns, name, uid, runtime));
    let lose = {
        let mut faults = shared.faults();
        let lose = faults.lose_create_replies > 0;
        if lose {
            faults.lose_create_replies -= 1;
        }
        lose
    };
    if lose {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: the reply to this create was lost (fake fault)",
            None,
        );
    }
    json_response(StatusCode::CREATED, &pod)
}

/// Now, as an API time.
pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A chrono time as an API time.
pub(crate) fn time_of(t: chrono::DateTime<Utc>) -> Time {
    let nanos = i128::from(t.timestamp_nanos_opt().unwrap_or(0));
    Time(
        k8s_openapi::jiff::Timestamp::from_nanosecond(nanos)
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
    )
}

async fn get_pod(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.store().pods.get(&(ns, name.clone())) {
        Some(pod) => json_response(StatusCode::OK, pod),
        None => not_found("pods", &name),
    }
}

/// Removes pod `namespace/name` from the store at once (as a delete with
/// `gracePeriodSeconds=0` does) and its containers and volumes from the engine; the deleted
/// object, `None` when there was none.
async fn delete_pod_now(shared: &Arc<Shared>, namespace: &str, name: &str) -> Option<Pod> {
    let pod = {
        let mut store = shared.store();
        let mut pod = store.pods.remove(&(namespace.to_string(), name.to_string()))?;
        pod.metadata.deletion_timestamp = Some(now());
        pod.metadata.deletion_grace_period_seconds = Some(0);
        shared.emit(&mut store, "DELETED", namespace, &mut pod);
        pod
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime = shared.runtimes.lock().unwrap_or_else(PoisonError::into_inner).remove(&uid);
    if let Some(runtime) = runtime {
        runtime.remove(&shared.docker).await;
    }
    Some(pod)
}

async fn delete_pod(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match delete_pod_now(&shared, &ns, &name).await {
        Some(pod) => json_response(StatusCode::OK, &pod),
        None => not_found("pods", &name),
    }
}

/// A node as a real cluster shows it (a kind/kubeadm node's shape): the well-known labels
/// (`kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`) plus `labels`,
/// `status.capacity` and `status.allocatable` with `cpu` (`4`, `3920m`), `memory` (`16Gi`,
/// `15167428Ki`) and `pods: 110`, `Ready`, an `InternalIP` address.
pub fn fake_node(name: &str, labels: &[(&str, &str)], cpu: &str, memory: &str) -> Node {
    let mut all = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
        ("pods".to_string(), Quantity("110".to_string())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(all),
            uid: Some(format!("fake-node-{name}")),
            creation_timestamp: Some(now()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(amounts.clone()),
            allocatable: Some(amounts),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".to_string(), address: "127.0.0.1".to_string() },
                NodeAddress { type_: "Hostname".to_string(), address: name.to_string() },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".to_string(),
                status: "True".to_string(),
                reason: Some("KubeletReady".to_string()),
                message: Some("kubelet is posting ready status".to_string()),
                last_transition_time: Some(now()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

async fn list_nodes(State(shared): State<Arc<Shared>>) -> Response {
    let version = shared.store().version;
    json_response(
        StatusCode::OK,
        &json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": version.to_string()}, "items": shared.nodes()}),
    )
}

async fn list_secrets(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    request: Request,
) -> Response {
    let params = query(request.uri().query());
    let labels = param(&params, "labelSelector");
    let store = shared.store();
    let items: Vec<&Secret> = store
        .secrets
        .iter()
        .filter(|((n, _), s)| *n == ns && selects(labels, s.metadata.labels.as_ref()))
        .map(|(_, s)| s)
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": store.version.to_string()}, "items": items}),
    )
}

async fn create_secret(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut secret: Secret = match object(&body) {
        Ok(o) => o,
        Err(answer) => return *answer,
    };
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut store = shared.store();
    let key = (ns.clone(), name.clone());
    if store.secrets.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "secrets"})),
        );
    }
    store.version += 1;
    secret.metadata.namespace = Some(ns);
    secret.metadata.resource_version = Some(store.version.to_string());
    secret.metadata.creation_timestamp = Some(now());
    store.secrets.insert(key, secret.clone());
    json_response(StatusCode::CREATED, &secret)
}

async fn get_secret(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.store().secrets.get(&(ns, name.clone())) {
        Some(s) => json_response(StatusCode::OK, s),
        None => not_found("secrets", &name),
    }
}

async fn delete_secret(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.store().secrets.remove(&(ns, name.clone())) {
        Some(_) => json_response(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": "secrets"}}),
        ),
        None => not_found("secrets", &name),
    }
}

/// The headers of a request, for the exec upgrade.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
