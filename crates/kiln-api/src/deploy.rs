//! Deploys in the REST API: a service file deployed to an environment with an image of Kiln's
//! registry (pinned to its digest), the history of an environment's deployments, approvals on
//! protected environments, rollbacks, promotions to the next environment, and the board of
//! what runs where.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /api/v1/projects/{project}/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeployRequest {
    /// The service file (`kind: service`).
    pub yaml: String,
    /// Its file name, for diagnostics.
    #[serde(default)]
    pub file: Option<String>,
    /// The environment to deploy to.
    pub environment: String,
    /// An image of Kiln's registry: `shop/web:7`, `<registry host>/shop/web:7` or
    /// `shop/web@sha256:…`.
    pub image: String,
    /// Why, kept with the deployment.
    #[serde(default)]
    pub note: Option<String>,
    /// How long the new version may take to be healthy everywhere before it is rolled back
    /// (default: the file's `update.deadline`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Body of `POST .../deployments/{service}/{env}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RollbackDeployment {
    /// The deployment to return to; default: the succeeded one before the current one.
    #[serde(default)]
    pub to: Option<u32>,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `POST .../deployments/{service}/promote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromoteRequest {
    /// The environment whose current deployment is promoted.
    pub from: String,
    /// The environment right after it in the project's order.
    pub to: String,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
    /// Only say what would change; store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a promotion changes (or would change) in its target environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromoteChanges {
    /// The digest the target runs now (none before its first deployment).
    pub digest_from: Option<String>,
    /// The digest it runs after the promotion (the source environment's).
    pub digest_to: String,
    /// The config release of the target's current deployment.
    pub config_from: Option<u32>,
    /// The target's current config release, which the promotion runs with.
    pub config_to: Option<u32>,
    /// Whether the service's spec (apart from its image) differs from the target's current
    /// one.
    pub spec_changed: bool,
}

/// The answer of a promotion: the deployment it made (none for a dry run) and its changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromoteOutcome {
    /// The new deployment of the target environment; `null` on a dry run.
    pub deployment: Option<Deployment>,
    /// What changes.
    pub changes: PromoteChanges,
}

/// The config release a deployment runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployConfig {
    /// The config center's application.
    pub app: String,
    /// Its release in the environment when deployed.
    pub release: u32,
}

/// The workflow run (and job) that made a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployRun {
    /// The run's id.
    pub id: String,
    /// `project/pipeline#number`.
    pub name: String,
    /// The job.
    pub job: String,
}

/// A deployment of a service file to an environment. Immutable except its state, approval,
/// end and service version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    /// Project name.
    pub project: String,
    /// The service file's name (`api`).
    pub service: String,
    /// The environment.
    pub environment: String,
    /// 1, 2, 3… per project, service and environment.
    pub number: u32,
    /// `deploy`, `rollback`, `promote` or `auto-rollback`.
    pub kind: String,
    /// `pending` (waits for approval), `running`, `succeeded` (the environment's current
    /// one), `failed`, `rolled_back`, `rejected` or `superseded` (a later one succeeded).
    pub state: String,
    /// The image as asked (`shop/web:7`).
    pub image: String,
    /// Its manifest's digest (`sha256:…`).
    pub digest: String,
    /// What the service runs: `<registry host>/shop/web@sha256:…`.
    pub image_ref: String,
    /// The environment's config release when deployed; `null` for a service without config.
    pub config: Option<DeployConfig>,
    /// The service that runs it (`api-staging`).
    pub service_name: String,
    /// The version of that service it made; `null` until applied.
    pub service_version: Option<u32>,
    /// The workflow run that deployed it; `null` for a deployment asked by hand.
    pub run: Option<DeployRun>,
    /// Who asked (`kiln` for an automatic rollback).
    pub asked_by: String,
    /// When.
    pub asked_at: DateTime<Utc>,
    /// Who approved it (a protected environment's).
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why, as the asker said.
    pub note: Option<String>,
    /// Why it failed, was rolled back or rejected.
    pub reason: Option<String>,
    /// The deployment whose image and spec it brings back (rollback, auto-rollback).
    pub rollback_of: Option<u32>,
    /// The environment a promotion took its image and spec from.
    pub promoted_from: Option<String>,
}

impl Deployment {
    /// Whether its state no longer changes (`superseded` aside, which a later success sets).
    pub fn is_final(&self) -> bool {
        !matches!(self.state.as_str(), "pending" | "running")
    }
}

/// The environments board: the project's environments in order, and per service and
/// environment what runs there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentBoard {
    /// The environments, in the project's order.
    pub environments: Vec<String>,
    /// One cell per service and environment with a deployment.
    pub cells: Vec<BoardCell>,
}

/// What runs of one service in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoardCell {
    /// The service file's name.
    pub service: String,
    /// The environment.
    pub environment: String,
    /// The current (succeeded) deployment, or, before the first success, the newest one.
    pub deployment: Deployment,
    /// The deployment waiting for approval or running, if one is.
    pub active: Option<Deployment>,
    /// Healthy instances of the deployed service's current version.
    pub healthy: u32,
    /// Its replicas.
    pub replicas: u32,
}
