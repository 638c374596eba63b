//! Integration-test support for certwatch: a throwaway PostgreSQL database per test
//! (`TestDb`), an in-process fake certstream WebSocket server (`FakeFeed`), a fake webhook
//! receiver (`FakeWebhook`) and a bounded polling helper (`wait_until`).
//!
//! Every helper is bounded in time and owns its background thread: dropping the handle stops
//! the thread and joins it, so tests can run in parallel in one process without leaking work.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tungstenite::{HandshakeError, Message, WebSocket};

/// Admin DSN used when `CERTWATCH_TEST_ADMIN_DSN` is not set.
pub const DEFAULT_ADMIN_DSN: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// How often background loops look at their stop flag (accept poll, socket read timeout).
const POLL: Duration = Duration::from_millis(20);

/// Upper bound for any single write to a test client, so a client that stops reading cannot
/// wedge a server thread (and therefore `Drop`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on connecting to PostgreSQL when the DSN sets no `connect_timeout` of its own.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `f` every 10 ms until it returns true or `timeout` passes; returns the last result.
/// `f` is always called at least once, and once more at (or just after) the deadline.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

// ---------------------------------------------------------------------------------------------
// TestDb
// ---------------------------------------------------------------------------------------------

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database per test, created from the admin DSN with `schema.sql` applied, and dropped
/// (`WITH (FORCE)`) when the handle drops.
pub struct TestDb {
    name: String,
    dsn: String,
    admin_dsn: String,
}

// No `Default`: creating a database is a side effect that should be spelled `TestDb::new()`.
#[allow(clippy::new_without_default)]
impl TestDb {
    /// Creates `certwatch_test_<pid>_<counter>_<nanos>` and applies
    /// `$CARGO_MANIFEST_DIR/schema.sql`. Panics (never skips) if PostgreSQL is unreachable.
    pub fn new() -> TestDb {
        let admin_dsn = std::env::var("CERTWATCH_TEST_ADMIN_DSN")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN_DSN.to_string());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "certwatch_test_{}_{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let dsn = dsn_with_dbname(&admin_dsn, &name);

        let mut admin = pg_connect(&admin_dsn).unwrap_or_else(|e| {
            panic!(
                "TestDb: cannot connect to PostgreSQL with admin DSN `{admin_dsn}`: {}\n\
                 (start PostgreSQL, or point CERTWATCH_TEST_ADMIN_DSN at a reachable server)",
                pg_err(&e)
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| {
                panic!("TestDb: CREATE DATABASE \"{name}\" failed: {}", pg_err(&e))
            });
        drop(admin);

        // From here on the database exists: if anything below panics, Drop removes it.
        let db = TestDb {
            name,
            dsn,
            admin_dsn,
        };
        let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.sql");
        let schema = std::fs::read_to_string(schema_path)
            .unwrap_or_else(|e| panic!("TestDb: cannot read schema file {schema_path}: {e}"));
        db.client().batch_execute(&schema).unwrap_or_else(|e| {
            panic!(
                "TestDb: applying {schema_path} to {} failed: {}",
                db.name,
                pg_err(&e)
            )
        });
        log::debug!("TestDb: created {}", db.name);
        db
    }

    /// DSN of the test database (the admin DSN with the database name replaced).
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// Name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to the test database on each call.
    pub fn client(&self) -> postgres::Client {
        pg_connect(&self.dsn).unwrap_or_else(|e| {
            panic!(
                "TestDb: cannot connect to test database with DSN `{}`: {}",
                self.dsn,
                pg_err(&e)
            )
        })
    }

    /// Runs `sql` (one or more statements) with `batch_execute`; panics with the SQL on error.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            panic!(
                "TestDb::execute failed on {}: {}\nSQL:\n{sql}",
                self.name,
                pg_err(&e)
            );
        }
    }

    /// Marks `fqdns` as watched:
    /// `INSERT INTO public.intent_current(fqdn) VALUES ... ON CONFLICT DO NOTHING`.
    pub fn watch(&self, fqdns: &[&str]) {
        if fqdns.is_empty() {
            return;
        }
        let placeholders: Vec<String> = (1..=fqdns.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "INSERT INTO public.intent_current(fqdn) VALUES {} ON CONFLICT DO NOTHING",
            placeholders.join(", ")
        );
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = fqdns
            .iter()
            .map(|f| f as &(dyn postgres::types::ToSql + Sync))
            .collect();
        if let Err(e) = self.client().execute(sql.as_str(), &params) {
            panic!(
                "TestDb::watch({fqdns:?}) failed on {}: {}\nSQL: {sql}",
                self.name,
                pg_err(&e)
            );
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Never panic here: a panic while already unwinding would abort the whole test binary.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        match pg_connect(&self.admin_dsn) {
            Ok(mut admin) => match admin.batch_execute(&sql) {
                Ok(()) => log::debug!("TestDb: dropped {}", self.name),
                Err(e) => eprintln!("TestDb: `{sql}` failed: {}", pg_err(&e)),
            },
            Err(e) => eprintln!(
                "TestDb: cannot reconnect to admin DSN `{}` to drop {}: {}",
                self.admin_dsn,
                self.name,
                pg_err(&e)
            ),
        }
    }
}

/// `e` and its whole `source()` chain (postgres' Display alone hides the cause, e.g. ECONNREFUSED
/// or the server's error text).
fn pg_err(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Connects without TLS, with a connect timeout unless the DSN sets one.
fn pg_connect(dsn: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = dsn.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PG_CONNECT_TIMEOUT);
    }
    config.connect(postgres::NoTls)
}

/// Replaces the database name of a URL DSN (`postgres[ql]://…/db?…`) or appends
/// `dbname=` to a key/value DSN (the last occurrence wins).
fn dsn_with_dbname(dsn: &str, dbname: &str) -> String {
    let dsn = dsn.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = dsn.strip_prefix(scheme) {
            let (before_query, query) = match rest.find('?') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = before_query.split('/').next().unwrap_or("");
            return format!("{scheme}{authority}/{dbname}{query}");
        }
    }
    format!("{dsn} dbname={dbname}")
}

// ---------------------------------------------------------------------------------------------
// FakeFeed
// ---------------------------------------------------------------------------------------------

/// A scripted action for the fake certstream server, applied to the current (or next) client.
#[derive(Debug, Clone)]
pub enum FeedCmd {
    /// Send a text frame.
    Text(String),
    /// Send a binary frame.
    Binary(Vec<u8>),
    /// Write raw bytes to the TCP stream (garbage / partial frames).
    Raw(Vec<u8>),
    /// Send a WebSocket close frame and drop the connection.
    Close,
    /// Drop the TCP connection abruptly, no close frame.
    Drop,
}

#[derive(Default)]
struct FeedShared {
    stop: AtomicBool,
    connections: AtomicUsize,
    pings: AtomicUsize,
}

/// An in-process fake certstream server serving one WebSocket client at a time.
pub struct FakeFeed {
    port: u16,
    cmd_tx: Sender<FeedCmd>,
    shared: Arc<FeedShared>,
    thread: Option<JoinHandle<()>>,
}

impl FakeFeed {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> FakeFeed {
        FakeFeed::start_on(0).unwrap_or_else(|e| panic!("FakeFeed: cannot bind 127.0.0.1:0: {e}"))
    }

    /// Starts on `127.0.0.1:<port>` (0 for an ephemeral port).
    pub fn start_on(port: u16) -> io::Result<FakeFeed> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(FeedShared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("fake-feed-{port}"))
            .spawn(move || feed_accept_loop(listener, cmd_rx, thread_shared))?;
        Ok(FakeFeed {
            port,
            cmd_tx,
            shared,
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:<port>/full-stream`
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/full-stream", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queues a command; it is delivered to the current client, or the next one if none is
    /// connected. A command whose write fails because the client went away is discarded.
    pub fn send(&self, cmd: FeedCmd) {
        // The receiver lives as long as the server thread, which lives as long as `self`.
        let _ = self.cmd_tx.send(cmd);
    }

    /// True once at least one client has completed the WebSocket handshake
    /// (same as `wait_for_connections(1, timeout)`).
    pub fn wait_for_client(&self, timeout: Duration) -> bool {
        self.wait_for_connections(1, timeout)
    }

    /// True once at least `n` clients have completed the WebSocket handshake.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.connections() >= n)
    }

    /// How many clients have completed the WebSocket handshake so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// WebSocket ping frames received from clients so far (all connections).
    pub fn pings(&self) -> usize {
        self.shared.pings.load(Ordering::SeqCst)
    }

    /// True once at least `n` pings have been received.
    pub fn wait_for_pings(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.pings() >= n)
    }
}

impl Drop for FakeFeed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("FakeFeed: server thread panicked");
        }
    }
}

fn feed_accept_loop(listener: TcpListener, cmds: Receiver<FeedCmd>, shared: Arc<FeedShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                log::debug!("FakeFeed: TCP connection from {peer}");
                if let Err(e) = feed_serve_client(stream, &cmds, &shared) {
                    log::debug!("FakeFeed: client {peer} ended: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(POLL);
            }
            Err(e) => {
                log::warn!("FakeFeed: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn ws_is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if is_timeout(io))
}

/// Serves one client until it goes away, a `Close`/`Drop` command, or the stop flag.
fn feed_serve_client(
    stream: TcpStream,
    cmds: &Receiver<FeedCmd>,
    shared: &FeedShared,
) -> Result<(), String> {
    let io_err = |e: io::Error| e.to_string();
    stream.set_nonblocking(false).map_err(io_err)?;
    stream.set_read_timeout(Some(POLL)).map_err(io_err)?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;

    // Handshake, resumed after each read timeout so the stop flag is honoured; bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = tungstenite::accept(stream);
    let mut ws: WebSocket<TcpStream> = loop {
        match attempt {
            Ok(ws) => break ws,
            Err(HandshakeError::Interrupted(mid)) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return Err("stopping during handshake".into());
                }
                if Instant::now() >= deadline {
                    return Err("handshake timed out".into());
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => return Err(format!("handshake failed: {e}")),
        }
    };
    shared.connections.fetch_add(1, Ordering::SeqCst);
    log::debug!("FakeFeed: client connected");

    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Apply every queued command, then read (≤ POLL) to count pings and drive pongs.
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                FeedCmd::Text(text) => ws.send(Message::text(text)).map_err(|e| e.to_string())?,
                FeedCmd::Binary(bytes) => {
                    ws.send(Message::binary(bytes)).map_err(|e| e.to_string())?
                }
                FeedCmd::Raw(bytes) => {
                    ws.flush().map_err(|e| e.to_string())?;
                    let raw = ws.get_mut();
                    raw.write_all(&bytes).map_err(io_err)?;
                    raw.flush().map_err(io_err)?;
                }
                FeedCmd::Close => {
                    close_gracefully(&mut ws, shared);
                    return Ok(());
                }
                FeedCmd::Drop => {
                    let _ = ws.get_ref().shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
        }
        match ws.read() {
            Ok(Message::Ping(_)) => {
                shared.pings.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Close(_)) => {
                // Keep driving until tungstenite reports the handshake finished.
                close_gracefully(&mut ws, shared);
                return Ok(());
            }
            Ok(other) => log::debug!("FakeFeed: ignoring client message {other:?}"),
            Err(e) if ws_is_timeout(&e) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends a close frame (if not already sent) and waits, bounded, for the client's reply so
/// the client sees a clean close rather than a reset; then the socket is dropped by the caller.
fn close_gracefully(ws: &mut WebSocket<TcpStream>, shared: &FeedShared) {
    let _ = ws.close(None);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Ping(_)) => {
                shared.pings.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(e) if ws_is_timeout(&e) => {}
            Err(_) => break, // ConnectionClosed (clean) or any error: done either way
        }
    }
    let _ = ws.get_ref().shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// FakeWebhook
// ---------------------------------------------------------------------------------------------

/// One request received by `FakeWebhook`.
#[derive(Debug, Clone)]
pub struct Received {
    /// The client's address: one per TCP connection.
    pub peer: Option<std::net::SocketAddr>,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Left unanswered (`FakeWebhook::hang`): the sender ran into its timeout.
    pub hung: bool,
}

impl Received {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A fake webhook receiver answering each request with the next scripted status (200 when the
/// script is empty).
pub struct FakeWebhook {
    port: u16,
    server: Arc<tiny_http::Server>,
    rx: Receiver<Received>,
    script: Arc<Mutex<VecDeque<u16>>>,
    count: Arc<AtomicUsize>,
    hang: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeWebhook {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> FakeWebhook {
        FakeWebhook::start_on(0)
            .unwrap_or_else(|e| panic!("FakeWebhook: cannot bind 127.0.0.1:0: {e}"))
    }

    /// Starts on `127.0.0.1:<port>` (0 for an ephemeral port).
    pub fn start_on(port: u16) -> io::Result<FakeWebhook> {
        let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("FakeWebhook: server has no IP address"))?;
        let server = Arc::new(server);
        let (tx, rx) = crossbeam_channel::unbounded();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let hang = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = WebhookShared {
                script: Arc::clone(&script),
                count: Arc::clone(&count),
                hang: Arc::clone(&hang),
                stop: Arc::clone(&stop),
            };
            let server = Arc::clone(&server);
            thread::Builder::new()
                .name(format!("fake-webhook-{port}"))
                .spawn(move || webhook_loop(&server, &tx, &shared))?
        };
        Ok(FakeWebhook {
            port,
            server,
            rx,
            script,
            count,
            hang,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queues statuses answered, in order, to the next requests (after any already queued).
    pub fn script(&self, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(statuses.iter().copied());
    }

    /// While on, requests are read (and received, `hung`) but never answered: the
    /// connection stays open until the sender gives up. Off again, new requests are
    /// answered as scripted; the hung ones stay unanswered until the receiver drops.
    pub fn hang(&self, on: bool) {
        self.hang.store(on, Ordering::SeqCst);
    }

    /// The next received request, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Received> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Panics if any request arrives (or is already waiting) within `within`.
    pub fn expect_none(&self, within: Duration) {
        if let Some(r) = self.recv(within) {
            panic!(
                "FakeWebhook: expected no request within {within:?}, got {} {} body: {}",
                r.method,
                r.url,
                String::from_utf8_lossy(&r.body)
            );
        }
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("FakeWebhook: server thread panicked");
        }
    }
}

struct WebhookShared {
    script: Arc<Mutex<VecDeque<u16>>>,
    count: Arc<AtomicUsize>,
    hang: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn webhook_loop(server: &tiny_http::Server, tx: &Sender<Received>, shared: &WebhookShared) {
    // Requests left unanswered while hanging (bounded by what the test sends);
    // dropped (answered 500 by tiny_http) when the receiver stops.
    let mut held: Vec<tiny_http::Request> = Vec::new();
    loop {
        let mut request = match server.recv() {
            Ok(request) => request,
            Err(e) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return; // unblocked by Drop
                }
                log::warn!("FakeWebhook: recv failed: {e}");
                continue;
            }
        };
        let mut body = Vec::new();
        if let Err(e) = request.as_reader().read_to_end(&mut body) {
            log::warn!("FakeWebhook: reading body failed: {e}");
        }
        let hung = shared.hang.load(Ordering::SeqCst);
        let received = Received {
            peer: request.remote_addr().copied(),
            method: request.method().to_string(),
            url: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                .collect(),
            body,
            hung,
        };
        shared.count.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(received);
        if hung {
            held.push(request);
            continue;
        }
        let status = shared
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or(200);
        let response = tiny_http::Response::from_string(format!("status {status}\n"))
            .with_status_code(tiny_http::StatusCode(status));
        if let Err(e) = request.respond(response) {
            log::debug!("FakeWebhook: responding {status} failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ClosingWebhook
// ---------------------------------------------------------------------------------------------

/// A webhook receiver that answers a connection's first request with 200, keeps the
/// connection open without saying it will close it, and closes it unanswered when a
/// second request arrives on it: the race between a receiver's idle timeout and the
/// sender's next request, every time. A fresh connection is always answered.
pub struct ClosingWebhook {
    port: u16,
    rx: Receiver<Received>,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClosingWebhook {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> ClosingWebhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("ClosingWebhook: bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("an address").port();
        let (tx, rx) = crossbeam_channel::unbounded();
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (closed, stop) = (Arc::clone(&closed), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("closing-webhook-{port}"))
                .spawn(move || closing_accept_loop(&listener, &tx, &closed, &stop))
                .expect("spawn")
        };
        ClosingWebhook {
            port,
            rx,
            closed,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The next answered request, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Received> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Requests whose connection was closed unanswered.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for ClosingWebhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("ClosingWebhook: server thread panicked");
        }
    }
}

fn closing_accept_loop(
    listener: &TcpListener,
    tx: &Sender<Received>,
    closed: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (tx, closed, stop) = (tx.clone(), Arc::clone(closed), Arc::clone(stop));
                connections.push(thread::spawn(move || {
                    if let Err(e) = closing_serve(stream, peer, &tx, &closed, &stop) {
                        log::debug!("ClosingWebhook: {peer}: {e}");
                    }
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(POLL);
            }
            Err(e) => {
                log::warn!("ClosingWebhook: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// One connection: the first request answered 200 (kept alive), the second read and
/// the connection closed without an answer.
fn closing_serve(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    tx: &Sender<Received>,
    closed: &AtomicUsize,
    stop: &AtomicBool,
) -> io::Result<()> {
    use std::io::Read;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buffer: Vec<u8> = Vec::new();
    for n in 0.. {
        // The head, then the body by Content-Length; bounded in size.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buffer.len() > 64 << 10 {
                return Err(io::Error::other("head too large"));
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(k) => buffer.extend_from_slice(&chunk[..k]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(k) => buffer.extend_from_slice(&chunk[..k]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        if n > 0 {
            closed.fetch_add(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut parts = request_line.split(' ');
        let _ = tx.send(Received {
            peer: Some(peer),
            method: parts.next().unwrap_or_default().to_string(),
            url: parts.next().unwrap_or_default().to_string(),
            headers,
            body,
            hung: false,
        });
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")?;
        stream.flush()?;
    }
    Ok(())
}

pub mod cluster;
pub mod ctlog;
pub mod service;
pub mod standard_webhooks;
