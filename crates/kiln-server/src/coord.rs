//! Run coordination: one actor task per active run owns its [`kiln_engine::Run`], persists
//! every event it applies (in one store transaction with the state and job changes it causes),
//! and carries out the engine's commands (queue attempts for agents, cancel them, pause, arm
//! timers, finish). Admission keeps each pipeline (each concurrency group of it, with
//! `concurrency: { group }`) under its `concurrency:` limit, starting queued runs in FIFO order
//! as slots free up; `cancel-in-progress` cancels a new run's older group mates. Recovery replays unfinished runs at start-up.
//!
//! Invariants:
//! - an event reaches the engine only through its run's actor, and is stored in the same
//!   transaction as the state it produces: replaying the stored events rebuilds the run;
//! - a run has at most one actor; a pipeline's group never has more active (running or
//!   paused) runs than its limit, and pending runs of a group start oldest first;
//! - after a restart no attempt stays running: a started one fails with an "agent lost" error
//!   (its retry policy may rerun it), a queued one is queued again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use kiln_api::agent::Lease;
use kiln_engine::{Command, Event, JobState, JobStatus, Outcome, Params, Run, RunState, StartJob};
use kiln_logs::{LogKey, LogStore, Masker};
use kiln_store::{
    ApprovalDecision, JobRecord, NewRun, PipelineId, ProjectId, RunId, Step, Store, StoreError,
};
use kiln_workflow::plan::{JobId, Plan};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{Canceled, Dispatch, Queued, TaskCtx};
use crate::error::{ApiErr, ApiResult};
use crate::metrics::Metrics;
use crate::plans;
use crate::secrets::SecretBox;

/// A message to a run's actor.
#[derive(Debug)]
pub enum RunMsg {
    /// Apply an event; answer on `reply` once it is stored (or refused).
    Event {
        /// The event.
        event: Event,
        /// Where to answer, for API calls that wait.
        reply: Option<oneshot::Sender<ApiResult<()>>>,
    },
}

/// Sends messages to a run's actor.
pub type RunTx = mpsc::UnboundedSender<RunMsg>;

/// Most messages a run's actor applies and stores in one step.
const MAX_BATCH: usize = 512;

/// Why a run that was running when the server stopped lost its attempt.
pub const LOST_ON_RESTART: &str =
    "agent lost: the server restarted while this attempt ran; its container was cleaned up";

#[derive(Debug)]
struct ActorRef {
    tx: RunTx,
}

/// Shared by the coordinator and its actors.
#[derive(Debug)]
struct Shared {
    store: Store,
    logs: LogStore,
    dispatch: Arc<Dispatch>,
    metrics: Arc<Metrics>,
    secrets: Arc<SecretBox>,
    /// Mints each run's registry token.
    registry: Arc<kiln_registry::Registry>,
    /// `host:port` of the registry as jobs reach it (`KILN_REGISTRY`).
    registry_host: String,
    actors: Mutex<HashMap<RunId, ActorRef>>,
    /// Active runs per pipeline and concurrency group (`""` without groups).
    active: Mutex<HashMap<(PipelineId, String), usize>>,
    admission: tokio::sync::Mutex<()>,
    plans: Mutex<HashMap<(PipelineId, u32), Arc<Plan>>>,
}

/// Starts, steers and recovers runs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Coord {
    sh: Arc<Shared>,
}

/// The log of one attempt of one job.
pub fn job_log_key(run: &RunId, job_index: usize, attempt: u32) -> LogKey {
    LogKey::from_segments([
        "runs".to_string(),
        run.to_string(),
        job_index.to_string(),
        attempt.to_string(),
    ])
    .expect("uuid and numbers make a valid key")
}

/// The whole-run log (every job's lines, each prefixed by its job id and a tab).
pub fn run_log_key(run: &RunId) -> LogKey {
    LogKey::from_segments(["runs".to_string(), run.to_string(), "all".to_string()])
        .expect("uuid makes a valid key")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Params of a run are stored as the text the trigger gave; this binds them again.
fn bind(plan: &Plan, stored: &serde_json::Value) -> Result<Params, Vec<String>> {
    let given: Vec<(String, String)> = stored
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect()
        })
        .unwrap_or_default();
    kiln_workflow::bind_params(plan, &given)
}

impl Coord {
    /// A coordinator over these parts. Call [`Coord::recover`] once before serving.
    pub fn new(
        store: Store,
        logs: LogStore,
        dispatch: Arc<Dispatch>,
        metrics: Arc<Metrics>,
        secrets: Arc<SecretBox>,
        registry: (Arc<kiln_registry::Registry>, String),
    ) -> Coord {
        Coord {
            sh: Arc::new(Shared {
                store,
                logs,
                dispatch,
                metrics,
                secrets,
                registry: registry.0,
                registry_host: registry.1,
                actors: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                admission: tokio::sync::Mutex::new(()),
                plans: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The compiled plan of a pipeline version (cached).
    pub fn plan_of(&self, pipeline: &kiln_store::Pipeline) -> ApiResult<Arc<Plan>> {
        let key = (pipeline.id, pipeline.version);
        if let Some(p) = lock(&self.sh.plans).get(&key) {
            return Ok(p.clone());
        }
        let compiled = plans::compile(&pipeline.file, &pipeline.yaml, &pipeline.files);
        let plan = plan_or_error(compiled)?;
        lock(&self.sh.plans).insert(key, plan.clone());
        Ok(plan)
    }

    /// The compiled plan of a run (the workflow as it was when the run was created; cached).
    pub async fn plan_of_run(&self, run: &kiln_store::Run) -> ApiResult<Arc<Plan>> {
        let key = (run.pipeline_id, run.pipeline_version);
        if let Some(p) = lock(&self.sh.plans).get(&key) {
            return Ok(p.clone());
        }
        let source = self.sh.store.run_source(&run.id).await?;
        let compiled = plans::compile(&source.file, &source.yaml, &source.files);
        let plan = plan_or_error(compiled)?;
        lock(&self.sh.plans).insert(key, plan.clone());
        Ok(plan)
    }

    /// Runs waiting for a concurrency slot, and attempts waiting for an agent.
    pub fn queue_depths(&self) -> usize {
        self.sh.dispatch.queue_len()
    }

    /// Creates a run of `pipeline` with `given` params and starts it when a slot is free.
    pub async fn trigger(
        &self,
        pipeline: &kiln_store::Pipeline,
        given: &BTreeMap<String, String>,
        by: &str,
    ) -> ApiResult<kiln_store::Run> {
        self.trigger_from(pipeline, given, by, None).await
    }

    /// [`Coord::trigger`] for a run that builds a git commit (`source`).
    pub async fn trigger_from(
        &self,
        pipeline: &kiln_store::Pipeline,
        given: &BTreeMap<String, String>,
        by: &str,
        source: Option<kiln_store::RunSource>,
    ) -> ApiResult<kiln_store::Run> {
        let plan = self.plan_of(pipeline)?;
        let pairs: Vec<(String, String)> =
            given.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Err(errors) = kiln_workflow::bind_params(&plan, &pairs) {
            let mut e = ApiErr::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                kiln_api::codes::INVALID_PARAMS,
                errors.join("; "),
            );
            e.diagnostics = Vec::new();
            return Err(e);
        }
        let params = serde_json::to_value(given).expect("a string map is JSON");
        let run = self
            .sh
            .store
            .create_run(&NewRun {
                pipeline: pipeline.id,
                params,
                triggered_by: by.to_string(),
                retry_of: None,
                source,
            })
            .await?;
        self.cancel_older_in_group(&plan, &run).await?;
        self.admit(pipeline.id).await;
        Ok(self.sh.store.run(&run.id).await?)
    }

    /// Retries a failed, canceled or timed-out run: a new run of the same workflow and params
    /// that reuses every job that succeeded (outputs and artifacts kept) and runs the others.
    pub async fn retry(&self, run: &kiln_store::Run, by: &str) -> ApiResult<kiln_store::Run> {
        if !run.state.is_final() {
            return Err(ApiErr::conflict(format!(
                "run {} is still {}; cancel it or wait for it to end before retrying",
                run.full_name(),
                state_text(run.state)
            )));
        }
        if run.state == RunState::Success {
            return Err(ApiErr::conflict(format!(
                "run {} succeeded; there is nothing to retry (trigger a new run instead)",
                run.full_name()
            )));
        }
        let jobs = self.sh.store.jobs(&run.id).await?;
        let reused: Vec<&JobRecord> =
            jobs.iter().filter(|j| j.state == JobState::Success).collect();
        let new = self
            .sh
            .store
            .create_run(&NewRun {
                pipeline: run.pipeline_id,
                params: run.params.clone(),
                triggered_by: by.to_string(),
                retry_of: Some(run.id),
                source: run.source.clone(),
            })
            .await?;
        let events: Vec<Event> = reused
            .iter()
            .map(|j| Event::JobReused { job: j.job.clone(), outputs: j.outputs.clone() })
            .collect();
        if !events.is_empty() {
            self.sh
                .store
                .record_step(&new.id, &Step { events, state: None, jobs: Vec::new() })
                .await?;
            let ids: Vec<JobId> = reused.iter().map(|j| j.job.clone()).collect();
            self.sh.store.copy_artifacts(&run.id, &new.id, &ids).await?;
        }
        self.admit(new.pipeline_id).await;
        Ok(self.sh.store.run(&new.id).await?)
    }

    /// Delivers an API event (approve, reject, cancel) to a run and waits until it is stored.
    pub async fn send(&self, run: &kiln_store::Run, event: Event) -> ApiResult<()> {
        let tx = lock(&self.sh.actors).get(&run.id).map(|a| a.tx.clone());
        let Some(tx) = tx else {
            // Not active: a queued run can be canceled; anything else has ended.
            if run.state == RunState::Pending
                && let Event::Cancel { by } = &event
            {
                let reason = format!("run canceled by {by} while queued");
                self.sh
                    .store
                    .record_step(
                        &run.id,
                        &Step {
                            events: vec![event.clone()],
                            state: Some((RunState::Canceled, Some(reason))),
                            jobs: Vec::new(),
                        },
                    )
                    .await?;
                self.sh.logs.close(&run_log_key(&run.id)).ok();
                return Ok(());
            }
            return Err(ApiErr::conflict(format!(
                "run {} is {}: it does not take this any more",
                run.full_name(),
                state_text(run.state)
            )));
        };
        let (reply, rx) = oneshot::channel();
        tx.send(RunMsg::Event { event, reply: Some(reply) })
            .map_err(|_| ApiErr::conflict(format!("run {} has just ended", run.full_name())))?;
        rx.await.map_err(|_| ApiErr::conflict(format!("run {} has just ended", run.full_name())))?
    }

    /// The stage a run waits at, as its actor knows it (None when not active or not paused).
    pub fn is_active(&self, run: &RunId) -> bool {
        lock(&self.sh.actors).contains_key(run)
    }

    /// Starts pending runs of `pipeline` while their groups have free slots, oldest first
    /// within each group (a pipeline without `concurrency: { group }` is one group).
    pub async fn admit(&self, pipeline: PipelineId) {
        let _guard = self.sh.admission.lock().await;
        'pass: loop {
            let pending = match self.sh.store.pending_runs(&pipeline).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("admission of pipeline {pipeline}: {e}");
                    return;
                }
            };
            let mut full: Vec<String> = Vec::new();
            for head in pending.into_iter().filter(|r| !self.is_active(&r.id)) {
                let plan = match self.plan_of_run(&head).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.fail_unstartable(&head, &e.message).await;
                        continue 'pass;
                    }
                };
                let group = group_of(&plan, &head);
                if full.contains(&group) {
                    continue;
                }
                let key = (pipeline, group.clone());
                let active = lock(&self.sh.active).get(&key).copied().unwrap_or(0);
                if plan.concurrency.is_some_and(|limit| active >= limit as usize) {
                    full.push(group);
                    continue;
                }
                if let Err(e) = self.start_actor(head.clone(), plan, None).await {
                    tracing::error!("start run {}: {}", head.full_name(), e.message);
                    self.fail_unstartable(&head, &e.message).await;
                }
                continue 'pass;
            }
            return;
        }
    }

    /// `cancel-in-progress`: cancels the unfinished runs of `run`'s group older than it.
    async fn cancel_older_in_group(&self, plan: &Plan, run: &kiln_store::Run) -> ApiResult<()> {
        if !plan.concurrency_group.as_ref().is_some_and(|g| g.cancel_in_progress) {
            return Ok(());
        }
        let group = group_of(plan, run);
        for older in self.sh.store.unfinished_runs().await? {
            if older.pipeline_id != run.pipeline_id || older.number >= run.number {
                continue;
            }
            let Ok(older_plan) = self.plan_of_run(&older).await else { continue };
            if group_of(&older_plan, &older) != group {
                continue;
            }
            let by = format!("newer run {} of group `{group}`", run.full_name());
            if let Err(e) = self.send(&older, Event::Cancel { by }).await {
                tracing::info!("cancel-in-progress of {}: {}", older.full_name(), e.message);
            }
        }
        Ok(())
    }

    async fn fail_unstartable(&self, run: &kiln_store::Run, why: &str) {
        let step = Step {
            events: Vec::new(),
            state: Some((RunState::Failure, Some(format!("could not start: {why}")))),
            jobs: Vec::new(),
        };
        if let Err(e) = self.sh.store.record_step(&run.id, &step).await {
            tracing::error!("mark run {} failed: {e}", run.full_name());
        }
    }

    /// Resumes every unfinished run after a start: replays running and paused ones, fails or
    /// re-queues their unfinished attempts, then admits pending runs.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let runs = self.sh.store.unfinished_runs().await?;
        let mut pipelines = Vec::new();
        let mut resumed = 0;
        for run in runs {
            if run.state == RunState::Pending {
                if !pipelines.contains(&run.pipeline_id) {
                    pipelines.push(run.pipeline_id);
                }
                continue;
            }
            let plan = match self.plan_of_run(&run).await {
                Ok(p) => p,
                Err(e) => {
                    self.fail_unstartable(&run, &e.message).await;
                    continue;
                }
            };
            let events = self.sh.store.events(&run.id).await?;
            let events: Vec<Event> = events.into_iter().map(|e| e.event).collect();
            match self.start_actor(run.clone(), plan, Some(events)).await {
                Ok(()) => resumed += 1,
                Err(e) => self.fail_unstartable(&run, &e.message).await,
            }
        }
        for p in pipelines {
            self.admit(p).await;
        }
        Ok(resumed)
    }

    /// Builds the actor of `run` and spawns it. Fresh runs are started (and stored as such)
    /// before this returns; `replay` rebuilds a run from its stored events instead.
    ///
    /// Boxed: actors start actors again (admission after a finish, rebuild after a store
    /// error), and a named future type breaks that cycle for the compiler.
    fn start_actor(
        &self,
        run: kiln_store::Run,
        plan: Arc<Plan>,
        replay: Option<Vec<Event>>,
    ) -> futures::future::BoxFuture<'_, ApiResult<()>> {
        Box::pin(self.start_actor_inner(run, plan, replay))
    }

    async fn start_actor_inner(
        &self,
        run: kiln_store::Run,
        plan: Arc<Plan>,
        replay: Option<Vec<Event>>,
    ) -> ApiResult<()> {
        let params = bind(&plan, &run.params).map_err(|e| ApiErr::internal(e.join("; ")))?;
        let pipeline = self.sh.store.pipeline_by_id(&run.pipeline_id).await?;
        let (secret_env, mut masked) = self.project_secrets(&run.project).await?;
        // The run's jobs may push to their project's repositories: one registry token per
        // run, masked in its logs like a secret.
        let registry_token = self.sh.registry.job_token(
            pipeline.project_id,
            &format!("run {}", run.full_name()),
            crate::registry::JOB_TOKEN_TTL,
        );
        masked.push(registry_token.clone());
        let masker = Masker::new(masked);
        let prior = match run.retry_of {
            Some(orig) => self
                .sh
                .store
                .approvals(&orig)
                .await?
                .into_iter()
                .filter(|a| a.decision == ApprovalDecision::Approved)
                .map(|a| (a.stage, a.by))
                .collect(),
            None => HashMap::new(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut env = secret_env;
        env.insert("KILN_REGISTRY".into(), self.sh.registry_host.clone());
        env.insert("KILN_REGISTRY_TOKEN".into(), registry_token);
        env.insert("KILN_RUN_ID".into(), run.id.to_string());
        env.insert("KILN_RUN_NUMBER".into(), run.number.to_string());
        env.insert("KILN_PROJECT".into(), run.project.clone());
        env.insert("KILN_PIPELINE".into(), run.pipeline.clone());
        env.insert("KILN_TRIGGERED_BY".into(), run.triggered_by.clone());
        let checkout = checkout_of(&plan, &run, &env)?;
        if let Some(source) = &run.source {
            source_env(source, &mut env);
        }

        let mut engine = Run::new(plan.clone(), params);
        let job_count = plan.jobs.len();
        let mut actor = Actor {
            sh: self.sh.clone(),
            coord: self.clone(),
            project_id: pipeline.project_id,
            plan: plan.clone(),
            persisted: vec![None; job_count],
            times: vec![(None, None); job_count],
            state: run.state,
            masker: Arc::new(masker),
            env,
            prior,
            tx: tx.clone(),
            started: HashMap::new(),
            checkout,
            group: group_of(&plan, &run),
            closed: vec![0; job_count],
            run,
            engine: Run::new(plan, BTreeMap::new()),
        };
        let first = match replay {
            None => {
                let stored = self.sh.store.events(&actor.run.id).await?;
                for e in stored {
                    if matches!(e.event, Event::JobReused { .. }) {
                        engine.handle(e.event);
                    }
                }
                let cmds = engine.start();
                actor.engine = engine;
                let step = actor.step(Vec::new());
                actor.persist(step).await?;
                cmds
            }
            Some(events) => actor.replay(engine, events).await?,
        };
        lock(&self.sh.actors).insert(actor.run.id, ActorRef { tx });
        *lock(&self.sh.active).entry((actor.run.pipeline_id, actor.group.clone())).or_default() +=
            1;
        tokio::spawn(actor.main(rx, first));
        Ok(())
    }

    /// The decrypted secrets of a project: the env for its jobs and the values to mask.
    async fn project_secrets(
        &self,
        project: &str,
    ) -> ApiResult<(BTreeMap<String, String>, Vec<String>)> {
        let sealed = self.sh.store.sealed_secrets(project).await?;
        let mut env = BTreeMap::new();
        for (name, s) in sealed {
            let value = self.sh.secrets.open(project, &name, &s).map_err(|e| {
                ApiErr::internal(format!("secret `{name}` of project `{project}`: {e}"))
            })?;
            env.insert(name, value);
        }
        let values = env.values().cloned().collect();
        Ok((env, values))
    }
}

/// The concurrency group of a run: its plan's `concurrency.group` rendered with the run's
/// commit and params; `""` for a plan without groups.
pub fn group_of(plan: &Plan, run: &kiln_store::Run) -> String {
    let Some(g) = &plan.concurrency_group else { return String::new() };
    let params = bind(plan, &run.params).unwrap_or_default();
    let src = run.source.as_ref();
    g.render(&|name: &str| match name.split_once('.') {
        Some(("source", field)) => src.and_then(|s| match field {
            "branch" => s.branch.clone(),
            "tag" => s.tag.clone(),
            "ref" => Some(s.git_ref.clone()),
            "event" => Some(s.event.clone()),
            "repository" => Some(s.repository.clone()),
            _ => None,
        }),
        Some(("params", p)) => params.get(p).map(ToString::to_string),
        _ => None,
    })
}

/// What a run's jobs check out: the plan's `source` at the run's commit (a run started
/// otherwise than by git gets the remote's default branch), with the credentials secret.
fn checkout_of(
    plan: &Plan,
    run: &kiln_store::Run,
    secrets: &BTreeMap<String, String>,
) -> ApiResult<Option<kiln_api::agent::Checkout>> {
    let Some(source) = &plan.source else { return Ok(None) };
    let credentials = match &source.credentials {
        None => None,
        Some(name) => Some(secrets.get(name).cloned().ok_or_else(|| {
            ApiErr::conflict(format!(
                "source credentials: project `{}` has no secret `{name}` (set it with kiln \
                 secret set)",
                run.project
            ))
        })?),
    };
    // `owner/name` is no URL: clone what the provider said.
    let written = kiln_workflow::git::repository_key(&source.repository);
    let repository = match &run.source {
        Some(s) if written.host.is_empty() && !s.clone_url.is_empty() => s.clone_url.clone(),
        _ => source.repository.clone(),
    };
    Ok(Some(kiln_api::agent::Checkout {
        repository,
        git_ref: run.source.as_ref().map(|s| s.git_ref.clone()).unwrap_or_default(),
        commit: run.source.as_ref().map(|s| s.commit.clone()).unwrap_or_default(),
        credentials,
    }))
}

/// The `KILN_*` variables of a run's commit (like GitLab's `CI_COMMIT_*`, GitHub's
/// `GITHUB_SHA`/`GITHUB_REF`).
fn source_env(s: &kiln_store::RunSource, env: &mut BTreeMap<String, String>) {
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("KILN_REPOSITORY", &s.repository);
    set("KILN_REF", &s.git_ref);
    set("KILN_COMMIT_SHA", &s.commit);
    set("KILN_COMMIT_MESSAGE", &s.message);
    set("KILN_COMMIT_AUTHOR", &s.author);
    set("KILN_EVENT", &s.event);
    if let Some(b) = &s.branch {
        set("KILN_BRANCH", b);
    }
    if let Some(t) = &s.tag {
        set("KILN_TAG", t);
    }
    if let Some(pr) = &s.pull_request {
        set("KILN_PULL_REQUEST", &pr.number.to_string());
        set("KILN_TARGET_BRANCH", &pr.target);
    }
}

fn plan_or_error(compiled: kiln_workflow::Compiled) -> ApiResult<Arc<Plan>> {
    match compiled.plan {
        Some(p) => Ok(Arc::new(p)),
        None => {
            let mut e = ApiErr::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                kiln_api::codes::INVALID_WORKFLOW,
                "the stored workflow no longer compiles",
            );
            e.diagnostics = compiled.diagnostics.iter().map(plans::diagnostic).collect();
            Err(e)
        }
    }
}

/// The text of a run state.
pub fn state_text(s: RunState) -> &'static str {
    match s {
        RunState::Pending => "pending",
        RunState::Scheduling => "scheduling",
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Success => "success",
        RunState::Failure => "failure",
        RunState::Canceled => "canceled",
        RunState::Timeout => "timeout",
    }
}

/// The text of a job state.
pub fn job_state_text(s: JobState) -> &'static str {
    match s {
        JobState::Pending => "pending",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Success => "success",
        JobState::Failure => "failure",
        JobState::Skipped => "skipped",
        JobState::Canceled => "canceled",
        JobState::Timeout => "timeout",
    }
}

/// When a job first started and when it ended.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

struct Actor {
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
}

impl Actor {
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
                if let Some(at) = self.started.remove(&i) {
                    self.sh.metrics.job_finished(job_state_text(status.state), at.elapsed());
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
        let state = self.engine.state();
        let state = (state != self.state).then(|| (state, self.reason(state)));
        Step { events, state, jobs }
    }

    fn reason(&self, state: RunState) -> Option<String> {
        if let Some(stop) = self.engine.stop_reason() {
            return Some(stop.to_string());
        }
        if state == RunState::Failure {
            for (id, st) in self.engine.jobs() {
                if matches!(st.state, JobState::Failure | JobState::Timeout) {
                    let why = st.reason.clone().unwrap_or_else(|| job_state_text(st.state).into());
                    return Some(format!("job `{id}` failed: {why}"));
                }
            }
        }
        None
    }

    async fn persist(&mut self, step: Step) -> ApiResult<()> {
        if step.events.is_empty() && step.state.is_none() && step.jobs.is_empty() {
            return Ok(());
        }
        let new_state = step.state.as_ref().map(|(s, _)| *s);
        self.sh.store.record_step(&self.run.id, &step).await?;
        if let Some(s) = new_state {
            self.state = s;
            self.run.state = s;
        }
        Ok(())
    }

    /// Rebuilds the engine from stored events and decides what to do with attempts that
    /// were in flight when the server stopped.
    async fn replay(&mut self, mut engine: Run, events: Vec<Event>) -> ApiResult<Vec<Command>> {
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
            match state {
                JobState::Queued if !stopping => match starts.remove(&job) {
                    Some(sj) if sj.attempt == attempt => cmds.push(Command::StartJob(Box::new(sj))),
                    _ => self.self_send(Event::JobExited {
                        job,
                        attempt,
                        outcome: Outcome::Error(LOST_ON_RESTART.into()),
                    }),
                },
                JobState::Queued => {
                    self.self_send(Event::JobExited { job, attempt, outcome: Outcome::Canceled })
                }
                _ => self.self_send(Event::JobExited {
                    job,
                    attempt,
                    outcome: Outcome::Error(LOST_ON_RESTART.into()),
                }),
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
        }
        Ok(cmds)
    }

    fn self_send(&self, event: Event) {
        let _ = self.tx.send(RunMsg::Event { event, reply: None });
    }

    async fn main(mut self, mut rx: mpsc::UnboundedReceiver<RunMsg>, first: Vec<Command>) {
        let mut done = self.exec(first);
        while !done {
            let Some(first) = rx.recv().await else { break };
            // Whatever else queued up meanwhile (agents' reports of a wide matrix arrive
            // together) is applied with it and stored in one transaction.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let batch = batch.into_iter().map(|RunMsg::Event { event, reply }| (event, reply));
            match self.apply(batch.collect()).await {
                Ok(cmds) => done = self.exec(cmds),
                Err(e) => {
                    tracing::warn!("run {}: {}", self.run.full_name(), e.message);
                    if e.status.is_server_error() {
                        // The engine moved ahead of the store: rebuild from what is stored.
                        self.restart(rx).await;
                        return;
                    }
                }
            }
        }
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
                    None => format!("it is {}", state_text(self.engine.state())),
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
    /// stores them in one step; answers each event's `reply` once stored (or refused). The
    /// error is that of the store, after every reply got it too. Events that come after the
    /// run ended are dropped (their callers hear that the run has just ended).
    async fn apply(
        &mut self,
        batch: Vec<(Event, Option<oneshot::Sender<ApiResult<()>>>)>,
    ) -> ApiResult<Vec<Command>> {
        let mut cmds = Vec::new();
        let mut applied = Vec::with_capacity(batch.len());
        let mut replies = Vec::new();
        let mut decisions = Vec::new();
        let mut closes = Vec::new();
        for (event, reply) in batch {
            if self.engine.state().is_final() {
                break;
            }
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
                Event::JobStarted { job, .. } => {
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
        let step = self.step(applied);
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
            Ok(()) => {
                for r in replies {
                    let _ = r.send(Ok(()));
                }
                Ok(cmds)
            }
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
                Command::CancelJob { job, attempt } => {
                    match self.sh.dispatch.cancel(&self.run.id, &job, attempt) {
                        Canceled::Dequeued(_) => self.self_send(Event::JobExited {
                            job,
                            attempt,
                            outcome: Outcome::Canceled,
                        }),
                        Canceled::Signalled => {}
                        Canceled::Unknown => {
                            // Lost between lease and report: nobody will report it.
                            self.self_send(Event::JobExited {
                                job,
                                attempt,
                                outcome: Outcome::Canceled,
                            })
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
            }
        }
        done
    }

    fn queue(&mut self, sj: StartJob) {
        let Some(index) = self.plan.job_index(&sj.job.id) else { return };
        let inputs: Vec<String> = sj
            .job
            .needs
            .iter()
            .filter(|n| {
                self.plan.job_index(n).is_some_and(|i| self.plan.jobs[i].artifacts.is_some())
            })
            .map(|n| n.to_string())
            .collect();
        let mut env = self.env.clone();
        env.insert("KILN_JOB".into(), sj.job.id.to_string());
        env.insert("KILN_ATTEMPT".into(), sj.attempt.to_string());
        let ctx = Arc::new(TaskCtx {
            run: self.run.id,
            project: self.project_id,
            job: sj.job.id.clone(),
            job_index: index,
            attempt: sj.attempt,
            masker: self.masker.clone(),
            actor: self.tx.clone(),
            cache_prefix: sj.job.cache.as_ref().map(|c| c.key.clone()),
            queued_at: Instant::now(),
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
        };
        if let Err((ctx, why)) = self.sh.dispatch.enqueue(Queued { lease, ctx }) {
            self.self_send(Event::JobExited {
                job: ctx.job.clone(),
                attempt: ctx.attempt,
                outcome: Outcome::Error(format!("cannot be placed: {why}")),
            });
        }
    }

    async fn finish(self) {
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
        self.sh.metrics.run_finished(state_text(self.engine.state()));
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
