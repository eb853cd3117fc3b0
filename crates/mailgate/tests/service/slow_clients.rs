//! Clients that are slow, stall or announce too much: they are answered or dropped, never left
//! holding a connection, and never read past the limit.

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Everything the server sends until it closes the connection. The bound only keeps a broken
/// build from hanging the suite: the server closes long before it.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("the server closed the connection")
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn connect(t: &TestApp) -> TcpStream {
    TcpStream::connect(t.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stalled_request_head_or_body_is_dropped_and_the_server_keeps_serving() {
    let t = spawn_with(Db::Sqlite, |env| {
        env.insert("MAILGATE_HTTP_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    t.sending_as_alice().await;
    let key = t.api_key().await;

    let mut head = connect(&t).await;
    head.write_all(b"GET /login HTTP/1.1\r\nHost: mailgate\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut head).await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    let mut body = connect(&t).await;
    body.write_all(
        format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: mailgate\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"from\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = until_closed(&mut body).await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    assert!(
        t.app
            .store
            .list_messages(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(t.get("/healthz").await.status, StatusCode::OK);
    t.finish().await;
}

#[tokio::test]
async fn a_body_announced_over_the_limit_gets_413_before_it_is_sent() {
    let t = spawn(Db::Sqlite).await;
    t.sending_as_alice().await;
    let key = t.api_key().await;
    // A gigabyte announced, nothing sent: the answer comes at once, not after a body read.
    let mut stream = connect(&t).await;
    stream
        .write_all(
            format!(
                "POST /api/v1/messages HTTP/1.1\r\nHost: mailgate\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");

    t.finish().await;
}
