//! Garbage collection of the archives (the object store's `artifacts/` and `caches/`, in the
//! data directory or on S3): caches evicted (past their age, then least
//! recently used first until under the size budget), artifacts of long-ended runs expired,
//! and objects no record names (replaced caches and artifacts, uploads whose record was never
//! written) deleted once older than a grace window. Run by a periodic task and by `POST /api/v1/gc`.
//!
//! Order: records are removed in the store first, then the files they named; a file is
//! deleted only if no live record names it at that moment, so a blob a live record names is
//! never removed. Which caches go is decided by [`caches_to_evict`], pure (time is a
//! parameter).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kiln_api::GcReport;
use kiln_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Limits of the garbage collector ([`crate::ServerConfig::gc`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// Total size of all projects' caches, in bytes; the least recently used go first.
    pub cache_max_size: u64,
    /// A cache not used for this long is evicted.
    pub cache_max_age: Duration,
    /// The artifacts of a run that ended longer ago than this are removed.
    pub artifact_max_age: Duration,
    /// Files no record names are kept this long after their last write (an upload in flight
    /// has no record yet).
    pub blob_gc_grace: Duration,
    /// Time between two passes of the periodic task (one also runs at start).
    pub every: Duration,
}

impl Default for GcConfig {
    /// 10 GiB of caches, caches and artifacts kept 30 days, a grace of one hour, a pass every
    /// ten minutes.
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        GcConfig {
            cache_max_size: 10 << 30,
            cache_max_age: Duration::from_secs(30 * DAY),
            artifact_max_age: Duration::from_secs(30 * DAY),
            blob_gc_grace: Duration::from_secs(3600),
            every: Duration::from_secs(600),
        }
    }
}

/// A cache as [`caches_to_evict`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUse {
    /// Bytes.
    pub size: u64,
    /// When it was last stored or restored.
    pub last_used_at: DateTime<Utc>,
}

/// Which caches to evict, as indices into `caches`, least recently used first: every one not
/// used for `max_age` or longer at `now`, then, oldest use first (ties: the order given), as
/// many as it takes to bring the total size down to `budget` or below.
pub fn caches_to_evict(
    caches: &[CacheUse],
    budget: u64,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..caches.len()).collect();
    order.sort_by_key(|&i| caches[i].last_used_at);
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    let mut total: u64 = caches.iter().map(|c| c.size).sum();
    let mut evict = Vec::new();
    for i in order {
        let c = caches[i];
        let too_old = now.signed_duration_since(c.last_used_at) >= max_age;
        if too_old || total > budget {
            total -= c.size;
            evict.push(i);
        }
    }
    evict
}

/// A duration the way flags take it: `30d`, `12h`, `90m`, `45s` (the largest unit that
/// divides it).
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store could not be listed or an object not deleted.
    #[error("object store: {0}")]
    Io(String),
}

/// Serializes passes (the periodic task and the API's), so that two never race.
#[derive(Debug, Default)]
pub struct GcLock(tokio::sync::Mutex<()>);

/// One pass at `now`: evicts caches, expires artifacts, deletes the files no live record
/// names (theirs, and orphans older than the grace), and updates the metrics.
pub async fn collect(app: &App) -> Result<GcReport, GcError> {
    let _pass = app.gc_lock.0.lock().await;
    let config = &app.gc;
    let now = Utc::now();
    let names: std::collections::HashMap<_, _> =
        app.store.projects().await?.into_iter().map(|p| (p.id, p.name)).collect();

    let caches = app.store.all_caches().await?;
    let uses: Vec<CacheUse> =
        caches.iter().map(|c| CacheUse { size: c.size, last_used_at: c.last_used_at }).collect();
    let chosen: Vec<_> = caches_to_evict(&uses, config.cache_max_size, config.cache_max_age, now)
        .into_iter()
        .map(|i| caches[i].clone())
        .collect();
    let evicted = app.store.remove_caches(&chosen).await?;
    let cutoff = now - chrono::Duration::from_std(config.artifact_max_age).unwrap_or_default();
    let expired = app.store.expire_artifacts(cutoff).await?;

    // The records are gone; delete their files unless a live record names them now.
    let named: HashSet<String> = app.store.named_blobs().await?.into_iter().collect();
    let mut doomed: Vec<String> = evicted.iter().map(|c| c.blob.clone()).collect();
    doomed.extend(expired.unnamed_blobs.iter().cloned());
    doomed.retain(|b| !named.contains(b));
    let objects = app.blobs.objects();
    let io = |e: std::io::Error| GcError::Io(format!("{}: {e}", objects.describe()));
    let mut freed = 0;
    for rel in &doomed {
        if let Some(meta) = objects.head(rel).await.map_err(io)? {
            objects.delete(rel).await.map_err(io)?;
            freed += meta.size;
        }
    }
    let (orphans, orphan_bytes) =
        sweep(&**objects, &named, config.blob_gc_grace, SystemTime::now()).await.map_err(io)?;

    let (_, cache_bytes) = app.store.cache_usage().await?;
    let m = &app.metrics;
    m.cache_bytes.set(i64::try_from(cache_bytes).unwrap_or(i64::MAX));
    m.gc_removed(evicted.len() as u64, expired.records.len() as u64, orphans, freed + orphan_bytes);
    let project = |c: &kiln_store::CacheRecord| {
        names.get(&c.project_id).cloned().unwrap_or_else(|| c.project_id.to_string())
    };
    Ok(GcReport {
        caches: evicted.iter().map(|c| format!("{}/{}", project(c), c.key)).collect(),
        artifacts: expired.records.iter().map(|a| format!("{}/{}", a.run, a.job)).collect(),
        orphans,
        bytes_freed: freed + orphan_bytes,
        cache_bytes,
        cache_budget: config.cache_max_size,
    })
}

/// Deletes the archives (under `artifacts/` and `caches/`) that `named` does not list and
/// that were last written before `now - grace`; returns how many and their bytes.
async fn sweep(
    objects: &dyn kiln_objstore::Objects,
    named: &HashSet<String>,
    grace: Duration,
    now: SystemTime,
) -> std::io::Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    for part in ["artifacts", "caches"] {
        for object in objects.list(part).await? {
            let old = now.duration_since(object.modified).is_ok_and(|age| age >= grace);
            if named.contains(&object.key) || !old {
                continue;
            }
            objects.delete(&object.key).await?;
            count += 1;
            bytes += object.size;
        }
    }
    Ok((count, bytes))
}

/// The periodic task: a pass at start, then one every [`GcConfig::every`]; what it removed is
/// logged.
pub fn spawn(app: App, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(app.gc.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match collect(&app).await {
                Ok(r) if r.caches.is_empty() && r.artifacts.is_empty() && r.orphans == 0 => {}
                Ok(r) => tracing::info!(
                    "gc: {} cache(s) evicted, {} artifact(s) expired, {} orphan file(s), {} bytes freed",
                    r.caches.len(),
                    r.artifacts.len(),
                    r.orphans,
                    r.bytes_freed
                ),
                Err(e) => tracing::warn!("gc: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{CacheUse, caches_to_evict};
    use chrono::{DateTime, Duration as Days, TimeZone, Utc};
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn used(days_ago: i64, size: u64) -> CacheUse {
        CacheUse { size, last_used_at: now() - Days::days(days_ago) }
    }

    #[test]
    fn under_the_budget_and_young_nothing_goes() {
        let caches = [used(1, 10), used(2, 20), used(0, 30)];
        assert!(caches_to_evict(&caches, 60, 30 * DAY, now()).is_empty());
        assert!(caches_to_evict(&[], 0, 30 * DAY, now()).is_empty());
    }

    #[test]
    fn over_the_budget_the_least_recently_used_go_first_until_under() {
        // Used 5, 1, 3 and 9 days ago; 100 bytes each; budget 250: the two oldest go.
        let caches = [used(5, 100), used(1, 100), used(3, 100), used(9, 100)];
        assert_eq!(caches_to_evict(&caches, 250, 30 * DAY, now()), [3, 0]);
        // Exactly at the budget is under it.
        assert_eq!(caches_to_evict(&caches, 300, 30 * DAY, now()), [3]);
        // A budget of 0 evicts everything, oldest first.
        assert_eq!(caches_to_evict(&caches, 0, 30 * DAY, now()), [3, 0, 2, 1]);
    }

    #[test]
    fn a_big_recent_cache_can_push_out_several_small_old_ones() {
        let caches = [used(4, 10), used(3, 10), used(2, 10), used(0, 95)];
        assert_eq!(caches_to_evict(&caches, 100, 30 * DAY, now()), [0, 1, 2]);
    }

    #[test]
    fn everything_past_its_age_goes_even_under_the_budget() {
        let caches = [used(31, 1), used(30, 1), used(29, 1), used(0, 1)];
        assert_eq!(caches_to_evict(&caches, u64::MAX, 30 * DAY, now()), [0, 1]);
        // Age and budget together: the old ones, then the oldest of the rest.
        let caches = [used(40, 50), used(10, 50), used(5, 50), used(1, 50)];
        assert_eq!(caches_to_evict(&caches, 100, 30 * DAY, now()), [0, 1]);
        assert_eq!(caches_to_evict(&caches, 60, 30 * DAY, now()), [0, 1, 2]);
    }

    #[test]
    fn durations_are_shown_in_their_largest_whole_unit() {
        assert_eq!(super::short(30 * DAY), "30d");
        assert_eq!(super::short(Duration::from_secs(7200)), "2h");
        assert_eq!(super::short(Duration::from_secs(90)), "90s");
        assert_eq!(super::short(Duration::from_secs(120)), "2m");
        assert_eq!(super::short(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn ties_keep_the_order_given_and_a_future_use_is_young() {
        let caches = [used(2, 10), used(2, 10), used(-1, 10)];
        assert_eq!(caches_to_evict(&caches, 10, DAY, now()), [0, 1]);
    }
}
