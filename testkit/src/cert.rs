//! Certificates as a certstream server describes them (`Cert`, the certstream-server-go
//! full-stream shape), built one at a time for a test, with stand-in fingerprints.

use std::sync::atomic::{AtomicU64, Ordering};

static SERIAL: AtomicU64 = AtomicU64::new(0x1000);

/// A certificate as a certstream server would describe it (Go full-stream shape).
#[derive(Clone, Debug)]
pub struct Cert {
    pub names: Vec<String>,
    pub serial: String,
    pub fingerprint: String,
    pub not_before: i64,
    pub not_after: i64,
    pub precert: bool,
    pub aki: String,
    pub log_url: String,
    pub cert_index: u64,
    /// Base64 DER of the leaf (full stream), when set.
    pub as_der: Option<String>,
    /// The log's timestamp of the entry (certstream-server-go `source.timestamp`).
    pub log_timestamp: Option<f64>,
}

impl Cert {
    /// A final certificate for `names` with a fresh serial and fingerprint.
    pub fn new(names: &[&str]) -> Cert {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as u64;
        Cert {
            names: names.iter().map(|s| s.to_string()).collect(),
            serial: format!("0{:X}{:08X}", n, pid),
            fingerprint: colon_hex(&fake_hex(&format!("cert {n} {pid}"))),
            not_before: 1_768_474_800,
            not_after: 1_776_250_799,
            precert: false,
            aki: "keyid:cd:82:aa:3d:cb:0d:22:43:d5:45:35:80:bb:5a:8d:9b:f6:32:47:64".into(),
            log_url: "https://ct.example/log2026".into(),
            cert_index: n,
            as_der: None,
            log_timestamp: None,
        }
    }

    /// The precertificate of the same issuance: same serial, validity, names;
    /// its own fingerprint.
    pub fn precert(&self) -> Cert {
        let mut p = self.clone();
        p.precert = true;
        p.fingerprint = colon_hex(&fake_hex(&format!("precert of {}", self.fingerprint)));
        p
    }

    /// The same certificate as published by another log.
    pub fn in_log(&self, url: &str, index: u64) -> Cert {
        let mut c = self.clone();
        c.log_url = url.to_string();
        c.cert_index = index;
        c
    }

    /// Lower-case hex fingerprint without colons.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint.replace(':', "").to_ascii_lowercase()
    }

    /// The feed frame.
    pub fn frame(&self) -> String {
        let mut extensions = serde_json::json!({
            "authorityKeyIdentifier": self.aki,
            "basicConstraints": "CA:FALSE",
            "subjectAltName": self.names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(", "),
        });
        if self.precert {
            extensions["ctlPoisonByte"] = serde_json::Value::Bool(true);
        }
        let seen = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut source = serde_json::json!({"name": "Fake log", "url": self.log_url});
        if let Some(ts) = self.log_timestamp {
            source["timestamp"] = serde_json::json!(ts);
        }
        let mut frame = serde_json::json!({
            "data": {
                "cert_index": self.cert_index,
                "cert_link": format!("{}/ct/v1/get-entries?start={}&end={}", self.log_url, self.cert_index, self.cert_index),
                "leaf_cert": {
                    "all_domains": self.names,
                    "extensions": extensions,
                    "fingerprint": self.fingerprint,
                    "sha1": self.fingerprint,
                    "not_after": self.not_after,
                    "not_before": self.not_before,
                    "serial_number": self.serial,
                    "signature_algorithm": "ecdsa, sha256",
                    "subject": {"CN": self.names.first().cloned().unwrap_or_default(), "aggregated": "/CN=x"},
                    "issuer": {"C": "ZZ", "CN": "Fake Issuing CA E1", "O": "Fake CT Test PKI",
                               "aggregated": "/C=ZZ/CN=Fake Issuing CA E1/O=Fake CT Test PKI"},
                    "is_ca": false
                },
                "seen": seen,
                "source": source,
                "update_type": if self.precert { "PrecertLogEntry" } else { "X509LogEntry" }
            },
            "message_type": "certificate_update"
        });
        if let Some(der) = &self.as_der {
            frame["data"]["leaf_cert"]["as_der"] = serde_json::json!(der);
        }
        frame.to_string() + "\n"
    }
}

/// 40 hex digits derived from `seed` (a stand-in SHA-1 value).
pub fn fake_hex(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    (0..3u8)
        .map(|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (seed, i).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect::<String>()[..40]
        .to_string()
}

/// `AA:BB:...` upper-case colon hex of the first 40 hex digits.
pub fn colon_hex(hex: &str) -> String {
    let hex = hex.to_ascii_uppercase();
    let hex = &hex[..40];
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}
