//! Dot-stuffing (RFC 5321 §4.5.2) as a stream: a message goes out in chunks, and a line may begin
//! in one chunk and continue in the next. Bare LF becomes CRLF (Gmail refuses bare LF); every
//! other byte, 8-bit included, passes untouched.

/// Remembers where the previous chunk ended.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    previous: u8,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
            previous: 0,
        }
    }
}

impl DotStuffer {
    /// Appends `input`, stuffed, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 2);
        for &byte in input {
            if byte == b'\n' && self.previous != b'\r' {
                out.push(b'\r');
            }
            if self.at_line_start && byte == b'.' {
                out.push(b'.');
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
            self.previous = byte;
        }
    }

    /// Ends the last line, so the terminating `.` that follows stands on a line of its own.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole message at once.
    fn stuff(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        stuffer.push(message, &mut out);
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn leading_dots_are_doubled_and_bare_line_feeds_completed() {
        assert_eq!(
            stuff(b".hidden\n..two\r\nx.y\n."),
            b"..hidden\r\n...two\r\nx.y\r\n..\r\n"
        );
        assert_eq!(stuff(b""), b"");
        assert_eq!(stuff(b"done\r\n"), b"done\r\n");
    }

    #[test]
    fn a_line_split_across_chunks_is_stuffed_as_one() {
        let message = b"a\r\n.b\n\xc3\xa9\xff.c\r\n.";
        for split in 0..=message.len() {
            let mut out = Vec::new();
            let mut stuffer = DotStuffer::default();
            stuffer.push(&message[..split], &mut out);
            stuffer.push(&message[split..], &mut out);
            stuffer.finish(&mut out);
            assert_eq!(out, stuff(message), "split at {split}");
        }
        assert_eq!(stuff(message), b"a\r\n..b\r\n\xc3\xa9\xff.c\r\n..\r\n");
    }
}
