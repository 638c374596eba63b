//! The certificate value every source hands over (the certstream feed, backfill,
//! and next the tailer): `Certificate` normalised across feed dialects and log
//! entries, its entry type, the one rule for its name lists (`name_lists`), the
//! normalisation of names, serials and key ids, and `Lenient`: how a matched
//! certificate was read leniently. Pure; run on the threads of the sources.

use crate::hex;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;

/// `not_after` of a certificate without a well-defined expiry (99991231235959Z),
/// and the latest certificate time kept.
pub const NO_EXPIRATION: i64 = 253_402_300_799;

/// The earliest certificate time kept: 0000-01-01T00:00:00Z. X.509 times cannot
/// go outside `MIN_TIME..=NO_EXPIRATION`, and Postgres stores every time inside.
pub const MIN_TIME: i64 = -62_167_219_200;

/// The most names a certificate keeps in `all_domains` and `names` (and an
/// alert in `matched_sans` and `matched_entries`). Every name is still matched;
/// the names that matched are kept first.
pub const MAX_NAMES: usize = 10_000;

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
        hex::encode(&hasher.finalize())
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
pub(crate) fn normalize_hex(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
