//! mailgate's black-box tests: the real service on port 0, a real database (SQLite, and
//! PostgreSQL where noted), gsim over real TCP and TLS.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod admin_access;
mod api;
mod at_most_once;
mod cli;
mod connect_gmail;
mod crash;
mod database;
mod delivery;
mod doctor;
mod emails;
mod incoming;
mod instances;
mod logs;
mod relay;
mod servers;
mod settings;
mod shared_queue;
mod sign_in_flood;
mod slow_clients;
mod support;
mod test_connection;
mod webhook_sink;
