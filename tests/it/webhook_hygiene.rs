//! Webhook hygiene and trust: redirects, Retry-After, 410, both signature
//! schemes with key rotation, the ctwatch body, the SSRF guard.

use crate::kit::Cert;
use crate::kit::service::{self, db_feed_and_webhook};
use crate::kit::{FakeFeed, FakeWebhook, FeedCmd, TestDb, standard_webhooks, wait_until};
use base64::Engine;
use hmac::{KeyInit, Mac};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A raw HTTP server answering each request (one per connection) with the next
/// scripted response; it records when each request came.
struct Scripted {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn start(responses: Vec<String>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            for response in responses {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().push(Instant::now());
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Scripted { addr, arrivals }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

fn response(status: &str, headers: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
}

/// The last error of the (first) alert row; empty before there is one.
fn last_error(db: &TestDb) -> String {
    db.client()
        .query(
            "SELECT coalesce(last_error, '') FROM public.alerts ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default()
}

#[test]
fn redirects_are_not_followed() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let (feed, elsewhere) = (FakeFeed::start(), FakeWebhook::start());
    let location = format!("Location: {}\r\n", elsewhere.url());
    let redirector = Scripted::start(vec![response("302 Found", &location); 3]);
    let url = redirector.url();
    let _svc = service::start(
        &db,
        &feed,
        None,
        &[("WEBHOOK_URL", url.as_str()), ("SUSPICIOUS_GRACE_S", "0")],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["r.example.com"]).frame()));
    assert!(
        wait_until(WAIT, || redirector.count() == 3),
        "three rounds, each refused"
    );
    elsewhere.expect_none(Duration::from_secs(1));
    assert!(
        wait_until(WAIT, || last_error(&db).ends_with("HTTP 302")),
        "{}",
        last_error(&db)
    );
}

#[test]
fn retry_after_is_honoured() {
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let server = Scripted::start(vec![
        response("429 Too Many Requests", "Retry-After: 3\r\n"),
        response("200 OK", ""),
    ]);
    let url = server.url();
    let _svc = service::start(
        &db,
        &feed,
        None,
        &[("WEBHOOK_URL", url.as_str()), ("SUSPICIOUS_GRACE_S", "0")],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["slow.example.com"]).frame()));
    assert!(wait_until(WAIT, || server.count() == 2));
    let arrivals = server.arrivals.lock().unwrap().clone();
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(2900),
        "retried after {gap:?}, not the 3 s asked"
    );
    assert!(gap < Duration::from_secs(6), "{gap:?}");
}

/// 32 key bytes as `whsec_` base64, padded (`=` at the end).
const NEW_WHSEC: &str = "whsec_3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";
/// Another key, written unpadded (43 characters): what the Python library accepts.
const OLD_WHSEC_UNPADDED: &str = "whsec_AAgQGCAoMDhASFBYYGhweICIkJigqLC4wMjQ2ODo8Pg";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(b: Vec<u8>) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn deliveries_verify_with_an_independent_standard_webhooks_verifier() {
    // An unpadded whsec_ secret is decoded as the Standard Webhooks libraries
    // decode it (once it was silently used as raw bytes and nothing verified).
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[
            ("SUSPICIOUS_GRACE_S", "0"),
            ("WEBHOOK_SECRET", OLD_WHSEC_UNPADDED),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["signed.example.com"]).frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    standard_webhooks::verify_received(OLD_WHSEC_UNPADDED, &rx).unwrap();
    assert_eq!(rx.header("webhook-id"), rx.header("X-CT-Delivery"));
    assert_eq!(
        rx.header("X-CT-Signature"),
        Some(
            format!(
                "sha256={}",
                hex(hmac(OLD_WHSEC_UNPADDED.as_bytes(), &rx.body))
            )
            .as_str()
        )
    );
    // A tampered body or another key does not verify.
    let mut tampered = rx.body.clone();
    tampered.push(b' ');
    let headers = |name| rx.header(name);
    assert!(
        standard_webhooks::verify(
            OLD_WHSEC_UNPADDED,
            headers("webhook-id"),
            headers("webhook-timestamp"),
            headers("webhook-signature"),
            &tampered
        )
        .is_err()
    );
    assert!(standard_webhooks::verify_received(NEW_WHSEC, &rx).is_err());
}

#[test]
fn a_rotation_signs_x_ct_once_with_the_new_key_and_standard_webhooks_with_both() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[
            ("SUSPICIOUS_GRACE_S", "0"),
            ("WEBHOOK_SECRET", NEW_WHSEC),
            ("WEBHOOK_SECRET_PREVIOUS", OLD_WHSEC_UNPADDED),
        ],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["rotated.example.com"]).frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    // A CT Watch receiver compares the whole header with one value: exactly one
    // signature, with the current key.
    assert_eq!(
        rx.header("X-CT-Signature"),
        Some(format!("sha256={}", hex(hmac(NEW_WHSEC.as_bytes(), &rx.body))).as_str())
    );
    // Standard Webhooks receivers on either key verify during the rotation.
    standard_webhooks::verify_received(NEW_WHSEC, &rx).unwrap();
    standard_webhooks::verify_received(OLD_WHSEC_UNPADDED, &rx).unwrap();
    assert_eq!(
        rx.header("webhook-signature").unwrap().split(' ').count(),
        2
    );
}

#[test]
fn a_plain_secret_verifies_only_as_its_bytes() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    let _svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[("SUSPICIOUS_GRACE_S", "0"), ("WEBHOOK_SECRET", "plain-key")],
    );
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["plain.example.com"]).frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    let as_bytes = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"plain-key")
    );
    standard_webhooks::verify_received(&as_bytes, &rx).unwrap();
}

#[test]
fn a_410_is_logged_and_the_alert_stays_owed() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    hook.script(&[410, 410, 410]);
    let _svc = service::start(&db, &feed, Some(&hook), &[("SUSPICIOUS_GRACE_S", "0")]);
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["gone.example.com"]).frame()));
    assert!(wait_until(WAIT, || hook.count() == 3));
    assert!(wait_until(WAIT, || last_error(&db).contains("webhook #1")
        && last_error(&db).ends_with("HTTP 410")));
    assert!(!crate::kit::Inventory::alerts(&db)[0].delivered);
}

#[test]
fn the_ctwatch_body_field_by_field() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.co.uk", "shop.example.co.uk"]);
    let _svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[("SUSPICIOUS_GRACE_S", "0"), ("WEBHOOK_FORMAT", "ctwatch")],
    );
    assert!(feed.wait_for_client(WAIT));
    // A real DER from the fixtures, and its SHA-256 as certstream-server-go computed it.
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/certstream_go_full.jsonl"
    ))
    .unwrap();
    let line: serde_json::Value = serde_json::from_str(fixture.lines().next().unwrap()).unwrap();
    let leaf = &line["data"]["leaf_cert"];
    let mut cert = Cert::new(&["www.shop.example.co.uk", "shop.example.co.uk"]);
    cert.as_der = Some(leaf["as_der"].as_str().unwrap().to_string());
    cert.log_timestamp = Some(1_768_478_402.074);
    cert.precert = true;
    let sent = Instant::now();
    feed.send(FeedCmd::Text(cert.frame()));
    let rx = hook.recv(WAIT).expect("a delivery");
    // The severity, a certwatch extension: a header and a body field.
    assert_eq!(rx.header("X-Certwatch-Severity"), Some("suspicious"));
    let body = rx.json();
    let sha256 = leaf["sha256"]
        .as_str()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    let rule_id = |entry: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(entry.as_bytes())[..6]
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b))
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let matched_at = body["matched_at_ms"].as_i64().unwrap();
    assert!(
        matched_at <= now_ms && matched_at >= now_ms - sent.elapsed().as_millis() as i64 - 1000
    );
    let expected = serde_json::json!({
        "event": "match",
        "matched_at_ms": matched_at,
        "rules": [
            {"id": rule_id("example.co.uk"), "kind": "domain", "pattern": "example.co.uk"},
            {"id": rule_id("shop.example.co.uk"), "kind": "domain", "pattern": "shop.example.co.uk"},
        ],
        "certificate": {
            "log_id": cert.log_url,
            "leaf_index": cert.cert_index,
            "entry_type": "precert",
            "timestamp_ms": 1_768_478_402_074i64,
            "reversed_apex": "uk.co.example",
            "sans": ["www.shop.example.co.uk", "shop.example.co.uk"],
            "issuer": "/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI",
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "fingerprint": sha256,
            "serial": cert.serial.trim_start_matches('0'),
        },
        "severity": "suspicious",
        "detected_via": "feed",
    });
    assert_eq!(body, expected);
}

fn fake_lookup(answers: Vec<Vec<&'static str>>) -> certwatch::ssrf::Lookup {
    let calls = Mutex::new(0usize);
    Arc::new(move |host: &str, port: u16| {
        assert_eq!(host, "hook.test", "only the fake host is ever looked up");
        let mut n = calls.lock().unwrap();
        let answer = &answers[(*n).min(answers.len() - 1)];
        *n += 1;
        Ok(answer
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
            .collect())
    })
}

#[test]
fn the_ssrf_guard_refuses_private_targets_at_start_up() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    for (address, reason) in [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "cgnat"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("fd00::1", "private"),
        ("fe80::1", "link-local"),
        ("::ffff:10.0.0.1", "private"),
    ] {
        let extra = [
            ("WEBHOOK_URL", "http://hook.test/x"),
            ("WEBHOOK_DENY_PRIVATE", "true"),
        ];
        let lookup = fake_lookup(vec![vec![address]]);
        let err = service::start_with_lookup(&db, &feed, &extra, lookup)
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("hook.test") && text.contains(reason),
            "{address}: {text}"
        );
    }
    // A public address passes the check (and no request is made: nothing is alerted).
    let extra = [
        ("WEBHOOK_URL", "http://hook.test/x"),
        ("WEBHOOK_DENY_PRIVATE", "true"),
    ];
    let svc =
        service::start_with_lookup(&db, &feed, &extra, fake_lookup(vec![vec!["93.184.216.34"]]));
    assert!(svc.is_ok(), "a public address is accepted");
}

#[test]
fn the_ssrf_guard_checks_again_at_connection_time() {
    let (db, feed, hook) = db_feed_and_webhook(&["example.com"]);
    // Public at start-up, then rebinding to loopback, where the receiver listens.
    let url = format!("http://hook.test:{}/hook", hook.port());
    let extra = [
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_DENY_PRIVATE", "true"),
        ("SUSPICIOUS_GRACE_S", "0"),
    ];
    let _svc = service::start_with_lookup(
        &db,
        &feed,
        &extra,
        fake_lookup(vec![vec!["93.184.216.34"], vec!["127.0.0.1"]]),
    )
    .expect("starts");
    assert!(feed.wait_for_client(WAIT));
    feed.send(FeedCmd::Text(Cert::new(&["rebind.example.com"]).frame()));
    assert!(
        wait_until(WAIT, || last_error(&db).contains("loopback")),
        "{}",
        last_error(&db)
    );
    hook.expect_none(Duration::from_secs(1));
}
