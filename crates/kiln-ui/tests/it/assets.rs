//! The UI's page and assets over HTTP, next to the API, from a real server.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::support::TestServer;

#[tokio::test]
async fn the_app_page_is_served_at_the_root_and_every_deep_link_with_an_etag() {
    let s = TestServer::start_with(0).await;
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/runs/0190f0a1-aaaa-7bbb-8ccc-000000000001",
        "/p/web/build",
        "/services/shop/web",
        "/signin",
    ] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
        assert!(r.headers().contains_key("content-security-policy"));
        let etag = r.headers()[ETAG].clone();
        let body = r.text().await.unwrap();
        assert!(body.contains("/assets/app.js") && body.contains("<main"), "{path}: {body}");
        let again =
            http.get(format!("{}{path}", s.url)).header(IF_NONE_MATCH, etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }
    s.stop().await;
}

#[tokio::test]
async fn assets_have_their_content_types_and_unknown_ones_are_json_404s() {
    let s = TestServer::start_with(0).await;
    let http = reqwest::Client::new();
    for (file, ty, needle) in [
        ("app.js", "text/javascript; charset=utf-8", "import('/assets/log_view.js')"),
        ("log_view.js", "text/javascript; charset=utf-8", "export async function viewLog"),
        ("pool_groups.js", "text/javascript; charset=utf-8", "export function elasticSection"),
        ("app.css", "text/css; charset=utf-8", "--st-success"),
        ("favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = http.get(format!("{}/assets/{file}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert_eq!(r.headers()[CONTENT_TYPE], ty, "{file}");
        assert!(r.text().await.unwrap().contains(needle), "{file}");
    }
    let r = http.get(format!("{}/assets/nope.js", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope.js"));
    s.stop().await;
}

#[tokio::test]
async fn the_api_metrics_and_registry_paths_are_not_the_uis() {
    let s = TestServer::start_with(0).await;
    let http = reqwest::Client::new();
    for path in ["/api/v1/nothing/here", "/api"] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"),
            "{path}"
        );
    }
    // `/v2/` is the registry's: without credentials it asks for them (the Docker token
    // flow), in the distribution spec's JSON error shape, never with the UI's page.
    for path in ["/v2/", "/v2/team/app/tags/list"] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer realm="));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{path}: {body}");
    }
    // A POST to a UI path is no page.
    let r = http.post(format!("{}/runs", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = http.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("kiln_"));
    s.stop().await;
}

#[tokio::test]
async fn queue_history_shows_a_job_waiting_for_an_agent() {
    // No agent: the run's job waits in the queue.
    let s = TestServer::start_with(0).await;
    s.apply(
        "web",
        "build",
        "name: build\nstages:\n  - name: b\n    jobs:\n      j: { script: echo hi }\n",
    )
    .await;
    let run = s.admin.trigger("web", "build", &Default::default()).await.unwrap();
    s.wait_for(&run.id, "its job queued", |d| d.jobs[0].state == "queued").await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/v1/stats/queue", s.url))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h: kiln_api::QueueHistory = r.json().await.unwrap();
    assert_eq!(h.interval_ms, 5000);
    let now = h.samples.last().expect("at least the sample taken now");
    assert_eq!((now.queued_jobs, now.total_slots, now.agents), (1, 0, 0), "{h:?}");
    // Without a token: refused.
    let r = http.get(format!("{}/api/v1/stats/queue", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let doc: serde_json::Value =
        http.get(format!("{}/api/openapi.json", s.url)).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/api/v1/stats/queue"]["get"].is_object());
    s.stop().await;
}
