//! Benchmark: a config release reaching 1,000 watching clients, beside etcd 3.4 (Debian's
//! `etcd-server`) watched by as many clients in the same run, over HTTP both.
//!
//! A release `kiln server` (process, over loopback HTTP) holds application `api` with one
//! item; a local `etcd` (a fresh data directory, default fsync) holds one key. Each round,
//! alternating:
//! 1. `sse`: N clients watch `GET .../config/api/prod/watch` (SSE, one connection each,
//!    connected once); the time from sending `POST .../releases` (after a values change) to
//!    each client reading the new release;
//! 2. `poll`: N clients long-poll `GET .../config/api/prod?wait=60s` with `If-None-Match`
//!    (sent a second before the release, so they wait on the server); the time from sending
//!    the release to each answer;
//! 3. `etcd`: N clients watch the key through etcd's HTTP gateway (`POST /v3/watch`, one
//!    stream each); the time from sending `PUT /v3/kv/put` of a value of the same size to
//!    each client reading the event.
//!
//! Targets (the issue's): Kiln p50 < 50 ms and p99 < 500 ms (Nacos publishes 35-183 ms,
//! Apollo about 1 s). Run with `cargo xtask bench config` or `cargo bench -p kiln --bench
//! config`. Knobs (environment): `KILN_BENCH_CONFIG_WATCHERS` (1000),
//! `KILN_BENCH_CONFIG_ROUNDS` (20), `KILN_BENCH_ETCD` (the etcd binary, default `etcd`),
//! `KILN_BENCH_BIN`. Without `--bench` (as under `cargo test --all-targets`) it does nothing.

#[allow(dead_code)]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use common::{Dist, Server, env_usize, ms, verdict};
use futures::StreamExt;
use kiln_api::config::{ReleaseRequest, SetValues};
use kiln_api::environments::CreateEnvironment;
use kiln_client::Client;
use tokio::sync::mpsc;

/// Target: release to watchers, median, ms.
const TARGET_P50_MS: f64 = 50.0;
/// Target: release to watchers, 99th percentile, ms.
const TARGET_P99_MS: f64 = 500.0;
/// How long one round may take before the benchmark gives up.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

const TEMPLATE: &str = "\
name: {{ kiln.app }}
env: {{ kiln.environment }}
round: {{ round }}
db:
  host: {{ db.host }}
  pool: {{ db.pool }}
features:
{% for f in features %}  - {{ f }}
{% endfor %}";

/// What one watcher read, and when.
type Seen = (u64, Instant);

/// A local etcd, killed when dropped.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    async fn start(http: &reqwest::Client) -> Result<Etcd> {
        let bin = std::env::var("KILN_BENCH_ETCD").unwrap_or_else(|_| "etcd".into());
        let dir = tempfile::tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(&bin)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting `{bin}` (Debian: apt-get install etcd-server)"))?;
        let etcd = Etcd { child, url, _dir: dir };
        let t = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/health", etcd.url)).send().await
                && r.status().is_success()
            {
                return Ok(etcd);
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("etcd did not answer /health within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn put(&self, http: &reqwest::Client, key: &str, value: &str) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key), "value": b64.encode(value) });
        let r = http.post(format!("{}/v3/kv/put", self.url)).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("etcd put: {}", r.status());
        }
        Ok(())
    }
}

/// Starts `n` etcd watchers of `key`; each sends `(revision, when)` for every event, and
/// `(0, when)` once its watch is created.
async fn etcd_watchers(
    http: &reqwest::Client,
    etcd: &Etcd,
    key: &str,
    n: usize,
) -> Result<mpsc::UnboundedReceiver<Seen>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({ "create_request": { "key": b64.encode(key) } });
    for _ in 0..n {
        let req = http.post(format!("{}/v3/watch", etcd.url)).json(&body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(resp) = req.send().await else { return };
            let mut stream = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                let at = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let result = &v["result"];
                    if result["created"].as_bool() == Some(true) {
                        let _ = tx.send((0, at));
                    }
                    for e in result["events"].as_array().into_iter().flatten() {
                        let rev = e["kv"]["mod_revision"].as_str().and_then(|r| r.parse().ok());
                        let _ = tx.send((rev.unwrap_or(u64::MAX), at));
                    }
                }
            }
        });
    }
    Ok(rx)
}

/// Starts `n` SSE watchers of `api` in `prod`; each sends `(release, when)` for every release
/// it reads (the current one first: its subscription is ready).
fn kiln_watchers(client: &Client, n: usize) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..n {
        let client = client.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(stream) = client.watch_config("bench", "api", "prod", None, None).await else {
                return;
            };
            let mut stream = Box::pin(stream);
            while let Some(Ok(got)) = stream.next().await {
                let _ = tx.send((u64::from(got.release), Instant::now()));
            }
        });
    }
    rx
}

/// Waits for `n` readings of `what` (a release number or revision) and returns each one's
/// time after `t0` in ms.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    what: u64,
    t0: Instant,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
    while out.len() < n {
        let Ok(Some((seen, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("{} of {n} watchers read {what} within {ROUND_LIMIT:?}", out.len());
        };
        if seen == what {
            out.push(ms(at.saturating_duration_since(t0)));
        }
    }
    Ok(out)
}

/// Project `bench`, environment `prod`, application `api` with one item and values.
async fn kiln_setup(c: &Client) -> Result<()> {
    c.create_project("bench").await?;
    let prod = CreateEnvironment { name: "prod".into(), after: None, protected: false };
    c.create_environment("bench", &prod).await?;
    c.set_config_template("bench", "api", "app.yaml", TEMPLATE).await?;
    let shared =
        "round: 0\ndb:\n  host: db.prod\n  pool: 20\nfeatures: [search, checkout, gift-cards]\n";
    let req = SetValues { yaml: shared.into(), file: None };
    c.set_config_values("bench", "api", None, &req).await?;
    Ok(())
}

/// Changes the value of `round`, then times a release: returns its number and when it was
/// sent.
async fn kiln_release(c: &Client, round: usize) -> Result<(u64, Instant)> {
    let req = SetValues { yaml: format!("round: {round}\n"), file: None };
    c.set_config_values("bench", "api", Some("prod"), &req).await?;
    let t0 = Instant::now();
    let out = c.config_release("bench", "api", "prod", &ReleaseRequest::default()).await?;
    if out.outcome != "released" {
        bail!("release of round {round}: {}", out.message);
    }
    Ok((u64::from(out.release.number), t0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let n = env_usize("KILN_BENCH_CONFIG_WATCHERS", 1000);
    let rounds = env_usize("KILN_BENCH_CONFIG_ROUNDS", 20);
    println!("config release to {n} watchers, {rounds} rounds, beside etcd (same run)");

    let server = Server::start(&["--executor", "noop"], 0).await?;
    kiln_setup(&server.client).await?;
    kiln_release(&server.client, 0).await?;
    let watch_client = Client::new(&server.url, &server.token)?;
    let poll_client = Arc::new(Client::new(&server.url, &server.token)?);
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let etcd = Etcd::start(&http).await?;
    let value = server
        .client
        .fetch_config("bench", "api", "prod", None, None, None)
        .await?
        .context("no release")?
        .files["app.yaml"]
        .clone();
    etcd.put(&http, "bench/api/prod", &value).await?;

    let mut kiln_rx = kiln_watchers(&watch_client, n);
    collect(&mut kiln_rx, n, 1, Instant::now()).await.context("kiln watchers connecting")?;
    let mut etcd_rx = etcd_watchers(&http, &etcd, "bench/api/prod", n).await?;
    collect(&mut etcd_rx, n, 0, Instant::now()).await.context("etcd watchers connecting")?;
    println!("  {n} SSE watchers and {n} etcd watchers connected");

    let (mut sse, mut poll, mut et) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sse_all, mut poll_all, mut etcd_all) = (Vec::new(), Vec::new(), Vec::new());
    let mut round = 0;
    for r in 0..rounds {
        // 1. SSE watchers.
        round += 1;
        let (number, t0) = kiln_release(&server.client, round).await?;
        let got = collect(&mut kiln_rx, n, number, t0).await.context("kiln sse")?;
        sse_all.push(got.iter().copied().fold(0.0, f64::max));
        sse.extend(got);

        // 2. Long polls, waiting on the server when the release is sent.
        let known = server
            .client
            .fetch_config("bench", "api", "prod", None, None, None)
            .await?
            .context("no release")?
            .digest;
        let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
        for _ in 0..n {
            let (c, tx, known) = (poll_client.clone(), tx.clone(), known.clone());
            tokio::spawn(async move {
                let wait = Some(Duration::from_secs(60));
                if let Ok(Some(got)) =
                    c.fetch_config("bench", "api", "prod", None, Some(&known), wait).await
                {
                    let _ = tx.send((u64::from(got.release), Instant::now()));
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        round += 1;
        let (number, t0) = kiln_release(&server.client, round).await?;
        let got = collect(&mut rx, n, number, t0).await.context("kiln long polls")?;
        poll_all.push(got.iter().copied().fold(0.0, f64::max));
        poll.extend(got);
        // The SSE watchers read that release too: drain it before the next round.
        collect(&mut kiln_rx, n, number, t0).await.context("kiln sse (poll round)")?;

        // 3. etcd watchers.
        let t0 = Instant::now();
        etcd.put(&http, "bench/api/prod", &value.replace("round: 0", &format!("round: {r}")))
            .await?;
        let mut got = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
        while got.len() < n {
            let Ok(Some((_, at))) = tokio::time::timeout_at(deadline, etcd_rx.recv()).await else {
                bail!("{} of {n} etcd watchers read the put within {ROUND_LIMIT:?}", got.len());
            };
            got.push(ms(at.saturating_duration_since(t0)));
        }
        etcd_all.push(got.iter().copied().fold(0.0, f64::max));
        et.extend(got);
        println!(
            "  round {:>2}: last sse {:>7.1} ms, last poll {:>7.1} ms, last etcd {:>7.1} ms",
            r + 1,
            sse_all[r],
            poll_all[r],
            etcd_all[r]
        );
    }

    let (sse, poll, et) = (Dist::of(sse), Dist::of(poll), Dist::of(et));
    let (sse_all, poll_all, etcd_all) = (Dist::of(sse_all), Dist::of(poll_all), Dist::of(etcd_all));
    println!("  kiln sse    {}", sse.line());
    println!("  kiln poll   {}", poll.line());
    println!("  etcd watch  {}", et.line());
    println!(
        "  all {n} reached, per round: kiln sse p50 {:.1} ms, kiln poll p50 {:.1} ms, etcd p50 {:.1} ms",
        sse_all.p50, poll_all.p50, etcd_all.p50
    );
    let ok = |d: &Dist| d.p50 < TARGET_P50_MS && d.p99 < TARGET_P99_MS;
    println!(
        "\n| benchmark | p50 | p99 | target | verdict | etcd 3.4 (same run) | ratio p50 / p99 |\n|---|---|---|---|---|---|---|"
    );
    for (name, d) in [("release -> SSE watchers", &sse), ("release -> long polls", &poll)] {
        println!(
            "| {name} ({n}) | {:.1} ms | {:.1} ms | p50 < {TARGET_P50_MS:.0} ms, p99 < {TARGET_P99_MS:.0} ms | {} | p50 {:.1} ms, p99 {:.1} ms | {:.2} / {:.2} |",
            d.p50,
            d.p99,
            verdict(ok(d)),
            et.p50,
            et.p99,
            d.p50 / et.p50,
            d.p99 / et.p99
        );
    }
    let rss = server.rss_mb()?;
    println!("\nkiln server RSS with {} connections held: {rss:.0} MB", 2 * n);
    Ok(())
}
