//! The executor conformance suite from `kiln-exec`, run against the Docker executor.

use std::sync::Arc;

use kiln_exec::conformance::Subject;
use kiln_exec_docker::names;

use crate::{IMAGE, executor, leftovers};

/// The Docker executor, with a leak check listing containers, networks and volumes labelled
/// with the task id.
async fn subject() -> Subject {
    let executor = Arc::new(executor().await);
    let probe = executor.clone();
    Subject::new(executor, move |id| {
        let probe = probe.clone();
        async move { leftovers(&probe, &format!("{}={id}", names::LABEL_TASK)).await }
    })
    .with_image(IMAGE)
    .with_services(true)
    .with_limits(true)
}

kiln_exec::conformance_tests!(subject());
