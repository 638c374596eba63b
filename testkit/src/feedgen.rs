//! A realistic certstream firehose, generated (`FeedGen`): certstream-server-go
//! **full-stream** `certificate_update` messages of about 9 KB (leaf with `as_der`,
//! extensions, subject/issuer, a two-certificate chain with `as_der`, source, `seen`,
//! 1 in 3 precertificates). A pool of frames is rendered once and cycled; one message
//! in `match_every` is rendered fresh for a name under a watched entry, with its own
//! serial and fingerprint, so it alerts (`MatchCert`). `fingerprint`/`sha1`/`sha256`
//! are the hashes of the (random) `as_der` bytes, as a real server computes them.
//! `PacedFeed` (in `feed`) serves it; the soak and `bench_feed` push it through the
//! service. `watch_generated` and `inventory` put the matching side in a `TestDb`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use tungstenite::Utf8Bytes;

use crate::TestDb;
use crate::db::pg_err;

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
/// SHA-1, for certificate fingerprints of test data.
fn sha1(data: &[u8]) -> [u8; 20] {
    ::sha1::Sha1::digest(data).into()
}

use crate::ctlog::hex_lower;

/// `AA:BB:...`, as certstream-server-go prints fingerprints and key ids.
fn colon_hex(bytes: &[u8]) -> String {
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
        let mut rng = XorShift::new(cfg.seed);
        let issuers = issuers(&mut rng);
        let logs = vec![
            ct_log(
                "Google 'Argon2026h1' log",
                "https://ct.googleapis.invalid/logs/us1/argon2026h1/",
            ),
            ct_log(
                "Google 'Xenon2026h1' log",
                "https://ct.googleapis.invalid/logs/eu1/xenon2026h1/",
            ),
            ct_log(
                "Cloudflare 'Nimbus2026'",
                "https://ct.cloudflare.invalid/logs/nimbus2026/",
            ),
            ct_log(
                "Let's Encrypt 'Oak2026h1'",
                "https://oak.ct.letsencrypt.invalid/2026h1/",
            ),
            ct_log(
                "Sectigo 'Elephant2026h1'",
                "https://elephant2026h1.ct.sectigo.invalid/",
            ),
            ct_log(
                "DigiCert 'Wyvern2026h1'",
                "https://wyvern.ct.digicert.invalid/2026h1/",
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

    /// A v3 log list (the `CT_LOG_LIST` schema) naming the logs the messages come
    /// from, so a service reading this feed tracks their positions. Their hosts are
    /// under `.invalid` (RFC 2606): a gap is never fetched from a real log.
    pub fn log_list(&self) -> String {
        let logs: Vec<Value> = self
            .logs
            .iter()
            .map(|log| {
                let key = format!("made-up key of {}", log.url).into_bytes();
                json!({
                    "description": log.name,
                    "log_id": b64(&sha2::Sha256::digest(&key)),
                    "key": b64(&key),
                    "url": log.url,
                    "mmd": 86400,
                })
            })
            .collect();
        json!({"version": "feedgen", "operators": [
            {"name": "FeedGen", "email": ["ct@example.test"], "logs": logs}
        ]})
        .to_string()
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
        // Each log's entries in order, as a feed that drops nothing delivers them.
        let cert_index = log.index;
        log.index += 1;
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
// The database side
// ---------------------------------------------------------------------------------------

/// Watches `w0.example.com` ... `w<entries - 1>.example.com`, the names
/// [`FeedGenConfig::watched`] makes matches under.
pub fn watch_generated(db: &TestDb, entries: u64) -> Result<(), String> {
    db.try_client()?
        .execute(
            "INSERT INTO public.intent_current (fqdn)
             SELECT 'w' || g || '.example.com' FROM generate_series(0, $1::bigint - 1) g",
            &[&(entries as i64)],
        )
        .map_err(|e| format!("seeding the watch list: {}", pg_err(&e)))?;
    Ok(())
}

/// Puts `known` matching certificates in the inventory (`public.certs`), in one
/// statement, with `source`.
pub fn inventory(db: &TestDb, known: &[MatchCert], source: &str) -> Result<(), String> {
    let fps: Vec<String> = known.iter().map(|c| c.fingerprint_sha1.clone()).collect();
    let serials: Vec<String> = known
        .iter()
        .map(|c| c.serial.to_ascii_lowercase())
        .collect();
    let sans: Vec<String> = known
        .iter()
        .map(|c| serde_json::Value::from(c.names.clone()).to_string())
        .collect();
    let nbs: Vec<i64> = known.iter().map(|c| c.not_before).collect();
    let nas: Vec<i64> = known.iter().map(|c| c.not_after).collect();
    db.try_client()?
        .execute(
            "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
             SELECT fp, serial, sans::jsonb, nb, na, $6, extract(epoch FROM now())::bigint
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                    AS t(fp, serial, sans, nb, na)
             ON CONFLICT DO NOTHING",
            &[&fps, &serials, &sans, &nbs, &nas, &source],
        )
        .map_err(|e| format!("seeding the inventory: {}", pg_err(&e)))?;
    Ok(())
}
