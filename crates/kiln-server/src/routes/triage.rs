//! Failure triage and approvals: why each failed job of a run failed, without opening its log
//! (`GET /api/v1/runs/{run}/failures`: the failing script entry, its exit status, the lines
//! before it, the node), and the runs waiting for approval (`GET /api/v1/approvals`: the
//! stage, its question, the run's effective params, since when it waits).
//!
//! A failure is read from the end of the job's stored log when asked (one page through the
//! log's index, whatever its length, off the runtime's workers) and cut by
//! `kiln_logs::excerpt`; nothing more is stored.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use kiln_api::{ErrorBody, JobFailure, PendingApproval};
use kiln_engine::{JobState, RunState};
use kiln_store::{Role, RunFilter};
use serde::Deserialize;

use super::logs::line;
use super::projects::project_for;
use super::runs::{detail, run_for, summary};
use crate::App;
use crate::auth::Caller;
use crate::coord::job_log_key;
use crate::error::{ApiErr, ApiResult};

/// Lines shown before a failing entry's exit status line, unless asked otherwise.
const DEFAULT_LINES: usize = 20;
/// Most lines shown before it.
const MAX_LINES: usize = 200;
/// Lines read at the end of a failed job's log to find its exit status line (what a job
/// prints after it, artifact uploads and the like, is far shorter).
const TAIL: u64 = 1000;

/// How much of each failure to show.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FailuresQuery {
    /// Lines shown before each failing entry's exit status line (default 20, at most 200).
    lines: Option<usize>,
}

/// Why each failed (or timed-out) job of a run failed, in plan order: its failing script entry
/// (`make test`) and exit status from the log's `exit status N: CMD` line (or the entry that
/// was running when it was stopped), the lines just before, the node, exit code and reason.
/// Read from the end of each job's stored log, whatever its length. Empty when no job failed.
#[utoipa::path(get, path = "/api/v1/runs/{run}/failures", tag = "runs",
    params(("run" = String, Path), FailuresQuery),
    responses((status = 200, body = Vec<JobFailure>), (status = 404, body = ErrorBody)))]
pub async fn failures(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FailuresQuery>,
) -> ApiResult<Json<Vec<JobFailure>>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let before = q.lines.unwrap_or(DEFAULT_LINES).min(MAX_LINES);
    let plan = app.coord.plan_of_run(&run).await?;
    let records = app.store.jobs(&run.id).await?;
    let failed: Vec<(usize, kiln_store::JobRecord)> = plan
        .jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let rec = records.iter().find(|r| r.job == j.id)?;
            matches!(rec.state, JobState::Failure | JobState::Timeout).then(|| (i, rec.clone()))
        })
        .collect();
    if failed.is_empty() {
        return Ok(Json(Vec::new()));
    }
    let nodes = app.store.attempt_nodes(&run.id).await?;
    let logs = app.logs.clone();
    let run_id = run.id;
    let out = tokio::task::spawn_blocking(move || -> ApiResult<Vec<JobFailure>> {
        let mut out = Vec::with_capacity(failed.len());
        for (index, rec) in failed {
            let attempt = rec.attempts.max(1);
            let key = job_log_key(&run_id, index, attempt);
            let info = logs.info(&key)?;
            let from = info.last_seq.saturating_sub(TAIL) + 1;
            let records = logs.read(&key, from, TAIL as usize)?;
            let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
            let cut = kiln_logs::excerpt::excerpt(&texts, before);
            let seq = |at: Option<usize>| at.map(|i| records[i].seq);
            let (step_line, exit_line) = (seq(cut.echo), seq(cut.exit));
            let job = rec.job.to_string();
            out.push(JobFailure {
                node: nodes
                    .iter()
                    .find(|(j, a, _)| *j == job && *a == attempt)
                    .map(|(_, _, node)| node.clone()),
                attempt,
                state: rec.state.to_string(),
                exit_code: rec.exit_code,
                reason: rec.reason,
                step: cut.step,
                step_status: cut.status,
                step_line,
                exit_line,
                lines: records[cut.lines].iter().cloned().map(|r| line(r, false)).collect(),
                log_lines: info.last_seq,
                job,
            });
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiErr::internal(format!("reading failed jobs' logs: {e}")))??;
    Ok(Json(out))
}

/// Which runs waiting for approval to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ApprovalsQuery {
    /// Only this project's runs.
    project: Option<String>,
}

/// Every run waiting at an approval stage that the caller may see (at most 500), the
/// longest-waiting first: the stage and its question, the run's effective params (defaults
/// included, those taken from defaults named) and since when it waits. Approve or reject
/// with `POST /api/v1/runs/{run}/stages/{stage}/decision`.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "runs", params(ApprovalsQuery),
    responses((status = 200, body = Vec<PendingApproval>), (status = 404, body = ErrorBody)))]
pub async fn approvals(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<ApprovalsQuery>,
) -> ApiResult<Json<Vec<PendingApproval>>> {
    if let Some(project) = &q.project {
        project_for(&app, &caller, project, Role::Viewer).await?;
    }
    let filter = RunFilter {
        state: Some(RunState::Paused),
        project: q.project.clone(),
        limit: Some(500),
        ..RunFilter::default()
    };
    let runs = app.store.runs(&filter).await?;
    let projects = app.store.projects().await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for run in runs {
        let visible = projects.iter().any(|p| p.name == run.project && caller.may_see(&p.id));
        if !visible {
            continue;
        }
        let plan = app.coord.plan_of_run(&run).await?;
        let since = app.store.last_event_at(&run.id).await?;
        let d = detail(&app, run.clone()).await?;
        let Some(stage) = d.paused_at else { continue };
        let description =
            d.stages.iter().find(|s| s.name == stage).and_then(|s| s.description.clone());
        let given: BTreeMap<String, String> = run
            .params
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pairs: Vec<(String, String)> = given.clone().into_iter().collect();
        let params: BTreeMap<String, String> = match kiln_workflow::bind_params(&plan, &pairs) {
            Ok(bound) => bound.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
            // Bound when the run started; should that fail now, what was given is shown.
            Err(_) => given.clone(),
        };
        let defaults = params.keys().filter(|k| !given.contains_key(*k)).cloned().collect();
        let waiting_since = since.or(run.started_at).unwrap_or(run.created_at);
        out.push(PendingApproval {
            run: summary(&run),
            stage,
            description,
            params,
            defaults,
            waiting_since,
            waited_ms: u64::try_from((now - waiting_since).num_milliseconds()).unwrap_or(0),
        });
    }
    out.sort_by(|a, b| a.waiting_since.cmp(&b.waiting_since).then(a.run.id.cmp(&b.run.id)));
    Ok(Json(out))
}
