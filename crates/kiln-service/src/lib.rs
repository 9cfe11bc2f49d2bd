//! The service controller, pure: a service's desired state and the instances observed on the
//! pool in, the actions that bring one closer to the other out. No I/O, no clock (the caller
//! passes `now`), no tokio; the server runs it in one actor per service and carries out what
//! it decides, as it does with the run engine.
//!
//! A service of N replicas is N **slots** (0..N). Each slot is reconciled against the
//! instances that claim it by small rules that return actions as data ([`reconcile`]), in the
//! shape Nomad's maintainers recommend over set-filtering reconcilers, with the rolling-update
//! budget of Kubernetes' deployment controller (max surge, max unavailable; resolved counts
//! come in, see [`Desired`]).
//!
//! Invariants (property-tested in `tests/it/props.rs`), for the actions of one call applied to
//! the instances it was given:
//! - no start takes the instances that hold resources (live or stopping) above
//!   `replicas + max_surge`;
//! - no stop of a healthy instance takes the healthy count below `replicas - max_unavailable`
//!   (scaling down and stopping the whole service excepted: they lower `replicas` itself);
//! - never two live instances of one version in one slot;
//! - an instance lost with its node is replaced at once; one that failed is replaced after
//!   its slot's backoff, unless the restart policy says not to;
//! - an update that is not complete by its deadline is rolled back ([`Action::RollBack`]) to
//!   the stable version; a first version, with none to go back to, keeps trying.

mod reconcile;
pub mod selector;

pub use reconcile::reconcile;
pub use selector::Selector;

use serde::{Deserialize, Serialize};

/// An instance's id, given by the caller when it carries out [`Action::Start`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub String);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the service should be: its current version (every apply, scale or rollback makes a
/// new one) with what the controller needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The version every slot should run.
    pub version: u32,
    /// How many slots (0 stops the service).
    pub replicas: u32,
    /// Instances an update may run above `replicas` (resolved from a count or a percentage).
    pub max_surge: u32,
    /// Healthy instances an update may go below `replicas` (resolved likewise).
    pub max_unavailable: u32,
    /// An update not complete this long after it started is rolled back.
    pub deadline_ms: u64,
    /// What happens when an instance ends.
    pub restart: Restart,
}

/// When an ended instance is replaced, and how long its slot waits first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// Which endings are replaced.
    pub policy: RestartPolicy,
    /// The wait before the first replacement of a failing slot; it doubles with each
    /// consecutive failure.
    pub initial_ms: u64,
    /// The longest wait; an instance that ran this long before failing starts its slot's
    /// count again.
    pub max_ms: u64,
}

/// Which endings of an instance are replaced (an instance lost with its node always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Every ending.
    Always,
    /// Every ending but an exit with code 0.
    OnFailure,
    /// None.
    Never,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Placed on a node, not yet running (waiting for its agent, pulling its image).
    Staging,
    /// Running, its health check not yet passed (within its grace period).
    Starting,
    /// Running and passing its health check (or running, for a service without one).
    Healthy,
    /// Running and failing its health check: it is replaced.
    Unhealthy,
    /// Being stopped.
    Stopping,
    /// Its node was lost: it is replaced elsewhere at once.
    Lost,
    /// It exited, or could not be started.
    Failed,
}

impl InstanceState {
    /// Running or about to: staging, starting, healthy or unhealthy.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            InstanceState::Staging
                | InstanceState::Starting
                | InstanceState::Healthy
                | InstanceState::Unhealthy
        )
    }

    /// Holding room on a node: live, or stopping.
    pub fn holds_room(self) -> bool {
        self.is_live() || self == InstanceState::Stopping
    }

    /// Lost or failed: over, waiting to be replaced or forgotten.
    pub fn has_ended(self) -> bool {
        matches!(self, InstanceState::Lost | InstanceState::Failed)
    }

    /// Every state.
    pub const ALL: [InstanceState; 7] = [
        InstanceState::Staging,
        InstanceState::Starting,
        InstanceState::Healthy,
        InstanceState::Unhealthy,
        InstanceState::Stopping,
        InstanceState::Lost,
        InstanceState::Failed,
    ];

    /// The state named `name` ([`InstanceState::as_str`]).
    pub fn parse(name: &str) -> Option<InstanceState> {
        InstanceState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The lowercase name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Staging => "staging",
            InstanceState::Starting => "starting",
            InstanceState::Healthy => "healthy",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Stopping => "stopping",
            InstanceState::Lost => "lost",
            InstanceState::Failed => "failed",
        }
    }
}

/// An instance as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// The slot it fills.
    pub slot: u32,
    /// The service version it runs.
    pub version: u32,
    /// Its state.
    pub state: InstanceState,
    /// When it entered that state (milliseconds, the caller's clock).
    pub since_ms: u64,
    /// When it started running, if it did.
    pub started_ms: Option<u64>,
    /// Consecutive failures of its slot before it was started.
    pub restarts: u32,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
}

/// What the controller sees: the desired state, the last version that was fully rolled out,
/// the instances, and the time.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// What the service should be.
    pub desired: &'a Desired,
    /// The last version every slot ran healthy (what an update that misses its deadline
    /// returns to). Equal to `desired.version` when no update is under way.
    pub stable_version: u32,
    /// When the update to `desired.version` began (None when none is under way).
    pub update_started_ms: Option<u64>,
    /// Every instance not yet forgotten.
    pub instances: &'a [Instance],
    /// Now, on the caller's clock.
    pub now_ms: u64,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Place and start a new instance in `slot` running `version`.
    Start {
        /// The slot it fills.
        slot: u32,
        /// The version it runs.
        version: u32,
        /// Consecutive failures of its slot so far (for its own backoff later).
        restarts: u32,
    },
    /// Stop an instance.
    Stop {
        /// Which.
        instance: InstanceId,
        /// Why, for people.
        reason: String,
    },
    /// Drop an ended instance from the live set (its history stays): its slot was dealt with.
    Forget {
        /// Which.
        instance: InstanceId,
    },
    /// The update to the desired version missed its deadline: make `to_version` desired again.
    RollBack {
        /// The stable version.
        to_version: u32,
        /// Why, for people.
        reason: String,
    },
    /// Every slot runs the desired version, healthy: it is now the stable version.
    Completed {
        /// The version.
        version: u32,
    },
}

/// Why a slot is not yet what it should be, for people (`kiln service show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// The slot.
    pub slot: u32,
    /// Why it waits.
    pub reason: String,
}

/// The controller's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do now, in order.
    pub actions: Vec<Action>,
    /// Slots that wait, and why.
    pub waits: Vec<Wait>,
    /// When to call the controller again even if nothing changes (a backoff or a deadline).
    pub wake_at_ms: Option<u64>,
}

/// The wait before replacing an instance that failed after `restarts` consecutive failures
/// of its slot: `initial`, doubled per failure, at most `max`.
pub fn backoff_ms(restart: &Restart, restarts: u32) -> u64 {
    let factor = 1u64.checked_shl(restarts.min(32)).unwrap_or(u64::MAX);
    restart.initial_ms.saturating_mul(factor).min(restart.max_ms)
}
