//! `cargo bench --bench bench_tail`: what tailing CT logs directly (`CT_SOURCE=logs`,
//! issue 19) costs. Two parts (`BENCH_TAIL_PARTS`, default `ab`):
//!
//! **a. Per entry, one core.** The tailer's work on every entry, by API: an RFC 6962
//! `get-entries` body of 256 entries (`entry::page_from_get_entries`) and static-ct
//! data tiles (`entry::page_from_tile`) decoded and converted, each entry's leaf
//! hash pushed into a `CompactRange`, and the range's root taken once per page (as
//! a verification does). The entries are the feed fixtures' certificates, encoded
//! by the test kit's fake log (as `bench_backfill`). Entries per second of wall
//! time and per second of the thread's CPU time; target at least 50,000 entries/s
//! per core for each API (PASS/FAIL).
//!
//! **b. Under load.** `BENCH_RFC_LOGS` (24) RFC 6962 and `BENCH_TILED_LOGS` (16)
//! tiled `FakeCtLog`s, as many as Chrome's list has, growing together at
//! `BENCH_RATE` (3,200) entries/s: each log appends and publishes a signed head
//! every `BENCH_PUBLISH_MS` (1,000) on its own staggered timer (a tiled log
//! publishing every second, like Sunlight), mostly unwatched fixture entries
//! with distinct timestamps, and every `BENCH_WATCHED_EVERY_MS` (2,000) a watched
//! certificate of its own (`w<k>.bench-watched.example`, made with rcgen: every
//! other one is in the inventory, an `info` alert; the others are `suspicious`,
//! sent after `SUSPICIOUS_GRACE_S`). The logs are spread over operators as in
//! Chrome's list (`BENCH_OPERATORS=chrome`; `per-log` gives each log an operator
//! of its own, so that certwatch's per-operator pacing is out of the way), and
//! answer `get-entries` with at most as many entries as those operators' logs do
//! (`BENCH_BATCH=real`: Google 32, Cloudflare 1,024, the others 256; or a number
//! for every log). certwatch is the release binary next to this bench (or
//! `CERTWATCH_BIN`), its own process, `CT_SOURCE=logs` and default settings
//! otherwise, with a throwaway database and a webhook receiver. After
//! `BENCH_WARMUP_S` (30) it is measured for `BENCH_SECONDS` (180): CPU
//! (`/proc/<pid>/stat`, % of one core, and by thread), RSS (peak `VmHWM`, steady:
//! the median of one sample a second), the latency from the moment a log
//! publishes a head holding a watched entry to its webhook request arriving
//! (p50, p99, max; by API and severity), and the bytes it read per API
//! (`certwatch_ct_log_bytes_total`) per entry the logs grew by. Targets: at most
//! 10 % of one core, 64 MiB, p50 10 s and p99 30 s for the `info` alerts
//! (PASS/FAIL each). The bench's own threads (the fake logs, the grower) and the
//! whole machine's CPU are printed beside, to show the bench was not the
//! bottleneck. The fake log serves bodies uncompressed, unlike real logs.
//!
//! Everything it starts (the database, the process, the logs, the list file) is
//! removed on every way out, Ctrl-C included; every wait is bounded.

use certwatch::ctlog::LogKind;
use certwatch::ctlog::entry::{self, LogSource};
use certwatch::ctlog::merkle::CompactRange;
use certwatch::ctlog::tiles::DataTile;
use certwatch_testkit::child::Child;
use certwatch_testkit::ctlog::{self as kit, FakeCtLog, FakeEntry};
use certwatch_testkit::probe::{metric_value, try_request};
use certwatch_testkit::{FakeWebhook, TestDb, pki, proc};
use sha1::Digest;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hint::black_box;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    // Ctrl-C or SIGTERM ends the run early through the same clean-up as any other end.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, interrupted.clone()) {
            eprintln!("bench_tail: signal handler not installed: {e}");
        }
    }
    let parts = std::env::var("BENCH_TAIL_PARTS").unwrap_or_else(|_| "ab".into());
    let mut ok = true;
    if parts.contains('a') {
        ok &= per_entry();
    }
    if parts.contains('b') && !interrupted.load(Ordering::SeqCst) {
        match load(&interrupted) {
            Ok(passed) => ok &= passed,
            Err(why) => {
                println!("bench_tail: load part FAILED: {why}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------------
// a. Per entry, one core
// ---------------------------------------------------------------------------------------------

/// Entries per page, as the tailer asks (`get-entries`) and as a full data tile holds.
const PAGE: usize = 256;
/// Pages decoded per round.
const PAGES: usize = 4;
const RUN: Duration = Duration::from_secs(3);
/// Entries per second per core each API must reach.
const TARGET_PER_CORE: f64 = 50_000.0;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The fixture entries, `n` of them in turn, each with a timestamp of its own.
fn fixture_run(fixtures: &[FakeEntry], n: usize, base_ms: u64) -> Vec<FakeEntry> {
    (0..n)
        .map(|i| {
            let mut e = fixtures[i % fixtures.len()].clone();
            e.timestamp_ms = base_ms + i as u64;
            e
        })
        .collect()
}

fn per_entry() -> bool {
    let fixtures: Vec<FakeEntry> = kit::fixture_entries().into_iter().map(|(e, _)| e).collect();
    let entries = fixture_run(&fixtures, PAGE * PAGES, 1_768_000_000_000);
    let bodies: Vec<Vec<u8>> = entries.chunks(PAGE).map(kit::get_entries_body).collect();
    let tiles: Vec<(DataTile, Vec<u8>)> = (0..)
        .map(DataTile::full)
        .zip(kit::full_data_tiles(&entries))
        .collect();
    let rfc = LogSource {
        url: "https://ct.example/log",
        name: "bench",
        kind: LogKind::Rfc6962,
    };
    let tiled = LogSource {
        kind: LogKind::Tiled,
        ..rfc
    };
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    let tile_bytes: usize = tiles.iter().map(|(_, d)| d.len()).sum();
    println!("== a. decode + leaf hash + compact range, one thread ==");
    println!(
        "{} fixture entries ({} distinct certificates) in {PAGES} pages of {PAGE}: get-entries {:.0} bytes/entry (JSON, base64), data tiles {:.0} bytes/entry (uncompressed)",
        entries.len(),
        fixtures.len(),
        body_bytes as f64 / entries.len() as f64,
        tile_bytes as f64 / entries.len() as f64
    );

    let rfc_rate = measure(|| {
        let mut range = CompactRange::new();
        let mut n = 0;
        for (p, body) in bodies.iter().enumerate() {
            let start = (p * PAGE) as u64;
            let page = entry::page_from_get_entries(body, start, PAGE, &rfc).expect("decodes");
            for e in &page {
                range.push(e.leaf_hash.expect("base64"));
                assert!(e.cert.is_ok());
            }
            n += black_box(page).len();
            black_box(range.root());
        }
        n
    });
    let tile_rate = measure(|| {
        let mut range = CompactRange::new();
        let mut n = 0;
        for (tile, data) in &tiles {
            let page = entry::page_from_tile(data, *tile, &tiled).expect("decodes");
            for e in &page {
                range.push(e.leaf_hash.expect("hashed"));
                assert!(e.cert.is_ok());
            }
            n += black_box(page).len();
            black_box(range.root());
        }
        n
    });
    let mut ok = true;
    for (api, (wall, cpu)) in [
        ("rfc6962 page_from_get_entries", rfc_rate),
        ("static-ct page_from_tile     ", tile_rate),
    ] {
        let pass = cpu >= TARGET_PER_CORE;
        ok &= pass;
        println!(
            "  {} {api} + CompactRange::push: {wall:>9.0} entries/s wall, {cpu:>9.0} entries per CPU second ({:.1} us/entry; target >= {TARGET_PER_CORE:.0}/core)",
            verdict(pass),
            1e6 / cpu
        );
    }
    println!();
    ok
}

/// Runs `f` (which returns the entries it handled) repeatedly for `RUN`, after
/// one warm-up call: (entries per wall second, entries per CPU second of this thread).
fn measure(mut f: impl FnMut() -> usize) -> (f64, f64) {
    f();
    let (started, cpu0) = (Instant::now(), thread_cpu());
    let mut entries = 0;
    while started.elapsed() < RUN {
        entries += f();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64().max(1e-9);
    (entries as f64 / wall, entries as f64 / cpu)
}

// ---------------------------------------------------------------------------------------------
// b. Under load
// ---------------------------------------------------------------------------------------------

/// The watch entry every watched certificate is under.
const WATCHED_ZONE: &str = "bench-watched.example";

/// Chrome's list, roughly (2025-2026): operator, RFC 6962 logs, tiled logs,
/// entries a `get-entries` answers at most (Google's logs 32, Cloudflare's 1,024,
/// the others taken as 256).
const CHROME: &[(&str, usize, usize, u64)] = &[
    ("Google", 6, 0, 32),
    ("Cloudflare", 2, 0, 1024),
    ("DigiCert", 4, 0, 256),
    ("Sectigo", 6, 2, 256),
    ("Let's Encrypt", 2, 4, 256),
    ("TrustAsia", 4, 2, 256),
    ("Geomys", 0, 4, 256),
    ("IPng Networks", 0, 4, 256),
];

/// One fake log of the load, and how it grows.
struct Slot {
    log: FakeCtLog,
    tiled: bool,
    operator: String,
    batch: u64,
}

/// The logs' operators and batch caps: Chrome's layout for 24 + 16 logs, else
/// the same operators in turn; `per-log` gives each log an operator of its own.
fn layout(rfc: usize, tiled: usize) -> Vec<(bool, String, u64)> {
    let per_log = std::env::var("BENCH_OPERATORS").as_deref() == Ok("per-log");
    let fixed_batch = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse::<u64>().ok());
    let mut out = Vec::new();
    if rfc == 24 && tiled == 16 {
        for (op, r, _, batch) in CHROME {
            out.extend((0..*r).map(|_| (false, op.to_string(), *batch)));
        }
        for (op, _, t, batch) in CHROME {
            out.extend((0..*t).map(|_| (true, op.to_string(), *batch)));
        }
    } else {
        let rfc_ops: Vec<_> = CHROME.iter().filter(|c| c.1 > 0).collect();
        let tiled_ops: Vec<_> = CHROME.iter().filter(|c| c.2 > 0).collect();
        out.extend((0..rfc).map(|i| {
            let (op, _, _, batch) = rfc_ops[i % rfc_ops.len()];
            (false, op.to_string(), *batch)
        }));
        out.extend((0..tiled).map(|i| {
            let (op, _, _, batch) = tiled_ops[i % tiled_ops.len()];
            (true, op.to_string(), *batch)
        }));
    }
    for (i, (_, op, batch)) in out.iter_mut().enumerate() {
        if per_log {
            *op = format!("{op} {i}");
        }
        if let Some(b) = fixed_batch {
            *batch = b.max(1);
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A watched certificate of the load: its name, entry and whether it is in the inventory.
struct Watched {
    name: String,
    entry: FakeEntry,
    inventoried: bool,
}

/// `n` watched certificates, `w<k>.bench-watched.example`, issued by one CA (its
/// certificate the chain); every other one added to the inventory.
fn watched_certs(db: &TestDb, n: usize) -> Result<Vec<Watched>, String> {
    let ca = pki::ca("Bench CA", "Bench CA R1")?;
    let ca_der = ca.der().to_vec();
    let mut client = db.try_client()?;
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let name = format!("w{k}.{WATCHED_ZONE}");
        let serial = 0x0B00_0000_0000u64 + k as u64;
        let der = pki::leaf(&ca, &name, Some(serial))?;
        let inventoried = k % 2 == 0;
        if inventoried {
            let fingerprint = kit::hex_lower(sha1::Sha1::digest(&der).as_slice());
            let sans = serde_json::json!([name]).to_string();
            client
                .execute(
                    "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
                     VALUES ($1, $2, $3::text::jsonb, 1767225600, 1775001600, 'bench', extract(epoch from now())::bigint)",
                    &[&fingerprint, &format!("{serial:x}"), &sans],
                )
                .map_err(|e| format!("inventory: {e}"))?;
        }
        out.push(Watched {
            name,
            entry: FakeEntry::x509(der, vec![ca_der.clone()], 0),
            inventoried,
        });
    }
    Ok(out)
}

/// When a watched entry's head was published, in which log.
#[derive(Clone, Copy)]
struct Published {
    at: Instant,
    log: usize,
    tiled: bool,
    inventoried: bool,
}

/// A webhook request for a watched name.
#[derive(Clone)]
struct Arrival {
    at: Instant,
    severity: String,
    detected_via: String,
}

/// What the grower thread shares.
#[derive(Default)]
struct Growth {
    published: Mutex<HashMap<String, Published>>,
    /// Ticks that started more than a publish interval late, and the worst lateness.
    late_ticks: AtomicU64,
    worst_late_us: AtomicU64,
    ticks: AtomicU64,
}

/// Background threads of the bench, stopped and joined on every way out.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.handles.drain(..) {
            if handle.join().is_err() {
                eprintln!("bench_tail: a bench thread panicked");
            }
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sleeps `d` in slices, false as soon as `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
    false
}

/// The grower: every log appends and publishes every `publish` on its own timer
/// (staggered across the interval), its share of `rate`; each watched certificate
/// goes, when due, into the next batch of the next log in turn.
#[allow(clippy::too_many_arguments)]
fn grow(
    slots: &[Slot],
    fixtures: &[FakeEntry],
    mut watched: Vec<Watched>,
    rate: f64,
    publish: Duration,
    watched_every: Duration,
    growth: &Growth,
    stop: &AtomicBool,
) {
    let n = slots.len();
    let per_tick = rate / n as f64 * publish.as_secs_f64();
    let started = Instant::now();
    // (Reverse(due), log): the earliest due first.
    let mut heap: BinaryHeap<(std::cmp::Reverse<Instant>, usize)> = (0..n)
        .map(|i| {
            let offset = publish.mul_f64(i as f64 / n as f64);
            (std::cmp::Reverse(started + offset), i)
        })
        .collect();
    let mut carry = vec![0.0f64; n];
    let mut last_ts = vec![0u64; n];
    let mut next_fixture: Vec<usize> = (0..n).map(|i| i * 7).collect();
    let mut pending: Vec<Vec<Watched>> = (0..n).map(|_| Vec::new()).collect();
    let stride = [7usize, 11, 13, 17]
        .into_iter()
        .find(|s| !n.is_multiple_of(*s))
        .unwrap_or(1);
    let mut watched_due = started + watched_every;
    let mut watched_k = 0usize;
    watched.reverse();
    while !stop.load(Ordering::SeqCst) {
        let Some((std::cmp::Reverse(due), i)) = heap.pop() else {
            return;
        };
        let now = Instant::now();
        if due > now && !nap(due - now, stop) {
            return;
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        growth
            .worst_late_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        if late > publish {
            growth.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        while now >= watched_due {
            if let Some(w) = watched.pop() {
                pending[(watched_k * stride) % n].push(w);
                watched_k += 1;
            }
            watched_due += watched_every;
        }
        carry[i] += per_tick;
        let count = carry[i] as usize;
        carry[i] -= count as f64;
        let mut batch: Vec<FakeEntry> = (0..count)
            .map(|_| {
                let e = fixtures[next_fixture[i] % fixtures.len()].clone();
                next_fixture[i] += 1;
                e
            })
            .collect();
        let mine = std::mem::take(&mut pending[i]);
        for (j, w) in mine.iter().enumerate() {
            let at = (j * 37 + count / 2) % (batch.len() + 1);
            batch.insert(at, w.entry.clone());
        }
        let wall = now_ms();
        for e in &mut batch {
            last_ts[i] = (last_ts[i] + 1).max(wall);
            e.timestamp_ms = last_ts[i];
        }
        let slot = &slots[i];
        slot.log.append(batch);
        slot.log.publish();
        let at = Instant::now();
        if !mine.is_empty() {
            let mut published = growth.published.lock().unwrap_or_else(|p| p.into_inner());
            for w in mine {
                published.insert(
                    w.name,
                    Published {
                        at,
                        log: i,
                        tiled: slot.tiled,
                        inventoried: w.inventoried,
                    },
                );
            }
        }
        growth.ticks.fetch_add(1, Ordering::Relaxed);
        // Behind by more than an interval: start again from now rather than burst.
        let next = if due + publish < at {
            at + publish
        } else {
            due + publish
        };
        heap.push((std::cmp::Reverse(next), i));
    }
}

/// The webhook collector: every request's arrival time, by the watched name it is for.
fn collect(
    hook: &FakeWebhook,
    arrivals: &Mutex<HashMap<String, Arrival>>,
    others: &AtomicU64,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let Some(received) = hook.recv(Duration::from_millis(100)) else {
            continue;
        };
        let at = Instant::now();
        let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap_or_default();
        let names: Vec<String> = body["matched_sans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        let mut counted = false;
        let mut arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if name.ends_with(WATCHED_ZONE) {
                counted = true;
                arrivals.entry(name).or_insert_with(|| Arrival {
                    at,
                    severity: body["severity"].as_str().unwrap_or("?").to_string(),
                    detected_via: body["detected_via"].as_str().unwrap_or("?").to_string(),
                });
            }
        }
        if !counted {
            others.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The certwatch process: its address, and the lines of its standard error.
struct Service {
    child: Child,
    /// The thread reading its standard error (ends with the process).
    stderr: Option<JoinHandle<()>>,
    addr: String,
    errors: Arc<Mutex<Vec<String>>>,
    warnings: Arc<Mutex<Vec<String>>>,
    error_count: Arc<AtomicU64>,
    warn_count: Arc<AtomicU64>,
}

impl Service {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn metrics(&self) -> String {
        try_request(&format!("http://{}/metrics", self.addr), "GET")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn healthz(&self) -> String {
        try_request(&format!("http://{}/healthz", self.addr), "GET")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn cpu_ticks(&self) -> u64 {
        proc::process_cpu_ticks_of(&self.pid())
    }

    /// CPU ticks by thread name, `tail-12` counted as `tail`.
    fn thread_ticks(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, ticks) in proc::thread_cpu_ticks_of(&self.pid()).into_values() {
            let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            *out.entry(name.to_string()).or_insert(0) += ticks;
        }
        out
    }
}

/// The certwatch binary under test.
fn binary() -> Result<std::path::PathBuf, String> {
    let path = std::env::var_os("CERTWATCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_certwatch")));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("no certwatch binary at {}", path.display()))
    }
}

fn start_service(
    bin: &std::path::Path,
    db: &TestDb,
    list: &std::path::Path,
    hook: &FakeWebhook,
) -> Result<Service, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("POSTGRES_DSN", db.dsn())
        .env("CT_SOURCE", "logs")
        .env("CT_LOG_LIST", list)
        .env("WEBHOOK_URL", hook.url())
        .env("API_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // The allocator's own settings, passed through for investigation.
    for (name, value) in std::env::vars().filter(|(n, _)| n.starts_with("MIMALLOC_")) {
        command.env(name, value);
    }
    let (child, lines) = Child::spawn_with_stderr_lines(&mut command);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let error_count = Arc::new(AtomicU64::new(0));
    let warn_count = Arc::new(AtomicU64::new(0));
    let stderr = {
        let (errors, warnings, error_count, warn_count) = (
            errors.clone(),
            warnings.clone(),
            error_count.clone(),
            warn_count.clone(),
        );
        // Every line also to `BENCH_CERTWATCH_LOG`, when set (for investigation).
        let mut copy = std::env::var_os("BENCH_CERTWATCH_LOG").and_then(|path| {
            std::fs::File::create(&path)
                .map_err(|e| eprintln!("bench_tail: BENCH_CERTWATCH_LOG: {e}"))
                .ok()
        });
        // Ends with the process's standard error.
        std::thread::Builder::new()
            .name("certwatch-stderr".into())
            .spawn(move || {
                for line in lines {
                    if let Some(file) = &mut copy {
                        use std::io::Write;
                        let _ = writeln!(file, "{line}");
                    }
                    let (list, count) = if line.contains(" ERROR ") {
                        (&errors, &error_count)
                    } else if line.contains(" WARN ") {
                        (&warnings, &warn_count)
                    } else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
                    if list.len() < 12 {
                        list.push(line);
                    }
                }
            })
            .map_err(|e| e.to_string())?
    };
    let service = Service {
        stderr: Some(stderr),
        child,
        addr: format!("127.0.0.1:{port}"),
        errors,
        warnings,
        error_count,
        warn_count,
    };
    let started = Instant::now();
    while try_request(&format!("http://{}/healthz", service.addr), "GET").is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err("certwatch's /healthz did not answer within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(service)
}

/// p-th percentile (0..=100) of sorted `values`, nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Per log: `certwatch_ct_log_bytes_total`, requests by outcome, verified and head size.
#[derive(Default, Clone, Copy, Debug)]
struct LogSample {
    bytes: f64,
    ok: f64,
    rate_limited: f64,
    error: f64,
    verified: f64,
    head: f64,
}

fn log_sample(metrics: &str, url: &str) -> LogSample {
    let get = |series: String| metric_value(metrics, &series).unwrap_or(0.0);
    LogSample {
        bytes: get(format!("certwatch_ct_log_bytes_total{{log=\"{url}\"}}")),
        ok: get(format!(
            "certwatch_ct_log_requests_total{{log=\"{url}\",outcome=\"ok\"}}"
        )),
        rate_limited: get(format!(
            "certwatch_ct_log_requests_total{{log=\"{url}\",outcome=\"rate_limited\"}}"
        )),
        error: get(format!(
            "certwatch_ct_log_requests_total{{log=\"{url}\",outcome=\"error\"}}"
        )),
        verified: get(format!("certwatch_ct_log_verified_size{{log=\"{url}\"}}")),
        head: get(format!("certwatch_ct_log_head_size{{log=\"{url}\"}}")),
    }
}

fn load(interrupted: &Arc<AtomicBool>) -> Result<bool, String> {
    let rfc_logs = env_or("BENCH_RFC_LOGS", 24) as usize;
    let tiled_logs = env_or("BENCH_TILED_LOGS", 16) as usize;
    let rate = env_or("BENCH_RATE", 3_200) as f64;
    let seconds = env_or("BENCH_SECONDS", 180);
    let warmup = env_or("BENCH_WARMUP_S", 30);
    let publish = Duration::from_millis(env_or("BENCH_PUBLISH_MS", 1_000).max(10));
    let watched_every = Duration::from_millis(env_or("BENCH_WATCHED_EVERY_MS", 2_000).max(10));
    let initial = env_or("BENCH_INITIAL", 1_000) as usize;
    let drain = Duration::from_secs(env_or("BENCH_DRAIN_S", 60));
    let n_logs = rfc_logs + tiled_logs;
    if n_logs == 0 {
        return Err("no logs (BENCH_RFC_LOGS and BENCH_TILED_LOGS are 0)".into());
    }
    let bin = binary()?;
    println!("== b. {n_logs} logs growing at {rate:.0} entries/s, certwatch CT_SOURCE=logs ==");
    println!(
        "binary {}; {rfc_logs} RFC 6962 + {tiled_logs} tiled logs, {initial} entries each at start, \
         each publishing every {} ms; a watched certificate every {} ms; warm-up {warmup} s, measured {seconds} s",
        bin.display(),
        publish.as_millis(),
        watched_every.as_millis()
    );

    let db = TestDb::create("bench_tail")?;
    db.watch(&[WATCHED_ZONE]);
    let window_watched =
        (warmup + seconds + drain.as_secs() + 10) * 1000 / watched_every.as_millis() as u64;
    let watched = watched_certs(&db, window_watched as usize + 4)?;

    let fixtures: Vec<FakeEntry> = kit::fixture_entries().into_iter().map(|(e, _)| e).collect();
    let base = now_ms() - 3_600_000;
    let slots: Vec<Slot> = layout(rfc_logs, tiled_logs)
        .into_iter()
        .enumerate()
        .map(|(i, (tiled, operator, batch))| {
            let log = FakeCtLog::start(fixture_run(
                &fixtures,
                initial,
                base + (i as u64) * 10_000_000,
            ));
            log.set_max_batch(batch);
            Slot {
                log,
                tiled,
                operator,
                batch,
            }
        })
        .collect();
    let operators: Vec<String> = {
        let mut ops: Vec<String> = Vec::new();
        for s in &slots {
            if !ops.contains(&s.operator) {
                ops.push(s.operator.clone());
            }
        }
        ops
    };
    // Per log, the name without its number (`BENCH_OPERATORS=per-log` numbers them).
    let family = |op: &str| {
        op.trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ')
            .to_string()
    };
    let mut families: Vec<String> = Vec::new();
    for s in &slots {
        if !families.contains(&family(&s.operator)) {
            families.push(family(&s.operator));
        }
    }
    println!(
        "operators ({}): {}",
        if operators.len() == n_logs {
            "BENCH_OPERATORS=per-log: each log an operator of its own"
        } else {
            "as in Chrome's list"
        },
        families
            .iter()
            .map(|fam| {
                let of: Vec<&Slot> = slots
                    .iter()
                    .filter(|s| &family(&s.operator) == fam)
                    .collect();
                let rfc = of.iter().filter(|s| !s.tiled).count();
                let tiled = of.len() - rfc;
                match of.iter().find(|s| !s.tiled).map(|s| s.batch) {
                    Some(b) => format!("{fam} {rfc}+{tiled} (get-entries <= {b})"),
                    None => format!("{fam} {rfc}+{tiled}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let list_json = kit::log_list_mixed(
        &slots
            .iter()
            .map(|s| (&s.log, s.tiled, s.operator.as_str()))
            .collect::<Vec<_>>(),
    );
    let list = TempFile(
        std::env::temp_dir().join(format!("certwatch-bench-tail-{}.json", std::process::id())),
    );
    std::fs::write(&list.0, list_json).map_err(|e| format!("log list: {e}"))?;
    let hook = Arc::new(FakeWebhook::start());
    let slots = Arc::new(slots);

    let mut service = start_service(&bin, &db, &list.0, &hook)?;
    println!("certwatch pid {} on {}", service.pid(), service.addr);
    // Every log read from its head, verified, before the logs grow.
    let started = Instant::now();
    loop {
        let metrics = service.metrics();
        let ready = slots
            .iter()
            .filter(|s| log_sample(&metrics, &s.log.url()).verified >= initial as f64)
            .count();
        if ready == n_logs {
            println!(
                "all {n_logs} logs verified at their heads {:.1} s after start",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if started.elapsed() > Duration::from_secs(90) {
            return Err(format!(
                "only {ready} of {n_logs} logs verified at their heads after 90 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    let growth = Arc::new(Growth::default());
    let arrivals: Arc<Mutex<HashMap<String, Arrival>>> = Arc::default();
    let others = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Threads {
        stop: stop.clone(),
        handles: Vec::new(),
    };
    {
        let (hook, arrivals, others, stop) =
            (hook.clone(), arrivals.clone(), others.clone(), stop.clone());
        threads.handles.push(
            std::thread::Builder::new()
                .name("hook-collect".into())
                .spawn(move || collect(&hook, &arrivals, &others, &stop))
                .map_err(|e| e.to_string())?,
        );
    }
    {
        let (slots, growth, stop) = (slots.clone(), growth.clone(), stop.clone());
        let fixtures = fixtures.clone();
        threads.handles.push(
            std::thread::Builder::new()
                .name("grow".into())
                .spawn(move || {
                    grow(
                        &slots,
                        &fixtures,
                        watched,
                        rate,
                        publish,
                        watched_every,
                        &growth,
                        &stop,
                    )
                })
                .map_err(|e| e.to_string())?,
        );
    }
    let grow_started = Instant::now();
    if !nap(Duration::from_secs(warmup), interrupted) {
        return Err("interrupted".into());
    }

    // The measured window.
    let metrics0 = service.metrics();
    let samples0: Vec<LogSample> = slots
        .iter()
        .map(|s| log_sample(&metrics0, &s.log.url()))
        .collect();
    let sizes0: Vec<u64> = slots.iter().map(|s| s.log.tree_size()).collect();
    let hits0 = path_hits(&slots);
    let (cpu0, threads0) = (service.cpu_ticks(), service.thread_ticks());
    let own0 = own_thread_ticks();
    let machine0 = machine_jiffies();
    let window_start = Instant::now();
    let mut rss = Vec::new();
    let mut peak_sampled = 0u64;
    while window_start.elapsed() < Duration::from_secs(seconds) {
        if interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if service.child.try_status().is_some() {
            return Err("certwatch exited during the run".into());
        }
        let kib = proc::proc_status_kib_of(&service.pid(), "VmRSS");
        peak_sampled = peak_sampled.max(kib);
        rss.push(kib);
        std::thread::sleep(Duration::from_secs(1));
    }
    let window = window_start.elapsed().as_secs_f64();
    let (cpu1, threads1) = (service.cpu_ticks(), service.thread_ticks());
    let own1 = own_thread_ticks();
    let machine1 = machine_jiffies();
    let metrics1 = service.metrics();
    let samples1: Vec<LogSample> = slots
        .iter()
        .map(|s| log_sample(&metrics1, &s.log.url()))
        .collect();
    let sizes1: Vec<u64> = slots.iter().map(|s| s.log.tree_size()).collect();
    let hits1 = path_hits(&slots);
    let window_end = Instant::now();

    // The watched entries published in the window, and their deliveries: the
    // logs keep growing meanwhile (a tiled log's last tile fills), at most `drain`.
    let in_window = |p: &Published| p.at >= window_start && p.at <= window_end;
    let window_published = || -> Vec<(String, Published)> {
        growth
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, p)| in_window(p))
            .map(|(n, p)| (n.clone(), *p))
            .collect()
    };
    let drain_started = Instant::now();
    let missing = loop {
        let published = window_published();
        let arrived = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let missing: Vec<(String, Published)> = published
            .into_iter()
            .filter(|(n, _)| !arrived.contains_key(n))
            .collect();
        if missing.is_empty()
            || drain_started.elapsed() >= drain
            || interrupted.load(Ordering::SeqCst)
        {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let drained = drain_started.elapsed().as_secs_f64();
    let healthz = service.healthz();
    let peak_kib = proc::proc_status_kib_of(&service.pid(), "VmHWM");
    let final_metrics = service.metrics();
    threads.stop();
    let grown = grow_started.elapsed().as_secs_f64();

    // ---- figures ----
    let cpu_pct = (cpu1 - cpu0) as f64 / proc::USER_HZ as f64 / window * 100.0;
    let entries_window: u64 = sizes1.iter().zip(&sizes0).map(|(a, b)| a - b).sum();
    println!();
    println!(
        "window {window:.0} s: the logs grew by {entries_window} entries ({:.0}/s); the grower ran {grown:.0} s, {} ticks, {} more than an interval late (worst {:.0} ms)",
        entries_window as f64 / window,
        growth.ticks.load(Ordering::Relaxed),
        growth.late_ticks.load(Ordering::Relaxed),
        growth.worst_late_us.load(Ordering::Relaxed) as f64 / 1000.0
    );
    let (busy, total) = (machine1.0 - machine0.0, machine1.1 - machine0.1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine ({cores} CPUs) busy {:.0} % of its capacity over the window (certwatch, this bench, Postgres, everything)",
        busy as f64 / total.max(1) as f64 * 100.0
    );
    let mut own: BTreeMap<String, u64> = BTreeMap::new();
    for (name, ticks) in &own1 {
        let before = own0.get(name).copied().unwrap_or(0);
        *own.entry(name.clone()).or_insert(0) += ticks.saturating_sub(before);
    }
    let own_total: u64 = own.values().sum();
    let mut own_sorted: Vec<(String, u64)> = own.into_iter().filter(|(_, t)| *t > 0).collect();
    own_sorted.sort_by_key(|b| std::cmp::Reverse(b.1));
    println!(
        "this bench's own CPU: {:.1} % of one core ({})",
        own_total as f64 / proc::USER_HZ as f64 / window * 100.0,
        own_sorted
            .iter()
            .take(6)
            .map(|(n, t)| format!(
                "{n} {:.1} %",
                *t as f64 / proc::USER_HZ as f64 / window * 100.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut by_thread: Vec<(String, u64)> = threads1
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.saturating_sub(threads0.get(n).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, t)| *t > 0)
        .collect();
    by_thread.sort_by_key(|b| std::cmp::Reverse(b.1));
    println!(
        "certwatch CPU {cpu_pct:.1} % of one core ({:.1} CPU us per entry); by thread: {}",
        (cpu1 - cpu0) as f64 / proc::USER_HZ as f64 * 1e6 / entries_window.max(1) as f64,
        by_thread
            .iter()
            .map(|(n, t)| format!(
                "{n} {:.1} %",
                *t as f64 / proc::USER_HZ as f64 / window * 100.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    rss.sort_unstable();
    let steady_kib = rss.get(rss.len() / 2).copied().unwrap_or(0);
    println!(
        "certwatch RSS: steady (median of {} samples) {:.1} MiB, largest sampled {:.1} MiB, peak (VmHWM, whole run) {:.1} MiB",
        rss.len(),
        steady_kib as f64 / 1024.0,
        peak_sampled as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );

    // Bytes and requests per API.
    for tiled in [false, true] {
        let api = if tiled { "static-ct" } else { "RFC 6962" };
        let idx: Vec<usize> = (0..n_logs).filter(|&i| slots[i].tiled == tiled).collect();
        if idx.is_empty() {
            continue;
        }
        let entries: u64 = idx.iter().map(|&i| sizes1[i] - sizes0[i]).sum();
        let d = |f: fn(&LogSample) -> f64| -> f64 {
            idx.iter().map(|&i| f(&samples1[i]) - f(&samples0[i])).sum()
        };
        let bytes = d(|s| s.bytes);
        let (ok, limited, errors) = (d(|s| s.ok), d(|s| s.rate_limited), d(|s| s.error));
        let behind_max = idx
            .iter()
            .map(|&i| sizes1[i] as f64 - samples1[i].verified)
            .fold(0.0, f64::max);
        let head_behind_max = idx
            .iter()
            .map(|&i| sizes1[i] as f64 - samples1[i].head)
            .fold(0.0, f64::max);
        let behind_logs: Vec<String> = idx
            .iter()
            .filter(|&&i| sizes1[i] as f64 - samples1[i].verified > 1_000.0)
            .map(|&i| format!("{} ({})", i, slots[i].operator))
            .collect();
        println!(
            "{api}: {} logs grew {entries} entries; certwatch read {:.1} MB = {:.0} bytes/entry (uncompressed: the fake log does not gzip), \
             {:.0} requests ({:.1}/s per log; {ok:.0} ok, {limited:.0} rate limited, {errors:.0} error); \
             at the end, behind the log's size: its newest head seen at most {head_behind_max:.0}, its verified size at most {behind_max:.0} entries{}",
            idx.len(),
            bytes / 1e6,
            bytes / entries.max(1) as f64,
            ok + limited + errors,
            (ok + limited + errors) / window / idx.len() as f64,
            if behind_logs.is_empty() {
                String::new()
            } else {
                format!("; over 1,000 behind: logs {}", behind_logs.join(", "))
            }
        );
    }

    // What the fake logs were asked, by path, in the window.
    for tiled in [false, true] {
        let paths: &[&str] = if tiled { TILED_PATHS } else { RFC_PATHS };
        let logs = slots.iter().filter(|s| s.tiled == tiled).count().max(1) as f64;
        let counts: Vec<String> = paths
            .iter()
            .enumerate()
            .map(|(k, path)| {
                let n: usize = (0..n_logs)
                    .filter(|&i| slots[i].tiled == tiled)
                    .map(|i| hits1[i][k] - hits0[i][k])
                    .sum();
                format!("{path} {:.2}/s", n as f64 / window / logs)
            })
            .collect();
        println!(
            "  asked per {} log: {}",
            if tiled { "tiled" } else { "RFC 6962" },
            counts.join(", ")
        );
    }

    // Latency.
    let published = window_published();
    let arrived = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut info_all = Vec::new();
    let mut groups: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut by_operator: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut wrong_via = 0;
    for (name, p) in &published {
        let api = if p.tiled { "static-ct" } else { "RFC 6962" };
        let severity = if p.inventoried { "info" } else { "suspicious" };
        // Never delivered: an infinite latency, so that it counts in the percentiles.
        let latency = arrived.get(name).map_or(f64::INFINITY, |a| {
            a.at.saturating_duration_since(p.at).as_secs_f64()
        });
        if let Some(a) = arrived.get(name)
            && a.detected_via != "log"
        {
            wrong_via += 1;
        }
        if let Some(a) = arrived.get(name)
            && a.severity != severity
        {
            println!(
                "  note: {name} arrived as {} (expected {severity})",
                a.severity
            );
        }
        groups.entry((severity, api)).or_default().push(latency);
        if p.inventoried {
            info_all.push(latency);
            by_operator
                .entry(family(&slots[p.log].operator))
                .or_default()
                .push(latency);
        }
    }
    println!(
        "watched entries published in the window: {}; delivered {} (waited {drained:.0} s after the window for the last), missing {}; {} other webhook requests; {} not detected_via=log",
        published.len(),
        published.len() - missing.len(),
        missing.len(),
        others.load(Ordering::Relaxed),
        wrong_via
    );
    for (name, p) in missing.iter().take(5) {
        println!(
            "  missing: {name} in log {} ({}, {})",
            p.log,
            if p.tiled { "tiled" } else { "RFC 6962" },
            slots[p.log].operator
        );
    }
    println!("publish-to-webhook latency, s (p50 / p99 / max, n; inf: never delivered):");
    for ((severity, api), mut values) in groups {
        values.sort_by(f64::total_cmp);
        println!(
            "  {severity:<10} {api:<9}: {:>6.2} / {:>6.2} / {:>6.2}  (n={})",
            percentile(&values, 50.0),
            percentile(&values, 99.0),
            values.last().copied().unwrap_or(f64::NAN),
            values.len()
        );
    }
    info_all.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&info_all, 50.0),
        percentile(&info_all, 99.0),
        info_all.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "  info, both APIs : {p50:>6.2} / {p99:>6.2} / {max:>6.2}  (n={})",
        info_all.len()
    );
    println!(
        "  info, by operator (p50 / max, n): {}",
        by_operator
            .into_iter()
            .map(|(op, mut v)| {
                v.sort_by(f64::total_cmp);
                format!(
                    "{op} {:.1} / {:.1} ({})",
                    percentile(&v, 50.0),
                    v.last().copied().unwrap_or(f64::NAN),
                    v.len()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let detection_sum = metric_value(
        &final_metrics,
        "certwatch_detection_latency_seconds_sum{detected_via=\"log\"}",
    )
    .unwrap_or(0.0);
    let detection_count = metric_value(
        &final_metrics,
        "certwatch_detection_latency_seconds_count{detected_via=\"log\"}",
    )
    .unwrap_or(0.0);
    println!(
        "certwatch_detection_latency_seconds{{detected_via=\"log\"}} (entry's CT timestamp to alert row, whole run): mean {:.2} s over {detection_count:.0}",
        detection_sum / detection_count.max(1.0)
    );
    let failures: Vec<&str> = final_metrics
        .lines()
        .filter(|l| {
            l.starts_with("certwatch_ct_log_verification_failures_total") && !l.ends_with(" 0")
        })
        .collect();
    println!(
        "verification failures: {}; certwatch logged {} ERROR and {} WARN lines",
        if failures.is_empty() {
            "none".to_string()
        } else {
            failures.join("; ")
        },
        service.error_count.load(Ordering::Relaxed),
        service.warn_count.load(Ordering::Relaxed)
    );
    for line in service
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .chain(
            service
                .warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter(),
        )
        .take(8)
    {
        println!("  {line}");
    }
    println!("/healthz at the end: {}", healthz.trim());
    println!(
        "feed gauges in logs mode: certwatch_ws_connected {}, certwatch_last_ct_event_timestamp_seconds {}",
        metric_value(&final_metrics, "certwatch_ws_connected").unwrap_or(f64::NAN),
        metric_value(&final_metrics, "certwatch_last_ct_event_timestamp_seconds")
            .unwrap_or(f64::NAN)
    );
    println!(
        "bench process RSS {:.0} MiB (the fake logs keep every entry)",
        proc::rss_kib() as f64 / 1024.0
    );

    println!();
    println!("targets (CT_SOURCE=logs, {n_logs} logs, {rate:.0} entries/s):");
    let cpu_ok = cpu_pct <= 10.0;
    let rss_ok = peak_kib <= 64 * 1024;
    // A watched entry never delivered counts as an infinite latency (in p50 and p99).
    let p50_ok = !info_all.is_empty() && p50 <= 10.0;
    let p99_ok = !info_all.is_empty() && p99 <= 30.0;
    println!(
        "  {} CPU <= 10 % of one core: {cpu_pct:.1} %",
        verdict(cpu_ok)
    );
    println!(
        "  {} peak RSS <= 64 MiB: {:.1} MiB (steady {:.1} MiB)",
        verdict(rss_ok),
        peak_kib as f64 / 1024.0,
        steady_kib as f64 / 1024.0
    );
    println!(
        "  {} publish-to-webhook p50 <= 10 s (info alerts): {p50:.2} s{}",
        verdict(p50_ok),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" ({} watched entries never delivered)", missing.len())
        }
    );
    println!(
        "  {} publish-to-webhook p99 <= 30 s (info alerts): {p99:.2} s (max {max:.2} s)",
        verdict(p99_ok)
    );
    let status = service.child.terminate(Duration::from_secs(40));
    println!("certwatch stopped: {status}");
    if let Some(reader) = service.stderr.take() {
        let _ = reader.join();
    }
    drop(hook);
    drop(slots);
    drop(db);
    drop(list);
    Ok(cpu_ok && rss_ok && p50_ok && p99_ok)
}

/// The paths an RFC 6962 log is asked for, and a tiled log's (as `FakeCtLog::hits` counts them).
const RFC_PATHS: &[&str] = &[
    "ct/v1/get-sth",
    "ct/v1/get-entries",
    "ct/v1/get-sth-consistency",
    "ct/v1/get-proof-by-hash",
];
const TILED_PATHS: &[&str] = &["checkpoint", "tile/data/", "tile/0/", "tile/1/", "issuer/"];

/// Requests each log received so far, by the path of its API (`RFC_PATHS`, `TILED_PATHS`).
fn path_hits(slots: &[Slot]) -> Vec<Vec<usize>> {
    slots
        .iter()
        .map(|s| {
            let paths = if s.tiled { TILED_PATHS } else { RFC_PATHS };
            paths.iter().map(|p| s.log.hits(p)).collect()
        })
        .collect()
}

/// This process's threads' CPU ticks by name (digits and dashes at the end dropped).
fn own_thread_ticks() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (name, ticks) in proc::thread_cpu_ticks().into_values() {
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *out.entry(name.to_string()).or_insert(0) += ticks;
    }
    out
}
