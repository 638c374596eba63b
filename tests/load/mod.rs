//! Load tooling for certwatch: what a soak test or a benchmark needs to push a
//! realistic certstream firehose through the real service, in-process.
//!
//! - [`FeedGen`]: certstream-server-go **full-stream** `certificate_update`
//!   messages of about 9 KB (leaf with `as_der`, extensions, subject/issuer, a
//!   two-certificate chain with `as_der`, source, `seen`, 1 in 3 precertificates).
//!   A pool of frames is rendered once and cycled; one message in `match_every`
//!   is rendered fresh for a name under a watched entry, with its own serial and
//!   fingerprint, so it alerts. `fingerprint`/`sha1`/`sha256` are the hashes of
//!   the (random) `as_der` bytes, as a real server computes them.
//! - [`PacedFeed`]: a WebSocket server on `127.0.0.1:0` that sends [`FeedGen`]
//!   frames to its client at a set rate, in small batches every 5 ms, answering
//!   pings between batches.
//! - [`WebhookSink`]: a webhook receiver that counts requests and answers 200.
//! - [`ThrowawayDb`]: a database created from `HARNESS_ADMIN_DSN` with
//!   `schema.sql` applied, dropped `WITH (FORCE)` on drop.
//! - [`rss_kib`], [`peak_rss_kib`], [`thread_cpu_ticks`], [`process_cpu_ticks`],
//!   [`scrape`], [`metric`]: what to measure with.
//!
//! Use it with `#[path = "load/mod.rs"] mod load;` from a file in `tests/`.
//! Dependencies: only the package's own.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use tungstenite::{Message, Utf8Bytes, WebSocket};

/// Default admin DSN, as the e2e harness and the integration tests use.
pub const DEFAULT_ADMIN_DSN: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

// ---------------------------------------------------------------------------------------
// PRNG and hashes
// ---------------------------------------------------------------------------------------

/// xorshift64* seeded through splitmix64: fast, deterministic, good enough for
/// test data (never for anything secret).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(splitmix64(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SHA-1 (the package has `sha2` only); for certificate fingerprints of test data.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (s, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

pub use certwatch::certstream::hex_lower;

/// `AA:BB:...`, as certstream-server-go prints fingerprints and key ids.
pub fn colon_hex(bytes: &[u8]) -> String {
    let hex = hex_lower(bytes).to_ascii_uppercase();
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(pair[0] as char);
        s.push(pair[1] as char);
    }
    s
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Random bytes that start like a DER certificate (`30 82 <len>`), so their
/// base64 starts with `MII` as real ones do.
fn fake_der(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut der = rng.bytes(len);
    let body = (len - 4) as u16;
    der[..4].copy_from_slice(&[0x30, 0x82, (body >> 8) as u8, body as u8]);
    der
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// FeedGen
// ---------------------------------------------------------------------------------------

/// How [`FeedGen`] renders its stream.
#[derive(Clone, Debug)]
pub struct FeedGenConfig {
    pub seed: u64,
    /// Frames rendered once and cycled through.
    pub pool_size: usize,
    /// One message in this many is a fresh certificate under a watched entry (0: none).
    pub match_every: u64,
    /// Every `known_every`-th matching certificate (the 0th, the k-th, ...) is a
    /// final certificate meant to be put in the inventory (`info`); 0: none.
    pub known_every: u64,
    /// Watch entries (`w<k>.example.com`) under which matching names are made.
    pub watched: Vec<String>,
}

impl Default for FeedGenConfig {
    fn default() -> FeedGenConfig {
        FeedGenConfig {
            seed: 0x5EED_CE27,
            pool_size: 4096,
            match_every: 1000,
            known_every: 2,
            watched: (0..1000).map(|k| format!("w{k}.example.com")).collect(),
        }
    }
}

/// The identity of the `m`-th matching certificate: what the inventory must hold
/// for it to be `info`.
#[derive(Clone, Debug)]
pub struct MatchCert {
    pub index: u64,
    /// Meant to be in the inventory (a final certificate).
    pub known: bool,
    pub precert: bool,
    pub names: Vec<String>,
    /// Upper-case hex as the feed sends it.
    pub serial: String,
    /// Lower-case hex SHA-1 of `der`, no colons (the inventory's spelling).
    pub fingerprint_sha1: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
}

/// One issuing CA with its two-certificate chain, rendered once.
#[derive(Clone, Debug)]
struct Issuer {
    c: &'static str,
    o: &'static str,
    cn: &'static str,
    aia: &'static str,
    policy: &'static str,
    ski: String,
    sig_alg: &'static str,
    chain: Value,
}

#[derive(Clone, Debug)]
struct Log {
    name: &'static str,
    url: &'static str,
    index: u64,
}

/// What one rendered certificate is made of.
struct Spec {
    names: Vec<String>,
    precert: bool,
    serial: String,
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// A deterministic generator of certstream-server-go full-stream messages.
pub struct FeedGen {
    cfg: FeedGenConfig,
    rng: XorShift,
    issuers: Vec<Issuer>,
    logs: Vec<Log>,
    pool: Vec<Utf8Bytes>,
    pool_bytes: usize,
    cursor: usize,
    produced: u64,
    matches: u64,
}

const TLDS: &[&str] = &[
    "com", "com", "com", "net", "org", "io", "de", "co.uk", "fr", "nl", "app", "dev", "xyz",
    "info", "shop", "online", "com.br", "jp", "ru", "pl",
];
const SUBS: &[&str] = &[
    "www",
    "mail",
    "api",
    "cdn",
    "shop",
    "blog",
    "dev",
    "staging",
    "app",
    "portal",
    "autodiscover",
    "cpanel",
    "webmail",
    "m",
    "static",
    "vpn",
    "admin",
    "login",
];
const SYLLABLES: &[&str] = &[
    "ka", "ro", "mi", "ne", "ta", "lo", "zu", "ar", "en", "ost", "tri", "vel", "mon", "dar", "pix",
    "bor", "sun", "kel", "fa", "qui", "lex", "nor", "tan", "gri",
];

impl FeedGen {
    /// Renders the pool (a few hundred milliseconds for 4,096 frames).
    pub fn new(cfg: FeedGenConfig) -> FeedGen {
        assert_eq!(
            hex_lower(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "sha1 self-check"
        );
        let mut rng = XorShift::new(cfg.seed);
        let issuers = issuers(&mut rng);
        let logs = vec![
            ct_log(
                "Google 'Argon2026h1' log",
                "https://ct.googleapis.com/logs/us1/argon2026h1/",
            ),
            ct_log(
                "Google 'Xenon2026h1' log",
                "https://ct.googleapis.com/logs/eu1/xenon2026h1/",
            ),
            ct_log(
                "Cloudflare 'Nimbus2026'",
                "https://ct.cloudflare.com/logs/nimbus2026/",
            ),
            ct_log(
                "Let's Encrypt 'Oak2026h1'",
                "https://oak.ct.letsencrypt.org/2026h1/",
            ),
            ct_log(
                "Sectigo 'Elephant2026h1'",
                "https://elephant2026h1.ct.sectigo.com/",
            ),
            ct_log(
                "DigiCert 'Wyvern2026h1'",
                "https://wyvern.ct.digicert.com/2026h1/",
            ),
        ];
        let mut feed = FeedGen {
            rng,
            issuers,
            logs,
            pool: Vec::with_capacity(cfg.pool_size),
            pool_bytes: 0,
            cursor: 0,
            produced: 0,
            matches: 0,
            cfg,
        };
        for _ in 0..feed.cfg.pool_size.max(1) {
            let spec = feed.random_spec();
            let text = feed.render(&spec);
            feed.pool_bytes += text.len();
            feed.pool.push(Utf8Bytes::from(text));
        }
        feed
    }

    /// The next message: a pool frame, or every `match_every`-th a fresh matching one.
    /// The flag says which.
    pub fn next_frame(&mut self) -> (Utf8Bytes, bool) {
        self.produced += 1;
        let every = self.cfg.match_every;
        if every > 0 && !self.cfg.watched.is_empty() && self.produced.is_multiple_of(every) {
            let m = self.match_cert(self.matches);
            self.matches += 1;
            let spec = Spec {
                names: m.names,
                precert: m.precert,
                serial: m.serial,
                der: m.der,
                not_before: m.not_before,
                not_after: m.not_after,
            };
            return (Utf8Bytes::from(self.render(&spec)), true);
        }
        let frame = self.pool[self.cursor].clone();
        self.cursor = (self.cursor + 1) % self.pool.len();
        (frame, false)
    }

    /// The `m`-th matching certificate (deterministic in the seed and `m`).
    pub fn match_cert(&self, m: u64) -> MatchCert {
        let mut rng = XorShift::new(self.cfg.seed ^ splitmix64(m ^ 0x4D41_5443_4845_5321));
        let known = self.cfg.known_every > 0 && m.is_multiple_of(self.cfg.known_every);
        let precert = !known && rng.below(3) == 0;
        let entry = rng
            .pick(&self.cfg.watched)
            .trim_start_matches("*.")
            .to_string();
        let mut names = vec![format!("host{m}.{entry}")];
        if rng.below(2) == 0 {
            names.push(format!("www.host{m}.{entry}"));
        }
        for _ in 0..rng.below(3) {
            names.push(random_domain(&mut rng));
        }
        let der_len = 1280 + rng.below(64) as usize;
        let der = fake_der(&mut rng, der_len);
        let (not_before, not_after) = validity(&mut rng);
        MatchCert {
            index: m,
            known,
            precert,
            names,
            serial: format!("05{:016X}{:016X}", m, rng.next_u64()),
            fingerprint_sha1: hex_lower(&sha1(&der)),
            not_before,
            not_after,
            der,
        }
    }

    /// The matching certificates of the first `count` matches that are meant to
    /// be in the inventory.
    pub fn known_certs(&self, count: u64) -> Vec<MatchCert> {
        (0..count)
            .filter(|m| self.cfg.known_every > 0 && m.is_multiple_of(self.cfg.known_every))
            .map(|m| self.match_cert(m))
            .collect()
    }

    pub fn config(&self) -> &FeedGenConfig {
        &self.cfg
    }

    /// Messages handed out so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Matching messages handed out so far.
    pub fn matches(&self) -> u64 {
        self.matches
    }

    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// Bytes of text held by the pool (what the generator adds to RSS).
    pub fn pool_bytes(&self) -> usize {
        self.pool_bytes
    }

    pub fn mean_frame_bytes(&self) -> usize {
        self.pool_bytes / self.pool.len().max(1)
    }

    /// One pool frame, for inspection.
    pub fn sample(&self, i: usize) -> &str {
        self.pool[i % self.pool.len()].as_str()
    }

    fn random_spec(&mut self) -> Spec {
        let rng = &mut self.rng;
        let base = random_domain(rng);
        let mut names = vec![base.clone()];
        let extra = rng.below(6);
        for _ in 0..extra {
            let name = match rng.below(4) {
                0 => format!("{}.{base}", rng.pick(SUBS)),
                1 => format!("*.{base}"),
                2 => format!("{}{}.{base}", rng.pick(SUBS), rng.below(100)),
                _ => random_domain(rng),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let precert = rng.below(3) == 0;
        let mut serial = rng.bytes(16);
        serial[0] &= 0x7F;
        let der_len = 1200 + rng.below(300) as usize;
        let der = fake_der(rng, der_len);
        let (not_before, not_after) = validity(rng);
        Spec {
            names,
            precert,
            serial: hex_lower(&serial).to_ascii_uppercase(),
            der,
            not_before,
            not_after,
        }
    }

    fn render(&mut self, spec: &Spec) -> String {
        let issuer = self.rng.pick(&self.issuers).clone();
        let log_n = self.rng.below(self.logs.len() as u64) as usize;
        let ski = colon_hex(&self.rng.bytes(20));
        let log = &mut self.logs[log_n];
        log.index += 1 + self.rng.below(50);
        let cert_index = log.index;
        let sha1_fp = colon_hex(&sha1(&spec.der));
        let sha256_fp = colon_hex(&sha2::Sha256::digest(&spec.der));
        let cn = spec.names[0].clone();
        let san = spec
            .names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut extensions = json!({
            "authorityInfoAccess": issuer.aia,
            "authorityKeyIdentifier": format!("keyid:{}\n", issuer.ski),
            "basicConstraints": "CA:FALSE",
            "certificatePolicies": issuer.policy,
            "extendedKeyUsage": "TLS Web server authentication, TLS Web client authentication",
            "keyUsage": "Digital Signature, Key Encipherment",
            "subjectAltName": san,
            "subjectKeyIdentifier": ski,
        });
        if spec.precert {
            extensions["ctlPoisonByte"] = json!(true);
        } else {
            let sct_len = 118 + self.rng.below(2) as usize;
            extensions["ctlSignedCertificateTimestamp"] = json!(b64(&self.rng.bytes(sct_len)));
        }
        let seen = unix_now_f64();
        let frame = json!({
            "data": {
                "cert_index": cert_index,
                "cert_link": format!("{}ct/v1/get-entries?start={cert_index}&end={cert_index}", log.url),
                "chain": issuer.chain,
                "leaf_cert": {
                    "all_domains": spec.names,
                    "as_der": b64(&spec.der),
                    "extensions": extensions,
                    "fingerprint": sha1_fp,
                    "sha1": sha1_fp,
                    "sha256": sha256_fp,
                    "issuer": dn(Some(issuer.c), issuer.o, issuer.cn),
                    "not_after": spec.not_after,
                    "not_before": spec.not_before,
                    "serial_number": spec.serial,
                    "signature_algorithm": issuer.sig_alg,
                    "subject": dn(None, "", &cn),
                    "is_ca": false,
                },
                "seen": seen,
                "source": {
                    "name": log.name,
                    "url": log.url,
                    "timestamp": seen - 1.0 - self.rng.below(4000) as f64 / 1000.0,
                    "type": "rfc6962",
                },
                "update_type": if spec.precert { "PrecertLogEntry" } else { "X509LogEntry" },
            },
            "message_type": "certificate_update",
        });
        frame.to_string()
    }
}

fn ct_log(name: &'static str, url: &'static str) -> Log {
    Log {
        name,
        url,
        index: 0,
    }
}

/// A subject or issuer object as certstream-server-go renders it.
fn dn(c: Option<&str>, o: &str, cn: &str) -> Value {
    let mut aggregated = String::new();
    if let Some(c) = c {
        aggregated.push_str(&format!("/C={c}"));
    }
    aggregated.push_str(&format!("/CN={cn}"));
    if !o.is_empty() {
        aggregated.push_str(&format!("/O={o}"));
    }
    json!({
        "C": c,
        "CN": cn,
        "L": null,
        "O": if o.is_empty() { Value::Null } else { json!(o) },
        "OU": null,
        "ST": null,
        "aggregated": aggregated,
        "email_address": null,
    })
}

/// A random registrable domain that is never under `example.com`.
fn random_domain(rng: &mut XorShift) -> String {
    let mut label = String::new();
    let syllables = rng.range(2, 4);
    for _ in 0..syllables {
        let syllable: &&str = rng.pick(SYLLABLES);
        label.push_str(syllable);
    }
    if rng.below(3) == 0 {
        label.push_str(&rng.below(1000).to_string());
    }
    format!("{label}.{}", rng.pick(TLDS))
}

/// A 90-day (sometimes 47- or 398-day) window starting in the last few days.
fn validity(rng: &mut XorShift) -> (i64, i64) {
    let not_before = 1_768_474_800 + rng.below(5 * 86_400) as i64;
    let days = match rng.below(10) {
        0 => 47,
        1 => 398,
        _ => 90,
    };
    (not_before, not_before + days * 86_400 - 1)
}

fn issuers(rng: &mut XorShift) -> Vec<Issuer> {
    let specs: [(&str, &str, &str, &str, &str, &str, &str); 6] = [
        (
            "US",
            "Let's Encrypt",
            "R11",
            "CA Issuers - URI:http://r11.i.lencr.org/\n",
            "ISRG Root X1",
            "Internet Security Research Group",
            "sha256, rsa",
        ),
        (
            "US",
            "Let's Encrypt",
            "E6",
            "CA Issuers - URI:http://e6.i.lencr.org/\n",
            "ISRG Root X2",
            "Internet Security Research Group",
            "ecdsa, sha384",
        ),
        (
            "US",
            "Google Trust Services",
            "WR1",
            "OCSP - URI:http://o.pki.goog/wr1\nCA Issuers - URI:http://i.pki.goog/wr1.crt\n",
            "GTS Root R1",
            "Google Trust Services LLC",
            "sha256, rsa",
        ),
        (
            "US",
            "Google Trust Services",
            "WE1",
            "OCSP - URI:http://o.pki.goog/we1\nCA Issuers - URI:http://i.pki.goog/we1.crt\n",
            "GTS Root R4",
            "Google Trust Services LLC",
            "ecdsa, sha256",
        ),
        (
            "GB",
            "Sectigo Limited",
            "Sectigo Public Server Authentication CA DV R36",
            "CA Issuers - URI:http://crt.sectigo.com/SectigoPublicServerAuthenticationCADVR36.crt\nOCSP - URI:http://ocsp.sectigo.com\n",
            "Sectigo Public Server Authentication Root R46",
            "Sectigo Limited",
            "sha256, rsa",
        ),
        (
            "US",
            "DigiCert Inc",
            "DigiCert Global G2 TLS RSA SHA256 2020 CA1",
            "OCSP - URI:http://ocsp.digicert.com\nCA Issuers - URI:http://cacerts.digicert.com/DigiCertGlobalG2TLSRSASHA2562020CA1-1.crt\n",
            "DigiCert Global Root G2",
            "DigiCert Inc",
            "sha256, rsa",
        ),
    ];
    specs
        .iter()
        .map(|&(c, o, cn, aia, root_cn, root_o, sig_alg)| {
            let ski = rng.bytes(20);
            let root_ski = rng.bytes(20);
            let intermediate = chain_cert(rng, (c, o, cn), (c, root_o, root_cn), &ski, &root_ski);
            let root = chain_cert(
                rng,
                (c, root_o, root_cn),
                (c, root_o, root_cn),
                &root_ski,
                &root_ski,
            );
            Issuer {
                c,
                o,
                cn,
                aia,
                policy: "Policy: 2.23.140.1.2.1",
                ski: colon_hex(&ski),
                sig_alg,
                chain: json!([intermediate, root]),
            }
        })
        .collect()
}

/// One `chain` entry (a CA certificate) with its own `as_der`.
fn chain_cert(
    rng: &mut XorShift,
    subject: (&str, &str, &str),
    issuer: (&str, &str, &str),
    ski: &[u8],
    aki: &[u8],
) -> Value {
    let der_len = 1150 + rng.below(120) as usize;
    let der = fake_der(rng, der_len);
    let mut serial = rng.bytes(16);
    serial[0] &= 0x7F;
    json!({
        "extensions": {
            "authorityKeyIdentifier": format!("keyid:{}\n", colon_hex(aki)),
            "basicConstraints": "CA:TRUE, pathlen:0",
            "certificatePolicies": "Policy: 2.23.140.1.2.1",
            "keyUsage": "Digital Signature, Certificate Sign, CRL Sign",
            "subjectKeyIdentifier": colon_hex(ski),
        },
        "fingerprint": colon_hex(&sha1(&der)),
        "sha1": colon_hex(&sha1(&der)),
        "sha256": colon_hex(&sha2::Sha256::digest(&der)),
        "issuer": dn(Some(issuer.0), issuer.1, issuer.2),
        "not_after": 1_899_999_999,
        "not_before": 1_709_251_200,
        "serial_number": hex_lower(&serial).to_ascii_uppercase(),
        "signature_algorithm": "sha256, rsa",
        "subject": dn(Some(subject.0), subject.1, subject.2),
        "as_der": b64(&der),
        "is_ca": true,
    })
}

// ---------------------------------------------------------------------------------------
// PacedFeed
// ---------------------------------------------------------------------------------------

/// How often the pacer sends a batch.
const PACE_TICK: Duration = Duration::from_millis(5);
/// Accept poll of the listener while no client is connected.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// A client that takes nothing for this long makes a write give up for this tick.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// The pacer never sends more than this share of a second's frames in one tick to
/// catch up; beyond, it counts the frames as `behind` and forgets them.
const MAX_CATCH_UP: f64 = 0.1;

/// Counters of a [`PacedFeed`], shared with its thread.
#[derive(Default, Debug)]
pub struct FeedCounters {
    /// Frames written to the client (in order, complete).
    pub sent: AtomicU64,
    /// Matching frames among them.
    pub matches: AtomicU64,
    /// Bytes of frame payload written.
    pub bytes: AtomicU64,
    /// Frames the schedule called for but that could not be sent in time (the client
    /// was not reading fast enough); never sent later.
    pub behind: AtomicU64,
    /// Clients accepted.
    pub connections: AtomicUsize,
    /// Pings received from the client.
    pub pings: AtomicU64,
}

/// A certstream WebSocket server that sends [`FeedGen`] frames to its client at
/// `rate` messages per second (0: paused). One client at a time; a reconnecting
/// client gets the stream where it left off. Stops on drop.
pub struct PacedFeed {
    addr: SocketAddr,
    rate: Arc<AtomicU64>,
    counters: Arc<FeedCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacedFeed {
    pub fn start(generator: FeedGen, rate: u64) -> io::Result<PacedFeed> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rate = Arc::new(AtomicU64::new(rate));
        let counters = Arc::new(FeedCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (rate, counters, stop) = (rate.clone(), counters.clone(), stop.clone());
            thread::Builder::new()
                .name("load-feed".into())
                .spawn(move || pace_loop(listener, generator, &rate, &counters, &stop))?
        };
        Ok(PacedFeed {
            addr,
            rate,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:<port>/full-stream`.
    pub fn url(&self) -> String {
        format!("ws://{}/full-stream", self.addr)
    }

    /// Messages per second from now on (0 pauses).
    pub fn set_rate(&self, per_second: u64) {
        self.rate.store(per_second, Ordering::SeqCst);
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::SeqCst)
    }

    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }

    pub fn matches(&self) -> u64 {
        self.counters.matches.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> &FeedCounters {
        &self.counters
    }
}

impl Drop for PacedFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pace_loop(
    listener: TcpListener,
    mut generator: FeedGen,
    rate: &AtomicU64,
    counters: &FeedCounters,
    stop: &AtomicBool,
) {
    // Frames taken from the generator that a client did not get whole.
    let mut pending = std::collections::VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) =
                    serve_client(stream, &mut generator, &mut pending, rate, counters, stop)
                {
                    log::warn!("load feed: client {peer} ended: {e}");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                log::warn!("load feed: accept failed: {e}");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Most bytes of frames the pacer holds for a slow client before it stops taking
/// new frames from the generator (they count as `behind` instead).
const MAX_UNSENT_BYTES: usize = 4 << 20;
/// Frames per `writev`.
const FRAMES_PER_WRITE: usize = 64;
/// How long finishing a half-written frame may take before the client is dropped.
const FINISH_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames taken from the generator and not yet wholly on the socket. Each is
/// sent as a WebSocket text frame (a header formatted by tungstenite, then the
/// payload), written with `writev` straight from the generator's buffers: the
/// pacer copies nothing, so on a shared machine its CPU goes to the kernel's
/// loopback, not to the benchmark's own bookkeeping.
#[derive(Default)]
struct Outbox {
    /// (header, payload, matching) of each unsent frame, oldest first.
    frames: std::collections::VecDeque<(Vec<u8>, Utf8Bytes, bool)>,
    /// Bytes of the oldest frame already written.
    written: usize,
    /// Unwritten bytes in all.
    unsent: usize,
}

impl Outbox {
    fn push(&mut self, payload: Utf8Bytes, matching: bool) {
        let header = tungstenite::protocol::frame::FrameHeader {
            opcode: tungstenite::protocol::frame::coding::OpCode::Data(
                tungstenite::protocol::frame::coding::Data::Text,
            ),
            ..Default::default()
        };
        let mut encoded = Vec::with_capacity(10);
        header
            .format(payload.len() as u64, &mut encoded)
            .expect("a header formats into a Vec");
        self.unsent += encoded.len() + payload.len();
        self.frames.push_back((encoded, payload, matching));
    }

    /// True when a frame is partly written: nothing else may go on the socket
    /// (a pong from tungstenite) until it is finished.
    fn mid_frame(&self) -> bool {
        self.written > 0
    }

    /// One `writev` of up to [`FRAMES_PER_WRITE`] frames; counts the frames it
    /// completes. A timeout is not an error: the frames stay queued.
    fn write_some(&mut self, stream: &mut TcpStream, counters: &FeedCounters) -> io::Result<()> {
        use std::io::{IoSlice, Write};
        let mut slices = Vec::with_capacity(2 * FRAMES_PER_WRITE);
        let mut skip = self.written;
        for (header, payload, _) in self.frames.iter().take(FRAMES_PER_WRITE) {
            for part in [header.as_slice(), payload.as_bytes()] {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    slices.push(IoSlice::new(&part[skip..]));
                    skip = 0;
                }
            }
        }
        let mut n = match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "socket took nothing")),
            Ok(n) => n,
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        self.unsent -= n;
        while n > 0 {
            let (header, payload, matching) = &self.frames[0];
            let left = header.len() + payload.len() - self.written;
            if n < left {
                self.written += n;
                break;
            }
            n -= left;
            counters.sent.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            if *matching {
                counters.matches.fetch_add(1, Ordering::Relaxed);
            }
            self.frames.pop_front();
            self.written = 0;
        }
        Ok(())
    }
}

fn serve_client(
    stream: TcpStream,
    generator: &mut FeedGen,
    pending: &mut std::collections::VecDeque<(Utf8Bytes, bool)>,
    rate: &AtomicU64,
    counters: &FeedCounters,
    stop: &AtomicBool,
) -> Result<(), String> {
    let io = |e: io::Error| e.to_string();
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(io)?;
    let mut ws: WebSocket<TcpStream> =
        tungstenite::accept(stream).map_err(|e| format!("handshake failed: {e}"))?;
    counters.connections.fetch_add(1, Ordering::SeqCst);

    let mut outbox = Outbox::default();
    // Frames the generator gave a previous client that never got them go first.
    for (frame, matching) in pending.drain(..) {
        outbox.push(frame, matching);
    }
    let mut epoch = Instant::now();
    let mut epoch_rate = rate.load(Ordering::SeqCst);
    let mut scheduled: u64 = 0;
    let mut next_tick = Instant::now();
    let result = 'serve: loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let r = rate.load(Ordering::SeqCst);
        if r != epoch_rate {
            epoch = Instant::now();
            epoch_rate = r;
            scheduled = 0;
        }
        let due = (epoch.elapsed().as_secs_f64() * r as f64) as u64;
        let mut batch = due.saturating_sub(scheduled);
        let cap = ((r as f64 * MAX_CATCH_UP) as u64).max(1);
        if batch > cap {
            counters.behind.fetch_add(batch - cap, Ordering::Relaxed);
            scheduled += batch - cap;
            batch = cap;
        }
        // A pong tungstenite still holds must go out before any frame of ours.
        let pong_sent = match ws.flush() {
            Ok(()) => true,
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => false,
            Err(e) => break Err(format!("flush: {e}")),
        };
        // Write what is due until the tick is over or the client stops taking;
        // then finish a half-written frame, so a pong cannot land inside it.
        let tick_end = next_tick + PACE_TICK;
        loop {
            while batch > 0 && outbox.unsent < MAX_UNSENT_BYTES {
                let (frame, matching) = generator.next_frame();
                outbox.push(frame, matching);
                scheduled += 1;
                batch -= 1;
            }
            if !pong_sent || outbox.frames.is_empty() {
                break;
            }
            let before = outbox.unsent;
            if let Err(e) = outbox.write_some(ws.get_mut(), counters) {
                break 'serve Err(format!("write: {e}"));
            }
            let stalled = outbox.unsent == before;
            if (stalled || Instant::now() >= tick_end) && !outbox.mid_frame() {
                break;
            }
            if stalled && tick_end.elapsed() > FINISH_FRAME_TIMEOUT {
                break 'serve Err("client stopped reading mid-frame".into());
            }
        }
        // Wait for the next tick reading, so the client's pings get their pongs.
        next_tick += PACE_TICK;
        let now = Instant::now();
        if next_tick < now {
            next_tick = now;
        }
        loop {
            let left = next_tick.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            {
                break 'serve Err(e.to_string());
            }
            match ws.read() {
                Ok(Message::Close(_)) => break 'serve Ok(()),
                Ok(Message::Ping(_)) => {
                    counters.pings.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => break,
                Err(tungstenite::Error::ConnectionClosed) => break 'serve Ok(()),
                Err(e) => break 'serve Err(format!("read: {e}")),
            }
        }
    };
    // Frames not wholly sent go, whole, to the next client.
    let cut = outbox.mid_frame();
    pending.extend(outbox.frames.into_iter().map(|(_, f, m)| (f, m)));
    if result.is_ok() && !cut {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    let _ = ws.get_ref().shutdown(NetShutdown::Both);
    result
}

// ---------------------------------------------------------------------------------------
// WebhookSink
// ---------------------------------------------------------------------------------------

/// Counters of a [`WebhookSink`].
#[derive(Default, Debug)]
pub struct WebhookCounters {
    pub requests: AtomicU64,
    pub info: AtomicU64,
    pub suspicious: AtomicU64,
    pub bytes: AtomicU64,
}

/// A webhook receiver on `127.0.0.1:0`: counts requests (and severities of
/// certwatch bodies) and answers 200. Stops on drop.
pub struct WebhookSink {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    counters: Arc<WebhookCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookSink {
    pub fn start() -> Result<WebhookSink, String> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| format!("webhook sink: bind: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or("webhook sink: no IP address")?;
        let server = Arc::new(server);
        let counters = Arc::new(WebhookCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, counters, stop) = (server.clone(), counters.clone(), stop.clone());
            thread::Builder::new()
                .name("load-webhook".into())
                .spawn(move || sink_loop(&server, &counters, &stop))
                .map_err(|e| format!("webhook sink: {e}"))?
        };
        Ok(WebhookSink {
            server,
            addr,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> &WebhookCounters {
        &self.counters
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sink_loop(server: &tiny_http::Server, counters: &WebhookCounters, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut request = match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    log::warn!("webhook sink: recv failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        let mut body = Vec::new();
        let _ = request.as_reader().read_to_end(&mut body);
        counters
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            match value.get("severity").and_then(Value::as_str) {
                Some("info") => counters.info.fetch_add(1, Ordering::Relaxed),
                Some("suspicious") => counters.suspicious.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        counters.requests.fetch_add(1, Ordering::SeqCst);
        let _ = request.respond(tiny_http::Response::from_string("ok\n"));
    }
}

// ---------------------------------------------------------------------------------------
// ThrowawayDb
// ---------------------------------------------------------------------------------------

/// The admin DSN: `HARNESS_ADMIN_DSN`, else [`DEFAULT_ADMIN_DSN`].
pub fn admin_dsn() -> String {
    std::env::var("HARNESS_ADMIN_DSN")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_DSN.to_string())
}

/// `certwatch_<prefix>_<pid>` with `schema.sql` applied; dropped `WITH (FORCE)`
/// when this guard drops (also on error or panic).
pub struct ThrowawayDb {
    name: String,
    dsn: String,
    admin_dsn: String,
}

impl ThrowawayDb {
    pub fn create(prefix: &str) -> Result<ThrowawayDb, String> {
        let admin_dsn = admin_dsn();
        let name = format!("certwatch_{prefix}_{}", std::process::id());
        let mut admin = pg_connect(&admin_dsn).map_err(|e| {
            format!("cannot connect to PostgreSQL with HARNESS_ADMIN_DSN {admin_dsn:?}: {e}")
        })?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .map_err(|e| format!("dropping a leftover {name}: {}", pg_err(&e)))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("CREATE DATABASE {name}: {}", pg_err(&e)))?;
        let db = ThrowawayDb {
            dsn: dsn_with_dbname(&admin_dsn, &name),
            name,
            admin_dsn,
        };
        db.connect()?
            .batch_execute(include_str!("../../schema.sql"))
            .map_err(|e| format!("applying schema.sql: {}", pg_err(&e)))?;
        Ok(db)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The DSN of this database (the admin DSN with the database name swapped).
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    pub fn connect(&self) -> Result<postgres::Client, String> {
        pg_connect(&self.dsn).map_err(|e| format!("connect {}: {e}", self.name))
    }
}

impl Drop for ThrowawayDb {
    fn drop(&mut self) {
        if std::env::var("HARNESS_KEEP_DB").as_deref() == Ok("1") {
            println!("HARNESS_KEEP_DB=1: keeping database {}", self.name);
            println!("  POSTGRES_DSN={}", self.dsn);
            return;
        }
        let dropped = pg_connect(&self.admin_dsn).and_then(|mut admin| {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .map_err(|e| pg_err(&e))
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop database {}: {e}", self.name);
        }
    }
}

pub fn pg_connect(dsn: &str) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = dsn.parse().map_err(|e| pg_err(&e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.connect(postgres::NoTls).map_err(|e| pg_err(&e))
}

/// The server's message when there is one.
pub fn pg_err(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// The admin DSN pointed at database `name` (URL or key=value form).
fn dsn_with_dbname(admin: &str, name: &str) -> String {
    match admin.find("://") {
        Some(i) => {
            let (scheme, rest) = admin.split_at(i + 3);
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let query = tail.find('?').map_or("", |q| &tail[q..]);
            format!("{scheme}{authority}/{name}{query}")
        }
        None => format!("{admin} dbname={name}"),
    }
}

// ---------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status` (`pid`: a process id, or `self`);
/// 0 if unreadable.
pub fn proc_status_kib_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

/// This process's resident set size (`VmRSS`), KiB; 0 if unreadable.
pub fn rss_kib() -> u64 {
    proc_status_kib_of("self", "VmRSS")
}

/// This process's peak resident set size (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib_of("self", "VmHWM")
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, fixed at 100 on Linux).
pub const USER_HZ: u64 = 100;

/// `utime + stime` from a `stat` line (fields after the `(comm)`).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of a whole process (`pid`: a process id, or `self`), in ticks of
/// [`USER_HZ`].
pub fn process_cpu_ticks_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_ticks(&s))
        .unwrap_or(0)
}

/// CPU time of this whole process, in ticks of [`USER_HZ`].
pub fn process_cpu_ticks() -> u64 {
    process_cpu_ticks_of("self")
}

/// CPU time of every live thread of a process (`pid`: a process id, or
/// `self`), by thread id: (name, ticks).
pub fn thread_cpu_ticks_of(pid: &str) -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if let Some(ticks) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
        {
            out.insert(tid, (name, ticks));
        }
    }
    out
}

/// CPU time of every live thread of this process, by thread id: (name, ticks).
pub fn thread_cpu_ticks() -> HashMap<u64, (String, u64)> {
    thread_cpu_ticks_of("self")
}

/// `GET http://addr/metrics`.
pub fn scrape(addr: SocketAddr) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("http://{addr}/metrics");
    agent
        .get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))
}

/// The value of one series of a Prometheus exposition, e.g.
/// `certwatch_alerts_total{severity="info"}`.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Polls `done` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits at most `timeout` for an in-process service to stop after its shutdown
/// was triggered.
pub fn wait_service(service: certwatch::Service, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::Builder::new()
        .name("load-wait".into())
        .spawn(move || {
            let _ = tx.send(service.wait().map_err(|e| e.to_string()));
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the service stopped with an error: {e}")),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(format!(
            "the service did not stop within {}s of shutdown",
            timeout.as_secs()
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            Err("the service's pipeline thread panicked".into())
        }
    }
}
