//! certstream messages: serde types for what the feed servers send, and the two
//! parse steps the workers run. Pure, no I/O; called on the worker threads.
//!
//! `peek` is the hot path: it reads only the message type and the leaf's
//! `all_domains`, borrowing from the frame and skipping everything else. Only a
//! certificate whose names match the watch list goes through `parse_certificate`,
//! which reads the fields classification and alerts need into an owned
//! `Certificate`. Every spelling listed in `certstream-format.md` is accepted:
//! Go, Elixir, Python and Rust servers; full, lite and domains-only streams;
//! heartbeats and unknown types; missing or null fields; padded or lowercase
//! serials; `no_expiration`; float times.
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
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// `not_after` of a certificate without a well-defined expiry (99991231235959Z).
pub const NO_EXPIRATION: i64 = 253_402_300_799;

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
    /// A `certificate_update` with its leaf's names (possibly empty).
    Certificate {
        all_domains: Vec<Cow<'a, str>>,
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

/// Reads the message type and, for certificates, the leaf's `all_domains`.
pub fn peek(frame: &str) -> Result<Peek<'_>, ParseError> {
    let envelope: PeekEnvelope<'_> = serde_json::from_str(frame)?;
    let Some(message_type) = envelope.message_type else {
        return Err(ParseError("no message_type".into()));
    };
    match (message_type.as_ref(), envelope.data) {
        ("certificate_update", Some(PeekData::Leaf(all_domains))) => {
            Ok(Peek::Certificate { all_domains })
        }
        ("certificate_update", _) => Err(ParseError("certificate_update without data".into())),
        ("dns_entries", Some(PeekData::Names(count))) => Ok(Peek::DnsEntries { count }),
        ("dns_entries", _) => Err(ParseError("dns_entries without a list".into())),
        ("heartbeat", _) => Ok(Peek::Heartbeat),
        _ => Ok(Peek::Other),
    }
}

#[derive(Deserialize)]
struct PeekEnvelope<'a> {
    #[serde(borrow, default)]
    message_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<PeekData<'a>>,
}

/// `data` as the hot path needs it: a certificate's leaf names, a domains list's
/// length, or nothing.
enum PeekData<'a> {
    Leaf(Vec<Cow<'a, str>>),
    Names(usize),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for PeekData<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for DataVisitor<'a> {
            type Value = PeekData<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or a list")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "leaf_cert" {
                        let leaf: Option<PeekLeaf<'a>> = map.next_value()?;
                        names = leaf.and_then(|l| l.all_domains).unwrap_or_default();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PeekData::Leaf(names))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut count = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(PeekData::Names(count))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(PeekData::Other)
            }
        }

        deserializer.deserialize_any(DataVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct PeekLeaf<'a> {
    #[serde(borrow, default)]
    all_domains: Option<Vec<Cow<'a, str>>>,
}

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
    /// The leaf's names as the feed gave them, exact duplicates removed.
    pub all_domains: Vec<String>,
    /// Lower-case, trailing dot removed, sorted, unique: the name set of identity.
    pub names: Vec<String>,
    pub subject_cn: Option<String>,
    /// Lower-case hex without colons; `None` when absent or the empty-input SHA-1.
    pub fingerprint_sha1: Option<String>,
    /// Lower-case hex SHA-256 of the leaf: computed from `as_der` when the feed
    /// sends it, else the feed's `sha256`; `None` when neither (or the empty-input hash).
    pub sha256: Option<String>,
    /// Upper-case hex without colons or leading zeros.
    pub serial: Option<String>,
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
    pub cert_index: Option<u64>,
    /// When the feed server saw the entry, unix seconds.
    pub seen: Option<f64>,
}

/// Reads a `certificate_update` frame in full. Call only for frames `peek`
/// accepted as certificates.
pub fn parse_certificate(frame: &str) -> Result<Certificate, ParseError> {
    let envelope: FullEnvelope<'_> = serde_json::from_str(frame)?;
    let data = envelope.data.ok_or_else(|| ParseError("no data".into()))?;
    let leaf = data
        .leaf_cert
        .ok_or_else(|| ParseError("no leaf_cert".into()))?;
    let extensions = leaf.extensions.unwrap_or_default();
    let precert = matches!(
        data.update_type.as_deref(),
        Some("PrecertLogEntry") | Some("PreCertEntry")
    ) || extensions.ctl_poison_byte.as_ref().is_some_and(is_truthy)
        || extensions.ct_precert_poison.is_some();
    let entry_type = if precert {
        EntryType::Precert
    } else {
        EntryType::X509
    };

    let mut all_domains: Vec<String> = Vec::new();
    for name in leaf.all_domains.unwrap_or_default() {
        if !all_domains.iter().any(|n| *n == name) {
            all_domains.push(name.into_owned());
        }
    }
    let mut names: Vec<String> = all_domains.iter().map(|n| normalize_name(n)).collect();
    names.sort();
    names.dedup();

    let issuer = leaf.issuer.unwrap_or_default();
    let leaf_aki = extensions
        .authority_key_identifier
        .as_deref()
        .and_then(normalize_key_id);
    let issuer_key_id = match (precert, data.chain.as_deref().and_then(|c| c.first())) {
        (true, Some(signer)) => precert_signer_key_id(leaf_aki.as_deref(), signer).or(leaf_aki),
        _ => leaf_aki,
    };
    let subject_key_id = extensions
        .subject_key_identifier
        .as_deref()
        .and_then(normalize_key_id);
    let source = data.source.unwrap_or_default();
    Ok(Certificate {
        entry_type,
        all_domains,
        names,
        subject_cn: leaf
            .subject
            .and_then(|s| s.cn)
            .map(Cow::into_owned)
            .filter(|s| !s.is_empty()),
        fingerprint_sha1: leaf
            .fingerprint
            .or(leaf.sha1)
            .map(|f| normalize_hex(&f).to_ascii_lowercase())
            .filter(|f| !f.is_empty() && f != EMPTY_SHA1),
        sha256: leaf
            .as_der
            .as_deref()
            .and_then(der_sha256)
            .or_else(|| leaf.sha256.map(|f| normalize_hex(&f).to_ascii_lowercase()))
            .filter(|f| f.len() == 64 && f != EMPTY_SHA256),
        serial: leaf
            .serial_number
            .as_deref()
            .map(normalize_serial)
            .filter(|s| !s.is_empty()),
        not_before: leaf.not_before.and_then(|t| t.0),
        not_after: leaf.not_after.and_then(|t| t.0),
        issuer_o: non_empty(issuer.o),
        issuer_cn: non_empty(issuer.cn),
        issuer_dn: non_empty(issuer.aggregated),
        issuer_key_id,
        subject_key_id,
        source_name: non_empty(source.name),
        source_url: non_empty(source.url),
        source_timestamp_ms: source
            .timestamp
            .or(data.submission_timestamp)
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(|t| (t * 1000.0).round() as i64),
        cert_link: non_empty(data.cert_link),
        cert_index: data.cert_index,
        seen: data.seen,
    })
}

/// When a precertificate was signed by a precertificate signing certificate
/// (`chain[0]` is the PSC, and the leaf's AKI is the PSC's own key id), the final
/// certificate names the CA above it: use the PSC's AKI so both share one key.
fn precert_signer_key_id(leaf_aki: Option<&str>, signer: &ChainCert<'_>) -> Option<String> {
    let ext = signer.extensions.as_ref()?;
    let signer_ski = ext
        .subject_key_identifier
        .as_deref()
        .and_then(normalize_key_id)?;
    let is_psc = ext
        .extended_key_usage
        .as_deref()
        .is_some_and(|eku| eku.is_empty() || eku.contains("1.3.6.1.4.1.11129.2.4.4"))
        || signer
            .subject
            .as_ref()
            .and_then(|s| s.cn.as_deref())
            .is_some_and(|cn| cn.contains("Precertificate Signing"));
    if is_psc && leaf_aki == Some(signer_ski.as_str()) {
        ext.authority_key_identifier
            .as_deref()
            .and_then(normalize_key_id)
    } else {
        None
    }
}

/// Lower-case hex SHA-256 of base64 DER; `None` when it is not base64.
fn der_sha256(as_der: &str) -> Option<String> {
    use base64::Engine;
    use sha2::Digest;
    let der = base64::engine::general_purpose::STANDARD
        .decode(as_der.trim())
        .ok()?;
    (!der.is_empty()).then(|| hex_lower(&sha2::Sha256::digest(&der)))
}

fn is_truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Null => false,
        _ => true,
    }
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned).filter(|s| !s.is_empty())
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

#[derive(Deserialize)]
struct FullEnvelope<'a> {
    #[serde(borrow, default)]
    data: Option<CertData<'a>>,
}

#[derive(Deserialize)]
struct CertData<'a> {
    #[serde(borrow, default)]
    update_type: Option<Cow<'a, str>>,
    #[serde(default)]
    cert_index: Option<u64>,
    #[serde(borrow, default)]
    cert_link: Option<Cow<'a, str>>,
    #[serde(default)]
    seen: Option<f64>,
    /// The log's time of the entry (certstream-server-rust).
    #[serde(default)]
    submission_timestamp: Option<f64>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
    #[serde(borrow, default)]
    leaf_cert: Option<Leaf<'a>>,
    #[serde(borrow, default)]
    chain: Option<Vec<ChainCert<'a>>>,
}

#[derive(Deserialize, Default)]
struct Source<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
struct Leaf<'a> {
    #[serde(borrow, default)]
    all_domains: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    fingerprint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sha1: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sha256: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    as_der: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    serial_number: Option<Cow<'a, str>>,
    #[serde(default)]
    not_before: Option<UnixTime>,
    #[serde(default)]
    not_after: Option<UnixTime>,
    #[serde(borrow, default)]
    issuer: Option<DistinguishedName<'a>>,
    #[serde(borrow, default)]
    subject: Option<DistinguishedName<'a>>,
    #[serde(borrow, default)]
    extensions: Option<Extensions<'a>>,
}

#[derive(Deserialize)]
struct ChainCert<'a> {
    #[serde(borrow, default)]
    subject: Option<DistinguishedName<'a>>,
    #[serde(borrow, default)]
    extensions: Option<Extensions<'a>>,
}

#[derive(Deserialize, Default)]
struct DistinguishedName<'a> {
    #[serde(rename = "CN", borrow, default)]
    cn: Option<Cow<'a, str>>,
    #[serde(rename = "O", borrow, default)]
    o: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aggregated: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Extensions<'a> {
    #[serde(rename = "authorityKeyIdentifier", borrow, default)]
    authority_key_identifier: Option<Cow<'a, str>>,
    #[serde(rename = "subjectKeyIdentifier", borrow, default)]
    subject_key_identifier: Option<Cow<'a, str>>,
    #[serde(rename = "extendedKeyUsage", borrow, default)]
    extended_key_usage: Option<Cow<'a, str>>,
    #[serde(rename = "ctlPoisonByte", default)]
    ctl_poison_byte: Option<serde_json::Value>,
    #[serde(default)]
    ct_precert_poison: Option<IgnoredAny>,
}

/// A certificate time in any server's spelling: integer or float seconds, a
/// numeric string, or `"no_expiration"`. Anything else reads as unknown (`None`).
struct UnixTime(Option<i64>);

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;

        impl Visitor<'_> for TimeVisitor {
            type Value = UnixTime;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("unix seconds or \"no_expiration\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnixTime, E> {
                Ok(UnixTime(Some(v)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnixTime, E> {
                Ok(UnixTime(i64::try_from(v).ok()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<UnixTime, E> {
                Ok(UnixTime(v.is_finite().then(|| v.floor() as i64)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<UnixTime, E> {
                if v == "no_expiration" {
                    return Ok(UnixTime(Some(NO_EXPIRATION)));
                }
                Ok(UnixTime(
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64),
                ))
            }

            fn visit_unit<E: de::Error>(self) -> Result<UnixTime, E> {
                Ok(UnixTime(None))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<UnixTime, E> {
                Ok(UnixTime(None))
            }
        }

        deserializer.deserialize_any(TimeVisitor)
    }
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
                all_domains: vec!["a.example".into(), "B.example.".into()]
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
                all_domains: vec![]
            }
        );
        let no_leaf = r#"{"message_type":"certificate_update","data":{"leaf_cert":null}}"#;
        assert_eq!(
            peek(no_leaf).unwrap(),
            Peek::Certificate {
                all_domains: vec![]
            }
        );
        let escaped = r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["b\u00fccher.example"]}}}"#;
        assert_eq!(
            peek(escaped).unwrap(),
            Peek::Certificate {
                all_domains: vec!["bücher.example".into()]
            }
        );
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
}
