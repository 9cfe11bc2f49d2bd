//! Benchmark: a job's start on a node whose engine holds its image, beside the same job on
//! a node that must pull it from Kiln's registry first (what ImageLocality placement and
//! `prepull` save).
//!
//! A real server with one Docker agent on an engine of its own (`PrivateEngine`), a 64 MiB
//! image (busybox plus one layer of random bytes) pushed to the server's registry. Rounds
//! alternate: "holds" runs the job with the image on the engine; "pulls" removes it first,
//! so the agent pulls it (with the job's pull token) before the container starts. Per run:
//! `job.started_at - run.created_at` (the server's clock). Reported: medians and their
//! ratio. Run with `cargo bench -p kiln --bench imagecache` (`DOCKER_HOST` must
//! answer and hold busybox; root, for the private engine) or `cargo xtask bench imagecache`.
//! Knobs: `KILN_BENCH_ROUNDS` (10), `KILN_BENCH_IMAGE_MIB` (64).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln_testkit::{PrivateEngine, TestServer};

fn knob(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The docker CLI on `engine` with its own config directory `config`.
fn docker(engine: &PrivateEngine, config: &std::path::Path, args: &[&str], input: Option<&str>) {
    let mut c = Command::new("docker");
    c.args(args).env("DOCKER_HOST", &engine.host).env("DOCKER_CONFIG", config);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("docker CLI runs");
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn main() {
    let rounds = knob("KILN_BENCH_ROUNDS", 10);
    let mib = knob("KILN_BENCH_IMAGE_MIB", 64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let engine = PrivateEngine::start();
    rt.block_on(async {
        let s = TestServer::start_with(0).await;
        s.admin.create_project("bench").await.unwrap();
        let host = s.url.trim_start_matches("http://").to_string();
        let image = format!("{host}/bench/big:1");
        engine.make_image("busybox:latest", &image, mib * 1024);
        let config = tempfile::tempdir().unwrap();
        docker(&engine, config.path(), &["login", &host, "-u", "admin", "--password-stdin"], Some(&s.admin_token));
        docker(&engine, config.path(), &["push", &image], None);
        docker(&engine, config.path(), &["logout", &host], None);
        let mut facts = kiln_testkit::host("127.0.0.1", 8, &[]);
        facts.ports = Some(kiln_api::pool::PortRange { start: 48650, end: 48699 });
        let _agent = s.docker_agent_on(&engine.host, "bench", 1, facts, None).await;
        let yaml = format!(
            "name: start\nstages:\n  - name: s\n    jobs:\n      j:\n        image: {image}\n        script: \"true\"\n"
        );
        s.apply("bench", "start", &yaml).await;
        let start = || async {
            let run = s.trigger("bench", "start", &[]).await;
            let d = s.wait_final(&run.id).await;
            assert_eq!(d.run.state, "success", "{d:#?}");
            let started = d.jobs[0].started_at.expect("the job started");
            (started - d.run.created_at).to_std().unwrap_or_default()
        };
        // Warm-up: the agent registered, the image on the engine.
        start().await;
        let (mut holds, mut pulls) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            holds.push(start().await);
            let out = engine.docker(&["rmi", &image]);
            assert!(out.status.success(), "rmi: {}", String::from_utf8_lossy(&out.stderr));
            assert!(!engine.has(&image));
            pulls.push(start().await);
            assert!(engine.has(&image), "the job pulled it");
            eprintln!("round {}: holds {} / pulls {}", round + 1, ms(holds[holds.len() - 1]), ms(pulls[pulls.len() - 1]));
        }
        let (h, p) = (median(holds), median(pulls));
        println!(
            "job start, trigger to container started ({mib} MiB image from Kiln's registry, {rounds} rounds): \
             node holds the image {} vs must pull it {}: pulling costs {:.1}x",
            ms(h),
            ms(p),
            p.as_secs_f64() / h.as_secs_f64().max(1e-9)
        );
        s.stop().await;
    });
}
