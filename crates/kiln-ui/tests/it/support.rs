//! A real server on loopback with a temporary data directory, and optionally its agent on the
//! process executor (host processes: real, fast, no images needed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_api::{ApplyPipeline, RunDetail};
use kiln_client::Client;
use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub server: Option<kiln_server::Server>,
    pub admin: Client,
    pub admin_token: String,
    pub url: String,
    stop_agent: CancellationToken,
    agent: Option<tokio::task::JoinHandle<()>>,
    extra: Vec<tokio::task::JoinHandle<()>>,
    pub dir: TempDir,
}

impl TestServer {
    /// A server, with an agent of `capacity` slots unless `capacity` is 0.
    pub async fn start(capacity: u32) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = kiln_server::start(kiln_server::ServerConfig::new(
            data.clone(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        let admin_token = server.first_admin_token.clone().expect("first start makes a token");
        let admin = Client::new(&server.url, &admin_token).unwrap();
        let stop_agent = CancellationToken::new();
        let mut agent = None;
        if capacity > 0 {
            let agent_client = Client::new(&server.url, &server.agent_token).unwrap();
            std::fs::create_dir_all(dir.path().join("ws")).unwrap();
            let exec = Arc::new(ProcessExecutor::new(ProcessConfig {
                root: dir.path().join("ws"),
                ..ProcessConfig::default()
            }));
            let config = kiln_agent::AgentConfig {
                name: "embedded".into(),
                capacity,
                work_dir: data.join("agent"),
                host: kiln_agent::HostFacts::default(),
            };
            let stop = stop_agent.clone();
            agent = Some(tokio::spawn(async move {
                kiln_agent::run(agent_client, exec, config, stop).await.unwrap();
            }));
        }
        let url = server.url.clone();
        TestServer {
            server: Some(server),
            admin,
            admin_token,
            url,
            stop_agent,
            agent,
            extra: Vec::new(),
            dir,
        }
    }

    /// Starts another agent on the process executor, named `name`, declaring `host` (its
    /// host name, IP, resources, ports and attributes); it stops when the returned token is
    /// cancelled (saying goodbye: its node goes `down`) or with the server.
    pub fn agent(
        &mut self,
        name: &str,
        capacity: u32,
        host: kiln_agent::HostFacts,
    ) -> CancellationToken {
        let token = self.server.as_ref().expect("server runs").agent_token.clone();
        let client = Client::new(&self.url, &token).unwrap();
        let root = self.dir.path().join(format!("ws-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        let exec =
            Arc::new(ProcessExecutor::new(ProcessConfig { root, ..ProcessConfig::default() }));
        let config = kiln_agent::AgentConfig {
            name: name.into(),
            capacity,
            work_dir: self.dir.path().join(format!("agent-{name}")),
            host,
        };
        let stop = self.stop_agent.child_token();
        let stop2 = stop.clone();
        self.extra.push(tokio::spawn(async move {
            kiln_agent::run(client, exec, config, stop2).await.unwrap();
        }));
        stop
    }

    pub async fn apply(&self, project: &str, name: &str, yaml: &str) {
        if self.admin.projects().await.unwrap().iter().all(|p| p.name != project) {
            self.admin.create_project(project).await.unwrap();
        }
        self.admin
            .apply_pipeline(
                project,
                name,
                &ApplyPipeline { yaml: yaml.to_string(), file: None, files: BTreeMap::new() },
            )
            .await
            .unwrap();
    }

    /// Waits until the run satisfies `until`.
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

    pub async fn stop(mut self) {
        self.stop_agent.cancel();
        if let Some(a) = self.agent.take() {
            let _ = a.await;
        }
        for a in self.extra.drain(..) {
            let _ = a.await;
        }
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// A TCP proxy in front of a server whose connections a test can cut, as a flaky network
/// would; it keeps the text of every request head that went through it.
pub struct CuttableProxy {
    pub url: String,
    cut: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl CuttableProxy {
    pub async fn start(target: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (cut2, requests2, stop2) = (cut.clone(), requests.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = stop2.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let token = cut2.lock().unwrap().clone();
                let requests = requests2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            if text.starts_with("GET ") || text.starts_with("POST ") {
                                requests.lock().unwrap().push(text);
                            }
                            tokio::io::AsyncWriteExt::write_all(&mut sw, &buf[..n]).await?;
                        }
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        CuttableProxy { url, cut, requests, stop }
    }

    /// Drops every open connection (new ones go through).
    pub fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
