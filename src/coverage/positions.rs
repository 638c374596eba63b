//! Per-log positions: the index below which every entry of a log was seen on the
//! feed, fetched, or logged and counted as abandoned. Read back from Postgres once
//! at start (seeding the tracker, so a restart is backfilled from there), saved
//! every `SAVE_POSITIONS` by the `backfill` thread and once more by the `pipeline`
//! thread's drain, never past a gap still queued (`set_backlog`), and rewound when a
//! feed named an index the log never had. Replicas share them: the higher wins.

use super::Coverage;
use super::list::log_label;
use crate::ctlog::loglist::{Log, LogId, LogList};
use crate::store::{LogPosition, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often per-log positions are written to Postgres (and once more when the
/// workers are done at shutdown).
pub const SAVE_POSITIONS: Duration = Duration::from_secs(10);

/// Gives the gap tracker the positions stored by earlier runs (and replicas), once,
/// so the first index the feed now delivers opens a gap from there; when the
/// database does not answer, the next call tries again. `max_gap` is only said.
pub fn seed(coverage: &Coverage, store: &Store, list: &LogList, max_gap: u64) {
    if coverage.seeded.load(Ordering::SeqCst) {
        return;
    }
    let stored = match store.load_positions() {
        Ok(stored) => stored,
        Err(e) => {
            log::warn!("stored CT log positions not read yet ({e}); a restart gap waits for them");
            return;
        }
    };
    let now = Instant::now();
    let mut tracker = coverage.gaps.lock();
    let mut seeded = 0;
    for row in stored {
        if let Some(log) = LogId::from_base64(&row.log_id).and_then(|id| list.get(&id))
            && tracker.seed(log.id, row.position, now)
        {
            seeded += 1;
        }
    }
    drop(tracker);
    coverage.seeded.store(true, Ordering::SeqCst);
    if seeded > 0 {
        log::info!(
            "resuming {seeded} CT logs from their stored positions: what the feed delivered \
             meanwhile is fetched from the logs (at most BACKFILL_MAX_GAP={max_gap} entries each)"
        );
    }
}

/// Sets, per log, the lowest index still queued for fetching, so a saved position
/// never passes an entry not fetched yet: the `backfill` thread calls it before
/// each save and when it ends (for the drain's save).
pub fn set_backlog(coverage: &Coverage, queued: impl IntoIterator<Item = (LogId, u64)>) {
    let mut floors: HashMap<LogId, u64> = HashMap::new();
    for (log, start) in queued {
        let floor = floors.entry(log).or_insert(start);
        *floor = (*floor).min(start);
    }
    *coverage.backlog.lock().unwrap_or_else(|e| e.into_inner()) = floors;
}

/// Writes every tracked log's position. Called every `SAVE_POSITIONS` by the
/// `backfill` thread and once by the pipeline's drain when the workers are done;
/// returns how many logs were saved. Nothing is written before the stored
/// positions were read back (a restart's gap would be lost).
pub fn save(store: &Store, coverage: &Coverage) -> Result<usize, StoreError> {
    if !coverage.seeded.load(Ordering::SeqCst) {
        return Ok(0);
    }
    let Some(list) = coverage.logs.load_full() else {
        return Ok(0);
    };
    let positions = coverage.gaps.lock().positions();
    let backlog = coverage
        .backlog
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let rows: Vec<LogPosition> = positions
        .into_iter()
        .filter_map(|(id, position)| {
            let log = list.get(&id)?;
            Some(LogPosition {
                log_id: id.to_base64(),
                log_url: log_label(log).to_string(),
                position: backlog.get(&id).map_or(position, |f| position.min(*f)),
            })
        })
        .collect();
    store.save_positions(&rows)?;
    Ok(rows.len())
}

/// Takes a log's position back to `start` in the tracker and in Postgres (a feed
/// named an index far beyond the log's tree: what came after it was never real).
pub fn rewind(coverage: &Coverage, store: &Store, log: &Log, start: u64) {
    {
        let mut tracker = coverage.gaps.lock();
        tracker.forget(log.id);
        tracker.seed(log.id, start, Instant::now());
    }
    let row = LogPosition {
        log_id: log.id.to_base64(),
        log_url: log_label(log).to_string(),
        position: start,
    };
    if let Err(e) = store.reset_position(&row) {
        log::warn!("CT log {}: stored position not reset: {e}", log_label(log));
    }
}
