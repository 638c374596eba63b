//! The full, lenient read of a matched certificate (`parse_certificate`,
//! `parse_matched`): every field on its own, a bad one spoiling only itself, a
//! watched name never lost. Pure; run on the worker threads for matches only.

use super::message::*;
use crate::cert::*;
use crate::hex;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Reads a `certificate_update` frame in full. Fails only when the frame is not
/// a JSON object with a `data` object holding a `leaf_cert` object; every field
/// inside is read leniently, as [`parse_matched`] does.
pub fn parse_certificate(frame: &str) -> Result<Certificate, ParseError> {
    read_certificate(frame, &[]).map(|(cert, _)| cert)
}

/// Reads a certificate whose names matched the watch list: never fails, since a
/// watched name is never skipped. `matched` are the names that matched, as the
/// feed spelled them: kept in `all_domains` whatever the cap.
///
/// A field that only decorates the alert and has the wrong type or is out of
/// range reads as absent. An identity field that is unusable leaves the
/// certificate with what is known and an `unusable_identity`, so it alerts
/// under a key of its own (and is `suspicious` unless the inventory knows its
/// fingerprint). NUL in strings becomes U+FFFD; times outside
/// `MIN_TIME..=NO_EXPIRATION` are dropped, never clamped. Names past
/// `MAX_NAMES` are dropped from the lists (the matched ones kept) after all of
/// them have gone into `names_digest`. The second value says which of these
/// happened. A frame whose envelope cannot be read at all (`peek` would have
/// refused it) gives a certificate of the matched names alone.
pub fn parse_matched(frame: &str, matched: &[&str]) -> (Certificate, Lenient) {
    read_certificate(frame, matched).unwrap_or_else(|_| {
        let mut lenient = Lenient::default();
        lenient.insert(Leniency::Identity);
        let names: Vec<Cow<'_, str>> = matched.iter().map(|n| Cow::Borrowed(*n)).collect();
        let NameLists {
            all_domains,
            names,
            names_digest,
        } = name_lists(names, matched, &mut lenient);
        let cert = Certificate {
            entry_type: EntryType::X509,
            all_domains,
            names,
            names_digest,
            unusable_identity: Some(sha256_hex(&[frame])),
            subject_cn: None,
            fingerprint_sha1: None,
            sha256: None,
            serial: None,
            not_before: None,
            not_after: None,
            issuer_o: None,
            issuer_cn: None,
            issuer_dn: None,
            issuer_key_id: None,
            subject_key_id: None,
            source_name: None,
            source_url: None,
            source_timestamp_ms: None,
            cert_link: None,
            cert_index: None,
            seen: None,
        };
        (cert, lenient)
    })
}

fn read_certificate(frame: &str, matched: &[&str]) -> Result<(Certificate, Lenient), ParseError> {
    use Leniency::{Decoration, Identity};
    let envelope: Obj<'_> = serde_json::from_str(frame)?;
    let mut r = Reader::default();
    let datas: Vec<Obj<'_>> = envelope
        .all("data")
        .filter_map(|raw| Obj::of(raw).ok().flatten())
        .collect();
    let data = datas.last().ok_or_else(|| ParseError("no data".into()))?;
    let leaf_raws: Vec<&RawValue> = datas
        .iter()
        .flat_map(|d| d.all("leaf_cert"))
        .filter(|raw| raw.get() != "null")
        .collect();
    let leaves: Vec<Obj<'_>> = leaf_raws
        .iter()
        .filter_map(|raw| Obj::of(raw).ok().flatten())
        .collect();
    let leaf = leaves
        .last()
        .ok_or_else(|| ParseError("no leaf_cert".into()))?;
    let data_count = envelope
        .all("data")
        .filter(|raw| raw.get() != "null")
        .count();
    if data_count > 1 || leaf_raws.len() > 1 || leaves.len() < leaf_raws.len() {
        r.flag(Identity);
    }

    // Every occurrence's names, in frame order, as `peek` reads them.
    let mut feed_names: Vec<Cow<'_, str>> = Vec::new();
    for l in &leaves {
        let mut lists = 0;
        for raw in l.all("all_domains") {
            lists += 1;
            match got::<Texts<'_>>(Some(raw)) {
                Got::Value(Texts(more)) => feed_names.extend(more),
                Got::Absent => {}
                Got::Unusable => r.flag(Identity),
            }
        }
        if lists > 1 {
            r.flag(Identity);
        }
    }
    let NameLists {
        all_domains,
        names,
        names_digest,
    } = name_lists(feed_names, matched, &mut r.lenient);

    let extensions = r.object(Some(leaf), "extensions", Identity);
    let ext = extensions.as_ref();
    let update_type = r.text(Some(data), "update_type", Identity);
    let poisoned = ext.is_some_and(|e| {
        e.last("ctlPoisonByte")
            .0
            .is_some_and(|v| !matches!(v.get(), "false" | "null"))
            || e.last("ct_precert_poison")
                .0
                .is_some_and(|v| v.get() != "null")
    });
    let precert = matches!(
        update_type.as_deref(),
        Some("PrecertLogEntry" | "PreCertEntry")
    ) || poisoned;
    let entry_type = if precert {
        EntryType::Precert
    } else {
        EntryType::X509
    };

    let issuer = r.object(Some(leaf), "issuer", Identity);
    let leaf_aki = r
        .text(ext, "authorityKeyIdentifier", Identity)
        .map(|aki| normalize_key_id(&aki).ok_or(()))
        .and_then(|k| r.usable(k, Identity));
    let issuer_key_id = if precert {
        let signer = r.chain_head(data);
        signer
            .and_then(|s| precert_signer_key_id(&mut r, leaf_aki.as_deref(), &s))
            .or(leaf_aki)
    } else {
        leaf_aki
    };
    let subject_key_id = r
        .text(ext, "subjectKeyIdentifier", Decoration)
        .map(|ski| normalize_key_id(&ski).ok_or(()))
        .and_then(|k| r.usable(k, Decoration));

    let fingerprint_sha1 = match r.text(Some(leaf), "fingerprint", Identity) {
        Some(f) => Some(f),
        None => r.text(Some(leaf), "sha1", Identity),
    }
    .map(|f| {
        let hex = normalize_hex(&f).to_ascii_lowercase();
        if hex.is_empty() { Err(()) } else { Ok(hex) }
    })
    .and_then(|f| r.usable(f, Identity))
    .filter(|f| f != EMPTY_SHA1);
    let der_sha256 = r
        .text(Some(leaf), "as_der", Identity)
        .map(|der| der_sha256(&der).ok_or(()))
        .and_then(|h| r.usable(h, Identity));
    let feed_sha256 = r
        .text(Some(leaf), "sha256", Identity)
        .map(|f| {
            let hex = normalize_hex(&f).to_ascii_lowercase();
            if hex.len() == 64 { Ok(hex) } else { Err(()) }
        })
        .and_then(|h| r.usable(h, Identity));
    let sha256 = der_sha256.or(feed_sha256).filter(|f| f != EMPTY_SHA256);

    let serial = r
        .text(Some(leaf), "serial_number", Identity)
        .map(|s| {
            let serial = normalize_serial(&s);
            if serial.is_empty() {
                Err(())
            } else {
                Ok(serial)
            }
        })
        .and_then(|s| r.usable(s, Identity));
    let not_before = r.cert_time(leaf, "not_before");
    let not_after = r.cert_time(leaf, "not_after");
    if serial.is_none() || not_before.is_none() || not_after.is_none() {
        r.flag(Identity);
    }

    let issuer_dn = r.text(issuer.as_ref(), "aggregated", Identity);
    let issuer_o = r.text(issuer.as_ref(), "O", Decoration);
    let issuer_cn = r.text(issuer.as_ref(), "CN", Decoration);
    let subject = r.object(Some(leaf), "subject", Decoration);
    let subject_cn = r.text(subject.as_ref(), "CN", Decoration);
    let source = r.object(Some(data), "source", Decoration);
    let source_name = r.text(source.as_ref(), "name", Decoration);
    let source_url = r.text(source.as_ref(), "url", Decoration);
    let source_timestamp_ms = match r.moment(source.as_ref(), "timestamp") {
        Some(t) => Some(t),
        None => r.moment(Some(data), "submission_timestamp"),
    }
    .map(|t| (t * 1000.0).round() as i64);
    let cert_link = r.text(Some(data), "cert_link", Decoration);
    let cert_index = match got::<u64>(r.field(data, "cert_index", Decoration)) {
        Got::Value(i) if i64::try_from(i).is_ok() => Some(i),
        Got::Absent => None,
        _ => {
            r.flag(Decoration);
            None
        }
    };
    let seen = r.moment(Some(data), "seen");

    let unusable_identity = r.lenient.contains(Identity).then(|| {
        let texts: Vec<&str> = leaf_raws.iter().map(|raw| raw.get()).collect();
        sha256_hex(&texts)
    });
    let cert = Certificate {
        entry_type,
        all_domains,
        names,
        names_digest,
        unusable_identity,
        subject_cn,
        fingerprint_sha1,
        sha256,
        serial,
        not_before,
        not_after,
        issuer_o,
        issuer_cn,
        issuer_dn,
        issuer_key_id,
        subject_key_id,
        source_name,
        source_url,
        source_timestamp_ms,
        cert_link,
        cert_index,
        seen,
    };
    Ok((cert, r.lenient))
}

/// Lower-case hex SHA-256 over `parts`, each followed by a NUL.
fn sha256_hex(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize())
}

/// When a precertificate was signed by a precertificate signing certificate
/// (`chain[0]` is the PSC, and the leaf's AKI is the PSC's own key id), the final
/// certificate names the CA above it: use the PSC's AKI so both share one key.
fn precert_signer_key_id(
    r: &mut Reader,
    leaf_aki: Option<&str>,
    signer: &Obj<'_>,
) -> Option<String> {
    use Leniency::Decoration;
    let ext = r.object(Some(signer), "extensions", Decoration)?;
    let signer_ski = r
        .text(Some(&ext), "subjectKeyIdentifier", Decoration)
        .and_then(|s| normalize_key_id(&s))?;
    let subject = r.object(Some(signer), "subject", Decoration);
    let is_psc = r
        .string(Some(&ext), "extendedKeyUsage", Decoration)
        .is_some_and(|eku| eku.is_empty() || eku.contains("1.3.6.1.4.1.11129.2.4.4"))
        || r.text(subject.as_ref(), "CN", Decoration)
            .is_some_and(|cn| cn.contains("Precertificate Signing"));
    if is_psc && leaf_aki == Some(signer_ski.as_str()) {
        r.text(Some(&ext), "authorityKeyIdentifier", Decoration)
            .and_then(|aki| normalize_key_id(&aki))
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
    (!der.is_empty()).then(|| hex::encode(&sha2::Sha256::digest(&der)))
}

/// One JSON object of the frame with its values kept as raw text, read only when
/// asked: a value of the wrong shape spoils that field alone, and a repeated key
/// is kept (every occurrence, in order) instead of failing the whole frame.
struct Obj<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Obj<'a> {
    /// The object `raw` holds: `Ok(None)` for null, `Err` for anything else
    /// that is not an object.
    fn of(raw: &'a RawValue) -> Result<Option<Obj<'a>>, serde_json::Error> {
        serde_json::from_str(raw.get())
    }

    /// Every value of `key`, in order.
    fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'a RawValue> + 's {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// The last value of `key`, and whether the key was repeated.
    fn last(&self, key: &str) -> (Option<&'a RawValue>, bool) {
        let mut found = None;
        let mut repeated = false;
        for (k, v) in &self.0 {
            if k == key {
                repeated |= found.is_some();
                found = Some(*v);
            }
        }
        (found, repeated)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Obj<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ObjVisitor<'a> {
            type Value = Obj<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'a>, A::Error> {
                let mut fields = Vec::new();
                while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
                    let value: &'a RawValue = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(Obj(fields))
            }
        }

        deserializer.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// A field read on its own.
enum Got<T> {
    /// Missing or null.
    Absent,
    Value(T),
    /// Present, but not of the expected shape.
    Unusable,
}

fn got<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Got<T> {
    match raw {
        None => Got::Absent,
        Some(raw) if raw.get() == "null" => Got::Absent,
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(v) => Got::Value(v),
            Err(_) => Got::Unusable,
        },
    }
}

/// Reads fields one at a time and records how leniently.
#[derive(Default)]
struct Reader {
    lenient: Lenient,
}

impl Reader {
    fn flag(&mut self, reason: Leniency) {
        self.lenient.insert(reason);
    }

    /// A value that turned out unusable after all flags `class`.
    fn usable<T>(&mut self, value: Result<T, ()>, class: Leniency) -> Option<T> {
        value.map_err(|()| self.flag(class)).ok()
    }

    /// The last value of `key` in `obj`; a repeated key flags `class`.
    fn field<'a>(&mut self, obj: &Obj<'a>, key: &str, class: Leniency) -> Option<&'a RawValue> {
        let (value, repeated) = obj.last(key);
        if repeated {
            self.flag(class);
        }
        value
    }

    /// A string field, NUL replaced; `None` when absent, empty or unusable
    /// (which flags `class`).
    fn text(&mut self, obj: Option<&Obj<'_>>, key: &str, class: Leniency) -> Option<String> {
        self.string(obj, key, class).filter(|s| !s.is_empty())
    }

    /// `text`, empty strings included.
    fn string(&mut self, obj: Option<&Obj<'_>>, key: &str, class: Leniency) -> Option<String> {
        let raw = obj.and_then(|o| self.field(o, key, class));
        match got::<Text<'_>>(raw) {
            Got::Value(Text(s)) => {
                let clean = replace_nul(&s);
                if let Cow::Owned(_) = clean {
                    self.flag(Leniency::Nul);
                }
                Some(clean.into_owned())
            }
            Got::Absent => None,
            Got::Unusable => {
                self.flag(class);
                None
            }
        }
    }

    /// An object field; `None` when absent or unusable (which flags `class`).
    fn object<'a>(&mut self, obj: Option<&Obj<'a>>, key: &str, class: Leniency) -> Option<Obj<'a>> {
        let raw = obj.and_then(|o| self.field(o, key, class))?;
        match Obj::of(raw) {
            Ok(found) => found,
            Err(_) => {
                self.flag(class);
                None
            }
        }
    }

    /// A certificate time (identity): `None` when absent, unusable or outside
    /// `MIN_TIME..=NO_EXPIRATION`; all but absence flag `Identity`.
    fn cert_time(&mut self, leaf: &Obj<'_>, key: &str) -> Option<i64> {
        let raw = self.field(leaf, key, Leniency::Identity);
        match got::<Seconds>(raw) {
            Got::Value(Seconds(t)) => {
                let t = t.floor();
                if t >= MIN_TIME as f64 && t <= NO_EXPIRATION as f64 {
                    Some(t as i64)
                } else {
                    self.flag(Leniency::Identity);
                    None
                }
            }
            Got::Absent => None,
            Got::Unusable => {
                self.flag(Leniency::Identity);
                None
            }
        }
    }

    /// A moment the feed or the log recorded (decoration), in seconds:
    /// `None` when absent, unusable, not positive or past `NO_EXPIRATION`.
    fn moment(&mut self, obj: Option<&Obj<'_>>, key: &str) -> Option<f64> {
        let raw = obj.and_then(|o| self.field(o, key, Leniency::Decoration));
        match got::<Seconds>(raw) {
            Got::Value(Seconds(t)) if is_moment(t) => Some(t),
            Got::Absent => None,
            _ => {
                self.flag(Leniency::Decoration);
                None
            }
        }
    }

    /// The first certificate of `data.chain` (decoration: without it a PSC
    /// precertificate keeps the PSC's key id, which can only split a pair).
    fn chain_head<'a>(&mut self, data: &Obj<'a>) -> Option<Obj<'a>> {
        let raw = self.field(data, "chain", Leniency::Decoration);
        match got::<Vec<&'a RawValue>>(raw) {
            Got::Value(chain) => {
                let head = chain.first()?;
                match Obj::of(head) {
                    Ok(found) => found,
                    Err(_) => {
                        self.flag(Leniency::Decoration);
                        None
                    }
                }
            }
            Got::Absent => None,
            Got::Unusable => {
                self.flag(Leniency::Decoration);
                None
            }
        }
    }
}

/// A time in any server's spelling: integer or float seconds, a numeric
/// string, or `"no_expiration"`; finite. Range is the caller's to check.
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;

        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("unix seconds or \"no_expiration\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if v.is_finite() {
                    Ok(Seconds(v))
                } else {
                    Err(E::custom("not finite"))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                if v == "no_expiration" {
                    return Ok(Seconds(NO_EXPIRATION as f64));
                }
                match v.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Seconds(f)),
                    _ => Err(E::custom("not a time")),
                }
            }
        }

        deserializer.deserialize_any(SecondsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::Peek;
    use super::super::peek::peek;
    use super::*;

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
                    deduplicating_server: false,
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

    /// Issue 12 item 5: of 120,000 names the lists keep `MAX_NAMES` (what the
    /// parse costs is measured by `cargo bench --bench bench_peek`).
    #[test]
    fn a_certificate_with_120k_names_is_capped() {
        let frame = many_names(120_000, "www.watched.example");
        let cert = parse_certificate(&frame).unwrap();
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
