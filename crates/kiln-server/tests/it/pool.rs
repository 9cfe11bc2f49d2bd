//! The pool through the real server: agents declaring hosts and attributes, operators setting
//! attributes and disabling nodes (kept across restarts), jobs that wait for a node with the
//! reason shown, resources never overcommitted, and failover when an agent is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_api::pool::{AttrValue, NodeUpdate, PortRange};

use crate::support::{Backend, TestServer, host, job, log_text};

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.into())
}

/// Polls `GET /nodes` until `done` holds (at most 20 s).
async fn wait_nodes(
    s: &TestServer,
    what: &str,
    done: impl Fn(&[kiln_api::pool::NodeInfo]) -> bool,
) -> Vec<kiln_api::pool::NodeInfo> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = s.admin.nodes().await.unwrap();
        if done(&nodes) {
            return nodes;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: nodes are {nodes:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const BIG: &str = "\
name: big
stages:
  - name: s
    jobs:
      crunch:
        image: busybox
        resources: { cpu: 6, memory: 1Gi }
        script: echo \"on $KILN_NODE at $KILN_HOST_IP\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_show_what_agents_declare_and_operators_set_survives_a_restart() {
    let mut s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let sz = s.agent("sz-1", 2, host("10.0.0.1", 8, &[("city", text("shenzhen"))]));
    let sh = s.agent("sh-1", 2, host("10.0.0.2", 4, &[("city", text("shanghai"))]));
    let nodes =
        wait_nodes(&s, "two ready nodes", |n| n.len() == 2 && n.iter().all(|n| n.state == "ready"))
            .await;
    assert_eq!(nodes[0].name, "sh-1");
    assert_eq!(nodes[0].ip, "10.0.0.2");
    assert_eq!(nodes[0].resources.cpu_millis, 4000);
    assert_eq!(nodes[1].attributes["city"], text("shenzhen"));

    // Operators address a node by IP or name; values keep their type.
    let update = NodeUpdate {
        set: BTreeMap::from([
            ("rack".to_string(), AttrValue::Number(3.0)),
            ("city".to_string(), text("guangzhou")),
        ]),
        disabled: Some(true),
        ..NodeUpdate::default()
    };
    let changed = s.admin.update_node("10.0.0.1", &update).await.unwrap();
    assert_eq!(changed.name, "sz-1");
    assert!(changed.disabled);
    assert_eq!(changed.attributes["city"], text("guangzhou"), "the operator's value wins");
    assert_eq!(changed.attributes["rack"], AttrValue::Number(3.0));

    // Offers list only enabled, connected nodes, with their free capacity.
    let offers = s.admin.offers().await.unwrap();
    assert_eq!(offers.len(), 1, "{offers:#?}");
    assert_eq!(offers[0].name, "sh-1");
    assert_eq!(offers[0].free.cpu_millis, 4000);
    assert_eq!(offers[0].free_ports, vec![PortRange { start: 31000, end: 31099 }]);

    // A bad attribute name is refused and nothing changes.
    let bad = NodeUpdate {
        set: BTreeMap::from([("9city".to_string(), text("x"))]),
        ..NodeUpdate::default()
    };
    let err = s.admin.update_node("sz-1", &bad).await.unwrap_err().to_string();
    assert!(err.contains("attribute name `9city` is not valid"), "{err}");
    let err = s.admin.update_node("10.9.9.9", &update).await.unwrap_err().to_string();
    assert!(err.contains("no node is named `10.9.9.9` or has that IP"), "{err}");

    // A gentle stop marks the node down; after a server restart operators' settings remain.
    sz.stop().await;
    sh.stop().await;
    wait_nodes(&s, "both down", |n| n.iter().all(|n| n.state == "down")).await;
    s.restart().await;
    let nodes = s.admin.nodes().await.unwrap();
    let sz = nodes.iter().find(|n| n.name == "sz-1").unwrap();
    assert_eq!(sz.state, "down");
    assert!(sz.disabled);
    assert_eq!(sz.attributes["rack"], AttrValue::Number(3.0));
    let _again = s.agent("sz-1", 2, host("10.0.0.1", 8, &[("city", text("shenzhen"))]));
    let nodes =
        wait_nodes(&s, "sz-1 back", |n| n.iter().any(|n| n.name == "sz-1" && n.state == "ready"))
            .await;
    let sz = nodes.iter().find(|n| n.name == "sz-1").unwrap();
    assert!(sz.disabled, "still disabled after it re-registered");
    assert_eq!(sz.attributes["city"], text("guangzhou"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_waits_with_the_reason_until_a_node_fits_it() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let small = s.agent("small", 2, host("10.0.0.1", 4, &[]));
    let big = s.agent("big", 2, host("10.0.0.2", 8, &[]));
    wait_nodes(&s, "both ready", |n| n.len() == 2 && n.iter().all(|n| n.state == "ready")).await;
    s.admin
        .update_node("big", &NodeUpdate { disabled: Some(true), ..NodeUpdate::default() })
        .await
        .unwrap();
    s.apply("pool", "big", BIG).await;
    let run = s.trigger("pool", "big", &[]).await;
    let id = run.id.clone();
    let detail = s
        .wait_for(&id, "the job waits with a reason", |d| job(d, "crunch").waiting.is_some())
        .await;
    let crunch = job(&detail, "crunch");
    assert_eq!(crunch.state, "queued");
    assert_eq!(crunch.waiting.as_deref(), Some("1 node: 6 CPUs asked, 4 free; 1 node: disabled"));

    // Enabled, the big node takes it.
    s.admin
        .update_node("big", &NodeUpdate { disabled: Some(false), ..NodeUpdate::default() })
        .await
        .unwrap();
    let done = s.wait_final(&id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    assert!(job(&done, "crunch").waiting.is_none());
    let log = log_text(&s, &id, Some("crunch")).await;
    assert!(log.iter().any(|l| l == "on big at 10.0.0.2"), "{log:#?}");
    small.stop().await;
    big.stop().await;
    s.stop().await;
}

const HALF: &str = "\
name: half
stages:
  - name: s
    jobs:
      a: { image: busybox, resources: { cpu: 3 }, script: \"sleep 1; echo a on $KILN_NODE\" }
      b: { image: busybox, resources: { cpu: 3 }, script: \"sleep 1; echo b on $KILN_NODE\" }
      c: { image: busybox, resources: { cpu: 3 }, script: \"sleep 1; echo c on $KILN_NODE\" }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_is_never_given_more_than_it_has() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    // 8 slots but 4 CPUs: only one 3-CPU job at a time.
    let a = s.agent("only", 8, host("10.0.0.1", 4, &[]));
    wait_nodes(&s, "ready", |n| n.len() == 1 && n[0].state == "ready").await;
    s.apply("pool", "half", HALF).await;
    let run = s.trigger("pool", "half", &[]).await;
    // While the jobs run, the offer never shows more than one at a time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut saw_busy = false;
    loop {
        let offers = s.admin.offers().await.unwrap();
        if let Some(o) = offers.first() {
            assert!(o.free.cpu_millis == 4000 || o.free.cpu_millis == 1000, "{o:#?}");
            saw_busy |= o.free.cpu_millis == 1000;
        }
        let d = s.admin.run(&run.id).await.unwrap();
        let running = d.jobs.iter().filter(|j| j.state == "running").count();
        assert!(running <= 1, "{d:#?}");
        if crate::support::is_final(&d.run.state) {
            assert_eq!(d.run.state, "success", "{d:#?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_busy, "an offer showed the reservation");
    assert_eq!(s.admin.offers().await.unwrap()[0].free.cpu_millis, 4000, "all released");
    a.stop().await;
    s.stop().await;
}

const RETRIED: &str = "\
name: retried
stages:
  - name: s
    jobs:
      long:
        image: busybox
        retry: 1
        script:
          - echo \"attempt $KILN_ATTEMPT on $KILN_NODE\"
          - sleep 3
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_agent_s_job_is_retried_on_another_node_and_the_node_shows_lost() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_millis(1500)).await;
    let first = s.agent("first", 1, host("10.0.0.1", 4, &[]));
    wait_nodes(&s, "first ready", |n| n.len() == 1 && n[0].state == "ready").await;
    s.apply("pool", "retried", RETRIED).await;
    let run = s.trigger("pool", "retried", &[]).await;
    s.wait_for(&run.id, "the first attempt runs", |d| job(d, "long").state == "running").await;
    // The host dies: no more polls, no more reports.
    first.kill();
    let second = s.agent("second", 1, host("10.0.0.2", 4, &[]));
    wait_nodes(&s, "first lost", |n| n.iter().any(|n| n.name == "first" && n.state == "lost"))
        .await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    assert_eq!(job(&done, "long").attempts, 2);
    let log = log_text(&s, &run.id, Some("long")).await;
    assert!(log.iter().any(|l| l == "attempt 2 on second"), "{log:#?}");
    // A node that comes back is ready again.
    let _back = s.agent("first", 1, host("10.0.0.1", 4, &[]));
    wait_nodes(&s, "first back", |n| n.iter().all(|n| n.state == "ready")).await;
    second.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn an_agent_with_a_bad_attribute_is_refused_and_not_stored() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let token = s.server.as_ref().unwrap().agent_token.clone();
    let client = kiln_client::Client::new(&s.url, &token).unwrap();
    let mut req = registration("odd");
    req.attributes.insert("bad key".into(), text("x"));
    let err = client.register_agent(&req).await.unwrap_err().to_string();
    assert!(err.contains("attribute name `bad key` is not valid"), "{err}");
    assert!(s.admin.nodes().await.unwrap().is_empty());
    // A wrong token is refused too.
    let wrong = kiln_client::Client::new(&s.url, "kiln_not_a_token").unwrap();
    let err = wrong.register_agent(&registration("fine")).await.unwrap_err().to_string();
    assert!(err.contains("401") || err.contains("unknown"), "{err}");
    assert!(s.admin.nodes().await.unwrap().is_empty());
    // An agent that leaves its IP out is reached where it called from.
    let mut quiet = registration("quiet");
    quiet.ip.clear();
    client.register_agent(&quiet).await.unwrap();
    let nodes = s.admin.nodes().await.unwrap();
    assert_eq!((nodes[0].name.as_str(), nodes[0].ip.as_str()), ("quiet", "127.0.0.1"));
    s.stop().await;
}

#[tokio::test]
async fn an_agent_of_another_protocol_is_told_which_side_to_upgrade() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let token = s.server.as_ref().unwrap().agent_token.clone();
    // An agent from before protocol versions sends no `protocol`: it speaks protocol 1.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/agents", s.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "old", "executor": "process", "capacity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_protocol");
    let server = env!("CARGO_PKG_VERSION");
    assert_eq!(
        body["error"]["message"],
        format!(
            "the agent speaks protocol 1, server {server} protocol {}: upgrade the agent",
            kiln_api::agent::PROTOCOL
        )
    );
    // A newer agent is told to upgrade the server.
    let client = kiln_client::Client::new(&s.url, &token).unwrap();
    let mut newer = registration("newer");
    newer.protocol = kiln_api::agent::PROTOCOL + 1;
    newer.version = "9.0.0".into();
    let err = client.register_agent(&newer).await.unwrap_err();
    assert_eq!(err.code(), Some("agent_protocol"));
    let newer_text = format!("agent 9.0.0 speaks protocol {}", kiln_api::agent::PROTOCOL + 1);
    assert!(err.to_string().contains(&newer_text), "{err}");
    assert!(err.to_string().ends_with("upgrade the server"), "{err}");
    assert!(s.admin.nodes().await.unwrap().is_empty(), "a refused agent is not stored");
    // The same protocol registers, and the server says which it speaks.
    let info = client.register_agent(&registration("same")).await.unwrap();
    assert_eq!((info.protocol, info.version.as_str()), (kiln_api::agent::PROTOCOL, server));
    s.stop().await;
}

/// A well-formed registration.
fn registration(name: &str) -> kiln_api::agent::RegisterAgent {
    kiln_api::agent::RegisterAgent {
        name: name.into(),
        executor: "process".into(),
        capacity: 1,
        hostname: name.into(),
        ip: "10.0.0.8".into(),
        resources: None,
        ports: None,
        attributes: BTreeMap::new(),
        held: vec![],
        protocol: kiln_api::agent::PROTOCOL,
        version: "0.1.0".into(),
        images: None,
    }
}

const PLACED: &str = "\
name: placed
stages:
  - name: s
    jobs:
      daemon:
        image: busybox
        matrix: { n: [1, 2, 3] }
        constraints:
          - [city, LIKE, \"shenzhen|shanghai\"]
          - [hostname, UNIQUE]
        network: host
        ports:
          - { name: service }
        script:
          - echo \"${{ matrix.n }} on $KILN_NODE port $KILN_PORT_SERVICE\"
          - while [ ! -f GATE ]; do sleep 0.05; done
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn constraints_and_ports_place_jobs_where_they_must_and_say_why_the_rest_waits() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let _sz = s.agent("sz", 4, host("10.0.0.1", 8, &[("city", text("shenzhen"))]));
    let _sh = s.agent("sh", 4, host("10.0.0.2", 8, &[("city", text("shanghai"))]));
    let _cd = s.agent("cd", 4, host("10.0.0.3", 8, &[("city", text("chengdu"))]));
    wait_nodes(&s, "three ready", |n| n.len() == 3 && n.iter().all(|n| n.state == "ready")).await;
    // The instances hold their place until the test opens the gate.
    let gate = s.dir().join("gate");
    let yaml = PLACED.replace("GATE", &gate.display().to_string());
    s.apply("pool", "placed", &yaml).await;
    let run = s.trigger("pool", "placed", &[]).await;
    // Two instances run (one per matching city, one per host); the third waits, saying why.
    let detail = s
        .wait_for(&run.id, "two running, one waiting", |d| {
            d.jobs.iter().filter(|j| j.state == "running").count() == 2
                && d.jobs.iter().any(|j| j.waiting.is_some())
        })
        .await;
    let waiting = detail.jobs.iter().find_map(|j| j.waiting.clone()).unwrap();
    assert!(waiting.contains("1 node: city LIKE shenzhen|shanghai failed"), "{waiting}");
    assert!(waiting.contains("2 nodes:"), "{waiting}");
    let mut nodes = Vec::new();
    let mut ran_on = Vec::new();
    for j in detail.jobs.iter().filter(|j| j.state == "running") {
        let log = loop {
            let log = log_text(&s, &run.id, Some(&j.id)).await;
            if log.iter().any(|l| l.contains(" on ")) {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let line = log.iter().find(|l| l.contains(" on ")).unwrap().clone();
        let port: u16 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((31000..=31099).contains(&port), "{line}");
        let node = line.split(" on ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        // The API reports the same placement the job was given: node, host IP, port.
        let placed = j.placement.as_ref().unwrap_or_else(|| panic!("no placement: {j:#?}"));
        assert_eq!(placed.node, node, "{placed:?}");
        let ip = if node == "sz" { "10.0.0.1" } else { "10.0.0.2" };
        assert_eq!(placed.ip, ip, "{placed:?}");
        assert_eq!(placed.ports.len(), 1, "{placed:?}");
        assert_eq!((placed.ports[0].name.as_str(), placed.ports[0].host), ("service", port));
        assert_eq!(j.node.as_deref(), Some(node.as_str()), "{j:?}");
        ran_on.push((j.id.clone(), node.clone()));
        nodes.push(node);
    }
    nodes.sort();
    assert_eq!(nodes, ["sh", "sz"]);
    // An operator moves chengdu's node to shenzhen: the third instance runs there.
    s.admin
        .update_node(
            "10.0.0.3",
            &NodeUpdate {
                set: BTreeMap::from([("city".to_string(), text("shenzhen"))]),
                ..NodeUpdate::default()
            },
        )
        .await
        .unwrap();
    s.wait_for(&run.id, "three running", |d| d.jobs.iter().all(|j| j.state == "running")).await;
    std::fs::write(&gate, "").unwrap();
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    assert!(done.jobs.iter().all(|j| j.placement.is_none()), "ended jobs hold no place: {done:#?}");
    // Where each ran is kept after it ended.
    for (job, node) in &ran_on {
        let j = done.jobs.iter().find(|j| &j.id == job).unwrap();
        assert_eq!(j.node.as_ref(), Some(node), "{j:?}");
    }
    assert!(done.jobs.iter().all(|j| j.node.is_some()), "{done:#?}");
    s.stop().await;
}

const SHARE: &str = "\
name: share
stages:
  - name: s
    jobs:
      work:
        image: busybox
        resources: { cpu: 1 }
        matrix: { n: [1, 2, 3, 4] }
        script:
          - while [ ! -f GATE ]; do sleep 0.05; done
";

/// Jobs of `run` in `state`.
fn count(d: &kiln_api::RunDetail, state: &str) -> usize {
    d.jobs.iter().filter(|j| j.state == state).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_pool_is_shared_between_projects_and_quotas_hold_one_back() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let gate = s.dir().join("gate");
    let yaml = SHARE.replace("GATE", &gate.display().to_string());
    let agent = s.agent("four", 4, host("10.0.0.1", 8, &[]));
    wait_nodes(&s, "ready", |n| n.len() == 1 && n[0].state == "ready").await;
    // Both projects queue four jobs while the node takes nothing: the runs are `scheduling`.
    s.admin
        .update_node("four", &NodeUpdate { disabled: Some(true), ..NodeUpdate::default() })
        .await
        .unwrap();
    s.apply("ads", "share", &yaml).await;
    s.apply("shop", "share", &yaml).await;
    let ads = s.trigger("ads", "share", &[]).await;
    let shop = s.trigger("shop", "share", &[]).await;
    // Queued in the run is not yet in the dispatcher's queue: wait until every job says why
    // no node takes it (the dispatcher's answer), so that the enabled node sees all eight.
    for run in [&ads, &shop] {
        let d = s
            .wait_for(&run.id, "four jobs waiting for a node", |d| {
                d.run.state == "scheduling"
                    && d.jobs.iter().filter(|j| j.state == "queued" && j.waiting.is_some()).count()
                        == 4
            })
            .await;
        assert_eq!(count(&d, "queued"), 4, "{d:#?}");
    }
    // Four slots for eight jobs: each project gets two, though `ads` queued first.
    s.admin
        .update_node("four", &NodeUpdate { disabled: Some(false), ..NodeUpdate::default() })
        .await
        .unwrap();
    for run in [&ads, &shop] {
        let d = s.wait_for(&run.id, "two running", |d| count(d, "running") == 2).await;
        assert_eq!(d.run.state, "running");
    }
    let quotas = s.admin.quotas().await.unwrap();
    let used: Vec<_> =
        quotas.iter().map(|q| (q.project.as_str(), q.used.jobs, q.used.waiting)).collect();
    assert_eq!(used, [("ads", 2, 2), ("shop", 2, 2)]);

    // A quota of one job on `ads`: as its jobs end, `shop` takes the slots.
    let one = kiln_api::pool::QuotaLimits { jobs: Some(1), ..Default::default() };
    let q = s.admin.set_quota("ads", &one).await.unwrap();
    assert_eq!(q.limits.jobs, Some(1));
    let err = s.admin.set_quota("ads", &Default::default()).await.unwrap_err().to_string();
    assert!(err.contains("at least one of cpu_millis, memory_bytes, jobs"), "{err}");
    std::fs::write(&gate, "").unwrap();
    let done = s.wait_final(&shop.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    let done = s.wait_final(&ads.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");

    // Held back by its quota, a job says so.
    std::fs::remove_file(&gate).unwrap();
    let ads = s.trigger("ads", "share", &[]).await;
    let d = s
        .wait_for(&ads.id, "one running, three held", |d| {
            count(d, "running") == 1 && d.jobs.iter().filter(|j| j.waiting.is_some()).count() == 3
        })
        .await;
    let held = d.jobs.iter().find_map(|j| j.waiting.clone()).unwrap();
    assert_eq!(held, "project ads quota of 1 concurrent job reached (1 used, 1 asked)");
    // Removing the quota lets the rest run at once.
    s.admin.delete_quota("ads").await.unwrap();
    s.wait_for(&ads.id, "four running", |d| count(d, "running") == 4).await;
    assert!(s.admin.quotas().await.unwrap().iter().all(|q| q.limits.jobs.is_none()));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(s.wait_final(&ads.id).await.run.state, "success");
    agent.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_token_runs_an_agent_and_nothing_else() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let create = |project: Option<&str>| kiln_api::CreateToken {
        name: "pool".into(),
        role: "agent".into(),
        project: project.map(String::from),
    };
    s.admin.create_project("shop").await.unwrap();
    let err = s.admin.create_token(&create(Some("shop"))).await.unwrap_err().to_string();
    assert!(err.contains("an agent token serves the whole pool"), "{err}");
    let token = s.admin.create_token(&create(None)).await.unwrap();
    assert_eq!(token.token.role, "agent");

    let agent = s.agent_with(&token.secret, "pooled", 2, host("10.0.0.7", 4, &[]));
    wait_nodes(&s, "ready", |n| n.len() == 1 && n[0].state == "ready").await;
    s.apply("shop", "big", &BIG.replace("cpu: 6", "cpu: 1")).await;
    let run = s.trigger("shop", "big", &[]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    let log = log_text(&s, &run.id, Some("crunch")).await;
    assert!(log.iter().any(|l| l == "on pooled at 10.0.0.7"), "{log:#?}");

    // The same token reads nothing and changes nothing else.
    let as_agent = kiln_client::Client::new(&s.url, &token.secret).unwrap();
    for err in [
        as_agent.nodes().await.map(|_| ()).unwrap_err().to_string(),
        as_agent.run(&run.id).await.map(|_| ()).unwrap_err().to_string(),
        as_agent.create_project("mine").await.map(|_| ()).unwrap_err().to_string(),
    ] {
        assert!(err.contains("token `pool` is an agent token: it may only run an agent"), "{err}");
    }
    agent.stop().await;
    s.stop().await;
}

const FAN: &str = "\
name: fan
stages:
  - name: s
    jobs:
      t:
        matrix: { n: [1, 2, 3] }
        script: \"true\"
";

/// An agent reporting the events of several leases in one request (what `kiln agent` does):
/// each lease ends once, a lease the server does not know is named as such, and a second
/// `exited` of an ended lease is refused rather than counted again.
#[tokio::test]
async fn a_batch_report_ends_each_lease_once_and_names_unknown_ones() {
    use kiln_api::agent::{AgentEvent, LeaseReport, LeaseRequest};
    use kiln_engine::Outcome;

    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    s.apply("pool", "fan", FAN).await;
    let run = s.trigger("pool", "fan", &[]).await;
    let mut req = registration("batch");
    req.capacity = 3;
    let info = s.admin.register_agent(&req).await.unwrap();
    let mut leases = Vec::new();
    while leases.len() < 3 {
        let poll = LeaseRequest { held: vec![], free: 3 - leases.len() as u32, wait_ms: 5000 };
        leases.extend(s.admin.lease(&info.id, &poll).await.unwrap().leases);
    }
    let done = |lease: &str| LeaseReport {
        lease: lease.to_string(),
        events: vec![AgentEvent::Started, AgentEvent::Exited { outcome: Outcome::Exited(0) }],
    };
    let mut batch: Vec<LeaseReport> = leases.iter().map(|l| done(&l.id)).collect();
    batch.push(done("no-such-lease"));
    let resp = s.admin.lease_reports(&info.id, &batch).await.unwrap();
    assert_eq!(resp.unknown, vec!["no-such-lease".to_string()]);
    assert!(resp.cancel.is_empty(), "{resp:?}");
    // Reported again: the lease ended, so nothing is taken.
    let again = s.admin.lease_reports(&info.id, &[done(&leases[0].id)]).await.unwrap();
    assert_eq!(again.unknown, vec![leases[0].id.clone()]);
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    assert_eq!(d.jobs.len(), 3);
    for j in &d.jobs {
        assert_eq!((j.state.as_str(), j.attempts), ("success", 1), "{j:#?}");
        assert!(j.started_at.is_some() && j.finished_at.is_some(), "{j:#?}");
    }
    s.stop().await;
}
