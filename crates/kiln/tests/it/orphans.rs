//! `kill -9` of a real `kiln server` whose embedded agent (process executor) runs a service
//! instance: the instance's process outlives it, and the server started again on the same
//! data directory ends it (the embedded agent's start-up sweep) before its agent registers
//! and the instance is replaced: afterwards exactly one instance process runs, the new one.
//!
//! `kill -9` of a real `kiln agent` (process executor) in the middle of a job: started again
//! on the same work directory, it removes the job's workspace and the attempt's scratch
//! space before it registers, and the next job runs.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kiln_api::service::ApplyService;
use kiln_client::Client;

use crate::adoption::{Leftovers, SERVER, free_port, marked, pid_on};
use crate::support::kiln;

/// `kiln server --data DATA ARGS…` with its stderr in `log`, killed when dropped.
struct Server(Child);

impl Server {
    /// Starts it and waits until it says where it listens (its embedded agent is made, and
    /// has swept, by then).
    fn launch(data: &Path, args: &[&str], log: &Path) -> Server {
        let mut child = kiln()
            .args(["server", "--data"])
            .arg(data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("kiln server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the server prints where it listens").unwrap();
            if line.contains("listening on ") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server(child)
    }

    /// SIGKILL, and wait for it to be gone.
    fn kill9(&mut self) {
        self.0.kill().expect("SIGKILL the server");
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The id and web port of the service's healthy instance other than `not` (at most 60 s).
async fn healthy_instance(client: &Client, not: Option<&str>) -> (String, u16) {
    let started = Instant::now();
    loop {
        if let Ok(info) = client.service("shop", "web").await
            && let Some(i) =
                info.instances.iter().find(|i| i.state == "healthy" && Some(i.id.as_str()) != not)
        {
            return (i.id.clone(), i.ports["web"]);
        }
        let info = client.service("shop", "web").await;
        assert!(started.elapsed() < Duration::from_secs(60), "no healthy instance: {info:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_its_embedded_agent_leaves_no_instance_running_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags = ["--listen", &listen, "--executor", "process", "--agent-lost-after", "5s"];
    let mut server = Server::launch(&data, &flags, &dir.path().join("server-1.log"));
    let url = format!("http://{listen}");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let client = Client::new(&url, &admin).unwrap();
    let marker = format!("kiln-orphans-{}-{port}", std::process::id());
    let _leftovers = Leftovers(marker.clone());
    client.create_project("shop").await.unwrap();
    let yaml = format!(
        "kind: service\nname: web\nreplicas: 1\ncommand: [python3, -c, {script}, {marker}]\n\
         ports:\n  - {{ name: web, container: 8080 }}\n\
         health:\n  http: {{ port: web, path: / }}\n  grace: 3s\n  interval: 200ms\n",
        script = serde_json::to_string(SERVER).unwrap(),
    );
    let body = ApplyService { yaml, file: None, note: None };
    client.apply_service("shop", "web", &body).await.unwrap();
    let (old, old_port) = healthy_instance(&client, None).await;
    let old_pid = pid_on(old_port).await.expect("the instance answers");
    assert_eq!(marked(&marker), [old_pid].into(), "one process for the one instance");

    server.kill9();
    assert_eq!(marked(&marker), [old_pid].into(), "the instance outlives the server");
    let log = dir.path().join("server-2.log");
    let _server = Server::launch(&data, &flags, &log);
    // Swept before the embedded agent registered (so before any replacement started).
    assert_eq!(marked(&marker), BTreeSet::new(), "the old instance's process is gone");
    let said = std::fs::read_to_string(&log).unwrap();
    let line = format!(
        "swept process group {old_pid} left by a previous agent (instance {old} of service shop/web)"
    );
    assert!(said.lines().any(|l| l == line), "the server says so: {said}");

    // The replacement serves, and is the one process of the service.
    let (new, new_port) = healthy_instance(&client, Some(&old)).await;
    let new_pid = pid_on(new_port).await.expect("the new instance answers");
    assert_ne!(new_pid, old_pid);
    assert_eq!(marked(&marker), [new_pid].into(), "exactly one instance process ({new})");
    let info = client.service("shop", "web").await.unwrap();
    let running: Vec<&str> =
        info.instances.iter().filter(|i| i.state == "healthy").map(|i| i.id.as_str()).collect();
    assert_eq!(running, [new.as_str()], "{info:#?}");
}

/// Prints its workspace, then waits for the file `stop` names, keeping an artifact.
const LONG: &str = r#"
name: long
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      work:
        script:
          - 'echo "workspace=$PWD"; echo x > out.txt'
          - 'while [ ! -f "${{ params.stop }}" ]; do sleep 0.05; done'
        artifacts: { paths: [out.txt] }
"#;

/// `kiln agent --name NAME --work-dir WORK` on the process executor, jobs as root (so they
/// can see the test's files).
fn agent(url: &str, token: &str, work: &Path, log: &Path) -> Child {
    kiln()
        .args(["agent", "--server", url, "--name", "w1", "--executor", "process"])
        .args(["--capacity", "2", "--process-user", "root", "--work-dir"])
        .arg(work)
        .env("KILN_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("kiln agent starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_job_removes_the_job_s_workspace_when_it_starts_again() {
    let s = kiln_testkit::TestServer::start_with(0).await;
    let req = kiln_api::CreateToken { name: "agents".into(), role: "agent".into(), project: None };
    let token = s.admin.create_token(&req).await.unwrap().secret;
    let work = s.dir().join("work");
    let mut first = agent(&s.url, &token, &work, &s.dir().join("agent-1.log"));
    s.apply("shop", "long", LONG).await;
    let stop = s.dir().join("stop");
    let run = s.trigger("shop", "long", &[("stop", stop.to_str().unwrap())]).await;
    let started = Instant::now();
    let workspace = loop {
        let page = s.admin.logs(&run.id, Some("work"), None, 1, 100).await.unwrap();
        if let Some(line) = page.lines.iter().find_map(|l| l.text.strip_prefix("workspace=")) {
            break std::path::PathBuf::from(line);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let scratch = work.join("attempts").join("w1");
    let attempts = || std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert!(workspace.is_dir(), "the job works in {}", workspace.display());
    assert_eq!(attempts(), 1, "the attempt has its scratch space");

    first.kill().unwrap();
    first.wait().unwrap();
    assert!(workspace.is_dir(), "a killed agent leaves the workspace behind");
    assert_eq!(attempts(), 1, "and the scratch space");

    let mut second = agent(&s.url, &token, &work, &s.dir().join("agent-2.log"));
    // The next job runs (the restarted agent swept before it registered).
    std::fs::write(&stop, "").unwrap();
    let next = s.trigger("shop", "long", &[("stop", stop.to_str().unwrap())]).await;
    let d = s.wait_final(&next.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    assert!(!workspace.exists(), "the old job's workspace is gone: {}", workspace.display());
    assert_eq!(attempts(), 0, "and its scratch space (the next job's went with it)");
    let _ = second.kill();
    let _ = second.wait();
    s.stop().await;
}
