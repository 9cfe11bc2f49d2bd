//! Run states.

/// A state.
pub struct State;
