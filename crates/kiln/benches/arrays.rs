//! Benchmark: a 100,000-index array job (`array: 100000`) through the server and 50 real
//! `kiln agent` processes (release builds, loopback HTTP) on the no-op executor, from the
//! trigger to the array's last index done, with the server's peak VmRSS sampled every
//! 100 ms; beside it, 10,000 matrix tasks (40 runs of a 250-instance matrix job) through the
//! same agents, as `pool` measures them. Targets: the array < 20 s (5,000 tasks/s) and the
//! server's RSS < 300 MB.
//!
//! Run with `cargo xtask bench arrays` or `cargo bench -p kiln --bench arrays [-- array|matrix]`.
//! Knobs (environment): `KILN_BENCH_AGENTS` (50), `KILN_BENCH_AGENT_CAPACITY` (8),
//! `KILN_BENCH_ARRAY` (100000), `KILN_BENCH_BIN` (another `kiln` binary to measure).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

#[allow(dead_code)]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use common::{Server, diff_ms, env_usize, kiln_bin, verdict};
use futures::StreamExt;
use kiln_api::TriggerRequest;

/// Target: seconds for the array.
const TARGET_S: f64 = 20.0;
/// Target: the server's peak VmRSS, MB.
const TARGET_RSS_MB: f64 = 300.0;

/// `kiln agent` child processes on the no-op executor, killed when dropped.
struct Agents {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Agents {
    async fn start(server: &Server, n: usize, capacity: usize) -> Result<Agents> {
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

/// One array: wall time (trigger to the job's `finished_at`), the server's RSS before and
/// at peak, MB.
struct ArrayRun {
    size: u32,
    wall_ms: f64,
    rss_before: f64,
    rss_peak: f64,
}

async fn array(server: &Server, size: u32) -> Result<ArrayRun> {
    let yaml = format!(
        "name: arr\nstages:\n  - name: s\n    jobs:\n      t:\n        array: {size}\n        script: \"true\"\n"
    );
    server.pipeline("arr", &yaml).await?;
    let rss_before = server.rss_mb()?;
    let start = Utc::now();
    let t = Instant::now();
    let run = server.client.trigger("bench", "arr", &TriggerRequest::default()).await?;
    let mut rss_peak = rss_before;
    let mut last_poll = Instant::now();
    let detail = loop {
        rss_peak = rss_peak.max(server.rss_mb()?);
        if last_poll.elapsed() >= Duration::from_millis(500) {
            last_poll = Instant::now();
            let d = server.client.run(&run.id).await?;
            if matches!(d.run.state.as_str(), "success" | "failure" | "canceled" | "timeout") {
                break d;
            }
        }
        if t.elapsed() > Duration::from_secs(900) {
            bail!("the array did not end within 15 minutes:\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if detail.run.state != "success" {
        bail!("the array run ended {}: {:?}", detail.run.state, detail.run.reason);
    }
    let job = &detail.jobs[0];
    let a = job.array.as_ref().context("no array progress")?;
    if a.succeeded != size || a.retries != 0 {
        bail!("{} of {size} succeeded, {} retries", a.succeeded, a.retries);
    }
    let end = job.finished_at.context("no finished_at")?;
    Ok(ArrayRun { size, wall_ms: diff_ms(end, start), rss_before, rss_peak })
}

/// 40 runs of a 250-instance matrix job (8 triggers in flight), as `pool` measures them:
/// the first trigger to the latest job's `finished_at`, ms.
async fn matrix(server: &Server) -> Result<(usize, f64)> {
    let axis = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        "name: fan\nstages:\n  - name: s\n    jobs:\n      t:\n        matrix:\n          a: [{}]\n          b: [{}]\n        script: \"true\"\n",
        axis(10),
        axis(25)
    );
    server.pipeline("fan", &yaml).await?;
    let client = &server.client;
    let start = Utc::now();
    let t = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..40)
        .map(|_| async move {
            client.trigger("bench", "fan", &TriggerRequest::default()).await.map(|r| r.id)
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    server.wait_idle("fan", t).await?;
    let mut last = start;
    let mut tasks = 0;
    for id in &ids {
        let d = client.run(id).await?;
        if d.run.state != "success" {
            bail!("run {} ended {}", d.run.full_name(), d.run.state);
        }
        for j in &d.jobs {
            last = last.max(j.finished_at.context("no finished_at")?);
            tasks += 1;
        }
    }
    Ok((tasks, diff_ms(last, start)))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("arrays benchmark: skipped (run it with `cargo bench` or `cargo xtask bench`)");
        return Ok(());
    }
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| only.is_empty() || only.contains(&name);
    let n = env_usize("KILN_BENCH_AGENTS", 50).max(1);
    let capacity = env_usize("KILN_BENCH_AGENT_CAPACITY", 8).max(1);
    let size = u32::try_from(env_usize("KILN_BENCH_ARRAY", 100_000).clamp(1, 1_000_000))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let server = Server::start(&["--capacity", "0"], 0).await?;
        let _agents = Agents::start(&server, n, capacity).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut arr = None;
        let mut mat = None;
        if want("matrix") {
            println!("==> 10,000 matrix tasks (40 runs x 250) on {n} agents x {capacity} slots");
            let (tasks, ms) = matrix(&server).await?;
            println!("  {tasks} tasks in {ms:.0} ms = {:.0} tasks/s", tasks as f64 / (ms / 1e3));
            mat = Some((tasks, ms));
        }
        if want("array") {
            println!("==> one array job of {size} indexes on {n} agents x {capacity} slots");
            let r = array(&server, size).await?;
            println!(
                "  {} indexes in {:.0} ms = {:.0} tasks/s; server VmRSS {:.1} MB before, peak {:.1} MB",
                r.size,
                r.wall_ms,
                f64::from(r.size) / (r.wall_ms / 1e3),
                r.rss_before,
                r.rss_peak
            );
            arr = Some(r);
        }
        println!();
        println!("| figure | Kiln | beside it | result vs target |");
        println!("|---|---|---|---|");
        if let Some(r) = &arr {
            let beside = mat.map_or(String::new(), |(tasks, ms)| {
                format!("{tasks} matrix tasks: {ms:.0} ms = {:.0} tasks/s", tasks as f64 / (ms / 1e3))
            });
            let s = r.wall_ms / 1e3;
            println!(
                "| {}-index array, {n} agents x {capacity} slots, noop executor | {:.0} ms = **{:.0} tasks/s** | {beside} | {s:.1} s vs < {TARGET_S} s: {} |",
                r.size,
                r.wall_ms,
                f64::from(r.size) / s,
                verdict(s < TARGET_S)
            );
            println!(
                "| server VmRSS during the array | before {:.1} MB, peak **{:.1} MB** | — | < {TARGET_RSS_MB} MB: {} |",
                r.rss_before,
                r.rss_peak,
                verdict(r.rss_peak < TARGET_RSS_MB)
            );
        }
        Ok::<_, anyhow::Error>(())
    })
}
