//! Runs: trigger, list, show, the workflow a run ran, cancel, retry, approve and reject.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use kiln_api::{
    ApprovalInfo, DecisionRequest, ErrorBody, JobInfo, RunDetail, RunSummary, RunWorkflow,
    StageInfo, TriggerRequest,
};
use kiln_engine::{Event, JobState, RunState};
use kiln_store::{ApprovalDecision, Role, RunFilter, RunId};
use kiln_workflow::plan::StageKind;
use serde::Deserialize;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};

fn ms(from: Option<chrono::DateTime<Utc>>, to: Option<chrono::DateTime<Utc>>) -> Option<u64> {
    let from = from?;
    let to = to.unwrap_or_else(Utc::now);
    u64::try_from((to - from).num_milliseconds()).ok()
}

/// The API summary of a stored run.
pub fn summary(r: &kiln_store::Run) -> RunSummary {
    RunSummary {
        id: r.id.to_string(),
        project: r.project.clone(),
        pipeline: r.pipeline.clone(),
        number: r.number,
        state: r.state.to_string(),
        triggered_by: r.triggered_by.clone(),
        reason: r.reason.clone(),
        retry_of: r.retry_of.map(|id| id.to_string()),
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        duration_ms: ms(r.started_at, r.finished_at),
        source: r.source.as_ref().map(source_info),
        parent: r.parent.as_ref().map(|p| kiln_api::RunParent {
            run: p.run.to_string(),
            name: p.name.clone(),
            job: p.job.clone(),
        }),
        group: r.group.map(|g| g.to_string()),
    }
}

/// The API form of a run's commit.
fn source_info(s: &kiln_store::RunSource) -> kiln_api::SourceInfo {
    kiln_api::SourceInfo {
        provider: s.provider.clone(),
        event: s.event.clone(),
        repository: s.repository.clone(),
        git_ref: s.git_ref.clone(),
        branch: s.branch.clone(),
        tag: s.tag.clone(),
        commit: s.commit.clone(),
        message: s.message.clone(),
        author: s.author.clone(),
        pull_request: s.pull_request.as_ref().map(|p| p.number),
        target_branch: s.pull_request.as_ref().map(|p| p.target.clone()),
    }
}

/// Parses a run id from a path.
pub fn run_id(text: &str) -> ApiResult<RunId> {
    text.parse().map_err(|_| {
        ApiErr::bad_request(format!("`{text}` is not a run id (a uuid); use /projects/{{project}}/pipelines/{{pipeline}}/runs/{{number}} for a run number"))
    })
}

/// Loads a run and checks the caller's role on its project.
pub async fn run_for(
    app: &App,
    caller: &Caller,
    id: &str,
    role: Role,
) -> ApiResult<kiln_store::Run> {
    let run = app.store.run(&run_id(id)?).await?;
    let project = app.store.project(&run.project).await?;
    if !caller.may_see(&project.id) {
        // The words of a missing run: nothing says it exists, nor whose it is.
        return Err(kiln_store::StoreError::NotFound(format!("run {id}")).into());
    }
    caller.require_on(role, &project)?;
    Ok(run)
}

/// Triggers a run with params. It starts at once, or waits `pending` in the pipeline's FIFO
/// queue while `concurrency:` runs are active. A pipeline with `on: { api: false }` is
/// started only by its triggers: 409 `conflict`.
#[utoipa::path(post, path = "/api/v1/projects/{project}/pipelines/{pipeline}/runs", tag = "runs",
    params(("project" = String, Path), ("pipeline" = String, Path)), request_body = TriggerRequest,
    responses((status = 201, body = RunSummary),
              (status = 422, description = "`invalid_params`", body = ErrorBody),
              (status = 409, description = "the pipeline has `on: { api: false }`", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn trigger(
    State(app): State<App>,
    caller: Caller,
    Path((project, pipeline)): Path<(String, String)>,
    Body(req): Body<TriggerRequest>,
) -> ApiResult<(StatusCode, Json<RunSummary>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let p = app.store.pipeline(&project, &pipeline).await?;
    if !app.coord.plan_of(&p)?.triggers.api {
        return Err(ApiErr::conflict(format!(
            "pipeline {project}/{pipeline} is started only by its triggers (`on: {{ api: false }}`); \
             `kiln triggers --project {project}` lists them"
        )));
    }
    let run = app.coord.trigger_as(&p, &req.params, &caller.name, caller.token).await?;
    Ok((StatusCode::CREATED, Json(summary(&run))))
}

/// Filters of the run list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Project name.
    project: Option<String>,
    /// Pipeline name (needs `project`).
    pipeline: Option<String>,
    /// Run state.
    state: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<u32>,
    /// The next page: runs listed after this run (the last of the page before).
    before: Option<String>,
}

fn parse_state(s: &str) -> ApiResult<RunState> {
    s.parse().map_err(|e: kiln_engine::UnknownState| ApiErr::bad_request(e.to_string()))
}

/// Lists runs, newest first; `before` (a run's id) pages on after that run.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = Vec<RunSummary>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<RunSummary>>> {
    let mut filter = RunFilter {
        limit: q.limit,
        state: q.state.as_deref().map(parse_state).transpose()?,
        project: q.project.clone(),
        before: q.before.as_deref().map(run_id).transpose()?,
        ..RunFilter::default()
    };
    match (&q.project, &q.pipeline) {
        (Some(project), Some(pipeline)) => {
            project_for(&app, &caller, project, Role::Viewer).await?;
            filter.pipeline = Some(app.store.pipeline(project, pipeline).await?.id);
        }
        (None, Some(_)) => return Err(ApiErr::bad_request("`pipeline` needs `project` too")),
        (Some(project), None) => {
            project_for(&app, &caller, project, Role::Viewer).await?;
        }
        (None, None) => {}
    }
    let runs = app.store.runs(&filter).await?;
    let scope = match &caller.project {
        Some(id) => {
            Some(app.store.projects().await?.into_iter().find(|p| &p.id == id).map(|p| p.name))
        }
        None => None,
    };
    Ok(Json(
        runs.iter()
            .filter(|r| q.project.as_ref().is_none_or(|p| &r.project == p))
            .filter(|r| scope.as_ref().is_none_or(|s| s.as_deref() == Some(r.project.as_str())))
            .map(summary)
            .collect(),
    ))
}

/// A run with its stages, jobs (state, attempts, exit code, outputs, durations) and approvals.
#[utoipa::path(get, path = "/api/v1/runs/{run}", tag = "runs", params(("run" = String, Path)),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    Ok(Json(detail(&app, run).await?))
}

/// A run by its number in a pipeline.
#[utoipa::path(get, path = "/api/v1/projects/{project}/pipelines/{pipeline}/runs/{number}", tag = "runs",
    params(("project" = String, Path), ("pipeline" = String, Path), ("number" = u64, Path)),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn show_by_number(
    State(app): State<App>,
    caller: Caller,
    Path((project, pipeline, number)): Path<(String, String, String)>,
) -> ApiResult<Json<RunDetail>> {
    let number: u64 = number.parse().map_err(|_| {
        ApiErr::bad_request(format!(
            "run number `{number}` is not a whole number (runs count from 1)"
        ))
    })?;
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let run = app.store.run_by_number(&project, &pipeline, number).await?;
    Ok(Json(detail(&app, run).await?))
}

/// The workflow a run ran: the pipeline's source (entry file and template files) as it was
/// when the run was created, whatever was applied since (`kiln run --replay` compiles it).
#[utoipa::path(get, path = "/api/v1/runs/{run}/source", tag = "runs", params(("run" = String, Path)),
    responses((status = 200, body = RunWorkflow), (status = 404, body = ErrorBody)))]
pub async fn source(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunWorkflow>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let s = app.store.run_source(&run.id).await?;
    Ok(Json(RunWorkflow { file: s.file, yaml: s.yaml, files: s.files }))
}

/// Builds the detail view from the store (jobs, approvals) and the run's plan (stages).
pub async fn detail(app: &App, run: kiln_store::Run) -> ApiResult<RunDetail> {
    let plan = app.coord.plan_of_run(&run).await?;
    let records = app.store.jobs(&run.id).await?;
    let approvals = app.store.approvals(&run.id).await?;
    let arrays = app.store.arrays(&run.id).await?;
    let jobs: Vec<JobInfo> = plan
        .jobs
        .iter()
        .map(|j| {
            let rec = records.iter().find(|r| r.job == j.id);
            JobInfo {
                id: j.id.to_string(),
                stage: plan.stages[j.stage].name.clone(),
                needs: j.needs.iter().map(|n| n.to_string()).collect(),
                state: rec.map_or(JobState::Pending, |r| r.state).to_string(),
                attempts: rec.map_or(0, |r| r.attempts),
                exit_code: rec.and_then(|r| r.exit_code),
                outputs: rec.map(|r| r.outputs.clone()).unwrap_or_default(),
                reason: rec.and_then(|r| r.reason.clone()),
                waiting: rec
                    .filter(|r| r.state == JobState::Queued)
                    .and_then(|_| app.dispatch.waiting(&run.id, &j.id)),
                // An array's indexes are on many nodes: none is the job's.
                placement: rec
                    .filter(|r| matches!(r.state, JobState::Queued | JobState::Running))
                    .filter(|_| j.array.is_none())
                    .and_then(|_| app.dispatch.placement(&run.id, &j.id)),
                started_at: rec.and_then(|r| r.started_at),
                finished_at: rec.and_then(|r| r.finished_at),
                duration_ms: rec.and_then(|r| ms(r.started_at, r.finished_at)),
                array: j.array.map(|spec| {
                    arrays
                        .iter()
                        .find(|a| a.job == j.id)
                        .and_then(|a| serde_json::from_str(&a.progress).ok())
                        .unwrap_or_else(|| crate::arrays::not_started(spec))
                }),
            }
        })
        .collect();
    // The stage a paused run waits at: the first undecided approval whose earlier jobs ended.
    let mut paused_at = None;
    if run.state == RunState::Paused {
        for (i, s) in plan.stages.iter().enumerate() {
            if matches!(s.kind, StageKind::Approval { .. })
                && !approvals.iter().any(|a| a.stage == s.name)
                && jobs
                    .iter()
                    .zip(&plan.jobs)
                    .filter(|(_, pj)| pj.stage < i)
                    .all(|(j, _)| !matches!(j.state.as_str(), "pending" | "queued" | "running"))
            {
                paused_at = Some(s.name.clone());
                break;
            }
        }
    }
    let stages = plan
        .stages
        .iter()
        .map(|s| {
            let decision = approvals.iter().find(|a| a.stage == s.name).map(|a| ApprovalInfo {
                decision: match a.decision {
                    ApprovalDecision::Approved => "approved",
                    ApprovalDecision::Rejected => "rejected",
                }
                .to_string(),
                by: a.by.clone(),
                at: a.at,
            });
            let (kind, description, gate) = match &s.kind {
                StageKind::Jobs(_) => ("jobs", None, None),
                StageKind::Approval { description } => {
                    let gate = match &decision {
                        Some(d) => d.decision.clone(),
                        None if paused_at.as_deref() == Some(s.name.as_str()) => "waiting".into(),
                        None if run.state.is_final() => "skipped".into(),
                        None => "pending".into(),
                    };
                    ("approval", description.clone(), Some(gate))
                }
            };
            StageInfo { name: s.name.clone(), kind: kind.to_string(), gate, description, decision }
        })
        .collect();
    let downstream = app.store.downstream_runs(&run.id).await?.iter().map(summary).collect();
    Ok(RunDetail {
        run: summary(&run),
        params: run.params.clone(),
        paused_at,
        stages,
        jobs,
        downstream,
    })
}

/// Cancels a run: nothing new starts, running jobs are killed; a queued run ends at once.
#[utoipa::path(post, path = "/api/v1/runs/{run}/cancel", tag = "runs", params(("run" = String, Path)),
    responses((status = 200, body = RunSummary), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSummary>> {
    let run = run_for(&app, &caller, &id, Role::Developer).await?;
    app.coord.send(&run, Event::Cancel { by: caller.name.clone() }).await?;
    Ok(Json(summary(&app.store.run(&run.id).await?)))
}

/// Retries a failed, canceled or timed-out run: a new run (`retry_of` set) that reuses the
/// jobs that succeeded, with their outputs and artifacts, and runs the rest.
#[utoipa::path(post, path = "/api/v1/runs/{run}/retry", tag = "runs", params(("run" = String, Path)),
    responses((status = 201, body = RunSummary), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunSummary>)> {
    let run = run_for(&app, &caller, &id, Role::Developer).await?;
    let new = app.coord.retry_as(&run, &caller.name, caller.token).await?;
    Ok((StatusCode::CREATED, Json(summary(&new))))
}

/// Approves or rejects the approval stage a paused run waits at; who and when are recorded.
#[utoipa::path(post, path = "/api/v1/runs/{run}/stages/{stage}/decision", tag = "runs",
    params(("run" = String, Path), ("stage" = String, Path)), request_body = DecisionRequest,
    responses((status = 200, body = RunSummary),
              (status = 409, description = "the stage is not waiting", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn decide(
    State(app): State<App>,
    caller: Caller,
    Path((id, stage)): Path<(String, String)>,
    Body(req): Body<DecisionRequest>,
) -> ApiResult<Json<RunSummary>> {
    let run = run_for(&app, &caller, &id, Role::Developer).await?;
    let by = caller.name.clone();
    let event = match req.decision.as_deref().unwrap_or("approve") {
        "approve" => Event::Approved { stage, by },
        "reject" => Event::Rejected { stage, by },
        other => {
            return Err(ApiErr::bad_request(format!(
                "decision `{other}` is not `approve` or `reject`"
            )));
        }
    };
    app.coord.send(&run, event).await?;
    Ok(Json(summary(&app.store.run(&run.id).await?)))
}
