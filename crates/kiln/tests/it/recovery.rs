//! `kill -9` of the server while a job runs in a container: after a restart the run reaches a
//! final state, no streamed log line is lost, and no container is left behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_api::{ApplyPipeline, TriggerRequest};
use kiln_client::Client;

use crate::support::{kiln, leftovers, require_docker};

/// A `kiln server` child process, killed with SIGKILL when dropped (also used by
/// `adoption.rs`).
pub(crate) struct ServerProc {
    child: Child,
    pub(crate) url: String,
}

impl ServerProc {
    fn start(data: &Path) -> ServerProc {
        ServerProc::launch(data, &["--listen", "127.0.0.1:0", "--executor", "docker"])
    }

    /// `kiln server --data DATA ARGS…`, once it says where it listens.
    pub(crate) fn launch(data: &Path, args: &[&str]) -> ServerProc {
        let mut child = kiln()
            .args(["server", "--data"])
            .arg(data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kiln server starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("the server prints its URL").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProc { child, url }
    }

    /// SIGKILL, and wait for it to be gone.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PIPELINE: &str = r#"
name: slow
stages:
  - name: build
    jobs:
      slow:
        image: busybox
        retry: { max: 1, on: [error] }
        script:
          - echo "attempt $KILN_ATTEMPT started"
          - sleep 4
          - echo "attempt $KILN_ATTEMPT done"
  - name: after
    jobs:
      after:
        image: busybox
        script: echo after
"#;

const NO_RETRY: &str = r#"
name: once
stages:
  - name: s
    jobs:
      once:
        image: busybox
        script: ["echo started", "sleep 30"]
"#;

async fn wait_final(client: &Client, run: &str) -> kiln_api::RunDetail {
    let t = Instant::now();
    loop {
        let d = client.run(run).await.unwrap();
        if matches!(d.run.state.as_str(), "success" | "failure" | "canceled" | "timeout") {
            return d;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "run never ended: {d:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows a job's log until a line equal to `want` arrives.
async fn wait_line(client: &Client, run: &str, job: &str, want: &str) {
    let mut lines = Box::pin(client.follow(run, Some(job), None, 1).await.unwrap());
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next().await {
            if l.unwrap().text == want {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "the job never printed `{want}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_job_runs_then_restart_finishes_every_run() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProc::start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let client = Client::new(&server.url, &token).unwrap();
    client.create_project("p").await.unwrap();
    for (name, yaml) in [("slow", PIPELINE), ("once", NO_RETRY)] {
        let body = ApplyPipeline { yaml: yaml.into(), file: None, files: Default::default() };
        client.apply_pipeline("p", name, &body).await.unwrap();
    }
    let slow = client.trigger("p", "slow", &TriggerRequest::default()).await.unwrap();
    let once = client.trigger("p", "once", &TriggerRequest::default()).await.unwrap();
    wait_line(&client, &slow.id, "slow", "attempt 1 started").await;
    wait_line(&client, &once.id, "once", "started").await;
    // A line can be on disk a moment before the server has stored that the attempt started
    // (logs are written as they come, the run's events by its actor): the kill must come when
    // the server knows both jobs run, as when an operator sees them running.
    for (run, job) in [(&slow.id, "slow"), (&once.id, "once")] {
        let t = Instant::now();
        loop {
            let d = client.run(run).await.unwrap();
            if d.jobs.iter().any(|j| j.id == job && j.state == "running") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{job} never ran: {d:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    server.kill9();
    assert!(!leftovers(&slow.id).is_empty(), "the container outlived the server, as it should");

    let server = ServerProc::start(&data);
    let client = Client::new(&server.url, &token).unwrap();
    let d = wait_final(&client, &slow.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let job = d.jobs.iter().find(|j| j.id == "slow").unwrap();
    assert_eq!(job.attempts, 2, "the lost attempt was rerun under the retry policy");
    let first = client.logs(&slow.id, Some("slow"), Some(1), 1, 100).await.unwrap();
    // What the job printed, without the echo of its script's lines.
    let first: Vec<&str> =
        first.lines.iter().filter(|l| l.mark.is_none()).map(|l| l.text.as_str()).collect();
    assert_eq!(first, ["attempt 1 started"], "the line streamed before the kill is kept");
    let second = client.logs(&slow.id, Some("slow"), Some(2), 1, 100).await.unwrap();
    let second: Vec<&str> =
        second.lines.iter().filter(|l| l.mark.is_none()).map(|l| l.text.as_str()).collect();
    assert_eq!(second, ["attempt 2 started", "attempt 2 done"]);

    let d = wait_final(&client, &once.id).await;
    assert_eq!(d.run.state, "failure", "no retry policy: the lost attempt fails the run");
    let job = d.jobs.iter().find(|j| j.id == "once").unwrap();
    assert!(job.reason.as_deref().unwrap_or("").contains("agent lost"), "{job:#?}");

    for run in [&slow.id, &once.id] {
        assert_eq!(leftovers(run), Vec::<String>::new(), "containers of run {run} left behind");
    }
    drop(server);
}
