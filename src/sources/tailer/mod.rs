//! Tailing as a certificate source (`CT_SOURCE=logs` or `both`): every usable
//! log of the trusted list is read by a thread of its own (`tail-<n>`, `n` the
//! log's place in the list; `tail`), which polls the log's signed head, verifies
//! its signature with the list's key, reads every new entry in order and shows
//! the entries read to belong to that signed tree before its position moves.
//! Each matched certificate goes to the `backfill` thread's intake
//! (`detected_via` log). A slow, failing or rate-limiting log delays only its own
//! thread.
//!
//! The `backfill` thread owns the `Tailers`: every second it starts a thread for
//! each log that should be tailed and has none, and stops those of logs that
//! left the list (or whose final tree, read-only, has been read). Replicas on one
//! database split the logs: each writes its name every 10 s
//! (`certwatch_replicas`); of the replicas alive, the one whose rendezvous hash of
//! (replica, log) is highest reads a log, and only while it holds the log's lease
//! (`certwatch_log_leases`, 30 s, renewed every 10 s). A replica that stops is
//! out of the live set within 30 s and its leases run out: the others take its
//! logs over, from the verified positions it saved.

mod tail;

use crate::coverage::Coverage;
use crate::ctlog::client::ClientConfig;
use crate::ctlog::loglist::{Log, LogId, LogList, LogStatus};
use crate::matcher::WatchList;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sources::Found;
use crate::store::Store;
use arc_swap::ArcSwap;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a tailed log's signed head is asked for.
pub const POLL: Duration = Duration::from_secs(2);
/// How often a log with nothing more to come is asked: a temporal shard whose
/// interval is over, a read-only log whose final tree was read.
pub const POLL_IDLE: Duration = Duration::from_secs(600);

/// What every tail thread works with. No delivery handle: finds go to `found`.
pub struct TailContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub watch: Arc<ArcSwap<WatchList>>,
    pub coverage: Arc<Coverage>,
    pub client: ClientConfig,
    pub shutdown: Shutdown,
    pub found: Sender<Found>,
    /// Entries read at most in one catch-up after an outage (`BACKFILL_MAX_GAP`);
    /// the rest is logged with the command that reads it and counted abandoned.
    pub max_behind: u64,
    /// A log whose reading has not got through for this long is unreachable
    /// (`CT_LOG_UNREACHABLE_S`, 10 minutes): a WARN, `/healthz`.
    pub unreachable_after: Duration,
    /// The replicas alive (sorted names), refreshed by the `backfill` thread; empty
    /// until first read (then every log is this replica's).
    pub replicas: ArcSwap<Vec<String>>,
}

impl TailContext {
    /// Whether this replica is the one to read `log` among those alive: the
    /// highest rendezvous hash of (replica, log id) wins, so each replica's share
    /// stays put as others come and go.
    pub fn mine(&self, log: &LogId) -> bool {
        let replicas = self.replicas.load();
        let me = self.store.instance();
        let score = |replica: &str| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(replica.as_bytes());
            h.update([0u8]);
            h.update(log.0);
            let digest = h.finalize();
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        };
        match replicas.iter().max_by_key(|r| (score(r), r.as_str())) {
            Some(best) => best == me || !replicas.iter().any(|r| r == me),
            None => true,
        }
    }
}

/// How often the replicas alive are read (and this one's name written).
const REPLICAS_EVERY: Duration = Duration::from_secs(10);
/// A replica not heard from for this long is taken as gone.
const REPLICA_ALIVE: Duration = Duration::from_secs(30);

/// Whether and how often a log of the list is tailed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tailing {
    /// Pending, retired, rejected, or read-only with its final tree read.
    No,
    /// Read as entries come.
    Yes,
    /// A temporal shard whose interval is over: its head is asked rarely.
    Idle,
}

fn tailing(log: &Log, now_s: i64) -> Tailing {
    let state = log.state.map(|s| s.status);
    match state {
        None
        | Some(LogStatus::Usable)
        | Some(LogStatus::Qualified)
        | Some(LogStatus::ReadOnly { .. }) => {}
        _ => return Tailing::No,
    }
    match log.temporal_interval {
        Some(interval) if interval.end_exclusive <= now_s => Tailing::Idle,
        _ => Tailing::Yes,
    }
}

/// One running tail thread.
struct Running {
    thread: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

/// The tail threads (owned by the `backfill` thread).
pub struct Tailers {
    ctx: Arc<TailContext>,
    running: HashMap<LogId, Running>,
    replicas_read: Option<std::time::Instant>,
}

impl Tailers {
    pub fn new(ctx: TailContext) -> Tailers {
        Tailers {
            ctx: Arc::new(ctx),
            running: HashMap::new(),
            replicas_read: None,
        }
    }

    /// Starts a thread for each log of `list` to tail that has none; stops the
    /// threads of logs the list no longer names (or no longer tails).
    pub fn sync(&mut self, list: &LogList) {
        if self
            .replicas_read
            .is_none_or(|at| at.elapsed() >= REPLICAS_EVERY)
        {
            self.replicas_read = Some(std::time::Instant::now());
            match self.ctx.store.replicas_alive(REPLICA_ALIVE) {
                Ok(alive) => self.ctx.replicas.store(Arc::new(alive)),
                Err(e) => log::debug!("replicas alive not read (the last known stand): {e}"),
            }
        }
        let now_s = crate::clock::unix_now();
        let ended: Vec<LogId> = self
            .running
            .iter()
            .filter(|(_, r)| r.thread.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            if let Some(r) = self.running.remove(&id) {
                let _ = r.thread.join();
            }
        }
        for (id, running) in &self.running {
            let keep = list
                .get(id)
                .is_some_and(|log| tailing(log, now_s) != Tailing::No);
            if !keep {
                running.stop.store(true, Ordering::SeqCst);
            }
        }
        for (n, log) in list.logs().iter().enumerate() {
            let how = tailing(log, now_s);
            if how == Tailing::No || self.running.contains_key(&log.id) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (ctx, log_for_thread, stop_for_thread) =
                (self.ctx.clone(), log.clone(), stop.clone());
            let poll = if how == Tailing::Idle {
                POLL_IDLE
            } else {
                POLL
            };
            let spawned = std::thread::Builder::new()
                .name(format!("tail-{n}"))
                .spawn(move || tail::run(&ctx, log_for_thread, poll, &stop_for_thread));
            match spawned {
                Ok(thread) => {
                    self.running.insert(log.id, Running { thread, stop });
                }
                Err(e) => log::warn!("CT log tail thread not started ({e}); tried again in 1 s"),
            }
        }
    }

    /// Asks every thread to stop (they see shutdown too; this does not wait), and
    /// leaves the replicas alive, so the others take this one's logs at once.
    pub fn stop_all(&self) {
        for running in self.running.values() {
            running.stop.store(true, Ordering::SeqCst);
        }
        if let Err(e) = self.ctx.store.leave_replicas() {
            log::debug!("replicas table not updated at shutdown: {e}");
        }
    }
}
