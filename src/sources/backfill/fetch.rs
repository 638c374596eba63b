//! The backfill queue and its fetching, on the `backfill` thread (or the main
//! thread for `certwatch backfill`): gaps waiting for a (re)try, one client per
//! log, pages of `get-entries` and data tiles decoded into certificates and handed
//! over through the one matching rule of `sources`.
//!
//! Bounds: gaps waiting for a retry (rate limited, log unreachable, not yet
//! published) are at most `RETRY_GAPS`, each retried at most `MAX_ATTEMPTS` times
//! unless rate limited; one request at a time, paced per log by the client
//! (`ClientConfig::min_interval`), a 429/503 honoured through its `Retry-After`.
//! Only logs of the list are ever fetched: a gap is only ever opened for a log the
//! list names.

use super::Backfill;
use crate::alert::DetectedVia;
use crate::clock::unix_now;
use crate::coverage::claims;
use crate::coverage::gaps::Gap;
use crate::coverage::list::log_label;
use crate::coverage::positions;
use crate::ctlog::LogKind;
use crate::ctlog::client::{ClientError, LogClient};
use crate::ctlog::entry::{self, EntryResult, LogSource};
use crate::ctlog::loglist::{Log, LogId, LogList};
use crate::ctlog::tiles;
use crate::metrics::BackfillOutcome;
use crate::sources::{MatchScratch, matched_names};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Gaps waiting for a retry at most; past it a gap fails (counted, logged).
pub const RETRY_GAPS: usize = 1024;
/// Attempts at a gap that fails for another reason than a rate limit.
pub const MAX_ATTEMPTS: u32 = 5;
/// How far past a log's tree size a feed's index may be (the feed's server may
/// have read a newer tree head than the one certwatch gets) before it is taken as
/// an index the log never had.
const BEYOND_SLACK: u64 = 100_000;
/// Entries asked per `get-entries` request (the log may return fewer).
const PAGE: u64 = 256;
/// A log that rate-limits is logged at most this often.
const RATE_LIMIT_NOTE: Duration = Duration::from_secs(600);

/// One gap on its way: what is left of it and how often it failed.
pub(super) struct QueuedGap {
    pub(super) gap: Gap,
    attempts: u32,
    /// Not before this time (rate limited, or not yet published).
    pub(super) not_before: Instant,
    /// The start of this instance's claim on the range in Postgres, if it holds one.
    claim: Option<u64>,
}

impl QueuedGap {
    pub(super) fn new(gap: Gap, claim: Option<u64>, now: Instant) -> QueuedGap {
        QueuedGap {
            gap,
            attempts: 0,
            not_before: now,
            claim,
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

/// The backfill queue, the per-log clients and what was read.
pub(super) struct Fetcher<'b> {
    backfill: &'b Backfill,
    clients: HashMap<LogId, LogClient>,
    queue: VecDeque<QueuedGap>,
    scratch: MatchScratch,
    pub(super) counts: Counts,
    /// Why the last range given up on was not fetched.
    pub(super) gave_up: Option<String>,
    /// Per log, when its rate limiting was last logged.
    rate_limit_said: HashMap<LogId, Instant>,
}

impl<'b> Fetcher<'b> {
    pub(super) fn new(backfill: &'b Backfill) -> Fetcher<'b> {
        Fetcher {
            backfill,
            clients: HashMap::new(),
            queue: VecDeque::new(),
            scratch: MatchScratch::default(),
            counts: Counts::default(),
            gave_up: None,
            rate_limit_said: HashMap::new(),
        }
    }

    /// Per queued gap, its log and first index (the floors of saved positions).
    pub(super) fn queued_starts(&self) -> impl Iterator<Item = (LogId, u64)> + '_ {
        self.queue.iter().map(|q| (q.gap.log, q.gap.start))
    }

    /// Entries waiting in the queue.
    pub(super) fn queued_entries(&self) -> u64 {
        self.queue.iter().map(|q| q.gap.len()).sum()
    }

    /// Caps a gap at `BACKFILL_MAX_GAP` entries; the rest is logged (with the
    /// command that reads it) and counted as abandoned.
    pub(super) fn cap(&self, log: &Log, mut gap: Gap) -> Gap {
        let max_gap = self.backfill.max_gap;
        if gap.len() > max_gap {
            let kept_end = gap.start.saturating_add(max_gap);
            log::warn!(
                "CT log {}: entries {}..{} ({} entries) abandoned, over BACKFILL_MAX_GAP={}; \
                 entries {}..{} are fetched. To read the rest: certwatch backfill --log {} \
                 --from {} --to {}",
                log_label(log),
                kept_end,
                gap.end,
                gap.end - kept_end,
                max_gap,
                gap.start,
                kept_end,
                log_label(log),
                kept_end,
                gap.end - 1
            );
            self.backfill.intake.cls.metrics.backfill(
                log_label(log),
                BackfillOutcome::Abandoned,
                gap.end - kept_end,
            );
            gap.end = kept_end;
        }
        gap
    }

    /// Queues a gap for (another) attempt, or fails it when the queue is full.
    pub(super) fn enqueue(&mut self, log: &Log, queued: QueuedGap) {
        if self.queue.len() >= RETRY_GAPS {
            log::warn!(
                "CT log {}: entries {}..{} not fetched: {RETRY_GAPS} gaps wait already",
                log_label(log),
                queued.gap.start,
                queued.gap.end
            );
            let cls = &self.backfill.intake.cls;
            cls.metrics
                .backfill(log_label(log), BackfillOutcome::Failed, queued.gap.len());
            claims::finish(&cls.store, log, queued.claim);
            return;
        }
        self.queue.push_back(queued);
    }

    /// One pass over the queue: each gap that is due is fetched as far as the log
    /// gives it now; what is left goes back in the queue.
    pub(super) fn work_through(&mut self, list: &LogList) {
        for _ in 0..self.queue.len() {
            if self.backfill.shutdown.is_set() {
                return;
            }
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if queued.not_before > Instant::now() {
                self.queue.push_back(queued);
                continue;
            }
            let Some(log) = list.get(&queued.gap.log) else {
                continue;
            };
            let claim = queued.claim;
            match self.fetch_gap(log, queued) {
                Some(rest) => self.enqueue(log, rest),
                None => claims::finish(&self.backfill.intake.cls.store, log, claim),
            }
        }
    }

    /// The log's client, made on first use.
    fn client_for(&mut self, log: &Log) -> Result<&mut LogClient, ClientError> {
        match self.clients.entry(log.id) {
            std::collections::hash_map::Entry::Occupied(slot) => Ok(slot.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => Ok(slot.insert(LogClient::new(
                log.fetch_base(),
                log.kind(),
                &self.backfill.client,
            )?)),
        }
    }

    /// A gap over the cap may come from a feed naming an index the log never had (a
    /// broken or hostile certstream server): taken as is, it would move the log's
    /// position far ahead and every real entry after it would look old. Such a gap
    /// is checked against the log's tree size; when it reaches more than
    /// `BEYOND_SLACK` entries past it, it is dropped, the log's position goes back
    /// to the gap's start (in the tracker and in Postgres) and `true` is returned.
    /// When the tree size cannot be read, the gap is taken as is.
    pub(super) fn beyond_the_log(&mut self, log: &Log, gap: &Gap) -> bool {
        let tree_size = match self.client_for(log).and_then(|client| match client.kind() {
            LogKind::Rfc6962 => client.get_sth().map(|sth| sth.tree_size),
            LogKind::Tiled => client.checkpoint().map(|c| c.tree_size),
        }) {
            Ok(size) => size,
            Err(e) => {
                log::debug!("CT log {}: tree size not read: {e}", log_label(log));
                return false;
            }
        };
        if gap.end <= tree_size.saturating_add(BEYOND_SLACK) {
            return false;
        }
        log::warn!(
            "the feed named entry {} of CT log {}, whose tree holds {tree_size} entries: \
             ignored (a broken or hostile certstream server); the log's position goes back to {}",
            gap.end - 1,
            log_label(log),
            gap.start
        );
        let backfill = self.backfill;
        positions::rewind(
            &backfill.coverage,
            &backfill.intake.cls.store,
            log,
            gap.start,
        );
        true
    }

    /// Fetches as much of a gap as the log gives now; returns what is left to try
    /// again, if anything.
    pub(super) fn fetch_gap(&mut self, log: &Log, mut queued: QueuedGap) -> Option<QueuedGap> {
        let label = log_label(log).to_string();
        let kind = log.kind();
        let metrics = &self.backfill.intake.cls.metrics;
        if let Err(e) = self.client_for(log) {
            log::warn!(
                "CT log {label}: {e}; entries {}..{} not fetched",
                queued.gap.start,
                queued.gap.end
            );
            metrics.backfill(&label, BackfillOutcome::Failed, queued.gap.len());
            return None;
        }
        let source = LogSource {
            url: log.fetch_base(),
            name: &log.description,
            kind,
        };
        let mut certs: Vec<(u64, EntryResult)> = Vec::new();
        let result = {
            let client = self.clients.get_mut(&log.id).expect("inserted above");
            match kind {
                LogKind::Rfc6962 => fetch_rfc6962(client, &source, &mut queued.gap, &mut certs),
                LogKind::Tiled => fetch_tiled(client, &source, &mut queued.gap, &mut certs),
            }
        };
        let newest_ms = certs
            .iter()
            .filter_map(|(_, cert)| cert.as_ref().ok()?.source_timestamp_ms)
            .max();
        self.hand_over_all(&label, certs);
        if let Some(ms) = newest_ms {
            // Published with the feed's own by the next tick (`certwatch_ct_log_lag_seconds`).
            self.backfill.coverage.note_fetched_timestamp(log.id, ms);
        }
        match result {
            Ok(()) if queued.gap.is_empty() => None,
            Ok(()) => {
                // Not yet published (beyond the tree size): later.
                queued.not_before = Instant::now() + Duration::from_secs(10);
                queued.attempts += 1;
                self.retry_or_fail(&label, queued, "not published yet")
            }
            Err(ClientError::RateLimited {
                status,
                retry_after,
            }) => {
                let now = Instant::now();
                let said = self.rate_limit_said.get(&log.id);
                if said.is_none_or(|at| now.saturating_duration_since(*at) >= RATE_LIMIT_NOTE) {
                    self.rate_limit_said.insert(log.id, now);
                    log::warn!(
                        "CT log {label} rate-limits certwatch ({status}, Retry-After {} s): its gaps \
                         wait and are retried without limit{}",
                        retry_after.as_secs(),
                        if self.backfill.client.contact.is_some() {
                            ""
                        } else {
                            "; CT_CONTACT lets the log's operator reach you"
                        }
                    );
                }
                queued.not_before = now + retry_after;
                Some(queued)
            }
            Err(e) => {
                queued.attempts += 1;
                queued.not_before =
                    Instant::now() + Duration::from_secs(5u64 << queued.attempts.min(6));
                self.retry_or_fail(&label, queued, &e.to_string())
            }
        }
    }

    fn retry_or_fail(&mut self, label: &str, queued: QueuedGap, why: &str) -> Option<QueuedGap> {
        if queued.attempts < MAX_ATTEMPTS {
            log::debug!(
                "CT log {label}: entries {}..{} retried later: {why}",
                queued.gap.start,
                queued.gap.end
            );
            return Some(queued);
        }
        let what = format!(
            "CT log {label}: entries {}..{} not fetched after {MAX_ATTEMPTS} attempts: {why}",
            queued.gap.start, queued.gap.end
        );
        log::warn!("{what}");
        self.gave_up = Some(what);
        self.backfill
            .intake
            .cls
            .metrics
            .backfill(label, BackfillOutcome::Failed, queued.gap.len());
        None
    }

    /// Matches each fetched certificate with the one matching rule and hands a
    /// match over to classification; counts every entry (`fetched`, or `failed`
    /// when it did not decode).
    fn hand_over_all(&mut self, label: &str, certs: Vec<(u64, EntryResult)>) {
        let (mut fetched, mut failed) = (0u64, 0u64);
        let intake = &self.backfill.intake;
        let watch = intake.cls.watch.load();
        for (index, cert) in certs {
            let cert = match cert {
                Ok(cert) => cert,
                Err(e) => {
                    failed += 1;
                    log::debug!("CT log {label} entry {index}: {e}");
                    continue;
                }
            };
            fetched += 1;
            let Some(matched) = matched_names(&watch, cert.names(), &mut self.scratch) else {
                continue;
            };
            self.counts.matched += 1;
            let matches = matched.matches(&watch, &self.scratch);
            drop(matched);
            let cert = cert.into_certificate(&matches.names);
            log::info!(
                "backfill: CT log {label} entry {index} matches {:?}",
                matches.names.iter().take(3).collect::<Vec<_>>()
            );
            intake.hand_over(cert, matches, DetectedVia::Backfill, unix_now());
        }
        self.counts.fetched += fetched;
        self.counts.undecodable += failed;
        let metrics = &intake.cls.metrics;
        metrics.backfill(label, BackfillOutcome::Fetched, fetched);
        if failed > 0 {
            metrics.backfill(label, BackfillOutcome::Failed, failed);
        }
    }
}

/// RFC 6962: `get-entries` pages from `gap.start`, continuing after the last entry
/// the log returned; `gap.start` advances past what was read.
fn fetch_rfc6962(
    client: &mut LogClient,
    source: &LogSource<'_>,
    gap: &mut Gap,
    out: &mut Vec<(u64, EntryResult)>,
) -> Result<(), ClientError> {
    while !gap.is_empty() {
        let end = gap.end.min(gap.start.saturating_add(PAGE));
        let asked = (end - gap.start) as usize;
        let body = client.get_entries(gap.start, end - 1)?;
        let certs = entry::certificates_from_get_entries(&body, gap.start, asked, source)?;
        if certs.is_empty() {
            return Err(ClientError::InvalidRequest(
                "get-entries returned no entries",
            ));
        }
        let got = certs.len() as u64;
        out.extend((gap.start..).zip(certs));
        gap.start += got;
    }
    Ok(())
}

/// static-ct: the data tiles covering the gap at the checkpoint's tree size (the
/// right edge's partial tile included); entries beyond the tree size stay in the
/// gap for later.
fn fetch_tiled(
    client: &mut LogClient,
    source: &LogSource<'_>,
    gap: &mut Gap,
    out: &mut Vec<(u64, EntryResult)>,
) -> Result<(), ClientError> {
    let tree_size = client.checkpoint()?.tree_size;
    let end = gap.end.min(tree_size);
    if end <= gap.start {
        return Ok(());
    }
    for tile in tiles::data_tiles(gap.start..end, tree_size) {
        let body = client.data_tile(tile)?;
        let certs = entry::certificates_from_tile(&body.body, body.tile, source)?;
        for (index, cert) in (body.tile.start()..).zip(certs) {
            if (gap.start..end).contains(&index) {
                out.push((index, cert));
            }
        }
        gap.start = gap.start.max(body.tile.end().min(end));
    }
    gap.start = gap.start.max(end);
    Ok(())
}
