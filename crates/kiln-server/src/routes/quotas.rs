//! Per-project quotas on the pool (CPU, memory, jobs at once): set and removed by admins,
//! listed with what each project holds and has waiting.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::pool::{QuotaInfo, QuotaLimits};
use kiln_store::Role;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};

/// The scheduler's quota from the API's limits.
pub fn sched_quota(l: &QuotaLimits) -> kiln_scheduler::Quota {
    kiln_scheduler::Quota { cpu_millis: l.cpu_millis, memory_bytes: l.memory_bytes, jobs: l.jobs }
}

fn api_limits(l: &kiln_store::QuotaLimits) -> QuotaLimits {
    QuotaLimits { cpu_millis: l.cpu_millis, memory_bytes: l.memory_bytes, jobs: l.jobs }
}

/// Hands every stored quota to the dispatcher (at start).
pub async fn load(app: &App) -> Result<(), kiln_store::StoreError> {
    for q in app.store.quotas().await? {
        app.dispatch.set_quota(&q.project, Some(sched_quota(&api_limits(&q.limits))));
    }
    Ok(())
}

/// Lists quotas and use: every project with a quota or with work on the pool (a token limited
/// to a project sees that project only).
#[utoipa::path(get, path = "/api/v1/quotas", tag = "pool",
    responses((status = 200, body = Vec<QuotaInfo>), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<QuotaInfo>>> {
    let mut limits: BTreeMap<String, QuotaLimits> = BTreeMap::new();
    for q in app.store.quotas().await? {
        limits.insert(q.project, api_limits(&q.limits));
    }
    let mut used = app.dispatch.project_usage();
    let mut names: Vec<String> = limits.keys().chain(used.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for project in names {
        if caller.project.is_some()
            && project_for(&app, &caller, &project, Role::Viewer).await.is_err()
        {
            continue;
        }
        out.push(QuotaInfo {
            limits: limits.remove(&project).unwrap_or_default(),
            used: used.remove(&project).unwrap_or_default(),
            project,
        });
    }
    Ok(Json(out))
}

/// Sets a project's quota, replacing the one it had (admin for all projects). Work already
/// placed keeps running; new work of the project waits while it would go over.
#[utoipa::path(put, path = "/api/v1/projects/{project}/quota", tag = "pool",
    params(("project" = String, Path)), request_body = QuotaLimits,
    responses((status = 200, body = QuotaInfo), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Body(limits): Body<QuotaLimits>,
) -> ApiResult<Json<QuotaInfo>> {
    caller.require(Role::Admin)?;
    if limits == QuotaLimits::default() {
        return Err(ApiErr::bad_request(
            "a quota needs at least one of cpu_millis, memory_bytes, jobs (DELETE removes one)",
        ));
    }
    let stored = kiln_store::QuotaLimits {
        cpu_millis: limits.cpu_millis,
        memory_bytes: limits.memory_bytes,
        jobs: limits.jobs,
    };
    let q = app.store.set_quota(&project, &stored).await?;
    app.dispatch.set_quota(&q.project, Some(sched_quota(&limits)));
    let used = app.dispatch.project_usage().remove(&q.project).unwrap_or_default();
    Ok(Json(QuotaInfo { project: q.project, limits, used }))
}

/// Removes a project's quota (admin for all projects).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/quota", tag = "pool",
    params(("project" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    app.store.delete_quota(&project).await?;
    app.dispatch.set_quota(&project, None);
    Ok(StatusCode::NO_CONTENT)
}
