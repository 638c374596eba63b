//! One log, tailed: the loop of a `tail-<n>` thread. It holds the log's lease,
//! polls its signed head (signature verified with the list's key; a smaller head
//! or a second root for one size is a verification failure), reads the entries
//! after its position in order (RFC 6962 `get-entries` pages in the batch size the
//! log returns; static-ct full data tiles, the partial tile at the right edge once
//! the position has waited `PARTIAL_WAIT` on it), pushes each entry's leaf hash
//! into its compact range and hands each match on, and moves its position only
//! once the entries read are shown to belong to the signed tree: their range's
//! root is the head's root, or (having stopped short of the head) a consistency
//! proof (RFC 6962) or the log's hash tiles (static-ct) tie it to that root. The
//! verified position and its compact range are saved in Postgres.
//!
//! First sight of a log starts at its current head: the frontier there comes from
//! the inclusion proof of the head's last leaf (RFC 6962 `get-proof-by-hash`) or
//! from the hash tiles (static-ct), checked against the signed root. A failed
//! verification never drops a certificate (what was read was handed on), never
//! moves the position (reading starts again from it after `FAILURE_WAIT`), and is
//! loud: an ERROR line, `certwatch_ct_log_verification_failures_total`, and the
//! log counted in `/healthz` `coverage.logs_failing_verification` until its next
//! success.

use super::TailContext;
use crate::alert::DetectedVia;
use crate::coverage::list::log_label;
use crate::ctlog::LogKind;
use crate::ctlog::client::{ClientError, LogClient};
use crate::ctlog::entry::{self, LogSource, PageEntry};
use crate::ctlog::loglist::{Log, LogStatus};
use crate::ctlog::merkle::{self, CompactRange};
use crate::ctlog::tiles::{self, DataTile};
use crate::ctlog::tree_head::{LogKey, TreeHead};
use crate::metrics::{BackfillOutcome, LogRequest, VerifyFailure};
use crate::sources::{Found, MatchScratch, matched_names};
use crate::store::LogFrontier;
use crossbeam_channel::SendTimeoutError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A lease on a log: another replica takes it once it is not renewed for this long.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a held lease is renewed (and a taken one asked for again).
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How long the position may wait on a partial data tile before it is read.
pub const PARTIAL_WAIT: Duration = Duration::from_secs(6);
/// Reading stops after this long to verify what it read and look at the head again.
const READ_BUDGET: Duration = Duration::from_secs(20);
/// How long after a verification failure the log is read again.
const FAILURE_WAIT: Duration = Duration::from_secs(30);
/// How long after a request failure the log is asked again (doubling to 5 min).
const ERROR_WAIT: Duration = Duration::from_secs(5);
/// The verified position is saved at most this often (and when the thread ends).
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Entries asked per `get-entries` request (the log may return fewer).
const PAGE: u64 = 256;
/// Least time between the starts of two requests to one tailed log (one is in
/// flight at a time): 20 a second at most, so that a log taking 500 entries a
/// second and answering 32 a request is kept up with. The operator's budget
/// (shared by its logs) applies too.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// One verification failure of a log is logged at most this often per reason.
const FAILURE_NOTE: Duration = Duration::from_secs(600);
/// How often a waiting thread looks at shutdown and its stop flag.
const TICK: Duration = Duration::from_millis(200);
/// While a log stays unreachable, the WARN is repeated this often.
const UNREACHABLE_NOTE: Duration = Duration::from_secs(3600);

/// Whether a log's reading gets through: since when every cycle has ended on a
/// request that failed, was refused, or gave a body that does not decode (its
/// head may answer while its entries do not), and when that was last said in a
/// WARN. Past `after` (`CT_LOG_UNREACHABLE_S`) the log is unreachable: a WARN,
/// and `/healthz` `coverage.logs_unreachable` until a cycle gets through.
#[derive(Debug)]
struct Answers {
    after: Duration,
    failing_since: Option<Instant>,
    said: Option<Instant>,
}

impl Answers {
    fn new(after: Duration) -> Answers {
        Answers {
            after,
            failing_since: None,
            said: None,
        }
    }

    /// A request failed at `now`: `Some(how long it has failed)` when a WARN is due.
    fn failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.failing_since.get_or_insert(now);
        let failing = now.saturating_duration_since(since);
        let due = failing >= self.after
            && self
                .said
                .is_none_or(|said| now.saturating_duration_since(said) >= UNREACHABLE_NOTE);
        if due {
            self.said = Some(now);
        }
        due.then_some(failing)
    }

    /// A cycle got through at `now`: `Some(how long it had failed)` when the log
    /// had been said unreachable.
    fn answered(&mut self, now: Instant) -> Option<Duration> {
        let since = self.failing_since.take();
        self.said
            .take()
            .and(since)
            .map(|since| now.saturating_duration_since(since))
    }
}

/// Where reading stands: what is verified, and what was read beyond it.
#[derive(Clone, Debug)]
struct Position {
    /// The range of the entries read and verified.
    verified: CompactRange,
    /// The signed head they were verified against.
    head: TreeHead,
    /// The range of every entry read (`verified` plus what is not verified yet).
    read: CompactRange,
}

/// Why a cycle stopped.
enum Stop {
    /// Shutdown, the stop flag, or the lease lost: end or wait.
    Interrupted,
    /// The log refused or failed; asked again after the wait.
    Wait(Duration),
    /// Verification failed (logged and counted): read again after `FAILURE_WAIT`.
    Failed,
}

struct LogTail<'c> {
    ctx: &'c TailContext,
    log: Log,
    label: String,
    key: LogKey,
    client: LogClient,
    stop: &'c AtomicBool,
    position: Option<Position>,
    scratch: MatchScratch,
    /// The newest head whose signature verified (to catch a second root for one size).
    newest: Option<TreeHead>,
    /// Since when the position waits on a partial data tile.
    partial_since: Option<(u64, Instant)>,
    /// Found more than `max_behind` behind: where this catch-up stops reading
    /// (the rest up to the head is abandoned).
    catch_up_end: Option<u64>,
    saved: Instant,
    saved_size: Option<u64>,
    error_wait: Duration,
    failure_said: Vec<(VerifyFailure, Instant)>,
    answers: Answers,
}

/// The tail thread of `log`: runs until shutdown or `stop`.
pub(super) fn run(ctx: &TailContext, log: Log, poll: Duration, stop: &AtomicBool) {
    let label = log_label(&log).to_string();
    let key = match LogKey::from_spki(&log.key) {
        Ok(key) => key,
        Err(e) => {
            log::error!("CT log {label} cannot be tailed: {e}");
            return;
        }
    };
    let config = crate::ctlog::client::ClientConfig {
        min_interval: MIN_INTERVAL,
        ..ctx.client.clone()
    };
    let client = match LogClient::new(log.fetch_base(), log.kind(), &config) {
        Ok(client) => client.with_operator(&log.operator, &config),
        Err(e) => {
            log::error!("CT log {label} cannot be tailed: {e}");
            return;
        }
    };
    let mut tail = LogTail {
        ctx,
        label,
        key,
        client,
        stop,
        position: None,
        scratch: MatchScratch::default(),
        newest: None,
        partial_since: None,
        catch_up_end: None,
        saved: Instant::now(),
        saved_size: None,
        error_wait: ERROR_WAIT,
        failure_said: Vec::new(),
        answers: Answers::new(ctx.unreachable_after),
        log,
    };
    tail.run(poll);
}

impl LogTail<'_> {
    fn stopping(&self) -> bool {
        self.ctx.shutdown.is_set() || self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `wait`; true when the thread is to end.
    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.stopping() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.ctx.shutdown.sleep(left.min(TICK));
        }
    }

    fn run(&mut self, poll: Duration) {
        let log_id = self.log.id.to_base64();
        let mut lease_at: Option<Instant> = None;
        self.resume();
        while !self.stopping() {
            // Another replica alive is the one to read this log: let it have it.
            if !self.ctx.mine(&self.log.id) {
                if lease_at.take().is_some() {
                    log::info!(
                        "CT log {} is another replica's share now; handing it over",
                        self.label
                    );
                    self.save(true);
                    self.position = None;
                    let _ = self.ctx.store.release_lease(&log_id);
                }
                if self.sleep(LEASE_RENEW) {
                    break;
                }
                continue;
            }
            if lease_at.is_none_or(|at| at.elapsed() >= LEASE_RENEW) {
                match self.ctx.store.take_lease(&log_id, LEASE) {
                    Ok(true) => {
                        if lease_at.is_none() {
                            log::info!("tailing CT log {}", self.label);
                            self.resume();
                        }
                        lease_at = Some(Instant::now());
                    }
                    Ok(false) => {
                        if lease_at.take().is_some() {
                            log::info!("CT log {} is tailed by another replica now", self.label);
                            self.save(true);
                            self.position = None;
                        }
                        if self.sleep(LEASE_RENEW) {
                            break;
                        }
                        continue;
                    }
                    // The database does not answer: tailing goes on (coverage first);
                    // the lease is asked for again at the next renewal.
                    Err(e) => {
                        log::debug!("CT log {}: lease not renewed: {e}", self.label);
                        lease_at = Some(Instant::now());
                    }
                }
            }
            let outcome = self.cycle();
            // A cycle that got through (a verification failure is an answer too,
            // flagged on its own) ends an outage; one that stopped on a request
            // was counted when the request failed.
            if matches!(outcome, Ok(_) | Err(Stop::Failed)) {
                self.answered();
            }
            let wait = match outcome {
                Ok(true) => Duration::ZERO,
                Ok(false) => poll,
                Err(Stop::Interrupted) => Duration::ZERO,
                Err(Stop::Wait(wait)) => wait,
                Err(Stop::Failed) => FAILURE_WAIT,
            };
            self.save(false);
            if !wait.is_zero() {
                crate::memory::release_freed();
            }
            if self.sleep(wait) {
                break;
            }
        }
        self.save(true);
        if lease_at.is_some() {
            let _ = self.ctx.store.release_lease(&log_id);
        }
    }

    /// Resumes from the verified position stored in Postgres, if any.
    fn resume(&mut self) {
        if self.position.is_some() {
            return;
        }
        let stored = match self.ctx.store.load_frontier(&self.log.id.to_base64()) {
            Ok(stored) => stored,
            Err(e) => {
                log::warn!(
                    "CT log {}: stored position not read ({e}); reading starts at its head",
                    self.label
                );
                None
            }
        };
        let Some(stored) = stored else {
            return;
        };
        let Some(range) = CompactRange::from_parts(stored.tree_size, stored.frontier) else {
            log::warn!(
                "CT log {}: stored position unusable; reading starts at its head",
                self.label
            );
            return;
        };
        if range.root() != stored.root_hash {
            log::warn!(
                "CT log {}: stored position does not hash to its root; reading starts at its head",
                self.label
            );
            return;
        }
        let head = TreeHead {
            tree_size: stored.tree_size,
            timestamp_ms: stored.head_timestamp_ms,
            root_hash: stored.root_hash,
        };
        log::info!(
            "CT log {}: resuming at entry {} (verified)",
            self.label,
            stored.tree_size
        );
        self.saved_size = Some(stored.tree_size);
        self.position = Some(Position {
            verified: range.clone(),
            head,
            read: range,
        });
    }

    /// Saves the verified position when it moved (at most every `SAVE_EVERY`,
    /// unless `now`).
    fn save(&mut self, now: bool) {
        let Some(position) = &self.position else {
            return;
        };
        let size = position.verified.size();
        if self.saved_size == Some(size) || (!now && self.saved.elapsed() < SAVE_EVERY) {
            return;
        }
        let row = LogFrontier {
            log_id: self.log.id.to_base64(),
            log_url: self.label.clone(),
            tree_size: size,
            root_hash: position.verified.root(),
            frontier: position.verified.hashes().to_vec(),
            head_timestamp_ms: position.head.timestamp_ms,
        };
        match self.ctx.store.save_frontier(&row) {
            Ok(()) => {
                self.saved = Instant::now();
                self.saved_size = Some(size);
            }
            Err(e) => log::debug!("CT log {}: position not saved: {e}", self.label),
        }
    }

    /// Counts a request's outcome and the bytes it read.
    fn counted<T>(&mut self, result: Result<T, ClientError>) -> Result<T, Stop> {
        let m = &self.ctx.metrics;
        let bytes = self.client.take_bytes();
        if bytes > 0 {
            m.ct_log_bytes
                .with_label_values(&[&self.label])
                .inc_by(bytes);
        }
        let outcome = match &result {
            Ok(_) => LogRequest::Ok,
            Err(ClientError::RateLimited { .. }) => LogRequest::RateLimited,
            Err(_) => LogRequest::Error,
        };
        m.ct_log_requests
            .with_label_values(&[&self.label, crate::metrics::Label::as_str(outcome)])
            .inc();
        match result {
            Ok(value) => {
                self.error_wait = ERROR_WAIT;
                Ok(value)
            }
            Err(ClientError::RateLimited { retry_after, .. }) => {
                self.unanswered(&format!(
                    "it refuses (rate limited for {} s)",
                    retry_after.as_secs()
                ));
                Err(Stop::Wait(retry_after))
            }
            Err(ClientError::Head(e)) => {
                self.fail(
                    VerifyFailure::Signature,
                    format!("its tree head does not verify with the list's key: {e}"),
                );
                Err(Stop::Failed)
            }
            Err(e) => Err(self.unusable(&e.to_string())),
        }
    }

    /// A request that gave nothing usable: logged (DEBUG), and asked again after
    /// the error wait, which doubles each time up to 5 minutes.
    fn unusable(&mut self, what: &str) -> Stop {
        let wait = self.error_wait;
        self.error_wait = (self.error_wait * 2).min(Duration::from_secs(300));
        log::debug!(
            "CT log {}: {what}; asked again in {} s",
            self.label,
            wait.as_secs()
        );
        self.unanswered(what);
        Stop::Wait(wait)
    }

    /// A request without a usable answer: once no cycle has got through for
    /// `CT_LOG_UNREACHABLE_S`, a WARN (repeated every `UNREACHABLE_NOTE`) and the
    /// log counted in `/healthz` `coverage.logs_unreachable`.
    fn unanswered(&mut self, what: &str) {
        let Some(failing) = self.answers.failed(Instant::now()) else {
            return;
        };
        let from = self.position.as_ref().map(|p| p.verified.size());
        log::warn!(
            "CT log {} has not been read for {} s, its requests failing (last: {what}): {}; \
             it is asked again at most 5 min apart",
            self.label,
            failing.as_secs(),
            match from {
                Some(n) => format!("its entries from {n} on are not read until it answers"),
                None => "it is not read until it answers".to_string(),
            }
        );
        self.ctx
            .coverage
            .note_tail(self.log.id, |s| s.unreachable = true);
    }

    /// A cycle got through: a log said unreachable is said to answer again.
    fn answered(&mut self) {
        let Some(down) = self.answers.answered(Instant::now()) else {
            return;
        };
        log::info!(
            "CT log {} answers again, after {} s without",
            self.label,
            down.as_secs()
        );
        self.ctx
            .coverage
            .note_tail(self.log.id, |s| s.unreachable = false);
    }

    /// A verification failure: logged (at most every `FAILURE_NOTE` per reason),
    /// counted, the log marked failing, and reading set back to the verified
    /// position.
    fn fail(&mut self, reason: VerifyFailure, what: String) {
        let now = Instant::now();
        let said = self.failure_said.iter().position(|(r, _)| *r == reason);
        let due = said.is_none_or(|i| now.duration_since(self.failure_said[i].1) >= FAILURE_NOTE);
        if due {
            if let Some(i) = said {
                self.failure_said.remove(i);
            }
            self.failure_said.push((reason, now));
            log::error!(
                "CT log {} failed verification ({}): {what}; its position stays, what was read \
                 is alerted, and it is read again in {} s",
                self.label,
                crate::metrics::Label::as_str(reason),
                FAILURE_WAIT.as_secs()
            );
        }
        self.ctx
            .metrics
            .ct_log_verification_failures
            .with_label_values(&[&self.label, crate::metrics::Label::as_str(reason)])
            .inc();
        self.ctx
            .coverage
            .note_tail(self.log.id, |s| s.failing = true);
        if let Some(position) = &mut self.position {
            position.read = position.verified.clone();
        }
        self.partial_since = None;
    }

    /// A verified position: published, the failing mark cleared.
    fn verified(&mut self, range: CompactRange, head: TreeHead) {
        let size = range.size();
        self.ctx
            .metrics
            .ct_log_verified_size
            .with_label_values(&[&self.label])
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.ctx.coverage.note_tail(self.log.id, |s| {
            s.failing = false;
            s.verified = size;
        });
        let read = match &self.position {
            Some(p) if p.read.size() >= size => p.read.clone(),
            _ => range.clone(),
        };
        self.position = Some(Position {
            verified: range,
            head,
            read,
        });
    }

    /// One cycle: the head, then what it holds beyond the position. `Ok(true)` when
    /// more is waiting (read again at once), `Ok(false)` when caught up.
    fn cycle(&mut self) -> Result<bool, Stop> {
        let head = {
            let result = self.client.tree_head(&self.key);
            self.counted(result)?
        };
        self.check_head(&head)?;
        self.ctx
            .metrics
            .ct_log_head_size
            .with_label_values(&[&self.label])
            .set(i64::try_from(head.tree_size).unwrap_or(i64::MAX));
        self.ctx
            .coverage
            .note_tail(self.log.id, |s| s.head = head.tree_size);
        if self.position.is_none() {
            self.start_at(&head)?;
            return Ok(false);
        }
        let final_size = match self.log.state.map(|s| s.status) {
            Some(LogStatus::ReadOnly { final_tree_size }) => Some(final_tree_size),
            _ => None,
        };
        let target = final_size.map_or(head.tree_size, |f| head.tree_size.min(f));
        let read_size = self.position.as_ref().expect("set above").read.size();
        if target <= read_size {
            return Ok(false);
        }
        if self.catch_up_end.is_none() && target - read_size > self.ctx.max_behind {
            self.catch_up_end = Some(read_size + self.ctx.max_behind);
        }
        let end = self.catch_up_end.map_or(target, |e| e.min(target));
        let more = self.read_to(end, &head)?;
        self.verify(&head)?;
        if let Some(catch_up) = self.catch_up_end
            && self
                .position
                .as_ref()
                .is_some_and(|p| p.read.size() >= catch_up)
        {
            self.catch_up_end = None;
            self.abandon_to(&head)?;
        }
        Ok(more)
    }

    /// A smaller head than one verified, or a second root for a size, fails.
    fn check_head(&mut self, head: &TreeHead) -> Result<(), Stop> {
        let verified = self.position.as_ref().map(|p| p.head);
        for seen in [verified, self.newest].into_iter().flatten() {
            if head.tree_size < seen.tree_size {
                self.fail(
                    VerifyFailure::Shrink,
                    format!(
                        "its signed head shrank from {} to {} entries",
                        seen.tree_size, head.tree_size
                    ),
                );
                return Err(Stop::Failed);
            }
            if head.tree_size == seen.tree_size && head.root_hash != seen.root_hash {
                self.fail(
                    VerifyFailure::SplitView,
                    format!("two signed roots for a tree of {} entries", head.tree_size),
                );
                return Err(Stop::Failed);
            }
        }
        if self.newest.is_none_or(|n| head.tree_size >= n.tree_size) {
            self.newest = Some(*head);
        }
        Ok(())
    }

    /// The frontier at `head` from the log ([`Self::frontier_at`]), failed as a
    /// `Proof` failure unless it hashes to the signed root.
    fn checked_frontier(&mut self, head: &TreeHead) -> Result<CompactRange, Stop> {
        let range = self.frontier_at(head)?;
        if range.root() != head.root_hash {
            self.fail(
                VerifyFailure::Proof,
                format!(
                    "the frontier it gives for {} entries does not hash to its signed root",
                    head.tree_size
                ),
            );
            return Err(Stop::Failed);
        }
        Ok(range)
    }

    /// First sight: the frontier at the head, from the log, checked against the
    /// signed root.
    fn start_at(&mut self, head: &TreeHead) -> Result<(), Stop> {
        let range = self.checked_frontier(head)?;
        log::info!(
            "CT log {}: reading starts at its head, entry {}",
            self.label,
            head.tree_size
        );
        self.verified(range, *head);
        Ok(())
    }

    /// The frontier of the tree of `head.tree_size` as the log gives it (unchecked).
    fn frontier_at(&mut self, head: &TreeHead) -> Result<CompactRange, Stop> {
        let size = head.tree_size;
        if size == 0 {
            return Ok(CompactRange::new());
        }
        match self.log.kind() {
            LogKind::Rfc6962 => {
                let body = {
                    let result = self.client.get_entries(size - 1, size - 1);
                    self.counted(result)?
                };
                let source = source_of(&self.log);
                let page = entry::page_from_get_entries(&body, size - 1, 1, &source)
                    .map_err(|e| self.proof_failure(format!("its last entry: {e}")))?;
                let Some(leaf) = page.first().and_then(|e| e.leaf_hash) else {
                    return Err(self.proof_failure("its last entry is unreadable".into()));
                };
                let (index, path) = {
                    let result = self.client.proof_by_hash(&leaf, size);
                    self.counted(result)?
                };
                if index != size - 1 {
                    return Err(self.proof_failure(format!(
                        "its last entry's proof is for index {index}, not {}",
                        size - 1
                    )));
                }
                CompactRange::from_last_leaf_proof(size, leaf, &path).ok_or_else(|| {
                    self.proof_failure("an inclusion proof of the wrong length".into())
                })
            }
            LogKind::Tiled => {
                let mut failed = None;
                let range = CompactRange::from_tiles(size, |tile| {
                    let result = self.client.hash_tile(tile);
                    match self.counted(result) {
                        Ok(hashes) => Ok(hashes),
                        Err(stop) => {
                            failed = Some(stop);
                            Err(())
                        }
                    }
                });
                match (range, failed) {
                    (Ok(Some(range)), _) => Ok(range),
                    (Ok(None), _) => Err(self.proof_failure("a hash tile too short".into())),
                    (Err(()), Some(stop)) => Err(stop),
                    (Err(()), None) => Err(Stop::Wait(ERROR_WAIT)),
                }
            }
        }
    }

    fn proof_failure(&mut self, what: String) -> Stop {
        self.fail(VerifyFailure::Proof, what);
        Stop::Failed
    }

    /// Reads the entries from the position to `end` (within `head`), page by page,
    /// each page's matches handed on. `Ok(true)` when stopped short with more to
    /// read now (the time budget).
    fn read_to(&mut self, end: u64, head: &TreeHead) -> Result<bool, Stop> {
        let started = Instant::now();
        loop {
            if self.stopping() {
                return Err(Stop::Interrupted);
            }
            let at = self.position.as_ref().expect("reading").read.size();
            if at >= end {
                return Ok(false);
            }
            if started.elapsed() >= READ_BUDGET {
                return Ok(true);
            }
            let page = match self.log.kind() {
                LogKind::Rfc6962 => {
                    let last = end.min(at.saturating_add(PAGE)) - 1;
                    let (source, asked) = (source_of(&self.log), (last - at + 1) as usize);
                    // A body that does not decode is no answer (counted an error).
                    let result = self.client.get_entries(at, last).and_then(|body| {
                        entry::page_from_get_entries(&body, at, asked, &source)
                            .map_err(ClientError::Decode)
                    });
                    self.counted(result)?
                }
                LogKind::Tiled => {
                    let Some(tile) = self.next_tile(at, end, head.tree_size) else {
                        return Ok(false);
                    };
                    let body = {
                        let result = self.client.data_tile(tile);
                        self.counted(result)?
                    };
                    let source = source_of(&self.log);
                    let page =
                        entry::page_from_tile(&body.body, body.tile, &source).map_err(|e| {
                            self.proof_failure(format!("data tile {}: {e}", body.tile.path()))
                        })?;
                    // A tile read before in part: its first entries are behind.
                    let skip = (at - body.tile.start()) as usize;
                    page.into_iter()
                        .skip(skip)
                        .take((end.min(body.tile.end()) - at) as usize)
                        .collect()
                }
            };
            if page.is_empty() {
                return Err(self.unusable(&format!("no entry from {at} within its signed head")));
            }
            self.take_page(at, page)?;
        }
    }

    /// The next data tile to read from `at` toward `end`, at `tree_size`: the full
    /// tile, or the partial one at the right edge once the position has waited on
    /// it `PARTIAL_WAIT`; `None` while it waits.
    fn next_tile(&mut self, at: u64, end: u64, tree_size: u64) -> Option<DataTile> {
        let tile = tiles::data_tiles(at..end, tree_size).next()?;
        if !tile.is_partial() {
            self.partial_since = None;
            return Some(tile);
        }
        let now = Instant::now();
        match self.partial_since {
            Some((since_at, since)) if since_at == at => {
                (now.duration_since(since) >= PARTIAL_WAIT).then_some(tile)
            }
            _ => {
                self.partial_since = Some((at, now));
                None
            }
        }
    }

    /// Pushes a page's leaf hashes into the read range and hands its matches on.
    fn take_page(&mut self, at: u64, page: Vec<PageEntry>) -> Result<(), Stop> {
        let watch = self.ctx.watch.load();
        let mut newest_ms: Option<i64> = None;
        let mut undecodable = 0u64;
        let mut finds = Vec::new();
        for (index, entry) in (at..).zip(page) {
            let Some(leaf) = entry.leaf_hash else {
                return Err(self.proof_failure(format!("entry {index} is not base64")));
            };
            self.position.as_mut().expect("reading").read.push(leaf);
            let cert = match entry.cert {
                Ok(cert) => cert,
                Err(e) => {
                    undecodable += 1;
                    log::debug!("CT log {} entry {index}: {e}", self.label);
                    continue;
                }
            };
            newest_ms = newest_ms.max(cert.source_timestamp_ms);
            let Some(matched) = matched_names(&watch, cert.names(), &mut self.scratch) else {
                continue;
            };
            let matches = matched.matches(&watch, &self.scratch);
            drop(matched);
            log::info!(
                "tail: CT log {} entry {index} matches {:?}",
                self.label,
                matches.names.iter().take(3).collect::<Vec<_>>()
            );
            finds.push(Found {
                cert: cert.into_certificate(&matches.names),
                matches,
                via: DetectedVia::Log,
            });
        }
        if undecodable > 0 {
            self.ctx
                .metrics
                .backfill(&self.label, BackfillOutcome::Failed, undecodable);
        }
        if let Some(ms) = newest_ms {
            self.ctx.coverage.note_tail(self.log.id, |s| {
                s.newest_ms = s.newest_ms.max(Some(ms));
            });
        }
        for found in finds {
            if !self.send(found) {
                return Err(Stop::Interrupted);
            }
        }
        Ok(())
    }

    /// Hands a find to the `backfill` thread, waiting while its channel is full;
    /// false at shutdown (the position was not saved past it: read again).
    fn send(&self, mut found: Found) -> bool {
        loop {
            match self.ctx.found.send_timeout(found, TICK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.stopping() {
                        return false;
                    }
                    found = back;
                }
            }
        }
    }

    /// Shows what was read to belong to `head`'s tree, and moves the position to it.
    fn verify(&mut self, head: &TreeHead) -> Result<(), Stop> {
        let read = self.position.as_ref().expect("reading").read.clone();
        if read.size() == head.tree_size {
            if read.root() != head.root_hash {
                self.fail(
                    VerifyFailure::RootMismatch,
                    format!(
                        "its {} entries read do not hash to its signed root",
                        head.tree_size
                    ),
                );
                return Err(Stop::Failed);
            }
            self.verified(read, *head);
            return Ok(());
        }
        // Stopped short of the head: a proof from the log ties the entries read to
        // the signed root.
        let shown = match self.log.kind() {
            LogKind::Rfc6962 => {
                let proof = {
                    let result = self.client.consistency(read.size(), head.tree_size);
                    self.counted(result)?
                };
                merkle::verify_consistency(
                    read.size(),
                    head.tree_size,
                    &read.root(),
                    &head.root_hash,
                    &proof,
                )
            }
            LogKind::Tiled => {
                let mut failed = None;
                let extended = read.extended_by_tiles(head.tree_size, |tile| {
                    let result = self.client.hash_tile(tile);
                    self.counted(result).map_err(|stop| failed = Some(stop))
                });
                match (extended, failed) {
                    (Ok(Some(range)), _) => range.root() == head.root_hash,
                    (Ok(None), _) => false,
                    (Err(()), Some(stop)) => return Err(stop),
                    (Err(()), None) => return Err(Stop::Wait(ERROR_WAIT)),
                }
            }
        };
        if !shown {
            self.fail(
                VerifyFailure::RootMismatch,
                format!(
                    "its {} entries read are not the start of its signed tree of {}",
                    read.size(),
                    head.tree_size
                ),
            );
            return Err(Stop::Failed);
        }
        self.verified(read, *head);
        Ok(())
    }

    /// After an outage longer than the cap: the entries between the position and
    /// the head are logged with the command that reads them, counted abandoned,
    /// and reading goes on from the head.
    fn abandon_to(&mut self, head: &TreeHead) -> Result<(), Stop> {
        let from = self.position.as_ref().expect("reading").verified.size();
        if head.tree_size <= from {
            return Ok(());
        }
        let range = self.checked_frontier(head)?;
        let n = head.tree_size - from;
        log::warn!(
            "CT log {}: entries {from}..{} ({n} entries) abandoned, over BACKFILL_MAX_GAP={} behind; \
             reading goes on from its head. To read them: certwatch backfill --log {} --from {from} --to {}",
            self.label,
            head.tree_size,
            self.ctx.max_behind,
            self.label,
            head.tree_size - 1
        );
        self.ctx
            .metrics
            .backfill(&self.label, BackfillOutcome::Abandoned, n);
        self.verified(range, *head);
        Ok(())
    }
}

fn source_of(log: &Log) -> LogSource<'_> {
    LogSource {
        url: log.fetch_base(),
        name: &log.description,
        kind: log.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log is said unreachable once nothing has got through for its
    /// `CT_LOG_UNREACHABLE_S`, said again only every `UNREACHABLE_NOTE`, and said to
    /// answer again at its first answer after; a short outage says nothing.
    #[test]
    fn a_log_answering_nothing_for_ten_minutes_is_said_unreachable_then_back() {
        let t0 = Instant::now();
        let mut answers = Answers::new(Duration::from_secs(600));
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A short outage: nothing said, either way.
        assert_eq!(answers.failed(at(0)), None);
        assert_eq!(answers.failed(at(300)), None);
        assert_eq!(answers.answered(at(310)), None);
        assert!(answers.said.is_none());
        // A long one: said at 10 minutes, not again at every failure...
        assert_eq!(answers.failed(at(1000)), None);
        assert_eq!(answers.failed(at(1599)), None);
        assert_eq!(answers.failed(at(1600)), Some(Duration::from_secs(600)));
        assert!(answers.said.is_some());
        assert_eq!(answers.failed(at(1900)), None);
        // ...but again an hour later, with how long it has lasted...
        assert_eq!(answers.failed(at(5200)), Some(Duration::from_secs(4200)));
        // ...and the first answer says it is back, once.
        assert_eq!(answers.answered(at(5300)), Some(Duration::from_secs(4300)));
        assert!(answers.said.is_none());
        assert_eq!(answers.answered(at(5301)), None);
        // A new outage counts from its own first failure.
        assert_eq!(answers.failed(at(6000)), None);
        assert_eq!(answers.failed(at(6599)), None);
        assert!(answers.failed(at(6600)).is_some());
    }
}
