//! A submitted message: checked field by field, then built into the exact RFC 5322 bytes that every
//! attempt will send. Nothing here does I/O; the caller supplies the id, the date and the limits.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::email::EmailAddress;

/// Gmail takes at most 100 recipients per message over SMTP.
pub const MAX_RECIPIENTS: usize = 100;
/// Gmail's limit on a message, attachments included (25 MB raw).
pub const DEFAULT_MAX_SIZE: usize = 25 * 1024 * 1024;

/// The edge a message came in by, so the Emails page and the API can say where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    /// `POST /api/v1/messages`, with an API key.
    Api,
    /// `mailgate send` on the machine itself.
    Cli,
    /// The SMTP relay.
    Relay,
    /// A delivery status notification mailgate wrote about a relayed message.
    Bounce,
}

impl Edge {
    pub fn code(self) -> &'static str {
        match self {
            Edge::Api => "api",
            Edge::Cli => "cli",
            Edge::Relay => "relay",
            Edge::Bounce => "bounce",
        }
    }

    /// A stored code; an unknown one (from a newer version) reads as the API.
    pub fn parse(code: &str) -> Self {
        match code {
            "cli" => Edge::Cli,
            "relay" => Edge::Relay,
            "bounce" => Edge::Bounce,
            _ => Edge::Api,
        }
    }
}

/// `"a@b.c"` or `{"name": "A", "email": "a@b.c"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = Address)]
pub enum AddressInput {
    #[schema(example = "bob@example.com")]
    Plain(String),
    Named {
        /// Display name; no line breaks.
        name: Option<String>,
        email: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = Attachment)]
pub struct AttachmentInput {
    pub filename: String,
    #[serde(default = "octet_stream")]
    #[schema(default = "application/octet-stream")]
    pub content_type: String,
    /// The file, base64-encoded.
    pub content: String,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

/// What `POST /api/v1/messages` accepts: the fields of a message, or `raw` RFC 5322 text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    #[serde(default)]
    pub from: Option<AddressInput>,
    #[serde(default)]
    pub to: Vec<AddressInput>,
    #[serde(default)]
    pub cc: Vec<AddressInput>,
    /// Envelope only: never written into the message.
    #[serde(default)]
    pub bcc: Vec<AddressInput>,
    #[serde(default)]
    pub reply_to: Option<AddressInput>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    /// Extra header fields; not From, To, Cc, Bcc, Reply-To, Subject, Message-ID, Date or MIME
    /// fields.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A whole RFC 5322 message instead of the fields above. Recipients are read from To, Cc
    /// and Bcc; Bcc is removed before sending.
    #[serde(default)]
    pub raw: Option<String>,
}

/// A refusal that names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: EmailAddress,
}

impl Mailbox {
    /// `"Name" <a@b.c>`, for people to read (the Emails page); never written into a message.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) if !name.is_empty() => {
                let safe = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{safe}\" <{}>", self.email)
            }
            _ => self.email.to_string(),
        }
    }

    /// The value of header `name` naming this mailbox, as mail-builder writes it: the name
    /// quoted, or RFC 2047-encoded when it is not plain ASCII, and long lines folded.
    pub fn header_value(&self, name: &str) -> String {
        use mail_builder::headers::Header;
        let mut out = Vec::new();
        mail_builder::headers::address::Address::new_address(
            self.name.as_deref(),
            self.email.as_str(),
        )
        .write_header(&mut out, name.len() + 2);
        let value = out.strip_suffix(b"\r\n").unwrap_or(&out);
        String::from_utf8_lossy(value).into_owned()
    }
}

/// A message ready for the queue.
#[derive(Debug, Clone)]
pub struct Composed {
    pub from: Mailbox,
    /// Sender and Resent-* addresses of a raw message: they claim to send it too, so they must
    /// be addresses the account may send as.
    pub also_from: Vec<(String, EmailAddress)>,
    pub has_reply_to: bool,
    /// Everyone it goes to, Bcc included, deduplicated, in order.
    pub recipients: Vec<EmailAddress>,
    pub subject: String,
    /// With its angle brackets.
    pub message_id: String,
    pub raw: Vec<u8>,
}

pub struct ComposeContext<'a> {
    /// mailgate's id for the message: the Message-ID is `<id@sender's domain>` unless a raw
    /// message brings its own.
    pub id: &'a str,
    pub date: i64,
    pub max_size: usize,
}

impl ComposeContext<'_> {
    fn message_id(&self, from: &EmailAddress) -> String {
        format!("<{}@{}>", self.id, from.domain())
    }
}

/// Header text: no control characters (a tab is fine). CR and LF would start a new header, NUL
/// and the rest are cut or mangled by the servers on the way.
fn plain_text(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        Err(refuse(
            field,
            "must not contain control characters (CR, LF, NUL…): a line break would start a new header",
        ))
    } else {
        Ok(())
    }
}

/// `type/subtype`, each an RFC 2045 token, lowercased; parameters are not taken, so nothing can
/// ride into the Content-Type header.
fn mime_type(field: &str, value: &str) -> Result<String, FieldError> {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match value.trim().split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => Ok(value.trim().to_ascii_lowercase()),
        _ => Err(refuse(
            field,
            "is not a MIME type like application/pdf (type/subtype, no parameters)",
        )),
    }
}

fn mailbox(field: &str, input: &AddressInput) -> Result<Mailbox, FieldError> {
    let (name, email) = match input {
        AddressInput::Plain(email) => (None, email.as_str()),
        AddressInput::Named { name, email } => (name.as_deref(), email.as_str()),
    };
    if let Some(name) = name {
        plain_text(&format!("{field}.name"), name)?;
    }
    let email =
        EmailAddress::parse(email).map_err(|e| refuse(format!("{field}.email"), e.to_string()))?;
    Ok(Mailbox {
        name: name.map(str::to_string).filter(|n| !n.trim().is_empty()),
        email,
    })
}

/// Header fields the API sets itself: given in `headers`, they would contradict the message.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Header fields that say who sends a message: only `from` does that here.
fn names_a_sender(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "sender" || name.starts_with("resent-")
}

fn check_recipients(total: usize, field: &str) -> Result<(), FieldError> {
    match total {
        0 => Err(refuse(field, "give at least one recipient")),
        n if n > MAX_RECIPIENTS => Err(refuse(
            field,
            format!(
                "{n} recipients; Gmail takes at most {MAX_RECIPIENTS} per message, so split it"
            ),
        )),
        _ => Ok(()),
    }
}

/// Envelope recipients as an SMTP-like edge gives them (RCPT TO, `mailgate send
/// --envelope-to`): each an address, each once. An empty list stays empty: the caller then takes
/// the recipients from the headers. More than Gmail's 100 are fine here: the queue splits them
/// into several messages (the relay bounds them with its own limit).
pub fn envelope_recipients(given: &[String]) -> Result<Vec<EmailAddress>, FieldError> {
    let parsed = given
        .iter()
        .enumerate()
        .map(|(i, text)| {
            EmailAddress::parse(text)
                .map_err(|e| refuse(format!("envelope_to[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup(parsed))
}

fn dedup(addresses: impl IntoIterator<Item = EmailAddress>) -> Vec<EmailAddress> {
    let mut out: Vec<EmailAddress> = Vec::new();
    for a in addresses {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn check_size(raw: &[u8], max: usize) -> Result<(), FieldError> {
    if raw.len() > max {
        Err(refuse(
            "size",
            format!(
                "the message is {} bytes; the limit is {max} bytes (Gmail takes 25 MB)",
                raw.len()
            ),
        ))
    } else {
        Ok(())
    }
}

impl Submission {
    pub fn compose(&self, ctx: &ComposeContext<'_>) -> Result<Composed, FieldError> {
        match &self.raw {
            Some(raw) => {
                let others = self.from.is_some()
                    || !self.to.is_empty()
                    || !self.cc.is_empty()
                    || !self.bcc.is_empty()
                    || self.subject.is_some()
                    || self.text.is_some()
                    || self.html.is_some()
                    || !self.attachments.is_empty()
                    || !self.headers.is_empty()
                    || self.reply_to.is_some();
                if others {
                    return Err(refuse(
                        "raw",
                        "send either `raw` or the message fields, not both",
                    ));
                }
                compose_raw_message(raw.as_bytes(), ctx, Vec::new())
            }
            None => self.compose_fields(ctx),
        }
    }

    fn compose_fields(&self, ctx: &ComposeContext<'_>) -> Result<Composed, FieldError> {
        let from = mailbox(
            "from",
            self.from
                .as_ref()
                .ok_or_else(|| refuse("from", "give the sender's address"))?,
        )?;
        let list = |field: &str, inputs: &[AddressInput]| -> Result<Vec<Mailbox>, FieldError> {
            inputs
                .iter()
                .enumerate()
                .map(|(i, a)| mailbox(&format!("{field}[{i}]"), a))
                .collect()
        };
        let to = list("to", &self.to)?;
        let cc = list("cc", &self.cc)?;
        let bcc = list("bcc", &self.bcc)?;
        check_recipients(to.len() + cc.len() + bcc.len(), "to")?;
        let reply_to = self
            .reply_to
            .as_ref()
            .map(|r| mailbox("reply_to", r))
            .transpose()?;
        let subject = self.subject.clone().unwrap_or_default();
        plain_text("subject", &subject)?;
        if self.text.is_none() && self.html.is_none() {
            return Err(refuse("text", "give `text`, `html` or both"));
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(refuse(field, "is not a header field name"));
            }
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(refuse(
                    field,
                    "is set from the message's own fields; use them instead",
                ));
            }
            if names_a_sender(name) {
                return Err(refuse(
                    field,
                    "names who sends the message; mailgate sends as `from` only",
                ));
            }
            plain_text(&field, value)?;
        }
        let mut attachments = Vec::new();
        for (i, a) in self.attachments.iter().enumerate() {
            let field = format!("attachments[{i}]");
            plain_text(&format!("{field}.filename"), &a.filename)?;
            let content_type = mime_type(&format!("{field}.content_type"), &a.content_type)?;
            let bytes = STANDARD
                .decode(a.content.trim())
                .map_err(|_| refuse(format!("{field}.content"), "is not valid base64"))?;
            attachments.push((content_type, a.filename.as_str(), bytes));
        }

        let address = |m: &Mailbox| -> mail_builder::headers::address::Address<'static> {
            mail_builder::headers::address::Address::new_address(
                m.name.clone().map(Cow::Owned),
                Cow::Owned(m.email.to_string()),
            )
        };
        let addresses = |list: &[Mailbox]| {
            mail_builder::headers::address::Address::new_list(list.iter().map(address).collect())
        };
        let message_id = ctx.message_id(&from.email);
        let mut builder = mail_builder::MessageBuilder::new()
            .from(address(&from))
            .subject(subject.clone())
            .message_id(message_id.trim_matches(['<', '>']).to_string())
            .date(ctx.date);
        if !to.is_empty() {
            builder = builder.to(addresses(&to));
        }
        if !cc.is_empty() {
            builder = builder.cc(addresses(&cc));
        }
        // Bcc goes in the envelope only: written as a header, every recipient would see it.
        if let Some(r) = &reply_to {
            builder = builder.reply_to(address(r));
        }
        for (name, value) in &self.headers {
            builder = builder.header(
                name.clone(),
                mail_builder::headers::raw::Raw::new(value.clone()),
            );
        }
        if let Some(text) = &self.text {
            builder = builder.text_body(text.clone());
        }
        if let Some(html) = &self.html {
            builder = builder.html_body(html.clone());
        }
        for (content_type, filename, bytes) in &attachments {
            builder = builder.attachment(content_type.as_str(), *filename, bytes.as_slice());
        }
        let raw = builder
            .write_to_vec()
            .map_err(|e| refuse("message", e.to_string()))?;
        check_size(&raw, ctx.max_size)?;
        Ok(Composed {
            recipients: dedup(to.iter().chain(&cc).chain(&bcc).map(|m| m.email.clone())),
            from,
            also_from: Vec::new(),
            has_reply_to: reply_to.is_some(),
            subject,
            message_id,
            raw,
        })
    }
}

/// Header fields of a raw message that claim to send it, besides From.
const SENDER_FIELDS: [&str; 3] = ["Sender", "Resent-From", "Resent-Sender"];

/// One address of a raw message's header, its decoded name checked as an API name would be.
fn raw_mailbox(field: &str, addr: &mail_parser::Addr<'_>) -> Result<Mailbox, FieldError> {
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Some(name) = name {
        plain_text(field, name)?;
    }
    Ok(Mailbox {
        name: name.map(str::to_string),
        email: EmailAddress::parse(addr.address.as_deref().unwrap_or_default())
            .map_err(|e| refuse(field, e.to_string()))?,
    })
}

/// The first header line (folded lines included) carrying a control character other than a tab,
/// by field name. A bare CR inside a line counts: some servers end the line there.
fn control_in_headers(head: &[u8]) -> Option<String> {
    let mut name = String::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| String::from_utf8_lossy(&line[..i]).trim().to_string())
                .unwrap_or_default();
        }
        if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Some(name);
        }
    }
    None
}

/// A raw message: its headers say who it is from and to; Bcc is removed from what is sent, and a
/// Message-ID added when it has none. Bytes, not text: 8-bit messages pass untouched. It must
/// have one From header naming one sender, and no control characters in its headers.
pub fn compose_raw_message(
    raw: &[u8],
    ctx: &ComposeContext<'_>,
    envelope: Vec<EmailAddress>,
) -> Result<Composed, FieldError> {
    check_size(raw, ctx.max_size)?;
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .ok_or_else(|| refuse("raw", "is not an RFC 5322 message"))?;
    let header_end = usize::try_from(parsed.root_part().offset_body)
        .unwrap_or(raw.len())
        .min(raw.len());
    if let Some(name) = control_in_headers(&raw[..header_end]) {
        return Err(refuse(
            format!("raw.{name}"),
            "contains a control character (CR, LF, NUL…); header lines end with CRLF only",
        ));
    }
    let count = |name: &str| {
        parsed
            .headers()
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .count()
    };
    match count("From") {
        _ if header_end == 0 => return Err(refuse("raw", "has no From header")),
        0 => return Err(refuse("raw", "has no From header")),
        1 => {}
        n => {
            return Err(refuse(
                "raw.From",
                format!("appears {n} times; a message has exactly one From header"),
            ));
        }
    }
    let senders: Vec<_> = parsed
        .from()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let from = match senders.as_slice() {
        [] => return Err(refuse("raw.From", "has no address")),
        [one] => raw_mailbox("raw.From", one)?,
        many => {
            return Err(refuse(
                "raw.From",
                format!(
                    "names {} addresses; a message sent through Gmail has exactly one sender",
                    many.len()
                ),
            ));
        }
    };
    for addr in parsed.reply_to().into_iter().flat_map(|l| l.iter()) {
        raw_mailbox("raw.Reply-To", addr)?;
    }
    let mut also_from = Vec::new();
    for header in parsed.headers() {
        let name = header.name.as_str();
        let Some(canonical) = SENDER_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(name)) else {
            continue;
        };
        let field = format!("raw.{canonical}");
        let addresses = header
            .value
            .as_address()
            .ok_or_else(|| refuse(&field, "has no address"))?;
        for addr in addresses.iter() {
            also_from.push((canonical.to_string(), raw_mailbox(&field, addr)?.email));
        }
    }
    let recipients = if envelope.is_empty() {
        let mut recipients = Vec::new();
        for (field, list) in [
            ("raw.To", parsed.to()),
            ("raw.Cc", parsed.cc()),
            ("raw.Bcc", parsed.bcc()),
        ] {
            for addr in list.into_iter().flat_map(|l| l.iter()) {
                let text = addr.address.as_deref().unwrap_or_default();
                recipients
                    .push(EmailAddress::parse(text).map_err(|e| refuse(field, e.to_string()))?);
            }
        }
        let recipients = dedup(recipients);
        check_recipients(recipients.len(), "raw.To")?;
        recipients
    } else {
        // The envelope rules (RCPT TO, --envelope-to): the headers are not read for recipients.
        envelope
    };
    let message_id = parsed.message_id().map(|id| format!("<{id}>"));
    let subject = parsed.subject().unwrap_or_default().to_string();
    let has_reply_to = parsed.reply_to().is_some();
    let mut headers = HeaderBlock::parse(&raw[..header_end]);
    headers.remove("Bcc");
    headers.remove("Resent-Bcc");
    let message_id = match message_id {
        Some(id) => id,
        None => {
            let id = ctx.message_id(&from.email);
            headers.push("Message-ID", &id);
            id
        }
    };
    Ok(Composed {
        from,
        also_from,
        has_reply_to,
        recipients,
        subject,
        message_id,
        raw: headers.join(&raw[header_end..]),
    })
}

/// Header fields as lines, for the few edits mailgate makes (drop Bcc, add Message-ID, rewrite
/// From); folding and everything else are kept byte for byte.
pub struct HeaderBlock {
    fields: Vec<(String, Vec<u8>)>,
}

impl HeaderBlock {
    pub fn parse(head: &[u8]) -> Self {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for line in head.split_inclusive(|&b| b == b'\n') {
            let bare = line.strip_suffix(b"\n").unwrap_or(line);
            let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
            if bare.is_empty() {
                continue;
            }
            if bare.starts_with(b" ") || bare.starts_with(b"\t") {
                if let Some((_, text)) = fields.last_mut() {
                    text.extend_from_slice(b"\r\n");
                    text.extend_from_slice(bare);
                }
                continue;
            }
            let name = bare
                .iter()
                .position(|&b| b == b':')
                .map(|i| String::from_utf8_lossy(&bare[..i]).trim().to_string())
                .unwrap_or_default();
            fields.push((name, bare.to_vec()));
        }
        Self { fields }
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.fields
            .push((name.to_string(), format!("{name}: {value}").into_bytes()));
    }

    /// Replaces the first field called `name` (or adds it).
    pub fn set(&mut self, name: &str, value: &str) {
        let line = format!("{name}: {value}").into_bytes();
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = line,
            None => self.fields.push((name.to_string(), line)),
        }
    }

    /// The header block, its blank line, then `body` (which starts after the blank line).
    pub fn join(&self, body: &[u8]) -> Vec<u8> {
        let body = body
            .strip_prefix(b"\r\n")
            .or_else(|| body.strip_prefix(b"\n"))
            .unwrap_or(body);
        let mut out = Vec::with_capacity(body.len() + 1024);
        for (_, line) in &self.fields {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

/// The messages of an mbox file (the `From ` line before each one), with mboxrd's `>From `
/// quoting undone.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(done) = current.take() {
                messages.push(done);
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            message.extend_from_slice(&line[1..]);
        } else {
            message.extend_from_slice(line);
        }
    }
    messages.extend(current);
    // The blank line that separates messages belongs to the file, not to the message.
    for message in &mut messages {
        while message.ends_with(b"\n\n") || message.ends_with(b"\r\n\r\n") {
            message.pop();
            if message.ends_with(b"\r") {
                message.pop();
            }
        }
    }
    messages
}

/// Gmail sends only as the account or its verified "Send mail as" aliases. With the rewrite
/// policy, a foreign From becomes the account, and the original author stays reachable through
/// Reply-To (unless the message already names one); Sender and Resent-* fields naming addresses
/// the account may not send as are dropped. Both headers are written anew by mail-builder, so a
/// name cannot carry a line break into the message.
pub fn rewrite_from(
    composed: &mut Composed,
    account: &EmailAddress,
    may_send_as: impl Fn(&EmailAddress) -> bool,
) {
    let header_end = composed
        .raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(composed.raw.len(), |i| i + 2);
    let mut headers = HeaderBlock::parse(&composed.raw[..header_end]);
    let foreign: Vec<String> = composed
        .also_from
        .iter()
        .filter(|(_, address)| !may_send_as(address))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &foreign {
        headers.remove(name);
    }
    composed
        .also_from
        .retain(|(name, _)| !foreign.contains(name));
    if !may_send_as(&composed.from.email) {
        let rewritten = Mailbox {
            name: composed.from.name.clone(),
            email: account.clone(),
        };
        headers.set("From", &rewritten.header_value("From"));
        if !composed.has_reply_to {
            headers.push("Reply-To", &composed.from.header_value("Reply-To"));
            composed.has_reply_to = true;
        }
        composed.from = rewritten;
    }
    composed.raw = headers.join(&composed.raw[header_end..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ComposeContext<'static> {
        ComposeContext {
            id: "m1",
            date: 1_800_000_000,
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    fn text_message() -> Submission {
        Submission {
            from: Some(AddressInput::Named {
                name: Some("Alice".into()),
                email: "alice@gmail.com".into(),
            }),
            to: vec![AddressInput::Plain("bob@example.com".into())],
            bcc: vec![AddressInput::Plain("audit@example.com".into())],
            subject: Some("Hello".into()),
            text: Some("Hi Bob.".into()),
            ..Default::default()
        }
    }

    #[test]
    fn fields_become_a_message_whose_bcc_is_only_in_the_envelope() {
        let c = text_message().compose(&ctx()).unwrap();
        let text = String::from_utf8(c.raw.clone()).unwrap();
        assert!(text.contains("Message-ID: <m1@gmail.com>\r\n"), "{text}");
        assert!(text.contains("Subject: Hello\r\n"));
        assert!(!text.to_ascii_lowercase().contains("bcc"));
        assert!(!text.contains("audit@example.com"));
        let rcpts: Vec<&str> = c.recipients.iter().map(|r| r.as_str()).collect();
        assert_eq!(rcpts, ["bob@example.com", "audit@example.com"]);
        assert_eq!(c.from.email.as_str(), "alice@gmail.com");
    }

    #[test]
    fn each_refusal_names_its_field() {
        let mut s = text_message();
        s.to.push(AddressInput::Plain("not an address".into()));
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "to[1].email");
        let mut s = text_message();
        s.subject = Some("Hi\r\nBcc: everyone@example.com".into());
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "subject");
        let mut s = text_message();
        s.headers.insert("X-Tag".into(), "a\nb".into());
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "headers.X-Tag");
        let mut s = text_message();
        s.headers.insert("Bcc".into(), "x@y.z".into());
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "headers.Bcc");
        let mut s = text_message();
        s.to = (0..101)
            .map(|i| AddressInput::Plain(format!("r{i}@example.com")))
            .collect();
        s.bcc.clear();
        let e = s.compose(&ctx()).unwrap_err();
        assert_eq!(e.field, "to");
        assert!(e.message.contains("at most 100"));
        let mut s = text_message();
        s.attachments.push(AttachmentInput {
            filename: "a.pdf".into(),
            content_type: "application/pdf".into(),
            content: "***".into(),
        });
        assert_eq!(
            s.compose(&ctx()).unwrap_err().field,
            "attachments[0].content"
        );
        let mut s = text_message();
        s.text = Some("x".repeat(2000));
        let e = s
            .compose(&ComposeContext {
                max_size: 1000,
                ..ctx()
            })
            .unwrap_err();
        assert_eq!(e.field, "size");
        let mut s = text_message();
        s.from = Some(AddressInput::Named {
            name: Some("A\r\nB".into()),
            email: "a@b.co".into(),
        });
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "from.name");
    }

    #[test]
    fn raw_messages_lose_bcc_and_gain_a_message_id() {
        let raw = "From: Alice <alice@gmail.com>\r\nTo: bob@example.com\r\nBcc: secret@example.com\r\nSubject: raw\r\n  folded\r\n\r\nBody line\r\n";
        let s = Submission {
            raw: Some(raw.into()),
            ..Default::default()
        };
        let c = s.compose(&ctx()).unwrap();
        let text = String::from_utf8(c.raw).unwrap();
        assert_eq!(
            text,
            "From: Alice <alice@gmail.com>\r\nTo: bob@example.com\r\nSubject: raw\r\n  folded\r\nMessage-ID: <m1@gmail.com>\r\n\r\nBody line\r\n"
        );
        assert_eq!(c.recipients.len(), 2);
        let s = Submission {
            raw: Some("Subject: none\r\n\r\nx".into()),
            ..Default::default()
        };
        assert_eq!(s.compose(&ctx()).unwrap_err().field, "raw");
    }

    #[test]
    fn mime_types_are_parsed_not_pasted() {
        assert_eq!(
            mime_type("t", " Application/PDF ").unwrap(),
            "application/pdf"
        );
        for bad in [
            "pdf",
            "text/plain; name=x",
            "text/",
            "/x",
            "a/b/c",
            "text/pl ain",
        ] {
            assert!(mime_type("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_in_raw_headers_are_found_by_field() {
        assert_eq!(control_in_headers(b"From: a@b.co\r\nX: ok\tfine\r\n"), None);
        assert_eq!(
            control_in_headers(b"From: a@b.co\r\nSubject: one\r\n two\x00\r\n").as_deref(),
            Some("Subject")
        );
        assert_eq!(
            control_in_headers(b"To: x@y.co\rBcc: z@y.co\r\n").as_deref(),
            Some("To"),
            "a bare CR"
        );
    }

    #[test]
    fn rebuilt_headers_encode_names_and_cannot_break_lines() {
        let m = Mailbox {
            name: Some("Jörg \"J\" Müller".into()),
            email: EmailAddress::parse("j@x.co").unwrap(),
        };
        let value = m.header_value("From");
        assert!(value.is_ascii() && !value.contains(['\r', '\n']), "{value}");
        assert!(value.ends_with("<j@x.co>"), "{value}");
    }

    #[test]
    fn mbox_files_split_into_messages_with_from_quoting_undone() {
        let mbox = b"From alice Mon Jan 1 00:00:00 2026\nFrom: a@b.co\nSubject: one\n\n>From the start\nbody\n\nFrom bob Mon Jan 1 00:00:01 2026\nFrom: b@b.co\n\ntwo\n";
        let messages = split_mbox(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0],
            b"From: a@b.co\nSubject: one\n\nFrom the start\nbody\n"
        );
        assert_eq!(messages[1], b"From: b@b.co\n\ntwo\n");
        assert!(split_mbox(b"no separator here\n").is_empty());
    }

    #[test]
    fn a_foreign_from_is_rewritten_with_the_author_in_reply_to() {
        let mut s = text_message();
        s.from = Some(AddressInput::Named {
            name: Some("Carol".into()),
            email: "carol@partner.example".into(),
        });
        let mut c = s.compose(&ctx()).unwrap();
        let alice = EmailAddress::parse("alice@gmail.com").unwrap();
        rewrite_from(&mut c, &alice, |a| *a == alice);
        let text = String::from_utf8(c.raw.clone()).unwrap();
        assert!(
            text.contains("From: \"Carol\" <alice@gmail.com>\r\n"),
            "{text}"
        );
        assert!(text.contains("Reply-To: \"Carol\" <carol@partner.example>\r\n"));
        assert_eq!(c.from.email.as_str(), "alice@gmail.com");
    }
}
