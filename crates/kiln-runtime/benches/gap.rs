//! Benchmark: the gap between the end of a job and the start of its dependent, on the process
//! executor, measured side by side with the floor of starting one process (`sh -c true`).
//!
//! A chain of jobs (each needs the one before) runs through the real local runner; the gap is
//! the time from a job's `success` update to its dependent's `running` update. Target: median
//! < 20 ms. Run with `cargo bench -p kiln-runtime --bench gap` (or `cargo xtask bench`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_engine::JobState;
use kiln_exec_process::ProcessExecutor;
use kiln_runtime::{LocalRun, Update};
use kiln_workflow::{Loader, Source};
use tokio::sync::mpsc;

const JOBS: usize = 40;
const ROUNDS: usize = 5;

struct One(String);

impl Loader for One {
    fn load(&self, _from: &str, path: &str) -> Result<Source, String> {
        Ok(Source { name: path.to_string(), text: self.0.clone() })
    }
}

fn chain_yaml() -> String {
    let mut y = String::from("name: chain\nstages:\n");
    for i in 0..JOBS {
        y.push_str(&format!("  - name: s{i}\n    jobs:\n      j{i}:\n        script: \"true\"\n"));
    }
    y
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let compiled = kiln_workflow::compile("chain.yml", &One(chain_yaml()));
    let plan = Arc::new(compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics)));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let executor = Arc::new(ProcessExecutor::new(Default::default()));
    let mut gaps = Vec::new();
    let mut floor = Vec::new();
    for round in 0..ROUNDS {
        // The floor, side by side: spawning and reaping one `sh -c true`.
        for _ in 0..JOBS {
            let t = Instant::now();
            let status = std::process::Command::new("sh").args(["-c", "true"]).status();
            assert!(status.map(|s| s.success()).unwrap_or(false));
            floor.push(t.elapsed());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_control, control_rx) = mpsc::unbounded_channel();
        let run = LocalRun {
            run_id: format!("bench{round}"),
            plan: plan.clone(),
            params: Default::default(),
            executor: executor.clone(),
            setup: Default::default(),
        };
        let report = rt.block_on(async move {
            let handle = tokio::spawn(run.run(tx, control_rx));
            let mut ended: Vec<Option<Instant>> = vec![None; JOBS];
            let mut started: Vec<Option<Instant>> = vec![None; JOBS];
            while let Some(u) = rx.recv().await {
                if let Update::Job { job, status } = u {
                    let i: usize = job.as_str()[1..].parse().expect("job index");
                    match status.state {
                        JobState::Running => started[i] = Some(Instant::now()),
                        JobState::Success => ended[i] = Some(Instant::now()),
                        _ => {}
                    }
                }
            }
            let report = handle.await.expect("run");
            let gaps: Vec<Duration> = (1..JOBS)
                .map(|i| started[i].expect("started") - ended[i - 1].expect("ended"))
                .collect();
            (report, gaps)
        });
        assert_eq!(report.0.state, kiln_engine::RunState::Success);
        gaps.extend(report.1);
    }
    gaps.sort();
    floor.sort();
    let (g50, g95) = (percentile(&gaps, 0.5), percentile(&gaps, 0.95));
    let f50 = percentile(&floor, 0.5);
    println!(
        "job end -> dependent start, process executor ({} gaps over {ROUNDS} runs of a {JOBS}-job chain)",
        gaps.len()
    );
    println!("  gap     p50 {:>8.2} ms   p95 {:>8.2} ms   (target: p50 < 20 ms)", ms(g50), ms(g95));
    println!("  floor   p50 {:>8.2} ms   (spawn + reap `sh -c true`)", ms(f50));
    println!("  ratio   gap/floor p50 {:.2}", g50.as_secs_f64() / f50.as_secs_f64());
    println!("gap_p50_ms={:.3} gap_p95_ms={:.3} floor_p50_ms={:.3}", ms(g50), ms(g95), ms(f50));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
