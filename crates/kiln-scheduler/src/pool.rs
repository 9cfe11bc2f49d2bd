//! The pool: a snapshot of the nodes and the one reservation ledger over them.
//!
//! `place` is a pure pass (filter -> score -> select) over the pool as it is; `commit`
//! re-checks the chosen node under the caller's exclusive borrow and records the reservation;
//! `release` gives it back. Nothing else changes what is used, so a node is never
//! overcommitted: two placements computed from the same state can not both commit if the
//! node only has room for one, and a placement on a node that changed (new resources,
//! attributes, disabled) since it was computed is refused.
//!
//! Filter: each constraint's node-only tests become a bitmask of nodes, computed from an
//! index of attribute values (a regex runs once per distinct value, not per node) and cached
//! until a node changes. Select: nodes are kept ordered by free CPU; bin-pack walks up from
//! the smallest free CPU that fits, spread walks down from the largest; each node on the
//! walk that passes the mask is checked in full (memory, disk, ports, group constraints), and
//! the first `score_limit` that fit are scored on CPU and memory left, the best taken. When
//! the mask is small the masked nodes are all checked and scored instead.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::bitset::Bitset;
use crate::constraint::{Constraints, Op, Predicate, group_text};
use crate::explain::{Reason, Unplaced};
use crate::model::{
    AssignedPort, Ask, AttrValue, GroupKey, Network, Node, NodeId, Placement, Resources, Strategy,
    TaskId,
};

/// Tunables of placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many fitting nodes are scored before choosing (Nomad's limit iterator). Higher
    /// packs memory better; lower is faster. The walk is in free-CPU order, so the nodes
    /// scored are the tightest (bin-pack) or emptiest (spread) by CPU. Default 8.
    pub score_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { score_limit: 8 }
    }
}

/// A node's state in the pool, for listings (BCS's `offer`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeUsage<'a> {
    /// The node as registered.
    pub node: &'a Node,
    /// Bumped on every change to the node; placements carry it.
    pub version: u64,
    /// Reserved by tasks.
    pub used: Resources,
    /// Allocatable minus used.
    pub free: Resources,
    /// Host ports taken.
    pub ports_used: usize,
    /// Tasks placed on it.
    pub tasks: usize,
}

/// What a project has reserved now (quotas and fair share count this).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    /// Resources reserved.
    pub resources: Resources,
    /// Tasks placed (concurrent jobs).
    pub jobs: u32,
}

/// Why a commit was refused; nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The task already holds a reservation.
    #[error("task {0} is already placed")]
    AlreadyPlaced(TaskId),
    /// The node left the pool.
    #[error("node {0} is no longer in the pool")]
    NodeGone(NodeId),
    /// The node changed since the placement was computed; place again.
    #[error("node {node} changed since the placement was made (version {expected}, now {now})")]
    NodeChanged {
        /// The node.
        node: NodeId,
        /// The version the placement saw.
        expected: u64,
        /// The version now.
        now: u64,
    },
    /// The placement does not answer this ask (other task, resources or ports).
    #[error("the placement does not match the request: {0}")]
    Mismatch(String),
    /// The node no longer has room, or a constraint no longer holds (another placement
    /// committed first).
    #[error("node {node} no longer fits: {reason}")]
    NoLongerFits {
        /// The node.
        node: NodeId,
        /// Why.
        reason: Reason,
    },
}

struct Slot {
    node: Node,
    version: u64,
    used: Resources,
    ports: BTreeSet<u16>,
    tasks: usize,
}

impl Slot {
    fn free(&self) -> Resources {
        self.node.allocatable().saturating_sub(self.used)
    }
}

#[derive(Debug, Clone)]
struct Alloc {
    node: usize,
    project: String,
    group: GroupKey,
    resources: Resources,
    ports: Vec<u16>,
}

#[derive(Default)]
struct GroupUse {
    per_node: HashMap<usize, u32>,
    /// Per tracked attribute, tasks per value (only values with a task).
    tracked: HashMap<String, HashMap<String, u32>>,
}

/// Node-only feasibility of one `Constraints`, cached per snapshot.
struct Feasible {
    /// Live nodes passing every all-static OR-group.
    mask: Bitset,
    count: usize,
    /// For OR-groups with a group test: the nodes passing one of its static tests.
    mixed: Vec<(usize, Bitset)>,
}

/// The node snapshot and the reservation ledger; see the module docs.
pub struct Pool {
    options: Options,
    slots: Vec<Option<Slot>>,
    by_id: HashMap<NodeId, usize>,
    /// attribute -> canonical value -> (value, nodes having it).
    index: HashMap<String, HashMap<String, (AttrValue, Vec<usize>)>>,
    /// Present and enabled nodes.
    live: Bitset,
    live_count: usize,
    /// (free CPU, node) for live nodes.
    by_free: BTreeSet<(u64, usize)>,
    allocs: HashMap<TaskId, Alloc>,
    groups: HashMap<GroupKey, GroupUse>,
    projects: BTreeMap<String, ProjectUsage>,
    next_version: u64,
    masks: Mutex<HashMap<String, Arc<Feasible>>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(Options::default())
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("nodes", &self.by_id.len())
            .field("tasks", &self.allocs.len())
            .finish()
    }
}

const MASK_CACHE_MAX: usize = 1024;

impl Pool {
    /// An empty pool.
    pub fn new(options: Options) -> Pool {
        Pool {
            options,
            slots: Vec::new(),
            by_id: HashMap::new(),
            index: HashMap::new(),
            live: Bitset::empty(0),
            live_count: 0,
            by_free: BTreeSet::new(),
            allocs: HashMap::new(),
            groups: HashMap::new(),
            projects: BTreeMap::new(),
            next_version: 1,
            masks: Mutex::new(HashMap::new()),
        }
    }

    /// A pool of `nodes` (a later node with the same id replaces an earlier one).
    pub fn with_nodes(options: Options, nodes: impl IntoIterator<Item = Node>) -> Pool {
        let mut pool = Pool::new(options);
        for n in nodes {
            pool.upsert_node(n);
        }
        pool
    }

    /// The options placement runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Adds a node or replaces its registration; returns its version (unchanged when the
    /// node is identical, so heartbeats that repeat a registration cost nothing). Tasks on
    /// it keep their reservations even if it shrank (its free amounts then read zero until
    /// they end).
    pub fn upsert_node(&mut self, node: Node) -> u64 {
        let version = self.next_version;
        if let Some(&i) = self.by_id.get(&node.id) {
            let slot = self.slots[i].as_mut().expect("indexed slot");
            if slot.node == node {
                return slot.version;
            }
            let attrs_changed = slot.node.attributes != node.attributes
                || slot.node.hostname != node.hostname
                || slot.node.ip != node.ip;
            self.unindex(i);
            let slot = self.slots[i].as_mut().expect("indexed slot");
            slot.node = node;
            slot.version = version;
            self.index_node(i);
            if attrs_changed {
                self.recount_groups();
            }
        } else {
            let i = self.slots.len();
            self.by_id.insert(node.id.clone(), i);
            self.slots.push(Some(Slot {
                node,
                version,
                used: Resources::default(),
                ports: BTreeSet::new(),
                tasks: 0,
            }));
            let mut live = Bitset::empty(self.slots.len());
            live.or_with(&self.live);
            self.live = live;
            self.index_node(i);
        }
        self.next_version += 1;
        self.masks.lock().expect("mask cache").clear();
        version
    }

    /// Removes a node; the tasks that were on it are released and returned (for the caller
    /// to fail or queue again).
    pub fn remove_node(&mut self, id: &NodeId) -> Vec<TaskId> {
        let Some(&i) = self.by_id.get(id) else {
            return Vec::new();
        };
        let mut lost: Vec<TaskId> =
            self.allocs.iter().filter(|(_, a)| a.node == i).map(|(t, _)| t.clone()).collect();
        lost.sort();
        for t in &lost {
            self.release(t);
        }
        self.unindex(i);
        self.slots[i] = None;
        self.by_id.remove(id);
        self.next_version += 1;
        self.masks.lock().expect("mask cache").clear();
        lost
    }

    fn attr_names(node: &Node) -> impl Iterator<Item = &str> {
        let builtin = ["hostname", "ip"].into_iter().filter(|b| !node.attributes.contains_key(*b));
        node.attributes.keys().map(String::as_str).chain(builtin)
    }

    fn index_node(&mut self, i: usize) {
        let slot = self.slots[i].as_ref().expect("slot");
        let node = &slot.node;
        for name in Self::attr_names(node) {
            let v = node.attribute(name).expect("named attribute");
            let e = self
                .index
                .entry(name.to_string())
                .or_default()
                .entry(v.canonical())
                .or_insert_with(|| (v, Vec::new()));
            e.1.push(i);
        }
        if !node.disabled {
            self.live.insert(i);
            self.live_count += 1;
            self.by_free.insert((slot.free().cpu_millis, i));
        }
    }

    fn unindex(&mut self, i: usize) {
        let slot = self.slots[i].as_ref().expect("slot");
        let node = &slot.node;
        for name in Self::attr_names(node) {
            let key = node.attribute(name).expect("named attribute").canonical();
            if let Some(values) = self.index.get_mut(name) {
                if let Some(e) = values.get_mut(&key) {
                    e.1.retain(|n| *n != i);
                    if e.1.is_empty() {
                        values.remove(&key);
                    }
                }
                if values.is_empty() {
                    self.index.remove(name);
                }
            }
        }
        if self.live.contains(i) {
            self.live.remove(i);
            self.live_count -= 1;
            self.by_free.remove(&(slot.free().cpu_millis, i));
        }
    }

    /// The registered node `id`.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.by_id.get(id).and_then(|&i| self.slots[i].as_ref()).map(|s| &s.node)
    }

    /// Every node with what is used and free, in registration order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeUsage<'_>> {
        self.slots.iter().flatten().map(|s| NodeUsage {
            node: &s.node,
            version: s.version,
            used: s.used,
            free: s.free(),
            ports_used: s.ports.len(),
            tasks: s.tasks,
        })
    }

    /// Number of nodes (disabled ones included).
    pub fn node_count(&self) -> usize {
        self.by_id.len()
    }

    /// Number of tasks holding a reservation.
    pub fn task_count(&self) -> usize {
        self.allocs.len()
    }

    /// The node a task is placed on.
    pub fn task_node(&self, task: &TaskId) -> Option<&NodeId> {
        let a = self.allocs.get(task)?;
        self.slots[a.node].as_ref().map(|s| &s.node.id)
    }

    /// What `project` holds now.
    pub fn project_usage(&self, project: &str) -> ProjectUsage {
        self.projects.get(project).copied().unwrap_or_default()
    }

    /// Sum of allocatable resources of enabled nodes.
    pub fn capacity(&self) -> Resources {
        self.live
            .iter()
            .filter_map(|i| self.slots[i].as_ref())
            .fold(Resources::default(), |acc, s| acc.saturating_add(s.node.allocatable()))
    }

    // ---- filter ------------------------------------------------------------------------

    fn feasible(&self, c: &Constraints) -> Arc<Feasible> {
        let mut cache = self.masks.lock().expect("mask cache");
        if let Some(f) = cache.get(c.key()) {
            return f.clone();
        }
        let mut mask = self.live.clone();
        let mut mixed = Vec::new();
        for (gi, g) in c.groups().iter().enumerate() {
            let mut gm = Bitset::empty(self.slots.len());
            for p in g.iter().filter(|p| p.is_static()) {
                gm.or_with(&self.predicate_mask(p));
            }
            if g.iter().all(Predicate::is_static) {
                mask.and_with(&gm);
            } else {
                mixed.push((gi, gm));
            }
        }
        let count = mask.count();
        let f = Arc::new(Feasible { mask, count, mixed });
        if cache.len() >= MASK_CACHE_MAX {
            cache.clear();
        }
        cache.insert(c.key().to_string(), f.clone());
        f
    }

    fn predicate_mask(&self, p: &Predicate) -> Bitset {
        let mut m = Bitset::empty(self.slots.len());
        let mut present = Bitset::empty(self.slots.len());
        if let Some(values) = self.index.get(&p.attribute) {
            for (v, nodes) in values.values() {
                let hit = p.matches_value(Some(v));
                for &n in nodes {
                    present.insert(n);
                    if hit {
                        m.insert(n);
                    }
                }
            }
        }
        if p.matches_value(None) {
            m.or_with(&present.complement());
        }
        m
    }

    // ---- checks ------------------------------------------------------------------------

    fn attr_key<'a>(node: &'a Node, name: &str) -> Option<Cow<'a, str>> {
        match node.attributes.get(name) {
            Some(AttrValue::Text(t)) => Some(Cow::Borrowed(t)),
            Some(v) => Some(Cow::Owned(v.canonical())),
            None if name == "hostname" => Some(Cow::Borrowed(&node.hostname)),
            None if name == "ip" => Some(Cow::Borrowed(&node.ip)),
            None => None,
        }
    }

    /// Tasks of `group` per value of `attr`.
    fn group_counts(&self, group: &GroupKey, attr: &str) -> Cow<'_, HashMap<String, u32>> {
        let Some(g) = self.groups.get(group) else {
            return Cow::Owned(HashMap::new());
        };
        if let Some(t) = g.tracked.get(attr) {
            return Cow::Borrowed(t);
        }
        Cow::Owned(self.count_values(g, attr))
    }

    fn count_values(&self, g: &GroupUse, attr: &str) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        for (&n, &k) in &g.per_node {
            if let Some(slot) = &self.slots[n]
                && let Some(v) = Self::attr_key(&slot.node, attr)
            {
                *counts.entry(v.into_owned()).or_insert(0) += k;
            }
        }
        counts
    }

    fn group_test(&self, p: &Predicate, node: &Node, group: &GroupKey) -> bool {
        if p.is_static() {
            return p.matches_value(node.attribute(&p.attribute).as_ref());
        }
        let Some(v) = Self::attr_key(node, &p.attribute) else {
            return false;
        };
        let counts = self.group_counts(group, &p.attribute);
        let here = counts.get(v.as_ref()).copied().unwrap_or(0);
        match p.op {
            Op::Unique => here == 0,
            Op::MaxPer(n) => here < n,
            Op::Cluster(None) => counts.is_empty() || here > 0,
            Op::GroupBy(n) => {
                let least = if counts.len() < n as usize {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                here <= least
            }
            _ => true,
        }
    }

    /// The node-only OR-group that fails on `node`, if any.
    fn static_failure(c: &Constraints, node: &Node) -> Option<String> {
        c.groups()
            .iter()
            .filter(|g| g.iter().all(Predicate::is_static))
            .find(|g| !g.iter().any(|p| p.matches_value(node.attribute(&p.attribute).as_ref())))
            .map(|g| group_text(g))
    }

    /// The group-dependent OR-group that fails on `i`, if any.
    fn group_failure(&self, f: &Feasible, ask: &Ask, i: usize, node: &Node) -> Option<String> {
        for (gi, static_part) in &f.mixed {
            if static_part.contains(i) {
                continue;
            }
            let g = &ask.constraints.groups()[*gi];
            if !g.iter().filter(|p| !p.is_static()).any(|p| self.group_test(p, node, &ask.group)) {
                return Some(group_text(g));
            }
        }
        None
    }

    fn resource_failure(ask: &Ask, free: Resources) -> Option<Reason> {
        let r = ask.resources;
        if r.cpu_millis > free.cpu_millis {
            Some(Reason::Cpu { asked: r.cpu_millis, free: free.cpu_millis })
        } else if r.memory_bytes > free.memory_bytes {
            Some(Reason::Memory { asked: r.memory_bytes, free: free.memory_bytes })
        } else if r.disk_bytes > free.disk_bytes {
            Some(Reason::Disk { asked: r.disk_bytes, free: free.disk_bytes })
        } else {
            None
        }
    }

    /// Host ports for `ask` on `slot`: fixed ones checked, dynamic ones the lowest free.
    fn choose_ports(ask: &Ask, slot: &Slot) -> Result<Vec<AssignedPort>, Reason> {
        let mut out = Vec::with_capacity(ask.ports.len());
        let mut taken: Vec<u16> = ask.ports.iter().map(|p| p.host).filter(|h| *h != 0).collect();
        for p in ask.ports.iter().filter(|p| p.host != 0) {
            if !slot.node.ports.iter().any(|r| r.contains(p.host)) {
                return Err(Reason::PortOutOfRange(p.host));
            }
            if slot.ports.contains(&p.host) {
                return Err(Reason::PortTaken(p.host));
            }
        }
        for p in &ask.ports {
            let host = if p.host != 0 {
                p.host
            } else {
                let free = slot.node.ports.iter().find_map(|r| {
                    (r.start..=r.end).find(|h| !slot.ports.contains(h) && !taken.contains(h))
                });
                let h = free.ok_or(Reason::NoFreePort)?;
                taken.push(h);
                h
            };
            let container = match ask.network {
                Network::Host => host,
                Network::Bridge => p.container.unwrap_or(host),
            };
            out.push(AssignedPort { name: p.name.clone(), host, container });
        }
        Ok(out)
    }

    /// Full check of node `i` (already known to pass the static mask).
    fn fits(&self, f: &Feasible, ask: &Ask, i: usize) -> Option<Vec<AssignedPort>> {
        let slot = self.slots[i].as_ref()?;
        if Self::resource_failure(ask, slot.free()).is_some() {
            return None;
        }
        if self.group_failure(f, ask, i, &slot.node).is_some() {
            return None;
        }
        Self::choose_ports(ask, slot).ok()
    }

    /// Why node `i` can not take `ask`, in a fixed order: disabled, constraints, CPU,
    /// memory, disk, ports.
    fn reason(&self, f: &Feasible, ask: &Ask, i: usize) -> Option<Reason> {
        let slot = self.slots[i].as_ref()?;
        if slot.node.disabled {
            return Some(Reason::Disabled);
        }
        if let Some(g) = Self::static_failure(&ask.constraints, &slot.node) {
            return Some(Reason::Constraint(g));
        }
        if let Some(g) = self.group_failure(f, ask, i, &slot.node) {
            return Some(Reason::Constraint(g));
        }
        if let Some(r) = Self::resource_failure(ask, slot.free()) {
            return Some(r);
        }
        Self::choose_ports(ask, slot).err()
    }

    fn score(&self, ask: &Ask, i: usize) -> f64 {
        let slot = self.slots[i].as_ref().expect("candidate slot");
        let alloc = slot.node.allocatable();
        let free = slot.free().saturating_sub(ask.resources);
        let frac = |free: u64, total: u64| if total == 0 { 0.0 } else { free as f64 / total as f64 };
        let left = frac(free.cpu_millis, alloc.cpu_millis) + frac(free.memory_bytes, alloc.memory_bytes);
        match ask.strategy {
            Strategy::BinPack => -left,
            Strategy::Spread => left,
        }
    }

    // ---- place -------------------------------------------------------------------------

    /// Chooses a node for `ask` without reserving anything (filter -> score -> select), or
    /// says why no node can take it. Deterministic: the same pool and ask give the same
    /// answer.
    pub fn place(&self, ask: &Ask) -> Result<Placement, Unplaced> {
        if let Err(e) = ask.validate() {
            return Err(Unplaced::invalid(ask.task.clone(), e.to_string()));
        }
        if let Some(node) = self.task_node(&ask.task) {
            return Err(Unplaced::invalid(ask.task.clone(), format!("already placed on {node}")));
        }
        let f = self.feasible(&ask.constraints);
        match self.select(&f, ask) {
            Some((i, ports)) => Ok(self.placement(ask, i, ports)),
            None => Err(self.explain(&f, ask)),
        }
    }

    fn select(&self, f: &Feasible, ask: &Ask) -> Option<(usize, Vec<AssignedPort>)> {
        let limit = self.options.score_limit.max(1);
        let mut best: Option<(f64, usize, Vec<AssignedPort>)> = None;
        let mut seen = 0;
        let consider = |i: usize, best: &mut Option<(f64, usize, Vec<AssignedPort>)>| {
            if let Some(ports) = self.fits(f, ask, i) {
                let s = self.score(ask, i);
                if best.as_ref().is_none_or(|(b, _, _)| s > *b) {
                    *best = Some((s, i, ports));
                }
                true
            } else {
                false
            }
        };
        if f.count.saturating_mul(8) <= self.live_count {
            // Few feasible nodes: check them all (exact best score).
            for i in f.mask.iter() {
                consider(i, &mut best);
            }
        } else {
            let from = (Bound::Included((ask.resources.cpu_millis, 0)), Bound::Unbounded);
            let walk: Box<dyn Iterator<Item = &(u64, usize)>> = match ask.strategy {
                Strategy::BinPack => Box::new(self.by_free.range(from)),
                Strategy::Spread => Box::new(self.by_free.range(from).rev()),
            };
            for &(_, i) in walk {
                if f.mask.contains(i) && consider(i, &mut best) {
                    seen += 1;
                    if seen >= limit {
                        break;
                    }
                }
            }
        }
        best.map(|(_, i, p)| (i, p))
    }

    fn placement(&self, ask: &Ask, i: usize, ports: Vec<AssignedPort>) -> Placement {
        let slot = self.slots[i].as_ref().expect("chosen slot");
        Placement {
            task: ask.task.clone(),
            node: slot.node.id.clone(),
            hostname: slot.node.hostname.clone(),
            ip: slot.node.ip.clone(),
            node_version: slot.version,
            resources: ask.resources,
            ports,
            network: ask.network,
        }
    }

    fn explain(&self, f: &Feasible, ask: &Ask) -> Unplaced {
        let reasons: Vec<Reason> =
            (0..self.slots.len()).filter_map(|i| self.reason(f, ask, i)).collect();
        Unplaced::from_reasons(ask.task.clone(), self.by_id.len(), reasons)
    }

    /// Why `ask` can not go on `node` now (`None`: it fits). For "why not there?" questions.
    pub fn why_not(&self, ask: &Ask, node: &NodeId) -> Option<Reason> {
        let &i = self.by_id.get(node)?;
        let f = self.feasible(&ask.constraints);
        self.reason(&f, ask, i)
    }

    // ---- ledger ------------------------------------------------------------------------

    /// Reserves what `placement` chose for `ask`, after checking again that the node is the
    /// one the placement saw and still fits (resources, ports, constraints). On error
    /// nothing changed.
    pub fn commit(&mut self, ask: &Ask, placement: &Placement) -> Result<(), CommitError> {
        if placement.task != ask.task {
            return Err(CommitError::Mismatch(format!(
                "placement is for task {}, request for {}",
                placement.task, ask.task
            )));
        }
        if placement.resources != ask.resources {
            return Err(CommitError::Mismatch("resources differ".to_string()));
        }
        if self.allocs.contains_key(&ask.task) {
            return Err(CommitError::AlreadyPlaced(ask.task.clone()));
        }
        let Some(&i) = self.by_id.get(&placement.node) else {
            return Err(CommitError::NodeGone(placement.node.clone()));
        };
        let slot = self.slots[i].as_ref().expect("indexed slot");
        if slot.version != placement.node_version {
            return Err(CommitError::NodeChanged {
                node: placement.node.clone(),
                expected: placement.node_version,
                now: slot.version,
            });
        }
        if placement.ports.len() != ask.ports.len()
            || placement.ports.iter().zip(&ask.ports).any(|(p, a)| {
                p.name != a.name
                    || (a.host != 0 && p.host != a.host)
                    || (ask.network == Network::Host && p.container != p.host)
            })
        {
            return Err(CommitError::Mismatch("ports differ".to_string()));
        }
        let f = self.feasible(&ask.constraints);
        let no_longer = |reason| CommitError::NoLongerFits { node: placement.node.clone(), reason };
        if let Some(r) = self.reason(&f, ask, i) {
            return Err(no_longer(r));
        }
        // The chosen ports themselves (dynamic ones may differ from what `place` would pick
        // now, which is fine as long as they are free and in range).
        let mut seen = BTreeSet::new();
        for p in &placement.ports {
            if !slot.node.ports.iter().any(|r| r.contains(p.host)) {
                return Err(no_longer(Reason::PortOutOfRange(p.host)));
            }
            if slot.ports.contains(&p.host) || !seen.insert(p.host) {
                return Err(no_longer(Reason::PortTaken(p.host)));
            }
        }
        self.record(ask, i, placement.ports.iter().map(|p| p.host).collect());
        Ok(())
    }

    /// `place` then `commit`: what a caller holding the pool exclusively usually wants.
    pub fn reserve(&mut self, ask: &Ask) -> Result<Placement, Unplaced> {
        let p = self.place(ask)?;
        self.commit(ask, &p).expect("a fresh placement commits");
        Ok(p)
    }

    fn record(&mut self, ask: &Ask, i: usize, ports: Vec<u16>) {
        let slot = self.slots[i].as_mut().expect("slot");
        let live = !slot.node.disabled;
        if live {
            self.by_free.remove(&(slot.free().cpu_millis, i));
        }
        slot.used = slot.used.saturating_add(ask.resources);
        slot.tasks += 1;
        slot.ports.extend(ports.iter().copied());
        if live {
            self.by_free.insert((slot.free().cpu_millis, i));
        }
        let p = self.projects.entry(ask.project.clone()).or_default();
        p.resources = p.resources.saturating_add(ask.resources);
        p.jobs += 1;
        // Group counts: track the attributes this ask's group tests name.
        let attrs: Vec<&str> = ask
            .constraints
            .groups()
            .iter()
            .flatten()
            .filter(|p| !p.is_static())
            .map(|p| p.attribute.as_str())
            .collect();
        let mut g = self.groups.remove(&ask.group).unwrap_or_default();
        for a in attrs {
            if !g.tracked.contains_key(a) {
                let counts = self.count_values(&g, a);
                g.tracked.insert(a.to_string(), counts);
            }
        }
        *g.per_node.entry(i).or_insert(0) += 1;
        let node = &self.slots[i].as_ref().expect("slot").node;
        for (a, counts) in g.tracked.iter_mut() {
            if let Some(v) = Self::attr_key(node, a) {
                *counts.entry(v.into_owned()).or_insert(0) += 1;
            }
        }
        self.groups.insert(ask.group.clone(), g);
        self.allocs.insert(
            ask.task.clone(),
            Alloc {
                node: i,
                project: ask.project.clone(),
                group: ask.group.clone(),
                resources: ask.resources,
                ports,
            },
        );
    }

    /// Gives back everything `task` holds; `None` if it held nothing (idempotent).
    pub fn release(&mut self, task: &TaskId) -> Option<Resources> {
        let a = self.allocs.remove(task)?;
        let i = a.node;
        if let Some(slot) = self.slots[i].as_mut() {
            let live = !slot.node.disabled;
            if live {
                self.by_free.remove(&(slot.free().cpu_millis, i));
            }
            slot.used = slot.used.saturating_sub(a.resources);
            slot.tasks -= 1;
            for p in &a.ports {
                slot.ports.remove(p);
            }
            if live {
                self.by_free.insert((slot.free().cpu_millis, i));
            }
        }
        if let Some(p) = self.projects.get_mut(&a.project) {
            p.resources = p.resources.saturating_sub(a.resources);
            p.jobs -= 1;
            if p.jobs == 0 {
                self.projects.remove(&a.project);
            }
        }
        if let Some(g) = self.groups.get_mut(&a.group) {
            if let Some(k) = g.per_node.get_mut(&i) {
                *k -= 1;
                if *k == 0 {
                    g.per_node.remove(&i);
                }
            }
            if let Some(slot) = self.slots[i].as_ref() {
                for (attr, counts) in g.tracked.iter_mut() {
                    if let Some(v) = Self::attr_key(&slot.node, attr)
                        && let Some(c) = counts.get_mut(v.as_ref())
                    {
                        *c -= 1;
                        if *c == 0 {
                            counts.remove(v.as_ref());
                        }
                    }
                }
            }
            if g.per_node.is_empty() {
                self.groups.remove(&a.group);
            }
        }
        Some(a.resources)
    }

    fn recount_groups(&mut self) {
        let mut groups = std::mem::take(&mut self.groups);
        for g in groups.values_mut() {
            let attrs: Vec<String> = g.tracked.keys().cloned().collect();
            for a in attrs {
                let counts = self.count_values(g, &a);
                g.tracked.insert(a, counts);
            }
        }
        self.groups = groups;
    }
}
