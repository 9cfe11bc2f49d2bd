//! Service pools through the real server with agents on the process executor (python3 HTTP
//! servers as instances): a job's own pool serves that job alone and ends with it while the
//! run goes on; a pool's name is the run's (a hand-applied service may not take it); and a
//! pool whose run ended while the server was down is deleted when it starts again.

use std::path::Path;
use std::time::Duration;

use kiln_api::service::ApplyService;
use kiln_engine::RunState;
use kiln_testkit::{peer, wait};

use crate::support::on_loopback;
use crate::support::{Backend, TestServer, job, log_text};

/// A pool of one python3 HTTP server serving `dir` on `$(KILN_PORT_WEB)`, exporting
/// `WEB_URL` (`hello.txt` on it); indented for a job's `service-pools` when `indent` is 8.
fn web_pool(dir: &Path, indent: usize) -> String {
    let text = format!(
        r#"service-pools:
  web:
    service:
      command: [python3, -m, http.server, --bind, 127.0.0.1, --directory, "{dir}", "$(KILN_PORT_WEB)"]
      ports: [{{ name: web, container: 8080 }}]
      health: {{ http: {{ port: web, path: /hello.txt }}, interval: 100ms, grace: 20s }}
    timeout: 2m
    export:
      WEB_URL: "http://{{{{ instances[0].ip }}}}:{{{{ instances[0].ports.web }}}}/hello.txt"
"#,
        dir = dir.display()
    );
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A script item (a literal block, at a job's `script:` depth) that prints `got <text>` of
/// `$WEB_URL`.
const FETCH: &str = r#"- |
            python3 -c "import os, urllib.request; print('got', urllib.request.urlopen(os.environ['WEB_URL']).read().decode().strip())""#;

async fn services(s: &TestServer) -> Vec<String> {
    s.admin.services(Some("ci")).await.unwrap().into_iter().map(|i| i.name).collect()
}

async fn until_no_service(s: &TestServer, what: &str) {
    wait::until(what, Duration::from_secs(20), Duration::from_millis(100), || async {
        let left = services(s).await;
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_pool_serves_its_job_alone_and_ends_with_it_while_the_run_goes_on() {
    if peer("a_job_pool_serves_its_job_alone", "/usr/bin/python3").is_none() {
        return;
    }
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _a = s.agent("a", 4, on_loopback(&[], 44000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the pool\n").unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"name: job pool
stages:
  - name: one
    jobs:
      fetch:
        script:
          {FETCH}
{pool}  - name: two
    jobs:
      after:
        env: {{ DIR: "{d}" }}
        script:
          - touch "$DIR/after-started"
          - while [ ! -e "$DIR/go" ]; do sleep 0.1; done
          - test -z "${{WEB_URL:-}}" && echo "no WEB_URL here"
"#,
        pool = web_pool(dir.path(), 8),
    );
    s.apply("ci", "jobpool", &yaml).await;
    let run = s.trigger("ci", "jobpool", &[]).await;
    let started = dir.path().join("after-started");
    let d = s
        .wait_for(&run.id, "job after started", |d| {
            started.exists() || wait::is_final(&d.run.state)
        })
        .await;
    assert_eq!(job(&d, "fetch").state, "success", "{d:#?}");
    let log = log_text(&s, &run.id, Some("fetch")).await;
    assert!(log.iter().any(|l| l == "got hello from the pool"), "{log:?}");
    // The job ended: its pool is deleted while the run still runs.
    until_no_service(&s, "the job's pool deleted").await;
    assert_eq!(s.admin.run(&run.id).await.unwrap().run.state, "running");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let log = log_text(&s, &run.id, Some("after")).await;
    assert!(log.iter().any(|l| l == "no WEB_URL here"), "{log:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_keeps_its_name_and_is_deleted_at_start_when_its_run_ended_meanwhile() {
    if peer("a_pool_keeps_its_name", "/usr/bin/python3").is_none() {
        return;
    }
    let mut s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _a = s.agent("a", 4, on_loopback(&[], 44100));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"name: held
{pool}stages:
  - name: one
    jobs:
      hold:
        env: {{ DIR: "{d}" }}
        script:
          {FETCH}
          - touch "$DIR/fetched"
          - while [ ! -e "$DIR/go" ]; do sleep 0.1; done
"#,
        pool = web_pool(dir.path(), 0),
    );
    s.apply("ci", "held", &yaml).await;
    let run = s.trigger("ci", "held", &[]).await;
    let fetched = dir.path().join("fetched");
    let d = s
        .wait_for(&run.id, "the job fetched", |d| fetched.exists() || wait::is_final(&d.run.state))
        .await;
    assert!(fetched.exists(), "{d:#?}");
    let name = format!("held-{}-web", run.number);
    assert_eq!(services(&s).await, std::slice::from_ref(&name));

    // A service applied by hand can not take the pool's name.
    let hand = format!("kind: service\nname: {name}\ncommand: [sleep, '60']\n");
    let err = s
        .admin
        .apply_service("ci", &name, &ApplyService { yaml: hand, file: None, note: None })
        .await
        .unwrap_err();
    let kiln_client::ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!(status, 409, "{error:?}");
    assert!(error.message.contains("is a service pool of run"), "{}", error.message);

    // The server stops; the run ends meanwhile (as if it had ended just before a crash).
    s.stop_server().await;
    let store = kiln_store::Store::open(s.data.join("kiln.db")).await.unwrap();
    let id: kiln_store::RunId = run.id.parse().unwrap();
    let ended = kiln_store::Step {
        events: Vec::new(),
        state: Some((RunState::Canceled, Some("canceled while the server was down".into()))),
        jobs: Vec::new(),
        ..kiln_store::Step::default()
    };
    store.record_step(&id, &ended).await.unwrap();
    store.close().await;
    s.start_again().await;
    until_no_service(&s, "the ended run's pool deleted at start").await;
    assert_eq!(s.admin.run(&run.id).await.unwrap().run.state, "canceled");
    std::fs::write(dir.path().join("go"), "").unwrap();
    s.stop().await;
}
