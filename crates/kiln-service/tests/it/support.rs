//! Building services and instances for the tests, and a small world that carries out the
//! controller's actions the way the server would.

use kiln_service::{
    Action, Decision, Desired, Instance, InstanceId, InstanceState, Observed, Restart,
    RestartPolicy, reconcile,
};

/// A service of `replicas` at version 1, surge 1, unavailable 0, deadline 5 min, restarts
/// always with 1 s doubling to 1 min.
pub fn desired(replicas: u32) -> Desired {
    Desired {
        version: 1,
        replicas,
        max_surge: 1,
        max_unavailable: 0,
        deadline_ms: 300_000,
        restart: Restart { policy: RestartPolicy::Always, initial_ms: 1_000, max_ms: 60_000 },
    }
}

/// An instance `id` of `slot` at `version`, in `state` since `since`.
pub fn inst(id: &str, slot: u32, version: u32, state: InstanceState, since: u64) -> Instance {
    Instance {
        id: InstanceId(id.into()),
        slot,
        version,
        state,
        since_ms: since,
        started_ms: state.is_live().then_some(since),
        restarts: 0,
        exit_code: None,
    }
}

/// The controller's decision, as one line per action and wait (what a reviewer reads).
pub fn show(d: &Decision) -> String {
    let mut out = Vec::new();
    for a in &d.actions {
        out.push(match a {
            Action::Start { slot, version, restarts } => {
                format!("start slot {slot} v{version} (restarts {restarts})")
            }
            Action::Stop { instance, reason } => format!("stop {instance}: {reason}"),
            Action::Forget { instance } => format!("forget {instance}"),
            Action::RollBack { to_version, reason } => {
                format!("roll back to v{to_version}: {reason}")
            }
            Action::Completed { version } => format!("completed v{version}"),
        });
    }
    for w in &d.waits {
        out.push(format!("wait slot {}: {}", w.slot, w.reason));
    }
    if let Some(at) = d.wake_at_ms {
        out.push(format!("wake at {at}"));
    }
    out.join("\n")
}

/// A service as the server keeps it: desired state, stable version, instances, a clock.
#[derive(Debug, Clone)]
pub struct World {
    pub desired: Desired,
    pub stable: u32,
    pub update_started: Option<u64>,
    pub instances: Vec<Instance>,
    pub now: u64,
    pub next_id: u32,
    /// The newest version ever applied (versions are never reused).
    pub latest: u32,
    /// Rollbacks and completions seen, in order.
    pub history: Vec<String>,
}

impl World {
    pub fn new(desired: Desired) -> World {
        World {
            stable: desired.version,
            latest: desired.version,
            desired,
            update_started: None,
            instances: Vec::new(),
            now: 1_000_000,
            next_id: 0,
            history: Vec::new(),
        }
    }

    /// The controller's decision now.
    pub fn decide(&self) -> Decision {
        reconcile(Observed {
            desired: &self.desired,
            stable_version: self.stable,
            update_started_ms: self.update_started,
            instances: &self.instances,
            now_ms: self.now,
        })
    }

    /// Carries out a decision as the server would (starts are placed at once).
    pub fn apply(&mut self, d: &Decision) {
        for a in &d.actions {
            match a {
                Action::Start { slot, version, restarts } => {
                    self.next_id += 1;
                    let mut i = inst(
                        &format!("i{}", self.next_id),
                        *slot,
                        *version,
                        InstanceState::Staging,
                        self.now,
                    );
                    i.restarts = *restarts;
                    self.instances.push(i);
                }
                Action::Stop { instance, .. } => self.set(instance, InstanceState::Stopping),
                Action::Forget { instance } => self.instances.retain(|i| &i.id != instance),
                Action::RollBack { to_version, .. } => {
                    self.history.push(format!("rollback to v{to_version}"));
                    self.desired.version = *to_version;
                    self.update_started = None;
                }
                Action::Completed { version } => {
                    self.history.push(format!("completed v{version}"));
                    self.stable = *version;
                    self.update_started = None;
                }
            }
        }
    }

    /// Moves an instance to `state` now.
    pub fn set(&mut self, id: &InstanceId, state: InstanceState) {
        let now = self.now;
        if let Some(i) = self.instances.iter_mut().find(|i| &i.id == id) {
            if state.is_live() && i.started_ms.is_none() && state != InstanceState::Staging {
                i.started_ms = Some(now);
            }
            i.state = state;
            i.since_ms = now;
        }
    }

    /// A new version of the service (an apply): the update starts now.
    pub fn update(&mut self) {
        self.latest += 1;
        self.desired.version = self.latest;
        self.update_started = Some(self.now);
    }

    /// Every stop finishes, staging instances start, starting ones pass their check.
    pub fn settle(&mut self) {
        self.instances.retain(|i| i.state != InstanceState::Stopping);
        let now = self.now;
        for i in &mut self.instances {
            let next = match i.state {
                InstanceState::Staging => InstanceState::Starting,
                InstanceState::Starting => InstanceState::Healthy,
                s => s,
            };
            if next != i.state {
                i.state = next;
                i.since_ms = now;
                i.started_ms.get_or_insert(now);
            }
        }
    }

    /// Instances of `version` that are healthy.
    pub fn healthy(&self, version: u32) -> usize {
        self.instances
            .iter()
            .filter(|i| i.version == version && i.state == InstanceState::Healthy)
            .count()
    }
}
