//! The `watch` [`Observer`]: one `maildir-events watch` runs the whole time
//! while Dovecot changes the store. After each step the observer waits
//! (bounded) until the expected events were printed, then a short settle
//! time for anything extra, and compares the multiset of that step's events
//! (or their order, where order is the point).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::SERVER_NAME;
use super::dovecot::Dovecot;
use super::events::summary;
use super::live::{Spawn, Watch};
use super::run_scan;
use super::steps::{Observer, Subject, compare, show};

/// How long a step waits for its expected events.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the expected events any extra one must not come.
pub const SETTLE: Duration = Duration::from_millis(300);
/// The settle time of steps that expect no event at all (nothing to wait
/// for first, so a little longer).
pub const QUIET: Duration = Duration::from_millis(600);

/// One user's store watched by one watcher, and the checks collected so
/// far.
pub struct LiveSteps {
    subject: Subject,
    pub watch: Watch,
    /// The watcher's state database; kept for inspection when a test fails.
    state: Option<tempfile::TempDir>,
    /// Events and bad lines already taken by earlier steps.
    seen: usize,
    bad_seen: usize,
}

impl LiveSteps {
    /// Starts `watch --state … --user USER --server-name mx.example.test
    /// --allow-missing [EXTRA…] MAILDIR` on `user`'s Maildir (which may not
    /// exist yet) and waits for `READY=1`. `MAILDIR_EVENTS_LOG` passes on
    /// to the watcher (default `info`).
    pub fn new(dovecot: Dovecot, user: &'static str, extra_args: Vec<&'static str>) -> LiveSteps {
        let subject = Subject::new(dovecot, user, extra_args);
        let state = tempfile::Builder::new()
            .prefix("maildir-events-watch-")
            .tempdir()
            .expect("watcher state dir");
        let mut args: Vec<OsString> = vec![
            "watch".into(),
            "--state".into(),
            state.path().into(),
            "--user".into(),
            user.into(),
            "--server-name".into(),
            SERVER_NAME.into(),
            "--allow-missing".into(),
        ];
        args.extend(subject.extra_args.iter().map(OsString::from));
        args.push(subject.maildir.clone().into());
        let log = std::env::var("MAILDIR_EVENTS_LOG").unwrap_or_else(|_| "info".to_string());
        let spawned = Instant::now();
        let watch = Spawn::command(args).env("MAILDIR_EVENTS_LOG", log).start();
        eprintln!(
            "watcher ready after {:?} (Maildir exists: {})",
            spawned.elapsed(),
            subject.maildir.exists()
        );
        LiveSteps {
            subject,
            watch,
            state: Some(state),
            seen: 0,
            bad_seen: 0,
        }
    }

    /// The events printed since the last step took its own.
    fn fresh(&self) -> Vec<Value> {
        self.watch.events().split_off(self.seen)
    }

    /// Reads events until `done` holds for their summaries (or
    /// [`EVENT_TIMEOUT`]), then for `settle` more. Checks the envelope of
    /// each event and reports lines that are not JSON.
    pub fn collect(
        &mut self,
        step: &str,
        done: impl Fn(&[String]) -> bool,
        settle: Duration,
    ) -> Vec<Value> {
        let started = Instant::now();
        let deadline = started + EVENT_TIMEOUT;
        loop {
            let summaries: Vec<String> = self.fresh().iter().map(summary).collect();
            if done(&summaries) || self.watch.closed() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = started.elapsed();
        let settle_end = Instant::now() + settle;
        while !self.watch.closed() && Instant::now() < settle_end {
            std::thread::sleep(Duration::from_millis(5));
        }
        let events = self.fresh();
        self.seen += events.len();
        let bad = self.watch.bad_lines().split_off(self.bad_seen);
        self.bad_seen += bad.len();
        let mut problems: Vec<String> = bad
            .iter()
            .map(|l| format!("stdout line is not JSON: {l}"))
            .collect();
        if self.watch.closed() {
            problems.push(format!(
                "the watcher closed stdout (exited?)\n--- stderr ---\n{}",
                self.watch.stderr()
            ));
        }
        eprintln!(
            "step {step}: {} event(s); expected ones complete after {waited:?}",
            events.len()
        );
        for p in problems {
            self.fail(step, p);
        }
        self.subject.check_envelope(step, &events);
        events
    }

    /// Like [`Observer::expect`], but the events must come in this order.
    pub fn expect_in_order(&mut self, step: &str, expected: Vec<String>) -> Vec<Value> {
        let n = expected.len();
        let events = self.collect(step, |actual| actual.len() >= n, SETTLE);
        let actual: Vec<String> = events.iter().map(summary).collect();
        if actual != expected {
            self.fail(
                step,
                format!(
                    "events differ (in order)\n expected:\n{}\n actual:\n{}",
                    show(&expected),
                    show(&actual)
                ),
            );
        }
        events
    }

    /// SIGTERM must end the watcher with exit 0, only well-formed lines
    /// and no further event.
    pub fn stop(&mut self) {
        let before = self.watch.count();
        match self.watch.terminate() {
            Ok(_) => eprintln!("watcher stopped on SIGTERM"),
            Err(why) => self.fail("stop (SIGTERM)", why),
        }
        let rest: Vec<String> = self.watch.events()[before..].iter().map(summary).collect();
        if !rest.is_empty() {
            self.fail(
                "stop (SIGTERM)",
                format!("output after SIGTERM:\n{}", show(&rest)),
            );
        }
    }

    /// After [`LiveSteps::stop`]: a scan over the watcher's state must find
    /// nothing new, as the live mode committed exactly what is on disk.
    pub fn scan_finds_nothing(&mut self, step: &str) {
        let state = self.state.as_ref().expect("state dir").path();
        let sc = &self.subject;
        let events = run_scan(state, &sc.maildir, sc.user, &sc.extra_args);
        let left: Vec<String> = events.iter().map(summary).collect();
        if !left.is_empty() {
            self.fail(step, format!("expected no events, got:\n{}", show(&left)));
        }
    }

    /// Panics with every recorded failure (and the watcher's stderr).
    pub fn finish(mut self) {
        let failures = std::mem::take(&mut self.subject.failures);
        failures.finish(&format!(
            "\n\n--- watcher stderr ---\n{}",
            self.watch.stderr()
        ));
    }
}

impl Observer for LiveSteps {
    fn subject(&self) -> &Subject {
        &self.subject
    }

    fn subject_mut(&mut self) -> &mut Subject {
        &mut self.subject
    }

    fn live(&self) -> bool {
        true
    }

    fn changed(&mut self, _step: &str) {}

    /// Waits for the expected events, settles, and compares the step's
    /// events with them as multisets.
    fn expect_any(&mut self, step: &str, expected: Vec<Vec<String>>) {
        let settle = if expected.is_empty() { QUIET } else { SETTLE };
        let events = self.collect(
            step,
            |actual| super::steps::matched(actual, &expected) == expected.len(),
            settle,
        );
        let actual: Vec<String> = events.iter().map(summary).collect();
        if let Some(what) = compare(&actual, &expected) {
            self.fail(step, what);
        }
    }
}

impl Drop for LiveSteps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- watcher stderr ---\n{}", self.watch.stderr());
            if let Some(dir) = self.state.take() {
                eprintln!(
                    "watcher state kept for inspection: {}",
                    dir.keep().display()
                );
            }
        }
    }
}
