//! Errors: the connect error, and turning bollard's errors into one-line `ExecError`s.

use std::error::Error as StdError;
use std::fmt::Display;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use kiln_exec::ExecError;

/// Why [`DockerExecutor::connect`](crate::DockerExecutor::connect) failed. Its message is one
/// line naming the endpoint, e.g. `no Docker engine answers at unix:///var/run/docker.sock:
/// socket not found`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is neither `unix://…`, `tcp://…`, `http://…` nor an absolute socket path.
    #[error("unsupported Docker endpoint {endpoint:?}: expected unix:///path or tcp://host:port")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// Nothing answered a ping at the endpoint, or the answer made no sense.
    #[error("no Docker engine answers at {endpoint}: {cause}")]
    NoEngine {
        /// The endpoint tried.
        endpoint: String,
        /// Why, in one line.
        cause: String,
    },
}

/// Whether the engine said "no such object" (404).
pub(crate) fn is_not_found(err: &BollardError) -> bool {
    matches!(err, BollardError::DockerResponseServerError { status_code: 404, .. })
}

/// Whether the engine said "conflict" (409): e.g. killing a container that is not running.
pub(crate) fn is_conflict(err: &BollardError) -> bool {
    matches!(err, BollardError::DockerResponseServerError { status_code: 409, .. })
}

/// The error and its sources on one line, without repeating a source already quoted by its
/// parent.
pub(crate) fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    squeeze(&out)
}

/// Folds line breaks and runs of blanks into single spaces.
pub(crate) fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The engine's own message for a server error, otherwise the whole error on one line.
pub(crate) fn cause(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => squeeze(message),
        BollardError::DockerStreamError { error } => squeeze(error),
        BollardError::SocketNotFoundError(path) => format!("socket {path} not found"),
        BollardError::RequestTimeoutError => "no answer in time".to_owned(),
        // hyper-util's own message ("client error (Connect)") says little; its sources say
        // what happened ("Connection refused (os error 111)").
        BollardError::HyperLegacyError { err } => match err.source() {
            Some(inner) => one_line(inner),
            None => one_line(err),
        },
        other => one_line(other),
    }
}

/// `ExecError::Engine` saying what was being done and what the engine answered.
pub(crate) fn engine(what: impl Display, err: &BollardError) -> ExecError {
    ExecError::Engine(format!("docker: {what}: {}", cause(err)))
}

/// `ExecError::Engine` for a call that did not complete within `limit`.
pub(crate) fn timed_out(what: impl Display, limit: Duration) -> ExecError {
    ExecError::Engine(format!(
        "docker: {what}: the engine did not answer within {}s",
        limit.as_secs_f32()
    ))
}
