//! Engine steps written in one transaction, retries, and the queries a scheduler and metrics
//! need (pending queue, active count, counts by state, lookup by number).

use std::collections::BTreeMap;

use kiln_engine::{Event, JobState, Outcome, RunState};
use kiln_store::{
    DeliveryPayload, JobRecord, NewRun, PipelineId, RunEventKind, RunId, Step, Store, StoreError,
};
use kiln_workflow::plan::JobId;

use crate::{events, new_run, on_both, pipeline};

fn job(id: &str, state: JobState) -> JobRecord {
    JobRecord {
        job: JobId::from(id),
        state,
        attempts: 1,
        exit_code: None,
        outputs: BTreeMap::new(),
        reason: None,
        started_at: None,
        finished_at: None,
    }
}

/// The three events of one job attempt: started, an output, exited.
fn attempt(job: &str, n: u32) -> Vec<Event> {
    let job = JobId::from(job);
    vec![
        Event::JobStarted { job: job.clone(), attempt: n },
        Event::JobOutput {
            job: job.clone(),
            attempt: n,
            key: "digest".to_string(),
            value: format!("sha256:{n}"),
        },
        Event::JobExited { job, attempt: n, outcome: Outcome::Exited(0) },
    ]
}

/// The job an event of [`attempt`] is about.
fn job_of(event: &Event) -> Option<&JobId> {
    match event {
        Event::JobStarted { job, .. }
        | Event::JobOutput { job, .. }
        | Event::JobExited { job, .. } => Some(job),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_step_writes_events_state_and_jobs_together() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(store.append_event(&run.id, &events()[0]).await.unwrap(), 1);

        let step = Step {
            events: attempt("build", 1),
            state: Some((RunState::Running, None)),
            jobs: vec![job("build", JobState::Running), job("test", JobState::Pending)],
            ..Step::default()
        };
        assert_eq!(store.record_step(&run.id, &step).await.unwrap(), [2, 3, 4]);
        let running = store.run(&run.id).await.unwrap();
        assert_eq!(running.state, RunState::Running);
        let started = running.started_at.expect("started_at");
        assert_eq!(running.finished_at, None);
        let jobs = store.jobs(&run.id).await.unwrap();
        assert_eq!(
            jobs.iter().map(|j| (j.job.as_str(), j.state)).collect::<Vec<_>>(),
            [("build", JobState::Running), ("test", JobState::Pending)]
        );

        // Events only, then a state with a reason and no events.
        let only_events = Step { events: vec![events()[3].clone()], ..Step::default() };
        assert_eq!(store.record_step(&run.id, &only_events).await.unwrap(), [5]);
        let pause = Step {
            state: Some((RunState::Paused, Some("waiting for `prod`".to_string()))),
            ..Step::default()
        };
        assert!(store.record_step(&run.id, &pause).await.unwrap().is_empty());
        let paused = store.run(&run.id).await.unwrap();
        assert_eq!(
            (paused.state, paused.reason.as_deref()),
            (RunState::Paused, Some("waiting for `prod`"))
        );
        assert_eq!(paused.started_at, Some(started), "started_at is set once");

        let finish = Step {
            events: attempt("test", 1),
            state: Some((RunState::Success, None)),
            jobs: vec![job("build", JobState::Success), job("test", JobState::Success)],
            ..Step::default()
        };
        assert_eq!(store.record_step(&run.id, &finish).await.unwrap(), [6, 7, 8]);
        let done = store.run(&run.id).await.unwrap();
        assert_eq!(done.state, RunState::Success);
        assert!(done.finished_at.is_some());
        assert_eq!(done.reason.as_deref(), Some("waiting for `prod`"));
        assert!(store.jobs(&run.id).await.unwrap().iter().all(|j| j.state == JobState::Success));

        let stored = store.events(&run.id).await.unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<u64>>());
        let mut expected = vec![events()[0].clone()];
        expected.extend(attempt("build", 1));
        expected.push(events()[3].clone());
        expected.extend(attempt("test", 1));
        assert_eq!(stored.into_iter().map(|e| e.event).collect::<Vec<_>>(), expected);

        // An empty step changes nothing; a step after the end without a state still logs
        // events (like append_event).
        assert!(store.record_step(&run.id, &Step::default()).await.unwrap().is_empty());
        let late = Step { events: vec![events()[4].clone()], ..Step::default() };
        assert_eq!(store.record_step(&run.id, &late).await.unwrap(), [9]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_step_stores_nothing() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        let start = Step {
            events: attempt("build", 1),
            state: Some((RunState::Running, None)),
            jobs: vec![job("build", JobState::Success)],
            ..Step::default()
        };
        store.record_step(&run.id, &start).await.unwrap();
        store.set_run_state(&run.id, RunState::Canceled, Some("canceled by bob")).await.unwrap();
        let before = (
            store.run(&run.id).await.unwrap(),
            store.events(&run.id).await.unwrap(),
            store.jobs(&run.id).await.unwrap(),
        );

        // The run has ended: the state change conflicts after the events were inserted, and
        // the whole step rolls back.
        let late = Step {
            events: attempt("test", 1),
            state: Some((RunState::Success, Some("all good".to_string()))),
            jobs: vec![job("build", JobState::Failure), job("test", JobState::Success)],
            ..Step::default()
        };
        let err = store.record_step(&run.id, &late).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("already ended as canceled"), "{err}");
        let after = (
            store.run(&run.id).await.unwrap(),
            store.events(&run.id).await.unwrap(),
            store.jobs(&run.id).await.unwrap(),
        );
        assert_eq!(after, before, "no event, state or job of the failed step was stored");

        // The sequence counter rolled back too: the next event gets the next number.
        assert_eq!(store.append_event(&run.id, &events()[4]).await.unwrap(), 4);

        // A bad job record is refused before anything is written.
        let bad = Step {
            events: attempt("test", 2),
            state: None,
            jobs: vec![job("", JobState::Running)],
            ..Step::default()
        };
        let err = store.record_step(&run.id, &bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.events(&run.id).await.unwrap().len(), 4);

        let ghost = RunId::new();
        for step in [
            late,
            Step::default(),
            Step { jobs: vec![job("x", JobState::Running)], ..Step::default() },
        ] {
            let err = store.record_step(&ghost, &step).await.unwrap_err();
            assert_eq!(err.to_string(), format!("run {ghost} not found"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_steps_in_a_row() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        store.set_run_state(&run.id, RunState::Running, None).await.unwrap();
        for n in 0..1000u32 {
            let step = Step {
                events: attempt("build", n + 1),
                state: None,
                jobs: vec![JobRecord { attempts: n + 1, ..job("build", JobState::Running) }],
                ..Step::default()
            };
            let seqs = store.record_step(&run.id, &step).await.unwrap();
            let first = u64::from(n) * 3 + 1;
            assert_eq!(seqs, [first, first + 1, first + 2]);
        }
        let stored = store.events(&run.id).await.unwrap();
        assert_eq!(stored.len(), 3000);
        assert!(stored.iter().zip(1..).all(|(e, seq)| e.seq == seq));
        assert_eq!(store.jobs(&run.id).await.unwrap()[0].attempts, 1000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_steps_keep_their_numbers() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let a = store.create_run(&new_run(&build)).await.unwrap();
        let b = store.create_run(&new_run(&build)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let store = store.clone();
            let run = if i % 2 == 0 { a.id } else { b.id };
            let step = Step {
                events: attempt(&format!("job-{i}"), 1),
                state: Some((RunState::Running, None)),
                jobs: vec![job(&format!("job-{i}"), JobState::Running)],
                ..Step::default()
            };
            tasks.push(tokio::spawn(async move { store.record_step(&run, &step).await }));
        }
        for task in tasks {
            let seqs = task.await.unwrap().unwrap();
            assert!(seqs[0] % 3 == 1 && seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2], "{seqs:?}");
        }
        for run in [a.id, b.id] {
            let stored = store.events(&run).await.unwrap();
            assert_eq!(
                stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (1..=30).collect::<Vec<u64>>()
            );
            // Each step's three events are contiguous.
            for chunk in stored.chunks(3) {
                let jobs: Vec<_> = chunk.iter().map(|e| job_of(&e.event)).collect();
                assert!(jobs[0].is_some() && jobs.windows(2).all(|w| w[0] == w[1]), "{jobs:?}");
            }
            assert_eq!(store.jobs(&run).await.unwrap().len(), 10);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_name_their_original() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let deploy = pipeline(&store, "api", "deploy").await;
        let first = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(first.retry_of, None);
        let retry = store
            .create_run(&NewRun { retry_of: Some(first.id), ..new_run(&build) })
            .await
            .unwrap();
        assert_eq!((retry.number, retry.retry_of), (2, Some(first.id)));
        assert_eq!(store.run(&retry.id).await.unwrap(), retry);

        let ghost = RunId::new();
        let err = store
            .create_run(&NewRun { retry_of: Some(ghost), ..new_run(&build) })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store
            .create_run(&NewRun { retry_of: Some(first.id), ..new_run(&deploy) })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        // Neither failure used up a number.
        assert_eq!(store.create_run(&new_run(&build)).await.unwrap().number, 3);
        assert_eq!(store.create_run(&new_run(&deploy)).await.unwrap().number, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_counts_and_lookup_by_number() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let deploy = pipeline(&store, "api", "deploy").await;
        let zero: Vec<(RunState, u64)> = [
            RunState::Pending,
            RunState::Scheduling,
            RunState::Running,
            RunState::Paused,
            RunState::Success,
            RunState::Failure,
            RunState::Canceled,
            RunState::Timeout,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        assert_eq!(store.run_state_counts().await.unwrap(), zero);
        assert!(store.pending_runs(&build.id).await.unwrap().is_empty());
        assert_eq!(store.active_run_count(&build.id).await.unwrap(), 0);

        let mut runs = Vec::new();
        for _ in 0..6 {
            runs.push(store.create_run(&new_run(&build)).await.unwrap());
        }
        let other = store.create_run(&new_run(&deploy)).await.unwrap();
        store.set_run_state(&runs[0].id, RunState::Running, None).await.unwrap();
        store.set_run_state(&runs[1].id, RunState::Paused, None).await.unwrap();
        store.set_run_state(&runs[3].id, RunState::Failure, None).await.unwrap();
        store.set_run_state(&runs[5].id, RunState::Scheduling, None).await.unwrap();

        let pending = store.pending_runs(&build.id).await.unwrap();
        assert_eq!(pending.iter().map(|r| r.number).collect::<Vec<_>>(), [3, 5], "FIFO by number");
        assert_eq!(store.pending_runs(&deploy.id).await.unwrap(), std::slice::from_ref(&other));
        assert_eq!(store.active_run_count(&build.id).await.unwrap(), 3);
        assert_eq!(store.active_run_count(&deploy.id).await.unwrap(), 0);

        let counts = store.run_state_counts().await.unwrap();
        let expected: Vec<(RunState, u64)> = zero
            .iter()
            .map(|&(s, _)| {
                let n = match s {
                    RunState::Pending => 3,
                    RunState::Scheduling
                    | RunState::Running
                    | RunState::Paused
                    | RunState::Failure => 1,
                    _ => 0,
                };
                (s, n)
            })
            .collect();
        assert_eq!(counts, expected);

        let third = store.run_by_number("api", "build", 3).await.unwrap();
        assert_eq!(third, runs[2]);
        assert_eq!(store.run_by_number("api", "deploy", 1).await.unwrap(), other);
        for (project, name, number) in [
            ("api", "build", 7),
            ("api", "nope", 1),
            ("nope", "build", 1),
            ("api", "build", u64::MAX),
        ] {
            let err = store.run_by_number(project, name, number).await.unwrap_err();
            assert_eq!(err.to_string(), format!("run `{project}/{name}#{number}` not found"));
        }

        let ghost = PipelineId::new();
        let err = store.pending_runs(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store.active_run_count(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    })
    .await;
}

/// Applies only `0001_init.sql` of `flavour` (as an older Kiln did), through sqlx's migrator so
/// that the newer migrations apply on top.
async fn migrator_0001(flavour: &str) -> (tempfile::TempDir, sqlx::migrate::Migrator) {
    let dir = tempfile::TempDir::new().unwrap();
    let from = format!("{}/migrations/{flavour}/0001_init.sql", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(from, dir.path().join("0001_init.sql")).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

/// Rows as Kiln wrote them at 0001: a project, a pipeline and a finished run with an event and
/// a job. Plain literals, valid on both databases.
const ROWS_0001: &str = "
INSERT INTO projects (id, name, created_at)
    VALUES ('01900000-0000-7000-8000-000000000001', 'api', '2026-01-02T03:04:05+00:00');
INSERT INTO pipelines (id, project_id, name, yaml, version, last_run_number, created_at, updated_at)
    VALUES ('01900000-0000-7000-8000-000000000002', '01900000-0000-7000-8000-000000000001',
            'build', 'version: 1', 1, 1, '2026-01-02T03:04:05+00:00', '2026-01-02T03:04:05+00:00');
INSERT INTO runs (id, pipeline_id, number, pipeline_version, yaml, state, params, triggered_by,
                  last_event_seq, created_at, started_at, finished_at)
    VALUES ('01900000-0000-7000-8000-000000000003', '01900000-0000-7000-8000-000000000002',
            1, 1, 'version: 1', 'failure', '{}', 'user:alice', 1, '2026-01-02T03:04:05+00:00',
            '2026-01-02T03:04:06+00:00', '2026-01-02T03:04:07+00:00');
INSERT INTO run_events (run_id, seq, event, at)
    VALUES ('01900000-0000-7000-8000-000000000003', 1,
            '{\"Cancel\":{\"by\":\"bob\"}}', '2026-01-02T03:04:06+00:00');
";

async fn check_upgrade(store: Store) {
    let old = store.run_by_number("api", "build", 1).await.unwrap();
    assert_eq!((old.state, old.retry_of), (RunState::Failure, None));
    assert_eq!(old.created_at.to_rfc3339(), "2026-01-02T03:04:05+00:00");
    assert_eq!(
        store.events(&old.id).await.unwrap()[0].event,
        Event::Cancel { by: "bob".to_string() }
    );
    // The new tables and column work on the upgraded database.
    let build = store.pipeline("api", "build").await.unwrap();
    let retry =
        store.create_run(&NewRun { retry_of: Some(old.id), ..new_run(&build) }).await.unwrap();
    assert_eq!((retry.number, retry.retry_of), (2, Some(old.id)));
    assert_eq!(
        store
            .record_step(&retry.id, &Step { events: attempt("build", 1), ..Step::default() })
            .await
            .unwrap(),
        [1, 2, 3]
    );
    let sealed =
        kiln_store::SealedSecret { key_id: "k".to_string(), nonce: vec![1], ciphertext: vec![2] };
    store.set_secret("api", "TOKEN", &sealed).await.unwrap();
    store.put_cache(&build.project_id, "deps", "c/1.tar", 1).await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_0001_database_is_upgraded_in_place() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("old.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let old = sqlx::SqlitePool::connect_with(options).await.unwrap();
    migrator_0001("sqlite").await.1.run(&old).await.unwrap();
    sqlx::raw_sql(ROWS_0001).execute(&old).await.unwrap();
    old.close().await;
    check_upgrade(Store::open(&path).await.unwrap()).await;

    if let Ok(server) = std::env::var("KILN_STORE_TEST_POSTGRES") {
        let name = format!("kiln_test_{}", RunId::new().0.simple());
        let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = format!("{server}/{name}");
        let old = sqlx::PgPool::connect(&url).await.unwrap();
        migrator_0001("postgres").await.1.run(&old).await.unwrap();
        sqlx::raw_sql(ROWS_0001).execute(&old).await.unwrap();
        old.close().await;
        check_upgrade(Store::connect_postgres(&url).await.unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_that_starts_or_ends_a_run_queues_its_run_webhooks_in_the_same_transaction() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let project = store.project("api").await.unwrap().id;
        let runs = store
            .add_webhook(&project, "http://127.0.0.1:9/runs", &["run".into()], Some("s3cret"))
            .await
            .unwrap();
        store.registry_add_webhook(&project, "http://127.0.0.1:9/pushes").await.unwrap();
        let run = store.create_run(&new_run(&build)).await.unwrap();
        let start = Step { state: Some((RunState::Running, None)), ..Step::default() };
        let recorded = store.record_step_notified(&run.id, &start).await.unwrap();
        let kinds: Vec<_> = recorded.notices.iter().map(|n| n.event).collect();
        assert_eq!(kinds, [RunEventKind::Started]);
        // A step that changes no run state is no event.
        let quiet = Step { jobs: vec![job("build", JobState::Running)], ..Step::default() };
        assert!(store.record_step_notified(&run.id, &quiet).await.unwrap().notices.is_empty());
        let end = Step {
            state: Some((RunState::Failure, Some("job `build` failed".into()))),
            ..Step::default()
        };
        let recorded = store.record_step_notified(&run.id, &end).await.unwrap();
        let failed = &recorded.notices[0];
        assert_eq!(failed.event, RunEventKind::Failed);
        assert_eq!(failed.run.reason.as_deref(), Some("job `build` failed"));
        let due = store.registry_due_deliveries(chrono::Utc::now(), 10).await.unwrap();
        assert_eq!(due.len(), 2, "one delivery per event, to the run webhook only: {due:?}");
        for d in &due {
            assert_eq!((d.url.as_str(), d.secret.as_deref()), (runs.url.as_str(), Some("s3cret")));
        }
        let sent: Vec<_> = due
            .iter()
            .map(|d| match &d.payload {
                DeliveryPayload::Run(n) => n.event,
                other => panic!("not a run event: {other:?}"),
            })
            .collect();
        assert_eq!(sent, [RunEventKind::Started, RunEventKind::Failed]);
        // A step refused (the run has ended) queues nothing.
        let late = Step { state: Some((RunState::Success, None)), ..Step::default() };
        store.record_step_notified(&run.id, &late).await.unwrap_err();
        assert_eq!(store.registry_due_deliveries(chrono::Utc::now(), 10).await.unwrap().len(), 2);
    })
    .await;
}
