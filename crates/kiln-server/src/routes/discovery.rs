//! Discovery: where the instances of services run. `GET /api/v1/discovery/targets` is a
//! Prometheus `http_sd` endpoint for any label selector; `GET /api/v1/discovery/watch` streams
//! every change of the service event log (SSE, each event's id its revision; resume with
//! `Last-Event-ID` or `after`, with no gap and no duplicate).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use kiln_api::ErrorBody;
use kiln_api::service::{DiscoveryEvent, SdTarget};
use kiln_service::Selector;
use kiln_store::Role;
use serde::Deserialize;

use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};

/// Query of `GET /api/v1/discovery/targets`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TargetsQuery {
    /// A label selector as Kubernetes writes them (`app=distcc,team=build`, `tier in (a,b)`,
    /// `!canary`); none: every service.
    selector: Option<String>,
    /// The named port to list (default: each service's first port by name).
    port: Option<String>,
    /// Only this project's services.
    project: Option<String>,
}

/// The projects the caller may read discovery of: one name, or all (`None`).
async fn visible(app: &App, caller: &Caller, project: Option<&str>) -> ApiResult<Option<String>> {
    match (project, &caller.project) {
        (Some(p), _) => Ok(Some(project_for(app, caller, p, Role::Viewer).await?.name)),
        (None, Some(id)) => {
            let projects = app.store.projects().await?;
            Ok(Some(projects.into_iter().find(|p| &p.id == id).map(|p| p.name).unwrap_or_default()))
        }
        (None, None) => {
            caller.require(Role::Viewer)?;
            Ok(None)
        }
    }
}

/// A Prometheus-safe label name.
fn label_name(k: &str) -> String {
    k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Healthy instances of the services a selector picks, as Prometheus `http_sd` target groups
/// (point `http_sd_configs` at this URL with the token as bearer credentials).
#[utoipa::path(get, path = "/api/v1/discovery/targets", tag = "services", params(TargetsQuery),
    responses((status = 200, body = Vec<SdTarget>), (status = 400, description = "a bad selector", body = ErrorBody)))]
pub async fn targets(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<TargetsQuery>,
) -> ApiResult<Json<Vec<SdTarget>>> {
    let selector = Selector::parse(q.selector.as_deref().unwrap_or(""))
        .map_err(|e| ApiErr::bad_request(format!("selector: {e}")))?;
    let only = visible(&app, &caller, q.project.as_deref()).await?;
    let services = app.services.list(only.as_deref()).await?;
    let out = crate::services::targets::targets(&services, &selector, q.port.as_deref())
        .into_iter()
        .map(|t| {
            let mut labels: BTreeMap<String, String> =
                t.service_labels.iter().map(|(k, v)| (label_name(k), v.clone())).collect();
            labels.insert("project".into(), t.project.clone());
            labels.insert("service".into(), t.service.clone());
            labels.insert("instance".into(), t.instance.clone());
            labels.insert("node".into(), t.node.clone());
            labels.insert("slot".into(), t.slot.to_string());
            labels.insert("version".into(), t.version.to_string());
            SdTarget { targets: vec![t.address()], labels }
        })
        .collect();
    Ok(Json(out))
}

/// Query of `GET /api/v1/discovery/watch`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WatchQuery {
    /// Resume after this revision (0: from the beginning); `Last-Event-ID` wins.
    after: Option<u64>,
    /// Only this project's services.
    project: Option<String>,
}

/// Every change of every instance (and service deletion), live, oldest first, from a revision.
#[utoipa::path(get, path = "/api/v1/discovery/watch", tag = "services",
    params(WatchQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this revision")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE of DiscoveryEvent")))]
pub async fn watch(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let only = visible(&app, &caller, q.project.as_deref()).await?;
    let after = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(t) => t
            .trim()
            .parse::<u64>()
            .map_err(|_| ApiErr::bad_request(format!("Last-Event-ID `{t}` is not a revision")))?,
        None => q.after.unwrap_or(0),
    };
    let rx = app.services.revisions();
    let store = app.store.clone();
    let events = stream::unfold((after, rx, store), move |(after, mut rx, store)| async move {
        loop {
            match store.service_events_after(after, 500).await {
                Ok(batch) if !batch.is_empty() => {
                    let next = batch.last().map_or(after, |e| e.revision);
                    return Some((batch, (next, rx, store)));
                }
                Ok(_) => {
                    // Nothing newer: wait for the next change (or a second, in case another
                    // server wrote it).
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
                }
                Err(e) => {
                    tracing::warn!("discovery watch: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    })
    .flat_map(move |batch| {
        let only = only.clone();
        stream::iter(
            batch.into_iter().filter(move |e| only.as_ref().is_none_or(|p| &e.project == p)).map(
                |e| {
                    let event = DiscoveryEvent {
                        revision: e.revision,
                        project: e.project,
                        service: e.service,
                        kind: e.kind,
                        instance: e.instance.as_ref().map(crate::services::instance_info),
                        at: e.at,
                    };
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    Ok(SseEvent::default()
                        .id(event.revision.to_string())
                        .event("change")
                        .data(data))
                },
            ),
        )
    });
    let closed = app.coord.run_feed().closed();
    Ok(Sse::new(events.take_until(closed.cancelled_owned())).keep_alive(KeepAlive::default()))
}
