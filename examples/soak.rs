//! Soak test: `cargo run --release --example soak`.
//!
//! Replays a certstream full-stream feed at `SOAK_RATE` messages per second
//! (default 2,000) for `SOAK_SECONDS` (default 600) through the real service,
//! in-process, and shows whether resident memory stays flat. With PostgreSQL
//! running (`HARNESS_ADMIN_DSN`, default `postgresql://postgres@127.0.0.1:5432/postgres`):
//!
//! 1. a throwaway database `certwatch_soak_<pid>` with a watch list of 1,000
//!    entries (`w0.example.com` ...) and the inventory rows that make every other
//!    matching certificate `info` (the rest become `suspicious`);
//! 2. a paced WebSocket feed of ~9 KB messages (the test kit's `FeedGen` and
//!    `PacedFeed`), one in 1,000
//!    naming a host under a watched entry with a fresh serial, so alerts flow;
//!    a webhook receiver that answers 200;
//! 3. certwatch with `WATCH_REFRESH_INTERVAL_S=1` and `SUSPICIOUS_GRACE_S=1`,
//!    while a thread changes the watch list every second (one entry in, the
//!    oldest churned entry out), so every refresh rebuilds a different list;
//! 4. every 30 s one line: elapsed, frames sent, messages processed, dropped,
//!    alerts, webhooks, RSS, watch entries;
//! 5. at the end: RSS after the warm-up (`SOAK_WARMUP_S`, default 30) and at the
//!    end, the maximum, the least-squares slope after the warm-up, CPU per thread,
//!    and `SOAK OK`, or `SOAK FAILED: <why>` with exit code 1. OK means: the feed
//!    sent at least 99 % of rate x time, certwatch processed at least 99.9 % of
//!    what was sent, dropped none, had no parse errors, alerted on every matching
//!    message, a webhook arrived for every alert, and RSS grew less than 5 %
//!    from the end of the warm-up to the end.
//!
//! At one match per 1,000 messages (2 alerts/s) the in-memory dedupe LRU (2,048
//! issuance keys) is still filling when a 10-minute run ends: part of the RSS
//! slope is that bounded cache (`SOAK_MATCH_EVERY=100` fills it in ~100 s).
//!
//! RSS is this process's: the service plus the generator, whose frame pool is
//! measured and printed at start. A check run: `SOAK_SECONDS=60`. Other knobs:
//! `SOAK_WORKERS` (certwatch `WORKERS`, default: the CPU count),
//! `SOAK_MATCH_EVERY` (1000), `SOAK_POOL` (4096 frames), `SOAK_REPORT_S` (30),
//! `SOAK_SHOW_FRAME=1` (print one generated frame). To find where memory goes:
//! `SOAK_REFRESH_S` (certwatch `WATCH_REFRESH_INTERVAL_S`, default 1) and
//! `SOAK_CHURN=0` (no watch-list changes), `SOAK_MATCH_EVERY=0` (no alerts).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use certwatch_testkit::db::pg_err;
use certwatch_testkit::probe::{metric_value, scrape};
use certwatch_testkit::service::wait_service;
use certwatch_testkit::{
    FeedGen, FeedGenConfig, PacedFeed, TestDb, WebhookSink, feedgen, proc, wait_until,
};

const WATCH_ENTRIES: u64 = 1000;
/// Entries `w0..w<STABLE>` never change; matches are made under them. The rest
/// are churned: every second `w<1000+i>` comes in and `w<500+i>` goes.
const STABLE_ENTRIES: u64 = 500;
/// RSS is sampled this often (the slope uses every sample after the warm-up).
const SAMPLE: Duration = Duration::from_secs(5);
const GROWTH_LIMIT_PCT: f64 = 5.0;

struct Settings {
    rate: u64,
    seconds: u64,
    warmup: u64,
    report: u64,
    workers: Option<String>,
    refresh_s: u64,
    churn: bool,
    match_every: u64,
    pool: usize,
}

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("{name}={v:?}: {e}")),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let s = Settings {
            rate: env_u64("SOAK_RATE", 2000)?,
            seconds: env_u64("SOAK_SECONDS", 600)?,
            warmup: env_u64("SOAK_WARMUP_S", 30)?,
            report: env_u64("SOAK_REPORT_S", 30)?.max(1),
            workers: std::env::var("SOAK_WORKERS")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            match_every: env_u64("SOAK_MATCH_EVERY", 1000)?,
            refresh_s: env_u64("SOAK_REFRESH_S", 1)?,
            churn: env_u64("SOAK_CHURN", 1)? != 0,
            pool: env_u64("SOAK_POOL", 4096)?.max(1) as usize,
        };
        if s.rate == 0 {
            return Err("SOAK_RATE must be at least 1".into());
        }
        if s.seconds < s.warmup + 2 * SAMPLE.as_secs() {
            return Err(format!(
                "SOAK_SECONDS={} leaves too little after the {} s warm-up",
                s.seconds, s.warmup
            ));
        }
        Ok(s)
    }
}

/// `suspicious alert ...` warnings the service logs for each matching
/// certificate: expected here, so counted instead of printed.
static SUSPICIOUS_LOGGED: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|buf, record| {
            let text = record.args().to_string();
            if record.target() == "certwatch::classify" && text.starts_with("suspicious alert ") {
                SUSPICIOUS_LOGGED.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            writeln!(
                buf,
                "[{} {} {}] {text}",
                buf.timestamp_millis(),
                record.level(),
                record.target()
            )
        })
        .try_init();
    match run() {
        Ok(verdict) => {
            println!("{verdict}");
            if verdict.starts_with("SOAK OK") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(why) => {
            println!("SOAK FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

/// One RSS sample.
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss: u64,
}

/// CPU counters at one instant.
struct CpuSnapshot {
    at: Instant,
    process: u64,
    threads: HashMap<u64, (String, u64)>,
    postgres: HashMap<u32, u64>,
}

/// The verdict line, or why the soak could not run.
fn run() -> Result<String, String> {
    let s = Settings::from_env()?;
    let rss_at_launch = proc::rss_kib();

    // 1. Database: watch list and the inventory of the `info` matches.
    let db = TestDb::create("soak")?;
    feedgen::watch_generated(&db, WATCH_ENTRIES)?;

    // 2. The generator (its pool counted before and after) and the feed.
    let rss_before_pool = proc::rss_kib();
    let generated = Instant::now();
    let generator = FeedGen::new(FeedGenConfig {
        pool_size: s.pool,
        match_every: s.match_every,
        watched: (0..STABLE_ENTRIES)
            .map(|k| format!("w{k}.example.com"))
            .collect(),
        ..FeedGenConfig::default()
    });
    let rss_after_pool = proc::rss_kib();
    let expected_matches = (s.rate * (s.seconds + 60))
        .checked_div(s.match_every)
        .map_or(0, |n| n + 100);
    // Freed at once: the inventory certificates are not part of the soak's memory.
    let known = generator.known_certs(expected_matches);
    feedgen::inventory(&db, &known, "soak")?;
    let known_rows = known.len();
    drop(known);
    println!(
        "database {} ready: {WATCH_ENTRIES} watch entries, {} inventory rows",
        db.name(),
        known_rows
    );
    println!(
        "generator: {} frames, mean {} bytes, pool {} KiB of text (RSS +{} KiB), built in {:.2}s; \
         1 in {} matches, every 2nd of those known",
        generator.pool_len(),
        generator.mean_frame_bytes(),
        generator.pool_bytes() / 1024,
        rss_after_pool.saturating_sub(rss_before_pool),
        generated.elapsed().as_secs_f64(),
        s.match_every
    );
    if std::env::var("SOAK_SHOW_FRAME").as_deref() == Ok("1") {
        println!("a pool frame: {}", generator.sample(0));
    }
    let pool_kib = (generator.pool_bytes() / 1024) as u64;
    let feed = PacedFeed::start(generator, 0).map_err(|e| format!("feed: {e}"))?;
    let webhook = WebhookSink::start()?;

    // 3. The service.
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("CT_LOG_LIST", "off".to_string()),
        ("CERTSTREAM_URL", feed.url()),
        ("WEBHOOK_URL", webhook.url()),
        ("WATCH_REFRESH_INTERVAL_S", s.refresh_s.to_string()),
        ("SUSPICIOUS_GRACE_S", "1".to_string()),
        ("API_PORT", "0".to_string()),
        ("LOG_LEVEL", "WARN".to_string()),
    ]);
    if let Some(workers) = &s.workers {
        vars.insert("WORKERS", workers.clone());
    }
    let config = certwatch::Config::from_lookup(|name| vars.get(name).cloned())
        .map_err(|e| format!("config: {e}"))?;
    let workers = config.workers;
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start(config, shutdown).map_err(|e| format!("start: {e}"))?;
    let addr = service.http_addr();
    println!(
        "certwatch on http://{addr} ({workers} workers), feed {}, webhook {}",
        feed.url(),
        webhook.url()
    );

    let result = soak(&s, &db, &feed, &webhook, addr, pool_kib, rss_at_launch);
    trigger.trigger();
    let stopped = wait_service(service, Duration::from_secs(40));
    drop(feed);
    drop(webhook);
    drop(db);
    let verdict = result?;
    stopped?;
    Ok(verdict)
}

/// The soak proper; returns the verdict line.
fn soak(
    s: &Settings,
    db: &TestDb,
    feed: &PacedFeed,
    webhook: &WebhookSink,
    addr: SocketAddr,
    pool_kib: u64,
    rss_at_launch: u64,
) -> Result<String, String> {
    // Connected, and the whole watch list loaded.
    let ready = wait_until(Duration::from_secs(20), || {
        feed.connections() >= 1
            && scrape(addr)
                .ok()
                .and_then(|m| metric_value(&m, "certwatch_watch_entries"))
                == Some(WATCH_ENTRIES as f64)
    });
    if !ready {
        return Err("the service did not connect and load the watch list within 20s".into());
    }

    let churn = s.churn.then(|| Churn::start(db)).transpose()?;
    let mut pg = db.try_client()?;
    let rss_idle = proc::rss_kib();
    println!(
        "RSS at launch {rss_at_launch} KiB, with the service idle {rss_idle} KiB; \
         soaking at {} msg/s for {} s (warm-up {} s)",
        s.rate, s.seconds, s.warmup
    );
    println!(
        "{:>6} {:>9} {:>9} {:>7} {:>7} {:>5} {:>5} {:>8} {:>9} {:>5} {:>5}",
        "t",
        "sent",
        "processed",
        "dropped",
        "alerts",
        "info",
        "susp",
        "webhooks",
        "rss_KiB",
        "watch",
        "queue"
    );

    feed.set_rate(s.rate);
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut warm_cpu: Option<CpuSnapshot> = None;
    let mut start_rss: Option<u64> = None;
    let mut k: u64 = 0;
    let sample_s = SAMPLE.as_secs();
    loop {
        k += 1;
        let t = k * sample_s;
        if t > s.seconds {
            break;
        }
        let due = start + Duration::from_secs(t);
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let rss = proc::rss_kib();
        samples.push(Sample {
            t: start.elapsed().as_secs_f64(),
            rss,
        });
        if t >= s.warmup && start_rss.is_none() {
            start_rss = Some(rss);
            warm_cpu = Some(cpu_snapshot(&mut pg, db.name()));
        }
        if t.is_multiple_of(s.report) || t + sample_s > s.seconds {
            let m = scrape(addr).unwrap_or_default();
            let v = |series: &str| metric_value(&m, series).unwrap_or(-1.0);
            println!(
                "{:>5}s {:>9} {:>9} {:>7} {:>7} {:>5} {:>5} {:>8} {:>9} {:>5} {:>5}",
                t,
                feed.sent(),
                v(r#"certwatch_ct_messages_total{type="certificate_update"}"#),
                v("certwatch_ct_messages_dropped_total"),
                v(r#"certwatch_alerts_total{severity="info"}"#)
                    + v(r#"certwatch_alerts_total{severity="suspicious"}"#),
                v(r#"certwatch_alerts_total{severity="info"}"#),
                v(r#"certwatch_alerts_total{severity="suspicious"}"#),
                webhook.received(),
                rss,
                v("certwatch_watch_entries"),
                v(r#"certwatch_queue_depth{queue="workers"}"#),
            );
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let end_cpu = cpu_snapshot(&mut pg, db.name());
    let end_rss = samples.last().map_or(0, |x| x.rss);

    // Stop the feed; let the service finish what it has and deliver the last alerts.
    feed.set_rate(0);
    let sent = feed.sent();
    let matches_sent = feed.matches();
    let processed = |m: &str| {
        metric_value(
            m,
            r#"certwatch_ct_messages_total{type="certificate_update"}"#,
        )
        .unwrap_or(0.0) as u64
    };
    let alerts_of = |m: &str| {
        (metric_value(m, r#"certwatch_alerts_total{severity="info"}"#).unwrap_or(0.0)
            + metric_value(m, r#"certwatch_alerts_total{severity="suspicious"}"#).unwrap_or(0.0))
            as u64
    };
    wait_until(Duration::from_secs(15), || {
        scrape(addr).is_ok_and(|m| processed(&m) >= sent)
    });
    wait_until(Duration::from_secs(15), || {
        scrape(addr)
            .is_ok_and(|m| alerts_of(&m) >= matches_sent && webhook.received() >= alerts_of(&m))
    });
    let m = scrape(addr)?;
    let churn_stats = churn.map_or((0, 0), Churn::stop);
    let refreshes = pg
        .query_one(
            "SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables
              WHERE schemaname = 'public' AND relname = 'intent_current'",
            &[],
        )
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(-1);

    let v = |series: &str| metric_value(&m, series).unwrap_or(-1.0);
    let processed = processed(&m);
    let dropped = v("certwatch_ct_messages_dropped_total") as i64;
    let parse_errors = v("certwatch_ct_parse_errors_total") as i64;
    let info = v(r#"certwatch_alerts_total{severity="info"}"#) as u64;
    let suspicious = v(r#"certwatch_alerts_total{severity="suspicious"}"#) as u64;
    let alerts = info + suspicious;
    let received = webhook.received();
    let target = (s.rate as f64 * elapsed) as u64;
    let start_rss = start_rss.unwrap_or(end_rss);
    let max_rss = samples.iter().map(|x| x.rss).max().unwrap_or(0);
    let after: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|x| x.t >= s.warmup as f64 - 0.5)
        .collect();
    let slope = slope_kib_per_min(&after);
    let growth = (end_rss as f64 - start_rss as f64) / start_rss.max(1) as f64 * 100.0;
    let fitted_growth = slope
        * (after.last().map_or(0.0, |x| x.t) - after.first().map_or(0.0, |x| x.t))
        / 60.0
        / start_rss.max(1) as f64
        * 100.0;

    println!("--- soak summary ({elapsed:.0} s at {} msg/s) ---", s.rate);
    println!(
        "messages: target {target}, sent {sent} ({:.2} %), processed {processed} ({:.3} % of sent), \
         dropped {dropped}, parse errors {parse_errors}, pacer behind {}",
        pct(sent, target),
        pct(processed, sent),
        feed.counters().behind.load(Ordering::Relaxed)
    );
    println!(
        "alerts: {alerts} (info {info}, suspicious {suspicious}) for {matches_sent} matching messages; \
         webhooks received {received} (info {}, suspicious {}); webhook failures {}, undelivered {}",
        webhook.counters().info.load(Ordering::Relaxed),
        webhook.counters().suspicious.load(Ordering::Relaxed),
        v(r#"certwatch_webhook_total{result="failure"}"#),
        v("certwatch_undelivered_alerts"),
    );
    println!(
        "watch list: {} entries at the end; churn {} changes ({} failed); \
         full reads of intent_current seen by Postgres {refreshes}; dedupe cache {}; db errors {}",
        v("certwatch_watch_entries"),
        churn_stats.0,
        churn_stats.1,
        v("certwatch_dedupe_cache_size"),
        sum_series(&m, "certwatch_db_errors_total{"),
    );
    println!(
        "RSS: start {start_rss} KiB (after {} s warm-up), end {end_rss} KiB, max {max_rss} KiB, \
         peak (VmHWM) {} KiB; growth {growth:+.2} %; slope {slope:+.1} KiB/min over {} samples \
         (fitted growth {fitted_growth:+.2} %)",
        s.warmup,
        proc::peak_rss_kib(),
        after.len()
    );
    println!(
        "RSS includes the generator's frame pool ({pool_kib} KiB of text); without it: \
         start {} KiB, end {} KiB",
        start_rss.saturating_sub(pool_kib),
        end_rss.saturating_sub(pool_kib)
    );
    if let Some(warm) = &warm_cpu {
        print_cpu(warm, &end_cpu);
    }
    println!(
        "log: {} expected `suspicious alert` warnings counted, not printed",
        SUSPICIOUS_LOGGED.load(Ordering::Relaxed)
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("loadavg: {}", load.trim());
    }

    let mut why = Vec::new();
    if sent * 100 < target * 99 {
        why.push(format!(
            "the feed sent {sent} of {target} messages ({:.2} %): the pacer could not keep the rate",
            pct(sent, target)
        ));
    }
    if processed * 1000 < sent * 999 {
        why.push(format!(
            "processed {processed} of {sent} sent ({:.3} % < 99.9 %)",
            pct(processed, sent)
        ));
    }
    if dropped != 0 {
        why.push(format!("{dropped} messages dropped"));
    }
    if parse_errors != 0 {
        why.push(format!("{parse_errors} parse errors"));
    }
    if alerts == 0 {
        why.push("no alerts".into());
    } else if alerts < matches_sent {
        why.push(format!(
            "{alerts} alerts for {matches_sent} matching messages"
        ));
    }
    if received < alerts {
        why.push(format!("{received} webhooks received for {alerts} alerts"));
    }
    if growth >= GROWTH_LIMIT_PCT {
        why.push(format!(
            "RSS grew {growth:.2} % after the warm-up ({start_rss} -> {end_rss} KiB)"
        ));
    }
    Ok(if why.is_empty() {
        format!(
            "SOAK OK: {sent} messages at {} msg/s, {alerts} alerts, RSS {start_rss} -> {end_rss} KiB \
             ({growth:+.2} %, {slope:+.1} KiB/min)",
            s.rate
        )
    } else {
        format!("SOAK FAILED: {}", why.join("; "))
    })
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

fn sum_series(exposition: &str, prefix: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Least-squares slope of RSS over time, KiB per minute.
fn slope_kib_per_min(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|x| x.t / 60.0).sum::<f64>() / n;
    let mean_r = samples.iter().map(|x| x.rss as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for x in samples {
        let dt = x.t / 60.0 - mean_t;
        num += dt * (x.rss as f64 - mean_r);
        den += dt * dt;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

fn cpu_snapshot(pg: &mut postgres::Client, dbname: &str) -> CpuSnapshot {
    let mut postgres = HashMap::new();
    if let Ok(rows) = pg.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1",
        &[&dbname],
    ) {
        for row in rows {
            let pid: i32 = row.get(0);
            let ticks = proc::process_cpu_ticks_of(&pid.to_string());
            if ticks > 0 {
                postgres.insert(pid as u32, ticks);
            }
        }
    }
    CpuSnapshot {
        at: Instant::now(),
        process: proc::process_cpu_ticks(),
        threads: proc::thread_cpu_ticks(),
        postgres,
    }
}

/// CPU between two snapshots, % of one core: the process, its threads grouped by
/// name (`worker-N` together), and the soak database's Postgres backends.
fn print_cpu(a: &CpuSnapshot, b: &CpuSnapshot) {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
    let pct = |ticks: u64| ticks as f64 / proc::USER_HZ as f64 / secs * 100.0;
    let mut groups: HashMap<String, u64> = HashMap::new();
    for (tid, (name, ticks)) in &b.threads {
        let before = a.threads.get(tid).map_or(0, |(_, t)| *t);
        let group = if name.starts_with("worker-") {
            "worker-*".to_string()
        } else if name.is_empty() {
            "?".to_string()
        } else {
            name.clone()
        };
        *groups.entry(group).or_default() += ticks.saturating_sub(before);
    }
    let mut groups: Vec<(String, u64)> = groups.into_iter().filter(|(_, t)| *t > 0).collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    let threads = groups
        .iter()
        .map(|(name, t)| format!("{name} {:.1}", pct(*t)))
        .collect::<Vec<_>>()
        .join(", ");
    let pg: u64 = b
        .postgres
        .iter()
        .map(|(pid, t)| t.saturating_sub(a.postgres.get(pid).copied().unwrap_or(0)))
        .sum();
    println!(
        "CPU over the {secs:.0} s after the warm-up, % of one core: process {:.1} ({threads}); \
         Postgres backends of the soak database {:.1}",
        pct(b.process.saturating_sub(a.process)),
        pct(pg)
    );
}

/// The watch-list churn: every second, one new entry in and the oldest churned
/// entry out, in one transaction.
struct Churn {
    stop: Arc<AtomicBool>,
    changes: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    thread: thread::JoinHandle<()>,
}

impl Churn {
    fn start(db: &TestDb) -> Result<Churn, String> {
        let mut client = db.try_client()?;
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, changes, failures) = (stop.clone(), changes.clone(), failures.clone());
            thread::Builder::new()
                .name("soak-churn".into())
                .spawn(move || {
                    let mut i: u64 = 0;
                    let mut next = Instant::now() + Duration::from_secs(1);
                    while !stop.load(Ordering::SeqCst) {
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                        next += Duration::from_secs(1);
                        let add = format!("w{}.example.com", WATCH_ENTRIES + i);
                        let remove = format!("w{}.example.com", STABLE_ENTRIES + i);
                        let done = client.transaction().and_then(|mut tx| {
                            tx.execute(
                                "INSERT INTO public.intent_current (fqdn) VALUES ($1)",
                                &[&add],
                            )?;
                            tx.execute(
                                "DELETE FROM public.intent_current WHERE fqdn = $1",
                                &[&remove],
                            )?;
                            tx.commit()
                        });
                        match done {
                            Ok(()) => {
                                i += 1;
                                changes.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                log::warn!("watch-list churn failed: {}", pg_err(&e));
                            }
                        }
                    }
                })
                .map_err(|e| format!("churn thread: {e}"))?
        };
        Ok(Churn {
            stop,
            changes,
            failures,
            thread,
        })
    }

    /// Stops the thread: (changes made, failures).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        (
            self.changes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}
