//! A local certificate authority and a server certificate for 127.0.0.1 and localhost, so clients
//! verify gsim's TLS exactly as they verify Google's: by trusting a CA, never by skipping checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names the server certificate covers: loopback, and Google's own hosts so a client configured
/// with the real host names can be pointed at gsim through /etc/hosts.
const SERVER_NAMES: &[&str] = &[
    "localhost",
    "smtp.gmail.com",
    "imap.gmail.com",
    "accounts.google.com",
    "oauth2.googleapis.com",
];

pub struct Tls {
    pub ca_cert_path: PathBuf,
    pub server_config: Arc<ServerConfig>,
}

/// Loads the CA from `state_dir` when an earlier run left one (so trust survives restarts), otherwise
/// makes one; then issues a fresh server certificate.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<Tls> {
    let ca_cert_path = state_dir.join("ca.pem");
    let ca_key_path = state_dir.join("ca-key.pem");
    let ca_params = ca_params()?;
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if ca_cert_path.exists() => KeyPair::from_pem(&pem)?,
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            std::fs::write(&ca_cert_path, cert.pem())?;
            key
        }
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(
        SERVER_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "gsim");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer)?;

    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Tls {
        ca_cert_path,
        server_config: Arc::new(server_config),
    })
}

/// The CA's parameters are fixed, so a CA key read back from disk signs with the same issuer name.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "gsim local CA (tests only)");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    Ok(params)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
