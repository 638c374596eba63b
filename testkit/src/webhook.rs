//! A fake webhook receiver (`FakeWebhook`): tiny_http on 127.0.0.1 that hands every
//! request (`Received`) to the test through a channel and answers with scripted statuses;
//! and `WebhookSink`, the same receiver for long runs, which keeps counts instead of
//! requests.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use crate::feed::{POLL, WRITE_TIMEOUT, is_timeout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

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

    /// The JSON bodies that mention `name` received within `within` (others are
    /// taken and passed over), each with when it came; returns at the first one
    /// when `first` is set.
    pub fn mentioning(
        &self,
        name: &str,
        within: Duration,
        first: bool,
    ) -> Vec<(std::time::Instant, serde_json::Value)> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Some(rx) = self.recv(left) else { break };
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&rx.body) else {
                continue;
            };
            if body.to_string().contains(name) {
                out.push((std::time::Instant::now(), body));
                if first {
                    break;
                }
            }
        }
        out
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

// ---------------------------------------------------------------------------------------------
// WebhookSink
// ---------------------------------------------------------------------------------------------

/// Counters of a [`WebhookSink`].
#[derive(Default, Debug)]
pub struct WebhookCounters {
    pub requests: AtomicU64,
    pub info: AtomicU64,
    pub suspicious: AtomicU64,
    pub bytes: AtomicU64,
}

/// A [`FakeWebhook`] (answering 200) whose requests are counted, with the severity of
/// certwatch bodies, and dropped: memory stays flat however long it runs.
pub struct WebhookSink {
    hook: Option<FakeWebhook>,
    counters: Arc<WebhookCounters>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookSink {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> Result<WebhookSink, String> {
        let hook = FakeWebhook::start_on(0).map_err(|e| format!("webhook sink: {e}"))?;
        let rx = hook.rx.clone();
        let counters = Arc::new(WebhookCounters::default());
        let thread = {
            let counters = Arc::clone(&counters);
            thread::Builder::new()
                .name("webhook-sink".into())
                // Ends when the receiver's thread, the channel's sender, stops.
                .spawn(move || {
                    for received in rx {
                        count(&counters, &received);
                    }
                })
                .map_err(|e| format!("webhook sink: {e}"))?
        };
        Ok(WebhookSink {
            hook: Some(hook),
            counters,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> String {
        self.hook.as_ref().map(FakeWebhook::url).unwrap_or_default()
    }

    /// Requests counted so far.
    pub fn received(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> &WebhookCounters {
        &self.counters
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        drop(self.hook.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn count(counters: &WebhookCounters, received: &Received) {
    counters
        .bytes
        .fetch_add(received.body.len() as u64, Ordering::Relaxed);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&received.body) {
        match value.get("severity").and_then(serde_json::Value::as_str) {
            Some("info") => counters.info.fetch_add(1, Ordering::Relaxed),
            Some("suspicious") => counters.suspicious.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    counters.requests.fetch_add(1, Ordering::SeqCst);
}
