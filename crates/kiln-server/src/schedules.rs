//! Runs started by schedules (`on: schedule:`).
//!
//! Each schedule entry of a pipeline is a stored row with its next fire time
//! (`kiln_store::ScheduleRecord`), replaced when the pipeline is applied ([`sync`]; entries
//! whose cron, zone and params are unchanged keep their times) and reconciled with every
//! pipeline when the server starts. One task sleeps until the earliest next fire time (or
//! until an apply wakes it), then handles every due row: [`kiln_workflow::schedule::decide`]
//! says whether a run starts (at most one per row and pass: never a burst after a downtime)
//! and the next fire time; the fire is claimed (the row moved to its next time) in the same
//! store transaction as the run it is to start (`kiln_store::RunIntent`, keyed
//! `schedule:<pipeline>:<entry>:<fire time>`), then that run is created; after a crash in
//! between, the server's start creates it (`triggers::recover_intents`), once: never lost,
//! never doubled.

use std::time::Duration;

use chrono::Utc;
use kiln_store::{PipelineId, RunIntent, ScheduleEntry, ScheduleRecord};
use kiln_workflow::plan::Plan;
use kiln_workflow::schedule::{self, Decision, Missed, Schedule};
use tokio_util::sync::CancellationToken;

use crate::error::ApiResult;
use crate::{App, StartError};

/// The longest the scheduler sleeps without looking at the store again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What the scheduler task shares with the request handlers.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Wakes the task after schedules changed.
    wake: tokio::sync::Notify,
    /// Held while a fire is claimed and its run created, and while a pipeline's schedules
    /// are replaced: once an apply returns, no schedule it removed starts a run.
    lock: tokio::sync::Mutex<()>,
}

/// The stored form of `plan`'s schedules; new entries' first fire times are computed from now.
fn entries(plan: &Plan) -> Vec<ScheduleEntry> {
    let now = Utc::now();
    plan.triggers
        .schedule
        .iter()
        .map(|t| ScheduleEntry {
            key: t.key(),
            cron: t.cron.clone(),
            timezone: t.timezone.clone(),
            params: t.params.clone(),
            missed: t.missed.as_str().to_string(),
            next_fire_at: t.schedule().and_then(|s| s.next_after(now)),
        })
        .collect()
}

/// Makes the stored schedules of `pipeline` those of `plan` (its current version) and wakes
/// the scheduler.
pub async fn sync(app: &App, pipeline: &PipelineId, plan: &Plan) -> ApiResult<()> {
    let entries = entries(plan);
    {
        let _held = app.scheduler.lock.lock().await;
        app.store.sync_schedules(pipeline, &entries).await?;
    }
    app.scheduler.wake.notify_one();
    Ok(())
}

/// Brings every pipeline's stored schedules in step with its current version (pipelines
/// applied before schedules existed, or an apply cut short between its two writes).
pub async fn reconcile(app: &App) -> Result<(), StartError> {
    for pipeline in app.store.all_pipelines().await? {
        let Ok(plan) = app.coord.plan_of(&pipeline) else { continue };
        if let Err(e) = sync(app, &pipeline.id, &plan).await {
            return Err(StartError::Schedules {
                pipeline: format!("{}/{}", pipeline.project, pipeline.name),
                message: e.message,
            });
        }
    }
    Ok(())
}

/// Starts the scheduler task; it runs until `stop` (or until the test fault
/// [`crate::ServerConfig::crash_after_claim`] is reached).
pub fn spawn(app: App, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut pause = Duration::ZERO;
            match pass(&app).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!("scheduler: stopped after a claim (crash_after_claim)");
                    return;
                }
                Err(e) => {
                    tracing::error!("scheduler: {}", e.message);
                    pause = Duration::from_secs(1);
                }
            }
            let sleep = match app.store.next_schedule_fire().await {
                Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or_default().min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::error!("scheduler: {e}");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = app.scheduler.wake.notified() => {}
                () = tokio::time::sleep(sleep.max(pause)) => {}
            }
        }
    })
}

fn policy(text: &str) -> Missed {
    if text == Missed::RunOnce.as_str() { Missed::RunOnce } else { Missed::Skip }
}

/// Handles every schedule due now. False when the test fault stopped it after a claim.
async fn pass(app: &App) -> ApiResult<bool> {
    let now = Utc::now();
    for row in app.store.due_schedules(now).await? {
        if !fire(app, &row, now).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decides, claims and starts the run of one due schedule. False when the test fault
/// stopped it right after the claim.
async fn fire(app: &App, row: &ScheduleRecord, now: chrono::DateTime<Utc>) -> ApiResult<bool> {
    let Some(due) = row.next_fire_at else { return Ok(true) };
    let name = format!("{}/{}", row.project, row.pipeline);
    let by = format!("schedule \"{}\" ({})", row.cron, row.timezone);
    let decision = match Schedule::parse(&row.cron, &row.timezone) {
        Ok(s) => schedule::decide(&s, policy(&row.missed), due, now),
        Err(e) => {
            tracing::error!("{by} of {name} cannot be read ({e}); it stops");
            Decision { fire: false, skipped: 0, next: None }
        }
    };
    let _held = app.scheduler.lock.lock().await;
    let fired_at = decision.fire.then_some(now);
    let claim = format!("schedule:{}:{}", row.pipeline_id, row.key);
    let intent = decision.fire.then(|| RunIntent {
        key: format!("{claim}:{}", due.to_rfc3339()),
        claim: claim.clone(),
        pipeline: row.pipeline_id,
        params: row.params.clone(),
        triggered_by: by.clone(),
        source: None,
    });
    let claimed = app
        .store
        .claim_schedule(&row.pipeline_id, &row.key, due, decision.next, fired_at, intent.as_ref())
        .await?;
    if !claimed {
        return Ok(true); // removed or re-applied meanwhile
    }
    if app.crash_after_claim {
        return Ok(false);
    }
    if decision.skipped > 0 {
        let what = if decision.fire { "folded into one run" } else { "skipped" };
        tracing::warn!(
            "{by} of {name}: {} missed fire(s) since {due} {what} (missed: {})",
            decision.skipped,
            row.missed
        );
    }
    let Some(intent) = intent else { return Ok(true) };
    match app.coord.start_intent(&intent).await {
        Ok(run) => {
            app.store.schedule_started(&row.pipeline_id, &row.key, &run.id).await?;
            tracing::info!("{by} started {}", run.full_name());
        }
        Err(e) => tracing::warn!("{by} did not start {name}: {}", e.message),
    }
    Ok(true)
}
