//! Webhook delivery: the payload, its signature, retries and the recorded outcome.

use crate::support::service::{self, setup};
use crate::support::{Cert, Inventory};
use crate::support::{FakeFeed, FeedCmd, TestDb, wait_until};
use hmac::{KeyInit, Mac};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_payload_has_the_seed_fields_and_a_signature_over_the_exact_body() {
    let (db, feed, hook) = setup(&["ethereum.org"]);
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
    let (db, feed, hook) = setup(&["example.com"]);
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
    let (db, feed, hook) = setup(&["example.com"]);
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
    let (db, feed, hook) = setup(&["example.com"]);
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
