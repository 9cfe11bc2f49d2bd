//! `kiln validate`, bad input to `kiln run` (clear errors, exit code 2, never a panic) and help texts.

use crate::support::{assert_code, example, run};

#[test]
fn every_example_is_valid() {
    for name in [
        "build-test-deploy.yml",
        "service-test.yml",
        "matrix.yml",
        "cleanup-on-failure.yml",
        "projects/api.yml",
        "projects/web.yml",
        "templates/service-pipeline.yml",
    ] {
        let out = run(&["validate", &example(name)]);
        let (stdout, _) = assert_code(&out, 0);
        assert!(stdout.contains(": ok ("), "{name}: {stdout}");
    }
}

#[test]
fn all_problems_are_reported_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(
        &file,
        "name: bad\nstages:\n  - name: build\n    jobs:\n      compile:\n        image: busybox\n        scritp: echo hi\n        timeout: soon\n  - name: test\n    jobs:\n      unit:\n        image: busybox\n        needs: [nope]\n        script: echo ${{ params.missing }}\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let out = run(&["validate", &path]);
    let (_, stderr) = assert_code(&out, 2);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
    assert!(errors.len() >= 4, "expected every problem at once, got:\n{stderr}");
    for (line, what) in [(7, "scritp"), (8, "soon"), (13, "nope"), (14, "missing")] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}:{line}:")) && e.contains(what)),
            "no diagnostic at line {line} naming {what:?} in:\n{stderr}"
        );
    }
}

#[test]
fn validate_json_lists_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, "name: x\nstages: 3\n").unwrap();
    let out = run(&["validate", "-o", "json", &file.display().to_string()]);
    let (stdout, _) = assert_code(&out, 2);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["valid"], false);
    let first = &doc["diagnostics"][0];
    assert_eq!(first["line"], 2, "{doc}");
    assert!(first["message"].as_str().unwrap().contains("stages"), "{doc}");
}

#[test]
fn garbage_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.yml");
    std::fs::write(&garbage, "name: [unclosed\n\t- : : {\n").unwrap();
    for path in [garbage.display().to_string(), dir.path().join("absent.yml").display().to_string()]
    {
        for cmd in ["validate", "run"] {
            let out =
                run(&[cmd, &path, "--executor", "process"][..if cmd == "run" { 4 } else { 2 }]);
            let (_, stderr) = assert_code(&out, 2);
            assert!(stderr.contains("error"), "{cmd} {path}: {stderr}");
            assert!(!stderr.contains("panicked"), "{cmd} {path}: {stderr}");
        }
    }
}

#[test]
fn bad_params_are_rejected_before_anything_runs() {
    let file = example("build-test-deploy.yml");
    let out = run(&["run", &file, "--executor", "process", "-p", "target=qa"]);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("target") && stderr.contains("staging"), "{stderr}");
    let out = run(&["run", &file, "--executor", "process", "-p", "novalue"]);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
    let out = run(&["run", &file, "--executor", "process", "-p", "nope=1"]);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("nope"), "{stderr}");
    let out = run(&["run", &file, "--executor", "process", "--approve", "deploy-prod"]);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("approve"), "{stderr}");
}

#[test]
fn no_engine_with_executor_docker_is_a_one_line_error() {
    let out = crate::support::kiln()
        .args(["run", &example("matrix.yml"), "--executor", "docker"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("/nonexistent/docker.sock"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn schema_is_printed() {
    let out = run(&["schema"]);
    let (stdout, _) = assert_code(&out, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout).expect("json schema");
    assert!(schema.to_string().contains("stages"));
}

#[test]
fn agent_help_recommends_an_agent_token() {
    let out = run(&["agent", "--help"]);
    let (stdout, _) = assert_code(&out, 0);
    assert!(stdout.contains("kiln token create NAME --role agent"), "{stdout}");
    assert!(!stdout.contains("until agent tokens exist"), "{stdout}");
}

/// Issue 18: an unreachable PostgreSQL made `kiln server` wait 30 s and say something
/// generic. Now it fails at once, naming the cause and the address, in one line.
#[test]
fn server_on_an_unreachable_postgres_fails_fast_with_the_cause() {
    // A loopback port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let url = format!("postgres://kiln:secret@127.0.0.1:{port}/kiln");
    let started = std::time::Instant::now();
    let out = crate::support::kiln()
        .args(["server", "--listen", "127.0.0.1:0", "--capacity", "0", "--database", &url])
        .arg("--data")
        .arg(data.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let (_, stderr) = assert_code(&out, 2);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: cannot connect to PostgreSQL: connection refused at 127.0.0.1:{port} (is \
             PostgreSQL running there?)"
        )
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}

/// Issue 16: the registry's blobs on S3. A bucket that does not exist (or a wrong key, or no
/// server) stops `kiln server` at once with a one-line cause, before the data directory is
/// created. Host ports 44010-44019 (the S3 range is 44000-44099).
#[tokio::test]
async fn server_with_a_missing_s3_bucket_fails_fast_with_the_cause() {
    let s3 = kiln_testkit::S3Server::start(44010, "kiln-blobs").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |bucket: &str, secret: &str| {
        let started = std::time::Instant::now();
        let out = crate::support::kiln()
            .args(["server", "--listen", "127.0.0.1:0", "--capacity", "0"])
            .args(["--blob-store", &format!("s3://{bucket}/kiln"), "--s3-allow-http"])
            .args(["--s3-endpoint", &s3.endpoint])
            .arg("--data")
            .arg(&data)
            .env("AWS_ACCESS_KEY_ID", kiln_testkit::S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (out, started.elapsed())
    };
    let (out, elapsed) = run("nobucket", kiln_testkit::S3_SECRET_KEY);
    let (_, stderr) = assert_code(&out, 2);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: blob store s3://nobucket/kiln: the bucket `nobucket` does not exist at {}",
            s3.endpoint
        )
    );
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
    let (out, _) = run("kiln-blobs", "a-wrong-secret");
    let (_, stderr) = assert_code(&out, 2);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: blob store s3://kiln-blobs/kiln: the secret access key was refused by {} \
             (SignatureDoesNotMatch)",
            s3.endpoint
        )
    );
    assert!(!stderr.contains("a-wrong-secret"), "{stderr}");
    assert!(!data.exists(), "nothing was created");
}

/// `kiln server --object-store` with a missing bucket or a wrong secret: exit 2 within
/// seconds with the one-line cause naming the object store, nothing created.
#[tokio::test]
async fn server_with_an_unusable_object_store_fails_fast_with_the_cause() {
    let s3 = kiln_testkit::S3Server::start_free("kiln").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |bucket: &str, secret: &str| {
        let started = std::time::Instant::now();
        let out = crate::support::kiln()
            .args(["server", "--listen", "127.0.0.1:0", "--capacity", "0"])
            .args(["--object-store", &format!("s3://{bucket}/team"), "--s3-allow-http"])
            .args(["--s3-endpoint", &s3.endpoint])
            .arg("--data")
            .arg(&data)
            .env("AWS_ACCESS_KEY_ID", kiln_testkit::S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (out, started.elapsed())
    };
    let (out, elapsed) = run("nobucket", kiln_testkit::S3_SECRET_KEY);
    let (_, stderr) = assert_code(&out, 2);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: object store s3://nobucket/team: the bucket `nobucket` does not exist at {}",
            s3.endpoint
        )
    );
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
    let (out, _) = run("kiln", "a-wrong-secret");
    let (_, stderr) = assert_code(&out, 2);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: object store s3://kiln/team: the secret access key was refused by {} \
             (SignatureDoesNotMatch)",
            s3.endpoint
        )
    );
    assert!(!stderr.contains("a-wrong-secret"), "{stderr}");
    assert!(!data.exists(), "nothing was created");
    assert!(s3.keys("kiln").is_empty(), "nothing was stored in the bucket");
}

/// `kiln agent --executor kubernetes` with a `KUBECONFIG` of `contents` (none when `None`)
/// and no home kubeconfig: its exit code and stderr, and how long it took.
fn kubernetes_agent(contents: Option<&str>) -> (std::process::Output, std::time::Duration) {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("kubeconfig");
    if let Some(contents) = contents {
        std::fs::write(&config, contents).unwrap();
    }
    let started = std::time::Instant::now();
    let out = crate::support::kiln()
        .args(["agent", "--executor", "kubernetes", "--server", "http://127.0.0.1:9"])
        .env("KILN_TOKEN", "not-used")
        .env("HOME", home.path())
        .env("KUBECONFIG", &config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    (out, started.elapsed())
}

#[test]
fn kubernetes_agent_without_a_kubeconfig_is_a_one_line_error() {
    let (out, elapsed) = kubernetes_agent(None);
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("no usable kubeconfig"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn kubernetes_agent_with_an_api_server_that_does_not_answer_is_a_one_line_error() {
    // A loopback port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
         current-context: x\n"
    );
    let (out, elapsed) = kubernetes_agent(Some(&config));
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn kubernetes_executor_for_the_embedded_agent_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let out = crate::support::kiln()
        .args(["server", "--listen", "127.0.0.1:0", "--executor", "kubernetes", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("kiln agent --executor kubernetes"), "{stderr}");
}
