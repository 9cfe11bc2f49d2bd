//! [`NoopExecutor`]: starts and ends every task at once, running nothing. For benchmarks and
//! pool tests, where what is measured is everything around the task (leases, reports, the
//! store) and not the task itself: every task prints nothing and exits 0 (137 when killed
//! before it was waited on), and its workspace is always empty.
//!
//! It still keeps the [`Executor`] contract: a task exists from `setup` until `destroy`, and
//! `start`, `wait`, `kill` and `export_workspace` of a task not set up are
//! [`ExecError::UnknownTask`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::{ExecError, Executor, ExitStatus, LogStream, TaskId, TaskSpec};

/// Exit code of a killed task (128 + SIGKILL).
const KILLED: i32 = 137;

/// An [`Executor`] that runs nothing: every task starts and exits 0 at once. See the module
/// docs.
#[derive(Debug, Default)]
pub struct NoopExecutor {
    /// Tasks set up and not destroyed, and whether each was killed.
    tasks: Mutex<HashMap<TaskId, bool>>,
}

impl NoopExecutor {
    /// A no-op executor with no task.
    pub fn new() -> NoopExecutor {
        NoopExecutor::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, bool>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` is set up; `UnknownTask` if not.
    fn killed(&self, id: &TaskId) -> Result<bool, ExecError> {
        self.lock().get(id).copied().ok_or_else(|| ExecError::UnknownTask(id.clone()))
    }
}

#[async_trait]
impl Executor for NoopExecutor {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn check(&self, _task: &TaskSpec) -> Result<(), ExecError> {
        Ok(())
    }

    async fn setup(&self, task: &TaskSpec) -> Result<(), ExecError> {
        let mut tasks = self.lock();
        if tasks.contains_key(&task.id) {
            return Err(ExecError::Engine(format!("noop: task {} is already set up", task.id)));
        }
        tasks.insert(task.id.clone(), false);
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        self.killed(&task.id)?;
        Ok(Box::pin(futures::stream::empty()))
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let killed = self.killed(id)?;
        Ok(ExitStatus { code: if killed { KILLED } else { 0 }, killed: None })
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        match self.lock().get_mut(id) {
            Some(killed) => {
                *killed = true;
                Ok(())
            }
            None => Err(ExecError::UnknownTask(id.clone())),
        }
    }

    async fn export_workspace(&self, id: &TaskId, dest: &Path) -> Result<(), ExecError> {
        self.killed(id)?;
        // An empty workspace: a tar with no entries.
        let file = std::fs::File::create(dest)
            .map_err(|e| ExecError::Engine(format!("noop: create {}: {e}", dest.display())))?;
        tar::Builder::new(file)
            .into_inner()
            .map_err(|e| ExecError::Engine(format!("noop: write {}: {e}", dest.display())))?;
        Ok(())
    }

    async fn destroy(&self, id: &TaskId) -> Result<(), ExecError> {
        self.lock().remove(id);
        Ok(())
    }
}
