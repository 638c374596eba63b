//! Runs the real certwatch pipeline in-process for a test (`Running`), builds
//! certstream messages (`Cert`), and reads the service's database and HTTP
//! endpoints. Each `Running` owns its shutdown trigger; dropping it drains the
//! service and waits for it.

use super::{FakeFeed, FakeWebhook, TestDb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A certwatch service running in this process.
pub struct Running {
    trigger: certwatch::shutdown::ShutdownTrigger,
    service: Option<certwatch::Service>,
    pub addr: SocketAddr,
}

/// A fresh database watching `watch`, a fake feed and a fake webhook receiver.
pub fn setup(watch: &[&str]) -> (TestDb, FakeFeed, FakeWebhook) {
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

/// `start` with a fake host-name lookup for the webhook guard.
pub fn start_with_lookup(
    db: &TestDb,
    feed: &FakeFeed,
    extra: &[(&str, &str)],
    lookup: certwatch::guard::Lookup,
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
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.service.is_some() {
            self.shutdown();
        }
    }
}

/// An HTTP request with `method`: (status, body).
pub fn request(url: &str, method: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent.get(url).call(),
        "POST" => agent.post(url).send(&b""[..]),
        "DELETE" => agent.delete(url).call(),
        other => panic!("unsupported method {other}"),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

static SERIAL: AtomicU64 = AtomicU64::new(0x1000);

/// A certificate as a certstream server would describe it (Go full-stream shape).
#[derive(Clone, Debug)]
pub struct Cert {
    pub names: Vec<String>,
    pub serial: String,
    pub fingerprint: String,
    pub not_before: i64,
    pub not_after: i64,
    pub precert: bool,
    pub aki: String,
    pub log_url: String,
    pub cert_index: u64,
    /// Base64 DER of the leaf (full stream), when set.
    pub as_der: Option<String>,
    /// The log's timestamp of the entry (certstream-server-go `source.timestamp`).
    pub log_timestamp: Option<f64>,
}

impl Cert {
    /// A final certificate for `names` with a fresh serial and fingerprint.
    pub fn new(names: &[&str]) -> Cert {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as u64;
        Cert {
            names: names.iter().map(|s| s.to_string()).collect(),
            serial: format!("0{:X}{:08X}", n, pid),
            fingerprint: colon_hex(&fake_hex(&format!("cert {n} {pid}"))),
            not_before: 1_768_474_800,
            not_after: 1_776_250_799,
            precert: false,
            aki: "keyid:cd:82:aa:3d:cb:0d:22:43:d5:45:35:80:bb:5a:8d:9b:f6:32:47:64".into(),
            log_url: "https://ct.example/log2026".into(),
            cert_index: n,
            as_der: None,
            log_timestamp: None,
        }
    }

    /// The precertificate of the same issuance: same serial, validity, names;
    /// its own fingerprint.
    pub fn precert(&self) -> Cert {
        let mut p = self.clone();
        p.precert = true;
        p.fingerprint = colon_hex(&fake_hex(&format!("precert of {}", self.fingerprint)));
        p
    }

    /// The same certificate as published by another log.
    pub fn in_log(&self, url: &str, index: u64) -> Cert {
        let mut c = self.clone();
        c.log_url = url.to_string();
        c.cert_index = index;
        c
    }

    /// Lower-case hex fingerprint without colons.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint.replace(':', "").to_ascii_lowercase()
    }

    /// The feed frame.
    pub fn frame(&self) -> String {
        let mut extensions = serde_json::json!({
            "authorityKeyIdentifier": self.aki,
            "basicConstraints": "CA:FALSE",
            "subjectAltName": self.names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(", "),
        });
        if self.precert {
            extensions["ctlPoisonByte"] = serde_json::Value::Bool(true);
        }
        let seen = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut source = serde_json::json!({"name": "Fake log", "url": self.log_url});
        if let Some(ts) = self.log_timestamp {
            source["timestamp"] = serde_json::json!(ts);
        }
        let mut frame = serde_json::json!({
            "data": {
                "cert_index": self.cert_index,
                "cert_link": format!("{}/ct/v1/get-entries?start={}&end={}", self.log_url, self.cert_index, self.cert_index),
                "leaf_cert": {
                    "all_domains": self.names,
                    "extensions": extensions,
                    "fingerprint": self.fingerprint,
                    "sha1": self.fingerprint,
                    "not_after": self.not_after,
                    "not_before": self.not_before,
                    "serial_number": self.serial,
                    "signature_algorithm": "ecdsa, sha256",
                    "subject": {"CN": self.names.first().cloned().unwrap_or_default(), "aggregated": "/CN=x"},
                    "issuer": {"C": "ZZ", "CN": "Fake Issuing CA E1", "O": "Fake CT Test PKI",
                               "aggregated": "/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI"},
                    "is_ca": false
                },
                "seen": seen,
                "source": source,
                "update_type": if self.precert { "PrecertLogEntry" } else { "X509LogEntry" }
            },
            "message_type": "certificate_update"
        });
        if let Some(der) = &self.as_der {
            frame["data"]["leaf_cert"]["as_der"] = serde_json::json!(der);
        }
        frame.to_string() + "\n"
    }
}

/// 40 hex digits derived from `seed` (a stand-in SHA-1 value).
pub fn fake_hex(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    (0..3u8)
        .map(|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (seed, i).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect::<String>()[..40]
        .to_string()
}

/// `AA:BB:...` upper-case colon hex of the first 40 hex digits.
pub fn colon_hex(hex: &str) -> String {
    let hex = hex.to_ascii_uppercase();
    let hex = &hex[..40];
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

/// Inventory and alert-table helpers on a test database (or cluster).
pub trait Inventory {
    /// A new connection to the database.
    fn connect(&self) -> postgres::Client;

    /// Adds `cert` to `public.certs` as the final certificate upstream issued.
    fn inventory(&self, cert: &Cert) {
        let sans = serde_json::to_string(&cert.names).unwrap();
        self.connect()
            .execute(
                "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
                 VALUES ($1, $2, $3::text::jsonb, $4, $5, 'test', extract(epoch from now())::bigint)",
                &[&cert.fingerprint, &cert.serial.to_ascii_lowercase(), &sans, &cert.not_before, &cert.not_after],
            )
            .expect("inventory insert");
    }

    /// Every alert row, by id.
    fn alerts(&self) -> Vec<AlertRow> {
        self.connect()
            .query(
                "SELECT severity, delivered, attempts, delivery_id, matched_sans, fingerprint_sha1, last_error
                   FROM public.alerts ORDER BY id",
                &[],
            )
            .expect("alerts query")
            .iter()
            .map(|r| AlertRow {
                severity: r.get(0),
                delivered: r.get(1),
                attempts: r.get(2),
                delivery_id: r.get(3),
                matched_sans: r.get(4),
                fingerprint_sha1: r.get(5),
                last_error: r.get(6),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub severity: String,
    pub delivered: bool,
    pub attempts: i32,
    pub delivery_id: String,
    pub matched_sans: Vec<String>,
    pub fingerprint_sha1: Option<String>,
    pub last_error: Option<String>,
}

impl Inventory for TestDb {
    fn connect(&self) -> postgres::Client {
        self.client()
    }
}

impl Inventory for super::cluster::TestCluster {
    fn connect(&self) -> postgres::Client {
        self.client()
    }
}
