//! Plans and steps a 10,000-job DAG (100 stages x 100 jobs, each needing 3 jobs of the
//! previous stage) to completion with an instant fake driver.

use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_engine::{Command, Event, Outcome, Run, RunState};
use kiln_workflow::plan::{Job, JobId, Plan, Resources, RetryPolicy, RunSpec, Stage, StageKind};

const STAGES: usize = 100;
const WIDTH: usize = 100;

fn id(stage: usize, n: usize) -> JobId {
    JobId(format!("s{stage}j{n}"))
}

/// 100 stages of 100 jobs; each job needs 3 jobs of the previous stage and reads one of
/// their outputs in its script.
fn plan() -> Plan {
    let mut stages = Vec::with_capacity(STAGES);
    let mut jobs = Vec::with_capacity(STAGES * WIDTH);
    for s in 0..STAGES {
        let mut ids = Vec::with_capacity(WIDTH);
        for n in 0..WIDTH {
            let needs: Vec<JobId> = if s == 0 {
                Vec::new()
            } else {
                [n, (n + 1) % WIDTH, (n + 37) % WIDTH].iter().map(|&m| id(s - 1, m)).collect()
            };
            let mut script = vec![format!("make part-{n}")];
            if let Some(first) = needs.first() {
                script.push(format!("echo ${{{{ jobs.{first}.outputs.digest }}}}"));
            }
            let job = Job {
                id: id(s, n),
                base: id(s, n).0,
                stage: s,
                needs,
                gate: None,
                condition: "success()".to_owned(),
                image: Some("alpine:3".to_owned()),
                run: RunSpec::Script(script),
                env: BTreeMap::from([("PART".to_owned(), n.to_string())]),
                workdir: None,
                timeout: None,
                retry: RetryPolicy::default(),
                matrix: BTreeMap::new(),
                services: Vec::new(),
                resources: Resources::default(),
                scheduling: Default::default(),
                cache: None,
                artifacts: None,
                checkout: true,
                pools: Vec::new(),
                environment: None,
                array: None,
            };
            ids.push(job.id.clone());
            jobs.push(job);
        }
        stages.push(Stage { name: format!("stage{s}"), kind: StageKind::Jobs(ids) });
    }
    Plan {
        name: "big".to_owned(),
        params: Vec::new(),
        env: BTreeMap::from([("CI".to_owned(), "true".to_owned())]),
        stages,
        jobs,
        timeout: None,
        concurrency: None,
        triggers: Default::default(),
        source: None,
        concurrency_group: None,
        pools: Vec::new(),
        prepull: Vec::new(),
    }
}

/// Runs `plan` to the end, answering every StartJob at once with started, one output, exit 0.
fn drive(plan: Arc<Plan>) -> RunState {
    let mut run = Run::new(plan, BTreeMap::new());
    let mut queue: VecDeque<Command> = run.start().into();
    while let Some(command) = queue.pop_front() {
        match command {
            Command::StartJob(start) => {
                let job = start.job.id;
                let attempt = start.attempt;
                queue.extend(run.handle(Event::JobStarted { job: job.clone(), attempt }));
                queue.extend(run.handle(Event::JobOutput {
                    job: job.clone(),
                    attempt,
                    key: "digest".to_owned(),
                    value: format!("sha256:{job}"),
                }));
                queue.extend(run.handle(Event::JobExited {
                    job,
                    attempt,
                    outcome: Outcome::Exited(0),
                }));
            }
            Command::Finish(state) => return state,
            _ => {}
        }
    }
    run.state()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(20);
    group.bench_function("build plan, run 10k jobs", |b| {
        b.iter(|| {
            let state = drive(Arc::new(plan()));
            assert_eq!(state, RunState::Success);
            black_box(state)
        })
    });
    let shared = Arc::new(plan());
    group.bench_function("run 10k jobs", |b| b.iter(|| black_box(drive(shared.clone()))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
