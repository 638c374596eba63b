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
//! Coverage state in Postgres: each list read is kept (`public.certwatch_log_list`)
//! and used when the source cannot be read; per-log positions are read back at start
//! into the gap tracker (a restart is backfilled from there) and saved every
//! `SAVE_POSITIONS` (never past a gap still queued; the pipeline saves once more
//! after its drain); each gap is claimed (`public.certwatch_backfill_claims`) before
//! it is fetched, so two replicas on one database do not fetch it twice.
//!
//! Owns `Request`, a manual range: the `certwatch backfill` command runs `run_once`
//! with one on the main thread.

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
use crate::store::{Store, StoreError};
use crate::threads::unix_now;
use crate::worker::{self, Coverage, MatchScratch};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Default `BACKFILL_MAX_GAP`: entries fetched per gap at most (10,000 entries are
/// about 40 tiles, some 4 MB compressed).
pub const DEFAULT_MAX_GAP: u64 = 10_000;
/// How often due gaps are taken and statistics published.
pub const TICK: Duration = Duration::from_secs(1);
/// How long reading the log list from a URL may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the log list is read again.
pub const LIST_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Gaps waiting for a retry at most; past it a gap fails (counted, logged).
pub const RETRY_GAPS: usize = 1024;
/// Attempts at a gap that fails for another reason than a rate limit.
pub const MAX_ATTEMPTS: u32 = 5;
/// How often per-log positions are written to Postgres (and once more when the
/// workers are done at shutdown).
pub const SAVE_POSITIONS: Duration = Duration::from_secs(10);
/// How long a range claimed for fetching is this instance's; past it (the instance
/// died) another replica may take it.
pub const CLAIM_LEASE: Duration = Duration::from_secs(600);
/// How far past a log's tree size a feed's index may be (the feed's server may
/// have read a newer tree head than the one certwatch gets) before it is taken as
/// an index the log never had.
const BEYOND_SLACK: u64 = 100_000;
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
    /// The start of this instance's claim on the range in Postgres, if it holds one.
    claim: Option<u64>,
}

/// The `backfill` thread's state.
#[derive(Default)]
struct State {
    clients: HashMap<LogId, LogClient>,
    retry: VecDeque<Work>,
    scratch: MatchScratch,
    /// Per log: (entries seen, gap entries) as last published to the counters.
    published: HashMap<LogId, (u64, u64)>,
    /// Logs already warned about as dense.
    dense_warned: HashSet<LogId>,
    /// Entries read, unreadable and matched so far (what `certwatch backfill` reports).
    tally: Tally,
    /// Why the last range given up on was not fetched.
    gave_up: Option<String>,
    /// Whether certwatch's own worker queue dropped feed frames lately.
    own_drops: OwnDrops,
    /// Per log, when its rate limiting was last logged.
    rate_limit_said: HashMap<LogId, Instant>,
}

/// A log that rate-limits is logged at most this often.
const RATE_LIMIT_NOTE: Duration = Duration::from_secs(600);

/// How long after certwatch's own worker queue last dropped feed frames the holes
/// of a dense log may be its own.
const OWN_DROPS_HOLD: Duration = Duration::from_secs(120);

/// Whether certwatch itself dropped feed frames lately (its workers fell behind;
/// `certwatch_ct_messages_dropped_total` grew): those holes look like a server
/// that leaves holes by design, but they are certwatch's to fill.
#[derive(Default)]
struct OwnDrops {
    dropped: u64,
    until: Option<Instant>,
}

impl OwnDrops {
    /// Takes the drop counter's value at `now`; returns whether drops are recent
    /// (within `OWN_DROPS_HOLD`) and whether they just began.
    fn observe(&mut self, dropped: u64, now: Instant) -> (bool, bool) {
        let mut began = false;
        if dropped > self.dropped {
            began = self.until.is_none_or(|until| until <= now);
            self.dropped = dropped;
            self.until = Some(now + OWN_DROPS_HOLD);
        }
        (self.until.is_some_and(|until| now < until), began)
    }
}

/// `CT_FEED_HOLES` as it applies now: `count` acts as `coalesce` while certwatch's
/// own queue drops frames, so what it dropped itself is fetched (in 256-entry
/// stretches) rather than counted.
fn feed_holes_now(b: &Backfill, state: &mut State, now: Instant) -> FeedHoles {
    let (recent, began) = state
        .own_drops
        .observe(b.cls.metrics.ct_messages_dropped.get(), now);
    if b.feed_holes != FeedHoles::Count || !recent {
        return b.feed_holes;
    }
    if began {
        log::warn!(
            "certwatch dropped feed frames (its workers fell behind): for the next {} s the \
             gaps of dense logs are fetched in 256-entry stretches, not counted \
             (CT_FEED_HOLES=count applies again after)",
            OWN_DROPS_HOLD.as_secs()
        );
    }
    FeedHoles::Coalesce
}

/// What a manual backfill (`run_once`) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
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

/// Reads the log list from a file or an `http(s)://` URL (bounded in size): the
/// list and the bytes it was parsed from.
pub fn read_list(source: &str) -> Result<(LogList, Vec<u8>), String> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        let agent = crate::outbound::list_agent(LIST_TIMEOUT);
        let mut response = agent
            .get(source)
            .call()
            .map_err(|e| format!("cannot fetch the log list: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "cannot fetch the log list: HTTP {}",
                response.status()
            ));
        }
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
    let list = LogList::parse(&bytes).map_err(|e| format!("the log list does not parse: {e}"))?;
    Ok((list, bytes))
}

/// The key of a list source in `public.certwatch_log_list`: a file path as is, a
/// URL without credentials, query or fragment.
fn list_key(source: &str) -> String {
    if source.contains("://") {
        crate::config::redact_url(source, true)
    } else {
        source.to_string()
    }
}

/// Reads the list from its source and keeps a copy in Postgres; when the source
/// cannot be read, falls back to the copy kept by an earlier read (said in the
/// log, with its date). The error says why neither gave a list.
pub fn read_list_or_kept(store: &Store, source: &str) -> Result<LogList, String> {
    let key = list_key(source);
    let read_error = match read_list(source) {
        Ok((list, bytes)) => {
            if let Err(e) = store.save_log_list(&key, &bytes) {
                log::warn!(
                    "the CT log list is not kept in the database ({e}): a restart that cannot \
                     read CT_LOG_LIST would start without one"
                );
            }
            return Ok(list);
        }
        Err(e) => e,
    };
    match store.load_log_list(&key) {
        Ok(Some((bytes, when))) => match LogList::parse(&bytes) {
            Ok(list) => {
                log::warn!("{read_error}; using the copy read on {when}, kept in the database");
                Ok(list)
            }
            Err(e) => Err(format!(
                "{read_error}; the copy kept in the database does not parse either: {e}"
            )),
        },
        Ok(None) => Err(format!("{read_error}; no copy kept in the database")),
        Err(e) => Err(format!(
            "{read_error}; the copy kept in the database cannot be read: {e}"
        )),
    }
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

/// Loads the list (or the copy kept in Postgres); on failure keeps the one in use
/// (if any) and says so.
fn load_list(b: &Backfill) {
    let Some(source) = &b.list_source else {
        return;
    };
    match read_list_or_kept(&b.cls.store, source) {
        Ok(list) => {
            seed_positions(b, &list);
            install(b, list);
        }
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
    let mut state = State::default();
    load_list(&b);
    let mut list_read = Instant::now();
    let mut positions_saved = Instant::now();
    while !b.shutdown.sleep(TICK) {
        let list_due = list_read.elapsed() >= LIST_REFRESH;
        if list_due || b.coverage.logs.load().is_none() && list_read.elapsed() >= TICK * 60 {
            load_list(&b);
            list_read = Instant::now();
        }
        let Some(list) = b.coverage.logs.load_full() else {
            continue;
        };
        seed_positions(&b, &list);
        tick(&b, &list, &mut state);
        if positions_saved.elapsed() >= SAVE_POSITIONS {
            positions_saved = Instant::now();
            publish_backlog(&b.coverage, &state);
            if let Err(e) = save_positions(&b.cls.store, &b.coverage) {
                log::debug!("CT log positions not saved (next try in 10 s): {e}");
            }
        }
    }
    // What is still queued stays below the saved positions: the next run fetches it.
    publish_backlog(&b.coverage, &state);
}

/// Gives the gap tracker the positions stored by earlier runs (and replicas), once
/// (`Coverage::seeded`), so the first index the feed now delivers opens a gap from
/// there; when the database does not answer, the next call tries again.
fn seed_positions(b: &Backfill, list: &LogList) {
    if b.coverage.seeded.load(Ordering::SeqCst) {
        return;
    }
    let stored = match b.cls.store.load_positions() {
        Ok(stored) => stored,
        Err(e) => {
            log::warn!("stored CT log positions not read yet ({e}); a restart gap waits for them");
            return;
        }
    };
    let now = Instant::now();
    let mut tracker = b.coverage.gaps.lock();
    let mut seeded = 0;
    for (id, position) in stored {
        if let Some(log) = LogId::from_base64(&id).and_then(|id| list.get(&id))
            && tracker.seed(log.id, position, now)
        {
            seeded += 1;
        }
    }
    drop(tracker);
    b.coverage.seeded.store(true, Ordering::SeqCst);
    if seeded > 0 {
        log::info!(
            "resuming {seeded} CT logs from their stored positions: what the feed delivered \
             meanwhile is fetched from the logs (at most BACKFILL_MAX_GAP={} entries each)",
            b.max_gap
        );
    }
}

/// Shares, per log, the lowest index still queued for fetching, so a saved position
/// never passes an entry not fetched yet: before each save, and when the thread
/// ends (for the drain's save).
fn publish_backlog(coverage: &Coverage, state: &State) {
    let mut floors: HashMap<LogId, u64> = HashMap::new();
    for work in &state.retry {
        let floor = floors.entry(work.gap.log).or_insert(work.gap.start);
        *floor = (*floor).min(work.gap.start);
    }
    *coverage.backlog.lock().unwrap_or_else(|e| e.into_inner()) = floors;
}

/// Writes every tracked log's position: the index below which each entry was seen
/// on the feed, fetched, or logged and counted as abandoned. Called every
/// `SAVE_POSITIONS` by the `backfill` thread and once by the pipeline's drain when
/// the workers are done; returns how many logs were saved. Nothing is written
/// before the stored positions were read back (a restart's gap would be lost).
pub fn save_positions(store: &Store, coverage: &Coverage) -> Result<usize, StoreError> {
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
    let rows: Vec<(String, String, u64)> = positions
        .into_iter()
        .filter_map(|(id, position)| {
            let log = list.get(&id)?;
            let position = backlog.get(&id).map_or(position, |f| position.min(*f));
            Some((id.to_base64(), log_label(log).to_string(), position))
        })
        .collect();
    store.save_positions(&rows)?;
    Ok(rows.len())
}

/// One second's work: publish statistics, apply the dense-feed policy, take the
/// due gaps, fetch what is due.
fn tick(b: &Backfill, list: &LogList, state: &mut State) {
    let now = Instant::now();
    let holes = feed_holes_now(b, state, now);
    let (due, stats) = {
        let mut tracker = b.coverage.gaps.lock();
        let due = tracker.take_due(now);
        let stats = tracker.stats();
        for s in &stats {
            // By the setting, not `holes`: a tracker's coalescing stays once set.
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
                        FeedHoles::Count => "count: its gaps are counted as skipped, not fetched",
                    }
                );
            }
        }
    }
    health
        .logs_lagging
        .store(lagging, std::sync::atomic::Ordering::Relaxed);
    let due = match holes {
        FeedHoles::Coalesce => gaps::coalesce(due, COALESCE, |log| dense.contains(log)),
        _ => due,
    };
    for gap in due {
        let Some(log) = list.get(&gap.log) else {
            continue;
        };
        if holes == FeedHoles::Count && dense.contains(&gap.log) {
            b.cls
                .metrics
                .backfill(log_label(log), BackfillOutcome::Skipped, gap.len());
            log::debug!(
                "gap {}..{} of dense log {} counted, not fetched (CT_FEED_HOLES=count)",
                gap.start,
                gap.end,
                log_label(log)
            );
            continue;
        }
        if gap.len() > b.max_gap && beyond_the_log(b, log, state, &gap) {
            continue;
        }
        let gap = cap(b, log, gap);
        for work in claim(b, log, gap, now) {
            enqueue(b, log, state, work);
        }
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
        let claim = work.claim;
        match fetch_gap(b, log, state, work) {
            Some(rest) => enqueue(b, log, state, rest),
            None => finish(b, log, claim),
        }
    }
}

/// Claims a gap in Postgres so another replica on the database does not fetch it
/// too: the parts left to this instance, as work (what another replica claimed or
/// finished is counted as `other_replica`). When the database does not answer, the
/// whole gap is fetched unclaimed: coverage comes before saving a replica's work.
fn claim(b: &Backfill, log: &Log, gap: Gap, now: Instant) -> Vec<Work> {
    let work = |start: u64, end: u64, claim: Option<u64>| Work {
        gap: Gap {
            log: gap.log,
            start,
            end,
        },
        attempts: 0,
        not_before: now,
        claim,
    };
    let id = log.id.to_base64();
    match b
        .cls
        .store
        .claim_range(&id, gap.start, gap.end, CLAIM_LEASE)
    {
        Ok(parts) => {
            let mine: u64 = parts.iter().map(|(s, e)| e - s).sum();
            if mine < gap.len() {
                log::info!(
                    "CT log {}: {} of entries {}..{} are fetched by another replica",
                    log_label(log),
                    gap.len() - mine,
                    gap.start,
                    gap.end
                );
                b.cls.metrics.backfill(
                    log_label(log),
                    BackfillOutcome::OtherReplica,
                    gap.len() - mine,
                );
            }
            parts
                .into_iter()
                .map(|(start, end)| work(start, end, Some(start)))
                .collect()
        }
        Err(e) => {
            log::debug!(
                "CT log {}: entries {}..{} fetched without a claim: {e}",
                log_label(log),
                gap.start,
                gap.end
            );
            vec![work(gap.start, gap.end, None)]
        }
    }
}

/// A claimed range is finished (fetched, or failed for good): other replicas skip it.
fn finish(b: &Backfill, log: &Log, claim: Option<u64>) {
    if let Some(start) = claim
        && let Err(e) = b.cls.store.finish_claim(&log.id.to_base64(), start)
    {
        log::debug!(
            "CT log {}: claim at {start} not marked done: {e}",
            log_label(log)
        );
    }
}

/// Caps a gap at `max_gap` entries; the rest is logged and counted as abandoned.
fn cap(b: &Backfill, log: &Log, mut gap: Gap) -> Gap {
    if gap.len() > b.max_gap {
        let kept_end = gap.start + b.max_gap;
        log::warn!(
            "CT log {}: entries {}..{} ({} entries) abandoned, over BACKFILL_MAX_GAP={}; \
             entries {}..{} are fetched. To read the rest: certwatch backfill --log {} \
             --from {} --to {}",
            log_label(log),
            kept_end,
            gap.end,
            gap.end - kept_end,
            b.max_gap,
            gap.start,
            kept_end,
            log_label(log),
            kept_end,
            gap.end - 1
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
        finish(b, log, work.claim);
        return;
    }
    state.retry.push_back(work);
}

/// The log's client, made on first use.
fn client_for<'s>(
    b: &Backfill,
    log: &Log,
    state: &'s mut State,
) -> Result<&'s mut LogClient, ClientError> {
    match state.clients.entry(log.id) {
        std::collections::hash_map::Entry::Occupied(slot) => Ok(slot.into_mut()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            Ok(slot.insert(LogClient::new(log.fetch_base(), log.api(), &b.client)?))
        }
    }
}

/// A gap over the cap may come from a feed naming an index the log never had (a
/// broken or hostile certstream server): taken as is, it would move the log's
/// position far ahead and every real entry after it would look old. Such a gap is
/// checked against the log's tree size; when it reaches more than `BEYOND_SLACK`
/// entries past it, it is dropped, the log's position goes back to the gap's start
/// (in the tracker and in Postgres) and `true` is returned. When the tree size
/// cannot be read, the gap is taken as is.
fn beyond_the_log(b: &Backfill, log: &Log, state: &mut State, gap: &Gap) -> bool {
    let tree_size = match client_for(b, log, state).and_then(|client| match client.kind() {
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
    {
        let mut tracker = b.coverage.gaps.lock();
        tracker.forget(log.id);
        tracker.seed(log.id, gap.start, Instant::now());
    }
    if let Err(e) = b
        .cls
        .store
        .reset_position(&log.id.to_base64(), log_label(log), gap.start)
    {
        log::warn!("CT log {}: stored position not reset: {e}", log_label(log));
    }
    true
}

/// Fetches as much of a gap as the log gives now; returns what is left to try
/// again, if anything.
fn fetch_gap(b: &Backfill, log: &Log, state: &mut State, mut work: Work) -> Option<Work> {
    let label = log_label(log).to_string();
    let kind = log.api();
    if let Err(e) = client_for(b, log, state) {
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
        consider_all(b, &label, certs, &mut state.scratch, &mut state.tally);
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
            retry_or_fail(b, &label, state, work, "not published yet")
        }
        Err(ClientError::RateLimited {
            status,
            retry_after,
        }) => {
            let now = Instant::now();
            let said = state.rate_limit_said.get(&log.id);
            if said.is_none_or(|at| now.saturating_duration_since(*at) >= RATE_LIMIT_NOTE) {
                state.rate_limit_said.insert(log.id, now);
                log::warn!(
                    "CT log {label} rate-limits certwatch ({status}, Retry-After {} s): its gaps \
                     wait and are retried without limit{}",
                    retry_after.as_secs(),
                    if b.client.contact.is_some() {
                        ""
                    } else {
                        "; CT_CONTACT lets the log's operator reach you"
                    }
                );
            }
            work.not_before = now + retry_after;
            Some(work)
        }
        Err(e) => {
            work.attempts += 1;
            work.not_before = Instant::now() + Duration::from_secs(5u64 << work.attempts.min(6));
            retry_or_fail(b, &label, state, work, &e.to_string())
        }
    }
}

fn retry_or_fail(
    b: &Backfill,
    label: &str,
    state: &mut State,
    work: Work,
    why: &str,
) -> Option<Work> {
    if work.attempts < MAX_ATTEMPTS {
        log::debug!(
            "CT log {label}: entries {}..{} retried later: {why}",
            work.gap.start,
            work.gap.end
        );
        return Some(work);
    }
    let what = format!(
        "CT log {label}: entries {}..{} not fetched after {MAX_ATTEMPTS} attempts: {why}",
        work.gap.start, work.gap.end
    );
    log::warn!("{what}");
    state.gave_up = Some(what);
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
    tally: &mut Tally,
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
        tally.matched += 1;
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
    (tally.fetched, tally.undecodable) = (tally.fetched + fetched, tally.undecodable + failed);
    b.cls
        .metrics
        .backfill(label, BackfillOutcome::Fetched, fetched);
    if failed > 0 {
        b.cls
            .metrics
            .backfill(label, BackfillOutcome::Failed, failed);
    }
}

/// Runs one manual request (`certwatch backfill`) through the same path as the
/// `backfill` thread, on the caller's thread: the list (or its kept copy), the
/// range capped at `BACKFILL_MAX_GAP`, fetched with the same retries; returns what
/// it read, or why it could not read it all.
pub fn run_once(b: &Backfill, request: &Request) -> Result<Tally, OnceError> {
    let Some(source) = &b.list_source else {
        return Err(OnceError::Refused(
            "CT_LOG_LIST=off: there is no trusted log list to take the log from".into(),
        ));
    };
    if request.to < request.from {
        return Err(OnceError::Refused(format!(
            "--to {} is below --from {}",
            request.to, request.from
        )));
    }
    let list = read_list_or_kept(&b.cls.store, source).map_err(OnceError::Failed)?;
    let Some(log) = list.lookup(&request.log_url) else {
        return Err(OnceError::Refused(format!(
            "{:?} is not a log of the trusted list (CT_LOG_LIST); nothing fetched",
            request.log_url.chars().take(200).collect::<String>()
        )));
    };
    install(b, list.clone());
    let log = list.get(&log.id).expect("looked up");
    let wanted = Gap {
        log: log.id,
        start: request.from,
        end: request.to.saturating_add(1),
    };
    let gap = cap(b, log, wanted);
    let mut state = State::default();
    state.tally.abandoned = wanted.len() - gap.len();
    let mut work = Work {
        gap,
        attempts: 0,
        not_before: Instant::now(),
        claim: None,
    };
    loop {
        let wait = work.not_before.saturating_duration_since(Instant::now());
        if b.shutdown.sleep(wait) {
            return Err(OnceError::Failed(format!(
                "interrupted; entries {}..{} not fetched",
                work.gap.start, work.gap.end
            )));
        }
        match fetch_gap(b, log, &mut state, work) {
            None => break,
            Some(rest) => work = rest,
        }
    }
    match state.gave_up {
        Some(why) => Err(OnceError::Failed(format!(
            "{why} ({} entries read before)",
            state.tally.fetched
        ))),
        None => Ok(state.tally),
    }
}

/// Why a manual backfill did not read its whole range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceError {
    /// The request cannot work (no list, a log not in it, an empty range): exit 2.
    Refused(String),
    /// The log or the list could not be read: exit 1.
    Failed(String),
}

impl std::fmt::Display for OnceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnceError::Refused(why) | OnceError::Failed(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_drops_are_recent_for_the_hold_after_the_counter_last_grew() {
        let t0 = Instant::now();
        let mut drops = OwnDrops::default();
        assert_eq!(drops.observe(0, t0), (false, false), "no drop yet");
        assert_eq!(drops.observe(5, t0), (true, true), "drops begin");
        let later = t0 + OWN_DROPS_HOLD / 2;
        assert_eq!(drops.observe(5, later), (true, false), "still recent");
        assert_eq!(drops.observe(9, later), (true, false), "more, same episode");
        let after = later + OWN_DROPS_HOLD;
        assert_eq!(drops.observe(9, after), (false, false), "the hold is over");
        assert_eq!(drops.observe(10, after), (true, true), "a new episode");
    }
}
