//! Delivery of an application's config to its consumers: `GET .../config/{app}/{env}` answers
//! the release the consumer gets, with its digest as `ETag`; with `If-None-Match` and `wait`
//! it long-polls, answering as soon as a release changes what the consumer gets (304 when the
//! wait ends first); `.../watch` streams each release as an SSE event whose id is the release
//! number (resume with `Last-Event-ID` or `after`: a consumer that has it gets nothing again).
//! `instance` names the consumer for gray releases. Both wait on the config center's hub,
//! never on the store.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use kiln_api::ErrorBody;
use kiln_api::config::DeliveredConfig;
use kiln_store::Role;
use serde::Deserialize;

use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::config_center::Served;
use crate::error::{ApiErr, ApiResult};

/// The longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Query of the config's `GET`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct GetQuery {
    /// The consumer's instance id: it gets a gray release when named by it.
    instance: Option<String>,
    /// Long poll: wait this long (`30s`, at most 5 minutes) for another release than the
    /// `If-None-Match` digest before answering 304.
    wait: Option<String>,
}

/// The digests an `If-None-Match` header names (quotes and `W/` removed).
fn known_digests(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn etag(served: &Served) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", served.digest))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn answer(served: &Served) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag(served)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        served.body.clone(),
    )
        .into_response()
}

fn not_modified(served: &Served) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(served))]).into_response()
}

fn none_yet(app: &str, env: &str) -> ApiErr {
    ApiErr::not_found(format!(
        "`{app}` has no release in `{env}` yet (`kiln config release {app} --env {env}`)"
    ))
}

/// The release this consumer gets (files, number, digest; the digest is the `ETag`). With
/// `If-None-Match` and `wait`, a long poll: answered as soon as a release changes it, 304
/// when the wait ends first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/config/{app}/{env}", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), GetQuery,
           ("If-None-Match" = Option<String>, Header, description = "the digest the consumer has (its `ETag`)")),
    responses((status = 200, body = DeliveredConfig, headers(("ETag" = String, description = "the files' digest, quoted"))),
              (status = 304, description = "the consumer has this release (the wait ended without another)"),
              (status = 400, body = ErrorBody),
              (status = 404, description = "no such application or environment, or no release yet", body = ErrorBody)))]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path((project, name, env)): Path<(String, String, String)>,
    Query(q): Query<GetQuery>,
) -> ApiResult<Response> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => humantime::parse_duration(w.trim())
            .map_err(|e| ApiErr::bad_request(format!("wait `{w}`: {e} (expected like `30s`)")))?,
    };
    if wait > MAX_WAIT {
        return Err(ApiErr::bad_request(format!(
            "wait `{}` is longer than the {}s a long poll may last",
            q.wait.unwrap_or_default(),
            MAX_WAIT.as_secs()
        )));
    }
    let known = known_digests(&headers);
    let mut rx = app.config.watch(&project, &name, &env).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let closed = app.coord.run_feed().closed();
    let instance = q.instance.as_deref();
    loop {
        let served: Option<Arc<Served>> = rx.borrow_and_update().serves(instance).cloned();
        match &served {
            Some(s) if !known.contains(&s.digest) => return Ok(answer(s)),
            _ => {}
        }
        let woke = tokio::select! {
            changed = tokio::time::timeout_at(deadline, rx.changed()) => match changed {
                Ok(Ok(())) => Woke::Changed,
                Ok(Err(_)) => Woke::Gone,
                Err(_) => Woke::Done,
            },
            () = closed.cancelled() => Woke::Done,
        };
        match woke {
            Woke::Changed => continue,
            Woke::Gone => return Err(none_yet(&name, &env)),
            Woke::Done => {
                return match served {
                    Some(s) => Ok(not_modified(&s)),
                    None => Err(none_yet(&name, &env)),
                };
            }
        }
    }
}

/// Why a long poll woke.
enum Woke {
    /// The head changed (what this consumer gets may have).
    Changed,
    /// The head is gone (its environment was deleted).
    Gone,
    /// The wait ended (or the server is stopping).
    Done,
}

/// Query of the config's watch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WatchQuery {
    /// The consumer's instance id: it gets a gray release when named by it.
    instance: Option<String>,
    /// Resume after this release number (the consumer has it); `Last-Event-ID` wins.
    after: Option<u32>,
}

/// Every release this consumer gets, as it happens (SSE events `release`, each a
/// `DeliveredConfig` with the release number as its id): first the current one unless the
/// consumer has it (`Last-Event-ID` or `after`), then each change.
#[utoipa::path(get, path = "/api/v1/projects/{project}/config/{app}/{env}/watch", tag = "config",
    params(("project" = String, Path), ("app" = String, Path), ("env" = String, Path), WatchQuery,
           ("Last-Event-ID" = Option<u32>, Header, description = "the release the consumer has")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE of DeliveredConfig"),
              (status = 404, body = ErrorBody)))]
pub async fn watch(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path((project, name, env)): Path<(String, String, String)>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    project_for(&app, &caller, &project, Role::Viewer).await?;
    let after = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(t) => Some(t.trim().parse::<u32>().map_err(|_| {
            ApiErr::bad_request(format!("Last-Event-ID `{t}` is not a release number"))
        })?),
        None => q.after,
    };
    let rx = app.config.watch(&project, &name, &env).await?;
    let instance = q.instance;
    let events = stream::unfold((rx, after), move |(mut rx, last)| {
        let instance = instance.clone();
        async move {
            loop {
                let served = rx.borrow_and_update().serves(instance.as_deref()).cloned();
                if let Some(s) = served
                    && Some(s.number) != last
                {
                    let event = SseEvent::default()
                        .id(s.number.to_string())
                        .event("release")
                        .data(String::from_utf8_lossy(&s.body));
                    return Some((Ok(event), (rx, Some(s.number))));
                }
                // Ends when the head is dropped (its environment was deleted).
                rx.changed().await.ok()?;
            }
        }
    });
    let closed = app.coord.run_feed().closed();
    Ok(Sse::new(events.take_until(closed.cancelled_owned())).keep_alive(KeepAlive::default()))
}
