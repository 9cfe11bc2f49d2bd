//! Hands tasks (job attempts and service instances) to agents through leases.
//!
//! A started attempt waits in a FIFO queue until an agent's lease poll takes it; the lease then
//! lives until the agent reports `exited`, the server cancels it and the agent confirms, or the
//! agent stops renewing it for [`LEASE_TTL_MS`] (then the attempt fails with an error and the
//! job's retry policy decides). Everything here is in memory: after a restart every lease of
//! a job attempt is gone, and the coordinator fails or re-queues the attempts it finds
//! unfinished. Service instances are taken back instead ([`Dispatch::adopt`]): each one stored
//! as running waits, with its lease id, on its node for that node's agent to register again
//! and list it as held; its resources and host ports are held in the node's ledger
//! meanwhile, so nothing is placed over it. One no agent claims within the agent-lost window
//! is lost as if its agent were.
//!
//! Placement: every change (an attempt queued, one ended, a node registered, changed, lost or
//! gone) runs a placement pass under the dispatcher's lock. Queued attempts are tried by
//! priority, then oldest first; `kiln_scheduler::Pool::reserve` filters the nodes (resources,
//! constraints, host ports; a node whose agent is not connected, that is disabled or has no
//! free slot is off), scores them (bin-pack, or spread on request) and reserves on the chosen
//! one in its one ledger. A placed attempt waits in its node's list until that agent's next
//! poll takes it, with `KILN_NODE`, `KILN_HOST_IP`, `KILN_HOSTNAME` and `KILN_PORT_<NAME>` in
//! its env. An attempt that fits nowhere stays queued and [`Dispatch::waiting`] says why, node
//! by node. Reservations are given back when the attempt ends, is canceled or lost.
//!
//! Invariants: an attempt is queued, placed on one node, or in one lease, never two of these;
//! a lease is known to exactly one agent session, or (after a restart, until its node's agent
//! registers) to none while it awaits adoption; every lost lease is reported exactly once
//! (by [`Dispatch::reap`], [`Dispatch::register`] or [`Dispatch::finish`]); a node's
//! `running` counts its placed and leased attempts (adopted or awaiting adoption too), and
//! the scheduler holds a reservation for exactly those.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_api::agent::{
    AgentInfo, ConfigUpdate, ImagesReport, LEASE_TTL_MS, Lease, LeaseRequest, LeaseResponse,
    PrepullOrder, PullAuth, RegisterAgent,
};
use kiln_api::pool::JobPlacement;
use kiln_api::pool::{NodeInfo, Offer, QuotaUsage};
use kiln_api::pool::{PrepullNode, PrepullStatus};
use kiln_logs::Masker;
use kiln_store::{NodeRecord, ProjectId, RunId};
use kiln_workflow::plan::JobId;
use tokio::sync::Notify;

use crate::coord::RunTx;
use crate::pool::{Node, NodeFacts, NodeState, group_reasons};

/// Longest lease poll the server holds open.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the server keeps about one task (a job attempt or a service instance) while it is
/// queued, placed or leased.
#[derive(Debug)]
pub struct TaskCtx {
    /// Project (caches and quotas are per project).
    pub project: ProjectId,
    /// Masks the project's secrets in the task's log lines.
    pub masker: Arc<Masker>,
    /// When the task was queued.
    pub queued_at: Instant,
    /// Whose task it is, and where its end is told.
    pub owner: Owner,
}

/// Whose task a lease carries.
#[derive(Debug)]
pub enum Owner {
    /// An attempt of a job of a run.
    Attempt(AttemptCtx),
    /// An instance of a service.
    Instance(InstanceCtx),
}

/// A job attempt's side of a task.
#[derive(Debug)]
pub struct AttemptCtx {
    /// Run.
    pub run: RunId,
    /// Job.
    pub job: JobId,
    /// Index of the job in the plan (log keys use it).
    pub job_index: usize,
    /// Attempt.
    pub attempt: u32,
    /// The run's actor.
    pub actor: RunTx,
    /// `cache:` of the job, rendered (checked against the agent's cache requests).
    pub cache_prefix: Option<String>,
    /// The index, when the attempt is one of an index of an array job (`attempt` is then
    /// the index's).
    pub index: Option<u32>,
}

impl AttemptCtx {
    /// The attempt's log: the job attempt's, or the index attempt's.
    pub fn log_key(&self) -> kiln_logs::LogKey {
        match self.index {
            Some(i) => crate::coord::index_log_key(&self.run, self.job_index, i, self.attempt),
            None => crate::coord::job_log_key(&self.run, self.job_index, self.attempt),
        }
    }

    /// How its lines are named in the run's log: the job, or `JOB[INDEX]`.
    pub fn name(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.job),
            None => self.job.to_string(),
        }
    }
}

/// A service instance's side of a task.
#[derive(Debug)]
pub struct InstanceCtx {
    /// The service.
    pub service: kiln_store::ServiceId,
    /// The instance's id.
    pub instance: String,
    /// The service's actor.
    pub actor: crate::services::ServiceTx,
    /// Lines of its log that could not be stored since the last one that could (a service
    /// is not stopped for that, unlike a job: its log says which lines are missing).
    pub unstored: std::sync::atomic::AtomicU64,
}

impl TaskCtx {
    /// The job attempt, when the task is one.
    pub fn attempt(&self) -> Option<&AttemptCtx> {
        match &self.owner {
            Owner::Attempt(a) => Some(a),
            Owner::Instance(_) => None,
        }
    }

    /// The service instance, when the task is one.
    pub fn instance(&self) -> Option<&InstanceCtx> {
        match &self.owner {
            Owner::Instance(i) => Some(i),
            Owner::Attempt(_) => None,
        }
    }

    /// The task's key: the scheduler's task id, unique among live tasks.
    pub fn key(&self) -> String {
        match &self.owner {
            Owner::Attempt(a) => match a.index {
                Some(i) => index_key(&a.run, &a.job, i, a.attempt),
                None => attempt_key(&a.run, &a.job, a.attempt),
            },
            Owner::Instance(i) => instance_key(&i.service, &i.instance),
        }
    }

    /// Tells the owner that the task ended: the run's actor (see
    /// [`crate::coord::attempt_exited`]) or the service's.
    pub fn exited(&self, outcome: kiln_engine::Outcome) {
        match &self.owner {
            Owner::Attempt(a) => match a.index {
                Some(index) => crate::coord::index_exited(
                    &a.actor,
                    a.job.clone(),
                    index,
                    a.attempt,
                    outcome,
                    None,
                ),
                None => crate::coord::attempt_exited(&a.actor, a.job.clone(), a.attempt, outcome),
            },
            Owner::Instance(i) => crate::services::instance_ended(i, outcome, false),
        }
    }

    /// Tells the owner that the agent of its node took the task back after a server restart
    /// (only instances are adopted).
    pub fn adopted(&self) {
        if let Owner::Instance(i) = &self.owner {
            crate::services::instance_adopted(i);
        }
    }

    /// Tells the owner that the task was lost with its agent (`why` says how): an attempt
    /// fails with that error, an instance is `lost` and replaced at once.
    pub fn lost(&self, why: &str) {
        match &self.owner {
            Owner::Attempt(_) => self.exited(kiln_engine::Outcome::Error(why.to_string())),
            Owner::Instance(i) => {
                crate::services::instance_ended(
                    i,
                    kiln_engine::Outcome::Error(why.to_string()),
                    true,
                );
            }
        }
    }
}

/// The [`TaskCtx::key`] of attempt `attempt` of `job` of `run`.
pub fn attempt_key(run: &RunId, job: &JobId, attempt: u32) -> String {
    format!("{run}/{job}/{attempt}")
}

/// The [`TaskCtx::key`] of attempt `attempt` of index `index` of array job `job` of `run`.
pub fn index_key(run: &RunId, job: &JobId, index: u32, attempt: u32) -> String {
    format!("{run}/{job}[{index}]/{attempt}")
}

/// The [`TaskCtx::key`] of instance `instance` of `service`.
pub fn instance_key(service: &kiln_store::ServiceId, instance: &str) -> String {
    format!("svc/{service}/{instance}")
}

/// An attempt waiting for an agent.
#[derive(Debug)]
pub struct Queued {
    /// The lease to hand out (its `id` is set when leased).
    pub lease: Lease,
    /// Server-side context.
    pub ctx: Arc<TaskCtx>,
}

/// A queued attempt with what it asks of a node.
#[derive(Debug)]
struct Waiting {
    q: Queued,
    ask: kiln_scheduler::Ask,
    /// Where the scheduler put it, once placed (its env goes into the lease at hand-out).
    placement: Option<kiln_scheduler::Placement>,
}

/// The host ports a placement holds.
fn host_ports(p: Option<&kiln_scheduler::Placement>) -> Vec<u16> {
    p.map(|p| p.ports.iter().map(|a| a.host).collect()).unwrap_or_default()
}

/// A task found running after a restart, for its node's agent to take back
/// ([`Dispatch::adopt`]).
#[derive(Debug)]
pub struct Adoption {
    /// The lease as it was handed out (its `id` is the one the agent holds).
    pub lease: Lease,
    /// Server-side context.
    pub ctx: Arc<TaskCtx>,
    /// The node it runs on.
    pub node: String,
    /// The host ports it holds, by port name.
    pub ports: BTreeMap<String, u16>,
    /// It was being stopped: its agent is told to cancel it once it is back.
    pub cancel: bool,
}

/// What [`Dispatch::register`] did with an agent's leases.
#[derive(Debug)]
pub struct Registered {
    /// The new session.
    pub info: AgentInfo,
    /// Leases that ended with the registration, each with why: those of the agent's old
    /// session it no longer holds, and those awaiting adoption on its node it does not list.
    pub lost: Vec<(Arc<TaskCtx>, String)>,
    /// Leases awaiting adoption on its node that it listed as held: now its session's.
    pub adopted: Vec<Arc<TaskCtx>>,
}

#[derive(Debug)]
struct Leased {
    ctx: Arc<TaskCtx>,
    /// The agent session that holds it; `None` while it awaits adoption after a restart.
    agent: Option<String>,
    node: String,
    task: kiln_scheduler::TaskId,
    /// Where it was placed, with the host ports it holds (reported by the API while it runs).
    placement: Option<kiln_scheduler::Placement>,
    renewed: Instant,
    cancel: bool,
    /// A config release for its instance, for its agent's next poll (the newest wins).
    config: Option<ConfigUpdate>,
    /// Why its attempt waits on the agent before it starts (the agent's latest `waiting`
    /// event: a pod no node takes); cleared by `started`.
    waiting: Option<String>,
}

#[derive(Debug)]
struct Session {
    info: AgentInfo,
    /// Who registered it ([`crate::auth::Caller::agent_owner`]): only they drive it and its
    /// leases.
    owner: String,
    notify: Arc<Notify>,
    seen: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Attempts not placed yet.
    queue: VecDeque<Waiting>,
    /// Attempts placed on a node, waiting for its agent's next poll, by node.
    placed: HashMap<String, VecDeque<Waiting>>,
    leases: HashMap<String, Leased>,
    agents: HashMap<String, Session>,
    /// Nodes by agent name.
    nodes: BTreeMap<String, Node>,
    /// The placement snapshot and its reservation ledger.
    sched: kiln_scheduler::Pool,
    /// Per-project quotas, by project name.
    quotas: BTreeMap<String, kiln_scheduler::Quota>,
    /// Prepulls, by id (the last [`PREPULLS_KEPT`]).
    prepulls: BTreeMap<String, Prepull>,
    /// Prepull orders for each node's agent's next poll, by node.
    orders: HashMap<String, Vec<PrepullOrder>>,
}

/// Prepulls kept for `GET /api/v1/nodes/prepull/{id}`; older ones are forgotten.
const PREPULLS_KEPT: usize = 100;

/// A prepull: an image ordered onto some nodes.
#[derive(Debug)]
struct Prepull {
    image: String,
    started_at: chrono::DateTime<Utc>,
    /// By node name: the session the order went to and what became of it.
    nodes: BTreeMap<String, (Option<String>, PrepullNode)>,
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

/// What [`Dispatch::cancel`] found.
#[derive(Debug)]
pub enum Canceled {
    /// The attempt was still queued (or placed, not yet taken) and is dropped: report it
    /// canceled yourself.
    Dequeued(Arc<TaskCtx>),
    /// An agent runs it and was told to kill it; it will report `exited`.
    Signalled,
    /// Not known here (already ended, or lost).
    Unknown,
}

/// The node attribute that names a node's group in usage records.
pub const USAGE_GROUP_ATTRIBUTE: &str = "group";

/// What a lease holds on its node (usage accounting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The node.
    pub node: String,
    /// Its `group` attribute (`""` without one).
    pub node_group: String,
    /// CPU, memory and disk reserved there.
    pub resources: kiln_scheduler::Resources,
}

/// The scheduler's task id of a task.
fn task_id(ctx: &TaskCtx) -> kiln_scheduler::TaskId {
    kiln_scheduler::TaskId(ctx.key())
}

/// The scheduler's request of a queued task; UNIQUE, GROUP_BY and MAX_PER count the
/// instances of one job of one run together (matrix instances included), and the instances
/// of one service together.
fn ask_of(lease: &Lease, ctx: &TaskCtx) -> Result<kiln_scheduler::Ask, String> {
    let job = &lease.start.job;
    let id = job.id.to_string();
    let base = id.split('[').next().unwrap_or(&id);
    let group = match &ctx.owner {
        Owner::Attempt(a) => format!("{}/{base}", a.run),
        Owner::Instance(i) => format!("svc/{}", i.service),
    };
    let task = task_id(ctx);
    let mut ask = job
        .ask(&task.0, &group, &lease.project, kiln_scheduler::Resources::default())
        .map_err(|e| format!("job `{id}`: {e}"))?;
    // ImageLocality: nodes holding the job's image score higher.
    ask.image =
        job.image.as_deref().filter(|i| !i.trim().is_empty()).map(kiln_scheduler::image_key);
    Ok(ask)
}

/// Keeps the scheduler's copy of `name` in step with the server's node.
fn sync_node(st: &mut State, name: &str) {
    if let Some(n) = st.nodes.get(name) {
        let node = n.sched_node();
        st.sched.upsert_node(node);
    }
}

/// Gives the reservation of `task` on `node` back.
fn unreserve(st: &mut State, node: &str, task: &kiln_scheduler::TaskId, ports: &[u16]) {
    st.sched.release(task);
    if let Some(n) = st.nodes.get_mut(node) {
        n.running = n.running.saturating_sub(1);
        for p in ports {
            n.ports_used.remove(p);
        }
    }
}

/// One placement pass over the whole queue (`Pool::place_batch`: priorities, fair share
/// between projects, quotas); wakes the agents that got work.
fn place_queued(st: &mut State) {
    if st.queue.is_empty() {
        return;
    }
    let batch = {
        let asks: Vec<&kiln_scheduler::Ask> = st.queue.iter().map(|w| &w.ask).collect();
        st.sched.place_batch(&asks, &st.quotas)
    };
    if batch.placed.is_empty() {
        return;
    }
    // Out of the queue, back to front (placed attempts are mostly near its front, where a
    // removal is cheap); then into their nodes' lists in placement order.
    let mut at: Vec<usize> = batch.placed.iter().map(|(i, _)| *i).collect();
    at.sort_unstable();
    let mut taken: HashMap<usize, Waiting> = HashMap::new();
    for i in at.into_iter().rev() {
        if let Some(w) = st.queue.remove(i) {
            taken.insert(i, w);
        }
    }
    let mut woken: HashSet<String> = HashSet::new();
    for (i, placement) in batch.placed {
        let Some(mut w) = taken.remove(&i) else { continue };
        let node = placement.node.0.clone();
        if let Some(n) = st.nodes.get_mut(&node) {
            n.running += 1;
            n.ports_used.extend(host_ports(Some(&placement)));
        }
        w.placement = Some(placement);
        st.placed.entry(node.clone()).or_default().push_back(w);
        woken.insert(node);
    }
    for node in woken {
        let session = st.nodes.get(&node).and_then(|n| n.session.clone());
        if let Some(s) = session.and_then(|id| st.agents.get(&id)) {
            s.notify.notify_one();
        }
    }
}

/// Takes every attempt placed on `node` off it and queues it again (its agent left or was
/// lost before taking them).
fn unplace_node(st: &mut State, node: &str) {
    let Some(list) = st.placed.remove(node) else { return };
    for mut w in list.into_iter().rev() {
        let ports = host_ports(w.placement.take().as_ref());
        unreserve(st, node, &task_id(&w.q.ctx), &ports);
        st.queue.push_front(w);
    }
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

    /// Takes an operator's change of a node (its stored record after the change); work may
    /// now be placed there, or no longer.
    pub fn node_changed(&self, record: &NodeRecord) {
        let mut st = self.lock();
        let fresh = Node::from_record(record);
        match st.nodes.get_mut(&record.name) {
            Some(n) => {
                n.operator = fresh.operator;
                n.disabled = fresh.disabled;
            }
            None => {
                st.nodes.insert(record.name.clone(), fresh);
            }
        }
        if st.nodes.get(&record.name).is_some_and(|n| n.state == NodeState::Ready) {
            sync_node(&mut st, &record.name);
            place_queued(&mut st);
        }
    }

    /// Sets (`Some`) or removes (`None`) the quota of `project`; what now fits is placed.
    pub fn set_quota(&self, project: &str, quota: Option<kiln_scheduler::Quota>) {
        let mut st = self.lock();
        match quota {
            Some(q) => st.quotas.insert(project.to_string(), q),
            None => st.quotas.remove(project),
        };
        place_queued(&mut st);
    }

    /// What each project with work on the pool holds and has waiting, by project name.
    pub fn project_usage(&self) -> BTreeMap<String, QuotaUsage> {
        let st = self.lock();
        let mut out: BTreeMap<String, QuotaUsage> = st
            .sched
            .projects()
            .map(|(p, u)| {
                let usage = QuotaUsage {
                    cpu_millis: u.resources.cpu_millis,
                    memory_bytes: u.resources.memory_bytes,
                    jobs: u.jobs,
                    waiting: 0,
                };
                (p.to_string(), usage)
            })
            .collect();
        for w in &st.queue {
            out.entry(w.ask.project.clone()).or_default().waiting += 1;
        }
        out
    }

    /// Forgets a node whose agent is not connected and that holds no lease (one awaiting
    /// adoption included); `false` if it is connected, holds one (or is unknown).
    pub fn forget_node(&self, name: &str) -> bool {
        let mut st = self.lock();
        if st.leases.values().any(|l| l.node == name) {
            return false;
        }
        match st.nodes.get(name) {
            Some(n) if n.state != NodeState::Ready => {
                st.nodes.remove(name);
                st.sched.remove_node(&kiln_scheduler::NodeId(name.to_string()));
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

    /// The IPs (sorted, once each) of the enabled nodes, connected or not, on which every
    /// node test of at least one of `constraints` holds (group tests such as UNIQUE hold
    /// anywhere here): the machines a run's jobs may run on. Empty `constraints`: none.
    pub fn node_ips_matching(&self, constraints: &[kiln_scheduler::Constraints]) -> Vec<String> {
        let st = self.lock();
        let mut ips: Vec<String> = st
            .nodes
            .values()
            .filter(|n| !n.disabled)
            .filter(|n| {
                let node = n.sched_node();
                constraints.iter().any(|c| {
                    c.groups().iter().all(|g| {
                        g.iter().any(|p| p.matches_value(node.attribute(&p.attribute).as_ref()))
                    })
                })
            })
            .map(|n| n.facts.ip.clone())
            .filter(|ip| !ip.is_empty())
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// The free capacity of every connected, enabled node, by name.
    pub fn offers(&self) -> Vec<Offer> {
        let st = self.lock();
        let free: HashMap<String, kiln_scheduler::Resources> =
            st.sched.nodes().map(|u| (u.node.id.0.clone(), u.free)).collect();
        st.nodes
            .values()
            .filter(|n| n.state == NodeState::Ready && !n.disabled)
            .enumerate()
            .map(|(i, n)| {
                let f = free.get(&n.name).copied().unwrap_or_default();
                let free = kiln_api::pool::Resources {
                    cpu_millis: f.cpu_millis,
                    memory_bytes: f.memory_bytes,
                    disk_bytes: f.disk_bytes,
                };
                n.offer(i, free)
            })
            .collect()
    }

    /// Why the queued attempt of `job` of `run` waits for a node, node by node; `None` if none
    /// is queued.
    pub fn waiting(&self, run: &RunId, job: &JobId) -> Option<String> {
        let same = |c: &TaskCtx| c.attempt().is_some_and(|a| &a.run == run && &a.job == job);
        self.waiting_where(same)
    }

    /// Why the queued task whose [`TaskCtx::key`] is `key` (a service instance's
    /// `svc/<service>/<instance>`) waits for a node; `None` if it is not queued.
    pub fn task_waiting(&self, key: &str) -> Option<String> {
        self.waiting_where(|c| c.key() == key)
    }

    fn waiting_where(&self, same: impl Fn(&TaskCtx) -> bool) -> Option<String> {
        let st = self.lock();
        // Leased, not started: what its agent said (its engine's scheduler has no room).
        if let Some((node, why)) = st
            .leases
            .values()
            .filter(|l| same(&l.ctx))
            .find_map(|l| Some((&l.node, l.waiting.as_ref()?)))
        {
            return Some(format!("placed on {node}, not started: {why}"));
        }
        let w = st.queue.iter().find(|w| same(&w.q.ctx))?;
        if let Some(q) = kiln_scheduler::check_quota(&st.sched, &st.quotas, &w.ask) {
            return Some(q.to_string());
        }
        let reasons = st.nodes.values().map(|n| match n.gate() {
            Err(why) => why,
            Ok(()) => match st.sched.why_not(&w.ask, &kiln_scheduler::NodeId(n.name.clone())) {
                Some(reason) => reason.to_string(),
                None => "fits; placed at the next change".to_string(),
            },
        });
        Some(group_reasons(reasons))
    }

    /// Where the latest attempt of `job` of `run` is placed or runs; `None` while it is
    /// queued, or once it ended.
    pub fn placement(&self, run: &RunId, job: &JobId) -> Option<JobPlacement> {
        let st = self.lock();
        let attempt_of =
            |c: &TaskCtx| c.attempt().filter(|a| &a.run == run && &a.job == job).map(|a| a.attempt);
        let leased = st.leases.values().filter_map(|l| Some((attempt_of(&l.ctx)?, &l.placement)));
        let placed = st
            .placed
            .values()
            .flatten()
            .filter_map(|w| Some((attempt_of(&w.q.ctx)?, &w.placement)));
        let (_, p) = leased.chain(placed).max_by_key(|(attempt, _)| *attempt)?;
        p.as_ref().map(job_placement)
    }

    /// Queues an attempt and places what fits. An attempt whose placement request cannot be
    /// built (a constraint the scheduler refuses) is not queued: its context comes back with
    /// the reason.
    pub fn enqueue(&self, task: Queued) -> Result<(), (Arc<TaskCtx>, String)> {
        let ask = match ask_of(&task.lease, &task.ctx) {
            Ok(a) => a,
            Err(why) => return Err((task.ctx, why)),
        };
        let mut st = self.lock();
        st.queue.push_back(Waiting { q: task, ask, placement: None });
        place_queued(&mut st);
        Ok(())
    }

    /// Queues many tasks and places what fits in one pass (an array's indexes); those whose
    /// placement request cannot be built come back with the reason.
    pub fn enqueue_many(&self, tasks: Vec<Queued>) -> Vec<(Arc<TaskCtx>, String)> {
        let mut refused = Vec::new();
        let mut ready = Vec::with_capacity(tasks.len());
        for task in tasks {
            match ask_of(&task.lease, &task.ctx) {
                Ok(ask) => ready.push(Waiting { q: task, ask, placement: None }),
                Err(why) => refused.push((task.ctx, why)),
            }
        }
        if !ready.is_empty() {
            let mut st = self.lock();
            st.queue.extend(ready);
            place_queued(&mut st);
        }
        refused
    }

    /// Cancels every task whose [`TaskCtx::key`] is in `keys`, in one pass over the queue,
    /// the placed tasks and the leases (an array's indexes when its run stops): the
    /// contexts of those taken off the queue or a node (nobody will report them), and the
    /// keys of the leased ones, told to their agents (which report them).
    pub fn cancel_many(&self, keys: &HashSet<String>) -> (Vec<Arc<TaskCtx>>, HashSet<String>) {
        let mut st = self.lock();
        let mut out = Vec::new();
        let queue = std::mem::take(&mut st.queue);
        for w in queue {
            if keys.contains(&w.q.ctx.key()) {
                out.push(w.q.ctx);
            } else {
                st.queue.push_back(w);
            }
        }
        let nodes: Vec<String> = st.placed.keys().cloned().collect();
        let mut freed = false;
        for node in nodes {
            let list = st.placed.remove(&node).unwrap_or_default();
            let mut kept = VecDeque::with_capacity(list.len());
            for mut w in list {
                if keys.contains(&w.q.ctx.key()) {
                    let ports = host_ports(w.placement.take().as_ref());
                    unreserve(&mut st, &node, &task_id(&w.q.ctx), &ports);
                    out.push(w.q.ctx);
                    freed = true;
                } else {
                    kept.push_back(w);
                }
            }
            if !kept.is_empty() {
                st.placed.insert(node, kept);
            }
        }
        let mut agents = HashSet::new();
        let mut leased = HashSet::new();
        for l in st.leases.values_mut() {
            let key = l.ctx.key();
            if keys.contains(&key) {
                l.cancel = true;
                agents.extend(l.agent.clone());
                leased.insert(key);
            }
        }
        for a in agents {
            if let Some(s) = st.agents.get(&a) {
                s.notify.notify_one();
            }
        }
        if freed {
            place_queued(&mut st);
        }
        (out, leased)
    }

    /// Cancels the attempt `(run, job, attempt)` wherever it is.
    pub fn cancel(&self, run: &RunId, job: &JobId, attempt: u32) -> Canceled {
        self.cancel_task(&attempt_key(run, job, attempt))
    }

    /// Cancels the task whose [`TaskCtx::key`] is `key` wherever it is.
    pub fn cancel_task(&self, key: &str) -> Canceled {
        let mut st = self.lock();
        let same = |c: &TaskCtx| c.key() == key;
        if let Some(pos) = st.queue.iter().position(|w| same(&w.q.ctx)) {
            let w = st.queue.remove(pos).expect("position is in range");
            return Canceled::Dequeued(w.q.ctx);
        }
        let placed = st.placed.iter().find_map(|(node, list)| {
            list.iter().position(|w| same(&w.q.ctx)).map(|pos| (node.clone(), pos))
        });
        if let Some((node, pos)) = placed {
            let w =
                st.placed.get_mut(&node).and_then(|l| l.remove(pos)).expect("position is in range");
            let ports = host_ports(w.placement.as_ref());
            unreserve(&mut st, &node, &task_id(&w.q.ctx), &ports);
            place_queued(&mut st);
            return Canceled::Dequeued(w.q.ctx);
        }
        let mut found = None;
        for l in st.leases.values_mut() {
            if same(&l.ctx) {
                l.cancel = true;
                found = Some(l.agent.clone());
            }
        }
        match found {
            // Awaiting adoption: its agent hears of the cancel once it is back.
            Some(agent) => {
                if let Some(s) = agent.and_then(|a| st.agents.get(&a)) {
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
    /// lost. So are the leases awaiting adoption on its node: those it lists are adopted
    /// into the new session, the others are lost (it no longer runs them).
    pub fn register(&self, req: &RegisterAgent, owner: &str) -> Registered {
        let mut st = self.lock();
        let old: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, s)| s.info.name == req.name)
            .map(|(k, _)| k.clone())
            .collect();
        let mut lost = Vec::new();
        let mut kept = Vec::new();
        let mut adopted = Vec::new();
        for id in old {
            st.agents.remove(&id);
            let ids: Vec<String> = st
                .leases
                .iter()
                .filter(|(_, l)| l.agent.as_deref() == Some(id.as_str()))
                .map(|(k, _)| k.clone())
                .collect();
            for lease in ids {
                if req.held.contains(&lease) {
                    kept.push(lease);
                } else if let Some(l) = st.leases.remove(&lease) {
                    release(&mut st, &l);
                    let why = format!(
                        "agent lost: `{}` registered again, so its old session ended",
                        req.name
                    );
                    lost.push((l.ctx, why));
                }
            }
        }
        let waiting: Vec<String> = st
            .leases
            .iter()
            .filter(|(_, l)| l.agent.is_none() && l.node == req.name)
            .map(|(k, _)| k.clone())
            .collect();
        for lease in waiting {
            if req.held.contains(&lease) {
                if let Some(l) = st.leases.get(&lease) {
                    adopted.push(l.ctx.clone());
                }
                kept.push(lease);
            } else if let Some(l) = st.leases.remove(&lease) {
                release(&mut st, &l);
                let why = format!(
                    "agent lost: `{}` came back after the server restarted without it",
                    req.name
                );
                lost.push((l.ctx, why));
            }
        }
        let info = AgentInfo {
            id: uuid::Uuid::now_v7().simple().to_string(),
            name: req.name.clone(),
            executor: req.executor.clone(),
            capacity: req.capacity.max(1),
            running: 0,
            connected_at: Utc::now(),
            protocol: kiln_api::agent::PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        st.agents.insert(
            info.id.clone(),
            Session {
                info: info.clone(),
                owner: owner.to_string(),
                notify: Arc::new(Notify::new()),
                seen: Instant::now(),
            },
        );
        let now = Instant::now();
        for lease in kept {
            if let Some(l) = st.leases.get_mut(&lease) {
                l.agent = Some(info.id.clone());
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
            running: 0,
            ports_used: Default::default(),
            images: None,
        });
        node.facts = NodeFacts::of(req);
        node.images = req.images.clone();
        node.state = NodeState::Ready;
        node.session = Some(info.id.clone());
        node.last_seen = Some(Utc::now());
        sync_node(&mut st, &req.name);
        place_queued(&mut st);
        Registered { info, lost, adopted }
    }

    /// Takes back a task found running after a restart: its lease (with the id its agent
    /// holds) awaits adoption on its node, its resources and host ports held in the node's
    /// ledger, until the node's agent registers listing it ([`Dispatch::register`]) or the
    /// agent-lost window passes ([`Dispatch::reap`]). Refused, with why, when the node is
    /// unknown or the task no longer fits there (the ledger never overcommits).
    pub fn adopt(&self, a: Adoption) -> Result<(), (Arc<TaskCtx>, String)> {
        let ask = match ask_of(&a.lease, &a.ctx) {
            Ok(ask) => ask,
            Err(why) => return Err((a.ctx, why)),
        };
        let mut st = self.lock();
        let Some(node) = st.nodes.get(&a.node) else {
            return Err((a.ctx, format!("its node `{}` is not known", a.node)));
        };
        let (hostname, ip) = (node.facts.hostname.clone(), node.facts.ip.clone());
        let mut ports = Vec::new();
        for p in &ask.ports {
            let Some(&host) = a.ports.get(&p.name) else {
                return Err((a.ctx, format!("its host port `{}` is not known", p.name)));
            };
            ports.push(kiln_scheduler::AssignedPort {
                name: p.name.clone(),
                host,
                container: p.container.unwrap_or(host),
            });
        }
        let hosts: Vec<u16> = ports.iter().map(|p| p.host).collect();
        // The scheduler learns of the node (disabled while its agent is away) to hold it.
        sync_node(&mut st, &a.node);
        let node_id = kiln_scheduler::NodeId(a.node.clone());
        if let Err(e) = st.sched.hold(&ask, &node_id, &hosts) {
            return Err((a.ctx, e.to_string()));
        }
        if let Some(n) = st.nodes.get_mut(&a.node) {
            n.running += 1;
            n.ports_used.extend(hosts.iter().copied());
        }
        let placement = kiln_scheduler::Placement {
            task: ask.task.clone(),
            node: node_id,
            hostname,
            ip,
            node_version: 0,
            resources: ask.resources,
            ports,
            network: ask.network,
        };
        st.leases.insert(
            a.lease.id.clone(),
            Leased {
                ctx: a.ctx,
                agent: None,
                node: a.node,
                task: ask.task,
                placement: Some(placement),
                renewed: Instant::now(),
                cancel: a.cancel,
                config: None,
                waiting: None,
            },
        );
        Ok(())
    }

    /// Hands a config release to the instance task whose [`TaskCtx::key`] is `key`: a task
    /// still queued or placed gets it in its lease (it starts with it); a leased one gets it
    /// in its agent's next poll (replacing one not delivered yet), the agent woken. `false`
    /// when no such task is known here.
    pub fn update_config(&self, key: &str, update: ConfigUpdate) -> bool {
        let mut guard = self.lock();
        let st = &mut *guard;
        let same = |c: &TaskCtx| c.key() == key;
        let mut waiting = st.queue.iter_mut().chain(st.placed.values_mut().flatten());
        if let Some(w) = waiting.find(|w| same(&w.q.ctx)) {
            if let Some(c) = w.q.lease.instance.as_mut().and_then(|i| i.config.as_mut()) {
                c.release = update.release;
                c.digest = update.digest;
                c.files = update.files;
            }
            return true;
        }
        let Some((id, l)) = st.leases.iter_mut().find(|(_, l)| same(&l.ctx)) else {
            return false;
        };
        l.config = Some(ConfigUpdate { lease: id.clone(), ..update });
        let agent = l.agent.clone();
        if let Some(s) = agent.and_then(|a| st.agents.get(&a)) {
            s.notify.notify_one();
        }
        true
    }

    /// Whether the task whose [`TaskCtx::key`] is `key` holds a live lease (one awaiting
    /// adoption included).
    pub fn task_live(&self, key: &str) -> bool {
        self.lock().leases.values().any(|l| l.ctx.key() == key)
    }

    /// Connected agents with their current lease counts.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let st = self.lock();
        let mut out: Vec<AgentInfo> = st
            .agents
            .iter()
            .map(|(id, s)| {
                let running = st.leases.values().filter(|l| l.agent.as_deref() == Some(id)).count();
                AgentInfo { running: u32::try_from(running).unwrap_or(u32::MAX), ..s.info.clone() }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Attempts waiting for a node or for their node's agent to take them.
    pub fn queue_len(&self) -> usize {
        let st = self.lock();
        st.queue.len() + st.placed.values().map(VecDeque::len).sum::<usize>()
    }

    /// Leases held by agents.
    pub fn lease_count(&self) -> usize {
        self.lock().leases.len()
    }

    /// One lease poll of agent `agent`: renews `held`, then answers with cancels, unknown
    /// leases and the attempts placed on its node as soon as there are any, or empty after
    /// `wait_ms`. `None` when the agent session is unknown (re-register).
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
                        Some(l) if l.agent.as_deref() == Some(agent) => {
                            l.renewed = now;
                            if l.cancel {
                                resp.cancel.push(id.clone());
                            }
                            if let Some(update) = l.config.take() {
                                resp.config.push(update);
                            }
                        }
                        _ => resp.unknown.push(id.clone()),
                    }
                }
                let mut free = req.free;
                while free > 0 {
                    let Some(w) = st.placed.get_mut(&node_name).and_then(VecDeque::pop_front)
                    else {
                        break;
                    };
                    let mut lease = w.q.lease;
                    lease.id = uuid::Uuid::now_v7().simple().to_string();
                    if let Some(p) = &w.placement {
                        lease.env.extend(p.env());
                    }
                    st.leases.insert(
                        lease.id.clone(),
                        Leased {
                            placement: w.placement,
                            task: task_id(&w.q.ctx),
                            ctx: w.q.ctx,
                            agent: Some(agent.to_string()),
                            node: node_name.clone(),
                            renewed: now,
                            cancel: false,
                            config: None,
                            waiting: None,
                        },
                    );
                    resp.leases.push(lease);
                    free -= 1;
                }
                let current = st.nodes.get(&node_name).and_then(|n| n.session.as_deref());
                if current == Some(agent) {
                    resp.prepull = st.orders.remove(&node_name).unwrap_or_default();
                }
                // A wake-up with nothing for this agent still answers: something changed
                // (one of its leases ended, or work came while it had no free slot), and
                // the agent polls again with its current free slots.
                if woken
                    || !resp.leases.is_empty()
                    || !resp.cancel.is_empty()
                    || !resp.unknown.is_empty()
                    || !resp.config.is_empty()
                    || !resp.prepull.is_empty()
                    || now >= deadline
                {
                    return Some(resp);
                }
                notify
            };
            woken = tokio::time::timeout_at(deadline.into(), notify.notified()).await.is_ok();
        }
    }

    /// Takes an image report of agent session `agent`: its node's images (the scheduler's
    /// copy too, which changes no placement's version) and the prepull orders it finished.
    /// `false` when the session is unknown (re-register).
    pub fn report_images(&self, agent: &str, report: &ImagesReport) -> bool {
        let mut st = self.lock();
        let Some(session) = st.agents.get_mut(agent) else { return false };
        session.seen = Instant::now();
        let name = session.info.name.clone();
        if let Some(images) = &report.images
            && let Some(n) = st.nodes.get_mut(&name)
        {
            n.images = Some(images.clone());
            let keys = n.image_keys();
            st.sched.set_images(&kiln_scheduler::NodeId(name.clone()), keys);
        }
        for done in &report.prepulls {
            let Some(p) = st.prepulls.get_mut(&done.id) else { continue };
            if let Some((_, n)) = p.nodes.get_mut(&name) {
                n.state = if done.error.is_some() { "failed" } else { "pulled" }.to_string();
                n.detail = done.error.clone();
                n.millis = Some(done.millis);
            }
        }
        true
    }

    /// Orders `image` onto the nodes that `select` picks among the known ones (by name,
    /// with their scheduler view): each connected one whose executor holds images gets it in
    /// its agent's next poll (woken now), with `pull` as credentials; the others are listed
    /// as skipped, with why. `None` when no node is selected.
    pub fn prepull(
        &self,
        image: &str,
        select: impl Fn(&str, &kiln_scheduler::Node) -> bool,
        pull: Option<PullAuth>,
    ) -> Option<PrepullStatus> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut nodes = BTreeMap::new();
        for n in st.nodes.values() {
            if !select(&n.name, &n.sched_node()) {
                continue;
            }
            let skipped = |why: String| PrepullNode {
                node: n.name.clone(),
                state: "skipped".into(),
                detail: Some(why),
                millis: None,
            };
            let entry = if let Err(why) = n.gate() {
                (None, skipped(why))
            } else if n.images.is_none() {
                (None, skipped(format!("its {} executor holds no images", n.facts.executor)))
            } else {
                let order =
                    PrepullOrder { id: id.clone(), image: image.to_string(), pull: pull.clone() };
                st.orders.entry(n.name.clone()).or_default().push(order);
                if let Some(s) = n.session.as_ref().and_then(|s| st.agents.get(s)) {
                    s.notify.notify_one();
                }
                let pulling = PrepullNode {
                    node: n.name.clone(),
                    state: "pulling".into(),
                    detail: None,
                    millis: None,
                };
                (n.session.clone(), pulling)
            };
            nodes.insert(n.name.clone(), entry);
        }
        if nodes.is_empty() {
            return None;
        }
        let prepull = Prepull { image: image.to_string(), started_at: Utc::now(), nodes };
        st.prepulls.insert(id.clone(), prepull);
        while st.prepulls.len() > PREPULLS_KEPT {
            st.prepulls.pop_first();
        }
        drop(guard);
        self.prepull_status(&id)
    }

    /// How far prepull `id` got: a node still `pulling` whose agent session ended since is
    /// `failed` (its agent left before answering).
    pub fn prepull_status(&self, id: &str) -> Option<PrepullStatus> {
        let st = self.lock();
        let p = st.prepulls.get(id)?;
        let nodes: Vec<PrepullNode> = p
            .nodes
            .iter()
            .map(|(name, (session, n))| {
                let live = st.nodes.get(name).and_then(|x| x.session.as_ref()) == session.as_ref();
                if n.state == "pulling" && !live {
                    PrepullNode {
                        state: "failed".into(),
                        detail: Some("its agent left before the pull ended".into()),
                        ..n.clone()
                    }
                } else {
                    n.clone()
                }
            })
            .collect();
        Some(PrepullStatus {
            id: id.to_string(),
            image: p.image.clone(),
            started_at: p.started_at,
            done: nodes.iter().all(|n| n.state != "pulling"),
            nodes,
        })
    }

    /// Whether a live session of agent `name` belongs to someone other than `owner` (then
    /// `owner` may not register that name: it would end the session and take its leases).
    pub fn name_taken(&self, name: &str, owner: &str) -> bool {
        self.lock().agents.values().any(|s| s.info.name == name && s.owner != owner)
    }

    /// Who registered session `agent`, if it is live.
    pub fn session_owner(&self, agent: &str) -> Option<String> {
        self.lock().agents.get(agent).map(|s| s.owner.clone())
    }

    /// Whether lease `id` is live on a session of `owner` (and of session `agent`, if given).
    pub fn lease_owned(&self, id: &str, owner: &str, agent: Option<&str>) -> bool {
        let st = self.lock();
        let Some(session) = st.leases.get(id).and_then(|l| l.agent.as_deref()) else {
            return false;
        };
        agent.is_none_or(|a| a == session)
            && st.agents.get(session).is_some_and(|s| s.owner == owner)
    }

    /// Records why live lease `id` waits before its start (`None`: it started).
    pub fn lease_waiting(&self, id: &str, why: Option<String>) {
        if let Some(l) = self.lock().leases.get_mut(id) {
            l.waiting = why;
        }
    }

    /// The context of a live lease, and whether it is to be canceled.
    pub fn lease(&self, id: &str) -> Option<(Arc<TaskCtx>, bool)> {
        self.lock().leases.get(id).map(|l| (l.ctx.clone(), l.cancel))
    }

    /// Where a live lease runs: its node, and its placement (IP and host ports).
    pub fn lease_placement(&self, id: &str) -> Option<(String, Option<JobPlacement>)> {
        let st = self.lock();
        let l = st.leases.get(id)?;
        Some((l.node.clone(), l.placement.as_ref().map(job_placement)))
    }

    /// What a live lease holds for usage accounting: its node, the node's `group` attribute
    /// (`""` without one) and what the scheduler reserved there (zero for a lease adopted
    /// after a restart without a placement).
    pub fn lease_reserved(&self, id: &str) -> Option<Reserved> {
        let st = self.lock();
        let l = st.leases.get(id)?;
        let node_group = st
            .nodes
            .get(&l.node)
            .and_then(|n| n.sched_node().attribute(USAGE_GROUP_ATTRIBUTE))
            .map(|v| v.canonical())
            .unwrap_or_default();
        Some(Reserved {
            node: l.node.clone(),
            node_group,
            resources: l.placement.as_ref().map(|p| p.resources).unwrap_or_default(),
        })
    }

    /// Ends a lease (its attempt exited): its node's reservation is given back and what now
    /// fits is placed.
    pub fn finish(&self, id: &str) -> Option<Arc<TaskCtx>> {
        let mut st = self.lock();
        let l = st.leases.remove(id)?;
        release(&mut st, &l);
        if let Some(s) = l.agent.as_ref().and_then(|a| st.agents.get(a)) {
            s.notify.notify_one();
        }
        place_queued(&mut st);
        Some(l.ctx)
    }

    /// Drops agents silent for the `lost_after` of [`Dispatch::new`] (their nodes become
    /// `lost`, what was placed there is queued again) and leases not renewed that long
    /// (those awaiting adoption that no agent claimed too); returns the lost tasks, each
    /// with why.
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
                let why = match l.agent {
                    Some(_) => format!("agent lost: `{}` stopped renewing its lease", l.node),
                    None => format!(
                        "agent lost: `{}` did not come back within {} of the server's restart",
                        l.node,
                        crate::gc::short(ttl)
                    ),
                };
                lost.push((l.ctx, why));
            }
        }
        let silent: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, s)| now.duration_since(s.seen) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.end_session(&mut st, &id, NodeState::Lost);
        }
        place_queued(&mut st);
        lost
    }

    /// Ends the session `agent` (its agent said it stops): its node goes `down` and what was
    /// placed there but not taken is queued again; its leases stay until they end or expire.
    pub fn leave(&self, agent: &str) {
        let mut st = self.lock();
        self.end_session(&mut st, agent, NodeState::Down);
        place_queued(&mut st);
    }

    fn end_session(&self, st: &mut State, agent: &str, state: NodeState) {
        let Some(s) = st.agents.remove(agent) else { return };
        let name = s.info.name;
        let current = st.nodes.get(&name).is_some_and(|n| n.session.as_deref() == Some(agent));
        if !current {
            return;
        }
        if let Some(n) = st.nodes.get_mut(&name) {
            n.state = state;
            n.session = None;
        }
        unplace_node(st, &name);
        st.orders.remove(&name);
        sync_node(st, &name);
    }
}

/// The API's view of a placement.
fn job_placement(p: &kiln_scheduler::Placement) -> JobPlacement {
    JobPlacement {
        node: p.node.0.clone(),
        hostname: p.hostname.clone(),
        ip: p.ip.clone(),
        ports: p
            .ports
            .iter()
            .map(|a| kiln_api::pool::PlacedPort {
                name: a.name.clone(),
                host: a.host,
                container: a.container,
            })
            .collect(),
    }
}

/// Gives a lease's reservation back to its node.
fn release(st: &mut State, l: &Leased) {
    unreserve(st, &l.node, &l.task, &host_ports(l.placement.as_ref()));
}
