//! Throughput benchmark: `cargo run --release --example bench_feed`.
//!
//! Builds the release binary, creates a throwaway database with a watch list of
//! `BENCH_ENTRIES` entries (default 100,000), generates a realistic full-stream
//! feed in memory (about 9 KB a message: leaf with `as_der`, two-certificate
//! chain, extensions; 1 in 1,000 matching the watch list, half of those in the
//! inventory) and serves it from a tungstenite server thread on loopback. It
//! then measures:
//!
//! 1. the ceiling: one thread that only reads frames and parses the fields
//!    certwatch needs (`certstream::peek`), as fast as the server sends;
//! 2. certwatch (the real binary, its own process) flat out: messages per
//!    second processed, CPU microseconds per message, drops, alerts, peak RSS,
//!    and its rate as a share of the ceiling;
//! 3. certwatch paced at 2,000 and 20,000 messages per second for
//!    `BENCH_PACED_SECONDS` each (default 20), with the watch list refreshed
//!    every second meanwhile: drops (must be 0) and the longest refresh;
//! 4. idle RSS with 10,000 entries, `/healthz` latency after start, and the
//!    stripped binary's size.
//!
//! Each target of the performance issue is printed with PASS or FAIL.

#[path = "load/mod.rs"]
mod load;

use load::{FeedGen, FeedGenConfig, PacedFeed, ThrowawayDb, WebhookSink};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds (if needed) and locates the stripped release binary.
fn release_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--bin", "certwatch"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release failed");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/certwatch")
}

/// The certwatch binary under test, in its own process.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(bin: &PathBuf, dsn: &str, feed: &str, webhook: &str) -> (Service, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let mut command = Command::new(bin);
        command.env_clear();
        // Settings under test (worker count, allocator tuning), passed through when set.
        for name in [
            "MALLOC_ARENA_MAX",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_MMAP_THRESHOLD_",
        ] {
            if let Ok(value) = std::env::var(name) {
                command.env(name, value);
            }
        }
        let child = command
            .env("POSTGRES_DSN", dsn)
            .env("CERTSTREAM_URL", feed)
            .env("WEBHOOK_URL", webhook)
            .env("API_PORT", port.to_string())
            .env(
                "WATCH_REFRESH_INTERVAL_S",
                std::env::var("BENCH_REFRESH_S").unwrap_or_else(|_| "1".into()),
            )
            .env("SUSPICIOUS_GRACE_S", "1")
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(200)))
            .build()
            .into();
        let ready = loop {
            if agent.get(format!("http://{addr}/healthz")).call().is_ok() {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "/healthz never answered"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        (Service { child, addr }, ready)
    }

    fn metric(&self, series: &str) -> f64 {
        let text = load::scrape(self.addr).unwrap_or_default();
        load::metric(&text, series).unwrap_or(0.0)
    }

    fn processed(&self) -> f64 {
        self.metric(r#"certwatch_ct_messages_total{type="certificate_update"}"#)
    }

    fn dropped(&self) -> f64 {
        self.metric("certwatch_ct_messages_dropped_total")
    }

    fn proc_status_kib(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// utime + stime of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks as f64 / load::USER_HZ as f64
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn watch_list(db: &ThrowawayDb, entries: u64) {
    db.connect()
        .unwrap()
        .execute(
            "INSERT INTO public.intent_current (fqdn)
             SELECT 'w' || g || '.example.com' FROM generate_series(0, $1::bigint - 1) g",
            &[&(entries as i64)],
        )
        .expect("watch list");
}

fn inventory(db: &ThrowawayDb, feed_gen: &FeedGen, matches: u64) {
    let mut client = db.connect().unwrap();
    for cert in feed_gen.known_certs(matches) {
        let sans = serde_json::to_string(&cert.names).unwrap();
        client
            .execute(
                "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
                 VALUES ($1, $2, $3::text::jsonb, $4, $5, 'bench', 0) ON CONFLICT DO NOTHING",
                &[&cert.fingerprint_sha1, &cert.serial, &sans, &cert.not_before, &cert.not_after],
            )
            .unwrap();
    }
}

fn generator(entries: u64) -> FeedGen {
    FeedGen::new(FeedGenConfig {
        watched: (0..entries).map(|k| format!("w{k}.example.com")).collect(),
        ..FeedGenConfig::default()
    })
}

/// Rates are compared over their best 2-second window: on a shared 2-core
/// machine, whole-run averages mostly measure what else ran meanwhile.
const WINDOW: Duration = Duration::from_secs(2);

/// The ceiling: one thread reading frames and parsing what certwatch needs;
/// (best window rate, average rate).
fn reference(seconds: u64, entries: u64) -> (f64, f64) {
    let feed = PacedFeed::start(generator(entries), 0).expect("feed");
    let (mut ws, _) = tungstenite::connect(feed.url()).expect("connect");
    feed.set_rate(1_000_000);
    let mut names = 0usize;
    let mut frames = 0u64;
    let started = Instant::now();
    let (mut window_start, mut window_frames, mut best) = (Instant::now(), 0u64, 0f64);
    while started.elapsed() < Duration::from_secs(seconds) {
        if window_start.elapsed() >= WINDOW {
            best = best.max((frames - window_frames) as f64 / window_start.elapsed().as_secs_f64());
            (window_start, window_frames) = (Instant::now(), frames);
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(text)) => {
                if let Ok(certwatch::certstream::Peek::Certificate { all_domains }) =
                    certwatch::certstream::peek(&text)
                {
                    names += all_domains.len();
                }
                frames += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("reference read: {e}"),
        }
    }
    let rate = frames as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(names);
    (best, rate)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let entries = env_or("BENCH_ENTRIES", 100_000);
    let flat_out_seconds = env_or("BENCH_SECONDS", 20);
    let paced_seconds = env_or("BENCH_PACED_SECONDS", 20);
    let bin = release_binary();
    let binary_bytes = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "machine: {} CPUs; binary {:.1} MB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        binary_bytes as f64 / 1e6
    );

    // 1. The ceiling.
    let (ceiling, ceiling_average) = reference(flat_out_seconds.min(10), entries);
    println!(
        "ceiling (1 thread: read + parse the needed fields): best 2 s window {ceiling:.0} msg/s, average {ceiling_average:.0} msg/s"
    );

    // 2. certwatch flat out, then paced.
    let db = ThrowawayDb::create("bench").expect("database");
    watch_list(&db, entries);
    let feed_gen = generator(entries);
    println!(
        "feed: {} frames pooled, {} bytes per message on average",
        feed_gen.pool_len(),
        feed_gen.mean_frame_bytes()
    );
    inventory(&db, &feed_gen, 100_000);
    let feed = PacedFeed::start(feed_gen, 0).expect("feed");
    let sink = WebhookSink::start().expect("webhook sink");
    let (service, ready) = Service::start(&bin, db.dsn(), &feed.url(), &sink.url());
    let mut waited = 0;
    while feed.connections() == 0 || service.metric("certwatch_watch_entries") < entries as f64 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
        assert!(
            waited < 600,
            "certwatch did not connect and load its watch list"
        );
    }
    let idle_loaded_kib = service.proc_status_kib("VmRSS:");
    println!(
        "certwatch idle with {entries} entries: RSS {:.1} MiB, peak so far {:.1} MiB",
        idle_loaded_kib as f64 / 1024.0,
        service.proc_status_kib("VmHWM:") as f64 / 1024.0
    );

    let (p0, d0, c0) = (
        service.processed(),
        service.dropped(),
        service.cpu_seconds(),
    );
    let started = Instant::now();
    feed.set_rate(1_000_000);
    let mut best = 0f64;
    let (mut window_start, mut window_processed) = (Instant::now(), p0);
    while started.elapsed() < Duration::from_secs(flat_out_seconds) {
        std::thread::sleep(WINDOW);
        let now = service.processed();
        best = best.max((now - window_processed) / window_start.elapsed().as_secs_f64());
        (window_start, window_processed) = (Instant::now(), now);
    }
    feed.set_rate(0);
    let elapsed = started.elapsed().as_secs_f64();
    // Let the queue drain, so the next phase starts clean.
    let mut last = -1.0;
    while service.processed() + service.dropped() != last {
        last = service.processed() + service.dropped();
        std::thread::sleep(Duration::from_millis(500));
    }
    let (p1, d1, c1) = (
        service.processed(),
        service.dropped(),
        service.cpu_seconds(),
    );
    let processed = p1 - p0;
    let average = processed / elapsed;
    let rate = best;
    let cpu_us = (c1 - c0) * 1e6 / processed.max(1.0);
    println!(
        "certwatch flat out: best 2 s window {rate:.0} msg/s processed ({:.2} of the ceiling), average {average:.0} msg/s ({:.2}), {cpu_us:.1} CPU us/msg, {:.0} dropped of {:.0} read; RSS {:.1} MiB, peak so far {:.1} MiB",
        rate / ceiling,
        average / ceiling_average,
        d1 - d0,
        processed + d1 - d0,
        service.proc_status_kib("VmRSS:") as f64 / 1024.0,
        service.proc_status_kib("VmHWM:") as f64 / 1024.0,
    );

    let mut paced = Vec::new();
    for target in [2_000u64, 20_000] {
        let (p0, d0) = (service.processed(), service.dropped());
        let behind0 = feed
            .counters()
            .behind
            .load(std::sync::atomic::Ordering::Relaxed);
        let sent0 = feed.sent();
        let mut longest_refresh = 0f64;
        feed.set_rate(target);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(paced_seconds) {
            longest_refresh =
                longest_refresh.max(service.metric("certwatch_watch_refresh_seconds"));
            std::thread::sleep(Duration::from_millis(200));
        }
        feed.set_rate(0);
        std::thread::sleep(Duration::from_millis(1000));
        let sent = feed.sent() - sent0;
        let behind = feed
            .counters()
            .behind
            .load(std::sync::atomic::Ordering::Relaxed)
            - behind0;
        let (processed, dropped) = (service.processed() - p0, service.dropped() - d0);
        println!(
            "certwatch at {target} msg/s for {paced_seconds}s: sent {sent}, processed {processed:.0}, dropped {dropped:.0}, \
             feed behind {behind}, achieved {:.0} msg/s, longest watch refresh ({entries} entries) {:.0} ms; RSS {:.1} MiB, peak so far {:.1} MiB",
            sent as f64 / paced_seconds as f64,
            longest_refresh * 1000.0,
            service.proc_status_kib("VmRSS:") as f64 / 1024.0,
            service.proc_status_kib("VmHWM:") as f64 / 1024.0,
        );
        paced.push((target, sent, processed, dropped, longest_refresh));
    }
    let alerts = service.metric(r#"certwatch_alerts_total{severity="info"}"#)
        + service.metric(r#"certwatch_alerts_total{severity="suspicious"}"#);
    let peak_kib = service.proc_status_kib("VmHWM:");
    println!(
        "alerts {alerts:.0}, webhooks received {}, RSS with {entries} entries: idle {:.1} MiB, peak {:.1} MiB",
        sink.received(),
        idle_loaded_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    service.stop();
    drop(db);

    // 4. Idle with 10,000 entries.
    let small = ThrowawayDb::create("bench_idle").expect("database");
    watch_list(&small, 10_000);
    let idle_feed = PacedFeed::start(generator(10_000), 0).expect("feed");
    let (idle, _) = Service::start(&bin, small.dsn(), &idle_feed.url(), &sink.url());
    std::thread::sleep(Duration::from_secs(5));
    let idle_kib = idle.proc_status_kib("VmRSS:");
    idle.stop();
    println!(
        "idle RSS with 10000 entries: {:.1} MiB; /healthz answered {:.1} ms after exec",
        idle_kib as f64 / 1024.0,
        ready.as_secs_f64() * 1000.0
    );

    println!();
    println!("targets:");
    let ratio = rate / ceiling;
    println!(
        "  {} processed rate >= 0.9 x ceiling: {ratio:.2}",
        verdict(ratio >= 0.9)
    );
    for (target, sent, processed, dropped, longest) in &paced {
        let kept_up = *sent as f64 >= 0.98 * (*target * paced_seconds) as f64;
        println!(
            "  {} zero drops at {target} msg/s: {dropped:.0} dropped, {processed:.0} processed, feed kept the rate: {kept_up}",
            verdict(*dropped == 0.0 && kept_up)
        );
        println!(
            "  {} watch refresh of {entries} entries <= 200 ms: {:.0} ms",
            verdict(*longest <= 0.2),
            longest * 1000.0
        );
    }
    println!(
        "  {} peak RSS <= 64 MiB with {entries} entries under load: {:.1} MiB",
        verdict(peak_kib <= 64 * 1024),
        peak_kib as f64 / 1024.0
    );
    println!(
        "  {} idle RSS <= 16 MiB with 10000 entries: {:.1} MiB",
        verdict(idle_kib <= 16 * 1024),
        idle_kib as f64 / 1024.0
    );
    println!(
        "  {} stripped binary <= 10 MB: {:.1} MB",
        verdict(binary_bytes <= 10_000_000),
        binary_bytes as f64 / 1e6
    );
    println!(
        "  {} /healthz <= 100 ms after start: {:.1} ms",
        verdict(ready <= Duration::from_millis(100)),
        ready.as_secs_f64() * 1000.0
    );
    println!("  (matcher cost per name by list size: cargo run --release --example bench_matcher)");
}
