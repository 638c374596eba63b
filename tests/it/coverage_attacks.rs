//! Coverage under attack (issue 18, items 1 to 5 and 10): each test drives the real
//! pipeline (in-process through the kit's service helpers; the memory test runs the
//! binary, see its doc) over real HTTP against `FakeCtLog`s with their fault
//! switches, from a `FakeFeed`, with a real Postgres database of its own, and
//! asserts what the fixes of issue 18 changed. Each doc comment says why the test
//! fails at 847c613 (the release the issue measured) and passes now.
//!
//! Item 10's second part (a list re-read that drops a log with a queued gap) has no
//! test here: the list is re-read once a day (`coverage::list::LIST_REFRESH`) and
//! nothing shortens that, so no test can reach the path in bounded time.

use crate::kit::attack::{self, Dialect, Lossy, WATCHED, log_entries as entries};
use crate::kit::ctlog::{self, FakeCtLog};
use crate::kit::feed::FeedCmd;
use crate::kit::probe::{metric_value, scrape};
use crate::kit::service::{self, Running};
use crate::kit::wait::wait_until;
use crate::kit::{Cert, FakeFeed, FakeWebhook, TestDb, proc};
use std::time::{Duration, Instant};
/// Long enough for a hole to settle (5 s), be taken (1 s ticks), be fetched and
/// its match to wait out the grace period (1 s) and be delivered, on a busy host.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Sends the entries `indices` of the log at `url`, paced (`attack::send_paced`).
fn send(feed: &FakeFeed, dialect: Dialect, url: &str, indices: impl IntoIterator<Item = usize>) {
    attack::send_paced(feed, dialect, url, indices.into_iter().map(|i| i as u64));
}

/// `certwatch_ct_backfill_entries_total` of `log` for `outcome`.
fn outcome(svc: &Running, log: &FakeCtLog, outcome: &str) -> f64 {
    svc.metric(&format!(
        "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"{outcome}\"}}",
        log.url()
    ))
}

/// One `/healthz` field of the `coverage` object.
fn healthz_coverage(svc: &Running, field: &str) -> i64 {
    let (_, body) = svc.get("/healthz");
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
    v["coverage"][field]
        .as_i64()
        .unwrap_or_else(|| panic!("no coverage.{field} in {body}"))
}

/// The stored position of the log at `url`, if any.
fn stored_position(db: &TestDb, url: &str) -> Option<i64> {
    db.client()
        .query(
            "SELECT position FROM public.certwatch_log_positions WHERE log_url = $1",
            &[&url],
        )
        .expect("positions")
        .first()
        .map(|r| r.get(0))
}

/// Polls `f` every 250 ms (each call may open a database connection) until it
/// returns true or `timeout` passes; returns the last result.
fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops the service, bounded: how long the drain took; panics past `limit`.
fn stop_within(svc: Running, limit: Duration) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("stop-service".into())
        .spawn(move || {
            let _ = tx.send(svc.stop());
        })
        .expect("spawn");
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the service did not stop within {limit:?}"))
}

// ---------------------------------------------------------------------------------------------
// Item 1: a lossy feed taken for a deduplicating one
// ---------------------------------------------------------------------------------------------

/// Runs a lossy feed of `dialect` against one log under the default settings
/// (`CT_FEED_HOLES` unset: `count`) until every missing entry is fetched, counted
/// or failed; returns (fetched, skipped, failed, abandoned), the service's
/// `certwatch_ct_entries_unproven` and `/healthz` `coverage.entries_unproven`, and
/// the `detected_via` of each delivery of the watched certificate.
fn run_lossy(name: &str, dialect: Dialect, shape: &Lossy) -> ([f64; 4], f64, i64, Vec<String>) {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let log = FakeCtLog::start(entries(shape.len, &shape.watched));
    let list = ctlog::list_file(name, &[&log], false);
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &[]);
    let url = log.url();
    attack::send_paced(
        &feed,
        dialect,
        &url,
        shape.delivered(0..shape.reconnect.start),
    );
    // Every frame sent so far recorded first: the hole the reconnect leaves is then
    // the first one after it (certwatch marks the next hole of each log).
    let seen = format!("certwatch_ct_log_entries_seen_total{{log=\"{url}\"}}");
    let before = shape.delivered(0..shape.reconnect.start).count() as f64;
    assert!(
        wait_until(Duration::from_secs(15), || svc.metric(&seen) == before),
        "seen {} of {before}",
        svc.metric(&seen)
    );
    // The connection drops; what the server sends meanwhile never arrives. The
    // frames queued after it go to the next connection.
    feed.send(FeedCmd::Drop);
    assert!(
        feed.wait_for_connections(2, Duration::from_secs(15)),
        "the service did not reconnect"
    );
    attack::send_paced(
        &feed,
        dialect,
        &url,
        shape.delivered(shape.reconnect.end..shape.len),
    );
    let missing = shape.missing_entries() as f64;
    let outcomes = || ["fetched", "skipped", "failed", "abandoned"].map(|o| outcome(&svc, &log, o));
    let gap_series = format!("certwatch_ct_log_gap_entries_total{{log=\"{url}\"}}");
    let settled = wait_until(WAIT, || {
        let [fetched, skipped, failed, abandoned] = outcomes();
        svc.metric(&gap_series) == missing && fetched + skipped + failed + abandoned >= missing
    });
    assert!(
        settled,
        "{missing} missing, not all settled: {:?}, gap entries {}",
        outcomes(),
        svc.metric(&gap_series)
    );
    assert_eq!(
        svc.metric("certwatch_ct_messages_dropped_total"),
        0.0,
        "the service dropped feed frames: holes the test did not make"
    );
    let alerts = hook.mentioning(WATCHED, Duration::from_secs(8), false);
    let via = alerts
        .iter()
        .map(|(_, body)| body["detected_via"].as_str().unwrap_or("?").to_string())
        .collect();
    let unproven = svc.metric("certwatch_ct_entries_unproven");
    let healthz = healthz_coverage(&svc, "entries_unproven");
    (outcomes(), unproven, healthz, via)
}

/// Issue 18 item 1: certstream-server-go drops about 1 % of the entries (singles and
/// short runs) and reconnects leave larger holes; under the default settings every
/// one of them is fetched, none counted, nothing left unproven, and the watched
/// certificate in a dropped run is alerted.
///
/// At 847c613 this log looked dense (over 2 % missing in 10 or more gaps, the
/// reconnect's hole included) and `CT_FEED_HOLES=count` counted its gaps as
/// `skipped`: the watched certificate was never fetched (and the unproven gauge did
/// not exist; the same shape with five watched issuances against the 847c613
/// binary, `examples/coverage_attacks.rs` scenario 1: 21 of 244 missing entries
/// fetched, 223 skipped, 2 of 5 alerted). Now only certstream-server-rust's dialect
/// may have holes counted, and a reconnect's hole does not count toward density.
#[test]
fn a_lossy_go_feed_has_every_dropped_entry_fetched_under_the_default() {
    let shape = Lossy::new(3000, 150, 1500..1700, &[2500]);
    assert!(shape.scattered_holes() >= 10, "{}", shape.scattered_holes());
    assert!(
        shape.scattered_share() < 0.015,
        "{}",
        shape.scattered_share()
    );
    let (outcomes, unproven, healthz, via) = run_lossy("attacks-lossy-go", Dialect::Go, &shape);
    let missing = shape.missing_entries() as f64;
    assert_eq!(
        outcomes,
        [missing, 0.0, 0.0, 0.0],
        "fetched, skipped, failed, abandoned"
    );
    assert_eq!((unproven, healthz), (0.0, 0), "nothing left unproven");
    assert_eq!(
        via,
        ["backfill"],
        "the watched certificate in a dropped run"
    );
}

/// The same feed in certstream-server-rust's dialect, its holes a pattern (about
/// 3 % in scattered short runs, plus the same reconnect): the log turns dense, its
/// gaps are counted (`skipped`, not fetched), and what was not proven is shown in
/// `certwatch_ct_entries_unproven` and `/healthz` `coverage.entries_unproven`.
///
/// At 847c613 the counting was the same but nothing showed what it left unproven:
/// the gauge and the `/healthz` field did not exist.
#[test]
fn the_same_holes_from_a_rust_dialect_feed_are_counted_and_shown_unproven() {
    let shape = Lossy::new(3000, 50, 1500..1700, &[2500]);
    assert!(
        shape.scattered_share() > 0.025,
        "{}",
        shape.scattered_share()
    );
    let (outcomes, unproven, healthz, via) = run_lossy("attacks-counted", Dialect::Rust, &shape);
    let [fetched, skipped, failed, abandoned] = outcomes;
    let missing = shape.missing_entries() as f64;
    assert!(skipped > 0.0, "counted: {outcomes:?}");
    assert_eq!(fetched + skipped, missing, "{outcomes:?}");
    assert_eq!((failed, abandoned), (0.0, 0.0));
    assert_eq!(unproven, skipped, "the gauge shows what was counted");
    assert_eq!(healthz as f64, skipped, "so does /healthz");
    assert!(
        via.is_empty(),
        "the watched certificate was counted: {via:?}"
    );
}

/// A feed in certstream-server-rust's dialect that drops about 1 % (below the 2 %
/// of a deduplicating server) plus one reconnect: the reconnect's hole does not make
/// the log dense, so every gap is fetched and the watched certificate is alerted.
///
/// At 847c613 the reconnect's 200 entries counted toward the density (7.7 % in 21
/// gaps): the log turned dense and its gaps were counted, the watched one among
/// them.
#[test]
fn a_reconnect_does_not_make_a_deduplicating_feed_look_dense() {
    let shape = Lossy::new(3000, 150, 1500..1700, &[2500]);
    let (outcomes, unproven, healthz, via) = run_lossy("attacks-reconnect", Dialect::Rust, &shape);
    let missing = shape.missing_entries() as f64;
    assert_eq!(
        outcomes,
        [missing, 0.0, 0.0, 0.0],
        "fetched, skipped, failed, abandoned"
    );
    assert_eq!((unproven, healthz), (0.0, 0));
    assert_eq!(via, ["backfill"]);
}

// ---------------------------------------------------------------------------------------------
// Item 2: memory grows with the size of a gap
// ---------------------------------------------------------------------------------------------

/// Huge certificates in the gap, and names in each.
const BIG_CERTS: usize = 32;
const BIG_NAMES: usize = 250_000;

/// A child `certwatch` process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 18 item 2: a gap holding 32 certificates of 250,000 names each (about 3 MB
/// of DER apiece) is read page by page: the service's peak RSS while reading it stays
/// within what reading one page costs, far below what holding the gap's entries
/// takes, and the watched certificate among them is alerted.
///
/// The bound. A page is one `get-entries` reply, at most 32 MiB (the client's body
/// cap); this log returns one entry per reply, so a page is one certificate (a 4 MB
/// body). What decoding a page costs (the body, the DER, x509-parser's list of
/// names, certwatch's lists of every name, the de-duplication and matching: about
/// 300 bytes a name) is measured first, on a gap of one such certificate (`page`:
/// the growth of the peak RSS over the idle RSS). Page by page, the gap of 32 then
/// costs one page; the test allows `2 × page + 16 MiB`, since the allocator keeps
/// part of a page's memory between pages (measured: 1.3 to 1.65 pages, flat in the
/// gap's length; release builds: 295 MiB for one certificate of 1M names, 348 to 376
/// MiB for ten). Collecting the gap's entries before matching them (847c613) keeps
/// each entry's name list while the next page is decoded: at least a `String` (24
/// bytes) and its heap block (8 or more) per name, `31 × 250,000 × 32` bytes = 236
/// MiB on top of a page (847c613 measured 36 bytes a name retained: 608 to 625 MiB
/// over idle for ten certificates of 1M names, 289 MiB for one); the test checks that
/// its bound is below that, so it separates the two designs by construction.
///
/// The service runs as a child process (the binary): the tests of this binary run in
/// parallel threads of one process, so an in-process service's RSS would be theirs too.
#[test]
fn a_gap_of_huge_certificates_is_read_page_by_page_in_bounded_memory() {
    let db = TestDb::new();
    db.watch(&["bigwatch.example"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    // Entries: 0, one huge (the calibration gap), 2, BIG_CERTS huge (the gap), last.
    let (calibration, _) = attack::huge_entries(1, BIG_NAMES, "one.bigwatch.example", 0xCA1);
    let (huge, der_bytes) =
        attack::huge_entries(BIG_CERTS, BIG_NAMES, "hit.bigwatch.example", 0xB16);
    let mut log_entries = entries(2, &[]);
    log_entries.insert(1, calibration.into_iter().next().expect("one"));
    log_entries.extend(huge);
    log_entries.extend(entries(3, &[]).pop());
    let last = log_entries.len() - 1;
    let log = FakeCtLog::start(log_entries);
    log.set_max_batch(1);
    let list = ctlog::list_file("attacks-huge", &[&log], false);
    let port = crate::process::free_port();
    let child = crate::process::certwatch()
        .env("POSTGRES_DSN", db.dsn())
        .env("CERTSTREAM_URL", feed.url())
        .env("API_PORT", port.to_string())
        .env("WEBHOOK_URL", hook.url())
        .env("CT_LOG_LIST", &list)
        .env("SUSPICIOUS_GRACE_S", "1")
        .env("WORKERS", "2")
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("certwatch starts");
    let child = Child(child);
    let pid = child.0.id().to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metric = |series: &str| {
        scrape(addr)
            .ok()
            .and_then(|body| metric_value(&body, series))
    };
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            "certwatch_ct_coverage_enabled"
        ) == Some(1.0)
            && feed.connections() >= 1),
        "the service did not start with its list"
    );
    std::thread::sleep(Duration::from_secs(1));
    let idle_kib = proc::proc_status_kib_of(&pid, "VmRSS");
    let url = log.url();
    let fetched =
        format!("certwatch_ct_backfill_entries_total{{log=\"{url}\",outcome=\"fetched\"}}");
    // Read a gap, wait for its watched certificate: (alerts, everything fetched, peak growth).
    let gap = |delivered: usize, watched: &str, total: usize| {
        send(&feed, Dialect::Go, &url, [delivered]);
        let alerts = hook.mentioning(watched, Duration::from_secs(120), true);
        let read = wait_until(Duration::from_secs(30), || {
            metric(&fetched) == Some(total as f64)
        });
        let grown = proc::proc_status_kib_of(&pid, "VmHWM").saturating_sub(idle_kib) << 10;
        (alerts, read, grown)
    };
    send(&feed, Dialect::Go, &url, [0]);
    let (one_alert, one_read, page) = gap(2, "one.bigwatch.example", 1);
    let (alerts, read_all, grown) = gap(last, "hit.bigwatch.example", 1 + BIG_CERTS);
    drop(child);
    let allowed = 2 * page + (16 << 20);
    let kept_names = (BIG_CERTS as u64 - 1) * BIG_NAMES as u64 * 32;
    eprintln!(
        "huge certificates: {BIG_CERTS} × {der_bytes} bytes DER, idle {} MiB; one page grew \
         the peak by {} MiB, the gap of {BIG_CERTS} by {} MiB (allowed {} MiB; holding the \
         entries would add {} MiB or more to a page)",
        idle_kib >> 10,
        page >> 20,
        grown >> 20,
        allowed >> 20,
        kept_names >> 20
    );
    assert!(der_bytes > 2 << 20, "multi-MB certificates: {der_bytes}");
    assert!(
        one_read && one_alert.len() == 1,
        "the one-certificate gap was read"
    );
    assert!(
        allowed < page + kept_names,
        "the bound ({allowed}) must sit below what holding every entry takes"
    );
    assert!(read_all, "not every huge entry was fetched");
    assert_eq!(alerts.len(), 1, "the watched certificate among them");
    assert_eq!(alerts[0].1["detected_via"], "backfill");
    assert!(
        grown <= allowed,
        "peak RSS grew {} MiB reading the gap, over {} MiB (one page and slack)",
        grown >> 20,
        allowed >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// Item 3: one rate-limiting log refuses another log's gaps
// ---------------------------------------------------------------------------------------------

/// Issue 18 item 3: log A answers 429 to everything, for good, and has 1,400 gaps
/// (two batches of 700 holes, 6 s apart: a log's open holes are bounded at 1,024, the
/// gaps taken are not); log B has one gap, with the watched certificate. B's alert
/// comes within 30 s while A is still refusing, and none of B's entries is refused.
///
/// At 847c613 one retry queue of 1,024 gaps served every log, and a rate-limited
/// gap was retried without limit: A's gaps filled it for good and B's gap was
/// counted `failed` ("1024 gaps wait already"), never fetched. Now each log has its
/// own queue (256) and fetcher: A's excess fails on A alone.
///
/// `CT_FEED_HOLES=fetch`: at 847c613 the default would have counted A's holes as a
/// dense log's instead of queueing them, and the test is about the queue.
#[test]
fn a_log_that_rate_limits_for_good_never_refuses_another_logs_gap() {
    const A_BATCH: usize = 700;
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let a = FakeCtLog::start(Vec::new());
    a.refuse_all(429, Some("60"));
    let watched = 6;
    let b = FakeCtLog::start(entries(12, &[watched]));
    let list = ctlog::list_file("attacks-ratelimit", &[&a, &b], false);
    let svc = service::start_covered(
        &db,
        &feed,
        Some(&hook),
        &list,
        &[("CT_FEED_HOLES", "fetch")],
    );
    // A: every other entry, so holes of one entry; the first batch is taken (due
    // after 5 s) before the second comes.
    send(&feed, Dialect::Go, &a.url(), (0..=2 * A_BATCH).step_by(2));
    std::thread::sleep(Duration::from_secs(7));
    let second = 2 * A_BATCH + 2..=4 * A_BATCH;
    send(&feed, Dialect::Go, &a.url(), second.step_by(2));
    std::thread::sleep(Duration::from_secs(1));
    send(
        &feed,
        Dialect::Go,
        &b.url(),
        (0..12).filter(|i| *i != watched),
    );
    let sent = Instant::now();
    let alerts = hook.mentioning(WATCHED, Duration::from_secs(30), true);
    let latency = sent.elapsed();
    assert_eq!(
        alerts.len(),
        1,
        "B's alert within 30 s of its gap (A refusing)"
    );
    assert_eq!(alerts[0].1["detected_via"], "backfill");
    eprintln!("rate limiting: B's alert after {latency:?}");
    assert_eq!(
        outcome(&svc, &b, "failed"),
        0.0,
        "none of B's entries refused"
    );
    assert_eq!(outcome(&svc, &b, "fetched"), 1.0);
    // A is still refusing, was asked, read nothing; its excess failed on A alone.
    assert!(a.hits("") >= 1, "A was asked");
    assert_eq!(outcome(&svc, &a, "fetched"), 0.0);
    assert!(
        // 256 queued and the one being fetched.
        outcome(&svc, &a, "failed") >= (2 * A_BATCH - 257) as f64,
        "A's gaps past its own queue: {}",
        outcome(&svc, &a, "failed")
    );
    drop(svc);
}

// ---------------------------------------------------------------------------------------------
// Item 4: a bogus index while the log's tree size cannot be read
// ---------------------------------------------------------------------------------------------

/// Issue 18 item 4: the log is down (its tree size cannot be read: `get-sth` fails)
/// when the feed names an index far beyond it (2^63 − 2). The stored position never
/// goes beyond the log's tree; once the log answers again the gap is found bogus, the
/// position rewound, and a real gap after it is fetched and alerted; the stored
/// position ends at the log's real end. `BACKFILL_MAX_GAP=10`, so that the bogus
/// gap's capped part (entries 20..30) cannot read the watched entry (35) by chance.
///
/// At 847c613 a gap over the cap whose log could not say its tree size was taken as
/// is: capped, entries 20..30 read, the rest counted `abandoned`, the log's position
/// left past the bogus index and saved (2^63 − 1) within 10 s. Every real entry
/// after it was stale, so the real gap was never fetched (and the tree size never
/// asked again), also after a restart. Now such a gap waits for the tree size, its
/// start holds the position back, and it is checked again every 30 s.
#[test]
fn a_bogus_index_while_the_log_is_down_never_moves_its_position() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    // The watched entry lies past what the capped gap would read (20..30).
    let (len, watched, first) = (40usize, 35usize, 20usize);
    let log = FakeCtLog::start(entries(len, &[watched]));
    let list = ctlog::list_file("attacks-bogus", &[&log], false);
    let env = [("BACKFILL_MAX_GAP", "10")];
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &env);
    let url = log.url();
    send(&feed, Dialect::Go, &url, 0..first);
    // The log goes down; the feed names an index it never had.
    log.fail_path("ct/v1/get-sth", 500);
    log.fail_path("checkpoint", 500);
    send(&feed, Dialect::Go, &url, [(i64::MAX - 1) as usize]);
    let beyond = |db: &TestDb| stored_position(db, &url).is_some_and(|p| p > len as i64);
    // Due after 5 s, checked against the tree (unreadable), held; two saves later:
    let mut positions = Vec::new();
    let held = poll(Duration::from_secs(22), || {
        let now = stored_position(&db, &url);
        if positions.last() != Some(&now) {
            positions.push(now);
        }
        beyond(&db)
    });
    assert!(
        !held,
        "the stored position passed the log's tree: {positions:?}"
    );
    assert!(
        positions.contains(&Some(first as i64)),
        "saved, held at the gap's start: {positions:?}"
    );
    assert!(log.hits("ct/v1/get-sth") >= 1, "the tree size was asked");
    assert_eq!(
        outcome(&svc, &log, "abandoned"),
        0.0,
        "nothing taken as real"
    );
    // The log answers again: at its next check the gap is found bogus and the
    // position rewound (checked every 30 s while the tree size is unknown).
    let asked = log.hits("ct/v1/get-sth");
    log.clear_path_failures();
    assert!(
        wait_until(Duration::from_secs(40), || log.hits("ct/v1/get-sth")
            > asked),
        "the tree size was never asked again"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!beyond(&db), "{:?}", stored_position(&db, &url));
    // The real sequence goes on, without the watched entry.
    send(
        &feed,
        Dialect::Go,
        &url,
        (first..len).filter(|i| *i != watched),
    );
    let alerts = hook.mentioning(WATCHED, Duration::from_secs(20), true);
    assert_eq!(
        alerts.len(),
        1,
        "the real gap after the bogus index is fetched"
    );
    assert_eq!(alerts[0].1["detected_via"], "backfill");
    assert_eq!(outcome(&svc, &log, "abandoned"), 0.0);
    drop(svc);
    assert_eq!(
        stored_position(&db, &url),
        Some(len as i64),
        "the log's real end"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 5: a slow log stalls backfill and shutdown
// ---------------------------------------------------------------------------------------------

/// Issue 18 item 5, latency: log S returns one entry per `get-entries` reply and has
/// a gap of 300 entries (300 requests, paced 250 ms apart: over a minute); a second
/// later log N has a gap holding the watched certificate. N's alert comes within
/// 20 s, while S is still reading its gap, and the positions are saved meanwhile.
///
/// At 847c613 one `backfill` thread read every gap, each to its end: N's gap waited
/// behind S's 300 pages (the issue measured 73 s instead of 6 s), and no position
/// was saved until S's gap was read. Now each log has its own fetcher thread, and
/// the `backfill` thread keeps the statistics and the saves on its own clock.
#[test]
fn a_slow_log_does_not_delay_another_logs_alert() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let slow = FakeCtLog::start(entries(302, &[]));
    slow.set_max_batch(1);
    let watched = 6;
    let normal = FakeCtLog::start(entries(12, &[watched]));
    let list = ctlog::list_file("attacks-slow", &[&slow, &normal], false);
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &[]);
    send(&feed, Dialect::Go, &slow.url(), [0, 301]);
    std::thread::sleep(Duration::from_secs(1));
    send(
        &feed,
        Dialect::Go,
        &normal.url(),
        (0..12).filter(|i| *i != watched),
    );
    let sent = Instant::now();
    let alerts = hook.mentioning(WATCHED, Duration::from_secs(20), true);
    let latency = sent.elapsed();
    assert_eq!(alerts.len(), 1, "N's alert within 20 s of its gap");
    assert_eq!(alerts[0].1["detected_via"], "backfill");
    let slow_read = outcome(&svc, &slow, "fetched");
    eprintln!("slow log: N's alert after {latency:?}, S has read {slow_read} of 300");
    assert!(
        slow_read < 300.0,
        "S was still reading its gap: {slow_read}"
    );
    assert!(slow.hits("ct/v1/get-entries") >= 1, "S was being read");
    // The positions are saved on the backfill thread's own clock (every 10 s), S
    // reading or not: N's reaches its end, S's stays below what it has not read.
    let normal_url = normal.url();
    assert!(
        poll(Duration::from_secs(15), || stored_position(
            &db,
            &normal_url
        ) == Some(12)),
        "N's position was not saved while S was read: {:?}",
        stored_position(&db, &normal_url)
    );
    let slow_position = stored_position(&db, &slow.url());
    assert!(
        slow_position.is_some_and(|p| (1..301).contains(&p)),
        "S's position held below what it has not read: {slow_position:?}"
    );
    drop(svc);
}

/// Issue 18 item 5, shutdown: log S trickles (one byte a second: a request takes
/// the client's whole 30 s timeout) and is being read when shutdown is triggered,
/// with a suspicious certificate waiting out its grace period (`SUSPICIOUS_GRACE_S`
/// 60). The service stops within 12 s (the 10 s delivery budget and margin, well
/// under the 30 s drain timeout) and the held alert is delivered during the drain.
///
/// At 847c613 the `backfill` thread read pages while holding a sender the drain
/// waited for: shutdown waited out the trickling request (30.1 s measured), past the
/// delivery budget, and the held alert was not delivered. Now fetchers run on their
/// own threads and hold nothing the drain waits for.
#[test]
fn shutdown_does_not_wait_on_a_trickling_log_and_delivers_a_held_alert() {
    let db = TestDb::new();
    db.watch(&[WATCHED, "held.example"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let slow = FakeCtLog::start(entries(12, &[]));
    slow.set_trickle(Some(Duration::from_secs(1)));
    let list = ctlog::list_file("attacks-trickle", &[&slow], false);
    let svc = service::start_covered(
        &db,
        &feed,
        Some(&hook),
        &list,
        &[("SUSPICIOUS_GRACE_S", "60")],
    );
    send(&feed, Dialect::Go, &slow.url(), [0, 11]);
    assert!(
        wait_until(Duration::from_secs(20), || slow.hits("ct/v1/get-entries")
            >= 1),
        "S's gap was not being read"
    );
    // A suspicious certificate (not in the inventory) now waits out its grace period.
    let held = Cert::new(&["www.held.example"]);
    feed.send(FeedCmd::Text(held.frame()));
    assert!(
        poll(Duration::from_secs(10), || {
            db.client()
                .query_one("SELECT count(*) FROM public.certwatch_pending", &[])
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
                == 1
        }),
        "the certificate was not held for its grace period"
    );
    assert!(
        hook.recv(Duration::from_millis(200)).is_none(),
        "not delivered yet"
    );
    let took = stop_within(svc, Duration::from_secs(45));
    eprintln!("trickling log: shutdown took {took:?}");
    let delivered = hook.mentioning("www.held.example", Duration::from_secs(2), true);
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    assert_eq!(
        delivered.len(),
        1,
        "the held alert was delivered during the drain"
    );
    assert_eq!(delivered[0].1["severity"], "suspicious");
}

// ---------------------------------------------------------------------------------------------
// Item 10: Retry-After in the past
// ---------------------------------------------------------------------------------------------

/// Issue 18 item 10, first part: a log answers every request 429 with a
/// `Retry-After` date in the past. certwatch waits the default 10 s between
/// requests: at most 3 in a 22 s window, each at least 9.5 s after the one before.
///
/// At 847c613 a date in the past parsed as no wait at all, so the gap was retried at
/// every backfill tick: about one request a second, a log hammered for refusing.
#[test]
fn a_retry_after_in_the_past_waits_the_default_not_at_all() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let log = FakeCtLog::start(entries(12, &[6]));
    log.refuse_all(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"));
    let list = ctlog::list_file("attacks-past", &[&log], false);
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &[]);
    send(&feed, Dialect::Go, &log.url(), (0..12).filter(|i| *i != 6));
    assert!(
        wait_until(Duration::from_secs(20), || log.hits("") >= 1),
        "the gap was never asked for"
    );
    let first = log.hit_times("")[0];
    let window = Duration::from_secs(22);
    std::thread::sleep(window.saturating_sub(first.elapsed()));
    let times: Vec<Instant> = log
        .hit_times("")
        .into_iter()
        .filter(|t| t.duration_since(first) <= window)
        .collect();
    let spacing: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "Retry-After in the past: {} requests in {window:?}, spaced {spacing:?}",
        times.len()
    );
    assert!(
        times.len() <= 3,
        "{} requests in {window:?}: {spacing:?}",
        times.len()
    );
    assert!(
        spacing.iter().all(|d| *d >= Duration::from_millis(9500)),
        "requests closer than the default wait: {spacing:?}"
    );
    assert!(times.len() >= 2, "asked again after the wait: {spacing:?}");
    drop(svc);
}

/// Item 10: a list re-read (SIGHUP) that drops a log with a gap queued counts the
/// gap (`abandoned`) and marks its claim done, so no replica waits on it. At
/// 847c613 the queued gap vanished uncounted, its claim left open.
#[test]
fn a_log_that_leaves_the_list_mid_gap_has_its_gap_counted_and_its_claim_closed() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let feed = FakeFeed::start();
    let a = FakeCtLog::start(Vec::new());
    a.refuse_all(429, Some("60"));
    let b = FakeCtLog::start(entries(4, &[]));
    let list = ctlog::ListFile::write("attacks-delisted", &ctlog::log_list_of(&[&a, &b], false));
    let svc = service::start_covered(&db, &feed, None, &list, &[("CT_FEED_HOLES", "fetch")]);
    // A hole at 1 in log A: due after the settle time, claimed, refused.
    send(&feed, Dialect::Go, &a.url(), [0, 2]);
    let open_claim = || -> Option<bool> {
        db.client()
            .query_opt(
                "SELECT done FROM public.certwatch_backfill_claims WHERE start_index = 1",
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    };
    assert!(
        wait_until(Duration::from_secs(30), || open_claim() == Some(false)),
        "A's gap claimed and waiting"
    );
    // The list now names B only; SIGHUP re-reads it.
    let _list = ctlog::ListFile::write("attacks-delisted", &ctlog::log_list_of(&[&b], false));
    svc.reload();
    let abandoned = || {
        let body = scrape(svc.addr).unwrap();
        metric_value(
            &body,
            &format!(
                "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"abandoned\"}}",
                a.url()
            ),
        )
        .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || abandoned() == 1.0),
        "the delisted log's gap is counted"
    );
    assert!(
        wait_until(Duration::from_secs(10), || open_claim() == Some(true)),
        "its claim is marked done"
    );
}
