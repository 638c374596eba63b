//! Timer: the `timer` thread. Refreshes the watch list every
//! `WATCH_REFRESH_INTERVAL_S` (built off to the side, then swapped in atomically;
//! a failed refresh keeps the old list), prunes alerts older than
//! `ALERT_RETENTION_S` every `CLEANUP_INTERVAL_S` in small batches, and every
//! `REDELIVERY_INTERVAL_S` runs the sweep: resolves suspicious alerts whose
//! certificate reached the inventory, and hands due undelivered events back to
//! the target threads that still owe them (`Fanout::send`, `try_send`: a full
//! queue waits for a later sweep).
//! Cleanup and sweep claim rows with `SKIP LOCKED`, so replicas share one database.

use crate::alert;
use crate::alert::InventorySnapshot;
use crate::deliver::{Delivery, Fanout, Target};
use crate::matcher::{WatchList, WatchListBuilder};
use crate::metrics::{DbOp, Metrics};
use crate::payload;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::threads::Health;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Rows deleted per cleanup statement.
const CLEANUP_BATCH: i64 = 1000;

/// Loads the watch list and swaps it in for every worker.
pub struct WatchRefresher {
    pub store: Store,
    pub watch: Arc<ArcSwap<WatchList>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Invalid entries already warned about, so each is warned once.
    warned: HashSet<String>,
    /// The entry count of the last refresh, to tell when it changes.
    last_count: Option<usize>,
    /// The inventory snapshot classification falls back on while the database
    /// is unreachable, rebuilt when `public.certs` changes.
    pub inventory: Arc<ArcSwapOption<InventorySnapshot>>,
    /// `store::inventory_signature` when the snapshot was built.
    inventory_signature: Option<(i64, Option<i64>)>,
}

impl WatchRefresher {
    pub fn new(
        store: Store,
        watch: Arc<ArcSwap<WatchList>>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        inventory: Arc<ArcSwapOption<InventorySnapshot>>,
    ) -> Self {
        WatchRefresher {
            store,
            watch,
            metrics,
            health,
            warned: HashSet::new(),
            last_count: None,
            inventory,
            inventory_signature: None,
        }
    }

    /// One refresh; on error the previous list stays in place.
    pub fn refresh(&mut self) -> Result<usize, StoreError> {
        let started = Instant::now();
        let mut builder = WatchListBuilder::with_capacity(self.watch.load().len());
        if let Err(e) = self.store.for_each_watch_entry(|fqdn| builder.add(fqdn)) {
            self.metrics.db_error(DbOp::WatchRefresh);
            self.health.db_reachable.store(false, Ordering::SeqCst);
            return Err(e);
        }
        self.health.db_reachable.store(true, Ordering::SeqCst);
        let (list, invalid) = builder.finish();
        for entry in invalid {
            if self.warned.insert(entry.raw.clone()) {
                log::warn!("watch entry {:?} skipped: {}", entry.raw, entry.reason);
            }
        }
        let count = list.len();
        self.watch.store(Arc::new(list));
        self.metrics.watch_entries.set(count as i64);
        self.metrics
            .watch_refresh_seconds
            .set(started.elapsed().as_secs_f64());
        self.health.watch_entries.store(count, Ordering::Relaxed);
        self.health.watch_loaded.store(true, Ordering::SeqCst);
        log::debug!(
            "watch list refreshed: {count} entries in {:?}",
            started.elapsed()
        );
        self.tell_the_operator(count);
        // The inventory snapshot follows the watch list (and warns while empty).
        if let Err(e) = self.refresh_inventory() {
            self.metrics.db_error(DbOp::WatchRefresh);
            log::warn!("inventory snapshot not refreshed (the last one stays in use): {e}");
        }
        Ok(count)
    }
}

impl WatchRefresher {
    /// What an operator should know after a refresh: an empty watch list (WARN,
    /// every refresh while it lasts), a changed entry count (INFO). An empty
    /// inventory is warned about by `refresh_inventory`.
    fn tell_the_operator(&mut self, count: usize) {
        if self.last_count.is_some_and(|last| last != count) && count > 0 {
            log::info!("watch list now has {count} entries");
        }
        self.last_count = Some(count);
        if count == 0 {
            log::warn!(
                "the watch list is empty: nothing can match; add domains to public.intent_current \
                 (README, \"First watch entry\")"
            );
        }
    }

    /// Makes the next refresh rebuild the inventory snapshot whether or not
    /// `public.certs` looks changed (SIGHUP).
    pub fn forget_inventory_signature(&mut self) {
        self.inventory_signature = None;
    }

    /// Rebuilds the inventory snapshot when `public.certs` changed since the last
    /// one (row count or newest `added_at`), off to the side, then swaps it in.
    fn refresh_inventory(&mut self) -> Result<(), StoreError> {
        let signature = self.store.inventory_signature()?;
        if signature.0 == 0 {
            log::warn!(
                "the inventory (public.certs) is empty: every match will be suspicious; \
                 your certificate issuer should write its certificates there (README, \"First watch entry\")"
            );
        }
        if self.inventory_signature == Some(signature) {
            return Ok(());
        }
        let started = Instant::now();
        let mut snapshot = InventorySnapshot::default();
        self.store
            .for_each_inventory_row(|fp, serial, nb, na, sans| {
                snapshot.add(fp, serial, nb, na, sans)
            })?;
        let snapshot = snapshot.finish();
        self.metrics
            .inventory_snapshot_rows
            .set(snapshot.len() as i64);
        log::debug!(
            "inventory snapshot: {} rows in {:?}",
            snapshot.len(),
            started.elapsed()
        );
        self.inventory.store(Some(Arc::new(snapshot)));
        self.inventory_signature = Some(signature);
        Ok(())
    }
}

/// The redelivery sweep and reconciliation.
pub struct Sweep {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// `None` in observer mode: reconcile only.
    pub deliver: Option<Fanout>,
    pub targets: Vec<Target>,
    pub interval: Duration,
    pub max_age: Duration,
    /// How long a claimed event belongs to this replica.
    pub lease: Duration,
}

/// Events claimed per sweep.
const SWEEP_BATCH: i64 = 500;

impl Sweep {
    /// Suspicious alerts whose certificate has since reached the inventory (by
    /// `alert::in_inventory`, the rule alerts were classified by) become
    /// `resolved` events with the body `payload::resolved_body` renders.
    fn reconcile(&self) {
        let observer = self.deliver.is_none();
        let candidates = match self.store.resolution_candidates(observer) {
            Ok(candidates) => candidates,
            Err(e) => {
                self.metrics.db_error(DbOp::Sweep);
                log::warn!("reconciliation failed: {e}");
                return;
            }
        };
        for candidate in candidates {
            let id = candidate.identity();
            let (fingerprint, serial) = id.lookup_keys();
            let resolved = self
                .store
                .inventory_candidates(fingerprint, serial)
                .map(|rows| alert::in_inventory(&id, &rows))
                .and_then(|ours| {
                    if !ours {
                        return Ok(false);
                    }
                    let body = payload::resolved_body(&candidate.payload);
                    self.store.mark_resolved(candidate.id, &body, observer)
                });
            match resolved {
                Ok(true) => {
                    self.metrics.reclassified.inc();
                    log::info!(
                        "alert {}: the suspicious certificate is now in the inventory, resolved",
                        candidate.delivery_id
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    self.metrics.db_error(DbOp::Sweep);
                    log::warn!("reconciliation failed: {e}");
                    return;
                }
            }
        }
    }

    /// One sweep; errors are logged and counted, the next sweep tries again.
    pub fn run(&self) {
        self.reconcile();
        let Some(deliver) = &self.deliver else { return };
        let claimed = match self
            .store
            .claim_redeliveries(self.lease, self.max_age, SWEEP_BATCH)
        {
            Ok(claimed) => claimed,
            Err(e) => {
                self.metrics.db_error(DbOp::Sweep);
                log::warn!("redelivery sweep failed: {e}");
                return;
            }
        };
        for c in claimed {
            let owed: Vec<usize> = (0..self.targets.len())
                .filter(|&i| !c.delivered_targets.contains(&self.targets[i].key))
                .collect();
            if owed.is_empty() {
                // Every configured target has it (what it still lacked was a target
                // since removed from WEBHOOK_URL): it is delivered.
                let keys: Vec<String> = self.targets.iter().map(|t| t.key.clone()).collect();
                if let Err(e) =
                    self.store
                        .record_round(&c.delivery_id, c.event, &[], &keys, None, None)
                {
                    self.metrics.db_error(DbOp::Sweep);
                    log::warn!("alert {}: delivery state not recorded: {e}", c.delivery_id);
                }
                continue;
            }
            let mut delivery = Delivery::new(
                c.delivery_id,
                c.event,
                c.severity,
                c.body,
                self.targets.len(),
            );
            delivery.owed = owed;
            self.metrics.redeliveries.inc();
            deliver.send(delivery);
        }
        match self.store.undelivered(self.max_age) {
            Ok(n) => self.metrics.undelivered.set(n),
            Err(_) => self.metrics.db_error(DbOp::Sweep),
        }
    }
}

/// What the timer thread needs.
pub struct Timer {
    pub refresher: WatchRefresher,
    pub refresh_interval: Duration,
    pub cleanup_interval: Duration,
    pub retention: Duration,
    pub sweep: Sweep,
    pub shutdown: Shutdown,
}

/// The timer thread: runs until shutdown.
pub fn run_timer(mut t: Timer) {
    let mut next_refresh = Instant::now() + t.refresh_interval;
    let mut next_cleanup = Instant::now();
    let mut next_sweep = Instant::now() + t.sweep.interval;
    loop {
        let now = Instant::now();
        if now >= next_sweep {
            t.sweep.run();
            next_sweep = Instant::now() + t.sweep.interval;
        }
        if now >= next_refresh {
            if let Err(e) = t.refresher.refresh() {
                log::warn!("watch list refresh failed, keeping the current list: {e}");
            }
            next_refresh = Instant::now() + t.refresh_interval;
        }
        if now >= next_cleanup {
            match t.refresher.store.prune_alerts(t.retention, CLEANUP_BATCH) {
                Ok(0) => {}
                Ok(n) => {
                    t.refresher.metrics.alerts_pruned.inc_by(n);
                    log::info!(
                        "cleanup: pruned {n} alerts older than {}s",
                        t.retention.as_secs()
                    );
                }
                Err(e) => {
                    t.refresher.metrics.db_error(DbOp::Cleanup);
                    log::warn!("cleanup failed: {e}");
                }
            }
            next_cleanup = Instant::now() + t.cleanup_interval;
        }
        let wake = next_refresh.min(next_cleanup).min(next_sweep);
        let timeout = crossbeam_channel::after(wake.saturating_duration_since(Instant::now()));
        crossbeam_channel::select! {
            recv(t.shutdown.channel()) -> _ => return,
            recv(t.shutdown.reloads()) -> _ => {
                next_refresh = Instant::now();
                t.refresher.forget_inventory_signature();
            }
            recv(timeout) -> _ => {}
        }
        if t.shutdown.is_set() {
            return;
        }
    }
}
