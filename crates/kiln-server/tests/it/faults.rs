//! Faults of the storage under the server (the tests run as root, for the mounts): a full
//! disk (a small tmpfs as the data directory) is answered 507 with its cause, never wedges
//! the store, and the server recovers by itself once space returns; a job whose log line
//! could not be stored fails with that cause and leaves a marker in its log. A read-only,
//! vanished or replaced data directory refuses writes with 503 naming it while reads go on,
//! and PostgreSQL going away (a proxy the test cuts) is answered 503 naming the database;
//! in each case the server recovers by itself and a run in flight finishes. A job the
//! server runs itself fails like an agent's when its log line cannot be stored; a service
//! instance keeps running and its log says how many lines were lost.

use std::time::{Duration, Instant};

use kiln_api::TriggerRequest;
use kiln_client::ClientError;
use kiln_testkit::postgres::TestDb;
use kiln_testkit::{CuttableProxy, Mount, fill};

use crate::support::{Backend, TestServer, job, log_text};

async fn start(mount: &mut Option<Mount>) -> TestServer {
    TestServer::start_prepared(
        Backend::Sqlite,
        4,
        Duration::from_secs(30),
        kiln_server::GcConfig::default(),
        |data| *mount = Some(Mount::tmpfs(data, "24m")),
    )
    .await
}

const QUICK: &str = r#"
name: quick
stages:
  - name: s
    jobs:
      hello:
        script: [echo hello]
"#;

#[tokio::test]
async fn a_full_disk_is_answered_507_and_the_server_recovers_when_space_returns() {
    let mut mount = None;
    let s = start(&mut mount).await;
    s.apply("api", "quick", QUICK).await;
    let before = s.trigger("api", "quick", &[]).await;
    assert_eq!(s.wait_final(&before.id).await.run.state, "success");

    let filler = fill(&s.data);
    // SQLite reuses the space its write-ahead log already has: trigger until it needs more.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..2000 {
        match s.admin.trigger("api", "quick", &TriggerRequest::default()).await {
            Ok(run) => accepted.push(run.id),
            Err(e) => {
                refused.push(e);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "the full disk was never noticed");
    for e in &refused {
        let ClientError::Api { status, error } = e else { panic!("no answer: {e}") };
        assert_eq!(*status, 507, "{e}");
        assert_eq!(error.code, "insufficient_storage", "{e}");
        assert!(error.message.contains("full"), "the cause is named: {e}");
        assert!(!error.message.contains("transaction depth"), "no wedge: {e}");
    }

    // Space returns: the server takes writes again by itself, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let after = loop {
        match s.admin.trigger("api", "quick", &TriggerRequest::default()).await {
            Ok(run) => break run,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the server never recovered: {e}"
                );
                assert!(!e.to_string().contains("transaction depth"), "no wedge: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(s.wait_final(&after.id).await.run.state, "success");
    // Every run accepted while the disk was full ended; none stays `running`.
    for id in accepted {
        let d = s.wait_final(&id).await;
        if d.run.state != "success" {
            let reason = job(&d, "hello").reason.clone().unwrap_or_default();
            assert!(reason.contains("could not be stored"), "{d:#?}");
        }
    }
    s.stop().await;
}

/// Prints a line every 20 ms until the file named by `stop` exists.
const CHATTY: &str = r#"
name: chatty
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      talk:
        script:
          - 'i=0; while [ ! -f "${{ params.stop }}" ]; do i=$((i+1)); echo "line $i"; sleep 0.02; done'
"#;

#[tokio::test]
async fn a_log_line_that_cannot_be_stored_fails_the_job_with_that_cause_and_a_marker() {
    let mut mount = None;
    let s = start(&mut mount).await;
    s.apply("api", "chatty", CHATTY).await;
    // The job ends by itself at the latest when this file appears (after the test's checks).
    let stop = s.dir().join("stop");
    let run = s.trigger("api", "chatty", &[("stop", stop.to_str().unwrap())]).await;
    s.wait_for(&run.id, "a job printing", |d| job(d, "talk").state == "running").await;
    let started = Instant::now();
    while log_text(&s, &run.id, Some("talk")).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the job never printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let filler = fill(&s.data);
    let marker = "could not be stored";
    let started = Instant::now();
    let lines = loop {
        let lines = log_text(&s, &run.id, Some("talk")).await;
        if lines.iter().any(|l| l.contains(marker)) {
            break lines;
        }
        if started.elapsed() > Duration::from_secs(30) {
            std::fs::write(&stop, "").unwrap();
            panic!(
                "no marker in the job's log: {:?}",
                lines.iter().rev().take(3).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = lines.last().unwrap();
    assert!(last.contains("No space left on device"), "the marker names the cause: {last}");

    // Space returns: the job's end is stored with its cause, and the run ends.
    std::fs::remove_file(&filler).unwrap();
    let d = s.wait_final(&run.id).await;
    std::fs::write(&stop, "").unwrap();
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let reason = job(&d, "talk").reason.clone().unwrap_or_default();
    assert!(reason.contains(marker) && reason.contains("No space left"), "{d:#?}");
    let all = log_text(&s, &run.id, None).await;
    assert!(all.iter().any(|l| l.contains(marker)), "the run's log has the marker too");
    s.stop().await;
}

/// The answer of a refused request: status, code and message.
fn refusal(e: &ClientError) -> (u16, String, String) {
    let ClientError::Api { status, error } = e else { panic!("no answer: {e}") };
    (*status, error.code.clone(), error.message.clone())
}

/// Triggers `project/pipeline` until it is accepted (at most 30 s), as a client retrying
/// after a 503 would; the run.
async fn trigger_until_accepted(s: &TestServer, project: &str, pipeline: &str) -> String {
    let started = Instant::now();
    loop {
        match s.admin.trigger(project, pipeline, &TriggerRequest::default()).await {
            Ok(run) => return run.id,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(30), "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_read_only_data_directory_refuses_writes_naming_it_keeps_reads_and_recovers() {
    let s = TestServer::start().await;
    s.apply("api", "quick", QUICK).await;
    let before = s.trigger("api", "quick", &[]).await;
    assert_eq!(s.wait_final(&before.id).await.run.state, "success");

    let read_only = Mount::read_only(&s.data);
    let err = s.admin.trigger("api", "quick", &TriggerRequest::default()).await.unwrap_err();
    let (status, code, message) = refusal(&err);
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{err}");
    assert!(message.contains("read-only"), "the cause is named: {message}");
    assert!(message.contains(&s.data.display().to_string()), "and the directory: {message}");
    let err = s.apply_as(&s.admin, "api", "other", QUICK).await.unwrap_err();
    assert_eq!(refusal(&err).0, 503, "every write is refused alike: {err}");
    // Reads go on.
    assert_eq!(s.admin.run(&before.id).await.unwrap().run.state, "success");
    assert!(log_text(&s, &before.id, Some("hello")).await.iter().any(|l| l == "hello"));
    assert_eq!(s.admin.pipelines("api").await.unwrap().len(), 1);

    // Writable again: the server takes writes by itself, and runs work.
    drop(read_only);
    let after = trigger_until_accepted(&s, "api", "quick").await;
    assert_eq!(s.wait_final(&after).await.run.state, "success");
    s.stop().await;
}

#[tokio::test]
async fn a_vanished_data_directory_is_named_as_missing_and_the_server_recovers_when_it_returns() {
    let s = TestServer::start().await;
    s.apply("api", "quick", QUICK).await;
    let before = s.trigger("api", "quick", &[]).await;
    assert_eq!(s.wait_final(&before.id).await.run.state, "success");

    let aside = s.dir().join("data-aside");
    std::fs::rename(&s.data, &aside).unwrap();
    let err = s.admin.trigger("api", "quick", &TriggerRequest::default()).await.unwrap_err();
    let (status, code, message) = refusal(&err);
    assert_eq!((status, code.as_str()), (503, "unavailable"), "not another fault: {err}");
    assert!(message.contains("missing"), "the cause is named: {message}");
    assert!(message.contains(&s.data.display().to_string()), "and the directory: {message}");
    // A read answers what it can, or the same cause; never a 500.
    match s.admin.run(&before.id).await {
        Ok(d) => assert_eq!(d.run.state, "success"),
        Err(e) => assert_eq!(refusal(&e).0, 503, "{e}"),
    }

    // Another directory at its place is not it either.
    std::fs::create_dir(&s.data).unwrap();
    let err = s.admin.trigger("api", "quick", &TriggerRequest::default()).await.unwrap_err();
    let (status, _, message) = refusal(&err);
    assert_eq!(status, 503, "{err}");
    assert!(message.contains("replaced"), "{message}");
    std::fs::remove_dir(&s.data).unwrap();

    // Put back: the server takes writes by itself.
    std::fs::rename(&aside, &s.data).unwrap();
    let after = trigger_until_accepted(&s, "api", "quick").await;
    assert_eq!(s.wait_final(&after).await.run.state, "success");
    s.stop().await;
}

/// Waits until the file named by `stop` exists, quietly.
const WAITS: &str = r#"
name: waits
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      wait:
        script:
          - 'while [ ! -f "${{ params.stop }}" ]; do sleep 0.05; done; echo done'
"#;

#[tokio::test]
async fn postgres_going_away_is_answered_503_naming_it_and_runs_in_flight_finish_when_it_returns() {
    let Some(Backend::Postgres(db)) = Backend::postgres("faults_postgres_away").await else {
        return;
    };
    // The server reaches the database through a proxy the test can take down.
    let (user, at) = db.server.trim_start_matches("postgres://").split_once('@').unwrap();
    let proxy = CuttableProxy::start(at.parse().unwrap()).await;
    let proxied =
        TestDb { server: format!("postgres://{user}@{}", proxy.addr()), name: db.name.clone() };
    let s = TestServer::start_on(Backend::Postgres(proxied)).await;
    s.apply("api", "quick", QUICK).await;
    s.apply("api", "waits", WAITS).await;
    let stop = s.dir().join("stop");
    let inflight = s.trigger("api", "waits", &[("stop", stop.to_str().unwrap())]).await;
    s.wait_for(&inflight.id, "its job running", |d| job(d, "wait").state == "running").await;

    proxy.down();
    let err = s.admin.trigger("api", "quick", &TriggerRequest::default()).await.unwrap_err();
    let (status, code, message) = refusal(&err);
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{err}");
    assert!(message.contains("PostgreSQL") && message.contains(&db.name), "named: {message}");
    // The job in flight ends while the database is away; its end is kept until stored.
    std::fs::write(&stop, "").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.up();
    let d = s.wait_final(&inflight.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    assert!(log_text(&s, &inflight.id, Some("wait")).await.iter().any(|l| l == "done"));
    let after = trigger_until_accepted(&s, "api", "quick").await;
    assert_eq!(s.wait_final(&after).await.run.state, "success");
    s.stop().await;
}

/// Waits, silently, until the file named by `stop` exists.
const QUIET: &str = r#"
name: quiet
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      wait:
        script:
          - 'while [ ! -f "${{ params.stop }}" ]; do sleep 0.05; done'
"#;

/// Starts `quiet` and waits for it: the server's own job, which logs what it starts and
/// each state of it.
const KICK: &str = r#"
name: kick
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      kick:
        trigger:
          pipeline: quiet
          params: { stop: "${{ params.stop }}" }
"#;

#[tokio::test]
async fn a_server_job_whose_log_line_cannot_be_stored_fails_with_that_cause() {
    let s = TestServer::start().await;
    s.apply("api", "quiet", QUIET).await;
    s.apply("api", "kick", KICK).await;
    let stop = s.dir().join("stop");
    std::fs::write(&stop, "").unwrap();
    // No run's log can be made from now on (the rest of the data directory is writable).
    let runs = s.data.join("logs").join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let read_only = Mount::read_only(&runs);
    let run = s.trigger("api", "kick", &[("stop", stop.to_str().unwrap())]).await;
    let d = s.wait_final(&run.id).await;
    drop(read_only);
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let reason = job(&d, "kick").reason.clone().unwrap_or_default();
    assert!(
        reason.contains("a log line could not be stored") && reason.contains("Read-only"),
        "the cause is named: {d:#?}"
    );
    s.stop().await;
}

/// A service whose one instance says `tick` ten times a second.
const TICKER: &str = "kind: service
name: ticker
replicas: 1
command: [sh, -c, 'while true; do echo tick; sleep 0.1; done']
";

#[tokio::test]
async fn a_service_instance_s_log_says_where_lines_could_not_be_stored_and_it_keeps_running() {
    let s = TestServer::start().await;
    // No instance's log can be made for now (the rest of the data directory is writable).
    let services = s.data.join("logs").join("services");
    std::fs::create_dir_all(&services).unwrap();
    let read_only = Mount::read_only(&services);
    crate::support::apply(&s, "shop", TICKER).await;
    let info = crate::support::wait_service(
        &s,
        "ticker",
        "a running instance",
        |_| {},
        |i| i.instances.iter().any(|i| i.state == "healthy"),
    )
    .await;
    let instance = info.instances[0].id.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Writable again: the lines go on, after a marker saying how many were lost.
    drop(read_only);
    let started = Instant::now();
    let lines = loop {
        let page = s.admin.instance_logs("shop", "ticker", &instance, 1, 1000).await;
        let lines: Vec<String> =
            page.map(|p| p.lines.into_iter().map(|l| l.text).collect()).unwrap_or_default();
        if lines.iter().filter(|l| *l == "tick").count() >= 3 {
            break lines;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no line stored again: {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let marker = lines
        .iter()
        .find(|l| l.contains("were lost"))
        .unwrap_or_else(|| panic!("a marker says lines were lost: {lines:?}"));
    let lost: u64 = marker
        .trim_start_matches("kiln: log lines are stored again; ")
        .trim_end_matches(" were lost")
        .parse()
        .unwrap_or_else(|_| panic!("the marker says how many: {marker}"));
    assert!(lost >= 3, "about ten a second for half a second: {marker}");
    let info = s.admin.service("shop", "ticker").await.unwrap();
    assert_eq!(info.instances[0].id, instance, "the instance kept running: {info:#?}");
    assert_eq!(info.instances[0].state, "healthy", "{info:#?}");
    s.stop().await;
}
