//! Hands job attempts to agents through leases.
//!
//! A started attempt waits in a FIFO queue until an agent's lease poll takes it; the lease then
//! lives until the agent reports `exited`, the server cancels it and the agent confirms, or the
//! agent stops renewing it for [`LEASE_TTL_MS`] (then the attempt fails with an error and the
//! job's retry policy decides). Everything here is in memory: after a restart every lease is
//! gone, and the coordinator fails or re-queues the attempts it finds unfinished.
//!
//! A poll hands an agent the queued attempts, oldest first, that fit its node now (see
//! [`crate::pool::Node::fits`]: connected, not disabled, a free slot, the CPUs and memory the
//! job's `resources:` ask); an attempt that fits nowhere waits, and [`Dispatch::waiting`] says
//! why. A node's reservations are taken when a lease is handed out and given back when it ends,
//! under the same lock, so concurrent polls never overcommit a node.
//!
//! Invariants: an attempt is in the queue or in one lease, never both; a lease is known to
//! exactly one agent session; every lost lease is reported exactly once (by [`Dispatch::reap`],
//! [`Dispatch::register`] or [`Dispatch::finish`]); a node's `used` is the sum of the asks of
//! its live leases.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_api::agent::{AgentInfo, LEASE_TTL_MS, Lease, LeaseRequest, LeaseResponse, RegisterAgent};
use kiln_api::pool::{NodeInfo, Offer};
use kiln_logs::Masker;
use kiln_store::{NodeRecord, ProjectId, RunId};
use kiln_workflow::plan::JobId;
use tokio::sync::Notify;

use crate::coord::RunTx;
use crate::pool::{Ask, Node, NodeFacts, NodeState, why_waiting};

/// Longest lease poll the server holds open.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the server keeps about one attempt while it is queued or leased.
#[derive(Debug)]
pub struct TaskCtx {
    /// Run.
    pub run: RunId,
    /// Project (caches are per project).
    pub project: ProjectId,
    /// Job.
    pub job: JobId,
    /// Index of the job in the plan (log keys use it).
    pub job_index: usize,
    /// Attempt.
    pub attempt: u32,
    /// Masks the project's secrets in the attempt's log lines.
    pub masker: Arc<Masker>,
    /// The run's actor.
    pub actor: RunTx,
    /// `cache:` of the job, rendered (checked against the agent's cache requests).
    pub cache_prefix: Option<String>,
    /// When the attempt was queued.
    pub queued_at: Instant,
}

/// An attempt waiting for an agent.
#[derive(Debug)]
pub struct Queued {
    /// The lease to hand out (its `id` is set when leased).
    pub lease: Lease,
    /// Server-side context.
    pub ctx: Arc<TaskCtx>,
}

#[derive(Debug)]
struct Leased {
    ctx: Arc<TaskCtx>,
    agent: String,
    node: String,
    ask: Ask,
    renewed: Instant,
    cancel: bool,
}

#[derive(Debug)]
struct Session {
    info: AgentInfo,
    notify: Arc<Notify>,
    seen: Instant,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    leases: HashMap<String, Leased>,
    agents: HashMap<String, Session>,
    /// Nodes by agent name.
    nodes: std::collections::BTreeMap<String, Node>,
}

/// The queue of attempts, the nodes of the pool and the leases of connected agents.
#[derive(Debug)]
pub struct Dispatch {
    state: Mutex<State>,
    /// An agent silent this long is lost (its leases too).
    lost_after: Duration,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch::new(Duration::from_millis(LEASE_TTL_MS))
    }
}

/// What a lookup of a node by name or IP found.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeLookup {
    /// The node's name.
    Found(String),
    /// No node has that name or IP.
    Missing,
    /// Several nodes have that IP: their names.
    Ambiguous(Vec<String>),
}

/// What the ask of a job's `resources:` is.
fn ask_of(lease: &Lease) -> Ask {
    let r = &lease.start.job.resources;
    Ask { cpu_millis: r.cpu_millis.unwrap_or(0), memory_bytes: r.memory_bytes.unwrap_or(0) }
}

/// What [`Dispatch::cancel`] found.
#[derive(Debug)]
pub enum Canceled {
    /// The attempt was still queued and is dropped: report it canceled yourself.
    Dequeued(Arc<TaskCtx>),
    /// An agent runs it and was told to kill it; it will report `exited`.
    Signalled,
    /// Not known here (already ended, or lost).
    Unknown,
}

impl Dispatch {
    /// An empty dispatcher whose agents are lost after `lost_after` without a poll.
    pub fn new(lost_after: Duration) -> Dispatch {
        Dispatch { state: Mutex::default(), lost_after }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the stored nodes (all `down` until their agents register).
    pub fn load_nodes(&self, records: &[NodeRecord]) {
        let mut st = self.lock();
        for r in records {
            st.nodes.entry(r.name.clone()).or_insert_with(|| Node::from_record(r));
        }
    }

    /// Takes an operator's change of a node (its stored record after the change) and wakes
    /// its agent, which may now take work it could not.
    pub fn node_changed(&self, record: &NodeRecord) {
        let mut st = self.lock();
        let fresh = Node::from_record(record);
        let session = match st.nodes.get_mut(&record.name) {
            Some(n) => {
                n.operator = fresh.operator;
                n.disabled = fresh.disabled;
                n.session.clone()
            }
            None => {
                st.nodes.insert(record.name.clone(), fresh);
                None
            }
        };
        if let Some(s) = session.and_then(|id| st.agents.get(&id)) {
            s.notify.notify_one();
        }
    }

    /// Forgets a node whose agent is not connected; `false` if it is connected (or unknown).
    pub fn forget_node(&self, name: &str) -> bool {
        let mut st = self.lock();
        match st.nodes.get(name) {
            Some(n) if n.state != NodeState::Ready => {
                st.nodes.remove(name);
                true
            }
            _ => false,
        }
    }

    /// Finds a node by its name, else by its IP.
    pub fn lookup(&self, name_or_ip: &str) -> NodeLookup {
        let st = self.lock();
        if st.nodes.contains_key(name_or_ip) {
            return NodeLookup::Found(name_or_ip.to_string());
        }
        let by_ip: Vec<String> = st
            .nodes
            .values()
            .filter(|n| n.facts.ip == name_or_ip)
            .map(|n| n.name.clone())
            .collect();
        match by_ip.len() {
            0 => NodeLookup::Missing,
            1 => NodeLookup::Found(by_ip.into_iter().next().expect("one")),
            _ => NodeLookup::Ambiguous(by_ip),
        }
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let st = self.lock();
        st.nodes.values().enumerate().map(|(i, n)| n.info(i)).collect()
    }

    /// The free capacity of every connected, enabled node, by name.
    pub fn offers(&self) -> Vec<Offer> {
        let st = self.lock();
        st.nodes
            .values()
            .filter(|n| n.state == NodeState::Ready && !n.disabled)
            .enumerate()
            .map(|(i, n)| n.offer(i))
            .collect()
    }

    /// Why the queued attempt of `job` of `run` waits for a node; `None` if none is queued.
    pub fn waiting(&self, run: &RunId, job: &JobId) -> Option<String> {
        let st = self.lock();
        let q = st.queue.iter().find(|q| &q.ctx.run == run && &q.ctx.job == job)?;
        Some(why_waiting(st.nodes.values(), &ask_of(&q.lease)))
    }

    /// Queues an attempt and wakes every waiting agent.
    pub fn enqueue(&self, task: Queued) {
        let mut st = self.lock();
        st.queue.push_back(task);
        for s in st.agents.values() {
            s.notify.notify_one();
        }
    }

    /// Cancels the attempt `(run, job, attempt)` wherever it is.
    pub fn cancel(&self, run: &RunId, job: &JobId, attempt: u32) -> Canceled {
        let mut st = self.lock();
        let same = |c: &TaskCtx| &c.run == run && &c.job == job && c.attempt == attempt;
        if let Some(pos) = st.queue.iter().position(|q| same(&q.ctx)) {
            let q = st.queue.remove(pos).expect("position is in range");
            return Canceled::Dequeued(q.ctx);
        }
        let mut agent = None;
        for l in st.leases.values_mut() {
            if same(&l.ctx) {
                l.cancel = true;
                agent = Some(l.agent.clone());
            }
        }
        match agent {
            Some(a) => {
                if let Some(s) = st.agents.get(&a) {
                    s.notify.notify_one();
                }
                Canceled::Signalled
            }
            None => Canceled::Unknown,
        }
    }

    /// Registers an agent session and makes its node `ready` with the facts it declared. A
    /// session of the same name is replaced: the leases it held that the agent lists in
    /// `held` (it still runs them) move to the new session; its other leases are returned as
    /// lost.
    pub fn register(&self, req: &RegisterAgent) -> (AgentInfo, Vec<Arc<TaskCtx>>) {
        let mut st = self.lock();
        let old: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, s)| s.info.name == req.name)
            .map(|(k, _)| k.clone())
            .collect();
        let mut lost = Vec::new();
        let mut kept = Vec::new();
        for id in old {
            st.agents.remove(&id);
            let ids: Vec<String> =
                st.leases.iter().filter(|(_, l)| l.agent == id).map(|(k, _)| k.clone()).collect();
            for lease in ids {
                if req.held.contains(&lease) {
                    kept.push(lease);
                } else if let Some(l) = st.leases.remove(&lease) {
                    release(&mut st, &l);
                    lost.push(l.ctx);
                }
            }
        }
        let info = AgentInfo {
            id: uuid::Uuid::now_v7().simple().to_string(),
            name: req.name.clone(),
            executor: req.executor.clone(),
            capacity: req.capacity.max(1),
            running: 0,
            connected_at: Utc::now(),
        };
        st.agents.insert(
            info.id.clone(),
            Session { info: info.clone(), notify: Arc::new(Notify::new()), seen: Instant::now() },
        );
        let now = Instant::now();
        for lease in kept {
            if let Some(l) = st.leases.get_mut(&lease) {
                l.agent = info.id.clone();
                l.renewed = now;
            }
        }
        let node = st.nodes.entry(req.name.clone()).or_insert_with(|| Node {
            name: req.name.clone(),
            facts: NodeFacts::default(),
            operator: Default::default(),
            disabled: false,
            state: NodeState::Down,
            session: None,
            last_seen: None,
            used: Ask::default(),
            running: 0,
            ports_used: Default::default(),
        });
        node.facts = NodeFacts::of(req);
        node.state = NodeState::Ready;
        node.session = Some(info.id.clone());
        node.last_seen = Some(Utc::now());
        (info, lost)
    }

    /// Connected agents with their current lease counts.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let st = self.lock();
        let mut out: Vec<AgentInfo> = st
            .agents
            .iter()
            .map(|(id, s)| {
                let running = st.leases.values().filter(|l| &l.agent == id).count();
                AgentInfo { running: u32::try_from(running).unwrap_or(u32::MAX), ..s.info.clone() }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Attempts waiting for an agent.
    pub fn queue_len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Leases held by agents.
    pub fn lease_count(&self) -> usize {
        self.lock().leases.len()
    }

    /// One lease poll of agent `agent`: renews `held`, then answers with cancels, unknown
    /// leases and new work as soon as there is any, or empty after `wait_ms`.
    /// `None` when the agent session is unknown (re-register).
    pub async fn poll(&self, agent: &str, req: &LeaseRequest) -> Option<LeaseResponse> {
        // A poll is the agent's heartbeat: it answers within half of `lost_after`, so a live
        // agent never looks silent while it waits.
        let longest = MAX_WAIT.min(self.lost_after / 2);
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms).min(longest);
        let mut woken = false;
        loop {
            let notify = {
                let mut st = self.lock();
                let now = Instant::now();
                let session = st.agents.get_mut(agent)?;
                session.seen = now;
                let notify = session.notify.clone();
                let node_name = session.info.name.clone();
                if let Some(n) = st.nodes.get_mut(&node_name) {
                    n.last_seen = Some(Utc::now());
                }
                let mut resp = LeaseResponse::default();
                for id in &req.held {
                    match st.leases.get_mut(id) {
                        Some(l) if l.agent == agent => {
                            l.renewed = now;
                            if l.cancel {
                                resp.cancel.push(id.clone());
                            }
                        }
                        _ => resp.unknown.push(id.clone()),
                    }
                }
                // Oldest first, every queued attempt that fits this node now.
                let mut free = req.free;
                let mut i = 0;
                while free > 0 && i < st.queue.len() {
                    let ask = ask_of(&st.queue[i].lease);
                    let fits = st.nodes.get(&node_name).is_some_and(|n| n.fits(&ask).is_ok());
                    if !fits {
                        i += 1;
                        continue;
                    }
                    let mut q = st.queue.remove(i).expect("index is in range");
                    if let Some(n) = st.nodes.get_mut(&node_name) {
                        n.reserve(&ask);
                        // Where it runs, as Jenkins' NODE_NAME and BCS's host IP env.
                        q.lease.env.insert("KILN_NODE".into(), node_name.clone());
                        if !n.facts.ip.is_empty() {
                            q.lease.env.insert("KILN_HOST_IP".into(), n.facts.ip.clone());
                        }
                    }
                    q.lease.id = uuid::Uuid::now_v7().simple().to_string();
                    st.leases.insert(
                        q.lease.id.clone(),
                        Leased {
                            ctx: q.ctx,
                            agent: agent.to_string(),
                            node: node_name.clone(),
                            ask,
                            renewed: now,
                            cancel: false,
                        },
                    );
                    resp.leases.push(q.lease);
                    free -= 1;
                }
                // A wake-up with nothing for this agent still answers: something changed
                // (one of its leases ended, or work came while it had no free slot), and
                // the agent polls again with its current free slots.
                if woken
                    || !resp.leases.is_empty()
                    || !resp.cancel.is_empty()
                    || !resp.unknown.is_empty()
                    || now >= deadline
                {
                    return Some(resp);
                }
                notify
            };
            woken = tokio::time::timeout_at(deadline.into(), notify.notified()).await.is_ok();
        }
    }

    /// The context of a live lease, and whether it is to be canceled.
    pub fn lease(&self, id: &str) -> Option<(Arc<TaskCtx>, bool)> {
        self.lock().leases.get(id).map(|l| (l.ctx.clone(), l.cancel))
    }

    /// Ends a lease (its attempt exited) and wakes its agent, whose slot is free again.
    pub fn finish(&self, id: &str) -> Option<Arc<TaskCtx>> {
        let mut st = self.lock();
        let l = st.leases.remove(id)?;
        release(&mut st, &l);
        if let Some(s) = st.agents.get(&l.agent) {
            s.notify.notify_one();
        }
        // Its resources are free again: another queued attempt may fit there or elsewhere.
        if !st.queue.is_empty() {
            for s in st.agents.values() {
                s.notify.notify_one();
            }
        }
        Some(l.ctx)
    }

    /// Drops agents silent for the `lost_after` of [`Dispatch::new`] (their nodes become
    /// `lost`) and leases not renewed that long; returns the lost attempts with the agent's
    /// name.
    pub fn reap(&self) -> Vec<(Arc<TaskCtx>, String)> {
        let ttl = self.lost_after;
        let mut st = self.lock();
        let now = Instant::now();
        let expired: Vec<String> = st
            .leases
            .iter()
            .filter(|(_, l)| now.duration_since(l.renewed) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        let mut lost = Vec::new();
        for id in expired {
            if let Some(l) = st.leases.remove(&id) {
                release(&mut st, &l);
                lost.push((l.ctx, l.node));
            }
        }
        let silent: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, s)| now.duration_since(s.seen) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            if let Some(s) = st.agents.remove(&id) {
                if let Some(n) = st.nodes.get_mut(&s.info.name) {
                    if n.session.as_deref() == Some(id.as_str()) {
                        n.state = NodeState::Lost;
                        n.session = None;
                    }
                }
            }
        }
        lost
    }

    /// Ends the session `agent` (its agent said it stops): its node goes `down`; its leases
    /// stay until they end or expire.
    pub fn leave(&self, agent: &str) {
        let mut st = self.lock();
        if let Some(s) = st.agents.remove(agent) {
            if let Some(n) = st.nodes.get_mut(&s.info.name) {
                if n.session.as_deref() == Some(agent) {
                    n.state = NodeState::Down;
                    n.session = None;
                }
            }
        }
    }
}

/// Gives a lease's reservation back to its node.
fn release(st: &mut State, l: &Leased) {
    if let Some(n) = st.nodes.get_mut(&l.node) {
        n.release(&l.ask);
    }
}
