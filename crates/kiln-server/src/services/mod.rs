//! Services: long-running replicated workloads on the pool. [`Services`] takes the API's
//! requests (apply a service file, scale, restart, stop, roll back, delete) as new versions
//! in the store, and runs one actor per service (`actor.rs`) that reconciles it with
//! `kiln_service::reconcile` and carries out the decisions: instances are placed by the same
//! dispatcher and scheduler as job attempts and run by agents as long leases; agents report
//! their starts, health and ends back through `reports.rs`, which calls the functions below.
//!
//! A service with `environment: E` gives every instance E's variables and secrets (secrets
//! masked in its log) and `KILN_ENVIRONMENT`; with `config:`, the release of its config
//! application in E that the instance gets (`kiln_config::release::serves`: a gray release
//! naming its id included) goes into its lease, and its actor follows that application's
//! head in the config center's hub: a release to everyone with `on-change: restart` is a
//! rolling restart (a new version), anything else goes to each live instance whose release
//! changed as an update through its agent (`Dispatch::update_config`), which writes the
//! files and sends the service's signal; the agent's `config_applied` is stored on the
//! instance (`config_release`).
//!
//! After a server restart (`adopt.rs`), the instances stored as running are not replaced:
//! their leases await adoption by their nodes' agents in the dispatcher, and each keeps its
//! id, slot, state and health when its agent registers again listing it.
//!
//! Invariants: every change of an instance is stored (with a revision, for discovery) before
//! the next decision is taken; a service has at most one actor; instances are placed only
//! through the dispatcher (never overcommitting a node); instances found running at start
//! are handed to the dispatcher before their service's actor runs and before the server
//! serves, so no agent is told its instance is unknown and no decision is taken without it.

mod actor;
mod adopt;
pub mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_api::service::{InstanceInfo, ServiceInfo, ServiceVersion, SlotWait, UpdateSettings};
use kiln_engine::Outcome;
use kiln_logs::{LogKey, LogStore};
use kiln_store::{InstanceRecord, NewServiceVersion, ServiceId, ServiceRecord, Store};
use tokio::sync::mpsc;

use crate::dispatch::{Dispatch, InstanceCtx};
use crate::error::{ApiErr, ApiResult};

/// A message to a service's actor.
#[derive(Debug)]
pub enum ServiceMsg {
    /// An instance's agent started it.
    Started {
        /// Instance id.
        instance: String,
        /// Its lease.
        lease: String,
        /// The node it runs on.
        node: Option<String>,
        /// Where: IP and host ports.
        placement: Option<kiln_api::pool::JobPlacement>,
    },
    /// An instance's health changed.
    Health {
        /// Instance id.
        instance: String,
        /// Passing or not.
        healthy: bool,
        /// What the check saw.
        detail: String,
    },
    /// An instance ended: it exited, was stopped, or was lost with its agent (`lost`).
    Ended {
        /// Instance id.
        instance: String,
        /// How.
        outcome: Outcome,
        /// Lost with its node.
        lost: bool,
    },
    /// An instance that ran before the server restarted was taken back by its agent.
    Adopted {
        /// Instance id.
        instance: String,
    },
    /// An instance's agent wrote (or found already written) its config files of a release.
    ConfigApplied {
        /// Instance id.
        instance: String,
        /// The release.
        release: u32,
    },
    /// The head of the service's config application in its environment, as the config
    /// center's hub holds it (first at once, then after every change).
    ConfigHead {
        /// The application.
        app: String,
        /// The environment.
        env: String,
        /// The head.
        head: Arc<crate::config_center::Head>,
    },
    /// The service's desired state changed in the store: read it again.
    Changed,
    /// The service was deleted: stop every instance, then end.
    Delete,
}

/// Sends messages to a service's actor.
pub type ServiceTx = mpsc::UnboundedSender<ServiceMsg>;

/// Tells the actor of `i`'s service that the instance's agent started it.
pub fn instance_started(
    i: &InstanceCtx,
    lease: &str,
    node: Option<String>,
    placement: Option<kiln_api::pool::JobPlacement>,
) {
    let _ = i.actor.send(ServiceMsg::Started {
        instance: i.instance.clone(),
        lease: lease.to_string(),
        node,
        placement,
    });
}

/// Tells the actor of `i`'s service that the instance's health changed.
pub fn instance_health(i: &InstanceCtx, healthy: bool, detail: String) {
    let _ = i.actor.send(ServiceMsg::Health { instance: i.instance.clone(), healthy, detail });
}

/// Tells the actor of `i`'s service that its agent took the instance back after a server
/// restart.
pub fn instance_adopted(i: &InstanceCtx) {
    let _ = i.actor.send(ServiceMsg::Adopted { instance: i.instance.clone() });
}

/// Tells the actor of `i`'s service that the instance's files are those of config release
/// `release`.
pub fn instance_config_applied(i: &InstanceCtx, release: u32) {
    let _ = i.actor.send(ServiceMsg::ConfigApplied { instance: i.instance.clone(), release });
}

/// Tells the actor of `i`'s service that the instance ended (`lost`: with its agent).
pub fn instance_ended(i: &InstanceCtx, outcome: Outcome, lost: bool) {
    let _ = i.actor.send(ServiceMsg::Ended { instance: i.instance.clone(), outcome, lost });
}

/// The log of one instance.
pub fn instance_log_key(service: &ServiceId, instance: &str) -> LogKey {
    LogKey::from_segments(["services".to_string(), service.to_string(), instance.to_string()])
        .expect("ids make a valid key")
}

/// What the API reads of a running service: its instances and why slots wait, as its actor
/// last saw them.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    instances: Vec<InstanceRecord>,
    waits: Vec<kiln_service::Wait>,
}

#[derive(Debug)]
struct ActorRef {
    tx: ServiceTx,
    view: Arc<Mutex<View>>,
}

/// Shared by [`Services`] and the actors.
#[derive(Debug)]
struct Shared {
    store: Store,
    logs: LogStore,
    dispatch: Arc<Dispatch>,
    actors: Mutex<HashMap<ServiceId, ActorRef>>,
    /// The newest revision of the service event log, for discovery watches.
    revision: tokio::sync::watch::Sender<u64>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Mints each instance's discovery token.
    tasks: crate::task_token::TaskTokens,
    /// The variables and secrets of services' environments.
    environments: crate::environments::Environments,
    /// The config center: what instances get, and its heads to follow.
    config: crate::config_center::ConfigCenter,
}

/// Applies, steers and shows services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    sh: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a request changes: a new version of the service, with who and why.
struct Change {
    kind: &'static str,
    replicas: Option<u32>,
    template: Template,
    note: Option<String>,
}

/// Which spec a new version runs.
enum Template {
    /// The current template's.
    Same,
    /// A new one (a restart: the same spec, every instance replaced).
    Fresh,
    /// Version N's.
    Of(u32),
}

impl Services {
    /// The services of this store, placed through `dispatch`, with their environments'
    /// variables and the config center's files. Call [`Services::recover`] once before
    /// serving.
    pub fn new(
        store: Store,
        logs: LogStore,
        dispatch: Arc<Dispatch>,
        metrics: Arc<crate::metrics::Metrics>,
        tasks: crate::task_token::TaskTokens,
        delivery: (crate::environments::Environments, crate::config_center::ConfigCenter),
    ) -> Services {
        Services {
            sh: Arc::new(Shared {
                store,
                logs,
                dispatch,
                actors: Mutex::new(HashMap::new()),
                revision: tokio::sync::watch::Sender::new(0),
                metrics,
                tasks,
                environments: delivery.0,
                config: delivery.1,
            }),
        }
    }

    /// Starts an actor for every stored service. Instances that ran before the server
    /// stopped await adoption by their agents (see `adopt.rs`); those that cannot (never
    /// started, or no longer fitting their node) are marked lost and replaced.
    pub async fn recover(&self) -> Result<usize, kiln_store::StoreError> {
        let services = self.sh.store.services(None).await?;
        for s in &services {
            let (tx, rx) = mpsc::unbounded_channel();
            adopt::recover(&self.sh, s, &tx).await?;
            self.spawn_actor(s, tx, rx);
        }
        Ok(services.len())
    }

    fn ensure_actor(&self, record: &ServiceRecord) -> ServiceTx {
        if let Some(a) = lock(&self.sh.actors).get(&record.id) {
            return a.tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.spawn_actor(record, tx, rx)
    }

    /// Starts the actor of `record` on the channel `tx`/`rx`, unless it has one.
    fn spawn_actor(
        &self,
        record: &ServiceRecord,
        tx: ServiceTx,
        rx: mpsc::UnboundedReceiver<ServiceMsg>,
    ) -> ServiceTx {
        let mut actors = lock(&self.sh.actors);
        if let Some(a) = actors.get(&record.id) {
            return a.tx.clone();
        }
        let view = Arc::new(Mutex::new(View::default()));
        actors.insert(record.id, ActorRef { tx: tx.clone(), view: view.clone() });
        tokio::spawn(actor::run(self.sh.clone(), record.id, tx.clone(), rx, view));
        tx
    }

    fn notify(&self, record: &ServiceRecord) {
        let tx = self.ensure_actor(record);
        let _ = tx.send(ServiceMsg::Changed);
    }

    /// Applies a service file to `project`: a new version when anything changed (the same
    /// spec with other replicas keeps its template: no instance is replaced), nothing when
    /// nothing did. Bad files are refused with every diagnostic; nothing is stored then.
    pub async fn apply(
        &self,
        project: &str,
        file: &str,
        yaml: &str,
        note: Option<String>,
        by: &str,
    ) -> ApiResult<(ServiceInfo, &'static str)> {
        let spec = compile_file(file, yaml)?;
        self.apply_spec(project, &spec, (file, yaml), note, by, None).await
    }

    /// Applies a checked `spec` (from `source`: file name and YAML) as [`Services::apply`]
    /// does. `deployed`: a deploy's, which creates the service as running these deployments
    /// or changes the one that already does; without it, a deployed service is refused (only
    /// deploys change it), as is a pool's. `Conflict` names whose the service is.
    pub async fn apply_spec(
        &self,
        project: &str,
        spec: &kiln_workflow::service::ServiceSpec,
        source: (&str, &str),
        note: Option<String>,
        by: &str,
        deployed: Option<&kiln_store::DeployedAs>,
    ) -> ApiResult<(ServiceInfo, &'static str)> {
        let (file, yaml) = source;
        self.check_delivery(project, spec).await?;
        let json = serde_json::to_value(spec).map_err(|e| ApiErr::internal(e.to_string()))?;
        let existing = match self.sh.store.service(project, &spec.name).await {
            Ok(s) => Some(s),
            Err(kiln_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(owner) = existing.as_ref().and_then(|s| s.owner.as_ref()) {
            return Err(ApiErr::conflict(format!(
                "service `{project}/{}` is a service pool of run {}: it is deleted when the run \
                 ends; apply your service under another name",
                spec.name, owner.run
            )));
        }
        if let Some(s) = &existing {
            refuse_other_deployer(project, s, deployed)?;
        }
        // The template ignores replicas: a change of replicas alone is a scale.
        let template_json = template_of(&json);
        let same = match &existing {
            Some(s) => self.sh.store.service_version_with_spec(&s.id, &template_json).await?,
            None => None,
        };
        if let (Some(s), Some(v)) = (&existing, &same)
            && v.template == s.template
            && s.replicas == spec.replicas
        {
            return Ok((self.info(s).await?, "unchanged"));
        }
        let version = NewServiceVersion {
            kind: "apply".into(),
            replicas: spec.replicas,
            template: same.map(|v| v.template),
            spec: template_json,
            yaml: yaml.to_string(),
            file: file.to_string(),
            note,
            by: by.to_string(),
            owner: None,
            deployed: deployed.cloned(),
        };
        let (record, _) = self.sh.store.add_service_version(project, &spec.name, &version).await?;
        self.notify(&record);
        let change = if existing.is_some() { "updated" } else { "created" };
        Ok((self.info(&record).await?, change))
    }

    /// Refuses (422 `invalid_service`, nothing stored) a spec of `project` whose
    /// `environment` is not one of the project's, whose `config` has no environment, or
    /// whose config application has no release in that environment yet.
    pub async fn check_delivery(
        &self,
        project: &str,
        spec: &kiln_workflow::service::ServiceSpec,
    ) -> ApiResult<()> {
        let invalid = |message: String| {
            ApiErr::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                kiln_api::codes::INVALID_SERVICE,
                message,
            )
        };
        let env = match (&spec.environment, &spec.config) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {
                return Err(invalid(format!(
                    "service `{}`: config needs an environment: add environment: <name>, or \
                     deploy the service to one",
                    spec.name
                )));
            }
            (Some(env), _) => env,
        };
        let names: Vec<String> =
            self.sh.store.environments(project).await?.into_iter().map(|e| e.name).collect();
        if !names.contains(env) {
            let known = if names.is_empty() { "none yet".to_string() } else { names.join(", ") };
            return Err(invalid(format!(
                "service `{}`: environment `{env}` is not an environment of project \
                 `{project}` (it has {known}): create it with `kiln env create {env} --project \
                 {project}`, or name another",
                spec.name
            )));
        }
        let Some(config) = &spec.config else { return Ok(()) };
        let app = config.app_or(&spec.name);
        let current = match self.sh.store.config_head(project, app, env).await {
            Ok(head) => head.current,
            Err(kiln_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if current.is_none() {
            return Err(invalid(format!(
                "service `{}`: no release of config `{app}` in `{env}` yet: kiln config \
                 release {app} --env {env}",
                spec.name
            )));
        }
        Ok(())
    }

    async fn change(
        &self,
        project: &str,
        name: &str,
        change: Change,
        by: &str,
    ) -> ApiResult<ServiceInfo> {
        let s = self.sh.store.service(project, name).await?;
        let template = match change.template {
            Template::Same => Some(s.template),
            Template::Fresh => None,
            Template::Of(n) => Some(self.sh.store.service_version(&s.id, n).await?.template),
        };
        let source = self.sh.store.service_version(&s.id, template.unwrap_or(s.template)).await?;
        let version = NewServiceVersion {
            kind: change.kind.into(),
            replicas: change.replicas.unwrap_or(s.replicas),
            template,
            spec: source.spec,
            yaml: source.yaml,
            file: source.file,
            note: change.note,
            by: by.to_string(),
            owner: None,
            deployed: None,
        };
        let (record, _) = self.sh.store.add_service_version(project, name, &version).await?;
        self.notify(&record);
        self.info(&record).await
    }

    /// The service `spec.name` of `project` that `owner` owns (a build-scoped pool): created
    /// from `spec` (with `yaml` and `file` kept as its source) if it does not exist, else the
    /// existing one when the same owner has it (a recovered run takes its pool back).
    /// `Conflict` when another service (applied by hand, or another run's) has the name.
    pub async fn ensure_owned(
        &self,
        project: &str,
        spec: &kiln_workflow::service::ServiceSpec,
        owner: &kiln_store::ServiceOwner,
        source: (&str, &str),
        by: &str,
    ) -> ApiResult<ServiceRecord> {
        match self.sh.store.service(project, &spec.name).await {
            Ok(s) if s.owner.as_ref() == Some(owner) => {
                self.ensure_actor(&s);
                return Ok(s);
            }
            Ok(s) => {
                let whose = match (&s.owner, &s.deployed) {
                    (Some(o), _) => format!("it is a pool of run {}", o.run),
                    (None, Some(d)) => {
                        format!("it runs the deployments of `{}` to `{}`", d.service, d.environment)
                    }
                    (None, None) => "it was applied by hand".to_string(),
                };
                return Err(ApiErr::conflict(format!(
                    "project `{project}` already has a service named `{}` ({whose})",
                    spec.name
                )));
            }
            Err(kiln_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.check_delivery(project, spec).await?;
        let json = serde_json::to_value(spec).map_err(|e| ApiErr::internal(e.to_string()))?;
        let version = NewServiceVersion {
            kind: "apply".into(),
            replicas: spec.replicas,
            template: None,
            spec: template_of(&json),
            yaml: source.1.to_string(),
            file: source.0.to_string(),
            note: Some(format!("service pool `{}`", pool_name(&spec.labels, &spec.name))),
            by: by.to_string(),
            owner: Some(owner.clone()),
            deployed: None,
        };
        let (record, _) = self.sh.store.add_service_version(project, &spec.name, &version).await?;
        self.notify(&record);
        Ok(record)
    }

    /// Refuses (409) unless service `name` of `project` is free or runs `deployed`: what a
    /// deploy checks before it stores anything.
    pub async fn check_deployable(
        &self,
        project: &str,
        name: &str,
        deployed: &kiln_store::DeployedAs,
    ) -> ApiResult<()> {
        match self.sh.store.service(project, name).await {
            Ok(s) if s.owner.is_some() => Err(ApiErr::conflict(format!(
                "service `{project}/{name}` is a service pool of a run: a deploy of `{}` to `{}` \
                 runs as that name; rename the service file",
                deployed.service, deployed.environment
            ))),
            Ok(s) => refuse_other_deployer(project, &s, Some(deployed)),
            Err(kiln_store::StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the service `name` of `project` if it exists (a pool whose run ended).
    pub async fn delete_if_present(&self, project: &str, name: &str) -> ApiResult<()> {
        match self.delete(project, name).await {
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => Ok(()),
            other => other,
        }
    }

    /// Sets the replicas of a service (0 to 1000); its instances are not replaced.
    pub async fn scale(
        &self,
        project: &str,
        name: &str,
        replicas: u32,
        by: &str,
    ) -> ApiResult<ServiceInfo> {
        if replicas > kiln_workflow::service::MAX_REPLICAS {
            return Err(ApiErr::bad_request(format!(
                "replicas: expected 0 to {}, found {replicas}",
                kiln_workflow::service::MAX_REPLICAS
            )));
        }
        let note = Some(format!("scaled to {replicas}"));
        self.change(
            project,
            name,
            Change { kind: "scale", replicas: Some(replicas), template: Template::Same, note },
            by,
        )
        .await
    }

    /// Replaces every instance (a rolling update to the same spec).
    pub async fn restart(&self, project: &str, name: &str, by: &str) -> ApiResult<ServiceInfo> {
        self.change(
            project,
            name,
            Change { kind: "restart", replicas: None, template: Template::Fresh, note: None },
            by,
        )
        .await
    }

    /// Stops every instance (replicas 0; `scale` starts it again).
    pub async fn stop(&self, project: &str, name: &str, by: &str) -> ApiResult<ServiceInfo> {
        self.change(
            project,
            name,
            Change { kind: "stop", replicas: Some(0), template: Template::Same, note: None },
            by,
        )
        .await
    }

    /// Returns to version `to` (the one before the current template when `None`): a new
    /// version running that version's spec and replicas. A deployed service is refused: its
    /// rollbacks are deployments (`Deploys::rollback`).
    pub async fn rollback(
        &self,
        project: &str,
        name: &str,
        to: Option<u32>,
        by: &str,
    ) -> ApiResult<ServiceInfo> {
        let s = self.sh.store.service(project, name).await?;
        if let Some(d) = &s.deployed {
            // Its versions are deployments': go back to one of those, so the history says so.
            return Err(ApiErr::conflict(format!(
                "service `{project}/{name}` runs the deployments of `{}` to `{}`: roll it back \
                 with `kiln rollback {} --env {}` (`kiln deploy history` lists them)",
                d.service, d.environment, d.service, d.environment
            )));
        }
        let versions = self.sh.store.service_versions(&s.id).await?;
        let target = match to {
            Some(n) => versions.iter().find(|v| v.version == n).ok_or_else(|| {
                ApiErr::not_found(format!(
                    "service `{project}/{name}` has no version {n} (it has 1 to {})",
                    s.version
                ))
            })?,
            None => versions.iter().rev().find(|v| v.template != s.template).ok_or_else(|| {
                ApiErr::conflict(format!(
                    "service `{project}/{name}` has no earlier version to roll back to"
                ))
            })?,
        };
        let change = Change {
            kind: "rollback",
            replicas: Some(target.replicas),
            template: Template::Of(target.version),
            note: Some(format!("rolled back to version {}", target.version)),
        };
        self.change(project, name, change, by).await
    }

    /// Deletes a service: every instance is stopped, then its records are removed.
    pub async fn delete(&self, project: &str, name: &str) -> ApiResult<()> {
        let s = self.sh.store.service(project, name).await?;
        let tx = lock(&self.sh.actors).remove(&s.id).map(|a| a.tx);
        if let Some(tx) = tx {
            let _ = tx.send(ServiceMsg::Delete);
        }
        for i in self.sh.store.instances(&s.id, false).await? {
            self.sh.dispatch.cancel_task(&crate::dispatch::instance_key(&s.id, &i.id));
        }
        self.sh.store.delete_service(&s.id).await?;
        if let Ok(r) = self.sh.store.service_revision().await {
            self.sh.revision.send_replace(r);
        }
        Ok(())
    }

    /// A receiver of the newest revision of the service event log: discovery watches wake
    /// when it changes.
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sh.revision.subscribe()
    }

    /// A service with its instances, as its actor last saw them.
    pub async fn get(&self, project: &str, name: &str) -> ApiResult<ServiceInfo> {
        let s = self.sh.store.service(project, name).await?;
        self.info(&s).await
    }

    /// The services of `project` (all when `None`).
    pub async fn list(&self, project: Option<&str>) -> ApiResult<Vec<ServiceInfo>> {
        let mut out = Vec::new();
        for s in self.sh.store.services(project).await? {
            out.push(self.info(&s).await?);
        }
        Ok(out)
    }

    /// Every version of a service, oldest first.
    pub async fn history(&self, project: &str, name: &str) -> ApiResult<Vec<ServiceVersion>> {
        let s = self.sh.store.service(project, name).await?;
        Ok(self
            .sh
            .store
            .service_versions(&s.id)
            .await?
            .into_iter()
            .map(|v| ServiceVersion {
                version: v.version,
                template: v.template,
                replicas: v.replicas,
                kind: v.kind,
                note: v.note,
                by: v.by,
                at: v.at,
            })
            .collect())
    }

    async fn info(&self, s: &ServiceRecord) -> ApiResult<ServiceInfo> {
        let view = lock(&self.sh.actors).get(&s.id).map(|a| lock(&a.view).clone());
        let view = match view {
            Some(v) if !v.instances.is_empty() || !v.waits.is_empty() => v,
            _ => {
                View { instances: self.sh.store.instances(&s.id, false).await?, waits: Vec::new() }
            }
        };
        let spec = self.sh.store.service_version(&s.id, s.template).await.ok().and_then(|v| {
            serde_json::from_value::<kiln_workflow::service::ServiceSpec>(with_replicas(
                v.spec, s.replicas,
            ))
            .ok()
        });
        let update = spec.as_ref().map(|spec| update_settings(&spec.update, s.replicas));
        let labels = spec.map(|spec| spec.labels).unwrap_or_default();
        let owner = match &s.owner {
            Some(o) => Some(kiln_api::service::ServiceOwner {
                run: o.run.to_string(),
                run_name: match self.sh.store.run(&o.run).await {
                    Ok(run) => run.full_name(),
                    Err(_) => o.run.to_string(),
                },
                job: o.job.clone(),
                pool: pool_name(&labels, &s.name),
            }),
            None => None,
        };
        let healthy = view
            .instances
            .iter()
            .filter(|i| i.version == s.template && i.state == "healthy")
            .count();
        let state = if s.replicas == 0 {
            "stopped"
        } else if s.stable == 0 {
            "deploying"
        } else if s.template != s.stable && s.update_started_at.is_some() {
            "updating"
        } else {
            "running"
        };
        Ok(ServiceInfo {
            project: s.project.clone(),
            name: s.name.clone(),
            version: s.version,
            template: s.template,
            stable: s.stable,
            replicas: s.replicas,
            state: state.to_string(),
            healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
            labels,
            update,
            instances: view.instances.iter().map(instance_info).collect(),
            waits: view
                .waits
                .iter()
                .map(|w| SlotWait { slot: w.slot, reason: w.reason.clone() })
                .collect(),
            updated_at: s.updated_at,
            owner,
            deployed: s.deployed.as_ref().map(|d| kiln_api::service::ServiceDeployed {
                service: d.service.clone(),
                environment: d.environment.clone(),
            }),
        })
    }
}

/// Compiles a service file; a file with errors is a 422 `invalid_service` with every
/// diagnostic.
pub fn compile_file(file: &str, yaml: &str) -> ApiResult<kiln_workflow::service::ServiceSpec> {
    let compiled = kiln_workflow::compile_service(file, yaml);
    let Some(spec) = compiled.spec else {
        return Err(crate::plans::refused(
            kiln_api::codes::INVALID_SERVICE,
            "the service file",
            &compiled.diagnostics,
        ));
    };
    Ok(spec)
}

/// Refuses to change service `s` unless `deployed` says the same deployments it runs (none
/// for a service applied by hand).
fn refuse_other_deployer(
    project: &str,
    s: &ServiceRecord,
    deployed: Option<&kiln_store::DeployedAs>,
) -> ApiResult<()> {
    match (&s.deployed, deployed) {
        (Some(d), None) => Err(ApiErr::conflict(format!(
            "service `{project}/{}` runs the deployments of `{}` to `{}`: change it with `kiln \
             deploy {}.yml --env {}` (or `kiln rollback`), or apply your service under another \
             name",
            s.name, d.service, d.environment, d.service, d.environment
        ))),
        (Some(d), Some(want)) if d != want => Err(ApiErr::conflict(format!(
            "service `{project}/{}` runs the deployments of `{}` to `{}`, not of `{}` to `{}`: \
             rename one of the service files",
            s.name, d.service, d.environment, want.service, want.environment
        ))),
        (None, Some(want)) => Err(ApiErr::conflict(format!(
            "project `{project}` already has a service named `{}`, applied by hand: a deploy of \
             `{}` to `{}` runs as that name; delete that service first (`kiln service delete \
             {}`) or rename the service file",
            s.name, want.service, want.environment, s.name
        ))),
        _ => Ok(()),
    }
}

/// The API form of a rolling-update policy, resolved for `replicas`.
fn update_settings(u: &kiln_workflow::service::UpdatePolicy, replicas: u32) -> UpdateSettings {
    let f = u.resolve(replicas);
    UpdateSettings {
        max_surge: u.max_surge.to_string(),
        max_unavailable: u.max_unavailable.to_string(),
        surge: f.surge,
        unavailable: f.unavailable,
        deadline_ms: u64::try_from(u.deadline.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The label that names a pool's name in its workflow on the pool's service.
pub const POOL_LABEL: &str = "kiln.pool";

/// The label that names the run that owns a pool's service.
pub const RUN_LABEL: &str = "kiln.run";

/// The pool name a service's labels give (`kiln.pool`), else its name.
fn pool_name(labels: &std::collections::BTreeMap<String, String>, name: &str) -> String {
    labels.get(POOL_LABEL).cloned().unwrap_or_else(|| name.to_string())
}

/// The API form of an instance.
pub fn instance_info(i: &InstanceRecord) -> InstanceInfo {
    InstanceInfo {
        id: i.id.clone(),
        slot: i.slot,
        version: i.version,
        state: i.state.clone(),
        reason: i.reason.clone(),
        node: i.node.clone(),
        host_ip: i.host_ip.clone(),
        ports: i.ports.clone(),
        restarts: i.restarts,
        since: i.since,
        config_release: i.config_release,
    }
}

/// A spec's JSON without its replicas: what a template is.
fn template_of(spec: &serde_json::Value) -> serde_json::Value {
    let mut t = spec.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("replicas");
    }
    t
}

/// A template's JSON with `replicas` put back, as `ServiceSpec` reads it.
fn with_replicas(mut spec: serde_json::Value, replicas: u32) -> serde_json::Value {
    if let Some(m) = spec.as_object_mut() {
        m.insert("replicas".into(), serde_json::Value::from(replicas.max(1)));
    }
    spec
}
