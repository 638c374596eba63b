//! Signed tree heads, verified with the log's key from the trusted list: RFC 6962
//! `get-sth` (the `TreeHeadSignature` of §3.5) and static-ct-api checkpoints (a
//! signed note whose `RFC6962NoteSignature` carries the same `TreeHeadSignature`;
//! key id from the origin and the log id). Pure; run on the threads that read logs.
//!
//! A log key is ECDSA P-256 or RSA (2048 bits or more), both SHA-256, as RFC 6962
//! §2.1.4 and the log list allow; verification is ring's (already in the tree
//! through rustls). A `DigitallySigned` whose algorithms do not match the key's is
//! refused, never tried another way.

use sha2::{Digest, Sha256};
use std::fmt;

/// A signed tree head once its signature verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub tree_size: u64,
    /// Milliseconds since the epoch, as the log signed it.
    pub timestamp_ms: u64,
    pub root_hash: [u8; 32],
}

/// Why a tree head is not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The list's key is not an ECDSA P-256 or RSA (≥ 2048 bits) key.
    UnsupportedKey(&'static str),
    /// The body does not have the shape of a signed tree head.
    Malformed(&'static str),
    /// The `DigitallySigned`'s algorithms are not SHA-256 with the key's type.
    WrongAlgorithm { hash: u8, signature: u8 },
    /// A checkpoint with no signature line of this log (key name and key id).
    NoSignature,
    /// The signature does not verify with the log's key.
    BadSignature,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::UnsupportedKey(what) => write!(f, "log key not usable: {what}"),
            HeadError::Malformed(what) => write!(f, "tree head malformed: {what}"),
            HeadError::WrongAlgorithm { hash, signature } => write!(
                f,
                "tree head signed with hash {hash} / signature {signature}, not the log key's"
            ),
            HeadError::NoSignature => f.write_str("checkpoint carries no signature of this log"),
            HeadError::BadSignature => f.write_str("tree head signature does not verify"),
        }
    }
}

impl std::error::Error for HeadError {}

/// The verifying half of a log's key.
#[derive(Clone, Debug)]
pub struct LogKey {
    kind: KeyKind,
    /// What ring verifies with: the EC point, or the RSAPublicKey DER.
    public: Vec<u8>,
    /// SHA-256 of the SubjectPublicKeyInfo: the RFC 6962 log id.
    log_id: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    EcdsaP256,
    Rsa,
}

/// `DigitallySigned` hash algorithm: SHA-256.
const SHA256: u8 = 4;
/// `DigitallySigned` signature algorithms.
const RSA: u8 = 1;
const ECDSA: u8 = 3;

/// OIDs, as DER content bytes.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

impl LogKey {
    /// The key from the list's DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<LogKey, HeadError> {
        use x509_parser::prelude::FromDer;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|_| HeadError::UnsupportedKey("not a DER SubjectPublicKeyInfo"))?;
        if !rest.is_empty() {
            return Err(HeadError::UnsupportedKey("bytes after the key"));
        }
        let oid = spki.algorithm.algorithm.as_bytes();
        let public = spki.subject_public_key.data.to_vec();
        let kind = if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.as_bytes().to_vec());
            if curve.as_deref() != Some(OID_P256) {
                return Err(HeadError::UnsupportedKey("an EC key not on P-256"));
            }
            if public.len() != 65 || public[0] != 4 {
                return Err(HeadError::UnsupportedKey("not an uncompressed P-256 point"));
            }
            KeyKind::EcdsaP256
        } else if oid == OID_RSA {
            match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => {}
                _ => return Err(HeadError::UnsupportedKey("an RSA key under 2048 bits")),
            }
            KeyKind::Rsa
        } else {
            return Err(HeadError::UnsupportedKey("neither ECDSA P-256 nor RSA"));
        };
        Ok(LogKey {
            kind,
            public,
            log_id: Sha256::digest(der).into(),
        })
    }

    /// The RFC 6962 log id: SHA-256 of the key.
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// Verifies a `DigitallySigned` over `message`.
    fn verify(&self, digitally_signed: &[u8], message: &[u8]) -> Result<(), HeadError> {
        let [hash, signature, hi, lo, sig @ ..] = digitally_signed else {
            return Err(HeadError::Malformed("DigitallySigned too short"));
        };
        let want = match self.kind {
            KeyKind::EcdsaP256 => ECDSA,
            KeyKind::Rsa => RSA,
        };
        if *hash != SHA256 || *signature != want {
            return Err(HeadError::WrongAlgorithm {
                hash: *hash,
                signature: *signature,
            });
        }
        if usize::from(u16::from_be_bytes([*hi, *lo])) != sig.len() {
            return Err(HeadError::Malformed("DigitallySigned length"));
        }
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match self.kind {
            KeyKind::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
            KeyKind::Rsa => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        };
        ring::signature::UnparsedPublicKey::new(algorithm, &self.public)
            .verify(message, sig)
            .map_err(|_| HeadError::BadSignature)
    }

    /// Verifies a tree head's `TreeHeadSignature` (RFC 6962 §3.5).
    pub fn verify_tree_head(&self, head: &TreeHead, signature: &[u8]) -> Result<(), HeadError> {
        self.verify(signature, &tree_head_message(head))
    }

    /// A checkpoint's note key id for this log under `origin` (static-ct-api): the
    /// first four bytes of SHA-256(origin || 0x0A || 0x05 || log id).
    pub fn checkpoint_key_id(&self, origin: &str) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update([0x0a, 0x05]);
        h.update(self.log_id);
        let digest = h.finalize();
        [digest[0], digest[1], digest[2], digest[3]]
    }
}

/// The signed bytes of a `TreeHeadSignature`: version v1, signature type
/// tree_hash, timestamp, tree size, root hash.
fn tree_head_message(head: &TreeHead) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + 8 + 8 + 32);
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&head.timestamp_ms.to_be_bytes());
    m.extend_from_slice(&head.tree_size.to_be_bytes());
    m.extend_from_slice(&head.root_hash);
    m
}

/// A `get-sth` response, verified with `key`.
pub fn verify_sth(key: &LogKey, body: &[u8]) -> Result<TreeHead, HeadError> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Sth {
        tree_size: u64,
        timestamp: u64,
        sha256_root_hash: String,
        tree_head_signature: String,
    }
    let sth: Sth = serde_json::from_slice(body)
        .map_err(|_| HeadError::Malformed("get-sth is not its JSON"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let root_hash: [u8; 32] = b64
        .decode(&sth.sha256_root_hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or(HeadError::Malformed("sha256_root_hash"))?;
    let signature = b64
        .decode(&sth.tree_head_signature)
        .map_err(|_| HeadError::Malformed("tree_head_signature"))?;
    if sth.tree_size > super::MAX_INDEX {
        return Err(HeadError::Malformed("tree_size of 2^63 or more"));
    }
    let head = TreeHead {
        tree_size: sth.tree_size,
        timestamp_ms: sth.timestamp,
        root_hash,
    };
    key.verify_tree_head(&head, &signature)?;
    Ok(head)
}

/// A static-ct-api checkpoint, verified with `key`: its note text parsed
/// (`tiles::parse_checkpoint`: origin, size, root, no extension lines), then the
/// signature line whose key name is the origin and whose key id is this log's,
/// its `RFC6962NoteSignature` checked as a `TreeHeadSignature` over the note's
/// size and root and the signature's timestamp. Other signature lines (witnesses,
/// other keys) are ignored, as the spec asks.
pub fn verify_checkpoint(key: &LogKey, body: &[u8]) -> Result<TreeHead, HeadError> {
    use base64::Engine;
    let checkpoint = super::tiles::parse_checkpoint(body)
        .map_err(|_| HeadError::Malformed("checkpoint text"))?;
    let text = std::str::from_utf8(body).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let (note, signatures) = text
        .split_once("\n\n")
        .ok_or(HeadError::Malformed("no signature block"))?;
    if note.split('\n').count() != 3 {
        return Err(HeadError::Malformed(
            "an RFC6962NoteSignature checkpoint has no extension lines",
        ));
    }
    let key_id = key.checkpoint_key_id(&checkpoint.origin);
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((name, signature)) = rest.split_once(' ') else {
            continue;
        };
        if name != checkpoint.origin {
            continue;
        }
        let Ok(bytes) = b64.decode(signature) else {
            continue;
        };
        let Some((id, body)) = bytes.split_first_chunk::<4>() else {
            continue;
        };
        if *id != key_id {
            continue;
        }
        let Some((timestamp, digitally_signed)) = body.split_first_chunk::<8>() else {
            return Err(HeadError::Malformed("RFC6962NoteSignature too short"));
        };
        let head = TreeHead {
            tree_size: checkpoint.tree_size,
            timestamp_ms: u64::from_be_bytes(*timestamp),
            root_hash: checkpoint.root_hash,
        };
        key.verify_tree_head(&head, digitally_signed)?;
        return Ok(head);
    }
    Err(HeadError::NoSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// Tree heads and checkpoints signed by Python's `cryptography` (OpenSSL),
    /// written by tests/fixtures/make_sth_vectors.py: an implementation of the
    /// formats independent of this module.
    const VECTORS: &str = include_str!("../../tests/fixtures/sth_vectors.json");

    struct Vector {
        name: String,
        key: LogKey,
        spki: Vec<u8>,
        get_sth: String,
        checkpoint: String,
    }

    fn vectors() -> Vec<Vector> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let json: Vec<serde_json::Value> = serde_json::from_str(VECTORS).unwrap();
        json.into_iter()
            .map(|v| {
                let spki = b64.decode(v["key"].as_str().unwrap()).unwrap();
                let key = LogKey::from_spki(&spki).unwrap();
                assert_eq!(
                    key.log_id().to_vec(),
                    b64.decode(v["log_id"].as_str().unwrap()).unwrap()
                );
                Vector {
                    name: v["name"].as_str().unwrap().into(),
                    key,
                    spki,
                    get_sth: v["get_sth"].as_str().unwrap().into(),
                    checkpoint: v["checkpoint"].as_str().unwrap().into(),
                }
            })
            .collect()
    }

    #[test]
    fn independently_signed_heads_verify_in_both_apis() {
        for v in vectors() {
            let sth = verify_sth(&v.key, v.get_sth.as_bytes())
                .unwrap_or_else(|e| panic!("{}: get-sth: {e}", v.name));
            let cp = verify_checkpoint(&v.key, v.checkpoint.as_bytes())
                .unwrap_or_else(|e| panic!("{}: checkpoint: {e}", v.name));
            assert_eq!(sth, cp, "{}: one head in both encodings", v.name);
        }
    }

    #[test]
    fn a_changed_head_or_another_key_fails() {
        let all = vectors();
        for (i, v) in all.iter().enumerate() {
            let other = &all[(i + 1) % all.len()];
            assert!(matches!(
                verify_sth(&other.key, v.get_sth.as_bytes()),
                Err(HeadError::BadSignature | HeadError::WrongAlgorithm { .. })
            ));
            assert_eq!(
                verify_checkpoint(&other.key, v.checkpoint.as_bytes()),
                Err(HeadError::NoSignature),
                "{}: another log's key id",
                v.name
            );
            let mut sth: serde_json::Value = serde_json::from_str(&v.get_sth).unwrap();
            let size = sth["tree_size"].as_u64().unwrap();
            sth["tree_size"] = (size + 1).into();
            assert_eq!(
                verify_sth(&v.key, sth.to_string().as_bytes()),
                Err(HeadError::BadSignature),
                "{}: a grown size",
                v.name
            );
            // The checkpoint's size line changed: same signature line, other head.
            let mut lines: Vec<&str> = v.checkpoint.split('\n').collect();
            let bigger = (size + 1).to_string();
            lines[1] = &bigger;
            assert_eq!(
                verify_checkpoint(&v.key, lines.join("\n").as_bytes()),
                Err(HeadError::BadSignature),
                "{}",
                v.name
            );
            // A witness's line, or an extension line, around the log's.
            let witnessed = v.checkpoint.replace(
                "\n\n",
                "\n\n\u{2014} witness.example AAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
            );
            assert!(verify_checkpoint(&v.key, witnessed.as_bytes()).is_ok());
            let extended = v.checkpoint.replacen("\n\n", "\nextension\n\n", 1);
            assert!(verify_checkpoint(&v.key, extended.as_bytes()).is_err());
            assert_eq!(v.key.log_id(), &<[u8; 32]>::from(Sha256::digest(&v.spki)));
        }
    }

    #[test]
    fn keys_other_than_p256_and_rsa_are_refused() {
        assert!(LogKey::from_spki(b"not a key").is_err());
        // An Ed25519 SubjectPublicKeyInfo (OID 1.3.101.112).
        let mut ed25519 = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
        ed25519.extend_from_slice(&[0x03, 0x21, 0x00]);
        ed25519.extend_from_slice(&[7u8; 32]);
        assert_eq!(
            LogKey::from_spki(&ed25519).unwrap_err(),
            HeadError::UnsupportedKey("neither ECDSA P-256 nor RSA")
        );
    }
}
