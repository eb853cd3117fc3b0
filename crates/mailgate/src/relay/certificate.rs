//! The relay's TLS certificate: the operator's files, or a self-signed pair made on first start
//! and kept in the data directory, so applications can pin its fingerprint (shown in the UI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::clock::Timestamp;
use crate::config::RelayConfig;

/// A self-signed certificate lives this long, and is made again at start when it has less
/// than [`RENEW_BEFORE`] left.
const SELF_SIGNED_DAYS: i64 = 397;
const RENEW_BEFORE: i64 = 30 * 86_400;

#[derive(Debug, thiserror::Error)]
#[error("relay certificate {path}: {message}")]
pub struct CertificateError {
    pub path: String,
    pub message: String,
}

/// What the UI and the doctor say of the certificate.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// SHA-256 of the leaf certificate, as colon-separated hex.
    pub fingerprint: String,
    pub not_after: Timestamp,
    /// Made by mailgate (no cert_file configured).
    pub self_signed: bool,
    pub path: PathBuf,
}

pub struct RelayCertificate {
    pub server_config: Arc<ServerConfig>,
    pub info: CertificateInfo,
}

/// Where the certificate and key are, and whether mailgate makes them.
fn paths(config: &RelayConfig, data_dir: &Path) -> (PathBuf, PathBuf, bool) {
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => (
            data_dir.join("relay-cert.pem"),
            data_dir.join("relay-key.pem"),
            true,
        ),
    }
}

fn fail(path: &Path, message: String) -> CertificateError {
    CertificateError {
        path: path.display().to_string(),
        message,
    }
}

/// The certificate as it is on disk, changing nothing (for the doctor, which may run beside
/// a serving mailgate).
pub fn inspect(config: &RelayConfig, data_dir: &Path) -> Result<CertificateInfo, CertificateError> {
    let (cert_path, _, self_signed) = paths(config, data_dir);
    let chain = read_chain(&cert_path).map_err(|e| fail(&cert_path, e))?;
    Ok(CertificateInfo {
        fingerprint: fingerprint(&chain[0]),
        not_after: not_after(&chain[0]).map_err(|e| fail(&cert_path, e))?,
        self_signed,
        path: cert_path,
    })
}

impl RelayCertificate {
    /// The configured pair, or the self-signed one in `data_dir` (made when missing or near
    /// its end).
    pub fn load(
        config: &RelayConfig,
        data_dir: &Path,
        now: Timestamp,
    ) -> Result<Self, CertificateError> {
        let (cert_path, key_path, self_signed) = paths(config, data_dir);
        if self_signed {
            let expiring = read_chain(&cert_path)
                .ok()
                .and_then(|chain| not_after(&chain[0]).ok())
                .is_none_or(|end| end - now < RENEW_BEFORE);
            if expiring || !key_path.exists() {
                make_self_signed(&config.hostname, &cert_path, &key_path, now)
                    .map_err(|e| fail(&cert_path, e))?;
            }
        }
        let info = inspect(config, data_dir)?;
        let chain = read_chain(&cert_path).map_err(|e| fail(&cert_path, e))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| fail(&key_path, format!("no private key in it ({e})")))?;
        // The SHA-256 suites first, and the server's order wins: a relay session is mostly its
        // handshake, and SHA-256 has the CPU's instructions where SHA-384 has none.
        use rustls::crypto::ring::cipher_suite as suite;
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ];
        let mut server_config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| fail(&cert_path, e.to_string()))?;
        server_config.ignore_client_order = true;
        Ok(Self {
            server_config: Arc::new(server_config),
            info,
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(chain)
}

fn not_after(cert: &CertificateDer<'_>) -> Result<Timestamp, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    Ok(parsed.validity().not_after.timestamp())
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn make_self_signed(
    hostname: &str,
    cert_path: &Path,
    key_path: &Path,
    now: Timestamp,
) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(vec![hostname.to_string(), "localhost".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("mailgate relay {hostname}"));
    let start =
        time::OffsetDateTime::from_unix_timestamp(now - 86_400).map_err(|e| e.to_string())?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(SELF_SIGNED_DAYS);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    // The key first, private from its first byte; the certificate replaces any older one.
    let _ = std::fs::remove_file(key_path);
    crate::crypto::write_new_private_file(key_path, key.serialize_pem().as_bytes())
        .map_err(|e| e.to_string())?;
    std::fs::write(cert_path, cert.pem()).map_err(|e| e.to_string())
}
