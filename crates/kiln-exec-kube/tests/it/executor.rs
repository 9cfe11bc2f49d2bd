//! Behaviour beyond the conformance suite: OOM kills, exec beside the job, destroy from a
//! fresh executor, a pod deleted outside Kiln.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kiln_exec::conformance::unique_id;
use kiln_exec::{Executor, Limits, LogStream, TaskSpec};
use kiln_exec_kube::KubeExecutor;
use kube::Api;
use kube::api::DeleteParams;

use crate::{IMAGE, NAMESPACE, executor, fake};

fn task(name: &str, lines: &[&str]) -> TaskSpec {
    let mut task = kiln_exec::conformance::script_task(&unique_id(name), lines);
    task.image = Some(IMAGE.to_string());
    task
}

/// Sets up and starts `task`, and reads its log until the line `started`.
async fn started(executor: &KubeExecutor, task: &TaskSpec) -> LogStream {
    executor.setup(task).await.expect("setup");
    let mut stream = executor.start(task).await.expect("start");
    loop {
        match stream.next().await {
            Some(Ok(line)) if line.text == "started" => return stream,
            Some(Ok(_)) => {}
            other => panic!("no `started` line: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_by_the_oom_killer_says_so() {
    let fake = fake().await;
    let executor = executor(&fake, "oom").await;
    // `tail` keeps its whole last line: one without end fills any memory.
    let mut task = task("oom", &["echo started", "tail /dev/zero"]);
    task.limits = Limits { memory_bytes: Some(16 * 1024 * 1024), ..Default::default() };
    let _stream = started(&executor, &task).await;
    let status = executor.wait(&task.id).await.expect("wait");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!(status.killed, Some(kiln_exec::Killed::OutOfMemory), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_beside_the_job_and_kill_is_no_outside_kill() {
    let fake = fake().await;
    let executor = executor(&fake, "exec").await;
    let task = task("exec", &["echo started", "echo ready > /workspace/ready", "sleep 300"]);
    let _stream = started(&executor, &task).await;
    let argv = ["sh", "-c", "test -f /workspace/ready && exit 4"].map(str::to_string);
    let status = executor.exec(&task.id, &argv).await.expect("exec");
    assert_eq!(status.code, 4);
    executor.kill(&task.id).await.expect("kill");
    let status = executor.wait(&task.id).await.expect("wait");
    assert_eq!((status.code, status.killed), (137, None));
    executor.destroy(&task.id).await.expect("destroy");
    assert!(executor.leftovers(&task.id).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_executor_destroys_a_task_by_id() {
    let fake = fake().await;
    let first = executor(&fake, "fresh-1").await;
    let task = task("fresh", &["echo started", "sleep 300"]);
    let _stream = started(&first, &task).await;
    drop(first);
    let second = executor(&fake, "fresh-2").await;
    assert_eq!(second.leftovers(&task.id).await.expect("list").len(), 1);
    second.destroy(&task.id).await.expect("destroy from a fresh executor");
    assert!(second.leftovers(&task.id).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_outside_kiln_fails_the_wait_saying_so() {
    let fake = fake().await;
    let executor = executor(&fake, "outside").await;
    let task = task("outside", &["echo started", "sleep 300"]);
    let _stream = started(&executor, &task).await;
    let client = kube::Client::try_from(fake.client_config(NAMESPACE)).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    pods.delete(&format!("kiln-{}", task.id), &DeleteParams::default().grace_period(0))
        .await
        .expect("kubectl delete pod");
    let err = executor.wait(&task.id).await.expect_err("the pod is gone");
    assert!(err.to_string().contains("deleted outside Kiln"), "{err}");
    executor.destroy(&task.id).await.expect("destroy");
}
