//! The one door back from the agents: what an agent reports of a lease becomes masked log
//! lines and engine events (or service instance changes) here, for the single-lease and the batch route alike. Every other
//! way an attempt ends without its agent's word (lost, registered again, lease expired)
//! goes through [`TaskCtx::exited`] too.
//!
//! Invariants: a lease's events reach its run's actor in the order the agent sent them; a
//! lease ends at most once (a second `exited`, or anything after it, finds no live lease);
//! a log line is masked before it is stored, and stored before anyone can follow it; an
//! output's key and value and an error's text are masked as a log line is.

use kiln_api::agent::AgentEvent;
use kiln_engine::{Event, Outcome};
use kiln_logs::{LogLine, LogStore, Stream};

use crate::coord::{IndexMsg, RunMsg, index_exited, mask_event, run_log_key};
use crate::dispatch::{AttemptCtx, Dispatch, InstanceCtx, Owner, TaskCtx};
use crate::metrics::Metrics;

/// Answered once an array index's reported end is stored (an error, or a dropped sender:
/// not stored, and the index will run again).
pub type Stored = tokio::sync::oneshot::Receiver<crate::error::ApiResult<()>>;

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
    /// Takes a lease's events in order; answers whether the lease is to be canceled. The
    /// end of an array index is acknowledged only once stored: its receiver is added to
    /// `stored`, for the caller to wait on before it answers the agent.
    pub fn take(
        &self,
        lease: &str,
        events: Vec<AgentEvent>,
        stored: &mut Vec<Stored>,
    ) -> Result<bool, NotLive> {
        let (ctx, cancel) = self.dispatch.lease(lease).ok_or_else(|| NotLive(lease.into()))?;
        match &ctx.owner {
            Owner::Attempt(a) => self.attempt(lease, &ctx, a, events, stored),
            Owner::Instance(i) => self.instance(lease, &ctx, i, events),
        }
        Ok(cancel)
    }

    fn attempt(
        &self,
        lease: &str,
        ctx: &TaskCtx,
        a: &AttemptCtx,
        events: Vec<AgentEvent>,
        stored: &mut Vec<Stored>,
    ) {
        let job_key = a.log_key();
        let run_key = run_log_key(&a.run);
        let name = a.name();
        for ev in events {
            let event = match ev {
                AgentEvent::Waiting { reason } => {
                    let reason = ctx.masker.mask(&reason).into_owned();
                    self.dispatch.lease_waiting(lease, Some(reason));
                    continue;
                }
                AgentEvent::Started if a.index.is_some() => {
                    self.dispatch.lease_waiting(lease, None);
                    let index = a.index.unwrap_or_default();
                    let msg = IndexMsg::Started { job: a.job.clone(), index, attempt: a.attempt };
                    let _ = a.actor.send(RunMsg::Index(msg));
                    continue;
                }
                AgentEvent::Started => {
                    self.dispatch.lease_waiting(lease, None);
                    // What it holds, told ahead of its start (same queue, so in order): the
                    // actor opens its usage record with the start.
                    if let Some(reserved) = self.dispatch.lease_reserved(lease) {
                        let _ = a.actor.send(RunMsg::Started {
                            job: a.job.clone(),
                            attempt: a.attempt,
                            reserved,
                            at: chrono::Utc::now(),
                        });
                    }
                    Event::JobStarted { job: a.job.clone(), attempt: a.attempt }
                }
                AgentEvent::Log { stream, time, text } => {
                    let view = Some((&run_key, name.as_str()));
                    match self.log(ctx, &job_key, &stream, time, &text, view) {
                        Ok(()) => {}
                        Err(e @ kiln_logs::LogError::Io { .. }) => {
                            self.unstorable(lease, ctx, a, &e);
                            break;
                        }
                        // A closed log: the attempt already ended.
                        Err(_) => {}
                    }
                    continue;
                }
                // An array's indexes have no outputs (the engine keeps none of them).
                AgentEvent::Output { .. } if a.index.is_some() => continue,
                AgentEvent::Output { key, value } => {
                    // An output is stored and shown like a log line: secrets in its key and
                    // value are masked (with this attempt's own token and environment).
                    let output =
                        Event::JobOutput { job: a.job.clone(), attempt: a.attempt, key, value };
                    mask_event(&ctx.masker, output)
                }
                // Only instances have health checks and config files.
                AgentEvent::Health { .. } | AgentEvent::ConfigApplied { .. } => continue,
                AgentEvent::Exited { outcome } => {
                    // Reported once: a second `exited` (or anything after it) finds no lease.
                    if self.dispatch.finish(lease).is_none() {
                        break;
                    }
                    // An error's text is stored and shown too: masked like an output.
                    let outcome = match outcome {
                        Outcome::Error(why) => Outcome::Error(ctx.masker.mask(&why).into_owned()),
                        other => other,
                    };
                    if let Some(index) = a.index {
                        // Its log ends here if it printed (an index that did not has none).
                        if self.logs.path(&job_key).exists() {
                            let _ = self.logs.close(&job_key);
                        }
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        index_exited(&a.actor, a.job.clone(), index, a.attempt, outcome, Some(tx));
                        stored.push(rx);
                    } else {
                        ctx.exited(outcome);
                    }
                    continue;
                }
            };
            let _ = a.actor.send(RunMsg::Event { event, reply: None });
        }
    }

    fn instance(&self, lease: &str, ctx: &TaskCtx, i: &InstanceCtx, events: Vec<AgentEvent>) {
        let key = crate::services::instance_log_key(&i.service, &i.instance);
        for ev in events {
            match ev {
                AgentEvent::Started => {
                    let (node, placement) = self.dispatch.lease_placement(lease).unzip();
                    crate::services::instance_started(i, lease, node, placement.flatten());
                }
                AgentEvent::Log { stream, time, text } => {
                    let stored = self.log(ctx, &key, &stream, time, &text, None);
                    self.instance_log_stored(i, &key, stored.err());
                }
                AgentEvent::Health { healthy, detail } => {
                    crate::services::instance_health(
                        i,
                        healthy,
                        ctx.masker.mask(&detail).into_owned(),
                    );
                }
                AgentEvent::ConfigApplied { release, .. } => {
                    crate::services::instance_config_applied(i, release);
                }
                AgentEvent::Output { .. } | AgentEvent::Waiting { .. } => {}
                AgentEvent::Exited { outcome } => {
                    if self.dispatch.finish(lease).is_none() {
                        break;
                    }
                    ctx.exited(outcome);
                }
            }
        }
    }

    /// Keeps an instance's log honest about the lines it lost: when a line cannot be stored
    /// (`failed`), the first time a marker line names the cause; when one is stored again, a
    /// marker says how many were lost meanwhile. The instance keeps running.
    fn instance_log_stored(
        &self,
        i: &InstanceCtx,
        key: &kiln_logs::LogKey,
        failed: Option<kiln_logs::LogError>,
    ) {
        use std::sync::atomic::Ordering;
        let text = match failed {
            Some(e @ kiln_logs::LogError::Io { .. }) => {
                if i.unstored.fetch_add(1, Ordering::Relaxed) > 0 {
                    return;
                }
                let why = format!("a log line could not be stored: {e}");
                tracing::error!("instance {} of service {}: {why}", i.instance, i.service);
                format!("kiln: {why}; lines are missing from here until it can be again")
            }
            Some(_) => return,
            None => match i.unstored.swap(0, Ordering::Relaxed) {
                0 => return,
                n => format!("kiln: log lines are stored again; {n} were lost"),
            },
        };
        let marker = LogLine { stream: Stream::Stderr, time: chrono::Utc::now(), text };
        let _ = self.logs.append_marker(key, &marker);
    }

    /// Masks and stores one log line, in `key`'s log, shown in the run's log `view` (with its
    /// job's name) when given: the line is stored once.
    fn log(
        &self,
        ctx: &TaskCtx,
        key: &kiln_logs::LogKey,
        stream: &str,
        time: chrono::DateTime<chrono::Utc>,
        text: &str,
        view: Option<(&kiln_logs::LogKey, &str)>,
    ) -> Result<(), kiln_logs::LogError> {
        let stream = if stream == "stderr" { Stream::Stderr } else { Stream::Stdout };
        let line = LogLine { stream, time, text: ctx.masker.mask(text).into_owned() };
        match view {
            Some((view, job)) => self.logs.append_viewed(key, &line, None, view, job)?,
            None => self.logs.append(key, &line)?,
        };
        self.metrics.log_line(line.text.len());
        Ok(())
    }

    /// An attempt's log line could not be stored (`cause`): the attempt ends at once with that
    /// cause (its lease ends, so the agent stops the job), after a marker line saying so in the
    /// job's log, shown in the run's (written even on a full disk, see
    /// [`LogStore::append_marker_viewed`]). A log with a hole is never passed off as whole.
    fn unstorable(&self, lease: &str, ctx: &TaskCtx, a: &AttemptCtx, cause: &kiln_logs::LogError) {
        if self.dispatch.finish(lease).is_none() {
            return;
        }
        let why = format!("a log line could not be stored: {cause}");
        tracing::error!("run {} job {}: {why}", a.run, a.job);
        let marker = LogLine {
            stream: Stream::Stderr,
            time: chrono::Utc::now(),
            text: format!("kiln: {why}; the job was stopped"),
        };
        let _ =
            self.logs.append_marker_viewed(&a.log_key(), &marker, &run_log_key(&a.run), &a.name());
        ctx.exited(kiln_engine::Outcome::Error(why));
    }
}

/// Ends tasks whose agent is gone, `why` saying how: attempts fail with it as their error,
/// instances are `lost` (and replaced at once).
pub fn lose<'a>(lost: impl IntoIterator<Item = &'a TaskCtx>, why: &str) {
    for ctx in lost {
        ctx.lost(why);
    }
}
