//! Array jobs (`array: N`) through the server: 100,000 indexes through 50 agents on the
//! no-op executor (all done once, one failing index retried, one job record, a few stored
//! events, no log file per index), the logs of one index on demand, and a server restarted
//! in the middle of an array (nothing lost, nothing done twice).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_api::RunDetail;
use kiln_engine::{Event, Outcome};
use tokio_util::sync::CancellationToken;

use crate::support::{TestServer, host};

/// Waits (up to `limit`) until `until` holds for the run.
async fn wait(
    s: &TestServer,
    run: &str,
    limit: Duration,
    until: impl Fn(&RunDetail) -> bool,
) -> RunDetail {
    let started = Instant::now();
    loop {
        let d = s.admin.run(run).await.unwrap();
        if until(&d) {
            return d;
        }
        assert!(started.elapsed() < limit, "run {} never got there: {d:#?}", d.run.full_name());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` agents on the no-op executor, `capacity` slots each.
fn noop_agents(s: &TestServer, n: usize, capacity: u32) -> Vec<CancellationToken> {
    let token = s.server.as_ref().unwrap().agent_token.clone();
    (0..n)
        .map(|i| {
            let client = kiln_client::Client::new(&s.url, &token).unwrap();
            let config = kiln_agent::AgentConfig {
                name: format!("noop-{i:02}"),
                capacity,
                work_dir: s.dir().join(format!("agent-noop-{i:02}")),
                host: host("127.0.0.1", 8, &[]),
                image_cache_size: None,
            };
            let stop = CancellationToken::new();
            let exec = Arc::new(kiln_exec::noop::NoopExecutor::new());
            tokio::spawn(kiln_agent::run(client, exec, config, stop.clone()));
            stop
        })
        .collect()
}

/// Files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100000_index_array_runs_once_each_through_50_agents() {
    let s = TestServer::start_with(0).await;
    s.apply(
        "batch",
        "big",
        "name: big\nstages:\n  - name: s\n    jobs:\n      t:\n        array: 100000\n        retry: 1\n        env: { KILN_NOOP_FAIL: \"4242@1\" }\n        script: [\"true\"]\n",
    )
    .await;
    let agents = noop_agents(&s, 50, 8);
    let run = s.trigger("batch", "big", &[]).await;
    let d = wait(&s, &run.id, Duration::from_secs(900), |d| crate::support::is_final(&d.run.state))
        .await;
    assert_eq!(d.run.state, "success", "{:?}", d.run.reason);
    assert_eq!(d.jobs.len(), 1);
    let a = d.jobs[0].array.as_ref().expect("an array job shows its progress");
    assert_eq!((a.size, a.succeeded, a.failed, a.canceled), (100_000, 100_000, 0, 0));
    assert_eq!((a.running, a.queued, a.pending), (0, 0, 0));
    assert_eq!(a.retries, 1, "index 4242 failed once and ran again");
    assert_eq!(a.durations.iter().map(|b| b.count).sum::<u32>(), 100_001);
    // The store: one job record, events in batches (not one per index), and the stored
    // success of each index exactly once.
    let id: kiln_store::RunId = run.id.parse().unwrap();
    let store = kiln_store::Store::open(s.data.join("kiln.db")).await.unwrap();
    assert_eq!(store.jobs(&id).await.unwrap().len(), 1);
    let events = store.events(&id).await.unwrap();
    assert!(events.len() < 5_000, "{} events stored for 100,000 indexes", events.len());
    let mut ok = vec![0u8; 100_000];
    let mut failed = Vec::new();
    for e in &events {
        if let Event::IndexesExited { exits, .. } = &e.event {
            for x in exits {
                match x.outcome {
                    Outcome::Exited(0) => ok[x.index as usize] += 1,
                    _ => failed.push((x.index, x.attempt)),
                }
            }
        }
    }
    assert!(ok.iter().all(|&n| n == 1), "every index succeeded once");
    assert_eq!(failed, [(4242, 1)]);
    // No index printed: no log file of an index exists.
    let logs = s.data.join("logs").join("runs").join(&run.id);
    assert!(files_under(&logs) < 10, "{} log files for a run of one array job", files_under(&logs));
    // An index's log on demand: it printed nothing.
    let page = s.admin.index_logs(&run.id, "t", 4242, None, 1, 100).await.unwrap();
    assert!(page.closed && page.lines.is_empty());
    for a in agents {
        a.cancel();
    }
    s.stop().await;
}

const SLOW: &str = r#"
name: slow
stages:
  - name: s
    jobs:
      t:
        array: 600
        parallelism: 24
        script:
          - sleep 0.05
          - echo "index $KILN_ARRAY_INDEX"
          - echo "$KILN_ARRAY_INDEX" >> "$DONE"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restarted_mid_array_loses_nothing_and_does_no_stored_index_twice() {
    let mut s = TestServer::start_with(0).await;
    let done = s.dir().join("done");
    let yaml = SLOW.replace("$DONE", done.to_str().unwrap());
    s.apply("batch", "slow", &yaml).await;
    // Agents with a token of their own: the embedded agent's is new at each start.
    let token = s
        .admin
        .create_token(&kiln_api::CreateToken { name: "pool".into(), role: "agent".into(), project: None })
        .await
        .unwrap();
    let agents: Vec<_> = (0..3)
        .map(|i| s.agent_with(&token.secret, &format!("p{i}"), 8, host("127.0.0.1", 8, &[])))
        .collect();
    let run = s.trigger("batch", "slow", &[]).await;
    wait(&s, &run.id, Duration::from_secs(120), |d| {
        d.jobs[0].array.as_ref().is_some_and(|a| a.succeeded >= 150)
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr;
    s.stop_server().await;
    // What the store holds as done when the server went away.
    let id: kiln_store::RunId = run.id.parse().unwrap();
    let stored = {
        let store = kiln_store::Store::open(s.data.join("kiln.db")).await.unwrap();
        let mut stored = std::collections::BTreeSet::new();
        for e in store.events(&id).await.unwrap() {
            if let Event::IndexesExited { exits, .. } = e.event {
                stored.extend(
                    exits.iter().filter(|x| x.outcome == Outcome::Exited(0)).map(|x| x.index),
                );
            }
        }
        stored
    };
    assert!(stored.len() >= 150, "{} stored", stored.len());
    // Back on the same address, where the agents poll again.
    s.start_again_with(|c| c.listen = addr).await;

    let d = wait(&s, &run.id, Duration::from_secs(180), |d| crate::support::is_final(&d.run.state))
        .await;
    assert_eq!(d.run.state, "success", "{:?}", d.run.reason);
    let a = d.jobs[0].array.as_ref().unwrap();
    assert_eq!((a.succeeded, a.failed, a.canceled), (600, 0, 0));
    // Each index finished at least once, and one whose success was stored before the
    // restart never ran again.
    let text = std::fs::read_to_string(&done).unwrap();
    let mut runs: BTreeMap<u32, usize> = BTreeMap::new();
    for line in text.lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    assert_eq!(runs.len(), 600, "every index ran");
    for i in &stored {
        assert_eq!(runs[i], 1, "index {i} was stored done before the restart, and ran again");
    }
    // The logs of an index on demand.
    let page = s.admin.index_logs(&run.id, "t", 599, None, 1, 100).await.unwrap();
    assert!(page.lines.iter().any(|l| l.text == "index 599"), "{:?}", page.lines);
    for a in agents {
        a.stop().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_index_requests_say_what_exists() {
    let s = TestServer::start().await;
    s.apply(
        "batch",
        "small",
        "name: small\nstages:\n  - name: s\n    jobs:\n      t:\n        array: 3\n        script: [\"echo $KILN_ARRAY_INDEX\"]\n      plain:\n        script: [\"true\"]\n",
    )
    .await;
    let run = s.trigger("batch", "small", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success");
    let page = s.admin.index_logs(&run.id, "t", 2, None, 1, 100).await.unwrap();
    assert_eq!(page.lines.last().map(|l| l.text.as_str()), Some("2"), "{:?}", page.lines);
    assert!(page.closed, "an index's log ends with it");
    let e = s.admin.index_logs(&run.id, "t", 3, None, 1, 100).await.unwrap_err().to_string();
    assert!(e.contains("has indexes 0 to 2, not 3"), "{e}");
    let e = s.admin.index_logs(&run.id, "plain", 0, None, 1, 100).await.unwrap_err().to_string();
    assert!(e.contains("is not an array job"), "{e}");
    // A workflow with a bad array is refused with where and what.
    let bad = s
        .apply_as(
            &s.admin,
            "batch",
            "bad",
            "name: bad\nstages:\n  - name: s\n    jobs:\n      t:\n        array: 10000000\n        script: [\"true\"]\n",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("expected 1 to 1000000 indexes"), "{bad}");
    s.stop().await;
}
