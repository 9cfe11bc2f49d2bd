//! The run state machine: events in, commands out. No I/O, no clock, no randomness.
//!
//! A driver (the local runner of `kiln run`, later the server) owns a [`Run`], feeds it every
//! [`Event`] it observes, and carries out the [`Command`]s it returns. Feeding the same events
//! to a new `Run` of the same plan gives the same state and the same commands: that is how a
//! run is replayed after a restart.
//!
//! Invariants:
//! - a job is started only when every job in its `needs` has ended and its gate (if any) was
//!   approved;
//! - a job is started at most `1 + retry.max` times;
//! - every run ends in exactly one final state, announced by exactly one `Command::Finish`;
//! - after cancel or reject nothing new starts, and every running job gets `CancelJob`;
//! - a job announced with [`Event::JobReused`] before the run started never gets `StartJob`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_workflow::plan::{Job, JobId, ParamValue, Plan};
use serde::{Deserialize, Serialize};

mod array;
mod graph;
mod run;
mod scope;

pub use array::{
    ARRAY_WINDOW, ArrayProgress, DURATION_BUCKETS_MS, FailedIndex, IndexAttempt, IndexExit,
    KEPT_REASONS, bucket, ranges,
};
pub use run::{Approval, Decision, GateState, JobCounts, REUSED_REASON, Run, StopReason};

/// State of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created, not started.
    Pending,
    /// Started, and every active job waits for a place to run (queued on the pool); none
    /// runs yet.
    Scheduling,
    /// Jobs are being started or are running.
    Running,
    /// Waiting at an approval stage.
    Paused,
    /// Every job succeeded or was skipped.
    Success,
    /// A job failed or timed out.
    Failure,
    /// Canceled, or an approval was rejected.
    Canceled,
    /// The run's own timeout fired.
    Timeout,
}

impl RunState {
    /// Success, failure, canceled or timeout.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Success | RunState::Failure | RunState::Canceled | RunState::Timeout
        )
    }
}

/// State of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its needs or gate.
    Pending,
    /// `StartJob` was issued; the executor has not reported it started.
    Queued,
    /// Running.
    Running,
    /// Exited 0.
    Success,
    /// Exited non-zero, or could not be run, with no retry left.
    Failure,
    /// Its condition was false.
    Skipped,
    /// Canceled before or while running.
    Canceled,
    /// Hit its timeout with no retry left.
    Timeout,
}

impl JobState {
    /// Success, failure, skipped, canceled or timeout.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Queued | JobState::Running)
    }
}

/// `as_str`, `ALL`, `Display` and `FromStr` of a state enum: the one place its names are
/// written (they equal the serde names, which a test checks).
macro_rules! state_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every state, in lifecycle order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The lowercase name, as stored, served by the API and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownState {
                        what: $what,
                        given: s.to_string(),
                        known: $ty::ALL.iter().map(|v| v.as_str()).collect(),
                    }),
                }
            }
        }
    };
}

state_names!(RunState, "run state", {
    Pending => "pending",
    Scheduling => "scheduling",
    Running => "running",
    Paused => "paused",
    Success => "success",
    Failure => "failure",
    Canceled => "canceled",
    Timeout => "timeout",
});

state_names!(JobState, "job state", {
    Pending => "pending",
    Queued => "queued",
    Running => "running",
    Success => "success",
    Failure => "failure",
    Skipped => "skipped",
    Canceled => "canceled",
    Timeout => "timeout",
});

/// A state name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState {
    /// `run state` or `job state`.
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The names there are.
    pub known: Vec<&'static str>,
}

impl std::fmt::Display for UnknownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}` is not one of {}", self.what, self.given, self.known.join(", "))
    }
}

impl std::error::Error for UnknownState {}

/// How one attempt ended, as the driver observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The main container or process exited with this code.
    Exited(i32),
    /// The driver killed it at the job's timeout.
    TimedOut,
    /// It was killed after a `CancelJob`.
    Canceled,
    /// It could not be run (missing image, engine error); the text says why.
    Error(String),
    /// Something other than Kiln killed it (the out-of-memory killer, a signal from outside):
    /// its exit code and what killed it.
    Killed {
        /// The exit code (128 + the signal).
        code: i32,
        /// What killed it (`killed by the out-of-memory killer …`).
        why: String,
    },
}

/// Something that happened, fed to [`Run::handle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The attempt's main container or process started.
    JobStarted {
        /// Job.
        job: JobId,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// The attempt printed `JOB_OUT key=value`.
    JobOutput {
        /// Job.
        job: JobId,
        /// Attempt.
        attempt: u32,
        /// Output name.
        key: String,
        /// Output value (the last one printed wins).
        value: String,
    },
    /// The attempt ended.
    JobExited {
        /// Job.
        job: JobId,
        /// Attempt.
        attempt: u32,
        /// How.
        outcome: Outcome,
    },
    /// An approval stage was approved.
    Approved {
        /// Stage name.
        stage: String,
        /// Who.
        by: String,
    },
    /// An approval stage was rejected: the run ends canceled.
    Rejected {
        /// Stage name.
        stage: String,
        /// Who.
        by: String,
    },
    /// Cancel the whole run.
    Cancel {
        /// Who.
        by: String,
    },
    /// A timer armed by `Command::ArmTimer` fired.
    TimerFired(Timer),
    /// This job already succeeded in an earlier run of the same plan (a retry of a failed
    /// run keeps what passed): do not start it. When it becomes ready and its condition is
    /// true, it ends `Success` with these outputs, no attempt and no `StartJob`, and the run
    /// goes on as if it had exited 0; a false condition skips it as usual.
    ///
    /// Only fed before [`Run::start`] (a driver that replays a run feeds them before `start`
    /// again); after `start` it is ignored. An unknown job is ignored; a later one for the
    /// same job replaces the earlier.
    JobReused {
        /// Job.
        job: JobId,
        /// Its outputs in the earlier run.
        outputs: BTreeMap<String, String>,
    },
    /// Attempts of indexes of an array job started (one event may carry many). Stale ones
    /// (not in flight, or already running) are ignored.
    IndexesStarted {
        /// The array job.
        job: JobId,
        /// Which index attempts.
        indexes: Vec<IndexAttempt>,
    },
    /// Attempts of indexes of an array job ended (one event may carry many): each is
    /// counted, or retried under the job's `retry`. Stale ones are ignored.
    IndexesExited {
        /// The array job.
        job: JobId,
        /// How each ended.
        exits: Vec<IndexExit>,
    },
}

/// Timers the engine asks the driver to keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// The run's `timeout`.
    RunTimeout,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Start an attempt of a job.
    StartJob(Box<StartJob>),
    /// Kill a queued or running attempt; the driver then reports `JobExited` with
    /// `Outcome::Canceled` (or the real outcome if it had already ended).
    CancelJob {
        /// Job.
        job: JobId,
        /// Attempt.
        attempt: u32,
    },
    /// The run reached an approval stage and waits for `Approved` or `Rejected`.
    Pause {
        /// Stage name.
        stage: String,
        /// Shown to the approver.
        description: Option<String>,
    },
    /// Arm a timer; fire `Event::TimerFired` after `after`.
    ArmTimer {
        /// Which.
        timer: Timer,
        /// When, from now.
        after: Duration,
    },
    /// The run ended in this final state. Issued exactly once.
    Finish(RunState),
    /// Start these index attempts of an array job, each as `start` with its index in
    /// `KILN_ARRAY_INDEX`; report them with `IndexesStarted` and `IndexesExited`.
    StartIndexes {
        /// The array job, rendered once (its `attempt` is 1; each index has its own).
        start: Box<StartJob>,
        /// Which index attempts.
        indexes: Vec<IndexAttempt>,
    },
    /// Kill these queued or running index attempts of an array job; the driver then
    /// reports each exited (`Outcome::Canceled`, or the real outcome if it had ended).
    CancelIndexes {
        /// The array job.
        job: JobId,
        /// Which index attempts.
        indexes: Vec<IndexAttempt>,
    },
}

/// A job ready to run: every template rendered, env complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartJob {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The plan's job with its strings rendered and its env merged (params, outputs of
    /// its needs, global env, job env; later ones win).
    pub job: Job,
}

/// What the engine knows of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// State.
    pub state: JobState,
    /// Attempts started so far (0 for a job reused from an earlier run).
    pub attempts: u32,
    /// Outputs of the latest attempt.
    pub outputs: BTreeMap<String, String>,
    /// Exit code of the latest attempt, if it exited (`None` for a reused job).
    pub exit_code: Option<i32>,
    /// Why it failed or was skipped or canceled, or that it was reused from an earlier run,
    /// for people.
    pub reason: Option<String>,
}

/// Parameters bound to values, as given to [`Run::new`].
pub type Params = BTreeMap<String, ParamValue>;

/// Shared, immutable plan.
pub type SharedPlan = Arc<Plan>;
