//! Projects, pipelines and project secrets.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_api::{
    ApplyPipeline, ApplyResult, CreateProject, ErrorBody, Pipeline, Project, Secret, SetSecret,
};
use kiln_store::Role;

use super::Body;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};
use crate::plans;

fn project_dto(p: kiln_store::Project) -> Project {
    Project { name: p.name, created_at: p.created_at }
}

/// The API form of a stored pipeline (its plan compiled, or taken from the cache); its
/// schedules are completed from the stored `schedules` (of its project).
pub fn pipeline_dto(
    app: &App,
    p: &kiln_store::Pipeline,
    schedules: &[kiln_store::ScheduleRecord],
) -> ApiResult<Pipeline> {
    let plan = app.coord.plan_of(p)?;
    Ok(Pipeline {
        project: p.project.clone(),
        name: p.name.clone(),
        version: p.version,
        stages: plan.stages.iter().map(|s| s.name.clone()).collect(),
        jobs: plan.jobs.len(),
        params: plans::params(&plan),
        concurrency: plan.concurrency,
        triggers: super::triggers::infos(p, &plan, schedules),
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

/// Lists projects the caller can see.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, body = Vec<Project>), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<Project>>> {
    let projects = app.store.projects().await?;
    Ok(Json(
        projects
            .into_iter()
            .filter(|p| caller.project.is_none_or(|id| id == p.id))
            .map(project_dto)
            .collect(),
    ))
}

/// Creates a project (admin).
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<CreateProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    caller.require(Role::Admin)?;
    let p = app.store.create_project(&req.name).await?;
    Ok((StatusCode::CREATED, Json(project_dto(p))))
}

/// Loads a project and checks the caller's role on it.
pub async fn project_for(
    app: &App,
    caller: &Caller,
    name: &str,
    role: Role,
) -> ApiResult<kiln_store::Project> {
    let p = app.store.project(name).await?;
    caller.require_on(role, &p)?;
    Ok(p)
}

/// Lists a project's pipelines.
#[utoipa::path(get, path = "/api/v1/projects/{project}/pipelines", tag = "pipelines",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<Pipeline>), (status = 404, body = ErrorBody)))]
pub async fn pipelines(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<Pipeline>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let list = app.store.pipelines(&project).await?;
    let schedules = app.store.schedules(Some(&project)).await?;
    let mut out = Vec::with_capacity(list.len());
    for p in &list {
        out.push(pipeline_dto(&app, p, &schedules)?);
    }
    Ok(Json(out))
}

/// One pipeline.
#[utoipa::path(get, path = "/api/v1/projects/{project}/pipelines/{pipeline}", tag = "pipelines",
    params(("project" = String, Path), ("pipeline" = String, Path)),
    responses((status = 200, body = Pipeline), (status = 404, body = ErrorBody)))]
pub async fn pipeline(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<Pipeline>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let p = app.store.pipeline(&project, &name).await?;
    let schedules = app.store.schedules(Some(&project)).await?;
    Ok(Json(pipeline_dto(&app, &p, &schedules)?))
}

/// Creates or updates a pipeline from YAML. A workflow with errors is refused with every
/// diagnostic (file, line, column) and nothing stored changes. Its schedules follow the new
/// version at once: removed ones start no more runs, unchanged ones keep their fire times.
#[utoipa::path(put, path = "/api/v1/projects/{project}/pipelines/{pipeline}", tag = "pipelines",
    params(("project" = String, Path), ("pipeline" = String, Path)), request_body = ApplyPipeline,
    responses((status = 200, body = ApplyResult),
              (status = 422, description = "`invalid_workflow`, with diagnostics", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn apply(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<ApplyPipeline>,
) -> ApiResult<Json<ApplyResult>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let file = req.file.clone().unwrap_or_else(|| format!("{name}.yml"));
    let compiled = plans::compile(&file, &req.yaml, &req.files);
    if compiled.plan.is_none() {
        let what = "the workflow";
        return Err(plans::refused(kiln_api::codes::INVALID_WORKFLOW, what, &compiled.diagnostics));
    }
    let diagnostics: Vec<_> = compiled.diagnostics.iter().map(plans::diagnostic).collect();
    let source = kiln_store::PipelineSource { file, yaml: req.yaml, files: req.files };
    let (p, change) = app.store.upsert_pipeline(&project, &name, &source).await?;
    let plan = app.coord.plan_of(&p)?;
    crate::schedules::sync(&app, &p.id, &plan).await?;
    let schedules = app.store.schedules(Some(&project)).await?;
    let existed = p.version > 1 || !change;
    let change = match (change, existed) {
        (false, _) => "unchanged",
        (true, true) => "updated",
        (true, false) => "created",
    };
    Ok(Json(ApplyResult {
        pipeline: pipeline_dto(&app, &p, &schedules)?,
        change: change.to_string(),
        warnings: diagnostics,
    }))
}

/// Lists a project's secrets (names, never values).
#[utoipa::path(get, path = "/api/v1/projects/{project}/secrets", tag = "secrets",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<Secret>), (status = 403, body = ErrorBody)))]
pub async fn secrets(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<Secret>>> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let list = app.store.secrets(&project).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| Secret { name: s.name, created_at: s.created_at, updated_at: s.updated_at })
            .collect(),
    ))
}

/// Sets a project secret (admin): stored encrypted, injected into every job of the project
/// as env `<name>`, masked as `***` in logs.
#[utoipa::path(put, path = "/api/v1/projects/{project}/secrets/{name}", tag = "secrets",
    params(("project" = String, Path), ("name" = String, Path)), request_body = SetSecret,
    responses((status = 200, body = Secret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_secret(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<SetSecret>,
) -> ApiResult<Json<Secret>> {
    project_for(&app, &caller, &project, Role::Admin).await?;
    if req.value.is_empty() {
        return Err(ApiErr::bad_request("a secret's value must not be empty"));
    }
    let sealed = app
        .secrets
        .seal(&project, &name, &req.value)
        .map_err(|e| ApiErr::internal(format!("encrypt secret: {e}")))?;
    let s = app.store.set_secret(&project, &name, &sealed).await?;
    Ok(Json(Secret { name: s.name, created_at: s.created_at, updated_at: s.updated_at }))
}

/// Deletes a project secret (admin).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/secrets/{name}", tag = "secrets",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Admin).await?;
    app.store.delete_secret(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
