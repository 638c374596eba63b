//! A fake certstream server (`FakeFeed`): an in-process WebSocket server on 127.0.0.1,
//! scripted through a channel (`FeedCmd`: frames, raw bytes, closes, drops), one client
//! at a time; it counts handshakes and the client's pings.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::{HandshakeError, Message, WebSocket};

use crate::wait_until;

/// How often background loops look at their stop flag (accept poll, socket read timeout).
const POLL: Duration = Duration::from_millis(20);

/// Upper bound for any single write to a test client, so a client that stops reading cannot
/// wedge a server thread (and therefore `Drop`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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
