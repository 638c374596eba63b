//! RFC 6962 log data: the `get-sth` and `get-entries` JSON bodies, the
//! `MerkleTreeLeaf` in `leaf_input` and the chains in `extra_data` (§3.1, §3.4,
//! §4.3, §4.6). Pure, no I/O; run on the `backfill` thread. Every length is
//! checked against the bytes left, so truncated or hostile input is an `Err`,
//! never a panic; decoded entries borrow from the caller's buffers.

use crate::cert::EntryType;
use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Most entries accepted from one `get-entries` body. Logs cap their batches
/// far below this (commonly 256 to 1,024).
pub const MAX_BATCH: usize = 4096;

/// Chain certificates (or issuer fingerprints) kept per entry; the rest are
/// checked for framing and dropped.
pub const MAX_CHAIN: usize = 16;

/// Why log data did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not the JSON expected (position of the first error).
    Json { line: usize, column: usize },
    /// A field is not standard base64.
    Base64 { field: &'static str },
    /// More than the caller asked for, or more than a limit allows.
    TooMany { what: &'static str, limit: usize },
    /// A length runs past the end of its data.
    Truncated { what: &'static str },
    /// Bytes are left after a structure that should end there.
    TrailingData { what: &'static str },
    /// A field whose length must be at least one is empty.
    Empty { what: &'static str },
    /// `MerkleTreeLeaf.version` other than v1 (0).
    Version(u8),
    /// `MerkleTreeLeaf.leaf_type` other than timestamped_entry (0).
    LeafType(u8),
    /// `LogEntryType` other than x509_entry (0) or precert_entry (1).
    EntryType(u16),
    /// A static-ct leaf whose `leaf_index` extension is missing or not its index.
    LeafIndex { expected: u64, found: Option<u64> },
    /// A CtExtensions list that is malformed (duplicate type, bad length).
    Extensions,
    /// A checkpoint that does not have the lines a checkpoint must have.
    Checkpoint { what: &'static str },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Json { line, column } => {
                write!(f, "malformed json at line {line} column {column}")
            }
            DecodeError::Base64 { field } => write!(f, "{field} is not base64"),
            DecodeError::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
            DecodeError::Truncated { what } => write!(f, "truncated {what}"),
            DecodeError::TrailingData { what } => write!(f, "trailing bytes after {what}"),
            DecodeError::Empty { what } => write!(f, "empty {what}"),
            DecodeError::Version(v) => write!(f, "unknown leaf version {v}"),
            DecodeError::LeafType(t) => write!(f, "unknown leaf type {t}"),
            DecodeError::EntryType(t) => write!(f, "unknown entry type {t}"),
            DecodeError::LeafIndex { expected, found } => {
                write!(f, "leaf_index {found:?} where {expected} was expected")
            }
            DecodeError::Extensions => f.write_str("malformed CtExtensions"),
            DecodeError::Checkpoint { what } => write!(f, "malformed checkpoint: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> DecodeError {
        DecodeError::Json {
            line: e.line(),
            column: e.column(),
        }
    }
}

/// `TimestampedEntry` (RFC 6962 §3.4), shared by RFC 6962 leaves and static-ct
/// tile leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampedEntry<'a> {
    /// The log's timestamp of the entry, milliseconds since the epoch.
    pub timestamp_ms: u64,
    pub signed_entry: SignedEntry<'a>,
    /// `CtExtensions`, undecoded (static-ct logs put `leaf_index` here).
    pub extensions: &'a [u8],
}

/// The logged certificate: a whole certificate, or a precertificate's TBS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedEntry<'a> {
    /// `ASN.1Cert`: the final certificate's DER.
    X509 { certificate: &'a [u8] },
    /// `PreCert`: the precertificate's TBSCertificate with the poison extension
    /// removed (and issuer and AKI rewritten past a precertificate signing
    /// certificate), and the SHA-256 of the issuing CA's public key.
    Precert {
        issuer_key_hash: &'a [u8; 32],
        tbs_certificate: &'a [u8],
    },
}

/// The issuers that came with an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chain<'a> {
    /// RFC 6962 `extra_data`: the certificates, issuer first.
    Certificates(Vec<&'a [u8]>),
    /// static-ct: SHA-256 fingerprints of the issuers, fetched separately.
    Fingerprints(Vec<&'a [u8; 32]>),
}

/// One decoded log entry, from either API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry<'a> {
    pub timestamped: TimestampedEntry<'a>,
    /// The submitted precertificate (poison extension, CA or PSC signature),
    /// `None` for x509 entries.
    pub pre_certificate: Option<&'a [u8]>,
    /// At most [`MAX_CHAIN`] issuers.
    pub chain: Chain<'a>,
}

impl LogEntry<'_> {
    pub fn entry_type(&self) -> EntryType {
        match self.timestamped.signed_entry {
            SignedEntry::X509 { .. } => EntryType::X509,
            SignedEntry::Precert { .. } => EntryType::Precert,
        }
    }
}

/// A cursor over TLS-presentation-language data (RFC 8446 §3): big-endian
/// integers and length-prefixed vectors, each read checked.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What is left to read.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.data.len() {
            return Err(DecodeError::Truncated { what });
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub(crate) fn uint(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        debug_assert!(n <= 8);
        Ok(self
            .bytes(n, what)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, what)?[0])
    }

    /// `opaque x<0..2^(8*prefix)-1>`: a vector with a `prefix`-byte length.
    pub(crate) fn vec(
        &mut self,
        prefix: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.uint(prefix, what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { what })?;
        self.bytes(len, what)
    }

    /// A vector whose declared minimum length is 1 (`ASN.1Cert<1..2^24-1>`).
    pub(crate) fn non_empty_vec(
        &mut self,
        prefix: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let v = self.vec(prefix, what)?;
        if v.is_empty() {
            return Err(DecodeError::Empty { what });
        }
        Ok(v)
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingData { what })
        }
    }
}

/// Reads a `TimestampedEntry` (without the `MerkleTreeLeaf` header).
pub(crate) fn read_timestamped_entry<'a>(
    r: &mut Reader<'a>,
) -> Result<TimestampedEntry<'a>, DecodeError> {
    let timestamp_ms = r.uint(8, "timestamp")?;
    let entry_type = r.uint(2, "entry_type")? as u16;
    let signed_entry = match entry_type {
        0 => SignedEntry::X509 {
            certificate: r.non_empty_vec(3, "certificate")?,
        },
        1 => {
            let hash = r.bytes(32, "issuer_key_hash")?;
            SignedEntry::Precert {
                issuer_key_hash: hash.try_into().expect("32 bytes were read"),
                tbs_certificate: r.non_empty_vec(3, "tbs_certificate")?,
            }
        }
        other => return Err(DecodeError::EntryType(other)),
    };
    let extensions = r.vec(2, "extensions")?;
    Ok(TimestampedEntry {
        timestamp_ms,
        signed_entry,
        extensions,
    })
}

/// Decodes one entry of a `get-entries` response from its base64-decoded
/// `leaf_input` (a `MerkleTreeLeaf`) and `extra_data`.
pub fn decode_leaf<'a>(
    leaf_input: &'a [u8],
    extra_data: &'a [u8],
) -> Result<LogEntry<'a>, DecodeError> {
    let mut leaf = Reader::new(leaf_input);
    let version = leaf.u8("version")?;
    if version != 0 {
        return Err(DecodeError::Version(version));
    }
    let leaf_type = leaf.u8("leaf_type")?;
    if leaf_type != 0 {
        return Err(DecodeError::LeafType(leaf_type));
    }
    let timestamped = read_timestamped_entry(&mut leaf)?;
    leaf.finish("leaf_input")?;

    let mut extra = Reader::new(extra_data);
    let pre_certificate = match timestamped.signed_entry {
        SignedEntry::X509 { .. } => None,
        SignedEntry::Precert { .. } => Some(extra.non_empty_vec(3, "pre_certificate")?),
    };
    let chain = read_certificates(extra.vec(3, "certificate_chain")?)?;
    extra.finish("extra_data")?;
    Ok(LogEntry {
        timestamped,
        pre_certificate,
        chain: Chain::Certificates(chain),
    })
}

/// The `ASN.1Cert` list inside a certificate chain: every length is checked,
/// the first [`MAX_CHAIN`] are kept.
fn read_certificates(list: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut r = Reader::new(list);
    let mut certs = Vec::new();
    while !r.is_empty() {
        let cert = r.non_empty_vec(3, "chain certificate")?;
        if certs.len() < MAX_CHAIN {
            certs.push(cert);
        }
    }
    Ok(certs)
}

/// A `get-sth` response, signature not verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sth {
    pub tree_size: u64,
    pub timestamp_ms: u64,
}

#[derive(Deserialize)]
struct SthJson {
    tree_size: u64,
    timestamp: u64,
}

/// Reads the tree size and timestamp of a `get-sth` body.
pub fn parse_sth(body: &[u8]) -> Result<Sth, DecodeError> {
    let sth: SthJson = serde_json::from_slice(body)?;
    if sth.tree_size > super::MAX_INDEX {
        return Err(DecodeError::TooMany {
            what: "entries in the tree (tree_size)",
            limit: super::MAX_INDEX as usize,
        });
    }
    Ok(Sth {
        tree_size: sth.tree_size,
        timestamp_ms: sth.timestamp,
    })
}

/// One `get-entries` item, base64 still encoded (borrowed from the body when it
/// has no JSON escapes).
#[derive(Debug, Deserialize)]
pub struct RawEntry<'a> {
    #[serde(borrow)]
    leaf_input: Cow<'a, str>,
    #[serde(borrow)]
    extra_data: Cow<'a, str>,
}

/// One entry's decoded bytes, which [`EntryBytes::decode`] borrows from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryBytes {
    pub leaf_input: Vec<u8>,
    pub extra_data: Vec<u8>,
}

impl RawEntry<'_> {
    pub fn decode_base64(&self) -> Result<EntryBytes, DecodeError> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        Ok(EntryBytes {
            leaf_input: engine.decode(self.leaf_input.as_bytes()).map_err(|_| {
                DecodeError::Base64 {
                    field: "leaf_input",
                }
            })?,
            extra_data: engine.decode(self.extra_data.as_bytes()).map_err(|_| {
                DecodeError::Base64 {
                    field: "extra_data",
                }
            })?,
        })
    }
}

impl EntryBytes {
    pub fn decode(&self) -> Result<LogEntry<'_>, DecodeError> {
        decode_leaf(&self.leaf_input, &self.extra_data)
    }
}

#[derive(Deserialize)]
struct GetEntries<'a> {
    #[serde(borrow, deserialize_with = "bounded_entries")]
    entries: Vec<RawEntry<'a>>,
}

/// The `entries` array, refused past [`MAX_BATCH`] items before they are all read.
fn bounded_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RawEntry<'de>>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<RawEntry<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_BATCH} entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(entry) = seq.next_element()? {
                if entries.len() == MAX_BATCH {
                    return Err(serde::de::Error::invalid_length(MAX_BATCH + 1, &self));
                }
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    d.deserialize_seq(Bounded)
}

/// Reads a `get-entries` body. A log may return fewer entries than asked (it
/// caps batches: the caller continues from `start + entries.len()`), never more
/// than `asked`, and never none: an empty list is an error, since asking again
/// would loop.
pub fn parse_get_entries(body: &[u8], asked: usize) -> Result<Vec<RawEntry<'_>>, DecodeError> {
    let parsed: GetEntries<'_> = serde_json::from_slice(body)?;
    let limit = asked.min(MAX_BATCH);
    if parsed.entries.len() > limit {
        return Err(DecodeError::TooMany {
            what: "entries",
            limit,
        });
    }
    if parsed.entries.is_empty() {
        return Err(DecodeError::Empty { what: "entries" });
    }
    Ok(parsed.entries)
}

/// A Merkle audit path is at most this long (a tree of 2^63 entries).
const MAX_PROOF: usize = 64;

/// The hashes of a proof, each standard base64 of 32 bytes, at most `MAX_PROOF`.
fn proof_hashes(encoded: &[String], field: &'static str) -> Result<Vec<[u8; 32]>, DecodeError> {
    use base64::Engine;
    if encoded.len() > MAX_PROOF {
        return Err(DecodeError::TooMany {
            what: "proof hashes",
            limit: MAX_PROOF,
        });
    }
    encoded
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(DecodeError::Base64 { field })
        })
        .collect()
}

/// A `get-proof-by-hash` response: the leaf's index and its audit path.
pub fn parse_proof_by_hash(body: &[u8]) -> Result<(u64, Vec<[u8; 32]>), DecodeError> {
    #[derive(Deserialize)]
    struct Proof {
        leaf_index: u64,
        audit_path: Vec<String>,
    }
    let proof: Proof = serde_json::from_slice(body)?;
    Ok((
        proof.leaf_index,
        proof_hashes(&proof.audit_path, "audit_path")?,
    ))
}

/// A `get-sth-consistency` response: the consistency proof's hashes.
pub fn parse_consistency(body: &[u8]) -> Result<Vec<[u8; 32]>, DecodeError> {
    #[derive(Deserialize)]
    struct Consistency {
        consistency: Vec<String>,
    }
    let proof: Consistency = serde_json::from_slice(body)?;
    proof_hashes(&proof.consistency, "consistency")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_parse_and_bad_ones_are_errors() {
        let h = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let (index, path) = parse_proof_by_hash(
            format!(r#"{{"leaf_index":7,"audit_path":["{h}","{h}"]}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!((index, path.len()), (7, 2));
        assert_eq!(
            parse_consistency(format!(r#"{{"consistency":["{h}"]}}"#).as_bytes()).unwrap(),
            vec![[0u8; 32]]
        );
        assert!(parse_consistency(br#"{"consistency":["AAAA"]}"#).is_err());
        assert!(parse_proof_by_hash(br#"{"leaf_index":-1,"audit_path":[]}"#).is_err());
        let long: Vec<String> = (0..65).map(|_| format!("\"{h}\"")).collect();
        assert!(
            parse_consistency(format!(r#"{{"consistency":[{}]}}"#, long.join(",")).as_bytes())
                .is_err()
        );
    }

    fn vec24(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(data);
        out
    }

    fn x509_leaf(cert: &[u8]) -> Vec<u8> {
        let mut leaf = vec![0, 0];
        leaf.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        leaf.extend_from_slice(&[0, 0]);
        leaf.extend(vec24(cert));
        leaf.extend_from_slice(&[0, 0]);
        leaf
    }

    fn precert_leaf(tbs: &[u8]) -> Vec<u8> {
        let mut leaf = vec![0, 0];
        leaf.extend_from_slice(&7u64.to_be_bytes());
        leaf.extend_from_slice(&[0, 1]);
        leaf.extend_from_slice(&[0xAB; 32]);
        leaf.extend(vec24(tbs));
        leaf.extend_from_slice(&[0, 3, 1, 2, 3]);
        leaf
    }

    #[test]
    fn decodes_x509_and_precert_leaves() {
        let chain = [vec24(b"ca1"), vec24(b"root")].concat();
        let extra = vec24(&chain);
        let leaf = x509_leaf(b"cert");
        let entry = decode_leaf(&leaf, &extra).unwrap();
        assert_eq!(entry.entry_type(), EntryType::X509);
        assert_eq!(entry.timestamped.timestamp_ms, 1_700_000_000_123);
        assert_eq!(
            entry.timestamped.signed_entry,
            SignedEntry::X509 {
                certificate: b"cert"
            }
        );
        assert_eq!(entry.chain, Chain::Certificates(vec![b"ca1", b"root"]));
        assert_eq!(entry.pre_certificate, None);

        let leaf = precert_leaf(b"tbs");
        let extra = [vec24(b"precert"), vec24(&vec24(b"ca1"))].concat();
        let entry = decode_leaf(&leaf, &extra).unwrap();
        assert_eq!(entry.entry_type(), EntryType::Precert);
        assert_eq!(entry.pre_certificate, Some(&b"precert"[..]));
        assert_eq!(entry.timestamped.extensions, &[1, 2, 3]);
        let SignedEntry::Precert {
            issuer_key_hash,
            tbs_certificate,
        } = entry.timestamped.signed_entry
        else {
            panic!("not a precert")
        };
        assert_eq!(issuer_key_hash, &[0xAB; 32]);
        assert_eq!(tbs_certificate, b"tbs");
        assert_eq!(entry.chain, Chain::Certificates(vec![b"ca1"]));
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        let leaf = precert_leaf(b"tbs-bytes");
        let extra = [vec24(b"precert"), vec24(&vec24(b"ca1"))].concat();
        for cut in 0..leaf.len() {
            assert!(
                decode_leaf(&leaf[..cut], &extra).is_err(),
                "leaf cut at {cut}"
            );
        }
        for cut in 0..extra.len() {
            assert!(
                decode_leaf(&leaf, &extra[..cut]).is_err(),
                "extra cut at {cut}"
            );
        }
        let mut long = leaf.clone();
        long.push(0);
        assert_eq!(
            decode_leaf(&long, &extra),
            Err(DecodeError::TrailingData { what: "leaf_input" })
        );
        let mut bad = leaf.clone();
        bad[0] = 1;
        assert_eq!(decode_leaf(&bad, &extra), Err(DecodeError::Version(1)));
        bad = leaf.clone();
        bad[1] = 1;
        assert_eq!(decode_leaf(&bad, &extra), Err(DecodeError::LeafType(1)));
        bad = leaf.clone();
        bad[11] = 2;
        assert_eq!(decode_leaf(&bad, &extra), Err(DecodeError::EntryType(2)));
        // A length far past the data, and a zero-length certificate.
        let huge = [&[0u8, 0][..], &[0; 8], &[0, 0], &[0xFF, 0xFF, 0xFF]].concat();
        assert!(matches!(
            decode_leaf(&huge, &vec24(b"")),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            decode_leaf(&x509_leaf(b""), &vec24(b"")),
            Err(DecodeError::Empty {
                what: "certificate"
            })
        );
    }

    #[test]
    fn chain_is_bounded() {
        let chain: Vec<u8> = (0..40).flat_map(|_| vec24(b"ca")).collect();
        let leaf = x509_leaf(b"cert");
        let extra = vec24(&chain);
        let entry = decode_leaf(&leaf, &extra).unwrap();
        let Chain::Certificates(certs) = entry.chain else {
            panic!()
        };
        assert_eq!(certs.len(), MAX_CHAIN);
    }

    #[test]
    fn get_entries_json() {
        use base64::Engine;
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let leaf = b64(&x509_leaf(b"cert"));
        let extra = b64(&vec24(b""));
        let one = format!(r#"{{"leaf_input":"{leaf}","extra_data":"{extra}"}}"#);
        let body = format!(r#"{{"entries":[{one},{one},{one}]}}"#);
        let entries = parse_get_entries(body.as_bytes(), 10).unwrap();
        assert_eq!(entries.len(), 3);
        let bytes = entries[2].decode_base64().unwrap();
        assert_eq!(bytes.decode().unwrap().entry_type(), EntryType::X509);
        assert_eq!(
            parse_get_entries(body.as_bytes(), 2).unwrap_err(),
            DecodeError::TooMany {
                what: "entries",
                limit: 2
            }
        );
        assert_eq!(
            parse_get_entries(br#"{"entries":[]}"#, 2).unwrap_err(),
            DecodeError::Empty { what: "entries" }
        );
        let many = format!(
            r#"{{"entries":[{}]}}"#,
            vec![one.as_str(); MAX_BATCH + 1].join(",")
        );
        assert!(matches!(
            parse_get_entries(many.as_bytes(), usize::MAX),
            Err(DecodeError::Json { .. })
        ));
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"entries":{}}"#,
            br#"{"entries":[{"leaf_input":1}]}"#,
        ] {
            assert!(parse_get_entries(bad, 10).is_err());
        }
        let not_b64 = r#"{"entries":[{"leaf_input":"!!","extra_data":""}]}"#;
        let entries = parse_get_entries(not_b64.as_bytes(), 10).unwrap();
        assert_eq!(
            entries[0].decode_base64(),
            Err(DecodeError::Base64 {
                field: "leaf_input"
            })
        );
    }

    #[test]
    fn sth_json() {
        let sth = parse_sth(br#"{"tree_size":17,"timestamp":1768478420740,"sha256_root_hash":"x","tree_head_signature":"y"}"#).unwrap();
        assert_eq!(
            sth,
            Sth {
                tree_size: 17,
                timestamp_ms: 1_768_478_420_740
            }
        );
        assert!(parse_sth(br#"{"tree_size":-1,"timestamp":0}"#).is_err());
        // Issue 18 item 8: a tree size of 2^63 or more is not a tree certwatch takes.
        assert!(parse_sth(br#"{"tree_size":9223372036854775808,"timestamp":0}"#).is_err());
        assert!(parse_sth(br#"{"tree_size":9223372036854775807,"timestamp":0}"#).is_ok());
        assert!(parse_sth(b"<html>").is_err());
    }
}
