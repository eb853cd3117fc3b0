//! The relay's server session fed whatever a client might send: it must end (never hang or
//! panic), and everything it wrote must be well-formed SMTP replies.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailgate_smtp::Reply;
use mailgate_smtp::server::{Envelope, Relay, ServerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Accepting;

impl Relay for Accepting {
    fn needs_auth(&self) -> bool {
        true
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, Reply> {
        if user == "app" && password == "secret" {
            Ok(user.to_string())
        } else {
            Err(Reply::new(535, &["5.7.8 bad credentials"]))
        }
    }

    async fn accept_sender(&self, _user: Option<&str>, _from: &str) -> Result<(), Reply> {
        Ok(())
    }

    async fn submit(&self, _envelope: &Envelope, message: Vec<u8>) -> Result<String, Reply> {
        Ok(format!("q{}", message.len()))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

fuzz_target!(|input: &[u8]| {
    let config = ServerConfig {
        hostname: "relay.fuzz".into(),
        max_size: 4096,
        max_recipients: 5,
        timeout: Duration::from_secs(300),
        offer_starttls: input.first().is_some_and(|b| b & 1 == 1),
        auth_allowed: input.first().is_some_and(|b| b & 2 == 2),
    };
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(1 << 20);
            // The session's end closes its side, so the client's read sees the end too.
            let session = async move {
                let ended = serve(&mut server, &Accepting, &config, true).await;
                drop(server);
                ended
            };
            let talk = async {
                let _ = client.write_all(input).await;
                let _ = client.shutdown().await;
                let mut said = Vec::new();
                let _ = client.read_to_end(&mut said).await;
                said
            };
            let (_, mut said) = tokio::join!(session, talk);
            while !said.is_empty() {
                match mailgate_smtp::reply::parse(&mut said) {
                    Ok(Some(_)) => {}
                    other => panic!("the session wrote something that is not a reply: {other:?}"),
                }
            }
        });
    });
});
