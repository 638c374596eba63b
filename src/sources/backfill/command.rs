//! `certwatch backfill --log URL --from N --to M`: one range of one trusted log,
//! read once through the fetcher threads' own path (`fetch::LogFetch`) on
//! the calling thread (the main thread; `pipeline::command::backfill_once` sets up the
//! classification stages around it). Owns the request and its typed outcome.

use super::Backfill;
use super::fetch::{LogFetch, Next, QueuedGap};
use crate::clock::unix_now;
use crate::coverage::gaps::Gap;
use crate::coverage::list::{self, ListError};
use crate::sources::Found;
use std::fmt;
use std::time::Instant;

pub use super::fetch::Counts;

/// A range of one log to read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The log's URL, as the list or a feed names it.
    pub log_url: String,
    /// First index.
    pub from: u64,
    /// Last index (inclusive).
    pub to: u64,
}

/// Why a manual backfill did not read its whole range.
#[derive(Debug)]
pub enum RunError {
    /// The request cannot work: exit 2.
    Refused(Refusal),
    /// The list or the log could not be read: exit 1.
    Failed(Failure),
}

/// A request that cannot work, whatever the logs do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `CT_LOG_LIST=off`: no trusted list to take the log from.
    NoList,
    /// The URL names no log of the trusted list (shown, at most 200 characters).
    NotListed(String),
    /// `--to` below `--from`.
    Backwards { from: u64, to: u64 },
    /// An index of 2^63 or more (`ctlog::MAX_INDEX`).
    IndexTooLarge(u64),
}

/// A request that could not be carried out in full.
#[derive(Debug)]
pub enum Failure {
    /// Neither the list nor its kept copy could be read.
    List(ListError),
    /// Shutdown came while waiting for the database.
    InterruptedBeforeStart,
    /// Shutdown came with entries `start..end` not read.
    Interrupted { start: u64, end: u64 },
    /// A range was given up on after its attempts (`why`), `read` entries read before.
    GaveUp { why: String, read: u64 },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Refused(Refusal::NoList) => {
                f.write_str("CT_LOG_LIST=off: there is no trusted log list to take the log from")
            }
            RunError::Refused(Refusal::NotListed(url)) => write!(
                f,
                "{url:?} is not a log of the trusted list (CT_LOG_LIST); nothing fetched"
            ),
            RunError::Refused(Refusal::Backwards { from, to }) => {
                write!(f, "--to {to} is below --from {from}")
            }
            RunError::Refused(Refusal::IndexTooLarge(index)) => write!(
                f,
                "{index} is not an entry index (0 to {})",
                crate::ctlog::MAX_INDEX
            ),
            RunError::Failed(Failure::List(e)) => e.fmt(f),
            RunError::Failed(Failure::InterruptedBeforeStart) => {
                f.write_str("interrupted while waiting for the database")
            }
            RunError::Failed(Failure::Interrupted { start, end }) => {
                write!(f, "interrupted; entries {start}..{end} not fetched")
            }
            RunError::Failed(Failure::GaveUp { why, read }) => {
                write!(f, "{why} ({read} entries read before)")
            }
        }
    }
}

impl std::error::Error for RunError {}

impl RunError {
    /// The process exit code: 2 for a request that cannot work, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Refused(_) => 2,
            RunError::Failed(_) => 1,
        }
    }
}

/// Runs one manual request through the same path as the fetcher threads, on the
/// caller's thread: the list (or its kept copy), the range capped at
/// `BACKFILL_MAX_GAP`, fetched with the same retries (a log that keeps
/// rate-limiting is waited for at most `fetch::MAX_WAIT`); returns what it read,
/// or why it could not read it all.
pub fn run_once(backfill: &Backfill, request: &Request) -> Result<Counts, RunError> {
    let Some(source) = &backfill.list_source else {
        return Err(RunError::Refused(Refusal::NoList));
    };
    if let Some(index) = [request.from, request.to]
        .into_iter()
        .find(|i| *i > crate::ctlog::MAX_INDEX)
    {
        return Err(RunError::Refused(Refusal::IndexTooLarge(index)));
    }
    if request.to < request.from {
        return Err(RunError::Refused(Refusal::Backwards {
            from: request.from,
            to: request.to,
        }));
    }
    let cls = &backfill.intake.cls;
    let list = list::read_list_or_kept(&cls.store, source)
        .map_err(|e| RunError::Failed(Failure::List(e)))?;
    let Some(log) = list.lookup(&request.log_url).cloned() else {
        return Err(RunError::Refused(Refusal::NotListed(
            request.log_url.chars().take(200).collect(),
        )));
    };
    list::install(&backfill.coverage, list, &cls.metrics, &cls.health);
    let wanted = Gap {
        log: log.id,
        start: request.from,
        end: request.to + 1,
    };
    let ctx = backfill.fetch_context();
    let mut fetch = LogFetch::new(&ctx, log);
    let gap = fetch.cap(wanted);
    let mut queued = QueuedGap::by_hand(gap, Instant::now());
    let mut sink = |found: Found| {
        backfill
            .intake
            .hand_over(found.cert, found.matches, found.via, unix_now());
        true
    };
    loop {
        let wait = queued.not_before.saturating_duration_since(Instant::now());
        if backfill.shutdown.sleep(wait) {
            return Err(RunError::Failed(Failure::Interrupted {
                start: queued.gap.start,
                end: queued.gap.end,
            }));
        }
        match fetch.fetch(queued, &mut sink, &mut |_| {}) {
            Next::Done => break,
            Next::Again(rest) => queued = rest,
        }
    }
    match fetch.gave_up.take() {
        Some(why) => Err(RunError::Failed(Failure::GaveUp {
            why,
            read: fetch.counts.fetched,
        })),
        None => Ok(fetch.counts),
    }
}
