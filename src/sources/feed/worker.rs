//! The worker pool: `worker-N` threads that take raw frames from the feed in
//! batches, `peek` each, match the leaf's names against the current watch list,
//! and for a match parse the certificate in full (leniently: a matched
//! certificate is never skipped; `certwatch_ct_lenient_certificates_total`
//! counts what that took) and hand it to `Classifier::consider`. What has to wait out its grace period goes to the
//! `grace` thread; an alert the database could not take goes to its held buffer.
//!
//! Owns the feed → workers channel's message (`Batch` of `Frame`s) and the
//! `QueueBudget` that bounds it in frames and bytes.
//!
//! Coverage: each certificate message's `source.url` is looked up in the trusted log
//! list (`Coverage::logs`, shared with the `backfill` thread) and its `cert_index`
//! recorded in the worker's own `gaps::Recorder`, flushed once per batch (so before
//! the worker blocks on an empty queue), with the entry's CT timestamp where the
//! server gives one (the log's newest is kept: its lag; one further ahead of this
//! host's clock than `TIMESTAMP_AHEAD_MS` is not believed). A URL not in the list is only counted
//! (`certwatch_ct_unknown_log_messages_total`) and logged once: it never causes a
//! request. The name matching (`matched_names`, `match_lists`) and the hand-over of
//! a classified certificate (`hand_over`) are shared with the `backfill` thread.

use crate::alert::DetectedVia;
use crate::certstream::{self, Leniency, MessageKind, Peek};
use crate::classify::{Classifier, Next};
use crate::ctlog::gaps::{self, Recorder, SharedGaps};
use crate::ctlog::loglist::{LogId, LogList};
use crate::grace::{HeldAlerts, Pending};
use crate::matcher::{EntryId, WatchList};
use crate::threads::unix_now;
use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, Sender};
use prometheus::IntCounter;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Distinct unknown log URLs logged (process-wide); past it they are only counted.
pub const UNKNOWN_LOGS_LOGGED: usize = 256;
/// Observations a worker buffers between flushes (a batch holds at most 32 frames).
const RECORDER_CAPACITY: usize = 64;
/// A CT timestamp further ahead of this host's clock than this (5 minutes) is not
/// recorded: a broken or hostile value would otherwise hide its log's lag for good.
pub const TIMESTAMP_AHEAD_MS: i64 = 5 * 60 * 1000;

/// What the workers share with the `backfill` thread for coverage.
pub struct Coverage {
    /// The trusted log list; `None` while none is loaded (coverage and backfill off:
    /// nothing is recorded, counted or fetched).
    pub logs: ArcSwapOption<LogList>,
    /// Every listed log's sequence as the feed delivered it.
    pub gaps: Arc<SharedGaps>,
    /// Unknown log URLs logged so far (at most `UNKNOWN_LOGS_LOGGED`).
    unknown_logged: Mutex<HashSet<Box<str>>>,
    /// Per log, the lowest index the `backfill` thread still has to fetch: a saved
    /// position never passes it.
    pub backlog: Mutex<HashMap<LogId, u64>>,
    /// Whether the positions stored by an earlier run were read back: until then
    /// none is saved.
    pub seeded: AtomicBool,
}

impl Coverage {
    /// No list yet; a tracker with these settings.
    pub fn new(settings: gaps::Settings) -> Coverage {
        Coverage {
            logs: ArcSwapOption::empty(),
            gaps: Arc::new(SharedGaps::new(settings)),
            unknown_logged: Mutex::new(HashSet::new()),
            backlog: Mutex::new(HashMap::new()),
            seeded: AtomicBool::new(false),
        }
    }

    /// Logs a feed URL that names no listed log, once per URL (bounded).
    fn log_unknown(&self, url: &str) {
        let mut logged = self
            .unknown_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if logged.contains(url) {
            return;
        }
        if logged.len() >= UNKNOWN_LOGS_LOGGED {
            return;
        }
        logged.insert(url.into());
        let shown: String = url.chars().take(200).collect();
        if logged.len() == UNKNOWN_LOGS_LOGGED {
            log::warn!(
                "the feed names a log that is not in the trusted log list: {shown:?} (never fetched; \
                 {UNKNOWN_LOGS_LOGGED} such URLs logged, further ones only counted)"
            );
        } else {
            log::warn!(
                "the feed names a log that is not in the trusted log list: {shown:?} (never fetched; counted in certwatch_ct_unknown_log_messages_total)"
            );
        }
    }
}

/// One raw feed frame, as the reader received it.
pub enum Frame {
    Text(tungstenite::Utf8Bytes),
    Binary(tungstenite::Bytes),
}

impl Frame {
    /// Payload bytes, as counted against the `QueueBudget`.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frames the feed hands to the workers in one channel message: under load a
/// worker wakes once for many frames, not once for each.
pub type Batch = Vec<Frame>;

/// The frames queued for the workers, bounded in count and in bytes: a burst
/// is dropped (and counted) rather than growing memory without bound. The feed
/// reserves a frame before it queues it; a worker releases it when done.
pub struct QueueBudget {
    frames: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
}

impl QueueBudget {
    pub fn new(max_frames: usize, max_bytes: usize) -> QueueBudget {
        QueueBudget {
            frames: std::sync::atomic::AtomicUsize::new(0),
            bytes: std::sync::atomic::AtomicUsize::new(0),
            max_frames,
            max_bytes,
        }
    }

    /// Takes one frame of `len` bytes from the budget, or returns false when it
    /// does not fit. Only the feed reserves, so a check then an add cannot overshoot.
    pub fn try_reserve(&self, len: usize) -> bool {
        if self.frames.load(Ordering::Acquire) >= self.max_frames
            || self.bytes.load(Ordering::Acquire) + len > self.max_bytes
        {
            return false;
        }
        self.frames.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// Gives back `frames` frames of `bytes` bytes in all.
    pub fn release(&self, frames: usize, bytes: usize) {
        self.frames.fetch_sub(frames, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Frames queued now.
    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::Acquire)
    }
}

/// Reusable buffers of the name matching (`matched_names`, `match_lists`).
#[derive(Default)]
pub struct MatchScratch {
    ids: Vec<EntryId>,
    name_ids: Vec<EntryId>,
}

/// Per-worker cached metric handles and reusable buffers.
struct WorkerState {
    /// By `MessageKind::index`.
    by_kind: Vec<IntCounter>,
    scratch: MatchScratch,
    recorder: Recorder,
    /// Unknown-log messages in this batch.
    unknown: u64,
    /// Unknown URLs this worker already handed to `Coverage::log_unknown`
    /// (cleared when full), so it does not lock for every such message.
    unknown_seen: HashSet<Box<str>>,
    coverage: Arc<Coverage>,
}

/// The log position of one batch's frames: the list as loaded for the batch and the
/// batch's time (monotonic, and on the wall clock in milliseconds).
struct Position<'a> {
    logs: Option<&'a LogList>,
    at: Instant,
    at_ms: i64,
}

/// A worker: runs until the feed drops its sender and the queue is drained.
pub fn run_worker(
    cls: Arc<Classifier>,
    batches: Receiver<Batch>,
    pending: Sender<Pending>,
    held: Arc<HeldAlerts>,
    budget: Arc<QueueBudget>,
    coverage: Arc<Coverage>,
) {
    let mut state = WorkerState {
        by_kind: MessageKind::ALL
            .iter()
            .map(|k| cls.metrics.ct_message(*k))
            .collect(),
        scratch: MatchScratch::default(),
        recorder: Recorder::new(coverage.gaps.clone(), RECORDER_CAPACITY),
        unknown: 0,
        unknown_seen: HashSet::new(),
        coverage: coverage.clone(),
    };
    for batch in batches {
        let logs = coverage.logs.load();
        let position = Position {
            logs: logs.as_deref(),
            at: Instant::now(),
            at_ms: crate::threads::unix_now_ms(),
        };
        let bytes = batch.iter().map(Frame::len).sum();
        let _release = ReleaseOnDrop(&budget, batch.len(), bytes);
        // Counted locally and published once per batch, so the workers do not
        // contend on shared counters for every frame.
        let mut by_kind = [0u64; MessageKind::ALL.len()];
        let mut parse_errors = 0;
        let now = unix_now();
        for frame in &batch {
            let text = match frame {
                Frame::Text(t) => t.as_str(),
                Frame::Binary(b) => match std::str::from_utf8(b) {
                    Ok(t) => t,
                    Err(_) => {
                        parse_errors += 1;
                        log::debug!("skipped a binary frame that is not UTF-8");
                        continue;
                    }
                },
            };
            match handle_frame(&cls, &mut state, text, (&pending, &held), &position, now) {
                Some(kind) => by_kind[kind.index()] += 1,
                None => parse_errors += 1,
            }
        }
        // Once per batch, and so before the next `recv` can block.
        state.recorder.flush();
        if state.unknown > 0 {
            cls.metrics.ct_unknown_log_messages.inc_by(state.unknown);
            state.unknown = 0;
        }
        for (counter, n) in state.by_kind.iter().zip(by_kind) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if parse_errors > 0 {
            cls.metrics.ct_parse_errors.inc_by(parse_errors);
        }
        if by_kind[MessageKind::CertificateUpdate.index()] > 0 {
            cls.health.last_ct_event.store(now, Ordering::Relaxed);
            cls.metrics.last_ct_event.set(now);
        }
    }
}

/// Gives a batch's frames and bytes back to the budget when the worker is done
/// with it.
struct ReleaseOnDrop<'a>(&'a QueueBudget, usize, usize);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release(self.1, self.2);
    }
}

/// Handles one message; returns its kind, or `None` when it is malformed.
fn handle_frame(
    cls: &Classifier,
    state: &mut WorkerState,
    text: &str,
    (pending, held): (&Sender<Pending>, &HeldAlerts),
    position: &Position<'_>,
    now: i64,
) -> Option<MessageKind> {
    let peeked = match certstream::peek(text) {
        Ok(p) => p,
        Err(e) => {
            log::debug!("{e}");
            return None;
        }
    };
    let kind = peeked.kind();
    if let Peek::Certificate {
        all_domains,
        source_url,
        cert_index,
        timestamp_ms,
    } = peeked
    {
        if let (Some(list), Some(url), Some(index)) = (position.logs, &source_url, cert_index) {
            record_position(state, list, url, (index, timestamp_ms), position);
        }
        match_names(cls, state, text, &all_domains, (pending, held), now);
    }
    Some(kind)
}

/// Records that the feed delivered entry `index` (CT timestamp `timestamp_ms`) of the
/// log at `url`, or counts a URL the list does not name (logged once; never fetched).
fn record_position(
    state: &mut WorkerState,
    list: &LogList,
    url: &str,
    (index, timestamp_ms): (u64, Option<i64>),
    batch: &Position<'_>,
) {
    match list.lookup(url) {
        Some(log) => {
            let believed = timestamp_ms.filter(|ms| *ms <= batch.at_ms + TIMESTAMP_AHEAD_MS);
            state
                .recorder
                .observe_timestamped(log.id, index, believed, batch.at)
        }
        None => {
            state.unknown += 1;
            if !state.unknown_seen.contains(url) {
                if state.unknown_seen.len() >= UNKNOWN_LOGS_LOGGED {
                    state.unknown_seen.clear();
                }
                state.unknown_seen.insert(url.into());
                state.coverage.log_unknown(url);
            }
        }
    }
}

/// Matches a certificate's names and, for a match, parses it in full and hands
/// it to classification. Every name is matched; the work is linear in the
/// number of names (hash-based de-duplication), and what an alert keeps is
/// capped at `certstream::MAX_NAMES` names, the matched ones first.
fn match_names(
    cls: &Classifier,
    state: &mut WorkerState,
    text: &str,
    all_domains: &[std::borrow::Cow<'_, str>],
    (pending, held): (&Sender<Pending>, &HeldAlerts),
    now: i64,
) {
    let watch = cls.watch.load();
    let Some(matched) = matched_names(&watch, all_domains, &mut state.scratch) else {
        return;
    };
    let (cert, lenient) = certstream::parse_matched(text, &matched.sans);
    for reason in lenient.iter() {
        cls.metrics.ct_lenient(reason).inc();
    }
    if !lenient.is_empty() {
        let reasons: Vec<&str> = lenient.iter().map(|r| r.as_str()).collect();
        let what = format!(
            "matched certificate for {:?} read leniently ({}); serial {}",
            matched.sans.iter().take(3).collect::<Vec<_>>(),
            reasons.join(", "),
            cert.serial.as_deref().unwrap_or("?"),
        );
        if lenient.contains(Leniency::Identity) || lenient.contains(Leniency::NamesCapped) {
            log::warn!("{what}: it alerts on what is known");
        } else {
            log::debug!("{what}");
        }
    }
    let lists = match_lists(&watch, &matched, &state.scratch);
    let next = cls.consider(cert, lists, DetectedVia::Feed, now);
    hand_over(cls, next, pending, held);
}

/// What the caller of `Classifier::consider` does with its answer: nothing, hold
/// the alert the database could not take, or send the sighting to the `grace`
/// thread to wait out its grace period. Shared by the workers and `backfill`.
pub fn hand_over(cls: &Classifier, next: Next, pending: &Sender<Pending>, held: &HeldAlerts) {
    match next {
        Next::Done => {}
        Next::Held(item) => held.push(item, &cls.metrics),
        Next::Wait(sighting) => {
            let due = Instant::now() + cls.grace;
            if pending.send(Pending { due, sighting }).is_err() {
                log::error!("grace thread is gone; a sighting could not wait out its grace period");
            }
        }
    }
}

/// The watch entries matched (sorted, capped) and the names that matched (in
/// order, capped), as `Classifier::consider` takes them, after `matched_names`
/// left the entry ids in `scratch`.
pub fn match_lists(
    watch: &WatchList,
    matched: &Matched<'_>,
    scratch: &MatchScratch,
) -> (Vec<String>, Vec<String>) {
    let mut matched_entries: Vec<String> = scratch
        .ids
        .iter()
        .map(|id| watch.entry(*id).to_string())
        .collect();
    matched_entries.sort_unstable();
    matched_entries.truncate(certstream::MAX_NAMES);
    let matched_sans: Vec<String> = matched
        .sans
        .iter()
        .take(certstream::MAX_NAMES)
        .map(|n| certstream::replace_nul(n).into_owned())
        .collect();
    (matched_entries, matched_sans)
}

/// The names of a certificate that matched the watch list.
pub struct Matched<'n> {
    /// Distinct, in feed order.
    pub sans: Vec<&'n str>,
}

/// Matches every name against the watch list; leaves the distinct ids of the
/// entries matched in `scratch` (sorted). `None` when nothing matched. The one
/// matching rule of the feed (`worker-N`) and of backfill.
pub fn matched_names<'n, S: AsRef<str>>(
    watch: &WatchList,
    all_domains: &'n [S],
    scratch: &mut MatchScratch,
) -> Option<Matched<'n>> {
    scratch.ids.clear();
    let mut sans: Vec<&'n str> = Vec::new();
    for name in all_domains {
        let name = name.as_ref();
        scratch.name_ids.clear();
        if watch.matches(name, &mut scratch.name_ids) {
            sans.push(name);
            scratch.ids.extend_from_slice(&scratch.name_ids);
        }
    }
    if scratch.ids.is_empty() {
        return None;
    }
    scratch.ids.sort_unstable();
    scratch.ids.dedup();
    if sans.len() > 1 {
        let mut seen = HashSet::with_capacity(sans.len());
        sans.retain(|n| seen.insert(*n));
    }
    Some(Matched { sans })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_budget_bounds_frames_and_bytes() {
        let budget = QueueBudget::new(3, 100);
        assert!(budget.try_reserve(10));
        assert!(budget.try_reserve(10));
        assert!(!budget.try_reserve(81), "81 more bytes would make 101");
        assert!(budget.try_reserve(80));
        assert!(!budget.try_reserve(0), "a fourth frame, even empty");
        assert_eq!(budget.frames(), 3);
        budget.release(2, 20);
        assert_eq!(budget.frames(), 1);
        assert!(budget.try_reserve(20));
        assert!(!budget.try_reserve(1), "100 bytes are taken");
    }

    fn state() -> MatchScratch {
        MatchScratch::default()
    }

    /// Issue 12 item 5: a frame with 120,000 names, one of them watched, is
    /// peeked, matched and parsed in well under a second (a debug build), and
    /// what the alert keeps is capped with the watched name in it.
    #[test]
    fn a_frame_with_120k_names_is_matched_and_parsed_in_linear_time() {
        let (watch, _) = WatchList::build(["watched.example", "other.example"]);
        let mut names: Vec<String> = (0..119_999).map(|i| format!("n{i}.example")).collect();
        names.insert(60_000, "www.watched.example".into());
        let frame = format!(
            r#"{{"message_type":"certificate_update","data":{{"leaf_cert":{{"all_domains":{},"serial_number":"0F","not_before":1,"not_after":2}}}}}}"#,
            serde_json::to_string(&names).unwrap()
        );
        let mut state = state();
        let started = Instant::now();
        let Peek::Certificate { all_domains, .. } = certstream::peek(&frame).unwrap() else {
            panic!("not a certificate");
        };
        let matched = matched_names(&watch, &all_domains, &mut state).expect("a match");
        let (cert, lenient) = certstream::parse_matched(&frame, &matched.sans);
        let took = started.elapsed();
        eprintln!("120,000 names: peek + match + parse in {took:?}");
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        assert_eq!(matched.sans, ["www.watched.example"]);
        assert_eq!(state.ids.len(), 1);
        assert!(lenient.contains(Leniency::NamesCapped));
        assert_eq!(cert.all_domains.len(), certstream::MAX_NAMES);
        assert!(cert.all_domains.iter().any(|n| n == "www.watched.example"));
    }

    #[test]
    fn listed_logs_positions_are_recorded_and_unknown_urls_only_counted() {
        let list = LogList::parse(include_bytes!("../tests/fixtures/loglist_v3_sample.json"))
            .expect("sample list");
        let log = &list.logs()[0];
        let coverage = Arc::new(Coverage::new(gaps::Settings::default()));
        let mut state = WorkerState {
            by_kind: Vec::new(),
            scratch: MatchScratch::default(),
            recorder: Recorder::new(coverage.gaps.clone(), RECORDER_CAPACITY),
            unknown: 0,
            unknown_seen: HashSet::new(),
            coverage: coverage.clone(),
        };
        let at = Position {
            logs: Some(&list),
            at: Instant::now(),
            at_ms: 1_800_000_000_000,
        };
        let url = log.fetch_base().trim_end_matches('/');
        record_position(&mut state, &list, url, (10, Some(1_799_999_000_000)), &at);
        record_position(&mut state, &list, url, (12, None), &at);
        // Further ahead of the clock than TIMESTAMP_AHEAD_MS: not believed.
        let ahead = at.at_ms + TIMESTAMP_AHEAD_MS + 1;
        record_position(&mut state, &list, url, (13, Some(ahead)), &at);
        for _ in 0..3 {
            record_position(
                &mut state,
                &list,
                "https://evil.example/log",
                (1, None),
                &at,
            );
        }
        state.recorder.flush();
        assert_eq!(state.unknown, 3);
        assert_eq!(coverage.unknown_logged.lock().unwrap().len(), 1);
        let stats = coverage.gaps.lock().stats_for(log.id).expect("tracked");
        assert_eq!(stats.seen, 3);
        assert_eq!(stats.open_entries, 1);
        assert_eq!(stats.newest_timestamp_ms, Some(1_799_999_000_000));
        assert_eq!(stats.last_seen, Some(at.at));
        assert_eq!(
            coverage.gaps.lock().len(),
            1,
            "the unknown log is not tracked"
        );
    }

    #[test]
    fn matched_names_and_entries_are_distinct() {
        let (watch, _) = WatchList::build(["a.example", "b.example", "example"]);
        let names: Vec<std::borrow::Cow<'_, str>> = [
            "x.a.example",
            "x.a.example",
            "y.b.example",
            "x.a.example",
            "z.other",
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        let mut state = state();
        let matched = matched_names(&watch, &names, &mut state).unwrap();
        assert_eq!(matched.sans, ["x.a.example", "y.b.example"]);
        let mut entries: Vec<&str> = state.ids.iter().map(|id| watch.entry(*id)).collect();
        entries.sort_unstable();
        assert_eq!(entries, ["a.example", "b.example", "example"]);
        assert!(matched_names(&watch, &names[4..], &mut state).is_none());
    }
}
