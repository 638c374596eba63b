//! A Standard Webhooks verifier written from the specification
//! (<https://www.standardwebhooks.com/>), independent of certwatch's signer, to
//! check real deliveries as a receiver would:
//!
//! - the signed content is `{webhook-id}.{webhook-timestamp}.{body}`;
//! - the signature is the base64 (standard alphabet, padded) HMAC-SHA256 of it,
//!   prefixed `v1,`; `webhook-signature` is a space-separated list of them;
//! - the key is the base64 after `whsec_` (unpadded accepted: padding is added
//!   first, as the Python reference library does);
//! - a timestamp more than 5 minutes away from now is refused.

use base64::Engine;
use hmac::{KeyInit, Mac};

const TOLERANCE_S: i64 = 300;

/// The HMAC key of a `whsec_` secret; `None` when it is not valid base64.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    let mut padded = b64.to_string();
    while padded.len() % 4 != 0 {
        padded.push('=');
    }
    base64::engine::general_purpose::STANDARD
        .decode(padded)
        .ok()
        .filter(|k| !k.is_empty())
}

/// Verifies a delivery's `webhook-*` headers and body with the `whsec_` secret.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let key = secret_key(secret).ok_or("the secret is not whsec_ base64")?;
    let (id, timestamp, signatures) = match (id, timestamp, signatures) {
        (Some(i), Some(t), Some(s)) => (i, t, s),
        _ => return Err("missing webhook-id, webhook-timestamp or webhook-signature".into()),
    };
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not an integer"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > TOLERANCE_S {
        return Err(format!(
            "timestamp {ts} is more than {TOLERANCE_S} s from now"
        ));
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let matched = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(version, sig)| version == "v1" && sig == expected);
    if matched {
        Ok(())
    } else {
        Err(format!("no v1 signature in {signatures:?} matches"))
    }
}

/// `verify` on a received delivery.
pub fn verify_received(secret: &str, rx: &crate::Received) -> Result<(), String> {
    verify(
        secret,
        rx.header("webhook-id"),
        rx.header("webhook-timestamp"),
        rx.header("webhook-signature"),
        &rx.body,
    )
}
