//! The config center's records: applications' config (items: one template per file; shared
//! values; values per environment), releases per application and environment, the head of
//! each (the release everyone gets, the gray one, the one waiting for approval) and the audit
//! log of every change. The pure `kiln-config` crate renders and decides; this stores.
//!
//! Invariants:
//! - every change is stored in one transaction with its audit entry;
//! - release numbers of an application in an environment go 1, 2, 3… with no gap, from the
//!   head's counter in the release's transaction; a release's files, digest and snapshot
//!   never change once stored, and no release is ever deleted (only its environment's or
//!   application's deletion removes it);
//! - a change of a head ([`Store::add_config_release`], [`Store::decide_config_release`])
//!   names the head revision it was decided on and is refused (`Moved`) if another change
//!   came first, so a decision is never applied to a head it did not see.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::environments::EnvironmentRecord;
use crate::error::Ctx;
use crate::model::{check_name, int};
use crate::{ConfigAppId, ProjectId, Result, Store, StoreError, now};

/// An application's config as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAppRecord {
    /// Its id.
    pub id: ConfigAppId,
    /// Its project's id.
    pub project_id: ProjectId,
    /// Its project's name.
    pub project: String,
    /// Its name (unique in the project).
    pub name: String,
    /// The shared values (YAML, as written).
    pub shared_values: String,
    /// Created (its first item or values).
    pub created_at: DateTime<Utc>,
    /// Last change of its items or values.
    pub updated_at: DateTime<Utc>,
}

/// One config item: a file's template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigItemRecord {
    /// The file's name.
    pub file: String,
    /// Its template.
    pub template: String,
    /// Who set it last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// An application's values in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValuesRecord {
    /// The environment.
    pub environment: String,
    /// The values (YAML, as written).
    pub yaml: String,
    /// Who set them last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// What a release was rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// The templates, by file.
    pub templates: BTreeMap<String, String>,
    /// The shared values (YAML).
    pub shared_values: String,
    /// The environment's values (YAML).
    pub values: String,
}

/// A release as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReleaseRecord {
    /// Its number (1, 2, 3… per application and environment).
    pub number: u32,
    /// `pending`, `released` or `rejected`.
    pub state: String,
    /// `release` or `rollback`.
    pub kind: String,
    /// A rollback's source release.
    pub rollback_of: Option<u32>,
    /// A gray release's instances (empty: a release to everyone).
    pub instances: Vec<String>,
    /// The digest of its files.
    pub digest: String,
    /// The rendered files.
    pub files: BTreeMap<String, String>,
    /// What they were rendered from.
    pub snapshot: ConfigSnapshot,
    /// Why, as the asker said.
    pub note: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Who approved or rejected it (a protected environment's).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who released it (a gray release) to everyone.
    pub promoted_by: Option<String>,
    /// When.
    pub promoted_at: Option<DateTime<Utc>>,
}

/// The head of an application in an environment, by release number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigTarget {
    /// Bumped by every change of the head (0: no release asked yet).
    pub revision: u64,
    /// The last number given.
    pub last_number: u32,
    /// The release everyone gets.
    pub current: Option<u32>,
    /// The gray release.
    pub gray: Option<u32>,
    /// The release waiting for approval.
    pub pending: Option<u32>,
}

/// A head with its releases, as [`Store::config_head`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigHead {
    /// The application.
    pub app: ConfigAppRecord,
    /// The environment.
    pub environment: EnvironmentRecord,
    /// The head.
    pub target: ConfigTarget,
    /// The release everyone gets.
    pub current: Option<ConfigReleaseRecord>,
    /// The gray release.
    pub gray: Option<ConfigReleaseRecord>,
    /// The release waiting for approval.
    pub pending: Option<ConfigReleaseRecord>,
}

/// A release to add with [`Store::add_config_release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConfigRelease {
    /// Waiting for approval rather than released.
    pub pending: bool,
    /// `release` or `rollback`.
    pub kind: String,
    /// A rollback's source release.
    pub rollback_of: Option<u32>,
    /// A gray release's instances (empty: to everyone).
    pub instances: Vec<String>,
    /// The digest of `files`.
    pub digest: String,
    /// The rendered files.
    pub files: BTreeMap<String, String>,
    /// What they were rendered from.
    pub snapshot: ConfigSnapshot,
    /// Why.
    pub note: Option<String>,
    /// Who asks.
    pub by: String,
}

/// A decision about a release already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigDecision {
    /// The waiting release is released.
    Approve,
    /// The waiting release is rejected.
    Reject,
    /// The gray release is released to everyone.
    Promote,
}

/// A decision to store with [`Store::decide_config_release`]: which release, what, by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDecided<'a> {
    /// The release decided.
    pub number: u32,
    /// What is decided.
    pub decision: ConfigDecision,
    /// Who decides.
    pub by: &'a str,
}

/// One entry of an application's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAuditRecord {
    /// Its number, increasing store-wide.
    pub id: u64,
    /// The application.
    pub app: String,
    /// The environment, for a change of one.
    pub environment: Option<String>,
    /// What was done (`template`, `template removed`, `values`, `release`, `rollback`,
    /// `gray release`, `release requested`, `approve`, `reject`, `release to all`).
    pub action: String,
    /// What changed, in words.
    pub detail: String,
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    project_id: String,
    project: String,
    name: String,
    shared_values: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AppRow {
    fn into_record(self) -> Result<ConfigAppRecord> {
        Ok(ConfigAppRecord {
            id: ConfigAppId::from_db(&self.id)?,
            project_id: ProjectId::from_db(&self.project_id)?,
            project: self.project,
            name: self.name,
            shared_values: self.shared_values,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `SELECT` of an [`AppRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! app_select {
    ($rest:literal) => {
        concat!(
            "SELECT a.id, a.project_id, p.name AS project, a.name, a.shared_values, \
             a.created_at, a.updated_at FROM config_apps a JOIN projects p ON p.id = a.project_id ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    file: String,
    template: String,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ValuesRow {
    environment: String,
    yaml: String,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ReleaseRow {
    number: i64,
    state: String,
    kind: String,
    rollback_of: Option<i64>,
    instances: Option<Json<Vec<String>>>,
    digest: String,
    files: Json<BTreeMap<String, String>>,
    snapshot: Json<ConfigSnapshot>,
    note: Option<String>,
    requested_by: String,
    requested_at: DateTime<Utc>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    promoted_by: Option<String>,
    promoted_at: Option<DateTime<Utc>>,
}

impl ReleaseRow {
    fn into_record(self) -> Result<ConfigReleaseRecord> {
        Ok(ConfigReleaseRecord {
            number: int(self.number, "config release number")?,
            state: self.state,
            kind: self.kind,
            rollback_of: self.rollback_of.map(|n| int(n, "config rollback source")).transpose()?,
            instances: self.instances.map(|j| j.0).unwrap_or_default(),
            digest: self.digest,
            files: self.files.0,
            snapshot: self.snapshot.0,
            note: self.note,
            requested_by: self.requested_by,
            requested_at: self.requested_at,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            promoted_by: self.promoted_by,
            promoted_at: self.promoted_at,
        })
    }
}

/// `SELECT` of a [`ReleaseRow`]; append the `WHERE` and `ORDER BY` (`$1` app, `$2` environment
/// ids come first by convention).
macro_rules! release_select {
    ($rest:literal) => {
        concat!(
            "SELECT number, state, kind, rollback_of, instances, digest, files, snapshot, note, \
             requested_by, requested_at, decided_by, decided_at, promoted_by, promoted_at \
             FROM config_releases ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    revision: i64,
    last_number: i64,
    current: Option<i64>,
    gray: Option<i64>,
    pending: Option<i64>,
}

impl TargetRow {
    fn into_target(self) -> Result<ConfigTarget> {
        let n = |v: Option<i64>, what: &str| v.map(|v| int(v, what)).transpose();
        Ok(ConfigTarget {
            revision: int(self.revision, "config head revision")?,
            last_number: int(self.last_number, "config head number")?,
            current: n(self.current, "config head current")?,
            gray: n(self.gray, "config head gray")?,
            pending: n(self.pending, "config head pending")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    app: String,
    environment: Option<String>,
    action: String,
    detail: String,
    author: String,
    at: DateTime<Utc>,
}

/// Appends an audit entry in the transaction `$tx`.
macro_rules! audit {
    ($tx:expr, $what:expr, $project_id:expr, $app:expr, $env:expr, $action:expr, $detail:expr, $by:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO config_audit (project_id, app, environment, action, detail, author, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($project_id)
        .bind($app)
        .bind($env)
        .bind($action)
        .bind($detail)
        .bind($by)
        .bind($at)
        .execute(&mut *$tx)
        .await
        .ctx($what)?
    };
}

/// Makes the application `$app` of project `$project` if missing, in the transaction `$tx`:
/// evaluates to `(project_id, app_id)`.
macro_rules! ensure_app {
    ($tx:expr, $what:expr, $project:expr, $app:expr, $at:expr) => {{
        let project_id: String = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
            .bind($project)
            .fetch_optional(&mut *$tx)
            .await
            .ctx($what)?
            .ok_or_else(|| StoreError::NotFound(format!("project `{}`", $project)))?;
        sqlx::query(
            "INSERT INTO config_apps (id, project_id, name, shared_values, created_at, updated_at) \
             VALUES ($1, $2, $3, '', $4, $4) ON CONFLICT (project_id, name) DO NOTHING",
        )
        .bind(ConfigAppId::new().text())
        .bind(&project_id)
        .bind($app)
        .bind($at)
        .execute(&mut *$tx)
        .await
        .ctx($what)?;
        let app_id: String =
            sqlx::query_scalar("SELECT id FROM config_apps WHERE project_id = $1 AND name = $2")
                .bind(&project_id)
                .bind($app)
                .fetch_one(&mut *$tx)
                .await
                .ctx($what)?;
        (project_id, app_id)
    }};
}

/// Bumps the head's revision if it is still `$expect` (creating the head at revision 0 first),
/// in the transaction `$tx`: evaluates to the head as it was, or returns `Conflict`.
macro_rules! bump_head {
    ($tx:expr, $what:expr, $app_id:expr, $env_id:expr, $expect:expr, $names:expr) => {{
        sqlx::query(
            "INSERT INTO config_targets (app_id, environment_id, revision, last_number) \
             VALUES ($1, $2, 0, 0) ON CONFLICT (app_id, environment_id) DO NOTHING",
        )
        .bind($app_id)
        .bind($env_id)
        .execute(&mut *$tx)
        .await
        .ctx($what)?;
        sqlx::query_as::<_, TargetRow>(
            "UPDATE config_targets SET revision = revision + 1 \
             WHERE app_id = $1 AND environment_id = $2 AND revision = $3 \
             RETURNING revision - 1 AS revision, last_number, current, gray, pending",
        )
        .bind($app_id)
        .bind($env_id)
        .bind(i64::try_from($expect).unwrap_or(i64::MAX))
        .fetch_optional(&mut *$tx)
        .await
        .ctx($what)?
        .ok_or_else(|| {
            StoreError::Moved(format!(
                "the config of {} changed while this was decided: try again",
                $names
            ))
        })?
        .into_target()?
    }};
}

/// A number as the database's signed integer.
fn n64(v: u32) -> i64 {
    i64::from(v)
}

/// `1 line`, `12 lines`.
fn lines(text: &str) -> String {
    match text.lines().count() {
        1 => "1 line".into(),
        n => format!("{n} lines"),
    }
}

/// Refuses text with a NUL character (PostgreSQL's JSON and TEXT cannot hold one).
fn check_text(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(StoreError::Invalid(format!("{what} contains a NUL character")));
    }
    Ok(())
}

impl Store {
    /// The applications with config in `project`, by name. `NotFound` for an unknown project.
    pub async fn config_apps(&self, project: &str) -> Result<Vec<ConfigAppRecord>> {
        let what = || format!("list config apps of project `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, AppRow>(app_select!(
            "WHERE p.name = $1 ORDER BY a.name"))
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.project(project).await?;
        }
        rows.into_iter().map(AppRow::into_record).collect()
    }

    /// The config of application `app` of `project`. `NotFound` names the project when it
    /// does not exist, else the application.
    pub async fn config_app(&self, project: &str, app: &str) -> Result<ConfigAppRecord> {
        let what = || format!("get config app `{app}` of project `{project}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, AppRow>(app_select!(
            "WHERE p.name = $1 AND a.name = $2"))
            .bind(project)
            .bind(app)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        match row {
            Some(row) => row.into_record(),
            None => {
                self.project(project).await?;
                Err(StoreError::NotFound(format!("config app `{app}` of project `{project}`")))
            }
        }
    }

    /// The items of an application, by file name.
    pub async fn config_items(&self, app: &ConfigAppId) -> Result<Vec<ConfigItemRecord>> {
        let what = || format!("list config items of app {app}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ItemRow>(
            "SELECT file, template, updated_by, updated_at FROM config_items \
             WHERE app_id = $1 ORDER BY file")
            .bind(app.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|r| ConfigItemRecord {
                file: r.file,
                template: r.template,
                updated_by: r.updated_by,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// An application's values per environment, by environment name.
    pub async fn config_values(&self, app: &ConfigAppId) -> Result<Vec<ConfigValuesRecord>> {
        let what = || format!("list config values of app {app}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ValuesRow>(
            "SELECT e.name AS environment, v.yaml, v.updated_by, v.updated_at \
             FROM config_values v JOIN environments e ON e.id = v.environment_id \
             WHERE v.app_id = $1 ORDER BY e.name")
            .bind(app.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|r| ConfigValuesRecord {
                environment: r.environment,
                yaml: r.yaml,
                updated_by: r.updated_by,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// Sets the template of `file` of application `app` (made if missing), with an audit
    /// entry. Returns false, storing nothing, when the template is the same. `NotFound` for
    /// an unknown project; `Invalid` for a bad application name.
    pub async fn set_config_item(
        &self,
        project: &str,
        app: &str,
        file: &str,
        template: &str,
        by: &str,
    ) -> Result<bool> {
        check_name("app", app)?;
        check_text(&format!("template `{file}`"), template)?;
        let what = || format!("set config item `{file}` of `{project}/{app}`");
        let at = now();
        let changed = with_tx!(self, what, tx => {
            let (project_id, app_id) = ensure_app!(tx, what, project, app, at);
            let old: Option<String> = sqlx::query_scalar(
                "SELECT template FROM config_items WHERE app_id = $1 AND file = $2")
                .bind(&app_id)
                .bind(file)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?;
            if old.as_deref() == Some(template) {
                false
            } else {
                sqlx::query(
                    "INSERT INTO config_items (app_id, file, template, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, file) DO UPDATE SET \
                     template = excluded.template, updated_by = excluded.updated_by, \
                     updated_at = excluded.updated_at")
                    .bind(&app_id)
                    .bind(file)
                    .bind(template)
                    .bind(by)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                sqlx::query("UPDATE config_apps SET updated_at = $2 WHERE id = $1")
                    .bind(&app_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
                let lines = lines(template);
                let detail = match old {
                    None => format!("added `{file}` ({lines})"),
                    Some(_) => format!("changed `{file}` ({lines})"),
                };
                audit!(tx, what, &project_id, app, None::<&str>, "template", detail, by, at);
                true
            }
        });
        Ok(changed)
    }

    /// Removes the item `file` of application `app`, with an audit entry. `NotFound` if
    /// there is no such item.
    pub async fn delete_config_item(
        &self,
        project: &str,
        app: &str,
        file: &str,
        by: &str,
    ) -> Result<()> {
        let a = self.config_app(project, app).await?;
        let what = || format!("remove config item `{file}` of `{project}/{app}`");
        let at = now();
        with_tx!(self, what, tx => {
            let n = sqlx::query("DELETE FROM config_items WHERE app_id = $1 AND file = $2")
                .bind(a.id.text())
                .bind(file)
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "config item `{file}` of `{project}/{app}`"
                )));
            }
            sqlx::query("UPDATE config_apps SET updated_at = $2 WHERE id = $1")
                .bind(a.id.text())
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            let detail = format!("removed `{file}`");
            audit!(tx, what, a.project_id.text(), app, None::<&str>, "template removed", detail, by, at);
        });
        Ok(())
    }

    /// Sets the shared values of application `app` (made if missing), or its values in
    /// environment `env`, with an audit entry. Returns false, storing nothing, when they are
    /// the same. `NotFound` for an unknown project or environment.
    pub async fn set_config_values(
        &self,
        project: &str,
        app: &str,
        env: Option<&str>,
        yaml: &str,
        by: &str,
    ) -> Result<bool> {
        check_name("app", app)?;
        check_text("the values", yaml)?;
        let environment = match env {
            Some(e) => Some(self.environment(project, e).await?),
            None => None,
        };
        let what = || format!("set config values of `{project}/{app}`");
        let at = now();
        let changed = with_tx!(self, what, tx => {
            let (project_id, app_id) = ensure_app!(tx, what, project, app, at);
            let old: Option<String> = match &environment {
                None => sqlx::query_scalar("SELECT shared_values FROM config_apps WHERE id = $1")
                    .bind(&app_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?,
                Some(e) => sqlx::query_scalar(
                    "SELECT yaml FROM config_values WHERE app_id = $1 AND environment_id = $2")
                    .bind(&app_id)
                    .bind(e.id.text())
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?,
            };
            if old.as_deref() == Some(yaml) {
                false
            } else {
                match &environment {
                    None => {
                        sqlx::query(
                            "UPDATE config_apps SET shared_values = $2, updated_at = $3 WHERE id = $1")
                            .bind(&app_id)
                            .bind(yaml)
                            .bind(at)
                            .execute(&mut *tx)
                            .await
                            .ctx(what)?;
                    }
                    Some(e) => {
                        sqlx::query(
                            "INSERT INTO config_values (app_id, environment_id, yaml, updated_by, \
                             updated_at) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (app_id, environment_id) DO UPDATE SET \
                             yaml = excluded.yaml, updated_by = excluded.updated_by, \
                             updated_at = excluded.updated_at")
                            .bind(&app_id)
                            .bind(e.id.text())
                            .bind(yaml)
                            .bind(by)
                            .bind(at)
                            .execute(&mut *tx)
                            .await
                            .ctx(what)?;
                        sqlx::query("UPDATE config_apps SET updated_at = $2 WHERE id = $1")
                            .bind(&app_id)
                            .bind(at)
                            .execute(&mut *tx)
                            .await
                            .ctx(what)?;
                    }
                }
                let lines = lines(yaml);
                let detail = match env {
                    None => format!("set the shared values ({lines})"),
                    Some(e) => format!("set the values of `{e}` ({lines})"),
                };
                audit!(tx, what, &project_id, app, env, "values", detail, by, at);
                true
            }
        });
        Ok(changed)
    }

    /// The head of application `app` in environment `env`, with its current, gray and waiting
    /// releases (revision 0 and none of them before the first release). `NotFound` for an
    /// unknown project, application or environment.
    pub async fn config_head(&self, project: &str, app: &str, env: &str) -> Result<ConfigHead> {
        let app = self.config_app(project, app).await?;
        let environment = self.environment(project, env).await?;
        let what = || format!("get the config head of `{project}/{}` in `{env}`", app.name);
        let (a, e) = (app.id.text(), environment.id.text());
        let row = with_db!(&self.db, p => sqlx::query_as::<_, TargetRow>(
            "SELECT revision, last_number, current, gray, pending FROM config_targets \
             WHERE app_id = $1 AND environment_id = $2")
            .bind(&a)
            .bind(&e)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        let target = row.map(TargetRow::into_target).transpose()?.unwrap_or_default();
        let numbers: Vec<i64> =
            [target.current, target.gray, target.pending].into_iter().flatten().map(n64).collect();
        let mut releases = BTreeMap::new();
        if !numbers.is_empty() {
            let rows = with_db!(&self.db, p => sqlx::query_as::<_, ReleaseRow>(release_select!(
                "WHERE app_id = $1 AND environment_id = $2 AND number IN ($3, $4, $5)"))
                .bind(&a)
                .bind(&e)
                .bind(numbers[0])
                .bind(numbers.get(1).copied().unwrap_or(numbers[0]))
                .bind(numbers.get(2).copied().unwrap_or(numbers[0]))
                .fetch_all(p)
                .await)
            .ctx(what)?;
            for row in rows {
                let r = row.into_record()?;
                releases.insert(r.number, r);
            }
        }
        let take = |n: Option<u32>| -> Result<Option<ConfigReleaseRecord>> {
            n.map(|n| {
                releases.get(&n).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("the config head names release {n}, not stored"))
                })
            })
            .transpose()
        };
        Ok(ConfigHead {
            current: take(target.current)?,
            gray: take(target.gray)?,
            pending: take(target.pending)?,
            target,
            app,
            environment,
        })
    }

    /// The revision of the head of application `app` in environment `env` (0 before its
    /// first release), in one indexed read; `None` when there is no such project, application
    /// or environment.
    pub async fn config_revision(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> Result<Option<u64>> {
        let what = || format!("get the config revision of `{project}/{app}` in `{env}`");
        let row: Option<(Option<i64>,)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT t.revision FROM config_apps a JOIN projects p ON p.id = a.project_id \
             JOIN environments e ON e.project_id = p.id \
             LEFT JOIN config_targets t ON t.app_id = a.id AND t.environment_id = e.id \
             WHERE p.name = $1 AND a.name = $2 AND e.name = $3")
            .bind(project)
            .bind(app)
            .bind(env)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(|(r,)| int(r.unwrap_or(0), "config head revision")).transpose()
    }

    /// Adds a release of application `app` in environment `env` if the head is still at
    /// `revision`: number = the last one + 1; the head's current (a release to everyone; the
    /// gray one is cleared), gray (a gray release) or pending (waiting for approval) becomes
    /// it. One transaction with its audit entry. `Moved` if the head moved.
    pub async fn add_config_release(
        &self,
        project: &str,
        app: &str,
        env: &str,
        revision: u64,
        r: &NewConfigRelease,
    ) -> Result<ConfigReleaseRecord> {
        if !matches!(r.kind.as_str(), "release" | "rollback") {
            return Err(StoreError::Invalid(format!("`{}` is not a kind of release", r.kind)));
        }
        let a = self.config_app(project, app).await?;
        let e = self.environment(project, env).await?;
        let what = || format!("release the config of `{project}/{app}` in `{env}`");
        let names = format!("`{project}/{app}` in `{env}`");
        let at = now();
        let (a_id, e_id) = (a.id.text(), e.id.text());
        let number = with_tx!(self, what, tx => {
            let head = bump_head!(tx, what, &a_id, &e_id, revision, names);
            let number = head.last_number + 1;
            let state = if r.pending { "pending" } else { "released" };
            let instances = (!r.instances.is_empty()).then_some(Json(&r.instances));
            sqlx::query(
                "INSERT INTO config_releases (app_id, environment_id, number, state, kind, \
                 rollback_of, instances, digest, files, snapshot, note, requested_by, \
                 requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
                .bind(&a_id)
                .bind(&e_id)
                .bind(n64(number))
                .bind(state)
                .bind(&r.kind)
                .bind(r.rollback_of.map(n64))
                .bind(instances)
                .bind(&r.digest)
                .bind(Json(&r.files))
                .bind(Json(&r.snapshot))
                .bind(&r.note)
                .bind(&r.by)
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            let (mut current, mut gray, mut pending) = (head.current, head.gray, head.pending);
            if r.pending {
                pending = Some(number);
            } else if r.instances.is_empty() {
                current = Some(number);
                gray = None;
            } else {
                gray = Some(number);
            }
            sqlx::query(
                "UPDATE config_targets SET last_number = $3, current = $4, gray = $5, \
                 pending = $6 WHERE app_id = $1 AND environment_id = $2")
                .bind(&a_id)
                .bind(&e_id)
                .bind(n64(number))
                .bind(current.map(n64))
                .bind(gray.map(n64))
                .bind(pending.map(n64))
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            let short = r.digest.get(..19).unwrap_or(&r.digest);
            let (action, mut detail) = match (r.pending, r.kind.as_str(), r.instances.is_empty()) {
                (true, _, _) => ("release requested", format!("release {number} ({short}) waits for approval")),
                (false, "rollback", _) => ("rollback", format!(
                    "release {number} ({short}): the files of release {}",
                    r.rollback_of.unwrap_or_default()
                )),
                (false, _, true) => ("release", format!("release {number} ({short}) to everyone")),
                (false, _, false) => ("gray release", format!(
                    "release {number} ({short}) to {}", r.instances.join(", ")
                )),
            };
            if let Some(note) = &r.note {
                detail.push_str(&format!(": {note}"));
            }
            audit!(tx, what, a.project_id.text(), app, Some(env), action, detail, &r.by, at);
            number
        });
        self.config_release(project, app, env, number).await
    }

    /// Approves or rejects the waiting release `number`, or releases the gray release
    /// `number` to everyone, if the head is still at `revision`. One transaction with its
    /// audit entry. `Moved` if the head moved; `Conflict` if the release is not waiting (approve,
    /// reject) or not the gray one (promote).
    pub async fn decide_config_release(
        &self,
        project: &str,
        app: &str,
        env: &str,
        revision: u64,
        decided: &ConfigDecided<'_>,
    ) -> Result<ConfigReleaseRecord> {
        let ConfigDecided { number, decision, by } = *decided;
        let a = self.config_app(project, app).await?;
        let e = self.environment(project, env).await?;
        let what = || format!("decide release {number} of `{project}/{app}` in `{env}`");
        let names = format!("`{project}/{app}` in `{env}`");
        let at = now();
        let (a_id, e_id) = (a.id.text(), e.id.text());
        with_tx!(self, what, tx => {
            let head = bump_head!(tx, what, &a_id, &e_id, revision, names);
            let release = sqlx::query_as::<_, ReleaseRow>(release_select!(
                "WHERE app_id = $1 AND environment_id = $2 AND number = $3"))
                .bind(&a_id)
                .bind(&e_id)
                .bind(n64(number))
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("release {number} of {names}")))?
                .into_record()?;
            let (mut current, mut gray, mut pending) = (head.current, head.gray, head.pending);
            let (action, detail) = match decision {
                ConfigDecision::Approve | ConfigDecision::Reject => {
                    if pending != Some(number) || release.state != "pending" {
                        return Err(StoreError::Conflict(format!(
                            "release {number} of {names} is not waiting for approval"
                        )));
                    }
                    pending = None;
                    let approve = decision == ConfigDecision::Approve;
                    if approve && release.instances.is_empty() {
                        current = Some(number);
                        gray = None;
                    } else if approve {
                        gray = Some(number);
                    }
                    let state = if approve { "released" } else { "rejected" };
                    sqlx::query(
                        "UPDATE config_releases SET state = $4, decided_by = $5, decided_at = $6 \
                         WHERE app_id = $1 AND environment_id = $2 AND number = $3")
                        .bind(&a_id)
                        .bind(&e_id)
                        .bind(n64(number))
                        .bind(state)
                        .bind(by)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .ctx(what)?;
                    if approve {
                        ("approve", format!("approved release {number} (asked by {})", release.requested_by))
                    } else {
                        ("reject", format!("rejected release {number} (asked by {})", release.requested_by))
                    }
                }
                ConfigDecision::Promote => {
                    if gray != Some(number) {
                        return Err(StoreError::Conflict(format!(
                            "release {number} of {names} is not the gray release"
                        )));
                    }
                    current = Some(number);
                    gray = None;
                    sqlx::query(
                        "UPDATE config_releases SET promoted_by = $4, promoted_at = $5 \
                         WHERE app_id = $1 AND environment_id = $2 AND number = $3")
                        .bind(&a_id)
                        .bind(&e_id)
                        .bind(n64(number))
                        .bind(by)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .ctx(what)?;
                    ("release to all", format!(
                        "gray release {number} (to {}) released to everyone",
                        release.instances.join(", ")
                    ))
                }
            };
            sqlx::query(
                "UPDATE config_targets SET current = $3, gray = $4, pending = $5 \
                 WHERE app_id = $1 AND environment_id = $2")
                .bind(&a_id)
                .bind(&e_id)
                .bind(current.map(n64))
                .bind(gray.map(n64))
                .bind(pending.map(n64))
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            audit!(tx, what, a.project_id.text(), app, Some(env), action, detail, by, at);
        });
        self.config_release(project, app, env, number).await
    }

    /// Every release of application `app` in environment `env`, oldest first. `NotFound` for
    /// an unknown project, application or environment.
    pub async fn config_releases(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> Result<Vec<ConfigReleaseRecord>> {
        let a = self.config_app(project, app).await?;
        let e = self.environment(project, env).await?;
        let what = || format!("list releases of `{project}/{app}` in `{env}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ReleaseRow>(release_select!(
            "WHERE app_id = $1 AND environment_id = $2 ORDER BY number"))
            .bind(a.id.text())
            .bind(e.id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(ReleaseRow::into_record).collect()
    }

    /// Release `number` of application `app` in environment `env`. `NotFound` for an unknown
    /// one.
    pub async fn config_release(
        &self,
        project: &str,
        app: &str,
        env: &str,
        number: u32,
    ) -> Result<ConfigReleaseRecord> {
        let a = self.config_app(project, app).await?;
        let e = self.environment(project, env).await?;
        let what = || format!("get release {number} of `{project}/{app}` in `{env}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ReleaseRow>(release_select!(
            "WHERE app_id = $1 AND environment_id = $2 AND number = $3"))
            .bind(a.id.text())
            .bind(e.id.text())
            .bind(n64(number))
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| {
            StoreError::NotFound(format!("release {number} of `{project}/{app}` in `{env}`"))
        })?
        .into_record()
    }

    /// The audit log of application `app` of `project`, oldest first (also after the
    /// application's environments were deleted). `NotFound` for an unknown project.
    pub async fn config_audit(&self, project: &str, app: &str) -> Result<Vec<ConfigAuditRecord>> {
        let p = self.project(project).await?;
        let what = || format!("read the config audit log of `{project}/{app}`");
        let rows = with_db!(&self.db, db => sqlx::query_as::<_, AuditRow>(
            "SELECT id, app, environment, action, detail, author, at FROM config_audit \
             WHERE project_id = $1 AND app = $2 ORDER BY id")
            .bind(p.id.text())
            .bind(app)
            .fetch_all(db)
            .await)
        .ctx(what)?;
        rows.into_iter()
            .map(|r| {
                Ok(ConfigAuditRecord {
                    id: int(r.id, "config audit id")?,
                    app: r.app,
                    environment: r.environment,
                    action: r.action,
                    detail: r.detail,
                    by: r.author,
                    at: r.at,
                })
            })
            .collect()
    }
}
