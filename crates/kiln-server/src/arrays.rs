//! Array jobs' progress as the API shows it: the engine's counts with the failed indexes
//! as ranges, the first failures' reasons and the durations histogram with its bounds.
//! Written to the store (`job_arrays`) with each step that changed it, read by the run's
//! detail; the engine's per-index state never leaves the run's actor.

use kiln_api::{ArrayProgress, DurationBucket, IndexFailure};
use kiln_workflow::plan::ArraySpec;

/// The API's view of an array's progress.
pub fn progress(p: &kiln_engine::ArrayProgress) -> ArrayProgress {
    ArrayProgress {
        size: p.size,
        parallelism: p.window,
        succeeded: p.succeeded,
        failed: p.failed,
        canceled: p.canceled,
        running: p.running,
        queued: p.queued,
        pending: p.pending,
        retries: p.retries,
        failed_indexes: p.failed_ranges(),
        failures: p
            .failed_indexes
            .iter()
            .filter(|f| f.reason.is_some())
            .take(kiln_engine::KEPT_REASONS)
            .map(|f| IndexFailure {
                index: f.index,
                attempts: f.attempts,
                reason: f.reason.clone(),
            })
            .collect(),
        durations: histogram(&p.histogram),
    }
}

/// The buckets of a histogram counted over [`kiln_engine::DURATION_BUCKETS_MS`].
fn histogram(counts: &[u32]) -> Vec<DurationBucket> {
    counts
        .iter()
        .enumerate()
        .map(|(i, &count)| DurationBucket {
            le_ms: kiln_engine::DURATION_BUCKETS_MS.get(i).copied(),
            count,
        })
        .collect()
}

/// The progress of an array that has not started: every index pending.
pub fn not_started(spec: ArraySpec) -> ArrayProgress {
    ArrayProgress {
        size: spec.size,
        parallelism: spec
            .parallelism
            .unwrap_or(kiln_engine::ARRAY_WINDOW)
            .min(kiln_engine::ARRAY_WINDOW),
        pending: spec.size,
        durations: histogram(&[0; kiln_engine::DURATION_BUCKETS_MS.len() + 1]),
        ..ArrayProgress::default()
    }
}
