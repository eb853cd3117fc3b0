//! A network between the SMTP client and gsim: every byte arrives `one_way` later, in both
//! directions and in order, as over a real link. gsim answers in microseconds from memory; no
//! real upstream does (Gmail is tens of milliseconds away), and a queue that must reach the disk
//! before each final dot is judged fairly only against a wire that takes time. With a zero
//! delay no proxy is put in between.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where to connect to reach `upstream` `one_way` later.
pub async fn delayed(upstream: SocketAddr, one_way: Duration) -> anyhow::Result<SocketAddr> {
    if one_way.is_zero() {
        return Ok(upstream);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_reads, client_writes) = client.into_split();
                let (server_reads, server_writes) = server.into_split();
                tokio::join!(
                    carry(client_reads, server_writes, one_way),
                    carry(server_reads, client_writes, one_way)
                );
            });
        }
    });
    Ok(address)
}

/// Forwards what `from` sends to `to`, each chunk held until `delay` after it arrived.
async fn carry(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut arriving) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buffer).await {
            if n == 0
                || chunks
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
