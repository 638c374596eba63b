//! The feed reader: the `feed` thread, a blocking tungstenite client of the certstream server.
//!
//! It connects (`ws://` or `wss://` with rustls), pings the server every
//! `FEED_PING_S`, treats `FEED_SILENCE_S` without any frame as a dead connection,
//! bounds frame size, and reconnects forever with capped exponential backoff and
//! jitter. It never parses. Each data frame takes room in the queue to the
//! workers (`QueueBudget`, by count and by bytes) or, when there is none, is
//! dropped and counted, so the socket never stalls behind slow workers. Frames
//! go to the workers in batches (`try_send`): a batch is handed over when it
//! holds `BATCH_FRAMES`, when its first frame is `BATCH_AGE` old, or when the
//! socket has been quiet for `BATCH_WAIT`, so under load a worker wakes once
//! per batch and at a trickle a frame waits at most a few milliseconds. The
//! socket read timeout is the tick on which it checks shutdown, pings and
//! silence.

use super::worker::{Batch, Frame, QueueBudget};
use crate::clock::unix_now;
use crate::config::redact_url;
use crate::coverage::Coverage;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::threads::Health;
use crossbeam_channel::{Sender, TrySendError};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Largest frame or message accepted; certstream messages are a few KB to a few
/// hundred KB (certificates with hundreds of SANs).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Socket read size of the WebSocket client (tungstenite's default).
const READ_BUFFER_BYTES: usize = 128 << 10;
/// The read timeout that paces the reader's checks.
const TICK: Duration = Duration::from_millis(250);
/// Most frames handed to the workers in one batch.
const BATCH_FRAMES: usize = 32;
/// An open batch is handed over once its first frame is this old...
const BATCH_AGE: Duration = Duration::from_millis(5);
/// ...or once the socket has been quiet this long.
const BATCH_WAIT: Duration = Duration::from_millis(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the feed thread needs.
pub struct Feed {
    pub url: String,
    /// TLS settings for `wss://` when extra CAs are trusted; `None` uses the public roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub ping_interval: Duration,
    pub silence: Duration,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
    /// Bytes of frames queued for the workers, bounded.
    pub budget: Arc<QueueBudget>,
    /// Told of every reconnect: what the feed sent meanwhile is an outage's hole.
    pub coverage: Arc<Coverage>,
}

/// Why a connection ended.
#[derive(Debug)]
enum FeedError {
    Connect(String),
    Silent(Duration),
    Closed,
    Protocol(tungstenite::Error),
    WorkersGone,
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedError::Connect(e) => write!(f, "connect failed: {e}"),
            FeedError::Silent(d) => {
                write!(f, "no frame for {}s, connection presumed dead", d.as_secs())
            }
            FeedError::Closed => f.write_str("closed by the server"),
            FeedError::Protocol(e) => write!(f, "connection lost: {e}"),
            FeedError::WorkersGone => f.write_str("workers stopped"),
        }
    }
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// The feed thread: returns on shutdown (or if the workers vanish), dropping its
/// sender so the workers drain and stop.
pub fn run_feed(feed: Feed, frames: Sender<Batch>) {
    let mut delay = BACKOFF_MIN;
    let mut attempt = 0u64;
    let mut connected_before = false;
    while !feed.shutdown.is_set() {
        if attempt > 0 {
            feed.metrics.ws_reconnects.inc();
        }
        attempt += 1;
        let mut received = false;
        let outcome = connect(&feed.url, feed.tls.clone()).and_then(|mut ws| {
            log::info!("connected to {}", redact_url(&feed.url, true));
            if std::mem::replace(&mut connected_before, true) {
                feed.coverage.note_feed_reconnected();
            }
            feed.health.ws_connected.store(true, Ordering::SeqCst);
            feed.metrics.ws_connected.set(1);
            let result = read_loop(&feed, &mut ws, &frames, &mut received);
            feed.health.ws_connected.store(false, Ordering::SeqCst);
            feed.metrics.ws_connected.set(0);
            let _ = ws.close(None);
            let _ = ws.flush();
            result
        });
        match outcome {
            Ok(()) => break,
            Err(FeedError::WorkersGone) => {
                log::error!("feed stopped: workers are gone");
                break;
            }
            Err(e) => {
                if received {
                    delay = BACKOFF_MIN;
                }
                let wait = jitter(delay);
                log::warn!(
                    "certstream {}: {e}; reconnecting in {:.1}s",
                    redact_url(&feed.url, true),
                    wait.as_secs_f64()
                );
                delay = (delay * 2).min(BACKOFF_MAX);
                if feed.shutdown.sleep(wait) {
                    break;
                }
            }
        }
    }
    log::info!("feed reader stopped");
}

/// Reads until shutdown (`Ok`) or until the connection is lost (`Err`). Frames
/// read are handed to the workers in batches; whatever batch is open when the
/// loop ends is handed over too, so no frame read is lost.
fn read_loop(
    feed: &Feed,
    ws: &mut Socket,
    workers: &Sender<Batch>,
    received: &mut bool,
) -> Result<(), FeedError> {
    let mut batch = Batch::with_capacity(BATCH_FRAMES);
    let result = read_batches(feed, ws, workers, &mut batch, received);
    send_batch(feed, workers, &mut batch)?;
    result
}

/// The read loop proper: fills `batch` and hands it over when it is full, old
/// or the socket is quiet.
fn read_batches(
    feed: &Feed,
    ws: &mut Socket,
    workers: &Sender<Batch>,
    batch: &mut Batch,
    received: &mut bool,
) -> Result<(), FeedError> {
    // One clock read per frame: `now` is taken when each read returns. Unix
    // time for the health check is derived from it.
    let mut now = Instant::now();
    let (connected, connected_unix) = (now, unix_now());
    let (mut last_frame, mut last_ping, mut batch_opened) = (now, now, now);
    // The socket waits `BATCH_WAIT` rather than `TICK` while a batch is open.
    let mut waiting_short = false;
    loop {
        if !batch.is_empty() && (batch.len() >= BATCH_FRAMES || now - batch_opened >= BATCH_AGE) {
            send_batch(feed, workers, batch)?;
        }
        let batch_open = !batch.is_empty();
        if waiting_short != batch_open {
            waiting_short = batch_open;
            let wait = if waiting_short { BATCH_WAIT } else { TICK };
            if let Some(tcp) = tcp_of(ws) {
                tcp.set_read_timeout(Some(wait))
                    .map_err(|e| FeedError::Protocol(e.into()))?;
            }
        }
        if feed.shutdown.is_set() {
            return Ok(());
        }
        if now - last_ping >= feed.ping_interval {
            match ws.send(Message::Ping(Default::default())) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if is_tick(&e) => {}
                Err(e) => return Err(FeedError::Protocol(e)),
            }
            last_ping = now;
        }
        if now - last_frame >= feed.silence {
            return Err(FeedError::Silent(feed.silence));
        }
        let read = ws.read();
        now = Instant::now();
        let message = match read {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            Ok(_) => {
                // Ping, pong, close: proof of life. tungstenite answers pings itself.
                last_frame = now;
                continue;
            }
            Err(tungstenite::Error::Io(e)) if is_tick(&e) => {
                // The socket is quiet: the open batch goes now.
                send_batch(feed, workers, batch)?;
                continue;
            }
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return Err(FeedError::Closed);
            }
            // An oversized frame, or a text frame that is not UTF-8: a parse error,
            // and tungstenite cannot go on with this connection.
            Err(e @ (tungstenite::Error::Capacity(_) | tungstenite::Error::Utf8(_))) => {
                feed.metrics.ct_parse_errors.inc();
                return Err(FeedError::Protocol(e));
            }
            Err(e) => return Err(FeedError::Protocol(e)),
        };
        last_frame = now;
        *received = true;
        let seconds_connected = (now - connected).as_secs() as i64;
        feed.health
            .last_frame
            .store(connected_unix + seconds_connected, Ordering::Relaxed);
        let len = message.len();
        if !feed.budget.try_reserve(len) {
            feed.metrics.ct_messages_dropped.inc();
            continue;
        }
        let Some(frame) = owned_frame(message) else {
            feed.budget.release(1, len);
            continue;
        };
        if batch.is_empty() {
            batch_opened = now;
        }
        batch.push(frame);
    }
}

/// A data message as a frame of its own: copied out of tungstenite's read
/// buffer, which then stays the connection's own (handing over tungstenite's
/// bytes instead would make it allocate and zero-fill a new buffer for every
/// frame). Only frames the queue has room for are copied.
fn owned_frame(message: Message) -> Option<Frame> {
    match message {
        Message::Text(text) => Some(Frame::Text(String::from(text.as_str()).into())),
        Message::Binary(bytes) => Some(Frame::Binary(tungstenite::Bytes::copy_from_slice(&bytes))),
        _ => None,
    }
}

/// Sends the open batch (if any) to the workers and opens a new one.
fn send_batch(feed: &Feed, workers: &Sender<Batch>, batch: &mut Batch) -> Result<(), FeedError> {
    if batch.is_empty() {
        return Ok(());
    }
    let full = std::mem::replace(batch, Batch::with_capacity(BATCH_FRAMES));
    match workers.try_send(full) {
        Ok(()) => Ok(()),
        // Not expected: the budget bounds frames below the channel's capacity.
        Err(TrySendError::Full(lost)) => {
            let bytes = lost.iter().map(Frame::len).sum();
            feed.budget.release(lost.len(), bytes);
            feed.metrics.ct_messages_dropped.inc_by(lost.len() as u64);
            Ok(())
        }
        Err(TrySendError::Disconnected(_)) => Err(FeedError::WorkersGone),
    }
}

/// The TCP socket under the WebSocket (and TLS) layers.
fn tcp_of(ws: &mut Socket) -> Option<&mut TcpStream> {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => Some(s),
        MaybeTlsStream::Rustls(s) => Some(&mut s.sock),
        _ => None,
    }
}

fn is_tick(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The rustls client settings for `wss://` with the public roots plus the CA
/// certificates of `ca_file` (PEM); `None` when no file is given.
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, CaFileError> {
    use rustls::pki_types::pem::PemObject;
    let Some(path) = ca_file else { return Ok(None) };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut added = 0;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| CaFileError::new(path, e.to_string()))?
    {
        let cert = cert.map_err(|e| CaFileError::new(path, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| CaFileError::new(path, e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(CaFileError::new(path, "no PEM certificate in it".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CaFileError::new(path, e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// `CERTSTREAM_CA_FILE` could not be used: the file and what is wrong with it.
#[derive(Debug)]
pub struct CaFileError {
    pub path: std::path::PathBuf,
    pub problem: String,
}

impl CaFileError {
    fn new(path: &std::path::Path, problem: String) -> CaFileError {
        CaFileError {
            path: path.to_path_buf(),
            problem,
        }
    }
}

impl fmt::Display for CaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CERTSTREAM_CA_FILE {}: {}",
            self.path.display(),
            self.problem
        )
    }
}

impl std::error::Error for CaFileError {}

/// Opens the TCP connection with a timeout, then the TLS and WebSocket handshakes.
fn connect(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Socket, FeedError> {
    let request = url
        .into_client_request()
        .map_err(|e| FeedError::Connect(e.to_string()))?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| FeedError::Connect("URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| FeedError::Connect(format!("resolve {host}: {e}")))?;
    let mut last_error = format!("{host} resolved to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    let stream = stream.ok_or(FeedError::Connect(last_error))?;
    let io = |e: std::io::Error| FeedError::Connect(e.to_string());
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(io)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        // Frames are copied out (`owned_frame`), so this buffer is reused for the
        // whole connection and each read can take many frames.
        .read_buffer_size(READ_BUFFER_BYTES);
    let connector = tls.map(tungstenite::Connector::Rustls);
    let (mut ws, _response) =
        tungstenite::client_tls_with_config(request, stream, Some(config), connector)
            .map_err(|e| FeedError::Connect(e.to_string()))?;
    let tcp =
        tcp_of(&mut ws).ok_or_else(|| FeedError::Connect("unsupported stream type".into()))?;
    tcp.set_read_timeout(Some(TICK)).map_err(io)?;
    Ok(ws)
}

/// A random wait between half and all of `delay`, so many clients restarted
/// together do not reconnect in step.
fn jitter(delay: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    delay.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
