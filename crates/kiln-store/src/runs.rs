//! Runs, their event logs, their jobs and their approvals.
//!
//! Run numbers come from `pipelines.last_run_number` and event sequence numbers from
//! `runs.last_event_seq`, each bumped by an `UPDATE … RETURNING` in the transaction that
//! inserts the row: the row lock (PostgreSQL) or the write lock (SQLite) serialises
//! concurrent callers, so numbers have no gaps and never repeat.
//!
//! The statements that change a run (append events, set its state, save jobs) live once in
//! [`RunTx`], at transaction level: the one-change methods and [`Store::record_step`], which
//! writes a whole engine step in one transaction, run the same code.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kiln_engine::{Event, JobState, RunState};
use kiln_workflow::plan::JobId;
use sqlx::types::Json;

use crate::error::{Ctx, is_foreign_key, is_unique};
use crate::model::{DbText, int};
use crate::notices::{NoticeRun, Recorded, RunEventKind, RunNotice};
use crate::usage::{UsageEnd, UsageRecord, UsageRow, UsageStart, billed_seconds, db_u64};
use crate::{
    ApprovalDecision, ApprovalRecord, JobRecord, NewRun, PipelineId, PipelineSource, Result, Run,
    RunFilter, RunId, Step, Store, StoreError, StoredEvent, now,
};

/// Default and ceiling of [`RunFilter::limit`].
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: String,
    pipeline_id: String,
    project: String,
    pipeline: String,
    number: i64,
    pipeline_version: i64,
    state: String,
    params: Json<serde_json::Value>,
    triggered_by: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    retry_of: Option<String>,
    source: Option<Json<crate::RunSource>>,
    parent_run_id: Option<String>,
    parent_job: Option<String>,
    parent_number: Option<i64>,
    parent_pipeline: Option<String>,
    parent_project: Option<String>,
    group_id: Option<String>,
    author_token: Option<String>,
}

impl RunRow {
    pub(crate) fn into_run(self) -> Result<Run> {
        Ok(Run {
            id: RunId::from_db(&self.id)?,
            pipeline_id: PipelineId::from_db(&self.pipeline_id)?,
            project: self.project,
            pipeline: self.pipeline,
            number: int(self.number, "run number")?,
            pipeline_version: int(self.pipeline_version, "pipeline version")?,
            state: RunState::from_db(&self.state)?,
            params: self.params.0,
            triggered_by: self.triggered_by,
            reason: self.reason,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            retry_of: self.retry_of.as_deref().map(RunId::from_db).transpose()?,
            source: self.source.map(|s| s.0),
            parent: match (self.parent_run_id, self.parent_job) {
                (Some(run), Some(job)) => Some(crate::RunParent {
                    run: RunId::from_db(&run)?,
                    name: format!(
                        "{}/{}#{}",
                        self.parent_project.unwrap_or_default(),
                        self.parent_pipeline.unwrap_or_default(),
                        self.parent_number.unwrap_or_default()
                    ),
                    job,
                }),
                _ => None,
            },
            group: self.group_id.as_deref().map(crate::GroupId::from_db).transpose()?,
            author: self.author_token.as_deref().map(crate::TokenId::from_db).transpose()?,
        })
    }
}

/// `SELECT` of a [`RunRow`]; append the `WHERE`.
macro_rules! run_select {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, r.pipeline_id, pr.name AS project, pl.name AS pipeline, r.number, \
             r.pipeline_version, r.state, r.params, r.triggered_by, r.reason, r.created_at, \
             r.started_at, r.finished_at, r.retry_of, r.source, \
             lk.parent_run_id, lk.parent_job, up.number AS parent_number, \
             upl.name AS parent_pipeline, upr.name AS parent_project, lk.group_id, \
             lk.author_token \
             FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id \
             JOIN projects pr ON pr.id = pl.project_id \
             LEFT JOIN run_links lk ON lk.run_id = r.id \
             LEFT JOIN runs up ON up.id = lk.parent_run_id \
             LEFT JOIN pipelines upl ON upl.id = up.pipeline_id \
             LEFT JOIN projects upr ON upr.id = upl.project_id ",
            $rest
        )
    };
}
pub(crate) use run_select;

#[derive(sqlx::FromRow)]
struct Allocated {
    last_run_number: i64,
    version: i64,
    yaml: String,
    file: String,
    files: Json<BTreeMap<String, String>>,
    name: String,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    yaml: String,
    file: String,
    files: Json<BTreeMap<String, String>>,
    pipeline: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event: Json<serde_json::Value>,
    at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: String,
    state: String,
    attempts: i64,
    exit_code: Option<i64>,
    outputs: Json<serde_json::Value>,
    reason: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    fn into_job(self) -> Result<JobRecord> {
        let outputs: BTreeMap<String, String> = serde_json::from_value(self.outputs.0)
            .map_err(|e| StoreError::Corrupt(format!("outputs of job `{}`: {e}", self.job_id)))?;
        Ok(JobRecord {
            state: JobState::from_db(&self.state)?,
            attempts: int(self.attempts, "job attempts")?,
            exit_code: self.exit_code.map(|c| int(c, "exit code")).transpose()?,
            outputs,
            reason: self.reason,
            started_at: self.started_at,
            finished_at: self.finished_at,
            job: JobId(self.job_id),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    run_id: String,
    stage: String,
    decision: String,
    decided_by: String,
    at: DateTime<Utc>,
}

impl ApprovalRow {
    fn into_approval(self) -> Result<ApprovalRecord> {
        Ok(ApprovalRecord {
            run: RunId::from_db(&self.run_id)?,
            stage: self.stage,
            decision: ApprovalDecision::from_db(&self.decision)?,
            by: self.decided_by,
            at: self.at,
        })
    }
}

/// The statements that change a run, run inside the caller's transaction so that several of
/// them commit or roll back together. Implemented once per driver's connection by `run_tx!`
/// (like `with_db!`, each copy is type-checked against its own driver); a transaction reaches
/// them through `Deref`.
pub(crate) trait RunTx {
    /// Inserts run `id` as [`Store::create_run`] documents, for the trigger `trigger_key` if
    /// given: a `Conflict` if a run for that trigger exists already (the unique index).
    async fn insert_run(
        &mut self,
        id: &RunId,
        new: &NewRun,
        trigger_key: Option<&str>,
    ) -> Result<()>;

    /// Appends `events` to the run's log and returns their sequence numbers. They are
    /// stamped once the run's row is locked, so that times follow sequence numbers. No
    /// events: no statement, an empty list.
    async fn append_events(&mut self, run: &RunId, events: &[Event]) -> Result<Vec<u64>>;

    /// Sets the run's state as [`Store::set_run_state`] documents.
    async fn set_state(&mut self, run: &RunId, state: RunState, reason: Option<&str>)
    -> Result<()>;

    /// Inserts or replaces job records (checked by [`check_jobs`] beforehand).
    async fn upsert_jobs(&mut self, run: &RunId, jobs: &[JobRecord]) -> Result<()>;

    /// Inserts or replaces the progress rows of array jobs.
    async fn upsert_arrays(&mut self, run: &RunId, arrays: &[crate::ArrayRecord]) -> Result<()>;

    /// The run as it is now in this transaction.
    async fn run_row(&mut self, run: &RunId) -> Result<RunRow>;

    /// The run's state now (`NotFound` if there is no such run).
    async fn state_of(&mut self, run: &RunId) -> Result<RunState>;

    /// Puts `notice` in the webhook outbox, one row per webhook of `run`'s project that takes
    /// `run` events.
    async fn enqueue_notice(&mut self, run: &RunId, notice: &RunNotice) -> Result<()>;

    /// Opens the usage rows of attempts that started (a row already there is kept as is).
    async fn start_usage(&mut self, run: &RunId, starts: &[UsageStart]) -> Result<()>;

    /// Completes the open usage rows of attempts that ended; returns the rows it completed
    /// (an attempt without an open row, never started or already ended, is skipped).
    async fn end_usage(&mut self, run: &RunId, ends: &[UsageEnd]) -> Result<Vec<UsageRecord>>;

    /// Completes every usage row of `run` still open, ended at `at` (the run ended).
    async fn close_usage(&mut self, run: &RunId, at: DateTime<Utc>) -> Result<Vec<UsageRecord>>;
}

macro_rules! run_tx {
    ($($conn:ty),+) => {$(
        impl RunTx for $conn {
            async fn insert_run(
                &mut self,
                id: &RunId,
                new: &NewRun,
                trigger_key: Option<&str>,
            ) -> Result<()> {
                let pipeline = &new.pipeline;
                let what = || format!("create a run of pipeline {pipeline}");
                if let Some(original) = &new.retry_of {
                    let of: Option<String> =
                        sqlx::query_scalar("SELECT pipeline_id FROM runs WHERE id = $1")
                            .bind(original.text())
                            .fetch_optional(&mut *self)
                            .await
                            .ctx(what)?;
                    match of {
                        None => {
                            return Err(StoreError::NotFound(format!(
                                "run {original} (the run to retry)"
                            )));
                        }
                        Some(of) if of != pipeline.text() => {
                            return Err(StoreError::Invalid(format!(
                                "run {original} is of pipeline {of}, not {pipeline}: a retry runs \
                                 the same pipeline"
                            )));
                        }
                        Some(_) => {}
                    }
                }
                let allocated = sqlx::query_as::<_, Allocated>(
                    "UPDATE pipelines SET last_run_number = last_run_number + 1 WHERE id = $1 \
                     RETURNING last_run_number, version, yaml, file, files, name")
                    .bind(pipeline.text())
                    .fetch_optional(&mut *self)
                    .await
                    .ctx(what)?
                    .ok_or_else(|| StoreError::NotFound(format!("pipeline {pipeline}")))?;
                let inserted = sqlx::query(
                    "INSERT INTO runs (id, pipeline_id, number, pipeline_version, yaml, state, \
                     params, triggered_by, created_at, retry_of, file, files, source, \
                     trigger_key) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13)")
                    .bind(id.text())
                    .bind(pipeline.text())
                    .bind(allocated.last_run_number)
                    .bind(allocated.version)
                    .bind(&allocated.yaml)
                    .bind(Json(&new.params))
                    .bind(&new.triggered_by)
                    .bind(now())
                    .bind(new.retry_of.map(|r| r.text()))
                    .bind(if allocated.file.is_empty() {
                        format!("{}.yml", allocated.name)
                    } else {
                        allocated.file.clone()
                    })
                    .bind(&allocated.files)
                    .bind(new.source.as_ref().map(Json))
                    .bind(trigger_key)
                    .execute(&mut *self)
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if trigger_key.is_some() && is_unique(&e) => {
                        Err(StoreError::Conflict(format!(
                            "trigger `{}` has its run already",
                            trigger_key.unwrap_or_default()
                        )))
                    }
                    Err(e) => Err(e).ctx(what),
                }
            }

            async fn append_events(&mut self, run: &RunId, events: &[Event]) -> Result<Vec<u64>> {
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                let what = || format!("append events to run {run}");
                let count = i64::try_from(events.len())
                    .map_err(|_| StoreError::Invalid(format!("too many events for run {run}")))?;
                // One bump for the whole batch: the run's row stays locked until commit.
                let last: i64 = sqlx::query_scalar(
                    "UPDATE runs SET last_event_seq = last_event_seq + $2 WHERE id = $1 \
                     RETURNING last_event_seq")
                    .bind(run.text())
                    .bind(count)
                    .fetch_optional(&mut *self)
                    .await
                    .ctx(what)?
                    .ok_or_else(|| StoreError::NotFound(format!("run {run}")))?;
                let at = now();
                let mut seqs = Vec::with_capacity(events.len());
                for (seq, event) in (last - count + 1..).zip(events) {
                    sqlx::query(
                        "INSERT INTO run_events (run_id, seq, event, at) VALUES ($1, $2, $3, $4)")
                        .bind(run.text())
                        .bind(seq)
                        .bind(Json(event))
                        .bind(at)
                        .execute(&mut *self)
                        .await
                        .ctx(what)?;
                    seqs.push(int(seq, "event sequence number")?);
                }
                Ok(seqs)
            }

            async fn set_state(
                &mut self,
                run: &RunId,
                state: RunState,
                reason: Option<&str>,
            ) -> Result<()> {
                let what = || format!("set the state of run {run} to {}", state.text());
                let at = now();
                let started = (state != RunState::Pending).then_some(at);
                let finished = state.is_final().then_some(at);
                let updated: Option<String> = sqlx::query_scalar(
                    "UPDATE runs SET state = $2, reason = COALESCE($3, reason), \
                     started_at = COALESCE(started_at, $4), finished_at = $5 \
                     WHERE id = $1 AND state NOT IN ('success', 'failure', 'canceled', 'timeout') \
                     RETURNING id")
                    .bind(run.text())
                    .bind(state.text())
                    .bind(reason)
                    .bind(started)
                    .bind(finished)
                    .fetch_optional(&mut *self)
                    .await
                    .ctx(what)?;
                if updated.is_some() {
                    return Ok(());
                }
                let current: Option<String> =
                    sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
                        .bind(run.text())
                        .fetch_optional(&mut *self)
                        .await
                        .ctx(what)?;
                Err(match current {
                    None => StoreError::NotFound(format!("run {run}")),
                    Some(s) => StoreError::Conflict(format!(
                        "run {run} already ended as {s}; it cannot become {}",
                        state.text()
                    )),
                })
            }

            async fn upsert_arrays(
                &mut self,
                run: &RunId,
                arrays: &[crate::ArrayRecord],
            ) -> Result<()> {
                let what = || format!("save array progress of run {run}");
                for a in arrays {
                    sqlx::query(
                        "INSERT INTO job_arrays (run_id, job_id, progress) VALUES ($1, $2, $3) \
                         ON CONFLICT (run_id, job_id) DO UPDATE SET progress = excluded.progress")
                        .bind(run.text())
                        .bind(a.job.as_str())
                        .bind(&a.progress)
                        .execute(&mut *self)
                        .await
                        .ctx(what)?;
                }
                Ok(())
            }

            async fn upsert_jobs(&mut self, run: &RunId, jobs: &[JobRecord]) -> Result<()> {
                let what = || format!("save jobs of run {run}");
                for job in jobs {
                    let saved = sqlx::query(
                        "INSERT INTO jobs (run_id, job_id, state, attempts, exit_code, outputs, \
                         reason, started_at, finished_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (run_id, job_id) DO UPDATE SET state = excluded.state, \
                         attempts = excluded.attempts, exit_code = excluded.exit_code, \
                         outputs = excluded.outputs, reason = excluded.reason, \
                         started_at = excluded.started_at, finished_at = excluded.finished_at")
                        .bind(run.text())
                        .bind(job.job.as_str())
                        .bind(job.state.text())
                        .bind(i64::from(job.attempts))
                        .bind(job.exit_code.map(i64::from))
                        .bind(Json(&job.outputs))
                        .bind(job.reason.as_deref())
                        .bind(job.started_at)
                        .bind(job.finished_at)
                        .execute(&mut *self)
                        .await;
                    match saved {
                        Ok(_) => {}
                        Err(e) if is_foreign_key(&e) => {
                            return Err(StoreError::NotFound(format!("run {run}")));
                        }
                        Err(e) => return Err(e).ctx(what),
                    }
                }
                Ok(())
            }

            async fn run_row(&mut self, run: &RunId) -> Result<RunRow> {
                let what = || format!("get run {run}");
                sqlx::query_as::<_, RunRow>(run_select!("WHERE r.id = $1"))
                    .bind(run.text())
                    .fetch_optional(&mut *self)
                    .await
                    .ctx(what)?
                    .ok_or_else(|| StoreError::NotFound(format!("run {run}")))
            }

            async fn state_of(&mut self, run: &RunId) -> Result<RunState> {
                let what = || format!("get the state of run {run}");
                let state: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
                    .bind(run.text())
                    .fetch_optional(&mut *self)
                    .await
                    .ctx(what)?;
                let state = state.ok_or_else(|| StoreError::NotFound(format!("run {run}")))?;
                RunState::from_db(&state)
            }

            async fn enqueue_notice(&mut self, run: &RunId, notice: &RunNotice) -> Result<()> {
                let what = || format!("queue the webhooks of run {run}");
                let hooks: Vec<(String, String)> = sqlx::query_as(
                    "SELECT w.id, w.events FROM registry_webhooks w \
                     JOIN pipelines pl ON pl.project_id = w.project_id \
                     JOIN runs r ON r.pipeline_id = pl.id WHERE r.id = $1 ORDER BY w.id")
                    .bind(run.text())
                    .fetch_all(&mut *self)
                    .await
                    .ctx(what)?;
                let body = serde_json::to_string(notice)
                    .map_err(|e| StoreError::Invalid(format!("run event of run {run}: {e}")))?;
                for (hook, events) in hooks {
                    if !crate::registry::takes(&events, "run") {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO registry_outbox (id, webhook_id, kind, payload, attempts, \
                         next_at, state, updated_at) VALUES ($1, $2, 'run', $3, 0, $4, 'pending', $4)")
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&hook)
                        .bind(&body)
                        .bind(notice.at)
                        .execute(&mut *self)
                        .await
                        .ctx(what)?;
                }
                Ok(())
            }

            async fn start_usage(&mut self, run: &RunId, starts: &[UsageStart]) -> Result<()> {
                let what = || format!("record the usage of run {run}");
                for s in starts {
                    sqlx::query(
                        "INSERT INTO usage (run_id, job_id, attempt, project_id, pipeline, \
                         environment, node, node_group, cpu_millis, memory_bytes, disk_bytes, \
                         started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                         ON CONFLICT (run_id, job_id, attempt) DO NOTHING")
                        .bind(run.text())
                        .bind(s.job.as_str())
                        .bind(i64::from(s.attempt))
                        .bind(s.project.text())
                        .bind(&s.pipeline)
                        .bind(&s.environment)
                        .bind(&s.node)
                        .bind(&s.node_group)
                        .bind(db_u64(s.cpu_millis, "CPU reservation")?)
                        .bind(db_u64(s.memory_bytes, "memory reservation")?)
                        .bind(db_u64(s.disk_bytes, "disk reservation")?)
                        .bind(s.started_at)
                        .execute(&mut *self)
                        .await
                        .ctx(what)?;
                }
                Ok(())
            }

            async fn end_usage(
                &mut self,
                run: &RunId,
                ends: &[UsageEnd],
            ) -> Result<Vec<UsageRecord>> {
                let what = || format!("record the usage of run {run}");
                let mut done = Vec::new();
                for e in ends {
                    let started: Option<DateTime<Utc>> = sqlx::query_scalar(
                        "SELECT started_at FROM usage WHERE run_id = $1 AND job_id = $2 \
                         AND attempt = $3 AND ended_at IS NULL")
                        .bind(run.text())
                        .bind(e.job.as_str())
                        .bind(i64::from(e.attempt))
                        .fetch_optional(&mut *self)
                        .await
                        .ctx(what)?;
                    let Some(started) = started else { continue };
                    let seconds = db_u64(billed_seconds(started, e.ended_at), "usage seconds")?;
                    let row = sqlx::query_as::<_, UsageRow>(concat!(
                        "UPDATE usage SET ended_at = $4, seconds = $5 WHERE run_id = $1 \
                         AND job_id = $2 AND attempt = $3 AND ended_at IS NULL RETURNING ",
                        "run_id, job_id, attempt, project_id, pipeline, environment, node, \
                         node_group, cpu_millis, memory_bytes, disk_bytes, started_at, ended_at, \
                         seconds"))
                        .bind(run.text())
                        .bind(e.job.as_str())
                        .bind(i64::from(e.attempt))
                        .bind(e.ended_at)
                        .bind(seconds)
                        .fetch_optional(&mut *self)
                        .await
                        .ctx(what)?;
                    if let Some(row) = row {
                        done.push(row.into_record()?);
                    }
                }
                Ok(done)
            }

            async fn close_usage(
                &mut self,
                run: &RunId,
                at: DateTime<Utc>,
            ) -> Result<Vec<UsageRecord>> {
                let what = || format!("close the usage of run {run}");
                let open: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT job_id, attempt FROM usage WHERE run_id = $1 AND ended_at IS NULL")
                    .bind(run.text())
                    .fetch_all(&mut *self)
                    .await
                    .ctx(what)?;
                let ends = open
                    .into_iter()
                    .map(|(job, attempt)| {
                        Ok(UsageEnd {
                            job: JobId(job),
                            attempt: int(attempt, "usage attempt")?,
                            ended_at: at,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.end_usage(run, &ends).await
            }
        }
    )+};
}

run_tx!(sqlx::SqliteConnection, sqlx::PgConnection);

/// Refuses job records that cannot be stored, before any transaction starts.
fn check_jobs(run: &RunId, jobs: &[JobRecord]) -> Result<()> {
    match jobs.iter().find(|j| j.job.as_str().is_empty()) {
        Some(bad) => Err(StoreError::Invalid(format!(
            "a job of run {run} has an empty id (state {})",
            bad.state.text()
        ))),
        None => Ok(()),
    }
}

impl Store {
    /// Creates a run of `new.pipeline` in state `pending` with the next number of that
    /// pipeline (1 for the first), copying the pipeline's current YAML and version. A retry
    /// (`new.retry_of`) must name a run of the same pipeline: `NotFound` if there is no such
    /// run, `Invalid` if it belongs to another pipeline.
    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        if new.triggered_by.trim().is_empty() {
            return Err(StoreError::Invalid("a run needs a non-empty `triggered_by`".to_string()));
        }
        let pipeline = &new.pipeline;
        let what = || format!("create a run of pipeline {pipeline}");
        let id = RunId::new();
        let row = with_tx!(self, what, tx => {
            tx.insert_run(&id, new, None).await?;
            tx.run_row(&id).await?
        });
        row.into_run()
    }

    /// The run with this id.
    pub async fn run(&self, id: &RunId) -> Result<Run> {
        let what = || format!("get run {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(
            run_select!("WHERE r.id = $1"))
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("run {id}")))?.into_run()
    }

    /// The workflow YAML a run was created with (the pipeline may have changed since).
    pub async fn run_yaml(&self, id: &RunId) -> Result<String> {
        let what = || format!("get the workflow of run {id}");
        let yaml: Option<String> = with_db!(&self.db, p =>
            sqlx::query_scalar("SELECT yaml FROM runs WHERE id = $1")
                .bind(id.text())
                .fetch_optional(p)
                .await)
        .ctx(what)?;
        yaml.ok_or_else(|| StoreError::NotFound(format!("run {id}")))
    }

    /// The workflow source a run was created with: its YAML, file name and template files
    /// (the pipeline may have changed since). What a replay compiles.
    pub async fn run_source(&self, id: &RunId) -> Result<PipelineSource> {
        let what = || format!("get the workflow of run {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, SourceRow>(
            "SELECT r.yaml, r.file, r.files, pl.name AS pipeline FROM runs r \
             JOIN pipelines pl ON pl.id = r.pipeline_id WHERE r.id = $1")
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?
        .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
        Ok(PipelineSource {
            file: if row.file.is_empty() { format!("{}.yml", row.pipeline) } else { row.file },
            yaml: row.yaml,
            files: row.files.0,
        })
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let what = || "list runs".to_string();
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE ($1 IS NULL OR r.pipeline_id = $1) AND ($2 IS NULL OR r.state = $2) \
             AND ($4 IS NULL OR pr.name = $4) \
             AND ($5 IS NULL OR (r.created_at, r.id) < \
                 (SELECT c.created_at, c.id FROM runs c WHERE c.id = $5)) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3"))
            .bind(filter.pipeline.map(|p| p.text()))
            .bind(filter.state.map(|s| s.text()))
            .bind(i64::from(limit))
            .bind(filter.project.clone())
            .bind(filter.before.map(|r| r.text()))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// Runs not in a final state (pending, running, paused), oldest first: at start-up, each
    /// must be replayed from its events and resumed, or ended, so that nothing stays running
    /// forever.
    pub async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let what = || "list unfinished runs".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE r.state IN ('pending', 'scheduling', 'running', 'paused') ORDER BY r.created_at, r.id"))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// The run `project/pipeline#number`.
    pub async fn run_by_number(&self, project: &str, pipeline: &str, number: u64) -> Result<Run> {
        let what = || format!("get run `{project}/{pipeline}#{number}`");
        let not_found = || StoreError::NotFound(format!("run `{project}/{pipeline}#{number}`"));
        let Ok(n) = i64::try_from(number) else {
            return Err(not_found());
        };
        let row = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE pr.name = $1 AND pl.name = $2 AND r.number = $3"))
            .bind(project)
            .bind(pipeline)
            .bind(n)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(not_found)?.into_run()
    }

    /// The pending runs of a pipeline in the order they were created (by number): the
    /// pipeline's queue. `NotFound` if the pipeline does not exist.
    pub async fn pending_runs(&self, pipeline: &PipelineId) -> Result<Vec<Run>> {
        let what = || format!("list pending runs of pipeline {pipeline}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RunRow>(run_select!(
            "WHERE r.pipeline_id = $1 AND r.state = 'pending' ORDER BY r.number"))
            .bind(pipeline.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.pipeline_by_id(pipeline).await?;
        }
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// How many runs of a pipeline are active (running or paused), for concurrency limits.
    /// `NotFound` if the pipeline does not exist.
    pub async fn active_run_count(&self, pipeline: &PipelineId) -> Result<u64> {
        let what = || format!("count active runs of pipeline {pipeline}");
        let count: Option<i64> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM runs r \
                     WHERE r.pipeline_id = pl.id AND r.state IN ('scheduling', 'running', 'paused')) \
             FROM pipelines pl WHERE pl.id = $1")
            .bind(pipeline.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        let count = count.ok_or_else(|| StoreError::NotFound(format!("pipeline {pipeline}")))?;
        int(count, "run count")
    }

    /// How many runs are in each state, over all pipelines, for metrics: every state once, in
    /// a fixed order (pending, running, paused, success, failure, canceled, timeout), zero
    /// counts included so that a gauge drops back to 0.
    pub async fn run_state_counts(&self) -> Result<Vec<(RunState, u64)>> {
        let what = || "count runs by state".to_string();
        let rows: Vec<(String, i64)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT state, COUNT(*) FROM runs GROUP BY state")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        let mut counts: Vec<(RunState, u64)> = RunState::ALL.iter().map(|s| (*s, 0)).collect();
        for (state, count) in rows {
            let state = RunState::from_db(&state)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = int(count, "run count")?;
            }
        }
        Ok(counts)
    }

    /// Sets a run's state, and its reason if `reason` is given. Leaving `pending` sets
    /// `started_at` (once); entering a final state sets `finished_at`. A run in a final state
    /// is never changed again: that is a `Conflict`.
    pub async fn set_run_state(
        &self,
        id: &RunId,
        state: RunState,
        reason: Option<&str>,
    ) -> Result<Run> {
        let what = || format!("set the state of run {id} to {}", state.text());
        let row = with_tx!(self, what, tx => {
            tx.set_state(id, state, reason).await?;
            tx.run_row(id).await?
        });
        row.into_run()
    }

    /// Appends an engine event to a run's log and returns its sequence number (1 for the
    /// first; strictly increasing per run, without gaps, also under concurrent appends).
    pub async fn append_event(&self, run: &RunId, event: &Event) -> Result<u64> {
        let what = || format!("append an event to run {run}");
        let seqs = with_tx!(self, what, tx => {
            tx.append_events(run, std::slice::from_ref(event)).await?
        });
        seqs.first().copied().ok_or_else(|| StoreError::Corrupt(format!("no seq for run {run}")))
    }

    /// Writes one engine step of a run in one transaction: appends `step.events` (numbered as
    /// [`Store::append_event`] numbers them), sets `step.state` (as [`Store::set_run_state`]
    /// does, a run in a final state is a `Conflict`) and inserts or replaces `step.jobs`.
    /// Returns the events' sequence numbers. All or nothing: on any error nothing of the step
    /// is stored. An empty step changes nothing (`NotFound` if the run does not exist).
    pub async fn record_step(&self, run: &RunId, step: &Step) -> Result<Vec<u64>> {
        Ok(self.record_step_notified(run, step).await?.seqs)
    }

    /// [`Store::record_step`], also returning the run events the step caused
    /// ([`RunEventKind::between`] the states before and after). In the same transaction,
    /// each event is put in the webhook outbox for every webhook of the run's project that
    /// takes `run` events: a step stored is a notification queued, once.
    pub async fn record_step_notified(&self, run: &RunId, step: &Step) -> Result<Recorded> {
        check_jobs(run, &step.jobs)?;
        if step.events.is_empty()
            && step.state.is_none()
            && step.jobs.is_empty()
            && step.usage_starts.is_empty()
            && step.usage_ends.is_empty()
            && step.arrays.is_empty()
        {
            self.run(run).await?;
            return Ok(Recorded::default());
        }
        let what = || format!("record a step of run {run}");
        let recorded = with_tx!(self, what, tx => {
            let seqs = tx.append_events(run, &step.events).await?;
            let mut notices = Vec::new();
            if let Some((state, reason)) = &step.state {
                let before = tx.state_of(run).await?;
                tx.set_state(run, *state, reason.as_deref()).await?;
                let kinds = RunEventKind::between(before, *state);
                if !kinds.is_empty() {
                    let now_run = tx.run_row(run).await?.into_run()?;
                    for event in kinds {
                        let notice =
                            RunNotice { event, run: NoticeRun::of(&now_run), at: now() };
                        tx.enqueue_notice(run, &notice).await?;
                        notices.push(notice);
                    }
                }
            }
            tx.upsert_jobs(run, &step.jobs).await?;
            tx.upsert_arrays(run, &step.arrays).await?;
            // An attempt's usage is recorded in the transaction that records its start, and
            // completed in the one that records its end, once; a run that ends closes what
            // is still open of it.
            tx.start_usage(run, &step.usage_starts).await?;
            let mut usage = tx.end_usage(run, &step.usage_ends).await?;
            if let Some((state, _)) = &step.state
                && state.is_final()
            {
                usage.extend(tx.close_usage(run, now()).await?);
            }
            Recorded { seqs, notices, usage }
        });
        Ok(recorded)
    }

    /// A run's event log in order, to replay the engine after a restart.
    pub async fn events(&self, run: &RunId) -> Result<Vec<StoredEvent>> {
        let what = || format!("load the events of run {run}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, EventRow>(
            "SELECT seq, event, at FROM run_events WHERE run_id = $1 ORDER BY seq")
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.run(run).await?;
        }
        rows.into_iter()
            .map(|row| {
                let event = serde_json::from_value(row.event.0).map_err(|e| {
                    StoreError::Corrupt(format!("event {} of run {run}: {e}", row.seq))
                })?;
                Ok(StoredEvent { seq: int(row.seq, "event sequence number")?, event, at: row.at })
            })
            .collect()
    }

    /// Inserts or replaces what is known of one job of a run.
    pub async fn upsert_job(&self, run: &RunId, job: &JobRecord) -> Result<()> {
        self.upsert_jobs(run, std::slice::from_ref(job)).await
    }

    /// Inserts or replaces several jobs of a run in one transaction (all or none).
    pub async fn upsert_jobs(&self, run: &RunId, jobs: &[JobRecord]) -> Result<()> {
        check_jobs(run, jobs)?;
        let what = || format!("save jobs of run {run}");
        with_tx!(self, what, tx => tx.upsert_jobs(run, jobs).await?);
        Ok(())
    }

    /// The jobs of a run, by job id.
    pub async fn jobs(&self, run: &RunId) -> Result<Vec<JobRecord>> {
        let what = || format!("list jobs of run {run}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, JobRow>(
            "SELECT job_id, state, attempts, exit_code, outputs, reason, started_at, \
             finished_at FROM jobs WHERE run_id = $1 ORDER BY job_id")
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.run(run).await?;
        }
        rows.into_iter().map(JobRow::into_job).collect()
    }

    /// The progress rows of a run's array jobs, by job id.
    pub async fn arrays(&self, run: &RunId) -> Result<Vec<crate::ArrayRecord>> {
        let what = || format!("list array jobs of run {run}");
        let rows: Vec<(String, String)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT job_id, progress FROM job_arrays WHERE run_id = $1 ORDER BY job_id")
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|(job, progress)| crate::ArrayRecord { job: JobId(job), progress })
            .collect())
    }

    /// Records the decision on approval stage `stage` of a run. A stage is decided once: a
    /// second decision is a `Conflict`. (Whether the run waits at that stage is the engine's
    /// business.)
    pub async fn record_approval(
        &self,
        run: &RunId,
        stage: &str,
        decision: ApprovalDecision,
        by: &str,
    ) -> Result<ApprovalRecord> {
        if stage.is_empty() || by.trim().is_empty() {
            return Err(StoreError::Invalid(format!(
                "an approval of run {run} needs a stage and who decided"
            )));
        }
        let what = || format!("record the decision on stage `{stage}` of run {run}");
        let row = with_write!(self, p => sqlx::query_as::<_, ApprovalRow>(
            "INSERT INTO approvals (run_id, stage, decision, decided_by, at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING run_id, stage, decision, decided_by, at")
            .bind(run.text())
            .bind(stage)
            .bind(decision.text())
            .bind(by)
            .bind(now())
            .fetch_one(p)
            .await);
        match row {
            Ok(row) => row.into_approval(),
            Err(e) if is_unique(&e) => Err(StoreError::Conflict(format!(
                "stage `{stage}` of run {run} was already decided"
            ))),
            Err(e) if is_foreign_key(&e) => Err(StoreError::NotFound(format!("run {run}"))),
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The decisions recorded for a run, oldest first.
    pub async fn approvals(&self, run: &RunId) -> Result<Vec<ApprovalRecord>> {
        let what = || format!("list approvals of run {run}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ApprovalRow>(
            "SELECT run_id, stage, decision, decided_by, at FROM approvals \
             WHERE run_id = $1 ORDER BY at, stage")
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.run(run).await?;
        }
        rows.into_iter().map(ApprovalRow::into_approval).collect()
    }
}
