//! Gmail's SMTP submission servers (google.md §2-§3): smtp.gmail.com:587 (STARTTLS) and :465
//! (implicit TLS).

mod delivery;
mod replies;
mod session;

pub use session::serve_connection;
