//! Run events: a project's `run` webhooks get signed POSTs when a run starts, waits for
//! approval and ends, retried until the receiver takes them; the same events stream from
//! `GET /api/v1/runs/events`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use kiln_api::CreateWebhook;
use sha2::Sha256;

use crate::support::TestServer;

/// One request a [`Receiver`] got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    event: String,
    delivery: String,
    signature: Option<String>,
    body: Vec<u8>,
    answered: u16,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback recording every request; answers 500 to the first `fail`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start(fail: usize) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    let status = if seen.len() < fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    };
                    let header =
                        |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
                    seen.push(Got {
                        event: header("x-kiln-event").unwrap_or_default(),
                        delivery: header("x-kiln-delivery").unwrap_or_default(),
                        signature: header("x-kiln-signature"),
                        body: body.to_vec(),
                        answered: status.as_u16(),
                    });
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    /// Waits until `done` holds of what was received (at most 30 s).
    async fn wait(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if done(&got) {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never got {what}: {got:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a receiver computes to check a delivery: `sha256=<hex HMAC-SHA256(secret, body)>`.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Adds a `run` webhook to `project` and returns its secret.
async fn run_hook(s: &TestServer, project: &str, url: &str) -> String {
    let req = CreateWebhook { url: url.into(), events: Some(vec!["run".into()]), secret: None };
    let w = s.admin.add_webhook(project, &req).await.unwrap();
    assert_eq!(w.events, ["run"]);
    w.secret.expect("the secret is shown at creation")
}

fn delivered<'a>(got: &'a [Got], event: &str) -> Option<&'a Got> {
    got.iter().find(|g| g.event == event && g.answered < 300)
}

#[tokio::test]
async fn a_failing_run_delivers_started_then_failed_signed() {
    let s = TestServer::start().await;
    s.apply(
        "api",
        "broken",
        "name: broken\nstages:\n  - name: t\n    jobs:\n      unit: { script: exit 3 }\n",
    )
    .await;
    let hook = Receiver::start(0).await;
    let secret = run_hook(&s, "api", &hook.url).await;
    let run = s.trigger("api", "broken", &[]).await;
    s.wait_final(&run.id).await;
    let got = hook.wait("run.failed", |g| delivered(g, "run.failed").is_some()).await;
    let events: Vec<&str> = got.iter().map(|g| g.event.as_str()).collect();
    assert_eq!(events, ["run.started", "run.failed"], "{got:#?}");
    for g in &got {
        assert_eq!(
            g.signature.as_deref(),
            Some(expected_signature(&secret, &g.body).as_str()),
            "{} is signed with the webhook's secret",
            g.event
        );
        assert_eq!(g.json()["run"]["id"], run.id.as_str());
    }
    assert_ne!(got[0].signature, Some(expected_signature("another secret", &got[0].body)));
    let mut failed = got[1].json();
    assert!(failed["run"]["reason"].as_str().unwrap().contains("unit"), "{failed}");
    failed["run"]["id"] = "[run id]".into();
    failed["at"] = "[time]".into();
    insta::assert_json_snapshot!("run_failed_webhook_body", failed);
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_that_answers_500_gets_the_same_delivery_again_until_it_takes_it() {
    let s = TestServer::start().await;
    s.apply(
        "api",
        "fine",
        "name: fine\nstages:\n  - name: t\n    jobs:\n      unit: { script: echo ok }\n",
    )
    .await;
    let hook = Receiver::start(2).await;
    let secret = run_hook(&s, "api", &hook.url).await;
    let run = s.trigger("api", "fine", &[]).await;
    s.wait_final(&run.id).await;
    let got = hook
        .wait("both events delivered", |g| {
            delivered(g, "run.started").is_some() && delivered(g, "run.succeeded").is_some()
        })
        .await;
    assert_eq!(got.iter().filter(|g| g.answered == 500).count(), 2, "{got:#?}");
    let first = &got[0];
    let tries: Vec<&Got> = got.iter().filter(|g| g.delivery == first.delivery).collect();
    assert!(tries.len() >= 2, "the refused delivery was tried again: {got:#?}");
    assert!(tries.iter().all(|g| g.body == first.body), "each try sends the same body");
    assert!(tries.last().unwrap().answered < 300, "tried until taken: {got:#?}");
    for g in &got {
        assert_eq!(g.signature.as_deref(), Some(expected_signature(&secret, &g.body).as_str()));
    }
    // Once taken, never sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = hook.got.lock().unwrap().len();
    assert_eq!(later, got.len(), "a delivered event is not sent twice");
    s.stop().await;
}

#[tokio::test]
async fn a_paused_run_delivers_waiting_and_streams_its_events() {
    let s = TestServer::start().await;
    let gated = "name: gated\nstages:\n  - name: build\n    jobs:\n      make: { script: echo built }\n  - name: ship\n    type: approval\n  - name: deploy\n    jobs:\n      go: { script: echo shipped }\n";
    s.apply("api", "gated", gated).await;
    let hook = Receiver::start(0).await;
    run_hook(&s, "api", &hook.url).await;
    let feed = s.admin.run_events(Some("api"), None).await.unwrap();
    let mut feed = std::pin::pin!(feed);
    let run = s.trigger("api", "gated", &[]).await;
    let got = hook.wait("run.waiting", |g| delivered(g, "run.waiting").is_some()).await;
    let waiting = delivered(&got, "run.waiting").unwrap().json();
    assert_eq!(waiting["run"]["state"], "paused");
    assert_eq!(waiting["run"]["pipeline"], "gated");
    let mut streamed = Vec::new();
    while streamed.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(30), feed.next()).await;
        let (id, e) = next.expect("an event in time").expect("stream open").unwrap();
        assert!(!id.is_empty(), "each event has an id to resume from");
        assert_eq!(e.run.id, run.id);
        streamed.push(e.event);
    }
    assert_eq!(streamed, ["run.started", "run.waiting"]);
    s.admin.decide(&run.id, "ship", true).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), feed.next()).await;
    let (_, e) = next.unwrap().unwrap().unwrap();
    assert_eq!((e.event.as_str(), e.run.state.as_str()), ("run.succeeded", "success"));
    s.stop().await;
}
