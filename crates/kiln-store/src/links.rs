//! Runs started by other runs and groups of runs started together: a run's link (the run and
//! job that started it, its group, whose rights it acts with) is written in the transaction
//! that creates it ([`Store::create_run_set`]), and read with every run (`Run::parent`,
//! `Run::group`, `Run::author`).
//!
//! A set created for a key (a trigger job's attempt) gives each of its runs the trigger key
//! `<key>/<position>` in the unique `runs.trigger_key` column, so that creating the set again
//! (a server restarted while the job waited) finds the runs created the first time: never two
//! downstream runs for one attempt.

use chrono::{DateTime, Utc};

use crate::error::Ctx;
use crate::runs::{RunRow, RunTx, run_select};
use crate::{GroupId, NewRun, Result, Run, RunId, Store, StoreError, TokenId, now};

/// Runs to create at once, maybe as a group, maybe started by a run's job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunSet {
    /// Identifies the set (`job:<run id>:<job>:<attempt>`): creating a set with the same key
    /// again gives the runs created the first time. `None`: always new runs.
    pub key: Option<String>,
    /// Start them as one group, created by this (a token's name, or `run <name> job <job>`).
    pub group: Option<String>,
    /// The run and job that start them.
    pub parent: Option<(RunId, String)>,
    /// Whose rights they act with (see `Run::author`).
    pub author: Option<TokenId>,
    /// The runs, in order (their position in the group).
    pub runs: Vec<NewRun>,
}

/// Runs started together and shown together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGroup {
    /// Id.
    pub id: GroupId,
    /// Who or what started it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// What [`Store::create_run_set`] came to.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSet {
    /// The group, if the set is one.
    pub group: Option<RunGroup>,
    /// The runs, in order.
    pub runs: Vec<Run>,
    /// Created now (`false`: the key's runs existed already).
    pub created: bool,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl GroupRow {
    fn into_group(self) -> Result<RunGroup> {
        Ok(RunGroup {
            id: GroupId::from_db(&self.id)?,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

impl Store {
    /// Creates `set`'s runs (pending) with their links, and its group, in one transaction.
    /// With a key, a set created before is returned as it is (`created: false`), whoever
    /// created it: the unique trigger keys let one set in. `Invalid` for an empty set.
    pub async fn create_run_set(&self, set: &NewRunSet) -> Result<RunSet> {
        if set.runs.is_empty() {
            return Err(StoreError::Invalid("a set of runs needs at least one run".into()));
        }
        match self.create_run_set_once(set).await {
            // Another server created it between our look and our insert: it is found now.
            Err(StoreError::Conflict(_)) if set.key.is_some() => {
                self.create_run_set_once(set).await
            }
            done => done,
        }
    }

    async fn create_run_set_once(&self, set: &NewRunSet) -> Result<RunSet> {
        let what = || match &set.key {
            Some(key) => format!("create the runs of `{key}`"),
            None => "create a set of runs".to_string(),
        };
        let out = with_tx!(self, what, tx => {
            let mut existing = Vec::new();
            if let Some(key) = &set.key {
                for position in 0..set.runs.len() {
                    let row = sqlx::query_as::<_, RunRow>(run_select!("WHERE r.trigger_key = $1"))
                        .bind(format!("{key}/{position}"))
                        .fetch_optional(&mut *tx)
                        .await
                        .ctx(what)?;
                    match row {
                        Some(row) => existing.push(row.into_run()?),
                        None => break,
                    }
                }
            }
            if !existing.is_empty() {
                let group = match existing[0].group {
                    Some(id) => Some(
                        sqlx::query_as::<_, GroupRow>(
                            "SELECT id, created_by, created_at FROM run_groups WHERE id = $1")
                            .bind(id.text())
                            .fetch_one(&mut *tx)
                            .await
                            .ctx(what)?
                            .into_group()?,
                    ),
                    None => None,
                };
                RunSet { group, runs: existing, created: false }
            } else {
                let group = match &set.group {
                    Some(by) => {
                        let group = RunGroup { id: GroupId::new(), created_by: by.clone(), created_at: now() };
                        sqlx::query(
                            "INSERT INTO run_groups (id, created_by, created_at) VALUES ($1, $2, $3)")
                            .bind(group.id.text())
                            .bind(&group.created_by)
                            .bind(group.created_at)
                            .execute(&mut *tx)
                            .await
                            .ctx(what)?;
                        Some(group)
                    }
                    None => None,
                };
                let linked = set.parent.is_some() || group.is_some() || set.author.is_some();
                let mut runs = Vec::with_capacity(set.runs.len());
                for (position, new) in set.runs.iter().enumerate() {
                    let id = RunId::new();
                    let key = set.key.as_ref().map(|k| format!("{k}/{position}"));
                    tx.insert_run(&id, new, key.as_deref()).await?;
                    if linked {
                        let inserted = sqlx::query(
                            "INSERT INTO run_links (run_id, parent_run_id, parent_job, group_id, \
                             position, author_token) VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(id.text())
                            .bind(set.parent.as_ref().map(|(r, _)| r.text()))
                            .bind(set.parent.as_ref().map(|(_, j)| j.as_str()))
                            .bind(group.as_ref().map(|g| g.id.text()))
                            .bind(i64::try_from(position).unwrap_or(i64::MAX))
                            .bind(set.author.map(|t| t.text()))
                            .execute(&mut *tx)
                            .await;
                        match inserted {
                            Ok(_) => {}
                            Err(e) if crate::error::is_foreign_key(&e) => {
                                return Err(StoreError::NotFound(
                                    "the upstream run or the author's token of a new run".into(),
                                ));
                            }
                            Err(e) => return Err(e).ctx(what),
                        }
                    }
                    runs.push(tx.run_row(&id).await?.into_run()?);
                }
                RunSet { group, runs, created: true }
            }
        });
        Ok(out)
    }

    /// A group and its runs, in their order. `NotFound` if there is no such group.
    pub async fn group(&self, id: &GroupId) -> Result<(RunGroup, Vec<Run>)> {
        let what = || format!("get run group {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, GroupRow>(
            "SELECT id, created_by, created_at FROM run_groups WHERE id = $1")
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?
        .ok_or_else(|| StoreError::NotFound(format!("run group {id}")))?;
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE lk.group_id = $1 ORDER BY lk.position, r.created_at, r.id"))
            .bind(id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        let runs = rows.into_iter().map(RunRow::into_run).collect::<Result<Vec<_>>>()?;
        Ok((row.into_group()?, runs))
    }

    /// The runs `run`'s jobs started (its downstream runs), oldest first.
    pub async fn downstream_runs(&self, run: &RunId) -> Result<Vec<Run>> {
        let what = || format!("list the runs run {run} started");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE lk.parent_run_id = $1 ORDER BY r.created_at, lk.position, r.id"))
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(RunRow::into_run).collect()
    }
}
