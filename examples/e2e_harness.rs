//! End-to-end harness: `cargo run --example e2e_harness`.
//!
//! The README's "one command runs the whole thing end to end". With PostgreSQL
//! running, it:
//!
//! 1. creates a throwaway database `certwatch_harness_<pid>` from an admin DSN
//!    (`HARNESS_ADMIN_DSN`, default `postgresql://postgres@127.0.0.1:5432/postgres`),
//!    applies `schema.sql`, watches `ethereum.org` and records one "known"
//!    certificate in the inventory (`public.certs`);
//! 2. starts a fake certstream WebSocket server (`HARNESS_FEED_PORT`, default 19090)
//!    and a fake webhook receiver (`HARNESS_WEBHOOK_PORT`, default 19091);
//! 3. runs the real service in-process against them;
//! 4. publishes three certificates: an unauthorized one for `evil.ethereum.org`,
//!    the known one for `known.ethereum.org`, and one for the unwatched
//!    `www.example.com`;
//! 5. checks that exactly one `suspicious` and one `info` webhook arrive, signed
//!    with `WEBHOOK_SECRET`, and that `/healthz` and `/metrics` agree.
//!
//! Prints `HARNESS OK: ...` and exits 0, or `HARNESS FAILED: <why>` and exits 1.
//! The database is always dropped, unless `HARNESS_KEEP_DB=1`. Every wait is
//! bounded; a run takes about ten seconds.
//!
//! The database, the fake feed and receiver and the certificates come from the test
//! kit (`certwatch-testkit`), as in the integration tests.

use certwatch_testkit::probe::{metric_value, try_request};
use certwatch_testkit::service::wait_service;
use certwatch_testkit::{Cert, FakeFeed, FakeWebhook, FeedCmd, Inventory, Received, TestDb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::Value;

const WEBHOOK_SECRET: &str = "harness-secret";
const GRACE_S: u64 = 2;
/// The harness's log, in the certificates' `cert_link`.
const LOG_URL: &str = "https://ct.harness.test/log2026";

/// The unauthorized certificate: watched name, not in the inventory.
const EVIL_NAME: &str = "evil.ethereum.org";
const EVIL_FP: &str = "E1:71:00:00:DE:AD:BE:EF:00:11:22:33:44:55:66:77:88:99:AA:BB";
const EVIL_SERIAL: &str = "0BADC0FFEE0BADC0FFEE";
/// The known certificate: watched name, in the inventory by fingerprint.
const KNOWN_NAME: &str = "known.ethereum.org";
const KNOWN_FP: &str = "4B:4E:4F:57:4E:00:C3:7A:91:5D:02:6E:8F:10:42:B7:3C:D9:E5:A6";
const KNOWN_SERIAL: &str = "04C0FFEE1234567890ABCDEF";
/// The unwatched certificate.
const UNWATCHED_NAME: &str = "www.example.com";
const UNWATCHED_FP: &str = "07:A1:CE:55:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
const UNWATCHED_SERIAL: &str = "03A1F2C4D5E6F708";

fn main() -> ExitCode {
    // The postgres driver logs the server's NOTICEs at INFO (for example "database
    // ... does not exist, skipping" from the throwaway database's DROP IF EXISTS):
    // noise for a demo, so only its warnings show.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .filter_module("postgres", log::LevelFilter::Warn)
        .try_init();
    let started = Instant::now();
    let result = run();
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!(
                "HARNESS OK: 1 suspicious, 1 info, 0 for the unwatched certificate ({took:.1}s)"
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("HARNESS FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let feed_port: u16 = env_or("HARNESS_FEED_PORT", "19090")
        .parse()
        .map_err(|e| format!("HARNESS_FEED_PORT: {e}"))?;
    let webhook_port: u16 = env_or("HARNESS_WEBHOOK_PORT", "19091")
        .parse()
        .map_err(|e| format!("HARNESS_WEBHOOK_PORT: {e}"))?;

    // 1. The throwaway database (dropped by `db`'s Drop, also on error or panic).
    let db = TestDb::create("harness")?;
    db.watch(&["ethereum.org"]);
    db.inventory(&known());
    println!(
        "database {} ready (schema applied, 1 watch entry, 1 inventory row)",
        db.name()
    );

    // 2. The fake feed and webhook receiver (stopped by their Drop).
    let feed = FakeFeed::start_on(feed_port).map_err(|e| {
        format!("fake feed: cannot bind 127.0.0.1:{feed_port}: {e} (set HARNESS_FEED_PORT)")
    })?;
    println!("fake certstream feed on {}", feed.url());
    let webhook = FakeWebhook::start_on(webhook_port).map_err(|e| {
        format!(
            "fake webhook: cannot bind 127.0.0.1:{webhook_port}: {e} (set HARNESS_WEBHOOK_PORT)"
        )
    })?;
    println!("fake webhook receiver on {}", webhook.url());

    // 3. The real service, in-process.
    let vars: HashMap<&str, String> = HashMap::from([
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("CT_LOG_LIST", "off".to_string()),
        ("CERTSTREAM_URL", feed.url()),
        ("WEBHOOK_URL", webhook.url()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("SUSPICIOUS_GRACE_S", GRACE_S.to_string()),
        ("API_PORT", "0".to_string()),
        ("WORKERS", "2".to_string()),
    ]);
    let config = certwatch::Config::from_lookup(|name| vars.get(name).cloned())
        .map_err(|e| format!("config: {e}"))?;
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start(config, shutdown).map_err(|e| format!("start: {e}"))?;
    let http_addr = service.http_addr();
    println!("certwatch started, HTTP on http://{http_addr}");

    // 4-5. Publish and check; then always stop the service, bounded.
    let checked = exercise(&feed, &webhook, http_addr);
    trigger.trigger();
    let stopped = wait_service(service, Duration::from_secs(15));
    if stopped.is_ok() {
        println!("certwatch stopped");
    }
    drop(feed);
    drop(webhook);
    checked?;
    stopped?;
    drop(db);
    Ok(())
}

/// Steps 4 and 5: publish the three certificates, collect and check the webhooks,
/// read `/healthz` and `/metrics`.
fn exercise(feed: &FakeFeed, webhook: &FakeWebhook, http_addr: SocketAddr) -> Result<(), String> {
    if !feed.wait_for_client(Duration::from_secs(15)) {
        return Err("the service did not connect to the fake certstream feed within 15s".into());
    }
    println!("certstream client connected; publishing 3 certificates");
    let certificates = [
        cert(1001, EVIL_NAME, EVIL_FP, EVIL_SERIAL),
        known(),
        cert(1003, UNWATCHED_NAME, UNWATCHED_FP, UNWATCHED_SERIAL),
    ];
    for certificate in &certificates {
        feed.send(FeedCmd::Text(certificate.frame()));
    }

    // Two webhooks expected (info at once, suspicious after the grace period)...
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match webhook.recv(left) {
            Some(r) => {
                print_received(&r);
                received.push(r);
            }
            None => {
                return Err(format!(
                    "expected 2 webhooks within 20s, got {}",
                    received.len()
                ));
            }
        }
    }
    // ...and no third one.
    if let Some(extra) = webhook.recv(Duration::from_secs(3)) {
        print_received(&extra);
        return Err(format!(
            "unexpected third webhook: {}",
            String::from_utf8_lossy(&extra.body)
        ));
    }

    let (status, healthz) = try_request(&format!("http://{http_addr}/healthz"), "GET")?;
    println!("healthz: {status} {}", healthz.trim());
    let (metrics_status, metrics) = try_request(&format!("http://{http_addr}/metrics"), "GET")?;
    let alert_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("certwatch_alerts_total"))
        .collect();
    for line in &alert_lines {
        println!("metrics: {line}");
    }

    let verified = check_webhooks(&received)?;
    println!(
        "signatures: {verified} of {} webhooks verified (X-CT-Signature, HMAC-SHA256 of the body with WEBHOOK_SECRET)",
        received.len()
    );
    let health_ok = serde_json::from_str::<Value>(&healthz)
        .ok()
        .and_then(|v| v.get("ok").and_then(Value::as_bool))
        == Some(true);
    if status != 200 || !health_ok {
        return Err(format!("/healthz is not ok: {status} {}", healthz.trim()));
    }
    if metrics_status != 200 {
        return Err(format!("/metrics answered {metrics_status}"));
    }
    for severity in ["suspicious", "info"] {
        let value = metric_value(
            &metrics,
            &format!("certwatch_alerts_total{{severity=\"{severity}\"}}"),
        );
        if value != Some(1.0) {
            return Err(format!(
                "certwatch_alerts_total{{severity=\"{severity}\"}} is {value:?}, expected 1"
            ));
        }
    }
    Ok(())
}

/// Exactly one suspicious alert for the evil name and one info alert for the known
/// name, each with a delivery id and a valid signature. Returns how many
/// signatures verified.
fn check_webhooks(received: &[Received]) -> Result<usize, String> {
    let mut suspicious = 0;
    let mut info = 0;
    let mut delivery_ids = Vec::new();
    for r in received {
        if r.method != "POST" {
            return Err(format!("webhook used {} instead of POST", r.method));
        }
        if r.header("X-CT-Event") != Some("match") {
            return Err(format!(
                "X-CT-Event is {:?}, expected match",
                r.header("X-CT-Event")
            ));
        }
        let delivery = r
            .header("X-CT-Delivery")
            .filter(|d| !d.trim().is_empty())
            .ok_or("a webhook has no X-CT-Delivery header")?;
        if delivery_ids.contains(&delivery) {
            return Err(format!("two webhooks share X-CT-Delivery {delivery}"));
        }
        delivery_ids.push(delivery);
        let signature = r
            .header("X-CT-Signature")
            .ok_or("a webhook has no X-CT-Signature header")?;
        verify_signature(signature, &r.body)?;
        let body: Value = serde_json::from_slice(&r.body).map_err(|e| {
            format!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&r.body)
            )
        })?;
        let names = |field: &str| -> Vec<String> {
            body.get(field)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let matched = names("matched_sans");
        if names("matched_entries") != ["ethereum.org"] {
            return Err(format!("matched_entries is not [\"ethereum.org\"]: {body}"));
        }
        match body.get("severity").and_then(Value::as_str) {
            Some("suspicious") if matched == [EVIL_NAME] => suspicious += 1,
            Some("info") if matched == [KNOWN_NAME] => info += 1,
            _ => return Err(format!("unexpected webhook body: {body}")),
        }
    }
    if (suspicious, info) != (1, 1) {
        return Err(format!(
            "got {suspicious} suspicious and {info} info webhooks, expected 1 and 1"
        ));
    }
    Ok(received.len())
}

/// `X-CT-Signature: sha256=<hex>` must be the HMAC-SHA256 of the exact body bytes.
fn verify_signature(header: &str, body: &[u8]) -> Result<(), String> {
    let hex = header
        .strip_prefix("sha256=")
        .ok_or_else(|| format!("X-CT-Signature {header:?} does not start with sha256="))?;
    let digest = decode_hex(hex).ok_or_else(|| format!("X-CT-Signature {header:?} is not hex"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes())
        .map_err(|e| e.to_string())?;
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| format!("X-CT-Signature {header:?} does not verify with the secret"))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A final certificate with one name, logged at `index` by the harness's log.
fn cert(index: u64, name: &str, fingerprint: &str, serial: &str) -> Cert {
    let mut cert = Cert::new(&[name]);
    cert.fingerprint = fingerprint.to_string();
    cert.serial = serial.to_string();
    cert.log_url = LOG_URL.to_string();
    cert.cert_index = index;
    cert
}

/// The known certificate, as the feed sends it and the inventory holds it.
fn known() -> Cert {
    cert(1002, KNOWN_NAME, KNOWN_FP, KNOWN_SERIAL)
}

/// `WEBHOOK RX: <event> <delivery id> <body>`, the body on one line.
fn print_received(received: &Received) {
    // The exact body when it is already one line (it is: certwatch sends compact JSON).
    let text = String::from_utf8_lossy(&received.body);
    let compact = if text.trim_end().contains('\n') {
        serde_json::from_slice::<Value>(&received.body)
            .map_or_else(|_| text.replace('\n', " "), |v| v.to_string())
    } else {
        text.trim_end().to_string()
    };
    println!(
        "WEBHOOK RX: {} {} {}",
        received.header("X-CT-Event").unwrap_or("-"),
        received.header("X-CT-Delivery").unwrap_or("-"),
        compact
    );
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}
