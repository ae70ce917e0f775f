//! TLS to PostgreSQL with rustls (through tokio-postgres-rustls, on the `ring` provider the
//! HTTP server already uses), with libpq's meaning of `sslmode`:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS | as `require` |
//! | `require` | always, or the connection fails | only against `sslrootcert` when given (chain, not name) |
//! | `verify-ca` | always | chain against `sslrootcert` |
//! | `verify-full` | always | chain against `sslrootcert`, and the host name or IP |
//!
//! `require` without `sslrootcert` encrypts without authenticating the server, as libpq
//! does: it protects against eavesdropping, not against an active impostor. `verify-ca` and
//! `verify-full` need `sslrootcert=PATH` (a PEM file of the CA certificates to trust).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use stowage_core::{Error, Result};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `sslmode`: when to encrypt and what to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(v: &str) -> Result<Self> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(Error::invalid(format!(
                    "postgres:// sslmode must be disable, prefer, require, verify-ca or \
                     verify-full, not {v:?}"
                )))
            }
        })
    }

    /// What tokio-postgres is told: whether TLS is attempted, and whether it must be.
    pub(crate) fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            _ => Driver::Require,
        }
    }
}

/// The TLS connector for a store's connections: its pool and its listening connection.
pub(crate) fn connector(mode: SslMode, root_cert: Option<&PathBuf>) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match (mode, root_cert) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(Error::invalid(
                "postgres:// sslmode=verify-ca and verify-full need sslrootcert=PATH, a PEM \
                 file of the certificate authorities to trust",
            ))
        }
        (SslMode::Disable, _) | (_, None) => None,
        (_, Some(path)) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::invalid(format!(
                    "postgres:// sslrootcert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::invalid(format!(
                        "postgres:// sslrootcert {} is not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::invalid(format!("postgres:// sslrootcert {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::invalid(format!(
                    "postgres:// sslrootcert {} holds no certificate",
                    path.display()
                )));
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::invalid(format!("postgres:// sslrootcert: {e}")))?;
            Some(verifier)
        }
    };
    let verifier = Arc::new(Verifier {
        chain,
        check_name: mode == SslMode::VerifyFull,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("postgres TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Checks a server's certificate as the `sslmode` says (see the module docs). The handshake
/// signatures are always checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    /// The trusted roots' verifier; `None`: the chain is not checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must name the host (`verify-full`).
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
