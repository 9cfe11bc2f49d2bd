//! Waiting for something to hold, with a deadline that fails the test with what was last
//! seen.

use std::future::Future;
use std::time::{Duration, Instant};

/// Whether a run state is final.
pub fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "canceled" | "timeout")
}

/// Polls `probe` every `every` until it returns `Ok`; after `limit`, panics with `what`
/// and the last `Err` it gave (what was seen instead).
pub async fn until<T, E: std::fmt::Debug, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => {
                assert!(
                    started.elapsed() < limit,
                    "{what} did not happen in {limit:?}; last seen: {seen:#?}"
                );
            }
        }
        tokio::time::sleep(every).await;
    }
}
