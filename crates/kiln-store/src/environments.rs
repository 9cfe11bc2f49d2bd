//! Environments of a project (dev, staging, prod): their order (each may name the one before
//! it), whether releases there need a second person's approval, and their variables, plain or
//! sealed by the server like project secrets (the store never sees a secret's plaintext).
//!
//! Invariants: the order has no cycle (checked in the transaction that changes it); an
//! environment another one comes after cannot be deleted; a variable is a plain value or a
//! sealed one, never both (a `CHECK` of the table).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::{Ctx, is_unique};
use crate::model::check_name;
use crate::secrets::check_variable_name;
use crate::{EnvironmentId, ProjectId, Result, SealedSecret, Store, StoreError, now};

/// An environment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRecord {
    /// Its id.
    pub id: EnvironmentId,
    /// Its project's id.
    pub project_id: ProjectId,
    /// Its project's name.
    pub project: String,
    /// Its name (unique in the project).
    pub name: String,
    /// The environment before it in the project's order.
    pub after: Option<String>,
    /// Releases here need the approval of someone other than who asked.
    pub protected: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (not its variables).
    pub updated_at: DateTime<Utc>,
}

/// A variable's value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A plain value.
    Plain(String),
    /// A secret, sealed by the server.
    Sealed(SealedSecret),
}

/// A variable of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVariableRecord {
    /// Its name (an environment variable name).
    pub name: String,
    /// Its value.
    pub value: EnvValue,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last set.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EnvRow {
    id: String,
    project_id: String,
    project: String,
    name: String,
    after: Option<String>,
    protected: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl EnvRow {
    fn into_record(self) -> Result<EnvironmentRecord> {
        Ok(EnvironmentRecord {
            id: EnvironmentId::from_db(&self.id)?,
            project_id: ProjectId::from_db(&self.project_id)?,
            project: self.project,
            name: self.name,
            after: self.after,
            protected: self.protected,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `SELECT` of an [`EnvRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! env_select {
    ($rest:literal) => {
        concat!(
            "SELECT e.id, e.project_id, p.name AS project, e.name, a.name AS after, \
             e.protected, e.created_at, e.updated_at \
             FROM environments e JOIN projects p ON p.id = e.project_id \
             LEFT JOIN environments a ON a.id = e.after_id ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct VarRow {
    name: String,
    value: Option<String>,
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl VarRow {
    fn into_record(self) -> Result<EnvVariableRecord> {
        let value = match (self.value, self.key_id, self.nonce, self.ciphertext) {
            (Some(v), None, None, None) => EnvValue::Plain(v),
            (None, Some(key_id), Some(nonce), Some(ciphertext)) => {
                EnvValue::Sealed(SealedSecret { key_id, nonce, ciphertext })
            }
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "environment variable `{}` is neither plain nor sealed",
                    self.name
                )));
            }
        };
        Ok(EnvVariableRecord {
            name: self.name,
            value,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The id of environment `$name` of project `$project_id`, looked up in the transaction
/// `$tx`: evaluates to `Result<Option<String>, sqlx::Error>`.
macro_rules! env_id {
    ($tx:expr, $project_id:expr, $name:expr) => {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM environments WHERE project_id = $1 AND name = $2",
        )
        .bind($project_id)
        .bind($name)
        .fetch_optional(&mut *$tx)
        .await
    };
}

/// The environments in the project's order: each first one (no predecessor) by name, each
/// followed by those that come after it, depth first.
fn in_order(list: Vec<EnvironmentRecord>) -> Vec<EnvironmentRecord> {
    let mut after: BTreeMap<Option<String>, Vec<EnvironmentRecord>> = BTreeMap::new();
    for e in list {
        after.entry(e.after.clone()).or_default().push(e);
    }
    for v in after.values_mut() {
        v.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut out = Vec::new();
    let mut stack: Vec<EnvironmentRecord> = after.remove(&None).unwrap_or_default();
    stack.reverse();
    while let Some(e) = stack.pop() {
        let mut next = after.remove(&Some(e.name.clone())).unwrap_or_default();
        next.reverse();
        stack.extend(next);
        out.push(e);
    }
    // A cycle cannot be stored; anything left would be one: list it rather than lose it.
    out.extend(after.into_values().flatten());
    out
}

impl Store {
    /// Creates environment `name` of `project`, after `after` (an environment of the same
    /// project) if given. `NotFound` for an unknown project, `Invalid` for a bad name or an
    /// unknown `after`, `Conflict` if the name is taken.
    pub async fn create_environment(
        &self,
        project: &str,
        name: &str,
        after: Option<&str>,
        protected: bool,
    ) -> Result<EnvironmentRecord> {
        check_name("environment", name)?;
        let what = || format!("create environment `{name}` of project `{project}`");
        let at = now();
        let id = EnvironmentId::new();
        with_tx!(self, what, tx => {
            let project_id: String = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))?;
            let after_id = match after {
                None => None,
                Some(a) => Some(env_id!(tx, &project_id, a).ctx(what)?.ok_or_else(
                    || StoreError::Invalid(format!(
                        "`{name}` cannot come after `{a}`: project `{project}` has no environment `{a}`"
                    )),
                )?),
            };
            let inserted = sqlx::query(
                "INSERT INTO environments (id, project_id, name, after_id, protected, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)")
                .bind(id.text())
                .bind(&project_id)
                .bind(name)
                .bind(after_id)
                .bind(protected)
                .bind(at)
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique(&e) => {
                    return Err(StoreError::Conflict(format!(
                        "project `{project}` already has an environment `{name}`"
                    )));
                }
                Err(e) => return Err(e).ctx(what),
            }
        });
        self.environment(project, name).await
    }

    /// The environments of `project` in its order (see the module doc). `NotFound` for an
    /// unknown project.
    pub async fn environments(&self, project: &str) -> Result<Vec<EnvironmentRecord>> {
        let what = || format!("list environments of project `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, EnvRow>(env_select!(
            "WHERE p.name = $1 ORDER BY e.name"))
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.project(project).await?;
        }
        let list = rows.into_iter().map(EnvRow::into_record).collect::<Result<Vec<_>>>()?;
        Ok(in_order(list))
    }

    /// Environment `name` of `project`. `NotFound` names the project when it does not exist,
    /// else the environment.
    pub async fn environment(&self, project: &str, name: &str) -> Result<EnvironmentRecord> {
        let what = || format!("get environment `{name}` of project `{project}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, EnvRow>(env_select!(
            "WHERE p.name = $1 AND e.name = $2"))
            .bind(project)
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        match row {
            Some(row) => row.into_record(),
            None => {
                self.project(project).await?;
                Err(StoreError::NotFound(format!("environment `{name}` of project `{project}`")))
            }
        }
    }

    /// Changes an environment: `after` Some(None) makes it a first one, Some(Some(a)) puts it
    /// after `a`; `protected` Some(p) sets the flag. `Invalid` for an unknown `a` or one that
    /// comes after this environment already (a cycle); `NotFound` for an unknown environment.
    pub async fn update_environment(
        &self,
        project: &str,
        name: &str,
        after: Option<Option<&str>>,
        protected: Option<bool>,
    ) -> Result<EnvironmentRecord> {
        let current = self.environment(project, name).await?;
        let what = || format!("change environment `{name}` of project `{project}`");
        let project_id = current.project_id.text();
        let me = current.id.text();
        with_tx!(self, what, tx => {
            if let Some(after) = after {
                let after_id = match after {
                    None => None,
                    Some(a) => {
                        let id = env_id!(tx, &project_id, a).ctx(what)?.ok_or_else(|| {
                            StoreError::Invalid(format!(
                                "`{name}` cannot come after `{a}`: project `{project}` has no environment `{a}`"
                            ))
                        })?;
                        // Walks the chain before `a`: meeting this environment is a cycle.
                        let mut at = Some(id.clone());
                        while let Some(step) = at {
                            if step == me {
                                return Err(StoreError::Invalid(format!(
                                    "`{name}` cannot come after `{a}`: `{a}` already comes after `{name}`"
                                )));
                            }
                            at = sqlx::query_scalar::<_, Option<String>>(
                                "SELECT after_id FROM environments WHERE id = $1")
                                .bind(&step)
                                .fetch_one(&mut *tx)
                                .await
                                .ctx(what)?;
                        }
                        Some(id)
                    }
                };
                sqlx::query("UPDATE environments SET after_id = $2, updated_at = $3 WHERE id = $1")
                    .bind(&me)
                    .bind(after_id)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            if let Some(protected) = protected {
                sqlx::query("UPDATE environments SET protected = $2, updated_at = $3 WHERE id = $1")
                    .bind(&me)
                    .bind(protected)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
        });
        self.environment(project, name).await
    }

    /// Deletes an environment with its variables, config values and releases. `Conflict` when
    /// another environment comes after it; `NotFound` for an unknown one.
    pub async fn delete_environment(&self, project: &str, name: &str) -> Result<()> {
        let env = self.environment(project, name).await?;
        let what = || format!("delete environment `{name}` of project `{project}`");
        with_tx!(self, what, tx => {
            let next: Option<String> = sqlx::query_scalar(
                "SELECT name FROM environments WHERE after_id = $1 ORDER BY name LIMIT 1")
                .bind(env.id.text())
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?;
            if let Some(next) = next {
                return Err(StoreError::Conflict(format!(
                    "`{next}` comes after `{name}`: delete `{next}` or put it after another \
                     environment first (`kiln env update {next} --after …`)"
                )));
            }
            sqlx::query("DELETE FROM environments WHERE id = $1")
                .bind(env.id.text())
                .execute(&mut *tx)
                .await
                .ctx(what)?;
        });
        Ok(())
    }

    /// Sets variable `name` of environment `env` of `project` (replacing a plain value by a
    /// sealed one or the other way round). `Invalid` for a name that is not an environment
    /// variable name or an empty sealed field; `NotFound` for an unknown environment.
    pub async fn set_env_variable(
        &self,
        project: &str,
        env: &str,
        name: &str,
        value: &EnvValue,
    ) -> Result<EnvVariableRecord> {
        let what = if matches!(value, EnvValue::Plain(_)) { "variable" } else { "secret" };
        check_variable_name(what, name)?;
        let (plain, sealed) = match value {
            EnvValue::Plain(v) => (Some(v.as_str()), None),
            EnvValue::Sealed(s) => {
                if s.key_id.is_empty() || s.nonce.is_empty() || s.ciphertext.is_empty() {
                    return Err(StoreError::Invalid(format!(
                        "secret `{name}` needs a key id, a nonce and a ciphertext"
                    )));
                }
                (None, Some(s))
            }
        };
        let e = self.environment(project, env).await?;
        let what = || format!("set variable `{name}` of environment `{project}/{env}`");
        let row = with_write!(self, p => sqlx::query_as::<_, VarRow>(
            "INSERT INTO environment_variables (environment_id, name, value, key_id, nonce, \
             ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (environment_id, name) DO UPDATE SET value = excluded.value, \
             key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             updated_at = excluded.updated_at \
             RETURNING name, value, key_id, nonce, ciphertext, created_at, updated_at")
            .bind(e.id.text())
            .bind(name)
            .bind(plain)
            .bind(sealed.map(|s| s.key_id.clone()))
            .bind(sealed.map(|s| s.nonce.clone()))
            .bind(sealed.map(|s| s.ciphertext.clone()))
            .bind(now())
            .fetch_one(p)
            .await)
        .ctx(what)?;
        row.into_record()
    }

    /// The variables of environment `env` of `project`, by name. `NotFound` for an unknown
    /// environment.
    pub async fn env_variables(&self, project: &str, env: &str) -> Result<Vec<EnvVariableRecord>> {
        let e = self.environment(project, env).await?;
        let what = || format!("list variables of environment `{project}/{env}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, VarRow>(
            "SELECT name, value, key_id, nonce, ciphertext, created_at, updated_at \
             FROM environment_variables WHERE environment_id = $1 ORDER BY name")
            .bind(e.id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(VarRow::into_record).collect()
    }

    /// Deletes variable `name` of environment `env`. `NotFound` if there is none of that name.
    pub async fn delete_env_variable(&self, project: &str, env: &str, name: &str) -> Result<()> {
        let e = self.environment(project, env).await?;
        let what = || format!("delete variable `{name}` of environment `{project}/{env}`");
        let n = with_write!(self, p => sqlx::query(
            "DELETE FROM environment_variables WHERE environment_id = $1 AND name = $2")
            .bind(e.id.text())
            .bind(name)
            .execute(p)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "variable `{name}` of environment `{project}/{env}`"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, after: Option<&str>) -> EnvironmentRecord {
        EnvironmentRecord {
            id: EnvironmentId::new(),
            project_id: ProjectId::new(),
            project: "p".into(),
            name: name.into(),
            after: after.map(str::to_string),
            protected: false,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn environments_come_after_the_one_they_name() {
        let list = vec![
            env("prod", Some("staging")),
            env("dev", None),
            env("qa", Some("dev")),
            env("staging", Some("dev")),
            env("sandbox", None),
        ];
        let names: Vec<String> = in_order(list).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["dev", "qa", "staging", "prod", "sandbox"]);
    }
}
