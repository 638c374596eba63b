//! certwatch: watches Certificate Transparency for certificates issued for your
//! domains and diffs them against the inventory of certificates you issued.
//!
//! Code map (each module's doc says which thread runs it):
//! - `config`: environment -> validated `Config` (main thread, once)
//! - `pipeline`: channels, threads, shutdown order (`pipeline` thread)
//! - `feed`: certstream WebSocket reader (`feed`)
//! - `certstream`: feed message types and parsing (pure)
//! - `matcher`: watch-list index and name matching (pure)
//! - `ctlog`: CT logs: the trusted log list, per-log index gaps (pure), the log client and entry decoding for backfill
//! - `alert`: the alert model, issuance keys, the inventory rule (pure)
//! - `worker`: the worker pool, feed frames to matches (`worker-N`)
//! - `classify`: match -> dedupe -> inventory -> record (callers' threads)
//! - `grace`: the grace delay queue and the alerts held while the database is down (`grace`)
//! - `store`: every SQL query, the Postgres pool
//! - `payload`: webhook bodies and signatures (pure)
//! - `deliver`: webhook targets, POSTs, retries (`deliver-N`, one per target)
//! - `guard`: the SSRF guard on webhook egress (start-up, `deliver-N`)
//! - `timer`: watch-list refresh, cleanup, redelivery sweep (`timer`)
//! - `http`: `/healthz`, `/metrics` with tiny_http on a private socket, the healthcheck client (`http-0`, `http-1`)
//! - `http_guard`: the public API port, bounded in connections, bytes and time (`http-guard`)
//! - `logging`: the process logger; keeps secrets out of dependencies' records
//! - `outbound`: the ureq agents (webhooks, CT logs) and Retry-After
//! - `metrics`, `threads`, `shutdown`: shared plumbing

pub mod alert;
pub mod backfill;
pub mod certstream;
pub mod classify;
pub mod config;
pub mod ctlog;
pub mod deliver;
pub mod feed;
pub mod grace;
pub mod guard;
pub mod http;
pub mod http_guard;
pub mod logging;
pub mod matcher;
pub mod metrics;
pub mod outbound;
pub mod payload;
pub mod pipeline;
pub mod shutdown;
pub mod store;
pub mod threads;
pub mod timer;
pub mod worker;

pub use config::Config;
pub use pipeline::{Error, Service, run, start, start_with_lookup};
