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

/// Every route that looks a resource up by project (the live streams included: they answer
/// before they stream), with the body a real call would send: `{p}` is the project. A token limited to another project gets for each exactly what it
/// gets for a project that does not exist.
const BY_PROJECT: &[(&str, &str, &str)] = &[
    ("GET", "/projects/{p}/pipelines", ""),
    ("GET", "/projects/{p}/pipelines/one", ""),
    ("PUT", "/projects/{p}/pipelines/one", r#"{"yaml":"name: one"}"#),
    ("POST", "/projects/{p}/pipelines/one/runs", "{}"),
    ("GET", "/projects/{p}/pipelines/one/runs/1", ""),
    ("GET", "/projects/{p}/secrets", ""),
    ("PUT", "/projects/{p}/secrets/key", r#"{"value":"v"}"#),
    ("DELETE", "/projects/{p}/secrets/key", ""),
    ("GET", "/projects/{p}/services", ""),
    ("GET", "/projects/{p}/services/web", ""),
    ("PUT", "/projects/{p}/services/web", r#"{"yaml":"kind: service"}"#),
    ("DELETE", "/projects/{p}/services/web", ""),
    ("GET", "/projects/{p}/services/web/history", ""),
    ("POST", "/projects/{p}/services/web/scale", r#"{"replicas":2}"#),
    ("POST", "/projects/{p}/services/web/restart", ""),
    ("POST", "/projects/{p}/services/web/stop", ""),
    ("POST", "/projects/{p}/services/web/rollback", "{}"),
    ("GET", "/projects/{p}/services/web/metrics", ""),
    ("GET", "/projects/{p}/services/web/instances/web-1/logs", ""),
    ("GET", "/projects/{p}/services/web/instances/web-1/logs/stream", ""),
    ("GET", "/projects/{p}/metrics", ""),
    ("GET", "/projects/{p}/metrics/rule", ""),
    ("PUT", "/projects/{p}/metrics/rule", r#"{"yaml":"kind: metrics"}"#),
    ("DELETE", "/projects/{p}/metrics/rule", ""),
    ("GET", "/projects/{p}/environments", ""),
    ("POST", "/projects/{p}/environments", r#"{"name":"qa"}"#),
    ("GET", "/projects/{p}/environments/board", ""),
    ("GET", "/projects/{p}/environments/prod", ""),
    ("PATCH", "/projects/{p}/environments/prod", r#"{"protected":true}"#),
    ("DELETE", "/projects/{p}/environments/prod", ""),
    ("PUT", "/projects/{p}/environments/prod/variables/X", r#"{"value":"1"}"#),
    ("DELETE", "/projects/{p}/environments/prod/variables/X", ""),
    ("GET", "/projects/{p}/apps", ""),
    ("GET", "/projects/{p}/apps/app", ""),
    ("GET", "/projects/{p}/apps/app/audit", ""),
    ("PUT", "/projects/{p}/apps/app/templates/a.conf", r#"{"template":"x"}"#),
    ("DELETE", "/projects/{p}/apps/app/templates/a.conf", ""),
    ("PUT", "/projects/{p}/apps/app/values", r#"{"yaml":"a: 1"}"#),
    ("PUT", "/projects/{p}/apps/app/values/prod", r#"{"yaml":"a: 1"}"#),
    ("GET", "/projects/{p}/apps/app/environments/prod/diff", ""),
    ("GET", "/projects/{p}/apps/app/environments/prod/render", ""),
    ("GET", "/projects/{p}/apps/app/environments/prod/releases", ""),
    ("POST", "/projects/{p}/apps/app/environments/prod/releases", "{}"),
    ("GET", "/projects/{p}/apps/app/environments/prod/releases/1", ""),
    ("POST", "/projects/{p}/apps/app/environments/prod/releases/1/approve", ""),
    ("POST", "/projects/{p}/apps/app/environments/prod/releases/1/reject", ""),
    ("POST", "/projects/{p}/apps/app/environments/prod/rollback", r#"{"to":1}"#),
    ("GET", "/projects/{p}/config/app/prod", ""),
    ("GET", "/projects/{p}/config/app/prod/watch", ""),
    ("GET", "/projects/{p}/deployments", ""),
    (
        "POST",
        "/projects/{p}/deployments",
        r#"{"yaml":"kind: service","environment":"prod","image":"x"}"#,
    ),
    ("POST", "/projects/{p}/deployments/web/promote", r#"{"from":"qa","to":"prod"}"#),
    ("GET", "/projects/{p}/deployments/web/prod", ""),
    ("POST", "/projects/{p}/deployments/web/prod/rollback", "{}"),
    ("GET", "/projects/{p}/deployments/web/prod/1", ""),
    ("POST", "/projects/{p}/deployments/web/prod/1/approve", ""),
    ("POST", "/projects/{p}/deployments/web/prod/1/reject", ""),
    ("GET", "/projects/{p}/image-policy", ""),
    ("PUT", "/projects/{p}/image-policy", "{}"),
    ("GET", "/projects/{p}/webhooks", ""),
    ("POST", "/projects/{p}/webhooks", r#"{"url":"http://127.0.0.1:9/"}"#),
    ("DELETE", "/projects/{p}/webhooks/1", ""),
    ("GET", "/runs?project={p}", ""),
    ("GET", "/runs/events?project={p}", ""),
    ("GET", "/discovery/watch?project={p}", ""),
    ("GET", "/triggers?project={p}", ""),
    ("GET", "/services?project={p}", ""),
    ("GET", "/discovery/targets?project={p}", ""),
    ("GET", "/registry/events?project={p}", ""),
    ("GET", "/registry/tags?repository={p}/img", ""),
    ("GET", "/registry/vulns?image={p}/img:1", ""),
    ("POST", "/registry/scan", r#"{"image":"{p}/img:1"}"#),
    ("PUT", "/registry/visibility", r#"{"repository":"{p}/img","public":true}"#),
    ("POST", "/run-groups", r#"{"pipelines":["{p}/one"]}"#),
];

/// Every route that looks a run or a group up by id: `{id}` is its id.
const BY_ID: &[(&str, &str, &str)] = &[
    ("GET", "/runs/{id}", ""),
    ("GET", "/runs/{id}/source", ""),
    ("GET", "/runs/{id}/artifacts", ""),
    ("GET", "/runs/{id}/artifacts/only", ""),
    ("GET", "/runs/{id}/logs", ""),
    ("GET", "/runs/{id}/logs/stream", ""),
    ("GET", "/runs/{id}/jobs/only/logs", ""),
    ("GET", "/runs/{id}/jobs/only/logs/stream", ""),
    ("POST", "/runs/{id}/cancel", ""),
    ("POST", "/runs/{id}/retry", ""),
    ("POST", "/runs/{id}/stages/s/decision", r#"{"decision":"approve"}"#),
    ("GET", "/run-groups/{id}", ""),
];

/// The status and body of `method path` (under `/api/v1`) with `body` as `secret`.
async fn call(s: &TestServer, secret: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let url = format!("{}/api/v1{path}", s.url);
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(secret)
        .timeout(std::time::Duration::from_secs(10));
    if !body.is_empty() {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn every_lookup_of_another_project_s_resource_is_the_404_of_a_missing_one() {
    let s = TestServer::start_on_with(Backend::Sqlite, 1).await;
    s.apply("mine", "one", ONE).await;
    s.apply("theirs", "one", ONE).await;
    let run = s.trigger("theirs", "one", &[]).await;
    s.wait_final(&run.id).await;
    let group = s
        .admin
        .start_group(&kiln_api::StartGroup {
            pipelines: vec!["theirs/one".into()],
            params: BTreeMap::new(),
        })
        .await
        .unwrap();
    for env in ["prod", "qa"] {
        let path = "/projects/theirs/environments";
        let (status, body) =
            call(&s, &s.admin_token, "POST", path, &format!(r#"{{"name":"{env}"}}"#)).await;
        assert_eq!(status, 201, "{body}");
    }
    // An admin, but of project `mine` only: no role check can hide what the project check
    // would tell.
    let (_, me) = token(&s, "me", "admin", Some("mine")).await;

    let mut leaks = Vec::new();
    for (method, path, body) in BY_PROJECT {
        let at = |p: &str| (path.replace("{p}", p), body.replace("{p}", p));
        let (path_theirs, body_theirs) = at("theirs");
        let (path_nowhere, body_nowhere) = at("nowhere");
        let theirs = call(&s, &me, method, &path_theirs, &body_theirs).await;
        let missing = call(&s, &me, method, &path_nowhere, &body_nowhere).await;
        let same = theirs.0 == missing.0
            && theirs.1.replace("theirs", "X") == missing.1.replace("nowhere", "X");
        if theirs.0 != 404 || !same || !theirs.1.contains("\"not_found\"") {
            leaks.push(format!("{method} {path}: {theirs:?} / missing: {missing:?}"));
        }
    }
    let fake = "00000000-0000-0000-0000-000000000000";
    for (method, path, body) in BY_ID {
        let id = if path.starts_with("/run-groups") { &group.id } else { &run.id };
        let theirs = call(&s, &me, method, &path.replace("{id}", id), body).await;
        let missing = call(&s, &me, method, &path.replace("{id}", fake), body).await;
        let same = theirs.0 == missing.0
            && theirs.1.replace(id.as_str(), "X") == missing.1.replace(fake, "X");
        if theirs.0 != 404 || !same || theirs.1.contains("theirs") {
            leaks.push(format!("{method} {path}: {theirs:?} / missing: {missing:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "answers that differ from a missing resource's:\n{}",
        leaks.join("\n")
    );
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
