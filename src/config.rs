//! Configuration: the environment read once at start-up into a validated `Config`.
//!
//! Runs on the main thread, once. Pure but for one file: `Config::from_lookup`
//! takes any lookup function, so tests pass a map instead of touching the process
//! environment; the `sslrootcert` file a DSN names is read, so that an unusable
//! one stops start-up. A bad value is a `ConfigError` that names the variable and
//! what was expected; secrets and DSN passwords live in `Secret`, whose `Debug`
//! prints `<redacted>`. `PostgresDsn` (the DSN with libpq's TLS options
//! translated for the postgres crate) is also read by `Store::new`, on its
//! caller's thread.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Webhook targets at most (`WEBHOOK_URL` entries): one thread each.
pub const MAX_WEBHOOK_TARGETS: usize = 16;

/// A validated configuration. Built by `from_lookup`/`from_env`; no `Default`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Postgres connection string (password redacted in `Debug`).
    pub postgres_dsn: Secret,
    /// certstream WebSocket URL, `ws://` or `wss://`.
    pub certstream_url: String,
    /// Extra PEM CA certificates trusted for a `wss://` feed, besides the public roots.
    pub certstream_ca_file: Option<std::path::PathBuf>,
    pub api_host: IpAddr,
    pub api_port: u16,
    /// Webhook targets (`WEBHOOK_URL`, comma-separated); empty is observer mode
    /// (alerts recorded and logged only). Redacted in `Debug`: a webhook URL is
    /// often a bearer secret.
    pub webhook_urls: Vec<Secret>,
    pub webhook_timeout: Duration,
    /// The signing key (`WEBHOOK_SECRET`), a `whsec_` value already decoded.
    pub webhook_secret: Option<SigningKey>,
    /// The previous signing key during a rotation: the Standard Webhooks signature
    /// is sent with both keys, `X-CT-Signature` with the current one only.
    pub webhook_secret_previous: Option<SigningKey>,
    pub webhook_format: WebhookFormat,
    pub cleanup_interval: Duration,
    pub alert_retention: Duration,
    pub suspicious_grace: Duration,
    pub watch_refresh_interval: Duration,
    pub log_level: log::LevelFilter,
    pub redelivery_interval: Duration,
    pub redelivery_max_age: Duration,
    pub webhook_deny_private: bool,
    /// No frame for this long means the feed connection is dead.
    pub feed_silence: Duration,
    /// Interval between client WebSocket pings (at most 30 s).
    pub feed_ping_interval: Duration,
    /// Matcher/classifier worker threads.
    pub workers: usize,
    /// Where the trusted CT log list is read (`CT_LOG_LIST`): an `http(s)://` URL,
    /// a file path, or `None` (`off`: coverage and backfill off).
    pub ct_log_list: Option<String>,
    /// Entries fetched per gap at most (`BACKFILL_MAX_GAP`); the rest is abandoned.
    pub backfill_max_gap: u64,
    /// Operator contact appended to the CT requests' User-Agent (`CT_CONTACT`).
    pub ct_contact: Option<String>,
    /// What to do with the gaps of a log whose feed leaves holes by design.
    pub ct_feed_holes: FeedHoles,
    /// Where certificates come from (`CT_SOURCE`).
    pub ct_source: CtSource,
    /// A listed usable log without an entry on the feed for this long, while the
    /// feed delivers others, is not on the feed (`CT_NOT_ON_FEED_S`).
    pub not_on_feed_after: Duration,
    /// A tailed log whose reading has not got through for this long is
    /// unreachable (`CT_LOG_UNREACHABLE_S`).
    pub log_unreachable_after: Duration,
}

/// `CT_SOURCE`: where certificates come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtSource {
    /// A certstream server (`CERTSTREAM_URL`); backfill fills what it skips (the
    /// default, as the Python predecessor).
    Certstream,
    /// Every usable log of `CT_LOG_LIST`, tailed directly, verified against its
    /// signed heads; no certstream server.
    Logs,
    /// Both: the logs are read for coverage, the feed only shortens latency.
    Both,
}

impl CtSource {
    /// Whether a certstream feed is read.
    pub fn feed(self) -> bool {
        matches!(self, CtSource::Certstream | CtSource::Both)
    }

    /// Whether the logs are tailed.
    pub fn logs(self) -> bool {
        matches!(self, CtSource::Logs | CtSource::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CtSource::Certstream => "certstream",
            CtSource::Logs => "logs",
            CtSource::Both => "both",
        }
    }
}

/// `CT_FEED_HOLES`: the gaps of a log that looks *dense* (a certstream server that
/// drops cross-log duplicates, so its sequences have holes by design).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedHoles {
    /// Fetch them like any gap.
    Fetch,
    /// Fetch them in whole 256-entry stretches (one tile or page each).
    Coalesce,
    /// Do not fetch: count them as skipped (the default).
    Count,
}

/// Chrome's v3 log list, the default `CT_LOG_LIST`.
pub const DEFAULT_CT_LOG_LIST: &str = "https://www.gstatic.com/ct/log_list/v3/log_list.json";
/// Default `BACKFILL_MAX_GAP`: entries fetched per gap at most (10,000 entries are
/// about 40 tiles, some 4 MB compressed).
pub const DEFAULT_BACKFILL_MAX_GAP: u64 = 10_000;

/// The webhook body format (README, "Webhook").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The predecessor's body, field for field.
    Certwatch,
    /// The CT Watch webhook body.
    Ctwatch,
}

/// A value that must never reach a log line: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a connection, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A webhook signing secret and the key each signature scheme uses: its bytes
/// for `X-CT-Signature`; for the Standard Webhooks signature the base64-decoded
/// bytes after a `whsec_` prefix, else its bytes. `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    secret: Secret,
    standard: Vec<u8>,
    unpadded: bool,
}

/// What `whsec_` values the Standard Webhooks libraries decode: the standard
/// base64 alphabet, padding optional or partial (Python appends `==` before
/// decoding; the JavaScript, Go and Rust libraries require full padding),
/// non-zero trailing bits tolerated (Python, Go). URL-safe or other characters
/// (which Python would silently drop, giving another key), excess padding and an
/// impossible length are errors.
const WHSEC_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

impl SigningKey {
    /// Reads a secret; a `whsec_` value must decode as the Standard Webhooks
    /// libraries decode it, to a non-empty key. The error never holds the value.
    pub fn parse(var: &'static str, value: &str) -> Result<SigningKey, ConfigError> {
        use base64::Engine;
        let Some(b64) = value.strip_prefix("whsec_") else {
            return Ok(SigningKey {
                secret: Secret::new(value),
                standard: value.as_bytes().to_vec(),
                unpadded: false,
            });
        };
        match WHSEC_BASE64.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(SigningKey {
                secret: Secret::new(value),
                standard: key,
                unpadded: b64.len() % 4 != 0,
            }),
            _ => Err(ConfigError {
                var,
                value: Some("<redacted>".to_string()),
                expected:
                    "whsec_ followed by standard base64 of a non-empty key (A-Z a-z 0-9 + /, \
                           padding optional), as the Standard Webhooks libraries decode it; \
                           e.g. whsec_$(head -c 32 /dev/urandom | base64)"
                        .to_string(),
            }),
        }
    }

    /// The secret's own bytes: the `X-CT-Signature` HMAC key.
    pub fn ct_key(&self) -> &[u8] {
        self.secret.expose().as_bytes()
    }

    /// The Standard Webhooks HMAC key.
    pub fn standard_key(&self) -> &[u8] {
        &self.standard
    }

    /// The secret as configured.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// A `whsec_` value without its full base64 padding: the Python library
    /// accepts it, the JavaScript, Go and Rust libraries refuse it.
    pub fn is_unpadded(&self) -> bool {
        self.unpadded
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why start-up stopped: one variable, its value, what was expected.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    /// The offending value, or `None` when a required variable is missing.
    pub value: Option<String>,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(
                f,
                "invalid {}={:?}: expected {}",
                self.var, value, self.expected
            ),
            None => write!(f, "missing {}: expected {}", self.var, self.expected),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every variable through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(&lookup);
        let postgres_dsn = match env.get("POSTGRES_DSN") {
            Some(dsn) => Secret(parse_dsn(&dsn)?),
            None => {
                return Err(missing(
                    "POSTGRES_DSN",
                    "a postgresql:// URL or key=value DSN",
                ));
            }
        };
        let certstream_url = env
            .get("CERTSTREAM_URL")
            .unwrap_or_else(|| "ws://localhost:8080/full-stream".to_string());
        check_url("CERTSTREAM_URL", &certstream_url, &["ws", "wss"])?;
        let mut webhook_urls = Vec::new();
        for url in env
            .get("WEBHOOK_URL")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            check_url("WEBHOOK_URL", url, &["http", "https"])?;
            if !webhook_urls.iter().any(|u: &Secret| u.expose() == url) {
                webhook_urls.push(Secret(url.to_string()));
            }
        }
        if webhook_urls.len() > MAX_WEBHOOK_TARGETS {
            // The count only: the URLs are secrets.
            return Err(invalid(
                "WEBHOOK_URL",
                &format!("{} URLs", webhook_urls.len()),
                &format!(
                    "at most {} comma-separated URLs (one delivery thread each)",
                    MAX_WEBHOOK_TARGETS
                ),
            ));
        }
        let webhook_format = match env.get("WEBHOOK_FORMAT").as_deref() {
            None | Some("certwatch") => WebhookFormat::Certwatch,
            Some("ctwatch") => WebhookFormat::Ctwatch,
            Some(other) => return Err(invalid("WEBHOOK_FORMAT", other, "certwatch or ctwatch")),
        };
        let feed_ping_interval = env.seconds("FEED_PING_S", 20)?;
        if feed_ping_interval > Duration::from_secs(30) {
            return Err(invalid(
                "FEED_PING_S",
                &env.get("FEED_PING_S").unwrap_or_default(),
                "whole seconds from 1 to 30",
            ));
        }
        let (api_host, api_port) = api_address(&env)?;
        let ct_log_list = match env.get("CT_LOG_LIST") {
            None => Some(DEFAULT_CT_LOG_LIST.to_string()),
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) if v.contains("://") => {
                check_url("CT_LOG_LIST", &v, &["http", "https"])?;
                Some(v)
            }
            Some(v) => Some(v),
        };
        let backfill_max_gap = match env.get("BACKFILL_MAX_GAP") {
            None => DEFAULT_BACKFILL_MAX_GAP,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "BACKFILL_MAX_GAP",
                        &raw,
                        "a whole number from 1 to 1000000",
                    ));
                }
            },
        };
        let ct_contact = env.get("CT_CONTACT");
        if let Some(c) = &ct_contact
            && (c.len() > 200 || !c.bytes().all(|b| (0x20..0x7f).contains(&b)))
        {
            return Err(invalid(
                "CT_CONTACT",
                c,
                "printable ASCII of at most 200 bytes (an e-mail or URL)",
            ));
        }
        let ct_feed_holes = match env.get("CT_FEED_HOLES").as_deref() {
            None | Some("count") => FeedHoles::Count,
            Some("fetch") => FeedHoles::Fetch,
            Some("coalesce") => FeedHoles::Coalesce,
            Some(other) => {
                return Err(invalid("CT_FEED_HOLES", other, "fetch, coalesce or count"));
            }
        };
        let ct_source = match env.get("CT_SOURCE").as_deref() {
            None | Some("certstream") => CtSource::Certstream,
            Some("logs") => CtSource::Logs,
            Some("both") => CtSource::Both,
            Some(other) => return Err(invalid("CT_SOURCE", other, "certstream, logs or both")),
        };
        if ct_source.logs() && ct_log_list.is_none() {
            return Err(invalid(
                "CT_LOG_LIST",
                "off",
                "a log list: CT_SOURCE=logs and both read the logs it names",
            ));
        }
        let default_workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Config {
            postgres_dsn,
            certstream_url,
            certstream_ca_file: env.get("CERTSTREAM_CA_FILE").map(std::path::PathBuf::from),
            api_host,
            api_port,
            webhook_urls,
            webhook_timeout: env.seconds("WEBHOOK_TIMEOUT_S", 10)?,
            webhook_secret: env
                .get("WEBHOOK_SECRET")
                .map(|v| SigningKey::parse("WEBHOOK_SECRET", &v))
                .transpose()?,
            webhook_secret_previous: env
                .get("WEBHOOK_SECRET_PREVIOUS")
                .map(|v| SigningKey::parse("WEBHOOK_SECRET_PREVIOUS", &v))
                .transpose()?,
            webhook_format,
            cleanup_interval: env.seconds("CLEANUP_INTERVAL_S", 3600)?,
            alert_retention: env.seconds("ALERT_RETENTION_S", 2_592_000)?,
            suspicious_grace: env.seconds_or_zero("SUSPICIOUS_GRACE_S", 10)?,
            watch_refresh_interval: env.seconds("WATCH_REFRESH_INTERVAL_S", 60)?,
            log_level: parse_log_level(env.get("LOG_LEVEL").as_deref())?,
            redelivery_interval: env.seconds("REDELIVERY_INTERVAL_S", 60)?,
            redelivery_max_age: env.seconds("REDELIVERY_MAX_AGE_S", 259_200)?,
            webhook_deny_private: env.parse("WEBHOOK_DENY_PRIVATE", "false", "true or false")?,
            feed_silence: env.seconds("FEED_SILENCE_S", 120)?,
            feed_ping_interval,
            workers: match env.get("WORKERS") {
                None => default_workers,
                Some(raw) => match raw.parse::<usize>() {
                    Ok(n) if (1..=256).contains(&n) => n,
                    _ => return Err(invalid("WORKERS", &raw, "a whole number from 1 to 256")),
                },
            },
            ct_log_list,
            backfill_max_gap,
            ct_contact,
            ct_feed_holes,
            ct_source,
            not_on_feed_after: env.seconds("CT_NOT_ON_FEED_S", 600)?,
            log_unreachable_after: env.seconds("CT_LOG_UNREACHABLE_S", 600)?,
        })
    }

    /// Every string that must not appear in a log record, for `logging::init`:
    /// the webhook and feed URLs and their secret parts, the DSN's password, the
    /// signing keys.
    pub fn log_secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for url in &self.webhook_urls {
            out.extend(crate::logging::url_secrets(url.expose()));
        }
        out.extend(crate::logging::url_secrets(&self.certstream_url));
        let dsn = self.postgres_dsn.expose();
        if let Some(password) = PostgresDsn::parse(dsn).ok().and_then(|d| {
            d.config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        }) {
            out.push(password);
        }
        out.push(dsn.to_string());
        for secret in [&self.webhook_secret, &self.webhook_secret_previous]
            .into_iter()
            .flatten()
        {
            out.push(secret.expose().to_string());
        }
        out
    }

    /// The URL `certwatch healthcheck` asks: the bound address, with an unspecified
    /// bind address replaced by loopback.
    pub fn healthz_url(&self) -> String {
        healthz_url(self.api_host, self.api_port)
    }
}

/// The healthcheck URL from `API_HOST`/`API_PORT` alone, so `certwatch healthcheck`
/// works without the service's other settings.
pub fn healthz_url_from_env() -> Result<String, ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let (host, port) = api_address(&Env(&lookup))?;
    Ok(healthz_url(host, port))
}

fn api_address(env: &Env<'_>) -> Result<(IpAddr, u16), ConfigError> {
    Ok((
        env.parse("API_HOST", "127.0.0.1", "an IP address")?,
        env.parse("API_PORT", "8765", "a TCP port (0-65535)")?,
    ))
}

fn healthz_url(api_host: IpAddr, api_port: u16) -> String {
    {
        let host = match api_host {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        format!("http://{host}:{api_port}/healthz")
    }
}

/// Lookup wrapper that treats empty or blank values as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let raw = self.get(name);
        let text = raw.as_deref().unwrap_or(default);
        text.to_ascii_lowercase()
            .parse()
            .map_err(|_| invalid(name, text, expected))
    }

    /// Whole seconds, at least 1.
    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let d = self.seconds_or_zero(name, default)?;
        if d.is_zero() {
            return Err(invalid(name, "0", "whole seconds, at least 1"));
        }
        Ok(d)
    }

    /// Whole seconds, zero allowed.
    fn seconds_or_zero(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 10 * 365 * 86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| invalid(name, &raw, "whole seconds")),
        }
    }
}

fn invalid(var: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        var,
        value: Some(value.to_string()),
        expected: expected.to_string(),
    }
}

fn missing(var: &'static str, expected: &str) -> ConfigError {
    ConfigError {
        var,
        value: None,
        expected: expected.to_string(),
    }
}

/// Accepts a URL DSN or a libpq key=value DSN, and reads the `sslrootcert` file
/// it names (so that an unreadable one stops start-up). The error says what is
/// wrong (the postgres crate names the option, never its value; a root file by
/// its path) and never echoes the DSN, since it may hold a password.
fn parse_dsn(dsn: &str) -> Result<String, ConfigError> {
    let parsed = PostgresDsn::parse(dsn)?;
    if let Some(roots) = parsed.check.roots() {
        roots.load().map_err(|e| ConfigError {
            var: "POSTGRES_DSN",
            value: Some(format!("sslrootcert={}", e.path.display())),
            expected: format!(
                "a readable PEM file of one or more CA certificates, or `system` ({})",
                e.problem
            ),
        })?;
    }
    Ok(dsn.to_string())
}

/// `POSTGRES_DSN` as certwatch uses it: what the postgres crate takes, and the
/// server certificate check libpq's options ask for. The crate knows
/// `sslmode=disable|prefer|require` only: `verify-ca` and `verify-full` reach it
/// as `require` (TLS or no connection), `sslrootcert` not at all; the check is
/// the store's TLS verifier (`store/tls.rs`). No `Debug`: the DSN holds the password.
#[derive(Clone)]
pub struct PostgresDsn {
    /// The connection settings, the libpq-only options translated.
    pub config: postgres::Config,
    /// What the server certificate must satisfy.
    pub check: ServerCheck,
}

/// The server certificate check of a Postgres connection (libpq's `sslmode` and
/// `sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCheck {
    /// None: `sslmode=prefer|require` without `sslrootcert` (encrypted, not
    /// verified, as libpq), or `disable`.
    Unverified,
    /// The chain must lead to one of these roots; the host name is not checked:
    /// `verify-ca`, and (as libpq) `prefer`/`require` with an `sslrootcert` file.
    Chain(RootCerts),
    /// The chain, and the host name (or IP address) against the certificate's
    /// subject alternative names: `verify-full`.
    ChainAndName(RootCerts),
}

impl ServerCheck {
    /// The roots the chain is checked against, if it is checked.
    pub fn roots(&self) -> Option<&RootCerts> {
        match self {
            ServerCheck::Unverified => None,
            ServerCheck::Chain(roots) | ServerCheck::ChainAndName(roots) => Some(roots),
        }
    }
}

/// Where the trusted roots of a verified Postgres connection come from
/// (`sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=system`, and `verify-full` without `sslrootcert`: the public
    /// web roots compiled into certwatch (Mozilla's, from webpki-roots; the same
    /// roots a `wss://` feed is checked against), not the operating system's store.
    System,
    /// A PEM file of one or more CA certificates.
    File(std::path::PathBuf),
}

impl RootCerts {
    /// The roots, read now (a file is read on every call).
    pub fn load(&self) -> Result<rustls::RootCertStore, RootCertError> {
        use rustls::pki_types::pem::PemObject;
        let path = match self {
            RootCerts::System => {
                return Ok(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                });
            }
            RootCerts::File(path) => path,
        };
        let problem = |problem: String| RootCertError {
            path: path.clone(),
            problem,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| problem(pem_problem(e)))?
        {
            let cert = cert.map_err(|e| problem(pem_problem(e)))?;
            roots
                .add(cert)
                .map_err(|e| problem(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(problem("no PEM certificate in it".into()));
        }
        Ok(roots)
    }
}

/// What went wrong reading a PEM file, without rustls' enum names.
fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not PEM: {other:?}"),
    }
}

/// An `sslrootcert` file that cannot be used: its path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCertError {
    pub path: std::path::PathBuf,
    pub problem: String,
}

impl fmt::Display for RootCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "POSTGRES_DSN sslrootcert={}: {}",
            self.path.display(),
            self.problem
        )
    }
}

impl std::error::Error for RootCertError {}

impl PostgresDsn {
    /// Reads a URL or key=value DSN: libpq's `sslmode=verify-ca|verify-full` and
    /// `sslrootcert` translated (see `ServerCheck`), the rest parsed by the
    /// postgres crate. Does not read the root file (`RootCerts::load` does).
    /// `verify-full` without `sslrootcert` trusts the system roots (libpq would
    /// read `~/.postgresql/root.crt`); `verify-ca` needs `sslrootcert` (a chain
    /// check without the host name proves nothing against the public roots), a
    /// file; `sslrootcert=system` needs `verify-full` or no `sslmode` (as libpq 16).
    /// Errors name the option, never a value from the DSN.
    pub fn parse(dsn: &str) -> Result<PostgresDsn, ConfigError> {
        let refuse = |expected: String| ConfigError {
            var: "POSTGRES_DSN",
            value: Some("<redacted>".to_string()),
            expected,
        };
        let (translated, tls) = translate_dsn(dsn);
        let roots = tls.rootcert.filter(|r| !r.is_empty()).map(|r| {
            if r == "system" {
                RootCerts::System
            } else {
                RootCerts::File(r.into())
            }
        });
        let check = match (tls.sslmode.as_deref(), roots) {
            (Some("verify-full"), roots) | (None, roots @ Some(RootCerts::System)) => {
                ServerCheck::ChainAndName(roots.unwrap_or(RootCerts::System))
            }
            (_, Some(RootCerts::System)) => {
                return Err(refuse(
                    "sslmode=verify-full (or no sslmode) with sslrootcert=system: the public \
                     roots vouch for a certificate only together with its host name"
                        .to_string(),
                ));
            }
            (Some("verify-ca"), None) => {
                return Err(refuse(
                    "sslrootcert=/path/to/ca.pem with sslmode=verify-ca (it checks the \
                     certificate chain but not the host name, which proves something only \
                     against your own CA), or sslmode=verify-full (checked against the \
                     system roots unless sslrootcert names a file)"
                        .to_string(),
                ));
            }
            (Some("verify-ca"), Some(roots)) => ServerCheck::Chain(roots),
            // As libpq: disable ignores sslrootcert; prefer and require verify the
            // chain when a root file is given.
            (Some("disable"), _) | (_, None) => ServerCheck::Unverified,
            (_, Some(roots)) => ServerCheck::Chain(roots),
        };
        match translated.parse::<postgres::Config>() {
            Ok(config) => Ok(PostgresDsn { config, check }),
            Err(e) => Err(refuse(format!(
                "a postgresql://user:pw@host:5432/db URL or key=value DSN ({})",
                dsn_error_cause(&e)
            ))),
        }
    }
}

/// The libpq-only TLS options found in a DSN (the last of each, as libpq).
#[derive(Debug, Default, PartialEq, Eq)]
struct LibpqTls {
    sslmode: Option<String>,
    rootcert: Option<String>,
}

/// The DSN as the postgres crate takes it, and the TLS options it would choke
/// on: `sslrootcert` removed, `sslmode=verify-*` made `require`, `require` added
/// when `sslrootcert=system` comes without `sslmode`. A DSN that does not tokenize
/// is returned as it is, for the crate to name what is wrong.
fn translate_dsn(dsn: &str) -> (String, LibpqTls) {
    let translated = if let Some(rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|p| dsn.strip_prefix(p))
    {
        translate_url(dsn, rest)
    } else {
        translate_key_values(dsn)
    };
    translated.unwrap_or_else(|| (dsn.to_string(), LibpqTls::default()))
}

/// The crate's sslmode for libpq's: verify-* is TLS or nothing.
fn driver_sslmode(mode: &str) -> &str {
    match mode {
        "verify-ca" | "verify-full" => "require",
        other => other,
    }
}

/// Whether `require` must be added: `sslrootcert=system` implies `verify-full`.
fn needs_require(tls: &LibpqTls) -> bool {
    tls.sslmode.is_none() && tls.rootcert.as_deref() == Some("system")
}

/// A URL DSN, split as the postgres crate splits it: credentials up to the first
/// `@`, then the query after the next `?`, `key=value` pairs up to each `&`,
/// percent-decoded. The other pairs are kept byte for byte.
fn translate_url(dsn: &str, rest: &str) -> Option<(String, LibpqTls)> {
    let after_credentials = rest.find('@').map_or(0, |i| i + 1);
    let Some(q) = rest[after_credentials..].find('?') else {
        return Some((dsn.to_string(), LibpqTls::default()));
    };
    let query_at = dsn.len() - rest.len() + after_credentials + q + 1;
    let (head, mut query) = dsn.split_at(query_at);
    let mut tls = LibpqTls::default();
    let mut kept: Vec<String> = Vec::new();
    while !query.is_empty() {
        let (raw_key, tail) = query.split_once('=')?;
        let (raw_value, tail) = tail.split_once('&').unwrap_or((tail, ""));
        query = tail;
        let key = percent_decode(raw_key)?;
        match key.as_str() {
            "sslrootcert" => tls.rootcert = Some(percent_decode(raw_value)?),
            "sslmode" => {
                let mode = percent_decode(raw_value)?;
                kept.push(format!("sslmode={}", driver_sslmode(&mode)));
                tls.sslmode = Some(mode);
            }
            _ => kept.push(format!("{raw_key}={raw_value}")),
        }
    }
    if needs_require(&tls) {
        kept.push("sslmode=require".to_string());
    }
    let head = if kept.is_empty() {
        &head[..head.len() - 1]
    } else {
        head
    };
    Some((format!("{head}{}", kept.join("&")), tls))
}

/// `%XX` decoded, as UTF-8; `None` when it is not.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A key=value DSN, tokenized as the postgres crate (and libpq) does: keys up to
/// `=` or white space, white space around `=`, values plain (a backslash escapes
/// the next character) or in single quotes (the same escapes). It is written back
/// with every value quoted, which the crate reads as the same values.
fn translate_key_values(dsn: &str) -> Option<(String, LibpqTls)> {
    let mut chars = dsn.chars().peekable();
    let mut tls = LibpqTls::default();
    let mut kept: Vec<(String, String)> = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.peek() {
                None if quoted => return None,
                None => break,
                Some('\'') if quoted => {
                    chars.next();
                    break;
                }
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(_) => {}
            }
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
                None => break,
            }
        }
        if value.is_empty() && !quoted {
            return None;
        }
        match key.as_str() {
            "sslrootcert" => tls.rootcert = Some(value),
            "sslmode" => {
                kept.push((key, driver_sslmode(&value).to_string()));
                tls.sslmode = Some(value);
            }
            _ => kept.push((key, value)),
        }
    }
    if needs_require(&tls) {
        kept.push(("sslmode".to_string(), "require".to_string()));
    }
    let text: Vec<String> = kept
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    Some((text.join(" "), tls))
}

/// What the postgres crate found wrong in a DSN: its error and the one beneath,
/// which names the option (`invalid value for option `port``), never the value.
fn dsn_error_cause(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => cause.to_string(),
        None => e.to_string(),
    }
}

fn check_url(var: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let expected = || format!("a {} URL with a host", schemes.join(":// or ") + "://");
    // The value may hold credentials or a token: errors show it redacted.
    let shown = redact_url(url, var != "WEBHOOK_URL");
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(var, &shown, &expected()));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let ok_scheme = schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme));
    if !ok_scheme || host.is_empty() || host.starts_with(':') || url.contains(char::is_whitespace) {
        return Err(invalid(var, &shown, &expected()));
    }
    Ok(())
}

/// A URL as it may be shown in a log line or an error: scheme, host and port, never
/// `user:password@`, the query or the fragment (either may carry a token); the path
/// only with `keep_path` (a webhook's path often is the token: it shows as `/…`).
/// A value without `://` shows as `<redacted>`.
pub fn redact_url(url: &str, keep_path: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or("");
    let path = match path {
        "" | "/" => path,
        _ if keep_path => path,
        _ => "/…",
    };
    let shown: String = format!("{scheme}://{host}{path}")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    shown
}

fn parse_log_level(raw: Option<&str>) -> Result<log::LevelFilter, ConfigError> {
    let Some(raw) = raw else {
        return Ok(log::LevelFilter::Info);
    };
    match raw.to_ascii_uppercase().as_str() {
        "ERROR" => Ok(log::LevelFilter::Error),
        "WARN" | "WARNING" => Ok(log::LevelFilter::Warn),
        "INFO" => Ok(log::LevelFilter::Info),
        "DEBUG" => Ok(log::LevelFilter::Debug),
        "TRACE" => Ok(log::LevelFilter::Trace),
        _ => Err(invalid(
            "LOG_LEVEL",
            raw,
            "ERROR, WARN, INFO, DEBUG or TRACE",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = [(
            "POSTGRES_DSN".to_string(),
            "postgresql://u:hunter2@db:5432/x".to_string(),
        )]
        .into();
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn check_err(var: &str, value: &str, expected_var: &str) {
        let err = config(&[(var, value)]).unwrap_err();
        assert_eq!(err.var, expected_var, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid {expected_var}=")),
            "{err}"
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.certstream_url, "ws://localhost:8080/full-stream");
        assert_eq!(c.api_host.to_string(), "127.0.0.1");
        assert_eq!(c.api_port, 8765);
        assert!(c.webhook_urls.is_empty());
        assert_eq!(c.webhook_timeout, Duration::from_secs(10));
        assert_eq!(c.webhook_format, WebhookFormat::Certwatch);
        assert_eq!(c.cleanup_interval, Duration::from_secs(3600));
        assert_eq!(c.alert_retention, Duration::from_secs(2_592_000));
        assert_eq!(c.suspicious_grace, Duration::from_secs(10));
        assert_eq!(c.watch_refresh_interval, Duration::from_secs(60));
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert_eq!(c.redelivery_interval, Duration::from_secs(60));
        assert_eq!(c.redelivery_max_age, Duration::from_secs(259_200));
        assert!(!c.webhook_deny_private);
        assert_eq!(c.feed_silence, Duration::from_secs(120));
        assert_eq!(c.feed_ping_interval, Duration::from_secs(20));
        assert!(c.workers >= 1);
    }

    #[test]
    fn bad_values_name_the_variable() {
        check_err("WEBHOOK_TIMEOUT_S", "abc", "WEBHOOK_TIMEOUT_S");
        check_err("WEBHOOK_TIMEOUT_S", "-1", "WEBHOOK_TIMEOUT_S");
        check_err("WEBHOOK_TIMEOUT_S", "0", "WEBHOOK_TIMEOUT_S");
        check_err("API_PORT", "70000", "API_PORT");
        check_err("API_HOST", "not-an-ip", "API_HOST");
        check_err("CERTSTREAM_URL", "http://x/full-stream", "CERTSTREAM_URL");
        check_err("CERTSTREAM_URL", "ws://", "CERTSTREAM_URL");
        check_err("WEBHOOK_URL", "ftp://x/hook", "WEBHOOK_URL");
        check_err("WEBHOOK_URL", "not a url", "WEBHOOK_URL");
        check_err("WEBHOOK_FORMAT", "xml", "WEBHOOK_FORMAT");
        check_err("WEBHOOK_URL", "https://a.example/x,ftp://b", "WEBHOOK_URL");
        check_err("LOG_LEVEL", "loud", "LOG_LEVEL");
        check_err("WORKERS", "0", "WORKERS");
        check_err("WEBHOOK_DENY_PRIVATE", "maybe", "WEBHOOK_DENY_PRIVATE");
        check_err("FEED_PING_S", "31", "FEED_PING_S");
        check_err("SUSPICIOUS_GRACE_S", "1.5", "SUSPICIOUS_GRACE_S");
    }

    #[test]
    fn accepted_spellings() {
        let c = config(&[
            ("LOG_LEVEL", "debug"),
            ("WEBHOOK_DENY_PRIVATE", "TRUE"),
            ("SUSPICIOUS_GRACE_S", "0"),
            ("CERTSTREAM_URL", "wss://certstream.example/full-stream"),
            ("WEBHOOK_URL", "https://n8n.example/webhook/ct"),
            ("WEBHOOK_FORMAT", "ctwatch"),
            ("API_HOST", "0.0.0.0"),
            ("WORKERS", "3"),
        ])
        .unwrap();
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert!(c.webhook_deny_private);
        assert_eq!(c.suspicious_grace, Duration::ZERO);
        assert_eq!(c.webhook_format, WebhookFormat::Ctwatch);
        assert_eq!(c.workers, 3);
        assert_eq!(c.healthz_url(), "http://127.0.0.1:8765/healthz");
    }

    #[test]
    fn several_webhook_targets() {
        let c = config(&[(
            "WEBHOOK_URL",
            " https://a.example/x , http://b.example:8080/y,https://a.example/x ",
        )])
        .unwrap();
        let urls: Vec<&str> = c.webhook_urls.iter().map(Secret::expose).collect();
        assert_eq!(urls, vec!["https://a.example/x", "http://b.example:8080/y"]);
        assert!(!format!("{c:?}").contains("a.example"));
    }

    #[test]
    fn at_most_sixteen_webhook_targets() {
        let urls = |n: usize| {
            (0..n)
                .map(|i| format!("https://h{i}.example/t0ken"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            config(&[("WEBHOOK_URL", &urls(16))])
                .unwrap()
                .webhook_urls
                .len(),
            16
        );
        let err = config(&[("WEBHOOK_URL", &urls(17))]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_URL");
        let text = err.to_string();
        assert!(
            text.contains("17 URLs") && text.contains("at most 16"),
            "{text}"
        );
        assert!(
            !text.contains("t0ken") && !text.contains("h1.example"),
            "{text}"
        );
    }

    #[test]
    fn whsec_secrets_decode_as_the_standard_webhooks_libraries_do() {
        let key = |v: &str| config(&[("WEBHOOK_SECRET", v)]).map(|c| c.webhook_secret.unwrap());
        // Padded and unpadded spell one key (the Python library pads before decoding).
        let padded = key("whsec_bmV3LWtleQ==").unwrap();
        let unpadded = key("whsec_bmV3LWtleQ").unwrap();
        assert_eq!(padded.standard_key(), b"new-key");
        assert_eq!(unpadded.standard_key(), b"new-key");
        assert!(!padded.is_unpadded());
        assert!(unpadded.is_unpadded());
        let short = key("whsec_bmV3LWtleQ=").unwrap();
        assert_eq!(short.standard_key(), b"new-key");
        assert!(short.is_unpadded());
        assert_eq!(unpadded.ct_key(), b"whsec_bmV3LWtleQ");
        // `+` and `/` are the standard alphabet.
        assert_eq!(key("whsec_+/8=").unwrap().standard_key(), &[0xfb, 0xff]);
        // A plain secret is its bytes for both schemes.
        assert_eq!(key("plain-key").unwrap().standard_key(), b"plain-key");
        // URL-safe base64, other characters, bad padding, nothing: refused,
        // naming the variable and never echoing the value.
        for bad in [
            "whsec_-_8=",
            "whsec_-_8",
            "whsec_not base64!",
            "whsec_bmV3LWtleQ===",
            "whsec_a",
            "whsec_",
            "whsec_====",
        ] {
            for var in ["WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"] {
                let err = config(&[(var, bad)]).map(|_| ()).expect_err(bad);
                assert_eq!(err.var, var, "{bad}");
                let line = err.to_string();
                assert_eq!(err.value.as_deref(), Some("<redacted>"));
                assert!(bad == "whsec_" || !line.contains(bad), "{line}");
                assert!(
                    line.contains("whsec_ followed by standard base64"),
                    "{line}"
                );
                assert!(!line.contains('\n'));
            }
        }
    }

    #[test]
    fn missing_dsn_is_an_error() {
        let err = Config::from_lookup(|_| None).unwrap_err();
        assert_eq!(err.var, "POSTGRES_DSN");
        assert!(err.to_string().starts_with("missing POSTGRES_DSN"), "{err}");
    }

    #[test]
    fn url_errors_show_the_url_redacted() {
        let err = config(&[(
            "WEBHOOK_URL",
            "ftp://alice:pa55word@hooks.example/hook-SECRETPATH?token=T0KEN#frag",
        )])
        .unwrap_err()
        .to_string();
        for secret in ["alice", "pa55word", "SECRETPATH", "T0KEN", "frag"] {
            assert!(!err.contains(secret), "{err}");
        }
        assert!(err.contains("ftp://hooks.example/…"), "{err}");
        let err = config(&[(
            "CERTSTREAM_URL",
            "http://bob:hunter3@feed.example/full-stream?key=K3Y",
        )])
        .unwrap_err()
        .to_string();
        for secret in ["bob", "hunter3", "K3Y"] {
            assert!(!err.contains(secret), "{err}");
        }
        assert!(err.contains("http://feed.example/full-stream"), "{err}");
        let err = config(&[("WEBHOOK_URL", "hooks.example/pa55word")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pa55word"), "{err}");
        assert_eq!(
            redact_url("https://h.example:8443/", false),
            "https://h.example:8443/"
        );
        assert_eq!(redact_url("wss://u:p@h/x/y?q#f", true), "wss://h/x/y");
    }

    #[test]
    fn dsn_errors_say_what_is_wrong_without_the_password() {
        for (dsn, says) in [
            ("postgresql://u:hunter2@db:notaport/x", "port"),
            ("postgresql://u:hunter2@db/x?sslmode=sometimes", "sslmode"),
            ("host=db password=hunter2 port=x", "port"),
            ("host=db password=hunter2 sslmode=VERIFY-FULL", "sslmode"),
            (
                "postgresql://u:hunter2@db/x?sslmode=verify-ca",
                "sslrootcert=/path/to/ca.pem with sslmode=verify-ca",
            ),
            (
                "host=db password=hunter2 sslmode = 'verify-ca'",
                "sslrootcert=/path/to/ca.pem with sslmode=verify-ca",
            ),
            (
                "postgresql://u:hunter2@db/x?sslmode=require&sslrootcert=system",
                "sslmode=verify-full (or no sslmode) with sslrootcert=system",
            ),
            (
                "host=db password=hunter2 sslmode=verify-ca sslrootcert=system",
                "sslrootcert=system",
            ),
            ("host=db password=hunter2 sslrootcert='/x", "unterminated"),
            (
                "postgresql://u:hunter2@db/x?sslcert=/c.pem",
                "unknown option `sslcert`",
            ),
        ] {
            let err = config(&[("POSTGRES_DSN", dsn)]).unwrap_err().to_string();
            assert!(err.contains(says), "{dsn}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        for ok in [
            "postgresql://u@db/x?sslmode=require",
            "host=db sslmode=disable",
            "postgresql://u:hunter2@db/x?sslmode=verify-full",
            "postgresql://u@db/x?sslrootcert=system",
            "host=db sslmode=verify-full sslrootcert=system",
        ] {
            assert!(config(&[("POSTGRES_DSN", ok)]).is_ok(), "{ok}");
        }
    }

    /// A temporary directory of one test's own.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("certwatch-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A PEM file holding one self-signed CA certificate.
    fn ca_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let path = dir.join(name);
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    fn parsed(dsn: &str) -> (postgres::config::SslMode, ServerCheck) {
        let d = PostgresDsn::parse(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
        (d.config.get_ssl_mode(), d.check)
    }

    #[test]
    fn verify_modes_reach_the_driver_as_require_with_their_check() {
        use postgres::config::SslMode;
        let file = |p: &str| RootCerts::File(p.into());
        for (dsn, mode, check) in [
            // The URL form: sslrootcert never reaches the crate; verify-* is require.
            (
                "postgresql://u:pw@db:5432/x?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                SslMode::Require,
                ServerCheck::ChainAndName(file("/etc/ca.pem")),
            ),
            (
                "postgres://u@db/x?sslrootcert=%2Fetc%2Fmy%20ca.pem&sslmode=verify-ca&connect_timeout=3",
                SslMode::Require,
                ServerCheck::Chain(file("/etc/my ca.pem")),
            ),
            // verify-full without sslrootcert: the system roots.
            (
                "postgresql://u@db/x?sslmode=verify-full",
                SslMode::Require,
                ServerCheck::ChainAndName(RootCerts::System),
            ),
            // sslrootcert=system alone means verify-full (libpq 16).
            (
                "postgresql://u@db/x?sslrootcert=system",
                SslMode::Require,
                ServerCheck::ChainAndName(RootCerts::System),
            ),
            (
                "host=db sslrootcert=system",
                SslMode::Require,
                ServerCheck::ChainAndName(RootCerts::System),
            ),
            // The key=value form: spaces around `=`, quotes, escapes.
            (
                "host=db user=u sslmode = verify-full sslrootcert = '/etc/it\\'s ca.pem'",
                SslMode::Require,
                ServerCheck::ChainAndName(file("/etc/it's ca.pem")),
            ),
            (
                "host=db sslrootcert=/etc/a\\ b.pem sslmode='verify-ca'",
                SslMode::Require,
                ServerCheck::Chain(file("/etc/a b.pem")),
            ),
            // As libpq: prefer and require check the chain when given a root file;
            // disable ignores it; the last value of an option wins.
            (
                "host=db sslmode=require sslrootcert=/ca.pem",
                SslMode::Require,
                ServerCheck::Chain(file("/ca.pem")),
            ),
            (
                "host=db sslrootcert=/ca.pem",
                SslMode::Prefer,
                ServerCheck::Chain(file("/ca.pem")),
            ),
            (
                "host=db sslmode=disable sslrootcert=/ca.pem",
                SslMode::Disable,
                ServerCheck::Unverified,
            ),
            (
                "postgresql://db/x?sslmode=verify-full&sslmode=require",
                SslMode::Require,
                ServerCheck::Unverified,
            ),
            (
                "postgresql://db/x?sslmode=require&sslrootcert=",
                SslMode::Require,
                ServerCheck::Unverified,
            ),
            // No libpq TLS option: as the crate reads it.
            ("host=db", SslMode::Prefer, ServerCheck::Unverified),
            (
                "postgresql://u@db/x?sslmode=require",
                SslMode::Require,
                ServerCheck::Unverified,
            ),
        ] {
            assert_eq!(parsed(dsn), (mode, check), "{dsn}");
        }
    }

    #[test]
    fn the_rest_of_a_translated_dsn_is_read_as_before() {
        // A password holding the option names, '@', '?', '&' and quotes.
        let d = PostgresDsn::parse(
            "host=db port=6543 user=u dbname='my db' password='p sslmode=verify-ca \\' x' \
             sslmode=verify-full sslrootcert=system application_name=cw",
        )
        .unwrap();
        assert_eq!(
            d.config.get_password(),
            Some(&b"p sslmode=verify-ca ' x"[..])
        );
        assert_eq!(d.config.get_dbname(), Some("my db"));
        assert_eq!(d.config.get_ports(), &[6543]);
        assert_eq!(d.config.get_application_name(), Some("cw"));
        assert_eq!(d.check, ServerCheck::ChainAndName(RootCerts::System));
        let d = PostgresDsn::parse(
            "postgresql://u:p%40ss?w&rd@db:6543/x?application_name=a%26b&sslmode=verify-full\
             &sslrootcert=system&connect_timeout=7",
        )
        .unwrap();
        assert_eq!(d.config.get_password(), Some(&b"p@ss?w&rd"[..]));
        assert_eq!(d.config.get_application_name(), Some("a&b"));
        assert_eq!(
            d.config.get_connect_timeout(),
            Some(&Duration::from_secs(7))
        );
        assert_eq!(d.check, ServerCheck::ChainAndName(RootCerts::System));
        // The password is still found for the log filter.
        let c = config(&[(
            "POSTGRES_DSN",
            "postgresql://u:Pa55-w0rd@db/x?sslmode=verify-full&sslrootcert=system",
        )])
        .unwrap();
        assert!(c.log_secrets().iter().any(|s| s == "Pa55-w0rd"));
    }

    #[test]
    fn an_unusable_sslrootcert_is_an_error_naming_the_file() {
        let dir = temp_dir("roots");
        let good = ca_file(&dir, "ca.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let missing = dir.join("missing.pem");
        for (file, says) in [
            (&missing, "No such file"),
            (&empty, "no PEM certificate in it"),
            (&dir, "directory"),
        ] {
            for dsn in [
                format!(
                    "postgresql://u:hunter2@db/x?sslmode=verify-full&sslrootcert={}",
                    file.display()
                ),
                format!(
                    "host=db password=hunter2 sslmode=verify-ca sslrootcert='{}'",
                    file.display()
                ),
            ] {
                let err = config(&[("POSTGRES_DSN", &dsn)]).unwrap_err();
                assert_eq!(err.var, "POSTGRES_DSN");
                assert_eq!(
                    err.value,
                    Some(format!("sslrootcert={}", file.display())),
                    "{err}"
                );
                let line = err.to_string();
                assert!(line.contains(says), "{line}");
                assert!(!line.contains("hunter2"), "{line}");
                assert!(!line.contains("db/x"), "{line}");
            }
        }
        // A readable CA file: accepted, the DSN kept as given.
        let dsn = format!(
            "postgresql://u:hunter2@db/x?sslmode=verify-full&sslrootcert={}",
            good.display()
        );
        let c = config(&[("POSTGRES_DSN", &dsn)]).unwrap();
        assert_eq!(c.postgres_dsn.expose(), dsn);
        assert_eq!(RootCerts::File(good).load().map(|r| r.len()), Ok(1));
        assert!(RootCerts::System.load().unwrap().len() > 50);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secrets_never_reach_debug_or_errors() {
        let c = config(&[("WEBHOOK_SECRET", "s3cr3t-value")]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert_eq!(c.webhook_secret.as_ref().unwrap().expose(), "s3cr3t-value");
        let err =
            config(&[("POSTGRES_DSN", "postgresql://u:hunter2@host:notaport/db")]).unwrap_err();
        assert_eq!(err.var, "POSTGRES_DSN");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
