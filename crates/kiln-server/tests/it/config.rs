//! The config center through the API: templates and values checked before they are stored,
//! render errors with file:line (nothing stored), diffs, releases that are no-ops when nothing
//! rendered changed, approvals by a second person on protected environments, rollbacks as new
//! releases, gray releases, the audit log, and delivery: ETag, long polls woken by a release,
//! an SSE watch that resumes after a server restart with no duplicate.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_api::config::{DeliveredConfig, ReleaseRequest, RollbackRequest, SetValues};
use kiln_api::environments::CreateEnvironment;
use kiln_client::{Client, ClientError};

use crate::environments::user;
use crate::support::{Backend, TestServer};

const APP_YAML: &str = "\
name: {{ kiln.app }}
env: {{ kiln.environment }}
port: {{ port }}
db:
  host: {{ db.host }}
  pool: {{ db.pool }}
";

const SHARED: &str = "port: 8080\ndb:\n  host: db.local\n  pool: 5\n";

/// Project `shop` with environments dev, staging (after dev) and prod (after staging,
/// protected), and application `api` with item `app.yaml` and shared values.
async fn setup(s: &TestServer) {
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    for (name, after, protected) in
        [("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), true)]
    {
        let req =
            CreateEnvironment { name: name.into(), after: after.map(str::to_string), protected };
        a.create_environment("shop", &req).await.unwrap();
    }
    a.set_config_template("shop", "api", "app.yaml", APP_YAML).await.unwrap();
    values(a, None, SHARED).await.unwrap();
}

async fn values(
    c: &Client,
    env: Option<&str>,
    yaml: &str,
) -> kiln_client::Result<kiln_api::config::EditResult> {
    c.set_config_values("shop", "api", env, &SetValues { yaml: yaml.into(), file: None }).await
}

fn note(n: &str) -> ReleaseRequest {
    ReleaseRequest { note: Some(n.into()), ..ReleaseRequest::default() }
}

async fn release(c: &Client, env: &str, n: &str) -> kiln_api::config::ReleaseOutcome {
    c.config_release("shop", "api", env, &note(n)).await.unwrap()
}

fn diagnostics(e: &ClientError) -> Vec<String> {
    match e {
        ClientError::Api { error, .. } => {
            error.diagnostics.iter().map(ToString::to_string).collect()
        }
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn render_errors_name_file_and_line_and_store_nothing() {
    render_errors_name_file_and_line_and_store_nothing_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn render_errors_name_file_and_line_and_store_nothing_on(backend: Backend) {
    let s = TestServer::start_on_with(backend, 0).await;
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    a.create_environment(
        "shop",
        &CreateEnvironment { name: "prod".into(), after: None, protected: false },
    )
    .await
    .unwrap();

    // A syntax error: refused with its position, and the application is not even made.
    let e = a
        .set_config_template("shop", "api", "app.yaml", "port: {{ port }}\nhost: {{ db.host \n")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_config"), "{e}");
    let d = diagnostics(&e);
    assert!(d[0].starts_with("app.yaml:2:"), "{d:?}");
    assert!(d[0].contains("syntax error"), "{d:?}");
    assert_eq!(a.config_app("shop", "api").await.unwrap_err().code(), Some("not_found"));
    let e = a.set_config_template("shop", "api", "../etc/passwd", "x").await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{e}");

    // Values that are not a map are refused with their position.
    let e = values(a, None, "port: 8080\n- oops\n").await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_config"), "{e}");
    assert!(diagnostics(&e)[0].starts_with("values/shared.yml:"), "{:?}", diagnostics(&e));
    let e = values(a, Some("prod"), "kiln: 1\n").await.unwrap_err();
    assert!(diagnostics(&e)[0].contains("`kiln` is reserved"), "{:?}", diagnostics(&e));

    // A value missing: the release names the file, the line and what was undefined, and
    // stores nothing.
    a.set_config_template("shop", "api", "app.yaml", "port: {{ port }}\nhost: {{ db.host }}\n")
        .await
        .unwrap();
    a.set_config_template("shop", "api", "conf.d/extra.conf", "ok\n{{ missing }}\n").await.unwrap();
    values(a, None, "port: 8080\n").await.unwrap();
    let e = a.config_release("shop", "api", "prod", &note("first")).await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_config"), "{e}");
    assert!(e.to_string().contains("nothing was released"), "{e}");
    assert_eq!(
        diagnostics(&e),
        [
            "app.yaml:2:10: error: `db.host` is undefined: no such value in the shared values or the environment's",
            "conf.d/extra.conf:2:4: error: `missing` is undefined: no such value in the shared values or the environment's",
        ]
    );
    let e = a.config_render("shop", "api", "prod").await.unwrap_err();
    assert_eq!(diagnostics(&e).len(), 2, "the preview says the same");
    assert!(a.config_history("shop", "api", "prod").await.unwrap().is_empty());
    let fetched = a.fetch_config("shop", "api", "prod", None, None, None).await.unwrap_err();
    assert_eq!(fetched.code(), Some("not_found"), "{fetched}");
    let audit = a.config_audit("shop", "api").await.unwrap();
    assert!(audit.iter().all(|e| e.environment.is_none()), "no release was recorded: {audit:#?}");

    values(a, Some("prod"), "db:\n  host: db.prod\nmissing: here\n").await.unwrap();
    let preview = a.config_render("shop", "api", "prod").await.unwrap();
    assert_eq!(preview.files["app.yaml"], "port: 8080\nhost: db.prod\n");
    assert_eq!(preview.files["conf.d/extra.conf"], "ok\nhere\n");
    assert!(
        a.config_history("shop", "api", "prod").await.unwrap().is_empty(),
        "a preview stores nothing"
    );
    let r = release(a, "prod", "first").await;
    assert_eq!((r.outcome.as_str(), r.release.number), ("released", 1));
    assert_eq!(r.release.digest, preview.digest);
    s.stop().await;
}

#[tokio::test]
async fn a_release_is_a_no_op_when_the_rendered_files_did_not_change() {
    let s = TestServer::start_with(0).await;
    setup(&s).await;
    let a = &s.admin;
    let first = release(a, "dev", "first").await;
    assert_eq!(
        (first.outcome.as_str(), first.release.number, first.release.current),
        ("released", 1, true)
    );
    let again = release(a, "dev", "again").await;
    assert_eq!((again.outcome.as_str(), again.release.number), ("unchanged", 1));
    assert!(again.message.contains("already gets these files from release 1"), "{}", again.message);
    // A value no template reads changes no file: still nothing to release.
    values(a, Some("dev"), "unused: 1\n").await.unwrap();
    assert_eq!(release(a, "dev", "unused value").await.outcome, "unchanged");
    values(a, Some("dev"), "db:\n  pool: 2\n").await.unwrap();
    let second = release(a, "dev", "smaller pool").await;
    assert_eq!((second.outcome.as_str(), second.release.number), ("released", 2));
    let history = a.config_history("shop", "api", "dev").await.unwrap();
    let seen: Vec<(u32, bool, Option<&str>)> =
        history.iter().map(|r| (r.number, r.current, r.note.as_deref())).collect();
    assert_eq!(seen, [(1, false, Some("first")), (2, true, Some("smaller pool"))]);
    let detail = a.config_release_detail("shop", "api", "dev", 2).await.unwrap();
    assert_eq!(
        detail.files["app.yaml"],
        "name: api\nenv: dev\nport: 8080\ndb:\n  host: db.local\n  pool: 2\n"
    );
    assert_eq!(
        (detail.shared_values.as_str(), detail.values.as_str()),
        (SHARED, "db:\n  pool: 2\n")
    );
    assert_eq!(detail.templates["app.yaml"], APP_YAML);
    s.stop().await;
}

#[tokio::test]
async fn diffs_compare_the_draft_releases_and_environments() {
    let s = TestServer::start_with(0).await;
    setup(&s).await;
    let a = &s.admin;
    let d = a.config_diff("shop", "api", "staging", None, None).await.unwrap();
    assert_eq!((d.from.as_str(), d.to.as_str()), ("none", "draft"));
    assert_eq!(d.files.iter().map(|f| f.change.as_str()).collect::<Vec<_>>(), ["added"]);
    release(a, "staging", "first").await;
    assert_eq!(a.config_diff("shop", "api", "staging", None, None).await.unwrap().unified, "");
    values(a, Some("staging"), "db:\n  host: db.staging\n").await.unwrap();
    let d = a.config_diff("shop", "api", "staging", None, None).await.unwrap();
    assert_eq!(
        d.unified,
        "--- release-1/app.yaml\n+++ draft/app.yaml\n@@ -2,5 +2,5 @@\n env: staging\n port: 8080\n db:\n-  host: db.local\n+  host: db.staging\n   pool: 5\n"
    );
    release(a, "staging", "own database").await;
    let d = a.config_diff("shop", "api", "staging", None, Some((1, 2))).await.unwrap();
    assert_eq!((d.from.as_str(), d.to.as_str(), d.files.len()), ("release-1", "release-2", 1));
    assert!(d.unified.contains("-  host: db.local\n+  host: db.staging\n"), "{}", d.unified);
    values(a, Some("prod"), "db:\n  host: db.prod\n  pool: 20\n").await.unwrap();
    let d = a.config_diff("shop", "api", "prod", Some("staging"), None).await.unwrap();
    assert_eq!(
        d.unified,
        "--- staging/app.yaml\n+++ prod/app.yaml\n@@ -1,6 +1,6 @@\n name: api\n-env: staging\n+env: prod\n port: 8080\n db:\n-  host: db.staging\n-  pool: 5\n+  host: db.prod\n+  pool: 20\n"
    );
    let e = a.config_diff("shop", "api", "prod", Some("qa"), None).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn a_protected_environment_needs_a_second_person_to_approve() {
    a_protected_environment_needs_a_second_person_to_approve_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn a_protected_environment_needs_a_second_person_to_approve_on(backend: Backend) {
    let s = TestServer::start_on_with(backend, 0).await;
    setup(&s).await;
    let alice = user(&s, "alice", "developer").await;
    let bob = user(&s, "bob", "developer").await;
    let viewer = user(&s, "vic", "viewer").await;
    let asked = release(&alice, "prod", "go live").await;
    assert_eq!(
        (asked.outcome.as_str(), asked.release.number, asked.release.state.as_str()),
        ("pending", 1, "pending")
    );
    assert!(asked.message.contains("kiln config approve api --env prod 1"), "{}", asked.message);
    let e = alice.fetch_config("shop", "api", "prod", None, None, None).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "nothing is delivered before the approval: {e}");
    let e = alice.config_decide("shop", "api", "prod", 1, true).await.unwrap_err();
    assert_eq!(e.code(), Some("conflict"), "{e}");
    assert!(
        e.to_string().contains("`alice` asked for this release: someone else must approve it"),
        "{e}"
    );
    let e = viewer.config_decide("shop", "api", "prod", 1, true).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = bob.config_release("shop", "api", "prod", &note("me too")).await.unwrap_err();
    assert!(e.to_string().contains("release 1 is waiting for approval"), "{e}");

    let approved = bob.config_decide("shop", "api", "prod", 1, true).await.unwrap();
    assert_eq!(
        (approved.outcome.as_str(), approved.release.state.as_str()),
        ("released", "released")
    );
    assert_eq!(approved.release.requested_by, "alice");
    assert_eq!(approved.release.decided_by.as_deref(), Some("bob"));
    assert!(approved.release.decided_at.is_some_and(|at| at >= approved.release.requested_at));
    let got = viewer.fetch_config("shop", "api", "prod", None, None, None).await.unwrap().unwrap();
    assert_eq!(got.release, 1);
    assert!(got.files["app.yaml"].contains("env: prod"));

    values(&alice, Some("prod"), "port: 443\n").await.unwrap();
    let asked = release(&alice, "prod", "tls port").await;
    assert_eq!(asked.release.number, 2);
    let rejected = bob.config_decide("shop", "api", "prod", 2, false).await.unwrap();
    assert_eq!(
        (rejected.outcome.as_str(), rejected.release.state.as_str()),
        ("rejected", "rejected")
    );
    assert!(rejected.message.contains("release 1 stays"), "{}", rejected.message);
    assert_eq!(
        viewer
            .fetch_config("shop", "api", "prod", None, None, None)
            .await
            .unwrap()
            .unwrap()
            .release,
        1
    );
    let e = bob.config_decide("shop", "api", "prod", 2, true).await.unwrap_err();
    assert!(e.to_string().contains("release 2 is not waiting for approval"), "{e}");

    let audit = viewer.config_audit("shop", "api").await.unwrap();
    let prod: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.environment.as_deref() == Some("prod"))
        .map(|e| (e.action.as_str(), e.by.as_str()))
        .collect();
    assert_eq!(
        prod,
        [
            ("release requested", "alice"),
            ("approve", "bob"),
            ("values", "alice"),
            ("release requested", "alice"),
            ("reject", "bob")
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_rollback_is_a_new_release_with_the_old_files() {
    let s = TestServer::start_with(0).await;
    setup(&s).await;
    let a = &s.admin;
    let one = release(a, "staging", "one").await.release;
    values(a, Some("staging"), "port: 9090\n").await.unwrap();
    let two = release(a, "staging", "two").await.release;
    assert_ne!(one.digest, two.digest);
    let back = a
        .config_rollback("shop", "api", "staging", &RollbackRequest { to: 1, note: None })
        .await
        .unwrap();
    assert_eq!(back.outcome, "released");
    let r = &back.release;
    assert_eq!(
        (r.number, r.kind.as_str(), r.rollback_of, r.digest.as_str()),
        (3, "rollback", Some(1), one.digest.as_str())
    );
    assert_eq!(r.note, None);
    let got = a.fetch_config("shop", "api", "staging", None, None, None).await.unwrap().unwrap();
    assert_eq!((got.release, got.digest.as_str()), (3, one.digest.as_str()));
    assert!(got.files["app.yaml"].contains("port: 8080"));
    let history = a.config_history("shop", "api", "staging").await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1, 2, 3],
        "nothing is deleted"
    );
    let again = a
        .config_rollback("shop", "api", "staging", &RollbackRequest { to: 1, note: None })
        .await
        .unwrap();
    assert_eq!((again.outcome.as_str(), again.release.number), ("unchanged", 3));
    let e = a
        .config_rollback("shop", "api", "staging", &RollbackRequest { to: 9, note: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn a_gray_release_reaches_the_named_instance_then_everyone() {
    let s = TestServer::start_with(0).await;
    setup(&s).await;
    let a = &s.admin;
    let gray = ReleaseRequest { instances: vec!["api-1".into()], ..ReleaseRequest::default() };
    let e = a.config_release("shop", "api", "dev", &gray).await.unwrap_err();
    assert!(e.to_string().contains("release to everyone first"), "{e}");
    release(a, "dev", "base").await;
    values(a, Some("dev"), "db:\n  pool: 50\n").await.unwrap();
    let out = a.config_release("shop", "api", "dev", &gray).await.unwrap();
    assert_eq!((out.outcome.as_str(), out.release.number, out.release.gray), ("gray", 2, true));
    assert!(out.message.contains("api-1 gets it, the others keep release 1"), "{}", out.message);
    let get =
        |instance: Option<&'static str>| a.fetch_config("shop", "api", "dev", instance, None, None);
    let one = get(Some("api-1")).await.unwrap().unwrap();
    assert_eq!((one.release, one.gray), (2, true));
    assert!(one.files["app.yaml"].contains("pool: 50"));
    assert_eq!(get(Some("api-2")).await.unwrap().unwrap().release, 1);
    assert_eq!(get(None).await.unwrap().unwrap().release, 1);

    let all = ReleaseRequest { all: true, ..ReleaseRequest::default() };
    let promoted = a.config_release("shop", "api", "dev", &all).await.unwrap();
    assert_eq!(
        (promoted.outcome.as_str(), promoted.release.number, promoted.release.current),
        ("promoted", 2, true)
    );
    assert_eq!(promoted.release.promoted_by.as_deref(), Some("admin"));
    let two = get(Some("api-2")).await.unwrap().unwrap();
    assert_eq!((two.release, two.gray), (2, false));
    assert_eq!(get(Some("api-1")).await.unwrap().unwrap().release, 2);
    let e = a.config_release("shop", "api", "dev", &all).await.unwrap_err();
    assert!(e.to_string().contains("no gray release is out"), "{e}");
    let actions: Vec<String> =
        a.config_audit("shop", "api").await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions[actions.len() - 3..], ["values", "gray release", "release to all"]);
    s.stop().await;
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_release_happens() {
    let s = TestServer::start_with(0).await;
    setup(&s).await;
    let a = s.admin.clone();
    let first = release(&a, "dev", "one").await.release;
    let got = a.fetch_config("shop", "api", "dev", None, None, None).await.unwrap().unwrap();
    assert_eq!((got.release, got.digest.as_str()), (1, first.digest.as_str()));
    // The ETag is the digest: a client that has it is told so (304), after the wait.
    let waited = Instant::now();
    let none = a
        .fetch_config(
            "shop",
            "api",
            "dev",
            None,
            Some(&got.digest),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(none.is_none(), "304 when nothing was released");
    assert!(waited.elapsed() >= Duration::from_millis(300), "the poll waited");

    let poller = {
        let a = a.clone();
        let known = got.digest.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let got = a
                .fetch_config(
                    "shop",
                    "api",
                    "dev",
                    None,
                    Some(&known),
                    Some(Duration::from_secs(60)),
                )
                .await;
            (got, asked.elapsed())
        })
    };
    values(&a, Some("dev"), "port: 1234\n").await.unwrap();
    let second = release(&a, "dev", "two").await.release;
    let (got, took) = poller.await.unwrap();
    let got = got.unwrap().expect("the poll is answered with the release");
    assert_eq!((got.release, got.digest.as_str()), (2, second.digest.as_str()));
    assert!(got.files["app.yaml"].contains("port: 1234"));
    assert!(
        took < Duration::from_secs(30),
        "answered at the release, not at the end of the wait: {took:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_watch_resumes_after_a_server_restart_with_the_latest_release_and_no_duplicate() {
    a_watch_resumes_after_a_server_restart_with_the_latest_release_and_no_duplicate_on(
        Backend::Sqlite,
    )
    .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn a_watch_resumes_after_a_server_restart_with_the_latest_release_and_no_duplicate_on(
    backend: Backend,
) {
    let mut s = TestServer::start_on_with(backend, 0).await;
    setup(&s).await;
    release(&s.admin, "dev", "one").await;
    let mut watch =
        Box::pin(s.admin.watch_config("shop", "api", "dev", Some("api-1"), None).await.unwrap());
    assert_eq!(next(&mut watch).await.unwrap().unwrap().release, 1, "the current release first");
    values(&s.admin, Some("dev"), "port: 2\n").await.unwrap();
    release(&s.admin, "dev", "two").await;
    let got = next(&mut watch).await.unwrap().unwrap();
    let last = got.release;
    assert_eq!(last, 2);

    s.restart().await;
    assert!(
        next(&mut watch).await.is_none_or(|e| e.is_err()),
        "the old stream ended with the server"
    );
    values(&s.admin, Some("dev"), "port: 3\n").await.unwrap();
    release(&s.admin, "dev", "three").await;
    values(&s.admin, Some("dev"), "port: 4\n").await.unwrap();
    release(&s.admin, "dev", "four").await;
    // Reconnecting with the last release seen: the latest comes, once.
    let mut again = Box::pin(
        s.admin.watch_config("shop", "api", "dev", Some("api-1"), Some(last)).await.unwrap(),
    );
    let got = next(&mut again).await.unwrap().unwrap();
    assert_eq!(got.release, 4);
    assert!(got.files["app.yaml"].contains("port: 4"));
    // A watcher that has the latest gets nothing until the next release, and then that one.
    let mut current =
        Box::pin(s.admin.watch_config("shop", "api", "dev", None, Some(4)).await.unwrap());
    values(&s.admin, Some("dev"), "port: 5\n").await.unwrap();
    release(&s.admin, "dev", "five").await;
    assert_eq!(
        next(&mut current).await.unwrap().unwrap().release,
        5,
        "release 4 is not sent again"
    );
    assert_eq!(next(&mut again).await.unwrap().unwrap().release, 5);
    s.stop().await;
}

/// The next release a watch yields (a test failure after 20 s).
async fn next<S>(watch: &mut S) -> Option<kiln_client::Result<DeliveredConfig>>
where
    S: futures::Stream<Item = kiln_client::Result<DeliveredConfig>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), watch.next()).await.expect("an event in time")
}
