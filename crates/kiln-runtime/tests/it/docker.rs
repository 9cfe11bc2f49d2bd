//! A service instance in a real container: busybox `httpd` with a published dynamic host
//! port, found healthy over HTTP (and by a command run in the container), removed on cancel.
//! Skipped with a note when no Docker engine answers, unless `KILN_REQUIRE_DOCKER=1`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use bollard::query_parameters::ListContainersOptions;
use kiln_engine::Outcome;
use kiln_exec::{Entry, PortMap, TaskId, TaskSpec};
use kiln_exec_docker::{DockerConfig, DockerExecutor};
use kiln_runtime::InstanceRequest;
use kiln_runtime::instance::{HealthChange, Ports, Probe};

use crate::instance::{Watched, answers, check, free_port};

/// The engine, or `None` (the test is skipped) unless `KILN_REQUIRE_DOCKER=1`.
pub async fn engine(test: &str) -> Option<Arc<DockerExecutor>> {
    match DockerExecutor::connect(DockerConfig::default()).await {
        Ok(executor) => Some(Arc::new(executor)),
        Err(e) if std::env::var("KILN_REQUIRE_DOCKER").as_deref() != Ok("1") => {
            eprintln!("{test}: skipped, no Docker engine answers ({e})");
            None
        }
        Err(e) => panic!("{test}: no Docker engine answers but KILN_REQUIRE_DOCKER=1 ({e})"),
    }
}

/// Containers still carrying `kiln.task=<id>`.
pub async fn containers(executor: &DockerExecutor, id: &TaskId) -> Vec<String> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), vec![format!("kiln.task={id}")])])),
        ..Default::default()
    };
    let found = executor.client().list_containers(Some(options)).await.expect("list containers");
    found.into_iter().filter_map(|c| c.names.and_then(|n| n.first().cloned())).collect()
}

fn httpd(name: &str, host_port: u16) -> TaskSpec {
    let script = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";
    TaskSpec {
        id: TaskId::sanitized(&format!("inst-docker-{name}-{}", std::process::id())),
        labels: BTreeMap::from([("kiln.test".to_owned(), "kiln-runtime".to_owned())]),
        image: Some("busybox:latest".to_owned()),
        entry: Entry::Command {
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            args: Vec::new(),
        },
        env: BTreeMap::new(),
        workdir: None,
        services: Vec::new(),
        limits: Default::default(),
        seed: None,
        ports: vec![PortMap { host: host_port, container: 8080 }],
        host_network: false,
        pull_auth: None,
        builder: false,
        constraints: Vec::new(),
        binds: Vec::new(),
    }
}

#[tokio::test]
async fn busybox_httpd_is_healthy_over_http_and_cancel_removes_the_container() {
    let Some(executor) = engine("busybox_httpd_is_healthy_over_http").await else { return };
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let spec = httpd("http", port);
    let id = spec.id.clone();
    let req = InstanceRequest {
        spec,
        health: Some(check(Probe::Http { port: "web".into(), path: "/".into() }, 3)),
        ports: Ports::from([("web".to_string(), addr)]),
    };
    let mut w = Watched::start(executor.clone(), req);
    assert_eq!(w.health().await, HealthChange { healthy: true, detail: "HTTP 200".into() });
    assert!(!containers(&executor, &id).await.is_empty(), "no container while it runs");
    w.cancel.cancel();
    let (outcome, _) = w.end().await;
    assert_eq!(outcome, Outcome::Canceled);
    assert_eq!(containers(&executor, &id).await, Vec::<String>::new());
    assert!(!answers(addr), "something still answers at {addr}");
}

#[tokio::test]
async fn a_command_check_runs_inside_the_container() {
    let Some(executor) = engine("a_command_check_runs_inside_the_container").await else { return };
    let spec = httpd("cmd", free_port());
    let id = spec.id.clone();
    let argv = ["sh", "-c", "test -f /www/index.html"].map(String::from).to_vec();
    let mut health = check(Probe::Command { argv }, 1);
    health.grace = std::time::Duration::from_secs(10);
    let req = InstanceRequest { spec, health: Some(health), ports: Ports::new() };
    let mut w = Watched::start(executor.clone(), req);
    assert_eq!(w.health().await, HealthChange { healthy: true, detail: "exit 0".into() });
    w.cancel.cancel();
    assert_eq!(w.end().await.0, Outcome::Canceled);
    assert_eq!(containers(&executor, &id).await, Vec::<String>::new());
}
