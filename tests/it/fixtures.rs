//! Every captured and hand-crafted feed sample in `tests/fixtures` parses,
//! and the fixtures run through the pipeline give one alert per issuance.

use crate::kit::Inventory;
use crate::kit::service;
use crate::kit::{FakeFeed, FakeWebhook, FeedCmd, TestDb, wait_until};
use certwatch::cert::EntryType;
use certwatch::sources::feed::{self, Peek};
use std::time::Duration;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn lines(file: &str) -> Vec<String> {
    let path = fixture_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_fixture_line_parses() {
    let mut files = 0;
    for entry in std::fs::read_dir(fixture_dir()).expect("tests/fixtures") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".jsonl") {
            continue;
        }
        files += 1;
        for (n, line) in lines(&name).iter().enumerate() {
            let at = format!("{name}:{}", n + 1);
            match feed::peek(line).unwrap_or_else(|e| panic!("{at}: {e}")) {
                Peek::DnsEntries { count } => {
                    assert!(name.contains("domains"), "{at}");
                    assert!(count <= 40, "{at}");
                }
                Peek::Certificate { all_domains, .. } => {
                    assert!(!name.contains("domains"), "{at}");
                    let cert =
                        feed::parse_certificate(line).unwrap_or_else(|e| panic!("{at}: {e}"));
                    // Every dialect reads strictly: nothing spoiled, nothing missing.
                    let (strict, lenient) = feed::parse_matched(line, &[]);
                    assert!(lenient.is_empty(), "{at}: read leniently: {lenient:?}");
                    assert_eq!(strict, cert, "{at}");
                    assert_eq!(cert.all_domains.len(), dedup_len(&all_domains), "{at}");
                    assert!(
                        cert.serial
                            .as_deref()
                            .is_some_and(|s| !s.starts_with('0') && s == s.to_uppercase()),
                        "{at}"
                    );
                    assert!(
                        cert.not_before.is_some() && cert.not_after.is_some(),
                        "{at}"
                    );
                    assert!(cert.issuer_key_id.is_some(), "{at}");
                    assert!(
                        cert.source_url.is_some()
                            && cert.cert_index.is_some()
                            && cert.seen.is_some(),
                        "{at}"
                    );
                }
                // certstream-server-rust sends a heartbeat on connect.
                Peek::Heartbeat => assert!(name.contains("rust"), "{at}"),
                other => panic!("{at}: unexpected {other:?}"),
            }
        }
    }
    assert_eq!(files, 9);
}

fn dedup_len(names: &[std::borrow::Cow<'_, str>]) -> usize {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if !seen.contains(&n.as_ref()) {
            seen.push(n);
        }
    }
    seen.len()
}

#[test]
fn dialects_agree_on_identity() {
    let go = lines("certstream_go_full.jsonl");
    let elixir = lines("certstream_elixir_full.jsonl");
    let go_lite = lines("certstream_go_lite.jsonl");
    let rust = lines("certstream_rust_full.jsonl");
    let rust_lite = lines("certstream_rust_lite.jsonl");
    let elixir_lite = lines("certstream_elixir_lite.jsonl");
    let parse = |l: &String| feed::parse_certificate(l).unwrap();
    let by_index = |set: &[String], i: u64| {
        set.iter()
            .filter(|l| l.contains("certificate_update"))
            .map(parse)
            .find(|c| c.cert_index == Some(i))
            .unwrap()
    };
    for index in [2, 5, 6, 7, 8, 12, 14] {
        let (g, e, l) = (
            by_index(&go, index),
            by_index(&elixir, index),
            by_index(&go_lite, index),
        );
        let key = certwatch::alert::issuance_key(&g);
        assert_eq!(
            key,
            certwatch::alert::issuance_key(&e),
            "index {index}: Go and Elixir differ"
        );
        assert_eq!(
            key,
            certwatch::alert::issuance_key(&l),
            "index {index}: full and lite differ"
        );
        assert_eq!(g.entry_type, e.entry_type);
        assert_eq!(g.fingerprint_sha1, e.fingerprint_sha1);
    }
    // certstream-server-rust, full and lite, and every lite stream: the same
    // identity for every certificate, the PSC precertificate (7) included (16 is
    // the CA certificate, whose names the Elixir server takes from its CN).
    for index in 2..=15 {
        let key = certwatch::alert::issuance_key(&by_index(&go, index));
        for (name, set) in [
            ("rust full", &rust),
            ("rust lite", &rust_lite),
            ("elixir lite", &elixir_lite),
            ("go lite", &go_lite),
        ] {
            let c = by_index(set, index);
            assert_eq!(certwatch::alert::issuance_key(&c), key, "{name} {index}");
            assert_eq!(c.fingerprint_sha1, by_index(&go, index).fingerprint_sha1);
            assert_eq!(c.serial, by_index(&go, index).serial, "{name} {index}");
        }
    }
    // The log's entry time: `submission_timestamp` (Rust) and `source.timestamp`
    // (Go) agree; the Elixir server has none.
    for index in [2, 5, 6, 7, 8, 12] {
        let go_ts = by_index(&go, index).source_timestamp_ms;
        assert!(go_ts.is_some(), "go {index}");
        assert_eq!(
            by_index(&rust, index).source_timestamp_ms,
            go_ts,
            "rust {index}"
        );
        assert_eq!(
            by_index(&rust_lite, index).source_timestamp_ms,
            go_ts,
            "rust lite {index}"
        );
        assert_eq!(by_index(&elixir, index).source_timestamp_ms, None);
    }
    assert_eq!(
        by_index(&rust, 5).source_timestamp_ms,
        Some(1_768_478_405_185)
    );
    // The PSC pair on every lite stream: the precertificate names the PSC, the
    // final certificate the CA, one leaf key: the other half of one issuance.
    for set in [&rust_lite, &elixir_lite, &go_lite, &rust, &elixir, &go] {
        let (p, f) = (by_index(set, 7), by_index(set, 8));
        let seen = [certwatch::alert::SeenCert::of(&f)];
        assert_eq!(
            certwatch::alert::verdict(&seen, &certwatch::alert::SeenCert::of(&p)),
            certwatch::alert::Verdict::Copy
        );
    }
    // A precertificate and its final certificate share the issuance key, also
    // through a precertificate signing certificate (index 7/8).
    for (pre, fin) in [(5, 6), (7, 8)] {
        for set in [&go, &elixir, &rust, &rust_lite, &elixir_lite] {
            let (p, f) = (by_index(set, pre), by_index(set, fin));
            assert_eq!(p.entry_type, EntryType::Precert);
            assert_eq!(f.entry_type, EntryType::X509);
            assert_ne!(p.fingerprint_sha1, f.fingerprint_sha1);
            assert_eq!(
                certwatch::alert::issuance_key(&p),
                certwatch::alert::issuance_key(&f),
                "{pre}/{fin}"
            );
        }
    }
    // The tiled precertificate carries the empty-input SHA-1: no fingerprint.
    let tiled = by_index(&go, 5005);
    assert_eq!(tiled.fingerprint_sha1, None);
    assert_eq!(
        certwatch::alert::issuance_key(&tiled),
        certwatch::alert::issuance_key(&by_index(&go, 5))
    );
    // Serial spellings and no_expiration.
    assert_eq!(by_index(&go, 12).serial.as_deref(), Some("F"));
    assert_eq!(
        by_index(&elixir, 12).not_after,
        Some(certwatch::cert::NO_EXPIRATION)
    );
}

#[test]
fn the_fixture_feeds_give_one_alert_per_issuance_with_integer_times() {
    let db = TestDb::new();
    db.watch(&[
        "example.com",
        "example.net",
        "example.org",
        "xn--bcher-kva.example",
    ]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    let mut sent = 0;
    for file in [
        "certstream_go_full.jsonl",
        "certstream_elixir_full.jsonl",
        "certstream_go_lite.jsonl",
        "certstream_elixir_domains.jsonl",
    ] {
        for line in lines(file) {
            feed.send(FeedCmd::Text(line));
            sent += 1;
        }
    }
    // Go full: 16 certificates; two precert/final pairs and a tiled copy of one
    // pair add nothing; the CA certificate names no watched domain: 12 issuances.
    let expected = 12;
    every_alert_made(&svc, &hook, sent, expected);
    assert_eq!(hook.count(), expected, "no alert beyond one per issuance");
    let rows = db.alerts();
    assert_eq!(rows.len(), expected, "{rows:#?}");
    let mut bodies = Vec::new();
    while let Some(rx) = hook.recv(Duration::from_millis(100)) {
        bodies.push(rx.json());
    }
    assert_eq!(bodies.len(), expected);
    for body in &bodies {
        for key in ["not_before", "not_after", "seen_at"] {
            assert!(body[key].is_i64(), "{key} is not an integer in {body}");
        }
    }
}

/// Waits until the workers handled all `sent` frames (with `SUSPICIOUS_GRACE_S=0`
/// every alert they make is recorded by then: no alert can follow), checks that
/// `expected` alerts were made (any number when 0), and waits until each was
/// delivered and the receiver answered it: from then on nothing more arrives.
fn every_alert_made(svc: &service::Running, hook: &FakeWebhook, sent: usize, expected: usize) {
    assert!(
        wait_until(Duration::from_secs(15), || svc.frames_handled()
            == sent as f64),
        "the workers handled {} of {sent} frames",
        svc.frames_handled()
    );
    let alerts = svc.metric_sum("certwatch_alerts_total");
    if expected > 0 {
        assert_eq!(alerts, expected as f64, "alerts made");
    }
    let success = r#"certwatch_webhook_total{result="success"}"#;
    assert!(
        wait_until(Duration::from_secs(15), || svc.metric(success) == alerts),
        "{} of {alerts} alerts delivered",
        svc.metric(success)
    );
    assert_eq!(
        svc.metric(r#"certwatch_webhook_total{result="failure"}"#),
        0.0,
        "no delivery was retried"
    );
    assert_eq!(hook.count(), alerts as usize, "one request per alert");
}

/// The `X-CT-Delivery` ids of everything one feed file alerts, with its count
/// of deliveries.
fn delivery_ids(file: &str) -> (Vec<String>, usize) {
    let db = TestDb::new();
    db.watch(&[
        "example.com",
        "example.net",
        "example.org",
        "xn--bcher-kva.example",
    ]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    let lines = lines(file);
    let sent = lines.len();
    for line in lines {
        feed.send(FeedCmd::Text(line));
    }
    // Whatever the file alerts, counted: the caller checks it is 12.
    every_alert_made(&svc, &hook, sent, 0);
    let mut ids = Vec::new();
    while let Some(rx) = hook.recv(Duration::from_millis(100)) {
        ids.push(rx.header("X-CT-Delivery").unwrap().to_string());
    }
    let count = ids.len();
    ids.sort();
    (ids, count)
}

#[test]
fn full_and_lite_streams_of_every_server_give_the_same_alerts_and_delivery_ids() {
    // 15 certificates: the direct pair (5/6) and the PSC pair (7/8) give one
    // alert each, the CA certificate none: 12 issuances, on every stream.
    let (full, n) = delivery_ids("certstream_go_full.jsonl");
    assert_eq!(n, 12, "{full:?}");
    for file in [
        "certstream_rust_lite.jsonl",
        "certstream_elixir_lite.jsonl",
        "certstream_rust_full.jsonl",
    ] {
        let (ids, n) = delivery_ids(file);
        assert_eq!(n, 12, "{file}: one alert per issuance");
        assert_eq!(
            ids, full,
            "{file}: the same delivery ids as the Go full stream"
        );
    }
}

#[test]
fn a_final_certificate_from_another_ca_still_alerts_after_a_lite_psc_precertificate() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    let lite = lines("certstream_rust_lite.jsonl");
    let find = |index: u64| -> serde_json::Value {
        lite.iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["data"]["cert_index"] == index)
            .unwrap()
    };
    let (precert, final_cert) = (find(7), find(8));
    // Another CA reusing the serial, validity and names: its own issuer key,
    // DN and organisation, its own fingerprint (the same leaf key, even).
    let mut other = final_cert.clone();
    let leaf = &mut other["data"]["leaf_cert"];
    leaf["extensions"]["authorityKeyIdentifier"] = "keyid:ee:ee:ee:ee".into();
    leaf["issuer"] = serde_json::json!({"CN": "Other CA", "O": "Other PKI",
        "aggregated": "/CN=Other CA/O=Other PKI"});
    leaf["fingerprint"] = "EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE:EE".into();
    leaf["sha1"] = leaf["fingerprint"].clone();
    other["data"]["cert_index"] = 99.into();
    feed.send(FeedCmd::Text(precert.to_string()));
    let first = hook
        .recv(Duration::from_secs(10))
        .expect("the precertificate alerts");
    assert_eq!(first.json()["update_type"], "PrecertLogEntry");
    feed.send(FeedCmd::Text(final_cert.to_string()));
    feed.send(FeedCmd::Text(other.to_string()));
    let second = hook
        .recv(Duration::from_secs(10))
        .expect("the other CA's certificate alerts");
    assert_eq!(second.json()["issuer_cn"], "Other CA");
    assert_eq!(second.json()["severity"], "suspicious");
    hook.expect_none(Duration::from_secs(2));
    assert_eq!(
        db.alerts().len(),
        2,
        "the PSC pair's final certificate adds nothing"
    );
}
