//! `kiln run` with `service-pools`: the pools' replicas start on this machine (the process
//! executor), jobs wait for them and get their exports, and they are stopped when their
//! owner ends; a pool that never gets ready fails the jobs with its reason; an executor
//! that can not run them is refused before anything runs, with the position.

use std::path::Path;

use crate::support::{assert_code, kiln};

/// A workflow with a run pool of 2 python3 HTTP servers and a job pool of 1, each exporting
/// the URLs of `hello.txt` (served from `dir`).
fn workflow(dir: &Path) -> String {
    let pool = |replicas: u32, export: &str, indent: &str| {
        let text = format!(
            r#"service-pools:
  web:
    service:
      command: [python3, -m, http.server, --bind, 127.0.0.1, --directory, "{dir}", "$(KILN_PORT_WEB)"]
      replicas: {replicas}
      ports: [{{ name: web, container: 8080 }}]
      health: {{ http: {{ port: web, path: /hello.txt }}, interval: 100ms, grace: 20s }}
    timeout: 2m
    export:
      {export}
"#,
            dir = dir.display()
        );
        text.lines().map(|l| format!("{indent}{l}\n")).collect::<String>()
    };
    let urls = r#"URLS: "{% for i in instances %}http://{{ i.ip }}:{{ i.ports.web }}/hello.txt {% endfor %}""#;
    let one = r#"ONE: "http://{{ instances[0].ip }}:{{ instances[0].ports.web }}/hello.txt""#;
    format!(
        r#"name: local pools
{run_pool}stages:
  - name: s
    jobs:
      fetch:
        script:
          - for u in $URLS; do echo "url $u"; python3 -c "import sys, urllib.request; print('got', urllib.request.urlopen(sys.argv[1]).read().decode().strip())" "$u"; done
          - echo "one $ONE"
          - python3 -c "import sys, urllib.request; print('job pool', urllib.request.urlopen(sys.argv[1]).read().decode().strip())" "$ONE"
{job_pool}"#,
        run_pool = pool(2, urls, ""),
        job_pool = pool(1, one, "        "),
    )
}

/// The ports of the URLs a job printed after `prefix`.
fn ports(stdout: &str, prefix: &str) -> Vec<u16> {
    stdout
        .lines()
        .filter_map(|l| l.split(prefix).nth(1))
        .filter_map(|u| u.rsplit(':').next()?.split('/').next()?.parse().ok())
        .collect()
}

#[test]
fn pools_start_here_serve_the_jobs_and_stop_with_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let file = dir.path().join("pools.yml");
    std::fs::write(&file, workflow(dir.path())).unwrap();
    let out =
        kiln().args(["run", file.to_str().unwrap(), "--executor", "process"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 0);
    assert!(stderr.contains("`service-pools:` start on this machine"), "{stderr}");
    let run_ports = ports(&stdout, "url http://127.0.0.1:");
    assert_eq!(run_ports.len(), 2, "two replicas: {stdout}");
    assert_ne!(run_ports[0], run_ports[1], "{stdout}");
    assert_eq!(stdout.matches("got hello").count(), 2, "{stdout}");
    assert!(stdout.contains("job pool hello"), "{stdout}");
    let job_port = ports(&stdout, "one http://127.0.0.1:");
    // Every replica was stopped when its owner ended.
    for port in run_ports.iter().chain(&job_port) {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still answers after the run"
        );
    }
}

#[test]
fn a_pool_that_never_gets_ready_fails_the_jobs_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.yml");
    std::fs::write(
        &file,
        "name: never\nservice-pools:\n  farm:\n    service:\n      command: [sh, -c, 'exit 3']\n      ports: [{ name: p, container: 1 }]\n      health: { tcp: p }\n    timeout: 2s\nstages:\n  - name: s\n    jobs:\n      a: { script: [echo never here] }\n",
    )
    .unwrap();
    let out =
        kiln().args(["run", file.to_str().unwrap(), "--executor", "process"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 1);
    assert!(!stdout.contains("never here"), "{stdout}");
    assert!(
        stderr.contains(
            "a failed: service pool `farm` was not ready after 2s: 0 of 1 needed instances \
             healthy: slot 0: exited with code 3"
        ),
        "{stderr}"
    );
}

#[test]
fn an_executor_that_can_not_run_pools_is_refused_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pools.yml");
    std::fs::write(&file, workflow(dir.path())).unwrap();
    let out = kiln().args(["run", file.to_str().unwrap(), "--executor", "noop"]).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    let want = format!(
        "error: {}:2:1: kiln run starts service-pools on the process executor only",
        file.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn a_pool_with_an_environment_or_config_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yml");
    let marker = dir.path().join("ran");
    std::fs::write(
        &file,
        format!(
            "name: env pool\nstages:\n  - name: s\n    jobs:\n      test:\n        script: [touch {}]\n        service-pools:\n          db:\n            service:\n              command: [sleep, '60']\n              environment: staging\n              config: {{ app: db }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out =
        kiln().args(["run", file.to_str().unwrap(), "--executor", "process"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 2);
    let want = format!(
        "error: {}:7:9: kiln run cannot give service-pools an environment's variables or \
         config: they live on a server (pool `db` of job test sets `environment: staging` and \
         `config:`)",
        file.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!stdout.contains("run "), "nothing started: {stdout}");
    assert!(!marker.exists(), "the job ran");
}
