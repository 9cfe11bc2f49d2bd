//! Kiln's web UI: one page of hand-written HTML, CSS and JavaScript (no npm, no build step),
//! embedded in the binary and served by `kiln server` at `/`.
//!
//! The page is a small single-page app over the REST API (`/api/v1`): it keeps the bearer
//! token the user signs in with in `sessionStorage`, draws runs as SVG graphs, and follows
//! logs by reading the server's SSE stream through `fetch()` (so the `Authorization` header
//! is sent; `EventSource` cannot send it). Every path that is not an asset, `/api/…`,
//! `/metrics` or `/healthz` answers with the app's page, so deep links (`/runs/<id>`) load
//! it and it routes on the client.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Name under `/assets/` (or `index.html`).
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
    /// Strong ETag: a hash of the bytes, quoted.
    pub etag: String,
}

fn asset(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let hash = Sha256::digest(body);
    Asset { name, content_type, body, etag: format!("\"{}\"", hex::encode(&hash[..12])) }
}

/// The app's page, served for `/` and every client-side route.
pub static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    asset("index.html", "text/html; charset=utf-8", include_bytes!("assets/index.html"))
});

/// Everything served under `/assets/`.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        asset("app.js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
        // An ES module: the job log page (`import()`ed by app.js, preloaded by index.html).
        asset(
            "log_view.js",
            "text/javascript; charset=utf-8",
            include_bytes!("assets/log_view.js"),
        ),
        // An ES module: the connection banner and event streams (imported by app.js at
        // start, preloaded by index.html).
        asset("conn.js", "text/javascript; charset=utf-8", include_bytes!("assets/conn.js")),
        // An ES module: an array job's progress on the run page (imported by app.js at
        // start, preloaded by index.html).
        asset(
            "array_progress.js",
            "text/javascript; charset=utf-8",
            include_bytes!("assets/array_progress.js"),
        ),
        asset("app.css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
        asset("favicon.svg", "image/svg+xml", include_bytes!("assets/favicon.svg")),
    ]
});

/// The UI's routes: `/` and `/assets/{file}`. Mount the app page for client-side routes
/// with [`page`] in the host router's fallback (see [`is_ui_path`]).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/assets/{file}", get(file))
}

/// Whether a GET of `path` is the UI's to answer (a client-side route), as opposed to the
/// API's, the metrics', the health check's or an OCI registry's (`/v2/`, so a probe of it on
/// a server without one gets a 404, not the app's page).
pub fn is_ui_path(path: &str) -> bool {
    !(path == "/api"
        || path.starts_with("/api/")
        || path == "/metrics"
        || path == "/healthz"
        || path == "/v2"
        || path.starts_with("/v2/")
        || path.starts_with("/assets/"))
}

/// The app's page (for a client-side route), honouring `If-None-Match`.
pub fn page(headers: &HeaderMap) -> Response {
    serve(&INDEX, headers)
}

async fn index(headers: HeaderMap) -> Response {
    page(&headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => serve(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no asset `{name}`"),
        )
            .into_response(),
    }
}

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&a.etag).expect("an ETag is ASCII");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    // Revalidate every time: the ETag makes that a 304 without a body, and a new binary's
    // assets are never mixed with an old page.
    let cache = HeaderValue::from_static("no-cache");
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)])
            .into_response();
    }
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.content_type)),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        a.body,
    )
        .into_response();
    if a.content_type.starts_with("text/html") {
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                 script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
        );
        resp.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_paths_leave_the_api_alone() {
        assert!(is_ui_path("/"));
        assert!(is_ui_path("/runs/0190-abc"));
        assert!(is_ui_path("/p/web/build"));
        assert!(!is_ui_path("/api/v1/runs"));
        assert!(!is_ui_path("/api"));
        assert!(!is_ui_path("/metrics"));
        assert!(!is_ui_path("/healthz"));
        assert!(!is_ui_path("/assets/nope.js"));
        assert!(!is_ui_path("/v2/"));
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        let named: Vec<&str> = page
            .split("/assets/")
            .skip(1)
            .map(|rest| rest.split(['"', '\'']).next().unwrap())
            .collect();
        assert!(named.contains(&"app.js") && named.contains(&"app.css"), "{named:?}");
        assert!(named.contains(&"log_view.js"), "the log module is preloaded: {named:?}");
        assert!(named.contains(&"conn.js"), "the connection module is preloaded: {named:?}");
        for name in named {
            assert!(ASSETS.iter().any(|a| a.name == name), "index.html names /assets/{name}");
        }
    }

    #[test]
    fn every_asset_has_a_distinct_etag() {
        let mut tags: Vec<_> = ASSETS.iter().map(|a| a.etag.clone()).collect();
        tags.push(INDEX.etag.clone());
        let n = tags.len();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), n);
    }
}
