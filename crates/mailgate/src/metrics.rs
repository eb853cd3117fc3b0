//! The few numbers an operator graphs, in Prometheus' text format. Queue sizes are read from the
//! database at scrape time; everything else is counted here as it happens.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::outgoing::MessageState;

/// Seconds from submission to Gmail's 250, as histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0];

#[derive(Default)]
pub struct Metrics {
    pub submitted: AtomicU64,
    pub sent: AtomicU64,
    pub deferred: AtomicU64,
    pub held: AtomicU64,
    pub failed: AtomicU64,
    pub smtp_logins_ok: AtomicU64,
    pub smtp_logins_failed: AtomicU64,
    pub token_refreshes_ok: AtomicU64,
    pub token_refreshes_failed: AtomicU64,
    /// The final dot went out and the connection dropped before the answer.
    pub unknown_after_drop: AtomicU64,
    /// A restart found a message whose final dot went out before the answer was recorded.
    pub unknown_after_restart: AtomicU64,
    /// Password verifies run at sign-in (each costs ~19 MiB and ~50 ms of a core).
    pub sign_in_verifies: AtomicU64,
    /// Sign-ins answered "too many" or "busy" without verifying.
    pub sign_ins_refused: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    /// Milliseconds, so the sum stays an integer.
    latency_sum_ms: AtomicU64,
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn observe_latency(&self, seconds: f64) {
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.latency_sum_ms
            .fetch_add((seconds.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn render(&self, queue: &[(MessageState, i64)]) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP mailgate_messages Messages in the queue by state."
        );
        let _ = writeln!(out, "# TYPE mailgate_messages gauge");
        for (state, n) in queue {
            let _ = writeln!(out, "mailgate_messages{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP mailgate_submitted_total Messages accepted for delivery."
        );
        let _ = writeln!(out, "# TYPE mailgate_submitted_total counter");
        let _ = writeln!(out, "mailgate_submitted_total {}", get(&self.submitted));
        let _ = writeln!(out, "# HELP mailgate_sent_total Messages Gmail accepted.");
        let _ = writeln!(out, "# TYPE mailgate_sent_total counter");
        let _ = writeln!(out, "mailgate_sent_total {}", get(&self.sent));
        let _ = writeln!(
            out,
            "# HELP mailgate_failures_total Attempts that did not send, by class."
        );
        let _ = writeln!(out, "# TYPE mailgate_failures_total counter");
        for (class, counter) in [
            ("deferred", &self.deferred),
            ("held", &self.held),
            ("failed", &self.failed),
        ] {
            let _ = writeln!(
                out,
                "mailgate_failures_total{{class=\"{class}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mailgate_smtp_logins_total AUTH XOAUTH2 results."
        );
        let _ = writeln!(out, "# TYPE mailgate_smtp_logins_total counter");
        let _ = writeln!(
            out,
            "mailgate_smtp_logins_total{{result=\"ok\"}} {}",
            get(&self.smtp_logins_ok)
        );
        let _ = writeln!(
            out,
            "mailgate_smtp_logins_total{{result=\"failed\"}} {}",
            get(&self.smtp_logins_failed)
        );
        let _ = writeln!(
            out,
            "# HELP mailgate_token_refreshes_total Access token refreshes at Google."
        );
        let _ = writeln!(out, "# TYPE mailgate_token_refreshes_total counter");
        let _ = writeln!(
            out,
            "mailgate_token_refreshes_total{{result=\"ok\"}} {}",
            get(&self.token_refreshes_ok)
        );
        let _ = writeln!(
            out,
            "mailgate_token_refreshes_total{{result=\"failed\"}} {}",
            get(&self.token_refreshes_failed)
        );
        let _ = writeln!(
            out,
            "# HELP mailgate_unknown_outcomes_total Attempts whose final dot went out with no answer recorded: a duplicate is possible."
        );
        let _ = writeln!(out, "# TYPE mailgate_unknown_outcomes_total counter");
        for (cause, counter) in [
            ("connection_lost", &self.unknown_after_drop),
            ("restart", &self.unknown_after_restart),
        ] {
            let _ = writeln!(
                out,
                "mailgate_unknown_outcomes_total{{cause=\"{cause}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mailgate_sign_in_attempts_total Sign-ins whose password was verified, and those refused by the limits before any verify."
        );
        let _ = writeln!(out, "# TYPE mailgate_sign_in_attempts_total counter");
        for (result, counter) in [
            ("verified", &self.sign_in_verifies),
            ("refused", &self.sign_ins_refused),
        ] {
            let _ = writeln!(
                out,
                "mailgate_sign_in_attempts_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mailgate_delivery_seconds From submission to Gmail's acceptance."
        );
        let _ = writeln!(out, "# TYPE mailgate_delivery_seconds histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "mailgate_delivery_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            out,
            "mailgate_delivery_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[allow(clippy::cast_precision_loss)]
        let sum = get(&self.latency_sum_ms) as f64 / 1000.0;
        let _ = writeln!(out, "mailgate_delivery_seconds_sum {sum}");
        let _ = writeln!(out, "mailgate_delivery_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_latency(0.2);
        m.observe_latency(3.0);
        let text = m.render(&[(MessageState::Queued, 2)]);
        assert!(text.contains("mailgate_messages{state=\"queued\"} 2\n"));
        assert!(text.contains("mailgate_delivery_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("mailgate_delivery_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("mailgate_delivery_seconds_count 2\n"));
        assert!(text.contains("mailgate_delivery_seconds_sum 3.2\n"));
    }
}
