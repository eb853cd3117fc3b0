//! The command codec, client side: each command as the line that goes on the wire. An argument
//! that would end the line early (CR, LF) or close the path (`>`) is refused before anything is
//! written, so a crafted address can never smuggle a second command into the session.

use crate::{Error, Stage};

/// One SMTP command a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    StartTls,
    /// `AUTH <mechanism> [initial response]` (RFC 4954); the response is already base64.
    Auth {
        mechanism: &'a str,
        initial: Option<&'a str>,
    },
    Mail(&'a str),
    Rcpt(&'a str),
    Data,
    Rset,
    Noop,
    Quit,
}

impl Command<'_> {
    /// The stage a refusal of this command is reported at.
    pub fn stage(&self) -> Stage {
        match self {
            Command::Ehlo(_) => Stage::Ehlo,
            Command::StartTls => Stage::StartTls,
            Command::Auth { .. } => Stage::Auth,
            Command::Mail(_) | Command::Rset | Command::Noop => Stage::MailFrom,
            Command::Rcpt(_) => Stage::RcptTo,
            Command::Data => Stage::Data,
            Command::Quit => Stage::Quit,
        }
    }

    /// Appends the command line, CRLF included, to `out`; on a refused argument `out` is left
    /// as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let stage = self.stage();
        let check = |value: &str, what: &'static str, path: bool| {
            let breaks = |b: u8| b == b'\r' || b == b'\n' || (path && (b == b'<' || b == b'>'));
            if value.bytes().any(breaks) {
                Err(Error::BadArgument { stage, what })
            } else {
                Ok(())
            }
        };
        match self {
            Command::Ehlo(name) => {
                check(name, "the EHLO name holds a line break", false)?;
                push(out, &["EHLO ", name]);
            }
            Command::StartTls => push(out, &["STARTTLS"]),
            Command::Auth { mechanism, initial } => {
                check(mechanism, "the SASL mechanism holds a line break", false)?;
                match initial {
                    Some(initial) => {
                        check(initial, "the SASL response holds a line break", false)?;
                        push(out, &["AUTH ", mechanism, " ", initial]);
                    }
                    None => push(out, &["AUTH ", mechanism]),
                }
            }
            Command::Mail(from) => {
                check(
                    from,
                    "the sender address holds a line break or an angle bracket",
                    true,
                )?;
                push(out, &["MAIL FROM:<", from, ">"]);
            }
            Command::Rcpt(to) => {
                check(
                    to,
                    "a recipient address holds a line break or an angle bracket",
                    true,
                )?;
                push(out, &["RCPT TO:<", to, ">"]);
            }
            Command::Data => push(out, &["DATA"]),
            Command::Rset => push(out, &["RSET"]),
            Command::Noop => push(out, &["NOOP"]),
            Command::Quit => push(out, &["QUIT"]),
        }
        Ok(())
    }
}

fn push(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(command: Command<'_>) -> Result<String, Error> {
        let mut out = Vec::new();
        command.encode(&mut out)?;
        Ok(String::from_utf8(out).expect("ASCII"))
    }

    #[test]
    fn commands_are_lines() {
        assert_eq!(
            line(Command::Ehlo("mailgate.localhost")).ok().as_deref(),
            Some("EHLO mailgate.localhost\r\n")
        );
        assert_eq!(
            line(Command::Mail("")).ok().as_deref(),
            Some("MAIL FROM:<>\r\n")
        );
        assert_eq!(
            line(Command::Rcpt("bob@example.com")).ok().as_deref(),
            Some("RCPT TO:<bob@example.com>\r\n")
        );
        assert_eq!(
            line(Command::Auth {
                mechanism: "XOAUTH2",
                initial: Some("dXNlcj0=")
            })
            .ok()
            .as_deref(),
            Some("AUTH XOAUTH2 dXNlcj0=\r\n")
        );
        assert_eq!(
            line(Command::Auth {
                mechanism: "LOGIN",
                initial: None
            })
            .ok()
            .as_deref(),
            Some("AUTH LOGIN\r\n")
        );
        assert_eq!(line(Command::Quit).ok().as_deref(), Some("QUIT\r\n"));
    }

    #[test]
    fn an_argument_that_breaks_the_line_is_refused_and_nothing_is_written() {
        for (command, stage) in [
            (
                Command::Mail("a@b.c>\r\nRCPT TO:<victim@x.y"),
                Stage::MailFrom,
            ),
            (Command::Rcpt("bob@example.com\nDATA"), Stage::RcptTo),
            (Command::Rcpt("bob@example.com> SIZE=1"), Stage::RcptTo),
            (Command::Ehlo("host\r\nQUIT"), Stage::Ehlo),
        ] {
            let mut out = b"kept".to_vec();
            let error = command.encode(&mut out).expect_err("refused");
            assert_eq!(error.stage(), stage);
            assert_eq!(out, b"kept");
        }
    }
}
