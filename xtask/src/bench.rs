//! `cargo xtask bench`: the benchmarks kept in the repo, run side by side with their floors.
//!
//! - `kiln run` of a one-job pipeline vs `docker run --rm` of the same image and command,
//!   alternated in one run; the figure is the ratio of medians (target <= 1.15);
//! - the engine planning and stepping a 10,000-job DAG (criterion, `kiln-engine/benches`);
//! - a page at the end of a 2,000,000-line log beside one at its start, job log and run log
//!   (criterion, `kiln-logs/benches/pages.rs`), with the old cost (the whole log) as floor;
//! - a 200 MB log flood through the server (`kiln/benches/logflood.rs`): its RSS idle, at
//!   peak and after, and the log bytes on disk per byte of output;
//! - the gap between a job's end and its dependent's start on the process executor
//!   (`kiln-runtime/benches/gap.rs`, beside the floor of spawning `sh -c true`);
//! - the server end to end (`kiln/benches/server.rs`): trigger to container start, log line
//!   to SSE viewers, runs per second, idle memory, each beside its floor;
//! - the pool through the server (`kiln/benches/pool.rs`): 10,000 matrix tasks on 50 `kiln
//!   agent` processes (no-op executor), beside the embedded agent alone; idle agent memory;
//! - pure placement of 100,000 queued 8-CPU tasks with constraints on 10,000 simulated nodes
//!   (criterion, `kiln-scheduler/benches/placement.rs`), with its ratio to kube-scheduler's and
//!   Nomad's published rates.
//! - a 100,000-index array job through the server and 50 `kiln agent` processes (no-op
//!   executor, `kiln/benches/arrays.rs`), beside 10,000 matrix tasks; the server's peak RSS;
//! - services through the server (`kiln/benches/services.rs`): an agent lost to its
//!   instance's replacement healthy elsewhere, an instance change to discovery watchers, a
//!   rolling update of 10 instances, each beside its target;
//! - the config center through the server (`kiln/benches/config.rs`): a release reaching
//!   1,000 SSE watchers and 1,000 long polls, beside Debian's etcd 3.4 watched by 1,000
//!   clients in the same run (`etcd-server` is installed when missing);
//! - the registry beside CNCF distribution 2.8.2 (`kiln-registry/benches/registry.rs`):
//!   manifest GETs/s, blob GET throughput, pushes/s, as ratios;
//! - registry blob GETs with the blobs in S3 (s3s-fs, installed when missing) beside the
//!   data directory (`kiln-registry/benches/s3blobs.rs`), as ratios;
//! - scanning an image of 300 Debian packages against 10,000 advisories (criterion,
//!   `kiln-scan/benches/scan.rs`), as a share of its 1 s target;
//! - a job's start on a node holding its image beside one that must pull it from Kiln's
//!   registry (`kiln/benches/imagecache.rs`), as a ratio;
//! - image builds (`kiln/benches/builds.rs`): a rebuild all from the registry's layer cache
//!   beside a cold build of the same Dockerfile, as a ratio.
//! - the web UI's log page on a 1,000,000-line log in headless Chromium
//!   (`kiln-ui/benches/logview.rs`): first lines painted, DOM elements, JS heap and browser
//!   memory, at the tail and at a linked line, beside the same lines as one plain page.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::apt::Apt;
use crate::{browser, engine, images, step};

/// Rounds of the side-by-side container benchmark (after one warm-up each).
const ROUNDS: usize = 21;

/// Runs every benchmark and prints the figures.
pub fn run(only: Option<&str>) -> Result<()> {
    let want = |name: &str| only.is_none_or(|o| o == name);
    if want("docker") {
        docker_vs_kiln()?;
    }
    if want("engine") {
        println!("==> engine: plan and step a 10,000-job DAG (criterion)");
        cargo(&["bench", "-p", "kiln-engine", "--bench", "engine", "--", "--noplot"])?;
    }
    if want("logs") {
        println!(
            "==> logs: a page at the end of a 2,000,000-line log beside one at its start (criterion)"
        );
        cargo(&["bench", "-p", "kiln-logs", "--bench", "pages", "--", "--noplot"])?;
    }
    if want("logflood") {
        println!(
            "==> logflood: 200 MB of job output through the server: RSS idle/peak/after, log bytes on disk"
        );
        cargo(&["bench", "-p", "kiln", "--bench", "logflood"])?;
    }
    if want("gap") {
        println!("==> gap: job end to dependent start, process executor");
        cargo(&["bench", "-p", "kiln-runtime", "--bench", "gap"])?;
    }
    if want("server") {
        server()?;
    }
    if want("pool") {
        println!(
            "==> pool: 10,000 matrix tasks on 50 agent processes (noop executor), idle agent RSS"
        );
        cargo(&["bench", "-p", "kiln", "--bench", "pool"])?;
    }
    if want("arrays") {
        println!(
            "==> arrays: a 100,000-index array job on 50 agent processes (noop executor), beside 10,000 matrix tasks; server RSS"
        );
        cargo(&["bench", "-p", "kiln", "--bench", "arrays"])?;
    }
    if want("services") {
        println!(
            "==> services: failover after a lost agent, discovery watch latency, rolling update of 10"
        );
        cargo(&["bench", "-p", "kiln", "--bench", "services"])?;
    }
    if want("config") {
        config()?;
    }
    if want("placement") {
        println!("==> placement: 100,000 8-CPU tasks with constraints on 10,000 nodes (criterion)");
        cargo(&["bench", "-p", "kiln-scheduler", "--bench", "placement", "--", "--noplot"])?;
    }
    if want("registry") {
        registry()?;
    }
    if want("s3") {
        let s3s_fs = crate::s3s::ensure()?;
        println!("==> s3: registry blob GETs, blobs in S3 (s3s-fs) vs in the data directory");
        step::run(
            step::cargo()
                .args(["bench", "-p", "kiln-registry", "--bench", "s3blobs"])
                .env(crate::s3s::VAR, &s3s_fs),
        )?;
    }
    if want("scan") {
        println!("==> scan: an image of 300 Debian packages against 10,000 advisories (criterion)");
        cargo(&["bench", "-p", "kiln-scan", "--bench", "scan", "--", "--noplot"])?;
    }
    if want("imagecache") {
        imagecache()?;
    }
    if want("builds") {
        builds()?;
    }
    if want("logview") {
        browser::ensure(&mut Apt::default())?;
        println!(
            "==> logview: the log page on a 1,000,000-line log in Chromium beside one plain <pre> page"
        );
        cargo(&["bench", "-p", "kiln-ui", "--bench", "logview"])?;
    }
    Ok(())
}

/// Job start on a node holding its image beside one pulling it from Kiln's registry
/// (`crates/kiln/benches/imagecache.rs`, on an engine of its own).
fn imagecache() -> Result<()> {
    let docker_host = docker_host()?;
    println!("==> imagecache: job start, image on the node vs pulled from Kiln's registry");
    step::run(
        step::cargo()
            .args(["bench", "-p", "kiln", "--bench", "imagecache"])
            .env("DOCKER_HOST", &docker_host),
    )
}

fn cargo(args: &[&str]) -> Result<()> {
    step::run(step::cargo().args(args))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

/// A Docker engine that answers and holds `busybox`; its DOCKER_HOST.
fn docker_host() -> Result<String> {
    let mut apt = Apt::default();
    let docker_host = engine::ensure(&mut apt)?;
    images::ensure(&docker_host, &mut apt)?;
    Ok(docker_host)
}

/// Where cargo puts release binaries (`CARGO_TARGET_DIR` is honoured).
fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("release")
}

/// The server benchmark (`crates/kiln/benches/server.rs`) against the engine `docker_host`.
fn server() -> Result<()> {
    let docker_host = docker_host()?;
    println!(
        "==> server: trigger to container start, log line to 100 SSE viewers, 1,000 runs, idle RSS"
    );
    step::run(
        step::cargo()
            .args(["bench", "-p", "kiln", "--bench", "server"])
            .env("DOCKER_HOST", &docker_host),
    )
}

/// The config benchmark (`crates/kiln/benches/config.rs`) beside Debian's etcd.
fn config() -> Result<()> {
    if !crate::apt::is_installed("etcd-server") {
        Apt::default().install(&["etcd-server"])?;
    }
    println!(
        "==> config: a release to 1,000 SSE watchers and 1,000 long polls, beside etcd 3.4 watched by 1,000 clients"
    );
    cargo(&["bench", "-p", "kiln", "--bench", "config"])
}

/// Image builds (`crates/kiln/benches/builds.rs`): a build all from the registry's layer
/// cache beside a cold one, on the Docker engine `docker_host` (buildah installed).
fn builds() -> Result<()> {
    let docker_host = docker_host()?;
    println!("==> builds: a cached rebuild vs a cold build of the same Dockerfile (buildah)");
    step::run(
        step::cargo()
            .args(["bench", "-p", "kiln", "--bench", "builds"])
            .env("DOCKER_HOST", &docker_host),
    )
}

/// The registry beside CNCF distribution (`crates/kiln-registry/benches/registry.rs`).
fn registry() -> Result<()> {
    let mut apt = Apt::default();
    images::ensure_registry_clients(&mut apt)?;
    println!(
        "==> registry: manifest GET at 32 connections, 200 MB blob GET at 8, 100 small-image pushes from 8 clients, vs distribution 2.8.2"
    );
    cargo(&["bench", "-p", "kiln-registry", "--bench", "registry"])
}

fn docker_vs_kiln() -> Result<()> {
    let docker_host = docker_host()?;
    println!(
        "==> docker: `kiln run` of a one-job pipeline vs `docker run --rm`, same image and command"
    );
    cargo(&["build", "--release", "-p", "kiln"])?;
    let kiln = release_dir().join("kiln");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("one.yml");
    std::fs::write(
        &file,
        "name: one\nstages:\n  - name: s\n    jobs:\n      hello:\n        image: busybox\n        script: echo hello\n",
    )?;
    let kiln_cmd = || {
        let mut c = Command::new(&kiln);
        c.args(["run", &file.display().to_string(), "--executor", "docker"])
            .env("DOCKER_HOST", &docker_host)
            .env("NO_COLOR", "1");
        c
    };
    let docker_cmd = || {
        let mut c = Command::new("docker");
        c.args(["run", "--rm", "busybox", "sh", "-e", "-c", "echo hello"])
            .env("DOCKER_HOST", &docker_host);
        c
    };
    time(&mut kiln_cmd())?;
    time(&mut docker_cmd())?;
    let (mut k, mut d) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        k.push(time(&mut kiln_cmd())?);
        d.push(time(&mut docker_cmd())?);
    }
    let (km, dm) = (median(k), median(d));
    let ratio = km.as_secs_f64() / dm.as_secs_f64();
    println!("  kiln run        median {:>7.1} ms", km.as_secs_f64() * 1e3);
    println!("  docker run --rm median {:>7.1} ms", dm.as_secs_f64() * 1e3);
    println!("  ratio kiln/docker {ratio:.3} (target <= 1.15), {ROUNDS} alternating rounds");
    Ok(())
}
