//! The `grace` thread: holds the certificates the inventory did not know yet
//! until their `SUSPICIOUS_GRACE_S` is up, then has them classified again and
//! recorded; and the buffer of alerts held while the database is down
//! (`HeldAlerts`), which it writes every 2 s.
//!
//! Owns the workers → grace channel's message (`Pending`). On shutdown it
//! concludes everything still waiting, once, and tries the held alerts a last time.

use crate::classify::{Classifier, Next, Unrecorded};
use crate::metrics::{Metrics, Queue};
use crate::threads::DelayQueue;
use crossbeam_channel::{Receiver, select};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Alerts held in memory while the database is down, at most.
pub const HELD_CAPACITY: usize = 10_000;
/// How often the grace thread tries to write held alerts.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// A sighting waiting out its grace period on the `grace` thread.
pub struct Pending {
    pub due: Instant,
    pub sighting: crate::alert::Sighting,
}

/// Alerts delivered but not yet written, oldest first, bounded. Filled by the
/// workers and the grace thread, written by the grace thread.
#[derive(Default)]
pub struct HeldAlerts {
    items: Mutex<VecDeque<Unrecorded>>,
}

impl HeldAlerts {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Unrecorded>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `item`, or, when `HELD_CAPACITY` are held already, logs and counts
    /// it as lost to the table (it was delivered).
    pub fn push(&self, item: Unrecorded, metrics: &Metrics) {
        let mut held = self.lock();
        if held.len() >= HELD_CAPACITY {
            drop(held);
            metrics.alerts_unrecorded_overflow.inc();
            log::error!(
                "ALERT NOT RECORDED: database unavailable and {HELD_CAPACITY} alerts already held; \
                 {} alert {} for {:?} is delivered but never written to public.alerts",
                item.severity().as_str(),
                item.delivery_id,
                item.matched_sans()
            );
            return;
        }
        held.push_back(item);
        metrics.queue(Queue::Unrecorded).set(held.len() as i64);
    }

    /// Writes held alerts while the database takes them; returns how many
    /// remain. An alert the database rejects (rather than one it cannot take for
    /// now: a data exception or integrity violation, `StoreError::rejects_the_row`)
    /// is logged and dropped, so it never blocks the alerts behind it; any other
    /// error (database down, privileges revoked) keeps every alert for later.
    pub fn flush(&self, cls: &Classifier) -> usize {
        loop {
            let Some(item) = self.lock().pop_front() else {
                break;
            };
            match cls.write_held(&item) {
                Ok(true) => log::info!("held alert {} written to public.alerts", item.delivery_id),
                Ok(false) => log::info!("held alert {} was already recorded", item.delivery_id),
                Err(e) if e.rejects_the_row() => {
                    cls.metrics.alerts_unrecorded_overflow.inc();
                    log::error!(
                        "ALERT NOT RECORDED: the database refused held alert {} for {:?} ({e}); \
                         it was delivered, the alerts behind it go on",
                        item.delivery_id,
                        item.matched_sans()
                    );
                }
                Err(_) => {
                    self.lock().push_front(item);
                    break;
                }
            }
        }
        let left = self.lock().len();
        cls.metrics.queue(Queue::Unrecorded).set(left as i64);
        left
    }
}

/// The grace thread: holds misses until their time, re-checks the inventory, and
/// records them. When the workers are gone it re-checks everything still waiting
/// once more, records it, and exits.
pub fn run_grace(cls: Arc<Classifier>, pending: Receiver<Pending>, held: Arc<HeldAlerts>) {
    let mut waiting: DelayQueue<crate::alert::Sighting> = DelayQueue::default();
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
                    conclude(&cls, &held, s);
                }
            }
            recv(flush) -> _ => {
                held.flush(&cls);
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
        conclude(&cls, &held, s);
    }
    depth.set(0);
    let left = held.flush(&cls);
    if left > 0 {
        log::error!(
            "ALERTS NOT RECORDED: shutting down with {left} alerts the database never took \
             (each was logged and delivered when a webhook is set)"
        );
    }
}

/// Classifies a sighting whose grace period is over, holding it if the database
/// cannot take its row.
fn conclude(cls: &Classifier, held: &HeldAlerts, s: crate::alert::Sighting) {
    if let Next::Held(item) = cls.conclude(s) {
        held.push(item, &cls.metrics);
    }
}
