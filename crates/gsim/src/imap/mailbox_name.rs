//! Mailbox names on the wire: IMAP's modified UTF-7 (RFC 3501 §5.1.3), as Gmail speaks it to a
//! client that has not enabled UTF8=ACCEPT. The simulator keeps labels as people see them
//! ("Aufträge") and translates at the protocol's edge. Written apart from mailgate's encoder on
//! purpose: the simulator is the other side of the conversation, not a copy of it.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// base64 with `,` in place of `/`, never padded.
fn modified_base64() -> Option<GeneralPurpose> {
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").ok()?;
    Some(GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    ))
}

/// The label a wire name means; None when it is not valid modified UTF-7 (an unterminated
/// `&`, bad base64, or 8-bit characters a client may not send).
pub fn decode(wire: &str) -> Option<String> {
    if !wire.is_ascii() {
        return None;
    }
    let engine = modified_base64()?;
    let mut label = String::new();
    let mut parts = wire.split('&');
    label.push_str(parts.next()?);
    for part in parts {
        let (shifted, plain) = part.split_once('-')?;
        if shifted.is_empty() {
            label.push('&');
        } else {
            let bytes = engine.decode(shifted).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units = bytes
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            label.push_str(
                &char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()?,
            );
        }
        label.push_str(plain);
    }
    Some(label)
}

/// The wire name of a label.
pub fn encode(label: &str) -> String {
    let Some(engine) = modified_base64() else {
        return label.to_string();
    };
    let mut wire = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => wire.push_str("&-"),
            ' '..='~' => wire.push(c),
            _ => {
                pending.extend(c.encode_utf16(&mut [0; 2]).iter());
                if chars.peek().is_none_or(|next| (' '..='~').contains(next)) {
                    let bytes: Vec<u8> = pending.drain(..).flat_map(u16::to_be_bytes).collect();
                    wire.push_str(&format!("&{}-", engine.encode(bytes)));
                }
            }
        }
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_decode_to_labels_and_back() {
        for (wire, label) in [
            ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
            ("Auftr&AOQ-ge", "Aufträge"),
            ("Q&-A", "Q&A"),
            ("INBOX", "INBOX"),
            ("&2D3c7A- Orders", "📬 Orders"),
        ] {
            assert_eq!(decode(wire).as_deref(), Some(label), "{wire}");
            assert_eq!(encode(label), wire, "{label}");
        }
    }

    #[test]
    fn broken_names_mean_nothing() {
        for wire in ["Auftr&AOQ", "Auftr&A*Q-ge", "Aufträge", "&AOQ=-"] {
            assert_eq!(decode(wire), None, "{wire}");
        }
    }
}
