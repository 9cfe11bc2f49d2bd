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
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Name under `/assets/` (`app.js`, `lib/api.js`), or `index.html`.
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: Bytes,
    /// Strong ETag: a hash of the bytes, quoted.
    pub etag: String,
}

fn asset(name: &'static str, body: Bytes) -> Asset {
    let hash = Sha256::digest(&body);
    Asset {
        name,
        content_type: content_type(name),
        body,
        etag: format!("\"{}\"", hex::encode(&hash[..12])),
    }
}

/// The `Content-Type` of an asset, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Embeds files of `src/assets/` by their names there.
macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        vec![$(asset($name, Bytes::from_static(include_bytes!(concat!("assets/", $name))))),*]
    };
}

/// Where `index.html` wants the modules preloaded.
const PRELOAD_MARK: &str = "<!-- modulepreload -->";

/// The app's page, served for `/` and every client-side route: `index.html` with a
/// `<link rel="modulepreload">` for every module in [`ASSETS`], so the browser fetches the
/// whole import graph at once (not one level of imports after another) and has it all
/// before the server can go away.
pub static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    let page = include_str!("assets/index.html");
    let links: String = ASSETS
        .iter()
        .filter(|a| a.name.ends_with(".js") && a.name != "app.js")
        .map(|a| format!("<link rel=\"modulepreload\" href=\"/assets/{}\">\n", a.name))
        .collect();
    asset("index.html", Bytes::from(page.replacen(PRELOAD_MARK, links.trim_end(), 1)))
});

/// Everything served under `/assets/`: every file of `src/assets/` but `index.html` (a test
/// checks none is left out). The scripts are native ES modules: `app.js` is the entry,
/// `lib/` what pages share, `pages/` one module per page (see docs/ui.md).
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    embed![
        "app.js",
        "conn.js",
        "log_view.js",
        "lib/api.js",
        "lib/api-types.js",
        "lib/dom.js",
        "lib/format.js",
        "lib/graph.js",
        "lib/plot.js",
        "lib/project.js",
        "lib/router.js",
        "lib/runs.js",
        "lib/session.js",
        "lib/stats.js",
        "lib/triage.js",
        "pages/approvals.js",
        "pages/config.js",
        "pages/deploys.js",
        "pages/environments.js",
        "pages/pipelines.js",
        "pages/pool.js",
        "pages/projects.js",
        "pages/registry.js",
        "pages/run.js",
        "pages/runs.js",
        "pages/services.js",
        "pages/signin.js",
        "app.css",
        "favicon.svg",
    ]
});

/// The UI's routes: `/` and `/assets/{file}`. Mount the app page for client-side routes
/// with [`page`] in the host router's fallback (see [`is_ui_path`]).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/assets/{*file}", get(file))
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
        a.body.clone(),
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
    fn every_asset_the_page_names_is_served_and_every_module_is_preloaded() {
        let page = std::str::from_utf8(&INDEX.body).unwrap();
        assert!(!page.contains(PRELOAD_MARK), "the preload links replace the mark");
        let named: Vec<&str> = page
            .split("/assets/")
            .skip(1)
            .map(|rest| rest.split(['"', '\'']).next().unwrap())
            .collect();
        assert!(named.contains(&"app.js") && named.contains(&"app.css"), "{named:?}");
        for name in &named {
            assert!(ASSETS.iter().any(|a| a.name == *name), "index.html names /assets/{name}");
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            assert!(named.contains(&a.name), "{} is not preloaded", a.name);
        }
    }

    /// The files under `dir` (relative to `root`, with `/`), sorted.
    fn files(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push(rel);
            }
        }
    }

    #[test]
    fn every_file_of_the_assets_folder_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/assets");
        let mut all = Vec::new();
        files(&root, &root, &mut all);
        for name in all.iter().filter(|n| *n != "index.html") {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "src/assets/{name} is not in ASSETS (crates/kiln-ui/src/lib.rs): it would not be served"
            );
        }
        for a in ASSETS.iter() {
            assert_ne!(a.content_type, "application/octet-stream", "{}: no content type", a.name);
        }
    }

    /// Where a module's `import … from './x.js'` points, from the
    /// module `from`: its name under `/assets/`.
    fn resolve(from: &str, spec: &str) -> String {
        let spec = spec.strip_prefix("/assets/").map_or_else(
            || {
                let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
                if dir.is_empty() { spec.to_string() } else { format!("{dir}/{spec}") }
            },
            str::to_string,
        );
        let mut parts: Vec<&str> = Vec::new();
        for part in spec.split('/') {
            match part {
                "." | "" => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        parts.join("/")
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        let mut seen = 0;
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(&a.body).unwrap();
            for line in text.lines() {
                let line = line.trim_start();
                let spec = if line.starts_with("import ") || line.starts_with("} from ") {
                    line.rsplit_once(" from ").map(|(_, s)| s).or(line.strip_prefix("import "))
                } else {
                    None
                };
                let Some(spec) = spec.and_then(|s| s.trim().strip_prefix('\'')) else { continue };
                let Some(spec) = spec.split('\'').next() else { continue };
                let target = resolve(a.name, spec);
                assert!(
                    ASSETS.iter().any(|b| b.name == target),
                    "{} imports {spec} ({target}), which is not served",
                    a.name
                );
                seen += 1;
            }
        }
        assert!(seen > 20, "the modules import each other: {seen} imports read");
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
