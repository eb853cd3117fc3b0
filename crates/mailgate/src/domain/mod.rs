//! Domain rules, free of I/O: parse input into types that cannot be wrong, decide what things mean.

pub mod bounce;
pub mod connection;
pub mod email;
pub mod incoming;
pub mod mail_server;
pub mod message;
pub mod outgoing;
pub mod smtp_reply;

pub use connection::{ConnectFor, ConnectionStatus, GoogleConnection, TokenBadge};
pub use email::EmailAddress;
pub use mail_server::{
    AuthMethod, FieldErrors, FromPolicy, MailServer, Security, ServerDraft, ValidServer, route,
};
pub use smtp_reply::{Reply, Stage};
