//! SASL XOAUTH2 and OAUTHBEARER as Gmail's SMTP and IMAP servers read them (google.md §2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What Gmail sends as the XOAUTH2 failure challenge today:
/// `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`.
pub const XOAUTH2_FAILURE_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

/// The OAUTHBEARER failure challenge (RFC 7628 §3.2.2 fields).
pub fn oauthbearer_failure_challenge() -> String {
    STANDARD.encode(
        r#"{"status":"invalid_token","scope":"https://mail.google.com/","openid-configuration":"https://accounts.google.com/.well-known/openid-configuration"}"#,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub user: String,
    pub token: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not valid base64 at all.
    Base64,
    /// Base64 of something that is not the mechanism's message.
    Malformed,
}

pub fn decode(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    let text = text.trim_ascii();
    if text == b"=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(text).map_err(|_| SaslError::Base64)
}

/// `user=<email>^Aauth=Bearer <token>^A^A`
pub fn parse_xoauth2(message: &[u8]) -> Result<Bearer, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed)?;
    let mut parts = text.split('\x01');
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix("user="))
        .ok_or(SaslError::Malformed)?;
    let auth = parts
        .next()
        .and_then(|p| p.strip_prefix("auth="))
        .ok_or(SaslError::Malformed)?;
    let token = bearer_token(auth).ok_or(SaslError::Malformed)?;
    if parts.next() != Some("") || parts.next() != Some("") || parts.next().is_some() {
        return Err(SaslError::Malformed);
    }
    Ok(Bearer {
        user: user.to_string(),
        token: token.to_string(),
    })
}

/// RFC 7628: `n,a=<user>,^Ahost=...^Aport=...^Aauth=Bearer <token>^A^A`
pub fn parse_oauthbearer(message: &[u8]) -> Result<Bearer, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed)?;
    let mut parts = text.split('\x01');
    let gs2 = parts.next().ok_or(SaslError::Malformed)?;
    let mut gs2_fields = gs2.split(',');
    if !matches!(gs2_fields.next(), Some("n") | Some("y")) {
        return Err(SaslError::Malformed);
    }
    let user = gs2_fields
        .next()
        .and_then(|f| f.strip_prefix("a="))
        .map(|u| u.replace("=2C", ",").replace("=3D", "="))
        .ok_or(SaslError::Malformed)?;
    let mut token = None;
    for kv in parts.by_ref() {
        if kv.is_empty() {
            break;
        }
        if let Some(auth) = kv.strip_prefix("auth=") {
            token = bearer_token(auth);
        }
    }
    Ok(Bearer {
        user,
        token: token.ok_or(SaslError::Malformed)?.to_string(),
    })
}

fn bearer_token(auth: &str) -> Option<&str> {
    let (scheme, token) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_documented_example_parses() {
        let b64 = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
        let bearer = parse_xoauth2(&decode(b64.as_bytes()).unwrap()).unwrap();
        assert_eq!(bearer.user, "someuser@example.com");
        assert_eq!(
            bearer.token,
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        );
    }

    #[test]
    fn failure_challenge_is_googles_json() {
        let json = decode(XOAUTH2_FAILURE_CHALLENGE.as_bytes()).unwrap();
        assert_eq!(
            json,
            br#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
        );
    }

    #[test]
    fn oauthbearer_parses_rfc7628_shape() {
        let msg = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01";
        let bearer = parse_oauthbearer(msg).unwrap();
        assert_eq!(bearer.user, "user@example.com");
        assert_eq!(bearer.token, "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==");
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(decode(b"!!!"), Err(SaslError::Base64));
        assert_eq!(parse_xoauth2(b"user=a"), Err(SaslError::Malformed));
        assert_eq!(
            parse_xoauth2(b"user=a\x01auth=Basic x\x01\x01"),
            Err(SaslError::Malformed)
        );
        assert_eq!(parse_oauthbearer(b"garbage"), Err(SaslError::Malformed));
        assert_eq!(parse_xoauth2(&[0xff, 0xfe]), Err(SaslError::Malformed));
    }
}
