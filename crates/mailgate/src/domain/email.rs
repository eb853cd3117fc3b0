//! An email address that has been checked once, at the edge.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` {why}")]
pub struct NotAnEmail {
    pub input: String,
    pub why: &'static str,
}

impl EmailAddress {
    /// Accepts `local@domain.tld` (RFC 5321 mailbox shape, no display name, no comments). Stored
    /// lowercase: Gmail addresses are case-insensitive and comparisons must not miss. A domain in
    /// Unicode is stored in its ASCII (punycode) form, which every server takes; a local part in
    /// Unicode needs SMTPUTF8 on the whole path, which mailgate does not offer, so it is refused
    /// here rather than failing at delivery.
    pub fn parse(input: &str) -> Result<Self, NotAnEmail> {
        let text = input.trim();
        let fail = || NotAnEmail {
            input: text.to_string(),
            why: "is not an email address",
        };
        if text.len() > 254 || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(fail());
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(fail)?;
        if !local.is_ascii() {
            return Err(NotAnEmail {
                input: text.to_string(),
                why: "has non-ASCII characters before the @, which need SMTPUTF8; mailgate sends ASCII addresses only",
            });
        }
        let domain = ascii_domain(domain).ok_or_else(fail)?;
        if local.is_empty()
            || local.len() > 64
            || local.contains(['@', '<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']'])
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(fail());
        }
        if !is_domain(&domain) {
            return Err(fail());
        }
        Ok(Self(format!("{local}@{domain}").to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

/// The domain in ASCII: as given, or a Unicode (IDN) name in its punycode form.
fn ascii_domain(domain: &str) -> Option<String> {
    if domain.is_ascii() {
        return Some(domain.to_string());
    }
    match url::Host::parse(domain).ok()? {
        url::Host::Domain(ascii) => Some(ascii),
        _ => None,
    }
}

/// `example.com`: labels of letters, digits and hyphens, at least two of them.
pub fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_mailboxes_and_refuses_the_rest() {
        assert_eq!(
            EmailAddress::parse(" Alice@Gmail.com ").unwrap().as_str(),
            "alice@gmail.com"
        );
        assert_eq!(
            EmailAddress::parse("a.b+tag@mail.example.co.uk")
                .unwrap()
                .domain(),
            "mail.example.co.uk"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@gmail.com",
            "a b@x.com",
            "a@localhost",
            "a@-x.com",
            "a..b@x.com",
            "Alice <a@x.com>",
            "a@x.com\r\nBcc: b@y.com",
            "a@x.com\0",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        let unicode = EmailAddress::parse("jörg@example.com").unwrap_err();
        assert!(unicode.to_string().contains("SMTPUTF8"), "{unicode}");
        assert_eq!(
            EmailAddress::parse("info@Bücher.example").unwrap().as_str(),
            "info@xn--bcher-kva.example"
        );
    }
}
