//! Classification: the worker pool (`worker-N` threads) and the `grace` thread.
//!
//! A worker takes raw frames from the feed, `peek`s them, matches the leaf's
//! names against the current watch list, and for a match parses the certificate
//! in full, works out its issuance key, drops copies it has seen (in-memory LRU),
//! and checks the inventory. A known certificate becomes an `info` alert at once;
//! a miss goes to the `grace` thread's delay queue, which re-checks it when its
//! `SUSPICIOUS_GRACE_S` is up, so no worker ever waits. Alerts are written to
//! `public.alerts` (which also deduplicates across restarts and replicas) before
//! they are handed to the webhook target threads (`deliver::Fanout`).

use crate::certstream::{self, Certificate, EntryType, Peek};
use crate::deliver::{Accepted, Delivery, Fanout};
use crate::matcher::{EntryId, WatchList};
use crate::metrics::{DbOp, Label, MessageKind, Metrics, Queue};
use crate::payload::{Event, Payload};
use crate::store::{AlertRow, Store, StoreError};
use crate::threads::{DelayQueue, Health, unix_now};
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, select};
use lru::LruCache;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Issuance keys remembered in memory.
pub const DEDUPE_CAPACITY: usize = 2048;

/// One raw feed frame, as the reader received it.
pub enum Frame {
    Text(tungstenite::Utf8Bytes),
    Binary(tungstenite::Bytes),
}

impl Frame {
    /// Payload bytes, as counted against the `QueueBudget`.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frames the feed hands to the workers in one channel message: under load a
/// worker wakes once for many frames, not once for each.
pub type Batch = Vec<Frame>;

/// The frames queued for the workers, bounded in count and in bytes: a burst
/// is dropped (and counted) rather than growing memory without bound. The feed
/// reserves a frame before it queues it; a worker releases it when done.
pub struct QueueBudget {
    frames: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
}

impl QueueBudget {
    pub fn new(max_frames: usize, max_bytes: usize) -> QueueBudget {
        QueueBudget {
            frames: std::sync::atomic::AtomicUsize::new(0),
            bytes: std::sync::atomic::AtomicUsize::new(0),
            max_frames,
            max_bytes,
        }
    }

    /// Takes one frame of `len` bytes from the budget, or returns false when it
    /// does not fit. Only the feed reserves, so a check then an add cannot overshoot.
    pub fn try_reserve(&self, len: usize) -> bool {
        if self.frames.load(Ordering::Acquire) >= self.max_frames
            || self.bytes.load(Ordering::Acquire) + len > self.max_bytes
        {
            return false;
        }
        self.frames.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// Gives back `frames` frames of `bytes` bytes in all.
    pub fn release(&self, frames: usize, bytes: usize) {
        self.frames.fetch_sub(frames, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Frames queued now.
    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::Acquire)
    }
}

/// How an alert is classified (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// In the inventory.
    Info,
    /// Not in the inventory after the grace period.
    Suspicious,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Suspicious => "suspicious",
        }
    }
}

/// A matched certificate on its way to becoming an alert.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub cert: Certificate,
    /// Watch entries matched, sorted.
    pub matched_entries: Vec<String>,
    /// The certificate's names that matched, in feed order.
    pub matched_sans: Vec<String>,
    /// Hex SHA-256 of the issuance identity (SPEC §5).
    pub issuance_key: String,
    /// Empty for the first certificate of an issuance; the fingerprint of a second,
    /// different certificate claiming the same issuance.
    pub collision_fingerprint: String,
    /// Unix seconds when certwatch received it.
    pub received_at: i64,
    /// The same in milliseconds (`matched_at_ms` of the ctwatch payload).
    pub received_at_ms: i64,
}

impl Sighting {
    /// Stable id of this alert for receivers (`X-CT-Delivery`): the same on every
    /// retry, redelivery, restart and replica.
    pub fn delivery_id(&self) -> String {
        let digest = Sha256::digest(
            format!("{}/{}", self.issuance_key, self.collision_fingerprint).as_bytes(),
        );
        crate::payload::uuid_shaped(&digest)
    }
}

/// The issuance key: normalised serial, validity and sorted lower-case names.
/// A precertificate and its final certificate share it, also when a
/// precertificate signing certificate (PSC) signed the precertificate and the
/// lite stream does not say which CA is above it; so do the full and the lite
/// stream. The issuer is left out of the key and compared by [`verdict`]: a
/// certificate from another CA with the same serial, validity and names meets
/// the first under this key and alerts as a collision.
pub fn issuance_key(cert: &Certificate) -> String {
    identity_hash("certwatch-issuance-v2", None, cert)
}

/// The issuance key of certwatch before 0.1 (issuer key id, else issuer DN, in
/// the hash): what rows written by an older version carry. Checked once per new
/// alert so that an upgrade does not alert again for what was just alerted.
pub fn legacy_issuance_key(cert: &Certificate) -> String {
    let issuer = cert
        .issuer_key_id
        .as_deref()
        .or(cert.issuer_dn.as_deref())
        .unwrap_or("");
    identity_hash("certwatch-issuance-v1", Some(issuer), cert)
}

fn identity_hash(version: &str, issuer: Option<&str>, cert: &Certificate) -> String {
    let mut hasher = Sha256::new();
    let mut parts = vec![version];
    parts.extend(issuer);
    let validity = [
        cert.not_before.map_or(String::new(), |t| t.to_string()),
        cert.not_after.map_or(String::new(), |t| t.to_string()),
    ];
    parts.push(cert.serial.as_deref().unwrap_or(""));
    parts.extend(validity.iter().map(String::as_str));
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    for name in &cert.names {
        hasher.update(name.as_bytes());
        hasher.update([b'\n']);
    }
    crate::payload::hex_lower(&hasher.finalize())
}

/// What deduplication remembers of a certificate seen for an issuance key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenCert {
    pub entry_type: Option<EntryType>,
    /// SHA-1 fingerprint, `None` for a tiled precertificate.
    pub fingerprint: Option<String>,
    /// The issuing CA's key id (past a PSC when the chain shows one).
    pub issuer_key_id: Option<String>,
    pub issuer_dn: Option<String>,
    pub issuer_o: Option<String>,
    /// The leaf's own subject key identifier.
    pub subject_key_id: Option<String>,
}

impl SeenCert {
    pub fn of(cert: &Certificate) -> SeenCert {
        SeenCert {
            entry_type: Some(cert.entry_type),
            fingerprint: cert.fingerprint_sha1.clone(),
            issuer_key_id: cert.issuer_key_id.clone(),
            issuer_dn: cert.issuer_dn.clone(),
            issuer_o: cert.issuer_o.clone(),
            subject_key_id: cert.subject_key_id.clone(),
        }
    }
}

/// The certificates seen for one issuance key.
pub type SeenCerts = Vec<SeenCert>;

/// Whether two certificates of one issuance key come from the same CA: the same
/// issuer key id (else the same issuer DN; nothing to compare counts as the
/// same), or a precertificate/final pair across a PSC as the lite stream shows
/// it: the precertificate names the PSC, the final certificate the CA above it,
/// and both carry the same leaf subject key identifier and issuer organisation.
pub fn same_issuer(a: &SeenCert, b: &SeenCert) -> bool {
    let direct = match (&a.issuer_key_id, &b.issuer_key_id) {
        (Some(x), Some(y)) => x == y,
        _ => match (&a.issuer_dn, &b.issuer_dn) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        },
    };
    direct || psc_pair(a, b)
}

fn psc_pair(a: &SeenCert, b: &SeenCert) -> bool {
    let types = matches!(
        (a.entry_type, b.entry_type),
        (Some(EntryType::Precert), Some(EntryType::X509))
            | (Some(EntryType::X509), Some(EntryType::Precert))
    );
    let both_equal = |x: &Option<String>, y: &Option<String>| x.is_some() && x == y;
    types
        && both_equal(&a.subject_key_id, &b.subject_key_id)
        && both_equal(&a.issuer_o, &b.issuer_o)
}

/// What a certificate is relative to what was already seen for its issuance key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First certificate of this issuance.
    New,
    /// The same certificate again (another log), or the other half of a
    /// precertificate/final pair: no new alert.
    Copy,
    /// Another certificate of the same entry type with another fingerprint, or
    /// one from another CA: alerts.
    Collision,
}

/// Decides the verdict for `cand` given what was seen for its key. Only
/// certificates of the same issuer ([`same_issuer`]) can be copies; none of them
/// makes a collision. Among them, a missing fingerprint (tiled precertificate)
/// cannot tell certificates apart, so it counts as a copy of any certificate of
/// its type.
pub fn verdict(seen: &[SeenCert], cand: &SeenCert) -> Verdict {
    if seen.is_empty() {
        return Verdict::New;
    }
    let mut related = seen.iter().filter(|s| same_issuer(s, cand)).peekable();
    if related.peek().is_none() {
        return Verdict::Collision;
    }
    let mut any_same_type = false;
    for s in related.filter(|s| s.entry_type == cand.entry_type) {
        any_same_type = true;
        match (s.fingerprint.as_deref(), cand.fingerprint.as_deref()) {
            (Some(a), Some(b)) if a != b => {}
            _ => return Verdict::Copy,
        }
    }
    if any_same_type {
        Verdict::Collision
    } else {
        Verdict::Copy
    }
}

/// What sets a colliding certificate's row apart (`collision_fingerprint`): its
/// SHA-1 fingerprint, else its SHA-256, else its issuer.
pub fn collision_id(cert: &Certificate) -> String {
    cert.fingerprint_sha1
        .clone()
        .or_else(|| cert.sha256.clone())
        .unwrap_or_else(|| {
            let issuer = cert.issuer_key_id.as_deref().or(cert.issuer_dn.as_deref());
            format!("issuer:{}", issuer.unwrap_or("?"))
        })
}

/// The in-memory deduplication: the last `DEDUPE_CAPACITY` issuance keys with the
/// certificates seen for each. Locked briefly, never across I/O.
pub struct Dedupe {
    seen: Mutex<LruCache<String, SeenCerts>>,
}

impl Default for Dedupe {
    fn default() -> Dedupe {
        Dedupe {
            seen: Mutex::new(LruCache::new(
                NonZeroUsize::new(DEDUPE_CAPACITY).expect("capacity is non-zero"),
            )),
        }
    }
}

impl Dedupe {
    /// Records the certificate and returns its verdict, atomically, so two workers
    /// holding copies from two logs cannot both see `New`.
    pub fn observe(&self, key: &str, cert: SeenCert) -> (Verdict, usize) {
        let mut seen = self.seen.lock().expect("dedupe lock poisoned");
        let verdict = match seen.get_mut(key) {
            Some(list) => {
                let v = verdict(list, &cert);
                let type_known = list
                    .iter()
                    .any(|s| s.entry_type == cert.entry_type && same_issuer(s, &cert));
                if v != Verdict::Copy || !type_known {
                    list.push(cert);
                }
                v
            }
            None => {
                seen.put(key.to_string(), vec![cert]);
                Verdict::New
            }
        };
        (verdict, seen.len())
    }
}

/// Alerts held in memory while the database is down, at most.
pub const UNRECORDED_CAPACITY: usize = 10_000;
/// How often the grace thread tries to write held alerts.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// An alert whose row the database could not take yet.
pub struct Unrecorded {
    sighting: Sighting,
    severity: Severity,
    delivery_id: String,
    body: Vec<u8>,
    /// The webhook targets that accepted it (set by their threads).
    delivered: Arc<Accepted>,
}

/// A sighting waiting out its grace period on the `grace` thread.
pub struct Pending {
    pub due: Instant,
    pub sighting: Sighting,
}

/// State shared by the workers and the grace thread.
pub struct Classifier {
    pub watch: Arc<ArcSwap<WatchList>>,
    pub dedupe: Dedupe,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub grace: Duration,
    pub payload: Payload,
    /// `None` in observer mode.
    pub deliver: Option<Fanout>,
    /// Keys of the webhook targets (`deliver::Target::key`).
    pub target_keys: Vec<String>,
    /// Alerts waiting for the database to come back (bounded).
    pub unrecorded: Mutex<VecDeque<Unrecorded>>,
}

/// Per-worker cached metric handles and reusable buffers.
struct WorkerState {
    /// By `MessageKind::index`.
    by_kind: Vec<IntCounter>,
    ids: Vec<EntryId>,
    name_ids: Vec<EntryId>,
}

/// A worker: runs until the feed drops its sender and the queue is drained.
pub fn run_worker(
    cls: Arc<Classifier>,
    batches: Receiver<Batch>,
    pending: Sender<Pending>,
    budget: Arc<QueueBudget>,
) {
    let mut state = WorkerState {
        by_kind: MessageKind::ALL
            .iter()
            .map(|k| cls.metrics.ct_message(*k))
            .collect(),
        ids: Vec::new(),
        name_ids: Vec::new(),
    };
    for batch in batches {
        let bytes = batch.iter().map(Frame::len).sum();
        let _release = ReleaseOnDrop(&budget, batch.len(), bytes);
        // Counted locally and published once per batch, so the workers do not
        // contend on shared counters for every frame.
        let mut by_kind = [0u64; MessageKind::ALL.len()];
        let mut parse_errors = 0;
        let now = unix_now();
        for frame in &batch {
            let text = match frame {
                Frame::Text(t) => t.as_str(),
                Frame::Binary(b) => match std::str::from_utf8(b) {
                    Ok(t) => t,
                    Err(_) => {
                        parse_errors += 1;
                        log::debug!("skipped a binary frame that is not UTF-8");
                        continue;
                    }
                },
            };
            match handle_frame(&cls, &mut state, text, &pending, now) {
                Some(kind) => by_kind[kind.index()] += 1,
                None => parse_errors += 1,
            }
        }
        for (counter, n) in state.by_kind.iter().zip(by_kind) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if parse_errors > 0 {
            cls.metrics.ct_parse_errors.inc_by(parse_errors);
        }
        if by_kind[MessageKind::CertificateUpdate.index()] > 0 {
            cls.health.last_ct_event.store(now, Ordering::Relaxed);
            cls.metrics.last_ct_event.set(now);
        }
    }
}

/// Gives a batch's frames and bytes back to the budget when the worker is done
/// with it.
struct ReleaseOnDrop<'a>(&'a QueueBudget, usize, usize);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release(self.1, self.2);
    }
}

/// Handles one message; returns its kind, or `None` when it is malformed.
fn handle_frame(
    cls: &Classifier,
    state: &mut WorkerState,
    text: &str,
    pending: &Sender<Pending>,
    now: i64,
) -> Option<MessageKind> {
    let peeked = match certstream::peek(text) {
        Ok(p) => p,
        Err(e) => {
            log::debug!("{e}");
            return None;
        }
    };
    let kind = peeked.kind();
    if let Peek::Certificate { all_domains } = peeked {
        classify_names(cls, state, text, &all_domains, pending, now);
    }
    Some(kind)
}

/// Matches a certificate's names and, for a match, classifies it.
fn classify_names(
    cls: &Classifier,
    state: &mut WorkerState,
    text: &str,
    all_domains: &[std::borrow::Cow<'_, str>],
    pending: &Sender<Pending>,
    now: i64,
) {
    let watch = cls.watch.load();
    state.ids.clear();
    let mut matched_sans: Vec<&str> = Vec::new();
    for name in all_domains {
        state.name_ids.clear();
        if watch.matches(name, &mut state.name_ids) {
            matched_sans.push(name);
            for id in &state.name_ids {
                if !state.ids.contains(id) {
                    state.ids.push(*id);
                }
            }
        }
    }
    if state.ids.is_empty() {
        return;
    }
    let cert = match certstream::parse_certificate(text) {
        Ok(cert) => cert,
        Err(e) => {
            cls.metrics.ct_parse_errors.inc();
            log::warn!("matched certificate could not be parsed, skipped: {e}");
            return;
        }
    };
    let mut matched_entries: Vec<String> = state
        .ids
        .iter()
        .map(|id| watch.entry(*id).to_string())
        .collect();
    matched_entries.sort();
    let mut matched_sans: Vec<String> = matched_sans.into_iter().map(str::to_string).collect();
    matched_sans.dedup();
    let issuance_key = issuance_key(&cert);
    let (verdict, cache_size) = cls.dedupe.observe(&issuance_key, SeenCert::of(&cert));
    cls.metrics.dedupe_cache_size.set(cache_size as i64);
    let collision_fingerprint = match verdict {
        Verdict::Copy => {
            log::debug!("copy of issuance {issuance_key} skipped");
            return;
        }
        Verdict::New => String::new(),
        Verdict::Collision => {
            log::warn!(
                "a second {} certificate claims issuance {issuance_key} (serial {})",
                cert.entry_type.as_str(),
                cert.serial.as_deref().unwrap_or("?")
            );
            collision_id(&cert)
        }
    };
    let sighting = Sighting {
        cert,
        matched_entries,
        matched_sans,
        issuance_key,
        collision_fingerprint,
        received_at: now,
        received_at_ms: crate::threads::unix_now_ms(),
    };
    match cls.in_inventory(&sighting) {
        Some(true) => cls.record(sighting, Severity::Info),
        _ if cls.grace.is_zero() => cls.record(sighting, Severity::Suspicious),
        _ => {
            let due = Instant::now() + cls.grace;
            if pending.send(Pending { due, sighting }).is_err() {
                log::error!("grace thread is gone; a sighting could not wait out its grace period");
            }
        }
    }
}

impl Classifier {
    /// Whether the inventory knows this certificate; `None` when the database
    /// could not be asked.
    fn in_inventory(&self, s: &Sighting) -> Option<bool> {
        let cert = &s.cert;
        let result = match cert.entry_type {
            EntryType::X509 => match &cert.fingerprint_sha1 {
                Some(fp) => self.store.inventory_has_fingerprint(fp),
                None => Ok(false),
            },
            // A second precertificate claiming a known issuance is never ours by serial.
            EntryType::Precert if !s.collision_fingerprint.is_empty() => Ok(false),
            EntryType::Precert => match (&cert.serial, cert.not_before, cert.not_after) {
                (Some(serial), Some(nb), Some(na)) => self
                    .store
                    .inventory_sans_by_serial(serial, nb, na)
                    .map(|rows| rows.iter().any(|sans| same_names(sans, cert))),
                _ => Ok(false),
            },
        };
        match result {
            Ok(known) => Some(known),
            Err(e) => {
                self.metrics.db_error(DbOp::Inventory);
                log::warn!("inventory lookup failed: {e}");
                None
            }
        }
    }

    /// Writes the alert row, then hands it to delivery. A row that already exists
    /// (restart, second replica) is not alerted again, unless it turns out to be a
    /// colliding certificate.
    fn record(&self, mut sighting: Sighting, severity: Severity) {
        if sighting.collision_fingerprint.is_empty() && self.alerted_before_upgrade(&sighting) {
            return;
        }
        loop {
            let delivery_id = sighting.delivery_id();
            let body = self.payload.body(&sighting, severity);
            let row = AlertRow {
                sighting: &sighting,
                severity,
                delivery_id: &delivery_id,
                body: &body,
            };
            match self.store.insert_alert(&row) {
                Ok(Some(_)) => {
                    self.health.db_reachable.store(true, Ordering::Relaxed);
                    self.announce(&sighting, severity, &delivery_id);
                    self.dispatch(Delivery::new(
                        delivery_id,
                        Event::Match,
                        severity,
                        body,
                        self.target_keys.len(),
                    ));
                    return;
                }
                Ok(None) if sighting.collision_fingerprint.is_empty() => {
                    // Recorded before (a restart or another replica): decide as the LRU would.
                    let seen = match self.store.seen_for_issuance(&sighting.issuance_key) {
                        Ok(seen) => seen,
                        Err(e) => {
                            self.metrics.db_error(DbOp::Record);
                            log::warn!("dedupe lookup failed: {e}");
                            return;
                        }
                    };
                    if verdict(&seen, &SeenCert::of(&sighting.cert)) != Verdict::Collision {
                        log::debug!("issuance {} already alerted", sighting.issuance_key);
                        return;
                    }
                    sighting.collision_fingerprint = collision_id(&sighting.cert);
                }
                Ok(None) => {
                    log::debug!("collision {} already alerted", sighting.delivery_id());
                    return;
                }
                Err(e) => {
                    self.metrics.db_error(DbOp::Record);
                    self.health.db_reachable.store(false, Ordering::Relaxed);
                    self.announce(&sighting, severity, &delivery_id);
                    self.hold(sighting, severity, delivery_id, body, e);
                    return;
                }
            }
        }
    }

    /// Whether a row written by a version before issuance key v2 (issuer in the
    /// key) already alerted this certificate or its other half: then a restart
    /// onto this version does not alert it again.
    fn alerted_before_upgrade(&self, sighting: &Sighting) -> bool {
        let legacy = legacy_issuance_key(&sighting.cert);
        match self.store.seen_for_issuance(&legacy) {
            Ok(seen) if !seen.is_empty() => {
                let copy = verdict(&seen, &SeenCert::of(&sighting.cert)) == Verdict::Copy;
                if copy {
                    log::debug!("issuance {legacy} was alerted before the upgrade");
                }
                copy
            }
            _ => false,
        }
    }

    /// The database could not take the alert: deliver it anyway and hold the row
    /// in memory (bounded) until the grace thread can write it.
    fn hold(
        &self,
        sighting: Sighting,
        severity: Severity,
        delivery_id: String,
        body: Vec<u8>,
        error: StoreError,
    ) {
        let delivered = Arc::new(Accepted::default());
        let delivery = Delivery::new(
            delivery_id.clone(),
            Event::Match,
            severity,
            body.clone(),
            self.target_keys.len(),
        )
        .unrecorded(delivered.clone());
        let mut held = self.unrecorded.lock().expect("unrecorded lock poisoned");
        if held.len() >= UNRECORDED_CAPACITY {
            drop(held);
            self.metrics.alerts_unrecorded_overflow.inc();
            log::error!(
                "ALERT NOT RECORDED: database unavailable ({error}) and {UNRECORDED_CAPACITY} alerts already held; \
                 {} alert {delivery_id} for {:?} is delivered but never written to public.alerts",
                severity.as_str(),
                sighting.matched_sans
            );
        } else {
            held.push_back(Unrecorded {
                sighting,
                severity,
                delivery_id: delivery_id.clone(),
                body,
                delivered,
            });
            self.metrics.queue(Queue::Unrecorded).set(held.len() as i64);
            drop(held);
            log::warn!(
                "database unavailable ({error}): alert {delivery_id} held until it can be written"
            );
        }
        self.dispatch(delivery);
    }

    /// Writes held alerts while the database takes them; returns how many remain.
    pub fn flush_unrecorded(&self) -> usize {
        loop {
            let Some(item) = self
                .unrecorded
                .lock()
                .expect("unrecorded lock poisoned")
                .pop_front()
            else {
                break;
            };
            let row = AlertRow {
                sighting: &item.sighting,
                severity: item.severity,
                delivery_id: &item.delivery_id,
                body: &item.body,
            };
            match self.store.insert_alert(&row) {
                Ok(inserted) => {
                    if inserted.is_none() {
                        log::info!("held alert {} was already recorded", item.delivery_id);
                    } else {
                        log::info!("held alert {} written to public.alerts", item.delivery_id);
                    }
                    let accepted = item.delivered.keys();
                    if !accepted.is_empty()
                        && let Err(e) = self.store.record_round(
                            &item.delivery_id,
                            Event::Match,
                            &accepted,
                            &self.target_keys,
                            None,
                            None,
                        )
                    {
                        self.metrics.db_error(DbOp::Delivery);
                        log::warn!(
                            "held alert {} written but not marked delivered: {e}",
                            item.delivery_id
                        );
                    }
                }
                Err(_) => {
                    self.unrecorded
                        .lock()
                        .expect("unrecorded lock poisoned")
                        .push_front(item);
                    break;
                }
            }
        }
        let left = self
            .unrecorded
            .lock()
            .expect("unrecorded lock poisoned")
            .len();
        self.metrics.queue(Queue::Unrecorded).set(left as i64);
        left
    }

    fn announce(&self, s: &Sighting, severity: Severity, delivery_id: &str) {
        self.metrics.alert(severity).inc();
        let what = format!(
            "{} alert {delivery_id}: {} certificate for {:?} (entries {:?}), serial {}, issuer {}, log {}",
            severity.as_str(),
            s.cert.entry_type.as_str(),
            s.matched_sans,
            s.matched_entries,
            s.cert.serial.as_deref().unwrap_or("?"),
            s.cert
                .issuer_cn
                .as_deref()
                .or(s.cert.issuer_dn.as_deref())
                .unwrap_or("?"),
            s.cert.source_name.as_deref().unwrap_or("?"),
        );
        match severity {
            Severity::Suspicious => log::warn!("{what}"),
            Severity::Info => log::info!("{what}"),
        }
    }

    fn dispatch(&self, delivery: Delivery) {
        if let Some(deliver) = &self.deliver {
            deliver.send(delivery);
        }
    }
}

/// Whether an inventory row's SANs are the certificate's name set. The feed's
/// `all_domains` may add the subject CN, so the set without it also counts.
fn same_names(inventory_sans: &[String], cert: &Certificate) -> bool {
    let mut inv: Vec<String> = inventory_sans
        .iter()
        .map(|n| certstream::normalize_name(n))
        .collect();
    inv.sort();
    inv.dedup();
    if inv == cert.names {
        return true;
    }
    let Some(cn) = cert.subject_cn.as_deref().map(certstream::normalize_name) else {
        return false;
    };
    !inv.contains(&cn) && cert.names.iter().filter(|n| **n != cn).eq(inv.iter())
}

/// The grace thread: holds misses until their time, re-checks the inventory, and
/// records them. When the workers are gone it re-checks everything still waiting
/// once more, records it, and exits.
pub fn run_grace(cls: Arc<Classifier>, pending: Receiver<Pending>) {
    let mut waiting: DelayQueue<Sighting> = DelayQueue::default();
    let depth = cls.metrics.queue(Queue::Grace);
    let flush = crossbeam_channel::tick(FLUSH_INTERVAL);
    loop {
        let timer = waiting.timer();
        select! {
            recv(pending) -> msg => match msg {
                Ok(p) => waiting.push(p.due, p.sighting),
                Err(_) => break,
            },
            recv(timer) -> _ => {
                let now = Instant::now();
                while let Some(s) = waiting.pop_due(now) {
                    cls.settle(s);
                }
            }
            recv(flush) -> _ => {
                cls.flush_unrecorded();
            }
        }
        depth.set(waiting.len() as i64);
    }
    if !waiting.is_empty() {
        log::info!(
            "shutdown: re-checking {} certificates still in their grace period",
            waiting.len()
        );
    }
    for s in waiting.drain() {
        cls.settle(s);
    }
    depth.set(0);
    let left = cls.flush_unrecorded();
    if left > 0 {
        log::error!(
            "ALERTS NOT RECORDED: shutting down with {left} alerts the database never took \
             (each was logged and delivered when a webhook is set)"
        );
    }
}

impl Classifier {
    /// The end of a grace period: `info` if the inventory knows it now, else `suspicious`.
    fn settle(&self, s: Sighting) {
        let severity = match self.in_inventory(&s) {
            Some(true) => Severity::Info,
            _ => Severity::Suspicious,
        };
        self.record(s, severity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_budget_bounds_frames_and_bytes() {
        let budget = QueueBudget::new(3, 100);
        assert!(budget.try_reserve(10));
        assert!(budget.try_reserve(10));
        assert!(!budget.try_reserve(81), "81 more bytes would make 101");
        assert!(budget.try_reserve(80));
        assert!(!budget.try_reserve(0), "a fourth frame, even empty");
        assert_eq!(budget.frames(), 3);
        budget.release(2, 20);
        assert_eq!(budget.frames(), 1);
        assert!(budget.try_reserve(20));
        assert!(!budget.try_reserve(1), "100 bytes are taken");
    }

    /// A certificate from CA `ca` (key id, DN and organisation derived from it).
    fn seen(t: EntryType, f: Option<&str>, ca: &str) -> SeenCert {
        SeenCert {
            entry_type: Some(t),
            fingerprint: f.map(str::to_string),
            issuer_key_id: Some(format!("{ca}-key")),
            issuer_dn: Some(format!("/CN={ca}")),
            issuer_o: Some(format!("{ca} org")),
            subject_key_id: Some("leaf-key".into()),
        }
    }

    #[test]
    fn verdicts() {
        use EntryType::{Precert, X509};
        let c = |t, f| seen(t, f, "ca");
        assert_eq!(verdict(&[], &c(X509, Some("a"))), Verdict::New);
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(X509, Some("a"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(X509, Some("a"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(Precert, Some("p"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(X509, Some("b"))),
            Verdict::Collision
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(Precert, Some("q"))),
            Verdict::Collision
        );
        assert_eq!(
            verdict(&[c(Precert, None)], &c(Precert, Some("q"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(Precert, None)),
            Verdict::Copy
        );
        assert_eq!(
            verdict(
                &[c(X509, Some("a")), c(X509, Some("b"))],
                &c(X509, Some("b"))
            ),
            Verdict::Copy
        );
    }

    #[test]
    fn another_ca_is_a_collision_and_a_psc_pair_is_not() {
        use EntryType::{Precert, X509};
        let ours = seen(X509, Some("a"), "ca");
        // Another CA reusing serial, validity and names: its own alert, whatever
        // its type and even without a fingerprint.
        for other in [
            seen(X509, Some("b"), "other"),
            seen(Precert, Some("p"), "other"),
            seen(Precert, None, "other"),
        ] {
            assert_eq!(
                verdict(std::slice::from_ref(&ours), &other),
                Verdict::Collision,
                "{other:?}"
            );
        }
        // The lite stream's precertificate through a PSC names the PSC: another
        // key id and DN, same organisation and leaf key: the other half.
        let mut psc_precert = seen(Precert, Some("p"), "ca");
        psc_precert.issuer_key_id = Some("psc-key".into());
        psc_precert.issuer_dn = Some("/CN=ca Precertificate Signing".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &psc_precert),
            Verdict::Copy
        );
        assert_eq!(
            verdict(std::slice::from_ref(&psc_precert), &ours),
            Verdict::Copy
        );
        // ... but not with another leaf key or another organisation, nor two of
        // one type.
        let mut other_leaf = psc_precert.clone();
        other_leaf.subject_key_id = Some("their-key".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_leaf),
            Verdict::Collision
        );
        let mut other_org = psc_precert.clone();
        other_org.issuer_o = Some("elsewhere".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_org),
            Verdict::Collision
        );
        let mut no_leaf_key = psc_precert.clone();
        no_leaf_key.subject_key_id = None;
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &no_leaf_key),
            Verdict::Collision
        );
        let mut other_final = ours.clone();
        other_final.issuer_key_id = Some("psc-key".into());
        other_final.issuer_dn = Some("/CN=ca Precertificate Signing".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_final),
            Verdict::Collision
        );
        // A final certificate from another CA after the PSC pair: still alerts.
        assert_eq!(
            verdict(&[psc_precert, ours], &seen(X509, Some("x"), "other")),
            Verdict::Collision
        );
    }

    #[test]
    fn dedupe_is_bounded_and_remembers_collisions() {
        use EntryType::{Precert, X509};
        let d = Dedupe::default();
        let c = |t, f| seen(t, Some(f), "ca");
        assert_eq!(d.observe("k", c(Precert, "p")).0, Verdict::New);
        assert_eq!(d.observe("k", c(X509, "f")).0, Verdict::Copy);
        assert_eq!(d.observe("k", c(X509, "f")).0, Verdict::Copy);
        assert_eq!(d.observe("k", c(X509, "g")).0, Verdict::Collision);
        assert_eq!(d.observe("k", c(X509, "g")).0, Verdict::Copy);
        assert_eq!(
            d.observe("k", seen(X509, Some("h"), "other")).0,
            Verdict::Collision
        );
        assert_eq!(
            d.observe("k", seen(X509, Some("h"), "other")).0,
            Verdict::Copy
        );
        for i in 0..DEDUPE_CAPACITY + 10 {
            d.observe(&format!("key{i}"), seen(X509, None, "ca"));
        }
        let (v, size) = d.observe("k", c(X509, "f"));
        assert_eq!(v, Verdict::New, "the oldest key was evicted");
        assert_eq!(size, DEDUPE_CAPACITY);
    }

    #[test]
    fn names_compare_with_or_without_the_cn() {
        let mut cert = certstream::parse_certificate(
            r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["a.example","b.example","cn.example"],"subject":{"CN":"cn.example"}}}}"#,
        )
        .unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_names(
            &s(&["A.example", "b.example.", "cn.example"]),
            &cert
        ));
        assert!(same_names(&s(&["b.example", "a.example"]), &cert));
        assert!(!same_names(&s(&["a.example"]), &cert));
        assert!(!same_names(
            &s(&["a.example", "b.example", "c.example"]),
            &cert
        ));
        cert.subject_cn = None;
        assert!(!same_names(&s(&["b.example", "a.example"]), &cert));
    }

    #[test]
    fn delivery_id_is_stable_and_distinguishes_collisions() {
        let cert = certstream::parse_certificate(
            r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["a.example"],"serial_number":"0F"}}}"#,
        )
        .unwrap();
        let mut s = Sighting {
            issuance_key: issuance_key(&cert),
            cert,
            matched_entries: vec![],
            matched_sans: vec![],
            collision_fingerprint: String::new(),
            received_at: 0,
            received_at_ms: 0,
        };
        let first = s.delivery_id();
        assert_eq!(first, s.delivery_id());
        assert_eq!(first.len(), 36);
        s.collision_fingerprint = "ab".into();
        assert_ne!(first, s.delivery_id());
    }
}
