//! Webhook delivery: every event a project's webhooks take (registry pushes, run events) is
//! POSTed as JSON to each of them. Deliveries are rows of one outbox, written in the same
//! transaction as what they report (the push; the run's state change), so a restart loses
//! none; a failed delivery is retried with exponential backoff, up to [`MAX_ATTEMPTS`] times.
//! A webhook with a secret gets `X-Kiln-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use kiln_store::DeliveryPayload;
use serde::Serialize;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::{PushEvent, Registry};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;

/// The header carrying a delivery's signature.
pub const SIGNATURE_HEADER: &str = "X-Kiln-Signature";

/// The header naming what a delivery reports: `push`, or the run event (`run.failed`…).
pub const EVENT_HEADER: &str = "X-Kiln-Event";

/// The JSON body POSTed to a webhook for a registry event.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBody<'a> {
    /// `push`, or `vulnerability` (newly imported advisories match a stored image: the event
    /// names its repository, `tags`, `digest` and the new `advisories`).
    pub action: &'static str,
    /// The event.
    pub event: &'a PushEvent,
}

/// Backoff after `attempts` failed attempts, starting from `first`: `first`, twice that, four
/// times… capped at 10 minutes (1 s, 2 s, 4 s… by default).
pub fn backoff(first: Duration, attempts: u32) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    doubled.min(Duration::from_secs(600))
}

/// The value of [`SIGNATURE_HEADER`] for `body` signed with `secret`: `sha256=<hex>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers due outbox rows until `stop`; woken by every push and by
/// [`Registry::wake_webhooks`], else polls each second.
pub(crate) async fn deliver_loop(reg: Arc<Registry>, stop: CancellationToken) {
    loop {
        if let Err(e) = deliver_due(&reg).await {
            tracing::warn!("webhook delivery: {e}");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = reg.webhook_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1).min(reg.config.webhook_backoff)) => {}
        }
    }
}

/// The body and event name of a delivery.
fn body(payload: &DeliveryPayload) -> serde_json::Result<(Vec<u8>, &'static str)> {
    match payload {
        DeliveryPayload::Push(event) => {
            Ok((serde_json::to_vec(&WebhookBody { action: "push", event })?, "push"))
        }
        DeliveryPayload::Vulnerability(event) => Ok((
            serde_json::to_vec(&WebhookBody { action: "vulnerability", event })?,
            "vulnerability",
        )),
        DeliveryPayload::Run(notice) => Ok((serde_json::to_vec(notice)?, notice.event.as_str())),
    }
}

async fn deliver_due(reg: &Registry) -> kiln_store::Result<()> {
    let due = reg.store.registry_due_deliveries(chrono::Utc::now(), 50).await?;
    for d in due {
        let error = match body(&d.payload) {
            Ok((body, event)) => {
                let mut req = reg
                    .http
                    .post(&d.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(EVENT_HEADER, event)
                    .header("X-Kiln-Delivery", &d.id);
                if let Some(secret) = &d.secret {
                    req = req.header(SIGNATURE_HEADER, signature(secret, &body));
                }
                match req.body(body).send().await {
                    Ok(resp) if resp.status().is_success() => None,
                    Ok(resp) => Some(format!("the webhook answered {}", resp.status())),
                    Err(e) => Some(format!("the webhook could not be reached: {e}")),
                }
            }
            Err(e) => Some(format!("the payload could not be encoded: {e}")),
        };
        let attempts = d.attempts + 1;
        let retry_at = (error.is_some() && attempts < MAX_ATTEMPTS).then(|| {
            let wait = backoff(reg.config.webhook_backoff, attempts);
            chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
        });
        reg.store.registry_delivery_attempted(&d.id, error.as_deref(), retry_at).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_ten_minutes() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(1), 1), s(1));
        assert_eq!(backoff(s(1), 2), s(2));
        assert_eq!(backoff(s(1), 4), s(8));
        assert_eq!(backoff(s(1), 30), s(600));
        assert_eq!(backoff(Duration::from_millis(50), 3), Duration::from_millis(200));
    }

    #[test]
    fn signature_is_github_style_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
