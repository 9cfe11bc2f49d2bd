//! `GET /api/v1/triggers`: what starts the runs of every pipeline the caller can see.

use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;
use kiln_api::ErrorBody;
use kiln_api::triggers::{FireTime, ImageTriggerInfo, ScheduleInfo, TriggerInfo, TriggerKind};
use kiln_store::{Role, ScheduleRecord};
use kiln_workflow::plan::Plan;
use kiln_workflow::schedule::Schedule;
use serde::Deserialize;

use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;

/// How many next fire times a schedule shows.
pub const NEXT_FIRES: usize = 3;

/// Filter of the trigger list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TriggerQuery {
    /// Only this project's pipelines.
    project: Option<String>,
}

/// Lists every trigger of every pipeline the caller can see (of one project with
/// `?project=`), by project and pipeline: `api` (started by hand) unless `on: { api: false }`,
/// then `image` and `schedule` entries in file order; schedules with their next fire times in
/// UTC and in their zone, and their last fire.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "pipelines", params(TriggerQuery),
    responses((status = 200, body = Vec<TriggerInfo>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<TriggerQuery>,
) -> ApiResult<Json<Vec<TriggerInfo>>> {
    let projects = match &q.project {
        Some(name) => vec![project_for(&app, &caller, name, Role::Viewer).await?],
        None => app
            .store
            .projects()
            .await?
            .into_iter()
            .filter(|p| caller.project.is_none_or(|id| id == p.id))
            .collect(),
    };
    let mut out = Vec::new();
    for project in projects {
        let rows = app.store.schedules(Some(&project.name)).await?;
        for pipeline in app.store.pipelines(&project.name).await? {
            let Ok(plan) = app.coord.plan_of(&pipeline) else { continue };
            out.extend(infos(&pipeline, &plan, &rows));
        }
    }
    Ok(Json(out))
}

/// The triggers of one pipeline: its plan's `on:`, schedules completed from their stored
/// `rows` (any pipeline's; the pipeline's own are picked).
pub fn infos(
    pipeline: &kiln_store::Pipeline,
    plan: &Plan,
    rows: &[ScheduleRecord],
) -> Vec<TriggerInfo> {
    let info = |kind, details: String| TriggerInfo {
        project: pipeline.project.clone(),
        pipeline: pipeline.name.clone(),
        kind,
        details,
        schedule: None,
        image: None,
    };
    let mut out = Vec::new();
    if plan.triggers.api {
        out.push(info(TriggerKind::Api, "started by hand: API, kiln trigger, web UI".into()));
    }
    for t in &plan.triggers.image {
        let tags = if t.tags.is_empty() { "every tag".to_string() } else { t.tags.join(", ") };
        out.push(TriggerInfo {
            image: Some(ImageTriggerInfo {
                repository: t.repository.clone(),
                tags: t.tags.clone(),
            }),
            ..info(TriggerKind::Image, format!("push of {} ({tags})", t.repository))
        });
    }
    let repo = plan.source.as_ref().map_or("(no source)", |s| s.repository.as_str());
    if let Some(p) = &plan.triggers.push {
        let mut what = Vec::new();
        for (name, globs) in [("branches", &p.branches), ("tags", &p.tags)] {
            if let Some(g) = globs {
                what.push(format!("{name} {}", g.join(", ")));
            }
        }
        if !p.paths.is_empty() {
            what.push(format!("paths {}", p.paths.join(", ")));
        }
        if !p.paths_ignore.is_empty() {
            what.push(format!("paths-ignore {}", p.paths_ignore.join(", ")));
        }
        let filter = if what.is_empty() { "every push".to_string() } else { what.join("; ") };
        out.push(info(TriggerKind::Push, format!("push to {repo}: {filter}")));
    }
    if let Some(pr) = &plan.triggers.pull_request {
        let into =
            if pr.branches.is_empty() { "any branch".to_string() } else { pr.branches.join(", ") };
        let types: Vec<&str> = pr.types.iter().map(|t| t.name()).collect();
        out.push(info(
            TriggerKind::PullRequest,
            format!("pull request on {repo} into {into}: {}", types.join(", ")),
        ));
    }
    for t in &plan.triggers.schedule {
        let row = rows.iter().find(|r| r.pipeline_id == pipeline.id && r.key == t.key());
        out.push(TriggerInfo {
            schedule: Some(schedule_info(t, row)),
            ..info(
                TriggerKind::Schedule,
                format!("\"{}\" in {}, missed: {}", t.cron, t.timezone, t.missed),
            )
        });
    }
    out
}

fn schedule_info(
    t: &kiln_workflow::plan::ScheduleTrigger,
    row: Option<&ScheduleRecord>,
) -> ScheduleInfo {
    let next = match t.schedule() {
        Some(s) => next_fires(&s, row.and_then(|r| r.next_fire_at)),
        None => Vec::new(),
    };
    ScheduleInfo {
        cron: t.cron.clone(),
        timezone: t.timezone.clone(),
        missed: t.missed.to_string(),
        params: t.params.clone(),
        next,
        last_fired_at: row.and_then(|r| r.last_fired_at),
        last_run: row
            .and_then(|r| r.last_run.map(|(_, n)| format!("{}/{}#{n}", r.project, r.pipeline))),
    }
}

/// The next fire times: the stored one first (the scheduler's), then those after it; with
/// nothing stored, those after now.
fn next_fires(s: &Schedule, stored: Option<chrono::DateTime<Utc>>) -> Vec<FireTime> {
    let fire = |at: chrono::DateTime<Utc>| FireTime {
        at,
        local: at.with_timezone(&s.timezone()).to_rfc3339(),
    };
    match stored {
        Some(first) => std::iter::once(fire(first))
            .chain(s.upcoming(first, NEXT_FIRES - 1).into_iter().map(|t| fire(t.to_utc())))
            .collect(),
        None => s.upcoming(Utc::now(), NEXT_FIRES).into_iter().map(|t| fire(t.to_utc())).collect(),
    }
}
