//! The full, lenient read of a matched certificate (`parse_certificate`,
//! `parse_matched`): every field on its own, a bad one spoiling only itself, a
//! watched name never lost. Pure; run on the worker threads for matches only.

use super::*;
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
    hex_lower(&hasher.finalize())
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
    (!der.is_empty()).then(|| hex_lower(&sha2::Sha256::digest(&der)))
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
