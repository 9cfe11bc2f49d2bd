//! Usage accounting end to end: a run with known reservations and durations adds up to
//! exactly reservation × recorded seconds, by day, pipeline and node group, in the API and
//! the Prometheus counters; a restart (after a run, and with an attempt in flight) loses no
//! record and doubles none; bad windows and groupings are refused clearly.

use kiln_api::pool::AttrValue;
use kiln_api::usage::{UsageAttempt, UsageBy, UsageReport};

use crate::support::{Backend, TestServer, host};

const SLEEPS: &str = r#"
name: build
stages:
  - name: build
    jobs:
      a:
        resources: { cpu: 500m, memory: 256Mi }
        script: ["sleep 2"]
      b:
        resources: { cpu: 1500m, memory: 1Gi, disk: 2Gi }
        script: ["sleep 2"]
"#;

const LONG: &str = r#"
name: long
stages:
  - name: build
    jobs:
      wait:
        resources: { cpu: 250m, memory: 128Mi }
        script: ["sleep 30"]
"#;

const GIB: f64 = (1u64 << 30) as f64;

async fn usage(s: &TestServer, by: UsageBy) -> UsageReport {
    s.admin.usage("acct", Some("1d"), None, by).await.unwrap()
}

/// The attempts of `report` sorted by job, without what the restart may not change.
fn keyed(report: &UsageReport) -> Vec<UsageAttempt> {
    let mut a = report.attempts.clone();
    a.sort_by(|x, y| (&x.run, &x.job, x.attempt).cmp(&(&y.run, &y.job, y.attempt)));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_adds_up_to_reservations_times_seconds_and_survives_restarts() {
    usage_adds_up_to_reservations_times_seconds_and_survives_restarts_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn usage_adds_up_to_reservations_times_seconds_and_survives_restarts_on(
    backend: Backend,
) {
    let mut s = TestServer::start_on_with(backend, 0).await;
    let agent =
        s.agent("acct-a", 4, host("10.0.97.1", 4, &[("group", AttrValue::Text("ci".into()))]));
    s.admin.create_project("acct").await.unwrap();
    s.apply("acct", "build", SLEEPS).await;
    let run = s.trigger("acct", "build", &[]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");

    let by_pipeline = usage(&s, UsageBy::Pipeline).await;
    assert_eq!(by_pipeline.attempts.len(), 2, "{by_pipeline:#?}");
    let mut want_cpu = 0.0;
    let mut want_mem = 0.0;
    let mut want_disk = 0.0;
    let mut want_secs = 0;
    for a in &by_pipeline.attempts {
        assert_eq!((a.run.as_str(), a.attempt, a.pipeline.as_str()), (run.id.as_str(), 1, "build"));
        assert_eq!((a.node.as_str(), a.node_group.as_str()), ("acct-a", "ci"));
        let (cpu, mem, disk) = match a.job.as_str() {
            "a" => (500, 256 << 20, 0),
            "b" => (1500, 1 << 30, 2 << 30),
            other => panic!("unexpected job {other}"),
        };
        assert_eq!((a.cpu_millis, a.memory_bytes, a.disk_bytes), (cpu, mem, disk), "{a:#?}");
        // Whole seconds, rounded up, of the recorded start and end; within the sleep's bounds.
        let ms = (a.ended_at - a.started_at).num_milliseconds();
        assert_eq!(a.seconds, (ms as u64).div_ceil(1000), "{a:#?}");
        assert!((2..30).contains(&a.seconds), "`sleep 2` took {} s: {a:#?}", a.seconds);
        want_cpu += cpu as f64 * a.seconds as f64 / 1000.0;
        want_mem += mem as f64 * a.seconds as f64 / GIB;
        want_disk += disk as f64 * a.seconds as f64 / GIB;
        want_secs += a.seconds;
    }
    let t = by_pipeline.total;
    assert_eq!((t.attempts, t.seconds), (2, want_secs));
    assert_eq!(
        (t.cpu_core_seconds, t.memory_gib_seconds, t.disk_gib_seconds),
        (want_cpu, want_mem, want_disk)
    );
    assert_eq!(by_pipeline.groups.len(), 1);
    assert_eq!((by_pipeline.groups[0].key.as_str(), by_pipeline.groups[0].amounts), ("build", t));
    let by_group = usage(&s, UsageBy::NodeGroup).await;
    assert_eq!(
        by_group.groups.iter().map(|g| (g.key.as_str(), g.amounts)).collect::<Vec<_>>(),
        [("ci", t)]
    );
    let by_day = usage(&s, UsageBy::Day).await;
    let days: Vec<String> =
        by_pipeline.attempts.iter().map(|a| a.ended_at.format("%Y-%m-%d").to_string()).collect();
    assert!(by_day.groups.iter().all(|g| days.contains(&g.key)), "{by_day:#?}");
    assert_eq!(by_day.total, t);

    // The Prometheus counters say the same, once per attempt.
    let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    let labels = r#"{project="acct",pipeline="build"}"#;
    for (name, value) in [
        ("kiln_usage_cpu_core_seconds_total", want_cpu),
        ("kiln_usage_memory_gib_seconds_total", want_mem),
        ("kiln_usage_attempt_seconds_total", want_secs as f64),
        ("kiln_usage_attempts_total", 2.0),
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{labels} ")))
            .unwrap_or_else(|| panic!("no {name}{labels} in\n{metrics}"));
        let got: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(got, value, "{line}");
    }

    // A restart loses no record and doubles none.
    let before = keyed(&by_pipeline);
    s.restart().await;
    assert_eq!(keyed(&usage(&s, UsageBy::Pipeline).await), before);
    agent.stop().await;

    // An attempt in flight at a restart: its record, opened at its start, is completed once
    // when the restarted server ends it (its agent talks to the old address: lost).
    let agent = s.agent("acct-b", 4, host("10.0.97.2", 4, &[]));
    s.apply("acct", "long", LONG).await;
    let long = s.trigger("acct", "long", &[]).await;
    s.wait_for(&long.id, "its job running", |d| d.jobs.iter().any(|j| j.state == "running")).await;
    // The start is stored with the job's running state, in one step.
    s.restart().await;
    let ended = s.wait_final(&long.id).await;
    assert_ne!(ended.run.state, "success", "{ended:#?}");
    let after = usage(&s, UsageBy::Pipeline).await;
    let mine: Vec<_> = after.attempts.iter().filter(|a| a.run == long.id).collect();
    assert_eq!(mine.len(), 1, "{after:#?}");
    assert_eq!(
        (mine[0].cpu_millis, mine[0].memory_bytes, mine[0].node.as_str()),
        (250, 128 << 20, "acct-b")
    );
    assert!(mine[0].seconds < 30, "{:#?}", mine[0]);
    let mut kept: Vec<_> = keyed(&after).into_iter().filter(|a| a.run != long.id).collect();
    kept.sort_by(|x, y| x.job.cmp(&y.job));
    assert_eq!(kept, before);
    s.restart().await;
    assert_eq!(keyed(&usage(&s, UsageBy::Pipeline).await), keyed(&after));
    agent.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn bad_windows_and_groupings_are_refused_clearly() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("acct").await.unwrap();
    let get = |q: &'static str| {
        let url = format!("{}/api/v1/projects/acct/usage?{q}", s.url);
        let token = s.admin_token.clone();
        async move {
            let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (code, body) = get("since=garbage").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("since: `garbage` is not a time") && body.contains("7d"), "{body}");
    let (code, body) = get("by=nope").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("`nope` is not a usage grouping") && body.contains("node-group"),
        "{body}"
    );
    let (code, body) = get("since=2026-12-02&until=2026-12-01").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("the window is empty"), "{body}");
    let err = s.admin.usage("nope", None, None, UsageBy::Day).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    // An empty window is an empty report, not an error.
    let empty = s.admin.usage("acct", Some("7d"), None, UsageBy::Day).await.unwrap();
    assert!(empty.groups.is_empty() && empty.attempts.is_empty() && empty.total.attempts == 0);
    s.stop().await;
}
