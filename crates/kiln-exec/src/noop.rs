//! [`NoopExecutor`]: starts and ends every task at once, running nothing. For benchmarks and
//! pool tests, where what is measured is everything around the task (leases, reports, the
//! store) and not the task itself: every task prints nothing and exits 0 (137 when killed
//! before it was waited on), and its workspace is always empty.
//!
//! One knob makes chosen tasks fail, for tests of retries: a task whose env has
//! `KILN_NOOP_FAIL` (a comma list of `INDEX` or `INDEX@ATTEMPT`) exits 1 when its
//! `KILN_ARRAY_INDEX` is listed (and its `KILN_ATTEMPT` too, when one is given).
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

/// The variable that lists the array indexes whose tasks fail (see the module docs).
pub const FAIL_VAR: &str = "KILN_NOOP_FAIL";

/// The exit code of a task with env `env`: 1 if `KILN_NOOP_FAIL` lists its index (and
/// attempt), else 0.
fn exit_code(env: &std::collections::BTreeMap<String, String>) -> i32 {
    let (Some(list), Some(index)) = (env.get(FAIL_VAR), env.get("KILN_ARRAY_INDEX")) else {
        return 0;
    };
    let attempt = env.get("KILN_ATTEMPT").map(String::as_str).unwrap_or("1");
    let listed = list.split(',').map(str::trim).any(|item| match item.split_once('@') {
        Some((i, a)) => i == index && a == attempt,
        None => item == index,
    });
    i32::from(listed)
}

/// An [`Executor`] that runs nothing: every task starts and exits 0 at once. See the module
/// docs.
#[derive(Debug, Default)]
pub struct NoopExecutor {
    /// Tasks set up and not destroyed: whether each was killed, and its exit code.
    tasks: Mutex<HashMap<TaskId, (bool, i32)>>,
}

impl NoopExecutor {
    /// A no-op executor with no task.
    pub fn new() -> NoopExecutor {
        NoopExecutor::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, (bool, i32)>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` was killed, and its exit code; `UnknownTask` if it is not set up.
    fn killed(&self, id: &TaskId) -> Result<(bool, i32), ExecError> {
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
        tasks.insert(task.id.clone(), (false, exit_code(&task.env)));
        Ok(())
    }

    async fn start(&self, task: &TaskSpec) -> Result<LogStream, ExecError> {
        self.killed(&task.id)?;
        Ok(Box::pin(futures::stream::empty()))
    }

    async fn wait(&self, id: &TaskId) -> Result<ExitStatus, ExecError> {
        let (killed, code) = self.killed(id)?;
        Ok(ExitStatus { code: if killed { KILLED } else { code }, killed: None })
    }

    async fn kill(&self, id: &TaskId) -> Result<(), ExecError> {
        match self.lock().get_mut(id) {
            Some((killed, _)) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_the_listed_indexes_and_attempts_fail() {
        let list = (FAIL_VAR, "3, 7@1");
        assert_eq!(exit_code(&env(&[list, ("KILN_ARRAY_INDEX", "3"), ("KILN_ATTEMPT", "2")])), 1);
        assert_eq!(exit_code(&env(&[list, ("KILN_ARRAY_INDEX", "7"), ("KILN_ATTEMPT", "1")])), 1);
        assert_eq!(exit_code(&env(&[list, ("KILN_ARRAY_INDEX", "7"), ("KILN_ATTEMPT", "2")])), 0);
        assert_eq!(exit_code(&env(&[list, ("KILN_ARRAY_INDEX", "4")])), 0);
        assert_eq!(exit_code(&env(&[("KILN_ARRAY_INDEX", "3")])), 0);
        assert_eq!(exit_code(&env(&[list])), 0);
    }
}
