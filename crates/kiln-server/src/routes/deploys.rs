//! Deploys: deploy a service file to an environment with an image of Kiln's registry, the
//! deployments (all, or one service's in one environment), approve or reject one waiting on a
//! protected environment, roll back, promote to the next environment, and the environments
//! board.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::deploy::{
    DeployRequest, Deployment, EnvironmentBoard, PromoteOutcome, PromoteRequest, RollbackDeployment,
};
use kiln_store::Role;
use serde::Deserialize;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::deploys::{DeployAsk, dto, timeout_of};
use crate::error::ApiResult;

/// Query of `GET /api/v1/projects/{project}/deployments`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeploymentQuery {
    /// Only this service's deployments.
    service: Option<String>,
    /// Only those to this environment.
    environment: Option<String>,
}

/// Deploys a service file (`kind: service`) to an environment with an image of Kiln's
/// registry, resolved to its digest: the service `<name>-<environment>` gets a new version.
/// `pending` on a protected environment until someone else approves it, else `running`.
#[utoipa::path(post, path = "/api/v1/projects/{project}/deployments", tag = "deploys",
    params(("project" = String, Path)), request_body = DeployRequest,
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 409, description = "another deployment of the service to the environment is pending or running, or its service name `<name>-<environment>` is another service's", body = ErrorBody),
              (status = 422, description = "the file has errors (`invalid_service`), or the image, environment or config release is missing (`invalid_deploy`)", body = ErrorBody)))]
pub async fn deploy(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Body(req): Body<DeployRequest>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let file = req.file.clone().unwrap_or_else(|| "service.yml".into());
    let spec = crate::services::compile_file(&file, &req.yaml)?;
    let ask = DeployAsk {
        project,
        spec,
        source: (file, req.yaml),
        environment: req.environment,
        image: req.image,
        note: req.note,
        timeout: timeout_of(req.timeout_ms)?,
        run: None,
        asked_by: caller.name,
    };
    let d = app.deploys.deploy(ask).await?;
    Ok((StatusCode::CREATED, Json(dto(&d))))
}

/// The deployments of a project (of one service and/or environment), newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/deployments", tag = "deploys",
    params(("project" = String, Path), DeploymentQuery),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Query(q): Query<DeploymentQuery>,
) -> ApiResult<Json<Vec<Deployment>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let list = app.deploys.list(&project, q.service.as_deref(), q.environment.as_deref()).await?;
    Ok(Json(list.iter().map(dto).collect()))
}

/// The deployments of a service to an environment, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/deployments/{service}/{env}", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, env)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<Deployment>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let list = app.deploys.list(&project, Some(&service), Some(&env)).await?;
    Ok(Json(list.iter().map(dto).collect()))
}

/// One deployment.
#[utoipa::path(get, path = "/api/v1/projects/{project}/deployments/{service}/{env}/{number}", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<Deployment>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(dto(&app.deploys.get(&project, &service, &env, number).await?)))
}

/// Approves a deployment waiting on a protected environment (someone other than who asked
/// for it): it runs at once.
#[utoipa::path(post, path = "/api/v1/projects/{project}/deployments/{service}/{env}/{number}/approve", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody),
              (status = 409, description = "not waiting, or the asker approves", body = ErrorBody)))]
pub async fn approve(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<Deployment>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let d = app.deploys.decide(&project, &service, &env, number, true, &caller.name).await?;
    Ok(Json(dto(&d)))
}

/// Rejects a deployment waiting on a protected environment: it ends, nothing ran.
#[utoipa::path(post, path = "/api/v1/projects/{project}/deployments/{service}/{env}/{number}/reject", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<Deployment>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let d = app.deploys.decide(&project, &service, &env, number, false, &caller.name).await?;
    Ok(Json(dto(&d)))
}

/// Rolls a service in an environment back to an earlier deployment (default: the succeeded
/// one before the current one): its spec and digest again, and its config release again
/// (a config rollback release when the environment's head moved). No approval.
#[utoipa::path(post, path = "/api/v1/projects/{project}/deployments/{service}/{env}/rollback", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path), ("env" = String, Path)), request_body = RollbackDeployment,
    responses((status = 201, body = Deployment), (status = 404, body = ErrorBody),
              (status = 409, description = "nothing to roll back to, or a deployment is pending or running", body = ErrorBody)))]
pub async fn rollback(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, env)): Path<(String, String, String)>,
    Body(req): Body<RollbackDeployment>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let d = app.deploys.rollback(&project, &service, &env, req.to, req.note, &caller.name).await?;
    Ok((StatusCode::CREATED, Json(dto(&d))))
}

/// Promotes a service's current deployment in one environment to the next one in the
/// project's order: the same digest and spec, the target's config release. With `dry_run`,
/// only what would change.
#[utoipa::path(post, path = "/api/v1/projects/{project}/deployments/{service}/promote", tag = "deploys",
    params(("project" = String, Path), ("service" = String, Path)), request_body = PromoteRequest,
    responses((status = 200, body = PromoteOutcome), (status = 201, body = PromoteOutcome),
              (status = 409, description = "`to` is not right after `from`, or `from` has no succeeded deployment", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn promote(
    State(app): State<App>,
    caller: Caller,
    Path((project, service)): Path<(String, String)>,
    Body(req): Body<PromoteRequest>,
) -> ApiResult<(StatusCode, Json<PromoteOutcome>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let (d, changes) = app.deploys.promote(&project, &service, &req, &caller.name).await?;
    let status = if d.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(PromoteOutcome { deployment: d.as_ref().map(dto), changes })))
}

/// The environments board: the project's environments in order and, per service and
/// environment, what runs there (its current deployment), what is pending or running, and
/// how healthy it is.
#[utoipa::path(get, path = "/api/v1/projects/{project}/environments/board", tag = "deploys",
    params(("project" = String, Path)),
    responses((status = 200, body = EnvironmentBoard), (status = 404, body = ErrorBody)))]
pub async fn board(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<EnvironmentBoard>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.deploys.board(&project).await?))
}
