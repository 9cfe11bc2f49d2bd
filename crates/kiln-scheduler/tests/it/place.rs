//! Placement on a pool: filter, score, select, reasons, ports, group constraints, and the
//! ledger's re-checks.

use kiln_scheduler::{
    CommitError, Network, NodeId, Options, Pool, PortAsk, PortRange, Reason, Strategy, TaskId,
};

use crate::support::{GI, all, ask, node, res};

fn seed_pool() -> Pool {
    // The three machines of seed 000's `bcs-client offer`, plus a disabled one.
    let mut disabled = node("slave4", 24, 76, &[("city", "shenzhen")]);
    disabled.disabled = true;
    Pool::with_nodes(
        Options::default(),
        [
            node("slave1", 24, 76, &[("city", "shenzhen")]),
            node("slave2", 24, 76, &[("city", "shanghai")]),
            node("slave3", 24, 76, &[("city", "chengdu")]),
            disabled,
        ],
    )
}

#[test]
fn constraint_picks_the_node() {
    let pool = seed_pool();
    let mut a = ask("t1", "g", 8, 4);
    a.constraints = all(&[("city", "LIKE", Some("shanghai"))]);
    assert_eq!(pool.place(&a).unwrap().node, NodeId::from("slave2"));
}

#[test]
fn unplaced_says_why_per_node() {
    let mut pool = seed_pool();
    // Fill slave1 to 18 of 24 CPUs.
    let mut filler = ask("filler", "other", 18, 1);
    filler.constraints = all(&[("city", "LIKE", Some("shenzhen"))]);
    pool.reserve(&filler).unwrap();
    let mut a = ask("t1", "g", 8, 4);
    a.constraints = all(&[("city", "LIKE", Some("shenzhen"))]);
    let u = pool.place(&a).unwrap_err();
    assert_eq!(u.nodes, 4);
    assert_eq!(
        u.summary(),
        "2 nodes: city LIKE shenzhen failed; 1 node: 8 CPUs asked, 6 free; 1 node: disabled"
    );
    assert_eq!(
        pool.why_not(&a, &NodeId::from("slave1")),
        Some(Reason::Cpu { asked: 8000, free: 6000 })
    );
}

#[test]
fn summary_of_many_shortages_gives_the_most_free() {
    let pool = Pool::with_nodes(
        Options::default(),
        [node("a", 4, 8, &[]), node("b", 6, 8, &[]), node("c", 64, 8, &[])],
    );
    let u = pool.place(&ask("t", "g", 8, 16)).unwrap_err();
    assert_eq!(
        u.summary(),
        "2 nodes: 8 CPUs asked, at most 6 free; 1 node: 16Gi memory asked, 8Gi free"
    );
    assert_eq!(
        Pool::default().place(&ask("t", "g", 1, 1)).unwrap_err().summary(),
        "no nodes in the pool"
    );
}

#[test]
fn bin_pack_fills_the_fullest_node_and_spread_the_emptiest() {
    let mut pool = Pool::with_nodes(
        Options::default(),
        [node("a", 16, 64, &[]), node("b", 16, 64, &[]), node("c", 16, 64, &[])],
    );
    pool.reserve(&ask("x", "g", 4, 4)).unwrap();
    let first = pool.task_node(&TaskId::from("x")).unwrap().clone();
    // Bin-pack: the next task goes on the same node.
    let p = pool.reserve(&ask("y", "g", 4, 4)).unwrap();
    assert_eq!(p.node, first);
    // Spread: on an empty one, and the next on the other empty one.
    let mut s1 = ask("s1", "g", 2, 2);
    s1.strategy = Strategy::Spread;
    let n1 = pool.reserve(&s1).unwrap().node;
    let mut s2 = ask("s2", "g", 2, 2);
    s2.strategy = Strategy::Spread;
    let n2 = pool.reserve(&s2).unwrap().node;
    let mut nodes = vec![first, n1, n2];
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "spread used the two empty nodes");
}

#[test]
fn dynamic_ports_come_from_the_range_and_are_injected() {
    let mut n = node("slave1", 24, 76, &[]);
    n.ip = "127.0.0.7".to_string();
    n.ports = vec![PortRange { start: 31000, end: 31002 }];
    let mut pool = Pool::with_nodes(Options::default(), [n]);
    let mut a = ask("t1", "g", 1, 1);
    a.network = Network::Host;
    a.ports = vec![
        PortAsk { name: "SERVICE_PORT".into(), host: 0, container: None },
        PortAsk { name: "stats-port".into(), host: 0, container: None },
    ];
    let p = pool.reserve(&a).unwrap();
    let got: Vec<(u16, u16)> = p.ports.iter().map(|p| (p.host, p.container)).collect();
    assert_eq!(got, vec![(31000, 31000), (31001, 31001)]);
    let env = p.env();
    assert_eq!(env["KILN_PORT_SERVICE_PORT"], "31000");
    assert_eq!(env["KILN_PORT_STATS_PORT"], "31001");
    assert_eq!(env["KILN_HOST_IP"], "127.0.0.7");
    // One port is left: a second two-port task waits, a one-port task takes 31002.
    let mut b = a.clone();
    b.task = TaskId::from("t2");
    assert_eq!(pool.place(&b).unwrap_err().summary(), "1 node: no free host port");
    b.ports.pop();
    assert_eq!(pool.reserve(&b).unwrap().ports[0].host, 31002);
    // Released ports are handed out again.
    pool.release(&TaskId::from("t1"));
    let mut c = a.clone();
    c.task = TaskId::from("t3");
    assert_eq!(pool.reserve(&c).unwrap().ports[0].host, 31000);
}

#[test]
fn fixed_ports_and_bridge_mode() {
    let mut pool = Pool::with_nodes(Options::default(), [node("n", 8, 8, &[])]);
    let mut a = ask("t1", "g", 1, 1);
    a.ports = vec![PortAsk { name: "http".into(), host: 31500, container: Some(8080) }];
    let p = pool.reserve(&a).unwrap();
    assert_eq!((p.ports[0].host, p.ports[0].container), (31500, 8080));
    let mut b = a.clone();
    b.task = TaskId::from("t2");
    assert_eq!(pool.place(&b).unwrap_err().summary(), "1 node: host port 31500 in use");
    b.ports[0].host = 80;
    assert_eq!(
        pool.place(&b).unwrap_err().summary(),
        "1 node: host port 80 outside the node's port ranges"
    );
    b.ports[0].container = None;
    assert_eq!(
        pool.place(&b).unwrap_err().summary(),
        "invalid request: port 'http': a container port is needed in bridge network mode"
    );
}

#[test]
fn unique_hostname_puts_one_task_per_node() {
    let mut pool = Pool::with_nodes(
        Options::default(),
        [node("a", 64, 64, &[]), node("b", 64, 64, &[]), node("c", 64, 64, &[])],
    );
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut a = ask(&format!("t{i}"), "distcc", 1, 1);
        a.constraints = all(&[("hostname", "UNIQUE", None)]);
        nodes.push(pool.reserve(&a).unwrap().node);
    }
    nodes.sort();
    assert_eq!(nodes, vec![NodeId::from("a"), NodeId::from("b"), NodeId::from("c")]);
    let mut a = ask("t3", "distcc", 1, 1);
    a.constraints = all(&[("hostname", "UNIQUE", None)]);
    assert_eq!(pool.place(&a).unwrap_err().summary(), "3 nodes: hostname UNIQUE failed");
    // Another group is not affected.
    a.group = "other".into();
    assert!(pool.place(&a).is_ok());
    // Releasing one frees its node for the group.
    a.group = "distcc".into();
    pool.release(&TaskId::from("t1"));
    assert!(pool.place(&a).is_ok());
}

#[test]
fn max_per_group_by_and_cluster() {
    let nodes = (0..6).map(|i| {
        let rack = ["r1", "r2", "r3"][i % 3];
        node(&format!("n{i}"), 64, 64, &[("rack", rack)])
    });
    let mut pool = Pool::with_nodes(Options::default(), nodes);
    let rack_of = |pool: &Pool, t: &str| {
        let id = pool.task_node(&TaskId::from(t)).unwrap();
        pool.node(id).unwrap().attributes["rack"].canonical()
    };
    // MAX_PER 2 per rack: 6 tasks fit, the 7th does not.
    for i in 0..6 {
        let mut a = ask(&format!("m{i}"), "m", 1, 1);
        a.constraints = all(&[("rack", "MAX_PER", Some("2"))]);
        pool.reserve(&a).unwrap();
    }
    let mut a = ask("m6", "m", 1, 1);
    a.constraints = all(&[("rack", "MAX_PER", Some("2"))]);
    assert_eq!(pool.place(&a).unwrap_err().summary(), "6 nodes: rack MAX_PER 2 failed");
    // GROUP_BY 3: six tasks go two per rack, in turn.
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..6 {
        let mut a = ask(&format!("g{i}"), "g", 1, 1);
        a.constraints = all(&[("rack", "GROUP_BY", Some("3"))]);
        pool.reserve(&a).unwrap();
        *counts.entry(rack_of(&pool, &format!("g{i}"))).or_insert(0) += 1;
        let max = counts.values().max().unwrap();
        let min = if counts.len() < 3 { 0 } else { *counts.values().min().unwrap() };
        assert!(max - min <= 1, "uneven after {i}: {counts:?}");
    }
    // CLUSTER without a value: every task on the rack of the first.
    let mut racks = Vec::new();
    for i in 0..4 {
        let mut a = ask(&format!("c{i}"), "c", 1, 1);
        a.constraints = all(&[("rack", "CLUSTER", None)]);
        pool.reserve(&a).unwrap();
        racks.push(rack_of(&pool, &format!("c{i}")));
    }
    racks.dedup();
    assert_eq!(racks.len(), 1);
}

#[test]
fn or_groups() {
    let pool = Pool::with_nodes(
        Options::default(),
        [
            node("a", 8, 8, &[("city", "chengdu"), ("storageType", "SSD")]),
            node("b", 8, 8, &[("city", "chengdu"), ("storageType", "NORMAL")]),
        ],
    );
    let mut a = ask("t", "g", 1, 1);
    a.constraints = kiln_scheduler::Constraints::from_json(&serde_json::json!([
        {"any": [["city", "LIKE", "shenzhen"], ["storageType", "LIKE", "SSD"]]}
    ]))
    .unwrap();
    assert_eq!(pool.place(&a).unwrap().node, NodeId::from("a"));
}

#[test]
fn commit_rechecks_what_it_reserves() {
    let mut pool = Pool::with_nodes(Options::default(), [node("n", 8, 64, &[])]);
    let a = ask("a", "g", 6, 1);
    let b = ask("b", "g", 6, 1);
    // Two placements computed from the same state: only the first commits.
    let pa = pool.place(&a).unwrap();
    let pb = pool.place(&b).unwrap();
    pool.commit(&a, &pa).unwrap();
    assert_eq!(
        pool.commit(&b, &pb),
        Err(CommitError::NoLongerFits {
            node: NodeId::from("n"),
            reason: Reason::Cpu { asked: 6000, free: 2000 }
        })
    );
    assert_eq!(pool.commit(&a, &pa), Err(CommitError::AlreadyPlaced(TaskId::from("a"))));
    // A node that changed since the placement refuses it.
    pool.release(&TaskId::from("a"));
    let pb = pool.place(&b).unwrap();
    let mut changed = node("n", 8, 64, &[]);
    changed.attributes.insert("city".into(), kiln_scheduler::AttrValue::Text("sz".into()));
    pool.upsert_node(changed);
    assert!(matches!(pool.commit(&b, &pb), Err(CommitError::NodeChanged { .. })));
    // Repeating an identical registration changes nothing.
    let pb = pool.place(&b).unwrap();
    let mut same = node("n", 8, 64, &[]);
    same.attributes.insert("city".into(), kiln_scheduler::AttrValue::Text("sz".into()));
    pool.upsert_node(same);
    pool.commit(&b, &pb).unwrap();
}

#[test]
fn hold_takes_back_what_runs_on_a_disabled_node_but_never_overcommits() {
    // A restarted keeper of the ledger: the node's agent is not back yet (disabled).
    let mut n = node("n", 8, 64, &[]);
    n.disabled = true;
    n.ports = vec![PortRange { start: 31000, end: 31009 }];
    n.slots = Some(3);
    let mut pool = Pool::with_nodes(Options::default(), [n]);
    let web = |task: &str| {
        let mut a = ask(task, "svc", 3, 1);
        a.ports = vec![PortAsk { name: "web".into(), host: 0, container: Some(8080) }];
        a
    };
    let n = NodeId::from("n");
    pool.hold(&web("a"), &n, &[31004]).unwrap();
    pool.hold(&web("b"), &n, &[31005]).unwrap();
    let usage = pool.nodes().next().unwrap();
    assert_eq!((usage.tasks, usage.used.cpu_millis, usage.ports_used), (2, 6000, 2));
    // Held ports are taken, room is counted, a task is held once.
    let mut small = web("c");
    small.resources.cpu_millis = 1000;
    let taken = CommitError::NoLongerFits { node: n.clone(), reason: Reason::PortTaken(31004) };
    assert_eq!(pool.hold(&small, &n, &[31004]), Err(taken));
    let short = Reason::Cpu { asked: 3000, free: 2000 };
    assert_eq!(
        pool.hold(&web("c"), &n, &[31006]),
        Err(CommitError::NoLongerFits { node: n.clone(), reason: short })
    );
    assert_eq!(pool.hold(&web("a"), &n, &[31007]), Err(CommitError::AlreadyPlaced("a".into())));
    let out = CommitError::NoLongerFits { node: n.clone(), reason: Reason::PortOutOfRange(40000) };
    assert_eq!(pool.hold(&small, &n, &[40000]), Err(out));
    assert!(matches!(pool.hold(&web("e"), &n, &[]), Err(CommitError::Mismatch(_))));
    assert_eq!(
        pool.hold(&web("f"), &NodeId::from("gone"), &[31001]),
        Err(CommitError::NodeGone(NodeId::from("gone")))
    );
    // Once the node is back, placement works around what is held; released, it is free.
    let mut back = node("n", 8, 64, &[]);
    back.ports = vec![PortRange { start: 31004, end: 31006 }];
    back.slots = Some(3);
    pool.upsert_node(back);
    let mut one = ask("g", "svc", 1, 1);
    one.ports = vec![PortAsk { name: "web".into(), host: 0, container: Some(8080) }];
    assert_eq!(pool.reserve(&one).unwrap().ports[0].host, 31006);
    pool.release(&TaskId::from("a"));
    assert_eq!(pool.nodes().next().unwrap().tasks, 2);
}

#[test]
fn disabling_and_removing_nodes() {
    let mut pool = Pool::with_nodes(Options::default(), [node("n", 8, 64, &[])]);
    pool.reserve(&ask("a", "g", 2, 1)).unwrap();
    let mut off = node("n", 8, 64, &[]);
    off.disabled = true;
    pool.upsert_node(off);
    assert_eq!(pool.place(&ask("b", "g", 1, 1)).unwrap_err().summary(), "1 node: disabled");
    // Removing the node releases what ran there and returns it.
    assert_eq!(pool.remove_node(&NodeId::from("n")), vec![TaskId::from("a")]);
    assert_eq!(pool.task_count(), 0);
    assert_eq!(pool.project_usage("proj").jobs, 0);
}

#[test]
fn shrunk_node_reads_zero_free_until_tasks_end() {
    let mut pool = Pool::with_nodes(Options::default(), [node("n", 8, 64, &[])]);
    pool.reserve(&ask("a", "g", 6, 1)).unwrap();
    pool.upsert_node(node("n", 4, 64, &[]));
    let usage = pool.nodes().next().unwrap();
    assert_eq!(usage.free.cpu_millis, 0);
    assert_eq!(usage.used, kiln_scheduler::Resources::new(6000, GI, 0));
    assert!(pool.place(&ask("b", "g", 1, 1)).is_err());
    let _ = res(1, 1);
}

#[test]
fn agents_coming_and_going_reuse_their_place() {
    let mut pool = Pool::with_nodes(Options::default(), [node("a", 8, 8, &[("city", "sz")])]);
    for round in 0..50 {
        let id = format!("n{round}");
        pool.upsert_node(node(&id, 8, 8, &[("city", "sh")]));
        let mut a = ask(&format!("t{round}"), "g", 8, 1);
        a.constraints = all(&[("city", "LIKE", Some("sh"))]);
        assert_eq!(pool.reserve(&a).unwrap().node, NodeId(id.clone()));
        assert_eq!(pool.remove_node(&NodeId(id)), vec![TaskId(format!("t{round}"))]);
    }
    assert_eq!(pool.node_count(), 1);
    assert_eq!(pool.nodes().count(), 1);
    let mut a = ask("last", "g", 8, 1);
    a.constraints = all(&[("city", "LIKE", Some("sz"))]);
    assert_eq!(pool.reserve(&a).unwrap().node, NodeId::from("a"));
}

#[test]
fn slots_limit_tasks_whatever_the_resources() {
    let mut agent = node("agent1", 64, 64, &[]);
    agent.slots = Some(2);
    let mut pool = Pool::with_nodes(Options::default(), [agent, node("agent2", 1, 64, &[])]);
    let on_agent1 = |t: &str| {
        let mut a = ask(t, "g", 1, 1);
        a.constraints = all(&[("hostname", "LIKE", Some("agent1"))]);
        a
    };
    pool.reserve(&on_agent1("a")).unwrap();
    pool.reserve(&on_agent1("b")).unwrap();
    // 62 CPUs free but both slots taken.
    let u = pool.place(&on_agent1("c")).unwrap_err();
    assert_eq!(u.summary(), "1 node: hostname LIKE agent1 failed; 1 node: all 2 slots busy");
    assert_eq!(pool.place(&ask("c", "g", 1, 1)).unwrap().node, NodeId::from("agent2"));
    pool.release(&TaskId::from("a"));
    assert_eq!(pool.place(&on_agent1("c")).unwrap().node, NodeId::from("agent1"));
}
