//! The client's reply parser, fed whatever a server (or something pretending to be one) might
//! send: it must never panic, and what it takes off the buffer must leave the buffer shorter.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut buffer = input.to_vec();
    loop {
        let before = buffer.len();
        match mailgate_smtp::reply::parse(&mut buffer) {
            Ok(Some(_)) => assert!(buffer.len() < before, "a reply consumed nothing"),
            Ok(None) | Err(_) => break,
        }
    }
});
