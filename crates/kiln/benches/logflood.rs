//! Benchmark: a log flood through the release `kiln server` (embedded agent, process
//! executor): one job prints `KILN_BENCH_FLOOD_MB` MB (default 200) of 100-byte lines while a
//! viewer follows the run's log. Reported side by side:
//!
//! - resident memory (VmRSS from /proc) of the server idle before, at its peak during the
//!   flood, and 2 s, 5 s and 15 s after the run ended. Target: 15 s after, within 30 MB of
//!   idle ("returns close to idle");
//! - the bytes of the data directory's logs beside the bytes of output. Target: <= 1.3x
//!   (each line stored once: the job's log, and the run's log as references to it).
//!
//! Run with `cargo xtask bench logflood` or `cargo bench -p kiln --bench logflood`;
//! `KILN_BENCH_BIN` measures another `kiln` binary. Without `--bench` (as under
//! `cargo test --all-targets`) it does nothing.

// Shared with the server and pool benchmarks, which use more of it.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::{Server, env_usize, verdict};
use futures::StreamExt;
use kiln_api::TriggerRequest;

/// Target: RSS 15 s after the flood, above idle, MB.
const TARGET_AFTER_MB: f64 = 30.0;
/// Target: log bytes on disk per byte of output.
const TARGET_DISK_RATIO: f64 = 1.3;
/// Bytes per line of the flood, line feed included.
const LINE: usize = 100;

fn flood_yaml(lines: usize) -> String {
    format!(
        "name: flood\nstages:\n  - name: s\n    jobs:\n      flood:\n        script: \"yes \\\"$(printf '%0{}d' 0)\\\" | head -n {lines}\"\n",
        LINE - 1
    )
}

/// Bytes of the files under `dir`, the store's reserve file left out.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) if e.file_name() != ".reserve" => m.len(),
            _ => 0,
        })
        .sum()
}

async fn flood() -> Result<()> {
    let mb = env_usize("KILN_BENCH_FLOOD_MB", 200);
    let lines = mb * 1_000_000 / LINE;
    let server = Server::start(&["--executor", "process", "--capacity", "4"], 1).await?;
    server.pipeline("flood", &flood_yaml(lines)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.rss_mb()?;

    let started = Instant::now();
    let run = server.client.trigger("bench", "flood", &TriggerRequest::default()).await?;
    // A viewer of the run's log, as a browser tab would be.
    let viewer = {
        let follow = server.client.follow(&run.id, None, None, 1).await?;
        tokio::spawn(async move {
            follow.fold(0usize, |n, l| async move { n + usize::from(l.is_ok()) }).await
        })
    };
    let mut peak = idle;
    loop {
        peak = peak.max(server.rss_mb()?);
        let detail = server.client.run(&run.id).await?;
        if matches!(detail.run.state.as_str(), "success" | "failed" | "canceled" | "error") {
            if detail.run.state != "success" {
                bail!("the flood run ended {}:\n{}", detail.run.state, server.log());
            }
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("the flood run did not end in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let seen = tokio::time::timeout(Duration::from_secs(300), viewer).await??;
    let mut after = Vec::new();
    let ended = Instant::now();
    for at in [2u64, 5, 15] {
        tokio::time::sleep(Duration::from_secs(at).saturating_sub(ended.elapsed())).await;
        after.push((at, server.rss_mb()?));
    }
    let output = (lines * LINE) as u64;
    let stored = bytes_under(&server.data().join("logs"));
    let disk = stored as f64 / output as f64;
    let last = after.last().map_or(0.0, |a| a.1);

    println!(
        "log flood: {mb} MB of output ({lines} lines) in {:.1} s, {seen} lines seen by a viewer of the run's log",
        took.as_secs_f64()
    );
    println!("| measure | server | reference |");
    println!("|---|---|---|");
    println!("| VmRSS idle | {idle:.1} MB | |");
    println!("| VmRSS peak during the flood | {peak:.1} MB | idle {idle:.1} MB |");
    for (at, rss) in &after {
        println!("| VmRSS {at} s after | {rss:.1} MB | idle {idle:.1} MB (+{:.1}) |", rss - idle);
    }
    println!("| log bytes on disk | {stored} ({disk:.3}x) | output {output} |",);
    println!(
        "memory after: {} (target: within {TARGET_AFTER_MB} MB of idle 15 s after); disk: {} (target <= {TARGET_DISK_RATIO}x)",
        verdict(last - idle <= TARGET_AFTER_MB),
        verdict(disk <= TARGET_DISK_RATIO)
    );
    Ok(())
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(flood())
}
