//! Integration tests of the store against real databases: every test runs on a private
//! in-memory SQLite database and on a SQLite file (with several connections, so concurrency is
//! real), and also on a fresh PostgreSQL database when `KILN_STORE_TEST_POSTGRES` holds a
//! server URL without a database name (`postgres://postgres@127.0.0.1:55432`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use kiln_engine::{Event, JobState, Outcome, RunState};
use kiln_store::{
    ApprovalDecision, JobRecord, NewRun, NewToken, Pipeline, Role, RunFilter, RunId, Store,
    StoreError, TokenId,
};
use kiln_workflow::plan::JobId;
use tempfile::TempDir;

mod artifacts;
mod caches;
mod config;
mod deployments;
mod environments;
mod faults;
mod intents;
mod links;
mod metric_rules;
mod node_groups;
mod nodes;
mod quotas;
mod scans;
mod schedules;
mod secrets;
mod services;
mod steps;
mod usage;
mod webhooks;

const YAML_V1: &str = "version: 1\njobs:\n  build:\n    image: busybox\n    run: echo one\n";
const YAML_V2: &str = "version: 1\njobs:\n  build:\n    image: busybox\n    run: echo two\n";

/// Runs `check` on an in-memory store and on a fresh file store.
async fn on_both<F, Fut>(check: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    check(Store::memory().await.expect("memory store")).await;
    let dir = TempDir::new().expect("temp dir");
    let store = Store::open(dir.path().join("kiln.db")).await.expect("file store");
    check(store.clone()).await;
    store.close().await;
    if let Ok(server) = std::env::var("KILN_STORE_TEST_POSTGRES") {
        let name = format!("kiln_test_{}", RunId::new().0.simple());
        let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
            .await
            .expect("PostgreSQL admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let store =
            Store::connect_postgres(&format!("{server}/{name}")).await.expect("PostgreSQL store");
        check(store.clone()).await;
        store.close().await;
    }
}

async fn pipeline(store: &Store, project: &str, name: &str) -> Pipeline {
    if store.project(project).await.is_err() {
        store.create_project(project).await.expect("project");
    }
    store.upsert_pipeline(project, name, &src(YAML_V1)).await.expect("pipeline").0
}

fn new_run(p: &Pipeline) -> NewRun {
    NewRun {
        pipeline: p.id,
        params: serde_json::json!({ "env": "staging", "n": 3 }),
        triggered_by: "user:alice".to_string(),
        retry_of: None,
        source: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projects() {
    on_both(|store| async move {
        let api = store.create_project("api").await.unwrap();
        store.create_project("web").await.unwrap();
        assert_eq!(store.project("api").await.unwrap(), api);
        let names: Vec<_> = store.projects().await.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["api", "web"]);

        let dup = store.create_project("api").await.unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
        assert_eq!(dup.to_string(), "project `api` already exists");
        for bad in ["", "a/b", "-x", "has space", &"x".repeat(65)] {
            let err = store.create_project(bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{bad}: {err}");
        }
        let missing = store.project("nope").await.unwrap_err();
        assert_eq!(missing.to_string(), "project `nope` not found");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_versions() {
    on_both(|store| async move {
        store.create_project("api").await.unwrap();
        let (v1, changed) = store.upsert_pipeline("api", "build", &src(YAML_V1)).await.unwrap();
        assert!(changed);
        assert_eq!((v1.version, v1.yaml.as_str()), (1, YAML_V1));
        assert_eq!(v1.full_name(), "api/build");

        let (same, changed) = store.upsert_pipeline("api", "build", &src(YAML_V1)).await.unwrap();
        assert!(!changed, "unchanged YAML must not bump the version");
        assert_eq!(same, v1);

        let (v2, changed) = store.upsert_pipeline("api", "build", &src(YAML_V2)).await.unwrap();
        assert!(changed);
        assert_eq!((v2.id, v2.version), (v1.id, 2));
        assert!(v2.updated_at >= v1.updated_at);
        assert_eq!(v2.created_at, v1.created_at);

        let (back, changed) = store.upsert_pipeline("api", "build", &src(YAML_V1)).await.unwrap();
        assert!(changed);
        assert_eq!(back.version, 3, "going back to old YAML is a change too");

        store.upsert_pipeline("api", "deploy", &src(YAML_V1)).await.unwrap();
        assert_eq!(store.pipeline("api", "build").await.unwrap(), back);
        assert_eq!(store.pipeline_by_id(&v1.id).await.unwrap(), back);
        let names: Vec<_> =
            store.pipelines("api").await.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["build", "deploy"]);

        store.create_project("empty").await.unwrap();
        assert!(store.pipelines("empty").await.unwrap().is_empty());
        let err = store.pipelines("nope").await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.pipeline("api", "nope").await.unwrap_err();
        assert_eq!(err.to_string(), "pipeline `api/nope` not found");
        let err = store.upsert_pipeline("nope", "build", &src(YAML_V1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store.upsert_pipeline("api", "a b", &src(YAML_V1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_keep_the_source_they_were_created_with_including_templates() {
    on_both(|store| async move {
        store.create_project("api").await.unwrap();
        let mut source = src(YAML_V1);
        source.file = "ci/api.yml".into();
        source.files.insert("ci/../templates/t.yml".into(), "name: t\n".into());
        let (p, _) = store.upsert_pipeline("api", "build", &source).await.unwrap();
        assert_eq!((p.file.as_str(), p.files.len()), ("ci/api.yml", 1));
        // Only a template change is a change too.
        let mut changed = source.clone();
        changed.files.insert("ci/../templates/t.yml".into(), "name: t2\n".into());
        let (p2, bumped) = store.upsert_pipeline("api", "build", &changed).await.unwrap();
        assert!(bumped);
        assert_eq!(p2.version, 2);
        let run = store.create_run(&new_run(&p2)).await.unwrap();
        store.upsert_pipeline("api", "build", &source).await.unwrap();
        assert_eq!(store.run_source(&run.id).await.unwrap(), changed, "the run keeps its own copy");
        let missing = store.run_source(&kiln_store::RunId::new()).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_lifecycle() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let deploy = pipeline(&store, "api", "deploy").await;

        let first = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(first.number, 1);
        assert_eq!(first.state, RunState::Pending);
        assert_eq!(first.full_name(), "api/build#1");
        assert_eq!(first.params, serde_json::json!({ "env": "staging", "n": 3 }));
        assert_eq!(first.pipeline_version, 1);
        assert_eq!((first.started_at, first.finished_at), (None, None));
        assert_eq!(store.run(&first.id).await.unwrap(), first);

        // The run keeps the YAML it was created with.
        store.upsert_pipeline("api", "build", &src(YAML_V2)).await.unwrap();
        assert_eq!(store.run_yaml(&first.id).await.unwrap(), YAML_V1);
        let second = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!((second.number, second.pipeline_version), (2, 2));
        assert_eq!(store.run_yaml(&second.id).await.unwrap(), YAML_V2);
        let other = store.create_run(&new_run(&deploy)).await.unwrap();
        assert_eq!(other.number, 1, "numbers are per pipeline");

        let running = store.set_run_state(&first.id, RunState::Running, None).await.unwrap();
        assert_eq!(running.state, RunState::Running);
        let started = running.started_at.expect("started_at");
        let paused = store
            .set_run_state(&first.id, RunState::Paused, Some("waiting for `prod`"))
            .await
            .unwrap();
        assert_eq!(paused.started_at, Some(started), "started_at is set once");
        assert_eq!(paused.reason.as_deref(), Some("waiting for `prod`"));
        let done = store.set_run_state(&first.id, RunState::Success, None).await.unwrap();
        assert!(done.finished_at.is_some());
        assert_eq!(done.reason.as_deref(), Some("waiting for `prod`"));
        let err = store.set_run_state(&first.id, RunState::Running, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("already ended as success"), "{err}");

        // Newest first, filters, limit.
        let all = store.runs(&RunFilter::default()).await.unwrap();
        let ids: Vec<_> = all.iter().map(|r| r.id).collect();
        assert_eq!(ids, [other.id, second.id, first.id]);
        let of_build = store
            .runs(&RunFilter { pipeline: Some(build.id), ..RunFilter::default() })
            .await
            .unwrap();
        assert_eq!(of_build.iter().map(|r| r.number).collect::<Vec<_>>(), [2, 1]);
        let succeeded = store
            .runs(&RunFilter { state: Some(RunState::Success), ..RunFilter::default() })
            .await
            .unwrap();
        assert_eq!(succeeded.iter().map(|r| r.id).collect::<Vec<_>>(), [first.id]);
        let limited =
            store.runs(&RunFilter { limit: Some(1), ..RunFilter::default() }).await.unwrap();
        assert_eq!(limited.iter().map(|r| r.id).collect::<Vec<_>>(), [other.id]);
        // Pages: the runs after a run of the list, then after the last of that page.
        let page = |before, limit| RunFilter {
            before: Some(before),
            limit: Some(limit),
            ..RunFilter::default()
        };
        let next = store.runs(&page(other.id, 1)).await.unwrap();
        assert_eq!(next.iter().map(|r| r.id).collect::<Vec<_>>(), [second.id]);
        let next = store.runs(&page(second.id, 5)).await.unwrap();
        assert_eq!(next.iter().map(|r| r.id).collect::<Vec<_>>(), [first.id]);
        assert!(store.runs(&page(first.id, 5)).await.unwrap().is_empty(), "the last page");
        let web = store
            .runs(&RunFilter { project: Some(first.project.clone()), ..RunFilter::default() })
            .await
            .unwrap();
        assert_eq!(web.len(), 3, "{web:?}");
        let none = RunFilter { project: Some("nope".into()), ..RunFilter::default() };
        assert!(store.runs(&none).await.unwrap().is_empty());

        // Recovery: everything not final, oldest first.
        let unfinished = store.unfinished_runs().await.unwrap();
        assert_eq!(unfinished.iter().map(|r| r.id).collect::<Vec<_>>(), [second.id, other.id]);

        let ghost = RunId::new();
        let err = store.run(&ghost).await.unwrap_err();
        assert_eq!(err.to_string(), format!("run {ghost} not found"));
        let err = store.set_run_state(&ghost, RunState::Running, None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let mut orphan = new_run(&build);
        orphan.pipeline = kiln_store::PipelineId::new();
        let err = store.create_run(&orphan).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        orphan.pipeline = build.id;
        orphan.triggered_by = " ".to_string();
        let err = store.create_run(&orphan).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn run_numbers_have_no_gaps_under_concurrency() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            let new = new_run(&build);
            tasks.push(tokio::spawn(async move { store.create_run(&new).await }));
        }
        let mut numbers = BTreeSet::new();
        for task in tasks {
            let run = task.await.unwrap().unwrap();
            assert!(numbers.insert(run.number), "number {} twice", run.number);
        }
        assert_eq!(numbers, (1..=20).collect::<BTreeSet<u64>>());
        let next = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(next.number, 21);
    })
    .await;
}

fn events() -> Vec<Event> {
    let build = JobId::from("build");
    vec![
        Event::JobStarted { job: build.clone(), attempt: 1 },
        Event::JobOutput {
            job: build.clone(),
            attempt: 1,
            key: "version".to_string(),
            value: "1.2.3".to_string(),
        },
        Event::JobExited { job: build, attempt: 1, outcome: Outcome::Exited(0) },
        Event::Approved { stage: "prod".to_string(), by: "alice".to_string() },
        Event::Cancel { by: "bob".to_string() },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_log_round_trips_in_order() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        assert!(store.events(&run.id).await.unwrap().is_empty());
        for (i, event) in events().iter().enumerate() {
            let seq = store.append_event(&run.id, event).await.unwrap();
            assert_eq!(seq, i as u64 + 1);
        }
        let stored = store.events(&run.id).await.unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(stored.into_iter().map(|e| e.event).collect::<Vec<_>>(), events());

        let ghost = RunId::new();
        let err = store.append_event(&ghost, &events()[0]).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store.events(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn event_seq_strictly_increases_under_concurrency() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let a = store.create_run(&new_run(&build)).await.unwrap();
        let b = store.create_run(&new_run(&build)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let store = store.clone();
            let run = if i % 2 == 0 { a.id } else { b.id };
            let event = Event::JobStarted { job: JobId(format!("job-{i}")), attempt: i };
            tasks.push(tokio::spawn(async move { store.append_event(&run, &event).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        for run in [a.id, b.id] {
            let stored = store.events(&run).await.unwrap();
            let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=20).collect::<Vec<u64>>(), "run {run}");
            assert!(stored.windows(2).all(|w| w[0].at <= w[1].at));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_upsert_and_list() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        assert!(store.jobs(&run.id).await.unwrap().is_empty());
        let mut test = JobRecord {
            job: JobId::from("test"),
            state: JobState::Running,
            attempts: 1,
            exit_code: None,
            outputs: BTreeMap::new(),
            reason: None,
            started_at: Some(chrono::Utc::now()),
            finished_at: None,
        };
        let lint = JobRecord {
            job: JobId::from("lint"),
            state: JobState::Pending,
            attempts: 0,
            ..test.clone()
        };
        store.upsert_jobs(&run.id, &[test.clone(), lint.clone()]).await.unwrap();
        test.state = JobState::Failure;
        test.attempts = 2;
        test.exit_code = Some(-1);
        test.outputs.insert("report".to_string(), "r.xml".to_string());
        test.reason = Some("exited with 255".to_string());
        test.finished_at = Some(chrono::Utc::now());
        store.upsert_job(&run.id, &test).await.unwrap();

        let jobs = store.jobs(&run.id).await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].job, lint.job);
        assert_eq!(jobs[0].state, JobState::Pending);
        let got = &jobs[1];
        assert_eq!(
            (&got.job, got.state, got.attempts, got.exit_code),
            (&test.job, JobState::Failure, 2, Some(-1))
        );
        assert_eq!(got.outputs, test.outputs);
        assert_eq!(got.reason, test.reason);
        // Times round-trip to the microsecond.
        let micros = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_micros());
        assert_eq!(micros(got.finished_at), micros(test.finished_at));

        let ghost = RunId::new();
        let err = store.upsert_job(&ghost, &test).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store.jobs(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        test.job = JobId::from("");
        let err = store.upsert_job(&run.id, &test).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_are_decided_once() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        assert!(store.approvals(&run.id).await.unwrap().is_empty());
        let staging = store
            .record_approval(&run.id, "staging", ApprovalDecision::Approved, "alice")
            .await
            .unwrap();
        assert_eq!((staging.run, staging.by.as_str()), (run.id, "alice"));
        let prod = store
            .record_approval(&run.id, "prod", ApprovalDecision::Rejected, "bob")
            .await
            .unwrap();
        let err = store
            .record_approval(&run.id, "prod", ApprovalDecision::Approved, "carol")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.approvals(&run.id).await.unwrap().len(), 2);
        assert!(store.approvals(&run.id).await.unwrap().contains(&prod));

        let ghost = RunId::new();
        let err = store
            .record_approval(&ghost, "prod", ApprovalDecision::Approved, "alice")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store
            .record_approval(&run.id, "", ApprovalDecision::Approved, "alice")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_verify_only_live_secrets() {
    on_both(|store| async move {
        let api = store.create_project("api").await.unwrap();
        let (admin, secret) = store
            .create_token(&NewToken { name: "ops".to_string(), role: Role::Admin, project: None })
            .await
            .unwrap();
        let secret = secret.expose().to_string();
        assert!(secret.starts_with("kiln_"));
        assert_eq!(secret.len(), 5 + 64);
        assert!(admin.last_used_at.is_none());

        let stored = store.token_hash(&admin.id).await.unwrap();
        assert_ne!(stored, secret);
        assert!(!stored.contains(&secret[5..]), "the hash must not embed the secret");
        assert_eq!(stored.len(), 64);

        let verified = store.verify_token(&secret).await.unwrap().expect("verifies");
        assert_eq!((verified.id, verified.role), (admin.id, Role::Admin));
        assert!(verified.last_used_at.is_some());

        let mut wrong = secret.clone();
        wrong.replace_range(10..11, if &secret[10..11] == "0" { "1" } else { "0" });
        for bad in [wrong.as_str(), "", "kiln_", "nope", &secret[..secret.len() - 1]] {
            assert!(store.verify_token(bad).await.unwrap().is_none(), "{bad:?}");
        }

        let (scoped, scoped_secret) = store
            .create_token(&NewToken {
                name: "ci".to_string(),
                role: Role::Developer,
                project: Some(api.id),
            })
            .await
            .unwrap();
        assert_ne!(scoped_secret.expose(), secret);
        assert_eq!(scoped.project, Some(api.id));
        assert!(!format!("{scoped_secret:?}").contains(&scoped_secret.expose()[5..]));

        let revoked = store.revoke_token(&admin.id).await.unwrap();
        let when = revoked.revoked_at.expect("revoked_at");
        assert!(store.verify_token(&secret).await.unwrap().is_none());
        let again = store.revoke_token(&admin.id).await.unwrap();
        assert_eq!(again.revoked_at, Some(when));
        assert!(store.verify_token(scoped_secret.expose()).await.unwrap().is_some());

        let listed = store.tokens().await.unwrap();
        assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), [admin.id, scoped.id]);

        let err = store.revoke_token(&TokenId::new()).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store
            .create_token(&NewToken {
                name: "x".to_string(),
                role: Role::Viewer,
                project: Some(kiln_store::ProjectId::new()),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_persists_and_migrations_are_idempotent() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested-kiln.db");
    let (run, secret) = {
        let store = Store::open(&path).await.unwrap();
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        store.append_event(&run.id, &events()[0]).await.unwrap();
        let (_, secret) = store
            .create_token(&NewToken { name: "ops".to_string(), role: Role::Viewer, project: None })
            .await
            .unwrap();
        store.close().await;
        (run, secret)
    };
    for _ in 0..2 {
        let store = Store::open(&path).await.unwrap();
        let mode: String = match store.db() {
            kiln_store::Db::Sqlite(p) => {
                sqlx::query_scalar("PRAGMA journal_mode").fetch_one(p).await.unwrap()
            }
            kiln_store::Db::Postgres(_) => unreachable!("opened SQLite"),
        };
        assert_eq!(mode, "wal");
        assert_eq!(store.run(&run.id).await.unwrap(), run);
        assert_eq!(store.events(&run.id).await.unwrap()[0].event, events()[0]);
        assert!(store.verify_token(secret.expose()).await.unwrap().is_some());
        let (_, changed) = store.upsert_pipeline("api", "build", &src(YAML_V1)).await.unwrap();
        assert!(!changed);
        store.close().await;
    }
}

/// A source with no template files, named like the CLI names it.
pub fn src(yaml: &str) -> kiln_store::PipelineSource {
    kiln_store::PipelineSource {
        file: "kiln.yml".into(),
        yaml: yaml.into(),
        files: Default::default(),
    }
}
