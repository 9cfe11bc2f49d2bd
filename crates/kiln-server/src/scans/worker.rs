//! The scan queue's worker: every manifest without a scan is scanned, oldest push first; a
//! push event wakes it (and rescans its manifest if that scan had failed), and at start it
//! scans what was pushed while no worker ran (the queue is the store: `Store::scan_queue`).

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Scanner;

/// Scans every unscanned manifest now, then after each push, until `stop`.
pub fn spawn(scanner: Scanner, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let mut pushes = scanner.inner.registry.subscribe();
    tokio::spawn(async move {
        loop {
            if let Err(e) = scanner.drain(&stop).await {
                tracing::warn!("image scans: {e}");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                event = pushes.recv() => match event {
                    // A manifest whose scan failed (a layer was missing) is scanned again
                    // when pushed again.
                    Ok(e) => {
                        if let Err(err) = scanner.rescan_failed(&e.repository, &e.digest).await {
                            tracing::warn!("image scans: {err}");
                        }
                    }
                    // A missed event only means the queue holds more: it is read whole.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    })
}

impl Scanner {
    /// Scans `repository@digest` again if its last scan failed.
    async fn rescan_failed(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<(), kiln_store::StoreError> {
        if self.store().image_scan(digest).await?.is_some_and(|s| s.state == "failed") {
            self.scan(repository, digest).await?;
        }
        Ok(())
    }

    /// Scans every manifest of the queue; returns how many.
    pub async fn drain(&self, stop: &CancellationToken) -> Result<usize, kiln_store::StoreError> {
        let queue = self.store().scan_queue().await?;
        for (repository, digest) in &queue {
            if stop.is_cancelled() {
                break;
            }
            self.scan(repository, digest).await?;
        }
        Ok(queue.len())
    }
}
