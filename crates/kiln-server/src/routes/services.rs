//! Services: apply a service file, list and show services with their instances (discovery),
//! scale, restart, stop, roll back, delete, and the history of versions.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::service::{ApplyService, RollbackService, ScaleService, ServiceInfo, ServiceVersion};
use kiln_store::Role;
use serde::Deserialize;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;

/// Query of `GET /api/v1/services`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ServiceQuery {
    /// Only the services of this project.
    project: Option<String>,
}

/// Lists services (of the caller's projects) with their instances.
#[utoipa::path(get, path = "/api/v1/services", tag = "services", params(ServiceQuery),
    responses((status = 200, body = Vec<ServiceInfo>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<ServiceQuery>,
) -> ApiResult<Json<Vec<ServiceInfo>>> {
    if let Some(p) = &q.project {
        project_for(&app, &caller, p, Role::Viewer).await?;
    }
    let mut out = Vec::new();
    for s in app.services.list(q.project.as_deref()).await? {
        let p = app.store.project(&s.project).await?;
        if caller.require_on(Role::Viewer, &p).is_ok() {
            out.push(s);
        }
    }
    Ok(Json(out))
}

/// Lists the services of a project with their instances.
#[utoipa::path(get, path = "/api/v1/projects/{project}/services", tag = "services",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<ServiceInfo>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_list(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<ServiceInfo>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.services.list(Some(&project)).await?))
}

/// A service, its instances (node, host IP, ports, health) and why slots wait.
#[utoipa::path(get, path = "/api/v1/projects/{project}/services/{service}", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<ServiceInfo>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.services.get(&project, &name).await?))
}

/// Applies a service file (`kind: service`): a new version when anything changed. The
/// service's name is the file's `name`, which must match the path's.
#[utoipa::path(put, path = "/api/v1/projects/{project}/services/{service}", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)), request_body = ApplyService,
    responses((status = 200, body = ServiceInfo), (status = 201, body = ServiceInfo),
              (status = 400, body = ErrorBody), (status = 422, description = "the file has errors (`invalid_service`, with diagnostics)", body = ErrorBody)))]
pub async fn apply(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<ApplyService>,
) -> ApiResult<(StatusCode, Json<ServiceInfo>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let file = req.file.clone().unwrap_or_else(|| format!("{name}.yml"));
    let named = kiln_workflow::compile_service(&file, &req.yaml).spec.map(|s| s.name);
    super::file_names_path("service", named, &name)?;
    let (info, change) =
        app.services.apply(&project, &file, &req.yaml, req.note, &caller.name).await?;
    let status = if change == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)))
}

/// Sets the number of replicas (no instance is replaced).
#[utoipa::path(post, path = "/api/v1/projects/{project}/services/{service}/scale", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)), request_body = ScaleService,
    responses((status = 200, body = ServiceInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn scale(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<ScaleService>,
) -> ApiResult<Json<ServiceInfo>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.services.scale(&project, &name, req.replicas, &caller.name).await?))
}

/// Replaces every instance with a rolling update.
#[utoipa::path(post, path = "/api/v1/projects/{project}/services/{service}/restart", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceInfo), (status = 404, body = ErrorBody)))]
pub async fn restart(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<ServiceInfo>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.services.restart(&project, &name, &caller.name).await?))
}

/// Stops every instance (replicas 0).
#[utoipa::path(post, path = "/api/v1/projects/{project}/services/{service}/stop", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceInfo), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<ServiceInfo>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.services.stop(&project, &name, &caller.name).await?))
}

/// Returns to an earlier version (the one before the current when `to` is absent).
#[utoipa::path(post, path = "/api/v1/projects/{project}/services/{service}/rollback", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)), request_body = RollbackService,
    responses((status = 200, body = ServiceInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<RollbackService>,
) -> ApiResult<Json<ServiceInfo>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.services.rollback(&project, &name, req.to, &caller.name).await?))
}

/// Every version of a service, oldest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/services/{service}/history", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = Vec<ServiceVersion>), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<ServiceVersion>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.services.history(&project, &name).await?))
}

/// Deletes a service after stopping its instances.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/services/{service}", tag = "services",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    app.services.delete(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
