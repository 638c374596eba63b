//! Coverage soak: `cargo build --bin certwatch && cargo run --example coverage_soak`.
//!
//! Shows that with its default settings certwatch alerts every watched issuance a
//! CT log logged exactly once, leaves nothing unproven, and keeps its memory flat,
//! while everything around it misbehaves. certwatch runs as a child process (the
//! binary, so it can be SIGKILLed and restarted) against:
//!
//! - a CT log that grows over the run (`COVERAGE_SOAK_ENTRIES`, default 20,000
//!   entries, logged at an even rate over `COVERAGE_SOAK_SECONDS`, default 300),
//!   served twice by the test kit's `FakeCtLog`: one listed in the trusted log list
//!   as an RFC 6962 log (`get-entries`), one, with the same entries, as a static-ct
//!   (tiled) log (data tiles), as a certificate is logged in several logs. Real
//!   X.509 certificates made for the run (rcgen, fresh serials) under a CA of the
//!   run; `COVERAGE_SOAK_WATCHED` (120) of them, spread through the log, are for
//!   names under the watched `soak.example.net`, each a distinct issuance, one in
//!   four in the inventory (`info`), the rest `suspicious`;
//! - a certstream feed (the kit's `FakeFeed`) in certstream-server-go's dialect
//!   (`source.url`, `cert_index`, `source.timestamp`, full stream with `as_der` and
//!   chain, rendered from the certificate) that sends each log's entries in order as
//!   they are logged, but drops about `COVERAGE_SOAK_DROP_PCT` (1) % of each log's
//!   entries in singles and short runs (1 to 6 entries), a share of the watched
//!   issuances (`COVERAGE_SOAK_WATCHED_DROPPED_PCT`, 25 %) among them on both logs,
//!   so only backfill can find those; it closes the connection every 45 s, and what
//!   is logged while certwatch is not connected is never sent (a real server's
//!   broadcast does not wait);
//! - one SIGKILL of certwatch and a restart 3 s later (at 20 % of the run), one
//!   SIGHUP (45 %), Postgres stopped for 15 s (55 %: the kit's `TestCluster`, a
//!   private cluster), a webhook receiver (the kit's `FlakyWebhook`) that answers 10 %
//!   of requests (`COVERAGE_SOAK_WEBHOOK_FAIL_PCT`) with a 500 and is down (port
//!   closed) for 10 s once (35 %). The times scale with the run, so a 60 s run has
//!   each fault once.
//!
//! Every `COVERAGE_SOAK_REPORT_S` (30) seconds one line: elapsed, entries logged,
//! feed sent/dropped/lost, reconnects, alert rows, webhook requests and distinct
//! issuances accepted, entries unproven, certwatch's RSS. Once the log is complete
//! the soak waits (at most `COVERAGE_SOAK_SETTLE_S`, 480) until every watched
//! issuance is alerted and delivered and nothing is left open, then 10 s more, stops
//! certwatch with SIGTERM and checks:
//!
//! - every watched issuance of the log is one row of `public.alerts`: none missing,
//!   none twice, nothing else alerted;
//! - each arrived at the webhook (a 2xx answer) under exactly one delivery id (a
//!   redelivery may repeat it);
//! - `/healthz` `coverage.entries_unproven` and `certwatch_ct_entries_unproven` are
//!   0, and `certwatch_ct_backfill_entries_total` for `skipped`, `abandoned`,
//!   `failed` and `other_replica` (there is one instance) is 0 in both processes
//!   (the killed one's last scrape, the restarted one's end);
//! - RSS (`VmRSS` of the child, `/proc/<pid>/status`, every 5 s) grew less than 10 %
//!   from the end of the warm-up (20 s or 10 % of the run after the restart,
//!   whichever is longer) to the end;
//! - certwatch never stopped on its own, reconnected after each close, and exited 0
//!   on SIGTERM.
//!
//! Then the figures and `COVERAGE SOAK OK: ...`, or `COVERAGE SOAK FAILED: <why>`
//! with exit code 1, and for each issuance never alerted, its index and what the
//! feed did with it on each log.
//!
//! The binary is the one next to this example (`target/<profile>/certwatch`, built
//! by `cargo build --bin certwatch` with the same profile: `--release` for both), or
//! `CERTWATCH_BIN=/path/to/certwatch`, so the same soak runs against an older build
//! for a before/after comparison. certwatch's own settings are its defaults; the soak
//! sets only `POSTGRES_DSN`, `CERTSTREAM_URL`, `WEBHOOK_URL`, `CT_LOG_LIST` and
//! `API_PORT` (a free port, the same for the restart, as a deployment keeps it).
//!
//! Bounded: every wait has a limit, and a watchdog ends the run (cleaning up) past
//! `COVERAGE_SOAK_SECONDS + COVERAGE_SOAK_SETTLE_S + 240` s. On every way out (error,
//! panic, SIGINT/SIGTERM, watchdog) certwatch is killed, the Postgres cluster stopped
//! and deleted, and the temporary directory (log list, certwatch's log) removed;
//! certwatch also dies with the soak (`PR_SET_PDEATHSIG`) should the soak itself be
//! SIGKILLed. `COVERAGE_SOAK_KEEP_LOG=/path` copies certwatch's log there first.
//! Other knobs: `COVERAGE_SOAK_RATE` (entries logged per second; overrides
//! `COVERAGE_SOAK_ENTRIES`), `COVERAGE_SOAK_SEED` (certificates, drops and webhook
//! failures; default: from the clock, printed), `COVERAGE_SOAK_RESTART_NEW_NAME=1`
//! (the restart on another `API_PORT`, so under another instance name, as a
//! re-created container with a new host name would be).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use certwatch_testkit::cluster::TestCluster;
use certwatch_testkit::ctlog::{FakeCtLog, FakeEntry, log_list_mixed};
use certwatch_testkit::feedgen::XorShift;
use certwatch_testkit::flaky_webhook::{Delivery, FlakyWebhook};
use certwatch_testkit::probe::try_request;
use certwatch_testkit::{FakeFeed, FeedCmd, proc, wait_until};
use serde_json::{Value, json};
use sha1::Digest as _;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Name};

/// The watch entry; every watched certificate is for `w<k>.soak.example.net`.
const WATCH_ENTRY: &str = "soak.example.net";
/// Distinct unwatched certificates the rest of the log cycles through.
const FILLERS: usize = 64;
/// RSS sampling and metrics scraping interval.
const SAMPLE: Duration = Duration::from_secs(5);
const RSS_GROWTH_LIMIT_PCT: f64 = 10.0;
const KILL_DOWNTIME: Duration = Duration::from_secs(3);
const WEBHOOK_DOWN: Duration = Duration::from_secs(10);
const PG_DOWN: Duration = Duration::from_secs(15);
/// The feed closes the connection this often (at most 75 % of the run).
const RECONNECT_EVERY_S: f64 = 45.0;
/// Once everything is alerted and delivered, how long nothing may change.
const QUIET: Duration = Duration::from_secs(10);
/// How long the fake feed gets to write what it queued before certwatch is killed.
const FEED_DRAIN: Duration = Duration::from_millis(300);
/// How often the feeder publishes what is due.
const FEED_TICK: Duration = Duration::from_millis(50);
/// Never dropped: the first entries (a fresh certwatch starts tracking a log at the
/// first index it sees) and the last (a hole is only known once a later index comes).
const UNDROPPED_EDGE: usize = 10;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .filter_module("postgres", log::LevelFilter::Error)
        .try_init();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, &INTERRUPTED) {
            eprintln!("cannot handle signal {signal}: {e}");
        }
    }
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(format!("panicked: {why}"))
    });
    FINISHED.store(true, Ordering::SeqCst);
    cleanup();
    let took = started.elapsed().as_secs_f64();
    match outcome {
        Ok(summary) => {
            println!("COVERAGE SOAK OK: {summary} ({took:.0} s in all)");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("COVERAGE SOAK FAILED: {why} ({took:.0} s in all)");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

struct Settings {
    seconds: f64,
    entries: usize,
    rate: f64,
    drop_pct: f64,
    watched: usize,
    watched_dropped_pct: f64,
    webhook_fail_pct: f64,
    settle: Duration,
    report: Duration,
    seed: u64,
    bin: PathBuf,
    keep_log: Option<PathBuf>,
    /// Restart on another `API_PORT`: another instance name, as a re-created
    /// container's new host name gives.
    restart_new_name: bool,
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match env_str(name) {
        Some(v) => v.trim().parse().map_err(|e| format!("{name}={v:?}: {e}")),
        None => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let seconds: f64 = env_num("COVERAGE_SOAK_SECONDS", 300.0)?;
        if !(60.0..=86_400.0).contains(&seconds) {
            return Err(format!(
                "COVERAGE_SOAK_SECONDS={seconds}: 60 to 86400 (each fault needs its room)"
            ));
        }
        let (entries, rate) = match env_str("COVERAGE_SOAK_RATE") {
            Some(_) => {
                let rate: f64 = env_num("COVERAGE_SOAK_RATE", 0.0)?;
                if !(1.0..=5_000.0).contains(&rate) {
                    return Err(format!("COVERAGE_SOAK_RATE={rate}: 1 to 5000 entries/s"));
                }
                ((rate * seconds).round() as usize, rate)
            }
            None => {
                let entries: usize = env_num("COVERAGE_SOAK_ENTRIES", 20_000)?;
                (entries, entries as f64 / seconds)
            }
        };
        let watched: usize = env_num("COVERAGE_SOAK_WATCHED", 120)?;
        if !(1_000..=2_000_000).contains(&entries) || watched == 0 || watched * 20 > entries {
            return Err(format!(
                "{entries} entries and {watched} watched: need 1,000 to 2,000,000 entries, \
                 at least 20 per watched issuance"
            ));
        }
        let drop_pct: f64 = env_num("COVERAGE_SOAK_DROP_PCT", 1.0)?;
        let watched_dropped_pct: f64 = env_num("COVERAGE_SOAK_WATCHED_DROPPED_PCT", 25.0)?;
        let webhook_fail_pct: f64 = env_num("COVERAGE_SOAK_WEBHOOK_FAIL_PCT", 10.0)?;
        for (name, v, max) in [
            ("COVERAGE_SOAK_DROP_PCT", drop_pct, 20.0),
            (
                "COVERAGE_SOAK_WATCHED_DROPPED_PCT",
                watched_dropped_pct,
                100.0,
            ),
            ("COVERAGE_SOAK_WEBHOOK_FAIL_PCT", webhook_fail_pct, 50.0),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(format!("{name}={v}: 0 to {max}"));
            }
        }
        let seed = match env_str("COVERAGE_SOAK_SEED") {
            Some(_) => env_num("COVERAGE_SOAK_SEED", 0u64)?,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        Ok(Settings {
            seconds,
            entries,
            rate,
            drop_pct,
            watched,
            watched_dropped_pct,
            webhook_fail_pct,
            // An alert whose attempt could not be recorded while Postgres was down
            // is due again when its delivery lease ends (5 minutes) and is sent by
            // the next sweep (REDELIVERY_INTERVAL_S, 60): a fault late in the run
            // needs more than 300 s to settle.
            settle: Duration::from_secs(env_num("COVERAGE_SOAK_SETTLE_S", 480u64)?),
            report: Duration::from_secs(env_num("COVERAGE_SOAK_REPORT_S", 30u64)?.max(1)),
            seed,
            bin: certwatch_bin()?,
            keep_log: env_str("COVERAGE_SOAK_KEEP_LOG").map(PathBuf::from),
            restart_new_name: env_num("COVERAGE_SOAK_RESTART_NEW_NAME", 0u8)? != 0,
        })
    }
}

/// `CERTWATCH_BIN`, else the `certwatch` binary of this example's profile:
/// `target/<profile>/examples/coverage_soak` -> `target/<profile>/certwatch`.
fn certwatch_bin() -> Result<PathBuf, String> {
    if let Some(bin) = env_str("CERTWATCH_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("CERTWATCH_BIN={}: no such file", bin.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("where is this example: {e}"))?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("certwatch"))
        .ok_or("this example is not under target/<profile>/examples")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no certwatch binary at {}: build it first with `cargo build --bin certwatch` \
             (the example's profile: `--release` for both), or set CERTWATCH_BIN",
            bin.display()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// What must not outlive the soak
// ---------------------------------------------------------------------------------------------

/// The certwatch child, the Postgres cluster and the temporary directory: held here
/// so that every way out (the end of `main`, a panic, the watchdog) removes them.
struct Owned {
    child: Option<Child>,
    cluster: Option<TestCluster>,
    dir: Option<PathBuf>,
}

static OWNED: Mutex<Owned> = Mutex::new(Owned {
    child: None,
    cluster: None,
    dir: None,
});

fn owned() -> MutexGuard<'static, Owned> {
    OWNED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills certwatch, stops and deletes the cluster, removes the temporary directory.
/// Idempotent.
fn cleanup() {
    let (child, cluster, dir) = {
        let mut o = owned();
        (o.child.take(), o.cluster.take(), o.dir.take())
    };
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(cluster);
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `cleanup` when dropped: on every return and on unwinding.
struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        cleanup();
    }
}

/// Ends the run past `limit`: first asks the main loop to stop (the normal way
/// out), then, 60 s later, cleans up and exits by itself.
fn watchdog(limit: Duration) {
    let spawned = thread::Builder::new()
        .name("soak-watchdog".into())
        .spawn(move || {
            let started = Instant::now();
            while started.elapsed() < limit {
                if FINISHED.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(500));
            }
            eprintln!("watchdog: the soak is past its {} s limit", limit.as_secs());
            INTERRUPTED.store(true, Ordering::SeqCst);
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(60) {
                if FINISHED.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(500));
            }
            println!(
                "COVERAGE SOAK FAILED: the watchdog ended the run after {} s",
                limit.as_secs() + 60
            );
            cleanup();
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        eprintln!("cannot start the watchdog: {e}");
    }
}

fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted (signal or watchdog)".into())
    } else {
        Ok(())
    }
}

/// Sleeps `d` in short steps, returning early (with an error) when interrupted.
fn nap(d: Duration) -> Result<(), String> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        check_interrupted()?;
        thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
    }
    check_interrupted()
}

fn with_cluster<R>(f: impl FnOnce(&TestCluster) -> R) -> Result<R, String> {
    let o = owned();
    o.cluster.as_ref().map(f).ok_or_else(|| "no cluster".into())
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// One certificate of the log: its DER and what the checks need of it.
struct Leaf {
    der: Vec<u8>,
    /// Upper-case hex without leading zeros (certwatch's spelling).
    serial: String,
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
    /// Lower-case hex SHA-1 of the DER.
    fingerprint: String,
    /// `leaf_cert` as certstream-server-go renders it (JSON).
    feed_json: String,
}

struct Pki {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    der: Vec<u8>,
    /// The one-certificate `chain` (JSON array).
    chain_json: String,
}

fn pki() -> Result<Pki, String> {
    let err = |e: rcgen::Error| format!("CA: {e}");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "ZZ");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Coverage Soak Test PKI");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Coverage Soak CA S1");
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let issuer = rcgen::CertifiedIssuer::self_signed(params, key).map_err(err)?;
    let der = issuer.as_ref().der().to_vec();
    let chain_json = json!([feed_cert_json(&der, true)?]).to_string();
    Ok(Pki {
        issuer,
        der,
        chain_json,
    })
}

fn leaf(pki: &Pki, names: Vec<String>, rng: &mut XorShift) -> Result<Leaf, String> {
    let err = |e: rcgen::Error| format!("certificate for {names:?}: {e}");
    let mut params = rcgen::CertificateParams::new(names.clone()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    let mut serial = rng.bytes(16);
    serial[0] = (serial[0] & 0x7F) | 0x10;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let not_before = rcgen::date_time_ymd(2026, 1, 15) + Duration::from_secs(rng.below(5 * 86_400));
    params.not_before = not_before;
    params.not_after = not_before + Duration::from_secs(90 * 86_400 - 1);
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let der = params
        .signed_by(&key, &pki.issuer)
        .map_err(err)?
        .der()
        .to_vec();
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| format!("own DER: {e}"))?;
    let validity = cert.tbs_certificate.validity();
    Ok(Leaf {
        serial: normalized_serial(&hex(cert.tbs_certificate.raw_serial())),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        fingerprint: hex(&sha1::Sha1::digest(&der)),
        feed_json: feed_cert_json(&der, false)?.to_string(),
        names,
        der,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn colon_hex(bytes: &[u8], upper: bool) -> String {
    let parts: Vec<String> = bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect();
    parts.join(":")
}

fn normalized_serial(hex: &str) -> String {
    let t = hex.trim_start_matches('0').to_ascii_uppercase();
    if t.is_empty() { "0".into() } else { t }
}

/// A certificate as certstream-server-go's full stream renders it (`leaf_cert`, or
/// an entry of `chain`), from its DER.
fn feed_cert_json(der: &[u8], is_ca: bool) -> Result<Value, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("own DER: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let mut sans: Vec<String> = Vec::new();
    let (mut aki, mut ski) = (None, None);
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                sans.extend(san.general_names.iter().filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                }))
            }
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = id.key_identifier.as_ref().map(|k| colon_hex(k.0, false))
            }
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(colon_hex(id.0, false)),
            _ => {}
        }
    }
    let cn = joined(tbs.subject().iter_common_name());
    let mut all_domains = sans.clone();
    if !is_ca
        && let Some(cn) = &cn
        && !all_domains.contains(cn)
    {
        all_domains.push(cn.clone());
    }
    let mut extensions = json!({
        "basicConstraints": if is_ca { "CA:TRUE" } else { "CA:FALSE" },
        "keyUsage": if is_ca { "Digital Signature, Certificate Signing, CRL Signing" } else { "Digital Signature" },
    });
    if let Some(aki) = aki {
        extensions["authorityKeyIdentifier"] = json!(format!("keyid:{aki}"));
    }
    if let Some(ski) = ski {
        extensions["subjectKeyIdentifier"] = json!(format!("keyid:{ski}"));
    }
    if !sans.is_empty() {
        let list: Vec<String> = sans.iter().map(|n| format!("DNS:{n}")).collect();
        extensions["subjectAltName"] = json!(list.join(", "));
    }
    let sha1 = colon_hex(&sha1::Sha1::digest(der), true);
    Ok(json!({
        "all_domains": all_domains,
        "as_der": base64::engine::general_purpose::STANDARD.encode(der),
        "extensions": extensions,
        "fingerprint": sha1,
        "sha1": sha1,
        "sha256": colon_hex(&sha2::Sha256::digest(der), true),
        "not_after": tbs.validity().not_after.timestamp(),
        "not_before": tbs.validity().not_before.timestamp(),
        "serial_number": hex(tbs.raw_serial()).to_ascii_uppercase(),
        "signature_algorithm": "ecdsa, sha256",
        "subject": dn_json(tbs.subject()),
        "issuer": dn_json(tbs.issuer()),
        "is_ca": is_ca,
    }))
}

/// The values of one attribute joined with `,`, as certstream-server-go does.
fn joined<'a, 'b: 'a>(
    attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Option<String> {
    let values: Vec<&str> = attrs.filter_map(|a| a.as_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// A subject or issuer as certstream-server-go renders it.
fn dn_json(name: &X509Name<'_>) -> Value {
    let c = joined(name.iter_country());
    let cn = joined(name.iter_common_name());
    let o = joined(name.iter_organization());
    let mut aggregated = String::new();
    if let Some(c) = &c {
        aggregated += &format!("/C={c}");
    }
    aggregated += &format!("/CN={}", cn.as_deref().unwrap_or(""));
    if let Some(o) = &o {
        aggregated += &format!("/O={o}");
    }
    json!({"C": c, "CN": cn, "L": null, "O": o, "OU": null, "ST": null,
           "aggregated": aggregated, "email_address": null})
}

// ---------------------------------------------------------------------------------------------
// The log and what the feed does with each entry
// ---------------------------------------------------------------------------------------------

/// The log, planned before the run: which certificate each entry is, where the
/// watched ones are, and which entries the feed drops on each log.
struct Plan {
    /// Per index: the certificate (`leaves[cert_of[i]]`).
    cert_of: Vec<usize>,
    /// Per watched issuance `k`: its index.
    watched_at: Vec<usize>,
    /// Per log: per index, dropped by the feed.
    drops: [Vec<bool>; 2],
    /// Per index: the log's timestamp, ms.
    timestamp_ms: Vec<u64>,
}

impl Plan {
    fn new(s: &Settings, rng: &mut XorShift, base_ms: u64) -> Plan {
        let total = s.entries;
        let mut cert_of: Vec<usize> = (0..total).map(|i| i % FILLERS).collect();
        // Watched issuances evenly spread, each jittered within its stretch.
        let stretch = total as f64 / s.watched as f64;
        let watched_at: Vec<usize> = (0..s.watched)
            .map(|k| {
                let centre = (k as f64 + 0.5) * stretch;
                let jitter = (rng.below(1000) as f64 / 1000.0 - 0.5) * stretch * 0.6;
                ((centre + jitter) as usize).clamp(UNDROPPED_EDGE, total - 1 - UNDROPPED_EDGE)
            })
            .collect();
        for (k, &i) in watched_at.iter().enumerate() {
            cert_of[i] = FILLERS + k;
        }
        let mut drops = [vec![false; total], vec![false; total]];
        let run_len = |rng: &mut XorShift| match rng.below(100) {
            0..55 => 1,
            55..80 => 2,
            80..90 => 3,
            _ => rng.range(4, 6) as usize,
        };
        let droppable = |i: usize| (UNDROPPED_EDGE..total - UNDROPPED_EDGE).contains(&i);
        // A share of the watched issuances inside a run dropped on both logs.
        for &i in &watched_at {
            if (rng.below(10_000) as f64) < s.watched_dropped_pct * 100.0 {
                let len = run_len(rng);
                let start = i.saturating_sub(rng.below(len as u64) as usize);
                for j in (start..start + len).filter(|j| droppable(*j)) {
                    drops[0][j] = true;
                    drops[1][j] = true;
                }
            }
        }
        // Then runs on each log alone, up to the drop rate.
        for log in &mut drops {
            let want = (total as f64 * s.drop_pct / 100.0) as usize;
            let mut dropped = log.iter().filter(|d| **d).count();
            let mut tries = 0;
            while dropped < want && tries < total * 10 {
                tries += 1;
                let len = run_len(rng);
                let start = rng.below(total as u64) as usize;
                for j in (start..start + len).filter(|j| droppable(*j)) {
                    if !log[j] {
                        log[j] = true;
                        dropped += 1;
                    }
                }
            }
        }
        let step_ms = 1000.0 / s.rate;
        let timestamp_ms = (0..total)
            .map(|i| base_ms + (i as f64 * step_ms) as u64)
            .collect();
        Plan {
            cert_of,
            watched_at,
            drops,
            timestamp_ms,
        }
    }

    fn total(&self) -> usize {
        self.cert_of.len()
    }
}

/// What happened to an entry on one log's feed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Pending = 0,
    Sent = 1,
    Dropped = 2,
    /// Logged while certwatch was not connected (killed, or reconnecting).
    Lost = 3,
}

impl Fate {
    fn from_u8(v: u8) -> Fate {
        match v {
            1 => Fate::Sent,
            2 => Fate::Dropped,
            3 => Fate::Lost,
            _ => Fate::Pending,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Fate::Pending => "never logged in time",
            Fate::Sent => "sent",
            Fate::Dropped => "dropped",
            Fate::Lost => "lost (not connected)",
        }
    }
}

/// Counters of one log's feed.
#[derive(Default)]
struct LogCounters {
    sent: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
}

/// What the feeder thread shares with the main loop.
struct Feeder {
    plan: Plan,
    leaves: Vec<Leaf>,
    chain_json: String,
    logs: [FakeCtLog; 2],
    names: [&'static str; 2],
    feed: FakeFeed,
    rate: f64,
    /// Entries published in both logs.
    published: AtomicUsize,
    counters: [LogCounters; 2],
    /// Per watched issuance and log: its `Fate` as a `u8`.
    watched_fate: Mutex<Vec<[u8; 2]>>,
    /// While set, what is logged is not sent (certwatch is not connected).
    paused: AtomicBool,
    stop: AtomicBool,
    done: AtomicBool,
}

impl Feeder {
    fn url(&self, log: usize) -> String {
        self.logs[log].url()
    }

    /// The certstream-server-go frame of entry `i` of log `log`.
    fn frame(&self, log: usize, i: usize) -> String {
        let url = self.url(log);
        let (kind, link) = if log == 0 {
            (
                "rfc6962",
                format!("{url}/ct/v1/get-entries?start={i}&end={i}"),
            )
        } else {
            ("tiled", String::new())
        };
        let seen = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        format!(
            r#"{{"data":{{"cert_index":{i},"cert_link":"{link}","chain":{chain},"leaf_cert":{leaf},"seen":{seen:.3},"source":{{"name":"{name}","url":"{url}","timestamp":{ts:.3},"type":"{kind}"}},"update_type":"X509LogEntry"}},"message_type":"certificate_update"}}"#,
            chain = self.chain_json,
            leaf = self.leaves[self.plan.cert_of[i]].feed_json,
            name = self.names[log],
            ts = self.plan.timestamp_ms[i] as f64 / 1000.0,
        )
    }

    /// Publishes the entries due at the rate, then sends (or drops, or loses) each
    /// of them on both logs' feed, in order; until the log is complete or stopped.
    fn run(&self) {
        let started = Instant::now();
        let total = self.plan.total();
        let mut next = 0usize;
        let watched_index: HashMap<usize, usize> = self
            .plan
            .watched_at
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, k))
            .collect();
        while next < total && !self.stop.load(Ordering::SeqCst) {
            let due = ((started.elapsed().as_secs_f64() * self.rate) as usize).min(total);
            if due > next {
                for log in &self.logs {
                    log.set_tree_size(due as u64);
                }
                self.published.store(due, Ordering::SeqCst);
                for i in next..due {
                    for log in 0..2 {
                        let fate = if self.plan.drops[log][i] {
                            Fate::Dropped
                        } else if self.paused.load(Ordering::SeqCst) {
                            Fate::Lost
                        } else {
                            self.feed.send(FeedCmd::Text(self.frame(log, i)));
                            Fate::Sent
                        };
                        let counter = match fate {
                            Fate::Dropped => &self.counters[log].dropped,
                            Fate::Lost => &self.counters[log].lost,
                            _ => &self.counters[log].sent,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let Some(&k) = watched_index.get(&i) {
                            self.watched_fate.lock().unwrap_or_else(|p| p.into_inner())[k][log] =
                                fate as u8;
                        }
                    }
                }
                next = due;
            }
            thread::sleep(FEED_TICK);
        }
        self.done.store(true, Ordering::SeqCst);
    }

    fn sent(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.sent.load(Ordering::Relaxed))
            .sum()
    }

    fn dropped(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.dropped.load(Ordering::Relaxed))
            .sum()
    }

    fn lost(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.lost.load(Ordering::Relaxed))
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// certwatch, the child process
// ---------------------------------------------------------------------------------------------

struct Certwatch {
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// `API_PORT`: with the host name, the instance's name in Postgres (delivery
    /// leases, backfill claims).
    api_port: AtomicU16,
}

impl Certwatch {
    /// Starts the binary with the soak's environment (stderr appended to the log);
    /// its pid.
    fn spawn(&self) -> Result<u32, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("API_PORT", self.api_port.load(Ordering::SeqCst).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with the soak, even when the soak is SIGKILLed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let pid = child.id();
        owned().child = Some(child);
        Ok(pid)
    }

    /// Sends `signal` to the running child.
    fn signal(&self, signal: i32) -> Result<(), String> {
        let o = owned();
        let child = o.child.as_ref().ok_or("certwatch is not running")?;
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            return Err(format!(
                "kill({signal}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Whether the child is still running; its exit status once it is not.
    fn exited(&self) -> Option<ExitStatus> {
        let mut o = owned();
        let child = o.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                o.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Waits at most `limit` for the child to exit.
    fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if owned().child.is_none() || Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> Option<u32> {
        owned().child.as_ref().map(Child::id)
    }

    /// `127.0.0.1:<API_PORT>`.
    fn api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port.load(Ordering::SeqCst))
    }

    fn metrics(&self) -> Option<String> {
        try_request(&format!("http://{}/metrics", self.api()), "GET")
            .ok()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    fn healthz(&self) -> Option<Value> {
        try_request(&format!("http://{}/healthz", self.api()), "GET")
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
    }
}

/// A port of 127.0.0.1 free now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// The sum of a metric's series whose labels contain `label` (every series when
/// `None`); `None` when the exposition has no such series.
fn metric_sum(exposition: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric != name || label.is_some_and(|l| !labels.contains(l)) {
            continue;
        }
        found = true;
        sum += value.parse::<f64>().unwrap_or(0.0);
    }
    found.then_some(sum)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "absent".into(), |v| format!("{v}"))
}

// ---------------------------------------------------------------------------------------------
// The database side
// ---------------------------------------------------------------------------------------------

fn pg(dsn: &str) -> Option<postgres::Client> {
    let mut config: postgres::Config = dsn.parse().ok()?;
    config.connect_timeout(Duration::from_secs(2));
    config.connect(postgres::NoTls).ok()
}

/// One alert row: (serial, detected_via, delivery id, severity, delivered).
type AlertRow = (String, String, String, String, bool);

fn alert_rows(dsn: &str) -> Option<Vec<AlertRow>> {
    let mut client = pg(dsn)?;
    let rows = client
        .query(
            "SELECT coalesce(serial, ''), coalesce(detected_via, ''), coalesce(delivery_id, ''),
                    coalesce(severity, ''), delivered
               FROM public.alerts WHERE event = 'match' ORDER BY id",
            &[],
        )
        .ok()?;
    Some(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// The faults, in the order the timeline fires them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    WebhookDown,
    WebhookUp,
    Hup,
    PgStop,
    PgStart,
    Reconnect,
}

fn timeline(seconds: f64) -> Vec<(f64, Fault)> {
    let mut t = vec![
        (0.20 * seconds, Fault::Kill),
        (0.35 * seconds, Fault::WebhookDown),
        (
            0.35 * seconds + WEBHOOK_DOWN.as_secs_f64(),
            Fault::WebhookUp,
        ),
        (0.45 * seconds, Fault::Hup),
        (0.55 * seconds, Fault::PgStop),
        (0.55 * seconds + PG_DOWN.as_secs_f64(), Fault::PgStart),
    ];
    let every = RECONNECT_EVERY_S.min(0.75 * seconds);
    let mut at = every;
    while at < seconds - 5.0 {
        t.push((at, Fault::Reconnect));
        at += every;
    }
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t
}

/// What the main loop keeps between samples.
#[derive(Default)]
struct Observed {
    /// (seconds since the feed started, KiB) of the process running now.
    rss: Vec<(f64, u64)>,
    /// The killed process's RSS at its last sample, KiB.
    rss_before_kill: Option<u64>,
    /// When the restarted process started (seconds since the feed started).
    restarted_at: Option<f64>,
    /// The killed process's last `/metrics`.
    metrics_before_kill: Option<String>,
    last_metrics: Option<String>,
    last_health: Option<Value>,
    closes: u64,
    kills: u64,
    hups: u64,
    pg_stops: u64,
    webhook_downs: u64,
    problems: Vec<String>,
}

fn run() -> Result<String, String> {
    let _guard = CleanupGuard;
    let s = Settings::from_env()?;
    watchdog(Duration::from_secs_f64(s.seconds) + s.settle + Duration::from_secs(240));
    let version = Command::new(&s.bin)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "coverage soak: {} s, {} entries per log at {:.1} entries/s, {} watched, drops {:.1} %, \
         watched dropped on both logs {:.0} %, webhook failures {:.0} %, seed {}",
        s.seconds,
        s.entries,
        s.rate,
        s.watched,
        s.drop_pct,
        s.watched_dropped_pct,
        s.webhook_fail_pct,
        s.seed
    );
    println!("certwatch binary: {} ({version})", s.bin.display());

    // The temporary directory: the log list and certwatch's log.
    let dir = std::env::temp_dir().join(format!("certwatch-coverage-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    owned().dir = Some(dir.clone());

    // Postgres: a private cluster, so it can be stopped under certwatch.
    let cluster = TestCluster::start();
    cluster.prepare(&[WATCH_ENTRY]);
    let dsn = cluster.dsn();
    owned().cluster = Some(cluster);

    // The certificates and the plan of the log.
    let made = Instant::now();
    let mut rng = XorShift::new(s.seed);
    let pki = pki()?;
    let mut leaves = Vec::with_capacity(FILLERS + s.watched);
    for j in 0..FILLERS {
        leaves.push(leaf(
            &pki,
            vec![
                format!("f{j}.filler.example.org"),
                format!("www.f{j}.filler.example.org"),
            ],
            &mut rng,
        )?);
    }
    for k in 0..s.watched {
        leaves.push(leaf(
            &pki,
            vec![
                format!("w{k}.{WATCH_ENTRY}"),
                format!("www.w{k}.{WATCH_ENTRY}"),
            ],
            &mut rng,
        )?);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let plan = Plan::new(&s, &mut rng, now_ms);
    let entries: Vec<FakeEntry> = plan
        .cert_of
        .iter()
        .zip(&plan.timestamp_ms)
        .map(|(&c, &ts)| FakeEntry::x509(leaves[c].der.clone(), vec![pki.der.clone()], ts))
        .collect();
    // One in four watched issuances is in the inventory: `info`.
    let mut inventoried = 0;
    {
        let mut client = pg(&dsn).ok_or("cannot connect to the cluster")?;
        for leaf in leaves[FILLERS..].iter().step_by(4) {
            client
                .execute(
                    "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
                     VALUES ($1, $2, $3::text::jsonb, $4, $5, 'coverage-soak', extract(epoch from now())::bigint)",
                    &[
                        &leaf.fingerprint,
                        &leaf.serial.to_ascii_lowercase(),
                        &serde_json::to_string(&leaf.names).unwrap_or_default(),
                        &leaf.not_before,
                        &leaf.not_after,
                    ],
                )
                .map_err(|e| format!("inventory insert: {e}"))?;
            inventoried += 1;
        }
    }
    let both_dropped = plan
        .watched_at
        .iter()
        .filter(|&&i| plan.drops[0][i] && plan.drops[1][i])
        .count();
    let rfc_log = FakeCtLog::start(entries.clone());
    let tiled_log = FakeCtLog::start(entries);
    for log in [&rfc_log, &tiled_log] {
        log.set_tree_size(0);
    }
    let list = dir.join("log_list.json");
    std::fs::write(
        &list,
        log_list_mixed(&[(&rfc_log, false, "Soak"), (&tiled_log, true, "Soak")]),
    )
    .map_err(|e| format!("log list: {e}"))?;
    println!(
        "{} certificates made in {:.1} s; logs: RFC 6962 {} and tiled {} (same entries); \
         {} watched issuances, {inventoried} of them in the inventory, {both_dropped} placed \
         where the feed drops them on both logs; drops planned: {} and {} entries",
        leaves.len(),
        made.elapsed().as_secs_f64(),
        rfc_log.url(),
        tiled_log.url(),
        s.watched,
        plan.drops[0].iter().filter(|d| **d).count(),
        plan.drops[1].iter().filter(|d| **d).count(),
    );

    let webhook = FlakyWebhook::start((s.webhook_fail_pct * 10.0).round() as u64, s.seed ^ 0x5EB)
        .map_err(|e| format!("webhook receiver: {e}"))?;
    let feed = FakeFeed::start();
    let certwatch = Certwatch {
        bin: s.bin.clone(),
        env: vec![
            ("POSTGRES_DSN".into(), dsn.clone()),
            ("CERTSTREAM_URL".into(), feed.url()),
            ("WEBHOOK_URL".into(), webhook.url()),
            ("CT_LOG_LIST".into(), list.to_string_lossy().into_owned()),
        ],
        log: dir.join("certwatch.log"),
        api_port: AtomicU16::new(free_port()?),
    };
    let feeder = Arc::new(Feeder {
        watched_fate: Mutex::new(vec![[0; 2]; s.watched]),
        plan,
        leaves,
        chain_json: pki.chain_json.clone(),
        logs: [rfc_log, tiled_log],
        names: ["Coverage soak RFC 6962 log", "Coverage soak tiled log"],
        feed,
        rate: s.rate,
        published: AtomicUsize::new(0),
        counters: Default::default(),
        paused: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });

    let result = soak(&s, &certwatch, &feeder, &webhook, &dsn);
    feeder.stop.store(true, Ordering::SeqCst);
    if let Some(path) = &s.keep_log {
        match std::fs::copy(&certwatch.log, path) {
            Ok(_) => println!("certwatch's log copied to {}", path.display()),
            Err(e) => println!("certwatch's log not copied to {}: {e}", path.display()),
        }
    }
    result
}

/// Starts certwatch, runs the timeline and the settle period, stops certwatch and
/// checks; the summary, or why the soak failed.
fn soak(
    s: &Settings,
    certwatch: &Certwatch,
    feeder: &Arc<Feeder>,
    webhook: &FlakyWebhook,
    dsn: &str,
) -> Result<String, String> {
    let started_pid = certwatch.spawn()?;
    let up = wait_until(Duration::from_secs(30), || {
        feeder.feed.connections() >= 1
            && certwatch
                .metrics()
                .and_then(|m| metric_sum(&m, "certwatch_ct_coverage_enabled", None))
                .is_some_and(|v| v == 1.0)
    });
    if !up {
        let tail = log_tail(&certwatch.log, 10);
        return Err(format!(
            "certwatch (pid {started_pid}) did not connect and load the log list within 30 s; \
             its log ends:\n{tail}"
        ));
    }
    println!(
        "certwatch pid {started_pid} on http://{}, feed {}, webhook {}",
        certwatch.api(),
        feeder.feed.url(),
        webhook.url()
    );
    let faults = timeline(s.seconds);
    println!(
        "faults (s after the feed starts): {}",
        faults
            .iter()
            .map(|(t, f)| format!("{f:?} {t:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>9} {:>8} {:>9}",
        "t_s",
        "logged",
        "sent",
        "dropped",
        "lost",
        "reconn",
        "alerts",
        "webhooks",
        "unproven",
        "rss_KiB"
    );

    let feeding = {
        let feeder = Arc::clone(feeder);
        thread::Builder::new()
            .name("soak-feeder".into())
            .spawn(move || feeder.run())
            .map_err(|e| format!("feeder thread: {e}"))?
    };
    let t0 = Instant::now();
    let mut obs = Observed::default();
    let result = timeline_loop(s, certwatch, feeder, webhook, dsn, &faults, t0, &mut obs)
        .and_then(|()| settle(s, certwatch, feeder, webhook, dsn, t0, &mut obs));
    feeder.stop.store(true, Ordering::SeqCst);
    let _ = feeding.join();
    // Whatever happened: the webhook and the database are up again for the checks.
    webhook.set_down(false);
    if obs.pg_stops > 0 && pg(dsn).is_none() {
        let _ = with_cluster(TestCluster::restart);
    }
    result?;

    // Stop certwatch as an operator would.
    let final_metrics = certwatch.metrics();
    let final_health = certwatch.healthz();
    let final_rss = certwatch
        .pid()
        .map(|pid| proc::proc_status_kib_of(&pid.to_string(), "VmRSS"));
    if let Some(rss) = final_rss {
        obs.rss.push((t0.elapsed().as_secs_f64(), rss));
    }
    certwatch.signal(libc::SIGTERM)?;
    let exit = certwatch.wait_exit(Duration::from_secs(40));
    report(
        s,
        certwatch,
        feeder,
        webhook,
        dsn,
        &obs,
        final_metrics.as_deref(),
        final_health.as_ref(),
        exit,
        t0,
    )
}

/// The feed phase: faults on time, samples every 5 s, a line every report period.
#[allow(clippy::too_many_arguments)]
fn timeline_loop(
    s: &Settings,
    certwatch: &Certwatch,
    feeder: &Feeder,
    webhook: &FlakyWebhook,
    dsn: &str,
    faults: &[(f64, Fault)],
    t0: Instant,
    obs: &mut Observed,
) -> Result<(), String> {
    let mut next_fault = 0;
    let mut next_sample = SAMPLE;
    let mut next_report = s.report;
    while !feeder.done.load(Ordering::SeqCst) || next_fault < faults.len() {
        check_interrupted()?;
        if let Some(status) = certwatch.exited() {
            return Err(format!(
                "certwatch stopped on its own ({status}) {:.0} s into the run; its log ends:\n{}",
                t0.elapsed().as_secs_f64(),
                log_tail(&certwatch.log, 15)
            ));
        }
        let t = t0.elapsed().as_secs_f64();
        while next_fault < faults.len() && faults[next_fault].0 <= t {
            fire(
                faults[next_fault].1,
                s.restart_new_name,
                certwatch,
                feeder,
                webhook,
                t0,
                obs,
            )?;
            next_fault += 1;
        }
        if t0.elapsed() >= next_sample {
            sample(certwatch, t0, obs);
            next_sample += SAMPLE;
        }
        if t0.elapsed() >= next_report {
            status_line(certwatch, feeder, webhook, dsn, t0, obs);
            next_report += s.report;
        }
        if t > s.seconds + 120.0 {
            return Err(format!(
                "the feed had not sent the whole log {:.0} s after it started (published {})",
                t,
                feeder.published.load(Ordering::SeqCst)
            ));
        }
        nap(Duration::from_millis(200))?;
    }
    status_line(certwatch, feeder, webhook, dsn, t0, obs);
    Ok(())
}

fn fire(
    fault: Fault,
    restart_new_name: bool,
    certwatch: &Certwatch,
    feeder: &Feeder,
    webhook: &FlakyWebhook,
    t0: Instant,
    obs: &mut Observed,
) -> Result<(), String> {
    let t = t0.elapsed().as_secs_f64();
    match fault {
        Fault::Kill => {
            let before = feeder.feed.connections();
            feeder.paused.store(true, Ordering::SeqCst);
            // The fake feed hands commands still queued at a disconnect to the next
            // client; a real server does not replay old entries: let it write them
            // to this process first.
            nap(FEED_DRAIN)?;
            obs.metrics_before_kill = certwatch.metrics().or(obs.last_metrics.take());
            obs.rss_before_kill = certwatch
                .pid()
                .map(|pid| proc::proc_status_kib_of(&pid.to_string(), "VmRSS"));
            certwatch.signal(libc::SIGKILL)?;
            let status = certwatch
                .wait_exit(Duration::from_secs(10))
                .ok_or("certwatch did not die of SIGKILL within 10 s")?;
            obs.kills += 1;
            nap(KILL_DOWNTIME)?;
            if restart_new_name {
                certwatch.api_port.store(free_port()?, Ordering::SeqCst);
            }
            let pid = certwatch.spawn()?;
            obs.rss.clear();
            obs.restarted_at = Some(t0.elapsed().as_secs_f64());
            obs.last_metrics = None;
            let back = wait_until(Duration::from_secs(30), || {
                feeder.feed.connections() > before || INTERRUPTED.load(Ordering::SeqCst)
            });
            feeder.paused.store(false, Ordering::SeqCst);
            if !back {
                obs.problems.push(
                    "certwatch did not reconnect to the feed within 30 s of its restart".into(),
                );
            }
            println!(
                "{t:>5.0}s SIGKILL ({status}); restarted {:.0} s later as pid {pid} on {}, feed {}",
                KILL_DOWNTIME.as_secs_f64(),
                certwatch.api(),
                if back {
                    "reconnected"
                } else {
                    "NOT reconnected"
                }
            );
        }
        Fault::WebhookDown => {
            webhook.set_down(true);
            obs.webhook_downs += 1;
            println!(
                "{t:>5.0}s webhook receiver down (port closed) for {} s",
                WEBHOOK_DOWN.as_secs()
            );
        }
        Fault::WebhookUp => {
            webhook.set_down(false);
            println!("{t:>5.0}s webhook receiver up");
        }
        Fault::Hup => {
            certwatch.signal(libc::SIGHUP)?;
            obs.hups += 1;
            println!("{t:>5.0}s SIGHUP");
        }
        Fault::PgStop => {
            with_cluster(TestCluster::stop)?;
            obs.pg_stops += 1;
            println!("{t:>5.0}s Postgres stopped for {} s", PG_DOWN.as_secs());
        }
        Fault::PgStart => {
            with_cluster(TestCluster::restart)?;
            println!("{t:>5.0}s Postgres started");
        }
        Fault::Reconnect => {
            let before = feeder.feed.connections();
            feeder.paused.store(true, Ordering::SeqCst);
            feeder.feed.send(FeedCmd::Close);
            let back = wait_until(Duration::from_secs(30), || {
                feeder.feed.connections() > before || INTERRUPTED.load(Ordering::SeqCst)
            });
            feeder.paused.store(false, Ordering::SeqCst);
            obs.closes += 1;
            if !back {
                obs.problems.push(format!(
                    "certwatch did not reconnect within 30 s of the close at {t:.0} s"
                ));
            }
            println!(
                "{t:>5.0}s feed closed the connection; certwatch {} after {:.1} s",
                if back {
                    "reconnected"
                } else {
                    "did NOT reconnect"
                },
                t0.elapsed().as_secs_f64() - t
            );
        }
    }
    Ok(())
}

fn sample(certwatch: &Certwatch, t0: Instant, obs: &mut Observed) {
    if let Some(pid) = certwatch.pid() {
        let rss = proc::proc_status_kib_of(&pid.to_string(), "VmRSS");
        if rss > 0 {
            obs.rss.push((t0.elapsed().as_secs_f64(), rss));
        }
    }
    if let Some(m) = certwatch.metrics() {
        obs.last_metrics = Some(m);
    }
    if let Some(h) = certwatch.healthz() {
        obs.last_health = Some(h);
    }
}

fn unproven_of(health: Option<&Value>) -> Option<f64> {
    health?.get("coverage")?.get("entries_unproven")?.as_f64()
}

/// Watched serials accepted at the webhook (a 2xx answer).
fn accepted_serials(deliveries: &[Delivery]) -> HashSet<String> {
    deliveries
        .iter()
        .filter(|d| d.accepted() && d.event == "match")
        .filter_map(|d| d.serial.as_deref().map(normalized_serial))
        .collect()
}

fn status_line(
    certwatch: &Certwatch,
    feeder: &Feeder,
    webhook: &FlakyWebhook,
    dsn: &str,
    t0: Instant,
    obs: &Observed,
) {
    let alerts = alert_rows(dsn).map_or_else(|| "db-down".to_string(), |r| r.len().to_string());
    let accepted = accepted_serials(&webhook.deliveries()).len();
    let unproven =
        unproven_of(obs.last_health.as_ref()).map_or_else(|| "-".to_string(), |v| format!("{v}"));
    let rss = certwatch
        .pid()
        .map(|pid| proc::proc_status_kib_of(&pid.to_string(), "VmRSS"))
        .unwrap_or(0);
    println!(
        "{:>5.0}s {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>4}/{:<4} {:>8} {:>9}",
        t0.elapsed().as_secs_f64(),
        feeder.published.load(Ordering::SeqCst),
        feeder.sent(),
        feeder.dropped(),
        feeder.lost(),
        obs.closes + obs.kills,
        alerts,
        webhook.requests(),
        accepted,
        unproven,
        rss
    );
    let _ = std::io::stdout().flush();
}

/// After the log is complete: waits until every watched issuance is alerted and
/// delivered and coverage has nothing open or unproven, then `QUIET` more; bounded
/// by `COVERAGE_SOAK_SETTLE_S`.
fn settle(
    s: &Settings,
    certwatch: &Certwatch,
    feeder: &Feeder,
    webhook: &FlakyWebhook,
    dsn: &str,
    t0: Instant,
    obs: &mut Observed,
) -> Result<(), String> {
    let started = Instant::now();
    println!(
        "{:>5.0}s log complete ({} entries per log); settling (at most {} s)",
        t0.elapsed().as_secs_f64(),
        feeder.published.load(Ordering::SeqCst),
        s.settle.as_secs()
    );
    let serials: HashSet<String> = feeder.leaves[FILLERS..]
        .iter()
        .map(|l| l.serial.clone())
        .collect();
    let mut satisfied_since: Option<Instant> = None;
    let mut next_sample = started + SAMPLE;
    let mut next_report = started + s.report;
    loop {
        check_interrupted()?;
        if let Some(status) = certwatch.exited() {
            return Err(format!(
                "certwatch stopped on its own ({status}) while settling; its log ends:\n{}",
                log_tail(&certwatch.log, 15)
            ));
        }
        if Instant::now() >= next_sample {
            sample(certwatch, t0, obs);
            next_sample += SAMPLE;
        } else if let Some(h) = certwatch.healthz() {
            obs.last_health = Some(h);
        }
        let rows = alert_rows(dsn).unwrap_or_default();
        let mut per_serial: HashMap<&str, usize> = HashMap::new();
        for row in &rows {
            *per_serial.entry(row.0.as_str()).or_default() += 1;
        }
        let all_alerted = serials
            .iter()
            .all(|s| per_serial.get(s.as_str()) == Some(&1));
        let accepted = accepted_serials(&webhook.deliveries());
        let all_delivered = serials.iter().all(|s| accepted.contains(s));
        let health = obs.last_health.as_ref();
        let coverage_clear = health.and_then(|h| h.get("coverage")).is_some_and(|c| {
            c.get("open_gap_entries").and_then(Value::as_f64) == Some(0.0)
                && c.get("entries_unproven").and_then(Value::as_f64) == Some(0.0)
        });
        if all_alerted && all_delivered && coverage_clear {
            match satisfied_since {
                None => satisfied_since = Some(Instant::now()),
                Some(since) if since.elapsed() >= QUIET => {
                    println!(
                        "{:>5.0}s settled after {:.0} s: every watched issuance alerted and \
                         delivered, coverage clear",
                        t0.elapsed().as_secs_f64(),
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Some(_) => {}
            }
        } else {
            satisfied_since = None;
        }
        if Instant::now() >= next_report {
            status_line(certwatch, feeder, webhook, dsn, t0, obs);
            next_report += s.report;
        }
        if started.elapsed() >= s.settle {
            println!(
                "{:>5.0}s not settled within {} s (all alerted once: {all_alerted}, all delivered: \
                 {all_delivered}, coverage clear: {coverage_clear}); checking what there is",
                t0.elapsed().as_secs_f64(),
                s.settle.as_secs()
            );
            return Ok(());
        }
        nap(Duration::from_secs(2))?;
    }
}

/// The last `n` lines of certwatch's log.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The backfill claims left in Postgres: per owner (instance name), how many
/// are done and the ranges that are not, as (owner, done, not done, ranges).
fn claims(dsn: &str) -> Option<Vec<(String, i64, i64, String)>> {
    let mut client = pg(dsn)?;
    let rows = client
        .query(
            "SELECT owner, count(*) FILTER (WHERE done), count(*) FILTER (WHERE NOT done),
                    coalesce(string_agg(start_index || '..' || end_index, ' ' ORDER BY start_index)
                             FILTER (WHERE NOT done), '')
               FROM public.certwatch_backfill_claims GROUP BY owner ORDER BY owner",
            &[],
        )
        .ok()?;
    Some(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
    )
}

/// The alert rows still marked undelivered, with what the receiver answered for each.
fn print_undelivered(dsn: &str, deliveries: &[Delivery]) {
    let Some(mut client) = pg(dsn) else {
        return;
    };
    let Ok(rows) = client.query(
        "SELECT coalesce(serial, ''), coalesce(delivery_id, ''), attempts, redeliveries,
                coalesce(last_error, ''), delivered_targets::text,
                coalesce(to_char(created_at, 'HH24:MI:SS.MS'), ''),
                coalesce(to_char(next_attempt_at, 'HH24:MI:SS'), ''), coalesce(lease_owner, '')
           FROM public.alerts WHERE event = 'match' AND NOT delivered ORDER BY id",
        &[],
    ) else {
        return;
    };
    for r in rows {
        let id: String = r.get(1);
        let answers: Vec<u16> = deliveries
            .iter()
            .filter(|d| d.delivery_id == id)
            .map(|d| d.status)
            .collect();
        println!(
            "  undelivered row: serial {} id {id}: attempts {}, redeliveries {}, last_error {:?}, \
             delivered_targets {}, created {}, next attempt {}, lease {}; the receiver answered {answers:?}",
            r.get::<_, String>(0),
            r.get::<_, i32>(2),
            r.get::<_, i32>(3),
            r.get::<_, String>(4),
            r.get::<_, String>(5),
            r.get::<_, String>(6),
            r.get::<_, String>(7),
            r.get::<_, String>(8),
        );
    }
}

/// Figures, checks and the verdict.
#[allow(clippy::too_many_arguments)]
fn report(
    s: &Settings,
    certwatch: &Certwatch,
    feeder: &Feeder,
    webhook: &FlakyWebhook,
    dsn: &str,
    obs: &Observed,
    metrics: Option<&str>,
    health: Option<&Value>,
    exit: Option<ExitStatus>,
    t0: Instant,
) -> Result<String, String> {
    let mut why: Vec<String> = obs.problems.clone();
    let watched = &feeder.leaves[FILLERS..];
    let by_serial: HashMap<&str, usize> = watched
        .iter()
        .enumerate()
        .map(|(k, l)| (l.serial.as_str(), k))
        .collect();
    let fates = feeder
        .watched_fate
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();

    // Alert rows.
    let rows = alert_rows(dsn).ok_or("cannot read public.alerts at the end")?;
    let mut rows_of: Vec<Vec<&AlertRow>> = vec![Vec::new(); watched.len()];
    let mut strangers = Vec::new();
    for row in &rows {
        match by_serial.get(row.0.as_str()) {
            Some(&k) => rows_of[k].push(row),
            None => strangers.push(row),
        }
    }
    let never: Vec<usize> = (0..watched.len())
        .filter(|&k| rows_of[k].is_empty())
        .collect();
    let twice: Vec<usize> = (0..watched.len())
        .filter(|&k| rows_of[k].len() > 1)
        .collect();
    let mut via: BTreeMap<String, usize> = BTreeMap::new();
    let mut severity: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        *via.entry(row.1.clone()).or_default() += 1;
        *severity.entry(row.3.clone()).or_default() += 1;
    }
    let rows_undelivered = rows.iter().filter(|r| !r.4).count();
    let feed_missed: Vec<usize> = (0..watched.len())
        .filter(|&k| fates[k].iter().all(|&f| Fate::from_u8(f) != Fate::Sent))
        .collect();
    let feed_missed_by_backfill = feed_missed
        .iter()
        .filter(|&&k| rows_of[k].iter().any(|r| r.1 == "backfill"))
        .count();

    // Webhook deliveries.
    let deliveries = webhook.deliveries();
    let mut ids_of: Vec<HashSet<&str>> = vec![HashSet::new(); watched.len()];
    let mut accepted_of = vec![0usize; watched.len()];
    let mut stray_requests = 0;
    for d in deliveries.iter().filter(|d| d.event == "match") {
        let Some(&k) = d
            .serial
            .as_deref()
            .map(normalized_serial)
            .as_deref()
            .and_then(|s| by_serial.get(s))
        else {
            stray_requests += 1;
            continue;
        };
        ids_of[k].insert(d.delivery_id.as_str());
        if d.accepted() {
            accepted_of[k] += 1;
        }
    }
    let undelivered: Vec<usize> = (0..watched.len())
        .filter(|&k| accepted_of[k] == 0)
        .collect();
    let many_ids: Vec<usize> = (0..watched.len())
        .filter(|&k| ids_of[k].len() > 1)
        .collect();
    let repeats: usize = accepted_of.iter().map(|n| n.saturating_sub(1)).sum();

    // Coverage counters: the killed process's last scrape and the final one.
    let outcome = |m: Option<&str>, o: &str| {
        m.and_then(|m| {
            metric_sum(
                m,
                "certwatch_ct_backfill_entries_total",
                Some(&format!("outcome=\"{o}\"")),
            )
        })
    };
    let before = obs.metrics_before_kill.as_deref();
    let mut outcomes = Vec::new();
    for o in ["fetched", "skipped", "abandoned", "failed", "other_replica"] {
        let (a, b) = (outcome(before, o), outcome(metrics, o));
        outcomes.push((o, a, b));
    }
    let gauge = |m: Option<&str>, name: &str| m.and_then(|m| metric_sum(m, name, None));
    let unproven_metric = gauge(metrics, "certwatch_ct_entries_unproven");
    let unproven_health = unproven_of(health);
    let open_gaps = health
        .and_then(|h| h.get("coverage"))
        .and_then(|c| c.get("open_gap_entries"))
        .and_then(Value::as_f64);

    // Claims: a range the killed instance claimed and did not mark done is never
    // fetched by an instance of another name (it counts as `other_replica`).
    let claims = claims(dsn).unwrap_or_default();
    let final_owner = format!(
        "{}:{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        certwatch.api_port.load(Ordering::SeqCst)
    );
    let orphaned: Vec<&(String, i64, i64, String)> = claims
        .iter()
        .filter(|c| c.0 != final_owner && c.2 > 0)
        .collect();

    // RSS of the restarted process.
    let warmup = (0.1 * s.seconds).max(20.0);
    let restarted = obs.restarted_at.unwrap_or(0.0);
    let warm = obs
        .rss
        .iter()
        .find(|(t, _)| *t >= restarted + warmup)
        .copied();
    let end = obs.rss.last().copied();
    let max_rss = obs.rss.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let growth = match (warm, end) {
        (Some((_, w)), Some((_, e))) if w > 0 => Some((e as f64 - w as f64) / w as f64 * 100.0),
        _ => None,
    };

    // certwatch's log.
    let log_text = std::fs::read_to_string(&certwatch.log).unwrap_or_default();
    let warns = log_text.lines().filter(|l| l.contains(" WARN ")).count();
    let errors = log_text.lines().filter(|l| l.contains(" ERROR ")).count();
    let notable: Vec<&str> = log_text
        .lines()
        .filter(|l| {
            (l.contains(" WARN ") || l.contains(" ERROR "))
                && !l.contains("certwatch::deliver")
                && [
                    "CT log",
                    "backfill",
                    "abandoned",
                    "dense",
                    "replica",
                    "panick",
                    "position",
                ]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();

    let elapsed = t0.elapsed().as_secs_f64();
    println!("--- coverage soak figures ({elapsed:.0} s from the feed's start) ---");
    for (log, name) in feeder.names.iter().enumerate() {
        let c = &feeder.counters[log];
        println!(
            "feed, {name}: {} entries logged, sent {}, dropped {}, lost while certwatch was not \
             connected {}",
            feeder.published.load(Ordering::SeqCst),
            c.sent.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.lost.load(Ordering::Relaxed)
        );
    }
    println!(
        "faults: {} SIGKILL + restart, {} feed closes, {} SIGHUP, Postgres stopped {} x {} s, \
         webhook down {} x {} s, webhook 500s {} of {} requests ({} cut)",
        obs.kills,
        obs.closes,
        obs.hups,
        obs.pg_stops,
        PG_DOWN.as_secs(),
        obs.webhook_downs,
        WEBHOOK_DOWN.as_secs(),
        webhook.failed(),
        webhook.requests(),
        webhook.cut()
    );
    println!(
        "log requests: RFC 6962 get-entries {}, get-sth {}; tiled data tiles {}, checkpoint {}, issuer {}",
        feeder.logs[0].hits("ct/v1/get-entries"),
        feeder.logs[0].hits("ct/v1/get-sth"),
        feeder.logs[1].hits("tile/data/"),
        feeder.logs[1].hits("checkpoint"),
        feeder.logs[1].hits("issuer/"),
    );
    println!(
        "watched issuances: {} in the log; {} never sent by the feed on either log ({} of \
         them alerted via backfill)",
        watched.len(),
        feed_missed.len(),
        feed_missed_by_backfill
    );
    println!(
        "alert rows: {} ({}), detected_via {}; never alerted {}, alerted more than once {}, \
         rows for anything else {}",
        rows.len(),
        severity
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        via.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        never.len(),
        twice.len(),
        strangers.len()
    );
    println!(
        "webhook: {} requests, issuances accepted {} of {}, repeated accepted deliveries {}, \
         issuances with more than one delivery id {}, requests for anything else {}; \
         alert rows still marked undelivered {rows_undelivered}",
        deliveries.len(),
        watched.len() - undelivered.len(),
        watched.len(),
        repeats,
        many_ids.len(),
        stray_requests
    );
    println!(
        "backfill entries by outcome (killed process's last scrape + restarted process): {}",
        outcomes
            .iter()
            .map(|(o, a, b)| format!("{o} {} + {}", fmt_opt(*a), fmt_opt(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "backfill claims left in Postgres (instance: done, not done): {}",
        claims
            .iter()
            .map(|(owner, done, open, ranges)| {
                let all: Vec<&str> = ranges.split_whitespace().collect();
                let ranges = match all.len() {
                    0 => String::new(),
                    n if n <= 8 => format!(" [{}]", all.join(" ")),
                    n => format!(" [{} ... {} more]", all[..8].join(" "), n - 8),
                };
                format!("{owner}: {done}, {open}{ranges}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "coverage at the end: /healthz entries_unproven {}, open_gap_entries {}; \
         certwatch_ct_entries_unproven {} (killed process: {}); gap entries {} + {}",
        fmt_opt(unproven_health),
        fmt_opt(open_gaps),
        fmt_opt(unproven_metric),
        fmt_opt(gauge(before, "certwatch_ct_entries_unproven")),
        fmt_opt(gauge(before, "certwatch_ct_log_gap_entries_total")),
        fmt_opt(gauge(metrics, "certwatch_ct_log_gap_entries_total")),
    );
    println!(
        "certwatch: webhook attempts ok {} failed {}, redeliveries {}, undelivered {}, \
         feed reconnects {}, dropped frames {}, db errors {}",
        fmt_opt(metrics.and_then(|m| metric_sum(
            m,
            "certwatch_webhook_total",
            Some("result=\"success\"")
        ))),
        fmt_opt(metrics.and_then(|m| metric_sum(
            m,
            "certwatch_webhook_total",
            Some("result=\"failure\"")
        ))),
        fmt_opt(gauge(metrics, "certwatch_redeliveries_total")),
        fmt_opt(gauge(metrics, "certwatch_undelivered_alerts")),
        fmt_opt(gauge(metrics, "certwatch_ws_reconnects_total")),
        fmt_opt(gauge(metrics, "certwatch_ct_messages_dropped_total")),
        fmt_opt(gauge(metrics, "certwatch_db_errors_total")),
    );
    println!(
        "RSS (VmRSS of the child): killed process at the kill {} KiB; restarted at {restarted:.0} s: \
         after the {warmup:.0} s warm-up {} KiB (t={:.0} s), at the end {} KiB (t={:.0} s), max {max_rss} KiB, \
         growth {}",
        obs.rss_before_kill.unwrap_or(0),
        warm.map_or(0, |w| w.1),
        warm.map_or(0.0, |w| w.0),
        end.map_or(0, |e| e.1),
        end.map_or(0.0, |e| e.0),
        growth.map_or_else(|| "unknown".into(), |g| format!("{g:+.2} %")),
    );
    println!(
        "certwatch's log: {} lines, {warns} WARN, {errors} ERROR; exit on SIGTERM: {}",
        log_text.lines().count(),
        exit.map_or_else(|| "none within 40 s".into(), |e| e.to_string())
    );
    for line in notable.iter().take(20) {
        println!("  {line}");
    }
    if rows_undelivered > 0 {
        print_undelivered(dsn, &deliveries);
    }

    // The checks.
    if !never.is_empty() {
        why.push(format!(
            "{} of {} watched issuances never alerted",
            never.len(),
            watched.len()
        ));
    }
    if !twice.is_empty() {
        why.push(format!(
            "{} watched issuances alerted more than once",
            twice.len()
        ));
    }
    if !strangers.is_empty() {
        why.push(format!(
            "{} alert rows for no watched issuance",
            strangers.len()
        ));
    }
    if !undelivered.is_empty() {
        why.push(format!(
            "{} watched issuances never accepted at the webhook",
            undelivered.len()
        ));
    }
    if !many_ids.is_empty() {
        why.push(format!(
            "{} watched issuances arrived under more than one delivery id",
            many_ids.len()
        ));
    }
    match unproven_health {
        Some(0.0) => {}
        Some(v) => why.push(format!("/healthz coverage.entries_unproven is {v}")),
        None => why.push("/healthz has no coverage.entries_unproven".into()),
    }
    match unproven_metric {
        Some(0.0) => {}
        Some(v) => why.push(format!("certwatch_ct_entries_unproven is {v}")),
        None => why.push("no certwatch_ct_entries_unproven in /metrics".into()),
    }
    if !orphaned.is_empty() {
        why.push(format!(
            "backfill claims of the killed instance not marked done, which the restarted \
             instance (another name) takes for another replica's and does not fetch: {}",
            orphaned
                .iter()
                .map(|c| format!("{} [{}]", c.0, c.3))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (o, a, b) in &outcomes {
        // One instance: nothing is another replica's to fetch, unless it restarted
        // under another name (then the killed instance's finished claims count).
        if ["skipped", "abandoned", "failed"].contains(o)
            || (*o == "other_replica" && !s.restart_new_name)
        {
            let total = a.unwrap_or(0.0) + b.unwrap_or(0.0);
            if total != 0.0 {
                why.push(format!("{total} backfill entries {o}"));
            }
        }
    }
    match growth {
        Some(g) if g < RSS_GROWTH_LIMIT_PCT => {}
        Some(g) => why.push(format!(
            "RSS grew {g:.1} % after the warm-up (limit {RSS_GROWTH_LIMIT_PCT} %)"
        )),
        None => why.push("too few RSS samples after the warm-up".into()),
    }
    if obs.kills != 1
        || obs.closes == 0
        || obs.hups != 1
        || obs.pg_stops != 1
        || obs.webhook_downs != 1
    {
        why.push("not every fault happened".into());
    }
    if feeder.dropped() == 0 {
        why.push("the feed dropped nothing: coverage was not exercised".into());
    }
    match exit {
        Some(e) if e.success() => {}
        Some(e) => why.push(format!("certwatch exited with {e} on SIGTERM")),
        None => why.push("certwatch did not exit within 40 s of SIGTERM".into()),
    }

    if !why.is_empty() {
        for (label, list) in [
            ("never alerted", &never),
            ("alerted more than once", &twice),
        ] {
            for &k in list.iter().take(30) {
                let f = fates[k];
                println!(
                    "{label}: w{k}.{WATCH_ENTRY} (serial {}) at index {}: feed {} on the RFC 6962 \
                     log, {} on the tiled log; rows {:?}",
                    watched[k].serial,
                    feeder.plan.watched_at[k],
                    Fate::from_u8(f[0]).word(),
                    Fate::from_u8(f[1]).word(),
                    rows_of[k]
                );
            }
        }
        return Err(why.join("; "));
    }
    Ok(format!(
        "{} watched issuances alerted once each ({} never on the feed, found by backfill) and \
         delivered under one id each; {} entries per log, {} dropped, {} lost to the faults; \
         nothing unproven; RSS {} -> {} KiB ({})",
        watched.len(),
        feed_missed_by_backfill,
        feeder.published.load(Ordering::SeqCst),
        feeder.dropped(),
        feeder.lost(),
        warm.map_or(0, |w| w.1),
        end.map_or(0, |e| e.1),
        growth.map_or_else(|| "?".into(), |g| format!("{g:+.1} %")),
    ))
}
