//! Run events for people and other systems: a run started, waits for approval, ended. They
//! are decided from a run's state before and after a step ([`RunEventKind::between`]), written
//! to the webhook outbox in the step's own transaction (`Store::record_step`), and returned to
//! the server, which streams them (`GET /api/v1/runs/events`).

use chrono::{DateTime, Utc};
use kiln_engine::RunState;
use serde::{Deserialize, Serialize};

use crate::{Run, RunId};

/// What happened to a run. The JSON names are `run.started`, `run.waiting`,
/// `run.succeeded`, `run.failed`, `run.canceled` and `run.timed_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunEventKind {
    /// It left `pending`: its first jobs are being placed or run.
    #[serde(rename = "run.started")]
    Started,
    /// It waits at an approval stage.
    #[serde(rename = "run.waiting")]
    Waiting,
    /// Every job succeeded or was skipped.
    #[serde(rename = "run.succeeded")]
    Succeeded,
    /// A job failed (or the run could not start).
    #[serde(rename = "run.failed")]
    Failed,
    /// Canceled, or an approval was rejected.
    #[serde(rename = "run.canceled")]
    Canceled,
    /// The run's own timeout fired.
    #[serde(rename = "run.timed_out")]
    TimedOut,
}

impl RunEventKind {
    /// Every kind, in the order a run may go through them.
    pub const ALL: [RunEventKind; 6] = [
        RunEventKind::Started,
        RunEventKind::Waiting,
        RunEventKind::Succeeded,
        RunEventKind::Failed,
        RunEventKind::Canceled,
        RunEventKind::TimedOut,
    ];

    /// The JSON name, e.g. `run.failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEventKind::Started => "run.started",
            RunEventKind::Waiting => "run.waiting",
            RunEventKind::Succeeded => "run.succeeded",
            RunEventKind::Failed => "run.failed",
            RunEventKind::Canceled => "run.canceled",
            RunEventKind::TimedOut => "run.timed_out",
        }
    }

    /// The events of a run going from `before` to `after`, in order: leaving `pending` starts
    /// it (unless it ends at once: a run canceled while queued never started), entering
    /// `paused` is `run.waiting`, a final state ends it. Moves between `scheduling`, `running`
    /// and back from `paused` are no event.
    pub fn between(before: RunState, after: RunState) -> Vec<RunEventKind> {
        let mut out = Vec::new();
        if before == after {
            return out;
        }
        if before == RunState::Pending && !after.is_final() {
            out.push(RunEventKind::Started);
        }
        match after {
            RunState::Paused => out.push(RunEventKind::Waiting),
            RunState::Success => out.push(RunEventKind::Succeeded),
            RunState::Failure => out.push(RunEventKind::Failed),
            RunState::Canceled => out.push(RunEventKind::Canceled),
            RunState::Timeout => out.push(RunEventKind::TimedOut),
            RunState::Pending | RunState::Scheduling | RunState::Running => {}
        }
        out
    }
}

/// One run event: the JSON body POSTed to a project's `run` webhooks, and what
/// `GET /api/v1/runs/events` streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunNotice {
    /// What happened.
    pub event: RunEventKind,
    /// The run as it is after it happened.
    pub run: NoticeRun,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// The run a [`RunNotice`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRun {
    /// Id.
    pub id: RunId,
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Number within the pipeline.
    pub number: u64,
    /// State after the event.
    pub state: RunState,
    /// Why it ended or paused, for people.
    pub reason: Option<String>,
    /// Who or what started it.
    pub triggered_by: String,
    /// Where people see it, when the server knows its public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl NoticeRun {
    /// The fields of `run`.
    pub fn of(run: &Run) -> NoticeRun {
        NoticeRun {
            id: run.id,
            project: run.project.clone(),
            pipeline: run.pipeline.clone(),
            number: run.number,
            state: run.state,
            reason: run.reason.clone(),
            triggered_by: run.triggered_by.clone(),
            url: None,
        }
    }
}

/// What [`crate::Store::record_step_notified`] stored: the events' sequence numbers and the
/// run events the step caused (already in the webhook outbox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The appended engine events' sequence numbers.
    pub seqs: Vec<u64>,
    /// The run events, in order.
    pub notices: Vec<RunNotice>,
    /// The usage records the step completed (attempts that ended), each once.
    pub usage: Vec<crate::UsageRecord>,
}

#[cfg(test)]
mod tests {
    use super::RunEventKind::*;
    use super::*;

    #[test]
    fn events_between_states() {
        use RunState as S;
        assert_eq!(RunEventKind::between(S::Pending, S::Scheduling), [Started]);
        assert_eq!(RunEventKind::between(S::Pending, S::Paused), [Started, Waiting]);
        assert_eq!(RunEventKind::between(S::Pending, S::Canceled), [Canceled]);
        assert_eq!(RunEventKind::between(S::Scheduling, S::Running), []);
        assert_eq!(RunEventKind::between(S::Running, S::Paused), [Waiting]);
        assert_eq!(RunEventKind::between(S::Paused, S::Running), []);
        assert_eq!(RunEventKind::between(S::Running, S::Failure), [Failed]);
        assert_eq!(RunEventKind::between(S::Running, S::Timeout), [TimedOut]);
        assert_eq!(RunEventKind::between(S::Running, S::Success), [Succeeded]);
        for k in RunEventKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }
}
