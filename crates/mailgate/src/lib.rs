//! mailgate: send and receive mail through Gmail and Google Workspace with Google OAuth.
//!
//! Edges (`web`, `cli`, `relay`: SMTP for applications) call use cases (`app`), which decide with domain rules (`domain`) and reach
//! the world through adapters: `store` (SQLite/PostgreSQL), `google` (OAuth), `smtp_out` (Gmail
//! SMTP), with `crypto` sealing secrets and `tls` verifying every certificate.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod google;
pub mod imap_in;
pub mod metrics;
pub mod relay;
pub mod smtp_out;
pub mod startup;
pub mod store;
pub mod tls;
pub mod web;
