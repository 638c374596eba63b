//! Life cycle inside the process: the drain records what is still in its grace
//! period, retention cleanup, and a failed watch-list refresh keeping the old list.

use crate::support::service::{self, Cert, Inventory};
use crate::support::{FakeFeed, FakeWebhook, FeedCmd, TestDb, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn shutdown_records_certificates_still_in_their_grace_period() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "600")]);
    assert!(feed.wait_for_client(WAIT));
    let known = Cert::new(&["mine.example.com"]);
    let unknown = Cert::new(&["theirs.example.com"]);
    feed.send(FeedCmd::Text(known.precert().frame()));
    feed.send(FeedCmd::Text(unknown.frame()));
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_queue_depth{queue="grace"}"#)
        == 2.0));
    // The inventory learns one of them while both wait.
    db.inventory(&known);
    let took = svc.stop();
    assert!(took < Duration::from_secs(15), "drain took {took:?}");
    let mut rows = db.alerts();
    rows.sort_by(|a, b| a.matched_sans.cmp(&b.matched_sans));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].matched_sans[0].as_str(), rows[0].severity.as_str()),
        ("mine.example.com", "info")
    );
    assert_eq!(
        (rows[1].matched_sans[0].as_str(), rows[1].severity.as_str()),
        ("theirs.example.com", "suspicious")
    );
    assert!(
        rows.iter().all(|r| r.delivered),
        "in-flight deliveries finish within the drain: {rows:?}"
    );
    assert_eq!(hook.count(), 2);
}

#[test]
fn cleanup_prunes_alerts_past_retention_in_batches() {
    let db = TestDb::new();
    db.execute(
        "INSERT INTO public.alerts (issuance_key, delivery_id, severity, created_at)
         SELECT 'old' || g, 'd' || g, 'info', now() - interval '2 days' FROM generate_series(1, 2500) g;
         INSERT INTO public.alerts (issuance_key, delivery_id, severity) VALUES ('fresh', 'f', 'info');",
    );
    let feed = FakeFeed::start();
    let svc = service::start(
        &db,
        &feed,
        None,
        &[("ALERT_RETENTION_S", "86400"), ("CLEANUP_INTERVAL_S", "1")],
    );
    let count = || -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM public.alerts", &[])
            .unwrap()
            .get(0)
    };
    assert!(
        wait_until(WAIT, || count() == 1),
        "old rows pruned, {} left",
        count()
    );
    let kept: String = db
        .client()
        .query_one("SELECT issuance_key FROM public.alerts", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, "fresh");
    assert_eq!(svc.metric("certwatch_alerts_pruned_total"), 2500.0);
}

#[test]
fn a_failed_refresh_keeps_the_current_watch_list() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[
            ("WATCH_REFRESH_INTERVAL_S", "1"),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    db.execute("ALTER TABLE public.intent_current RENAME TO intent_gone");
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_db_errors_total{op="watch_refresh"}"#)
        >= 1.0));
    assert_eq!(svc.metric("certwatch_watch_entries"), 1.0);
    feed.send(FeedCmd::Text(Cert::new(&["still.example.com"]).frame()));
    assert!(
        hook.recv(WAIT).is_some(),
        "matching goes on with the last list"
    );
    db.execute("ALTER TABLE public.intent_gone RENAME TO intent_current");
}
