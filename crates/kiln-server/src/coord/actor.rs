//! A run's actor: owns its [`kiln_engine::Run`], applies events in batches and stores each
//! batch in one transaction with the state and job records it produces, then carries out the
//! engine's commands (queue attempts on the dispatcher, cancel them, arm timers, finish).
//!
//! Invariant: an event reaches the engine only here, and is stored in the same transaction
//! as the state it produces, so replaying the stored events rebuilds the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use kiln_api::agent::Lease;
use kiln_engine::{
    ArrayProgress, Command, Event, IndexAttempt, JobState, JobStatus, Outcome, Run, RunState,
    StartJob,
};
use kiln_logs::{LogKey, Masker};
use kiln_store::{ApprovalDecision, JobRecord, ProjectId, Step};
use kiln_workflow::plan::{JobId, Plan};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::environments::EnvVars;

use super::arrays::{Clock, Feed, Gathered};
use super::env::{RunEnv, job_env};
use super::pools::{Admit, PoolCtx, PoolMsg, RunPools};
use super::server_jobs::JobTask;
use super::{
    Coord, LOST_ON_RESTART, MAX_BATCH, RunMsg, RunTx, Shared, attempt_exited, group_of,
    job_log_key, lock, run_log_key,
};
use crate::dispatch::{AttemptCtx, Canceled, Owner, Queued, TaskCtx};
use crate::error::{ApiErr, ApiResult};

/// Where the caller of an API event hears whether it was stored.
type Reply = oneshot::Sender<ApiResult<()>>;

/// Answers `Ok` to every held reply (their events are stored).
fn answer(held: &mut Vec<Reply>) {
    for r in held.drain(..) {
        let _ = r.send(Ok(()));
    }
}

/// When a job first started and when it ended.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub(super) struct Actor {
    sh: Arc<Shared>,
    coord: Coord,
    run: kiln_store::Run,
    project_id: ProjectId,
    plan: Arc<Plan>,
    engine: Run,
    /// Job statuses as last stored (None: never stored).
    persisted: Vec<Option<JobStatus>>,
    /// First start and end of each job.
    times: Vec<Span>,
    /// Run state as last stored.
    state: RunState,
    /// Values masked in every job's logs and outputs (each attempt adds its own token), the
    /// secrets of environments its jobs read included once read.
    masked: Vec<String>,
    /// Masks `masked` in every event before it is applied and stored (`apply`): the one door
    /// of a run's events, job records and reason into the store.
    masker: Arc<Masker>,
    env: BTreeMap<String, String>,
    /// Stages approved in the run this one retries, with who approved them.
    prior: HashMap<String, String>,
    tx: RunTx,
    /// When each running job started, for the duration histogram.
    /// What each job checks out first (`source:`), unless the job says `checkout: false`.
    checkout: Option<kiln_api::agent::Checkout>,
    /// The run's concurrency group (`""` without groups).
    group: String,
    started: HashMap<usize, Instant>,
    /// Per job, the attempt whose log was closed when it exited (0: none).
    closed: Vec<u32>,
    /// The run's service pools and the attempts waiting for them.
    pools: RunPools,
    /// The attempts of jobs the server carries out (`server_jobs.rs`), by job: the attempt
    /// and what cancels it.
    server_jobs: HashMap<JobId, (u32, CancellationToken)>,
    /// The variables of the environment each attempt runs in (`environment:`), once read.
    job_envs: HashMap<(JobId, u32), EnvVars>,
    /// The environment (`environment:`, rendered) of each attempt handed to the dispatcher,
    /// until it starts (usage records name it).
    attempt_envs: HashMap<(JobId, u32), String>,
    /// What attempts whose agents said they started hold, until their `JobStarted` is
    /// applied (`RunMsg::Started` comes just before it).
    reserved: HashMap<(JobId, u32), (crate::dispatch::Reserved, DateTime<Utc>)>,
    /// When each array index in flight started (its duration).
    clock: Clock,
    /// The progress of each array job as last stored, by job index.
    arrays_stored: HashMap<usize, ArrayProgress>,
    /// Index attempts on their way to the dispatcher.
    feed: Feed,
}

impl Actor {
    /// The actor of `run`, with its engine still to be started or replayed.
    pub(super) fn new(
        coord: Coord,
        run: kiln_store::Run,
        plan: Arc<Plan>,
        project_id: ProjectId,
        run_env: RunEnv,
        prior: HashMap<String, String>,
        tx: RunTx,
    ) -> Actor {
        let job_count = plan.jobs.len();
        let pools = RunPools::new(PoolCtx {
            services: coord.sh.services.clone(),
            dispatch: coord.sh.dispatch.clone(),
            store: coord.sh.store.clone(),
            run: run.clone(),
            tx: tx.clone(),
        });
        Actor {
            sh: coord.sh.clone(),
            coord,
            project_id,
            persisted: vec![None; job_count],
            times: vec![(None, None); job_count],
            state: run.state,
            masker: Arc::new(Masker::new(&run_env.masked)),
            masked: run_env.masked,
            env: run_env.env,
            prior,
            tx,
            started: HashMap::new(),
            checkout: run_env.checkout,
            group: group_of(&plan, &run),
            closed: vec![0; job_count],
            pools,
            server_jobs: HashMap::new(),
            job_envs: HashMap::new(),
            attempt_envs: HashMap::new(),
            reserved: HashMap::new(),
            clock: Clock::default(),
            arrays_stored: HashMap::new(),
            feed: Feed::default(),
            run,
            engine: Run::new(plan.clone(), BTreeMap::new()),
            plan,
        }
    }

    /// The run's id and its concurrency group (`""` without groups).
    pub(super) fn key(&self) -> (kiln_store::RunId, kiln_store::PipelineId, String) {
        (self.run.id, self.run.pipeline_id, self.group.clone())
    }

    /// Starts a fresh run (jobs reused from the run it retries first), stores its first
    /// step, and returns the engine's first commands.
    pub(super) async fn start(&mut self, mut engine: Run) -> ApiResult<Vec<Command>> {
        let stored = self.sh.store.events(&self.run.id).await?;
        for e in stored {
            if matches!(e.event, Event::JobReused { .. }) {
                engine.handle(e.event);
            }
        }
        let cmds = engine.start();
        self.engine = engine;
        let step = self.step(Vec::new());
        self.persist(step).await?;
        if !self.engine.state().is_final() {
            self.pools.start_run_pools(&self.plan);
            self.prepull();
        }
        Ok(cmds)
    }

    /// The workflow's `prepull:` images, ordered onto every node where at least one of its
    /// jobs may run (its node tests hold there), with the run's pull token for Kiln's
    /// registry. Fire and forget: a job on a node the pull has not reached pulls it itself.
    fn prepull(&self) {
        if self.plan.prepull.is_empty() {
            return;
        }
        let constraints: Vec<_> =
            self.plan.jobs.iter().filter_map(|j| j.scheduling.constraints().ok()).collect();
        let select = |_: &str, node: &kiln_scheduler::Node| {
            constraints.iter().any(|c| {
                c.groups().iter().all(|g| {
                    g.iter().any(|p| p.matches_value(node.attribute(&p.attribute).as_ref()))
                })
            })
        };
        let pull =
            self.sh.tasks.pull_auth(self.project_id, &format!("run {}", self.run.full_name()));
        for image in &self.plan.prepull {
            match self.sh.dispatch.prepull(image, select, pull.clone()) {
                Some(status) => tracing::info!(
                    "run {}: prepull of {image} onto {} node(s) ({})",
                    self.run.full_name(),
                    status.nodes.len(),
                    status.id
                ),
                None => tracing::info!(
                    "run {}: prepull of {image}: no node can run its jobs",
                    self.run.full_name()
                ),
            }
        }
    }

    /// Ends an attempt through the actor's own queue (stored with the next batch).
    fn exited(&self, job: JobId, attempt: u32, outcome: Outcome) {
        attempt_exited(&self.tx, job, attempt, outcome);
    }

    /// What changed since the last store: job records, and the run state with its reason.
    fn step(&mut self, events: Vec<Event>) -> Step {
        let now = Utc::now();
        let mut jobs = Vec::new();
        for (i, (id, status)) in self.engine.jobs().enumerate() {
            if self.persisted[i].as_ref() == Some(status) {
                continue;
            }
            let t = &mut self.times[i];
            if matches!(status.state, JobState::Running) && t.0.is_none() {
                t.0 = Some(now);
                self.started.insert(i, Instant::now());
            }
            if status.state.is_final() && t.1.is_none() {
                t.1 = Some(now);
                self.pools.job_ended(id);
                if let Some(at) = self.started.remove(&i) {
                    self.sh.metrics.job_finished(status.state.as_str(), at.elapsed());
                }
            }
            jobs.push(JobRecord {
                job: id.clone(),
                state: status.state,
                attempts: status.attempts,
                exit_code: status.exit_code,
                outputs: status.outputs.clone(),
                reason: status.reason.clone(),
                started_at: t.0,
                finished_at: t.1,
            });
            self.persisted[i] = Some(status.clone());
        }
        let mut arrays = Vec::new();
        for (i, job) in self.plan.jobs.iter().enumerate().filter(|(_, j)| j.array.is_some()) {
            let Some(current) = self.engine.array(&job.id) else { continue };
            if self.arrays_stored.get(&i) != Some(&current) {
                let api = crate::arrays::progress(&current);
                let progress = serde_json::to_string(&api).unwrap_or_default();
                arrays.push(kiln_store::ArrayRecord { job: job.id.clone(), progress });
                self.arrays_stored.insert(i, current);
            }
        }
        let state = self.engine.state();
        let state = (state != self.state).then(|| (state, self.reason(state)));
        Step { events, state, jobs, arrays, ..Step::default() }
    }

    fn reason(&self, state: RunState) -> Option<String> {
        if let Some(stop) = self.engine.stop_reason() {
            return Some(stop.to_string());
        }
        if state == RunState::Failure {
            for (id, st) in self.engine.jobs() {
                if matches!(st.state, JobState::Failure | JobState::Timeout) {
                    let why = st.reason.clone().unwrap_or_else(|| st.state.as_str().into());
                    return Some(format!("job `{id}` failed: {why}"));
                }
            }
        }
        None
    }

    /// The usage record an attempt opens as it starts: what its agent's lease holds
    /// (`RunMsg::Started`); `None` for an attempt that holds nothing on a node (a job the
    /// server carries out).
    fn usage_start(&mut self, job: &JobId, attempt: u32) -> Option<kiln_store::UsageStart> {
        let key = (job.clone(), attempt);
        let (reserved, at) = self.reserved.remove(&key)?;
        Some(kiln_store::UsageStart {
            job: job.clone(),
            attempt,
            project: self.project_id,
            pipeline: self.run.pipeline.clone(),
            environment: self.attempt_envs.remove(&key).unwrap_or_default(),
            node: reserved.node,
            node_group: reserved.node_group,
            cpu_millis: reserved.resources.cpu_millis,
            memory_bytes: reserved.resources.memory_bytes,
            disk_bytes: reserved.resources.disk_bytes,
            started_at: at,
        })
    }

    async fn persist(&mut self, step: Step) -> ApiResult<()> {
        if step.events.is_empty()
            && step.state.is_none()
            && step.jobs.is_empty()
            && step.usage_starts.is_empty()
            && step.usage_ends.is_empty()
            && step.arrays.is_empty()
        {
            return Ok(());
        }
        let new_state = step.state.as_ref().map(|(s, _)| *s);
        // A storage fault (full disk, read-only data directory, database away) passes: the
        // step is kept and stored once it does, so the run neither stalls for good nor is
        // rebuilt without what happened meanwhile.
        let mut wait = std::time::Duration::from_millis(100);
        loop {
            match self.sh.record(&self.run.id, &self.run.project, &step).await {
                Ok(_) => break,
                Err(e) if e.fault().is_some() && !self.sh.stopping.is_cancelled() => {
                    tracing::warn!(
                        "run {}: {e}; storing it again in {} ms",
                        self.run.full_name(),
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(s) = new_state {
            self.state = s;
            self.run.state = s;
        }
        Ok(())
    }

    /// Rebuilds the engine from stored events and decides what to do with attempts that
    /// were in flight when the server stopped.
    pub(super) async fn replay(
        &mut self,
        mut engine: Run,
        events: Vec<Event>,
    ) -> ApiResult<Vec<Command>> {
        let mut events = events.into_iter().peekable();
        while let Some(e) = events.next_if(|e| matches!(e, Event::JobReused { .. })) {
            engine.handle(e);
        }
        let mut starts: HashMap<JobId, StartJob> = HashMap::new();
        let mut note = |cmds: Vec<Command>| {
            for c in cmds {
                if let Command::StartJob(sj) = c {
                    starts.insert(sj.job.id.clone(), *sj);
                }
            }
        };
        note(engine.start());
        for e in events {
            note(engine.handle(e));
        }
        self.engine = engine;
        // What the store knows of each job, so only real changes are written.
        let stored = self.sh.store.jobs(&self.run.id).await?;
        for (i, (id, status)) in self.engine.jobs().enumerate() {
            if let Some(rec) = stored.iter().find(|r| &r.job == id) {
                self.times[i] = (rec.started_at, rec.finished_at);
                if rec.state == status.state && rec.attempts == status.attempts {
                    self.persisted[i] = Some(status.clone());
                }
            }
        }
        let mut cmds = Vec::new();
        let stopping = self.engine.stop_reason().is_some();
        let inflight: Vec<(JobId, JobState, u32)> = self
            .engine
            .jobs()
            .filter(|(_, s)| matches!(s.state, JobState::Queued | JobState::Running))
            .map(|(id, s)| (id.clone(), s.state, s.attempts))
            .collect();
        for (job, state, attempt) in inflight {
            if let Some((start, indexes)) = self.engine.array_in_flight(&job) {
                // The leases of its indexes died with the server: those that had not ended
                // (as stored) are handed out again, or end canceled if the run stops.
                if stopping {
                    for ia in indexes {
                        super::index_exited(
                            &self.tx,
                            job.clone(),
                            ia.index,
                            ia.attempt,
                            Outcome::Canceled,
                            None,
                        );
                    }
                } else if !indexes.is_empty() {
                    cmds.push(Command::StartIndexes { start: Box::new(start.clone()), indexes });
                }
                continue;
            }
            let on_server = self
                .plan
                .job_index(&job)
                .is_some_and(|i| self.plan.jobs[i].run.on_server().is_some());
            if on_server {
                // Its task starts again and finds what it started (runs under its key):
                // waiting resumes, or, if the run was stopping, what it started is canceled.
                match starts.remove(&job) {
                    Some(sj) if sj.attempt == attempt => {
                        cmds.push(Command::StartJob(Box::new(sj)));
                        if stopping {
                            cmds.push(Command::CancelJob { job, attempt });
                        }
                    }
                    _ => self.exited(job, attempt, Outcome::Error(LOST_ON_RESTART.into())),
                }
                continue;
            }
            match state {
                JobState::Queued if !stopping => match starts.remove(&job) {
                    Some(sj) if sj.attempt == attempt => cmds.push(Command::StartJob(Box::new(sj))),
                    _ => self.exited(job, attempt, Outcome::Error(LOST_ON_RESTART.into())),
                },
                JobState::Queued => self.exited(job, attempt, Outcome::Canceled),
                _ => self.exited(job, attempt, Outcome::Error(LOST_ON_RESTART.into())),
            }
        }
        if let (Some(timeout), Some(started)) = (self.plan.timeout, self.run.started_at)
            && !self.engine.state().is_final()
        {
            let elapsed = (Utc::now() - started).to_std().unwrap_or_default();
            cmds.push(Command::ArmTimer {
                timer: kiln_engine::Timer::RunTimeout,
                after: timeout.saturating_sub(elapsed),
            });
        }
        let step = self.step(Vec::new());
        self.persist(step).await?;
        if self.engine.state().is_final() {
            cmds.push(Command::Finish(self.engine.state()));
        } else {
            self.pools.start_run_pools(&self.plan);
        }
        Ok(cmds)
    }

    fn self_send(&self, event: Event) {
        let _ = self.tx.send(RunMsg::Event { event, reply: None });
    }

    pub(super) async fn main(
        mut self,
        mut rx: mpsc::UnboundedReceiver<RunMsg>,
        first: Vec<Command>,
    ) {
        let mut done = self.exec(first);
        // Callers of the last batch, answered once the events their events led to at once
        // (a canceled attempt that was still queued exits on the spot) are stored too, so
        // that they read the state the run is really in: `canceled`, not `running`.
        let mut held = Vec::new();
        while !done {
            let first = match rx.try_recv() {
                Ok(m) => m,
                Err(_) => {
                    answer(&mut held);
                    let Some(m) = rx.recv().await else { break };
                    m
                }
            };
            // Whatever else queued up meanwhile (agents' reports of a wide matrix arrive
            // together) is applied with it and stored in one transaction.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut events = Vec::with_capacity(batch.len());
            let mut gathered = Gathered::default();
            for m in batch {
                match m {
                    RunMsg::Index(msg) => {
                        self.feed.note(&msg);
                        gathered.push(msg, &mut self.clock);
                    }
                    RunMsg::Event { event, reply } => events.push((event, reply)),
                    RunMsg::Pool(news) => self.pool_news(news),
                    RunMsg::Environment(sj, vars) => self.environment_read(*sj, vars),
                    RunMsg::Started { job, attempt, reserved, at } => {
                        self.reserved.insert((job, attempt), (reserved, at));
                    }
                }
            }
            // An array's index news: one event per job, stored with the batch.
            let (index_events, index_replies) = gathered.finish();
            events.extend(index_events.into_iter().map(|e| (e, None)));
            let result = self.apply(events).await;
            // The previous batch is stored whatever became of this one.
            answer(&mut held);
            match result {
                Ok((cmds, replies)) => {
                    held = replies;
                    held.extend(index_replies);
                    done = self.exec(cmds);
                    if !done {
                        self.top_up();
                    }
                }
                Err(e) => {
                    for r in index_replies {
                        let _ = r.send(Err(ApiErr {
                            status: e.status,
                            code: e.code,
                            message: e.message.clone(),
                            diagnostics: Vec::new(),
                        }));
                    }
                    tracing::warn!("run {}: {}", self.run.full_name(), e.message);
                    if e.status.is_server_error() {
                        // The engine moved ahead of the store: rebuild from what is stored.
                        self.restart(rx).await;
                        return;
                    }
                }
            }
        }
        answer(&mut held);
        self.finish().await;
    }

    /// Why an API event does not apply to the run as it is now; `None` if it does.
    fn refuse(&self, event: &Event) -> Option<ApiErr> {
        let name = self.run.full_name();
        match event {
            Event::Approved { stage, .. } | Event::Rejected { stage, .. }
                if self.engine.paused_at() != Some(stage.as_str()) =>
            {
                let now = match self.engine.paused_at() {
                    Some(s) => format!("it waits at stage `{s}`"),
                    None => format!("it is {}", self.engine.state().as_str()),
                };
                let known = self.plan.stages.iter().any(|s| &s.name == stage);
                Some(if known {
                    ApiErr::conflict(format!(
                        "stage `{stage}` of run {name} is not waiting for a decision: {now}"
                    ))
                } else {
                    ApiErr::not_found(format!("run {name} has no stage `{stage}`"))
                })
            }
            Event::Cancel { .. } if self.engine.stop_reason().is_some() => {
                Some(ApiErr::conflict(format!("run {name} is already stopping")))
            }
            _ => None,
        }
    }

    /// Checks each event against the run's state, applies those that fit, in order, and
    /// stores them in one step; answers a refused event's `reply` at once and returns the
    /// replies of the stored ones, to be answered `Ok` by the caller. The error is that of
    /// the store, after every reply got it too. Events that come after the run ended are
    /// dropped (their callers hear that the run has just ended).
    async fn apply(
        &mut self,
        batch: Vec<(Event, Option<Reply>)>,
    ) -> ApiResult<(Vec<Command>, Vec<Reply>)> {
        let mut cmds = Vec::new();
        let mut applied = Vec::with_capacity(batch.len());
        let mut replies = Vec::new();
        let mut decisions = Vec::new();
        let mut closes = Vec::new();
        let mut usage_starts = Vec::new();
        let mut usage_ends = Vec::new();
        for (event, reply) in batch {
            if self.engine.state().is_final() {
                break;
            }
            // Whatever brought it (an agent, a server job, the API, the actor itself), no
            // secret of the run is stored or served in it.
            let event = super::mask_event(&self.masker, event);
            if let Some(e) = self.refuse(&event) {
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                continue;
            }
            cmds.extend(self.engine.handle(event.clone()));
            match &event {
                Event::Approved { stage, by } => {
                    decisions.push((stage.clone(), ApprovalDecision::Approved, by.clone()));
                }
                Event::Rejected { stage, by } => {
                    decisions.push((stage.clone(), ApprovalDecision::Rejected, by.clone()));
                }
                Event::JobStarted { job, attempt } => {
                    if let Some(start) = self.usage_start(job, *attempt) {
                        usage_starts.push(start);
                    }
                    // Noted here: the job may be over by the end of the batch.
                    if let Some(i) = self.plan.job_index(job)
                        && self.times[i].0.is_none()
                        && self
                            .engine
                            .jobs()
                            .nth(i)
                            .is_some_and(|(_, s)| s.state != JobState::Queued)
                    {
                        self.times[i].0 = Some(Utc::now());
                        self.started.insert(i, Instant::now());
                    }
                }
                Event::JobExited { job, attempt, .. } => {
                    if self.server_jobs.get(job).is_some_and(|(a, _)| a == attempt) {
                        self.server_jobs.remove(job);
                    }
                    // Read for an attempt that ended before it was dispatched.
                    self.job_envs.remove(&(job.clone(), *attempt));
                    self.attempt_envs.remove(&(job.clone(), *attempt));
                    self.reserved.remove(&(job.clone(), *attempt));
                    usage_ends.push(kiln_store::UsageEnd {
                        job: job.clone(),
                        attempt: *attempt,
                        ended_at: Utc::now(),
                    });
                    if let Some(i) = self.plan.job_index(job) {
                        closes.push(job_log_key(&self.run.id, i, *attempt));
                        self.closed[i] = self.closed[i].max(*attempt);
                    }
                }
                _ => {}
            }
            applied.push(event);
            replies.extend(reply);
        }
        // File work (a closed log is a file, created if the job printed nothing) is done off
        // the runtime's workers, while the step is stored.
        let closing = (!closes.is_empty()).then(|| {
            let logs = self.sh.logs.clone();
            tokio::task::spawn_blocking(move || {
                for key in closes {
                    let _ = logs.close(&key);
                }
            })
        });
        let mut step = self.step(applied);
        step.usage_starts = usage_starts;
        step.usage_ends = usage_ends;
        let stored = self.persist(step).await;
        if let Some(c) = closing {
            let _ = c.await;
        }
        let stored = match stored {
            Ok(()) => {
                let mut result = Ok(());
                for (stage, decision, by) in decisions {
                    if let Err(e) =
                        self.sh.store.record_approval(&self.run.id, &stage, decision, &by).await
                    {
                        result = Err(ApiErr::from(e));
                        break;
                    }
                }
                result
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => Ok((cmds, replies)),
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(ApiErr {
                        status: e.status,
                        code: e.code,
                        message: e.message.clone(),
                        diagnostics: Vec::new(),
                    }));
                }
                Err(e)
            }
        }
    }

    /// Carries out commands; true once the run finished.
    fn exec(&mut self, cmds: Vec<Command>) -> bool {
        let mut done = false;
        for c in cmds {
            match c {
                Command::StartJob(sj) => self.queue(*sj),
                Command::CancelJob { job, attempt }
                    if self.server_jobs.get(&job).is_some_and(|(a, _)| *a == attempt) =>
                {
                    // Its task cancels what it started, then reports the end.
                    if let Some((_, cancel)) = self.server_jobs.get(&job) {
                        cancel.cancel();
                    }
                }
                Command::CancelJob { job, attempt } if self.pools.forget(&job, attempt) => {
                    // It waited for its pools: never queued.
                    self.exited(job, attempt, Outcome::Canceled);
                }
                Command::CancelJob { job, attempt } => {
                    match self.sh.dispatch.cancel(&self.run.id, &job, attempt) {
                        Canceled::Dequeued(_) => self.exited(job, attempt, Outcome::Canceled),
                        Canceled::Signalled => {}
                        Canceled::Unknown => {
                            // Lost between lease and report: nobody will report it.
                            self.exited(job, attempt, Outcome::Canceled)
                        }
                    }
                }
                Command::Pause { stage, .. } => {
                    if let Some(by) = self.prior.get(&stage) {
                        let by = format!("{by} (approved in the retried run)");
                        self.self_send(Event::Approved { stage, by });
                    }
                }
                Command::ArmTimer { timer, after } => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ =
                            tx.send(RunMsg::Event { event: Event::TimerFired(timer), reply: None });
                    });
                }
                Command::Finish(_) => done = true,
                Command::StartIndexes { start, indexes } => {
                    self.feed.hold(Arc::new(*start), indexes);
                    self.top_up();
                }
                Command::CancelIndexes { job, indexes } => self.cancel_indexes(&job, indexes),
            }
        }
        done
    }

    /// Gives the dispatcher the index attempts it has room for (see `arrays.rs`' `Feed`).
    fn top_up(&mut self) {
        for (start, indexes) in self.feed.take() {
            self.dispatch_indexes(&start, indexes);
        }
    }

    /// Hands index attempts of an array job to the dispatcher, a lease each, placed in one
    /// pass: each is the job with its index in `KILN_ARRAY_INDEX` and its own discovery
    /// token.
    fn dispatch_indexes(&mut self, start: &StartJob, indexes: Vec<IndexAttempt>) {
        let Some(job_index) = self.plan.job_index(&start.job.id) else { return };
        let job = &start.job.id;
        let inputs: Vec<String> = start
            .job
            .needs
            .iter()
            .filter(|n| {
                self.plan.job_index(n).is_some_and(|i| self.plan.jobs[i].artifacts.is_some())
            })
            .map(|n| n.to_string())
            .collect();
        let checkout = if start.job.checkout { self.checkout.clone() } else { None };
        let pull =
            self.sh.tasks.pull_auth(self.project_id, &format!("run {}", self.run.full_name()));
        let mut queued = Vec::with_capacity(indexes.len());
        for ia in indexes {
            let mut env = job_env(&self.env, job, ia.attempt);
            env.insert(kiln_workflow::plan::ARRAY_INDEX_VAR.to_string(), ia.index.to_string());
            let key = crate::dispatch::index_key(&self.run.id, job, ia.index, ia.attempt);
            let name = format!("job {job}[{}] of run {}", ia.index, self.run.full_name());
            let (token_env, token) =
                self.sh.tasks.env(self.project_id, &key, &name, &start.job.env);
            env.extend(token_env);
            let masked = self.masked.iter().map(String::as_str).chain([token.as_str()]);
            let ctx = Arc::new(TaskCtx {
                project: self.project_id,
                masker: Arc::new(Masker::new(masked)),
                queued_at: Instant::now(),
                owner: Owner::Attempt(AttemptCtx {
                    run: self.run.id,
                    job: job.clone(),
                    job_index,
                    attempt: ia.attempt,
                    actor: self.tx.clone(),
                    cache_prefix: start.job.cache.as_ref().map(|c| c.key.clone()),
                    index: Some(ia.index),
                }),
            });
            let lease = Lease {
                id: String::new(),
                run: self.run.id.to_string(),
                run_name: self.run.full_name(),
                project: self.run.project.clone(),
                job_index,
                start: StartJob { attempt: ia.attempt, job: start.job.clone() },
                env,
                inputs: inputs.clone(),
                checkout: checkout.clone(),
                instance: None,
                pull: pull.clone(),
            };
            queued.push(Queued { lease, ctx });
        }
        for (ctx, why) in self.sh.dispatch.enqueue_many(queued) {
            ctx.exited(Outcome::Error(format!("cannot be placed: {why}")));
        }
    }

    /// Cancels index attempts of an array job wherever they are, in one pass: those taken
    /// off the queue or a node, and those no agent holds, end canceled at once; agents stop
    /// the leased ones and report them.
    fn cancel_indexes(&mut self, job: &JobId, indexes: Vec<IndexAttempt>) {
        let key =
            |ia: &IndexAttempt| crate::dispatch::index_key(&self.run.id, job, ia.index, ia.attempt);
        // Those still in the feed never reached the dispatcher.
        let held: HashSet<IndexAttempt> = self.feed.forget(job, &indexes).into_iter().collect();
        for ia in &held {
            super::index_exited(
                &self.tx,
                job.clone(),
                ia.index,
                ia.attempt,
                Outcome::Canceled,
                None,
            );
        }
        let indexes: Vec<IndexAttempt> =
            indexes.into_iter().filter(|ia| !held.contains(ia)).collect();
        let keys: HashSet<String> = indexes.iter().map(key).collect();
        let (dequeued, leased) = self.sh.dispatch.cancel_many(&keys);
        let dequeued: HashSet<String> = dequeued.iter().map(|c| c.key()).collect();
        for ia in indexes {
            let k = key(&ia);
            if dequeued.contains(&k) || !leased.contains(&k) {
                super::index_exited(
                    &self.tx,
                    job.clone(),
                    ia.index,
                    ia.attempt,
                    Outcome::Canceled,
                    None,
                );
            }
        }
    }

    /// Takes news of the run's pools: a pool's new view (waiting attempts may go, or fail),
    /// or the end of an attempt's wait.
    fn pool_news(&mut self, news: PoolMsg) {
        if self.engine.state().is_final() {
            return;
        }
        match news {
            PoolMsg::News { index, view } => {
                for admit in self.pools.news(index, view) {
                    self.admitted(admit);
                }
            }
            PoolMsg::WaitOver { job, attempt } => {
                if let Some(why) = self.pools.wait_over(&job, attempt) {
                    self.exited(job, attempt, Outcome::Error(why));
                }
            }
        }
    }

    /// Carries out what the pools say of an attempt.
    fn admitted(&mut self, admit: Admit) {
        match admit {
            Admit::Go(sj, exports) => self.dispatch(sj, exports),
            Admit::Fail(sj, why) => self.exited(sj.job.id, sj.attempt, Outcome::Error(why)),
            Admit::Wait { job, attempt, after } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(RunMsg::Pool(PoolMsg::WaitOver { job, attempt }));
                });
            }
        }
    }

    /// Queues an attempt once its environment's variables are read and its pools (if any)
    /// are ready; a job the server carries out starts its task instead.
    fn queue(&mut self, sj: StartJob) {
        let Some(index) = self.plan.job_index(&sj.job.id) else { return };
        if sj.job.run.on_server().is_some() {
            self.on_server(index, sj);
            return;
        }
        if let Some(env) = sj.job.environment.clone()
            && !self.job_envs.contains_key(&(sj.job.id.clone(), sj.attempt))
        {
            // Read off the actor; the answer comes back as `RunMsg::Environment`.
            let environments = self.sh.environments.clone();
            let project = self.run.project.clone();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let vars = environments.variables(&project, &env).await.map_err(|e| {
                    if e.status == axum::http::StatusCode::NOT_FOUND {
                        format!(
                            "environment `{env}` does not exist in project `{project}`: create \
                             it with kiln env create {env} --project {project}"
                        )
                    } else {
                        format!("the variables of environment `{env}`: {}", e.message)
                    }
                });
                let _ = tx.send(RunMsg::Environment(Box::new(sj), vars));
            });
            return;
        }
        let admit = self.pools.admit(&self.plan.jobs[index], sj);
        self.admitted(admit);
    }

    /// The variables of an attempt's environment were read: queue it on, or fail it.
    fn environment_read(
        &mut self,
        sj: StartJob,
        vars: Result<crate::environments::EnvVars, String>,
    ) {
        let current = self
            .engine
            .job(&sj.job.id)
            .is_some_and(|s| s.state == JobState::Queued && s.attempts == sj.attempt);
        if self.engine.state().is_final() || !current {
            return; // canceled meanwhile
        }
        match vars {
            Ok(vars) => {
                let new: Vec<String> =
                    vars.masked.iter().filter(|v| !self.masked.contains(v)).cloned().collect();
                if !new.is_empty() {
                    self.masked.extend(new);
                    self.masker = Arc::new(Masker::new(&self.masked));
                }
                self.job_envs.insert((sj.job.id.clone(), sj.attempt), vars);
                self.queue(sj);
            }
            Err(why) => self.exited(sj.job.id, sj.attempt, Outcome::Error(why)),
        }
    }

    /// Starts the task of a job the server carries out (`server_jobs.rs`).
    fn on_server(&mut self, index: usize, sj: StartJob) {
        let cancel = CancellationToken::new();
        self.server_jobs.insert(sj.job.id.clone(), (sj.attempt, cancel.clone()));
        let task = JobTask {
            coord: self.coord.clone(),
            run: self.run.clone(),
            job: sj.job.id.clone(),
            index,
            attempt: sj.attempt,
            tx: self.tx.clone(),
            masker: Arc::new(Masker::new(self.masked.iter().map(String::as_str))),
            cancel,
            unstored: std::sync::OnceLock::new(),
        };
        tokio::spawn(task.run(sj));
    }

    /// Hands an attempt to the dispatcher, with `exports` (its pools') added to its env.
    fn dispatch(&mut self, mut sj: StartJob, exports: BTreeMap<String, String>) {
        let Some(index) = self.plan.job_index(&sj.job.id) else { return };
        // Agents need nothing of the pools but their exports.
        sj.job.pools.clear();
        let inputs: Vec<String> = sj
            .job
            .needs
            .iter()
            .filter(|n| {
                self.plan.job_index(n).is_some_and(|i| self.plan.jobs[i].artifacts.is_some())
            })
            .map(|n| n.to_string())
            .collect();
        let mut env = job_env(&self.env, &sj.job.id, sj.attempt);
        env.extend(exports);
        // Its environment's variables win over the file's env (like project secrets), its
        // secrets masked like theirs.
        let environment = self.job_envs.remove(&(sj.job.id.clone(), sj.attempt));
        if let (Some(vars), Some(name)) = (&environment, &sj.job.environment) {
            env.extend(vars.env.clone());
            env.insert("KILN_ENVIRONMENT".into(), name.clone());
        }
        let env_secrets = environment.iter().flat_map(|v| v.masked.iter().map(String::as_str));
        if let Some(name) = &sj.job.environment {
            self.attempt_envs.insert((sj.job.id.clone(), sj.attempt), name.clone());
        }
        // Its own discovery token, valid while this attempt's lease lives, masked in its log.
        let key = crate::dispatch::attempt_key(&self.run.id, &sj.job.id, sj.attempt);
        let name = format!("job {} of run {}", sj.job.id, self.run.full_name());
        let (token_env, token) = self.sh.tasks.env(self.project_id, &key, &name, &sj.job.env);
        env.extend(token_env);
        let masked =
            self.masked.iter().map(String::as_str).chain(env_secrets).chain([token.as_str()]);
        let ctx = Arc::new(TaskCtx {
            project: self.project_id,
            masker: Arc::new(Masker::new(masked)),
            queued_at: Instant::now(),
            owner: Owner::Attempt(AttemptCtx {
                run: self.run.id,
                job: sj.job.id.clone(),
                job_index: index,
                attempt: sj.attempt,
                actor: self.tx.clone(),
                cache_prefix: sj.job.cache.as_ref().map(|c| c.key.clone()),
                index: None,
            }),
        });
        let checkout = if sj.job.checkout { self.checkout.clone() } else { None };
        let lease = Lease {
            id: String::new(),
            run: self.run.id.to_string(),
            run_name: self.run.full_name(),
            project: self.run.project.clone(),
            job_index: index,
            start: sj,
            env,
            inputs,
            checkout,
            instance: None,
            pull: self
                .sh
                .tasks
                .pull_auth(self.project_id, &format!("run {}", self.run.full_name())),
        };
        if let Err((ctx, why)) = self.sh.dispatch.enqueue(Queued { lease, ctx }) {
            ctx.exited(Outcome::Error(format!("cannot be placed: {why}")));
        }
    }

    async fn finish(mut self) {
        // The run's pools end with it: their services are stopped and deleted.
        self.pools.finish().await;
        // Every job's latest log ends here too (jobs that never ran get an empty one), so no
        // follower waits for lines that will not come.
        let keys: Vec<LogKey> = self
            .engine
            .jobs()
            .enumerate()
            .filter(|(i, (_, status))| self.closed[*i] != status.attempts.max(1))
            .map(|(i, (_, status))| job_log_key(&self.run.id, i, status.attempts.max(1)))
            .chain([run_log_key(&self.run.id)])
            .collect();
        let logs = self.sh.logs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for key in keys {
                let _ = logs.close(&key);
            }
        })
        .await;
        lock(&self.sh.actors).remove(&self.run.id);
        if let Some(n) = lock(&self.sh.active).get_mut(&(self.run.pipeline_id, self.group.clone()))
        {
            *n = n.saturating_sub(1);
        }
        self.sh.metrics.run_finished(self.engine.state().as_str());
        let coord = self.coord.clone();
        let pipeline = self.run.pipeline_id;
        tokio::spawn(async move { coord.admit(pipeline).await });
    }

    async fn restart(self, mut rx: mpsc::UnboundedReceiver<RunMsg>) {
        rx.close();
        lock(&self.sh.actors).remove(&self.run.id);
        if let Some(n) = lock(&self.sh.active).get_mut(&(self.run.pipeline_id, self.group.clone()))
        {
            *n = n.saturating_sub(1);
        }
        let coord = self.coord.clone();
        let run_id = self.run.id;
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            match coord.sh.store.run(&run_id).await {
                Ok(run) => {
                    let plan = match coord.plan_of_run(&run).await {
                        Ok(p) => p,
                        Err(e) => return coord.fail_unstartable(&run, &e.message).await,
                    };
                    match coord.sh.store.events(&run_id).await {
                        Ok(events) => {
                            let events = events.into_iter().map(|e| e.event).collect();
                            if let Err(e) = coord.start_actor(run, plan, Some(events)).await {
                                tracing::error!("restart run {run_id}: {}", e.message);
                            }
                        }
                        Err(e) => tracing::error!("restart run {run_id}: {e}"),
                    }
                }
                Err(e) => tracing::error!("restart run {run_id}: {e}"),
            }
        });
    }
}
