//! The pool: a snapshot of the nodes and the one reservation ledger over them.
//!
//! `place` is a pure pass (filter -> score -> select) over the pool as it is; `commit`
//! re-checks the chosen node under the caller's exclusive borrow and records the reservation;
//! `release` gives it back. Nothing else changes what is used, so a node is never
//! overcommitted: two placements computed from the same state can not both commit if the
//! node only has room for one, and a placement on a node that changed (new resources,
//! attributes, disabled) since it was computed is refused.
//!
//! Filter: the node-only tests of an ask's constraints become a bitmask of nodes, computed
//! from an index of attribute values (a regex runs once per distinct value, not per node).
//! Asks with equal constraints share this "class", cached until a node changes; each class
//! keeps its nodes ordered by free CPU, updated by every reservation and release. Select:
//! bin-pack walks the class up from the smallest free CPU that fits, spread walks down from
//! the largest; each node on the walk is checked in full (memory, disk, ports, group
//! constraints) and the first `score_limit` that fit are scored on the CPU and memory they
//! would have left, the best taken (ties: the first met). A task that fits nowhere gets a
//! reason from every node.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Mutex;

use crate::bitset::Bitset;
use crate::constraint::{Constraints, Op, Predicate, group_text};
use crate::explain::{Reason, Unplaced};
use crate::hash::HashMap;
use crate::model::{
    Ask, AssignedPort, AttrValue, GroupKey, Network, Node, NodeId, Placement, Resources, Strategy,
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

    /// `Some(slots)` when every task slot of the node is taken.
    fn slots_full(&self) -> Option<u32> {
        self.node.slots.filter(|&n| self.tasks >= n as usize)
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

/// Node-only feasibility of one `Constraints` (a "class" of asks), cached until a node
/// changes, with its own free-CPU order kept current by every reservation and release.
struct Feasible {
    /// Live nodes passing every all-static OR-group.
    mask: Bitset,
    /// For OR-groups with a group test: the nodes passing one of its static tests.
    mixed: Vec<(usize, Bitset)>,
    /// (free CPU, node) of the nodes in `mask`.
    by_free: BTreeSet<(u64, usize)>,
}

/// The node snapshot and the reservation ledger; see the module docs.
pub struct Pool {
    options: Options,
    slots: Vec<Option<Slot>>,
    /// Places of removed nodes, reused first.
    vacant: Vec<usize>,
    by_id: HashMap<NodeId, usize>,
    /// attribute -> canonical value -> (value, nodes having it).
    index: HashMap<String, HashMap<String, (AttrValue, Vec<usize>)>>,
    /// Present and enabled nodes.
    live: Bitset,
    allocs: HashMap<TaskId, Alloc>,
    groups: HashMap<GroupKey, GroupUse>,
    projects: BTreeMap<String, ProjectUsage>,
    next_version: u64,
    masks: Mutex<HashMap<String, Feasible>>,
    /// Image key -> the nodes holding it (ImageLocality).
    images: HashMap<String, Vec<usize>>,
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

/// Classes kept at once; every reservation updates each class holding its node.
const MASK_CACHE_MAX: usize = 64;

/// ImageLocality's share for holding an image at all, whatever its size: the pull it saves
/// costs a round trip to the registry (auth, manifest) even for a tiny image.
const IMAGE_BASE: f64 = 0.5;

/// Images this big or bigger get ImageLocality's full size share (1 GiB).
const IMAGE_MAX: u64 = 1 << 30;

impl Pool {
    /// An empty pool.
    pub fn new(options: Options) -> Pool {
        Pool {
            options,
            slots: Vec::new(),
            vacant: Vec::new(),
            by_id: HashMap::default(),
            index: HashMap::default(),
            live: Bitset::empty(0),
            allocs: HashMap::default(),
            groups: HashMap::default(),
            projects: BTreeMap::new(),
            next_version: 1,
            masks: Mutex::new(HashMap::default()),
            images: HashMap::default(),
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
    /// node is identical, so heartbeats that repeat a registration cost nothing, and when
    /// only its images changed: they are a score, not what fits). Tasks on it keep their
    /// reservations even if it shrank (its free amounts then read zero until they end).
    pub fn upsert_node(&mut self, mut node: Node) -> u64 {
        let version = self.next_version;
        if let Some(&i) = self.by_id.get(&node.id) {
            let images = std::mem::take(&mut node.images);
            self.set_images_at(i, images);
            let slot = self.slots[i].as_mut().expect("indexed slot");
            node.images = slot.node.images.clone();
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
            let slot = Slot {
                node,
                version,
                used: Resources::default(),
                ports: BTreeSet::new(),
                tasks: 0,
            };
            // Reuse the place of a removed node, so that agents coming and going do not grow
            // the pool.
            let i = match self.vacant.pop() {
                Some(i) => {
                    self.slots[i] = Some(slot);
                    i
                }
                None => {
                    self.slots.push(Some(slot));
                    let mut live = Bitset::empty(self.slots.len());
                    live.or_with(&self.live);
                    self.live = live;
                    self.slots.len() - 1
                }
            };
            let id = self.slots[i].as_ref().expect("slot just filled").node.id.clone();
            self.by_id.insert(id, i);
            self.index_node(i);
            let keys: Vec<String> =
                self.slots[i].as_ref().expect("slot").node.images.keys().cloned().collect();
            for k in keys {
                self.images.entry(k).or_default().push(i);
            }
        }
        self.next_version += 1;
        self.masks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
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
        self.set_images_at(i, BTreeMap::new());
        self.unindex(i);
        self.slots[i] = None;
        self.vacant.push(i);
        self.by_id.remove(id);
        self.next_version += 1;
        self.masks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        lost
    }

    /// Replaces what node `id`'s engine holds (see [`Node::images`]); its version and
    /// what fits stay as they are. `false` when the node is not in the pool.
    pub fn set_images(&mut self, id: &NodeId, images: BTreeMap<String, u64>) -> bool {
        match self.by_id.get(id) {
            Some(&i) => {
                self.set_images_at(i, images);
                true
            }
            None => false,
        }
    }

    fn set_images_at(&mut self, i: usize, images: BTreeMap<String, u64>) {
        let slot = self.slots[i].as_mut().expect("indexed slot");
        if slot.node.images == images {
            return;
        }
        let old = std::mem::replace(&mut slot.node.images, images);
        for k in old.keys() {
            if let Some(nodes) = self.images.get_mut(k) {
                nodes.retain(|n| *n != i);
                if nodes.is_empty() {
                    self.images.remove(k);
                }
            }
        }
        let keys: Vec<String> = slot.node.images.keys().cloned().collect();
        for k in keys {
            self.images.entry(k).or_default().push(i);
        }
    }

    /// How many nodes hold image `key` (an [`crate::image_key`]).
    pub fn image_nodes(&self, key: &str) -> usize {
        self.images.get(key).map_or(0, Vec::len)
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

    /// Task slots free on enabled nodes; `None` when an enabled node has no slot limit.
    pub fn free_slots(&self) -> Option<u64> {
        let mut free = 0u64;
        for i in self.live.iter() {
            let Some(slot) = self.slots[i].as_ref() else { continue };
            let limit = u64::from(slot.node.slots?);
            free += limit.saturating_sub(slot.tasks as u64);
        }
        Some(free)
    }

    /// Every project holding something, by name, with what it holds.
    pub fn projects(&self) -> impl Iterator<Item = (&str, ProjectUsage)> {
        self.projects.iter().map(|(p, u)| (p.as_str(), *u))
    }

    /// Sum of allocatable resources of enabled nodes.
    pub fn capacity(&self) -> Resources {
        self.live
            .iter()
            .filter_map(|i| self.slots[i].as_ref())
            .fold(Resources::default(), |acc, s| acc.saturating_add(s.node.allocatable()))
    }

    // ---- filter ------------------------------------------------------------------------

    /// Runs `f` on the class of `c`, computing it first if it is not cached.
    fn with_class<R>(&self, c: &Constraints, f: impl FnOnce(&Feasible) -> R) -> R {
        let mut cache = self.masks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !cache.contains_key(c.key()) {
            if cache.len() >= MASK_CACHE_MAX {
                cache.clear();
            }
            let class = self.class(c);
            cache.insert(c.key().to_string(), class);
        }
        f(cache.get(c.key()).expect("class just cached"))
    }

    fn class(&self, c: &Constraints) -> Feasible {
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
        let by_free = mask
            .iter()
            .filter_map(|i| self.slots[i].as_ref().map(|s| (s.free().cpu_millis, i)))
            .collect();
        Feasible { mask, mixed, by_free }
    }

    /// Node `i`'s free CPU changed from `old` to `new`: reorder it in every class.
    fn moved(&mut self, i: usize, old: u64, new: u64) {
        if old == new {
            return;
        }
        for class in
            self.masks.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).values_mut()
        {
            if class.mask.contains(i) {
                class.by_free.remove(&(old, i));
                class.by_free.insert((new, i));
            }
        }
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
    fn group_counts<'a>(
        &self,
        g: Option<&'a GroupUse>,
        attr: &str,
    ) -> Cow<'a, HashMap<String, u32>> {
        let Some(g) = g else {
            return Cow::Owned(HashMap::default());
        };
        if let Some(t) = g.tracked.get(attr) {
            return Cow::Borrowed(t);
        }
        Cow::Owned(self.count_values(g, attr))
    }

    fn count_values(&self, g: &GroupUse, attr: &str) -> HashMap<String, u32> {
        let mut counts = HashMap::default();
        for (&n, &k) in &g.per_node {
            if let Some(slot) = &self.slots[n]
                && let Some(v) = Self::attr_key(&slot.node, attr)
            {
                *counts.entry(v.into_owned()).or_insert(0) += k;
            }
        }
        counts
    }

    fn group_test(&self, p: &Predicate, node: &Node, group: Option<&GroupUse>) -> bool {
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
    fn group_failure(
        &self,
        f: &Feasible,
        ask: &Ask,
        group: Option<&GroupUse>,
        i: usize,
        node: &Node,
    ) -> Option<String> {
        for (gi, static_part) in &f.mixed {
            if static_part.contains(i) {
                continue;
            }
            let g = &ask.constraints.groups()[*gi];
            if !g.iter().filter(|p| !p.is_static()).any(|p| self.group_test(p, node, group)) {
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

    /// Whether `ask`'s ports fit on `slot`, without building them (`choose_ports` does).
    fn ports_fit(ask: &Ask, slot: &Slot) -> bool {
        if ask.ports.is_empty() {
            return true;
        }
        let mut dynamic = 0;
        for p in &ask.ports {
            if p.host == 0 {
                dynamic += 1;
            } else if slot.ports.contains(&p.host)
                || !slot.node.ports.iter().any(|r| r.contains(p.host))
            {
                return false;
            }
        }
        let fixed = |h: u16| ask.ports.iter().any(|p| p.host == h);
        let mut free = slot
            .node
            .ports
            .iter()
            .flat_map(|r| r.start..=r.end)
            .filter(|h| !slot.ports.contains(h) && !fixed(*h));
        (0..dynamic).all(|_| free.next().is_some())
    }

    /// Full check of node `i` (already known to pass the static mask).
    fn fits(&self, f: &Feasible, ask: &Ask, group: Option<&GroupUse>, i: usize) -> bool {
        let Some(slot) = self.slots[i].as_ref() else {
            return false;
        };
        slot.slots_full().is_none()
            && Self::resource_failure(ask, slot.free()).is_none()
            && self.group_failure(f, ask, group, i, &slot.node).is_none()
            && Self::ports_fit(ask, slot)
    }

    /// Why node `i` can not take `ask`, in a fixed order: disabled, constraints, slots, CPU,
    /// memory, disk, ports.
    fn reason(&self, f: &Feasible, ask: &Ask, i: usize) -> Option<Reason> {
        let group = self.groups.get(&ask.group);
        let slot = self.slots[i].as_ref()?;
        if !f.mask.contains(i) {
            if slot.node.disabled {
                return Some(Reason::Disabled);
            }
            if let Some(g) = Self::static_failure(&ask.constraints, &slot.node) {
                return Some(Reason::Constraint(g));
            }
        }
        if let Some(g) = self.group_failure(f, ask, group, i, &slot.node) {
            return Some(Reason::Constraint(g));
        }
        if let Some(n) = slot.slots_full() {
            return Some(Reason::SlotsFull(n));
        }
        if let Some(r) = Self::resource_failure(ask, slot.free()) {
            return Some(r);
        }
        if Self::ports_fit(ask, slot) { None } else { Self::choose_ports(ask, slot).err() }
    }

    fn score(&self, ask: &Ask, i: usize) -> f64 {
        let slot = self.slots[i].as_ref().expect("candidate slot");
        let alloc = slot.node.allocatable();
        let free = slot.free().saturating_sub(ask.resources);
        let frac =
            |free: u64, total: u64| if total == 0 { 0.0 } else { free as f64 / total as f64 };
        let left =
            frac(free.cpu_millis, alloc.cpu_millis) + frac(free.memory_bytes, alloc.memory_bytes);
        let fit = match ask.strategy {
            Strategy::BinPack => -left,
            Strategy::Spread => left,
        };
        fit + self.image_locality(ask, &slot.node)
    }

    /// ImageLocality (kube-scheduler's plugin): 0 when the node lacks the task's image, else
    /// `spread * (IMAGE_BASE + (1 - IMAGE_BASE) * min(size, IMAGE_MAX) / IMAGE_MAX)`, where
    /// `spread` is the share of the pool's nodes holding it (an image on every node tells
    /// nodes apart by nothing and must not pile tasks onto one). At most 1, against the fit
    /// score's range of 2 (CPU and memory shares left): a node with the image wins among
    /// nodes that fit about equally well, never over a constraint or a node that does not fit.
    fn image_locality(&self, ask: &Ask, node: &Node) -> f64 {
        let Some(key) = ask.image.as_deref() else { return 0.0 };
        let Some(&size) = node.images.get(key) else { return 0.0 };
        let total = self.by_id.len().max(1) as f64;
        let spread = self.image_nodes(key) as f64 / total;
        let scaled = size.min(IMAGE_MAX) as f64 / IMAGE_MAX as f64;
        spread * (IMAGE_BASE + (1.0 - IMAGE_BASE) * scaled)
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
        self.with_class(&ask.constraints, |f| match self.select(f, ask) {
            Some(i) => {
                let slot = self.slots[i].as_ref().expect("chosen slot");
                let ports = Self::choose_ports(ask, slot).expect("ports checked by select");
                Ok(self.placement(ask, i, ports))
            }
            None => Err(self.explain(f, ask)),
        })
    }

    fn select(&self, f: &Feasible, ask: &Ask) -> Option<usize> {
        let limit = self.options.score_limit.max(1);
        let group = if f.mixed.is_empty() { None } else { self.groups.get(&ask.group) };
        let mut best: Option<(f64, usize)> = None;
        let mut seen = 0;
        let consider = |i: usize, best: &mut Option<(f64, usize)>| {
            if self.fits(f, ask, group, i) {
                let s = self.score(ask, i);
                if best.is_none_or(|(b, _)| s > b) {
                    *best = Some((s, i));
                }
                true
            } else {
                false
            }
        };
        let from = (Bound::Included((ask.resources.cpu_millis, 0)), Bound::Unbounded);
        let mut walk = |i: usize| {
            if consider(i, &mut best) {
                seen += 1;
            }
            seen < limit
        };
        match ask.strategy {
            Strategy::BinPack => _ = f.by_free.range(from).map(|e| e.1).all(&mut walk),
            Strategy::Spread => _ = f.by_free.range(from).rev().map(|e| e.1).all(&mut walk),
        }
        // Nodes holding the image are scored even past the limit of the walk, in node order.
        if let Some(nodes) = ask.image.as_deref().and_then(|k| self.images.get(k)) {
            let mut nodes: Vec<usize> =
                nodes.iter().copied().filter(|&i| f.mask.contains(i)).collect();
            nodes.sort_unstable();
            for i in nodes {
                consider(i, &mut best);
            }
        }
        best.map(|(_, i)| i)
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
        self.with_class(&ask.constraints, |f| self.reason(f, ask, i))
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
        let no_longer = |reason| CommitError::NoLongerFits { node: placement.node.clone(), reason };
        if let Some(r) = self.with_class(&ask.constraints, |f| self.reason(f, ask, i)) {
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

    /// Records a reservation the world already holds: `ask`'s task found running on `node`
    /// with these host ports (in the order of `ask.ports`), placed by an earlier keeper of
    /// the ledger (a server that restarted). Unlike [`Pool::commit`], the node may be
    /// disabled (its agent has not come back yet) and constraints are not checked again
    /// (they held when the task was placed); room is: a task that no longer fits (its node
    /// shrank, a port is taken or out of the node's ranges, every slot is taken) is refused,
    /// so the ledger never overcommits. On error nothing changed.
    pub fn hold(&mut self, ask: &Ask, node: &NodeId, ports: &[u16]) -> Result<(), CommitError> {
        if self.allocs.contains_key(&ask.task) {
            return Err(CommitError::AlreadyPlaced(ask.task.clone()));
        }
        let Some(&i) = self.by_id.get(node) else {
            return Err(CommitError::NodeGone(node.clone()));
        };
        if ports.len() != ask.ports.len()
            || ports.iter().zip(&ask.ports).any(|(&p, a)| a.host != 0 && a.host != p)
        {
            return Err(CommitError::Mismatch(format!(
                "host ports {ports:?} do not answer the {} port(s) asked",
                ask.ports.len()
            )));
        }
        let slot = self.slots[i].as_ref().expect("indexed slot");
        let no_longer = |reason| CommitError::NoLongerFits { node: node.clone(), reason };
        if let Some(n) = slot.slots_full() {
            return Err(no_longer(Reason::SlotsFull(n)));
        }
        if let Some(r) = Self::resource_failure(ask, slot.free()) {
            return Err(no_longer(r));
        }
        let mut seen = BTreeSet::new();
        for &p in ports {
            if !slot.node.ports.iter().any(|r| r.contains(p)) {
                return Err(no_longer(Reason::PortOutOfRange(p)));
            }
            if slot.ports.contains(&p) || !seen.insert(p) {
                return Err(no_longer(Reason::PortTaken(p)));
            }
        }
        self.record(ask, i, ports.to_vec());
        Ok(())
    }

    /// `place` then `commit` in one step: what a caller holding the pool exclusively
    /// usually wants. (Nothing can change between the two under `&mut self`, so the
    /// commit's re-check is skipped.)
    pub fn reserve(&mut self, ask: &Ask) -> Result<Placement, Unplaced> {
        let p = self.place(ask)?;
        let i = self.by_id[&p.node];
        self.record(ask, i, p.ports.iter().map(|p| p.host).collect());
        Ok(p)
    }

    fn record(&mut self, ask: &Ask, i: usize, ports: Vec<u16>) {
        let slot = self.slots[i].as_mut().expect("slot");
        let old = slot.free().cpu_millis;
        slot.used = slot.used.saturating_add(ask.resources);
        slot.tasks += 1;
        slot.ports.extend(ports.iter().copied());
        let new = slot.free().cpu_millis;
        self.moved(i, old, new);
        if let Some(p) = self.projects.get_mut(&ask.project) {
            p.resources = p.resources.saturating_add(ask.resources);
            p.jobs += 1;
        } else {
            let usage = ProjectUsage { resources: ask.resources, jobs: 1 };
            self.projects.insert(ask.project.clone(), usage);
        }
        // Group counts: track the attributes this ask's group tests name.
        let mut attrs = ask
            .constraints
            .groups()
            .iter()
            .flatten()
            .filter(|p| !p.is_static())
            .map(|p| p.attribute.as_str());
        let tracked =
            self.groups.get(&ask.group).is_some_and(|g| attrs.all(|a| g.tracked.contains_key(a)));
        if !tracked {
            let mut g = self.groups.remove(&ask.group).unwrap_or_default();
            for p in ask.constraints.groups().iter().flatten().filter(|p| !p.is_static()) {
                if !g.tracked.contains_key(&p.attribute) {
                    let counts = self.count_values(&g, &p.attribute);
                    g.tracked.insert(p.attribute.clone(), counts);
                }
            }
            self.groups.insert(ask.group.clone(), g);
        }
        let g = self.groups.get_mut(&ask.group).expect("group just made");
        *g.per_node.entry(i).or_insert(0) += 1;
        let node = &self.slots[i].as_ref().expect("slot").node;
        for (a, counts) in g.tracked.iter_mut() {
            if let Some(v) = Self::attr_key(node, a) {
                match counts.get_mut(v.as_ref()) {
                    Some(c) => *c += 1,
                    None => {
                        counts.insert(v.into_owned(), 1);
                    }
                }
            }
        }
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
            let old = slot.free().cpu_millis;
            slot.used = slot.used.saturating_sub(a.resources);
            slot.tasks -= 1;
            for p in &a.ports {
                slot.ports.remove(p);
            }
            let new = slot.free().cpu_millis;
            self.moved(i, old, new);
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
