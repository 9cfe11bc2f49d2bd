//! The suite catches broken executors: a fake that leaks on `destroy` and one whose `kill`
//! does nothing must fail it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kiln_exec::conformance::{self, Subject};
use kiln_exec::fake::FakeExecutor;
use kiln_exec::{ExecError, Executor, ExitStatus, LogStream, TaskId, TaskSpec};

/// Delegates to a fake, but optionally skips `destroy` or `kill`.
struct Broken {
    inner: FakeExecutor,
    destroy: bool,
    kill: bool,
}

#[async_trait]
impl Executor for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn check(&self, task: &TaskSpec) -> Result<(), ExecError> {
        self.inner.check(task)
    }
    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        self.inner.setup(task).await
    }
    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        self.inner.start(task).await
    }
    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        self.inner.wait(id).await
    }
    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        match self.kill {
            true => self.inner.kill(id).await,
            false => Ok(()),
        }
    }
    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        self.inner.export_workspace(id, dest).await
    }
    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        match self.destroy {
            true => self.inner.destroy(id).await,
            false => Ok(()),
        }
    }
}

fn subject(destroy: bool, kill: bool) -> Subject {
    let broken = Arc::new(Broken { inner: FakeExecutor::new(), destroy, kill });
    let probe = broken.clone();
    Subject::new(broken, move |id| {
        let left = probe.inner.leftovers(&id);
        async move { left }
    })
}

#[tokio::test]
#[should_panic(expected = "left behind for task")]
async fn a_leaking_destroy_fails_the_suite() {
    conformance::destroy_is_idempotent(subject(false, true)).await;
}

#[tokio::test]
#[should_panic(expected = "did not end within")]
async fn an_ineffective_kill_fails_the_suite() {
    conformance::kill_stops_sleeping_task(subject(true, false)).await;
}
