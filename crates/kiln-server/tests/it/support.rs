//! The shared test kit (`kiln-testkit`: a real server on loopback with its agent on the
//! process executor, on SQLite or a fresh PostgreSQL database), what only these tests read of
//! a run, and the services suites' helpers (`services.rs`, `scrape.rs`): loopback hosts with
//! their own port ranges, applying a service, waiting for its instances.

use std::time::{Duration, Instant};

use kiln_api::RunDetail;
use kiln_api::pool::AttrValue;
use kiln_api::service::{ApplyService, ServiceInfo};
pub use kiln_testkit::{Backend, TestAgent, TestServer, host, is_final};

/// Job `id` of a run, or a panic that shows the run.
pub fn job<'a>(d: &'a RunDetail, id: &str) -> &'a kiln_api::JobInfo {
    d.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id} in {d:#?}"))
}

/// The text of a run's log lines (one job's, or the whole run's): what the jobs printed,
/// without the lines their scripts echo before each line runs (`$ make test`) or print when
/// one fails (`exit status 2: …`).
pub async fn log_text(s: &TestServer, run: &str, job: Option<&str>) -> Vec<String> {
    let page = s.admin.logs(run, job, None, 1, 10_000).await.unwrap();
    let echoed = |l: &kiln_api::LogLine| {
        l.mark.as_ref().is_some_and(|m| matches!(m.kind.as_str(), "command" | "continued" | "exit"))
    };
    page.lines.into_iter().filter(|l| !echoed(l)).map(|l| l.text).collect()
}

/// A host on 127.0.0.1 (every test agent shares it) with its own range of 100 host ports,
/// as separate machines would not collide. Tests of this binary run at once, so each takes
/// ranges of its own: services 41000-42199, scrape 43000-43199 and 46000-46199,
/// service_access 43200-43299, pools 44000-44199, distcc 45000-45299, instance_config
/// 47000-47299 (its own hosts: 50 ports each), deploys 47300-47699, trigger 47700-47799,
/// seed003 48000-48199, builds 48200-48299.
pub fn on_loopback(attrs: &[(&str, AttrValue)], first_port: u16) -> kiln_agent::HostFacts {
    let mut h = host("127.0.0.1", 8, attrs);
    h.ports = Some(kiln_api::pool::PortRange { start: first_port, end: first_port + 99 });
    h
}

/// Applies a service file to `project` (created when missing); the service's name is the
/// file's `name:` line.
pub async fn apply(s: &TestServer, project: &str, yaml: &str) -> ServiceInfo {
    if s.admin.projects().await.unwrap().iter().all(|p| p.name != project) {
        s.admin.create_project(project).await.unwrap();
    }
    let name = yaml.lines().find_map(|l| l.strip_prefix("name: ")).unwrap();
    s.admin
        .apply_service(project, name, &ApplyService { yaml: yaml.into(), file: None, note: None })
        .await
        .unwrap()
}

/// Polls service `name` of project `shop` until `done` holds (at most 60 s), checking `always` on every look.
pub async fn wait_service(
    s: &TestServer,
    name: &str,
    what: &str,
    always: impl Fn(&ServiceInfo),
    done: impl Fn(&ServiceInfo) -> bool,
) -> ServiceInfo {
    let started = Instant::now();
    loop {
        let info = s.admin.service("shop", name).await.unwrap();
        always(&info);
        if done(&info) {
            return info;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{what}: {info:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Healthy instances of the service at template `version`.
pub fn healthy(info: &ServiceInfo, version: u32) -> usize {
    info.instances.iter().filter(|i| i.state == "healthy" && i.version == version).count()
}
