//! Integration tests of the Docker executor against a real engine (`DOCKER_HOST`, else
//! `/var/run/docker.sock`), which must hold the `busybox:latest` image `cargo xtask images`
//! makes. Without an engine every test fails with a message saying how to get one.

mod builder;
mod conformance;
mod docker;
mod images;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use futures::StreamExt;
use kiln_exec::{Entry, ExecError, Executor, LogLine, LogStream, TaskId, TaskSpec};
use kiln_exec_docker::{DockerConfig, DockerExecutor};

/// Image every test runs (made by `cargo xtask images`).
pub const IMAGE: &str = "busybox:latest";

/// Label put on every test task, so a crashed run's leftovers can be found.
pub const TEST_LABEL: &str = "kiln.test";

/// Connects to the engine, or fails the test saying how to start one.
pub async fn executor() -> DockerExecutor {
    match DockerExecutor::connect(DockerConfig::default()).await {
        Ok(executor) => executor,
        Err(e) => panic!("no Docker engine: run `cargo xtask ci`, which starts one ({e})"),
    }
}

/// A task id unique to this test run and call.
pub fn unique_id(name: &str) -> TaskId {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    TaskId::sanitized(&format!("it-{name}-{}-{nanos:x}-{n}", std::process::id()))
}

/// A busybox task running `script`.
pub fn script_task(name: &str, script: &str) -> TaskSpec {
    TaskSpec {
        id: unique_id(name),
        labels: BTreeMap::from([(TEST_LABEL.to_owned(), "kiln-exec-docker".to_owned())]),
        image: Some(IMAGE.to_owned()),
        entry: Entry::Script(script.to_owned()),
        env: BTreeMap::new(),
        workdir: None,
        services: Vec::new(),
        limits: Default::default(),
        seed: None,
        ports: Vec::new(),
        host_network: false,
        pull_auth: None,
        builder: false,
        constraints: Vec::new(),
        binds: Vec::new(),
    }
}

/// Reads a log stream to its end (at most a minute).
pub async fn read_all(stream: LogStream) -> Vec<LogLine> {
    let items = tokio::time::timeout(Duration::from_secs(60), stream.collect::<Vec<_>>())
        .await
        .expect("log stream did not end within a minute");
    items.into_iter().map(|item| item.expect("log stream error")).collect()
}

/// Texts of the lines, in order.
pub fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// Sets up and starts `task`, reads all its output and waits for it; always destroys it.
pub async fn run(
    executor: &DockerExecutor,
    task: &TaskSpec,
) -> Result<(Vec<LogLine>, i32), ExecError> {
    let result = async {
        executor.setup(task).await?;
        let stream = executor.start(task).await?;
        let lines = read_all(stream).await;
        let status = executor.wait(&task.id).await?;
        Ok((lines, status.code))
    }
    .await;
    executor.destroy(&task.id).await.expect("destroy");
    result
}

/// Everything the engine still holds under the label `filter` (`key=value`), as
/// `kind name` lines.
pub async fn leftovers(executor: &DockerExecutor, filter: &str) -> Vec<String> {
    let docker = executor.client();
    let filters = HashMap::from([("label".to_owned(), vec![filter.to_owned()])]);
    let mut out = Vec::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    for c in containers {
        out.push(format!("container {:?}", c.names.unwrap_or_default()));
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) }))
        .await
        .expect("list networks");
    for n in networks {
        out.push(format!("network {}", n.name.unwrap_or_default()));
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions { filters: Some(filters) }))
        .await
        .expect("list volumes");
    for v in volumes.volumes.unwrap_or_default() {
        out.push(format!("volume {}", v.name));
    }
    out
}
