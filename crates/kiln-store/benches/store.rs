//! Throughput of `Store::record_step` on a SQLite file opened by `Store::open` (WAL,
//! synchronous NORMAL, a pool of 8, `BEGIN IMMEDIATE`): one step is 3 events, a job record and
//! no state change, what the server writes for a typical engine step.
//!
//! - `floor`: the same pool running `BEGIN IMMEDIATE`, 4 small inserts into a scratch table
//!   and `COMMIT`, the least a one-transaction step can cost;
//! - `sequential`: one writer, step after step on one run;
//! - `concurrent/8`: 8 writers on 8 runs at once, time per step (writers queue on SQLite's
//!   write lock; this shows whether they wait well).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_engine::{Event, JobState, Outcome};
use kiln_store::{Db, JobRecord, NewRun, RunId, Step, Store};
use kiln_workflow::plan::JobId;
use tokio::runtime::Runtime;

const YAML: &str = "version: 1\njobs:\n  build:\n    image: busybox\n    run: echo one\n";
const WRITERS: u64 = 8;

fn step(n: u32) -> Step {
    let job = JobId::from("build");
    Step {
        events: vec![
            Event::JobStarted { job: job.clone(), attempt: n },
            Event::JobOutput {
                job: job.clone(),
                attempt: n,
                key: "digest".to_string(),
                value: "sha256:0123456789abcdef".to_string(),
            },
            Event::JobExited { job: job.clone(), attempt: n, outcome: Outcome::Exited(0) },
        ],
        state: None,
        jobs: vec![JobRecord {
            job,
            state: JobState::Success,
            attempts: n,
            exit_code: Some(0),
            outputs: BTreeMap::from([("digest".to_string(), "sha256:0".to_string())]),
            reason: None,
            started_at: None,
            finished_at: None,
        }],
        ..Step::default()
    }
}

async fn runs(store: &Store, count: u64) -> Vec<RunId> {
    store.create_project("bench").await.unwrap();
    let (pipeline, _) = store
        .upsert_pipeline(
            "bench",
            "build",
            &kiln_store::PipelineSource {
                file: "build.yml".into(),
                yaml: YAML.into(),
                files: Default::default(),
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..count {
        let new = NewRun {
            pipeline: pipeline.id,
            params: serde_json::json!({}),
            triggered_by: "bench".to_string(),
            retry_of: None,
            source: None,
        };
        ids.push(store.create_run(&new).await.unwrap().id);
    }
    ids
}

fn record_step(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let store = rt.block_on(Store::open(dir.path().join("bench.db"))).unwrap();
    let ids = rt.block_on(runs(&store, WRITERS));
    let Db::Sqlite(pool) = store.db().clone() else { unreachable!("opened SQLite") };
    rt.block_on(
        sqlx::query("CREATE TABLE scratch (a TEXT NOT NULL, b INTEGER NOT NULL, c TEXT NOT NULL)")
            .execute(&pool),
    )
    .unwrap();

    let mut group = c.benchmark_group("record_step");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("floor", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                for i in 0..4i64 {
                    sqlx::query("INSERT INTO scratch (a, b, c) VALUES ($1, $2, $3)")
                        .bind("01234567-89ab-cdef-0123-456789abcdef")
                        .bind(i)
                        .bind(r#"{"JobStarted":{"job":"build","attempt":1}}"#)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
            })
        })
    });

    let mut n = 0u32;
    group.bench_function("sequential", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.record_step(&ids[0], &step(n))).unwrap()
        })
    });

    group.bench_function(format!("concurrent/{WRITERS}"), |b| {
        b.iter_custom(|iters| {
            let per_writer = iters.div_ceil(WRITERS);
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = ids
                    .iter()
                    .map(|&run| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            for i in 0..per_writer {
                                let attempt = u32::try_from(i % 1000).unwrap_or(0) + 1;
                                store.record_step(&run, &step(attempt)).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                // Per step: total time scaled to the `iters` steps asked for.
                start.elapsed().mul_f64(iters as f64 / (per_writer * WRITERS) as f64)
            })
        })
    });
    group.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, record_step);
criterion_main!(benches);
