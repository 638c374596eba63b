//! Coverage and backfill end to end (issue 13): the real pipeline with a fake
//! certstream feed whose messages name a `FakeCtLog` (real HTTP) through a trusted
//! log list file, a real Postgres database and a fake webhook receiver.

use crate::kit::ctlog::{self, FakeCtLog, FakeEntry, fixture_entries, list_file};
use crate::kit::feed::FeedCmd;
use crate::kit::service::{self, Running, db_feed_and_webhook};
use crate::kit::wait::wait_until;
use crate::kit::{FakeFeed, FakeWebhook, TestDb};
use std::time::Duration;

/// Long enough for a hole to settle (5 s), the backfill tick (1 s), the grace
/// period (1 s) and delivery.
const WAIT: Duration = Duration::from_secs(30);
/// The fixture entry watched (`tiny.example.com`, serial 0F: no other entry
/// shares its issuance).
const WATCHED: &str = "tiny.example.com";

/// The fixture certificates as log entries, and their feed lines rewritten to name
/// `log_url` and their index in the log.
fn entries_and_lines(log_url: &str) -> (Vec<FakeEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut lines = Vec::new();
    for (i, (entry, line)) in fixture_entries().into_iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(&line).expect("fixture json");
        v["data"]["source"]["url"] = log_url.into();
        v["data"]["cert_index"] = (i as u64).into();
        entries.push(entry);
        lines.push(v.to_string());
    }
    (entries, lines)
}

/// The kit's database watching `WATCHED`, fake feed and webhook receiver
/// (`db_feed_and_webhook`), with a fake log of the fixture certificates and their
/// feed lines naming it.
struct FixtureLog {
    db: TestDb,
    feed: FakeFeed,
    hook: FakeWebhook,
    log: FakeCtLog,
    lines: Vec<String>,
}

fn fixture_log() -> FixtureLog {
    let (db, feed, hook) = db_feed_and_webhook(&[WATCHED]);
    let (entries, _) = entries_and_lines("");
    let log = FakeCtLog::start(entries);
    let (_, lines) = entries_and_lines(&log.url());
    FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    }
}

fn watched_index(lines: &[String]) -> usize {
    lines
        .iter()
        .position(|l| l.contains(&format!("\"{WATCHED}\"")))
        .expect("the watched fixture")
}

fn start(db: &TestDb, feed: &FakeFeed, hook: &FakeWebhook, list: &std::path::Path) -> Running {
    service::start_covered(db, feed, Some(hook), list, &[])
}

/// The deliveries for the watched certificate within `within`: (delivery id, body).
/// Every delivery must carry its `X-CT-Delivery` id (a missing one would compare
/// equal to another missing one).
fn deliveries(hook: &FakeWebhook, within: Duration) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Some(rx) = hook.recv(left) else { break };
        let body = rx.json();
        if body.to_string().contains(WATCHED) {
            let id = rx
                .header("X-CT-Delivery")
                .unwrap_or_else(|| panic!("a delivery without X-CT-Delivery: {rx:?}"));
            assert!(!id.is_empty(), "an empty X-CT-Delivery: {rx:?}");
            out.push((id.to_string(), body));
        }
    }
    out
}

/// Runs the feed with or without the watched entry; returns the watched
/// certificate's deliveries and the log's get-entries request count.
fn run(skip_watched: bool, name: &str) -> (Vec<(String, serde_json::Value)>, usize) {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file(name, &[&log], false);
    let svc = start(&db, &feed, &hook, &list);
    let skip = watched_index(&lines);
    for (i, line) in lines.iter().enumerate() {
        if skip_watched && i == skip {
            continue;
        }
        feed.send(FeedCmd::Text(line.clone()));
    }
    let got = deliveries(
        &hook,
        Duration::from_secs(if skip_watched { 20 } else { 8 }),
    );
    let hits = log.hits("ct/v1/get-entries");
    drop(svc);
    (got, hits)
}

#[test]
fn an_entry_the_feed_skipped_is_alerted_by_backfill_once_with_the_feeds_delivery_id() {
    let (by_feed, feed_hits) = run(false, "feed");
    assert_eq!(by_feed.len(), 1, "{by_feed:?}");
    assert_eq!(by_feed[0].1["detected_via"], "feed");
    assert_eq!(feed_hits, 0, "nothing was missing, nothing fetched");

    let (by_backfill, hits) = run(true, "skip");
    assert_eq!(by_backfill.len(), 1, "one alert: {by_backfill:?}");
    assert_eq!(by_backfill[0].1["detected_via"], "backfill");
    assert!(hits >= 1, "the gap was fetched");
    // Both ids are present and non-empty (`deliveries`), so equal means the same id.
    assert_eq!(
        by_backfill[0].0, by_feed[0].0,
        "the same delivery id as the feed would have given"
    );
}

#[test]
fn an_issuance_found_by_backfill_and_then_on_the_feed_is_one_alert() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("dup", &[&log], false);
    let svc = start(&db, &feed, &hook, &list);
    let watched = watched_index(&lines);
    feed.send(FeedCmd::Text(lines[watched - 1].clone()));
    feed.send(FeedCmd::Text(lines[watched + 1].clone()));
    let first = deliveries(&hook, Duration::from_secs(20));
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1["detected_via"], "backfill");
    // The feed delivers it late after all: the same issuance, no second alert.
    feed.send(FeedCmd::Text(lines[watched].clone()));
    let again = deliveries(&hook, Duration::from_secs(4));
    assert!(again.is_empty(), "{again:?}");
    drop(svc);
}

#[test]
fn a_feed_naming_a_log_not_in_the_list_causes_no_request() {
    let (db, feed, hook) = db_feed_and_webhook(&[WATCHED]);
    let (entries, _) = entries_and_lines("");
    let listed = FakeCtLog::start(entries.clone());
    let unlisted = FakeCtLog::start(entries.clone());
    // A second listed log with a hole made just after: once that hole is fetched,
    // backfill has settled and taken whatever the unlisted log's holes could have
    // become (the positive signal that they had their chance).
    let control = FakeCtLog::start(entries);
    let (_, lines) = entries_and_lines(&unlisted.url());
    let list = list_file("unknown", &[&listed, &control], false);
    let svc = start(&db, &feed, &hook, &list);
    for (i, line) in lines.iter().enumerate() {
        if i % 2 == 0 {
            feed.send(FeedCmd::Text(line.clone()));
        }
    }
    for index in [0, 2] {
        feed.send(FeedCmd::Text(
            ctlog::unwatched_frame(&control.url(), index).to_string(),
        ));
    }
    assert!(wait_until(Duration::from_secs(10), || svc
        .metric("certwatch_ct_unknown_log_messages_total")
        as usize
        == lines.len().div_ceil(2)));
    let fetched = format!(
        "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"fetched\"}}",
        control.url()
    );
    assert!(
        wait_until(WAIT, || svc.metric(&fetched) == 1.0),
        "the control log's hole was never fetched"
    );
    // The tick that fetched it may still be fetching other gaps due with it: a
    // second control hole, opened now and fetched a settle time later, proves
    // that tick long over.
    feed.send(FeedCmd::Text(
        ctlog::unwatched_frame(&control.url(), 4).to_string(),
    ));
    assert!(
        wait_until(WAIT, || svc.metric(&fetched) == 2.0),
        "the control log's second hole was never fetched"
    );
    assert_eq!(
        unlisted.hits(""),
        0,
        "never fetched from a log not in the list"
    );
    assert_eq!(listed.hits(""), 0);
}

#[test]
fn a_gap_over_the_cap_is_abandoned_counted_and_the_rest_fetched() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("cap", &[&log], false);
    let svc = service::start_covered(&db, &feed, Some(&hook), &list, &[("BACKFILL_MAX_GAP", "3")]);
    feed.send(FeedCmd::Text(lines[0].clone()));
    feed.send(FeedCmd::Text(lines[lines.len() - 1].clone()));
    let label = log.url();
    let abandoned =
        format!("certwatch_ct_backfill_entries_total{{log=\"{label}\",outcome=\"abandoned\"}}");
    let fetched =
        format!("certwatch_ct_backfill_entries_total{{log=\"{label}\",outcome=\"fetched\"}}");
    let missing = (lines.len() - 2) as f64;
    assert!(
        wait_until(WAIT, || svc.metric(&abandoned) == missing - 3.0
            && svc.metric(&fetched) == 3.0),
        "{} abandoned, {} fetched",
        svc.metric(&abandoned),
        svc.metric(&fetched)
    );
}

#[test]
fn a_rate_limited_log_is_asked_again_after_retry_after() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("429", &[&log], false);
    let svc = start(&db, &feed, &hook, &list);
    log.throttle_next(1, 429, Some("3"));
    let watched = watched_index(&lines);
    feed.send(FeedCmd::Text(lines[watched - 1].clone()));
    feed.send(FeedCmd::Text(lines[watched + 1].clone()));
    let got = deliveries(&hook, Duration::from_secs(25));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["detected_via"], "backfill");
    let agents = log.user_agents();
    assert!(agents.len() >= 2, "{agents:?}");
    assert!(
        agents.iter().all(|a| a.starts_with("certwatch/")),
        "{agents:?}"
    );
    drop(svc);
}

#[test]
fn a_tiled_log_is_backfilled_from_data_tiles_including_the_partial_one() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("tiled", &[&log], true);
    let svc = start(&db, &feed, &hook, &list);
    let watched = watched_index(&lines);
    feed.send(FeedCmd::Text(lines[watched - 1].clone()));
    feed.send(FeedCmd::Text(lines[watched + 1].clone()));
    let got = deliveries(&hook, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["detected_via"], "backfill");
    assert!(log.hits("tile/data/") >= 1, "read from a data tile");
    assert!(log.hits("checkpoint") >= 1);
    drop(svc);
}

/// The series of `log`'s entries seen on the feed.
fn seen_series(log: &FakeCtLog) -> String {
    format!(
        "certwatch_ct_log_entries_seen_total{{log=\"{}\"}}",
        log.url()
    )
}

/// The stored position of every log: (log URL, position).
fn stored_positions(db: &TestDb) -> Vec<(String, i64)> {
    db.client()
        .query(
            "SELECT log_url, position FROM public.certwatch_log_positions",
            &[],
        )
        .expect("positions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_restart_is_backfilled_from_the_stored_position_even_when_the_list_cannot_be_read() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("restart", &[&log], false);
    let watched = watched_index(&lines);
    assert!(watched >= 4, "the watched entry has entries before it");
    let stored_at = |position: usize| vec![(log.url(), position as i64)];

    // First run: the feed delivers everything before `watched - 3`; the position is
    // saved while the service runs (every 10 s: what a SIGKILL would leave).
    let svc = start(&db, &feed, &hook, &list);
    let send_until = |end: usize, from: usize| {
        for line in &lines[from..end] {
            feed.send(FeedCmd::Text(line.clone()));
        }
        assert!(
            wait_until(Duration::from_secs(10), || svc.metric(&seen_series(&log))
                == end as f64),
            "seen {}",
            svc.metric(&seen_series(&log))
        );
    };
    send_until(watched - 3, 0);
    assert!(
        wait_until(Duration::from_secs(15), || stored_positions(&db)
            == stored_at(watched - 3)),
        "saved while running: {:?}",
        stored_positions(&db)
    );
    // Two more, and the service stops well before the next periodic save: the
    // drain saves them.
    send_until(watched - 1, watched - 3);
    drop(svc);
    assert_eq!(
        stored_positions(&db),
        stored_at(watched - 1),
        "the drain saved where the feed was"
    );
    assert_eq!(log.hits(""), 0, "nothing was missing in the first run");

    // Meanwhile `watched - 1` and `watched` were logged. The list file is gone:
    // the copy kept in Postgres is used.
    std::fs::remove_file(&list).expect("remove the list file");
    let feed = FakeFeed::start();
    let svc = start(&db, &feed, &hook, &list);
    feed.send(FeedCmd::Text(lines[watched + 1].clone()));
    let got = deliveries(&hook, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["detected_via"], "backfill");
    let fetched = format!(
        "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"fetched\"}}",
        log.url()
    );
    assert_eq!(svc.metric(&fetched), 2.0, "exactly the two entries missed");
    drop(svc);
    assert_eq!(
        stored_positions(&db),
        vec![(log.url(), (watched + 2) as i64)]
    );
}

#[test]
fn two_replicas_on_one_database_fetch_a_gap_once_and_alert_once() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let (entries, _) = entries_and_lines("");
    let log = FakeCtLog::start(entries);
    let (_, lines) = entries_and_lines(&log.url());
    let list = list_file("replicas", &[&log], false);
    let (feed_a, feed_b) = (FakeFeed::start(), FakeFeed::start());
    let a = start(&db, &feed_a, &hook, &list);
    let b = start(&db, &feed_b, &hook, &list);
    let watched = watched_index(&lines);
    // Both feeds skip the watched entry at the same moment.
    for feed in [&feed_a, &feed_b] {
        feed.send(FeedCmd::Text(lines[watched - 1].clone()));
        feed.send(FeedCmd::Text(lines[watched + 1].clone()));
    }
    let got = deliveries(&hook, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one alert: {got:?}");
    let series = |outcome: &str| {
        format!(
            "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"{outcome}\"}}",
            log.url()
        )
    };
    let (fetched, other) = (series("fetched"), series("other_replica"));
    assert_eq!(
        a.metric(&fetched) + b.metric(&fetched),
        1.0,
        "fetched by one replica only"
    );
    assert_eq!(
        a.metric(&other) + b.metric(&other),
        1.0,
        "the other skipped it"
    );
    assert_eq!(log.hits("ct/v1/get-entries"), 1);
    // The range read is marked done: a replica under another name (a restart on
    // another port, a third replica) skips it rather than waiting out the lease,
    // and never takes it for another's unfinished work.
    assert!(wait_until(Duration::from_secs(10), || {
        let rows = db
            .client()
            .query("SELECT done FROM public.certwatch_backfill_claims", &[])
            .unwrap();
        !rows.is_empty() && rows.iter().all(|r| r.get::<_, bool>(0))
    }));
}

#[test]
fn certwatch_backfill_reads_a_range_once_alerts_what_matches_and_exits() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let (entries, _) = entries_and_lines("");
    let total = entries.len();
    let log = FakeCtLog::start(entries.clone());
    let list = list_file("command", &[&log], false);
    // Fetching a few pages, one grace period and one delivery: well within the
    // deadline, past which the command is killed and the test fails.
    let run = |log_url: &str, to: usize| {
        crate::kit::child::run(
            crate::process::certwatch()
                .env("POSTGRES_DSN", db.dsn())
                .env("CT_LOG_LIST", &list)
                .env("WEBHOOK_URL", hook.url())
                .env("SUSPICIOUS_GRACE_S", "1")
                .env("LOG_LEVEL", "warn")
                .args(["backfill", "--log", log_url, "--from", "0", "--to"])
                .arg(to.to_string()),
            Duration::from_secs(60),
        )
    };
    let out = run(&log.url(), total - 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{out:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{total} read, 1 matched")),
        "{stdout}"
    );
    // Delivered before the command exited.
    let got = deliveries(&hook, Duration::from_secs(1));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["detected_via"], "backfill");
    let pages = log.hits("ct/v1/get-entries");
    assert_eq!(pages, total.div_ceil(32), "pages of the log's batch size");

    // Again: read again, alerted once only.
    let out = run(&log.url(), total - 1);
    assert!(out.status.success(), "{out:?}");
    assert!(deliveries(&hook, Duration::from_secs(2)).is_empty());

    // A log the list does not name: refused (exit 2), never asked.
    let other = FakeCtLog::start(entries);
    let out = run(&other.url(), 3);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a log of the trusted list"),
        "{out:?}"
    );
    assert_eq!(other.hits(""), 0);
}

#[test]
fn an_index_beyond_the_logs_tree_does_not_blind_the_log() {
    let FixtureLog {
        db,
        feed,
        hook,
        log,
        lines,
    } = fixture_log();
    let list = list_file("beyond", &[&log], false);
    let svc = start(&db, &feed, &hook, &list);
    let watched = watched_index(&lines);
    feed.send(FeedCmd::Text(lines[0].clone()));
    // A broken (or hostile) server names an index the log never had.
    let mut bogus: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    bogus["data"]["cert_index"] = 50_000_000u64.into();
    feed.send(FeedCmd::Text(bogus.to_string()));
    let gap_entries = format!(
        "certwatch_ct_log_gap_entries_total{{log=\"{}\"}}",
        log.url()
    );
    assert!(wait_until(WAIT, || svc.metric(&gap_entries) > 0.0));
    assert!(
        wait_until(Duration::from_secs(5), || log.hits("ct/v1/get-sth") >= 1),
        "the tree size was asked"
    );
    // Once backfill has the tree size it drops the bogus gap, forgets the log and
    // seeds it again at the gap's start (1): from then on entry 2 opens the hole
    // [1, 2), which `/healthz` counts as an open gap entry for the settle time (5 s).
    // Until then entry 2 falls inside the taken bogus gap (no hole) and is forgotten
    // with it. So entry 2 is sent until that hole shows: the positive signal that
    // the log is tracked again, before the rest of the sequence is sent.
    let probe = 2;
    assert_ne!(probe, watched, "the probe is not the watched entry");
    let open_gap_entries = || {
        let (_, body) = svc.get("/healthz");
        let json: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
        json["coverage"]["open_gap_entries"].as_i64().unwrap_or(0)
    };
    let tracked_again = wait_until(WAIT, || {
        feed.send(FeedCmd::Text(lines[probe].clone()));
        // The hole is published at the next tick (1 s) and stays open 5 s.
        wait_until(certwatch::sources::backfill::thread::TICK * 2, || {
            open_gap_entries() >= 1
        })
    });
    assert!(
        tracked_again,
        "entry {probe} never opened a hole: the log was not seeded again"
    );
    // The real sequence goes on, without the watched entry: still tracked, so the
    // skipped entry is fetched and alerted.
    for line in &lines[probe + 1..] {
        if !line.contains(&format!("\"{WATCHED}\"")) {
            feed.send(FeedCmd::Text(line.clone()));
        }
    }
    let got = deliveries(&hook, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["detected_via"], "backfill");
    let abandoned = format!(
        "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"abandoned\"}}",
        log.url()
    );
    assert_eq!(svc.metric(&abandoned), 0.0, "nothing counted as abandoned");
    drop(svc);
    let stored = stored_positions(&db);
    assert_eq!(stored, vec![(log.url(), lines.len() as i64)], "{watched}");
}
