//! Integration tests of kiln-exec-process: the conformance suite, process-only behaviour and
//! the start-up sweep of what a killed executor left running.

mod conformance;
mod process;
mod sweep;

use std::sync::Arc;

use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tempfile::TempDir;

/// An executor with its workspaces under a fresh temporary root and its records in
/// `ROOT/.procs`, as an agent's.
pub fn executor() -> (Arc<ProcessExecutor>, Arc<TempDir>) {
    let root = Arc::new(tempfile::tempdir().expect("temp dir"));
    let config = ProcessConfig {
        root: root.path().to_path_buf(),
        records: Some(root.path().join(".procs")),
        ..ProcessConfig::default()
    };
    (Arc::new(ProcessExecutor::new(config)), root)
}
