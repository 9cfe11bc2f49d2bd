//! Every example run by `kiln run --executor kubernetes` as pods on the FAKE Kubernetes API
//! server of `kiln_exec_kube::fake` (its pods run on the Docker engine), and `kill -9` of a
//! `kiln agent --executor kubernetes` whose pod is swept when it starts again. No live
//! cluster is involved.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_client::Client;
use kiln_exec_kube::fake::FakeApi;

use crate::support::{example, kiln, require_docker};

const NAMESPACE: &str = "kiln-e2e";

/// A kubeconfig for `fake` with namespace [`NAMESPACE`], written in `dir`.
fn kubeconfig(dir: &Path, fake: &FakeApi) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
         users:\n- name: kiln\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n\
         \x20   user: kiln\n    namespace: {NAMESPACE}\ncurrent-context: fake\n",
        fake.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn start_fake() -> FakeApi {
    require_docker();
    FakeApi::start().await.expect("the fake API server starts")
}

/// `kiln run ARGS --executor kubernetes` against the fake: exit code, stdout, stderr.
async fn run_kube(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::from(kiln());
    cmd.arg("run").args(args).args(["--executor", "kubernetes"]).env("KUBECONFIG", config);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("kiln run ends within 5 minutes")
        .expect("kiln runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_as_pods_on_the_fake_api_server() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake);
    let cases: &[(&[&str], i32, &[&str])] = &[
        (
            &["build-test-deploy.yml", "--approve", "approve", "-p", "target=prod"],
            0,
            &[
                "deploying hello-1.4.2.tar (12 tests passed) to prod",
                "url=https://prod.example.com/hello",
            ],
        ),
        (&["service-test.yml"], 0, &["db said: PONG from db"]),
        (&["matrix.yml"], 0, &["target=linux-amd64", "target=plan9-386", "every target tested"]),
        (
            &["cleanup-on-failure.yml"],
            1,
            &["assertion failed: expected 200, got 500", "tearing down env-42 after a failure"],
        ),
        (
            &["projects/api.yml"],
            0,
            &["testing api on port 9000", "publishing registry.local/api:latest"],
        ),
        (&["projects/web.yml"], 0, &["publishing registry.local/web:latest"]),
    ];
    for (args, code, expected) in cases {
        let file = example(args[0]);
        let mut all = vec![file.as_str()];
        all.extend_from_slice(&args[1..]);
        let (got, stdout, stderr) = run_kube(&config, &all).await;
        assert_eq!(got, Some(*code), "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stderr.contains("on the kubernetes executor"), "{stderr}");
        for line in *expected {
            assert!(stdout.contains(line), "{args:?}: {line:?} missing\n{stdout}\n{stderr}");
        }
        assert!(fake.pod_names(NAMESPACE).is_empty(), "{args:?} left pods behind");
    }
    fake.shutdown().await;
}

/// A `kiln agent --executor kubernetes` child process, killed when dropped.
struct Agent(std::process::Child);

impl Agent {
    fn start(url: &str, token: &str, config: &Path, log: &Path) -> Agent {
        let child = kiln()
            .args(["agent", "--server", url, "--name", "k8s-1", "--executor", "kubernetes"])
            .env("KILN_TOKEN", token)
            .env("KUBECONFIG", config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("kiln agent starts");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to a minute for `ok` over the fake's pods.
async fn until_pods(fake: &FakeApi, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let pods = fake.pod_names(NAMESPACE);
        if ok(&pods) {
            return pods;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{what}: pods {pods:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_killed_agent_are_swept_when_it_starts_again() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake);
    let data = dir.path().join("data");
    let flags = ["--listen", "127.0.0.1:0", "--capacity", "0", "--agent-lost-after", "5s"];
    let server = crate::recovery::ServerProc::launch(&data, &flags);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let client = Client::new(&server.url, &admin).unwrap();
    let req = kiln_api::CreateToken { name: "agents".into(), role: "agent".into(), project: None };
    let token = client.create_token(&req).await.unwrap().secret;
    client.create_project("shop").await.unwrap();
    let yaml = "name: long\nstages:\n  - name: s\n    jobs:\n      long:\n        image: busybox\n        \
                script:\n          - echo started\n          - sleep 300\n";
    let body =
        kiln_api::ApplyPipeline { yaml: yaml.to_string(), file: None, files: Default::default() };
    client.apply_pipeline("shop", "long", &body).await.unwrap();

    let mut agent = Agent::start(&server.url, &token, &config, &dir.path().join("agent-1.log"));
    client.trigger("shop", "long", &Default::default()).await.unwrap();
    let pods = until_pods(&fake, "the job's pod runs", |p| p.len() == 1).await;

    // kill -9: the pod outlives the agent.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    assert_eq!(fake.pod_names(NAMESPACE), pods, "the pod outlives the agent");
    let log = dir.path().join("agent-2.log");
    let _agent = Agent::start(&server.url, &token, &config, &log);
    until_pods(&fake, "the sweep deletes the orphan", |p| !p.contains(&pods[0])).await;
    // The agent says so once the deletions are done: the line may follow the pod's end.
    let want = "removed 1 pod(s) left by an earlier run of agent `k8s-1` in namespace kiln-e2e";
    let started = Instant::now();
    loop {
        let said = std::fs::read_to_string(&log).unwrap();
        if said.contains(want) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the agent says so: {said}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_no_node_takes_shows_the_schedulers_reason_as_the_jobs_waiting_reason() {
    let fake = start_fake().await;
    fake.set_unschedulable(true);
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake);
    let data = dir.path().join("data");
    let flags = ["--listen", "127.0.0.1:0", "--capacity", "0"];
    let server = crate::recovery::ServerProc::launch(&data, &flags);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let client = Client::new(&server.url, &admin).unwrap();
    let req = kiln_api::CreateToken { name: "agents".into(), role: "agent".into(), project: None };
    let token = client.create_token(&req).await.unwrap().secret;
    client.create_project("shop").await.unwrap();
    let yaml = "name: stuck\nstages:\n  - name: s\n    jobs:\n      stuck:\n        image: busybox\n        \
                script:\n          - echo never\n";
    let body =
        kiln_api::ApplyPipeline { yaml: yaml.to_string(), file: None, files: Default::default() };
    client.apply_pipeline("shop", "stuck", &body).await.unwrap();
    let _agent = Agent::start(&server.url, &token, &config, &dir.path().join("agent.log"));
    let run = client.trigger("shop", "stuck", &Default::default()).await.unwrap();
    let started = Instant::now();
    let waiting = loop {
        let detail = client.run(&run.id).await.unwrap();
        let job = &detail.jobs[0];
        if let Some(why) = job.waiting.as_deref().filter(|w| w.contains("Unschedulable")) {
            assert_eq!(job.state, "queued", "not started while its pod waits");
            break why.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no waiting reason: {job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(waiting.contains("placed on k8s-1, not started"), "{waiting}");
    assert!(waiting.contains("0/1 nodes are available: 1 Insufficient cpu."), "{waiting}");
    // A node frees up: the job runs, and the reason goes.
    fake.set_unschedulable(false);
    loop {
        let detail = client.run(&run.id).await.unwrap();
        if detail.run.state == "success" {
            assert_eq!(detail.jobs[0].waiting, None);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run ends: {detail:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fake.shutdown().await;
}
