//! Issue 12 items 3 and 5 through the whole pipeline: a watched certificate
//! with hostile fields still alerts and its row is written; one with 120,000
//! names is classified quickly and stored with a capped name list; a text frame
//! that is not UTF-8 is counted.

use crate::kit::Cert;
use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{FeedCmd, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `frame` with `from` replaced by `to`, exactly once.
fn spoil(frame: &str, from: &str, to: &str) -> String {
    assert_eq!(frame.matches(from).count(), 1, "{from} in {frame}");
    frame.replacen(from, to, 1)
}

/// `frame` with one field of `data` (a `/`-separated path below it) set to `value`.
fn set(frame: &str, path: &str, value: serde_json::Value) -> String {
    let mut json: serde_json::Value = serde_json::from_str(frame).unwrap();
    let mut at = &mut json["data"];
    for part in path.split('/') {
        at = &mut at[part];
    }
    *at = value;
    json.to_string()
}

/// One frame per hostile field, each for its own watched name: `(name, frame)`.
fn hostile_frames() -> Vec<(String, String)> {
    type Spoil = fn(&Cert) -> String;
    let cases: Vec<(&str, Spoil)> = vec![
        ("index-negative", |c| {
            spoil(
                &c.frame(),
                &format!(r#""cert_index":{}"#, c.cert_index),
                r#""cert_index":-1"#,
            )
        }),
        ("index-2-64", |c| {
            spoil(
                &c.frame(),
                &format!(r#""cert_index":{}"#, c.cert_index),
                r#""cert_index":18446744073709551616"#,
            )
        }),
        ("index-huge", |c| {
            spoil(
                &c.frame(),
                &format!(r#""cert_index":{}"#, c.cert_index),
                r#""cert_index":1e400"#,
            )
        }),
        ("serial-number", |c| {
            spoil(
                &c.frame(),
                &format!(r#""serial_number":"{}""#, c.serial),
                r#""serial_number":12345"#,
            )
        }),
        ("seen-text", |c| set(&c.frame(), "seen", "x".into())),
        ("seen-1e15", |c| set(&c.frame(), "seen", 1e15.into())),
        ("not-after-1e400", |c| {
            spoil(
                &c.frame(),
                &format!(r#""not_after":{}"#, c.not_after),
                r#""not_after":1e400"#,
            )
        }),
        ("not-after-1e15", |c| {
            spoil(
                &c.frame(),
                &format!(r#""not_after":{}"#, c.not_after),
                r#""not_after":1e15"#,
            )
        }),
        ("not-before-text", |c| {
            set(&c.frame(), "leaf_cert/not_before", "soon".into())
        }),
        // A second leaf after the real one: the watched name is in the first.
        ("duplicate-leaf", |c| {
            spoil(
                &c.frame(),
                r#","seen":"#,
                r#","leaf_cert":{"all_domains":["decoy.example.org"]},"seen":"#,
            )
        }),
        ("cert-link-number", |c| {
            set(&c.frame(), "cert_link", 7.into())
        }),
        ("source-text", |c| set(&c.frame(), "source", "x".into())),
        ("issuer-o-list", |c| {
            set(&c.frame(), "leaf_cert/issuer/O", serde_json::json!(["x"]))
        }),
        ("subject-number", |c| {
            set(&c.frame(), "leaf_cert/subject", 5.into())
        }),
        ("update-type-number", |c| {
            set(&c.frame(), "update_type", 5.into())
        }),
        ("extensions-text", |c| {
            set(&c.frame(), "leaf_cert/extensions", "x".into())
        }),
        ("fingerprint-number", |c| {
            set(&c.frame(), "leaf_cert/fingerprint", 5.into())
        }),
        ("issuer-cn-nul", |c| {
            set(&c.frame(), "leaf_cert/issuer/CN", "Fake\u{0}CA".into())
        }),
    ];
    let mut frames: Vec<(String, String)> = cases
        .into_iter()
        .map(|(what, spoil)| {
            let name = format!("{what}.example.com");
            (name.clone(), spoil(&Cert::new(&[&name])))
        })
        .collect();
    // A SAN with a NUL in it, next to a watched one and alone.
    let nul = Cert::new(&["nul\u{0}.example.com", "nul-neighbour.example.com"]);
    frames.push(("nul\u{FFFD}.example.com".into(), nul.frame()));
    frames.push((
        "only-nul\u{FFFD}.example.com".into(),
        Cert::new(&["only-nul\u{0}.example.com"]).frame(),
    ));
    frames
}

/// `all_sans`, `not_after` (unix seconds) and `cert_index` of a stored alert.
type StoredRow = (Vec<String>, Option<i64>, Option<i64>);

#[test]
fn hostile_fields_of_a_watched_certificate_still_alert_and_are_recorded() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let frames = hostile_frames();
    for (_, frame) in &frames {
        feed.send(FeedCmd::Text(frame.clone()));
    }
    let mut delivered: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    while delivered.len() < frames.len() {
        let Some(alert) = hook.recv(WAIT) else {
            break;
        };
        let body = alert.json();
        let first = body["matched_sans"][0].as_str().unwrap().to_string();
        delivered.insert(first, body);
    }
    let missing: Vec<&String> = frames
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !delivered.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "no alert for {missing:?}");
    assert!(
        delivered.values().all(|b| b["severity"] == "suspicious"),
        "{delivered:#?}"
    );

    // Every alert is a row too (the NUL SAN and the year-31,000,000 expiry
    // included), and none is held for lack of one.
    let rows: BTreeMap<String, StoredRow> = db
        .client()
        .query(
            "SELECT matched_sans, all_sans, extract(epoch FROM not_after)::bigint, cert_index
               FROM public.alerts",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let matched: Vec<String> = r.get(0);
            (matched[0].clone(), (r.get(1), r.get(2), r.get(3)))
        })
        .collect();
    let unrecorded: Vec<&String> = frames
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !rows.contains_key(*name))
        .collect();
    assert!(unrecorded.is_empty(), "no row for {unrecorded:?}");
    assert_eq!(rows.len(), frames.len());
    assert_eq!(rows["not-after-1e15.example.com"].1, None);
    assert_eq!(rows["index-negative.example.com"].2, None);
    assert_eq!(
        rows["nul\u{FFFD}.example.com"].0,
        ["nul\u{FFFD}.example.com", "nul-neighbour.example.com"]
    );
    assert!(
        rows["duplicate-leaf.example.com"]
            .0
            .contains(&"decoy.example.org".to_string())
    );
    assert_eq!(
        delivered["not-after-1e15.example.com"]["not_after"],
        serde_json::Value::Null
    );
    assert_eq!(
        delivered["serial-number.example.com"]["serial"],
        serde_json::Value::Null
    );
    assert_eq!(svc.metric("certwatch_ct_parse_errors_total"), 0.0);
    assert_eq!(
        svc.metric(r#"certwatch_queue_depth{queue="unrecorded"}"#),
        0.0
    );
    let lenient = |reason: &str| {
        svc.metric(&format!(
            r#"certwatch_ct_lenient_certificates_total{{reason="{reason}"}}"#
        ))
    };
    assert_eq!(lenient("nul"), 3.0);
    assert_eq!(lenient("identity"), 8.0);
    assert_eq!(lenient("decoration"), 9.0);
    assert_eq!(lenient("names_capped"), 0.0);
}

/// Two tiled precertificates without a serial (and so without a fingerprint),
/// same names and validity, from one CA: two alerts, not one and a "copy".
#[test]
fn certificates_without_a_serial_are_not_copies_of_each_other() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let cert = Cert::new(&["noserial.example.com"]).precert();
    let mut first = set(&cert.frame(), "leaf_cert/serial_number", "".into());
    for field in ["fingerprint", "sha1"] {
        first = set(
            &first,
            &format!("leaf_cert/{field}"),
            serde_json::Value::Null,
        );
    }
    let second = set(
        &first,
        "leaf_cert/signature_algorithm",
        "sha256, rsa".into(),
    );
    feed.send(FeedCmd::Text(first.clone()));
    assert!(hook.recv(WAIT).is_some(), "the first alerts");
    feed.send(FeedCmd::Text(second));
    assert!(hook.recv(WAIT).is_some(), "the second alerts too");
    // The very same leaf from another log is a copy.
    feed.send(FeedCmd::Text(set(&first, "cert_index", 999_999.into())));
    // Handled with a grace period of 0: had it alerted, the alert would be made.
    assert!(wait_until(WAIT, || svc.frames_handled() == 3.0));
    assert_eq!(svc.metric_sum("certwatch_alerts_total"), 2.0);
    hook.expect_none(Duration::from_millis(100));
    assert_eq!(
        db.client()
            .query_one("SELECT count(*) FROM public.alerts", &[])
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}

/// A frame of `names` distinct single-label names (base 36: at most 4 bytes
/// each, so that 120,000 fit in the feed's 1 MiB frame cap) with `watched`
/// among them.
fn frame_with_names(names: usize, watched: &str) -> String {
    let mut all: Vec<String> = (0..names as u64 - 1)
        .map(|mut i| {
            let mut s = Vec::new();
            loop {
                s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(i % 36) as usize]);
                i /= 36;
                if i == 0 {
                    break;
                }
            }
            String::from_utf8(s).unwrap()
        })
        .collect();
    all.insert(names / 2, watched.to_string());
    format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","cert_index":1,"seen":1795353248.5,"source":{{"name":"Fake log","url":"https://ct.example/log"}},"leaf_cert":{{"all_domains":{},"serial_number":"0ABC","not_before":1768474800,"not_after":1776250799,"fingerprint":"AB:CD","issuer":{{"aggregated":"/CN=Fake CA"}},"extensions":{{"authorityKeyIdentifier":"keyid:cd:82"}}}}}}}}"#,
        serde_json::to_string(&all).unwrap()
    )
}

/// A frame of 120,000 names (one watched) goes through the whole pipeline: one
/// frame handled, one alert, its lists capped with the watched name kept. What it
/// costs (peek, match, parse; frame to webhook): `bench_peek`, `bench_delivery`.
#[test]
fn a_certificate_with_120k_names_is_classified_and_stored_capped() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    let frame = frame_with_names(120_000, "www.example.com");
    assert!(
        frame.len() < certwatch::sources::feed::reader::MAX_FRAME_BYTES,
        "{}",
        frame.len()
    );
    feed.send(FeedCmd::Text(frame));
    let alert = hook.recv(WAIT).expect("an alert for the watched name");
    assert_eq!(svc.frames_handled(), 1.0, "one frame, not split or dropped");
    assert_eq!(svc.metric_sum("certwatch_alerts_total"), 1.0, "one alert");
    let body = alert.json();
    assert_eq!(body["matched_sans"], serde_json::json!(["www.example.com"]));
    let all_sans = body["all_sans"].as_array().unwrap();
    assert_eq!(all_sans.len(), certwatch::cert::MAX_NAMES);
    assert!(all_sans.iter().any(|n| n == "www.example.com"));
    let row = db
        .client()
        .query_one(
            "SELECT cardinality(all_sans), 'www.example.com' = ANY(all_sans) FROM public.alerts",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as usize, certwatch::cert::MAX_NAMES);
    assert!(row.get::<_, bool>(1));
    assert!(wait_until(WAIT, || svc.metric(
        r#"certwatch_ct_lenient_certificates_total{reason="names_capped"}"#
    ) == 1.0));
}

#[test]
fn a_text_frame_that_is_not_utf8_is_a_counted_parse_error() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_connections(1, WAIT));
    // FIN + text opcode, unmasked (server to client), 3 bytes, not UTF-8.
    feed.send(FeedCmd::Raw(vec![0x81, 0x03, 0xff, 0xfe, 0x41]));
    assert!(
        feed.wait_for_connections(2, WAIT),
        "tungstenite gives up the connection; the reader dials again"
    );
    assert_eq!(svc.metric("certwatch_ct_parse_errors_total"), 1.0);
    feed.send(FeedCmd::Text(Cert::new(&["after.example.com"]).frame()));
    assert!(hook.recv(WAIT).is_some(), "alerts after the bad frame");
}
