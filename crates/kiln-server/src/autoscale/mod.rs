//! The elastic pool (docs/pool.md#elastic-pool): node groups and the autoscaler that grows
//! and shrinks them with the queue, like Kubernetes' cluster-autoscaler.
//!
//! Every tick (a second by default) it reads the dispatcher (the queued tasks no node takes,
//! the nodes and their work), asks `kiln_scheduler::autoscale::plan` how many nodes of which
//! group those tasks need on top of the nodes already coming, and asks the groups'
//! providers for them (`spec.rs` checks a group, `provider.rs` calls its hook). Nodes idle
//! for their group's idle time are drained (`Dispatch::set_draining`: nothing new is placed,
//! what runs finishes), then removed through the provider, then forgotten once their agent
//! has gone. A task no group takes gets the reason in its waiting reason and brings no
//! node. A provider call that fails (an exit status, an answer that is not one, no answer
//! within the timeout) backs its group off, doubling the wait, and is shown on the group.
//!
//! Every decision and outcome is an event (stored, `kiln pool events`, counted in
//! `kiln_pool_events`). Nodes asked for are stored before the provider is called and their
//! state after each change (kiln-store's `pool_nodes`), so a restarted server counts coming
//! nodes again and finishes removals, asking for nothing twice; a node asked for that never
//! registers is removed after the boot timeout.
//!
//! Invariants: a group never has more than `max` nodes, coming ones included, because of the
//! autoscaler; it never drains below `min`; a draining node gets no new work, and the
//! provider is asked to remove a node only when it runs nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kiln_api::autoscale::{
    NodeGroupInfo, NodeGroupSpec, PoolEvent, PoolNode, ProviderFailure, ProviderRequest,
};
use kiln_scheduler::autoscale::{GroupState, Member, Stuck, plan, scale_in};
use kiln_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatch, PoolNodeView};
use crate::metrics::{GroupLabel, Metrics, PoolEventLabel, PoolNodeLabel};

pub mod provider;
pub mod spec;

use spec::Checked;

/// Stuck tasks reported as events per tick at most (the rest on later ticks).
const STUCK_EVENTS_PER_TICK: usize = 20;

/// A node's place in its group's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Coming,
    Ready,
    Draining,
    Removing,
}

impl NodeState {
    fn as_str(self) -> &'static str {
        match self {
            NodeState::Coming => "coming",
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Removing => "removing",
        }
    }

    fn parse(s: &str) -> NodeState {
        match s {
            "coming" => NodeState::Coming,
            "draining" => NodeState::Draining,
            "removing" => NodeState::Removing,
            _ => NodeState::Ready,
        }
    }
}

#[derive(Debug, Clone)]
struct PoolNodeRt {
    group: String,
    state: NodeState,
    requested: Instant,
}

#[derive(Debug, Clone)]
struct Failure {
    action: String,
    error: String,
    failures: u32,
    retry_at: Instant,
    retry_at_utc: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct GroupRt {
    spec: NodeGroupSpec,
    checked: Checked,
    updated_at: DateTime<Utc>,
    failure: Option<Failure>,
}

impl GroupRt {
    fn backing_off(&self, now: Instant) -> bool {
        self.failure.as_ref().is_some_and(|f| now < f.retry_at)
    }
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, GroupRt>,
    nodes: BTreeMap<String, PoolNodeRt>,
    idle_since: HashMap<String, Instant>,
    /// Tasks whose being stuck was reported (until they leave the queue).
    reported: HashSet<String>,
}

/// Why a node group could not be applied or deleted.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The spec does not check: every problem, one per line.
    #[error("{0}")]
    Invalid(String),
    /// No group of that name.
    #[error("node group `{0}` does not exist")]
    NotFound(String),
    /// The group still has nodes.
    #[error("{0}")]
    Busy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node groups and the autoscaler task's state.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    dispatch: Arc<Dispatch>,
    metrics: Arc<Metrics>,
    /// The server's URL as agents reach it (`KILN_SERVER`).
    server_url: String,
    state: Mutex<State>,
}

fn instant_of(at: DateTime<Utc>) -> Instant {
    let ago = (Utc::now() - at).to_std().unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// A fresh node name of `group`: `<group>-<8 hex>`.
fn node_name(group: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{group}-{}", &id[..8])
}

impl Autoscaler {
    /// An autoscaler over `dispatch` whose agents reach the server at `server_url`.
    pub fn new(
        store: Store,
        dispatch: Arc<Dispatch>,
        metrics: Arc<Metrics>,
        server_url: String,
    ) -> Autoscaler {
        Autoscaler {
            inner: Arc::new(Inner {
                store,
                dispatch,
                metrics,
                server_url,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the stored groups and the nodes asked for (at start). A stored group that no
    /// longer checks is skipped with a warning.
    pub async fn load(&self) -> Result<(), StoreError> {
        let groups = self.inner.store.node_groups().await?;
        let nodes = self.inner.store.pool_nodes().await?;
        let mut st = self.lock();
        for g in groups {
            let spec: NodeGroupSpec = match serde_json::from_value(g.spec) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("node group `{}` as stored does not read: {e}", g.name);
                    continue;
                }
            };
            match spec::check(&spec) {
                Ok(checked) => {
                    let rt = GroupRt { spec, checked, updated_at: g.updated_at, failure: None };
                    st.groups.insert(g.name, rt);
                }
                Err(e) => tracing::warn!("node group as stored does not check: {e}"),
            }
        }
        for n in nodes {
            let rt = PoolNodeRt {
                group: n.group,
                state: NodeState::parse(&n.state),
                requested: instant_of(n.requested_at),
            };
            if rt.state == NodeState::Draining {
                self.inner.dispatch.set_draining(&n.name, true);
            }
            st.nodes.insert(n.name, rt);
        }
        Ok(())
    }

    /// Applies a group: checked, stored (unless unchanged), in effect from the next tick.
    /// Returns whether it changed and the group now.
    pub async fn apply(&self, spec: NodeGroupSpec) -> Result<(String, NodeGroupInfo), GroupError> {
        let checked = spec::check(&spec).map_err(GroupError::Invalid)?;
        let mut spec = spec;
        spec.kind = None;
        let json = serde_json::to_value(&spec).map_err(|e| GroupError::Invalid(e.to_string()))?;
        let existed = self.lock().groups.contains_key(&spec.name);
        let changed = self.inner.store.put_node_group(&spec.name, &json).await?;
        let name = spec.name.clone();
        if changed {
            let mut st = self.lock();
            let failure = st.groups.get(&name).and_then(|g| g.failure.clone());
            st.groups
                .insert(name.clone(), GroupRt { spec, checked, updated_at: Utc::now(), failure });
        }
        let change = match (existed, changed) {
            (_, false) => "unchanged",
            (false, true) => "created",
            (true, true) => "updated",
        };
        if changed {
            let reason = {
                let st = self.lock();
                let g = &st.groups[&name].checked.group;
                format!("{change}: min {}, max {}", g.min, g.max)
            };
            self.event(&name, "group-applied", &[], &reason).await;
        }
        let info = self.group(&name).ok_or_else(|| GroupError::NotFound(name.clone()))?;
        Ok((change.to_string(), info))
    }

    /// Deletes a group that has no node left (apply it with `max: 0` first).
    pub async fn delete(&self, name: &str) -> Result<(), GroupError> {
        {
            let st = self.lock();
            if !st.groups.contains_key(name) {
                return Err(GroupError::NotFound(name.to_string()));
            }
            let nodes = st.nodes.values().filter(|n| n.group == name).count();
            if nodes > 0 {
                return Err(GroupError::Busy(format!(
                    "node group `{name}` still has {nodes} node(s): apply it with `max: 0` first, then delete it once they are gone"
                )));
            }
        }
        self.inner.store.delete_node_group(name).await?;
        self.lock().groups.remove(name);
        self.event(name, "group-deleted", &[], "deleted").await;
        Ok(())
    }

    /// Every group with its nodes, by name.
    pub fn groups(&self) -> Vec<NodeGroupInfo> {
        let names: Vec<String> = self.lock().groups.keys().cloned().collect();
        names.iter().filter_map(|n| self.group(n)).collect()
    }

    /// One group with its nodes.
    pub fn group(&self, name: &str) -> Option<NodeGroupInfo> {
        let view = self.inner.dispatch.pool_view();
        let st = self.lock();
        let g = st.groups.get(name)?;
        let now = Instant::now();
        let mut nodes: Vec<PoolNode> =
            st.nodes
                .iter()
                .filter(|(_, n)| n.group == name)
                .map(|(node, n)| {
                    let v = view.iter().find(|v| &v.name == node);
                    PoolNode {
                        name: node.clone(),
                        state: n.state.as_str().to_string(),
                        running: v.map_or(0, |v| v.running),
                        idle_ms: st.idle_since.get(node).map(|at| {
                            u64::try_from(now.duration_since(*at).as_millis()).unwrap_or(0)
                        }),
                    }
                })
                .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Some(NodeGroupInfo {
            spec: g.spec.clone(),
            nodes,
            failure: g.failure.as_ref().map(|f| ProviderFailure {
                action: f.action.clone(),
                error: f.error.clone(),
                failures: f.failures,
                retry_at: f.retry_at_utc,
            }),
            updated_at: g.updated_at,
        })
    }

    /// The latest `limit` events (of `group`), oldest first, after id `after`.
    pub async fn events(
        &self,
        group: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PoolEvent>, StoreError> {
        let records = self.inner.store.pool_events(group, after, limit).await?;
        Ok(records
            .into_iter()
            .map(|r| PoolEvent {
                id: r.id,
                at: r.at,
                group: r.group,
                kind: r.kind,
                nodes: r.nodes,
                reason: r.reason,
            })
            .collect())
    }

    /// Records an event: stored, counted, logged. A store failure is logged, not raised:
    /// the decision it describes was carried out.
    async fn event(&self, group: &str, kind: &str, nodes: &[String], reason: &str) {
        tracing::info!(group, kind, nodes = %nodes.join(" "), "elastic pool: {reason}");
        let label = PoolEventLabel { group: group.to_string(), kind: kind.to_string() };
        self.inner.metrics.pool_events.get_or_create(&label).inc();
        if let Err(e) = self.inner.store.add_pool_event(group, kind, nodes, reason).await {
            tracing::error!("elastic pool: could not store the event `{kind}` of `{group}`: {e}");
        }
    }

    async fn set_node(&self, name: &str, group: &str, state: NodeState) {
        let rt = PoolNodeRt { group: group.to_string(), state, requested: Instant::now() };
        {
            let mut st = self.lock();
            let e = st.nodes.entry(name.to_string()).or_insert(rt);
            e.state = state;
        }
        if let Err(e) = self.inner.store.set_pool_node(name, group, state.as_str()).await {
            tracing::error!(
                "elastic pool: could not store node `{name}` as {}: {e}",
                state.as_str()
            );
        }
    }

    async fn forget(&self, name: &str) {
        self.lock().nodes.remove(name);
        self.lock().idle_since.remove(name);
        if let Err(e) = self.inner.store.delete_pool_node(name).await {
            tracing::error!("elastic pool: could not forget node `{name}`: {e}");
        }
    }

    fn failed(&self, group: &str, action: &str, error: &str) -> (u32, Duration) {
        let mut st = self.lock();
        let Some(g) = st.groups.get_mut(group) else { return (0, Duration::ZERO) };
        let failures = g.failure.as_ref().map_or(0, |f| f.failures) + 1;
        let wait = spec::backoff(g.checked.backoff, failures);
        g.failure = Some(Failure {
            action: action.to_string(),
            error: error.to_string(),
            failures,
            retry_at: Instant::now() + wait,
            retry_at_utc: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        });
        (failures, wait)
    }

    fn succeeded(&self, group: &str) {
        if let Some(g) = self.lock().groups.get_mut(group) {
            g.failure = None;
        }
    }

    /// Calls `group`'s provider; on failure, backs off and records a `provider-failed`
    /// event. `None` when the call failed or the group is gone.
    async fn call(
        &self,
        group: &str,
        action: &str,
        count: u32,
        nodes: &[String],
    ) -> Option<kiln_api::autoscale::ProviderAnswer> {
        let (provider, timeout, agent_args) = {
            let st = self.lock();
            let g = st.groups.get(group)?;
            (g.checked.provider.clone(), g.checked.timeout, g.checked.agent_args.clone())
        };
        let req = ProviderRequest {
            action: action.to_string(),
            group: group.to_string(),
            count,
            nodes: nodes.to_vec(),
            server: self.inner.server_url.clone(),
            agent_args,
        };
        match provider::call(&provider, &req, timeout).await {
            Ok(answer) => {
                self.succeeded(group);
                Some(answer)
            }
            Err(error) => {
                let (failures, wait) = self.failed(group, action, &error);
                let reason = format!(
                    "{action} failed ({failures} in a row; next try in {}s): {error}",
                    wait.as_secs_f64()
                );
                self.event(group, "provider-failed", nodes, &reason).await;
                None
            }
        }
    }

    /// One pass: registrations, boot timeouts, scale-out, scale-in, removals.
    pub async fn tick(&self) {
        let view = self.inner.dispatch.pool_view();
        self.registrations(&view).await;
        self.scale_out().await;
        self.scale_in().await;
        self.removals().await;
        self.gauges();
    }

    async fn registrations(&self, view: &[PoolNodeView]) {
        let now = Instant::now();
        let mut registered = Vec::new();
        let mut timed_out = Vec::new();
        {
            let mut st = self.lock();
            for v in view {
                // Idle time, of every ready node of a group.
                if v.ready && v.running == 0 {
                    st.idle_since.entry(v.name.clone()).or_insert(now);
                } else {
                    st.idle_since.remove(&v.name);
                }
            }
            for v in view.iter().filter(|v| v.ready) {
                let Some(group) = v.group.clone() else { continue };
                match st.nodes.get(&v.name) {
                    Some(n) if n.state == NodeState::Coming => {
                        registered.push((v.name.clone(), n.group.clone()));
                    }
                    None if st.groups.contains_key(&group) => {
                        registered.push((v.name.clone(), group));
                    }
                    _ => {}
                }
            }
            for (name, n) in &st.nodes {
                if n.state != NodeState::Coming || view.iter().any(|v| &v.name == name && v.ready) {
                    continue;
                }
                let boot = st
                    .groups
                    .get(&n.group)
                    .map_or(Duration::from_secs(600), |g| g.checked.boot_timeout);
                if now.duration_since(n.requested) >= boot {
                    timed_out.push((name.clone(), n.group.clone(), boot));
                }
            }
        }
        for (name, group) in registered {
            self.set_node(&name, &group, NodeState::Ready).await;
            let reason = format!("`{name}` registered with group={group}");
            self.event(&group, "node-registered", &[name], &reason).await;
        }
        for (name, group, boot) in timed_out {
            self.set_node(&name, &group, NodeState::Draining).await;
            let reason = format!(
                "`{name}` did not register within the boot timeout ({}s): removing it",
                boot.as_secs()
            );
            self.event(&group, "boot-timeout", &[name], &reason).await;
        }
    }

    async fn scale_out(&self) {
        let pending = self.inner.dispatch.pending_asks();
        let now = Instant::now();
        let (states, backing_off) = {
            let st = self.lock();
            let states: Vec<GroupState> = st
                .groups
                .iter()
                .map(|(name, g)| {
                    let count = |s: NodeState| {
                        st.nodes.values().filter(|n| &n.group == name && n.state == s).count()
                            as u32
                    };
                    // Nodes on their way out still count against `max` until they are gone.
                    GroupState {
                        group: g.checked.group.clone(),
                        nodes: count(NodeState::Ready)
                            + count(NodeState::Draining)
                            + count(NodeState::Removing),
                        coming: count(NodeState::Coming),
                    }
                })
                .collect();
            let backing_off: HashSet<String> = st
                .groups
                .iter()
                .filter(|(_, g)| g.backing_off(now))
                .map(|(n, _)| n.clone())
                .collect();
            (states, backing_off)
        };
        let decided = plan(&states, &pending);
        // Waiting reasons.
        let mut notes = HashMap::new();
        for (task, group) in &decided.covered {
            let note = if backing_off.contains(group) {
                format!(
                    "node group `{group}` would take it; its provider is backing off after a failure"
                )
            } else {
                format!("a node of group `{group}` is coming for it")
            };
            notes.insert(task.0.clone(), note);
        }
        let mut stuck_events = Vec::new();
        {
            let mut st = self.lock();
            let queued: HashSet<&str> = pending.iter().map(|a| a.task.0.as_str()).collect();
            st.reported.retain(|k| queued.contains(k.as_str()));
            for (task, why) in &decided.stuck {
                notes.insert(task.0.clone(), why.to_string());
                if stuck_events.len() < STUCK_EVENTS_PER_TICK && st.reported.insert(task.0.clone())
                {
                    let (group, kind) = match why {
                        Stuck::NoGroupFits(_) => (String::new(), "no-group-fits"),
                        Stuck::AtMax(g) => (g.first().cloned().unwrap_or_default(), "at-max"),
                    };
                    stuck_events.push((group, kind, format!("task {}: {why}", task.0)));
                }
            }
        }
        self.inner.dispatch.set_pool_notes(notes);
        for (group, kind, reason) in stuck_events {
            self.event(&group, kind, &[], &reason).await;
        }
        for out in decided.out {
            if backing_off.contains(&out.group) {
                continue;
            }
            // Nodes being drained come back first: they are there already.
            let mut count = out.count;
            let draining: Vec<String> = {
                let st = self.lock();
                st.nodes
                    .iter()
                    .filter(|(_, n)| n.group == out.group && n.state == NodeState::Draining)
                    .map(|(name, _)| name.clone())
                    .take(count as usize)
                    .collect()
            };
            for name in draining {
                if !self.inner.dispatch.pool_view().iter().any(|v| v.name == name && v.ready) {
                    continue;
                }
                self.inner.dispatch.set_draining(&name, false);
                self.set_node(&name, &out.group, NodeState::Ready).await;
                let reason = format!("drain of `{name}` canceled: {}", out.reason);
                self.event(&out.group, "drain-canceled", &[name], &reason).await;
                count -= 1;
            }
            if count == 0 {
                continue;
            }
            let names: Vec<String> = (0..count).map(|_| node_name(&out.group)).collect();
            // Stored as coming before the provider is asked: a crash in between leaves a
            // node that is removed after the boot timeout, never one asked for twice.
            for n in &names {
                self.set_node(n, &out.group, NodeState::Coming).await;
            }
            match self.call(&out.group, "up", count, &names).await {
                Some(answer) => {
                    let mut started = names.clone();
                    if !answer.nodes.is_empty() {
                        for n in &names {
                            self.forget(n).await;
                        }
                        for n in &answer.nodes {
                            self.set_node(n, &out.group, NodeState::Coming).await;
                        }
                        started = answer.nodes.clone();
                    }
                    self.inner
                        .metrics
                        .pool_nodes_requested
                        .get_or_create(&GroupLabel { group: out.group.clone() })
                        .inc_by(started.len() as u64);
                    let reason = format!("asked for {} node(s): {}", started.len(), out.reason);
                    self.event(&out.group, "scale-out", &started, &reason).await;
                }
                None => {
                    for n in &names {
                        self.forget(n).await;
                    }
                }
            }
        }
    }

    async fn scale_in(&self) {
        let now = Instant::now();
        let decisions: Vec<(String, kiln_scheduler::autoscale::ScaleIn)> = {
            let st = self.lock();
            let mut out = Vec::new();
            for (name, g) in &st.groups {
                let members: Vec<Member> = st
                    .nodes
                    .iter()
                    .filter(|(_, n)| &n.group == name && n.state == NodeState::Ready)
                    .map(|(node, _)| Member {
                        node: kiln_scheduler::NodeId(node.clone()),
                        idle_for: st.idle_since.get(node).map(|at| now.duration_since(*at)),
                    })
                    .collect();
                let coming = st
                    .nodes
                    .values()
                    .filter(|n| &n.group == name && n.state == NodeState::Coming)
                    .count() as u32;
                for s in scale_in(&g.checked.group, g.checked.idle, &members, coming) {
                    out.push((name.clone(), s));
                }
            }
            out
        };
        for (group, s) in decisions {
            let running = self.inner.dispatch.set_draining(&s.node.0, true);
            self.set_node(&s.node.0, &group, NodeState::Draining).await;
            let reason = if running > 0 {
                format!("{}; its {running} task(s) finish first", s.reason)
            } else {
                s.reason.clone()
            };
            self.event(&group, "drain", std::slice::from_ref(&s.node.0), &reason).await;
        }
        // Drained nodes that run nothing (or never registered) go, a call per group. Read
        // after the drains: nothing is placed on a draining node, so what runs nothing now
        // stays so.
        let view = self.inner.dispatch.pool_view();
        let now = Instant::now();
        let mut down: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let st = self.lock();
            for (name, n) in &st.nodes {
                if n.state != NodeState::Draining {
                    continue;
                }
                if st.groups.get(&n.group).is_none_or(|g| g.backing_off(now)) {
                    continue;
                }
                let busy = view.iter().any(|v| &v.name == name && v.running > 0);
                if !busy {
                    down.entry(n.group.clone()).or_default().push(name.clone());
                }
            }
        }
        for (group, nodes) in down {
            if self.call(&group, "down", 0, &nodes).await.is_some() {
                for n in &nodes {
                    self.set_node(n, &group, NodeState::Removing).await;
                }
                let reason =
                    format!("asked the provider to remove {} drained node(s)", nodes.len());
                self.event(&group, "scale-in", &nodes, &reason).await;
            }
        }
    }

    async fn removals(&self) {
        let removing: Vec<(String, String)> = {
            let st = self.lock();
            st.nodes
                .iter()
                .filter(|(_, n)| n.state == NodeState::Removing)
                .map(|(name, n)| (name.clone(), n.group.clone()))
                .collect()
        };
        let view = self.inner.dispatch.pool_view();
        for (name, group) in removing {
            let known = view.iter().find(|v| v.name == name);
            if known.is_some_and(|v| v.ready) {
                continue; // its agent has not stopped yet
            }
            if known.is_some() && !self.inner.dispatch.forget_pool_node(&name) {
                continue; // still holds a task (lost, not reaped yet)
            }
            match self.inner.store.delete_node(&name).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!("elastic pool: could not delete node `{name}`: {e}");
                    continue;
                }
            }
            self.forget(&name).await;
            let reason = format!("`{name}` is gone");
            self.event(&group, "node-removed", &[name], &reason).await;
        }
    }

    fn gauges(&self) {
        let st = self.lock();
        for name in st.groups.keys() {
            for s in [NodeState::Coming, NodeState::Ready, NodeState::Draining, NodeState::Removing]
            {
                let n = st.nodes.values().filter(|n| &n.group == name && n.state == s).count();
                let label = PoolNodeLabel { group: name.clone(), state: s.as_str().to_string() };
                self.inner.metrics.pool_nodes.get_or_create(&label).set(n as i64);
            }
        }
    }

    /// Runs a tick every `interval` until `stop`.
    pub fn spawn(
        &self,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = me.tick() => {}
                }
            }
        })
    }
}
