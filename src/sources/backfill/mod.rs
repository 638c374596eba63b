//! Backfill as a certificate source: the `backfill` thread reads the entries the
//! feed skipped from the logs themselves. Every second it has coverage publish its
//! statistics and hand over the gaps found due (entries of a listed log the feed
//! did not deliver within the settle time, after the dense-feed policy), checks an
//! oversized gap against the log's tree size, caps it at `BACKFILL_MAX_GAP`,
//! claims it (so replicas fetch it once) and queues it; then works through the
//! queue with `fetch::Fetcher` (RFC 6962 `get-entries`, static-ct data tiles),
//! whose entries, converted by `ctlog::entry` into the certificate the feed would
//! have sent, go through the one matching rule and hand-over of `sources`
//! (`detected_via` backfill). The same issuance found on the feed and by backfill
//! is one alert (dedupe and issuance key).
//!
//! It also drives coverage's clock: the list is read at start and daily
//! (`coverage::list`), positions seeded and saved every `SAVE_POSITIONS`
//! (`coverage::positions`). `command` is the `certwatch backfill` command: one
//! range, on the main thread, through the same fetch path.

pub mod command;
mod fetch;

use super::Intake;
use crate::config::FeedHoles;
use crate::coverage::Coverage;
use crate::coverage::claims::{self, Claimed};
use crate::coverage::gaps::Gap;
use crate::coverage::list::{self, LIST_REFRESH};
use crate::coverage::positions::{self, SAVE_POSITIONS};
use crate::coverage::stats::{Outputs, Stats};
use crate::ctlog::client::ClientConfig;
use crate::ctlog::loglist::LogList;
use crate::shutdown::Shutdown;
use fetch::{Fetcher, QueuedGap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often due gaps are taken and statistics published.
pub const TICK: Duration = Duration::from_secs(1);

/// What the `backfill` thread (and the `certwatch backfill` command) works with.
pub struct Backfill {
    pub intake: Intake,
    pub coverage: Arc<Coverage>,
    /// `CT_LOG_LIST`; `None` is off.
    pub list_source: Option<String>,
    /// `BACKFILL_MAX_GAP`.
    pub max_gap: u64,
    pub client: ClientConfig,
    pub feed_holes: FeedHoles,
    pub shutdown: Shutdown,
}

impl Backfill {
    /// Loads the list (or the copy kept in Postgres) and installs it; on failure
    /// keeps the one in use (if any) and says so.
    fn load_list(&self) {
        let Some(source) = &self.list_source else {
            return;
        };
        let cls = &self.intake.cls;
        match list::read_list_or_kept(&cls.store, source) {
            Ok(list) => {
                positions::seed(&self.coverage, &cls.store, &list, self.max_gap);
                list::install(&self.coverage, list, &cls.metrics, &cls.health);
            }
            Err(e) if self.coverage.logs().is_some() => {
                log::warn!("{e}; keeping the log list in use");
            }
            Err(e) => {
                log::warn!("{e}; gap tracking and backfill are off until it can be read");
            }
        }
    }
}

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
        (backfill.feed_holes, fetcher.queued_entries()),
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
