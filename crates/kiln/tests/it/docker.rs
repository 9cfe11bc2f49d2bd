//! Every example run in real containers on a Docker engine, and clean-up checked with the
//! docker CLI: nothing a run created may outlive it, also after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{assert_code, example, kiln, leftovers, require_docker, run, run_id};

fn run_docker(args: &[&str], code: i32) -> (String, String) {
    require_docker();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--executor", "docker"]);
    let out = run(&all);
    let (stdout, stderr) = assert_code(&out, code);
    assert!(stderr.contains("on the docker executor"), "{stderr}");
    let left = leftovers(&run_id(&stderr));
    assert!(left.is_empty(), "left behind: {left:?}");
    (stdout, stderr)
}

#[test]
fn build_test_deploy_in_containers() {
    let (stdout, _) = run_docker(
        &[&example("build-test-deploy.yml"), "--approve", "approve", "-p", "target=prod"],
        0,
    );
    assert!(stdout.contains("deploying hello-1.4.2.tar (12 tests passed) to prod"), "{stdout}");
    assert!(stdout.contains("url=https://prod.example.com/hello"), "{stdout}");
}

#[test]
fn job_reaches_its_sidecar_by_name() {
    let (stdout, _) = run_docker(&[&example("service-test.yml")], 0);
    assert!(stdout.contains("db said: PONG from db"), "{stdout}");
}

#[test]
fn matrix_expands_to_one_container_per_combination() {
    let (stdout, _) = run_docker(&[&example("matrix.yml")], 0);
    for target in ["linux-amd64", "linux-arm64", "freebsd-amd64", "plan9-386"] {
        assert!(stdout.contains(&format!("target={target}")), "{target} missing:\n{stdout}");
    }
    assert!(!stdout.contains("freebsd-arm64"), "excluded combination ran:\n{stdout}");
    assert!(stdout.contains("every target tested"), "{stdout}");
}

#[test]
fn failing_job_triggers_cleanup_job() {
    let (stdout, stderr) = run_docker(&[&example("cleanup-on-failure.yml")], 1);
    assert!(stdout.contains("assertion failed: expected 200, got 500"), "{stdout}");
    assert!(stdout.contains("tearing down env-42 after a failure"), "{stdout}");
    assert!(!stdout.contains("never runs"), "{stdout}");
    assert!(stderr.contains("exited with code 3"), "{stderr}");
}

#[test]
fn two_projects_share_one_template() {
    let (api, _) = run_docker(&[&example("projects/api.yml")], 0);
    assert!(api.contains("testing api on port 9000"), "{api}");
    assert!(api.contains("publishing registry.local/api:latest"), "{api}");
    let (web, _) = run_docker(&[&example("projects/web.yml")], 0);
    assert!(web.contains("publishing registry.local/web:latest"), "{web}");
    assert!(!web.contains("testing web"), "tests were switched off for web:\n{web}");
}

#[test]
fn missing_image_is_a_clear_job_failure() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.yml");
    std::fs::write(&file, "name: missing\nstages:\n  - name: s\n    jobs:\n      j:\n        image: kiln-test/does-not-exist:1\n        script: echo hi\n").unwrap();
    let (stdout, stderr) = run_docker(&[&file.display().to_string()], 1);
    assert!(stderr.contains("kiln-test/does-not-exist:1"), "{stdout}{stderr}");
}

#[test]
fn ctrl_c_cancels_and_removes_everything() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.yml");
    std::fs::write(
        &file,
        "name: long\nstages:\n  - name: s\n    jobs:\n      long:\n        image: busybox\n        services:\n          - { name: db, image: busybox, command: [sleep, '300'] }\n        script:\n          - echo started\n          - sleep 300\n",
    )
    .unwrap();
    let mut child = kiln()
        .args(["run", &file.display().to_string(), "--executor", "docker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let id = run_id(&first);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = stdout.lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("started") => break,
            Some(_) => assert!(Instant::now() < deadline, "job never started"),
            None => panic!("kiln exited before the job started"),
        }
    }
    assert!(!leftovers(&id).is_empty(), "the job's containers should exist while it runs");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:?}");
}

#[test]
fn script_lines_are_echoed_and_stderr_keeps_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = run_docker(&[&crate::support::interleaved(dir.path())], 1);
    crate::support::assert_interleaved(&stdout);
}
