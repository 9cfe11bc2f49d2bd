//! Job arrays (`array: N`): one job of the plan run once per index, `0..N`, kept as ranges
//! and counters, never as N jobs.
//!
//! Indexes are handed out in order: every index below `next` has been started at least
//! once, every index from `next` on is pending. What is in flight (at most the window:
//! `parallelism`, else [`ARRAY_WINDOW`]), what waits for a retry and what failed are the
//! only per-index records, so a 1,000,000-index array costs a few counters until its
//! indexes run. A driver hears of indexes through [`crate::Command::StartIndexes`] and
//! answers with [`crate::Event::IndexesStarted`] and [`crate::Event::IndexesExited`], which
//! it may batch: one event for many indexes.
//!
//! Invariants: an index is in flight at most once; an index that succeeded or failed for
//! good is never handed out again; an index is started at most `1 + retry.max` times.

use std::collections::{BTreeMap, VecDeque};

use kiln_workflow::plan::{ArraySpec, RetryOn, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::{JobState, Outcome, StartJob};

/// Most indexes of one array queued or running at once when it has no `parallelism`
/// (and the cap of a larger one): what the driver's queue holds of it, however big it is.
pub const ARRAY_WINDOW: u32 = 4096;

/// Upper bounds of the duration histogram's buckets, in milliseconds; a last bucket holds
/// what is longer.
pub const DURATION_BUCKETS_MS: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000];

/// Failed indexes whose reason is kept (the first ones, by index); the others keep their
/// number and attempts only.
pub const KEPT_REASONS: usize = 100;

/// One attempt of one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexAttempt {
    /// The index, `0..size`.
    #[serde(rename = "i")]
    pub index: u32,
    /// Its attempt, from 1.
    #[serde(rename = "a")]
    pub attempt: u32,
}

/// How one attempt of one index ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexExit {
    /// The index, `0..size`.
    #[serde(rename = "i")]
    pub index: u32,
    /// Its attempt.
    #[serde(rename = "a")]
    pub attempt: u32,
    /// How it ended.
    #[serde(rename = "o")]
    pub outcome: Outcome,
    /// How long it ran, as the driver measured it (0 when unknown).
    #[serde(rename = "ms", default)]
    pub millis: u64,
}

/// A failed index, as [`ArrayProgress`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedIndex {
    /// The index.
    pub index: u32,
    /// Attempts it had.
    pub attempts: u32,
    /// Why its last attempt failed (kept for the first [`KEPT_REASONS`] failed indexes).
    pub reason: Option<String>,
}

/// Where an array stands, for people and the store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArrayProgress {
    /// Indexes in all.
    pub size: u32,
    /// At most this many in flight at once (`parallelism`, or the window).
    pub window: u32,
    /// Indexes that succeeded.
    pub succeeded: u32,
    /// Indexes that failed (or timed out) with no retry left.
    pub failed: u32,
    /// Indexes canceled (never started, or stopped) when the run stopped.
    pub canceled: u32,
    /// Indexes running now.
    pub running: u32,
    /// Indexes handed to the driver, not started yet.
    pub queued: u32,
    /// Indexes not handed out yet (retries waiting included).
    pub pending: u32,
    /// Attempts started beyond each index's first.
    pub retries: u32,
    /// Failed indexes, by index.
    pub failed_indexes: Vec<FailedIndex>,
    /// How many index attempts that ended took how long: one count per bucket of
    /// [`DURATION_BUCKETS_MS`], then the longer ones.
    pub histogram: Vec<u32>,
}

impl ArrayProgress {
    /// Indexes that ended for good (succeeded, failed, canceled).
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.canceled
    }

    /// The failed indexes as ranges, `3,17-19` (Slurm's notation); empty when none failed.
    pub fn failed_ranges(&self) -> String {
        ranges(self.failed_indexes.iter().map(|f| f.index))
    }
}

/// Sorted numbers as ranges: `0-2,5,7-8`.
pub fn ranges(sorted: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let flush = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}-{b}"));
        }
    };
    for n in sorted {
        run = match run {
            Some((a, b)) if n == b + 1 => Some((a, n)),
            Some(r) => {
                flush(&mut out, r);
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

/// The bucket of [`DURATION_BUCKETS_MS`] a duration falls in.
pub fn bucket(millis: u64) -> usize {
    DURATION_BUCKETS_MS.iter().position(|&b| millis <= b).unwrap_or(DURATION_BUCKETS_MS.len())
}

/// The engine's state of one array job.
#[derive(Debug, Clone)]
pub(crate) struct ArrayRun {
    spec: ArraySpec,
    /// The job rendered once when it started; every index runs it.
    pub(crate) template: Option<Box<StartJob>>,
    /// Indexes below it were handed out at least once.
    next: u32,
    /// Indexes whose next attempt waits to be handed out, in the order they failed.
    retry: VecDeque<IndexAttempt>,
    /// Indexes in flight: index -> (attempt, running).
    active: BTreeMap<u32, (u32, bool)>,
    succeeded: u32,
    canceled: u32,
    retries: u32,
    /// Failed indexes: index -> attempts.
    failed: BTreeMap<u32, u32>,
    /// Reasons of the first [`KEPT_REASONS`] failed indexes.
    reasons: BTreeMap<u32, String>,
    histogram: [u32; DURATION_BUCKETS_MS.len() + 1],
    /// Set once the run stopped: nothing more is handed out.
    stopped: bool,
}

impl ArrayRun {
    pub(crate) fn new(spec: ArraySpec) -> ArrayRun {
        ArrayRun {
            spec,
            template: None,
            next: 0,
            retry: VecDeque::new(),
            active: BTreeMap::new(),
            succeeded: 0,
            canceled: 0,
            retries: 0,
            failed: BTreeMap::new(),
            reasons: BTreeMap::new(),
            histogram: [0; DURATION_BUCKETS_MS.len() + 1],
            stopped: false,
        }
    }

    fn window(&self) -> usize {
        self.spec.parallelism.unwrap_or(ARRAY_WINDOW).clamp(1, ARRAY_WINDOW) as usize
    }

    /// Hands out indexes until the window is full: retries first, then the next ones.
    pub(crate) fn fill(&mut self) -> Vec<IndexAttempt> {
        let mut out = Vec::new();
        while !self.stopped && self.active.len() < self.window() {
            let next = match self.retry.pop_front() {
                Some(r) => {
                    self.retries += 1;
                    r
                }
                None if self.next < self.spec.size => {
                    self.next += 1;
                    IndexAttempt { index: self.next - 1, attempt: 1 }
                }
                None => break,
            };
            self.active.insert(next.index, (next.attempt, false));
            out.push(next);
        }
        out
    }

    /// An index attempt started; false if it is not in flight (stale, or already running).
    pub(crate) fn started(&mut self, ia: IndexAttempt) -> bool {
        match self.active.get_mut(&ia.index) {
            Some((attempt, running)) if *attempt == ia.attempt && !*running => {
                *running = true;
                true
            }
            _ => false,
        }
    }

    /// An index attempt ended: count it, or queue its retry under `retry` unless the run
    /// is stopping. Ignored unless it is in flight.
    pub(crate) fn exited(&mut self, exit: &IndexExit, retry: &RetryPolicy) {
        match self.active.get(&exit.index) {
            Some((attempt, _)) if *attempt == exit.attempt => {}
            _ => return,
        }
        self.active.remove(&exit.index);
        self.histogram[bucket(exit.millis)] += 1;
        let (kind, reason) = match &exit.outcome {
            Outcome::Exited(0) => {
                self.succeeded += 1;
                return;
            }
            Outcome::Exited(n) => (RetryOn::Failure, format!("exited with code {n}")),
            Outcome::Killed { code, why } => {
                (RetryOn::Failure, format!("{why} (exit code {code})"))
            }
            Outcome::TimedOut => (RetryOn::Timeout, "timed out".to_owned()),
            Outcome::Error(msg) => (RetryOn::Error, msg.clone()),
            Outcome::Canceled => {
                self.canceled += 1;
                return;
            }
        };
        if !self.stopped && retry.on.contains(&kind) && exit.attempt <= retry.max {
            self.retry.push_back(IndexAttempt { index: exit.index, attempt: exit.attempt + 1 });
            return;
        }
        self.failed.insert(exit.index, exit.attempt);
        if self.reasons.len() < KEPT_REASONS {
            let reason = if exit.attempt > 1 {
                format!("{reason} after {} attempts", exit.attempt)
            } else {
                reason
            };
            self.reasons.insert(exit.index, reason);
        }
    }

    /// The run stopped: nothing more is handed out, what was not is canceled; returns what
    /// is in flight, to cancel.
    pub(crate) fn halt(&mut self) -> Vec<IndexAttempt> {
        if !self.stopped {
            self.stopped = true;
            self.canceled += (self.spec.size - self.next) + self.retry.len() as u32;
            self.next = self.spec.size;
            self.retry.clear();
        }
        self.in_flight()
    }

    /// Every index attempt in flight, by index.
    pub(crate) fn in_flight(&self) -> Vec<IndexAttempt> {
        self.active.iter().map(|(&index, &(attempt, _))| IndexAttempt { index, attempt }).collect()
    }

    /// Every index ended for good.
    pub(crate) fn finished(&self) -> bool {
        self.next >= self.spec.size && self.retry.is_empty() && self.active.is_empty()
    }

    /// The job's final state and reason once [`ArrayRun::finished`]; `stop` is why the run
    /// stopped, if it did.
    pub(crate) fn outcome(&self, stop: Option<String>) -> (JobState, Option<String>) {
        let size = self.spec.size;
        if !self.failed.is_empty() {
            let first = self.failed.keys().next().copied().unwrap_or_default();
            let why = self.reasons.get(&first).cloned().unwrap_or_default();
            let list = ranges(self.failed.keys().copied().take(20));
            let more = if self.failed.len() > 20 { ",…" } else { "" };
            return (
                JobState::Failure,
                Some(format!(
                    "{} of {size} indexes failed ({list}{more}); index {first}: {why}",
                    self.failed.len()
                )),
            );
        }
        if self.canceled > 0 {
            let why = stop.unwrap_or_else(|| "canceled by the executor".to_owned());
            return (
                JobState::Canceled,
                Some(format!("{why}: {} of {size} indexes canceled", self.canceled)),
            );
        }
        (JobState::Success, None)
    }

    /// Where it stands.
    pub(crate) fn progress(&self) -> ArrayProgress {
        let running = self.active.values().filter(|(_, r)| *r).count() as u32;
        ArrayProgress {
            size: self.spec.size,
            window: self.window() as u32,
            succeeded: self.succeeded,
            failed: self.failed.len() as u32,
            canceled: self.canceled,
            running,
            queued: self.active.len() as u32 - running,
            pending: (self.spec.size - self.next) + self.retry.len() as u32,
            retries: self.retries,
            failed_indexes: self
                .failed
                .iter()
                .map(|(&index, &attempts)| FailedIndex {
                    index,
                    attempts,
                    reason: self.reasons.get(&index).cloned(),
                })
                .collect(),
            histogram: self.histogram.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32, parallelism: Option<u32>) -> ArraySpec {
        ArraySpec { size, parallelism }
    }

    fn exit(index: u32, attempt: u32, code: i32) -> IndexExit {
        IndexExit { index, attempt, outcome: Outcome::Exited(code), millis: 10 }
    }

    #[test]
    fn ranges_are_written_as_slurm_writes_them() {
        assert_eq!(ranges([]), "");
        assert_eq!(ranges([4]), "4");
        assert_eq!(ranges([0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn the_window_holds_at_most_parallelism_and_indexes_go_in_order() {
        let mut a = ArrayRun::new(spec(10, Some(3)));
        let first = a.fill();
        assert_eq!(first.iter().map(|i| i.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(a.fill().is_empty(), "the window is full");
        a.exited(&exit(1, 1, 0), &RetryPolicy::default());
        assert_eq!(a.fill(), [IndexAttempt { index: 3, attempt: 1 }]);
        let p = a.progress();
        assert_eq!((p.succeeded, p.queued, p.pending), (1, 3, 6));
    }

    #[test]
    fn a_failed_index_is_retried_under_the_job_policy_then_counted_failed() {
        let mut a = ArrayRun::new(spec(2, None));
        a.fill();
        let retry = RetryPolicy { max: 1, ..RetryPolicy::default() };
        a.exited(&exit(0, 1, 3), &retry);
        assert_eq!(a.fill(), [IndexAttempt { index: 0, attempt: 2 }]);
        a.exited(&exit(0, 2, 3), &retry);
        a.exited(&exit(1, 1, 0), &retry);
        assert!(a.finished());
        let p = a.progress();
        assert_eq!((p.succeeded, p.failed, p.retries), (1, 1, 1));
        assert_eq!(p.failed_ranges(), "0");
        let (state, reason) = a.outcome(None);
        assert_eq!(state, JobState::Failure);
        assert_eq!(
            reason.unwrap(),
            "1 of 2 indexes failed (0); index 0: exited with code 3 after 2 attempts"
        );
    }

    #[test]
    fn stale_and_repeated_reports_change_nothing() {
        let mut a = ArrayRun::new(spec(1, None));
        a.fill();
        assert!(a.started(IndexAttempt { index: 0, attempt: 1 }));
        assert!(!a.started(IndexAttempt { index: 0, attempt: 1 }));
        a.exited(&exit(0, 2, 0), &RetryPolicy::default());
        assert!(!a.finished());
        a.exited(&exit(0, 1, 0), &RetryPolicy::default());
        a.exited(&exit(0, 1, 0), &RetryPolicy::default());
        assert_eq!(a.progress().succeeded, 1);
        assert!(a.finished());
    }

    #[test]
    fn a_halt_cancels_what_was_not_handed_out_and_returns_what_flies() {
        let mut a = ArrayRun::new(spec(100, Some(2)));
        a.fill();
        let flying = a.halt();
        assert_eq!(flying.len(), 2);
        assert!(a.fill().is_empty());
        assert_eq!(a.progress().canceled, 98);
        for f in flying {
            a.exited(
                &IndexExit {
                    index: f.index,
                    attempt: f.attempt,
                    outcome: Outcome::Canceled,
                    millis: 0,
                },
                &RetryPolicy::default(),
            );
        }
        assert!(a.finished());
        assert_eq!(a.outcome(Some("run canceled by ann".into())).0, JobState::Canceled);
    }

    #[test]
    fn durations_fall_in_their_buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(100), 0);
        assert_eq!(bucket(101), 1);
        assert_eq!(bucket(u64::MAX), DURATION_BUCKETS_MS.len());
    }
}
