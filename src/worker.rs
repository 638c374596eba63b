//! The worker pool: `worker-N` threads that take raw frames from the feed in
//! batches, `peek` each, match the leaf's names against the current watch list,
//! and for a match parse the certificate in full and hand it to
//! `Classifier::consider`. What has to wait out its grace period goes to the
//! `grace` thread; an alert the database could not take goes to its held buffer.
//!
//! Owns the feed → workers channel's message (`Batch` of `Frame`s) and the
//! `QueueBudget` that bounds it in frames and bytes.

use crate::certstream::{self, MessageKind, Peek};
use crate::classify::{Classifier, Next};
use crate::grace::{HeldAlerts, Pending};
use crate::matcher::EntryId;
use crate::threads::unix_now;
use crossbeam_channel::{Receiver, Sender};
use prometheus::IntCounter;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

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

/// Per-worker cached metric handles and reusable buffers.
struct WorkerState {
    /// By `MessageKind::index`.
    by_kind: Vec<IntCounter>,
    ids: Vec<EntryId>,
    name_ids: Vec<EntryId>,
}

/// A worker: runs until the feed drops its sender and the queue is drained.
pub fn run_worker(
    cls: Arc<Classifier>,
    batches: Receiver<Batch>,
    pending: Sender<Pending>,
    held: Arc<HeldAlerts>,
    budget: Arc<QueueBudget>,
) {
    let mut state = WorkerState {
        by_kind: MessageKind::ALL
            .iter()
            .map(|k| cls.metrics.ct_message(*k))
            .collect(),
        ids: Vec::new(),
        name_ids: Vec::new(),
    };
    for batch in batches {
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
            match handle_frame(&cls, &mut state, text, (&pending, &held), now) {
                Some(kind) => by_kind[kind.index()] += 1,
                None => parse_errors += 1,
            }
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
    if let Peek::Certificate { all_domains } = peeked {
        match_names(cls, state, text, &all_domains, (pending, held), now);
    }
    Some(kind)
}

/// Matches a certificate's names and, for a match, parses it in full and hands
/// it to classification.
fn match_names(
    cls: &Classifier,
    state: &mut WorkerState,
    text: &str,
    all_domains: &[std::borrow::Cow<'_, str>],
    (pending, held): (&Sender<Pending>, &HeldAlerts),
    now: i64,
) {
    let watch = cls.watch.load();
    state.ids.clear();
    let mut matched_sans: Vec<&str> = Vec::new();
    for name in all_domains {
        state.name_ids.clear();
        if watch.matches(name, &mut state.name_ids) {
            matched_sans.push(name);
            for id in &state.name_ids {
                if !state.ids.contains(id) {
                    state.ids.push(*id);
                }
            }
        }
    }
    if state.ids.is_empty() {
        return;
    }
    let cert = match certstream::parse_certificate(text) {
        Ok(cert) => cert,
        Err(e) => {
            cls.metrics.ct_parse_errors.inc();
            log::warn!("matched certificate could not be parsed, skipped: {e}");
            return;
        }
    };
    let mut matched_entries: Vec<String> = state
        .ids
        .iter()
        .map(|id| watch.entry(*id).to_string())
        .collect();
    matched_entries.sort();
    let mut matched_sans: Vec<String> = matched_sans.into_iter().map(str::to_string).collect();
    matched_sans.dedup();
    match cls.consider(cert, matched_entries, matched_sans, now) {
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
}
