//! Gmail's IMAP server, imap.gmail.com:993 (google.md §2-§3): enough IMAP4rev1 for a mail fetcher.

mod mailbox_name;
mod parse;
mod session;

pub use session::serve_connection;
