//! The `backfill` thread: reads the trusted CT log list (`CT_LOG_LIST`, at start
//! and daily) into `worker::Coverage::logs`, and every second takes the gaps the
//! workers' gap tracking found due (entries of a listed log the feed did not
//! deliver within the settle time), fetches them from the log itself with
//! `ctlog::client::LogClient` (RFC 6962 `get-entries`, following the batch size
//! the log returns; static-ct data tiles, the partial tile at the right edge
//! included), converts each entry with `ctlog::entry` into the certificate the feed
//! would have sent, matches its names with the workers' own rule
//! (`worker::matched_names`) and hands a match to `Classifier::consider` with
//! `DetectedVia::Backfill`. The same issuance found on the feed and by backfill is
//! one alert (dedupe and issuance key).
//!
//! Bounds: a gap is fetched up to `BACKFILL_MAX_GAP` entries (the rest logged with
//! its log and index range and counted as `abandoned`); gaps waiting for a retry
//! (rate limited, log unreachable, not yet published) are at most `RETRY_GAPS`,
//! each retried at most `MAX_ATTEMPTS` times unless rate limited; one request at a
//! time, paced per log by the client (`ClientConfig::min_interval`), a 429/503
//! honoured through its `Retry-After`. Only logs of the list are ever fetched: a
//! gap is only ever opened for a log the list names.
//!
//! Owns the message it would receive (`Request`, a manual range: the
//! `certwatch backfill` command runs `run_once` with one).

use crate::alert::DetectedVia;
use crate::classify::Classifier;
use crate::config::FeedHoles;
use crate::ctlog::LogKind;
use crate::ctlog::client::{ClientConfig, ClientError, LogClient};
use crate::ctlog::entry::{self, EntryResult, LogSource};
use crate::ctlog::gaps::{self, Gap};
use crate::ctlog::loglist::{Log, LogId, LogList, MAX_LIST_BYTES};
use crate::ctlog::tiles;
use crate::grace::{HeldAlerts, Pending};
use crate::metrics::BackfillOutcome;
use crate::shutdown::Shutdown;
use crate::threads::unix_now;
use crate::worker::{self, Coverage, MatchScratch};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default `BACKFILL_MAX_GAP`: entries fetched per gap at most (10,000 entries are
/// about 40 tiles, some 4 MB compressed).
pub const DEFAULT_MAX_GAP: u64 = 10_000;
/// How often due gaps are taken and statistics published.
pub const TICK: Duration = Duration::from_secs(1);
/// How often the log list is read again.
pub const LIST_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Gaps waiting for a retry at most; past it a gap fails (counted, logged).
pub const RETRY_GAPS: usize = 1024;
/// Attempts at a gap that fails for another reason than a rate limit.
pub const MAX_ATTEMPTS: u32 = 5;
/// Entries asked per `get-entries` request (the log may return fewer).
const PAGE: u64 = 256;
/// A dense log's gaps are coalesced over this many seen entries (one tile).
const COALESCE: u64 = tiles::TILE_WIDTH;

/// A range of one log to read once (`certwatch backfill --log URL --from N --to M`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The log's URL, as the list or a feed names it.
    pub log_url: String,
    /// First index.
    pub from: u64,
    /// Last index (inclusive).
    pub to: u64,
}

/// What the `backfill` thread needs.
pub struct Backfill {
    pub cls: Arc<Classifier>,
    pub pending: Sender<Pending>,
    pub held: Arc<HeldAlerts>,
    pub coverage: Arc<Coverage>,
    /// `CT_LOG_LIST`; `None` is off.
    pub list_source: Option<String>,
    pub max_gap: u64,
    pub client: ClientConfig,
    pub feed_holes: FeedHoles,
    pub shutdown: Shutdown,
}

/// One gap on its way: what is left of it and how often it failed.
struct Work {
    gap: Gap,
    attempts: u32,
    /// Not before this time (rate limited, or not yet published).
    not_before: Instant,
}

/// The `backfill` thread's state.
struct State {
    clients: HashMap<LogId, LogClient>,
    retry: VecDeque<Work>,
    scratch: MatchScratch,
    /// Per log: (entries seen, gap entries) as last published to the counters.
    published: HashMap<LogId, (u64, u64)>,
    /// Logs already warned about as dense.
    dense_warned: HashSet<LogId>,
}

/// Reads the log list from a file or an `http(s)://` URL (bounded in size).
pub fn read_list(source: &str) -> Result<LogList, String> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .user_agent(concat!("certwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut response = agent
            .get(source)
            .call()
            .map_err(|e| format!("cannot fetch the log list: {e}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_LIST_BYTES as u64 + 1)
            .read_to_vec()
            .map_err(|e| format!("cannot read the log list: {e}"))?
    } else {
        let mut bytes = Vec::new();
        std::fs::File::open(source)
            .and_then(|f| f.take(MAX_LIST_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the log list file {source}: {e}"))?;
        bytes
    };
    LogList::parse(&bytes).map_err(|e| format!("the log list does not parse: {e}"))
}

/// The metrics label of a log: its fetch URL without the trailing slash.
pub fn log_label(log: &Log) -> &str {
    log.fetch_base().trim_end_matches('/')
}

/// Installs a list: shared with the workers, per-log series created.
fn install(b: &Backfill, list: LogList) {
    for log in list.logs() {
        b.cls.metrics.register_log(log_label(log));
    }
    log::info!(
        "trusted CT log list loaded: {} logs (version {}); gap tracking and backfill on",
        list.logs().len(),
        list.version().unwrap_or("?")
    );
    b.coverage.logs.store(Some(Arc::new(list)));
    b.cls.metrics.ct_coverage_enabled.set(1);
    b.cls
        .health
        .coverage
        .store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Loads the list; on failure keeps the one in use (if any) and says so.
fn load_list(b: &Backfill) {
    let Some(source) = &b.list_source else {
        return;
    };
    match read_list(source) {
        Ok(list) => install(b, list),
        Err(e) if b.coverage.logs.load().is_some() => {
            log::warn!("{e}; keeping the log list in use");
        }
        Err(e) => {
            log::warn!("{e}; gap tracking and backfill are off until it can be read");
        }
    }
}

/// The `backfill` thread: runs until shutdown.
pub fn run_backfill(b: Backfill) {
    let Some(_) = &b.list_source else {
        log::info!("CT_LOG_LIST=off: gap tracking and backfill are off");
        // Stays up (a stage that ends before shutdown reads as dead in /healthz).
        let _ = b.shutdown.channel().recv();
        return;
    };
    load_list(&b);
    let mut list_read = Instant::now();
    let mut state = State {
        clients: HashMap::new(),
        retry: VecDeque::new(),
        scratch: MatchScratch::default(),
        published: HashMap::new(),
        dense_warned: HashSet::new(),
    };
    while !b.shutdown.sleep(TICK) {
        let list_due = list_read.elapsed() >= LIST_REFRESH;
        if list_due || b.coverage.logs.load().is_none() && list_read.elapsed() >= TICK * 60 {
            load_list(&b);
            list_read = Instant::now();
        }
        let Some(list) = b.coverage.logs.load_full() else {
            continue;
        };
        tick(&b, &list, &mut state);
    }
}

/// One second's work: publish statistics, apply the dense-feed policy, take the
/// due gaps, fetch what is due.
fn tick(b: &Backfill, list: &LogList, state: &mut State) {
    let now = Instant::now();
    let (due, stats) = {
        let mut tracker = b.coverage.gaps.lock();
        let due = tracker.take_due(now);
        let stats = tracker.stats();
        for s in &stats {
            if s.dense
                && b.feed_holes == FeedHoles::Coalesce
                && !state.dense_warned.contains(&s.log)
            {
                tracker.set_coalesce(s.log, COALESCE);
            }
        }
        (due, stats)
    };
    let open: u64 = stats.iter().map(|s| s.open_entries).sum::<u64>()
        + state.retry.iter().map(|w| w.gap.len()).sum::<u64>();
    let health = &b.cls.health;
    health
        .logs_seen
        .store(stats.len(), std::sync::atomic::Ordering::Relaxed);
    health
        .open_gap_entries
        .store(open as i64, std::sync::atomic::Ordering::Relaxed);
    let (now_ms, flowing) = (
        crate::threads::unix_now_ms(),
        gaps::feed_flowing(&stats, now),
    );
    let mut lagging = 0;
    let mut dense: HashSet<LogId> = HashSet::new();
    for s in &stats {
        let Some(log) = list.get(&s.log) else {
            continue;
        };
        let label = log_label(log);
        let (seen, gap_entries) = state.published.entry(s.log).or_default();
        let m = &b.cls.metrics;
        m.ct_log_entries_seen
            .with_label_values(&[label])
            .inc_by(s.seen.saturating_sub(*seen));
        m.ct_log_gap_entries
            .with_label_values(&[label])
            .inc_by(s.gap_entries.saturating_sub(*gap_entries));
        (*seen, *gap_entries) = (s.seen.max(*seen), s.gap_entries.max(*gap_entries));
        if let Some(lag) = s.lag_seconds(now_ms) {
            m.ct_log_lag_seconds.with_label_values(&[label]).set(lag);
        }
        lagging += usize::from(s.lagging(now, now_ms, flowing));
        if s.dense {
            dense.insert(s.log);
            if state.dense_warned.insert(s.log) {
                log::warn!(
                    "CT log {label} looks dense: {:.0}% of its recent entries never came on the feed, \
                     in {} gaps (a certstream server that drops cross-log duplicates, such as \
                     certstream-server-rust); CT_FEED_HOLES={} ",
                    s.hole_density * 100.0,
                    s.window_gaps,
                    match b.feed_holes {
                        FeedHoles::Fetch => "fetch: every gap is fetched",
                        FeedHoles::Coalesce =>
                            "coalesce: its gaps are fetched in 256-entry stretches",
                        FeedHoles::Count => "count: its gaps are counted as abandoned, not fetched",
                    }
                );
            }
        }
    }
    health
        .logs_lagging
        .store(lagging, std::sync::atomic::Ordering::Relaxed);
    let due = match b.feed_holes {
        FeedHoles::Coalesce => gaps::coalesce(due, COALESCE, |log| dense.contains(log)),
        _ => due,
    };
    for gap in due {
        let Some(log) = list.get(&gap.log) else {
            continue;
        };
        if b.feed_holes == FeedHoles::Count && dense.contains(&gap.log) {
            b.cls
                .metrics
                .backfill(log_label(log), BackfillOutcome::Abandoned, gap.len());
            log::debug!(
                "gap {}..{} of dense log {} counted, not fetched (CT_FEED_HOLES=count)",
                gap.start,
                gap.end,
                log_label(log)
            );
            continue;
        }
        let gap = cap(b, log, gap);
        enqueue(
            b,
            log,
            state,
            Work {
                gap,
                attempts: 0,
                not_before: now,
            },
        );
    }
    // Work through what is due; one pass over the queue per tick.
    for _ in 0..state.retry.len() {
        if b.shutdown.is_set() {
            return;
        }
        let Some(work) = state.retry.pop_front() else {
            break;
        };
        if work.not_before > Instant::now() {
            state.retry.push_back(work);
            continue;
        }
        let Some(log) = list.get(&work.gap.log) else {
            continue;
        };
        if let Some(rest) = fetch_gap(b, log, state, work) {
            enqueue(b, log, state, rest);
        }
    }
}

/// Caps a gap at `max_gap` entries; the rest is logged and counted as abandoned.
fn cap(b: &Backfill, log: &Log, mut gap: Gap) -> Gap {
    if gap.len() > b.max_gap {
        let kept_end = gap.start + b.max_gap;
        log::warn!(
            "CT log {}: entries {}..{} ({} entries) abandoned, over BACKFILL_MAX_GAP={}; \
             entries {}..{} are fetched",
            log_label(log),
            kept_end,
            gap.end,
            gap.end - kept_end,
            b.max_gap,
            gap.start,
            kept_end
        );
        b.cls.metrics.backfill(
            log_label(log),
            BackfillOutcome::Abandoned,
            gap.end - kept_end,
        );
        gap.end = kept_end;
    }
    gap
}

/// Queues a gap for (another) attempt, or fails it when the queue is full.
fn enqueue(b: &Backfill, log: &Log, state: &mut State, work: Work) {
    if state.retry.len() >= RETRY_GAPS {
        log::warn!(
            "CT log {}: entries {}..{} not fetched: {RETRY_GAPS} gaps wait already",
            log_label(log),
            work.gap.start,
            work.gap.end
        );
        b.cls
            .metrics
            .backfill(log_label(log), BackfillOutcome::Failed, work.gap.len());
        return;
    }
    state.retry.push_back(work);
}

/// Fetches as much of a gap as the log gives now; returns what is left to try
/// again, if anything.
fn fetch_gap(b: &Backfill, log: &Log, state: &mut State, mut work: Work) -> Option<Work> {
    let label = log_label(log).to_string();
    let kind = if log.is_tiled() {
        LogKind::Tiled
    } else {
        LogKind::Rfc6962
    };
    if let std::collections::hash_map::Entry::Vacant(slot) = state.clients.entry(log.id) {
        match LogClient::new(log.fetch_base(), kind, &b.client) {
            Ok(client) => {
                slot.insert(client);
            }
            Err(e) => {
                log::warn!(
                    "CT log {label}: {e}; entries {}..{} not fetched",
                    work.gap.start,
                    work.gap.end
                );
                b.cls
                    .metrics
                    .backfill(&label, BackfillOutcome::Failed, work.gap.len());
                return None;
            }
        }
    }
    let source = LogSource {
        url: log.fetch_base(),
        name: &log.description,
        kind,
    };
    let mut newest_ms: Option<u64> = None;
    let result = {
        let client = state.clients.get_mut(&log.id).expect("inserted above");
        let mut certs: Vec<(u64, EntryResult)> = Vec::new();
        let r = match kind {
            LogKind::Rfc6962 => fetch_rfc6962(client, &source, &mut work.gap, &mut certs),
            LogKind::Tiled => fetch_tiled(client, &source, &mut work.gap, &mut certs),
        };
        for (_, cert) in &certs {
            if let Ok(cert) = cert
                && let Some(ms) = cert.source_timestamp_ms
            {
                newest_ms = newest_ms.max(Some(ms as u64));
            }
        }
        consider_all(b, &label, certs, &mut state.scratch);
        r
    };
    if let Some(ms) = newest_ms {
        // Published with the feed's own by the next tick (`certwatch_ct_log_lag_seconds`).
        b.coverage.gaps.lock().note_timestamp(log.id, ms as i64);
    }
    match result {
        Ok(()) if work.gap.is_empty() => None,
        Ok(()) => {
            // Not yet published (beyond the tree size): later.
            work.not_before = Instant::now() + Duration::from_secs(10);
            work.attempts += 1;
            retry_or_fail(b, &label, work, "not published yet")
        }
        Err(ClientError::RateLimited { retry_after, .. }) => {
            work.not_before = Instant::now() + retry_after;
            Some(work)
        }
        Err(e) => {
            work.attempts += 1;
            work.not_before = Instant::now() + Duration::from_secs(5u64 << work.attempts.min(6));
            retry_or_fail(b, &label, work, &e.to_string())
        }
    }
}

fn retry_or_fail(b: &Backfill, label: &str, work: Work, why: &str) -> Option<Work> {
    if work.attempts < MAX_ATTEMPTS {
        log::debug!(
            "CT log {label}: entries {}..{} retried later: {why}",
            work.gap.start,
            work.gap.end
        );
        return Some(work);
    }
    log::warn!(
        "CT log {label}: entries {}..{} not fetched after {MAX_ATTEMPTS} attempts: {why}",
        work.gap.start,
        work.gap.end
    );
    b.cls
        .metrics
        .backfill(label, BackfillOutcome::Failed, work.gap.len());
    None
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
        let end = gap.end.min(gap.start + PAGE);
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

/// Matches each fetched certificate as a worker would and hands a match to
/// classification; counts every entry (`fetched`, or `failed` when it did not
/// decode).
fn consider_all(
    b: &Backfill,
    label: &str,
    certs: Vec<(u64, EntryResult)>,
    scratch: &mut MatchScratch,
) {
    let (mut fetched, mut failed) = (0u64, 0u64);
    let watch = b.cls.watch.load();
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
        let Some(matched) = worker::matched_names(&watch, cert.names(), scratch) else {
            continue;
        };
        let lists = worker::match_lists(&watch, &matched, scratch);
        drop(matched);
        let cert = cert.into_certificate(&lists.1);
        log::info!(
            "backfill: CT log {label} entry {index} matches {:?}",
            lists.1.iter().take(3).collect::<Vec<_>>()
        );
        let next = b
            .cls
            .consider(cert, lists, DetectedVia::Backfill, unix_now());
        worker::hand_over(&b.cls, next, &b.pending, &b.held);
    }
    b.cls
        .metrics
        .backfill(label, BackfillOutcome::Fetched, fetched);
    if failed > 0 {
        b.cls
            .metrics
            .backfill(label, BackfillOutcome::Failed, failed);
    }
}

/// Runs one manual request through the same path (`certwatch backfill`): returns
/// the entries read, or why it could not.
pub fn run_once(b: &Backfill, request: &Request) -> Result<u64, String> {
    let Some(source) = &b.list_source else {
        return Err("CT_LOG_LIST=off: no trusted log list".into());
    };
    let list = read_list(source)?;
    let Some(log) = list.lookup(&request.log_url) else {
        return Err(format!(
            "{} is not a log of the trusted list; nothing fetched",
            request.log_url
        ));
    };
    if request.to < request.from {
        return Err("--to is below --from".into());
    }
    install(b, list.clone());
    let log = list.get(&log.id).expect("looked up");
    let gap = cap(
        b,
        log,
        Gap {
            log: log.id,
            start: request.from,
            end: request.to.saturating_add(1),
        },
    );
    let total = gap.len();
    let mut state = State {
        clients: HashMap::new(),
        retry: VecDeque::new(),
        scratch: MatchScratch::default(),
        published: HashMap::new(),
        dense_warned: HashSet::new(),
    };
    let mut work = Work {
        gap,
        attempts: 0,
        not_before: Instant::now(),
    };
    loop {
        let wait = work.not_before.saturating_duration_since(Instant::now());
        if b.shutdown.sleep(wait) {
            return Err("interrupted".into());
        }
        match fetch_gap(b, log, &mut state, work) {
            None => return Ok(total),
            Some(rest) => work = rest,
        }
    }
}
