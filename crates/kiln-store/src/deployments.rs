//! Deployments of a service file to an environment of its project (`kiln deploy`, `rollback`,
//! `promote`, and the controller's automatic rollbacks), numbered 1, 2, 3… per project,
//! service and environment. The server decides; this keeps what must outlive a restart.
//!
//! Invariants:
//! - a deployment is immutable except its state, its approval, its end and the service
//!   version it made: what was deployed (image, digest, spec, config release, run, who, when)
//!   never changes, and none is deleted;
//! - at most one deployment of a service to an environment is `pending` or `running` (a
//!   unique partial index; [`Store::add_deployment`] says which one blocks);
//! - at most one is `succeeded` (the environment's current one): the one a newer success
//!   replaces becomes `superseded` in the same transaction;
//! - a state changes only from the state the caller read (`pending` to `running` or
//!   `rejected`, `running` to a final state), so two servers never both finish one.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{Ctx, is_unique};
use crate::model::{check_name, int};
use crate::{ProjectId, Result, Store, StoreError, now};

/// The states a deployment can be in.
pub const DEPLOYMENT_STATES: [&str; 7] =
    ["pending", "running", "succeeded", "failed", "rolled_back", "rejected", "superseded"];

/// The kinds of deployment.
pub const DEPLOYMENT_KINDS: [&str; 4] = ["deploy", "rollback", "promote", "auto-rollback"];

/// The workflow run (and job) that made a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRun {
    /// The run's id.
    pub id: String,
    /// `project/pipeline#number`.
    pub name: String,
    /// The job.
    pub job: String,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    /// Its project's id.
    pub project_id: ProjectId,
    /// Its project's name.
    pub project: String,
    /// The service file's name (`api`).
    pub service: String,
    /// The environment.
    pub environment: String,
    /// Its number (1, 2, 3… per project, service and environment).
    pub number: u32,
    /// `deploy`, `rollback`, `promote` or `auto-rollback`.
    pub kind: String,
    /// One of [`DEPLOYMENT_STATES`].
    pub state: String,
    /// The image as asked.
    pub image: String,
    /// Its manifest's digest.
    pub digest: String,
    /// `<registry host>/<repo>@<digest>`: what the service runs.
    pub image_ref: String,
    /// The config application and its release current in the environment when deployed.
    pub config: Option<(String, u32)>,
    /// The service that runs it (`api-staging`).
    pub service_name: String,
    /// The version of that service it made (none until applied).
    pub service_version: Option<u32>,
    /// The service's spec as deployed (the server's JSON).
    pub spec: serde_json::Value,
    /// The YAML the spec came from.
    pub yaml: String,
    /// The file name the YAML came from.
    pub file: String,
    /// The run that deployed it.
    pub run: Option<DeploymentRun>,
    /// Who asked.
    pub asked_by: String,
    /// When.
    pub asked_at: DateTime<Utc>,
    /// Who approved it (a protected environment's).
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why, as the asker said.
    pub note: Option<String>,
    /// Why it failed, was rolled back or rejected.
    pub reason: Option<String>,
    /// The deployment whose image and spec it brings back.
    pub rollback_of: Option<u32>,
    /// The environment a promotion took its image and spec from.
    pub promoted_from: Option<String>,
}

/// A deployment to add with [`Store::add_deployment`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The service file's name.
    pub service: String,
    /// The environment.
    pub environment: String,
    /// One of [`DEPLOYMENT_KINDS`].
    pub kind: String,
    /// Waits for approval (`pending`) rather than runs at once (`running`).
    pub pending: bool,
    /// The image as asked.
    pub image: String,
    /// Its manifest's digest.
    pub digest: String,
    /// `<registry host>/<repo>@<digest>`.
    pub image_ref: String,
    /// The config application and its current release.
    pub config: Option<(String, u32)>,
    /// The service that runs it.
    pub service_name: String,
    /// The version of that service it is (known at once for an automatic rollback).
    pub service_version: Option<u32>,
    /// The spec as deployed.
    pub spec: serde_json::Value,
    /// Its YAML.
    pub yaml: String,
    /// Its file name.
    pub file: String,
    /// The run that deploys it.
    pub run: Option<DeploymentRun>,
    /// Who asks.
    pub asked_by: String,
    /// Why.
    pub note: Option<String>,
    /// The deployment it brings back.
    pub rollback_of: Option<u32>,
    /// The environment a promotion takes it from.
    pub promoted_from: Option<String>,
}

/// A final state to store with [`Store::finish_deployment`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentEnd {
    /// `succeeded`, `failed` or `rolled_back`.
    pub state: &'static str,
    /// Why (failed, rolled back).
    pub reason: Option<String>,
    /// A deployment to start in the same transaction (the controller's automatic rollback).
    pub then: Option<NewDeployment>,
}

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    project_id: String,
    project: String,
    service: String,
    environment: String,
    number: i64,
    kind: String,
    state: String,
    image: String,
    digest: String,
    image_ref: String,
    config_app: Option<String>,
    config_release: Option<i64>,
    service_name: String,
    service_version: Option<i64>,
    spec: Json<serde_json::Value>,
    yaml: String,
    file: String,
    run_id: Option<String>,
    run_name: Option<String>,
    run_job: Option<String>,
    asked_by: String,
    asked_at: DateTime<Utc>,
    approved_by: Option<String>,
    approved_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    note: Option<String>,
    reason: Option<String>,
    rollback_of: Option<i64>,
    promoted_from: Option<String>,
}

impl DeploymentRow {
    fn into_record(self) -> Result<DeploymentRecord> {
        let opt = |v: Option<i64>, what: &str| v.map(|v| int(v, what)).transpose();
        let config = match (self.config_app, self.config_release) {
            (Some(app), Some(r)) => Some((app, int(r, "deployment config release")?)),
            _ => None,
        };
        let run = match (self.run_id, self.run_name, self.run_job) {
            (Some(id), Some(name), Some(job)) => Some(DeploymentRun { id, name, job }),
            _ => None,
        };
        Ok(DeploymentRecord {
            project_id: ProjectId::from_db(&self.project_id)?,
            project: self.project,
            service: self.service,
            environment: self.environment,
            number: int(self.number, "deployment number")?,
            kind: self.kind,
            state: self.state,
            image: self.image,
            digest: self.digest,
            image_ref: self.image_ref,
            config,
            service_name: self.service_name,
            service_version: opt(self.service_version, "deployment service version")?,
            spec: self.spec.0,
            yaml: self.yaml,
            file: self.file,
            run,
            asked_by: self.asked_by,
            asked_at: self.asked_at,
            approved_by: self.approved_by,
            approved_at: self.approved_at,
            finished_at: self.finished_at,
            note: self.note,
            reason: self.reason,
            rollback_of: opt(self.rollback_of, "deployment rollback_of")?,
            promoted_from: self.promoted_from,
        })
    }
}

/// `SELECT` of a [`DeploymentRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! deployment_select {
    ($rest:literal) => {
        concat!(
            "SELECT d.project_id, p.name AS project, d.service, d.environment, d.number, d.kind, \
             d.state, d.image, d.digest, d.image_ref, d.config_app, d.config_release, \
             d.service_name, d.service_version, d.spec, d.yaml, d.file, d.run_id, d.run_name, \
             d.run_job, d.asked_by, d.asked_at, d.approved_by, d.approved_at, d.finished_at, \
             d.note, d.reason, d.rollback_of, d.promoted_from \
             FROM deployments d JOIN projects p ON p.id = d.project_id ",
            $rest
        )
    };
}

/// Inserts `$new` as deployment `$number` of project `$project_id` in the transaction `$tx`,
/// evaluating to the driver's result (a unique violation: another one is active).
macro_rules! insert_deployment {
    ($tx:expr, $project_id:expr, $number:expr, $new:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO deployments (project_id, service, environment, number, kind, state, \
             image, digest, image_ref, config_app, config_release, service_name, \
             service_version, spec, yaml, file, run_id, run_name, run_job, asked_by, asked_at, \
             note, rollback_of, promoted_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind($project_id)
        .bind(&$new.service)
        .bind(&$new.environment)
        .bind($number)
        .bind(&$new.kind)
        .bind(if $new.pending { "pending" } else { "running" })
        .bind(&$new.image)
        .bind(&$new.digest)
        .bind(&$new.image_ref)
        .bind($new.config.as_ref().map(|c| c.0.clone()))
        .bind($new.config.as_ref().map(|c| i64::from(c.1)))
        .bind(&$new.service_name)
        .bind($new.service_version.map(i64::from))
        .bind(Json(&$new.spec))
        .bind(&$new.yaml)
        .bind(&$new.file)
        .bind($new.run.as_ref().map(|r| r.id.clone()))
        .bind($new.run.as_ref().map(|r| r.name.clone()))
        .bind($new.run.as_ref().map(|r| r.job.clone()))
        .bind(&$new.asked_by)
        .bind($at)
        .bind(&$new.note)
        .bind($new.rollback_of.map(i64::from))
        .bind(&$new.promoted_from)
        .execute(&mut *$tx)
        .await
    };
}

/// The next number of `$service` in `$env` of project `$project_id`, in the transaction `$tx`
/// (the active one, if any, is refused first).
macro_rules! next_number {
    ($tx:expr, $what:expr, $project_id:expr, $project:expr, $service:expr, $env:expr) => {{
        let active: Option<(i64, String)> = sqlx::query_as(
            "SELECT number, state FROM deployments WHERE project_id = $1 AND service = $2 \
             AND environment = $3 AND state IN ('pending', 'running')",
        )
        .bind($project_id)
        .bind($service)
        .bind($env)
        .fetch_optional(&mut *$tx)
        .await
        .ctx($what)?;
        if let Some((n, state)) = active {
            return Err(StoreError::Conflict(active_message($project, $service, $env, n, &state)));
        }
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(number) FROM deployments WHERE project_id = $1 AND service = $2 \
             AND environment = $3",
        )
        .bind($project_id)
        .bind($service)
        .bind($env)
        .fetch_one(&mut *$tx)
        .await
        .ctx($what)?;
        last.unwrap_or(0) + 1
    }};
}

/// What a deployment that blocks another one says.
fn active_message(project: &str, service: &str, env: &str, number: i64, state: &str) -> String {
    let what = if state == "pending" {
        format!(
            "waits for approval: approve or reject it first (`kiln deploy approve|reject \
             {service} --env {env} {number}`)"
        )
    } else {
        "is still running: wait for it to end (`kiln deploy show`)".to_string()
    };
    format!("deployment {number} of `{project}/{service}` to `{env}` {what}")
}

fn check_new(d: &NewDeployment) -> Result<()> {
    check_name("service", &d.service)?;
    check_name("environment", &d.environment)?;
    if !DEPLOYMENT_KINDS.contains(&d.kind.as_str()) {
        return Err(StoreError::Invalid(format!(
            "`{}` is not a kind of deployment (one of {})",
            d.kind,
            DEPLOYMENT_KINDS.join(", ")
        )));
    }
    if d.asked_by.trim().is_empty() {
        return Err(StoreError::Invalid("a deployment needs someone who asks for it".into()));
    }
    Ok(())
}

impl Store {
    /// Adds deployment `d` of `project` (number = the last one + 1), `pending` or `running`.
    /// `Conflict` naming the deployment that is still pending or running for the same service
    /// and environment; `NotFound` for an unknown project.
    pub async fn add_deployment(
        &self,
        project: &str,
        d: &NewDeployment,
    ) -> Result<DeploymentRecord> {
        check_new(d)?;
        let what =
            || format!("add a deployment of `{project}/{}` to `{}`", d.service, d.environment);
        let at = now();
        let number = with_tx!(self, what, tx => {
            let project_id: String = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))?;
            let number = next_number!(tx, what, &project_id, project, &d.service, &d.environment);
            match insert_deployment!(tx, &project_id, number, d, at) {
                Ok(_) => {}
                // Another server's insert came first (PostgreSQL): the index says it is active.
                Err(e) if is_unique(&e) => {
                    return Err(StoreError::Conflict(format!(
                        "another deployment of `{project}/{}` to `{}` started meanwhile: see \
                         `kiln deploy history {} --env {}`",
                        d.service, d.environment, d.service, d.environment
                    )));
                }
                Err(e) => return Err(e).ctx(what),
            }
            number
        });
        self.deployment(project, &d.service, &d.environment, int(number, "deployment number")?)
            .await
    }

    /// Deployment `number` of `service` to `env` in `project`. `NotFound` names it.
    pub async fn deployment(
        &self,
        project: &str,
        service: &str,
        env: &str,
        number: u32,
    ) -> Result<DeploymentRecord> {
        let what = || format!("get deployment {number} of `{project}/{service}` to `{env}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, DeploymentRow>(deployment_select!(
            "WHERE p.name = $1 AND d.service = $2 AND d.environment = $3 AND d.number = $4"))
            .bind(project)
            .bind(service)
            .bind(env)
            .bind(i64::from(number))
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        match row {
            Some(row) => row.into_record(),
            None => {
                self.project(project).await?;
                Err(StoreError::NotFound(format!(
                    "deployment {number} of `{service}` to `{env}` in project `{project}`"
                )))
            }
        }
    }

    /// The deployments of `project` (of one service and/or environment when given), newest
    /// first. `NotFound` for an unknown project.
    pub async fn deployments(
        &self,
        project: &str,
        service: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<DeploymentRecord>> {
        let what = || format!("list the deployments of `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, DeploymentRow>(deployment_select!(
            "WHERE p.name = $1 AND ($2 IS NULL OR d.service = $2) \
             AND ($3 IS NULL OR d.environment = $3) \
             ORDER BY d.asked_at DESC, d.service, d.environment, d.number DESC"))
            .bind(project)
            .bind(service)
            .bind(env)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.project(project).await?;
        }
        rows.into_iter().map(DeploymentRow::into_record).collect()
    }

    /// Every deployment in `state` (of every project), oldest first: what a starting server
    /// picks up again.
    pub async fn deployments_in(&self, state: &str) -> Result<Vec<DeploymentRecord>> {
        let what = || format!("list {state} deployments");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, DeploymentRow>(deployment_select!(
            "WHERE d.state = $1 ORDER BY d.asked_at, d.number"))
            .bind(state)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(DeploymentRow::into_record).collect()
    }

    /// Records the service version a running deployment made. `Conflict` unless it is
    /// running.
    pub async fn set_deployment_version(
        &self,
        d: &DeploymentRecord,
        service_version: u32,
    ) -> Result<()> {
        let what = || format!("record the service version of deployment {}", d.number);
        let n = with_write!(self, p => sqlx::query(
            "UPDATE deployments SET service_version = $5 WHERE project_id = $1 AND service = $2 \
             AND environment = $3 AND number = $4 AND state = 'running'")
            .bind(d.project_id.text())
            .bind(&d.service)
            .bind(&d.environment)
            .bind(i64::from(d.number))
            .bind(i64::from(service_version))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "deployment {} of `{}/{}` to `{}` is not running",
                d.number, d.project, d.service, d.environment
            )));
        }
        Ok(())
    }

    /// Approves (`running`, with who and when) or rejects (`rejected`, finished, `reason`) the
    /// pending deployment `d`. `Conflict` unless it is still pending.
    pub async fn decide_deployment(
        &self,
        d: &DeploymentRecord,
        approve: bool,
        by: &str,
    ) -> Result<DeploymentRecord> {
        let what = || format!("decide deployment {}", d.number);
        let at = now();
        let sql = if approve {
            "UPDATE deployments SET state = 'running', approved_by = $5, approved_at = $6 \
             WHERE project_id = $1 AND service = $2 AND environment = $3 AND number = $4 \
             AND state = 'pending'"
        } else {
            "UPDATE deployments SET state = 'rejected', reason = $5, finished_at = $6 \
             WHERE project_id = $1 AND service = $2 AND environment = $3 AND number = $4 \
             AND state = 'pending'"
        };
        let who = if approve { by.to_string() } else { format!("rejected by {by}") };
        let n = with_write!(self, p => sqlx::query(sql)
            .bind(d.project_id.text())
            .bind(&d.service)
            .bind(&d.environment)
            .bind(i64::from(d.number))
            .bind(&who)
            .bind(at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        let now = self.deployment(&d.project, &d.service, &d.environment, d.number).await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "deployment {} of `{}/{}` to `{}` is {}, not waiting for approval",
                d.number, d.project, d.service, d.environment, now.state
            )));
        }
        Ok(now)
    }

    /// Ends the running deployment `d` in `end.state` (with `end.reason`): a success makes
    /// the environment's previous success `superseded`; `end.then` is added (running) in the
    /// same transaction. `Moved` unless it is still running (another server ended it).
    pub async fn finish_deployment(
        &self,
        d: &DeploymentRecord,
        end: &DeploymentEnd,
    ) -> Result<(DeploymentRecord, Option<DeploymentRecord>)> {
        if !["succeeded", "failed", "rolled_back"].contains(&end.state) {
            return Err(StoreError::Invalid(format!(
                "`{}` is not how a running deployment ends (succeeded, failed or rolled_back)",
                end.state
            )));
        }
        if let Some(then) = &end.then {
            check_new(then)?;
        }
        let what = || format!("end deployment {} of `{}/{}`", d.number, d.project, d.service);
        let at = now();
        let (project_id, service, env) = (d.project_id.text(), &d.service, &d.environment);
        let then = with_tx!(self, what, tx => {
            let n = sqlx::query(
                "UPDATE deployments SET state = $5, reason = $6, finished_at = $7 \
                 WHERE project_id = $1 AND service = $2 AND environment = $3 AND number = $4 \
                 AND state = 'running'")
                .bind(&project_id)
                .bind(service)
                .bind(env)
                .bind(i64::from(d.number))
                .bind(end.state)
                .bind(&end.reason)
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::Moved(format!(
                    "deployment {} of `{}/{service}` to `{env}` is no longer running",
                    d.number, d.project
                )));
            }
            if end.state == "succeeded" {
                sqlx::query(
                    "UPDATE deployments SET state = 'superseded' WHERE project_id = $1 \
                     AND service = $2 AND environment = $3 AND state = 'succeeded' \
                     AND number <> $4")
                    .bind(&project_id)
                    .bind(service)
                    .bind(env)
                    .bind(i64::from(d.number))
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            match &end.then {
                Some(then) => {
                    let number = next_number!(tx, what, &project_id, &d.project, &then.service,
                        &then.environment);
                    insert_deployment!(tx, &project_id, number, then, at).ctx(what)?;
                    Some((then.service.clone(), then.environment.clone(), number))
                }
                None => None,
            }
        });
        let ended = self.deployment(&d.project, service, env, d.number).await?;
        let then = match then {
            Some((s, e, n)) => {
                Some(self.deployment(&d.project, &s, &e, int(n, "deployment number")?).await?)
            }
            None => None,
        };
        Ok((ended, then))
    }
}
