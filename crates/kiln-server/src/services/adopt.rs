//! A server restart adopts the instances that run instead of replacing them. At start, each
//! instance stored as running (`starting`, `healthy`, `unhealthy`, or `stopping`) is handed
//! to the dispatcher ([`crate::dispatch::Dispatch::adopt`]) with the lease id its agent
//! holds: its resources and host ports are held on its node, and when the node's agent
//! registers again listing the lease, the lease moves into the agent's new session and the
//! service's actor hears of it (`ServiceMsg::Adopted`); the instance keeps its id, slot,
//! state and health. A `stopping` one is told to stop once its agent is back. An instance
//! no agent claims within the agent-lost window is lost and replaced, as when an agent is
//! lost.
//!
//! What cannot be adopted is marked lost here and replaced at once: an instance still
//! `staging` (its agent may have taken it, but the server never learnt the lease), one whose
//! spec or node is gone, or one that no longer fits its node.

use chrono::Utc;
use kiln_service::InstanceState;
use kiln_store::{InstanceRecord, ServiceRecord, StoreError};

use super::actor::{extras, instance_task, spec_of_version};
use super::{ServiceTx, Shared};
use crate::dispatch::Adoption;

/// Hands every running instance of service `s` to the dispatcher for adoption (its actor,
/// not started yet, hears through `tx`); marks lost those that cannot be.
pub(super) async fn recover(
    sh: &Shared,
    s: &ServiceRecord,
    tx: &ServiceTx,
) -> Result<(), StoreError> {
    for i in sh.store.instances(&s.id, false).await? {
        let Some(state) = InstanceState::parse(&i.state) else { continue };
        if !state.holds_room() {
            continue;
        }
        if let Err(why) = adopt(sh, s, &i, state, tx).await {
            tracing::warn!("service {}/{}: instance {} is lost: {why}", s.project, s.name, i.id);
            let lost = InstanceRecord {
                state: InstanceState::Lost.as_str().into(),
                reason: Some(why),
                lease: None,
                since: Utc::now(),
                ..i
            };
            // Its log ends here: whoever follows it hears the end.
            let _ = sh.logs.close(&super::instance_log_key(&s.id, &lost.id));
            let revision = sh.store.put_instance(&lost, "lost").await?;
            sh.revision.send_replace(revision);
        }
    }
    Ok(())
}

/// Hands one instance to the dispatcher; why not, if it cannot be adopted.
async fn adopt(
    sh: &Shared,
    s: &ServiceRecord,
    i: &InstanceRecord,
    state: InstanceState,
    tx: &ServiceTx,
) -> Result<(), String> {
    let (Some(_), Some(node)) = (&i.lease, &i.node) else {
        return Err("the server restarted before it started".into());
    };
    let spec = spec_of_version(sh, &s.id, i.version, s.replicas)
        .await
        .map_err(|e| format!("the server restarted and cannot read its version: {e}"))?;
    // Its lease is not sent again, but its log must mask its environment's secrets.
    let extras = extras(sh, &s.project, &spec, &i.id, false).await.unwrap_or_else(|why| {
        tracing::warn!("service {}/{}: instance {}: {why}", s.project, s.name, i.id);
        Default::default()
    });
    let task = instance_task(sh, s, &spec, i, tx, extras);
    let adoption = Adoption {
        lease: task.lease,
        ctx: task.ctx,
        node: node.clone(),
        ports: i.ports.clone(),
        cancel: state == InstanceState::Stopping,
    };
    sh.dispatch
        .adopt(adoption)
        .map_err(|(_, why)| format!("the server restarted and cannot hold it on `{node}`: {why}"))
}
