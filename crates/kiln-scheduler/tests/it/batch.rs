//! Batches: priorities, quotas and fair share between projects.

use std::collections::BTreeMap;

use kiln_scheduler::{Ask, Options, Pool, Quota, Resources, Wait};

use crate::support::{GI, node};

fn task(id: &str, project: &str, cores: u64, priority: i32) -> Ask {
    let mut a = Ask::new(id, id, project, Resources::new(cores * 1000, GI, 0));
    a.priority = priority;
    a
}

fn pool(nodes: usize, cores: u64) -> Pool {
    Pool::with_nodes(
        Options::default(),
        (0..nodes).map(|i| node(&format!("n{i}"), cores, 1024, &[])),
    )
}

#[test]
fn fair_share_when_the_pool_is_full() {
    // 16 slots of 8 CPUs; project a queued 20 tasks before b queued 20.
    let mut p = pool(4, 32);
    let mut queue: Vec<Ask> = (0..20).map(|i| task(&format!("a{i}"), "a", 8, 0)).collect();
    queue.extend((0..20).map(|i| task(&format!("b{i}"), "b", 8, 0)));
    let out = p.place_batch(&queue, &BTreeMap::new());
    assert_eq!(out.placed.len(), 16);
    assert_eq!(p.project_usage("a").jobs, 8);
    assert_eq!(p.project_usage("b").jobs, 8);
    assert_eq!(out.waiting.len(), 24);
    let Wait::Unplaced(u) = &out.waiting[0].1 else { panic!("{:?}", out.waiting[0]) };
    assert_eq!(u.summary(), "4 nodes: 8 CPUs asked, at most 0 free");
}

#[test]
fn fair_share_counts_what_already_runs() {
    let mut p = pool(2, 32);
    for i in 0..6 {
        p.reserve(&task(&format!("old{i}"), "a", 8, 0)).unwrap();
    }
    let mut queue: Vec<Ask> = (0..4).map(|i| task(&format!("a{i}"), "a", 8, 0)).collect();
    queue.extend((0..4).map(|i| task(&format!("b{i}"), "b", 8, 0)));
    let out = p.place_batch(&queue, &BTreeMap::new());
    // Two slots were left: both go to b, which held nothing.
    let names: Vec<String> = out.placed.iter().map(|(_, p)| p.task.0.clone()).collect();
    assert_eq!(names, vec!["b0", "b1"]);
}

#[test]
fn priority_goes_first() {
    let mut p = pool(1, 16);
    let queue = vec![task("low1", "a", 8, 0), task("low2", "a", 8, 0), task("high", "b", 8, 10)];
    let out = p.place_batch(&queue, &BTreeMap::new());
    let names: Vec<String> = out.placed.iter().map(|(_, p)| p.task.0.clone()).collect();
    assert_eq!(names, vec!["high", "low1"]);
    assert_eq!(queue[out.waiting[0].0].task.0, "low2");
}

#[test]
fn quotas_of_cpu_and_jobs() {
    let mut p = pool(4, 64);
    let quotas = BTreeMap::from([
        ("a".to_string(), Quota { cpu_millis: Some(20_000), ..Quota::default() }),
        ("b".to_string(), Quota { jobs: Some(1), ..Quota::default() }),
    ]);
    let queue = vec![
        task("a1", "a", 8, 0),
        task("a2", "a", 8, 0),
        task("a3", "a", 8, 0),
        task("a4", "a", 4, 0),
        task("b1", "b", 1, 0),
        task("b2", "b", 1, 0),
    ];
    let out = p.place_batch(&queue, &quotas);
    let mut placed: Vec<String> = out.placed.iter().map(|(_, p)| p.task.0.clone()).collect();
    placed.sort();
    assert_eq!(placed, vec!["a1", "a2", "a4", "b1"]);
    let why: BTreeMap<String, String> =
        out.waiting.iter().map(|(i, w)| (queue[*i].task.0.clone(), w.to_string())).collect();
    assert_eq!(why["a3"], "project a quota of 20 CPU reached (16 used, 8 asked)");
    assert_eq!(why["b2"], "project b quota of 1 concurrent job reached (1 used, 1 asked)");
}

#[test]
fn batch_keeps_group_constraints_and_says_why() {
    let mut p = pool(3, 64);
    let unique = kiln_scheduler::Constraints::new(vec![vec![
        kiln_scheduler::Predicate::new("hostname", "UNIQUE", None).unwrap(),
    ]])
    .unwrap();
    let mut queue = Vec::new();
    for (g, n) in [("daemons", 5), ("other", 2)] {
        for i in 0..n {
            let mut a = task(&format!("{g}{i}"), "distcc", 1, 0);
            a.group = g.into();
            a.constraints = unique.clone();
            queue.push(a);
        }
    }
    let out = p.place_batch(&queue, &BTreeMap::new());
    let mut placed: Vec<String> = out.placed.iter().map(|(_, p)| p.task.0.clone()).collect();
    placed.sort();
    assert_eq!(placed, vec!["daemons0", "daemons1", "daemons2", "other0", "other1"]);
    let why: Vec<(String, String)> =
        out.waiting.iter().map(|(i, w)| (queue[*i].task.0.clone(), w.to_string())).collect();
    assert_eq!(
        why,
        vec![
            ("daemons3".to_string(), "3 nodes: hostname UNIQUE failed".to_string()),
            ("daemons4".to_string(), "3 nodes: hostname UNIQUE failed".to_string()),
        ]
    );
}

#[test]
fn a_batch_stops_once_every_slot_is_taken() {
    let mut n = crate::support::node("agent", 64, 64, &[]);
    n.slots = Some(2);
    let mut p = Pool::with_nodes(Options::default(), [n]);
    let queue: Vec<Ask> = (0..5).map(|i| task(&format!("t{i}"), "a", 1, 0)).collect();
    let out = p.place_batch(&queue, &BTreeMap::new());
    let placed: Vec<usize> = out.placed.iter().map(|(i, _)| *i).collect();
    assert_eq!(placed, [0, 1]);
    assert!(out.waiting.is_empty(), "the rest is not tried: {:?}", out.waiting);
    assert_eq!(p.free_slots(), Some(0));
    assert!(p.place_batch(&queue[2..], &BTreeMap::new()).placed.is_empty());
}
