//! `gsim serve` as a process: the start-up line, signals, and state kept across restarts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

struct Served {
    child: Child,
    line: String,
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gsim"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Served { child, line }
}

fn terminate(mut served: Served, signal: &str) -> std::process::ExitStatus {
    Command::new("kill")
        .args([signal, &served.child.id().to_string()])
        .status()
        .unwrap();
    served.child.wait().unwrap()
}

#[test]
fn prints_one_json_line_with_every_endpoint_and_stops_on_sigterm() {
    let served = serve(&[]);
    let line = served.line.trim_end().to_string();
    let keys: Vec<&str> = [
        "\"http\":",
        "\"smtp_starttls\":",
        "\"smtp_tls\":",
        "\"imap_tls\":",
        "\"ca_cert\":",
    ]
    .to_vec();
    let mut at = 0;
    for key in keys {
        let found = line[at..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} in order in {line}"));
        at += found;
    }
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(v["http"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    for key in ["smtp_starttls", "smtp_tls", "imap_tls"] {
        let addr: std::net::SocketAddr = v[key].as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_loopback());
        std::net::TcpStream::connect(addr).expect("listening once the line is printed");
    }
    let ca = std::fs::read_to_string(v["ca_cert"].as_str().unwrap()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(terminate(served, "-TERM").success());
}

#[test]
fn config_file_sets_ports_clients_and_accounts_and_bad_keys_are_named() {
    let dir = std::env::temp_dir().join(format!("gsim-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("gsim.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
http = {port}

[[clients]]
client_id = "555-file.apps.googleusercontent.com"
client_secret = "GOCSPX-file"
type = "desktop"
publishing_status = "production"

[[accounts]]
email = "erin@example.com"
daily_send_limit = 2000
"#
        ),
    )
    .unwrap();
    let served = serve(&["--config", config.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&served.line).unwrap();
    assert_eq!(v["http"], format!("http://127.0.0.1:{port}"));
    assert!(terminate(served, "-INT").success());

    std::fs::write(&config, "[listen]\nhtp = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gsim"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("htp"), "names the bad key: {stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn state_dir_keeps_the_ca_and_the_tokens_across_restarts() {
    let dir = std::env::temp_dir().join(format!("gsim-state-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let served = serve(&["--state-dir", dir.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&served.line).unwrap();
    let ca_before = std::fs::read(v["ca_cert"].as_str().unwrap()).unwrap();
    let http = v["http"].as_str().unwrap().to_string();
    let minted: Value = crate::support::http()
        .post(format!("{http}/_gsim/tokens/mint"))
        .json(&serde_json::json!({"client_id": gsim::config::DEMO_CLIENT_ID, "email": gsim::config::DEMO_TEST_USER}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(terminate(served, "-TERM").success());

    let served = serve(&["--state-dir", dir.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&served.line).unwrap();
    assert_eq!(
        std::fs::read(v["ca_cert"].as_str().unwrap()).unwrap(),
        ca_before,
        "same CA"
    );
    let refreshed = crate::support::http()
        .post(format!("{}/token", v["http"].as_str().unwrap()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", minted["refresh_token"].as_str().unwrap()),
            ("client_id", gsim::config::DEMO_CLIENT_ID),
            ("client_secret", gsim::config::DEMO_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshed.status(),
        200,
        "the refresh token survived the restart"
    );
    assert!(terminate(served, "-TERM").success());
    let _ = std::fs::remove_dir_all(&dir);
}
