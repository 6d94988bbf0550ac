//! Webhooks: each message as a signed JSON POST.
//!
//! The body is the message's JSON. The signature lets the receiver check
//! that the body came from this server and was not replayed much later:
//!
//! ```text
//! Patchaudit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! Patchaudit-Message-Id: <the message's stable id>
//! ```
//!
//! The receiver recomputes the HMAC over the timestamp, a dot and the raw
//! body, compares in constant time, and refuses a timestamp too far from
//! its clock. A delivery is retried with exponential backoff; after
//! `max_attempts` failures it is set aside as a dead letter (listed and
//! replayed with `patchaudit stream dead-letters` and `replay`) and the
//! webhook goes on with the next message, so one bad message cannot stop
//! it for good.

use super::{Message, Sink, SinkError};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use patchaudit_store::stream::{DeadLetter, NewDeadLetter};
use patchaudit_store::Store;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The signing secret of a webhook; never shown by `Debug`.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        WebhookSecret(s.into())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(****)")
    }
}

/// One configured webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// The HMAC key.
    pub secret: WebhookSecret,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles each retry, up to a minute.
    pub first_backoff: Duration,
}

/// Signs `body` at unix time `t`: the value of `Patchaudit-Signature`.
pub fn sign(secret: &WebhookSecret, t: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `Patchaudit-Signature` value against `body`, as a receiver
/// would: the HMAC must match (compared in constant time) and `t` must lie
/// within `tolerance` seconds of `now`.
pub fn verify(secret: &WebhookSecret, header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if t.abs_diff(now) > tolerance {
        return false;
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// Delivers to one webhook URL.
pub struct WebhookSink {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
    store: Arc<dyn Store>,
}

impl WebhookSink {
    /// A sink for `config`, keeping dead letters in `store`. Its name is
    /// `webhook:` and the first 12 hex digits of the URL's SHA-256, so it
    /// stays the same whatever order webhooks are configured in.
    pub fn new(config: WebhookConfig, store: Arc<dyn Store>) -> Self {
        let digest = Sha256::digest(config.url.as_bytes());
        WebhookSink {
            name: format!("webhook:{}", &hex::encode(digest)[..12]),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            config,
            store,
        }
    }

    /// The webhook's URL.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// One signed POST; the error says why it was not a 2xx.
    pub async fn post(&self, message_id: &str, body: &[u8]) -> Result<(), String> {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let response = self
            .client
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("Patchaudit-Message-Id", message_id)
            .header("Patchaudit-Signature", sign(&self.config.secret, t, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("POST {}: {e}", self.config.url))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {}: HTTP {status}", self.config.url))
        }
    }

    /// Delivers a dead letter again; on success it is removed.
    pub async fn replay(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        self.post(&letter.message_id, letter.payload.as_bytes())
            .await
            .map_err(SinkError::Unavailable)?;
        self.store.remove_dead_letter(letter.id).await?;
        Ok(())
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, batch: &[Message]) -> Result<(), SinkError> {
        for m in batch {
            let mut wait = self.config.first_backoff;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.post(&m.id, &m.body).await {
                    Ok(()) => break,
                    Err(e) if attempt >= self.config.max_attempts.max(1) => {
                        tracing::warn!(webhook = %self.name, message = %m.id, attempts = attempt, error = %e, "webhook delivery gave up; kept as a dead letter");
                        metrics::counter!("patchaudit_webhook_dead_letters_total", "sink" => self.name.clone()).increment(1);
                        self.store
                            .add_dead_letter(NewDeadLetter {
                                sink: self.name.clone(),
                                message_id: m.id.clone(),
                                payload: String::from_utf8_lossy(&m.body).into_owned(),
                                attempts: attempt,
                                error: e,
                            })
                            .await?;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(webhook = %self.name, message = %m.id, attempt, error = %e, "webhook delivery failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let secret = WebhookSecret::new("s3cret");
        let body = br#"{"seq":1}"#;
        let sig = sign(&secret, 1_700_000_000, body);
        assert!(sig.starts_with("t=1700000000,v1="));
        assert!(verify(&secret, &sig, body, 1_700_000_010, 300));
        assert!(!verify(&secret, &sig, br#"{"seq":2}"#, 1_700_000_010, 300));
        assert!(!verify(
            &WebhookSecret::new("other"),
            &sig,
            body,
            1_700_000_010,
            300
        ));
        assert!(!verify(&secret, &sig, body, 1_700_001_000, 300), "too old");
        assert!(!verify(&secret, "v1=00", body, 1_700_000_000, 300));
        assert_eq!(format!("{secret:?}"), "WebhookSecret(****)");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently
        // with `printf '1.{}' | openssl dgst -sha256 -hmac key`.
        let sig = sign(&WebhookSecret::new("key"), 1, b"{}");
        assert_eq!(
            sig,
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
