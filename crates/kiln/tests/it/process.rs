//! `kiln run` on the process executor: the path a machine without a container engine takes.

use crate::support::{assert_code, example, kiln, run};

#[test]
fn build_test_deploy_passes_outputs_downstream() {
    let out = run(&[
        "run",
        &example("build-test-deploy.yml"),
        "--executor",
        "process",
        "--yes",
        "-p",
        "version=2.0.1",
    ]);
    let (stdout, stderr) = assert_code(&out, 0);
    assert!(stdout.contains("compile | building hello 2.0.1"), "{stdout}");
    assert!(stdout.contains("deploying hello-2.0.1.tar (12 tests passed) to staging"), "{stdout}");
    assert!(stderr.contains("approved"), "{stderr}");
    // Summary table: every job with its state and outputs.
    for needle in [
        "compile",
        "unit",
        "lint",
        "ship",
        "success",
        "artifact=hello-2.0.1.tar",
        "url=https://staging.example.com/hello",
    ] {
        assert!(stdout.contains(needle), "summary lacks {needle:?}:\n{stdout}");
    }
}

#[test]
fn approval_without_a_terminal_or_flag_rejects() {
    let out = run(&["run", &example("build-test-deploy.yml"), "--executor", "process"]);
    let (stdout, stderr) = assert_code(&out, 1);
    assert!(stderr.contains("--approve approve"), "{stderr}");
    assert!(!stdout.contains("deploying"), "{stdout}");
    assert!(stdout.contains("canceled"), "{stdout}");
}

#[test]
fn json_summary() {
    let out = run(&[
        "run",
        &example("build-test-deploy.yml"),
        "--executor",
        "process",
        "--approve",
        "approve",
        "-o",
        "json",
    ]);
    let (stdout, _) = assert_code(&out, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json on stdout");
    assert_eq!(doc["state"], "success");
    let ship = doc["jobs"].as_array().unwrap().iter().find(|j| j["id"] == "ship").unwrap();
    assert_eq!(ship["outputs"]["url"], "https://staging.example.com/hello");
}

#[test]
fn failure_runs_cleanup_and_exits_one() {
    let out = run(&["run", &example("cleanup-on-failure.yml"), "--executor", "process"]);
    let (stdout, _) = assert_code(&out, 1);
    assert!(stdout.contains("tearing down env-42 after a failure"), "{stdout}");
    assert!(!stdout.contains("never runs"), "{stdout}");
}

#[test]
fn services_are_refused_by_the_process_executor() {
    let out = run(&["run", &example("service-test.yml"), "--executor", "process"]);
    let (stdout, stderr) = assert_code(&out, 1);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("process executor cannot run this job") && all.contains("db"), "{all}");
}

#[test]
fn a_job_timeout_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.yml");
    std::fs::write(&file, "name: slow\nstages:\n  - name: s\n    jobs:\n      slow:\n        timeout: 1s\n        script: sleep 30\n").unwrap();
    let started = std::time::Instant::now();
    let out = kiln()
        .args(["run", &file.display().to_string(), "--executor", "process"])
        .output()
        .unwrap();
    let (stdout, stderr) = assert_code(&out, 1);
    assert!(started.elapsed().as_secs() < 15, "took {:?}", started.elapsed());
    assert!(stdout.contains("timeout") || stderr.contains("timed out"), "{stdout}{stderr}");
}

#[test]
fn timestamps_prefix_log_lines_on_request() {
    let out = run(&["run", &example("matrix.yml"), "--executor", "process", "--timestamps"]);
    let (stdout, _) = assert_code(&out, 0);
    let line = stdout.lines().find(|l| l.contains("testing on linux/amd64")).expect("log line");
    let after = line.split(" | ").nth(1).expect("job prefix");
    let stamp = &after[..12];
    assert!(
        stamp.as_bytes().iter().enumerate().all(|(i, b)| match i {
            2 | 5 => *b == b':',
            8 => *b == b'.',
            _ => b.is_ascii_digit(),
        }),
        "no HH:MM:SS.mmm stamp in {line:?}"
    );
}

/// A git repository in `dir/repo` whose Dockerfile copies busybox in and runs one step.
fn build_repository(dir: &std::path::Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy("/usr/bin/busybox", repo.join("busybox")).expect("busybox on this host");
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"mkdir\", \"/out\"]\n",
    )
    .unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "x"],
    ] {
        let ok = std::process::Command::new("git").args(args).current_dir(&repo).status();
        assert!(ok.unwrap().success(), "git {args:?}");
    }
    repo
}

#[test]
fn a_build_job_builds_with_the_hosts_buildah_and_says_it_is_not_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repository(dir.path());
    let file = dir.path().join("build.yml");
    let yaml = format!(
        "name: img\nsource: {{ repository: '{}' }}\nstages:\n  - name: b\n    jobs:\n      \
         image:\n        build: {{ tags: [app:1] }}\n",
        repo.display()
    );
    std::fs::write(&file, yaml).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = kiln()
        .args(["run", file.to_str().unwrap(), "--executor", "process", "--source"])
        .arg(&repo)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let (stdout, stderr) = assert_code(&out, 0);
    assert!(stderr.contains("there is no registry here"), "{stderr}");
    assert!(
        stdout.contains("kiln build: not pushed: no registry (KILN_REGISTRY is not set)"),
        "{stdout}"
    );
    assert!(stdout.contains("image-id=sha256:"), "{stdout}");
    // buildah's storage was the executor's, under its directory.
    assert!(tmp.join("buildah").is_dir());
}

/// `kiln run` pushes a tag on another registry, logged in to with the variable of this
/// environment that `credentials` names (a project secret on a server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_job_pushes_to_another_registry_with_credentials_from_the_environment() {
    let registry = kiln_testkit::Distribution::start(48292).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repository(dir.path());
    let file = dir.path().join("build.yml");
    let host = &registry.host;
    let yaml = [
        "name: img".to_string(),
        format!("source: {{ repository: '{}' }}", repo.display()),
        "stages:".into(),
        "  - name: b".into(),
        "    jobs:".into(),
        "      image:".into(),
        "        build:".into(),
        format!("          tags: ['{host}/team/app:1']"),
        format!("          credentials: {{ '{host}': REG_AUTH }}"),
        format!("          insecure-registries: ['{host}']"),
    ]
    .join("\n");
    std::fs::write(&file, yaml).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let auth =
        format!("{}:{}", kiln_testkit::DISTRIBUTION_USER, kiln_testkit::DISTRIBUTION_PASSWORD);
    let out = kiln()
        .args(["run", file.to_str().unwrap(), "--executor", "process", "-o", "json", "--source"])
        .arg(&repo)
        .env("TMPDIR", &tmp)
        .env("REG_AUTH", &auth)
        .output()
        .unwrap();
    let (stdout, _) = assert_code(&out, 0);
    let digest = registry.digest("team/app:1", true).expect("pushed to the other registry");
    assert!(stdout.contains(&format!("{host}/team/app@{digest}")), "{stdout}");
    assert!(!stdout.contains(kiln_testkit::DISTRIBUTION_PASSWORD), "{stdout}");
}

#[test]
fn script_lines_are_echoed_and_stderr_keeps_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["run", &crate::support::interleaved(dir.path()), "--executor", "process"]);
    let (stdout, _) = assert_code(&out, 1);
    crate::support::assert_interleaved(&stdout);
}
