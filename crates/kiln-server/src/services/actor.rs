//! A service's actor: keeps the service's record, the spec of its template and its live
//! instances; after every change (an agent's report, a new version, a timer) it asks
//! `kiln_service::reconcile` what to do and does it: places instances through the
//! dispatcher, cancels their leases, records roll-backs and completed updates.
//!
//! A service with `config:` is followed by a watcher task (`follow_config`) that hands the
//! actor each head of its config application in its environment (`ServiceMsg::ConfigHead`);
//! the actor then restarts the service (`on-change: restart` and a new release to
//! everyone) and sends each live instance whose release changed its files
//! (`sync_config`).
//!
//! Invariant: every instance change is stored before the next decision is taken, so what
//! discovery serves is what the controller decided on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kiln_api::agent::{ConfigUpdate, InstanceConfig, InstanceLease, Lease};
use kiln_engine::{Outcome, StartJob};
use kiln_logs::Masker;
use kiln_service::{Action, Desired, Instance, InstanceId, InstanceState, Observed, Restart};
use kiln_store::{InstanceRecord, NewServiceVersion, ServiceId, ServiceRecord};
use kiln_workflow::plan::{Job, JobId, RetryPolicy};
use kiln_workflow::service::{OnChange, ServiceSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ServiceMsg, ServiceTx, Shared, View, lock, with_replicas};
use crate::dispatch::{Canceled, InstanceCtx, Owner, Queued, TaskCtx, instance_key};

/// Most passes in a row without a message (a roll-back or a completed update asks for
/// another at once).
const MAX_PASSES: usize = 4;

/// Runs the actor of service `id` until it is deleted.
pub(super) async fn run(
    sh: Arc<Shared>,
    id: ServiceId,
    tx: ServiceTx,
    mut rx: mpsc::UnboundedReceiver<ServiceMsg>,
    view: Arc<Mutex<View>>,
) {
    let mut actor = match Actor::load(sh, id, tx, view).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("service {id}: {e}");
            return;
        }
    };
    loop {
        let wake = match actor.pass().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("service {}: {e}; trying again in 1s", actor.name());
                Some(Utc::now() + chrono::Duration::seconds(1))
            }
        };
        let first = match wake {
            None => rx.recv().await,
            Some(at) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                match tokio::time::timeout(wait.max(Duration::from_millis(5)), rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
        }
        for msg in batch {
            match actor.handle(msg).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!("service {}: {e}", actor.name()),
            }
        }
    }
}

struct Actor {
    sh: Arc<Shared>,
    id: ServiceId,
    tx: ServiceTx,
    view: Arc<Mutex<View>>,
    record: ServiceRecord,
    spec: ServiceSpec,
    /// Instances not forgotten.
    instances: Vec<InstanceRecord>,
    /// Instances being stopped because they failed their health check (their end counts
    /// as a failure, with backoff).
    unhealthy: HashSet<String>,
    /// The config application and environment followed, and the task that follows them.
    follower: Option<((String, String), JoinHandle<()>)>,
    /// Their head, as last heard.
    config_head: Option<Arc<crate::config_center::Head>>,
    /// The config release last handed to each instance (in its lease or an update).
    sent: HashMap<String, u32>,
}

impl Drop for Actor {
    fn drop(&mut self) {
        if let Some((_, task)) = self.follower.take() {
            task.abort();
        }
    }
}

/// What an instance gets beyond its spec: its environment's variables (secrets opened),
/// the values its log masks, and its config files.
#[derive(Debug, Default)]
pub(super) struct Extras {
    env: BTreeMap<String, String>,
    masked: Vec<String>,
    config: Option<InstanceConfig>,
}

/// The variable naming an instance's environment.
pub const ENVIRONMENT_VAR: &str = "KILN_ENVIRONMENT";

/// What instance `instance` of `spec` (a service of `project`) gets now: `Err` says why it
/// cannot start (an environment deleted since, a release gone). `with_config`: its config
/// files too (not for an adopted instance, whose lease is not sent again).
pub(super) async fn extras(
    sh: &Shared,
    project: &str,
    spec: &ServiceSpec,
    instance: &str,
    with_config: bool,
) -> std::result::Result<Extras, String> {
    let mut out = Extras::default();
    let Some(env) = &spec.environment else { return Ok(out) };
    let vars = sh
        .environments
        .variables(project, env)
        .await
        .map_err(|e| format!("environment `{env}`: {}", e.message))?;
    out.env = vars.env;
    out.masked = vars.masked;
    out.env.insert(ENVIRONMENT_VAR.to_string(), env.clone());
    let (Some(config), true) = (&spec.config, with_config) else { return Ok(out) };
    let app = config.app_or(&spec.name);
    let served = sh
        .config
        .served(project, app, env, instance)
        .await
        .map_err(|e| format!("config `{app}` in `{env}`: {}", e.message))?;
    let Some(d) = served else {
        return Err(format!(
            "no release of config `{app}` in `{env}` yet: kiln config release {app} --env {env}"
        ));
    };
    out.config = Some(InstanceConfig {
        path: config.path.clone(),
        release: d.release,
        digest: d.digest,
        files: d.files,
        on_change: match &config.on_change {
            OnChange::Restart => kiln_api::agent::OnChange::Restart,
            OnChange::Signal(signal) => {
                kiln_api::agent::OnChange::Signal { signal: signal.clone() }
            }
            OnChange::None => kiln_api::agent::OnChange::None,
        },
    });
    Ok(out)
}

/// Hands the actor behind `tx` every head of `app` in `env` of `project`, the first at
/// once; ends when the actor does, or the head goes (its environment deleted).
async fn follow_config(
    config: crate::config_center::ConfigCenter,
    (project, app, env): (String, String, String),
    tx: ServiceTx,
) {
    let mut rx = loop {
        match config.watch(&project, &app, &env).await {
            Ok(rx) => break rx,
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
                tracing::warn!("config of `{project}/{app}` in `{env}`: {}", e.message);
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "config of `{project}/{app}` in `{env}`: {}; again in 5s",
                    e.message
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    loop {
        let head = rx.borrow_and_update().clone();
        let msg = ServiceMsg::ConfigHead { app: app.clone(), env: env.clone(), head };
        if tx.send(msg).is_err() || rx.changed().await.is_err() {
            return;
        }
    }
}

type Result<T> = std::result::Result<T, kiln_store::StoreError>;

fn ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Actor {
    async fn load(
        sh: Arc<Shared>,
        id: ServiceId,
        tx: ServiceTx,
        view: Arc<Mutex<View>>,
    ) -> Result<Actor> {
        let record = sh.store.service_by_id(&id).await?;
        let spec = spec_of(&sh, &record).await?;
        let instances = sh.store.instances(&id, false).await?;
        let mut actor = Actor {
            sh,
            id,
            tx,
            view,
            record,
            spec,
            instances,
            unhealthy: HashSet::new(),
            follower: None,
            config_head: None,
            sent: HashMap::new(),
        };
        actor.follow();
        Ok(actor)
    }

    /// The config application and environment the spec follows, if any.
    fn config_key(&self) -> Option<(String, String)> {
        let env = self.spec.environment.as_ref()?;
        let app = self.spec.config.as_ref()?.app_or(&self.spec.name);
        Some((app.to_string(), env.clone()))
    }

    /// Follows the head the spec names (a new follower when it changed).
    fn follow(&mut self) {
        let key = self.config_key();
        if self.follower.as_ref().map(|(k, _)| k) == key.as_ref() {
            return;
        }
        if let Some((_, task)) = self.follower.take() {
            task.abort();
        }
        self.config_head = None;
        if let Some((app, env)) = key {
            let what = (self.record.project.clone(), app.clone(), env.clone());
            let task = tokio::spawn(follow_config(self.sh.config.clone(), what, self.tx.clone()));
            self.follower = Some(((app, env), task));
        }
    }

    /// A new head of the followed config: a rolling restart when the service asks for one
    /// and everyone's release changed, then updates for the instances whose release did.
    async fn config_head(&mut self, head: Arc<crate::config_center::Head>) -> Result<()> {
        let number = |h: &crate::config_center::Head| h.current.as_ref().map(|s| s.number);
        let before = self.config_head.replace(head.clone());
        let restart =
            matches!(self.spec.config.as_ref().map(|c| &c.on_change), Some(OnChange::Restart));
        if let (true, Some(before), Some(now)) = (restart, before, number(&head))
            && number(&before) != Some(now)
        {
            self.config_restart(now).await?;
        }
        self.sync_config();
        Ok(())
    }

    /// Replaces every instance (a new version of the same spec), for config release `n`.
    async fn config_restart(&mut self, n: u32) -> Result<()> {
        let app = self.config_key().map(|(app, _)| app).unwrap_or_default();
        let source = self.sh.store.service_version(&self.id, self.record.template).await?;
        let version = NewServiceVersion {
            kind: "restart".into(),
            replicas: self.record.replicas,
            template: None,
            spec: source.spec,
            yaml: source.yaml,
            file: source.file,
            note: Some(format!("config release {n} of {app}")),
            by: "kiln".into(),
            owner: self.record.owner.clone(),
            deployed: None,
        };
        tracing::info!("service {}: config release {n} of {app}: rolling restart", self.name());
        self.sh
            .store
            .add_service_version(&self.record.project, &self.record.name, &version)
            .await?;
        self.reload().await
    }

    /// Sends each live instance whose release changed the one it gets now (with the
    /// service's signal; none for a rolling restart's in-place gray or late updates). With
    /// `on-change: restart`, only instances of the current template (the others are being
    /// replaced).
    fn sync_config(&mut self) {
        let (Some(head), Some(config)) = (self.config_head.clone(), self.spec.config.clone())
        else {
            return;
        };
        let signal = match &config.on_change {
            OnChange::Signal(s) => Some(s.clone()),
            OnChange::Restart | OnChange::None => None,
        };
        let restart = config.on_change == OnChange::Restart;
        for i in &self.instances {
            let live = matches!(
                InstanceState::parse(&i.state),
                Some(
                    InstanceState::Staging
                        | InstanceState::Starting
                        | InstanceState::Healthy
                        | InstanceState::Unhealthy
                )
            );
            if !live || (restart && i.version != self.record.template) {
                continue;
            }
            let Some(served) = head.serves(Some(&i.id)) else { continue };
            let has = self.sent.get(&i.id).copied().or(i.config_release);
            if has == Some(served.number) {
                continue;
            }
            let delivered = match served.delivered() {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("service {}: release {}: {e}", self.name(), served.number);
                    continue;
                }
            };
            let update = ConfigUpdate {
                lease: String::new(),
                release: delivered.release,
                digest: delivered.digest,
                files: delivered.files,
                signal: signal.clone(),
            };
            if self.sh.dispatch.update_config(&instance_key(&self.id, &i.id), update) {
                self.sent.insert(i.id.clone(), served.number);
            }
        }
    }

    fn label(&self) -> crate::metrics::ServiceLabel {
        crate::metrics::ServiceLabel {
            project: self.record.project.clone(),
            service: self.record.name.clone(),
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.record.project, self.record.name)
    }

    async fn reload(&mut self) -> Result<()> {
        self.record = self.sh.store.service_by_id(&self.id).await?;
        self.spec = spec_of(&self.sh, &self.record).await?;
        self.follow();
        Ok(())
    }

    fn desired(&self) -> Desired {
        let f = self.spec.update.resolve(self.record.replicas);
        let restart = &self.spec.restart;
        Desired {
            version: self.record.template,
            replicas: self.record.replicas,
            max_surge: f.surge,
            max_unavailable: f.unavailable,
            deadline_ms: millis(self.spec.update.deadline),
            restart: Restart {
                policy: match restart.policy {
                    kiln_workflow::service::Restart::Always => kiln_service::RestartPolicy::Always,
                    kiln_workflow::service::Restart::OnFailure => {
                        kiln_service::RestartPolicy::OnFailure
                    }
                    kiln_workflow::service::Restart::Never => kiln_service::RestartPolicy::Never,
                },
                initial_ms: millis(restart.initial_backoff),
                max_ms: millis(restart.max_backoff),
            },
        }
    }

    fn observed(&self) -> Vec<Instance> {
        self.instances
            .iter()
            .filter_map(|i| {
                Some(Instance {
                    id: InstanceId(i.id.clone()),
                    slot: i.slot,
                    version: i.version,
                    state: InstanceState::parse(&i.state)?,
                    since_ms: ms(i.since),
                    started_ms: i.started_at.map(ms),
                    restarts: i.restarts,
                    exit_code: i.exit_code,
                })
            })
            .collect()
    }

    /// Reconciles and carries out the decision (again at once after a roll-back or a
    /// completed update); when to pass again without a message.
    async fn pass(&mut self) -> Result<Option<DateTime<Utc>>> {
        let mut wake = None;
        for _ in 0..MAX_PASSES {
            let desired = self.desired();
            let observed = self.observed();
            let decision = kiln_service::reconcile(Observed {
                desired: &desired,
                stable_version: self.record.stable,
                update_started_ms: self.record.update_started_at.map(ms),
                instances: &observed,
                now_ms: ms(Utc::now()),
            });
            let mut again = false;
            for action in decision.actions {
                again |= self.carry_out(action).await?;
            }
            wake = decision
                .wake_at_ms
                .and_then(|at| DateTime::from_timestamp_millis(i64::try_from(at).ok()?));
            *lock(&self.view) =
                View { instances: self.instances.clone(), waits: decision.waits.clone() };
            self.sh.metrics.service_states(
                &self.record.project,
                &self.record.name,
                self.instances.iter().map(|i| i.state.as_str()),
            );
            if !again {
                break;
            }
        }
        Ok(wake)
    }

    /// Does one action; whether the service's record changed (decide again).
    async fn carry_out(&mut self, action: Action) -> Result<bool> {
        match action {
            Action::Start { slot, version, restarts } => {
                self.start(slot, version, restarts).await?;
            }
            Action::Stop { instance, reason } => self.stop(&instance.0, reason).await?,
            Action::Forget { instance } => {
                if let Some(mut i) = self.take(&instance.0) {
                    i.forgotten = true;
                    let revision = self.sh.store.put_instance(&i, "forgotten").await?;
                    self.sh.revision.send_replace(revision);
                }
            }
            Action::RollBack { to_version, reason } => {
                tracing::warn!(
                    "service {}: {reason}; rolling back to version {to_version}",
                    self.name()
                );
                let source = self.sh.store.service_version(&self.id, to_version).await?;
                let version = NewServiceVersion {
                    kind: "auto-rollback".into(),
                    replicas: self.record.replicas,
                    template: Some(to_version),
                    spec: source.spec,
                    yaml: source.yaml,
                    file: source.file,
                    note: Some(reason),
                    by: "kiln".into(),
                    owner: None,
                    deployed: None,
                };
                self.sh
                    .store
                    .add_service_version(&self.record.project, &self.record.name, &version)
                    .await?;
                self.reload().await?;
                return Ok(true);
            }
            Action::Completed { version } => {
                self.sh.store.set_service_stable(&self.id, version).await?;
                self.reload().await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn take(&mut self, id: &str) -> Option<InstanceRecord> {
        let pos = self.instances.iter().position(|i| i.id == id)?;
        Some(self.instances.remove(pos))
    }

    async fn put(&mut self, i: InstanceRecord, kind: &str) -> Result<()> {
        let revision = self.sh.store.put_instance(&i, kind).await?;
        self.sh.revision.send_replace(revision);
        match self.instances.iter_mut().find(|x| x.id == i.id) {
            Some(slot) => *slot = i,
            None => self.instances.push(i),
        }
        Ok(())
    }

    async fn start(&mut self, slot: u32, version: u32, restarts: u32) -> Result<()> {
        let spec = if version == self.record.template {
            self.spec.clone()
        } else {
            spec_of_version(&self.sh, &self.id, version, self.record.replicas).await?
        };
        let id = uuid::Uuid::now_v7().simple().to_string()[..16].to_string();
        let now = Utc::now();
        let record = InstanceRecord {
            id: id.clone(),
            service_id: self.id,
            slot,
            version,
            state: InstanceState::Staging.as_str().into(),
            reason: None,
            node: None,
            host_ip: None,
            ports: BTreeMap::new(),
            lease: None,
            since: now,
            started_at: None,
            restarts,
            exit_code: None,
            forgotten: false,
            config_release: None,
        };
        self.put(record.clone(), "staging").await?;
        let extras = match extras(&self.sh, &self.record.project, &spec, &id, true).await {
            Ok(x) => x,
            Err(why) => {
                let failed = InstanceRecord {
                    state: InstanceState::Failed.as_str().into(),
                    reason: Some(format!("cannot start: {why}")),
                    since: Utc::now(),
                    ..record
                };
                return self.put(failed, "failed").await;
            }
        };
        if let Some(c) = &extras.config {
            self.sent.insert(id.clone(), c.release);
        }
        let task = instance_task(&self.sh, &self.record, &spec, &record, &self.tx, extras);
        if let Err((_, why)) = self.sh.dispatch.enqueue(task) {
            let failed = InstanceRecord {
                state: InstanceState::Failed.as_str().into(),
                reason: Some(format!("cannot be placed: {why}")),
                since: Utc::now(),
                ..record
            };
            self.put(failed, "failed").await?;
        }
        Ok(())
    }

    async fn stop(&mut self, id: &str, reason: String) -> Result<()> {
        let Some(i) = self.instances.iter().find(|i| i.id == id).cloned() else { return Ok(()) };
        let unhealthy = i.state == InstanceState::Unhealthy.as_str();
        if unhealthy {
            self.unhealthy.insert(i.id.clone());
        }
        // An unhealthy instance keeps what its check saw as its reason.
        let reason = if unhealthy { i.reason.clone().or(Some(reason)) } else { Some(reason) };
        match self.sh.dispatch.cancel_task(&instance_key(&self.id, &i.id)) {
            Canceled::Signalled => {
                let stopping = InstanceRecord {
                    state: InstanceState::Stopping.as_str().into(),
                    reason,
                    since: Utc::now(),
                    ..i
                };
                self.put(stopping, "stopping").await
            }
            // Never handed to an agent (or already gone): nothing runs.
            Canceled::Dequeued(_) | Canceled::Unknown => {
                self.ended(i, Outcome::Canceled, false).await
            }
        }
    }

    /// Records how instance `i` ended.
    async fn ended(&mut self, i: InstanceRecord, outcome: Outcome, lost: bool) -> Result<()> {
        let unhealthy = self.unhealthy.remove(&i.id);
        self.sent.remove(&i.id);
        // Its log ends here: whoever follows it hears the end.
        let _ = self.sh.logs.close(&super::instance_log_key(&self.id, &i.id));
        let now = Utc::now();
        let stopped_on_purpose = i.state == InstanceState::Stopping.as_str() && !unhealthy
            || (matches!(outcome, Outcome::Canceled) && !unhealthy && !lost);
        if stopped_on_purpose {
            self.take(&i.id);
            let done = InstanceRecord {
                state: "stopped".into(),
                lease: None,
                since: now,
                forgotten: true,
                ..i
            };
            let revision = self.sh.store.put_instance(&done, "stopped").await?;
            self.sh.revision.send_replace(revision);
            return Ok(());
        }
        let (state, reason, exit_code) = match (&outcome, lost) {
            (Outcome::Error(e), true) => (InstanceState::Lost, e.clone(), None),
            _ if unhealthy => {
                let last = i.reason.clone().unwrap_or_default();
                (InstanceState::Failed, format!("failed its health check: {last}"), None)
            }
            (Outcome::Exited(code), _) => {
                (InstanceState::Failed, format!("exited with code {code}"), Some(*code))
            }
            (Outcome::Killed { code, why }, _) => {
                (InstanceState::Failed, format!("{why} (exit code {code})"), Some(*code))
            }
            (Outcome::Error(e), false) => (InstanceState::Failed, e.clone(), None),
            (Outcome::TimedOut, _) => (InstanceState::Failed, "timed out".to_string(), None),
            (Outcome::Canceled, _) => (InstanceState::Failed, "canceled".to_string(), None),
        };
        self.sh.metrics.service_restarts.get_or_create(&self.label()).inc();
        let done = InstanceRecord {
            state: state.as_str().into(),
            reason: Some(reason),
            exit_code,
            lease: None,
            since: now,
            ..i
        };
        self.put(done, state.as_str()).await
    }

    /// Applies one message; false once the service is deleted.
    async fn handle(&mut self, msg: ServiceMsg) -> Result<bool> {
        match msg {
            ServiceMsg::Started { instance, lease, node, placement } => {
                let Some(i) = self.instances.iter().find(|i| i.id == instance).cloned() else {
                    return Ok(true);
                };
                let now = Utc::now();
                let ports = placement
                    .as_ref()
                    .map(|p| p.ports.iter().map(|x| (x.name.clone(), x.host)).collect())
                    .unwrap_or_default();
                let started = InstanceRecord {
                    state: InstanceState::Starting.as_str().into(),
                    reason: None,
                    lease: Some(lease),
                    node,
                    host_ip: placement.map(|p| p.ip),
                    ports,
                    since: now,
                    started_at: Some(now),
                    ..i
                };
                self.put(started, "started").await?;
            }
            ServiceMsg::Health { instance, healthy, detail } => {
                let Some(i) = self.instances.iter().find(|i| i.id == instance).cloned() else {
                    return Ok(true);
                };
                let running = matches!(
                    InstanceState::parse(&i.state),
                    Some(
                        InstanceState::Starting | InstanceState::Healthy | InstanceState::Unhealthy
                    )
                );
                let state = if healthy { InstanceState::Healthy } else { InstanceState::Unhealthy };
                let reason = (!detail.is_empty()).then_some(detail);
                // The same health again (an agent re-sends it when it registers anew, as
                // after a server restart) changes nothing.
                let same = i.state == state.as_str() && i.reason == reason;
                if running && !same {
                    if !healthy && i.state != InstanceState::Unhealthy.as_str() {
                        self.sh.metrics.service_health_failures.get_or_create(&self.label()).inc();
                    }
                    let changed = InstanceRecord {
                        state: state.as_str().into(),
                        reason,
                        since: Utc::now(),
                        ..i
                    };
                    self.put(changed, state.as_str()).await?;
                }
            }
            ServiceMsg::Ended { instance, outcome, lost } => {
                if let Some(i) = self.instances.iter().find(|i| i.id == instance).cloned() {
                    self.ended(i, outcome, lost).await?;
                }
            }
            ServiceMsg::Adopted { instance } => {
                // Taken back by its agent after a server restart: the same instance, in the
                // same state, told to discovery watchers.
                if let Some(i) = self.instances.iter().find(|i| i.id == instance).cloned() {
                    tracing::info!(
                        "service {}: instance {} adopted on {}",
                        self.name(),
                        i.id,
                        i.node.as_deref().unwrap_or("?")
                    );
                    self.put(i, "adopted").await?;
                }
            }
            ServiceMsg::ConfigApplied { instance, release } => {
                if let Some(i) = self.instances.iter().find(|i| i.id == instance).cloned()
                    && i.config_release != Some(release)
                {
                    self.put(InstanceRecord { config_release: Some(release), ..i }, "config")
                        .await?;
                }
            }
            ServiceMsg::ConfigHead { app, env, head } => {
                // A follower of what the spec no longer names may still have spoken.
                if self.config_key() == Some((app, env)) {
                    self.config_head(head).await?;
                }
            }
            ServiceMsg::Changed => self.reload().await?,
            ServiceMsg::Delete => {
                for i in std::mem::take(&mut self.instances) {
                    self.sh.dispatch.cancel_task(&instance_key(&self.id, &i.id));
                }
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The task of instance `i` of service `record` running `spec`: its lease (as handed out at
/// its start, the same again when it is adopted after a restart) and its context, with its
/// discovery token in its env and masked in its log.
pub(super) fn instance_task(
    sh: &Shared,
    record: &ServiceRecord,
    spec: &ServiceSpec,
    i: &InstanceRecord,
    tx: &ServiceTx,
    extras: Extras,
) -> Queued {
    let service = format!("{}/{}", record.project, record.name);
    let key = instance_key(&record.id, &i.id);
    let name = format!("instance {} of service {service}", i.id);
    // The environment's variables win over the file's `env` (as GitLab's environment-scoped
    // variables do over defaults), and Kiln's own over both.
    let mut own = spec.env.clone();
    own.extend(extras.env.clone());
    let (mut env, token) = sh.tasks.env(record.project_id, &key, &name, &own);
    env.extend(extras.env);
    env.extend([
        ("KILN_PROJECT".to_string(), record.project.clone()),
        ("KILN_SERVICE".to_string(), record.name.clone()),
        ("KILN_INSTANCE".to_string(), i.id.clone()),
        ("KILN_SLOT".to_string(), i.slot.to_string()),
        ("KILN_SERVICE_VERSION".to_string(), i.version.to_string()),
    ]);
    let job = Job {
        id: JobId::from(i.id.as_str()),
        base: spec.name.clone(),
        stage: 0,
        needs: Vec::new(),
        gate: None,
        condition: "success()".into(),
        image: spec.image.clone(),
        run: spec.run.run_spec(),
        env: spec.env.clone(),
        workdir: None,
        timeout: None,
        retry: RetryPolicy::default(),
        matrix: BTreeMap::new(),
        services: Vec::new(),
        resources: spec.resources,
        scheduling: spec.scheduling.clone(),
        cache: None,
        artifacts: None,
        checkout: false,
        pools: Vec::new(),
        environment: None,
        array: None,
    };
    let lease = Lease {
        id: i.lease.clone().unwrap_or_default(),
        run: i.id.clone(),
        run_name: format!("{service}/{}", i.slot),
        project: record.project.clone(),
        job_index: 0,
        start: StartJob { attempt: 1, job },
        env,
        inputs: Vec::new(),
        checkout: None,
        instance: Some(InstanceLease {
            service,
            instance: i.id.clone(),
            slot: i.slot,
            version: i.version,
            health: spec.health.as_ref().map(health_wire),
            config: extras.config,
        }),
        pull: sh
            .tasks
            .pull_auth(record.project_id, &format!("instance {} of {}", i.id, record.name)),
    };
    let ctx = Arc::new(TaskCtx {
        project: record.project_id,
        masker: Arc::new(Masker::new(std::iter::once(token).chain(extras.masked))),
        queued_at: Instant::now(),
        owner: Owner::Instance(InstanceCtx {
            service: record.id,
            instance: i.id.clone(),
            actor: tx.clone(),
            unstored: std::sync::atomic::AtomicU64::new(0),
        }),
    });
    Queued { lease, ctx }
}

/// The spec of a service's template, with its current replicas.
async fn spec_of(sh: &Shared, record: &ServiceRecord) -> Result<ServiceSpec> {
    spec_of_version(sh, &record.id, record.template, record.replicas).await
}

pub(super) async fn spec_of_version(
    sh: &Shared,
    id: &ServiceId,
    version: u32,
    replicas: u32,
) -> Result<ServiceSpec> {
    let v = sh.store.service_version(id, version).await?;
    serde_json::from_value(with_replicas(v.spec, replicas)).map_err(|e| {
        kiln_store::StoreError::Corrupt(format!("service {id} version {version}: {e}"))
    })
}

/// The agent's form of a health check.
fn health_wire(h: &kiln_workflow::service::HealthCheck) -> kiln_api::agent::HealthCheck {
    use kiln_workflow::service::Probe;
    kiln_api::agent::HealthCheck {
        probe: match &h.probe {
            Probe::Tcp { port } => kiln_api::agent::Probe::Tcp { port: port.clone() },
            Probe::Http { port, path } => {
                kiln_api::agent::Probe::Http { port: port.clone(), path: path.clone() }
            }
            Probe::Command(argv) => kiln_api::agent::Probe::Command { argv: argv.clone() },
        },
        grace_ms: millis(h.grace),
        interval_ms: millis(h.interval),
        timeout_ms: millis(h.timeout),
        failures: h.failures,
    }
}
