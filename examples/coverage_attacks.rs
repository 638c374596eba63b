//! Before/after figures for issue 18's coverage attacks: `cargo run --release
//! --example coverage_attacks [-- 1 2 3 4 5 10]` runs each scenario against a
//! `certwatch` binary as a child process, so the same scenarios measure an old
//! release and the current one:
//!
//! ```sh
//! CERTWATCH_BIN=/path/to/old/certwatch cargo run --release --example coverage_attacks
//! cargo build --release --bin certwatch && cargo run --release --example coverage_attacks
//! ```
//!
//! `CERTWATCH_BIN` names the binary; by default the `certwatch` next to this example
//! in the target directory (`target/release/certwatch`). Each scenario gets a
//! throwaway database (`TestDb::create`, `HARNESS_ADMIN_DSN`), a fake feed, a fake
//! webhook receiver and `FakeCtLog`s from the test kit (the shapes are the kit's
//! `attack` module, the same as `tests/it/coverage_attacks.rs`), and prints one line
//! of figures:
//!
//! 1. a lossy certstream-server-go feed (1 % dropped in short runs, one reconnect),
//!    default settings: entries fetched and skipped, watched issuances alerted,
//!    entries left unproven;
//! 2. a gap of huge certificates (`ATTACK_BIG_CERTS`, default 10, of
//!    `ATTACK_BIG_NAMES`, default 1,000,000, names): the child's idle and peak RSS;
//! 3. a log answering 429 for good with 1,400 gaps, another log with one: the other
//!    log's alert latency and its refused entries;
//! 4. a bogus index (2^63 − 2) while the log's tree size cannot be read: the stored
//!    position over `ATTACK_S4_WINDOW` seconds (default 75), whether a later real
//!    gap was fetched;
//! 5. a slow log (one entry per reply, a 300-entry gap) beside a normal one: the
//!    normal log's alert latency; a trickling log being read at SIGTERM with an alert
//!    held for its grace period: SIGTERM to exit, and whether that alert went out;
//! 10. a 429 with a `Retry-After` date in the past: requests in 30 s.
//!
//! The child's log goes to `<temp dir>/certwatch-attacks-<pid>/<scenario>.log`.

use certwatch_testkit::attack::{self, Dialect, Lossy, WATCHED};
use certwatch_testkit::ctlog::{self, FakeCtLog};
use certwatch_testkit::probe::{metric_value, scrape};
use certwatch_testkit::proc::proc_status_kib_of;
use certwatch_testkit::wait::wait_until;
use certwatch_testkit::{Cert, FakeFeed, FakeWebhook, FeedCmd, TestDb};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let bin = match binary() {
        Ok(bin) => bin,
        Err(why) => {
            println!("COVERAGE ATTACKS FAILED: {why}");
            return ExitCode::FAILURE;
        }
    };
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |n: &str| chosen.is_empty() || chosen.iter().any(|c| c == n);
    println!("certwatch binary: {}", bin.display());
    let scenarios: [(&str, Scenario); 7] = [
        ("1", lossy_feed),
        ("2", huge_certificates),
        ("3", rate_limited_log),
        ("4", bogus_index),
        ("5", slow_log),
        ("5", trickling_log_at_sigterm),
        ("10", retry_after_in_the_past),
    ];
    let mut failed = false;
    for (n, scenario) in scenarios {
        if !wanted(n) {
            continue;
        }
        match scenario(&bin) {
            Ok(figures) => println!("[{n}] {figures}"),
            Err(why) => {
                failed = true;
                println!("[{n}] FAILED: {why}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A scenario: run against the binary, its figures in one line.
type Scenario = fn(&Path) -> Result<String, String>;

/// `CERTWATCH_BIN`, or the `certwatch` beside this example's directory.
fn binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CERTWATCH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or("no target directory above the example")?;
    let bin = profile.join("certwatch");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist: cargo build --release --bin certwatch, or set CERTWATCH_BIN",
            bin.display()
        ))
    }
}

/// Where the children's logs go.
fn log_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("certwatch-attacks-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A `certwatch` child process, killed when dropped.
struct Service {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Service {
    /// Starts `bin` on `db`, `feed`, `hook` and the list `list`, `extra` on top;
    /// returns once it is connected and has loaded the list.
    fn start(
        bin: &Path,
        name: &str,
        db: &TestDb,
        feed: &FakeFeed,
        hook: &FakeWebhook,
        list: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Result<Service, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = std::fs::File::create(log_dir().join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("POSTGRES_DSN", db.dsn())
            .env("CERTSTREAM_URL", feed.url())
            .env("API_PORT", port.to_string())
            .env("WEBHOOK_URL", hook.url())
            .env("CT_LOG_LIST", list)
            .env("SUSPICIOUS_GRACE_S", "1")
            .env("WATCH_REFRESH_INTERVAL_S", "3600")
            .env("WORKERS", "2")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
        let svc = Service {
            child,
            addr: format!("127.0.0.1:{port}").parse().expect("address"),
        };
        let ready = wait_until(Duration::from_secs(30), || {
            svc.metric("certwatch_ct_coverage_enabled") == Some(1.0)
        });
        if !ready || !feed.wait_for_client(Duration::from_secs(10)) {
            return Err("the service did not start with its list".into());
        }
        Ok(svc)
    }

    fn metric(&self, series: &str) -> Option<f64> {
        scrape(self.addr)
            .ok()
            .and_then(|body| metric_value(&body, series))
    }

    /// A backfill outcome of `log`; 0 when the series is not there.
    fn outcome(&self, log: &FakeCtLog, outcome: &str) -> f64 {
        self.metric(&format!(
            "certwatch_ct_backfill_entries_total{{log=\"{}\",outcome=\"{outcome}\"}}",
            log.url()
        ))
        .unwrap_or(0.0)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGTERM, then waits at most `limit`: how long it took to exit, and its code.
    fn sigterm(&mut self, limit: Duration) -> (Option<Duration>, Option<i32>) {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let mut code = None;
        let exited = wait_until(limit, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        });
        (exited.then(|| started.elapsed()), code)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------

/// 1: a lossy go feed under the default settings.
fn lossy_feed(bin: &Path) -> Result<String, String> {
    const WATCHED_AT: [usize; 5] = [600, 1100, 2000, 2400, 2800];
    let shape = Lossy::new(3000, 150, 1500..1700, &WATCHED_AT);
    let db = TestDb::create("attacks_1")?;
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let mut entries = attack::log_entries(shape.len, &[]);
    for (k, at) in WATCHED_AT.iter().enumerate() {
        entries[*at] =
            attack::entry_with_names(0x5EED_0000 + k as u64, [format!("w{k}.{WATCHED}")]);
    }
    let log = FakeCtLog::start(entries);
    let list = ctlog::list_file("attacks-1", &[&log], false);
    let svc = Service::start(bin, "1-lossy", &db, &feed, &hook, &list, &[])?;
    let url = log.url();
    attack::send_paced(
        &feed,
        Dialect::Go,
        &url,
        shape.delivered(0..shape.reconnect.start),
    );
    std::thread::sleep(Duration::from_secs(2));
    feed.send(FeedCmd::Drop);
    if !feed.wait_for_connections(2, Duration::from_secs(15)) {
        return Err("no reconnect".into());
    }
    attack::send_paced(
        &feed,
        Dialect::Go,
        &url,
        shape.delivered(shape.reconnect.end..shape.len),
    );
    let missing = shape.missing_entries() as f64;
    let outcomes = || ["fetched", "skipped", "failed", "abandoned"].map(|o| svc.outcome(&log, o));
    let gap = format!("certwatch_ct_log_gap_entries_total{{log=\"{url}\"}}");
    let settled = wait_until(Duration::from_secs(90), || {
        svc.metric(&gap) == Some(missing) && outcomes().iter().sum::<f64>() >= missing
    });
    let alerted = hook.mentioning(WATCHED, Duration::from_secs(10), false);
    let [fetched, skipped, failed, abandoned] = outcomes();
    let unproven = svc
        .metric("certwatch_ct_entries_unproven")
        .map_or("n/a (no such gauge)".to_string(), |v| v.to_string());
    Ok(format!(
        "lossy go feed: {missing} missing ({} scattered holes, {:.1} % outside the reconnect, \
         reconnect {} entries){}: fetched {fetched}, skipped {skipped}, failed {failed}, \
         abandoned {abandoned}; watched issuances alerted {}/{}; entries_unproven {unproven}",
        shape.scattered_holes(),
        shape.scattered_share() * 100.0,
        shape.reconnect.len(),
        if settled {
            ""
        } else {
            " (not settled in 90 s)"
        },
        alerted.len(),
        WATCHED_AT.len()
    ))
}

/// 2: a gap of huge certificates.
fn huge_certificates(bin: &Path) -> Result<String, String> {
    let env_or = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (count, names) = (
        env_or("ATTACK_BIG_CERTS", 10),
        env_or("ATTACK_BIG_NAMES", 1_000_000),
    );
    let watched = "hit.bigwatch.example";
    let db = TestDb::create("attacks_2")?;
    db.watch(&["bigwatch.example"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let (huge, largest) = attack::huge_entries(count, names, watched, 0xB16);
    let mut entries = attack::log_entries(1, &[]);
    entries.extend(huge);
    entries.extend(attack::log_entries(2, &[]).pop());
    let log = FakeCtLog::start(entries);
    log.set_max_batch(1);
    let list = ctlog::list_file("attacks-2", &[&log], false);
    let svc = Service::start(bin, "2-huge", &db, &feed, &hook, &list, &[])?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = svc.pid();
    let idle = proc_status_kib_of(&pid, "VmRSS");
    let url = log.url();
    attack::send_paced(&feed, Dialect::Go, &url, [0, count as u64 + 1]);
    let started = Instant::now();
    let alert = hook.mentioning(watched, Duration::from_secs(300), true);
    let fetched =
        format!("certwatch_ct_backfill_entries_total{{log=\"{url}\",outcome=\"fetched\"}}");
    let read_all = wait_until(Duration::from_secs(120), || {
        svc.metric(&fetched) == Some(count as f64)
    });
    let took = started.elapsed();
    let peak = proc_status_kib_of(&pid, "VmHWM");
    Ok(format!(
        "huge certificates: {count} × {:.1} MB DER ({names} names each), one per reply: idle RSS \
         {} MiB, peak RSS {} MiB (grew {} MiB); all read: {read_all} in {}; watched alerted: {}",
        largest as f64 / 1e6,
        idle >> 10,
        peak >> 10,
        peak.saturating_sub(idle) >> 10,
        secs(took),
        if alert.is_empty() { "no" } else { "yes" }
    ))
}

/// 3: one log rate-limits for good, another has a gap.
fn rate_limited_log(bin: &Path) -> Result<String, String> {
    const BATCH: u64 = 700;
    let db = TestDb::create("attacks_3")?;
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let a = FakeCtLog::start(Vec::new());
    a.refuse_all(429, Some("60"));
    let watched = 6;
    let b = FakeCtLog::start(attack::log_entries(12, &[watched]));
    let list = ctlog::list_file("attacks-3", &[&a, &b], false);
    let svc = Service::start(
        bin,
        "3-ratelimit",
        &db,
        &feed,
        &hook,
        &list,
        &[("CT_FEED_HOLES", "fetch")],
    )?;
    attack::send_paced(&feed, Dialect::Go, &a.url(), (0..=2 * BATCH).step_by(2));
    std::thread::sleep(Duration::from_secs(7));
    attack::send_paced(
        &feed,
        Dialect::Go,
        &a.url(),
        (2 * BATCH + 2..=4 * BATCH).step_by(2),
    );
    std::thread::sleep(Duration::from_secs(1));
    attack::send_paced(
        &feed,
        Dialect::Go,
        &b.url(),
        (0..12).filter(|i| *i != watched as u64),
    );
    let sent = Instant::now();
    let alert = hook.mentioning(WATCHED, Duration::from_secs(60), true);
    let latency = alert
        .first()
        .map_or("none within 60 s".to_string(), |(at, _)| secs(*at - sent));
    std::thread::sleep(Duration::from_secs(2));
    Ok(format!(
        "rate-limited log A (1,400 gaps, 429 for good) and log B (one gap): B's alert after \
         {latency}; B fetched {}, refused (failed) {}; A failed {}, A requests {}",
        svc.outcome(&b, "fetched"),
        svc.outcome(&b, "failed"),
        svc.outcome(&a, "failed"),
        a.hits("")
    ))
}

/// The stored position of the log at `url`, if any.
fn stored_position(db: &TestDb, url: &str) -> Option<i64> {
    db.try_client()
        .ok()?
        .query(
            "SELECT position FROM public.certwatch_log_positions WHERE log_url = $1",
            &[&url],
        )
        .ok()?
        .first()
        .map(|r| r.get(0))
}

/// 4: a bogus index while the log cannot say its tree size.
fn bogus_index(bin: &Path) -> Result<String, String> {
    let window = std::env::var("ATTACK_S4_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(75), Duration::from_secs);
    // BACKFILL_MAX_GAP=10: the bogus gap's capped part (20..30) cannot read the
    // watched entry (35) by chance.
    let (len, watched, first) = (40u64, 35u64, 20u64);
    let db = TestDb::create("attacks_4")?;
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let log = FakeCtLog::start(attack::log_entries(len as usize, &[watched as usize]));
    let list = ctlog::list_file("attacks-4", &[&log], false);
    let env = [("BACKFILL_MAX_GAP", "10")];
    let mut svc = Service::start(bin, "4-bogus", &db, &feed, &hook, &list, &env)?;
    let url = log.url();
    attack::send_paced(&feed, Dialect::Go, &url, 0..first);
    std::thread::sleep(Duration::from_secs(1));
    log.fail_path("ct/v1/get-sth", 500);
    log.fail_path("checkpoint", 500);
    attack::send_paced(&feed, Dialect::Go, &url, [i64::MAX as u64 - 1]);
    let started = Instant::now();
    let mut highest: Option<i64> = None;
    let mut back = false;
    let mut real_sent = false;
    let mut alert_after = None;
    while started.elapsed() < window {
        if let Some(p) = stored_position(&db, &url) {
            highest = highest.max(Some(p));
        }
        if !back && started.elapsed() >= Duration::from_secs(20) {
            log.clear_path_failures();
            back = true;
        }
        if !real_sent && started.elapsed() >= Duration::from_secs(45) {
            attack::send_paced(
                &feed,
                Dialect::Go,
                &url,
                (first..len).filter(|i| *i != watched),
            );
            real_sent = true;
        }
        if real_sent && alert_after.is_none() {
            if let Some((at, _)) = hook
                .mentioning(WATCHED, Duration::from_millis(500), true)
                .first()
            {
                alert_after = Some(*at - started);
            }
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let abandoned = svc.outcome(&log, "abandoned");
    let (exit, _) = svc.sigterm(Duration::from_secs(40));
    let last = stored_position(&db, &url);
    Ok(format!(
        "bogus index 2^63-2 while get-sth fails for 20 s (tree: {len} entries, \
         BACKFILL_MAX_GAP=10): highest stored position in {} {highest:?}, after SIGTERM \
         {last:?}{}; later real gap (sent at 45 s) fetched: {}; abandoned {abandoned}",
        secs(window),
        if exit.is_none() {
            " (no clean exit)"
        } else {
            ""
        },
        alert_after.map_or("no".to_string(), |d| format!("yes (alert at {})", secs(d))),
    ))
}

/// 5a: a slow log beside a normal one.
fn slow_log(bin: &Path) -> Result<String, String> {
    let db = TestDb::create("attacks_5a")?;
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let slow = FakeCtLog::start(attack::log_entries(302, &[]));
    slow.set_max_batch(1);
    let watched = 6;
    let normal = FakeCtLog::start(attack::log_entries(12, &[watched]));
    let list = ctlog::list_file("attacks-5a", &[&slow, &normal], false);
    let svc = Service::start(bin, "5a-slow", &db, &feed, &hook, &list, &[])?;
    attack::send_paced(&feed, Dialect::Go, &slow.url(), [0, 301]);
    std::thread::sleep(Duration::from_secs(1));
    attack::send_paced(
        &feed,
        Dialect::Go,
        &normal.url(),
        (0..12).filter(|i| *i != watched as u64),
    );
    let sent = Instant::now();
    let alert = hook.mentioning(WATCHED, Duration::from_secs(120), true);
    let latency = alert
        .first()
        .map_or("none within 120 s".to_string(), |(at, _)| secs(*at - sent));
    Ok(format!(
        "slow log (one entry per reply, 300-entry gap) and a normal log's gap: the normal log's \
         alert after {latency}; the slow log had read {} entries by then",
        svc.outcome(&slow, "fetched")
    ))
}

/// 5b: SIGTERM while a trickling log is being read, with an alert held for its grace.
fn trickling_log_at_sigterm(bin: &Path) -> Result<String, String> {
    let db = TestDb::create("attacks_5b")?;
    db.watch(&[WATCHED, "held.example"]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let slow = FakeCtLog::start(attack::log_entries(12, &[]));
    slow.set_trickle(Some(Duration::from_secs(1)));
    let list = ctlog::list_file("attacks-5b", &[&slow], false);
    let mut svc = Service::start(
        bin,
        "5b-trickle",
        &db,
        &feed,
        &hook,
        &list,
        &[("SUSPICIOUS_GRACE_S", "60")],
    )?;
    attack::send_paced(&feed, Dialect::Go, &slow.url(), [0, 11]);
    if !wait_until(Duration::from_secs(20), || {
        slow.hits("ct/v1/get-entries") >= 1
    }) {
        return Err("the trickling log was never asked".into());
    }
    feed.send(FeedCmd::Text(Cert::new(&["www.held.example"]).frame()));
    let held = wait_until(Duration::from_secs(10), || {
        db.try_client()
            .ok()
            .and_then(|mut c| {
                c.query_one("SELECT count(*) FROM public.certwatch_pending", &[])
                    .ok()
            })
            .is_some_and(|r| r.get::<_, i64>(0) == 1)
    });
    if !held {
        return Err("the certificate was not held for its grace period".into());
    }
    std::thread::sleep(Duration::from_secs(2));
    let (took, code) = svc.sigterm(Duration::from_secs(60));
    let delivered = hook.mentioning("www.held.example", Duration::from_secs(1), true);
    Ok(format!(
        "SIGTERM while a trickling log (1 byte/s) is read, an alert held for its grace: exit \
         after {} (code {code:?}); held alert delivered: {}",
        took.map_or("more than 60 s".to_string(), secs),
        if delivered.is_empty() { "no" } else { "yes" }
    ))
}

/// 10a: a Retry-After date in the past.
fn retry_after_in_the_past(bin: &Path) -> Result<String, String> {
    let db = TestDb::create("attacks_10")?;
    db.watch(&[WATCHED]);
    let (feed, hook) = (FakeFeed::start(), FakeWebhook::start());
    let log = FakeCtLog::start(attack::log_entries(12, &[6]));
    log.refuse_all(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"));
    let list = ctlog::list_file("attacks-10", &[&log], false);
    let _svc = Service::start(bin, "10-retry-after", &db, &feed, &hook, &list, &[])?;
    attack::send_paced(&feed, Dialect::Go, &log.url(), (0..12).filter(|i| *i != 6));
    if !wait_until(Duration::from_secs(20), || log.hits("") >= 1) {
        return Err("the gap was never asked for".into());
    }
    let window = Duration::from_secs(30);
    std::thread::sleep(window);
    let times = log.hit_times("");
    let in_window = times
        .iter()
        .filter(|t| t.duration_since(times[0]) <= window)
        .count();
    Ok(format!(
        "429 with a Retry-After date in the past: {in_window} requests in the {} after the first",
        secs(window)
    ))
}
