//! Why a node was rejected, and the per-node reasons of an unplaced task summed up for people
//! ("2 nodes: city LIKE shenzhen failed; 1 node: 8 CPUs asked, 6 free").

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{TaskId, format_bytes, format_cpu};

/// Why one node can not take a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An OR-group of the constraints holds on none of its tests (the group's text).
    Constraint(String),
    /// Not enough CPU (millicores asked and free).
    Cpu {
        /// Asked.
        asked: u64,
        /// Free on the node (the most free among the nodes counted).
        free: u64,
    },
    /// Not enough memory (bytes).
    Memory {
        /// Asked.
        asked: u64,
        /// Free (the most among the nodes counted).
        free: u64,
    },
    /// Not enough disk (bytes).
    Disk {
        /// Asked.
        asked: u64,
        /// Free (the most among the nodes counted).
        free: u64,
    },
    /// A fixed host port is used by another task.
    PortTaken(u16),
    /// A fixed host port is outside the node's port ranges.
    PortOutOfRange(u16),
    /// Every port of the node's ranges is taken (dynamic ports).
    NoFreePort,
    /// Disabled by an operator.
    Disabled,
    /// Every slot of the node runs a task (its number of slots).
    SlotsFull(u32),
}

impl Reason {
    /// Reasons that are summed together (all CPU shortages are one line).
    fn kind(&self) -> (u8, String) {
        match self {
            Reason::Constraint(c) => (0, c.clone()),
            Reason::Cpu { asked, .. } => (1, asked.to_string()),
            Reason::Memory { asked, .. } => (2, asked.to_string()),
            Reason::Disk { asked, .. } => (3, asked.to_string()),
            Reason::PortTaken(p) => (4, p.to_string()),
            Reason::PortOutOfRange(p) => (5, p.to_string()),
            Reason::NoFreePort => (6, String::new()),
            Reason::Disabled => (7, String::new()),
            Reason::SlotsFull(n) => (8, n.to_string()),
        }
    }

    fn free(&self) -> Option<u64> {
        match self {
            Reason::Cpu { free, .. } | Reason::Memory { free, .. } | Reason::Disk { free, .. } => {
                Some(*free)
            }
            _ => None,
        }
    }

    fn with_free(&self, f: u64) -> Reason {
        match self.clone() {
            Reason::Cpu { asked, .. } => Reason::Cpu { asked, free: f },
            Reason::Memory { asked, .. } => Reason::Memory { asked, free: f },
            Reason::Disk { asked, .. } => Reason::Disk { asked, free: f },
            other => other,
        }
    }

    fn text(&self, many: bool) -> String {
        let most = if many { "at most " } else { "" };
        match self {
            Reason::Constraint(c) => format!("{c} failed"),
            Reason::Cpu { asked, free } => {
                let unit = if *asked == 1000 { "CPU" } else { "CPUs" };
                format!("{} {unit} asked, {most}{} free", format_cpu(*asked), format_cpu(*free))
            }
            Reason::Memory { asked, free } => {
                format!("{} memory asked, {most}{} free", format_bytes(*asked), format_bytes(*free))
            }
            Reason::Disk { asked, free } => {
                format!("{} disk asked, {most}{} free", format_bytes(*asked), format_bytes(*free))
            }
            Reason::PortTaken(p) => format!("host port {p} in use"),
            Reason::PortOutOfRange(p) => format!("host port {p} outside the node's port ranges"),
            Reason::NoFreePort => "no free host port".to_string(),
            Reason::Disabled => "disabled".to_string(),
            Reason::SlotsFull(n) => format!("all {n} slots busy"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text(false))
    }
}

/// A task that fits on no node now; it waits. Says why, node by node, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// The task.
    pub task: TaskId,
    /// Nodes in the pool (disabled ones included).
    pub nodes: usize,
    /// Each distinct reason with the number of nodes it rejected, most frequent first. For
    /// resource shortages `free` is the most free on any of those nodes.
    pub reasons: Vec<(Reason, usize)>,
    /// Set when the request itself is malformed (then `reasons` is empty).
    pub invalid: Option<String>,
}

impl Unplaced {
    /// Sums per-node reasons.
    pub(crate) fn from_reasons(task: TaskId, nodes: usize, per_node: Vec<Reason>) -> Unplaced {
        let mut by_kind: BTreeMap<(u8, String), (Reason, usize)> = BTreeMap::new();
        for r in per_node {
            let e = by_kind.entry(r.kind()).or_insert_with(|| (r.clone(), 0));
            e.1 += 1;
            if let (Some(a), Some(b)) = (e.0.free(), r.free())
                && b > a
            {
                e.0 = e.0.with_free(b);
            }
        }
        let mut reasons: Vec<(Reason, usize)> = by_kind.into_values().collect();
        // Most nodes first; among equals, the order of `kind` (constraints, then resources,
        // ports, disabled). The sort is stable over the BTreeMap's order.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        Unplaced { task, nodes, reasons, invalid: None }
    }

    /// A malformed request.
    pub(crate) fn invalid(task: TaskId, why: String) -> Unplaced {
        Unplaced { task, nodes: 0, reasons: Vec::new(), invalid: Some(why) }
    }

    /// One line for people: `2 nodes: city LIKE shenzhen failed; 1 node: 8 CPUs asked, 6 free`.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.invalid {
            return format!("invalid request: {why}");
        }
        if self.nodes == 0 {
            return "no nodes in the pool".to_string();
        }
        let parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| {
                let noun = if *n == 1 { "node" } else { "nodes" };
                format!("{n} {noun}: {}", r.text(*n > 1))
            })
            .collect();
        parts.join("; ")
    }
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} can not be placed: {}", self.task, self.summary())
    }
}
