//! Scripted dialogues over an in-memory duplex stream: the script plays one side of an SMTP
//! session byte for byte (what it says, what it must hear), the code under test the other.
//! Shared by the client's dialogues (the script is Gmail) and the server's (the script is the
//! application submitting mail).

#![allow(dead_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// One turn of a dialogue.
pub enum Step {
    /// The script's side writes these bytes.
    Says(Vec<u8>),
    /// The side under test must write exactly these bytes next.
    Hears(Vec<u8>),
    /// The script's side closes, as Gmail does after a 421.
    HangsUp,
}

pub fn says(text: &str) -> Step {
    Step::Says(text.as_bytes().to_vec())
}

pub fn hears(text: &str) -> Step {
    Step::Hears(text.as_bytes().to_vec())
}

pub async fn play(peer: &mut DuplexStream, script: Vec<Step>) {
    for (turn, step) in script.into_iter().enumerate() {
        match step {
            Step::Says(bytes) => peer.write_all(&bytes).await.expect("the other side reads"),
            Step::HangsUp => peer.shutdown().await.expect("closed"),
            Step::Hears(expected) => {
                let mut got = vec![0; expected.len()];
                if let Err(e) = peer.read_exact(&mut got).await {
                    panic!(
                        "turn {turn}: waited for {:?}, the other side hung up: {e}",
                        String::from_utf8_lossy(&expected)
                    );
                }
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected),
                    "turn {turn}"
                );
            }
        }
    }
}

/// Plays `script`, then checks the side under test sent nothing more before hanging up.
async fn serve(mut server: DuplexStream, script: Vec<Step>) {
    play(&mut server, script).await;
    let mut rest = Vec::new();
    let _ = server.read_to_end(&mut rest).await;
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "",
        "the side under test said more than the script"
    );
}

/// Runs `client` (the side under test) against the script; its stream closes when it ends.
pub async fn dialogue<S, F, Fut, T>(script: Vec<Step>, wrap: fn(DuplexStream) -> S, client: F) -> T
where
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = T>,
{
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (result, ()) = tokio::join!(client(wrap(near)), serve(far, script));
    result
}

pub fn plain(stream: DuplexStream) -> DuplexStream {
    stream
}

/// A stream that hands the client one byte per read, so every reply arrives split at every point.
pub struct OneByteAtATime(DuplexStream);

pub fn one_byte(stream: DuplexStream) -> OneByteAtATime {
    OneByteAtATime(stream)
}

impl AsyncRead for OneByteAtATime {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut one = ReadBuf::new(&mut byte);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut one);
        if let Poll::Ready(Ok(())) = polled {
            buf.put_slice(one.filled());
        }
        polled
    }
}

impl AsyncWrite for OneByteAtATime {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
