//! Delivery status notifications (RFC 3464): what a relayed message's sender receives when it
//! failed for good after the relay said 250, as from any mail server. No I/O here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::clock::format_rfc5322;

/// What the notification says.
pub struct FailedDelivery<'a> {
    /// The host that reports (the relay's hostname).
    pub reporting_host: &'a str,
    /// The notification's From: the account that sends it.
    pub from: &'a str,
    /// The failed message's MAIL FROM.
    pub to: &'a str,
    pub recipients: &'a [String],
    /// Gmail's last answer, or mailgate's reason.
    pub reason: &'a str,
    pub subject: &'a str,
    /// When the relay took the message, and now.
    pub arrival: i64,
    pub date: i64,
    /// The failed message's header, when its body is still kept.
    pub original_header: Option<&'a [u8]>,
    /// For the notification's Message-ID and MIME boundary.
    pub id: &'a str,
}

/// The RFC 3463 status in a reply ("550 5.1.1 ..." → "5.1.1"); 5.0.0 when it has none.
pub fn status_code(reason: &str) -> String {
    reason
        .split_whitespace()
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        // A temporary reply that became final (given up on) is reported as permanent.
        .map(|s| format!("5{}", &s[1..]))
        .unwrap_or_else(|| "5.0.0".to_string())
}

/// Text fit for one header line: no line breaks, nothing outside printable ASCII.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The original header only: up to its blank line, with bare line ends made CRLF.
fn header_of(message: &[u8]) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    let mut out = Vec::with_capacity(end);
    for line in message[..end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The notification as RFC 5322 bytes: a multipart/report of a human part, the
/// message/delivery-status part (one block per recipient) and the original header.
pub fn delivery_status_notification(f: &FailedDelivery<'_>) -> Vec<u8> {
    let boundary = format!("=_mailgate_report_{}", f.id);
    let subject = if f.subject.is_ascii() {
        one_line(f.subject)
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(f.subject))
    };
    let status = status_code(f.reason);
    let reason = one_line(f.reason);
    let recipients: Vec<String> = f.recipients.iter().map(|r| one_line(r)).collect();
    let mut out = format!(
        "From: Mail Delivery Subsystem <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.report@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is mailgate at {host}. The message you sent through it could not be\r\n\
         delivered, and will not be tried again:\r\n\
         \r\n\
         {list}\r\n\
         \r\n\
         Gmail's answer: {reason}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         Arrival-Date: {arrival}\r\n",
        from = f.from,
        to = one_line(f.to),
        date = format_rfc5322(f.date),
        id = f.id,
        host = f.reporting_host,
        list = recipients
            .iter()
            .map(|r| format!("  <{r}>"))
            .collect::<Vec<_>>()
            .join("\r\n"),
        arrival = format_rfc5322(f.arrival),
    );
    for recipient in &recipients {
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {recipient}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; {reason}\r\n"
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = out.into_bytes();
    if let Some(original) = f.original_header {
        out.extend_from_slice(&header_of(original));
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_comes_from_the_reply() {
        assert_eq!(status_code("550 5.1.1 The account does not exist"), "5.1.1");
        assert_eq!(status_code("552 5.7.0 Our system detected"), "5.7.0");
        assert_eq!(status_code("held too long"), "5.0.0");
        assert_eq!(status_code("421 4.7.0 Try again later"), "5.7.0");
    }

    #[test]
    fn a_notification_is_a_delivery_status_report() {
        let recipients = vec![
            "nobody@example.com".to_string(),
            "x@example.org".to_string(),
        ];
        let original = b"From: a@b.example\r\nSubject: Hi\r\n\r\nbody that stays out\r\n";
        let dsn = delivery_status_notification(&FailedDelivery {
            reporting_host: "relay.example",
            from: "alice@gmail.com",
            to: "app@shop.example",
            recipients: &recipients,
            reason: "550 5.1.1 The email account\r\nthat you tried to reach does not exist",
            subject: "Hi",
            arrival: 1_800_000_000,
            date: 1_800_000_100,
            original_header: Some(original),
            id: "abc",
        });
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains(
            "Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(text.contains("Final-Recipient: rfc822; x@example.org"));
        assert!(text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach does not exist\r\n"
        ));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: a@b.example\r\nSubject: Hi\r\n"
        ));
        assert!(!text.contains("body that stays out"));
        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(parsed.parts.len(), 4, "the report and its three parts");
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender: Hi")
        );
    }
}
