//! Delivery: one `deliver-N` thread per webhook target (`webhook #N`), each with
//! its own bounded queue, retry schedule and kept-alive connection, so that a slow
//! or dead receiver delays only itself.
//!
//! Alerts arrive already written to `public.alerts` (from the workers, the grace
//! thread, or the timer's redelivery sweep), handed over by [`Fanout::send`] on the
//! producer's thread: one [`Job`] per target still owed, `try_send` into that
//! target's queue. A target thread POSTs, retries a failure after 1 s, then 4 s (or
//! a later `Retry-After`), and records each outcome in the row
//! (`delivered_targets`; `delivered` once every target accepted). When the last
//! target working on an event is done and one of them gave up, the row is
//! scheduled for the redelivery sweep; until then its lease keeps other
//! replicas' sweeps away. An outcome the database could not take (Postgres down)
//! is kept by the target thread (bounded) and written when it can be, every 5 s,
//! so an acceptance is not redelivered and a failure is swept at its interval
//! rather than when the row's 5-minute lease ends.

use crate::alert::{Event, Severity};
use crate::clock::unix_now;
use crate::config::MAX_WEBHOOK_TARGETS;
use crate::metrics::{DbOp, Metrics, Queue, WebhookResult};
use crate::outbound;
use crate::payload::Signer;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::threads::DelayQueue;
use crossbeam_channel::{Receiver, Sender, select};
use prometheus::IntGauge;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Attempts per target before an event is left to the redelivery sweep.
pub const ATTEMPTS: u32 = 3;
/// How long delivery may go on once shutdown has begun, on every target thread
/// together; what is left stays undelivered in `public.alerts`.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(10);
/// Alert events one target may hold (queued or waiting for a retry); past it,
/// that target's share of a new alert waits in the database for the sweep.
pub const TARGET_QUEUE: usize = 1024;

/// Wait before attempt `n + 1` after `n` failed attempts: 1 s, 4 s, 16 s, ...
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
        let key = crate::hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8]);
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

/// The targets that accepted an alert whose row could not be written yet
/// (database down): the row is marked for them when it is written.
#[derive(Debug, Default)]
pub struct Accepted(Mutex<Vec<String>>);

impl Accepted {
    /// Keys (`Target::key`) of the targets that accepted it so far.
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().expect("accepted lock poisoned").clone()
    }

    fn add(&self, key: &str) {
        let mut keys = self.0.lock().expect("accepted lock poisoned");
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }
}

/// An alert event to POST, as its producer hands it to [`Fanout::send`]. Carries
/// its body, so retries send the same bytes.
pub struct Delivery {
    /// The alert's id (`public.alerts.delivery_id`).
    pub delivery_id: String,
    pub event: Event,
    /// What the body says (`info` for a resolved follow-up): `X-Certwatch-Severity`.
    pub severity: Severity,
    pub body: Vec<u8>,
    /// Indexes into the targets of those that have not accepted it yet.
    pub owed: Vec<usize>,
    /// For an alert whose row could not be written yet (database down): every
    /// target that accepts it is added, so the row is marked when it is written.
    pub unrecorded: Option<Arc<Accepted>>,
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
        }
    }

    /// A first delivery of an alert still waiting to be written.
    pub fn unrecorded(mut self, accepted: Arc<Accepted>) -> Delivery {
        self.unrecorded = Some(accepted);
        self
    }
}

/// One alert event, shared by the target threads that owe it.
struct Alert {
    delivery_id: String,
    /// `X-CT-Delivery` of this event: the same on every attempt.
    id: String,
    event: Event,
    severity: Severity,
    body: Vec<u8>,
    /// Target threads (and, while it hands the event out, the producer) still
    /// working on this hand-over: the last one schedules the sweep.
    holders: AtomicUsize,
    /// A target gave up on it (or could not take it): the row needs the sweep.
    gave_up: AtomicBool,
    unrecorded: Option<Arc<Accepted>>,
}

/// The message of a target thread's queue: one event for that target.
pub struct Job {
    alert: Arc<Alert>,
    failures: u32,
    retry_after: Option<Duration>,
}

/// The events one target thread holds (queued or waiting for a retry), by
/// `X-CT-Delivery`: bounds it, and keeps a second copy of an event it already
/// holds (a sweep whose lease ran out meanwhile) out.
struct Holding {
    events: Mutex<HashSet<String>>,
    /// `certwatch_queue_depth{queue="webhook #N"}`.
    depth: IntGauge,
    /// `certwatch_queue_depth{queue="deliver"}`: every target's together.
    total: IntGauge,
    /// It was full and has not had room since: warned once per episode.
    full: AtomicBool,
}

/// Whether a target thread could take an event.
enum Take {
    Taken,
    AlreadyHeld,
    Full,
}

impl Holding {
    fn take(&self, id: &str) -> Take {
        let mut events = self.events.lock().expect("holding lock poisoned");
        if events.contains(id) {
            return Take::AlreadyHeld;
        }
        if events.len() >= TARGET_QUEUE {
            return Take::Full;
        }
        self.full.store(false, Ordering::Relaxed);
        events.insert(id.to_string());
        drop(events);
        self.depth.inc();
        self.total.inc();
        Take::Taken
    }

    fn release(&self, id: &str) {
        if self
            .events
            .lock()
            .expect("holding lock poisoned")
            .remove(id)
        {
            self.depth.dec();
            self.total.dec();
        }
    }
}

/// The sending end of one target's queue.
struct Lane {
    tx: Sender<Job>,
    holding: Arc<Holding>,
    label: String,
}

/// Hands alert events to the target threads; every producer (workers, grace,
/// the sweep) holds a clone. When the last clone is dropped, the target threads
/// drain and end.
#[derive(Clone)]
pub struct Fanout {
    lanes: Arc<[Lane]>,
    metrics: Arc<Metrics>,
}

impl Fanout {
    /// One job per target still owed, `try_send`: never waits. A target that
    /// already holds this event is skipped; one that holds `TARGET_QUEUE` events
    /// leaves it to the redelivery sweep.
    pub fn send(&self, delivery: Delivery) {
        let alert = Arc::new(Alert {
            id: crate::alert::event_delivery_id(&delivery.delivery_id, delivery.event),
            delivery_id: delivery.delivery_id,
            event: delivery.event,
            severity: delivery.severity,
            body: delivery.body,
            holders: AtomicUsize::new(delivery.owed.len() + 1),
            gave_up: AtomicBool::new(false),
            unrecorded: delivery.unrecorded,
        });
        let mut released = 1;
        for &index in &delivery.owed {
            let Some(lane) = self.lanes.get(index) else {
                released += 1;
                continue;
            };
            match lane.holding.take(&alert.id) {
                Take::Taken => {}
                Take::AlreadyHeld => {
                    log::debug!(
                        "alert {} ({}) is already on its way to {}",
                        alert.delivery_id,
                        alert.event.as_str(),
                        lane.label
                    );
                    released += 1;
                    continue;
                }
                Take::Full => {
                    if lane.holding.full.swap(true, Ordering::Relaxed) {
                        log::debug!(
                            "{} is full: alert {} ({}) left for the redelivery sweep",
                            lane.label,
                            alert.delivery_id,
                            alert.event.as_str()
                        );
                    } else {
                        log::warn!(
                            "{} holds {TARGET_QUEUE} alerts already: new alerts for it are left \
                             for the redelivery sweep until it has room (first: {} ({}))",
                            lane.label,
                            alert.delivery_id,
                            alert.event.as_str()
                        );
                    }
                    alert.gave_up.store(true, Ordering::SeqCst);
                    released += 1;
                    continue;
                }
            }
            let job = Job {
                alert: alert.clone(),
                failures: 0,
                retry_after: None,
            };
            // Never full: the queue has room for everything `holding` admits.
            if lane.tx.try_send(job).is_err() {
                lane.holding.release(&alert.id);
                log::error!(
                    "{}: its delivery thread is gone; alert {} stays undelivered in public.alerts",
                    lane.label,
                    alert.delivery_id
                );
                alert.gave_up.store(true, Ordering::SeqCst);
                released += 1;
            }
        }
        if alert.holders.fetch_sub(released, Ordering::SeqCst) == released
            && alert.gave_up.load(Ordering::SeqCst)
        {
            self.metrics.webhook_gave_up.inc();
        }
    }
}

/// What every target thread needs.
pub struct Deliverer {
    pub targets: Vec<Target>,
    pub signer: Option<Signer>,
    pub agent: ureq::Agent,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// `WEBHOOK_TIMEOUT_S`: the whole-request timeout the agent was built with.
    pub timeout: Duration,
    /// Base interval of the redelivery sweep; an event a target gave up on is
    /// scheduled for the sweep on a growing multiple of it.
    pub redelivery_interval: Duration,
}

/// One target's thread: its target, its queue, and what it shares with the others.
pub struct TargetThread {
    shared: Arc<Deliverer>,
    target: Target,
    /// The thread's name: `deliver-N` for `webhook #N`.
    pub name: String,
    input: Receiver<Job>,
    holding: Arc<Holding>,
    /// Keys of every target: the row is delivered once all of them accepted.
    all_keys: Arc<[String]>,
    unwritten: std::cell::RefCell<Unwritten>,
}

/// Outcomes the database did not take, oldest first (at most `UNWRITTEN`), and
/// when they are tried again (`None` while there are none).
#[derive(Default)]
struct Unwritten {
    rounds: std::collections::VecDeque<Round>,
    retry_at: Option<Instant>,
}

/// Outcomes a target thread keeps while the database cannot take them; past
/// this, the oldest row is left to its lease and the sweep.
const UNWRITTEN: usize = 10_000;
/// How often kept outcomes are tried again.
const WRITE_AGAIN: Duration = Duration::from_secs(5);

/// One target's outcome for one event, as written to its row.
struct Round {
    delivery_id: String,
    event: Event,
    accepted: bool,
    error: Option<String>,
    redelivery: Option<Duration>,
}

/// The fan-out and one thread body per target, each with its bounded queue.
pub fn targets(d: Deliverer) -> (Fanout, Vec<TargetThread>) {
    assert!(
        d.targets.len() <= MAX_WEBHOOK_TARGETS,
        "the configuration admits at most {MAX_WEBHOOK_TARGETS} targets"
    );
    let metrics = d.metrics.clone();
    let total = metrics.queue(Queue::Deliver);
    let all_keys: Arc<[String]> = d.targets.iter().map(|t| t.key.clone()).collect();
    let shared = Arc::new(d);
    let mut lanes = Vec::new();
    let mut threads = Vec::new();
    for (index, target) in shared.targets.iter().enumerate() {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(TARGET_QUEUE);
        let holding = Arc::new(Holding {
            events: Mutex::new(HashSet::new()),
            depth: metrics.webhook_queue(index),
            total: total.clone(),
            full: AtomicBool::new(false),
        });
        lanes.push(Lane {
            tx,
            holding: holding.clone(),
            label: target.label.clone(),
        });
        threads.push(TargetThread {
            shared: shared.clone(),
            target: target.clone(),
            name: format!("deliver-{}", index + 1),
            input: rx,
            holding,
            all_keys: all_keys.clone(),
            unwritten: Default::default(),
        });
    }
    let fanout = Fanout {
        lanes: lanes.into(),
        metrics,
    };
    (fanout, threads)
}

/// A target thread: runs until every producer has dropped its `Fanout`, then
/// gives each event still waiting for a retry one last attempt, within
/// `DRAIN_BUDGET` of the shutdown.
pub fn run_target(t: TargetThread) {
    let mut retries: DelayQueue<Job> = DelayQueue::default();
    let mut conn = Connection::default();
    loop {
        let timer = retries.timer();
        let write_again = match t.unwritten.borrow().retry_at {
            Some(at) => crossbeam_channel::at(at),
            None => crossbeam_channel::never(),
        };
        let mut due = Vec::new();
        select! {
            recv(t.input) -> msg => match msg {
                Ok(job) => due.push(job),
                Err(_) => break,
            },
            recv(timer) -> _ => {
                let now = Instant::now();
                while let Some(job) = retries.pop_due(now) {
                    due.push(job);
                }
            }
            recv(write_again) -> _ => t.write_again(),
        }
        for job in due {
            if let Some(again) = t.attempt(&mut conn, job, false) {
                let wait = backoff(again.failures).max(again.retry_after.unwrap_or_default());
                retries.push(Instant::now() + wait, again);
            }
        }
    }
    for job in retries.drain() {
        t.attempt(&mut conn, job, true);
    }
    t.write_again();
    let unwritten = t.unwritten.borrow().rounds.len();
    if unwritten > 0 {
        log::warn!(
            "shutdown: the delivery state of {unwritten} alerts to {} not written (database \
             unreachable); the sweep takes them up when their leases end",
            t.target.label
        );
    }
    if conn.left > 0 {
        log::warn!(
            "shutdown: {} alerts left undelivered to {} (drain budget spent); the redelivery sweep sends them",
            conn.left,
            t.target.label
        );
    }
}

/// What a target thread knows of its connection, and its shutdown tally.
#[derive(Default)]
struct Connection {
    /// The last exchange left a connection open for the next one.
    kept_alive: bool,
    /// Events not attempted because the drain budget was spent.
    left: usize,
}

/// The outcome of one attempt.
enum Outcome {
    Accepted,
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

/// How a target thread is done with an event.
enum End<'a> {
    Accepted,
    GaveUp(&'a str),
    /// Not attempted: shutdown and the drain budget spent.
    Left,
}

impl TargetThread {
    /// One attempt; returns the job when another should follow (`last`: at
    /// shutdown, none will).
    fn attempt(&self, conn: &mut Connection, mut job: Job, last: bool) -> Option<Job> {
        let Some(timeout) = self.time_left() else {
            conn.left += 1;
            self.finish(&job.alert, End::Left);
            return None;
        };
        let alert = job.alert.clone();
        let alert = &*alert;
        match self.post(conn, alert, timeout) {
            Outcome::Accepted => {
                self.shared
                    .metrics
                    .webhook_result(WebhookResult::Success)
                    .inc();
                log::info!(
                    "alert {} ({}) delivered to {}",
                    alert.delivery_id,
                    alert.event.as_str(),
                    self.target.label
                );
                self.finish(alert, End::Accepted);
                None
            }
            Outcome::Failed { error, retry_after } => {
                self.shared
                    .metrics
                    .webhook_result(WebhookResult::Failure)
                    .inc();
                job.failures += 1;
                let error = format!("{}: {error}", self.target.label);
                if job.failures >= ATTEMPTS || last {
                    log::error!(
                        "alert {} ({}) undelivered after {} attempts, left for the redelivery sweep: {error}",
                        alert.delivery_id,
                        alert.event.as_str(),
                        job.failures
                    );
                    self.finish(alert, End::GaveUp(&error));
                    return None;
                }
                log::warn!(
                    "alert {} ({}) attempt {} failed, retrying: {error}",
                    alert.delivery_id,
                    alert.event.as_str(),
                    job.failures
                );
                self.record(alert, false, Some(&error), None);
                job.retry_after = retry_after;
                Some(job)
            }
        }
    }

    /// The timeout of the next attempt: `WEBHOOK_TIMEOUT_S`, or during shutdown
    /// what is left of the drain budget (`None` once it is spent).
    fn time_left(&self) -> Option<Duration> {
        let shutdown = &self.shared.shutdown;
        if !shutdown.is_set() {
            return Some(self.shared.timeout);
        }
        DRAIN_BUDGET
            .checked_sub(shutdown.elapsed_since_set())
            .filter(|left| !left.is_zero())
            .map(|left| left.min(self.shared.timeout))
    }

    /// This target is done with `alert`: records the outcome and lets go of it.
    /// The last target done with an event one of them gave up on schedules it
    /// for the sweep (before that, its lease keeps other replicas away).
    fn finish(&self, alert: &Alert, end: End<'_>) {
        match end {
            End::Accepted => {
                if let Some(accepted) = &alert.unrecorded {
                    // Before the row update: whichever of this and the row's
                    // insertion comes second marks the row.
                    accepted.add(&self.target.key);
                }
            }
            End::GaveUp(_) => alert.gave_up.store(true, Ordering::SeqCst),
            // The row keeps its lease; the sweep takes it up when that is over.
            End::Left => {}
        }
        let last = alert.holders.fetch_sub(1, Ordering::SeqCst) == 1;
        let redeliver = last && alert.gave_up.load(Ordering::SeqCst) && !matches!(end, End::Left);
        if redeliver {
            self.shared.metrics.webhook_gave_up.inc();
        }
        let redelivery = redeliver.then_some(self.shared.redelivery_interval);
        match end {
            End::Accepted => self.record(alert, true, None, redelivery),
            End::GaveUp(error) => self.record(alert, false, Some(error), redelivery),
            End::Left => {}
        }
        // Only now: until the row says so, a second copy must not come in.
        self.holding.release(&alert.id);
    }

    fn record(
        &self,
        alert: &Alert,
        accepted: bool,
        error: Option<&str>,
        redelivery: Option<Duration>,
    ) {
        let round = Round {
            delivery_id: alert.delivery_id.clone(),
            event: alert.event,
            accepted,
            error: error.map(str::to_string),
            redelivery,
        };
        // Behind outcomes already kept, a new one waits its turn (in order).
        if !self.unwritten.borrow().rounds.is_empty() {
            self.keep(round);
            return;
        }
        if let Err(e) = self.write(&round) {
            log::warn!(
                "alert {}: delivery state not recorded ({e}); written once the database \
                 answers",
                alert.delivery_id
            );
            self.keep(round);
        }
    }

    /// Writes one outcome to its row.
    fn write(&self, round: &Round) -> Result<(), crate::store::StoreError> {
        let key = [self.target.key.clone()];
        let accepted: &[String] = if round.accepted { &key } else { &[] };
        self.shared
            .store
            .record_round(
                &round.delivery_id,
                round.event,
                accepted,
                &self.all_keys,
                round.error.as_deref(),
                round.redelivery,
            )
            .inspect_err(|_| self.shared.metrics.db_error(DbOp::Delivery))
    }

    /// Keeps an outcome to write later (the oldest is given up past `UNWRITTEN`).
    fn keep(&self, round: Round) {
        let mut unwritten = self.unwritten.borrow_mut();
        if unwritten.rounds.len() >= UNWRITTEN
            && let Some(oldest) = unwritten.rounds.pop_front()
        {
            log::warn!(
                "alert {}: delivery state given up after {UNWRITTEN} kept; the sweep takes \
                 it up when its lease ends",
                oldest.delivery_id
            );
        }
        unwritten.rounds.push_back(round);
        unwritten
            .retry_at
            .get_or_insert_with(|| Instant::now() + WRITE_AGAIN);
    }

    /// Writes the kept outcomes, oldest first, until the database refuses one.
    fn write_again(&self) {
        let mut written = 0;
        loop {
            let Some(round) = self.unwritten.borrow_mut().rounds.pop_front() else {
                self.unwritten.borrow_mut().retry_at = None;
                break;
            };
            if self.write(&round).is_err() {
                let mut unwritten = self.unwritten.borrow_mut();
                unwritten.rounds.push_front(round);
                unwritten.retry_at = Some(Instant::now() + WRITE_AGAIN);
                break;
            }
            written += 1;
        }
        if written > 0 {
            log::info!(
                "delivery state of {written} alerts to {} written now that the database answers",
                self.target.label
            );
        }
    }

    /// One attempt: a POST, and a second at once on a new connection when the
    /// receiver had closed the kept-alive one (not a failure of the receiver).
    fn post(&self, conn: &mut Connection, alert: &Alert, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let mut result = self.send(alert, timeout);
        if conn.kept_alive && matches!(&result, Err(ureq::Error::Io(e)) if closed_by_peer(e.kind()))
        {
            let rest = timeout.saturating_sub(started.elapsed());
            if !rest.is_zero() {
                log::debug!(
                    "{} had closed the kept-alive connection: alert {} again on a new one",
                    self.target.label,
                    alert.delivery_id
                );
                result = self.send(alert, rest);
            }
        }
        conn.kept_alive = matches!(&result, Ok(response) if keeps_alive(response));
        self.shared
            .metrics
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
                        .and_then(outbound::parse_retry_after)
                        .map(|d| d.min(outbound::RETRY_AFTER_CAP))
                } else {
                    None
                };
                if status == 410 {
                    log::error!(
                        "{} answered 410 Gone: the receiver is retired; fix WEBHOOK_URL",
                        self.target.label
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

    /// One POST of `alert`, its response body read (bounded) so the connection
    /// can serve the next one.
    fn send(
        &self,
        alert: &Alert,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self
            .shared
            .agent
            .post(&self.target.url)
            .header("Content-Type", "application/json")
            .header("X-CT-Event", alert.event.as_str())
            .header("X-CT-Delivery", &alert.id)
            .header("X-Certwatch-Severity", alert.severity.as_str());
        if let Some(signer) = &self.shared.signer {
            for (name, value) in signer.headers(&alert.id, unix_now(), &alert.body) {
                request = request.header(name, value);
            }
        }
        if timeout != self.shared.timeout {
            request = request.config().timeout_global(Some(timeout)).build();
        }
        let mut result = request.send(&alert.body[..]);
        if let Ok(response) = &mut result {
            drain(response);
        }
        result
    }
}

/// An I/O error that means the peer closed the connection.
fn closed_by_peer(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Whether the connection of `response` stays open for the next request.
fn keeps_alive(response: &ureq::http::Response<ureq::Body>) -> bool {
    let close = response
        .headers()
        .get_all("connection")
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    !close && response.version() == ureq::http::Version::HTTP_11
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
