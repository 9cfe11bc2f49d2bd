//! The validated, expanded form of a workflow: what the engine runs.
//!
//! Invariants (established by `compile`, relied on by the engine):
//! - `jobs` is in stage order; every id in `needs` names an earlier entry of `jobs`
//!   (the graph is acyclic and topologically ordered by index);
//! - matrix jobs are already expanded, one `Job` per instance;
//! - a job in a stage after an approval stage has `gate` set to the nearest such stage,
//!   whatever its `needs` say: an approval can not be bypassed;
//! - string fields may still hold `${{ … }}` templates; they were checked at compile time
//!   and are rendered by [`crate::expr::render`] when the job starts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Identifies one job of a plan (a matrix instance has its own id, such as `test[a,1]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        JobId(s.to_string())
    }
}

/// A compiled workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The workflow's `name`.
    pub name: String,
    /// Declared parameters, in file order.
    pub params: Vec<ParamSpec>,
    /// Global `env` (values may hold templates).
    pub env: BTreeMap<String, String>,
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// Jobs in stage order, matrix-expanded; `needs` point only backwards.
    pub jobs: Vec<Job>,
    /// Whole-run `timeout`, if any.
    pub timeout: Option<Duration>,
}

impl Plan {
    /// Index of a job by id.
    pub fn job_index(&self, id: &JobId) -> Option<usize> {
        self.jobs.iter().position(|j| &j.id == id)
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Name, as used in `${{ params.<name> }}` and as an env variable.
    pub name: String,
    /// Type and allowed values.
    pub kind: ParamKind,
    /// Default, already checked against `kind`.
    pub default: Option<ParamValue>,
    /// A value must be given when there is no default.
    pub required: bool,
    /// Help text.
    pub description: Option<String>,
}

/// The type of a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamKind {
    /// Any text.
    String,
    /// A number (integer or decimal).
    Number,
    /// `true` or `false`.
    Bool,
    /// One of the listed texts.
    Choice(Vec<String>),
}

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    /// Text.
    String(String),
    /// Number.
    Number(f64),
    /// Boolean.
    Bool(bool),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            ParamValue::Number(n) => write!(f, "{n}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A stage: a set of jobs run in parallel, or an approval gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's name (unique in the workflow).
    pub name: String,
    /// Jobs or approval.
    pub kind: StageKind,
}

/// What a stage does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StageKind {
    /// Runs its jobs (ids in `Plan::jobs`).
    Jobs(Vec<JobId>),
    /// Pauses the run until approved or rejected. It is reached when every job of the
    /// earlier stages has ended.
    Approval {
        /// Shown to the approver.
        description: Option<String>,
    },
}

/// One runnable job (a matrix instance is its own job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id, `build` or `test[linux,1.22]` for a matrix instance.
    pub id: JobId,
    /// The job's key in the file before matrix expansion (`test`).
    pub base: String,
    /// Index into `Plan::stages`.
    pub stage: usize,
    /// Jobs this one waits for: explicit `needs` (matrix-expanded), or every job of the
    /// previous job stage when `needs` is absent.
    pub needs: Vec<JobId>,
    /// The approval stage (index into `Plan::stages`) this job waits for, if any.
    pub gate: Option<usize>,
    /// The `if:` expression, without `${{ }}`; `success()` when absent.
    pub condition: String,
    /// Container image (may hold templates). Optional for the process executor.
    pub image: Option<String>,
    /// What to run.
    pub run: RunSpec,
    /// Job env (values may hold templates).
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container; the workspace when absent.
    pub workdir: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Matrix values of this instance (empty for a plain job).
    pub matrix: BTreeMap<String, String>,
    /// Sidecar containers.
    pub services: Vec<Service>,
    /// Container limits.
    pub resources: Resources,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunSpec {
    /// Shell lines, run as one `sh -e` script.
    Script(Vec<String>),
    /// Component style: the image's entrypoint (or `command`) with `args`.
    Command {
        /// Replaces the image's entrypoint when set.
        command: Option<Vec<String>>,
        /// Arguments.
        args: Vec<String>,
    },
}

/// When and how often a failed attempt is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0 = no retry).
    pub max: u32,
    /// Which failures are retried.
    pub on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max: 0, on: vec![RetryOn::Failure, RetryOn::Timeout, RetryOn::Error] }
    }
}

/// A kind of failure a retry policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetryOn {
    /// The job exited non-zero.
    Failure,
    /// The attempt hit its timeout.
    Timeout,
    /// The executor could not run it (missing image, engine error).
    Error,
}

/// A sidecar container reachable from the job by `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Host name on the job's private network.
    pub name: String,
    /// Image.
    pub image: String,
    /// Env.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's command when set.
    pub command: Option<Vec<String>>,
}

/// Container limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in thousandths of a core (`0.5` or `500m` = 500).
    pub cpu_millis: Option<u64>,
    /// Memory in bytes (`256Mi`).
    pub memory_bytes: Option<u64>,
}
