//! Hands job attempts to agents through leases.
//!
//! A started attempt waits in a FIFO queue until an agent's lease poll takes it; the lease then
//! lives until the agent reports `exited`, the server cancels it and the agent confirms, or the
//! agent stops renewing it for [`LEASE_TTL_MS`] (then the attempt fails with an error and the
//! job's retry policy decides). Everything here is in memory: after a restart every lease is
//! gone, and the coordinator fails or re-queues the attempts it finds unfinished.
//!
//! Invariants: an attempt is in the queue or in one lease, never both; a lease is known to
//! exactly one agent session; every lost lease is reported exactly once (by [`Dispatch::reap`],
//! [`Dispatch::register`] or [`Dispatch::finish`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_api::agent::{AgentInfo, LEASE_TTL_MS, Lease, LeaseRequest, LeaseResponse, RegisterAgent};
use kiln_logs::Masker;
use kiln_store::{ProjectId, RunId};
use kiln_workflow::plan::JobId;
use tokio::sync::Notify;

use crate::coord::RunTx;

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
}

/// The queue of attempts and the leases of connected agents.
#[derive(Debug, Default)]
pub struct Dispatch {
    state: Mutex<State>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Registers an agent session. A session of the same name is replaced; its leases are
    /// returned as lost.
    pub fn register(&self, req: &RegisterAgent) -> (AgentInfo, Vec<Arc<TaskCtx>>) {
        let mut st = self.lock();
        let old: Vec<String> = st
            .agents
            .iter()
            .filter(|(_, s)| s.info.name == req.name)
            .map(|(k, _)| k.clone())
            .collect();
        let mut lost = Vec::new();
        for id in old {
            st.agents.remove(&id);
            lost.extend(take_leases_of(&mut st, &id));
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
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        let mut woken = false;
        loop {
            let notify = {
                let mut st = self.lock();
                let now = Instant::now();
                let session = st.agents.get_mut(agent)?;
                session.seen = now;
                let notify = session.notify.clone();
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
                let mut free = req.free;
                while free > 0 {
                    let Some(mut q) = st.queue.pop_front() else { break };
                    q.lease.id = uuid::Uuid::now_v7().simple().to_string();
                    st.leases.insert(
                        q.lease.id.clone(),
                        Leased {
                            ctx: q.ctx,
                            agent: agent.to_string(),
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
        if let Some(s) = st.agents.get(&l.agent) {
            s.notify.notify_one();
        }
        Some(l.ctx)
    }

    /// Drops leases not renewed for [`LEASE_TTL_MS`] and agents silent that long; returns the
    /// lost attempts with the agent's name.
    pub fn reap(&self) -> Vec<(Arc<TaskCtx>, String)> {
        let ttl = Duration::from_millis(LEASE_TTL_MS);
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
                let name = st.agents.get(&l.agent).map_or(l.agent.clone(), |s| s.info.name.clone());
                lost.push((l.ctx, name));
            }
        }
        st.agents.retain(|_, s| now.duration_since(s.seen) <= ttl);
        lost
    }
}

fn take_leases_of(st: &mut State, agent: &str) -> Vec<Arc<TaskCtx>> {
    let ids: Vec<String> =
        st.leases.iter().filter(|(_, l)| l.agent == agent).map(|(k, _)| k.clone()).collect();
    ids.into_iter().filter_map(|id| st.leases.remove(&id)).map(|l| l.ctx).collect()
}
