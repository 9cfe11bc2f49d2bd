//! Deploys: a service file deployed to an environment of its project with an image of Kiln's
//! registry, as the service `<name>-<environment>` (`plan.rs`), pinned to the image's digest
//! (`image.rs`); approvals on protected environments; rollbacks to an earlier deployment
//! (with its config release); promotions to the next environment; and the drivers
//! (`driver.rs`) that apply a deployment through the services code and wait until its version
//! is healthy everywhere, or rolled back by the service controller at its deadline.
//!
//! [`Deploys::deploy_for_job`] is what a workflow's `deploy:` job calls.
//!
//! Invariants: bad input (an image not in the registry, an unknown environment, a file naming
//! another environment, a config without a release there, a promotion out of order) is refused
//! before anything is stored; nothing runs before a protected environment's approval by
//! someone other than the asker; a running deployment is driven by one task of the server
//! (picked up again after a restart: never a second deployment for it); only deploys change a
//! deployed service.

mod driver;
pub mod image;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use kiln_api::deploy::{
    BoardCell, DeployConfig, DeployRun, Deployment, EnvironmentBoard, PromoteChanges,
};
use kiln_store::{DeployedAs, DeploymentRecord, DeploymentRun, NewDeployment, Store, StoreError};
use kiln_workflow::service::ServiceSpec;
use tokio_util::sync::CancellationToken;

use crate::config_center::ConfigCenter;
use crate::error::{ApiErr, ApiResult};
use crate::services::Services;

/// Who asks for a deployment made by `kiln` itself (an automatic rollback).
pub const KILN: &str = "kiln";

/// The shortest and longest deadline a deploy may ask for.
const TIMEOUTS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// How often a deployment's progress is looked at.
const POLL: Duration = Duration::from_millis(200);

/// 422 `invalid_deploy`.
pub(crate) fn invalid(message: impl Into<String>) -> ApiErr {
    ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, kiln_api::codes::INVALID_DEPLOY, message)
}

/// The run (and job) that asks for a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    /// The run's id.
    pub id: String,
    /// `project/pipeline#number`.
    pub name: String,
    /// The job.
    pub job: String,
}

/// A workflow job's deploy: what [`Deploys::deploy_for_job`] takes.
#[derive(Debug)]
pub struct DeployJob {
    /// The project.
    pub project: String,
    /// The service, as the job's `deploy.service` compiled.
    pub spec: ServiceSpec,
    /// The environment.
    pub environment: String,
    /// The image (an output of a build job, usually).
    pub image: String,
    /// The run and job.
    pub run: RunRef,
    /// Who asks (the run's author; the caller checked that they may deploy).
    pub asked_by: String,
    /// The update deadline (default: the spec's).
    pub timeout: Option<Duration>,
    /// Where human progress lines go ("deployment 3 of web to staging: 2/4 healthy").
    pub progress: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Why a deploy was refused (nothing was stored), or could not be followed to its end.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeployError {
    /// The HTTP status the API would answer.
    pub status: u16,
    /// The API's stable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
}

impl From<ApiErr> for DeployError {
    fn from(e: ApiErr) -> DeployError {
        DeployError { status: e.status.as_u16(), code: e.code, message: e.message }
    }
}

/// A deploy as asked (by the API, or a job).
#[derive(Debug, Clone)]
pub struct DeployAsk {
    /// The project.
    pub project: String,
    /// The service file's checked spec.
    pub spec: ServiceSpec,
    /// Its file name and YAML.
    pub source: (String, String),
    /// The environment.
    pub environment: String,
    /// The image.
    pub image: String,
    /// Why.
    pub note: Option<String>,
    /// The update deadline (default: the spec's).
    pub timeout: Option<Duration>,
    /// The run that asks.
    pub run: Option<RunRef>,
    /// Who asks.
    pub asked_by: String,
}

/// Shared by [`Deploys`] and the drivers.
#[derive(Debug)]
struct Shared {
    store: Store,
    services: Services,
    config: ConfigCenter,
    registry_host: String,
    /// The deployments being driven, by (project, service, environment, number).
    drivers: Mutex<HashSet<(String, String, String, u32)>>,
    /// Ends every driver (the server stops).
    stop: CancellationToken,
    /// The image policy's check (`block_critical_deploys`), when scanning is on.
    scanner: std::sync::OnceLock<crate::scans::Scanner>,
}

/// Deploys, rollbacks, promotions and their drivers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Deploys {
    sh: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The API form of a deployment.
pub fn dto(d: &DeploymentRecord) -> Deployment {
    Deployment {
        project: d.project.clone(),
        service: d.service.clone(),
        environment: d.environment.clone(),
        number: d.number,
        kind: d.kind.clone(),
        state: d.state.clone(),
        image: d.image.clone(),
        digest: d.digest.clone(),
        image_ref: d.image_ref.clone(),
        config: d
            .config
            .as_ref()
            .map(|(app, release)| DeployConfig { app: app.clone(), release: *release }),
        service_name: d.service_name.clone(),
        service_version: d.service_version,
        run: d.run.as_ref().map(|r| DeployRun {
            id: r.id.clone(),
            name: r.name.clone(),
            job: r.job.clone(),
        }),
        asked_by: d.asked_by.clone(),
        asked_at: d.asked_at,
        approved_by: d.approved_by.clone(),
        approved_at: d.approved_at,
        finished_at: d.finished_at,
        note: d.note.clone(),
        reason: d.reason.clone(),
        rollback_of: d.rollback_of,
        promoted_from: d.promoted_from.clone(),
    }
}

/// A timeout asked in milliseconds, checked.
pub fn timeout_of(ms: Option<u64>) -> ApiResult<Option<Duration>> {
    let Some(ms) = ms else { return Ok(None) };
    let t = Duration::from_millis(ms);
    if t < TIMEOUTS.0 || t > TIMEOUTS.1 {
        return Err(ApiErr::bad_request(format!(
            "timeout_ms: expected {} to {} (1 s to 24 h), found {ms}",
            TIMEOUTS.0.as_millis(),
            TIMEOUTS.1.as_millis()
        )));
    }
    Ok(Some(t))
}

/// Whether `d` ran healthy in its environment (the current one, or one a later success
/// replaced).
fn ran(d: &DeploymentRecord) -> bool {
    d.state == "succeeded" || d.state == "superseded"
}

impl Deploys {
    /// The deploys of a server: services applied through `services`, config read and rolled
    /// back through `config`, images resolved for `registry_host`; drivers end with `stop`.
    pub fn new(
        store: Store,
        services: Services,
        config: ConfigCenter,
        registry_host: String,
        stop: CancellationToken,
    ) -> Deploys {
        Deploys {
            sh: Arc::new(Shared {
                store,
                services,
                config,
                registry_host,
                drivers: Mutex::default(),
                stop,
                scanner: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Checks deployed images against their project's image policy with `scanner`.
    pub fn with_scanner(self, scanner: crate::scans::Scanner) -> Deploys {
        let _ = self.sh.scanner.set(scanner);
        self
    }

    /// Picks up every running deployment again (after a restart): its driver applies it if
    /// it was not yet, then waits for its version as before. Call after the services
    /// recovered. Returns how many.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let running = self.sh.store.deployments_in("running").await?;
        for d in &running {
            driver::spawn(&self.sh, d.clone());
        }
        Ok(running.len())
    }

    /// The environment `env` of `project`, or 422 naming the ones there are.
    async fn environment(
        &self,
        project: &str,
        env: &str,
    ) -> ApiResult<kiln_store::EnvironmentRecord> {
        match self.sh.store.environment(project, env).await {
            Ok(e) => Ok(e),
            Err(StoreError::NotFound(_)) => {
                let names: Vec<String> = self
                    .sh
                    .store
                    .environments(project)
                    .await?
                    .into_iter()
                    .map(|e| e.name)
                    .collect();
                let have = if names.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("it has: {}", names.join(", "))
                };
                Err(invalid(format!(
                    "project `{project}` has no environment `{env}` ({have}); create it with \
                     `kiln env create {env}`"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The config release `spec` runs with in `env`: its application's current release
    /// there (422 when it has none yet); `None` for a service without config.
    async fn config_of(
        &self,
        project: &str,
        spec: &ServiceSpec,
        service: &str,
        env: &str,
    ) -> ApiResult<Option<(String, u32)>> {
        let Some(c) = &spec.config else { return Ok(None) };
        let app = c.app_or(service).to_string();
        let none = || {
            invalid(format!(
                "no release of config `{app}` in `{env}` yet: kiln config release {app} --env {env}"
            ))
        };
        match self.sh.config.current_release(project, &app, env).await {
            Ok(Some(n)) => Ok(Some((app, n))),
            Ok(None) => Err(none()),
            Err(e) if e.status == StatusCode::NOT_FOUND => Err(none()),
            Err(e) => Err(e),
        }
    }

    /// Deploys `ask.spec` to `ask.environment` with `ask.image`: checked (the environment,
    /// the image in the registry, the config release), then recorded `pending` on a protected
    /// environment, else `running` and driven at once. Nothing is stored when refused.
    pub async fn deploy(&self, ask: DeployAsk) -> ApiResult<DeploymentRecord> {
        let project = self.sh.store.project(&ask.project).await?;
        let env = self.environment(&ask.project, &ask.environment).await?;
        let service = ask.spec.name.clone();
        let resolved =
            image::resolve(&self.sh.store, &self.sh.registry_host, &project.id, &ask.image).await?;
        if let Some(scanner) = self.sh.scanner.get()
            && let Some((repo, _)) =
                resolved.image_ref.split_once('/').and_then(|(_, r)| r.split_once('@'))
            && let Some(refusal) =
                scanner.deploy_refusal(&project.id, repo, &resolved.digest).await?
        {
            return Err(invalid(refusal));
        }
        let spec =
            plan::deployed_spec(&ask.spec, &service, &env.name, &resolved.image_ref, ask.timeout)
                .map_err(invalid)?;
        let config = self.config_of(&ask.project, &spec, &service, &env.name).await?;
        let deployed = DeployedAs { service: service.clone(), environment: env.name.clone() };
        self.sh.services.check_deployable(&ask.project, &spec.name, &deployed).await?;
        let new = NewDeployment {
            service: service.clone(),
            environment: env.name.clone(),
            kind: "deploy".into(),
            pending: env.protected,
            image: resolved.image,
            digest: resolved.digest,
            image_ref: resolved.image_ref,
            config,
            service_name: spec.name.clone(),
            service_version: None,
            spec: serde_json::to_value(&spec).map_err(|e| ApiErr::internal(e.to_string()))?,
            yaml: ask.source.1,
            file: ask.source.0,
            run: ask.run.map(|r| DeploymentRun { id: r.id, name: r.name, job: r.job }),
            asked_by: ask.asked_by,
            note: ask.note,
            rollback_of: None,
            promoted_from: None,
        };
        self.add(&ask.project, &new).await
    }

    /// Stores `new` and drives it unless it waits for approval.
    async fn add(&self, project: &str, new: &NewDeployment) -> ApiResult<DeploymentRecord> {
        let d = self.sh.store.add_deployment(project, new).await?;
        if d.state == "running" {
            driver::spawn(&self.sh, d.clone());
        }
        Ok(d)
    }

    /// Approves (someone other than who asked; it runs at once) or rejects (it ends) the
    /// pending deployment `number`.
    pub async fn decide(
        &self,
        project: &str,
        service: &str,
        env: &str,
        number: u32,
        approve: bool,
        by: &str,
    ) -> ApiResult<DeploymentRecord> {
        let d = self.sh.store.deployment(project, service, env, number).await?;
        if d.state != "pending" {
            return Err(ApiErr::conflict(format!(
                "deployment {number} of `{service}` to `{env}` is {}, not waiting for approval",
                d.state
            )));
        }
        if approve && d.asked_by == by {
            return Err(ApiErr::conflict(format!(
                "`{by}` asked for deployment {number} of `{service}` to `{env}`: someone else \
                 must approve it"
            )));
        }
        let d = self.sh.store.decide_deployment(&d, approve, by).await?;
        if d.state == "running" {
            driver::spawn(&self.sh, d.clone());
        }
        Ok(d)
    }

    /// Rolls `service` in `env` back to deployment `to` (default: the succeeded one before
    /// the current one): its exact spec and digest again, without an approval (it returns to
    /// what ran there), and its config release again through a config rollback release when
    /// the environment's head moved since.
    pub async fn rollback(
        &self,
        project: &str,
        service: &str,
        env: &str,
        to: Option<u32>,
        note: Option<String>,
        by: &str,
    ) -> ApiResult<DeploymentRecord> {
        self.environment(project, env).await?;
        let history = self.sh.store.deployments(project, Some(service), Some(env)).await?;
        if let Some(a) = history.iter().find(|d| !is_final(d)) {
            return Err(ApiErr::conflict(format!(
                "deployment {} of `{service}` to `{env}` is {}: let it end first{}",
                a.number,
                a.state,
                if a.state == "pending" {
                    format!(" (`kiln deploy reject {service} --env {env} {}`)", a.number)
                } else {
                    String::new()
                }
            )));
        }
        let target = plan::rollback_target(&history, service, env, to).map_err(|e| match e {
            plan::NoRollback::Unknown(m) => ApiErr::not_found(m),
            plan::NoRollback::Refused(m) => ApiErr::conflict(m),
        })?;
        let config = match &target.config {
            None => None,
            Some((app, release)) => {
                let now = self.sh.config.current_release(project, app, env).await?;
                if now == Some(*release) {
                    Some((app.clone(), *release))
                } else {
                    let req = kiln_api::config::RollbackRequest {
                        to: *release,
                        note: Some(format!(
                            "rollback of {service} to deployment {}",
                            target.number
                        )),
                    };
                    let out =
                        self.sh.config.rollback_for_deploy(project, app, env, &req, by).await?;
                    Some((app.clone(), out.release.number))
                }
            }
        };
        let new = NewDeployment {
            kind: "rollback".into(),
            pending: false,
            config,
            service_version: None,
            run: None,
            asked_by: by.to_string(),
            note,
            rollback_of: Some(target.number),
            promoted_from: None,
            ..same_as(target)
        };
        self.add(project, &new).await
    }

    /// Promotes the current deployment of `service` in `from` to `to`, the environment right
    /// after it: the same spec and digest, `to`'s own config release; pending on a protected
    /// `to`. With `dry_run`, only what would change.
    pub async fn promote(
        &self,
        project: &str,
        service: &str,
        req: &kiln_api::deploy::PromoteRequest,
        by: &str,
    ) -> ApiResult<(Option<DeploymentRecord>, PromoteChanges)> {
        let from = self.environment(project, &req.from).await?;
        let to = self.environment(project, &req.to).await?;
        plan::check_promotion(&to, &from.name).map_err(ApiErr::conflict)?;
        let current =
            |list: &[DeploymentRecord]| list.iter().find(|d| d.state == "succeeded").cloned();
        let source = current(
            &self.sh.store.deployments(project, Some(service), Some(&from.name)).await?,
        )
        .ok_or_else(|| {
            ApiErr::conflict(format!(
                "`{service}` has no succeeded deployment in `{}` to promote: deploy it there \
                     first",
                from.name
            ))
        })?;
        let mut file: ServiceSpec = serde_json::from_value(source.spec.clone())
            .map_err(|e| ApiErr::internal(format!("deployment {}: {e}", source.number)))?;
        file.environment = None;
        let spec = plan::deployed_spec(&file, service, &to.name, &source.image_ref, None)
            .map_err(invalid)?;
        let spec_json = serde_json::to_value(&spec).map_err(|e| ApiErr::internal(e.to_string()))?;
        let config = self.config_of(project, &spec, service, &to.name).await?;
        let there =
            current(&self.sh.store.deployments(project, Some(service), Some(&to.name)).await?);
        let changes = PromoteChanges {
            digest_from: there.as_ref().map(|d| d.digest.clone()),
            digest_to: source.digest.clone(),
            config_from: there.as_ref().and_then(|d| d.config.as_ref().map(|c| c.1)),
            config_to: config.as_ref().map(|c| c.1),
            spec_changed: there.as_ref().is_none_or(|d| plan::spec_changed(&d.spec, &spec_json)),
        };
        if req.dry_run {
            return Ok((None, changes));
        }
        let new = NewDeployment {
            environment: to.name.clone(),
            kind: "promote".into(),
            pending: to.protected,
            config,
            service_name: spec.name.clone(),
            service_version: None,
            spec: spec_json,
            run: None,
            asked_by: by.to_string(),
            note: req.note.clone(),
            rollback_of: None,
            promoted_from: Some(from.name.clone()),
            ..same_as(&source)
        };
        Ok((Some(self.add(project, &new).await?), changes))
    }

    /// The deployments of `project` (of one service and/or environment), newest first.
    pub async fn list(
        &self,
        project: &str,
        service: Option<&str>,
        env: Option<&str>,
    ) -> ApiResult<Vec<DeploymentRecord>> {
        Ok(self.sh.store.deployments(project, service, env).await?)
    }

    /// Deployment `number` of `service` to `env`.
    pub async fn get(
        &self,
        project: &str,
        service: &str,
        env: &str,
        number: u32,
    ) -> ApiResult<DeploymentRecord> {
        Ok(self.sh.store.deployment(project, service, env, number).await?)
    }

    /// What runs where: the project's environments in order and, per service and
    /// environment, its current deployment (or the newest before the first success), the one
    /// pending or running, and the deployed service's health.
    pub async fn board(&self, project: &str) -> ApiResult<EnvironmentBoard> {
        let envs: Vec<String> =
            self.sh.store.environments(project).await?.into_iter().map(|e| e.name).collect();
        let mut by_cell: BTreeMap<(String, String), Vec<DeploymentRecord>> = BTreeMap::new();
        for d in self.sh.store.deployments(project, None, None).await? {
            by_cell.entry((d.service.clone(), d.environment.clone())).or_default().push(d);
        }
        let order = |e: &str| envs.iter().position(|x| x == e).unwrap_or(usize::MAX);
        let mut cells = Vec::new();
        for ((service, env), list) in by_cell {
            let Some(shown) = list.iter().find(|d| d.state == "succeeded").or(list.first()) else {
                continue;
            };
            let active = list.iter().find(|d| !is_final(d));
            let (healthy, replicas) = match self.sh.services.get(project, &shown.service_name).await
            {
                Ok(s) => (s.healthy, s.replicas),
                Err(_) => (0, 0),
            };
            cells.push(BoardCell {
                service,
                environment: env,
                deployment: dto(shown),
                active: active.map(dto),
                healthy,
                replicas,
            });
        }
        cells.sort_by(|a, b| {
            (a.service.as_str(), order(&a.environment))
                .cmp(&(b.service.as_str(), order(&b.environment)))
        });
        Ok(EnvironmentBoard { environments: envs, cells })
    }

    /// Follows deployment `d` until it is final, sending a line to `progress` whenever what it
    /// waits for changes; returns it as it ended.
    pub async fn follow(
        &self,
        d: &DeploymentRecord,
        progress: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> ApiResult<DeploymentRecord> {
        let what = format!("deployment {} of {} to {}", d.number, d.service, d.environment);
        let mut last = String::new();
        loop {
            let now =
                self.sh.store.deployment(&d.project, &d.service, &d.environment, d.number).await?;
            let line = match now.state.as_str() {
                "pending" => {
                    format!("{what}: waiting for approval by someone other than {}", now.asked_by)
                }
                "running" => match self.sh.services.get(&now.project, &now.service_name).await {
                    Ok(s) if now.service_version.is_some() => {
                        format!("{what}: {}/{} healthy", s.healthy, s.replicas)
                    }
                    _ => format!("{what}: starting"),
                },
                state => match &now.reason {
                    Some(r) => format!("{what}: {state}: {r}"),
                    None => format!("{what}: {state}"),
                },
            };
            if line != last {
                if let Some(p) = progress {
                    let _ = p.send(line.clone());
                }
                last = line;
            }
            if is_final(&now) {
                return Ok(now);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deploys for a workflow's `deploy:` job and returns when the deployment is final:
    /// `Ok` with it whatever its end (succeeded, failed, rolled back, rejected: its `reason`
    /// says why), `Err` when it was refused (nothing stored) or could not be followed.
    /// Progress lines go to `req.progress`.
    ///
    /// A job attempt deploys once: when a deployment of the same run and job (`run.job`
    /// names the attempt) exists already (the server restarted while the job waited), it is
    /// followed instead of a second one made.
    pub async fn deploy_for_job(&self, req: DeployJob) -> Result<Deployment, DeployError> {
        let made = self
            .list(&req.project, Some(&req.spec.name), Some(&req.environment))
            .await?
            .into_iter()
            .find(|d| d.run.as_ref().is_some_and(|r| r.id == req.run.id && r.job == req.run.job));
        if let Some(d) = made {
            let _ = req.progress.send(format!(
                "following deployment {} of {} to {} (made before the server restarted)",
                d.number, d.service, d.environment
            ));
            return Ok(dto(&self.follow(&d, Some(&req.progress)).await?));
        }
        let yaml = serde_json::to_string_pretty(&req.spec)
            .map_err(|e| DeployError::from(ApiErr::internal(e.to_string())))?;
        let file = format!("{} job {}", req.run.name, req.run.job);
        let ask = DeployAsk {
            project: req.project,
            spec: req.spec,
            source: (file, yaml),
            environment: req.environment,
            image: req.image,
            note: Some(format!("{} job {}", req.run.name, req.run.job)),
            timeout: req.timeout,
            run: Some(req.run),
            asked_by: req.asked_by,
        };
        let d = self.deploy(ask).await?;
        let end = self.follow(&d, Some(&req.progress)).await?;
        if end.state == "rolled_back"
            && let Ok(list) =
                self.list(&end.project, Some(&end.service), Some(&end.environment)).await
            && let Some(undo) =
                list.iter().find(|x| x.kind == "auto-rollback" && x.number > end.number)
        {
            let _ = req.progress.send(format!(
                "deployment {} of {} to {} brings back deployment {} ({})",
                undo.number,
                undo.service,
                undo.environment,
                undo.rollback_of.map_or_else(|| "-".into(), |n| n.to_string()),
                undo.state
            ));
        }
        Ok(dto(&end))
    }
}

/// Whether `d`'s state no longer changes (but to `superseded`).
fn is_final(d: &DeploymentRecord) -> bool {
    !matches!(d.state.as_str(), "pending" | "running")
}

/// A new deployment of what `d` deployed (same service, environment, image, spec, source);
/// the caller sets the rest.
fn same_as(d: &DeploymentRecord) -> NewDeployment {
    NewDeployment {
        service: d.service.clone(),
        environment: d.environment.clone(),
        kind: d.kind.clone(),
        pending: false,
        image: d.image.clone(),
        digest: d.digest.clone(),
        image_ref: d.image_ref.clone(),
        config: d.config.clone(),
        service_name: d.service_name.clone(),
        service_version: None,
        spec: d.spec.clone(),
        yaml: d.yaml.clone(),
        file: d.file.clone(),
        run: None,
        asked_by: d.asked_by.clone(),
        note: None,
        rollback_of: None,
        promoted_from: None,
    }
}
