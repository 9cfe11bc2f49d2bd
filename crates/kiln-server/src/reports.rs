//! The one door back from the agents: what an agent reports of a lease becomes masked log
//! lines and engine events here, for the single-lease and the batch route alike. Every other
//! way an attempt ends without its agent's word (lost, registered again, lease expired)
//! goes through [`TaskCtx::exited`] too.
//!
//! Invariants: a lease's events reach its run's actor in the order the agent sent them; a
//! lease ends at most once (a second `exited`, or anything after it, finds no live lease);
//! a log line is masked before it is stored, and stored before anyone can follow it.

use kiln_api::agent::AgentEvent;
use kiln_engine::{Event, Outcome};
use kiln_logs::{LogLine, LogStore, Stream};

use crate::coord::{RunMsg, job_log_key, run_log_key};
use crate::dispatch::{Dispatch, TaskCtx};
use crate::metrics::Metrics;

/// The lease named in a report is not live (lost, canceled or ended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease `{0}` is not live (lost, canceled or ended)")]
pub struct NotLive(pub String);

/// Takes the reports of agents: the handles it needs, and nothing else of the server.
#[derive(Debug, Clone, Copy)]
pub struct Reports<'a> {
    /// Where log lines go.
    pub logs: &'a LogStore,
    /// Which leases are live.
    pub dispatch: &'a Dispatch,
    /// Counts log lines.
    pub metrics: &'a Metrics,
}

impl Reports<'_> {
    /// Takes a lease's events in order; answers whether the lease is to be canceled.
    pub fn take(&self, lease: &str, events: Vec<AgentEvent>) -> Result<bool, NotLive> {
        let (ctx, cancel) = self.dispatch.lease(lease).ok_or_else(|| NotLive(lease.into()))?;
        let job_key = job_log_key(&ctx.run, ctx.job_index, ctx.attempt);
        let run_key = run_log_key(&ctx.run);
        for ev in events {
            let event = match ev {
                AgentEvent::Started => {
                    Event::JobStarted { job: ctx.job.clone(), attempt: ctx.attempt }
                }
                AgentEvent::Log { stream, time, text } => {
                    let stream = if stream == "stderr" { Stream::Stderr } else { Stream::Stdout };
                    let masked = ctx.masker.mask(&text);
                    let line = LogLine { stream, time, text: masked.to_string() };
                    if self.logs.append(&job_key, &line).is_ok() {
                        self.metrics.log_line(line.text.len());
                        let tagged =
                            LogLine { text: format!("{}\t{}", ctx.job, line.text), ..line };
                        let _ = self.logs.append(&run_key, &tagged);
                    }
                    continue;
                }
                AgentEvent::Output { key, value } => {
                    // An output is stored and shown like a log line: secrets in it are masked.
                    let value = ctx.masker.mask(&value).into_owned();
                    Event::JobOutput { job: ctx.job.clone(), attempt: ctx.attempt, key, value }
                }
                AgentEvent::Exited { outcome } => {
                    // Reported once: a second `exited` (or anything after it) finds no lease.
                    if self.dispatch.finish(lease).is_none() {
                        break;
                    }
                    ctx.exited(outcome);
                    continue;
                }
            };
            let _ = ctx.actor.send(RunMsg::Event { event, reply: None });
        }
        Ok(cancel)
    }
}

/// Ends attempts whose agent is gone, each with `why` as its error.
pub fn lose<'a>(lost: impl IntoIterator<Item = &'a TaskCtx>, why: &str) {
    for ctx in lost {
        ctx.exited(Outcome::Error(why.to_string()));
    }
}
