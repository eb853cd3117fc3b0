//! The one TLS client configuration mailgate uses, for Google's HTTPS endpoints and for SMTP/IMAP:
//! the Mozilla roots plus, when configured, an extra CA (how tests trust gsim). Certificates are
//! always verified; there is no switch to turn that off. And the dial and handshake the SMTP and
//! IMAP adapters share, each bounded in time.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("extra CA file {path}: {message}")]
    ExtraCa { path: String, message: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    // One provider for the whole process: anything that asks rustls for the default (a library
    // building its own client) gets ring too, instead of a panic. Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let fail = |message: String| TlsError::ExtraCa {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| fail(e.to_string()))?;
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(fail("no PEM certificate in it".into()));
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a connection could not be made, in words the adapters put in their own errors.
#[derive(Debug)]
pub enum DialError {
    /// TCP: the target, what happened.
    Connect(String, String),
    /// The TLS handshake: the host, what happened.
    Tls(String, String),
}

/// TCP to `host:port`, within `limit`, with Nagle off (pipelined commands go in one write).
pub async fn dial(
    host: &str,
    port: u16,
    limit: std::time::Duration,
) -> Result<tokio::net::TcpStream, DialError> {
    let target = format!("{host}:{port}");
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| {
            DialError::Connect(
                target.clone(),
                format!("no answer within {} s", limit.as_secs()),
            )
        })?
        .map_err(|e| DialError::Connect(target.clone(), e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The client handshake on `tcp`, the certificate verified for `host`, within `limit`.
pub async fn handshake(
    tls: &tokio_rustls::TlsConnector,
    host: &str,
    tcp: tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, DialError> {
    let fail = |detail: String| DialError::Tls(host.to_string(), detail);
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| fail(format!("`{host}` is not a valid TLS server name")))?;
    tokio::time::timeout(limit, tls.connect(name, tcp))
        .await
        .map_err(|_| fail("the handshake did not finish in time".into()))?
        .map_err(|e| fail(e.to_string()))
}
