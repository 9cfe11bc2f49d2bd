//! What the server and pool benchmarks share: the release `kiln server` as a child process,
//! the binary under test, resident memory, small helpers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use kiln_api::ApplyPipeline;
use kiln_client::Client;

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a - b` in milliseconds.
pub fn diff_ms(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// `**met**` or `**missed**`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

/// The binary under test: this package's (release under `cargo bench`), or `KILN_BENCH_BIN`
/// (to measure another build, e.g. with a candidate fix, against the same floors).
pub fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from)
}

/// Resident memory of process `pid` in MB (VmRSS of /proc/PID/status).
pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

/// A `kiln server` child process (release build), killed when dropped.
pub struct Server {
    child: Child,
    /// An admin client.
    pub client: Client,
    /// Its URL.
    pub url: String,
    /// The admin token.
    pub token: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `kiln server --listen 127.0.0.1:0 ARGS` on a fresh data directory and waits
    /// until `agents` agents are connected.
    pub async fn start(args: &[&str], agents: usize) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut child = Command::new(kiln_bin())
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data")
            .arg(&data)
            .env_remove("KILN_EXECUTOR")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting kiln server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let log = std::fs::read_to_string(dir.path().join("server.log"))?;
                bail!("kiln server exited before listening:\n{log}");
            };
            if let Some(rest) = line?.split("listening on ").nth(1) {
                break rest.split_whitespace().next().context("server URL")?.to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data.join("admin.token"))?.trim().to_string();
        let client = Client::new(&url, &token)?;
        let server = Server { child, client, url, token, dir };
        let t = Instant::now();
        while server.client.info().await?.agents.len() < agents {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the embedded agent never registered:\n{}", server.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until no run of `bench/pipeline` is pending, scheduling or running (10 minutes
    /// at most from `since`).
    pub async fn wait_idle(&self, pipeline: &str, since: Instant) -> Result<()> {
        let query = |state: &str| kiln_client::RunQuery {
            project: Some("bench".into()),
            pipeline: Some(pipeline.into()),
            state: Some(state.into()),
            limit: Some(1),
        };
        loop {
            let mut busy = false;
            for state in ["pending", "scheduling", "running"] {
                busy |= !self.client.runs(&query(state)).await?.is_empty();
            }
            if !busy {
                return Ok(());
            }
            if since.elapsed() > Duration::from_secs(600) {
                bail!("runs still unfinished after 10 minutes:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Resident memory in MB.
    pub fn rss_mb(&self) -> Result<f64> {
        rss_mb(self.child.id())
    }

    /// Creates project `bench` if needed and applies pipeline `name` there.
    pub async fn pipeline(&self, name: &str, yaml: &str) -> Result<()> {
        if self.client.projects().await?.iter().all(|p| p.name != "bench") {
            self.client.create_project("bench").await?;
        }
        let body = ApplyPipeline { yaml: yaml.into(), file: None, files: Default::default() };
        self.client.apply_pipeline("bench", name, &body).await?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Dist {
    /// Sample size.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Dist {
    /// The percentiles of `v` (nearest rank); `v` must not be empty.
    pub fn of(mut v: Vec<f64>) -> Dist {
        assert!(!v.is_empty(), "an empty sample");
        v.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least p of the sample at or below it.
        let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Dist { n: v.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max: v[v.len() - 1] }
    }

    /// `p50 … p95 … p99 … max … (n=…)` on one line.
    pub fn line(&self) -> String {
        format!(
            "p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (n={})",
            self.p50, self.p95, self.p99, self.max, self.n
        )
    }
}
