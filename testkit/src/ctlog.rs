//! A fake CT log over real HTTP on 127.0.0.1 (`FakeCtLog`), serving the same
//! entries through RFC 6962 (`ct/v1/get-sth`, `ct/v1/get-entries`, batches capped,
//! `get-proof-by-hash`, `get-sth-consistency`) and static-ct-api (`checkpoint`,
//! `tile/data/...` with the partial tile at the right edge, hash tiles
//! `tile/<L>/...`, `issuer/<sha256>`), with switches for 429/503 + Retry-After,
//! 500s and hostile bodies, and per-path request counts.
//!
//! It is a log with a key: its tree heads are signed (ECDSA P-256, ring) over the
//! Merkle tree of the entries it published, one tree per API (a static-ct leaf
//! carries its `leaf_index` extension, an RFC 6962 leaf none), and the list it
//! writes names its real public key. It grows on demand (`append`, `publish`) and
//! misbehaves on demand: an entry swapped under an unchanged root, heads with a bad
//! signature, a head that shrinks, a second root for one size (`Misbehave`). The
//! Merkle tree, its proofs and the signed formats are written here from RFC 6962
//! (§2.1, §3.5, §4) and the C2SP texts, independently of `certwatch::ctlog`.
//!
//! Entries (`FakeEntry`) are encoded here from the RFC 6962 (§3.1, §3.4) and C2SP
//! static-ct-api texts, independently of `certwatch::ctlog`, and precertificates
//! get their RFC 6962 TBS by a small DER edit (`rfc6962_tbs`): the poison
//! extension removed and, when a precertificate signing certificate signed them,
//! issuer and authority key id taken from that certificate.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// DER of the CT poison extension's OID, 1.3.6.1.4.1.11129.2.4.3.
const POISON_OID: &[u8] = &[6, 10, 0x2B, 6, 1, 4, 1, 0xD6, 0x79, 2, 4, 3];
/// DER of the SCT list extension's OID, 1.3.6.1.4.1.11129.2.4.2.
const SCT_LIST_OID: &[u8] = &[6, 10, 0x2B, 6, 1, 4, 1, 0xD6, 0x79, 2, 4, 2];
/// DER of the precertificate-signing EKU, 1.3.6.1.4.1.11129.2.4.4.
const PSC_EKU_OID: &[u8] = &[6, 10, 0x2B, 6, 1, 4, 1, 0xD6, 0x79, 2, 4, 4];
/// DER of authorityKeyIdentifier's OID, 2.5.29.35.
const AKI_OID: &[u8] = &[6, 3, 0x55, 0x1D, 0x23];

// ---------------------------------------------------------------------------------------------
// DER, just enough to edit a TBSCertificate
// ---------------------------------------------------------------------------------------------

/// Splits the DER element at the start of `data`: (tag, whole element, content, rest).
pub fn der_element(data: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = data[0];
    let (len, header) = match data[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let count = usize::from(n & 0x7F);
            let len = data[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + count)
        }
    };
    (
        tag,
        &data[..header + len],
        &data[header..header + len],
        &data[header + len..],
    )
}

/// The elements of a constructed element's content, each whole.
pub fn der_children(mut content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (_, whole, _, rest) = der_element(content);
        out.push(whole);
        content = rest;
    }
    out
}

/// An element of `tag` around `content`, with a DER length.
pub fn der_encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The TBSCertificate element of a certificate.
pub fn tbs_of(cert: &[u8]) -> &[u8] {
    let (_, _, content, _) = der_element(cert);
    der_children(content)[0]
}

/// (index of issuer, index of spki) among a TBS's children (version is optional).
fn tbs_positions(children: &[&[u8]]) -> (usize, usize) {
    let offset = usize::from(children[0][0] == 0xA0);
    (2 + offset, 5 + offset)
}

/// The issuer Name element of a certificate.
pub fn issuer_of(cert: &[u8]) -> Vec<u8> {
    let (_, _, content, _) = der_element(tbs_of(cert));
    let children = der_children(content);
    children[tbs_positions(&children).0].to_vec()
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (RFC 6962 `issuer_key_hash`).
pub fn spki_hash(cert: &[u8]) -> [u8; 32] {
    let (_, _, content, _) = der_element(tbs_of(cert));
    let children = der_children(content);
    Sha256::digest(children[tbs_positions(&children).1]).into()
}

/// The extension (whole element) with this OID, from a certificate.
fn extension_of(cert: &[u8], oid: &[u8]) -> Option<Vec<u8>> {
    let (_, _, content, _) = der_element(tbs_of(cert));
    let ext_block = der_children(content).into_iter().find(|c| c[0] == 0xA3)?;
    let (_, _, seq, _) = der_element(ext_block);
    let (_, _, list, _) = der_element(seq);
    der_children(list)
        .into_iter()
        .find(|e| der_element(e).2.starts_with(oid))
        .map(<[u8]>::to_vec)
}

/// RFC 6962 §3.1: the TBS a log puts in a precert entry's `leaf_input`: the
/// precertificate's TBS without the poison extension; with `psc` (the
/// precertificate signing certificate), issuer and AKI are the PSC's issuer and
/// AKI, i.e. the final certificate's.
pub fn rfc6962_tbs(precert: &[u8], psc: Option<&[u8]>) -> Vec<u8> {
    edit_tbs(precert, POISON_OID, psc)
}

/// A final certificate's TBS without its SCT list: what RFC 6962 logged for its
/// precertificate.
pub fn tbs_without_scts(cert: &[u8]) -> Vec<u8> {
    edit_tbs(cert, SCT_LIST_OID, None)
}

/// `cert`'s TBS without the extension `drop`, issuer and AKI from `psc` if given.
fn edit_tbs(cert: &[u8], drop: &[u8], psc: Option<&[u8]>) -> Vec<u8> {
    let (_, _, content, _) = der_element(tbs_of(cert));
    let children = der_children(content);
    let (issuer_at, _) = tbs_positions(&children);
    let mut out = Vec::new();
    for (i, child) in children.iter().enumerate() {
        match (i, child[0], psc) {
            (i, _, Some(psc)) if i == issuer_at => out.extend(issuer_of(psc)),
            (_, 0xA3, _) => {
                let (_, _, seq, _) = der_element(child);
                let (_, _, list, _) = der_element(seq);
                let mut exts = Vec::new();
                for ext in der_children(list) {
                    let oid_first = der_element(ext).2;
                    if oid_first.starts_with(drop) {
                        continue;
                    }
                    match psc {
                        Some(psc) if oid_first.starts_with(AKI_OID) => {
                            exts.extend(extension_of(psc, AKI_OID).expect("the PSC has an AKI"))
                        }
                        _ => exts.extend_from_slice(ext),
                    }
                }
                out.extend(der_encode(0xA3, &der_encode(0x30, &exts)));
            }
            _ => out.extend_from_slice(child),
        }
    }
    der_encode(0x30, &out)
}

/// Whether a certificate carries the precertificate-signing EKU (a PSC).
pub fn is_psc(cert: &[u8]) -> bool {
    cert.windows(PSC_EKU_OID.len()).any(|w| w == PSC_EKU_OID)
}

// ---------------------------------------------------------------------------------------------
// Log entries, encoded from RFC 6962 and static-ct-api
// ---------------------------------------------------------------------------------------------

/// What was logged.
#[derive(Clone, Debug)]
pub enum FakeKind {
    X509 {
        der: Vec<u8>,
    },
    Precert {
        /// The submitted precertificate (poison, CA or PSC signature).
        pre_certificate: Vec<u8>,
        /// Its RFC 6962 TBS.
        tbs: Vec<u8>,
        issuer_key_hash: [u8; 32],
    },
}

/// One log entry: a certificate, the log's timestamp and the submitted chain
/// (issuer first).
#[derive(Clone, Debug)]
pub struct FakeEntry {
    pub timestamp_ms: u64,
    pub kind: FakeKind,
    pub chain: Vec<Vec<u8>>,
}

impl FakeEntry {
    pub fn x509(der: Vec<u8>, chain: Vec<Vec<u8>>, timestamp_ms: u64) -> FakeEntry {
        FakeEntry {
            timestamp_ms,
            kind: FakeKind::X509 { der },
            chain,
        }
    }

    /// A precertificate entry; when `chain[0]` is a PSC the TBS is rewritten to
    /// the CA above it, as RFC 6962 requires.
    pub fn precert(pre_certificate: Vec<u8>, chain: Vec<Vec<u8>>, timestamp_ms: u64) -> FakeEntry {
        let psc = chain.first().filter(|c| is_psc(c)).map(Vec::as_slice);
        let issuer = if psc.is_some() { &chain[1] } else { &chain[0] };
        FakeEntry {
            timestamp_ms,
            kind: FakeKind::Precert {
                tbs: rfc6962_tbs(&pre_certificate, psc),
                issuer_key_hash: spki_hash(issuer),
                pre_certificate,
            },
            chain,
        }
    }

    /// `TimestampedEntry` with these `CtExtensions`.
    fn timestamped_entry(&self, extensions: &[u8]) -> Vec<u8> {
        let mut out = self.timestamp_ms.to_be_bytes().to_vec();
        match &self.kind {
            FakeKind::X509 { der } => {
                out.extend_from_slice(&0u16.to_be_bytes());
                out.extend(u24_vec(der));
            }
            FakeKind::Precert {
                tbs,
                issuer_key_hash,
                ..
            } => {
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(issuer_key_hash);
                out.extend(u24_vec(tbs));
            }
        }
        out.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        out.extend_from_slice(extensions);
        out
    }

    /// `MerkleTreeLeaf`: version v1, timestamped_entry, no extensions.
    pub fn leaf_input(&self) -> Vec<u8> {
        let mut out = vec![0, 0];
        out.extend(self.timestamped_entry(&[]));
        out
    }

    /// `extra_data`: `certificate_chain`, or `PrecertChainEntry`.
    pub fn extra_data(&self) -> Vec<u8> {
        let chain: Vec<u8> = self.chain.iter().flat_map(|c| u24_vec(c)).collect();
        let mut out = Vec::new();
        if let FakeKind::Precert {
            pre_certificate, ..
        } = &self.kind
        {
            out.extend(u24_vec(pre_certificate));
        }
        out.extend(u24_vec(&chain));
        out
    }

    /// static-ct `TileLeaf` at log index `index` (with its `leaf_index` extension).
    pub fn tile_leaf(&self, index: u64) -> Vec<u8> {
        let mut out = self.timestamped_entry(&leaf_index_extension(index));
        if let FakeKind::Precert {
            pre_certificate, ..
        } = &self.kind
        {
            out.extend(u24_vec(pre_certificate));
        }
        out.extend_from_slice(&((self.chain.len() * 32) as u16).to_be_bytes());
        for issuer in &self.chain {
            out.extend_from_slice(&Sha256::digest(issuer));
        }
        out
    }

    /// The DER a feed server would fingerprint: the certificate, or the precertificate.
    pub fn fingerprinted_der(&self) -> &[u8] {
        match &self.kind {
            FakeKind::X509 { der } => der,
            FakeKind::Precert {
                pre_certificate, ..
            } => pre_certificate,
        }
    }
}

fn u24_vec(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(data);
    out
}

/// A minimal certificate message of entry `index` of the log at `url`, for a name
/// no test watches (`e<index>.unwatched.example`): a feed's word that the entry
/// exists, nothing to alert.
pub fn unwatched_frame(url: &str, index: u64) -> serde_json::Value {
    serde_json::json!({
        "message_type": "certificate_update",
        "data": {
            "update_type": "X509LogEntry",
            "cert_index": index,
            "source": {"name": "fake", "url": url},
            "leaf_cert": {"all_domains": [format!("e{index}.unwatched.example")]},
        },
    })
}

/// An RFC 6962 `get-entries` body holding `entries`, as a log serves them (the
/// fake log's, and the benchmarks' pages).
pub fn get_entries_body<'a>(entries: impl IntoIterator<Item = &'a FakeEntry>) -> Vec<u8> {
    let items: Vec<String> = entries
        .into_iter()
        .map(|e| {
            format!(
                r#"{{"leaf_input":"{}","extra_data":"{}"}}"#,
                B64.encode(e.leaf_input()),
                B64.encode(e.extra_data())
            )
        })
        .collect();
    format!(r#"{{"entries":[{}]}}"#, items.join(",")).into_bytes()
}

/// The bytes of a static-ct data tile holding `entries`, the first at log index
/// `first` (the fake log's tiles, and the benchmarks').
pub fn data_tile_body<'a>(entries: impl IntoIterator<Item = &'a FakeEntry>, first: u64) -> Vec<u8> {
    entries
        .into_iter()
        .zip(first..)
        .flat_map(|(e, i)| e.tile_leaf(i))
        .collect()
}

/// The bytes of the full data tiles of `entries` (the first at log index 0; the
/// `t`-th tile holds entries `256 t ..= 256 t + 255`; a partial rest is left out).
pub fn full_data_tiles(entries: &[FakeEntry]) -> Vec<Vec<u8>> {
    entries
        .chunks_exact(256)
        .zip((0u64..).step_by(256))
        .map(|(tile, first)| data_tile_body(tile, first))
        .collect()
}

/// The certificates of `tests/fixtures/certstream_go_full.jsonl` (full stream,
/// RFC 6962 lines only) as log entries, with the feed line each came from.
pub fn fixture_entries() -> Vec<(FakeEntry, String)> {
    let text = include_str!("../../tests/fixtures/certstream_go_full.jsonl");
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture json");
        let data = &v["data"];
        let Some(der) = data["leaf_cert"]["as_der"].as_str() else {
            continue;
        };
        if data["source"]["type"] == "tiled" {
            continue;
        }
        let der = B64.decode(der).expect("fixture base64");
        let chain: Vec<Vec<u8>> = data["chain"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| {
                        B64.decode(c["as_der"].as_str().expect("chain der"))
                            .unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ts = (data["source"]["timestamp"].as_f64().unwrap_or(0.0) * 1000.0).round() as u64;
        let entry = if data["update_type"] == "PrecertLogEntry" {
            FakeEntry::precert(der, chain, ts)
        } else {
            FakeEntry::x509(der, chain, ts)
        };
        out.push((entry, line.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------------------------

/// The log's origin line and path prefix.
pub const ORIGIN: &str = "fake-ct.test/log";

/// Ways the log can misbehave, each off by default.
#[derive(Clone, Debug, Default)]
pub struct Misbehave {
    /// Served in place of the entry at this index (get-entries and data tiles),
    /// the trees (and so the signed roots) unchanged.
    pub swapped: HashMap<u64, FakeEntry>,
    /// Every signature byte flipped: heads that do not verify.
    pub bad_signature: bool,
    /// Heads signed for the tree of this size (smaller than published: a shrink).
    pub head_size: Option<u64>,
    /// Heads signed with another root for the published size (a split view).
    pub split_view: bool,
}

/// The Merkle tree of a list of leaf hashes: level `k` holds the roots of the
/// complete aligned subtrees of `2^k` leaves, appended as they complete.
#[derive(Clone, Debug, Default)]
struct Tree {
    levels: Vec<Vec<[u8; 32]>>,
}

fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

impl Tree {
    fn push(&mut self, leaf: [u8; 32]) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let n = self.levels[level].len();
            if n % 2 == 1 {
                break;
            }
            hash = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            level += 1;
        }
    }

    /// RFC 6962 §2.1 `MTH(D[lo:hi])`.
    fn mth(&self, lo: u64, hi: u64) -> [u8; 32] {
        let n = hi - lo;
        if n == 0 {
            return Sha256::digest([]).into();
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(lo >> level) as usize];
        }
        let k = 1u64 << (n - 1).ilog2();
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }

    /// RFC 6962 §2.1.1 `PATH(m, D[lo:hi])`.
    fn path(&self, m: u64, lo: u64, hi: u64) -> Vec<[u8; 32]> {
        let n = hi - lo;
        if n <= 1 {
            return Vec::new();
        }
        let k = 1u64 << (n - 1).ilog2();
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// RFC 6962 §2.1.2 `SUBPROOF(m, D[lo:hi], b)`.
    fn subproof(&self, m: u64, lo: u64, hi: u64, complete: bool) -> Vec<[u8; 32]> {
        let n = hi - lo;
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![self.mth(lo, hi)]
            };
        }
        let k = 1u64 << (n - 1).ilog2();
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, complete);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}

/// The log's signing key.
struct Signer {
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    /// DER SubjectPublicKeyInfo: what the list names.
    spki: Vec<u8>,
}

impl Signer {
    fn new() -> Signer {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key just made");
        // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } BIT STRING point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(key.public_key().as_ref());
        Signer { key, rng, spki }
    }

    /// A `DigitallySigned` (SHA-256, ECDSA) over a `TreeHeadSignature` (RFC 6962 §3.5).
    fn sign_head(&self, timestamp_ms: u64, size: u64, root: &[u8; 32], corrupt: bool) -> Vec<u8> {
        let mut message = vec![0u8, 1];
        message.extend_from_slice(&timestamp_ms.to_be_bytes());
        message.extend_from_slice(&size.to_be_bytes());
        message.extend_from_slice(root);
        let sig = self.key.sign(&self.rng, &message).expect("signs");
        let mut sig = sig.as_ref().to_vec();
        if corrupt {
            for b in sig.iter_mut() {
                *b ^= 0x5a;
            }
        }
        let mut out = vec![4u8, 3];
        out.extend_from_slice(&(sig.len() as u16).to_be_bytes());
        out.extend(sig);
        out
    }

    fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki).into()
    }
}

struct State {
    entries: Vec<FakeEntry>,
    /// Entries published (checkpoint and STH size); the rest are not served yet.
    tree_size: u64,
    max_batch: u64,
    /// Answered, in order, before anything else: (status, Retry-After, body).
    script: VecDeque<(u16, Option<String>, Vec<u8>)>,
    hits: HashMap<String, usize>,
    user_agents: Vec<String>,
    signer: Arc<Signer>,
    /// The Merkle tree of the RFC 6962 leaves (`leaf_input`) of every entry.
    rfc_tree: Tree,
    /// The Merkle tree of the static-ct leaves (with their `leaf_index`).
    tiled_tree: Tree,
    /// RFC 6962 leaf hash -> index (`get-proof-by-hash`).
    by_hash: HashMap<[u8; 32], u64>,
    misbehave: Misbehave,
    /// The checkpoint origin: the submission prefix without scheme or last slash.
    origin: String,
    /// The fault switches (`FakeCtLog::refuse_all` and the others below it).
    faults: Faults,
}

impl Default for State {
    fn default() -> State {
        State {
            entries: Vec::new(),
            tree_size: 0,
            max_batch: 32,
            script: VecDeque::new(),
            hits: HashMap::new(),
            user_agents: Vec::new(),
            signer: Arc::new(Signer::new()),
            rfc_tree: Tree::default(),
            tiled_tree: Tree::default(),
            by_hash: HashMap::new(),
            misbehave: Misbehave::default(),
            origin: ORIGIN.to_string(),
            faults: Faults::default(),
        }
    }
}

impl State {
    /// Adds entries (not published until `tree_size` covers them).
    fn append(&mut self, entries: Vec<FakeEntry>) {
        for entry in entries {
            let index = self.entries.len() as u64;
            let rfc = leaf_hash(&entry.leaf_input());
            self.rfc_tree.push(rfc);
            self.by_hash.entry(rfc).or_insert(index);
            let mut tiled_leaf = vec![0u8, 0];
            tiled_leaf.extend(entry.timestamped_entry(&leaf_index_extension(index)));
            self.tiled_tree.push(leaf_hash(&tiled_leaf));
            self.entries.push(entry);
        }
    }

    /// The entry served at `index` (a swapped one when the log misbehaves so).
    fn served(&self, index: u64) -> &FakeEntry {
        self.misbehave
            .swapped
            .get(&index)
            .unwrap_or(&self.entries[index as usize])
    }

    /// The head the log signs now for `tree`: its size (or the shrunk one) and
    /// root (or another one, for a split view), a timestamp, the signature.
    fn head(&self, tree: &Tree) -> (u64, u64, [u8; 32], Vec<u8>) {
        let size = self
            .misbehave
            .head_size
            .map_or(self.tree_size, |n| n.min(self.tree_size));
        let mut root = tree.mth(0, size);
        if self.misbehave.split_view {
            root = node_hash(&root, &root);
        }
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let signature =
            self.signer
                .sign_head(timestamp_ms, size, &root, self.misbehave.bad_signature);
        (size, timestamp_ms, root, signature)
    }
}

/// A `leaf_index` extension (type 0, 40-bit big-endian) as the only extension.
fn leaf_index_extension(index: u64) -> Vec<u8> {
    let mut extensions = vec![0, 0, 5];
    extensions.extend_from_slice(&index.to_be_bytes()[3..]);
    extensions
}

/// A fake CT log on 127.0.0.1; `Drop` stops and joins its thread.
pub struct FakeCtLog {
    port: u16,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCtLog {
    /// Serves `entries` (all published), get-entries batches capped at 32.
    pub fn start(entries: Vec<FakeEntry>) -> FakeCtLog {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("FakeCtLog binds");
        let port = server.server_addr().to_ip().expect("ip address").port();
        let server = Arc::new(server);
        let mut initial = State {
            tree_size: entries.len() as u64,
            origin: format!("127.0.0.1:{port}/log"),
            ..State::default()
        };
        initial.append(entries);
        let state = Arc::new(Mutex::new(initial));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("fake-ctlog-{port}"))
                .spawn(move || serve(&server, &state, &stop))
                .expect("spawn")
        };
        FakeCtLog {
            port,
            server,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/log` (the RFC 6962 and the monitoring prefix).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/log", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_max_batch(&self, n: u64) {
        self.state().max_batch = n.max(1);
    }

    /// Publishes only the first `n` entries.
    pub fn set_tree_size(&self, n: u64) {
        let mut state = self.state();
        state.tree_size = n.min(state.entries.len() as u64);
    }

    /// Adds entries after the others, not published yet (`publish`).
    pub fn append(&self, entries: Vec<FakeEntry>) {
        self.state().append(entries);
    }

    /// Publishes every entry: the next heads sign the whole tree.
    pub fn publish(&self) {
        let mut state = self.state();
        state.tree_size = state.entries.len() as u64;
    }

    /// Entries published.
    pub fn tree_size(&self) -> u64 {
        self.state().tree_size
    }

    /// Changes how the log misbehaves.
    pub fn misbehave(&self, change: impl FnOnce(&mut Misbehave)) {
        change(&mut self.state().misbehave);
    }

    /// The log's public key (DER SubjectPublicKeyInfo), as its list entry names it.
    pub fn public_key(&self) -> Vec<u8> {
        self.state().signer.spki.clone()
    }

    /// The root of the RFC 6962 tree of the first `size` entries (`tiled`: the
    /// static-ct tree), as the log's heads sign it.
    pub fn root(&self, size: u64, tiled: bool) -> [u8; 32] {
        let state = self.state();
        let tree = if tiled {
            &state.tiled_tree
        } else {
            &state.rfc_tree
        };
        tree.mth(0, size)
    }

    /// The next `n` requests get `status` with this `Retry-After` (if any).
    pub fn throttle_next(&self, n: usize, status: u16, retry_after: Option<&str>) {
        let mut state = self.state();
        for _ in 0..n {
            state.script.push_back((
                status,
                retry_after.map(str::to_string),
                b"slow down".to_vec(),
            ));
        }
    }

    /// The next `n` requests get a 500.
    pub fn fail_next(&self, n: usize) {
        self.throttle_next(n, 500, None);
    }

    /// The next request gets a 200 with this body, whatever it asked for.
    pub fn respond_next(&self, body: Vec<u8>) {
        self.state().script.push_back((200, None, body));
    }

    /// Requests whose path (without the log prefix and query) starts with `prefix`.
    pub fn hits(&self, prefix: &str) -> usize {
        self.state()
            .hits
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// A v3 log list naming this log only (RFC 6962 `url`, or a tiled log's
    /// `monitoring_url` and `submission_url`), with a made-up key and its log id.
    pub fn log_list(&self, tiled: bool) -> String {
        log_list_of(&[self], tiled)
    }

    /// This log as an entry of a v3 list's `logs` (or `tiled_logs`): its real key.
    fn list_entry(&self, tiled: bool) -> serde_json::Value {
        let (key, log_id) = {
            let state = self.state();
            (state.signer.spki.clone(), state.signer.log_id())
        };
        let log_id = B64.encode(log_id);
        let key = B64.encode(&key);
        let url = format!("{}/", self.url());
        if tiled {
            serde_json::json!({"description": "FakeCtLog tiled", "log_id": log_id, "key": key,
                "monitoring_url": url, "submission_url": url, "mmd": 60})
        } else {
            serde_json::json!({"description": "FakeCtLog", "log_id": log_id, "key": key,
                "url": url, "mmd": 86400})
        }
    }

    /// Every User-Agent seen, in order.
    pub fn user_agents(&self) -> Vec<String> {
        self.state().user_agents.clone()
    }
}

impl Drop for FakeCtLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("FakeCtLog: server thread panicked");
        }
    }
}

/// A v3 log list naming `logs` (all RFC 6962, or all tiled), one operator.
pub fn log_list_of(logs: &[&FakeCtLog], tiled: bool) -> String {
    let entries: Vec<serde_json::Value> = logs.iter().map(|l| l.list_entry(tiled)).collect();
    let array = if tiled { "tiled_logs" } else { "logs" };
    serde_json::json!({"version": "1.0", "operators": [
        {"name": "Test", "email": ["ct@example.test"], array: entries}
    ]})
    .to_string()
}

/// A v3 log list naming logs of both APIs under several operators, as Chrome's
/// list does: each `(log, tiled, operator)` is listed under its operator (in order
/// of first appearance), in `logs` (RFC 6962) or `tiled_logs`, with its real key.
/// (Requests to one operator's logs are paced together by certwatch.)
pub fn log_list_mixed(logs: &[(&FakeCtLog, bool, &str)]) -> String {
    let mut operators: Vec<(&str, Vec<serde_json::Value>, Vec<serde_json::Value>)> = Vec::new();
    for (log, tiled, operator) in logs {
        let at = match operators.iter().position(|(name, _, _)| name == operator) {
            Some(at) => at,
            None => {
                operators.push((operator, Vec::new(), Vec::new()));
                operators.len() - 1
            }
        };
        let entry = log.list_entry(*tiled);
        if *tiled {
            operators[at].2.push(entry);
        } else {
            operators[at].1.push(entry);
        }
    }
    let operators: Vec<serde_json::Value> = operators
        .into_iter()
        .map(|(name, rfc, tiled)| {
            let email = format!("ct@{}.test", name.to_ascii_lowercase().replace(' ', "-"));
            serde_json::json!({"name": name, "email": [email], "logs": rfc, "tiled_logs": tiled})
        })
        .collect();
    serde_json::json!({"version": "1.0", "operators": operators}).to_string()
}

/// Writes [`log_list_of`] to `<temp dir>/certwatch-it-<pid>/<name>.json` (for
/// `CT_LOG_LIST`) and returns its path.
pub fn list_file(name: &str, logs: &[&FakeCtLog], tiled: bool) -> ListFile {
    ListFile::write(name, &log_list_of(logs, tiled))
}

/// A log list written to a file for `CT_LOG_LIST`; the file (and its folder, once
/// empty) is removed when this is dropped, so a test leaves nothing behind.
pub struct ListFile {
    path: std::path::PathBuf,
}

impl ListFile {
    /// Writes `list` to `<temp dir>/certwatch-it-<pid>/<name>.json`.
    pub fn write(name: &str, list: &str) -> ListFile {
        let dir = std::env::temp_dir().join(format!("certwatch-it-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, list).expect("list file");
        ListFile { path }
    }
}

impl std::ops::Deref for ListFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for ListFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for ListFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            // Only when empty: another list of this process may still be in use.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn serve(server: &tiny_http::Server, state: &Mutex<State>, stop: &AtomicBool) {
    loop {
        let request = match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) if stop.load(Ordering::SeqCst) => return,
            Ok(None) | Err(_) => continue,
        };
        let (status, retry_after, body) = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let url = request.url().to_string();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let path = path.strip_prefix("/log/").unwrap_or(path).to_string();
            *state.hits.entry(path.clone()).or_default() += 1;
            if let Some(ua) = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("User-Agent"))
            {
                state.user_agents.push(ua.value.as_str().to_string());
            }
            state.faults.hit_log.push((Instant::now(), path.clone()));
            match state.script.pop_front() {
                Some(scripted) => scripted,
                None => state.faults.answer(&path).unwrap_or_else(|| {
                    let (status, body) = route(&state, &path, query);
                    (status, None, body)
                }),
            }
        };
        let (delay, trickle) = {
            let state = state.lock().unwrap_or_else(|p| p.into_inner());
            (state.faults.response_delay, state.faults.trickle)
        };
        if !pause(delay, stop) {
            return;
        }
        if let Some(every) = trickle {
            trickle_out(request, status, retry_after.as_deref(), &body, every, stop);
            continue;
        }
        let mut response = tiny_http::Response::from_data(body).with_status_code(status);
        if let Some(retry_after) = retry_after {
            response = response.with_header(
                tiny_http::Header::from_bytes("Retry-After", retry_after).expect("header"),
            );
        }
        let _ = request.respond(response);
    }
}

fn route(state: &State, path: &str, query: &str) -> (u16, Vec<u8>) {
    let size = state.tree_size;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if path == "ct/v1/get-sth" {
        let (size, timestamp, root, signature) = state.head(&state.rfc_tree);
        let body = format!(
            r#"{{"tree_size":{size},"timestamp":{timestamp},"sha256_root_hash":"{}","tree_head_signature":"{}"}}"#,
            B64.encode(root),
            B64.encode(signature)
        );
        return (200, body.into_bytes());
    }
    if path == "ct/v1/get-proof-by-hash" {
        let hash = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("hash="))
            .map(|h| {
                h.replace("%2B", "+")
                    .replace("%2F", "/")
                    .replace("%3D", "=")
            })
            .and_then(|h| B64.decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok());
        let (Some(hash), Some(tree_size)) = (hash, param("tree_size")) else {
            return (400, b"hash and tree_size".to_vec());
        };
        let Some(&index) = state.by_hash.get(&hash).filter(|i| **i < tree_size) else {
            return (404, b"no such leaf".to_vec());
        };
        if tree_size > size {
            return (400, b"tree_size beyond the tree".to_vec());
        }
        let path: Vec<String> = state
            .rfc_tree
            .path(index, 0, tree_size)
            .iter()
            .map(|h| format!("\"{}\"", B64.encode(h)))
            .collect();
        let body = format!(
            r#"{{"leaf_index":{index},"audit_path":[{}]}}"#,
            path.join(",")
        );
        return (200, body.into_bytes());
    }
    if path == "ct/v1/get-sth-consistency" {
        let (Some(first), Some(second)) = (param("first"), param("second")) else {
            return (400, b"first and second".to_vec());
        };
        if first > second || second > size {
            return (400, b"bad sizes".to_vec());
        }
        let proof: Vec<String> = if first == 0 {
            Vec::new()
        } else {
            state.rfc_tree.subproof(first, 0, second, true)
        }
        .iter()
        .map(|h| format!("\"{}\"", B64.encode(h)))
        .collect();
        let body = format!(r#"{{"consistency":[{}]}}"#, proof.join(","));
        return (200, body.into_bytes());
    }
    if path == "ct/v1/get-entries" {
        let (Some(start), Some(end)) = (param("start"), param("end")) else {
            return (400, b"start and end".to_vec());
        };
        if start > end || start >= size {
            return (400, b"bad range".to_vec());
        }
        let end = end.min(size - 1).min(start + state.max_batch - 1);
        return (
            200,
            get_entries_body((start..=end).map(|i| state.served(i))),
        );
    }
    if path == "checkpoint" {
        let (size, timestamp, root, signature) = state.head(&state.tiled_tree);
        let origin = &state.origin;
        // static-ct-api: key id = SHA-256(origin || 0x0A || 0x05 || log id)[:4].
        let mut id = Sha256::new();
        id.update(origin.as_bytes());
        id.update([0x0a, 0x05]);
        id.update(state.signer.log_id());
        let mut note_signature = id.finalize()[..4].to_vec();
        note_signature.extend_from_slice(&timestamp.to_be_bytes());
        note_signature.extend(signature);
        let body = format!(
            "{origin}\n{size}\n{}\n\n\u{2014} {origin} {}\n",
            B64.encode(root),
            B64.encode(note_signature)
        );
        return (200, body.into_bytes());
    }
    if let Some(tile) = path.strip_prefix("tile/")
        && let Some((level, rest)) = tile.split_once('/')
        && let Ok(level) = level.parse::<u32>()
    {
        let Some((index, width)) = parse_tile_path(rest) else {
            return (404, b"not a tile path".to_vec());
        };
        // Level `level`'s nodes at the published size: the complete subtrees of
        // `256^level` leaves.
        let nodes = size >> (8 * level);
        let start = index * 256;
        let available = nodes.saturating_sub(start).min(256);
        // Any width up to what the published size covers: tlog-tiles has a log
        // serve the partial tile of every size it published (a reader that
        // fetched the head just before a publish asks for the narrower one);
        // once the full tile exists, the partial ones are gone, as it may.
        if available == 0 || width > available || (width < 256 && available == 256) {
            return (404, b"no such tile".to_vec());
        }
        let height = (8 * level) as usize;
        let body: Vec<u8> = (start..start + width)
            .flat_map(|n| state.tiled_tree.levels[height][n as usize])
            .collect();
        return (200, body);
    }
    if let Some(hex) = path.strip_prefix("issuer/") {
        let issuer = state
            .entries
            .iter()
            .flat_map(|e| &e.chain)
            .find(|c| hex_lower(&Sha256::digest(c)) == hex);
        return match issuer {
            Some(der) => (200, der.clone()),
            None => (404, b"no such issuer".to_vec()),
        };
    }
    if let Some(tile) = path.strip_prefix("tile/data/") {
        let Some((index, width)) = parse_tile_path(tile) else {
            return (404, b"not a tile path".to_vec());
        };
        let start = index * 256;
        let available = size.saturating_sub(start).min(256);
        // A full tile exists once the tree covers it; a partial one at any width
        // the published sizes covered (tlog-tiles: a log serves the partial tile
        // of every size it published until the full one exists; then, as it
        // may, this one deletes them).
        if available == 0 || width > available || (width < 256 && available == 256) {
            return (404, b"no such tile".to_vec());
        }
        let served = (start..start + width).map(|i| state.served(i));
        return (200, data_tile_body(served, start));
    }
    (404, b"not found".to_vec())
}

/// `x001/x234/067[.p/W]` -> (1234067, W or 256); `None` for anything else.
fn parse_tile_path(path: &str) -> Option<(u64, u64)> {
    let (digits, width) = match path.split_once(".p/") {
        Some((digits, w)) => {
            let w: u64 = w.parse().ok().filter(|w| (1..256).contains(w))?;
            (digits, w)
        }
        None => (path, 256),
    };
    let groups: Vec<&str> = digits.split('/').collect();
    let mut index = 0u64;
    for (i, group) in groups.iter().enumerate() {
        let group = if i + 1 < groups.len() {
            group.strip_prefix('x')?
        } else {
            group
        };
        if group.len() != 3 || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index * 1000 + group.parse::<u64>().ok()?;
    }
    Some((index, width))
}

pub fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Fault switches: a log that refuses for good, cannot say its tree size, answers slowly
// ---------------------------------------------------------------------------------------------

/// What a `FakeCtLog` does wrong, besides its `script` (which is answered first).
#[derive(Default)]
struct Faults {
    /// Every request gets this status and `Retry-After` until cleared.
    refuse_all: Option<(u16, Option<String>)>,
    /// Requests whose path starts with one of these prefixes get its status.
    fail_paths: Vec<(String, u16)>,
    /// Every response waits this long before it is sent.
    response_delay: Duration,
    /// Every response (head and body) is written one byte per this interval.
    trickle: Option<Duration>,
    /// When each request came, and its path.
    hit_log: Vec<(Instant, String)>,
}

impl Faults {
    /// The answer a switch gives to a request for `path`, if one does.
    fn answer(&self, path: &str) -> Option<(u16, Option<String>, Vec<u8>)> {
        if let Some((status, retry_after)) = &self.refuse_all {
            return Some((*status, retry_after.clone(), b"refused".to_vec()));
        }
        self.fail_paths
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, status)| (*status, None, b"unavailable".to_vec()))
    }
}

impl FakeCtLog {
    /// Every request from now on gets `status` (with this `Retry-After`, if any),
    /// until [`FakeCtLog::stop_refusing`]: a log that rate-limits for good.
    pub fn refuse_all(&self, status: u16, retry_after: Option<&str>) {
        self.state().faults.refuse_all = Some((status, retry_after.map(str::to_string)));
    }

    /// Ends [`FakeCtLog::refuse_all`].
    pub fn stop_refusing(&self) {
        self.state().faults.refuse_all = None;
    }

    /// Requests whose path (without the log prefix and query) starts with `prefix`
    /// get `status` until [`FakeCtLog::clear_path_failures`]: e.g. `ct/v1/get-sth`
    /// and `checkpoint` failing make the log's tree size unreadable.
    pub fn fail_path(&self, prefix: &str, status: u16) {
        self.state()
            .faults
            .fail_paths
            .push((prefix.to_string(), status));
    }

    /// Ends every [`FakeCtLog::fail_path`].
    pub fn clear_path_failures(&self) {
        self.state().faults.fail_paths.clear();
    }

    /// Every response waits `delay` before it is sent (the server answers one
    /// request at a time, so later requests wait too).
    pub fn set_response_delay(&self, delay: Duration) {
        self.state().faults.response_delay = delay;
    }

    /// Every response is written one byte per `every` (`None`: at once), head
    /// included, each byte flushed: a log that trickles.
    pub fn set_trickle(&self, every: Option<Duration>) {
        self.state().faults.trickle = every;
    }

    /// When each request whose path starts with `prefix` came, in order.
    pub fn hit_times(&self, prefix: &str) -> Vec<Instant> {
        self.state()
            .faults
            .hit_log
            .iter()
            .filter(|(_, path)| path.starts_with(prefix))
            .map(|(at, _)| *at)
            .collect()
    }
}

/// Sleeps `delay` in short steps; false when `stop` was set meanwhile.
fn pause(delay: Duration, stop: &AtomicBool) -> bool {
    if delay.is_zero() {
        return true;
    }
    let until = Instant::now() + delay;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(left.min(Duration::from_millis(20)));
    }
    !stop.load(Ordering::SeqCst)
}

/// Writes a whole response (status line, headers, body) one byte per `every`,
/// each flushed; gives up when the client goes away or `stop` is set.
fn trickle_out(
    request: tiny_http::Request,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    every: Duration,
    stop: &AtomicBool,
) {
    use std::io::Write;
    let mut head = format!(
        "HTTP/1.1 {status} Trickle\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(retry_after) = retry_after {
        head.push_str(&format!("Retry-After: {retry_after}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    for byte in head.as_bytes().iter().chain(body) {
        if !pause(every, stop) || writer.write_all(&[*byte]).is_err() || writer.flush().is_err() {
            return;
        }
    }
}
