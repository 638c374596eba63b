//! Per-log coverage of the certstream feed: which `cert_index` values of each CT log
//! the workers saw, which holes below the highest one are still open, and which holes
//! stayed open past a settle time and became [`Gap`]s for backfill, and how fresh each
//! log is (the newest CT timestamp read, when the feed was last heard from it). Pure:
//! plain data and a mutex, no I/O. The `worker-N` threads record every certificate
//! frame through their own [`Recorder`] (a buffer, flushed into the [`SharedGaps`] once
//! per batch); the caller's backfill thread takes the due gaps, the statistics and the
//! positions.
//!
//! # Model
//!
//! Per log, [`GapTracker`] keeps `next` (one past the highest index seen, or a seeded
//! position) and the open holes below it as a sorted deque of ranges, each with the
//! time it opened. An index equal to `next` advances it (the common case: no
//! allocation, no search); an index above `next` opens one hole `[next, index)`
//! however far it jumps; an index below `next` is looked up among the open holes by
//! binary search and fills it (shrinking or splitting the range), or else is *stale*
//! (a duplicate, a replay, an entry of a gap already reported, or anything older):
//! counted and otherwise ignored. A hole opened at least `settle` ago is taken out by
//! [`GapTracker::take_due`] as a gap and never reported again; a hole filled before then
//! costs nothing. Holes are created at the frontier only, so their opening times grow
//! with their position and the due ones are always at the front.
//!
//! # Bounds
//!
//! At most [`Settings::max_logs`] logs (observations of any other are counted in
//! [`GapTracker::untracked`] and dropped) and [`Settings::max_holes`] open holes per
//! log: past it the two lowest holes merge into one range, so backfill re-fetches the
//! few entries between them (over-fetching is safe, missing entries are not). Memory is
//! at most `max_logs × max_holes × 32` bytes plus a fixed part per log.
//!
//! # Positions
//!
//! [`GapTracker::positions`] gives, per log, the index below which every entry was
//! either seen or reported as a gap: the start of the lowest open hole, else `next`.
//! Stored and given back through [`GapTracker::seed`] after a restart, the first index
//! then seen opens a hole from it, so the restart is backfilled too. Without a stored
//! position the first index seen starts the log's sequence (no gap before it), or
//! rather the lowest one seen within the settle time and [`EARLY_REORDER`] entries of
//! it: the workers' recorders flush in any order.
//!
//! # Threads
//!
//! Workers take frames from one queue in batches, so the entries of one log are spread
//! over every worker: the per-log sequence exists only in the union of their
//! observations. One tracker behind one mutex holds it; each worker appends to its own
//! [`Recorder`] buffer (no lock, no shared cache line) and flushes it under the lock once
//! per batch, or when the buffer is full. The lock is taken once per ~32 observations,
//! held for about a microsecond, and the tracker's cache lines move between cores once
//! per flush rather than once per observation. [`SharedGaps::contended`] counts the
//! flushes that found the lock taken. A worker must flush before it waits for its next
//! batch: an observation buffered longer than the settle time would be reported as a
//! gap (harmlessly re-fetched, but wasted).
//!
//! Measured (`cargo bench --bench bench_gaps`, 50 logs, 2 shared cores): one thread
//! 5–16 ns per observation; two workers with recorders flushed per 32-frame batch
//! 25–45 ns (the cost is the tracker's cache lines changing cores, not the lock: under
//! 1% of flushes wait); the lock taken per observation instead, 25–240 ns with up to
//! a quarter of the acquisitions waiting.
//!
//! # Servers that leave holes by design
//!
//! certstream-server-rust does not send a certificate from a second log when it sent it
//! from a first one in the last 15 minutes, so every log's sequence on that server has
//! holes on purpose, typically a large fraction of its entries. The tracker measures
//! each log's *hole density*: the fraction of entries reported missing among the last
//! [`Settings::density_window`] to twice that many indices accounted for (fewer at
//! first). A log whose density exceeds [`Settings::dense_threshold`], in at least
//! [`DENSE_MIN_GAPS`] separate gaps within those windows, is flagged `dense` in its
//! [`LogStats`]. That pattern, on every log at once, is the dedup of such a server (one
//! outage makes one large gap, not many). The flag does not wait for a full window:
//! until it is raised every gap is fetched one by one, and a full window of such a
//! server is thousands of gaps per log, so the flag goes up at the tenth gap instead,
//! which bounds what is fetched before the policy applies to about [`DENSE_MIN_GAPS`]
//! requests per log. What to do with a dense log's gaps is the caller's policy
//! (`CT_FEED_HOLES`: count them, fetch them in whole stretches with [`coalesce`], or
//! fetch them one by one), with one warning per log when the flag turns on.
//!
//! # Freshness
//!
//! Each log also keeps the newest CT timestamp read from it (the feed's, recorded with
//! the index by [`Recorder::observe_timestamped`], and backfill's,
//! [`GapTracker::note_timestamp`]) and when the feed last delivered one of its entries:
//! [`LogStats::lag_seconds`] and [`LogStats::lagging`] (behind by more than
//! [`LAGGING_AFTER`], or silent that long while the feed delivers other logs).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::ctlog::loglist::{FxHasher, LogId};

/// How few gaps in a density window still count as one incident (an outage, a
/// reconnect) rather than a pattern: a log is `dense` only with at least this many.
pub const DENSE_MIN_GAPS: u64 = 10;

/// How far behind (newest CT timestamp read) or how long silent (no entry from the
/// feed while it delivers other logs) a log may be before it counts as lagging
/// (`/healthz` `coverage.logs_lagging`): 10 minutes.
pub const LAGGING_AFTER: Duration = Duration::from_secs(600);

/// How far below the first index seen of an unseeded log an index observed within
/// the settle time may still begin its sequence: the workers hold at most a queue
/// of 2,048 frames between them, so the first index recorded is never further
/// above the lowest one of that moment.
pub const EARLY_REORDER: u64 = 4096;

/// Tuning of a [`GapTracker`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a hole may stay open, waiting for the entry to arrive late, before it
    /// is a gap. Entries of one log arrive out of order by milliseconds (several
    /// workers, the server's own fetch batches); the default is 5 s.
    pub settle: Duration,
    /// The most logs tracked at once (default `loglist::MAX_LOGS`, every log a list
    /// may name). The caller tracks only logs of the trusted list; this bounds the
    /// state even if it did not.
    pub max_logs: usize,
    /// The most open holes per log (default 1,024); past it the two lowest merge.
    pub max_holes: usize,
    /// Indices per density window (default 10,000).
    pub density_window: u64,
    /// Hole density above which a log is flagged `dense` (default 0.02).
    pub dense_threshold: f64,
    /// Due holes of one log separated by at most this many seen entries are reported
    /// as one gap (default 0: exactly the missing entries). Per log:
    /// [`GapTracker::set_coalesce`].
    pub coalesce: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            settle: Duration::from_secs(5),
            max_logs: crate::ctlog::loglist::MAX_LOGS,
            max_holes: 1024,
            density_window: 10_000,
            dense_threshold: 0.02,
            coalesce: 0,
        }
    }
}

/// A stretch of a log's entries `[start, end)` that the feed did not deliver within
/// the settle time: the entries to fetch from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Which log.
    pub log: LogId,
    /// First missing index.
    pub start: u64,
    /// One past the last missing index.
    pub end: u64,
}

impl Gap {
    /// How many entries the gap spans (never zero).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: a gap spans at least one entry.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// What one observation did (for tests and debug counters; the hot path ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The first index of a log without a seeded position: starts its sequence.
    First,
    /// The next index in order.
    Next,
    /// An index above the next expected one: opened a hole of `missing` entries.
    Jump {
        /// Entries between the previous frontier and this index.
        missing: u64,
    },
    /// A late index that filled (part of) an open hole.
    Filled,
    /// Below the frontier and in no open hole: a duplicate, a replay, an entry of a
    /// gap already reported, or older than anything tracked. Counted, else ignored.
    Stale,
    /// The log is not tracked and the tracker holds `max_logs` logs already.
    Untracked,
}

/// Counters and state of one log, for metrics and the dense-feed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct LogStats {
    /// Which log.
    pub log: LogId,
    /// Distinct entries seen (in order, after a jump, or filling a hole).
    pub seen: u64,
    /// Stale observations (see [`Observed::Stale`]).
    pub stale: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Entries in the reported gaps, counting those absorbed by the hole bound
    /// (`merged_entries`) but not those bridged by coalescing.
    pub gap_entries: u64,
    /// Times the hole bound merged two holes.
    pub merged_holes: u64,
    /// Seen entries absorbed into holes by those merges (fetched again).
    pub merged_entries: u64,
    /// The highest index seen, if any.
    pub highest: Option<u64>,
    /// Everything below it was seen or reported (see [`GapTracker::positions`]).
    pub position: u64,
    /// Holes open now.
    pub open_holes: usize,
    /// Entries in the holes open now.
    pub open_entries: u64,
    /// Fraction of recent indices reported missing (0.0 to 1.0).
    pub hole_density: f64,
    /// Gaps in the density window.
    pub window_gaps: u64,
    /// Whether the density marks a feed that leaves holes by design.
    pub dense: bool,
    /// The newest CT timestamp (milliseconds since the epoch) of the log's entries
    /// read, from the feed or by backfill; `None` while no entry read carried one.
    pub newest_timestamp_ms: Option<i64>,
    /// When the feed last delivered an entry of the log (any observation, stale or
    /// not); `None` when it never did (a seeded log).
    pub last_seen: Option<Instant>,
}

impl LogStats {
    /// Seconds from the newest CT timestamp read to `now_ms` (never negative), when
    /// one is known.
    pub fn lag_seconds(&self, now_ms: i64) -> Option<i64> {
        self.newest_timestamp_ms
            .map(|newest| now_ms.saturating_sub(newest).max(0) / 1000)
    }

    /// Whether the log counts as lagging at `now` (`now_ms` the same moment on the
    /// wall clock): its newest CT timestamp is more than [`LAGGING_AFTER`] old, or the
    /// feed has delivered none of its entries for that long while `feed_flowing`
    /// (some log had an entry within that time; see [`feed_flowing`]).
    pub fn lagging(&self, now: Instant, now_ms: i64, feed_flowing: bool) -> bool {
        let behind = self
            .lag_seconds(now_ms)
            .is_some_and(|lag| lag > LAGGING_AFTER.as_secs() as i64);
        let silent = feed_flowing
            && self
                .last_seen
                .is_some_and(|at| now.saturating_duration_since(at) > LAGGING_AFTER);
        behind || silent
    }
}

/// Whether the feed delivered an entry of any of these logs within [`LAGGING_AFTER`]
/// of `now`.
pub fn feed_flowing(stats: &[LogStats], now: Instant) -> bool {
    stats.iter().any(|s| {
        s.last_seen
            .is_some_and(|at| now.saturating_duration_since(at) <= LAGGING_AFTER)
    })
}

/// `due` (as [`GapTracker::take_due`] gives them: each log's gaps together, lowest
/// first) with the gaps of each log for which `merge` says so joined when at most
/// `within` entries apart: a dense log's many small holes fetched as whole stretches
/// (`CT_FEED_HOLES=coalesce`), from the very tick it turns dense.
pub fn coalesce(due: Vec<Gap>, within: u64, merge: impl Fn(&LogId) -> bool) -> Vec<Gap> {
    let mut out: Vec<Gap> = Vec::with_capacity(due.len());
    for gap in due {
        match out.last_mut() {
            Some(last)
                if last.log == gap.log
                    && gap.start >= last.end
                    && gap.start - last.end <= within
                    && merge(&gap.log) =>
            {
                last.end = gap.end;
            }
            _ => out.push(gap),
        }
    }
    out
}

/// Every tracked log's sequence: frontier, open holes, counters. Single-threaded;
/// share it through [`SharedGaps`].
#[derive(Debug)]
pub struct GapTracker {
    settings: Settings,
    slots: HashMap<LogId, usize, BuildHasherDefault<FxHasher>>,
    tracks: Vec<Track>,
    untracked: u64,
}

#[derive(Debug)]
struct Track {
    id: LogId,
    /// One past the highest index seen, or the seeded position.
    next: u64,
    /// Where the tracked sequence begins: the seed, or the first index seen.
    origin: u64,
    /// When an unseeded sequence was first observed: for a settle time after, an
    /// index below `origin` moves the origin down (see `Track::observe`).
    started: Option<Instant>,
    seeded: bool,
    /// The next hole is an outage's (see `Hole::outage`).
    outage_next: bool,
    highest: Option<u64>,
    holes: VecDeque<Hole>,
    coalesce: u64,
    seen: u64,
    stale: u64,
    gaps: u64,
    gap_entries: u64,
    merged_holes: u64,
    merged_entries: u64,
    density: Density,
    newest_timestamp_ms: Option<i64>,
    last_seen: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Hole {
    start: u64,
    end: u64,
    opened: Instant,
    /// Opened by an outage (the feed reconnected, certwatch restarted), not by
    /// the feed's way of sending: it does not count toward density.
    outage: bool,
}

/// Two consecutive windows of accounted indices (current, previous): entries seen,
/// entries reported missing, gaps.
#[derive(Clone, Copy, Debug, Default)]
struct Density {
    seen: [u64; 2],
    missing: [u64; 2],
    gaps: [u64; 2],
}

impl Density {
    fn rotate_if_full(&mut self, window: u64) {
        if self.seen[0] + self.missing[0] >= window {
            self.seen = [0, self.seen[0]];
            self.missing = [0, self.missing[0]];
            self.gaps = [0, self.gaps[0]];
        }
    }

    fn fraction(&self) -> f64 {
        let missing = self.missing[0] + self.missing[1];
        let total = missing + self.seen[0] + self.seen[1];
        if total == 0 {
            0.0
        } else {
            missing as f64 / total as f64
        }
    }
}

impl GapTracker {
    /// An empty tracker. `max_logs`, `max_holes` and `density_window` of zero are
    /// taken as one.
    pub fn new(mut settings: Settings) -> GapTracker {
        settings.max_logs = settings.max_logs.max(1);
        settings.max_holes = settings.max_holes.max(1);
        settings.density_window = settings.density_window.max(1);
        GapTracker {
            slots: HashMap::with_capacity_and_hasher(
                settings.max_logs.min(1024),
                Default::default(),
            ),
            tracks: Vec::new(),
            untracked: 0,
            settings,
        }
    }

    /// Records that the feed delivered entry `index` of `log` at `now`. The hot path:
    /// one hash lookup and, in order, one comparison.
    pub fn observe(&mut self, log: LogId, index: u64, now: Instant) -> Observed {
        self.observe_timestamped(log, index, None, now)
    }

    /// [`observe`](GapTracker::observe), with the entry's CT timestamp (milliseconds)
    /// when the feed gave one: the log's newest is kept.
    pub fn observe_timestamped(
        &mut self,
        log: LogId,
        index: u64,
        timestamp_ms: Option<i64>,
        now: Instant,
    ) -> Observed {
        let slot = match self.slots.get(&log) {
            Some(&slot) => slot,
            None => match self.add(log, index, false) {
                Some(_) => {
                    let track = self.tracks.last_mut().expect("just added");
                    track.heard(timestamp_ms, now);
                    track.started = Some(now);
                    track.next = index.saturating_add(1);
                    track.highest = Some(index);
                    track.seen += 1;
                    track.density.seen[0] += 1;
                    track.density.rotate_if_full(self.settings.density_window);
                    return Observed::First;
                }
                None => return Observed::Untracked,
            },
        };
        let track = &mut self.tracks[slot];
        track.heard(timestamp_ms, now);
        track.observe(index, now, &self.settings)
    }

    /// Records a CT timestamp (milliseconds) of an entry of `log` read some other way
    /// (backfill): the log's newest is kept. Does nothing for an untracked log.
    pub fn note_timestamp(&mut self, log: LogId, timestamp_ms: i64) {
        if let Some(&slot) = self.slots.get(&log) {
            self.tracks[slot].note(Some(timestamp_ms));
        }
    }

    /// Sets where `log` resumes: everything below `next` was seen or reported by an
    /// earlier run (the stored position). Holes below it are dropped. If the log's
    /// first index was seen already (without a seed) and lies above `next`, the
    /// entries between open a hole now; if it was not seen yet, the first index seen
    /// opens one. Returns false when the log is new and `max_logs` are tracked.
    pub fn seed(&mut self, log: LogId, next: u64, now: Instant) -> bool {
        let Some(&slot) = self.slots.get(&log) else {
            return self.add(log, next, true).is_some();
        };
        let max_holes = self.settings.max_holes;
        let track = &mut self.tracks[slot];
        while track.holes.front().is_some_and(|h| h.end <= next) {
            track.holes.pop_front();
        }
        if let Some(front) = track.holes.front_mut() {
            front.start = front.start.max(next);
        }
        if !track.seeded && next < track.origin {
            let opened = track.holes.front().map_or(now, |h| h.opened.min(now));
            track.holes.push_front(Hole {
                start: next,
                end: track.origin,
                opened,
                outage: true,
            });
            track.bound(max_holes);
            track.origin = next;
        }
        track.next = track.next.max(next);
        track.seeded = true;
        // What the feed delivered while certwatch was down: its first hole.
        track.outage_next = true;
        true
    }

    /// The feed (re)connected: each log's next hole is the outage's (entries the
    /// feed sent while certwatch was not connected), and does not count toward
    /// density.
    pub fn note_outage(&mut self) {
        for track in &mut self.tracks {
            track.outage_next = true;
        }
    }

    /// Stops tracking `log` (its state and counters are dropped); with [`seed`]
    /// afterwards, resets it, e.g. when the feed claimed an index beyond the log's
    /// signed tree size.
    ///
    /// [`seed`]: GapTracker::seed
    pub fn forget(&mut self, log: LogId) {
        if let Some(slot) = self.slots.remove(&log) {
            self.tracks.swap_remove(slot);
            if let Some(moved) = self.tracks.get(slot) {
                self.slots.insert(moved.id, slot);
            }
        }
    }

    /// Reports the due holes of `log` separated by at most `entries` seen entries as
    /// one gap (see [`Settings::coalesce`]). Does nothing for an untracked log.
    pub fn set_coalesce(&mut self, log: LogId, entries: u64) {
        if let Some(&slot) = self.slots.get(&log) {
            self.tracks[slot].coalesce = entries;
        }
    }

    /// Takes out every hole open for at least the settle time as a gap, lowest first
    /// per log. A taken gap is never reported again, even if its entries arrive later.
    pub fn take_due(&mut self, now: Instant) -> Vec<Gap> {
        let mut due = Vec::new();
        for track in &mut self.tracks {
            track.take_due(now, &self.settings, &mut due);
        }
        due
    }

    /// Per log, the index below which every entry was seen or reported as a gap: what
    /// to store so a restart resumes there ([`seed`](GapTracker::seed)).
    pub fn positions(&self) -> Vec<(LogId, u64)> {
        self.tracks.iter().map(|t| (t.id, t.position())).collect()
    }

    /// The statistics of every tracked log.
    pub fn stats(&self) -> Vec<LogStats> {
        self.tracks
            .iter()
            .map(|t| t.stats(&self.settings))
            .collect()
    }

    /// The statistics of one log.
    pub fn stats_for(&self, log: LogId) -> Option<LogStats> {
        let slot = *self.slots.get(&log)?;
        Some(self.tracks[slot].stats(&self.settings))
    }

    /// Observations dropped because `max_logs` logs were tracked already.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// How many logs are tracked.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no log is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn add(&mut self, log: LogId, next: u64, seeded: bool) -> Option<usize> {
        if self.tracks.len() >= self.settings.max_logs {
            self.untracked += 1;
            return None;
        }
        let slot = self.tracks.len();
        self.tracks.push(Track {
            id: log,
            next,
            origin: next,
            started: None,
            seeded,
            outage_next: seeded,
            highest: None,
            holes: VecDeque::new(),
            coalesce: self.settings.coalesce,
            seen: 0,
            stale: 0,
            gaps: 0,
            gap_entries: 0,
            merged_holes: 0,
            merged_entries: 0,
            density: Density::default(),
            newest_timestamp_ms: None,
            last_seen: None,
        });
        self.slots.insert(log, slot);
        Some(slot)
    }
}

impl Track {
    /// The feed delivered an entry of this log at `now`, with this CT timestamp.
    fn heard(&mut self, timestamp_ms: Option<i64>, now: Instant) {
        self.last_seen = Some(now);
        self.note(timestamp_ms);
    }

    /// Keeps `timestamp_ms` if it is the log's newest.
    fn note(&mut self, timestamp_ms: Option<i64>) {
        self.newest_timestamp_ms = self.newest_timestamp_ms.max(timestamp_ms);
    }

    fn observe(&mut self, index: u64, now: Instant, settings: &Settings) -> Observed {
        let outcome = if index == self.next && index != u64::MAX {
            self.next += 1;
            self.highest = Some(index);
            Observed::Next
        } else if index > self.next && index != u64::MAX {
            let missing = index - self.next;
            self.holes.push_back(Hole {
                start: self.next,
                end: index,
                opened: now,
                outage: std::mem::take(&mut self.outage_next),
            });
            self.bound(settings.max_holes);
            self.next = index.saturating_add(1);
            self.highest = Some(index);
            Observed::Jump { missing }
        } else if self.fill(index, settings.max_holes) || self.begins_earlier(index, now, settings)
        {
            Observed::Filled
        } else {
            self.stale += 1;
            return Observed::Stale;
        };
        self.seen += 1;
        self.density.seen[0] += 1;
        self.density.rotate_if_full(settings.density_window);
        outcome
    }

    /// Whether `index`, below where an unseeded sequence began, moves its beginning
    /// down: the workers flush their observations in any order, so the first index
    /// seen of a log is not always its lowest. Within a settle time of the first
    /// observation and `EARLY_REORDER` entries of it, the sequence starts at `index`
    /// and the indices between are a hole opened then (due with the others); later,
    /// further below, or for a seeded sequence (a stored position), an index below
    /// the beginning is stale.
    fn begins_earlier(&mut self, index: u64, now: Instant, settings: &Settings) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        if self.seeded
            || index >= self.origin
            || self.origin - index > EARLY_REORDER
            || now.saturating_duration_since(started) >= settings.settle
        {
            return false;
        }
        if index.saturating_add(1) < self.origin {
            self.holes.push_front(Hole {
                start: index.saturating_add(1),
                end: self.origin,
                opened: started,
                outage: false,
            });
            self.bound(settings.max_holes);
        }
        self.origin = index;
        true
    }

    /// Removes `index` from the open hole holding it; false when none does.
    fn fill(&mut self, index: u64, max_holes: usize) -> bool {
        // Late entries are mostly recent: try the last hole before searching.
        let at = match self.holes.back() {
            Some(last) if last.start <= index && index < last.end => self.holes.len() - 1,
            Some(last) if last.end <= index => return false,
            None => return false,
            Some(_) => self.holes.partition_point(|h| h.end <= index),
        };
        let Some(hole) = self.holes.get_mut(at) else {
            return false;
        };
        if index < hole.start {
            return false;
        }
        match (hole.start == index, hole.end == index.saturating_add(1)) {
            (true, true) => {
                self.holes.remove(at);
            }
            (true, false) => hole.start += 1,
            (false, true) => hole.end -= 1,
            (false, false) => {
                let upper = Hole {
                    start: index.saturating_add(1),
                    ..*hole
                };
                hole.end = index;
                self.holes.insert(at + 1, upper);
                self.bound(max_holes);
            }
        }
        true
    }

    /// Merges the two lowest holes until at most `max_holes` are open.
    fn bound(&mut self, max_holes: usize) {
        while self.holes.len() > max_holes {
            let lowest = self.holes.pop_front().expect("more than one hole");
            let second = self.holes.front_mut().expect("more than one hole");
            // The entries between the two holes were seen; backfill fetches them again.
            self.merged_entries += second.start - lowest.end;
            self.merged_holes += 1;
            second.start = lowest.start;
            second.opened = second.opened.min(lowest.opened);
            second.outage |= lowest.outage;
        }
    }

    fn take_due(&mut self, now: Instant, settings: &Settings, due: &mut Vec<Gap>) {
        let first_new = due.len();
        while let Some(hole) = self.holes.front() {
            if now.saturating_duration_since(hole.opened) < settings.settle {
                break;
            }
            let Hole {
                start, end, outage, ..
            } = *hole;
            self.holes.pop_front();
            let missing = end - start;
            self.gap_entries += missing;
            if !outage {
                self.density.missing[0] += missing.min(settings.density_window);
                self.density.gaps[0] += 1;
                self.density.rotate_if_full(settings.density_window);
            }
            let extends_own_gap = due.len() > first_new;
            match due.last_mut() {
                Some(last) if extends_own_gap && start - last.end <= self.coalesce => {
                    last.end = end;
                }
                _ => {
                    self.gaps += 1;
                    due.push(Gap {
                        log: self.id,
                        start,
                        end,
                    });
                }
            }
        }
    }

    fn position(&self) -> u64 {
        self.holes.front().map_or(self.next, |h| h.start)
    }

    fn stats(&self, settings: &Settings) -> LogStats {
        let window_gaps = self.density.gaps[0] + self.density.gaps[1];
        let hole_density = self.density.fraction();
        LogStats {
            log: self.id,
            seen: self.seen,
            stale: self.stale,
            gaps: self.gaps,
            gap_entries: self.gap_entries,
            merged_holes: self.merged_holes,
            merged_entries: self.merged_entries,
            highest: self.highest,
            position: self.position(),
            open_holes: self.holes.len(),
            open_entries: self.holes.iter().map(|h| h.end - h.start).sum(),
            hole_density,
            window_gaps,
            dense: window_gaps >= DENSE_MIN_GAPS && hole_density > settings.dense_threshold,
            newest_timestamp_ms: self.newest_timestamp_ms,
            last_seen: self.last_seen,
        }
    }
}

/// A [`GapTracker`] shared by the worker threads and the backfill thread.
#[derive(Debug)]
pub struct SharedGaps {
    tracker: Mutex<GapTracker>,
    contended: AtomicU64,
}

impl SharedGaps {
    /// An empty shared tracker.
    pub fn new(settings: Settings) -> SharedGaps {
        SharedGaps {
            tracker: Mutex::new(GapTracker::new(settings)),
            contended: AtomicU64::new(0),
        }
    }

    /// Locks the tracker (for `take_due`, `seed`, `stats`, `positions`). Counts the
    /// calls that found it locked. A panic while it was held leaves a consistent
    /// tracker (no method panics half-way), so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, GapTracker> {
        match self.tracker.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.contended.fetch_add(1, Ordering::Relaxed);
                self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
            }
        }
    }

    /// One observation under the lock: for callers with few observations. Workers use
    /// a [`Recorder`].
    pub fn observe(&self, log: LogId, index: u64, now: Instant) -> Observed {
        self.lock().observe(log, index, now)
    }

    /// How many times a lock was found taken and waited for.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }
}

/// One worker's buffer of observations, applied to the [`SharedGaps`] in one locked
/// pass by [`flush`](Recorder::flush): call it at the end of every batch. Also flushes
/// when full and when dropped.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<SharedGaps>,
    buffer: Vec<(LogId, u64, Option<i64>)>,
    capacity: usize,
    now: Option<Instant>,
}

impl Recorder {
    /// A recorder holding up to `capacity` observations (at least one) between flushes.
    pub fn new(shared: Arc<SharedGaps>, capacity: usize) -> Recorder {
        let capacity = capacity.max(1);
        Recorder {
            shared,
            buffer: Vec::with_capacity(capacity),
            capacity,
            now: None,
        }
    }

    /// Buffers one observation; flushes when the buffer is full. `now` is the time of
    /// the worker's batch: the flush applies the latest one to all it holds.
    pub fn observe(&mut self, log: LogId, index: u64, now: Instant) {
        self.observe_timestamped(log, index, None, now);
    }

    /// [`observe`](Recorder::observe), with the entry's CT timestamp (milliseconds)
    /// when the feed gave one.
    pub fn observe_timestamped(
        &mut self,
        log: LogId,
        index: u64,
        timestamp_ms: Option<i64>,
        now: Instant,
    ) {
        self.buffer.push((log, index, timestamp_ms));
        self.now = Some(now);
        if self.buffer.len() >= self.capacity {
            self.flush();
        }
    }

    /// Applies the buffered observations under one lock.
    pub fn flush(&mut self) {
        let Some(now) = self.now else {
            return;
        };
        if self.buffer.is_empty() {
            return;
        }
        let mut tracker = self.shared.lock();
        for (log, index, timestamp_ms) in self.buffer.drain(..) {
            tracker.observe_timestamped(log, index, timestamp_ms, now);
        }
    }

    /// Observations buffered and not yet flushed.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const A: u8 = 1;
    const B: u8 = 2;
    const C: u8 = 3;

    fn id(n: u8) -> LogId {
        LogId([n; 32])
    }

    /// One step of a scripted run; times are milliseconds after the start.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        /// Observe `index` of a log at a time; expect this outcome.
        See(u8, u64, u64, Observed),
        /// Seed a log's position at a time; expect this return.
        Seed(u8, u64, u64, bool),
        /// Take the due gaps at a time; expect exactly these `(log, start, end)`.
        Due(u64, &'static [(u8, u64, u64)]),
        /// Expect a log's stored position.
        Position(u8, Option<u64>),
        /// Set a log's coalescing distance.
        Coalesce(u8, u64),
    }
    use Observed::{Filled, First, Jump, Next, Stale, Untracked};
    use Op::{Coalesce, Due, Position, See, Seed};

    fn settings() -> Settings {
        Settings {
            settle: Duration::from_millis(5000),
            ..Settings::default()
        }
    }

    fn run(settings: Settings, script: &[Op]) -> GapTracker {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut tracker = GapTracker::new(settings);
        for (step, op) in script.iter().enumerate() {
            match *op {
                See(log, index, ms, want) => {
                    let got = tracker.observe(id(log), index, at(ms));
                    assert_eq!(got, want, "step {step}: {op:?}");
                }
                Seed(log, next, ms, want) => {
                    assert_eq!(
                        tracker.seed(id(log), next, at(ms)),
                        want,
                        "step {step}: {op:?}"
                    );
                }
                Due(ms, want) => {
                    let got: Vec<(u8, u64, u64)> = tracker
                        .take_due(at(ms))
                        .iter()
                        .map(|g| (g.log.0[0], g.start, g.end))
                        .collect();
                    assert_eq!(got, want, "step {step}: {op:?}");
                }
                Position(log, want) => {
                    let got = tracker
                        .positions()
                        .into_iter()
                        .find(|(l, _)| *l == id(log))
                        .map(|(_, p)| p);
                    assert_eq!(got, want, "step {step}: {op:?}");
                }
                Coalesce(log, entries) => tracker.set_coalesce(id(log), entries),
            }
        }
        tracker
    }

    #[test]
    fn scripted_sequences() {
        let cases: &[(&str, Settings, &[Op])] = &[
            (
                "in order: no gap, position follows",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 11, 0, Next),
                    See(A, 12, 1, Next),
                    See(A, 13, 2, Next),
                    Due(60_000, &[]),
                    Position(A, Some(14)),
                ],
            ),
            (
                "reordering within the settle time costs nothing",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 12, 1, Jump { missing: 1 }),
                    See(A, 14, 2, Jump { missing: 1 }),
                    Position(A, Some(11)),
                    See(A, 11, 3, Filled),
                    See(A, 13, 4, Filled),
                    Position(A, Some(15)),
                    Due(60_000, &[]),
                ],
            ),
            (
                "a hole still open after the settle time is a gap, reported once",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 13, 100, Jump { missing: 2 }),
                    Due(5099, &[]),
                    Due(5100, &[(A, 11, 13)]),
                    Due(60_000, &[]),
                    Position(A, Some(14)),
                ],
            ),
            (
                "a late entry fills part of a hole before it is due; after, it is stale",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 13, 0, Jump { missing: 2 }),
                    See(A, 11, 4000, Filled),
                    Due(5000, &[(A, 12, 13)]),
                    See(A, 12, 5001, Stale),
                    Due(60_000, &[]),
                ],
            ),
            (
                "a fill in the middle splits the hole",
                settings(),
                &[
                    See(A, 0, 0, First),
                    See(A, 10, 0, Jump { missing: 9 }),
                    See(A, 5, 1, Filled),
                    See(A, 9, 1, Filled),
                    See(A, 1, 1, Filled),
                    Due(5000, &[(A, 2, 5), (A, 6, 9)]),
                ],
            ),
            (
                "a jump opens one hole however far",
                settings(),
                &[
                    See(A, 5, 0, First),
                    See(
                        A,
                        50_000_000,
                        1,
                        Jump {
                            missing: 49_999_994,
                        },
                    ),
                    See(A, 50_000_001, 2, Next),
                    See(A, 7, 3, Filled),
                    Due(6000, &[(A, 6, 7), (A, 8, 50_000_000)]),
                    Position(A, Some(50_000_002)),
                ],
            ),
            (
                "out of order at the start: the sequence begins at the lowest index of the settle time",
                settings(),
                &[
                    See(A, 20, 0, First),
                    See(A, 21, 0, Next),
                    See(A, 14, 1, Filled),
                    Position(A, Some(15)),
                    See(A, 12, 2, Filled),
                    See(A, 19, 3, Filled),
                    Position(A, Some(13)),
                    // After the settle time, lower indices are stale again.
                    See(A, 10, 5000, Stale),
                    Due(5000, &[(A, 13, 14), (A, 15, 19)]),
                    Position(A, Some(22)),
                ],
            ),
            (
                "duplicates are stale",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 11, 0, Next),
                    See(A, 11, 0, Stale),
                    See(A, 10, 0, Stale),
                    Due(60_000, &[]),
                    Position(A, Some(12)),
                ],
            ),
            (
                "an index far below everything is stale and changes nothing",
                settings(),
                &[
                    See(A, 1_000_000, 0, First),
                    See(A, 1_000_002, 0, Jump { missing: 1 }),
                    See(A, 3, 1, Stale),
                    See(A, 0, 1, Stale),
                    // Within EARLY_REORDER of the first index: the sequence begins there.
                    See(A, 999_999, 1, Filled),
                    Position(A, Some(1_000_001)),
                    Due(6000, &[(A, 1_000_001, 1_000_002)]),
                    See(A, 1_000_003, 7000, Next),
                ],
            ),
            (
                "the highest possible index is stale, not an overflow",
                settings(),
                &[
                    See(A, 1, 0, First),
                    See(A, u64::MAX, 0, Stale),
                    See(
                        A,
                        u64::MAX - 1,
                        0,
                        Jump {
                            missing: u64::MAX - 3,
                        },
                    ),
                    See(A, u64::MAX, 0, Stale),
                    Position(A, Some(2)),
                ],
            ),
            (
                "past max_holes the two lowest holes merge",
                Settings {
                    max_holes: 4,
                    ..settings()
                },
                &[
                    See(A, 0, 0, First),
                    See(A, 2, 1, Jump { missing: 1 }),
                    See(A, 4, 2, Jump { missing: 1 }),
                    See(A, 6, 3, Jump { missing: 1 }),
                    See(A, 8, 4, Jump { missing: 1 }),
                    See(A, 10, 5, Jump { missing: 1 }),
                    See(A, 12, 6, Jump { missing: 1 }),
                    // Holes now [1,6) [7,8) [9,10) [11,12); a fifth merges again, and so
                    // does a split at the bound: [1,10) [11,12) [13,15) [16,20).
                    See(A, 20, 7, Jump { missing: 7 }),
                    See(A, 15, 8, Filled),
                    Due(5010, &[(A, 1, 10), (A, 11, 12), (A, 13, 15), (A, 16, 20)]),
                ],
            ),
            (
                "a stored position opens a gap to the first index seen",
                settings(),
                &[
                    Seed(A, 100, 0, true),
                    Position(A, Some(100)),
                    See(A, 105, 10, Jump { missing: 5 }),
                    Position(A, Some(100)),
                    See(A, 101, 11, Filled),
                    Due(5010, &[(A, 100, 101), (A, 102, 105)]),
                    Position(A, Some(106)),
                ],
            ),
            (
                "resuming exactly at the stored position is no gap; older entries are stale",
                settings(),
                &[
                    Seed(A, 100, 0, true),
                    See(A, 99, 0, Stale),
                    See(A, 100, 0, Next),
                    Due(60_000, &[]),
                    Position(A, Some(101)),
                ],
            ),
            (
                "a position loaded after the first index was seen opens the gap then",
                settings(),
                &[
                    See(A, 120, 0, First),
                    See(A, 121, 0, Next),
                    Seed(A, 100, 1000, true),
                    Position(A, Some(100)),
                    See(A, 110, 1001, Filled),
                    Due(5999, &[]),
                    Due(6000, &[(A, 100, 110), (A, 111, 120)]),
                    // A second seed below cannot reopen what the first said was done.
                    Seed(A, 50, 7000, true),
                    Due(60_000, &[]),
                    Position(A, Some(122)),
                ],
            ),
            (
                "a stored position above open holes closes them",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(A, 15, 0, Jump { missing: 4 }),
                    See(A, 20, 0, Jump { missing: 4 }),
                    Seed(A, 13, 0, true),
                    Position(A, Some(13)),
                    Seed(A, 30, 0, true),
                    Position(A, Some(30)),
                    See(A, 25, 0, Stale),
                    See(A, 30, 0, Next),
                    Due(60_000, &[]),
                ],
            ),
            (
                "logs are independent",
                settings(),
                &[
                    See(A, 10, 0, First),
                    See(B, 500, 0, First),
                    See(A, 12, 0, Jump { missing: 1 }),
                    See(B, 501, 0, Next),
                    See(B, 503, 1, Jump { missing: 1 }),
                    See(A, 11, 2, Filled),
                    Due(6000, &[(B, 502, 503)]),
                    Position(A, Some(13)),
                    Position(B, Some(504)),
                    Position(C, None),
                ],
            ),
            (
                "past max_logs a new log is untracked, seeded or not",
                Settings {
                    max_logs: 2,
                    ..settings()
                },
                &[
                    See(A, 1, 0, First),
                    Seed(B, 7, 0, true),
                    See(C, 1, 0, Untracked),
                    Seed(C, 1, 0, false),
                    See(B, 9, 0, Jump { missing: 2 }),
                    Due(6000, &[(B, 7, 9)]),
                    Position(C, None),
                ],
            ),
            (
                "coalescing joins due holes a few seen entries apart",
                settings(),
                &[
                    See(A, 0, 0, First),
                    Coalesce(A, 3),
                    See(A, 2, 0, Jump { missing: 1 }),
                    See(A, 4, 0, Jump { missing: 1 }),
                    See(A, 10, 0, Jump { missing: 5 }),
                    See(A, 11, 0, Next),
                    See(A, 12, 0, Next),
                    See(A, 13, 0, Next),
                    See(A, 14, 0, Next),
                    See(A, 20, 0, Jump { missing: 5 }),
                    See(A, 30, 9000, Jump { missing: 9 }),
                    See(B, 0, 0, First),
                    See(B, 2, 0, Jump { missing: 1 }),
                    Due(6000, &[(A, 1, 10), (A, 15, 20), (B, 1, 2)]),
                    Due(15_000, &[(A, 21, 30)]),
                ],
            ),
        ];
        for (name, settings, script) in cases {
            eprintln!("case: {name}");
            run(settings.clone(), script);
        }
    }

    #[test]
    fn forget_then_seed_resets_a_log() {
        let now = Instant::now();
        let mut tracker = GapTracker::new(settings());
        tracker.observe(id(A), 1, now);
        tracker.observe(id(B), 1, now);
        tracker.observe(id(A), 1_000_000_000, now);
        tracker.forget(id(A));
        assert_eq!(tracker.len(), 1);
        assert!(tracker.stats_for(id(A)).is_none());
        // B moved into A's slot and is still found.
        assert_eq!(tracker.observe(id(B), 2, now), Next);
        assert!(tracker.seed(id(A), 2, now));
        assert_eq!(tracker.observe(id(A), 2, now), Next);
        assert!(tracker.take_due(now + Duration::from_secs(60)).is_empty());
        tracker.forget(id(C));
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn statistics_count_what_happened() {
        let start = Instant::now();
        let mut tracker = GapTracker::new(Settings {
            max_holes: 2,
            ..settings()
        });
        for index in [10, 11, 11, 13, 12, 20, 22, 24, 3] {
            // 3 after the settle time: stale (earlier it would begin the sequence).
            let at = if index == 3 {
                start + Duration::from_secs(5)
            } else {
                start
            };
            tracker.observe(id(A), index, at);
        }
        let open = tracker.stats_for(id(A)).unwrap();
        assert_eq!(open.seen, 7);
        assert_eq!(open.stale, 2);
        assert_eq!(open.highest, Some(24));
        assert_eq!(open.position, 14);
        // Holes [14,20) [21,22) [23,24): the bound merged the lowest two.
        assert_eq!(open.open_holes, 2);
        assert_eq!(open.open_entries, 8 + 1);
        assert_eq!(open.merged_holes, 1);
        assert_eq!(open.merged_entries, 1);
        assert_eq!(open.gaps, 0);
        tracker.take_due(start + Duration::from_secs(5));
        let done = tracker.stats_for(id(A)).unwrap();
        assert_eq!(done.gaps, 2);
        assert_eq!(done.gap_entries, 9);
        assert_eq!(done.open_holes, 0);
        assert_eq!(done.position, 25);
        assert_eq!(tracker.stats().len(), 1);
        assert_eq!(tracker.untracked(), 0);
    }

    /// Feeds `len` indices of log A in order, leaving out each one for which `missing`
    /// says so, taking due gaps as it goes; returns the final statistics.
    fn density_after(len: u64, missing: impl Fn(u64) -> bool) -> LogStats {
        let start = Instant::now();
        let mut tracker = GapTracker::new(Settings {
            settle: Duration::ZERO,
            density_window: 1000,
            ..Settings::default()
        });
        for index in (0..len).filter(|&i| !missing(i)) {
            tracker.observe(id(A), index, start);
            tracker.take_due(start);
        }
        tracker.stats_for(id(A)).unwrap()
    }

    #[test]
    fn hole_density_flags_a_feed_that_leaves_holes_by_design() {
        // certstream-server-rust's cross-log dedup: about a third missing, spread out.
        let rust_like = density_after(5000, |i| i % 3 == 1);
        assert!(
            (rust_like.hole_density - 1.0 / 3.0).abs() < 0.01,
            "{rust_like:?}"
        );
        assert!(rust_like.dense);
        assert!(rust_like.window_gaps > 500);

        let complete = density_after(5000, |_| false);
        assert_eq!(complete.hole_density, 0.0);
        assert!(!complete.dense);

        // 1% missing stays under the 2% threshold.
        let sparse = density_after(20_000, |i| i % 100 == 50);
        assert!((sparse.hole_density - 0.01).abs() < 0.002, "{sparse:?}");
        assert!(!sparse.dense);

        // One outage: one large gap, density high but not the dedup pattern.
        let outage = density_after(5000, |i| (3000..4500).contains(&i));
        assert!(outage.hole_density > 0.3, "{outage:?}");
        assert!(!outage.dense);

        // Dense from the tenth gap on, well before a whole window has been seen:
        // until then every gap is fetched one by one.
        let nine = density_after(36, |i| i % 4 == 1);
        assert_eq!(nine.window_gaps, 9);
        assert!(nine.hole_density > 0.2, "{nine:?}");
        assert!(!nine.dense, "nine gaps are no pattern yet");
        let ten = density_after(40, |i| i % 4 == 1);
        assert_eq!(ten.window_gaps, DENSE_MIN_GAPS);
        assert!(ten.dense, "{ten:?}");
    }

    /// Issue 18 item 1: the holes reconnects and restarts leave are outages, not
    /// the feed's way of sending; however many there are, they never make a log
    /// look dense. The same holes without reconnects do.
    #[test]
    fn reconnect_and_restart_holes_do_not_count_toward_density() {
        let run = |reconnects: bool| {
            let start = Instant::now();
            let mut tracker = GapTracker::new(Settings {
                settle: Duration::ZERO,
                density_window: 1000,
                ..Settings::default()
            });
            tracker.seed(id(A), 0, start);
            // A restart gap (0..50), then every 40 entries 15 more missing, each
            // run after a reconnect when `reconnects`.
            let mut index = 50;
            while index < 2000 {
                for i in index..index + 25 {
                    tracker.observe(id(A), i, start);
                }
                index += 40;
                if reconnects {
                    tracker.note_outage();
                }
                tracker.take_due(start);
            }
            tracker.take_due(start);
            tracker.stats_for(id(A)).unwrap()
        };
        let outages = run(true);
        assert_eq!(outages.window_gaps, 0, "{outages:?}");
        assert!(!outages.dense);
        assert!(outages.gap_entries > 700, "the gaps are still reported");
        let pattern = run(false);
        assert!(pattern.window_gaps >= DENSE_MIN_GAPS, "{pattern:?}");
        assert!(pattern.dense, "{pattern:?}");
    }

    #[test]
    fn freshness_is_the_newest_ct_timestamp_and_the_last_entry_heard() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut tracker = GapTracker::new(settings());
        tracker.observe_timestamped(id(A), 1, Some(5_000_000), start);
        // Out of order, untimed, stale: the newest is kept.
        tracker.observe_timestamped(id(A), 3, Some(4_000_000), start);
        tracker.observe_timestamped(id(A), 2, None, start);
        tracker.observe_timestamped(id(A), 2, Some(1), start + minute);
        tracker.observe(id(B), 1, start);
        tracker.note_timestamp(id(B), 3_000_000);
        tracker.note_timestamp(id(B), 2_000_000);
        tracker.note_timestamp(id(C), 9_000_000);
        assert!(tracker.seed(id(C), 0, start));
        let a = tracker.stats_for(id(A)).unwrap();
        let b = tracker.stats_for(id(B)).unwrap();
        let c = tracker.stats_for(id(C)).unwrap();
        assert_eq!(a.newest_timestamp_ms, Some(5_000_000));
        assert_eq!(
            a.last_seen,
            Some(start + minute),
            "a stale entry is still heard"
        );
        assert_eq!(b.newest_timestamp_ms, Some(3_000_000));
        assert_eq!(b.last_seen, Some(start));
        assert_eq!((c.newest_timestamp_ms, c.last_seen), (None, None));
        assert_eq!(a.lag_seconds(5_061_999), Some(61));
        assert_eq!(a.lag_seconds(4_000_000), Some(0), "never negative");
        assert_eq!(c.lag_seconds(5_000_000), None);

        let lag = LAGGING_AFTER.as_secs() as i64 * 1000;
        // Behind: the newest CT timestamp is over LAGGING_AFTER old, flowing or not.
        assert!(!a.lagging(start, 5_000_000 + lag, true));
        assert!(a.lagging(start, 5_000_000 + lag + 1000, false));
        // Silent: nothing heard for LAGGING_AFTER while another log flows.
        let later = start + minute + LAGGING_AFTER + Duration::from_secs(1);
        assert!(
            !a.lagging(later, 5_000_000, false),
            "the feed is down: no silence to blame on a log"
        );
        assert!(a.lagging(later, 5_000_000, true));
        assert!(!a.lagging(start + LAGGING_AFTER, 5_000_000, true));
        assert!(!c.lagging(later, 0, true), "never heard: nothing known");

        let stats = tracker.stats();
        assert!(feed_flowing(&stats, start + minute + LAGGING_AFTER));
        assert!(!feed_flowing(&stats, later));
        assert!(!feed_flowing(&[c], start));
    }

    #[test]
    fn coalescing_due_gaps_joins_only_the_chosen_logs_within_reach() {
        let gap = |log: u8, start: u64, end: u64| Gap {
            log: id(log),
            start,
            end,
        };
        let due = vec![
            gap(A, 1, 2),
            gap(A, 5, 7),
            gap(A, 263, 264),
            gap(A, 521, 530),
            gap(B, 530, 531),
            gap(B, 533, 534),
            gap(C, 1, 2),
            gap(C, 3, 4),
        ];
        let merged = coalesce(due.clone(), 256, |log| *log != id(C));
        assert_eq!(
            merged,
            vec![
                gap(A, 1, 264),
                gap(A, 521, 530),
                gap(B, 530, 534),
                gap(C, 1, 2),
                gap(C, 3, 4),
            ]
        );
        assert_eq!(coalesce(due.clone(), 256, |_| false), due);
        assert_eq!(coalesce(Vec::new(), 256, |_| true), Vec::new());
    }

    /// A 64-bit SplitMix generator: deterministic, no dependency.
    pub(in crate::coverage) struct SplitMix(pub(in crate::coverage) u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(in crate::coverage) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The naive model: every index seen and reported, and when each missing index's
    /// hole opened.
    #[derive(Default)]
    struct Model {
        next: Option<u64>,
        /// The lowest index seen, and when the first was (see `begins_earlier`).
        origin: u64,
        started: u64,
        seen: BTreeSet<u64>,
        reported: BTreeSet<u64>,
        opened: BTreeMap<u64, u64>,
    }

    impl Model {
        fn observe(&mut self, index: u64, now: u64, settle: u64) {
            if self.next.is_none() {
                (self.origin, self.started) = (index, now);
            }
            let next = *self.next.get_or_insert(index);
            if index >= next {
                for missing in next..index {
                    self.opened.insert(missing, now);
                }
                self.next = Some(index + 1);
            } else if index < self.origin
                && self.origin - index <= EARLY_REORDER
                && now - self.started < settle
            {
                for missing in index + 1..self.origin {
                    self.opened.insert(missing, self.started);
                }
                self.origin = index;
            }
            if !self.reported.contains(&index) {
                self.opened.remove(&index);
            }
            self.seen.insert(index);
        }

        fn take_due(&mut self, now: u64, settle: u64) -> BTreeSet<u64> {
            let due: BTreeSet<u64> = self
                .opened
                .iter()
                .filter(|&(_, &at)| now - at >= settle)
                .map(|(&i, _)| i)
                .collect();
            for i in &due {
                self.opened.remove(i);
                self.reported.insert(*i);
            }
            due
        }

        fn position(&self) -> Option<u64> {
            self.opened.keys().next().copied().or(self.next)
        }
    }

    /// Random feeds of three logs (in order, reordered within a few places, dropped,
    /// duplicated, replayed from long ago, jumping ahead), checked step by step
    /// against the model: the same gaps, the same positions, the same open entries.
    #[test]
    fn matches_a_naive_model_on_random_feeds() {
        const SETTLE_MS: u64 = 20;
        for seed in 0..64 {
            let mut rng = SplitMix(seed);
            let start = Instant::now();
            let mut tracker = GapTracker::new(Settings {
                settle: Duration::from_millis(SETTLE_MS),
                ..Settings::default()
            });
            let mut models: [Model; 3] = Default::default();
            let mut counters = [0u64, 1_000, 5_000_000];
            let mut pending: [Vec<u64>; 3] = Default::default();
            let mut now = 0u64;
            for step in 0..2000 {
                now += rng.below(3);
                let log = rng.below(3) as usize;
                // Produce the log's next index with some disorder.
                let index = match rng.below(100) {
                    0..=69 => {
                        counters[log] += 1;
                        counters[log]
                    }
                    70..=79 => {
                        // Skip one or a few (a hole that may be filled late).
                        let skip = 1 + rng.below(4);
                        for s in 1..=skip {
                            if rng.below(2) == 0 {
                                pending[log].push(counters[log] + s);
                            }
                        }
                        counters[log] += skip + 1;
                        counters[log]
                    }
                    80..=89 if !pending[log].is_empty() => {
                        let at = rng.below(pending[log].len() as u64) as usize;
                        pending[log].swap_remove(at)
                    }
                    90..=93 => counters[log].saturating_sub(rng.below(3)),
                    94..=95 => counters[log] / 2,
                    96 => {
                        counters[log] += 2 + rng.below(200);
                        counters[log]
                    }
                    _ => {
                        counters[log] += 1;
                        counters[log]
                    }
                };
                let at = start + Duration::from_millis(now);
                tracker.observe(id(log as u8), index, at);
                models[log].observe(index, now, SETTLE_MS);

                if step % 7 == 0 {
                    let gaps = tracker.take_due(at);
                    for (n, model) in models.iter_mut().enumerate() {
                        let want = model.take_due(now, SETTLE_MS);
                        let got: BTreeSet<u64> = gaps
                            .iter()
                            .filter(|g| g.log == id(n as u8))
                            .flat_map(|g| g.start..g.end)
                            .collect();
                        assert_eq!(got, want, "seed {seed} step {step} log {n}: gaps");
                    }
                }
                for (n, model) in models.iter().enumerate() {
                    let stats = tracker.stats_for(id(n as u8));
                    assert_eq!(
                        stats.as_ref().map(|s| s.position),
                        model.position(),
                        "seed {seed} step {step} log {n}: position"
                    );
                    if let Some(stats) = stats {
                        assert_eq!(
                            stats.open_entries,
                            model.opened.len() as u64,
                            "seed {seed} step {step} log {n}: open entries"
                        );
                        assert_eq!(stats.highest, model.seen.last().copied());
                    }
                }
            }
        }
    }

    #[test]
    fn recorders_on_two_threads_see_one_sequence() {
        let shared = Arc::new(SharedGaps::new(settings()));
        let start = Instant::now();
        // Seeded: without a stored position, whichever worker flushed first would
        // start the sequence and the other's earlier batch would be stale.
        assert!(shared.lock().seed(id(A), 0, start));
        assert!(shared.lock().seed(id(B), 0, start));
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let mut recorder = Recorder::new(shared, 32);
                    // Worker w gets every other batch of 32 entries of two logs.
                    for batch in (w..2000).step_by(2) {
                        for index in batch * 32..(batch + 1) * 32 {
                            recorder.observe(id(A), index, start);
                            recorder.observe(id(B), index, start);
                        }
                        recorder.flush();
                        assert_eq!(recorder.pending(), 0);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let mut tracker = shared.lock();
        // Reordering between the workers' flushes was filled in: nothing is missing.
        assert!(tracker.take_due(start + Duration::from_secs(60)).is_empty());
        let stats = tracker.stats_for(id(A)).unwrap();
        assert_eq!(stats.seen, 64_000);
        assert_eq!(stats.highest, Some(63_999));
        assert_eq!(stats.position, 64_000);
        assert_eq!(stats.stale, 0);
    }

    #[test]
    fn a_recorder_flushes_when_full_and_when_dropped() {
        let shared = Arc::new(SharedGaps::new(settings()));
        let now = Instant::now();
        let mut recorder = Recorder::new(Arc::clone(&shared), 3);
        recorder.observe(id(A), 1, now);
        recorder.observe(id(A), 2, now);
        assert_eq!(recorder.pending(), 2);
        assert!(shared.lock().is_empty());
        recorder.observe(id(A), 3, now);
        assert_eq!(recorder.pending(), 0);
        assert_eq!(shared.lock().stats_for(id(A)).unwrap().seen, 3);
        recorder.observe(id(A), 4, now);
        drop(recorder);
        assert_eq!(shared.lock().positions(), vec![(id(A), 5)]);
        assert_eq!(shared.observe(id(A), 7, now), Jump { missing: 2 });
    }
}
