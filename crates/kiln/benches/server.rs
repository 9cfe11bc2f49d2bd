//! Benchmark: the Kiln server end to end (the release `kiln server` binary with its embedded
//! agent, driven over HTTP by `kiln_client`), each figure beside its floor, measured in the
//! same run:
//!
//! 1. `trigger`: trigger to first job container started, on the Docker executor:
//!    `job.started_at - run.created_at` (server clock) of a one-job pipeline (`busybox`,
//!    `script: "true"`), alternated with the same container started raw through
//!    `DockerExecutor` (`setup` + `start`, timed until `start` returns). Target: p50(kiln) -
//!    p50(raw) < 30 ms.
//! 2. `logs`: a line printed in a container to an SSE client, with 100 concurrent viewers of
//!    the job's log: `now - line.time` (the Docker log timestamp) for every line each viewer
//!    receives. Floor: the same with 1 viewer. Target: p99 < 100 ms.
//! 3. `throughput`: 1,000 triggers of a trivial pipeline on the process executor (16 in
//!    flight), from the first trigger to the last run final, at a few agent capacities (the
//!    best is reported). Floor: spawning `sh -c true` 1,000 times in sequence. Target:
//!    >= 100 runs/s.
//! 4. `memory`: resident memory (VmRSS) of the Docker server after 2 s idle, and again after
//!    1 and 2 ran on it. Target: < 40 MB.
//!
//! Run with `cargo xtask bench server` (starts a Docker engine with `busybox` first), or
//! `cargo bench -p kiln --bench server [-- trigger|logs|throughput|memory ...]` when
//! `DOCKER_HOST` answers. Tuning by environment: `KILN_BENCH_ROUNDS` (triggers of 1, default
//! 30), `KILN_BENCH_VIEWERS` (default 100), `KILN_BENCH_RUNS` (default 1000),
//! `KILN_BENCH_CAPACITIES` (default `4,8,16`), `KILN_BENCH_IN_FLIGHT` (default 16),
//! `KILN_BENCH_BIN` (another `kiln` binary to measure).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

// Shared with the pool benchmark, which uses more of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use common::{Dist, Server, diff_ms, env_usize, ms, verdict};
use futures::StreamExt;
use kiln_api::{RunDetail, TriggerRequest};
use kiln_client::Client;
use kiln_exec::{Entry, Executor, Limits, TaskId, TaskSpec};
use kiln_exec_docker::DockerExecutor;

/// Warm-up rounds before the trigger benchmark.
const WARMUPS: usize = 3;
/// Lines the chatty job prints (~20 ms apart).
const LINES: usize = 200;
/// Target of benchmark 1: p50(kiln) - p50(raw), ms.
const TARGET_TRIGGER_MS: f64 = 30.0;
/// Target of benchmark 2: p99 with 100 viewers, ms.
const TARGET_LOG_P99_MS: f64 = 100.0;
/// Target of benchmark 3: runs per second.
const TARGET_RUNS_PER_S: f64 = 100.0;
/// Target of benchmark 4: idle VmRSS, MB.
const TARGET_RSS_MB: f64 = 40.0;

/// The one-job pipeline of the trigger benchmark.
const ONE: &str = r#"name: one
stages:
  - name: s
    jobs:
      one:
        image: busybox
        script: "true"
"#;

/// The pipeline of the throughput benchmark (process executor: no image).
const TRIVIAL: &str = r#"name: trivial
stages:
  - name: s
    jobs:
      t:
        script: "true"
"#;

/// The chatty job: waits until the viewers are connected, then prints `LINES` lines ~20 ms
/// apart.
fn chatty_yaml() -> String {
    format!(
        r#"name: chatty
stages:
  - name: s
    jobs:
      chatty:
        image: busybox
        script: |
          sleep 2
          i=0
          while [ $i -lt {LINES} ]; do echo line $i; i=$((i+1)); usleep 20000; done
"#
    )
}

fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "canceled" | "timeout")
}

/// Polls a run every `every` until `done` says so (or two minutes pass).
async fn poll_run(
    client: &Client,
    id: &str,
    every: Duration,
    done: impl Fn(&RunDetail) -> bool,
) -> Result<RunDetail> {
    let t = Instant::now();
    loop {
        let d = client.run(id).await?;
        if done(&d) {
            return Ok(d);
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("run {id} never got there: {d:#?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// The Docker events of a Kiln run that mark its phases, in order.
const PHASES: [(&str, &str); 4] = [
    ("volume", "create"),
    ("container", "create"),
    ("container", "extract-to-dir"),
    ("container", "start"),
];

/// `docker events --format`: time, type, action, actor id, name and `kiln.run` label.
const EVENT_FORMAT: &str = concat!(
    r#"{{.TimeNano}}|{{.Type}}|{{.Action}}|{{.Actor.ID}}|"#,
    r#"{{index .Actor.Attributes "name"}}|{{index .Actor.Attributes "kiln.run"}}"#
);

/// One Kiln run of `one`.
struct KilnStart {
    /// `job.started_at - run.created_at`, ms.
    took: f64,
    /// When each of [`PHASES`] happened, ms after `run.created_at` (engine clock, same host);
    /// `None` when the Docker CLI could not tell.
    phases: Option<[f64; 4]>,
}

/// Triggers `one` and measures it. Waits for the run to end (its container removed) before
/// returning, then asks the Docker CLI for the engine's events in the run's window.
async fn kiln_start(client: &Client) -> Result<KilnStart> {
    let run = client.trigger("bench", "one", &TriggerRequest::default()).await?;
    let every = Duration::from_millis(20);
    let d = poll_run(client, &run.id, every, |d| {
        d.jobs.first().is_some_and(|j| j.started_at.is_some()) || is_final(&d.run.state)
    })
    .await?;
    let started = d.jobs[0].started_at.with_context(|| format!("the job never started: {d:#?}"))?;
    let created = d.run.created_at;
    let took = diff_ms(started, created);
    let d = poll_run(client, &run.id, every, |d| is_final(&d.run.state)).await?;
    if d.run.state != "success" {
        bail!("run {} ended {}: {d:#?}", d.run.full_name(), d.run.state);
    }
    Ok(KilnStart { took, phases: docker_phases(&run.id, created, Utc::now()) })
}

/// `SECONDS.NANOS`, as `docker events --since/--until` take it.
fn unix(t: DateTime<Utc>) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

/// The first of each of [`PHASES`] for run `run` among the engine's events between `from`
/// and `to`, in ms after `from`. Container events carry the run's label; its volume is named
/// after its main container (`kiln-<task>-ws` beside `kiln-<task>`), so other containers the
/// engine runs meanwhile are ignored.
fn docker_phases(run: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<[f64; 4]> {
    let out = Command::new("docker")
        .args(["events", "--since", &unix(from), "--until", &unix(to), "--format"])
        .arg(EVENT_FORMAT)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<(i64, &str, &str, &str, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split('|').map(str::trim).collect();
            let nanos = w.first()?.parse().ok()?;
            Some((nanos, *w.get(1)?, *w.get(2)?, *w.get(3)?, *w.get(4)?, *w.get(5)?))
        })
        .collect();
    let container =
        events.iter().find(|e| e.1 == "container" && e.5 == run).map(|e| e.4.to_string())?;
    let volume = format!("{container}-ws");
    let mut at = [None; 4];
    for &(nanos, kind, action, actor, name, label) in &events {
        let ours = match kind {
            "volume" => actor == volume,
            _ => name == container && label == run,
        };
        if let Some(i) = PHASES.iter().position(|&(k, a)| k == kind && a == action)
            && ours
            && at[i].is_none()
        {
            at[i] = Some(diff_ms(DateTime::from_timestamp_nanos(nanos), from));
        }
    }
    // No `extract-to-dir` when nothing was copied in: that segment is then empty.
    at[2] = at[2].or(at[1]);
    Some([at[0]?, at[1]?, at[2]?, at[3]?])
}

/// The same container started raw: ms of `setup` + `start`, then `wait` and `destroy`. With
/// `seed`, an empty seed directory is copied in, as the agent always does.
async fn raw_start(exec: &DockerExecutor, n: usize, seed: Option<&Path>) -> Result<f64> {
    let id = TaskId::sanitized(&format!("kiln-bench-raw-{}-{n}", std::process::id()));
    let spec = TaskSpec {
        id: id.clone(),
        labels: BTreeMap::from([
            ("kiln.task".to_string(), id.to_string()),
            ("kiln.run".to_string(), format!("bench-raw-{}", std::process::id())),
            ("kiln.job".to_string(), "one".to_string()),
            ("kiln.attempt".to_string(), "1".to_string()),
        ]),
        image: Some("busybox".into()),
        entry: Entry::Script("true".into()),
        env: BTreeMap::new(),
        workdir: None,
        services: Vec::new(),
        limits: Limits::default(),
        seed: seed.map(Path::to_path_buf),
        ports: Vec::new(),
        host_network: false,
        pull_auth: None,
        builder: false,
        constraints: Vec::new(),
        binds: Vec::new(),
    };
    let t = Instant::now();
    let started = async {
        exec.setup(&spec).await?;
        exec.start(&spec).await
    }
    .await;
    let took = ms(t.elapsed());
    let result = match started {
        Ok(logs) => {
            let status = exec.wait(&id).await;
            drop(logs);
            status.map(|_| took)
        }
        Err(e) => Err(e),
    };
    exec.destroy(&id).await?;
    Ok(result?)
}

/// Segments of the Kiln path, between `created_at`, the [`PHASES`] events and `started_at`.
const SEGMENTS: [&str; 5] = [
    "created_at -> volume create (admission, queue, lease, agent)",
    "volume create -> container create (image inspect, create)",
    "container create -> extract-to-dir (the seed copied in)",
    "extract-to-dir -> container start",
    "container start -> job started_at (report, store)",
];

/// Figures of benchmark 1.
struct TriggerFigures {
    kiln: Dist,
    raw: Dist,
    raw_seed: Dist,
    /// p50 of each of [`SEGMENTS`], when the Docker CLI told the events.
    segments: Option<[f64; 5]>,
}

async fn bench_trigger(server: &Server, rounds: usize) -> Result<TriggerFigures> {
    println!("==> trigger -> first job container started (docker executor), {rounds} rounds");
    let exec = DockerExecutor::connect_default().await?;
    server.pipeline("one", ONE).await?;
    let seed = tempfile::tempdir()?;
    for i in 0..WARMUPS {
        kiln_start(&server.client).await?;
        raw_start(&exec, i, None).await?;
        raw_start(&exec, 1000 + i, Some(seed.path())).await?;
    }
    let (mut kiln, mut raw, mut raw_seed) = (Vec::new(), Vec::new(), Vec::new());
    let mut segments: [Vec<f64>; 5] = Default::default();
    for i in 0..rounds {
        let k = kiln_start(&server.client).await?;
        kiln.push(k.took);
        if let Some(p) = k.phases {
            let cuts = [0.0, p[0], p[1], p[2], p[3], k.took];
            for (s, w) in segments.iter_mut().zip(cuts.windows(2)) {
                s.push(w[1] - w[0]);
            }
        }
        raw.push(raw_start(&exec, 100 + i, None).await?);
        raw_seed.push(raw_start(&exec, 2000 + i, Some(seed.path())).await?);
    }
    let segments = (segments[0].len() == rounds).then(|| segments.map(|s| Dist::of(s).p50));
    let f = TriggerFigures {
        kiln: Dist::of(kiln),
        raw: Dist::of(raw),
        raw_seed: Dist::of(raw_seed),
        segments,
    };
    println!("  kiln  created_at -> job started_at   {}", f.kiln.line());
    println!("  raw   setup + start                  {}", f.raw.line());
    println!("  raw   setup + start, empty seed      {}", f.raw_seed.line());
    println!(
        "  p50(kiln) - p50(raw) = {:.1} ms (target < {TARGET_TRIGGER_MS} ms)",
        f.kiln.p50 - f.raw.p50
    );
    match &f.segments {
        Some(seg) => {
            println!("  where a Kiln start goes (p50 of each segment, from `docker events`):");
            for (name, v) in SEGMENTS.iter().zip(seg) {
                println!("    {v:>7.1} ms  {name}");
            }
        }
        None => println!("  (no breakdown: `docker events` did not report every phase)"),
    }
    Ok(f)
}

/// One viewer: latencies (ms) of the job's lines, and when its stream was open.
async fn view(client: Client, run: String) -> Result<(Vec<f64>, DateTime<Utc>)> {
    let stream = client.follow(&run, Some("chatty"), None, 1).await?;
    let connected = Utc::now();
    let mut stream = Box::pin(stream);
    let mut lat = Vec::with_capacity(LINES);
    while let Some(line) = stream.next().await {
        let line = line?;
        let now = Utc::now();
        if line.text.starts_with("line ") {
            lat.push(diff_ms(now, line.time));
        }
    }
    Ok((lat, connected))
}

/// A run of the chatty job followed by `viewers` clients; every latency, in ms.
async fn log_run(server: &Server, viewers: usize) -> Result<Dist> {
    let client = &server.client;
    let run = client.trigger("bench", "chatty", &TriggerRequest::default()).await?;
    let tasks: Vec<_> =
        (0..viewers).map(|_| tokio::spawn(view(client.clone(), run.id.clone()))).collect();
    let mut all = Vec::with_capacity(viewers * LINES);
    let mut last_connect = None;
    for t in tasks {
        let (lat, connected) = t.await??;
        if lat.len() != LINES {
            bail!("a viewer got {} of {LINES} lines", lat.len());
        }
        all.extend(lat);
        last_connect = last_connect.max(Some(connected));
    }
    let d =
        poll_run(client, &run.id, Duration::from_millis(50), |d| is_final(&d.run.state)).await?;
    if d.run.state != "success" {
        bail!("run {} ended {}: {d:#?}", d.run.full_name(), d.run.state);
    }
    // Every viewer must have been connected before the first line was printed.
    let first = client.logs(&run.id, Some("chatty"), None, 1, 1).await?;
    if let (Some(line), Some(connected)) = (first.lines.first(), last_connect)
        && connected > line.time
    {
        bail!("a viewer connected {:.0} ms after the first line", diff_ms(connected, line.time));
    }
    Ok(Dist::of(all))
}

/// Figures of benchmark 2.
struct LogFigures {
    viewers: usize,
    many: Dist,
    one: Dist,
}

async fn bench_logs(server: &Server, viewers: usize) -> Result<LogFigures> {
    println!("==> log line printed in a container -> SSE client ({LINES} lines, ~20 ms apart)");
    server.pipeline("chatty", &chatty_yaml()).await?;
    let one = log_run(server, 1).await?;
    println!("  1 viewer        {}", one.line());
    let many = log_run(server, viewers).await?;
    println!("  {viewers} viewers    {}", many.line());
    Ok(LogFigures { viewers, many, one })
}

/// One throughput measurement at `capacity`.
struct Throughput {
    capacity: u32,
    runs: usize,
    /// First trigger to the last run's `finished_at` (server clock; same host).
    wall: f64,
    /// Time the triggers alone took.
    triggering: f64,
    /// RSS of the process server after the runs, MB.
    rss_after: f64,
}

impl Throughput {
    fn per_s(&self) -> f64 {
        self.runs as f64 / (self.wall / 1e3)
    }
}

async fn throughput_at(capacity: u32, runs: usize, in_flight: usize) -> Result<Throughput> {
    let server =
        Server::start(&["--executor", "process", "--capacity", &capacity.to_string()], 1).await?;
    server.pipeline("trivial", TRIVIAL).await?;
    let client = &server.client;
    // Warm-up.
    for _ in 0..10 {
        let r = client.trigger("bench", "trivial", &TriggerRequest::default()).await?;
        poll_run(client, &r.id, Duration::from_millis(10), |d| is_final(&d.run.state)).await?;
    }
    let start = Utc::now();
    let t = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..runs)
        .map(|_| async move {
            client.trigger("bench", "trivial", &TriggerRequest::default()).await.map(|r| r.id)
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let triggering = ms(t.elapsed());
    server.wait_idle("trivial", t).await?;
    let mut last = start;
    let details = futures::stream::iter(&ids)
        .map(|id| client.run(id))
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await;
    for d in details {
        let d = d?;
        if d.run.state != "success" {
            bail!("run {} ended {}: {:?}", d.run.full_name(), d.run.state, d.run.reason);
        }
        last = last.max(d.run.finished_at.context("a final run without finished_at")?);
    }
    let r = Throughput {
        capacity,
        runs,
        wall: diff_ms(last, start),
        triggering,
        rss_after: server.rss_mb()?,
    };
    println!(
        "  capacity {capacity:>2}: {runs} runs in {:>7.0} ms = {:>6.1} runs/s \
         (triggers took {:.0} ms; RSS after {:.1} MB)",
        r.wall,
        r.per_s(),
        r.triggering,
        r.rss_after
    );
    Ok(r)
}

/// Figures of benchmark 3.
struct ThroughputFigures {
    best: Throughput,
    floor_ms: f64,
    in_flight: usize,
}

async fn bench_throughput(
    runs: usize,
    capacities: &[u32],
    in_flight: usize,
) -> Result<ThroughputFigures> {
    println!("==> {runs} triggers of a trivial pipeline, process executor, {in_flight} in flight");
    let mut best: Option<Throughput> = None;
    for &c in capacities {
        let r = throughput_at(c, runs, in_flight).await?;
        if best.as_ref().is_none_or(|b| r.per_s() > b.per_s()) {
            best = Some(r);
        }
    }
    let best = best.context("no capacity to try")?;
    let t = Instant::now();
    for _ in 0..runs {
        let status = Command::new("sh").args(["-c", "true"]).status()?;
        if !status.success() {
            bail!("sh -c true failed");
        }
    }
    let floor_ms = ms(t.elapsed());
    println!(
        "  floor: {runs} x `sh -c true` in sequence: {floor_ms:.0} ms = {:.0} spawns/s",
        runs as f64 / (floor_ms / 1e3)
    );
    Ok(ThroughputFigures { best, floor_ms, in_flight })
}

/// `p50 / p95 / p99 ms`.
fn p3(d: &Dist) -> String {
    format!("{:.1} / {:.1} / {:.1} ms", d.p50, d.p95, d.p99)
}

/// A markdown table row.
fn row(cells: [String; 4]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// Every figure measured, for the final table.
#[derive(Default)]
struct Report {
    trigger: Option<TriggerFigures>,
    logs: Option<LogFigures>,
    /// VmRSS of the Docker server idle, then after `trigger` and `logs`, MB.
    rss: Option<(f64, f64)>,
    throughput: Option<ThroughputFigures>,
}

impl Report {
    fn rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        if let Some(f) = &self.trigger {
            let d = f.kiln.p50 - f.raw.p50;
            rows.push(row([
                format!("trigger -> first job container started, docker ({} runs)", f.kiln.n),
                p3(&f.kiln),
                format!("raw `setup`+`start`: {}", p3(&f.raw)),
                format!(
                    "p50 difference **{d:.1} ms** vs < {TARGET_TRIGGER_MS} ms: {}",
                    verdict(d < TARGET_TRIGGER_MS)
                ),
            ]));
            rows.push(row([
                "(diagnostic) raw `setup`+`start` with an empty seed copied in".into(),
                p3(&f.raw_seed),
                String::new(),
                format!("the seed copy costs {:.1} ms at p50", f.raw_seed.p50 - f.raw.p50),
            ]));
            if let Some(seg) = f.segments {
                rows.push(row([
                    "(diagnostic) Kiln start, p50 per segment: created_at -> volume create / \
                     -> container create / -> seed copied / -> container start / -> job \
                     started_at"
                        .into(),
                    format!("{} ms", seg.map(|v| format!("{v:.1}")).join(" / ")),
                    String::new(),
                    format!("Kiln's own share: {:.1} ms", seg[0] + seg[4]),
                ]));
            }
        }
        if let Some(f) = &self.logs {
            rows.push(row([
                format!("log line printed -> SSE client, {} viewers x {LINES} lines", f.viewers),
                format!("{} (max {:.1})", p3(&f.many), f.many.max),
                format!("1 viewer: {} (max {:.1})", p3(&f.one), f.one.max),
                format!(
                    "p99 **{:.1} ms** vs < {TARGET_LOG_P99_MS} ms: {}",
                    f.many.p99,
                    verdict(f.many.p99 < TARGET_LOG_P99_MS)
                ),
            ]));
        }
        if let Some((idle, after)) = self.rss {
            rows.push(row([
                "server RSS (docker executor, embedded agent): idle 2 s; after the above".into(),
                format!("{idle:.1} MB; {after:.1} MB"),
                "—".into(),
                format!(
                    "**{idle:.1} MB** vs < {TARGET_RSS_MB} MB: {}; after: {}",
                    verdict(idle < TARGET_RSS_MB),
                    verdict(after < TARGET_RSS_MB)
                ),
            ]));
        }
        if let Some(f) = &self.throughput {
            let b = &f.best;
            let floor_per_s = b.runs as f64 / (f.floor_ms / 1e3);
            rows.push(row([
                format!(
                    "{} triggers -> all final, process executor, capacity {}, {} in flight",
                    b.runs, b.capacity, f.in_flight
                ),
                format!("{:.0} ms = **{:.1} runs/s**", b.wall, b.per_s()),
                format!(
                    "{} x `sh -c true` in sequence: {:.0} ms = {floor_per_s:.0}/s",
                    b.runs, f.floor_ms
                ),
                format!(
                    "{:.1} runs/s vs >= {TARGET_RUNS_PER_S}: {}",
                    b.per_s(),
                    verdict(b.per_s() >= TARGET_RUNS_PER_S)
                ),
            ]));
        }
        rows
    }
}

/// Runs the benchmarks `want` selects.
async fn run(want: impl Fn(&str) -> bool) -> Result<Report> {
    let rounds = env_usize("KILN_BENCH_ROUNDS", 30);
    let viewers = env_usize("KILN_BENCH_VIEWERS", 100);
    let runs = env_usize("KILN_BENCH_RUNS", 1000);
    let in_flight = env_usize("KILN_BENCH_IN_FLIGHT", 16).max(1);
    let capacities: Vec<u32> = std::env::var("KILN_BENCH_CAPACITIES")
        .unwrap_or_else(|_| "4,8,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let mut report = Report::default();
    if want("trigger") || want("logs") || want("memory") {
        if let Err(e) = DockerExecutor::connect_default().await {
            bail!("{e}: run `cargo xtask bench server`, which starts an engine with busybox");
        }
        let server = Server::start(&["--executor", "docker", "--capacity", "4"], 1).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss_mb()?;
        println!("==> idle server (docker executor, embedded agent): VmRSS {idle:.1} MB");
        if want("trigger") {
            report.trigger = Some(bench_trigger(&server, rounds).await?);
        }
        if want("logs") {
            report.logs = Some(bench_logs(&server, viewers).await?);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = server.rss_mb()?;
        println!("==> the same server after the runs above: VmRSS {after:.1} MB");
        report.rss = Some((idle, after));
    }
    if want("throughput") {
        report.throughput = Some(bench_throughput(runs, &capacities, in_flight).await?);
    }
    Ok(report)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("server benchmark: skipped (run it with `cargo bench` or `cargo xtask bench`)");
        return Ok(());
    }
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| only.is_empty() || only.contains(&name);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(run(want))?;
    println!();
    println!("| figure | Kiln p50 / p95 / p99 | floor p50 / p95 / p99 | result vs target |");
    println!("|---|---|---|---|");
    for r in report.rows() {
        println!("{r}");
    }
    Ok(())
}
