//! Job cache records: per project, a key names a blob in the blob directory. A lookup marks the
//! entry used, so that eviction can drop the least recently used ones. The bytes live in the
//! blob directory, never here.

use chrono::{DateTime, Utc};

use crate::error::{Ctx, is_foreign_key};
use crate::model::{check_blob, db_int, int};
use crate::{CacheRecord, ProjectId, Result, Store, StoreError, now};

/// Longest cache key, in bytes.
const MAX_KEY: usize = 512;

#[derive(sqlx::FromRow)]
struct CacheRow {
    project_id: String,
    key: String,
    blob: String,
    size: i64,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
}

impl CacheRow {
    fn into_record(self) -> Result<CacheRecord> {
        Ok(CacheRecord {
            project_id: ProjectId::from_db(&self.project_id)?,
            key: self.key,
            blob: self.blob,
            size: int(self.size, "cache size")?,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}

/// Checks a cache key: 1 to 512 bytes, no control characters (keys are written in workflows,
/// often from expressions, so anything printable goes).
fn check_key(key: &str) -> Result<()> {
    if !key.is_empty() && key.len() <= MAX_KEY && !key.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "cache key `{}` is not valid: use 1 to {MAX_KEY} bytes without control characters",
            key.escape_debug()
        )))
    }
}

impl Store {
    /// Stores `blob` (a path relative to the blob directory, `size` bytes) as the cache `key`
    /// of a project, replacing what the key named (both times become now; the replaced blob
    /// is no longer named by this row). `NotFound` for a missing project; `Invalid` for a bad
    /// key or blob path.
    pub async fn put_cache(
        &self,
        project_id: &ProjectId,
        key: &str,
        blob: &str,
        size: u64,
    ) -> Result<CacheRecord> {
        check_key(key)?;
        check_blob(&format!("cache `{key}`"), blob)?;
        let size = db_int(size, "cache size")?;
        let what = || format!("store cache `{key}` of project {project_id}");
        let row = with_write!(self, p => sqlx::query_as::<_, CacheRow>(
            "INSERT INTO caches (project_id, key, blob, size, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (project_id, key) DO UPDATE SET blob = excluded.blob, \
             size = excluded.size, created_at = excluded.created_at, \
             last_used_at = excluded.last_used_at \
             RETURNING project_id, key, blob, size, created_at, last_used_at")
            .bind(project_id.text())
            .bind(key)
            .bind(blob)
            .bind(size)
            .bind(now())
            .fetch_one(p)
            .await);
        match row {
            Ok(row) => row.into_record(),
            Err(e) if is_foreign_key(&e) => {
                Err(StoreError::NotFound(format!("project {project_id}")))
            }
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The cache `key` of a project, marking it used now; `None` if there is none (also for a
    /// project that does not exist).
    pub async fn cache(&self, project_id: &ProjectId, key: &str) -> Result<Option<CacheRecord>> {
        let what = || format!("look up cache `{key}` of project {project_id}");
        let row = with_write!(self, p => sqlx::query_as::<_, CacheRow>(
            "UPDATE caches SET last_used_at = $3 WHERE project_id = $1 AND key = $2 \
             RETURNING project_id, key, blob, size, created_at, last_used_at")
            .bind(project_id.text())
            .bind(key)
            .bind(now())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(CacheRow::into_record).transpose()
    }

    /// The caches of a project, by key. `NotFound` if the project does not exist.
    pub async fn caches(&self, project_id: &ProjectId) -> Result<Vec<CacheRecord>> {
        let what = || format!("list caches of project {project_id}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, CacheRow>(
            "SELECT project_id, key, blob, size, created_at, last_used_at FROM caches \
             WHERE project_id = $1 ORDER BY key")
            .bind(project_id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            let found: Option<String> = with_db!(&self.db, p =>
                sqlx::query_scalar("SELECT id FROM projects WHERE id = $1")
                    .bind(project_id.text())
                    .fetch_optional(p)
                    .await)
            .ctx(what)?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("project {project_id}")));
            }
        }
        rows.into_iter().map(CacheRow::into_record).collect()
    }

    /// Every project's caches, least recently used first (the garbage collector's view).
    pub async fn all_caches(&self) -> Result<Vec<CacheRecord>> {
        let what = || "list all caches".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, CacheRow>(
            "SELECT project_id, key, blob, size, created_at, last_used_at FROM caches \
             ORDER BY last_used_at, project_id, key")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(CacheRow::into_record).collect()
    }

    /// Removes these cache records, each only if its key still names the same blob (a cache
    /// stored again meanwhile stays), in one transaction. Returns the records removed: their
    /// blobs are the caller's to delete.
    pub async fn remove_caches(&self, caches: &[CacheRecord]) -> Result<Vec<CacheRecord>> {
        let what = || format!("remove {} cache(s)", caches.len());
        if caches.is_empty() {
            return Ok(Vec::new());
        }
        let removed = with_tx!(self, what, tx => {
            let mut removed = Vec::new();
            for c in caches {
                let row = sqlx::query_as::<_, CacheRow>(
                    "DELETE FROM caches WHERE project_id = $1 AND key = $2 AND blob = $3 \
                     RETURNING project_id, key, blob, size, created_at, last_used_at")
                    .bind(c.project_id.text())
                    .bind(&c.key)
                    .bind(&c.blob)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
                if let Some(row) = row {
                    removed.push(row.into_record()?);
                }
            }
            removed
        });
        Ok(removed)
    }

    /// The caches of every project: how many, and their total size in bytes.
    pub async fn cache_usage(&self) -> Result<(u64, u64)> {
        let what = || "sum the caches' sizes".to_string();
        let (n, bytes): (i64, i64) = with_db!(&self.db, p => sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM caches")
            .fetch_one(p)
            .await)
        .ctx(what)?;
        Ok((int(n, "cache count")?, int(bytes, "cache bytes")?))
    }
}
