//! Webhook delivery: every event a project's webhooks take (registry pushes, run events) is
//! POSTed as JSON to each of them. Deliveries are rows of one outbox, written in the same
//! transaction as what they report (the push; the run's state change), so a restart loses
//! none; a failed delivery is retried with exponential backoff, up to [`MAX_ATTEMPTS`] times.
//! A webhook with a secret gets `X-Kiln-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use std::net::IpAddr;
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

/// Whether `ip` is an address a webhook must not reach unless an admin allows it: loopback,
/// link-local (cloud metadata services answer at 169.254.169.254), private and shared ranges,
/// unspecified, broadcast and multicast, IPv4 inside IPv6 included.
pub fn private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Why a webhook may not be sent to `url` (`None`: it may): not http(s), or a host that is
/// (or resolves to) a loopback, link-local or private address, unless `allow_private`
/// (the server's `--allow-private-webhooks`). Checked when a webhook is added and again
/// before each delivery, so a name that later resolves inward is refused too.
pub async fn target_refusal(url: &str, allow_private: bool) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => return Some(format!("webhook URL `{url}` is not an http:// or https:// URL")),
    };
    if allow_private {
        return None;
    }
    let host = parsed.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().unwrap_or(80);
    let refused = |ip: IpAddr| {
        format!(
            "webhook URL `{url}` reaches {ip}, a loopback, link-local or private address: \
             refused unless the server runs with --allow-private-webhooks"
        )
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return private_ip(ip).then(|| refused(ip));
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Some(refused(IpAddr::from([127, 0, 0, 1])));
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).find(|ip| private_ip(*ip)).map(refused),
        Err(e) => Some(format!("webhook URL `{url}`: the host `{host}` does not resolve: {e}")),
    }
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
        let refusal = target_refusal(&d.url, reg.config.webhook_private_targets).await;
        let error = match body(&d.payload) {
            _ if refusal.is_some() => refusal,
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
    fn inward_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(private_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!private_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn targets_inward_are_refused_unless_allowed() {
        for url in
            ["http://169.254.169.254/", "http://localhost:8080/x", "http://[::1]/", "ftp://x"]
        {
            assert!(target_refusal(url, false).await.is_some(), "{url}");
        }
        assert!(target_refusal("http://127.0.0.1:9/hook", true).await.is_none());
        assert!(target_refusal("http://93.184.216.34/hook", false).await.is_none());
        assert!(target_refusal("ftp://x", true).await.is_some());
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
