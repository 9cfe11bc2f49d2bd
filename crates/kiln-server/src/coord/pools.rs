//! Build-scoped service pools of a run (a workflow's `service-pools`, docs/services.md): a
//! service the run owns, created through the same [`Services`] as `kiln service apply`
//! (named `<pipeline>-<run number>[-<job>]-<pool>`, labelled `kiln.run` and `kiln.pool`,
//! its ownership stored so a restart can find it), that the jobs using it wait for.
//!
//! One task per pool (`run_pool`) creates the service, then tells the run's actor what the
//! pool looks like after every change of the store's service event log (healthy instances,
//! why the others are not), and deletes the service once told to stop. The actor keeps the
//! attempts that wait for pools ([`RunPools`]): an attempt is dispatched once every pool it
//! uses has `ready` healthy instances, with the pools' exports rendered then from the
//! instances healthy then ([`kiln_workflow::pool::render_exports`]); it fails with the
//! pools' reasons after the longest of their `timeout`s.
//!
//! Invariants: a pool's service is deleted when its owner ends, however it ends (the
//! actor's `finish` stops every pool; a job's pools stop when the job reaches a final
//! state), and at start for owners that ended while the server was down ([`sweep`]); a pool
//! task whose actor is gone (rebuilt after a store error) leaves its service to the new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_api::service::ServiceInfo;
use kiln_engine::StartJob;
use kiln_store::{ServiceOwner, Store};
use kiln_workflow::plan::{Job, JobId, Plan};
use kiln_workflow::pool::{Pool, PoolInstance, render_exports};
use kiln_workflow::service::ServiceSpec;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RunMsg, RunTx};
use crate::dispatch::Dispatch;
use crate::services::{POOL_LABEL, RUN_LABEL, Services};

/// The env var that lists, on a pool's instances, the host IPs (as `/32`, space separated)
/// of the nodes that may run the run's jobs that use it: for an allowlist.
pub const CLIENTS_VAR: &str = "KILN_POOL_CLIENTS";

/// How long the run's end waits for its pools' services to be deleted.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What a pool task tells its run's actor.
#[derive(Debug)]
pub enum PoolMsg {
    /// What pool `index` looks like now.
    News {
        /// The pool's index in [`RunPools`].
        index: usize,
        /// Its instances.
        view: PoolView,
    },
    /// An attempt waited for its pools as long as it may.
    WaitOver {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: u32,
    },
}

/// A pool as its jobs see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolView {
    /// Its healthy instances (of the service's current template).
    healthy: Vec<PoolInstance>,
    /// Why the others are not, for people.
    summary: String,
    /// Why it can never become ready (its service could not be created, or was deleted).
    failed: Option<String>,
}

/// Whether pools let an attempt go.
#[derive(Debug, PartialEq)]
enum Gate {
    /// Yes, with this env added (the pools' exports).
    Go(BTreeMap<String, String>),
    /// Not yet.
    Wait,
    /// Never: it fails with this reason.
    Fail(String),
}

/// What becomes of an attempt that uses pools.
#[derive(Debug)]
pub enum Admit {
    /// Dispatch it, with the pools' exports added to its env.
    Go(StartJob, BTreeMap<String, String>),
    /// Fail it with this reason.
    Fail(StartJob, String),
    /// It waits (held here); after `after`, call [`RunPools::wait_over`].
    Wait {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: u32,
        /// The longest `timeout` of the pools it waits for.
        after: Duration,
    },
}

/// What every pool task of a run shares.
#[derive(Debug)]
pub struct PoolCtx {
    /// Creates, reads and deletes the services.
    pub services: Services,
    /// Where queued instances say why they wait.
    pub dispatch: Arc<Dispatch>,
    /// Where the run's workflow is read (kept as its pools' source).
    pub store: Store,
    /// The run.
    pub run: kiln_store::Run,
    /// The run's actor.
    pub tx: RunTx,
}

struct PoolState {
    pool: Pool,
    /// The job that owns it; `None`: the whole run.
    job: Option<JobId>,
    /// Its service's name.
    service: String,
    view: PoolView,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

struct Waiting {
    start: StartJob,
    pools: Vec<usize>,
}

/// The pools of one run and the attempts waiting for them; owned by the run's actor.
pub struct RunPools {
    ctx: Arc<PoolCtx>,
    pools: Vec<PoolState>,
    waiting: Vec<Waiting>,
}

/// A duration as a workflow writes it: `5m`, `90s`, `1h`, `500ms`.
fn short(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `text` as part of a service name: lowercase letters and digits, other runs of characters
/// as one `-`, none at either end.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The service name of pool `pool` of run `number` of `pipeline` (of `job`, for a job's
/// own pool): `<pipeline>-<number>[-<job>]-<pool>`, the pipeline's part (then the job's)
/// shortened to fit 63 characters.
pub fn service_name(pipeline: &str, number: u64, job: Option<&str>, pool: &str) -> String {
    let tail = format!("-{number}");
    let mut job = job.map(slug).unwrap_or_default();
    let mut pipeline = slug(pipeline);
    let fixed = tail.len() + 1 + pool.len();
    let room = 63usize.saturating_sub(fixed + if job.is_empty() { 0 } else { 1 });
    if pipeline.len() + job.len() > room {
        let keep = room.saturating_sub(job.len()).max(room / 2).min(pipeline.len());
        pipeline.truncate(keep);
        job.truncate(room.saturating_sub(pipeline.len()));
    }
    let parts: Vec<String> = [pipeline, tail[1..].to_string(), job, pool.to_string()]
        .into_iter()
        .map(|p| p.trim_matches('-').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("-")
}

/// The pool's service as it is created: its name, the labels that say whose it is, and the
/// clients' allowlist in its env.
fn pool_spec(pool: &Pool, name: &str, run: &kiln_store::RunId, clients: &[String]) -> ServiceSpec {
    let mut spec = pool.service.clone();
    spec.name = name.to_string();
    spec.labels.insert(RUN_LABEL.into(), run.to_string());
    spec.labels.insert(POOL_LABEL.into(), pool.name.clone());
    let cidrs: Vec<String> = clients
        .iter()
        .map(|ip| if ip.contains(':') { format!("{ip}/128") } else { format!("{ip}/32") })
        .collect();
    spec.env.insert(CLIENTS_VAR.into(), cidrs.join(" "));
    spec
}

/// The healthy instances of a pool's service and why the others are not.
fn view_of(info: &ServiceInfo, dispatch: &Dispatch, service_id: Option<&str>) -> PoolView {
    let healthy: Vec<PoolInstance> = info
        .instances
        .iter()
        .filter(|i| i.state == "healthy" && i.version == info.template)
        .map(|i| PoolInstance {
            id: i.id.clone(),
            slot: i.slot,
            node: i.node.clone().unwrap_or_default(),
            ip: i.host_ip.clone().unwrap_or_default(),
            ports: i.ports.clone(),
            labels: info.labels.clone(),
        })
        .collect();
    let mut notes = Vec::new();
    for i in info.instances.iter().filter(|i| i.state != "healthy") {
        let why = match (&i.reason, service_id) {
            (Some(r), _) => r.clone(),
            (None, Some(id)) if i.state == "staging" => dispatch
                .task_waiting(&format!("svc/{id}/{}", i.id))
                .map(|w| format!("waits for a node: {w}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let at = i.node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
        let why = if why.is_empty() { String::new() } else { format!(": {why}") };
        notes.push(format!("slot {}{at} {}{why}", i.slot, i.state));
    }
    for w in &info.waits {
        notes.push(format!("slot {}: {}", w.slot, w.reason));
    }
    PoolView { healthy, summary: notes.join("; "), failed: None }
}

/// Creates the pool's service, tells the actor what it looks like after every change, and
/// deletes it once `stop` fires. Ends without deleting when the actor is gone.
async fn run_pool(
    ctx: Arc<PoolCtx>,
    index: usize,
    spec: ServiceSpec,
    owner: ServiceOwner,
    stop: CancellationToken,
) {
    let name = spec.name.clone();
    let project = &ctx.run.project;
    let tell = |view: PoolView| ctx.tx.send(RunMsg::Pool(PoolMsg::News { index, view })).is_ok();
    let by = format!("run {}", ctx.run.full_name());
    let create = async {
        // The workflow is kept as the pool's source (`kiln service history`).
        let source = ctx.store.run_source(&ctx.run.id).await.map_err(crate::error::ApiErr::from)?;
        ctx.services.ensure_owned(project, &spec, &owner, (&source.file, &source.yaml), &by).await
    };
    let created = tokio::select! {
        r = create => r,
        () = stop.cancelled() => {
            // The creation may have committed: it is ours either way.
            let _ = ctx.services.delete_if_present(project, &name).await;
            return;
        }
    };
    let record = match created {
        Ok(r) => r,
        Err(e) => {
            let pool = spec.labels.get(POOL_LABEL).cloned().unwrap_or_default();
            tell(PoolView {
                failed: Some(format!(
                    "service pool `{pool}`: its service `{name}` could not be created: {}",
                    e.message
                )),
                ..PoolView::default()
            });
            return;
        }
    };
    let id = record.id.to_string();
    let mut revisions = ctx.services.revisions();
    let mut last: Option<PoolView> = None;
    loop {
        let view = match ctx.services.get(project, &name).await {
            Ok(info) => Some(view_of(&info, &ctx.dispatch, Some(&id))),
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => Some(PoolView {
                failed: Some(format!("its service `{name}` was deleted")),
                ..PoolView::default()
            }),
            Err(e) => {
                tracing::warn!("pool {name} of run {}: {}", ctx.run.full_name(), e.message);
                None
            }
        };
        if let Some(view) = view
            && last.as_ref() != Some(&view)
        {
            if !tell(view.clone()) {
                return;
            }
            last = Some(view);
        }
        if ctx.tx.is_closed() {
            // The actor was rebuilt: the new one took the pool over.
            return;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = revisions.changed() => {
                if changed.is_err() {
                    // The server is stopping: look again later (or never).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    if let Err(e) = ctx.services.delete_if_present(project, &name).await {
        tracing::warn!("delete pool {name} of run {}: {}", ctx.run.full_name(), e.message);
    }
}

impl RunPools {
    /// No pools yet.
    pub fn new(ctx: PoolCtx) -> RunPools {
        RunPools { ctx: Arc::new(ctx), pools: Vec::new(), waiting: Vec::new() }
    }

    /// Starts (or takes back, after a restart) the pools of the whole run.
    pub fn start_run_pools(&mut self, plan: &Plan) {
        let constraints: Vec<_> =
            plan.jobs.iter().filter_map(|j| j.scheduling.constraints().ok()).collect();
        for pool in &plan.pools {
            self.spawn(pool, None, &constraints);
        }
    }

    fn spawn(
        &mut self,
        pool: &Pool,
        job: Option<&JobId>,
        constraints: &[kiln_scheduler::Constraints],
    ) {
        let run = &self.ctx.run;
        let name = service_name(&run.pipeline, run.number, job.map(JobId::as_str), &pool.name);
        let clients = self.ctx.dispatch.node_ips_matching(constraints);
        let spec = pool_spec(pool, &name, &run.id, &clients);
        let owner = ServiceOwner { run: run.id, job: job.map(|j| j.to_string()) };
        let stop = CancellationToken::new();
        let index = self.pools.len();
        let task = tokio::spawn(run_pool(self.ctx.clone(), index, spec, owner, stop.clone()));
        self.pools.push(PoolState {
            pool: pool.clone(),
            job: job.cloned(),
            service: name,
            view: PoolView::default(),
            stop,
            task: Some(task),
        });
    }

    /// The pools `job` (as the plan has it) uses: the run's, and its own (started now if
    /// they are not yet).
    fn used_by(&mut self, job: &Job) -> Vec<usize> {
        for pool in &job.pools {
            let started = self
                .pools
                .iter()
                .any(|p| p.job.as_ref() == Some(&job.id) && p.pool.name == pool.name);
            if !started {
                let constraints: Vec<_> = job.scheduling.constraints().ok().into_iter().collect();
                self.spawn(pool, Some(&job.id), &constraints);
            }
        }
        (0..self.pools.len())
            .filter(|&i| self.pools[i].job.as_ref().is_none_or(|j| j == &job.id))
            .collect()
    }

    /// Whether an attempt using `pools` may go now.
    fn gate(&self, pools: &[usize]) -> Gate {
        let mut env = BTreeMap::new();
        for &i in pools {
            let p = &self.pools[i];
            if let Some(why) = &p.view.failed {
                return Gate::Fail(why.clone());
            }
            if p.view.healthy.len() < p.pool.ready as usize {
                return Gate::Wait;
            }
            match render_exports(&p.pool.export, &p.service, &p.view.healthy) {
                Ok(out) => env.extend(out),
                Err(e) => return Gate::Fail(format!("service pool `{}`: {e}", p.pool.name)),
            }
        }
        Gate::Go(env)
    }

    /// What becomes of attempt `start` of `job` (the plan's); a job without pools goes at
    /// once with no env added.
    pub fn admit(&mut self, job: &Job, start: StartJob) -> Admit {
        let pools = self.used_by(job);
        match self.gate(&pools) {
            Gate::Go(env) => Admit::Go(start, env),
            Gate::Fail(why) => Admit::Fail(start, why),
            Gate::Wait => {
                let after =
                    pools.iter().map(|&i| self.pools[i].pool.timeout).max().unwrap_or_default();
                let (job, attempt) = (start.job.id.clone(), start.attempt);
                self.waiting.push(Waiting { start, pools });
                Admit::Wait { job, attempt, after }
            }
        }
    }

    /// Takes a pool's news; returns what becomes of the waiting attempts it decides.
    pub fn news(&mut self, index: usize, view: PoolView) -> Vec<Admit> {
        let Some(p) = self.pools.get_mut(index) else { return Vec::new() };
        p.view = view;
        let mut out = Vec::new();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiting) {
            match self.gate(&w.pools) {
                Gate::Wait => keep.push(w),
                Gate::Go(env) => out.push(Admit::Go(w.start, env)),
                Gate::Fail(why) => out.push(Admit::Fail(w.start, why)),
            }
        }
        self.waiting = keep;
        out
    }

    /// An attempt's wait is over: if it still waits, it is dropped and the reason it failed
    /// comes back.
    pub fn wait_over(&mut self, job: &JobId, attempt: u32) -> Option<String> {
        let pos = self
            .waiting
            .iter()
            .position(|w| &w.start.job.id == job && w.start.attempt == attempt)?;
        let w = self.waiting.remove(pos);
        let reasons: Vec<String> = w
            .pools
            .iter()
            .map(|&i| &self.pools[i])
            .filter(|p| p.view.healthy.len() < p.pool.ready as usize)
            .map(|p| {
                let details = if p.view.summary.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.view.summary)
                };
                format!(
                    "service pool `{}` (service `{}`) was not ready after {}: {} of {} needed \
                     instances healthy{details}",
                    p.pool.name,
                    p.service,
                    short(p.pool.timeout),
                    p.view.healthy.len(),
                    p.pool.ready,
                )
            })
            .collect();
        Some(reasons.join("; "))
    }

    /// Drops a waiting attempt (it was canceled); whether it waited.
    pub fn forget(&mut self, job: &JobId, attempt: u32) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| !(&w.start.job.id == job && w.start.attempt == attempt));
        before != self.waiting.len()
    }

    /// Stops the pools of `job` (it reached a final state): their services are deleted.
    pub fn job_ended(&mut self, job: &JobId) {
        for p in self.pools.iter().filter(|p| p.job.as_ref() == Some(job)) {
            p.stop.cancel();
        }
    }

    /// Stops every pool and waits (a while) until their services are deleted.
    pub async fn finish(&mut self) {
        for p in &self.pools {
            p.stop.cancel();
        }
        let tasks: Vec<JoinHandle<()>> =
            self.pools.iter_mut().filter_map(|p| p.task.take()).collect();
        let _ = tokio::time::timeout(STOP_WAIT, futures::future::join_all(tasks)).await;
    }
}

/// Deletes the pools whose owner ended while the server was down (or whose run is gone):
/// run at start, before runs are recovered. Returns how many were deleted.
pub async fn sweep(store: &Store, services: &Services) -> Result<usize, kiln_store::StoreError> {
    let mut deleted = 0;
    for s in store.owned_services().await? {
        let Some(owner) = &s.owner else { continue };
        let ended = match store.run(&owner.run).await {
            Ok(run) if run.state.is_final() => true,
            Ok(_) => match &owner.job {
                Some(job) => store
                    .jobs(&owner.run)
                    .await?
                    .iter()
                    .any(|j| j.job.as_str() == job && j.state.is_final()),
                None => false,
            },
            Err(kiln_store::StoreError::NotFound(_)) => true,
            Err(e) => return Err(e),
        };
        if ended {
            match services.delete_if_present(&s.project, &s.name).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!("delete pool {}/{}: {}", s.project, s.name, e.message),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_fit_and_say_whose() {
        assert_eq!(service_name("C++ Build", 12, None, "distcc"), "c-build-12-distcc");
        assert_eq!(
            service_name("ci", 3, Some("test[linux,1]"), "cache"),
            "ci-3-test-linux-1-cache"
        );
        let long = "x".repeat(80);
        let name = service_name(&long, 123456, Some(&long), "distcc");
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-distcc") && name.contains("-123456-"), "{name}");
        let name = service_name(&long, 1, None, "p");
        assert!(name.len() <= 63 && name.ends_with("-1-p"), "{name}");
        assert_eq!(service_name("---", 1, None, "p"), "1-p");
    }

    #[test]
    fn the_pool_spec_says_whose_it_is_and_who_may_connect() {
        let plan = kiln_workflow::compile(
            "w.yml",
            &One("name: w\nservice-pools:\n  farm:\n    service: { command: [x], replicas: 2 }\nstages:\n  - name: s\n    jobs:\n      a: { script: [a] }\n"),
        )
        .plan
        .expect("compiles");
        let run = kiln_store::RunId::new();
        let spec =
            pool_spec(&plan.pools[0], "w-1-farm", &run, &["10.0.0.2".into(), "fd00::1".into()]);
        assert_eq!(spec.name, "w-1-farm");
        assert_eq!(spec.labels[RUN_LABEL], run.to_string());
        assert_eq!(spec.labels[POOL_LABEL], "farm");
        assert_eq!(spec.env[CLIENTS_VAR], "10.0.0.2/32 fd00::1/128");
    }

    struct One(&'static str);
    impl kiln_workflow::Loader for One {
        fn load(&self, _: &str, path: &str) -> Result<kiln_workflow::Source, String> {
            Ok(kiln_workflow::Source { name: path.to_string(), text: self.0.to_string() })
        }
    }
}
