//! Array jobs on the server: what the run's actor gathers of their indexes. Agents report
//! each index attempt (started, ended) as a [`IndexMsg`]; the actor gathers a batch's into
//! one `IndexesStarted` and one `IndexesExited` event per job ([`Gathered`]), so a step
//! stores a few events for hundreds of indexes, and no job record, row or log file exists
//! per index (an index's log file appears only if it prints).
//!
//! The indexes the engine hands out (its window) wait in a [`Feed`] until the dispatcher
//! has fewer than [`AHEAD`] of them not started, so a placement pass never walks thousands
//! of queued indexes.
//!
//! Invariant: the end of an index reported by its agent is acknowledged only once the step
//! holding it is stored (its `reply`); an index whose end was not stored is still in flight
//! in the stored events, so a restarted server hands it out again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use kiln_engine::{Event, IndexAttempt, IndexExit, Outcome, StartJob};
use kiln_workflow::plan::JobId;
use tokio::sync::oneshot;

use super::{RunMsg, RunTx};
use crate::error::ApiResult;

/// Where the reporter of an index's end hears that it is stored.
pub type Reply = oneshot::Sender<ApiResult<()>>;

/// News of one index attempt of an array job.
#[derive(Debug)]
pub enum IndexMsg {
    /// Its agent started it.
    Started {
        /// The array job.
        job: JobId,
        /// The index.
        index: u32,
        /// The index's attempt.
        attempt: u32,
    },
    /// It ended (reported, lost, canceled before it ran).
    Exited {
        /// The array job.
        job: JobId,
        /// The index.
        index: u32,
        /// The index's attempt.
        attempt: u32,
        /// How.
        outcome: Outcome,
        /// Answered once stored.
        reply: Option<Reply>,
    },
}

/// Tells a run's actor that an index attempt ended (the index's [`super::attempt_exited`]).
pub fn index_exited(
    actor: &RunTx,
    job: JobId,
    index: u32,
    attempt: u32,
    outcome: Outcome,
    reply: Option<Reply>,
) {
    let _ = actor.send(RunMsg::Index(IndexMsg::Exited { job, index, attempt, outcome, reply }));
}

/// When each index attempt in flight started (for the durations histogram); in memory
/// only: an index running across a restart runs again and is timed again.
#[derive(Debug, Default)]
pub(super) struct Clock {
    started: HashMap<(JobId, u32), Instant>,
}

/// A batch's index messages, gathered per job.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    started: BTreeMap<JobId, Vec<IndexAttempt>>,
    exited: BTreeMap<JobId, Vec<IndexExit>>,
    replies: Vec<Reply>,
}

impl Gathered {
    /// Adds one message, timing the index with `clock`.
    pub(super) fn push(&mut self, msg: IndexMsg, clock: &mut Clock) {
        match msg {
            IndexMsg::Started { job, index, attempt } => {
                clock.started.insert((job.clone(), index), Instant::now());
                self.started.entry(job).or_default().push(IndexAttempt { index, attempt });
            }
            IndexMsg::Exited { job, index, attempt, outcome, reply } => {
                let millis = clock
                    .started
                    .remove(&(job.clone(), index))
                    .map_or(0, |t| t.elapsed().as_millis() as u64);
                self.exited.entry(job).or_default().push(IndexExit {
                    index,
                    attempt,
                    outcome,
                    millis,
                });
                self.replies.extend(reply);
            }
        }
    }

    /// The events (starts before ends) and the replies to answer once they are stored.
    pub(super) fn finish(self) -> (Vec<Event>, Vec<Reply>) {
        let mut events: Vec<Event> = self
            .started
            .into_iter()
            .map(|(job, indexes)| Event::IndexesStarted { job, indexes })
            .collect();
        events.extend(
            self.exited.into_iter().map(|(job, exits)| Event::IndexesExited { job, exits }),
        );
        (events, self.replies)
    }
}

/// Most index attempts of a run's arrays given to the dispatcher and not started yet: the
/// dispatcher's queue holds at most this many of them whatever the window, so that each
/// placement pass stays short; the rest wait here, a few bytes each.
pub(super) const AHEAD: usize = 1024;

/// The index attempts the engine handed out, on their way to the dispatcher.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// Handed out by the engine, not yet given to the dispatcher, in order.
    held: VecDeque<(Arc<StartJob>, IndexAttempt)>,
    /// Given to the dispatcher, not started (nor ended) yet.
    unstarted: HashSet<(JobId, IndexAttempt)>,
}

impl Feed {
    /// Keeps index attempts of `start`'s job until there is room for them.
    pub(super) fn hold(&mut self, start: Arc<StartJob>, indexes: Vec<IndexAttempt>) {
        self.held.extend(indexes.into_iter().map(|ia| (start.clone(), ia)));
    }

    /// Notes what a message says of an index attempt given to the dispatcher.
    pub(super) fn note(&mut self, msg: &IndexMsg) {
        let (job, index, attempt) = match msg {
            IndexMsg::Started { job, index, attempt } => (job, index, attempt),
            IndexMsg::Exited { job, index, attempt, .. } => (job, index, attempt),
        };
        self.unstarted.remove(&(job.clone(), IndexAttempt { index: *index, attempt: *attempt }));
    }

    /// What may go to the dispatcher now (grouped by job, in order), counted as given.
    pub(super) fn take(&mut self) -> Vec<(Arc<StartJob>, Vec<IndexAttempt>)> {
        let room = AHEAD.saturating_sub(self.unstarted.len()).min(self.held.len());
        let mut out: Vec<(Arc<StartJob>, Vec<IndexAttempt>)> = Vec::new();
        for (start, ia) in self.held.drain(..room) {
            self.unstarted.insert((start.job.id.clone(), ia));
            match out.last_mut() {
                Some((s, list)) if Arc::ptr_eq(s, &start) => list.push(ia),
                _ => out.push((start, vec![ia])),
            }
        }
        out
    }

    /// Takes index attempts of `job` that were never given to the dispatcher out of the
    /// feed; returns those it took.
    pub(super) fn forget(&mut self, job: &JobId, indexes: &[IndexAttempt]) -> Vec<IndexAttempt> {
        let wanted: HashSet<IndexAttempt> = indexes.iter().copied().collect();
        let mut taken = Vec::new();
        self.held.retain(|(s, ia)| {
            let hit = &s.job.id == job && wanted.contains(ia);
            if hit {
                taken.push(*ia);
            }
            !hit
        });
        taken
    }
}
