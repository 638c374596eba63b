//! certwatch's test kit: what the integration tests (`tests/it`), the runnable demos
//! (`examples/`), the benchmarks (`benches/`) and the fuzz targets (`fuzz/`) share to run the real service against
//! fakes of everything around it. A dev-only crate (`publish = false`), a
//! dev-dependency of certwatch, which it depends on in turn.
//!
//! | module | what it provides |
//! |---|---|
//! | [`feed`] | `FakeFeed`: a scripted certstream WebSocket server; `PacedFeed`: one that sends generated frames at a set rate |
//! | [`feedgen`] | `FeedGen`: a realistic full-stream firehose, generated; the matching side of it in a `TestDb` |
//! | [`webhook`] | `FakeWebhook`: a webhook receiver that hands over every request; `WebhookSink`: one that counts them |
//! | [`flaky_webhook`] | `FlakyWebhook`: a receiver that fails a share of requests, can be taken down, and records each delivery id (the coverage soak) |
//! | [`db`] | `TestDb`: a throwaway database with `schema.sql`; `Inventory` rows and alert rows |
//! | [`cluster`] | `TestCluster`: a PostgreSQL cluster of a test's own, to stop and restart |
//! | [`attack`] | issue 18's coverage attacks: lossy feeds in either dialect, huge certificates, watched entries |
//! | [`bigcert`] | certificates of any number of names (a fixture's DER edited), for memory bounds |
//! | [`cert`] | `Cert`: one certificate as a certstream server sends it |
//! | [`ctlog`] | `FakeCtLog`, `FakeEntry`: a CT log over HTTP (RFC 6962 and static-ct); log lists naming several (`list_file`, `log_list_mixed`, `ListFile`) |
//! | [`service`] | `db_feed_and_webhook`: what a test's service runs against; `Running`: the real pipeline in-process with a test's environment |
//! | [`child`] | `run`, `Child`: child processes (the `certwatch` binary) bounded in time, killed and failing the test past a deadline; their stderr line by line |
//! | [`fuzz`] | what each fuzz target (`fuzz/`) does with one input, and the invariants it asserts |
//! | [`standard_webhooks`] | a Standard Webhooks verifier written from the specification |
//! | [`probe`] | HTTP requests to the service; its `/metrics` and one sample of them |
//! | [`proc`] | resident memory and CPU time from `/proc`, by process and by thread |
//! | [`wait`] | `wait_until`: bounded polling instead of sleeps |
//!
//! Every helper is bounded in time and owns its background thread: dropping the handle
//! stops the thread and joins it, so tests can run in parallel in one process without
//! leaking work.

pub mod attack;
pub mod bigcert;
pub mod cert;
pub mod child;
pub mod cluster;
pub mod ctlog;
pub mod db;
pub mod feed;
pub mod feedgen;
pub mod flaky_webhook;
pub mod fuzz;
pub mod pki;
pub mod probe;
pub mod proc;
pub mod service;
pub mod standard_webhooks;
pub mod wait;
pub mod webhook;

pub use cert::Cert;
pub use db::{AlertRow, DEFAULT_ADMIN_DSN, Inventory, TestDb};
pub use feed::{FakeFeed, FeedCmd, PacedFeed};
pub use feedgen::{FeedGen, FeedGenConfig, MatchCert};
pub use wait::wait_until;
pub use webhook::{ClosingWebhook, FakeWebhook, Received, WebhookSink};
