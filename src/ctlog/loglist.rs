//! The trusted CT log list (`CT_LOG_LIST`): parses the v3 JSON schema that Chrome and
//! Apple publish (`operators[].logs[]` for RFC 6962 logs, `operators[].tiled_logs[]` for
//! static-ct-api logs) into a [`LogList`], and maps a certstream `source.url`, however
//! the server spells it, to the log it names ([`LogList::lookup`]). Pure: bytes in,
//! values out, run on the caller's thread.
//!
//! Parsing is lenient on fields it does not need (unknown keys are ignored, so a newer
//! list still parses) and strict on the ones it does: every log needs a base64
//! `log_id` that is the SHA-256 of its base64 `key`, an operator name, and absolute
//! `http(s)://` URLs; a state, when present, is exactly one of the six known ones with
//! an RFC 3339 timestamp. The input is bounded ([`MAX_LIST_BYTES`], [`MAX_LOGS`],
//! [`MAX_OPERATORS`]) before and while it is parsed, so a hostile file cannot make the
//! parser allocate without limit.
//!
//! Lookup is the trust boundary of backfill: only a URL that is one of a listed log's
//! URLs (scheme, trailing slashes and host case ignored) finds a log, so a certstream
//! server naming any other URL can never make certwatch fetch from it.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;

use base64::Engine;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::Digest;

/// The largest log list accepted, in bytes. Chrome's `all_logs_list.json` is about
/// 100 KB.
pub const MAX_LIST_BYTES: usize = 2 << 20;
/// The most logs (RFC 6962 and tiled together) a list may name. Chrome's list of all
/// logs ever known names about 150.
pub const MAX_LOGS: usize = 1024;
/// The most operators a list may name.
pub const MAX_OPERATORS: usize = 128;
/// The most logs in one operator's `logs` or `tiled_logs` array.
pub const MAX_LOGS_PER_OPERATOR: usize = 512;
/// The longest log URL, in bytes, in the list and in a lookup (host and path, without
/// the scheme and trailing slashes). Real log URLs are under 80.
pub const MAX_URL_BYTES: usize = 256;

/// A log's identity: the SHA-256 of its public key (RFC 6962 §3.2), as the list's
/// `log_id`. Stable across list refreshes, so it keys positions and gap state.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogId(pub [u8; 32]);

impl LogId {
    /// Decodes the list's spelling (standard base64 of 32 bytes).
    pub fn from_base64(text: &str) -> Option<LogId> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Some(LogId(bytes.try_into().ok()?))
    }

    /// The list's spelling: standard base64, padded.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl Hash for LogId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({self})")
    }
}

/// One log of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// SHA-256 of `key`, checked at parse time.
    pub id: LogId,
    /// `description`, e.g. `Google 'Argon2025h2' log` (empty when the list has none).
    pub description: String,
    /// The operator's `name`.
    pub operator: String,
    /// The DER `SubjectPublicKeyInfo` that signs the log's tree heads.
    pub key: Vec<u8>,
    /// The API the log serves, with its URLs.
    pub endpoints: Endpoints,
    /// The current state, when the list gives one.
    pub state: Option<LogState>,
    /// Maximum merge delay in seconds (`mmd`), when given.
    pub mmd_s: Option<u32>,
    /// The `notAfter` range the log accepts, when it is sharded by expiry.
    pub temporal_interval: Option<TemporalInterval>,
}

/// Where a log is read, by the API it serves. Every URL is kept as the list spells
/// it, plus a trailing `/` when it had none, so a client appends `ct/v1/…` or
/// `tile/…` directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// RFC 6962: `get-sth`, `get-entries` under `url`.
    Rfc6962 {
        /// The log's base URL.
        url: String,
    },
    /// static-ct-api: submissions under `submission_url`, checkpoint and tiles under
    /// `monitoring_url`.
    Tiled {
        /// Where certificates are submitted (`add-chain`).
        submission_url: String,
        /// Where the checkpoint and the tiles are read.
        monitoring_url: String,
    },
}

/// A log's state (`state`) and when it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogState {
    /// Which state.
    pub status: LogStatus,
    /// Unix seconds of the state's `timestamp`.
    pub since: i64,
}

/// The six states of the v3 schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStatus {
    /// Applied for inclusion, not yet trusted.
    Pending,
    /// Trusted for new certificates, in its monitoring period.
    Qualified,
    /// Trusted for new certificates.
    Usable,
    /// Frozen: accepts nothing new; its tree ends at `final_tree_size` entries.
    ReadOnly {
        /// `final_tree_head.tree_size`.
        final_tree_size: u64,
    },
    /// No longer trusted for new certificates.
    Retired,
    /// Never trusted.
    Rejected,
}

/// `temporal_interval`: the log accepts certificates whose `notAfter` falls in
/// `[start_inclusive, end_exclusive)`, both Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemporalInterval {
    /// First accepted `notAfter`.
    pub start_inclusive: i64,
    /// First `notAfter` no longer accepted.
    pub end_exclusive: i64,
}

impl Log {
    /// Where entries are fetched from: the RFC 6962 `url`, or a tiled log's
    /// `monitoring_url`; always ends with `/`.
    pub fn fetch_base(&self) -> &str {
        match &self.endpoints {
            Endpoints::Rfc6962 { url } => url,
            Endpoints::Tiled { monitoring_url, .. } => monitoring_url,
        }
    }

    /// Every URL the list gives the log (one for RFC 6962, two for tiled logs).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        let (first, second) = match &self.endpoints {
            Endpoints::Rfc6962 { url } => (url.as_str(), None),
            Endpoints::Tiled {
                submission_url,
                monitoring_url,
            } => (monitoring_url.as_str(), Some(submission_url.as_str())),
        };
        std::iter::once(first).chain(second)
    }

    /// The read API the log serves (RFC 6962, or static-ct-api tiles).
    pub fn kind(&self) -> super::LogKind {
        match self.endpoints {
            Endpoints::Rfc6962 { .. } => super::LogKind::Rfc6962,
            Endpoints::Tiled { .. } => super::LogKind::Tiled,
        }
    }
}

/// A parsed log list with its URL index.
#[derive(Clone, Debug)]
pub struct LogList {
    version: Option<String>,
    timestamp: Option<String>,
    logs: Vec<Log>,
    /// Normalised URL ([`normalize_url`]) → index in `logs`.
    by_url: UrlMap,
    /// The spellings servers use (`https://`, `http://` or no scheme; with or without
    /// one trailing slash; host lower-cased) → index in `logs`: one probe, no
    /// normalising, for nearly every frame.
    by_spelling: UrlMap,
    by_id: HashMap<LogId, usize, BuildHasherDefault<FxHasher>>,
    /// Logs left out because their own entry is unusable (the rest of the list is
    /// kept): at most `MAX_LOGS`.
    skipped: Vec<Skipped>,
}

/// A log of the list that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is, e.g. `operators[0].logs[2] ("Google 'Argon2025h2' log")`.
    pub at: String,
    /// What is wrong with it (the `LogListError` it would have been).
    pub reason: String,
}

type UrlMap = HashMap<Box<str>, usize, BuildHasherDefault<FxHasher>>;

impl LogList {
    /// Parses a v3 log list. Errors name the log and the field that is wrong.
    pub fn parse(bytes: &[u8]) -> Result<LogList, LogListError> {
        if bytes.len() > MAX_LIST_BYTES {
            return Err(LogListError::TooLarge { bytes: bytes.len() });
        }
        let raw: RawList = serde_json::from_slice(bytes).map_err(LogListError::Json)?;
        let count: usize = raw
            .operators
            .0
            .iter()
            .map(|op| op.logs.0.len() + op.tiled_logs.0.len())
            .sum();
        if count > MAX_LOGS {
            return Err(LogListError::TooManyLogs { count });
        }
        let mut list = LogList {
            version: raw.version,
            timestamp: raw.log_list_timestamp,
            logs: Vec::with_capacity(count),
            by_url: UrlMap::with_capacity_and_hasher(count * 2, Default::default()),
            by_spelling: UrlMap::with_capacity_and_hasher(count * 12, Default::default()),
            by_id: HashMap::with_capacity_and_hasher(count, Default::default()),
            skipped: Vec::new(),
        };
        for (o, op) in raw.operators.0.into_iter().enumerate() {
            let operator = op.name.filter(|name| !name.trim().is_empty());
            let logs = op.logs.0.into_iter().map(|l| (false, l));
            let tiled = op.tiled_logs.0.into_iter().map(|l| (true, l));
            let mut counters = [0usize; 2];
            for (is_tiled, raw_log) in logs.chain(tiled) {
                let n = counters[usize::from(is_tiled)];
                counters[usize::from(is_tiled)] += 1;
                let array = if is_tiled { "tiled_logs" } else { "logs" };
                // One log's entry is read on its own: a field of the wrong type
                // spoils that log only.
                let parsed = serde_json::from_str::<RawLog>(raw_log.get());
                let at = match parsed.as_ref().ok().and_then(|l| l.description.as_ref()) {
                    Some(d) => format!("operators[{o}].{array}[{n}] ({d:?})"),
                    None => format!("operators[{o}].{array}[{n}]"),
                };
                let built = match (&operator, parsed) {
                    (None, _) => Err(LogListError::Invalid {
                        at: format!("operators[{o}]"),
                        field: "name",
                        problem: "missing or empty".into(),
                    }),
                    (Some(_), Err(e)) => Err(LogListError::Invalid {
                        at: at.clone(),
                        field: "(entry)",
                        problem: e.to_string(),
                    }),
                    (Some(operator), Ok(raw_log)) => build_log(raw_log, is_tiled, operator, &at),
                };
                if let Err(e) = built.and_then(|log| list.insert(log, at.clone())) {
                    list.skipped.push(Skipped {
                        at,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if list.logs.is_empty() {
            return Err(match list.skipped.first() {
                None => LogListError::NoLogs,
                Some(first) => LogListError::AllSkipped {
                    count: list.skipped.len(),
                    first: first.reason.clone(),
                },
            });
        }
        Ok(list)
    }

    /// The log a certstream `source.url` names, if it is one of a listed log's URLs
    /// (see [`normalize_url`]); `None` for anything else. Allocates nothing.
    pub fn lookup(&self, feed_url: &str) -> Option<&Log> {
        let index = match self.by_spelling.get(feed_url) {
            Some(&index) => index,
            None => {
                let mut buf = [0u8; MAX_URL_BYTES];
                *self.by_url.get(normalize_into(feed_url, &mut buf)?)?
            }
        };
        Some(&self.logs[index])
    }

    /// The log with this id.
    pub fn get(&self, id: &LogId) -> Option<&Log> {
        self.by_id.get(id).map(|&i| &self.logs[i])
    }

    /// Every log, in list order (operators, then each operator's `logs`, then its
    /// `tiled_logs`).
    pub fn logs(&self) -> &[Log] {
        &self.logs
    }

    /// The list's `version`, when given.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The logs left out because their own entry is unusable, in list order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The list's `log_list_timestamp` as written, when given.
    pub fn timestamp(&self) -> Option<&str> {
        self.timestamp.as_deref()
    }

    fn insert(&mut self, log: Log, at: String) -> Result<(), LogListError> {
        let index = self.logs.len();
        if let Some(&first) = self.by_id.get(&log.id) {
            return Err(LogListError::DuplicateId {
                id: log.id,
                first: describe(&self.logs[first]),
                second: at,
            });
        }
        self.by_id.insert(log.id, index);
        for url in log.urls() {
            let key = normalize_url(url).expect("list URLs are validated before insert");
            match self.by_url.get(key.as_str()) {
                Some(&first) if first == index => {} // a tiled log with one URL twice
                Some(&first) => {
                    return Err(LogListError::DuplicateUrl {
                        url: url.to_owned(),
                        first: describe(&self.logs[first]),
                        second: at,
                    });
                }
                None => {
                    for scheme in ["https://", "http://", ""] {
                        for slash in ["", "/"] {
                            let spelling = format!("{scheme}{key}{slash}");
                            self.by_spelling.insert(spelling.into_boxed_str(), index);
                        }
                    }
                    self.by_url.insert(key.into_boxed_str(), index);
                }
            }
        }
        self.logs.push(log);
        Ok(())
    }
}

fn describe(log: &Log) -> String {
    format!("{:?} of {:?}", log.description, log.operator)
}

/// What is wrong with a log list.
#[derive(Debug)]
pub enum LogListError {
    /// Larger than [`MAX_LIST_BYTES`].
    TooLarge {
        /// The input's size.
        bytes: usize,
    },
    /// Not JSON, or a field of the wrong type, or an array over its bound; serde_json's
    /// message says where (line and column).
    Json(serde_json::Error),
    /// More than [`MAX_LOGS`] logs in all.
    TooManyLogs {
        /// How many the list names.
        count: usize,
    },
    /// The list names no log at all.
    NoLogs,
    /// Every log of the list is unusable.
    AllSkipped {
        /// How many were left out.
        count: usize,
        /// Why the first was.
        first: String,
    },
    /// A field the parser needs is missing or malformed.
    Invalid {
        /// Which operator or log, e.g. `operators[0].logs[2] ("Google 'Argon2025h2' log")`.
        at: String,
        /// The JSON field, e.g. `log_id`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Two logs with one `log_id`.
    DuplicateId {
        /// The id.
        id: LogId,
        /// The first log with it.
        first: String,
        /// Where the second one is.
        second: String,
    },
    /// Two logs claim one URL (after normalisation), so a feed URL would be ambiguous.
    DuplicateUrl {
        /// The URL as the second log spells it.
        url: String,
        /// The first log with it.
        first: String,
        /// Where the second one is.
        second: String,
    },
}

impl fmt::Display for LogListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogListError::TooLarge { bytes } => write!(
                f,
                "log list is {bytes} bytes, more than the {MAX_LIST_BYTES} accepted"
            ),
            LogListError::Json(e) => write!(f, "log list is not v3 log list JSON: {e}"),
            LogListError::TooManyLogs { count } => write!(
                f,
                "log list names {count} logs, more than the {MAX_LOGS} accepted"
            ),
            LogListError::NoLogs => f.write_str("log list names no logs"),
            LogListError::AllSkipped { count, first } => write!(
                f,
                "log list names {count} logs and every one is unusable (the first: {first})"
            ),
            LogListError::Invalid { at, field, problem } => {
                write!(f, "log list {at}: {field}: {problem}")
            }
            LogListError::DuplicateId { id, first, second } => write!(
                f,
                "log list {second}: log_id {id} is already the id of {first}"
            ),
            LogListError::DuplicateUrl { url, first, second } => write!(
                f,
                "log list {second}: url {url:?} is already a url of {first}"
            ),
        }
    }
}

impl std::error::Error for LogListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogListError::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// The lookup key of a log URL: host (lower-cased) and path, without the scheme
/// (`http://` or `https://`, any case, or none) and without trailing slashes.
/// `None` when it cannot name a log: another scheme, an empty host, a query,
/// fragment, user info, backslash, whitespace, control or non-ASCII byte, or more than
/// [`MAX_URL_BYTES`] bytes. Ports and path case are kept as given.
///
/// `https://CT.googleapis.com/logs/us1/argon2025h2/` →
/// `ct.googleapis.com/logs/us1/argon2025h2`.
pub fn normalize_url(url: &str) -> Option<String> {
    let mut buf = [0u8; MAX_URL_BYTES];
    normalize_into(url, &mut buf).map(str::to_owned)
}

fn normalize_into<'b>(url: &str, buf: &'b mut [u8; MAX_URL_BYTES]) -> Option<&'b str> {
    let rest = match url.find("://") {
        Some(i) => {
            let scheme = &url[..i];
            if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
                return None;
            }
            &url[i + 3..]
        }
        None => url,
    };
    let bytes = rest.trim_end_matches('/').as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_URL_BYTES {
        return None;
    }
    let host_end = bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len());
    if host_end == 0 {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii_graphic() || matches!(b, b'?' | b'#' | b'@' | b'\\') {
            return None;
        }
        buf[i] = if i < host_end {
            b.to_ascii_lowercase()
        } else {
            b
        };
    }
    // Every byte written is printable ASCII.
    std::str::from_utf8(&buf[..bytes.len()]).ok()
}

/// Validates a list URL: an absolute `http://` or `https://` URL that
/// [`normalize_url`] accepts. Returns it with a trailing `/`.
fn list_url(value: Option<String>, at: &str, field: &'static str) -> Result<String, LogListError> {
    let invalid = |problem: String| LogListError::Invalid {
        at: at.to_owned(),
        field,
        problem,
    };
    let Some(url) = value else {
        return Err(invalid("missing".into()));
    };
    let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
    if !lower.starts_with("https://") && !lower.starts_with("http://") {
        return Err(invalid(format!("expected an https:// URL, got {url:?}")));
    }
    if normalize_url(&url).is_none() {
        return Err(invalid(format!(
            "{url:?} is not a log URL (a host and path of at most {MAX_URL_BYTES} printable \
             ASCII bytes, no query, fragment or user info)"
        )));
    }
    Ok(if url.ends_with('/') { url } else { url + "/" })
}

fn build_log(raw: RawLog, is_tiled: bool, operator: &str, at: &str) -> Result<Log, LogListError> {
    let invalid = |field: &'static str, problem: String| LogListError::Invalid {
        at: at.to_owned(),
        field,
        problem,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = match &raw.key {
        None => return Err(invalid("key", "missing".into())),
        Some(text) => match b64.decode(text) {
            Ok(key) if !key.is_empty() => key,
            Ok(_) => return Err(invalid("key", "empty".into())),
            Err(e) => return Err(invalid("key", format!("not base64: {e}"))),
        },
    };
    let id = match &raw.log_id {
        None => return Err(invalid("log_id", "missing".into())),
        Some(text) => LogId::from_base64(text)
            .ok_or_else(|| invalid("log_id", format!("{text:?} is not the base64 of 32 bytes")))?,
    };
    let key_hash: [u8; 32] = sha2::Sha256::digest(&key).into();
    if id.0 != key_hash {
        return Err(invalid(
            "log_id",
            format!(
                "{id} is not the SHA-256 of the key (that is {})",
                LogId(key_hash)
            ),
        ));
    }
    let endpoints = if is_tiled {
        if raw.url.is_some() {
            return Err(invalid(
                "url",
                "a tiled log has submission_url and monitoring_url, not url".into(),
            ));
        }
        Endpoints::Tiled {
            submission_url: list_url(raw.submission_url, at, "submission_url")?,
            monitoring_url: list_url(raw.monitoring_url, at, "monitoring_url")?,
        }
    } else {
        if raw.submission_url.is_some() || raw.monitoring_url.is_some() {
            return Err(invalid(
                "url",
                "an RFC 6962 log has url, not submission_url or monitoring_url".into(),
            ));
        }
        Endpoints::Rfc6962 {
            url: list_url(raw.url, at, "url")?,
        }
    };
    let state = raw
        .state
        .map(|states| build_state(states).map_err(|problem| invalid("state", problem)))
        .transpose()?;
    let temporal_interval = raw
        .temporal_interval
        .map(|ti| {
            let start = parse_time(ti.start_inclusive.as_deref())
                .map_err(|p| invalid("temporal_interval", format!("start_inclusive: {p}")))?;
            let end = parse_time(ti.end_exclusive.as_deref())
                .map_err(|p| invalid("temporal_interval", format!("end_exclusive: {p}")))?;
            if end <= start {
                return Err(invalid(
                    "temporal_interval",
                    "end_exclusive is not after start_inclusive".into(),
                ));
            }
            Ok(TemporalInterval {
                start_inclusive: start,
                end_exclusive: end,
            })
        })
        .transpose()?;
    let mmd_s = raw
        .mmd
        .map(|mmd| u32::try_from(mmd).map_err(|_| invalid("mmd", format!("{mmd} is out of range"))))
        .transpose()?;
    Ok(Log {
        id,
        description: raw.description.unwrap_or_default(),
        operator: operator.to_owned(),
        key,
        endpoints,
        state,
        mmd_s,
        temporal_interval,
    })
}

fn build_state(raw: RawStates) -> Result<LogState, String> {
    let mut found: Vec<(LogStatus, Option<String>)> = Vec::with_capacity(1);
    let simple = [
        (raw.pending, LogStatus::Pending),
        (raw.qualified, LogStatus::Qualified),
        (raw.usable, LogStatus::Usable),
        (raw.retired, LogStatus::Retired),
        (raw.rejected, LogStatus::Rejected),
    ];
    for (state, status) in simple {
        if let Some(state) = state {
            found.push((status, state.timestamp));
        }
    }
    if let Some(ro) = raw.readonly {
        let size = ro
            .final_tree_head
            .and_then(|h| h.tree_size)
            .ok_or("readonly: final_tree_head.tree_size is missing")?;
        found.push((
            LogStatus::ReadOnly {
                final_tree_size: size,
            },
            ro.timestamp,
        ));
    }
    match found.len() {
        0 => Err("names none of pending, qualified, usable, readonly, retired, rejected".into()),
        1 => {
            let (status, timestamp) = found.pop().expect("one element");
            let since = parse_time(timestamp.as_deref()).map_err(|p| format!("timestamp: {p}"))?;
            Ok(LogState { status, since })
        }
        n => Err(format!("names {n} states, expected one")),
    }
}

fn parse_time(value: Option<&str>) -> Result<i64, String> {
    let text = value.ok_or("missing")?;
    parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time"))
}

/// Unix seconds of an RFC 3339 date-time (`2025-07-01T00:00:00Z`, optional fraction,
/// `Z` or `±hh:mm`). The fraction is dropped.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &b[from..to];
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap_year { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let all = [*h1, *h2, *m1, *m2];
            if !all.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    Some(
        crate::clock::days_from_civil(year, month, day) * 86_400
            + hour * 3600
            + minute * 60
            + second
            - offset,
    )
}

/// FxHash's multiply-rotate over 8-byte words: a few nanoseconds for a log id or a
/// URL, where SipHash costs more than the rest of a lookup. The maps it serves hold
/// only keys from the trusted list, so a hostile feed can make lookups miss but cannot
/// grow a probe chain; no flooding defence is needed.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A JSON array of at most `N` elements; the parse fails at element `N + 1`, so a
/// hostile list cannot allocate more than `N` elements per array.
struct Bounded<T, const N: usize>(Vec<T>);

impl<T, const N: usize> Default for Bounded<T, N> {
    fn default() -> Self {
        Bounded(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for ArrayVisitor<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == N {
                        return Err(de::Error::invalid_length(N + 1, &self));
                    }
                    items.push(item);
                }
                Ok(Bounded(items))
            }
        }
        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

#[derive(Deserialize)]
struct RawList {
    version: Option<String>,
    log_list_timestamp: Option<String>,
    operators: Bounded<RawOperator, MAX_OPERATORS>,
}

#[derive(Deserialize)]
struct RawOperator {
    name: Option<String>,
    #[serde(default)]
    logs: Bounded<Box<RawValue>, MAX_LOGS_PER_OPERATOR>,
    #[serde(default)]
    tiled_logs: Bounded<Box<RawValue>, MAX_LOGS_PER_OPERATOR>,
}

#[derive(Deserialize)]
struct RawLog {
    description: Option<String>,
    log_id: Option<String>,
    key: Option<String>,
    url: Option<String>,
    submission_url: Option<String>,
    monitoring_url: Option<String>,
    mmd: Option<u64>,
    state: Option<RawStates>,
    temporal_interval: Option<RawInterval>,
}

#[derive(Deserialize)]
struct RawStates {
    pending: Option<RawState>,
    qualified: Option<RawState>,
    usable: Option<RawState>,
    readonly: Option<RawReadOnly>,
    retired: Option<RawState>,
    rejected: Option<RawState>,
}

#[derive(Deserialize)]
struct RawState {
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawReadOnly {
    timestamp: Option<String>,
    final_tree_head: Option<RawTreeHead>,
}

#[derive(Deserialize)]
struct RawTreeHead {
    tree_size: Option<u64>,
}

#[derive(Deserialize)]
struct RawInterval {
    start_inclusive: Option<String>,
    end_exclusive: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/loglist_v3_sample.json");

    fn sample() -> LogList {
        LogList::parse(SAMPLE.as_bytes()).expect("the sample list parses")
    }

    /// A one-operator list whose single log is `log` (a JSON object body, without
    /// braces) plus a valid `log_id` and `key` derived from `seed`.
    fn log_json(seed: &str, fields: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = format!("key of {seed}");
        let id: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        format!(
            r#"{{"log_id":"{}","key":"{}",{fields}}}"#,
            b64.encode(id),
            b64.encode(key)
        )
    }

    fn list_json(logs: &[String], tiled: &[String]) -> String {
        format!(
            r#"{{"operators":[{{"name":"Op","logs":[{}],"tiled_logs":[{}]}}]}}"#,
            logs.join(","),
            tiled.join(",")
        )
    }

    #[test]
    fn sample_list_parses_every_field() {
        let list = sample();
        assert_eq!(list.version(), Some("58.12"));
        assert_eq!(list.timestamp(), Some("2026-11-20T12:53:09Z"));
        let names: Vec<_> = list.logs().iter().map(|l| l.description.as_str()).collect();
        assert_eq!(
            names,
            [
                "Google 'Argon2025h2' log",
                "Google 'Xenon2025h2' log",
                "Google 'Solera2018' log",
                "Let's Encrypt 'Willow2025h2d'",
                "Fake 'Sandbox2026' log",
            ]
        );
        let argon = &list.logs()[0];
        assert_eq!(argon.operator, "Google");
        assert_eq!(
            argon.id.to_base64(),
            "bYo0CawNYvlxBZIGWOrB7wtmXDlTT0cIoz/Li3/Trpo="
        );
        assert_eq!(argon.key.len(), 91);
        assert_eq!(argon.mmd_s, Some(86400));
        assert_eq!(
            argon.endpoints,
            Endpoints::Rfc6962 {
                url: "https://ct.googleapis.com/logs/us1/argon2025h2/".into()
            }
        );
        assert_eq!(
            argon.state,
            Some(LogState {
                status: LogStatus::Usable,
                since: 1_734_460_525
            })
        );
        assert_eq!(
            argon.temporal_interval,
            Some(TemporalInterval {
                start_inclusive: 1_751_328_000,
                end_exclusive: 1_767_225_600
            })
        );
        assert_eq!(
            list.logs()[1].state.map(|s| s.status),
            Some(LogStatus::Qualified)
        );
        assert_eq!(
            list.logs()[2].state.map(|s| s.status),
            Some(LogStatus::ReadOnly {
                final_tree_size: 46_466_472
            })
        );
        let willow = &list.logs()[3];
        assert_eq!(willow.kind(), crate::ctlog::LogKind::Tiled);
        assert_eq!(willow.operator, "Let's Encrypt");
        assert_eq!(
            willow.fetch_base(),
            "https://mon.willow.ct.letsencrypt.org/2025h2d/"
        );
        assert_eq!(
            willow.urls().collect::<Vec<_>>(),
            [
                "https://mon.willow.ct.letsencrypt.org/2025h2d/",
                "https://willow.ct.letsencrypt.org/2025h2d/"
            ]
        );
        let sandbox = &list.logs()[4];
        assert_eq!(sandbox.fetch_base(), "http://127.0.0.1:8444/sandbox2026/");
        // 2026-10-01T00:00:00+02:00 is 2026-09-30T22:00:00Z.
        assert_eq!(
            sandbox.state,
            Some(LogState {
                status: LogStatus::Retired,
                since: 1_790_805_600
            })
        );
        assert_eq!(sandbox.temporal_interval, None);
        assert_eq!(list.get(&argon.id), Some(argon));
        assert_eq!(list.get(&LogId([0; 32])), None);
    }

    #[test]
    fn lookup_accepts_every_servers_spelling_of_a_listed_url() {
        let list = sample();
        let cases = [
            // certstream-server-go and -rust: scheme, no trailing slash.
            (
                "https://ct.googleapis.com/logs/us1/argon2025h2",
                "Google 'Argon2025h2' log",
            ),
            // Elixir: as in the list.
            (
                "https://ct.googleapis.com/logs/us1/argon2025h2/",
                "Google 'Argon2025h2' log",
            ),
            // Python: no scheme.
            (
                "ct.googleapis.com/logs/us1/argon2025h2",
                "Google 'Argon2025h2' log",
            ),
            (
                "ct.googleapis.com/logs/us1/argon2025h2/",
                "Google 'Argon2025h2' log",
            ),
            (
                "ct.googleapis.com/logs/us1/argon2025h2//",
                "Google 'Argon2025h2' log",
            ),
            (
                "HTTPS://CT.GoogleAPIs.com/logs/us1/argon2025h2",
                "Google 'Argon2025h2' log",
            ),
            (
                "http://ct.googleapis.com/logs/us1/argon2025h2",
                "Google 'Argon2025h2' log",
            ),
            (
                "https://ct.googleapis.com/logs/eu1/xenon2025h2",
                "Google 'Xenon2025h2' log",
            ),
            // A tiled log by either URL.
            (
                "https://mon.willow.ct.letsencrypt.org/2025h2d",
                "Let's Encrypt 'Willow2025h2d'",
            ),
            (
                "https://willow.ct.letsencrypt.org/2025h2d/",
                "Let's Encrypt 'Willow2025h2d'",
            ),
            (
                "willow.ct.letsencrypt.org/2025h2d",
                "Let's Encrypt 'Willow2025h2d'",
            ),
            // An http log in the list is found under https too (only the scheme differs).
            (
                "https://127.0.0.1:8444/sandbox2026",
                "Fake 'Sandbox2026' log",
            ),
            ("127.0.0.1:8444/sandbox2026/", "Fake 'Sandbox2026' log"),
        ];
        for (url, want) in cases {
            let got = list.lookup(url).map(|l| l.description.as_str());
            assert_eq!(got, Some(want), "lookup({url:?})");
        }
    }

    #[test]
    fn lookup_finds_nothing_for_any_other_url() {
        let list = sample();
        let long = format!("https://ct.googleapis.com/{}", "a".repeat(MAX_URL_BYTES));
        let cases = [
            "",
            "/",
            "https://",
            "https:///logs/us1/argon2025h2",
            "ct.googleapis.com",
            "https://ct.googleapis.com/logs/us1",
            "https://ct.googleapis.com/logs/us1/argon2025h1",
            "https://ct.googleapis.com/logs/us1/argon2025h2/ct/v1/get-entries",
            "https://ct.googleapis.com/logs/us1/ARGON2025H2",
            "https://ct.googleapis.com:443/logs/us1/argon2025h2",
            "https://ct.googleapis.com/logs/us1/argon2025h2?x=1",
            "https://ct.googleapis.com/logs/us1/argon2025h2#frag",
            "https://evil@ct.googleapis.com/logs/us1/argon2025h2",
            "https://ct.googleapis.com.evil.example/logs/us1/argon2025h2",
            "https://evil.example/ct.googleapis.com/logs/us1/argon2025h2",
            "wss://ct.googleapis.com/logs/us1/argon2025h2",
            "file://ct.googleapis.com/logs/us1/argon2025h2",
            " https://ct.googleapis.com/logs/us1/argon2025h2",
            "https://ct.googleapis.com/logs/us1/argon2025h2 ",
            "https://ct.googleapis.com\\logs/us1/argon2025h2",
            "https://ct.googleapis.com/logs/us1/argon2025h2\u{0}",
            "https://ct.googleapis.com/logs/us1/argön2025h2",
            "https://127.0.0.1:8445/sandbox2026",
            long.as_str(),
        ];
        for url in cases {
            assert_eq!(
                list.lookup(url).map(|l| &l.description),
                None,
                "lookup({url:?})"
            );
        }
    }

    #[test]
    fn normalize_url_examples() {
        let cases = [
            (
                "https://CT.googleapis.com/Logs/",
                Some("ct.googleapis.com/Logs"),
            ),
            ("HtTp://a.example:8080/x/", Some("a.example:8080/x")),
            ("a.example", Some("a.example")),
            ("a.example/", Some("a.example")),
            ("ftp://a.example/x", None),
            ("a.example/x?y", None),
        ];
        for (url, want) in cases {
            assert_eq!(normalize_url(url).as_deref(), want, "{url:?}");
        }
    }

    #[test]
    fn list_urls_get_a_trailing_slash() {
        let json = list_json(
            &[log_json("a", r#""url":"https://a.example/log""#)],
            &[log_json(
                "b",
                r#""submission_url":"https://b.example/log","monitoring_url":"https://b.example/log""#,
            )],
        );
        let list = LogList::parse(json.as_bytes()).unwrap();
        assert_eq!(list.logs()[0].fetch_base(), "https://a.example/log/");
        assert_eq!(list.logs()[1].fetch_base(), "https://b.example/log/");
        // One URL used for both roles is one log, not a duplicate.
        assert_eq!(
            list.lookup("b.example/log").map(|l| l.id),
            Some(list.logs()[1].id)
        );
        // No description, no state, no mmd: fine, they are not needed.
        assert_eq!(list.logs()[0].description, "");
        assert_eq!(list.logs()[0].state, None);
        assert_eq!(list.logs()[0].mmd_s, None);
    }

    #[test]
    fn hostile_or_broken_lists_are_rejected_with_a_reason() {
        let url = r#""url":"https://a.example/log/""#;
        let good = log_json("a", url);
        let b64 = base64::engine::general_purpose::STANDARD;
        let many_ops = format!(
            r#"{{"operators":[{}]}}"#,
            vec![r#"{"name":"x"}"#; MAX_OPERATORS + 1].join(",")
        );
        let many_logs: Vec<String> = (0..=MAX_LOGS_PER_OPERATOR)
            .map(|i| {
                log_json(
                    &i.to_string(),
                    &format!(r#""url":"https://a.example/{i}/""#),
                )
            })
            .collect();
        let many_logs = list_json(&many_logs, &[]);
        let total_logs: Vec<String> = (0..=MAX_LOGS)
            .map(|i| {
                log_json(
                    &i.to_string(),
                    &format!(r#""url":"https://a.example/{i}/""#),
                )
            })
            .collect::<Vec<_>>()
            .chunks(MAX_LOGS_PER_OPERATOR)
            .enumerate()
            .map(|(o, logs)| format!(r#"{{"name":"op{o}","logs":[{}]}}"#, logs.join(",")))
            .collect();
        let total_logs = format!(r#"{{"operators":[{}]}}"#, total_logs.join(","));
        let nested = format!(
            r#"{{"operators":[{{"name":"x","junk":{}{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let huge = format!(
            r#"{{"operators":[],"pad":"{}"}}"#,
            "x".repeat(MAX_LIST_BYTES)
        );
        let wrong_length_id = format!(
            r#"{{"operators":[{{"name":"Op","logs":[{{"log_id":"{}","key":"AAAA",{url}}}]}}]}}"#,
            b64.encode([1u8; 31])
        );
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not v3 log list JSON"),
            (huge, "more than the 2097152 accepted"),
            ("{}".into(), "missing field `operators`"),
            (
                r#"{"operators":{}}"#.into(),
                "expected an array of at most 128",
            ),
            (r#"{"operators":[]}"#.into(), "names no logs"),
            (
                many_ops,
                "invalid length 129, expected an array of at most 128",
            ),
            (
                many_logs,
                "invalid length 513, expected an array of at most 512",
            ),
            (total_logs, "names 1025 logs, more than the 1024"),
            // Deep nesting under an unknown key is skipped without recursion (no
            // stack overflow); the list then simply has no logs.
            (nested.clone(), "names no logs"),
            (
                nested.replace(r#""junk":"#, r#""logs":"#),
                "invalid type: sequence",
            ),
            (
                format!(r#"{{"operators":[{{"logs":[{good}]}}]}}"#),
                "operators[0]: name: missing or empty",
            ),
            (
                r#"{"operators":[{"name":"Op","logs":[{"description":"D","key":"AAAA"}]}]}"#.into(),
                r#"operators[0].logs[0] ("D"): log_id: missing"#,
            ),
            (
                r#"{"operators":[{"name":"Op","logs":[{"log_id":"AAAA"}]}]}"#.into(),
                "operators[0].logs[0]: key: missing",
            ),
            (
                r#"{"operators":[{"name":"Op","logs":[{"log_id":"AAAA","key":"%%%"}]}]}"#.into(),
                "key: not base64",
            ),
            (
                r#"{"operators":[{"name":"Op","logs":[{"log_id":"!","key":"AAAA"}]}]}"#.into(),
                r#"log_id: "!" is not the base64 of 32 bytes"#,
            ),
            (wrong_length_id, "is not the base64 of 32 bytes"),
            (
                format!(
                    r#"{{"operators":[{{"name":"Op","logs":[{{"log_id":"{}","key":"AAAA",{url}}}]}}]}}"#,
                    b64.encode([7u8; 32])
                ),
                "is not the SHA-256 of the key (that is",
            ),
            (
                list_json(&[log_json("a", r#""description":"x""#)], &[]),
                "url: missing",
            ),
            (
                list_json(&[log_json("a", r#""url":"ftp://a.example/""#)], &[]),
                r#"url: expected an https:// URL, got "ftp://a.example/""#,
            ),
            (
                list_json(&[log_json("a", r#""url":"a.example/log/""#)], &[]),
                "expected an https:// URL",
            ),
            (
                list_json(
                    &[log_json("a", r#""url":"https://a.example/log?x=1""#)],
                    &[],
                ),
                "is not a log URL",
            ),
            (
                list_json(&[log_json("a", r#""url":"https://u@a.example/log""#)], &[]),
                "is not a log URL",
            ),
            (
                list_json(&[log_json("a", r#""url":"https:///log""#)], &[]),
                "is not a log URL",
            ),
            (
                list_json(&[log_json("a", r#""url":5"#)], &[]),
                "invalid type: integer `5`, expected a string",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        r#""url":"https://a.example/","monitoring_url":"https://b.example/""#,
                    )],
                    &[],
                ),
                "an RFC 6962 log has url, not submission_url or monitoring_url",
            ),
            (
                list_json(&[], &[log_json("a", url)]),
                "operators[0].tiled_logs[0]: url: a tiled log has submission_url",
            ),
            (
                list_json(
                    &[],
                    &[log_json("a", r#""submission_url":"https://a.example/""#)],
                ),
                "monitoring_url: missing",
            ),
            (
                list_json(&[log_json("a", &format!(r#"{url},"state":{{}}"#))], &[]),
                "state: names none of pending",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(r#"{url},"state":{{"frozen":{{}}}}"#),
                    )],
                    &[],
                ),
                "state: names none of pending",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(
                            r#"{url},"state":{{"usable":{{"timestamp":"2025-01-01T00:00:00Z"}},"retired":{{"timestamp":"2025-01-01T00:00:00Z"}}}}"#
                        ),
                    )],
                    &[],
                ),
                "state: names 2 states, expected one",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(
                            r#"{url},"state":{{"readonly":{{"timestamp":"2025-01-01T00:00:00Z"}}}}"#
                        ),
                    )],
                    &[],
                ),
                "final_tree_head.tree_size is missing",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(r#"{url},"state":{{"usable":{{"timestamp":"yesterday"}}}}"#),
                    )],
                    &[],
                ),
                r#"state: timestamp: "yesterday" is not an RFC 3339 time"#,
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(r#"{url},"state":{{"usable":{{}}}}"#),
                    )],
                    &[],
                ),
                "state: timestamp: missing",
            ),
            (
                list_json(
                    &[log_json(
                        "a",
                        &format!(
                            r#"{url},"temporal_interval":{{"start_inclusive":"2026-01-01T00:00:00Z","end_exclusive":"2025-01-01T00:00:00Z"}}"#
                        ),
                    )],
                    &[],
                ),
                "end_exclusive is not after start_inclusive",
            ),
            (
                list_json(&[log_json("a", &format!(r#"{url},"mmd":-1"#))], &[]),
                "invalid value: integer `-1`",
            ),
            (
                list_json(&[log_json("a", &format!(r#"{url},"mmd":5000000000"#))], &[]),
                "mmd: 5000000000 is out of range",
            ),
            (
                list_json(&[good.clone(), good.clone()], &[]),
                "operators[0].logs[1]: log_id ",
            ),
            (
                list_json(
                    &[
                        good.clone(),
                        log_json("b", r#""url":"HTTP://A.example/log""#),
                    ],
                    &[],
                ),
                r#"url "HTTP://A.example/log/" is already a url of "" of "Op""#,
            ),
            (
                list_json(
                    std::slice::from_ref(&good),
                    &[log_json(
                        "b",
                        r#""submission_url":"https://a.example/log","monitoring_url":"https://m.example/""#,
                    )],
                ),
                "is already a url of",
            ),
        ];
        for (json, want) in cases {
            match LogList::parse(json.as_bytes()) {
                // A second log that clashes with the first: the first is kept, the
                // second left out with the reason.
                Ok(list) => assert!(
                    list.skipped().iter().any(|s| s.reason.contains(want)),
                    "expected a log left out for {want:?}, got {:?} (input {json:.200})",
                    list.skipped()
                ),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.contains(want),
                        "error {message:?} should contain {want:?} (input {json:.200})"
                    );
                }
            }
        }
    }

    /// Issue 18 item 9: one unusable log (an empty or malformed key, a field of the
    /// wrong type, an unknown state, a duplicate id) leaves that log out, named,
    /// and keeps every other.
    #[test]
    fn one_bad_log_is_left_out_and_the_others_kept() {
        let good = |name: &str| log_json(name, &format!(r#""url":"https://{name}.example/log/""#));
        let bad = [
            r#"{"description":"empty key","log_id":"AAAA","key":"","url":"https://e.example/"}"#
                .to_string(),
            r#"{"description":"bad key","log_id":"AAAA","key":"%%%","url":"https://k.example/"}"#
                .to_string(),
            r#"{"description":"typed","log_id":5,"key":"AAAA","url":"https://t.example/"}"#
                .to_string(),
            log_json(
                "frozen",
                r#""url":"https://f.example/","state":{"frozen":{}}"#,
            ),
            good("a"),
        ];
        let mut logs = vec![good("a")];
        logs.extend(bad);
        logs.push(good("b"));
        let tiled = log_json(
            "c",
            r#""submission_url":"https://c.example/log/","monitoring_url":"https://c.example/log/""#,
        );
        let list = LogList::parse(list_json(&logs, &[tiled]).as_bytes()).expect("kept");
        let kept: Vec<&str> = list.logs().iter().map(|l| l.fetch_base()).collect();
        assert_eq!(
            kept,
            [
                "https://a.example/log/",
                "https://b.example/log/",
                "https://c.example/log/"
            ]
        );
        let skipped: Vec<&str> = list.skipped().iter().map(|s| s.at.as_str()).collect();
        assert_eq!(
            skipped,
            [
                r#"operators[0].logs[1] ("empty key")"#,
                r#"operators[0].logs[2] ("bad key")"#,
                "operators[0].logs[3]",
                "operators[0].logs[4]",
                "operators[0].logs[5]",
            ]
        );
        assert!(list.skipped()[4].reason.contains("log_id"), "the duplicate");
        assert!(
            list.skipped()[3].reason.contains("state"),
            "the unknown state"
        );
    }

    #[test]
    fn rfc3339_examples() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-07-01T00:00:00Z", Some(1_751_328_000)),
            ("2024-12-19T10:00:00.123Z", Some(1_734_602_400)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("2024-12-19t10:00:00z", Some(1_734_602_400)),
            ("2026-10-01T00:00:00+02:00", Some(1_790_805_600)),
            ("2026-09-30T20:30:00-01:30", Some(1_790_805_600)),
            ("1969-12-31T23:59:59Z", Some(-1)),
            ("2023-02-29T00:00:00Z", None),
            ("2025-13-01T00:00:00Z", None),
            ("2025-00-01T00:00:00Z", None),
            ("2025-01-01T24:00:00Z", None),
            ("2025-01-01T00:00:00", None),
            ("2025-01-01 00:00:00Z", None),
            ("2025-01-01T00:00:00.Z", None),
            ("2025-01-01T00:00:00+0200", None),
            ("2025-01-01T00:00:00+24:00", None),
            ("+025-01-01T00:00:00Z", None),
            ("2025-01-01T00:00:00Zjunk", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), want, "{text:?}");
        }
    }

    #[test]
    fn log_id_round_trips_through_base64() {
        let id = LogId([0xAB; 32]);
        assert_eq!(LogId::from_base64(&id.to_base64()), Some(id));
        assert_eq!(format!("{id:?}"), format!("LogId({})", id.to_base64()));
        assert_eq!(LogId::from_base64("AAAA"), None);
        assert_eq!(LogId::from_base64("not base64"), None);
    }
}
