//! gsim's black-box tests: real TCP and TLS, real HTTP, and Python's own mail clients.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod control;
mod imap;
mod oauth;
mod process;
mod python;
mod smtp;
mod support;
mod token_lifetime;
