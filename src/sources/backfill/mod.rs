//! Backfill as a certificate source: the entries the feed skipped, read from the
//! logs themselves. Every second the `backfill` thread has coverage publish its
//! statistics and hand over the gaps found due (entries of a listed log the feed
//! did not deliver within the settle time, after the dense-feed policy) and queues
//! each with its log's fetcher thread, which claims it (so replicas fetch it once),
//! checks one over `BACKFILL_MAX_GAP` against the log's tree, caps it, and reads it
//! page by page (RFC 6962 `get-entries`, static-ct data tiles); each entry,
//! converted by `ctlog::entry` into the certificate the feed would have sent, goes
//! through the one matching rule of `sources`, and a match back to the `backfill`
//! thread, which hands it over (`detected_via` backfill). The same issuance found on
//! the feed and by backfill is one alert (dedupe and issuance key).
//!
//! Files: `thread` (the `backfill` thread: coverage's clock, the list read at
//! start and daily, positions seeded and saved every 10 s, and the intake of what
//! the fetchers find), `fetchers` (one thread and bounded queue per log with gaps),
//! `fetch` (one log's fetching: claim, tree check, cap, pages and tiles),
//! `command` (`certwatch backfill`: one range, on the main thread, through the same
//! fetch path); this file holds what they all work with (`Backfill`).

pub mod command;
mod fetch;
mod fetchers;
pub mod thread;

use super::Intake;
use crate::config::{CtSource, FeedHoles};
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
    /// `CT_SOURCE`: with `logs` or `both` the logs are tailed (and the feed's gaps,
    /// which tailing reads anyway, are not fetched).
    pub source: CtSource,
    /// `CT_NOT_ON_FEED_S`.
    pub not_on_feed_after: std::time::Duration,
    /// `CT_LOG_UNREACHABLE_S`: a tailed log not read for this long is unreachable.
    pub unreachable_after: std::time::Duration,
    pub shutdown: Shutdown,
}

impl Backfill {
    /// What the tail threads need, their finds going to `found`.
    fn tail_context(
        &self,
        found: crossbeam_channel::Sender<crate::sources::Found>,
    ) -> crate::sources::tailer::TailContext {
        let cls = &self.intake.cls;
        crate::sources::tailer::TailContext {
            store: cls.store.clone(),
            metrics: cls.metrics.clone(),
            watch: cls.watch.clone(),
            coverage: self.coverage.clone(),
            client: self.client.clone(),
            shutdown: self.shutdown.clone(),
            found,
            max_behind: self.max_gap,
            unreachable_after: self.unreachable_after,
            replicas: arc_swap::ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// What fetching needs, without the intake's delivery handle.
    fn fetch_context(&self) -> fetch::FetchContext {
        let cls = &self.intake.cls;
        fetch::FetchContext {
            store: cls.store.clone(),
            metrics: cls.metrics.clone(),
            watch: cls.watch.clone(),
            coverage: self.coverage.clone(),
            client: self.client.clone(),
            max_gap: self.max_gap,
            shutdown: self.shutdown.clone(),
        }
    }

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
