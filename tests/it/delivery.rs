//! Webhook delivery: the payload, its signature, retries and the recorded outcome.

use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{ClosingWebhook, FakeFeed, FakeWebhook, FeedCmd, TestDb, wait_until};
use hmac::{KeyInit, Mac};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_payload_has_the_seed_fields_and_a_signature_over_the_exact_body() {
    let (db, feed, hook) = db_feed_and_webhook(&["ethereum.org"]);
    let cert = Cert::new(&["foo.ethereum.org", "bar.example.com"]);
    db.inventory(&cert);
    let _svc = service::start(&db, &feed, Some(&hook), &[("WEBHOOK_SECRET", "s3cret")]);
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(cert.frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    assert_eq!(rx.method, "POST");
    assert_eq!(rx.header("Content-Type"), Some("application/json"));
    assert_eq!(rx.header("X-CT-Event"), Some("match"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&rx.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        rx.header("X-CT-Signature"),
        Some(format!("sha256={expected}").as_str())
    );

    let body = rx.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected_keys = vec![
        "fingerprint_sha1",
        "severity",
        "matched_entries",
        "matched_sans",
        "all_sans",
        "issuer_o",
        "issuer_cn",
        "not_before",
        "not_after",
        "lifetime_days",
        "source_log",
        "cert_link",
        "serial",
        "update_type",
        "seen_at",
        // certwatch extension (issue 13)
        "detected_via",
    ];
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    expected_keys.sort();
    assert_eq!(sorted_keys, expected_keys);
    assert_eq!(body["fingerprint_sha1"], cert.fingerprint_hex());
    assert_eq!(body["severity"], "info");
    assert_eq!(body["matched_entries"], serde_json::json!(["ethereum.org"]));
    assert_eq!(
        body["matched_sans"],
        serde_json::json!(["foo.ethereum.org"])
    );
    assert_eq!(
        body["all_sans"],
        serde_json::json!(["foo.ethereum.org", "bar.example.com"])
    );
    assert_eq!(body["issuer_o"], "Fake CT Test PKI");
    assert_eq!(body["issuer_cn"], "Fake Issuing CA E1");
    assert_eq!(body["not_before"], serde_json::json!(cert.not_before));
    assert_eq!(body["not_after"], serde_json::json!(cert.not_after));
    assert_eq!(body["lifetime_days"], serde_json::json!(90.0));
    assert_eq!(body["source_log"], "Fake log");
    assert!(body["cert_link"].as_str().unwrap().contains("get-entries"));
    assert_eq!(body["serial"], cert.serial.trim_start_matches('0'));
    assert_eq!(body["update_type"], "X509LogEntry");
    assert!(body["seen_at"].is_i64(), "{body}");
    assert!(wait_until(WAIT, || db
        .alerts()
        .first()
        .is_some_and(|r| r.delivered)));
    let row = &db.alerts()[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.delivery_id, rx.header("X-CT-Delivery").unwrap());
}

#[test]
fn a_500_then_a_200_is_delivered_with_the_same_delivery_id() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    hook.script(&[500]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["x.example.com"]).frame()));
    let first = hook.recv(WAIT).expect("first attempt");
    let second = hook.recv(WAIT).expect("the retry");
    assert_eq!(
        first.header("X-CT-Delivery"),
        second.header("X-CT-Delivery")
    );
    assert_eq!(first.body, second.body);
    assert!(wait_until(WAIT, || db
        .alerts()
        .first()
        .is_some_and(|r| r.delivered)));
    assert_eq!(db.alerts()[0].attempts, 2);
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="failure"}"#),
        1.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="success"}"#),
        1.0
    );
}

#[test]
fn three_failures_leave_the_alert_undelivered_and_counted() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    hook.script(&[500, 502, 503, 200]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let started = std::time::Instant::now();
    feed.send(FeedCmd::Text(Cert::new(&["y.example.com"]).frame()));
    for _ in 0..3 {
        hook.recv(WAIT).expect("an attempt");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "backoff 1 s then 4 s"
    );
    hook.expect_none(Duration::from_secs(2));
    assert!(wait_until(WAIT, || svc
        .metric("certwatch_webhook_gave_up_total")
        == 1.0));
    let row = &db.alerts()[0];
    assert!(!row.delivered);
    assert_eq!(row.attempts, 3);
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("webhook #1 (127.0.0.1:") && error.ends_with(": HTTP 503"),
        "{error}"
    );
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="failure"}"#),
        3.0
    );
}

#[test]
fn observer_mode_records_without_delivering() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["z.example.com"]).frame()));
    assert!(wait_until(WAIT, || db.alerts().len() == 1));
    assert!(!db.alerts()[0].delivered);
    assert_eq!(
        svc.metric(r#"certwatch_alerts_total{severity="suspicious"}"#),
        1.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="success"}"#),
        0.0
    );
}

#[test]
fn alerts_reuse_one_webhook_connection() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let mut peers = Vec::new();
    for i in 0..4 {
        // One at a time, so each finds the previous one's connection idle.
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("k{i}.example.com")]).frame(),
        ));
        let rx = hook.recv(WAIT).expect("a delivery");
        peers.push(rx.peer.expect("a TCP peer"));
    }
    peers.dedup();
    assert_eq!(
        peers.len(),
        1,
        "every alert after the first goes over the kept-alive connection: {peers:?}"
    );
}

#[test]
fn a_dead_webhook_does_not_slow_the_feed() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    // A listener that accepts and never answers: every POST runs into the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let svc = service::start(
        &db,
        &feed,
        None,
        &[
            ("WEBHOOK_URL", url.as_str()),
            ("WEBHOOK_TIMEOUT_S", "5"),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    for i in 0..5 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("h{i}.example.com")]).frame(),
        ));
    }
    for _ in 0..500 {
        feed.send(FeedCmd::Text(Cert::new(&["unrelated.example.org"]).frame()));
    }
    assert!(wait_until(WAIT, || svc.metric(
        r#"certwatch_ct_messages_total{type="certificate_update"}"#
    ) == 505.0));
    assert!(
        wait_until(WAIT, || db.alerts().len() == 5),
        "every alert is recorded while the webhook hangs"
    );
    assert_eq!(svc.metric("certwatch_ct_messages_dropped_total"), 0.0);
    drop(silent);
}

/// The healthy target gets every alert while the hung one still holds its first
/// request: before that request's timeout (5 s) has made a single failure. How
/// long the healthy target takes: `bench_delivery`.
#[test]
fn a_hung_target_holds_up_only_itself() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, hung, healthy) = (
        FakeFeed::start(),
        FakeWebhook::start(),
        FakeWebhook::start(),
    );
    // Accepts the connection, reads the request, never answers.
    hung.hang(true);
    let urls = format!("{},{}", hung.url(), healthy.url());
    let svc = service::start(
        &db,
        &feed,
        None,
        &[
            ("WEBHOOK_URL", urls.as_str()),
            ("WEBHOOK_TIMEOUT_S", "5"),
            ("SUSPICIOUS_GRACE_S", "0"),
            ("REDELIVERY_INTERVAL_S", "1"),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    let started = Instant::now();
    for i in 0..10 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("t{i}.example.com")]).frame(),
        ));
    }
    let mut healthy_ids = HashSet::new();
    while healthy_ids.len() < 10 && started.elapsed() < Duration::from_secs(20) {
        if let Some(rx) = healthy.recv(Duration::from_millis(100)) {
            healthy_ids.insert(rx.header("X-CT-Delivery").unwrap().to_string());
        }
    }
    // Read at once: the hung target's first attempt has not run out yet. Had the
    // healthy target waited for it, there would be a failure by now.
    let hung_failures = svc.metric(r#"certwatch_webhook_total{result="failure"}"#);
    assert_eq!(healthy_ids.len(), 10, "the healthy target got all 10");
    assert!(
        wait_until(WAIT, || hung.count() >= 1),
        "the hung target holds a request"
    );
    assert_eq!(
        hung_failures, 0.0,
        "the healthy target got its alerts only after the hung one's attempt failed"
    );
    assert!(
        svc.metric(r#"certwatch_queue_depth{queue="webhook #1"}"#) >= 1.0,
        "the hung target's alerts wait in its own queue"
    );
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_queue_depth{queue="webhook #2"}"#)
        == 0.0));
    // The hung target's attempts run into the timeout, then it recovers: every
    // alert reaches it, once, with the same ids.
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_webhook_total{result="failure"}"#)
        >= 1.0));
    assert_eq!(
        db.alerts().iter().filter(|r| r.delivered).count(),
        0,
        "delivered only once both targets accepted"
    );
    hung.hang(false);
    assert!(
        wait_until(Duration::from_secs(60), || db
            .alerts()
            .iter()
            .filter(|r| r.delivered)
            .count()
            == 10),
        "every alert delivered to both targets: {:?}",
        db.alerts()
    );
    eprintln!("and the hung target all 10 after {:?}", started.elapsed());
    let mut answered = HashMap::<String, usize>::new();
    while let Some(rx) = hung.recv(Duration::from_millis(200)) {
        if !rx.hung {
            *answered
                .entry(rx.header("X-CT-Delivery").unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(
        answered.keys().cloned().collect::<HashSet<_>>(),
        healthy_ids,
        "the same delivery ids"
    );
    assert!(
        answered.values().all(|&n| n == 1),
        "each accepted once: {answered:?}"
    );
    healthy.expect_none(Duration::from_millis(500));
}

#[test]
fn a_kept_alive_connection_the_receiver_closed_is_retried_at_once() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    // Keeps each connection open after its first answer, then closes it
    // unanswered when the next alert arrives on it.
    let hook = ClosingWebhook::start();
    let url = hook.url();
    let svc = service::start(
        &db,
        &feed,
        None,
        &[("WEBHOOK_URL", url.as_str()), ("SUSPICIOUS_GRACE_S", "0")],
    );
    assert!(feed.wait_for_client(WAIT));
    for i in 0..3 {
        // One at a time, so each finds the previous one's connection idle.
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("c{i}.example.com")]).frame(),
        ));
        hook.recv(WAIT).expect("delivered");
    }
    // Retried at once on a fresh connection, within the same attempt: no failure
    // counted, one attempt per alert (a retry through the retry heap would count
    // a failure and a second attempt). How long it takes: `bench_delivery`.
    assert_eq!(hook.closed(), 2, "the second and third found it closed");
    assert!(wait_until(WAIT, || db.alerts().iter().all(|r| r.delivered)));
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="failure"}"#),
        0.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="success"}"#),
        3.0
    );
    assert!(
        db.alerts().iter().all(|r| r.attempts == 1),
        "{:?}",
        db.alerts()
    );
}

#[test]
fn the_drain_budget_bounds_every_target_thread_together() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, a, b) = (
        FakeFeed::start(),
        FakeWebhook::start(),
        FakeWebhook::start(),
    );
    a.hang(true);
    b.hang(true);
    let urls = format!("{},{}", a.url(), b.url());
    let svc = service::start(
        &db,
        &feed,
        None,
        &[
            ("WEBHOOK_URL", urls.as_str()),
            ("WEBHOOK_TIMEOUT_S", "6"),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    for i in 0..6 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("d{i}.example.com")]).frame(),
        ));
    }
    assert!(a.recv(WAIT).is_some() && b.recv(WAIT).is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let took = svc.stop();
    eprintln!("drain with two hung targets took {took:?}");
    assert!(
        took < Duration::from_secs(11),
        "the 10 s drain budget is for every target together: {took:?}"
    );
    assert!(
        db.alerts().iter().all(|r| !r.delivered),
        "what is left stays undelivered for the sweep"
    );
}
