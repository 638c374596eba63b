//! Certificate Transparency logs themselves, beside the certstream feed, for
//! coverage and backfill: the trusted log list (`loglist`), the tracking of which
//! entry indices the feed delivered (`gaps`), the HTTP client for one log
//! (`client`, run on the `backfill` thread) and the pure decoders it feeds:
//! RFC 6962 `get-entries` (`rfc6962`), static-ct-api data tiles and checkpoints
//! (`tiles`), and the conversion of a decoded entry into the same
//! `certstream::Certificate` the feed produces (`entry`).

pub mod client;
pub mod entry;
pub mod gaps;
pub mod loglist;
pub mod rfc6962;
pub mod tiles;

/// The read API a log serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// RFC 6962: `ct/v1/get-sth`, `ct/v1/get-entries`.
    Rfc6962,
    /// C2SP static-ct-api: `checkpoint`, `tile/data/...`, `issuer/<sha256>`.
    Tiled,
}
