//! Run coordination: [`Coord`] creates runs (trigger, retry), delivers API events to them,
//! and recovers unfinished runs at start-up; one actor task per active run (`actor.rs`) owns
//! its [`kiln_engine::Run`], stores every event it applies and carries out the engine's
//! commands. `admission.rs` keeps each pipeline's concurrency groups under their limits;
//! `env.rs` builds what every job of a run gets (secrets, `KILN_*` variables, checkout).
//! Every way an attempt ends reaches its actor through [`attempt_exited`].
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

use kiln_engine::{Event, JobState, Outcome, Params, Run, RunState, StartJob};
use kiln_logs::{LogKey, LogStore, Masker};
use kiln_store::{
    ApprovalDecision, IntentRun, JobRecord, NewRun, NewRunSet, PipelineId, RunId, RunIntent,
    RunSet, Step, Store, StoreError, TokenId,
};
use kiln_workflow::plan::{JobId, Plan};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::Dispatch;
use crate::error::{ApiErr, ApiResult};
use crate::metrics::Metrics;
use crate::plans;
use crate::run_events::RunFeed;
use crate::secrets::SecretBox;

mod actor;
mod admission;
mod arrays;
mod env;
mod pools;
mod server_jobs;

use actor::Actor;
pub use admission::group_of;
pub use arrays::{IndexMsg, index_exited};
pub use server_jobs::{declared_params, group_state, output_name};

/// Tells a run's actor that an attempt ended: the one way back for an attempt's end, whether
/// its agent reported it, the agent was lost, its lease expired, or it never left the queue.
/// A run that has ended meanwhile ignores it.
pub fn attempt_exited(actor: &RunTx, job: JobId, attempt: u32, outcome: Outcome) {
    let _ = actor
        .send(RunMsg::Event { event: Event::JobExited { job, attempt, outcome }, reply: None });
}

/// `event` with every secret in its free text masked (an output's key and value, an error's
/// text, outputs of a reused job): what is stored and served of an event never shows a
/// secret. Names of jobs and stages come from the workflow and people's names from tokens,
/// neither from a job: they are left as they are.
pub fn mask_event(masker: &Masker, event: Event) -> Event {
    if masker.is_empty() {
        return event;
    }
    let m = |text: String| match masker.mask(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(masked) => masked,
    };
    match event {
        Event::JobOutput { job, attempt, key, value } => {
            Event::JobOutput { job, attempt, key: m(key), value: m(value) }
        }
        Event::JobExited { job, attempt, outcome: Outcome::Error(why) } => {
            Event::JobExited { job, attempt, outcome: Outcome::Error(m(why)) }
        }
        Event::JobReused { job, outputs } => Event::JobReused {
            job,
            outputs: outputs.into_iter().map(|(k, v)| (m(k), m(v))).collect(),
        },
        Event::IndexesExited { job, exits } => Event::IndexesExited {
            job,
            exits: exits
                .into_iter()
                .map(|mut e| {
                    if let Outcome::Error(why) = e.outcome {
                        e.outcome = Outcome::Error(m(why));
                    }
                    e
                })
                .collect(),
        },
        other => other,
    }
}

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
    /// News of one of the run's service pools (`pools.rs`).
    Pool(pools::PoolMsg),
    /// The variables of the environment an attempt runs in (`environment:`), read for it
    /// (or why they could not be).
    Environment(Box<StartJob>, Result<crate::environments::EnvVars, String>),
    /// An attempt's agent says it started: what it holds on its node, and when the server
    /// heard it (sent just before its `JobStarted`; usage accounting).
    Started {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: u32,
        /// Its node, node group and reservation.
        reserved: crate::dispatch::Reserved,
        /// When the server heard it.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// An index attempt of an array job started or ended (`arrays.rs`): gathered with the
    /// others of its batch into one `IndexesStarted`/`IndexesExited` event per job.
    Index(arrays::IndexMsg),
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
    /// Mints each attempt's discovery token.
    tasks: crate::task_token::TaskTokens,
    actors: Mutex<HashMap<RunId, ActorRef>>,
    /// Active runs per pipeline and concurrency group (`""` without groups).
    active: Mutex<HashMap<(PipelineId, String), usize>>,
    admission: tokio::sync::Mutex<()>,
    plans: Mutex<HashMap<(PipelineId, u32), Arc<Plan>>>,
    /// Run events recorded, for `GET /api/v1/runs/events`.
    feed: RunFeed,
    /// Services, for the runs' service pools.
    services: crate::services::Services,
    /// Environments' variables, for the jobs that run in one (`environment:`).
    environments: crate::environments::Environments,
    /// Deploys, for `deploy:` jobs.
    deploys: crate::deploys::Deploys,
    /// Cancelled when the server stops: the tasks of server-side jobs end without a word
    /// (the next start resumes them).
    stopping: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// Stores one step of a run (`Store::record_step_notified`: the run events it causes are
    /// queued for the project's webhooks in the same transaction), then publishes those
    /// events and wakes the webhook delivery.
    async fn record(
        &self,
        run: &RunId,
        project: &str,
        step: &Step,
    ) -> Result<Vec<u64>, StoreError> {
        let recorded = self.store.record_step_notified(run, step).await?;
        for u in &recorded.usage {
            self.metrics.usage_recorded(project, u);
        }
        if !recorded.notices.is_empty() {
            self.feed.publish(recorded.notices);
            self.registry.wake_webhooks();
        }
        Ok(recorded.seqs)
    }
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

/// The log of one attempt of one index of an array job: created only if it prints.
pub fn index_log_key(run: &RunId, job_index: usize, index: u32, attempt: u32) -> LogKey {
    LogKey::from_segments([
        "runs".to_string(),
        run.to_string(),
        job_index.to_string(),
        format!("i{index}"),
        attempt.to_string(),
    ])
    .expect("uuid and numbers make a valid key")
}

/// The whole-run log: a view over its jobs' logs (see `LogStore::append_viewed`), read as
/// every job's lines in the order they came, each prefixed by its job id and a tab. Older
/// versions stored a copy of each line there instead (format 1): both read the same.
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

/// What a coordinator works with: the server's parts it drives runs through.
#[derive(Debug)]
pub struct CoordParts {
    /// Runs, events, jobs.
    pub store: Store,
    /// Job logs.
    pub logs: LogStore,
    /// Where attempts are queued and leased.
    pub dispatch: Arc<Dispatch>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Opens project secrets.
    pub secrets: Arc<SecretBox>,
    /// Mints each run's registry token.
    pub registry: Arc<kiln_registry::Registry>,
    /// `host:port` of the registry as jobs reach it (`KILN_REGISTRY`).
    pub registry_host: String,
    /// Services, for the runs' service pools.
    pub services: crate::services::Services,
    /// Environments' variables, for the jobs that run in one.
    pub environments: crate::environments::Environments,
    /// Deploys, for `deploy:` jobs.
    pub deploys: crate::deploys::Deploys,
}

impl Coord {
    /// A coordinator over these parts. Call [`Coord::recover`] once before serving.
    pub fn new(parts: CoordParts) -> Coord {
        let CoordParts {
            store,
            logs,
            dispatch,
            metrics,
            secrets,
            registry,
            registry_host,
            services,
            environments,
            deploys,
        } = parts;
        // Tasks reach the server where they reach its registry.
        let tasks = crate::task_token::TaskTokens::new(&secrets, format!("http://{registry_host}"))
            .with_registry(registry.clone(), registry_host.clone());
        Coord {
            sh: Arc::new(Shared {
                store,
                logs,
                dispatch,
                metrics,
                secrets,
                tasks,
                registry,
                registry_host,
                actors: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                admission: tokio::sync::Mutex::new(()),
                plans: Mutex::new(HashMap::new()),
                feed: RunFeed::new(),
                services,
                environments,
                deploys,
                stopping: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// The server is stopping: the jobs it carries out itself stop waiting, reporting
    /// nothing (a server started again on the same store resumes them).
    pub fn stop(&self) {
        self.sh.stopping.cancel();
    }

    /// The run events recorded since this server started.
    pub fn run_feed(&self) -> &RunFeed {
        &self.sh.feed
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

    /// [`Coord::trigger`] by an API token (`author`), whose rights the run's trigger jobs
    /// act with.
    pub async fn trigger_as(
        &self,
        pipeline: &kiln_store::Pipeline,
        given: &BTreeMap<String, String>,
        by: &str,
        author: Option<TokenId>,
    ) -> ApiResult<kiln_store::Run> {
        let plan = self.plan_of(pipeline)?;
        check_params(&plan, given)?;
        let set = NewRunSet {
            key: None,
            group: None,
            parent: None,
            author,
            runs: vec![NewRun {
                pipeline: pipeline.id,
                params: serde_json::to_value(given).expect("a string map is JSON"),
                triggered_by: by.to_string(),
                retry_of: None,
                source: None,
            }],
        };
        let made = self.start_set(&set).await?;
        made.runs.into_iter().next().ok_or_else(|| ApiErr::internal("no run was created"))
    }

    /// Creates a set of runs (see [`kiln_store::Store::create_run_set`]: under a key, only
    /// once) and starts them when their pipelines have a free slot; the runs as they are then.
    pub async fn start_set(&self, set: &NewRunSet) -> ApiResult<RunSet> {
        let mut made = self.sh.store.create_run_set(set).await?;
        if made.created {
            for run in &made.runs {
                let plan = self.plan_of_run(run).await?;
                self.cancel_older_in_group(&plan, run).await?;
            }
        }
        let mut admitted = Vec::new();
        for run in &made.runs {
            if !admitted.contains(&run.pipeline_id) {
                admitted.push(run.pipeline_id);
                self.admit(run.pipeline_id).await;
            }
        }
        for run in &mut made.runs {
            *run = self.sh.store.run(&run.id).await?;
        }
        Ok(made)
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
        check_params(&plan, given)?;
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

    /// Creates the run a claimed trigger intends (see [`kiln_store::Store::start_intent`])
    /// and starts it when a slot is free; an intent that has its run already gives that run,
    /// and nothing is created twice. An intent its pipeline no longer accepts (its params do
    /// not bind, the workflow no longer compiles) is given up with that error.
    pub async fn start_intent(&self, intent: &RunIntent) -> ApiResult<kiln_store::Run> {
        if let Some(run) = self.sh.store.run_by_trigger(&intent.key).await? {
            return Ok(run);
        }
        let pipeline = self.sh.store.pipeline_by_id(&intent.pipeline).await?;
        let plan = match self.plan_of(&pipeline).and_then(|plan| {
            check_params(&plan, &intent.params)?;
            Ok(plan)
        }) {
            Ok(plan) => plan,
            Err(e) => {
                self.sh.store.abandon_intent(&intent.key, &e.message).await?;
                return Err(e);
            }
        };
        match self.sh.store.start_intent(&intent.key).await? {
            IntentRun::Created(run) => {
                self.cancel_older_in_group(&plan, &run).await?;
                self.admit(pipeline.id).await;
                Ok(self.sh.store.run(&run.id).await?)
            }
            IntentRun::Existed(run) => Ok(run),
            IntentRun::Abandoned(why) => Err(ApiErr::conflict(why)),
        }
    }

    /// Retries a failed, canceled or timed-out run: a new run of the same workflow and params
    /// that reuses every job that succeeded (outputs and artifacts kept) and runs the others.
    pub async fn retry(&self, run: &kiln_store::Run, by: &str) -> ApiResult<kiln_store::Run> {
        self.retry_as(run, by, None).await
    }

    /// [`Coord::retry`] by an API token (`author`), whose rights the new run's trigger jobs
    /// act with.
    pub async fn retry_as(
        &self,
        run: &kiln_store::Run,
        by: &str,
        author: Option<TokenId>,
    ) -> ApiResult<kiln_store::Run> {
        if !run.state.is_final() {
            return Err(ApiErr::conflict(format!(
                "run {} is still {}; cancel it or wait for it to end before retrying",
                run.full_name(),
                run.state.as_str()
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
        let set = NewRunSet {
            key: None,
            group: None,
            parent: None,
            author,
            runs: vec![NewRun {
                pipeline: run.pipeline_id,
                params: run.params.clone(),
                triggered_by: by.to_string(),
                retry_of: Some(run.id),
                source: run.source.clone(),
            }],
        };
        let new = self.sh.store.create_run_set(&set).await?.runs.remove(0);
        let events: Vec<Event> = reused
            .iter()
            .map(|j| Event::JobReused { job: j.job.clone(), outputs: j.outputs.clone() })
            .collect();
        if !events.is_empty() {
            self.sh.record(&new.id, &new.project, &Step { events, ..Step::default() }).await?;
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
                    .record(
                        &run.id,
                        &run.project,
                        &Step {
                            events: vec![event.clone()],
                            state: Some((RunState::Canceled, Some(reason))),
                            ..Step::default()
                        },
                    )
                    .await?;
                self.sh.logs.close(&run_log_key(&run.id)).ok();
                return Ok(());
            }
            return Err(ApiErr::conflict(format!(
                "run {} is {}: it does not take this any more",
                run.full_name(),
                run.state.as_str()
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

    async fn fail_unstartable(&self, run: &kiln_store::Run, why: &str) {
        let step = Step {
            events: Vec::new(),
            state: Some((RunState::Failure, Some(format!("could not start: {why}")))),
            ..Step::default()
        };
        if let Err(e) = self.sh.record(&run.id, &run.project, &step).await {
            tracing::error!("mark run {} failed: {e}", run.full_name());
        }
    }

    /// Deletes the service pools of runs (and jobs) that ended while the server was down;
    /// call it before [`Coord::recover`] (and after the services recovered). How many.
    pub async fn sweep_pools(&self) -> Result<usize, StoreError> {
        pools::sweep(&self.sh.store, &self.sh.services).await
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
        let run_env = self.run_env(&run, &plan, pipeline.project_id).await?;
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
        let engine = Run::new(plan.clone(), params);
        let mut actor =
            Actor::new(self.clone(), run, plan, pipeline.project_id, run_env, prior, tx.clone());
        let first = match replay {
            None => actor.start(engine).await?,
            Some(events) => actor.replay(engine, events).await?,
        };
        let (run_id, pipeline_id, group) = actor.key();
        lock(&self.sh.actors).insert(run_id, ActorRef { tx });
        *lock(&self.sh.active).entry((pipeline_id, group)).or_default() += 1;
        tokio::spawn(actor.main(rx, first));
        Ok(())
    }
}

/// Refuses `given` params that do not bind to `plan`'s (`invalid_params`).
pub fn check_params(plan: &Plan, given: &BTreeMap<String, String>) -> ApiResult<()> {
    let pairs: Vec<(String, String)> = given.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Err(errors) = kiln_workflow::bind_params(plan, &pairs) {
        let mut e = ApiErr::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            kiln_api::codes::INVALID_PARAMS,
            errors.join("; "),
        );
        e.diagnostics = Vec::new();
        return Err(e);
    }
    Ok(())
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
