//! A project's usage: what its job attempts reserved and for how long, totalled by day,
//! pipeline or node group over a window (`kiln usage`).

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use kiln_api::ErrorBody;
use kiln_api::usage::{UsageBy, UsageReport, parse_time};
use kiln_store::Role;
use serde::Deserialize;

use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};

/// The window and grouping of a usage report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// Start (inclusive): RFC 3339, a UTC day (`2026-12-01`) or an age (`7d`); default 30
    /// days before `until`.
    since: Option<String>,
    /// End (exclusive), in the same forms; default now.
    until: Option<String>,
    /// `day` (default), `pipeline` or `node-group`.
    by: Option<String>,
}

/// Totals of the project's job attempts that ended in the window, with the records summed:
/// reserved CPU core-seconds, memory and disk GiB-seconds, attempts and their seconds.
#[utoipa::path(get, path = "/api/v1/projects/{project}/usage", tag = "projects",
    params(("project" = String, Path), UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn report(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    let now = Utc::now();
    let by: UsageBy = match q.by.as_deref() {
        None | Some("") => UsageBy::Day,
        Some(b) => b.parse().map_err(|e: String| ApiErr::bad_request(format!("by: {e}")))?,
    };
    let time = |name: &str, v: &str| {
        parse_time(v, now).map_err(|e| ApiErr::bad_request(format!("{name}: {e}")))
    };
    let until = match q.until.as_deref() {
        Some(u) => time("until", u)?,
        None => now,
    };
    let since = match q.since.as_deref() {
        Some(s) => time("since", s)?,
        None => until - chrono::Duration::days(30),
    };
    if since >= until {
        return Err(ApiErr::bad_request(format!(
            "the window is empty: since ({}) is not before until ({})",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
    let p = project_for(&app, &caller, &project, Role::Viewer).await?;
    let records = app.store.usage_records(&p.id, since, until).await?;
    let (groups, total) = crate::usage::totals(&records, by);
    Ok(Json(UsageReport {
        project: p.name,
        since,
        until,
        by,
        groups,
        total,
        attempts: records.iter().map(crate::usage::attempt).collect(),
    }))
}
