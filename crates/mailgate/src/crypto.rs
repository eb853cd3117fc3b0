//! Secrets at rest: the Client Secret and every Google token are sealed with AES-256-GCM under the
//! installation's secret key before they reach the database. Each sealed value is bound to its
//! purpose (the AAD), so a ciphertext copied into another row or column does not open.
//!
//! Nonces are random 96-bit values; at the rate mailgate writes secrets (a token per account per
//! hour) the birthday bound of 2^32 messages per key is never approached.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use crate::config::SecretKeySource;

const VERSION: u8 = 1;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secret key {0}")]
    BadKey(String),
    #[error("cannot create the secret key file {path}: {source}")]
    CreateKey {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "a stored secret does not open with this installation's secret key (was the key replaced?)"
    )]
    Open,
    #[error(
        "the secret key file {0} is missing, but this database holds secrets sealed with a key: restore that file (or set MAILGATE_SECRET_KEY to its contents); mailgate does not make a new key over them"
    )]
    Missing(String),
    #[error(
        "the secret key from {0} is not the key this database was set up with: its secrets do not open. Restore the original key (file or MAILGATE_SECRET_KEY)"
    )]
    WrongKey(String),
}

/// What every database sealed by a key holds, to know the key again at the next start.
pub const KEY_CHECK_PURPOSE: &str = "key check";
const KEY_CHECK_TEXT: &[u8] = b"mailgate";

impl SecretKeySource {
    /// Where the key comes from, for messages: the file, or the environment.
    pub fn describe(&self) -> String {
        match self {
            SecretKeySource::Inline(_) => "MAILGATE_SECRET_KEY".into(),
            SecretKeySource::File(path) => format!("file {}", path.display()),
        }
    }
}

pub struct Sealer {
    key: LessSafeKey,
    /// Signs what mailgate hands out and must recognise later (a browser's sign-in record),
    /// derived from the installation key so it needs no file of its own.
    mac: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The key from `MAILGATE_SECRET_KEY`, or from its file, created (mode 0600) if absent and
    /// `may_create` (the database holds nothing sealed yet).
    pub fn load(source: &SecretKeySource, may_create: bool) -> Result<Self, CryptoError> {
        let encoded = match source {
            SecretKeySource::Inline(secret) => secret.expose_secret().trim().to_string(),
            SecretKeySource::File(path) if !may_create && !path.exists() => {
                return Err(CryptoError::Missing(path.display().to_string()));
            }
            SecretKeySource::File(path) => read_or_create_key_file(path)?,
        };
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| CryptoError::BadKey("is not base64".into()))?;
        Self::from_key(&bytes)
    }

    pub fn from_key(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::BadKey(format!(
                "must be {KEY_LEN} bytes, base64-encoded (it has {})",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::BadKey("was refused by AES-256-GCM".into()))?;
        let mac_key = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"mailgate signing key v1",
        );
        Ok(Self {
            key: LessSafeKey::new(key),
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()),
            rng: SystemRandom::new(),
        })
    }

    /// A tag over `data`, bound to `purpose`, in URL-safe base64.
    pub fn sign(&self, purpose: &str, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.mac, &signed_bytes(purpose, data)))
    }

    /// Whether `tag` is [`Sealer::sign`]'s tag for `data` and `purpose` (constant time).
    pub fn verify(&self, purpose: &str, data: &str, tag: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|tag| hmac::verify(&self.mac, &signed_bytes(purpose, data), &tag).is_ok())
    }

    /// `[version][nonce][ciphertext + tag]`, bound to `purpose`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // SystemRandom only fails when the OS has no randomness at all; sealing without a fresh
        // nonce would be worse than stopping.
        self.rng
            .fill(&mut nonce)
            .expect("the operating system provides randomness");
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut buffer,
            )
            .expect("AES-GCM seals any input under 64 GB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buffer.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        out
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buffer)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }

    /// The sealed value a database keeps to recognise this key.
    pub fn key_check(&self) -> Vec<u8> {
        self.seal(KEY_CHECK_PURPOSE, KEY_CHECK_TEXT)
    }

    /// Whether `sealed` (a database's key check) was sealed by this key.
    pub fn opens_key_check(&self, sealed: &[u8]) -> bool {
        self.open(KEY_CHECK_PURPOSE, sealed)
            .is_ok_and(|text| text == KEY_CHECK_TEXT)
    }

    pub fn seal_secret(&self, purpose: &str, secret: &SecretString) -> Vec<u8> {
        self.seal(purpose, secret.expose_secret().as_bytes())
    }

    pub fn open_secret(&self, purpose: &str, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let bytes = self.open(purpose, sealed)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Open)
    }
}

/// `purpose NUL data`: no purpose's data can pass for another's.
fn signed_bytes(purpose: &str, data: &str) -> Vec<u8> {
    [purpose.as_bytes(), &[0], data.as_bytes()].concat()
}

fn read_or_create_key_file(path: &Path) -> Result<String, CryptoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes(KEY_LEN);
            let encoded = STANDARD.encode(&key);
            write_new_private_file(path, format!("{encoded}\n").as_bytes()).map_err(|source| {
                CryptoError::CreateKey {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok(encoded)
        }
        Err(e) => Err(CryptoError::BadKey(format!(
            "file {} cannot be read: {e}",
            path.display()
        ))),
    }
}

/// Creates a file readable by its owner only; refuses to overwrite one.
pub fn write_new_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system provides randomness");
    bytes
}

/// A random token for URLs and cookies: 32 bytes, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// A webhook's signature: HMAC-SHA256 under the incoming server's webhook secret over
/// `timestamp.body`, hex; the receiver recomputes it and checks the timestamp is recent, so a
/// request can be neither forged nor replayed later.
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    hex(context.sign().as_ref())
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the database keeps of a token it must recognise but never reveal.
pub fn token_hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Equal without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature of RFC 4231's test case 2 (key "Jefe"), with the timestamp and dot in
    /// front, against Python's `hmac.new(b"Jefe", b"1.what do ya want for nothing?", "sha256")`.
    #[test]
    fn webhook_signatures_are_hmac_sha256_over_timestamp_and_body() {
        assert_eq!(
            webhook_signature("Jefe", 1, b"what do ya want for nothing?"),
            "a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        assert_ne!(
            webhook_signature("Jefe", 2, b"what do ya want for nothing?"),
            webhook_signature("Jefe", 1, b"what do ya want for nothing?")
        );
    }

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_key() {
        let sealer = Sealer::from_key(&[7u8; 32]).unwrap();
        let sealed = sealer.seal("a", b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealer.open("a", &sealed).unwrap(), b"secret");
        assert!(sealer.open("b", &sealed).is_err(), "bound to its purpose");
        let other = Sealer::from_key(&[8u8; 32]).unwrap();
        assert!(other.open("a", &sealed).is_err());
        assert_ne!(sealer.seal("a", b"secret"), sealed, "fresh nonce each time");
        assert!(sealer.open("a", &sealed[..5]).is_err());
    }

    #[test]
    fn signatures_hold_only_for_their_data_purpose_and_key() {
        let sealer = Sealer::from_key(&[7u8; 32]).unwrap();
        let tag = sealer.sign("device", "1.1000");
        assert!(sealer.verify("device", "1.1000", &tag));
        assert!(!sealer.verify("device", "2.1000", &tag));
        assert!(!sealer.verify("other", "1.1000", &tag));
        assert!(!sealer.verify("device", "1.1000", "not base64!"));
        let other = Sealer::from_key(&[8u8; 32]).unwrap();
        assert!(!other.verify("device", "1.1000", &tag));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mailgate-key-{}", std::process::id()));
        let path = dir.join("secret.key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = Sealer::load(&SecretKeySource::File(path.clone()), true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal("p", b"x");
        let second = Sealer::load(&SecretKeySource::File(path.clone()), true).unwrap();
        assert_eq!(second.open("p", &sealed).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_inline_keys_say_why() {
        let short = SecretKeySource::Inline(SecretString::from(STANDARD.encode([1u8; 16])));
        assert!(
            Sealer::load(&short, true)
                .unwrap_err()
                .to_string()
                .contains("must be 32 bytes")
        );
    }
}
