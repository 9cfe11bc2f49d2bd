//! The conformance suite on [`ProcessExecutor`]: no image, no services, limits accepted.

use kiln_exec::conformance::Subject;

async fn subject() -> Subject {
    let (executor, root) = crate::executor();
    let probe = executor.clone();
    Subject::new(executor, move |id| {
        let left = probe.leftovers(&id);
        let _keep_root_alive = &root;
        async move { left }
    })
    .with_limits(true)
}

kiln_exec::conformance_tests!(subject());
