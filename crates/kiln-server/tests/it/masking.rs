//! Secrets masked in every field the server stores or serves, not only in log lines: an
//! output's key and value, a job's error, the run's reason, the stored engine events, the run
//! events (SSE) and the webhook outbox; the whole data directory (the SQLite file included)
//! is then searched for the secret.

use std::time::Duration;

use futures::StreamExt;
use kiln_api::CreateWebhook;
use kiln_api::agent::{AgentEvent, LeaseReport, LeaseRequest};
use kiln_engine::Outcome;

use crate::support::{Backend, TestServer, job};

const SECRET: &str = "s3cr3t-in-every-field";

/// Every file under the data directory, and the database, without `SECRET`.
async fn assert_nowhere(s: &TestServer) {
    let mut stack = vec![s.data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "the secret is in {}",
                    p.display()
                );
            }
        }
    }
    assert!(!s.database_contains(SECRET.as_bytes()).await, "the secret is in the database");
}

/// The run as the API serves it, as text.
async fn served(s: &TestServer, run: &str) -> String {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{run}", s.url))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    resp.text().await.unwrap()
}

/// Follows the run events of `project` from now on (subscribed when this returns); the task
/// yields them as text once a run ended.
async fn feed(s: &TestServer, project: &str) -> tokio::task::JoinHandle<String> {
    let stream = s.admin.run_events(Some(project), None).await.unwrap();
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        let mut text = String::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_secs(20), stream.next()).await
        {
            let (_, event) = item.unwrap();
            text.push_str(&serde_json::to_string(&event).unwrap());
            if event.event != "run.started" {
                break;
            }
        }
        assert!(text.contains("run.failed") || text.contains("run.succeeded"), "{text}");
        text
    })
}

/// A `run` webhook whose deliveries stay in the outbox (nothing answers at a documentation
/// address), so the grep of the database covers the bodies it would be sent.
async fn outbox_hook(s: &TestServer, project: &str) {
    let req = CreateWebhook {
        url: "http://192.0.2.1:9/hook".into(),
        events: Some(vec!["run".into()]),
        secret: None,
    };
    s.admin.add_webhook(project, &req).await.unwrap();
}

/// The case: `echo "JOB_OUT key_$SECRET=v"` on a real agent stored and showed the
/// secret in the output's key.
#[tokio::test]
async fn a_secret_in_an_output_key_is_masked_wherever_it_is_stored_or_served() {
    let s = TestServer::start_on(Backend::Sqlite).await;
    s.apply(
        "mask",
        "out",
        "name: out\nstages:\n  - name: s\n    jobs:\n      leak:\n        script:\n          - echo \"JOB_OUT key_$TOKEN=v\"\n          - echo \"JOB_OUT plain=$TOKEN\"\n",
    )
    .await;
    s.admin.set_secret("mask", "TOKEN", SECRET).await.unwrap();
    outbox_hook(&s, "mask").await;
    let watch = feed(&s, "mask").await;
    let run = s.trigger("mask", "out", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let outputs = &job(&d, "leak").outputs;
    assert_eq!(outputs.get("key_***").map(String::as_str), Some("v"), "{outputs:?}");
    assert_eq!(outputs.get("plain").map(String::as_str), Some("***"), "{outputs:?}");
    assert!(!served(&s, &run.id).await.contains(SECRET));
    assert!(!watch.await.unwrap().contains(SECRET));
    assert_nowhere(&s).await;
    s.stop().await;
}

/// An agent reports an output named after the secret and an error quoting it: the job's
/// outputs and reason, the run's reason, the feed and the stored events show `***`.
#[tokio::test]
async fn a_secret_in_an_error_and_an_output_key_from_an_agent_is_masked() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    s.apply(
        "mask",
        "err",
        "name: err\nstages:\n  - name: s\n    jobs:\n      pull: { script: \"true\" }\n",
    )
    .await;
    s.admin.set_secret("mask", "TOKEN", SECRET).await.unwrap();
    outbox_hook(&s, "mask").await;
    let watch = feed(&s, "mask").await;
    let run = s.trigger("mask", "err", &[]).await;
    let req = kiln_api::agent::RegisterAgent {
        name: "fake".into(),
        executor: "process".into(),
        capacity: 1,
        hostname: "fake".into(),
        ip: "10.0.0.8".into(),
        resources: None,
        ports: None,
        attributes: Default::default(),
        held: vec![],
        protocol: kiln_api::agent::PROTOCOL,
        version: "0.1.0".into(),
        images: None,
    };
    let info = s.admin.register_agent(&req).await.unwrap();
    let lease = loop {
        let poll = LeaseRequest { held: vec![], free: 1, wait_ms: 5000 };
        if let Some(l) = s.admin.lease(&info.id, &poll).await.unwrap().leases.pop() {
            break l;
        }
    };
    assert_eq!(lease.env.get("TOKEN").map(String::as_str), Some(SECRET), "the job gets it");
    let events = vec![
        AgentEvent::Started,
        AgentEvent::Output { key: format!("k_{SECRET}"), value: "v".into() },
        AgentEvent::Exited {
            outcome: Outcome::Error(format!("pulling registry.example/{SECRET}:1 failed: denied")),
        },
    ];
    s.admin
        .lease_reports(&info.id, &[LeaseReport { lease: lease.id.clone(), events }])
        .await
        .unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let j = job(&d, "pull");
    assert_eq!(j.outputs.keys().collect::<Vec<_>>(), ["k_***"], "{j:#?}");
    assert_eq!(
        j.reason.as_deref(),
        Some("pulling registry.example/***:1 failed: denied"),
        "{j:#?}"
    );
    assert!(d.run.reason.as_deref().unwrap_or_default().contains("registry.example/***:1"));
    assert!(!served(&s, &run.id).await.contains(SECRET));
    assert!(!watch.await.unwrap().contains(SECRET));
    assert_nowhere(&s).await;
    s.stop().await;
}
