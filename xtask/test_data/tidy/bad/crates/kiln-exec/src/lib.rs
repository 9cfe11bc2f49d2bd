//! The executor contract.
