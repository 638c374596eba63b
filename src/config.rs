//! Configuration: the environment read once at start-up into a validated `Config`.
//!
//! Runs on the main thread, once. Pure: `Config::from_lookup` takes any lookup
//! function, so tests pass a map instead of touching the process environment.
//! A bad value is a `ConfigError` that names the variable and what was expected;
//! secrets and DSN passwords live in `Secret`, whose `Debug` prints `<redacted>`.

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
        if let Some(password) = dsn.parse::<postgres::Config>().ok().and_then(|c| {
            c.get_password()
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

/// Accepts a URL DSN or a libpq key=value DSN. The error says what is wrong (the
/// postgres crate names the option, never its value) and never echoes the DSN,
/// since it may hold a password.
fn parse_dsn(dsn: &str) -> Result<String, ConfigError> {
    let refuse = |expected: String| ConfigError {
        var: "POSTGRES_DSN",
        value: Some("<redacted>".to_string()),
        expected,
    };
    if let Some(mode) = dsn_sslmode(dsn)
        && mode.starts_with("verify")
    {
        // libpq would verify the server certificate here; the postgres crate only
        // knows disable/prefer/require, and require does not verify. Refuse rather
        // than silently downgrade.
        return Err(refuse(format!(
            "an sslmode certwatch can honour: sslmode={mode} asks for server certificate \
             verification, which certwatch does not support; use sslmode=require \
             (encrypted, not verified) on a trusted network, or a local TLS proxy that verifies"
        )));
    }
    match dsn.parse::<postgres::Config>() {
        Ok(_) => Ok(dsn.to_string()),
        Err(e) => Err(refuse(format!(
            "a postgresql://user:pw@host:5432/db URL or key=value DSN ({})",
            dsn_error_cause(&e)
        ))),
    }
}

/// The `sslmode` value of a URL or key=value DSN, if any.
fn dsn_sslmode(dsn: &str) -> Option<String> {
    let value = if dsn.contains("://") {
        let query = dsn.split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sslmode="))?
    } else {
        let at = dsn.find("sslmode")?;
        let rest = dsn[at + "sslmode".len()..].trim_start().strip_prefix('=')?;
        rest.split_whitespace().next()?
    };
    let value = value.trim_matches(['\'', '"']).to_ascii_lowercase();
    (value.len() <= 32).then_some(value)
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
            (
                "postgresql://u:hunter2@db/x?sslmode=verify-full",
                "sslmode=verify-full",
            ),
            (
                "host=db password=hunter2 sslmode = 'verify-ca'",
                "sslmode=verify-ca",
            ),
        ] {
            let err = config(&[("POSTGRES_DSN", dsn)]).unwrap_err().to_string();
            assert!(err.contains(says), "{dsn}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        for ok in [
            "postgresql://u@db/x?sslmode=require",
            "host=db sslmode=disable",
        ] {
            assert!(config(&[("POSTGRES_DSN", ok)]).is_ok(), "{ok}");
        }
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
