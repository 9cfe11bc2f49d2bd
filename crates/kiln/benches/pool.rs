//! Benchmark: the resource pool through the server, with real `kiln agent` processes (release
//! builds, each connected over loopback HTTP) on the no-op executor, so what is measured is
//! Kiln's own path: placement, leases, event reports, the engine and the store.
//!
//! 1. `tasks`: `kiln server --capacity 0` (no embedded agent) and 50 `kiln agent --executor
//!    noop --capacity 8` processes; a pipeline with one matrix job of 250 instances
//!    (`script: "true"`), triggered 40 times (8 triggers in flight) = 10,000 tasks, each one
//!    job attempt placed, leased to an agent, driven through `drive_task` and reported
//!    finished. Measured from just before the first trigger to the latest `finished_at` of
//!    the 10,000 jobs (server clock, same host); every job must have succeeded at its first
//!    attempt. Target: >= 2,000 tasks/s.
//! 2. Beside it, the same 10,000 tasks through the server's embedded agent alone (`kiln
//!    server --executor noop --capacity 400`: one agent with the 50 agents' 400 slots), to
//!    show what 50 processes cost over one.
//! 3. `memory`: VmRSS of each of the 50 agents, connected and idle, 2 s after the last one
//!    registered, and again after the tasks (idle again). Target: < 15 MB each.
//!
//! Run with `cargo xtask bench pool` or `cargo bench -p kiln --bench pool [-- tasks|embedded|memory]`.
//! Knobs (environment): `KILN_BENCH_AGENTS` (50), `KILN_BENCH_AGENT_CAPACITY` (8),
//! `KILN_BENCH_POOL_RUNS` (40), `KILN_BENCH_INSTANCES` (250, at most 256), `KILN_BENCH_IN_FLIGHT`
//! (8), `KILN_BENCH_BIN` (another `kiln` binary to measure).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

// Shared with the server and services benchmarks.
#[allow(dead_code)]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use common::{Server, diff_ms, env_usize, kiln_bin, rss_mb, verdict};
use futures::StreamExt;
use kiln_api::TriggerRequest;

/// Target of benchmark 1: tasks per second.
const TARGET_TASKS_PER_S: f64 = 2000.0;
/// Target of benchmark 3: an idle agent's VmRSS, MB.
const TARGET_AGENT_RSS_MB: f64 = 15.0;

/// A pipeline of one matrix job of `instances` instances (two axes).
fn matrix_yaml(instances: usize) -> String {
    let a = 10.min(instances).max(1);
    let b = instances.div_ceil(a);
    let axis = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    // Trim the last row of the grid with `exclude` when `instances` is not a multiple of a.
    let extra = a * b - instances;
    let exclude = if extra == 0 {
        String::new()
    } else {
        let pairs: Vec<String> =
            (0..extra).map(|i| format!("{{ a: {}, b: {} }}", a - 1 - i, b - 1)).collect();
        format!("\n          exclude: [{}]", pairs.join(", "))
    };
    format!(
        r#"name: fan
stages:
  - name: s
    jobs:
      t:
        matrix:
          a: [{}]
          b: [{}]{exclude}
        script: "true"
"#,
        axis(a),
        axis(b)
    )
}

/// `kiln agent` child processes, killed when dropped.
struct Agents {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Agents {
    /// Starts `n` agents (noop executor, `capacity` slots each) against `server` and waits
    /// until all are registered.
    async fn start(server: &Server, n: usize, capacity: u32) -> Result<Agents> {
        let dir = tempfile::tempdir()?;
        let mut agents = Agents { children: Vec::with_capacity(n), _dir: dir };
        for i in 0..n {
            let work = agents._dir.path().join(format!("a{i:02}"));
            let log = std::fs::File::create(agents._dir.path().join(format!("a{i:02}.log")))?;
            let child = Command::new(kiln_bin())
                .args(["agent", "--executor", "noop", "--server", &server.url])
                .env("KILN_TOKEN", &server.token)
                .args(["--name", &format!("bench-{i:02}")])
                .args(["--capacity", &capacity.to_string()])
                .arg("--work-dir")
                .arg(&work)
                .env_remove("KILN_EXECUTOR")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting kiln agent")?;
            agents.children.push(child);
        }
        let t = Instant::now();
        while server.client.info().await?.agents.len() < n {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("not every agent registered within 60 s:\n{}", server.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(agents)
    }

    /// VmRSS of every agent, MB.
    fn rss(&self) -> Result<Vec<f64>> {
        self.children.iter().map(|c| rss_mb(c.id())).collect()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// One measurement of `runs` x `instances` tasks.
struct Tasks {
    tasks: usize,
    /// First trigger to the latest job `finished_at`, ms.
    wall: f64,
    /// Time the triggers alone took, ms.
    triggering: f64,
}

impl Tasks {
    fn per_s(&self) -> f64 {
        self.tasks as f64 / (self.wall / 1e3)
    }
}

/// Triggers `fan` `runs` times and waits for every task; checks each succeeded once.
async fn run_tasks(
    server: &Server,
    runs: usize,
    instances: usize,
    in_flight: usize,
) -> Result<Tasks> {
    let client = &server.client;
    // Warm-up: one run, not counted.
    let warm = client.trigger("bench", "fan", &TriggerRequest::default()).await?;
    server.wait_idle("fan", Instant::now()).await?;
    let d = client.run(&warm.id).await?;
    if d.run.state != "success" {
        bail!("the warm-up run ended {}: {:?}", d.run.state, d.run.reason);
    }
    let start: DateTime<Utc> = Utc::now();
    let t = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..runs)
        .map(|_| async move {
            client.trigger("bench", "fan", &TriggerRequest::default()).await.map(|r| r.id)
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let triggering = common::ms(t.elapsed());
    server.wait_idle("fan", t).await?;
    let mut last = start;
    let mut tasks = 0;
    for id in &ids {
        let d = client.run(id).await?;
        if d.run.state != "success" {
            bail!("run {} ended {}: {:?}", d.run.full_name(), d.run.state, d.run.reason);
        }
        if d.jobs.len() != instances {
            bail!("run {} has {} jobs, not {instances}", d.run.full_name(), d.jobs.len());
        }
        for j in &d.jobs {
            if j.state != "success" || j.attempts != 1 {
                bail!(
                    "job {} of {}: {} after {} attempts",
                    j.id,
                    d.run.full_name(),
                    j.state,
                    j.attempts
                );
            }
            last = last.max(j.finished_at.context("a finished job without finished_at")?);
            tasks += 1;
        }
    }
    Ok(Tasks { tasks, wall: diff_ms(last, start), triggering })
}

/// Median and max of a sample, MB.
type MedMax = (f64, f64);

/// Median and max of a sample.
fn med_max(v: &[f64]) -> MedMax {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[s.len() - 1])
}

#[derive(Default)]
struct Report {
    agents: usize,
    capacity: u32,
    pool: Option<Tasks>,
    embedded: Option<Tasks>,
    /// VmRSS (median, max) of the agents idle, then idle again after the tasks, MB.
    rss: Option<(MedMax, Option<MedMax>)>,
}

async fn run(want: impl Fn(&str) -> bool) -> Result<Report> {
    let n = env_usize("KILN_BENCH_AGENTS", 50).max(1);
    let capacity = u32::try_from(env_usize("KILN_BENCH_AGENT_CAPACITY", 8).max(1))?;
    let runs = env_usize("KILN_BENCH_POOL_RUNS", 40).max(1);
    let instances = env_usize("KILN_BENCH_INSTANCES", 250).clamp(1, 256);
    let in_flight = env_usize("KILN_BENCH_IN_FLIGHT", 8).max(1);
    let yaml = matrix_yaml(instances);
    let mut report = Report { agents: n, capacity, ..Report::default() };

    if want("tasks") || want("memory") {
        let server = Server::start(&["--capacity", "0"], 0).await?;
        server.pipeline("fan", &yaml).await?;
        let agents = Agents::start(&server, n, capacity).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = agents.rss()?;
        let idle = med_max(&idle);
        println!(
            "==> {n} idle agents (noop executor, {capacity} slots each): VmRSS median {:.1} MB, max {:.1} MB",
            idle.0, idle.1
        );
        let mut after = None;
        if want("tasks") {
            println!(
                "==> {runs} runs x {instances} matrix instances = {} tasks on {n} agents x {capacity} slots, {in_flight} triggers in flight",
                runs * instances
            );
            let r = run_tasks(&server, runs, instances, in_flight).await?;
            println!(
                "  {} tasks in {:.0} ms = {:.0} tasks/s (triggers took {:.0} ms; server RSS after {:.1} MB)",
                r.tasks,
                r.wall,
                r.per_s(),
                r.triggering,
                server.rss_mb()?
            );
            report.pool = Some(r);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let a = med_max(&agents.rss()?);
            println!("  agents idle again: VmRSS median {:.1} MB, max {:.1} MB", a.0, a.1);
            after = Some(a);
        }
        report.rss = Some((idle, after));
    }
    if want("embedded") {
        let slots = (n as u32 * capacity).to_string();
        println!("==> the same through the embedded agent alone (noop executor, {slots} slots)");
        let server = Server::start(&["--executor", "noop", "--capacity", &slots], 1).await?;
        server.pipeline("fan", &yaml).await?;
        let r = run_tasks(&server, runs, instances, in_flight).await?;
        println!(
            "  {} tasks in {:.0} ms = {:.0} tasks/s (triggers took {:.0} ms)",
            r.tasks,
            r.wall,
            r.per_s(),
            r.triggering
        );
        report.embedded = Some(r);
    }
    Ok(report)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("pool benchmark: skipped (run it with `cargo bench` or `cargo xtask bench`)");
        return Ok(());
    }
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| only.is_empty() || only.contains(&name);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(run(want))?;
    println!();
    println!("| figure | Kiln | floor / beside it | result vs target |");
    println!("|---|---|---|---|");
    if let Some(p) = &r.pool {
        let beside = r.embedded.as_ref().map_or(String::new(), |e| {
            format!("embedded agent alone, same slots: {:.0} ms = {:.0} tasks/s", e.wall, e.per_s())
        });
        println!(
            "| {} tasks ({} runs of a matrix job), {} agents x {} slots, noop executor | {:.0} ms = **{:.0} tasks/s** | {beside} | {:.0} vs >= {TARGET_TASKS_PER_S}: {} |",
            p.tasks,
            env_usize("KILN_BENCH_POOL_RUNS", 40),
            r.agents,
            r.capacity,
            p.wall,
            p.per_s(),
            p.per_s(),
            verdict(p.per_s() >= TARGET_TASKS_PER_S)
        );
    }
    if let Some((idle, after)) = r.rss {
        let after = after.map_or(String::new(), |a| {
            format!("; after the tasks: median {:.1} MB, max {:.1} MB", a.0, a.1)
        });
        println!(
            "| idle agent VmRSS ({} agents, 2 s after registering) | median {:.1} MB, max {:.1} MB{after} | — | max **{:.1} MB** vs < {TARGET_AGENT_RSS_MB} MB: {} |",
            r.agents,
            idle.0,
            idle.1,
            idle.1,
            verdict(idle.1 < TARGET_AGENT_RSS_MB)
        );
    }
    Ok(())
}
