//! Records the store hands out and takes in, and the text form of enums in the database.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use kiln_engine::{Event, JobState, RunState};
use kiln_workflow::plan::JobId;
use serde::{Deserialize, Serialize};

use crate::{PipelineId, ProjectId, RunId, StoreError, TokenId};

/// A project: a namespace of pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Id.
    pub id: ProjectId,
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A pipeline: a named workflow in a project, versioned on every change of its YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Id.
    pub id: PipelineId,
    /// Its project.
    pub project_id: ProjectId,
    /// Its project's name.
    pub project: String,
    /// Name, unique in its project.
    pub name: String,
    /// The workflow as written.
    pub yaml: String,
    /// The file name diagnostics name (`<name>.yml` when none was given).
    pub file: String,
    /// Template files its `uses:` reads, by resolved path.
    pub files: BTreeMap<String, String>,
    /// 1 when created, plus one for every change of `yaml`.
    pub version: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When `yaml` last changed.
    pub updated_at: DateTime<Utc>,
}

impl Pipeline {
    /// `project/name`, as shown to people.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.project, self.name)
    }
}

/// A workflow as stored: the entry file's name and text, and the template files it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSource {
    /// The entry file's name (diagnostics name it).
    pub file: String,
    /// The entry file's text.
    pub yaml: String,
    /// Template files by the path `uses:` resolves to.
    pub files: BTreeMap<String, String>,
}

/// What is needed to create a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// The pipeline to run; its current YAML and version are copied into the run.
    pub pipeline: PipelineId,
    /// Bound parameters, as JSON (the server decides the shape; usually an object).
    pub params: serde_json::Value,
    /// Who or what started it (`user:alice`, `cron`, `webhook:github`).
    pub triggered_by: String,
    /// The run this one retries: an earlier run of the same pipeline, whose successful jobs
    /// (and their artifacts, see [`crate::Store::copy_artifacts`]) it may reuse.
    #[serde(default)]
    pub retry_of: Option<RunId>,
    /// The commit it builds, when git started it (a retry keeps its run's).
    #[serde(default)]
    pub source: Option<RunSource>,
}

/// The commit a run builds and what in the repository started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSource {
    /// `github`, `gitlab` or `gitea`.
    pub provider: String,
    /// `push` or `pull_request`.
    pub event: String,
    /// The repository as the provider names it (`owner/name`).
    pub repository: String,
    /// Its clone URL as the provider gave it (used when `source:` names `owner/name` only).
    #[serde(default)]
    pub clone_url: String,
    /// The full ref (`refs/heads/main`, `refs/tags/v1`, `refs/pull/4/head`).
    pub git_ref: String,
    /// Branch name, for branch pushes and pull requests (their source branch).
    #[serde(default)]
    pub branch: Option<String>,
    /// Tag name, for tag pushes.
    #[serde(default)]
    pub tag: Option<String>,
    /// The commit to build (40 hex digits).
    pub commit: String,
    /// Its message.
    #[serde(default)]
    pub message: String,
    /// Its author (`Name <email>`).
    #[serde(default)]
    pub author: String,
    /// Pull/merge request number, its target branch and the activity.
    #[serde(default)]
    pub pull_request: Option<PullRequestRef>,
}

/// The pull/merge request a run builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    /// Number (GitLab's `iid`).
    pub number: u64,
    /// Target branch.
    pub target: String,
    /// `opened`, `synchronize`, `reopened`, `closed` or `merged`.
    pub action: String,
}

/// A run of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// Its pipeline.
    pub pipeline_id: PipelineId,
    /// Its project's name.
    pub project: String,
    /// Its pipeline's name.
    pub pipeline: String,
    /// 1, 2, 3… per pipeline, without gaps.
    pub number: u64,
    /// The pipeline version it runs (its YAML is in [`crate::Store::run_yaml`]).
    pub pipeline_version: u32,
    /// State.
    pub state: RunState,
    /// Bound parameters.
    pub params: serde_json::Value,
    /// Who or what started it.
    pub triggered_by: String,
    /// Why it ended or paused, for people.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it first entered `running`.
    pub started_at: Option<DateTime<Utc>>,
    /// When it entered a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The run it retries, if it is a retry (cleared if that run is deleted).
    #[serde(default)]
    pub retry_of: Option<RunId>,
    /// The commit it builds, when git started it.
    #[serde(default)]
    pub source: Option<RunSource>,
    /// The run and job that started it (a trigger job), if any.
    #[serde(default)]
    pub parent: Option<RunParent>,
    /// The group it was started in (with other runs, shown together), if any.
    #[serde(default)]
    pub group: Option<crate::GroupId>,
    /// The token whose rights its trigger jobs act with: that of the API call that started
    /// it, or its upstream run's. `None`: the server started it (a push, a schedule).
    #[serde(default)]
    pub author: Option<TokenId>,
}

/// The run and job that started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunParent {
    /// The upstream run.
    pub run: RunId,
    /// `project/pipeline#number` of the upstream run.
    pub name: String,
    /// The trigger job's id.
    pub job: String,
}

impl Run {
    /// `project/pipeline#number`, as shown to people.
    pub fn full_name(&self) -> String {
        format!("{}/{}#{}", self.project, self.pipeline, self.number)
    }
}

/// Which runs [`crate::Store::runs`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFilter {
    /// Only this pipeline's.
    pub pipeline: Option<PipelineId>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// At most this many (the newest); `None` is 100.
    pub limit: Option<u32>,
    /// Only runs of this project (by name).
    pub project: Option<String>,
    /// Only runs listed after this one (older, in the list's order): the next page of a list
    /// whose last run was this one. A run that does not exist matches nothing.
    pub before: Option<RunId>,
}

/// One entry of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// 1, 2, 3… per run, strictly increasing, in the order appended.
    pub seq: u64,
    /// The engine event.
    pub event: Event,
    /// When it was appended.
    pub at: DateTime<Utc>,
}

/// What is known of one job of a run (the engine's `JobStatus` plus times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id in the plan.
    pub job: JobId,
    /// State.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Exit code of the latest attempt, if it exited.
    pub exit_code: Option<i32>,
    /// Outputs of the latest attempt.
    pub outputs: BTreeMap<String, String>,
    /// Why it failed or was skipped or canceled, for people.
    pub reason: Option<String>,
    /// When its first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What one step of the engine changed in a run, written by [`crate::Store::record_step`] in
/// one transaction: the events it handled, the run's new state if it changed, and the jobs
/// whose records changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Events to append to the run's log, in order.
    pub events: Vec<Event>,
    /// The run's new state and, if given, its new reason (as [`crate::Store::set_run_state`]).
    pub state: Option<(RunState, Option<String>)>,
    /// Job records to insert or replace.
    pub jobs: Vec<JobRecord>,
    /// Attempts that started holding a reservation: their usage rows are opened.
    pub usage_starts: Vec<crate::UsageStart>,
    /// Attempts that ended: their usage rows are completed.
    pub usage_ends: Vec<crate::UsageEnd>,
    /// Array jobs whose progress changed: their rows are replaced.
    pub arrays: Vec<ArrayRecord>,
}

/// Where an array job stands (`array: N`): one row per array job, never per index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayRecord {
    /// The array job.
    pub job: JobId,
    /// The server's progress summary, as JSON (the API's `ArrayProgress`).
    pub progress: String,
}

/// The decision on an approval stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    /// The run may go on.
    Approved,
    /// The run ends canceled.
    Rejected,
}

/// A recorded decision on an approval stage of a run; a stage is decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Run.
    pub run: RunId,
    /// Stage name.
    pub stage: String,
    /// Decision.
    pub decision: ApprovalDecision,
    /// Who decided.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs an agent: the agent API only (register, leases, logs, reports), nothing else.
    Agent,
    /// Read.
    Viewer,
    /// Read, run, approve.
    Developer,
    /// Everything, including tokens.
    Admin,
}

/// What is needed to create a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// A label for people (`ci-bot`, `alice laptop`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Limit the token to one project; `None` for all.
    pub project: Option<ProjectId>,
}

/// An API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Id.
    pub id: TokenId,
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The only project it may touch, if limited.
    pub project: Option<ProjectId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last verified.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token never verifies.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token's plaintext secret (`kiln_` + 64 hex digits), shown once at creation. `Debug`
/// does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(pub(crate) String);

impl TokenSecret {
    /// The secret, to hand to the user once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(kiln_…)")
    }
}

/// A secret's value sealed by the server (AES-GCM): the store keeps these bytes and never sees
/// the plaintext. `Debug` prints only the key id: not the bytes, nor their length.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Which of the server's keys sealed it (so that keys can be rotated).
    pub key_id: String,
    /// The nonce used to seal it.
    pub nonce: Vec<u8>,
    /// The sealed value (with its authentication tag).
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// What may be shown of a secret: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name (`[A-Z_][A-Z0-9_]*`, the environment variable a job sees).
    pub name: String,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When its value last changed.
    pub updated_at: DateTime<Utc>,
}

/// One file inside a job's artifact archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// Path inside the archive (relative, `/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// What is needed to record a job's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewArtifact {
    /// Run.
    pub run: RunId,
    /// Job of the run.
    pub job: JobId,
    /// The attempt that uploaded them (1 for the first).
    pub attempt: u32,
    /// Path of the archive relative to the blob directory (no `.` or `..` parts).
    pub blob: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// Hex SHA-256 of the archive (64 lower-case hex digits).
    pub sha256: String,
    /// The files inside the archive.
    pub files: Vec<ArtifactFile>,
}

/// A job's recorded artifacts (its latest attempt's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Run.
    pub run: RunId,
    /// Job of the run.
    pub job: JobId,
    /// The attempt that uploaded them.
    pub attempt: u32,
    /// Path of the archive relative to the blob directory; rows copied to a retried run share
    /// the blob of the original.
    pub blob: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// Hex SHA-256 of the archive.
    pub sha256: String,
    /// The files inside the archive.
    pub files: Vec<ArtifactFile>,
    /// When they were recorded (for a copied row: when the original was).
    pub created_at: DateTime<Utc>,
    /// When the garbage collector expired them (their run ended too long ago): the row no
    /// longer names a live blob and stays only to say so.
    pub expired_at: Option<DateTime<Utc>>,
}

/// What [`crate::Store::expire_artifacts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredArtifacts {
    /// The rows expired by this call.
    pub records: Vec<ArtifactRecord>,
    /// Their blobs that no live row (artifact or cache) names any more: the caller deletes
    /// these files, and only these.
    pub unnamed_blobs: Vec<String>,
}

/// A job cache of a project: a blob stored under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Project.
    pub project_id: ProjectId,
    /// Key, unique in the project.
    pub key: String,
    /// Path of the blob relative to the blob directory.
    pub blob: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// When this blob was stored under the key.
    pub created_at: DateTime<Utc>,
    /// When it was last stored or looked up (for eviction).
    pub last_used_at: DateTime<Utc>,
}

/// Database text of an enum, and back.
pub(crate) trait DbText: Sized + Copy + 'static {
    /// Every value with its text.
    const ALL: &'static [(Self, &'static str)];
    /// What it is, for errors.
    const WHAT: &'static str;

    /// The text stored.
    fn text(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL.iter().find(|(v, _)| *v == self).map_or("", |(_, s)| s)
    }

    /// Reads the stored text.
    fn from_db(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown {} `{s}`", Self::WHAT)))
    }
}

/// The engine's states are stored by their one set of names (`as_str`).
macro_rules! engine_state_db_text {
    ($ty:ty, $what:literal) => {
        impl DbText for $ty {
            const ALL: &'static [(Self, &'static str)] = &[];
            const WHAT: &'static str = $what;

            fn text(self) -> &'static str {
                self.as_str()
            }

            fn from_db(s: &str) -> Result<Self, StoreError> {
                s.parse().map_err(|e: kiln_engine::UnknownState| StoreError::Corrupt(e.to_string()))
            }
        }
    };
}

engine_state_db_text!(RunState, "run state");
engine_state_db_text!(JobState, "job state");

impl DbText for ApprovalDecision {
    const ALL: &'static [(Self, &'static str)] =
        &[(ApprovalDecision::Approved, "approved"), (ApprovalDecision::Rejected, "rejected")];
    const WHAT: &'static str = "approval decision";
}

impl DbText for Role {
    const ALL: &'static [(Self, &'static str)] = &[
        (Role::Agent, "agent"),
        (Role::Viewer, "viewer"),
        (Role::Developer, "developer"),
        (Role::Admin, "admin"),
    ];
    const WHAT: &'static str = "role";
}

/// Converts a stored integer to a narrower type.
pub(crate) fn int<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} out of range")))
}

/// Whether `name` can name a project or pipeline: 1 to 64 of `[A-Za-z0-9._-]`, starting with
/// a letter or digit (so `project/pipeline#number` is unambiguous and names are safe in URLs).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks a project or pipeline name (see [`is_valid_name`]).
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), StoreError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{kind} name `{name}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

/// Converts a size or count to the database's signed integer.
pub(crate) fn db_int(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

/// Checks a path relative to the blob directory: non-empty, `/`-separated, no empty, `.` or
/// `..` part, no `\` or control character, at most 1024 bytes. A row must not be able to
/// point outside the blob directory.
pub(crate) fn check_blob(what: &str, blob: &str) -> Result<(), StoreError> {
    let ok = !blob.is_empty()
        && blob.len() <= 1024
        && !blob.contains('\\')
        && !blob.chars().any(char::is_control)
        && blob.split('/').all(|part| !matches!(part, "" | "." | ".."));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "blob path `{blob}` of {what} is not valid: use a relative `/`-separated path inside the blob directory, without empty, `.` or `..` parts"
        )))
    }
}
