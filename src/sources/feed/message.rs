//! certstream messages: serde types for what the feed servers send, and the two
//! parse steps the workers run. Pure, no I/O; called on the worker threads.
//!
//! `peek` is the hot path: it reads only the message type, the leaf's
//! `all_domains` (the names of every occurrence of a repeated `data`, `leaf_cert`
//! or `all_domains`), the log position and the log's timestamp of the entry,
//! borrowing from the frame and skipping everything else.
//! Only a certificate whose names match the watch list goes through
//! `parse_matched`, which reads the fields classification and alerts need into
//! an owned `Certificate`. Every spelling listed in `certstream-format.md` is
//! accepted: Go, Elixir, Python and Rust servers; full, lite and domains-only
//! streams; heartbeats and unknown types; missing or null fields; padded or
//! lowercase serials; `no_expiration`; float times.
//!
//! A matched certificate is never skipped: `parse_matched` reads each field on
//! its own (`Obj` keeps an object's values as raw text), so a field of the wrong
//! type, out of range or repeated spoils only itself. A decorating field then
//! reads as absent; an unusable or missing identity field leaves what is known
//! and `Certificate::unusable_identity`, which keys the alert apart. NUL in
//! strings becomes U+FFFD and times outside `MIN_TIME..=NO_EXPIRATION` are
//! dropped, so the row can always be stored. At most `MAX_NAMES` names are kept,
//! the matched ones first; de-duplication is hash-based, linear. `Lenient` says
//! which of these happened (`certwatch_ct_lenient_certificates_total`).
//!
//! Dialect notes, where the servers differ in what certwatch reads:
//!
//! - The log's own time of the entry: certstream-server-go puts it in
//!   `data.source.timestamp`, reloading01/certstream-server-rust in
//!   `data.submission_timestamp` (both float seconds); the others have none.
//! - certstream-server-rust (v1.5): text frames without a trailing newline
//!   (releases before 1.5 sent binary frames); `source` is only `{name, url}`, the
//!   URL without a trailing slash; serials printed byte-wise with leading zeros
//!   (`0F`); `keyid:` key ids in lower case, on the subject key identifier too;
//!   chain certificates without `as_der` (a PSC precertificate's chain has three,
//!   the PSC first); `all_domains` is the CN first, then the SANs in certificate
//!   order, exact duplicates removed, `[]` for a CA certificate logged as a leaf;
//!   heartbeats `{"message_type":"heartbeat"}` (no timestamp) on connect and every
//!   30 s; the server pings every 15 s and drops a client after 45 s without a
//!   pong (tungstenite answers pings as frames are read).

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// `not_after` of a certificate without a well-defined expiry (99991231235959Z),
/// and the latest certificate time kept.
pub const NO_EXPIRATION: i64 = 253_402_300_799;

/// Whether `seconds` can be a moment a feed server or a log recorded (`seen`, a CT
/// timestamp): finite, positive, at most `NO_EXPIRATION`.
pub(crate) fn is_moment(seconds: f64) -> bool {
    seconds.is_finite() && seconds > 0.0 && seconds <= NO_EXPIRATION as f64
}

/// The earliest certificate time kept: 0000-01-01T00:00:00Z. X.509 times cannot
/// go outside `MIN_TIME..=NO_EXPIRATION`, and Postgres stores every time inside.
pub const MIN_TIME: i64 = -62_167_219_200;

/// The most names a certificate keeps in `all_domains` and `names` (and an
/// alert in `matched_sans` and `matched_entries`). Every name is still matched;
/// the names that matched are kept first.
pub const MAX_NAMES: usize = 10_000;

/// SHA-1 of zero bytes: what certstream-server-go gives every precertificate of a
/// static-ct (tiled) log. It identifies nothing.
const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
/// SHA-256 of zero bytes, the same for the feed's `sha256` field.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a feed message is (`type` of `certwatch_ct_messages_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    CertificateUpdate,
    DnsEntries,
    Heartbeat,
    Other,
}

impl MessageKind {
    /// Every kind, in the order of `index`.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::CertificateUpdate,
        MessageKind::DnsEntries,
        MessageKind::Heartbeat,
        MessageKind::Other,
    ];

    /// The kind as exported (`message_type` spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::CertificateUpdate => "certificate_update",
            MessageKind::DnsEntries => "dns_entries",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::Other => "other",
        }
    }

    /// This kind's place in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a frame is, read cheaply.
#[derive(Debug, PartialEq)]
pub enum Peek<'a> {
    /// A `certificate_update` with its leaf's names (possibly empty), where the
    /// server says it read it: `source.url` and `cert_index` (`None` when absent or
    /// not a string / an unsigned 64-bit integer; never an error), and the log's
    /// own timestamp of the entry in milliseconds, where the server gives one
    /// (`source.timestamp` or `submission_timestamp`; `None` when absent or not a
    /// positive time up to `NO_EXPIRATION`; never invented from `seen`).
    Certificate {
        all_domains: Vec<Cow<'a, str>>,
        source_url: Option<Cow<'a, str>>,
        cert_index: Option<u64>,
        timestamp_ms: Option<i64>,
    },
    /// A `dns_entries` message (domains-only stream): names without identity.
    DnsEntries {
        count: usize,
    },
    Heartbeat,
    /// A well-formed message of a type certwatch does not use.
    Other,
}

impl Peek<'_> {
    /// What `certwatch_ct_messages_total` counts this message as.
    pub fn kind(&self) -> MessageKind {
        match self {
            Peek::Certificate { .. } => MessageKind::CertificateUpdate,
            Peek::DnsEntries { .. } => MessageKind::DnsEntries,
            Peek::Heartbeat => MessageKind::Heartbeat,
            Peek::Other => MessageKind::Other,
        }
    }
}

/// A frame that is not a certstream message.
#[derive(Debug)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed certstream message: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> ParseError {
        ParseError(e.to_string())
    }
}

mod parse;
mod peek;

pub use parse::{parse_certificate, parse_matched};
pub use peek::peek;

/// Precertificate or final certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub enum EntryType {
    Precert,
    X509,
}

impl EntryType {
    /// The name used in the alert row and the ctwatch payload.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Precert => "precert",
            EntryType::X509 => "x509",
        }
    }

    /// The certstream `update_type` spelling (Python's `PreCertEntry` normalised).
    pub fn update_type(self) -> &'static str {
        match self {
            EntryType::Precert => "PrecertLogEntry",
            EntryType::X509 => "X509LogEntry",
        }
    }
}

/// One certificate as certwatch needs it, normalised across server dialects.
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
pub struct Certificate {
    pub entry_type: EntryType,
    /// The leaf's names as the feed gave them, exact duplicates removed, NUL
    /// replaced; at most `MAX_NAMES`, the matched names first.
    pub all_domains: Vec<String>,
    /// Lower-case, trailing dot removed, sorted, unique: the name set of identity
    /// (of `all_domains`, so capped alike).
    pub names: Vec<String>,
    /// Set when the leaf had more than `MAX_NAMES` names: lower-case hex SHA-256
    /// of its whole name set (normalised, sorted, unique), which the issuance key
    /// hashes in place of `names`, so the key does not depend on which were kept.
    pub names_digest: Option<String>,
    /// Set when an identity field was missing, unusable or repeated: lower-case
    /// hex SHA-256 of the leaf as the feed sent it. The issuance key hashes it,
    /// so such a certificate only ever shares its key with copies of that very
    /// leaf: it alerts rather than pass for another certificate's copy.
    pub unusable_identity: Option<String>,
    pub subject_cn: Option<String>,
    /// Lower-case hex without colons; `None` when absent or the empty-input SHA-1.
    pub fingerprint_sha1: Option<String>,
    /// Lower-case hex SHA-256 of the leaf: computed from `as_der` when the feed
    /// sends it, else the feed's `sha256`; `None` when neither (or the empty-input hash).
    pub sha256: Option<String>,
    /// Upper-case hex without colons or leading zeros.
    pub serial: Option<String>,
    /// Unix seconds within `MIN_TIME..=NO_EXPIRATION`.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub issuer_o: Option<String>,
    pub issuer_cn: Option<String>,
    /// The issuer DN as the feed aggregated it (`/C=../CN=../O=..`).
    pub issuer_dn: Option<String>,
    /// The issuing CA's key id (normalised authorityKeyIdentifier), rewritten past
    /// a precertificate signing certificate when the chain shows one.
    pub issuer_key_id: Option<String>,
    /// The leaf's own subject key identifier, normalised like key ids: the same
    /// on a precertificate and its final certificate.
    pub subject_key_id: Option<String>,
    pub source_name: Option<String>,
    pub source_url: Option<String>,
    /// The log's own timestamp of the entry, in milliseconds, when the feed has it
    /// (`source.timestamp` on the Go server, `submission_timestamp` on the Rust one).
    pub source_timestamp_ms: Option<i64>,
    pub cert_link: Option<String>,
    /// The entry's index in its log, at most `i64::MAX`.
    pub cert_index: Option<u64>,
    /// When the feed server saw the entry, unix seconds (positive, at most `NO_EXPIRATION`).
    pub seen: Option<f64>,
}

/// How a matched certificate was read leniently (`reason` of
/// `certwatch_ct_lenient_certificates_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leniency {
    /// A field that only decorates the alert (`cert_index`, `cert_link`, `seen`,
    /// `source`, the log's timestamp, issuer O and CN, subject CN, the subject key
    /// id, the chain) had the wrong type, was out of range or repeated: it reads
    /// as absent.
    Decoration,
    /// An identity field (names, serial, validity, fingerprints, `as_der`, entry
    /// type, issuer key id or DN, the `data`/`leaf_cert`/`extensions`/`issuer`
    /// objects) was unusable or repeated, or serial or validity was missing: the
    /// certificate alerts under a key of its own (`Certificate::unusable_identity`).
    Identity,
    /// A string held NUL characters, replaced by U+FFFD (Postgres stores no NUL).
    Nul,
    /// More than `MAX_NAMES` names: the lists kept `MAX_NAMES`, the matched first.
    NamesCapped,
}

impl Leniency {
    /// Every reason, in the order of `index`.
    pub const ALL: [Leniency; 4] = [
        Leniency::Decoration,
        Leniency::Identity,
        Leniency::Nul,
        Leniency::NamesCapped,
    ];

    /// The reason as exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Leniency::Decoration => "decoration",
            Leniency::Identity => "identity",
            Leniency::Nul => "nul",
            Leniency::NamesCapped => "names_capped",
        }
    }

    /// This reason's place in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The ways one certificate was read leniently: empty for a well-formed one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lenient(u8);

impl Lenient {
    pub fn contains(self, reason: Leniency) -> bool {
        self.0 & (1 << reason.index()) != 0
    }

    pub fn insert(&mut self, reason: Leniency) {
        self.0 |= 1 << reason.index();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reasons present, in the order of `Leniency::ALL`.
    pub fn iter(self) -> impl Iterator<Item = Leniency> {
        Leniency::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

/// `s` with every NUL replaced by U+FFFD (Postgres stores no NUL, in text or jsonb).
pub fn replace_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A certificate's name lists as certwatch stores them (`Certificate::all_domains`,
/// `names`, `names_digest`).
#[derive(Clone, Debug, PartialEq)]
pub struct NameLists {
    pub all_domains: Vec<String>,
    pub names: Vec<String>,
    pub names_digest: Option<String>,
}

/// The stored name lists from a certificate's names as a feed server sends them
/// (every occurrence, in order): `all_domains` (NUL replaced, exact duplicates
/// removed, at most `MAX_NAMES`: the matched names first, then the others in feed
/// order, kept in feed order), `names` (its normalised set) and, when names were
/// dropped, the digest of the whole normalised set. Linear but for the sort:
/// hash-based de-duplication. The one rule for names read from the feed
/// (`parse_matched`) and from a log entry (`ctlog::entry`), so both give the same
/// lists, and the same issuance key, for one certificate.
pub fn name_lists(feed: Vec<Cow<'_, str>>, matched: &[&str], lenient: &mut Lenient) -> NameLists {
    let cleaned: Vec<Cow<'_, str>> = feed
        .into_iter()
        .map(|n| match replace_nul(&n) {
            Cow::Borrowed(_) => n,
            Cow::Owned(clean) => {
                lenient.insert(Leniency::Nul);
                Cow::Owned(clean)
            }
        })
        .collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(cleaned.len());
    let unique: Vec<&str> = cleaned
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| seen.insert(n))
        .collect();
    let normalised_set = |list: &[&str]| {
        let mut names: Vec<String> = list.iter().map(|n| normalize_name(n)).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    if unique.len() <= MAX_NAMES {
        let names = normalised_set(&unique);
        return NameLists {
            all_domains: unique.into_iter().map(str::to_string).collect(),
            names,
            names_digest: None,
        };
    }
    lenient.insert(Leniency::NamesCapped);
    let everything = normalised_set(&unique);
    let digest = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for name in &everything {
            hasher.update(name.as_bytes());
            hasher.update(b"\n");
        }
        hex_lower(&hasher.finalize())
    };
    drop(everything);
    let matched: HashSet<Cow<'_, str>> = matched.iter().map(|m| replace_nul(m)).collect();
    let mut keep = vec![false; unique.len()];
    let mut kept = 0;
    for (i, name) in unique.iter().enumerate() {
        if kept < MAX_NAMES && matched.contains(*name) {
            keep[i] = true;
            kept += 1;
        }
    }
    for k in keep.iter_mut() {
        if kept >= MAX_NAMES {
            break;
        }
        if !*k {
            *k = true;
            kept += 1;
        }
    }
    let all: Vec<&str> = unique
        .into_iter()
        .zip(keep)
        .filter_map(|(name, k)| k.then_some(name))
        .collect();
    let names = normalised_set(&all);
    NameLists {
        all_domains: all.into_iter().map(str::to_string).collect(),
        names,
        names_digest: Some(digest),
    }
}

/// Lower-case, one trailing dot removed, surrounding whitespace trimmed.
pub fn normalize_name(name: &str) -> String {
    let name = name.trim();
    name.strip_suffix('.').unwrap_or(name).to_lowercase()
}

/// Hex digits only (colons, spaces and newlines dropped), case kept.
fn normalize_hex(s: &str) -> String {
    s.chars().filter(char::is_ascii_hexdigit).collect()
}

/// Upper-case hex, no separators, no leading zeros (`0F`, `f`, `F` are one serial).
pub fn normalize_serial(serial: &str) -> String {
    let hex = normalize_hex(serial).to_ascii_uppercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() && !hex.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// `keyid:CD:82:..\n` or `cd82..` -> `cd82..`; `None` when no hex is left.
pub fn normalize_key_id(aki: &str) -> Option<String> {
    let text = aki.trim();
    let text = text.strip_prefix("keyid:").unwrap_or(text);
    // OpenSSL may append `DirName:...` and `serial:...` lines; the key id is the first line.
    let first = text.lines().next().unwrap_or("");
    let hex = normalize_hex(first).to_ascii_lowercase();
    (!hex.is_empty()).then_some(hex)
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A string borrowed from the frame when it has no escapes, owned otherwise.
/// (serde's own `Cow<str>` always copies.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// A JSON list of strings, borrowed where it can be.
struct Texts<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextsVisitor<'a> {
            type Value = Texts<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts<'a>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(Text(name)) = seq.next_element::<Text<'a>>()? {
                    out.push(name);
                }
                Ok(Texts(out))
            }
        }

        deserializer.deserialize_seq(TextsVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_types_and_names() {
        let go = r#"{"data":{"leaf_cert":{"all_domains":["a.example","B.example."]},"update_type":"X509LogEntry"},"message_type":"certificate_update"}
"#;
        assert_eq!(
            peek(go).unwrap(),
            Peek::Certificate {
                all_domains: vec!["a.example".into(), "B.example.".into()],
                source_url: None,
                cert_index: None,
                timestamp_ms: None,
            }
        );
        let heartbeat = r#"{"message_type": "heartbeat", "timestamp": 1795353248.829172}"#;
        assert_eq!(peek(heartbeat).unwrap(), Peek::Heartbeat);
        let domains = r#"{"data":["a.example","b.example"],"message_type":"dns_entries"}"#;
        assert_eq!(peek(domains).unwrap(), Peek::DnsEntries { count: 2 });
        assert_eq!(
            peek(r#"{"message_type":"stats","data":3}"#).unwrap(),
            Peek::Other
        );
        let null_names =
            r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":null}}}"#;
        assert_eq!(
            peek(null_names).unwrap(),
            Peek::Certificate {
                all_domains: vec![],
                source_url: None,
                cert_index: None,
                timestamp_ms: None,
            }
        );
        let no_leaf = r#"{"message_type":"certificate_update","data":{"leaf_cert":null}}"#;
        assert_eq!(
            peek(no_leaf).unwrap(),
            Peek::Certificate {
                all_domains: vec![],
                source_url: None,
                cert_index: None,
                timestamp_ms: None,
            }
        );
        let escaped = r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["b\u00fccher.example"]}}}"#;
        assert_eq!(
            peek(escaped).unwrap(),
            Peek::Certificate {
                all_domains: vec!["bücher.example".into()],
                source_url: None,
                cert_index: None,
                timestamp_ms: None,
            }
        );
    }

    #[test]
    fn peek_reads_the_log_position_leniently() {
        let position = |frame: &str| match peek(frame).unwrap() {
            Peek::Certificate {
                source_url,
                cert_index,
                ..
            } => (source_url.map(|u| u.into_owned()), cert_index),
            other => panic!("{other:?}"),
        };
        let frame = |data: &str| {
            format!(
                r#"{{"message_type":"certificate_update","data":{{"leaf_cert":{{"all_domains":["a.example"]}},{data}}}}}"#
            )
        };
        let url = || Some("https://ct.example/log".to_string());
        for (data, want) in [
            (
                r#""cert_index":5,"source":{"name":"n","url":"https://ct.example/log","timestamp":1.5}"#,
                (url(), Some(5)),
            ),
            (
                r#""source":{"url":"https://ct.example/log"},"cert_index":18446744073709551615"#,
                (url(), Some(u64::MAX)),
            ),
            (r#""cert_index":-1"#, (None, None)),
            (r#""cert_index":"5""#, (None, None)),
            (r#""cert_index":1e400"#, (None, None)),
            (r#""cert_index":18446744073709551616"#, (None, None)),
            (r#""cert_index":[5],"source":[1]"#, (None, None)),
            (r#""cert_index":{"a":5},"source":"x""#, (None, None)),
            (r#""cert_index":5,"cert_index":6"#, (None, Some(6))),
            (r#""cert_index":5,"cert_index":null"#, (None, Some(5))),
            (r#""source":{"url":7}"#, (None, None)),
            (r#""source":{"url":1e400,"timestamp":1e400}"#, (None, None)),
            (r#""source":1e400"#, (None, None)),
            (r#""source":{"url":{"x":1}},"source":null"#, (None, None)),
            (
                r#""source":{"url":"https://a/x","url":"https://ct.example/log"}"#,
                (url(), None),
            ),
            (
                r#""source":{"url":"https:\/\/ct.example\/log"}"#,
                (url(), None),
            ),
        ] {
            assert_eq!(position(&frame(data)), want, "{data}");
        }
        // A second `data` object adds its names; its position, when readable, counts.
        let two = r#"{"message_type":"certificate_update","data":{"cert_index":1,"leaf_cert":{"all_domains":["a.example"]}},"data":{"cert_index":2,"source":{"url":"https://ct.example/log"}}}"#;
        assert_eq!(position(two), (url(), Some(2)));
    }

    /// Issue 13: the log's own time of the entry, for the per-log lag: the Go
    /// server's `source.timestamp`, the Rust server's `submission_timestamp`, none
    /// on the others (never `seen`); a bad value is `None`, never a lost frame.
    #[test]
    fn peek_reads_the_ct_timestamp_leniently() {
        let timestamp = |data: &str| {
            let frame = format!(
                r#"{{"message_type":"certificate_update","data":{{"leaf_cert":{{"all_domains":["a.example"]}},{data}}}}}"#
            );
            match peek(&frame).unwrap() {
                Peek::Certificate {
                    timestamp_ms,
                    all_domains,
                    ..
                } => {
                    assert_eq!(all_domains, ["a.example"], "{data}");
                    timestamp_ms
                }
                other => panic!("{other:?}"),
            }
        };
        let go = r#""source":{"name":"n","url":"https://ct.example/log","timestamp":1768478402.074,"type":"rfc6962"},"seen":1768478409.5"#;
        let rust = r#""seen":1768478409.5,"submission_timestamp":1768478402.074,"source":{"name":"n","url":"https://ct.example/log"}"#;
        for (data, want) in [
            (go, Some(1_768_478_402_074)),
            (rust, Some(1_768_478_402_074)),
            // Elixir and Python: no timestamp of the log; `seen` is not one.
            (
                r#""seen":1768478409.5,"source":{"url":"u","name":"n"}"#,
                None,
            ),
            (
                r#""source":{"timestamp":1768478402}"#,
                Some(1_768_478_402_000),
            ),
            (
                r#""source":{"timestamp":"1768478402.5"}"#,
                Some(1_768_478_402_500),
            ),
            // Both: the log's source.timestamp first, as `parse_matched`.
            (
                r#""submission_timestamp":5,"source":{"timestamp":7}"#,
                Some(7_000),
            ),
            (
                r#""submission_timestamp":5,"source":{"timestamp":"x"}"#,
                Some(5_000),
            ),
            // Unreadable values are absent, and the frame is still read.
            (r#""source":{"timestamp":"x"}"#, None),
            (r#""source":{"timestamp":-1}"#, None),
            (r#""source":{"timestamp":0}"#, None),
            (r#""source":{"timestamp":1e400}"#, None),
            (r#""source":{"timestamp":253402300800}"#, None),
            (r#""source":{"timestamp":[1]}"#, None),
            (r#""source":{"timestamp":{"a":1}}"#, None),
            (r#""source":{"timestamp":null}"#, None),
            (r#""source":{"timestamp":"\u0031"}"#, None),
            (r#""source":{"timestamp":"inf"}"#, None),
            (r#""source":{"timestamp":"NaN"}"#, None),
            (r#""submission_timestamp":true"#, None),
            (r#""submission_timestamp":"""#, None),
            // Repeated: the last readable one counts.
            (r#""source":{"timestamp":1,"timestamp":2}"#, Some(2_000)),
            (r#""source":{"timestamp":1,"timestamp":"x"}"#, Some(1_000)),
            (
                r#""source":{"timestamp":1},"source":{"url":"u"}"#,
                Some(1_000),
            ),
        ] {
            assert_eq!(timestamp(data), want, "{data}");
        }
        // The fixtures: Go and Rust give one on every certificate, Elixir none.
        for (text, every) in [
            (
                include_str!("../../tests/fixtures/certstream_go_full.jsonl"),
                true,
            ),
            (
                include_str!("../../tests/fixtures/certstream_go_lite.jsonl"),
                true,
            ),
            (
                include_str!("../../tests/fixtures/certstream_rust_full.jsonl"),
                true,
            ),
            (
                include_str!("../../tests/fixtures/certstream_rust_lite.jsonl"),
                true,
            ),
            (
                include_str!("../../tests/fixtures/certstream_elixir_full.jsonl"),
                false,
            ),
        ] {
            for line in text.lines() {
                if let Ok(Peek::Certificate { timestamp_ms, .. }) = peek(line) {
                    let full = parse_certificate(line).unwrap();
                    assert_eq!(timestamp_ms, full.source_timestamp_ms, "{line}");
                    assert_eq!(timestamp_ms.is_some(), every, "{line}");
                }
            }
        }
    }

    #[test]
    fn peek_rejects_malformed_frames() {
        for bad in [
            "",
            "not json",
            "[1,2]",
            "{",
            r#"{"data":{}}"#,
            r#"{"message_type":"certificate_update"}"#,
            r#"{"message_type":"certificate_update","data":[1]}"#,
            r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":[1]}}}"#,
            r#"{"message_type":"dns_entries","data":{}}"#,
            r#"{"message_type":7}"#,
        ] {
            assert!(peek(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn normalisers() {
        assert_eq!(normalize_serial("0ABCDEF0"), "ABCDEF0");
        assert_eq!(normalize_serial("abcdef0"), "ABCDEF0");
        assert_eq!(normalize_serial("0F"), "F");
        assert_eq!(normalize_serial("f"), "F");
        assert_eq!(normalize_serial("00"), "0");
        assert_eq!(normalize_serial("0a:bc"), "ABC");
        assert_eq!(
            normalize_key_id("keyid:CD:82:AA\n").as_deref(),
            Some("cd82aa")
        );
        assert_eq!(
            normalize_key_id("keyid:cd:82:aa").as_deref(),
            Some("cd82aa")
        );
        assert_eq!(normalize_key_id("CD:82:AA").as_deref(), Some("cd82aa"));
        assert_eq!(normalize_key_id("keyid:"), None);
        assert_eq!(normalize_name(" WWW.Example.COM. "), "www.example.com");
    }

    #[test]
    fn python_dialect_precert() {
        let frame = r#"{"message_type": "certificate_update", "data": {"update_type": "PreCertEntry", "leaf_cert": {"subject": {"aggregated": "/CN=shop.example.net", "CN": "shop.example.net"}, "extensions": {"authorityKeyIdentifier": "keyid:CD:82:AA\n", "ct_precert_poison": "NULL"}, "not_before": 1768474800.0, "not_after": 1776250799.0, "serial_number": "0abcdef", "fingerprint": "9C:10:5A:A4:79:ED:93:E7:34:47:22:B6:79:99:EC:73:82:91:02:44", "all_domains": ["shop.example.net", "www.shop.example.net"]}, "chain": [], "cert_index": 5, "seen": 1795353248.9982316, "source": {"url": "127.0.0.1:8443/sandbox2026", "name": "Fake 'Sandbox2026' log"}}}"#;
        let cert = parse_certificate(frame).unwrap();
        assert_eq!(cert.entry_type, EntryType::Precert);
        assert_eq!(cert.serial.as_deref(), Some("ABCDEF"));
        assert_eq!(cert.not_before, Some(1_768_474_800));
        assert_eq!(cert.not_after, Some(1_776_250_799));
        assert_eq!(cert.issuer_key_id.as_deref(), Some("cd82aa"));
        assert_eq!(cert.issuer_o, None);
        assert_eq!(cert.cert_link, None);
        assert_eq!(
            cert.fingerprint_sha1.as_deref(),
            Some("9c105aa479ed93e7344722b67999ec7382910244")
        );
        assert_eq!(cert.subject_cn.as_deref(), Some("shop.example.net"));
    }

    #[test]
    fn tiled_precert_has_no_fingerprint_and_garbage_times_are_unknown() {
        let frame = r#"{"message_type":"certificate_update","data":{"update_type":"X509LogEntry","leaf_cert":{"all_domains":["x.example"],"fingerprint":"DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09","not_before":"soon","not_after":null,"extensions":{"ctlPoisonByte":true}}}}"#;
        let cert = parse_certificate(frame).unwrap();
        assert_eq!(cert.entry_type, EntryType::Precert);
        assert_eq!(cert.fingerprint_sha1, None);
        assert_eq!(cert.not_before, None);
        assert_eq!(cert.not_after, None);
        assert_eq!(cert.serial, None);
    }

    /// A Go full-stream precertificate with every field certwatch reads; the
    /// hostile cases below each spoil one of them (`{{`/`}}`-free templates: the
    /// placeholder `@` is replaced by each case's text).
    const GOOD: &str = r#"{"data":{"cert_index":5,"cert_link":"https://ct.example/log/ct/v1/get-entries?start=5&end=5","leaf_cert":{"all_domains":["shop.example.net","www.shop.example.net"],"as_der":"AAEC","extensions":{"authorityKeyIdentifier":"keyid:cd:82:aa","subjectKeyIdentifier":"keyid:03:1c","ctlPoisonByte":true},"fingerprint":"9C:10:5A:A4:79:ED:93:E7:34:47:22:B6:79:99:EC:73:82:91:02:44","not_after":1776250799,"not_before":1768474800,"serial_number":"0ABCDEF","subject":{"CN":"shop.example.net","aggregated":"/CN=shop.example.net"},"issuer":{"CN":"Fake Issuing CA E1","O":"Fake CT Test PKI","aggregated":"/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI"}},"seen":1795353248.834,"source":{"name":"Fake log","url":"https://ct.example/log","timestamp":1768478405.185},"update_type":"PrecertLogEntry"},"message_type":"certificate_update"}"#;

    /// `GOOD` with `from` replaced by `to` (exactly once).
    fn spoil(from: &str, to: &str) -> String {
        assert_eq!(GOOD.matches(from).count(), 1, "{from}");
        GOOD.replacen(from, to, 1)
    }

    /// What must survive any spoiled decoration: the identity of `GOOD`.
    fn assert_identity_of_good(cert: &Certificate, why: &str) {
        assert_eq!(cert.entry_type, EntryType::Precert, "{why}");
        assert_eq!(
            cert.all_domains,
            ["shop.example.net", "www.shop.example.net"],
            "{why}"
        );
        assert_eq!(cert.names, ["shop.example.net", "www.shop.example.net"]);
        assert_eq!(cert.serial.as_deref(), Some("ABCDEF"), "{why}");
        assert_eq!(cert.not_before, Some(1_768_474_800), "{why}");
        assert_eq!(cert.not_after, Some(1_776_250_799), "{why}");
        assert_eq!(
            cert.fingerprint_sha1.as_deref(),
            Some("9c105aa479ed93e7344722b67999ec7382910244"),
            "{why}"
        );
        assert_eq!(cert.issuer_key_id.as_deref(), Some("cd82aa"), "{why}");
        assert_eq!(
            cert.issuer_dn.as_deref(),
            Some("/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI"),
            "{why}"
        );
    }

    #[test]
    fn the_good_frame_reads_strictly() {
        let (cert, lenient) = parse_matched(GOOD, &["shop.example.net"]);
        assert!(lenient.is_empty(), "{lenient:?}");
        assert_identity_of_good(&cert, "good");
        assert_eq!(cert.unusable_identity, None);
        assert_eq!(cert.names_digest, None);
        assert_eq!(cert.cert_index, Some(5));
        assert_eq!(cert.seen, Some(1_795_353_248.834));
        assert_eq!(cert.source_timestamp_ms, Some(1_768_478_405_185));
        assert_eq!(cert.issuer_o.as_deref(), Some("Fake CT Test PKI"));
        assert_eq!(cert.subject_key_id.as_deref(), Some("031c"));
        assert_eq!(parse_certificate(GOOD).unwrap(), cert);
    }

    /// Issue 12 item 3: a field that only decorates the alert, of the wrong type
    /// or out of range (or repeated), reads as absent; the certificate parses
    /// and keeps its identity.
    #[test]
    fn hostile_decoration_fields_read_as_absent() {
        type Check = fn(&Certificate) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            (r#""cert_index":5"#, r#""cert_index":-1"#, |c| {
                c.cert_index.is_none()
            }),
            (
                r#""cert_index":5"#,
                r#""cert_index":18446744073709551616"#,
                |c| c.cert_index.is_none(),
            ),
            (r#""cert_index":5"#, r#""cert_index":1e400"#, |c| {
                c.cert_index.is_none()
            }),
            (r#""cert_index":5"#, r#""cert_index":"5""#, |c| {
                c.cert_index.is_none()
            }),
            (
                r#""cert_index":5"#,
                r#""cert_index":5,"cert_index":6"#,
                |c| c.cert_index == Some(6),
            ),
            (
                r#""cert_link":"https"#,
                r#""cert_link":7,"x":"https"#,
                |c| c.cert_link.is_none(),
            ),
            (r#""seen":1795353248.834"#, r#""seen":"x""#, |c| {
                c.seen.is_none()
            }),
            (r#""seen":1795353248.834"#, r#""seen":1e400"#, |c| {
                c.seen.is_none()
            }),
            (r#""seen":1795353248.834"#, r#""seen":1e15"#, |c| {
                c.seen.is_none()
            }),
            (r#""seen":1795353248.834"#, r#""seen":-3"#, |c| {
                c.seen.is_none()
            }),
            (r#""seen":1795353248.834"#, r#""seen":{"a":1}"#, |c| {
                c.seen.is_none()
            }),
            (
                r#""timestamp":1768478405.185"#,
                r#""timestamp":1e400"#,
                |c| c.source_timestamp_ms.is_none(),
            ),
            (
                r#""timestamp":1768478405.185"#,
                r#""timestamp":"soon""#,
                |c| c.source_timestamp_ms.is_none(),
            ),
            (r#""name":"Fake log""#, r#""name":5"#, |c| {
                c.source_name.is_none() && c.source_url.is_some()
            }),
            (
                r#""url":"https://ct.example/log","#,
                r#""url":["x"],"#,
                |c| c.source_url.is_none(),
            ),
            (r#""source":{"#, r#""source":7,"x":{"#, |c| {
                c.source_name.is_none() && c.source_url.is_none()
            }),
            (r#""O":"Fake CT Test PKI""#, r#""O":5"#, |c| {
                c.issuer_o.is_none() && c.issuer_cn.is_some()
            }),
            (r#""CN":"Fake Issuing CA E1""#, r#""CN":{}"#, |c| {
                c.issuer_cn.is_none()
            }),
            (r#""subject":{"CN""#, r#""subject":"x","y":{"CN""#, |c| {
                c.subject_cn.is_none()
            }),
            (r#""CN":"shop.example.net""#, r#""CN":true"#, |c| {
                c.subject_cn.is_none()
            }),
            (
                r#""subjectKeyIdentifier":"keyid:03:1c""#,
                r#""subjectKeyIdentifier":3"#,
                |c| c.subject_key_id.is_none(),
            ),
            (
                r#""update_type""#,
                r#""submission_timestamp":"x","update_type""#,
                |c| c.source_timestamp_ms.is_some(),
            ),
        ];
        let mut failed = Vec::new();
        for (from, to, check) in cases {
            let frame = spoil(from, to);
            match parse_certificate(&frame) {
                Ok(cert) if check(&cert) => {
                    assert_identity_of_good(&cert, to);
                }
                Ok(cert) => failed.push(format!("{to}: read as {cert:?}")),
                Err(e) => failed.push(format!("{to}: {e}")),
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    /// The same cases through `parse_matched`: counted as decoration, never as
    /// identity, and the issuance identity is the good frame's.
    #[test]
    fn hostile_decoration_is_counted_and_keeps_the_key() {
        let good = parse_certificate(GOOD).unwrap();
        for (from, to) in [
            (r#""cert_index":5"#, r#""cert_index":-1"#),
            (r#""seen":1795353248.834"#, r#""seen":"x""#),
            (r#""seen":1795353248.834"#, r#""seen":1e400"#),
            (r#""O":"Fake CT Test PKI""#, r#""O":5"#),
            (r#""cert_index":5"#, r#""cert_index":5,"cert_index":6"#),
        ] {
            let (cert, lenient) = parse_matched(&spoil(from, to), &[]);
            assert!(lenient.contains(Leniency::Decoration), "{to}");
            assert!(!lenient.contains(Leniency::Identity), "{to}");
            assert_eq!(cert.unusable_identity, None, "{to}");
            assert_eq!(
                crate::alert::issuance_key(&cert),
                crate::alert::issuance_key(&good),
                "{to}"
            );
        }
    }

    /// Issue 12 item 3: an identity field that cannot be used still gives a
    /// certificate, with what is known, flagged so that it alerts on a key of
    /// its own.
    #[test]
    fn hostile_identity_fields_leave_what_is_known() {
        type Check = fn(&Certificate) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            (
                r#""serial_number":"0ABCDEF""#,
                r#""serial_number":12345"#,
                |c| c.serial.is_none(),
            ),
            (
                r#""serial_number":"0ABCDEF""#,
                r#""serial_number":"zz""#,
                |c| c.serial.is_none(),
            ),
            (r#""serial_number":"0ABCDEF","#, "", |c| c.serial.is_none()),
            (r#""not_after":1776250799"#, r#""not_after":1e400"#, |c| {
                c.not_after.is_none()
            }),
            (r#""not_after":1776250799"#, r#""not_after":1e15"#, |c| {
                c.not_after.is_none()
            }),
            (
                r#""not_after":1776250799"#,
                r#""not_after":253402300800"#,
                |c| c.not_after.is_none(),
            ),
            (r#""not_before":1768474800"#, r#""not_before":-1e15"#, |c| {
                c.not_before.is_none()
            }),
            (r#""not_before":1768474800"#, r#""not_before":[1]"#, |c| {
                c.not_before.is_none()
            }),
            (r#""fingerprint":"9C"#, r#""fingerprint":5,"x":"9C"#, |c| {
                c.fingerprint_sha1.is_none()
            }),
            (r#""as_der":"AAEC""#, r#""as_der":5"#, |c| {
                c.sha256.is_none()
            }),
            (r#""as_der":"AAEC""#, r#""as_der":"%%%""#, |c| {
                c.sha256.is_none()
            }),
            (
                r#""update_type":"PrecertLogEntry""#,
                r#""update_type":5"#,
                |c| c.entry_type == EntryType::Precert,
            ),
            (
                r#""authorityKeyIdentifier":"keyid:cd:82:aa""#,
                r#""authorityKeyIdentifier":5"#,
                |c| c.issuer_key_id.is_none(),
            ),
            (
                r#""aggregated":"/C=ZZ"#,
                r#""aggregated":5,"x":"/C=ZZ"#,
                |c| c.issuer_dn.is_none(),
            ),
            (r#""issuer":{"#, r#""issuer":"x","y":{"#, |c| {
                c.issuer_dn.is_none() && c.issuer_o.is_none()
            }),
            (r#""extensions":{"#, r#""extensions":[],"x":{"#, |c| {
                c.issuer_key_id.is_none()
            }),
            (
                r#""serial_number":"0ABCDEF""#,
                r#""serial_number":"0ABCDEF","serial_number":"0ABCDEE""#,
                |c| c.serial.as_deref() == Some("ABCDEE"),
            ),
            // A second leaf: the names of both are kept (and matched).
            (
                r#","seen""#,
                r#","leaf_cert":{"all_domains":["evil.example.net"],"serial_number":"01"},"seen""#,
                |c| {
                    c.all_domains.iter().any(|n| n == "evil.example.net")
                        && c.all_domains.len() == 3
                },
            ),
        ];
        let mut failed = Vec::new();
        for (from, to, check) in cases {
            let frame = spoil(from, to);
            let cert = match parse_certificate(&frame) {
                Ok(cert) => cert,
                Err(e) => {
                    failed.push(format!("{to}: {e}"));
                    continue;
                }
            };
            if !check(&cert) {
                failed.push(format!("{to}: read as {cert:?}"));
            }
            // The names that matched are always there.
            if !cert.all_domains.iter().any(|n| n == "shop.example.net") {
                failed.push(format!("{to}: lost the names: {:?}", cert.all_domains));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    #[test]
    fn an_unusable_identity_alerts_on_a_key_of_its_own() {
        let good = parse_certificate(GOOD).unwrap();
        let good_key = crate::alert::issuance_key(&good);
        for (from, to) in [
            (r#""serial_number":"0ABCDEF""#, r#""serial_number":12345"#),
            (r#""not_after":1776250799"#, r#""not_after":1e15"#),
            (r#""fingerprint":"9C"#, r#""fingerprint":5,"x":"9C"#),
            (
                r#""authorityKeyIdentifier":"keyid:cd:82:aa""#,
                r#""authorityKeyIdentifier":5"#,
            ),
            (r#""extensions":{"#, r#""extensions":[],"x":{"#),
        ] {
            let frame = spoil(from, to);
            let (cert, lenient) = parse_matched(&frame, &["shop.example.net"]);
            assert!(lenient.contains(Leniency::Identity), "{to}");
            assert!(cert.unusable_identity.is_some(), "{to}");
            let key = crate::alert::issuance_key(&cert);
            assert_ne!(key, good_key, "{to}: passes for the good certificate");
            // The same leaf from another log (other index, link, time, source)
            // is a copy of it, and shares its key.
            let elsewhere = frame
                .replace(r#""cert_index":5"#, r#""cert_index":77"#)
                .replace("1795353248.834", "1795353300.5")
                .replace("https://ct.example/log", "https://other.example/log");
            let (copy, _) = parse_matched(&elsewhere, &["shop.example.net"]);
            assert_eq!(crate::alert::issuance_key(&copy), key, "{to}");
        }
    }

    /// Two certificates without a serial (and, as a tiled precertificate, without
    /// a fingerprint), same names and validity: the old key made the second a copy
    /// of the first. Now each alerts.
    #[test]
    fn a_missing_serial_does_not_collapse_distinct_certificates() {
        let a = spoil(r#""serial_number":"0ABCDEF","#, "")
            .replace(
                r#""fingerprint":"9C:10:5A:A4:79:ED:93:E7:34:47:22:B6:79:99:EC:73:82:91:02:44","#,
                "",
            )
            .replace(r#""as_der":"AAEC","#, "");
        let b = a.replace("keyid:03:1c", "keyid:03:1d");
        assert_ne!(a, b);
        let (ca, cb) = (
            parse_certificate(&a).unwrap(),
            parse_certificate(&b).unwrap(),
        );
        assert_eq!(
            (ca.serial.as_ref(), ca.fingerprint_sha1.as_ref()),
            (None, None)
        );
        assert_ne!(
            crate::alert::issuance_key(&ca),
            crate::alert::issuance_key(&cb),
            "two certificates, one key"
        );
    }

    #[test]
    fn nul_is_replaced_so_the_row_can_be_stored() {
        let frame = spoil(r#""www.shop.example.net""#, r#""x\u0000.shop.example.net""#).replacen(
            r#""CN":"Fake Issuing CA E1""#,
            r#""CN":"Fake\u0000CA""#,
            1,
        );
        let (cert, lenient) = parse_matched(&frame, &["x\0.shop.example.net"]);
        assert!(lenient.contains(Leniency::Nul), "{lenient:?}");
        assert!(!lenient.contains(Leniency::Identity), "{lenient:?}");
        assert_eq!(
            cert.all_domains,
            ["shop.example.net", "x\u{FFFD}.shop.example.net"]
        );
        assert_eq!(cert.issuer_cn.as_deref(), Some("Fake\u{FFFD}CA"));
        let no_nul = |s: &Option<String>| !s.as_deref().unwrap_or("").contains('\0');
        assert!(cert.names.iter().all(|n| !n.contains('\0')));
        assert!(no_nul(&cert.issuer_cn) && no_nul(&cert.subject_cn));
        assert_eq!(replace_nul("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn repeated_keys_keep_every_name_for_the_hot_path() {
        let two_leaves = spoil(
            r#","seen""#,
            r#","leaf_cert":{"all_domains":["evil.example.net"]},"seen""#,
        );
        let Peek::Certificate { all_domains, .. } = peek(&two_leaves).unwrap() else {
            panic!("not a certificate");
        };
        assert_eq!(
            all_domains,
            [
                "shop.example.net",
                "www.shop.example.net",
                "evil.example.net"
            ]
        );
        let two_lists = r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["a.example"],"all_domains":["b.example"]}}}"#;
        let two_datas = r#"{"message_type":"x","data":{"leaf_cert":{"all_domains":["a.example"]}},"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["b.example"]}}}"#;
        for frame in [two_lists, two_datas] {
            assert_eq!(
                peek(frame).unwrap(),
                Peek::Certificate {
                    all_domains: vec!["a.example".into(), "b.example".into()],
                    source_url: None,
                    cert_index: None,
                    timestamp_ms: None,
                },
                "{frame}"
            );
            let (cert, lenient) = parse_matched(frame, &["b.example"]);
            assert_eq!(cert.all_domains, ["a.example", "b.example"], "{frame}");
            assert!(lenient.contains(Leniency::Identity), "{frame}");
        }
        let data_then_text = r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["a.example"],"serial_number":"1","not_before":1,"not_after":2}},"data":"x"}"#;
        let (cert, lenient) = parse_matched(data_then_text, &["a.example"]);
        assert_eq!(cert.all_domains, ["a.example"]);
        assert_eq!(cert.serial.as_deref(), Some("1"));
        assert!(lenient.contains(Leniency::Identity), "a repeated data");
    }

    /// A frame with `n` distinct names `n0.example`.. and `watched` last.
    fn many_names(n: usize, watched: &str) -> String {
        let mut names: Vec<String> = (0..n - 1).map(|i| format!("n{i}.example")).collect();
        names.push(watched.to_string());
        format!(
            r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","leaf_cert":{{"all_domains":{},"serial_number":"0F","not_before":1,"not_after":2,"fingerprint":"AB"}}}}}}"#,
            serde_json::to_string(&names).unwrap()
        )
    }

    /// Issue 12 item 5: 120,000 names parse in linear time, and the lists keep
    /// `MAX_NAMES` of them.
    #[test]
    fn a_certificate_with_120k_names_parses_fast_and_is_capped() {
        let frame = many_names(120_000, "www.watched.example");
        let started = std::time::Instant::now();
        let cert = parse_certificate(&frame).unwrap();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        assert!(
            cert.all_domains.len() <= MAX_NAMES,
            "{}",
            cert.all_domains.len()
        );
        assert!(cert.names.len() <= MAX_NAMES);
    }

    #[test]
    fn capped_names_keep_the_matched_ones_and_one_key() {
        let frame = many_names(120_000, "www.watched.example");
        let (cert, lenient) = parse_matched(&frame, &["www.watched.example"]);
        assert!(lenient.contains(Leniency::NamesCapped));
        assert!(!lenient.contains(Leniency::Identity));
        assert_eq!(cert.all_domains.len(), MAX_NAMES);
        assert_eq!(cert.all_domains.last().unwrap(), "www.watched.example");
        assert_eq!(cert.all_domains[0], "n0.example", "feed order kept");
        assert!(
            cert.names
                .binary_search(&"www.watched.example".to_string())
                .is_ok()
        );
        assert_eq!(cert.names.len(), MAX_NAMES);
        assert!(cert.names_digest.is_some());
        let key = crate::alert::issuance_key(&cert);
        // Whatever matched, and in whatever order the stream lists the names
        // (Elixir: hash order), the key is the same.
        let (unmatched, _) = parse_matched(&frame, &[]);
        assert!(
            !unmatched
                .all_domains
                .iter()
                .any(|n| n == "www.watched.example")
        );
        assert_eq!(crate::alert::issuance_key(&unmatched), key);
        let mut names: Vec<String> = (0..119_999).map(|i| format!("n{i}.example")).collect();
        names.push("www.watched.example".into());
        names.reverse();
        let reversed = frame.replace(
            &serde_json::to_string(&many_names_list(120_000, "www.watched.example")).unwrap(),
            &serde_json::to_string(&names).unwrap(),
        );
        assert_ne!(reversed, frame);
        let (lite, _) = parse_matched(&reversed, &["www.watched.example"]);
        assert_eq!(lite.all_domains[0], "www.watched.example");
        assert_eq!(crate::alert::issuance_key(&lite), key);
        // One name more is another certificate.
        let (more, _) = parse_matched(&many_names(120_001, "www.watched.example"), &[]);
        assert_ne!(crate::alert::issuance_key(&more), key);
        // Below the cap nothing changes.
        let (small, lenient) = parse_matched(&many_names(MAX_NAMES, "w.example"), &[]);
        assert!(lenient.is_empty());
        assert_eq!(small.all_domains.len(), MAX_NAMES);
        assert_eq!(small.names_digest, None);
    }

    fn many_names_list(n: usize, watched: &str) -> Vec<String> {
        let mut names: Vec<String> = (0..n - 1).map(|i| format!("n{i}.example")).collect();
        names.push(watched.to_string());
        names
    }

    #[test]
    fn more_matched_names_than_the_cap_keep_the_first_matched() {
        let names: Vec<String> = (0..MAX_NAMES + 5)
            .map(|i| format!("h{i}.w.example"))
            .collect();
        let frame = format!(
            r#"{{"message_type":"certificate_update","data":{{"leaf_cert":{{"all_domains":{}}}}}}}"#,
            serde_json::to_string(&names).unwrap()
        );
        let matched: Vec<&str> = names.iter().rev().map(String::as_str).collect();
        let (cert, _) = parse_matched(&frame, &matched);
        assert_eq!(cert.all_domains.len(), MAX_NAMES);
        assert_eq!(cert.all_domains[..], names[..MAX_NAMES]);
    }

    #[test]
    fn an_unreadable_frame_still_gives_the_matched_names() {
        let (cert, lenient) = parse_matched("not json", &["a.example", "b\0.example"]);
        assert!(lenient.contains(Leniency::Identity) && lenient.contains(Leniency::Nul));
        assert_eq!(cert.all_domains, ["a.example", "b\u{FFFD}.example"]);
        assert!(cert.unusable_identity.is_some());
    }
}
