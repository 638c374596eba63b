//! The worker pool: `worker-N` threads that take raw frames from the feed in
//! batches, `peek` each, match the leaf's names against the current watch list,
//! and for a match parse the certificate in full (leniently: a matched
//! certificate is never skipped; `certwatch_ct_lenient_certificates_total`
//! counts what that took) and hand it over to classification
//! (`sources::Intake::hand_over`, `detected_via` feed).
//!
//! Owns the feed → workers channel's message (`Batch` of `Frame`s) and the
//! `QueueBudget` that bounds it in frames and bytes.
//!
//! Coverage: each certificate message's `source.url` and `cert_index` (and the CT
//! timestamp where the server gives one) go to the worker's own
//! `coverage::FeedRecorder`, flushed once per batch (so before the worker blocks on
//! an empty queue); a URL the trusted list does not name is only counted
//! (`certwatch_ct_unknown_log_messages_total`) and logged once: it never causes a
//! request.

use super::message::{MessageKind, Peek};
use super::{parse, peek};
use crate::alert::DetectedVia;
use crate::cert::Leniency;
use crate::clock::{unix_now, unix_now_ms};
use crate::coverage::{At, Coverage, FeedRecorder};
use crate::ctlog::loglist::LogList;
use crate::sources::{Intake, MatchScratch, matched_names};
use crossbeam_channel::Receiver;
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
    scratch: MatchScratch,
    recorder: FeedRecorder,
}

/// A worker: runs until the feed drops its sender and the queue is drained.
pub fn run_worker(
    intake: Intake,
    batches: Receiver<Batch>,
    budget: Arc<QueueBudget>,
    coverage: Arc<Coverage>,
) {
    let cls = intake.cls.clone();
    let mut state = WorkerState {
        by_kind: MessageKind::ALL
            .iter()
            .map(|k| cls.metrics.ct_message(*k))
            .collect(),
        scratch: MatchScratch::default(),
        recorder: coverage.feed_recorder(),
    };
    for batch in batches {
        let logs = coverage.logs();
        let at = At {
            instant: Instant::now(),
            unix_ms: unix_now_ms(),
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
            match handle_frame(&intake, &mut state, text, (logs.as_deref(), at), now) {
                Some(kind) => by_kind[kind.index()] += 1,
                None => parse_errors += 1,
            }
        }
        // Once per batch, and so before the next `recv` can block.
        let unknown = state.recorder.flush();
        if unknown > 0 {
            cls.metrics.ct_unknown_log_messages.inc_by(unknown);
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

/// Handles one message (its batch's list and time in `position`); returns its
/// kind, or `None` when it is malformed.
fn handle_frame(
    intake: &Intake,
    state: &mut WorkerState,
    text: &str,
    (logs, at): (Option<&LogList>, At),
    now: i64,
) -> Option<MessageKind> {
    let peeked = match peek(text) {
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
        deduplicating_server,
    } = peeked
    {
        state.recorder.note_dialect(deduplicating_server);
        if let (Some(list), Some(url), Some(index)) = (logs, &source_url, cert_index) {
            state.recorder.record(list, url, index, timestamp_ms, at);
        }
        match_names(intake, state, text, &all_domains, now);
    }
    Some(kind)
}

/// Matches a certificate's names and, for a match, parses it in full and hands
/// it over to classification. Every name is matched; the work is linear in the
/// number of names (hash-based de-duplication), and what an alert keeps is
/// capped at `cert::MAX_NAMES` names, the matched ones first.
fn match_names(
    intake: &Intake,
    state: &mut WorkerState,
    text: &str,
    all_domains: &[std::borrow::Cow<'_, str>],
    now: i64,
) {
    let cls = &intake.cls;
    let watch = cls.watch.load();
    let Some(matched) = matched_names(&watch, all_domains, &mut state.scratch) else {
        return;
    };
    let (cert, lenient) = parse::parse_matched(text, &matched.sans);
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
    let matches = matched.matches(&watch, &state.scratch);
    intake.hand_over(cert, matches, DetectedVia::Feed, now);
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
