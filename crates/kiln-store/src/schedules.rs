//! Schedules of pipelines (`on: schedule:`): per pipeline and entry, the next fire time and
//! the last fire, so that schedules outlive restarts and a downtime can be told from the
//! stored next fire time. The server computes the times; this stores them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::intents::IntentTx;
use crate::model::int;
use crate::{PipelineId, Result, RunId, RunIntent, Store, now};

/// A schedule entry as the server wants it stored for a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntry {
    /// Identifies the entry across applies (cron, time zone and params).
    pub key: String,
    /// Cron expression as written.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Param values as text.
    pub params: BTreeMap<String, String>,
    /// Missed-fire policy as written (`skip`, `run-once`).
    pub missed: String,
    /// The first fire time, used only when the entry is new.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// Its project's name.
    pub project: String,
    /// Its name.
    pub pipeline: String,
    /// Identifies the entry.
    pub key: String,
    /// Place in the file.
    pub position: u32,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Param values.
    pub params: BTreeMap<String, String>,
    /// Missed-fire policy.
    pub missed: String,
    /// The next fire time (`None`: the expression has no future time).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When a fire last started a run.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// The run it started, with its number.
    pub last_run: Option<(RunId, u32)>,
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    pipeline_id: String,
    project: String,
    pipeline: String,
    key: String,
    position: i64,
    cron: String,
    timezone: String,
    params: Json<BTreeMap<String, String>>,
    missed: String,
    next_fire_at: Option<DateTime<Utc>>,
    last_fired_at: Option<DateTime<Utc>>,
    last_run_id: Option<String>,
    last_run_number: Option<i64>,
}

impl ScheduleRow {
    fn into_record(self) -> Result<ScheduleRecord> {
        let last_run = match (self.last_run_id, self.last_run_number) {
            (Some(id), Some(n)) => Some((RunId::from_db(&id)?, int(n, "run number")?)),
            _ => None,
        };
        Ok(ScheduleRecord {
            pipeline_id: PipelineId::from_db(&self.pipeline_id)?,
            project: self.project,
            pipeline: self.pipeline,
            key: self.key,
            position: int(self.position, "schedule position")?,
            cron: self.cron,
            timezone: self.timezone,
            params: self.params.0,
            missed: self.missed,
            next_fire_at: self.next_fire_at,
            last_fired_at: self.last_fired_at,
            last_run,
        })
    }
}

/// `SELECT` of a [`ScheduleRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! schedule_select {
    ($rest:literal) => {
        concat!(
            "SELECT s.pipeline_id, pr.name AS project, pl.name AS pipeline, s.key, s.position, \
             s.cron, s.timezone, s.params, s.missed, s.next_fire_at, s.last_fired_at, \
             s.last_run_id, r.number AS last_run_number \
             FROM schedules s JOIN pipelines pl ON pl.id = s.pipeline_id \
             JOIN projects pr ON pr.id = pl.project_id \
             LEFT JOIN runs r ON r.id = s.last_run_id ",
            $rest
        )
    };
}

impl Store {
    /// Makes `pipeline`'s stored schedules exactly `entries`, in one transaction: rows of
    /// other keys are deleted, new keys inserted with their `next_fire_at`, and rows whose key
    /// is kept keep their fire times (their position and policy follow the file).
    pub async fn sync_schedules(
        &self,
        pipeline: &PipelineId,
        entries: &[ScheduleEntry],
    ) -> Result<()> {
        let what = || format!("save schedules of pipeline {pipeline}");
        let at = now();
        with_tx!(self, what, tx => {
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT key FROM schedules WHERE pipeline_id = $1")
                .bind(pipeline.text())
                .fetch_all(&mut *tx)
                .await
                .ctx(what)?;
            for key in keys.iter().filter(|k| entries.iter().all(|e| &e.key != *k)) {
                sqlx::query("DELETE FROM schedules WHERE pipeline_id = $1 AND key = $2")
                    .bind(pipeline.text())
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            for (position, e) in entries.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO schedules (pipeline_id, key, position, cron, timezone, params, \
                     missed, next_fire_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (pipeline_id, key) DO UPDATE SET position = excluded.position, \
                     missed = excluded.missed")
                    .bind(pipeline.text())
                    .bind(&e.key)
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(&e.cron)
                    .bind(&e.timezone)
                    .bind(Json(&e.params))
                    .bind(&e.missed)
                    .bind(e.next_fire_at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
        });
        Ok(())
    }

    /// Every stored schedule (of `project`'s pipelines only, when given), by project,
    /// pipeline and place in the file.
    pub async fn schedules(&self, project: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let what = || "list schedules".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ScheduleRow>(schedule_select!(
            "WHERE ($1 IS NULL OR pr.name = $1) ORDER BY pr.name, pl.name, s.position"))
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(ScheduleRow::into_record).collect()
    }

    /// Schedules whose next fire time is at or before `at`, earliest first.
    pub async fn due_schedules(&self, at: DateTime<Utc>) -> Result<Vec<ScheduleRecord>> {
        let what = || "list due schedules".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ScheduleRow>(schedule_select!(
            "WHERE s.next_fire_at <= $1 ORDER BY s.next_fire_at"))
            .bind(at)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(ScheduleRow::into_record).collect()
    }

    /// The earliest next fire time of any schedule.
    pub async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>> {
        let what = || "find the next schedule fire".to_string();
        let rows: Vec<DateTime<Utc>> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT next_fire_at FROM schedules WHERE next_fire_at IS NOT NULL \
             ORDER BY next_fire_at LIMIT 1")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows.into_iter().next())
    }

    /// Claims the fire of schedule `key` of `pipeline` due at `due`: moves its next fire time
    /// to `next` (and its last fire to `fired_at`, when a run is to start) if it is still
    /// `due`, and records `intent`, the run this fire is to start (see
    /// [`Store::start_intent`]), in the same transaction. False when the schedule is gone or
    /// another claim moved it first (then nothing is recorded).
    pub async fn claim_schedule(
        &self,
        pipeline: &PipelineId,
        key: &str,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired_at: Option<DateTime<Utc>>,
        intent: Option<&RunIntent>,
    ) -> Result<bool> {
        let what = || format!("claim a schedule of pipeline {pipeline}");
        let done = with_tx!(self, what, tx => {
            let done = sqlx::query(
                "UPDATE schedules SET next_fire_at = $4, \
                 last_fired_at = COALESCE($5, last_fired_at) \
                 WHERE pipeline_id = $1 AND key = $2 AND next_fire_at = $3")
                .bind(pipeline.text())
                .bind(key)
                .bind(due)
                .bind(next)
                .bind(fired_at)
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if done == 1 {
                tx.insert_intents(intent.map(std::slice::from_ref).unwrap_or_default()).await?;
            }
            done
        });
        Ok(done == 1)
    }

    /// Records the run a fire of schedule `key` of `pipeline` started.
    pub async fn schedule_started(
        &self,
        pipeline: &PipelineId,
        key: &str,
        run: &RunId,
    ) -> Result<()> {
        let what = || format!("record a scheduled run of pipeline {pipeline}");
        with_write!(self, p => sqlx::query(
            "UPDATE schedules SET last_run_id = $3 WHERE pipeline_id = $1 AND key = $2")
            .bind(pipeline.text())
            .bind(key)
            .bind(run.text())
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        Ok(())
    }

    /// Every pipeline of every project, by project and name.
    pub async fn all_pipelines(&self) -> Result<Vec<crate::Pipeline>> {
        let mut out = Vec::new();
        for project in self.projects().await? {
            out.extend(self.pipelines(&project.name).await?);
        }
        Ok(out)
    }
}
