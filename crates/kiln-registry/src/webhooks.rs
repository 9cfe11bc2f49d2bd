//! Webhook delivery: every push event of a project is POSTed as JSON to each of its webhooks.
//! Deliveries are rows of an outbox written with the push itself, so a restart loses none;
//! a failed delivery is retried with exponential backoff, up to [`MAX_ATTEMPTS`] times.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{PushEvent, Registry};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;

/// The JSON body POSTed to a webhook.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBody<'a> {
    /// Always `push`.
    pub action: &'static str,
    /// The event.
    pub event: &'a PushEvent,
}

/// Backoff after `attempts` failed attempts: 1 s, 2 s, 4 s… capped at 10 minutes.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(20)).min(Duration::from_secs(600))
}

/// Delivers due outbox rows until `stop`; woken by every push, else polls each second.
pub(crate) async fn deliver_loop(reg: Arc<Registry>, stop: CancellationToken) {
    loop {
        if let Err(e) = deliver_due(&reg).await {
            tracing::warn!("webhook delivery: {e}");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = reg.webhook_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn deliver_due(reg: &Registry) -> kiln_store::Result<()> {
    let due = reg.store.registry_due_deliveries(chrono::Utc::now(), 50).await?;
    for d in due {
        let body = WebhookBody { action: "push", event: &d.event };
        let sent = reg.http.post(&d.url).json(&body).send().await;
        let error = match sent {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("the webhook answered {}", resp.status())),
            Err(e) => Some(format!("the webhook could not be reached: {e}")),
        };
        let attempts = d.attempts + 1;
        let retry_at = (error.is_some() && attempts < MAX_ATTEMPTS).then(|| {
            chrono::Utc::now() + chrono::Duration::from_std(backoff(attempts)).unwrap_or_default()
        });
        reg.store.registry_delivery_attempted(&d.id, error.as_deref(), retry_at).await?;
    }
    Ok(())
}
