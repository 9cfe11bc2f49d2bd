//! The conformance suite on [`FakeExecutor`], as a container executor with every feature and
//! as one without services or limits.

use std::sync::Arc;

use kiln_exec::conformance::{MISSING_IMAGE, Subject};
use kiln_exec::fake::FakeExecutor;

fn subject(fake: FakeExecutor) -> Subject {
    let fake = Arc::new(fake.with_missing_image(MISSING_IMAGE));
    let probe = fake.clone();
    Subject::new(fake, move |id| {
        let left = probe.leftovers(&id);
        async move { left }
    })
}

mod full {
    use super::*;

    kiln_exec::conformance_tests!(async {
        subject(FakeExecutor::new())
            .with_image("busybox:latest")
            .with_services(true)
            .with_limits(true)
    });
}

mod bare {
    use super::*;

    kiln_exec::conformance_tests!(async {
        subject(FakeExecutor::new().without_services().without_limits())
    });
}
