//! Integration tests: the real pipeline against a real Postgres database (one per
//! test), a real WebSocket server and a real HTTP webhook receiver, in-process;
//! plus process-level tests of the `certwatch` binary.

// The test kit (testkit/), named `kit` in every test module (`crate::kit::...`).
use certwatch_testkit as kit;

mod backfill;
mod classification;
mod coverage_attacks;
mod ctlog;
mod delivery;
mod faults;
mod feed_faults;
mod feed_holes;
mod fixtures;
mod fuzz_regressions;
mod http_abuse;
mod http_endpoints;
mod identity;
mod lenient;
mod lifecycle;
mod log_lag;
mod pg_tls;
mod process;
mod redelivery;
mod schema;
mod tail;
mod testkit;
mod tidy;
mod tls_feed;
mod webhook_hygiene;
