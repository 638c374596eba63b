//! Injected faults: the database going away at start and while running (a
//! cluster of the test's own, stopped and restarted), a feed that stalls
//! mid-frame or floods, a webhook that refuses connections.

use crate::kit::cluster::TestCluster;
use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{FakeFeed, FakeWebhook, FeedCmd, TestDb, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn cluster_alerts(cluster: &TestCluster) -> Vec<(String, bool, String)> {
    cluster
        .client()
        .query(
            "SELECT severity, delivered, delivery_id FROM public.alerts ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The service on `cluster` (its own database is only for the helper's
/// defaults), with a fake feed and webhook; `extra` adds settings.
fn start_on_cluster(
    cluster: &TestCluster,
    extra: &[(&str, &str)],
) -> (service::Running, FakeFeed, FakeWebhook) {
    let db = TestDb::new();
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let dsn = cluster.dsn();
    let mut settings = vec![("POSTGRES_DSN", dsn.as_str())];
    settings.extend_from_slice(extra);
    let svc = service::start(&db, &feed, Some(&hook), &settings);
    (svc, feed, hook)
}

#[test]
fn the_database_down_at_start_then_up() {
    let cluster = TestCluster::start();
    cluster.prepare(&["example.com"]);
    cluster.stop();
    let (svc, feed, hook) = start_on_cluster(&cluster, &[("SUSPICIOUS_GRACE_S", "0")]);
    // The first connection attempt fails after the pool's 2 s wait.
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_db_errors_total{op="connect"}"#)
        >= 1.0));
    let (status, body) = svc.get("/healthz");
    assert_eq!(status, 200, "no crash loop: the process is alive");
    assert!(body.contains(r#""database_reachable":false"#), "{body}");
    cluster.restart();
    assert!(
        feed.wait_for_client(Duration::from_secs(40)),
        "starts once the database is back"
    );
    feed.send(FeedCmd::Text(
        Cert::new(&["late-start.example.com"]).frame(),
    ));
    assert!(hook.recv(WAIT).is_some());
    let (_, body) = svc.get("/healthz");
    assert!(body.contains(r#""database_reachable":true"#), "{body}");
}

#[test]
fn a_database_restart_between_alerts_costs_no_false_alarm() {
    let cluster = TestCluster::start();
    cluster.prepare(&["example.com"]);
    let ours = Cert::new(&["ours.example.com"]);
    cluster.inventory(&ours);
    let (_svc, feed, hook) = start_on_cluster(&cluster, &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["first.example.com"]).frame()));
    assert!(hook.recv(WAIT).is_some());
    // Every pooled connection is now closed by the server.
    cluster.stop();
    cluster.restart();
    feed.send(FeedCmd::Text(ours.frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    assert_eq!(
        rx.json()["severity"],
        "info",
        "the inventory lookup runs on a live connection, not a dead pooled one"
    );
    assert!(wait_until(WAIT, || cluster.alerts().len() == 2));
    assert_eq!(cluster.alerts()[1].severity, "info");
}

#[test]
fn the_database_down_while_running_loses_nothing_and_delivers_once() {
    let cluster = TestCluster::start();
    cluster.prepare(&["example.com"]);
    let (svc, feed, hook) = start_on_cluster(
        &cluster,
        &[("SUSPICIOUS_GRACE_S", "1"), ("REDELIVERY_INTERVAL_S", "1")],
    );
    assert!(feed.wait_for_client(WAIT));
    let before = Cert::new(&["before.example.com"]);
    feed.send(FeedCmd::Text(before.frame()));
    assert!(hook.recv(WAIT).is_some());
    cluster.stop();
    let during: Vec<Cert> = (0..5)
        .map(|i| Cert::new(&[&format!("during{i}.example.com")]))
        .collect();
    for cert in &during {
        feed.send(FeedCmd::Text(cert.frame()));
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        let rx = hook
            .recv(WAIT)
            .expect("delivered while the database is down (last watch list)");
        ids.push(rx.header("X-CT-Delivery").unwrap().to_string());
    }
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_queue_depth{queue="unrecorded"}"#)
        == 5.0));
    // Matching and reading go on: a non-matching flood is still counted.
    for _ in 0..200 {
        feed.send(FeedCmd::Text(Cert::new(&["x.example.org"]).frame()));
    }
    assert!(wait_until(WAIT, || svc.metric(
        r#"certwatch_ct_messages_total{type="certificate_update"}"#
    ) >= 206.0));
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart();
    assert!(
        wait_until(Duration::from_secs(30), || svc
            .metric(r#"certwatch_queue_depth{queue="unrecorded"}"#)
            == 0.0),
        "held alerts written once the database is back"
    );
    let rows = cluster_alerts(&cluster);
    assert_eq!(rows.len(), 6, "{rows:?}");
    for id in &ids {
        let row = rows
            .iter()
            .find(|r| &r.2 == id)
            .expect("every alert of the outage is recorded");
        assert!(row.1, "and marked delivered: {row:?}");
    }
    // Nothing is delivered twice: let two sweeps pass.
    hook.expect_none(Duration::from_secs(3));
    assert_eq!(
        svc.metric("certwatch_alerts_unrecorded_overflow_total"),
        0.0
    );
}

/// An acceptance the database could not take (Postgres down when the receiver
/// said yes) is written once the database is back: the row is marked delivered
/// within seconds rather than left to the redelivery sweep when its 5-minute lease
/// ends, and the receiver gets the alert no more times.
#[test]
fn an_acceptance_made_while_the_database_is_down_is_written_when_it_returns() {
    let cluster = TestCluster::start();
    cluster.prepare(&["example.com"]);
    let (_svc, feed, hook) = start_on_cluster(
        &cluster,
        &[("SUSPICIOUS_GRACE_S", "0"), ("REDELIVERY_INTERVAL_S", "1")],
    );
    assert!(feed.wait_for_client(WAIT));
    // Two failures, then the acceptance: attempts at 0, 1 and 5 s.
    hook.script(&[500, 500]);
    feed.send(FeedCmd::Text(Cert::new(&["held.example.com"]).frame()));
    // The row is written before the first attempt.
    let first = hook.recv(WAIT).expect("first attempt");
    cluster.stop();
    let mut ids = vec![first.header("X-CT-Delivery").unwrap().to_string()];
    for _ in 0..2 {
        let rx = hook.recv(WAIT).expect("retried while the database is down");
        ids.push(rx.header("X-CT-Delivery").unwrap().to_string());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    // Long enough for the write of the acceptance to fail.
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart();
    assert!(
        wait_until(Duration::from_secs(30), || cluster_alerts(&cluster)
            .iter()
            .any(|r| r.2 == ids[0] && r.1)),
        "the acceptance is written once the database is back"
    );
    hook.expect_none(Duration::from_secs(4));
}

#[test]
fn a_feed_that_stalls_mid_frame_is_redialled() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[
            ("FEED_SILENCE_S", "2"),
            ("FEED_PING_S", "30"),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(feed.wait_for_connections(1, WAIT));
    // A text frame header announcing 100 bytes, then 10 of them, then nothing.
    let mut partial = vec![0x81, 100];
    partial.extend_from_slice(b"{\"message_");
    feed.send(FeedCmd::Raw(partial));
    assert!(
        feed.wait_for_connections(2, WAIT),
        "the stalled connection is dropped and redialled"
    );
    assert!(wait_until(WAIT, || svc.metric("certwatch_ws_connected") == 1.0));
    feed.send(FeedCmd::Text(
        Cert::new(&["after-stall.example.com"]).frame(),
    ));
    assert!(hook.recv(WAIT).is_some());
}

#[test]
fn a_flood_is_dropped_and_counted_without_losing_the_connection() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    // One worker, and every frame a distinct matched certificate (two queries each):
    // the workers cannot keep up with loopback speed.
    let svc = service::start(
        &db,
        &feed,
        None,
        &[("WORKERS", "1"), ("SUSPICIOUS_GRACE_S", "0")],
    );
    assert!(feed.wait_for_client(WAIT));
    let sent = 6000;
    for i in 0..sent {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("f{i}.example.com")]).frame(),
        ));
    }
    let processed = || svc.metric(r#"certwatch_ct_messages_total{type="certificate_update"}"#);
    let dropped = || svc.metric("certwatch_ct_messages_dropped_total");
    assert!(wait_until(Duration::from_secs(60), || processed()
        + dropped()
        == sent as f64));
    assert!(dropped() > 0.0, "the flood outran one worker");
    assert_eq!(svc.metric("certwatch_ws_connected"), 1.0);
    assert_eq!(svc.metric("certwatch_ws_reconnects_total"), 0.0);
    assert_eq!(feed.connections(), 1);
}

#[test]
fn a_webhook_that_refuses_connections_does_not_hold_up_the_feed() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let svc = service::start(
        &db,
        &feed,
        None,
        &[("WEBHOOK_URL", url.as_str()), ("SUSPICIOUS_GRACE_S", "0")],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["refused.example.com"]).frame()));
    for _ in 0..1000 {
        feed.send(FeedCmd::Text(Cert::new(&["other.example.org"]).frame()));
    }
    assert!(wait_until(WAIT, || svc.metric(
        r#"certwatch_ct_messages_total{type="certificate_update"}"#
    ) == 1001.0));
    assert_eq!(svc.metric("certwatch_ct_messages_dropped_total"), 0.0);
    assert!(wait_until(WAIT, || svc
        .metric(r#"certwatch_webhook_total{result="failure"}"#)
        >= 1.0));
    let error: Option<String> = db
        .client()
        .query_one("SELECT last_error FROM public.alerts", &[])
        .unwrap()
        .get(0);
    assert!(error.unwrap_or_default().to_lowercase().contains("refused"));
}

/// While the database is unreachable, certificates are classified against the
/// last inventory seen: an inventoried certificate is delivered at once as
/// `info`, an unknown one as `suspicious`, both marked `inventory: cached`.
#[test]
fn with_the_database_down_an_inventoried_certificate_is_still_info() {
    let cluster = TestCluster::start();
    cluster.prepare(&["example.com"]);
    let ours = Cert::new(&["ours.example.com"]);
    let ours_precert = Cert::new(&["pre.example.com", "www.pre.example.com"]);
    cluster.inventory(&ours);
    cluster.inventory(&ours_precert);
    let (svc, feed, hook) = start_on_cluster(&cluster, &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    assert!(wait_until(WAIT, || svc
        .metric("certwatch_inventory_snapshot_rows")
        == 2.0));
    cluster.stop();
    feed.send(FeedCmd::Text(ours.frame()));
    let rx = hook
        .recv(WAIT)
        .expect("delivered while the database is down");
    let body = rx.json();
    assert_eq!(body["severity"], "info", "{body}");
    assert_eq!(body["inventory"], "cached", "{body}");
    // A precertificate is ours by serial, validity and names, also from the snapshot.
    feed.send(FeedCmd::Text(ours_precert.precert().frame()));
    let body = hook.recv(WAIT).expect("the precertificate").json();
    assert_eq!(body["severity"], "info", "{body}");
    feed.send(FeedCmd::Text(Cert::new(&["rogue.example.com"]).frame()));
    let body = hook.recv(WAIT).expect("the unknown certificate").json();
    assert_eq!(body["severity"], "suspicious", "{body}");
    assert_eq!(body["inventory"], "cached", "{body}");
    cluster.restart();
}
