//! The alert model: what a matched certificate becomes. Pure, no I/O; used on
//! every thread that makes, stores, renders or delivers alerts.
//!
//! Owns the identity rules: the issuance key (one per issuance, shared by a
//! precertificate and its final certificate and by every copy of them in other
//! logs), the verdict of a certificate against those already seen for its key
//! (copy, collision), the delivery ids receivers see, and the inventory rule (is
//! this certificate one of ours), used both when an alert is made and when a
//! suspicious alert is reconciled later.

use crate::cert::{self, Certificate, EntryType};
use crate::hex;
use sha2::{Digest, Sha256};

/// How an alert is classified (README, "Classification").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// In the inventory.
    Info,
    /// Not in the inventory after the grace period.
    Suspicious,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Suspicious => "suspicious",
        }
    }
}

/// How a certificate was found: on the certstream feed, by backfill reading a log
/// entry the feed did not deliver, or by tailing a log (a certwatch extension of
/// both webhook bodies, `detected_via`, and the `alerts.detected_via` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectedVia {
    #[default]
    Feed,
    Backfill,
    Log,
}

impl DetectedVia {
    /// As stored and sent: `feed`, `backfill` or `log`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedVia::Feed => "feed",
            DetectedVia::Backfill => "backfill",
            DetectedVia::Log => "log",
        }
    }
}

/// A matched certificate on its way to becoming an alert.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    pub cert: Certificate,
    /// Watch entries matched, sorted.
    pub matched_entries: Vec<String>,
    /// The certificate's names that matched, in feed order.
    pub matched_sans: Vec<String>,
    /// Hex SHA-256 of the issuance identity (README, "Classification").
    pub issuance_key: String,
    /// Empty for the first certificate of an issuance; the fingerprint of a second,
    /// different certificate claiming the same issuance.
    pub collision_fingerprint: String,
    /// Unix seconds when certwatch received it.
    pub received_at: i64,
    /// The same in milliseconds (`matched_at_ms` of the ctwatch payload).
    pub received_at_ms: i64,
    /// What the inventory answer came from.
    pub inventory: InventoryCheck,
    /// How the certificate was found (older pending rows: `feed`).
    #[serde(default)]
    pub detected_via: DetectedVia,
}

/// Where the inventory answer for an alert came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InventoryCheck {
    /// The database, at the time of classification.
    #[default]
    Database,
    /// The database was unreachable: the last inventory snapshot seen.
    Cached,
    /// The database was unreachable and no snapshot was ever loaded: the
    /// certificate could not be checked (and is `suspicious`).
    NotChecked,
}

impl InventoryCheck {
    /// The body's `inventory` field; `None` for a database answer (the field is
    /// left out, so ordinary bodies stay as they were).
    pub fn body_field(self) -> Option<&'static str> {
        match self {
            InventoryCheck::Database => None,
            InventoryCheck::Cached => Some("cached"),
            InventoryCheck::NotChecked => Some("not_checked"),
        }
    }
}

impl Sighting {
    /// Stable id of this alert for receivers (`X-CT-Delivery`): the same on every
    /// retry, redelivery, restart and replica.
    pub fn delivery_id(&self) -> String {
        let digest = Sha256::digest(
            format!("{}/{}", self.issuance_key, self.collision_fingerprint).as_bytes(),
        );
        uuid_shaped(&digest)
    }
}

/// The issuance key: normalised serial, validity and sorted lower-case names.
/// A precertificate and its final certificate share it, also when a
/// precertificate signing certificate (PSC) signed the precertificate and the
/// lite stream does not say which CA is above it; so do the full and the lite
/// stream. The issuer is left out of the key and compared by [`verdict`]: a
/// certificate from another CA with the same serial, validity and names meets
/// the first under this key and alerts as a collision. A certificate with more
/// than `cert::MAX_NAMES` names is keyed by the digest of its whole name
/// set; one with an unusable identity field also by the digest of its leaf
/// (`Certificate::unusable_identity`), so it never passes for another's copy.
pub fn issuance_key(cert: &Certificate) -> String {
    identity_hash("certwatch-issuance-v2", None, cert)
}

/// The issuance key of certwatch before 0.1 (issuer key id, else issuer DN, in
/// the hash): what rows written by an older version carry. Checked once per new
/// alert so that an upgrade does not alert again for what was just alerted.
pub fn legacy_issuance_key(cert: &Certificate) -> String {
    let issuer = cert
        .issuer_key_id
        .as_deref()
        .or(cert.issuer_dn.as_deref())
        .unwrap_or("");
    identity_hash("certwatch-issuance-v1", Some(issuer), cert)
}

fn identity_hash(version: &str, issuer: Option<&str>, cert: &Certificate) -> String {
    let mut hasher = Sha256::new();
    let mut parts = vec![version];
    parts.extend(issuer);
    let validity = [
        cert.not_before.map_or(String::new(), |t| t.to_string()),
        cert.not_after.map_or(String::new(), |t| t.to_string()),
    ];
    parts.push(cert.serial.as_deref().unwrap_or(""));
    parts.extend(validity.iter().map(String::as_str));
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    // A certificate whose names were capped is keyed by its whole name set.
    match &cert.names_digest {
        Some(digest) => hasher.update(format!("names:{digest}\n").as_bytes()),
        None => {
            for name in &cert.names {
                hasher.update(name.as_bytes());
                hasher.update([b'\n']);
            }
        }
    }
    // One with an unusable identity field only shares its key with its own leaf.
    if let Some(leaf) = &cert.unusable_identity {
        hasher.update(format!("\0unusable:{leaf}").as_bytes());
    }
    hex::encode(&hasher.finalize())
}

/// What deduplication remembers of a certificate seen for an issuance key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenCert {
    pub entry_type: Option<EntryType>,
    /// SHA-1 fingerprint, `None` for a tiled precertificate.
    pub fingerprint: Option<String>,
    /// The issuing CA's key id (past a PSC when the chain shows one).
    pub issuer_key_id: Option<String>,
    pub issuer_dn: Option<String>,
    pub issuer_o: Option<String>,
    /// The leaf's own subject key identifier.
    pub subject_key_id: Option<String>,
}

impl SeenCert {
    pub fn of(cert: &Certificate) -> SeenCert {
        SeenCert {
            entry_type: Some(cert.entry_type),
            fingerprint: cert.fingerprint_sha1.clone(),
            issuer_key_id: cert.issuer_key_id.clone(),
            issuer_dn: cert.issuer_dn.clone(),
            issuer_o: cert.issuer_o.clone(),
            subject_key_id: cert.subject_key_id.clone(),
        }
    }
}

/// The certificates seen for one issuance key.
pub type SeenCerts = Vec<SeenCert>;

/// Whether two certificates of one issuance key come from the same CA: the same
/// issuer key id (else the same issuer DN; nothing to compare counts as the
/// same), or a precertificate/final pair across a PSC as the lite stream shows
/// it: the precertificate names the PSC, the final certificate the CA above it,
/// and both carry the same leaf subject key identifier and issuer organisation.
pub fn same_issuer(a: &SeenCert, b: &SeenCert) -> bool {
    let direct = match (&a.issuer_key_id, &b.issuer_key_id) {
        (Some(x), Some(y)) => x == y,
        _ => match (&a.issuer_dn, &b.issuer_dn) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        },
    };
    direct || psc_pair(a, b)
}

fn psc_pair(a: &SeenCert, b: &SeenCert) -> bool {
    let types = matches!(
        (a.entry_type, b.entry_type),
        (Some(EntryType::Precert), Some(EntryType::X509))
            | (Some(EntryType::X509), Some(EntryType::Precert))
    );
    let both_equal = |x: &Option<String>, y: &Option<String>| x.is_some() && x == y;
    types
        && both_equal(&a.subject_key_id, &b.subject_key_id)
        && both_equal(&a.issuer_o, &b.issuer_o)
}

/// What a certificate is relative to what was already seen for its issuance key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First certificate of this issuance.
    New,
    /// The same certificate again (another log), or the other half of a
    /// precertificate/final pair: no new alert.
    Copy,
    /// Another certificate of the same entry type with another fingerprint, or
    /// one from another CA: alerts.
    Collision,
}

/// Decides the verdict for `cand` given what was seen for its key. Only
/// certificates of the same issuer ([`same_issuer`]) can be copies; none of them
/// makes a collision. Among them, a missing fingerprint (tiled precertificate)
/// cannot tell certificates apart, so it counts as a copy of any certificate of
/// its type.
pub fn verdict(seen: &[SeenCert], cand: &SeenCert) -> Verdict {
    if seen.is_empty() {
        return Verdict::New;
    }
    let mut related = seen.iter().filter(|s| same_issuer(s, cand)).peekable();
    if related.peek().is_none() {
        return Verdict::Collision;
    }
    let mut any_same_type = false;
    for s in related.filter(|s| s.entry_type == cand.entry_type) {
        any_same_type = true;
        match (s.fingerprint.as_deref(), cand.fingerprint.as_deref()) {
            (Some(a), Some(b)) if a != b => {}
            _ => return Verdict::Copy,
        }
    }
    if any_same_type {
        Verdict::Collision
    } else {
        Verdict::Copy
    }
}

/// What sets a colliding certificate's row apart (`collision_fingerprint`): its
/// SHA-1 fingerprint, else its SHA-256, else its issuer.
pub fn collision_id(cert: &Certificate) -> String {
    cert.fingerprint_sha1
        .clone()
        .or_else(|| cert.sha256.clone())
        .unwrap_or_else(|| {
            let issuer = cert.issuer_key_id.as_deref().or(cert.issuer_dn.as_deref());
            format!("issuer:{}", issuer.unwrap_or("?"))
        })
}

/// What a delivery announces (`X-CT-Event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A certificate matched the watch list.
    Match,
    /// A suspicious certificate has since appeared in the inventory.
    Resolved,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Match => "match",
            Event::Resolved => "resolved",
        }
    }

    /// Reads the name stored in `public.alerts.event`.
    pub fn parse(name: &str) -> Option<Event> {
        match name {
            "match" => Some(Event::Match),
            "resolved" => Some(Event::Resolved),
            _ => None,
        }
    }
}

/// The id receivers see (`X-CT-Delivery`, `webhook-id`): the alert's own id for
/// its match, a distinct stable id for its follow-up.
pub fn event_delivery_id(delivery_id: &str, event: Event) -> String {
    match event {
        Event::Match => delivery_id.to_string(),
        Event::Resolved => uuid_shaped(&Sha256::digest(
            format!("{delivery_id}/resolved").as_bytes(),
        )),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from the first 16 bytes of a digest.
pub fn uuid_shaped(digest: &[u8]) -> String {
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `(not_after - not_before)` in days, one decimal, as the predecessor sent it.
pub fn lifetime_days(not_before: Option<i64>, not_after: Option<i64>) -> Option<f64> {
    let (nb, na) = (not_before?, not_after?);
    Some(((na - nb) as f64 / 86_400.0 * 10.0).round() / 10.0)
}

/// When the certificate was seen: the feed server's time, else ours.
pub fn seen_at(s: &Sighting) -> i64 {
    s.cert
        .seen
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(s.received_at, |t| t.floor() as i64)
}

/// One row of the inventory (`public.certs`) as the inventory rule reads it,
/// normalised by [`InventoryRow::new`] whatever spelling upstream wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryRow {
    /// Lower-case hex, no colons.
    pub fingerprint_sha1: String,
    /// As `cert::normalize_serial`; `None` when the row has none.
    pub serial: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// [`names_key`] of the row's names.
    pub names_key: u64,
}

impl InventoryRow {
    pub fn new(
        fingerprint_sha1: &str,
        serial: Option<&str>,
        not_before: i64,
        not_after: i64,
        sans: &[String],
    ) -> InventoryRow {
        let mut names: Vec<String> = sans.iter().map(|n| cert::normalize_name(n)).collect();
        names.sort();
        names.dedup();
        InventoryRow {
            fingerprint_sha1: fingerprint_sha1
                .chars()
                .filter(char::is_ascii_hexdigit)
                .collect::<String>()
                .to_ascii_lowercase(),
            serial: serial.map(cert::normalize_serial).filter(|s| !s.is_empty()),
            not_before,
            not_after,
            names_key: names_key(names.iter().map(String::as_str)),
        }
    }
}

/// A name set as 64 bits: the first 8 bytes of SHA-256 over the names (already
/// normalised, sorted and unique), so an inventory row's names can be compared
/// without keeping them.
pub fn names_key<'a>(names: impl Iterator<Item = &'a str>) -> u64 {
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([b'\n']);
    }
    u64::from_be_bytes(hasher.finalize()[..8].try_into().expect("8 bytes"))
}

/// What the inventory rule needs of an alerted certificate: from a fresh
/// `Certificate` when an alert is made, from the alert's row when a suspicious
/// alert is reconciled later.
#[derive(Clone, Debug)]
pub struct Identity<'a> {
    pub entry_type: EntryType,
    /// Lower-case hex, no colons.
    pub fingerprint_sha1: Option<&'a str>,
    /// Normalised (`cert::normalize_serial`).
    pub serial: Option<&'a str>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Lower-case, trailing dot removed, sorted, unique.
    pub names: &'a [String],
    pub subject_cn: Option<&'a str>,
    /// A second certificate claiming a known issuance.
    pub collision: bool,
}

impl<'a> Identity<'a> {
    pub fn of(sighting: &'a Sighting) -> Identity<'a> {
        let c = &sighting.cert;
        Identity {
            entry_type: c.entry_type,
            fingerprint_sha1: c.fingerprint_sha1.as_deref(),
            serial: c.serial.as_deref(),
            not_before: c.not_before,
            not_after: c.not_after,
            names: &c.names,
            subject_cn: c.subject_cn.as_deref(),
            collision: !sighting.collision_fingerprint.is_empty(),
        }
    }

    /// The rows worth fetching: those with this fingerprint or this serial.
    pub fn lookup_keys(&self) -> (Option<&'a str>, Option<&'a str>) {
        match self.entry_type {
            EntryType::X509 => (self.fingerprint_sha1, None),
            EntryType::Precert if self.collision => (None, None),
            EntryType::Precert => (None, self.serial),
        }
    }
}

/// The inventory rule, the one place that decides whether a certificate is one
/// of ours. A final certificate is inventoried by its SHA-1 fingerprint. A
/// precertificate (whose fingerprint no inventory can hold) by serial, validity
/// and name set, where the inventory's names may lack the subject CN that the
/// feed adds; a second precertificate claiming a known issuance never is.
pub fn in_inventory(id: &Identity<'_>, rows: &[InventoryRow]) -> bool {
    match id.entry_type {
        EntryType::X509 => id
            .fingerprint_sha1
            .is_some_and(|fp| rows.iter().any(|r| r.fingerprint_sha1 == fp)),
        EntryType::Precert if id.collision => false,
        EntryType::Precert => match (id.serial, id.not_before, id.not_after) {
            (Some(serial), Some(nb), Some(na)) => rows.iter().any(|r| {
                r.serial.as_deref() == Some(serial)
                    && r.not_before == nb
                    && r.not_after == na
                    && same_names(r, id)
            }),
            _ => false,
        },
    }
}

/// Whether an inventory row's names are the certificate's name set, or that set
/// without the subject CN (which the feed's `all_domains` may add).
fn same_names(row: &InventoryRow, id: &Identity<'_>) -> bool {
    if row.names_key == names_key(id.names.iter().map(String::as_str)) {
        return true;
    }
    let Some(cn) = id.subject_cn.map(cert::normalize_name) else {
        return false;
    };
    id.names.contains(&cn)
        && row.names_key == names_key(id.names.iter().filter(|n| **n != cn).map(String::as_str))
}

/// The inventory as last read, kept in memory so that certificates are still
/// classified against it while the database is unreachable. Compact: per row a
/// 20-byte fingerprint and 32 bytes of serial key, validity and names key, so a
/// 100,000-certificate inventory takes about 5 MiB.
#[derive(Debug, Default)]
pub struct InventorySnapshot {
    /// SHA-1 fingerprints, sorted.
    fingerprints: Vec<[u8; 20]>,
    /// (serial key, not_before, not_after, names key), sorted.
    serials: Vec<(u64, i64, i64, u64)>,
}

impl InventorySnapshot {
    /// Adds one `public.certs` row (a fingerprint that is not 40 hex digits can
    /// match no certificate and is only kept by serial).
    pub fn add(
        &mut self,
        fingerprint_sha1: &str,
        serial: Option<&str>,
        not_before: i64,
        not_after: i64,
        sans: &[String],
    ) {
        let row = InventoryRow::new(fingerprint_sha1, serial, not_before, not_after, sans);
        if let Some(fp) = fingerprint_bytes(&row.fingerprint_sha1) {
            self.fingerprints.push(fp);
        }
        if let Some(serial) = &row.serial {
            self.serials
                .push((serial_key(serial), not_before, not_after, row.names_key));
        }
    }

    /// Sorts for lookups; call once after the last `add`.
    pub fn finish(mut self) -> InventorySnapshot {
        self.fingerprints.sort_unstable();
        self.fingerprints.dedup();
        self.serials.sort_unstable();
        self.serials.dedup();
        self.fingerprints.shrink_to_fit();
        self.serials.shrink_to_fit();
        self
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.fingerprints.len().max(self.serials.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `in_inventory` needs for `id`, as the database would return them.
    pub fn candidates(&self, id: &Identity<'_>) -> Vec<InventoryRow> {
        let (fingerprint, serial) = id.lookup_keys();
        let mut rows = Vec::new();
        if let Some(fp) = fingerprint.and_then(fingerprint_bytes)
            && self.fingerprints.binary_search(&fp).is_ok()
        {
            rows.push(InventoryRow {
                fingerprint_sha1: hex::encode(&fp),
                serial: None,
                not_before: 0,
                not_after: 0,
                names_key: 0,
            });
        }
        if let Some(serial) = serial {
            let key = serial_key(serial);
            let start = self.serials.partition_point(|e| e.0 < key);
            rows.extend(self.serials[start..].iter().take_while(|e| e.0 == key).map(
                |&(_, not_before, not_after, names_key)| InventoryRow {
                    fingerprint_sha1: String::new(),
                    serial: Some(serial.to_string()),
                    not_before,
                    not_after,
                    names_key,
                },
            ));
        }
        rows
    }
}

fn fingerprint_bytes(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn serial_key(serial: &str) -> u64 {
    let digest = Sha256::digest(serial.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
/// For tests: a certificate from CA `ca` (key id, DN and organisation derived from it).
pub fn test_seen(t: EntryType, f: Option<&str>, ca: &str) -> SeenCert {
    SeenCert {
        entry_type: Some(t),
        fingerprint: f.map(str::to_string),
        issuer_key_id: Some(format!("{ca}-key")),
        issuer_dn: Some(format!("/CN={ca}")),
        issuer_o: Some(format!("{ca} org")),
        subject_key_id: Some("leaf-key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        use EntryType::{Precert, X509};
        let c = |t, f| test_seen(t, f, "ca");
        assert_eq!(verdict(&[], &c(X509, Some("a"))), Verdict::New);
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(X509, Some("a"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(X509, Some("a"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(Precert, Some("p"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(X509, Some("a"))], &c(X509, Some("b"))),
            Verdict::Collision
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(Precert, Some("q"))),
            Verdict::Collision
        );
        assert_eq!(
            verdict(&[c(Precert, None)], &c(Precert, Some("q"))),
            Verdict::Copy
        );
        assert_eq!(
            verdict(&[c(Precert, Some("p"))], &c(Precert, None)),
            Verdict::Copy
        );
        assert_eq!(
            verdict(
                &[c(X509, Some("a")), c(X509, Some("b"))],
                &c(X509, Some("b"))
            ),
            Verdict::Copy
        );
    }

    #[test]
    fn another_ca_is_a_collision_and_a_psc_pair_is_not() {
        use EntryType::{Precert, X509};
        let ours = test_seen(X509, Some("a"), "ca");
        // Another CA reusing serial, validity and names: its own alert, whatever
        // its type and even without a fingerprint.
        for other in [
            test_seen(X509, Some("b"), "other"),
            test_seen(Precert, Some("p"), "other"),
            test_seen(Precert, None, "other"),
        ] {
            assert_eq!(
                verdict(std::slice::from_ref(&ours), &other),
                Verdict::Collision,
                "{other:?}"
            );
        }
        // The lite stream's precertificate through a PSC names the PSC: another
        // key id and DN, same organisation and leaf key: the other half.
        let mut psc_precert = test_seen(Precert, Some("p"), "ca");
        psc_precert.issuer_key_id = Some("psc-key".into());
        psc_precert.issuer_dn = Some("/CN=ca Precertificate Signing".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &psc_precert),
            Verdict::Copy
        );
        assert_eq!(
            verdict(std::slice::from_ref(&psc_precert), &ours),
            Verdict::Copy
        );
        // ... but not with another leaf key or another organisation, nor two of
        // one type.
        let mut other_leaf = psc_precert.clone();
        other_leaf.subject_key_id = Some("their-key".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_leaf),
            Verdict::Collision
        );
        let mut other_org = psc_precert.clone();
        other_org.issuer_o = Some("elsewhere".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_org),
            Verdict::Collision
        );
        let mut no_leaf_key = psc_precert.clone();
        no_leaf_key.subject_key_id = None;
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &no_leaf_key),
            Verdict::Collision
        );
        let mut other_final = ours.clone();
        other_final.issuer_key_id = Some("psc-key".into());
        other_final.issuer_dn = Some("/CN=ca Precertificate Signing".into());
        assert_eq!(
            verdict(std::slice::from_ref(&ours), &other_final),
            Verdict::Collision
        );
        // A final certificate from another CA after the PSC pair: still alerts.
        assert_eq!(
            verdict(&[psc_precert, ours], &test_seen(X509, Some("x"), "other")),
            Verdict::Collision
        );
    }

    /// The inventory rule, table-driven: what makes a row ours.
    #[test]
    fn the_inventory_rule() {
        let names = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cert_names = names(&["a.example", "b.example", "cn.example"]);
        let precert = |cn: Option<&'static str>| Identity {
            entry_type: EntryType::Precert,
            fingerprint_sha1: Some("aa"),
            serial: Some("F"),
            not_before: Some(10),
            not_after: Some(20),
            names: &cert_names,
            subject_cn: cn,
            collision: false,
        };
        // Rows as upstream writes them: (fingerprint, serial, not_before, SANs).
        const FP: &str = "AB:CD:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11";
        let row = |sans: &[&str], serial: &'static str, nb: i64| (FP, serial, nb, names(sans));
        let cn = Some("cn.example");
        for (id, rows, ours, why) in [
            (
                precert(cn),
                vec![row(&["A.example", "b.example.", "cn.example"], "0f", 10)],
                true,
                "same names, serial spelled 0f",
            ),
            (
                precert(cn),
                vec![row(&["b.example", "a.example"], "F", 10)],
                true,
                "names without the CN",
            ),
            (
                precert(None),
                vec![row(&["b.example", "a.example"], "F", 10)],
                false,
                "no CN to leave out",
            ),
            (
                precert(cn),
                vec![row(&["a.example"], "F", 10)],
                false,
                "fewer names",
            ),
            (
                precert(cn),
                vec![row(&["a.example", "b.example", "c.example"], "F", 10)],
                false,
                "other names",
            ),
            (
                precert(cn),
                vec![row(&["a.example", "b.example", "cn.example"], "E", 10)],
                false,
                "other serial",
            ),
            (
                precert(cn),
                vec![row(&["a.example", "b.example", "cn.example"], "F", 11)],
                false,
                "other validity",
            ),
            (
                Identity {
                    collision: true,
                    ..precert(cn)
                },
                vec![row(&["a.example", "b.example", "cn.example"], "F", 10)],
                false,
                "a colliding precert",
            ),
            (
                Identity {
                    entry_type: EntryType::X509,
                    fingerprint_sha1: Some("abcd00112233445566778899aabbccddeeff0011"),
                    ..precert(cn)
                },
                vec![row(&[], "1", 0)],
                true,
                "final cert by fingerprint",
            ),
            (
                Identity {
                    entry_type: EntryType::X509,
                    fingerprint_sha1: Some("abcd00112233445566778899aabbccddeeff0012"),
                    ..precert(cn)
                },
                vec![row(&["a.example", "b.example", "cn.example"], "F", 10)],
                false,
                "final cert, other fingerprint",
            ),
            (
                Identity {
                    entry_type: EntryType::X509,
                    fingerprint_sha1: None,
                    ..precert(cn)
                },
                vec![row(&[], "1", 0)],
                false,
                "final cert without fingerprint",
            ),
        ] {
            let from_db: Vec<InventoryRow> = rows
                .iter()
                .map(|(fp, serial, nb, sans)| InventoryRow::new(fp, Some(serial), *nb, 20, sans))
                .collect();
            assert_eq!(in_inventory(&id, &from_db), ours, "{why}");
            // The snapshot used while the database is down answers the same.
            let mut snapshot = InventorySnapshot::default();
            for (fp, serial, nb, sans) in &rows {
                snapshot.add(fp, Some(serial), *nb, 20, sans);
            }
            let snapshot = snapshot.finish();
            assert_eq!(
                in_inventory(&id, &snapshot.candidates(&id)),
                ours,
                "snapshot: {why}"
            );
        }
    }

    #[test]
    fn delivery_id_is_stable_and_distinguishes_collisions() {
        let cert = crate::sources::feed::parse_certificate(
            r#"{"message_type":"certificate_update","data":{"leaf_cert":{"all_domains":["a.example"],"serial_number":"0F"}}}"#,
        )
        .unwrap();
        let mut s = Sighting {
            issuance_key: issuance_key(&cert),
            cert,
            matched_entries: vec![],
            matched_sans: vec![],
            collision_fingerprint: String::new(),
            received_at: 0,
            received_at_ms: 0,
            inventory: InventoryCheck::Database,
            detected_via: DetectedVia::Feed,
        };
        let first = s.delivery_id();
        assert_eq!(first, s.delivery_id());
        assert_eq!(first.len(), 36);
        s.collision_fingerprint = "ab".into();
        assert_ne!(first, s.delivery_id());
    }
}
