//! Delivery that loses nothing: several targets with per-target state, the
//! redelivery sweep through a receiver outage, two replicas on one database,
//! the resolved follow-up.

use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{FakeFeed, FakeWebhook, FeedCmd, Received, TestDb, wait_until};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn drain(hook: &FakeWebhook, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while let Some(rx) = hook.recv(deadline.saturating_duration_since(Instant::now())) {
        all.push(rx);
    }
    all
}

fn targets_of(db: &TestDb) -> Vec<(bool, Vec<String>)> {
    db.client()
        .query(
            "SELECT delivered, delivered_targets FROM public.alerts ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn an_outage_across_sweeps_ends_with_every_alert_once_per_target() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, healthy, broken) = (
        FakeFeed::start(),
        FakeWebhook::start(),
        FakeWebhook::start(),
    );
    // Down for the first three rounds of three alerts and one sweep round of each.
    broken.script(&[503; 12]);
    let urls = format!("{},{}", healthy.url(), broken.url());
    let svc = service::start(
        &db,
        &feed,
        None,
        &[
            ("WEBHOOK_URL", urls.as_str()),
            ("SUSPICIOUS_GRACE_S", "0"),
            ("REDELIVERY_INTERVAL_S", "1"),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    let started = Instant::now();
    for i in 0..3 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("o{i}.example.com")]).frame(),
        ));
    }
    assert!(
        wait_until(Duration::from_secs(40), || targets_of(&db)
            .iter()
            .filter(|(d, _)| *d)
            .count()
            == 3),
        "every alert delivered to both targets: {:?}",
        targets_of(&db)
    );
    let drained_in = started.elapsed();
    let healthy_got = drain(&healthy, Duration::from_secs(2));
    let broken_got = drain(&broken, Duration::from_millis(100));
    let ids = |got: &[Received]| {
        got.iter()
            .map(|r| r.header("X-CT-Delivery").unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut healthy_ids = ids(&healthy_got);
    healthy_ids.sort();
    healthy_ids.dedup();
    assert_eq!(
        healthy_got.len(),
        3,
        "the healthy target got each alert once, never a retry"
    );
    assert_eq!(healthy_ids.len(), 3);
    // The broken target saw its failures, then each alert's success, all with the alert's own id.
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for id in ids(&broken_got) {
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(broken_got.len(), 15, "12 refused + 3 accepted");
    let mut broken_ids: Vec<String> = per_id.keys().cloned().collect();
    broken_ids.sort();
    assert_eq!(
        broken_ids, healthy_ids,
        "the same delivery ids on every retry and redelivery"
    );
    for (delivered, targets) in targets_of(&db) {
        assert!(delivered);
        assert_eq!(targets.len(), 2);
    }
    assert!(svc.metric("certwatch_redeliveries_total") >= 3.0);
    assert!(wait_until(WAIT, || svc
        .metric("certwatch_undelivered_alerts")
        == 0.0));
    eprintln!(
        "outage drained in {drained_in:?}; broken target requests {}",
        broken_got.len()
    );
}

#[test]
fn two_replicas_on_one_database_alert_and_deliver_once() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed_a, feed_b, hook) = (FakeFeed::start(), FakeFeed::start(), FakeWebhook::start());
    hook.script(&[500, 500, 500, 500, 500, 500]);
    let extra = [("SUSPICIOUS_GRACE_S", "0"), ("REDELIVERY_INTERVAL_S", "1")];
    let a = service::start(&db, &feed_a, Some(&hook), &extra);
    let b = service::start(&db, &feed_b, Some(&hook), &extra);
    assert!(feed_a.wait_for_client(WAIT) && feed_b.wait_for_client(WAIT));
    let certs: Vec<Cert> = (0..2)
        .map(|i| Cert::new(&[&format!("r{i}.example.com")]))
        .collect();
    for cert in &certs {
        feed_a.send(FeedCmd::Text(cert.frame()));
        feed_b.send(FeedCmd::Text(cert.frame()));
    }
    assert!(wait_until(Duration::from_secs(40), || {
        let rows = db.alerts();
        rows.len() == 2 && rows.iter().all(|r| r.delivered)
    }));
    // A second success could only come from a sweep that claimed a row before it
    // was delivered, or from a target thread still holding an event. Wait until
    // each replica has run a whole sweep since every row was delivered, and holds
    // nothing: then nothing more can be sent.
    a_whole_sweep_ran_on_each(&db, &[&a, &b]);
    for svc in [&a, &b] {
        assert!(wait_until(WAIT, || svc
            .metric(r#"certwatch_queue_depth{queue="deliver"}"#)
            == 0.0));
    }
    let got = drain(&hook, Duration::from_millis(100));
    db.execute("DELETE FROM public.alerts WHERE issuance_key = 'sweep-sentinel'");
    assert_eq!(db.alerts().len(), 2, "one row per certificate");
    assert_eq!(
        got.len(),
        8,
        "6 refused + one success per alert, never a second success"
    );
}

/// Returns once each of `replicas` has run a whole redelivery sweep (claim, hand
/// to its targets, count the backlog) after this call began. The signal: three
/// undelivered rows that no sweep may claim (their next attempt is an hour away)
/// are added, and each replica's `certwatch_undelivered_alerts`, set at the end of
/// a sweep, must reach 3, a value it could not hold before (the test has fewer
/// rows). The rows stay (`issuance_key = 'sweep-sentinel'`) until the caller
/// deletes them.
fn a_whole_sweep_ran_on_each(db: &TestDb, replicas: &[&service::Running]) {
    for i in 0..3 {
        db.execute(&format!(
            "INSERT INTO public.alerts (issuance_key, collision_fingerprint, delivery_id, severity, payload, next_attempt_at)
             VALUES ('sweep-sentinel', 'sentinel-{i}', 'sweep-sentinel-{i}', 'info', '{{}}', now() + interval '1 hour')"
        ));
    }
    for (n, svc) in replicas.iter().enumerate() {
        assert!(
            wait_until(WAIT, || svc.metric("certwatch_undelivered_alerts") == 3.0),
            "replica {n} ran no sweep: undelivered {}",
            svc.metric("certwatch_undelivered_alerts")
        );
    }
}

/// A service (grace 0, sweep every second) that alerted `cert` as suspicious and
/// delivered it: the database, the feed, the receiver, the service and that
/// delivery.
fn a_delivered_suspicious_alert(
    cert: &Cert,
) -> (
    crate::kit::TestDb,
    crate::kit::FakeFeed,
    crate::kit::FakeWebhook,
    service::Running,
    crate::kit::Received,
) {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[("SUSPICIOUS_GRACE_S", "0"), ("REDELIVERY_INTERVAL_S", "1")],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(cert.frame()));
    let first = hook.recv(WAIT).expect("the suspicious alert");
    assert_eq!(first.json()["severity"], "suspicious");
    assert!(wait_until(WAIT, || db
        .alerts()
        .first()
        .is_some_and(|r| r.delivered)));
    (db, feed, hook, svc, first)
}

#[test]
fn a_late_inventory_row_sends_a_resolved_follow_up() {
    let cert = Cert::new(&["late.example.com"]);
    let (db, _feed, hook, svc, first) = a_delivered_suspicious_alert(&cert.precert());
    hook.expect_none(Duration::from_secs(2));
    // Triage: the suspicious alert needs a human, and says so in one row.
    let open = |db: &crate::kit::TestDb| {
        db.client()
            .query(
                "SELECT severity, resolved, names, delivered FROM public.alerts_open",
                &[],
            )
            .unwrap()
    };
    let rows = open(&db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "suspicious");
    assert!(!rows[0].get::<_, bool>(1));
    assert_eq!(rows[0].get::<_, Vec<String>>(2), vec!["late.example.com"]);
    assert!(rows[0].get::<_, bool>(3));
    db.inventory(&cert);
    let follow_up = hook.recv(WAIT).expect("the resolved follow-up");
    assert_eq!(follow_up.header("X-CT-Event"), Some("resolved"));
    assert_ne!(
        follow_up.header("X-CT-Delivery"),
        first.header("X-CT-Delivery")
    );
    let mut expected = first.json();
    expected["severity"] = serde_json::json!("info");
    assert_eq!(
        follow_up.json(),
        expected,
        "the same payload with severity info"
    );
    assert!(wait_until(WAIT, || db.alerts()[0].delivered));
    let resolved: bool = db
        .client()
        .query_one("SELECT resolved_at IS NOT NULL FROM public.alerts", &[])
        .unwrap()
        .get(0);
    assert!(resolved);
    assert!(
        open(&db).is_empty(),
        "a resolved, delivered alert needs nobody"
    );
    assert_eq!(svc.metric("certwatch_reclassified_total"), 1.0);
    hook.expect_none(Duration::from_secs(2));
}

/// The inventory rule is one rule: a precertificate whose inventory row lacks
/// the subject CN that the feed adds to its names is ours when it is classified,
/// so it is also ours when a suspicious alert for it is reconciled later.
#[test]
fn reconciliation_follows_the_classification_rule_for_a_cn_only_difference() {
    // The subject CN is the first name; the inventory lists only the SAN.
    let cert = Cert::new(&["cn.example.com", "san.example.com"]).precert();
    let (db, _feed, hook, svc, _first) = a_delivered_suspicious_alert(&cert);
    let mut inventoried = cert.clone();
    inventoried.names = vec!["san.example.com".into()];
    db.inventory(&inventoried);
    let follow_up = hook.recv(WAIT).expect("the resolved follow-up");
    assert_eq!(follow_up.header("X-CT-Event"), Some("resolved"));
    assert_eq!(follow_up.json()["severity"], "info");
    assert_eq!(svc.metric("certwatch_reclassified_total"), 1.0);
}
