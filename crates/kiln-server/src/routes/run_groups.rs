//! Groups of runs started together: `POST /api/v1/run-groups` starts pipelines of one or
//! several projects as one group (one merge that rebuilds several repositories);
//! `GET /api/v1/run-groups/{group}` shows a group's runs together, whether a trigger job's
//! list or this call started it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_api::{ErrorBody, RunGroup, StartGroup};
use kiln_store::{GroupId, NewRun, NewRunSet, Role};

use super::Body;
use super::projects::project_for;
use super::runs::summary;
use crate::App;
use crate::auth::Caller;
use crate::coord::{declared_params, group_state};
use crate::error::{ApiErr, ApiResult};

/// The API form of a group and its runs.
fn group_dto(g: &kiln_store::RunGroup, runs: &[kiln_store::Run]) -> RunGroup {
    let states: Vec<_> = runs.iter().map(|r| r.state).collect();
    RunGroup {
        id: g.id.to_string(),
        created_by: g.created_by.clone(),
        created_at: g.created_at,
        state: group_state(&states).to_string(),
        runs: runs.iter().map(summary).collect(),
    }
}

/// Starts pipelines (`project/pipeline`, of any projects the caller may trigger) as one
/// group. Every pipeline gets the params it declares among those given; a param no pipeline
/// declares is refused (`invalid_params`), as is a pipeline with `on: { api: false }` (409).
/// Nothing is started unless every pipeline may be.
#[utoipa::path(post, path = "/api/v1/run-groups", tag = "runs", request_body = StartGroup,
    responses((status = 201, body = RunGroup),
              (status = 400, description = "no pipeline, or not `project/pipeline`", body = ErrorBody),
              (status = 422, description = "`invalid_params`", body = ErrorBody),
              (status = 409, description = "a pipeline has `on: { api: false }`", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn start(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<StartGroup>,
) -> ApiResult<(StatusCode, Json<RunGroup>)> {
    if req.pipelines.is_empty() {
        return Err(ApiErr::bad_request(
            "a group needs at least one pipeline: {\"pipelines\": [\"project/pipeline\", ...]}",
        ));
    }
    let mut runs = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    for name in &req.pipelines {
        let Some((project, pipeline)) = name.split_once('/') else {
            return Err(ApiErr::bad_request(format!(
                "`{name}` is not project/pipeline (like shop/ci)"
            )));
        };
        project_for(&app, &caller, project, Role::Developer).await?;
        let p = app.store.pipeline(project, pipeline).await?;
        let plan = app.coord.plan_of(&p)?;
        if !plan.triggers.api {
            return Err(ApiErr::conflict(format!(
                "pipeline {name} is started only by its triggers (`on: {{ api: false }}`)"
            )));
        }
        let params = declared_params(&plan, &req.params);
        declared.extend(params.keys().cloned());
        crate::coord::check_params(&plan, &params)
            .map_err(|e| ApiErr { message: format!("{name}: {}", e.message), ..e })?;
        runs.push(NewRun {
            pipeline: p.id,
            params: serde_json::to_value(&params).expect("a string map is JSON"),
            triggered_by: caller.name.clone(),
            retry_of: None,
            source: None,
        });
    }
    if let Some(unused) = req.params.keys().find(|k| !declared.contains(*k)) {
        return Err(ApiErr::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kiln_api::codes::INVALID_PARAMS,
            format!("param `{unused}` is declared by none of {}", req.pipelines.join(", ")),
        ));
    }
    let set = NewRunSet {
        key: None,
        group: Some(caller.name.clone()),
        parent: None,
        author: caller.token,
        runs,
    };
    let made = app.coord.start_set(&set).await?;
    let group = made.group.as_ref().ok_or_else(|| ApiErr::internal("the group was not made"))?;
    Ok((StatusCode::CREATED, Json(group_dto(group, &made.runs))))
}

/// A group with its runs, in order, and their states together.
#[utoipa::path(get, path = "/api/v1/run-groups/{group}", tag = "runs",
    params(("group" = String, Path)),
    responses((status = 200, body = RunGroup), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunGroup>> {
    let id: GroupId = id
        .parse()
        .map_err(|_| ApiErr::bad_request(format!("`{id}` is not a run group id (a uuid)")))?;
    let (group, runs) = app.store.group(&id).await?;
    for project in
        runs.iter().map(|r| r.project.as_str()).collect::<std::collections::BTreeSet<_>>()
    {
        // A group with a run the caller may not see is answered as a missing group: the
        // words of a missing one, naming no project.
        match app.store.project(project).await {
            Ok(p) if caller.require_on(Role::Viewer, &p).is_ok() => {}
            Err(e) if !matches!(e, kiln_store::StoreError::NotFound(_)) => return Err(e.into()),
            _ => return Err(kiln_store::StoreError::NotFound(format!("run group {id}")).into()),
        }
    }
    Ok(Json(group_dto(&group, &runs)))
}
