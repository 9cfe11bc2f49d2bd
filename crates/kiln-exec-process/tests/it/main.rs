//! Integration tests of kiln-exec-process: the conformance suite and process-only behaviour.

mod conformance;
mod process;

use std::sync::Arc;

use kiln_exec_process::{ProcessConfig, ProcessExecutor};
use tempfile::TempDir;

/// An executor with its workspaces under a fresh temporary root.
pub fn executor() -> (Arc<ProcessExecutor>, Arc<TempDir>) {
    let root = Arc::new(tempfile::tempdir().expect("temp dir"));
    let config = ProcessConfig { root: root.path().to_path_buf(), ..ProcessConfig::default() };
    (Arc::new(ProcessExecutor::new(config)), root)
}
