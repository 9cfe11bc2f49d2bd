//! Least privilege and no information to strangers (issue 20, points 3 and 8): an agent token
//! reads nothing and reaches only its own session and leases; a token limited to a project
//! gets the same 404 for another project's resources as for missing ones.

use std::collections::BTreeMap;

use kiln_api::CreateToken;
use kiln_api::agent::{AgentEvent, LeaseReport, LeaseRequest, RegisterAgent};
use kiln_client::{Client, ClientError};

use crate::support::{Backend, TestServer};

const ONE: &str = "
name: one
stages:
  - name: s
    jobs:
      only:
        script:
          - echo hi
";

async fn token(s: &TestServer, name: &str, role: &str, project: Option<&str>) -> (Client, String) {
    let t = s
        .admin
        .create_token(&CreateToken {
            name: name.into(),
            role: role.into(),
            project: project.map(String::from),
        })
        .await
        .unwrap();
    (Client::new(&s.url, &t.secret).unwrap(), t.secret)
}

fn registration(name: &str) -> RegisterAgent {
    RegisterAgent {
        name: name.into(),
        executor: "process".into(),
        capacity: 1,
        hostname: name.into(),
        ip: "10.0.0.9".into(),
        resources: None,
        ports: None,
        attributes: BTreeMap::new(),
        held: vec![],
        protocol: kiln_api::agent::PROTOCOL,
        version: "0.1.0".into(),
        images: None,
    }
}

fn status(e: &ClientError) -> u16 {
    match e {
        ClientError::Api { status, .. } => *status,
        ClientError::Transport(t) => panic!("no answer: {t}"),
    }
}

#[tokio::test]
async fn an_agent_token_reads_nothing_and_reaches_only_its_own_session_and_leases() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let (a, a_secret) = token(&s, "agent-a", "agent", None).await;
    let (b, _) = token(&s, "agent-b", "agent", None).await;
    // An agent token does not list the agents (their names, addresses and attributes).
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/agents", s.url))
        .bearer_auth(&a_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let info = a.register_agent(&registration("a")).await.unwrap();
    s.apply("acc", "one", ONE).await;
    let run = s.trigger("acc", "one", &[]).await;
    let req = LeaseRequest { held: vec![], free: 1, wait_ms: 5_000 };
    let mut lease = None;
    for _ in 0..10 {
        let resp = a.lease(&info.id, &req).await.unwrap();
        if let Some(l) = resp.leases.into_iter().next() {
            lease = Some(l.id);
            break;
        }
    }
    let lease = lease.expect("agent a got the job");

    // Agent b may not poll, report for, nor end agent a's session, nor post to its lease.
    let err = b.lease(&info.id, &req).await.unwrap_err();
    assert!(matches!(status(&err), 403 | 404), "{err}");
    let started = [AgentEvent::Started];
    let err = b.lease_events(&lease, &started).await.unwrap_err();
    assert!(matches!(status(&err), 403 | 404), "{err}");
    let report = [LeaseReport { lease: lease.clone(), events: started.to_vec() }];
    let resp = b.lease_reports(&info.id, &report).await;
    assert!(resp.is_err() || resp.unwrap().unknown == vec![lease.clone()]);
    let err = b.leave_agent(&info.id).await.unwrap_err();
    assert!(matches!(status(&err), 403 | 404), "{err}");
    let err = b.register_agent(&registration("a")).await.unwrap_err();
    assert!(matches!(status(&err), 403 | 409), "{err}");
    // Nothing of that reached the run: its job still waits for agent a.
    let detail = s.admin.run(&run.id).await.unwrap();
    assert_eq!(detail.jobs[0].state, "queued", "{detail:#?}");
    assert_eq!(s.admin.nodes().await.unwrap()[0].state, "ready");

    // Agent a still owns both.
    a.lease_events(&lease, &started).await.unwrap();
    a.leave_agent(&info.id).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn another_project_s_resources_are_404_like_missing_ones() {
    let s = TestServer::start_on_with(Backend::Sqlite, 1).await;
    s.apply("mine", "one", ONE).await;
    s.apply("theirs", "one", ONE).await;
    let theirs = s.trigger("theirs", "one", &[]).await;
    let (me, _) = token(&s, "me", "viewer", Some("mine")).await;
    me.pipelines("mine").await.unwrap();

    let other = me.pipelines("theirs").await.unwrap_err();
    let missing = me.pipelines("nowhere").await.unwrap_err();
    assert_eq!((status(&other), status(&missing)), (404, 404), "{other} / {missing}");
    assert_eq!(
        other.to_string().replace("theirs", "X"),
        missing.to_string().replace("nowhere", "X")
    );

    let other = me.run(&theirs.id).await.unwrap_err();
    let fake = "00000000-0000-0000-0000-000000000000";
    let missing = me.run(fake).await.unwrap_err();
    assert_eq!((status(&other), status(&missing)), (404, 404), "{other} / {missing}");
    assert!(!other.to_string().contains("theirs"), "{other}");
    assert_eq!(other.to_string().replace(&theirs.id, "X"), missing.to_string().replace(fake, "X"));
    s.stop().await;
}

#[tokio::test]
async fn webhook_targets_inward_are_refused_unless_an_admin_allows_them() {
    let mut s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    s.stop_server().await;
    s.start_again_with(|c| c.allow_private_webhooks = false).await;
    s.admin.create_project("hooks").await.unwrap();
    let hook = |url: &str| kiln_api::CreateWebhook {
        url: url.into(),
        events: Some(vec!["run".into()]),
        secret: None,
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.1/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
    ] {
        let err = s.admin.add_webhook("hooks", &hook(url)).await.unwrap_err();
        assert_eq!(status(&err), 400, "{url}: {err}");
        assert!(err.to_string().contains("--allow-private-webhooks"), "{err}");
    }
    assert!(s.admin.webhooks("hooks").await.unwrap().is_empty());
    // Allowed by the server's setting.
    s.stop_server().await;
    s.start_again_with(|c| c.allow_private_webhooks = true).await;
    s.admin.add_webhook("hooks", &hook("http://127.0.0.1:9/hook")).await.unwrap();
    s.stop().await;
}
