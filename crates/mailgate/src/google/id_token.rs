//! id_token verification: RS256 against the keys Google publishes, cached and refetched when an
//! unknown key id appears (Google rotates its keys).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{GoogleClient, GoogleError};
use crate::clock::Timestamp;

#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kid: String,
    n: String,
    e: String,
    #[serde(default)]
    kty: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<Vec<Jwk>>,
}

const ALLOWED_SKEW: i64 = 300;

fn bad(message: impl Into<String>) -> GoogleError {
    GoogleError::IdToken(message.into())
}

fn decode_part(part: &str) -> Result<Vec<u8>, GoogleError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad("a part is not base64url"))
}

pub async fn verify(
    client: &GoogleClient,
    id_token: &str,
    client_id: &str,
    now: Timestamp,
) -> Result<IdClaims, GoogleError> {
    let parts: Vec<&str> = id_token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(bad("not a JWT"));
    };
    let header: Header =
        serde_json::from_slice(&decode_part(header_b64)?).map_err(|_| bad("bad header"))?;
    if header.alg != "RS256" {
        return Err(bad(format!("unexpected algorithm {}", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| bad("no key id"))?;
    let key = key_for(client, &kid).await?;
    let public = RsaPublicKeyComponents {
        n: decode_part(&key.n)?,
        e: decode_part(&key.e)?,
    };
    public
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            format!("{header_b64}.{claims_b64}").as_bytes(),
            &decode_part(signature_b64)?,
        )
        .map_err(|_| bad("the signature does not verify"))?;
    let claims: IdClaims =
        serde_json::from_slice(&decode_part(claims_b64)?).map_err(|_| bad("bad claims"))?;
    if claims.iss != "https://accounts.google.com" && claims.iss != "accounts.google.com" {
        return Err(bad(format!("issued by {}", claims.iss)));
    }
    if claims.aud != client_id {
        return Err(bad("issued to another OAuth client"));
    }
    if claims.exp + ALLOWED_SKEW < now {
        return Err(bad("expired"));
    }
    Ok(claims)
}

async fn key_for(client: &GoogleClient, kid: &str) -> Result<Jwk, GoogleError> {
    let mut keys = client.keys.keys.lock().await;
    if let Some(key) = keys.iter().find(|k| k.kid == kid) {
        return Ok(key.clone());
    }
    let response = client
        .http()
        .get(client.endpoints().certs_url.clone())
        .send()
        .await
        .map_err(|e| GoogleError::Unavailable(format!("fetching Google's keys: {e}")))?;
    let jwks: Jwks = response
        .json()
        .await
        .map_err(|e| GoogleError::Unavailable(format!("reading Google's keys: {e}")))?;
    *keys = jwks
        .keys
        .into_iter()
        .filter(|k| k.kty.is_empty() || k.kty == "RSA")
        .collect();
    keys.iter()
        .find(|k| k.kid == kid)
        .cloned()
        .ok_or_else(|| bad("signed with a key Google does not publish"))
}
