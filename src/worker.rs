//! The worker pool: `worker-N` threads that take raw frames from the feed in
//! batches, `peek` each, match the leaf's names against the current watch list,
//! and for a match parse the certificate in full (leniently: a matched
//! certificate is never skipped; `certwatch_ct_lenient_certificates_total`
//! counts what that took) and hand it to `Classifier::consider`. What has to wait out its grace period goes to the
//! `grace` thread; an alert the database could not take goes to its held buffer.
//!
//! Owns the feed → workers channel's message (`Batch` of `Frame`s) and the
//! `QueueBudget` that bounds it in frames and bytes.

use crate::certstream::{self, Leniency, MessageKind, Peek};
use crate::classify::{Classifier, Next};
use crate::grace::{HeldAlerts, Pending};
use crate::matcher::{EntryId, WatchList};
use crate::threads::unix_now;
use crossbeam_channel::{Receiver, Sender};
use prometheus::IntCounter;
use std::collections::HashSet;
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
    if let Peek::Certificate { all_domains, .. } = peeked {
        match_names(cls, state, text, &all_domains, (pending, held), now);
    }
    Some(kind)
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
    let Some(matched) = matched_names(&watch, all_domains, state) else {
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
    let mut matched_entries: Vec<String> = state
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

/// The names of a certificate that matched the watch list.
struct Matched<'n> {
    /// Distinct, in feed order.
    sans: Vec<&'n str>,
}

/// Matches every name against the watch list; leaves the distinct ids of the
/// entries matched in `state.ids` (sorted). `None` when nothing matched.
fn matched_names<'n>(
    watch: &WatchList,
    all_domains: &'n [std::borrow::Cow<'_, str>],
    state: &mut WorkerState,
) -> Option<Matched<'n>> {
    state.ids.clear();
    let mut sans: Vec<&'n str> = Vec::new();
    for name in all_domains {
        state.name_ids.clear();
        if watch.matches(name, &mut state.name_ids) {
            sans.push(name);
            state.ids.extend_from_slice(&state.name_ids);
        }
    }
    if state.ids.is_empty() {
        return None;
    }
    state.ids.sort_unstable();
    state.ids.dedup();
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

    fn state() -> WorkerState {
        WorkerState {
            by_kind: Vec::new(),
            ids: Vec::new(),
            name_ids: Vec::new(),
        }
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
