//! The HTTP surface: `/api/v1` (described by `/api/openapi.json`), `/metrics`, `/healthz`,
//! the web UI (`kiln-ui`) at `/` and every other GET path, and the registry's `/v2/` and
//! `/auth/token`.
//!
//! Text answers of the API and the UI (JSON, HTML, scripts, plain text, metrics) are gzipped
//! for clients that accept it; SSE streams and the registry's answers never are.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, Method, StatusCode, Uri, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::App;
use crate::error::ApiErr;

pub mod agents;
pub mod config;
pub mod config_delivery;
pub mod deploys;
pub mod discovery;
pub mod environments;
pub mod gc;
pub mod hooks;
pub mod logs;
pub mod nodes;
pub mod pool_groups;
pub mod projects;
pub mod quotas;
pub mod registry;
pub mod run_events;
pub mod run_groups;
pub mod runs;
pub mod scans;
pub mod scrape;
pub mod services;
pub mod stats;
pub mod tokens;
pub mod triggers;
pub mod usage;

/// A JSON body whose errors come back in the API's error shape.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiErr))]
pub struct Body<T>(pub T);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln API",
        description = "Pipelines, runs, logs, approvals, artifacts, secrets, tokens, services, environments, the config center, deploys and the agent lease protocol. Every call needs `Authorization: Bearer <token>`. Errors are `{\"error\": {\"code\", \"message\", \"diagnostics\"}}` with a stable code."
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "projects"), (name = "pipelines"), (name = "runs"), (name = "logs"),
        (name = "artifacts"), (name = "secrets"), (name = "tokens"), (name = "agents"), (name = "pool"),
        (name = "server"), (name = "registry"), (name = "hooks"), (name = "services"),
        (name = "environments"), (name = "config"), (name = "deploys")
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tokens::info))
        .routes(routes!(stats::queue))
        .routes(routes!(gc::collect))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::pipelines))
        .routes(routes!(projects::pipeline, projects::apply))
        .routes(routes!(triggers::list))
        .routes(routes!(projects::secrets))
        .routes(routes!(projects::set_secret, projects::delete_secret))
        .routes(routes!(services::list))
        .routes(routes!(discovery::targets))
        .routes(routes!(discovery::watch))
        .routes(routes!(services::project_list))
        .routes(routes!(services::get, services::apply, services::delete))
        .routes(routes!(services::scale))
        .routes(routes!(services::restart))
        .routes(routes!(services::stop))
        .routes(routes!(services::rollback))
        .routes(routes!(services::history))
        .routes(routes!(scrape::list))
        .routes(routes!(scrape::get, scrape::apply, scrape::delete))
        .routes(routes!(scrape::scraped))
        .routes(routes!(scrape::service_metrics))
        .routes(routes!(environments::list, environments::create))
        .routes(routes!(environments::show, environments::update, environments::delete))
        .routes(routes!(environments::set_variable, environments::unset_variable))
        .routes(routes!(config::apps))
        .routes(routes!(config::show))
        .routes(routes!(config::set_template, config::remove_template))
        .routes(routes!(config::set_shared_values))
        .routes(routes!(config::set_env_values))
        .routes(routes!(config::render))
        .routes(routes!(config::diff))
        .routes(routes!(config::history, config::release))
        .routes(routes!(config::release_show))
        .routes(routes!(config::approve))
        .routes(routes!(config::reject))
        .routes(routes!(config::rollback))
        .routes(routes!(config::audit))
        .routes(routes!(config_delivery::get))
        .routes(routes!(config_delivery::watch))
        .routes(routes!(deploys::list, deploys::deploy))
        .routes(routes!(deploys::history))
        .routes(routes!(deploys::show))
        .routes(routes!(deploys::approve))
        .routes(routes!(deploys::reject))
        .routes(routes!(deploys::rollback))
        .routes(routes!(deploys::promote))
        .routes(routes!(deploys::board))
        .routes(routes!(runs::trigger))
        .routes(routes!(runs::show_by_number))
        .routes(routes!(runs::list))
        .routes(routes!(run_events::stream))
        .routes(routes!(runs::show))
        .routes(routes!(runs::source))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::retry))
        .routes(routes!(runs::decide))
        .routes(routes!(run_groups::start))
        .routes(routes!(run_groups::show))
        .routes(routes!(logs::run_page))
        .routes(routes!(logs::run_stream))
        .routes(routes!(logs::job_page))
        .routes(routes!(logs::job_stream))
        .routes(routes!(logs::job_download))
        .routes(routes!(logs::run_download))
        .routes(routes!(logs::instance_page))
        .routes(routes!(logs::instance_stream))
        .routes(routes!(agents::run_artifacts))
        .routes(routes!(agents::download))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(agents::register, agents::list))
        .routes(routes!(agents::leave))
        .routes(routes!(agents::lease))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::show, nodes::update, nodes::forget))
        .routes(routes!(nodes::offers))
        .routes(routes!(nodes::prepull))
        .routes(routes!(nodes::prepull_status))
        .routes(routes!(quotas::list))
        .routes(routes!(pool_groups::list, pool_groups::apply))
        .routes(routes!(pool_groups::show, pool_groups::delete))
        .routes(routes!(pool_groups::events))
        .routes(routes!(quotas::set, quotas::remove))
        .routes(routes!(usage::report))
        .routes(routes!(agents::events))
        .routes(routes!(agents::reports))
        .routes(routes!(agents::images))
        .routes(routes!(agents::input))
        .routes(routes!(agents::get_cache, agents::put_cache))
        .routes(routes!(agents::put_artifacts))
        .routes(routes!(registry::repositories))
        .routes(routes!(registry::tags))
        .routes(routes!(registry::visibility))
        .routes(routes!(registry::gc))
        .routes(routes!(registry::events))
        .routes(routes!(registry::webhooks, registry::add_webhook))
        .routes(routes!(registry::delete_webhook))
        .routes(routes!(scans::import).layer(DefaultBodyLimit::max(scans::MAX_IMPORT)))
        .routes(routes!(scans::vulns))
        .routes(routes!(scans::scan))
        .routes(routes!(scans::policy, scans::set_policy))
        // GitHub sends deliveries of up to 25 MB; every other body keeps axum's 2 MB cap.
        .routes(routes!(hooks::deliver).layer(DefaultBodyLimit::max(hooks::MAX_BODY)))
}

/// The whole router.
pub fn router(app: App) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Arc::new(doc);
    api.route("/api/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(kiln_ui::router())
        .fallback(fallback)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(app.clone(), crate::storage::guard))
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(text_answer)))
        // The registry answers in the distribution spec's error shape: merged after the
        // layer above, so that it does not rewrite them.
        .merge(app.registry.router())
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// True for a text answer worth compressing (not an event stream, not a binary download).
fn text_answer(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = kind.split(';').next().unwrap_or("").trim();
    (kind.starts_with("text/") && kind != "text/event-stream")
        || kind == "application/json"
        || kind == "application/javascript"
        || kind.ends_with("+json")
        || kind == "image/svg+xml"
}

/// A GET of a client-side route of the web UI gets the UI's page; anything else is the API's
/// JSON 404.
async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if (method == Method::GET || method == Method::HEAD) && kiln_ui::is_ui_path(uri.path()) {
        return kiln_ui::page(&headers);
    }
    ApiErr::not_found("no such endpoint; see /api/openapi.json").into_response()
}

/// Gives every error answer the API's JSON shape, including the plain-text ones axum's own
/// extractors and router produce (a malformed path or query, a wrong method).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let code = match status.as_u16() {
        401 => kiln_api::codes::UNAUTHORIZED,
        403 => kiln_api::codes::FORBIDDEN,
        404 => kiln_api::codes::NOT_FOUND,
        405 => kiln_api::codes::METHOD_NOT_ALLOWED,
        409 => kiln_api::codes::CONFLICT,
        413 => kiln_api::codes::TOO_LARGE,
        400..=499 => kiln_api::codes::BAD_REQUEST,
        _ => kiln_api::codes::INTERNAL,
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ApiErr::new(status, code, message).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    if let Ok(counts) = app.store.run_state_counts().await {
        for (state, n) in counts {
            let label = crate::metrics::StateLabel { state: state.as_str().into() };
            app.metrics.runs.get_or_create(&label).set(i64::try_from(n).unwrap_or(i64::MAX));
            if state == kiln_engine::RunState::Pending {
                let q = crate::metrics::QueueLabel { queue: "runs".into() };
                app.metrics.queue.get_or_create(&q).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
    if let Ok((_, bytes)) = app.store.cache_usage().await {
        app.metrics.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    let q = crate::metrics::QueueLabel { queue: "jobs".into() };
    app.metrics.queue.get_or_create(&q).set(app.dispatch.queue_len() as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn track(State(app): State<App>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    if let Some(route) = route
        && route.starts_with("/api/")
        && !route.ends_with("/stream")
    {
        app.metrics.request(&method, &route, resp.status().as_u16(), started.elapsed());
    }
    resp
}

/// Refuses a file applied under another name than its own (`kind`: `service`, `metric rule`):
/// the file's `name` (when it compiled far enough to have one) must be the path's.
pub(crate) fn file_names_path(kind: &str, named: Option<String>, path: &str) -> Result<(), ApiErr> {
    match named {
        Some(n) if n != path => Err(ApiErr::bad_request(format!(
            "the file names {kind} `{n}`, the request `{path}`: apply it as `{n}`"
        ))),
        _ => Ok(()),
    }
}
