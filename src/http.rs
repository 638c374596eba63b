//! HTTP: the `http-0` and `http-1` threads serving `GET /healthz` and
//! `GET /metrics` with tiny_http, the private Unix socket tiny_http listens on
//! (`Upstream`), and the client behind `certwatch healthcheck`.
//!
//! tiny_http never sees the network. The `http-guard` thread (`http_guard.rs`)
//! owns the public port and hands tiny_http one vetted request per connection over
//! the Unix socket, in a directory only this user can enter; tiny_http routes and
//! answers. If tiny_http's own accept thread ends (an accept error, a failed thread
//! spawn), the guard binds a fresh socket and starts a fresh tiny_http
//! (`Upstream::restart`).
//!
//! Read-only: the serving threads read `Health` and render `Metrics`, nothing else.
//! They are the last threads to stop, so `/healthz` answers throughout a drain; two
//! of them, so one that dies is reported in `dead_threads` by the other.

use crate::clock::unix_now;
use crate::metrics::Metrics;
use crate::threads::Health;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// Threads taking requests from tiny_http (`http-0`, `http-1`); also the number of
/// requests the guard hands tiny_http at once.
pub const SERVE_THREADS: usize = 2;

/// What the serving threads serve from.
pub struct Http {
    pub upstream: Arc<Upstream>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Beyond this without a frame the feed counts as stale in `/healthz` (as it
    /// does at once while the feed is down).
    pub feed_silence: Duration,
    /// CT_SOURCE reads a feed; without one (logs mode) it is never stale.
    pub feed_enabled: bool,
    pub started_at: i64,
    /// Frames queued between the feed and the workers, read at scrape time.
    pub worker_queue: Arc<crate::sources::feed::worker::QueueBudget>,
    /// Set by the pipeline once every other stage has stopped.
    pub stop: Arc<AtomicBool>,
}

/// One tiny_http server and the socket it listens on.
pub struct Backend {
    pub path: PathBuf,
    pub server: Server,
}

/// tiny_http behind a private Unix socket: a directory of mode 0700 under the
/// temporary directory (`TMPDIR`), removed on drop, holding one socket per
/// generation (`http-<n>.sock`). Restarted by the guard, read by the serving threads.
pub struct Upstream {
    dir: PathBuf,
    generation: AtomicU64,
    current: ArcSwap<Backend>,
    /// Set by a serving thread when tiny_http reports that its accept thread ended.
    broken: AtomicBool,
}

impl Upstream {
    /// Creates the private directory and starts the first tiny_http; failure is a
    /// start-up error.
    pub fn new() -> Result<Upstream, UpstreamError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        let mut last_dir = base.clone();
        for _ in 0..16 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("certwatch-{}-{n}", std::process::id()));
            // mkdir fails on anything already there (a symlink included).
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let backend = match bind_backend(&dir, 0) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = std::fs::remove_dir_all(&dir);
                            return Err(e);
                        }
                    };
                    return Ok(Upstream {
                        dir,
                        generation: AtomicU64::new(0),
                        current: ArcSwap::from_pointee(backend),
                        broken: AtomicBool::new(false),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last_dir = dir;
                }
                Err(e) => {
                    return Err(UpstreamError {
                        what: "cannot create the directory",
                        path: dir,
                        source: e,
                    });
                }
            }
        }
        Err(UpstreamError {
            what: "cannot create the directory",
            path: last_dir,
            source: std::io::ErrorKind::AlreadyExists.into(),
        })
    }

    /// The tiny_http server in service.
    pub fn current(&self) -> Arc<Backend> {
        self.current.load_full()
    }

    /// Records that tiny_http stopped accepting; the guard restarts it.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Binds a fresh socket and swaps a fresh tiny_http in. The old one is dropped
    /// (its socket removed) when the last serving thread lets go of it.
    pub fn restart(&self) -> Result<(), UpstreamError> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let backend = bind_backend(&self.dir, generation)?;
        self.current.store(Arc::new(backend));
        self.broken.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bind_backend(dir: &Path, generation: u64) -> Result<Backend, UpstreamError> {
    let path = dir.join(format!("http-{generation}.sock"));
    let listener = UnixListener::bind(&path).map_err(|e| UpstreamError {
        what: "cannot listen on",
        path: path.clone(),
        source: e,
    })?;
    let server = Server::from_listener(listener, None).map_err(|e| UpstreamError {
        what: "cannot start tiny_http on",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Backend { path, server })
}

/// Why the private socket tiny_http listens on could not be set up.
#[derive(Debug)]
pub struct UpstreamError {
    what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (the API's private socket, under TMPDIR): {}",
            self.what,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for UpstreamError {}

/// The `/healthz` document. The first three keys are fixed by the spec.
#[derive(Serialize)]
struct Healthz {
    ok: bool,
    watch_entries: usize,
    last_ct_event_at: Option<i64>,
    feed_connected: bool,
    feed_stale: bool,
    database_reachable: bool,
    watch_list_loaded: bool,
    draining: bool,
    dead_threads: Vec<String>,
    coverage: Coverage,
}

/// The coverage summary of `/healthz`.
#[derive(Serialize)]
struct Coverage {
    /// A trusted log list is loaded (gap tracking and backfill on).
    enabled: bool,
    /// Listed logs the feed delivered entries of.
    logs_seen: usize,
    /// Missing entries not yet settled or fetched.
    open_gap_entries: i64,
    /// Listed logs more than 10 minutes behind, or silent that long while the feed
    /// delivers others.
    logs_lagging: usize,
    /// Entries known missing that were neither seen nor read since start
    /// (`certwatch_ct_entries_unproven`).
    entries_unproven: i64,
    /// Tailed logs whose last verification failed.
    logs_failing_verification: usize,
    /// Listed usable logs the feed has not delivered for 10 minutes while it
    /// delivers others.
    logs_not_on_feed: usize,
    /// Tailed logs of which nothing could be read for `CT_LOG_UNREACHABLE_S`.
    logs_unreachable: usize,
}

/// A serving thread (`http-0`, `http-1`): takes requests from tiny_http until
/// `stop` is set.
pub fn run_http(http: Arc<Http>) {
    while !http.stop.load(Ordering::SeqCst) {
        let backend = http.upstream.current();
        match backend.server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => respond(&http, request),
            Ok(None) => {}
            Err(e) => {
                // tiny_http's accept thread has ended: nothing more will come from
                // this server. The guard starts another.
                log::warn!("http: tiny_http stopped accepting ({e}); restarting it");
                http.upstream.mark_broken();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn respond(http: &Http, request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let known = matches!(path.as_str(), "/healthz" | "/metrics");
    let response = match (request.method(), known) {
        (_, false) => text(404, "not found\n", "text/plain; charset=utf-8"),
        (Method::Get | Method::Head, true) if path == "/healthz" => healthz(http),
        (Method::Get | Method::Head, true) => {
            http.metrics
                .queue(crate::metrics::Queue::Workers)
                .set(http.worker_queue.frames() as i64);
            text(
                200,
                &http.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        (_, true) => text(405, "method not allowed\n", "text/plain; charset=utf-8")
            .with_header(header("Allow", "GET, HEAD")),
    };
    if let Err(e) = request.respond(response) {
        log::debug!("http: response not sent: {e}");
    }
}

fn healthz(http: &Http) -> Response<std::io::Cursor<Vec<u8>>> {
    let h = &http.health;
    let dead_threads = h.dead_stages();
    let ok = dead_threads.is_empty();
    let last_event = h.last_ct_event.load(Ordering::Relaxed);
    let last_frame = h.last_frame.load(Ordering::Relaxed);
    let silence = http.feed_silence.as_secs() as i64;
    let quiet_since = if last_frame > 0 {
        last_frame
    } else {
        http.started_at
    };
    let connected = h.ws_connected.load(Ordering::Relaxed);
    let body = Healthz {
        ok,
        watch_entries: h.watch_entries.load(Ordering::Relaxed),
        last_ct_event_at: (last_event > 0).then_some(last_event),
        feed_connected: connected,
        // No frame is coming while the feed is down, however recent the last one.
        // In logs mode there is no feed to be stale.
        feed_stale: http.feed_enabled && (!connected || unix_now() - quiet_since > silence),
        database_reachable: h.db_reachable.load(Ordering::Relaxed),
        watch_list_loaded: h.watch_loaded.load(Ordering::Relaxed),
        draining: h.draining.load(Ordering::Relaxed),
        dead_threads,
        coverage: Coverage {
            enabled: h.coverage.load(Ordering::Relaxed),
            logs_seen: h.logs_seen.load(Ordering::Relaxed),
            open_gap_entries: h.open_gap_entries.load(Ordering::Relaxed),
            logs_lagging: h.logs_lagging.load(Ordering::Relaxed),
            entries_unproven: http.metrics.ct_entries_unproven.get(),
            logs_failing_verification: h.logs_failing_verification.load(Ordering::Relaxed),
            logs_not_on_feed: h.logs_not_on_feed.load(Ordering::Relaxed),
            logs_unreachable: h.logs_unreachable.load(Ordering::Relaxed),
        },
    };
    let json = serde_json::to_string(&body).expect("healthz serialises") + "\n";
    text(if ok { 200 } else { 503 }, &json, "application/json")
}

fn text(status: u16, body: &str, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

/// `certwatch healthcheck`: `Ok` when `url` answers 200 with `"ok": true`.
pub fn healthcheck(url: &str) -> Result<(), HealthcheckError> {
    let agent = crate::outbound::plain_agent(crate::outbound::USER_AGENT, Duration::from_secs(3));
    let unreachable = |e: ureq::Error| HealthcheckError::Unreachable(e.to_string());
    let mut response = agent.get(url).call().map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(unreachable)?;
    let ok = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    if status == 200 && ok {
        Ok(())
    } else {
        Err(HealthcheckError::NotOk {
            status,
            body: body.trim().chars().take(512).collect(),
        })
    }
}

/// Why `certwatch healthcheck` failed.
#[derive(Debug)]
pub enum HealthcheckError {
    /// No answer (nothing listens, a timeout, a broken response).
    Unreachable(String),
    /// An answer other than 200 with `"ok": true`.
    NotOk { status: u16, body: String },
}

impl std::fmt::Display for HealthcheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthcheckError::Unreachable(e) => write!(f, "no answer: {e}"),
            HealthcheckError::NotOk { status, body } => write!(f, "HTTP {status} {body}"),
        }
    }
}

impl std::error::Error for HealthcheckError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    fn ask(path: &Path, upstream: &Upstream) -> String {
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        stream
            .write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let request = upstream
            .current()
            .server
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("a request");
        request
            .respond(Response::from_string("hi").with_status_code(201))
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn upstream_serves_from_a_private_directory_and_restarts_on_a_fresh_socket() {
        let upstream = Upstream::new().unwrap();
        let first = upstream.current().path.clone();
        let dir = first.parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        assert!(ask(&first, &upstream).starts_with("HTTP/1.1 201"));
        upstream.mark_broken();
        assert!(upstream.is_broken());
        upstream.restart().unwrap();
        assert!(!upstream.is_broken());
        let second = upstream.current().path.clone();
        assert_ne!(first, second);
        assert!(!first.exists(), "the old socket is removed with its server");
        assert!(ask(&second, &upstream).starts_with("HTTP/1.1 201"));
        drop(upstream);
        assert!(!dir.exists(), "the directory is removed on drop");
    }
}
