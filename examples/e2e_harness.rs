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
//! The database comes from the test kit (`certwatch-testkit`).

use certwatch_testkit::db::pg_err;
use certwatch_testkit::service::wait_service;
use certwatch_testkit::{TestDb, wait_until};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

const WEBHOOK_SECRET: &str = "harness-secret";
const GRACE_S: u64 = 2;
/// Poll interval of the fake servers' loops (stop flag, socket reads).
const POLL: Duration = Duration::from_millis(50);

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
    seed(&db)?;
    println!(
        "database {} ready (schema applied, 1 watch entry, 1 inventory row)",
        db.name()
    );

    // 2. The fake feed and webhook receiver (stopped by their Drop).
    let feed = FakeFeed::start(feed_port)?;
    let webhook = FakeWebhook::start(webhook_port)?;

    // 3. The real service, in-process.
    let vars: HashMap<&str, String> = HashMap::from([
        ("POSTGRES_DSN", db.dsn().to_string()),
        (
            "CERTSTREAM_URL",
            format!("ws://127.0.0.1:{feed_port}/full-stream"),
        ),
        (
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{webhook_port}/hook"),
        ),
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
    if !wait_until(Duration::from_secs(15), || feed.connections() >= 1) {
        return Err("the service did not connect to the fake certstream feed within 15s".into());
    }
    println!("certstream client connected; publishing 3 certificates");
    let messages = [
        certificate_update(1001, EVIL_NAME, EVIL_FP, EVIL_SERIAL),
        certificate_update(1002, KNOWN_NAME, KNOWN_FP, KNOWN_SERIAL),
        certificate_update(1003, UNWATCHED_NAME, UNWATCHED_FP, UNWATCHED_SERIAL),
    ];
    for message in &messages {
        feed.send(message.to_string())?;
    }

    // Two webhooks expected (info at once, suspicious after the grace period)...
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match webhook.recv(left) {
            Some(r) => received.push(r),
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
        return Err(format!(
            "unexpected third webhook: {}",
            String::from_utf8_lossy(&extra.body)
        ));
    }

    let (status, healthz) = http_get(&format!("http://{http_addr}/healthz"))?;
    println!("healthz: {status} {}", healthz.trim());
    let (metrics_status, metrics) = http_get(&format!("http://{http_addr}/metrics"))?;
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
        let value = alert_lines
            .iter()
            .find(|l| l.contains(&format!("severity=\"{severity}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
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

/// A certstream-server-go full-stream `certificate_update` for an X.509 (final)
/// certificate with one name.
fn certificate_update(index: u64, name: &str, fingerprint: &str, serial: &str) -> Value {
    let (not_before, not_after) = validity();
    json!({
        "message_type": "certificate_update",
        "data": {
            "update_type": "X509LogEntry",
            "cert_index": index,
            "cert_link": format!(
                "https://ct.harness.test/log2026/ct/v1/get-entries?start={index}&end={index}"
            ),
            "seen": unix_now_f64(),
            "source": {
                "name": "Harness 'Log2026' log",
                "url": "https://ct.harness.test/log2026",
            },
            "leaf_cert": {
                "all_domains": [name],
                "fingerprint": fingerprint,
                "serial_number": serial,
                "not_before": not_before,
                "not_after": not_after,
                "issuer": {
                    "C": "ZZ",
                    "CN": "Fake Issuing CA E1",
                    "O": "Fake CT Test PKI",
                    "aggregated": "/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI",
                },
                "subject": {
                    "CN": name,
                    "aggregated": format!("/CN={name}"),
                },
                "extensions": {
                    "authorityKeyIdentifier":
                        "keyid:cd:82:aa:3d:cb:0d:22:43:d5:45:35:80:bb:5a:8d:9b:f6:32:47:64",
                    "basicConstraints": "CA:FALSE",
                    "subjectAltName": format!("DNS:{name}"),
                },
                "is_ca": false,
            },
        },
    })
}

/// The same 90-day window for every certificate (and the inventory row).
fn validity() -> (i64, i64) {
    let not_before = 1_768_474_800;
    (not_before, not_before + 90 * 86_400)
}

// ---------------------------------------------------------------------------------------
// Throwaway database
// ---------------------------------------------------------------------------------------

/// Schema (applied by `TestDb`), the watch entry and the known certificate.
/// The inventory stores the fingerprint in lowercase without colons: certwatch
/// normalises both sides.
fn seed(db: &TestDb) -> Result<(), String> {
    let mut client = db.try_client()?;
    client
        .execute(
            "INSERT INTO public.intent_current(fqdn) VALUES ($1)",
            &[&"ethereum.org"],
        )
        .map_err(|e| format!("inserting the watch entry: {}", pg_err(&e)))?;
    let fingerprint = KNOWN_FP.replace(':', "").to_lowercase();
    let sans = json!([KNOWN_NAME]).to_string();
    let (not_before, not_after) = validity();
    client
        .execute(
            "INSERT INTO public.certs \
                 (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at) \
             VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7)",
            &[
                &fingerprint,
                &KNOWN_SERIAL,
                &sans,
                &not_before,
                &not_after,
                &"e2e-harness",
                &(unix_now_f64() as i64),
            ],
        )
        .map_err(|e| format!("inserting the inventory row: {}", pg_err(&e)))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fake certstream feed
// ---------------------------------------------------------------------------------------

/// A one-thread WebSocket server that forwards queued text frames to the connected
/// client (one client at a time; a reconnecting client gets what is still queued).
struct FakeFeed {
    tx: Sender<String>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeFeed {
    fn start(port: u16) -> Result<FakeFeed, String> {
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            format!("fake feed: cannot bind 127.0.0.1:{port}: {e} (set HARNESS_FEED_PORT)")
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("fake feed: {e}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            thread::Builder::new()
                .name("fake-feed".into())
                .spawn(move || feed_loop(listener, rx, connections, stop))
                .map_err(|e| format!("fake feed: {e}"))?
        };
        println!("fake certstream feed on ws://127.0.0.1:{port}/full-stream");
        Ok(FakeFeed {
            tx,
            connections,
            stop,
            thread: Some(thread),
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn send(&self, text: String) -> Result<(), String> {
        self.tx
            .send(text)
            .map_err(|_| "the fake feed thread has stopped".to_string())
    }
}

impl Drop for FakeFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn feed_loop(
    listener: TcpListener,
    rx: Receiver<String>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = serve_feed_client(stream, &rx, &connections, &stop) {
                    log::info!("fake feed: client {peer} ended: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(POLL);
            }
            Err(e) => {
                log::warn!("fake feed: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
}

fn serve_feed_client(
    stream: TcpStream,
    rx: &Receiver<String>,
    connections: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    stream.set_nonblocking(false).map_err(io)?;
    // The client sends its upgrade request at once; give the handshake 5 s.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut ws: WebSocket<TcpStream> =
        tungstenite::accept(stream).map_err(|e| format!("handshake failed: {e}"))?;
    ws.get_ref().set_read_timeout(Some(POLL)).map_err(io)?;
    connections.fetch_add(1, Ordering::SeqCst);
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            let _ = ws.close(None);
            let _ = ws.flush();
            break Ok(());
        }
        let mut failed = None;
        while let Ok(text) = rx.try_recv() {
            if let Err(e) = ws.send(Message::text(text)) {
                failed = Some(e.to_string());
                break;
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        // Reading drives the replies to the client's pings and notices a close.
        match ws.read() {
            Ok(Message::Close(_)) => break Ok(()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(tungstenite::Error::ConnectionClosed) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = ws.get_ref().shutdown(NetShutdown::Both);
    result
}

// ---------------------------------------------------------------------------------------
// Fake webhook receiver
// ---------------------------------------------------------------------------------------

struct Received {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny_http server that prints and records every request and answers 200.
struct FakeWebhook {
    server: Arc<tiny_http::Server>,
    rx: Receiver<Received>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeWebhook {
    fn start(port: u16) -> Result<FakeWebhook, String> {
        let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| {
            format!("fake webhook: cannot bind 127.0.0.1:{port}: {e} (set HARNESS_WEBHOOK_PORT)")
        })?;
        let server = Arc::new(server);
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop) = (server.clone(), stop.clone());
            thread::Builder::new()
                .name("fake-webhook".into())
                .spawn(move || webhook_loop(&server, &tx, &stop))
                .map_err(|e| format!("fake webhook: {e}"))?
        };
        println!("fake webhook receiver on http://127.0.0.1:{port}/hook");
        Ok(FakeWebhook {
            server,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    fn recv(&self, timeout: Duration) -> Option<Received> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn webhook_loop(server: &tiny_http::Server, tx: &Sender<Received>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    log::warn!("fake webhook: recv failed: {e}");
                    thread::sleep(POLL);
                }
                continue;
            }
        };
        let mut body = Vec::new();
        if let Err(e) = request.as_reader().read_to_end(&mut body) {
            log::warn!("fake webhook: reading the body failed: {e}");
        }
        let received = Received {
            method: request.method().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                .collect(),
            body,
        };
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
        let _ = tx.send(received);
        if let Err(e) = request.respond(tiny_http::Response::from_string("ok\n")) {
            log::warn!("fake webhook: responding failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// `GET url`: status and body, any status, 5 s timeout.
fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, body))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
