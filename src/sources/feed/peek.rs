//! The hot path: `peek` reads a frame's message type and, for a certificate,
//! the leaf's names, its log position and the log's own timestamp of the entry,
//! borrowing from the frame and skipping everything else. Pure; run on the worker
//! threads for every frame.

use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Reads the message type and, for certificates, the leaf's `all_domains`, the
/// `source.url` and the `cert_index` (the log position the gap tracking needs),
/// and the CT timestamp of the entry where the server gives one (the per-log lag):
/// `source.timestamp` (certstream-server-go 1.9+) or else `submission_timestamp`
/// (certstream-server-rust), both float seconds, as `parse_matched` reads them.
///
/// A repeated key does not make the frame unreadable: the last `message_type`
/// counts, and the names of every `data`, `leaf_cert` and `all_domains` are
/// read, in frame order, so a watched name is never lost to a duplicate. Of a
/// repeated `source.url`, `cert_index` or timestamp the last readable one counts
/// (as in `parse_matched`); an unreadable one is `None`, never an error.
pub fn peek(frame: &str) -> Result<Peek<'_>, ParseError> {
    let envelope: PeekEnvelope<'_> = serde_json::from_str(frame)?;
    let Some(message_type) = envelope.message_type else {
        return Err(ParseError("no message_type".into()));
    };
    match (message_type.as_ref(), envelope.data) {
        ("certificate_update", Some(PeekData::Leaf(cert))) => Ok(Peek::Certificate {
            all_domains: cert.names,
            source_url: cert.source_url,
            cert_index: cert.cert_index,
            timestamp_ms: cert.source_timestamp_ms.or(cert.submission_timestamp_ms),
        }),
        ("certificate_update", _) => Err(ParseError("certificate_update without data".into())),
        ("dns_entries", Some(PeekData::Names(count))) => Ok(Peek::DnsEntries { count }),
        ("dns_entries", _) => Err(ParseError("dns_entries without a list".into())),
        ("heartbeat", _) => Ok(Peek::Heartbeat),
        _ => Ok(Peek::Other),
    }
}

/// The keys `peek` reads, recognised without allocating.
enum PeekKey {
    MessageType,
    Data,
    LeafCert,
    AllDomains,
    Source,
    Url,
    CertIndex,
    Timestamp,
    SubmissionTimestamp,
    Other,
}

impl<'de> Deserialize<'de> for PeekKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = PeekKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PeekKey, E> {
                Ok(match v {
                    "message_type" => PeekKey::MessageType,
                    "data" => PeekKey::Data,
                    "leaf_cert" => PeekKey::LeafCert,
                    "all_domains" => PeekKey::AllDomains,
                    "source" => PeekKey::Source,
                    "url" => PeekKey::Url,
                    "cert_index" => PeekKey::CertIndex,
                    "timestamp" => PeekKey::Timestamp,
                    "submission_timestamp" => PeekKey::SubmissionTimestamp,
                    _ => PeekKey::Other,
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct PeekEnvelope<'a> {
    message_type: Option<Cow<'a, str>>,
    data: Option<PeekData<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PeekEnvelope<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
            type Value = PeekEnvelope<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a certstream message")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut envelope = PeekEnvelope {
                    message_type: None,
                    data: None,
                };
                while let Some(key) = map.next_key::<PeekKey>()? {
                    match key {
                        PeekKey::MessageType => {
                            if let Some(Text(t)) = map.next_value::<Option<Text<'a>>>()? {
                                envelope.message_type = Some(t);
                            }
                        }
                        PeekKey::Data => {
                            let Some(data) = map.next_value::<Option<PeekData<'a>>>()? else {
                                continue;
                            };
                            // A repeated `data` adds its names to the first one's.
                            envelope.data = match (envelope.data.take(), data) {
                                (Some(PeekData::Leaf(mut cert)), PeekData::Leaf(more)) => {
                                    cert.names.extend(more.names);
                                    cert.source_url = more.source_url.or(cert.source_url);
                                    cert.cert_index = more.cert_index.or(cert.cert_index);
                                    cert.source_timestamp_ms =
                                        more.source_timestamp_ms.or(cert.source_timestamp_ms);
                                    cert.submission_timestamp_ms = more
                                        .submission_timestamp_ms
                                        .or(cert.submission_timestamp_ms);
                                    Some(PeekData::Leaf(cert))
                                }
                                (Some(PeekData::Leaf(cert)), _) => Some(PeekData::Leaf(cert)),
                                (_, data) => Some(data),
                            };
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(envelope)
            }
        }

        deserializer.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
    }
}

/// `data` as the hot path needs it: a certificate's leaf names, log position and
/// timestamp, a domains list's length, or nothing.
enum PeekData<'a> {
    Leaf(PeekCert<'a>),
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
                let mut cert = PeekCert {
                    names: Vec::new(),
                    source_url: None,
                    cert_index: None,
                    source_timestamp_ms: None,
                    submission_timestamp_ms: None,
                };
                while let Some(key) = map.next_key::<PeekKey>()? {
                    match key {
                        PeekKey::LeafCert => {
                            if let Some(leaf) = map.next_value::<Option<PeekLeaf<'a>>>()? {
                                if cert.names.is_empty() {
                                    cert.names = leaf.0;
                                } else {
                                    cert.names.extend(leaf.0);
                                }
                            }
                        }
                        PeekKey::CertIndex => {
                            if let Some(index) = raw_u64(map.next_value::<&'a RawValue>()?) {
                                cert.cert_index = Some(index);
                            }
                        }
                        PeekKey::Source => {
                            let source = raw_source(map.next_value::<&'a RawValue>()?);
                            if let Some(url) = source.url {
                                cert.source_url = Some(url);
                            }
                            if let Some(ms) = source.timestamp_ms {
                                cert.source_timestamp_ms = Some(ms);
                            }
                        }
                        PeekKey::SubmissionTimestamp => {
                            if let Some(ms) = raw_moment_ms(map.next_value::<&'a RawValue>()?) {
                                cert.submission_timestamp_ms = Some(ms);
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(PeekData::Leaf(cert))
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

/// A certificate message's `data` as `peek` reads it.
struct PeekCert<'a> {
    names: Vec<Cow<'a, str>>,
    source_url: Option<Cow<'a, str>>,
    cert_index: Option<u64>,
    /// `source.timestamp`, in milliseconds.
    source_timestamp_ms: Option<i64>,
    /// `submission_timestamp`, in milliseconds.
    submission_timestamp_ms: Option<i64>,
}

/// `cert_index` read from its raw JSON text: an unsigned 64-bit integer, or
/// `None` for anything else (read as raw text so that no value, not even a number
/// out of range, makes the frame unreadable).
fn raw_u64(raw: &RawValue) -> Option<u64> {
    raw.get().parse().ok()
}

/// A string read from its raw JSON text (borrowed when it has no escapes), or
/// `None` for any other value.
fn raw_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    if !text.contains('\\') {
        // A valid JSON string without escapes: its bytes between the quotes.
        return text.get(1..text.len() - 1).map(Cow::Borrowed);
    }
    serde_json::from_str::<Text<'_>>(text).ok().map(|t| t.0)
}

/// A moment in seconds read from its raw JSON text (a number, or a string
/// holding one, as `parse_matched` reads times), in milliseconds: `None` unless it
/// is finite, positive and at most `NO_EXPIRATION`.
fn raw_moment_ms(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    let text = match text.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?.trim(),
        None => text,
    };
    let seconds: f64 = text.parse().ok()?;
    is_moment(seconds).then(|| (seconds * 1000.0).round() as i64)
}

/// `data.source` as `peek` reads it: its `url` (the last string one) and its
/// `timestamp` (the last readable one, in milliseconds); each `None` when absent
/// or unreadable, both when `source` is not an object.
fn raw_source(raw: &RawValue) -> PeekSource<'_> {
    if !raw.get().starts_with('{') {
        return PeekSource::default();
    }
    serde_json::from_str::<PeekSource<'_>>(raw.get()).unwrap_or_default()
}

#[derive(Default)]
struct PeekSource<'a> {
    url: Option<Cow<'a, str>>,
    timestamp_ms: Option<i64>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PeekSource<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for SourceVisitor<'a> {
            type Value = PeekSource<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut source = PeekSource::default();
                while let Some(key) = map.next_key::<PeekKey>()? {
                    match key {
                        PeekKey::Url => {
                            if let Some(u) = raw_text(map.next_value::<&'a RawValue>()?) {
                                source.url = Some(u);
                            }
                        }
                        PeekKey::Timestamp => {
                            if let Some(ms) = raw_moment_ms(map.next_value::<&'a RawValue>()?) {
                                source.timestamp_ms = Some(ms);
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(source)
            }
        }

        deserializer.deserialize_map(SourceVisitor(std::marker::PhantomData))
    }
}

/// A leaf's `all_domains` (every occurrence's, in order).
struct PeekLeaf<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for PeekLeaf<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LeafVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for LeafVisitor<'a> {
            type Value = PeekLeaf<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a certificate object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut names: Vec<Cow<'a, str>> = Vec::new();
                while let Some(key) = map.next_key::<PeekKey>()? {
                    if let PeekKey::AllDomains = key {
                        if let Some(Texts(more)) = map.next_value::<Option<Texts<'a>>>()? {
                            if names.is_empty() {
                                names = more;
                            } else {
                                names.extend(more);
                            }
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PeekLeaf(names))
            }
        }

        deserializer.deserialize_map(LeafVisitor(std::marker::PhantomData))
    }
}
