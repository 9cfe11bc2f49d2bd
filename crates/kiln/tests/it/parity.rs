//! `kiln run` does what the server does: one pipeline using artifacts (a downstream job reads
//! what an upstream one kept), a cache (a second run finds it, `--no-cache` does not) and
//! `source:` (a git repository made here; jobs read a committed file and `KILN_COMMIT_SHA`)
//! gives the same job outputs under `kiln run` as through `kiln server` and a signed push
//! webhook, on the process executor and in containers. The examples give the same outputs
//! both ways too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_server::webhooks::{Provider, sign};
use serde_json::{Value, json};

use crate::server::Server;
use crate::support::{assert_code, example, kiln, require_docker};

pub(crate) const HOOK_SECRET: &str = "parity-hook-secret";

/// The pipeline: `make` checks out the source, restores and saves a cache keyed by a lock
/// file, keeps artifacts; `read` (no checkout) reads them.
fn pipeline(repository: &str) -> String {
    format!(
        r#"name: parity
source: {repository}
on:
  push: {{ branches: [main] }}
stages:
  - name: build
    jobs:
      make:
        image: busybox
        script:
          - mkdir -p out .cache
          - cat greeting.txt > out/greeting.txt
          - echo "$KILN_COMMIT_SHA" > out/commit.txt
          - if [ -f .cache/warm.txt ]; then echo "JOB_OUT cache=hit"; else echo "JOB_OUT cache=miss"; fi
          - echo warm > .cache/warm.txt
          - echo "JOB_OUT job=$KILN_JOB attempt=$KILN_ATTEMPT pipeline=$KILN_PIPELINE"
        cache: {{ key: deps, files: [deps.lock], paths: [.cache] }}
        artifacts: {{ paths: [out/] }}
  - name: use
    jobs:
      read:
        image: busybox
        checkout: false
        script:
          - echo "JOB_OUT greeting=$(cat out/greeting.txt)"
          - echo "JOB_OUT kept_commit=$(cat out/commit.txt)"
          - echo "JOB_OUT commit=$KILN_COMMIT_SHA"
          - echo "JOB_OUT ref=$KILN_REF branch=$KILN_BRANCH"
          - echo "JOB_OUT message=$KILN_COMMIT_MESSAGE"
          - if [ -e greeting.txt ]; then echo "JOB_OUT checkout=yes"; else echo "JOB_OUT checkout=no"; fi
"#
    )
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit on `main`; its directory and the commit.
fn repository() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("greeting.txt"), "hello from git\n").unwrap();
    std::fs::write(d.join("deps.lock"), "lock v1\n").unwrap();
    git(d, &["add", "-A"]);
    git(
        d,
        &[
            "-c",
            "user.name=Ada Lovelace",
            "-c",
            "user.email=ada@example.com",
            "commit",
            "-q",
            "-m",
            "First commit",
        ],
    );
    let sha = git(d, &["rev-parse", "HEAD"]);
    (dir, sha)
}

/// Each job's outputs, by job id, from a `-o json` summary or a server's run.
pub(crate) fn outputs(run: &Value) -> BTreeMap<String, Value> {
    run["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {run:#}"))
        .iter()
        .map(|j| (j["id"].as_str().unwrap().to_string(), j["outputs"].clone()))
        .collect()
}

/// `kiln run` of `file` from `cwd` with `extra` flags; the parsed summary and stderr.
fn run_local(file: &Path, cwd: &Path, executor: &str, extra: &[&str]) -> (Value, String) {
    let out = kiln()
        .current_dir(cwd)
        .arg("run")
        .arg(file)
        .args(["--executor", executor, "-o", "json"])
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = assert_code(&out, 0);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (doc, stderr)
}

/// Posts a signed Gitea push of `sha` to `main` of `url` to the server.
pub(crate) fn push(s: &Server, url: &str, sha: &str, delivery: &str) {
    let commit = json!({
        "id": sha, "message": "First commit", "timestamp": "2026-11-30T10:00:00Z",
        "author": { "name": "Ada Lovelace", "email": "ada@example.com" },
        "added": ["greeting.txt", "deps.lock"], "modified": [], "removed": []
    });
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "created": true,
        "deleted": false, "forced": false,
        "repository": { "full_name": "local/parity", "clone_url": url, "html_url": url },
        "pusher": { "name": "ada" }, "head_commit": commit, "commits": [commit]
    }))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, text) = rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/hooks/gitea", s.url))
            .header("content-type", "application/json")
            .header("X-Gitea-Event", "push")
            .header("X-Gitea-Delivery", delivery)
            .header(Provider::Gitea.signature_header(), sign(Provider::Gitea, &body, HOOK_SECRET))
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("started 1 run"), "{text}");
}

/// Sets a project secret through the CLI (the value on stdin).
pub(crate) fn secret(s: &Server, name: &str, value: &str) {
    use std::io::Write;
    let mut child = s
        .cmd(&["secret", "set", "default", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{value}\n").as_bytes()).unwrap();
    assert_code(&child.wait_with_output().unwrap(), 0);
}

/// The run `name` once it ended (it may not exist yet right after the delivery).
pub(crate) fn ended(s: &Server, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let out = s.run(&["run", "show", name, "-o", "json"]);
        if out.status.success() {
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            if doc["finished_at"].is_string() {
                return doc;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "run {name} never ended");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn parity_on(executor: &str) {
    let (repo, sha) = repository();
    let url = format!("file://{}", repo.path().display());
    let yaml = pipeline(&url);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("parity.yml");
    std::fs::write(&file, &yaml).unwrap();
    let cache = work.path().join("cache");
    let cache_flag = cache.display().to_string();
    let run_dir = work.path().join("run");

    // Locally: from inside the repository, its HEAD is the source.
    let run_flag = run_dir.display().to_string();
    let (first, stderr) = run_local(
        &file,
        repo.path(),
        executor,
        &["--cache-dir", &cache_flag, "--run-dir", &run_flag],
    );
    assert_eq!(first["state"], "success", "{first:#}\n{stderr}");
    let local1 = outputs(&first);
    assert_eq!(local1["make"]["cache"], "miss", "{first:#}");
    assert_eq!(local1["make"]["job"], "make attempt=1 pipeline=parity", "{first:#}");
    assert_eq!(local1["read"]["greeting"], "hello from git", "{first:#}");
    assert_eq!(local1["read"]["kept_commit"], sha.as_str(), "{first:#}");
    assert_eq!(local1["read"]["commit"], sha.as_str(), "{first:#}");
    assert_eq!(local1["read"]["ref"], "refs/heads/main branch=main", "{first:#}");
    assert_eq!(local1["read"]["checkout"], "no", "{first:#}");
    assert!(stderr.contains(&format!("source: {sha} of ")), "{stderr}");
    let kept = run_dir.join("artifacts/make/out/greeting.txt");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "hello from git\n");
    assert!(stderr.contains(&format!("artifacts kept in {}", run_dir.join("artifacts").display())));
    assert_eq!(first["artifacts"], run_dir.join("artifacts").display().to_string());

    // Again, naming the source: the cache saved by the first run is found.
    let (second, _) = run_local(
        &file,
        work.path(),
        executor,
        &["--cache-dir", &cache_flag, "--source", &repo.path().display().to_string()],
    );
    let local2 = outputs(&second);
    assert_eq!(local2["make"]["cache"], "hit", "{second:#}");
    assert_eq!(local2["read"]["commit"], sha.as_str(), "{second:#}");
    // --no-cache: not restored; a URL@REF source resolves to the same commit.
    let (third, stderr) = run_local(
        &file,
        work.path(),
        executor,
        &["--cache-dir", &cache_flag, "--no-cache", "--source", &format!("{url}@main")],
    );
    let local3 = outputs(&third);
    assert_eq!(local3["make"]["cache"], "miss", "{third:#}");
    assert_eq!(local3["read"]["kept_commit"], sha.as_str(), "{third:#}");
    assert!(stderr.contains("--no-cache"), "{stderr}");

    // Through a server: the same pipeline started by pushes of the same commit.
    let s = Server::start_on(executor);
    s.pipeline("parity", &yaml);
    secret(&s, "WEBHOOK_SECRET", HOOK_SECRET);
    push(&s, &url, &sha, "delivery-1");
    let run1 = ended(&s, "default/parity#1");
    assert_eq!(run1["state"], "success", "{run1:#}");
    push(&s, &url, &sha, "delivery-2");
    let run2 = ended(&s, "default/parity#2");
    assert_eq!(outputs(&run1), local1, "first run: server (left) and kiln run (right) differ");
    assert_eq!(outputs(&run2), local2, "second run: server (left) and kiln run (right) differ");
}

#[test]
fn artifacts_cache_and_source_match_the_server_on_processes() {
    parity_on("process");
}

/// Whether to run the container half: always when `KILN_REQUIRE_DOCKER=1` (and then an
/// engine must answer), else when one answers.
fn docker_wanted() -> bool {
    if std::env::var("KILN_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        require_docker();
        return true;
    }
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        eprintln!("skipped: no Docker engine answers (KILN_REQUIRE_DOCKER=1 makes this a failure)");
    }
    answers
}

#[test]
fn artifacts_cache_and_source_match_the_server_in_containers() {
    if docker_wanted() {
        parity_on("docker");
    }
}

/// Each job's state and outputs.
fn states_and_outputs(run: &Value) -> BTreeMap<String, (Value, Value)> {
    run["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {run:#}"))
        .iter()
        .map(|j| {
            (j["id"].as_str().unwrap().to_string(), (j["state"].clone(), j["outputs"].clone()))
        })
        .collect()
}

#[test]
fn examples_give_the_same_jobs_and_outputs_here_and_on_a_server() {
    let s = Server::start_on("process");
    // (file, pipeline name, exit code); service-test needs containers (docker.rs runs it).
    let cases = [
        ("build-test-deploy.yml", "build-test-deploy", 0),
        ("cleanup-on-failure.yml", "cleanup-on-failure", 1),
        ("matrix.yml", "matrix", 0),
        ("projects/api.yml", "api", 0),
        ("projects/web.yml", "web", 0),
    ];
    for (file, name, code) in cases {
        let path = example(file);
        let out =
            kiln().args(["run", &path, "--executor", "process", "--yes", "-o", "json"]).output();
        let (stdout, stderr) = assert_code(&out.unwrap(), code);
        let local: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{file}: {e}: {stderr}"));

        let (applied, _) = s.ok(&["pipeline", "apply", &path], 0);
        assert!(applied.contains(&format!("default/{name}")), "{file}: {applied}");
        s.ok(&["trigger", &format!("default/{name}")], 0);
        let run = format!("default/{name}#1");
        let started = Instant::now();
        let server = loop {
            let doc = s.show(&run);
            if doc["finished_at"].is_string() {
                break doc;
            }
            if doc["state"] == "paused" {
                for stage in doc["stages"].as_array().unwrap() {
                    if stage["gate"] == "waiting" {
                        s.ok(&["approve", &run, stage["name"].as_str().unwrap()], 0);
                    }
                }
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{run} never ended: {doc:#}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(server["state"], local["state"], "{file}: {server:#}\n{local:#}");
        assert_eq!(states_and_outputs(&server), states_and_outputs(&local), "{file}");
    }
}
