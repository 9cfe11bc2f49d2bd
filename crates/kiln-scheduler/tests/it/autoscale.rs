//! The elastic pool's planner: how many template nodes the queue needs (placed with the real
//! placement code), what brings no node and why, `min`/`max`, and which idle nodes go.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_scheduler::autoscale::{GroupState, Member, NodeGroup, Stuck, plan, scale_in};
use kiln_scheduler::{AttrValue, NodeId, Options, Pool, PortRange, Resources, TaskId};
use proptest::prelude::*;

use crate::support::{GI, all, ask};

fn group(name: &str, cores: u64, mem_gi: u64, slots: u32, min: u32, max: u32) -> NodeGroup {
    NodeGroup {
        name: name.to_string(),
        min,
        max,
        resources: Resources::new(cores * 1000, mem_gi * GI, 100 * GI),
        ports: PortRange { start: 31000, end: 31010 },
        slots,
        attributes: BTreeMap::new(),
    }
}

fn state(group: NodeGroup, nodes: u32, coming: u32) -> GroupState {
    GroupState { group, nodes, coming }
}

#[test]
fn a_queue_is_bin_packed_onto_just_enough_template_nodes() {
    // Four nodes of 4 CPUs: ten 1.5-CPU tasks take 2 per node, so 5 nodes; max 8.
    let g = state(group("big", 4, 16, 8, 0, 8), 0, 0);
    let pending: Vec<_> = (0..10).map(|i| ask(&format!("t{i}"), "run/job", 1, 1)).collect();
    let p = plan(std::slice::from_ref(&g), &pending);
    assert_eq!(p.out.len(), 1);
    assert_eq!((p.out[0].group.as_str(), p.out[0].count), ("big", 3), "{p:?}");
    assert_eq!(p.out[0].tasks.len(), 10);
    assert!(p.stuck.is_empty());

    let mut half = pending.clone();
    for a in &mut half {
        a.resources.cpu_millis = 1500;
    }
    let p = plan(&[g], &half);
    assert_eq!(p.out[0].count, 5, "two 1.5-CPU tasks per 4-CPU node");
    assert_eq!(p.out[0].reason, "10 tasks fit no current node");
}

#[test]
fn nodes_already_coming_are_filled_before_new_ones_are_asked_for() {
    let pending: Vec<_> = (0..6).map(|i| ask(&format!("t{i}"), "g", 2, 1)).collect();
    // 2 coming nodes of 4 CPUs take 4 tasks; 2 more tasks need one more node.
    let p = plan(&[state(group("big", 4, 16, 8, 0, 10), 1, 2)], &pending);
    assert_eq!(p.out[0].count, 1);
    assert_eq!(p.out[0].tasks.len(), 2, "only the tasks the new node is for");
    assert_eq!(p.covered.len(), 6);
    // All fit on what is coming: nothing asked.
    let p = plan(&[state(group("big", 4, 16, 8, 0, 10), 0, 3)], &pending);
    assert_eq!(p.out, vec![]);
}

#[test]
fn slots_and_unique_constraints_count_like_on_a_real_node() {
    // Slots: 1 per node, so 3 tasks of no resources need 3 nodes.
    let pending: Vec<_> = (0..3).map(|i| ask(&format!("t{i}"), "g", 0, 0)).collect();
    let p = plan(&[state(group("one", 4, 16, 1, 0, 10), 0, 0)], &pending);
    assert_eq!(p.out[0].count, 3);
    // UNIQUE hostname: one task of the group per node even with room for more.
    let mut unique = pending.clone();
    for a in &mut unique {
        a.constraints = all(&[("hostname", "UNIQUE", None)]);
    }
    let p = plan(&[state(group("wide", 64, 64, 64, 0, 10), 0, 0)], &unique);
    assert_eq!(p.out[0].count, 3);
}

#[test]
fn a_task_no_template_takes_brings_no_node_and_says_why_per_group() {
    let mut gpu = group("gpu", 8, 32, 4, 0, 4);
    gpu.attributes.insert("gpu".into(), AttrValue::Text("a100".into()));
    let groups = [state(group("small", 2, 4, 4, 0, 4), 0, 0), state(gpu, 0, 0)];
    let mut huge = ask("huge", "g", 16, 1);
    huge.constraints = all(&[("city", "LIKE", Some("paris"))]);
    let p = plan(&groups, &[huge]);
    assert_eq!(p.out, vec![]);
    let [(task, Stuck::NoGroupFits(why))] = &p.stuck[..] else { panic!("{p:?}") };
    assert_eq!(task, &TaskId("huge".into()));
    assert_eq!(why.len(), 2);
    let text = p.stuck[0].1.to_string();
    assert!(text.starts_with("fits no node group's template (gpu: 1 node: "), "{text}");
    assert!(text.contains("city LIKE paris failed"), "{text}");

    // A constraint naming the group picks that group only.
    let mut on_gpu = ask("g1", "g", 1, 1);
    on_gpu.constraints = all(&[("group", "LIKE", Some("gpu"))]);
    let p = plan(&groups, &[on_gpu]);
    assert_eq!(p.out.len(), 1);
    assert_eq!(p.out[0].group, "gpu");
    // No group at all.
    let p = plan(&[], &[ask("t", "g", 1, 1)]);
    assert_eq!(p.stuck[0].1.to_string(), "fits no current node and no node group is configured");
}

#[test]
fn max_caps_what_is_asked_and_the_rest_waits_at_max() {
    let pending: Vec<_> = (0..5).map(|i| ask(&format!("t{i}"), "g", 4, 1)).collect();
    let p = plan(&[state(group("big", 4, 16, 8, 0, 3), 1, 0)], &pending);
    assert_eq!(p.out[0].count, 2, "1 node + 2 new = max 3");
    assert_eq!(p.stuck.len(), 3);
    assert_eq!(p.stuck[0].1, Stuck::AtMax(vec!["big".into()]));
    assert_eq!(p.stuck[0].1.to_string(), "node group `big` at its max");
    // Another group takes over where the first is full.
    let groups = [state(group("a", 4, 16, 8, 0, 1), 0, 0), state(group("b", 4, 16, 8, 0, 9), 0, 0)];
    let p = plan(&groups, &pending);
    let counts: Vec<_> = p.out.iter().map(|o| (o.group.as_str(), o.count)).collect();
    assert_eq!(counts, [("a", 1), ("b", 4)]);
}

#[test]
fn min_is_kept_even_with_an_empty_queue() {
    let p = plan(&[state(group("warm", 2, 4, 4, 2, 5), 0, 1)], &[]);
    assert_eq!(p.out.len(), 1);
    assert_eq!((p.out[0].count, p.out[0].reason.as_str()), (1, "below min 2"));
    let p = plan(&[state(group("warm", 2, 4, 4, 2, 5), 2, 0)], &[]);
    assert!(p.out.is_empty());
}

#[test]
fn the_least_wasteful_group_is_chosen() {
    let groups =
        [state(group("large", 16, 64, 8, 0, 4), 0, 0), state(group("small", 2, 8, 8, 0, 4), 0, 0)];
    let p = plan(&groups, &[ask("t", "g", 2, 1)]);
    assert_eq!(p.out[0].group, "small");
    let p = plan(&groups, &[ask("t", "g", 4, 1)]);
    assert_eq!(p.out[0].group, "large", "only large takes 4 CPUs");
}

fn member(name: &str, idle_secs: Option<u64>) -> Member {
    Member { node: NodeId(name.into()), idle_for: idle_secs.map(Duration::from_secs) }
}

#[test]
fn idle_nodes_go_down_to_min_longest_idle_first() {
    let g = group("big", 4, 16, 8, 1, 10);
    let members = [
        member("n1", Some(30)),
        member("n2", Some(90)),
        member("n3", None),
        member("n4", Some(61)),
    ];
    let out = scale_in(&g, Duration::from_secs(60), &members, 0);
    let names: Vec<_> = out.iter().map(|s| s.node.0.as_str()).collect();
    assert_eq!(names, ["n2", "n4"]);
    assert_eq!(out[0].reason, "idle for 90s (idle time 60s)");
    // min 3 of 4: only one may go.
    let g3 = NodeGroup { min: 3, ..g.clone() };
    assert_eq!(scale_in(&g3, Duration::from_secs(60), &members, 0).len(), 1);
    // 0 allowed.
    let g0 = NodeGroup { min: 0, ..g };
    let idle = [member("a", Some(5)), member("b", Some(5))];
    assert_eq!(scale_in(&g0, Duration::from_secs(5), &idle, 0).len(), 2);
}

#[test]
fn above_max_the_excess_is_drained_busy_or_not() {
    let g = group("big", 4, 16, 8, 0, 1);
    let members = [member("n1", None), member("n2", None), member("n3", Some(1))];
    let out = scale_in(&g, Duration::from_secs(600), &members, 0);
    let names: Vec<_> = out.iter().map(|s| s.node.0.as_str()).collect();
    assert_eq!(names, ["n3", "n1"], "idle first, then busy, by name");
    assert_eq!(out[1].reason, "group above its max 1");
}

#[test]
fn the_template_is_what_a_node_of_the_group_registers_as() {
    let mut g = group("big", 4, 16, 2, 0, 1);
    g.attributes.insert("city".into(), AttrValue::Text("paris".into()));
    let n = g.template("big-1");
    assert_eq!(n.attribute("group"), Some(AttrValue::Text("big".into())));
    assert_eq!(n.attribute("city"), Some(AttrValue::Text("paris".into())));
    assert_eq!(n.slots, Some(2));
    let mut pool = Pool::with_nodes(Options::default(), [n]);
    assert!(pool.reserve(&ask("a", "g", 4, 16)).is_ok());
    assert!(pool.reserve(&ask("b", "g", 1, 0)).is_err(), "no CPU left");
}

proptest! {
    /// Whatever the queue and groups: never above max, at least min, and every pending task
    /// is either covered by a node asked for (or coming) or stuck, never both; the nodes
    /// asked for really take the covered tasks (placed again from scratch); the same input
    /// gives the same plan.
    #[test]
    fn plans_respect_bounds_and_their_nodes_take_what_they_cover(
        shapes in proptest::collection::vec((0u64..6, 0u64..20, any::<bool>()), 0..40),
        gs in proptest::collection::vec((1u64..8, 1u64..32, 1u32..5, 0u32..3, 0u32..6, 0u32..3, 0u32..2), 0..3),
    ) {
        let groups: Vec<GroupState> = gs.iter().enumerate().map(|(i, &(c, m, slots, min, max, nodes, coming))| {
            let mut g = group(&format!("g{i}"), c, m, slots, min, min + max);
            if i == 1 { g.attributes.insert("zone".into(), AttrValue::Text("b".into())); }
            state(g, nodes, coming)
        }).collect();
        let pending: Vec<_> = shapes.iter().enumerate().map(|(i, &(c, m, zone))| {
            let mut a = ask(&format!("t{i}"), &format!("j{}", i % 3), c, m);
            if zone { a.constraints = all(&[("zone", "LIKE", Some("b"))]); }
            a
        }).collect();
        let p = plan(&groups, &pending);
        prop_assert_eq!(&p, &plan(&groups, &pending));
        for g in &groups {
            let asked: u32 = p.out.iter().filter(|o| o.group == g.group.name).map(|o| o.count).sum();
            let total = g.nodes + g.coming + asked;
            prop_assert!(asked == 0 || total <= g.group.max.max(g.group.min), "{} > max", total);
            prop_assert!(total >= g.group.min);
        }
        prop_assert_eq!(p.covered.len() + p.stuck.len(), pending.len());
        // What each group's coming and asked nodes hold covers the tasks given to them.
        for g in &groups {
            let asked: u32 = p.out.iter().filter(|o| o.group == g.group.name).map(|o| o.count).sum();
            let nodes = u64::from(g.coming + asked);
            let mine: Vec<_> = pending.iter().filter(|a| p.covered.iter().any(|(t, n)| t == &a.task && n == &g.group.name)).collect();
            prop_assert!(mine.len() as u64 <= nodes * u64::from(g.group.slots));
            let cpu: u64 = mine.iter().map(|a| a.resources.cpu_millis).sum();
            prop_assert!(cpu <= nodes * g.group.resources.cpu_millis);
            let mem: u64 = mine.iter().map(|a| a.resources.memory_bytes).sum();
            prop_assert!(mem <= nodes * g.group.resources.memory_bytes);
        }
    }
}
