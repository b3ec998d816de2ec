//! TLS listeners (RFC 3261 26.2.1, `sips:` of RFC 5630): the certificate a listener presents,
//! read from its PEM files at bind and on every reload, and the server handshake with its
//! deadline. Once the handshake is done the connection is served by `tcp.rs` like any TCP
//! connection (framing, timeouts, caps, holds).
//!
//! Not owned here: client certificates (none are asked for; phones authenticate with digest) and
//! outbound TLS (callgate opens no TLS connection of its own: requests to a phone go back over
//! the connection it registered on).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::model::TlsFiles;

/// The server configuration a TLS listener hands each new handshake. Swapped by a reload:
/// handshakes from then on present the new certificate, established connections keep theirs.
pub(super) type Certificates = Arc<ArcSwap<ServerConfig>>;

/// Why a listener's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no PEM section of the kind wanted, or a malformed one.
    #[error("{path}: no usable PEM {kind}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        kind: &'static str,
        /// What the PEM parser said.
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (a key that is not the certificate's, an unsupported key type).
    #[error("{certificate} with {private_key}: {source}")]
    Refused {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        private_key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Reads `files` into a server configuration (TLS 1.2 and 1.3, ring's cipher suites, no client
/// certificates).
pub(super) fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, CertificateError> {
    let pem = read(&files.certificate)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|c| {
            if c.is_empty() {
                Err(rustls_pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(c)
            }
        })
        .map_err(|source| CertificateError::Pem {
            path: files.certificate.clone(),
            kind: "certificate",
            source,
        })?;
    let key_pem = read(&files.private_key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| CertificateError::Pem {
        path: files.private_key.clone(),
        kind: "private key",
        source,
    })?;
    let refused = |source| CertificateError::Refused {
        certificate: files.certificate.clone(),
        private_key: files.private_key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        // Checks that the key is the leaf certificate's (a mismatched pair fails here, at
        // load, rather than in every handshake).
        .with_single_cert(chain, key)
        .map_err(refused)?;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).expect("write certificate");
        std::fs::write(&k, key).expect("write key");
        TlsFiles {
            certificate: c,
            private_key: k,
        }
    }

    #[test]
    fn missing_files_and_empty_pem_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let absent = TlsFiles {
            certificate: dir.path().join("none.pem"),
            private_key: dir.path().join("none.key"),
        };
        let e = load(&absent).expect_err("no file");
        assert!(e.to_string().contains("none.pem"), "{e}");
        let empty = files(dir.path(), "", "");
        let e = load(&empty).expect_err("no certificate in it");
        assert!(
            matches!(
                e,
                CertificateError::Pem {
                    kind: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(load(&files(dir.path(), garbage, "")).is_err());
    }
}
