//! Tests of [`NoopExecutor`]: every task starts and exits 0 at once, with no output and an
//! empty workspace, and the lifecycle's errors still hold.

use futures::StreamExt;
use kiln_exec::conformance::script_task;
use kiln_exec::noop::NoopExecutor;
use kiln_exec::{ExecError, Executor};

#[tokio::test]
async fn a_task_exits_0_at_once_with_no_output() {
    let ex = NoopExecutor::new();
    // The script is not run: `exit 3` would fail it.
    let task = script_task("noop-runs", &["echo hello", "exit 3"]);
    ex.check(&task).expect("check");
    ex.setup(&task).await.expect("setup");
    let lines: Vec<_> = ex.start(&task).await.expect("start").collect().await;
    assert!(lines.is_empty(), "no output: {lines:?}");
    assert_eq!(ex.wait(&task.id).await.expect("wait").code, 0);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("ws.tar");
    ex.export_workspace(&task.id, &dest).await.expect("export");
    let mut archive = tar::Archive::new(std::fs::File::open(&dest).unwrap());
    assert_eq!(archive.entries().unwrap().count(), 0, "an empty workspace");
    ex.destroy(&task.id).await.expect("destroy");
    ex.destroy(&task.id).await.expect("destroy is idempotent");
    assert!(matches!(ex.wait(&task.id).await, Err(ExecError::UnknownTask(_))));
}

#[tokio::test]
async fn a_killed_task_exits_137_and_unknown_tasks_are_errors() {
    let ex = NoopExecutor::new();
    let task = script_task("noop-killed", &["sleep 30"]);
    assert!(matches!(ex.start(&task).await, Err(ExecError::UnknownTask(_))));
    assert!(matches!(ex.kill(&task.id).await, Err(ExecError::UnknownTask(_))));
    ex.setup(&task).await.expect("setup");
    assert!(ex.setup(&task).await.is_err(), "a second setup of one id is refused");
    ex.kill(&task.id).await.expect("kill");
    assert_eq!(ex.wait(&task.id).await.expect("wait").code, 137);
    ex.destroy(&task.id).await.expect("destroy");
}
