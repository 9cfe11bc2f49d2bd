//! Docker-specific behaviour: sidecars by name, the shared workspace, limits, kill, clean-up,
//! missing images and engines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_exec::{Entry, ExecError, Executor, Limits, ServiceSpec, Stream, TaskSpec};
use kiln_exec_docker::{DockerConfig, DockerExecutor, names};

use crate::{IMAGE, executor, leftovers, read_all, run, script_task, texts, unique_id};

fn task_filter(task: &TaskSpec) -> String {
    format!("{}={}", names::LABEL_TASK, task.id)
}

fn service(name: &str, command: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.to_owned(),
        image: IMAGE.to_owned(),
        env: BTreeMap::new(),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()]),
    }
}

#[tokio::test]
async fn script_output_is_split_by_stream_with_exit_code() {
    let executor = executor().await;
    let task = script_task("streams", "echo out1; echo err1 >&2; echo out2; printf 'tail'; exit 3");
    let (lines, code) = run(&executor, &task).await.expect("run");
    assert_eq!(code, 3);
    let of = |stream| {
        lines.iter().filter(|l| l.stream == stream).map(|l| l.text.as_str()).collect::<Vec<_>>()
    };
    assert_eq!(of(Stream::Stdout), ["out1", "out2", "tail"]);
    assert_eq!(of(Stream::Stderr), ["err1"]);
    assert!(lines.windows(2).all(|w| w[0].time <= w[1].time), "times go forward");
    let age = chrono::Utc::now() - lines[0].time;
    assert!(age < chrono::Duration::minutes(5), "engine timestamps are used: {age}");
}

#[tokio::test]
async fn output_of_a_job_that_exits_at_once_is_complete() {
    let executor = executor().await;
    let task = script_task("fast", "seq 1 3000");
    let (lines, code) = run(&executor, &task).await.expect("run");
    assert_eq!(code, 0);
    let expected: Vec<String> = (1..=3000).map(|n| n.to_string()).collect();
    assert_eq!(texts(&lines), expected);
}

#[tokio::test]
async fn env_workdir_and_command_entry() {
    let executor = executor().await;
    let mut task = script_task("env", "echo \"$GREETING\"; pwd");
    task.env.insert("GREETING".to_owned(), "hello there".to_owned());
    let (lines, _) = run(&executor, &task).await.expect("run");
    assert_eq!(texts(&lines), ["hello there", "/workspace"]);

    let mut task = script_task("command", "");
    task.entry = Entry::Command {
        command: Some(vec!["echo".to_owned()]),
        args: vec!["a".to_owned(), "b c".to_owned()],
    };
    task.workdir = Some("/tmp".to_owned());
    let (lines, code) = run(&executor, &task).await.expect("run");
    assert_eq!((texts(&lines), code), (vec!["a b c"], 0));
}

#[tokio::test]
async fn a_sidecar_is_reachable_by_its_name() {
    let executor = executor().await;
    let mut task = script_task(
        "sidecar",
        "for i in $(seq 100); do out=$(nc db 5000 </dev/null) && [ -n \"$out\" ] && break; \
         sleep 0.1; done; echo \"got: $out\"",
    );
    let mut db = service("db", "echo \"$ANSWER\" | nc -l -p 5000");
    db.env.insert("ANSWER".to_owned(), "pong".to_owned());
    task.services.push(db);
    let (lines, code) = run(&executor, &task).await.expect("run");
    assert_eq!((texts(&lines), code), (vec!["got: pong"], 0));
}

#[tokio::test]
async fn the_workspace_is_shared_with_sidecars() {
    let executor = executor().await;
    let mut task = script_task(
        "workspace",
        "for i in $(seq 100); do [ -f /workspace/from-svc ] && break; sleep 0.1; done; \
         cat /workspace/from-svc",
    );
    task.services
        .push(service("writer", "echo written-by-sidecar > /workspace/from-svc; sleep 600"));
    let (lines, code) = run(&executor, &task).await.expect("run");
    assert_eq!((texts(&lines), code), (vec!["written-by-sidecar"], 0));
}

#[tokio::test]
async fn limits_show_in_the_container_config() {
    let executor = executor().await;
    let mut task = script_task("limits", "true");
    task.limits = Limits { cpu_millis: Some(500), memory_bytes: Some(64 * 1024 * 1024) };
    executor.setup(&task).await.expect("setup");
    let stream = executor.start(&task).await.expect("start");
    read_all(stream).await;
    assert_eq!(executor.wait(&task.id).await.expect("wait").code, 0);
    let inspect = executor
        .client()
        .inspect_container(&names::main_container(&task.id), None)
        .await
        .expect("inspect the main container");
    executor.destroy(&task.id).await.expect("destroy");
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
}

#[tokio::test]
async fn kill_stops_a_running_job_and_its_sidecars() {
    let executor = executor().await;
    let mut task = script_task("kill", "echo started; sleep 600");
    task.services.push(service("idle", "sleep 600"));
    executor.setup(&task).await.expect("setup");
    let mut stream = executor.start(&task).await.expect("start");
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("first line within 30 s");
    assert_eq!(first.map(|l| l.expect("line").text).as_deref(), Some("started"));

    let begun = Instant::now();
    executor.kill(&task.id).await.expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(20), executor.wait(&task.id))
        .await
        .expect("wait resolves promptly after kill")
        .expect("wait");
    assert_eq!(status.code, 137, "128 + SIGKILL");
    assert!(begun.elapsed() < Duration::from_secs(20));
    let rest = tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
        .await
        .expect("the log stream ends after kill");
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");

    let sidecar = executor
        .client()
        .inspect_container(&names::service_container(&task.id, "idle"), None)
        .await
        .expect("inspect the sidecar");
    let running = sidecar.state.and_then(|s| s.running);
    executor.kill(&task.id).await.expect("killing an ended task is Ok");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!(running, Some(false), "the sidecar was killed too");
}

/// Starts `task` and waits for its first line (the script is running).
async fn started(executor: &DockerExecutor, task: &TaskSpec) -> kiln_exec::LogStream {
    executor.setup(task).await.expect("setup");
    let mut stream = executor.start(task).await.expect("start");
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("first line within 30 s");
    assert_eq!(first.map(|l| l.expect("line").text).as_deref(), Some("started"));
    stream
}

#[tokio::test]
async fn a_container_killed_from_outside_says_so() {
    let executor = executor().await;
    let task = script_task("outside", "echo started; sleep 600");
    let _stream = started(&executor, &task).await;
    executor
        .client()
        .kill_container(&names::main_container(&task.id), None)
        .await
        .expect("docker kill");
    let status = executor.wait(&task.id).await.expect("wait");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!(status.code, 137, "128 + SIGKILL");
    assert_eq!(status.killed, Some(kiln_exec::Killed::Signal(9)));
    assert_eq!(status.killed.unwrap().to_string(), "killed by SIGKILL from outside Kiln");
}

#[tokio::test]
async fn a_container_killed_by_the_oom_killer_says_so() {
    let executor = executor().await;
    // `tail` keeps its whole last line: one without end fills any memory.
    let mut task = script_task("oom", "echo started; tail /dev/zero");
    task.limits = Limits { memory_bytes: Some(16 * 1024 * 1024), ..Default::default() };
    let _stream = started(&executor, &task).await;
    let status = executor.wait(&task.id).await.expect("wait");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!(status.killed, Some(kiln_exec::Killed::OutOfMemory), "{status:?}");
    assert!(status.killed.unwrap().to_string().contains("out-of-memory killer"));
}

#[tokio::test]
async fn a_job_killed_by_kiln_or_failing_by_itself_is_no_outside_kill() {
    let executor = executor().await;
    let task = script_task("ours", "echo started; sleep 600");
    let _stream = started(&executor, &task).await;
    executor.kill(&task.id).await.expect("kill");
    let status = executor.wait(&task.id).await.expect("wait");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!((status.code, status.killed), (137, None));

    let task = script_task("exit1", "exit 1");
    executor.setup(&task).await.expect("setup");
    let _stream = executor.start(&task).await.expect("start");
    let status = executor.wait(&task.id).await.expect("wait");
    executor.destroy(&task.id).await.expect("destroy");
    assert_eq!((status.code, status.killed), (1, None));
}

#[tokio::test]
async fn destroy_leaves_nothing_and_is_idempotent() {
    let executor = executor().await;
    let mut task = script_task("leftovers", "echo hi > /workspace/file");
    task.services.push(service("idle", "sleep 600"));
    let (_, code) = run(&executor, &task).await.expect("run");
    assert_eq!(code, 0);
    assert_eq!(leftovers(&executor, &task_filter(&task)).await, Vec::<String>::new());
    executor.destroy(&task.id).await.expect("second destroy");
    executor.destroy(&unique_id("never-set-up")).await.expect("destroy of an unknown id");
}

#[tokio::test]
async fn a_fresh_executor_can_destroy_a_task_by_id() {
    let first = executor().await;
    let mut task = script_task("fresh", "sleep 600");
    task.services.push(service("idle", "sleep 600"));
    first.setup(&task).await.expect("setup");
    let _stream = first.start(&task).await.expect("start");
    assert!(!leftovers(&first, &task_filter(&task)).await.is_empty());
    drop(first);

    let second = executor().await;
    second.destroy(&task.id).await.expect("destroy from a fresh executor");
    assert_eq!(leftovers(&second, &task_filter(&task)).await, Vec::<String>::new());
}

#[tokio::test]
async fn cleanup_labelled_removes_every_task_carrying_the_label() {
    let executor = executor().await;
    let mark = unique_id("mark").to_string();
    let mut tasks = Vec::new();
    for name in ["cleanup-a", "cleanup-b"] {
        let mut task = script_task(name, "sleep 600");
        task.labels.insert("kiln.test-batch".to_owned(), mark.clone());
        task.services.push(service("idle", "sleep 600"));
        executor.setup(&task).await.expect("setup");
        let _ = executor.start(&task).await.expect("start");
        tasks.push(task);
    }
    let filter = format!("kiln.test-batch={mark}");
    let removed = executor.cleanup_labelled("kiln.test-batch", &mark).await.expect("cleanup");
    assert_eq!((removed.containers, removed.networks, removed.volumes), (4, 2, 2));
    assert_eq!(leftovers(&executor, &filter).await, Vec::<String>::new());
    for task in &tasks {
        executor.destroy(&task.id).await.expect("destroy after cleanup");
    }
}

#[tokio::test]
async fn a_missing_image_is_image_not_found() {
    let executor = executor().await;
    let mut task = script_task("missing", "true");
    let image = "127.0.0.1:1/kiln-missing:latest";
    task.image = Some(image.to_owned());
    let result = executor.setup(&task).await;
    executor.destroy(&task.id).await.expect("destroy after a failed setup");
    match result {
        Err(ExecError::ImageNotFound { image: got, detail }) => {
            assert_eq!(got, image);
            assert!(!detail.is_empty() && !detail.contains('\n'), "one line: {detail:?}");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert_eq!(leftovers(&executor, &task_filter(&task)).await, Vec::<String>::new());
}

#[tokio::test]
async fn calls_for_tasks_never_set_up_are_unknown_task() {
    let executor = executor().await;
    let task = script_task("unknown", "true");
    assert!(matches!(executor.start(&task).await, Err(ExecError::UnknownTask(_))));
    assert!(matches!(executor.wait(&task.id).await, Err(ExecError::UnknownTask(_))));
    assert!(matches!(executor.kill(&task.id).await, Err(ExecError::UnknownTask(_))));
}

#[tokio::test]
async fn check_rejects_what_docker_cannot_run() {
    let executor = executor().await;
    let mut task = script_task("check", "true");
    executor.check(&task).expect("a plain task is fine");
    task.services.push(service("not_a_host", "true"));
    assert!(matches!(executor.check(&task), Err(ExecError::Unsupported { .. })));
    task.services.clear();
    task.image = None;
    assert!(matches!(executor.check(&task), Err(ExecError::Unsupported { .. })));
    assert!(matches!(executor.setup(&task).await, Err(ExecError::Unsupported { .. })));
}

#[tokio::test]
async fn connect_negotiates_an_api_version_the_engine_speaks() {
    let executor = executor().await;
    let version = executor.client().version().await.expect("version");
    let server = version.api_version.expect("the engine names its API version");
    assert_eq!(executor.api_version(), server.trim_start_matches('v'));
}

#[tokio::test]
async fn no_engine_is_one_clear_line() {
    let config = DockerConfig {
        endpoint: Some("unix:///nonexistent/kiln/docker.sock".to_owned()),
        ..Default::default()
    };
    let err = DockerExecutor::connect(config).await.expect_err("no engine there");
    assert_eq!(
        err.to_string(),
        "no Docker engine answers at unix:///nonexistent/kiln/docker.sock: socket not found"
    );

    let config = DockerConfig {
        endpoint: Some("tcp://127.0.0.1:1".to_owned()),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let err = DockerExecutor::connect(config).await.expect_err("no engine there").to_string();
    assert!(err.starts_with("no Docker engine answers at tcp://127.0.0.1:1: "), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

/// Regression: Docker 20.10 sometimes ends a `follow` log stream before the last entry of an
/// exiting container (a final line without newline, ~7 % of runs); the executor catches up.
#[tokio::test]
async fn a_last_line_without_newline_is_never_lost() {
    let executor = executor().await;
    let runs = (0..10).map(|n| {
        let task = script_task(&format!("tail-{n}"), "echo first; printf 'last'");
        let executor = &executor;
        async move { run(executor, &task).await.expect("run").0 }
    });
    for lines in futures::future::join_all(runs).await {
        assert_eq!(texts(&lines), ["first", "last"]);
    }
}

/// A free TCP port on the host (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GETs `/` from `127.0.0.1:port` until it answers (at most 20 s); the body.
async fn get_until_up(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
            let mut body = String::new();
            if c.read_to_string(&mut body).await.is_ok() && body.contains("200") {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves `text` with busybox httpd on `port` inside the container, until killed.
fn server_script(text: &str, port: u16) -> String {
    format!("mkdir -p www && echo {text} > www/index.html && exec httpd -f -p {port} -h www")
}

#[tokio::test]
async fn a_published_port_reaches_the_container_and_the_host_network_is_the_host_s() {
    let exec = executor().await;
    // Bridge network: host port -> container port 8080.
    let host = free_port();
    let mut task = script_task("ports", &server_script("published", 8080));
    task.ports = vec![kiln_exec::PortMap { host, container: 8080 }];
    exec.setup(&task).await.unwrap();
    let _stream = exec.start(&task).await.unwrap();
    let body = get_until_up(host).await;
    assert!(body.contains("published"), "{body}");
    exec.kill(&task.id).await.unwrap();
    exec.destroy(&task.id).await.unwrap();

    // Host network: the job listens on the host's port itself.
    let port = free_port();
    let mut task = script_task("hostnet", &server_script("hostnet", port));
    task.host_network = true;
    exec.setup(&task).await.unwrap();
    let _stream = exec.start(&task).await.unwrap();
    let body = get_until_up(port).await;
    assert!(body.contains("hostnet"), "{body}");
    exec.kill(&task.id).await.unwrap();
    exec.destroy(&task.id).await.unwrap();

    // Sidecars cannot share a host-network job's network: refused before anything is made.
    let mut task = script_task("hostnet-svc", "true");
    task.host_network = true;
    task.services = vec![ServiceSpec {
        name: "db".into(),
        image: IMAGE.into(),
        env: BTreeMap::new(),
        command: None,
    }];
    let err = exec.setup(&task).await.unwrap_err().to_string();
    assert!(err.contains("host network"), "{err}");
}
