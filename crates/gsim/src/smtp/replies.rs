//! Gmail's SMTP replies, word for word from google.md §2-§3. `id` is the session id Gmail appends
//! (e.g. `7sm10895420igt.6`).

pub fn greeting(host: &str, id: &str) -> String {
    format!("220 {host} ESMTP {id} - gsmtp\r\n")
}

pub fn ehlo(peer_ip: &str, tls: bool, max_size: usize) -> String {
    let middle = if tls {
        "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n"
    } else {
        "250-STARTTLS\r\n"
    };
    format!(
        "250-smtp.gmail.com at your service, [{peer_ip}]\r\n\
         250-SIZE {max_size}\r\n\
         250-8BITMIME\r\n\
         {middle}\
         250-ENHANCEDSTATUSCODES\r\n\
         250-PIPELINING\r\n\
         250-CHUNKING\r\n\
         250 SMTPUTF8\r\n"
    )
}

pub fn helo() -> String {
    "250 smtp.gmail.com at your service\r\n".to_string()
}

pub fn empty_helo(id: &str) -> String {
    format!(
        "501-5.5.4 Empty HELO/EHLO argument not allowed, closing connection.\r\n\
         501 5.5.4  https://support.google.com/mail/?p=helo {id} - gsmtp\r\n"
    )
}

pub const READY_TLS: &str = "220 2.0.0 Ready to start TLS\r\n";

pub fn must_starttls(id: &str) -> String {
    format!("530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp\r\n")
}

pub fn want_auth(id: &str) -> String {
    format!(
        "530-5.5.1 Authentication Required. Learn more at\r\n\
         530 5.5.1  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp\r\n"
    )
}

pub const AUTH_ACCEPTED: &str = "235 2.7.0 Accepted\r\n";

pub fn bad_credentials(id: &str) -> String {
    format!(
        "535-5.7.8 Username and Password not accepted. Learn more at\r\n\
         535 5.7.8 https://support.google.com/mail/?p=BadCredentials {id} - gsmtp\r\n"
    )
}

pub fn cannot_decode(id: &str) -> String {
    format!("501 5.5.2 Cannot decode response. {id} - gsmtp\r\n")
}

pub fn unrecognized_auth(id: &str) -> String {
    format!("504 5.7.4 Unrecognized Authentication Type. {id} - gsmtp\r\n")
}

pub fn auth_aborted(id: &str) -> String {
    format!("501 5.7.0 Authentication aborted. {id} - gsmtp\r\n")
}

pub fn try_again_later() -> String {
    "421 4.7.0 Try again later, closing connection. (AUTH)\r\n".to_string()
}

pub fn idle_timeout(id: &str) -> String {
    format!("451 4.4.2 Timeout - closing connection. {id} - gsmtp\r\n")
}

pub fn mail_ok(id: &str) -> String {
    format!("250 2.1.0 OK {id} - gsmtp\r\n")
}

pub fn rcpt_ok(id: &str) -> String {
    format!("250 2.1.5 OK {id} - gsmtp\r\n")
}

pub fn go_ahead(id: &str) -> String {
    format!("354 Go ahead {id} - gsmtp\r\n")
}

pub fn accepted(timestamp: i64, id: &str) -> String {
    format!("250 2.0.0 OK  {timestamp} {id} - gsmtp\r\n")
}

pub fn chunk_ok(id: &str) -> String {
    format!("250 2.0.0 OK {id} - gsmtp\r\n")
}

pub fn flushed(id: &str) -> String {
    format!("250 2.1.5 Flushed {id} - gsmtp\r\n")
}

pub fn noop(id: &str) -> String {
    format!("250 2.0.0 OK {id} - gsmtp\r\n")
}

pub fn closing(id: &str) -> String {
    format!("221 2.0.0 closing connection {id} - gsmtp\r\n")
}

pub fn vrfy(id: &str) -> String {
    format!("252 2.1.5 Send some mail, I'll try my best {id} - gsmtp\r\n")
}

pub fn help(id: &str) -> String {
    format!("214 2.0.0  https://www.google.com/search?btnI&q=RFC+5321 {id} - gsmtp\r\n")
}

pub fn unrecognized(id: &str) -> String {
    format!("502 5.5.1 Unrecognized command. {id} - gsmtp\r\n")
}

pub fn helo_first(id: &str) -> String {
    format!("503 5.5.1 EHLO/HELO first. {id} - gsmtp\r\n")
}

pub fn mail_first(id: &str) -> String {
    format!("503 5.5.1 MAIL first. {id} - gsmtp\r\n")
}

pub fn rcpt_first(id: &str) -> String {
    format!("503 5.5.1 RCPT first. {id} - gsmtp\r\n")
}

pub fn nested_mail(id: &str) -> String {
    format!("503 5.5.1 Nested MAIL command. {id} - gsmtp\r\n")
}

pub fn already_authenticated(id: &str) -> String {
    format!("503 5.5.1 Already authenticated. {id} - gsmtp\r\n")
}

pub fn tls_already_active(id: &str) -> String {
    format!("503 5.5.1 TLS already active. {id} - gsmtp\r\n")
}

pub fn syntax_error(id: &str) -> String {
    format!("555 5.5.2 Syntax error. {id} - gsmtp\r\n")
}

pub fn line_too_long(id: &str) -> String {
    format!("500 5.5.2 Line too long. {id} - gsmtp\r\n")
}

pub fn bad_recipient(address: &str, id: &str) -> String {
    format!(
        "553-5.1.3 The recipient address <{address}> is not a valid RFC 5321\r\n\
         553 5.1.3 address. {id} - gsmtp\r\n"
    )
}

pub fn too_many_recipients(id: &str) -> String {
    format!(
        "452 4.5.3 Your message has too many recipients. For more information regarding Google's sending limits, visit https://support.google.com/mail/?p=TooManyRecipientsError {id} - gsmtp\r\n"
    )
}

pub fn too_big(id: &str) -> String {
    format!(
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit\r\n\
         552-5.2.3  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n\
         552 5.2.3 guidelines. {id} - gsmtp\r\n"
    )
}

pub fn quota_exceeded(id: &str) -> String {
    format!("550 5.4.5 Daily user sending quota exceeded. {id} - gsmtp\r\n")
}

/// A reply armed by a fault: the text as given, `{id}` replaced, each line ended with CRLF.
pub fn fault(text: &str, id: &str) -> String {
    text.replace("{id}", id)
        .lines()
        .map(|line| format!("{line}\r\n"))
        .collect()
}
