//! What the elastic pool (`crate::autoscale`) reads from and changes in the dispatcher: the
//! queued tasks no node takes now, the nodes with their work, draining (no new placement on
//! a node, its work finishing), and notes added to queued tasks' waiting reasons.

use std::collections::HashMap;

use super::{Dispatch, NodeState, place_queued, sync_node};

/// A node as the elastic pool sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNodeView {
    /// The node's (agent's) name.
    pub name: String,
    /// Its agent is connected.
    pub ready: bool,
    /// Tasks placed on it or leased there now.
    pub running: u32,
    /// Its `group` attribute, if any.
    pub group: Option<String>,
    /// Being drained.
    pub draining: bool,
}

impl Dispatch {
    /// The queued tasks, highest priority first (queue order among equals), except those
    /// their project's quota holds back: what a new node could take.
    pub fn pending_asks(&self) -> Vec<kiln_scheduler::Ask> {
        let st = self.lock();
        let mut asks: Vec<kiln_scheduler::Ask> = st
            .queue
            .iter()
            .filter(|w| kiln_scheduler::check_quota(&st.sched, &st.quotas, &w.ask).is_none())
            .map(|w| w.ask.clone())
            .collect();
        asks.sort_by_key(|a| std::cmp::Reverse(a.priority));
        asks
    }

    /// Every node with its connection, work and group.
    pub fn pool_view(&self) -> Vec<PoolNodeView> {
        let st = self.lock();
        st.nodes
            .values()
            .map(|n| PoolNodeView {
                name: n.name.clone(),
                ready: n.state == NodeState::Ready,
                running: n.running,
                group: match n.attributes().get(kiln_scheduler::autoscale::GROUP_ATTRIBUTE) {
                    Some(kiln_api::pool::AttrValue::Text(g)) => Some(g.clone()),
                    Some(kiln_api::pool::AttrValue::Number(n)) => Some(format!("{n}")),
                    _ => None,
                },
                draining: st.draining.contains(&n.name),
            })
            .collect()
    }

    /// Starts (`true`) or stops draining `node`: while it drains nothing new is placed there
    /// and what runs finishes. Returns the tasks it holds now.
    pub fn set_draining(&self, node: &str, on: bool) -> u32 {
        let mut st = self.lock();
        let changed =
            if on { st.draining.insert(node.to_string()) } else { st.draining.remove(node) };
        if changed {
            sync_node(&mut st, node);
            if !on {
                place_queued(&mut st);
            }
        }
        st.nodes.get(node).map_or(0, |n| n.running)
    }

    /// Replaces the elastic pool's notes on queued tasks, by task key.
    pub fn set_pool_notes(&self, notes: HashMap<String, String>) {
        self.lock().pool_notes = notes;
    }

    /// Forgets a removed node of the elastic pool once its agent is gone (see
    /// [`Dispatch::forget_node`]); `false` while it is connected or holds a task.
    pub fn forget_pool_node(&self, node: &str) -> bool {
        if !self.forget_node(node) {
            return false;
        }
        self.lock().draining.remove(node);
        true
    }
}
