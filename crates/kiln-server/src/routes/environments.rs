//! Environments of a project: create, list, show, change (order, protected), delete, and
//! their variables (a secret's value is sealed and shown as `***`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::environments::{
    CreateEnvironment, EnvVariable, Environment, SetVariable, UpdateEnvironment,
};
use kiln_store::Role;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;

/// Lists a project's environments in their order, with their variables (secrets masked).
#[utoipa::path(get, path = "/api/v1/projects/{project}/environments", tag = "environments",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<Environment>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<Environment>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.environments.list(&project).await?))
}

/// Creates an environment (admin), after another one of the project if `after` names it.
#[utoipa::path(post, path = "/api/v1/projects/{project}/environments", tag = "environments",
    params(("project" = String, Path)), request_body = CreateEnvironment,
    responses((status = 201, body = Environment), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Body(req): Body<CreateEnvironment>,
) -> ApiResult<(StatusCode, Json<Environment>)> {
    project_for(&app, &caller, &project, Role::Admin).await?;
    let e = app
        .store
        .create_environment(&project, &req.name, req.after.as_deref(), req.protected)
        .await?;
    Ok((StatusCode::CREATED, Json(app.environments.dto(e).await?)))
}

/// An environment with its variables (secrets masked).
#[utoipa::path(get, path = "/api/v1/projects/{project}/environments/{env}", tag = "environments",
    params(("project" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path((project, env)): Path<(String, String)>,
) -> ApiResult<Json<Environment>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let e = app.store.environment(&project, &env).await?;
    Ok(Json(app.environments.dto(e).await?))
}

/// Changes an environment's place in the order or its protected flag (admin).
#[utoipa::path(patch, path = "/api/v1/projects/{project}/environments/{env}", tag = "environments",
    params(("project" = String, Path), ("env" = String, Path)), request_body = UpdateEnvironment,
    responses((status = 200, body = Environment), (status = 400, description = "an unknown environment to come after, or a cycle", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn update(
    State(app): State<App>,
    caller: Caller,
    Path((project, env)): Path<(String, String)>,
    Body(req): Body<UpdateEnvironment>,
) -> ApiResult<Json<Environment>> {
    project_for(&app, &caller, &project, Role::Admin).await?;
    let after = req.after.as_deref().map(|a| Some(a).filter(|a| !a.is_empty()));
    let e = app.store.update_environment(&project, &env, after, req.protected).await?;
    Ok(Json(app.environments.dto(e).await?))
}

/// Deletes an environment with its variables, config values and releases (admin); refused
/// while another environment comes after it.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/environments/{env}", tag = "environments",
    params(("project" = String, Path), ("env" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path((project, env)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Admin).await?;
    app.store.delete_environment(&project, &env).await?;
    app.config.forget_environment(&project, &env);
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a variable of an environment: plain (developer), or a secret (admin), sealed like a
/// project secret and shown as `***`.
#[utoipa::path(put, path = "/api/v1/projects/{project}/environments/{env}/variables/{name}", tag = "environments",
    params(("project" = String, Path), ("env" = String, Path), ("name" = String, Path)), request_body = SetVariable,
    responses((status = 200, body = EnvVariable), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_variable(
    State(app): State<App>,
    caller: Caller,
    Path((project, env, name)): Path<(String, String, String)>,
    Body(req): Body<SetVariable>,
) -> ApiResult<Json<EnvVariable>> {
    let role = if req.secret { Role::Admin } else { Role::Developer };
    project_for(&app, &caller, &project, role).await?;
    Ok(Json(app.environments.set_variable(&project, &env, &name, &req.value, req.secret).await?))
}

/// Removes a variable of an environment (a secret: admin).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/environments/{env}/variables/{name}", tag = "environments",
    params(("project" = String, Path), ("env" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unset_variable(
    State(app): State<App>,
    caller: Caller,
    Path((project, env, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let vars = app.store.env_variables(&project, &env).await?;
    if vars.iter().any(|v| v.name == name && matches!(v.value, kiln_store::EnvValue::Sealed(_))) {
        project_for(&app, &caller, &project, Role::Admin).await?;
    }
    app.store.delete_env_variable(&project, &env, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
