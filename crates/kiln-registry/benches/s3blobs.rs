//! Registry blob GETs with the blobs in S3 beside the same GETs with the blobs in the data
//! directory: two Kiln servers in-process (release build, SQLite), one on the filesystem
//! blob store, one on the S3 blob store against s3s-fs (a real S3 server on loopback, files
//! on the same disk, signatures checked), the same blobs pushed to both, one run. Figures as
//! ratios (S3 / filesystem):
//!
//! - a 64 MB blob, MB/s at 8 concurrent clients;
//! - a 4 KiB blob, requests/s at 32 concurrent clients;
//! - a 1 MiB range of the 64 MB blob, requests/s at 8 concurrent clients.
//!
//! Run with `cargo xtask bench s3` or `cargo bench -p kiln-registry --bench s3blobs` (needs
//! s3s-fs: `KILN_TEST_S3S_FS` or `cargo install s3s-fs@0.14.1 --features binary --locked`).
//! Knobs: `KILN_BENCH_SECONDS` (5), `KILN_BENCH_BLOB_MB` (64).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Pushes `data` as a blob of `repo` (POST + monolithic PUT); returns its digest.
async fn push_blob(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    repo: &str,
    data: Vec<u8>,
) -> String {
    let d = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let resp = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "start upload");
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with("http") { loc } else { format!("{base}{loc}") };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let resp = http
        .put(format!("{loc}{sep}digest={d}"))
        .header("Authorization", auth)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "finish upload");
    d
}

/// `clients` loops GETting `url` (with `range`) for `seconds`: (requests/s, bytes/s).
async fn load(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    range: Option<&str>,
    clients: usize,
    seconds: u64,
) -> (f64, f64) {
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, auth) = (http.clone(), url.to_string(), auth.to_string());
        let range = range.map(str::to_string);
        let (requests, bytes) = (requests.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let mut req = http.get(&url).header("Authorization", &auth);
                if let Some(r) = &range {
                    req = req.header("Range", r);
                }
                let mut resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
                while let Some(chunk) = resp.chunk().await.unwrap() {
                    bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    (requests.load(Ordering::Relaxed) as f64 / took, bytes.load(Ordering::Relaxed) as f64 / took)
}

#[tokio::main]
async fn main() {
    let seconds = env_num("KILN_BENCH_SECONDS", 5);
    let blob_mb = env_num("KILN_BENCH_BLOB_MB", 64);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let s3 = kiln_testkit::S3Server::start(44050, "kiln-bench").await;
    let dir = tempfile::tempdir().unwrap();
    let fs_server = kiln_server::start(kiln_server::ServerConfig::new(
        dir.path().join("fs"),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let s3_config = kiln_registry::S3Config {
        endpoint: Some(s3.endpoint.clone()),
        allow_http: true,
        credentials: Some(kiln_registry::S3Credentials {
            access_key_id: kiln_testkit::S3_ACCESS_KEY.into(),
            secret_access_key: kiln_testkit::S3_SECRET_KEY.into(),
            session_token: None,
        }),
        ..kiln_registry::S3Config::from_url("s3://kiln-bench/registry").unwrap()
    };
    let s3_server = kiln_server::start(kiln_server::ServerConfig {
        registry_blobs: Some(s3_config),
        ..kiln_server::ServerConfig::new(dir.path().join("s3"), "127.0.0.1:0".parse().unwrap())
    })
    .await
    .unwrap();

    let mut big = vec![0u8; (blob_mb * 1024 * 1024) as usize];
    getrandom::fill(&mut big).unwrap();
    let mut small = vec![0u8; 4096];
    getrandom::fill(&mut small).unwrap();
    let mut targets = Vec::new();
    for server in [&fs_server, &s3_server] {
        let admin = server.first_admin_token.clone().unwrap();
        server.app.store.create_project("bench").await.unwrap();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("kiln:{admin}"))
        );
        let b = push_blob(&http, &server.url, &auth, "bench/app", big.clone()).await;
        let s = push_blob(&http, &server.url, &auth, "bench/app", small.clone()).await;
        targets.push((server.url.clone(), auth, b, s));
    }
    drop(big);
    let s3_objects = s3.keys("kiln-bench").len();
    assert_eq!(s3_objects, 2, "both blobs are objects in the bucket");

    println!(
        "registry blob GETs: blobs in S3 (s3s-fs 0.14.1 on loopback) vs in the data directory, \
         same machine, one run, {seconds} s each"
    );
    let mut rows = Vec::new();
    let figure = |name: &'static str, rate: fn((f64, f64)) -> f64| (name, rate);
    for ((name, rate), path_of, range, clients) in [
        (figure("64 MB blob GET MB/s, 8 clients", |(_, b)| b / 1048576.0), 2, None, 8),
        (figure("4 KiB blob GET req/s, 32 clients", |(r, _)| r), 3, None, 32),
        (
            figure("1 MiB range of the big blob, req/s, 8 clients", |(r, _)| r),
            2,
            Some("bytes=1048576-2097151"),
            8,
        ),
    ] {
        let mut results = Vec::new();
        for (url, auth, big, small) in &targets {
            let digest = if path_of == 2 { big } else { small };
            let url = format!("{url}/v2/bench/app/blobs/{digest}");
            results.push(rate(load(&http, &url, auth, range, clients, seconds).await));
        }
        rows.push((name, results[0], results[1]));
    }
    println!("{:<48} {:>12} {:>12} {:>10}", "figure", "filesystem", "S3", "S3 / fs");
    for (name, fs, s3) in rows {
        println!("{name:<48} {fs:>12.1} {s3:>12.1} {:>9.2}x", s3 / fs);
    }
    fs_server.stop().await;
    s3_server.stop().await;
}
