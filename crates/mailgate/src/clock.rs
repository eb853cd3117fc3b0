//! Time is a parameter: code asks a Clock, so tests can place "now" exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// Seconds since the Unix epoch: what the database stores.
pub type Timestamp = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    // The one place mailgate reads the wall clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock moved by an offset that tests control.
#[derive(Default)]
pub struct OffsetClock {
    offset: AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        SystemClock.now() + self.offset.load(Ordering::Relaxed)
    }
}

/// `2026-11-26 04:13 UTC`, the form pages show.
pub fn format_utc(ts: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// `Thu, 03 Dec 2026 10:00:00 +0000`, the form of a Date or Received field (RFC 5322).
pub fn format_rfc5322(ts: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_default()
}

/// "in 3 days", "5 minutes ago": how far `ts` is from `now`.
pub fn relative(ts: Timestamp, now: Timestamp) -> String {
    let delta = ts - now;
    let abs = delta.unsigned_abs();
    // Rounded to the nearest unit: Google's 604 799 s is "7 days", not "6 days".
    let (n, unit) = match abs {
        0..=59 if delta > 0 => return "in less than a minute".to_string(),
        0..=59 => return "just now".to_string(),
        60..=3569 => ((abs + 30) / 60, "minute"),
        3570..=84_599 => ((abs + 1800) / 3600, "hour"),
        _ => ((abs + 43_200) / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta > 0 {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(relative(100, 100), "just now");
        assert_eq!(relative(148, 100), "in less than a minute");
        assert_eq!(relative(100 + 2 * 86_400, 100), "in 2 days");
        assert_eq!(relative(100, 100 + 3600), "1 hour ago");
        assert_eq!(relative(604_799, 0), "in 7 days");
        assert_eq!(relative(3599, 0), "in 1 hour");
        assert_eq!(relative(90, 0), "in 2 minutes");
    }
}
