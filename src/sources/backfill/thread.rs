//! The `backfill` thread: coverage's clock and the intake of what the fetchers
//! find. Every `TICK` it has coverage publish its statistics and hand over the gaps
//! found due (after the dense-feed policy), queues each with its log's fetcher
//! (`fetchers`), re-reads the list daily and saves positions every
//! `SAVE_POSITIONS`; between ticks it hands each matched certificate a fetcher
//! found to classification (`sources::Intake`, `detected_via` backfill). It never
//! waits on a log: the fetching happens on the fetcher threads.

use super::Backfill;
use super::fetchers::{FOUND_QUEUE, Fetchers};
use crate::clock::unix_now;
use crate::coverage::list::LIST_REFRESH;
use crate::coverage::positions::{self, SAVE_POSITIONS};
use crate::coverage::stats::{Inputs, Outputs, Stats};
use crate::ctlog::loglist::LogList;
use crate::sources::Found;
use crate::sources::tailer::Tailers;
use crossbeam_channel::select;
use std::sync::Arc;
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
    let (found_tx, found_rx) = crossbeam_channel::bounded::<Found>(FOUND_QUEUE);
    let mut tailers = backfill
        .source
        .logs()
        .then(|| Tailers::new(backfill.tail_context(found_tx.clone())));
    let mut fetchers = Fetchers::new(Arc::new(backfill.fetch_context()), found_tx);
    let mut stats = Stats::default();
    backfill.load_list();
    let mut list_read = Instant::now();
    let mut reloads = backfill.shutdown.reload_count();
    let mut positions_saved = Instant::now();
    let ticker = crossbeam_channel::tick(TICK);
    loop {
        select! {
            recv(found_rx) -> found => {
                if let Ok(found) = found {
                    hand_over(&backfill, found);
                }
            }
            recv(ticker) -> _ => {
                // SIGHUP re-reads the list too (a log that left it: its gaps dropped).
                let reload = backfill.shutdown.reload_count();
                let list_due = list_read.elapsed() >= LIST_REFRESH || reload != reloads;
                reloads = reload;
                if list_due
                    || backfill.coverage.logs().is_none() && list_read.elapsed() >= TICK * 60
                {
                    backfill.load_list();
                    list_read = Instant::now();
                }
                let Some(list) = backfill.coverage.logs() else {
                    continue;
                };
                fetchers.retain_listed(&list);
                let cls = &backfill.intake.cls;
                positions::seed(&backfill.coverage, &cls.store, &list, backfill.max_gap);
                tick(&backfill, &list, &mut stats, &mut fetchers);
                if let Some(tailers) = &mut tailers {
                    tailers.sync(&list);
                }
                if positions_saved.elapsed() >= SAVE_POSITIONS {
                    positions_saved = Instant::now();
                    positions::set_backlog(&backfill.coverage, fetchers.floors());
                    if let Err(e) = positions::save(&cls.store, &backfill.coverage) {
                        log::debug!("CT log positions not saved (next try in 10 s): {e}");
                    }
                }
            }
            recv(backfill.shutdown.channel()) -> _ => break,
        }
    }
    fetchers.wake_all();
    if let Some(tailers) = &tailers {
        tailers.stop_all();
    }
    // The floors first: a page a fetcher hands on after this is above them, and is
    // read again by the next start; what it handed on before is in the channel.
    positions::set_backlog(&backfill.coverage, fetchers.floors());
    while let Ok(found) = found_rx.try_recv() {
        hand_over(&backfill, found);
    }
}

fn hand_over(backfill: &Backfill, found: Found) {
    backfill
        .intake
        .hand_over(found.cert, found.matches, found.via, unix_now());
}

/// One second's work: coverage's statistics and the gaps due after its policy,
/// each queued with its log's fetcher.
fn tick(backfill: &Backfill, list: &LogList, stats: &mut Stats, fetchers: &mut Fetchers) {
    let now = Instant::now();
    let cls = &backfill.intake.cls;
    let due = stats.tick(
        &backfill.coverage,
        list,
        Outputs {
            metrics: &cls.metrics,
            health: &cls.health,
        },
        Inputs {
            feed_holes: backfill.feed_holes,
            queued_entries: fetchers.queued_entries(),
            feed: backfill.source.feed(),
            not_on_feed_after: backfill.not_on_feed_after,
        },
        now,
    );
    if backfill.source.logs() {
        // Tailing reads every entry of every log, verified: the feed's gaps are
        // read there, not fetched twice.
        return;
    }
    for gap in due {
        if let Some((n, log)) = list
            .logs()
            .iter()
            .enumerate()
            .find(|(_, l)| l.id == gap.log)
        {
            fetchers.enqueue(log, n, gap, now);
        }
    }
    fetchers.start_waiting(list);
}
