//! The wire types of Kiln's REST API (`/api/v1`) and of the agent lease protocol: what the
//! server sends and accepts, what the CLI and agents parse. Plain serde data, with OpenAPI
//! schemas (utoipa) so `/api/openapi.json` describes exactly these shapes.
//!
//! Nothing here does I/O. Times are RFC 3339 UTC; durations are milliseconds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod agent;
pub mod config;
pub mod deploy;
pub mod environments;
pub mod metric;
pub mod pool;
pub mod scan;
pub mod service;
pub mod triggers;
pub mod usage;

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ApiError,
}

/// A stable error code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// Stable, machine-readable: see [`codes`].
    pub code: String,
    /// What was wrong and what was expected.
    pub message: String,
    /// For `invalid_workflow` and `invalid_params`: every problem found, with its position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// The stable error codes.
pub mod codes {
    /// 400: the request is malformed (bad JSON, bad query, bad name).
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401: no token, or an unknown or revoked one.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: the token's role or project does not allow this.
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: no such project, pipeline, run, job, artifact or secret.
    pub const NOT_FOUND: &str = "not_found";
    /// 409: the thing is in a state that does not allow this (run already ended, stage not
    /// waiting, name taken).
    pub const CONFLICT: &str = "conflict";
    /// 422: the workflow YAML has errors; `diagnostics` lists them.
    pub const INVALID_WORKFLOW: &str = "invalid_workflow";
    /// 422: trigger parameters do not fit the pipeline's `params`.
    pub const INVALID_PARAMS: &str = "invalid_params";
    /// 405: the path exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 413: the body is too large.
    pub const TOO_LARGE: &str = "too_large";
    /// 422: the service file has errors; `diagnostics` lists them.
    pub const INVALID_SERVICE: &str = "invalid_service";
    /// 422: the metric rule file has errors; `diagnostics` lists them.
    pub const INVALID_METRIC: &str = "invalid_metric";
    /// 409: an agent speaks another version of the lease protocol than the server; the
    /// message says which side to upgrade.
    pub const AGENT_PROTOCOL: &str = "agent_protocol";
    /// 404: the artifacts asked for existed but the garbage collector removed them (their
    /// run ended longer ago than the server's `--artifact-max-age`); the message says when.
    pub const ARTIFACTS_EXPIRED: &str = "artifacts_expired";
    /// 422: a config item's template or a values file has errors, or a render failed;
    /// `diagnostics` lists every problem with its file and line.
    pub const INVALID_CONFIG: &str = "invalid_config";
    /// 422: a deploy, rollback or promotion cannot be done as asked: the image is not in
    /// Kiln's registry, the environment does not exist, the service file names another
    /// environment, or its config has no release there yet. Nothing was stored.
    pub const INVALID_DEPLOY: &str = "invalid_deploy";
    /// 500: a fault on the server's side; the message says what failed.
    pub const INTERNAL: &str = "internal";
    /// 507: the server's disk (or its database's) is full; nothing was stored. The server
    /// takes writes again by itself once space is freed.
    pub const INSUFFICIENT_STORAGE: &str = "insufficient_storage";
    /// 503: the server's storage cannot be written for now (a read-only or vanished data
    /// directory, an I/O error, the database server away); the message names the cause.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )
    }
}

/// A project: a namespace of pipelines, secrets and caches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Name.
    pub name: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /api/v1/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateProject {
    /// 1 to 64 letters, digits, `.`, `_` or `-`.
    pub name: String,
}

/// Body of `PUT /api/v1/projects/{project}/pipelines/{pipeline}`: the workflow to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyPipeline {
    /// The workflow file's text.
    pub yaml: String,
    /// The file name diagnostics should name (default `<pipeline>.yml`).
    #[serde(default)]
    pub file: Option<String>,
    /// Template files the workflow's `uses:` refer to, by the path written there.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The workflow a run ran (`GET /api/v1/runs/{run}/source`): the pipeline's source as it was
/// when the run was created, whatever was applied since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunWorkflow {
    /// The entry file's name (diagnostics name it).
    pub file: String,
    /// The workflow file's text.
    pub yaml: String,
    /// Template files the workflow's `uses:` refer to, by the path written there.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A stored pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub name: String,
    /// Bumped on every change of its YAML.
    pub version: u32,
    /// Stage names in order.
    pub stages: Vec<String>,
    /// Number of jobs (matrix expanded).
    pub jobs: usize,
    /// Declared parameters.
    pub params: Vec<ParamInfo>,
    /// At most this many runs at once (`concurrency:`); none means no limit.
    pub concurrency: Option<u32>,
    /// What starts its runs (`on:`), schedules with their next fire times.
    #[serde(default)]
    pub triggers: Vec<triggers::TriggerInfo>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParamInfo {
    /// Name.
    pub name: String,
    /// `string`, `number`, `bool` or `choice`.
    pub kind: String,
    /// Allowed values of a `choice`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Default, as text.
    pub default: Option<String>,
    /// Must be given.
    pub required: bool,
    /// Help text.
    pub description: Option<String>,
}

/// Answer to an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    /// The pipeline as stored now.
    pub pipeline: Pipeline,
    /// `created`, `updated` or `unchanged`.
    pub change: String,
    /// Warnings found while compiling (errors make the apply fail).
    #[serde(default)]
    pub warnings: Vec<Diagnostic>,
}

/// Body of `POST /api/v1/projects/{project}/pipelines/{pipeline}/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerRequest {
    /// Parameter values as text (`count=3`, `dry_run=true`); checked against `params`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A run in lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunSummary {
    /// Id (a uuid).
    pub id: String,
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Number within the pipeline, from 1.
    pub number: u64,
    /// `pending` (queued for a concurrency slot), `scheduling`, `running`, `paused`,
    /// `success`, `failure`, `canceled` or `timeout` (`kiln_engine::RunState`'s names).
    #[schema(schema_with = run_state_schema)]
    pub state: String,
    /// Who triggered it (a token's name).
    pub triggered_by: String,
    /// Why it ended the way it did, if not success.
    pub reason: Option<String>,
    /// The run this one retries.
    pub retry_of: Option<String>,
    /// Created (triggered).
    pub created_at: DateTime<Utc>,
    /// Left the queue.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to end (or to now while it runs).
    pub duration_ms: Option<u64>,
    /// The commit it builds, when a git push or pull request started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
    /// The run and job that started it (a `trigger:` job), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunParent>,
    /// The group it was started in (`GET /api/v1/run-groups/{group}` shows it), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The run and job that started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunParent {
    /// The upstream run's id.
    pub run: String,
    /// Its `project/pipeline#number`.
    pub name: String,
    /// The `trigger:` job that started this run.
    pub job: String,
}

/// Body of `POST /api/v1/run-groups`: pipelines started together as one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartGroup {
    /// The pipelines, `project/pipeline`, in order (at least one).
    pub pipelines: Vec<String>,
    /// Param values as text, given to every pipeline that declares them (a pipeline that
    /// does not declare one does not get it).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Runs started together: a `trigger:` job's list, or `POST /api/v1/run-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunGroup {
    /// Id (a uuid).
    pub id: String,
    /// Who or what started it: a token's name, or `run <project/pipeline#n> job <job>`.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// The runs' states together: `pending` while none started, `running` while one has not
    /// ended, then `failure` if one failed or timed out, `canceled` if one was canceled, else
    /// `success`.
    #[schema(schema_with = run_state_schema)]
    pub state: String,
    /// The runs, in order.
    pub runs: Vec<RunSummary>,
}

/// The commit a run builds and what in its repository started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceInfo {
    /// `github`, `gitlab` or `gitea`.
    pub provider: String,
    /// `push` or `pull_request`.
    pub event: String,
    /// The repository (`owner/name`).
    pub repository: String,
    /// The full ref (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Branch (of a branch push; a pull request's source branch).
    pub branch: Option<String>,
    /// Tag (of a tag push).
    pub tag: Option<String>,
    /// The commit (40 hex digits).
    pub commit: String,
    /// Its message.
    pub message: String,
    /// Its author.
    pub author: String,
    /// The pull/merge request number, when one started the run.
    pub pull_request: Option<u64>,
    /// The pull/merge request's target branch.
    pub target_branch: Option<String>,
}

/// Answer to a webhook delivery (`POST /api/v1/hooks/{provider}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HookOutcome {
    /// The provider's delivery id.
    pub delivery: String,
    /// What Kiln did, for people: the runs it started, or why none.
    pub outcome: String,
    /// Runs started (`project/pipeline#number`); empty when none.
    pub runs: Vec<String>,
}

impl RunSummary {
    /// `project/pipeline#number`.
    pub fn full_name(&self) -> String {
        format!("{}/{}#{}", self.project, self.pipeline, self.number)
    }
}

/// A run with its stages, jobs and approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The summary.
    #[serde(flatten)]
    pub run: RunSummary,
    /// Parameter values bound at trigger time.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The stage the run waits at, when paused.
    pub paused_at: Option<String>,
    /// Stages in order.
    pub stages: Vec<StageInfo>,
    /// Jobs in plan order.
    pub jobs: Vec<JobInfo>,
    /// The runs its `trigger:` jobs started (their `parent.job` names the job), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstream: Vec<RunSummary>,
}

/// A stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StageInfo {
    /// Name.
    pub name: String,
    /// `jobs` or `approval`.
    pub kind: String,
    /// For approval stages: `pending`, `waiting`, `approved`, `rejected`, `skipped` or
    /// `canceled`.
    pub gate: Option<String>,
    /// For approval stages: the question shown to approvers.
    pub description: Option<String>,
    /// Who decided, and when.
    pub decision: Option<ApprovalInfo>,
}

/// A recorded approval decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalInfo {
    /// `approved` or `rejected`.
    pub decision: String,
    /// Who (a token's name).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A job of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobInfo {
    /// Job id (`test[linux]` for a matrix instance).
    pub id: String,
    /// Stage name.
    pub stage: String,
    /// Jobs it waits for.
    pub needs: Vec<String>,
    /// `pending`, `queued`, `running`, `success`, `failure`, `skipped`, `canceled`, `timeout`
    /// (`kiln_engine::JobState`'s names).
    #[schema(schema_with = job_state_schema)]
    pub state: String,
    /// Attempts started (0 when reused from the retried run).
    pub attempts: u32,
    /// Exit code of the latest attempt.
    pub exit_code: Option<i32>,
    /// `JOB_OUT` outputs of the latest attempt.
    pub outputs: BTreeMap<String, String>,
    /// Why it failed, was skipped or canceled.
    pub reason: Option<String>,
    /// While `queued`: why no node takes it yet ("2 nodes: disabled; 1 node: 8 CPUs asked,
    /// 6 free").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// While its latest attempt is placed or running: the node, its IP and the host ports
    /// given (a port is reached at `ip:host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<pool::JobPlacement>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to end (or to now while it runs).
    pub duration_ms: Option<u64>,
    /// For an array job (`array: N`): where its indexes stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayProgress>,
}

/// Where an array job's indexes stand (done, running, failed; which failed; how long they
/// took), as Slurm's `sacct` and AWS Batch's array properties summarise an array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArrayProgress {
    /// Indexes in all (`array: N`): `0..size`.
    pub size: u32,
    /// At most this many queued or running at once (`parallelism`, else the server's
    /// window).
    pub parallelism: u32,
    /// Indexes that succeeded.
    pub succeeded: u32,
    /// Indexes that failed (or timed out) with no retry left.
    pub failed: u32,
    /// Indexes canceled when the run stopped.
    pub canceled: u32,
    /// Indexes running now.
    pub running: u32,
    /// Indexes handed to the pool, not started yet.
    pub queued: u32,
    /// Indexes not handed out yet (retries waiting included).
    pub pending: u32,
    /// Attempts started beyond each index's first (`retry:` applies per index).
    pub retries: u32,
    /// The failed indexes as ranges, `3,17-19` (empty: none).
    pub failed_indexes: String,
    /// The first failed indexes with why (at most 100).
    pub failures: Vec<IndexFailure>,
    /// How long index attempts took: one bucket per upper bound, the last unbounded.
    pub durations: Vec<DurationBucket>,
}

impl ArrayProgress {
    /// Indexes that ended for good (succeeded, failed, canceled).
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.canceled
    }
}

/// A failed index of an array job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IndexFailure {
    /// The index.
    pub index: u32,
    /// Attempts it had.
    pub attempts: u32,
    /// Why its last attempt failed.
    pub reason: Option<String>,
}

/// One bucket of an array job's durations histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DurationBucket {
    /// Upper bound in milliseconds (inclusive); `None` for the last, unbounded bucket.
    pub le_ms: Option<u64>,
    /// Index attempts that ended within it (above the previous bound).
    pub count: u32,
}

/// Body of `POST /api/v1/runs/{run}/approvals/{stage}` (approve or reject).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRequest {
    /// `approve` (default) or `reject`.
    #[serde(default)]
    pub decision: Option<String>,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Sequence number in its log, from 1, without gaps (the SSE event id).
    pub seq: u64,
    /// When it was seen.
    pub time: DateTime<Utc>,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The job it came from (set in a whole-run log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The text, secrets masked as `***`.
    pub text: String,
    /// What the line marks, on marked lines only: a script line echoed before it ran, a failed
    /// one's exit status, a section's start or end (see `kiln_logs::marks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<LogMark>,
}

/// What a log line marks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogMark {
    /// `command` (an echoed script line, `$ make test`), `continued` (a further line of a
    /// multi-line entry), `exit` (the exit status of a failed entry), `section_start` or
    /// `section_end` (`::group::`/`::endgroup::`, GitLab's `section_start:`/`section_end:`).
    pub kind: String,
    /// The command (`command`, `continued`, `exit`) or the section's name (a `section_end`
    /// without one closes the innermost open section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A section's header text (`section_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A section shown collapsed at first (`section_start`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub collapsed: bool,
    /// The exit status (`exit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// A page of a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// Lines in order.
    pub lines: Vec<LogLine>,
    /// Ask for `from=next` to go on.
    pub next: u64,
    /// The log is complete (the job ended).
    pub closed: bool,
    /// Seq of the last line stored when the page was read (0 for an empty log): with it a
    /// client opens a log at its tail, or sizes a view of the whole log, from any page.
    #[serde(default)]
    pub last: u64,
}

/// A job's stored artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    /// Job id.
    pub job: String,
    /// Attempt that stored them.
    pub attempt: u32,
    /// Size of the archive (tar.gz) in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the archive.
    pub digest: String,
    /// Files inside.
    pub files: Vec<ArtifactFile>,
    /// Stored.
    pub created_at: DateTime<Utc>,
}

/// A file inside an artifact archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactFile {
    /// Path relative to the workspace.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateToken {
    /// A name people recognise; it is what runs and approvals record as "by".
    pub name: String,
    /// `viewer`, `developer`, `admin`, or `agent` (runs agents only; never limited to a project).
    pub role: String,
    /// Limit the token to one project; none means every project.
    #[serde(default)]
    pub project: Option<String>,
}

/// A token (never its secret, except once on creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Project it is limited to.
    pub project: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Answer to a token creation: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token.
    pub token: Token,
    /// The bearer secret (`kiln_…`).
    pub secret: String,
}

/// Body of `PUT /api/v1/projects/{project}/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetSecret {
    /// The value; stored encrypted, injected as env `<name>`, masked in logs.
    pub value: String,
}

/// A project secret (never its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    /// Env name.
    pub name: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last set.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/info`: who the caller is and what the server runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    /// Kiln version.
    pub version: String,
    /// The caller's token name.
    pub token: String,
    /// The caller's role.
    pub role: String,
    /// Connected agents.
    pub agents: Vec<agent::AgentInfo>,
}

/// `GET /api/v1/stats/queue`: queue depth and pool use over the last hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueHistory {
    /// Time between samples.
    pub interval_ms: u64,
    /// Samples, oldest first; the last one is taken at the request.
    pub samples: Vec<QueueSample>,
}

/// The queue and the pool at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueSample {
    /// When.
    pub time: DateTime<Utc>,
    /// Job attempts waiting for an agent.
    pub queued_jobs: u64,
    /// Runs waiting for a `concurrency:` slot.
    pub pending_runs: u64,
    /// Agent slots running an attempt.
    pub busy_slots: u64,
    /// Agent slots in all.
    pub total_slots: u64,
    /// Connected agents.
    pub agents: u64,
}

/// A repository of the registry (`<project>/<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryRepository {
    /// `<project>/<name>`.
    pub name: String,
    /// Its project.
    pub project: String,
    /// Anyone may pull.
    pub public: bool,
    /// When its first push came.
    pub created_at: DateTime<Utc>,
}

/// A tag of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryTag {
    /// Tag.
    pub tag: String,
    /// The manifest digest it names.
    pub digest: String,
}

/// Makes a repository public or private.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetVisibility {
    /// `<project>/<name>`.
    pub repository: String,
    /// Anyone may pull.
    pub public: bool,
}

/// Asks for a garbage collection of the registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryGcRequest {
    /// Leave alone what was pushed or touched within this many seconds (default 3600).
    pub grace_seconds: Option<u64>,
}

/// What a garbage collection freed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryGcReport {
    /// Untagged manifests deleted (`repository@digest`).
    pub manifests: Vec<String>,
    /// Blobs deleted.
    pub blobs: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Blob files no record named, deleted.
    pub orphans: u64,
    /// Abandoned uploads removed.
    pub uploads: u64,
}

/// What a garbage collection of caches and artifacts removed (`POST /api/v1/gc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// Caches evicted (`project/key`), least recently used first: past the age limit or over
    /// the size budget.
    pub caches: Vec<String>,
    /// Artifacts expired (`run/job`): their run ended longer ago than the age limit.
    pub artifacts: Vec<String>,
    /// Files of the blob directory that no record named, older than the grace, deleted.
    pub orphans: u64,
    /// Bytes of files deleted.
    pub bytes_freed: u64,
    /// Bytes of the caches kept.
    pub cache_bytes: u64,
    /// The caches' size budget in bytes.
    pub cache_budget: u64,
}

/// A manifest push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryEvent {
    /// Id.
    pub id: String,
    /// Repository.
    pub repository: String,
    /// The tag pushed, if any.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Who pushed.
    pub actor: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// `push`, or `vulnerability`: newly imported advisories match this stored image.
    #[serde(default = "push_action")]
    pub action: String,
    /// A `vulnerability` event's image's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A `vulnerability` event's new advisory ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}

fn push_action() -> String {
    "push".to_string()
}

/// A project's webhook: the events it takes are POSTed to it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Id.
    pub id: String,
    /// Project.
    pub project: String,
    /// Target URL.
    pub url: String,
    /// What it takes: `push` (registry pushes), `run` (runs started, waiting, ended),
    /// `vulnerability` (newly imported advisories match a stored image).
    #[serde(default)]
    pub events: Vec<String>,
    /// Whether its deliveries carry `X-Kiln-Signature`.
    #[serde(default)]
    pub signed: bool,
    /// The signing secret: in the answer to its creation only, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Adds a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// Target URL (`http://` or `https://`).
    pub url: String,
    /// What it takes: any of `push`, `run`, `vulnerability` (default: `push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// The key deliveries are signed with (HMAC-SHA256, `X-Kiln-Signature: sha256=<hex>`);
    /// default: one generated and returned once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A run event: what `GET /api/v1/runs/events` streams (SSE `data:`) and what a project's
/// `run` webhooks receive as their body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    /// `run.started`, `run.waiting`, `run.succeeded`, `run.failed`, `run.canceled` or
    /// `run.timed_out`.
    pub event: String,
    /// The run after the event.
    pub run: RunEventRun,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// The run a [`RunEvent`] is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEventRun {
    /// Id (a uuid).
    pub id: String,
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Number within the pipeline.
    pub number: u64,
    /// Its state after the event (as in [`RunSummary::state`]).
    pub state: String,
    /// Why it ended or paused, for people.
    pub reason: Option<String>,
    /// Who or what started it.
    pub triggered_by: String,
    /// Where people see it, when the server knows its public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The API's one enum of run states: the engine's names ([`kiln_engine::RunState::as_str`]).
fn run_state_schema() -> utoipa::openapi::schema::Object {
    state_schema(kiln_engine::RunState::ALL.iter().map(|s| s.as_str()), "A run's state.")
}

/// The API's one enum of job states: the engine's names ([`kiln_engine::JobState::as_str`]).
fn job_state_schema() -> utoipa::openapi::schema::Object {
    state_schema(kiln_engine::JobState::ALL.iter().map(|s| s.as_str()), "A job's state.")
}

fn state_schema<'a>(
    names: impl Iterator<Item = &'a str>,
    what: &str,
) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names.map(str::to_string)))
        .description(Some(what))
        .build()
}
