//! Names and labels of everything the executor creates for a task.
//!
//! Invariant: every name here is a pure function of the [`TaskId`] (and the service name), so
//! a process that never saw the task's `setup` can still find and remove what it created.

use kiln_exec::TaskId;

/// Label carrying the task id; on every container, network and volume the executor creates.
pub const LABEL_TASK: &str = "kiln.task";

/// Label saying what a container is: [`ROLE_MAIN`] or [`ROLE_SERVICE`].
pub const LABEL_ROLE: &str = "kiln.role";

/// Label carrying a sidecar's service name (its host name on the task's network).
pub const LABEL_SERVICE: &str = "kiln.service";

/// [`LABEL_ROLE`] value of the main container.
pub const ROLE_MAIN: &str = "main";

/// [`LABEL_ROLE`] value of a sidecar container.
pub const ROLE_SERVICE: &str = "service";

/// Name of the task's main container: `kiln-<task id>`.
pub fn main_container(id: &TaskId) -> String {
    format!("kiln-{id}")
}

/// Name of the sidecar container for `service`: `kiln-<task id>-svc-<service name>`, with the
/// service name squeezed to the characters Docker accepts in a container name.
pub fn service_container(id: &TaskId, service: &str) -> String {
    format!("kiln-{id}-svc-{}", TaskId::sanitized(service))
}

/// Name of the task's private bridge network: `kiln-<task id>`.
pub fn network(id: &TaskId) -> String {
    format!("kiln-{id}")
}

/// Name of the task's workspace volume: `kiln-<task id>-ws`.
pub fn workspace_volume(id: &TaskId) -> String {
    format!("kiln-{id}-ws")
}

/// The `label=<key>=<value>` filter value selecting everything created for the task.
pub(crate) fn task_filter(id: &TaskId) -> String {
    format!("{LABEL_TASK}={id}")
}
