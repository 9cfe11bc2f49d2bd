//! Pipelines, runs, approvals, cancel, retry, concurrency, logs, auth, secrets, metrics.

use std::time::Duration;

use futures::StreamExt;
use kiln_api::{CreateToken, TriggerRequest};
use kiln_client::Client;

use crate::support::{Backend, TestServer, job, log_text};

const BUILD_TEST: &str = r#"
name: build-test
params:
  version: { type: string, default: "1.0" }
  marker: { type: string, default: "" }
stages:
  - name: build
    jobs:
      build:
        script:
          - echo "building ${{ params.version }}"
          - echo "JOB_OUT artifact=app-${{ params.version }}.tar"
  - name: test
    jobs:
      test:
        script:
          - echo "testing $artifact"
          - 'if [ -n "${{ params.marker }}" ]; then test -f "${{ params.marker }}"; fi'
          - echo "JOB_OUT passed=3"
"#;

#[tokio::test]
async fn invalid_workflow_is_refused_with_positions_and_nothing_is_stored() {
    invalid_workflow_is_refused_with_positions_and_nothing_is_stored_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn invalid_workflow_is_refused_with_positions_and_nothing_is_stored_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.admin.create_project("api").await.unwrap();
    let bad = "name: x\nstages:\n  - name: b\n    jobs:\n      j:\n        scritp: [echo]\n        timeout: soon\n";
    let err = s
        .admin
        .apply_pipeline(
            "api",
            "x",
            &kiln_api::ApplyPipeline {
                yaml: bad.into(),
                file: Some("x.yml".into()),
                files: Default::default(),
            },
        )
        .await
        .unwrap_err();
    let kiln_client::ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!(status, 422);
    assert_eq!(error.code, "invalid_workflow");
    assert!(error.diagnostics.len() >= 2, "{error:#?}");
    let unknown = error.diagnostics.iter().find(|d| d.message.contains("scritp")).unwrap();
    assert_eq!((unknown.file.as_str(), unknown.line, unknown.column), ("x.yml", 6, 9));
    assert!(error.diagnostics.iter().any(|d| d.line == 7 && d.message.contains("soon")));
    let missing = s.admin.pipeline("api", "x").await.unwrap_err();
    assert_eq!(missing.code(), Some("not_found"));

    // A good apply, then the same again changes nothing, then a change bumps the version.
    let r = s.apply("api", "x", BUILD_TEST).await;
    assert_eq!((r.change.as_str(), r.pipeline.version, r.pipeline.jobs), ("created", 1, 2));
    let r = s.apply("api", "x", BUILD_TEST).await;
    assert_eq!((r.change.as_str(), r.pipeline.version), ("unchanged", 1));
    let r = s.apply("api", "x", &BUILD_TEST.replace("1.0", "2.0")).await;
    assert_eq!((r.change.as_str(), r.pipeline.version), ("updated", 2));
    // A bad update keeps the stored version.
    let _ = s.apply_as(&s.admin, "api", "x", bad).await.unwrap_err();
    assert_eq!(s.admin.pipeline("api", "x").await.unwrap().version, 2);
    s.stop().await;
}

#[tokio::test]
async fn trigger_runs_jobs_and_records_states_outputs_durations_and_who() {
    trigger_runs_jobs_and_records_states_outputs_durations_and_who_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn trigger_runs_jobs_and_records_states_outputs_durations_and_who_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "bt", BUILD_TEST).await;
    let run = s.trigger("api", "bt", &[("version", "2.5")]).await;
    assert_eq!(run.number, 1);
    assert_eq!(run.triggered_by, "admin");
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let build = job(&d, "build");
    assert_eq!(build.outputs.get("artifact").map(String::as_str), Some("app-2.5.tar"));
    assert_eq!((build.state.as_str(), build.attempts, build.exit_code), ("success", 1, Some(0)));
    assert!(
        build.duration_ms.is_some() && build.started_at.is_some() && build.finished_at.is_some()
    );
    let test = job(&d, "test");
    assert_eq!(test.outputs.get("passed").map(String::as_str), Some("3"));
    assert_eq!(d.run.params["version"], "2.5");
    let lines = log_text(&s, &run.id, Some("test")).await;
    assert!(lines.contains(&"testing app-2.5.tar".to_string()), "{lines:?}");
    // The same run by its number.
    let by_number = s.admin.run("api/bt#1").await.unwrap();
    assert_eq!(by_number.run.id, run.id);
    // Bad params: a stable code and what was wrong.
    let err = s
        .admin
        .trigger(
            "api",
            "bt",
            &TriggerRequest { params: [("nope".to_string(), "1".to_string())].into() },
        )
        .await
        .unwrap_err();
    let kiln_client::ClientError::Api { status, error } = err else { panic!() };
    assert_eq!((status, error.code.as_str()), (422, "invalid_params"));
    assert!(error.message.contains("nope"), "{}", error.message);
    s.stop().await;
}

const GATED: &str = r#"
name: gated
stages:
  - name: build
    jobs:
      build: { script: "echo JOB_OUT v=7" }
  - name: approve
    type: approval
    description: Ship it?
  - name: deploy
    jobs:
      deploy: { script: "echo deploying v$v" }
"#;

#[tokio::test]
async fn approval_stage_pauses_until_approved_or_rejected_and_records_who_and_when() {
    approval_stage_pauses_until_approved_or_rejected_and_records_who_and_when_on(Backend::Sqlite)
        .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn approval_stage_pauses_until_approved_or_rejected_and_records_who_and_when_on(
    backend: Backend,
) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "gated", GATED).await;
    let run = s.trigger("api", "gated", &[]).await;
    let d = s.wait_for(&run.id, "paused", |d| d.run.state == "paused").await;
    assert_eq!(d.paused_at.as_deref(), Some("approve"));
    assert_eq!(job(&d, "deploy").state, "pending");
    // A stage that does not exist, and one that is not waiting.
    let e = s.admin.decide(&run.id, "nope", true).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    let e = s.admin.decide(&run.id, "build", true).await.unwrap_err();
    assert_eq!(e.code(), Some("conflict"), "{e}");
    let before = chrono::Utc::now();
    s.admin.decide(&run.id, "approve", true).await.unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success");
    let stage = d.stages.iter().find(|st| st.name == "approve").unwrap();
    let decision = stage.decision.as_ref().unwrap();
    assert_eq!((decision.decision.as_str(), decision.by.as_str()), ("approved", "admin"));
    assert!(decision.at >= before - chrono::Duration::seconds(1));
    assert_eq!(stage.gate.as_deref(), Some("approved"));
    assert!(log_text(&s, &run.id, Some("deploy")).await.contains(&"deploying v7".to_string()));
    // Approving again is a conflict: the run has ended.
    assert_eq!(
        s.admin.decide(&run.id, "approve", true).await.unwrap_err().code(),
        Some("conflict")
    );

    let run = s.trigger("api", "gated", &[]).await;
    s.wait_for(&run.id, "paused", |d| d.run.state == "paused").await;
    s.admin.decide(&run.id, "approve", false).await.unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "canceled");
    assert_eq!(job(&d, "deploy").state, "canceled");
    assert!(d.run.reason.as_deref().unwrap().contains("rejected by admin"), "{:?}", d.run.reason);
    s.stop().await;
}

#[tokio::test]
async fn cancel_kills_running_jobs() {
    cancel_kills_running_jobs_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn cancel_kills_running_jobs_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "slow", "name: slow\nstages:\n  - name: s\n    jobs:\n      sleep: { script: [\"echo started\", \"sleep 30\"] }\n").await;
    let run = s.trigger("api", "slow", &[]).await;
    s.wait_for(&run.id, "its job running", |d| job(d, "sleep").state == "running").await;
    let t = std::time::Instant::now();
    s.admin.cancel(&run.id).await.unwrap();
    let d = s.wait_final(&run.id).await;
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!((d.run.state.as_str(), job(&d, "sleep").state.as_str()), ("canceled", "canceled"));
    assert_eq!(s.admin.cancel(&run.id).await.unwrap_err().code(), Some("conflict"));
    s.stop().await;
}

#[tokio::test]
async fn retry_reruns_failed_jobs_and_keeps_the_outputs_of_passed_ones() {
    retry_reruns_failed_jobs_and_keeps_the_outputs_of_passed_ones_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn retry_reruns_failed_jobs_and_keeps_the_outputs_of_passed_ones_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "bt", BUILD_TEST).await;
    let marker = s.dir().join("marker");
    let marker = marker.to_str().unwrap();
    let run = s.trigger("api", "bt", &[("version", "3.1"), ("marker", marker)]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure");
    assert_eq!(job(&d, "test").state, "failure");
    assert!(d.run.reason.as_deref().unwrap().contains("test"), "{:?}", d.run.reason);
    // Retrying a run that is not over, or that succeeded, is refused.
    std::fs::write(marker, "").unwrap();
    let retried = s.admin.retry(&run.id).await.unwrap();
    assert_eq!(retried.retry_of.as_deref(), Some(run.id.as_str()));
    assert_eq!(retried.number, 2);
    let d2 = s.wait_final(&retried.id).await;
    assert_eq!(d2.run.state, "success", "{d2:#?}");
    let build = job(&d2, "build");
    assert_eq!(build.attempts, 0, "build was reused, not run again");
    assert_eq!(build.outputs.get("artifact").map(String::as_str), Some("app-3.1.tar"));
    let lines = log_text(&s, &retried.id, Some("test")).await;
    assert!(lines.contains(&"testing app-3.1.tar".to_string()), "{lines:?}");
    assert_eq!(s.admin.retry(&retried.id).await.unwrap_err().code(), Some("conflict"));
    s.stop().await;
}

#[tokio::test]
async fn concurrency_limit_queues_runs_fifo() {
    concurrency_limit_queues_runs_fifo_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn concurrency_limit_queues_runs_fifo_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    let gate = s.dir().join("gate");
    let yaml = format!(
        "name: one\nconcurrency: 1\nstages:\n  - name: s\n    jobs:\n      wait:\n        script:\n          - 'while [ ! -f {} ]; do sleep 0.05; done'\n",
        gate.display()
    );
    s.apply("api", "one", &yaml).await;
    let runs: Vec<_> =
        futures::future::join_all((0..3).map(|_| s.trigger("api", "one", &[]))).await;
    let first = runs.iter().find(|r| r.number == 1).unwrap();
    s.wait_for(&first.id, "running", |d| d.run.state == "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in runs.iter().filter(|r| r.number > 1) {
        assert_eq!(
            s.admin.run(&r.id).await.unwrap().run.state,
            "pending",
            "run #{} waits",
            r.number
        );
    }
    let queued = s
        .admin
        .runs(&kiln_client::RunQuery { state: Some("pending".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    std::fs::write(&gate, "").unwrap();
    let mut done = Vec::new();
    for r in &runs {
        done.push(s.wait_final(&r.id).await);
    }
    assert!(done.iter().all(|d| d.run.state == "success"));
    done.sort_by_key(|d| d.run.number);
    for pair in done.windows(2) {
        assert!(
            pair[0].run.finished_at.unwrap() <= pair[1].run.started_at.unwrap(),
            "run #{} started before #{} ended",
            pair[1].run.number,
            pair[0].run.number
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn logs_by_range_and_live_follow_resuming_from_last_event_id() {
    let s = TestServer::start().await;
    let gate = s.dir().join("go");
    let yaml = format!(
        "name: lines\nstages:\n  - name: s\n    jobs:\n      count:\n        script:\n          - 'for i in 1 2 3 4 5; do echo line $i; done'\n          - 'while [ ! -f {} ]; do sleep 0.05; done'\n          - 'for i in 6 7 8; do echo line $i; done'\n",
        gate.display()
    );
    s.apply("api", "lines", &yaml).await;
    let run = s.trigger("api", "lines", &[]).await;
    // Follow live from the start: the echo of the first script line, then the five lines it
    // prints come while the job still runs.
    let mut live = Box::pin(s.admin.follow(&run.id, Some("count"), None, 1).await.unwrap());
    let echo = tokio::time::timeout(Duration::from_secs(20), live.next()).await.unwrap();
    let echo = echo.unwrap().unwrap();
    assert_eq!(echo.seq, 1);
    assert_eq!(
        echo.mark.map(|m| m.name),
        Some(Some("for i in 1 2 3 4 5; do echo line $i; done".into()))
    );
    for i in 1..=5 {
        let l = tokio::time::timeout(Duration::from_secs(20), live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((l.seq, l.text), (i + 1, format!("line {i}")));
    }
    std::fs::write(&gate, "").unwrap();
    let rest: Vec<_> = live.collect().await;
    let rest: Vec<String> =
        rest.into_iter().map(|l| l.unwrap()).filter(|l| l.mark.is_none()).map(|l| l.text).collect();
    assert_eq!(rest, ["line 6", "line 7", "line 8"]);
    // Resume after line 6 (seq 9, after two more echoes) with Last-Event-ID: exactly 7 and 8,
    // then the end.
    let resumed: Vec<_> =
        s.admin.follow(&run.id, Some("count"), None, 10).await.unwrap().collect().await;
    let resumed: Vec<(u64, String)> =
        resumed.into_iter().map(|l| l.map(|l| (l.seq, l.text)).unwrap()).collect();
    assert_eq!(resumed, [(10, "line 7".to_string()), (11, "line 8".to_string())]);
    // The raw SSE carries the seq as the event id.
    let raw = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{}/jobs/count/logs/stream", s.url, run.id))
        .bearer_auth(&s.admin_token)
        .header("Last-Event-ID", "10")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("id: 11\n") || raw.contains("id:11\n"), "{raw}");
    assert!(!raw.contains("line 7"), "{raw}");
    // Pages by range.
    let page = s.admin.logs(&run.id, Some("count"), None, 4, 2).await.unwrap();
    let texts: Vec<&str> = page.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!((texts, page.next), (vec!["line 3", "line 4"], 6));
    let page = s.admin.logs(&run.id, Some("count"), None, 11, 100).await.unwrap();
    assert!(page.closed);
    // The whole-run log names the job of each line.
    let all = s.admin.logs(&run.id, None, None, 1, 100).await.unwrap();
    assert_eq!(all.lines.len(), 11, "8 lines and 3 echoes");
    assert!(all.lines.iter().all(|l| l.job.as_deref() == Some("count")));
    s.stop().await;
}

#[tokio::test]
async fn every_call_needs_a_token_and_roles_limit_what_it_may_do() {
    every_call_needs_a_token_and_roles_limit_what_it_may_do_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn every_call_needs_a_token_and_roles_limit_what_it_may_do_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "bt", BUILD_TEST).await;
    s.apply("web", "bt", BUILD_TEST).await;
    let none = reqwest::get(format!("{}/api/v1/runs", s.url)).await.unwrap();
    assert_eq!(none.status(), 401);
    let body: kiln_api::ErrorBody = none.json().await.unwrap();
    assert_eq!(body.error.code, "unauthorized");
    let bogus = Client::new(&s.url, "kiln_nope").unwrap();
    assert_eq!(bogus.runs(&Default::default()).await.unwrap_err().code(), Some("unauthorized"));

    let viewer = s
        .admin
        .create_token(&CreateToken { name: "carol".into(), role: "viewer".into(), project: None })
        .await
        .unwrap();
    assert!(viewer.secret.starts_with("kiln_"));
    let carol = Client::new(&s.url, &viewer.secret).unwrap();
    carol.pipelines("api").await.unwrap();
    let e = carol.trigger("api", "bt", &TriggerRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    assert!(e.to_string().contains("viewer"), "{e}");

    let dev = s
        .admin
        .create_token(&CreateToken {
            name: "dave".into(),
            role: "developer".into(),
            project: Some("api".into()),
        })
        .await
        .unwrap();
    let dave = Client::new(&s.url, &dev.secret).unwrap();
    let run = dave.trigger("api", "bt", &TriggerRequest::default()).await.unwrap();
    assert_eq!(run.triggered_by, "dave");
    // Another project is answered as a missing one: its name tells a stranger nothing.
    assert_eq!(
        dave.trigger("web", "bt", &TriggerRequest::default()).await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(dave.create_project("x").await.unwrap_err().code(), Some("forbidden"));
    assert!(dave.runs(&Default::default()).await.unwrap().iter().all(|r| r.project == "api"));

    // Tokens are stored hashed: the secret is nowhere in the database.
    assert!(s.database_contains(dev.token.id.as_bytes()).await, "the search finds what is there");
    assert!(!s.database_contains(dev.secret.as_bytes()).await);
    // Revoked: refused at once.
    s.admin.revoke_token(&dev.token.id).await.unwrap();
    assert_eq!(dave.runs(&Default::default()).await.unwrap_err().code(), Some("unauthorized"));
    s.stop().await;
}

#[tokio::test]
async fn secrets_are_encrypted_injected_and_masked_in_logs() {
    secrets_are_encrypted_injected_and_masked_in_logs_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn secrets_are_encrypted_injected_and_masked_in_logs_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply(
        "api",
        "sec",
        "name: sec\nstages:\n  - name: s\n    jobs:\n      use:\n        script:\n          - 'test \"$(echo $DB_PASSWORD | tr a-z A-Z)\" = HUNTER2-VERY-SECRET'\n          - echo \"password is $DB_PASSWORD\"\n",
    )
    .await;
    s.admin.set_secret("api", "DB_PASSWORD", "hunter2-very-secret").await.unwrap();
    let listed = s.admin.secrets("api").await.unwrap();
    assert_eq!(listed.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["DB_PASSWORD"]);
    let e = s.admin.set_secret("api", "bad name", "x").await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    let run = s.trigger("api", "sec", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "the job saw the secret as env");
    let lines = log_text(&s, &run.id, Some("use")).await;
    assert!(lines.contains(&"password is ***".to_string()), "{lines:?}");
    let all = log_text(&s, &run.id, None).await;
    assert!(all.contains(&"password is ***".to_string()), "{all:?}");
    // Nowhere in plain text: not in the database, not in the log files.
    let mut stack = vec![s.data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(19).any(|w| w == b"hunter2-very-secret"),
                    "the secret is in {}",
                    p.display()
                );
            }
        }
    }
    // Nor anywhere in a PostgreSQL database.
    assert!(s.database_contains(b"DB_PASSWORD").await, "the search finds what is there");
    assert!(!s.database_contains(b"hunter2-very-secret").await, "the secret is in the database");
    s.stop().await;
}

#[tokio::test]
async fn metrics_and_openapi_describe_the_server() {
    let s = TestServer::start().await;
    s.apply("api", "bt", BUILD_TEST).await;
    let run = s.trigger("api", "bt", &[]).await;
    s.wait_final(&run.id).await;
    let text = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for needle in [
        "kiln_runs{state=\"success\"} 1",
        "kiln_queue_depth{queue=\"jobs\"} 0",
        "kiln_job_duration_seconds_count{state=\"success\"} 2",
        "kiln_log_bytes_total",
        "kiln_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/projects/{project}/pipelines/{pipeline}/runs\",status=\"201\"} 1",
    ] {
        assert!(text.contains(needle), "no `{needle}` in\n{text}");
    }
    let doc: serde_json::Value =
        reqwest::get(format!("{}/api/openapi.json", s.url)).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/projects/{project}/pipelines/{pipeline}",
        "/api/v1/projects/{project}/pipelines/{pipeline}/runs",
        "/api/v1/runs/{run}",
        "/api/v1/runs/{run}/jobs/{job}/logs/stream",
        "/api/v1/runs/{run}/stages/{stage}/decision",
        "/api/v1/runs/{run}/retry",
        "/api/v1/runs/{run}/artifacts/{job}",
        "/api/v1/tokens",
        "/api/v1/agents/{agent}/lease",
        "/api/v1/registry/repositories",
        "/api/v1/registry/gc",
        "/api/v1/projects/{project}/webhooks",
        "/api/v1/triggers",
        "/api/v1/hooks/{provider}",
        "/api/v1/quotas",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not in the OpenAPI document");
    }
    assert!(doc["components"]["schemas"].get("RunDetail").is_some());
    assert!(doc["components"]["schemas"].get("TriggerInfo").is_some());
    s.stop().await;
}

#[tokio::test]
async fn every_error_has_a_stable_code_and_a_message() {
    let s = TestServer::start().await;
    s.apply("api", "bt", BUILD_TEST).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut req = http.request(method, format!("{}{path}", s.url)).bearer_auth(&s.admin_token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        req.send()
    };
    for (method, path, body, status, code, says) in [
        (
            reqwest::Method::GET,
            "/api/v1/projects/api/pipelines/bt/runs/abc",
            None,
            400,
            "bad_request",
            "number",
        ),
        (reqwest::Method::GET, "/api/v1/runs/not-a-uuid", None, 400, "bad_request", "not a run id"),
        (reqwest::Method::GET, "/api/v1/runs?limit=lots", None, 400, "bad_request", "limit"),
        (reqwest::Method::GET, "/api/v1/runs?state=done", None, 400, "bad_request", "state `done`"),
        (
            reqwest::Method::POST,
            "/api/v1/projects/api/pipelines/bt/runs",
            Some("{\"params\": 3}"),
            400,
            "bad_request",
            "params",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/projects/api/pipelines/bt/runs",
            Some("{not json"),
            400,
            "bad_request",
            "request body",
        ),
        (reqwest::Method::DELETE, "/api/v1/runs", None, 405, "method_not_allowed", ""),
        (reqwest::Method::GET, "/api/v1/nothing/here", None, 404, "not_found", "openapi"),
        (reqwest::Method::GET, "/api/v1/projects/nope/pipelines", None, 404, "not_found", "nope"),
        (
            reqwest::Method::POST,
            "/api/v1/projects",
            Some("{\"name\": \"a b\"}"),
            400,
            "bad_request",
            "a b",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/projects",
            Some("{\"name\": \"api\"}"),
            409,
            "conflict",
            "api",
        ),
    ] {
        let resp = call(method.clone(), path, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let e: kiln_api::ErrorBody = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: not the error shape: {e}"));
        assert_eq!(e.error.code, code, "{method} {path}: {}", e.error.message);
        assert!(e.error.message.contains(says), "{method} {path}: {}", e.error.message);
    }
    // None of that changed what is stored.
    assert_eq!(s.admin.pipeline("api", "bt").await.unwrap().version, 1);
    assert!(s.admin.runs(&Default::default()).await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn jobs_get_a_registry_token_that_pushes_to_their_project_only() {
    let s = TestServer::start().await;
    let saved = s.dir().join("token");
    let yaml = r#"
name: image
stages:
  - name: push
    jobs:
      push:
        script:
          - echo "JOB_OUT registry=$KILN_REGISTRY"
          - echo "JOB_OUT token=$KILN_REGISTRY_TOKEN"
          - echo "token is $KILN_REGISTRY_TOKEN"
          - printf %s "$KILN_REGISTRY_TOKEN" > SAVED
"#
    .replace("SAVED", &saved.display().to_string());
    s.apply("team", "image", &yaml).await;
    s.admin.create_project("other").await.unwrap();
    let run = s.trigger("team", "image", &[]).await;
    let detail = s.wait_final(&run.id).await;
    let job = &detail.jobs[0];
    let registry = job.outputs.get("registry").unwrap();
    assert_eq!(registry.as_str(), s.url.trim_start_matches("http://"));
    // The token is a secret: masked in outputs and logs.
    assert_eq!(job.outputs.get("token").map(String::as_str), Some("***"));
    let log = log_text(&s, &run.id, Some("push")).await;
    assert!(log.iter().any(|l| l == "token is ***"), "{log:#?}");
    let token = &std::fs::read_to_string(&saved).unwrap();
    assert!(token.starts_with("kiln_job_"), "{token}");
    assert!(!s.database_contains(token.as_bytes()).await, "the token is not stored");
    // The token gets push rights on the job's project, nothing on another one.
    let http = reqwest::Client::new();
    let ask = |scope: &str| {
        http.get(format!("http://{registry}/auth/token?service=kiln&scope={scope}"))
            .basic_auth("kiln", Some(token))
            .send()
    };
    let body: serde_json::Value =
        ask("repository:team/app:pull,push").await.unwrap().json().await.unwrap();
    let claims = body["token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull", "push"]));
    let body: serde_json::Value =
        ask("repository:other/app:pull,push").await.unwrap().json().await.unwrap();
    let claims = body["token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"], serde_json::json!([]));
    s.stop().await;
}

#[tokio::test]
async fn the_runs_list_pages_on_after_a_run_and_filters_by_project_before_the_limit() {
    let s = TestServer::start().await;
    s.apply("api", "bt", BUILD_TEST).await;
    s.apply("other", "bt", BUILD_TEST).await;
    let mut ours = Vec::new();
    for _ in 0..3 {
        ours.push(s.trigger("api", "bt", &[]).await.id);
    }
    let theirs = s.trigger("other", "bt", &[]).await.id;
    let http = reqwest::Client::new();
    async fn ids(http: &reqwest::Client, s: &TestServer, query: &str) -> Vec<String> {
        let resp = http
            .get(format!("{}/api/v1/runs?{query}", s.url))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET /api/v1/runs?{query}");
        let runs: Vec<kiln_api::RunSummary> = resp.json().await.unwrap();
        runs.into_iter().map(|r| r.id).collect()
    }
    let list = |query: String| {
        let (http, s) = (&http, &s);
        async move { ids(http, s, &query).await }
    };
    // Newest first; a project's runs even when another project's are newer.
    assert_eq!(list("limit=1".into()).await, [theirs.as_str()]);
    assert_eq!(list("project=api&limit=2".into()).await, [ours[2].clone(), ours[1].clone()]);
    // The next pages: after the last run of the page before.
    assert_eq!(list(format!("project=api&limit=2&before={}", ours[1])).await, [ours[0].clone()]);
    assert!(list(format!("project=api&limit=2&before={}", ours[0])).await.is_empty());
    assert_eq!(list(format!("limit=2&before={theirs}")).await, [ours[2].clone(), ours[1].clone()]);
    let bad = http
        .get(format!("{}/api/v1/runs?before=yesterday", s.url))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    s.stop().await;
}
