//! Where in a session something went wrong, and what.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Reply;

/// Where in an SMTP exchange something happened. `Token`, `Connect` and `Tls` happen before the
/// session has bytes to speak: the caller reports them with the same vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Token,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    DataEnd,
    Quit,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Token => "getting an access token from Google",
            Stage::Connect => "connecting",
            Stage::Tls => "the TLS handshake",
            Stage::Greeting => "the server greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH XOAUTH2",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "the end of the message",
            Stage::Quit => "QUIT",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Reported by the caller that dials: the session never started.
    #[error("could not connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    /// Reported by the caller that performs the handshake.
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("the server did not offer STARTTLS")]
    NoStartTls,
    #[error("no answer within {secs} s at {stage}")]
    Timeout { stage: Stage, secs: u64 },
    #[error("the server closed the connection at {0}")]
    Closed(Stage),
    #[error("the server refused {stage}: {}", reply.text())]
    Refused {
        stage: Stage,
        reply: Reply,
        /// The decoded SASL challenge (Google's JSON), when the refusal came after one.
        challenge: Option<String>,
    },
    #[error("the server's answer at {stage} makes no sense: {detail}")]
    Protocol { stage: Stage, detail: String },
    /// A command argument that cannot be sent (a line break would end the command early):
    /// nothing was written.
    #[error("nothing sent at {stage}: {what}")]
    BadArgument { stage: Stage, what: &'static str },
}

impl Error {
    pub fn stage(&self) -> Stage {
        match self {
            Error::Connect { .. } => Stage::Connect,
            Error::Tls { .. } => Stage::Tls,
            Error::NoStartTls => Stage::StartTls,
            Error::Timeout { stage, .. }
            | Error::Closed(stage)
            | Error::Refused { stage, .. }
            | Error::Protocol { stage, .. }
            | Error::BadArgument { stage, .. } => *stage,
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Error::Refused { reply, .. } => Some(reply),
            _ => None,
        }
    }

    pub(crate) fn refused(stage: Stage, reply: Reply) -> Self {
        Error::Refused {
            stage,
            reply,
            challenge: None,
        }
    }
}
