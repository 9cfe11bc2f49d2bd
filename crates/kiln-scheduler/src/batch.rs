//! Placing a queue at once: per-project quotas, priorities, and fair share between projects
//! when the pool is short.
//!
//! Policy (also in docs/scheduling.md):
//! 1. Higher `priority` first; no task of a lower priority is tried before every task of a
//!    higher one has been (placed or found to wait). Nothing running is preempted.
//! 2. Within one priority, projects take turns by dominant resource fairness (DRF): the next
//!    task comes from the project whose dominant share (the larger of its CPU and memory
//!    reservations over the pool's capacity, counting what it already runs) is the smallest;
//!    ties go to the project name. Within a project, queue order.
//! 3. A task over its project's quota (CPU, memory or concurrent jobs, counting what runs)
//!    waits with that reason; the project's later, smaller tasks may still go.
//! 4. A task that fits nowhere waits with its per-node reasons; later tasks that fit are
//!    placed (backfill). A big task can thus wait while small ones pass it; a priority is
//!    the way to put it first.

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::explain::Unplaced;
use crate::hash::{Fx, HashMap};
use crate::model::{Ask, GroupKey, Placement, Resources, format_bytes, format_cpu};
use crate::pool::Pool;

/// Limits on what one project may hold at once; `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Tasks placed at once (concurrent jobs).
    pub jobs: Option<u32>,
}

/// A quota a task would go over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The project.
    pub project: String,
    /// `CPU`, `memory` or `concurrent jobs`.
    pub resource: &'static str,
    /// Held now.
    pub used: u64,
    /// Asked by the task.
    pub asked: u64,
    /// The quota.
    pub limit: u64,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: u64| match self.resource {
            "CPU" => format_cpu(v),
            "memory" => format_bytes(v),
            _ => v.to_string(),
        };
        let resource = match (self.resource, self.limit) {
            ("concurrent jobs", 1) => "concurrent job",
            (r, _) => r,
        };
        write!(
            f,
            "project {} quota of {} {resource} reached ({} used, {} asked)",
            self.project,
            show(self.limit),
            show(self.used),
            show(self.asked)
        )
    }
}

/// Why a task of a batch was not placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its project's quota.
    Quota(QuotaExceeded),
    /// No node can take it. Asks of one shape share one answer: its `task` is the first of
    /// them that was tried.
    Unplaced(Arc<Unplaced>),
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Quota(q) => q.fmt(f),
            Wait::Unplaced(u) => f.write_str(&u.summary()),
        }
    }
}

/// The outcome of [`Pool::place_batch`]; tasks are named by their index in the queue. Tasks
/// in neither list were not tried: every node's slots were taken before their turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Placed (and reserved) tasks, in the order they were placed.
    pub placed: Vec<(usize, Placement)>,
    /// Tasks left waiting, in the order they were tried, each with why.
    pub waiting: Vec<(usize, Wait)>,
}

/// Checks `ask` against its project's quota given what the project holds.
pub fn check_quota(
    pool: &Pool,
    quotas: &BTreeMap<String, Quota>,
    ask: &Ask,
) -> Option<QuotaExceeded> {
    let q = quotas.get(&ask.project)?;
    let u = pool.project_usage(&ask.project);
    let over = |resource, used: u64, asked: u64, limit: Option<u64>| {
        limit.filter(|l| used.saturating_add(asked) > *l).map(|limit| QuotaExceeded {
            project: ask.project.clone(),
            resource,
            used,
            asked,
            limit,
        })
    };
    over("CPU", u.resources.cpu_millis, ask.resources.cpu_millis, q.cpu_millis)
        .or_else(|| {
            over("memory", u.resources.memory_bytes, ask.resources.memory_bytes, q.memory_bytes)
        })
        .or_else(|| over("concurrent jobs", u.jobs.into(), 1, q.jobs.map(u64::from)))
}

struct Turn {
    share: f64,
    /// Index of the project in name order (ties go to the lower).
    project: usize,
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.share.total_cmp(&other.share).then(self.project.cmp(&other.project))
    }
}

fn dominant_share(pool: &Pool, capacity: Resources, project: &str) -> f64 {
    let u = pool.project_usage(project).resources;
    let frac = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    frac(u.cpu_millis, capacity.cpu_millis).max(frac(u.memory_bytes, capacity.memory_bytes))
}

impl Pool {
    /// Places as much of `queue` as fits, reserving each placement as it goes, by the policy
    /// of this module (priority, then DRF between projects, quotas, backfill). Deterministic.
    pub fn place_batch<A: Borrow<Ask>>(
        &mut self,
        queue: &[A],
        quotas: &BTreeMap<String, Quota>,
    ) -> Batch {
        let mut out = Batch { placed: Vec::new(), waiting: Vec::new() };
        // Once every slot is taken nothing more can go: the rest is not tried.
        let mut room = self.free_slots();
        if room == Some(0) {
            return out;
        }
        let capacity = self.capacity();
        let mut levels: BTreeMap<Reverse<i32>, BTreeMap<&str, VecDeque<usize>>> = BTreeMap::new();
        for (i, ask) in queue.iter().enumerate() {
            let ask = ask.borrow();
            levels
                .entry(Reverse(ask.priority))
                .or_default()
                .entry(ask.project.as_str())
                .or_default()
                .push_back(i);
        }
        // Within one batch nothing is released, so an ask that failed keeps failing until its
        // group changes: remember failures by the ask's shape.
        let mut failed: HashMap<u64, Arc<Unplaced>> = HashMap::default();
        let mut group_epoch: HashMap<GroupKey, u32> = HashMap::default();
        for (_, projects) in levels {
            let (names, mut queues): (Vec<&str>, Vec<VecDeque<usize>>) =
                projects.into_iter().unzip();
            let mut turns: BinaryHeap<Reverse<Turn>> = names
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Reverse(Turn { share: dominant_share(self, capacity, p), project: i })
                })
                .collect();
            while let Some(Reverse(turn)) = turns.pop() {
                let tasks = &mut queues[turn.project];
                let Some(i) = tasks.pop_front() else { continue };
                let ask = queue[i].borrow();
                if let Some(q) = check_quota(self, quotas, ask) {
                    out.waiting.push((i, Wait::Quota(q)));
                } else {
                    let key = (!failed.is_empty()).then(|| shape_key(ask, &group_epoch));
                    if let Some(u) = key.as_ref().and_then(|k| failed.get(k)) {
                        out.waiting.push((i, Wait::Unplaced(u.clone())));
                    } else {
                        match self.reserve(ask) {
                            Ok(p) => {
                                if ask.constraints.has_group_terms() {
                                    *group_epoch.entry(ask.group.clone()).or_insert(0) += 1;
                                }
                                out.placed.push((i, p));
                                if let Some(r) = room.as_mut() {
                                    *r -= 1;
                                    if *r == 0 {
                                        return out;
                                    }
                                }
                            }
                            Err(u) => {
                                let u = Arc::new(u);
                                if u.invalid.is_none() {
                                    let k = key.unwrap_or_else(|| shape_key(ask, &group_epoch));
                                    failed.insert(k, u.clone());
                                }
                                out.waiting.push((i, Wait::Unplaced(u)));
                            }
                        }
                    }
                }
                if !tasks.is_empty() {
                    // One project alone needs no turns.
                    let share = if names.len() == 1 {
                        0.0
                    } else {
                        dominant_share(self, capacity, names[turn.project])
                    };
                    turns.push(Reverse(Turn { share, project: turn.project }));
                }
            }
        }
        out
    }
}

/// Asks with equal keys get the same answer from the same pool (a hash of what placement
/// reads: resources, ports, network, strategy, constraints and, for group constraints, the
/// group as it stands).
fn shape_key(ask: &Ask, epochs: &HashMap<GroupKey, u32>) -> u64 {
    let mut h = Fx::default();
    ask.resources.hash(&mut h);
    for p in &ask.ports {
        (p.host, p.container).hash(&mut h);
    }
    ask.network.hash(&mut h);
    ask.strategy.hash(&mut h);
    ask.constraints.key().hash(&mut h);
    if ask.constraints.has_group_terms() {
        ask.group.hash(&mut h);
        epochs.get(&ask.group).copied().unwrap_or(0).hash(&mut h);
    }
    h.finish()
}
