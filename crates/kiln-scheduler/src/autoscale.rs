//! The elastic pool's decisions (cluster-autoscaler's node groups): how many nodes of which
//! group the queue needs, and which idle nodes go. Pure: the server gathers the groups, the
//! tasks no current node takes and its nodes' idle times, calls [`plan`] and [`scale_in`],
//! and carries out what they return.
//!
//! Scale-out is answered by the real placement code: every pending [`Ask`] is placed with
//! [`Pool::reserve`] on a pool of template nodes ([`NodeGroup::template`]: the group's
//! attributes, `group=<name>`, capacity, ports and slots), first on the nodes already asked
//! for and not registered yet ("coming"), then on new ones, each group's new nodes filled
//! (bin-packed) before another is asked for. Constraints, resources, ports and slots are
//! checked exactly as on a real node; no second model of fit exists. A task no group's
//! template takes is [`Stuck::NoGroupFits`] with each group's reason and brings no node;
//! one that only groups at their `max` take is [`Stuck::AtMax`].
//!
//! Invariants: a group never gets more than `max - (nodes + coming)` new nodes, and below
//! `min` it is brought up to `min`; the same input gives the same plan. [`scale_in`] never
//! takes a group below `min` and only picks nodes idle for at least the group's idle time,
//! except nodes above `max` (a lowered max), which are drained whether busy or not.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Ask, AttrValue, Node, NodeId, PortRange, Resources, TaskId};
use crate::pool::{Options, Pool};

/// The attribute naming a node's group (`kiln agent --attribute group=NAME`); usage
/// accounting totals by it too.
pub const GROUP_ATTRIBUTE: &str = "group";

/// What every node of a group looks like, and its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeGroup {
    /// The group's name (also its nodes' `group` attribute).
    pub name: String,
    /// Fewest nodes kept (0 allowed).
    pub min: u32,
    /// Most nodes at once, coming ones included.
    pub max: u32,
    /// Each node's resources as its agent declares them.
    pub resources: Resources,
    /// Each node's host port range.
    pub ports: PortRange,
    /// Each node's tasks at once (its agent's `--capacity`).
    pub slots: u32,
    /// Each node's attributes (without `group`, which is added).
    pub attributes: BTreeMap<String, AttrValue>,
}

impl NodeGroup {
    /// A node as a new node of the group will register, named `id`.
    pub fn template(&self, id: &str) -> Node {
        let mut node = Node::new(id, "", self.resources);
        node.ports = vec![self.ports];
        node.slots = Some(self.slots.max(1));
        node.attributes = self.attributes.clone();
        node.attributes.insert(GROUP_ATTRIBUTE.to_string(), AttrValue::Text(self.name.clone()));
        node
    }
}

/// A group with its nodes now.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    /// The group.
    pub group: NodeGroup,
    /// Its registered nodes that are not being removed.
    pub nodes: u32,
    /// Nodes asked for that have not registered yet.
    pub coming: u32,
}

/// Nodes to ask a group for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOut {
    /// The group.
    pub group: String,
    /// How many new nodes.
    pub count: u32,
    /// The tasks they are for (empty when only `min` asks for them).
    pub tasks: Vec<TaskId>,
    /// Why, for people: `3 tasks fit no current node` or `below min 2`.
    pub reason: String,
}

/// Why a pending task brings no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    /// No group's template takes it: each group with why (the scheduler's words).
    NoGroupFits(Vec<(String, String)>),
    /// Only these groups' templates take it, and they are at their `max`.
    AtMax(Vec<String>),
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stuck::NoGroupFits(v) if v.is_empty() => {
                f.write_str("fits no current node and no node group is configured")
            }
            Stuck::NoGroupFits(v) => {
                let parts: Vec<String> = v.iter().map(|(g, why)| format!("{g}: {why}")).collect();
                write!(f, "fits no node group's template ({})", parts.join("; "))
            }
            Stuck::AtMax(groups) => {
                let names: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
                write!(f, "node group {} at its max", names.join(", "))
            }
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes to ask for, by group name order.
    pub out: Vec<ScaleOut>,
    /// Tasks that will go on a node asked for (coming or new), with its group.
    pub covered: Vec<(TaskId, String)>,
    /// Tasks that bring no node, with why.
    pub stuck: Vec<(TaskId, Stuck)>,
}

/// Decides the nodes to ask for: enough for `pending` (the tasks no current node takes, in
/// the order they are to be placed) on top of the nodes coming, and each group up to its
/// `min`. See the module docs.
pub fn plan(groups: &[GroupState], pending: &[Ask]) -> Plan {
    let mut groups: Vec<&GroupState> = groups.iter().collect();
    groups.sort_by(|a, b| a.group.name.cmp(&b.group.name));
    // The nodes asked for, as they will register; then the new ones as they are decided.
    let mut sim = Pool::new(Options::default());
    for g in &groups {
        for i in 0..g.coming {
            sim.upsert_node(g.group.template(&format!("{}#coming-{i}", g.group.name)));
        }
    }
    // One empty template node per group, to ask whether a new node would take a task.
    let probes: Vec<Pool> = groups
        .iter()
        .map(|g| Pool::with_nodes(Options::default(), [g.group.template(&g.group.name)]))
        .collect();
    let mut added: Vec<u32> = vec![0; groups.len()];
    let mut tasks: Vec<Vec<TaskId>> = vec![Vec::new(); groups.len()];
    let mut out = Plan::default();
    for ask in pending {
        if let Ok(p) = sim.reserve(ask) {
            let group = p.node.0.split('#').next().unwrap_or_default().to_string();
            if let Some(i) = groups.iter().position(|g| g.group.name == group)
                && p.node.0.contains("#new-")
            {
                tasks[i].push(ask.task.clone());
            }
            out.covered.push((ask.task.clone(), group));
            continue;
        }
        // Groups whose fresh node takes it; the one it fills most (least waste) first.
        let mut fitting: Vec<(usize, u64)> = Vec::new();
        let mut why: Vec<(String, String)> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            match probes[i].place(ask) {
                Ok(_) => {
                    let total = g.group.resources.cpu_millis.max(1);
                    let share = ask.resources.cpu_millis.saturating_mul(1000) / total;
                    fitting.push((i, share));
                }
                Err(u) => why.push((g.group.name.clone(), u.summary())),
            }
        }
        if fitting.is_empty() {
            out.stuck.push((ask.task.clone(), Stuck::NoGroupFits(why)));
            continue;
        }
        fitting.sort_by_key(|&(i, share)| (std::cmp::Reverse(share), i));
        let room = |i: usize| {
            let g = groups[i];
            g.nodes.saturating_add(g.coming).saturating_add(added[i]) < g.group.max
        };
        let Some(&(i, _)) = fitting.iter().find(|(i, _)| room(*i)) else {
            let names = fitting.iter().map(|&(i, _)| groups[i].group.name.clone()).collect();
            out.stuck.push((ask.task.clone(), Stuck::AtMax(names)));
            continue;
        };
        let name = &groups[i].group.name;
        sim.upsert_node(groups[i].group.template(&format!("{name}#new-{}", added[i])));
        added[i] += 1;
        if sim.reserve(ask).is_ok() {
            tasks[i].push(ask.task.clone());
            out.covered.push((ask.task.clone(), name.clone()));
        }
    }
    for (i, g) in groups.iter().enumerate() {
        let have = g.nodes.saturating_add(g.coming);
        let below = g.group.min.saturating_sub(have.saturating_add(added[i]));
        let count = added[i] + below;
        if count == 0 {
            continue;
        }
        let n = tasks[i].len();
        let reason = match (added[i], below) {
            (0, _) => format!("below min {}", g.group.min),
            (_, 0) => format!("{n} task{} fit no current node", if n == 1 { "" } else { "s" }),
            _ => format!(
                "{n} task{} fit no current node; below min {}",
                if n == 1 { "" } else { "s" },
                g.group.min
            ),
        };
        out.out.push(ScaleOut {
            group: g.group.name.clone(),
            count,
            tasks: std::mem::take(&mut tasks[i]),
            reason,
        });
    }
    out
}

/// A registered node of a group, for [`scale_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node.
    pub node: NodeId,
    /// How long it has run nothing; `None` while it runs (or is given) a task.
    pub idle_for: Option<Duration>,
}

/// A node to drain and remove, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleIn {
    /// The node.
    pub node: NodeId,
    /// Why, for people.
    pub reason: String,
}

/// Picks the nodes of `group` to drain: above `max` (coming ones counted) the excess, idle
/// ones first, then busy ones (their running work finishes first); then nodes idle for at
/// least `idle_after`, longest idle first, never below `min`. `members` are the group's
/// registered nodes not already being removed. Deterministic (ties by node name).
pub fn scale_in(
    group: &NodeGroup,
    idle_after: Duration,
    members: &[Member],
    coming: u32,
) -> Vec<ScaleIn> {
    let mut order: Vec<&Member> = members.iter().collect();
    // Longest idle first, busy last; by name among equals.
    order.sort_by(|a, b| {
        let key = |m: &Member| std::cmp::Reverse(m.idle_for.map(|d| d.as_nanos() + 1));
        key(a).cmp(&key(b)).then_with(|| a.node.cmp(&b.node))
    });
    let live = members.len() as u32;
    let over = (live + coming).saturating_sub(group.max).min(live);
    let mut out: Vec<ScaleIn> = order
        .iter()
        .take(over as usize)
        .map(|m| ScaleIn {
            node: m.node.clone(),
            reason: format!("group above its max {}", group.max),
        })
        .collect();
    let left = live - over;
    let removable = left.saturating_sub(group.min) as usize;
    let idle = order
        .iter()
        .skip(over as usize)
        .filter(|m| m.idle_for.is_some_and(|d| d >= idle_after))
        .take(removable);
    for m in idle {
        let secs = m.idle_for.unwrap_or_default().as_secs();
        out.push(ScaleIn {
            node: m.node.clone(),
            reason: format!("idle for {secs}s (idle time {}s)", idle_after.as_secs()),
        });
    }
    out
}
