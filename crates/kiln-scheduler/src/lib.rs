//! Placement of tasks on a shared pool of machines: pure, deterministic, no I/O, no clock.
//!
//! - [`model`]: [`Node`] (resources, port ranges, attributes), [`Ask`] (what a task needs),
//!   [`Placement`] (where it goes, with its host ports and env).
//! - [`constraint`]: the constraint language, an AND of OR-groups of
//!   `(attribute, operator, value)`, read from Kiln's shape ([`Constraints::from_json`], or
//!   built with [`Predicate::new`]) or BCS's ([`Constraints::from_bcs`]).
//! - [`Pool`]: the node snapshot and the one reservation ledger. [`Pool::place`] filters,
//!   scores and selects; [`Pool::commit`] re-checks and reserves; [`Pool::release`] gives back;
//!   [`Pool::place_batch`] places a queue with quotas, priorities and fair share.
//! - [`Unplaced`]: why a task waits, summed up over the nodes.
//! - [`autoscale`]: the elastic pool's decisions: the nodes of which group the queue needs
//!   (placed on template nodes by the same code), and which idle nodes go.
//! - ImageLocality: among the nodes a task fits on, those whose engine holds its image
//!   ([`Ask::image`], [`Node::images`]) score higher, by the image's size and how few nodes
//!   have it (kube-scheduler's plugin); a score only, never a filter.
//!
//! Invariants: nothing is reserved except through `commit` (and `reserve`/`place_batch`,
//! which call it), and `commit` refuses anything that does not fit the node as it is now, so
//! the sum of reservations on a node never exceeds its allocatable resources and no host port
//! is handed out twice. The same calls in the same order give the same placements.

pub mod autoscale;
mod batch;
mod bitset;
pub mod constraint;
mod explain;
mod hash;
pub mod model;
mod pool;

pub use batch::{Batch, Quota, QuotaExceeded, Wait, check_quota};
pub use constraint::{ConstraintError, Constraints, Op, Predicate};
pub use explain::{Reason, Unplaced};
pub use model::{
    Ask, AskError, AssignedPort, AttrError, AttrValue, GroupKey, Network, Node, NodeId, Placement,
    PortAsk, PortRange, Resources, Strategy, TaskId, image_key, port_env_name,
};
pub use pool::{CommitError, NodeUsage, Options, Pool, ProjectUsage};
