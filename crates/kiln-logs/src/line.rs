//! A line of a task's output ([`LogLine`]) and the stream it came from ([`Stream`]).
//!
//! These types sit here, at the bottom of the crate graph, because both sides of a log use
//! them: executors produce them (`kiln-exec` re-exports them in its contract) and the server
//! stores and streams them, without the server depending on any executor crate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output (where `JOB_OUT` lines are read from).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a task's output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Stream.
    pub stream: Stream,
    /// When the engine (or the executor) saw it.
    pub time: DateTime<Utc>,
    /// The text, lossily decoded as UTF-8.
    pub text: String,
}
