//! certwatch: watches Certificate Transparency for certificates issued for your
//! domains and diffs them against the inventory of certificates you issued.
//!
//! Code map (ARCHITECTURE.md has it file by file; each module's doc says which
//! thread runs it):
//! - `config`: environment -> validated `Config` (main thread, once)
//! - `pipeline`: channels, threads, shutdown order (`pipeline` thread)
//! - `sources`: where certificates come from, one module each (`feed`: the
//!   certstream reader and the worker pool; `backfill`), and the one hand-over to
//!   classification they share
//! - `coverage`: which entries of each CT log were seen, fetched or given up on:
//!   the gap tracker, positions, claims, the log list in use
//! - `ctlog`: the CT protocol: the log list format, the log client, RFC 6962,
//!   static-ct tiles, entry -> certificate (pure, but the client)
//! - `cert`: the certificate value every source hands over (pure)
//! - `matcher`: watch-list index and name matching (pure)
//! - `alert`: the alert model, issuance keys, the inventory rule (pure)
//! - `classify`: match -> dedupe -> inventory -> record (callers' threads)
//! - `grace`: the grace delay queue and the alerts held while the database is down (`grace`)
//! - `store`: every SQL query, the Postgres pool
//! - `payload`: webhook bodies and signatures (pure)
//! - `deliver`: webhook targets, POSTs, retries (`deliver-N`, one per target)
//! - `ssrf`: the SSRF filter on webhook egress (start-up, `deliver-N`)
//! - `timer`: watch-list refresh, cleanup, redelivery sweep (`timer`)
//! - `http`: `/healthz`, `/metrics` with tiny_http on a private socket, the healthcheck client (`http-0`, `http-1`)
//! - `http_guard`: the public API port, bounded in connections, bytes and time (`http-guard`)
//! - `logging`: the process logger; keeps secrets out of dependencies' records
//! - `outbound`: the ureq agents (webhooks, CT logs, the log list) and Retry-After
//! - `metrics`, `threads`, `shutdown`, `clock`, `hex`: shared plumbing

pub mod alert;
pub mod cert;
mod classify;
mod clock;
pub mod config;
pub mod coverage;
pub mod ctlog;
mod deliver;
mod grace;
mod hex;
pub mod http;
pub mod http_guard;
pub mod logging;
pub mod matcher;
mod memory;
mod metrics;
mod outbound;
mod payload;
pub mod pipeline;
pub mod shutdown;
pub mod sources;
pub mod ssrf;
pub mod store;
mod threads;
mod timer;

pub use config::Config;
pub use pipeline::{Error, Service, run, start, start_with_lookup};
