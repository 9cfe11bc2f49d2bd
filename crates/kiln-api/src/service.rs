//! Services in the REST API: applying a service file, its state with its instances (what
//! discovery serves), its versions, scaling and rolling back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `PUT /api/v1/projects/{project}/services/{service}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyService {
    /// The service file (`kind: service`).
    pub yaml: String,
    /// Its file name, for diagnostics.
    #[serde(default)]
    pub file: Option<String>,
    /// Why, kept with the version.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `POST .../services/{service}/scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScaleService {
    /// The new number of replicas (0 to 1000).
    pub replicas: u32,
}

/// Body of `POST .../services/{service}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RollbackService {
    /// The version to return to; the one before the current when absent.
    #[serde(default)]
    pub to: Option<u32>,
}

/// A service and its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    /// Project name.
    pub project: String,
    /// Service name.
    pub name: String,
    /// The latest version (every apply, scale and rollback makes one).
    pub version: u32,
    /// The version whose spec every slot should run.
    pub template: u32,
    /// The last template every slot ran healthy.
    pub stable: u32,
    /// Slots.
    pub replicas: u32,
    /// `deploying` (the first version is not yet healthy everywhere), `running`, `updating`
    /// or `stopped`.
    pub state: String,
    /// Healthy instances of the desired template.
    pub healthy: u32,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// How a new template replaces its instances (absent when its spec could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSettings>,
    /// Its instances, by slot.
    pub instances: Vec<InstanceInfo>,
    /// Slots that are not what they should be, and why.
    pub waits: Vec<SlotWait>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The run that owns it, for a build-scoped pool (`service-pools` of a workflow): it is
    /// deleted when that run (or job) ends. Absent for a service applied by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ServiceOwner>,
    /// The deployments it runs, for a deployed service (`<name>-<environment>`, made by
    /// `kiln deploy`): only deploys change it. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<ServiceDeployed>,
}

/// What a deployed service runs: the deployments of a service file to an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceDeployed {
    /// The service file's name.
    pub service: String,
    /// The environment.
    pub environment: String,
}

/// The run (and job) that owns a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceOwner {
    /// The run's id.
    pub run: String,
    /// `project/pipeline#number`.
    pub run_name: String,
    /// The job, for a job's own pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The pool's name in the workflow.
    pub pool: String,
}

/// A service's rolling-update settings: as its file writes them, and resolved for its
/// replicas as the controller uses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateSettings {
    /// `max-surge` as written: a count (`1`) or a percentage of replicas (`25%`).
    pub max_surge: String,
    /// `max-unavailable` as written.
    pub max_unavailable: String,
    /// Instances that may run above `replicas` during an update, for the current replicas.
    pub surge: u32,
    /// Instances of `replicas` that may be unavailable during an update, for the current
    /// replicas.
    pub unavailable: u32,
    /// An update not healthy by then rolls back by itself, in milliseconds.
    pub deadline_ms: u64,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceInfo {
    /// Id.
    pub id: String,
    /// Slot.
    pub slot: u32,
    /// The template version it runs.
    pub version: u32,
    /// `staging`, `starting`, `healthy`, `unhealthy`, `stopping`, `lost` or `failed`.
    pub state: String,
    /// Why it is in that state (the last health check, the exit, the node lost).
    pub reason: Option<String>,
    /// The node it runs on.
    pub node: Option<String>,
    /// The node's IP.
    pub host_ip: Option<String>,
    /// Named ports and their host ports.
    pub ports: BTreeMap<String, u16>,
    /// Consecutive failures of its slot before it.
    pub restarts: u32,
    /// When it entered its state.
    pub since: DateTime<Utc>,
}

/// Why a slot waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlotWait {
    /// Slot.
    pub slot: u32,
    /// Why.
    pub reason: String,
}

/// One version of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceVersion {
    /// Version number, from 1.
    pub version: u32,
    /// The version whose spec it runs (itself for an apply that changed the spec).
    pub template: u32,
    /// Replicas.
    pub replicas: u32,
    /// `apply`, `scale`, `restart`, `rollback`, `auto-rollback` or `stop`.
    pub kind: String,
    /// The note given, or why it was made.
    pub note: Option<String>,
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One Prometheus `http_sd` target group: an instance's address and its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SdTarget {
    /// `host:port`.
    pub targets: Vec<String>,
    /// `project`, `service`, `instance`, `node`, `slot`, `version`, and the service's labels
    /// (names made Prometheus-safe: other characters than letters, digits and `_` become `_`).
    pub labels: BTreeMap<String, String>,
}

/// One change of the service event log, as a discovery watch streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryEvent {
    /// Its revision (the SSE event id; resume after it with `Last-Event-ID` or `after`).
    pub revision: u64,
    /// Project name.
    pub project: String,
    /// Service name.
    pub service: String,
    /// What happened (`staging`, `started`, `healthy`, `unhealthy`, `stopping`, `stopped`,
    /// `failed`, `lost`, `forgotten`, `deleted`).
    pub kind: String,
    /// The instance as it is after the change (none for `deleted`).
    pub instance: Option<InstanceInfo>,
    /// When.
    pub at: DateTime<Utc>,
}
