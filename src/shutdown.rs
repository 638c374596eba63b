//! Shutdown: the token every stage watches, and the signal thread that fires it.
//!
//! `Shutdown` is a flag (for blocking I/O loops that poll) plus a channel that is
//! closed when the flag is set (for `select!` loops). The `signal` thread turns
//! SIGTERM/SIGINT into `ShutdownTrigger::trigger`, and SIGHUP into a reload request
//! (`Shutdown::reloads`: the timer re-reads the watch list and inventory at once;
//! `Shutdown::reload_count`: the `backfill` thread re-reads the CT log list);
//! tests call both directly.

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The watching half: cheap to clone, one per stage. The pipeline also fires it
/// (`Shutdown::trigger`) when a stage dies.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    closed: Receiver<()>,
    reload: Receiver<()>,
    set_at: Arc<Mutex<Option<Instant>>>,
    sender: Arc<Mutex<Option<Sender<()>>>>,
    reloads_asked: Arc<std::sync::atomic::AtomicU64>,
}

/// The firing half. Triggering twice is harmless.
#[derive(Clone)]
pub struct ShutdownTrigger {
    flag: Arc<AtomicBool>,
    reload: Sender<()>,
    sender: Arc<Mutex<Option<Sender<()>>>>,
    set_at: Arc<Mutex<Option<Instant>>>,
    reloads_asked: Arc<std::sync::atomic::AtomicU64>,
}

/// A fresh, unfired shutdown token and its trigger.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let flag = Arc::new(AtomicBool::new(false));
    let (sender, closed) = crossbeam_channel::bounded(0);
    // One pending reload is enough: several SIGHUPs before the timer wakes are one.
    let (reload_tx, reload) = crossbeam_channel::bounded(1);
    let set_at = Arc::new(Mutex::new(None));
    let sender = Arc::new(Mutex::new(Some(sender)));
    let reloads_asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    (
        ShutdownTrigger {
            flag: flag.clone(),
            reload: reload_tx,
            sender: sender.clone(),
            set_at: set_at.clone(),
            reloads_asked: reloads_asked.clone(),
        },
        Shutdown {
            flag,
            closed,
            reload,
            set_at,
            sender,
            reloads_asked,
        },
    )
}

/// Sets the flag and closes the channel, waking every `recv` on it.
fn fire(set_at: &Mutex<Option<Instant>>, flag: &AtomicBool, sender: &Mutex<Option<Sender<()>>>) {
    set_at
        .lock()
        .expect("shutdown lock poisoned")
        .get_or_insert_with(Instant::now);
    flag.store(true, Ordering::SeqCst);
    sender.lock().expect("shutdown lock poisoned").take();
}

impl ShutdownTrigger {
    /// Sets the flag and closes the channel, waking every `recv` on it.
    pub fn trigger(&self) {
        fire(&self.set_at, &self.flag, &self.sender);
    }

    /// Asks for the watch list and inventory to be re-read now (SIGHUP).
    pub fn reload(&self) {
        self.reloads_asked.fetch_add(1, Ordering::SeqCst);
        let _ = self.reload.try_send(());
    }

    /// Spawns the `signal` thread: the first SIGTERM or SIGINT triggers shutdown;
    /// each SIGHUP asks for a reload (it never stops the process).
    pub fn on_signals(self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        std::thread::Builder::new()
            .name("signal".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        log::info!("received SIGHUP: re-reading the watch list and inventory now");
                        self.reload();
                        continue;
                    }
                    log::info!("received signal {signal}, shutting down");
                    self.trigger();
                    break;
                }
            })?;
        Ok(())
    }
}

impl Shutdown {
    /// How many reloads (SIGHUP) were asked for so far: a stage that polls
    /// compares it with the count it last acted on.
    pub fn reload_count(&self) -> u64 {
        self.reloads_asked.load(Ordering::SeqCst)
    }

    /// Fires the shutdown from within (a stage died): as `ShutdownTrigger::trigger`.
    pub(crate) fn trigger(&self) {
        fire(&self.set_at, &self.flag, &self.sender);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Time since shutdown was triggered (zero if it was not).
    pub fn elapsed_since_set(&self) -> Duration {
        self.set_at
            .lock()
            .expect("shutdown lock poisoned")
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// A message for each reload request (SIGHUP); for `select!`.
    pub fn reloads(&self) -> &Receiver<()> {
        &self.reload
    }

    /// Closed (every `recv` returns `Err`) once shutdown is triggered; for `select!`.
    pub fn channel(&self) -> &Receiver<()> {
        &self.closed
    }

    /// Sleeps up to `timeout`; returns true as soon as shutdown is triggered.
    pub fn sleep(&self, timeout: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        let _ = self.closed.recv_timeout(timeout);
        self.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_sleepers_and_sets_the_flag() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_set());
        assert!(!shutdown.sleep(Duration::from_millis(10)));
        let waiter = shutdown.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            assert!(waiter.sleep(Duration::from_secs(10)));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        trigger.trigger();
        trigger.trigger();
        assert!(handle.join().unwrap() < Duration::from_secs(5));
        assert!(shutdown.is_set());
        assert!(shutdown.channel().recv().is_err());
    }
}
