//! The feed reader against a misbehaving server: malformed frames, closes,
//! resets, silence, pings.

use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{FakeFeed, FeedCmd, TestDb, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn malformed_frames_are_counted_and_skipped() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let bad = [
        "",
        "not json at all",
        "{",
        "[]",
        "null",
        r#"{"message_type": 5}"#,
        r#"{"data": {}}"#,
        r#"{"message_type":"certificate_update"}"#,
        r#"{"message_type":"certificate_update","data":"x"}"#,
        r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":"x.example.com"}}}"#,
        r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":[null]}}}"#,
        r#"{"message_type":"dns_entries","data":{"a":1}}"#,
    ];
    for frame in bad {
        feed.send(FeedCmd::Text(frame.to_string()));
    }
    feed.send(FeedCmd::Binary(vec![0xff, 0xfe, 0x00]));
    let expected_errors = bad.len() + 1;
    // Well-formed but useless: counted by type, no error.
    feed.send(FeedCmd::Text(
        r#"{"message_type":"heartbeat","timestamp":1.5}"#.into(),
    ));
    feed.send(FeedCmd::Text(
        r#"{"message_type":"dns_entries","data":["a.example.com"]}"#.into(),
    ));
    feed.send(FeedCmd::Text(
        r#"{"message_type":"something_new","data":{}}"#.into(),
    ));
    // A matched certificate with a field of the wrong type is read leniently
    // and alerts: a watched name is never skipped.
    feed.send(FeedCmd::Text(
        r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["m.example.com"],"serial_number":7}}}"#.into(),
    ));
    // A binary frame holding a valid message is read like a text frame.
    feed.send(FeedCmd::Binary(
        Cert::new(&["bin.example.com"]).frame().into_bytes(),
    ));
    let good = Cert::new(&["still-working.example.com"]);
    feed.send(FeedCmd::Text(good.frame()));
    let mut sans = Vec::new();
    for _ in 0..3 {
        sans.push(
            hook.recv(WAIT).expect("alerts after the garbage").json()["matched_sans"][0].clone(),
        );
    }
    sans.sort_by_key(|v| v.to_string());
    assert_eq!(
        sans,
        vec![
            serde_json::json!("bin.example.com"),
            serde_json::json!("m.example.com"),
            serde_json::json!("still-working.example.com")
        ]
    );
    assert_eq!(
        svc.metric("certwatch_ct_parse_errors_total"),
        expected_errors as f64
    );
    assert_eq!(
        svc.metric(r#"certwatch_ct_lenient_certificates_total{reason="identity"}"#),
        1.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_ct_messages_total{type="heartbeat"}"#),
        1.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_ct_messages_total{type="dns_entries"}"#),
        1.0
    );
    assert_eq!(
        svc.metric(r#"certwatch_ct_messages_total{type="other"}"#),
        1.0
    );
    assert_eq!(
        feed.connections(),
        1,
        "garbage frames do not cost the connection"
    );
}

#[test]
fn the_reader_reconnects_after_close_reset_and_garbage() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_connections(1, WAIT));
    assert!(wait_until(WAIT, || svc.metric("certwatch_ws_connected") == 1.0));
    feed.send(FeedCmd::Close);
    assert!(
        feed.wait_for_connections(2, WAIT),
        "reconnects after a close frame"
    );
    feed.send(FeedCmd::Drop);
    assert!(
        feed.wait_for_connections(3, WAIT),
        "reconnects after a reset"
    );
    feed.send(FeedCmd::Raw(vec![0x8f, 0x00, 0x13, 0x37]));
    assert!(
        feed.wait_for_connections(4, WAIT),
        "reconnects after a protocol error"
    );
    assert!(wait_until(WAIT, || svc
        .metric("certwatch_ws_reconnects_total")
        == 3.0));
    assert!(wait_until(WAIT, || svc.metric("certwatch_ws_connected") == 1.0));
    let cert = Cert::new(&["after.example.com"]);
    db.inventory(&cert);
    feed.send(FeedCmd::Text(cert.frame()));
    assert_eq!(
        hook.recv(WAIT).expect("alerts after reconnecting").json()["severity"],
        "info"
    );
}

#[test]
fn a_silent_connection_is_dropped_and_redialled() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(
        &db,
        &feed,
        None,
        &[("FEED_SILENCE_S", "2"), ("FEED_PING_S", "30")],
    );
    assert!(feed.wait_for_connections(1, WAIT));
    // The fake server answers pings with pongs, which count as life; with pings every
    // 30 s and nothing else sent, the connection is silent for 2 s.
    assert!(
        feed.wait_for_connections(2, WAIT),
        "a silent feed is redialled"
    );
    assert!(svc.metric("certwatch_ws_reconnects_total") >= 1.0);
}

#[test]
fn the_client_pings_within_the_configured_interval() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let _svc = service::start(&db, &feed, None, &[("FEED_PING_S", "1")]);
    assert!(feed.wait_for_client(WAIT));
    let started = std::time::Instant::now();
    assert!(
        feed.wait_for_pings(2, Duration::from_secs(4)),
        "two pings within ~2 s"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(feed.connections(), 1, "pongs keep the connection alive");
}

#[test]
fn an_oversized_frame_costs_a_reconnect_not_the_service() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_connections(1, WAIT));
    feed.send(FeedCmd::Text(
        "x".repeat(certwatch::sources::feed::reader::MAX_FRAME_BYTES + 1),
    ));
    assert!(feed.wait_for_connections(2, WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["big.example.com"]).frame()));
    assert!(hook.recv(WAIT).is_some());
    assert!(svc.metric("certwatch_ct_parse_errors_total") >= 1.0);
}
