//! Runs the real certwatch pipeline in-process for a test (`Running`) and reads its
//! HTTP endpoints. Each `Running` owns its shutdown trigger; dropping it drains the
//! service and waits for it.

use crate::probe::{metric_sum, metric_value, request};
use crate::{FakeFeed, FakeWebhook, TestDb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

/// A certwatch service running in this process.
pub struct Running {
    trigger: certwatch::shutdown::ShutdownTrigger,
    service: Option<certwatch::Service>,
    pub addr: SocketAddr,
}

/// What a test's service runs against: a fresh database watching `watch`, a fake
/// feed and a fake webhook receiver (none of them started by the service yet).
/// The one setup of the kit: tests that need more (a fake CT log, a log list, a
/// service already started) build on it.
pub fn db_feed_and_webhook(watch: &[&str]) -> (TestDb, FakeFeed, FakeWebhook) {
    let db = TestDb::new();
    db.watch(watch);
    (db, FakeFeed::start(), FakeWebhook::start())
}

/// Starts the service with the test environment; `extra` overrides it.
pub fn start(
    db: &TestDb,
    feed: &FakeFeed,
    webhook: Option<&FakeWebhook>,
    extra: &[(&str, &str)],
) -> Running {
    let config = config(db, feed, webhook, extra);
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start(config, shutdown).expect("service starts");
    running(trigger, service)
}

/// `start` with coverage on: the trusted log list `list` (a file), and `extra`;
/// returns once the service is connected to `feed` and has loaded the list.
pub fn start_covered(
    db: &TestDb,
    feed: &FakeFeed,
    webhook: Option<&FakeWebhook>,
    list: &std::path::Path,
    extra: &[(&str, &str)],
) -> Running {
    let list = list.to_str().expect("a UTF-8 path").to_string();
    let mut env = vec![("CT_LOG_LIST", list.as_str())];
    env.extend_from_slice(extra);
    let svc = start(db, feed, webhook, &env);
    assert!(
        feed.wait_for_client(Duration::from_secs(10)),
        "the service did not connect to the feed"
    );
    assert!(
        crate::wait::wait_until(Duration::from_secs(10), || svc
            .metric("certwatch_ct_coverage_enabled")
            == 1.0),
        "the log list was not loaded"
    );
    svc
}

/// `start` with a fake host-name lookup for the webhook guard.
pub fn start_with_lookup(
    db: &TestDb,
    feed: &FakeFeed,
    extra: &[(&str, &str)],
    lookup: certwatch::ssrf::Lookup,
) -> Result<Running, certwatch::Error> {
    let config = config(db, feed, None, extra);
    let (trigger, shutdown) = certwatch::shutdown::channel();
    let service = certwatch::start_with_lookup(config, shutdown, lookup)?;
    Ok(running(trigger, service))
}

fn running(trigger: certwatch::shutdown::ShutdownTrigger, service: certwatch::Service) -> Running {
    let addr = service.http_addr();
    Running {
        trigger,
        service: Some(service),
        addr,
    }
}

/// The environment every test service starts from; `extra` overrides it.
pub fn config(
    db: &TestDb,
    feed: &FakeFeed,
    webhook: Option<&FakeWebhook>,
    extra: &[(&str, &str)],
) -> certwatch::Config {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
    let mut env: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("CERTSTREAM_URL", feed.url()),
        ("API_PORT", "0".to_string()),
        ("WORKERS", "2".to_string()),
        ("SUSPICIOUS_GRACE_S", "1".to_string()),
        ("WATCH_REFRESH_INTERVAL_S", "3600".to_string()),
        // Never the internet: a test that wants coverage names a file or a FakeCtLog.
        ("CT_LOG_LIST", "off".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    if let Some(hook) = webhook {
        env.insert("WEBHOOK_URL".into(), hook.url());
    }
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    certwatch::Config::from_lookup(|name| env.get(name).cloned()).expect("test config is valid")
}

impl Running {
    /// Triggers shutdown and waits for the drain; returns how long it took.
    pub fn stop(mut self) -> Duration {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Duration {
        let started = Instant::now();
        self.trigger.trigger();
        if let Some(service) = self.service.take() {
            service.wait().expect("service stops cleanly");
        }
        started.elapsed()
    }

    /// Asks for a reload, as SIGHUP does (watch list, inventory, CT log list).
    pub fn reload(&self) {
        self.trigger.reload();
    }

    /// GET a path on the service's HTTP port: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        request(&format!("http://{}{path}", self.addr), "GET")
    }

    /// The value of one sample of `/metrics`, e.g. `certwatch_alerts_total{severity="info"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        metric_value(&body, series)
            .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{body}"))
    }

    /// The sum of every sample of the metric `name`, whatever its labels.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        metric_sum(&body, name)
    }

    /// Feed frames the workers are done with (counted by message type, or as parse
    /// errors). Counted once a worker's whole batch is handled, so every frame
    /// counted has been matched and handed to classification: with
    /// `SUSPICIOUS_GRACE_S=0`, or for a certificate the inventory knows, its alert
    /// is recorded (or found to be a copy) by then. The positive signal that a
    /// frame had its chance to alert.
    pub fn frames_handled(&self) -> f64 {
        let (_, body) = self.get("/metrics");
        metric_sum(&body, "certwatch_ct_messages_total")
            + metric_sum(&body, "certwatch_ct_parse_errors_total")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.service.is_some() {
            self.shutdown();
        }
    }
}

/// Waits at most `timeout` for an in-process service to stop after its shutdown
/// was triggered.
pub fn wait_service(service: certwatch::Service, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::Builder::new()
        .name("load-wait".into())
        .spawn(move || {
            let _ = tx.send(service.wait().map_err(|e| e.to_string()));
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the service stopped with an error: {e}")),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(format!(
            "the service did not stop within {}s of shutdown",
            timeout.as_secs()
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            Err("the service's pipeline thread panicked".into())
        }
    }
}
