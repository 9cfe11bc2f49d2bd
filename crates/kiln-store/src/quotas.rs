//! Per-project quotas on the resource pool: what one project may hold at once. The server
//! keeps the live usage; this is the limits, which must outlive a restart.

use chrono::{DateTime, Utc};

use crate::error::{Ctx, is_foreign_key};
use crate::{Result, Store, StoreError, now};

/// Limits of one project; `None` = no limit on that resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Jobs running at once.
    pub jobs: Option<u32>,
}

/// A project's quota as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectQuota {
    /// The project's name.
    pub project: String,
    /// Its limits.
    pub limits: QuotaLimits,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct QuotaRow {
    name: String,
    cpu_millis: Option<i64>,
    memory_bytes: Option<i64>,
    jobs: Option<i64>,
    updated_at: DateTime<Utc>,
}

impl QuotaRow {
    fn into_quota(self) -> ProjectQuota {
        let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        ProjectQuota {
            project: self.name,
            limits: QuotaLimits {
                cpu_millis: u(self.cpu_millis),
                memory_bytes: u(self.memory_bytes),
                jobs: self.jobs.and_then(|v| u32::try_from(v).ok()),
            },
            updated_at: self.updated_at,
        }
    }
}

/// The columns of a [`QuotaRow`] (a macro so queries stay static strings).
macro_rules! select_quotas {
    ($rest:literal) => {
        concat!(
            "SELECT p.name, q.cpu_millis, q.memory_bytes, q.jobs, q.updated_at \
             FROM project_quotas q JOIN projects p ON p.id = q.project_id ",
            $rest
        )
    };
}

fn db_int(v: Option<u64>, what: &str) -> Result<Option<i64>> {
    v.map(|v| i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large"))))
        .transpose()
}

impl Store {
    /// Sets the quota of `project` (replacing any it had). `NotFound` for an unknown project.
    pub async fn set_quota(&self, project: &str, limits: &QuotaLimits) -> Result<ProjectQuota> {
        let p = self.project(project).await?;
        let cpu = db_int(limits.cpu_millis, "CPU quota")?;
        let memory = db_int(limits.memory_bytes, "memory quota")?;
        let jobs = limits.jobs.map(i64::from);
        let what = || format!("set the quota of project `{project}`");
        let done = with_write!(self, c => sqlx::query(
            "INSERT INTO project_quotas (project_id, cpu_millis, memory_bytes, jobs, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (project_id) DO UPDATE SET cpu_millis = excluded.cpu_millis, \
             memory_bytes = excluded.memory_bytes, jobs = excluded.jobs, \
             updated_at = excluded.updated_at")
            .bind(p.id.text())
            .bind(cpu)
            .bind(memory)
            .bind(jobs)
            .bind(now())
            .execute(c)
            .await
            .map(|_| ()));
        match done {
            Ok(_) => {}
            Err(e) if is_foreign_key(&e) => {
                return Err(StoreError::NotFound(format!("project `{project}`")));
            }
            Err(e) => return Err(e).ctx(what),
        }
        self.quota(project)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))
    }

    /// The quota of `project`, if it has one.
    pub async fn quota(&self, project: &str) -> Result<Option<ProjectQuota>> {
        let what = || format!("get the quota of project `{project}`");
        let row = with_db!(&self.db, c => sqlx::query_as::<_, QuotaRow>(
            select_quotas!("WHERE p.name = $1"))
            .bind(project)
            .fetch_optional(c)
            .await)
        .ctx(what)?;
        Ok(row.map(QuotaRow::into_quota))
    }

    /// Every project's quota, by project name.
    pub async fn quotas(&self) -> Result<Vec<ProjectQuota>> {
        let what = || "list quotas".to_string();
        let rows = with_db!(&self.db, c => sqlx::query_as::<_, QuotaRow>(
            select_quotas!("ORDER BY p.name"))
            .fetch_all(c)
            .await)
        .ctx(what)?;
        Ok(rows.into_iter().map(QuotaRow::into_quota).collect())
    }

    /// Removes the quota of `project`; `NotFound` if it had none.
    pub async fn delete_quota(&self, project: &str) -> Result<()> {
        let p = self.project(project).await?;
        let what = || format!("remove the quota of project `{project}`");
        let done = with_write!(self, c => sqlx::query(
            "DELETE FROM project_quotas WHERE project_id = $1")
            .bind(p.id.text())
            .execute(c)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("a quota of project `{project}`")));
        }
        Ok(())
    }
}
