//! Services: long-running replicated workloads of a project. Every apply, scale, restart or
//! rollback adds a numbered version (kept as history); the service row says which version
//! every slot should run (`template`) and which one last ran healthy everywhere (`stable`).
//! Instances are upserted by id as the server observes them, each change appending a
//! [`ServiceEvent`] numbered store-wide, so a discovery watch can resume after a revision.
//! The pure controller (`kiln-service`) decides; this stores what must outlive a restart.
//!
//! Invariants:
//! - version numbers of a service go 1, 2, 3… with no gap, allocated in the version's
//!   transaction (`UPDATE … SET version = version + 1` locks the row on PostgreSQL);
//! - a service's `template` is always a version that is its own template;
//! - an instance's change and its event are stored in one transaction; revisions commit in
//!   increasing order (SQLite's single writer; on PostgreSQL a table lock on `service_events`
//!   taken first), so reading after a revision never skips one committed later.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::error::{Ctx, is_foreign_key};
use crate::model::{check_name, int};
use crate::{Db, ProjectId, Result, RunId, ServiceId, Store, StoreError, now};

/// The kinds of version [`Store::add_service_version`] accepts.
pub(crate) const VERSION_KINDS: [&str; 6] =
    ["apply", "scale", "restart", "rollback", "auto-rollback", "stop"];

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// Its id.
    pub id: ServiceId,
    /// Its project's id.
    pub project_id: ProjectId,
    /// Its project's name.
    pub project: String,
    /// Its name (unique in the project).
    pub name: String,
    /// The latest version number.
    pub version: u32,
    /// The version whose spec every slot should run.
    pub template: u32,
    /// The last template every slot ran healthy (0: none yet).
    pub stable: u32,
    /// How many slots.
    pub replicas: u32,
    /// When `template` last changed; cleared by [`Store::set_service_stable`].
    pub update_started_at: Option<DateTime<Utc>>,
    /// When its first version was added.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The run (and job) that owns it, for a build-scoped pool; `None` for a service applied
    /// by hand.
    pub owner: Option<ServiceOwner>,
    /// The deployments it runs, for a deployed service (`<name>-<environment>`).
    pub deployed: Option<DeployedAs>,
}

/// What a deployed service runs: the deployments of service file `service` to `environment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedAs {
    /// The service file's name.
    pub service: String,
    /// The environment.
    pub environment: String,
}

/// The run, and the job of it, that owns a service (a workflow's `service-pools`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOwner {
    /// The run.
    pub run: RunId,
    /// The job, for a job's own pool; `None` for a pool of the whole run.
    pub job: Option<String>,
}

/// One version of a service, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceVersionRecord {
    /// Its number (1, 2, 3… per service).
    pub version: u32,
    /// The version whose spec it runs (itself, for an apply that changed the spec or a
    /// restart).
    pub template: u32,
    /// Its replica count.
    pub replicas: u32,
    /// What made it: `apply`, `scale`, `restart`, `rollback`, `auto-rollback` or `stop`.
    pub kind: String,
    /// Why, as the author said.
    pub note: Option<String>,
    /// Who made it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The spec (the server's JSON; its template's, when it is not its own template).
    pub spec: serde_json::Value,
    /// The YAML the spec came from.
    pub yaml: String,
    /// The file name the YAML came from.
    pub file: String,
}

/// A version to add with [`Store::add_service_version`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewServiceVersion {
    /// What makes it: `apply`, `scale`, `restart`, `rollback`, `auto-rollback` or `stop`.
    pub kind: String,
    /// Its replica count.
    pub replicas: u32,
    /// Some(t): the new version runs template t's spec (scale, rollback: `spec`/`yaml` are then
    /// copied from version t by the store); None: the new version is its own template (an apply
    /// whose spec changed, or a restart).
    pub template: Option<u32>,
    /// The spec (ignored when `template` is given).
    pub spec: serde_json::Value,
    /// The YAML of the spec (ignored when `template` is given).
    pub yaml: String,
    /// The file name of the YAML (ignored when `template` is given).
    pub file: String,
    /// Why, as the author said.
    pub note: Option<String>,
    /// Who makes it.
    pub by: String,
    /// The owner of a service this version creates (ignored for an existing service).
    pub owner: Option<ServiceOwner>,
    /// The deployments a service this version creates runs (ignored for an existing one).
    pub deployed: Option<DeployedAs>,
}

/// An instance of a service, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its id (given by the server).
    pub id: String,
    /// Its service.
    pub service_id: ServiceId,
    /// The slot it fills.
    pub slot: u32,
    /// The template it runs.
    pub version: u32,
    /// Where it is in its life (`staging`, `starting`, `healthy`…).
    pub state: String,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The node it was placed on.
    pub node: Option<String>,
    /// That node's IP.
    pub host_ip: Option<String>,
    /// Host ports by port name.
    pub ports: BTreeMap<String, u16>,
    /// The lease that runs it.
    pub lease: Option<String>,
    /// Since when it is in its state.
    pub since: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// Restarts of its slot before it.
    pub restarts: u32,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
    /// Out of the live set, kept as history.
    pub forgotten: bool,
}

/// One change, numbered store-wide (a discovery watch resumes from a revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    /// Its number, increasing store-wide.
    pub revision: u64,
    /// The service.
    pub service_id: ServiceId,
    /// The service's project's name.
    pub project: String,
    /// The service's name.
    pub service: String,
    /// The instance as it was stored with this event (`None` for an event of the service, such
    /// as `deleted`).
    pub instance: Option<InstanceRecord>,
    /// What happened (`instance`, `deleted`…).
    pub kind: String,
    /// When.
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: String,
    project_id: String,
    project: String,
    name: String,
    version: i64,
    template: i64,
    stable: i64,
    replicas: i64,
    update_started_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    owner_run: Option<String>,
    owner_job: Option<String>,
    deployed_as: Option<String>,
    environment: Option<String>,
}

impl ServiceRow {
    fn into_record(self) -> Result<ServiceRecord> {
        Ok(ServiceRecord {
            id: ServiceId::from_db(&self.id)?,
            project_id: ProjectId::from_db(&self.project_id)?,
            project: self.project,
            name: self.name,
            version: int(self.version, "service version")?,
            template: int(self.template, "service template")?,
            stable: int(self.stable, "service stable version")?,
            replicas: int(self.replicas, "service replicas")?,
            update_started_at: self.update_started_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            owner: match self.owner_run {
                Some(run) => Some(ServiceOwner { run: RunId::from_db(&run)?, job: self.owner_job }),
                None => None,
            },
            deployed: match (self.deployed_as, self.environment) {
                (Some(service), Some(environment)) => Some(DeployedAs { service, environment }),
                _ => None,
            },
        })
    }
}

/// `SELECT` of a [`ServiceRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! service_select {
    ($rest:literal) => {
        concat!(
            "SELECT s.id, s.project_id, p.name AS project, s.name, s.version, s.template, \
             s.stable, s.replicas, s.update_started_at, s.created_at, s.updated_at, \
             s.owner_run, s.owner_job, s.deployed_as, s.environment \
             FROM services s JOIN projects p ON p.id = s.project_id ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    version: i64,
    template: i64,
    replicas: i64,
    kind: String,
    note: Option<String>,
    author: String,
    at: DateTime<Utc>,
    spec: Json<serde_json::Value>,
    yaml: String,
    file: String,
}

impl VersionRow {
    fn into_record(self) -> Result<ServiceVersionRecord> {
        Ok(ServiceVersionRecord {
            version: int(self.version, "service version")?,
            template: int(self.template, "service version template")?,
            replicas: int(self.replicas, "service version replicas")?,
            kind: self.kind,
            note: self.note,
            by: self.author,
            at: self.at,
            spec: self.spec.0,
            yaml: self.yaml,
            file: self.file,
        })
    }
}

/// `SELECT` of a [`VersionRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! version_select {
    ($rest:literal) => {
        concat!(
            "SELECT version, template, replicas, kind, note, author, at, spec, yaml, file \
             FROM service_versions ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: String,
    service_id: String,
    slot: i64,
    version: i64,
    state: String,
    reason: Option<String>,
    node: Option<String>,
    host_ip: Option<String>,
    ports: Json<BTreeMap<String, u16>>,
    lease: Option<String>,
    since: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    restarts: i64,
    exit_code: Option<i64>,
    forgotten: bool,
}

impl InstanceRow {
    fn into_record(self) -> Result<InstanceRecord> {
        Ok(InstanceRecord {
            id: self.id,
            service_id: ServiceId::from_db(&self.service_id)?,
            slot: int(self.slot, "instance slot")?,
            version: int(self.version, "instance version")?,
            state: self.state,
            reason: self.reason,
            node: self.node,
            host_ip: self.host_ip,
            ports: self.ports.0,
            lease: self.lease,
            since: self.since,
            started_at: self.started_at,
            restarts: int(self.restarts, "instance restarts")?,
            exit_code: self.exit_code.map(|c| int(c, "instance exit code")).transpose()?,
            forgotten: self.forgotten,
        })
    }
}

/// `SELECT` of an [`InstanceRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! instance_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, service_id, slot, version, state, reason, node, host_ip, ports, lease, \
             since, started_at, restarts, exit_code, forgotten FROM service_instances ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct EventRow {
    revision: i64,
    service_id: String,
    project: String,
    service: String,
    instance: Option<Json<InstanceRecord>>,
    kind: String,
    at: DateTime<Utc>,
}

impl EventRow {
    fn into_event(self) -> Result<ServiceEvent> {
        Ok(ServiceEvent {
            revision: int(self.revision, "service event revision")?,
            service_id: ServiceId::from_db(&self.service_id)?,
            project: self.project,
            service: self.service,
            instance: self.instance.map(|i| i.0),
            kind: self.kind,
            at: self.at,
        })
    }
}

/// The names of a service, for its events.
#[derive(sqlx::FromRow)]
struct Names {
    project: String,
    service: String,
}

/// Takes, on PostgreSQL, the lock that makes event revisions commit in order (a transaction
/// that got revision n commits before one gets n + 1). SQLite needs none: its writes are
/// serialized by the store's writer lock and `BEGIN IMMEDIATE`.
const LOCK_EVENTS: &str = "LOCK TABLE service_events IN SHARE ROW EXCLUSIVE MODE";

/// Appends an event in the transaction `$tx` and evaluates to its revision (`i64`).
macro_rules! append_event {
    ($tx:expr, $what:expr, $id:expr, $names:expr, $instance:expr, $kind:expr, $at:expr) => {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO service_events (service_id, project, service, instance, kind, at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING revision",
        )
        .bind($id)
        .bind(&$names.project)
        .bind(&$names.service)
        .bind($instance.map(Json))
        .bind($kind)
        .bind($at)
        .fetch_one(&mut *$tx)
        .await
        .ctx($what)?
    };
}

/// A count or number as the database's signed integer (every `u32` fits).
fn u32_of(v: u32) -> i64 {
    i64::from(v)
}

impl Store {
    /// Adds a version of service `name` of `project` (creating the service with version 1 if
    /// new): version = latest + 1; sets the service's version, template (Some(t) or the new
    /// version itself), replicas; update_started_at = now when the template changed, else
    /// unchanged. One transaction. NotFound for an unknown project; Invalid for a template
    /// that is not a version of this service.
    ///
    /// A given template `t` that is not its own template (a scale or rollback version) stands
    /// for the template it runs, so a service's template is always a version that is its own.
    /// The new version's spec, YAML and file name are then copied from that template.
    pub async fn add_service_version(
        &self,
        project: &str,
        name: &str,
        v: &NewServiceVersion,
    ) -> Result<(ServiceRecord, ServiceVersionRecord)> {
        check_name("service", name)?;
        if !VERSION_KINDS.contains(&v.kind.as_str()) {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a kind of service version (one of {})",
                v.kind,
                VERSION_KINDS.join(", ")
            )));
        }
        if v.by.trim().is_empty() {
            return Err(StoreError::Invalid("a service version needs an author".into()));
        }
        let what = || format!("add a version of service `{project}/{name}`");
        let at = now();
        let (service, version) = with_tx!(self, what, tx => {
            let project_id: Option<String> =
                sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
            let project_id =
                project_id.ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))?;
            sqlx::query(
                "INSERT INTO services (id, project_id, name, version, template, stable, replicas, \
                 update_started_at, created_at, updated_at, owner_run, owner_job, deployed_as, \
                 environment) \
                 VALUES ($1, $2, $3, 0, 0, 0, 0, NULL, $4, $4, $5, $6, $7, $8) \
                 ON CONFLICT (project_id, name) DO NOTHING")
                .bind(ServiceId::new().text())
                .bind(&project_id)
                .bind(name)
                .bind(at)
                .bind(v.owner.as_ref().map(|o| o.run.text()))
                .bind(v.owner.as_ref().and_then(|o| o.job.clone()))
                .bind(v.deployed.as_ref().map(|d| d.service.clone()))
                .bind(v.deployed.as_ref().map(|d| d.environment.clone()))
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            // Allocates the number and, on PostgreSQL, locks the row until the commit.
            let (id, number, old_template): (String, i64, i64) = sqlx::query_as(
                "UPDATE services SET version = version + 1, updated_at = $3 \
                 WHERE project_id = $1 AND name = $2 RETURNING id, version, template")
                .bind(&project_id)
                .bind(name)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            let (template, spec, yaml, file) = match v.template {
                None => (number, Json(v.spec.clone()), v.yaml.clone(), v.file.clone()),
                Some(t) => {
                    let of = |t: i64| {
                        sqlx::query_as::<_, VersionRow>(version_select!(
                            "WHERE service_id = $1 AND version = $2"))
                            .bind(id.clone())
                            .bind(t)
                    };
                    let given = of(u32_of(t))
                        .fetch_optional(&mut *tx)
                        .await
                        .ctx(what)?
                        .ok_or_else(|| StoreError::Invalid(format!(
                            "service `{project}/{name}` has no version {t} to run"
                        )))?;
                    let source = if given.template == given.version {
                        given
                    } else {
                        of(given.template).fetch_one(&mut *tx).await.ctx(what)?
                    };
                    (source.version, source.spec, source.yaml, source.file)
                }
            };
            sqlx::query(
                "INSERT INTO service_versions (service_id, version, template, replicas, kind, \
                 note, author, at, spec, yaml, file) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                .bind(&id)
                .bind(number)
                .bind(template)
                .bind(u32_of(v.replicas))
                .bind(&v.kind)
                .bind(&v.note)
                .bind(&v.by)
                .bind(at)
                .bind(spec)
                .bind(yaml)
                .bind(file)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            let started = (template != old_template).then_some(at);
            sqlx::query(
                "UPDATE services SET template = $2, replicas = $3, \
                 update_started_at = COALESCE($4, update_started_at) WHERE id = $1")
                .bind(&id)
                .bind(template)
                .bind(u32_of(v.replicas))
                .bind(started)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            let service = sqlx::query_as::<_, ServiceRow>(service_select!("WHERE s.id = $1"))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            let version = sqlx::query_as::<_, VersionRow>(version_select!(
                "WHERE service_id = $1 AND version = $2"))
                .bind(&id)
                .bind(number)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            (service, version)
        });
        Ok((service.into_record()?, version.into_record()?))
    }

    /// Finds an earlier version with the same spec (JSON equality), for "an apply that changes
    /// nothing but replicas reuses its template". Only versions that are their own template are
    /// candidates; the newest of them wins (a restart's, over the apply it restarted).
    pub async fn service_version_with_spec(
        &self,
        id: &ServiceId,
        spec: &serde_json::Value,
    ) -> Result<Option<ServiceVersionRecord>> {
        let what = || format!("find a version of service {id} by spec");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, VersionRow>(version_select!(
            "WHERE service_id = $1 AND template = version ORDER BY version DESC"))
            .bind(id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        // Compared as values: JSONB and JSON text need not keep the same key order.
        rows.into_iter().find(|r| &r.spec.0 == spec).map(VersionRow::into_record).transpose()
    }

    /// The service `name` of `project`. `NotFound` names the project when it does not exist,
    /// else the service.
    pub async fn service(&self, project: &str, name: &str) -> Result<ServiceRecord> {
        let what = || format!("get service `{project}/{name}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ServiceRow>(
            service_select!("WHERE p.name = $1 AND s.name = $2"))
            .bind(project)
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        match row {
            Some(row) => row.into_record(),
            None => {
                self.project(project).await?;
                Err(StoreError::NotFound(format!("service `{name}` of project `{project}`")))
            }
        }
    }

    /// The service with this id.
    pub async fn service_by_id(&self, id: &ServiceId) -> Result<ServiceRecord> {
        let what = || format!("get service {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ServiceRow>(
            service_select!("WHERE s.id = $1"))
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("service {id}")))?.into_record()
    }

    /// Every service (of `project` only, when given), by project then name. `NotFound` for an
    /// unknown `project`.
    pub async fn services(&self, project: Option<&str>) -> Result<Vec<ServiceRecord>> {
        let what = || "list services".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ServiceRow>(service_select!(
            "WHERE ($1 IS NULL OR p.name = $1) ORDER BY p.name, s.name"))
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if let (true, Some(project)) = (rows.is_empty(), project) {
            // An empty list must still tell a missing project from one without services.
            self.project(project).await?;
        }
        rows.into_iter().map(ServiceRow::into_record).collect()
    }

    /// Every service a run owns (build-scoped pools), by project then name.
    pub async fn owned_services(&self) -> Result<Vec<ServiceRecord>> {
        let what = || "list services owned by runs".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ServiceRow>(service_select!(
            "WHERE s.owner_run IS NOT NULL ORDER BY p.name, s.name"))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(ServiceRow::into_record).collect()
    }

    /// Every version of a service, oldest first. `NotFound` for an unknown service.
    pub async fn service_versions(&self, id: &ServiceId) -> Result<Vec<ServiceVersionRecord>> {
        let what = || format!("list versions of service {id}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, VersionRow>(version_select!(
            "WHERE service_id = $1 ORDER BY version"))
            .bind(id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.service_by_id(id).await?;
        }
        rows.into_iter().map(VersionRow::into_record).collect()
    }

    /// Version `version` of a service. `NotFound` for an unknown service or version.
    pub async fn service_version(
        &self,
        id: &ServiceId,
        version: u32,
    ) -> Result<ServiceVersionRecord> {
        let what = || format!("get version {version} of service {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, VersionRow>(version_select!(
            "WHERE service_id = $1 AND version = $2"))
            .bind(id.text())
            .bind(u32_of(version))
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        match row {
            Some(row) => row.into_record(),
            None => {
                self.service_by_id(id).await?;
                Err(StoreError::NotFound(format!("version {version} of service {id}")))
            }
        }
    }

    /// stable = template, update_started_at = NULL. `NotFound` for an unknown service.
    pub async fn set_service_stable(&self, id: &ServiceId, template: u32) -> Result<()> {
        let what = || format!("mark version {template} of service {id} stable");
        let n = with_write!(self, p => sqlx::query(
            "UPDATE services SET stable = $2, update_started_at = NULL, updated_at = $3 \
             WHERE id = $1")
            .bind(id.text())
            .bind(u32_of(template))
            .bind(now())
            .execute(p)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("service {id}")));
        }
        Ok(())
    }

    /// Deletes the service, its versions and instances, and appends a `deleted` event (with no
    /// instance) in the same transaction: a discovery watch learns that its instances are
    /// gone. Its earlier events stay. `NotFound` for an unknown service.
    pub async fn delete_service(&self, id: &ServiceId) -> Result<()> {
        let what = || format!("delete service {id}");
        let postgres = matches!(self.db, Db::Postgres(_));
        let at = now();
        with_tx!(self, what, tx => {
            if postgres {
                sqlx::query(LOCK_EVENTS).execute(&mut *tx).await.ctx(what)?;
            }
            let names = sqlx::query_as::<_, Names>(
                "SELECT p.name AS project, s.name AS service \
                 FROM services s JOIN projects p ON p.id = s.project_id WHERE s.id = $1")
                .bind(id.text())
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("service {id}")))?;
            sqlx::query("DELETE FROM services WHERE id = $1")
                .bind(id.text())
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            append_event!(tx, what, id.text(), names, None::<&InstanceRecord>, "deleted", at);
        });
        Ok(())
    }

    /// Inserts or replaces an instance (by id) AND appends a ServiceEvent (kind e.g.
    /// "instance") in the same transaction; returns the event's revision. `NotFound` for an
    /// unknown service; `Invalid` for an empty id or kind, or an id of another service's
    /// instance.
    pub async fn put_instance(&self, i: &InstanceRecord, kind: &str) -> Result<u64> {
        if i.id.trim().is_empty() {
            return Err(StoreError::Invalid("an instance needs an id".into()));
        }
        if kind.trim().is_empty() {
            return Err(StoreError::Invalid("a service event needs a kind".into()));
        }
        let service = i.service_id;
        let what = || format!("save instance `{}` of service {service}", i.id);
        let postgres = matches!(self.db, Db::Postgres(_));
        let at = now();
        let revision = with_tx!(self, what, tx => {
            if postgres {
                sqlx::query(LOCK_EVENTS).execute(&mut *tx).await.ctx(what)?;
            }
            let names = sqlx::query_as::<_, Names>(
                "SELECT p.name AS project, s.name AS service \
                 FROM services s JOIN projects p ON p.id = s.project_id WHERE s.id = $1")
                .bind(service.text())
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("service {service}")))?;
            let written = sqlx::query(
                "INSERT INTO service_instances (id, service_id, slot, version, state, reason, \
                 node, host_ip, ports, lease, since, started_at, restarts, exit_code, forgotten) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (id) DO UPDATE SET slot = excluded.slot, \
                 version = excluded.version, state = excluded.state, reason = excluded.reason, \
                 node = excluded.node, host_ip = excluded.host_ip, ports = excluded.ports, \
                 lease = excluded.lease, since = excluded.since, \
                 started_at = excluded.started_at, restarts = excluded.restarts, \
                 exit_code = excluded.exit_code, forgotten = excluded.forgotten \
                 WHERE service_instances.service_id = excluded.service_id")
                .bind(&i.id)
                .bind(service.text())
                .bind(u32_of(i.slot))
                .bind(u32_of(i.version))
                .bind(&i.state)
                .bind(&i.reason)
                .bind(&i.node)
                .bind(&i.host_ip)
                .bind(Json(&i.ports))
                .bind(&i.lease)
                .bind(i.since)
                .bind(i.started_at)
                .bind(u32_of(i.restarts))
                .bind(i.exit_code.map(i64::from))
                .bind(i.forgotten)
                .execute(&mut *tx)
                .await;
            match written {
                Ok(done) if done.rows_affected() == 0 => {
                    return Err(StoreError::Invalid(format!(
                        "instance `{}` belongs to another service", i.id
                    )));
                }
                Ok(_) => {}
                Err(e) if is_foreign_key(&e) => {
                    return Err(StoreError::NotFound(format!("service {service}")));
                }
                Err(e) => return Err(e).ctx(what),
            }
            append_event!(tx, what, service.text(), names, Some(i), kind, at)
        });
        int(revision, "service event revision")
    }

    /// Instances of a service; forgotten ones only if asked. By slot, then since. `NotFound`
    /// for an unknown service.
    pub async fn instances(
        &self,
        id: &ServiceId,
        with_forgotten: bool,
    ) -> Result<Vec<InstanceRecord>> {
        let what = || format!("list instances of service {id}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, InstanceRow>(instance_select!(
            "WHERE service_id = $1 AND ($2 OR NOT forgotten) ORDER BY slot, since, id"))
            .bind(id.text())
            .bind(with_forgotten)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.service_by_id(id).await?;
        }
        rows.into_iter().map(InstanceRow::into_record).collect()
    }

    /// Every instance not forgotten, of every service (server start-up), by service, slot and
    /// since.
    pub async fn live_instances(&self) -> Result<Vec<InstanceRecord>> {
        let what = || "list live instances".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, InstanceRow>(instance_select!(
            "WHERE NOT forgotten ORDER BY service_id, slot, since, id"))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(InstanceRow::into_record).collect()
    }

    /// Service events after `revision`, oldest first, at most `limit`.
    pub async fn service_events_after(
        &self,
        revision: u64,
        limit: u32,
    ) -> Result<Vec<ServiceEvent>> {
        let what = || format!("list service events after revision {revision}");
        // A revision beyond i64 is after every stored one.
        let Ok(after) = i64::try_from(revision) else { return Ok(Vec::new()) };
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, EventRow>(
            "SELECT revision, service_id, project, service, instance, kind, at \
             FROM service_events WHERE revision > $1 ORDER BY revision LIMIT $2")
            .bind(after)
            .bind(u32_of(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The newest revision (0 when none).
    pub async fn service_revision(&self) -> Result<u64> {
        let what = || "get the newest service event revision".to_string();
        let newest: Option<i64> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT MAX(revision) FROM service_events")
            .fetch_one(p)
            .await)
        .ctx(what)?;
        newest.map_or(Ok(0), |r| int(r, "service event revision"))
    }
}
