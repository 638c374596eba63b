//! Throughput benchmark: `cargo bench --bench bench_feed`.
//!
//! Builds the release binary, creates a throwaway database with a watch list of
//! `BENCH_ENTRIES` entries (default 100,000), generates a realistic full-stream
//! feed in memory (about 9 KB a message: leaf with `as_der`, two-certificate
//! chain, extensions; 1 in 1,000 matching the watch list, half of those in the
//! inventory) and serves it from a tungstenite server thread on loopback. It
//! then measures:
//!
//! 1. the ceiling: one thread that only reads frames and parses the fields
//!    certwatch needs (`sources::feed::peek`), as fast as the server sends;
//! 2. certwatch (the real binary, its own process, default settings) flat out:
//!    messages per second processed, CPU microseconds per message (by thread),
//!    drops, alerts, peak RSS, and its rate as a share of the ceiling. 1 and 2
//!    take turns for `BENCH_ROUNDS` rounds (default 6) of `BENCH_SECONDS` each
//!    (default 5), the order alternating, so both meet the same machine;
//! 3. certwatch paced at 2,000 and 20,000 messages per second for
//!    `BENCH_PACED_SECONDS` each (default 20), with the watch list refreshed
//!    every second meanwhile: drops (must be 0) and the longest refresh;
//! 4. idle RSS with 10,000 entries, `/healthz` latency after start, and the
//!    stripped binary's size.
//!
//! Each target of the performance issue is printed with PASS or FAIL.

use certwatch_testkit::probe::{metric_value, scrape};
use certwatch_testkit::{FeedGen, FeedGenConfig, PacedFeed, TestDb, WebhookSink, feedgen, proc};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds (if needed) and locates the stripped release binary. It has a target
/// directory of its own: built alone, the binary's dependencies have other
/// features than when built with this bench, and sharing `target/` would
/// rebuild them on every run.
fn release_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--bin", "certwatch"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release failed");
    target_dir.join("release/certwatch")
}

/// The certwatch binary under test, in its own process.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    /// Starts the binary; `refresh` sets `WATCH_REFRESH_INTERVAL_S` (else its default).
    fn start(
        bin: &PathBuf,
        dsn: &str,
        feed: &str,
        webhook: &str,
        refresh: Option<&str>,
        log_list: &str,
    ) -> (Service, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let mut command = Command::new(bin);
        command.env_clear();
        // The worker count under test, passed through when set (glibc's MALLOC_*
        // settings no longer apply: the binary uses mimalloc).
        if let Ok(workers) = std::env::var("WORKERS") {
            command.env("WORKERS", workers);
        }
        if let Some(refresh) = refresh {
            command.env("WATCH_REFRESH_INTERVAL_S", refresh);
        }
        let child = command
            .env("POSTGRES_DSN", dsn)
            .env("CT_LOG_LIST", log_list)
            .env("CERTSTREAM_URL", feed)
            .env("WEBHOOK_URL", webhook)
            .env("API_PORT", port.to_string())
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

    /// Waits until the service is the feed's client number `connection` and has
    /// loaded `entries` watch entries.
    fn wait_loaded(&self, feed: &PacedFeed, connection: usize, entries: u64) {
        let started = Instant::now();
        while feed.connections() < connection
            || self.metric("certwatch_watch_entries") < entries as f64
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "certwatch did not connect and load its watch list"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metric(&self, series: &str) -> f64 {
        let text = scrape(self.addr).unwrap_or_default();
        metric_value(&text, series).unwrap_or(0.0)
    }

    fn processed(&self) -> f64 {
        self.metric(r#"certwatch_ct_messages_total{type="certificate_update"}"#)
    }

    fn alerts(&self) -> f64 {
        self.metric(r#"certwatch_alerts_total{severity="info"}"#)
            + self.metric(r#"certwatch_alerts_total{severity="suspicious"}"#)
    }

    /// The sum of every series of a metric family (e.g. over its `log` labels).
    fn metric_sum(&self, family: &str) -> f64 {
        let text = scrape(self.addr).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .fold(0.0, |sum, v| sum + v)
    }

    fn dropped(&self) -> f64 {
        self.metric("certwatch_ct_messages_dropped_total")
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// A `kB` field of the process's `/proc/<pid>/status`, e.g. `VmRSS`.
    fn proc_status_kib(&self, field: &str) -> u64 {
        proc::proc_status_kib_of(&self.pid(), field)
    }

    /// utime + stime of each thread of the process by thread name (worker-N
    /// summed as `worker`), in seconds.
    fn thread_cpu_seconds(&self) -> std::collections::BTreeMap<String, f64> {
        let mut by_name = std::collections::BTreeMap::new();
        for (name, ticks) in proc::thread_cpu_ticks_of(&self.pid()).into_values() {
            let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            *by_name.entry(name.to_string()).or_insert(0.0) += ticks as f64 / proc::USER_HZ as f64;
        }
        by_name
    }

    /// utime + stime of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        proc::process_cpu_ticks_of(&self.pid()) as f64 / proc::USER_HZ as f64
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

fn generator(entries: u64) -> FeedGen {
    FeedGen::new(FeedGenConfig {
        watched: (0..entries).map(|k| format!("w{k}.example.com")).collect(),
        ..FeedGenConfig::default()
    })
}

/// CPU seconds of the bench's threads named `name` so far.
fn own_threads_cpu(name: &str) -> f64 {
    proc::thread_cpu_ticks()
        .values()
        .filter(|(thread, _)| thread == name)
        .map(|(_, ticks)| *ticks)
        .sum::<u64>() as f64
        / proc::USER_HZ as f64
}

/// The ceiling: one thread (`reference`) that reads frames from a feed of its
/// own and parses what certwatch needs (`sources::feed::peek`), and nothing else.
/// It reads whenever its feed sends; the bench turns that feed on and off.
struct Reference {
    feed: PacedFeed,
    frames: Arc<AtomicU64>,
}

impl Reference {
    fn start(entries: u64) -> Reference {
        let feed = PacedFeed::start(generator(entries), 0).expect("feed");
        let (mut ws, _) = tungstenite::connect(feed.url()).expect("connect");
        let frames = Arc::new(AtomicU64::new(0));
        let counter = frames.clone();
        std::thread::Builder::new()
            .name("reference".into())
            .spawn(move || {
                let mut names = 0usize;
                // Ends when the feed goes away at the end of the bench.
                while let Ok(message) = ws.read() {
                    if let tungstenite::Message::Text(text) = message {
                        if let Ok(certwatch::sources::feed::Peek::Certificate {
                            all_domains, ..
                        }) = certwatch::sources::feed::peek(&text)
                        {
                            names += all_domains.len();
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::hint::black_box(names);
            })
            .expect("reference thread");
        Reference { feed, frames }
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

/// What one flat-out stretch measured.
#[derive(Default, Clone, Copy)]
struct Stretch {
    seconds: f64,
    /// Messages processed (certwatch) or read and parsed (the reference).
    messages: f64,
    dropped: f64,
    /// CPU seconds of certwatch (or the reference thread), and of the feed server.
    cpu: f64,
    server_cpu: f64,
}

impl Stretch {
    fn rate(&self) -> f64 {
        self.messages / self.seconds
    }

    fn add(&mut self, other: Stretch) {
        self.seconds += other.seconds;
        self.messages += other.messages;
        self.dropped += other.dropped;
        self.cpu += other.cpu;
        self.server_cpu += other.server_cpu;
    }

    fn us_per_message(cpu: f64, messages: f64) -> f64 {
        cpu * 1e6 / messages.max(1.0)
    }
}

/// Seconds a feed runs flat out before a stretch's measurement starts.
const WARM_UP: Duration = Duration::from_secs(1);

/// The reference flat out for `seconds`.
fn reference_stretch(reference: &Reference, seconds: u64) -> Stretch {
    reference.feed.set_rate(1_000_000);
    std::thread::sleep(WARM_UP);
    let (f0, c0, s0) = (
        reference.frames(),
        own_threads_cpu("reference"),
        own_threads_cpu("load-feed"),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let stretch = Stretch {
        seconds: started.elapsed().as_secs_f64(),
        messages: (reference.frames() - f0) as f64,
        dropped: 0.0,
        cpu: own_threads_cpu("reference") - c0,
        server_cpu: own_threads_cpu("load-feed") - s0,
    };
    reference.feed.set_rate(0);
    settle(Duration::from_millis(200), || reference.frames());
    stretch
}

/// certwatch flat out for `seconds`; also its CPU by thread.
fn certwatch_stretch(
    service: &Service,
    feed: &PacedFeed,
    seconds: u64,
    by_thread: &mut std::collections::BTreeMap<String, f64>,
) -> Stretch {
    feed.set_rate(1_000_000);
    std::thread::sleep(WARM_UP);
    let (p0, d0, c0, s0) = (
        service.processed(),
        service.dropped(),
        service.cpu_seconds(),
        own_threads_cpu("load-feed"),
    );
    let threads0 = service.thread_cpu_seconds();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let stretch = Stretch {
        seconds: started.elapsed().as_secs_f64(),
        messages: service.processed() - p0,
        dropped: service.dropped() - d0,
        cpu: service.cpu_seconds() - c0,
        server_cpu: own_threads_cpu("load-feed") - s0,
    };
    for (name, cpu) in service.thread_cpu_seconds() {
        *by_thread.entry(name.clone()).or_insert(0.0) +=
            cpu - threads0.get(&name).copied().unwrap_or(0.0);
    }
    feed.set_rate(0);
    settle(Duration::from_millis(300), || {
        service.processed() + service.dropped()
    });
    stretch
}

/// Polls `read` every `every` until two readings in a row agree: what was in
/// flight has arrived (or the queue has drained), so the next stretch starts clean.
fn settle<T: PartialEq>(every: Duration, read: impl Fn() -> T) {
    let mut last = read();
    loop {
        std::thread::sleep(every);
        let now = read();
        if now == last {
            return;
        }
        last = now;
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let entries = env_or("BENCH_ENTRIES", 100_000);
    let flat_out_seconds = env_or("BENCH_SECONDS", 5);
    let rounds = env_or("BENCH_ROUNDS", 6);
    let paced_seconds = env_or("BENCH_PACED_SECONDS", 20);
    let bin = release_binary();
    let binary_bytes = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "machine: {} CPUs; binary {:.1} MB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        binary_bytes as f64 / 1e6
    );

    // 1. certwatch flat out against the ceiling, then paced.
    let db = TestDb::create("bench").expect("database");
    feedgen::watch_generated(&db, entries).expect("watch list");
    let feed_gen = generator(entries);
    // Coverage on (the default in production): a log list naming the generated
    // feed's logs, so every message's log is looked up and its index tracked.
    // `BENCH_COVERAGE=off` measures without.
    let log_list = match std::env::var("BENCH_COVERAGE").as_deref() {
        Ok("off") => "off".to_string(),
        _ => {
            let path =
                std::env::temp_dir().join(format!("certwatch-bench-{}.json", std::process::id()));
            std::fs::write(&path, feed_gen.log_list()).expect("log list file");
            path.to_str().expect("utf-8 temp path").to_string()
        }
    };
    println!("coverage: CT_LOG_LIST={log_list}");
    println!(
        "feed: {} frames pooled, {} bytes per message on average",
        feed_gen.pool_len(),
        feed_gen.mean_frame_bytes()
    );
    feedgen::inventory(&db, &feed_gen.known_certs(100_000), "bench").expect("inventory");
    let feed = PacedFeed::start(feed_gen, 0).expect("feed");
    let sink = WebhookSink::start().expect("webhook sink");
    // Flat out with the default refresh interval (a production setting); the
    // paced phases then refresh every second, to show refreshes never stall.
    let flat_refresh = std::env::var("BENCH_FLAT_REFRESH_S").ok();
    let (service, ready) = Service::start(
        &bin,
        db.dsn(),
        &feed.url(),
        &sink.url(),
        flat_refresh.as_deref(),
        &log_list,
    );
    service.wait_loaded(&feed, 1, entries);
    let idle_loaded_kib = service.proc_status_kib("VmRSS");
    println!(
        "certwatch idle with {entries} entries: RSS {:.1} MiB, peak so far {:.1} MiB",
        idle_loaded_kib as f64 / 1024.0,
        service.proc_status_kib("VmHWM") as f64 / 1024.0
    );

    // The ceiling and certwatch take turns, so that each pair of stretches
    // meets the same machine: on a shared 2-core VM the speed drifts by tens
    // of percent from minute to minute.
    let reference = Reference::start(entries);
    let (mut ceiling, mut certwatch) = (Stretch::default(), Stretch::default());
    let mut by_thread = std::collections::BTreeMap::new();
    let mut round_ratios = Vec::new();
    println!(
        "flat out: {rounds} rounds, each {flat_out_seconds} s of the ceiling and {flat_out_seconds} s of certwatch, in turns (after {} s warm-up each)",
        WARM_UP.as_secs()
    );
    for round in 1..=rounds {
        // Alternating which goes first cancels a steady drift of the machine.
        let (top, ours) = if round % 2 == 1 {
            let top = reference_stretch(&reference, flat_out_seconds);
            (
                top,
                certwatch_stretch(&service, &feed, flat_out_seconds, &mut by_thread),
            )
        } else {
            let ours = certwatch_stretch(&service, &feed, flat_out_seconds, &mut by_thread);
            (reference_stretch(&reference, flat_out_seconds), ours)
        };
        println!(
            "  round {round}: ceiling {:.0} msg/s (reader {:.1} CPU us/msg, feed server {:.1}); certwatch {:.0} msg/s = {:.2} of it ({:.1} CPU us/msg, feed server {:.1}, {:.0} dropped)",
            top.rate(),
            Stretch::us_per_message(top.cpu, top.messages),
            Stretch::us_per_message(top.server_cpu, top.messages),
            ours.rate(),
            ours.rate() / top.rate(),
            Stretch::us_per_message(ours.cpu, ours.messages),
            Stretch::us_per_message(ours.server_cpu, ours.messages + ours.dropped),
            ours.dropped,
        );
        round_ratios.push(ours.rate() / top.rate());
        ceiling.add(top);
        certwatch.add(ours);
    }
    drop(reference);
    let ratio = certwatch.rate() / ceiling.rate();
    let cpu_us = Stretch::us_per_message(certwatch.cpu, certwatch.messages);
    println!(
        "ceiling (1 thread: read + parse the needed fields): {:.0} msg/s, {:.1} CPU us/msg",
        ceiling.rate(),
        Stretch::us_per_message(ceiling.cpu, ceiling.messages)
    );
    println!(
        "certwatch flat out: {:.0} msg/s processed ({ratio:.2} of the ceiling; rounds {}), {cpu_us:.1} CPU us/msg, {:.0} dropped of {:.0} read; RSS {:.1} MiB, peak so far {:.1} MiB",
        certwatch.rate(),
        round_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" "),
        certwatch.dropped,
        certwatch.messages + certwatch.dropped,
        service.proc_status_kib("VmRSS") as f64 / 1024.0,
        service.proc_status_kib("VmHWM") as f64 / 1024.0,
    );
    let by_thread: Vec<String> = by_thread
        .into_iter()
        .filter(|(_, cpu)| *cpu > 0.0)
        .map(|(name, cpu)| {
            format!(
                "{name} {:.2}",
                Stretch::us_per_message(cpu, certwatch.messages)
            )
        })
        .collect();
    println!("certwatch CPU us/msg by thread: {}", by_thread.join(", "));
    println!(
        "coverage: {} entries seen in listed logs, {} gap entries, {} unknown-log messages",
        service.metric_sum("certwatch_ct_log_entries_seen_total"),
        service.metric_sum("certwatch_ct_log_gap_entries_total"),
        service.metric("certwatch_ct_unknown_log_messages_total")
    );
    let flat_out_peak_kib = service.proc_status_kib("VmHWM");
    let alerts_flat_out = service.alerts();
    service.stop();

    let paced_refresh = std::env::var("BENCH_REFRESH_S").unwrap_or_else(|_| "1".into());
    let (service, _) = Service::start(
        &bin,
        db.dsn(),
        &feed.url(),
        &sink.url(),
        Some(&paced_refresh),
        &log_list,
    );
    service.wait_loaded(&feed, 2, entries);
    let mut paced = Vec::new();
    for target in [2_000u64, 20_000] {
        let (p0, d0) = (service.processed(), service.dropped());
        let behind0 = feed.counters().behind.load(Ordering::Relaxed);
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
        let behind = feed.counters().behind.load(Ordering::Relaxed) - behind0;
        let (processed, dropped) = (service.processed() - p0, service.dropped() - d0);
        println!(
            "certwatch at {target} msg/s for {paced_seconds}s: sent {sent}, processed {processed:.0}, dropped {dropped:.0}, \
             feed behind {behind}, achieved {:.0} msg/s, longest watch refresh ({entries} entries) {:.0} ms; RSS {:.1} MiB, peak so far {:.1} MiB",
            sent as f64 / paced_seconds as f64,
            longest_refresh * 1000.0,
            service.proc_status_kib("VmRSS") as f64 / 1024.0,
            service.proc_status_kib("VmHWM") as f64 / 1024.0,
        );
        paced.push((target, sent, processed, dropped, longest_refresh));
    }
    let alerts = alerts_flat_out + service.alerts();
    let peak_kib = service.proc_status_kib("VmHWM").max(flat_out_peak_kib);
    println!(
        "alerts {alerts:.0}, webhooks received {}, RSS with {entries} entries: idle {:.1} MiB, peak {:.1} MiB",
        sink.received(),
        idle_loaded_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    service.stop();
    drop(db);

    // 4. Idle with 10,000 entries.
    let small = TestDb::create("bench_idle").expect("database");
    feedgen::watch_generated(&small, 10_000).expect("watch list");
    let idle_feed = PacedFeed::start(generator(10_000), 0).expect("feed");
    let (idle, _) = Service::start(
        &bin,
        small.dsn(),
        &idle_feed.url(),
        &sink.url(),
        None,
        &log_list,
    );
    std::thread::sleep(Duration::from_secs(5));
    let idle_kib = idle.proc_status_kib("VmRSS");
    idle.stop();
    println!(
        "idle RSS with 10000 entries: {:.1} MiB; /healthz answered {:.1} ms after exec",
        idle_kib as f64 / 1024.0,
        ready.as_secs_f64() * 1000.0
    );

    println!();
    println!("targets:");
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
    println!("  (matcher cost per name by list size: cargo bench --bench bench_matcher)");
}
