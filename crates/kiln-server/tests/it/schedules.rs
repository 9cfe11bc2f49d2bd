//! Schedules (`on: schedule:`) and `on: { api: false }`: a per-second schedule starts runs
//! with its params, stops when the pipeline is re-applied without it, its fires outlive a
//! restart, fires missed while the server was down are skipped or run once, and a crash
//! between a fire's claim and its run neither loses nor doubles that run.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use kiln_api::RunSummary;
use kiln_api::triggers::{TriggerInfo, TriggerKind};
use kiln_client::RunQuery;
use kiln_store::{Db, Store};

use crate::support::{Backend, TestServer};

const EVERY_SECOND: &str = r#"name: tick
params:
  who: { type: string, required: true }
on:
  schedule:
    - cron: "* * * * * *"
      params: { who: cron }
  api: false
stages:
  - name: s
    jobs: { a: { script: "echo hello $who" } }
"#;

const TOCK: &str = r#"name: tock
on:
  schedule: { cron: "* * * * * *" }
stages:
  - name: s
    jobs: { a: { script: "echo tock" } }
"#;

async fn runs(s: &TestServer, project: &str, pipeline: &str) -> Vec<RunSummary> {
    let q = RunQuery {
        project: Some(project.into()),
        pipeline: Some(pipeline.into()),
        limit: Some(500),
        ..RunQuery::default()
    };
    s.admin.runs(&q).await.unwrap()
}

/// Polls until `pipeline` has at least `n` runs (60 s at most); returns them, oldest first.
async fn wait_runs(s: &TestServer, project: &str, pipeline: &str, n: usize) -> Vec<RunSummary> {
    let started = Instant::now();
    loop {
        let mut list = runs(s, project, pipeline).await;
        if list.len() >= n {
            list.reverse();
            return list;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{project}/{pipeline} has {} run(s), expected {n}",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn schedules(s: &TestServer, project: &str) -> Vec<TriggerInfo> {
    let all = s.admin.triggers(Some(project)).await.unwrap();
    all.into_iter().filter(|t| t.kind == TriggerKind::Schedule).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_second_schedule_starts_runs_with_its_params_until_it_is_removed() {
    let s = TestServer::start().await;
    s.apply("clock", "tick", EVERY_SECOND).await;
    let list = wait_runs(&s, "clock", "tick", 2).await;
    for run in &list[..2] {
        assert_eq!(run.triggered_by, r#"schedule "* * * * * *" (UTC)"#);
        let detail = s.admin.run(&run.id).await.unwrap();
        assert_eq!(detail.run.params, serde_json::json!({ "who": "cron" }));
    }
    let done = s.wait_final(&list[0].id).await;
    assert_eq!(done.run.state, "success");
    let log = crate::support::log_text(&s, &list[0].id, Some("a")).await;
    assert!(log.iter().any(|l| l == "hello cron"), "{log:?}");

    // `api: false`: no run by hand.
    let refused = s.admin.trigger("clock", "tick", &Default::default()).await.unwrap_err();
    assert_eq!(refused.code(), Some(kiln_api::codes::CONFLICT), "{refused}");
    assert!(refused.to_string().contains("started only by its triggers"), "{refused}");

    // The list: no `api` trigger, the schedule with its next fires and its last run.
    let all = s.admin.triggers(Some("clock")).await.unwrap();
    assert_eq!(all.iter().map(|t| t.kind).collect::<Vec<_>>(), [TriggerKind::Schedule]);
    let info = all[0].schedule.as_ref().unwrap();
    assert_eq!(
        (info.cron.as_str(), info.timezone.as_str(), info.missed.as_str()),
        ("* * * * * *", "UTC", "skip")
    );
    assert_eq!(info.next.len(), 3);
    assert!(info.next.windows(2).all(|w| w[1].at - w[0].at == TimeDelta::seconds(1)));
    assert!(info.last_fired_at.is_some());
    assert!(info.last_run.as_deref().is_some_and(|r| r.starts_with("clock/tick#")), "{info:?}");
    let detail = s.admin.pipeline("clock", "tick").await.unwrap();
    assert_eq!(detail.triggers, all, "the pipeline shows the same triggers");

    // A token of another project sees only that project's triggers.
    s.apply(
        "other",
        "plain",
        "name: plain\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n",
    )
    .await;
    let token = s
        .admin
        .create_token(&kiln_api::CreateToken {
            name: "viewer".into(),
            role: "viewer".into(),
            project: Some("other".into()),
        })
        .await
        .unwrap();
    let viewer = kiln_client::Client::new(&s.url, &token.secret).unwrap();
    let seen = viewer.triggers(None).await.unwrap();
    assert_eq!(
        seen.iter().map(|t| (t.pipeline.as_str(), t.kind)).collect::<Vec<_>>(),
        [("plain", TriggerKind::Api)]
    );
    let denied = viewer.triggers(Some("clock")).await.unwrap_err();
    // Another project's triggers are answered as a missing project's.
    assert_eq!(denied.code(), Some(kiln_api::codes::NOT_FOUND), "{denied}");

    // Re-applied without the schedule (and open to the API): no more scheduled runs. Another
    // per-second schedule firing twice shows that the scheduler went on meanwhile.
    let without = EVERY_SECOND.replace(
        "  schedule:\n    - cron: \"* * * * * *\"\n      params: { who: cron }\n  api: false\n",
        "  api: true\n",
    );
    assert!(!without.contains("cron"));
    s.apply("clock", "tick", &without).await;
    let after = runs(&s, "clock", "tick").await.len();
    assert!(schedules(&s, "clock").await.is_empty());
    s.apply("clock", "tock", TOCK).await;
    wait_runs(&s, "clock", "tock", 2).await;
    assert_eq!(runs(&s, "clock", "tick").await.len(), after, "a removed schedule starts nothing");
    let manual = s.trigger("clock", "tick", &[("who", "me")]).await;
    assert_eq!(manual.triggered_by, "admin");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_and_their_last_fire_outlive_a_restart() {
    let mut s = TestServer::start().await;
    s.apply("clock", "tock", TOCK).await;
    wait_runs(&s, "clock", "tock", 1).await;
    let before = schedules(&s, "clock").await;
    let fired = before[0].schedule.as_ref().unwrap().last_fired_at.expect("fired");
    s.restart().await;
    let again = schedules(&s, "clock").await;
    let last = again[0].schedule.as_ref().unwrap().last_fired_at.expect("kept");
    assert!(last >= fired, "the last fire is stored");
    let n = runs(&s, "clock", "tock").await.len();
    wait_runs(&s, "clock", "tock", n + 2).await;
    s.stop().await;
}

/// Moves every stored next fire time of the server's database to `at` (the server is down);
/// there are `rows` of them.
async fn move_next_fires(s: &TestServer, at: chrono::DateTime<Utc>, rows: u64) {
    let store = match s.backend.database_url() {
        Some(url) => Store::connect_postgres(&url).await.unwrap(),
        None => Store::open(s.data.join("kiln.db")).await.unwrap(),
    };
    let sql = "UPDATE schedules SET next_fire_at = $1";
    let moved = match store.db() {
        Db::Sqlite(p) => sqlx::query(sql).bind(at).execute(p).await.map(|r| r.rows_affected()),
        Db::Postgres(p) => sqlx::query(sql).bind(at).execute(p).await.map(|r| r.rows_affected()),
    };
    assert_eq!(moved.unwrap(), rows);
    store.close().await;
}

const YEARLY: &str = r#"name: NAME
on:
  schedule: { cron: "0 0 1 1 *", timezone: Asia/Shanghai, missed: POLICY }
stages:
  - name: s
    jobs: { a: { script: "echo new year" } }
"#;

pub async fn missed_fires_are_skipped_or_run_once_on(backend: Backend) {
    let mut s = TestServer::start_on(backend).await;
    s.apply("cal", "skipper", &YEARLY.replace("NAME", "skipper").replace("POLICY", "skip")).await;
    s.apply("cal", "catchup", &YEARLY.replace("NAME", "catchup").replace("POLICY", "run-once"))
        .await;
    let planned = schedules(&s, "cal").await;
    let next = &planned[0].schedule.as_ref().unwrap().next;
    assert!(next[0].local.ends_with("-01-01T00:00:00+08:00"), "{next:?}");

    // Down over a fire time: two hours ago, long past on time.
    s.stop_server().await;
    move_next_fires(&s, Utc::now() - TimeDelta::hours(2), 2).await;
    s.start_again().await;

    let list = wait_runs(&s, "cal", "catchup", 1).await;
    assert_eq!(list[0].triggered_by, r#"schedule "0 0 1 1 *" (Asia/Shanghai)"#);
    // Both schedules handled: their next fire is the coming new year again, and the one run
    // is recorded as catchup's last.
    let started = Instant::now();
    let handled = loop {
        let all = schedules(&s, "cal").await;
        let info = |t: &TriggerInfo| t.schedule.clone().unwrap();
        if all.iter().all(|t| info(t).next[0].at > Utc::now())
            && all.iter().any(|t| info(t).last_run.is_some())
        {
            break all;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not handled: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(runs(&s, "cal", "catchup").await.len(), 1, "run-once starts exactly one run");
    assert!(runs(&s, "cal", "skipper").await.is_empty(), "skip starts nothing");
    let by_name =
        |n: &str| handled.iter().find(|t| t.pipeline == n).unwrap().schedule.clone().unwrap();
    assert_eq!(by_name("skipper").last_fired_at, None);
    assert_eq!(by_name("catchup").last_run.as_deref(), Some("cal/catchup#1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_fires_are_skipped_or_run_once() {
    missed_fires_are_skipped_or_run_once_on(Backend::Sqlite).await;
}

pub async fn a_crash_after_a_fire_is_claimed_loses_and_doubles_nothing_on(backend: Backend) {
    let mut s = TestServer::start_on(backend).await;
    s.apply("cal", "yearly", &YEARLY.replace("NAME", "yearly").replace("POLICY", "run-once")).await;
    // Due now; the server dies right after claiming the fire (before creating its run).
    s.stop_server().await;
    move_next_fires(&s, Utc::now() - TimeDelta::seconds(1), 1).await;
    s.start_again_with(|c| c.crash_after_claim = true).await;
    let started = Instant::now();
    loop {
        let info = schedules(&s, "cal").await[0].schedule.clone().unwrap();
        if info.last_fired_at.is_some() && info.next[0].at > Utc::now() {
            assert_eq!(info.last_run, None, "{info:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never claimed: {info:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(runs(&s, "cal", "yearly").await.is_empty(), "the crash came before the run");

    // Started again: exactly one run of that fire, recorded as the schedule's last run.
    s.restart().await;
    let list = runs(&s, "cal", "yearly").await;
    assert_eq!(list.len(), 1, "one run of the claimed fire: {list:#?}");
    assert_eq!(list[0].triggered_by, r#"schedule "0 0 1 1 *" (Asia/Shanghai)"#);
    let info = schedules(&s, "cal").await[0].schedule.clone().unwrap();
    assert_eq!(info.last_run.as_deref(), Some("cal/yearly#1"));
    assert!(info.next[0].at > Utc::now(), "the fire is not due again");

    // And again: the fire has its run, nothing is added.
    s.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(&s, "cal", "yearly").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_a_fire_is_claimed_loses_and_doubles_nothing() {
    a_crash_after_a_fire_is_claimed_loses_and_doubles_nothing_on(Backend::Sqlite).await;
}
