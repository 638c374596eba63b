//! Classification through the whole pipeline: inventory by fingerprint and by
//! serial + validity + names, deduplication in memory and in the database, the
//! grace period, collisions.

use crate::kit::cert;
use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{Cert, Inventory};
use crate::kit::{FakeFeed, FeedCmd};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn send(feed: &FakeFeed, cert: &Cert) {
    feed.send(FeedCmd::Text(cert.frame()));
}

fn severity(rx: &crate::kit::Received) -> String {
    rx.json()["severity"].as_str().unwrap().to_string()
}

#[test]
fn precert_of_an_inventoried_cert_is_info_and_its_final_cert_adds_nothing() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let cert = Cert::new(&["shop.example.com", "www.shop.example.com"]);
    db.inventory(&cert);
    let _svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_client(WAIT));
    send(&feed, &cert.precert());
    let first = hook.recv(WAIT).expect("an alert for the precertificate");
    assert_eq!(severity(&first), "info");
    assert_eq!(first.json()["update_type"], "PrecertLogEntry");
    send(&feed, &cert);
    send(
        &feed,
        &cert.precert().in_log("https://other.example/log", 77),
    );
    hook.expect_none(Duration::from_secs(2));
    let rows = db.alerts();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].severity, "info");
}

#[test]
fn a_cert_seen_in_two_logs_alerts_once() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let cert = Cert::new(&["api.example.com"]);
    db.inventory(&cert);
    let _svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_client(WAIT));
    send(&feed, &cert);
    send(&feed, &cert.in_log("https://second.example/log", 5));
    send(&feed, &cert.in_log("https://third.example/log", 9));
    let alert = hook.recv(WAIT).expect("one alert");
    assert_eq!(severity(&alert), "info");
    assert_eq!(alert.json()["fingerprint_sha1"], cert.fingerprint_hex());
    hook.expect_none(Duration::from_secs(2));
    assert_eq!(db.alerts().len(), 1);
}

#[test]
fn a_reused_serial_with_other_names_is_suspicious() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let ours = Cert::new(&["login.example.com"]);
    db.inventory(&ours);
    let mut theirs = ours.precert();
    theirs.names = vec!["login.example.com".into(), "evil.example.com".into()];
    let _svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_client(WAIT));
    send(&feed, &theirs);
    let alert = hook.recv(WAIT).expect("an alert");
    assert_eq!(severity(&alert), "suspicious");
    assert_eq!(
        alert.json()["matched_sans"],
        serde_json::json!(["login.example.com", "evil.example.com"])
    );
}

#[test]
fn a_second_final_cert_claiming_the_same_issuance_alerts_on_its_own() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let ours = Cert::new(&["pay.example.com"]);
    db.inventory(&ours);
    let mut twin = ours.clone();
    twin.fingerprint = cert::colon_hex(&cert::fake_hex("twin"));
    let _svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_client(WAIT));
    send(&feed, &ours);
    assert_eq!(severity(&hook.recv(WAIT).expect("first alert")), "info");
    send(&feed, &twin);
    let second = hook.recv(WAIT).expect("the colliding certificate alerts");
    assert_eq!(severity(&second), "suspicious");
    assert_eq!(second.json()["fingerprint_sha1"], twin.fingerprint_hex());
    assert_eq!(second.json()["serial"], first_serial(&ours));
    send(&feed, &twin.in_log("https://other.example/log", 3));
    hook.expect_none(Duration::from_secs(2));
    let rows = db.alerts();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].delivery_id, rows[1].delivery_id);
}

fn first_serial(cert: &Cert) -> String {
    cert.serial.trim_start_matches('0').to_ascii_uppercase()
}

#[test]
fn an_unknown_cert_is_suspicious_only_after_the_grace_period() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "3")]);
    assert!(feed.wait_for_client(WAIT));
    let started = std::time::Instant::now();
    send(&feed, &Cert::new(&["unknown.example.com"]));
    hook.expect_none(Duration::from_millis(2500));
    let alert = hook
        .recv(WAIT)
        .expect("a suspicious alert after the grace period");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(severity(&alert), "suspicious");
    assert_eq!(alert.header("X-CT-Event"), Some("match"));
}

#[test]
fn a_cert_that_lands_in_the_inventory_during_the_grace_period_is_info() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "3")]);
    assert!(feed.wait_for_client(WAIT));
    let cert = Cert::new(&["late.example.com"]);
    send(&feed, &cert.precert());
    hook.expect_none(Duration::from_millis(1000));
    db.inventory(&cert);
    let alert = hook.recv(WAIT).expect("an alert");
    assert_eq!(severity(&alert), "info");
}

#[test]
fn a_restart_with_the_same_feed_does_not_alert_again() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let known = Cert::new(&["a.example.com"]);
    db.inventory(&known);
    let unknown = Cert::new(&["b.example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_connections(1, WAIT));
    send(&feed, &known);
    send(&feed, &unknown.precert());
    let ids: Vec<String> = (0..2)
        .map(|_| {
            hook.recv(WAIT)
                .expect("alert")
                .header("X-CT-Delivery")
                .unwrap()
                .to_string()
        })
        .collect();
    svc.stop();
    let _svc = service::start(&db, &feed, Some(&hook), &[]);
    assert!(feed.wait_for_connections(2, WAIT));
    send(&feed, &known);
    send(&feed, &unknown);
    send(&feed, &unknown.precert().in_log("https://b.example/log", 1));
    hook.expect_none(Duration::from_secs(3));
    let rows = db.alerts();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| ids.contains(&r.delivery_id)));
}

#[test]
fn unwatched_and_ip_names_never_alert() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    send(&feed, &Cert::new(&["badexample.com"]));
    send(&feed, &Cert::new(&["example.com.evil.net"]));
    send(&feed, &Cert::new(&["192.0.2.1"]));
    let watched = Cert::new(&["*.EXAMPLE.com."]);
    send(&feed, &watched);
    let alert = hook.recv(WAIT).expect("the wildcard alert");
    assert_eq!(
        alert.json()["matched_sans"],
        serde_json::json!(["*.EXAMPLE.com."])
    );
    assert_eq!(
        alert.json()["matched_entries"],
        serde_json::json!(["example.com"])
    );
    hook.expect_none(Duration::from_secs(1));
}

#[test]
fn the_watch_list_is_refreshed_while_running() {
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
    assert_eq!(svc.metric("certwatch_watch_entries"), 1.0);
    db.watch(&["example.net", "*.bücher.example", "not a domain"]);
    assert!(crate::kit::wait_until(WAIT, || svc
        .metric("certwatch_watch_entries")
        == 3.0));
    send(&feed, &Cert::new(&["www.xn--bcher-kva.example"]));
    let alert = hook.recv(WAIT).expect("an alert for the new entry");
    assert_eq!(
        alert.json()["matched_entries"],
        serde_json::json!(["xn--bcher-kva.example"])
    );
}
