//! The pool page's elastic pool section: node groups with their provider state and the
//! autoscaler's latest events, from a real server whose group's provider fails (a command
//! that exits 1) for a job only that group's template takes.

use std::time::{Duration, Instant};

use kiln_api::autoscale::NodeGroupSpec;
use serde_json::json;

use super::Browser;
use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_page_shows_node_groups_their_failures_and_the_pool_events() {
    let s = TestServer::start_with(0).await;
    let spec = |name: &str, cmd: &str, min: u32| -> NodeGroupSpec {
        serde_json::from_value(json!({
            "name": name, "min": min, "max": 3, "idle-time": "1m",
            "node": { "cpus": 4, "memory": "8Gi", "attributes": { "arch": "arm64" } },
            "provider": { "command": [cmd], "backoff": "1h", "env": { "CLOUD_KEY": "s3cr3t" } }
        }))
        .unwrap()
    };
    s.admin.apply_node_group(&spec("arm", "/bin/false", 0)).await.unwrap();
    s.admin.apply_node_group(&spec("spare", "/bin/true", 0)).await.unwrap();
    let yaml = "name: arm\nstages:\n  - name: b\n    jobs:\n      build:\n        constraints: [[arch, LIKE, arm64]]\n        script: echo hi\n";
    s.apply("web", "arm", yaml).await;
    let run = s.admin.trigger("web", "arm", &Default::default()).await.unwrap();
    let started = Instant::now();
    while s.admin.node_groups().await.unwrap()[0].failure.is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "the provider never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let groups = s.admin.node_groups().await.unwrap();
    assert_eq!(groups[0].spec.provider.env["CLOUD_KEY"], "***", "a provider's env is never shown");

    let Some(b) = Browser::start("elastic").await else {
        s.admin.cancel(&run.id).await.unwrap();
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    let failing = b
        .wait(
            "the failing group",
            "const c = document.querySelector('table.node-groups tr[data-group=arm] [data-failing=true]'); return c && c.textContent",
        )
        .await;
    let failing = failing.as_str().unwrap();
    assert!(failing.starts_with("up failed 1×: `/bin/false up` exited with status 1"), "{failing}");
    let spare = b
        .js("return [...document.querySelectorAll('table.node-groups tr[data-group=spare] td')].map(t => t.textContent)")
        .await;
    assert_eq!(spare[1], json!("0"));
    assert_eq!(spare[2], json!("3"));
    assert_eq!(spare[3], json!("none"));
    assert_eq!(spare[6], json!("ok"));
    let kinds = b
        .wait(
            "the events",
            "const k = [...document.querySelectorAll('table.pool-events tr[data-kind]')].map(t => t.dataset.kind); return k.includes('provider-failed') && k",
        )
        .await;
    assert_eq!(kinds[0], json!("provider-failed"), "newest first: {kinds}");
    assert!(kinds.as_array().unwrap().contains(&json!("group-applied")), "{kinds}");
    let reason = b
        .js("return document.querySelector('table.pool-events tr[data-kind=provider-failed] td.reason').textContent")
        .await;
    assert!(reason.as_str().unwrap().contains("next try in 3600s"), "{reason}");
    b.shot("groups").await;
    s.admin.cancel(&run.id).await.unwrap();
    s.stop().await;
}
