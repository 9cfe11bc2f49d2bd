//! A real server on loopback with a temporary data directory and its agent on the process
//! executor (host processes: real, fast, no images needed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_api::{ApplyPipeline, RunDetail, RunSummary, TriggerRequest};
use kiln_client::Client;
use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub server: Option<kiln_server::Server>,
    pub admin: Client,
    pub admin_token: String,
    pub url: String,
    pub data: PathBuf,
    stop_agent: CancellationToken,
    agent: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(4).await
    }

    pub async fn start_with(capacity: u32) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = kiln_server::start(kiln_server::ServerConfig {
            data: data.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let admin_token =
            server.first_admin_token.clone().expect("first start makes an admin token");
        let on_disk = std::fs::read_to_string(data.join("admin.token")).unwrap();
        assert_eq!(on_disk.trim(), admin_token, "the admin token is saved in the data dir");
        let admin = Client::new(&server.url, &admin_token).unwrap();
        let stop_agent = CancellationToken::new();
        let agent_client = Client::new(&server.url, &server.agent_token).unwrap();
        let exec = Arc::new(ProcessExecutor::new(ProcessConfig {
            root: dir.path().join("ws"),
            ..ProcessConfig::default()
        }));
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        let config = kiln_agent::AgentConfig {
            name: "embedded".into(),
            capacity,
            work_dir: data.join("agent"),
        };
        let stop = stop_agent.clone();
        let agent = tokio::spawn(async move {
            kiln_agent::run(agent_client, exec, config, stop).await.unwrap();
        });
        let url = server.url.clone();
        TestServer {
            server: Some(server),
            admin,
            admin_token,
            url,
            data,
            stop_agent,
            agent: Some(agent),
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn apply(&self, project: &str, name: &str, yaml: &str) -> kiln_api::ApplyResult {
        self.apply_as(&self.admin, project, name, yaml).await.unwrap()
    }

    pub async fn apply_as(
        &self,
        client: &Client,
        project: &str,
        name: &str,
        yaml: &str,
    ) -> kiln_client::Result<kiln_api::ApplyResult> {
        if self.admin.projects().await.unwrap().iter().all(|p| p.name != project) {
            self.admin.create_project(project).await.unwrap();
        }
        client
            .apply_pipeline(
                project,
                name,
                &ApplyPipeline { yaml: yaml.to_string(), file: None, files: BTreeMap::new() },
            )
            .await
    }

    pub async fn trigger(&self, project: &str, name: &str, params: &[(&str, &str)]) -> RunSummary {
        let req = TriggerRequest {
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        self.admin.trigger(project, name, &req).await.unwrap()
    }

    /// Waits until the run reaches a final state (or `until` says stop).
    pub async fn wait_for(
        &self,
        run: &str,
        what: &str,
        until: impl Fn(&RunDetail) -> bool,
    ) -> RunDetail {
        let started = Instant::now();
        loop {
            let d = self.admin.run(run).await.unwrap();
            if until(&d) {
                return d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {} never got {what}; last seen: {d:#?}",
                d.run.full_name()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_final(&self, run: &str) -> RunDetail {
        self.wait_for(run, "to a final state", |d| {
            matches!(d.run.state.as_str(), "success" | "failure" | "canceled" | "timeout")
        })
        .await
    }

    pub async fn stop(mut self) {
        self.stop_agent.cancel();
        if let Some(a) = self.agent.take() {
            let _ = a.await;
        }
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

pub fn job<'a>(d: &'a RunDetail, id: &str) -> &'a kiln_api::JobInfo {
    d.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id} in {d:#?}"))
}

pub async fn log_text(s: &TestServer, run: &str, job: Option<&str>) -> Vec<String> {
    let page = s.admin.logs(run, job, None, 1, 10_000).await.unwrap();
    page.lines.into_iter().map(|l| l.text).collect()
}
