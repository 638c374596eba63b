//! Classification: what a matched certificate becomes. Runs on the callers'
//! threads: the workers (`worker-N`) for a fresh match, the `grace` thread at the
//! end of a grace period.
//!
//! `Classifier::consider` takes a parsed certificate with the watch entries it
//! matched, works out its issuance key, drops copies it has seen (in-memory LRU,
//! `Dedupe`), and checks the inventory (`alert::in_inventory`). A known certificate
//! becomes an `info` alert at once; a miss is handed back to wait out
//! `SUSPICIOUS_GRACE_S` on the grace thread, so no worker ever waits. Alerts are
//! written to `public.alerts` (which also deduplicates across restarts and
//! replicas) before they are handed to delivery; one the database cannot take yet
//! is delivered anyway and handed back to be held (`Next::Held`).

use crate::alert::{
    self, DetectedVia, Event, Identity, InventoryCheck, InventorySnapshot, SeenCert, SeenCerts,
    Severity, Sighting, Verdict, collision_id, issuance_key, legacy_issuance_key, same_issuer,
    verdict,
};
use crate::cert::Certificate;
use crate::deliver::{Accepted, Delivery, Fanout};
use crate::matcher::WatchList;
use crate::metrics::{DbOp, Metrics};
use crate::payload::Payload;
use crate::store::{AlertRow, Store, StoreError};
use crate::threads::Health;
use arc_swap::{ArcSwap, ArcSwapOption};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Issuance keys remembered in memory.
pub const DEDUPE_CAPACITY: usize = 2048;

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

/// An alert whose row the database could not take yet.
pub struct Unrecorded {
    sighting: Sighting,
    severity: Severity,
    pub delivery_id: String,
    body: Vec<u8>,
    /// The webhook targets that accepted it (set by their threads).
    delivered: Arc<Accepted>,
}

impl Unrecorded {
    /// The names it alerted for, for a log line.
    pub fn matched_sans(&self) -> &[String] {
        &self.sighting.matched_sans
    }

    pub fn severity(&self) -> Severity {
        self.severity
    }
}

/// State shared by the workers and the grace thread (and every caller of
/// `consider`).
pub struct Classifier {
    pub watch: Arc<ArcSwap<WatchList>>,
    /// The inventory as last read, for classification while the database is
    /// unreachable (refreshed with the watch list); `None` until first loaded.
    pub inventory: Arc<ArcSwapOption<InventorySnapshot>>,
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
}

/// What a certificate matched, as an alert keeps it: the watch entries (sorted,
/// at most `cert::MAX_NAMES`) and the certificate's names that fell under them (in
/// the certificate's order, at most `cert::MAX_NAMES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    /// Watch-list entries matched (`matched_entries` of the alert).
    pub entries: Vec<String>,
    /// The certificate's names that matched (`matched_sans` of the alert).
    pub names: Vec<String>,
}

/// What the caller does next with a certificate it handed to `consider`.
pub enum Next {
    /// Nothing: recorded and handed to delivery, or a copy of what was.
    Done,
    /// Not in the inventory yet: wait out the grace period, then `conclude`.
    Wait(Sighting),
    /// Delivered, but the database could not take its row: hold it (bounded)
    /// and write it with `write_held` when the database is back.
    Held(Unrecorded),
}

impl Classifier {
    /// A certificate whose names matched `matched_entries` (sorted) through
    /// `matched_sans`: issuance key, dedupe, inventory, then record or wait. `via`
    /// says how it was found; the same issuance found both ways is one alert.
    pub fn consider(
        &self,
        cert: Certificate,
        matches: Matches,
        via: DetectedVia,
        now: i64,
    ) -> Next {
        let issuance_key = issuance_key(&cert);
        let (verdict, cache_size) = self.dedupe.observe(&issuance_key, SeenCert::of(&cert));
        self.metrics.dedupe_cache_size.set(cache_size as i64);
        let collision_fingerprint = match verdict {
            Verdict::Copy => {
                log::debug!("copy of issuance {issuance_key} skipped");
                return Next::Done;
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
        let mut sighting = Sighting {
            cert,
            matched_entries: matches.entries,
            matched_sans: matches.names,
            issuance_key,
            collision_fingerprint,
            received_at: now,
            received_at_ms: crate::clock::unix_now_ms(),
            inventory: InventoryCheck::Database,
            detected_via: via,
        };
        match self.in_inventory(&mut sighting) {
            Some(true) => self.record(sighting, Severity::Info),
            _ if self.grace.is_zero() => self.record(sighting, Severity::Suspicious),
            _ => {
                // Durable from here on: a crash or restart before the grace period
                // ends loses nothing (the next start concludes what is pending).
                let due_ms = sighting.received_at_ms + self.grace.as_millis() as i64;
                if let Err(e) = self.store.save_pending(&sighting, due_ms) {
                    self.metrics.db_error(DbOp::Record);
                    log::warn!(
                        "sighting {} waits in memory only (not saved: {e})",
                        sighting.delivery_id()
                    );
                }
                Next::Wait(sighting)
            }
        }
    }

    /// The end of a grace period: `info` if the inventory knows it now, else
    /// `suspicious`. Never `Next::Wait`.
    pub fn conclude(&self, mut s: Sighting) -> Next {
        let severity = match self.in_inventory(&mut s) {
            Some(true) => Severity::Info,
            _ => Severity::Suspicious,
        };
        let (key, collision) = (s.issuance_key.clone(), s.collision_fingerprint.clone());
        let next = self.record(s, severity);
        // Recorded (or a copy of what was): no longer pending. A held alert stays
        // pending, so a restart before the database returns still records it.
        if matches!(next, Next::Done)
            && let Err(e) = self.store.delete_pending(&key, &collision)
        {
            log::debug!("pending sighting {key} not cleared: {e}");
        }
        next
    }

    /// Whether the inventory knows this certificate (`alert::in_inventory`), and
    /// where the answer came from (`s.inventory`): the database, or while it is
    /// unreachable the last snapshot; `None` when neither could answer.
    fn in_inventory(&self, s: &mut Sighting) -> Option<bool> {
        let id = Identity::of(s);
        let (fingerprint, serial) = id.lookup_keys();
        let (known, check) = match self.store.inventory_candidates(fingerprint, serial) {
            Ok(rows) => (
                Some(alert::in_inventory(&id, &rows)),
                InventoryCheck::Database,
            ),
            Err(e) => {
                self.metrics.db_error(DbOp::Inventory);
                match self.inventory.load().as_deref() {
                    Some(snapshot) => {
                        log::debug!(
                            "inventory lookup failed ({e}); classified against the last snapshot"
                        );
                        (
                            Some(alert::in_inventory(&id, &snapshot.candidates(&id))),
                            InventoryCheck::Cached,
                        )
                    }
                    None => {
                        log::warn!("inventory lookup failed and no snapshot is loaded: {e}");
                        (None, InventoryCheck::NotChecked)
                    }
                }
            }
        };
        s.inventory = check;
        known
    }

    /// Writes the alert row, then hands it to delivery. A row that already exists
    /// (restart, second replica) is not alerted again, unless it turns out to be a
    /// colliding certificate.
    fn record(&self, mut sighting: Sighting, severity: Severity) -> Next {
        if sighting.collision_fingerprint.is_empty() && self.alerted_before_upgrade(&sighting) {
            return Next::Done;
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
                    if let Some(logged_ms) = sighting.cert.source_timestamp_ms {
                        let latency = (crate::clock::unix_now_ms() - logged_ms).max(0);
                        self.metrics
                            .detection_latency(sighting.detected_via)
                            .observe(latency as f64 / 1000.0);
                    }
                    self.announce(&sighting, severity, &delivery_id);
                    self.dispatch(Delivery::new(
                        delivery_id,
                        Event::Match,
                        severity,
                        body,
                        self.target_keys.len(),
                    ));
                    return Next::Done;
                }
                Ok(None) if sighting.collision_fingerprint.is_empty() => {
                    // Recorded before (a restart or another replica): decide as the LRU would.
                    let seen = match self.store.seen_for_issuance(&sighting.issuance_key) {
                        Ok(seen) => seen,
                        Err(e) => {
                            self.metrics.db_error(DbOp::Record);
                            log::warn!("dedupe lookup failed: {e}");
                            return Next::Done;
                        }
                    };
                    if verdict(&seen, &SeenCert::of(&sighting.cert)) != Verdict::Collision {
                        log::debug!("issuance {} already alerted", sighting.issuance_key);
                        return Next::Done;
                    }
                    sighting.collision_fingerprint = collision_id(&sighting.cert);
                }
                Ok(None) => {
                    log::debug!("collision {} already alerted", sighting.delivery_id());
                    return Next::Done;
                }
                Err(e) => {
                    self.metrics.db_error(DbOp::Record);
                    self.health.db_reachable.store(false, Ordering::Relaxed);
                    self.announce(&sighting, severity, &delivery_id);
                    log::warn!(
                        "database unavailable ({e}): alert {delivery_id} delivered now and held until it can be written"
                    );
                    return Next::Held(self.hold(sighting, severity, delivery_id, body));
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

    /// The database could not take the alert: deliver it anyway, and return the
    /// row for the caller to hold until it can be written.
    fn hold(
        &self,
        sighting: Sighting,
        severity: Severity,
        delivery_id: String,
        body: Vec<u8>,
    ) -> Unrecorded {
        let delivered = Arc::new(Accepted::default());
        self.dispatch(
            Delivery::new(
                delivery_id.clone(),
                Event::Match,
                severity,
                body.clone(),
                self.target_keys.len(),
            )
            .unrecorded(delivered.clone()),
        );
        Unrecorded {
            sighting,
            severity,
            delivery_id,
            body,
            delivered,
        }
    }

    /// Writes a held alert's row (and marks it delivered when the webhook already
    /// took it). `Ok(false)` when it had been written before.
    pub fn write_held(&self, item: &Unrecorded) -> Result<bool, StoreError> {
        let row = AlertRow {
            sighting: &item.sighting,
            severity: item.severity,
            delivery_id: &item.delivery_id,
            body: &item.body,
        };
        let inserted = self.store.insert_alert(&row)?.is_some();
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
        Ok(inserted)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::EntryType;

    #[test]
    fn dedupe_is_bounded_and_remembers_collisions() {
        use EntryType::{Precert, X509};
        let d = Dedupe::default();
        let c = |t, f| alert::test_seen(t, Some(f), "ca");
        assert_eq!(d.observe("k", c(Precert, "p")).0, Verdict::New);
        assert_eq!(d.observe("k", c(X509, "f")).0, Verdict::Copy);
        assert_eq!(d.observe("k", c(X509, "f")).0, Verdict::Copy);
        assert_eq!(d.observe("k", c(X509, "g")).0, Verdict::Collision);
        assert_eq!(d.observe("k", c(X509, "g")).0, Verdict::Copy);
        assert_eq!(
            d.observe("k", alert::test_seen(X509, Some("h"), "other")).0,
            Verdict::Collision
        );
        assert_eq!(
            d.observe("k", alert::test_seen(X509, Some("h"), "other")).0,
            Verdict::Copy
        );
        for i in 0..DEDUPE_CAPACITY + 10 {
            d.observe(&format!("key{i}"), alert::test_seen(X509, None, "ca"));
        }
        let (v, size) = d.observe("k", c(X509, "f"));
        assert_eq!(v, Verdict::New, "the oldest key was evicted");
        assert_eq!(size, DEDUPE_CAPACITY);
    }
}
