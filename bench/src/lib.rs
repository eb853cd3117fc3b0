//! What the benchmarks share: a fresh installation and its `mailgate serve` process
//! (`install`), the bare XOAUTH2 client they are measured against (`direct`), and a wire with
//! latency in front of gsim (`wire`). The benchmarks are the binaries: `queue_bench.rs`
//! (the queue's ingest and drain) and `relay_bench.rs` (the SMTP relay against
//! email-oauth2-proxy).

pub mod direct;
pub mod install;
pub mod wire;
