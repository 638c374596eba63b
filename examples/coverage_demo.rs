//! Coverage, worked example: `cargo run --example coverage_demo`.
//!
//! A certstream server drops one certificate; certwatch notices the hole in the
//! log's sequence, fetches the entry from the log itself and alerts it. With
//! PostgreSQL running, it:
//!
//! 1. creates a throwaway database (`TestDb`, from `HARNESS_ADMIN_DSN` like the
//!    harness) watching `tiny.example.com`;
//! 2. starts a fake CT log over real HTTP (RFC 6962 `get-entries`) holding the
//!    bundled fixture certificates as entries logged over the last few seconds, a
//!    trusted log list naming it, a fake certstream feed and a fake webhook receiver;
//! 3. runs the real service in-process and has the feed deliver every entry of the
//!    log except the one for `tiny.example.com`;
//! 4. waits for the alert, and prints what it says (`detected_via`), the requests the
//!    log received, the backfill counters and the detection-latency histogram (CT
//!    timestamp of the entry to the alert row being written).
//!
//! Prints `COVERAGE DEMO OK: ...` and exits 0, or `COVERAGE DEMO FAILED: <why>`
//! and exits 1. About 15 seconds: the hole is a gap only after its 5 s settle time.

use certwatch_testkit::ctlog::{FakeCtLog, fixture_entries};
use certwatch_testkit::probe::{metric_value, scrape};
use certwatch_testkit::service::wait_service;
use certwatch_testkit::{FakeFeed, FakeWebhook, FeedCmd, TestDb};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WATCHED: &str = "tiny.example.com";

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .filter_module("postgres", log::LevelFilter::Warn)
        .try_init();
    match run() {
        Ok(summary) => {
            println!("COVERAGE DEMO OK: {summary}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("COVERAGE DEMO FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let db = TestDb::create("coverage_demo")?;
    db.watch(&[WATCHED]);

    // The log: the fixture certificates, logged one every 200 ms until 1 s ago.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let fixtures = fixture_entries();
    let n = fixtures.len() as u64;
    let mut entries = Vec::new();
    let mut lines = Vec::new();
    for (i, (mut entry, line)) in fixtures.into_iter().enumerate() {
        entry.timestamp_ms = now_ms - 1000 - (n - 1 - i as u64) * 200;
        entries.push(entry);
        lines.push(line);
    }
    let log = FakeCtLog::start(entries.clone());
    let skipped = lines
        .iter()
        .position(|l| l.contains(&format!("\"{WATCHED}\"")))
        .ok_or("no fixture certificate for the watched name")?;
    let lines: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut v: serde_json::Value = serde_json::from_str(line).expect("fixture json");
            v["data"]["source"]["url"] = log.url().into();
            v["data"]["source"]["timestamp"] = (entries[i].timestamp_ms as f64 / 1000.0).into();
            v["data"]["cert_index"] = (i as u64).into();
            v.to_string()
        })
        .collect();
    let list = std::env::temp_dir().join(format!("certwatch-demo-{}.json", std::process::id()));
    std::fs::write(&list, log.log_list(false)).map_err(|e| format!("log list: {e}"))?;
    println!(
        "CT log {} with {n} entries; entry {skipped} is a certificate for {WATCHED}",
        log.url()
    );

    let feed = FakeFeed::start();
    let webhook = FakeWebhook::start();
    let vars: HashMap<&str, String> = HashMap::from([
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("CT_LOG_LIST", list.to_string_lossy().into_owned()),
        ("CERTSTREAM_URL", feed.url()),
        ("WEBHOOK_URL", webhook.url()),
        ("SUSPICIOUS_GRACE_S", "1".to_string()),
        ("API_PORT", "0".to_string()),
        ("WORKERS", "2".to_string()),
    ]);
    let config = certwatch::Config::from_lookup(|name| vars.get(name).cloned())
        .map_err(|e| format!("config: {e}"))?;
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start(config, shutdown).map_err(|e| format!("start: {e}"))?;
    let addr = service.http_addr();
    let result = (|| {
        if !feed.wait_for_client(Duration::from_secs(10)) {
            return Err("certwatch did not connect to the feed".to_string());
        }
        let coverage_on = || {
            scrape(addr)
                .ok()
                .and_then(|t| metric_value(&t, "certwatch_ct_coverage_enabled"))
                == Some(1.0)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !coverage_on() {
            if Instant::now() > deadline {
                return Err("the log list was not loaded".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("feed: delivers entries 0..{} except {skipped}", n - 1);
        let sent = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            if i != skipped {
                feed.send(FeedCmd::Text(line.clone()));
            }
        }
        let received = webhook
            .recv(Duration::from_secs(30))
            .ok_or("no alert within 30 s")?;
        let body = received.json();
        let after = sent.elapsed().as_secs_f64();
        println!(
            "alert after {after:.1} s: {} {}, detected_via={}, delivery id {}",
            body["severity"].as_str().unwrap_or("?"),
            body["matched_sans"],
            body["detected_via"].as_str().unwrap_or("?"),
            received.header("X-CT-Delivery").unwrap_or("?")
        );
        if body["detected_via"] != "backfill" {
            return Err(format!("detected_via is {}", body["detected_via"]));
        }
        println!(
            "the log received {} get-entries request(s)",
            log.hits("ct/v1/get-entries")
        );
        let text = scrape(addr)?;
        let label = log.url();
        for line in text.lines().filter(|l| {
            l.starts_with("certwatch_detection_latency_seconds")
                && l.contains("detected_via=\"backfill\"")
                || l.starts_with("certwatch_ct_backfill_entries_total") && l.contains(&label)
                || l.starts_with("certwatch_ct_log_gap_entries_total")
                || l.starts_with("certwatch_ct_log_entries_seen_total")
        }) {
            println!("  {line}");
        }
        let count = metric_value(
            &text,
            "certwatch_detection_latency_seconds_count{detected_via=\"backfill\"}",
        )
        .unwrap_or(0.0);
        let sum = metric_value(
            &text,
            "certwatch_detection_latency_seconds_sum{detected_via=\"backfill\"}",
        )
        .unwrap_or(0.0);
        if count != 1.0 {
            return Err(format!("{count} backfill latencies observed, not 1"));
        }
        Ok(format!(
            "entry {skipped} skipped by the feed, alerted via backfill {after:.1} s later; \
             detection latency (CT timestamp to alert row) {sum:.1} s"
        ))
    })();
    trigger.trigger();
    let stopped = wait_service(service, Duration::from_secs(15));
    let _ = std::fs::remove_file(&list);
    let summary = result?;
    stopped?;
    Ok(summary)
}
