//! Coverage: which entries of each trusted CT log certwatch has seen, fetched or
//! given up on, and the only writer of that state. Its parts run on the threads
//! that drive them; none has a thread of its own:
//!
//! - `Coverage` (this file): the state the sources share: the log list in use,
//!   the gap tracker, the per-log floor of what backfill still has to fetch, and
//!   whether the stored positions were read back; `FeedRecorder`, each `worker-N`
//!   thread's way of recording the log positions the feed delivered;
//! - `gaps`: the gap tracker itself (pure) and its per-worker buffer;
//! - `list`: the trusted list in use: read from `CT_LOG_LIST`, kept in Postgres,
//!   installed (`backfill` thread, and the `certwatch backfill` command);
//! - `positions`: per-log positions seeded at start, saved every 10 s (`backfill`
//!   thread) and once more at the drain (`pipeline` thread), rewound past a bogus
//!   index; `claims`: the ranges claimed in Postgres so replicas fetch a gap once;
//! - `stats`: the per-second statistics (counters, lag, `/healthz`) and the
//!   dense-feed policy (`CT_FEED_HOLES`), run by the `backfill` thread.
//!
//! The SQL stays in `store`; rows cross as typed values (`store::LogPosition`).

pub mod claims;
pub mod gaps;
pub mod list;
pub(crate) mod positions;
pub(crate) mod stats;

use crate::ctlog::loglist::{LogId, LogList};
use arc_swap::ArcSwapOption;
use gaps::{Recorder, SharedGaps};
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

/// What the sources share for coverage. Only this module's functions write it.
pub struct Coverage {
    /// The trusted log list; `None` while none is loaded (coverage and backfill off:
    /// nothing is recorded, counted or fetched).
    logs: ArcSwapOption<LogList>,
    /// Every listed log's sequence as the feed delivered it.
    gaps: Arc<SharedGaps>,
    /// Unknown log URLs logged so far (at most `UNKNOWN_LOGS_LOGGED`).
    unknown_logged: Mutex<HashSet<Box<str>>>,
    /// Per log, the lowest index the `backfill` thread still has to fetch: a saved
    /// position never passes it.
    backlog: Mutex<HashMap<LogId, u64>>,
    /// Whether the positions stored by an earlier run were read back: until then
    /// none is saved.
    seeded: AtomicBool,
    /// Whether the feed's certificate messages are in the dialect of a server
    /// known to deduplicate (certstream-server-rust): only then may its holes be
    /// taken as holes by design (`CT_FEED_HOLES=count`).
    feed_deduplicates: AtomicBool,
    /// What the tailers report of each log they read.
    tails: Mutex<HashMap<LogId, TailStatus>>,
}

/// What the tailer of a log reports (for `/healthz` and the statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStatus {
    /// The last verification of this log failed (cleared by the next success).
    pub failing: bool,
    /// The newest CT timestamp of the log's entries read, in milliseconds.
    pub newest_ms: Option<i64>,
    /// Entries read and shown to belong to a signed tree.
    pub verified: u64,
    /// The newest signed head's size.
    pub head: u64,
    /// The log's reading has not got through for `CT_LOG_UNREACHABLE_S` (each
    /// cycle ended on a request that failed or was refused); cleared by the next
    /// that does.
    pub unreachable: bool,
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
            feed_deduplicates: AtomicBool::new(false),
            tails: Mutex::new(HashMap::new()),
        }
    }

    /// Updates what the tailer of `log` reports.
    pub fn note_tail(&self, log: LogId, update: impl FnOnce(&mut TailStatus)) {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        update(tails.entry(log).or_default());
    }

    /// What the tailers report, per log.
    pub fn tails(&self) -> Vec<(LogId, TailStatus)> {
        let tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        tails.iter().map(|(id, s)| (*id, *s)).collect()
    }

    /// Whether the feed is a server known to deduplicate (see `feed_deduplicates`),
    /// as its latest certificate messages say.
    pub fn feed_deduplicates(&self) -> bool {
        self.feed_deduplicates.load(Ordering::Relaxed)
    }

    /// The feed (re)connected: the next hole of every log is the outage's, not
    /// the feed's way of sending, and does not count toward density.
    pub fn note_feed_reconnected(&self) {
        self.gaps.lock().note_outage();
    }

    /// The list in use, if one is loaded.
    pub fn logs(&self) -> Option<Arc<LogList>> {
        self.logs.load_full()
    }

    /// Notes the newest CT timestamp of a log's entries that backfill read (its
    /// lag is published with the feed's by the next statistics tick).
    pub fn note_fetched_timestamp(&self, log: LogId, timestamp_ms: i64) {
        self.gaps.lock().note_timestamp(log, timestamp_ms);
    }

    /// A worker's recorder of feed positions into this coverage.
    pub fn feed_recorder(self: &Arc<Coverage>) -> FeedRecorder {
        FeedRecorder {
            recorder: Recorder::new(self.gaps.clone(), RECORDER_CAPACITY),
            dialect: None,
            unknown: 0,
            unknown_seen: HashSet::new(),
            coverage: self.clone(),
        }
    }

    /// Logs a feed URL that names no listed log, once per URL (bounded).
    fn log_unknown(&self, url: &str) {
        let mut logged = self
            .unknown_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if logged.contains(url) || logged.len() >= UNKNOWN_LOGS_LOGGED {
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

/// The moment a batch of feed frames is recorded at: monotonic, and on the wall
/// clock in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub instant: Instant,
    pub unix_ms: i64,
}

/// One `worker-N` thread's recording of the log positions the feed delivers: a
/// buffer of observations flushed into the shared tracker (call `flush` once per
/// batch, before the worker can block), the unknown-log count of the batch, and
/// the unknown URLs this worker already reported (so it does not lock for each).
pub struct FeedRecorder {
    recorder: Recorder,
    /// Whether the batch's latest certificate message was in a deduplicating
    /// server's dialect.
    dialect: Option<bool>,
    unknown: u64,
    unknown_seen: HashSet<Box<str>>,
    coverage: Arc<Coverage>,
}

impl FeedRecorder {
    /// Records that the feed delivered entry `index` (CT timestamp `timestamp_ms`)
    /// of the log at `url`, or counts a URL the list does not name (logged once;
    /// never fetched). A timestamp further ahead of `at` than `TIMESTAMP_AHEAD_MS`
    /// is not believed.
    pub fn record(
        &mut self,
        list: &LogList,
        url: &str,
        index: u64,
        timestamp_ms: Option<i64>,
        at: At,
    ) {
        match list.lookup(url) {
            Some(log) => {
                let believed = timestamp_ms.filter(|ms| *ms <= at.unix_ms + TIMESTAMP_AHEAD_MS);
                self.recorder
                    .observe_timestamped(log.id, index, believed, at.instant)
            }
            None => {
                self.unknown += 1;
                if !self.unknown_seen.contains(url) {
                    if self.unknown_seen.len() >= UNKNOWN_LOGS_LOGGED {
                        self.unknown_seen.clear();
                    }
                    self.unknown_seen.insert(url.into());
                    self.coverage.log_unknown(url);
                }
            }
        }
    }

    /// Notes the dialect of a certificate message (`Peek::Certificate`'s
    /// `deduplicating_server`).
    pub fn note_dialect(&mut self, deduplicating_server: bool) {
        self.dialect = Some(deduplicating_server);
    }

    /// Applies what was recorded to the shared tracker; returns the messages of
    /// unknown logs since the last flush (for `certwatch_ct_unknown_log_messages_total`).
    pub fn flush(&mut self) -> u64 {
        self.recorder.flush();
        if let Some(dedup) = self.dialect.take()
            && self.coverage.feed_deduplicates.load(Ordering::Relaxed) != dedup
        {
            self.coverage
                .feed_deduplicates
                .store(dedup, Ordering::Relaxed);
        }
        std::mem::take(&mut self.unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_logs_positions_are_recorded_and_unknown_urls_only_counted() {
        const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/loglist_v3_sample.json");
        let list = LogList::parse(SAMPLE).expect("sample list");
        let log = &list.logs()[0];
        let coverage = Arc::new(Coverage::new(gaps::Settings::default()));
        let mut recorder = coverage.feed_recorder();
        let at = At {
            instant: Instant::now(),
            unix_ms: 1_800_000_000_000,
        };
        let url = log.fetch_base().trim_end_matches('/');
        recorder.record(&list, url, 10, Some(1_799_999_000_000), at);
        recorder.record(&list, url, 12, None, at);
        // Further ahead of the clock than TIMESTAMP_AHEAD_MS: not believed.
        let ahead = at.unix_ms + TIMESTAMP_AHEAD_MS + 1;
        recorder.record(&list, url, 13, Some(ahead), at);
        for _ in 0..3 {
            recorder.record(&list, "https://evil.example/log", 1, None, at);
        }
        assert_eq!(recorder.flush(), 3);
        assert_eq!(recorder.flush(), 0, "counted once");
        assert_eq!(coverage.unknown_logged.lock().unwrap().len(), 1);
        let stats = coverage.gaps.lock().stats_for(log.id).expect("tracked");
        assert_eq!(stats.seen, 3);
        assert_eq!(stats.open_entries, 1);
        assert_eq!(stats.newest_timestamp_ms, Some(1_799_999_000_000));
        assert_eq!(stats.last_seen, Some(at.instant));
        assert_eq!(
            coverage.gaps.lock().len(),
            1,
            "the unknown log is not tracked"
        );
    }
}
