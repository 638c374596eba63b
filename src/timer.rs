//! Timer: the `timer` thread. Refreshes the watch list every
//! `WATCH_REFRESH_INTERVAL_S` (built off to the side, then swapped in atomically;
//! a failed refresh keeps the old list) and prunes alerts older than
//! `ALERT_RETENTION_S` every `CLEANUP_INTERVAL_S`, in small batches.

use crate::matcher::WatchList;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::threads::Health;
use arc_swap::ArcSwap;
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
}

impl WatchRefresher {
    pub fn new(
        store: Store,
        watch: Arc<ArcSwap<WatchList>>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        WatchRefresher {
            store,
            watch,
            metrics,
            health,
            warned: HashSet::new(),
        }
    }

    /// One refresh; on error the previous list stays in place.
    pub fn refresh(&mut self) -> Result<usize, StoreError> {
        let started = Instant::now();
        let rows = match self.store.load_watch_list() {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.db_error("watch_refresh");
                self.health.db_reachable.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        self.health.db_reachable.store(true, Ordering::SeqCst);
        let (list, invalid) = WatchList::build(rows.iter().map(String::as_str));
        for entry in invalid {
            if self.warned.insert(entry.raw.clone()) {
                log::warn!("watch entry {:?} skipped: {}", entry.raw, entry.reason);
            }
        }
        let count = list.len();
        self.watch.store(Arc::new(list));
        self.metrics.watch_entries.set(count as i64);
        self.health.watch_entries.store(count, Ordering::Relaxed);
        self.health.watch_loaded.store(true, Ordering::SeqCst);
        log::debug!(
            "watch list refreshed: {count} entries in {:?}",
            started.elapsed()
        );
        Ok(count)
    }
}

/// What the timer thread needs.
pub struct Timer {
    pub refresher: WatchRefresher,
    pub refresh_interval: Duration,
    pub cleanup_interval: Duration,
    pub retention: Duration,
    pub shutdown: Shutdown,
}

/// The timer thread: runs until shutdown.
pub fn run_timer(mut t: Timer) {
    let mut next_refresh = Instant::now() + t.refresh_interval;
    let mut next_cleanup = Instant::now();
    loop {
        let now = Instant::now();
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
                    t.refresher.metrics.db_error("cleanup");
                    log::warn!("cleanup failed: {e}");
                }
            }
            next_cleanup = Instant::now() + t.cleanup_interval;
        }
        let wake = next_refresh.min(next_cleanup);
        if t.shutdown
            .sleep(wake.saturating_duration_since(Instant::now()))
        {
            return;
        }
    }
}
