//! The `backfill` thread's loop: every `TICK`, coverage's statistics and the gaps
//! due after its policy; each gap checked against the log's tree, capped, claimed
//! and queued; then one pass over the queue (`fetch::Fetcher`). It also drives
//! coverage's clock: the list read at start and daily, positions seeded and saved
//! every `SAVE_POSITIONS`.

use super::Backfill;
use super::fetch::{Fetcher, QueuedGap};
use crate::coverage::claims::{self, Claimed};
use crate::coverage::gaps::Gap;
use crate::coverage::list::LIST_REFRESH;
use crate::coverage::positions::{self, SAVE_POSITIONS};
use crate::coverage::stats::{Outputs, Stats};
use crate::ctlog::loglist::LogList;
use std::time::{Duration, Instant};

/// How often due gaps are taken and statistics published.
pub const TICK: Duration = Duration::from_secs(1);

/// The `backfill` thread: runs until shutdown.
pub fn run_backfill(backfill: Backfill) {
    if backfill.list_source.is_none() {
        log::info!("CT_LOG_LIST=off: gap tracking and backfill are off");
        // Stays up (a stage that ends before shutdown reads as dead in /healthz).
        let _ = backfill.shutdown.channel().recv();
        return;
    }
    let mut fetcher = Fetcher::new(&backfill);
    let mut stats = Stats::default();
    backfill.load_list();
    let mut list_read = Instant::now();
    let mut positions_saved = Instant::now();
    while !backfill.shutdown.sleep(TICK) {
        let list_due = list_read.elapsed() >= LIST_REFRESH;
        if list_due || backfill.coverage.logs().is_none() && list_read.elapsed() >= TICK * 60 {
            backfill.load_list();
            list_read = Instant::now();
        }
        let Some(list) = backfill.coverage.logs() else {
            continue;
        };
        let cls = &backfill.intake.cls;
        positions::seed(&backfill.coverage, &cls.store, &list, backfill.max_gap);
        tick(&backfill, &list, &mut stats, &mut fetcher);
        if positions_saved.elapsed() >= SAVE_POSITIONS {
            positions_saved = Instant::now();
            positions::set_backlog(&backfill.coverage, fetcher.queued_starts());
            if let Err(e) = positions::save(&cls.store, &backfill.coverage) {
                log::debug!("CT log positions not saved (next try in 10 s): {e}");
            }
        }
    }
    // What is still queued stays below the saved positions: the next run fetches it.
    positions::set_backlog(&backfill.coverage, fetcher.queued_starts());
}

/// One second's work: coverage's statistics and the gaps due after its policy;
/// each checked, capped, claimed and queued; then one pass over the queue.
fn tick(backfill: &Backfill, list: &LogList, stats: &mut Stats, fetcher: &mut Fetcher<'_>) {
    let now = Instant::now();
    let cls = &backfill.intake.cls;
    let due = stats.tick(
        &backfill.coverage,
        list,
        Outputs {
            metrics: &cls.metrics,
            health: &cls.health,
        },
        backfill.feed_holes,
        fetcher.queued_entries(),
        now,
    );
    for gap in due {
        let Some(log) = list.get(&gap.log) else {
            continue;
        };
        if gap.len() > backfill.max_gap && fetcher.beyond_the_log(log, &gap) {
            continue;
        }
        let gap = fetcher.cap(log, gap);
        for Claimed { range, claim } in claims::claim(&cls.store, &cls.metrics, log, gap) {
            let gap = Gap {
                log: gap.log,
                start: range.start,
                end: range.end,
            };
            fetcher.enqueue(log, QueuedGap::new(gap, claim, now));
        }
    }
    fetcher.work_through(list);
}
