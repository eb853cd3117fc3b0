//! The simulated clock. Google's rules are about days (a Testing app's refresh token dies after seven),
//! so tests move this clock forward instead of waiting. Network timeouts stay on real time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    pub fn new(offset_secs: i64) -> Self {
        Self {
            offset_secs: AtomicI64::new(offset_secs),
        }
    }

    /// Seconds since the Unix epoch, simulated.
    pub fn now(&self) -> i64 {
        real_now_secs() + self.offset_secs.load(Ordering::Relaxed)
    }

    pub fn now_datetime(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.now()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn now_system(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(self.now()).unwrap_or(0))
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }

    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }
}

// The only place gsim reads the wall clock; everything else asks the Clock.
#[allow(clippy::disallowed_methods)]
fn real_now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
