//! Payloads and signatures: the webhook bodies (`certwatch` and `ctwatch`
//! formats), the follow-up body of a resolved alert, delivery ids per event, and
//! the signature headers (`X-CT-Signature` and Standard Webhooks).
//!
//! Pure, no I/O. Bodies are built on the worker or grace thread that records the
//! alert; signatures on the target threads, per attempt.

use crate::alert::{self, Event, Severity, Sighting};
use crate::config::{SigningKey, WebhookFormat};
use crate::hex;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The follow-up body of a suspicious alert that reached the inventory: its
/// stored body with `severity: info`, and in the `ctwatch` format (the body with
/// an `event` key) `event: resolved`. A stored body that is not a JSON object
/// comes back as it was.
pub fn resolved_body(stored: &[u8]) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut body)) = serde_json::from_slice(stored) else {
        return stored.to_vec();
    };
    if body.contains_key("event") {
        body.insert("event".into(), Event::Resolved.as_str().into());
    }
    body.insert("severity".into(), Severity::Info.as_str().into());
    serde_json::to_vec(&body).expect("a JSON object serialises")
}

/// Builds webhook bodies in the configured format.
#[derive(Clone, Copy, Debug)]
pub struct Payload {
    pub format: WebhookFormat,
}

/// The `certwatch` body (README, "Webhook"), field for field.
#[derive(Serialize)]
struct CertwatchBody<'a> {
    fingerprint_sha1: Option<&'a str>,
    severity: &'a str,
    matched_entries: &'a [String],
    matched_sans: &'a [String],
    all_sans: &'a [String],
    issuer_o: Option<&'a str>,
    issuer_cn: Option<&'a str>,
    not_before: Option<i64>,
    not_after: Option<i64>,
    lifetime_days: Option<f64>,
    source_log: Option<&'a str>,
    cert_link: Option<&'a str>,
    serial: Option<&'a str>,
    update_type: &'a str,
    seen_at: i64,
    /// certwatch extension, only when the database was unreachable: `cached`
    /// (classified against the last inventory snapshot) or `not_checked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<&'a str>,
    /// certwatch extension: `feed`, or `backfill` (read from the CT log after the
    /// feed skipped its entry).
    detected_via: &'a str,
}

/// The CT Watch body (README, "Webhook"), plus `severity`, a certwatch extension that a
/// receiver may route on (also sent as the `X-Certwatch-Severity` header).
#[derive(Serialize)]
struct CtwatchBody<'a> {
    event: &'a str,
    matched_at_ms: i64,
    rules: Vec<Rule<'a>>,
    certificate: CtwatchCertificate<'a>,
    severity: &'a str,
    /// certwatch extension, as in the certwatch body.
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<&'a str>,
    /// certwatch extension, as in the certwatch body.
    detected_via: &'a str,
}

#[derive(Serialize)]
struct Rule<'a> {
    id: u64,
    kind: &'a str,
    pattern: &'a str,
}

#[derive(Serialize)]
struct CtwatchCertificate<'a> {
    log_id: Option<&'a str>,
    leaf_index: Option<u64>,
    entry_type: &'a str,
    timestamp_ms: i64,
    reversed_apex: Option<String>,
    sans: &'a [String],
    issuer: Option<&'a str>,
    not_before: Option<i64>,
    not_after: Option<i64>,
    fingerprint: Option<&'a str>,
    serial: Option<&'a str>,
}

impl Payload {
    /// The exact body bytes for this alert.
    pub fn body(&self, s: &Sighting, severity: Severity) -> Vec<u8> {
        let json = match self.format {
            WebhookFormat::Certwatch => serde_json::to_vec(&certwatch(s, severity)),
            WebhookFormat::Ctwatch => serde_json::to_vec(&ctwatch(s, severity)),
        };
        json.expect("payload serialises")
    }
}

fn certwatch(s: &Sighting, severity: Severity) -> CertwatchBody<'_> {
    let c = &s.cert;
    CertwatchBody {
        fingerprint_sha1: c.fingerprint_sha1.as_deref(),
        severity: severity.as_str(),
        matched_entries: &s.matched_entries,
        matched_sans: &s.matched_sans,
        all_sans: &c.all_domains,
        issuer_o: c.issuer_o.as_deref(),
        issuer_cn: c.issuer_cn.as_deref(),
        not_before: c.not_before,
        not_after: c.not_after,
        lifetime_days: alert::lifetime_days(c.not_before, c.not_after),
        source_log: c.source_name.as_deref(),
        cert_link: c.cert_link.as_deref(),
        serial: c.serial.as_deref(),
        update_type: c.entry_type.update_type(),
        seen_at: alert::seen_at(s),
        inventory: s.inventory.body_field(),
        detected_via: s.detected_via.as_str(),
    }
}

fn ctwatch(s: &Sighting, severity: Severity) -> CtwatchBody<'_> {
    let c = &s.cert;
    let seen_ms = c
        .seen
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| (t * 1000.0).round() as i64);
    CtwatchBody {
        event: Event::Match.as_str(),
        matched_at_ms: s.received_at_ms,
        rules: s
            .matched_entries
            .iter()
            .map(|entry| Rule {
                id: rule_id(entry),
                kind: "domain",
                pattern: entry,
            })
            .collect(),
        certificate: CtwatchCertificate {
            log_id: c.source_url.as_deref(),
            leaf_index: c.cert_index,
            entry_type: c.entry_type.as_str(),
            timestamp_ms: c
                .source_timestamp_ms
                .or(seen_ms)
                .unwrap_or(s.received_at_ms),
            reversed_apex: s.matched_sans.first().map(|name| reversed_apex(name)),
            sans: &c.all_domains,
            issuer: c.issuer_dn.as_deref(),
            not_before: c.not_before,
            not_after: c.not_after,
            fingerprint: c.sha256.as_deref(),
            serial: c.serial.as_deref(),
        },
        severity: severity.as_str(),
        inventory: s.inventory.body_field(),
        detected_via: s.detected_via.as_str(),
    }
}

/// A stable numeric id for a watch entry: the first 48 bits of its SHA-256, so
/// the same on every restart and replica and exact in any JSON reader.
pub fn rule_id(entry: &str) -> u64 {
    let digest = Sha256::digest(entry.as_bytes());
    digest[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// The registrable domain of `name` (public suffix list), labels reversed:
/// `www.example.co.uk` -> `uk.co.example`. A name that is itself a public
/// suffix, or has none, is reversed whole.
pub fn reversed_apex(name: &str) -> String {
    let name = name
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let apex = psl::domain_str(&name).unwrap_or(&name);
    apex.rsplit('.').collect::<Vec<_>>().join(".")
}

/// The signing keys: the current `WEBHOOK_SECRET` and, during a rotation,
/// `WEBHOOK_SECRET_PREVIOUS`.
#[derive(Clone, Debug)]
pub struct Signer {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

impl Signer {
    /// The signature headers for one attempt: `X-CT-Signature` (`sha256=` and the
    /// hex HMAC-SHA256 of the body with the current key only: a CT Watch receiver
    /// compares the whole header with one value) and the Standard Webhooks trio
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64
    /// HMAC-SHA256 of "id.timestamp.body">`, one per key, space-separated).
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let standard = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(|k| standard_signature(k.standard_key(), id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            ("X-CT-Signature", ct_signature(self.current.ct_key(), body)),
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", standard),
        ]
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `sha256=<hex HMAC-SHA256 of body>`, keyed by the secret's bytes.
pub fn ct_signature(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(&hmac_sha256(key, &[body])))
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the Standard Webhooks
/// key ([`SigningKey::standard_key`]: a `whsec_` secret's decoded bytes).
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(
        key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event_delivery_id;

    #[test]
    fn ct_signature_matches_rfc_4231_case_2() {
        assert_eq!(
            ct_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signature_matches_the_reference_example() {
        // The example of the Standard Webhooks reference libraries.
        let secret = SigningKey::parse("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(
                secret.standard_key(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_x_ct_once_with_the_new_key_and_standard_twice() {
        let key = |v: &str| SigningKey::parse("S", v).unwrap();
        let signer = Signer {
            current: key("new"),
            previous: Some(key("old")),
        };
        let headers = signer.headers("id-1", 1_700_000_000, b"{}");
        let get = |name: &str| headers.iter().find(|(k, _)| *k == name).unwrap().1.clone();
        assert_eq!(get("X-CT-Signature"), ct_signature(b"new", b"{}"));
        assert_eq!(
            get("webhook-signature"),
            format!(
                "{} {}",
                standard_signature(b"new", "id-1", 1_700_000_000, b"{}"),
                standard_signature(b"old", "id-1", 1_700_000_000, b"{}")
            )
        );
        assert_eq!(get("webhook-id"), "id-1");
        assert_eq!(get("webhook-timestamp"), "1700000000");
    }

    #[test]
    fn reversed_apex_follows_the_public_suffix_list() {
        assert_eq!(reversed_apex("www.example.co.uk"), "uk.co.example");
        assert_eq!(reversed_apex("*.a.b.example.com"), "com.example");
        assert_eq!(reversed_apex("example.com."), "com.example");
        assert_eq!(reversed_apex("foo.github.io"), "io.github.foo");
        assert_eq!(reversed_apex("co.uk"), "uk.co");
    }

    #[test]
    fn resolved_bodies_say_info_and_in_ctwatch_resolved() {
        let certwatch = resolved_body(br#"{"severity":"suspicious","serial":"0F"}"#);
        let v: serde_json::Value = serde_json::from_slice(&certwatch).unwrap();
        assert_eq!(v, serde_json::json!({"severity": "info", "serial": "0F"}));
        let ctwatch = resolved_body(br#"{"event":"match","severity":"suspicious","x":1}"#);
        let v: serde_json::Value = serde_json::from_slice(&ctwatch).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "resolved", "severity": "info", "x": 1})
        );
        assert_eq!(resolved_body(b"not json"), b"not json");
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        assert_eq!(event_delivery_id("abc", Event::Match), "abc");
        let resolved = event_delivery_id("abc", Event::Resolved);
        assert_eq!(resolved, event_delivery_id("abc", Event::Resolved));
        assert_ne!(resolved, "abc");
        assert_eq!(resolved.len(), 36);
        assert!(rule_id("example.com") < (1 << 48));
        assert_eq!(rule_id("example.com"), rule_id("example.com"));
        assert_ne!(rule_id("example.com"), rule_id("example.org"));
    }
}
