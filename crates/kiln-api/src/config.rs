//! The config center in the REST API: an application's config items (templates) and values,
//! renders, diffs, releases (with approval on protected environments, gray releases and
//! rollbacks), its audit log, and the delivery of a release to consumers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An application with config, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigAppSummary {
    /// Project name.
    pub project: String,
    /// Application name.
    pub name: String,
    /// Its item files, by name.
    pub files: Vec<String>,
    /// The environments it has values for.
    pub environments: Vec<String>,
    /// Last change of its items or values.
    pub updated_at: DateTime<Utc>,
}

/// An application's config: items, shared values and values per environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigApp {
    /// Project name.
    pub project: String,
    /// Application name.
    pub name: String,
    /// Its items: one template per file.
    pub items: Vec<ConfigItem>,
    /// The values every environment shares (YAML).
    pub shared_values: String,
    /// Each environment's values (YAML), laid over the shared ones.
    pub values: Vec<EnvValues>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change of its items or values.
    pub updated_at: DateTime<Utc>,
}

/// One config item: a file rendered from a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigItem {
    /// The file's name (a relative path).
    pub file: String,
    /// Its template (minijinja).
    pub template: String,
    /// Who set it last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// An application's values in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvValues {
    /// The environment.
    pub environment: String,
    /// The values (YAML).
    pub yaml: String,
    /// Who set them last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// Body of `PUT .../apps/{app}/templates/{file}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetTemplate {
    /// The template (minijinja); its syntax is checked before it is stored.
    pub template: String,
}

/// Body of `PUT .../apps/{app}/values` and `.../values/{env}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetValues {
    /// A YAML map of values; checked before it is stored.
    pub yaml: String,
    /// The file name diagnostics give (default `values/shared.yml`, `values/<env>.yml`).
    #[serde(default)]
    pub file: Option<String>,
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EditResult {
    /// `changed` or `unchanged`.
    pub change: String,
}

/// One render of an application in an environment (a preview: nothing is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rendered {
    /// Project name.
    pub project: String,
    /// Application name.
    pub app: String,
    /// Environment name.
    pub environment: String,
    /// The rendered files, by name.
    pub files: BTreeMap<String, String>,
    /// Their digest (`sha256:…`).
    pub digest: String,
}

/// A diff between two sets of rendered files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigDiff {
    /// What the old side is (`release-3`, `staging`).
    pub from: String,
    /// What the new side is (`draft`, `prod`, `release-4`).
    pub to: String,
    /// The files that differ, by name.
    pub files: Vec<FileDiff>,
    /// Every file's unified diff, one after the other (empty: no difference).
    pub unified: String,
}

/// One file that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileDiff {
    /// The file's name.
    pub file: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// Its unified diff.
    pub unified: String,
}

/// Body of `POST .../apps/{app}/envs/{env}/releases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    /// Why, kept with the release.
    #[serde(default)]
    pub note: Option<String>,
    /// A gray release: only these instances (the `instance` consumers name) get it.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Release the gray release that is out to everyone (nothing is rendered).
    #[serde(default)]
    pub all: bool,
}

/// Body of `POST .../apps/{app}/envs/{env}/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The release whose files come back (in a new release).
    pub to: u32,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
}

/// What a release, rollback, approval or rejection did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseOutcome {
    /// `released`, `gray`, `pending` (waits for approval), `unchanged` (nothing to release:
    /// the audience already gets these files), `promoted` (a gray release to everyone) or
    /// `rejected`.
    pub outcome: String,
    /// What happened, in words.
    pub message: String,
    /// The release made or decided; for `unchanged`, the one that already has the files.
    pub release: ConfigRelease,
}

/// A release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigRelease {
    /// Its number (1, 2, 3… per application and environment).
    pub number: u32,
    /// `pending`, `released` or `rejected`.
    pub state: String,
    /// `release` or `rollback`.
    pub kind: String,
    /// A rollback's source release.
    pub rollback_of: Option<u32>,
    /// A gray release's instances (empty: to everyone).
    pub instances: Vec<String>,
    /// Everyone gets it now.
    pub current: bool,
    /// It is the gray release out now.
    pub gray: bool,
    /// Its files' digest.
    pub digest: String,
    /// Its file names.
    pub files: Vec<String>,
    /// Why.
    pub note: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Who approved or rejected it (protected environments).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who released it (a gray release) to everyone.
    pub promoted_by: Option<String>,
    /// When.
    pub promoted_at: Option<DateTime<Utc>>,
}

/// A release with its files and what they were rendered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigReleaseDetail {
    /// The release.
    pub release: ConfigRelease,
    /// Its files, by name.
    pub files: BTreeMap<String, String>,
    /// The templates rendered, by file.
    pub templates: BTreeMap<String, String>,
    /// The shared values (YAML).
    pub shared_values: String,
    /// The environment's values (YAML).
    pub values: String,
}

/// One entry of an application's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Its number (increasing).
    pub id: u64,
    /// The application.
    pub app: String,
    /// The environment, for a change of one.
    pub environment: Option<String>,
    /// What was done: `template`, `template removed`, `values`, `release`, `gray release`,
    /// `release requested`, `approve`, `reject`, `rollback`, `release to all`.
    pub action: String,
    /// What changed, in words.
    pub detail: String,
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a consumer of a config gets: `GET /api/v1/projects/{project}/config/{app}/{env}`
/// (its digest is the `ETag`) and each event of its watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveredConfig {
    /// Project name.
    pub project: String,
    /// Application name.
    pub app: String,
    /// Environment name.
    pub environment: String,
    /// The release's number (the watch's event id).
    pub release: u32,
    /// The files' digest (`sha256:…`), also the `ETag`.
    pub digest: String,
    /// A gray release this consumer gets as one of its instances.
    pub gray: bool,
    /// The files, by name.
    pub files: BTreeMap<String, String>,
}
