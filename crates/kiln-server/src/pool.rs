//! The nodes of the resource pool as the dispatcher sees them: what each agent declared, what
//! operators set, whether its agent is connected and how many of its slots are taken. Where an
//! attempt goes (resources, constraints, host ports) is `kiln_scheduler`'s decision over
//! [`Node::sched_node`]s; this module adds what only the server knows (sessions and slots).
//!
//! A node is an agent name. It is `ready` while a session of that agent polls, `lost` when the
//! session missed its heartbeats (its attempts failed as "agent lost" and were retried under
//! their job's retry policy), and `down` when no session exists since this server started.
//! Nodes are stored (`kiln_store::NodeRecord`): operators' attributes and the disabled flag
//! outlive restarts and re-registrations.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use kiln_api::agent::RegisterAgent;
use kiln_api::pool::{AttrValue, NodeInfo, Offer, PortRange, Resources};
use kiln_store::NodeRecord;
use serde::{Deserialize, Serialize};

/// What an agent declared when it registered, as stored in `nodes.facts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// IP.
    #[serde(default)]
    pub ip: String,
    /// Executor.
    #[serde(default)]
    pub executor: String,
    /// Slots.
    #[serde(default)]
    pub capacity: u32,
    /// Resources, if declared.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Host ports.
    #[serde(default)]
    pub ports: Option<PortRange>,
    /// The agent's own attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
}

impl NodeFacts {
    /// The facts of a registration.
    pub fn of(req: &RegisterAgent) -> NodeFacts {
        NodeFacts {
            hostname: req.hostname.clone(),
            ip: req.ip.clone(),
            executor: req.executor.clone(),
            capacity: req.capacity.max(1),
            resources: req.resources,
            ports: req.ports,
            attributes: req.attributes.clone(),
        }
    }
}

/// Whether a node's agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// A session polls.
    Ready,
    /// Its session missed its heartbeats.
    Lost,
    /// No session since this server started (or its agent stopped).
    Down,
}

impl NodeState {
    /// `ready`, `lost` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Lost => "lost",
            NodeState::Down => "down",
        }
    }
}

/// A node of the pool.
#[derive(Debug, Clone)]
pub struct Node {
    /// Agent name.
    pub name: String,
    /// Declared facts.
    pub facts: NodeFacts,
    /// Operators' attributes.
    pub operator: BTreeMap<String, AttrValue>,
    /// Operator disabled it.
    pub disabled: bool,
    /// Connection state.
    pub state: NodeState,
    /// The live session, when `Ready`.
    pub session: Option<String>,
    /// Last poll (or registration, from the store).
    pub last_seen: Option<DateTime<Utc>>,
    /// Attempts placed on it now (handed out or waiting for its next poll).
    pub running: u32,
    /// Host ports handed out now.
    pub ports_used: BTreeSet<u16>,
    /// The images its engine holds, as its agent last reported them (in memory only: an
    /// agent reports them again when it registers); `None`: its executor has no images.
    pub images: Option<Vec<kiln_api::pool::NodeImage>>,
}

impl Node {
    /// A stored node, not connected yet.
    pub fn from_record(r: &NodeRecord) -> Node {
        let facts: NodeFacts = serde_json::from_value(r.facts.clone()).unwrap_or_default();
        let operator = r
            .attributes
            .iter()
            .filter_map(|(k, v)| {
                serde_json::from_value::<AttrValue>(v.clone()).ok().map(|v| (k.clone(), v))
            })
            .collect();
        Node {
            name: r.name.clone(),
            facts,
            operator,
            disabled: r.disabled,
            state: NodeState::Down,
            session: None,
            last_seen: Some(r.last_seen),
            running: 0,
            ports_used: BTreeSet::new(),
            images: None,
        }
    }

    /// The agent's attributes with operators' values over them.
    pub fn attributes(&self) -> BTreeMap<String, AttrValue> {
        let mut all = self.facts.attributes.clone();
        all.extend(self.operator.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// Host ports it hands out.
    pub fn port_range(&self) -> PortRange {
        self.facts.ports.unwrap_or(PortRange::DEFAULT)
    }

    /// Slots.
    pub fn capacity(&self) -> u32 {
        self.facts.capacity.max(1)
    }

    /// Whether the server lets anything be placed here now, before slots, resources and
    /// constraints are looked at: the agent is connected and the node is enabled.
    pub fn gate(&self) -> Result<(), String> {
        match self.state {
            NodeState::Ready => {}
            NodeState::Lost => return Err("agent lost".into()),
            NodeState::Down => return Err("agent not connected".into()),
        }
        if self.disabled {
            return Err("disabled".into());
        }
        Ok(())
    }

    /// The node as the scheduler sees it: disabled unless [`Node::gate`] passes, with the
    /// agent's slots. A node that declared no resources counts as having plenty (only its
    /// slots limit it).
    pub fn sched_node(&self) -> kiln_scheduler::Node {
        let total = match self.facts.resources {
            Some(r) => kiln_scheduler::Resources {
                cpu_millis: r.cpu_millis,
                memory_bytes: r.memory_bytes,
                disk_bytes: r.disk_bytes,
            },
            None => kiln_scheduler::Resources {
                cpu_millis: 1 << 40,
                memory_bytes: 1 << 60,
                disk_bytes: 1 << 60,
            },
        };
        let range = self.port_range();
        kiln_scheduler::Node {
            id: kiln_scheduler::NodeId(self.name.clone()),
            hostname: self.facts.hostname.clone(),
            ip: self.facts.ip.clone(),
            disabled: self.gate().is_err(),
            total,
            reserved: kiln_scheduler::Resources::default(),
            ports: vec![kiln_scheduler::PortRange { start: range.start, end: range.end }],
            attributes: self.attributes().into_iter().map(|(k, v)| (k, sched_value(v))).collect(),
            slots: Some(self.capacity()),
            images: self.image_keys(),
        }
    }

    /// Its images for the scheduler: every tag and digest by `kiln_scheduler::image_key`,
    /// with the image's size.
    pub fn image_keys(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for i in self.images.iter().flatten() {
            for name in i.tags.iter().chain(&i.digests) {
                out.insert(kiln_scheduler::image_key(name), i.size);
            }
        }
        out
    }

    /// The operators' view of it.
    pub fn info(&self, index: usize) -> NodeInfo {
        NodeInfo {
            index,
            name: self.name.clone(),
            ip: self.facts.ip.clone(),
            hostname: self.facts.hostname.clone(),
            state: self.state.as_str().to_string(),
            disabled: self.disabled,
            executor: self.facts.executor.clone(),
            capacity: self.facts.capacity,
            resources: self.facts.resources.unwrap_or_default(),
            ports: self.port_range(),
            attributes: self.attributes(),
            operator_attributes: self.operator.clone(),
            running: self.running,
            last_seen: self.last_seen,
            images: self.images.clone().unwrap_or_default(),
        }
    }

    /// Its free capacity, `free` being what the scheduler has not reserved.
    pub fn offer(&self, index: usize, free: Resources) -> Offer {
        Offer {
            index,
            name: self.name.clone(),
            ip: self.facts.ip.clone(),
            hostname: self.facts.hostname.clone(),
            free: if self.facts.resources.is_some() { free } else { Resources::default() },
            free_slots: self.capacity().saturating_sub(self.running),
            free_ports: free_ranges(self.port_range(), &self.ports_used),
            attributes: self.attributes(),
        }
    }
}

/// `range` minus `used`, as ranges.
pub fn free_ranges(range: PortRange, used: &BTreeSet<u16>) -> Vec<PortRange> {
    let mut out = Vec::new();
    let mut start = range.start;
    for &p in used.range(range.start..=range.end) {
        if p > start {
            out.push(PortRange { start, end: p - 1 });
        }
        start = p.saturating_add(1);
        if p == u16::MAX {
            return out;
        }
    }
    if start <= range.end {
        out.push(PortRange { start, end: range.end });
    }
    out
}

/// An attribute value as the scheduler takes it.
pub fn sched_value(v: AttrValue) -> kiln_scheduler::AttrValue {
    match v {
        AttrValue::Text(t) => kiln_scheduler::AttrValue::Text(t),
        AttrValue::Number(n) => kiln_scheduler::AttrValue::Number(n),
        AttrValue::Set(items) => kiln_scheduler::AttrValue::Set(items.into_iter().collect()),
    }
}

/// Groups per-node reasons: "2 nodes: disabled; 1 node: 8 CPUs asked, 6 free" (most nodes
/// first), or that there are no nodes.
pub fn group_reasons(reasons: impl IntoIterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    if counts.is_empty() {
        return "no agent has registered".into();
    }
    let mut groups: Vec<(String, usize)> = counts.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups
        .iter()
        .map(|(r, n)| format!("{n} node{}: {r}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpus: u64, mem_gi: u64, slots: u32) -> Node {
        Node {
            name: name.into(),
            facts: NodeFacts {
                capacity: slots,
                resources: Some(Resources {
                    cpu_millis: cpus * 1000,
                    memory_bytes: mem_gi << 30,
                    disk_bytes: 0,
                }),
                ..NodeFacts::default()
            },
            operator: BTreeMap::new(),
            disabled: false,
            state: NodeState::Ready,
            session: Some("s".into()),
            last_seen: None,
            running: 0,
            ports_used: BTreeSet::new(),
            images: None,
        }
    }

    #[test]
    fn the_gate_checks_connection_and_disabled_and_slots_go_to_the_scheduler() {
        let mut n = node("a", 8, 16, 2);
        assert_eq!(n.gate(), Ok(()));
        assert_eq!(n.sched_node().slots, Some(2));
        n.disabled = true;
        assert!(n.sched_node().disabled);
        assert_eq!(n.gate(), Err("disabled".into()));
        n.disabled = false;
        n.state = NodeState::Lost;
        assert_eq!(n.gate(), Err("agent lost".into()));
        n.state = NodeState::Ready;
        let s = n.sched_node();
        assert!(!s.disabled);
        assert_eq!(s.total.cpu_millis, 8000);
        assert_eq!(s.ports, vec![kiln_scheduler::PortRange { start: 31000, end: 32000 }]);
    }

    #[test]
    fn reasons_are_grouped_most_nodes_first() {
        let reasons =
            ["disabled", "8 CPUs asked, 6 free", "disabled", "agent lost"].map(String::from);
        assert_eq!(
            group_reasons(reasons),
            "2 nodes: disabled; 1 node: 8 CPUs asked, 6 free; 1 node: agent lost"
        );
        assert_eq!(group_reasons(Vec::new()), "no agent has registered");
    }

    #[test]
    fn free_port_ranges_skip_the_used_ones() {
        let r = PortRange { start: 31000, end: 31010 };
        assert_eq!(free_ranges(r, &BTreeSet::new()), vec![r]);
        let used = BTreeSet::from([31000, 31005, 31006, 31010, 40000]);
        assert_eq!(
            free_ranges(r, &used),
            vec![PortRange { start: 31001, end: 31004 }, PortRange { start: 31007, end: 31009 }]
        );
    }
}
