//! The config center's editing side: applications' items (templates) and values, renders,
//! diffs, releases (approve, reject, roll back, gray releases) and the audit log. What
//! consumers fetch and watch is `config_delivery.rs`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::config::{
    AuditEntry, ConfigApp, ConfigAppSummary, ConfigDiff, ConfigRelease, ConfigReleaseDetail,
    EditResult, ReleaseOutcome, ReleaseRequest, Rendered, RollbackRequest, SetTemplate, SetValues,
};
use kiln_store::Role;
use serde::Deserialize;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::config_center::DiffOf;
use crate::error::{ApiErr, ApiResult};

/// Lists the applications with config in a project.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps", tag = "config",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<ConfigAppSummary>), (status = 404, body = ErrorBody)))]
pub async fn apps(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<ConfigAppSummary>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.apps(&project).await?))
}

/// An application's config: its items (templates), shared values and values per environment.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path)),
    responses((status = 200, body = ConfigApp), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<ConfigApp>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.app(&project, &name).await?))
}

/// Sets the template of a config item (the file name percent-encoded, `/` as `%2F`); its
/// syntax is checked first. The application is made with its first item or values.
#[utoipa::path(put, path = "/api/v1/projects/{project}/apps/{app}/templates/{file}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("file" = String, Path)), request_body = SetTemplate,
    responses((status = 200, body = EditResult), (status = 400, description = "a bad file name", body = ErrorBody),
              (status = 422, description = "a syntax error (`invalid_config`, with its position)", body = ErrorBody)))]
pub async fn set_template(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, file)): Path<(String, String, String)>,
    Body(req): Body<SetTemplate>,
) -> ApiResult<Json<EditResult>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.config.set_template(&project, &name, &file, &req.template, &caller.name).await?))
}

/// Removes a config item.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/apps/{app}/templates/{file}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("file" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_template(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, file)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    app.config.remove_template(&project, &name, &file, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the values every environment shares (a YAML map, checked first).
#[utoipa::path(put, path = "/api/v1/projects/{project}/apps/{app}/values", tag = "config",
    params(("project" = String, Path), ("app" = String, Path)), request_body = SetValues,
    responses((status = 200, body = EditResult), (status = 422, description = "not a YAML map (`invalid_config`)", body = ErrorBody)))]
pub async fn set_shared_values(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<SetValues>,
) -> ApiResult<Json<EditResult>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let r =
        app.config.set_values(&project, &name, None, &req.yaml, req.file.as_deref(), &caller.name);
    Ok(Json(r.await?))
}

/// Sets an environment's values, laid over the shared ones (a YAML map, checked first).
#[utoipa::path(put, path = "/api/v1/projects/{project}/apps/{app}/values/{env}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path)), request_body = SetValues,
    responses((status = 200, body = EditResult), (status = 404, body = ErrorBody),
              (status = 422, description = "not a YAML map (`invalid_config`)", body = ErrorBody)))]
pub async fn set_env_values(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
    Body(req): Body<SetValues>,
) -> ApiResult<Json<EditResult>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let r = app.config.set_values(
        &project,
        &name,
        Some(&env),
        &req.yaml,
        req.file.as_deref(),
        &caller.name,
    );
    Ok(Json(r.await?))
}

/// Renders an application's draft in an environment: a preview, nothing is stored.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/render", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = Rendered), (status = 404, body = ErrorBody),
              (status = 422, description = "render errors with file:line (`invalid_config`)", body = ErrorBody)))]
pub async fn render(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
) -> ApiResult<Json<Rendered>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.render(&project, &name, &env).await?))
}

/// Query of the diff.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DiffQuery {
    /// Another environment: both drafts rendered.
    against: Option<String>,
    /// A release (with `to`): two releases of this environment.
    from: Option<u32>,
    /// The other release (with `from`).
    to: Option<u32>,
}

/// A unified diff: the draft against the current release (no query), against another
/// environment's draft (`against`), or two releases (`from`, `to`).
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/diff", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), DiffQuery),
    responses((status = 200, body = ConfigDiff), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "render errors (`invalid_config`)", body = ErrorBody)))]
pub async fn diff(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<ConfigDiff>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let of = match (q.against, q.from, q.to) {
        (None, None, None) => DiffOf::Current,
        (Some(other), None, None) => DiffOf::Environment(other),
        (None, Some(from), Some(to)) => DiffOf::Releases(from, to),
        _ => {
            return Err(ApiErr::bad_request(
                "diff takes nothing (the draft against the current release), `against` (another \
                 environment) or both `from` and `to` (two releases)",
            ));
        }
    };
    Ok(Json(app.config.diff(&project, &name, &env, &of).await?))
}

/// Every release of an application in an environment, oldest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/releases", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path)),
    responses((status = 200, body = Vec<ConfigRelease>), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<ConfigRelease>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.history(&project, &name, &env).await?))
}

/// Releases the draft: an immutable release of the rendered files, or `unchanged` when the
/// files are what the audience already gets; on a protected environment it waits for the
/// approval of another person. With `instances`, a gray release for those consumers only;
/// with `all`, the gray release out goes to everyone. A render error stores nothing.
#[utoipa::path(post, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/releases", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path)), request_body = ReleaseRequest,
    responses((status = 200, body = ReleaseOutcome), (status = 404, body = ErrorBody),
              (status = 409, description = "a release waits for approval, or no gray release is out", body = ErrorBody),
              (status = 422, description = "render errors with file:line (`invalid_config`)", body = ErrorBody)))]
pub async fn release(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
    Body(req): Body<ReleaseRequest>,
) -> ApiResult<Json<ReleaseOutcome>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.config.release(&project, &name, &env, &req, &caller.name).await?))
}

/// A release with its files and the templates and values they were rendered from.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/releases/{number}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = ConfigReleaseDetail), (status = 404, body = ErrorBody)))]
pub async fn release_show(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<ConfigReleaseDetail>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.release_detail(&project, &name, &env, number).await?))
}

/// Approves the release waiting on a protected environment: only someone other than who
/// asked (recorded with the time).
#[utoipa::path(post, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/releases/{number}/approve", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = ReleaseOutcome), (status = 404, body = ErrorBody),
              (status = 409, description = "not waiting, or the asker approves", body = ErrorBody)))]
pub async fn approve(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<ReleaseOutcome>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.config.decide(&project, &name, &env, number, true, &caller.name).await?))
}

/// Rejects the release waiting on a protected environment (kept in the history, rejected).
#[utoipa::path(post, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/releases/{number}/reject", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), ("number" = u32, Path)),
    responses((status = 200, body = ReleaseOutcome), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env, number)): Path<(String, String, String, u32)>,
) -> ApiResult<Json<ReleaseOutcome>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.config.decide(&project, &name, &env, number, false, &caller.name).await?))
}

/// Rolls back: a NEW release with an earlier release's files (nothing is deleted), or
/// `unchanged` when they are current; approved like any release on a protected environment.
#[utoipa::path(post, path = "/api/v1/projects/{project}/apps/{app}/environments/{env}/rollback", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path)), request_body = RollbackRequest,
    responses((status = 200, body = ReleaseOutcome), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(app): State<App>,
    caller: Caller,
    Path((project, name, env)): Path<(String, String, String)>,
    Body(req): Body<RollbackRequest>,
) -> ApiResult<Json<ReleaseOutcome>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    Ok(Json(app.config.rollback(&project, &name, &env, &req, &caller.name).await?))
}

/// Every change of an application's config, oldest first: items, values, releases,
/// approvals, rejections, rollbacks, gray releases.
#[utoipa::path(get, path = "/api/v1/projects/{project}/apps/{app}/audit", tag = "config",
    params(("project" = String, Path), ("app" = String, Path)),
    responses((status = 200, body = Vec<AuditEntry>), (status = 404, body = ErrorBody)))]
pub async fn audit(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.config.audit(&project, &name).await?))
}
