//! Log page GETs of a finished job's log read from S3 beside the same GETs of the log in the
//! data directory: two Kiln servers in-process (release build, SQLite, each with its agent on
//! the process executor), one on the data directory, one with `object_store` on s3s-fs (a
//! real S3 server on loopback, files on the same disk, signatures checked). On each, one run
//! prints a log of `KILN_BENCH_LOG_LINES` lines (100,000); once it ended (and, on S3, the log
//! moved to the bucket, the local file gone), clients GET pages of 1,000 lines from places
//! spread over the log, and the tail (`?tail=100`). Figures as requests/s and the ratio
//! S3 / filesystem.
//!
//! Run with `cargo xtask bench s3` or `cargo bench -p kiln --bench s3logs` (needs
//! s3s-fs: `KILN_TEST_S3S_FS` or `cargo install s3s-fs@0.14.1 --features binary --locked`).
//! Knobs: `KILN_BENCH_SECONDS` (5), `KILN_BENCH_LOG_LINES` (100000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kiln_testkit::{S3Server, TestServer};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `clients` loops GETting pages (`query(i)` for the i-th request) for `seconds`: requests/s.
async fn load(
    http: &reqwest::Client,
    base: String,
    token: &str,
    query: fn(u64) -> String,
    clients: u64,
    seconds: u64,
) -> f64 {
    let requests = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, token, requests) =
            (http.clone(), base.clone(), token.to_string(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c * 7919;
            while Instant::now() < until {
                let resp = http.get(format!("{base}{}", query(i))).bearer_auth(&token).send().await;
                let resp = resp.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let page: kiln_api::LogPage = resp.json().await.unwrap();
                assert!(!page.lines.is_empty());
                requests.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    requests.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds = env_num("KILN_BENCH_SECONDS", 5);
    let lines = env_num("KILN_BENCH_LOG_LINES", 100_000);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let s3 = S3Server::start_free("kiln-bench").await;
    let fs_server = TestServer::start().await;
    let s3_server = TestServer::start_on_s3(4, s3.object_store("logs-bench")).await;
    let yaml = format!(
        "name: chatty\nstages:\n  - name: s\n    jobs:\n      build:\n        script:\n          - 'i=1; while [ $i -le {lines} ]; do echo \"line $i of a long build log, as compilers print them\"; i=$((i+1)); done'\n"
    );
    let mut bases = Vec::new();
    for s in [&fs_server, &s3_server] {
        s.apply("bench", "chatty", &yaml).await;
        let run = s.trigger("bench", "chatty", &[]).await;
        let d = s.wait_final(&run.id).await;
        assert_eq!(d.run.state, "success", "{d:#?}");
        bases.push((s, format!("{}/api/v1/runs/{}/jobs/build/logs", s.url, run.id), run.id));
    }
    // On S3, wait until the finished log left the data directory.
    let local = s3_server.data.join("logs/runs").join(&bases[1].2).join("0/1.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while local.exists() {
        assert!(Instant::now() < deadline, "the log was not moved to S3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s3.keys("kiln-bench").iter().any(|k| k.ends_with("/0/1.log")),
        "the log is an object in the bucket"
    );
    println!(
        "log page GETs of a finished {lines}-line job log: in S3 (s3s-fs 0.14.1 on loopback) vs \
         in the data directory, same machine, one run, {seconds} s each"
    );
    fn spread(i: u64) -> String {
        let lines = env_num("KILN_BENCH_LOG_LINES", 100_000);
        let from = (i.wrapping_mul(2_654_435_761) % lines.saturating_sub(1000).max(1)) + 1;
        format!("?from={from}&limit=1000")
    }
    fn tail(_: u64) -> String {
        "?tail=100".to_string()
    }
    let mut rows = Vec::new();
    for (name, query, clients) in [
        ("page of 1,000 lines, req/s, 1 client", spread as fn(u64) -> String, 1),
        ("page of 1,000 lines, req/s, 8 clients", spread, 8),
        ("tail of 100 lines, req/s, 8 clients", tail, 8),
    ] {
        let mut results = Vec::new();
        for (s, base, _) in &bases {
            results.push(load(&http, base.clone(), &s.admin_token, query, clients, seconds).await);
        }
        rows.push((name, results[0], results[1]));
    }
    println!("{:<42} {:>12} {:>12} {:>10}", "figure", "filesystem", "S3", "S3 / fs");
    for (name, fs, s3) in rows {
        println!("{name:<42} {fs:>12.1} {s3:>12.1} {:>9.2}x", s3 / fs);
    }
    fs_server.stop().await;
    s3_server.stop().await;
}
