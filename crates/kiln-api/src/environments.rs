//! Environments in the REST API: a project's dev, staging, prod…, their order, whether
//! releases there need a second person's approval, and their variables (secrets masked).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a secret's value reads as, wherever it is shown.
pub const MASK: &str = "***";

/// Body of `POST /api/v1/projects/{project}/environments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateEnvironment {
    /// 1 to 64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// The environment before it (`staging` after `dev`).
    #[serde(default)]
    pub after: Option<String>,
    /// Releases there need the approval of someone other than who asked.
    #[serde(default)]
    pub protected: bool,
}

/// Body of `PATCH /api/v1/projects/{project}/environments/{env}`: what to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateEnvironment {
    /// The environment before it; `""` makes it a first one; absent: unchanged.
    #[serde(default)]
    pub after: Option<String>,
    /// Whether releases there need a second person's approval; absent: unchanged.
    #[serde(default)]
    pub protected: Option<bool>,
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    /// Project name.
    pub project: String,
    /// Environment name.
    pub name: String,
    /// The environment before it in the project's order.
    pub after: Option<String>,
    /// Releases there need the approval of someone other than who asked.
    pub protected: bool,
    /// Its variables, by name (secrets' values are `***`).
    pub variables: Vec<EnvVariable>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (not its variables).
    pub updated_at: DateTime<Utc>,
}

/// A variable of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvVariable {
    /// Its name (an environment variable name).
    pub name: String,
    /// Its value; `***` for a secret.
    pub value: String,
    /// A secret: stored sealed, never shown, masked as `***` in logs.
    pub secret: bool,
    /// Last set.
    pub updated_at: DateTime<Utc>,
}

/// Body of `PUT .../environments/{env}/variables/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetVariable {
    /// The value (a secret's must not be empty).
    pub value: String,
    /// Store it sealed and never show it (admin).
    #[serde(default)]
    pub secret: bool,
}
