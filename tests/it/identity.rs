//! Identity keys are stored (`public.alerts.issuance_key`, `delivery_id`) and seen
//! by receivers (`X-CT-Delivery`): they must not change across versions. Golden
//! values, derived independently of the code from the documented construction
//! (src/alert.rs, `issuance_key`, `legacy_issuance_key`, `Sighting::delivery_id`,
//! `event_delivery_id`; README "Classification" and "Webhook"), and the upgrade
//! path: a row an older version wrote under the v1 key keeps the real pipeline
//! from alerting that certificate again, while another certificate still alerts.
//!
//! How the expected values were computed: once, with Python's `hashlib`, over
//! the exact bytes shown next to each (`\0` a NUL byte, `\n` a line feed):
//!
//! ```text
//! issuance key (hex SHA-256) = sha256(version \0 [issuer \0] serial \0 not_before \0 not_after \0
//!                                     (name \n for each sorted, normalised name | "names:" digest \n)
//!                                     [\0 "unusable:" leaf digest])
//!   version: "certwatch-issuance-v2" (issuer absent) or "certwatch-issuance-v1"
//!   (issuer: the issuer key id, else the issuer DN, else ""); serial upper-case hex
//!   without leading zeros; times as decimal unix seconds.
//! uuid(d)  = hex of the first 16 bytes of d as 8-4-4-4-12
//! match delivery id    = uuid(sha256(issuance key "/" collision fingerprint))
//! resolved delivery id = uuid(sha256(match delivery id "/resolved"))
//! ```
//!
//! e.g. `hashlib.sha256(b"certwatch-issuance-v2\0ABCDEF0123456789ABCDEF0123456789ABCDE\0"
//! b"1768474800\0" b"1776250799\0shop.example.net\nwww.shop.example.net\n").hexdigest()`.

use crate::kit::service;
use crate::kit::{FakeFeed, FakeWebhook, FeedCmd, Inventory, TestDb, wait_until};
use certwatch::alert::{
    self, DetectedVia, Event, InventoryCheck, Sighting, event_delivery_id, issuance_key,
    legacy_issuance_key,
};
use certwatch::cert::{Certificate, EntryType, Leniency};
use certwatch::sources::feed as certstream;
use std::time::Duration;

/// Fixture pair 5 (precertificate) / 6 (final certificate) of the Go full stream:
/// serial `0ABCDEF0123456789ABCDEF0123456789ABCDE` (normalised: the leading zero
/// dropped), validity 1768474800..1776250799, names `shop.example.net`,
/// `www.shop.example.net`. v2 bytes hashed:
/// `certwatch-issuance-v2\0ABCDEF0123456789ABCDEF0123456789ABCDE\01768474800\01776250799\0shop.example.net\nwww.shop.example.net\n`.
const PAIR_V2: &str = "52a73bba959638caa1c6b940c51a8a2b48adcb0f4e79f48322b5915503bde6b8";

/// The same pair's v1 key, the issuer key id (authorityKeyIdentifier,
/// normalised) hashed after the version:
/// `certwatch-issuance-v1\0cd82aa3dcb0d2243d5453580bb5a8d9bf6324764\0ABCDEF0123456789ABCDEF0123456789ABCDE\01768474800\01776250799\0shop.example.net\nwww.shop.example.net\n`.
const PAIR_V1: &str = "c2a81bc46dbfa4446b404e8f84755ac56058fb5a51ba5559ecf14a22c9ef140c";

/// The v1 key without an issuer key id: the issuer DN in its place,
/// `certwatch-issuance-v1\0/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI\0ABCDEF…` (the rest as `PAIR_V1`).
const PAIR_V1_DN: &str = "411537ed8a111961cb5c2d4bbdc3fac3aecee7513cbcc4bc0397fa2a3326a74e";

/// The v1 key with neither: an empty issuer, `certwatch-issuance-v1\0\0ABCDEF…`.
const PAIR_V1_NO_ISSUER: &str = "14517d0c6407853c17b7933d882a7ac417ef7d7481811c6307c022d8d2e515de";

/// `uuid(sha256("52a73bba…e6b8/"))`: the pair's match delivery id (no collision).
const PAIR_DELIVERY: &str = "a15f402d-f87f-b25b-22cd-704cff7b77cd";

/// `uuid(sha256("52a73bba…e6b8/114cf34d0dd808bb1e7706f0ba6219f08145f245"))`: the
/// id of a colliding certificate of that key with that SHA-1 fingerprint.
const PAIR_COLLISION_DELIVERY: &str = "6465886e-921d-0b9a-d657-59632dae86f9";

/// `uuid(sha256("a15f402d-f87f-b25b-22cd-704cff7b77cd/resolved"))`: its follow-up.
const PAIR_RESOLVED: &str = "0d4191b2-bcc0-026b-78a7-167fd5b4726c";

/// `uuid(sha256("c2a81bc4…140c/"))`: the delivery id an older version gave the pair.
const PAIR_V1_DELIVERY: &str = "7dee3baa-2d9a-9ee5-82cb-898c6f61cbfa";

/// Fixture pair 7/8 (a precertificate signing certificate's pair): serial
/// `7F0000000000000000000000000000000000AA`, the same validity, names
/// `login.example.com`, `sso.example.com`:
/// `certwatch-issuance-v2\07F0000000000000000000000000000000000AA\01768474800\01776250799\0login.example.com\nsso.example.com\n`.
const OTHER_V2: &str = "77823631925ea083147c529d18c540299955245555e302b2105807a830f84ea4";

/// `uuid(sha256("77823631…4ea4/"))`.
const OTHER_DELIVERY: &str = "9d109efd-7424-3f3d-edb3-57a6276cdf34";

/// The leaf of `UNUSABLE_FRAME`, exactly as the frame carries it.
const UNUSABLE_LEAF: &str = r#"{"all_domains":["NoSerial.Example.com"],"not_before":1768474800,"not_after":1776250799,"fingerprint":"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"}"#;

/// SHA-256 of `UNUSABLE_LEAF` followed by one NUL (each leaf occurrence is hashed
/// with a NUL after it).
const UNUSABLE_LEAF_DIGEST: &str =
    "188b5d15a339bfaf87f9520234fbceab22e5cfe7165983a9a3e48c0c1211c24c";

/// A certificate without a serial (an unusable identity): no serial, the name
/// lower-cased, then the leaf digest:
/// `certwatch-issuance-v2\0\01768474800\01776250799\0noserial.example.com\n\0unusable:188b5d15…c24c`.
const UNUSABLE_V2: &str = "e3f0bc166eb3597ee5212c9d1df55e48fa7f6eb5ef4c4d11a70811f218725cb8";

/// SHA-256 of the 10,001 names `n00000.example` .. `n10000.example`, sorted, each
/// followed by `\n` (the digest of a name set over `MAX_NAMES`).
const MANY_NAMES_DIGEST: &str = "6017babad706d5a3c4429b570e9d5505370bbd2e7faf54b55f80dd160031bc91";

/// Serial 5555 with those names:
/// `certwatch-issuance-v2\05555\01768474800\01776250799\0names:6017baba…bc91\n`.
const MANY_V2: &str = "f99a05ea0e477626a8519b3fb1d8fddd2de16b36f71fb8b2698ea23ca8721449";

/// The Go full-stream fixture line of entry `index`.
fn go_full(index: u64) -> String {
    include_str!("../fixtures/certstream_go_full.jsonl")
        .lines()
        .find(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("fixture json")["data"]["cert_index"]
                == index
        })
        .unwrap_or_else(|| panic!("no entry {index} in the Go full fixture"))
        .to_string()
}

fn parsed(frame: &str) -> Certificate {
    certstream::parse_certificate(frame).expect("parses")
}

/// The pair's identity fields, set by hand (not parsed).
fn pair_by_hand(entry_type: EntryType) -> Certificate {
    let mut cert = parsed(&go_full(6));
    cert.entry_type = entry_type;
    cert.serial = Some("ABCDEF0123456789ABCDEF0123456789ABCDE".into());
    cert.not_before = Some(1_768_474_800);
    cert.not_after = Some(1_776_250_799);
    cert.names = vec!["shop.example.net".into(), "www.shop.example.net".into()];
    cert.names_digest = None;
    cert.unusable_identity = None;
    cert.issuer_key_id = Some("cd82aa3dcb0d2243d5453580bb5a8d9bf6324764".into());
    cert.issuer_dn = Some("/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI".into());
    cert
}

fn sighting(cert: Certificate, collision_fingerprint: &str) -> Sighting {
    Sighting {
        issuance_key: issuance_key(&cert),
        cert,
        matched_entries: vec!["example.net".into()],
        matched_sans: vec!["shop.example.net".into()],
        collision_fingerprint: collision_fingerprint.into(),
        received_at: 1_795_353_248,
        received_at_ms: 1_795_353_248_842,
        inventory: InventoryCheck::Database,
        detected_via: DetectedVia::Feed,
    }
}

#[test]
fn a_final_certificate_and_its_precertificate_have_the_golden_issuance_key() {
    let (precert, final_cert) = (parsed(&go_full(5)), parsed(&go_full(6)));
    assert_eq!(precert.entry_type, EntryType::Precert);
    assert_eq!(final_cert.entry_type, EntryType::X509);
    assert_eq!(issuance_key(&final_cert), PAIR_V2, "final certificate");
    assert_eq!(issuance_key(&precert), PAIR_V2, "precertificate");
    // The tiled copy of the precertificate (no fingerprint) too.
    assert_eq!(issuance_key(&parsed(&go_full(5005))), PAIR_V2);
    // And the construction alone, from fields set by hand.
    assert_eq!(issuance_key(&pair_by_hand(EntryType::X509)), PAIR_V2);
    assert_eq!(issuance_key(&pair_by_hand(EntryType::Precert)), PAIR_V2);
    assert_eq!(issuance_key(&parsed(&go_full(8))), OTHER_V2);
    assert_eq!(issuance_key(&parsed(&go_full(7))), OTHER_V2);
}

#[test]
fn the_v1_key_of_older_rows_has_its_golden_value() {
    assert_eq!(legacy_issuance_key(&parsed(&go_full(6))), PAIR_V1);
    assert_eq!(legacy_issuance_key(&parsed(&go_full(5))), PAIR_V1);
    let mut by_hand = pair_by_hand(EntryType::X509);
    assert_eq!(legacy_issuance_key(&by_hand), PAIR_V1);
    by_hand.issuer_key_id = None;
    assert_eq!(
        legacy_issuance_key(&by_hand),
        PAIR_V1_DN,
        "the DN in its place"
    );
    by_hand.issuer_dn = None;
    assert_eq!(legacy_issuance_key(&by_hand), PAIR_V1_NO_ISSUER);
    // v2 does not hash the issuer: the same key whatever it is.
    assert_eq!(issuance_key(&by_hand), PAIR_V2);
}

#[test]
fn an_unusable_identity_and_a_capped_name_set_have_their_golden_keys() {
    let frame = format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","leaf_cert":{UNUSABLE_LEAF}}}}}"#
    );
    let (cert, lenient) = certstream::parse_matched(&frame, &["NoSerial.Example.com"]);
    assert!(lenient.contains(Leniency::Identity), "no serial");
    assert_eq!(cert.serial, None);
    assert_eq!(
        cert.unusable_identity.as_deref(),
        Some(UNUSABLE_LEAF_DIGEST)
    );
    assert_eq!(issuance_key(&cert), UNUSABLE_V2);

    // 10,001 names in reverse order: the key hashes the digest of the whole set.
    let names: Vec<String> = (0..=10_000)
        .rev()
        .map(|i| format!("n{i:05}.example"))
        .collect();
    let frame = format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","leaf_cert":{{"all_domains":{},"serial_number":"5555","not_before":1768474800,"not_after":1776250799}}}}}}"#,
        serde_json::to_string(&names).unwrap()
    );
    let cert = parsed(&frame);
    assert_eq!(cert.names_digest.as_deref(), Some(MANY_NAMES_DIGEST));
    assert_eq!(cert.unusable_identity, None);
    assert_eq!(issuance_key(&cert), MANY_V2);
}

#[test]
fn delivery_ids_of_match_collision_and_resolved_events_have_their_golden_values() {
    let first = sighting(parsed(&go_full(6)), "");
    assert_eq!(first.issuance_key, PAIR_V2);
    assert_eq!(first.delivery_id(), PAIR_DELIVERY);
    assert_eq!(
        event_delivery_id(PAIR_DELIVERY, Event::Match),
        PAIR_DELIVERY
    );
    assert_eq!(
        event_delivery_id(PAIR_DELIVERY, Event::Resolved),
        PAIR_RESOLVED
    );
    // The precertificate's alert has the same id: one issuance, one id.
    assert_eq!(
        sighting(parsed(&go_full(5)), "").delivery_id(),
        PAIR_DELIVERY
    );
    let collision = sighting(
        parsed(&go_full(6)),
        "114cf34d0dd808bb1e7706f0ba6219f08145f245",
    );
    assert_eq!(collision.delivery_id(), PAIR_COLLISION_DELIVERY);
    assert_eq!(
        alert::collision_id(&collision.cert),
        collision.collision_fingerprint
    );
    assert_eq!(
        sighting(parsed(&go_full(8)), "").delivery_id(),
        OTHER_DELIVERY
    );
    // What an older version sent for the pair: the same rule over its v1 key.
    let mut old = sighting(parsed(&go_full(6)), "");
    old.issuance_key = PAIR_V1.into();
    assert_eq!(old.delivery_id(), PAIR_V1_DELIVERY);
}

/// A row an older certwatch (issuance key v1) wrote for the pair's final
/// certificate: what it stored, without the columns added since (issuer key id,
/// subject key id, issuer DN: NULL).
fn row_of_an_older_version(db: &TestDb) {
    db.execute(&format!(
        "INSERT INTO public.alerts
             (issuance_key, collision_fingerprint, delivery_id, severity, entry_type,
              fingerprint_sha1, matched_entries, matched_sans, all_sans, issuer_o, issuer_cn,
              serial, update_type, payload, event, delivered, created_at)
         VALUES ('{PAIR_V1}', '', '{PAIR_V1_DELIVERY}', 'suspicious', 'x509',
              '114cf34d0dd808bb1e7706f0ba6219f08145f245', '{{example.net}}',
              '{{shop.example.net,www.shop.example.net}}', '{{shop.example.net,www.shop.example.net}}',
              'Fake CT Test PKI', 'Fake Issuing CA E1', 'ABCDEF0123456789ABCDEF0123456789ABCDE',
              'X509LogEntry', '{{}}', 'match', true, now() - interval '5 minutes')"
    ));
}

/// The upgrade path (`Classifier::alerted_before_upgrade`): the pair's final
/// certificate, alerted by an older version under the v1 key, arrives again on the
/// feed of the real pipeline (and its precertificate, the other half): no second
/// alert, no webhook. Another certificate alerts, with its golden delivery id.
#[test]
fn an_issuance_alerted_by_an_older_version_is_not_alerted_again_after_the_upgrade() {
    let db = TestDb::new();
    db.watch(&["example.net", "example.com"]);
    row_of_an_older_version(&db);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    feed.send(FeedCmd::Text(go_full(6)));
    feed.send(FeedCmd::Text(go_full(5)));
    // Both handled with a grace period of 0: an alert would have been recorded by now.
    assert!(
        wait_until(Duration::from_secs(10), || svc.frames_handled() == 2.0),
        "handled {} of 2 frames",
        svc.frames_handled()
    );
    assert_eq!(
        svc.metric_sum("certwatch_alerts_total"),
        0.0,
        "alerted again after the upgrade"
    );
    let rows = db.alerts();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].delivery_id, PAIR_V1_DELIVERY,
        "the old row, untouched"
    );

    // Another certificate still alerts, under its v2 key and golden delivery id.
    feed.send(FeedCmd::Text(go_full(8)));
    let rx = hook
        .recv(Duration::from_secs(10))
        .expect("the other certificate alerts");
    assert_eq!(rx.header("X-CT-Delivery"), Some(OTHER_DELIVERY));
    assert_eq!(svc.metric_sum("certwatch_alerts_total"), 1.0);
    let key: String = db
        .client()
        .query_one(
            "SELECT issuance_key FROM public.alerts WHERE delivery_id = $1",
            &[&OTHER_DELIVERY],
        )
        .expect("the new row")
        .get(0);
    assert_eq!(key, OTHER_V2);
    assert_eq!(db.alerts().len(), 2);
    assert_eq!(hook.count(), 1, "nothing for the pair alerted before");
}

/// Without the older row, the same frames alert: the test above is about the row.
#[test]
fn without_the_older_row_the_same_certificate_alerts_with_its_golden_id() {
    let db = TestDb::new();
    db.watch(&["example.net"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    feed.send(FeedCmd::Text(go_full(6)));
    let rx = hook.recv(Duration::from_secs(10)).expect("it alerts");
    assert_eq!(rx.header("X-CT-Delivery"), Some(PAIR_DELIVERY));
}
