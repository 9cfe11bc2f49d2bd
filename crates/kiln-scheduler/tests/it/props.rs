//! Property tests of the ledger's invariants over random pools and random sequences of
//! place / commit / release / node changes.

use std::collections::BTreeMap;

use kiln_scheduler::{
    Ask, AttrValue, Constraints, Network, Node, Options, Pool, PortAsk, PortRange, Predicate,
    Resources, Strategy as Packing, TaskId,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Reserve { cores: u64, mem: u64, ports: usize, cons: u8, spread: bool, group: u8 },
    Release(usize),
    Stale { cores: u64 },
    Resize { node: usize, cores: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u64..9, 1u64..9, 0usize..3, 0u8..5, any::<bool>(), 0u8..3).prop_map(
            |(cores, mem, ports, cons, spread, group)| Step::Reserve { cores, mem, ports, cons, spread, group }
        ),
        2 => (0usize..64).prop_map(Step::Release),
        1 => (1u64..9).prop_map(|cores| Step::Stale { cores }),
        1 => (0usize..6, 2u64..24).prop_map(|(node, cores)| Step::Resize { node, cores }),
    ]
}

fn make_node(i: usize, cores: u64) -> Node {
    let mut n = Node::new(
        &format!("n{i}"),
        &format!("10.0.0.{i}"),
        Resources::new(cores * 1000, 16 << 30, 100 << 30),
    );
    n.ports = vec![PortRange { start: 31000, end: 31003 }];
    n.attributes.insert("rack".into(), AttrValue::Text(format!("r{}", i % 3)));
    n
}

fn constraints(kind: u8) -> Constraints {
    let p = |a: &str, o: &str, v: Option<&str>| vec![Predicate::new(a, o, v).unwrap()];
    let groups = match kind {
        0 => vec![],
        1 => vec![p("hostname", "UNIQUE", None)],
        2 => vec![p("rack", "MAX_PER", Some("2"))],
        3 => vec![p("rack", "LIKE", Some("r0|r1")), p("hostname", "UNIQUE", None)],
        _ => vec![p("rack", "GROUP_BY", Some("3"))],
    };
    Constraints::new(groups).unwrap()
}

fn ask(n: usize, cores: u64, mem: u64, ports: usize, cons: u8, spread: bool, group: u8) -> Ask {
    let mut a = Ask::new(
        &format!("t{n}"),
        &format!("g{group}"),
        &format!("p{}", group % 2),
        Resources::new(cores * 1000, mem << 30, 1 << 30),
    );
    a.network = Network::Host;
    a.ports =
        (0..ports).map(|i| PortAsk { name: format!("p{i}"), host: 0, container: None }).collect();
    a.constraints = constraints(cons);
    a.strategy = if spread { Packing::Spread } else { Packing::BinPack };
    a
}

/// Checks every invariant against the pool's own report of its tasks.
fn check(
    pool: &Pool,
    asks: &BTreeMap<TaskId, (Ask, kiln_scheduler::Placement)>,
) -> Result<(), TestCaseError> {
    let mut used: BTreeMap<String, Resources> = BTreeMap::new();
    let mut ports: BTreeMap<(String, u16), &TaskId> = BTreeMap::new();
    for (t, (a, p)) in asks {
        let e = used.entry(p.node.0.clone()).or_default();
        *e = e.saturating_add(a.resources);
        for port in &p.ports {
            prop_assert!(
                ports.insert((p.node.0.clone(), port.host), t).is_none(),
                "port {} handed out twice",
                port.host
            );
        }
    }
    for u in pool.nodes() {
        let mine = used.get(&u.node.id.0).copied().unwrap_or_default();
        prop_assert_eq!(u.used, mine);
    }
    // UNIQUE: no two tasks of a group with hostname UNIQUE on one node.
    let mut seen = std::collections::BTreeSet::new();
    for (a, p) in asks.values() {
        if a.constraints.to_string().contains("hostname UNIQUE") {
            prop_assert!(
                seen.insert((a.group.clone(), p.node.clone())),
                "UNIQUE violated on {}",
                p.node
            );
        }
    }
    Ok(())
}

fn run(steps: &[Step]) -> Result<Vec<String>, TestCaseError> {
    let mut pool =
        Pool::with_nodes(Options::default(), (0..6).map(|i| make_node(i, 8 + 2 * i as u64)));
    let mut live: BTreeMap<TaskId, (Ask, kiln_scheduler::Placement)> = BTreeMap::new();
    let mut log = Vec::new();
    let mut next = 0;
    for s in steps {
        match s {
            Step::Reserve { cores, mem, ports, cons, spread, group } => {
                let a = ask(next, *cores, *mem, *ports, *cons, *spread, *group);
                next += 1;
                match pool.reserve(&a) {
                    Ok(p) => {
                        // Never overcommit: the placement fits the node as registered.
                        log.push(format!("{} -> {} {:?}", a.task, p.node, p.ports));
                        live.insert(a.task.clone(), (a, p));
                    }
                    Err(u) => log.push(format!("{} waits: {}", a.task, u.summary())),
                }
            }
            Step::Release(i) => {
                if let Some(t) = live.keys().nth(*i % live.len().max(1)).cloned() {
                    let before = pool.project_usage(&live[&t].0.project);
                    prop_assert!(pool.release(&t).is_some());
                    prop_assert!(pool.release(&t).is_none(), "release is idempotent");
                    let after = pool.project_usage(&live[&t].0.project);
                    prop_assert_eq!(before.jobs, after.jobs + 1);
                    live.remove(&t);
                    log.push(format!("release {t}"));
                }
            }
            Step::Stale { cores } => {
                // Two placements from one state: committing both must not overcommit.
                let a = ask(next, *cores, 1, 1, 0, false, 0);
                let b = ask(next + 1, *cores, 1, 1, 0, false, 0);
                next += 2;
                if let (Ok(pa), Ok(pb)) = (pool.place(&a), pool.place(&b)) {
                    pool.commit(&a, &pa).unwrap();
                    live.insert(a.task.clone(), (a, pa));
                    if pool.commit(&b, &pb).is_ok() {
                        live.insert(b.task.clone(), (b, pb));
                    }
                }
            }
            Step::Resize { node, cores } => {
                pool.upsert_node(make_node(*node, *cores));
            }
        }
        check(&pool, &live)?;
        // Nothing placed after a resize exceeds the node's allocatable resources: every
        // commit checks free space, so used <= allocatable unless the node shrank under
        // running tasks (then free reads zero and nothing more is placed there).
        for u in pool.nodes() {
            prop_assert!(u.free.fits_in(u.node.allocatable()));
            if !u.used.fits_in(u.node.allocatable()) {
                prop_assert_eq!(
                    u.free.cpu_millis.min(u.free.memory_bytes).min(u.free.disk_bytes),
                    0
                );
            }
        }
    }
    Ok(log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn ledger_never_overcommits_and_placements_are_deterministic(steps in prop::collection::vec(step(), 1..60)) {
        let first = run(&steps)?;
        let second = run(&steps)?;
        prop_assert_eq!(first, second);
    }

    /// Without resizes, the sum of reservations on a node never exceeds it.
    #[test]
    fn used_never_exceeds_allocatable(steps in prop::collection::vec(step(), 1..60)) {
        let steps: Vec<Step> = steps.into_iter().filter(|s| !matches!(s, Step::Resize { .. })).collect();
        let mut pool = Pool::with_nodes(Options::default(), (0..6).map(|i| make_node(i, 8 + 2 * i as u64)));
        let mut next = 0;
        for s in &steps {
            if let Step::Reserve { cores, mem, ports, cons, spread, group } = s {
                let _ = pool.reserve(&ask(next, *cores, *mem, *ports, *cons, *spread, *group));
                next += 1;
            }
            for u in pool.nodes() {
                prop_assert!(u.used.fits_in(u.node.allocatable()), "{} overcommitted: {:?}", u.node.id, u.used);
            }
        }
    }

    /// What is released can be placed again: fill, release everything, fill again the same.
    #[test]
    fn released_resources_are_reusable(sizes in prop::collection::vec((1u64..9, 0usize..3), 1..40)) {
        let mut pool = Pool::with_nodes(Options::default(), (0..6).map(|i| make_node(i, 8 + 2 * i as u64)));
        let fill = |pool: &mut Pool, round: usize| -> Vec<Option<String>> {
            sizes.iter().enumerate().map(|(i, (c, p))| {
                let mut a = ask(i, *c, 1, *p, 0, false, 0);
                a.task = TaskId(format!("r{round}-{i}"));
                pool.reserve(&a).ok().map(|p| format!("{} {:?}", p.node, p.ports))
            }).collect()
        };
        let first = fill(&mut pool, 0);
        for i in 0..sizes.len() {
            pool.release(&TaskId(format!("r0-{i}")));
        }
        prop_assert_eq!(pool.task_count(), 0);
        for u in pool.nodes() {
            prop_assert_eq!(u.used, Resources::default());
            prop_assert_eq!(u.ports_used, 0);
        }
        let second = fill(&mut pool, 1);
        prop_assert_eq!(first, second);
    }
}
