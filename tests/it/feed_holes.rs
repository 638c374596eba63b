//! Feeds that leave holes by design (issue 13): certstream-server-rust does not send
//! a certificate from a second log when it sent it from a first one, so a log's
//! sequence on it misses a large share of its entries, in many small holes. The
//! real pipeline against two `FakeCtLog`s over real HTTP (one the feed delivers
//! whole, one with about half its entries missing) and a `FakeFeed`, once per
//! `CT_FEED_HOLES` policy: `count` (the default: the holed log turns dense, its gaps
//! are counted as skipped, a bounded number of requests), `coalesce` (whole
//! 256-entry stretches: requests bounded by entries / 256, and a watched
//! certificate in a hole still alerts), `fetch` (every gap fetched).

use crate::kit::ctlog::{self, FakeCtLog, FakeEntry, fixture_entries};
use crate::kit::feed::FeedCmd;
use crate::kit::feedgen::XorShift;
use crate::kit::service::{self, Running, db_feed_and_webhook};
use crate::kit::wait::wait_until;
use crate::kit::{FakeFeed, FakeWebhook, TestDb};
use certwatch::coverage::gaps::DENSE_MIN_GAPS;
use std::time::Duration;

/// The fixture entry watched (`tiny.example.com`): the only one under it.
const WATCHED: &str = "tiny.example.com";
/// Time for every hole to settle (5 s), be taken (1 s ticks) and be fetched or
/// counted.
const WAIT: Duration = Duration::from_secs(60);

/// One log's entries and which of them the feed leaves out.
struct Holed {
    /// `len` entries: fixture certificates other than the watched one, in turn,
    /// and the watched one at `watched`.
    entries: Vec<FakeEntry>,
    /// Per index: whether the feed leaves it out. Never the first or the last.
    missing: Vec<bool>,
}

impl Holed {
    /// About half of `len` entries missing, in holes of a few entries (a fair coin
    /// per index), the watched certificate at `watched` in one of them.
    fn new(len: usize, watched: usize, seed: u64) -> Holed {
        let fixtures = fixture_entries();
        let (watched_entry, others): (Vec<_>, Vec<_>) = fixtures
            .into_iter()
            .map(|(entry, line)| (entry, line.contains(&format!("\"{WATCHED}\""))))
            .partition(|(_, is_watched)| *is_watched);
        let watched_entry = watched_entry[0].0.clone();
        let entries = (0..len)
            .map(|i| {
                if i == watched {
                    watched_entry.clone()
                } else {
                    others[i % others.len()].0.clone()
                }
            })
            .collect();
        let mut rng = XorShift::new(seed);
        let mut missing: Vec<bool> = (0..len).map(|_| rng.below(2) == 0).collect();
        missing[0] = false;
        missing[len - 1] = false;
        missing[watched] = true;
        Holed { entries, missing }
    }

    /// Entries the feed leaves out.
    fn missing_entries(&self) -> usize {
        self.missing.iter().filter(|m| **m).count()
    }

    /// The longest run of missing entries.
    fn longest_hole(&self) -> usize {
        self.missing
            .split(|m| !*m)
            .map(<[bool]>::len)
            .max()
            .unwrap_or(0)
    }

    /// Separate runs of missing entries: the gaps the feed leaves.
    fn holes(&self) -> usize {
        self.missing.windows(2).filter(|w| !w[0] && w[1]).count()
    }
}

/// A certificate message of the log at `url`, entry `index`, for an unwatched name,
/// in certstream-server-rust's dialect (its `submission_timestamp`): the server
/// these tests are about, the one known to drop cross-log duplicates.
fn frame(url: &str, index: usize) -> String {
    let mut frame = ctlog::unwatched_frame(url, index as u64);
    frame["data"]["submission_timestamp"] = serde_json::json!(1_768_478_402.074);
    frame.to_string()
}

/// What a test runs against: the holed log, the whole one, the feed and the service.
struct TwoLogs {
    holed: FakeCtLog,
    whole: FakeCtLog,
    shape: Holed,
    feed: FakeFeed,
    hook: FakeWebhook,
    svc: Running,
    _db: TestDb,
}

/// The kit's database watching `WATCHED`, feed and webhook receiver
/// (`db_feed_and_webhook`), a holed and a whole fake log, and the service started
/// with `CT_FEED_HOLES=policy` (unset: the default) and both logs listed; the holed
/// log's get-entries pages hold at most `max_batch` entries.
fn two_logs_served(name: &str, policy: Option<&str>, shape: Holed, max_batch: u64) -> TwoLogs {
    let (db, feed, hook) = db_feed_and_webhook(&[WATCHED]);
    let holed = FakeCtLog::start(shape.entries.clone());
    holed.set_max_batch(max_batch);
    let whole = FakeCtLog::start(Vec::new());
    let list = ctlog::list_file(name, &[&holed, &whole], false);
    let env: Vec<(&str, &str)> = policy.map(|p| ("CT_FEED_HOLES", p)).into_iter().collect();
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &env);
    TwoLogs {
        holed,
        whole,
        shape,
        feed,
        hook,
        svc,
        _db: db,
    }
}

impl TwoLogs {
    /// Sends the holed log's delivered entries from `from` to `to` (exclusive),
    /// each next to an entry of the whole log, in order, 256 indices every 100 ms
    /// (well within what the workers' queue takes: a dropped frame would be a hole
    /// the test did not make).
    fn send(&self, from: usize, to: usize) {
        let (holed, whole) = (self.holed.url(), self.whole.url());
        for index in from..to {
            if !self.shape.missing[index] {
                self.feed.send(FeedCmd::Text(frame(&holed, index)));
            }
            self.feed.send(FeedCmd::Text(frame(&whole, index)));
            if index % 256 == 255 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// One sample of `name{log="<log>",...}` (`extra` holds further labels).
    fn metric(&self, name: &str, log: &FakeCtLog, extra: &str) -> f64 {
        self.svc
            .metric(&format!("{name}{{log=\"{}\"{extra}}}", log.url()))
    }

    fn backfilled(&self, outcome: &str) -> f64 {
        self.metric(
            "certwatch_ct_backfill_entries_total",
            &self.holed,
            &format!(",outcome=\"{outcome}\""),
        )
    }

    /// Waits until every missing entry of the holed log was reported and fetched,
    /// counted or failed, and backfill has gone quiet (no new request or outcome for
    /// two seconds); returns (fetched, skipped, failed); nothing is abandoned (no gap is over the cap).
    fn settled(&self) -> (f64, f64, f64) {
        let missing = self.shape.missing_entries() as f64;
        let outcomes = || {
            (
                self.backfilled("fetched"),
                self.backfilled("skipped"),
                self.backfilled("failed"),
            )
        };
        let done = wait_until(WAIT, || {
            let (fetched, skipped, failed) = outcomes();
            self.metric("certwatch_ct_log_gap_entries_total", &self.holed, "") == missing
                && fetched + skipped + failed >= missing
        });
        assert!(
            done,
            "{missing} missing entries, not all settled: {:?}, gap entries {}",
            outcomes(),
            self.metric("certwatch_ct_log_gap_entries_total", &self.holed, "")
        );
        assert_eq!(self.backfilled("abandoned"), 0.0, "no gap is over the cap");
        let dropped = self.svc.metric("certwatch_ct_messages_dropped_total");
        assert_eq!(dropped, 0.0, "the service dropped feed frames");
        let mut last = (outcomes(), self.holed.hits(""));
        let quiet = wait_until(WAIT, || {
            std::thread::sleep(Duration::from_secs(2));
            let now = (outcomes(), self.holed.hits(""));
            std::mem::replace(&mut last, now) == now
        });
        assert!(quiet, "backfill never went quiet: {last:?}");
        last.0
    }

    /// The whole log: delivered entirely, nothing missing, never fetched.
    fn assert_the_whole_log_untouched(&self) {
        let len = self.shape.missing.len() as f64;
        assert_eq!(
            self.metric("certwatch_ct_log_entries_seen_total", &self.whole, ""),
            len
        );
        assert_eq!(
            self.metric("certwatch_ct_log_gap_entries_total", &self.whole, ""),
            0.0
        );
        assert_eq!(self.whole.hits(""), 0, "nothing of the whole log fetched");
    }

    /// Deliveries of the watched certificate within `within`: their `detected_via`.
    fn watched_alerts(&self, within: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Some(rx) = self.hook.recv(left) else {
                break;
            };
            let body = rx.json();
            if body.to_string().contains(WATCHED) {
                out.push(body["detected_via"].as_str().unwrap_or("?").to_string());
            }
        }
        out
    }
}

/// The default, `count`: the holed log turns dense at its tenth gap; its gaps are
/// counted as skipped, not fetched. The first few holes arrive alone (at most 8 in
/// the first 16 entries, fetched one by one while the log is not yet dense);
/// whatever the pace, the log is asked fewer than `DENSE_MIN_GAPS` times, not once
/// per hole.
#[test]
fn a_deduplicating_feed_is_counted_by_default_with_a_bounded_number_of_requests() {
    let shape = Holed::new(3000, 1500, 13);
    let first = 16;
    let s = two_logs_served("holes-count", None, shape, 32);
    s.send(0, first);
    std::thread::sleep(Duration::from_millis(1500));
    for chunk in (first..3000).step_by(500) {
        s.send(chunk, (chunk + 500).min(3000));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (fetched, skipped, failed) = s.settled();
    let missing = s.shape.missing_entries() as f64;
    let requests = s.holed.hits("ct/v1/get-entries");
    eprintln!(
        "count: {} holes, {missing} missing: {fetched} fetched, {skipped} skipped, \
         {failed} failed, {requests} requests",
        s.shape.holes()
    );
    assert!(
        s.shape.holes() > 500,
        "many small holes: {}",
        s.shape.holes()
    );
    assert_eq!(failed, 0.0);
    assert_eq!(fetched + skipped, missing);
    // Only gaps taken before the tenth are fetched, one request each.
    let before_dense = DENSE_MIN_GAPS as usize - 1;
    assert!(
        requests <= before_dense,
        "{requests} requests for {} holes",
        s.shape.holes()
    );
    assert!(
        fetched <= (before_dense * s.shape.longest_hole()) as f64,
        "only gaps before the log turned dense are fetched: {fetched}"
    );
    // Nothing comes due later: the requests stay bounded. Every hole is counted by
    // now (`settled`); a hole opened by the last frames would come due one settle
    // time after them and be taken at the next tick: the window outlasts both.
    let settle = certwatch::coverage::gaps::Settings::default().settle;
    std::thread::sleep(settle + 2 * certwatch::sources::backfill::thread::TICK);
    assert_eq!(s.holed.hits("ct/v1/get-entries"), requests);
    s.assert_the_whole_log_untouched();
    // The watched certificate was in a hole and is not fetched: the cost of `count`.
    assert!(s.watched_alerts(Duration::from_secs(2)).is_empty());
}

/// `coalesce`: the holed log's gaps are fetched in whole 256-entry stretches from
/// the tick it turns dense, so the requests are bounded by its entries / 256 (plus
/// the few gaps of a tick before it turned dense), and the watched certificate in a
/// hole is alerted, found by backfill.
#[test]
fn a_deduplicating_feed_is_fetched_in_whole_stretches_with_coalesce() {
    const LEN: usize = 3072;
    let s = two_logs_served(
        "holes-coalesce",
        Some("coalesce"),
        Holed::new(LEN, 2000, 17),
        256,
    );
    s.send(0, LEN);
    let (fetched, skipped, failed) = s.settled();
    let requests = s.holed.hits("ct/v1/get-entries");
    eprintln!(
        "coalesce: {} holes, {} missing: {fetched} fetched (with the entries between \
         holes), {skipped} skipped, {failed} failed, {requests} requests",
        s.shape.holes(),
        s.shape.missing_entries()
    );
    assert_eq!((skipped, failed), (0.0, 0.0));
    assert!(fetched >= s.shape.missing_entries() as f64);
    let bound = LEN / 256 + 2 + DENSE_MIN_GAPS as usize;
    assert!(
        requests <= bound,
        "{requests} requests for {} holes (bound {bound})",
        s.shape.holes()
    );
    assert_eq!(s.watched_alerts(Duration::from_secs(10)), ["backfill"]);
    s.assert_the_whole_log_untouched();
}

/// `fetch`: the holed log turns dense all the same, and every gap is fetched on its
/// own (one get-entries page each), the watched certificate among them.
#[test]
fn a_deduplicating_feed_has_every_gap_fetched_with_fetch() {
    const LEN: usize = 160;
    let s = two_logs_served("holes-fetch", Some("fetch"), Holed::new(LEN, 90, 19), 32);
    s.send(0, LEN);
    let (fetched, skipped, failed) = s.settled();
    let missing = s.shape.missing_entries() as f64;
    let requests = s.holed.hits("ct/v1/get-entries");
    assert!(
        s.shape.holes() > DENSE_MIN_GAPS as usize,
        "dense: {} holes",
        s.shape.holes()
    );
    assert_eq!((fetched, skipped, failed), (missing, 0.0, 0.0));
    assert_eq!(requests, s.shape.holes(), "one request per gap");
    assert_eq!(s.watched_alerts(Duration::from_secs(10)), ["backfill"]);
    s.assert_the_whole_log_untouched();
}
