//! One decoded log entry -> the `certstream::Certificate` a feed server would
//! have sent for it, so a backfilled certificate takes the same match, dedupe
//! and alert path (and gets the same issuance key) as one seen on the feed.
//! Pure, no I/O; run on the `backfill` thread.
//!
//! Fields follow certstream-server-go, which also reads the logged entry: names,
//! subject, issuer, serial, validity and key id come from the logged certificate,
//! or for a precertificate from the logged TBS (RFC 6962 already rewrote it past
//! a precertificate signing certificate, so its issuer and key id are the final
//! certificate's); the fingerprints are of the final certificate's DER, or of the
//! submitted precertificate's. Only an entry whose certificate (or TBS) does not
//! parse is an error; a malformed extension leaves its field empty.
//!
//! Names go through the feed's own rule (`certstream::name_lists`): NUL replaced,
//! exact duplicates removed in linear time, at most `MAX_NAMES` kept, the matched
//! ones first. Which names matched is only known once the caller has matched them,
//! so an entry converts to a [`Logged`]: the certificate as the feed keeps an
//! unmatched one, plus every name for matching when there are more than the cap
//! ([`Logged::names`]); [`Logged::into_certificate`] then keeps the matched ones, as
//! `certstream::parse_matched` does.

use super::LogKind;
use super::rfc6962::{self, DecodeError, LogEntry, SignedEntry};
use super::tiles::{self, DataTile};
use crate::cert::{
    Certificate, Lenient, MAX_NAMES, NameLists, name_lists, normalize_key_id, normalize_serial,
};
use crate::hex;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use x509_parser::certificate::{TbsCertificate, X509Certificate};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// The log an entry came from, as the caller knows it from the log list.
#[derive(Clone, Copy, Debug)]
pub struct LogSource<'a> {
    /// The log's URL (RFC 6962 prefix or static-ct monitoring prefix).
    pub url: &'a str,
    /// The log's description.
    pub name: &'a str,
    pub kind: LogKind,
}

/// Why an entry gave no certificate. Either way the caller counts it.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryError {
    /// The entry's framing did not decode (RFC 6962 leaf or base64).
    Decode(DecodeError),
    /// The logged certificate or TBSCertificate is not parsable X.509.
    Certificate(x509_parser::error::X509Error),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Decode(e) => write!(f, "log entry: {e}"),
            EntryError::Certificate(e) => write!(f, "logged certificate: {e}"),
        }
    }
}

impl std::error::Error for EntryError {}

impl From<DecodeError> for EntryError {
    fn from(e: DecodeError) -> EntryError {
        EntryError::Decode(e)
    }
}

/// One entry's outcome: its certificate, or the error to count.
pub type EntryResult = Result<Logged, EntryError>;

/// A converted entry: the certificate a feed server would have sent for it, with its
/// name lists as certwatch keeps an unmatched one (it derefs to that), and every name
/// for matching.
#[derive(Clone, Debug)]
pub struct Logged {
    cert: Certificate,
    /// Every name (as a feed server lists them), kept only when the certificate has
    /// more than `MAX_NAMES` distinct ones: `cert` keeps `MAX_NAMES` of them, but
    /// every name is matched, and the matched ones are kept whatever the cap.
    every_name: Option<Vec<String>>,
}

impl Logged {
    /// The names to match against the watch list: all of them.
    pub fn names(&self) -> &[String] {
        self.every_name.as_deref().unwrap_or(&self.cert.all_domains)
    }

    /// The certificate once `matched` (the names that matched, as `names` spells
    /// them) is known: the lists `certstream::parse_matched` would keep for the same
    /// names, the matched ones first when there are more than `MAX_NAMES`.
    pub fn into_certificate<S: AsRef<str>>(self, matched: &[S]) -> Certificate {
        let Logged {
            mut cert,
            every_name,
        } = self;
        if let Some(every) = every_name {
            let matched: Vec<&str> = matched.iter().map(AsRef::as_ref).collect();
            let names = every.iter().map(|n| Cow::Borrowed(n.as_str())).collect();
            let lists = name_lists(names, &matched, &mut Lenient::default());
            (cert.all_domains, cert.names, cert.names_digest) =
                (lists.all_domains, lists.names, lists.names_digest);
        }
        cert
    }

    /// The certificate when nothing matched.
    pub fn into_unmatched(self) -> Certificate {
        self.cert
    }
}

impl Deref for Logged {
    type Target = Certificate;

    fn deref(&self) -> &Certificate {
        &self.cert
    }
}

/// Converts the entry at log index `index` of `source`: the certificate as kept when
/// nothing matched (see [`to_logged`] for the one to match).
pub fn to_certificate(
    entry: &LogEntry<'_>,
    index: u64,
    source: &LogSource<'_>,
) -> Result<Certificate, EntryError> {
    to_logged(entry, index, source).map(Logged::into_unmatched)
}

/// Converts the entry at log index `index` of `source`.
pub fn to_logged(
    entry: &LogEntry<'_>,
    index: u64,
    source: &LogSource<'_>,
) -> Result<Logged, EntryError> {
    let parse_error = |e: x509_parser::nom::Err<x509_parser::error::X509Error>| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            EntryError::Certificate(e)
        }
        x509_parser::nom::Err::Incomplete(_) => {
            EntryError::Certificate(x509_parser::error::X509Error::InvalidCertificate)
        }
    };
    let (tbs, fingerprinted): (TbsCertificate<'_>, Option<&[u8]>) =
        match entry.timestamped.signed_entry {
            SignedEntry::X509 { certificate } => {
                let (_, cert) = X509Certificate::from_der(certificate).map_err(parse_error)?;
                (cert.tbs_certificate, Some(certificate))
            }
            SignedEntry::Precert {
                tbs_certificate, ..
            } => {
                let (_, tbs) = TbsCertificate::from_der(tbs_certificate).map_err(parse_error)?;
                (tbs, entry.pre_certificate)
            }
        };

    let mut san_names: Vec<&str> = Vec::new();
    let mut san_seen = false;
    let mut is_ca = false;
    let mut aki = None;
    let mut ski = None;
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) if !san_seen => {
                san_seen = true;
                san_names.extend(san.general_names.iter().filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(*dns),
                    _ => None,
                }));
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::SubjectKeyIdentifier(id) if ski.is_none() => {
                ski = normalize_key_id(&hex::encode(id.0));
            }
            ParsedExtension::AuthorityKeyIdentifier(id) if aki.is_none() => {
                aki = id
                    .key_identifier
                    .as_ref()
                    .and_then(|k| normalize_key_id(&hex::encode(k.0)));
            }
            _ => {}
        }
    }

    let subject_cn = joined(tbs.subject(), Attr::CommonName);
    // certstream-server-go: SAN dNSNames in order, then the subject CN unless the
    // certificate is a CA (or the name is already there, which the dedupe of
    // `name_lists` removes like any other duplicate).
    let feed_names: Vec<Cow<'_, str>> = san_names
        .into_iter()
        .chain(subject_cn.as_deref().filter(|_| !is_ca))
        .map(Cow::Borrowed)
        .collect();
    let every_name = (feed_names.len() > MAX_NAMES)
        .then(|| feed_names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let NameLists {
        all_domains,
        names,
        names_digest,
    } = name_lists(feed_names, &[], &mut Lenient::default());
    // Only a capped list needs every name kept beside it.
    let every_name = every_name.filter(|_| names_digest.is_some());

    let serial = normalize_serial(&hex::encode(tbs.raw_serial()));
    let cert_link = match source.kind {
        LogKind::Rfc6962 => Some(format!(
            "{}/ct/v1/get-entries?start={index}&end={index}",
            source.url.trim_end_matches('/')
        )),
        LogKind::Tiled => None,
    };
    let cert = Certificate {
        entry_type: entry.entry_type(),
        all_domains,
        names,
        names_digest,
        unusable_identity: None,
        subject_cn,
        fingerprint_sha1: fingerprinted.map(|der| hex::encode(&Sha1::digest(der))),
        sha256: fingerprinted.map(|der| hex::encode(&Sha256::digest(der))),
        serial: Some(serial).filter(|s| !s.is_empty()),
        not_before: Some(tbs.validity().not_before.timestamp()),
        not_after: Some(tbs.validity().not_after.timestamp()),
        issuer_o: joined(tbs.issuer(), Attr::Organization),
        issuer_cn: joined(tbs.issuer(), Attr::CommonName),
        issuer_dn: Some(aggregated(tbs.issuer())),
        issuer_key_id: aki,
        subject_key_id: ski,
        source_name: Some(source.name.to_string()).filter(|s| !s.is_empty()),
        source_url: Some(source.url.to_string()).filter(|s| !s.is_empty()),
        source_timestamp_ms: i64::try_from(entry.timestamped.timestamp_ms).ok(),
        cert_link,
        cert_index: Some(index),
        seen: None,
    };
    Ok(Logged { cert, every_name })
}

#[derive(Clone, Copy)]
enum Attr {
    Country,
    CommonName,
    Locality,
    Organization,
    OrganizationalUnit,
    State,
}

/// The values of one attribute of a name joined with `,` (certstream-server-go's
/// spelling of a multi-valued attribute); `None` when there is none. A value that
/// is not a string type is skipped.
fn joined(name: &X509Name<'_>, attr: Attr) -> Option<String> {
    let values: Vec<&str> = match attr {
        Attr::Country => collect(name.iter_country()),
        Attr::CommonName => collect(name.iter_common_name()),
        Attr::Locality => collect(name.iter_locality()),
        Attr::Organization => collect(name.iter_organization()),
        Attr::OrganizationalUnit => collect(name.iter_organizational_unit()),
        Attr::State => collect(name.iter_state_or_province()),
    };
    (!values.is_empty()).then(|| values.join(","))
}

fn collect<'a, 'b: 'a>(
    attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Vec<&'a str> {
    attrs.filter_map(|a| a.as_str().ok()).collect()
}

/// certstream-server-go's `aggregated`: `/C=../CN=../L=../O=../OU=../ST=..`,
/// absent attributes skipped except `CN`, which is always there (maybe empty).
fn aggregated(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (label, attr) in [
        ("C", Attr::Country),
        ("CN", Attr::CommonName),
        ("L", Attr::Locality),
        ("O", Attr::Organization),
        ("OU", Attr::OrganizationalUnit),
        ("ST", Attr::State),
    ] {
        match joined(name, attr) {
            Some(value) => out.push_str(&format!("/{label}={value}")),
            None if label == "CN" => out.push_str("/CN="),
            None => {}
        }
    }
    out
}

/// One entry of a page read from a log: its Merkle leaf hash (what the log's
/// root commits to; `None` only when an RFC 6962 `leaf_input` is not even base64)
/// and the certificate it converts to.
pub struct PageEntry {
    pub leaf_hash: Option<[u8; 32]>,
    pub cert: EntryResult,
}

/// Every entry of a `get-entries` body for the range starting at `start` (of
/// which `asked` entries were requested), converted. The outer error means the
/// body as a whole is unusable; an inner one is a single entry to count. The
/// list may be shorter than asked: the log capped the batch.
pub fn certificates_from_get_entries(
    body: &[u8],
    start: u64,
    asked: usize,
    source: &LogSource<'_>,
) -> Result<Vec<EntryResult>, DecodeError> {
    Ok(page_from_get_entries(body, start, asked, source)?
        .into_iter()
        .map(|e| e.cert)
        .collect())
}

/// [`certificates_from_get_entries`], each entry with its leaf hash: the hash of
/// its `leaf_input`, which is the `MerkleTreeLeaf`.
pub fn page_from_get_entries(
    body: &[u8],
    start: u64,
    asked: usize,
    source: &LogSource<'_>,
) -> Result<Vec<PageEntry>, DecodeError> {
    let raw = rfc6962::parse_get_entries(body, asked)?;
    Ok(raw
        .iter()
        .zip(start..)
        .map(|(raw, index)| match raw.decode_base64() {
            Ok(bytes) => PageEntry {
                leaf_hash: Some(super::merkle::leaf_hash(&bytes.leaf_input)),
                cert: bytes
                    .decode()
                    .map_err(EntryError::Decode)
                    .and_then(|entry| to_logged(&entry, index, source)),
            },
            Err(e) => PageEntry {
                leaf_hash: None,
                cert: Err(EntryError::Decode(e)),
            },
        })
        .collect())
}

/// Every entry of a data tile, converted; the `i`-th is log index
/// `tile.start() + i`. A tile that does not decode is an error as a whole (its
/// entries cannot be told apart).
pub fn certificates_from_tile(
    data: &[u8],
    tile: DataTile,
    source: &LogSource<'_>,
) -> Result<Vec<EntryResult>, DecodeError> {
    Ok(page_from_tile(data, tile, source)?
        .into_iter()
        .map(|e| e.cert)
        .collect())
}

/// [`certificates_from_tile`], each entry with its leaf hash.
pub fn page_from_tile(
    data: &[u8],
    tile: DataTile,
    source: &LogSource<'_>,
) -> Result<Vec<PageEntry>, DecodeError> {
    let entries = tiles::decode_data_tile_hashed(data, tile)?;
    Ok(entries
        .iter()
        .zip(tile.start()..)
        .map(|((leaf_hash, entry), index)| PageEntry {
            leaf_hash: Some(*leaf_hash),
            cert: to_logged(entry, index, source),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctlog::rfc6962::{Chain, TimestampedEntry};

    const SOURCE: LogSource<'static> = LogSource {
        url: "https://ct.example/log/",
        name: "Example log",
        kind: LogKind::Rfc6962,
    };

    fn x509(cert: &[u8]) -> LogEntry<'_> {
        LogEntry {
            timestamped: TimestampedEntry {
                timestamp_ms: 1_768_478_402_074,
                signed_entry: SignedEntry::X509 { certificate: cert },
                extensions: &[],
            },
            pre_certificate: None,
            chain: Chain::Certificates(vec![]),
        }
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        for bad in [&b"\x30\x03\x02\x01\x01"[..], b"\x30", b"not der at all"] {
            let err = to_certificate(&x509(bad), 1, &SOURCE).unwrap_err();
            assert!(matches!(err, EntryError::Certificate(_)), "{err:?}");
        }
        let precert = LogEntry {
            timestamped: TimestampedEntry {
                timestamp_ms: 0,
                signed_entry: SignedEntry::Precert {
                    issuer_key_hash: &[0; 32],
                    tbs_certificate: b"\x30\x80",
                },
                extensions: &[],
            },
            pre_certificate: Some(b"x"),
            chain: Chain::Certificates(vec![]),
        };
        assert!(to_certificate(&precert, 1, &SOURCE).is_err());
    }

    #[test]
    fn source_fields_and_link() {
        // The certificate of the Go fixture's index 10 (nosan.example.com).
        let der = fixture_der();
        let cert = to_certificate(&x509(&der), 10, &SOURCE).unwrap();
        assert_eq!(
            cert.cert_link.as_deref(),
            Some("https://ct.example/log/ct/v1/get-entries?start=10&end=10")
        );
        assert_eq!(cert.source_timestamp_ms, Some(1_768_478_402_074));
        assert_eq!(cert.cert_index, Some(10));
        assert_eq!(cert.source_name.as_deref(), Some("Example log"));
        let tiled = LogSource {
            kind: LogKind::Tiled,
            ..SOURCE
        };
        assert_eq!(
            to_certificate(&x509(&der), 10, &tiled).unwrap().cert_link,
            None
        );
    }

    fn fixture_der() -> Vec<u8> {
        use base64::Engine;
        let line = include_str!("../../tests/fixtures/certstream_go_full.jsonl")
            .lines()
            .find(|l| l.contains("\"cert_index\":10,"))
            .expect("fixture line");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let b64 = v["data"]["leaf_cert"]["as_der"].as_str().unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
}
