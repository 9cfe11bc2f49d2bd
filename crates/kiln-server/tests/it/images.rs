//! The agents' image cache with real containers, each agent on a Docker engine of its own
//! (`PrivateEngine`: nodes of a real pool do not share an engine): a job whose image is on
//! one node only lands there when both fit (ImageLocality), `prepull` (the API and a
//! workflow's `prepull:`) puts an image of Kiln's registry on the selected nodes only (with
//! a pull token of its project), and an
//! agent evicts least recently used images under its budget but never one a running task
//! uses. (A job pulling a private image with its job token is `kiln`'s
//! `a_docker_job_pulls_a_private_image_of_the_registry`.) Host ports 48300-48399 and
//! 48600-48699.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln_api::pool::{AttrValue, NodeInfo, PrepullRequest, PrepullStatus};
use kiln_testkit::PrivateEngine;
use kiln_testkit::wait::until;

use crate::support::{TestServer, job, log_text, on_loopback};

/// Waits until the nodes (by name) satisfy `ok`.
async fn nodes_until(
    s: &TestServer,
    what: &str,
    ok: impl Fn(&BTreeMap<String, NodeInfo>) -> bool,
) -> BTreeMap<String, NodeInfo> {
    until(what, Duration::from_secs(60), Duration::from_millis(100), || async {
        let nodes: BTreeMap<String, NodeInfo> =
            s.admin.nodes().await.unwrap().into_iter().map(|n| (n.name.clone(), n)).collect();
        if ok(&nodes) { Ok(nodes) } else { Err(nodes) }
    })
    .await
}

/// Whether `node` reports an image tagged `tag`.
fn holds(nodes: &BTreeMap<String, NodeInfo>, node: &str, tag: &str) -> bool {
    nodes.get(node).is_some_and(|n| n.images.iter().any(|i| i.tags.iter().any(|t| t == tag)))
}

/// Runs pipeline `name` of project `cache` to its end; returns the node its job ran on.
async fn run_on(s: &TestServer, name: &str, image: &str) -> String {
    let yaml = format!(
        "name: {name}\nstages:\n  - name: s\n    jobs:\n      j:\n        image: {image}\n        \
         resources: {{ cpu: 1 }}\n        script: echo \"ran on $KILN_NODE\"\n"
    );
    s.apply("cache", name, &yaml).await;
    let run = s.trigger("cache", name, &[]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    let lines = log_text(s, &run.id, Some("j")).await;
    let line = lines.iter().find_map(|l| l.strip_prefix("ran on ")).map(str::to_string);
    line.unwrap_or_else(|| panic!("no node in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_image_is_on_one_node_only_lands_there_when_both_fit() {
    let (big_engine, small_engine) = (PrivateEngine::start(), PrivateEngine::start());
    big_engine.make_image("busybox:latest", "kiln-test/only-here:1", 256);
    let s = TestServer::start_with(0).await;
    // Bin-packing alone prefers `small` (4 CPUs to `big`'s 8); only `big` holds the image.
    let big_host = on_loopback(&[], 48300);
    let mut small_host = on_loopback(&[], 48600);
    small_host.resources.as_mut().unwrap().cpu_millis = 4000;
    let _big = s.docker_agent_on(&big_engine.host, "big", 2, big_host, None).await;
    let _small = s.docker_agent_on(&small_engine.host, "small", 2, small_host, None).await;
    let nodes = nodes_until(&s, "both nodes ready, reporting their images", |n| {
        n.values().filter(|n| n.state == "ready").count() == 2
            && holds(n, "big", "kiln-test/only-here:1")
            && holds(n, "small", "busybox:latest")
    })
    .await;
    assert!(!holds(&nodes, "small", "kiln-test/only-here:1"), "{nodes:#?}");

    // An image both hold: bin-packing decides.
    assert_eq!(run_on(&s, "common", "busybox").await, "small");
    // The image only `big` holds: it goes there, and `small` never tried to pull it.
    assert_eq!(run_on(&s, "local", "kiln-test/only-here:1").await, "big");
    assert_eq!(run_on(&s, "again", "kiln-test/only-here:1").await, "big");
    assert!(!small_engine.has("kiln-test/only-here:1"));
    s.stop().await;
}

/// Pushes busybox to the server's registry as `image` with the docker CLI of the shared
/// engine (its own config: no login is left behind) and removes it there again.
fn push_busybox(s: &TestServer, image: &str) {
    let host = s.url.trim_start_matches("http://").to_string();
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str], input: Option<&str>| {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_CONFIG", config.path()).stdin(Stdio::piped());
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("docker CLI runs");
        if let Some(text) = input {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker(&["login", &host, "-u", "admin", "--password-stdin"], Some(&s.admin_token));
    docker(&["tag", "busybox:latest", image], None);
    docker(&["push", image], None);
    docker(&["rmi", image], None);
}

/// Follows a prepull until every node answered.
async fn prepull_done(s: &TestServer, status: PrepullStatus) -> PrepullStatus {
    until("the prepull to end", Duration::from_secs(60), Duration::from_millis(100), || async {
        let now = s.admin.prepull_status(&status.id).await.unwrap();
        if now.done { Ok(now) } else { Err(now) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepull_puts_an_image_of_the_registry_on_the_selected_nodes_only() {
    let (engine_a, engine_b) = (PrivateEngine::start(), PrivateEngine::start());
    let s = TestServer::start_with(0).await;
    s.admin.create_project("cache").await.unwrap();
    let image = format!("{}/cache/tools:1", s.url.trim_start_matches("http://"));
    push_busybox(&s, &image);
    let zone = |z: &str| [("zone", AttrValue::Text(z.into()))];
    let _a = s.docker_agent_on(&engine_a.host, "a", 1, on_loopback(&zone("a"), 48300), None).await;
    let _b = s.docker_agent_on(&engine_b.host, "b", 1, on_loopback(&zone("b"), 48600), None).await;
    nodes_until(&s, "both nodes ready", |n| n.values().filter(|n| n.state == "ready").count() == 2)
        .await;

    let req = PrepullRequest {
        image: image.clone(),
        selector: BTreeMap::from([("zone".to_string(), "a".to_string())]),
    };
    let started = s.admin.prepull(&req).await.unwrap();
    let names: Vec<&str> = started.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["a"], "{started:#?}");
    let done = prepull_done(&s, started).await;
    assert_eq!(done.nodes[0].state, "pulled", "{done:#?}");
    // Pulled with the project's pull token: neither engine was ever logged in.
    assert!(engine_a.has(&image), "a holds it");
    assert!(!engine_b.has(&image), "b was not selected");
    nodes_until(&s, "a to report the image", |n| holds(n, "a", &image)).await;

    // A workflow's `prepull:` warms the nodes its jobs can run on when a run starts: here
    // the job is held to zone b, so b only.
    let second = image.replace(":1", ":2");
    push_busybox(&s, &second);
    let yaml = format!(
        "name: warm\nprepull: [\"{second}\"]\nstages:\n  - name: s\n    jobs:\n      j:\n        \
         image: busybox\n        constraints: [[zone, LIKE, b]]\n        script: echo warm\n"
    );
    s.apply("cache", "warm", &yaml).await;
    let run = s.trigger("cache", "warm", &[]).await;
    assert_eq!(s.wait_final(&run.id).await.run.state, "success");
    nodes_until(&s, "b to report the prepulled image", |n| holds(n, "b", &second)).await;
    assert!(engine_b.has(&second) && !engine_a.has(&second), "only zone b was warmed");

    // A tag the registry lacks fails on the node, saying why; the other node is untouched.
    let req = PrepullRequest { image: format!("{image}-missing"), selector: BTreeMap::new() };
    let done = prepull_done(&s, s.admin.prepull(&req).await.unwrap()).await;
    assert_eq!(done.nodes.len(), 2, "{done:#?}");
    for n in &done.nodes {
        assert_eq!(n.state, "failed", "{done:#?}");
        assert!(n.detail.as_deref().is_some_and(|d| d.contains("not found")), "{done:#?}");
    }
    // Bad input: refused before any node is asked.
    let host = s.url.trim_start_matches("http://");
    for (req, says) in [
        (
            PrepullRequest { image: format!("{host}/nope/tools:1"), selector: BTreeMap::new() },
            "project `nope`",
        ),
        (
            PrepullRequest {
                image: image.clone(),
                selector: BTreeMap::from([("zone".to_string(), "c".to_string())]),
            },
            "no node matches zone=c",
        ),
        (PrepullRequest { image: " ".into(), selector: BTreeMap::new() }, "expected an image"),
    ] {
        let err = s.admin.prepull(&req).await.unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_keeps_the_budget_but_never_an_image_a_running_task_uses() {
    let engine = PrivateEngine::start();
    engine.make_image("busybox:latest", "kiln-test/m1:1", 1024);
    let size = |tag: &str| -> u64 {
        let out = engine.docker(&["image", "inspect", "-f", "{{.Size}}", tag]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    // Room for m1 alone. Whenever the cache looks first, busybox (the oldest) goes and m1
    // stays, so the job below always finds it.
    let budget = size("kiln-test/m1:1") + 64 * 1024;
    let s = TestServer::start_with(0).await;
    let _agent =
        s.docker_agent_on(&engine.host, "n", 2, on_loopback(&[], 48300), Some(budget)).await;
    nodes_until(&s, "the node to be ready", |n| n.get("n").is_some_and(|n| n.state == "ready"))
        .await;

    // `hold` runs on m1 until canceled. Meanwhile two newer images arrive (newer than m1:
    // least recently used would otherwise take m1 first), and a job on m1 ends, which wakes
    // the cache: it is over budget.
    let yaml = |name: &str, script: &str| {
        format!(
            "name: {name}\nstages:\n  - name: s\n    jobs:\n      j:\n        image: \
             kiln-test/m1:1\n        script: {script}\n"
        )
    };
    s.apply("cache", "hold", &yaml("hold", "sleep 600")).await;
    let held = s.trigger("cache", "hold", &[]).await;
    s.wait_for(&held.id, "its job running", |d| job(d, "j").state == "running").await;
    engine.make_image("kiln-test/m1:1", "kiln-test/m2:1", 512);
    engine.make_image("kiln-test/m1:1", "kiln-test/m3:1", 512);
    s.apply("cache", "quick", &yaml("quick", "echo quick")).await;
    let run = s.trigger("cache", "quick", &[]).await;
    assert_eq!(s.wait_final(&run.id).await.run.state, "success");

    let nodes = nodes_until(&s, "the node to report what eviction kept", |n| {
        n.get("n").is_some_and(|n| n.images.len() == 1)
    })
    .await;
    let kept = &nodes["n"].images[0];
    assert_eq!(kept.tags, ["kiln-test/m1:1"], "{kept:#?}");
    assert!(kept.size <= budget, "{kept:#?} over {budget}");
    assert!(kept.last_used.is_some(), "{kept:#?}");
    for gone in ["kiln-test/m2:1", "kiln-test/m3:1", "busybox:latest"] {
        assert!(!engine.has(gone), "{gone} is still there");
    }
    assert!(engine.has("kiln-test/m1:1"), "the running job's image stays");
    s.admin.cancel(&held.id).await.unwrap();
    assert_eq!(s.wait_final(&held.id).await.run.state, "canceled");
    s.stop().await;
}
