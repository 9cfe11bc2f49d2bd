//! Runs jobs: the wrapper around one task ([`task`]), a whole run on one machine ([`local`],
//! what `kiln run` uses), and the file-system side of caches and artifacts ([`archive`]).
//! Shared by `kiln run` and, later, the agents.
//!
//! Invariant: every task started through [`task::drive_task`] is destroyed before it returns,
//! whether it succeeded, failed, timed out or was canceled.

pub mod archive;
pub mod local;
pub mod task;

pub use local::{Control, JobReport, LocalRun, Report, Update};
pub use task::{TaskEvent, TaskRequest, TaskResult, drive_task, parse_job_out};
