//! Tests of [`FakeExecutor`] beyond the conformance suite: its call record, knobs and shell.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_exec::conformance::{command_task, run_task, script_task};
use kiln_exec::fake::{FakeCalls, FakeExecutor};
use kiln_exec::{ExecError, Executor, ExitStatus, Stream, TaskId};

fn ids(raw: &[&str]) -> Vec<TaskId> {
    raw.iter().map(|s| TaskId::sanitized(s)).collect()
}

#[tokio::test]
async fn records_calls_and_what_exists() {
    let fake = FakeExecutor::new().with_missing_image("missing:latest");
    let ok = script_task("ok", &["echo hi"]);
    let mut bad = script_task("bad", &["echo hi"]);
    bad.image = Some("missing:latest".to_string());

    let run = run_task(&fake, &ok).await.expect("run");
    assert_eq!(run.stdout(), ["hi"]);
    match fake.setup(&bad).await {
        Err(ExecError::ImageNotFound { image, .. }) => assert_eq!(image, "missing:latest"),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    // A failed setup still leaves something for destroy to remove.
    assert_eq!(fake.existing(), ids(&["bad"]));
    assert_eq!(fake.leftovers(&bad.id), ["fake task bad"]);
    assert!(matches!(fake.start(&bad).await, Err(ExecError::Engine(_))));
    fake.destroy(&bad.id).await.expect("destroy");
    assert!(fake.existing().is_empty());
    assert_eq!(
        fake.calls(),
        FakeCalls {
            set_up: ids(&["ok", "bad"]),
            started: ids(&["ok", "bad"]),
            killed: vec![],
            destroyed: ids(&["ok", "bad"]),
            exported: vec![],
            signalled: vec![],
        }
    );
}

#[tokio::test]
async fn shell_subset() {
    let fake = FakeExecutor::new();
    let mut task = script_task(
        "shell",
        &[
            "# a comment",
            "",
            "echo  plain   words",
            "echo \"$NAME\" ${NAME} $UNSET.",
            "echo to-stderr >&2",
            "pwd",
            "true",
            ":",
            "sh -c 'echo nested; exit 0'",
            "sh -c 'false'",
        ],
    );
    task.env = BTreeMap::from([("NAME".to_string(), "kiln".to_string())]);
    task.workdir = Some("./src/".to_string());
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.stdout(), ["plain words", "kiln kiln .", "/workspace/src", "nested; exit 0"]);
    assert_eq!(run.stderr(), ["to-stderr"]);
    assert_eq!(run.status, ExitStatus { code: 1, killed: None });
    for (workdir, pwd) in [(".", "/workspace"), ("/", "/"), ("//a/./b/", "/a/b")] {
        let mut task = script_task("pwd", &["pwd"]);
        task.workdir = Some(workdir.to_string());
        let run = run_task(&fake, &task).await.expect("run");
        assert_eq!(run.stdout(), [pwd], "{workdir}");
    }
}

#[tokio::test]
async fn unknown_commands_and_bad_input() {
    let fake = FakeExecutor::new();
    let cases: &[(&str, i32, &str)] = &[
        ("curl example.com", 127, "fake: unknown command: curl"),
        ("exit 300", 44, ""),
        ("exit -1", 255, ""),
        ("exit x", 2, "fake: exit: Illegal number: x"),
        ("sleep forever", 1, "fake: sleep: invalid time interval \"forever\""),
        ("sleep -1", 1, "fake: sleep: invalid time interval \"-1\""),
        ("echo 'open", 2, "fake: unterminated quote"),
        ("echo ${", 2, "fake: bad substitution: missing }"),
        ("sh -x", 2, "fake: sh: only `sh [-e] -c SCRIPT` is understood"),
    ];
    for (line, code, stderr) in cases {
        let run = run_task(&fake, &script_task("bad", &[line])).await.expect("run");
        assert_eq!(run.status.code, *code, "{line}");
        let expected: Vec<&str> = [*stderr].into_iter().filter(|s| !s.is_empty()).collect();
        assert_eq!(run.stderr(), expected, "{line}");
    }
}

#[tokio::test]
async fn command_entry_is_not_expanded() {
    let fake = FakeExecutor::new();
    let task = command_task("cmd", &["echo"], &["$HOME", "a  b", ">&2"]);
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.stdout(), ["$HOME a  b >&2"]);
    let task = command_task("cmd", &["nope"], &[]);
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.status.code, 127);
}

#[tokio::test]
async fn env_values_with_newlines_become_lines() {
    let fake = FakeExecutor::new();
    let mut task = script_task("nl", &["echo \"$V\""]);
    task.env.insert("V".to_string(), "one\ntwo".to_string());
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.stdout(), ["one", "two"]);
}

#[tokio::test]
async fn destroy_kills_a_running_task() {
    let fake = FakeExecutor::new();
    let task = script_task("running", &["sleep 30"]);
    fake.setup(&task).await.expect("setup");
    let stream = fake.start(&task).await.expect("start");
    let started = Instant::now();
    fake.destroy(&task.id).await.expect("destroy");
    assert_eq!(stream.count().await, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.wait(&task.id).await, Err(ExecError::UnknownTask(task.id.clone())));
}

#[tokio::test]
async fn wrong_call_order_is_an_error() {
    let fake = FakeExecutor::new();
    let task = script_task("order", &["echo x"]);
    assert_eq!(fake.start(&task).await.err(), Some(ExecError::UnknownTask(task.id.clone())));
    fake.setup(&task).await.expect("setup");
    assert!(matches!(fake.setup(&task).await, Err(ExecError::Engine(_))));
    assert!(matches!(fake.wait(&task.id).await, Err(ExecError::Engine(_))));
    let stream = fake.start(&task).await.expect("start");
    assert!(matches!(fake.start(&task).await, Err(ExecError::Engine(_))));
    let lines: Vec<_> = stream.collect().await;
    assert_eq!(lines.len(), 1);
    assert!(matches!(&lines[0], Ok(l) if l.stream == Stream::Stdout && l.text == "x"));
    // `wait` may be called more than once.
    assert_eq!(fake.wait(&task.id).await, Ok(ExitStatus { code: 0, killed: None }));
    assert_eq!(fake.wait(&task.id).await, Ok(ExitStatus { code: 0, killed: None }));
    fake.destroy(&task.id).await.expect("destroy");
}

#[tokio::test]
async fn output_waits_for_a_slow_reader_without_losing_lines() {
    let fake = FakeExecutor::new();
    let lines: Vec<String> = (0..2000).map(|i| format!("echo {i}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let task = script_task("slow", &lines);
    fake.setup(&task).await.expect("setup");
    let mut stream = fake.start(&task).await.expect("start");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut n = 0;
    while let Some(line) = stream.next().await {
        assert_eq!(line.expect("line").text, n.to_string());
        n += 1;
    }
    assert_eq!(n, 2000);
    assert!(fake.wait(&task.id).await.expect("wait").success());
    fake.destroy(&task.id).await.expect("destroy");
}

#[tokio::test]
async fn files_live_in_a_per_task_workspace() {
    let fake = FakeExecutor::new();
    let mut task = script_task(
        "files",
        &[
            "mkdir -p a/b",
            "echo one >a/b/f.txt",
            "echo two >> /workspace/a/b/f.txt",
            "cat a/b/f.txt",
            "sh -c 'echo inner' > nested.txt",
            "sh -c 'echo inner-err >&2' >> nested.txt",
            "cat nested.txt",
            ": > empty.txt",
            "cat empty.txt",
            "pwd",
        ],
    );
    task.workdir = Some(".".to_string());
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.stdout(), ["one", "two", "inner", "/workspace"]);
    assert_eq!(run.stderr(), ["inner-err"]);
    assert!(run.status.success());

    let cases: &[(&str, i32, &str)] = &[
        ("cat missing.txt", 1, "fake: cat: missing.txt: No such file or directory (os error 2)"),
        (
            "echo x > /etc/passwd",
            1,
            "fake: cannot create /etc/passwd: outside the workspace, which is all the fake's file system",
        ),
        (
            "cat ../../x",
            1,
            "fake: cat: ../../x: outside the workspace, which is all the fake's file system",
        ),
        ("mkdir a/b", 1, "fake: mkdir: a/b: No such file or directory (os error 2)"),
        ("echo x >", 2, "fake: syntax error: redirection without a file"),
    ];
    for (line, code, stderr) in cases {
        let run = run_task(&fake, &script_task("badfiles", &[line])).await.expect("run");
        assert_eq!(run.status.code, *code, "{line}");
        assert_eq!(run.stderr(), [*stderr], "{line}");
    }
}

#[tokio::test]
async fn a_last_line_without_newline_is_not_lost() {
    let fake = FakeExecutor::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("f"), "a\nno-newline").expect("write");
    let mut task = script_task("partial", &["cat f"]);
    task.seed = Some(tmp.path().to_path_buf());
    let run = run_task(&fake, &task).await.expect("run");
    assert_eq!(run.stdout(), ["a", "no-newline"]);
}

#[tokio::test]
async fn export_is_recorded_and_needs_the_task() {
    let fake = FakeExecutor::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let task = script_task("exported", &["echo x > x.txt"]);
    fake.setup(&task).await.expect("setup");
    let stream = fake.start(&task).await.expect("start");
    assert_eq!(stream.count().await, 0);
    fake.wait(&task.id).await.expect("wait");
    let dest = tmp.path().join("out.tar");
    fake.export_workspace(&task.id, &dest).await.expect("export");
    fake.destroy(&task.id).await.expect("destroy");
    assert_eq!(
        fake.export_workspace(&task.id, &dest).await,
        Err(ExecError::UnknownTask(task.id.clone()))
    );
    assert_eq!(fake.calls().exported, ids(&["exported", "exported"]));
    let entries = kiln_exec::conformance::tar_entries(&dest);
    assert_eq!(
        entries.into_iter().collect::<Vec<_>>(),
        [("x.txt".to_string(), kiln_exec::conformance::TarEntry::File(b"x\n".to_vec()))]
    );
}

#[tokio::test]
async fn a_bad_seed_fails_setup() {
    let fake = FakeExecutor::new();
    let mut task = script_task("badseed", &["true"]);
    task.seed = Some("/nonexistent/kiln/seed".into());
    match fake.setup(&task).await {
        Err(ExecError::Engine(msg)) => assert!(msg.contains("/nonexistent/kiln/seed"), "{msg}"),
        other => panic!("expected Engine, got {other:?}"),
    }
    fake.destroy(&task.id).await.expect("destroy");
    assert!(fake.existing().is_empty());
}
