//! Fetching one log's gaps, synchronously, on that log's fetcher thread
//! (`fetchers`) or on the main thread for `certwatch backfill`: `LogFetch` claims a
//! gap, checks one longer than `BACKFILL_MAX_GAP` against the log's tree (held
//! until the tree size can be read: a bogus index from a feed never moves a
//! position), caps it, then reads it page by page (`get-entries`, data tiles),
//! decoding, matching and handing on each page's matches before the next page is
//! asked for: memory holds one page, whatever the gap's size.
//!
//! A `LogFetch` holds what fetching needs (`FetchContext`: the store, the metrics,
//! the watch list, coverage) and nothing that delivers: a fetch that hangs on a slow
//! log never holds up the delivery threads' end at shutdown. What it finds goes to
//! a `sink` (the `backfill` thread's intake, or the command's).

use crate::alert::DetectedVia;
use crate::coverage::Coverage;
use crate::coverage::claims::{self, Claimed};
use crate::coverage::gaps::Gap;
use crate::coverage::list::log_label;
use crate::coverage::positions;
use crate::ctlog::LogKind;
use crate::ctlog::client::{ClientConfig, ClientError, LogClient};
use crate::ctlog::entry::{self, EntryResult, LogSource};
use crate::ctlog::loglist::Log;
use crate::ctlog::tiles;
use crate::matcher::WatchList;
use crate::metrics::{BackfillOutcome, Metrics};
use crate::shutdown::Shutdown;
use crate::sources::{Found, MatchScratch, matched_names};
use crate::store::Store;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts at a gap that fails for another reason than a rate limit.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a gap may wait on a log that keeps rate-limiting (or cannot say how
/// big its tree is) before it is given up on: counted `failed` and logged with the
/// command that reads it.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
/// How far past a log's tree size a feed's index may be (the feed's server may
/// have read a newer tree head than the one certwatch gets) before it is taken as
/// an index the log never had.
const BEYOND_SLACK: u64 = 100_000;
/// Entries asked per `get-entries` request (the log may return fewer).
const PAGE: u64 = 256;
/// A log that rate-limits is logged at most this often.
const RATE_LIMIT_NOTE: Duration = Duration::from_secs(600);
/// How soon a gap beyond the log's tree (not published yet) is asked for again.
const NOT_YET_PUBLISHED: Duration = Duration::from_secs(10);
/// How soon an oversized gap is checked again when the log's tree size could not
/// be read.
const TREE_UNKNOWN: Duration = Duration::from_secs(30);

/// What fetching works with: shared by the `backfill` thread and every fetcher
/// thread. No delivery handle: see the module doc.
pub struct FetchContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub watch: Arc<ArcSwap<WatchList>>,
    pub coverage: Arc<Coverage>,
    pub client: ClientConfig,
    /// `BACKFILL_MAX_GAP`.
    pub max_gap: u64,
    pub shutdown: Shutdown,
}

/// One gap on its way: what is left of it and how often it failed.
#[derive(Clone, Debug)]
pub struct QueuedGap {
    pub gap: Gap,
    attempts: u32,
    /// Not before this time (rate limited, not yet published, tree size unknown).
    pub not_before: Instant,
    /// When it was queued: a gap waits at most `MAX_WAIT`.
    queued: Instant,
    /// Claimed in Postgres (or fetched unclaimed after the database failed to answer).
    claimed: bool,
    /// The start of this instance's claim on the range in Postgres, if it holds one.
    claim: Option<u64>,
    /// Checked against the log's tree and capped at `BACKFILL_MAX_GAP`.
    capped: bool,
}

impl QueuedGap {
    /// A gap found due: it is claimed, checked and capped when first fetched.
    pub fn new(gap: Gap, now: Instant) -> QueuedGap {
        QueuedGap {
            gap,
            attempts: 0,
            not_before: now,
            queued: now,
            claimed: false,
            claim: None,
            capped: false,
        }
    }

    /// A range asked for by hand, capped already (`LogFetch::cap`): not claimed (it
    /// is read whoever read it before) nor checked against the tree.
    pub fn by_hand(gap: Gap, now: Instant) -> QueuedGap {
        QueuedGap {
            claimed: true,
            capped: true,
            ..QueuedGap::new(gap, now)
        }
    }
}

/// What a run of backfill read (what `certwatch backfill` reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries read from the log and matched against the watch list.
    pub fetched: u64,
    /// Entries read that did not decode.
    pub undecodable: u64,
    /// Entries that matched the watch list (each classified and, unless known
    /// already, alerted).
    pub matched: u64,
    /// Entries over `BACKFILL_MAX_GAP`, not read.
    pub abandoned: u64,
}

/// After an attempt at a gap.
pub enum Next {
    /// Nothing left of it (read, or given up on: counted and logged).
    Done,
    /// Try the rest again at its `not_before`.
    Again(QueuedGap),
}

/// One log's fetching: its client and what it read.
pub struct LogFetch<'c> {
    ctx: &'c FetchContext,
    log: Log,
    label: String,
    client: Option<LogClient>,
    scratch: MatchScratch,
    pub counts: Counts,
    /// Why the last range given up on was not fetched.
    pub gave_up: Option<String>,
    rate_limit_said: Option<Instant>,
}

impl<'c> LogFetch<'c> {
    pub fn new(ctx: &'c FetchContext, log: Log) -> LogFetch<'c> {
        LogFetch {
            ctx,
            label: log_label(&log).to_string(),
            log,
            client: None,
            scratch: MatchScratch::default(),
            counts: Counts::default(),
            gave_up: None,
            rate_limit_said: None,
        }
    }

    /// Caps a gap at `BACKFILL_MAX_GAP` entries; the rest is logged (with the
    /// command that reads it) and counted as abandoned.
    pub fn cap(&mut self, mut gap: Gap) -> Gap {
        let max_gap = self.ctx.max_gap;
        if gap.len() > max_gap {
            let kept_end = gap.start.saturating_add(max_gap);
            log::warn!(
                "CT log {}: entries {}..{} ({} entries) abandoned, over BACKFILL_MAX_GAP={}; \
                 entries {}..{} are fetched. To read the rest: {}",
                self.label,
                kept_end,
                gap.end,
                gap.end - kept_end,
                max_gap,
                gap.start,
                kept_end,
                self.command(kept_end, gap.end)
            );
            self.count(BackfillOutcome::Abandoned, gap.end - kept_end);
            self.counts.abandoned += gap.end - kept_end;
            gap.end = kept_end;
        }
        gap
    }

    /// The command that reads `start..end` by hand.
    fn command(&self, start: u64, end: u64) -> String {
        format!(
            "certwatch backfill --log {} --from {start} --to {}",
            self.label,
            end.saturating_sub(1)
        )
    }

    fn count(&self, outcome: BackfillOutcome, n: u64) {
        self.ctx.metrics.backfill(&self.label, outcome, n);
    }

    /// Gives up on what is left of a gap: counted `failed`, logged with the
    /// command that reads it, its claim released for other replicas to skip.
    pub fn give_up(&mut self, queued: &QueuedGap, why: &str) {
        let what = format!(
            "CT log {}: entries {}..{} not fetched: {why}. To read them: {}",
            self.label,
            queued.gap.start,
            queued.gap.end,
            self.command(queued.gap.start, queued.gap.end)
        );
        log::warn!("{what}");
        self.gave_up = Some(what);
        self.count(BackfillOutcome::Failed, queued.gap.len());
        claims::finish(&self.ctx.store, &self.log, queued.claim);
    }

    /// Gives up on a gap without a line of its own (the caller logs a summary):
    /// counted `failed`, its claim released.
    pub fn give_up_quietly(&mut self, queued: &QueuedGap) {
        self.count(BackfillOutcome::Failed, queued.gap.len());
        claims::finish(&self.ctx.store, &self.log, queued.claim);
    }

    /// The log was dropped from the list with this gap queued: counted
    /// `abandoned`, its claim released.
    pub fn drop_delisted(&mut self, queued: &QueuedGap) {
        log::warn!(
            "CT log {} left the trusted list: entries {}..{} are not fetched",
            self.label,
            queued.gap.start,
            queued.gap.end
        );
        self.count(BackfillOutcome::Abandoned, queued.gap.len());
        claims::finish(&self.ctx.store, &self.log, queued.claim);
    }

    /// The log's client, made on first use.
    fn client(&mut self) -> Result<&mut LogClient, ClientError> {
        if self.client.is_none() {
            self.client = Some(LogClient::new(
                self.log.fetch_base(),
                self.log.kind(),
                &self.ctx.client,
            )?);
        }
        Ok(self.client.as_mut().expect("made above"))
    }

    fn tree_size(&mut self) -> Result<u64, ClientError> {
        let client = self.client()?;
        match client.kind() {
            LogKind::Rfc6962 => client.get_sth().map(|sth| sth.tree_size),
            LogKind::Tiled => client.checkpoint().map(|c| c.tree_size),
        }
    }

    /// Claims the gap (the parts another replica holds or finished are left out);
    /// returns the parts to fetch.
    fn claim(&mut self, queued: QueuedGap) -> Vec<QueuedGap> {
        let claimed = claims::claim(&self.ctx.store, &self.ctx.metrics, &self.log, queued.gap);
        claimed
            .into_iter()
            .map(|Claimed { range, claim }| QueuedGap {
                gap: Gap {
                    log: queued.gap.log,
                    start: range.start,
                    end: range.end,
                },
                claimed: true,
                claim,
                ..queued.clone()
            })
            .collect()
    }

    /// Claims a new gap: the parts this instance fetches (none when another
    /// replica has it all).
    pub fn take(&mut self, queued: QueuedGap) -> Vec<QueuedGap> {
        if queued.claimed {
            vec![queued]
        } else {
            self.claim(queued)
        }
    }

    /// Fetches as much of a (claimed) gap as the log gives now, page by page, each
    /// page's matches handed to `sink` and each page's end reported to `progress`
    /// before the next is asked for. Stops between pages at shutdown, and when the
    /// sink refuses a find (shutdown): that page stays in the gap.
    pub fn fetch(
        &mut self,
        mut queued: QueuedGap,
        sink: &mut dyn FnMut(Found) -> bool,
        progress: &mut dyn FnMut(u64),
    ) -> Next {
        let now = Instant::now();
        if !queued.capped && queued.gap.len() > self.ctx.max_gap {
            match self.check_tree(&queued.gap) {
                TreeCheck::Beyond => {
                    claims::finish(&self.ctx.store, &self.log, queued.claim);
                    return Next::Done;
                }
                TreeCheck::Unknown(why) => {
                    return self.wait(queued, now + TREE_UNKNOWN, &why);
                }
                TreeCheck::Within => {}
            }
        }
        if !queued.capped {
            queued.gap = self.cap(queued.gap);
            queued.capped = true;
        }
        if let Err(e) = self.client() {
            self.give_up(&queued, &e.to_string());
            return Next::Done;
        }
        let result = match self.log.kind() {
            LogKind::Rfc6962 => self.read_rfc6962(&mut queued.gap, sink, progress),
            LogKind::Tiled => self.read_tiled(&mut queued.gap, sink, progress),
        };
        match result {
            Ok(()) if queued.gap.is_empty() => {
                // Read: other replicas skip the range from now on.
                claims::finish(&self.ctx.store, &self.log, queued.claim);
                Next::Done
            }
            Ok(()) if self.ctx.shutdown.is_set() => Next::Again(queued),
            Ok(()) => {
                // Beyond the tree size: not published yet, or never.
                queued.attempts += 1;
                self.again_or_give_up(queued, now + NOT_YET_PUBLISHED, "not published yet")
            }
            Err(ClientError::RateLimited {
                status,
                retry_after,
            }) => {
                if self
                    .rate_limit_said
                    .is_none_or(|at| now.saturating_duration_since(at) >= RATE_LIMIT_NOTE)
                {
                    self.rate_limit_said = Some(now);
                    log::warn!(
                        "CT log {} rate-limits certwatch ({status}, Retry-After {} s): its gaps \
                         wait, each at most {} minutes{}",
                        self.label,
                        retry_after.as_secs(),
                        MAX_WAIT.as_secs() / 60,
                        if self.ctx.client.contact.is_some() {
                            ""
                        } else {
                            "; CT_CONTACT lets the log's operator reach you"
                        }
                    );
                }
                self.wait(queued, now + retry_after, "the log rate-limits certwatch")
            }
            Err(e) => {
                queued.attempts += 1;
                let backoff = Duration::from_secs(5u64 << queued.attempts.min(6));
                self.again_or_give_up(queued, now + backoff, &e.to_string())
            }
        }
    }

    /// Waits until `until` (a rate limit, a tree size not known), or gives up once
    /// the gap has waited `MAX_WAIT`.
    fn wait(&mut self, mut queued: QueuedGap, until: Instant, why: &str) -> Next {
        if until.saturating_duration_since(queued.queued) > MAX_WAIT {
            self.give_up(
                &queued,
                &format!("{why} (waited {} minutes)", MAX_WAIT.as_secs() / 60),
            );
            return Next::Done;
        }
        queued.not_before = until;
        Next::Again(queued)
    }

    fn again_or_give_up(&mut self, mut queued: QueuedGap, until: Instant, why: &str) -> Next {
        if queued.attempts < MAX_ATTEMPTS {
            log::debug!(
                "CT log {}: entries {}..{} retried later: {why}",
                self.label,
                queued.gap.start,
                queued.gap.end
            );
            queued.not_before = until;
            return self.wait(queued, until, why);
        }
        self.give_up(&queued, &format!("{why} (after {MAX_ATTEMPTS} attempts)"));
        Next::Done
    }

    /// A gap over the cap may come from a feed naming an index the log never had (a
    /// broken or hostile certstream server): taken as is, it would move the log's
    /// position far ahead and every real entry after it would look old. It is
    /// checked against the log's tree size; when it reaches more than
    /// `BEYOND_SLACK` entries past it, it is dropped and the log's position goes
    /// back to the gap's start (in the tracker and in Postgres). When the tree size
    /// cannot be read, the gap waits (its start holds the position back).
    fn check_tree(&mut self, gap: &Gap) -> TreeCheck {
        let tree_size = match self.tree_size() {
            Ok(size) => size,
            Err(e) => return TreeCheck::Unknown(format!("its tree size cannot be read ({e})")),
        };
        if gap.end <= tree_size.saturating_add(BEYOND_SLACK) {
            return TreeCheck::Within;
        }
        log::warn!(
            "the feed named entry {} of CT log {}, whose tree holds {tree_size} entries: \
             ignored (a broken or hostile certstream server); the log's position goes back to {}",
            gap.end - 1,
            self.label,
            gap.start
        );
        positions::rewind(&self.ctx.coverage, &self.ctx.store, &self.log, gap.start);
        TreeCheck::Beyond
    }

    /// RFC 6962: `get-entries` pages from `gap.start`, continuing after the last
    /// entry the log returned; `gap.start` advances past each page handed on.
    fn read_rfc6962(
        &mut self,
        gap: &mut Gap,
        sink: &mut dyn FnMut(Found) -> bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ClientError> {
        while !gap.is_empty() && !self.ctx.shutdown.is_set() {
            let end = gap.end.min(gap.start.saturating_add(PAGE));
            let asked = (end - gap.start) as usize;
            let body = self.client()?.get_entries(gap.start, end - 1)?;
            let source = source_of(&self.log);
            let certs = entry::certificates_from_get_entries(&body, gap.start, asked, &source)?;
            drop(body);
            if certs.is_empty() {
                return Err(ClientError::InvalidRequest(
                    "get-entries returned no entries",
                ));
            }
            let got = certs.len() as u64;
            if !self.hand_on((gap.start..).zip(certs), sink) {
                return Ok(());
            }
            gap.start += got;
            progress(gap.start);
        }
        Ok(())
    }

    /// static-ct: the data tiles covering the gap at the checkpoint's tree size
    /// (the right edge's partial tile included), one at a time; entries beyond the
    /// tree size stay in the gap for later.
    fn read_tiled(
        &mut self,
        gap: &mut Gap,
        sink: &mut dyn FnMut(Found) -> bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ClientError> {
        let tree_size = self.client()?.checkpoint()?.tree_size;
        let end = gap.end.min(tree_size);
        for tile in tiles::data_tiles(gap.start..end, tree_size) {
            if self.ctx.shutdown.is_set() {
                return Ok(());
            }
            let body = self.client()?.data_tile(tile)?;
            let source = source_of(&self.log);
            let certs = entry::certificates_from_tile(&body.body, body.tile, &source)?;
            drop(body.body);
            let wanted = gap.start..end;
            let page = (body.tile.start()..)
                .zip(certs)
                .filter(|(index, _)| wanted.contains(index));
            if !self.hand_on(page, sink) {
                return Ok(());
            }
            gap.start = gap.start.max(body.tile.end().min(end));
            progress(gap.start);
        }
        if !self.ctx.shutdown.is_set() {
            gap.start = gap.start.max(end);
        }
        Ok(())
    }

    /// Matches each certificate of a page with the one matching rule and hands a
    /// match on; counts every entry (`fetched`, or `failed` when it did not decode).
    /// False when the sink refused a find (the page is to be read again).
    fn hand_on(
        &mut self,
        page: impl Iterator<Item = (u64, EntryResult)>,
        sink: &mut dyn FnMut(Found) -> bool,
    ) -> bool {
        let (mut fetched, mut failed) = (0u64, 0u64);
        let mut newest_ms: Option<i64> = None;
        let watch = self.ctx.watch.load();
        for (index, cert) in page {
            let cert = match cert {
                Ok(cert) => cert,
                Err(e) => {
                    failed += 1;
                    log::debug!("CT log {} entry {index}: {e}", self.label);
                    continue;
                }
            };
            fetched += 1;
            newest_ms = newest_ms.max(cert.source_timestamp_ms);
            let Some(matched) = matched_names(&watch, cert.names(), &mut self.scratch) else {
                continue;
            };
            self.counts.matched += 1;
            let matches = matched.matches(&watch, &self.scratch);
            drop(matched);
            let cert = cert.into_certificate(&matches.names);
            log::info!(
                "backfill: CT log {} entry {index} matches {:?}",
                self.label,
                matches.names.iter().take(3).collect::<Vec<_>>()
            );
            if !sink(Found {
                cert,
                matches,
                via: DetectedVia::Backfill,
            }) {
                return false;
            }
        }
        if let Some(ms) = newest_ms {
            // Published with the feed's own by the next tick (`certwatch_ct_log_lag_seconds`).
            self.ctx.coverage.note_fetched_timestamp(self.log.id, ms);
        }
        self.counts.fetched += fetched;
        self.counts.undecodable += failed;
        self.count(BackfillOutcome::Fetched, fetched);
        if failed > 0 {
            self.count(BackfillOutcome::Failed, failed);
        }
        true
    }
}

/// How a gap over the cap compares with the log's tree.
enum TreeCheck {
    Within,
    Beyond,
    Unknown(String),
}

fn source_of(log: &Log) -> LogSource<'_> {
    LogSource {
        url: log.fetch_base(),
        name: &log.description,
        kind: log.kind(),
    }
}
