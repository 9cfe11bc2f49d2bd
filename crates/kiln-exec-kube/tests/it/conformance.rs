//! The executor conformance suite from `kiln-exec`, run against the Kubernetes executor and
//! the fake API server.

use std::sync::Arc;

use kiln_exec::conformance::Subject;

use crate::{IMAGE, executor, fake};

/// A fresh fake and executor per case; the leak check lists the pods and secrets labelled
/// with the task id.
async fn subject() -> Subject {
    let fake = fake().await;
    let executor = executor(&fake, "conformance").await;
    let probe = executor.clone();
    Subject::new(Arc::new(executor), move |id| {
        let probe = probe.clone();
        // Keeps the fake serving as long as the subject lives.
        let _fake = fake.clone();
        async move { probe.leftovers(&id).await.unwrap_or_else(|e| vec![e.to_string()]) }
    })
    .with_image(IMAGE)
    .with_services(true)
    .with_limits(true)
}

kiln_exec::conformance_tests!(subject());
