//! Backfill building blocks (`certwatch::ctlog`) against real data: the feed
//! fixtures' certificates re-logged as RFC 6962 and static-ct entries must convert
//! to the same issuance as the feed line they came from, and the log client is
//! driven over real HTTP against `kit::ctlog::FakeCtLog`.

use crate::kit::ctlog::{
    FakeCtLog, FakeEntry, FakeKind, fixture_entries, hex_lower, tbs_without_scts,
};
use certwatch::alert::{self, Verdict};
use certwatch::cert::{Certificate, EntryType};
use certwatch::ctlog::LogKind;
use certwatch::ctlog::client::{ClientConfig, ClientError, LogClient};
use certwatch::ctlog::entry::{self, LogSource};
use certwatch::ctlog::rfc6962::{self, Chain};
use certwatch::ctlog::tiles::{self, DataTile};
use certwatch::sources::feed;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const RFC_SOURCE: LogSource<'static> = LogSource {
    url: "https://127.0.0.1:8443/sandbox2026",
    name: "Fake 'Sandbox2026' log",
    kind: LogKind::Rfc6962,
};

/// The fields identity and alerts depend on, backfilled vs feed.
fn assert_same_issuance(ours: &Certificate, feed: &Certificate, what: &str) {
    assert_eq!(ours.entry_type, feed.entry_type, "{what}: entry type");
    assert_eq!(ours.all_domains, feed.all_domains, "{what}: all_domains");
    assert_eq!(ours.names, feed.names, "{what}: names");
    assert_eq!(ours.serial, feed.serial, "{what}: serial");
    assert_eq!(ours.not_before, feed.not_before, "{what}: not_before");
    assert_eq!(ours.not_after, feed.not_after, "{what}: not_after");
    assert_eq!(
        ours.issuer_key_id, feed.issuer_key_id,
        "{what}: issuer key id"
    );
    assert_eq!(ours.fingerprint_sha1, feed.fingerprint_sha1, "{what}: sha1");
    assert_eq!(ours.sha256, feed.sha256, "{what}: sha256");
    assert_eq!(
        alert::issuance_key(ours),
        alert::issuance_key(feed),
        "{what}: issuance key"
    );
    // Seen on the feed first, the backfilled copy is no new alert (and the
    // other way round).
    let seen = [alert::SeenCert::of(feed)];
    assert_eq!(
        alert::verdict(&seen, &alert::SeenCert::of(ours)),
        Verdict::Copy,
        "{what}: verdict"
    );
}

/// Every certificate of the Go full-stream fixture (15 lines, both precert/final
/// pairs, the PSC-signed pair, the 40-name and the CA certificate), logged as an
/// RFC 6962 entry and as a static-ct tile leaf, converts to what the feed line
/// parses to, field for field.
#[test]
fn fixture_certificates_convert_like_the_go_feed() {
    let fixtures = fixture_entries();
    assert_eq!(fixtures.len(), 15, "RFC 6962 lines in the Go full fixture");
    let mut precerts = 0;
    for (entry, line) in &fixtures {
        let feed = feed::parse_certificate(line).expect("fixture parses");
        let index = feed.cert_index.expect("cert_index");
        let what = format!("index {index}");

        let leaf = entry.leaf_input();
        let extra = entry.extra_data();
        let decoded = rfc6962::decode_leaf(&leaf, &extra).expect("leaf decodes");
        let ours = entry::to_certificate(&decoded, index, &RFC_SOURCE).expect("converts");
        assert_same_issuance(&ours, &feed, &what);
        assert_eq!(ours.subject_cn, feed.subject_cn, "{what}: subject CN");
        assert_eq!(ours.issuer_cn, feed.issuer_cn, "{what}: issuer CN");
        assert_eq!(ours.issuer_o, feed.issuer_o, "{what}: issuer O");
        assert_eq!(ours.issuer_dn, feed.issuer_dn, "{what}: issuer DN");
        assert_eq!(ours.cert_link, feed.cert_link, "{what}: cert_link");
        assert_eq!(ours.source_url, feed.source_url, "{what}: source url");
        assert_eq!(ours.source_name, feed.source_name, "{what}: source name");
        assert_eq!(
            ours.source_timestamp_ms, feed.source_timestamp_ms,
            "{what}: log timestamp"
        );
        assert_eq!(ours.cert_index, Some(index));
        assert_eq!(
            ours,
            Certificate {
                seen: None,
                ..feed.clone()
            },
            "{what}: whole"
        );

        let tile = DataTile { index: 0, width: 1 };
        let tiled = LogSource {
            kind: LogKind::Tiled,
            ..RFC_SOURCE
        };
        let tile_leaf = entry.tile_leaf(0);
        let decoded = tiles::decode_data_tile(&tile_leaf, tile).expect("tile decodes");
        let Chain::Fingerprints(fps) = &decoded[0].chain else {
            panic!("tile leaves carry fingerprints");
        };
        let expected: Vec<[u8; 32]> = entry
            .chain
            .iter()
            .map(|c| Sha256::digest(c).into())
            .collect();
        assert_eq!(fps.iter().map(|f| **f).collect::<Vec<_>>(), expected);
        let ours_tiled = entry::to_certificate(&decoded[0], index, &tiled).expect("converts");
        assert_same_issuance(&ours_tiled, &feed, &format!("{what} (tile)"));
        assert_eq!(ours_tiled.cert_link, None);
        precerts += usize::from(feed.entry_type == EntryType::Precert);
    }
    assert_eq!(precerts, 3);
}

/// The PSC-signed precertificate (index 7) and its final certificate (index 8):
/// one issuance, as RFC 6962's rewritten TBS makes it.
#[test]
fn psc_signed_pair_is_one_issuance() {
    let fixtures = fixture_entries();
    let convert = |index: u64| {
        let (entry, _) = fixtures
            .iter()
            .find(|(_, line)| line.contains(&format!("\"cert_index\":{index},")))
            .expect("fixture");
        let (leaf, extra) = (entry.leaf_input(), entry.extra_data());
        entry::to_certificate(
            &rfc6962::decode_leaf(&leaf, &extra).unwrap(),
            index,
            &RFC_SOURCE,
        )
        .unwrap()
    };
    // The kit's RFC 6962 TBS of each precertificate is its final certificate's
    // TBS without the SCT list, byte for byte: the encoder is right.
    for (pre, fin) in [(5, 6), (7, 8)] {
        let der = |index: u64| {
            fixtures
                .iter()
                .find(|(_, line)| line.contains(&format!("\"cert_index\":{index},")))
                .map(|(e, _)| e.clone())
                .unwrap()
        };
        let FakeKind::Precert { tbs, .. } = der(pre).kind else {
            panic!("index {pre} is a precert")
        };
        assert_eq!(
            tbs,
            tbs_without_scts(der(fin).fingerprinted_der()),
            "pair {pre}/{fin}"
        );
    }
    let (precert, final_cert) = (convert(7), convert(8));
    assert_eq!(precert.entry_type, EntryType::Precert);
    assert_eq!(
        precert.issuer_key_id.as_deref(),
        Some("cd82aa3dcb0d2243d5453580bb5a8d9bf6324764")
    );
    assert_eq!(precert.issuer_cn.as_deref(), Some("Fake Issuing CA E1"));
    assert_eq!(
        alert::issuance_key(&precert),
        alert::issuance_key(&final_cert)
    );
    assert_ne!(precert.fingerprint_sha1, final_cert.fingerprint_sha1);
    let seen = [alert::SeenCert::of(&final_cert)];
    assert_eq!(
        alert::verdict(&seen, &alert::SeenCert::of(&precert)),
        Verdict::Copy
    );
}

/// The Elixir server describes the submitted precertificate (PSC issuer) and
/// adds a CA's CN to its names; the issuance key still matches, except for the
/// CA certificate logged as a leaf, whose names the Go and Rust servers (and
/// certwatch) leave empty.
#[test]
fn fixture_certificates_match_the_elixir_feed_issuance() {
    let go = fixture_entries();
    let elixir = include_str!("../fixtures/certstream_elixir_full.jsonl");
    let mut compared = 0;
    for line in elixir.lines() {
        let feed = feed::parse_certificate(line).expect("parses");
        let index = feed.cert_index.unwrap();
        let (entry, _) = go
            .iter()
            .find(|(_, l)| l.contains(&format!("\"cert_index\":{index},")))
            .expect("same corpus");
        let (leaf, extra) = (entry.leaf_input(), entry.extra_data());
        let ours = entry::to_certificate(
            &rfc6962::decode_leaf(&leaf, &extra).unwrap(),
            index,
            &RFC_SOURCE,
        )
        .unwrap();
        if index == 16 {
            assert_eq!(feed.names, vec!["fake issuing ca e1"]);
            assert!(ours.names.is_empty());
            continue;
        }
        assert_eq!(ours.names, feed.names, "index {index}");
        assert_eq!(
            alert::issuance_key(&ours),
            alert::issuance_key(&feed),
            "index {index}"
        );
        assert_eq!(
            ours.fingerprint_sha1, feed.fingerprint_sha1,
            "index {index}"
        );
        compared += 1;
    }
    assert_eq!(compared, 14);
}

/// Issue 13: a logged certificate takes the feed's own name rule. 30,000 SANs
/// (20,000 distinct, every other one repeated, one holding a NUL, the watched one
/// last) convert to the lists the feed's parse of the same names gives: NUL
/// replaced, capped at `MAX_NAMES` with the digest of the whole set (every
/// distinct name in it); every name is still matched, and once matched the watched
/// one is kept. What the conversion costs per name: `bench_backfill`.
#[test]
fn a_logged_certificate_with_20k_names_converts_capped_like_the_feed() {
    const WATCHED: &str = "www.watched.example";
    let mut names: Vec<String> = Vec::new();
    for i in 0..19_998 {
        names.push(format!("n{i}.example"));
        if i % 2 == 1 {
            names.push(format!("n{}.example", i / 2));
        }
        if i == 10 {
            names.push("nul\0.example".to_string());
        }
    }
    names.push(WATCHED.to_string());
    let mut params = rcgen::CertificateParams::new(names.clone()).expect("names");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "n0.example");
    let key = rcgen::KeyPair::generate().unwrap();
    let der = params
        .self_signed(&key)
        .expect("certificate")
        .der()
        .to_vec();
    let logged_entry = FakeEntry::x509(der, vec![], 1_768_478_402_074);
    let (leaf, extra) = (logged_entry.leaf_input(), logged_entry.extra_data());
    let decoded = rfc6962::decode_leaf(&leaf, &extra).expect("leaf decodes");

    let logged = entry::to_logged(&decoded, 3, &RFC_SOURCE).expect("converts");
    assert_eq!(logged.all_domains.len(), certwatch::cert::MAX_NAMES);
    // The digest covers every distinct name, computed here from the documented
    // rule: SHA-256 over the normalised (NUL replaced, lower-case), sorted, unique
    // names, each followed by a line feed.
    let every_name: BTreeSet<String> = names
        .iter()
        .chain(["n0.example".to_string()].iter())
        .map(|n| n.replace('\0', "\u{FFFD}").to_lowercase())
        .collect();
    assert_eq!(every_name.len(), 20_000);
    let mut whole_set = Sha256::new();
    for name in &every_name {
        whole_set.update(name.as_bytes());
        whole_set.update(b"\n");
    }
    let whole_set: String = whole_set
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(logged.names_digest.as_deref(), Some(whole_set.as_str()));
    assert_eq!(
        logged.all_domains[..3],
        ["n0.example", "n1.example", "n2.example"]
    );
    assert!(
        logged
            .all_domains
            .contains(&"nul\u{FFFD}.example".to_string())
    );
    assert!(logged.all_domains.iter().all(|n| !n.contains('\0')));
    assert!(!logged.all_domains.iter().any(|n| n == WATCHED));
    // Every name is there to match, the watched one too.
    assert_eq!(logged.names().len(), names.len() + 1, "the SANs and the CN");
    assert!(logged.names().iter().any(|n| n == WATCHED));

    // The feed's parse of the same names (SANs, then the subject CN).
    let mut feed_names = names.clone();
    feed_names.push("n0.example".to_string());
    let frame = format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","leaf_cert":{{"all_domains":{}}}}}}}"#,
        serde_json::to_string(&feed_names).unwrap()
    );
    let feed = feed::parse_certificate(&frame).expect("parses");
    assert_eq!(logged.all_domains, feed.all_domains);
    assert_eq!(logged.names, feed.names);
    assert_eq!(logged.names_digest, feed.names_digest);
    let (feed_matched, _) = feed::parse_matched(&frame, &[WATCHED]);
    let matched = logged.clone().into_certificate(&[WATCHED]);
    assert_eq!(matched.all_domains, feed_matched.all_domains);
    assert_eq!(matched.names, feed_matched.names);
    assert_eq!(matched.names_digest, feed_matched.names_digest);
    assert_eq!(matched.all_domains.len(), certwatch::cert::MAX_NAMES);
    assert!(matched.all_domains.iter().any(|n| n == WATCHED));
    assert_eq!(
        alert::issuance_key(&matched),
        alert::issuance_key(&logged.clone().into_unmatched()),
        "the key hashes the whole name set, whatever was kept"
    );
    // `to_certificate` is the certificate as kept when nothing matched.
    assert_eq!(
        entry::to_certificate(&decoded, 3, &RFC_SOURCE).unwrap(),
        logged.into_unmatched()
    );
}

/// `n` entries cycling through the fixture certificates, entry `i` stamped
/// `1_700_000_000_000 + i` so order and completeness can be checked.
fn numbered_entries(n: u64) -> Vec<FakeEntry> {
    let fixtures = fixture_entries();
    (0..n)
        .map(|i| {
            let mut e = fixtures[(i as usize) % fixtures.len()].0.clone();
            e.timestamp_ms = 1_700_000_000_000 + i;
            e
        })
        .collect()
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        min_interval: Duration::ZERO,
        ..ClientConfig::default()
    }
}

#[test]
fn get_entries_follows_the_logs_batch_cap() {
    let log = FakeCtLog::start(numbered_entries(70));
    log.set_max_batch(32);
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    let size = client.get_sth().unwrap().tree_size;
    assert_eq!(size, 70);
    let url = log.url();
    let source = LogSource {
        url: &url,
        name: "fake",
        kind: LogKind::Rfc6962,
    };
    let mut next = 0;
    let mut certs = Vec::new();
    while next < size {
        let end = size - 1;
        let body = client.get_entries(next, end).unwrap();
        let got =
            entry::certificates_from_get_entries(&body, next, (end - next + 1) as usize, &source)
                .unwrap();
        assert!(got.len() <= 32);
        next += got.len() as u64;
        certs.extend(got.into_iter().map(|c| c.expect("certificate")));
    }
    assert_eq!(log.hits("ct/v1/get-entries"), 3);
    assert_eq!(certs.len(), 70);
    for (i, cert) in certs.iter().enumerate() {
        assert_eq!(cert.cert_index, Some(i as u64));
        assert_eq!(cert.source_timestamp_ms, Some(1_700_000_000_000 + i as i64));
        assert_eq!(
            cert.cert_link.as_deref(),
            Some(format!("{url}/ct/v1/get-entries?start={i}&end={i}").as_str())
        );
    }
}

#[test]
fn tiles_with_a_partial_right_edge_and_cached_issuers() {
    let log = FakeCtLog::start(numbered_entries(800));
    log.set_tree_size(600);
    let mut client = LogClient::new(&log.url(), LogKind::Tiled, &fast_config()).unwrap();
    let checkpoint = client.checkpoint().unwrap();
    assert_eq!(checkpoint.tree_size, 600);
    // The submission prefix without its scheme (static-ct-api).
    assert_eq!(checkpoint.origin, log.url().trim_start_matches("http://"));
    let url = log.url();
    let source = LogSource {
        url: &url,
        name: "fake tiled",
        kind: LogKind::Tiled,
    };

    let wanted = 100..600;
    let tiles: Vec<DataTile> = tiles::data_tiles(wanted.clone(), checkpoint.tree_size).collect();
    assert_eq!(
        tiles,
        vec![
            DataTile::full(0),
            DataTile::full(1),
            DataTile {
                index: 2,
                width: 88
            }
        ]
    );
    let mut indices = Vec::new();
    let mut issuers = BTreeSet::new();
    for tile in tiles {
        let fetched = client.data_tile(tile).unwrap();
        assert_eq!(fetched.tile, tile);
        let decoded = tiles::decode_data_tile(&fetched.body, fetched.tile).unwrap();
        for e in &decoded {
            if let Chain::Fingerprints(fps) = &e.chain {
                issuers.extend(fps.iter().map(|f| **f));
            }
        }
        let certs = entry::certificates_from_tile(&fetched.body, fetched.tile, &source).unwrap();
        for (cert, index) in certs.into_iter().zip(fetched.tile.start()..) {
            let cert = cert.expect("certificate");
            assert_eq!(cert.cert_index, Some(index));
            assert_eq!(
                cert.source_timestamp_ms,
                Some(1_700_000_000_000 + index as i64)
            );
            if wanted.contains(&index) {
                indices.push(index);
            }
        }
    }
    assert_eq!(indices, wanted.collect::<Vec<_>>());
    assert_eq!(log.hits("tile/data/002.p/88"), 1);
    assert_eq!(log.hits("tile/data/"), 3);

    // Each issuer fetched once, checked against its fingerprint, then cached.
    assert!(issuers.len() >= 4, "E1, R1, the root, the PSC");
    for _ in 0..3 {
        for fp in &issuers {
            let der = client.issuer(fp).unwrap();
            assert_eq!(Sha256::digest(&*der).as_slice(), fp);
        }
    }
    assert_eq!(log.hits("issuer/"), issuers.len());

    // The log grows past the partial tile: it is gone, the full one is read.
    log.set_tree_size(800);
    let fetched = client
        .data_tile(DataTile {
            index: 2,
            width: 88,
        })
        .unwrap();
    assert_eq!(fetched.tile, DataTile::full(2));
    assert_eq!(
        tiles::decode_data_tile(&fetched.body, fetched.tile)
            .unwrap()
            .len(),
        256
    );
}

#[test]
fn rate_limits_are_honoured_without_hammering() {
    let log = FakeCtLog::start(numbered_entries(3));
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    log.throttle_next(1, 429, Some("1"));
    match client.get_sth() {
        Err(ClientError::RateLimited {
            status: 429,
            retry_after,
        }) => assert_eq!(retry_after, Duration::from_secs(1)),
        other => panic!("expected 429, got {other:?}"),
    }
    // Until Retry-After has passed, nothing is sent.
    for _ in 0..5 {
        assert!(matches!(
            client.get_entries(0, 2),
            Err(ClientError::RateLimited { status: 429, .. })
        ));
    }
    assert_eq!(log.hits(""), 1);
    std::thread::sleep(Duration::from_millis(1050));
    assert_eq!(client.get_sth().unwrap().tree_size, 3);
    assert_eq!(log.hits(""), 2);

    // 503 without Retry-After: the default; an absurd one: the cap.
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    log.throttle_next(1, 503, None);
    assert!(matches!(
        client.get_sth(),
        Err(ClientError::RateLimited { status: 503, retry_after })
            if retry_after == certwatch::ctlog::client::DEFAULT_RETRY_AFTER
    ));
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    log.throttle_next(1, 429, Some("999999"));
    assert!(matches!(
        client.get_sth(),
        Err(ClientError::RateLimited { retry_after, .. })
            if retry_after == certwatch::ctlog::client::RETRY_AFTER_CAP
    ));
    // A Retry-After of zero or in the past says nothing usable (issue 18 item 10):
    // the default wait, never none, so a log that keeps refusing is not hammered.
    for past in ["Wed, 21 Oct 2015 07:28:00 GMT", "0"] {
        let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
        log.throttle_next(1, 429, Some(past));
        assert!(matches!(
            client.get_sth(),
            Err(ClientError::RateLimited { retry_after, .. })
                if retry_after == certwatch::ctlog::client::DEFAULT_RETRY_AFTER
        ));
        let sent = log.hits("");
        assert!(matches!(
            client.get_sth(),
            Err(ClientError::RateLimited { .. })
        ));
        assert_eq!(
            log.hits(""),
            sent,
            "nothing sent while the default wait runs"
        );
    }
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    log.fail_next(1);
    assert!(matches!(client.get_sth(), Err(ClientError::Status(500))));
}

#[test]
fn requests_are_paced_and_identify_certwatch() {
    let log = FakeCtLog::start(numbered_entries(3));
    let config = ClientConfig {
        min_interval: Duration::from_millis(150),
        contact: Some("ops@example.com".into()),
        ..fast_config()
    };
    let mut client = LogClient::new(&log.url(), LogKind::Rfc6962, &config).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        client.get_sth().unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let agents = log.user_agents();
    assert_eq!(agents.len(), 3);
    assert_eq!(
        agents[0],
        format!("certwatch/{} (+ops@example.com)", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn hostile_and_truncated_bodies_are_errors_not_panics() {
    let log = FakeCtLog::start(numbered_entries(300));
    let url = log.url();
    let source = LogSource {
        url: &url,
        name: "fake",
        kind: LogKind::Tiled,
    };
    let mut rfc = LogClient::new(&log.url(), LogKind::Rfc6962, &fast_config()).unwrap();
    let mut tiled = LogClient::new(&log.url(), LogKind::Tiled, &fast_config()).unwrap();

    // A real tile, cut anywhere, never decodes.
    let full = tiled.data_tile(DataTile::full(0)).unwrap();
    for cut in (0..full.body.len()).step_by(97) {
        assert!(tiles::decode_data_tile(&full.body[..cut], full.tile).is_err());
        assert!(entry::certificates_from_tile(&full.body[..cut], full.tile, &source).is_err());
    }
    // A real get-entries body, cut anywhere, never decodes.
    let body = rfc.get_entries(0, 9).unwrap();
    for cut in (0..body.len()).step_by(53) {
        assert!(entry::certificates_from_get_entries(&body[..cut], 0, 10, &source).is_err());
    }

    for garbage in [
        b"".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"{\"entries\":[{\"leaf_input\":\"AAAA\",\"extra_data\":\"\"}]}".to_vec(),
        vec![0xFF; 4096],
    ] {
        log.respond_next(garbage.clone());
        assert!(matches!(rfc.get_sth(), Err(ClientError::Decode(_))));
        log.respond_next(garbage.clone());
        assert!(matches!(tiled.checkpoint(), Err(ClientError::Decode(_))));
        log.respond_next(garbage.clone());
        let body = rfc.get_entries(0, 0).unwrap();
        match entry::certificates_from_get_entries(&body, 0, 1, &source) {
            Err(_) => {}
            Ok(entries) => assert!(entries.iter().all(Result::is_err)),
        }
        log.respond_next(garbage.clone());
        let tile = tiled.data_tile(DataTile::full(0)).unwrap();
        assert!(tiles::decode_data_tile(&tile.body, tile.tile).is_err());
    }

    // A log returning more entries than asked is refused.
    let body = rfc.get_entries(0, 9).unwrap();
    assert!(entry::certificates_from_get_entries(&body, 0, 5, &source).is_err());

    // An issuer that is not what its fingerprint names.
    let issuer = fixture_entries()[0].0.chain[0].clone();
    let fp: [u8; 32] = Sha256::digest(&issuer).into();
    log.respond_next(b"not the issuer".to_vec());
    assert!(matches!(
        tiled.issuer(&fp),
        Err(ClientError::IssuerMismatch)
    ));
    assert!(
        tiled.issuer(&fp).is_ok(),
        "a good answer is still taken after"
    );
    assert!(matches!(
        tiled.issuer(&[7; 32]),
        Err(ClientError::Status(404))
    ));
    assert!(hex_lower(&fp).len() == 64);

    // Bodies over the limit.
    let small = ClientConfig {
        max_tile_bytes: 1000,
        max_entries_bytes: 1000,
        ..fast_config()
    };
    let mut tiled = LogClient::new(&log.url(), LogKind::Tiled, &small).unwrap();
    assert!(matches!(
        tiled.data_tile(DataTile::full(0)),
        Err(ClientError::TooLarge { limit: 1000 })
    ));
    let mut rfc = LogClient::new(&log.url(), LogKind::Rfc6962, &small).unwrap();
    assert!(matches!(
        rfc.get_entries(0, 20),
        Err(ClientError::TooLarge { limit: 1000 })
    ));
}

/// Every byte of a precertificate's leaf, extra data and tile leaf flipped in
/// turn: decoding and conversion give a value or an error, never a panic.
#[test]
fn flipped_bytes_never_panic() {
    let fixtures = fixture_entries();
    let (entry, _) = fixtures
        .iter()
        .find(|(_, line)| line.contains("\"cert_index\":7,"))
        .expect("PSC precert");
    let tiled = LogSource {
        kind: LogKind::Tiled,
        ..RFC_SOURCE
    };
    let (leaf, extra, tile_leaf) = (entry.leaf_input(), entry.extra_data(), entry.tile_leaf(0));
    let mut outcomes = [0usize; 2];
    for i in 0..leaf.len().max(extra.len()).max(tile_leaf.len()) {
        let flip = |data: &[u8]| {
            let mut d = data.to_vec();
            if let Some(b) = d.get_mut(i) {
                *b ^= 0xFF;
            }
            d
        };
        let (l, e, t) = (flip(&leaf), flip(&extra), flip(&tile_leaf));
        let ok = rfc6962::decode_leaf(&l, &e)
            .map_err(entry::EntryError::from)
            .and_then(|d| entry::to_certificate(&d, 7, &RFC_SOURCE))
            .is_ok();
        outcomes[usize::from(ok)] += 1;
        if let Ok(certs) =
            entry::certificates_from_tile(&t, DataTile { index: 0, width: 1 }, &tiled)
        {
            outcomes[usize::from(certs[0].is_ok())] += 1;
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// The log list from a URL: a redirect is followed (a published list may move), a
/// status outside 2xx is an error naming it.
#[test]
fn the_log_list_is_read_from_a_url_through_a_redirect_and_a_404_is_an_error() {
    let log = FakeCtLog::start(Vec::new());
    let list = log.log_list(false);
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                let Ok(request) = server.recv() else { return };
                let response = match request.url() {
                    "/moved" => tiny_http::Response::from_string("")
                        .with_status_code(302)
                        .with_header(
                            tiny_http::Header::from_bytes("Location", "/list.json").unwrap(),
                        ),
                    "/list.json" => tiny_http::Response::from_string(list.clone()),
                    _ => tiny_http::Response::from_string("no").with_status_code(404),
                };
                let _ = request.respond(response);
            }
        })
    };
    let base = format!("http://127.0.0.1:{port}");
    let (read, _) =
        certwatch::coverage::list::read_list(&format!("{base}/moved")).expect("the list");
    assert_eq!(read.logs().len(), 1);
    assert!(read.lookup(&log.url()).is_some());
    let missing = certwatch::coverage::list::read_list(&format!("{base}/gone")).unwrap_err();
    assert!(missing.to_string().contains("HTTP 404"), "{missing}");
    serving.join().unwrap();
}
