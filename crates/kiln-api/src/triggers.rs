//! What starts runs: every trigger of every pipeline (`GET /api/v1/triggers`), with the next
//! fire times of schedules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Started by hand: the API, `kiln trigger`, the web UI (unless `on: { api: false }`).
    Api,
    /// A push of an image tag to Kiln's registry (`on.image`).
    Image,
    /// A cron schedule (`on.schedule`).
    Schedule,
    /// A git push to the pipeline's `source` repository (`on.push`), through a webhook.
    Push,
    /// A pull or merge request on the `source` repository (`on.pull_request`), through a
    /// webhook.
    PullRequest,
}

impl TriggerKind {
    /// The kind as written in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Api => "api",
            TriggerKind::Image => "image",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Push => "push",
            TriggerKind::PullRequest => "pull_request",
        }
    }
}

/// One trigger of one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerInfo {
    /// Project name.
    pub project: String,
    /// Pipeline name.
    pub pipeline: String,
    /// What kind of event starts runs.
    pub kind: TriggerKind,
    /// One line for people: `*/5 * * * * in Asia/Shanghai, missed: skip`, `app tags v*`.
    pub details: String,
    /// For `schedule`: the expression, zone, params, policy, next and last fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    /// For `image`: the repository and tag globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageTriggerInfo>,
}

/// A schedule (`on.schedule` entry) and its fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleInfo {
    /// Cron expression as written.
    pub cron: String,
    /// IANA time zone it is read in.
    pub timezone: String,
    /// `skip` or `run-once`: what happens to fires missed while the server was down.
    pub missed: String,
    /// Param values of the runs it starts.
    pub params: BTreeMap<String, String>,
    /// The next fire times (up to 3), the first as the scheduler holds it.
    pub next: Vec<FireTime>,
    /// When a fire last started a run.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// The run it started: `project/pipeline#number`.
    pub last_run: Option<String>,
}

/// A fire time, in UTC and in the schedule's zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FireTime {
    /// UTC.
    pub at: DateTime<Utc>,
    /// The same instant in the schedule's zone, RFC 3339 with its offset
    /// (`2026-12-01T08:00:00+08:00`).
    pub local: String,
}

/// An image trigger (`on.image` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageTriggerInfo {
    /// Repository glob (without `/`: a repository of the pipeline's project).
    pub repository: String,
    /// Tag globs; empty: every tag.
    pub tags: Vec<String>,
}
