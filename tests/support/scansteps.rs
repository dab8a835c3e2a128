//! The `scan` [`Observer`]: one `maildir-events scan` after each step, with
//! its own state database. No scan may change anything in the store, and
//! after every step an extra scan must print nothing (the step's changes
//! were committed).

use serde_json::Value;

use super::dovecot::Dovecot;
use super::events::summary;
use super::steps::{Observer, Subject, compare};
use super::{fingerprint_diff, run_scan, store_fingerprint};

/// One user's store, its state database and the checks collected so far.
pub struct ScanSteps {
    subject: Subject,
    state: tempfile::TempDir,
    /// The events of the last [`Observer::changed`] not yet compared.
    pending: Option<Vec<Value>>,
}

impl ScanSteps {
    /// Scans `user`'s Maildir with `scan … [EXTRA…]` at each step.
    pub fn new(dovecot: Dovecot, user: &'static str, extra_args: Vec<&'static str>) -> ScanSteps {
        ScanSteps {
            subject: Subject::new(dovecot, user, extra_args),
            state: tempfile::tempdir().expect("state dir"),
            pending: None,
        }
    }

    /// Runs one scan; records a failure if it changed anything in the store
    /// or if an event lacks the common fields.
    fn scan(&mut self, step: &str) -> Vec<Value> {
        let sc = &mut self.subject;
        let before = store_fingerprint(&sc.maildir);
        let events = run_scan(self.state.path(), &sc.maildir, sc.user, &sc.extra_args);
        let after = store_fingerprint(&sc.maildir);
        let diff = fingerprint_diff(&before, &after);
        if !diff.is_empty() {
            sc.failures.fail(
                step,
                format!("the scan changed the store:\n  {}", diff.join("\n  ")),
            );
        }
        sc.check_envelope(step, &events);
        events
    }

    fn compare(&mut self, step: &str, events: &[Value], expected: &[Vec<String>]) {
        let actual: Vec<String> = events.iter().map(summary).collect();
        match compare(&actual, expected) {
            None => eprintln!("step {step}: ok ({} events)", actual.len()),
            Some(what) => self.fail(step, what),
        }
    }

    /// Panics with every recorded failure.
    pub fn finish(self) {
        self.subject.failures.finish("");
    }
}

impl Observer for ScanSteps {
    fn subject(&self) -> &Subject {
        &self.subject
    }

    fn subject_mut(&mut self) -> &mut Subject {
        &mut self.subject
    }

    fn live(&self) -> bool {
        false
    }

    fn changed(&mut self, step: &str) {
        let events = self.scan(step);
        self.pending = Some(events);
    }

    /// Compares the events of the step's scan (order within one scan is not
    /// part of the contract).
    ///
    /// Then scans once more without any change in between: that scan must
    /// print nothing, which shows the step's changes were committed to the
    /// state (a missed commit shows up here, at the step that caused it,
    /// rather than as stray events in some later step).
    fn expect_any(&mut self, step: &str, expected: Vec<Vec<String>>) {
        let events = match self.pending.take() {
            Some(events) => events,
            None => self.scan(step),
        };
        self.compare(step, &events, &expected);
        let rescan = format!("{step} / rescan without changes");
        let again = self.scan(&rescan);
        self.compare(&rescan, &again, &[]);
    }
}
