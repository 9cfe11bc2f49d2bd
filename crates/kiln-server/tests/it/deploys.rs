//! Deploys through the real server with an agent on the process executor: images pushed to
//! Kiln's registry (tiny ones, no layers) and deployed by tag, recorded with their digest; the
//! services `<name>-<env>` run real HTTP servers (python3) that say which version they are.
//! A process agent runs a deployed service's `command` on the host and ignores its image,
//! which the service still names pinned to the digest (docs/deploys.md says so).
//!
//! Covered: a deploy supersedes the last, one never healthy rolls back by itself by its
//! deadline, `rollback --to N` brings N's digest and config release back, protected
//! environments wait for someone else's approval, promotions take the source's digest and the
//! target's config in the project's order only, bad input stores nothing, and a deployment
//! running across a server restart completes once.

use std::time::Duration;

use kiln_api::config::{ReleaseRequest, SetValues};
use kiln_api::deploy::{DeployRequest, Deployment, PromoteRequest, RollbackDeployment};
use kiln_api::environments::CreateEnvironment;
use kiln_api::service::ApplyService;
use kiln_client::{Client, ClientError};
use kiln_testkit::wait::until;

use crate::environments::user;
use crate::support::{Backend, TestServer, on_loopback};

/// An HTTP server on `$KILN_PORT_WEB` after `$SLOW` seconds: `/` and `/healthz` answer
/// `v<VERSION>`, any other path 503.
const SERVER: &str = r#"
import http.server, os, time
time.sleep(float(os.environ.get("SLOW", "0")))
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = f"v{os.environ['VERSION']}".encode()
        self.send_response(200 if self.path in ("/", "/healthz") else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), H).serve_forever()
"#;

/// Service file `web`: 2 replicas of [`SERVER`] at `version`, checked on `health` (patient
/// enough for a loaded machine), replaced one at a time (surge 1, none unavailable); `extra`
/// lines appended.
fn web(version: &str, health: &str, extra: &str) -> String {
    format!(
        r#"kind: service
name: web
command: [python3, -c, {script}]
env:
  VERSION: "{version}"
replicas: 2
ports:
  - {{ name: web, container: 8080 }}
health:
  http: {{ port: web, path: {health} }}
  grace: 5s
  interval: 100ms
  timeout: 1s
  failures: 5
restart:
  policy: always
  backoff: {{ initial: 200ms, max: 2s }}
update: {{ max-surge: 1, max-unavailable: 0, deadline: 60s }}
{extra}"#,
        script = serde_json::to_string(SERVER).unwrap(),
    )
}

/// An agent on 127.0.0.1 with 50 host ports from `first` (this suite's range: 47300-47699).
fn agent(s: &TestServer, name: &str, first: u16) -> crate::support::TestAgent {
    let mut host = on_loopback(&[], first);
    host.ports = Some(kiln_api::pool::PortRange { start: first, end: first + 49 });
    s.agent(name, 8, host)
}

/// Project `shop` with `envs` (name, after, protected).
async fn setup(s: &TestServer, envs: &[(&str, Option<&str>, bool)]) {
    s.admin.create_project("shop").await.unwrap();
    for (name, after, protected) in envs {
        let req = CreateEnvironment {
            name: (*name).into(),
            after: after.map(str::to_string),
            protected: *protected,
        };
        s.admin.create_environment("shop", &req).await.unwrap();
    }
}

/// Pushes `shop/web:<tag>` (its own digest per tag); returns the digest.
async fn push(s: &TestServer, tag: &str) -> String {
    kiln_testkit::push_image(&s.url, &s.admin_token, "shop/web", tag, tag).await
}

fn ask(env: &str, yaml: &str, image: &str, timeout_ms: Option<u64>) -> DeployRequest {
    DeployRequest {
        yaml: yaml.into(),
        file: Some("web.yml".into()),
        environment: env.into(),
        image: image.into(),
        note: None,
        timeout_ms,
    }
}

/// Deployment `n` of web to `env` once it is final (at most 60 s).
async fn settled(s: &TestServer, env: &str, n: u32) -> Deployment {
    until(
        &format!("deployment {n} to {env} ends"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let d = s.admin.deployment("shop", "web", env, n).await.unwrap();
            if d.is_final() { Ok(d) } else { Err(d) }
        },
    )
    .await
}

/// What every replica of `service` answers once both run its current version, healthy.
async fn serving(s: &TestServer, service: &str) -> Vec<String> {
    let info = until(
        &format!("{service} healthy"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let i = s.admin.service("shop", service).await.unwrap();
            let live: Vec<_> = i.instances.iter().filter(|x| x.state != "stopped").collect();
            let current =
                live.iter().filter(|x| x.version == i.template && x.state == "healthy").count();
            if current == 2 && live.len() == 2 && i.stable == i.template { Ok(i) } else { Err(i) }
        },
    )
    .await;
    let mut out = Vec::new();
    for i in &info.instances {
        let url = format!("http://127.0.0.1:{}/", i.ports["web"]);
        out.push(reqwest::get(url).await.unwrap().text().await.unwrap());
    }
    out
}

fn api_error(e: ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api { status, error } => (status, error.code, error.message),
        other => panic!("{other}"),
    }
}

fn states(list: &[Deployment]) -> Vec<(u32, &str, &str)> {
    list.iter().map(|d| (d.number, d.kind.as_str(), d.state.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploys_supersede_and_roll_back_by_themselves_and_by_hand() {
    deploys_supersede_and_roll_back_by_themselves_and_by_hand_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn deploys_supersede_and_roll_back_by_themselves_and_by_hand_on(backend: Backend) {
    let first = if matches!(backend, Backend::Sqlite) { 47300 } else { 47350 };
    let s = TestServer::start_full(backend, 0, Duration::from_secs(30)).await;
    let _a = agent(&s, "a", first);
    setup(&s, &[("dev", None, false)]).await;
    let (d1, d2) = (push(&s, "1").await, push(&s, "2").await);
    push(&s, "3").await;
    let host = s.url.trim_start_matches("http://").to_string();

    let one = s
        .admin
        .deploy("shop", &ask("dev", &web("1", "/healthz", ""), "shop/web:1", None))
        .await
        .unwrap();
    assert_eq!((one.number, one.kind.as_str(), one.state.as_str()), (1, "deploy", "running"));
    assert_eq!((one.image.as_str(), one.digest.as_str()), ("shop/web:1", d1.as_str()));
    assert_eq!(one.image_ref, format!("{host}/shop/web@{d1}"));
    assert_eq!((one.service_name.as_str(), one.asked_by.as_str()), ("web-dev", "admin"));
    let one = settled(&s, "dev", 1).await;
    assert_eq!((one.state.as_str(), one.service_version), ("succeeded", Some(1)), "{one:#?}");
    assert_eq!(serving(&s, "web-dev").await, ["v1", "v1"]);
    let info = s.admin.service("shop", "web-dev").await.unwrap();
    assert_eq!(
        (info.labels["kiln.deploy"].as_str(), info.labels["kiln.env"].as_str()),
        ("web", "dev")
    );
    let deployed = info.deployed.expect("a deployed service says so");
    assert_eq!((deployed.service.as_str(), deployed.environment.as_str()), ("web", "dev"));

    // Only deploys change the deployed service.
    let by_hand = ApplyService {
        yaml: web("9", "/healthz", "").replace("name: web\n", "name: web-dev\n"),
        file: None,
        note: None,
    };
    let (status, _, message) =
        api_error(s.admin.apply_service("shop", "web-dev", &by_hand).await.unwrap_err());
    assert_eq!(status, 409);
    assert!(message.contains("runs the deployments of `web` to `dev`"), "{message}");
    let back = kiln_api::service::RollbackService { to: Some(1) };
    let (status, _, message) =
        api_error(s.admin.service_action("shop", "web-dev", "rollback", &back).await.unwrap_err());
    assert_eq!(status, 409);
    assert!(message.contains("roll it back with `kiln rollback web --env dev`"), "{message}");

    // A second deploy supersedes the first.
    s.admin
        .deploy("shop", &ask("dev", &web("2", "/healthz", ""), "shop/web:2", None))
        .await
        .unwrap();
    assert_eq!(settled(&s, "dev", 2).await.state, "succeeded");
    assert_eq!(serving(&s, "web-dev").await, ["v2", "v2"]);
    let history = s.admin.deployment_history("shop", "web", "dev").await.unwrap();
    assert_eq!(states(&history), [(2, "deploy", "succeeded"), (1, "deploy", "superseded")]);

    // Version 3 never passes its check: at its 3 s deadline it is rolled back by itself, and
    // the environment runs deployment 2's digest again.
    s.admin
        .deploy("shop", &ask("dev", &web("3", "/never", ""), "shop/web:3", Some(3000)))
        .await
        .unwrap();
    let three = settled(&s, "dev", 3).await;
    assert_eq!(three.state, "rolled_back", "{three:#?}");
    let reason = three.reason.unwrap();
    assert!(reason.contains("was not healthy within its deadline of 3s"), "{reason}");
    assert!(reason.contains("rolled back to deployment 2"), "{reason}");
    let four = settled(&s, "dev", 4).await;
    assert_eq!(
        (four.kind.as_str(), four.state.as_str(), four.asked_by.as_str()),
        ("auto-rollback", "succeeded", "kiln")
    );
    assert_eq!((four.rollback_of, four.digest.as_str()), (Some(2), d2.as_str()));
    assert_eq!(serving(&s, "web-dev").await, ["v2", "v2"]);

    // By hand: back to deployment 1, its digest and spec exactly.
    let back = RollbackDeployment { to: Some(1), note: Some("v2 is slow".into()) };
    let five = s.admin.rollback_deployment("shop", "web", "dev", &back).await.unwrap();
    assert_eq!((five.number, five.kind.as_str(), five.rollback_of), (5, "rollback", Some(1)));
    assert_eq!(
        (five.digest.as_str(), five.image_ref.as_str()),
        (d1.as_str(), one.image_ref.as_str())
    );
    assert_eq!(settled(&s, "dev", 5).await.state, "succeeded");
    assert_eq!(serving(&s, "web-dev").await, ["v1", "v1"]);
    let history = s.admin.deployment_history("shop", "web", "dev").await.unwrap();
    assert_eq!(
        states(&history),
        [
            (5, "rollback", "succeeded"),
            (4, "auto-rollback", "superseded"),
            (3, "deploy", "rolled_back"),
            (2, "deploy", "superseded"),
            (1, "deploy", "superseded"),
        ]
    );
    let kinds: Vec<String> = s
        .admin
        .service_history("shop", "web-dev")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.kind)
        .collect();
    assert_eq!(kinds, ["apply", "apply", "apply", "auto-rollback", "apply"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_brings_its_config_release_back_and_protected_environments_need_someone_else() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _a = agent(&s, "a", 47400);
    setup(&s, &[("staging", None, false), ("prod", Some("staging"), true)]).await;
    push(&s, "1").await;
    push(&s, "2").await;
    let a = &s.admin;
    a.set_config_template("shop", "web", "web.conf", "v = {{ v }}\n").await.unwrap();
    let values = |v: &str| SetValues { yaml: format!("v: {v}\n"), file: None };
    let release = || ReleaseRequest::default();
    a.set_config_values("shop", "web", Some("staging"), &values("1")).await.unwrap();
    let r1 = a.config_release("shop", "web", "staging", &release()).await.unwrap().release;
    let with_config = |v: &str| web(v, "/healthz", "config: { path: /etc/web }\n");

    a.deploy("shop", &ask("staging", &with_config("1"), "shop/web:1", None)).await.unwrap();
    let one = settled(&s, "staging", 1).await;
    assert_eq!(one.state, "succeeded");
    let config = |d: &Deployment| d.config.as_ref().map(|c| (c.app.clone(), c.release));
    assert_eq!(config(&one), Some(("web".to_string(), 1)));
    a.set_config_values("shop", "web", Some("staging"), &values("2")).await.unwrap();
    a.config_release("shop", "web", "staging", &release()).await.unwrap();
    a.deploy("shop", &ask("staging", &with_config("2"), "shop/web:2", None)).await.unwrap();
    let two = settled(&s, "staging", 2).await;
    assert_eq!((two.state.as_str(), config(&two)), ("succeeded", Some(("web".to_string(), 2))));

    // A rollback (to the one before by default) brings deployment 1's config release back in
    // a config rollback release, since the environment's head moved on.
    let three = a
        .rollback_deployment("shop", "web", "staging", &RollbackDeployment::default())
        .await
        .unwrap();
    assert_eq!((three.rollback_of, three.digest.as_str()), (Some(1), one.digest.as_str()));
    assert_eq!(config(&three), Some(("web".to_string(), 3)));
    let releases = a.config_history("shop", "web", "staging").await.unwrap();
    let r3 = releases.iter().find(|r| r.number == 3).expect("a rollback release");
    assert_eq!((r3.kind.as_str(), r3.rollback_of, r3.current), ("rollback", Some(1), true));
    assert_eq!(r3.digest, r1.digest);
    assert_eq!(r3.note.as_deref(), Some("rollback of web to deployment 1"));
    assert_eq!(settled(&s, "staging", 3).await.state, "succeeded");
    assert_eq!(serving(&s, "web-staging").await, ["v1", "v1"]);

    // Protected prod: nothing runs before someone other than the asker approves.
    let bob = user(&s, "bob", "developer").await;
    let pending = a
        .deploy("shop", &ask("prod", &web("1", "/healthz", ""), "shop/web:1", None))
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");
    let (status, _, message) =
        api_error(a.decide_deployment("shop", "web", "prod", 1, true).await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        message.contains(
            "`admin` asked for deployment 1 of `web` to `prod`: someone else must approve it"
        ),
        "{message}"
    );
    assert!(a.service("shop", "web-prod").await.is_err(), "nothing runs before the approval");
    let approved = bob.decide_deployment("shop", "web", "prod", 1, true).await.unwrap();
    assert_eq!(
        (approved.state.as_str(), approved.approved_by.as_deref()),
        ("running", Some("bob"))
    );
    assert!(approved.approved_at.is_some());
    assert_eq!(settled(&s, "prod", 1).await.state, "succeeded");
    assert_eq!(serving(&s, "web-prod").await, ["v1", "v1"]);

    // One waits at a time; a rejection ends it and changes nothing.
    a.deploy("shop", &ask("prod", &web("2", "/healthz", ""), "shop/web:2", None)).await.unwrap();
    let (status, _, message) = api_error(
        a.deploy("shop", &ask("prod", &web("2", "/healthz", ""), "shop/web:2", None))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(
        message.contains("deployment 2 of `shop/web` to `prod` waits for approval"),
        "{message}"
    );
    let rejected = bob.decide_deployment("shop", "web", "prod", 2, false).await.unwrap();
    assert_eq!(
        (rejected.state.as_str(), rejected.reason.as_deref()),
        ("rejected", Some("rejected by bob"))
    );
    let history = a.deployment_history("shop", "web", "prod").await.unwrap();
    assert_eq!(states(&history), [(2, "deploy", "rejected"), (1, "deploy", "succeeded")]);
    assert_eq!(a.service_history("shop", "web-prod").await.unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_takes_the_source_digest_and_the_target_config_in_order_only() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _a = agent(&s, "a", 47450);
    setup(
        &s,
        &[("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), false)],
    )
    .await;
    let d1 = push(&s, "1").await;
    let a = &s.admin;
    a.set_config_template("shop", "web", "web.conf", "v = {{ v }}\n").await.unwrap();
    for (env, v) in [("dev", "d"), ("staging", "s1"), ("staging", "s2")] {
        let values = SetValues { yaml: format!("v: {v}\n"), file: None };
        a.set_config_values("shop", "web", Some(env), &values).await.unwrap();
        a.config_release("shop", "web", env, &ReleaseRequest::default()).await.unwrap();
    }
    let yaml = web("1", "/healthz", "config: { path: /etc/web }\n");
    let promote = |from: &str, to: &str, dry_run: bool| PromoteRequest {
        from: from.into(),
        to: to.into(),
        note: None,
        dry_run,
    };

    let (status, _, message) =
        api_error(a.promote("shop", "web", &promote("staging", "prod", false)).await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        message.contains("`web` has no succeeded deployment in `staging` to promote"),
        "{message}"
    );

    a.deploy("shop", &ask("dev", &yaml, "shop/web:1", None)).await.unwrap();
    assert_eq!(settled(&s, "dev", 1).await.state, "succeeded");
    let (status, _, message) =
        api_error(a.promote("shop", "web", &promote("dev", "prod", false)).await.unwrap_err());
    assert_eq!(
        (status, message.as_str()),
        (409, "`prod` comes after `staging`; promote from `staging`")
    );

    // A dry run says what would change and stores nothing.
    let preview = a.promote("shop", "web", &promote("dev", "staging", true)).await.unwrap();
    assert!(preview.deployment.is_none());
    let c = &preview.changes;
    assert_eq!((c.digest_from.as_deref(), c.digest_to.as_str()), (None, d1.as_str()));
    assert_eq!((c.config_from, c.config_to, c.spec_changed), (None, Some(2), true));
    assert!(a.deployment_history("shop", "web", "staging").await.unwrap().is_empty());

    let out = a.promote("shop", "web", &promote("dev", "staging", false)).await.unwrap();
    let d = out.deployment.unwrap();
    assert_eq!(
        (d.kind.as_str(), d.promoted_from.as_deref(), d.digest.as_str()),
        ("promote", Some("dev"), d1.as_str())
    );
    assert_eq!(d.config.as_ref().map(|c| c.release), Some(2), "staging's own config release");
    assert_eq!(d.service_name, "web-staging");
    assert_eq!(settled(&s, "staging", 1).await.state, "succeeded");
    assert_eq!(serving(&s, "web-staging").await, ["v1", "v1"]);
    let again = a.promote("shop", "web", &promote("dev", "staging", true)).await.unwrap().changes;
    assert_eq!((again.digest_from.as_deref(), again.spec_changed), (Some(d1.as_str()), false));

    let board = a.environment_board("shop").await.unwrap();
    assert_eq!(board.environments, ["dev", "staging", "prod"]);
    let cells: Vec<(&str, &str, u32, u32, &str)> = board
        .cells
        .iter()
        .map(|c| {
            (
                c.service.as_str(),
                c.environment.as_str(),
                c.deployment.number,
                c.healthy,
                c.deployment.state.as_str(),
            )
        })
        .collect();
    assert_eq!(cells, [("web", "dev", 1, 2, "succeeded"), ("web", "staging", 1, 2, "succeeded")]);
    s.stop().await;
}

#[tokio::test]
async fn bad_deploys_are_refused_and_nothing_is_stored() {
    bad_deploys_are_refused_and_nothing_is_stored_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn bad_deploys_are_refused_and_nothing_is_stored_on(backend: Backend) {
    let s = TestServer::start_on_with(backend, 0).await;
    setup(&s, &[("dev", None, false), ("prod", Some("dev"), false)]).await;
    push(&s, "1").await;
    push(&s, "2").await;
    let yaml = web("1", "/healthz", "");
    let refused = |c: Client, req: DeployRequest| async move {
        api_error(c.deploy("shop", &req).await.unwrap_err())
    };
    let a = s.admin.clone();

    let (status, code, message) = refused(a.clone(), ask("dev", &yaml, "shop/web:9", None)).await;
    assert_eq!((status, code.as_str()), (422, "invalid_deploy"));
    assert_eq!(
        message,
        "image `shop/web:9` is not in Kiln's registry: no tag `9` in `shop/web` (tags: 1, 2)"
    );
    let (_, _, message) = refused(a.clone(), ask("dev", &yaml, "shop/api:1", None)).await;
    assert!(message.contains("no repository `shop/api`"), "{message}");
    let (_, _, message) =
        refused(a.clone(), ask("dev", &yaml, "docker.io/library/nginx:1", None)).await;
    assert!(
        message.contains("image `docker.io/library/nginx:1` is not in Kiln's registry"),
        "{message}"
    );
    let (status, _, message) = refused(a.clone(), ask("qa", &yaml, "shop/web:1", None)).await;
    assert_eq!(status, 422);
    assert_eq!(
        message,
        "project `shop` has no environment `qa` (it has: dev, prod); create it with `kiln env create qa`"
    );
    let pinned = format!("{yaml}environment: prod\n");
    let (_, _, message) = refused(a.clone(), ask("dev", &pinned, "shop/web:1", None)).await;
    assert!(message.contains("the service file sets `environment: prod`"), "{message}");
    let with_config = format!("{yaml}config: {{ app: settings }}\n");
    let (_, _, message) = refused(a.clone(), ask("dev", &with_config, "shop/web:1", None)).await;
    assert_eq!(
        message,
        "no release of config `settings` in `dev` yet: kiln config release settings --env dev"
    );
    let (status, code, _) =
        refused(a.clone(), ask("dev", "kind: service\nname: web\n", "shop/web:1", None)).await;
    assert_eq!((status, code.as_str()), (422, "invalid_service"));
    let (status, _, message) = refused(a.clone(), ask("dev", &yaml, "shop/web:1", Some(10))).await;
    assert_eq!(status, 400, "{message}");

    // Who may not deploy: a viewer, a developer of another project.
    let viewer = user(&s, "vera", "viewer").await;
    let (status, _, message) = refused(viewer, ask("dev", &yaml, "shop/web:1", None)).await;
    assert_eq!(status, 403);
    assert!(message.contains("token `vera` has role viewer; this needs developer"), "{message}");
    a.create_project("other").await.unwrap();
    let t = a
        .create_token(&kiln_api::CreateToken {
            name: "olga".into(),
            role: "developer".into(),
            project: Some("other".into()),
        })
        .await
        .unwrap();
    let olga = Client::new(&s.url, &t.secret).unwrap();
    let (status, _, _) = refused(olga, ask("dev", &yaml, "shop/web:1", None)).await;
    assert_eq!(status, 404, "another project is answered as a missing one");

    // A service applied by hand under the name the deploy runs as.
    let by_hand = web("1", "/healthz", "").replace("name: web\n", "name: web-dev\n");
    let apply = ApplyService { yaml: by_hand, file: None, note: None };
    a.apply_service("shop", "web-dev", &apply).await.unwrap();
    let (status, _, message) = refused(a.clone(), ask("dev", &yaml, "shop/web:1", None)).await;
    assert_eq!(status, 409);
    assert!(
        message.contains("already has a service named `web-dev`, applied by hand"),
        "{message}"
    );
    a.delete_service("shop", "web-dev").await.unwrap();
    // Nothing to roll back or promote yet.
    let (status, _, message) = api_error(
        a.rollback_deployment("shop", "web", "dev", &RollbackDeployment::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(message.contains("`web` has no current deployment in `dev` to roll back"), "{message}");

    assert!(a.deployments("shop", None, None).await.unwrap().is_empty());
    assert!(a.services(Some("shop")).await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_running_when_the_server_restarts_completes_once() {
    let mut s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    // An agent token of its own: the embedded agent's secret changes with every start.
    let token = s
        .admin
        .create_token(&kiln_api::CreateToken {
            name: "a".into(),
            role: "agent".into(),
            project: None,
        })
        .await
        .unwrap();
    let mut host = on_loopback(&[], 47500);
    host.ports = Some(kiln_api::pool::PortRange { start: 47500, end: 47549 });
    let _a = s.agent_with(&token.secret, "a", 8, host);
    setup(&s, &[("dev", None, false)]).await;
    push(&s, "1").await;
    // Slow to listen: the deployment still runs when the server stops.
    let yaml = web("1", "/healthz", "")
        .replace("env:\n", "env:\n  SLOW: \"3\"\n")
        .replace("grace: 5s", "grace: 10s");
    s.admin.deploy("shop", &ask("dev", &yaml, "shop/web:1", None)).await.unwrap();
    let running = until(
        "the deployment applied and its instances started",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let d = s.admin.deployment("shop", "web", "dev", 1).await.unwrap();
            let i = s.admin.service("shop", "web-dev").await.ok();
            match i {
                Some(i)
                    if d.service_version.is_some()
                        && i.instances.iter().filter(|x| x.state == "starting").count() == 2 =>
                {
                    Ok(d)
                }
                _ => Err((d, i)),
            }
        },
    )
    .await;
    assert_eq!(running.state, "running");
    let addr = s.server.as_ref().unwrap().addr;
    s.stop_server().await;
    // Back on the same address, where the agent polls again.
    s.start_again_with(|c| c.listen = addr).await;
    let d = settled(&s, "dev", 1).await;
    assert_eq!((d.state.as_str(), d.service_version), ("succeeded", Some(1)), "{d:#?}");
    assert_eq!(serving(&s, "web-dev").await, ["v1", "v1"]);
    assert_eq!(s.admin.deployments("shop", None, None).await.unwrap().len(), 1, "one deployment");
    assert_eq!(s.admin.service_history("shop", "web-dev").await.unwrap().len(), 1, "applied once");
    s.stop().await;
}

/// A workflow's `deploy:` job deploys the image its build job names (an output), waits for
/// the deployment and takes its number, digest and service as outputs; a protected
/// environment's deploy job waits for someone else's approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_job_deploys_its_build_job_s_image_and_waits_for_approval_where_protected() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _a = agent(&s, "a", 47600);
    setup(&s, &[("dev", None, false), ("prod", Some("dev"), true)]).await;
    let digest = push(&s, "7").await;
    // The deploy job's service is a service file's mapping without `kind`.
    let service: String = web("7", "/healthz", "")
        .lines()
        .filter(|l| !l.starts_with("kind:"))
        .map(|l| format!("            {l}\n"))
        .collect();
    let yaml = format!(
        r#"name: ship
params: {{ env: {{ type: string, default: dev }} }}
stages:
  - name: build
    jobs:
      build:
        script: echo "JOB_OUT image=shop/web:7"
  - name: deploy
    jobs:
      web:
        deploy:
          environment: ${{{{ params.env }}}}
          image: ${{{{ jobs.build.outputs.image }}}}
          service:
{service}"#
    );
    s.apply("shop", "ship", &yaml).await;

    let run = s.trigger("shop", "ship", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let web_job = crate::support::job(&d, "web");
    assert_eq!(web_job.outputs["deployment"], "1");
    assert_eq!(web_job.outputs["digest"], digest);
    assert_eq!(web_job.outputs["service"], "web-dev");
    let one = s.admin.deployment("shop", "web", "dev", 1).await.unwrap();
    assert_eq!(one.state, "succeeded");
    let by = one.run.expect("the deployment names its run");
    assert_eq!((by.name.as_str(), by.job.as_str()), ("shop/ship#1", "web"));
    let log = crate::support::log_text(&s, &run.id, Some("web")).await;
    assert!(log.iter().any(|l| l.contains("deployment 1 of web to dev: succeeded")), "{log:#?}");
    assert_eq!(serving(&s, "web-dev").await, ["v7", "v7"]);

    // prod is protected: the job waits until someone other than the run's author approves.
    let run = s.trigger("shop", "ship", &[("env", "prod")]).await;
    let pending = until(
        "the prod deployment waits",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            match s.admin.deployment("shop", "web", "prod", 1).await {
                Ok(d) if d.state == "pending" => Ok(d),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let refused = s.admin.decide_deployment("shop", "web", "prod", 1, true).await.unwrap_err();
    assert_eq!(api_error(refused).0, 409, "the author may not approve");
    let bob = user(&s, "bob", "developer").await;
    let approved =
        bob.decide_deployment("shop", "web", "prod", pending.number, true).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("bob"));
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let log = crate::support::log_text(&s, &run.id, Some("web")).await;
    assert!(
        log.iter().any(|l| l.contains("waiting for approval by someone other than admin")),
        "{log:#?}"
    );
    assert_eq!(serving(&s, "web-prod").await, ["v7", "v7"]);
    s.stop().await;
}
