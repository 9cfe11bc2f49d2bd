//! Artifact records: for each job of a run, the archive its latest attempt uploaded, by its
//! path in the blob directory, with its size, SHA-256 and file list. The bytes live in the blob
//! directory, never here. A retried run copies the rows of the jobs it reuses; the copies
//! point at the same blob, so a blob may be named by several rows. The garbage collector
//! expires the rows of runs that ended long ago ([`Store::expire_artifacts`]): an expired row
//! names no live blob and stays only so that the API can say the artifacts expired.

use chrono::{DateTime, Utc};
use kiln_workflow::plan::JobId;
use sqlx::types::Json;

use crate::error::{Ctx, is_foreign_key};
use crate::model::{check_blob, db_int, int};
use crate::{
    ArtifactFile, ArtifactRecord, ExpiredArtifacts, NewArtifact, Result, RunId, Store, StoreError,
    now,
};

#[derive(sqlx::FromRow)]
struct ArtifactRow {
    run_id: String,
    job_id: String,
    attempt: i64,
    blob: String,
    size: i64,
    sha256: String,
    files: Json<Vec<ArtifactFile>>,
    created_at: DateTime<Utc>,
    expired_at: Option<DateTime<Utc>>,
}

impl ArtifactRow {
    fn into_record(self) -> Result<ArtifactRecord> {
        Ok(ArtifactRecord {
            run: RunId::from_db(&self.run_id)?,
            job: JobId(self.job_id),
            attempt: int(self.attempt, "artifact attempt")?,
            blob: self.blob,
            size: int(self.size, "artifact size")?,
            sha256: self.sha256,
            files: self.files.0,
            created_at: self.created_at,
            expired_at: self.expired_at,
        })
    }
}

/// `SELECT` of an [`ArtifactRow`]; append the `WHERE`.
macro_rules! artifact_select {
    ($rest:literal) => {
        concat!(
            "SELECT run_id, job_id, attempt, blob, size, sha256, files, created_at, expired_at \
             FROM artifacts ",
            $rest
        )
    };
}

/// Checks a hex SHA-256: 64 lower-case hex digits.
fn check_sha256(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "`{sha256}` is not a SHA-256: use 64 lower-case hex digits"
        )))
    }
}

impl Store {
    /// Records the artifacts a job uploaded, replacing the row of an earlier attempt of the
    /// same job (the replaced blob is no longer named by that row). `Conflict` if a later
    /// attempt's artifacts are already recorded; `NotFound` for a missing run; `Invalid` for an
    /// empty job id, an attempt 0, a blob path outside the blob directory or a bad SHA-256.
    pub async fn record_artifact(&self, new: &NewArtifact) -> Result<ArtifactRecord> {
        let (run, job) = (&new.run, &new.job);
        if job.as_str().is_empty() || new.attempt == 0 {
            return Err(StoreError::Invalid(format!(
                "artifacts of run {run} need a job id and an attempt from 1 (job `{job}`, attempt {})",
                new.attempt
            )));
        }
        check_blob(&format!("the artifacts of job `{job}` of run {run}"), &new.blob)?;
        check_sha256(&new.sha256)?;
        let size = db_int(new.size, "artifact size")?;
        let what = || format!("record the artifacts of job `{job}` of run {run}");
        // The WHERE makes a stale attempt a no-op, which RETURNING reports as no row.
        let row = with_write!(self, p => sqlx::query_as::<_, ArtifactRow>(
            "INSERT INTO artifacts (run_id, job_id, attempt, blob, size, sha256, files, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (run_id, job_id) DO UPDATE SET attempt = excluded.attempt, \
             blob = excluded.blob, size = excluded.size, sha256 = excluded.sha256, \
             files = excluded.files, created_at = excluded.created_at, expired_at = NULL \
             WHERE artifacts.attempt <= excluded.attempt \
             RETURNING run_id, job_id, attempt, blob, size, sha256, files, created_at, expired_at")
            .bind(run.text())
            .bind(job.as_str())
            .bind(i64::from(new.attempt))
            .bind(&new.blob)
            .bind(size)
            .bind(&new.sha256)
            .bind(Json(&new.files))
            .bind(now())
            .fetch_optional(p)
            .await);
        match row {
            Ok(Some(row)) => row.into_record(),
            Ok(None) => Err(StoreError::Conflict(format!(
                "job `{job}` of run {run} already has artifacts of a later attempt than {}",
                new.attempt
            ))),
            Err(e) if is_foreign_key(&e) => Err(StoreError::NotFound(format!("run {run}"))),
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The artifact records of a run, by job id, expired ones included. `NotFound` if the run
    /// does not exist.
    pub async fn artifacts(&self, run: &RunId) -> Result<Vec<ArtifactRecord>> {
        let what = || format!("list the artifacts of run {run}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ArtifactRow>(
            artifact_select!("WHERE run_id = $1 ORDER BY job_id"))
            .bind(run.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.run(run).await?;
        }
        rows.into_iter().map(ArtifactRow::into_record).collect()
    }

    /// The artifact record of job `job` of a run, perhaps expired. `NotFound` if the job has
    /// none (or the run does not exist).
    pub async fn artifact(&self, run: &RunId, job: &JobId) -> Result<ArtifactRecord> {
        let what = || format!("get the artifacts of job `{job}` of run {run}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ArtifactRow>(
            artifact_select!("WHERE run_id = $1 AND job_id = $2"))
            .bind(run.text())
            .bind(job.as_str())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("artifacts of job `{job}` of run {run}")))?
            .into_record()
    }

    /// Copies the artifact records of `jobs` from run `from` to run `to` (a retry reusing
    /// those jobs), in one transaction; the copies name the same blobs and keep their attempt
    /// and time. A job with no live artifacts in `from` (none, or expired) is skipped, and one
    /// that already has
    /// artifacts in `to` keeps them. Returns how many rows were copied. `NotFound` if either
    /// run does not exist.
    pub async fn copy_artifacts(&self, from: &RunId, to: &RunId, jobs: &[JobId]) -> Result<u64> {
        let what = || format!("copy artifacts from run {from} to run {to}");
        let copied = with_tx!(self, what, tx => {
            for run in [from, to] {
                let found: Option<String> = sqlx::query_scalar("SELECT id FROM runs WHERE id = $1")
                    .bind(run.text())
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
                if found.is_none() {
                    return Err(StoreError::NotFound(format!("run {run}")));
                }
            }
            let mut copied = 0;
            for job in jobs {
                let done = sqlx::query(
                    "INSERT INTO artifacts \
                     (run_id, job_id, attempt, blob, size, sha256, files, created_at) \
                     SELECT $2, job_id, attempt, blob, size, sha256, files, created_at \
                     FROM artifacts WHERE run_id = $1 AND job_id = $3 AND expired_at IS NULL \
                     ON CONFLICT (run_id, job_id) DO NOTHING")
                    .bind(from.text())
                    .bind(to.text())
                    .bind(job.as_str())
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?
                    .rows_affected();
                copied += done;
            }
            copied
        });
        Ok(copied)
    }

    /// Expires the artifacts of every run that ended before `ended_before` (runs still going
    /// keep theirs), in one transaction: their rows are marked expired, and the blobs they
    /// named that no live artifact or cache row still names are returned for the caller to
    /// delete (a retried run's copies keep a shared blob alive).
    pub async fn expire_artifacts(&self, ended_before: DateTime<Utc>) -> Result<ExpiredArtifacts> {
        let what = || "expire old artifacts".to_string();
        let expired = with_tx!(self, what, tx => {
            let ended: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
                "SELECT DISTINCT r.id, r.finished_at FROM artifacts a JOIN runs r ON r.id = a.run_id \
                 WHERE a.expired_at IS NULL AND r.finished_at IS NOT NULL")
                .fetch_all(&mut *tx)
                .await
                .ctx(what)?;
            let at = now();
            let mut records = Vec::new();
            for (run, _) in ended.iter().filter(|(_, f)| f.is_some_and(|f| f < ended_before)) {
                let rows = sqlx::query_as::<_, ArtifactRow>(
                    "UPDATE artifacts SET expired_at = $2 WHERE run_id = $1 AND expired_at IS NULL \
                     RETURNING run_id, job_id, attempt, blob, size, sha256, files, created_at, expired_at")
                    .bind(run)
                    .bind(at)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx(what)?;
                for row in rows {
                    records.push(row.into_record()?);
                }
            }
            let mut blobs: Vec<String> = records.iter().map(|r| r.blob.clone()).collect();
            blobs.sort();
            blobs.dedup();
            let mut unnamed_blobs = Vec::new();
            for blob in blobs {
                let named: Option<String> = sqlx::query_scalar(
                    "SELECT blob FROM artifacts WHERE blob = $1 AND expired_at IS NULL \
                     UNION ALL SELECT blob FROM caches WHERE blob = $1 LIMIT 1")
                    .bind(&blob)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
                if named.is_none() {
                    unnamed_blobs.push(blob);
                }
            }
            records.sort_by(|a, b| (a.run.text(), a.job.as_str()).cmp(&(b.run.text(), b.job.as_str())));
            ExpiredArtifacts { records, unnamed_blobs }
        });
        Ok(expired)
    }

    /// Every blob path a live record names: the caches' and the unexpired artifacts'. The
    /// garbage collector never deletes these.
    pub async fn named_blobs(&self) -> Result<Vec<String>> {
        let what = || "list the blobs records name".to_string();
        with_db!(&self.db, p => sqlx::query_scalar::<_, String>(
            "SELECT blob FROM artifacts WHERE expired_at IS NULL UNION SELECT blob FROM caches")
            .fetch_all(p)
            .await)
        .ctx(what)
    }
}
