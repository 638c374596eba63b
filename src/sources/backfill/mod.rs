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
//! Files: `thread` (the loop, which also drives coverage's clock: the list read
//! at start and daily, positions seeded and saved every 10 s), `fetch` (the queue,
//! the per-log clients, pages and tiles), `command` (`certwatch backfill`: one
//! range, on the main thread, through the same fetch path); this file holds what
//! they all work with (`Backfill`).

pub mod command;
mod fetch;
pub mod thread;

use super::Intake;
use crate::config::FeedHoles;
use crate::coverage::Coverage;
use crate::coverage::{list, positions};
use crate::ctlog::client::ClientConfig;
use crate::shutdown::Shutdown;
use std::sync::Arc;

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
    pub(super) fn load_list(&self) {
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
