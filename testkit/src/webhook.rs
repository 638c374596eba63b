//! A fake webhook receiver (`FakeWebhook`): tiny_http on 127.0.0.1 that hands every
//! request (`Received`) to the test through a channel and answers with scripted statuses;
//! and `WebhookSink`, the same receiver for long runs, which keeps counts instead of
//! requests.

use std::collections::VecDeque;
use std::io;
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
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, script, count, stop) = (
                Arc::clone(&server),
                Arc::clone(&script),
                Arc::clone(&count),
                Arc::clone(&stop),
            );
            thread::Builder::new()
                .name(format!("fake-webhook-{port}"))
                .spawn(move || webhook_loop(&server, &tx, &script, &count, &stop))?
        };
        Ok(FakeWebhook {
            port,
            server,
            rx,
            script,
            count,
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

fn webhook_loop(
    server: &tiny_http::Server,
    tx: &Sender<Received>,
    script: &Mutex<VecDeque<u16>>,
    count: &AtomicUsize,
    stop: &AtomicBool,
) {
    loop {
        let mut request = match server.recv() {
            Ok(request) => request,
            Err(e) => {
                if stop.load(Ordering::SeqCst) {
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
        };
        count.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(received);
        let status = script
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
