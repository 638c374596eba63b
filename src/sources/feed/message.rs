//! certstream messages as the feed servers send them: what a message is
//! (`MessageKind`, `Peek`), `ParseError`, the borrowed string readers `peek` and
//! `parse` share, and where the servers' dialects differ. Pure, no I/O; used on the
//! worker threads.
//!
//! `peek` (peek.rs) is the hot path: it reads only the message type, the leaf's
//! `all_domains` (the names of every occurrence of a repeated `data`, `leaf_cert`
//! or `all_domains`), the log position and the log's timestamp of the entry,
//! borrowing from the frame and skipping everything else. Only a certificate whose
//! names match the watch list goes through `parse_matched` (parse.rs), which reads
//! the fields classification and alerts need into an owned `cert::Certificate`.
//! Every dialect is accepted: Go, Elixir, Python and Rust servers; full, lite and
//! domains-only streams; heartbeats and unknown types; missing or null fields;
//! padded or lowercase serials; `no_expiration`; float times.
//!
//! A matched certificate is never skipped: `parse_matched` reads each field on
//! its own, so a field of the wrong type, out of range or repeated spoils only
//! itself. A decorating field then reads as absent; an unusable or missing
//! identity field leaves what is known and `Certificate::unusable_identity`, which
//! keys the alert apart. NUL in strings becomes U+FFFD and times outside
//! `MIN_TIME..=NO_EXPIRATION` are dropped, so the row can always be stored. At
//! most `MAX_NAMES` names are kept, the matched ones first. `Lenient` says which
//! of these happened (`certwatch_ct_lenient_certificates_total`).
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

use crate::cert::NO_EXPIRATION;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Whether `seconds` can be a moment a feed server or a log recorded (`seen`, a CT
/// timestamp): finite, positive, at most `NO_EXPIRATION`.
pub(super) fn is_moment(seconds: f64) -> bool {
    seconds.is_finite() && seconds > 0.0 && seconds <= NO_EXPIRATION as f64
}

/// SHA-1 of zero bytes: what certstream-server-go gives every precertificate of a
/// static-ct (tiled) log. It identifies nothing.
pub(super) const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
/// SHA-256 of zero bytes, the same for the feed's `sha256` field.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
    /// `deduplicating_server` says the message is in certstream-server-rust's
    /// dialect (`data.submission_timestamp`, whatever its value): a server that
    /// sends a certificate logged in several logs once, so its logs' sequences have
    /// holes by design.
    Certificate {
        all_domains: Vec<Cow<'a, str>>,
        source_url: Option<Cow<'a, str>>,
        cert_index: Option<u64>,
        timestamp_ms: Option<i64>,
        deduplicating_server: bool,
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
pub struct ParseError(pub(super) String);

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

/// A string borrowed from the frame when it has no escapes, owned otherwise.
/// (serde's own `Cow<str>` always copies.)
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

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
pub(super) struct Texts<'a>(pub(super) Vec<Cow<'a, str>>);

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
