//! The hot path: `peek` reads a frame's message type and, for a certificate,
//! the leaf's names, its log position and the log's own timestamp of the entry,
//! borrowing from the frame and skipping everything else. Pure; run on the worker
//! threads for every frame.

use super::message::*;
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
            deduplicating_server: cert.submission_key,
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
                                    cert.submission_key |= more.submission_key;
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
                    submission_key: false,
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
                            cert.submission_key = true;
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
    /// Whether `submission_timestamp` was there at all (certstream-server-rust).
    submission_key: bool,
}

/// `cert_index` read from its raw JSON text: an integer from 0 to
/// `ctlog::MAX_INDEX`, or `None` for anything else (read as raw text so that no
/// value, not even a number out of range, makes the frame unreadable).
fn raw_u64(raw: &RawValue) -> Option<u64> {
    raw.get()
        .parse()
        .ok()
        .filter(|index| *index <= crate::ctlog::MAX_INDEX)
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

#[cfg(test)]
mod tests {
    use super::super::parse::parse_certificate;
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
                deduplicating_server: false,
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
                deduplicating_server: false,
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
                deduplicating_server: false,
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
                deduplicating_server: false,
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
                r#""source":{"url":"https://ct.example/log"},"cert_index":9223372036854775807"#,
                (url(), Some(i64::MAX as u64)),
            ),
            // Issue 18 item 8: 2^63 and above is no index (`ctlog::MAX_INDEX`).
            (
                r#""source":{"url":"https://ct.example/log"},"cert_index":9223372036854775808"#,
                (url(), None),
            ),
            (
                r#""source":{"url":"https://ct.example/log"},"cert_index":18446744073709551615"#,
                (url(), None),
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

    /// Issue 18 item 1: only certstream-server-rust's dialect (its
    /// `submission_timestamp`) marks a feed that drops cross-log duplicates; the Go,
    /// and Elixir servers' messages never do.
    #[test]
    fn only_the_rust_servers_messages_say_it_deduplicates() {
        for (text, rust) in [
            (
                include_str!("../../../tests/fixtures/certstream_go_full.jsonl"),
                false,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_go_lite.jsonl"),
                false,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_rust_full.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_rust_lite.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_elixir_full.jsonl"),
                false,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_elixir_lite.jsonl"),
                false,
            ),
        ] {
            let mut certificates = 0;
            for line in text.lines() {
                if let Ok(Peek::Certificate {
                    deduplicating_server,
                    ..
                }) = peek(line)
                {
                    certificates += 1;
                    assert_eq!(deduplicating_server, rust, "{line:.200}");
                }
            }
            assert!(certificates > 0);
        }
        // The key alone marks the dialect, whatever its value.
        let odd = r#"{"message_type":"certificate_update","data":{"submission_timestamp":"x","leaf_cert":{"all_domains":[]}}}"#;
        assert!(matches!(
            peek(odd).unwrap(),
            Peek::Certificate {
                deduplicating_server: true,
                timestamp_ms: None,
                ..
            }
        ));
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
                include_str!("../../../tests/fixtures/certstream_go_full.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_go_lite.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_rust_full.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_rust_lite.jsonl"),
                true,
            ),
            (
                include_str!("../../../tests/fixtures/certstream_elixir_full.jsonl"),
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
}
