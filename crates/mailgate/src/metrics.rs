//! The few numbers an operator graphs, through the `metrics` facade and rendered in Prometheus'
//! text format by its exporter. Each `App` owns its recorder (none is installed globally), so
//! several apps in one process, as in the tests, count apart. Queue sizes are read from the
//! database at scrape time; everything else is counted as it happens.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::outgoing::MessageState;

/// Seconds from submission to Gmail's 250, as histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0];
const LATENCY: &str = "mailgate_delivery_seconds";
const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

pub struct Metrics {
    /// Reads what the counters below were registered into; the recorder itself is not kept.
    handle: PrometheusHandle,
    pub submitted: Counter,
    pub sent: Counter,
    pub deferred: Counter,
    pub held: Counter,
    pub failed: Counter,
    pub smtp_logins_ok: Counter,
    pub smtp_logins_failed: Counter,
    pub token_refreshes_ok: Counter,
    pub token_refreshes_failed: Counter,
    /// The final dot went out and the connection dropped before the answer.
    pub unknown_after_drop: Counter,
    /// A restart found a message whose final dot went out before the answer was recorded.
    pub unknown_after_restart: Counter,
    /// Password verifies run at sign-in (each costs ~19 MiB and ~50 ms of a core).
    pub sign_in_verifies: Counter,
    /// Sign-ins answered "too many" or "busy" without verifying.
    pub sign_ins_refused: Counter,
    latency: Histogram,
    queue: Vec<(MessageState, Gauge)>,
}

pub fn bump(counter: &Counter) {
    counter.increment(1);
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Buckets are never empty, the only way this fails; a summary would do if it did.
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let counter =
            |name: &'static str, labels: &[(&'static str, &'static str)], help: &'static str| {
                recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
                let labels: Vec<Label> = labels
                    .iter()
                    .map(|&(k, v)| Label::from_static_parts(k, v))
                    .collect();
                recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
            };
        const FAILURES: &str = "Attempts that did not send, by class.";
        const LOGINS: &str = "AUTH XOAUTH2 results.";
        const REFRESHES: &str = "Access token refreshes at Google.";
        const UNKNOWN: &str =
            "Attempts whose final dot went out with no answer recorded: a duplicate is possible.";
        const SIGN_INS: &str = "Sign-ins whose password was verified, and those refused by the limits before any verify.";
        Metrics {
            submitted: counter(
                "mailgate_submitted_total",
                &[],
                "Messages accepted for delivery.",
            ),
            sent: counter("mailgate_sent_total", &[], "Messages Gmail accepted."),
            deferred: counter(
                "mailgate_failures_total",
                &[("class", "deferred")],
                FAILURES,
            ),
            held: counter("mailgate_failures_total", &[("class", "held")], FAILURES),
            failed: counter("mailgate_failures_total", &[("class", "failed")], FAILURES),
            smtp_logins_ok: counter("mailgate_smtp_logins_total", &[("result", "ok")], LOGINS),
            smtp_logins_failed: counter(
                "mailgate_smtp_logins_total",
                &[("result", "failed")],
                LOGINS,
            ),
            token_refreshes_ok: counter(
                "mailgate_token_refreshes_total",
                &[("result", "ok")],
                REFRESHES,
            ),
            token_refreshes_failed: counter(
                "mailgate_token_refreshes_total",
                &[("result", "failed")],
                REFRESHES,
            ),
            unknown_after_drop: counter(
                "mailgate_unknown_outcomes_total",
                &[("cause", "connection_lost")],
                UNKNOWN,
            ),
            unknown_after_restart: counter(
                "mailgate_unknown_outcomes_total",
                &[("cause", "restart")],
                UNKNOWN,
            ),
            sign_in_verifies: counter(
                "mailgate_sign_in_attempts_total",
                &[("result", "verified")],
                SIGN_INS,
            ),
            sign_ins_refused: counter(
                "mailgate_sign_in_attempts_total",
                &[("result", "refused")],
                SIGN_INS,
            ),
            latency: {
                recorder.describe_histogram(
                    KeyName::from_const_str(LATENCY),
                    None,
                    "From submission to Gmail's acceptance.".into(),
                );
                recorder.register_histogram(&Key::from_static_name(LATENCY), &METADATA)
            },
            queue: {
                recorder.describe_gauge(
                    KeyName::from_const_str("mailgate_messages"),
                    None,
                    "Messages in the queue by state.".into(),
                );
                MessageState::ALL
                    .into_iter()
                    .map(|state| {
                        let key = Key::from_parts(
                            "mailgate_messages",
                            vec![Label::new("state", state.code())],
                        );
                        (state, recorder.register_gauge(&key, &METADATA))
                    })
                    .collect()
            },
            handle,
        }
    }

    pub fn observe_latency(&self, seconds: f64) {
        self.latency.record(seconds.max(0.0));
    }

    /// The Prometheus text, with the queue's sizes as `queue` says (states it omits are 0).
    pub fn render(&self, queue: &[(MessageState, i64)]) -> String {
        for (state, gauge) in &self.queue {
            let n = queue
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |&(_, n)| n);
            #[allow(clippy::cast_precision_loss)]
            gauge.set(n as f64);
        }
        self.handle.render()
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

    #[test]
    fn two_apps_count_apart_and_every_counter_is_there_from_the_start() {
        let a = Metrics::default();
        let b = Metrics::default();
        bump(&a.sent);
        let text = b.render(&[]);
        assert!(text.contains("mailgate_sent_total 0\n"), "{text}");
        assert!(
            text.contains("mailgate_messages{state=\"held\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP mailgate_unknown_outcomes_total Attempts whose final dot"),
            "{text}"
        );
        assert!(a.render(&[]).contains("mailgate_sent_total 1\n"));
    }
}
