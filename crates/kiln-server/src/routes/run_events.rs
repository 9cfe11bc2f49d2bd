//! `GET /api/v1/runs/events`: run events (started, waiting for approval, ended) as they are
//! recorded, over SSE. Each event's `id:` is its place in this server's feed, so a client that
//! reconnects with `Last-Event-ID` gets what it missed meanwhile (see `run_events.rs`).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use kiln_api::{ErrorBody, RunEvent, RunEventRun};
use kiln_store::{Role, RunNotice};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::run_events::FeedItem;

/// Which run events to stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// Only this project's runs.
    project: Option<String>,
}

/// The API form of a recorded run event (the same JSON as a `run` webhook's body).
pub fn run_event(n: &RunNotice) -> RunEvent {
    RunEvent {
        event: n.event.as_str().to_string(),
        run: RunEventRun {
            id: n.run.id.to_string(),
            project: n.run.project.clone(),
            pipeline: n.run.pipeline.clone(),
            number: n.run.number,
            state: n.run.state.as_str().to_string(),
            reason: n.run.reason.clone(),
            triggered_by: n.run.triggered_by.clone(),
            url: n.run.url.clone(),
        },
        at: n.at,
    }
}

fn sse_event(item: &FeedItem) -> SseEvent {
    let data = serde_json::to_string(&run_event(&item.notice)).expect("a run event is JSON");
    SseEvent::default().id(item.id.clone()).event("run").data(data)
}

/// Run events as they happen, over SSE (`event: run`, `data:` a `RunEvent`). Runs of every
/// project the token sees, or of `project` only.
#[utoipa::path(get, path = "/api/v1/runs/events", tag = "runs", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of RunEvent", body = RunEvent),
        (status = 404, body = ErrorBody)))]
pub async fn stream(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let only = match (&q.project, &caller.project) {
        (Some(p), _) => Some(project_for(&app, &caller, p, Role::Viewer).await?.name),
        (None, Some(id)) => {
            let projects = app.store.projects().await?;
            let name = projects.into_iter().find(|p| &p.id == id).map(|p| p.name);
            Some(name.unwrap_or_default())
        }
        (None, None) => {
            caller.require(Role::Viewer)?;
            None
        }
    };
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let (replay, rx) = app.coord.run_feed().subscribe(last);
    let seen = replay.last().map_or(0, |i| i.n);
    let keep = move |item: &FeedItem| only.as_ref().is_none_or(|p| &item.notice.run.project == p);
    let keep2 = keep.clone();
    let replayed = stream::iter(replay.into_iter().filter(keep).map(|i| Ok(sse_event(&i))));
    let live = stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(item) => Some((Some(item), rx)),
            // Too slow: the oldest were dropped. Say so, then go on with what is left.
            Err(RecvError::Lagged(_)) => Some((None, rx)),
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |item| {
        let out = match item {
            Some(item) if item.n > seen && keep2(&item) => Some(Ok(sse_event(&item))),
            Some(_) => None,
            None => Some(Ok(SseEvent::default().event("lagged").data("{}"))),
        };
        std::future::ready(out)
    });
    let closed = app.coord.run_feed().closed();
    let events = replayed.chain(live).take_until(closed.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
