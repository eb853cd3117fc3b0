//! A network between the SMTP client and gsim: every byte arrives `one_way` later, in both
//! directions and in order, as over a real link. gsim answers in microseconds from memory; no
//! real upstream does (Gmail is tens of milliseconds away), and a queue that must reach the disk
//! before each final dot is judged fairly only against a wire that takes time. With a zero
//! delay no proxy is put in between.
//!
//! Each direction of each connection is carried by two OS threads (a reader stamping chunks, a
//! writer sleeping until each is due): tokio's timer counts whole milliseconds, and the delays
//! worth measuring are shorter.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where to connect to reach `upstream` `one_way` later.
pub fn delayed(upstream: SocketAddr, one_way: Duration) -> anyhow::Result<SocketAddr> {
    if one_way.is_zero() {
        return Ok(upstream);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            for (from, to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ] {
                if let (Ok(from), Ok(to)) = (from, to) {
                    carry(from, to, one_way);
                }
            }
        }
    });
    Ok(address)
}

/// Forwards what `from` sends to `to`, each chunk held until `delay` after it arrived.
// A delay line on its own OS thread, not a test waiting for an event: sleeping is its job.
#[allow(clippy::disallowed_methods)]
fn carry(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let _ = from.set_nodelay(true);
    let _ = to.set_nodelay(true);
    let (chunks, arriving) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0
                || chunks
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in arriving {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
