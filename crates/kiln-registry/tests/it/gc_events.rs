//! Garbage collection, push events and webhooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;

use crate::support::{Reg, digest};

#[tokio::test]
async fn gc_frees_unreferenced_blobs_and_untagged_manifests_after_the_grace_window() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let shared = vec![1u8; 1000];
    let only_old = vec![2u8; 2000];
    let old = reg.push_image("team/app", "v1", &admin, &[&shared, &only_old]).await;
    let new = reg.push_image("team/app", "v2", &admin, &[&shared]).await;
    // v1 is re-tagged away: its manifest is now untagged.
    let resp =
        reg.req(Method::DELETE, "/v2/team/app/manifests/v1", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    // A blob uploaded by a push still in flight (no manifest yet).
    let in_flight = reg.push_blob("team/app", &admin, b"in flight").await;

    // Within the grace window nothing goes.
    let report = reg.app().registry.gc(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.blobs, 0);
    assert!(report.manifests.is_empty());
    let files = reg.blob_files().len();

    // With no window: the untagged manifest, its own layer and config, and the in-flight blob.
    let report = reg.app().registry.gc(Duration::ZERO).await.unwrap();
    assert_eq!(report.manifests, vec![format!("team/app@{old}")]);
    assert_eq!(report.blobs, 3, "{report:?}");
    assert!(report.bytes_freed >= 2000 + 9);
    assert_eq!(reg.blob_files().len(), files - 3);
    let get = |p: String| reg.req(Method::GET, &p, Some(&admin)).send();
    assert_eq!(
        get(format!("/v2/team/app/blobs/{}", digest(&only_old))).await.unwrap().status(),
        404
    );
    assert_eq!(get(format!("/v2/team/app/blobs/{in_flight}")).await.unwrap().status(), 404);
    assert_eq!(get(format!("/v2/team/app/blobs/{}", digest(&shared))).await.unwrap().status(), 200);
    assert_eq!(get(format!("/v2/team/app/manifests/{new}")).await.unwrap().status(), 200);
    assert_eq!(get("/v2/team/app/manifests/v2".into()).await.unwrap().status(), 200);
    // A second pass finds nothing.
    let report = reg.app().registry.gc(Duration::ZERO).await.unwrap();
    assert_eq!((report.blobs, report.manifests.len()), (0, 0));
}

#[tokio::test]
async fn gc_during_concurrent_pushes_never_breaks_a_push() {
    let reg = Arc::new(Reg::start().await);
    let admin = reg.admin.clone();
    let shared = vec![9u8; 50_000];
    let mut pushes = Vec::new();
    for i in 0..8 {
        let reg = reg.clone();
        let admin = admin.clone();
        let shared = shared.clone();
        pushes.push(tokio::spawn(async move {
            for j in 0..5 {
                let own = format!("layer {i} {j}").into_bytes();
                reg.push_image(&format!("team/app{i}"), &format!("t{j}"), &admin, &[&shared, &own])
                    .await;
            }
        }));
    }
    let collector = {
        let reg = reg.clone();
        tokio::spawn(async move {
            let mut freed = 0;
            for _ in 0..20 {
                freed += reg.app().registry.gc(Duration::from_secs(60)).await.unwrap().blobs;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            freed
        })
    };
    for p in pushes {
        p.await.unwrap();
    }
    assert_eq!(collector.await.unwrap(), 0, "nothing referenced or recent is collected");
    for i in 0..8 {
        for j in 0..5 {
            let resp = reg
                .req(Method::GET, &format!("/v2/team/app{i}/manifests/t{j}"), Some(&admin))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    // The shared layer is stored once.
    let d = digest(&shared);
    assert_eq!(reg.blob_files().iter().filter(|f| d.ends_with(f.as_str())).count(), 1);
}

/// A webhook receiver on loopback that records bodies, failing the first `fail` calls.
async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let calls = Arc::new(Mutex::new(0usize));
    let got2 = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let got = got2.clone();
            let calls = calls.clone();
            async move {
                let n = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n <= fail {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                got.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn pushes_are_broadcast_stored_and_delivered_to_webhooks_with_retries() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let team = reg.app().store.project("team").await.unwrap().id;
    let (url, got) = receiver(1).await;
    reg.app().store.registry_add_webhook(&team, &url).await.unwrap();
    let mut events = reg.app().registry.subscribe();

    let m = reg.push_image("team/app", "v1", &admin, &[b"x"]).await;
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(
        (e.repository.as_str(), e.tag.as_deref(), e.digest.as_str(), e.actor.as_str()),
        ("team/app", Some("v1"), m.as_str(), "admin")
    );
    let stored = reg.app().store.registry_events(Some(&team), 10).await.unwrap();
    assert_eq!(stored, vec![e.clone()]);

    // The first delivery fails (503); the retry after the backoff succeeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "webhook never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = got.lock().unwrap()[0].clone();
    assert_eq!(body["action"], "push");
    assert_eq!(body["event"]["digest"], m.as_str());
    assert_eq!(body["event"]["repository"], "team/app");
    let hooks = reg.app().store.registry_webhooks(&team).await.unwrap();
    let deliveries = reg.app().store.registry_deliveries(&hooks[0].id, 10).await.unwrap();
    assert_eq!(deliveries[0].state, "delivered");
    assert_eq!(deliveries[0].attempts, 2);
    assert!(deliveries[0].last_error.is_none());
}

#[tokio::test]
async fn an_undelivered_webhook_survives_a_restart() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let team = reg.app().store.project("team").await.unwrap().id;
    // Nothing listens there yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    reg.app().store.registry_add_webhook(&team, &url).await.unwrap();
    let m = reg.push_image("team/app", "v1", &admin, &[b"y"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _reg = reg.restart().await;
    // Now a receiver comes up on that port.
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let got2 = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let got = got2.clone();
            async move {
                got.lock().unwrap().push(v);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox was not delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.lock().unwrap()[0]["event"]["digest"], m.as_str());
}

#[tokio::test]
async fn what_a_crash_leaves_is_never_served_and_gc_removes_it() {
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    // A crash between the rename into the blob store and the database record leaves a blob
    // file nothing names; a crash mid-upload leaves a staged file.
    let data = b"committed but never recorded".to_vec();
    let d = digest(&data);
    let hex = d.trim_start_matches("sha256:");
    let dir = reg.data.join("registry/blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(hex), &data).unwrap();
    let staged = reg.data.join("registry/uploads/0123456789abcdef0123456789abcdef");
    std::fs::write(&staged, b"half an upl").unwrap();
    std::fs::write(staged.with_extension("repo"), "team/app").unwrap();
    let reg = reg.restart().await;
    reg.push_image("team/app", "v1", &admin, &[b"real"]).await;
    // Neither is visible.
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/app/blobs/{d}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let report = reg.app().registry.gc(Duration::ZERO).await.unwrap();
    assert_eq!((report.orphans, report.uploads, report.blobs), (1, 1, 0), "{report:?}");
    assert!(!dir.join(hex).exists());
    assert!(!staged.exists());
    assert_eq!(
        reg.req(Method::GET, "/v2/team/app/manifests/v1", Some(&admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Pushing the same content again makes it visible, verified.
    reg.push_blob("team/app", &admin, &data).await;
    let got = reg
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"), Some(&admin))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
}

const ON_PUSH: &str = "\
name: deploy
params:
  tag: { type: string }
  image: { type: string }
on:
  image: { repository: app, tags: ['v*'] }
stages:
  - name: s
    jobs: { ship: { script: echo deploying $image } }
";

const OTHER: &str = "\
name: spy
on:
  image: { repository: 'team/*' }
stages:
  - name: s
    jobs: { a: { script: echo } }
";

#[tokio::test]
async fn a_push_starts_the_pipelines_whose_image_trigger_matches_with_the_push_as_params() {
    let reg = Reg::start().await;
    let store = &reg.app().store;
    let source = |yaml: &str| kiln_store::PipelineSource {
        file: "p.yml".into(),
        yaml: yaml.into(),
        files: Default::default(),
    };
    let (deploy, _) = store.upsert_pipeline("team", "deploy", &source(ON_PUSH)).await.unwrap();
    let (spy, _) = store.upsert_pipeline("other", "spy", &source(OTHER)).await.unwrap();
    let runs_of = |id| {
        let filter = kiln_store::RunFilter { pipeline: Some(id), ..Default::default() };
        async move { store.runs(&filter).await.unwrap() }
    };

    let admin = reg.admin.clone();
    let digest = reg.push_image("team/app", "v3", &admin, &[b"layer"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = runs_of(deploy.id).await;
        if !runs.is_empty() || std::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(runs.len(), 1, "one run for the push of v3");
    let run = &runs[0];
    assert_eq!(run.params["tag"], "v3");
    assert_eq!(run.params["image"], "team/app:v3");
    assert!(run.params.get("digest").is_none(), "only declared params are given");
    assert_eq!(run.triggered_by, "admin (image push team/app:v3)");
    let _ = digest;

    // A tag the trigger does not want, another repository, and another project's pipeline:
    // nothing more starts.
    reg.push_image("team/app", "dev", &admin, &[b"layer"]).await;
    reg.push_image("team/api", "v1", &admin, &[b"layer"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs_of(deploy.id).await.len(), 1);
    assert!(runs_of(spy.id).await.is_empty(), "another project never hears of team's pushes");
}
