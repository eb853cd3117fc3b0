//! SMTP as a protocol, apart from where the bytes go: the reply codec ([`reply`]), the command
//! codec ([`command`]), SASL initial responses ([`sasl`]), dot-stuffing ([`dot`]), a client
//! session ([`client`]) and a server session ([`server`]), both generic over any
//! `AsyncRead + AsyncWrite + Unpin` stream.
//!
//! Nothing here opens a socket, reads a clock or knows Google: the caller dials TCP, performs the
//! TLS handshakes (the STARTTLS upgrade is handed to it), and decides what a reply means for its
//! queue. That is what lets every dialogue be tested as scripted bytes over an in-memory stream.
//!
//! smtp-proto (Stalwart's parser) was weighed for the reply codec: its response parser folds the
//! enhanced status code out of each line and joins the text, and mailgate shows Google's replies
//! exactly as sent, line by line. It parses the server side's requests.

pub mod client;
pub mod command;
pub mod dot;
mod error;
pub mod reply;
pub mod sasl;
pub mod server;

pub use client::ClientSession;
pub use command::Command;
pub use error::{Error, Stage};
pub use reply::Reply;
pub use sasl::Credentials;
