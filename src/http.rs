//! HTTP: the `http` thread serving `GET /healthz` and `GET /metrics` with
//! tiny_http, and the client behind `certwatch healthcheck`.
//!
//! Read-only: it reads `Health` and renders `Metrics`, nothing else. It is the
//! last thread to stop, so `/healthz` answers throughout a drain.

use crate::metrics::Metrics;
use crate::threads::{Health, unix_now};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// What the http thread serves from.
pub struct Http {
    pub server: Arc<Server>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Beyond this without a frame the feed counts as stale in `/healthz` (as it
    /// does at once while the feed is down).
    pub feed_silence: Duration,
    pub started_at: i64,
    /// Frames queued between the feed and the workers, read at scrape time.
    pub worker_queue: Arc<crate::worker::QueueBudget>,
    /// Set by the pipeline once every other stage has stopped.
    pub stop: Arc<AtomicBool>,
}

/// Binds the listener; failure is a start-up error.
pub fn bind(host: IpAddr, port: u16) -> Result<Server, String> {
    let addr = SocketAddr::new(host, port);
    Server::http(addr).map_err(|e| format!("cannot listen on {addr} (API_HOST:API_PORT): {e}"))
}

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
}

/// The http thread: serves until `stop` is set.
pub fn run_http(http: Http) {
    while !http.stop.load(Ordering::SeqCst) {
        match http.server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => respond(&http, request),
            Ok(None) => {}
            Err(e) => log::warn!("http: {e}"),
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
        feed_stale: !connected || unix_now() - quiet_since > silence,
        database_reachable: h.db_reachable.load(Ordering::Relaxed),
        watch_list_loaded: h.watch_loaded.load(Ordering::Relaxed),
        draining: h.draining.load(Ordering::Relaxed),
        dead_threads,
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

/// `certwatch healthcheck`: true when `url` answers 200 with `"ok": true`.
pub fn healthcheck(url: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let ok = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    if status == 200 && ok {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {status} {}", body.trim()))
    }
}
