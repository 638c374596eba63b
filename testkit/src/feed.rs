//! Fake certstream servers, in-process WebSocket servers on 127.0.0.1 serving one
//! client at a time:
//!
//! - [`FakeFeed`]: scripted through a channel ([`FeedCmd`]: frames, raw bytes, closes,
//!   drops); it counts handshakes and the client's pings. Tests and the e2e harness.
//! - [`PacedFeed`]: sends [`FeedGen`] frames at a set rate, in
//!   small batches every 5 ms written with `writev` straight from the generator's
//!   buffers, answering pings between batches. The soak and `bench_feed`, where the
//!   server must cost less than the service it feeds.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::{HandshakeError, Message, Utf8Bytes, WebSocket};

use crate::feedgen::FeedGen;
use crate::wait_until;

/// How often background loops look at their stop flag (accept poll, socket read timeout).
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Upper bound for any single write to a test client, so a client that stops reading cannot
/// wedge a server thread (and therefore `Drop`).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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

pub(crate) fn is_timeout(e: &io::Error) -> bool {
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

// PacedFeed
// ---------------------------------------------------------------------------------------

/// How often the pacer sends a batch.
const PACE_TICK: Duration = Duration::from_millis(5);
/// Accept poll of the listener while no client is connected.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// A client that takes nothing for this long makes a write give up for this tick.
const PACE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// The pacer never sends more than this share of a second's frames in one tick to
/// catch up; beyond, it counts the frames as `behind` and forgets them.
const MAX_CATCH_UP: f64 = 0.1;

/// Counters of a [`PacedFeed`], shared with its thread.
#[derive(Default, Debug)]
pub struct FeedCounters {
    /// Frames written to the client (in order, complete).
    pub sent: AtomicU64,
    /// Matching frames among them.
    pub matches: AtomicU64,
    /// Bytes of frame payload written.
    pub bytes: AtomicU64,
    /// Frames the schedule called for but that could not be sent in time (the client
    /// was not reading fast enough); never sent later.
    pub behind: AtomicU64,
    /// Clients accepted.
    pub connections: AtomicUsize,
    /// Pings received from the client.
    pub pings: AtomicU64,
}

/// A certstream WebSocket server that sends [`FeedGen`] frames to its client at
/// `rate` messages per second (0: paused). One client at a time; a reconnecting
/// client gets the stream where it left off. Stops on drop.
pub struct PacedFeed {
    addr: SocketAddr,
    rate: Arc<AtomicU64>,
    counters: Arc<FeedCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacedFeed {
    pub fn start(generator: FeedGen, rate: u64) -> io::Result<PacedFeed> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rate = Arc::new(AtomicU64::new(rate));
        let counters = Arc::new(FeedCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (rate, counters, stop) = (rate.clone(), counters.clone(), stop.clone());
            thread::Builder::new()
                .name("load-feed".into())
                .spawn(move || pace_loop(listener, generator, &rate, &counters, &stop))?
        };
        Ok(PacedFeed {
            addr,
            rate,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:<port>/full-stream`.
    pub fn url(&self) -> String {
        format!("ws://{}/full-stream", self.addr)
    }

    /// Messages per second from now on (0 pauses).
    pub fn set_rate(&self, per_second: u64) {
        self.rate.store(per_second, Ordering::SeqCst);
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::SeqCst)
    }

    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }

    pub fn matches(&self) -> u64 {
        self.counters.matches.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> &FeedCounters {
        &self.counters
    }
}

impl Drop for PacedFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pace_loop(
    listener: TcpListener,
    mut generator: FeedGen,
    rate: &AtomicU64,
    counters: &FeedCounters,
    stop: &AtomicBool,
) {
    // Frames taken from the generator that a client did not get whole.
    let mut pending = std::collections::VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) =
                    serve_client(stream, &mut generator, &mut pending, rate, counters, stop)
                {
                    log::warn!("load feed: client {peer} ended: {e}");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                log::warn!("load feed: accept failed: {e}");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Most bytes of frames the pacer holds for a slow client before it stops taking
/// new frames from the generator (they count as `behind` instead).
const MAX_UNSENT_BYTES: usize = 4 << 20;
/// Frames per `writev`.
const FRAMES_PER_WRITE: usize = 64;
/// How long finishing a half-written frame may take before the client is dropped.
const FINISH_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames taken from the generator and not yet wholly on the socket. Each is
/// sent as a WebSocket text frame (a header formatted by tungstenite, then the
/// payload), written with `writev` straight from the generator's buffers: the
/// pacer copies nothing, so on a shared machine its CPU goes to the kernel's
/// loopback, not to the benchmark's own bookkeeping.
#[derive(Default)]
struct Outbox {
    /// (header, payload, matching) of each unsent frame, oldest first.
    frames: std::collections::VecDeque<(Vec<u8>, Utf8Bytes, bool)>,
    /// Bytes of the oldest frame already written.
    written: usize,
    /// Unwritten bytes in all.
    unsent: usize,
}

impl Outbox {
    fn push(&mut self, payload: Utf8Bytes, matching: bool) {
        let header = tungstenite::protocol::frame::FrameHeader {
            opcode: tungstenite::protocol::frame::coding::OpCode::Data(
                tungstenite::protocol::frame::coding::Data::Text,
            ),
            ..Default::default()
        };
        let mut encoded = Vec::with_capacity(10);
        header
            .format(payload.len() as u64, &mut encoded)
            .expect("a header formats into a Vec");
        self.unsent += encoded.len() + payload.len();
        self.frames.push_back((encoded, payload, matching));
    }

    /// True when a frame is partly written: nothing else may go on the socket
    /// (a pong from tungstenite) until it is finished.
    fn mid_frame(&self) -> bool {
        self.written > 0
    }

    /// One `writev` of up to [`FRAMES_PER_WRITE`] frames; counts the frames it
    /// completes. A timeout is not an error: the frames stay queued.
    fn write_some(&mut self, stream: &mut TcpStream, counters: &FeedCounters) -> io::Result<()> {
        use std::io::{IoSlice, Write};
        let mut slices = Vec::with_capacity(2 * FRAMES_PER_WRITE);
        let mut skip = self.written;
        for (header, payload, _) in self.frames.iter().take(FRAMES_PER_WRITE) {
            for part in [header.as_slice(), payload.as_bytes()] {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    slices.push(IoSlice::new(&part[skip..]));
                    skip = 0;
                }
            }
        }
        let mut n = match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "socket took nothing")),
            Ok(n) => n,
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        self.unsent -= n;
        while n > 0 {
            let (header, payload, matching) = &self.frames[0];
            let left = header.len() + payload.len() - self.written;
            if n < left {
                self.written += n;
                break;
            }
            n -= left;
            counters.sent.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            if *matching {
                counters.matches.fetch_add(1, Ordering::Relaxed);
            }
            self.frames.pop_front();
            self.written = 0;
        }
        Ok(())
    }
}

fn serve_client(
    stream: TcpStream,
    generator: &mut FeedGen,
    pending: &mut std::collections::VecDeque<(Utf8Bytes, bool)>,
    rate: &AtomicU64,
    counters: &FeedCounters,
    stop: &AtomicBool,
) -> Result<(), String> {
    let io = |e: io::Error| e.to_string();
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(PACE_WRITE_TIMEOUT))
        .map_err(io)?;
    let mut ws: WebSocket<TcpStream> =
        tungstenite::accept(stream).map_err(|e| format!("handshake failed: {e}"))?;
    counters.connections.fetch_add(1, Ordering::SeqCst);

    let mut outbox = Outbox::default();
    // Frames the generator gave a previous client that never got them go first.
    for (frame, matching) in pending.drain(..) {
        outbox.push(frame, matching);
    }
    let mut epoch = Instant::now();
    let mut epoch_rate = rate.load(Ordering::SeqCst);
    let mut scheduled: u64 = 0;
    let mut next_tick = Instant::now();
    let result = 'serve: loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let r = rate.load(Ordering::SeqCst);
        if r != epoch_rate {
            epoch = Instant::now();
            epoch_rate = r;
            scheduled = 0;
        }
        let due = (epoch.elapsed().as_secs_f64() * r as f64) as u64;
        let mut batch = due.saturating_sub(scheduled);
        let cap = ((r as f64 * MAX_CATCH_UP) as u64).max(1);
        if batch > cap {
            counters.behind.fetch_add(batch - cap, Ordering::Relaxed);
            scheduled += batch - cap;
            batch = cap;
        }
        // A pong tungstenite still holds must go out before any frame of ours.
        let pong_sent = match ws.flush() {
            Ok(()) => true,
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => false,
            Err(e) => break Err(format!("flush: {e}")),
        };
        // Write what is due until the tick is over or the client stops taking;
        // then finish a half-written frame, so a pong cannot land inside it.
        let tick_end = next_tick + PACE_TICK;
        loop {
            while batch > 0 && outbox.unsent < MAX_UNSENT_BYTES {
                let (frame, matching) = generator.next_frame();
                outbox.push(frame, matching);
                scheduled += 1;
                batch -= 1;
            }
            if !pong_sent || outbox.frames.is_empty() {
                break;
            }
            let before = outbox.unsent;
            if let Err(e) = outbox.write_some(ws.get_mut(), counters) {
                break 'serve Err(format!("write: {e}"));
            }
            let stalled = outbox.unsent == before;
            if (stalled || Instant::now() >= tick_end) && !outbox.mid_frame() {
                break;
            }
            if stalled && tick_end.elapsed() > FINISH_FRAME_TIMEOUT {
                break 'serve Err("client stopped reading mid-frame".into());
            }
        }
        // Wait for the next tick reading, so the client's pings get their pongs.
        next_tick += PACE_TICK;
        let now = Instant::now();
        if next_tick < now {
            next_tick = now;
        }
        loop {
            let left = next_tick.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            {
                break 'serve Err(e.to_string());
            }
            match ws.read() {
                Ok(Message::Close(_)) => break 'serve Ok(()),
                Ok(Message::Ping(_)) => {
                    counters.pings.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => break,
                Err(tungstenite::Error::ConnectionClosed) => break 'serve Ok(()),
                Err(e) => break 'serve Err(format!("read: {e}")),
            }
        }
    };
    // Frames not wholly sent go, whole, to the next client.
    let cut = outbox.mid_frame();
    pending.extend(outbox.frames.into_iter().map(|(_, f, m)| (f, m)));
    if result.is_ok() && !cut {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    let _ = ws.get_ref().shutdown(Shutdown::Both);
    result
}
