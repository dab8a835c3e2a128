//! A small Prometheus endpoint for `watch` (off by default, loopback by
//! default when on): events per type, outbox depth and oldest age per sink,
//! sink failures, rescans and overflows, watches, rescan durations.
//!
//! Counters are atomics the loop and the sink threads bump, and the
//! outbox figures are what the loop last published (it is the database's
//! only user); the endpoint's thread reads them, so a scrape never waits
//! for the loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use tracing::info;

/// The counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    events: Mutex<BTreeMap<String, u64>>,
    sink_failures: Mutex<BTreeMap<String, u64>>,
    pub rescans: AtomicU64,
    pub overflows: AtomicU64,
    pub watches: AtomicU64,
    /// Folders read by polling because the kernel refused their watch.
    pub polled_folders: AtomicU64,
    pub users: AtomicU64,
    pub folders: AtomicU64,
    pub messages: AtomicU64,
    /// Sum and count of user rescan durations, in microseconds.
    pub rescan_micros: AtomicU64,
    pub batches: AtomicU64,
    /// Per sink: events waiting, and the age of the oldest in seconds.
    outbox: Mutex<Vec<(String, u64, f64)>>,
}

impl Metrics {
    /// Counts one emitted event of a type.
    pub fn event(&self, kind: &str) {
        if let Ok(mut m) = self.events.lock() {
            *m.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// Counts a failed delivery attempt of a sink.
    pub fn sink_failure(&self, sink: &str) {
        if let Ok(mut m) = self.sink_failures.lock() {
            *m.entry(sink.to_string()).or_default() += 1;
        }
    }

    /// Publishes each sink's backlog: (sink, events waiting, oldest age).
    pub fn set_outbox(&self, per_sink: Vec<(String, u64, f64)>) {
        if let Ok(mut m) = self.outbox.lock() {
            *m = per_sink;
        }
    }

    /// The text exposition format.
    pub fn render(&self, sinks: &[String]) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(
                out,
                "# HELP maildir_events_{name} {help}\n# TYPE maildir_events_{name} {kind}"
            );
        };
        family(
            "events_total",
            "counter",
            "Events emitted, by RFC 5423 type.",
        );
        let mut body = String::new();
        if let Ok(m) = self.events.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(
                    body,
                    "maildir_events_events_total{{event=\"{}\"}} {v}",
                    escape(k)
                );
            }
        }
        let mut text = out;
        text.push_str(&body);
        let gauge = |text: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                text,
                "# HELP maildir_events_{name} {help}\n# TYPE maildir_events_{name} {kind}\nmaildir_events_{name} {v}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut text,
            "rescans_total",
            "counter",
            "User rescans (structural changes, doubt, safety).",
            load(&self.rescans),
        );
        gauge(
            &mut text,
            "overflows_total",
            "counter",
            "Lost inotify events (queue overflow or full channel), each followed by a full rescan.",
            load(&self.overflows),
        );
        gauge(
            &mut text,
            "batches_total",
            "counter",
            "Batches of filesystem changes applied.",
            load(&self.batches),
        );
        let _ = writeln!(
            text,
            "# HELP maildir_events_rescan_seconds_total Time spent in user rescans.\n# TYPE maildir_events_rescan_seconds_total counter\nmaildir_events_rescan_seconds_total {}",
            load(&self.rescan_micros) as f64 / 1e6
        );
        gauge(
            &mut text,
            "watches",
            "gauge",
            "inotify watches in place.",
            load(&self.watches),
        );
        gauge(
            &mut text,
            "polled_folders",
            "gauge",
            "Folders without an inotify watch (the kernel's limit is reached), read by polling.",
            load(&self.polled_folders),
        );
        gauge(
            &mut text,
            "users",
            "gauge",
            "Users watched.",
            load(&self.users),
        );
        gauge(
            &mut text,
            "folders",
            "gauge",
            "Folders tracked.",
            load(&self.folders),
        );
        gauge(
            &mut text,
            "messages",
            "gauge",
            "Messages tracked.",
            load(&self.messages),
        );
        let _ = writeln!(
            text,
            "# HELP maildir_events_sink_failures_total Failed delivery attempts, by sink.\n# TYPE maildir_events_sink_failures_total counter"
        );
        if let Ok(m) = self.sink_failures.lock() {
            for s in sinks {
                let v = m.get(s).copied().unwrap_or(0);
                let _ = writeln!(
                    text,
                    "maildir_events_sink_failures_total{{sink=\"{}\"}} {v}",
                    escape(s)
                );
            }
        }
        if let Ok(outbox) = self.outbox.lock()
            && !outbox.is_empty()
        {
            let _ = writeln!(
                text,
                "# HELP maildir_events_outbox_events Events waiting for a sink.\n# TYPE maildir_events_outbox_events gauge"
            );
            let mut ages = String::new();
            for (s, events, age) in outbox.iter() {
                let _ = writeln!(
                    text,
                    "maildir_events_outbox_events{{sink=\"{}\"}} {events}",
                    escape(s)
                );
                let _ = writeln!(
                    ages,
                    "maildir_events_outbox_oldest_seconds{{sink=\"{}\"}} {age}",
                    escape(s)
                );
            }
            let _ = writeln!(
                text,
                "# HELP maildir_events_outbox_oldest_seconds Age of the oldest event waiting for a sink.\n# TYPE maildir_events_outbox_oldest_seconds gauge"
            );
            text.push_str(&ages);
        }
        text
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` on `listen` from a thread of its own.
pub fn serve(listen: &str, metrics: Arc<Metrics>, sinks: Vec<String>) -> Result<(), String> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| format!("metrics: cannot listen on {listen}: {e}"))?;
    info!(listen, "metrics at /metrics");
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (status, body) = if req.url() == "/metrics" {
                    (200, metrics.render(&sinks))
                } else {
                    (404, "see /metrics\n".to_string())
                };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
                        .unwrap_or_else(|_| {
                            tiny_http::Header::from_bytes("X", "Y").expect("static header")
                        });
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                let _ = req.respond(resp);
            }
        })
        .map_err(|e| format!("metrics: cannot start a thread: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_label() {
        let m = Metrics::default();
        m.event("MessageNew");
        m.event("MessageNew");
        m.event("FlagsSet");
        m.sink_failure("webhook:http://x");
        m.rescans.store(3, Ordering::Relaxed);
        let text = m.render(&["webhook:http://x".into(), "stdout".into()]);
        assert!(
            text.contains("maildir_events_events_total{event=\"MessageNew\"} 2"),
            "{text}"
        );
        assert!(text.contains("maildir_events_events_total{event=\"FlagsSet\"} 1"));
        assert!(text.contains("maildir_events_sink_failures_total{sink=\"webhook:http://x\"} 1"));
        assert!(text.contains("maildir_events_sink_failures_total{sink=\"stdout\"} 0"));
        assert!(text.contains("maildir_events_rescans_total 3"));
        assert!(text.contains("# TYPE maildir_events_watches gauge"));
    }
}
