//! HTTP guard: the `http-guard` thread, which owns the public API port and hands
//! tiny_http (`http.rs`) only vetted traffic, so that no client can make the API
//! eat memory, threads or file descriptors, or hold it up.
//!
//! One thread multiplexes every connection with `poll(2)` over non-blocking
//! sockets. A connection goes through:
//!
//! 1. **head**: the request head is read into at most `MAX_HEAD` bytes, within
//!    `HEAD_TIMEOUT` of the accept (slowloris and idle connections are closed then);
//! 2. **queued**: waiting for one of `http::SERVE_THREADS` slots;
//! 3. **upstream**: its request line alone, with `Connection: close`, is sent to
//!    tiny_http over the private Unix socket, and the response read back whole (at
//!    most `MAX_RESPONSE`), so tiny_http never waits on a client;
//! 4. **write**: the response, with `Connection: close` added after its status
//!    line, is written to the client, which has `RESPONSE_TIMEOUT`
//!    from the end of its head for steps 2 to 4;
//! 5. **linger**: the write side is shut and what the client still sends is read and
//!    dropped for at most `LINGER` / `LINGER_BYTES`, so that the close does not
//!    reset the response away.
//!
//! One request per connection: pipelined requests are never read. At most
//! `connection_cap()` connections are held; beyond, the one that has waited longest
//! for its head is closed for the newcomer. `accept` never ends the loop: out of
//! file descriptors, it counts, logs once per episode, sheds the oldest connection
//! still sending its head (or pauses accepting for `ACCEPT_BACKOFF`) and goes on.
//! The loop wakes at least every `TICK` to see the stop flag, and every step is
//! non-blocking, so the thread stops within a tick whatever clients do.

use crate::http::{SERVE_THREADS, Upstream};
use crate::metrics::{HttpReject, Metrics};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Connections held at once, at most (see `connection_cap`).
pub const MAX_CONNECTIONS: usize = 512;
/// Largest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// From accept to the end of the request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// From the end of the head to the last byte of the response written.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response taken from tiny_http (`/metrics` is about 10 KB).
pub const MAX_RESPONSE: usize = 1 << 20;
/// How long, and how much, a client's leftover input is read after the response.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// Pause in accepting after an `accept` error with nothing to shed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accepts per loop turn, so a flood of connections cannot starve the others.
const ACCEPT_BATCH: usize = 128;
/// Connections the kernel completes ahead of `accept`: a burst of this many is
/// taken in without clients waiting out a SYN retransmission.
const BACKLOG: libc::c_int = 1024;
/// Longest sleep in `poll`: how soon the stop flag is seen.
const TICK: Duration = Duration::from_millis(100);
/// Quiet time after which an episode of accept errors is over (logged once each).
const EPISODE_QUIET: Duration = Duration::from_secs(5);
/// Least time between two restarts of tiny_http.
const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// What the guard thread runs with.
pub struct Guard {
    pub listener: TcpListener,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Set by the pipeline once every other stage has stopped.
    pub stop: Arc<AtomicBool>,
    /// Connections held at once (`connection_cap()`).
    pub max_connections: usize,
}

/// The API port could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen on {} (API_HOST:API_PORT): {}",
            self.addr, self.source
        )
    }
}

impl std::error::Error for BindError {}

/// Binds the public port (non-blocking, with a `BACKLOG` of connections not yet
/// accepted); failure is a start-up error.
pub fn bind(host: IpAddr, port: u16) -> Result<TcpListener, BindError> {
    let addr = SocketAddr::new(host, port);
    let listener = TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| BindError { addr, source })?;
    // std listens with a backlog of 128; listening again only changes it (Linux
    // caps it at net.core.somaxconn). A failure leaves 128, which works.
    // SAFETY: listen on a descriptor this listener owns.
    let _ = unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    Ok(listener)
}

/// `MAX_CONNECTIONS`, or half the file-descriptor limit if that is less (at least
/// 16): the API alone can never take the descriptors the database, the feed and
/// the webhooks need.
pub fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return MAX_CONNECTIONS;
    }
    let half = usize::try_from(limit.rlim_cur / 2).unwrap_or(MAX_CONNECTIONS);
    half.clamp(16, MAX_CONNECTIONS)
}

enum Phase {
    Head {
        buf: Vec<u8>,
    },
    Queued {
        request: Vec<u8>,
    },
    Upstream {
        up: UnixStream,
        request: Vec<u8>,
        sent: usize,
        response: Vec<u8>,
    },
    Write {
        response: Vec<u8>,
        sent: usize,
    },
    Linger {
        discarded: usize,
    },
    Closed,
}

struct Conn {
    /// Accept order: the lowest is the oldest.
    id: u64,
    stream: TcpStream,
    deadline: Instant,
    phase: Phase,
}

impl Conn {
    fn waiting_for_head(&self) -> bool {
        matches!(self.phase, Phase::Head { .. })
    }
}

/// Which socket of which connection a `pollfd` stands for.
#[derive(Clone, Copy)]
enum Slot {
    Listener,
    Client(usize),
    Upstream(usize),
}

struct State {
    guard: Guard,
    conns: Vec<Conn>,
    next_id: u64,
    /// No accept before this (after an accept error with nothing to shed).
    accept_paused_until: Option<Instant>,
    /// When `accept` last failed, while an episode of failures lasts: it ends
    /// with an accept that works `EPISODE_QUIET` after the last failure.
    accept_failed_at: Option<Instant>,
    /// Failed accepts in the current episode.
    accept_failures: u64,
    last_restart: Option<Instant>,
    scratch: Box<[u8]>,
}

/// The guard thread: serves until `stop` is set, then closes every connection.
pub fn run_guard(guard: Guard) {
    log::debug!(
        "http guard: up to {} connections, {MAX_HEAD}-byte heads in {}s",
        guard.max_connections,
        HEAD_TIMEOUT.as_secs()
    );
    let mut state = State {
        guard,
        conns: Vec::new(),
        next_id: 0,
        accept_paused_until: None,
        accept_failed_at: None,
        accept_failures: 0,
        last_restart: None,
        scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
    };
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    while !state.guard.stop.load(Ordering::SeqCst) {
        state.restart_upstream_if_broken();
        let now = Instant::now();
        if state.accept_paused_until.is_some_and(|t| t <= now) {
            state.accept_paused_until = None;
        }
        state.fill_poll_set(&mut fds, &mut slots);
        let timeout = state.poll_timeout(now);
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfds.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as libc::c_int,
            )
        };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                // EINVAL (more descriptors than the limit allows) or ENOMEM: shed
                // one waiting connection and try again shortly.
                log::warn!("http guard: poll failed: {e}");
                state.evict_oldest_waiting(HttpReject::OverCapacity);
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let now = Instant::now();
        let mut listener_ready = false;
        for (fd, slot) in fds.iter().zip(&slots) {
            if fd.revents == 0 {
                continue;
            }
            match *slot {
                Slot::Listener => listener_ready = true,
                Slot::Client(i) => state.on_client(i, now),
                Slot::Upstream(i) => state.on_upstream(i),
            }
        }
        // Past this point indexes into `conns` are no longer used, so shedding a
        // connection may remove it (and close its descriptor) at once.
        state.conns.retain(|c| !matches!(c.phase, Phase::Closed));
        state.dispatch();
        if listener_ready {
            state.accept(now);
        }
        state.expire(Instant::now());
        state.conns.retain(|c| !matches!(c.phase, Phase::Closed));
        state
            .guard
            .metrics
            .http_connections
            .set(state.conns.len() as i64);
    }
    state
        .guard
        .metrics
        .http_connections
        .set(state.conns.len() as i64);
    log::debug!(
        "http guard: stopping, closing {} connections",
        state.conns.len()
    );
}

impl State {
    fn reject(&self, reason: HttpReject) {
        self.guard.metrics.http_rejected(reason);
    }

    fn restart_upstream_if_broken(&mut self) {
        if !self.guard.upstream.is_broken()
            || self
                .last_restart
                .is_some_and(|t| t.elapsed() < RESTART_INTERVAL)
        {
            return;
        }
        self.last_restart = Some(Instant::now());
        match self.guard.upstream.restart() {
            Ok(()) => {
                self.guard.metrics.http_restarts.inc();
                log::error!("http guard: tiny_http had stopped accepting; started a new one");
            }
            Err(e) => log::error!("http guard: tiny_http stopped accepting; restart failed: {e}"),
        }
    }

    fn fill_poll_set(&self, fds: &mut Vec<libc::pollfd>, slots: &mut Vec<Slot>) {
        fds.clear();
        slots.clear();
        let mut add = |fd: libc::c_int, events: libc::c_short, slot: Slot| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            slots.push(slot);
        };
        if self.accept_paused_until.is_none() {
            add(
                self.guard.listener.as_raw_fd(),
                libc::POLLIN,
                Slot::Listener,
            );
        }
        for (i, conn) in self.conns.iter().enumerate() {
            let client = conn.stream.as_raw_fd();
            match &conn.phase {
                Phase::Head { .. } | Phase::Linger { .. } => {
                    add(client, libc::POLLIN, Slot::Client(i));
                }
                Phase::Write { .. } => add(client, libc::POLLOUT, Slot::Client(i)),
                Phase::Upstream {
                    up, request, sent, ..
                } => {
                    let events = if *sent < request.len() {
                        libc::POLLOUT
                    } else {
                        libc::POLLIN
                    };
                    add(up.as_raw_fd(), events, Slot::Upstream(i));
                }
                Phase::Queued { .. } | Phase::Closed => {}
            }
        }
    }

    /// Until the next deadline, at most `TICK`.
    fn poll_timeout(&self, now: Instant) -> Duration {
        let mut next = now + TICK;
        if let Some(t) = self.accept_paused_until {
            next = next.min(t);
        }
        for conn in &self.conns {
            next = next.min(conn.deadline);
        }
        // Rounded up to the millisecond, so a deadline is past when poll returns.
        next.saturating_duration_since(now) + Duration::from_micros(999)
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            match self.guard.listener.accept() {
                Ok((stream, _)) => {
                    if self
                        .accept_failed_at
                        .is_some_and(|t| now.duration_since(t) >= EPISODE_QUIET)
                    {
                        log::info!(
                            "http guard: accepting connections again (after {} failed accepts)",
                            self.accept_failures
                        );
                        self.accept_failed_at = None;
                        self.accept_failures = 0;
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.guard.max_connections
                        && !self.evict_oldest_waiting(HttpReject::OverCapacity)
                    {
                        self.reject(HttpReject::OverCapacity);
                        refuse(stream, b"503 Service Unavailable");
                        continue;
                    }
                    self.conns.push(Conn {
                        id: self.next_id,
                        stream,
                        deadline: now + HEAD_TIMEOUT,
                        phase: Phase::Head { buf: Vec::new() },
                    });
                    self.next_id += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    self.guard.metrics.http_accept_errors.inc();
                    self.accept_failures += 1;
                    if self.accept_failed_at.replace(now).is_none() {
                        log::warn!(
                            "http guard: accept failed: {e}; shedding the connections that \
                             waited longest and retrying (logged once until accepting works again)"
                        );
                    }
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if !(out_of_fds && self.evict_oldest_waiting(HttpReject::FdLimit)) {
                        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                }
            }
        }
    }

    /// Closes the connection that has waited longest for its head; false if none.
    /// Removes it from `conns` at once, so its descriptor is free for the next
    /// accept: only called when no index into `conns` is held (after the events).
    fn evict_oldest_waiting(&mut self, reason: HttpReject) -> bool {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.waiting_for_head())
            .min_by_key(|(_, c)| c.id)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                drop(self.conns.swap_remove(i));
                self.reject(reason);
                true
            }
            None => false,
        }
    }

    fn on_client(&mut self, i: usize, now: Instant) {
        let scratch = &mut self.scratch;
        let conn = &mut self.conns[i];
        let mut outcome: Option<HttpReject> = None;
        match &mut conn.phase {
            Phase::Head { buf } => loop {
                let room = MAX_HEAD - buf.len();
                match Io::of(conn.stream.read(&mut scratch[..room])) {
                    Io::Moved(0) | Io::Failed => {
                        conn.phase = Phase::Closed;
                        break;
                    }
                    Io::Moved(n) => {
                        buf.extend_from_slice(&scratch[..n]);
                        if let Some(line) = request_line(buf) {
                            let mut request = Vec::with_capacity(line.len() + 23);
                            request.extend_from_slice(line);
                            request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
                            conn.phase = Phase::Queued { request };
                            conn.deadline = now + RESPONSE_TIMEOUT;
                            break;
                        }
                        if buf.len() >= MAX_HEAD {
                            outcome = Some(HttpReject::HeadTooLarge);
                            refuse_on(&mut conn.stream, b"431 Request Header Fields Too Large");
                            conn.phase = Phase::Closed;
                            break;
                        }
                    }
                    Io::Later => break,
                    Io::Again => {}
                }
            },
            Phase::Write { response, sent } => loop {
                match Io::of(conn.stream.write(&response[*sent..])) {
                    Io::Failed => {
                        conn.phase = Phase::Closed;
                        break;
                    }
                    Io::Moved(n) => {
                        *sent += n;
                        if *sent == response.len() {
                            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                            conn.phase = Phase::Linger { discarded: 0 };
                            conn.deadline = now + LINGER;
                            break;
                        }
                    }
                    Io::Later => break,
                    Io::Again => {}
                }
            },
            Phase::Linger { discarded } => loop {
                match Io::of(conn.stream.read(scratch)) {
                    Io::Moved(0) | Io::Failed => {
                        conn.phase = Phase::Closed;
                        break;
                    }
                    Io::Moved(n) => {
                        *discarded += n;
                        if *discarded >= LINGER_BYTES {
                            conn.phase = Phase::Closed;
                            break;
                        }
                    }
                    Io::Later => break,
                    Io::Again => {}
                }
            },
            Phase::Queued { .. } | Phase::Upstream { .. } | Phase::Closed => {}
        }
        if let Some(reason) = outcome {
            self.reject(reason);
        }
    }

    fn on_upstream(&mut self, i: usize) {
        let scratch = &mut self.scratch;
        let conn = &mut self.conns[i];
        let Phase::Upstream {
            up,
            request,
            sent,
            response,
        } = &mut conn.phase
        else {
            return;
        };
        let mut failed = false;
        let mut done = false;
        if *sent < request.len() {
            match Io::of(up.write(&request[*sent..])) {
                Io::Moved(n) => *sent += n,
                Io::Later | Io::Again => {}
                Io::Failed => failed = true,
            }
        } else {
            loop {
                match Io::of(up.read(scratch)) {
                    Io::Moved(0) => {
                        done = true;
                        break;
                    }
                    Io::Moved(n) => {
                        if response.len() + n > MAX_RESPONSE {
                            failed = true;
                            break;
                        }
                        response.extend_from_slice(&scratch[..n]);
                    }
                    Io::Later => break,
                    Io::Again => {}
                    Io::Failed => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if done && response.is_empty() {
            failed = true;
        }
        if failed {
            refuse_on(&mut conn.stream, b"502 Bad Gateway");
            conn.phase = Phase::Closed;
            self.reject(HttpReject::UpstreamError);
        } else if done {
            let mut response = std::mem::take(response);
            announce_close(&mut response);
            // Dropping the Unix stream ends the exchange with tiny_http.
            conn.phase = Phase::Write { response, sent: 0 };
        }
    }

    /// Hands queued requests to tiny_http, oldest first, up to `SERVE_THREADS` at once.
    fn dispatch(&mut self) {
        let busy = self
            .conns
            .iter()
            .filter(|c| matches!(c.phase, Phase::Upstream { .. }))
            .count();
        for _ in busy..SERVE_THREADS {
            let Some(i) = self
                .conns
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c.phase, Phase::Queued { .. }))
                .min_by_key(|(_, c)| c.id)
                .map(|(i, _)| i)
            else {
                return;
            };
            let path = self.guard.upstream.current().path.clone();
            match connect_nonblocking(&path) {
                Ok(up) => {
                    let conn = &mut self.conns[i];
                    let Phase::Queued { request } =
                        std::mem::replace(&mut conn.phase, Phase::Closed)
                    else {
                        unreachable!("selected as queued");
                    };
                    conn.phase = Phase::Upstream {
                        up,
                        request,
                        sent: 0,
                        response: Vec::new(),
                    };
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: shed a waiting connection; this one tries
                    // again next turn, within its deadline.
                    self.evict_oldest_waiting(HttpReject::FdLimit);
                    return;
                }
                Err(e) => {
                    log::warn!("http guard: cannot reach tiny_http: {e}");
                    self.guard.upstream.mark_broken();
                    let conn = &mut self.conns[i];
                    refuse_on(&mut conn.stream, b"503 Service Unavailable");
                    conn.phase = Phase::Closed;
                    self.reject(HttpReject::UpstreamError);
                }
            }
        }
    }

    /// Closes every connection past its deadline.
    fn expire(&mut self, now: Instant) {
        let mut expired: Vec<HttpReject> = Vec::new();
        for conn in self.conns.iter_mut().filter(|c| c.deadline <= now) {
            match conn.phase {
                Phase::Head { .. } => {
                    refuse_on(&mut conn.stream, b"408 Request Timeout");
                    expired.push(HttpReject::HeadTimeout);
                }
                Phase::Queued { .. } | Phase::Upstream { .. } | Phase::Write { .. } => {
                    expired.push(HttpReject::ResponseTimeout);
                }
                Phase::Linger { .. } | Phase::Closed => {}
            }
            conn.phase = Phase::Closed;
        }
        for reason in expired {
            self.reject(reason);
        }
    }
}

/// Connects to tiny_http's socket without ever waiting: a Unix stream connect
/// completes at once or fails (`EAGAIN` when the listener's backlog is full).
fn connect_nonblocking(path: &std::path::Path) -> io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a zeroed sockaddr_un is a valid value of the type.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned by the UnixStream below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid sockaddr_un of the size passed.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

/// Adds `Connection: close` after the status line (tiny_http will not send it,
/// and an HTTP/1.1 client would otherwise expect the connection to stay open).
fn announce_close(response: &mut Vec<u8>) {
    if let Some(end) = response.windows(2).position(|w| w == b"\r\n") {
        let at = end + 2;
        response.splice(at..at, b"Connection: close\r\n".iter().copied());
    }
}

/// The request line of the first complete head in `buf` (a blank line ends a
/// head; bare `\n` line ends are accepted), without its line end.
fn request_line(buf: &[u8]) -> Option<&[u8]> {
    let end = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| buf.windows(4).position(|w| w == b"\r\n\r\n"))?;
    let head = &buf[..end];
    let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// One best-effort, non-blocking write of a bodiless status, then the socket closes.
fn refuse(mut stream: TcpStream, status: &[u8]) {
    refuse_on(&mut stream, status);
}

/// What one non-blocking read or write came to.
enum Io {
    /// Bytes moved (0 on a read: the peer closed its side).
    Moved(usize),
    /// Nothing until the socket is ready again (`WouldBlock`).
    Later,
    /// Interrupted by a signal: try again at once.
    Again,
    /// Any other error: the connection is done for.
    Failed,
}

impl Io {
    fn of(result: std::io::Result<usize>) -> Io {
        match result {
            Ok(n) => Io::Moved(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Io::Later,
            Err(e) if e.kind() == ErrorKind::Interrupted => Io::Again,
            Err(_) => Io::Failed,
        }
    }
}

fn refuse_on(stream: &mut TcpStream, status: &[u8]) {
    let mut msg = Vec::with_capacity(80);
    msg.extend_from_slice(b"HTTP/1.1 ");
    msg.extend_from_slice(status);
    msg.extend_from_slice(b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let _ = stream.write(&msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_is_taken_from_the_first_complete_head_only() {
        for (buf, line) in [
            (
                &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                Some(&b"GET /healthz HTTP/1.1"[..]),
            ),
            (b"GET /metrics HTTP/1.0\n\n", Some(b"GET /metrics HTTP/1.0")),
            (
                b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                Some(b"GET /a HTTP/1.1"),
            ),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),
            (b"GET /healthz HTTP/1.1", None),
            (b"", None),
        ] {
            assert_eq!(
                request_line(buf),
                line,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn the_response_announces_the_close() {
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
        announce_close(&mut response);
        assert_eq!(
            response,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn the_connection_cap_stays_within_its_bounds() {
        let cap = connection_cap();
        assert!((16..=MAX_CONNECTIONS).contains(&cap), "{cap}");
    }
}
