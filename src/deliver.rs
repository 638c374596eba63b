//! Delivery: the `deliver` thread that POSTs alerts to every webhook target,
//! retries on its own schedule, and records per-target outcomes.
//!
//! Alerts arrive already written to `public.alerts` (from the workers, the grace
//! thread, or the timer's redelivery sweep). A round POSTs to every target still
//! owed; failed targets are retried after 1 s, then 4 s (or a later
//! `Retry-After`), in a timer heap, so a slow or dead receiver never makes a
//! worker or the feed reader wait. After the last round the row stays
//! `delivered = false` with its next attempt time, for the sweep to pick up.

use crate::alert::{Event, Severity};
use crate::metrics::{DbOp, Metrics, Queue, WebhookResult};
use crate::payload::Signer;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::threads::{DelayQueue, unix_now};
use crossbeam_channel::{Receiver, select};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Rounds per delivery before it is left to the redelivery sweep.
pub const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// How long delivery may go on once shutdown has begun; what is left stays
/// undelivered in `public.alerts`.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(10);

/// Wait before round `n + 1` after `n` failed rounds: 1 s, 4 s, 16 s, ...
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(4u64.saturating_pow(failures.saturating_sub(1)))
}

/// One webhook receiver.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    /// Stable key of this target in `public.alerts.delivered_targets`: a hash of
    /// the URL, so it survives reordering and never stores the URL itself.
    pub key: String,
    /// How logs name it: its position and host, never its path or query.
    pub label: String,
}

impl Target {
    pub fn new(index: usize, url: &str) -> Target {
        use sha2::Digest;
        let key = crate::certstream::hex_lower(&sha2::Sha256::digest(url.as_bytes())[..8]);
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host = host.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        Target {
            url: url.to_string(),
            key,
            label: format!("webhook #{} ({host})", index + 1),
        }
    }
}

/// An alert event to POST. Carries its body, so retries send the same bytes.
pub struct Delivery {
    /// The alert's id (`public.alerts.delivery_id`).
    pub delivery_id: String,
    pub event: Event,
    /// What the body says (`info` for a resolved follow-up): `X-Certwatch-Severity`.
    pub severity: Severity,
    pub body: Vec<u8>,
    /// Indexes into the targets of those that have not accepted it yet.
    pub owed: Vec<usize>,
    /// For an alert whose row could not be written yet (database down): set once
    /// every target accepted, so the row is marked delivered when it is written.
    pub unrecorded: Option<Arc<AtomicBool>>,
    failures: u32,
    retry_after: Option<Duration>,
}

impl Delivery {
    /// A first delivery to every target.
    pub fn new(
        delivery_id: String,
        event: Event,
        severity: Severity,
        body: Vec<u8>,
        targets: usize,
    ) -> Delivery {
        Delivery {
            delivery_id,
            event,
            severity,
            body,
            owed: (0..targets).collect(),
            unrecorded: None,
            failures: 0,
            retry_after: None,
        }
    }

    /// A first delivery of an alert still waiting to be written.
    pub fn unrecorded(mut self, delivered: Arc<AtomicBool>) -> Delivery {
        self.unrecorded = Some(delivered);
        self
    }
}

/// What the deliver thread needs.
pub struct Deliverer {
    pub targets: Vec<Target>,
    pub signer: Option<Signer>,
    pub agent: ureq::Agent,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// Base interval of the redelivery sweep; rounds that fail schedule the next
    /// redelivery on a growing multiple of it.
    pub redelivery_interval: Duration,
}

/// The agent every POST goes through: no redirects (a 3xx is a failure), a
/// whole-request timeout, status codes as values. With the SSRF guard on, no
/// proxy from the environment is used, since a proxy would resolve the target
/// out of the guard's sight.
pub fn agent_config(timeout: Duration, deny_private: bool) -> ureq::config::Config {
    let builder = ureq::Agent::config_builder();
    let builder = if deny_private {
        builder.proxy(None)
    } else {
        builder
    };
    builder
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(concat!("certwatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The deliver thread: runs until every producer has dropped its sender, then
/// gives each delivery still waiting for a retry one last round, within
/// `DRAIN_BUDGET` of the shutdown.
pub fn run_deliver(d: Deliverer, input: Receiver<Delivery>) {
    let depth = d.metrics.queue(Queue::Deliver);
    let mut retries: DelayQueue<Delivery> = DelayQueue::default();
    loop {
        let timer = retries.timer();
        let mut due = Vec::new();
        select! {
            recv(input) -> msg => match msg {
                Ok(delivery) => due.push(delivery),
                Err(_) => break,
            },
            recv(timer) -> _ => {
                let now = Instant::now();
                while let Some(delivery) = retries.pop_due(now) {
                    due.push(delivery);
                }
            }
        }
        for delivery in due {
            if let Some(again) = round(&d, delivery) {
                let wait = backoff(again.failures).max(again.retry_after.unwrap_or_default());
                retries.push(Instant::now() + wait, again);
            }
        }
        depth.set((input.len() + retries.len()) as i64);
    }
    for delivery in retries.drain() {
        if let Some(left) = round(&d, delivery) {
            log::warn!(
                "shutdown: alert {} left for the redelivery sweep",
                left.delivery_id
            );
        }
    }
    depth.set(0);
}

/// The outcome of one POST.
enum Outcome {
    Accepted,
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

/// One round: a POST to every target still owed. Returns the delivery when a
/// round should follow.
fn round(d: &Deliverer, mut delivery: Delivery) -> Option<Delivery> {
    if d.shutdown.is_set() && d.shutdown.elapsed_since_set() >= DRAIN_BUDGET {
        log::warn!(
            "shutdown: alert {} left undelivered (drain budget spent)",
            delivery.delivery_id
        );
        return None;
    }
    let id = crate::alert::event_delivery_id(&delivery.delivery_id, delivery.event);
    let mut accepted = Vec::new();
    let mut errors = Vec::new();
    delivery.retry_after = None;
    delivery.owed.retain(|&index| {
        let target = &d.targets[index];
        match post(
            d,
            target,
            &id,
            (delivery.event, delivery.severity),
            &delivery.body,
        ) {
            Outcome::Accepted => {
                d.metrics.webhook_result(WebhookResult::Success).inc();
                accepted.push(target.key.clone());
                false
            }
            Outcome::Failed { error, retry_after } => {
                d.metrics.webhook_result(WebhookResult::Failure).inc();
                delivery.retry_after = delivery.retry_after.max(retry_after);
                errors.push(format!("{}: {error}", target.label));
                true
            }
        }
    });
    let done = delivery.owed.is_empty();
    if done && let Some(delivered) = &delivery.unrecorded {
        // Set before the row update: whichever of this and the row's insertion
        // comes second marks the row.
        delivered.store(true, Ordering::SeqCst);
    }
    if !done {
        delivery.failures += 1;
    }
    let gave_up = !done && delivery.failures >= ATTEMPTS;
    let all_keys: Vec<String> = d.targets.iter().map(|t| t.key.clone()).collect();
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    let next_redelivery = gave_up.then_some(d.redelivery_interval);
    if let Err(e) = d.store.record_round(
        &delivery.delivery_id,
        delivery.event,
        &accepted,
        &all_keys,
        error.as_deref(),
        next_redelivery,
    ) {
        d.metrics.db_error(DbOp::Delivery);
        log::warn!(
            "alert {}: delivery state not recorded: {e}",
            delivery.delivery_id
        );
    }
    if done {
        log::info!(
            "alert {} ({}) delivered",
            delivery.delivery_id,
            delivery.event.as_str()
        );
        None
    } else if gave_up {
        d.metrics.webhook_gave_up.inc();
        log::error!(
            "alert {} ({}) undelivered after {} rounds, left for the redelivery sweep: {}",
            delivery.delivery_id,
            delivery.event.as_str(),
            delivery.failures,
            error.unwrap_or_default()
        );
        None
    } else {
        log::warn!(
            "alert {} round {} failed, retrying: {}",
            delivery.delivery_id,
            delivery.failures,
            error.unwrap_or_default()
        );
        Some(delivery)
    }
}

fn post(
    d: &Deliverer,
    target: &Target,
    id: &str,
    (event, severity): (Event, Severity),
    body: &[u8],
) -> Outcome {
    let mut request = d
        .agent
        .post(&target.url)
        .header("Content-Type", "application/json")
        .header("X-CT-Event", event.as_str())
        .header("X-CT-Delivery", id)
        .header("X-Certwatch-Severity", severity.as_str());
    if let Some(signer) = &d.signer {
        for (name, value) in signer.headers(id, unix_now(), body) {
            request = request.header(name, value);
        }
    }
    let started = Instant::now();
    let mut result = request.send(body);
    if let Ok(response) = &mut result {
        drain(response);
    }
    d.metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) if response.status().is_success() => Outcome::Accepted,
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = if matches!(status, 429 | 503) {
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .map(|d| d.min(RETRY_AFTER_CAP))
            } else {
                None
            };
            if status == 410 {
                log::error!(
                    "{} answered 410 Gone: the receiver is retired; fix WEBHOOK_URL",
                    target.label
                );
            }
            Outcome::Failed {
                error: format!("HTTP {status}"),
                retry_after,
            }
        }
        Err(e) => Outcome::Failed {
            error: e.to_string(),
            retry_after: None,
        },
    }
}

/// Largest response body read so the connection can be kept for the next alert;
/// a longer one is left unread and its connection closed.
const KEEP_ALIVE_BODY_BYTES: u64 = 64 << 10;

/// Reads the response body to its end (bounded): ureq returns a connection to
/// its pool only then, and without it every alert would open a new TCP (and
/// TLS) connection. The body itself is not used.
fn drain(response: &mut ureq::http::Response<ureq::Body>) {
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(KEEP_ALIVE_BODY_BYTES)
        .reader();
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
}

/// `Retry-After` as delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate_to_unix(value)?;
    Some(Duration::from_secs(
        u64::try_from(when - unix_now()).unwrap_or(0),
    ))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to unix seconds.
fn httpdate_to_unix(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
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
    fn retry_after_in_both_spellings() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn targets_are_labelled_without_secrets() {
        let t = Target::new(
            1,
            "https://user:pw@n8n.example:5678/webhook/9f1c-secret?token=x",
        );
        assert_eq!(t.label, "webhook #2 (n8n.example:5678)");
        assert_eq!(t.key.len(), 16);
        assert_eq!(
            t.key,
            Target::new(
                7,
                "https://user:pw@n8n.example:5678/webhook/9f1c-secret?token=x"
            )
            .key
        );
    }
}
