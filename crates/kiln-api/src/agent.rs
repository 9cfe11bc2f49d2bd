//! The lease protocol between the server and its agents (the embedded one speaks it too).
//!
//! 1. `POST /api/v1/agents` registers an agent and returns its id.
//! 2. The agent keeps one `POST /api/v1/agents/{id}/lease` long poll open. The server answers
//!    when it has work for the agent's free slots, when a lease the agent holds is to be
//!    canceled, or after `wait_ms`. Every poll renews the leases the agent lists as `held`;
//!    a lease not renewed for [`LEASE_TTL_MS`] is lost and its attempt fails with an error
//!    (the job's retry policy decides what follows).
//! 3. Per lease, the agent reports events in order: any `waiting`, `started`, then
//!    `log`/`output` lines, then exactly one `exited`, either with `POST /api/v1/leases/{lease}/events` (one lease)
//!    or, for several leases in one request, `POST /api/v1/agents/{id}/events` (a list of
//!    [`LeaseReport`]s; what the agent uses). Files go through
//!    `GET /api/v1/leases/{lease}/inputs/{job}` (artifacts of needed jobs),
//!    `GET|PUT /api/v1/leases/{lease}/cache` and `PUT /api/v1/leases/{lease}/artifacts`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kiln_engine::{Outcome, StartJob};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A lease not renewed for this long is lost.
pub const LEASE_TTL_MS: u64 = 30_000;

/// The version of this protocol. An agent sends it when it registers, the server answers
/// with its own, and a server refuses an agent that speaks another version (with
/// [`crate::codes::AGENT_PROTOCOL`] and a message that says which side to upgrade).
///
/// 1: the first protocol (agents that send no `protocol` speak it). 2: `RegisterAgent`
/// and `AgentInfo` carry `protocol` and `version`. 3: leases of service instances
/// ([`Lease::instance`]: run until stopped, health checked on the agent, `health` events).
/// 4: instances' config files ([`InstanceLease::config`], [`LeaseResponse::config`] updates,
/// `config_applied` events). 5: the image cache ([`RegisterAgent::images`],
/// [`LeaseResponse::prepull`] orders, `POST /api/v1/agents/{id}/images` reports).
/// 6: image builds (a lease's job may be `build:`, `RunSpec::Build`, run by the agent's
/// image builder). 7: an attempt's outcome may be `killed` (out of memory, or a signal from
/// outside Kiln). 8: `waiting` events (why a leased attempt is not started yet, such as a
/// Kubernetes pod that no node takes: shown as the job's waiting reason).
pub const PROTOCOL: u32 = 8;

/// The protocol of an agent that sends no `protocol` field (it predates versioning).
pub const UNVERSIONED_PROTOCOL: u32 = 1;

fn unversioned() -> u32 {
    UNVERSIONED_PROTOCOL
}

/// Why an agent and a server cannot talk, in words that say which one to upgrade; `None`
/// when they speak the same protocol.
pub fn protocol_mismatch(
    agent_version: &str,
    agent_protocol: u32,
    server_version: &str,
    server_protocol: u32,
) -> Option<String> {
    use std::cmp::Ordering;
    let agent = if agent_version.is_empty() {
        "the agent".to_string()
    } else {
        format!("agent {agent_version}")
    };
    let side = match agent_protocol.cmp(&server_protocol) {
        Ordering::Equal => return None,
        Ordering::Less => "upgrade the agent",
        Ordering::Greater => "upgrade the server",
    };
    Some(format!(
        "{agent} speaks protocol {agent_protocol}, server {server_version} protocol \
         {server_protocol}: {side}"
    ))
}

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterAgent {
    /// Unique name (host name by default); re-registering a name replaces the old session
    /// and fails its leases.
    pub name: String,
    /// `docker` or `process`.
    pub executor: String,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// The IP the node is reached at (its host ports are published there); empty: the
    /// address the server sees the agent's requests come from.
    #[serde(default)]
    pub ip: String,
    /// What the host has in all (none declared: the node takes any job that fits its slots).
    #[serde(default)]
    pub resources: Option<crate::pool::Resources>,
    /// Host ports it hands out for `ports:` with host port 0 (default 31000-32000).
    #[serde(default)]
    pub ports: Option<crate::pool::PortRange>,
    /// Its own attributes (operators can set more, or override these, on the server).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, crate::pool::AttrValue>,
    /// Leases it still runs from an earlier session (after a lost connection or a server
    /// restart): the server answers which of them to keep and which to stop.
    #[serde(default)]
    pub held: Vec<String>,
    /// The protocol it speaks ([`PROTOCOL`]; absent: 1).
    #[serde(default = "unversioned")]
    pub protocol: u32,
    /// Its Kiln version, for messages (`0.1.0`).
    #[serde(default)]
    pub version: String,
    /// The images its engine holds (`None`: its executor has none, as the process
    /// executor); later changes come in image reports ([`ImagesReport`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<crate::pool::NodeImage>>,
}

/// Body of `POST /api/v1/agents/{id}/images`: what changed in the agent's image cache, sent
/// only when something did (a pull, a job's image, an eviction, a prepull's end).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImagesReport {
    /// Every image its engine holds now, when that changed since the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<crate::pool::NodeImage>>,
    /// Prepull orders that ended since the last report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepulls: Vec<PrepullDone>,
}

/// A prepull order the agent finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrepullDone {
    /// The order's id ([`PrepullOrder::id`]).
    pub id: String,
    /// Why the pull failed; `None`: the image is on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the pull took, in milliseconds.
    #[serde(default)]
    pub millis: u64,
}

/// An image for the agent to pull now (`kiln nodes prepull`, a workflow's `prepull:`),
/// reported back as a [`PrepullDone`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrepullOrder {
    /// The order's id.
    pub id: String,
    /// The image reference.
    pub image: String,
    /// Credentials for Kiln's registry when the image is there (a pull-only token of the
    /// image's project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullAuth>,
}

/// A connected agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentInfo {
    /// Session id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Executor.
    pub executor: String,
    /// Slots.
    pub capacity: u32,
    /// Leases it holds.
    pub running: u32,
    /// Registered.
    pub connected_at: DateTime<Utc>,
    /// The protocol the server speaks ([`PROTOCOL`]; absent: 1).
    #[serde(default = "unversioned")]
    pub protocol: u32,
    /// The server's Kiln version.
    #[serde(default)]
    pub version: String,
}

/// Body of a lease poll.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseRequest {
    /// Leases the agent still works on (renewed by this poll).
    #[serde(default)]
    pub held: Vec<String>,
    /// Slots free for new work.
    pub free: u32,
    /// Answer after at most this long when nothing happens.
    pub wait_ms: u64,
}

/// Answer to a lease poll.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    /// New work.
    #[serde(default)]
    pub leases: Vec<Lease>,
    /// Held leases to cancel now (kill the task, report `exited` with `canceled`).
    #[serde(default)]
    pub cancel: Vec<String>,
    /// Held leases the server does not know (lost or ended): stop them, report nothing.
    #[serde(default)]
    pub unknown: Vec<String>,
    /// New config releases for held service instances: write each (only when its digest is
    /// not the one written), send its signal, report `config_applied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigUpdate>,
    /// Images to pull now, beside any work; each answered in an image report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepull: Vec<PrepullOrder>,
}

/// A config release for a running service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigUpdate {
    /// The instance's lease.
    pub lease: String,
    /// The release's number.
    pub release: u32,
    /// Its files' digest (`sha256:…`).
    pub digest: String,
    /// Relative file name to contents.
    pub files: BTreeMap<String, String>,
    /// The signal to send once the files changed (`HUP`; no `SIG`), if the service asks for
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// One attempt of one job, leased to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// Lease id.
    pub id: String,
    /// Run id.
    pub run: String,
    /// `project/pipeline#number`, for logs and labels.
    pub run_name: String,
    /// Project name (caches are per project).
    pub project: String,
    /// Index of the job in the plan.
    pub job_index: usize,
    /// The rendered job and its attempt number.
    #[schema(value_type = Object)]
    pub start: StartJob,
    /// Env added on top of the job's (project secrets, `KILN_*` variables).
    pub env: BTreeMap<String, String>,
    /// Jobs whose artifacts to place into the workspace first.
    pub inputs: Vec<String>,
    /// The git commit to check out into the workspace before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Checkout>,
    /// Set for an instance of a service: it runs until the lease is canceled (no timeout,
    /// no artifacts or caches), its health checked by the agent (`health` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceLease>,
    /// Credentials to pull the job's or instance's images from Kiln's own registry: a
    /// pull-only token of the lease's project. Absent when its image is elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullAuth>,
}

/// Credentials for pulling from one registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullAuth {
    /// The registry's `host:port`, as image names start.
    pub registry: String,
    /// User name.
    pub username: String,
    /// The token (never logged).
    pub password: String,
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// What makes a lease an instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceLease {
    /// `project/service`.
    pub service: String,
    /// The instance's id.
    pub instance: String,
    /// Its slot.
    pub slot: u32,
    /// The service version it runs.
    pub version: u32,
    /// How the agent checks its health; none: healthy once running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// The config center's files it gets, written before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<InstanceConfig>,
}

/// An instance's config files: the release of its service's application in its
/// environment that it gets (a gray release naming it included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceConfig {
    /// Where a container sees them (bind-mounted read-only; `KILN_CONFIG_DIR`). A process
    /// gets the agent's directory of them in `KILN_CONFIG_DIR` instead.
    pub path: String,
    /// The release's number (`KILN_CONFIG_RELEASE`).
    pub release: u32,
    /// Its files' digest (`sha256:…`).
    pub digest: String,
    /// Relative file name to contents.
    pub files: BTreeMap<String, String>,
    /// What a later release does to the instance, as the service says (updates carry their
    /// own signal: the agent needs nothing more).
    pub on_change: OnChange,
}

/// What a new config release does to a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum OnChange {
    /// The service is updated by a rolling restart (a gray release is written in place).
    Restart,
    /// The files are rewritten in place, then the instance gets this signal.
    Signal {
        /// Its name without `SIG` (`HUP`).
        signal: String,
    },
    /// The files are rewritten in place; the program watches them itself.
    None,
}

/// A health check the agent runs next to an instance (as Marathon's and Nomad's local
/// checks are), reporting each change as a `health` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    /// What is checked.
    pub probe: Probe,
    /// After the start, failures do not count for this long.
    pub grace_ms: u64,
    /// Between checks.
    pub interval_ms: u64,
    /// One check fails after this long.
    pub timeout_ms: u64,
    /// Consecutive failures that make the instance unhealthy.
    pub failures: u32,
}

/// One health probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connection to the named port (its host port) succeeds.
    Tcp {
        /// The port's name.
        port: String,
    },
    /// An HTTP GET of `path` on the named port answers 2xx or 3xx.
    Http {
        /// The port's name.
        port: String,
        /// The path, from `/`.
        path: String,
    },
    /// The command exits 0 (run in the instance's container, or next to its process).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// A commit to check out into a job's workspace (the workflow's `source`).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checkout {
    /// Clone URL, as the workflow's `source` wrote it.
    pub repository: String,
    /// The ref it was pushed as (`refs/heads/main`); empty: the remote's default branch.
    pub git_ref: String,
    /// The commit; empty: whatever `git_ref` points at now.
    pub commit: String,
    /// HTTP credentials: a token, or `user:token` (a project secret; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("repository", &self.repository)
            .field("git_ref", &self.git_ref)
            .field("commit", &self.commit)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

/// One thing that happened to a leased attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Before `started`: why the attempt waits (its pod is created but no node takes it:
    /// the scheduler's reason). Sent again when the reason changes; the server shows the
    /// latest as the job's waiting reason until `started`.
    Waiting {
        /// The reason, one line (`Unschedulable: 0/3 nodes are available: …`).
        reason: String,
    },
    /// The main container or process started.
    Started,
    /// A line of output.
    Log {
        /// `stdout` or `stderr`.
        stream: String,
        /// When the agent saw it.
        time: DateTime<Utc>,
        /// The raw text (the server masks secrets before storing).
        text: String,
    },
    /// A service instance's health changed (or was first established).
    Health {
        /// Passing or not.
        healthy: bool,
        /// What the last check saw (`connection refused`, `HTTP 503`, `exit 1`).
        detail: String,
    },
    /// A service instance's config files are those of this release (written, or the same
    /// bytes already there).
    ConfigApplied {
        /// The release.
        release: u32,
        /// Its digest.
        digest: String,
    },
    /// A `JOB_OUT key=value` line.
    Output {
        /// Name.
        key: String,
        /// Value.
        value: String,
    },
    /// The attempt ended; the last event of a lease.
    Exited {
        /// How.
        #[schema(value_type = Object)]
        outcome: Outcome,
    },
}

/// The events of one lease in a batch report (`POST /api/v1/agents/{id}/events`), in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseReport {
    /// Lease id.
    pub lease: String,
    /// Its events since the last report, in order.
    pub events: Vec<AgentEvent>,
}

/// Answer to a batch report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportsResponse {
    /// Reported leases that were canceled: kill their tasks.
    #[serde(default)]
    pub cancel: Vec<String>,
    /// Reported leases the server does not know (lost, canceled or ended): their events were
    /// dropped; stop their tasks and report nothing more of them.
    #[serde(default)]
    pub unknown: Vec<String>,
}

/// Answer to an events post.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    /// The lease was canceled: kill the task.
    pub cancel: bool,
}

/// Query of `GET|PUT /api/v1/leases/{lease}/cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct CacheQuery {
    /// The final cache key (templated key plus the hash of `cache.files`).
    pub key: String,
}
