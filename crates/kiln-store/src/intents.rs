//! The trigger outbox: runs a trigger claim intends to start, written in the claim's own
//! transaction ([`Store::claim_delivery`], [`Store::claim_schedule`]) and turned into runs by
//! [`Store::start_intent`]. A run made from an intent carries its trigger key in the unique
//! `runs.trigger_key` column, so that an intent never has two runs, whoever creates them and
//! however often: a crash between a claim and its runs loses nothing (the intents are stored)
//! and doubles nothing (the key is unique).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::runs::{RunRow, RunTx, run_select};
use crate::{NewRun, PipelineId, Result, Run, RunId, RunSource, Store, StoreError, now};

/// A run a claimed trigger intends to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIntent {
    /// Unique per intended run: `webhook:<provider>:<delivery>:<pipeline>` or
    /// `schedule:<pipeline>:<entry>:<fire time>`.
    pub key: String,
    /// The claim it comes from: `webhook:<provider>:<delivery>` or
    /// `schedule:<pipeline>:<entry>`.
    pub claim: String,
    /// The pipeline to run.
    pub pipeline: PipelineId,
    /// Param values as text.
    pub params: BTreeMap<String, String>,
    /// Who or what starts it (the run's `triggered_by`).
    pub triggered_by: String,
    /// The commit it builds, for git triggers.
    pub source: Option<RunSource>,
}

/// What [`Store::start_intent`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentRun {
    /// The run was created now.
    Created(Run),
    /// The intent had its run already (created before a crash, or by another server).
    Existed(Run),
    /// The intent was given up earlier ([`Store::abandon_intent`]): why.
    Abandoned(String),
}

#[derive(sqlx::FromRow)]
struct IntentRow {
    trigger_key: String,
    claim: String,
    pipeline_id: String,
    params: Json<BTreeMap<String, String>>,
    triggered_by: String,
    source: Option<Json<RunSource>>,
    done_at: Option<DateTime<Utc>>,
    run_id: Option<String>,
    error: Option<String>,
}

impl IntentRow {
    fn intent(&self) -> Result<RunIntent> {
        Ok(RunIntent {
            key: self.trigger_key.clone(),
            claim: self.claim.clone(),
            pipeline: PipelineId::from_db(&self.pipeline_id)?,
            params: self.params.0.clone(),
            triggered_by: self.triggered_by.clone(),
            source: self.source.as_ref().map(|s| s.0.clone()),
        })
    }
}

/// `SELECT` of an [`IntentRow`]; append the `WHERE`.
macro_rules! intent_select {
    ($rest:literal) => {
        concat!(
            "SELECT trigger_key, claim, pipeline_id, params, triggered_by, source, done_at, \
             run_id, error FROM run_intents ",
            $rest
        )
    };
}

/// Writes intents inside the caller's transaction (the claim's). Implemented once per
/// driver's connection, like the run statements.
pub(crate) trait IntentTx {
    /// Inserts `intents`, each not yet handled. An intent whose key is stored already is left
    /// as it is.
    async fn insert_intents(&mut self, intents: &[RunIntent]) -> Result<()>;
}

macro_rules! intent_tx {
    ($($conn:ty),+) => {$(
        impl IntentTx for $conn {
            async fn insert_intents(&mut self, intents: &[RunIntent]) -> Result<()> {
                let at = now();
                for i in intents {
                    if i.triggered_by.trim().is_empty() {
                        return Err(StoreError::Invalid(format!(
                            "intended run `{}` needs a non-empty `triggered_by`",
                            i.key
                        )));
                    }
                    let what = || format!("record intended run `{}`", i.key);
                    sqlx::query(
                        "INSERT INTO run_intents (trigger_key, claim, pipeline_id, params, \
                         triggered_by, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (trigger_key) DO NOTHING")
                        .bind(&i.key)
                        .bind(&i.claim)
                        .bind(i.pipeline.text())
                        .bind(Json(&i.params))
                        .bind(&i.triggered_by)
                        .bind(i.source.as_ref().map(Json))
                        .bind(at)
                        .execute(&mut *self)
                        .await
                        .ctx(what)?;
                }
                Ok(())
            }
        }
    )+};
}

intent_tx!(sqlx::SqliteConnection, sqlx::PgConnection);

impl Store {
    /// Intents not handled yet (claimed, but neither started nor given up), oldest first:
    /// at start-up, what a crash left between a claim and its runs.
    pub async fn pending_intents(&self) -> Result<Vec<RunIntent>> {
        let what = || "list intended runs".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, IntentRow>(intent_select!(
            "WHERE done_at IS NULL ORDER BY created_at, trigger_key"))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.iter().map(IntentRow::intent).collect()
    }

    /// Creates the run of intent `key` unless a run for it exists, in one transaction that
    /// also marks the intent handled. Safe to call any number of times, from any number of
    /// servers: the unique trigger key lets one run in. `NotFound` if no such intent.
    pub async fn start_intent(&self, key: &str) -> Result<IntentRun> {
        match self.start_intent_once(key).await {
            // Another server inserted the run between our look and our insert: it is found now.
            Err(StoreError::Conflict(_)) => self.start_intent_once(key).await,
            done => done,
        }
    }

    async fn start_intent_once(&self, key: &str) -> Result<IntentRun> {
        let what = || format!("start intended run `{key}`");
        let outcome = with_tx!(self, what, tx => {
            let row = sqlx::query_as::<_, IntentRow>(intent_select!("WHERE trigger_key = $1"))
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(format!("intended run `{key}`")))?;
            if row.done_at.is_some() && row.run_id.is_none() {
                return Ok(IntentRun::Abandoned(row.error.unwrap_or_default()));
            }
            let existing: Option<String> =
                sqlx::query_scalar("SELECT id FROM runs WHERE trigger_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
            let (id, created) = match existing {
                Some(id) => (RunId::from_db(&id)?, false),
                None => {
                    let intent = row.intent()?;
                    let id = RunId::new();
                    let new = NewRun {
                        pipeline: intent.pipeline,
                        params: serde_json::to_value(&intent.params)
                            .map_err(|e| StoreError::Invalid(format!("params of `{key}`: {e}")))?,
                        triggered_by: intent.triggered_by,
                        retry_of: None,
                        source: intent.source,
                    };
                    tx.insert_run(&id, &new, Some(key)).await?;
                    (id, true)
                }
            };
            if row.done_at.is_none() {
                sqlx::query(
                    "UPDATE run_intents SET done_at = $2, run_id = $3 WHERE trigger_key = $1")
                    .bind(key)
                    .bind(now())
                    .bind(id.text())
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            let run = tx.run_row(&id).await?.into_run()?;
            if created { IntentRun::Created(run) } else { IntentRun::Existed(run) }
        });
        Ok(outcome)
    }

    /// Gives up intent `key` (its pipeline no longer takes these params, say), so that it is
    /// not tried again at every start. No effect on an intent that has its run.
    pub async fn abandon_intent(&self, key: &str, why: &str) -> Result<()> {
        let what = || format!("give up intended run `{key}`");
        with_write!(self, p => sqlx::query(
            "UPDATE run_intents SET done_at = $2, error = $3 \
             WHERE trigger_key = $1 AND done_at IS NULL")
            .bind(key)
            .bind(now())
            .bind(why)
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        Ok(())
    }

    /// The runs intents of `claim` started, in the order they were created.
    pub async fn claim_runs(&self, claim: &str) -> Result<Vec<Run>> {
        let what = || format!("list the runs of `{claim}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "JOIN run_intents i ON i.run_id = r.id WHERE i.claim = $1 \
             ORDER BY r.created_at, r.number"))
            .bind(claim)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// The run created for trigger `key`, if any.
    pub async fn run_by_trigger(&self, key: &str) -> Result<Option<Run>> {
        let what = || format!("get the run of trigger `{key}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE r.trigger_key = $1"))
            .bind(key)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(RunRow::into_run).transpose()
    }
}
