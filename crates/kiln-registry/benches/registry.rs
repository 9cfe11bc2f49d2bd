//! Kiln's registry side by side with CNCF distribution 2.8.2 (Debian's `docker-registry`), same
//! machine, same data, one run; figures as ratios (Kiln / distribution):
//!
//! - manifest GET requests/s at 32 connections (wrk, 10 s), target >= 5x;
//! - 200 MB blob GET throughput at 8 connections (wrk, 10 s), target >= 1.0x;
//! - 100 small-image pushes (config + one unique layer + manifest, the docker client's
//!   HEAD/POST/PUT sequence) into one repository from 8 clients, pushes/s, target >= 2x.
//!
//! Kiln runs in-process (`kiln_server::start`, release build, SQLite in a temporary data
//! directory; the repository is public so both are read anonymously); distribution runs
//! `docker-registry serve` with a filesystem root in a temporary directory. Run with
//! `cargo xtask bench registry` or `cargo bench -p kiln-registry --bench registry`.
//! Knobs: `KILN_BENCH_SECONDS` (10), `KILN_BENCH_BLOB_MB` (200), `KILN_BENCH_PUSHES` (100).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One registry under test: its base URL and the Authorization header to push with.
#[derive(Clone)]
struct Target {
    name: &'static str,
    base: String,
    auth: Option<String>,
}

impl Target {
    fn req(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = http.request(method, url);
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// HEAD, then POST + PUT if missing (what docker push does per blob).
    async fn push_blob(&self, http: &reqwest::Client, repo: &str, data: Vec<u8>) -> String {
        let d = digest(&data);
        let head = self
            .req(http, reqwest::Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        if head.status().is_success() {
            return d;
        }
        let resp = self
            .req(http, reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}: start upload", self.name);
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") { loc } else { format!("{}{loc}", self.base) };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = self
            .req(http, reqwest::Method::PUT, &format!("{loc}{sep}digest={d}"))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}: finish upload", self.name);
        d
    }

    async fn push_image(&self, http: &reqwest::Client, repo: &str, tag: &str, layer: Vec<u8>) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers"}},"tag":"{tag}"}}"#
        );
        let (config_len, layer_len) = (config.len(), layer.len());
        let c = self.push_blob(http, repo, config.into_bytes()).await;
        let l = self.push_blob(http, repo, layer).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": c, "size": config_len},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": l, "size": layer_len}],
        });
        let resp = self
            .req(http, reqwest::Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
            .body(serde_json::to_vec(&manifest).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}: manifest", self.name);
    }
}

/// Runs wrk; returns (requests/s, bytes/s).
fn wrk(url: &str, connections: u32, seconds: u64) -> (f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"])
        .args(["-H", "Accept: application/vnd.docker.distribution.manifest.v2+json"])
        .arg(url)
        .output()
        .expect("wrk is installed (Debian `wrk`; `cargo xtask images` installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(!text.contains("Non-2xx"), "wrk saw errors from {url}:\n{text}");
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no `{name}` in wrk output:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    let transfer = field("Transfer/sec:");
    let (num, unit) = transfer.split_at(transfer.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unknown wrk unit {other}"),
    };
    (rps, num.parse::<f64>().unwrap() * scale)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Distribution(Child);

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_distribution(dir: &std::path::Path, port: u16) -> Distribution {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed (Debian `docker-registry`)");
    Distribution(child)
}

async fn wait_up(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if http.get(url).send().await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pushes(t: &Target, http: &reqwest::Client, n: u64, clients: u64) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (t, http, next) = (t.clone(), http.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let mut layer = vec![0u8; 4096];
                getrandom::fill(&mut layer).unwrap();
                t.push_image(&http, "bench/pushes", &format!("p{i}"), layer).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds = env_num("KILN_BENCH_SECONDS", 10);
    let blob_mb = env_num("KILN_BENCH_BLOB_MB", 200);
    let n_pushes = env_num("KILN_BENCH_PUSHES", 100);
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dist_port = free_port();
    let _dist = start_distribution(dir.path(), dist_port);
    let server = kiln_server::start(kiln_server::ServerConfig::new(
        dir.path().join("kiln"),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let admin = server.first_admin_token.clone().unwrap();
    server.app.store.create_project("bench").await.unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("kiln:{admin}"))
    );
    let kiln = Target { name: "kiln", base: server.url.clone(), auth: Some(basic) };
    let dist =
        Target { name: "distribution", base: format!("http://127.0.0.1:{dist_port}"), auth: None };
    wait_up(&http, &format!("{}/v2/", dist.base)).await;

    // The same data in both: one small image, one big blob.
    let mut big = vec![0u8; (blob_mb * 1024 * 1024) as usize];
    getrandom::fill(&mut big[..1 << 20]).unwrap();
    for chunk in 1..big.len() / (1 << 20) {
        let (head, tail) = big.split_at_mut(chunk << 20);
        tail[..1 << 20].copy_from_slice(&head[..1 << 20]);
        tail[0] = chunk as u8;
    }
    let big_digest = digest(&big);
    for t in [&kiln, &dist] {
        t.push_image(&http, "bench/app", "v1", b"a small layer".to_vec()).await;
        if want("blob") {
            t.push_blob(&http, "bench/app", big.clone()).await;
        }
    }
    drop(big);
    server.app.registry.set_public("bench/app", true).await.unwrap();

    println!(
        "registry benchmark: kiln (in-process, release) vs distribution 2.8.2, same machine, one run"
    );
    let mut rows = Vec::new();
    if want("manifest") {
        let path = "/v2/bench/app/manifests/v1";
        let (k, _) = wrk(&format!("{}{path}", kiln.base), 32, seconds);
        let (d, _) = wrk(&format!("{}{path}", dist.base), 32, seconds);
        rows.push(("manifest GET req/s, 32 connections", k, d, 5.0));
    }
    if want("blob") {
        let path = format!("/v2/bench/app/blobs/{big_digest}");
        let (_, k) = wrk(&format!("{}{path}", kiln.base), 8, seconds);
        let (_, d) = wrk(&format!("{}{path}", dist.base), 8, seconds);
        rows.push(("200 MB blob GET MB/s, 8 connections", k / 1048576.0, d / 1048576.0, 1.0));
    }
    if want("push") {
        let k = pushes(&kiln, &http, n_pushes, 8).await;
        let d = pushes(&dist, &http, n_pushes, 8).await;
        rows.push(("small-image pushes/s, 8 clients, one repository", k, d, 2.0));
    }
    println!(
        "{:<50} {:>12} {:>14} {:>8} {:>8}",
        "figure", "kiln", "distribution", "ratio", "target"
    );
    for (name, k, d, target) in rows {
        let ratio = k / d;
        let mark = if ratio >= target { "ok" } else { "MISSED" };
        println!("{name:<50} {k:>12.1} {d:>14.1} {ratio:>7.2}x {:>6}x {mark}", target);
    }
    server.stop().await;
}
