//! The Certificate Transparency protocol as certwatch reads it, and nothing else:
//! the trusted log list's format (`loglist`), the HTTP client for one log
//! (`client`, run on the `backfill` thread), the pure decoders it feeds: RFC 6962
//! `get-sth` and `get-entries` (`rfc6962`), static-ct-api data tiles and
//! checkpoints (`tiles`), and the conversion of a decoded entry into the same
//! `cert::Certificate` the feed produces (`entry`). Which entries certwatch has
//! read is `coverage`'s; who reads them is `sources`'.

pub mod client;
pub mod entry;
pub mod loglist;
pub mod merkle;
pub mod rfc6962;
pub mod tiles;
pub mod tree_head;

/// The largest entry index or tree size certwatch takes, from a feed, a log or the
/// command line: below 2^63, so that every index fits Postgres' `bigint` and
/// `index + 1` never wraps.
pub const MAX_INDEX: u64 = i64::MAX as u64;

/// The read API a log serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// RFC 6962: `ct/v1/get-sth`, `ct/v1/get-entries`.
    Rfc6962,
    /// C2SP static-ct-api: `checkpoint`, `tile/data/...`, `issuer/<sha256>`.
    Tiled,
}
