//! What the executor does when the cluster misbehaves, as the fake API server plays it: a
//! pod that never schedules, an image that cannot be pulled, an API server answering 429
//! and 500 for a while, watches reset with 410 Gone, log reads cut off, pods left by an
//! agent that died, and a start without access.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kiln_exec::conformance::{run_task, unique_id};
use kiln_exec::{ExecError, Executor, RegistryAuth, TaskSpec};
use kiln_exec_kube::fake::FakeApi;
use kiln_exec_kube::{ConnectError, KubeConfig, KubeExecutor};
use kube::Api;
use kube::api::PostParams;

use crate::{IMAGE, NAMESPACE, config, executor, fake};

fn task(name: &str, lines: &[&str]) -> TaskSpec {
    let mut task = kiln_exec::conformance::script_task(&unique_id(name), lines);
    task.image = Some(IMAGE.to_string());
    task
}

/// How many recorded requests contain `needle` and were answered with `code`.
fn answered(fake: &FakeApi, needle: &str, code: u16) -> usize {
    let suffix = format!("-> {code}");
    fake.requests().iter().filter(|r| r.contains(needle) && r.ends_with(&suffix)).count()
}

async fn assert_clean(executor: &KubeExecutor, task: &TaskSpec) {
    let left = executor.leftovers(&task.id).await.expect("listing leftovers");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_schedules_fails_setup_with_the_schedulers_reason() {
    let fake = fake().await;
    fake.set_unschedulable(true);
    let executor = KubeExecutor::connect(KubeConfig {
        startup_timeout: Duration::from_secs(2),
        ..config(&fake, "unschedulable")
    })
    .await
    .expect("connect");
    let task = task("unschedulable", &["echo never"]);
    match executor.setup(&task).await {
        Err(ExecError::Engine(message)) => {
            assert!(message.contains("did not start within 2s"), "{message}");
            assert!(message.contains("Unschedulable"), "{message}");
            assert!(message.contains("0/1 nodes are available"), "{message}");
        }
        other => panic!("expected an Engine error, got {other:?}"),
    }
    executor.destroy(&task.id).await.expect("destroy");
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_selector_no_node_matches_leaves_the_pod_unschedulable() {
    let fake = fake().await;
    let executor = KubeExecutor::connect(KubeConfig {
        startup_timeout: Duration::from_secs(2),
        node_selector: BTreeMap::from([("pool".to_string(), "gpu".to_string())]),
        ..config(&fake, "selector")
    })
    .await
    .expect("connect");
    let task = task("selector", &["echo never"]);
    let err = executor.setup(&task).await.expect_err("no node has pool=gpu");
    assert!(err.to_string().contains("didn't match Pod's node affinity/selector"), "{err}");
    executor.destroy(&task.id).await.expect("destroy");
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pull_failure_is_image_not_found_with_the_kubelet_reason() {
    let fake = fake().await;
    let executor = executor(&fake, "pull").await;
    let mut task = task("pull", &["echo never"]);
    let image = "registry.example:5000/team/app:1".to_string();
    task.image = Some(image.clone());
    fake.fail_image(&image);
    match executor.setup(&task).await {
        Err(ExecError::ImageNotFound { image: got, detail }) => {
            assert_eq!(got, image);
            assert!(
                detail.contains("ErrImagePull") || detail.contains("ImagePullBackOff"),
                "{detail}"
            );
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    executor.destroy(&task.id).await.expect("destroy");
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_answering_429_and_500_for_a_while_is_waited_out() {
    let fake = fake().await;
    let executor = executor(&fake, "throttled").await;
    let task = task("throttled", &["echo one", "sleep 0.3", "echo two"]);
    fake.fail_next(429, 2);
    fake.fail_next(500, 3);
    fake.fail_next(503, 1);
    let run = run_task(&executor, &task).await.expect("the task runs through the faults");
    assert_eq!(run.stdout(), ["one", "two"]);
    assert!(run.status.success());
    assert_eq!(answered(&fake, "", 429), 2, "{:#?}", fake.requests());
    assert_eq!(answered(&fake, "", 500), 3, "{:#?}", fake.requests());
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_reset_with_410_is_followed_by_a_fresh_read() {
    let fake = fake().await;
    let executor = executor(&fake, "gone").await;
    let task = task("gone", &["echo start", "sleep 1", "echo end"]);
    fake.expire_next_watches(3);
    let run = run_task(&executor, &task).await.expect("the task runs through the resets");
    assert_eq!(run.stdout(), ["start", "end"]);
    let watches = fake.requests().iter().filter(|r| r.contains("watch=true")).count();
    assert!(watches >= 4, "three expired watches and at least one more: {:#?}", fake.requests());
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_reads_cut_off_resume_without_losing_or_repeating_lines() {
    let fake = fake().await;
    let executor = executor(&fake, "cut").await;
    let mut lines: Vec<String> = Vec::new();
    for i in 0..40 {
        lines.push(format!("echo line-{i:02}"));
        if i % 4 == 3 {
            lines.push("sleep 0.1".to_string());
        }
    }
    let script: Vec<&str> = lines.iter().map(String::as_str).collect();
    let task = task("cut", &script);
    fake.drop_log_reads(5, 6);
    let run = run_task(&executor, &task).await.expect("the task runs");
    let expected: Vec<String> = (0..40).map(|i| format!("line-{i:02}")).collect();
    assert_eq!(run.stdout(), expected);
    assert!(
        fake.requests().iter().filter(|r| r.contains("/log?")).count() >= 4,
        "the log was re-opened: {:#?}",
        fake.requests()
    );
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_left_by_a_dead_agent_are_swept_when_it_starts_again() {
    let fake = fake().await;
    // The first incarnation starts a long task and dies without cleaning up (`kill -9`).
    let first = executor(&fake, "agent-7").await;
    let task = task("orphan", &["sleep 300"]);
    first.setup(&task).await.expect("setup");
    let _ = first.start(&task).await.expect("start");
    let mut pulled = task.clone();
    pulled.id = kiln_exec::TaskId::sanitized(&unique_id("orphan-secret"));
    let image = "127.0.0.1:7171/shop/busybox:latest";
    fake.tag_image(crate::IMAGE, image).await.expect("tag");
    pulled.image = Some(image.to_string());
    pulled.pull_auth = Some(RegistryAuth {
        registry: "127.0.0.1:7171".to_string(),
        username: "kiln".to_string(),
        password: "token".to_string(),
    });
    first.setup(&pulled).await.expect("setup with a pull secret");
    assert_eq!(first.leftovers(&pulled.id).await.expect("list").len(), 2, "pod and secret");
    drop(first);
    // Another agent's pod must survive the sweep.
    let other = executor(&fake, "agent-8").await;
    let theirs = crate::faults::task("theirs", &["sleep 300"]);
    other.setup(&theirs).await.expect("setup of the other agent's task");

    let second = executor(&fake, "agent-7").await;
    assert_eq!(second.swept(), 2);
    assert!(second.leftovers(&task.id).await.expect("list").is_empty());
    assert!(
        second.leftovers(&pulled.id).await.expect("list").is_empty(),
        "the pull secret went too"
    );
    assert_eq!(other.leftovers(&theirs.id).await.expect("list").len(), 1);
    other.destroy(&theirs.id).await.expect("destroy");
    assert!(fake.pod_names(NAMESPACE).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_answers_conflicts_and_invalid_objects_as_a_real_api_server() {
    let fake = fake().await;
    let client = kube::Client::try_from(fake.client_config(NAMESPACE)).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shapes"},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "30"]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create");
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists"));
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let mut bad = pod.clone();
    bad.metadata.name = Some("Not_Valid".to_string());
    match pods.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
            assert!(status.message.contains("metadata.name"), "{}", status.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
    match pods.get("missing").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("expected 404, got {other:?}"),
    }
    fake.shutdown().await;
    assert!(fake.pod_names(NAMESPACE).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_access_or_server_fails_in_seconds_with_one_line() {
    let fake = fake().await;
    fake.set_forbidden(true);
    let started = Instant::now();
    match KubeExecutor::connect(config(&fake, "forbidden")).await {
        Err(e @ ConnectError::Refused { .. }) => {
            let line = e.to_string();
            assert!(line.contains("forbidden"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // Nothing listens on port 9 of loopback.
    let nowhere = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let started = Instant::now();
    match KubeExecutor::connect(KubeConfig { client: Some(nowhere), ..KubeConfig::default() }).await
    {
        Err(e @ ConnectError::Unreachable { .. }) => assert!(!e.to_string().contains('\n'), "{e}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_does_not_split_log_streams_gives_each_line_once() {
    let fake = fake().await;
    fake.set_unsplit_logs(true);
    let executor = executor(&fake, "unsplit").await;
    // Sleeps between streams: the engine stamps stdout and stderr lines in two threads.
    let task = task(
        "unsplit",
        &[
            "echo one",
            "sleep 0.2",
            "echo two >&2",
            "sleep 0.2",
            "echo three",
            "sleep 0.2",
            "echo four >&2",
        ],
    );
    let run = run_task(&executor, &task).await.expect("the task runs");
    let texts: Vec<&str> = run.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three", "four"], "{run:?}");
    assert_clean(&executor, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_removes_the_containers_of_fakes_whose_process_is_gone() {
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").args(args).output().expect("docker CLI");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let name = format!("kfake-stale-{}", std::process::id());
    // 4194305 is above Linux's largest pid: that process never exists.
    let id =
        docker(&["create", "--label", "kfake.instance=4194305-1", "--name", &name, IMAGE, "true"]);
    assert!(!id.is_empty(), "docker create failed");
    let _fake = fake().await;
    let left = docker(&["ps", "-aq", "--filter", &format!("name={name}")]);
    assert_eq!(left, "", "the stale container is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_reply_was_lost_is_retried_and_the_pod_taken_as_its_own() {
    let fake = fake().await;
    let executor = executor(&fake, "lost").await;
    let task = task("lost", &["echo once"]);
    fake.lose_create_replies(1);
    let run = run_task(&executor, &task).await.expect("the task runs");
    assert_eq!(run.stdout(), ["once"]);
    assert_eq!(answered(&fake, "POST /api/v1/namespaces/kiln-ci/pods", 500), 1);
    assert_eq!(answered(&fake, "POST /api/v1/namespaces/kiln-ci/pods", 409), 1);
    assert_clean(&executor, &task).await;
}
