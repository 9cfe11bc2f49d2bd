//! Benchmark: an image build job (`build:`) whose every step comes from the layer cache in
//! Kiln's registry, beside a cold build of the same Dockerfile, in the same run.
//!
//! A release `kiln server --executor docker` (its embedded agent on the Docker engine at
//! `DOCKER_HOST`, builds in the `kiln-builder` image) builds a two-stage Dockerfile from a
//! local git repository (busybox, a stage that makes a few MB of files and spends about 5 s
//! of CPU as a compile step would, a final stage that keeps the result). Each round: a
//! **cold** build (a new round number names a new repository, whose cache repository no
//! build used, in a new builder container) then the same build again, **cached** (every step
//! from `<name>/cache` in the registry, pulled into a fresh builder container). The figure is
//! each build job's duration (`finished_at - started_at`, the server's clock: checkout,
//! builder container, buildah, push), with the log's "N of M steps from the cache", and the
//! ratio of the medians. The first round is a warm-up (the builder image is made then).
//!
//! Run with `cargo xtask bench builds` or `cargo bench -p kiln --bench builds`. Knobs
//! (environment): `KILN_BENCH_BUILD_ROUNDS` (5), `KILN_BENCH_BIN`. Without `--bench` (as under
//! `cargo test --all-targets`) it does nothing.

#[allow(dead_code)]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Dist, Server, env_usize};
use kiln_api::TriggerRequest;

/// The Dockerfile: the first stage does some work (a few MB of files, and about 5 s of CPU
/// compressing, as a compile step would), the second keeps its result.
const DOCKERFILE: &str = r#"FROM scratch AS work
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "/out"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox seq 1 400000 > /out/numbers && /bin/busybox md5sum /out/numbers > /out/sum"]
RUN ["/bin/busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /bin/busybox seq 1 1000000 | /bin/busybox gzip -9 | /bin/busybox md5sum; done > /out/sums"]
FROM scratch
COPY --from=work /bin/busybox /bin/busybox
COPY --from=work /out /out
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"#;

/// The pipeline: one build job, its tag (and so its cache repository) set by the round.
const WORKFLOW: &str = r#"name: build
params:
  round: { type: string }
source: { repository: '@REPO@' }
stages:
  - name: build
    jobs:
      image:
        build:
          tags: ["bench-${{ params.round }}:1"]
"#;

/// A local git repository holding the Dockerfile and busybox.
fn repository(dir: &std::path::Path) -> Result<String> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo)?;
    std::fs::write(repo.join("Dockerfile"), DOCKERFILE)?;
    std::fs::copy("/usr/bin/busybox", repo.join("busybox")).context("busybox on this host")?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "x"],
    ] {
        let out = Command::new("git").args(args).current_dir(&repo).output()?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(repo.display().to_string())
}

/// Runs the build of `round` and returns its job's duration, in ms, and the log's
/// "N of M steps from the cache".
async fn build(server: &Server, round: &str) -> Result<(f64, String)> {
    let req = TriggerRequest { params: [("round".to_string(), round.to_string())].into() };
    let run = server.client.trigger("bench", "build", &req).await?;
    let t = Instant::now();
    loop {
        let d = server.client.run(&run.id).await?;
        if matches!(d.run.state.as_str(), "success" | "failure" | "canceled" | "timeout" | "error")
        {
            let job = d.jobs.iter().find(|j| j.id == "image").context("job image")?;
            let logs = server.client.logs(&run.id, Some("image"), None, 1, 10_000).await?;
            let text: Vec<String> = logs.lines.into_iter().map(|l| l.text).collect();
            if d.run.state != "success" {
                bail!("round {round}: {}\n{}", d.run.state, text.join("\n"));
            }
            let (Some(a), Some(b)) = (job.started_at, job.finished_at) else {
                bail!("job image without times");
            };
            let cache = text
                .iter()
                .find_map(|l| {
                    l.strip_prefix("kiln build: ").filter(|l| l.ends_with("from the cache"))
                })
                .unwrap_or("no cache line")
                .to_string();
            let ms = (b - a).num_microseconds().unwrap_or_default() as f64 / 1000.0;
            return Ok((ms, cache));
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("round {round} did not end in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let rounds = env_usize("KILN_BENCH_BUILD_ROUNDS", 5);
    println!("image build: cold vs every step from the registry's layer cache, {rounds} rounds");
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let server = Server::start(&["--executor", "docker"], 1).await?;
    server.pipeline("build", &WORKFLOW.replace("@REPO@", &repo)).await?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for r in 0..=rounds {
        let round = format!("{stamp}-{r}");
        let (c, c_steps) = build(&server, &round).await?;
        let (w, w_steps) = build(&server, &round).await?;
        if r == 0 {
            println!("  warm-up: cold {c:.0} ms ({c_steps}), cached {w:.0} ms ({w_steps})");
            continue;
        }
        println!("  round {r}: cold {c:.0} ms ({c_steps}), cached {w:.0} ms ({w_steps})");
        cold.push(c);
        cached.push(w);
    }
    let (cold, cached) = (Dist::of(cold), Dist::of(cached));
    println!("cold build:   {}", cold.line());
    println!("cached build: {}", cached.line());
    println!(
        "cached / cold (medians): {:.2} ({:.2}x faster)",
        cached.p50 / cold.p50,
        cold.p50 / cached.p50
    );
    Ok(())
}
