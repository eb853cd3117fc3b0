//! What Gmail does with an accepted message: From rewriting (google.md §3), a Received line, the
//! delivery log, and a copy in the INBOX of every recipient that is a simulated account.

use std::collections::BTreeSet;

use time::format_description::well_known::Rfc2822;

use crate::world::{Delivery, World};

pub struct Envelope<'a> {
    pub account: &'a str,
    pub session: &'a str,
    pub peer_ip: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
}

/// Records and routes one accepted message. Returns the delivery id.
pub fn deliver(world: &World, envelope: &Envelope<'_>, data: &[u8]) -> u64 {
    let now = world.now();
    let date = world
        .clock
        .now_datetime()
        .format(&Rfc2822)
        .unwrap_or_default();
    let (allowed, account_name) = world.with(|s| {
        let account = s.accounts.get(envelope.account);
        (
            account.map(|a| a.aliases.clone()).unwrap_or_default(),
            account.map(|a| a.name.clone()).unwrap_or_default(),
        )
    });
    let mut message = Message::parse(data);
    let original_from = message.header("From").map(str::to_string);
    let rewritten = match original_from.as_deref().map(address_of) {
        Some(addr)
            if addr.eq_ignore_ascii_case(envelope.account)
                || allowed.iter().any(|a| a.eq_ignore_ascii_case(&addr)) =>
        {
            false
        }
        _ => {
            let display = original_from
                .as_deref()
                .and_then(display_name)
                .unwrap_or(account_name);
            message.set("From", &format!("{display} <{}>", envelope.account));
            if let Some(original) = &original_from {
                message.insert_after("From", "X-Google-Original-From", original);
            }
            true
        }
    };
    if message.header("Message-ID").is_none() {
        let id = format!(
            "<{}.{}@mx.google.com>",
            now,
            envelope.session.replace('.', "")
        );
        message.push("Message-ID", &id);
    }
    if message.header("Date").is_none() {
        message.push("Date", &date);
    }
    let received = format!(
        "from [{ip}] ([{ip}])\r\n        by smtp.gmail.com with ESMTPSA id {id}\r\n        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n        {date}",
        ip = envelope.peer_ip,
        id = envelope.session,
    );
    message.prepend("Received", &received);
    let raw = message.into_bytes();
    let message_id = Message::parse(&raw)
        .header("Message-ID")
        .map(str::to_string);

    let id = world.with(|s| {
        let id = s.next_delivery_id + 1;
        s.next_delivery_id = id;
        s.sent
            .entry(envelope.account.to_string())
            .or_default()
            .push_back(now);
        s.counters.messages_accepted += 1;
        let mut reached = BTreeSet::new();
        for rcpt in envelope.rcpt_to {
            if let Some(account) = s.account_for_address(rcpt).map(|a| a.email.clone()) {
                // One copy per mailbox, however many of its addresses were on the envelope.
                if reached.insert(account.clone()) {
                    s.append(&account, "INBOX", raw.clone(), BTreeSet::new(), now);
                }
            }
        }
        s.deliveries.push(Delivery {
            id,
            time: now,
            account: envelope.account.to_string(),
            mail_from: envelope.mail_from.to_string(),
            rcpt_to: envelope.rcpt_to.to_vec(),
            message_id,
            original_from: rewritten.then_some(original_from).flatten(),
            session: envelope.session.to_string(),
            raw,
        });
        id
    });
    world.notify_mailbox_change();
    id
}

/// `Name <a@b>` -> `a@b`; a bare address stays as it is.
pub fn address_of(value: &str) -> String {
    match (value.rfind('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => value[start + 1..end].trim().to_string(),
        _ => value.trim().to_string(),
    }
}

fn display_name(value: &str) -> Option<String> {
    let start = value.rfind('<')?;
    let name = value[..start].trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Just enough RFC 5322 to find, replace and add header fields; the body is never touched.
struct Message {
    /// Header fields as (name, raw value with folding), in order.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn parse(data: &[u8]) -> Self {
        let (head, body) = match find(data, b"\r\n\r\n") {
            Some(i) => (&data[..i], data[i + 4..].to_vec()),
            None => match find(data, b"\n\n") {
                Some(i) => (&data[..i], data[i + 2..].to_vec()),
                None => (data, Vec::new()),
            },
        };
        let head = String::from_utf8_lossy(head);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in head.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push_str("\r\n");
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_string(), value.trim_start().to_string()));
            }
        }
        Self { fields, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = value.to_string(),
            None => self.push(name, value),
        }
    }

    fn insert_after(&mut self, after: &str, name: &str, value: &str) {
        let at = self
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(after))
            .map_or(self.fields.len(), |i| i + 1);
        self.fields
            .insert(at, (name.to_string(), value.to_string()));
    }

    fn push(&mut self, name: &str, value: &str) {
        self.fields.push((name.to_string(), value.to_string()));
    }

    fn prepend(&mut self, name: &str, value: &str) {
        self.fields.insert(0, (name.to_string(), value.to_string()));
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_read_from_from_headers() {
        assert_eq!(address_of("Alice <alice@gmail.com>"), "alice@gmail.com");
        assert_eq!(address_of(" alice@gmail.com "), "alice@gmail.com");
        assert_eq!(
            display_name("\"A, B\" <a@b.c>").as_deref(),
            Some("\"A, B\"")
        );
        assert_eq!(display_name("a@b.c"), None);
    }

    #[test]
    fn headers_round_trip_with_folding() {
        let raw = b"From: a@b.c\r\nSubject: one\r\n two\r\n\r\nbody\r\n";
        let mut m = Message::parse(raw);
        assert_eq!(m.header("subject"), Some("one\r\n two"));
        m.set("From", "x@y.z");
        assert_eq!(
            m.into_bytes(),
            b"From: x@y.z\r\nSubject: one\r\n two\r\n\r\nbody\r\n".to_vec()
        );
    }
}
