//! Delivery: webhook payloads, HMAC signatures, and the `deliver` thread that
//! POSTs alerts, retries them on its own schedule and records the outcome.
//!
//! Alerts arrive already written to `public.alerts`. The thread keeps failed
//! attempts in a timer heap (backoff 1 s, then 4 s), so a slow or dead receiver
//! never makes a worker or the feed reader wait. After the last attempt the row
//! stays `delivered = false` with its error, logged and counted.

use crate::classify::{Severity, Sighting};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{self, Store};
use crossbeam_channel::{Receiver, select};
use hmac::{KeyInit, Mac};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Attempts per alert before it is left undelivered.
pub const ATTEMPTS: u32 = 3;

/// Wait before attempt `n + 1` after `n` failures: 1 s, 4 s, 16 s, ...
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(4u64.saturating_pow(failures.saturating_sub(1)))
}

/// An alert to POST. Carries its body, so retries send the same bytes.
pub struct Delivery {
    pub delivery_id: String,
    pub body: Vec<u8>,
    /// For an alert whose row could not be written yet (database down): set on
    /// success, so the row is marked delivered when it is written.
    pub unrecorded: Option<Arc<AtomicBool>>,
    failures: u32,
}

impl Delivery {
    /// A delivery of an alert whose row is in `public.alerts`.
    pub fn recorded(delivery_id: String, body: Vec<u8>) -> Delivery {
        Delivery {
            delivery_id,
            body,
            unrecorded: None,
            failures: 0,
        }
    }

    /// A delivery of an alert still waiting to be written; `delivered` is set on success.
    pub fn unrecorded(delivery_id: String, body: Vec<u8>, delivered: Arc<AtomicBool>) -> Delivery {
        Delivery {
            delivery_id,
            body,
            unrecorded: Some(delivered),
            failures: 0,
        }
    }
}

/// Builds webhook bodies.
#[derive(Clone, Copy, Debug)]
pub struct Payload;

/// The `certwatch` webhook body (SPEC §6), field for field.
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
}

impl Payload {
    /// The exact body bytes for this alert.
    pub fn body(&self, s: &Sighting, severity: Severity) -> Vec<u8> {
        let c = &s.cert;
        let body = CertwatchBody {
            fingerprint_sha1: c.fingerprint_sha1.as_deref(),
            severity: severity.as_str(),
            matched_entries: &s.matched_entries,
            matched_sans: &s.matched_sans,
            all_sans: &c.all_domains,
            issuer_o: c.issuer_o.as_deref(),
            issuer_cn: c.issuer_cn.as_deref(),
            not_before: c.not_before,
            not_after: c.not_after,
            lifetime_days: store::lifetime_days(c.not_before, c.not_after),
            source_log: c.source_name.as_deref(),
            cert_link: c.cert_link.as_deref(),
            serial: c.serial.as_deref(),
            update_type: c.entry_type.update_type(),
            seen_at: store::seen_at(s),
        };
        serde_json::to_vec(&body).expect("payload serialises")
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-CT-Signature` value.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What the deliver thread needs.
pub struct Deliverer {
    pub url: String,
    pub secret: Option<Secret>,
    pub timeout: Duration,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
}

/// How long delivery may go on once shutdown has begun; what is left stays
/// undelivered in `public.alerts`.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(10);

/// The deliver thread: runs until every producer has dropped its sender, then
/// gives each alert still waiting for a retry one last attempt, within
/// `DRAIN_BUDGET` of the shutdown.
pub fn run_deliver(d: Deliverer, input: Receiver<Delivery>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(d.timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(concat!("certwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let depth = d.metrics.queue_depth.with_label_values(&["deliver"]);
    let mut retries: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting: std::collections::HashMap<u64, Delivery> = std::collections::HashMap::new();
    let mut next_id = 0u64;
    let mut schedule = |delivery: Delivery,
                        retries: &mut BinaryHeap<_>,
                        waiting: &mut std::collections::HashMap<_, _>| {
        retries.push(Reverse((
            Instant::now() + backoff(delivery.failures),
            next_id,
        )));
        waiting.insert(next_id, delivery);
        next_id += 1;
    };
    loop {
        let timer = match retries.peek() {
            Some(Reverse((due, _))) => crossbeam_channel::at(*due),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(input) -> msg => match msg {
                Ok(delivery) => {
                    if let Some(again) = attempt(&d, &agent, delivery) {
                        schedule(again, &mut retries, &mut waiting);
                    }
                }
                Err(_) => break,
            },
            recv(timer) -> _ => {
                let now = Instant::now();
                while let Some(Reverse((due, id))) = retries.peek().copied() {
                    if due > now {
                        break;
                    }
                    retries.pop();
                    if let Some(delivery) = waiting.remove(&id)
                        && let Some(again) = attempt(&d, &agent, delivery)
                    {
                        schedule(again, &mut retries, &mut waiting);
                    }
                }
            }
        }
        depth.set((input.len() + waiting.len()) as i64);
    }
    let deadline = Instant::now() + DRAIN_BUDGET;
    for (_, delivery) in waiting.drain() {
        if Instant::now() >= deadline {
            log::warn!(
                "shutdown: alert {} left undelivered for a later retry",
                delivery.delivery_id
            );
            continue;
        }
        if let Some(left) = attempt(&d, &agent, delivery) {
            log::warn!(
                "shutdown: alert {} left undelivered for a later retry",
                left.delivery_id
            );
        }
    }
    depth.set(0);
}

/// One POST. Returns the delivery when it should be tried again. Once the
/// shutdown's drain budget is spent, no POST is made and the alert stays
/// undelivered.
fn attempt(d: &Deliverer, agent: &ureq::Agent, mut delivery: Delivery) -> Option<Delivery> {
    if d.shutdown.is_set() && d.shutdown.elapsed_since_set() >= DRAIN_BUDGET {
        log::warn!(
            "shutdown: alert {} left undelivered (drain budget spent)",
            delivery.delivery_id
        );
        return None;
    }
    let started = Instant::now();
    let result = post(d, agent, &delivery);
    d.metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            d.metrics.webhook.with_label_values(&["success"]).inc();
            log::info!("alert {} delivered", delivery.delivery_id);
            if let Some(delivered) = &delivery.unrecorded {
                // Set before the update: whichever of this and the row's insertion
                // comes second marks the row.
                delivered.store(true, Ordering::SeqCst);
            }
            if let Err(e) = d.store.mark_delivered(&delivery.delivery_id, 1) {
                d.metrics.db_error("delivery");
                log::warn!(
                    "alert {} delivered but not marked: {e}",
                    delivery.delivery_id
                );
            }
            None
        }
        Err(error) => {
            d.metrics.webhook.with_label_values(&["failure"]).inc();
            delivery.failures += 1;
            if let Err(e) = d.store.mark_failed(&delivery.delivery_id, 1, &error) {
                d.metrics.db_error("delivery");
                log::warn!("alert {} failure not recorded: {e}", delivery.delivery_id);
            }
            if delivery.failures >= ATTEMPTS {
                d.metrics.webhook_gave_up.inc();
                log::error!(
                    "alert {} undelivered after {} attempts: {error}",
                    delivery.delivery_id,
                    delivery.failures
                );
                None
            } else {
                log::warn!(
                    "alert {} attempt {} failed, retrying in {:?}: {error}",
                    delivery.delivery_id,
                    delivery.failures,
                    backoff(delivery.failures)
                );
                Some(delivery)
            }
        }
    }
}

fn post(d: &Deliverer, agent: &ureq::Agent, delivery: &Delivery) -> Result<(), String> {
    let mut request = agent
        .post(&d.url)
        .header("Content-Type", "application/json")
        .header("X-CT-Event", "match")
        .header("X-CT-Delivery", &delivery.delivery_id);
    if let Some(secret) = &d.secret {
        request = request.header("X-CT-Signature", signature(secret, &delivery.body));
    }
    match request.send(&delivery.body[..]) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_1_then_4_then_16_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(16));
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let secret = Secret::new("Jefe");
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
