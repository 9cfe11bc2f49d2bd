//! Behaviour of [`ProcessExecutor`] that only a host-process executor has.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_exec::conformance::{command_task, run_task, script_task, unique_id};
use kiln_exec::{Entry, ExecError, Executor, ExitStatus, Killed, Limits, ServiceSpec};
use kiln_exec_process::ProcessExecutor;

use crate::executor;

fn id(prefix: &str) -> String {
    unique_id(prefix)
}

#[tokio::test]
async fn workspace_is_exported_used_and_removed() {
    let (ex, root) = executor();
    let mut task = script_task(
        &id("ws"),
        &["pwd", "echo \"$KILN_WORKSPACE\"", "echo content > file.txt", "cat file.txt"],
    );
    task.image = Some("ignored:latest".to_string());
    ex.setup(&task).await.expect("setup");
    let dir = ex.workspace_dir(&task.id).expect("dir");
    assert!(dir.is_dir());
    assert!(dir.starts_with(root.path()));
    assert!(dir.ends_with(format!("kiln-{}", task.id)));
    let stream = ex.start(&task).await.expect("start");
    let lines: Vec<String> = stream.map(|l| l.expect("line").text).collect().await;
    let dir_text = dir.display().to_string();
    assert_eq!(lines, [dir_text.as_str(), &dir_text, "content"]);
    assert!(ex.wait(&task.id).await.expect("wait").success());
    assert!(dir.join("file.txt").is_file());
    ex.destroy(&task.id).await.expect("destroy");
    assert!(!dir.exists());
    assert!(ex.leftovers(&task.id).is_empty());
}

#[tokio::test]
async fn environment_is_minimal_and_task_env_wins() {
    let (ex, _root) = executor();
    let mut task = script_task(&id("env"), &["echo \"$PATH\"", "echo \"$HOME\"", "env"]);
    task.env = BTreeMap::from([
        ("HOME".to_string(), "/task-home".to_string()),
        ("KILN_TEST".to_string(), "1".to_string()),
    ]);
    let run = run_task(ex.as_ref(), &task).await.expect("run");
    let host_path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(run.stdout()[..2], [host_path.as_str(), "/task-home"]);
    let mut names: Vec<&str> = run.stdout()[2..]
        .iter()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    names.sort();
    // What the shell adds itself.
    names.retain(|n| !["PWD", "OLDPWD", "SHLVL", "_"].contains(n));
    let mut expected = vec!["HOME", "KILN_TEST", "KILN_WORKSPACE", "PATH"];
    expected.extend(["LANG", "TMPDIR"].into_iter().filter(|v| std::env::var_os(v).is_some()));
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn check_refuses_what_processes_cannot_do() {
    let ex = ProcessExecutor::default();
    let mut task = script_task(&id("check"), &["true"]);
    task.services = vec![ServiceSpec {
        name: "postgres".to_string(),
        image: "postgres:16".to_string(),
        env: BTreeMap::new(),
        command: None,
    }];
    match ex.check(&task) {
        Err(ExecError::Unsupported { executor, what }) => {
            assert_eq!(executor, "process");
            assert!(what.contains("postgres"), "{what}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }

    let mut task = script_task(&id("check"), &["true"]);
    task.entry = Entry::Command { command: None, args: vec!["--version".to_string()] };
    assert_eq!(
        ex.check(&task),
        Err(ExecError::Unsupported {
            executor: "process",
            what: "needs the image's entrypoint, which the process executor can not use; \
                   set command:"
                .to_string(),
        })
    );

    let task = command_task(&id("check"), &[], &["x"]);
    assert!(matches!(ex.check(&task), Err(ExecError::Unsupported { .. })));

    // Limits are accepted (and documented as not enforced); the image is ignored.
    let mut task = script_task(&id("check"), &["true"]);
    task.limits = Limits { cpu_millis: Some(100), memory_bytes: Some(1 << 20) };
    task.image = Some("alpine:3".to_string());
    assert_eq!(ex.check(&task), Ok(()));
}

#[tokio::test]
async fn command_entry_runs_without_a_shell() {
    let (ex, _root) = executor();
    let task = command_task(&id("cmd"), &["printf"], &["%s|%s\\n", "$HOME", "a  b"]);
    let run = run_task(ex.as_ref(), &task).await.expect("run");
    assert_eq!(run.stdout(), ["$HOME|a  b"]);
}

#[tokio::test]
async fn missing_program_or_workdir_fails_start() {
    let (ex, _root) = executor();
    let task = command_task(&id("noprog"), &["/nonexistent/kiln-prog"], &[]);
    ex.setup(&task).await.expect("setup");
    match ex.start(&task).await {
        Err(ExecError::Engine(msg)) => assert!(msg.contains("kiln-prog"), "{msg}"),
        other => panic!("expected an Engine error, got {:?}", other.map(|_| ())),
    }
    ex.destroy(&task.id).await.expect("destroy");

    let mut task = script_task(&id("nodir"), &["pwd"]);
    task.workdir = Some("/nonexistent/kiln-dir".to_string());
    ex.setup(&task).await.expect("setup");
    match ex.start(&task).await {
        Err(ExecError::Engine(msg)) => assert!(msg.contains("/nonexistent/kiln-dir"), "{msg}"),
        other => panic!("expected an Engine error, got {:?}", other.map(|_| ())),
    }
    ex.destroy(&task.id).await.expect("destroy");
    assert!(ex.leftovers(&task.id).is_empty());
}

#[tokio::test]
async fn signal_deaths_are_128_plus_signal() {
    let (ex, _root) = executor();
    let task = script_task(&id("signal"), &["kill -TERM $$"]);
    let run = run_task(ex.as_ref(), &task).await.expect("run");
    assert_eq!(run.status, ExitStatus { code: 128 + 15, killed: Some(Killed::Signal(15)) });
}

#[tokio::test]
async fn a_process_killed_from_outside_says_so_and_never_speaks_of_containers() {
    let (ex, root) = executor();
    let pid_file = root.path().join("outside.pid");
    let script = format!("echo $$ > {}; echo started; sleep 600", pid_file.display());
    let task = script_task(&id("outside"), &[script.as_str()]);
    ex.setup(&task).await.expect("setup");
    let mut stream = ex.start(&task).await.expect("start");
    let first = stream.next().await.expect("a line").expect("line");
    assert_eq!(first.text, "started");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = std::process::Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
    assert!(killed.success());
    let status = ex.wait(&task.id).await.expect("wait");
    ex.destroy(&task.id).await.expect("destroy");
    assert_eq!(status, ExitStatus { code: 137, killed: Some(Killed::Signal(9)) });
    let why = status.killed.unwrap().to_string();
    assert_eq!(why, "killed by SIGKILL from outside Kiln");
    assert!(!why.contains("container"));
}

#[tokio::test]
async fn background_children_die_with_the_main_process() {
    let (ex, _root) = executor();
    // The background `sleep` holds stdout open: the log stream ends only if it dies.
    let task = script_task(&id("bg"), &["sleep 30 &", "echo done"]);
    let started = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(10), run_task(ex.as_ref(), &task))
        .await
        .expect("log stream ended")
        .expect("run");
    assert_eq!(run.stdout(), ["done"]);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn kill_reaches_the_whole_group() {
    let (ex, _root) = executor();
    let task = script_task(&id("group"), &["sh -c 'sleep 30; echo inner' &", "sleep 30"]);
    ex.setup(&task).await.expect("setup");
    let stream = ex.start(&task).await.expect("start");
    tokio::time::sleep(Duration::from_millis(100)).await;
    ex.kill(&task.id).await.expect("kill");
    let (lines, status) = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join(stream.collect::<Vec<_>>(), ex.wait(&task.id)),
    )
    .await
    .expect("ended after kill");
    assert!(lines.is_empty());
    assert_eq!(status, Ok(ExitStatus { code: 137, killed: None }));
    ex.destroy(&task.id).await.expect("destroy");
}

#[tokio::test]
async fn destroy_kills_a_running_task_and_removes_read_only_trees() {
    let (ex, _root) = executor();
    let task = script_task(
        &id("ro"),
        &[
            "mkdir -p cache/mod",
            "touch cache/mod/file",
            "chmod a-w cache/mod cache",
            "echo ready",
            "sleep 30",
        ],
    );
    ex.setup(&task).await.expect("setup");
    let mut stream = ex.start(&task).await.expect("start");
    let first = stream.next().await.map(|l| l.map(|l| l.text));
    assert_eq!(first, Some(Ok("ready".to_string())));
    let dir = ex.workspace_dir(&task.id).expect("dir");
    ex.destroy(&task.id).await.expect("destroy");
    assert!(!dir.exists());
    assert!(ex.leftovers(&task.id).is_empty());
    assert_eq!(ex.wait(&task.id).await, Err(ExecError::UnknownTask(task.id)));
}

#[tokio::test]
async fn partial_last_line_and_long_lines_arrive() {
    let (ex, _root) = executor();
    let task = script_task(
        &id("partial"),
        &["printf 'a\\r\\nno newline'", "head -c 70000 /dev/zero | tr '\\0' x >&2"],
    );
    let run = run_task(ex.as_ref(), &task).await.expect("run");
    assert_eq!(run.stdout(), ["a", "no newline"]);
    let lens: Vec<usize> = run.stderr().iter().map(|l| l.len()).collect();
    assert_eq!(lens, [64 * 1024, 70000 - 64 * 1024]);
}

#[tokio::test]
async fn dropped_log_stream_does_not_block_the_process() {
    let (ex, _root) = executor();
    // Far more output than the pipe and channel buffers hold.
    let task = script_task(&id("drop"), &["head -c 5000000 /dev/zero | tr '\\0' '\\n'"]);
    ex.setup(&task).await.expect("setup");
    drop(ex.start(&task).await.expect("start"));
    let status = tokio::time::timeout(Duration::from_secs(20), ex.wait(&task.id))
        .await
        .expect("process finished");
    assert_eq!(status, Ok(ExitStatus { code: 0, killed: None }));
    ex.destroy(&task.id).await.expect("destroy");
}

/// `start` only spawns: it must return quickly. Prints the numbers for the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_fast() {
    let (ex, _root) = executor();
    let mut took = Vec::new();
    for _ in 0..30 {
        let task = script_task(&id("fast"), &["true"]);
        ex.setup(&task).await.expect("setup");
        let t0 = Instant::now();
        let stream = ex.start(&task).await.expect("start");
        took.push(t0.elapsed());
        stream.count().await;
        ex.wait(&task.id).await.expect("wait");
        ex.destroy(&task.id).await.expect("destroy");
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("start: median {median:?}, max {:?}", took[took.len() - 1]);
    assert!(median < Duration::from_millis(20), "median start took {median:?}");
}

/// Issue 20: a task of an executor running as root, told to run tasks as an unprivileged
/// user, cannot read a data directory (mode 0700, like the server's) or a token file, and
/// still owns its workspace (the seed included) with `HOME` there.
#[tokio::test]
async fn a_task_run_as_another_user_cannot_read_the_data_directory() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    let nobody = kiln_exec_process::RunAs::lookup("nobody").expect("user nobody");
    let data = tempfile::tempdir().expect("data dir");
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(data.path().join("admin.token"), "kiln_secret_token").unwrap();
    let root = tempfile::tempdir().expect("root");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let seed = tempfile::tempdir().expect("seed");
    std::fs::write(seed.path().join("seeded.txt"), "from the seed\n").unwrap();
    let ex = ProcessExecutor::new(kiln_exec_process::ProcessConfig {
        root: root.path().to_path_buf(),
        run_as: Some(nobody),
        ..kiln_exec_process::ProcessConfig::default()
    });
    let data_dir = data.path().display();
    let mut task = script_task(
        &id("user"),
        &[
            "id -u",
            &format!("cat {data_dir}/admin.token || echo cannot read the token"),
            &format!("ls {data_dir} || echo cannot list the data directory"),
            "echo more >> seeded.txt && cat seeded.txt",
            "test \"$HOME\" = \"$KILN_WORKSPACE\" && echo home is the workspace",
        ],
    );
    task.seed = Some(seed.path().to_path_buf());
    let run = run_task(&ex, &task).await.expect("run");
    let out = run.stdout().join("\n");
    assert!(!out.contains("kiln_secret_token"), "{out}");
    assert_eq!(
        run.stdout(),
        [
            nobody.uid.to_string().as_str(),
            "cannot read the token",
            "cannot list the data directory",
            "from the seed",
            "more",
            "home is the workspace",
        ],
        "{out}"
    );
    assert!(run.status.success());
}
