//! The validated, expanded form of a workflow: what the engine runs.
//!
//! Invariants (established by `compile`, relied on by the engine):
//! - `jobs` is in stage order; every id in `needs` names an earlier entry of `jobs`
//!   (the graph is acyclic and topologically ordered by index);
//! - matrix jobs are already expanded, one `Job` per instance;
//! - a job in a stage after an approval stage has `gate` set to the nearest such stage,
//!   whatever its `needs` say: an approval can not be bypassed;
//! - string fields may still hold `${{ … }}` templates; they were checked at compile time
//!   and are rendered by [`crate::expr::render`] when the job starts;
//! - the paths of `cache` and `artifacts`, as written, are relative and stay inside the
//!   workspace ([`workspace_path_problem`] finds none); a template in them may still render
//!   to one that does not, so whoever renders them checks again.

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
    /// At most this many runs of the pipeline run at once (`concurrency`, at least 1);
    /// further runs wait, pending, in FIFO order. `None`: no limit.
    pub concurrency: Option<u32>,
    /// What starts runs (`on:`).
    #[serde(default, skip_serializing_if = "Triggers::is_empty")]
    pub triggers: Triggers,
    /// The git repository the workflow builds (`source:`), checked out into each job's
    /// workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::git::Source>,
    /// `concurrency` per group: `concurrency` is then the limit of each group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_group: Option<crate::git::ConcurrencyGroup>,
    /// Services started for the whole run (`service-pools`), in file order: every job waits
    /// for them and gets their exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::pool::Pool>,
    /// Images pulled onto the nodes that can run the jobs when a run starts (`prepull:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepull: Vec<String>,
}

/// What starts runs of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggers {
    /// Image pushes to Kiln's registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image: Vec<ImageTrigger>,
    /// Pushes to the `source` repository (`on.push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<crate::git::PushTrigger>,
    /// Pull/merge requests on the `source` repository (`on.pull_request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<crate::git::PullRequestTrigger>,
    /// Cron schedules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleTrigger>,
    /// Runs may be started by hand (API, CLI, web UI); `on: { api: false }` turns it off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub api: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            image: Vec::new(),
            push: None,
            pull_request: None,
            schedule: Vec::new(),
            api: true,
        }
    }
}

impl Triggers {
    /// Nothing but the default: no trigger, and runs may be started through the API.
    pub fn is_empty(&self) -> bool {
        self.image.is_empty()
            && self.push.is_none()
            && self.pull_request.is_none()
            && self.schedule.is_empty()
            && self.api
    }
}

/// A cron schedule that starts runs (`on.schedule`); checked when the workflow compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleTrigger {
    /// The cron expression as written (5 fields, or 6 with seconds first).
    pub cron: String,
    /// IANA time zone name (`UTC` when the file names none).
    pub timezone: String,
    /// Param values (as text) for the runs it starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// What to do with fires missed while the server was down.
    #[serde(default)]
    pub missed: crate::schedule::Missed,
}

impl ScheduleTrigger {
    /// The parsed schedule; `None` only for a trigger that did not come from `compile`.
    pub fn schedule(&self) -> Option<crate::schedule::Schedule> {
        crate::schedule::Schedule::parse(&self.cron, &self.timezone).ok()
    }

    /// Identifies the schedule among a pipeline's: its expression, zone and params (not
    /// `missed`, so that changing the policy keeps what was stored about it).
    pub fn key(&self) -> String {
        let params = serde_json::to_string(&self.params).unwrap_or_default();
        format!("{}\n{}\n{params}", self.cron, self.timezone)
    }

    /// How runs it starts are recorded: `schedule "*/5 * * * *" (Asia/Shanghai)`.
    pub fn triggered_by(&self) -> String {
        format!("schedule \"{}\" ({})", self.cron, self.timezone)
    }
}

/// A push to a repository of Kiln's registry that starts a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTrigger {
    /// Repository glob; one without `/` names a repository of the pipeline's own project.
    pub repository: String,
    /// Tag globs; empty: every tag.
    pub tags: Vec<String>,
}

impl ImageTrigger {
    /// Whether a push of `repository:tag` starts a run of a pipeline of `project`. Only
    /// repositories of the pipeline's own project count (a pipeline never learns of another
    /// project's pushes). Globs were checked when the workflow compiled; a bad one matches
    /// nothing.
    pub fn matches(&self, project: &str, repository: &str, tag: &str) -> bool {
        let Some((repo_project, _)) = repository.split_once('/') else { return false };
        if repo_project != project {
            return false;
        }
        let pattern = if self.repository.contains('/') {
            self.repository.clone()
        } else {
            format!("{project}/{}", self.repository)
        };
        let glob = |p: &str, text: &str| {
            globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .is_ok_and(|g| g.compile_matcher().is_match(text))
        };
        glob(&pattern, repository)
            && (self.tags.is_empty() || self.tags.iter().any(|t| glob(t, tag)))
    }
}

impl Plan {
    /// Index of a job by id.
    pub fn job_index(&self, id: &JobId) -> Option<usize> {
        self.jobs.iter().position(|j| &j.id == id)
    }

    /// The plan cut down to `job` and the jobs it needs, directly or not (in plan order), with
    /// the stages after `job`'s dropped: what a run needs to reach `job` and nothing after
    /// it. The plan's invariants hold for the result. `None`: no such job.
    pub fn only(&self, job: &JobId) -> Option<Plan> {
        let target = self.job_index(job)?;
        let mut keep = vec![false; self.jobs.len()];
        keep[target] = true;
        // Needs point only backwards: one pass from the target down marks every ancestor.
        for i in (0..=target).rev() {
            if keep[i] {
                for need in &self.jobs[i].needs {
                    if let Some(n) = self.job_index(need) {
                        keep[n] = true;
                    }
                }
            }
        }
        let jobs: Vec<Job> =
            self.jobs.iter().zip(&keep).filter(|(_, k)| **k).map(|(j, _)| j.clone()).collect();
        let last = self.jobs[target].stage;
        let stages = self
            .stages
            .iter()
            .take(last + 1)
            .map(|s| Stage {
                name: s.name.clone(),
                kind: match &s.kind {
                    StageKind::Jobs(ids) => StageKind::Jobs(
                        ids.iter()
                            .filter(|id| jobs.iter().any(|j| &j.id == *id))
                            .cloned()
                            .collect(),
                    ),
                    other => other.clone(),
                },
            })
            .collect();
        Some(Plan { stages, jobs, ..self.clone() })
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
    /// `array:`: the job runs once per index, `0..size`, as one job (its indexes are not
    /// jobs of the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArraySpec>,
    /// Sidecar containers.
    pub services: Vec<Service>,
    /// Container limits.
    pub resources: Resources,
    /// Files kept between runs (`cache`); strings may hold templates.
    pub cache: Option<CacheSpec>,
    /// Files saved when the job ends and placed into the workspace of the jobs that need it
    /// (`artifacts`); paths may hold templates.
    pub artifacts: Option<ArtifactSpec>,
    /// Constraints, ports, network, priority and placement on the server's pool.
    #[serde(default, skip_serializing_if = "Scheduling::is_default")]
    pub scheduling: Scheduling,
    /// Whether the run's `source` commit is checked out into the workspace first (`checkout`,
    /// default true; without a `source` there is nothing to check out).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub checkout: bool,
    /// Services started for this job alone (`service-pools` of the job), in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::pool::Pool>,
    /// The project environment the job runs in (`environment:`, or the one a deploy goes
    /// to): it gets the environment's variables and `KILN_ENVIRONMENT`. May hold templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// A job array (`array:`, `parallelism:`): one job run once per index, each with
/// `KILN_ARRAY_INDEX`, like Slurm job arrays and AWS Batch array jobs. `retry:` applies to
/// each index alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// How many indexes, from 1 to [`MAX_ARRAY_SIZE`].
    pub size: u32,
    /// At most this many indexes queued or running at once; `None`: as many as the pool
    /// takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

/// Most indexes of one job array.
pub const MAX_ARRAY_SIZE: u32 = 1_000_000;

/// The variable that holds an array index's number in its task's env.
pub const ARRAY_INDEX_VAR: &str = "KILN_ARRAY_INDEX";

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
    /// Starts other pipelines (`trigger:`); the server carries it out, never an agent.
    Trigger(crate::server_job::TriggerSpec),
    /// Deploys a service to an environment (`deploy:`); the server carries it out, never an
    /// agent.
    Deploy(Box<crate::server_job::DeploySpec>),
    /// Builds and pushes an image (`build:`); an agent runs it with the image builder
    /// (`kiln-runtime` turns it into buildah commands).
    Build(Box<crate::build::BuildSpec>),
}

impl RunSpec {
    /// `trigger` or `deploy` for what the server carries out itself; `None` for what an
    /// agent (or `kiln run`) runs.
    pub fn on_server(&self) -> Option<&'static str> {
        match self {
            RunSpec::Script(_) | RunSpec::Command { .. } | RunSpec::Build(_) => None,
            RunSpec::Trigger(_) => Some("trigger"),
            RunSpec::Deploy(_) => Some("deploy"),
        }
    }
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

/// Container limits, and what the job asks of the pool's machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in thousandths of a core (`0.5` or `500m` = 500).
    pub cpu_millis: Option<u64>,
    /// Memory in bytes (`256Mi`).
    pub memory_bytes: Option<u64>,
    /// Disk in bytes (`10Gi`); scheduling only, not a container limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// Where a job may run on the server's pool and what it needs there besides resources:
/// `constraints`, `ports`, `network`, `priority`, `placement`. Checked at compile time
/// against the scheduler's language (`kiln_scheduler`); kept here as plain data so the plan
/// stays serialisable, and turned into the scheduler's request by [`Job::ask`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduling {
    /// An AND of OR-groups of tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Vec<ConstraintTerm>>,
    /// Named host ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// `network: host`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    /// Higher first when the pool is short.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// `placement: spread` (bin-pack otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spread: bool,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Scheduling {
    /// Nothing written: any machine, no port, bridge network, priority 0, bin-pack.
    pub fn is_default(&self) -> bool {
        *self == Scheduling::default()
    }

    /// The scheduler's network mode.
    pub fn network(&self) -> kiln_scheduler::Network {
        if self.host_network {
            kiln_scheduler::Network::Host
        } else {
            kiln_scheduler::Network::Bridge
        }
    }

    /// The scheduler's port requests, in the order written.
    pub fn port_asks(&self) -> Vec<kiln_scheduler::PortAsk> {
        self.ports
            .iter()
            .map(|p| kiln_scheduler::PortAsk {
                name: p.name.clone(),
                host: p.host,
                container: p.container,
            })
            .collect()
    }

    /// The scheduler's constraints. Never fails for a plan `compile` produced (each test
    /// was checked with the same parser).
    pub fn constraints(
        &self,
    ) -> Result<kiln_scheduler::Constraints, kiln_scheduler::ConstraintError> {
        let groups = self
            .constraints
            .iter()
            .map(|g| {
                g.iter()
                    .map(|t| {
                        kiln_scheduler::Predicate::new(
                            &t.attribute,
                            &t.operator,
                            t.value.as_deref(),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        kiln_scheduler::Constraints::new(groups)
    }
}

/// One constraint test, as checked (`operator` upper-cased, BCS spellings normalised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintTerm {
    /// The node attribute.
    pub attribute: String,
    /// `LIKE`, `UNLIKE`, `UNIQUE`, `CLUSTER`, `GROUP_BY`, `MAX_PER`, `GREATER`, `LESS`, `EXISTS`.
    pub operator: String,
    /// The value, when the operator takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A named host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Name; the job sees `KILN_PORT_<NAME>`.
    pub name: String,
    /// Host port; 0 = any free port of the machine's range.
    pub host: u16,
    /// Container port (`None` with the host network: the host port).
    pub container: Option<u16>,
}

impl Job {
    /// The scheduler's request for one attempt of this job: `task` (unique), `group` (what
    /// UNIQUE, GROUP_BY... count together, such as `<run id>/<job base>`), `project`, and the
    /// resources to ask when the job writes none (`defaults`, per amount).
    pub fn ask(
        &self,
        task: &str,
        group: &str,
        project: &str,
        defaults: kiln_scheduler::Resources,
    ) -> Result<kiln_scheduler::Ask, kiln_scheduler::ConstraintError> {
        self.scheduling.ask(&self.resources, task, group, project, defaults)
    }
}

impl Scheduling {
    /// The scheduler's request for one task with these keys and `resources` (jobs and
    /// service instances alike): `defaults` fill the amounts `resources` leaves out.
    pub fn ask(
        &self,
        resources: &Resources,
        task: &str,
        group: &str,
        project: &str,
        defaults: kiln_scheduler::Resources,
    ) -> Result<kiln_scheduler::Ask, kiln_scheduler::ConstraintError> {
        let r = resources;
        let resources = kiln_scheduler::Resources {
            cpu_millis: r.cpu_millis.unwrap_or(defaults.cpu_millis),
            memory_bytes: r.memory_bytes.unwrap_or(defaults.memory_bytes),
            disk_bytes: r.disk_bytes.unwrap_or(defaults.disk_bytes),
        };
        let mut ask = kiln_scheduler::Ask::new(task, group, project, resources);
        ask.priority = self.priority;
        ask.constraints = self.constraints()?;
        ask.network = self.network();
        ask.strategy = if self.spread {
            kiln_scheduler::Strategy::Spread
        } else {
            kiln_scheduler::Strategy::BinPack
        };
        ask.ports = self.port_asks();
        Ok(ask)
    }
}

/// A job's cache: paths restored before the job runs and saved after it, under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// The cache's name (`default` when not written; may hold templates).
    pub key: String,
    /// Files whose contents are hashed into the key (GitLab `cache:key:files`): relative
    /// paths or globs; empty when the key is `key` alone.
    pub files: Vec<String>,
    /// What is saved and restored: relative paths or globs, at least one.
    pub paths: Vec<String>,
    /// Whether the job restores, saves, or both.
    pub policy: CachePolicy,
}

/// Whether a job restores its cache, saves it, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CachePolicy {
    /// Restore before the job, save after it (the default).
    #[default]
    PullPush,
    /// Restore only.
    Pull,
    /// Save only.
    Push,
}

/// A job's artifacts: paths saved when the job ends, then placed into the workspace of
/// every job that needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactSpec {
    /// What is saved: relative paths or globs, at least one (may hold templates).
    pub paths: Vec<String>,
    /// After which endings they are saved.
    pub when: ArtifactWhen,
}

/// After which endings of a job its artifacts are saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactWhen {
    /// Only when the job succeeded (the default).
    #[default]
    OnSuccess,
    /// Only when it failed or timed out.
    OnFailure,
    /// Whatever the outcome.
    Always,
}

/// Why a text can not name files of a job's workspace (a path of `cache` or `artifacts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Empty (or blank) text.
    Empty,
    /// Starts with `/`.
    Absolute,
    /// Starts with `~`, which is not expanded.
    Home,
    /// Has a `..` component, starting at this byte offset.
    ParentDir(usize),
    /// Holds a line break (such as the last one of a `|` block) at this byte offset.
    LineBreak(usize),
}

impl PathProblem {
    /// Byte offset of the problem in the path.
    pub fn offset(self) -> usize {
        match self {
            PathProblem::ParentDir(at) | PathProblem::LineBreak(at) => at,
            PathProblem::Empty | PathProblem::Absolute | PathProblem::Home => 0,
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reads after the path it is about: "'/x' is absolute: …".
        f.write_str(match self {
            PathProblem::Empty => "is empty",
            PathProblem::Absolute => "is absolute: paths are relative to the workspace",
            PathProblem::Home => {
                "starts with '~', which is not expanded: paths are relative to the workspace"
            }
            PathProblem::ParentDir(_) => "leaves the workspace with '..'",
            PathProblem::LineBreak(_) => "holds a line break",
        })
    }
}

/// The first problem of `path` as a path of `cache` or `artifacts`: it must be a relative
/// path or glob (`target`, `dist/*.tar.gz`, `**/*.log`) that stays inside the workspace.
pub fn workspace_path_problem(path: &str) -> Option<PathProblem> {
    if path.trim().is_empty() {
        return Some(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Some(PathProblem::Absolute);
    }
    if path == "~" || path.starts_with("~/") {
        return Some(PathProblem::Home);
    }
    if let Some(at) = path.find(['\n', '\r']) {
        return Some(PathProblem::LineBreak(at));
    }
    let mut offset = 0;
    for part in path.split('/') {
        if part == ".." {
            return Some(PathProblem::ParentDir(offset));
        }
        offset += part.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_a_job_and_what_it_needs() {
        let yaml = r#"
name: cut
stages:
  - name: one
    jobs:
      a: { script: [a] }
      b: { script: [b] }
  - name: two
    jobs:
      c: { needs: [a], script: [c] }
      d: { needs: [b], script: [d] }
  - name: three
    jobs:
      e: { needs: [c], script: [e] }
"#;
        struct One(&'static str);
        impl crate::Loader for One {
            fn load(&self, _: &str, path: &str) -> Result<crate::Source, String> {
                Ok(crate::Source { name: path.to_string(), text: self.0.to_string() })
            }
        }
        let plan = crate::compile("cut.yml", &One(yaml)).plan.expect("compiles");
        let cut = plan.only(&JobId::from("c")).unwrap();
        let ids: Vec<&str> = cut.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        let stages: Vec<&str> = cut.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stages, ["one", "two"]);
        assert_eq!(cut.stages[0].kind, StageKind::Jobs(vec![JobId::from("a")]));
        assert_eq!(plan.only(&JobId::from("e")).unwrap().jobs.len(), 3);
        assert!(plan.only(&JobId::from("zz")).is_none());
    }

    #[test]
    fn workspace_paths() {
        for ok in ["target", "./target/", "dist/*.tar.gz", "**/*.log", "a/.../b", "..a", "~x"] {
            assert_eq!(workspace_path_problem(ok), None, "{ok}");
        }
        assert_eq!(workspace_path_problem(" "), Some(PathProblem::Empty));
        assert_eq!(workspace_path_problem("/etc"), Some(PathProblem::Absolute));
        assert_eq!(workspace_path_problem("~/.cargo"), Some(PathProblem::Home));
        assert_eq!(workspace_path_problem(".."), Some(PathProblem::ParentDir(0)));
        assert_eq!(workspace_path_problem("a/b/../../x"), Some(PathProblem::ParentDir(4)));
        assert_eq!(workspace_path_problem("a/.."), Some(PathProblem::ParentDir(2)));
        assert_eq!(workspace_path_problem("dist\n"), Some(PathProblem::LineBreak(4)));
    }
}
