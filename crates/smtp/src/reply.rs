//! The reply codec: `250-first line` … `250 last line` into a [`Reply`], from bytes that may
//! arrive in any split, with limits so a server that floods lines cannot exhaust memory.

use serde::{Deserialize, Serialize};

/// A reply line longer than this (RFC 5321 allows 512 octets) is refused.
pub const MAX_LINE: usize = 4096;
/// More continuation lines than this is a server flooding, not an EHLO list.
pub const MAX_LINES: usize = 64;

/// One SMTP reply: the code, the lines' text (code and separator removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, lines: &[&str]) -> Self {
        Reply {
            code,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    /// `5.7.8` from `535 5.7.8 ...`, when the server uses enhanced status codes.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let mut parts = first.split('.');
        let well_formed = (0..3).all(|_| {
            parts
                .next()
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }) && parts.next().is_none();
        well_formed.then_some(first)
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as the server sent it, lines joined with newlines.
    /// The reply as a server writes it: `code-text` on every line but the last, `code text` on
    /// the last, CRLF after each.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
        for (i, line) in self.lines.iter().enumerate() {
            let separator = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{separator}{line}\r\n", self.code).as_bytes());
        }
    }

    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{} {l}", self.code))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("not an SMTP reply: {0:?}")]
    NotAReply(String),
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("a reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a reply of more than {MAX_LINES} lines")]
    TooManyLines,
}

/// Takes one complete reply off the front of `buffer`, or `None` when more bytes are needed.
/// Bytes after the reply stay in the buffer (pipelined replies). Text that is not UTF-8 is kept
/// with replacement characters: a reply is for people to read.
pub fn parse(buffer: &mut Vec<u8>) -> Result<Option<Reply>, ReplyError> {
    let mut lines = Vec::new();
    let mut offset = 0;
    let mut code = 0u16;
    loop {
        let rest = &buffer[offset..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return if rest.len() > MAX_LINE {
                Err(ReplyError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        if end > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let raw = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        let line = String::from_utf8_lossy(raw).into_owned();
        offset += end + 1;
        let this_code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| ReplyError::NotAReply(line.clone()))?;
        if !lines.is_empty() && this_code != code {
            return Err(ReplyError::Malformed(line));
        }
        code = this_code;
        let separator = raw.get(3).copied().unwrap_or(b' ');
        lines.push(line.get(4..).unwrap_or_default().to_string());
        match separator {
            b' ' => {
                buffer.drain(..offset);
                return Ok(Some(Reply { code, lines }));
            }
            b'-' if lines.len() < MAX_LINES => {}
            b'-' => return Err(ReplyError::TooManyLines),
            _ => return Err(ReplyError::Malformed(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> (Vec<Reply>, Vec<u8>) {
        let mut buffer = bytes.to_vec();
        let mut replies = Vec::new();
        while let Some(reply) = parse(&mut buffer).expect("valid replies") {
            replies.push(reply);
        }
        (replies, buffer)
    }

    #[test]
    fn a_multiline_reply_keeps_each_line_and_pipelined_replies_stay_apart() {
        let (replies, rest) = parse_all(
            b"535-5.7.8 Username and Password not accepted. Learn more at\r\n\
              535 5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp\r\n\
              250 2.1.0 OK\r\n354 Go",
        );
        assert_eq!(
            replies,
            [
                Reply::new(
                    535,
                    &[
                        "5.7.8 Username and Password not accepted. Learn more at",
                        "5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp"
                    ]
                ),
                Reply::new(250, &["2.1.0 OK"])
            ]
        );
        assert_eq!(rest, b"354 Go", "an incomplete reply waits for more bytes");
        assert_eq!(replies[0].enhanced(), Some("5.7.8"));
        assert_eq!(
            replies[0].text(),
            "535 5.7.8 Username and Password not accepted. Learn more at\n\
             535 5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp"
        );
    }

    #[test]
    fn bare_codes_bare_line_feeds_and_eight_bit_text_are_read() {
        let (replies, rest) = parse_all(b"250\n220 caf\xc3\xa9 \xff ready\r\n");
        assert!(rest.is_empty());
        assert_eq!(replies[0], Reply::new(250, &[""]));
        assert_eq!(replies[1].lines, ["café \u{fffd} ready"]);
        assert_eq!(replies[0].enhanced(), None);
        assert_eq!(Reply::new(250, &["2.1.0x OK"]).enhanced(), None);
        assert_eq!(Reply::new(250, &["2.1.0.1 OK"]).enhanced(), None);
    }

    #[test]
    fn what_is_not_a_reply_is_named() {
        for (bytes, expected) in [
            (&b"HTTP/1.1 400 Bad Request\r\n"[..], "not an SMTP reply"),
            (b"199 too low\r\n", "not an SMTP reply"),
            (b"250-one\r\n251 two\r\n", "malformed"),
            (b"250+odd\r\n", "malformed"),
        ] {
            let mut buffer = bytes.to_vec();
            let error = parse(&mut buffer).expect_err("refused").to_string();
            assert!(error.contains(expected), "{bytes:?}: {error}");
        }
    }

    #[test]
    fn floods_are_cut_off() {
        let mut long = vec![b'2', b'5', b'0', b' '];
        long.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(parse(&mut long.clone()), Err(ReplyError::LineTooLong));
        long.extend(b"\r\n");
        assert_eq!(parse(&mut long), Err(ReplyError::LineTooLong));
        let mut many = b"250-x\r\n".repeat(MAX_LINES + 1);
        many.extend(b"250 end\r\n");
        assert_eq!(parse(&mut many), Err(ReplyError::TooManyLines));
    }
}
