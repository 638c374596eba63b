//! `cargo bench --bench bench_delivery`: how long an alert takes from the feed to
//! a webhook receiver, the real pipeline in-process (release build) against a
//! throwaway database (`HARNESS_ADMIN_DSN`, as the harness), the kit's fake feed
//! and receivers, `SUSPICIOUS_GRACE_S=0`, one alert at a time:
//!
//! 1. a certificate of one name (the baseline);
//! 2. a certificate of 120,000 names, one of them watched (peeked, matched, parsed,
//!    recorded with its lists capped, delivered): target at most 5 s each;
//! 3. each alert on a kept-alive connection the receiver has closed meanwhile
//!    (`ClosingWebhook`): retried at once on a fresh connection, target at most
//!    800 ms each;
//! 4. 10 alerts to two targets, one of which never answers
//!    (`WEBHOOK_TIMEOUT_S=10`): time until the healthy one has all 10, target at
//!    most 3 s (it does not wait for the hung one).
//!
//! What the tests assert of the same paths without a clock: `tests/it/lenient.rs`
//! (120,000 names), `tests/it/delivery.rs` (the closed connection, the hung
//! target). Each target is printed with PASS or FAIL; exit code 1 on a FAIL.

use certwatch_testkit::service::{self, Running};
use certwatch_testkit::{Cert, ClosingWebhook, FakeFeed, FakeWebhook, FeedCmd, TestDb};
use std::time::{Duration, Instant};

/// How long one alert may take before the bench gives up on it.
const GIVE_UP: Duration = Duration::from_secs(30);

fn main() {
    // The service's own WARN lines (every alert here is suspicious) would drown the
    // figures; RUST_LOG overrides.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .try_init();
    let db = TestDb::create("bench_delivery").unwrap_or_else(|e| {
        eprintln!("bench_delivery: {e}");
        std::process::exit(1)
    });
    db.watch(&["example.com"]);
    println!(
        "bench_delivery: frame sent -> webhook request received, one alert at a time (release build: {})",
        !cfg!(debug_assertions)
    );
    let mut ok = true;

    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let svc = start(&db, &feed, &hook.url(), &[]);
    let one_name = latencies(20, || {
        feed.send(FeedCmd::Text(Cert::new(&["one.example.com"]).frame()));
        hook.recv(GIVE_UP).expect("delivered");
    });
    report("one name (baseline)", &one_name, None);
    let many = latencies(3, || {
        feed.send(FeedCmd::Text(frame_with_names(120_000)));
        hook.recv(GIVE_UP).expect("delivered");
    });
    ok &= report(
        "120,000 names, one watched",
        &many,
        Some(Duration::from_secs(5)),
    );
    drop(svc);

    let (feed, closing) = (FakeFeed::start(), ClosingWebhook::start());
    let svc = start(&db, &feed, &closing.url(), &[]);
    let reopened = latencies(10, || {
        feed.send(FeedCmd::Text(Cert::new(&["closed.example.com"]).frame()));
        closing.recv(GIVE_UP).expect("delivered");
    });
    // The first alert opens the connection; every later one finds it closed.
    ok &= report(
        &format!(
            "kept-alive connection closed by the receiver ({} of {} found closed)",
            closing.closed(),
            reopened.len()
        ),
        &reopened[1..],
        Some(Duration::from_millis(800)),
    );
    drop(svc);

    let (feed, hung, healthy) = (
        FakeFeed::start(),
        FakeWebhook::start(),
        FakeWebhook::start(),
    );
    hung.hang(true);
    let urls = format!("{},{}", hung.url(), healthy.url());
    let svc = start(&db, &feed, &urls, &[("WEBHOOK_TIMEOUT_S", "10")]);
    let started = Instant::now();
    for i in 0..10 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("h{i}.example.com")]).frame(),
        ));
    }
    for _ in 0..10 {
        healthy
            .recv(GIVE_UP)
            .expect("delivered to the healthy target");
    }
    let all_ten = started.elapsed();
    let failures = svc.metric(r#"certwatch_webhook_total{result="failure"}"#);
    ok &= report(
        &format!(
            "all 10 alerts to a healthy target beside a hung one (hung target failures by then: {failures})"
        ),
        &[all_ten],
        Some(Duration::from_secs(3)),
    );
    // Stopping waits out the drain budget with the hung target holding alerts.
    hung.hang(false);
    drop(svc);

    println!(
        "{}",
        if ok {
            "DELIVERY BENCH OK"
        } else {
            "DELIVERY BENCH: OVER TARGET"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}

/// The service on `db` and `feed`, delivering to `webhook_url` (one or several
/// targets), grace 0, plus `extra`; once it is connected to the feed.
fn start(db: &TestDb, feed: &FakeFeed, webhook_url: &str, extra: &[(&str, &str)]) -> Running {
    let mut env = vec![
        ("SUSPICIOUS_GRACE_S", "0"),
        ("WEBHOOK_URL", webhook_url),
        ("REDELIVERY_INTERVAL_S", "3600"),
    ];
    env.extend_from_slice(extra);
    let svc = service::start(db, feed, None, &env);
    assert!(
        feed.wait_for_client(Duration::from_secs(10)),
        "the service did not connect to the feed"
    );
    svc
}

/// `n` runs of `one` (send a frame, receive its delivery), each timed.
fn latencies(n: usize, mut one: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            one();
            started.elapsed()
        })
        .collect()
}

/// Prints median and maximum of `samples`; with a target, PASS when the maximum
/// is within it. Returns whether it passed.
fn report(what: &str, samples: &[Duration], target: Option<Duration>) -> bool {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let ok = target.is_none_or(|t| max <= t);
    println!(
        "{what}: {} samples, median {:.1} ms, max {:.1} ms{}",
        samples.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        match target {
            Some(t) => format!(
                " (target <= {} ms): {}",
                t.as_millis(),
                if ok { "PASS" } else { "FAIL" }
            ),
            None => String::new(),
        }
    );
    ok
}

/// A certificate frame of `n` names, `www.example.com` (watched) in the middle,
/// the others distinct single labels in base 36 (at most 4 bytes, so that 120,000
/// fit in the feed's 1 MiB frame cap, as in `tests/it/lenient.rs`), with a fresh
/// serial each time (so that no frame is a copy of another).
fn frame_with_names(n: usize) -> String {
    let cert = Cert::new(&["www.example.com"]);
    let mut names: Vec<String> = (0..n as u64 - 1)
        .map(|mut i| {
            let mut label = Vec::new();
            loop {
                label.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(i % 36) as usize]);
                i /= 36;
                if i == 0 {
                    break;
                }
            }
            String::from_utf8(label).expect("ASCII")
        })
        .collect();
    names.insert(n / 2, "www.example.com".into());
    let frame = format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","cert_index":1,"seen":1795353248.5,"source":{{"name":"Fake log","url":"https://ct.example/log"}},"leaf_cert":{{"all_domains":{},"serial_number":"{}","not_before":1768474800,"not_after":1776250799,"fingerprint":"{}","issuer":{{"aggregated":"/CN=Fake CA"}},"extensions":{{"authorityKeyIdentifier":"keyid:cd:82"}}}}}}}}"#,
        serde_json::to_string(&names).expect("names"),
        cert.serial,
        cert.fingerprint
    );
    assert!(
        frame.len() < certwatch::sources::feed::reader::MAX_FRAME_BYTES,
        "{} bytes",
        frame.len()
    );
    frame
}
