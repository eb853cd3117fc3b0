//! The command parser the server session uses (smtp-proto's receiver), fed arbitrary bytes in
//! arbitrary chunks, as they arrive from a socket: it must never panic or loop.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::request::receiver::RequestReceiver;

fuzz_target!(|input: &[u8]| {
    let Some((&split, bytes)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut receiver = RequestReceiver::default();
    for piece in bytes.chunks(chunk) {
        let mut rest = piece.iter();
        while !rest.as_slice().is_empty() {
            let before = rest.as_slice().len();
            let _ = receiver.ingest(&mut rest);
            if rest.as_slice().len() == before {
                break;
            }
        }
    }
});
