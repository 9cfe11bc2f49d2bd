//! Drives one task through an executor: check, set up, start, stream logs, wait, destroy.
//!
//! This is the wrapper every job runs in, whoever asked for it (`kiln run`, the
//! embedded and remote agents). It enforces the job's timeout and cancellation, reads
//! `JOB_OUT key=value` lines from stdout, exports the workspace when asked (for caches and
//! artifacts, see [`crate::archive`]) and always destroys what the executor created.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use kiln_engine::Outcome;
use kiln_exec::{Executor, LogLine, Stream, TaskSpec};
use tokio_util::sync::CancellationToken;

/// What happens while a task runs, in order: `Started`, then `Log`/`Output` interleaved.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// The main container or process started.
    Started,
    /// One line of output.
    Log(LogLine),
    /// A `JOB_OUT key=value` line was printed on stdout.
    Output {
        /// Output name.
        key: String,
        /// Output value.
        value: String,
    },
    /// While the task is set up: why it waits (the executor's [`Executor::waiting`], told
    /// each time it changes), such as a pod that no node takes.
    Waiting(String),
}

/// One task to run.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// Fully resolved task.
    pub spec: TaskSpec,
    /// Kill it after this long.
    pub timeout: Option<Duration>,
    /// Where to write an uncompressed tar of the workspace once the task has exited (with any
    /// exit code), before it is destroyed; see [`Executor::export_workspace`].
    pub export: Option<PathBuf>,
}

/// How a task driven by [`drive_task`] ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// How the task ended.
    pub outcome: Outcome,
    /// The export of the workspace: `None` when not requested or not reached (the task did
    /// not get to an exit: error, timeout, cancel), else whether it worked (the error as text).
    pub export: Option<Result<(), String>>,
}

/// Parses a `JOB_OUT key=value` line. The key is letters, digits, `_`, `-` or `.`, starting
/// with a letter or `_`; the value is the rest of the line (it may be empty or hold `=`).
pub fn parse_job_out(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("JOB_OUT ")?;
    let (key, value) = rest.trim_start().split_once('=')?;
    let mut chars = key.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return None;
    }
    Some((key, value.trim_end_matches('\r')))
}

/// Runs `req` to the end and reports how it ended. Never fails: executor errors become
/// `Outcome::Error`, a failed export is `TaskResult::export` `Some(Err(_))` (the outcome is
/// kept). When [`TaskRequest::export`] is set and the task exited (`Outcome::Exited`, any
/// code), the workspace is exported there; a cancel during the export abandons it.
/// Whatever happens, `destroy` is called before returning.
pub async fn drive_task(
    executor: &dyn Executor,
    req: TaskRequest,
    cancel: CancellationToken,
    mut on_event: impl FnMut(TaskEvent) + Send,
) -> TaskResult {
    let beside = futures::stream::pending::<std::convert::Infallible>();
    drive_beside(executor, req, cancel, beside, |ev| match ev {
        Driven::Task(ev) => on_event(ev),
        Driven::Beside(never) => match never {},
    })
    .await
}

/// An event of a task driven with a stream beside it ([`drive_beside`]).
pub(crate) enum Driven<X> {
    /// The task's own.
    Task(TaskEvent),
    /// An item of the stream beside it.
    Beside(X),
}

/// [`drive_task`], with `beside` polled from the task's start until its main container or
/// process exits (or is killed): each item it yields goes to `on_event`, in order with the
/// task's own events. A service instance's health checks run this way.
pub(crate) async fn drive_beside<X>(
    executor: &dyn Executor,
    req: TaskRequest,
    cancel: CancellationToken,
    beside: impl futures::Stream<Item = X> + Send,
    mut on_event: impl FnMut(Driven<X>) + Send,
) -> TaskResult {
    let beside = std::pin::pin!(beside.fuse());
    let outcome = run_until_exit(executor, &req, &cancel, beside, &mut on_event).await;
    let export = match (&outcome, &req.export) {
        (Outcome::Exited(_), Some(dest)) => Some(tokio::select! {
            r = executor.export_workspace(&req.spec.id, dest) => r.map_err(|e| e.to_string()),
            () = cancel.cancelled() => Err("canceled while exporting the workspace".to_string()),
        }),
        _ => None,
    };
    if let Err(e) = executor.destroy(&req.spec.id).await {
        tracing::warn!(task = %req.spec.id, "clean-up failed: {e}");
        on_event(Driven::Task(TaskEvent::Log(LogLine {
            stream: Stream::Stderr,
            time: chrono::Utc::now(),
            text: format!("kiln: clean-up of {} failed: {e}", req.spec.id),
        })));
    }
    TaskResult { outcome, export }
}

async fn run_until_exit<X>(
    executor: &dyn Executor,
    req: &TaskRequest,
    cancel: &CancellationToken,
    mut beside: std::pin::Pin<&mut futures::stream::Fuse<impl futures::Stream<Item = X>>>,
    on_event: &mut (impl FnMut(Driven<X>) + Send),
) -> Outcome {
    let spec = &req.spec;
    if let Err(e) = executor.check(spec) {
        return Outcome::Error(e.to_string());
    }
    let work = async {
        executor.setup(spec).await?;
        executor.start(spec).await
    };
    tokio::pin!(work);
    // While it is set up, the executor may say why it waits: told on each change.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told: Option<String> = None;
    let prepared = loop {
        tokio::select! {
            r = &mut work => break r,
            () = cancel.cancelled() => return Outcome::Canceled,
            _ = tick.tick() => {
                let now = executor.waiting(&spec.id);
                if let Some(why) = &now
                    && now != told
                {
                    on_event(Driven::Task(TaskEvent::Waiting(why.clone())));
                    told = now;
                }
            }
        }
    };
    let mut logs = match prepared {
        Ok(logs) => logs,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    on_event(Driven::Task(TaskEvent::Started));

    let deadline = async {
        match req.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);

    // Read the output to its end, unless a timeout or cancel comes first.
    let stop = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Some(Outcome::Canceled),
            () = &mut deadline => break Some(Outcome::TimedOut),
            Some(x) = beside.next() => on_event(Driven::Beside(x)),
            item = logs.next() => match item {
                Some(Ok(line)) => {
                    if line.stream == Stream::Stdout
                        && let Some((key, value)) = parse_job_out(&line.text)
                    {
                        on_event(Driven::Task(TaskEvent::Output {
                            key: key.to_string(),
                            value: value.to_string(),
                        }));
                    }
                    on_event(Driven::Task(TaskEvent::Log(line)));
                }
                Some(Err(e)) => {
                    let _ = executor.kill(&spec.id).await;
                    return Outcome::Error(format!("reading output failed: {e}"));
                }
                None => break None,
            },
        }
    };
    if let Some(outcome) = stop {
        if let Err(e) = executor.kill(&spec.id).await {
            return Outcome::Error(format!("could not kill {}: {e}", spec.id));
        }
        // Reap it so destroy finds it stopped; the outcome is ours, not its exit code.
        let _ = tokio::time::timeout(Duration::from_secs(10), executor.wait(&spec.id)).await;
        return outcome;
    }
    let wait = executor.wait(&spec.id);
    tokio::pin!(wait);
    let waited = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break None,
            () = &mut deadline => break Some(Err(Outcome::TimedOut)),
            r = &mut wait => break Some(Ok(r)),
            Some(x) = beside.next() => on_event(Driven::Beside(x)),
        }
    };
    match waited {
        Some(Ok(Ok(status))) => match status.killed {
            Some(killed) => Outcome::Killed { code: status.code, why: killed.to_string() },
            None => Outcome::Exited(status.code),
        },
        Some(Ok(Err(e))) => Outcome::Error(e.to_string()),
        Some(Err(timeout)) => {
            let _ = executor.kill(&spec.id).await;
            timeout
        }
        None => {
            let _ = executor.kill(&spec.id).await;
            Outcome::Canceled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_job_out;

    #[test]
    fn job_out_lines() {
        assert_eq!(parse_job_out("JOB_OUT version=1.2.3"), Some(("version", "1.2.3")));
        assert_eq!(parse_job_out("  JOB_OUT url=http://x/?a=b"), Some(("url", "http://x/?a=b")));
        assert_eq!(parse_job_out("JOB_OUT empty="), Some(("empty", "")));
        assert_eq!(parse_job_out("JOB_OUT noequals"), None);
        assert_eq!(parse_job_out("JOB_OUT =v"), None);
        assert_eq!(parse_job_out("JOB_OUT 1x=v"), None);
        assert_eq!(parse_job_out("echo JOB_OUT a=b"), None);
        assert_eq!(parse_job_out("JOB_OUTPUT a=b"), None);
    }
}
