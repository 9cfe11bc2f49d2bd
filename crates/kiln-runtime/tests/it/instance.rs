//! Service instances on the process executor with real listeners (python3 servers): health
//! found over TCP, HTTP and commands, lost when the server answers 503, regained; cancel
//! kills and cleans up; an instance that exits on its own reports its code.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_engine::Outcome;
use kiln_exec::{Entry, Executor, TaskId, TaskSpec};
use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use kiln_runtime::instance::{HealthChange, HealthCheck, NO_CHECK, Ports, Probe};
use kiln_runtime::{InstanceConfig, InstanceEvent, InstanceRequest, run_instance_configured};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any one expected event may take on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether something accepts connections at `addr`.
pub fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A check of `probe` every 100 ms, each given `timeout_ms`.
pub fn check(probe: Probe, failures: u32) -> HealthCheck {
    HealthCheck {
        probe,
        grace: Duration::from_secs(10),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(1000),
        failures,
    }
}

/// A running instance, watched.
pub struct Watched {
    /// Everything reported so far, in order.
    pub seen: Vec<InstanceEvent>,
    rx: mpsc::UnboundedReceiver<InstanceEvent>,
    /// Cancels the instance.
    pub cancel: CancellationToken,
    handle: JoinHandle<Outcome>,
}

impl Watched {
    /// Starts `req` on `executor`.
    pub fn start(executor: Arc<dyn Executor>, req: InstanceRequest) -> Watched {
        Watched::start_configured(executor, req, None)
    }

    /// Starts `req` on `executor` with config files.
    pub fn start_configured(
        executor: Arc<dyn Executor>,
        req: InstanceRequest,
        config: Option<InstanceConfig>,
    ) -> Watched {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = tokio::spawn(async move {
            run_instance_configured(executor.as_ref(), req, config, c, |e| {
                let _ = tx.send(e);
            })
            .await
        });
        Watched { seen: Vec::new(), rx, cancel, handle }
    }

    /// The next event `want` accepts; panics after [`PATIENCE`] or when the instance ended.
    pub async fn until(&mut self, what: &str, want: impl Fn(&InstanceEvent) -> bool) {
        loop {
            match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
                Ok(Some(e)) => {
                    let done = want(&e);
                    self.seen.push(e);
                    if done {
                        return;
                    }
                }
                Ok(None) => panic!("the instance ended before {what}; events: {:?}", self.seen),
                Err(_) => panic!("no {what} within {PATIENCE:?}; events: {:?}", self.seen),
            }
        }
    }

    /// The next health change; panics after [`PATIENCE`] or when the instance ended.
    pub async fn health(&mut self) -> HealthChange {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.rx.recv()).await;
            match next {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if let InstanceEvent::Health(h) = e {
                        return h;
                    }
                }
                Ok(None) => panic!("the instance ended; events: {:?}", self.seen),
                Err(_) => panic!("no health change within {PATIENCE:?}; events: {:?}", self.seen),
            }
        }
    }

    /// How it ended (after [`PATIENCE`] at most), with every event reported.
    pub async fn end(mut self) -> (Outcome, Vec<InstanceEvent>) {
        let outcome =
            tokio::time::timeout(PATIENCE, self.handle).await.expect("it ends").expect("no panic");
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
        (outcome, self.seen)
    }
}

/// The log lines in `events`.
pub fn log_texts(events: &[InstanceEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| if let InstanceEvent::Log(l) = e { Some(l.text.clone()) } else { None })
        .collect()
}

fn process(root: &Path) -> Arc<ProcessExecutor> {
    let config = ProcessConfig { root: root.to_path_buf(), ..ProcessConfig::default() };
    Arc::new(ProcessExecutor::new(config))
}

fn spec(name: &str, argv: &[&str], env: &[(&str, String)]) -> TaskSpec {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    TaskSpec {
        id: TaskId::sanitized(&format!("inst-{name}-{}", std::process::id())),
        labels: BTreeMap::new(),
        image: None,
        entry: Entry::Command { command: Some(argv), args: Vec::new() },
        env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
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

/// An HTTP server on `KILN_PORT_WEB` answering 503 while the file `$1` exists, else 200.
const SERVER: &str = r#"
import http.server, os, sys
marker = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if os.path.exists(marker) else 200)
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), Handler)
print("listening", flush=True)
server.serve_forever()
"#;

#[tokio::test]
async fn an_http_instance_becomes_healthy_unhealthy_on_503_and_healthy_again() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    let script = dir.path().join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let marker = dir.path().join("sick");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let spec = spec(
        "http",
        &["python3", script.to_str().unwrap(), marker.to_str().unwrap()],
        &[("KILN_PORT_WEB", port.to_string())],
    );
    let id = spec.id.clone();
    let req = InstanceRequest {
        spec,
        health: Some(check(Probe::Http { port: "web".into(), path: "/health".into() }, 2)),
        ports: Ports::from([("web".to_string(), addr)]),
    };
    let mut w = Watched::start(executor.clone(), req);
    // Refused while python starts: within the grace period, not reported.
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: true, detail: "HTTP 200".into() });
    assert_eq!(w.seen[0], InstanceEvent::Started);

    std::fs::write(&marker, "").unwrap();
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: false, detail: "HTTP 503".into() });

    std::fs::remove_file(&marker).unwrap();
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: true, detail: "HTTP 200".into() });

    w.cancel.cancel();
    let (outcome, events) = w.end().await;
    assert_eq!(outcome, Outcome::Canceled);
    assert!(log_texts(&events).contains(&"listening".to_string()), "{events:?}");
    assert!(executor.leftovers(&id).is_empty(), "{:?}", executor.leftovers(&id));
    assert!(!answers(addr), "the server still answers at {addr}");
}

#[tokio::test]
async fn a_tcp_instance_is_healthy_and_cancel_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let spec = spec(
        "tcp",
        &["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 $KILN_PORT_WEB"],
        &[("KILN_PORT_WEB", port.to_string())],
    );
    let id = spec.id.clone();
    let req = InstanceRequest {
        spec,
        health: Some(check(Probe::Tcp { port: "web".into() }, 3)),
        ports: Ports::from([("web".to_string(), addr)]),
    };
    let mut w = Watched::start(executor.clone(), req);
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: true, detail: format!("connected to {addr}") });
    assert!(answers(addr));
    w.cancel.cancel();
    let (outcome, events) = w.end().await;
    assert_eq!(outcome, Outcome::Canceled);
    let healths: Vec<_> = events.iter().filter(|e| matches!(e, InstanceEvent::Health(_))).collect();
    assert_eq!(healths.len(), 1, "{events:?}");
    assert!(executor.leftovers(&id).is_empty(), "{:?}", executor.leftovers(&id));
    assert!(!answers(addr), "the server still answers at {addr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a workspace is left");
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_unhealthy_after_the_grace_with_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut health = check(Probe::Tcp { port: "web".into() }, 3);
    health.grace = Duration::from_millis(500);
    let req = InstanceRequest {
        spec: spec("refused", &["sleep", "60"], &[]),
        health: Some(health),
        ports: Ports::from([("web".to_string(), addr)]),
    };
    let mut w = Watched::start(executor.clone(), req);
    let started = std::time::Instant::now();
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: false, detail: "connection refused".into() });
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    w.cancel.cancel();
    assert_eq!(w.end().await.0, Outcome::Canceled);
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut health = check(Probe::Http { port: "web".into(), path: "/".into() }, 1);
    health.grace = Duration::ZERO;
    health.timeout = Duration::from_millis(300);
    let req = InstanceRequest {
        spec: spec("hang", &["sleep", "60"], &[]),
        health: Some(health),
        ports: Ports::from([("web".to_string(), addr)]),
    };
    let mut w = Watched::start(executor.clone(), req);
    let h = w.health().await;
    assert_eq!(h, HealthChange { healthy: false, detail: "timed out after 300ms".into() });
    w.cancel.cancel();
    assert_eq!(w.end().await.0, Outcome::Canceled);
    drop(listener);
}

#[tokio::test]
async fn a_command_check_runs_in_the_workspace_and_an_instance_that_exits_reports_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    // Ready after a moment, then exits 3 on its own.
    let spec = spec(
        "exits",
        &["sh", "-c", "echo starting; sleep 1; touch ready; sleep 2; exit 3"],
        &[("READY_FILE", "ready".to_string())],
    );
    let id = spec.id.clone();
    let mut health = check(
        Probe::Command { argv: vec!["sh".into(), "-c".into(), "test -f \"$READY_FILE\"".into()] },
        1,
    );
    health.grace = Duration::ZERO;
    let req = InstanceRequest { spec, health: Some(health), ports: Ports::new() };
    let mut w = Watched::start(executor.clone(), req);
    assert_eq!(w.health().await, HealthChange { healthy: false, detail: "exit 1".into() });
    assert_eq!(w.health().await, HealthChange { healthy: true, detail: "exit 0".into() });
    let (outcome, events) = w.end().await;
    assert_eq!(outcome, Outcome::Exited(3));
    assert_eq!(log_texts(&events), ["starting"]);
    assert!(executor.leftovers(&id).is_empty(), "{:?}", executor.leftovers(&id));
}

#[tokio::test]
async fn without_a_check_an_instance_is_healthy_once_started() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    let req = InstanceRequest {
        spec: spec("nocheck", &["sh", "-c", "echo up; exit 0"], &[]),
        health: None,
        ports: Ports::new(),
    };
    let (outcome, events) = Watched::start(executor, req).end().await;
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(events[0], InstanceEvent::Started, "{events:?}");
    assert_eq!(
        events[1],
        InstanceEvent::Health(HealthChange { healthy: true, detail: NO_CHECK.into() }),
        "{events:?}"
    );
    assert_eq!(log_texts(&events), ["up"]);
}

#[tokio::test]
async fn an_instance_that_cannot_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let executor = process(dir.path());
    let mut spec = spec("nostart", &["x"], &[]);
    spec.entry = Entry::Command { command: None, args: Vec::new() };
    let req = InstanceRequest { spec, health: None, ports: Ports::new() };
    let (outcome, events) = Watched::start(executor, req).end().await;
    assert!(matches!(outcome, Outcome::Error(ref e) if e.contains("entrypoint")), "{outcome:?}");
    assert!(events.is_empty(), "{events:?}");
}
