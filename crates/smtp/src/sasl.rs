//! SASL for SMTP AUTH (RFC 4954): the initial responses of XOAUTH2 (Google's), OAUTHBEARER
//! (RFC 7628), PLAIN (RFC 4616) and LOGIN, and the decoding of a server's `334` challenge.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// Who logs in, and with what. Tokens and passwords stay secret until the line is written.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    XOAuth2 {
        user: &'a str,
        token: &'a SecretString,
    },
    OAuthBearer {
        user: &'a str,
        host: &'a str,
        port: u16,
        token: &'a SecretString,
    },
    Plain {
        user: &'a str,
        password: &'a SecretString,
    },
    Login {
        user: &'a str,
        password: &'a SecretString,
    },
}

impl Credentials<'_> {
    pub fn mechanism(&self) -> &'static str {
        match self {
            Credentials::XOAuth2 { .. } => "XOAUTH2",
            Credentials::OAuthBearer { .. } => "OAUTHBEARER",
            Credentials::Plain { .. } => "PLAIN",
            Credentials::Login { .. } => "LOGIN",
        }
    }

    /// The base64 response sent with `AUTH`; LOGIN has none, it answers prompts.
    pub fn initial_response(&self) -> Option<SecretString> {
        let raw = match self {
            Credentials::XOAuth2 { user, token } => {
                format!(
                    "user={user}\x01auth=Bearer {}\x01\x01",
                    token.expose_secret()
                )
            }
            Credentials::OAuthBearer {
                user,
                host,
                port,
                token,
            } => format!(
                "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
                token.expose_secret()
            ),
            Credentials::Plain { user, password } => {
                format!("\0{user}\0{}", password.expose_secret())
            }
            Credentials::Login { .. } => return None,
        };
        Some(SecretString::from(STANDARD.encode(raw)))
    }

    /// What the client says to a `334` after its initial response: for the OAuth mechanisms the
    /// challenge is an error report, and SASL wants the exchange closed (XOAUTH2: an empty line;
    /// OAUTHBEARER: a single 0x01, RFC 7628 §3.2.3) so the server sends its final refusal.
    pub(crate) fn error_acknowledgement(&self) -> Option<&'static str> {
        match self {
            Credentials::XOAuth2 { .. } => Some(""),
            Credentials::OAuthBearer { .. } => Some("AQ=="),
            Credentials::Plain { .. } | Credentials::Login { .. } => None,
        }
    }

    /// LOGIN's answers, in the order the server prompts: username, then password.
    pub(crate) fn login_answers(&self) -> Option<[SecretString; 2]> {
        match self {
            Credentials::Login { user, password } => Some([
                SecretString::from(STANDARD.encode(user)),
                SecretString::from(STANDARD.encode(password.expose_secret())),
            ]),
            _ => None,
        }
    }
}

/// The text of a `334` challenge (Google's JSON error report), when it is base64.
pub fn decode_challenge(text: &str) -> Option<String> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn googles_documented_xoauth2_example() {
        let token = SecretString::from("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        let credentials = Credentials::XOAuth2 {
            user: "someuser@example.com",
            token: &token,
        };
        assert_eq!(
            credentials
                .initial_response()
                .map(|r| r.expose_secret().to_string())
                .as_deref(),
            Some(
                "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
            )
        );
    }

    #[test]
    fn googles_challenge_decodes_to_its_json() {
        assert_eq!(
            decode_challenge("eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==").as_deref(),
            Some(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#)
        );
        assert_eq!(decode_challenge("not base64!"), None);
    }
}
