//! Threads and health: `spawn_stage` names a pipeline thread and ties its
//! liveness to `Health`; `Health` holds the flags and times `/healthz` reports.
//!
//! No thread of its own: runs on the callers' threads. Written by every stage
//! (each its own fields), read by the http thread.
//! The alive flag is cleared by `StageEnd`'s `Drop`, which also runs on panic, so a
//! dead stage turns `/healthz` into 503 without any `catch_unwind`.

use crossbeam_channel::Sender;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// What `/healthz` reports. Lock-free except the stage list, which is only
/// locked at spawn and when `/healthz` is read.
#[derive(Default)]
pub struct Health {
    stages: Mutex<Vec<(String, Arc<AtomicBool>)>>,
    pub ws_connected: AtomicBool,
    /// Unix seconds of the last `certificate_update`; 0 before the first.
    pub last_ct_event: AtomicI64,
    /// Unix seconds of the last frame of any kind; 0 before the first.
    pub last_frame: AtomicI64,
    pub db_reachable: AtomicBool,
    pub watch_entries: AtomicUsize,
    /// Set once the watch list has been loaded at least once.
    pub watch_loaded: AtomicBool,
    pub draining: AtomicBool,
    /// A trusted CT log list is loaded: gap tracking and backfill are on.
    pub coverage: AtomicBool,
    /// Listed logs the feed delivered entries of.
    pub logs_seen: AtomicUsize,
    /// Entries of listed logs missing and not yet settled, or waiting for backfill.
    pub open_gap_entries: AtomicI64,
    /// Listed logs behind by more than `coverage::gaps::LAGGING_AFTER`, or silent that long
    /// while the feed delivers others (`coverage::gaps::LogStats::lagging`).
    pub logs_lagging: AtomicUsize,
    /// Tailed logs whose last verification failed.
    pub logs_failing_verification: AtomicUsize,
    /// Listed usable logs the feed has not delivered for 10 minutes while it
    /// delivers others (`CT_SOURCE` certstream and both).
    pub logs_not_on_feed: AtomicUsize,
    /// Tailed logs of which nothing could be read for `CT_LOG_UNREACHABLE_S`
    /// (every attempt ended on a failed or refused request).
    pub logs_unreachable: AtomicUsize,
}

impl Health {
    /// Names of the stages that have exited.
    pub fn dead_stages(&self) -> Vec<String> {
        self.stages_alive(false)
    }

    /// Names of the stages still running.
    pub fn running_stages(&self) -> Vec<String> {
        self.stages_alive(true)
    }

    fn stages_alive(&self, alive: bool) -> Vec<String> {
        let stages = self.stages.lock().expect("health lock poisoned");
        stages
            .iter()
            .filter(|(_, flag)| flag.load(Ordering::SeqCst) == alive)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn register(&self, name: &str) -> Arc<AtomicBool> {
        let alive = Arc::new(AtomicBool::new(true));
        self.stages
            .lock()
            .expect("health lock poisoned")
            .push((name.to_string(), alive.clone()));
        alive
    }
}

/// Clears the alive flag and reports on the `done` channel when the thread ends,
/// normally or by panic.
struct StageEnd {
    name: String,
    alive: Arc<AtomicBool>,
    done: Sender<String>,
}

impl Drop for StageEnd {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        if std::thread::panicking() {
            log::error!("thread {} panicked", self.name);
        } else {
            log::debug!("thread {} finished", self.name);
        }
        let _ = self.done.send(self.name.clone());
    }
}

/// Spawns a named pipeline thread registered in `health`; its end (or panic) is
/// reported on `done` with its name.
pub fn spawn_stage<F>(name: &str, health: &Health, done: &Sender<String>, f: F) -> JoinHandle<()>
where
    F: FnOnce() + Send + 'static,
{
    let end = StageEnd {
        name: name.to_string(),
        alive: health.register(name),
        done: done.clone(),
    };
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _end = end;
            inject_panic(&_end.name);
            f();
        })
        .unwrap_or_else(|e| panic!("cannot spawn thread {name}: {e}"))
}

/// Debug builds only (the tests run them): `CERTWATCH_TEST_PANIC_STAGE=<name>`
/// panics the stage of that name as it starts, so the tests can see what the
/// process does when a stage dies. Release builds never read it.
fn inject_panic(name: &str) {
    if cfg!(debug_assertions)
        && std::env::var("CERTWATCH_TEST_PANIC_STAGE").is_ok_and(|stage| stage == name)
    {
        panic!("injected panic in {name} (CERTWATCH_TEST_PANIC_STAGE)");
    }
}

/// Items held until a due time, taken out in due order: the grace thread's
/// delay queue and the deliver thread's retries. Owned by one thread.
pub struct DelayQueue<T> {
    order: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, T>,
    next: u64,
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue {
            order: BinaryHeap::new(),
            items: HashMap::new(),
            next: 0,
        }
    }
}

impl<T> DelayQueue<T> {
    pub fn push(&mut self, due: Instant, item: T) {
        self.order.push(Reverse((due, self.next)));
        self.items.insert(self.next, item);
        self.next += 1;
    }

    /// A channel that fires at the earliest due time (never when empty), for `select!`.
    pub fn timer(&self) -> crossbeam_channel::Receiver<Instant> {
        match self.order.peek() {
            Some(Reverse((due, _))) => crossbeam_channel::at(*due),
            None => crossbeam_channel::never(),
        }
    }

    /// The next item due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        while let Some(Reverse((due, id))) = self.order.peek().copied() {
            if due > now {
                return None;
            }
            self.order.pop();
            if let Some(item) = self.items.remove(&id) {
                return Some(item);
            }
        }
        None
    }

    /// Takes out everything, in due order.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.items.len());
        while let Some(Reverse((_, id))) = self.order.pop() {
            out.extend(self.items.remove(&id));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn delay_queue_releases_in_due_order() {
        let now = Instant::now();
        let mut q = DelayQueue::default();
        q.push(now + Duration::from_secs(2), "late");
        q.push(now, "first");
        q.push(now + Duration::from_secs(1), "second");
        assert_eq!(q.pop_due(now), Some("first"));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(q.pop_due(now + Duration::from_secs(1)), Some("second"));
        assert_eq!(q.len(), 1);
        assert_eq!(q.drain(), vec!["late"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_panicking_stage_is_reported_dead() {
        let health = Arc::new(Health::default());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let ok = spawn_stage("ok", &health, &done_tx, || {});
        assert_eq!(done_rx.recv().unwrap(), "ok");
        ok.join().unwrap();
        assert_eq!(health.dead_stages(), vec!["ok".to_string()]);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let health2 = Arc::new(Health::default());
        let bad = spawn_stage("bad", &health2, &done_tx, move || {
            let _ = release_rx.recv();
            panic!("boom");
        });
        assert!(health2.dead_stages().is_empty());
        drop(release_tx);
        assert_eq!(done_rx.recv().unwrap(), "bad");
        assert!(bad.join().is_err());
        assert_eq!(health2.dead_stages(), vec!["bad".to_string()]);
    }
}
