//! Every captured and hand-crafted feed sample in `tests/fixtures` parses,
//! and the fixtures run through the pipeline give one alert per issuance.

use crate::support::service::{self, Inventory};
use crate::support::{FakeFeed, FakeWebhook, FeedCmd, TestDb, wait_until};
use certwatch::certstream::{self, EntryType, Peek};
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
            match certstream::peek(line).unwrap_or_else(|e| panic!("{at}: {e}")) {
                Peek::DnsEntries { count } => {
                    assert!(name.contains("domains"), "{at}");
                    assert!(count <= 40, "{at}");
                }
                Peek::Certificate { all_domains } => {
                    assert!(!name.contains("domains"), "{at}");
                    let cert =
                        certstream::parse_certificate(line).unwrap_or_else(|e| panic!("{at}: {e}"));
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
    let parse = |l: &String| certstream::parse_certificate(l).unwrap();
    let by_index = |set: &[String], i: u64| {
        set.iter()
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
        let key = certwatch::classify::issuance_key(&g);
        assert_eq!(
            key,
            certwatch::classify::issuance_key(&e),
            "index {index}: Go and Elixir differ"
        );
        assert_eq!(
            key,
            certwatch::classify::issuance_key(&l),
            "index {index}: full and lite differ"
        );
        assert_eq!(g.entry_type, e.entry_type);
        assert_eq!(g.fingerprint_sha1, e.fingerprint_sha1);
    }
    // A precertificate and its final certificate share the issuance key, also
    // through a precertificate signing certificate (index 7/8).
    for (pre, fin) in [(5, 6), (7, 8)] {
        for set in [&go, &elixir] {
            let (p, f) = (by_index(set, pre), by_index(set, fin));
            assert_eq!(p.entry_type, EntryType::Precert);
            assert_eq!(f.entry_type, EntryType::X509);
            assert_ne!(p.fingerprint_sha1, f.fingerprint_sha1);
            assert_eq!(
                certwatch::classify::issuance_key(&p),
                certwatch::classify::issuance_key(&f),
                "{pre}/{fin}"
            );
        }
    }
    // The tiled precertificate carries the empty-input SHA-1: no fingerprint.
    let tiled = by_index(&go, 5005);
    assert_eq!(tiled.fingerprint_sha1, None);
    assert_eq!(
        certwatch::classify::issuance_key(&tiled),
        certwatch::classify::issuance_key(&by_index(&go, 5))
    );
    // Serial spellings and no_expiration.
    assert_eq!(by_index(&go, 12).serial.as_deref(), Some("F"));
    assert_eq!(
        by_index(&elixir, 12).not_after,
        Some(certstream::NO_EXPIRATION)
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
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    for file in [
        "certstream_go_full.jsonl",
        "certstream_elixir_full.jsonl",
        "certstream_go_lite.jsonl",
        "certstream_elixir_domains.jsonl",
    ] {
        for line in lines(file) {
            feed.send(FeedCmd::Text(line));
        }
    }
    // Go full: 16 certificates; two precert/final pairs and a tiled copy of one
    // pair add nothing; the CA certificate names no watched domain: 12 issuances.
    let expected = 12;
    assert!(wait_until(Duration::from_secs(15), || hook.count() >= expected));
    std::thread::sleep(Duration::from_secs(2));
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
