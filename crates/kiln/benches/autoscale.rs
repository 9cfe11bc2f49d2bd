//! Benchmark: the elastic pool 0 -> N -> 0 with the command provider and real `kiln agent`
//! processes (release builds, process executor), through a real `kiln server` that has no
//! agent of its own.
//!
//! A node group `bench` (min 0, max N, 4 CPUs and 4 slots per node, idle time 2 s) whose hook
//! starts one `kiln agent` per node asked for and stops the named ones (the same contract as
//! `crates/kiln/tests/it/elastic.rs`). A pipeline of 4 x N jobs of 1 CPU each (`sleep 2`,
//! constrained to the group) is triggered on an empty pool. Measured, on the server's clock:
//!
//! - `first node`: first queued task (the trigger) to the first `node-registered` event;
//! - `work`: the work's own time, first job start to last job end;
//! - `all done`: the trigger to the last job's end;
//! - `back to 0`: the trigger to the last `node-removed` event;
//! - `overhead`: `back to 0` minus `work` minus the idle time (what the autoscaler, the
//!   hook and the agents' starts and stops added), target < 10 s for N = 8.
//!
//! Run with `cargo xtask bench autoscale` or `cargo bench -p kiln --bench autoscale`.
//! Knobs: `KILN_BENCH_NODES` (8). Without `--bench` (as under `cargo test --all-targets`) it
//! does nothing.

// Shared with the other server benchmarks.
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Server, diff_ms, env_usize, kiln_bin, verdict};
use kiln_api::TriggerRequest;
use kiln_api::autoscale::NodeGroupSpec;

/// Target: what the pool adds to the work and its idle time, ms.
const TARGET_OVERHEAD_MS: f64 = 10_000.0;
/// The group's idle time.
const IDLE_S: u64 = 2;

fn hook(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let script = format!(
        r#"#!/bin/sh
dir='{dir}'
pu=''; if [ "$(id -u)" = 0 ]; then pu='--process-user root'; fi
case "$1" in
  up)
    for name in $KILN_POOL_NODES; do
      setsid '{kiln}' agent --name "$name" --token-file "$dir/agent.token" --executor process \
        $pu --work-dir "$dir/work-$name" $KILN_AGENT_ARGS \
        > "$dir/$name.log" 2>&1 < /dev/null &
      echo $! > "$dir/$name.pid"
    done ;;
  down)
    shift
    for name in "$@"; do
      if [ -f "$dir/$name.pid" ]; then kill "$(cat "$dir/$name.pid")"; rm "$dir/$name.pid"; fi
    done ;;
esac
"#,
        dir = dir.display(),
        kiln = kiln_bin().display(),
    );
    let path = dir.join("hook.sh");
    std::fs::write(&path, script)?;
    Ok(path)
}

fn jobs(n: usize) -> String {
    let mut yaml = String::from("name: burst\nstages:\n  - name: s\n    jobs:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "      j{i}:\n        resources: {{ cpu: 1, memory: 64Mi }}\n        constraints: [[group, LIKE, bench]]\n        script: [\"sleep 2\"]\n"
        ));
    }
    yaml
}

struct Killer(std::path::PathBuf);

impl Drop for Killer {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

async fn bench() -> Result<()> {
    let nodes = env_usize("KILN_BENCH_NODES", 8).max(1);
    let dir = tempfile::tempdir()?;
    let _killer = Killer(dir.path().to_path_buf());
    let server = Server::start(&["--capacity", "0"], 0).await?;
    let token = server
        .client
        .create_token(&kiln_api::CreateToken {
            name: "pool".into(),
            role: "agent".into(),
            project: None,
        })
        .await?;
    std::fs::write(dir.path().join("agent.token"), &token.secret)?;
    let hook = hook(dir.path())?;
    let spec: NodeGroupSpec = serde_json::from_value(serde_json::json!({
        "name": "bench", "min": 0, "max": nodes, "idle-time": format!("{IDLE_S}s"),
        "node": { "cpus": 4, "memory": "4Gi", "capacity": 4 },
        "provider": { "command": ["sh", hook.display().to_string()], "timeout": "60s" }
    }))?;
    server.client.apply_node_group(&spec).await?;
    server.pipeline("burst", &jobs(4 * nodes)).await?;
    println!(
        "==> 0 -> {nodes} -> 0: {} 1-CPU jobs of 2 s on 4-CPU nodes asked from a command hook",
        4 * nodes
    );
    let t = Instant::now();
    let run = server.client.trigger("bench", "burst", &TriggerRequest::default()).await?;
    let queued = run.created_at;
    let detail = loop {
        let d = server.client.run(&run.id).await?;
        if d.run.finished_at.is_some() {
            break d;
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the run did not end within 5 minutes:\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if detail.run.state != "success" {
        bail!("the run ended {}:\n{}", detail.run.state, server.log());
    }
    let first_start =
        detail.jobs.iter().filter_map(|j| j.started_at).min().context("no job started")?;
    let last_end =
        detail.jobs.iter().filter_map(|j| j.finished_at).max().context("no job ended")?;
    let removed = loop {
        let groups = server.client.node_groups().await?;
        let events = server.client.pool_events(Some("bench"), None, 1000).await?;
        let removed: Vec<_> = events.iter().filter(|e| e.kind == "node-removed").collect();
        if groups[0].nodes.is_empty() && !removed.is_empty() {
            let registered =
                events.iter().filter(|e| e.kind == "node-registered").collect::<Vec<_>>();
            let asked: usize =
                events.iter().filter(|e| e.kind == "scale-out").map(|e| e.nodes.len()).sum();
            println!(
                "  nodes asked for: {asked} (the queue needs {nodes}); registered {}, removed {}",
                registered.len(),
                removed.len()
            );
            let first_node = registered.first().context("no node registered")?.at;
            println!(
                "  first node:  {:>7.0} ms after the first queued task",
                diff_ms(first_node, queued)
            );
            break removed.iter().map(|e| e.at).max().context("no removal")?;
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the pool did not return to 0 within 5 minutes:\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let work = diff_ms(last_end, first_start);
    let done = diff_ms(last_end, queued);
    let total = diff_ms(removed, queued);
    let overhead = total - work - (IDLE_S * 1000) as f64;
    println!("  work:        {work:>7.0} ms (first job start to last job end)");
    println!("  all done:    {done:>7.0} ms after the first queued task");
    println!("  back to 0:   {total:>7.0} ms after the first queued task (idle time {IDLE_S} s)");
    println!(
        "  overhead:    {overhead:>7.0} ms (back to 0 - work - idle time), target < {TARGET_OVERHEAD_MS:.0} ms: {}",
        verdict(overhead < TARGET_OVERHEAD_MS)
    );
    Ok(())
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}
