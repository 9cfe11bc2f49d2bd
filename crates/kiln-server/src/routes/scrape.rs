//! Metrics scraping: apply, list, show and delete a project's metric rules; every rule's
//! latest samples on one Prometheus endpoint; a service's scraped series for the UI's plots.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::ErrorBody;
use kiln_api::metric::{ApplyMetricRule, MetricRuleInfo, ServiceMetrics};
use kiln_store::{Role, RuleChange};
use serde::Deserialize;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;

/// The metric rules of a project, with their targets as their last round saw them.
#[utoipa::path(get, path = "/api/v1/projects/{project}/metrics", tag = "services",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<MetricRuleInfo>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<MetricRuleInfo>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.scraper.list(&project).await?))
}

/// A metric rule and its targets: URL, up, samples, last scrape, error.
#[utoipa::path(get, path = "/api/v1/projects/{project}/metrics/{name}", tag = "services",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = MetricRuleInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<Json<MetricRuleInfo>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    Ok(Json(app.scraper.get(&project, &name).await?))
}

/// Applies a metric rule file (`kind: metric`); it runs at once. The rule's name is the
/// file's `name`, which must match the path's.
#[utoipa::path(put, path = "/api/v1/projects/{project}/metrics/{name}", tag = "services",
    params(("project" = String, Path), ("name" = String, Path)), request_body = ApplyMetricRule,
    responses((status = 200, body = MetricRuleInfo), (status = 201, body = MetricRuleInfo),
              (status = 400, body = ErrorBody), (status = 422, description = "the file has errors (`invalid_metric`, with diagnostics)", body = ErrorBody)))]
pub async fn apply(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Body(req): Body<ApplyMetricRule>,
) -> ApiResult<(StatusCode, Json<MetricRuleInfo>)> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    let file = req.file.clone().unwrap_or_else(|| format!("{name}.yml"));
    let named = kiln_workflow::compile_metric(&file, &req.yaml).rule.map(|r| r.name);
    super::file_names_path("metric rule", named, &name)?;
    let (info, change) = app.scraper.apply(&project, &file, &req.yaml, &caller.name).await?;
    let status = if change == RuleChange::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)))
}

/// Deletes a metric rule: it stops, and its samples and history go.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/metrics/{name}", tag = "services",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    project_for(&app, &caller, &project, Role::Developer).await?;
    app.scraper.delete(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The latest samples of every metric rule of the projects the caller can read, in
/// Prometheus' text format (0.0.4), each labelled `project`, `service`, `instance`, `node`,
/// `slot`, `rule` and the rule's labels. Scrape it with `honor_labels: true` and the token as
/// bearer credentials (docs/services.md).
#[utoipa::path(get, path = "/api/v1/metrics/scraped", tag = "services",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text exposition format 0.0.4", body = String),
              (status = 401, body = ErrorBody)))]
pub async fn scraped(State(app): State<App>, caller: Caller) -> ApiResult<Response> {
    let mut visible = Vec::new();
    for project in app.scraper.projects() {
        let Ok(p) = app.store.project(&project).await else { continue };
        if caller.require_on(Role::Viewer, &p).is_ok() {
            visible.push(project);
        }
    }
    let text = app.scraper.exposition(|p| visible.iter().any(|v| v == p));
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
        .into_response())
}

/// Query of `GET .../services/{service}/metrics`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SinceQuery {
    /// Only points at or after this time (unix milliseconds).
    since: Option<i64>,
}

/// The scraped series of a service's instances (every rule that scrapes it), kept in memory:
/// an hour at most, at most 720 points per series and 1000 series per rule.
#[utoipa::path(get, path = "/api/v1/projects/{project}/services/{service}/metrics", tag = "services",
    params(("project" = String, Path), ("service" = String, Path), SinceQuery),
    responses((status = 200, body = ServiceMetrics), (status = 404, body = ErrorBody)))]
pub async fn service_metrics(
    State(app): State<App>,
    caller: Caller,
    Path((project, service)): Path<(String, String)>,
    Query(q): Query<SinceQuery>,
) -> ApiResult<Json<ServiceMetrics>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    app.store.service(&project, &service).await?;
    Ok(Json(ServiceMetrics { series: app.scraper.history(&project, &service, q.since) }))
}
