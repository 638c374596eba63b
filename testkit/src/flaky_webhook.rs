//! A webhook receiver for long fault runs (`FlakyWebhook`, the coverage soak's): it
//! answers a set share of requests with a 500 (chosen by a seeded generator, so a
//! run can be repeated), can be taken down (its port closed and every open
//! connection cut: the sender meets "connection refused") and brought back on the
//! same port, and keeps one small record per request (`Delivery`: delivery id,
//! event, serial, `detected_via`, the status answered), so a run can count the
//! distinct delivery ids each issuance arrived with. HTTP/1.1 with keep-alive,
//! bodies by `Content-Length` or chunked; heads and bodies bounded.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::feed::{POLL, WRITE_TIMEOUT, is_timeout};
use crate::feedgen::XorShift;

/// Largest request head read.
const MAX_HEAD: usize = 64 << 10;
/// Largest request body read.
const MAX_BODY: usize = 4 << 20;

/// One request the receiver read whole.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `X-CT-Delivery` (empty when absent).
    pub delivery_id: String,
    /// `X-CT-Event` (`match`, `resolved`; empty when absent).
    pub event: String,
    /// The body's `serial` (certwatch format), as sent.
    pub serial: Option<String>,
    /// The body's `detected_via`.
    pub detected_via: Option<String>,
    /// The body's `severity`.
    pub severity: Option<String>,
    /// The status answered; 0 when the connection was cut before the answer (the
    /// receiver went down meanwhile).
    pub status: u16,
}

impl Delivery {
    /// Answered with a 2xx: the sender may take it as delivered.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    down: AtomicBool,
    /// Requests answered 500, per thousand.
    fail_per_mille: AtomicU64,
    rng: Mutex<Option<XorShift>>,
    deliveries: Mutex<Vec<Delivery>>,
    requests: AtomicU64,
    failed: AtomicU64,
    cut: AtomicU64,
    connections: AtomicU64,
}

impl Shared {
    /// The status for the next request: 500 for `fail_per_mille` of them.
    fn next_status(&self) -> u16 {
        let per_mille = self.fail_per_mille.load(Ordering::SeqCst);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let roll = rng.as_mut().map_or(1000, |r| r.below(1000));
        if roll < per_mille { 500 } else { 200 }
    }
}

/// A webhook receiver on 127.0.0.1 that fails a share of requests and can be taken
/// down; `Drop` stops it and joins its threads.
pub struct FlakyWebhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FlakyWebhook {
    /// Starts on an ephemeral port, answering `fail_per_mille` of the requests
    /// (0..=1000) with a 500, chosen by a generator seeded with `seed`.
    pub fn start(fail_per_mille: u64, seed: u64) -> io::Result<FlakyWebhook> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared
            .fail_per_mille
            .store(fail_per_mille.min(1000), Ordering::SeqCst);
        *shared.rng.lock().unwrap_or_else(|p| p.into_inner()) = Some(XorShift::new(seed));
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("flaky-webhook-{}", addr.port()))
                .spawn(move || accept_loop(listener, addr, &shared))?
        };
        Ok(FlakyWebhook {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Down: the port is closed (new connections refused) and open connections are
    /// cut, within about 20 ms. Up again: the same port is listened on once more.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Requests answered 500 from now on, per thousand.
    pub fn set_fail_per_mille(&self, per_mille: u64) {
        self.shared
            .fail_per_mille
            .store(per_mille.min(1000), Ordering::SeqCst);
    }

    /// Every request read so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests read whole.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 500 on purpose.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Requests whose connection was cut before the answer (taken down meanwhile).
    pub fn cut(&self) -> u64 {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyWebhook {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("FlakyWebhook: accept thread panicked");
        }
    }
}

fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: &Arc<Shared>) {
    let mut listener = Some(listener);
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        connections.retain(|c| !c.is_finished());
        if shared.down.load(Ordering::SeqCst) {
            // Closed: the kernel refuses new connections; the connection threads
            // cut theirs.
            listener = None;
            thread::sleep(POLL);
            continue;
        }
        let Some(open) = listener.as_ref() else {
            // Up again: the same port (std sets SO_REUSEADDR, so connections of the
            // previous listener in TIME_WAIT do not stand in the way).
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    log::warn!("FlakyWebhook: cannot listen on {addr} again yet: {e}");
                    thread::sleep(POLL);
                }
            }
            continue;
        };
        match open.accept() {
            Ok((stream, peer)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("flaky-webhook-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &shared) {
                            log::debug!("FlakyWebhook: {peer}: {e}");
                        }
                    });
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(e) => log::warn!("FlakyWebhook: cannot spawn a connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(POLL);
            }
            Err(e) => {
                log::warn!("FlakyWebhook: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
    drop(listener);
    for connection in connections {
        let _ = connection.join();
    }
}

/// Why a connection ends early.
enum End {
    /// The client closed it, or the receiver is stopping or going down.
    Closed,
    Failed(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Failed(e)
    }
}

/// Reads into `buffer` until it holds at least `want` bytes; `End::Closed` when the
/// client closed, the receiver stops, or it goes down.
fn fill(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    want: usize,
    shared: &Shared,
) -> Result<(), End> {
    while buffer.len() < want {
        if shared.stop.load(Ordering::SeqCst) || shared.down.load(Ordering::SeqCst) {
            return Err(End::Closed);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(End::Closed),
            Ok(k) => buffer.extend_from_slice(&chunk[..k]),
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(End::Failed(e)),
        }
    }
    Ok(())
}

/// Position just past the first `\r\n\r\n`, reading as needed.
fn head_end(stream: &mut TcpStream, buffer: &mut Vec<u8>, shared: &Shared) -> Result<usize, End> {
    loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(i + 4);
        }
        if buffer.len() > MAX_HEAD {
            return Err(End::Failed(io::Error::other("request head too large")));
        }
        let want = buffer.len() + 1;
        fill(stream, buffer, want, shared)?;
    }
}

/// A chunked body starting at `buffer[0]`: (body, bytes consumed).
fn chunked_body(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    shared: &Shared,
) -> Result<(Vec<u8>, usize), End> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(i) = buffer[at..].windows(2).position(|w| w == b"\r\n") {
                break at + i;
            }
            if buffer.len() - at > 1024 {
                return Err(End::Failed(io::Error::other("chunk size line too long")));
            }
            let want = buffer.len() + 1;
            fill(stream, buffer, want, shared)?;
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| End::Failed(io::Error::other("bad chunk size")))?;
        at = line_end + 2;
        if size == 0 {
            // No trailers from certwatch: the final CRLF.
            fill(stream, buffer, at + 2, shared)?;
            return Ok((body, at + 2));
        }
        if body.len() + size > MAX_BODY {
            return Err(End::Failed(io::Error::other("body too large")));
        }
        fill(stream, buffer, at + size + 2, shared)?;
        body.extend_from_slice(&buffer[at..at + size]);
        at += size + 2;
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let result = serve_requests(&mut stream, shared);
    let _ = stream.shutdown(Shutdown::Both);
    match result {
        Ok(()) | Err(End::Closed) => Ok(()),
        Err(End::Failed(e)) => Err(e),
    }
}

fn serve_requests(stream: &mut TcpStream, shared: &Shared) -> Result<(), End> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let end = head_end(stream, &mut buffer, shared)?;
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        buffer.drain(..end);
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let (body, used) = chunked_body(stream, &mut buffer, shared)?;
            buffer.drain(..used);
            body
        } else {
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if length > MAX_BODY {
                return Err(End::Failed(io::Error::other("body too large")));
            }
            fill(stream, &mut buffer, length, shared)?;
            buffer.drain(..length).collect()
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let mut delivery = Delivery {
            delivery_id: header("x-ct-delivery").unwrap_or_default().to_string(),
            event: header("x-ct-event").unwrap_or_default().to_string(),
            serial: field("serial"),
            detected_via: field("detected_via"),
            severity: field("severity"),
            status: 0,
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if shared.down.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
            shared.cut.fetch_add(1, Ordering::SeqCst);
            record(shared, delivery);
            return Err(End::Closed);
        }
        let status = shared.next_status();
        let (reason, text) = if status == 500 {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            ("Internal Server Error", "failing on purpose\n")
        } else {
            ("OK", "ok\n")
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let written = stream
            .write_all(response.as_bytes())
            .and_then(|()| stream.flush());
        delivery.status = if written.is_ok() { status } else { 0 };
        if written.is_err() {
            shared.cut.fetch_add(1, Ordering::SeqCst);
        }
        record(shared, delivery);
        written?;
        if close {
            return Ok(());
        }
    }
}

fn record(shared: &Shared, delivery: Delivery) {
    shared
        .deliveries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(delivery);
}

/// Waits, bounded, until `webhook` answers a TCP connection (after `set_down(false)`).
pub fn wait_up(webhook: &FlakyWebhook, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&webhook.addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(POLL);
    }
    false
}
