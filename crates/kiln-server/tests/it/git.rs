//! Git sources and webhooks with real git: bare repositories served over HTTP on loopback by
//! `git http-backend` (behind basic auth, so a clone without the project's credentials
//! fails), commits pushed with `git push`, and deliveries posted as GitHub, GitLab and Gitea
//! send them, signed like they sign them; a crash between a delivery's claim and its runs
//! neither loses nor doubles them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use kiln_api::triggers::TriggerKind;
use kiln_client::RunQuery;
use kiln_server::webhooks::{Provider, sign};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::{Backend, TestServer, host, log_text};

pub(crate) const USER: &str = "kiln-bot";
pub(crate) const TOKEN: &str = "glpat-s3cr3t-clone-token";
pub(crate) const HOOK_SECRET: &str = "hook-secret-1";

/// Bare repositories under `root`, served by `git http-backend` at `url`.
pub(crate) struct GitServer {
    root: PathBuf,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct GitState {
    root: PathBuf,
    auth: String,
}

impl GitServer {
    pub(crate) async fn start() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"))
        );
        let state = GitState { root: root.clone(), auth };
        let app = axum::Router::new().fallback(cgi).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        GitServer { root, url, _dir: dir }
    }

    /// Creates the bare repository `name` (`shop/app`) and returns its clone URL.
    pub(crate) fn create(&self, name: &str) -> String {
        let path = self.root.join(format!("{name}.git"));
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["init", "-q", "--bare", "-b", "main"]);
        format!("{}/{name}.git", self.url)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }
}

/// One request through `git http-backend` (CGI), after the basic auth check.
async fn cgi(
    State(state): State<GitState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if given != Some(state.auth.as_str()) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else {
        panic!("git http-backend answered no headers: {}", String::from_utf8_lossy(&out.stderr));
    };
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&out.stdout[..at]).lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.eq_ignore_ascii_case("status") {
            status = v.trim()[..3].parse::<u16>().unwrap().try_into().unwrap();
        } else {
            resp = resp.header(k.trim(), v.trim());
        }
    }
    resp.status(status).body(Body::from(out.stdout[at + gap..].to_vec())).unwrap()
}

/// `git <args>` in `dir`; its stdout. A fixed identity, no user or system config.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap()
}

/// A working copy that pushes to a bare repository with `git push`.
pub(crate) struct WorkingCopy {
    dir: tempfile::TempDir,
}

/// What a push did, for building the delivery.
pub(crate) struct Pushed {
    before: String,
    after: String,
    git_ref: String,
    message: String,
    changed: Vec<String>,
}

impl WorkingCopy {
    pub(crate) fn new(bare: &Path) -> WorkingCopy {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["remote", "add", "origin", bare.to_str().unwrap()]);
        WorkingCopy { dir }
    }

    /// The working copy's directory (to write files [`WorkingCopy::push`] commits too).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `files`, commits them on `branch` and pushes it.
    pub(crate) fn push(&self, branch: &str, files: &[(&str, &str)], message: &str) -> Pushed {
        let d = self.dir.path();
        let head = git_output(d, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")]);
        let before = String::from_utf8_lossy(&head.stdout).trim().to_string();
        let has_branch = !git(d, &["branch", "--list", branch]).is_empty();
        if git(d, &["branch", "--show-current"]) == branch {
            // already there (perhaps before its first commit)
        } else if has_branch {
            git(d, &["checkout", "-q", branch]);
        } else {
            git(d, &["checkout", "-q", "-b", branch]);
        }
        for (path, text) in files {
            let p = d.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", message]);
        git(d, &["push", "-q", "origin", branch]);
        Pushed {
            before,
            after: git(d, &["rev-parse", "HEAD"]),
            git_ref: format!("refs/heads/{branch}"),
            message: message.to_string(),
            changed: files.iter().map(|(p, _)| p.to_string()).collect(),
        }
    }
}

/// The push payload `provider` sends for `p` on repository `full_name` at `clone_url`.
pub(crate) fn push_payload(
    provider: Provider,
    full_name: &str,
    clone_url: &str,
    p: &Pushed,
) -> Value {
    let before = if p.before.is_empty() { "0".repeat(40) } else { p.before.clone() };
    let commit = json!({
        "id": p.after, "message": p.message, "timestamp": "2026-11-30T10:00:00Z",
        "author": { "name": "Ada Lovelace", "email": "ada@example.com" },
        "added": p.changed, "modified": [], "removed": []
    });
    match provider {
        Provider::GitLab => json!({
            "object_kind": "push", "event_name": "push",
            "before": before, "after": p.after, "ref": p.git_ref, "checkout_sha": p.after,
            "user_name": "Ada Lovelace", "user_username": "ada",
            "project": { "path_with_namespace": full_name, "git_http_url": clone_url,
                         "git_ssh_url": format!("git@git.invalid:{full_name}.git"),
                         "web_url": clone_url.trim_end_matches(".git") },
            "commits": [commit], "total_commits_count": 1
        }),
        Provider::GitHub | Provider::Gitea => json!({
            "ref": p.git_ref, "before": before, "after": p.after, "created": false,
            "deleted": false, "forced": false,
            "repository": { "full_name": full_name, "clone_url": clone_url,
                            "ssh_url": format!("git@git.invalid:{full_name}.git"),
                            "html_url": clone_url.trim_end_matches(".git") },
            "pusher": { "name": "ada" },
            "head_commit": commit, "commits": [commit]
        }),
    }
}

/// Posts a delivery as `provider` would, signed with `secret`; the status and JSON answer.
pub(crate) async fn deliver(
    s: &TestServer,
    provider: Provider,
    event: &str,
    id: &str,
    body: &Value,
    secret: &str,
) -> (StatusCode, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let (event_header, id_header) = match provider {
        Provider::GitHub => ("X-GitHub-Event", "X-GitHub-Delivery"),
        Provider::GitLab => ("X-Gitlab-Event", "X-Gitlab-Event-UUID"),
        Provider::Gitea => ("X-Gitea-Event", "X-Gitea-Delivery"),
    };
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/{}", s.url, provider.name()))
        .header("content-type", "application/json")
        .header(event_header, event)
        .header(id_header, id)
        .header(provider.signature_header(), sign(provider, &body, secret))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    (status, resp.json().await.unwrap())
}

pub(crate) fn push_event(provider: Provider) -> &'static str {
    if provider == Provider::GitLab { "Push Hook" } else { "push" }
}

async fn runs_of(s: &TestServer, project: &str) -> Vec<kiln_api::RunSummary> {
    s.admin.runs(&RunQuery { project: Some(project.into()), ..RunQuery::default() }).await.unwrap()
}

/// A project whose pipeline `build` builds `repository` (cloned with the project's
/// `GIT_TOKEN`) on pushes to main, and whose deliveries are signed with `HOOK_SECRET`.
async fn linked_project(s: &TestServer, project: &str, repository: &str, script: &str) {
    let yaml = format!(
        "name: build\nsource: {{ repository: '{repository}', credentials: GIT_TOKEN }}\n\
         on:\n  push: {{ branches: [main] }}\nstages:\n  - name: build\n    jobs:\n      \
         build:\n        script: |\n{}\n",
        script.lines().map(|l| format!("          {l}")).collect::<Vec<_>>().join("\n")
    );
    s.apply(project, "build", &yaml).await;
    let kinds: Vec<_> =
        s.admin.triggers(Some(project)).await.unwrap().into_iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TriggerKind::Api, TriggerKind::Push]);
    s.admin.set_secret(project, "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.admin.set_secret(project, "WEBHOOK_SECRET", HOOK_SECRET).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_from_each_provider_runs_exactly_the_pushed_commit() {
    let gits = GitServer::start().await;
    let url = gits.create("shop/app");
    let s = TestServer::start().await;
    linked_project(
        &s,
        "shop",
        &url,
        "echo \"version=$(cat version.txt)\"\necho \"sha=$KILN_COMMIT_SHA branch=$KILN_BRANCH\"",
    )
    .await;
    let work = WorkingCopy::new(&gits.path("shop/app"));
    for (i, provider) in
        [Provider::GitHub, Provider::GitLab, Provider::Gitea].into_iter().enumerate()
    {
        let version = format!("{}-{i}", provider.name());
        let pushed = work.push("main", &[("version.txt", &version)], &format!("Release {version}"));
        let payload = push_payload(provider, "shop/app", &url, &pushed);
        let id = format!("{}-delivery-{i}", provider.name());
        let (status, answer) =
            deliver(&s, provider, push_event(provider), &id, &payload, HOOK_SECRET).await;
        assert_eq!(status, StatusCode::OK, "{provider:?}: {answer}");
        assert_eq!(answer["runs"], json!([format!("shop/build#{}", i + 1)]), "{answer}");

        let run = s.wait_final(&format!("shop/build#{}", i + 1)).await;
        assert_eq!(run.run.state, "success", "{provider:?}: {run:#?}");
        let source = run.run.source.clone().expect("the run shows its commit");
        assert_eq!(source.commit, pushed.after);
        assert_eq!(source.branch.as_deref(), Some("main"));
        assert_eq!(source.repository, "shop/app");
        assert_eq!(source.provider, provider.name());
        assert_eq!(source.message, format!("Release {version}"));
        assert_eq!(source.author, "Ada Lovelace <ada@example.com>");

        let log = log_text(&s, &run.run.id, Some("build")).await;
        assert!(log.contains(&format!("version={version}")), "the pushed file: {log:#?}");
        assert!(log.contains(&format!("sha={} branch=main", pushed.after)), "{log:#?}");
        assert!(
            log.iter().any(|l| l.contains(&format!("checked out {} of {url}", pushed.after))),
            "{log:#?}"
        );
        assert!(!log.iter().any(|l| l.contains(TOKEN)), "the clone token is never logged");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_signatures_replays_and_unwanted_events_start_nothing() {
    let gits = GitServer::start().await;
    let url = gits.create("shop/app");
    let s = TestServer::start().await;
    linked_project(&s, "shop", &url, "cat version.txt").await;
    let work = WorkingCopy::new(&gits.path("shop/app"));
    let pushed = work.push("main", &[("version.txt", "1")], "One");
    let payload = push_payload(Provider::GitHub, "shop/app", &url, &pushed);

    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "d-1", &payload, "not-the-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("X-Hub-Signature-256"));
    let (status, _) = deliver(
        &s,
        Provider::GitLab,
        "Push Hook",
        "d-1",
        &push_payload(Provider::GitLab, "shop/app", &url, &pushed),
        "wrong",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(runs_of(&s, "shop").await.is_empty(), "a bad signature starts nothing");

    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "d-1", &payload, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["runs"], json!(["shop/build#1"]));
    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "d-1", &payload, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["runs"], json!([]), "{answer}");
    assert!(answer["outcome"].as_str().unwrap().contains("already received"), "{answer}");

    // A branch the pipeline does not build, and an event Kiln does not act on.
    let feature = work.push("feature", &[("version.txt", "2")], "Two");
    let payload = push_payload(Provider::GitHub, "shop/app", &url, &feature);
    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "d-2", &payload, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["outcome"], "no pipeline wants this push to branch feature");
    let ping = json!({ "zen": "Keep it simple.", "hook_id": 1,
                       "repository": { "full_name": "shop/app", "clone_url": url } });
    let (status, answer) = deliver(&s, Provider::GitHub, "ping", "d-3", &ping, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["outcome"].as_str().unwrap().contains("starts no pipeline"), "{answer}");
    // A repository no pipeline builds.
    let other = json!({ "ref": "refs/heads/main", "after": "a".repeat(40),
                        "repository": { "full_name": "else/where", "clone_url": "http://x/else/where.git" } });
    let (status, answer) = deliver(&s, Provider::Gitea, "push", "d-4", &other, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "answered as a wrong signature: {answer}");

    let run = s.wait_final("shop/build#1").await;
    assert_eq!(run.run.state, "success");
    assert_eq!(runs_of(&s, "shop").await.len(), 1, "one run in all");

    // Replays are refused after a restart too.
    let mut s = s;
    s.restart().await;
    let payload = push_payload(Provider::GitHub, "shop/app", &url, &pushed);
    let (_, answer) = deliver(&s, Provider::GitHub, "push", "d-1", &payload, HOOK_SECRET).await;
    assert_eq!(answer["runs"], json!([]), "{answer}");
    assert_eq!(runs_of(&s, "shop").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_delivery_fans_out_to_pipelines_in_several_projects() {
    let gits = GitServer::start().await;
    let app_url = gits.create("shop/app");
    let lib_url = gits.create("shop/lib");
    let s = TestServer::start().await;
    // The same repository linked by clone URL, by `owner/name`, and by a project that trusts
    // another secret (it is not started).
    linked_project(&s, "shop", &app_url, "cat version.txt").await;
    linked_project(&s, "ops", "shop/app", "cat version.txt").await;
    linked_project(&s, "other", &app_url, "cat version.txt").await;
    s.admin.set_secret("other", "WEBHOOK_SECRET", "another-secret").await.unwrap();
    linked_project(&s, "libs", &lib_url, "cat lib.txt").await;

    // A feature merged in two repositories arrives as one push per repository.
    let app = WorkingCopy::new(&gits.path("shop/app")).push(
        "main",
        &[("version.txt", "7")],
        "Merge feature",
    );
    let lib =
        WorkingCopy::new(&gits.path("shop/lib")).push("main", &[("lib.txt", "7")], "Merge feature");
    let (status, answer) = deliver(
        &s,
        Provider::Gitea,
        "push",
        "m-app",
        &push_payload(Provider::Gitea, "shop/app", &app_url, &app),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut started: Vec<String> = answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    started.sort();
    assert_eq!(started, ["ops/build#1", "shop/build#1"], "{answer}");
    let (_, answer) = deliver(
        &s,
        Provider::Gitea,
        "push",
        "m-lib",
        &push_payload(Provider::Gitea, "shop/lib", &lib_url, &lib),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(answer["runs"], json!(["libs/build#1"]));

    for (run, commit) in
        [("ops/build#1", &app.after), ("shop/build#1", &app.after), ("libs/build#1", &lib.after)]
    {
        let d = s.wait_final(run).await;
        assert_eq!(d.run.state, "success", "{d:#?}");
        assert_eq!(&d.run.source.unwrap().commit, commit);
    }
    assert!(runs_of(&s, "other").await.is_empty(), "a project with another secret is not started");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_request_runs_its_head_commit_and_its_merge() {
    let gits = GitServer::start().await;
    let url = gits.create("shop/app");
    let s = TestServer::start().await;
    let yaml = format!(
        "name: mr\nsource: {{ repository: '{url}', credentials: GIT_TOKEN }}\non:\n  \
         merge_request: {{ branches: [main], types: [opened, merged] }}\nstages:\n  - name: s\n    \
         jobs:\n      check: {{ script: 'cat version.txt; echo \"mr=$KILN_PULL_REQUEST into \
         $KILN_TARGET_BRANCH\"' }}\n"
    );
    s.apply("shop", "mr", &yaml).await;
    // `kiln triggers` lists what starts it.
    let listed: Vec<(String, String)> = s
        .admin
        .triggers(Some("shop"))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.kind.as_str().to_string(), t.details))
        .collect();
    assert!(
        listed.contains(&(
            "pull_request".into(),
            format!("pull request on {url} into main: opened, merged")
        )),
        "{listed:#?}"
    );
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.admin.set_secret("shop", "WEBHOOK_SECRET", HOOK_SECRET).await.unwrap();
    let work = WorkingCopy::new(&gits.path("shop/app"));
    work.push("main", &[("version.txt", "main\n")], "Base");
    let head = work.push("feature", &[("version.txt", "feature\n")], "Feature");
    let merge_request = |action: &str, last: &str, merge: Option<&str>| {
        json!({
            "object_kind": "merge_request", "user": { "username": "ada" },
            "project": { "path_with_namespace": "shop/app", "git_http_url": url },
            "object_attributes": { "iid": 3, "action": action, "title": "Feature",
                "source_branch": "feature", "target_branch": "main",
                "last_commit": { "id": last }, "merge_commit_sha": merge }
        })
    };
    let hook = "Merge Request Hook";
    let (_, answer) = deliver(
        &s,
        Provider::GitLab,
        hook,
        "mr-1",
        &merge_request("open", &head.after, None),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(answer["runs"], json!(["shop/mr#1"]), "{answer}");
    let (_, answer) = deliver(
        &s,
        Provider::GitLab,
        hook,
        "mr-2",
        &merge_request("update", &head.after, None),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(answer["runs"], json!([]), "synchronize is not among the types: {answer}");

    // The merge lands on main as its own commit.
    let d = work.dir.path();
    git(d, &["checkout", "-q", "main"]);
    git(d, &["merge", "-q", "--no-ff", "-m", "Merge feature", "feature"]);
    git(d, &["push", "-q", "origin", "main"]);
    let merged = git(d, &["rev-parse", "HEAD"]);
    let (_, answer) = deliver(
        &s,
        Provider::GitLab,
        hook,
        "mr-3",
        &merge_request("merge", &head.after, Some(&merged)),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(answer["runs"], json!(["shop/mr#2"]), "{answer}");

    for (run, commit, branch) in
        [("shop/mr#1", &head.after, "feature"), ("shop/mr#2", &merged, "main")]
    {
        let d = s.wait_final(run).await;
        assert_eq!(d.run.state, "success", "{d:#?}");
        let src = d.run.source.clone().unwrap();
        assert_eq!((&src.commit, src.branch.as_deref()), (commit, Some(branch)));
        assert_eq!((src.pull_request, src.target_branch.as_deref()), (Some(3), Some("main")));
        let log = log_text(&s, &d.run.id, Some("check")).await;
        assert!(log.contains(&"feature".to_string()), "{log:#?}");
        assert!(log.contains(&"mr=3 into main".to_string()), "{log:#?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_push_cancels_the_run_in_progress_of_its_branch_only() {
    let gits = GitServer::start().await;
    let url = gits.create("shop/app");
    let s = TestServer::start().await;
    // `slow` runs until canceled; anything else ends at once.
    let yaml = format!(
        "name: deploy\nsource: {{ repository: '{url}', credentials: GIT_TOKEN }}\non:\n  push:\n\
         concurrency:\n  group: 'deploy-${{{{ source.branch }}}}'\n  cancel-in-progress: true\n\
         stages:\n  - name: s\n    jobs:\n      deploy:\n        script: |\n          \
         echo \"v=$(cat version.txt)\"\n          \
         if [ \"$(cat version.txt)\" = slow ]; then while true; do sleep 1; done; fi\n"
    );
    s.apply("shop", "deploy", &yaml).await;
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.admin.set_secret("shop", "WEBHOOK_SECRET", HOOK_SECRET).await.unwrap();
    let work = WorkingCopy::new(&gits.path("shop/app"));
    let mut n = 0;
    let mut push = |branch: &str, version: &str| {
        n += 1;
        let p = work.push(branch, &[("version.txt", version)], version);
        (format!("push-{n}"), push_payload(Provider::GitHub, "shop/app", &url, &p))
    };

    let (id, body) = push("main", "slow");
    let (_, answer) = deliver(&s, Provider::GitHub, "push", &id, &body, HOOK_SECRET).await;
    assert_eq!(answer["runs"], json!(["shop/deploy#1"]));
    s.wait_for("shop/deploy#1", "its job running", |d| d.jobs[0].state == "running").await;

    // Another branch is another group: it runs at once, limit 1 notwithstanding.
    let (id, body) = push("dev", "fast");
    deliver(&s, Provider::GitHub, "push", &id, &body, HOOK_SECRET).await;
    assert_eq!(s.wait_final("shop/deploy#2").await.run.state, "success");
    assert_eq!(s.admin.run("shop/deploy#1").await.unwrap().run.state, "running");

    // A newer push to main cancels #1, then runs.
    let (id, body) = push("main", "fast");
    let (_, answer) = deliver(&s, Provider::GitHub, "push", &id, &body, HOOK_SECRET).await;
    assert_eq!(answer["runs"], json!(["shop/deploy#3"]));
    let first = s.wait_final("shop/deploy#1").await;
    assert_eq!(first.run.state, "canceled", "{first:#?}");
    let reason = first.run.reason.clone().unwrap_or_default();
    assert!(reason.contains("newer run shop/deploy#3 of group `deploy-main`"), "{reason}");
    let third = s.wait_final("shop/deploy#3").await;
    assert_eq!(third.run.state, "success", "{third:#?}");
    assert!(log_text(&s, &third.run.id, Some("deploy")).await.contains(&"v=fast".to_string()));
    s.stop().await;
}

/// Issue 18: GitHub sends deliveries of up to 25 MB; Kiln took 2 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_over_two_megabytes_is_accepted_other_bodies_keep_their_cap() {
    let s = TestServer::start().await;
    // A push of many commits: a payload of about 3 MB (one padded commit message).
    let big = json!({ "ref": "refs/heads/main", "after": "a".repeat(40),
                      "repository": { "full_name": "else/where", "clone_url": "http://x/else/where.git" },
                      "head_commit": { "id": "a".repeat(40), "message": "x".repeat(3 << 20) } });
    let (status, answer) = deliver(&s, Provider::GitHub, "push", "big-1", &big, HOOK_SECRET).await;
    // Read whole (not 413): no pipeline builds it, answered as a wrong signature.
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("build else/where"), "{answer}");

    // Over 25 MB is still refused, and so is a 3 MB body anywhere else in the API.
    let client = reqwest::Client::new();
    let huge = client
        .post(format!("{}/api/v1/hooks/github", s.url))
        .header("content-type", "application/json")
        .body(vec![b' '; 26 << 20])
        .send()
        .await
        .unwrap();
    let code = huge.status().as_u16();
    let text = huge.text().await.unwrap();
    assert_eq!(code, 413, "{text}");
    let other = client
        .post(format!("{}/api/v1/projects", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({ "name": "x".repeat(3 << 20) })).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 413);
    s.stop().await;
}

pub async fn a_crash_after_a_delivery_is_claimed_loses_and_doubles_nothing_on(backend: Backend) {
    let gits = GitServer::start().await;
    let url = gits.create("shop/app");
    let mut s = TestServer::start_on(backend).await;
    linked_project(&s, "shop", &url, "cat version.txt").await;
    linked_project(&s, "ops", "shop/app", "cat version.txt").await;
    let pushed =
        WorkingCopy::new(&gits.path("shop/app")).push("main", &[("version.txt", "9")], "Nine");
    let payload = push_payload(Provider::GitHub, "shop/app", &url, &pushed);

    // The server dies right after the delivery's claim is stored, before any run exists.
    s.stop_server().await;
    s.start_again_with(|c| c.crash_after_claim = true).await;
    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "crash-1", &payload, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert!(runs_of(&s, "shop").await.is_empty(), "the crash came before the runs");
    assert!(runs_of(&s, "ops").await.is_empty());

    // Started again: exactly one run per pipeline the delivery wanted, not zero, not two.
    s.restart().await;
    for project in ["shop", "ops"] {
        let runs = runs_of(&s, project).await;
        assert_eq!(runs.len(), 1, "{project}: {runs:#?}");
        assert_eq!(runs[0].triggered_by, "github push of shop/app");
    }
    // The same delivery again is a duplicate: nothing starts, and it says what it started.
    let (status, answer) =
        deliver(&s, Provider::GitHub, "push", "crash-1", &payload, HOOK_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["runs"], json!([]), "{answer}");
    let outcome = answer["outcome"].as_str().unwrap();
    assert!(outcome.contains("already received"), "{answer}");
    assert!(outcome.contains("started 2 run(s)"), "{answer}");

    // The runs build the pushed commit (an agent for the restarted server).
    let _agent = s.agent("after-crash", 2, host("127.0.0.1", 4, &[]));
    for run in ["shop/build#1", "ops/build#1"] {
        let d = s.wait_final(run).await;
        assert_eq!(d.run.state, "success", "{d:#?}");
        assert_eq!(d.run.source.unwrap().commit, pushed.after);
    }
    // Another start finds nothing left to do.
    s.restart().await;
    assert_eq!(runs_of(&s, "shop").await.len(), 1);
    assert_eq!(runs_of(&s, "ops").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_a_delivery_is_claimed_loses_and_doubles_nothing() {
    a_crash_after_a_delivery_is_claimed_loses_and_doubles_nothing_on(Backend::Sqlite).await;
}

/// Issue 20: the webhook endpoint tells a stranger nothing: a delivery for a repository no
/// pipeline builds is answered as one whose signature does not match, and neither names a
/// project.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_endpoint_does_not_reveal_which_repositories_have_pipelines() {
    let s = TestServer::start().await;
    linked_project(&s, "shop", "shop/app", "true").await;
    // A project building it without a secret of its own, whose name must not leak.
    linked_project(&s, "secretive", "shop/app", "true").await;
    s.admin.delete_secret("secretive", "WEBHOOK_SECRET").await.unwrap();
    let pushed = Pushed {
        before: String::new(),
        after: "a".repeat(40),
        git_ref: "refs/heads/main".into(),
        message: "m".into(),
        changed: vec![],
    };
    let push = |provider, repo: &str| {
        push_payload(provider, repo, &format!("http://x/{repo}.git"), &pushed)
    };
    for provider in [Provider::GitHub, Provider::GitLab, Provider::Gitea] {
        let event = push_event(provider);
        let built = push(provider, "shop/app");
        let (status_built, built) = deliver(&s, provider, event, "s-1", &built, "guessed").await;
        let unknown = push(provider, "nobody/else");
        let (status_unknown, unknown) =
            deliver(&s, provider, event, "s-2", &unknown, "guessed").await;
        assert_eq!((status_built, status_unknown), (status_unknown, status_built));
        assert_eq!(status_built, StatusCode::UNAUTHORIZED, "{built}");
        let text = built.to_string();
        assert_eq!(text.replace("shop/app", "R"), unknown.to_string().replace("nobody/else", "R"));
        assert!(!text.contains("secretive") && !text.contains("\"shop\""), "{text}");
    }
    assert!(runs_of(&s, "shop").await.is_empty());
    s.stop().await;
}
