//! Where pods go, as the fake API server's scheduler plays it: the reason a pod that no node
//! takes waits for (the job's waiting reason), constraints turned into node selectors and
//! node affinity (a pod lands only on a node that matches, and only once one does), the
//! refusal of constraints that do not translate, ports as container ports, and pull secrets
//! made only for images on Kiln's registry.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln_exec::conformance::{run_task, unique_id};
use kiln_exec::{ConstraintTest, ExecError, Executor, PortMap, RegistryAuth, TaskSpec};
use kiln_exec_kube::fake::{FakeApi, fake_node};
use kiln_exec_kube::{KubeConfig, KubeExecutor};
use kube::Api;

use crate::{IMAGE, NAMESPACE, config, executor, fake};

fn task(name: &str, lines: &[&str]) -> TaskSpec {
    let mut task = kiln_exec::conformance::script_task(&unique_id(name), lines);
    task.image = Some(IMAGE.to_string());
    task
}

fn test(attribute: &str, operator: &str, value: Option<&str>) -> ConstraintTest {
    ConstraintTest {
        attribute: attribute.to_string(),
        operator: operator.to_string(),
        value: value.map(str::to_string),
    }
}

fn pods(fake: &FakeApi) -> Api<Pod> {
    let client = kube::Client::try_from(fake.client_config(NAMESPACE)).expect("client");
    Api::namespaced(client, NAMESPACE)
}

/// Three nodes shaped as a small real cluster's: two 4-CPU SSD nodes in zones a and b, one
/// 2-CPU HDD node in zone c.
fn three_nodes(fake: &FakeApi) {
    fake.set_nodes(vec![
        fake_node("node-a", &[("disktype", "ssd"), ("zone", "a")], "3920m", "15167428Ki"),
        fake_node("node-b", &[("disktype", "ssd"), ("zone", "b")], "3920m", "15167428Ki"),
        fake_node("node-c", &[("disktype", "hdd"), ("zone", "c")], "1930m", "7869548Ki"),
    ]);
}

/// Polls `executor.waiting(id)` until it says something (setup runs meanwhile).
async fn waiting_reason(executor: &KubeExecutor, id: &kiln_exec::TaskId) -> String {
    for _ in 0..200 {
        if let Some(why) = executor.waiting(id) {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no waiting reason for {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_too_big_for_every_node_waits_with_the_schedulers_reason_then_fails_naming_it() {
    let fake = fake().await;
    three_nodes(&fake);
    let executor = KubeExecutor::connect(KubeConfig {
        startup_timeout: Duration::from_secs(4),
        ..config(&fake, "too-big")
    })
    .await
    .expect("connect");
    let mut task = task("too-big", &["echo never"]);
    task.limits.cpu_millis = Some(8000);
    let setup = tokio::spawn({
        let (executor, task) = (executor.clone(), task.clone());
        async move { executor.setup(&task).await }
    });
    let why = waiting_reason(&executor, &task.id).await;
    assert!(
        why.starts_with("Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."),
        "{why}"
    );
    let err = setup.await.expect("joined").expect_err("no node has 8 CPUs");
    let message = err.to_string();
    assert!(message.contains("did not start within 4s"), "{message}");
    assert!(message.contains("0/3 nodes are available: 3 Insufficient cpu."), "{message}");
    assert_eq!(executor.waiting(&task.id), None, "the reason goes with the setup");
    executor.destroy(&task.id).await.expect("destroy");
    assert!(executor.leftovers(&task.id).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_place_the_pod_on_a_matching_node_only() {
    let fake = fake().await;
    three_nodes(&fake);
    let executor = executor(&fake, "placed").await;
    // Equality: the node selector.
    let mut task = task("ssd-b", &["echo on $(hostname)"]);
    task.constraints =
        vec![vec![test("disktype", "LIKE", Some("ssd"))], vec![test("zone", "UNLIKE", Some("a"))]];
    let run = run_task(&executor, &task).await.expect("runs");
    assert_eq!(run.status.code, 0, "{:?}", run.lines);
    // The pod was bound to node-b, the only SSD node outside zone a (read before destroy:
    // run_task destroys it, so set it up again and look).
    executor.setup(&task).await.expect("setup again");
    let pod = pods(&fake).get(&format!("kiln-{}", task.id)).await.expect("pod");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("node-b"));
    assert_eq!(spec.node_selector.expect("selector")["disktype"], "ssd");
    let terms = spec.affinity.expect("affinity").node_affinity.expect("node affinity");
    let expr = &terms
        .required_during_scheduling_ignored_during_execution
        .expect("required")
        .node_selector_terms[0]
        .match_expressions
        .clone()
        .expect("expressions")[0];
    assert_eq!((expr.key.as_str(), expr.operator.as_str()), ("zone", "NotIn"));
    executor.destroy(&task.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_no_node_matches_waits_until_a_matching_node_joins() {
    let fake = fake().await;
    three_nodes(&fake);
    let executor = executor(&fake, "joins").await;
    let mut task = task("gpu", &["echo landed"]);
    task.constraints =
        vec![vec![test("gpu", "EXISTS", None)], vec![test("zone", "LIKE", Some("a|d"))]];
    let setup = tokio::spawn({
        let (executor, task) = (executor.clone(), task.clone());
        async move { executor.setup(&task).await }
    });
    let why = waiting_reason(&executor, &task.id).await;
    assert!(
        why.contains(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{why}"
    );
    let pod = pods(&fake).get(&format!("kiln-{}", task.id)).await.expect("pod");
    assert_eq!(pod.spec.and_then(|s| s.node_name), None, "not bound while no node matches");
    // A node in zone a without a GPU does not do; one in zone d with a GPU does.
    fake.set_nodes(vec![
        fake_node("node-a", &[("zone", "a")], "4", "16Gi"),
        fake_node("gpu-d", &[("zone", "d"), ("gpu", "nvidia-l4")], "8", "32Gi"),
    ]);
    setup.await.expect("joined").expect("the pod starts on gpu-d");
    let pod = pods(&fake).get(&format!("kiln-{}", task.id)).await.expect("pod");
    assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("gpu-d"));
    assert_eq!(executor.waiting(&task.id), None);
    executor.destroy(&task.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_that_do_not_translate_are_refused_at_check_naming_them() {
    let fake = fake().await;
    let executor = KubeExecutor::connect(KubeConfig {
        node_selector: [("pool".to_string(), "ci".to_string())].into(),
        ..config(&fake, "refused")
    })
    .await
    .expect("connect");
    let cases = [
        (test("hostname", "UNIQUE", None), "[hostname, UNIQUE]", "anti-affinity"),
        (test("city", "LIKE", Some("shen.*")), "[city, LIKE, shen.*]", "regular expression"),
        (test("pool", "LIKE", Some("gpu")), "[pool, LIKE, gpu]", "--node-selector sets pool=ci"),
    ];
    for (constraint, written, why) in cases {
        let mut task = task("refused", &["echo never"]);
        task.constraints = vec![vec![constraint]];
        match executor.check(&task) {
            Err(ExecError::Unsupported { executor: "kubernetes", what }) => {
                assert!(what.contains(written), "{what}");
                assert!(what.contains(why), "{what}");
            }
            other => panic!("expected a refusal of {written}, got {other:?}"),
        }
        assert!(executor.leftovers(&task.id).await.expect("list").is_empty(), "nothing made");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_container_ports_the_job_listens_on() {
    let fake = fake().await;
    let executor = executor(&fake, "ports").await;
    let mut task =
        task("ports", &["nc -l -p 8080 -e echo hello & sleep 0.3", "nc 127.0.0.1 8080 </dev/null"]);
    task.ports.push(PortMap { host: 31005, container: 8080 });
    executor.check(&task).expect("ports translate");
    executor.setup(&task).await.expect("setup");
    let pod = pods(&fake).get(&format!("kiln-{}", task.id)).await.expect("pod");
    let ports = pod.spec.expect("spec").containers[0].ports.clone().expect("ports");
    assert_eq!(ports[0].container_port, 8080);
    assert_eq!(ports[0].host_port, None);
    executor.destroy(&task.id).await.expect("destroy");
    let run = run_task(&executor, &task).await.expect("runs");
    let texts: Vec<&str> = run.lines.iter().map(|l| l.text.as_str()).collect();
    assert!(texts.contains(&"hello"), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_secret_is_made_only_for_an_image_on_kilns_registry() {
    let fake = fake().await;
    let executor = executor(&fake, "pull-secret").await;
    let auth = RegistryAuth {
        registry: "127.0.0.1:7171".to_string(),
        username: "kiln".to_string(),
        password: "token".to_string(),
    };
    // An image elsewhere: no secret.
    let mut task = task("elsewhere", &["echo ok"]);
    task.pull_auth = Some(auth.clone());
    executor.setup(&task).await.expect("setup");
    assert_eq!(
        executor.leftovers(&task.id).await.expect("list"),
        [format!("pod/kiln-{}", task.id)]
    );
    executor.destroy(&task.id).await.expect("destroy");
    // An image on Kiln's registry: the secret, referenced by the pod, removed with it.
    let image = "127.0.0.1:7171/shop/busybox:latest";
    fake.tag_image(IMAGE, image).await.expect("tag");
    let mut task = task_on(image);
    task.pull_auth = Some(auth);
    executor.setup(&task).await.expect("setup");
    let mut left = executor.leftovers(&task.id).await.expect("list");
    left.sort();
    assert_eq!(left, [format!("pod/kiln-{}", task.id), format!("secret/kiln-{}-pull", task.id)]);
    let pod = pods(&fake).get(&format!("kiln-{}", task.id)).await.expect("pod");
    let refs = pod.spec.expect("spec").image_pull_secrets.expect("pull secrets");
    assert_eq!(refs[0].name, format!("kiln-{}-pull", task.id));
    executor.destroy(&task.id).await.expect("destroy");
    assert!(executor.leftovers(&task.id).await.expect("list").is_empty());
}

fn task_on(image: &str) -> TaskSpec {
    let mut task = task("registry", &["echo ok"]);
    task.image = Some(image.to_string());
    task
}
