//! id_tokens signed RS256 as Google signs them, with the public key published as a JWKS.
//!
//! The key is fixed and committed (`sim_id_token_key.pem`): it signs only simulated tokens, and a
//! fixed key keeps tokens verifiable across gsim restarts. ring can sign with RSA but not make keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

const KEY_PEM: &[u8] = include_bytes!("sim_id_token_key.pem");

pub struct IdTokenSigner {
    key: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl IdTokenSigner {
    pub fn new() -> anyhow::Result<Self> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(KEY_PEM)
            .map_err(|e| anyhow::anyhow!("id_token key: {e}"))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| anyhow::anyhow!("id_token key: {e}"))?;
        let modulus = RsaPublicKeyComponents::<Vec<u8>>::from(key.public()).n;
        let digest = ring::digest::digest(&ring::digest::SHA256, &modulus);
        let kid = digest.as_ref()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            key,
            kid,
            rng: SystemRandom::new(),
        })
    }

    pub fn jwks(&self) -> Value {
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(self.key.public());
        json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(&components.n),
                "e": URL_SAFE_NO_PAD.encode(&components.e),
            }]
        })
    }

    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// OIDC's `at_hash`: the left half of the access token's SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}
