//! TLS for the database connections, as libpq's `sslmode` asks:
//!
//! | DSN | connector | server certificate |
//! |---|---|---|
//! | `sslmode=disable` | never used | — |
//! | `prefer`, `require` | `EncryptOnly` | not verified (the handshake signatures are) |
//! | `prefer`, `require` with an `sslrootcert` file (as libpq) | `ChainOnly` | chain to those roots |
//! | `verify-ca` (`sslrootcert` required) | `ChainOnly` | chain to those roots, any host name |
//! | `verify-full` | rustls' `WebPkiServerVerifier` | chain, and the host name or IP address in its SANs |
//!
//! What a DSN asks is read by `config::PostgresDsn`: the postgres crate knows
//! `disable`/`prefer`/`require` only, so `verify-*` reaches it as `require`, which
//! never falls back to an unencrypted connection ("server does not support TLS");
//! the verification is the verifier installed here. The roots are
//! `sslrootcert`'s PEM file, or with `sslrootcert=system` (and `verify-full`
//! without `sslrootcert`) webpki-roots' public web roots. A failed check is a
//! rustls certificate error, which `ConnectCause::of` names (unknown CA, wrong
//! host name).
//!
//! `tls_config` runs in `Store::new`, on the caller's thread; the verifiers run in
//! each handshake, on the r2d2 pool's own threads (where the pool opens its
//! connections).

use crate::config::{RootCertError, ServerCheck};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// The rustls client settings for `check`; the root file, if any, is read now.
pub(super) fn tls_config(check: &ServerCheck) -> Result<rustls::ClientConfig, RootCertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let config = match check {
        ServerCheck::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider))),
        ServerCheck::Chain(roots) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    roots: Arc::new(roots.load()?),
                    provider,
                }))
        }
        ServerCheck::ChainAndName(roots) => builder.with_root_certificates(roots.load()?),
    };
    Ok(config.with_no_client_auth())
}

/// `sslmode=prefer|require` without `sslrootcert`: like libpq at those modes, the
/// channel is encrypted but the server certificate is not verified. Accepts any
/// server certificate but still checks the handshake signatures.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the server certificate must chain to one of `roots`
/// (validity period, server-auth usage and signatures checked by webpki, as for
/// `verify-full`); its names are not compared with the host name.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn verify_tls12(
    provider: &rustls::crypto::CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn verify_tls13(
    provider: &rustls::crypto::CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}
