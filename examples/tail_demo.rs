//! Tailing CT logs, worked example: `cargo run --example tail_demo`.
//!
//! certwatch reads two CT logs itself (`CT_SOURCE=logs`), with no certstream feed at
//! all, and shows what it reads to be the tree each log signed. With PostgreSQL
//! running, it:
//!
//! 1. creates a throwaway database (`TestDb`, from `HARNESS_ADMIN_DSN` like the
//!    harness) watching `tiny.example.com`;
//! 2. starts two fake CT logs over real HTTP, each signing its tree heads with the
//!    key a trusted log list names: one RFC 6962 (`get-sth`, `get-entries`), one
//!    static-ct (checkpoints, data and hash tiles), and runs the real service
//!    in-process on that list; certwatch starts reading each at its signed head;
//! 3. appends a certificate for `tiny.example.com` to the RFC 6962 log and publishes
//!    a new head: the alert arrives with `detected_via: "log"`, and the log's
//!    verified position moves to the new head;
//! 4. makes the tiled log lie: it appends entries and publishes a head over them, but
//!    serves, at one index certwatch has not read yet, another certificate (for
//!    `login.tiny.example.com`) than the one its signed tree holds. certwatch reads
//!    it, finds that the entries read do not hash to the signed root and says so:
//!    an ERROR line, `certwatch_ct_log_verification_failures_total{reason="root_mismatch"}`,
//!    `/healthz` `coverage.logs_failing_verification` 1, the position left where it
//!    was; and the certificate it was served, being watched, is alerted all the same.
//!
//! Prints `TAIL DEMO OK: ...` and exits 0, or `TAIL DEMO FAILED: <why>` and exits 1.
//! About 10 seconds; every wait is bounded: the steps together at most 45 s, the
//! service's stop 10 s.

use certwatch_testkit::ctlog::{FakeCtLog, FakeEntry, fixture_entries, log_list_mixed};
use certwatch_testkit::pki;
use certwatch_testkit::probe::{metric_value, scrape, try_request};
use certwatch_testkit::service::wait_service;
use certwatch_testkit::{FakeWebhook, Received, TestDb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WATCHED: &str = "tiny.example.com";
/// The certificate the tiled log serves in place of the one it logged.
const SWAPPED_IN: &str = "login.tiny.example.com";
/// Each step's wait at most.
const STEP: Duration = Duration::from_secs(30);
/// All the steps together at most (the service's stop after them takes at most 10 s).
const BUDGET: Duration = Duration::from_secs(45);

/// certwatch's ERROR records, as they were logged (the logger prints them too).
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// env_logger, plus a copy of every ERROR record of certwatch's own in `ERRORS`.
struct Capture(env_logger::Logger);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Error || self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Error && record.target().starts_with("certwatch") {
            ERRORS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record.args().to_string());
        }
        if self.0.matches(record) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn main() -> ExitCode {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .filter_module("postgres", log::LevelFilter::Warn)
            .filter_module("tokio_postgres", log::LevelFilter::Warn)
            .build();
    let max = logger.filter().max(log::LevelFilter::Error);
    if log::set_boxed_logger(Box::new(Capture(logger))).is_ok() {
        log::set_max_level(max);
    }
    match run() {
        Ok(summary) => {
            println!("TAIL DEMO OK: {summary}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("TAIL DEMO FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

/// A file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fixture certificate for `tiny.example.com`, and the others.
fn fixtures() -> Result<(FakeEntry, Vec<FakeEntry>), String> {
    let (watched, others): (Vec<_>, Vec<_>) = fixture_entries()
        .into_iter()
        .partition(|(_, line)| line.contains(&format!("\"{WATCHED}\"")));
    let watched = watched
        .into_iter()
        .next()
        .ok_or("no fixture certificate for the watched name")?
        .0;
    Ok((watched, others.into_iter().map(|(e, _)| e).collect()))
}

/// `n` unwatched entries (the fixtures in turn), logged one a millisecond from `from_ms`.
fn unwatched(others: &[FakeEntry], n: usize, from_ms: u64) -> Vec<FakeEntry> {
    (0..n)
        .map(|i| {
            let mut e = others[i % others.len()].clone();
            e.timestamp_ms = from_ms + i as u64;
            e
        })
        .collect()
}

/// A certificate for `name` from a CA of its own, as a log entry at `timestamp_ms`.
fn certificate_for(name: &str, timestamp_ms: u64) -> Result<FakeEntry, String> {
    let ca = pki::ca("Elsewhere CA", "Elsewhere CA R1")?;
    let der = pki::leaf(&ca, name, None)?;
    Ok(FakeEntry::x509(der, vec![ca.der().to_vec()], timestamp_ms))
}

/// The service's metrics and `/healthz`, read over HTTP.
struct Probe {
    addr: SocketAddr,
}

impl Probe {
    fn metric(&self, series: &str) -> Option<f64> {
        scrape(self.addr)
            .ok()
            .and_then(|t| metric_value(&t, series))
    }

    fn verified(&self, log: &FakeCtLog) -> Option<u64> {
        self.metric(&format!(
            "certwatch_ct_log_verified_size{{log=\"{}\"}}",
            log.url()
        ))
        .map(|v| v as u64)
    }

    fn healthz(&self) -> Result<serde_json::Value, String> {
        let (_, body) = try_request(&format!("http://{}/healthz", self.addr), "GET")?;
        serde_json::from_str(&body).map_err(|e| format!("/healthz: {e}: {body}"))
    }
}

/// Polls `f` every 100 ms for at most `within`: true once it holds.
fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The next webhook delivery whose `matched_sans` holds `name`, within `within`
/// (others are printed and skipped).
fn alert_for(webhook: &FakeWebhook, name: &str, within: Duration) -> Option<Received> {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let received = webhook.recv(left)?;
        let body = received.json();
        let names = body["matched_sans"].as_array().cloned().unwrap_or_default();
        if names.iter().any(|n| n == name) {
            return Some(received);
        }
        println!("   (another delivery: {})", body["matched_sans"]);
    }
}

fn run() -> Result<String, String> {
    let started = Instant::now();
    let at = || format!("[{:>4.1} s]", started.elapsed().as_secs_f64());
    let db = TestDb::create("tail_demo")?;
    db.watch(&[WATCHED]);
    let (watched, others) = fixtures()?;
    let base = now_ms() - 600_000;
    let rfc = FakeCtLog::start(unwatched(&others, 300, base));
    let tiled = FakeCtLog::start(unwatched(&others, 250, base + 100_000));
    let list = TempFile(
        std::env::temp_dir().join(format!("certwatch-tail-demo-{}.json", std::process::id())),
    );
    std::fs::write(
        &list.0,
        log_list_mixed(&[
            (&rfc, false, "Demo Operator A"),
            (&tiled, true, "Demo Operator B"),
        ]),
    )
    .map_err(|e| format!("log list: {e}"))?;
    println!(
        "{} two CT logs, each signing its heads with the key the list names:\n\
         \x20   RFC 6962  {} (300 entries)\n\
         \x20   static-ct {} (250 entries)\n\
         \x20   certwatch watches {WATCHED}; CT_SOURCE=logs, no certstream feed",
        at(),
        rfc.url(),
        tiled.url()
    );

    let webhook = FakeWebhook::start();
    let vars: HashMap<&str, String> = HashMap::from([
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("CT_SOURCE", "logs".to_string()),
        ("CT_LOG_LIST", list.0.to_string_lossy().into_owned()),
        ("CT_CONTACT", "tail-demo@example.test".to_string()),
        ("WEBHOOK_URL", webhook.url()),
        ("SUSPICIOUS_GRACE_S", "1".to_string()),
        ("API_PORT", "0".to_string()),
    ]);
    let config = certwatch::Config::from_lookup(|name| vars.get(name).cloned())
        .map_err(|e| format!("config: {e}"))?;
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start(config, shutdown).map_err(|e| format!("start: {e}"))?;
    let probe = Probe {
        addr: service.http_addr(),
    };
    let result = demo(&probe, &rfc, &tiled, &webhook, &watched, &others, &at);
    trigger.trigger();
    let stopped = wait_service(service, Duration::from_secs(10));
    let summary = result?;
    stopped?;
    Ok(summary)
}

fn demo(
    probe: &Probe,
    rfc: &FakeCtLog,
    tiled: &FakeCtLog,
    webhook: &FakeWebhook,
    watched: &FakeEntry,
    others: &[FakeEntry],
    at: &dyn Fn() -> String,
) -> Result<String, String> {
    let deadline = Instant::now() + BUDGET;
    // A step's wait: `STEP`, or what is left of `BUDGET`.
    let step = || STEP.min(deadline.saturating_duration_since(Instant::now()));
    // 1. First sight: each log read from its signed head on.
    if !wait_for(Duration::from_secs(20).min(step()), || {
        probe.verified(rfc) == Some(300) && probe.verified(tiled) == Some(250)
    }) {
        return Err(format!(
            "the logs were not verified at their heads within 20 s (RFC 6962 {:?}, tiled {:?})",
            probe.verified(rfc),
            probe.verified(tiled)
        ));
    }
    println!(
        "{} certwatch reads both from their signed heads: verified size 300 (RFC 6962) and 250 (tiled)",
        at()
    );

    // 2. A watched certificate logged in the RFC 6962 log.
    let mut batch = unwatched(others, 19, now_ms());
    let mut entry = watched.clone();
    entry.timestamp_ms = now_ms();
    batch.insert(7, entry);
    rfc.append(batch);
    rfc.publish();
    let published = Instant::now();
    println!(
        "{} the RFC 6962 log publishes a head of 320 entries; entry 307 is a certificate for {WATCHED}",
        at()
    );
    let alert = alert_for(webhook, WATCHED, step())
        .ok_or_else(|| format!("no alert for {WATCHED} in time"))?;
    let body = alert.json();
    let first_latency = published.elapsed().as_secs_f64();
    println!(
        "{} WEBHOOK: {} {} detected_via={} source_log={} cert_link={} ({first_latency:.1} s after the head)",
        at(),
        body["severity"].as_str().unwrap_or("?"),
        body["matched_sans"],
        body["detected_via"],
        body["source_log"],
        body["cert_link"]
    );
    if body["detected_via"] != "log" {
        return Err(format!(
            "detected_via is {}, not \"log\"",
            body["detected_via"]
        ));
    }
    if !wait_for(step(), || probe.verified(rfc) == Some(320)) {
        return Err(format!(
            "the RFC 6962 log's position did not move to 320 ({:?})",
            probe.verified(rfc)
        ));
    }
    println!(
        "{} the 20 entries read hash to the signed root: verified size 320",
        at()
    );

    // 3. The tiled log serves another certificate than its signed tree holds.
    let swapped_at = 253u64;
    tiled.append(unwatched(others, 20, now_ms()));
    let impostor = certificate_for(SWAPPED_IN, now_ms())?;
    tiled.misbehave(|m| {
        m.swapped.insert(swapped_at, impostor);
    });
    tiled.publish();
    println!(
        "{} the tiled log publishes a head of 270 entries, signed over what it logged, but its data tile \
         serves a certificate for {SWAPPED_IN} as entry {swapped_at} instead",
        at()
    );
    let label = tiled.url();
    let failures = format!(
        "certwatch_ct_log_verification_failures_total{{log=\"{label}\",reason=\"root_mismatch\"}}"
    );
    let error = {
        let mut found = None;
        wait_for(step(), || {
            found = ERRORS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| l.contains("failed verification (root_mismatch)") && l.contains(&label))
                .cloned();
            found.is_some()
        });
        found.ok_or("no ERROR line for the tiled log's root mismatch in time")?
    };
    println!("{} certwatch logged: ERROR {error}", at());
    let count = probe.metric(&failures).unwrap_or(0.0);
    println!("{} /metrics: {failures} {count}", at());
    if count < 1.0 {
        return Err("the root mismatch was not counted".into());
    }
    // `/healthz` counts the failing logs once a second.
    let mut health = serde_json::Value::Null;
    wait_for(Duration::from_secs(5).min(step()), || {
        health = probe.healthz().unwrap_or_default();
        health["coverage"]["logs_failing_verification"] == 1
    });
    let failing = &health["coverage"]["logs_failing_verification"];
    println!(
        "{} /healthz: \"ok\": {}, \"coverage\": {}",
        at(),
        health["ok"],
        health["coverage"]
    );
    if failing != 1 {
        return Err(format!(
            "/healthz logs_failing_verification is {failing}, not 1"
        ));
    }
    let stayed = probe.verified(tiled);
    println!(
        "{} the tiled log's verified size stays at {} (head 270): nothing past it is taken as proven",
        at(),
        stayed.map_or("?".to_string(), |s| s.to_string())
    );
    if stayed != Some(250) {
        return Err(format!("the tiled log's position moved to {stayed:?}"));
    }
    let alert = alert_for(webhook, SWAPPED_IN, step()).ok_or_else(|| {
        format!("the swapped-in certificate for {SWAPPED_IN} was not alerted in time")
    })?;
    let body = alert.json();
    println!(
        "{} WEBHOOK: {} {} detected_via={} source_log={}: what the log served is alerted all the same",
        at(),
        body["severity"].as_str().unwrap_or("?"),
        body["matched_sans"],
        body["detected_via"],
        body["source_log"]
    );
    if body["detected_via"] != "log" {
        return Err(format!(
            "detected_via is {}, not \"log\"",
            body["detected_via"]
        ));
    }
    Ok(format!(
        "{WATCHED} alerted from the RFC 6962 log {first_latency:.1} s after its head; the tiled log's \
         swapped entry flagged (root_mismatch, logs_failing_verification 1, position kept) and \
         {SWAPPED_IN} alerted from it"
    ))
}
