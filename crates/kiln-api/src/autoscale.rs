//! The elastic pool on the wire: node groups (as a `kind: node-group` file writes them and
//! `PUT /api/v1/pool/groups` takes them), their nodes and provider state, and the
//! autoscaler's events. Like cluster-autoscaler's node groups: bounds, a node template, and a
//! provider that adds and removes machines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::pool::AttrValue;

/// An amount written as a number or as text with a unit (`4`, `0.5`, `500m`, `8Gi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Amount {
    /// A plain number: cores for CPU, bytes for memory and disk.
    Number(f64),
    /// Text with a unit.
    Text(String),
}

impl Amount {
    /// The amount as text (a number as Rust prints it).
    pub fn text(&self) -> String {
        match self {
            Amount::Number(n) => format!("{n}"),
            Amount::Text(t) => t.clone(),
        }
    }
}

/// A node group: what its nodes look like, how many of them, and who makes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeGroupSpec {
    /// `node-group` (in a file; optional on the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The group's name: letters, digits, `-` and `_`; its nodes carry the attribute
    /// `group=<name>`.
    pub name: String,
    /// Fewest nodes kept, idle or not (default 0).
    #[serde(default)]
    pub min: u32,
    /// Most nodes at once, those asked for and not registered yet included.
    pub max: u32,
    /// How long a node runs nothing before it is drained and removed (down to `min`);
    /// default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_time: Option<String>,
    /// What each node of the group declares when its agent registers.
    pub node: NodeTemplate,
    /// Who adds and removes the group's machines.
    pub provider: ProviderSpec,
}

/// What each node of a group declares (as `kiln agent` flags would).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeTemplate {
    /// CPU cores (`4`, `0.5`, `500m`).
    pub cpus: Amount,
    /// Memory (`8Gi`, or bytes).
    pub memory: Amount,
    /// Disk of the agent's work directory (`50Gi`); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Amount>,
    /// Host ports handed out to jobs (`31000-32000`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// Jobs at once (the agent's `--capacity`, default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Attributes (`city: paris`, `cores: 8`, a list for a set); `group` is added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, AttrValue>,
}

/// A group's provider: a command or an HTTP hook (exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProviderSpec {
    /// A program and its arguments, run on the server's host as `PROGRAM ARGS... up N` and
    /// `PROGRAM ARGS... down NODE...` (docs/pool.md: the hook contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A URL that gets `POST`ed the same requests as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// More environment variables for the command, or headers for the HTTP hook.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Longest a call may take before it is killed and counted as failed (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Longest a node asked for may take to register before it is given up (and removed
    /// through the provider); default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_timeout: Option<String>,
    /// The first wait after a failed call; it doubles with each failure, up to 5 minutes
    /// (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// A node group with its nodes now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeGroupInfo {
    /// The group as applied.
    pub spec: NodeGroupSpec,
    /// Its nodes: those asked for and those registered with `group=<name>`.
    pub nodes: Vec<PoolNode>,
    /// The provider's last failure, while its calls back off.
    pub failure: Option<ProviderFailure>,
    /// When it was last applied with a change.
    pub updated_at: DateTime<Utc>,
}

/// A node of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolNode {
    /// The node's (agent's) name.
    pub name: String,
    /// `coming` (asked for, not registered yet), `ready`, `draining` (no new work; removed
    /// once its work ended) or `removing` (the provider was asked to remove it).
    pub state: String,
    /// Tasks placed on it now.
    pub running: u32,
    /// How long it has run nothing, in milliseconds (ready nodes).
    pub idle_ms: Option<u64>,
}

/// A provider call that failed, and when the next one may be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderFailure {
    /// `up` or `down`.
    pub action: String,
    /// What went wrong.
    pub error: String,
    /// Failures in a row.
    pub failures: u32,
    /// No call before this.
    pub retry_at: DateTime<Utc>,
}

/// What `PUT /api/v1/pool/groups` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppliedNodeGroup {
    /// `created`, `updated` or `unchanged`.
    pub change: String,
    /// The group now.
    pub group: NodeGroupInfo,
}

/// One of the autoscaler's decisions or what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolEvent {
    /// Increasing id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The group (empty for a task no group takes).
    pub group: String,
    /// `scale-out`, `node-registered`, `drain`, `scale-in`, `node-removed`,
    /// `provider-failed`, `boot-timeout`, `no-group-fits`, `at-max`, `group-applied`,
    /// `group-deleted`.
    pub kind: String,
    /// The nodes it names.
    pub nodes: Vec<String>,
    /// Why.
    pub reason: String,
}

/// The JSON body the HTTP hook is `POST`ed (the command gets the same as arguments and
/// environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderRequest {
    /// `up` or `down`.
    pub action: String,
    /// The group.
    pub group: String,
    /// `up`: how many nodes to start.
    pub count: u32,
    /// `up`: the names the new agents should register with (`--name`); `down`: the nodes
    /// to remove.
    pub nodes: Vec<String>,
    /// The server's URL, for the agents (`KILN_SERVER`).
    pub server: String,
    /// `kiln agent` flags that declare the group's template (`--attribute group=NAME`,
    /// `--cpus`, `--memory`, `--disk`, `--ports`, `--capacity`).
    pub agent_args: Vec<String>,
}

/// What a provider may answer (stdout of the command, body of the HTTP hook); nothing at
/// all means the nodes asked for, by the names given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderAnswer {
    /// `up`: the names the new agents will register with, when not the ones given.
    #[serde(default)]
    pub nodes: Vec<String>,
}
