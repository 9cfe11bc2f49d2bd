//! The run state machine (being written).
use crate::*;
/// A run of one plan.
pub struct Run {
    _plan: SharedPlan,
}
