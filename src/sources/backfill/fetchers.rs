//! One fetcher thread per log with gaps to read (`backfill-<n>`, `n` the log's
//! place in the list), each with its own bounded queue: a slow, failing or
//! rate-limiting log delays only its own gaps, never another log's, the
//! statistics, the position saves or the shutdown. The `backfill` thread owns the
//! `Fetchers` (queues gaps, reads the floors of what is still queued, closes the
//! queues of logs that left the list); each fetcher thread runs `LogFetch` over
//! its queue and sends what it finds to the `backfill` thread, which hands it to
//! classification. A fetcher with nothing to do for `IDLE` ends; the next gap of
//! its log starts another.
//!
//! Bounds: at most `MAX_GAPS_PER_LOG` gaps queued per log (past it a gap fails,
//! counted and logged with the command that reads it); fetcher threads at most
//! `MAX_FETCHERS` at once (a log over that waits for one to end); what they find
//! goes through a channel of `FOUND_QUEUE` certificates (a full channel makes the
//! fetcher wait, checking shutdown).

use super::fetch::{FetchContext, LogFetch, Next, QueuedGap};
use crate::coverage::gaps::Gap;
use crate::ctlog::loglist::{Log, LogId, LogList};
use crate::sources::Found;
use crossbeam_channel::{SendTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Gaps queued per log at most.
pub const MAX_GAPS_PER_LOG: usize = 256;
/// Fetcher threads alive at once at most.
pub const MAX_FETCHERS: usize = 128;
/// Matched certificates waiting for the `backfill` thread at most.
pub const FOUND_QUEUE: usize = 256;
/// A fetcher with an empty queue ends after this long.
const IDLE: Duration = Duration::from_secs(60);
/// How often a waiting fetcher looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(200);

/// One log's queue, shared by the `backfill` thread and the log's fetcher thread.
struct LogQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    gaps: VecDeque<QueuedGap>,
    /// The first index of the gap being fetched, not yet read.
    in_flight: Option<u64>,
    /// The log left the list: what is queued is dropped.
    closed: bool,
    /// A fetcher thread serves this queue.
    running: bool,
}

impl LogQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fetcher threads and their queues (owned by the `backfill` thread).
pub struct Fetchers {
    ctx: Arc<FetchContext>,
    found: Sender<Found>,
    queues: HashMap<LogId, Arc<LogQueue>>,
    threads: HashMap<LogId, JoinHandle<()>>,
    /// Per log with a full queue: when it was last said, and the gaps refused since.
    refused: HashMap<LogId, (Instant, u64)>,
}

/// A log whose queue is full is said at most this often (with the count since).
const FULL_NOTE: Duration = Duration::from_secs(600);

impl Fetchers {
    pub fn new(ctx: Arc<FetchContext>, found: Sender<Found>) -> Fetchers {
        Fetchers {
            ctx,
            found,
            queues: HashMap::new(),
            threads: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Queues a gap of `log` (the `n`-th of the list) and makes sure a fetcher
    /// serves it; a log with `MAX_GAPS_PER_LOG` queued fails the gap.
    pub fn enqueue(&mut self, log: &Log, n: usize, gap: Gap, now: Instant) {
        let queue = self
            .queues
            .entry(log.id)
            .or_insert_with(|| {
                Arc::new(LogQueue {
                    state: Mutex::new(QueueState::default()),
                    wake: Condvar::new(),
                })
            })
            .clone();
        let queued = QueuedGap::new(gap, now);
        {
            let mut state = queue.lock();
            if state.gaps.len() >= MAX_GAPS_PER_LOG {
                drop(state);
                LogFetch::new(&self.ctx, log.clone()).give_up_quietly(&queued);
                let (said, since) = self.refused.entry(log.id).or_insert((now, 0));
                *since += 1;
                if *since == 1 || now.saturating_duration_since(*said) >= FULL_NOTE {
                    log::warn!(
                        "CT log {}: {} gaps refused ({MAX_GAPS_PER_LOG} of this log wait already; \
                         counted failed), the latest entries {}..{}; said at most every {} minutes",
                        crate::coverage::list::log_label(log),
                        *since,
                        queued.gap.start,
                        queued.gap.end,
                        FULL_NOTE.as_secs() / 60
                    );
                    *said = now;
                    *since = 0;
                }
                return;
            }
            state.closed = false;
            state.gaps.push_back(queued);
            queue.wake.notify_one();
        }
        self.serve(log, n, &queue);
    }

    /// Starts a fetcher for `queue` when none serves it (and a thread is free).
    fn serve(&mut self, log: &Log, n: usize, queue: &Arc<LogQueue>) {
        if queue.lock().running {
            return;
        }
        if let Some(done) = self.threads.remove(&log.id) {
            let _ = done.join();
        }
        self.reap();
        if self.threads.len() >= MAX_FETCHERS {
            return; // the next enqueue or `start_waiting` tries again
        }
        queue.lock().running = true;
        let (ctx, found, queue_for_thread, log_for_thread) = (
            self.ctx.clone(),
            self.found.clone(),
            queue.clone(),
            log.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("backfill-{n}"))
            .spawn(move || run_fetcher(&ctx, log_for_thread, &queue_for_thread, &found));
        match spawned {
            Ok(handle) => {
                self.threads.insert(log.id, handle);
            }
            Err(e) => {
                queue.lock().running = false;
                log::warn!("CT log fetcher not started ({e}); its gaps wait");
            }
        }
    }

    /// Joins the fetcher threads that ended.
    fn reap(&mut self) {
        let ended: Vec<LogId> = self
            .threads
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            if let Some(handle) = self.threads.remove(&id) {
                let _ = handle.join();
            }
        }
    }

    /// Starts fetchers for queues that have gaps but no fetcher (one ended while
    /// `MAX_FETCHERS` were busy).
    pub fn start_waiting(&mut self, list: &LogList) {
        let waiting: Vec<(LogId, Arc<LogQueue>)> = self
            .queues
            .iter()
            .filter(|(_, q)| {
                let state = q.lock();
                !state.running && !state.gaps.is_empty()
            })
            .map(|(id, q)| (*id, q.clone()))
            .collect();
        for (id, queue) in waiting {
            if let Some((n, log)) = list.logs().iter().enumerate().find(|(_, l)| l.id == id) {
                self.serve(log, n, &queue);
            }
        }
    }

    /// Per queued or in-flight gap, its log and first index not yet read (the
    /// floors of saved positions).
    pub fn floors(&self) -> Vec<(LogId, u64)> {
        let mut floors = Vec::new();
        for (id, queue) in &self.queues {
            let state = queue.lock();
            floors.extend(state.gaps.iter().map(|q| (*id, q.gap.start)));
            floors.extend(state.in_flight.map(|start| (*id, start)));
        }
        floors
    }

    /// Entries waiting in every queue.
    pub fn queued_entries(&self) -> u64 {
        self.queues
            .values()
            .map(|q| q.lock().gaps.iter().map(|g| g.gap.len()).sum::<u64>())
            .sum()
    }

    /// Closes the queues of logs `list` no longer names: their gaps are dropped
    /// (counted, claims released) by their fetchers.
    pub fn retain_listed(&mut self, list: &LogList) {
        for (id, queue) in &self.queues {
            if list.get(id).is_none() {
                let mut state = queue.lock();
                if !state.gaps.is_empty() || state.in_flight.is_some() {
                    state.closed = true;
                    queue.wake.notify_one();
                }
            }
        }
    }

    /// Wakes every fetcher (at shutdown, so each sees the flag at once).
    pub fn wake_all(&self) {
        for queue in self.queues.values() {
            queue.wake.notify_all();
        }
    }
}

/// A fetcher thread: serves one log's queue until it stays empty for `IDLE`, the
/// log leaves the list, or shutdown.
fn run_fetcher(ctx: &FetchContext, log: Log, queue: &LogQueue, found: &Sender<Found>) {
    let mut fetch = LogFetch::new(ctx, log);
    let mut idle_since = Instant::now();
    let mut state = queue.lock();
    loop {
        if ctx.shutdown.is_set() {
            break;
        }
        if state.closed {
            let dropped: Vec<QueuedGap> = state.gaps.drain(..).collect();
            state.closed = false;
            drop(state);
            for queued in &dropped {
                fetch.drop_delisted(queued);
            }
            state = queue.lock();
            continue;
        }
        let now = Instant::now();
        let due = state.gaps.iter().position(|q| q.not_before <= now);
        let Some(at) = due else {
            if state.gaps.is_empty() && now.duration_since(idle_since) >= IDLE {
                break;
            }
            let next = state
                .gaps
                .iter()
                .map(|q| q.not_before.saturating_duration_since(now))
                .min()
                .unwrap_or(POLL)
                .min(POLL);
            state = queue
                .wake
                .wait_timeout(state, next)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        };
        let queued = state.gaps.remove(at).expect("found above");
        state.in_flight = Some(queued.gap.start);
        drop(state);
        // Claimed on first fetch: the parts another replica does not hold. The
        // first is fetched now, the others go back in the queue (claimed).
        let mut parts = fetch.take(queued).into_iter();
        let current = parts.next();
        state = queue.lock();
        for part in parts.rev() {
            state.gaps.push_front(part);
        }
        if let Some(part) = current {
            state.in_flight = Some(part.gap.start);
            drop(state);
            let mut sink = |f: Found| send(found, f, ctx);
            let mut progress = |start: u64| queue.lock().in_flight = Some(start);
            let next = fetch.fetch(part, &mut sink, &mut progress);
            // The pages read are freed: hand them back before the next wait.
            crate::memory::release_freed();
            state = queue.lock();
            if let Next::Again(rest) = next {
                state.gaps.push_back(rest);
            }
        }
        state.in_flight = None;
        idle_since = Instant::now();
    }
    state.running = false;
}

/// Hands a find to the `backfill` thread, waiting while its channel is full. False
/// at shutdown (or when the thread is gone): the find is dropped and its page not
/// counted as read, so it stays below the saved positions and the next start reads
/// it again.
fn send(found: &Sender<Found>, mut item: Found, ctx: &FetchContext) -> bool {
    loop {
        match found.send_timeout(item, POLL) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(back)) => {
                if ctx.shutdown.is_set() {
                    return false;
                }
                item = back;
            }
        }
    }
}
