//! Usage accounting: what each job attempt reserved on its node, and for how long.
//!
//! Invariant: an attempt's row is inserted in the transaction that records its start
//! ([`Step::usage_starts`](crate::Step)) and completed in the transaction that records its
//! end ([`Step::usage_ends`](crate::Step)), once: the key is (run, job, attempt), a second
//! start is ignored and an end only completes a row still open. A run's final step closes
//! every row of it left open. A restart therefore neither loses nor doubles a record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kiln_workflow::plan::JobId;

use crate::error::Ctx;
use crate::model::int;
use crate::{ProjectId, Result, RunId, Store, StoreError};

/// The start of an attempt that holds a reservation on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageStart {
    /// Job.
    pub job: JobId,
    /// Attempt (1 for the first).
    pub attempt: u32,
    /// Project of the run.
    pub project: ProjectId,
    /// Pipeline name.
    pub pipeline: String,
    /// The job's `environment:` (`""` without one).
    pub environment: String,
    /// The node it was placed on.
    pub node: String,
    /// The node's `group` attribute (`""` without one).
    pub node_group: String,
    /// CPU reserved, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory reserved, in bytes.
    pub memory_bytes: u64,
    /// Disk reserved, in bytes.
    pub disk_bytes: u64,
    /// When the server heard it started.
    pub started_at: DateTime<Utc>,
}

/// The end of an attempt, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEnd {
    /// Job.
    pub job: JobId,
    /// Attempt.
    pub attempt: u32,
    /// When the server recorded its end.
    pub ended_at: DateTime<Utc>,
}

/// A finished attempt's usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Run.
    pub run: RunId,
    /// Job.
    pub job: String,
    /// Attempt.
    pub attempt: u32,
    /// Project.
    pub project: ProjectId,
    /// Pipeline name.
    pub pipeline: String,
    /// `environment:` of the job (`""` without one).
    pub environment: String,
    /// Node.
    pub node: String,
    /// The node's `group` attribute (`""` without one).
    pub node_group: String,
    /// CPU reserved, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory reserved, in bytes.
    pub memory_bytes: u64,
    /// Disk reserved, in bytes.
    pub disk_bytes: u64,
    /// Start as the server saw it.
    pub started_at: DateTime<Utc>,
    /// End as the server saw it.
    pub ended_at: DateTime<Utc>,
    /// Whole seconds from start to end, rounded up.
    pub seconds: u64,
}

/// Whole seconds from `start` to `end`, rounded up (0 if `end` is not after `start`).
pub fn billed_seconds(start: DateTime<Utc>, end: DateTime<Utc>) -> u64 {
    let ms = (end - start).num_milliseconds().max(0);
    u64::try_from(ms).unwrap_or(0).div_ceil(1000)
}

#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    run_id: String,
    job_id: String,
    attempt: i64,
    project_id: String,
    pipeline: String,
    environment: String,
    node: String,
    node_group: String,
    cpu_millis: i64,
    memory_bytes: i64,
    disk_bytes: i64,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    seconds: Option<i64>,
}

impl UsageRow {
    pub(crate) fn into_record(self) -> Result<UsageRecord> {
        let what = format!("usage of job {} of run {}", self.job_id, self.run_id);
        let (Some(ended_at), Some(seconds)) = (self.ended_at, self.seconds) else {
            return Err(StoreError::Corrupt(format!("{what}: not ended")));
        };
        Ok(UsageRecord {
            run: RunId::from_db(&self.run_id)?,
            job: self.job_id,
            attempt: int(self.attempt, "usage attempt")?,
            project: ProjectId::from_db(&self.project_id)?,
            pipeline: self.pipeline,
            environment: self.environment,
            node: self.node,
            node_group: self.node_group,
            cpu_millis: int(self.cpu_millis, "usage CPU")?,
            memory_bytes: int(self.memory_bytes, "usage memory")?,
            disk_bytes: int(self.disk_bytes, "usage disk")?,
            started_at: self.started_at,
            ended_at,
            seconds: int(seconds, "usage seconds")?,
        })
    }
}

/// The columns of a [`UsageRow`].
macro_rules! usage_select {
    ($rest:literal) => {
        concat!(
            "SELECT run_id, job_id, attempt, project_id, pipeline, environment, node, node_group, \
             cpu_millis, memory_bytes, disk_bytes, started_at, ended_at, seconds FROM usage ",
            $rest
        )
    };
}

/// A value for a BIGINT column.
pub(crate) fn db_u64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

impl Store {
    /// The finished attempts of `project` that ended in `[since, until)`, oldest end first.
    pub async fn usage_records(
        &self,
        project: &ProjectId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<UsageRecord>> {
        let what = || format!("list the usage of project {project}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, UsageRow>(usage_select!(
            "WHERE project_id = $1 AND ended_at IS NOT NULL AND ended_at >= $2 AND ended_at < $3 \
             ORDER BY ended_at, run_id, job_id, attempt"))
            .bind(project.text())
            .bind(since)
            .bind(until)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(UsageRow::into_record).collect()
    }

    /// The node each job of `run` was last placed on (its latest attempt's usage row), by
    /// job id.
    pub async fn job_nodes(&self, run: &RunId) -> Result<BTreeMap<String, String>> {
        let what = || format!("list the nodes of run {run}");
        let rows: Vec<(String, String)> = with_db!(&self.db, p => sqlx::query_as(
            "SELECT job_id, node FROM usage WHERE run_id = $1 ORDER BY job_id, attempt")
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        // Ordered by attempt: the latest one's node is the one kept.
        Ok(rows.into_iter().collect())
    }

    /// How many usage rows of `run` are still open (attempts started, not ended).
    pub async fn open_usage_count(&self, run: &RunId) -> Result<u64> {
        let what = || format!("count the open usage of run {run}");
        let n: i64 = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM usage WHERE run_id = $1 AND ended_at IS NULL")
            .bind(run.text())
            .fetch_one(p)
            .await)
        .ctx(what)?;
        int(n, "open usage count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_never_go_negative() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().to_utc();
        let ms = |n| t + chrono::Duration::milliseconds(n);
        assert_eq!(billed_seconds(t, t), 0);
        assert_eq!(billed_seconds(t, ms(1)), 1);
        assert_eq!(billed_seconds(t, ms(2000)), 2);
        assert_eq!(billed_seconds(t, ms(2001)), 3);
        assert_eq!(billed_seconds(t, ms(-5000)), 0);
    }
}
