//! Admission: a pipeline's runs start while their concurrency group (`concurrency: { group,
//! limit }`; the whole pipeline without groups) has a free slot, oldest first within each
//! group, and `cancel-in-progress` cancels a new run's older group mates.
//!
//! Invariant: a group never has more active (running or paused) runs than its limit.

use kiln_engine::Event;
use kiln_store::PipelineId;
use kiln_workflow::plan::Plan;

use super::{Coord, bind, lock};
use crate::error::ApiResult;

impl Coord {
    /// Starts pending runs of `pipeline` while their groups have free slots, oldest first
    /// within each group (a pipeline without `concurrency: { group }` is one group).
    pub async fn admit(&self, pipeline: PipelineId) {
        let _guard = self.sh.admission.lock().await;
        'pass: loop {
            let pending = match self.sh.store.pending_runs(&pipeline).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("admission of pipeline {pipeline}: {e}");
                    return;
                }
            };
            let mut full: Vec<String> = Vec::new();
            for head in pending.into_iter().filter(|r| !self.is_active(&r.id)) {
                let plan = match self.plan_of_run(&head).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.fail_unstartable(&head, &e.message).await;
                        continue 'pass;
                    }
                };
                let group = group_of(&plan, &head);
                if full.contains(&group) {
                    continue;
                }
                let key = (pipeline, group.clone());
                let active = lock(&self.sh.active).get(&key).copied().unwrap_or(0);
                if plan.concurrency.is_some_and(|limit| active >= limit as usize) {
                    full.push(group);
                    continue;
                }
                if let Err(e) = self.start_actor(head.clone(), plan, None).await {
                    tracing::error!("start run {}: {}", head.full_name(), e.message);
                    self.fail_unstartable(&head, &e.message).await;
                }
                continue 'pass;
            }
            return;
        }
    }

    /// `cancel-in-progress`: cancels the unfinished runs of `run`'s group older than it.
    pub(super) async fn cancel_older_in_group(
        &self,
        plan: &Plan,
        run: &kiln_store::Run,
    ) -> ApiResult<()> {
        if !plan.concurrency_group.as_ref().is_some_and(|g| g.cancel_in_progress) {
            return Ok(());
        }
        let group = group_of(plan, run);
        for older in self.sh.store.unfinished_runs().await? {
            if older.pipeline_id != run.pipeline_id || older.number >= run.number {
                continue;
            }
            let Ok(older_plan) = self.plan_of_run(&older).await else { continue };
            if group_of(&older_plan, &older) != group {
                continue;
            }
            let by = format!("newer run {} of group `{group}`", run.full_name());
            if let Err(e) = self.send(&older, Event::Cancel { by }).await {
                tracing::info!("cancel-in-progress of {}: {}", older.full_name(), e.message);
            }
        }
        Ok(())
    }
}

/// The concurrency group of a run: its plan's `concurrency.group` rendered with the run's
/// commit and params; `""` for a plan without groups.
pub fn group_of(plan: &Plan, run: &kiln_store::Run) -> String {
    let Some(g) = &plan.concurrency_group else { return String::new() };
    let params = bind(plan, &run.params).unwrap_or_default();
    let src = run.source.as_ref();
    g.render(&|name: &str| match name.split_once('.') {
        Some(("source", field)) => src.and_then(|s| match field {
            "branch" => s.branch.clone(),
            "tag" => s.tag.clone(),
            "ref" => Some(s.git_ref.clone()),
            "event" => Some(s.event.clone()),
            "repository" => Some(s.repository.clone()),
            _ => None,
        }),
        Some(("params", p)) => params.get(p).map(ToString::to_string),
        _ => None,
    })
}
