//! Life cycle inside the process: the drain records what is still in its grace
//! period, retention cleanup, and a failed watch-list refresh keeping the old list.

use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{FakeFeed, FeedCmd, TestDb, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn shutdown_records_certificates_still_in_their_grace_period() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
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
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
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

/// Makes the test database refuse connections and ends the ones it has, as an
/// outage looks to the service; `restore` lets it back in.
fn cut_off(db: &TestDb) {
    let mut admin = crate::kit::db::admin_client();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{0}\" WITH ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}';",
            db.name()
        ))
        .unwrap();
}

fn restore(db: &TestDb) {
    let mut admin = crate::kit::db::admin_client();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
            db.name()
        ))
        .unwrap();
}

#[test]
fn alerts_during_a_database_outage_are_delivered_then_written_once() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "1")]);
    assert!(feed.wait_for_client(WAIT));
    cut_off(&db);
    let certs: Vec<Cert> = (0..3)
        .map(|i| Cert::new(&[&format!("outage{i}.example.com")]))
        .collect();
    for cert in &certs {
        feed.send(FeedCmd::Text(cert.frame()));
    }
    // Copies during the outage are still deduplicated in memory.
    feed.send(FeedCmd::Text(
        certs[0].in_log("https://other.example/log", 1).frame(),
    ));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let rx = hook
            .recv(WAIT)
            .expect("delivered while the database is down");
        assert_eq!(rx.json()["severity"], "suspicious");
        ids.push(rx.header("X-CT-Delivery").unwrap().to_string());
    }
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_queue_depth{queue="unrecorded"}"#)
        == 3.0));
    let (_, health) = svc.get("/healthz");
    assert!(health.contains(r#""database_reachable":false"#), "{health}");
    // The feed goes on meanwhile.
    feed.send(FeedCmd::Text(Cert::new(&["unrelated.example.org"]).frame()));
    restore(&db);
    assert!(wait_until(Duration::from_secs(20), || svc
        .metric(r#"certwatch_queue_depth{queue="unrecorded"}"#)
        == 0.0));
    let rows = db.alerts();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert!(ids.contains(&row.delivery_id));
        assert!(row.delivered, "{row:?}");
    }
    hook.expect_none(Duration::from_secs(1));
    assert!(svc.metric(r#"certwatch_db_errors_total{op="record"}"#) >= 3.0);
}
