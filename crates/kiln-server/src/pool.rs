//! The nodes of the resource pool as the dispatcher sees them: what each agent declared, what
//! operators set, whether its agent is connected, and whether a queued attempt fits on it now.
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

/// What one attempt asks of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// Millicores (0: not declared).
    pub cpu_millis: u64,
    /// Bytes (0: not declared).
    pub memory_bytes: u64,
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
    /// Asks of the attempts leased to it now.
    pub used: Ask,
    /// Attempts leased to it now.
    pub running: u32,
    /// Host ports handed out now.
    pub ports_used: BTreeSet<u16>,
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
            used: Ask::default(),
            running: 0,
            ports_used: BTreeSet::new(),
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

    /// Free resources (a node that declared none has none to count: `None`).
    pub fn free(&self) -> Option<Resources> {
        self.facts.resources.map(|r| Resources {
            cpu_millis: r.cpu_millis.saturating_sub(self.used.cpu_millis),
            memory_bytes: r.memory_bytes.saturating_sub(self.used.memory_bytes),
            disk_bytes: r.disk_bytes,
        })
    }

    /// Whether an attempt asking `ask` can start here now; the reason when not, in the words
    /// `kiln run show` prints ("8 CPUs asked, 6 free").
    pub fn fits(&self, ask: &Ask) -> Result<(), String> {
        match self.state {
            NodeState::Ready => {}
            NodeState::Lost => return Err("agent lost".into()),
            NodeState::Down => return Err("agent not connected".into()),
        }
        if self.disabled {
            return Err("disabled".into());
        }
        if self.running >= self.facts.capacity.max(1) {
            return Err(format!("all {} slots busy", self.facts.capacity.max(1)));
        }
        if let (Some(total), Some(free)) = (self.facts.resources, self.free()) {
            if ask.cpu_millis > total.cpu_millis {
                return Err(format!(
                    "{} CPUs asked, the node has {}",
                    cpus(ask.cpu_millis),
                    cpus(total.cpu_millis)
                ));
            }
            if ask.memory_bytes > total.memory_bytes {
                return Err(format!(
                    "{} memory asked, the node has {}",
                    bytes(ask.memory_bytes),
                    bytes(total.memory_bytes)
                ));
            }
            if ask.cpu_millis > free.cpu_millis {
                return Err(format!(
                    "{} CPUs asked, {} free",
                    cpus(ask.cpu_millis),
                    cpus(free.cpu_millis)
                ));
            }
            if ask.memory_bytes > free.memory_bytes {
                return Err(format!(
                    "{} memory asked, {} free",
                    bytes(ask.memory_bytes),
                    bytes(free.memory_bytes)
                ));
            }
        }
        Ok(())
    }

    /// Takes `ask` from the node.
    pub fn reserve(&mut self, ask: &Ask) {
        self.used.cpu_millis += ask.cpu_millis;
        self.used.memory_bytes += ask.memory_bytes;
        self.running += 1;
    }

    /// Gives `ask` back.
    pub fn release(&mut self, ask: &Ask) {
        self.used.cpu_millis = self.used.cpu_millis.saturating_sub(ask.cpu_millis);
        self.used.memory_bytes = self.used.memory_bytes.saturating_sub(ask.memory_bytes);
        self.running = self.running.saturating_sub(1);
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
        }
    }

    /// Its free capacity.
    pub fn offer(&self, index: usize) -> Offer {
        Offer {
            index,
            name: self.name.clone(),
            ip: self.facts.ip.clone(),
            hostname: self.facts.hostname.clone(),
            free: self.free().unwrap_or_default(),
            free_slots: self.facts.capacity.max(1).saturating_sub(self.running),
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

/// Why an attempt waits: the reasons of every node, grouped ("2 nodes: disabled; 1 node: 8
/// CPUs asked, 6 free"), or that there are no nodes.
pub fn why_waiting<'a>(nodes: impl Iterator<Item = &'a Node>, ask: &Ask) -> String {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for n in nodes {
        total += 1;
        let reason = match n.fits(ask) {
            Ok(()) => "fits, waiting for its agent's next poll".to_string(),
            Err(r) => r,
        };
        *reasons.entry(reason).or_default() += 1;
    }
    if total == 0 {
        return "no agent has registered".into();
    }
    let mut groups: Vec<(String, usize)> = reasons.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups
        .iter()
        .map(|(r, n)| format!("{n} node{}: {r}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cpus(millis: u64) -> String {
    if millis % 1000 == 0 { format!("{}", millis / 1000) } else { format!("{}m", millis) }
}

fn bytes(n: u64) -> String {
    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;
    if n >= GI && n % GI == 0 {
        format!("{}Gi", n / GI)
    } else if n >= MI {
        format!("{}Mi", n / MI)
    } else {
        format!("{n}B")
    }
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
            used: Ask::default(),
            running: 0,
            ports_used: BTreeSet::new(),
        }
    }

    #[test]
    fn an_attempt_fits_only_where_resources_and_slots_are_free() {
        let mut n = node("a", 8, 16, 2);
        let big = Ask { cpu_millis: 6000, memory_bytes: 1 << 30 };
        assert_eq!(n.fits(&big), Ok(()));
        n.reserve(&big);
        assert_eq!(n.fits(&big), Err("6 CPUs asked, 2 free".into()));
        let small = Ask { cpu_millis: 500, memory_bytes: 0 };
        assert_eq!(n.fits(&small), Ok(()));
        n.reserve(&small);
        assert_eq!(n.fits(&small), Err("all 2 slots busy".into()));
        n.release(&big);
        assert_eq!(n.fits(&Ask { cpu_millis: 7500, memory_bytes: 0 }), Ok(()));
        assert_eq!(
            n.fits(&Ask { cpu_millis: 9000, memory_bytes: 0 }),
            Err("9 CPUs asked, the node has 8".into())
        );
        assert_eq!(
            n.fits(&Ask { cpu_millis: 0, memory_bytes: 20 << 30 }),
            Err("20Gi memory asked, the node has 16Gi".into())
        );
    }

    #[test]
    fn the_waiting_reason_groups_nodes_by_reason() {
        let mut a = node("a", 8, 16, 4);
        a.disabled = true;
        let mut b = node("b", 8, 16, 4);
        b.disabled = true;
        let mut c = node("c", 8, 16, 4);
        c.reserve(&Ask { cpu_millis: 2000, memory_bytes: 0 });
        let mut d = node("d", 8, 16, 4);
        d.state = NodeState::Lost;
        let ask = Ask { cpu_millis: 8000, memory_bytes: 0 };
        assert_eq!(
            why_waiting([&a, &b, &c, &d].into_iter(), &ask),
            "2 nodes: disabled; 1 node: 8 CPUs asked, 6 free; 1 node: agent lost"
        );
        assert_eq!(why_waiting(std::iter::empty(), &ask), "no agent has registered");
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
